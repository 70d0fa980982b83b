//! Session-based next-item recommendations: a session k-nearest-neighbour
//! index in the VMIS-kNN family (Kersbergen, Sprangers & Schelter, SIGMOD
//! 2022), kept current click by click.
//!
//! # How an answer is made
//!
//! For the evolving session (its last [`SessionConfig::last_items`] clicks):
//!
//! 1. **Candidates**: every stored session that holds one of its items,
//!    read from the item's list of most recent sessions; only the
//!    [`SessionConfig::sample_size`] most recently active are kept.
//! 2. **Similarity**: a candidate scores the sum, over the items it shares
//!    with the evolving session, of the item's position weight
//!    `exp(-(age) / position_decay)` (age 0 = the click just made), divided
//!    by `len^length_norm` of the candidate.
//! 3. **Neighbours**: the [`SessionConfig::neighbours`] most similar
//!    candidates (ties: the more recent).
//! 4. **Items**: each neighbour adds `similarity × match weight × proximity
//!    × (1 + idf_weight × idf)` to each of its items, where the match weight
//!    is the position weight of the neighbour's newest shared item (so it
//!    decays with how far back that click lies), proximity decays with the
//!    item's distance
//!    from that shared item in the neighbour (items clicked *after* it count
//!    fully, items before it by `before_weight`) — the sequential signals of
//!    V-STAN (Ludewig et al. 2021).
//! 5. **Reminders**: the session's own items are added with
//!    `remind_weight × position weight × best score` — about a quarter of
//!    next clicks in e-commerce logs re-view the item just seen. The caller
//!    can still skip them (e.g. a "related items" widget skips the item on
//!    the page): neighbours never score the session's own items, so
//!    skipping them gives exactly the ranking without reminders.
//!
//! [`SessionIndex::recommend_for`] answers for a stored (live) session and
//! keeps it out of its own neighbours; [`SessionIndex::recommend`] takes
//! any list of clicks.
//!
//! The defaults are the values tuned on the YOOCHOOSE sample's `train_tr` →
//! `train_valid` split (docs/benchmarks.md, "Recommendations").
//!
//! # Bounded memory
//!
//! Three named limits bound the index whatever the stream does:
//! [`SESSIONS_PER_ITEM`] (the m most recent sessions per item),
//! [`ITEMS_PER_SESSION`] (a live session keeps only its last clicks) and
//! [`MAX_SESSIONS`] (the least recently active session is evicted). An item
//! is dropped with its last session. An item's list is ordered by when each
//! session last clicked it (clicks arrive mostly in time order, so this is
//! the sessions' recency); candidates are then ranked by their newest
//! click. Measured: 189 MiB for 1 M sessions and 569 k items after 10 M
//! synthetic clicks (docs/benchmarks.md); see [`SessionIndex::memory_bytes`].
//!
//! Incremental: `record` updates the lists in place (O(m) at worst); there
//! is no rebuild. Deterministic: no clock, no random state, ties broken by
//! key, so replaying the same clicks gives the same index and answers.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

/// An item, interned to a number by the caller.
pub type ItemKey = u32;
/// A session, numbered by the caller.
pub type SessionKey = u64;

/// The m most recent sessions kept per item: VMIS-kNN's sample bound; a
/// popular item's older sessions add little beyond its 500 newest ones.
pub const SESSIONS_PER_ITEM: usize = 500;
/// Clicks kept per session: a live session (or a bot) may grow forever;
/// its last 50 clicks hold the context that matters for the next one.
pub const ITEMS_PER_SESSION: usize = 50;
/// Sessions held overall, least recently active evicted first: a day of a
/// large shop's traffic. About 190 bytes per session at 5 clicks each
/// (measured: 189 MiB for 1 M sessions over 569 k items); at worst
/// (50 clicks each) ~8 bytes per kept click more, ~600 MB.
pub const MAX_SESSIONS: usize = 1_000_000;
/// Neighbour sessions named as the reason for one recommended item.
pub const REASONS_PER_ITEM: usize = 3;

/// One recommended item.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub item: ItemKey,
    pub score: f64,
    /// The neighbour sessions that contributed most, best first (at most 3).
    /// Empty for a reminder (an item of the session itself).
    pub neighbours: Vec<SessionKey>,
}

