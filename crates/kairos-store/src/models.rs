//! The model registry: every version of every model (`meta`,
//! `model/<name>/<version, 8 digits>` → the version as JSON: format,
//! inputs, mode, the model itself). The store keeps the JSON; what it
//! means is `kairos-models`' business.

use std::sync::Mutex;

use fjall::{Database, Keyspace, PersistMode};
use serde_json::Value;

use crate::StoreError;

const PREFIX: &str = "model/";

pub struct ModelRegistry {
    db: Database,
    meta: Keyspace,
    /// Serializes version numbering.
    changing: Mutex<()>,
}

impl ModelRegistry {
    pub(crate) fn open(db: Database, meta: Keyspace) -> ModelRegistry {
        ModelRegistry {
            db,
            meta,
            changing: Mutex::new(()),
        }
    }

    /// Stores a new version of `name`: `make` gets its number and returns
    /// the JSON to store. Durable when it returns.
    pub fn add(&self, name: &str, make: impl FnOnce(u32) -> Value) -> Result<Value, StoreError> {
        let _changing = self.changing.lock().expect("registry lock");
        let version = self.versions(name).len() as u32 + 1;
        let record = make(version);
        self.put(name, version, &record)?;
        Ok(record)
    }

    /// Replaces a stored version (its mode changed).
    pub fn put(&self, name: &str, version: u32, record: &Value) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(record).expect("a model record serializes");
        self.meta.insert(key(name, version), bytes)?;
        self.db.persist(PersistMode::SyncAll)?;
        Ok(())
    }

    /// Every version of every model, by name then version.
    pub fn all(&self) -> Vec<Value> {
        self.meta
            .prefix(PREFIX)
            .filter_map(|guard| serde_json::from_slice(&guard.value().ok()?).ok())
            .collect()
    }

    /// The versions of one model, oldest first.
    pub fn versions(&self, name: &str) -> Vec<Value> {
        self.meta
            .prefix(format!("{PREFIX}{name}/"))
            .filter_map(|guard| serde_json::from_slice(&guard.value().ok()?).ok())
            .collect()
    }

    /// Deletes every version of a model; whether there was one.
    pub fn delete(&self, name: &str) -> Result<bool, StoreError> {
        let _changing = self.changing.lock().expect("registry lock");
        let count = self.versions(name).len() as u32;
        for version in 1..=count {
            self.meta.remove(key(name, version))?;
        }
        self.db.persist(PersistMode::SyncAll)?;
        Ok(count > 0)
    }
}

fn key(name: &str, version: u32) -> String {
    format!("{PREFIX}{name}/{version:08}")
}
