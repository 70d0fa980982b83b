//! Sources: every event belongs to the source whose write key sent it.
//!
//! Records live in the `meta` keyspace; an in-memory index from write key to
//! source (with its compiled tracking plan) answers the hot path without a
//! read from disk.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use fjall::{Database, Keyspace, PersistMode};
use jiff::Timestamp;
use kairos_core::tracking_plan::{TrackingPlan, TrackingPlanSpec};
use serde::{Deserialize, Serialize};

use crate::{StoreError, random_token};

const PREFIX: &str = "source/";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceRecord {
    pub id: String,
    pub name: String,
    pub write_key: String,
    pub created_at: Timestamp,
    /// The key replaced by the last rotation, valid until `previous_write_key_expires_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_write_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_write_key_expires_at: Option<Timestamp>,
    #[serde(default)]
    pub tracking_plan: Option<TrackingPlanSpec>,
    /// Whether the write key is public (a web page or app: "client") or
    /// kept on a server ("server"); docs/security.md says what each may do.
    #[serde(default = "SourceTrust::before_trust_existed")]
    pub trust: SourceTrust,
    /// `ivs_…`: the secret a site's backend signs a person's identifier
    /// with (HMAC-SHA256, hex) so their browser may open that person's
    /// in-app stream. Never sent to a browser.
    #[serde(default)]
    pub identity_secret: String,
    /// Whether its `Product Viewed` (`Product Clicked`, `Product Added`)
    /// events create and update items of the recommendations' catalog
    /// (server sources only: a public key could set any price).
    #[serde(default)]
    pub items_from_events: bool,
}

/// How far a source's events are trusted (docs/security.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceTrust {
    /// The write key is public: its events may not overwrite identity
    /// traits (email, phone) that a server source set.
    #[default]
    Client,
    /// A back-end: full trust in the traits it sends.
    Server,
}

impl SourceTrust {
    /// Records written before sources had a trust level keep the behaviour
    /// they had then (full trust).
    fn before_trust_existed() -> SourceTrust {
        SourceTrust::Server
    }
}

/// A source ready for the hot path.
#[derive(Debug)]
pub struct Source {
    pub record: SourceRecord,
    pub plan: Option<TrackingPlan>,
}

pub struct SourceRegistry {
    db: Database,
    meta: Keyspace,
    by_id: RwLock<HashMap<String, Arc<Source>>>,
    /// Serializes `named`, so two callers cannot create the same name twice.
    creating: std::sync::Mutex<()>,
}

/// Longest source name accepted.
pub const SOURCE_NAME_BYTES_MAX: usize = 200;

impl SourceRegistry {
    pub(crate) fn open(db: Database, meta: Keyspace) -> Result<SourceRegistry, StoreError> {
        let mut by_id = HashMap::new();
        let mut without_secret = Vec::new();
        for guard in meta.prefix(PREFIX) {
            let record: SourceRecord = serde_json::from_slice(&guard.value()?)
                .map_err(|error| StoreError::Corrupt(format!("source record: {error}")))?;
            if record.identity_secret.is_empty() {
                without_secret.push(record.id.clone());
            }
            by_id.insert(record.id.clone(), Arc::new(compile(record)?));
        }
        let registry = SourceRegistry {
            db,
            meta,
            by_id: RwLock::new(by_id),
            creating: std::sync::Mutex::new(()),
        };
        // Sources made before identity tokens existed get their secret now.
        for id in without_secret {
            let mut record = registry.existing(&id)?;
            record.identity_secret = new_identity_secret();
            registry.save(record)?;
        }
        Ok(registry)
    }

    /// The oldest source with this name, created if there is none: the
    /// source of records Kairos writes itself (CRM imports, consent updates).
    pub fn named(&self, name: &str, now: Timestamp) -> Result<SourceRecord, StoreError> {
        let _creating = self.creating.lock().expect("source creation lock");
        if let Some(record) = self.list().into_iter().find(|record| record.name == name) {
            return Ok(record);
        }
        self.create(name, None, SourceTrust::Server, now)
    }

    /// The source a write key belongs to, if the key is current (or a
    /// rotated key still inside its grace period at `now`).
    pub fn by_write_key(&self, write_key: &str, now: Timestamp) -> Option<Arc<Source>> {
        let sources = self.by_id.read().expect("source registry lock");
        sources
            .values()
            .find(|source| {
                let record = &source.record;
                record.write_key == write_key
                    || (record.previous_write_key.as_deref() == Some(write_key)
                        && record
                            .previous_write_key_expires_at
                            .is_some_and(|expiry| now < expiry))
            })
            .cloned()
    }

