//! Durable storage for Kairos on the embedded LSM store (fjall).
//!
//! One fjall database per data directory holds:
//!
//! - the **event log**: `log-NNN` keyspaces, one per partition, holding
//!   chunks of events keyed by the chunk's first global sequence number
//!   (big-endian `u64`) ([`log`]), each event sealed under its person's key
//!   ([`vault`]) so erasure can destroy it. Partitions are chosen by
//!   hashing the event's routing key, so a shard can later own a set of
//!   partitions;
//! - the **vault** of per-person data keys, the **suppression list** and the
//!   erasure **audit log** ([`vault`], [`privacy`]), all keyed by pseudonyms;
//! - the **dedup index** `dedup`: `(source, messageId)` → `(seq, received)`,
//!   expired after the dedup window by a compaction filter ([`dedup`]);
//! - the **quarantine** of rejected events with their reasons ([`quarantine`]);
//! - **metadata** `meta`: sources and their write keys ([`sources`]),
//!   audience and computed trait definitions ([`definitions`]),
//!   destinations and journeys ([`outbox`]), the partition count, a
//!   generated admin token;
//! - the **outbox** (`outbox`, `deliveries`): every message journeys
//!   decided to send, its attempts and status, a queue per destination
//!   ([`outbox`]);
//! - the **model registry** (`meta`, [`models`]);
//! - the **item catalog** of recommendations (`items`, [`items`]);
//! - **lists** of identifiers: journeys' `add_to_list` and suppression lists
//!   ([`lists`]).
//!
//! All writes of accepted events go through one writer thread
//! ([`writer`]) that groups concurrent requests into one atomic batch, and a
//! syncer thread that fsyncs and then acknowledges (group commit), so the
//! HTTP `200` can wait for durability without one fsync per request.
//! Kairos' own events (announcements, journeys' traits, consent, matching,
//! imports) reach that writer through one path ([`internal`]).

pub mod checkpoint;
pub mod dedup;
pub mod definitions;
pub mod internal;
pub mod items;
pub mod lists;
pub mod log;
pub mod models;
pub mod outbox;
pub mod privacy;
mod pseudonym;
pub mod quarantine;
mod recent;
pub mod sources;
pub mod vault;
pub mod writer;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fjall::{Database, Keyspace, KeyspaceCreateOptions};
use kairos_core::error::ErrorKind;
use kairos_core::identity::IdentityRules;
use kairos_core::identity::extract::{identifiers_of, subject_of};

pub use definitions::{AudienceRecord, DefinitionRecord, Definitions, Kind as DefinitionKind};
pub use internal::{INTERNAL_LIMITS, InternalOutcome, RejectedRecord};
pub use lists::{ListMember, Lists};
pub use log::{EventLog, LogRecord};
pub use models::ModelRegistry;
pub use outbox::{
    AudienceSyncRecord, DecidedAction, DecisionRecord, DestinationRecord, Effects, Entries,
    IncentiveLog, JourneyRecord, Message, MessageStatus, OfferHistory, OfferRecord, OfferStats,
    Outbox, OutboxErasure, ResponseKind, Run, SyncChange, Wait,
};
pub use outbox::{ExperimentRecord, ExperimentSettings, Exposure, Outcome as ExperimentOutcome};
pub use privacy::{ErasureReceipt, Privacy};
pub use quarantine::{Quarantine, QuarantineEntry, QuarantineRecord};
pub use sources::{SourceRecord, SourceRegistry, SourceTrust};
pub use vault::{SubjectId, Vault};
pub use writer::{AppendJob, AppendReceipt, Appended, LogWriter, WriterStats};

