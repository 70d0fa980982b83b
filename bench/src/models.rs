//! Scoring cost (`kairos-loadgen models`): a 300-tree gradient-boosted
//! model (depth ≤ 6, trained here by `kairos-insights` on synthetic
//! sessions) and a logistic regression, each scored on the features of a
//! stream of events — the work a shard adds per event — and the in-process
//! pipeline (identity → profile → features → score) with the GBM active
//! against no model, alternating in the same run.

use std::sync::{Arc, RwLock};
use std::time::Instant;

use kairos_engine::{EngineSettings, EngineState};
use kairos_insights::gbm::{Gbm, GbmParams};
use kairos_insights::logistic::Logistic;
use kairos_models::{FeatureState, Mode, ModelSet, ModelSpec};
use serde_json::{Map, json};

const INPUTS: [&str; 8] = [
    "session.events",
    "session.page_views",
    "session.product_views",
    "session.cart_adds",
    "session.distinct_products",
    "session.duration_seconds",
    "context.hour",
    "profile.orders",
];

/// Synthetic training rows: buying depends on views, cart adds and time.
fn training_rows() -> (Vec<Vec<f64>>, Vec<bool>) {
    let mut state = 0x2545_F491_4F6C_DD1D_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 10_000) as f64 / 10_000.0
    };
    (0..5_000)
        .map(|_| {
            let row: Vec<f64> = (0..INPUTS.len())
                .map(|j| next() * (j as f64 + 2.0) * 5.0)
                .collect();
            let buys = row[3] * 0.4 + row[2] * 0.1 - row[5] * 0.02 + next() * 4.0 > 5.0;
            (row, buys)
        })
        .unzip()
}

fn spec(name: &str, format: &str, model: serde_json::Value) -> ModelSpec {
    ModelSpec {
        name: name.into(),
        version: 1,
        format: format.into(),
        inputs: INPUTS.iter().map(|input| input.to_string()).collect(),
        mode: Mode::Active,
        created_at: jiff::Timestamp::now(),
        model,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The benchmark's 300-tree model (depth ≤ 6) on the synthetic rows.
fn gbm_300() -> Gbm {
    let (rows, labels) = training_rows();
    Gbm::fit(
        &rows,
        &labels,
        &GbmParams {
            trees: 300,
            max_depth: 6,
            ..GbmParams::default()
        },
    )
}

/// Prints the `POST /v1/models` body of the 300-tree model, active, for
/// the HTTP benchmark (`bench/ingest-models.sh`).
pub fn print_spec() {
    let spec = spec("gbm_300", "gbm", json!(gbm_300()));
    println!(
        "{}",
        json!({"name": spec.name, "format": spec.format, "inputs": spec.inputs,
               "mode": "active", "model": spec.model})
    );
}

pub fn run(count: usize, people: usize, runs: usize) {
    let (rows, labels) = training_rows();
    let started = Instant::now();
    let gbm = gbm_300();
    println!(
        "trained 300 trees in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let logistic = Logistic::fit(&rows, &labels, 1.0);
    let events = crate::profiles::shared_events(count, people);
    for (name, model) in [
        ("gbm_300", spec("gbm_300", "gbm", json!(gbm))),
        ("logistic", spec("logistic", "logistic", json!(logistic))),
    ] {
        let (set, problems) = ModelSet::load(&[model]);
        assert!(problems.is_empty(), "{problems:?}");
        let mut costs = Vec::new();
        for _ in 0..runs {
            // Features of a stream of events, one person at a time.
            let mut states = vec![FeatureState::default(); people.min(10_000)];
            let empty = Map::new();
            let mut checksum = 0.0;
            let started = Instant::now();
            for (index, event) in events.iter().enumerate() {
                let slots = states.len();
                let state = &mut states[index % slots];
                state.observe(event);
                let scores = set.score(state, &empty, &empty);
                checksum += scores.active.values().sum::<f64>();
            }
            let per_event = started.elapsed().as_secs_f64() / events.len() as f64;
            costs.push(per_event * 1e6);
            std::hint::black_box(checksum);
        }
        println!(
            "{name}: features + score {:.2} µs per event (median of {runs}; runs {:?})",
            median(costs.clone()),
            costs
                .iter()
                .map(|cost| format!("{cost:.2}"))
                .collect::<Vec<_>>()
        );
    }
    // The engine's in-process pipeline, with and without the GBM.
    let (with_gbm, _) = ModelSet::load(&[spec("gbm_300", "gbm", json!(gbm))]);
    let with_gbm = Arc::new(with_gbm);
    let mut rates = (Vec::new(), Vec::new());
    for _ in 0..runs {
        for active in [false, true] {
            let settings = EngineSettings {
                models: Arc::new(RwLock::new(if active {
                    with_gbm.clone()
                } else {
                    Arc::new(ModelSet::default())
                })),
                ..EngineSettings::default()
            };
            let mut state = EngineState::new(settings);
            let started = Instant::now();
            for event in &events {
                state.apply_shared(event.clone());
            }
            let rate = events.len() as f64 / started.elapsed().as_secs_f64();
            if active {
                rates.1.push(rate)
            } else {
                rates.0.push(rate)
            }
        }
    }
    let (none, gbm) = (median(rates.0), median(rates.1));
    println!(
        "pipeline: no model {none:.0} events/s, 300-tree GBM active {gbm:.0} events/s (ratio {:.2}; medians of {runs})",
        gbm / none
    );
}
