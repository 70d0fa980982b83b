//! Journeys' durable per-person state in the `waits` keyspace: `not
//! followed by` waits, waiting runs, entry counts — and the keys naming a
//! person, by pseudonym only (an erasure's tombstones name nobody). They
//! are written only through a step's [`super::Effects`].

use jiff::Timestamp;

use super::{Entries, Outbox, Run, Wait, decode};
use crate::StoreError;

impl Outbox {
    pub fn wait(&self, journey: &str, key: &str) -> Result<Option<Wait>, StoreError> {
        match self.waits.get(self.wait_key(journey, key))? {
            Some(bytes) => Ok(Some(decode(&bytes)?)),
            None => Ok(None),
        }
    }

    /// Waits whose deadline is at or before `now`, earliest first.
    pub fn due_waits(&self, now: Timestamp, limit: usize) -> Result<Vec<Wait>, StoreError> {
        // Every deadline key up to `now` sorts before the next nanosecond's.
        let end = deadline_prefix(now + jiff::SignedDuration::from_nanos(1));
        let mut found = Vec::new();
        for guard in self.waits.range(b"d/".to_vec()..end).take(limit) {
            let key = guard.key()?;
            // `d/<deadline>/` then `<journey>\0<pseudonym of key>`, the
            // same tail as the wait's own key `w/<journey>\0<…>`.
            let tail = &key[2 + 16 + 1..];
            if let Some(bytes) = self.waits.get([b"w/".as_slice(), tail].concat())? {
                found.push(decode(&bytes)?);
            }
        }
        Ok(found)
    }

    /// The waiting runs of a person.
    pub fn runs_of(&self, identifier: &str) -> Result<Vec<Run>, StoreError> {
        let mut runs = Vec::new();
        let person = self.pseudonyms.of(identifier);
        for guard in self.waits.prefix(format!("r/{person}\0")) {
            runs.push(decode(&guard.value()?)?);
        }
        Ok(runs)
    }

    /// Runs due to resume at or before `now`, earliest first.
    pub fn due_runs(&self, now: Timestamp, limit: usize) -> Result<Vec<Run>, StoreError> {
        let mut end = b"t".to_vec();
        end.extend_from_slice(&deadline_prefix(now + jiff::SignedDuration::from_nanos(1))[1..]);
        let mut runs = Vec::new();
        for guard in self.waits.range(b"t/".to_vec()..end).take(limit) {
            let run_key = guard.value()?;
            if let Some(bytes) = self.waits.get(&run_key)? {
                runs.push(decode(&bytes)?);
            }
        }
        Ok(runs)
    }

    pub fn entries(&self, journey: &str, identifier: &str) -> Result<Option<Entries>, StoreError> {
        match self.waits.get(self.entries_key(journey, identifier))? {
            Some(bytes) => Ok(Some(decode(&bytes)?)),
            None => Ok(None),
        }
    }
}

/// Keys naming a person: by pseudonym only.
impl Outbox {
    pub(super) fn run_key(&self, run: &Run) -> Vec<u8> {
        format!(
            "r/{}\0{}\0{:016x}",
            self.pseudonyms.of(&run.identifier),
            run.journey,
            run.event_seq
        )
        .into_bytes()
    }

    pub(super) fn run_timer_key(&self, run: &Run) -> Vec<u8> {
        let mut key = b"t".to_vec();
        key.extend_from_slice(&deadline_prefix(run.resume_at)[1..]);
        key.extend_from_slice(&self.run_key(run));
        key
    }

    pub(super) fn wait_key(&self, journey: &str, key: &str) -> Vec<u8> {
        format!("w/{journey}\0{}", self.pseudonyms.of(key)).into_bytes()
    }

    pub(super) fn deadline_key(&self, wait: &Wait) -> Vec<u8> {
        let mut key = deadline_prefix(wait.deadline);
        key.extend_from_slice(
            format!("{}\0{}", wait.journey, self.pseudonyms.of(&wait.key)).as_bytes(),
        );
        key
    }

    pub(super) fn entries_key(&self, journey: &str, identifier: &str) -> String {
        format!("e/{journey}\0{}", self.pseudonyms.of(identifier))
    }
}

fn deadline_prefix(deadline: Timestamp) -> Vec<u8> {
    let mut key = b"d/".to_vec();
    // Offset so that times before 1970 still sort: i128 → u128 order.
    let nanos = (deadline.as_nanosecond() as u128) ^ (1u128 << 127);
    key.extend_from_slice(&nanos.to_be_bytes());
    key.push(b'/');
    key
}
