//! Tunes the shipped session recommender's weights on the validation split
//! (`train_tr` → `train_valid`), never on `test`: coordinate ascent on
//! HR@20 + MRR@20 over a grid per parameter, from the current defaults.
//!
//! ```sh
//! cargo run --release -p kairos-recommend --example tune_session -- [--passes 2]
//! ```

use kairos_recommend::evaluate::{Report, Split, evaluate_config};
use kairos_recommend::session::SessionConfig;
use std::path::PathBuf;

const DATA: &str = "../shared/data/yoochoose_sample";

type Setter = fn(&mut SessionConfig, f64);

fn grid() -> Vec<(&'static str, Setter, Vec<f64>)> {
    vec![
        (
            "remind_weight",
            |c, v| c.remind_weight = v,
            vec![0.0, 1.0, 2.0, 3.0, 5.0, 8.0, 12.0, 20.0],
        ),
        (
            "position_decay",
            |c, v| c.position_decay = v,
            vec![0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 100.0],
        ),
        (
            "last_items",
            |c, v| c.last_items = v as usize,
            vec![1.0, 2.0, 3.0, 5.0, 10.0, 20.0],
        ),
        (
            "sample_size",
            |c, v| c.sample_size = v as usize,
            vec![250.0, 500.0, 1000.0, 1500.0],
        ),
        (
            "neighbours",
            |c, v| c.neighbours = v as usize,
            vec![50.0, 75.0, 100.0, 150.0, 200.0],
        ),
        (
            "length_norm",
            |c, v| c.length_norm = v,
            vec![0.0, 0.25, 0.5, 0.75, 1.0],
        ),
        (
            "proximity_decay",
            |c, v| c.proximity_decay = v,
            vec![0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 1000.0],
        ),
        (
            "before_weight",
            |c, v| c.before_weight = v,
            vec![0.0, 0.25, 0.5, 0.75, 1.0],
        ),
        (
            "idf_weight",
            |c, v| c.idf_weight = v,
            vec![0.0, 0.1, 0.5, 1.0, 2.0, 4.0],
        ),
        (
            "sessions_per_item",
            |c, v| c.sessions_per_item = v as usize,
            vec![100.0, 250.0, 500.0, 1000.0],
        ),
    ]
}

fn objective(report: &Report) -> f64 {
    report.hitrate + report.mrr
}

fn main() -> Result<(), String> {
    let passes: usize = std::env::args()
        .nth(2)
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let data = PathBuf::from(DATA);
    let split = Split::load(
        &data.join("yoochoose-clicks-100k_train_tr.txt"),
        &data.join("yoochoose-clicks-100k_train_valid.txt"),
    )?;
    let mut best = SessionConfig::default();
    let mut best_report = evaluate_config(&split, best.clone());
    println!("defaults: {}", best_report.line());
    for pass in 1..=passes {
        for (name, set, values) in grid() {
            for value in values {
                let mut config = best.clone();
                set(&mut config, value);
                if config == best {
                    continue;
                }
                let report = evaluate_config(&split, config.clone());
                if objective(&report) > objective(&best_report) + 1e-6 {
                    println!("pass {pass}: {name}={value} → {}", report.line());
                    best = config;
                    best_report = report;
                }
            }
        }
    }
    println!("best: {}\n{best:#?}", best_report.line());
    Ok(())
}
