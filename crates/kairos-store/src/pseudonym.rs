//! Keyed pseudonyms of identifiers that must appear in keys (the outbox's
//! per-person indexes, list members). A deletion in an LSM store writes a
//! tombstone holding the *key*, and a tombstone lingers in table files
//! until a compaction reaches the last level — so a key must never hold a
//! person's identifier in plaintext, or erasing them would leave it on
//! disk. The pseudonym is SipHash-1-3 (128 bits) under a secret kept in the
//! data directory: not reversible, and not a dictionary lookup for someone
//! holding only the table files' keys.

use fjall::{Database, Keyspace, PersistMode};

use crate::StoreError;

const SECRET_KEY: &[u8] = b"pseudonym/secret";

#[derive(Clone, Copy)]
pub(crate) struct Pseudonyms {
    secret: [u8; 16],
}

impl Pseudonyms {
    /// The data directory's secret, made on first use.
    pub(crate) fn open(db: &Database, meta: &Keyspace) -> Result<Pseudonyms, StoreError> {
        if let Some(bytes) = meta.get(SECRET_KEY)? {
            let secret = bytes
                .as_ref()
                .try_into()
                .map_err(|_| StoreError::Corrupt("the pseudonym secret is not 16 bytes".into()))?;
            return Ok(Pseudonyms { secret });
        }
        let mut secret = [0u8; 16];
        getrandom::fill(&mut secret)
            .map_err(|error| StoreError::Io(format!("no randomness: {error}")))?;
        meta.insert(SECRET_KEY, secret)?;
        db.persist(PersistMode::SyncAll)?;
        Ok(Pseudonyms { secret })
    }

    /// The pseudonym of `text` (an identifier `type:value`, a wait's key):
    /// 32 hex characters.
    pub(crate) fn of(&self, text: &str) -> String {
        use std::hash::Hasher;
        let mut hasher = siphasher::sip128::SipHasher13::new_with_key(&self.secret);
        hasher.write(text.as_bytes());
        let hash = siphasher::sip128::Hasher128::finish128(&hasher).as_bytes();
        hash.iter().map(|byte| format!("{byte:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_stable_per_secret_and_hide_the_text() {
        let one = Pseudonyms { secret: [1; 16] };
        let two = Pseudonyms { secret: [2; 16] };
        let text = "email:ada@example.org";
        assert_eq!(one.of(text), one.of(text));
        assert_ne!(one.of(text), two.of(text));
        assert_eq!(one.of(text).len(), 32);
        assert!(!one.of(text).contains("ada"));
    }
}
