//! Purchase propensity: will this session buy?
//!
//! Everything that is chosen — the tree settings, the number of trees and
//! the decision threshold — is chosen by k-fold cross-validation on the
//! training rows alone; the test file is only ever scored.

use serde::{Deserialize, Serialize};

use crate::gbm::{Gbm, GbmParams};
use crate::metrics::{best_f1_threshold, roc_auc};
use crate::rng::stratified_folds;

/// A servable propensity model: probability from the trees, yes/no from the threshold.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PropensityModel {
    pub feature_names: Vec<String>,
    pub gbm: Gbm,
    /// Sessions scoring at or above this are predicted to buy (maximizes
    /// cross-validated F1 on the training data).
    pub threshold: f64,
}

impl PropensityModel {
    pub fn probability(&self, features: &[f64]) -> f64 {
        self.gbm.predict_proba(features)
    }
}

/// What cross-validation found for one candidate setting.
#[derive(Debug, Clone, Serialize)]
pub struct CandidateScore {
    pub params: GbmParams,
    pub best_trees: usize,
    pub cv_log_loss: f64,
}

/// What training chose, and why (goes into the report).
#[derive(Debug, Clone, Serialize)]
pub struct TrainingChoices {
    pub folds: usize,
    pub candidates: Vec<CandidateScore>,
    pub chosen: usize,
    pub cv_f1_at_threshold: f64,
    /// ROC AUC of the chosen setting's out-of-fold probabilities.
    pub cv_auc: f64,
    /// Fits averaged into the final model.
    pub seeds: u64,
}

/// How hard training searches.
#[derive(Debug, Clone)]
pub struct Search {
    pub folds: usize,
    pub candidates: Vec<GbmParams>,
    pub seeds: u64,
}

impl Search {
    /// Every candidate setting, 5 folds, 5 averaged fits: the evaluation runs.
    pub fn thorough() -> Search {
        Search {
            folds: 5,
            candidates: candidate_params(),
            seeds: FINAL_SEEDS,
        }
    }

    /// One mid-sized setting, 3 folds, one fit: seconds, for retraining
    /// often on live data.
    pub fn quick() -> Search {
        Search {
            folds: 3,
            candidates: vec![GbmParams {
                trees: 300,
                learning_rate: 0.05,
                max_depth: 3,
                max_leaves: 8,
                ..candidate_params().remove(0)
            }],
            seeds: 1,
        }
    }
}

/// The settings tried: all shrunk hard (many small steps generalize better
/// on a few thousand rows) and subsampled; they differ in tree size.
pub fn candidate_params() -> Vec<GbmParams> {
    let base = GbmParams {
        trees: 1200,
        learning_rate: 0.015,
        max_depth: 4,
        max_leaves: 15,
        min_child_weight: 3.0,
        lambda_l2: 5.0,
        min_split_gain: 0.0,
        subsample: 0.8,
        colsample: 0.8,
        max_bins: 255,
        seed: 42,
    };
    vec![
        base.clone(),
        GbmParams {
            max_depth: 3,
            max_leaves: 8,
            trees: 1500,
            ..base.clone()
        },
        GbmParams {
            max_depth: 6,
            max_leaves: 31,
            min_child_weight: 5.0,
            trees: 900,
            ..base
        },
    ]
}

/// Cross-validated tree count for `params`: fits one model per fold, sums
/// held-out log-loss after each tree, and returns the best count, its mean
/// loss and the out-of-fold probabilities at that count.
pub fn cross_validate(
    rows: &[Vec<f64>],
    labels: &[bool],
    params: &GbmParams,
    folds: &[usize],
    fold_count: usize,
) -> (usize, f64, Vec<f64>) {
    let mut loss_by_trees = vec![0.0; params.trees];
    let mut models = Vec::with_capacity(fold_count);
    for fold in 0..fold_count {
        let (train_rows, train_labels, held_rows, held_labels) =
            split_fold(rows, labels, folds, fold);
        let model = Gbm::fit(&train_rows, &train_labels, params);
        let staged = model.staged_log_loss(&held_rows, &held_labels);
        for (total, loss) in loss_by_trees.iter_mut().zip(staged) {
            *total += loss * held_rows.len() as f64;
        }
        models.push(model);
    }
    let (best_index, best_loss) = loss_by_trees
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.total_cmp(b.1))
        .expect("at least one tree");
    let best_trees = best_index + 1;
    let mut out_of_fold = vec![0.0; rows.len()];
    for (fold, model) in models.iter_mut().enumerate() {
        model.truncate(best_trees);
        for (index, row) in rows
            .iter()
            .enumerate()
            .filter(|(index, _)| folds[*index] == fold)
        {
            out_of_fold[index] = model.predict_proba(row);
        }
    }
    (best_trees, best_loss / rows.len() as f64, out_of_fold)
}

