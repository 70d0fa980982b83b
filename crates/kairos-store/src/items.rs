//! The item catalog of recommendations (`items`: item id → the item as
//! JSON). Items describe products, not people: nothing here is sealed or
//! erased. What an item means is `kairos-recommend`'s business.

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use crate::StoreError;

const KEYSPACE: &str = "items";

/// Where the boost and bury rules are kept (`meta`).
const RULES_KEY: &[u8] = b"recommendations/rules";

pub struct Items {
    db: Database,
    items: Keyspace,
    meta: Keyspace,
}

impl Items {
    pub(crate) fn open(db: Database, meta: Keyspace) -> Result<Items, StoreError> {
        let items = db.keyspace(KEYSPACE, KeyspaceCreateOptions::default)?;
        Ok(Items { db, items, meta })
    }

    /// The recommendation rules (JSON), if any were set.
    pub fn rules(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.meta.get(RULES_KEY)?.map(|bytes| bytes.to_vec()))
    }

    /// Replaces the rules; durable when it returns.
    pub fn set_rules(&self, json: Vec<u8>) -> Result<(), StoreError> {
        self.meta.insert(RULES_KEY, json)?;
        self.db.persist(PersistMode::SyncAll)?;
        Ok(())
    }

    /// Stores items (`(id, JSON)`) in one atomic batch; durable when it
    /// returns if `durable` (an import's batches are), else at the next
    /// flush (items learned from events: the events are durable, and a
    /// lost update is re-learned from the next view).
    pub fn put_many(&self, items: &[(String, Vec<u8>)], durable: bool) -> Result<(), StoreError> {
        let mut batch = self.db.batch();
        for (id, json) in items {
            batch.insert(&self.items, id.as_bytes(), json.as_slice());
        }
        batch.commit()?;
        if durable {
            self.db.persist(PersistMode::SyncAll)?;
        }
        Ok(())
    }

    /// Deletes one; whether it existed.
    pub fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let existed = self.items.get(id.as_bytes())?.is_some();
        if existed {
            self.items.remove(id.as_bytes())?;
            self.db.persist(PersistMode::SyncAll)?;
        }
        Ok(existed)
    }

    /// Every item's JSON, by id.
    pub fn all(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        self.items
            .iter()
            .map(|guard| Ok(guard.value()?.to_vec()))
            .collect()
    }
}
