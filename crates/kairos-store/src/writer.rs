//! The log writer: turns concurrent append requests into group commits.
//!
//! Requests queue on a bounded channel; when it is full the caller gets
//! [`StoreError::QueueFull`] at once (and answers 503 with `Retry-After`)
//! instead of piling up memory. Two threads form a pipeline:
//!
//! - the **writer** takes every request waiting (up to a bound), assigns
//!   sequence numbers, and writes events, dedup entries and quarantine
//!   records in one atomic batch. Dedup lookups against the store already ran
//!   on the caller's thread; the writer only closes the race with groups
//!   committed meanwhile ([`crate::recent`]);
//! - the **syncer** fsyncs and only then replies, so an acknowledgement
//!   always means durable. While it waits on the disk, the writer already
//!   prepares the next group; one fsync covers every group written before it.
//!
//! Readers see only events up to [`LogWriter::committed`], the last fsynced
//! sequence number.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fjall::{Database, Keyspace, PersistMode};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::log::chunk::ChunkBuilder;
use crate::log::{StoredEvent, encode_seq};
use crate::privacy::{ErasureReceipt, Privacy};
use crate::recent::RecentKeys;
use crate::vault::{SubjectId, Vault};
use crate::{EventLog, LogRecord, Quarantine, QuarantineEntry, StoreError, StoreOptions, dedup};

/// Most events the writer puts in one group commit.
const GROUP_EVENTS_MAX: usize = 50_000;
/// Most requests the writer puts in one group commit.
const GROUP_REQUESTS_MAX: usize = 256;
/// Durable groups a slow follower may fall behind before it must catch up
/// from the log.
const FEED_GROUPS_MAX: usize = 1024;
/// Written groups that may wait for the syncer (bounds memory and latency).
const GROUPS_AWAITING_FSYNC_MAX: usize = 8;

/// One request's worth of writes.
pub struct AppendJob {
    pub records: Vec<LogRecord>,
    pub quarantine: Vec<QuarantineEntry>,
    /// Quarantine records to delete (replayed successfully).
    pub quarantine_removals: Vec<u64>,
    /// The writer's group number when this job's dedup lookups began.
    epoch: u64,
    reply: oneshot::Sender<Result<AppendReceipt, StoreError>>,
}

/// An erasure made durable by the writer, in order with appends: events
/// queued before it are sealed under keys it destroys; events after it find
/// their subject suppressed.
pub struct EraseJob {
    pub shred: Vec<SubjectId>,
    pub suppress: Vec<SubjectId>,
    pub effective_after_seq: u64,
    /// Filled in by the writer: id and completion time.
    pub receipt: ErasureReceipt,
    pub quarantine_removals: Vec<u64>,
    reply: oneshot::Sender<Result<ErasureReceipt, StoreError>>,
}

enum Job {
    Append(AppendJob),
    Erase(EraseJob),
}

/// What happened to one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    Stored(u64),
    /// Already in the log (within the dedup window) at this sequence number.
    Duplicate(u64),
    /// Dropped: its subject was erased and is suppressed.
    Suppressed,
}

/// The durable outcome of one job.
#[derive(Debug, Clone)]
pub struct AppendReceipt {
    pub appended: Vec<Appended>,
    pub quarantine_ids: Vec<u64>,
    /// How many requests shared the group commit.
    pub group_requests: usize,
    pub write_time: Duration,
    pub fsync_time: Duration,
}

/// Counters the metrics endpoint reads.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub groups_committed: AtomicU64,
    pub events_stored: AtomicU64,
    pub duplicates: AtomicU64,
}

#[derive(Clone)]
pub struct LogWriter {
    sender: mpsc::Sender<Job>,
    feed: broadcast::Sender<Arc<Vec<StoredEvent>>>,
    dedup: Keyspace,
    dedup_window: Duration,
    /// Number of the last group whose batch is committed (visible to reads).
    epoch: Arc<AtomicU64>,
    committed: watch::Receiver<u64>,
    capacity: usize,
    pub stats: Arc<WriterStats>,
}

