//! Item ids as small numbers: the indexes hold `u32`s, not strings.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::session::ItemKey;

/// Distinct items Kairos learns from events (about 60 bytes each here plus
/// their index entries). A write key is public, so events could name
/// endless made-up products; past this, new ids are not learned (known
/// ones still are) and `kairos_recommend_items_refused` says so.
pub const ITEMS_MAX: usize = 5_000_000;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(from = "Vec<String>", into = "Vec<String>")]
pub struct Interner {
    names: Vec<String>,
    keys: HashMap<String, ItemKey>,
}

impl From<Vec<String>> for Interner {
    fn from(names: Vec<String>) -> Interner {
        let keys = names
            .iter()
            .enumerate()
            .map(|(key, name)| (name.clone(), key as ItemKey))
            .collect();
        Interner { names, keys }
    }
}

impl From<Interner> for Vec<String> {
    fn from(interner: Interner) -> Vec<String> {
        interner.names
    }
}

impl Interner {
    /// The key of `name`, learning it if there is room.
    pub fn intern(&mut self, name: &str) -> Option<ItemKey> {
        if let Some(key) = self.keys.get(name) {
            return Some(*key);
        }
        if self.names.len() >= ITEMS_MAX {
            return None;
        }
        let key = self.names.len() as ItemKey;
        self.names.push(name.to_string());
        self.keys.insert(name.to_string(), key);
        Some(key)
    }

    pub fn key(&self, name: &str) -> Option<ItemKey> {
        self.keys.get(name).copied()
    }

    pub fn name(&self, key: ItemKey) -> &str {
        self.names.get(key as usize).map_or("", String::as_str)
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn memory_bytes(&self) -> usize {
        self.names
            .iter()
            .map(|name| 2 * (name.len() + 24) + 8)
            .sum()
    }
}
