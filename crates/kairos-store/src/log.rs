//! The partitioned, append-only event log.
//!
//! Each partition is a keyspace `log-NNN` keyed by the event's global
//! sequence number. The sequence is global (not per partition) so "log order"
//! is one total order that readers can resume from with a single cursor,
//! while each partition can still be owned and replayed on its own.

use std::sync::Arc;

use fjall::{Database, Keyspace, KeyspaceCreateOptions};
use kairos_core::Event;

use crate::StoreError;
use crate::vault::{Opened, SubjectId, Vault};

/// An event ready to append: its log bytes are encoded by the caller, off
/// the writer thread; the writer seals them under the subject's key.
#[derive(Debug, Clone)]
pub struct LogRecord {
    /// Pseudonym of the event's most trusted identifier ([`crate::vault`]).
    pub subject: SubjectId,
    /// `(source, messageId)` hashed: the dedup index key.
    pub dedup_key: [u8; 16],
    /// Set by the dedup lookup before queueing: already stored at this seq.
    pub duplicate_of: Option<u64>,
    /// Hash of the routing key; the log takes it modulo its partition count.
    pub routing_hash: u64,
    pub received_at_ms: i64,
    /// The event's log JSON, for the engine's live feed.
    pub bytes: Vec<u8>,
    /// `bytes` sealed under the subject's key ([`Vault::seal`]); empty
    /// when the writer should seal them itself.
    pub sealed: Vec<u8>,
}

impl LogRecord {
    pub fn from_event(event: &Event, subject: SubjectId) -> LogRecord {
        LogRecord {
            subject,
            dedup_key: crate::dedup::key(&event.source_id, &event.message_id),
            duplicate_of: None,
            routing_hash: xxhash_rust::xxh3::xxh3_64(event.routing_key().as_bytes()),
            received_at_ms: event.received_at.as_millisecond(),
            bytes: event.to_log_bytes(),
            sealed: Vec::new(),
        }
    }

    /// Seals the bytes here, off the writer thread.
    pub fn seal(mut self, vault: &Vault) -> LogRecord {
        self.sealed = vault.seal(&self.subject, &self.bytes);
        self
    }
}

/// One logged event as stored: its sequence number and log JSON (without seq).
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub seq: u64,
    pub bytes: Vec<u8>,
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

/// Smallest window of sequence numbers read at once (matters when a source
/// filter makes most events not count).
const READ_WINDOW_MIN: usize = 1_000;

pub struct EventLog {
    partitions: Vec<Keyspace>,
    vault: Arc<Vault>,
    last_seq_at_open: u64,
}

impl EventLog {
    pub(crate) fn open(
        db: &Database,
        partition_count: u32,
        vault: Arc<Vault>,
    ) -> Result<EventLog, StoreError> {
        let mut partitions = Vec::with_capacity(partition_count as usize);
        let mut last_seq = 0;
        for index in 0..partition_count {
            let keyspace = db.keyspace(&format!("log-{index:03}"), log_keyspace_options)?;
            if let Some(guard) = keyspace.last_key_value() {
                let (key, value) = guard.into_inner()?;
                let events = chunk::decode(decode_seq(&key)?, &value)?;
                last_seq = last_seq.max(events.last().map(|event| event.seq).unwrap_or(0));
            }
            partitions.push(keyspace);
        }
        Ok(EventLog {
            partitions,
            vault,
            last_seq_at_open: last_seq,
        })
    }

    pub fn partition_count(&self) -> u32 {
        self.partitions.len() as u32
    }

    pub(crate) fn last_seq_at_open(&self) -> u64 {
        self.last_seq_at_open
    }

    pub(crate) fn partition_index(&self, routing_hash: u64) -> usize {
        (routing_hash % self.partitions.len() as u64) as usize
    }

    pub(crate) fn partition(&self, index: usize) -> &Keyspace {
        &self.partitions[index]
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
        if upto <= after || limit == 0 {
            return Ok(Vec::new());
        }
        // Sequence numbers are dense, so the next `limit` events are almost
        // always the next `limit` sequence numbers: read that window from
        // every partition, and move on to the next window only when a source
        // filter (or a gap) left the page short. Each partition contributes
        // only chunks overlapping the window.
        let mut page = Vec::new();
        let mut low = after;
        while page.len() < limit && low < upto {
            let wanted = (limit - page.len()).max(READ_WINDOW_MIN) as u64;
            let high = upto.min(low.saturating_add(wanted));
            let mut window = Vec::new();
            for partition in &self.partitions {
                for (first_seq, value) in chunks_from(partition, low + 1, high)? {
                    for sealed in chunk::decode(first_seq, &value)? {
                        if sealed.seq <= low || sealed.seq > high {
                            continue;
                        }
                        if let Some(event) = self.open_sealed(sealed)?
                            && source_id.is_none_or(|source| event.is_from(source))
                        {
                            window.push(event);
                        }
                    }
                }
            }
            window.sort_by_key(|event| event.seq);
            page.extend(window);
            low = high;
        }
        page.truncate(limit);
        Ok(page)
    }

