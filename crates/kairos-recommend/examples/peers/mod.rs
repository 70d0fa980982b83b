//! The peers of the shipped recommender, implemented here from their
//! papers and reference code (read, not copied) so that they run in the
//! same process, on the same split, through the same protocol
//! (`kairos_recommend::evaluate`).

pub mod item_knn;
pub mod popularity;
pub mod session_knn;
pub mod vmis_knn;

use kairos_recommend::evaluate::Click;
use kairos_recommend::session::{ItemKey, KeyMap};
use std::collections::HashMap;

/// A next-item method: ranked items for a prefix of a test session.
pub trait Peer {
    fn name(&self) -> String;
    fn predict(&self, prefix: &[ItemKey], how_many: usize) -> Vec<ItemKey>;
}

/// Training sessions as every peer reads them.
pub struct Training {
    /// Clicks per session in time order (duplicates kept).
    pub sessions: Vec<Vec<ItemKey>>,
    /// Newest click time per session (ms).
    pub last_ms: Vec<i64>,
    /// One more than the largest item key.
    pub items: usize,
}

impl Training {
    /// Groups time-ordered clicks by session (sessions by first click).
    pub fn new(train: &[Click], items: usize) -> Training {
        let mut slot: HashMap<u64, usize> = HashMap::new();
        let mut sessions: Vec<Vec<ItemKey>> = Vec::new();
        let mut last_ms = Vec::new();
        for click in train {
            let at = *slot.entry(click.session).or_insert_with(|| {
                sessions.push(Vec::new());
                last_ms.push(click.time_ms);
                sessions.len() - 1
            });
            sessions[at].push(click.item);
            last_ms[at] = last_ms[at].max(click.time_ms);
        }
        Training {
            sessions,
            last_ms,
            items,
        }
    }

    /// Clicks per item.
    pub fn clicks(&self) -> Vec<u64> {
        let mut clicks = vec![0u64; self.items];
        for session in &self.sessions {
            for item in session {
                clicks[*item as usize] += 1;
            }
        }
        clicks
    }
}

/// The `how_many` best items by score, ties by the smaller key.
pub fn top(scores: KeyMap<ItemKey, f64>, how_many: usize) -> Vec<ItemKey> {
    let mut ranked: Vec<(ItemKey, f64)> = scores.into_iter().collect();
    let order = |a: &(ItemKey, f64), b: &(ItemKey, f64)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if ranked.len() > how_many {
        ranked.select_nth_unstable_by(how_many - 1, order);
        ranked.truncate(how_many);
    }
    ranked.sort_unstable_by(order);
    ranked.into_iter().map(|(item, _)| item).collect()
}
