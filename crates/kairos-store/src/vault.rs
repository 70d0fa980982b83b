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
//! Record layout (log chunks and quarantine): `[version 2][subject 16]
//! [nonce 12][ciphertext + 16-byte tag]`, ChaCha20-Poly1305. Not
//! compressed: one event alone shrinks little under LZ4 and the CPU, not
//! the disk, limits ingest on the reference machine. Records are sealed on the request threads,
//! in parallel, before they reach the single log writer; the nonce is a
//! random 32-bit prefix drawn at start and a 64-bit counter starting at a
//! random value, so it never repeats within a process and two processes
//! collide with odds of about 2^-56. Keys live in the `vault` keyspace and,
//! for speed, in memory (~80 bytes per subject); a key created for a new
//! subject is written by the log writer in the same batch as the first
//! event sealed under it (whichever request thread made it).

use std::collections::HashMap;
use std::hash::Hasher;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use fjall::{Database, Keyspace, KeyspaceCreateOptions};
use kairos_core::identity::Identifier;

use crate::StoreError;

const KEYSPACE: &str = "vault";
const META_SECRET_KEY: &[u8] = b"subject_secret";
const RECORD_VERSION: u8 = 2;
const SUBJECT_END: usize = 1 + 16;
const HEADER_BYTES: usize = SUBJECT_END + 12;

/// A pseudonymous identifier: keyed hash of one identifier.
pub type SubjectId = [u8; 16];

/// A subject's data key, and whether it is in the store yet.
#[derive(Clone, Copy)]
struct DataKey {
    key: [u8; 32],
    persisted: bool,
}

pub struct Vault {
    keyspace: Keyspace,
    secret: [u8; 16],
    keys: RwLock<HashMap<SubjectId, DataKey>>,
    nonce_prefix: [u8; 4],
    nonce_counter: AtomicU64,
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
            keys.insert(
                subject,
                DataKey {
                    key,
                    persisted: true,
                },
            );
        }
        Ok(Vault {
            keyspace,
            secret,
            keys: RwLock::new(keys),
            nonce_prefix: random_bytes::<4>(),
            nonce_counter: AtomicU64::new(u64::from_be_bytes(random_bytes::<8>())),
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

    /// Seals an event's (or quarantine record's) bytes under the subject's
    /// key, creating the key in memory if the subject has none; any thread.
    pub fn seal(&self, subject: &SubjectId, plaintext: &[u8]) -> Vec<u8> {
        let key = self.key_for_sealing(subject);
        let counter = self.nonce_counter.fetch_add(1, Ordering::Relaxed);
        let mut nonce = [0u8; 12];
        nonce[..4].copy_from_slice(&self.nonce_prefix);
        nonce[4..].copy_from_slice(&counter.to_be_bytes());
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&key));
        let sealed = cipher
            .encrypt(Nonce::from_slice(&nonce), plaintext)
            .expect("ChaCha20-Poly1305 encrypts any length below 256 GiB");
        let mut record = Vec::with_capacity(HEADER_BYTES + sealed.len());
        record.push(RECORD_VERSION);
        record.extend_from_slice(subject);
        record.extend_from_slice(&nonce);
        record.extend_from_slice(&sealed);
        record
    }

    fn key_for_sealing(&self, subject: &SubjectId) -> [u8; 32] {
        if let Some(entry) = self.keys.read().expect("vault lock").get(subject) {
            return entry.key;
        }
        // Two threads sealing a new subject's events at once get one key.
        self.keys
            .write()
            .expect("vault lock")
            .entry(*subject)
            .or_insert_with(|| DataKey {
                key: random_bytes::<32>(),
                persisted: false,
            })
            .key
    }

    /// Adds the subject's key to `batch` if it is not in the store yet.
    /// Writer thread only, for every record it writes, so a key is durable
    /// no later than the first event sealed under it.
    pub(crate) fn persist_key(
        &self,
        subject: &SubjectId,
        batch: &mut fjall::OwnedWriteBatch,
        created: &mut Vec<SubjectId>,
    ) {
        if self
            .keys
            .read()
            .expect("vault lock")
            .get(subject)
            .is_none_or(|entry| entry.persisted)
        {
            return;
        }
        let mut keys = self.keys.write().expect("vault lock");
        if let Some(entry) = keys.get_mut(subject)
            && !entry.persisted
        {
            batch.insert(&self.keyspace, subject, entry.key);
            entry.persisted = true;
            created.push(*subject);
        }
    }

    /// Marks keys of a batch that failed to commit as not yet stored.
    pub(crate) fn unpersist(&self, subjects: &[SubjectId]) {
        let mut keys = self.keys.write().expect("vault lock");
        for subject in subjects {
            if let Some(entry) = keys.get_mut(subject) {
                entry.persisted = false;
            }
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

/// What reading a sealed record gives.
pub(crate) enum Opened {
    Event(Vec<u8>),
    /// The subject's key was destroyed: the person was erased.
    Erased,
}

impl Vault {
    /// Opens a sealed record; the error says what is wrong with it.
    pub(crate) fn open_record(&self, record: &[u8]) -> Result<Opened, &'static str> {
        let corrupt = |problem: &'static str| problem;
        if record.len() < HEADER_BYTES || record[0] != RECORD_VERSION {
            return Err(corrupt("unknown record format"));
        }
        let subject: SubjectId = record[1..SUBJECT_END].try_into().expect("16 bytes");
        let nonce = Nonce::from_slice(&record[SUBJECT_END..HEADER_BYTES]);
        let Some(key) = self
            .keys
            .read()
            .expect("vault lock")
            .get(&subject)
            .map(|entry| entry.key)
        else {
            return Ok(Opened::Erased);
        };
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&key));
        cipher
            .decrypt(nonce, &record[HEADER_BYTES..])
            .map(Opened::Event)
            .map_err(|_| corrupt("authentication failed (wrong key or damaged data)"))
    }
}

