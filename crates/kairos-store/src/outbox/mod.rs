//! Delivery state: destinations and journeys (in `meta`), and the outbox —
//! every message a journey decided to send, its status and attempts
//! (`deliveries` keyspace), a queue per destination of the messages still
//! to deliver (`outbox` keyspace), and the log position up to which
//! journeys have been applied (`meta`, `deliver/cursor`).
//!
//! Messages are enqueued together with the cursor — and with every other
//! write of the step that decided them ([`Effects`]) — in one atomic,
//! fsynced batch: after a crash the follower resumes at the cursor, so a
//! message is decided exactly once; delivery is at least once under the
//! same id.
//!
//! Here: records, destinations, journeys, syncs, messages and queues;
//! [`waits`]: reading journeys' per-person state (waits, runs, entry
//! counts) and the pseudonymous keys naming a person; [`effects`]: a
//! step's writes, committed in one batch; [`erasure`]: forgetting a person.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// A stored record's key and value, as read.
type KeyAndValue = (Vec<u8>, Vec<u8>);

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::pseudonym::Pseudonyms;
use crate::{StoreError, random_token};

mod effects;
mod erasure;
mod experiments;
mod offers;
mod waits;

pub use effects::{Effects, Outcome};
pub use experiments::{ExperimentRecord, ExperimentSettings, Exposure};
pub use offers::{
    DECISION_RETENTION_DEFAULT, DecidedAction, DecisionRecord, HISTORY_IMPRESSIONS_MAX,
    IncentiveLog, OfferHistory, OfferRecord, OfferStats, ResponseKind,
};

const DESTINATION_PREFIX: &str = "destination/";
const JOURNEY_PREFIX: &str = "journey/";
const SYNC_PREFIX: &str = "audience-sync/";
/// Journey counters (`count/{journey}\0{name}`): how many entered, reached
/// the goal, finished.
const COUNT_PREFIX: &str = "count/";
const CURSOR_KEY: &str = "deliver/cursor";
/// `m/<message id>` → message; `p/<pseudonym of identifier>\0<message id>` → "".
/// Identifiers appear in keys only as pseudonyms ([`crate::pseudonym`]):
/// an erasure's deletions must not leave them in tombstones.
const MESSAGE_PREFIX: &str = "m/";
const PROFILE_PREFIX: &str = "p/";
/// `<destination id>/<seq, big-endian>` → message id.
const QUEUE_KEYSPACE: &str = "outbox";
/// `w/<journey>\0<pseudonym of key>` → wait; `d/<deadline ns, big-endian>/<journey>\0<pseudonym of key>` → "";
/// `r/<pseudonym of identifier>\0<journey>\0<seq>` → run; `t…` → run key;
/// `e/<journey>\0<pseudonym of identifier>` → entries;
/// `s/<sync>\0<event seq, big-endian>` → a membership change waiting for its batch.
const WAITS_KEYSPACE: &str = "waits";
const DELIVERIES_KEYSPACE: &str = "deliveries";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DestinationRecord {
    /// `dst_…`.
    pub id: String,
    pub name: String,
    /// "webhook" or "email".
    pub kind: String,
    /// The webhook's URL, or the SMTP server (`smtp://host:port`).
    pub url: String,
    /// Email: the sender (`Shop <hello@shop.example>`).
    #[serde(default)]
    pub from: Option<String>,
    /// `whsec_…`: shown once, when created; never returned afterwards.
    pub secret: String,
    pub created_at: Timestamp,
    /// Why deliveries stopped (410 Gone), if they did.
    pub disabled: Option<String>,
    /// Extra request headers (webhooks), e.g. an API key the endpoint wants.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// The secret before the last rotation: requests carry its signature
    /// too until `previous_secret_until`, so receivers can switch over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret_until: Option<Timestamp>,
}

