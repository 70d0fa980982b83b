//! VMIS-kNN as published (Kersbergen, Sprangers & Schelter, "Serenade —
//! Low-Latency Session-Based Recommendation in e-Commerce at Scale",
//! SIGMOD 2022), implemented from the paper's algorithm and read against
//! serenade's `vmisknn` module (not copied; the `serenade` crate needs
//! rocksdb 0.16, which does not build here).
//!
//! - Index: training sessions longer than the 99.5th percentile of session
//!   lengths are dropped; each session is its set of items and its newest
//!   click time; each item keeps the m most recent sessions holding it,
//!   newest first; idf(i) = ln(Σ session set sizes / sessions holding i).
//! - Neighbours: the evolving session's distinct items, newest first, each
//!   with decay (L - pos) / distinct (pos = 0 the newest); a session's
//!   similarity is the sum of its shared items' decays; only the m most
//!   recent sessions reached are kept (a min-heap on time; an item's list
//!   is read until a session older than the heap's oldest); then the k
//!   most similar (ties: the more recent).
//! - Items: each neighbour adds similarity × w × idf(i) to its items (× 1
//!   when idf is 0), w = 1 - 0.1·p, p the 1-based position from the end of
//!   the newest shared item of the evolving session; the evolving
//!   session's last item is removed.
//!
//! Hyperparameters: m = 500, k = 500, idf weighting 1 — the defaults the
//! authors ship with serenade (`DEFAULT_MOST_RECENT_SESSIONS_M`,
//! `DEFAULT_NEIGHBORHOOD_SIZE_K`, `DEFAULT_IDF_WEIGHTING` in its
//! `src/config.rs`); the paper's own text was not available here to
//! cross-check. Serenade's service also
//! truncates the evolving session to its last 2 clicks
//! (`max_items_in_session = 2`); the paper's algorithm uses the whole
//! session. Both are run.

use super::{Peer, Training};
use kairos_recommend::session::{ItemKey, KeyMap};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

pub const M: usize = 500;
pub const K: usize = 500;

pub struct VmisKnn {
    last_items: Option<usize>,
    sets: Vec<Vec<ItemKey>>,
    last_ms: Vec<i64>,
    /// Per item, the m most recent sessions holding it, newest first.
    item_sessions: Vec<Vec<u32>>,
    idf: Vec<f64>,
}

impl VmisKnn {
    pub fn new(training: &Training, last_items: Option<usize>) -> VmisKnn {
        let mut lengths: Vec<usize> = training.sessions.iter().map(Vec::len).collect();
        lengths.sort_unstable();
        let longest = lengths[((lengths.len() as f64 * 0.995) as usize).min(lengths.len() - 1)];
        let mut sets = Vec::new();
        let mut last_ms = Vec::new();
        for (items, time) in training.sessions.iter().zip(&training.last_ms) {
            if items.len() <= longest {
                let mut set = items.clone();
                set.sort_unstable();
                set.dedup();
                sets.push(set);
                last_ms.push(*time);
            }
        }
        let mut item_sessions: Vec<Vec<u32>> = vec![Vec::new(); training.items];
        for (session, set) in sets.iter().enumerate() {
            for item in set {
                item_sessions[*item as usize].push(session as u32);
            }
        }
        let total: usize = sets.iter().map(Vec::len).sum();
        let idf = item_sessions
            .iter()
            .map(|list| {
                if list.is_empty() {
                    0.0
                } else {
                    (total as f64 / list.len() as f64).ln()
                }
            })
            .collect();
        for list in &mut item_sessions {
            list.sort_by_key(|session| Reverse(last_ms[*session as usize]));
            list.truncate(M);
        }
        VmisKnn {
            last_items,
            sets,
            last_ms,
            item_sessions,
            idf,
        }
    }

    fn neighbours(&self, evolving: &[ItemKey]) -> Vec<(u32, f64)> {
        let mut distinct = evolving.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        let unique = distinct.len() as f64;
        let mut seen: Vec<ItemKey> = Vec::with_capacity(evolving.len());
        let mut similarities: KeyMap<u32, f64> = KeyMap::default();
        let mut oldest: BinaryHeap<Reverse<(i64, u32)>> = BinaryHeap::with_capacity(M);
        for (pos, item) in evolving.iter().rev().enumerate() {
            if seen.contains(item) {
                continue;
            }
            seen.push(*item);
            let Some(list) = self.item_sessions.get(*item as usize) else {
                continue;
            };
            let decay = (evolving.len() - pos) as f64 / unique;
            for session in list {
                if let Some(similarity) = similarities.get_mut(session) {
                    *similarity += decay;
                    continue;
                }
                let time = self.last_ms[*session as usize];
                if similarities.len() < M {
                    similarities.insert(*session, decay);
                    oldest.push(Reverse((time, *session)));
                } else {
                    let mut bottom = oldest.peek_mut().expect("m sessions held");
                    if time > bottom.0.0 {
                        similarities.remove(&bottom.0.1);
                        similarities.insert(*session, decay);
                        *bottom = Reverse((time, *session));
                    } else {
                        break;
                    }
                }
            }
        }
        let mut neighbours: Vec<(u32, f64)> = similarities.into_iter().collect();
        let order = |a: &(u32, f64), b: &(u32, f64)| {
            b.1.total_cmp(&a.1)
                .then(self.last_ms[b.0 as usize].cmp(&self.last_ms[a.0 as usize]))
                .then(a.0.cmp(&b.0))
        };
        if neighbours.len() > K {
            neighbours.select_nth_unstable_by(K - 1, order);
            neighbours.truncate(K);
        }
        neighbours
    }
}

fn linear_score(position: usize) -> f64 {
    if position < 100 {
        1.0 - 0.1 * position as f64
    } else {
        0.0
    }
}

impl Peer for VmisKnn {
    fn name(&self) -> String {
        match self.last_items {
            None => "VMIS-kNN (m=500, k=500, idf; whole session)".into(),
            Some(n) => format!("VMIS-kNN (m=500, k=500, idf; last {n} clicks)"),
        }
    }

    fn predict(&self, prefix: &[ItemKey], how_many: usize) -> Vec<ItemKey> {
        let evolving = match self.last_items {
            Some(n) => &prefix[prefix.len().saturating_sub(n)..],
            None => prefix,
        };
        let mut scores: KeyMap<ItemKey, f64> = KeyMap::default();
        for (session, similarity) in self.neighbours(evolving) {
            let set = &self.sets[session as usize];
            let Some(first_match) = evolving
                .iter()
                .rev()
                .position(|item| set.binary_search(item).is_ok())
            else {
                continue;
            };
            let weight = linear_score(first_match + 1);
            for item in set {
                let idf = self.idf[*item as usize];
                let factor = if idf > 0.0 { idf } else { 1.0 };
                *scores.entry(*item).or_default() += weight * factor * similarity;
            }
        }
        if let Some(last) = evolving.last() {
            scores.remove(last);
        }
        super::top(scores, how_many)
    }
}