/// Storage failures; [`StoreError::kind`] says what a caller can do about
/// one (nothing was acknowledged when an operation fails).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("storage engine error: {0}")]
    Engine(#[from] fjall::Error),
    /// Reading or writing the disk failed (a failed commit or fsync): the
    /// data may be intact; the operation can be retried.
    #[error("storage I/O failed: {0}")]
    Io(String),
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    #[error(
        "the data directory was created with {existing} log partitions; {requested} were requested. Keep `log_partitions = {existing}` (repartitioning is a replay, not a setting)"
    )]
    PartitionMismatch { existing: u32, requested: u32 },
    #[error("the ingest queue is full ({0} requests waiting; storage.ingest_queue_requests_max)")]
    QueueFull(usize),
    #[error("the log writer has stopped")]
    WriterStopped,
    #[error("{0}")]
    Invalid(String),
    /// A create with a name another `thing` of its kind has.
    #[error(
        "a {thing} named {name:?} exists; {thing} names are unique: choose another name, or change or delete the existing {thing}"
    )]
    NameTaken { thing: &'static str, name: String },
    #[error("no {thing} {id:?}; it may have been deleted: list them to find the one you mean")]
    NotFound { thing: &'static str, id: String },
}

impl StoreError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::Engine(error) => engine_kind(error),
            StoreError::Io(_) => ErrorKind::Io,
            StoreError::Corrupt(_) => ErrorKind::Corrupt,
            StoreError::PartitionMismatch { .. } | StoreError::Invalid(_) => ErrorKind::Invalid,
            StoreError::QueueFull(_) => ErrorKind::Overloaded,
            StoreError::WriterStopped => ErrorKind::Stopped,
            StoreError::NameTaken { .. } => ErrorKind::NameTaken,
            StoreError::NotFound { .. } => ErrorKind::NotFound,
        }
    }

    /// The same failure as a value that can be sent to several waiters
    /// (one failed group commit answers every request in it).
    pub(crate) fn replicate(&self) -> StoreError {
        match self {
            StoreError::Engine(_) if self.kind() == ErrorKind::Io => {
                StoreError::Io(self.to_string())
            }
            StoreError::Engine(_) => StoreError::Corrupt(self.to_string()),
            StoreError::Io(message) => StoreError::Io(message.clone()),
            StoreError::Corrupt(message) => StoreError::Corrupt(message.clone()),
            StoreError::PartitionMismatch {
                existing,
                requested,
            } => StoreError::PartitionMismatch {
                existing: *existing,
                requested: *requested,
            },
            StoreError::QueueFull(waiting) => StoreError::QueueFull(*waiting),
            StoreError::WriterStopped => StoreError::WriterStopped,
            StoreError::Invalid(message) => StoreError::Invalid(message.clone()),
            StoreError::NameTaken { thing, name } => StoreError::NameTaken {
                thing,
                name: name.clone(),
            },
            StoreError::NotFound { thing, id } => StoreError::NotFound {
                thing,
                id: id.clone(),
            },
        }
    }
}

/// fjall's failures: the disk refusing (retryable) or data that does not
/// decode (not).
fn engine_kind(error: &fjall::Error) -> ErrorKind {
    match error {
        fjall::Error::Io(_)
        | fjall::Error::Storage(fjall::LsmError::Io(_))
        | fjall::Error::Poisoned
        | fjall::Error::Locked => ErrorKind::Io,
        _ => ErrorKind::Corrupt,
    }
}

#[cfg(test)]
mod error_tests {
    use super::*;

    #[test]
    fn a_disk_failure_is_io_and_stays_io_when_shared_with_a_group() {
        let error = StoreError::Engine(fjall::Error::Io(std::io::Error::other("EIO")));
        assert_eq!(error.kind(), ErrorKind::Io);
        assert_eq!(error.replicate().kind(), ErrorKind::Io);
        let undecodable = StoreError::Engine(fjall::Error::InvalidTrailer);
        assert_eq!(undecodable.kind(), ErrorKind::Corrupt);
        assert_eq!(undecodable.replicate().kind(), ErrorKind::Corrupt);
    }

    #[test]
    fn taken_names_and_full_queues_keep_their_kind() {
        let taken = StoreError::NameTaken {
            thing: "journey",
            name: "welcome".into(),
        };
        assert_eq!(taken.replicate().kind(), ErrorKind::NameTaken);
        assert_eq!(StoreError::QueueFull(3).kind(), ErrorKind::Overloaded);
        assert_eq!(StoreError::WriterStopped.kind(), ErrorKind::Stopped);
    }
}

/// Storage settings, validated by the binary's configuration.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Number of log partitions; fixed when the data directory is created.
    pub log_partitions: u32,
    /// fsync before acknowledging. Turning it off can lose acknowledged
    /// events on a power cut or kernel crash (not on a process crash).
    pub fsync: bool,
    /// How long a messageId is remembered for deduplication.
    pub dedup_window: Duration,
    /// Requests that may wait for the writer before new ones get 503.
    pub ingest_queue_requests_max: usize,
    /// Block cache size.
    pub cache_bytes: u64,
    /// The clock records are dated with (erasure receipts): the engine's,
    /// so `--clock manual` dates them too. Deduplication's window is not
    /// on it: it bounds how long real clients retry, in real time.
    pub clock: Arc<dyn kairos_core::clock::Clock>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            log_partitions: 8,
            fsync: true,
            dedup_window: Duration::from_secs(24 * 3600),
            ingest_queue_requests_max: 1024,
            cache_bytes: 256 * 1024 * 1024,
            clock: Arc::new(kairos_core::clock::SystemClock),
        }
    }
}