impl DestinationRecord {
    /// The secrets requests are signed with at `now`: the current one, and
    /// the previous one during a rotation's overlap.
    pub fn signing_secrets(&self, now: Timestamp) -> Vec<&str> {
        let mut secrets = vec![self.secret.as_str()];
        if let (Some(previous), Some(until)) = (&self.previous_secret, self.previous_secret_until)
            && now < until
        {
            secrets.push(previous);
        }
        secrets
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JourneyRecord {
    /// `jny_…`.
    pub id: String,
    pub name: String,
    /// The definition as submitted (JSON), checked by the caller.
    pub definition: Value,
    /// Events at or before this log position happened before the journey
    /// existed: they do not start it.
    pub starts_after_seq: u64,
    pub created_at: Timestamp,
    /// Paused: nobody enters, nothing is sent; runs hold at their next step.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
}

/// A paused journey's run that came due waits here until the journey
/// resumes (then it is due at once).
pub const HELD_UNTIL: Timestamp = Timestamp::MAX;

/// A journey waiting to see whether an event follows (the abandoned cart):
/// it starts at `deadline` unless cancelled first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Wait {
    pub journey: String,
    /// The key's value (a cart id), or the person's identifier.
    pub key: String,
    pub deadline: Timestamp,
    /// The event that started the wait.
    pub event_seq: u64,
    pub started_at: Timestamp,
    /// `type:value` of whom it is about.
    pub identifier: String,
    /// The starting event as the message will show it.
    pub event: Value,
}

/// A person's place in a journey that is waiting (a wait step, or an event
/// with a timeout).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub journey: String,
    /// `type:value` of the person.
    pub identifier: String,
    /// The log position of the event that started it (its id).
    pub event_seq: u64,
    /// The next instruction of the journey's program.
    pub pc: usize,
    pub resume_at: Timestamp,
    /// An event that resumes it before `resume_at`.
    pub waiting_for: Option<String>,
    pub started_at: Timestamp,
    /// The starting event, as messages show it.
    pub event: Value,
}

/// An audience sync: the membership changes of an audience, delivered in
/// batches to a webhook destination.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudienceSyncRecord {
    /// `syn_…`.
    pub id: String,
    pub name: String,
    pub audience: String,
    /// The destination's id.
    pub destination: String,
    /// Changes per batch at most.
    pub batch_size: usize,
    /// A batch goes at the latest this long after its first change.
    pub max_wait_seconds: u64,
    /// Changes at or before this log position are older than the sync.
    pub starts_after_seq: u64,
    pub created_at: Timestamp,
}

/// A membership change waiting for its batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncChange {
    /// The announcement's log position.
    pub seq: u64,
    /// "entered" or "exited".
    pub action: String,
    /// `type:value` of the person.
    pub identifier: String,
    /// When the membership changed.
    pub at: Timestamp,
    /// When it was read from the log (system clock): batches wait from here.
    pub noticed_at: Timestamp,
}

/// How often and when a person last entered a journey.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Entries {
    pub count: u64,
    pub last: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    /// Waiting for its next attempt.
    Pending,
    Delivered,
    /// Gave up (attempts exhausted, or the destination was disabled); can be
    /// replayed.
    Dead,
    /// Never sent: the contact policy said no (the reason is `last_error`).
    Blocked,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// `msg_…`: the `webhook-id`, the same on every attempt.
    pub id: String,
    /// Order of creation (the queue key).
    pub seq: u64,
    pub destination: String,
    pub journey: String,
    /// "marketing", ...: a send subject to the contact policy.
    #[serde(default)]
    pub purpose: Option<String>,
    /// The destination's kind ("webhook"): caps count per channel.
    #[serde(default)]
    pub channel: String,
    /// Whom it is about: `type:value` of the event's most trusted identifier.
    pub identifier: String,
    /// The log position of the event that caused it.
    pub event_seq: u64,
    /// The body sent (a Standard Webhooks payload).
    pub payload: Value,
    pub status: MessageStatus,
    pub attempts: u32,
    pub next_attempt_at: Timestamp,
    /// Held until this moment of the engine's clock (the contact policy's
    /// quiet hours), whatever the pace of its destination: an in-app page
    /// open meanwhile does not get it. On the engine's clock because that
    /// is what the policy judged on (a manual one in tests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deferred_until: Option<Timestamp>,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub delivered_at: Option<Timestamp>,
}

pub struct Outbox {
    db: Database,
    meta: Keyspace,
    queue: Keyspace,
    deliveries: Keyspace,
    waits: Keyspace,
    next_seq: AtomicU64,
    /// Serializes definition changes (names are unique).
    changing: Mutex<()>,
    /// Identifiers erased while this process runs: nothing about them is
    /// written again (a worker or the follower may still hold a copy of a
    /// message or run read before the erasure). Memory only: after a
    /// restart their events are unreadable, so nothing can bring them back.
    erased: std::sync::RwLock<std::collections::HashSet<String>>,
    pseudonyms: Pseudonyms,
    /// Every offer's counts (`offer-stats/…` key → counts), in memory for
    /// decisions; updated after each batch that changes them.
    offer_stats: std::sync::RwLock<offers::StatsByOffer>,
    /// Bumped at every catalog change: compiled catalogs know when to
    /// compile again.
    offers_version: AtomicU64,
    /// Each experiment's group counts (Thompson allocation reads them).
    experiment_counts: experiments::Counts,
}

