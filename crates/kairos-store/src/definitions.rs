//! Audience definitions, kept in the `meta` keyspace (`audience/<id>`).
//! The text form is stored as written; it is parsed again on load, so a
//! stored definition always means what the current language says.

use std::sync::RwLock;

use fjall::{Database, Keyspace, PersistMode};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::{StoreError, random_token};

const PREFIX: &str = "audience/";
/// `audience_size/<id>/<unix ms, big-endian>` → size (u64, big-endian).
const SIZE_PREFIX: &str = "audience_size/";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudienceRecord {
    /// `aud_…`.
    pub id: String,
    /// Unique; what `in audience "…"` refers to.
    pub name: String,
    /// The text form (docs/audiences.md).
    pub definition: String,
    pub created_at: Timestamp,
}

pub struct Definitions {
    db: Database,
    meta: Keyspace,
    audiences: RwLock<Vec<AudienceRecord>>,
}

impl Definitions {
    pub(crate) fn open(db: Database, meta: Keyspace) -> Result<Definitions, StoreError> {
        let mut audiences = Vec::new();
        for guard in meta.prefix(PREFIX) {
            let record: AudienceRecord = serde_json::from_slice(&guard.value()?)
                .map_err(|error| StoreError::Corrupt(format!("audience record: {error}")))?;
            audiences.push(record);
        }
        audiences.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(Definitions {
            db,
            meta,
            audiences: RwLock::new(audiences),
        })
    }

    /// Every audience, oldest first.
    pub fn audiences(&self) -> Vec<AudienceRecord> {
        self.audiences.read().expect("definitions lock").clone()
    }

    pub fn audience(&self, id: &str) -> Option<AudienceRecord> {
        self.audiences()
            .into_iter()
            .find(|record| record.id == id || record.name == id)
    }

    /// Stores a new audience; the caller has checked the definition.
    pub fn create_audience(
        &self,
        name: &str,
        definition: &str,
        now: Timestamp,
    ) -> Result<AudienceRecord, StoreError> {
        let mut audiences = self.audiences.write().expect("definitions lock");
        if audiences.iter().any(|record| record.name == name) {
            return Err(StoreError::Invalid(format!(
                "an audience named {name:?} exists; names are unique (they are what `in audience` refers to)"
            )));
        }
        let record = AudienceRecord {
            id: format!("aud_{}", random_token(12)),
            name: name.to_string(),
            definition: definition.to_string(),
            created_at: now,
        };
        let bytes = serde_json::to_vec(&record).expect("an audience record serializes");
        self.meta.insert(format!("{PREFIX}{}", record.id), bytes)?;
        self.db.persist(PersistMode::SyncAll)?;
        audiences.push(record.clone());
        Ok(record)
    }

    /// Replaces an audience's definition (name and id stay).
    pub fn change_audience(
        &self,
        id: &str,
        definition: &str,
    ) -> Result<Option<AudienceRecord>, StoreError> {
        let mut audiences = self.audiences.write().expect("definitions lock");
        let Some(record) = audiences.iter_mut().find(|record| record.id == id) else {
            return Ok(None);
        };
        record.definition = definition.to_string();
        let bytes = serde_json::to_vec(&*record).expect("an audience record serializes");
        self.meta.insert(format!("{PREFIX}{id}"), bytes)?;
        self.db.persist(PersistMode::SyncAll)?;
        Ok(Some(record.clone()))
    }

    /// Records an audience's size at `at` (its size history).
    pub fn record_size(&self, id: &str, at: Timestamp, size: u64) -> Result<(), StoreError> {
        let mut key = format!("{SIZE_PREFIX}{id}/").into_bytes();
        key.extend_from_slice(&at.as_millisecond().to_be_bytes());
        self.meta.insert(key, size.to_be_bytes())?;
        Ok(())
    }

    /// An audience's recorded sizes, oldest first, at most `limit`.
    pub fn sizes(&self, id: &str, limit: usize) -> Result<Vec<(Timestamp, u64)>, StoreError> {
        let prefix = format!("{SIZE_PREFIX}{id}/");
        let mut sizes = Vec::new();
        for guard in self.meta.prefix(prefix.as_bytes()).take(limit) {
            let (key, value) = guard.into_inner()?;
            let corrupt = || StoreError::Corrupt("audience size record".into());
            let millis: [u8; 8] = key[prefix.len()..].try_into().map_err(|_| corrupt())?;
            let size: [u8; 8] = value.as_ref().try_into().map_err(|_| corrupt())?;
            let at =
                Timestamp::from_millisecond(i64::from_be_bytes(millis)).map_err(|_| corrupt())?;
            sizes.push((at, u64::from_be_bytes(size)));
        }
        Ok(sizes)
    }

    pub fn delete_audience(&self, id: &str) -> Result<Option<AudienceRecord>, StoreError> {
        let mut audiences = self.audiences.write().expect("definitions lock");
        let Some(position) = audiences.iter().position(|record| record.id == id) else {
            return Ok(None);
        };
        self.meta.remove(format!("{PREFIX}{id}"))?;
        self.db.persist(PersistMode::SyncAll)?;
        Ok(Some(audiences.remove(position)))
    }
}
