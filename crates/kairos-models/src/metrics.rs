//! Scoring metrics, registered into the server's Prometheus registry by
//! `kairos_http::Metrics` (this crate has no registry of its own).

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use crate::ScoreError;

type Labels = Vec<(&'static str, String)>;

pub struct ScoreMetrics {
    /// `kairos_model_score_failures_total{model, reason}`.
    pub failures: Family<Labels, Counter>,
    /// `kairos_model_score_seconds{model}`.
    pub seconds: Family<Labels, Histogram>,
}

fn seconds_histogram() -> Histogram {
    // 1 µs .. ~0.5 s: most models score in microseconds.
    Histogram::new(exponential_buckets(0.000_001, 2.0, 20))
}

/// The process's scoring metrics.
pub fn score_metrics() -> &'static ScoreMetrics {
    static METRICS: OnceLock<ScoreMetrics> = OnceLock::new();
    METRICS.get_or_init(|| ScoreMetrics {
        failures: Family::default(),
        seconds: Family::new_with_constructor(seconds_histogram),
    })
}

/// Records one score of `model`: its time, and its failure if any.
pub(crate) fn scored(model: &str, took: Duration, error: Option<&ScoreError>) {
    let metrics = score_metrics();
    let labels = vec![("model", model.to_string())];
    match error {
        None => metrics
            .seconds
            .get_or_create(&labels)
            .observe(took.as_secs_f64()),
        Some(error) => {
            let mut labels = labels;
            labels.push(("reason", error.reason().to_string()));
            metrics.failures.get_or_create(&labels).inc();
        }
    }
}
