//! Erasure in the outbox: everything about a person — messages of every
//! status, runs, waits, entry counts, audience-sync changes, decisions and
//! offer histories, experiment exposures — deleted, and
//! nothing about them written again while the process runs.

use fjall::PersistMode;

use super::{
    MESSAGE_PREFIX, Message, Outbox, OutboxErasure, Run, SyncChange, Wait, decode, queue_key,
};
use crate::StoreError;

impl Outbox {
    /// Erases everything the outbox holds about the person known by
    /// `identifiers` (`type:value`): messages of every status (the
    /// delivery log and dead letters), waiting runs, waits, journey entry
    /// counts, audience-sync changes, decisions and experiment exposures.
    /// From now on nothing about them is
    /// written again.
    pub fn forget(&self, identifiers: &[String]) -> Result<OutboxErasure, StoreError> {
        let set: std::collections::HashSet<String> = identifiers.iter().cloned().collect();
        self.erased
            .write()
            .expect("erased lock")
            .extend(set.iter().cloned());
        let mut erased = OutboxErasure::default();
        let mut batch = self.db.batch();
        for identifier in identifiers {
            let person = self.pseudonyms.of(identifier);
            for (index_key, id) in self.indexed_messages(identifier)? {
                let message_key = [MESSAGE_PREFIX.as_bytes(), &id].concat();
                if let Some(bytes) = self.deliveries.get(&message_key)? {
                    let message: Message = decode(&bytes)?;
                    batch.remove(&self.queue, queue_key(&message.destination, message.seq));
                    erased.messages += 1;
                }
                batch.remove(&self.deliveries, message_key);
                batch.remove(&self.deliveries, index_key);
            }
            erased.decisions += self.forget_decisions(&person, &mut batch)?;
            for guard in self.waits.prefix(format!("r/{person}\0")) {
                let run: Run = decode(&guard.value()?)?;
                batch.remove(&self.waits, self.run_key(&run));
                batch.remove(&self.waits, self.run_timer_key(&run));
                erased.runs_and_waits += 1;
            }
        }
        self.forget_in_waits(&set, &mut batch, &mut erased)?;
        erased.experiment_exposures = self.forget_exposures(identifiers, &mut batch)?;
        batch.commit()?;
        self.db.persist(PersistMode::SyncAll)?;
        if erased.experiment_exposures > 0 {
            self.recount_exposures()?;
        }
        Ok(erased)
    }

    /// Waits, entry counts and sync changes are keyed by journey or sync,
    /// not person: found by a scan (they are few next to messages).
    fn forget_in_waits(
        &self,
        identifiers: &std::collections::HashSet<String>,
        batch: &mut fjall::OwnedWriteBatch,
        erased: &mut OutboxErasure,
    ) -> Result<(), StoreError> {
        for guard in self.waits.prefix("w/") {
            let wait: Wait = decode(&guard.value()?)?;
            if identifiers.contains(&wait.identifier) {
                batch.remove(&self.waits, self.wait_key(&wait.journey, &wait.key));
                batch.remove(&self.waits, self.deadline_key(&wait));
                erased.runs_and_waits += 1;
            }
        }
        let people: std::collections::HashSet<String> = identifiers
            .iter()
            .map(|identifier| self.pseudonyms.of(identifier))
            .collect();
        for guard in self.waits.prefix("e/") {
            let key = guard.key()?;
            let names_person = key
                .iter()
                .position(|byte| *byte == 0)
                .map(|split| String::from_utf8_lossy(&key[split + 1..]).to_string())
                .is_some_and(|person| people.contains(&person));
            if names_person {
                batch.remove(&self.waits, key.to_vec());
            }
        }
        for guard in self.waits.prefix("s/") {
            let (key, value) = guard.into_inner()?;
            let change: SyncChange = decode(&value)?;
            if identifiers.contains(&change.identifier) {
                batch.remove(&self.waits, key.to_vec());
                erased.sync_changes += 1;
            }
        }
        Ok(())
    }

    /// Whether `identifier` was erased while this process runs.
    pub fn is_erased(&self, identifier: &str) -> bool {
        let erased = self.erased.read().expect("erased lock");
        !erased.is_empty() && erased.contains(identifier)
    }
}
