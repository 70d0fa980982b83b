//! Events Kairos writes itself (CRM trait imports, consent updates): built
//! as Segment-shaped JSON, normalized and appended like collected events, so
//! they are durable, deduplicated, ordered and replayed the same way. They
//! belong to a source named after their origin, created on first use.

use kairos_core::identity::extract::identifiers_of;
use kairos_core::normalize::{Arrival, normalize_internal_event};
use kairos_store::Appended;
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::AppState;
use crate::problem::Problem;

#[derive(Debug, Default, Serialize)]
pub struct InternalOutcome {
    pub accepted: usize,
    pub duplicates: usize,
    /// Dropped: they name an erased (suppressed) person.
    pub suppressed: usize,
    pub rejected: Vec<RejectedRecord>,
}

#[derive(Debug, Serialize)]
pub struct RejectedRecord {
    /// Position in the request's list.
    pub index: usize,
    pub errors: Value,
}

/// Normalizes and appends `events` for the source `source_name`; answers
/// once they are durable.
pub async fn append_internal(
    state: &AppState,
    source_name: &str,
    events: Vec<Value>,
) -> Result<InternalOutcome, Problem> {
    let now = state.clock.now();
    let source = state.store.sources.named(source_name, now)?;
    let arrival = Arrival {
        source_id: &source.id,
        received_at: now,
        batch_sent_at: None,
        path_type: None,
        limits: &state.limits,
        plan: None,
    };
    let rules = state.engine.rules();
    let mut outcome = InternalOutcome::default();
    let mut records = Vec::with_capacity(events.len());
    for (index, event) in events.iter().enumerate() {
        let raw = RawValue::from_string(event.to_string())
            .map_err(|error| Problem::internal("encoding an internal event", error))?;
        match normalize_internal_event(&raw, &arrival) {
            Ok(event) if identifiers_of(&event, rules).is_empty() => {
                outcome.rejected.push(RejectedRecord {
                    index,
                    errors: Value::from(
                        "the record names nobody: its identifier is empty, blocked (identity.blocked_values) or of an undeclared custom type",
                    ),
                })
            }
            Ok(event) => match state.store.prepare(&event, rules) {
                Some(record) => records.push(record),
                None => outcome.suppressed += 1,
            },
            Err(errors) => outcome.rejected.push(RejectedRecord {
                index,
                errors: serde_json::to_value(&errors).unwrap_or(Value::Null),
            }),
        }
    }
    if records.is_empty() {
        return Ok(outcome);
    }
    let receipt = state
        .store
        .writer
        .append(records, Vec::new(), Vec::new())
        .await?;
    for appended in receipt.appended {
        match appended {
            Appended::Stored(_) => outcome.accepted += 1,
            Appended::Duplicate(_) => outcome.duplicates += 1,
            Appended::Suppressed => outcome.suppressed += 1,
        }
    }
    state
        .metrics
        .events_accepted
        .inc_by(outcome.accepted as u64);
    Ok(outcome)
}
