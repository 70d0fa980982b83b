//! Events that failed validation, kept with their reasons until replayed
//! (after a fix) or discarded. Nothing a client sent is silently dropped.
//!
//! Records are sealed like log events ([`crate::vault`]): under the key of
//! the person the raw event names (see [`quarantine_subject`]), or of a
//! fresh pseudonym when it names nobody recognisable, so erasing a person
//! also makes their quarantined events unreadable.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use fjall::{Database, Keyspace, KeyspaceCreateOptions};
use jiff::Timestamp;
use kairos_core::EventType;
use kairos_core::identity::extract::normalize;
use kairos_core::identity::{Identifier, IdentityRules};
use kairos_core::normalize::FieldError;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::StoreError;
use crate::vault::{Opened, SubjectId, Vault, subject_of_record};

const KEYSPACE: &str = "quarantine";

/// A rejected event as the writer receives it.
#[derive(Debug, Clone)]
pub struct QuarantineEntry {
    /// Whose key seals the record ([`quarantine_subject`]).
    pub subject: SubjectId,
    pub source_id: String,
    pub received_at: Timestamp,
    /// Index of the event in its request's batch.
    pub index: usize,
    pub errors: Vec<FieldError>,
    /// The event exactly as sent.
    pub event: Box<RawValue>,
    /// The batch's `sentAt`, needed to correct clock skew on replay.
    pub batch_sent_at: Option<Timestamp>,
    /// The type a single-event endpoint (`/v1/track`) gave the event.
    pub path_type: Option<EventType>,
}

/// A quarantined event as stored and listed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QuarantineRecord {
    pub id: u64,
    pub source_id: String,
    pub received_at: Timestamp,
    pub index: usize,
    pub errors: Vec<FieldError>,
    pub event: Box<RawValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_sent_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_type: Option<EventType>,
}

pub struct Quarantine {
    pub(crate) keyspace: Keyspace,
    vault: Arc<Vault>,
    next_id: AtomicU64,
}

/// The identifier a raw (invalid) event most likely names, normalized as the
/// identity graph would: userId, else anonymousId, else a trait email.
/// `None` when it names nobody recognisable.
pub fn quarantine_identifier(raw: &RawValue, rules: &IdentityRules) -> Option<Identifier> {
    let value: serde_json::Value = serde_json::from_str(raw.get()).ok()?;
    let text = |value: Option<&serde_json::Value>| match value? {
        serde_json::Value::String(text) => Some(text.clone()),
        serde_json::Value::Number(number) => Some(number.to_string()),
        _ => None,
    };
    let candidates = [
        ("user_id", text(value.get("userId"))),
        ("anonymous_id", text(value.get("anonymousId"))),
        ("email", text(value.pointer("/traits/email"))),
        ("email", text(value.pointer("/context/traits/email"))),
    ];
    candidates.into_iter().find_map(|(kind, found)| {
        let identifier = normalize(Identifier::new(kind, &found?), rules)?;
        (!rules.is_blocked(&identifier)).then_some(identifier)
    })
}

/// The pseudonym sealing a quarantined event: its person's, or a random one.
pub fn quarantine_subject(vault: &Vault, raw: &RawValue, rules: &IdentityRules) -> SubjectId {
    match quarantine_identifier(raw, rules) {
        Some(identifier) => vault.subject(&identifier),
        None => {
            let mut subject = [0u8; 16];
            getrandom::fill(&mut subject).expect("the operating system provides randomness");
            subject
        }
    }
}

impl Quarantine {
    pub(crate) fn open(db: &Database, vault: Arc<Vault>) -> Result<Quarantine, StoreError> {
        let keyspace = db.keyspace(KEYSPACE, KeyspaceCreateOptions::default)?;
        let last = match keyspace.last_key_value() {
            Some(guard) => crate::log::decode_seq(&guard.key()?)?,
            None => 0,
        };
        Ok(Quarantine {
            keyspace,
            vault,
            next_id: AtomicU64::new(last + 1),
        })
    }

    /// Allocates an id and seals the record under `key`; the writer stores it.
    pub(crate) fn encode(&self, entry: QuarantineEntry) -> (u64, Vec<u8>) {
        let subject = entry.subject;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let record = QuarantineRecord {
            id,
            source_id: entry.source_id,
            received_at: entry.received_at,
            index: entry.index,
            errors: entry.errors,
            event: entry.event,
            batch_sent_at: entry.batch_sent_at,
            path_type: entry.path_type,
        };
        let plaintext = serde_json::to_vec(&record).expect("a quarantine record always serializes");
        (id, self.vault.seal(&subject, &plaintext))
    }

    /// The record, or `None` when its person was erased.
    fn open_record(&self, id: u64, bytes: &[u8]) -> Result<Option<QuarantineRecord>, StoreError> {
        let opened = self
            .vault
            .open_record(bytes)
            .map_err(|problem| StoreError::Corrupt(format!("quarantine record {id}: {problem}")))?;
        match opened {
            Opened::Event(plaintext) => decode(&plaintext).map(Some),
            Opened::Erased => Ok(None),
        }
    }

    pub fn get(&self, id: u64) -> Result<Option<QuarantineRecord>, StoreError> {
        match self.keyspace.get(id.to_be_bytes())? {
            Some(bytes) => self.open_record(id, &bytes),
            None => Ok(None),
        }
    }

    /// Records with `id > after`, oldest first.
    pub fn list(
        &self,
        after: u64,
        limit: usize,
        source_id: Option<&str>,
    ) -> Result<Vec<QuarantineRecord>, StoreError> {
        let mut out = Vec::new();
        for guard in self
            .keyspace
            .range((after.saturating_add(1)).to_be_bytes()..)
        {
            let (key, value) = guard.into_inner()?;
            let Some(record) = self.open_record(crate::log::decode_seq(&key)?, &value)? else {
                continue;
            };
            if source_id.is_none_or(|source| record.source_id == source) {
                out.push(record);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Ids of quarantined events of the person: sealed under one of
    /// `subjects`, or (sealed otherwise) whose raw JSON contains one of
    /// `values`, case-insensitively. What erasing the person deletes. A full
    /// scan; the quarantine is small and erasures are rare.
    pub fn naming(
        &self,
        subjects: &[SubjectId],
        values: &[String],
    ) -> Result<Vec<u64>, StoreError> {
        let needles: Vec<String> = values
            .iter()
            .filter(|value| !value.is_empty())
            .map(|value| value.to_lowercase())
            .collect();
        let mut ids = Vec::new();
        for guard in self.keyspace.iter() {
            let (key, value) = guard.into_inner()?;
            let id = crate::log::decode_seq(&key)?;
            let sealed_for_them =
                subject_of_record(&value).is_some_and(|subject| subjects.contains(&subject));
            let names_them = || -> Result<bool, StoreError> {
                let opened = self.vault.open_record(&value).map_err(|problem| {
                    StoreError::Corrupt(format!("quarantine record {id}: {problem}"))
                })?;
                Ok(match opened {
                    Opened::Event(plaintext) => {
                        let text = String::from_utf8_lossy(&plaintext).to_lowercase();
                        needles.iter().any(|needle| text.contains(needle.as_str()))
                    }
                    Opened::Erased => false,
                })
            };
            if sealed_for_them || names_them()? {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    pub fn len(&self) -> usize {
        self.keyspace.approximate_len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn decode(bytes: &[u8]) -> Result<QuarantineRecord, StoreError> {
    serde_json::from_slice(bytes)
        .map_err(|error| StoreError::Corrupt(format!("quarantine record: {error}")))
}