impl LogWriter {
    pub(crate) fn start(
        db: Database,
        log: Arc<EventLog>,
        dedup: Keyspace,
        quarantine: Arc<Quarantine>,
        vault: Arc<Vault>,
        privacy: Arc<Privacy>,
        options: &StoreOptions,
    ) -> Result<LogWriter, StoreError> {
        let (sender, receiver) = mpsc::channel(options.ingest_queue_requests_max.max(1));
        let last_seq = log.last_seq_at_open();
        let (committed_sender, committed) = watch::channel(last_seq);
        let (written_sender, written_receiver) =
            std::sync::mpsc::sync_channel(GROUPS_AWAITING_FSYNC_MAX);
        let stats = Arc::new(WriterStats::default());
        let epoch = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            db: db.clone(),
            log,
            dedup: dedup.clone(),
            epoch: epoch.clone(),
            group: 0,
            recent: RecentKeys::new(1),
            quarantine,
            vault,
            privacy,
            new_keys: Vec::new(),
            dedup_window: options.dedup_window,
            next_seq: last_seq + 1,
            stats: stats.clone(),
            written: written_sender,
            clock: options.clock.clone(),
        };
        let (feed, _) = broadcast::channel(FEED_GROUPS_MAX);
        let syncer = Syncer {
            db,
            fsync: options.fsync,
            committed: committed_sender,
            feed: feed.clone(),
        };
        let spawn_error = |error| StoreError::Engine(fjall::Error::Io(error));
        std::thread::Builder::new()
            .name("kairos-log-writer".into())
            .spawn(move || writer.run(receiver))
            .map_err(spawn_error)?;
        std::thread::Builder::new()
            .name("kairos-log-syncer".into())
            .spawn(move || syncer.run(written_receiver))
            .map_err(spawn_error)?;
        Ok(LogWriter {
            sender,
            feed,
            dedup,
            dedup_window: options.dedup_window,
            epoch,
            committed,
            capacity: options.ingest_queue_requests_max,
            stats,
        })
    }

    /// Appends durably; resolves once the writes are fsynced.
    pub async fn append(
        &self,
        mut records: Vec<LogRecord>,
        quarantine: Vec<QuarantineEntry>,
        quarantine_removals: Vec<u64>,
    ) -> Result<AppendReceipt, StoreError> {
        // Read the epoch before looking up: the writer re-checks everything
        // committed after it.
        let epoch = self.epoch.load(Ordering::Acquire);
        let now_ms = now_ms();
        for record in &mut records {
            record.duplicate_of =
                lookup(&self.dedup, &record.dedup_key, now_ms, self.dedup_window)?;
        }
        let (reply, receipt) = oneshot::channel();
        let job = AppendJob {
            records,
            quarantine,
            quarantine_removals,
            epoch,
            reply,
        };
        self.sender
            .try_send(Job::Append(job))
            .map_err(|error| match error {
                mpsc::error::TrySendError::Full(_) => StoreError::QueueFull(self.capacity),
                mpsc::error::TrySendError::Closed(_) => StoreError::WriterStopped,
            })?;
        match receipt.await {
            Ok(result) => result,
            Err(_) => Err(StoreError::WriterStopped),
        }
    }

    /// Destroys keys, persists suppressions and writes the audit record, in
    /// log order with appends; resolves once fsynced.
    pub async fn erase(
        &self,
        shred: Vec<SubjectId>,
        suppress: Vec<SubjectId>,
        effective_after_seq: u64,
        receipt: ErasureReceipt,
        quarantine_removals: Vec<u64>,
    ) -> Result<ErasureReceipt, StoreError> {
        let (reply, answer) = oneshot::channel();
        let job = EraseJob {
            shred,
            suppress,
            effective_after_seq,
            receipt,
            quarantine_removals,
            reply,
        };
        // Waits for room: an erasure must not be refused because ingest is busy.
        self.sender
            .send(Job::Erase(job))
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        match answer.await {
            Ok(result) => result,
            Err(_) => Err(StoreError::WriterStopped),
        }
    }

    /// Every durable group's stored events, in log order, as they become
    /// durable. A follower that falls more than a bounded number of groups
    /// behind gets `Lagged` and catches up from the log.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Vec<StoredEvent>>> {
        self.feed.subscribe()
    }

    /// The highest sequence number that is durable; changes after each fsync.
    pub fn committed(&self) -> watch::Receiver<u64> {
        self.committed.clone()
    }

    /// The highest durable sequence number now.
    pub fn committed_seq(&self) -> u64 {
        *self.committed.borrow()
    }

    pub fn is_running(&self) -> bool {
        !self.sender.is_closed()
    }

    /// Requests waiting for the writer.
    pub fn queue_depth(&self) -> usize {
        self.capacity - self.sender.capacity()
    }
}

