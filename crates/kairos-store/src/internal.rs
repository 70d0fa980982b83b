//! Events Kairos writes itself — `Audience Entered`/`Exited` announcements,
//! journeys' `set_trait` identifies, consent updates, identity-matching
//! merges, CRM trait imports — go through one path: [`Store::append_internal`].
//! They are built as Segment-shaped JSON by their author, then normalized
//! within [`INTERNAL_LIMITS`], stamped `receivedAt` on the caller's clock,
//! sealed under their person's key and appended like collected events, so
//! they are durable, deduplicated, ordered and replayed the same way. Each
//! belongs to a source named after its origin, created on first use.

use jiff::Timestamp;
use kairos_core::identity::IdentityRules;
use kairos_core::identity::extract::identifiers_of;
use kairos_core::normalize::{Arrival, IngestLimits, normalize_internal_event};
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::{Appended, Store, StoreError};

/// The bounds of every event Kairos writes itself, whoever its author. They
/// are the defaults of collection (32 KB an event) and independent of the
/// `limits.*` an operator sets for clients: an announcement or a trait a
/// journey sets must not become valid or invalid with a client setting.
pub const INTERNAL_LIMITS: IngestLimits = IngestLimits {
    event_bytes_max: INTERNAL_EVENT_BYTES_MAX,
    request_bytes_max: 500 * 1024,
    batch_events_max: 2_500,
};

/// Largest internal event (its JSON). A CRM row or a set trait larger than
/// this belongs in a profile store, not an event.
pub const INTERNAL_EVENT_BYTES_MAX: usize = 32 * 1024;

/// What became of each event given to [`Store::append_internal`].
#[derive(Debug, Default, Serialize)]
pub struct InternalOutcome {
    pub accepted: usize,
    pub duplicates: usize,
    /// Dropped: they name an erased (suppressed) person.
    pub suppressed: usize,
    pub rejected: Vec<RejectedRecord>,
}

/// An internal event that did not make a valid event, and why.
#[derive(Debug, Serialize)]
pub struct RejectedRecord {
    /// Position in the list given.
    pub index: usize,
    pub errors: Value,
}

/// Why an event naming nobody is refused (it could never reach a profile).
const NAMES_NOBODY: &str = "the record names nobody: its identifier is empty, blocked (identity.blocked_values) or of an undeclared custom type";

impl Store {
    /// Normalizes `events` as events of the source named `source` (created
    /// on first use), received at `now` (the caller's injected clock), and
    /// appends the valid ones in one write; answers once they are durable.
    /// A failed write appends nothing: calling again is safe (the same
    /// events deduplicate by messageId).
    pub async fn append_internal(
        &self,
        rules: &IdentityRules,
        source: &str,
        events: &[Value],
        now: Timestamp,
    ) -> Result<InternalOutcome, StoreError> {
        let source = self.sources.named(source, now)?;
        let arrival = Arrival {
            source_id: &source.id,
            received_at: now,
            batch_sent_at: None,
            path_type: None,
            limits: &INTERNAL_LIMITS,
            plan: None,
        };
        let mut outcome = InternalOutcome::default();
        let mut records = Vec::with_capacity(events.len());
        for (index, event) in events.iter().enumerate() {
            match normalize(event, &arrival, rules) {
                Ok(event) => match self.prepare(&event, rules) {
                    Some(record) => records.push(record),
                    None => outcome.suppressed += 1,
                },
                Err(errors) => outcome.rejected.push(RejectedRecord { index, errors }),
            }
        }
        if records.is_empty() {
            return Ok(outcome);
        }
        let receipt = self.writer.append(records, Vec::new(), Vec::new()).await?;
        for appended in receipt.appended {
            match appended {
                Appended::Stored(_) => outcome.accepted += 1,
                Appended::Duplicate(_) => outcome.duplicates += 1,
                Appended::Suppressed => outcome.suppressed += 1,
            }
        }
        Ok(outcome)
    }
}

/// One internal event normalized, or why not (as JSON, for answers).
fn normalize(
    event: &Value,
    arrival: &Arrival,
    rules: &IdentityRules,
) -> Result<kairos_core::Event, Value> {
    let raw = RawValue::from_string(event.to_string())
        .map_err(|error| Value::from(format!("not encodable as JSON: {error}")))?;
    let event = normalize_internal_event(&raw, arrival)
        .map_err(|errors| serde_json::to_value(&errors).unwrap_or(Value::Null))?;
    if identifiers_of(&event, rules).is_empty() {
        return Err(Value::from(NAMES_NOBODY));
    }
    Ok(event)
}

#[cfg(test)]
mod tests;