    pub fn get(&self, id: &str) -> Option<Arc<Source>> {
        self.by_id
            .read()
            .expect("source registry lock")
            .get(id)
            .cloned()
    }

    pub fn list(&self) -> Vec<SourceRecord> {
        let mut records: Vec<SourceRecord> = self
            .by_id
            .read()
            .expect("source registry lock")
            .values()
            .map(|source| source.record.clone())
            .collect();
        records.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        records
    }

    pub fn create(
        &self,
        name: &str,
        plan: Option<TrackingPlanSpec>,
        trust: SourceTrust,
        now: Timestamp,
    ) -> Result<SourceRecord, StoreError> {
        let name = name.trim();
        if name.is_empty() || name.len() > SOURCE_NAME_BYTES_MAX {
            return Err(StoreError::Invalid(format!(
                "a source needs a name of 1 to {SOURCE_NAME_BYTES_MAX} bytes"
            )));
        }
        let record = SourceRecord {
            id: format!("src_{}", random_token(16)),
            name: name.to_string(),
            write_key: new_write_key(),
            created_at: now,
            previous_write_key: None,
            previous_write_key_expires_at: None,
            tracking_plan: plan,
            trust,
            identity_secret: new_identity_secret(),
            items_from_events: false,
        };
        self.save(record)
    }

    /// Lets the source's product events create and update items (or not).
    pub fn set_items_from_events(&self, id: &str, on: bool) -> Result<SourceRecord, StoreError> {
        let mut record = self.existing(id)?;
        if on && record.trust != SourceTrust::Server {
            return Err(StoreError::Invalid(
                "items_from_events: only a server source may create items from its events (a client write key is public: anyone could set any name or price); create a source with \"trust\": \"server\", or send items to POST /v1/items".into(),
            ));
        }
        record.items_from_events = on;
        self.save(record)
    }

    /// Issues a new identity secret: tokens signed with the old one stop
    /// opening in-app streams (the caller closes the open ones).
    pub fn rotate_identity_secret(&self, id: &str) -> Result<SourceRecord, StoreError> {
        let mut record = self.existing(id)?;
        record.identity_secret = new_identity_secret();
        self.save(record)
    }

    /// Issues a new write key; the old one keeps working for `grace`.
    pub fn rotate(
        &self,
        id: &str,
        grace: jiff::SignedDuration,
        now: Timestamp,
    ) -> Result<SourceRecord, StoreError> {
        let mut record = self.existing(id)?;
        record.previous_write_key = Some(std::mem::replace(&mut record.write_key, new_write_key()));
        record.previous_write_key_expires_at = Some(now.checked_add(grace).unwrap_or(now));
        self.save(record)
    }

    pub fn set_tracking_plan(
        &self,
        id: &str,
        plan: Option<TrackingPlanSpec>,
    ) -> Result<SourceRecord, StoreError> {
        let mut record = self.existing(id)?;
        record.tracking_plan = plan;
        self.save(record)
    }

    fn existing(&self, id: &str) -> Result<SourceRecord, StoreError> {
        self.get(id)
            .map(|source| source.record.clone())
            .ok_or_else(|| StoreError::NotFound {
                thing: "source",
                id: id.to_string(),
            })
    }

    fn save(&self, record: SourceRecord) -> Result<SourceRecord, StoreError> {
        let source = compile(record.clone())?;
        let bytes = serde_json::to_vec(&record).expect("a source record always serializes");
        self.meta.insert(format!("{PREFIX}{}", record.id), bytes)?;
        // Configuration changes are rare: make each one durable at once.
        self.db.persist(PersistMode::SyncAll)?;
        self.by_id
            .write()
            .expect("source registry lock")
            .insert(record.id.clone(), Arc::new(source));
        Ok(record)
    }
}

fn compile(record: SourceRecord) -> Result<Source, StoreError> {
    let plan = match &record.tracking_plan {
        Some(spec) => Some(
            TrackingPlan::compile(spec.clone())
                .map_err(|problems| StoreError::Invalid(problems.join("; ")))?,
        ),
        None => None,
    };
    Ok(Source { record, plan })
}

fn new_identity_secret() -> String {
    format!("ivs_{}", random_token(32))
}

fn new_write_key() -> String {
    format!("wk_{}", random_token(32))
}