type ReplySender = oneshot::Sender<Result<AppendReceipt, StoreError>>;

/// A group written to the store, waiting for its fsync.
struct WrittenGroup {
    replies: Vec<(ReplySender, Result<AppendReceipt, StoreError>)>,
    /// The group's stored events, for the live feed once durable.
    events: Vec<StoredEvent>,
    last_seq: u64,
    written_at: Instant,
}

struct Writer {
    db: Database,
    log: Arc<EventLog>,
    dedup: Keyspace,
    epoch: Arc<AtomicU64>,
    /// Number of the last group committed.
    group: u64,
    recent: RecentKeys,
    quarantine: Arc<Quarantine>,
    vault: Arc<Vault>,
    privacy: Arc<Privacy>,
    /// Keys created for the group being written (forgotten if it fails).
    new_keys: Vec<SubjectId>,
    dedup_window: Duration,
    next_seq: u64,
    stats: Arc<WriterStats>,
    written: std::sync::mpsc::SyncSender<WrittenGroup>,
    /// Dates erasure receipts (the engine's clock).
    clock: Arc<dyn kairos_core::clock::Clock>,
}

impl Writer {
    fn run(mut self, mut receiver: mpsc::Receiver<Job>) {
        let mut next: Option<Job> = None;
        loop {
            let first = match next.take() {
                Some(job) => job,
                None => match receiver.blocking_recv() {
                    Some(job) => job,
                    None => break,
                },
            };
            let first = match first {
                Job::Erase(job) => {
                    self.erase(job);
                    continue;
                }
                Job::Append(job) => job,
            };
            let mut events = first.records.len();
            let mut jobs = vec![first];
            while events < GROUP_EVENTS_MAX && jobs.len() < GROUP_REQUESTS_MAX {
                match receiver.try_recv() {
                    Ok(Job::Append(job)) => {
                        events += job.records.len();
                        jobs.push(job);
                    }
                    // An erasure ends the group: it applies after it.
                    Ok(erase) => {
                        next = Some(erase);
                        break;
                    }
                    Err(_) => break,
                }
            }
            let group = self.commit_group(jobs);
            if self.written.send(group).is_err() {
                break;
            }
        }
        tracing::info!("log writer stopped");
    }

    /// Commits an erasure on its own and fsyncs it before replying. Rare, so
    /// it does not go through the syncer's pipeline.
    fn erase(&mut self, mut job: EraseJob) {
        let result = (|| {
            let mut batch = self.db.batch();
            job.receipt.keys_destroyed = self.vault.shred(&job.shred, &mut batch);
            self.privacy
                .persist_suppressions(&job.suppress, job.effective_after_seq, &mut batch);
            for id in &job.quarantine_removals {
                batch.remove(&self.quarantine.keyspace, id.to_be_bytes());
            }
            let id = self.privacy.next_receipt_id();
            job.receipt.id = format!("era_{id}");
            job.receipt.completed_at = self.clock.now();
            let record = serde_json::to_vec(&job.receipt).expect("a receipt serializes");
            batch.insert(&self.privacy.audit_keyspace, id.to_be_bytes(), record);
            batch.commit()?;
            self.db.persist(PersistMode::SyncAll)?;
            Ok::<_, StoreError>(job.receipt.clone())
        })();
        if let Err(error) = &result {
            tracing::error!(%error, "erasure failed");
        }
        let _ = job.reply.send(result);
    }