/// The opened data directory: every keyspace and the log writer.
pub struct Store {
    pub db: Database,
    pub log: Arc<EventLog>,
    pub writer: LogWriter,
    pub sources: SourceRegistry,
    pub quarantine: Arc<Quarantine>,
    pub vault: Arc<Vault>,
    pub privacy: Arc<Privacy>,
    pub definitions: Definitions,
    /// Destinations, journeys and the messages they send.
    pub outbox: Outbox,
    pub lists: Lists,
    /// The catalog of items recommendations name.
    pub items: items::Items,
    /// Model versions (scores).
    pub models: ModelRegistry,
    pub meta: Keyspace,
    /// The engine's state at log positions (sealed), so a start replays
    /// only the log after the newest.
    pub checkpoints: checkpoint::Checkpoints,
}

/// fjall starts a new journal file at a flush once the active one is past
/// this many bytes (`worker_pool.rs` in fjall 3.1).
const JOURNAL_ROTATION_BYTES: usize = 64_000_000 + (1 << 20);
/// Where [`Store::purge_erased`] writes to fill the journal.
const JOURNAL_ROTATION_KEYSPACE: &str = "journal-rotation";

/// Set while an erasure's purge is unfinished.
const META_PURGE_PENDING_KEY: &[u8] = b"erasure/purge_pending";
const META_PARTITIONS_KEY: &[u8] = b"log_partitions";
const META_ADMIN_TOKEN_KEY: &[u8] = b"admin_token";
const META_FORMAT_KEY: &[u8] = b"format";
/// Version of the on-disk layout; 2 = events sealed per person; 3 = no
/// identifier in plaintext in any key (outbox indexes and list members
/// keyed by pseudonyms).
const FORMAT_VERSION: u32 = 3;

impl Store {
    /// Opens (or creates) the data directory and starts the log writer.
    pub fn open(dir: &Path, options: StoreOptions) -> Result<Store, StoreError> {
        create_private_dir(dir).map_err(|error| StoreError::Engine(fjall::Error::Io(error)))?;
        let window = options.dedup_window;
        let db = Database::builder(dir)
            .cache_size(options.cache_bytes)
            .worker_threads(1)
            .with_compaction_filter_factories(Arc::new(move |name: &str| {
                dedup::filter_for(name, window)
            }))
            .open()?;
        let meta = db.keyspace("meta", KeyspaceCreateOptions::default)?;
        check_format(&meta)?;
        let partitions = check_partitions(&meta, options.log_partitions)?;
        let vault = Arc::new(Vault::open(&db, &meta)?);
        let privacy = Arc::new(Privacy::open(&db)?);
        let log = Arc::new(EventLog::open(&db, partitions, vault.clone())?);
        let dedup = db.keyspace(dedup::KEYSPACE, dedup::keyspace_options)?;
        let quarantine = Arc::new(Quarantine::open(&db, vault.clone())?);
        let sources = SourceRegistry::open(db.clone(), meta.clone())?;
        let definitions = Definitions::open(db.clone(), meta.clone())?;
        let pseudonyms = pseudonym::Pseudonyms::open(&db, &meta)?;
        let outbox = Outbox::open(db.clone(), meta.clone(), pseudonyms)?;
        let lists = Lists::open(db.clone(), pseudonyms)?;
        let items = items::Items::open(db.clone(), meta.clone())?;
        let models = ModelRegistry::open(db.clone(), meta.clone());
        let checkpoints = checkpoint::Checkpoints::open(dir, db.clone(), meta.clone())?;
        let writer = LogWriter::start(
            db.clone(),
            log.clone(),
            dedup.clone(),
            quarantine.clone(),
            vault.clone(),
            privacy.clone(),
            &options,
        )?;
        let store = Store {
            db,
            log,
            writer,
            sources,
            quarantine,
            vault,
            privacy,
            definitions,
            outbox,
            lists,
            items,
            models,
            meta,
            checkpoints,
        };
        // An erasure interrupted (kill -9) between its commit and the end of
        // its purge left plaintext in the journal or the tables: finish it.
        if store.meta.get(META_PURGE_PENDING_KEY)?.is_some()
            || store.db.keyspace_exists(JOURNAL_ROTATION_KEYSPACE)
        {
            tracing::info!("finishing the purge of an interrupted erasure");
            // A checkpoint may predate the erasure (the fresh one it writes
            // may not exist yet): none survives, the next start replays.
            store.checkpoints.delete_all()?;
            store.purge_erased()?;
        }
        Ok(store)
    }

