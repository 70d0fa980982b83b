//! Experiment outcomes in the effects stage: a metric or guardrail event of
//! a person exposed to a running experiment counts for their group, once
//! and only after their exposure, in the step's atomic batch
//! ([`kairos_store::Effects::experiment_outcome`]). Stopped experiments
//! still count outcomes of the people already exposed.

use kairos_engine::effects_feed::EffectInput;
use kairos_store::{Effects, StoreError};

use super::Stage;
use crate::experiments::Definition;

impl Stage {
    pub(super) fn apply_experiment_metrics(
        &self,
        input: &EffectInput,
        effects: &mut Effects<'_>,
    ) -> Result<(), StoreError> {
        if input.announcement {
            return Ok(());
        }
        let mut identifiers: Option<Vec<String>> = None;
        for record in self.store.outbox.experiments() {
            let Ok(definition) = Definition::parse(&record.definition) else {
                continue; // checked at creation: unreachable unless edited on disk
            };
            let outcomes = definition.outcomes_of(&input.fact);
            if outcomes.is_empty() {
                continue;
            }
            // Every identity of the person: a merged person's exposure may
            // be under any of them.
            let identifiers = identifiers.get_or_insert_with(|| {
                input
                    .person
                    .identities
                    .iter()
                    .map(|identity| format!("{}:{}", identity.kind, identity.value))
                    .chain(std::iter::once(format!(
                        "{}:{}",
                        input.subject.kind, input.subject.value
                    )))
                    .collect()
            });
            for outcome in outcomes {
                effects.experiment_outcome(&record.id, identifiers, input.seq, outcome)?;
            }
        }
        Ok(())
    }
}
