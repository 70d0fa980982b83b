//! Answering: candidates → neighbours → item scores → the top, skipping
//! what the caller's business rules exclude. See the module doc of
//! [`super`] for the formula.

use super::{ItemKey, KeyMap, REASONS_PER_ITEM, Scored, SessionIndex, SessionKey, Slot};
use std::cmp::Ordering;

/// One item of the evolving session: its weight by age (0 = newest click).
#[derive(Clone, Copy)]
struct QueryItem {
    item: ItemKey,
    weight: f64,
}

/// A candidate neighbour while similarities accumulate.
#[derive(Clone, Copy)]
struct Candidate {
    similarity: f64,
    /// The newest evolving item it shares (found first: newest first).
    matched: ItemKey,
    matched_weight: f64,
}

/// A sampled candidate: its slot, similarity, newest click ms and key (ties
/// are broken by key, not slot, so a restored index answers the same).
type Sampled = (Slot, Candidate, i64, SessionKey);

/// An item's score while neighbours add to it.
#[derive(Clone, Copy, Default)]
struct Accumulator {
    score: f64,
    /// The neighbour (by rank) that last added to it, and its best
    /// proximity there: an item clicked twice in a neighbour counts once.
    neighbour: usize,
    proximity: f64,
    reasons: [(f64, Slot); REASONS_PER_ITEM],
}

impl SessionIndex {
    /// Next items for an evolving session given oldest click first, best
    /// first. `skip` applies the caller's business rules while the top is
    /// chosen, so `limit` items come back when that many qualify.
    pub fn recommend(
        &self,
        evolving: &[ItemKey],
        limit: usize,
        skip: &dyn Fn(ItemKey) -> bool,
    ) -> Vec<Scored> {
        self.recommend_excluding(evolving, None, limit, skip)
    }

    /// Next items for a stored session: its own clicks are the evolving
    /// session, and it is never its own neighbour.
    pub fn recommend_for(
        &self,
        session: SessionKey,
        limit: usize,
        skip: &dyn Fn(ItemKey) -> bool,
    ) -> Vec<Scored> {
        let items = self.session_items(session).unwrap_or(&[]);
        self.recommend_excluding(items, Some(session), limit, skip)
    }

    /// Next items for `evolving`, never taking the stored session `exclude`
    /// (the live session these clicks come from) as a neighbour.
    pub fn recommend_excluding(
        &self,
        evolving: &[ItemKey],
        exclude: Option<SessionKey>,
        limit: usize,
        skip: &dyn Fn(ItemKey) -> bool,
    ) -> Vec<Scored> {
        if evolving.is_empty() || limit == 0 {
            return Vec::new();
        }
        let query = self.query_items(evolving);
        let neighbours = self.neighbours(&query, exclude);
        let mut scores = self.score_items(&neighbours);
        // The session's own items come back only as reminders.
        for entry in &query {
            scores.remove(&entry.item);
        }
        self.add_reminders(&query, &mut scores);
        select_top(scores, limit, skip, &|slot| self.slots[slot as usize].key)
    }

    /// The distinct items of the session's last clicks, newest first.
    fn query_items(&self, evolving: &[ItemKey]) -> Vec<QueryItem> {
        let last = &evolving[evolving.len().saturating_sub(self.config.last_items.max(1))..];
        let decay = self.config.position_decay.max(f64::MIN_POSITIVE);
        let mut query: Vec<QueryItem> = Vec::with_capacity(last.len());
        for (age, item) in last.iter().rev().enumerate() {
            if query.iter().all(|seen| seen.item != *item) {
                query.push(QueryItem {
                    item: *item,
                    weight: (-(age as f64) / decay).exp(),
                });
            }
        }
        query
    }

