//! `POST /v1/profiles/import`: bulk CRM records — traits keyed by one
//! identifier — become `identify` events of a source named after the import
//! (default `crm-import`), so they merge into profiles by the identity rules,
//! win or lose against other traits by event time (a `timestamp` column, else
//! the import time) and source precedence, and survive restarts like any
//! event. `kairos import --traits` sends files through this endpoint.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::AppState;
use crate::admin::JsonBody;
use crate::auth::Admin;
use crate::internal::append_internal;
use crate::privacy::addressed_to;
use crate::problem::Problem;

/// Most records in one request; the CLI sends files in batches.
pub const IMPORT_RECORDS_MAX: usize = 10_000;
const DEFAULT_SOURCE: &str = "crm-import";
const BUILT_IN_TYPES: [&str; 4] = ["user_id", "anonymous_id", "email", "phone"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraitImport {
    /// The identifier type that keys each record: a column of that name.
    identifier_type: String,
    /// Name of the source the records belong to.
    source: Option<String>,
    records: Vec<Map<String, Value>>,
}

pub async fn import_traits(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(import): JsonBody<TraitImport>,
) -> Result<Response, Problem> {
    let kind = import.identifier_type.trim().to_lowercase();
    let rules = state.engine.rules();
    if !BUILT_IN_TYPES.contains(&kind.as_str()) && !rules.custom_types.contains(&kind) {
        return Err(Problem::bad_request(
            "identifier_type_unknown",
            format!(
                "identifier_type {kind:?} is not user_id, anonymous_id, email, phone or a custom type declared in identity.custom_types"
            ),
        ));
    }
    if import.records.is_empty() || import.records.len() > IMPORT_RECORDS_MAX {
        return Err(Problem::bad_request(
            "records_count_invalid",
            format!("send 1 to {IMPORT_RECORDS_MAX} records per request"),
        ));
    }
    let source = import.source.unwrap_or_else(|| DEFAULT_SOURCE.to_string());
    let mut events = Vec::with_capacity(import.records.len());
    let mut missing = Vec::new();
    for (index, record) in import.records.into_iter().enumerate() {
        match identify_event(&kind, record) {
            Some(event) => events.push((index, event)),
            None => missing.push(index),
        }
    }
    let (indexes, events): (Vec<usize>, Vec<Value>) = events.into_iter().unzip();
    let rows = indexes.len() + missing.len();
    let outcome = append_internal(&state, &source, events).await?;
    let mut rejected: Vec<Value> = missing
        .into_iter()
        .map(|row| json!({"row": row, "errors": format!("the record has no {kind:?} value")}))
        .collect();
    rejected.extend(
        outcome
            .rejected
            .iter()
            .map(|record| json!({"row": indexes[record.index], "errors": record.errors})),
    );
    rejected.sort_by_key(|row| row["row"].as_u64());
    Ok(axum::Json(json!({
        "rows": rows,
        "accepted": outcome.accepted,
        "duplicates": outcome.duplicates,
        "suppressed": outcome.suppressed,
        "rejected": rejected,
    }))
    .into_response())
}

/// The identify event of one record; `None` without a key value.
fn identify_event(kind: &str, mut record: Map<String, Value>) -> Option<Value> {
    record.retain(|_, value| !value.is_null() && value.as_str() != Some(""));
    let key = match record.get(kind)? {
        Value::String(text) => text.trim().to_string(),
        Value::Number(number) => number.to_string(),
        _ => return None,
    };
    if key.is_empty() {
        return None;
    }
    let timestamp = record.remove("timestamp");
    if matches!(kind, "user_id" | "anonymous_id") {
        record.remove(kind);
    }
    let mut event = addressed_to(&kairos_core::identity::Identifier::new(kind, &key));
    event["type"] = json!("identify");
    event["traits"] = Value::Object(record);
    if let Some(timestamp) = timestamp {
        event["timestamp"] = timestamp;
    }
    Some(event)
}