    /// Makes every write so far durable (the last step of a clean stop:
    /// with `--unsafe-no-fsync`, or writes of the outbox and registries
    /// that do not wait for an fsync).
    pub fn sync_all(&self) -> Result<(), StoreError> {
        self.db.persist(fjall::PersistMode::SyncAll)?;
        Ok(())
    }

    /// Marks a purge as due: if the process dies before
    /// [`Store::purge_erased`] finishes, the next start runs it.
    pub fn purge_pending(&self) -> Result<(), StoreError> {
        self.meta.insert(META_PURGE_PENDING_KEY, b"")?;
        self.db.persist(fjall::PersistMode::SyncAll)?;
        Ok(())
    }

    /// An empty accumulator for one journey step's writes (outbox and
    /// lists), committed with the journeys' cursor in one batch.
    pub fn effects(&self) -> Effects<'_> {
        Effects::new(&self.outbox, &self.lists)
    }

    /// A resumed journey's runs held while it was paused are due at `now`.
    pub fn resume_held_runs(
        &self,
        journey: &str,
        now: jiff::Timestamp,
    ) -> Result<usize, StoreError> {
        let mut effects = self.effects();
        let mut resumed = 0;
        for mut run in self.outbox.runs_in(journey)? {
            if run.resume_at == outbox::HELD_UNTIL {
                run.resume_at = now;
                effects.save_run(&run);
                resumed += 1;
            }
        }
        effects.commit(None)?;
        Ok(resumed)
    }

    /// The log record of an accepted event, sealed under its subject; `None`
    /// (and counted) when it carries an identifier of an erased person.
    pub fn prepare(&self, event: &kairos_core::Event, rules: &IdentityRules) -> Option<LogRecord> {
        let identifiers = identifiers_of(event, rules);
        if self.privacy.has_suppressions()
            && identifiers.iter().any(|identifier| {
                self.privacy
                    .suppressed_after(&self.vault.subject(identifier))
                    .is_some()
            })
        {
            self.privacy
                .events_dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return None;
        }
        let subject = self.vault.subject(&subject_of(&identifiers, event, rules));
        Some(LogRecord::from_event(event, subject).seal(&self.vault))
    }

    /// After an erasure: flushes every keyspace and compacts those that held
    /// the erased data (vault keys, quarantined events, and the journal that
    /// logged them), so destroyed keys and deleted records do not linger in
    /// older files of the LSM tree. Blocking; seconds on a large store.
    pub fn purge_erased(&self) -> Result<(), StoreError> {
        self.seal_the_journal()?;
        // Every keyspace flushed — all of them, not only those an erasure
        // wrote to: the sealed journal is deleted once no keyspace's
        // memtable still needs it.
        for name in self.db.list_keyspace_names() {
            let keyspace = self
                .db
                .keyspace(&name, fjall::KeyspaceCreateOptions::default)?;
            keyspace.rotate_memtable_and_wait()?;
        }
        // Compacted: deleted values and the tombstones naming the person
        // leave the table files too.
        let mut compacted = vec![self.vault.keyspace(), &self.quarantine.keyspace];
        compacted.extend(self.outbox.personal_keyspaces());
        compacted.push(self.lists.keyspace());
        // Keys of deleted checkpoints (which held the person).
        compacted.push(&self.meta);
        // Twice, each after background compactions are done: fjall skips a
        // major compaction (silently) while another compaction holds one of
        // the keyspace's tables, as happens right after the flushes above.
        for _ in 0..2 {
            for keyspace in &compacted {
                self.wait_for_background_compactions();
                keyspace.major_compact()?;
            }
        }
        // fjall deletes the table files a compaction replaced at its next
        // memtable rotation (version history maintenance): make one.
        let scratch = self.db.keyspace(
            JOURNAL_ROTATION_KEYSPACE,
            fjall::KeyspaceCreateOptions::default,
        )?;
        scratch.insert(b"gc", b"")?;
        scratch.rotate_memtable_and_wait()?;
        self.db.delete_keyspace(scratch)?;
        self.meta.remove(META_PURGE_PENDING_KEY)?;
        self.db.persist(fjall::PersistMode::SyncAll)?;
        Ok(())
    }

    /// Waits (a bounded time) until fjall runs no compaction.
    fn wait_for_background_compactions(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.db.active_compactions() > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Makes fjall start a new journal file. The active journal holds, in
    /// plaintext, whatever the erasure deleted from the outbox and lists
    /// (and the destroyed keys' bytes); fjall seals a journal only once it
    /// passed [`JOURNAL_ROTATION_BYTES`] at a flush and offers no call to
    /// do it sooner, so the journal is filled past that with a scratch
    /// keyspace's writes (deleted afterwards). An erasure therefore costs
    /// ~64 MB of sequential writes: erasures are rare, and a receipt must
    /// mean the data is gone from disk.
    fn seal_the_journal(&self) -> Result<(), StoreError> {
        let scratch = self.db.keyspace(
            JOURNAL_ROTATION_KEYSPACE,
            fjall::KeyspaceCreateOptions::default,
        )?;
        let chunk_bytes = 1 << 20;
        // Not zeros: the journal may compress what it is given.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let chunk: Vec<u8> = (0..chunk_bytes)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        for index in 0..JOURNAL_ROTATION_BYTES.div_ceil(chunk_bytes) as u32 {
            scratch.insert(index.to_be_bytes(), chunk.as_slice())?;
        }
        scratch.rotate_memtable_and_wait()?;
        Ok(())
    }

    /// The admin token stored in the data directory, created on first use.
    /// Used when no token is configured, so a demo stays protected.
    pub fn stored_admin_token(&self) -> Result<String, StoreError> {
        if let Some(token) = self.meta.get(META_ADMIN_TOKEN_KEY)? {
            return String::from_utf8(token.to_vec())
                .map_err(|error| StoreError::Corrupt(error.to_string()));
        }
        let token = format!("kat_{}", random_token(32));
        self.meta.insert(META_ADMIN_TOKEN_KEY, token.as_bytes())?;
        self.db.persist(fjall::PersistMode::SyncAll)?;
        Ok(token)
    }
}

