//! Next-item benchmark: the shipped session recommender against its peers
//! (VMIS-kNN as published, S-kNN and V-SKNN of Ludewig & Jannach 2018,
//! item-kNN, popularity) in one run, on one split, through the protocol of
//! `kairos_recommend::evaluate` (train in time order, predict every next
//! click of every test session from its prefix, test sessions not added).
//!
//! ```sh
//! cargo run --release -p kairos-recommend --example next_item_peers -- \
//!     [--train FILE] [--test FILE] [--runs 3]
//! ```
//!
//! Accuracy is deterministic; latency is the median over `--runs` runs
//! (methods interleaved within each run) of each run's p50 and p99.

#[path = "peers/mod.rs"]
mod peers;

use kairos_recommend::evaluate::{self, CUTOFF, Report, Split};
use kairos_recommend::session::{ItemKey, SessionConfig};
use peers::{Peer, Training};
use std::path::PathBuf;
use std::time::Instant;

const DATA: &str = "../shared/data/yoochoose_sample";

struct Shipped(kairos_recommend::session::SessionIndex, &'static str);

impl Peer for Shipped {
    fn name(&self) -> String {
        self.1.into()
    }
    fn predict(&self, prefix: &[ItemKey], how_many: usize) -> Vec<ItemKey> {
        self.0
            .recommend(prefix, how_many, &|_| false)
            .into_iter()
            .map(|scored| scored.item)
            .collect()
    }
}

fn argument(name: &str) -> Option<String> {
    let arguments: Vec<String> = std::env::args().collect();
    arguments
        .iter()
        .position(|argument| argument == name)
        .and_then(|at| arguments.get(at + 1).cloned())
}

fn main() -> Result<(), String> {
    let train = argument("--train")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DATA).join("yoochoose-clicks-100k_train_full.txt"));
    let test = argument("--test")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DATA).join("yoochoose-clicks-100k_test.txt"));
    let runs: usize = argument("--runs").map_or(Ok(3), |runs| {
        runs.parse().map_err(|_| "--runs takes a number")
    })?;
    let split = Split::load(&train, &test)?;
    println!(
        "train {} ({} clicks) → test {} ({} sessions, {} predictions); {runs} runs",
        train.display(),
        split.train.len(),
        test.display(),
        split.test.len(),
        split.predictions()
    );
    let methods = build_methods(&split);
    let mut reports: Vec<Vec<Report>> = vec![Vec::new(); methods.len()];
    for _ in 0..runs.max(1) {
        for (at, method) in methods.iter().enumerate() {
            reports[at].push(evaluate::evaluate(&split.test, &mut |prefix| {
                method.predict(prefix, CUTOFF)
            }));
        }
    }
    println!();
    println!("| method | HR@20 | MRR@20 | p50 µs | p99 µs | HR@20 new | MRR@20 new |");
    println!("|---|---|---|---|---|---|---|");
    for (method, runs) in methods.iter().zip(&reports) {
        let p50 = median(runs.iter().map(|report| report.p50_us).collect());
        let p99 = median(runs.iter().map(|report| report.p99_us).collect());
        let (new_hitrate, new_mrr) = new_item_accuracy(&split.test, method.as_ref());
        println!(
            "| {} | {:.4} | {:.4} | {p50:.1} | {p99:.1} | {new_hitrate:.4} | {new_mrr:.4} |",
            method.name(),
            runs[0].hitrate,
            runs[0].mrr
        );
    }
    println!(
        "\n\"new\": only the predictions whose next click is not yet in the session (discovery)."
    );
    Ok(())
}

fn build_methods(split: &Split) -> Vec<Box<dyn Peer>> {
    let training = Training::new(&split.train, split.interner.len());
    let started = Instant::now();
    let shipped = Shipped(
        evaluate::train(split, SessionConfig::default()),
        "kairos (shipped defaults)",
    );
    eprintln!(
        "shipped index built in {:.1} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
    vec![
        Box::new(shipped),
        Box::new(Shipped(
            evaluate::train(
                split,
                SessionConfig {
                    remind_weight: 0.0,
                    ..SessionConfig::default()
                },
            ),
            "kairos without reminders (remind_weight=0)",
        )),
        Box::new(peers::vmis_knn::VmisKnn::new(&training, None)),
        Box::new(peers::vmis_knn::VmisKnn::new(&training, Some(2))),
        Box::new(peers::session_knn::SessionKnn::new(
            &training,
            peers::session_knn::Variant::Vector,
        )),
        Box::new(peers::session_knn::SessionKnn::new(
            &training,
            peers::session_knn::Variant::Plain,
        )),
        Box::new(peers::item_knn::ItemKnn::new(&training)),
        Box::new(peers::popularity::Popularity::new(&training)),
    ]
}

/// HR@20 and MRR@20 over the predictions whose next click is new to the
/// session: what a "related items" widget that skips seen items can earn.
fn new_item_accuracy(test: &[Vec<ItemKey>], method: &dyn Peer) -> (f64, f64) {
    let (mut hits, mut reciprocal_ranks, mut predictions) = (0usize, 0.0, 0usize);
    for items in test {
        for length in 1..items.len() {
            let (prefix, next) = (&items[..length], items[length]);
            if prefix.contains(&next) {
                continue;
            }
            predictions += 1;
            if let Some(rank) = method
                .predict(prefix, CUTOFF)
                .iter()
                .position(|item| *item == next)
            {
                hits += 1;
                reciprocal_ranks += 1.0 / (rank + 1) as f64;
            }
        }
    }
    let predictions = predictions.max(1) as f64;
    (hits as f64 / predictions, reciprocal_ranks / predictions)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
