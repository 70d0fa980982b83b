//! `kairos match-eval A.csv B.csv`: runs the probabilistic matcher on two
//! FEBRL-style files and scores it against the truth in `rec_id`
//! (`rec-N-org` ↔ `rec-N-dup-k`). Prints precision, recall, F1 and time.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use kairos_core::matching::{FIELDS, MatchConfig, Record, link};

#[derive(clap::Args)]
pub struct MatchEvalArgs {
    file_a: PathBuf,
    file_b: PathBuf,
}

fn load(path: &Path) -> anyhow::Result<(Vec<Record>, Vec<String>)> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let headers = reader.headers()?.clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|header| header == name)
            .with_context(|| format!("{}: no column {name}", path.display()))
    };
    let field_columns = FIELDS
        .iter()
        .map(|field| column(field))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let id_column = column("rec_id")?;
    let (mut records, mut entities) = (Vec::new(), Vec::new());
    for row in reader.records() {
        let row = row?;
        let record: Record =
            std::array::from_fn(|index| row.get(field_columns[index]).unwrap_or("").to_lowercase());
        records.push(record);
        let id = row.get(id_column).unwrap_or("");
        entities.push(id.split('-').nth(1).unwrap_or(id).to_string());
    }
    Ok((records, entities))
}

pub fn run(args: MatchEvalArgs) -> anyhow::Result<()> {
    let (a, entities_a) = load(&args.file_a)?;
    let (b, entities_b) = load(&args.file_b)?;
    let started = Instant::now();
    let linkage = link(&a, &b, &MatchConfig::default());
    let seconds = started.elapsed().as_secs_f64();
    let true_total = entities_a
        .iter()
        .collect::<HashSet<_>>()
        .intersection(&entities_b.iter().collect())
        .count();
    let true_links = linkage
        .links
        .iter()
        .filter(|link| entities_a[link.a] == entities_b[link.b])
        .count();
    let precision = if linkage.links.is_empty() {
        0.0
    } else {
        true_links as f64 / linkage.links.len() as f64
    };
    let recall = if true_total == 0 {
        0.0
    } else {
        true_links as f64 / true_total as f64
    };
    let f1 = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    let review_true = linkage
        .review
        .iter()
        .filter(|link| entities_a[link.a] == entities_b[link.b])
        .count();
    println!(
        "records: {} and {}; true matches: {true_total}",
        a.len(),
        b.len()
    );
    println!(
        "candidate pairs: {} (of {}); EM: {} iterations, match share {:.4}; threshold {:.2} bits",
        linkage.candidate_pairs,
        a.len() * b.len(),
        linkage.em_iterations,
        linkage.match_share,
        linkage.threshold
    );
    for (field, weights) in FIELDS.iter().zip(&linkage.weights) {
        let shown: Vec<String> = weights
            .iter()
            .enumerate()
            .map(|(level, weight)| format!("L{level} {weight:+.2}"))
            .collect();
        println!("  {field:<14} {}", shown.join("  "));
    }
    println!(
        "links: {} (true {true_links}, false {}); review band: {} (true {review_true})",
        linkage.links.len(),
        linkage.links.len() - true_links,
        linkage.review.len()
    );
    println!("precision={precision:.4} recall={recall:.4} f1={f1:.4} seconds={seconds:.3}");
    Ok(())
}
