//! Suppression list and erasure audit log (GDPR/CCPA right to erasure).
//!
//! Erasing a person suppresses every identifier the profile held: events
//! carrying one are dropped and counted instead of re-creating the person.
//! A suppression takes effect after a log position (`after_seq`): the engine
//! drops suppressed events after it and only strips suppressed identifiers
//! from earlier ones, so replaying the log after a restart gives the same
//! state as the live engine had.
//!
//! Both keyspaces hold pseudonyms ([`crate::vault::SubjectId`]) and counts,
//! never identifiers or trait values.

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use fjall::{Database, Keyspace, KeyspaceCreateOptions};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::StoreError;
use crate::vault::SubjectId;

const SUPPRESSED_KEYSPACE: &str = "suppressed";
const AUDIT_KEYSPACE: &str = "audit";

/// The receipt of one erasure, as returned and as kept in the audit log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErasureReceipt {
    /// `era_<n>`.
    pub id: String,
    pub profile_id: String,
    pub requested_at: Timestamp,
    pub completed_at: Timestamp,
    /// How many identifiers of each type were erased and suppressed.
    pub identities: BTreeMap<String, usize>,
    /// Keys destroyed: every event sealed under them is unreadable.
    pub keys_destroyed: usize,
    /// Events of the person's timeline at the moment of erasure.
    pub events_erased: usize,
    /// Quarantined events naming the person, deleted.
    pub quarantine_purged: usize,
    /// Events after this log position carrying a suppressed identifier are dropped.
    pub effective_after_seq: u64,
    /// Messages, journey runs and waits, and audience-sync changes about
    /// the person, deleted from the outbox.
    #[serde(default)]
    pub outbox_erased: crate::outbox::OutboxErasure,
}

pub struct Privacy {
    suppressed_keyspace: Keyspace,
    pub(crate) audit_keyspace: Keyspace,
    suppressed: RwLock<HashMap<SubjectId, u64>>,
    /// Fast path: no lookups at all while nobody is suppressed.
    any_suppressed: AtomicBool,
    next_audit_id: AtomicU64,
    /// Events dropped because they carried a suppressed identifier.
    pub events_dropped: AtomicU64,
}

impl Privacy {
    pub(crate) fn open(db: &Database) -> Result<Privacy, StoreError> {
        let suppressed_keyspace =
            db.keyspace(SUPPRESSED_KEYSPACE, KeyspaceCreateOptions::default)?;
        let audit_keyspace = db.keyspace(AUDIT_KEYSPACE, KeyspaceCreateOptions::default)?;
        let mut suppressed = HashMap::new();
        for guard in suppressed_keyspace.iter() {
            let (subject, after) = guard.into_inner()?;
            let subject: SubjectId = subject
                .as_ref()
                .try_into()
                .map_err(|_| StoreError::Corrupt("suppressed subject is not 16 bytes".into()))?;
            let after = crate::log::decode_seq(&after)?;
            suppressed.insert(subject, after);
        }
        let last_audit = match audit_keyspace.last_key_value() {
            Some(guard) => crate::log::decode_seq(&guard.key()?)?,
            None => 0,
        };
        Ok(Privacy {
            suppressed_keyspace,
            audit_keyspace,
            any_suppressed: AtomicBool::new(!suppressed.is_empty()),
            suppressed: RwLock::new(suppressed),
            next_audit_id: AtomicU64::new(last_audit + 1),
            events_dropped: AtomicU64::new(0),
        })
    }

    /// The log position after which the subject is suppressed, if it is.
    pub fn suppressed_after(&self, subject: &SubjectId) -> Option<u64> {
        if !self.any_suppressed.load(Ordering::Acquire) {
            return None;
        }
        self.suppressed
            .read()
            .expect("suppression lock")
            .get(subject)
            .copied()
    }

    /// How many identifiers are suppressed: it only grows, one step per
    /// erasure, so state recorded with a smaller count predates an erasure.
    pub fn suppressed_count(&self) -> usize {
        self.suppressed.read().expect("suppression lock").len()
    }

    pub fn has_suppressions(&self) -> bool {
        self.any_suppressed.load(Ordering::Acquire)
    }

    /// Suppresses subjects in memory, at once: ingestion and the engine drop
    /// their events from now on. [`crate::LogWriter::erase`] makes it durable.
    pub fn suppress_now(&self, subjects: &[SubjectId], after_seq: u64) {
        let mut suppressed = self.suppressed.write().expect("suppression lock");
        for subject in subjects {
            suppressed.entry(*subject).or_insert(after_seq);
        }
        self.any_suppressed
            .store(!suppressed.is_empty(), Ordering::Release);
    }

    pub(crate) fn persist_suppressions(
        &self,
        subjects: &[SubjectId],
        after_seq: u64,
        batch: &mut fjall::OwnedWriteBatch,
    ) {
        for subject in subjects {
            let after = self.suppressed_after(subject).unwrap_or(after_seq);
            batch.insert(&self.suppressed_keyspace, subject, after.to_be_bytes());
        }
    }

    pub(crate) fn next_receipt_id(&self) -> u64 {
        self.next_audit_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The audit log, newest first.
    pub fn audit(&self, limit: usize) -> Result<Vec<ErasureReceipt>, StoreError> {
        let mut receipts = Vec::new();
        for guard in self.audit_keyspace.iter().rev().take(limit) {
            let value = guard.value()?;
            receipts.push(
                serde_json::from_slice(&value)
                    .map_err(|error| StoreError::Corrupt(format!("audit record: {error}")))?,
            );
        }
        Ok(receipts)
    }
}
