//! Checkpoints: the engine's derived state at a log position, so a start
//! loads it and replays only the log after it.
//!
//! The store keeps them opaque (the engine encodes its parts) and sealed:
//! a checkpoint holds profiles in plaintext form, so each file is
//! encrypted (ChaCha20-Poly1305) under a key of its own, kept in the `meta`
//! keyspace. Deleting a checkpoint deletes its key; an erasure writes a
//! fresh checkpoint without the person and deletes the older ones, and the
//! purge that follows compacts the deleted keys away — the older files'
//! bytes, should a disk block keep them, can no longer be read.
//!
//! Crash safety: a checkpoint is written to a temporary file, fsynced, its
//! key made durable, then renamed into place (and the directory fsynced).
//! Only then are older checkpoints deleted, so a `kill -9` at any moment
//! leaves the previous checkpoint usable.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use fjall::Keyspace;

use crate::StoreError;

const DIRECTORY: &str = "checkpoints";
const SUFFIX: &str = ".kcp";
const TEMPORARY_SUFFIX: &str = ".kcp.tmp";
const MAGIC: &[u8; 4] = b"KCP1";
/// The largest part read back (a shard's state): a corrupt length must not
/// make a start allocate without bound.
pub const PART_BYTES_MAX: u64 = 16 << 30;
/// Parts in one checkpoint (the router's, one per shard).
const PARTS_MAX: u32 = 1_024;
const KEY_PREFIX: &str = "checkpoint/";
/// A checkpoint is written and flushed this much at a time: one fsync of
/// hundreds of megabytes held the disk for a second, and the event log's
/// group commits — every acknowledgement — waited behind it; small flushes
/// let them through in between.
const WRITE_SLICE_BYTES: usize = 4 << 20;

/// A checkpoint read back: its generation and its parts, decrypted.
pub struct Checkpoint {
    pub generation: u64,
    pub parts: Vec<Vec<u8>>,
}

/// Checkpoints are numbered by generation, in the order the engine took
/// them (not by log position: an erasure's checkpoint may be at the same
/// position as the one before it, without the person).
pub struct Checkpoints {
    dir: PathBuf,
    meta: Keyspace,
    db: fjall::Database,
    next_generation: std::sync::atomic::AtomicU64,
    /// One write at a time, and never an older generation after a newer.
    written: std::sync::Mutex<u64>,
}

impl Checkpoints {
    pub(crate) fn open(
        data_dir: &Path,
        db: fjall::Database,
        meta: Keyspace,
    ) -> Result<Checkpoints, StoreError> {
        let dir = data_dir.join(DIRECTORY);
        crate::create_private_dir(&dir).map_err(io)?;
        let mut checkpoints = Checkpoints {
            dir,
            meta,
            db,
            next_generation: Default::default(),
            written: Default::default(),
        };
        checkpoints.remove_temporary()?;
        let newest = checkpoints.list()?.last().copied().unwrap_or(0);
        checkpoints.next_generation = (newest + 1).into();
        checkpoints.written = newest.into();
        Ok(checkpoints)
    }

