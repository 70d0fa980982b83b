//! Audience syncs (docs/journeys.md, "Audience sync"): an audience's
//! membership changes, batched, to a webhook destination.
//!
//! - `POST /v1/audience-syncs` `{"name", "audience", "destination",
//!   "batch_size": 100, "max_wait": "30s"}` → 201; changes after it count;
//! - `GET /v1/audience-syncs` (with the changes waiting per sync),
//!   `DELETE /v1/audience-syncs/{id}`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kairos_store::{AudienceSyncRecord, DefinitionKind};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::admin::JsonBody;
use crate::auth::Admin;
use crate::problem::Problem;

const BATCH_SIZE_DEFAULT: usize = 100;
const BATCH_SIZE_MAX: usize = 10_000;
const MAX_WAIT_DEFAULT: u64 = 30;
const MAX_WAIT_MAX: u64 = 86_400;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSync {
    name: String,
    audience: String,
    destination: String,
    batch_size: Option<usize>,
    /// "30s", "5m".
    max_wait: Option<String>,
}

fn describe(state: &AppState, record: &AudienceSyncRecord) -> Value {
    let waiting = state
        .store
        .outbox
        .sync_changes(&record.id, BATCH_SIZE_MAX)
        .map_or(0, |changes| changes.len());
    json!({
        "id": record.id, "name": record.name, "audience": record.audience,
        "destination": record.destination, "batch_size": record.batch_size,
        "max_wait_seconds": record.max_wait_seconds, "created_at": record.created_at,
        "changes_waiting": waiting,
    })
}

fn invalid(message: impl Into<String>) -> Problem {
    Problem::bad_request("audience_sync_invalid", message)
}

/// `POST /v1/audience-syncs`
pub async fn create_sync(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CreateSync>,
) -> Result<Response, Problem> {
    let name = body.name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(invalid("an audience sync needs a name of 1 to 200 bytes"));
    }
    let audience = state
        .store
        .definitions
        .get(DefinitionKind::Audience, &body.audience)
        .ok_or_else(|| {
            invalid(format!(
                "no audience {:?}; create it with POST /v1/audiences",
                body.audience
            ))
        })?;
    let destination = state
        .store
        .outbox
        .destination(&body.destination)
        .filter(|destination| destination.kind == "webhook")
        .ok_or_else(|| {
            invalid(format!(
                "no webhook destination {:?}; create one with POST /v1/destinations",
                body.destination
            ))
        })?;
    // The destination may date from a laxer address policy: say so now
    // rather than through failed deliveries.
    crate::journeys::checked_destination_url(
        &destination.kind,
        &destination.url,
        state.address_policy,
    )
    .await?;
    let batch_size = body.batch_size.unwrap_or(BATCH_SIZE_DEFAULT);
    if !(1..=BATCH_SIZE_MAX).contains(&batch_size) {
        return Err(invalid(format!(
            "batch_size must be from 1 to {BATCH_SIZE_MAX}"
        )));
    }
    let max_wait_seconds = match &body.max_wait {
        None => MAX_WAIT_DEFAULT,
        Some(text) => seconds(text)
            .filter(|seconds| (1..=MAX_WAIT_MAX).contains(seconds))
            .ok_or_else(|| {
                invalid(format!(
                    "max_wait {text:?}: expected a duration from \"1s\" to \"24h\" (units s, m, h)"
                ))
            })?,
    };
    // Widened before the position the sync starts after is read.
    state
        .engine
        .widen_effects_interest(kairos_deliver::sync_event_names());
    let record = state.store.outbox.create_sync(AudienceSyncRecord {
        id: String::new(),
        name: name.to_string(),
        audience: audience.name,
        destination: destination.id,
        batch_size,
        max_wait_seconds,
        starts_after_seq: state.store.writer.committed_seq(),
        created_at: state.clock.now(),
    })?;
    if let Some(deliverer) = &state.deliverer {
        deliverer.wake();
    }
    Ok((StatusCode::CREATED, axum::Json(describe(&state, &record))).into_response())
}

fn seconds(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let count: u64 = text[..split].parse().ok()?;
    let unit = match &text[split..] {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        _ => return None,
    };
    Some(count * unit)
}

/// `GET /v1/audience-syncs`
pub async fn list_syncs(_: Admin, State(state): State<AppState>) -> Result<Response, Problem> {
    let syncs: Vec<Value> = state
        .store
        .outbox
        .syncs()
        .iter()
        .map(|record| describe(&state, record))
        .collect();
    Ok(axum::Json(json!({ "audience_syncs": syncs })).into_response())
}

/// `DELETE /v1/audience-syncs/{id}`: changes not yet batched are dropped;
/// batches made are still delivered.
pub async fn delete_sync(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let record = state.store.outbox.sync(&id).ok_or_else(|| {
        Problem::not_found(format!(
            "no audience sync {id}; list them with GET /v1/audience-syncs"
        ))
    })?;
    state.store.outbox.delete_sync(&record.id)?;
    Ok(axum::Json(json!({"id": record.id, "deleted": true})).into_response())
}