/// What erasing a person removed from the outbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxErasure {
    /// Messages (pending, delivered, dead or blocked) and their log entries.
    pub messages: usize,
    /// Journey runs and `not followed by` waits.
    pub runs_and_waits: usize,
    /// Membership changes waiting for an audience-sync batch.
    pub sync_changes: usize,
    /// Decisions about them and their history with offers.
    #[serde(default)]
    pub decisions: usize,
    /// Their exposures to experiments (with their outcomes).
    #[serde(default)]
    pub experiment_exposures: usize,
}

impl Outbox {
    pub(crate) fn open(
        db: Database,
        meta: Keyspace,
        pseudonyms: Pseudonyms,
    ) -> Result<Outbox, StoreError> {
        let queue = db.keyspace(QUEUE_KEYSPACE, KeyspaceCreateOptions::default)?;
        let deliveries = db.keyspace(DELIVERIES_KEYSPACE, KeyspaceCreateOptions::default)?;
        let waits = db.keyspace(WAITS_KEYSPACE, KeyspaceCreateOptions::default)?;
        let meta_for_stats = meta.clone();
        let waits_for_counts = waits.clone();
        let mut last = 0;
        for guard in deliveries.prefix(MESSAGE_PREFIX) {
            let message: Message = decode(&guard.value()?)?;
            last = last.max(message.seq);
        }
        let outbox = Outbox {
            db,
            meta,
            queue,
            deliveries,
            waits,
            next_seq: AtomicU64::new(last + 1),
            changing: Mutex::new(()),
            erased: Default::default(),
            pseudonyms,
            offer_stats: std::sync::RwLock::new(offers::load_stats(&meta_for_stats)?),
            offers_version: AtomicU64::new(1),
            experiment_counts: experiments::Counts::load(&waits_for_counts)?,
        };
        outbox.index_decisions_by_time()?;
        Ok(outbox)
    }

    /// The keyspaces holding people's data, for compaction after erasure.
    pub(crate) fn personal_keyspaces(&self) -> [&Keyspace; 3] {
        [&self.queue, &self.deliveries, &self.waits]
    }

    // --- destinations --------------------------------------------------

    pub fn create_destination(
        &self,
        name: &str,
        kind: &str,
        url: &str,
        from: Option<&str>,
        now: Timestamp,
    ) -> Result<DestinationRecord, StoreError> {
        let _changing = self.changing.lock().expect("outbox lock");
        if self.destination(name).is_some() {
            return Err(StoreError::NameTaken {
                thing: "destination",
                name: name.to_string(),
            });
        }
        let record = DestinationRecord {
            id: format!("dst_{}", random_token(12)),
            name: name.to_string(),
            kind: kind.to_string(),
            url: url.to_string(),
            from: from.map(str::to_string),
            secret: new_secret()?,
            created_at: now,
            disabled: None,
            headers: BTreeMap::new(),
            previous_secret: None,
            previous_secret_until: None,
        };
        self.put(DESTINATION_PREFIX, &record.id, &record)?;
        Ok(record)
    }

    /// Changes a destination with `edit` (under the outbox's lock, so a
    /// concurrent 410 is not lost); `None` if there is no such destination.
    pub fn edit_destination(
        &self,
        id: &str,
        edit: impl FnOnce(&mut DestinationRecord),
    ) -> Result<Option<DestinationRecord>, StoreError> {
        let _changing = self.changing.lock().expect("outbox lock");
        let Some(mut record) = self.destination(id) else {
            return Ok(None);
        };
        edit(&mut record);
        self.put(DESTINATION_PREFIX, &record.id, &record)?;
        Ok(Some(record))
    }

    pub fn destinations(&self) -> Vec<DestinationRecord> {
        self.list(DESTINATION_PREFIX)
    }