    fn commit_group(&mut self, mut jobs: Vec<AppendJob>) -> WrittenGroup {
        let first_seq = self.next_seq;
        let group_requests = jobs.len();
        let started = Instant::now();
        let result = self.write_group(&mut jobs);
        let write_time = started.elapsed();
        let mut events = Vec::new();
        let replies = match result {
            Ok((outcomes, stored_events)) => {
                events = stored_events;
                self.stats.groups_committed.fetch_add(1, Ordering::Relaxed);
                jobs.into_iter()
                    .zip(outcomes)
                    .map(|(job, (appended, quarantine_ids))| {
                        let receipt = AppendReceipt {
                            appended,
                            quarantine_ids,
                            group_requests,
                            write_time,
                            fsync_time: Duration::ZERO,
                        };
                        (job.reply, Ok(receipt))
                    })
                    .collect()
            }
            Err(error) => {
                // Nothing of the group was written; its sequence numbers are
                // reused by the next group, and keys made for it are dropped.
                self.next_seq = first_seq;
                self.vault.unpersist(&self.new_keys);
                tracing::error!(%error, "group commit failed");
                jobs.into_iter()
                    .map(|job| (job.reply, Err(error.replicate())))
                    .collect()
            }
        };
        WrittenGroup {
            replies,
            events,
            last_seq: self.next_seq - 1,
            written_at: Instant::now(),
        }
    }

    #[allow(clippy::type_complexity)]
    fn write_group(
        &mut self,
        jobs: &mut [AppendJob],
    ) -> Result<(Vec<(Vec<Appended>, Vec<u64>)>, Vec<StoredEvent>), StoreError> {
        let now_ms = now_ms();
        let window_start_ms = now_ms - self.dedup_window.as_millis() as i64;
        let group = self.group + 1;
        let mut batch = self.db.batch();
        let mut outcomes = Vec::with_capacity(jobs.len());
        let (mut stored, mut duplicates) = (0u64, 0u64);
        let first_seq = self.next_seq;
        let mut feed = Vec::new();
        self.new_keys.clear();
        let mut chunks: Vec<ChunkBuilder> = (0..self.log.partition_count())
            .map(|_| ChunkBuilder::default())
            .collect();
        for job in jobs.iter_mut() {
            // Lookups that began before the oldest group still kept must be
            // redone here; normally every later group is kept.
            let recheck = !self.recent.covers_after(job.epoch);
            let mut appended = Vec::with_capacity(job.records.len());
            for record in job.records.iter_mut() {
                let mut duplicate_of = record
                    .duplicate_of
                    .or_else(|| self.recent.get(&record.dedup_key, window_start_ms));
                if duplicate_of.is_none() && recheck {
                    duplicate_of =
                        lookup(&self.dedup, &record.dedup_key, now_ms, self.dedup_window)?;
                }
                if let Some(seq) = duplicate_of {
                    appended.push(Appended::Duplicate(seq));
                    duplicates += 1;
                    continue;
                }
                if self.privacy.suppressed_after(&record.subject).is_some() {
                    // Erased while queued: never gets a new key.
                    self.privacy.events_dropped.fetch_add(1, Ordering::Relaxed);
                    appended.push(Appended::Suppressed);
                    continue;
                }
                let seq = self.next_seq;
                self.next_seq += 1;
                let partition = self.log.partition_index(record.routing_hash);
                if record.sealed.is_empty() {
                    record.sealed = self.vault.seal(&record.subject, &record.bytes);
                }
                self.vault
                    .persist_key(&record.subject, &mut batch, &mut self.new_keys);
                chunks[partition].push(seq, &record.sealed);
                feed.push(StoredEvent {
                    seq,
                    bytes: std::mem::take(&mut record.bytes),
                });
                if chunks[partition].is_full() {
                    self.close_chunk(&mut batch, partition, &mut chunks[partition]);
                }
                batch.insert(
                    &self.dedup,
                    record.dedup_key,
                    dedup::value(seq, record.received_at_ms),
                );
                self.recent
                    .insert(record.dedup_key, seq, group, record.received_at_ms);
                appended.push(Appended::Stored(seq));
                stored += 1;
            }
            let mut quarantine_ids = Vec::with_capacity(job.quarantine.len());
            for entry in job.quarantine.drain(..) {
                self.vault
                    .persist_key(&entry.subject, &mut batch, &mut self.new_keys);
                let (id, bytes) = self.quarantine.encode(entry);
                batch.insert(&self.quarantine.keyspace, id.to_be_bytes(), bytes);
                quarantine_ids.push(id);
            }
            for id in &job.quarantine_removals {
                batch.remove(&self.quarantine.keyspace, id.to_be_bytes());
            }
            outcomes.push((appended, quarantine_ids));
        }
        for (partition, chunk) in chunks.iter_mut().enumerate() {
            self.close_chunk(&mut batch, partition, chunk);
        }
        if let Err(error) = batch.commit() {
            self.next_seq = first_seq;
            self.recent.discard_group(group);
            return Err(error.into());
        }
        self.group = group;
        self.epoch.store(group, Ordering::Release);
        self.recent.evict();
        self.stats
            .events_stored
            .fetch_add(stored, Ordering::Relaxed);
        self.stats
            .duplicates
            .fetch_add(duplicates, Ordering::Relaxed);
        Ok((outcomes, feed))
    }
}

