//! Collection endpoints, compatible with the Segment HTTP Tracking API and
//! RudderStack's, so existing SDKs work by changing only their host.
//!
//! The status rule (see docs/api.md): 200 when anything was accepted or every
//! event was already stored; 400 only when every event of the request is
//! invalid (SDKs drop 4xx without retry, so a 400 must mean "this can never
//! succeed"); 503/500 when storage could not take it (SDKs retry).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, post};
use jiff::Timestamp;
use kairos_core::EventType;
use kairos_core::normalize::{Arrival, FieldError, normalize_event};
use kairos_core::request::{CollectRequest, RequestError, parse_batch, parse_single};
use kairos_store::sources::Source;
use kairos_store::{Appended, LogRecord, QuarantineEntry};
use serde::Serialize;
use serde_json::json;

use crate::AppState;
use crate::auth::{basic_write_key, query_write_key};
use crate::body::read_body;
use crate::problem::{EventProblem, Problem};

/// The answer to a successful collection request.
#[derive(Debug, Serialize)]
pub struct CollectResponse {
    pub success: bool,
    /// Events newly appended to the log.
    pub accepted: usize,
    /// Events already in the log (same source and messageId).
    pub duplicates: usize,
    /// Events dropped because they carry an identifier of an erased person
    /// (suppressed; counted, never stored).
    #[serde(skip_serializing_if = "is_zero")]
    pub suppressed: usize,
    /// Invalid events, kept in quarantine with these reasons.
    pub quarantined: Vec<QuarantinedEvent>,
}

fn is_zero(count: &usize) -> bool {
    *count == 0
}

#[derive(Debug, Serialize)]
pub struct QuarantinedEvent {
    pub index: usize,
    pub errors: Vec<FieldError>,
}

#[derive(Debug, Clone, Copy)]
enum Shape {
    Batch,
    Single(EventType),
}

/// `POST /v1/batch` and its aliases.
pub async fn batch(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    collect(&state, Shape::Batch, query.as_deref(), &headers, body).await
}

/// `POST /v1/track` and the other single-event endpoints.
pub fn single(event_type: EventType) -> MethodRouter<AppState> {
    post(
        move |State(state): State<AppState>,
              RawQuery(query): RawQuery,
              headers: HeaderMap,
              body: Body| async move {
            collect(
                &state,
                Shape::Single(event_type),
                query.as_deref(),
                &headers,
                body,
            )
            .await
        },
    )
}

async fn collect(
    state: &AppState,
    shape: Shape,
    query: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let result = match &state.ingest_runtime {
        // Parsing, validating and sealing run on the ingest runtime's
        // lower-priority threads, so profile reads and other short requests
        // on the main runtime are not queued behind large batches.
        Some(runtime) => {
            let (task_state, query, headers) =
                (state.clone(), query.map(str::to_string), headers.clone());
            runtime
                .spawn(async move {
                    ingest(&task_state, shape, query.as_deref(), &headers, body).await
                })
                .await
                .unwrap_or_else(|error| Err(Problem::internal("ingest task", error)))
        }
        None => ingest(state, shape, query, headers, body).await,
    };
    match result {
        Ok(response) => response,
        Err(problem) => {
            state.metrics.reject_request(problem.code);
            problem.into_response()
        }
    }
}

async fn ingest(
    state: &AppState,
    shape: Shape,
    query: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let received_at = state.clock.now();
    // Precedence: Authorization header, then the body's writeKey, then the
    // query. A header key is checked before the body is even read.
    let early_source = match basic_write_key(headers) {
        Some(key) => Some(source_for(state, &key, received_at)?),
        None => None,
    };
    let bytes = read_body(headers, body, state.limits.request_bytes_max).await?;
    state.metrics.request_bytes.observe(bytes.len() as f64);
    let request = match shape {
        Shape::Batch => parse_batch(&bytes, &state.limits),
        Shape::Single(_) => parse_single(&bytes),
    }
    .map_err(request_problem)?;
    let source = match early_source {
        Some(source) => source,
        None => {
            let key = request
                .write_key
                .clone()
                .or_else(|| query_write_key(query))
                .ok_or_else(Problem::missing_write_key)?;
            source_for(state, &key, received_at)?
        }
    };
    state
        .metrics
        .batch_events
        .observe(request.events.len() as f64);
    let path_type = match shape {
        Shape::Single(event_type) => Some(event_type),
        Shape::Batch => None,
    };
    let mut checked = check_events(state, &source, &request, path_type, received_at);
    let fault = crate::admin::take_fault(state);
    if let Some(fault) = fault.as_ref().filter(|fault| !fault.after_commit) {
        return Ok(fault.response());
    }
    let learned = std::mem::take(&mut checked.items);
    let outcome = append(state, checked).await?;
    state.engine.shelf().learn(&state.store, learned);
    if let Some(fault) = fault {
        return Ok(fault.response());
    }
    Ok(outcome)
}

