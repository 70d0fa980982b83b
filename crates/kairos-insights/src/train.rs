//! The three training pipelines behind `kairos train`: load, train (choices
//! by cross-validation on the training data only), evaluate on the test
//! data, and write the report directory:
//!
//! - `index.html`: the human report;
//! - `metrics.json`: every figure, machine-readable;
//! - `model.json`: the trained model, ready to serve;
//! - `predictions.csv`: one row per evaluated person, so anyone can
//!   recompute the metrics with other tools.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use crate::bgnbd::{self, BgNbdParams, CustomerSummary};
use crate::datasets::{self, parse_yyyymmdd};
use crate::metrics::{self, Confusion};
use crate::report::{self, card, metric_row, pair};
use crate::{propensity, uplift};

/// Folds for every cross-validation.
const FOLDS: usize = 5;

/// Published reference runs on the same 70/30 split (data README).
const REFERENCE_GBM: (f64, f64, f64) = (0.927, 0.638, 0.898);
const REFERENCE_FOREST: (f64, f64, f64) = (0.921, 0.627, 0.899);

#[derive(Debug, Clone, Serialize)]
pub struct PropensitySummary {
    pub auc: f64,
    pub f1: f64,
    pub accuracy: f64,
    pub precision: f64,
    pub recall: f64,
    pub threshold: f64,
    pub train_rows: usize,
    pub test_rows: usize,
}