impl Writer {
    fn close_chunk(
        &self,
        batch: &mut fjall::OwnedWriteBatch,
        partition: usize,
        chunk: &mut ChunkBuilder,
    ) {
        if let Some((first_seq, value)) = chunk.take() {
            batch.insert(self.log.partition(partition), encode_seq(first_seq), value);
        }
    }
}

/// Deduplication's "now": the wall clock, like the retries it bounds (a
/// manual clock must not make a retried event new, or keep keys forever).
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0)
}

/// The sequence number a message was stored at, if within the dedup window.
fn lookup(
    dedup: &Keyspace,
    key: &[u8; 16],
    now_ms: i64,
    window: Duration,
) -> Result<Option<u64>, StoreError> {
    let Some(value) = dedup.get(key)? else {
        return Ok(None);
    };
    Ok(dedup::decode(&value)
        .filter(|(_, received)| dedup::is_live(*received, now_ms, window))
        .map(|(seq, _)| seq))
}

struct Syncer {
    db: Database,
    fsync: bool,
    committed: watch::Sender<u64>,
    feed: broadcast::Sender<Arc<Vec<StoredEvent>>>,
}

impl Syncer {
    fn run(self, written: std::sync::mpsc::Receiver<WrittenGroup>) {
        while let Ok(first) = written.recv() {
            // One fsync covers every group written so far.
            let mut groups = vec![first];
            groups.extend(written.try_iter());
            let synced = if self.fsync {
                self.db.persist(PersistMode::SyncData)
            } else {
                Ok(())
            };
            let synced_at = Instant::now();
            let last_seq = groups.iter().map(|group| group.last_seq).max().unwrap_or(0);
            match synced {
                Ok(()) => {
                    self.committed.send_if_modified(|committed| {
                        let advanced = last_seq > *committed;
                        *committed = (*committed).max(last_seq);
                        advanced
                    });
                }
                Err(ref error) => {
                    tracing::error!(%error, "fsync failed; the group is not acknowledged and the log stops taking writes")
                }
            }
            let failure = synced
                .as_ref()
                .err()
                .map(|error| format!("fsync failed: {error}"));
            if failure.is_none() {
                for group in &mut groups {
                    if !group.events.is_empty() {
                        // No subscriber is fine: followers catch up from the log.
                        let _ = self.feed.send(Arc::new(std::mem::take(&mut group.events)));
                    }
                }
            }
            for group in groups {
                let fsync_time = synced_at.saturating_duration_since(group.written_at);
                for (reply, result) in group.replies {
                    let result = match (&failure, result) {
                        // The disk refused: not corrupt data, and retryable once
                        // the server is healthy again.
                        (Some(message), _) => Err(StoreError::Io(message.clone())),
                        (None, Ok(mut receipt)) => {
                            receipt.fsync_time = fsync_time;
                            Ok(receipt)
                        }
                        (None, Err(error)) => Err(error),
                    };
                    let _ = reply.send(result);
                }
            }
            if failure.is_some() {
                // After a failed fsync the kernel may have dropped dirty pages:
                // nothing written since can be trusted to be durable, so stop
                // (readiness turns 503) rather than acknowledge more.
                break;
            }
        }
        tracing::info!("log syncer stopped");
    }
}
