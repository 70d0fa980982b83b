//! The log writer: one thread that turns concurrent append requests into one
//! atomic batch and one fsync (group commit).
//!
//! Requests queue on a bounded channel; when it is full the caller gets
//! [`StoreError::QueueFull`] at once (and answers 503 with `Retry-After`)
//! instead of piling up memory. The writer takes every request waiting (up to
//! a bound), checks each event against the dedup index, assigns sequence
//! numbers, writes events, dedup entries and quarantine records in one batch,
//! fsyncs, and only then replies — so an acknowledgement always means durable.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fjall::{Database, Keyspace, PersistMode};
use tokio::sync::{mpsc, oneshot, watch};

use crate::log::encode_seq;
use crate::{EventLog, LogRecord, Quarantine, QuarantineEntry, StoreError, StoreOptions, dedup};

/// Most events the writer puts in one group commit.
const GROUP_EVENTS_MAX: usize = 50_000;
/// Most requests the writer puts in one group commit.
const GROUP_REQUESTS_MAX: usize = 256;

/// One request's worth of writes.
pub struct AppendJob {
    pub records: Vec<LogRecord>,
    pub quarantine: Vec<QuarantineEntry>,
    /// Quarantine records to delete (replayed successfully).
    pub quarantine_removals: Vec<u64>,
    reply: oneshot::Sender<Result<AppendReceipt, String>>,
}

/// What happened to one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    Stored(u64),
    /// Already in the log (within the dedup window) at this sequence number.
    Duplicate(u64),
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
    sender: mpsc::Sender<AppendJob>,
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
        options: &StoreOptions,
    ) -> Result<LogWriter, StoreError> {
        let (sender, receiver) = mpsc::channel(options.ingest_queue_requests_max.max(1));
        let last_seq = log.last_seq_at_open();
        let (committed_sender, committed) = watch::channel(last_seq);
        let stats = Arc::new(WriterStats::default());
        let worker = Worker {
            db,
            log,
            dedup,
            quarantine,
            fsync: options.fsync,
            dedup_window: options.dedup_window,
            next_seq: last_seq + 1,
            committed: committed_sender,
            stats: stats.clone(),
        };
        std::thread::Builder::new()
            .name("kairos-log-writer".into())
            .spawn(move || worker.run(receiver))
            .map_err(|error| StoreError::Engine(fjall::Error::Io(error)))?;
        Ok(LogWriter {
            sender,
            committed,
            capacity: options.ingest_queue_requests_max,
            stats,
        })
    }

    /// Appends durably; resolves once the writes are fsynced.
    pub async fn append(
        &self,
        records: Vec<LogRecord>,
        quarantine: Vec<QuarantineEntry>,
        quarantine_removals: Vec<u64>,
    ) -> Result<AppendReceipt, StoreError> {
        let (reply, receipt) = oneshot::channel();
        let job = AppendJob {
            records,
            quarantine,
            quarantine_removals,
            reply,
        };
        self.sender.try_send(job).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => StoreError::QueueFull(self.capacity),
            mpsc::error::TrySendError::Closed(_) => StoreError::WriterStopped,
        })?;
        match receipt.await {
            Ok(Ok(receipt)) => Ok(receipt),
            Ok(Err(message)) => Err(StoreError::Corrupt(message)),
            Err(_) => Err(StoreError::WriterStopped),
        }
    }

    /// The highest sequence number that is durable; changes after each group.
    pub fn committed(&self) -> watch::Receiver<u64> {
        self.committed.clone()
    }

    pub fn is_running(&self) -> bool {
        !self.sender.is_closed()
    }

    /// Requests waiting for the writer.
    pub fn queue_depth(&self) -> usize {
        self.capacity - self.sender.capacity()
    }
}

struct Worker {
    db: Database,
    log: Arc<EventLog>,
    dedup: Keyspace,
    quarantine: Arc<Quarantine>,
    fsync: bool,
    dedup_window: Duration,
    next_seq: u64,
    committed: watch::Sender<u64>,
    stats: Arc<WriterStats>,
}

impl Worker {
    fn run(mut self, mut receiver: mpsc::Receiver<AppendJob>) {
        while let Some(first) = receiver.blocking_recv() {
            let mut events = first.records.len();
            let mut jobs = vec![first];
            while events < GROUP_EVENTS_MAX && jobs.len() < GROUP_REQUESTS_MAX {
                match receiver.try_recv() {
                    Ok(job) => {
                        events += job.records.len();
                        jobs.push(job);
                    }
                    Err(_) => break,
                }
            }
            self.commit_group(jobs);
        }
        tracing::info!("log writer stopped: every sender is gone");
    }