fn source_for(state: &AppState, write_key: &str, now: Timestamp) -> Result<Arc<Source>, Problem> {
    state
        .store
        .sources
        .by_write_key(write_key, now)
        .ok_or_else(Problem::unknown_write_key)
}

fn request_problem(error: RequestError) -> Problem {
    let code = match error {
        RequestError::NotJson(_) => "json_invalid",
        RequestError::NotObject(_) => "body_shape_invalid",
        RequestError::MissingBatch => "batch_missing",
        RequestError::TooManyEvents { .. } => "batch_too_many_events",
        RequestError::BadSentAt(_) => "sent_at_invalid",
    };
    Problem::bad_request(code, error.to_string())
}

/// The events of one request, sorted into accepted and quarantined.
struct CheckedEvents {
    records: Vec<LogRecord>,
    quarantine: Vec<QuarantineEntry>,
    /// Dropped: they carry an identifier of an erased person.
    suppressed: usize,
    total: usize,
    /// Catalog items the events describe (sources with
    /// `items_from_events` only).
    items: Vec<kairos_recommend::Item>,
}

fn check_events(
    state: &AppState,
    source: &Source,
    request: &CollectRequest,
    path_type: Option<EventType>,
    received_at: Timestamp,
) -> CheckedEvents {
    let arrival = Arrival {
        source_id: &source.record.id,
        received_at,
        batch_sent_at: request.sent_at,
        path_type,
        limits: &state.limits,
        plan: source.plan.as_ref(),
    };
    let mut checked = CheckedEvents {
        records: Vec::with_capacity(request.events.len()),
        quarantine: Vec::new(),
        suppressed: 0,
        total: request.events.len(),
        items: Vec::new(),
    };
    for (index, raw) in request.events.iter().enumerate() {
        match normalize_event(raw, &arrival) {
            Ok(event) => match state.store.prepare(&event, state.engine.rules()) {
                Some(record) if source.record.items_from_events => {
                    checked.items.extend(item_described(&event));
                    checked.records.push(record);
                }
                Some(record) => checked.records.push(record),
                None => checked.suppressed += 1,
            },
            Err(errors) => {
                for error in &errors {
                    state.metrics.reject_event(&error.field);
                }
                checked.quarantine.push(QuarantineEntry {
                    subject: kairos_store::quarantine::quarantine_subject(
                        &state.store.vault,
                        raw,
                        state.engine.rules(),
                    ),
                    source_id: source.record.id.clone(),
                    received_at,
                    index,
                    errors,
                    event: (*raw).to_owned(),
                    batch_sent_at: request.sent_at,
                    path_type,
                });
            }
        }
    }
    checked
}

/// The catalog item a product event describes, if any.
fn item_described(event: &kairos_core::Event) -> Option<kairos_recommend::Item> {
    let described = matches!(
        event.event.as_deref(),
        Some("Product Viewed" | "Product Clicked" | "Product Added")
    );
    if !described || event.event_type != EventType::Track {
        return None;
    }
    let properties = kairos_core::event::EventProperties::of(event);
    kairos_recommend::Item::from_properties(properties.get())
}

