//! Popular and trending items: an exponentially decayed count per item,
//! kept in a leaderboard that never needs a rebuild.
//!
//! A count decayed with half-life `h` compares between items at any common
//! time `t` as `ln(count at t_i) + t_i · ln 2 / h`, where `t_i` is the
//! item's last update: the order does not change while time passes, only
//! when an item is clicked. So each click moves one entry of an ordered
//! set (O(log n)), and the top k is read off its end. "Popular" uses a
//! week's half-life, "trending" an hour's: an item trends when it is
//! clicked a lot now.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::session::ItemKey;

/// Half-life of "popular" (ms): last week's favourites.
pub const POPULAR_HALF_LIFE_MS: f64 = 7.0 * 24.0 * 3600.0 * 1000.0;
/// Half-life of "trending" (ms): what is being clicked this hour.
pub const TRENDING_HALF_LIFE_MS: f64 = 3600.0 * 1000.0;

/// One decayed leaderboard.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Leaderboard {
    half_life_ms: f64,
    /// Per item: its count at its last update, and that update's time.
    counts: HashMap<ItemKey, (f64, i64)>,
    #[serde(skip)]
    order: BTreeSet<(u64, ItemKey)>,
}

impl Leaderboard {
    pub fn new(half_life_ms: f64) -> Leaderboard {
        Leaderboard {
            half_life_ms,
            counts: HashMap::new(),
            order: BTreeSet::new(),
        }
    }

    /// The time-invariant rank key of a count at a time (always ≥ 0 for
    /// counts ≥ 1 at times ≥ 0, so its bits order as the number does).
    fn key(&self, count: f64, at_ms: i64) -> u64 {
        let key = count.max(1.0).ln()
            + (at_ms.max(0) as f64) * std::f64::consts::LN_2 / self.half_life_ms;
        key.to_bits()
    }

    /// Adds `weight` clicks of `item` at `at_ms`.
    pub fn add(&mut self, item: ItemKey, weight: f64, at_ms: i64) {
        let half_life = self.half_life_ms;
        let (count, last) = self.counts.get(&item).copied().unwrap_or((0.0, at_ms));
        if count > 0.0 {
            self.order.remove(&(self.key(count, last), item));
        }
        // An event older than the last update adds its decayed weight.
        let (count, at) = if at_ms >= last {
            (count * decay(at_ms - last, half_life) + weight, at_ms)
        } else {
            (count + weight * decay(last - at_ms, half_life), last)
        };
        self.counts.insert(item, (count, at));
        self.order.insert((self.key(count, at), item));
    }

    /// The item's decayed count at `now_ms`.
    pub fn count(&self, item: ItemKey, now_ms: i64) -> f64 {
        self.counts.get(&item).map_or(0.0, |(count, at)| {
            count * decay((now_ms - at).max(0), self.half_life_ms)
        })
    }

    /// Items best first, with their decayed counts at `now_ms`, skipping
    /// those `skip` refuses, at most `limit`.
    pub fn top(
        &self,
        limit: usize,
        now_ms: i64,
        skip: &dyn Fn(ItemKey) -> bool,
    ) -> Vec<(ItemKey, f64)> {
        self.order
            .iter()
            .rev()
            .map(|(_, item)| *item)
            .filter(|item| !skip(*item))
            .take(limit)
            .map(|item| (item, self.count(item, now_ms)))
            .collect()
    }

    /// Rebuilds the ordered set after decoding (it is not stored).
    pub fn reindex(&mut self) {
        let order = self
            .counts
            .iter()
            .map(|(item, (count, at))| (self.key(*count, *at), *item))
            .collect();
        self.order = order;
    }

    pub fn len(&self) -> usize {
        self.counts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Bytes held, roughly (two entries per item).
    pub fn memory_bytes(&self) -> usize {
        self.counts.len() * (4 + 16 + 8) * 2 + self.order.len() * 12 * 2
    }
}

fn decay(elapsed_ms: i64, half_life_ms: f64) -> f64 {
    (-(elapsed_ms as f64) * std::f64::consts::LN_2 / half_life_ms).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    #[test]
    fn recent_clicks_outrank_old_ones_once_enough_time_passed() {
        let mut board = Leaderboard::new(HOUR as f64);
        for _ in 0..4 {
            board.add(1, 1.0, 0);
        }
        board.add(2, 1.0, 3 * HOUR);
        board.add(2, 1.0, 3 * HOUR);
        // 4 clicks three half-lives ago are worth 0.5; 2 clicks now are 2.
        let top = board.top(2, 3 * HOUR, &|_| false);
        assert_eq!(
            top.iter().map(|(item, _)| *item).collect::<Vec<_>>(),
            vec![2, 1]
        );
        assert!((top[1].1 - 0.5).abs() < 1e-9);
    }

    #[test]
    fn skip_is_honoured_and_the_order_survives_a_round_trip() {
        let mut board = Leaderboard::new(HOUR as f64);
        for (item, clicks) in [(1, 3), (2, 2), (3, 1)] {
            for _ in 0..clicks {
                board.add(item, 1.0, 10);
            }
        }
        assert_eq!(
            board
                .top(2, 10, &|item| item == 1)
                .iter()
                .map(|(i, _)| *i)
                .collect::<Vec<_>>(),
            vec![2, 3]
        );
        let mut copy: Leaderboard =
            serde_json::from_str(&serde_json::to_string(&board).unwrap()).unwrap();
        copy.reindex();
        assert_eq!(copy.top(3, 10, &|_| false), board.top(3, 10, &|_| false));
    }

    #[test]
    fn a_late_event_adds_its_decayed_weight() {
        let mut board = Leaderboard::new(HOUR as f64);
        board.add(1, 1.0, 2 * HOUR);
        board.add(1, 1.0, HOUR);
        assert!((board.count(1, 2 * HOUR) - 1.5).abs() < 1e-9);
    }
}