    /// The k nearest sessions among the most recent candidates, best first.
    fn neighbours(
        &self,
        query: &[QueryItem],
        exclude: Option<SessionKey>,
    ) -> Vec<(Slot, Candidate)> {
        let reachable: usize = query
            .iter()
            .filter_map(|entry| self.items.get(&entry.item))
            .map(|state| state.sessions.len())
            .sum();
        let mut candidates: KeyMap<Slot, Candidate> =
            KeyMap::with_capacity_and_hasher(reachable, Default::default());
        for entry in query {
            let Some(state) = self.items.get(&entry.item) else {
                continue;
            };
            for slot in &state.sessions {
                candidates
                    .entry(*slot)
                    .and_modify(|candidate| candidate.similarity += entry.weight)
                    .or_insert(Candidate {
                        similarity: entry.weight,
                        matched: entry.item,
                        matched_weight: entry.weight,
                    });
            }
        }
        if let Some(slot) = exclude.and_then(|key| self.slot_of.get(&key)) {
            candidates.remove(slot);
        }
        let mut sampled: Vec<Sampled> = candidates
            .into_iter()
            .map(|(slot, candidate)| {
                let state = &self.slots[slot as usize];
                (slot, candidate, state.last_ms, state.key)
            })
            .collect();
        let most_recent = |a: &Sampled, b: &Sampled| b.2.cmp(&a.2).then(a.3.cmp(&b.3));
        keep_best(&mut sampled, self.config.sample_size.max(1), most_recent);
        if self.config.length_norm != 0.0 {
            for (slot, candidate, _, _) in &mut sampled {
                let length = self.slots[*slot as usize].items.len() as f64;
                candidate.similarity /= length.powf(self.config.length_norm);
            }
        }
        let most_similar = |a: &Sampled, b: &Sampled| {
            b.1.similarity
                .total_cmp(&a.1.similarity)
                .then_with(|| most_recent(a, b))
        };
        keep_best(&mut sampled, self.config.neighbours.max(1), most_similar);
        sampled.sort_unstable_by(most_similar);
        sampled
            .into_iter()
            .map(|(slot, candidate, _, _)| (slot, candidate))
            .collect()
    }

    /// Each neighbour's items, weighted by its similarity, the age of the
    /// shared item and the item's distance to it; then the idf factor.
    fn score_items(&self, neighbours: &[(Slot, Candidate)]) -> KeyMap<ItemKey, Accumulator> {
        let capacity: usize = neighbours
            .iter()
            .map(|(slot, _)| self.slots[*slot as usize].items.len())
            .sum();
        let mut scores: KeyMap<ItemKey, Accumulator> =
            KeyMap::with_capacity_and_hasher(capacity, Default::default());
        // exp(-distance / decay) for every distance a stored session allows.
        let decay = self.config.proximity_decay.max(f64::MIN_POSITIVE);
        let proximity: Vec<f64> = (0..self.config.items_per_session.max(1))
            .map(|distance| (-(distance as f64) / decay).exp())
            .collect();
        for (rank, (slot, candidate)) in neighbours.iter().enumerate() {
            let state = &self.slots[*slot as usize];
            let Some(matched_at) = state
                .items
                .iter()
                .rposition(|item| *item == candidate.matched)
            else {
                continue;
            };
            let base = candidate.similarity * candidate.matched_weight;
            for (at, item) in state.items.iter().enumerate() {
                let near = proximity[at.abs_diff(matched_at).saturating_sub(1)];
                let near = if at > matched_at {
                    near
                } else {
                    near * self.config.before_weight
                };
                add_contribution(
                    scores.entry(*item).or_default(),
                    rank + 1,
                    near,
                    base,
                    *slot,
                );
            }
        }
        let idf_weight = self.config.idf_weight;
        if idf_weight != 0.0 {
            for (item, accumulator) in scores.iter_mut() {
                let idf = self.items.get(item).map_or(0.0, |state| self.idf(state));
                accumulator.score *= 1.0 + idf_weight * idf;
            }
        }
        scores
    }