async fn append(state: &AppState, checked: CheckedEvents) -> Result<Response, Problem> {
    let quarantined: Vec<QuarantinedEvent> = checked
        .quarantine
        .iter()
        .map(|entry| QuarantinedEvent {
            index: entry.index,
            errors: entry.errors.clone(),
        })
        .collect();
    state
        .metrics
        .ingest_queue_depth
        .set(state.store.writer.queue_depth() as i64);
    let receipt = state
        .store
        .writer
        .append(checked.records, checked.quarantine, Vec::new())
        .await?;
    let metrics = &state.metrics;
    metrics
        .log_append_seconds
        .observe(receipt.write_time.as_secs_f64());
    metrics
        .log_fsync_seconds
        .observe(receipt.fsync_time.as_secs_f64());
    metrics
        .log_group_requests
        .observe(receipt.group_requests as f64);
    let accepted = receipt
        .appended
        .iter()
        .filter(|outcome| matches!(outcome, Appended::Stored(_)))
        .count();
    let suppressed = checked.suppressed
        + receipt
            .appended
            .iter()
            .filter(|outcome| matches!(outcome, Appended::Suppressed))
            .count();
    let duplicates = receipt
        .appended
        .iter()
        .filter(|outcome| matches!(outcome, Appended::Duplicate(_)))
        .count();
    metrics.events_suppressed.inc_by(suppressed as u64);
    metrics.events_accepted.inc_by(accepted as u64);
    metrics.events_deduplicated.inc_by(duplicates as u64);
    metrics.events_quarantined.inc_by(quarantined.len() as u64);
    if quarantined.len() == checked.total && checked.total > 0 {
        let problems = quarantined
            .iter()
            .flat_map(|event| EventProblem::from_field_errors(event.index, &event.errors))
            .collect();
        let detail = format!(
            "all {} events are invalid and were quarantined; `errors` names each event's index, field and problem. Fix them and resend, or replay them from the quarantine",
            checked.total
        );
        return Err(Problem::bad_request("events_invalid", detail).with_errors(problems));
    }
    Ok(Json(CollectResponse {
        success: true,
        accepted,
        duplicates,
        suppressed,
        quarantined,
    })
    .into_response())
}

/// `GET /v1/projects/{writeKey}/settings`: what `@segment/analytics-next`
/// loads first. Points the SDK's Segment.io destination back at this server.
pub async fn segment_settings(
    State(state): State<AppState>,
    Path(write_key): Path<String>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
) -> Response {
    if state
        .store
        .sources
        .by_write_key(&write_key, state.clock.now())
        .is_none()
    {
        return Problem::unknown_write_key().into_response();
    }
    let peer = peer.map(|Extension(ConnectInfo(address))| address.ip());
    let (protocol, host) = crate::access::public_origin(&headers, peer, &state.access);
    Json(json!({
        "integrations": {
            "Segment.io": {
                "apiKey": write_key,
                "apiHost": format!("{host}/v1"),
                "protocol": protocol,
                "unbundledIntegrations": [],
                "addBundledMetadata": true,
                "maybeBundledConfigIds": {},
            }
        },
        "plan": {"track": {"__default": {"enabled": true, "integrations": {}}}, "identify": {"__default": {"enabled": true}}, "group": {"__default": {"enabled": true}}},
        "edgeFunction": {},
        "analyticsNextEnabled": true,
        "middlewareSettings": {},
        "enabledMiddleware": {},
        "metrics": {"sampleRate": 0},
        "legacyVideoPluginsEnabled": false,
        "remotePlugins": [],
    }))
    .into_response()
}

/// `GET /sourceConfig?writeKey=`: what `@rudderstack/analytics-js` loads first.
pub async fn rudder_source_config(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let Some(key) = basic_write_key(&headers).or_else(|| query_write_key(query.as_deref())) else {
        return Problem::missing_write_key().into_response();
    };
    let Some(source) = state.store.sources.by_write_key(&key, state.clock.now()) else {
        return Problem::unknown_write_key().into_response();
    };
    let record = &source.record;
    Json(json!({
        "isHosted": false,
        "source": {
            "config": {"statsCollection": {"errors": {"enabled": false}, "metrics": {"enabled": false}}},
            "id": record.id,
            "name": record.name,
            "writeKey": key,
            "workspaceId": "kairos",
            "enabled": true,
            "deleted": false,
            "createdAt": record.created_at,
            "updatedAt": record.created_at,
            "sourceDefinition": {"id": "kairos", "name": "Javascript", "category": "webapp"},
            "destinations": [],
        }
    }))
    .into_response()
}

/// Used by the fault switch to answer like an overloaded or broken server.
pub fn status_response(status: StatusCode, retry_after_seconds: Option<u64>) -> Response {
    let mut problem = Problem::new(
        status,
        "test_fault",
        "Injected test fault",
        "this answer was forced by POST /v1/admin/test/faults",
    );
    problem.retry_after_seconds = retry_after_seconds;
    problem.into_response()
}