    /// A new generation, taken when the state is captured.
    pub fn begin(&self) -> u64 {
        self.next_generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Writes a complete checkpoint of `generation`, then deletes the older
    /// ones; false (nothing written) when a newer one is already written.
    pub fn write(&self, generation: u64, parts: &[Vec<u8>]) -> Result<bool, StoreError> {
        let mut written = self.written.lock().expect("checkpoint lock");
        if generation <= *written {
            return Ok(false);
        }
        self.write_file(generation, parts)?;
        *written = generation;
        self.delete_older_than(generation)?;
        Ok(true)
    }

    fn write_file(&self, seq: u64, parts: &[Vec<u8>]) -> Result<(), StoreError> {
        let key = crate::vault::random_bytes::<32>();
        self.meta.insert(key_name(seq), key)?;
        self.db.persist(fjall::PersistMode::SyncAll)?;
        let temporary = self.dir.join(format!("{seq:020}{TEMPORARY_SUFFIX}"));
        let mut file = fs::File::create(&temporary).map_err(io)?;
        file.write_all(MAGIC).map_err(io)?;
        file.write_all(&seq.to_be_bytes()).map_err(io)?;
        file.write_all(&(parts.len() as u32).to_be_bytes())
            .map_err(io)?;
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&key));
        for part in parts {
            let nonce = crate::vault::random_bytes::<12>();
            let sealed = cipher
                .encrypt(Nonce::from_slice(&nonce), part.as_slice())
                .map_err(|_| {
                    StoreError::Corrupt("a checkpoint part is too large to seal".into())
                })?;
            file.write_all(&(sealed.len() as u64).to_be_bytes())
                .map_err(io)?;
            file.write_all(&nonce).map_err(io)?;
            for slice in sealed.chunks(WRITE_SLICE_BYTES) {
                file.write_all(slice).map_err(io)?;
                file.sync_data().map_err(io)?;
            }
        }
        file.sync_all().map_err(io)?;
        drop(file);
        fs::rename(&temporary, self.path(seq)).map_err(io)?;
        fs::File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(io)
    }

    /// The newest checkpoint that reads back whole; unreadable ones (a key
    /// gone, a damaged file) are deleted and the next older one tried.
    pub fn latest(&self) -> Result<Option<Checkpoint>, StoreError> {
        for seq in self.list()?.into_iter().rev() {
            match self.read(seq) {
                Ok(Some(checkpoint)) => return Ok(Some(checkpoint)),
                Ok(None) => tracing::warn!(seq, "checkpoint without its key: deleted"),
                Err(error) => tracing::warn!(seq, %error, "checkpoint unreadable: deleted"),
            }
            self.delete(seq)?;
        }
        Ok(None)
    }

    /// Log positions of the complete checkpoints, oldest first.
    pub fn list(&self) -> Result<Vec<u64>, StoreError> {
        let mut found = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io)? {
            let name = entry.map_err(io)?.file_name();
            let name = name.to_string_lossy();
            if let Some(seq) = name.strip_suffix(SUFFIX).and_then(|seq| seq.parse().ok()) {
                found.push(seq);
            }
        }
        found.sort_unstable();
        Ok(found)
    }

    /// Deletes every checkpoint (files and keys); returns how many.
    pub fn delete_all(&self) -> Result<usize, StoreError> {
        let all = self.list()?;
        for seq in &all {
            self.delete(*seq)?;
        }
        self.remove_temporary()?;
        Ok(all.len())
    }

    fn delete_older_than(&self, seq: u64) -> Result<(), StoreError> {
        for older in self.list()?.into_iter().filter(|older| *older < seq) {
            self.delete(older)?;
        }
        Ok(())
    }

    fn delete(&self, seq: u64) -> Result<(), StoreError> {
        match fs::remove_file(self.path(seq)) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(io(error)),
        }
        self.meta.remove(key_name(seq))?;
        Ok(())
    }

    fn remove_temporary(&self) -> Result<(), StoreError> {
        for entry in fs::read_dir(&self.dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            if entry
                .file_name()
                .to_string_lossy()
                .ends_with(TEMPORARY_SUFFIX)
            {
                fs::remove_file(entry.path()).map_err(io)?;
            }
        }
        Ok(())
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}{SUFFIX}"))
    }

    /// `None` when the checkpoint's key is gone.
    fn read(&self, seq: u64) -> Result<Option<Checkpoint>, StoreError> {
        let Some(key) = self.meta.get(key_name(seq))? else {
            return Ok(None);
        };
        let bytes = fs::read(self.path(seq)).map_err(io)?;
        let mut reader = Reader { bytes: &bytes };
        if reader.take(4)? != MAGIC {
            return Err(corrupt("not a checkpoint file"));
        }
        if reader.u64()? != seq {
            return Err(corrupt("its position differs from its name"));
        }
        let count = reader.u32()?;
        if count > PARTS_MAX {
            return Err(corrupt("too many parts"));
        }
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&key));
        let mut parts = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let length = reader.u64()?;
            if length > PART_BYTES_MAX {
                return Err(corrupt("a part is larger than the limit"));
            }
            let nonce = reader.take(12)?;
            let sealed = reader.take(length as usize)?;
            let part = cipher
                .decrypt(Nonce::from_slice(nonce), sealed)
                .map_err(|_| corrupt("a part does not decrypt (damaged, or not this key's)"))?;
            parts.push(part);
        }
        Ok(Some(Checkpoint {
            generation: seq,
            parts,
        }))
    }
}

fn key_name(seq: u64) -> String {
    format!("{KEY_PREFIX}{seq:020}")
}

fn io(error: std::io::Error) -> StoreError {
    StoreError::Io(format!("checkpoint file: {error}"))
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("checkpoint: {what}"))
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Result<&'a [u8], StoreError> {
        if self.bytes.len() < count {
            return Err(corrupt("truncated"));
        }
        let (taken, rest) = self.bytes.split_at(count);
        self.bytes = rest;
        Ok(taken)
    }

    fn u64(&mut self) -> Result<u64, StoreError> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn u32(&mut self) -> Result<u32, StoreError> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path) -> crate::Store {
        crate::Store::open(dir, crate::StoreOptions::default()).unwrap()
    }

    #[test]
    fn the_newest_complete_checkpoint_reads_back_and_older_ones_go() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        store.checkpoints.write(10, &[b"router".to_vec()]).unwrap();
        store
            .checkpoints
            .write(20, &[b"router 2".to_vec(), b"shard".to_vec()])
            .unwrap();
        assert_eq!(store.checkpoints.list().unwrap(), vec![20]);
        let latest = store.checkpoints.latest().unwrap().unwrap();
        assert_eq!(latest.generation, 20);
        // An older generation finishing late is dropped.
        assert!(!store.checkpoints.write(15, &[b"late".to_vec()]).unwrap());
        assert_eq!(store.checkpoints.list().unwrap(), vec![20]);
        assert_eq!(latest.parts, vec![b"router 2".to_vec(), b"shard".to_vec()]);
        // Nothing of a part is on disk in plaintext.
        let bytes = fs::read(store.checkpoints.path(20)).unwrap();
        assert!(!bytes.windows(8).any(|window| window == b"router 2"));
    }

    #[test]
    fn a_half_written_or_keyless_checkpoint_leaves_the_previous_one() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(dir.path());
            store.checkpoints.write(10, &[b"kept".to_vec()]).unwrap();
            // A crash while writing the next one: its temporary file stays.
            fs::write(
                store
                    .checkpoints
                    .dir
                    .join(format!("{:020}{TEMPORARY_SUFFIX}", 30)),
                b"KCP1 half",
            )
            .unwrap();
            // A checkpoint whose key is gone (deleted by an erasure).
            fs::write(store.checkpoints.path(40), b"KCP1 keyless").unwrap();
        }
        let store = open(dir.path());
        let latest = store.checkpoints.latest().unwrap().unwrap();
        assert_eq!(
            (latest.generation, latest.parts),
            (10, vec![b"kept".to_vec()])
        );
        assert_eq!(store.checkpoints.list().unwrap(), vec![10]);
        assert_eq!(store.checkpoints.delete_all().unwrap(), 1);
        assert!(store.checkpoints.latest().unwrap().is_none());
    }
}
