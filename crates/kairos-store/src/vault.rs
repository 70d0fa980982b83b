//! Per-person encryption of the log, so a person can be erased from an
//! append-only log (crypto-shredding).
//!
//! Every event is sealed under the data key of its **subject**: the event's
//! most trusted identifier (see `kairos_core::identity::subject_of`), which
//! always ends up in the profile the event belongs to. Erasing a person
//! destroys the keys of every identifier the profile holds; their events stay
//! in the log as ciphertext nobody can open, and readers skip them.
//!
//! Subjects are never stored in plaintext: a subject id is a keyed SipHash
//! (128 bit) of `type\0value` under a secret kept in the data directory, so
//! the vault, the suppression list and the audit log name people only by
//! pseudonym.
//!
//! Record layout inside a log chunk: `[version 1][subject 16][ciphertext +
//! 16-byte tag]`, ChaCha20-Poly1305 over the LZ4-compressed plaintext
//! (compression must come before encryption; ciphertext does not shrink),
//! nonce = the event's sequence number (unique per event, hence per key). Keys live in the `vault` keyspace and,
//! for speed, in memory (48 bytes per subject plus map overhead).

use std::collections::HashMap;
use std::hash::Hasher;
use std::sync::RwLock;

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use fjall::{Database, Keyspace, KeyspaceCreateOptions};
use kairos_core::identity::Identifier;

use crate::StoreError;

const KEYSPACE: &str = "vault";
const META_SECRET_KEY: &[u8] = b"subject_secret";
const RECORD_VERSION: u8 = 1;
const HEADER_BYTES: usize = 1 + 16;

/// A pseudonymous identifier: keyed hash of one identifier.
pub type SubjectId = [u8; 16];

pub struct Vault {
    keyspace: Keyspace,
    secret: [u8; 16],
    keys: RwLock<HashMap<SubjectId, [u8; 32]>>,
}

impl Vault {
    pub(crate) fn open(db: &Database, meta: &Keyspace) -> Result<Vault, StoreError> {
        let keyspace = db.keyspace(KEYSPACE, KeyspaceCreateOptions::default)?;
        let secret = match meta.get(META_SECRET_KEY)? {
            Some(bytes) => bytes
                .as_ref()
                .try_into()
                .map_err(|_| StoreError::Corrupt("meta subject_secret is not 16 bytes".into()))?,
            None => {
                let secret = random_bytes::<16>();
                meta.insert(META_SECRET_KEY, secret)?;
                db.persist(fjall::PersistMode::SyncAll)?;
                secret
            }
        };
        let mut keys = HashMap::new();
        for guard in keyspace.iter() {
            let (subject, key) = guard.into_inner()?;
            let subject: SubjectId = subject
                .as_ref()
                .try_into()
                .map_err(|_| StoreError::Corrupt("vault subject is not 16 bytes".into()))?;
            let key: [u8; 32] = key
                .as_ref()
                .try_into()
                .map_err(|_| StoreError::Corrupt("vault key is not 32 bytes".into()))?;
            keys.insert(subject, key);
        }
        Ok(Vault {
            keyspace,
            secret,
            keys: RwLock::new(keys),
        })
    }

    /// The pseudonym of an identifier (type and normalized value).
    pub fn subject(&self, identifier: &Identifier) -> SubjectId {
        let mut hasher = siphasher::sip128::SipHasher13::new_with_key(&self.secret);
        hasher.write(identifier.kind.as_bytes());
        hasher.write_u8(0);
        hasher.write(identifier.value.as_bytes());
        siphasher::sip128::Hasher128::finish128(&hasher).as_bytes()
    }

