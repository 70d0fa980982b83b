//! Offline next-item evaluation on click files in the YOOCHOOSE format, for
//! `kairos evaluate-recommendations` and the peers benchmark
//! (`examples/next_item_peers.rs`).
//!
//! # Format
//!
//! Tab-separated, one click a line, a header line first:
//! `SessionId<TAB>ItemId<TAB>Time`, where both ids are unsigned integers
//! and `Time` is epoch seconds (a float). Item ids are interned to
//! [`ItemKey`]s shared by both files.
//!
//! # Protocol (the one of serenade's evaluator and session-rec)
//!
//! 1. **Train**: every training click is recorded into a fresh index in
//!    time order (ties: file order).
//! 2. **Test**: each test session (sessions in order of their first click,
//!    clicks in time order) is replayed; for every prefix of length
//!    1..n-1 the recommender predicts [`CUTOFF`] items from the prefix and
//!    the prediction is scored against the next click. Test sessions are
//!    **not** added to the index as they stream (serenade keeps its index
//!    fixed; session-rec's kNN models default to `extend=False`), so every
//!    method sees exactly the training data.
//! 3. **Metrics**, averaged over all predictions: HitRate@20 (the next
//!    click is among the 20) and MRR@20 (1/rank if it is, else 0). Every
//!    prediction counts, including next items never seen in training.
//! 4. **Latency**: wall time of each prediction call alone (the prefix is
//!    ready, the top-20 list is returned), p50 and p99 in microseconds,
//!    nearest rank.

use crate::session::{ItemKey, SessionConfig, SessionIndex, SessionKey};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::Instant;

/// Items predicted per prefix: HitRate@20 and MRR@20.
pub const CUTOFF: usize = 20;

/// One click of a file, its item interned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Click {
    pub session: SessionKey,
    pub item: ItemKey,
    pub time_ms: i64,
}

/// Item ids of the files (u64) to dense [`ItemKey`]s.
#[derive(Debug, Default)]
pub struct Interner {
    keys: HashMap<u64, ItemKey>,
    ids: Vec<u64>,
}

impl Interner {
    pub fn key(&mut self, id: u64) -> ItemKey {
        if let Some(key) = self.keys.get(&id) {
            return *key;
        }
        let key = self.ids.len() as ItemKey;
        self.ids.push(id);
        self.keys.insert(id, key);
        key
    }