/// Rows outside `fold` (to train on) and inside it (to evaluate on).
/// Training rows and labels, then held-out rows and labels.
type FoldSplit = (Vec<Vec<f64>>, Vec<bool>, Vec<Vec<f64>>, Vec<bool>);

pub fn split_fold(rows: &[Vec<f64>], labels: &[bool], folds: &[usize], fold: usize) -> FoldSplit {
    let (mut train_rows, mut train_labels, mut held_rows, mut held_labels) =
        (vec![], vec![], vec![], vec![]);
    for ((row, &label), &row_fold) in rows.iter().zip(labels).zip(folds) {
        if row_fold == fold {
            held_rows.push(row.clone());
            held_labels.push(label);
        } else {
            train_rows.push(row.clone());
            train_labels.push(label);
        }
    }
    (train_rows, train_labels, held_rows, held_labels)
}

/// Fits averaged into the final model (seed bagging).
pub const FINAL_SEEDS: u64 = 5;

/// Picks settings, tree count and threshold by cross-validation, then fits
/// the final model on all training rows.
pub fn train(
    rows: &[Vec<f64>],
    labels: &[bool],
    feature_names: Vec<String>,
    search: &Search,
    progress: &mut dyn FnMut(&str),
) -> (PropensityModel, TrainingChoices) {
    let fold_count = search.folds;
    let folds = stratified_folds(labels, fold_count, 7);
    let mut candidates = Vec::new();
    let mut best: Option<(usize, Vec<f64>)> = None;
    for (index, params) in search.candidates.iter().cloned().enumerate() {
        let (best_trees, cv_log_loss, out_of_fold) =
            cross_validate(rows, labels, &params, &folds, fold_count);
        progress(&format!(
            "candidate {index}: depth {} leaves {} -> {best_trees} trees, cv log-loss {cv_log_loss:.4}",
            params.max_depth, params.max_leaves
        ));
        let better = best
            .as_ref()
            .is_none_or(|(chosen, _)| cv_log_loss < candidates_loss(&candidates, *chosen));
        candidates.push(CandidateScore {
            params,
            best_trees,
            cv_log_loss,
        });
        if better {
            best = Some((index, out_of_fold));
        }
    }
    let (chosen, out_of_fold) = best.expect("at least one candidate");
    let (threshold, cv_f1) = best_f1_threshold(labels, &out_of_fold);
    let chosen_score = &candidates[chosen];
    let final_params = GbmParams {
        trees: chosen_score.best_trees,
        ..chosen_score.params.clone()
    };
    // The final model averages fits on different subsamples (seeds): the
    // same settings, less of any one subsample's noise.
    let fits: Vec<Gbm> = (0..search.seeds)
        .map(|index| {
            let params = GbmParams {
                seed: final_params.seed + index,
                ..final_params.clone()
            };
            Gbm::fit(rows, labels, &params)
        })
        .collect();
    let gbm = Gbm::average(&fits);
    let model = PropensityModel {
        feature_names,
        gbm,
        threshold,
    };
    let choices = TrainingChoices {
        folds: fold_count,
        candidates,
        chosen,
        cv_f1_at_threshold: cv_f1,
        cv_auc: roc_auc(labels, &out_of_fold).unwrap_or(f64::NAN),
        seeds: search.seeds,
    };
    (model, choices)
}

fn candidates_loss(candidates: &[CandidateScore], index: usize) -> f64 {
    candidates[index].cv_log_loss
}