/// Limits and weights of the index. `Default` is the shipped configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SessionConfig {
    /// Most recent sessions kept per item (m).
    pub sessions_per_item: usize,
    /// Last clicks kept per stored session.
    pub items_per_session: usize,
    /// Sessions held overall; the least recently active is evicted.
    pub max_sessions: usize,
    /// Clicks of the evolving session used to recommend (its last ones).
    pub last_items: usize,
    /// Candidate sessions scored, the most recently active first.
    pub sample_size: usize,
    /// Neighbours (k) whose items are scored.
    pub neighbours: usize,
    /// Decay (in clicks) of an evolving-session item's weight with its age.
    pub position_decay: f64,
    /// Exponent of the neighbour's length dividing its similarity.
    pub length_norm: f64,
    /// Decay (in clicks) of a neighbour's item with its distance to the match.
    pub proximity_decay: f64,
    /// Weight of neighbour items clicked before the shared item.
    pub before_weight: f64,
    /// Weight of an item's inverse document frequency in its score.
    pub idf_weight: f64,
    /// Weight of the session's own items (0 = never recommend them).
    pub remind_weight: f64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            sessions_per_item: SESSIONS_PER_ITEM,
            items_per_session: ITEMS_PER_SESSION,
            max_sessions: MAX_SESSIONS,
            last_items: 10,
            sample_size: 500,
            neighbours: 100,
            position_decay: 3.0,
            length_norm: 0.0,
            proximity_decay: 5.0,
            before_weight: 0.75,
            idf_weight: 0.5,
            remind_weight: 8.0,
        }
    }
}

impl SessionConfig {
    /// Checks a configuration read from a user: every limit at least 1,
    /// every decay positive, every weight finite and not negative. The
    /// error names the field and the accepted range.
    pub fn validate(&self) -> Result<(), String> {
        let defaults = SessionConfig::default();
        let limits = [
            (
                "sessions_per_item",
                self.sessions_per_item,
                defaults.sessions_per_item,
            ),
            (
                "items_per_session",
                self.items_per_session,
                defaults.items_per_session,
            ),
            ("max_sessions", self.max_sessions, defaults.max_sessions),
            ("last_items", self.last_items, defaults.last_items),
            ("sample_size", self.sample_size, defaults.sample_size),
            ("neighbours", self.neighbours, defaults.neighbours),
        ];
        for (name, value, default) in limits {
            if value == 0 {
                return Err(format!(
                    "{name} must be at least 1 (the default is {default})"
                ));
            }
        }
        for (name, value) in [
            ("position_decay", self.position_decay),
            ("proximity_decay", self.proximity_decay),
        ] {
            if !(value.is_finite() && value > 0.0) {
                return Err(format!(
                    "{name} must be a positive number of clicks, got {value}"
                ));
            }
        }
        let weights = [
            ("length_norm", self.length_norm),
            ("before_weight", self.before_weight),
            ("idf_weight", self.idf_weight),
            ("remind_weight", self.remind_weight),
        ];
        for (name, value) in weights {
            if !(value.is_finite() && value >= 0.0) {
                return Err(format!("{name} must be a finite number ≥ 0, got {value}"));
            }
        }
        Ok(())
    }
}