    pub fn id(&self, key: ItemKey) -> Option<u64> {
        self.ids.get(key as usize).copied()
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// Reads a click file; errors name the file and line and say what to fix.
pub fn read_clicks(path: &Path, interner: &mut Interner) -> Result<Vec<Click>, String> {
    let file = std::fs::File::open(path)
        .map_err(|error| format!("{}: cannot open: {error}", path.display()))?;
    let mut clicks = Vec::new();
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let number = index + 1;
        let line =
            line.map_err(|error| format!("{}:{number}: cannot read: {error}", path.display()))?;
        if number == 1 {
            check_header(&line).map_err(|error| format!("{}:1: {error}", path.display()))?;
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        let click = parse_click(&line, interner)
            .map_err(|error| format!("{}:{number}: {error}", path.display()))?;
        clicks.push(click);
    }
    Ok(clicks)
}

fn check_header(line: &str) -> Result<(), String> {
    let columns: Vec<&str> = line.trim_end().split('\t').collect();
    let expected = ["sessionid", "itemid", "time"];
    let matches = columns.len() == 3
        && columns
            .iter()
            .zip(expected)
            .all(|(column, name)| column.trim().eq_ignore_ascii_case(name));
    if matches {
        Ok(())
    } else {
        Err(format!(
            "expected the header `SessionId<TAB>ItemId<TAB>Time`, found `{line}`"
        ))
    }
}

fn parse_click(line: &str, interner: &mut Interner) -> Result<Click, String> {
    let fields: Vec<&str> = line.trim_end().split('\t').collect();
    if fields.len() != 3 {
        return Err(format!(
            "expected 3 tab-separated fields (SessionId, ItemId, Time), found {}",
            fields.len()
        ));
    }
    let session: u64 = fields[0]
        .trim()
        .parse()
        .map_err(|_| format!("SessionId `{}` is not an unsigned integer", fields[0]))?;
    let item: u64 = fields[1]
        .trim()
        .parse()
        .map_err(|_| format!("ItemId `{}` is not an unsigned integer", fields[1]))?;
    let seconds: f64 = fields[2]
        .trim()
        .parse()
        .ok()
        .filter(|value: &f64| value.is_finite())
        .ok_or_else(|| format!("Time `{}` is not epoch seconds (a number)", fields[2]))?;
    Ok(Click {
        session,
        item: interner.key(item),
        time_ms: (seconds * 1000.0).round() as i64,
    })
}

/// A train/test split ready for the protocol.
#[derive(Debug)]
pub struct Split {
    /// Training clicks in time order (ties: file order).
    pub train: Vec<Click>,
    /// Test sessions' items in time order, sessions by first click.
    pub test: Vec<Vec<ItemKey>>,
    pub interner: Interner,
}

impl Split {
    pub fn load(train: &Path, test: &Path) -> Result<Split, String> {
        let mut interner = Interner::default();
        let mut train = read_clicks(train, &mut interner)?;
        train.sort_by_key(|click| click.time_ms);
        let test = sessions_of(read_clicks(test, &mut interner)?);
        Ok(Split {
            train,
            test,
            interner,
        })
    }

    /// Predictions the protocol makes (prefixes with a next click).
    pub fn predictions(&self) -> usize {
        self.test
            .iter()
            .map(|items| items.len().saturating_sub(1))
            .sum()
    }
}

/// Groups clicks by session: items in time order, sessions by first click.
pub fn sessions_of(mut clicks: Vec<Click>) -> Vec<Vec<ItemKey>> {
    clicks.sort_by_key(|click| click.time_ms);
    let mut order: Vec<SessionKey> = Vec::new();
    let mut items: HashMap<SessionKey, Vec<ItemKey>> = HashMap::new();
    for click in clicks {
        items
            .entry(click.session)
            .or_insert_with(|| {
                order.push(click.session);
                Vec::new()
            })
            .push(click.item);
    }
    order
        .into_iter()
        .map(|session| items.remove(&session).unwrap_or_default())
        .collect()
}

/// Accuracy and latency of one method on one split.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub hitrate: f64,
    pub mrr: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub predictions: usize,
}

impl Report {
    /// `hitrate@20=<v> mrr@20=<v> p50_us=<v> p99_us=<v>`
    pub fn line(&self) -> String {
        format!(
            "hitrate@20={:.4} mrr@20={:.4} p50_us={:.1} p99_us={:.1}",
            self.hitrate, self.mrr, self.p50_us, self.p99_us
        )
    }
}

/// Runs the protocol's test phase: `predict` gets each prefix and returns
/// its ranked items (only the first [`CUTOFF`] count).
pub fn evaluate(
    test: &[Vec<ItemKey>],
    predict: &mut dyn FnMut(&[ItemKey]) -> Vec<ItemKey>,
) -> Report {
    let mut hits = 0usize;
    let mut reciprocal_ranks = 0.0;
    let mut latencies_ns: Vec<u64> = Vec::new();
    for items in test {
        for length in 1..items.len() {
            let started = Instant::now();
            let ranked = predict(&items[..length]);
            latencies_ns.push(started.elapsed().as_nanos() as u64);
            let next = items[length];
            if let Some(rank) = ranked.iter().take(CUTOFF).position(|item| *item == next) {
                hits += 1;
                reciprocal_ranks += 1.0 / (rank + 1) as f64;
            }
        }
    }
    let predictions = latencies_ns.len();
    latencies_ns.sort_unstable();
    let denominator = predictions.max(1) as f64;
    Report {
        hitrate: hits as f64 / denominator,
        mrr: reciprocal_ranks / denominator,
        p50_us: percentile(&latencies_ns, 50.0) / 1000.0,
        p99_us: percentile(&latencies_ns, 99.0) / 1000.0,
        predictions,
    }
}

/// Nearest-rank percentile of sorted values (0 when empty).
pub fn percentile(sorted: &[u64], percent: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((percent / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1] as f64
}

/// Trains an index with `config` on the split's training clicks.
pub fn train(split: &Split, config: SessionConfig) -> SessionIndex {
    let mut index = SessionIndex::new(config);
    for click in &split.train {
        index.record(click.session, click.item, click.time_ms);
    }
    index
}

/// Evaluates a configuration of the shipped recommender on a split.
pub fn evaluate_config(split: &Split, config: SessionConfig) -> Report {
    let index = train(split, config);
    let never = |_: ItemKey| false;
    evaluate(&split.test, &mut |prefix| {
        index
            .recommend(prefix, CUTOFF, &never)
            .into_iter()
            .map(|scored| scored.item)
            .collect()
    })
}

/// The shipped recommender (default configuration) on two files: what
/// `kairos evaluate-recommendations --train FILE --test FILE` prints.
pub fn evaluate_shipped(train: &Path, test: &Path) -> Result<Report, String> {
    let split = Split::load(train, test)?;
    if split.predictions() == 0 {
        return Err(format!(
            "{}: no test session has two clicks, so there is no next click to predict",
            test.display()
        ));
    }
    Ok(evaluate_config(&split, SessionConfig::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> std::path::PathBuf {
        let path =
            std::env::temp_dir().join(format!("kairos-recommend-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn reader_errors_name_the_line() {
        let mut interner = Interner::default();
        let bad_header = write("h.txt", "session,item,time\n1\t2\t3\n");
        let error = read_clicks(&bad_header, &mut interner).unwrap_err();
        assert!(error.contains(":1: expected the header"), "{error}");
        let bad_time = write("t.txt", "SessionId\tItemId\tTime\n1\t2\t3.5\n1\t2\tsoon\n");
        let error = read_clicks(&bad_time, &mut interner).unwrap_err();
        assert!(error.contains(":3: Time `soon`"), "{error}");
        let bad_fields = write("f.txt", "SessionId\tItemId\tTime\n1\t2\n");
        assert!(
            read_clicks(&bad_fields, &mut interner)
                .unwrap_err()
                .contains(":2: expected 3")
        );
    }

    #[test]
    fn protocol_scores_every_prefix_against_the_next_click() {
        // One test session a, b, c: prefixes [a] → b and [a, b] → c.
        let test = vec![vec![1, 2, 3], vec![7]];
        let report = evaluate(&test, &mut |prefix| match prefix.len() {
            1 => vec![9, 2], // hit at rank 2
            _ => vec![9, 8], // miss
        });
        assert_eq!(report.predictions, 2);
        assert_eq!(report.hitrate, 0.5);
        assert_eq!(report.mrr, 0.25);
        assert!(
            report
                .line()
                .starts_with("hitrate@20=0.5000 mrr@20=0.2500 p50_us=")
        );
    }

    #[test]
    fn shipped_recommender_learns_from_the_training_file() {
        let train = write(
            "train.txt",
            "SessionId\tItemId\tTime\n1\t100\t1.0\n1\t200\t2.0\n2\t100\t3.0\n2\t200\t4.0\n",
        );
        let test = write(
            "test.txt",
            "SessionId\tItemId\tTime\n9\t100\t10.0\n9\t200\t11.0\n",
        );
        let report = evaluate_shipped(&train, &test).unwrap();
        assert_eq!(report.predictions, 1);
        assert_eq!(report.hitrate, 1.0);
        assert_eq!(
            report.mrr, 0.5,
            "the reminder of 100 ranks first, 200 second"
        );
    }
}