/// The subject a sealed record names (its header), without opening it.
pub(crate) fn subject_of_record(record: &[u8]) -> Option<SubjectId> {
    record.get(1..SUBJECT_END)?.try_into().ok()
}

pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
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
        let record = vault.seal(&subject, b"{\"userId\":\"u1\"}");
        let again = vault.seal(&subject, b"{\"userId\":\"u1\"}");
        assert_ne!(record, again, "a fresh nonce every time");
        assert!(!record.windows(2).any(|window| window == b"u1"));
        // Not stored until the writer persists it with the first event.
        assert!(Vault::open(&db, &meta).unwrap().is_empty());
        let mut batch = db.batch();
        let mut created = Vec::new();
        vault.persist_key(&subject, &mut batch, &mut created);
        vault.persist_key(&subject, &mut batch, &mut created);
        assert_eq!(created, vec![subject], "persisted once");
        batch.commit().unwrap();
        match vault.open_record(&record).unwrap() {
            Opened::Event(bytes) => assert_eq!(bytes, b"{\"userId\":\"u1\"}"),
            Opened::Erased => panic!("key exists"),
        }
        let mut damaged = record.clone();
        *damaged.last_mut().unwrap() ^= 1;
        assert!(vault.open_record(&damaged).is_err());
        let reopened = Vault::open(&db, &meta).unwrap();
        assert_eq!(reopened.subject(&Identifier::new("user_id", "u1")), subject);
        assert!(matches!(
            reopened.open_record(&record).unwrap(),
            Opened::Event(_)
        ));
        let mut batch = db.batch();
        assert_eq!(reopened.shred(&[subject], &mut batch), 1);
        batch.commit().unwrap();
        assert!(matches!(
            reopened.open_record(&record).unwrap(),
            Opened::Erased
        ));
        assert!(matches!(
            Vault::open(&db, &meta)
                .unwrap()
                .open_record(&record)
                .unwrap(),
            Opened::Erased
        ));
    }
}
