//! Definitions — audiences (`audience/<id>`) and computed traits
//! (`computed/<id>`) — kept in the `meta` keyspace. The text form is stored
//! as written; it is parsed again on load, so a stored definition always
//! means what the current language says.

use std::sync::RwLock;

use fjall::{Database, Keyspace, PersistMode};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::{StoreError, random_token};

/// `audience_size/<id>/<unix ms, big-endian>` → size (u64, big-endian).
const SIZE_PREFIX: &str = "audience_size/";
const MANUAL_CLOCK_KEY: &str = "clock/manual";
/// The probabilistic matcher's kept m (`kairos_core::matching::Parameters`).
const MATCHING_PARAMETERS_KEY: &str = "matching/parameters";

/// The two kinds of definitions; each has its own names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Audience,
    ComputedTrait,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Kind::Audience => "audience/",
            Kind::ComputedTrait => "computed/",
        }
    }

    fn id_prefix(self) -> &'static str {
        match self {
            Kind::Audience => "aud_",
            Kind::ComputedTrait => "ct_",
        }
    }

    /// How the API names it ("an audience", "a computed trait").
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Audience => "audience",
            Kind::ComputedTrait => "computed trait",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DefinitionRecord {
    /// `aud_…` or `ct_…`.
    pub id: String,
    /// Unique within its kind; what `in audience "…"` / `computed …` refer to.
    pub name: String,
    /// The text form (docs/audiences.md).
    pub definition: String,
    pub created_at: Timestamp,
    /// Creation order: `created_at` ties on a manual clock that did not
    /// move, and a random id would then reorder definitions at each start.
    /// 0 in records written before it existed (they sort as before).
    #[serde(default)]
    pub seq: u64,
}

/// The name audiences were stored under before computed traits existed.
pub type AudienceRecord = DefinitionRecord;

pub struct Definitions {
    db: Database,
    meta: Keyspace,
    audiences: RwLock<Vec<DefinitionRecord>>,
    computed: RwLock<Vec<DefinitionRecord>>,
}

impl Definitions {
    pub(crate) fn open(db: Database, meta: Keyspace) -> Result<Definitions, StoreError> {
        let load = |kind: Kind| -> Result<Vec<DefinitionRecord>, StoreError> {
            let mut records = Vec::new();
            for guard in meta.prefix(kind.prefix()) {
                let record: DefinitionRecord =
                    serde_json::from_slice(&guard.value()?).map_err(|error| {
                        StoreError::Corrupt(format!("{} record: {error}", kind.noun()))
                    })?;
                records.push(record);
            }
            records.sort_by(|a, b| (a.seq, a.created_at, &a.id).cmp(&(b.seq, b.created_at, &b.id)));
            Ok(records)
        };
        Ok(Definitions {
            audiences: RwLock::new(load(Kind::Audience)?),
            computed: RwLock::new(load(Kind::ComputedTrait)?),
            db,
            meta,
        })
    }

    fn records(&self, kind: Kind) -> &RwLock<Vec<DefinitionRecord>> {
        match kind {
            Kind::Audience => &self.audiences,
            Kind::ComputedTrait => &self.computed,
        }
    }

    /// Every definition of a kind, oldest first.
    pub fn list(&self, kind: Kind) -> Vec<DefinitionRecord> {
        self.records(kind).read().expect("definitions lock").clone()
    }

    /// A definition by id or name.
    pub fn get(&self, kind: Kind, id: &str) -> Option<DefinitionRecord> {
        self.list(kind)
            .into_iter()
            .find(|record| record.id == id || record.name == id)
    }

    /// Every audience, oldest first.
    pub fn audiences(&self) -> Vec<DefinitionRecord> {
        self.list(Kind::Audience)
    }

    pub fn audience(&self, id: &str) -> Option<DefinitionRecord> {
        self.get(Kind::Audience, id)
    }

    /// Stores a new definition; the caller has checked it.
    pub fn create(
        &self,
        kind: Kind,
        name: &str,
        definition: &str,
        now: Timestamp,
    ) -> Result<DefinitionRecord, StoreError> {
        let mut records = self.records(kind).write().expect("definitions lock");
        if records.iter().any(|record| record.name == name) {
            // Unique: names are what definitions refer to.
            return Err(StoreError::NameTaken {
                thing: kind.noun(),
                name: name.to_string(),
            });
        }
        let record = DefinitionRecord {
            id: format!("{}{}", kind.id_prefix(), random_token(12)),
            name: name.to_string(),
            definition: definition.to_string(),
            created_at: now,
            seq: records.iter().map(|record| record.seq).max().unwrap_or(0) + 1,
        };
        self.write(kind, &record)?;
        records.push(record.clone());
        Ok(record)
    }

    fn write(&self, kind: Kind, record: &DefinitionRecord) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(record).expect("a definition record serializes");
        self.meta
            .insert(format!("{}{}", kind.prefix(), record.id), bytes)?;
        self.db.persist(PersistMode::SyncAll)?;
        Ok(())
    }

    /// Replaces a definition's text (name and id stay).
    pub fn change(
        &self,
        kind: Kind,
        id: &str,
        definition: &str,
    ) -> Result<Option<DefinitionRecord>, StoreError> {
        let mut records = self.records(kind).write().expect("definitions lock");
        let Some(record) = records.iter_mut().find(|record| record.id == id) else {
            return Ok(None);
        };
        record.definition = definition.to_string();
        let record = record.clone();
        self.write(kind, &record)?;
        Ok(Some(record))
    }

    pub fn delete(&self, kind: Kind, id: &str) -> Result<Option<DefinitionRecord>, StoreError> {
        let mut records = self.records(kind).write().expect("definitions lock");
        let Some(position) = records.iter().position(|record| record.id == id) else {
            return Ok(None);
        };
        self.meta.remove(format!("{}{id}", kind.prefix()))?;
        self.db.persist(PersistMode::SyncAll)?;
        Ok(Some(records.remove(position)))
    }

    /// The manual clock's last setting (`kairos serve --clock manual`), so a
    /// restart resumes where it was instead of at the epoch.
    pub fn manual_clock(&self) -> Option<Timestamp> {
        let bytes = self.meta.get(MANUAL_CLOCK_KEY).ok()??;
        let nanos: [u8; 16] = bytes.as_ref().try_into().ok()?;
        Timestamp::from_nanosecond(i128::from_be_bytes(nanos)).ok()
    }

    pub fn save_manual_clock(&self, now: Timestamp) -> Result<(), StoreError> {
        self.meta
            .insert(MANUAL_CLOCK_KEY, now.as_nanosecond().to_be_bytes())?;
        self.db.persist(PersistMode::SyncAll)?;
        Ok(())
    }

    /// The matcher's best-supported estimate so far; `None` before the first
    /// or when the stored one cannot be read (the matcher then estimates
    /// again, as on a fresh data directory).
    pub fn matching_parameters(&self) -> Option<kairos_core::matching::Parameters> {
        let bytes = self.meta.get(MATCHING_PARAMETERS_KEY).ok()??;
        serde_json::from_slice(&bytes).ok()
    }

    pub fn save_matching_parameters(
        &self,
        parameters: &kairos_core::matching::Parameters,
    ) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(parameters)
            .map_err(|error| StoreError::Corrupt(format!("matching parameters: {error}")))?;
        self.meta.insert(MATCHING_PARAMETERS_KEY, bytes)?;
        self.db.persist(PersistMode::SyncAll)?;
        Ok(())
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
}
