//! The partitioned, append-only event log.
//!
//! Each partition is a keyspace `log-NNN` keyed by the event's global
//! sequence number. The sequence is global (not per partition) so "log order"
//! is one total order that readers can resume from with a single cursor,
//! while each partition can still be owned and replayed on its own.

use fjall::{Database, Keyspace, KeyspaceCreateOptions};
use kairos_core::Event;

use crate::StoreError;

/// An event ready to append: its log bytes are encoded by the caller, off
/// the writer thread.
#[derive(Debug, Clone)]
pub struct LogRecord {
    /// `(source, messageId)` hashed: the dedup index key.
    pub dedup_key: [u8; 16],
    /// Set by the dedup lookup before queueing: already stored at this seq.
    pub duplicate_of: Option<u64>,
    /// Hash of the routing key; the log takes it modulo its partition count.
    pub routing_hash: u64,
    pub received_at_ms: i64,
    /// Already in the store's byte type, so the writer thread only moves it.
    pub bytes: fjall::Slice,
}

impl LogRecord {
    pub fn from_event(event: &Event) -> LogRecord {
        LogRecord {
            dedup_key: crate::dedup::key(&event.source_id, &event.message_id),
            duplicate_of: None,
            routing_hash: xxhash_rust::xxh3::xxh3_64(event.routing_key().as_bytes()),
            received_at_ms: event.received_at.as_millisecond(),
            bytes: fjall::Slice::from(event.to_log_bytes()),
        }
    }
}

/// One logged event as stored: its sequence number and log JSON (without seq).
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub seq: u64,
    pub bytes: fjall::Slice,
}

impl StoredEvent {
    /// The event as API JSON: the log bytes with `"seq"` put in front,
    /// without decoding the event.
    pub fn to_json(&self) -> String {
        let body = std::str::from_utf8(&self.bytes).unwrap_or("{}");
        let rest = body.strip_prefix('{').unwrap_or(body);
        let separator = if rest.trim_start().starts_with('}') {
            ""
        } else {
            ","
        };
        format!("{{\"seq\":{}{separator}{rest}", self.seq)
    }

    pub fn decode(&self) -> Result<Event, StoreError> {
        Event::from_log_bytes(self.seq, &self.bytes)
            .map_err(|error| StoreError::Corrupt(format!("event {}: {error}", self.seq)))
    }

    /// Whether the event came from `source_id`. The log encoding writes
    /// `sourceId` first, so this is a prefix test, not a parse.
    pub fn is_from(&self, source_id: &str) -> bool {
        let prefix = format!(
            "{{\"sourceId\":{}",
            serde_json::to_string(source_id).unwrap_or_default()
        );
        self.bytes.starts_with(prefix.as_bytes())
    }
}

pub struct EventLog {
    partitions: Vec<Keyspace>,
    last_seq_at_open: u64,
}

impl EventLog {
    pub(crate) fn open(db: &Database, partition_count: u32) -> Result<EventLog, StoreError> {
        let mut partitions = Vec::with_capacity(partition_count as usize);
        let mut last_seq = 0;
        for index in 0..partition_count {
            let keyspace = db.keyspace(&format!("log-{index:03}"), log_keyspace_options)?;
            if let Some(guard) = keyspace.last_key_value() {
                last_seq = last_seq.max(decode_seq(&guard.key()?)?);
            }
            partitions.push(keyspace);
        }
        Ok(EventLog {
            partitions,
            last_seq_at_open: last_seq,
        })
    }

    pub fn partition_count(&self) -> u32 {
        self.partitions.len() as u32
    }

    pub(crate) fn last_seq_at_open(&self) -> u64 {
        self.last_seq_at_open
    }

    pub(crate) fn partition_for(&self, routing_hash: u64) -> &Keyspace {
        &self.partitions[(routing_hash % self.partitions.len() as u64) as usize]
    }

    /// Durable events with `after < seq <= upto`, in log order, at most
    /// `limit`, optionally only those of one source. Readers pass the
    /// writer's committed sequence as `upto`, so they never see an event
    /// that is not yet fsynced (and could still vanish in a crash).
    pub fn read_after(
        &self,
        after: u64,
        upto: u64,
        limit: usize,
        source_id: Option<&str>,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        if upto <= after {
            return Ok(Vec::new());
        }
        let mut merged = Vec::new();
        for partition in &self.partitions {
            // The first `limit` of each partition contain the first `limit` overall.
            let mut taken = 0;
            for guard in partition.range(encode_seq(after + 1)..=encode_seq(upto)) {
                let (key, bytes) = guard.into_inner()?;
                let event = StoredEvent {
                    seq: decode_seq(&key)?,
                    bytes,
                };
                if source_id.is_none_or(|source| event.is_from(source)) {
                    merged.push(event);
                    taken += 1;
                    if taken >= limit {
                        break;
                    }
                }
            }
        }
        merged.sort_by_key(|event| event.seq);
        merged.truncate(limit);
        Ok(merged)
    }

    /// One event by sequence number.
    pub fn get(&self, seq: u64) -> Result<Option<StoredEvent>, StoreError> {
        for partition in &self.partitions {
            if let Some(bytes) = partition.get(encode_seq(seq))? {
                return Ok(Some(StoredEvent { seq, bytes }));
            }
        }
        Ok(None)
    }

    /// Number of events in the log (approximate for large logs).
    pub fn approximate_len(&self) -> usize {
        self.partitions
            .iter()
            .map(|partition| partition.approximate_len())
            .sum()
    }
}

/// Log partitions are written once and read in order: every level is
/// compressed (JSON events shrink about 4× with LZ4, and the disk's bandwidth,
/// not the CPU, is what limits ingest on small machines), and point reads
/// are rare, so no bloom filters are built.
fn log_keyspace_options() -> KeyspaceCreateOptions {
    use fjall::config::{CompressionPolicy, FilterPolicy, FilterPolicyEntry};
    KeyspaceCreateOptions::default()
        .data_block_compression_policy(CompressionPolicy::all(fjall::CompressionType::Lz4))
        .filter_policy(FilterPolicy::all(FilterPolicyEntry::None))
        // Values live in blob files written once at flush: compaction moves
        // only keys and pointers, never the events again.
        .with_kv_separation(Some(
            fjall::KvSeparationOptions::default().separation_threshold(64),
        ))
}

pub(crate) fn encode_seq(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

pub(crate) fn decode_seq(key: &[u8]) -> Result<u64, StoreError> {
    key.try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt(format!("log key of {} bytes", key.len())))
}