    /// The session's own items, in proportion to the best score.
    fn add_reminders(&self, query: &[QueryItem], scores: &mut KeyMap<ItemKey, Accumulator>) {
        let weight = self.config.remind_weight;
        if weight <= 0.0 {
            return;
        }
        let best = scores
            .values()
            .map(|accumulator| accumulator.score)
            .fold(0.0, f64::max);
        let scale = if best > 0.0 { best } else { 1.0 };
        for entry in query {
            scores.entry(entry.item).or_default().score += weight * entry.weight * scale;
        }
    }
}

/// Adds one neighbour's weight to an item, counting the item's best
/// position in that neighbour only, and keeps the top reasons.
fn add_contribution(
    accumulator: &mut Accumulator,
    rank: usize,
    proximity: f64,
    base: f64,
    slot: Slot,
) {
    let added = if accumulator.neighbour == rank {
        if proximity <= accumulator.proximity {
            return;
        }
        let gain = proximity - accumulator.proximity;
        accumulator.proximity = proximity;
        gain
    } else {
        accumulator.neighbour = rank;
        accumulator.proximity = proximity;
        proximity
    };
    accumulator.score += added * base;
    let contribution = accumulator.proximity * base;
    let reasons = &mut accumulator.reasons;
    let at = match reasons.iter().position(|(_, held)| *held == slot) {
        Some(at) if reasons[at].0 > 0.0 => at,
        _ if contribution > reasons[REASONS_PER_ITEM - 1].0 => REASONS_PER_ITEM - 1,
        _ => return,
    };
    reasons[at] = (contribution, slot);
    // Bubble the new weight up: the array stays sorted, best first.
    let mut at = at;
    while at > 0 && reasons[at].0 > reasons[at - 1].0 {
        reasons.swap(at, at - 1);
        at -= 1;
    }
}

/// Keeps the `count` best entries (unordered) by `order`.
fn keep_best<T>(entries: &mut Vec<T>, count: usize, order: impl Fn(&T, &T) -> Ordering) {
    if entries.len() > count {
        entries.select_nth_unstable_by(count - 1, &order);
        entries.truncate(count);
    }
}

/// The `limit` best items the caller does not skip, best first (ties: the
/// smaller key). Sorts only as deep as skipping requires.
fn select_top(
    scores: KeyMap<ItemKey, Accumulator>,
    limit: usize,
    skip: &dyn Fn(ItemKey) -> bool,
    key_of: &dyn Fn(Slot) -> SessionKey,
) -> Vec<Scored> {
    let mut ranked: Vec<(ItemKey, Accumulator)> = scores
        .into_iter()
        .filter(|(_, accumulator)| accumulator.score > 0.0)
        .collect();
    let order = |a: &(ItemKey, Accumulator), b: &(ItemKey, Accumulator)| {
        b.1.score.total_cmp(&a.1.score).then(a.0.cmp(&b.0))
    };
    let mut chosen = Vec::with_capacity(limit);
    let mut start = 0;
    let mut depth = limit.saturating_mul(2).max(8);
    while start < ranked.len() && chosen.len() < limit {
        let end = (start + depth).min(ranked.len());
        let rest = &mut ranked[start..];
        if end - start < rest.len() {
            rest.select_nth_unstable_by(end - start - 1, order);
        }
        rest[..end - start].sort_unstable_by(order);
        for (item, accumulator) in &ranked[start..end] {
            if chosen.len() == limit {
                break;
            }
            if !skip(*item) {
                chosen.push(to_scored(*item, accumulator, key_of));
            }
        }
        start = end;
        depth = depth.saturating_mul(4);
    }
    chosen
}

fn to_scored(
    item: ItemKey,
    accumulator: &Accumulator,
    key_of: &dyn Fn(Slot) -> SessionKey,
) -> Scored {
    let neighbours = accumulator
        .reasons
        .iter()
        .filter(|(weight, _)| *weight > 0.0)
        .map(|(_, slot)| key_of(*slot))
        .collect();
    Scored {
        item,
        score: accumulator.score,
        neighbours,
    }
}