    /// A destination by id or name.
    pub fn destination(&self, id: &str) -> Option<DestinationRecord> {
        self.destinations()
            .into_iter()
            .find(|record| record.id == id || record.name == id)
    }

    /// Stops deliveries to a destination (410 Gone), with the reason.
    pub fn disable_destination(&self, id: &str, reason: &str) -> Result<(), StoreError> {
        let _changing = self.changing.lock().expect("outbox lock");
        if let Some(mut record) = self.destination(id) {
            record.disabled = Some(reason.to_string());
            self.put(DESTINATION_PREFIX, &record.id, &record)?;
        }
        Ok(())
    }

    pub fn delete_destination(&self, id: &str) -> Result<bool, StoreError> {
        let _changing = self.changing.lock().expect("outbox lock");
        self.remove(DESTINATION_PREFIX, id)
    }

    // --- journeys --------------------------------------------------------

    pub fn create_journey(
        &self,
        name: &str,
        definition: Value,
        starts_after_seq: u64,
        now: Timestamp,
    ) -> Result<JourneyRecord, StoreError> {
        let _changing = self.changing.lock().expect("outbox lock");
        if self.journey(name).is_some() {
            return Err(StoreError::NameTaken {
                thing: "journey",
                name: name.to_string(),
            });
        }
        let record = JourneyRecord {
            id: format!("jny_{}", random_token(12)),
            name: name.to_string(),
            definition,
            starts_after_seq,
            created_at: now,
            paused: false,
        };
        self.put(JOURNEY_PREFIX, &record.id, &record)?;
        Ok(record)
    }

    /// Pauses or resumes a journey (the caller makes runs held while it
    /// was paused due again: [`crate::Store::resume_held_runs`]).
    pub fn set_journey_paused(
        &self,
        id: &str,
        paused: bool,
    ) -> Result<Option<JourneyRecord>, StoreError> {
        let _changing = self.changing.lock().expect("outbox lock");
        let Some(mut record) = self.journey(id) else {
            return Ok(None);
        };
        record.paused = paused;
        self.put(JOURNEY_PREFIX, &record.id, &record)?;
        Ok(Some(record))
    }

    /// Every journey, oldest first.
    pub fn journeys(&self) -> Vec<JourneyRecord> {
        let mut journeys: Vec<JourneyRecord> = self.list(JOURNEY_PREFIX);
        journeys.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        journeys
    }

    pub fn journey(&self, id: &str) -> Option<JourneyRecord> {
        self.journeys()
            .into_iter()
            .find(|record| record.id == id || record.name == id)
    }

    pub fn delete_journey(&self, id: &str) -> Result<bool, StoreError> {
        let _changing = self.changing.lock().expect("outbox lock");
        self.remove(JOURNEY_PREFIX, id)
    }

    // --- audience syncs -----------------------------------------------------

    pub fn create_sync(
        &self,
        mut record: AudienceSyncRecord,
    ) -> Result<AudienceSyncRecord, StoreError> {
        let _changing = self.changing.lock().expect("outbox lock");
        if self.sync(&record.name).is_some() {
            return Err(StoreError::NameTaken {
                thing: "audience sync",
                name: record.name,
            });
        }
        record.id = format!("syn_{}", random_token(12));
        self.put(SYNC_PREFIX, &record.id, &record)?;
        Ok(record)
    }

    /// Every audience sync, oldest first.
    pub fn syncs(&self) -> Vec<AudienceSyncRecord> {
        let mut syncs: Vec<AudienceSyncRecord> = self.list(SYNC_PREFIX);
        syncs.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        syncs
    }

    pub fn sync(&self, id: &str) -> Option<AudienceSyncRecord> {
        self.syncs()
            .into_iter()
            .find(|record| record.id == id || record.name == id)
    }

    /// Deletes a sync and the changes still waiting for its batch.
    pub fn delete_sync(&self, id: &str) -> Result<bool, StoreError> {
        let _changing = self.changing.lock().expect("outbox lock");
        for change in self.sync_changes(id, usize::MAX)? {
            self.waits.remove(sync_change_key(id, change.seq))?;
        }
        self.remove(SYNC_PREFIX, id)
    }

    /// The changes waiting for a batch of `sync`, oldest first.
    pub fn sync_changes(&self, sync: &str, limit: usize) -> Result<Vec<SyncChange>, StoreError> {
        let mut changes = Vec::new();
        for guard in self.waits.prefix(format!("s/{sync}\0")).take(limit) {
            changes.push(decode(&guard.value()?)?);
        }
        Ok(changes)
    }