    /// Number of subjects holding a key.
    pub fn len(&self) -> usize {
        self.keys.read().expect("vault lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The subject's key, creating one (added to `batch`) if it has none.
    /// Writer thread only: keys are created by one thread, so two events of
    /// a new subject cannot race to different keys.
    pub(crate) fn key_for_writing(
        &self,
        subject: &SubjectId,
        batch: &mut fjall::OwnedWriteBatch,
        created: &mut Vec<SubjectId>,
    ) -> [u8; 32] {
        if let Some(key) = self.keys.read().expect("vault lock").get(subject) {
            return *key;
        }
        let key = random_bytes::<32>();
        batch.insert(&self.keyspace, subject, key);
        self.keys.write().expect("vault lock").insert(*subject, key);
        created.push(*subject);
        key
    }

    /// Forgets keys created for a batch that failed to commit.
    pub(crate) fn forget(&self, subjects: &[SubjectId]) {
        let mut keys = self.keys.write().expect("vault lock");
        for subject in subjects {
            keys.remove(subject);
        }
    }

    /// Destroys the subjects' keys: in memory now, on disk with `batch`.
    /// Returns how many existed.
    pub(crate) fn shred(
        &self,
        subjects: &[SubjectId],
        batch: &mut fjall::OwnedWriteBatch,
    ) -> usize {
        let mut keys = self.keys.write().expect("vault lock");
        let mut destroyed = 0;
        for subject in subjects {
            destroyed += usize::from(keys.remove(subject).is_some());
            batch.remove(&self.keyspace, subject);
        }
        destroyed
    }

    pub(crate) fn keyspace(&self) -> &Keyspace {
        &self.keyspace
    }
}

/// What a sealed record is: the nonce space of each kind is separate, so a
/// log sequence number and a quarantine id never share a nonce under one key.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Sealed {
    LogEvent(u64),
    Quarantined(u64),
}

/// Seals one record's bytes under its subject's key.
pub(crate) fn seal(what: Sealed, subject: &SubjectId, key: &[u8; 32], plaintext: &[u8]) -> Vec<u8> {
    let cipher = ChaCha20Poly1305::new(Key::from_slice(key));
    let compressed = lz4_flex::compress_prepend_size(plaintext);
    let sealed = cipher
        .encrypt(&nonce(what), compressed.as_slice())
        .expect("ChaCha20-Poly1305 encrypts any length below 256 GiB");
    let mut record = Vec::with_capacity(HEADER_BYTES + sealed.len());
    record.push(RECORD_VERSION);
    record.extend_from_slice(subject);
    record.extend_from_slice(&sealed);
    record
}

/// What reading a sealed record gives.
pub(crate) enum Opened {
    Event(Vec<u8>),
    /// The subject's key was destroyed: the person was erased.
    Erased,
}

impl Vault {
    pub(crate) fn open_record(&self, what: Sealed, record: &[u8]) -> Result<Opened, StoreError> {
        let corrupt = |problem: &str| StoreError::Corrupt(format!("{what:?}: {problem}"));
        if record.len() < HEADER_BYTES || record[0] != RECORD_VERSION {
            return Err(corrupt("unknown record format"));
        }
        let subject: SubjectId = record[1..HEADER_BYTES].try_into().expect("16 bytes");
        let Some(key) = self.keys.read().expect("vault lock").get(&subject).copied() else {
            return Ok(Opened::Erased);
        };
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&key));
        let compressed = cipher
            .decrypt(&nonce(what), &record[HEADER_BYTES..])
            .map_err(|_| corrupt("authentication failed (wrong key or damaged data)"))?;
        lz4_flex::decompress_size_prepended(&compressed)
            .map(Opened::Event)
            .map_err(|error| corrupt(&format!("decompression failed: {error}")))
    }
}

fn nonce(what: Sealed) -> Nonce {
    let (kind, number) = match what {
        Sealed::LogEvent(seq) => (0u8, seq),
        Sealed::Quarantined(id) => (1u8, id),
    };
    let mut bytes = [0u8; 12];
    bytes[0] = kind;
    bytes[4..].copy_from_slice(&number.to_be_bytes());
    *Nonce::from_slice(&bytes)
}

/// The subject a sealed record names (its header), without opening it.
pub(crate) fn subject_of_record(record: &[u8]) -> Option<SubjectId> {
    record.get(1..HEADER_BYTES)?.try_into().ok()
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the operating system provides randomness");
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_events_open_until_the_key_is_shredded() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::builder(dir.path()).open().unwrap();
        let meta = db.keyspace("meta", KeyspaceCreateOptions::default).unwrap();
        let vault = Vault::open(&db, &meta).unwrap();
        let subject = vault.subject(&Identifier::new("user_id", "u1"));
        assert_ne!(subject, vault.subject(&Identifier::new("email", "u1")));
        let mut batch = db.batch();
        let mut created = Vec::new();
        let key = vault.key_for_writing(&subject, &mut batch, &mut created);
        batch.commit().unwrap();
        let record = seal(Sealed::LogEvent(7), &subject, &key, b"{\"userId\":\"u1\"}");
        assert!(!record.windows(2).any(|window| window == b"u1"));
        match vault.open_record(Sealed::LogEvent(7), &record).unwrap() {
            Opened::Event(bytes) => assert_eq!(bytes, b"{\"userId\":\"u1\"}"),
            Opened::Erased => panic!("key exists"),
        }
        assert!(
            vault.open_record(Sealed::LogEvent(8), &record).is_err(),
            "the nonce binds the seq"
        );
        assert!(
            vault.open_record(Sealed::Quarantined(7), &record).is_err(),
            "separate nonce spaces"
        );
        let reopened = Vault::open(&db, &meta).unwrap();
        assert_eq!(reopened.subject(&Identifier::new("user_id", "u1")), subject);
        let mut batch = db.batch();
        reopened.shred(&[subject], &mut batch);
        batch.commit().unwrap();
        let seven = Sealed::LogEvent(7);
        assert!(matches!(
            reopened.open_record(seven, &record).unwrap(),
            Opened::Erased
        ));
        assert!(matches!(
            Vault::open(&db, &meta)
                .unwrap()
                .open_record(seven, &record)
                .unwrap(),
            Opened::Erased
        ));
    }
}