    /// One event by sequence number; `None` if absent or erased.
    pub fn get(&self, seq: u64) -> Result<Option<StoredEvent>, StoreError> {
        for partition in &self.partitions {
            if let Some((first_seq, value)) = chunks_from(partition, seq, seq)?.into_iter().next()
                && let Some(sealed) = chunk::decode(first_seq, &value)?
                    .into_iter()
                    .find(|event| event.seq == seq)
            {
                return self.open_sealed(sealed);
            }
        }
        Ok(None)
    }

    /// The plaintext of a sealed record; `None` if its person was erased.
    fn open_sealed(&self, sealed: StoredEvent) -> Result<Option<StoredEvent>, StoreError> {
        let opened = self
            .vault
            .open_record(&sealed.bytes)
            .map_err(|problem| StoreError::Corrupt(format!("event {}: {problem}", sealed.seq)))?;
        Ok(match opened {
            Opened::Event(bytes) => Some(StoredEvent {
                seq: sealed.seq,
                bytes,
            }),
            Opened::Erased => None,
        })
    }
}

/// The chunks of a partition that may hold events with `from <= seq <= upto`:
/// the chunk starting at or before `from` (it may reach past it), then every
/// chunk starting up to `upto`. Collected eagerly: a page is small.
fn chunks_from(
    partition: &Keyspace,
    from: u64,
    upto: u64,
) -> Result<Vec<(u64, fjall::Slice)>, StoreError> {
    let mut chunks = Vec::new();
    if let Some(guard) = partition.range(..=encode_seq(from)).next_back() {
        let (key, value) = guard.into_inner()?;
        chunks.push((decode_seq(&key)?, value));
    }
    if from < upto {
        for guard in partition.range(encode_seq(from + 1)..=encode_seq(upto)) {
            let (key, value) = guard.into_inner()?;
            chunks.push((decode_seq(&key)?, value));
        }
    }
    Ok(chunks)
}

/// Log partitions hold chunks of sealed events, written once and
/// read in order. Chunks are large values kept in blob files (compaction
/// moves only keys and pointers), and point reads are rare, so no bloom
/// filters are built.
fn log_keyspace_options() -> KeyspaceCreateOptions {
    use fjall::config::{FilterPolicy, FilterPolicyEntry};
    KeyspaceCreateOptions::default()
        .filter_policy(FilterPolicy::all(FilterPolicyEntry::None))
        .with_kv_separation(Some(
            fjall::KvSeparationOptions::default().compression(fjall::CompressionType::None),
        ))
}

/// The chunk encoding: events of one partition from one group commit,
/// `[seq u64][len u32][sealed record]...`. Not compressed: each record is
/// ciphertext under its person's key ([`crate::vault`]), which does not
/// compress. (Compressing whole chunks shrank JSON ~5× before per-person
/// encryption; erasure from an immutable log is worth more.)
pub(crate) mod chunk {
    use super::StoredEvent;
    use crate::StoreError;

    /// Raw bytes after which a chunk is closed and a new one started.
    pub const CHUNK_RAW_BYTES_TARGET: usize = 256 * 1024;

    #[derive(Default)]
    pub struct ChunkBuilder {
        pub first_seq: Option<u64>,
        raw: Vec<u8>,
    }

    impl ChunkBuilder {
        pub fn push(&mut self, seq: u64, bytes: &[u8]) {
            self.first_seq.get_or_insert(seq);
            self.raw.extend_from_slice(&seq.to_be_bytes());
            self.raw
                .extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            self.raw.extend_from_slice(bytes);
        }

        pub fn is_full(&self) -> bool {
            self.raw.len() >= CHUNK_RAW_BYTES_TARGET
        }

        /// The chunk's key and value, leaving the builder empty.
        pub fn take(&mut self) -> Option<(u64, Vec<u8>)> {
            let first_seq = self.first_seq.take()?;
            Some((first_seq, std::mem::take(&mut self.raw)))
        }
    }

    pub fn decode(first_seq: u64, value: &[u8]) -> Result<Vec<StoredEvent>, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("log chunk {first_seq}: {what}"));
        let mut events = Vec::new();
        let mut rest = value;
        while !rest.is_empty() {
            let (seq, after_seq) = rest
                .split_at_checked(8)
                .ok_or_else(|| corrupt("truncated seq"))?;
            let (len, after_len) = after_seq
                .split_at_checked(4)
                .ok_or_else(|| corrupt("truncated length"))?;
            let len = u32::from_be_bytes(len.try_into().expect("4 bytes")) as usize;
            let (bytes, next) = after_len
                .split_at_checked(len)
                .ok_or_else(|| corrupt("truncated event"))?;
            events.push(StoredEvent {
                seq: u64::from_be_bytes(seq.try_into().expect("8 bytes")),
                bytes: bytes.to_vec(),
            });
            rest = next;
        }
        Ok(events)
    }
}

pub(crate) fn encode_seq(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

pub(crate) fn decode_seq(key: &[u8]) -> Result<u64, StoreError> {
    key.try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt(format!("log key of {} bytes", key.len())))
}