    /// Sends a batch: its message is stored and its changes removed in one
    /// atomic, durable batch (a change is in exactly one message).
    pub fn flush_sync(
        &self,
        sync: &str,
        changes: &[SyncChange],
        message: &Message,
    ) -> Result<(), StoreError> {
        let mut batch = self.db.batch();
        for change in changes {
            batch.remove(&self.waits, sync_change_key(sync, change.seq));
        }
        self.write_message(&mut batch, message);
        batch.commit()?;
        self.db.persist(PersistMode::SyncData)?;
        Ok(())
    }

    // --- the outbox --------------------------------------------------------

    /// The log position up to which journeys have been applied.
    pub fn cursor(&self) -> Result<u64, StoreError> {
        Ok(self
            .meta
            .get(CURSOR_KEY)?
            .and_then(|bytes| bytes.as_ref().try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0))
    }

    /// A sequence number for a new message.
    pub fn next_seq(&self) -> u64 {
        self.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Records a message's new state; it leaves its queue once delivered
    /// or dead. Not fsynced: a crash can at worst repeat an attempt (under
    /// the same id).
    pub fn update(&self, message: &Message) -> Result<(), StoreError> {
        let mut batch = self.db.batch();
        self.write_message(&mut batch, message);
        batch.commit()?;
        Ok(())
    }

    /// A new message about a person: the message and its entry in the
    /// per-profile index.
    fn write_new_message(&self, batch: &mut fjall::OwnedWriteBatch, message: &Message) {
        if self.is_erased(&message.identifier) {
            return;
        }
        self.write_message(batch, message);
        batch.insert(
            &self.deliveries,
            self.profile_key(&message.identifier, &message.id),
            b"",
        );
    }

    fn write_message(&self, batch: &mut fjall::OwnedWriteBatch, message: &Message) {
        if self.is_erased(&message.identifier) {
            return;
        }
        let bytes = serde_json::to_vec(message).expect("a message serializes");
        batch.insert(
            &self.deliveries,
            format!("{MESSAGE_PREFIX}{}", message.id),
            bytes,
        );
        let queue_key = queue_key(&message.destination, message.seq);
        if message.status == MessageStatus::Pending {
            batch.insert(&self.queue, queue_key, message.id.as_bytes());
        } else {
            batch.remove(&self.queue, queue_key);
        }
    }

    pub fn message(&self, id: &str) -> Result<Option<Message>, StoreError> {
        match self.deliveries.get(format!("{MESSAGE_PREFIX}{id}"))? {
            Some(bytes) => Ok(Some(decode(&bytes)?)),
            None => Ok(None),
        }
    }

    /// A destination's pending messages from sequence `from` on, in
    /// creation order, at most `limit`. Starting past the delivered ones
    /// skips their deletion markers (a prefix scan from the start would
    /// walk every delivered message's tombstone).
    pub fn pending(
        &self,
        destination: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        let mut found = Vec::new();
        let range = queue_key(destination, from)..=queue_key(destination, u64::MAX);
        for guard in self.queue.range(range).take(limit) {
            let id = guard.value()?;
            if let Some(message) = self.message(&String::from_utf8_lossy(&id))? {
                found.push(message);
            }
        }
        Ok(found)
    }

    /// Messages about any of `identifiers` (`type:value`), newest first.
    pub fn by_identifiers(
        &self,
        identifiers: &[String],
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        let mut found = Vec::new();
        for identifier in identifiers {
            for (_, id) in self.indexed_messages(identifier)? {
                if let Some(message) = self.message(&String::from_utf8_lossy(&id))? {
                    found.push(message);
                }
            }
        }
        found.sort_by_key(|message| std::cmp::Reverse(message.seq));
        found.dedup_by(|a, b| a.id == b.id);
        found.truncate(limit);
        Ok(found)
    }

    /// A journey's counters by name.
    pub fn counts(&self, journey: &str) -> Result<BTreeMap<String, u64>, StoreError> {
        let prefix = format!("{COUNT_PREFIX}{journey}\0");
        let mut counts = BTreeMap::new();
        for guard in self.meta.prefix(&prefix) {
            let (key, value) = guard.into_inner()?;
            let name = String::from_utf8_lossy(&key[prefix.len()..]).to_string();
            counts.insert(name, decode::<u64>(&value)?);
        }
        Ok(counts)
    }

    /// Every run of a journey waiting now (a scan of all runs).
    pub fn runs_in(&self, journey: &str) -> Result<Vec<Run>, StoreError> {
        let mut runs = Vec::new();
        for guard in self.waits.prefix(b"r/") {
            let run: Run = decode(&guard.value()?)?;
            if run.journey == journey {
                runs.push(run);
            }
        }
        Ok(runs)
    }

    /// Every message a journey decided (a scan of all messages).
    pub fn messages_of(&self, journey: &str) -> Result<Vec<Message>, StoreError> {
        let mut found = Vec::new();
        for guard in self.deliveries.prefix(MESSAGE_PREFIX) {
            let message: Message = decode(&guard.value()?)?;
            if message.journey == journey {
                found.push(message);
            }
        }
        Ok(found)
    }

    /// Dead messages of one destination, oldest first (the order a
    /// replay sends them again).
    pub fn dead_of(&self, destination: &str, limit: usize) -> Result<Vec<Message>, StoreError> {
        let mut found = Vec::new();
        for guard in self.deliveries.prefix(MESSAGE_PREFIX) {
            let message: Message = decode(&guard.value()?)?;
            if message.status == MessageStatus::Dead && message.destination == destination {
                found.push(message);
            }
        }
        found.sort_by_key(|message| message.seq);
        found.truncate(limit);
        Ok(found)
    }

    /// Dead messages, newest first.
    pub fn dead(&self, limit: usize) -> Result<Vec<Message>, StoreError> {
        let mut found = Vec::new();
        for guard in self.deliveries.prefix(MESSAGE_PREFIX) {
            let message: Message = decode(&guard.value()?)?;
            if message.status == MessageStatus::Dead {
                found.push(message);
            }
        }
        found.sort_by_key(|message| std::cmp::Reverse(message.seq));
        found.truncate(limit);
        Ok(found)
    }

    fn put<T: Serialize>(&self, prefix: &str, id: &str, record: &T) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(record).expect("a record serializes");
        self.meta.insert(format!("{prefix}{id}"), bytes)?;
        self.db.persist(PersistMode::SyncAll)?;
        Ok(())
    }