/// Trains the purchase-propensity model on `train`, evaluates it on `test`.
pub fn purchase_propensity(
    train: &Path,
    test: &Path,
    report_dir: &Path,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<PropensitySummary> {
    let (train_rows, train_labels) = split_sessions(datasets::load_sessions(train)?);
    let (test_rows, test_labels) = split_sessions(datasets::load_sessions(test)?);
    progress(&format!(
        "training on {} sessions, testing on {}",
        train_rows.len(),
        test_rows.len()
    ));
    let (model, choices) = propensity::train(
        &train_rows,
        &train_labels,
        datasets::session_feature_names(),
        &propensity::Search::thorough(),
        progress,
    );
    let probabilities: Vec<f64> = test_rows.iter().map(|row| model.probability(row)).collect();
    let auc = metrics::roc_auc(&test_labels, &probabilities)
        .context("the test file needs both buyers and non-buyers")?;
    let counts = Confusion::at_threshold(&test_labels, &probabilities, model.threshold);
    let summary = PropensitySummary {
        auc,
        f1: counts.f1(),
        accuracy: counts.accuracy(),
        precision: counts.precision(),
        recall: counts.recall(),
        threshold: model.threshold,
        train_rows: train_rows.len(),
        test_rows: test_rows.len(),
    };
    let mut predictions = String::from("probability,predicted,revenue\n");
    for (&probability, &label) in probabilities.iter().zip(&test_labels) {
        let _ = writeln!(
            predictions,
            "{probability},{},{}",
            u8::from(probability >= model.threshold),
            u8::from(label)
        );
    }
    let html = propensity_report(&summary, &counts, &choices, &test_labels, &probabilities);
    let metrics = serde_json::json!({ "test": summary, "confusion": counts, "training": choices });
    write_report(
        report_dir,
        &html,
        &metrics,
        &serde_json::to_string(&model)?,
        &predictions,
    )?;
    Ok(summary)
}

fn split_sessions(sessions: Vec<datasets::Session>) -> (Vec<Vec<f64>>, Vec<bool>) {
    sessions
        .into_iter()
        .map(|session| (session.features, session.revenue))
        .unzip()
}

fn propensity_report(
    summary: &PropensitySummary,
    counts: &Confusion,
    choices: &propensity::TrainingChoices,
    labels: &[bool],
    probabilities: &[f64],
) -> String {
    let table = report::metrics_table(&[
        metric_row("ROC AUC", summary.auc, Some(REFERENCE_GBM.0)),
        metric_row("F1", summary.f1, Some(REFERENCE_GBM.1)),
        metric_row("accuracy", summary.accuracy, Some(REFERENCE_GBM.2)),
        metric_row("precision", summary.precision, None),
        metric_row("recall", summary.recall, None),
        metric_row(
            "decision threshold (chosen by CV on training data)",
            summary.threshold,
            None,
        ),
    ]);
    let chosen = &choices.candidates[choices.chosen];
    let explanation = format!(
        "Held-out test sessions ({} rows; trained on {}). References: gradient boosting AUC {:.3} / F1 {:.3} / accuracy {:.3}; \
         random forest {:.3} / {:.3} / {:.3} on the same stratified 70/30 split. Trees: depth ≤ {}, ≤ {} leaves, {} trees, \
         learning rate {}, chosen among {} settings by {}-fold cross-validated log-loss on the training file \
         (cross-validated AUC {:.4}); the served model averages {} fits on different subsamples.",
        summary.test_rows,
        summary.train_rows,
        REFERENCE_GBM.0,
        REFERENCE_GBM.1,
        REFERENCE_GBM.2,
        REFERENCE_FOREST.0,
        REFERENCE_FOREST.1,
        REFERENCE_FOREST.2,
        chosen.params.max_depth,
        chosen.params.max_leaves,
        chosen.best_trees,
        chosen.params.learning_rate,
        choices.candidates.len(),
        choices.folds,
        choices.cv_auc,
        choices.seeds
    );
    let gain = metrics::cumulative_gain(labels, probabilities, 10);
    let fine_gain = metrics::cumulative_gain(labels, probabilities, 100);
    report::page(
        "Purchase propensity",
        "Will this session end in a purchase? Boosted trees trained by Kairos on session behaviour; every choice was made on the training data, the test data was only scored.",
        &[
            card("How good is it?", &explanation, &table),
            card(
                "Ranking and calibration",
                "Left: how well scores separate buyers from non-buyers at every threshold. Right: whether a score of 0.3 means a 30% purchase rate.",
                &pair(
                    &report::roc_chart(metrics::roc_curve(labels, probabilities), summary.auc),
                    &report::calibration_chart(&metrics::calibration_bins(
                        labels,
                        probabilities,
                        10,
                    )),
                ),
            ),
            card(
                "Who to target",
                "Targeting the highest-scoring sessions first: the share of all purchases reached, and how many times better than random that is.",
                &pair(&report::gain_chart(fine_gain), &report::lift_chart(&gain)),
            ),
            card(
                "Decisions at the chosen threshold",
                "Counts of held-out sessions by actual outcome and prediction.",
                &report::confusion_matrix(counts),
            ),
        ],
    )
}

#[derive(Debug, Clone, Serialize)]
pub struct UpliftSummary {
    pub qini: f64,
    pub uplift_at_30: f64,
    pub approach: uplift::Approach,
    pub train_rows: usize,
    pub test_rows: usize,
}

/// Published reference figures on the scikit-uplift example split.
const REFERENCE_QINI: f64 = 0.0596;
const REFERENCE_UPLIFT_AT_30: f64 = 0.0661;

/// Trains an uplift model (Womens e-mail vs none, target: visit).
pub fn uplift(
    train: &Path,
    test: &Path,
    report_dir: &Path,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<UpliftSummary> {
    let training = datasets::load_customers(train)?;
    let testing = datasets::load_customers(test)?;
    progress(&format!(
        "training on {} customers, testing on {}",
        training.len(),
        testing.len()
    ));
    let (rows, treated, outcomes) = columns(&training);
    let experiment = uplift::Experiment {
        rows: &rows,
        treated: &treated,
        outcomes: &outcomes,
    };
    let (model, scores) = uplift::train(
        &experiment,
        datasets::customer_feature_names(),
        FOLDS,
        progress,
    );
    progress(&format!("fitted: {}", model.approach.name()));
    let (test_rows, test_treated, test_outcomes) = columns(&testing);
    let predictions: Vec<uplift::UpliftPrediction> =
        test_rows.iter().map(|row| model.predict(row)).collect();
    let uplifts: Vec<f64> = predictions.iter().map(|p| p.uplift).collect();
    let summary = UpliftSummary {
        qini: metrics::qini_auc_score(&test_outcomes, &uplifts, &test_treated),
        uplift_at_30: metrics::uplift_at_k(&test_outcomes, &uplifts, &test_treated, 0.3),
        approach: model.approach,
        train_rows: rows.len(),
        test_rows: test_rows.len(),
    };
    let mut csv = String::from("treatment,visit,baseline,uplift\n");
    for ((prediction, &is_treated), &outcome) in
        predictions.iter().zip(&test_treated).zip(&test_outcomes)
    {
        let _ = writeln!(
            csv,
            "{},{},{},{}",
            u8::from(is_treated),
            u8::from(outcome),
            prediction.baseline,
            prediction.uplift
        );
    }
    let deciles = metrics::uplift_by_decile(&test_outcomes, &uplifts, &test_treated);
    let segments = segment_counts(&predictions);
    let html = uplift_report(
        &summary,
        &scores,
        &deciles,
        &segments,
        (&test_outcomes, &uplifts, &test_treated),
    );
    let metrics = serde_json::json!({ "test": summary, "cv": scores, "deciles": deciles, "segments": segments });
    write_report(
        report_dir,
        &html,
        &metrics,
        &serde_json::to_string(&model)?,
        &csv,
    )?;
    Ok(summary)
}

fn columns(customers: &[datasets::Customer]) -> (Vec<Vec<f64>>, Vec<bool>, Vec<bool>) {
    let rows = customers.iter().map(|c| c.features.clone()).collect();
    (
        rows,
        customers.iter().map(|c| c.treated).collect(),
        customers.iter().map(|c| c.visit).collect(),
    )
}

/// The four classic uplift segments, by predicted uplift and baseline.
#[derive(Debug, Clone, Serialize)]
pub struct Segments {
    pub persuadables: usize,
    pub sure_things: usize,
    pub lost_causes: usize,
    pub sleeping_dogs: usize,
    pub uplift_cutoff: f64,
    pub baseline_cutoff: f64,
}

/// Persuadables: the top 30% by uplift (where a campaign pays). The rest
/// split by baseline at its median: sure things above, lost causes below;
/// sleeping dogs are those the campaign is predicted to put off.
fn segment_counts(predictions: &[uplift::UpliftPrediction]) -> Segments {
    let quantile = |mut values: Vec<f64>, share: f64| {
        values.sort_by(f64::total_cmp);
        values[((values.len() as f64 * share) as usize).min(values.len() - 1)]
    };
    let uplift_cutoff = quantile(predictions.iter().map(|p| p.uplift).collect(), 0.7);
    let baseline_cutoff = quantile(predictions.iter().map(|p| p.baseline).collect(), 0.5);
    let mut segments = Segments {
        persuadables: 0,
        sure_things: 0,
        lost_causes: 0,
        sleeping_dogs: 0,
        uplift_cutoff,
        baseline_cutoff,
    };
    for prediction in predictions {
        match () {
            _ if prediction.uplift < 0.0 => segments.sleeping_dogs += 1,
            _ if prediction.uplift >= uplift_cutoff => segments.persuadables += 1,
            _ if prediction.baseline >= baseline_cutoff => segments.sure_things += 1,
            _ => segments.lost_causes += 1,
        }
    }
    segments
}

fn uplift_report(
    summary: &UpliftSummary,
    scores: &[uplift::ApproachScore],
    deciles: &[metrics::UpliftBucket],
    segments: &Segments,
    test: (&[bool], &[f64], &[bool]),
) -> String {
    let (outcomes, uplifts, treated) = test;
    let table = report::metrics_table(&[
        metric_row(
            "Qini AUC (scikit-uplift qini_auc_score)",
            summary.qini,
            Some(REFERENCE_QINI),
        ),
        metric_row(
            "uplift@30% (treated − control visit rate in the top 30%)",
            summary.uplift_at_30,
            Some(REFERENCE_UPLIFT_AT_30),
        ),
    ]);
    let mut cv = String::from(
        "<table><tr><th>learner</th><th>cross-validated Qini (training data)</th></tr>",
    );
    for score in scores {
        let mark = if score.approach == summary.approach {
            " ← fitted"
        } else {
            ""
        };
        let _ = write!(
            cv,
            "<tr><td>{}{mark}</td><td>{:.4}</td></tr>",
            score.name, score.cv_qini_mean
        );
    }
    cv.push_str("</table>");
    let perfect_scores: Vec<f64> = outcomes
        .iter()
        .zip(treated)
        .map(|(&y, &t)| {
            if !y {
                0.0
            } else if t {
                1.0
            } else {
                -1.0
            }
        })
        .collect();
    let segment_html = format!(
        "<div class=\"segments\">\
         <div class=\"segment\"><b>Persuadables: {}</b><span>Visit because of the e-mail (top 30% by predicted uplift, ≥ {:.1} points). Target these.</span></div>\
         <div class=\"segment\"><b>Sure things: {}</b><span>Likely to visit anyway (baseline ≥ {:.1}%). An e-mail adds little.</span></div>\
         <div class=\"segment\"><b>Lost causes: {}</b><span>Unlikely to visit, e-mail or not.</span></div>\
         <div class=\"segment\"><b>Sleeping dogs: {}</b><span>Predicted to visit less when e-mailed. Leave them be.</span></div></div>",
        segments.persuadables,
        segments.uplift_cutoff * 100.0,
        segments.sure_things,
        segments.baseline_cutoff * 100.0,
        segments.lost_causes,
        segments.sleeping_dogs
    );
    report::page(
        "Uplift: whom does the e-mail move?",
        "Hillstrom e-mail experiment, Womens e-mail (treated) versus no e-mail (control), outcome: site visit within two weeks. The learner is fixed (Lo's treatment interactions, uplift weights penalized ×16: per data set, cross-validated Qini is too noisy to choose between learners); the table shows the others' cross-validated Qini on the training half. The test half was only scored.",
        &[
            card(
                "How good is it?",
                &format!(
                    "Held-out customers: {} (trained on {}). References on the scikit-uplift example split: two-model logistic Qini 0.0596, uplift@30% 0.0661.",
                    summary.test_rows, summary.train_rows
                ),
                &format!("{table}{cv}"),
            ),
            card(
                "Qini curve and uplift by decile",
                "Left: extra visits caused when e-mailing people in order of predicted uplift, against e-mailing at random. Right: observed uplift per decile should fall from left to right.",
                &pair(
                    &report::qini_chart(
                        metrics::qini_curve(outcomes, uplifts, treated),
                        metrics::qini_curve(outcomes, &perfect_scores, treated),
                        summary.qini,
                    ),
                    &report::uplift_decile_chart(deciles),
                ),
            ),
            card(
                "Four kinds of customer",
                "Each prediction carries the baseline propensity (control model) and the uplift; together they sort people into the classic segments (counts on the test half).",
                &segment_html,
            ),
        ],
    )
}

#[derive(Debug, Clone, Serialize)]
pub struct ChurnSummary {
    pub params: BgNbdParams,
    pub log_likelihood: f64,
    pub customers: usize,
    /// Purchases after calibration: actual count and the model's expectation.
    pub holdout_weeks: f64,
    pub holdout_actual: f64,
    pub holdout_expected: f64,
}

const PUBLISHED_BGNBD: BgNbdParams = BgNbdParams {
    r: 0.2426,
    alpha: 4.4135,
    a: 0.7929,
    b: 2.4258,
};

/// Fits BG/NBD to the transactions up to `calibration_end` (YYYY-MM-DD).
pub fn churn(
    transactions: &Path,
    calibration_end: &str,
    report_dir: &Path,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<ChurnSummary> {
    let end_day = parse_yyyymmdd(calibration_end).with_context(|| {
        format!("--calibration-end `{calibration_end}` is not a YYYY-MM-DD date")
    })?;
    let purchases = datasets::load_purchases(transactions)?;
    let summaries = bgnbd::summarize(&purchases, end_day);
    anyhow::ensure!(
        !summaries.is_empty(),
        "{}: no purchases on or before {calibration_end}",
        transactions.display()
    );
    progress(&format!(
        "{} customers, {} purchases",
        summaries.len(),
        purchases.len()
    ));
    let customers: Vec<CustomerSummary> = summaries.iter().map(|(_, summary)| *summary).collect();
    let params = bgnbd::fit(&customers);
    let last_day = purchases.iter().map(|p| p.day).max().unwrap_or(end_day);
    let holdout_weeks = ((last_day - end_day).max(0)) as f64 / 7.0;
    let holdout_actual = holdout_purchase_days(&purchases, end_day, &summaries);
    let expected: Vec<f64> = customers
        .iter()
        .map(|c| bgnbd::expected_purchases(&params, holdout_weeks, c.frequency, c.recency, c.age))
        .collect();
    let summary = ChurnSummary {
        params,
        log_likelihood: bgnbd::log_likelihood(&params, &customers),
        customers: customers.len(),
        holdout_weeks,
        holdout_actual,
        holdout_expected: expected.iter().sum(),
    };
    let alive: Vec<f64> = customers
        .iter()
        .map(|c| bgnbd::probability_alive(&params, c.frequency, c.recency, c.age))
        .collect();
    let mut csv = String::from("customer,frequency,recency,T,p_alive,expected_purchases_holdout\n");
    for (((id, c), p_alive), expected) in summaries.iter().zip(&alive).zip(&expected) {
        let _ = writeln!(
            csv,
            "{id},{},{:.4},{:.4},{p_alive},{expected}",
            c.frequency, c.recency, c.age
        );
    }
    let html = churn_report(&summary, &customers, &alive);
    let metrics = serde_json::json!({ "fit": summary, "published": PUBLISHED_BGNBD, "published_log_likelihood": -9582.4 });
    write_report(
        report_dir,
        &html,
        &metrics,
        &serde_json::to_string(&params)?,
        &csv,
    )?;
    Ok(summary)
}

/// Repeat purchase days after calibration by the calibration cohort.
fn holdout_purchase_days(
    purchases: &[datasets::Purchase],
    end_day: i64,
    cohort: &[(String, CustomerSummary)],
) -> f64 {
    let members: std::collections::HashSet<&str> =
        cohort.iter().map(|(id, _)| id.as_str()).collect();
    let mut days: Vec<(&str, i64)> = purchases
        .iter()
        .filter(|p| p.day > end_day && members.contains(p.customer.as_str()))
        .map(|p| (p.customer.as_str(), p.day))
        .collect();
    days.sort_unstable();
    days.dedup();
    days.len() as f64
}

fn churn_report(summary: &ChurnSummary, customers: &[CustomerSummary], alive: &[f64]) -> String {
    let p = summary.params;
    let table = report::metrics_table(&[
        metric_row("r", p.r, Some(PUBLISHED_BGNBD.r)),
        metric_row("α (alpha)", p.alpha, Some(PUBLISHED_BGNBD.alpha)),
        metric_row("a", p.a, Some(PUBLISHED_BGNBD.a)),
        metric_row("b", p.b, Some(PUBLISHED_BGNBD.b)),
        metric_row("log-likelihood", summary.log_likelihood, Some(-9582.4)),
        metric_row(
            &format!(
                "repeat purchases in the {:.0} weeks after calibration: actual",
                summary.holdout_weeks
            ),
            summary.holdout_actual,
            None,
        ),
        metric_row("… expected by the model", summary.holdout_expected, None),
    ]);
    let mut alive_counts = vec![0.0; 10];
    for &probability in alive {
        alive_counts[((probability * 10.0) as usize).min(9)] += 1.0;
    }
    let alive_labels: Vec<String> = (0..10)
        .map(|bin| format!("{}–{}", bin * 10, bin * 10 + 10))
        .collect();
    let (labels, actual, expected) = frequency_table(&summary.params, customers);
    report::page(
        "Churn: who is still a customer?",
        "BG/NBD (Fader, Hardie & Lee 2005) fitted by maximum likelihood to each customer's repeat purchases, recency and age. For every profile it gives the probability of still being active and the expected purchases ahead.",
        &[
            card(
                "Parameters",
                &format!(
                    "{} customers. Published on the CDNOW sample: r 0.2426, α 4.4135, a 0.7929, b 2.4258, log-likelihood −9582.4.",
                    summary.customers
                ),
                &table,
            ),
            card(
                "Fit and P(alive)",
                "Left: customers by number of repeat purchases in calibration, against what the fitted model expects for customers of the same ages. Right: how many customers are probably still active at the end of calibration.",
                &pair(
                    &report::actual_vs_expected_chart(labels, actual, expected),
                    &report::histogram_chart(
                        "P(alive) at the end of calibration",
                        "P(alive), %",
                        alive_labels,
                        alive_counts,
                    ),
                ),
            ),
        ],
    )
}

/// Customers with 0..6 and 7+ repeat purchases: actual, and expected (each
/// customer's own age plugged into P(X(T) = x)).
fn frequency_table(
    params: &BgNbdParams,
    customers: &[CustomerSummary],
) -> (Vec<String>, Vec<f64>, Vec<f64>) {
    let mut actual = vec![0.0; 8];
    let mut expected = vec![0.0; 8];
    for customer in customers {
        actual[(customer.frequency as usize).min(7)] += 1.0;
        let mut below = 0.0;
        for count in 0..7 {
            let probability = bgnbd::probability_of_purchases(params, customer.age, count);
            expected[count as usize] += probability;
            below += probability;
        }
        expected[7] += (1.0 - below).max(0.0);
    }
    let labels = (0..8)
        .map(|count| {
            if count == 7 {
                "7+".to_string()
            } else {
                count.to_string()
            }
        })
        .collect();
    (labels, actual, expected)
}

fn write_report(
    dir: &Path,
    html: &str,
    metrics: &serde_json::Value,
    model_json: &str,
    predictions_csv: &str,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the report directory {}", dir.display()))?;
    let files = [
        ("index.html", html.to_string()),
        ("metrics.json", serde_json::to_string_pretty(metrics)?),
        ("model.json", model_json.to_string()),
        ("predictions.csv", predictions_csv.to_string()),
    ];
    for (name, contents) in files {
        let path = dir.join(name);
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
