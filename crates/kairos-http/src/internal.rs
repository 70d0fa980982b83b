//! Events Kairos writes itself from HTTP requests (CRM trait imports,
//! consent updates, identity-matching merges): appended through the store's
//! one path for internal events ([`kairos_store::internal`]), received at
//! the engine's clock like announcements and journeys' traits.

use serde_json::Value;

pub use kairos_store::InternalOutcome;

use crate::AppState;
use crate::problem::Problem;

/// Normalizes and appends `events` for the source `source_name`; answers
/// once they are durable.
pub async fn append_internal(
    state: &AppState,
    source_name: &str,
    events: Vec<Value>,
) -> Result<InternalOutcome, Problem> {
    let outcome = state
        .store
        .append_internal(
            state.engine.rules(),
            source_name,
            &events,
            state.engine.now(),
        )
        .await?;
    state
        .metrics
        .events_accepted
        .inc_by(outcome.accepted as u64);
    Ok(outcome)
}