    fn remove(&self, prefix: &str, id: &str) -> Result<bool, StoreError> {
        let key = format!("{prefix}{id}");
        if self.meta.get(&key)?.is_none() {
            return Ok(false);
        }
        self.meta.remove(key)?;
        self.db.persist(PersistMode::SyncAll)?;
        Ok(true)
    }

    fn list<T: for<'de> Deserialize<'de>>(&self, prefix: &str) -> Vec<T> {
        self.meta
            .prefix(prefix)
            .filter_map(|guard| serde_json::from_slice(&guard.value().ok()?).ok())
            .collect()
    }
}

/// A fresh Standard Webhooks signing secret, `whsec_` + 32 random bytes.
pub fn new_secret() -> Result<String, StoreError> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret)
        .map_err(|error| StoreError::Io(format!("no randomness: {error}")))?;
    Ok(format!("whsec_{}", BASE64.encode(secret)))
}

impl Outbox {
    /// The per-person index entries of `identifier`'s messages: (index
    /// key, message id).
    fn indexed_messages(&self, identifier: &str) -> Result<Vec<KeyAndValue>, StoreError> {
        let prefix = format!("{PROFILE_PREFIX}{}\0", self.pseudonyms.of(identifier));
        let mut entries = Vec::new();
        for guard in self.deliveries.prefix(&prefix) {
            let key = guard.key()?;
            entries.push((key.to_vec(), key[prefix.len()..].to_vec()));
        }
        Ok(entries)
    }

    /// The per-person index key of a message (pseudonym, see `pseudonym`).
    fn profile_key(&self, identifier: &str, id: &str) -> String {
        format!("{PROFILE_PREFIX}{}\0{id}", self.pseudonyms.of(identifier))
    }
}

fn queue_key(destination: &str, seq: u64) -> Vec<u8> {
    let mut key = format!("{destination}/").into_bytes();
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

fn sync_change_key(sync: &str, seq: u64) -> Vec<u8> {
    let mut key = format!("s/{sync}\0").into_bytes();
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes)
        .map_err(|error| StoreError::Corrupt(format!("outbox record: {error}")))
}