/// A fast hasher for integer keys (FxHash's multiply-rotate). Keys are
/// interned numbers, not attacker-chosen strings, and a fixed hasher keeps
/// iteration — hence replays — deterministic.
#[derive(Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.write_u64(u64::from(*byte));
        }
    }
    fn write_u32(&mut self, value: u32) {
        self.write_u64(u64::from(value));
    }
    fn write_u64(&mut self, value: u64) {
        self.0 = (self.0.rotate_left(5) ^ value).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// A HashMap with [`KeyHasher`].
pub type KeyMap<K, V> = HashMap<K, V, BuildHasherDefault<KeyHasher>>;

/// Where a session lives in [`SessionIndex::slots`]: item lists hold
/// these 4-byte slots instead of 8-byte keys, and answering reads a
/// session by indexing, not hashing.
type Slot = u32;

#[derive(Debug, Clone, Default)]
struct SessionState {
    key: SessionKey,
    /// Last clicks, oldest first (at most `items_per_session`); empty when
    /// the slot is free.
    items: Vec<ItemKey>,
    /// Newest click time (the events' own clock).
    last_ms: i64,
    /// Position in the recency order (`SessionIndex::by_activity`).
    touch: u64,
}

#[derive(Debug, Clone, Default)]
struct ItemState {
    /// Sessions that clicked the item, least recent first (at most m).
    sessions: VecDeque<Slot>,
    /// Clicks recorded on the item while it is held (for its idf).
    clicks: u64,
}

/// The incremental session index. Serialized as a flat snapshot (vectors,
/// no maps), so any serde format — rmp-serde in checkpoints — round-trips.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(into = "Snapshot", from = "Snapshot")]
pub struct SessionIndex {
    config: SessionConfig,
    slot_of: KeyMap<SessionKey, Slot>,
    slots: Vec<SessionState>,
    free: Vec<Slot>,
    items: KeyMap<ItemKey, ItemState>,
    /// Sessions by last activity, oldest first: the eviction order.
    by_activity: BTreeMap<u64, Slot>,
    next_touch: u64,
    total_clicks: u64,
}

impl Default for SessionIndex {
    fn default() -> Self {
        SessionIndex::new(SessionConfig::default())
    }
}

impl SessionIndex {
    pub fn new(config: SessionConfig) -> Self {
        SessionIndex {
            config,
            slot_of: KeyMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            items: KeyMap::default(),
            by_activity: BTreeMap::new(),
            next_touch: 0,
            total_clicks: 0,
        }
    }

    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// Records a click. Clicks of a session mostly arrive in time order; a
    /// late one still counts (the session's time is its newest click).
    pub fn record(&mut self, session: SessionKey, item: ItemKey, time_ms: i64) {
        let slot = self.slot_for(session);
        let touch = self.next_touch;
        self.next_touch += 1;
        let state = &mut self.slots[slot as usize];
        if !state.items.is_empty() {
            self.by_activity.remove(&state.touch);
        }
        state.touch = touch;
        state.last_ms = if state.items.is_empty() {
            time_ms
        } else {
            state.last_ms.max(time_ms)
        };
        let seen_before = state.items.contains(&item);
        state.items.push(item);
        let dropped = if state.items.len() > self.config.items_per_session.max(1) {
            let oldest = state.items.remove(0);
            (!state.items.contains(&oldest)).then_some(oldest)
        } else {
            None
        };
        self.by_activity.insert(touch, slot);
        self.link(slot, item, seen_before);
        if let Some(oldest) = dropped {
            self.unlink(slot, oldest);
        }
    }

    /// The session's slot, making one (and room for it) if it is new.
    fn slot_for(&mut self, session: SessionKey) -> Slot {
        if let Some(slot) = self.slot_of.get(&session) {
            return *slot;
        }
        self.make_room();
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(SessionState::default());
                (self.slots.len() - 1) as Slot
            }
        };
        self.slots[slot as usize].key = session;
        self.slot_of.insert(session, slot);
        slot
    }

    /// Puts `slot` last in `item`'s list (the most recent), bounded by m.
    fn link(&mut self, slot: Slot, item: ItemKey, seen_before: bool) {
        let limit = self.config.sessions_per_item.max(1);
        let state = self.items.entry(item).or_default();
        state.clicks += 1;
        self.total_clicks += 1;
        if seen_before {
            if state.sessions.back() == Some(&slot) {
                return;
            }
            if let Some(at) = state.sessions.iter().rposition(|held| *held == slot) {
                state.sessions.remove(at);
            }
        }
        state.sessions.push_back(slot);
        if state.sessions.len() > limit {
            state.sessions.pop_front();
        }
    }

    /// Takes `slot` out of `item`'s list; drops the item with its last session.
    fn unlink(&mut self, slot: Slot, item: ItemKey) {
        let Some(state) = self.items.get_mut(&item) else {
            return;
        };
        if let Some(at) = state.sessions.iter().rposition(|held| *held == slot) {
            state.sessions.remove(at);
        }
        if state.sessions.is_empty() {
            self.total_clicks -= state.clicks;
            self.items.remove(&item);
        }
    }

    /// Evicts the least recently active sessions until one more fits.
    fn make_room(&mut self) {
        while self.slot_of.len() >= self.config.max_sessions.max(1) {
            let Some((_, oldest)) = self.by_activity.first_key_value() else {
                return;
            };
            let key = self.slots[*oldest as usize].key;
            self.forget_session(key);
        }
    }

    /// Erasure: the session leaves every item's list and stops influencing
    /// any answer.
    pub fn forget_session(&mut self, session: SessionKey) {
        let Some(slot) = self.slot_of.remove(&session) else {
            return;
        };
        let state = std::mem::take(&mut self.slots[slot as usize]);
        self.by_activity.remove(&state.touch);
        let mut items = state.items;
        items.sort_unstable();
        items.dedup();
        for item in items {
            self.unlink(slot, item);
        }
        self.free.push(slot);
    }

    /// The clicks kept for `session`, oldest first.
    pub fn session_items(&self, session: SessionKey) -> Option<&[ItemKey]> {
        let slot = self.slot_of.get(&session)?;
        Some(self.slots[*slot as usize].items.as_slice())
    }

    /// Sessions held.
    pub fn sessions(&self) -> usize {
        self.slot_of.len()
    }

    /// Items held (those with at least one session).
    pub fn items(&self) -> usize {
        self.items.len()
    }

    /// Sessions held for `item`, most recent first (for tests and reasons).
    pub fn item_sessions(&self, item: ItemKey) -> Vec<SessionKey> {
        self.items
            .get(&item)
            .map(|state| {
                state
                    .sessions
                    .iter()
                    .rev()
                    .map(|slot| self.slots[*slot as usize].key)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// An estimate of the heap bytes held: entries, lists and table overhead.
    pub fn memory_bytes(&self) -> usize {
        use std::mem::size_of;
        // A hashbrown slot holds the entry plus one control byte; tables
        // run at most 7/8 full.
        let key_slot = (size_of::<SessionKey>() + size_of::<Slot>() + 1) * 8 / 7;
        let item_slot = (size_of::<ItemKey>() + size_of::<ItemState>() + 1) * 8 / 7;
        // A BTreeMap entry is 16 bytes in nodes about 2/3 full.
        let activity = self.by_activity.len() * 16 * 3 / 2;
        let session_lists: usize = self
            .slots
            .iter()
            .map(|state| state.items.capacity() * size_of::<ItemKey>())
            .sum();
        let item_lists: usize = self
            .items
            .values()
            .map(|state| state.sessions.capacity() * size_of::<Slot>())
            .sum();
        self.slot_of.capacity() * key_slot
            + self.slots.capacity() * size_of::<SessionState>()
            + self.free.capacity() * size_of::<Slot>()
            + self.items.capacity() * item_slot
            + activity
            + session_lists
            + item_lists
    }

    fn idf(&self, state: &ItemState) -> f64 {
        (self.total_clicks as f64 / state.clicks.max(1) as f64)
            .ln()
            .max(0.0)
    }
}

mod score;

/// A flat, map-free form of the index for serde.
#[derive(Serialize, Deserialize)]
struct Snapshot {
    config: SessionConfig,
    /// (session, newest click ms, clicks oldest first), least recently active first.
    sessions: Vec<(SessionKey, i64, Vec<ItemKey>)>,
    /// (item, clicks, sessions least recent first).
    items: Vec<(ItemKey, u64, Vec<SessionKey>)>,
}

impl From<SessionIndex> for Snapshot {
    fn from(index: SessionIndex) -> Self {
        let sessions = index
            .by_activity
            .values()
            .map(|slot| {
                let state = &index.slots[*slot as usize];
                (state.key, state.last_ms, state.items.clone())
            })
            .collect();
        let key = |slot: &Slot| index.slots[*slot as usize].key;
        let mut items: Vec<_> = index
            .items
            .iter()
            .map(|(item, state)| {
                (
                    *item,
                    state.clicks,
                    state.sessions.iter().map(key).collect(),
                )
            })
            .collect();
        items.sort_unstable_by_key(|(item, _, _)| *item);
        Snapshot {
            config: index.config,
            sessions,
            items,
        }
    }
}

impl From<Snapshot> for SessionIndex {
    fn from(snapshot: Snapshot) -> Self {
        let mut index = SessionIndex::new(snapshot.config);
        for (touch, (key, last_ms, items)) in snapshot.sessions.into_iter().enumerate() {
            let touch = touch as u64;
            let slot = touch as Slot;
            index.by_activity.insert(touch, slot);
            index.slot_of.insert(key, slot);
            index.slots.push(SessionState {
                key,
                items,
                last_ms,
                touch,
            });
            index.next_touch = touch + 1;
        }
        for (item, clicks, sessions) in snapshot.items {
            let slots = sessions
                .iter()
                .filter_map(|key| index.slot_of.get(key).copied())
                .collect();
            index.total_clicks += clicks;
            index.items.insert(
                item,
                ItemState {
                    sessions: slots,
                    clicks,
                },
            );
        }
        index
    }
}

#[cfg(test)]
mod tests;
