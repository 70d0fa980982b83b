//! `kairos evaluate-policy`: off-policy evaluation replayed on the Open
//! Bandit Dataset, where the answer is known.
//!
//! The Open Bandit Dataset logged the same campaign under two policies, a
//! uniform random one and Bernoulli Thompson sampling (BTS). We estimate
//! the click rate of the *target* policy from the *other* policy's logs
//! with every [`ope`](crate::ope) estimator, and compare with the click
//! rate the target policy actually got (its own logs' mean click).
//!
//! The target policy is context-free, so π(item | position) is all there
//! is to know about it; we take it from the target logs' item frequencies
//! per position. Not from their `propensity_score` column: BTS was refitted
//! in batches during the week, so one (item, position) carries hundreds of
//! different scores, and the average score over logged rows over-weights
//! the times the item was likely (it is shown more often then) — the
//! per-position averages sum to 1.7–3.4 instead of 1. The frequencies are
//! exactly the week's average policy.
//!
//! Like obp's benchmark, the logs are resampled with replacement for each
//! run, the reward model is refitted on each resample, and the relative
//! error reported is the mean over runs of |estimate − truth| / truth.

use std::collections::HashMap;

use crate::datasets::BanditLog;
use crate::ope::{Estimator, LoggedDecision, RewardModel, bootstrap};

/// One estimator's result over the bootstrap runs.
#[derive(Debug, Clone)]
pub struct EstimatorSummary {
    pub estimator: Estimator,
    /// Mean estimate over the runs.
    pub estimate: f64,
    /// The target logs' observed click rate.
    pub truth: f64,
    /// Mean over runs of |estimate − truth| / truth (obp's definition).
    pub relative_error: f64,
    /// 2.5% and 97.5% quantiles of the runs' estimates.
    pub low: f64,
    pub high: f64,
}

/// The evaluation and what it was computed from.
#[derive(Debug, Clone)]
pub struct PolicyEvaluation {
    pub summaries: Vec<EstimatorSummary>,
    /// Penalty of the reward model, chosen by cross-validation on the logs.
    pub penalty: f64,
    pub logged_clicks: usize,
    pub target_clicks: usize,
}

/// Seed of the reward model's cross-validation folds, kept apart from the
/// bootstrap seed so changing one does not move the other.
const FOLD_SEED: u64 = 0x0b0b;

/// Estimates the target logs' policy value from `logs`.
pub fn evaluate_policy(
    logs: &BanditLog,
    target: &BanditLog,
    runs: usize,
    seed: u64,
) -> Result<PolicyEvaluation, String> {
    check_compatible(logs, target)?;
    let target_clicks = target.impressions.iter().filter(|i| i.click).count();
    if target_clicks == 0 {
        return Err(
            "the target logs have no click, so their click rate (the truth) is 0 \
             and a relative error is undefined; use a longer target log"
                .to_string(),
        );
    }
    let truth = target_clicks as f64 / target.impressions.len() as f64;
    let policy = target_policy(target, logs.position_count)?;
    let decisions = logged_decisions(logs);
    let probabilities: Vec<Vec<f64>> = logs
        .impressions
        .iter()
        .map(|i| policy[i.position].clone())
        .collect();
    // Item features are left out of the reward model: with ~50 clicks per
    // log they raised the held-out log loss at every penalty tried.
    let penalty = RewardModel::choose_penalty(&decisions, &[], FOLD_SEED);
    let replicates = bootstrap(&decisions, &probabilities, &[], penalty, runs, seed);
    let summaries = Estimator::ALL
        .iter()
        .enumerate()
        .map(|(index, &estimator)| {
            let values: Vec<f64> = replicates.iter().map(|run| run[index].value).collect();
            summarize(estimator, &values, truth)
        })
        .collect();
    Ok(PolicyEvaluation {
        summaries,
        penalty,
        logged_clicks: logs.impressions.iter().filter(|i| i.click).count(),
        target_clicks,
    })
}

fn check_compatible(logs: &BanditLog, target: &BanditLog) -> Result<(), String> {
    if logs.item_count != target.item_count {
        return Err(format!(
            "the logs have {} items and the target {}: both folders must be the same \
             campaign (e.g. random/men and bts/men)",
            logs.item_count, target.item_count
        ));
    }
    if target.position_count < logs.position_count {
        return Err(format!(
            "the logs use {} positions but the target only {}: the target policy's choice \
             in the missing positions is unknown",
            logs.position_count, target.position_count
        ));
    }
    Ok(())
}

