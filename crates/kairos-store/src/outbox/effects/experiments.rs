//! A step's experiment outcomes: a metric or guardrail event of an exposed
//! person, after their exposure, updates their exposure record in the
//! step's batch — so a conversion counts once, however often the step is
//! retried or replayed after a crash.

use fjall::OwnedWriteBatch;

use super::Effects;
use crate::StoreError;
use crate::outbox::decode;
use crate::outbox::experiments::Exposure;

/// What an event is to an experiment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// The metric event, with its value (1 for a conversion metric).
    Metric { value: f64, continuous: bool },
    /// The guardrail metric at this index of the definition.
    Guardrail(usize),
}

/// An exposure changed in this step.
pub(super) struct Pending {
    experiment: String,
    exposure: Exposure,
    /// The person's identifiers: nothing is written if one was erased.
    identifiers: Vec<String>,
    /// Converted in this step (the in-memory counts add it after commit).
    converted: bool,
}

impl Effects<'_> {
    /// An event at log position `seq` of the person known by `identifiers`
    /// (every identity of their profile): applied to their earliest
    /// exposure to `experiment` if it came after it. Returns whether it
    /// changed anything (false: not exposed, before exposure, or a repeat).
    pub fn experiment_outcome(
        &mut self,
        experiment: &str,
        identifiers: &[String],
        seq: u64,
        outcome: Outcome,
    ) -> Result<bool, StoreError> {
        let Some((key, mut exposure)) = self.earliest_exposure(experiment, identifiers)? else {
            return Ok(false);
        };
        if seq <= exposure.after_seq {
            return Ok(false);
        }
        let converted = match outcome {
            Outcome::Metric { value, continuous } => {
                let first = !exposure.converted;
                if continuous {
                    exposure.value += value;
                } else if !first {
                    return Ok(false); // a conversion counts once per person
                } else {
                    exposure.value = 1.0;
                }
                exposure.converted = true;
                first
            }
            Outcome::Guardrail(index) => {
                if !exposure.guardrails.insert(index) {
                    return Ok(false);
                }
                false
            }
        };
        let pending = self.exposures.entry(key).or_insert_with(|| Pending {
            experiment: experiment.to_string(),
            exposure: exposure.clone(),
            identifiers: identifiers.to_vec(),
            converted: false,
        });
        pending.exposure = exposure;
        pending.converted |= converted;
        Ok(true)
    }

    /// The earliest exposure of any identifier, as this step left it.
    fn earliest_exposure(
        &self,
        experiment: &str,
        identifiers: &[String],
    ) -> Result<Option<(Vec<u8>, Exposure)>, StoreError> {
        let mut earliest: Option<(Vec<u8>, Exposure)> = None;
        for identifier in identifiers {
            let key = self.outbox.exposure_key(experiment, identifier);
            let exposure = match self.exposures.get(&key) {
                Some(pending) => Some(pending.exposure.clone()),
                None => match self.outbox.waits.get(&key)? {
                    Some(bytes) => Some(decode::<Exposure>(&bytes)?),
                    None => None,
                },
            };
            if let Some(exposure) = exposure
                && earliest.as_ref().is_none_or(|(_, first)| {
                    (exposure.after_seq, exposure.at) < (first.after_seq, first.at)
                })
            {
                earliest = Some((key, exposure));
            }
        }
        Ok(earliest)
    }

    /// Whether the person was erased since the step read their exposure:
    /// nothing about them is written or counted.
    fn erased(&self, pending: &Pending) -> bool {
        pending
            .identifiers
            .iter()
            .any(|identifier| self.outbox.is_erased(identifier))
    }

    /// The changed exposures, into the step's batch.
    pub(super) fn write_exposures(&self, batch: &mut OwnedWriteBatch) {
        for (key, pending) in &self.exposures {
            if self.erased(pending) {
                continue;
            }
            batch.insert(
                &self.outbox.waits,
                key.clone(),
                serde_json::to_vec(&pending.exposure).expect("an exposure serializes"),
            );
        }
    }

    /// `(experiment, group)` of each conversion of the step.
    pub(super) fn experiment_conversions(&self) -> Vec<(String, String)> {
        self.exposures
            .values()
            .filter(|pending| pending.converted && !self.erased(pending))
            .map(|pending| (pending.experiment.clone(), pending.exposure.group.clone()))
            .collect()
    }
}