    fn commit_group(&mut self, mut jobs: Vec<AppendJob>) {
        let first_seq = self.next_seq;
        let group_requests = jobs.len();
        match self.write_group(&mut jobs) {
            Ok((outcomes, write_time, fsync_time)) => {
                self.committed.send_replace(self.next_seq - 1);
                self.stats.groups_committed.fetch_add(1, Ordering::Relaxed);
                for (job, (appended, quarantine_ids)) in jobs.into_iter().zip(outcomes) {
                    let _ = job.reply.send(Ok(AppendReceipt {
                        appended,
                        quarantine_ids,
                        group_requests,
                        write_time,
                        fsync_time,
                    }));
                }
            }
            Err(error) => {
                // Nothing of the group is acknowledged; the sequence numbers
                // are reused by the next group.
                self.next_seq = first_seq;
                tracing::error!(%error, "group commit failed");
                for job in jobs {
                    let _ = job.reply.send(Err(error.to_string()));
                }
            }
        }
    }

    #[allow(clippy::type_complexity)]
    fn write_group(
        &mut self,
        jobs: &mut [AppendJob],
    ) -> Result<(Vec<(Vec<Appended>, Vec<u64>)>, Duration, Duration), StoreError> {
        let started = Instant::now();
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_millis() as i64)
            .unwrap_or(0);
        let mut batch = self.db.batch();
        let mut in_group: HashMap<Vec<u8>, u64> = HashMap::new();
        let mut outcomes = Vec::with_capacity(jobs.len());
        let (mut stored, mut duplicates) = (0u64, 0u64);
        for job in jobs.iter_mut() {
            let mut appended = Vec::with_capacity(job.records.len());
            for record in job.records.iter_mut() {
                let key = dedup::key(&record.source_id, &record.message_id);
                if let Some(seq) = self.seen(&in_group, &key, now_ms)? {
                    appended.push(Appended::Duplicate(seq));
                    duplicates += 1;
                    continue;
                }
                let seq = self.next_seq;
                self.next_seq += 1;
                let partition = self.log.partition_for(record.routing_hash);
                batch.insert(
                    partition,
                    encode_seq(seq),
                    std::mem::take(&mut record.bytes),
                );
                batch.insert(
                    &self.dedup,
                    key.clone(),
                    dedup::value(seq, record.received_at_ms),
                );
                in_group.insert(key, seq);
                appended.push(Appended::Stored(seq));
                stored += 1;
            }
            let mut quarantine_ids = Vec::with_capacity(job.quarantine.len());
            for entry in job.quarantine.drain(..) {
                let (id, bytes) = self.quarantine.encode(entry);
                batch.insert(&self.quarantine.keyspace, id.to_be_bytes(), bytes);
                quarantine_ids.push(id);
            }
            for id in &job.quarantine_removals {
                batch.remove(&self.quarantine.keyspace, id.to_be_bytes());
            }
            outcomes.push((appended, quarantine_ids));
        }
        batch.commit()?;
        let write_time = started.elapsed();
        if self.fsync {
            self.db.persist(PersistMode::SyncData)?;
        }
        let fsync_time = started.elapsed() - write_time;
        self.stats
            .events_stored
            .fetch_add(stored, Ordering::Relaxed);
        self.stats
            .duplicates
            .fetch_add(duplicates, Ordering::Relaxed);
        Ok((outcomes, write_time, fsync_time))
    }

    /// The sequence number a message was already stored at, if it was
    /// stored within the dedup window (or earlier in this group).
    fn seen(
        &self,
        in_group: &HashMap<Vec<u8>, u64>,
        key: &[u8],
        now_ms: i64,
    ) -> Result<Option<u64>, StoreError> {
        if let Some(seq) = in_group.get(key) {
            return Ok(Some(*seq));
        }
        let Some(value) = self.dedup.get(key)? else {
            return Ok(None);
        };
        Ok(dedup::decode(&value)
            .filter(|(_, received)| dedup::is_live(*received, now_ms, self.dedup_window))
            .map(|(seq, _)| seq))
    }
}
