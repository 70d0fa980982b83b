//! Events that failed validation, kept with their reasons until replayed
//! (after a fix) or discarded. Nothing a client sent is silently dropped.

use std::sync::atomic::{AtomicU64, Ordering};

use fjall::{Database, Keyspace, KeyspaceCreateOptions};
use jiff::Timestamp;
use kairos_core::EventType;
use kairos_core::normalize::FieldError;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::StoreError;

const KEYSPACE: &str = "quarantine";

/// A rejected event as the writer receives it.
#[derive(Debug, Clone)]
pub struct QuarantineEntry {
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
    next_id: AtomicU64,
}

impl Quarantine {
    pub(crate) fn open(db: &Database) -> Result<Quarantine, StoreError> {
        let keyspace = db.keyspace(KEYSPACE, KeyspaceCreateOptions::default)?;
        let last = match keyspace.last_key_value() {
            Some(guard) => crate::log::decode_seq(&guard.key()?)?,
            None => 0,
        };
        Ok(Quarantine {
            keyspace,
            next_id: AtomicU64::new(last + 1),
        })
    }

    /// Allocates an id and encodes the record; the writer stores it.
    pub(crate) fn encode(&self, entry: QuarantineEntry) -> (u64, Vec<u8>) {
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
        (
            id,
            serde_json::to_vec(&record).expect("a quarantine record always serializes"),
        )
    }

    pub fn get(&self, id: u64) -> Result<Option<QuarantineRecord>, StoreError> {
        self.keyspace
            .get(id.to_be_bytes())?
            .map(|bytes| decode(&bytes))
            .transpose()
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
            let record = decode(&guard.value()?)?;
            if source_id.is_none_or(|source| record.source_id == source) {
                out.push(record);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
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