/// The data directory's mode: owner only. It holds the admin token, the
/// per-person keys of the vault and every event; fjall creates its files
/// with the process umask, so closing the directory keeps them private
/// whatever that umask is (`kairos serve` also sets umask 077).
pub const DATA_DIR_MODE: u32 = 0o700;

/// Creates `dir` (and missing parents) owner-only, and closes an existing
/// data directory that others could enter.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DATA_DIR_MODE)
        .create(dir)?;
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode != DATA_DIR_MODE {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DATA_DIR_MODE))?;
        tracing::warn!(
            dir = %dir.display(),
            was = format!("{mode:o}"),
            "the data directory was open to other users; its mode is now 700"
        );
    }
    Ok(())
}

fn check_format(meta: &Keyspace) -> Result<(), StoreError> {
    match meta.get(META_FORMAT_KEY)? {
        Some(bytes) if bytes.as_ref() == FORMAT_VERSION.to_be_bytes() => Ok(()),
        Some(bytes) => Err(StoreError::Invalid(format!(
            "the data directory has on-disk format {:?}; this Kairos reads format {FORMAT_VERSION}. Start with an empty data directory (or re-import the events)",
            bytes.as_ref()
        ))),
        None if meta.get(META_PARTITIONS_KEY)?.is_some() => Err(StoreError::Invalid(format!(
            "the data directory was written by an older Kairos (events not sealed per person); this one reads format {FORMAT_VERSION}. Start with an empty data directory (or re-import the events)"
        ))),
        None => {
            meta.insert(META_FORMAT_KEY, FORMAT_VERSION.to_be_bytes())?;
            Ok(())
        }
    }
}

fn check_partitions(meta: &Keyspace, requested: u32) -> Result<u32, StoreError> {
    if requested == 0 {
        return Err(StoreError::Invalid(
            "log_partitions must be at least 1".into(),
        ));
    }
    match meta.get(META_PARTITIONS_KEY)? {
        Some(bytes) => {
            let existing = u32::from_be_bytes(
                bytes
                    .as_ref()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("meta log_partitions is not a u32".into()))?,
            );
            if existing != requested {
                return Err(StoreError::PartitionMismatch {
                    existing,
                    requested,
                });
            }
            Ok(existing)
        }
        None => {
            meta.insert(META_PARTITIONS_KEY, requested.to_be_bytes())?;
            Ok(requested)
        }
    }
}

/// A random string of `length` characters from [0-9A-Za-z].
pub fn random_token(length: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut bytes = vec![0u8; length];
    getrandom::fill(&mut bytes).expect("the operating system provides randomness");
    // 62 does not divide 256; the bias (< 2%) does not matter for opaque keys
    // that are long enough to be unguessable anyway.
    bytes
        .iter()
        .map(|byte| ALPHABET[*byte as usize % ALPHABET.len()] as char)
        .collect()
}
