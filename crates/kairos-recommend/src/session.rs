//! Session-based next-item recommendations (VMIS-kNN). Owned by the
//! recommendations helper; API agreed in the brief.

use serde::{Deserialize, Serialize};

/// An item, interned to a number by the caller.
pub type ItemKey = u32;
/// A session, numbered by the caller.
pub type SessionKey = u64;

/// One recommended item.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub item: ItemKey,
    pub score: f64,
    /// The neighbour sessions that contributed most, best first (at most 3).
    pub neighbours: Vec<SessionKey>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionConfig {}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {}
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SessionIndex {}

impl SessionIndex {
    pub fn new(_config: SessionConfig) -> Self {
        SessionIndex {}
    }
    pub fn record(&mut self, _session: SessionKey, _item: ItemKey, _time_ms: i64) {}
    pub fn recommend(
        &self,
        _evolving: &[ItemKey],
        _limit: usize,
        _skip: &dyn Fn(ItemKey) -> bool,
    ) -> Vec<Scored> {
        Vec::new()
    }
    pub fn forget_session(&mut self, _session: SessionKey) {}
    pub fn session_items(&self, _session: SessionKey) -> Option<&[ItemKey]> {
        None
    }
    pub fn sessions(&self) -> usize {
        0
    }
    pub fn memory_bytes(&self) -> usize {
        0
    }
}
