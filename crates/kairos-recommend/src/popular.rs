//! Popular and trending items: an exponentially decayed count per item,
//! and a leaderboard that never needs a rebuild.
//!
//! A count decayed with half-life `h` compares between items at any common
//! time `t` as `ln(count at t_i) + t_i · ln 2 / h`, where `t_i` is the
//! item's last update: the order does not change while time passes, only
//! when an item is clicked, and then its key only grows. So the ordered
//! head of the board — the [`HEAD_MAX`] highest keys — is exact at all
//! times: an item outside it can only enter by passing its lowest key, which
//! is one comparison per click (most clicks of a long catalog's tail cost a
//! hash-map update and nothing more). A request reads the head; when rules
//! leave too few of its items, it scans every count (rare, and linear).
//! "Popular" uses a week's half-life, "trending" an hour's: an item trends
//! when it is clicked a lot now.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::session::{ItemKey, KeyMap};

/// Half-life of "popular" (ms): last week's favourites.
pub const POPULAR_HALF_LIFE_MS: f64 = 7.0 * 24.0 * 3600.0 * 1000.0;
/// Half-life of "trending" (ms): what is being clicked this hour.
pub const TRENDING_HALF_LIFE_MS: f64 = 3600.0 * 1000.0;
/// Items kept in order at the head of a board: ten times the candidates
/// of the largest request (100 items × 5), so filters rarely need the
/// linear scan; small enough that its updates stay in cache.
pub const HEAD_MAX: usize = 5_000;

/// One decayed leaderboard.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Leaderboard {
    half_life_ms: f64,
    /// Per item: its count at its last update, and that update's time.
    counts: KeyMap<ItemKey, (f64, i64)>,
    /// The [`HEAD_MAX`] highest `(key, item)` (rebuilt after decoding).
    #[serde(skip)]
    head: BTreeSet<(u64, ItemKey)>,
}

impl Leaderboard {
    pub fn new(half_life_ms: f64) -> Leaderboard {
        Leaderboard {
            half_life_ms,
            counts: KeyMap::default(),
            head: BTreeSet::new(),
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
        let known = self.counts.get(&item).copied();
        let (count, last) = known.unwrap_or((0.0, at_ms));
        // An event older than the last update adds its decayed weight.
        let (count, at) = if at_ms >= last {
            (count * decay(at_ms - last, half_life) + weight, at_ms)
        } else {
            (count + weight * decay(last - at_ms, half_life), last)
        };
        self.counts.insert(item, (count, at));
        if let Some((old_count, old_at)) = known {
            self.head.remove(&(self.key(old_count, old_at), item));
        }
        self.enter_head(item, self.key(count, at));
    }

    /// Puts an item into the head if its key is among the highest.
    fn enter_head(&mut self, item: ItemKey, key: u64) {
        if self.head.len() >= HEAD_MAX {
            match self.head.first() {
                Some(lowest) if lowest.0 >= key => return,
                _ => {
                    self.head.pop_first();
                }
            }
        }
        self.head.insert((key, item));
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
        let mut found: Vec<ItemKey> = self
            .head
            .iter()
            .rev()
            .map(|(_, item)| *item)
            .filter(|item| !skip(*item))
            .take(limit)
            .collect();
        if found.len() < limit && self.counts.len() > self.head.len() {
            found = self.scan(limit, skip);
        }
        found
            .into_iter()
            .map(|item| (item, self.count(item, now_ms)))
            .collect()
    }

    /// Every count ranked: when rules left too few of the head.
    fn scan(&self, limit: usize, skip: &dyn Fn(ItemKey) -> bool) -> Vec<ItemKey> {
        let mut ranked: Vec<(u64, ItemKey)> = self
            .counts
            .iter()
            .filter(|(item, _)| !skip(**item))
            .map(|(item, (count, at))| (self.key(*count, *at), *item))
            .collect();
        let limit = limit.min(ranked.len());
        if limit == 0 {
            return Vec::new();
        }
        ranked.select_nth_unstable_by(limit - 1, |a, b| b.cmp(a));
        ranked.truncate(limit);
        ranked.sort_unstable_by(|a, b| b.cmp(a));
        ranked.into_iter().map(|(_, item)| item).collect()
    }

    /// Rebuilds the head after decoding (it is not stored).
    pub fn reindex(&mut self) {
        let mut ranked: Vec<(u64, ItemKey)> = self
            .counts
            .iter()
            .map(|(item, (count, at))| (self.key(*count, *at), *item))
            .collect();
        ranked.sort_unstable_by(|a, b| b.cmp(a));
        ranked.truncate(HEAD_MAX);
        self.head = ranked.into_iter().collect();
    }

    pub fn len(&self) -> usize {
        self.counts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Bytes held, roughly (a hash-map entry per item, the head).
    pub fn memory_bytes(&self) -> usize {
        self.counts.len() * (4 + 16 + 8) * 2 + self.head.len() * 12 * 2
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
    fn the_head_holds_the_highest_and_a_scan_serves_what_it_lacks() {
        let mut board = Leaderboard::new(HOUR as f64);
        // HEAD_MAX + 500 items, item n clicked n times: the head keeps the
        // top; items past it still count.
        let items = (HEAD_MAX + 500) as u32;
        for item in 1..=items {
            board.add(item, f64::from(item), 0);
        }
        assert_eq!(board.head.len(), HEAD_MAX);
        assert_eq!(board.top(1, 0, &|_| false)[0].0, items);
        // A rule that refuses every head item: the scan finds the rest in order.
        let low = |item: ItemKey| item > 400;
        let found: Vec<ItemKey> = board
            .top(3, 0, &low)
            .into_iter()
            .map(|(item, _)| item)
            .collect();
        assert_eq!(found, vec![400, 399, 398]);
        // A tail item clicked enough enters the head.
        for _ in 0..(items * 2) {
            board.add(7, 1.0, 0);
        }
        assert_eq!(board.top(1, 0, &|_| false)[0].0, 7);
        let mut copy = board.clone();
        copy.reindex();
        assert_eq!(copy.head, board.head);
    }

    #[test]
    fn a_late_event_adds_its_decayed_weight() {
        let mut board = Leaderboard::new(HOUR as f64);
        board.add(1, 1.0, 2 * HOUR);
        board.add(1, 1.0, HOUR);
        assert!((board.count(1, 2 * HOUR) - 1.5).abs() < 1e-9);
    }
}