/// π(item | position): the target logs' item frequencies in each position.
fn target_policy(target: &BanditLog, positions: usize) -> Result<Vec<Vec<f64>>, String> {
    let mut counts = vec![vec![0.0; target.item_count]; positions];
    for impression in &target.impressions {
        if impression.position < positions {
            counts[impression.position][impression.item] += 1.0;
        }
    }
    for (position, row) in counts.iter_mut().enumerate() {
        let total: f64 = row.iter().sum();
        if total == 0.0 {
            return Err(format!(
                "the target logs show nothing in position {}, so the target policy there \
                 is unknown; use target logs that cover every position of the logs",
                position + 1
            ));
        }
        row.iter_mut().for_each(|count| *count /= total);
    }
    Ok(counts)
}

/// The logs as decisions: context = position one-hot + user features
/// one-hot (the dataset's features are hashed categories), affinity per item.
fn logged_decisions(logs: &BanditLog) -> Vec<LoggedDecision> {
    let vocabulary = user_vocabulary(logs);
    let width = logs.position_count + vocabulary.len();
    logs.impressions
        .iter()
        .map(|impression| {
            let mut context = vec![0.0; width];
            context[impression.position] = 1.0;
            for (column, value) in impression.user_features.iter().enumerate() {
                let slot = vocabulary[&(column, value.as_str())];
                context[logs.position_count + slot] = 1.0;
            }
            LoggedDecision {
                context,
                action_affinity: impression.affinity.clone(),
                action: impression.item,
                reward: f64::from(u8::from(impression.click)),
                propensity: impression.propensity,
            }
        })
        .collect()
}

/// One slot per (user feature column, value) seen, in order of appearance.
fn user_vocabulary(logs: &BanditLog) -> HashMap<(usize, &str), usize> {
    let mut vocabulary = HashMap::new();
    for impression in &logs.impressions {
        for (column, value) in impression.user_features.iter().enumerate() {
            let next = vocabulary.len();
            vocabulary.entry((column, value.as_str())).or_insert(next);
        }
    }
    vocabulary
}

fn summarize(estimator: Estimator, values: &[f64], truth: f64) -> EstimatorSummary {
    let count = values.len() as f64;
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let quantile = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    EstimatorSummary {
        estimator,
        estimate: values.iter().sum::<f64>() / count,
        truth,
        relative_error: values
            .iter()
            .map(|v| (v - truth).abs() / truth)
            .sum::<f64>()
            / count,
        low: quantile(0.025),
        high: quantile(0.975),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasets::Impression;
    use crate::rng::SplitMix64;

    const CLICK_RATE: [f64; 3] = [0.02, 0.05, 0.10];

    /// A campaign of three items, two positions; `choose` picks the item.
    fn campaign(size: usize, seed: u64, choose: impl Fn(&mut SplitMix64) -> usize) -> BanditLog {
        let mut rng = SplitMix64::new(seed);
        let impressions = (0..size)
            .map(|_| {
                let item = choose(&mut rng);
                Impression {
                    item,
                    position: rng.below(2),
                    click: rng.next_f64() < CLICK_RATE[item],
                    propensity: 1.0 / 3.0,
                    user_features: vec![["a", "b"][rng.below(2)].to_string()],
                    affinity: Vec::new(),
                }
            })
            .collect();
        BanditLog {
            item_count: 3,
            position_count: 2,
            user_feature_names: vec!["user_feature_0".to_string()],
            impressions,
        }
    }

    #[test]
    fn the_value_of_a_better_policy_is_recovered_from_random_logs() {
        let random = campaign(20_000, 1, |rng| rng.below(3));
        // The target shows item 2 three times in four, item 1 otherwise.
        let target = campaign(20_000, 2, |rng| if rng.below(4) < 3 { 2 } else { 1 });
        let evaluation = evaluate_policy(&random, &target, 5, 9).unwrap();
        let truth = 0.75 * 0.10 + 0.25 * 0.05;
        for summary in &evaluation.summaries {
            assert!((summary.truth - truth).abs() < 0.006, "{summary:?}");
            if summary.estimator != Estimator::Dm {
                // DM with an item-blind reward model cannot see the better item.
                assert!(summary.relative_error < 0.15, "{summary:?}");
            }
            assert!(summary.low <= summary.estimate && summary.estimate <= summary.high);
        }
    }

    #[test]
    fn incompatible_folders_are_refused_with_the_reason() {
        let random = campaign(100, 1, |rng| rng.below(3));
        let mut other = campaign(100, 2, |rng| rng.below(3));
        other.item_count = 4;
        let message = evaluate_policy(&random, &other, 1, 1).unwrap_err();
        assert!(message.contains("same campaign"), "{message}");
        let no_clicks = campaign(100, 3, |_| 0);
        let mut no_clicks = no_clicks;
        no_clicks
            .impressions
            .iter_mut()
            .for_each(|i| i.click = false);
        let message = evaluate_policy(&random, &no_clicks, 1, 1).unwrap_err();
        assert!(message.contains("no click"), "{message}");
    }
}
