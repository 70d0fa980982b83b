//! Session-kNN of Ludewig & Jannach (2018) as session-rec implements it.
//!
//! - **S-kNN** (`ContextKNN`): candidates = every training session sharing
//!   an item with the current session, the `sample_size` most recent kept;
//!   similarity = cosine of the item sets, |A∩B| / sqrt(|A|·|B|); the k
//!   most similar; score(i) = Σ similarity of the neighbours holding i.
//! - **V-SKNN** (`VMContextKNN`): the same candidates; the current
//!   session's items weighted by position (`div`: p / L, p = 1 the oldest;
//!   a repeated item takes its last position); similarity = Σ weights of
//!   the shared items / distinct items of the current session; a
//!   neighbour's items scored by similarity × 1/step (`div_score`, step =
//!   how far back the most recent shared click is); the current session's
//!   items are kept (`remind=True`, session-rec's default); no idf.
//!
//! Parameters: k = 100, sample_size = 500, recent sampling — the values
//! Ludewig & Jannach report for these methods on YOOCHOOSE-like data.

use super::{Peer, Training};
use kairos_recommend::session::{ItemKey, KeyMap};

pub const K: usize = 100;
pub const SAMPLE_SIZE: usize = 500;

#[derive(Clone, Copy, PartialEq)]
pub enum Variant {
    Plain,
    Vector,
}

pub struct SessionKnn {
    variant: Variant,
    /// Distinct items per session, sorted (a set).
    sets: Vec<Vec<ItemKey>>,
    last_ms: Vec<i64>,
    item_sessions: Vec<Vec<u32>>,
}

impl SessionKnn {
    pub fn new(training: &Training, variant: Variant) -> SessionKnn {
        let mut item_sessions = vec![Vec::new(); training.items];
        let sets: Vec<Vec<ItemKey>> = training
            .sessions
            .iter()
            .map(|items| {
                let mut set = items.clone();
                set.sort_unstable();
                set.dedup();
                set
            })
            .collect();
        for (session, set) in sets.iter().enumerate() {
            for item in set {
                item_sessions[*item as usize].push(session as u32);
            }
        }
        SessionKnn {
            variant,
            sets,
            last_ms: training.last_ms.clone(),
            item_sessions,
        }
    }

    /// The `sample_size` most recent sessions sharing an item with `prefix`.
    fn sample(&self, prefix: &[ItemKey]) -> Vec<u32> {
        let mut relevant: Vec<u32> = Vec::new();
        for item in prefix {
            if let Some(list) = self.item_sessions.get(*item as usize) {
                relevant.extend_from_slice(list);
            }
        }
        relevant.sort_unstable();
        relevant.dedup();
        if relevant.len() > SAMPLE_SIZE {
            let recent = |a: &u32, b: &u32| {
                self.last_ms[*b as usize]
                    .cmp(&self.last_ms[*a as usize])
                    .then(a.cmp(b))
            };
            relevant.select_nth_unstable_by(SAMPLE_SIZE - 1, recent);
            relevant.truncate(SAMPLE_SIZE);
        }
        relevant
    }

    fn similarity(
        &self,
        set: &[ItemKey],
        prefix_set: &[ItemKey],
        weights: &KeyMap<ItemKey, f64>,
    ) -> f64 {
        match self.variant {
            Variant::Plain => {
                let shared = set
                    .iter()
                    .filter(|item| prefix_set.binary_search(item).is_ok())
                    .count();
                shared as f64 / ((set.len() * prefix_set.len()) as f64).sqrt()
            }
            Variant::Vector => {
                let sum: f64 = set.iter().filter_map(|item| weights.get(item)).sum();
                sum / weights.len() as f64
            }
        }
    }
}

impl Peer for SessionKnn {
    fn name(&self) -> String {
        match self.variant {
            Variant::Plain => "S-kNN (k=100, sample=500, cosine)".into(),
            Variant::Vector => "V-SKNN (k=100, sample=500, div, div_score)".into(),
        }
    }

    fn predict(&self, prefix: &[ItemKey], how_many: usize) -> Vec<ItemKey> {
        let mut prefix_set = prefix.to_vec();
        prefix_set.sort_unstable();
        prefix_set.dedup();
        let mut weights: KeyMap<ItemKey, f64> = KeyMap::default();
        for (position, item) in prefix.iter().enumerate() {
            weights.insert(*item, (position + 1) as f64 / prefix.len() as f64);
        }
        let mut neighbours: Vec<(u32, f64)> = self
            .sample(prefix)
            .into_iter()
            .map(|session| {
                (
                    session,
                    self.similarity(&self.sets[session as usize], &prefix_set, &weights),
                )
            })
            .filter(|(_, similarity)| *similarity > 0.0)
            .collect();
        let order = |a: &(u32, f64), b: &(u32, f64)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if neighbours.len() > K {
            neighbours.select_nth_unstable_by(K - 1, order);
            neighbours.truncate(K);
        }
        let mut scores: KeyMap<ItemKey, f64> = KeyMap::default();
        for (session, similarity) in neighbours {
            let set = &self.sets[session as usize];
            let decay = match self.variant {
                Variant::Plain => 1.0,
                Variant::Vector => {
                    let step = prefix
                        .iter()
                        .rev()
                        .position(|item| set.binary_search(item).is_ok())
                        .unwrap_or(0)
                        + 1;
                    1.0 / step as f64
                }
            };
            for item in set {
                *scores.entry(*item).or_default() += similarity * decay;
            }
        }
        super::top(scores, how_many)
    }
}
