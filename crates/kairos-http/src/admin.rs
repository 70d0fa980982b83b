//! The admin API: sources and keys, the event log, quarantine, live tail,
//! and (with `--test-faults`) forced failures for retry tests.

use std::convert::Infallible;

use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream, StreamExt};
use kairos_core::normalize::{Arrival, normalize_event};
use kairos_core::tracking_plan::TrackingPlanSpec;
use kairos_store::{Appended, QuarantineRecord, SourceRecord};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use serde_json::value::RawValue;

use crate::AppState;
use crate::auth::Admin;
use crate::problem::{EventProblem, Problem};

/// Largest admin request body.
pub const ADMIN_BODY_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Largest model registration: a model is its trees or its ONNX file.
pub const MODEL_BODY_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Largest page of events or quarantine records.
pub const PAGE_LIMIT_MAX: usize = 1000;
/// Most quarantined events one bulk replay call handles.
const REPLAY_BATCH_MAX: usize = 1000;

/// A JSON body parsed whatever its Content-Type, with problem+json errors;
/// bodies over `LIMIT` bytes are refused while reading (never buffered
/// whole).
pub struct JsonBody<T, const LIMIT: usize = ADMIN_BODY_BYTES_MAX>(pub T);

impl<T: DeserializeOwned, S: Send + Sync, const LIMIT: usize> FromRequest<S>
    for JsonBody<T, LIMIT>
{
    type Rejection = Problem;

    async fn from_request(request: Request, _: &S) -> Result<Self, Problem> {
        let too_large = || {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request_too_large",
                "Request too large",
                format!("this request's body is limited to {LIMIT} bytes"),
            )
        };
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok()?.parse::<usize>().ok());
        if declared.is_some_and(|length| length > LIMIT) {
            return Err(too_large());
        }
        let bytes: Bytes = axum::body::to_bytes(request.into_body(), LIMIT)
            .await
            .map_err(|error| {
                let over_limit = std::error::Error::source(&error)
                    .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
                if over_limit {
                    too_large()
                } else if let Some(problem) = crate::body::timeout_problem(&error) {
                    problem
                } else {
                    Problem::bad_request("body_unreadable", error.to_string())
                }
            })?;
        let body: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        let mut deserializer = serde_json::Deserializer::from_slice(body);
        let value = serde_path_to_error::deserialize(&mut deserializer).map_err(body_problem)?;
        deserializer.end().map_err(|error| {
            Problem::bad_request(
                "json_invalid",
                format!("the body is not valid JSON: {error}"),
            )
        })?;
        Ok(JsonBody(value))
    }
}

/// Names the field at fault, or says the body is not JSON at all.
fn body_problem(error: serde_path_to_error::Error<serde_json::Error>) -> Problem {
    let path = error.path().to_string();
    let inner = error.into_inner();
    if inner.is_syntax() || inner.is_eof() {
        return Problem::bad_request(
            "json_invalid",
            format!("the body is not valid JSON: {inner}"),
        );
    }
    let field = if path == "." {
        "the body".to_string()
    } else {
        format!("field `{path}`")
    };
    Problem::bad_request("body_invalid", format!("{field}: {inner}"))
}

fn created<T: Serialize>(value: &T) -> Response {
    (StatusCode::CREATED, axum::Json(value)).into_response()
}

fn json_text(text: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], text).into_response()
}

// --- sources -------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSource {
    name: String,
    #[serde(default)]
    tracking_plan: Option<TrackingPlanSpec>,
    /// "client" (default: the key sits in a web page) or "server".
    #[serde(default)]
    trust: kairos_store::SourceTrust,
    /// Its product events create and update catalog items (server only).
    #[serde(default)]
    items_from_events: bool,
}

pub async fn create_source(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CreateSource>,
) -> Result<Response, Problem> {
    if body.items_from_events && body.trust != kairos_store::SourceTrust::Server {
        return Err(Problem::bad_request(
            "source_invalid",
            "items_from_events: only a server source may create items from its events (a client write key is public: anyone could set any name or price); add \"trust\": \"server\", or send items to POST /v1/items",
        ));
    }
    let mut record = state.store.sources.create(
        &body.name,
        body.tracking_plan,
        body.trust,
        state.clock.now(),
    )?;
    if body.items_from_events {
        record = state
            .store
            .sources
            .set_items_from_events(&record.id, true)?;
    }
    tracing::info!(source = %record.id, name = %record.name, "source created");
    Ok(created(&record))
}

pub async fn list_sources(_: Admin, State(state): State<AppState>) -> Response {
    axum::Json(json!({"sources": state.store.sources.list()})).into_response()
}

fn existing_source(state: &AppState, id: &str) -> Result<SourceRecord, Problem> {
    state
        .store
        .sources
        .get(id)
        .map(|source| source.record.clone())
        .ok_or_else(|| {
            Problem::not_found(format!(
                "no source with id {id:?}; list them with GET /v1/admin/sources"
            ))
        })
}

pub async fn get_source(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    Ok(axum::Json(existing_source(&state, &id)?).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RotateKey {
    /// How long the old key keeps working (0: revoked at once).
    #[serde(default)]
    grace_seconds: u32,
}

pub async fn rotate_source(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<RotateKey>,
) -> Result<Response, Problem> {
    existing_source(&state, &id)?;
    let grace = jiff::SignedDuration::from_secs(i64::from(body.grace_seconds));
    let record = state.store.sources.rotate(&id, grace, state.clock.now())?;
    // Pages opened with the old key reconnect with the new one.
    if let Some(deliverer) = &state.deliverer {
        deliverer.hub().close_source(&id);
    }
    tracing::info!(source = %id, grace_seconds = body.grace_seconds, "write key rotated");
    Ok(axum::Json(record).into_response())
}

/// `POST /v1/admin/sources/{id}/identity-secret/rotate`: a new secret for
/// identity tokens; streams opened with tokens of the old one close.
pub async fn rotate_identity_secret(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    existing_source(&state, &id)?;
    let record = state.store.sources.rotate_identity_secret(&id)?;
    if let Some(deliverer) = &state.deliverer {
        deliverer.hub().close_source(&id);
    }
    tracing::info!(source = %id, "identity secret rotated");
    Ok(axum::Json(record).into_response())
}

pub async fn put_tracking_plan(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(plan): JsonBody<TrackingPlanSpec>,
) -> Result<Response, Problem> {
    existing_source(&state, &id)?;
    Ok(axum::Json(state.store.sources.set_tracking_plan(&id, Some(plan))?).into_response())
}

pub async fn delete_tracking_plan(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    existing_source(&state, &id)?;
    Ok(axum::Json(state.store.sources.set_tracking_plan(&id, None)?).into_response())
}

// --- the log -------------------------------------------------------------

#[derive(Deserialize)]
pub struct PageQuery {
    limit: Option<String>,
    after: Option<String>,
    source: Option<String>,
}

struct Page {
    limit: usize,
    after: u64,
}

fn page(query: &PageQuery) -> Result<Page, Problem> {
    let limit = match query.limit.as_deref() {
        None => 100,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|limit| (1..=PAGE_LIMIT_MAX).contains(limit))
            .ok_or_else(|| {
                Problem::bad_request(
                    "limit_invalid",
                    format!("limit must be a whole number from 1 to {PAGE_LIMIT_MAX}"),
                )
            })?,
    };
    let after = match query.after.as_deref() {
        None | Some("") => 0,
        Some(text) => text.parse::<u64>().map_err(|_| {
            Problem::bad_request(
                "cursor_invalid",
                "after must be the `next` cursor of a previous page",
            )
        })?,
    };
    Ok(Page { limit, after })
}

/// `GET /v1/admin/events`: accepted events in log order.
pub async fn list_events(
    _: Admin,
    State(state): State<AppState>,
    Query(query): Query<PageQuery>,
) -> Result<Response, Problem> {
    let page = page(&query)?;
    let events = state.store.log.read_after(
        page.after,
        state.store.writer.committed_seq(),
        page.limit,
        query.source.as_deref(),
    )?;
    let next = match events.last() {
        Some(last) if events.len() == page.limit => format!("\"{}\"", last.seq),
        _ => "null".to_string(),
    };
    let body: Vec<String> = events.iter().map(|event| event.to_json()).collect();
    Ok(json_text(format!(
        "{{\"events\":[{}],\"next\":{next}}}",
        body.join(",")
    )))
}

// --- quarantine ----------------------------------------------------------

pub async fn list_quarantine(
    _: Admin,
    State(state): State<AppState>,
    Query(query): Query<PageQuery>,
) -> Result<Response, Problem> {
    let page = page(&query)?;
    let items = state
        .store
        .quarantine
        .list(page.after, page.limit, query.source.as_deref())?;
    let next = (items.len() == page.limit)
        .then(|| items.last().map(|item| item.id.to_string()))
        .flatten();
    // Serialized straight from the records: a quarantined event is kept as raw
    // JSON of any depth and must never be rebuilt as a JSON tree.
    Ok(axum::Json(QuarantinePage {
        items: &items,
        next,
    })
    .into_response())
}

#[derive(Serialize)]
struct QuarantinePage<'a> {
    items: &'a [QuarantineRecord],
    next: Option<String>,
}

fn quarantine_id(text: &str) -> Result<u64, Problem> {
    text.parse().map_err(|_| {
        Problem::bad_request(
            "id_invalid",
            "a quarantine id is the number in the record's `id`",
        )
    })
}

fn existing_record(state: &AppState, id: u64) -> Result<QuarantineRecord, Problem> {
    state
        .store
        .quarantine
        .get(id)?
        .ok_or_else(|| Problem::not_found(format!("no quarantined event with id {id}")))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ReplayOne {
    /// A corrected event to use instead of the one quarantined.
    #[serde(default)]
    event: Option<Box<RawValue>>,
}

#[derive(Serialize)]
struct ReplayOutcome {
    id: u64,
    status: &'static str,
    seq: Option<u64>,
}

/// Re-validates one quarantined event under the source's current plan.
async fn replay(
    state: &AppState,
    record: QuarantineRecord,
    corrected: Option<Box<RawValue>>,
) -> Result<ReplayOutcome, Vec<EventProblem>> {
    let source = state.store.sources.get(&record.source_id).ok_or_else(|| {
        vec![EventProblem {
            index: record.index,
            field: String::new(),
            message: format!("source {} no longer exists", record.source_id),
        }]
    })?;
    let raw = corrected.unwrap_or(record.event);
    let arrival = Arrival {
        source_id: &record.source_id,
        received_at: record.received_at,
        batch_sent_at: record.batch_sent_at,
        path_type: record.path_type,
        limits: &state.limits,
        plan: source.plan.as_ref(),
    };
    let event = normalize_event(&raw, &arrival).map_err(|errors| {
        EventProblem::from_field_errors(record.index, &errors).collect::<Vec<_>>()
    })?;
    let receipt = state
        .store
        .writer
        .append(
            state
                .store
                .prepare(&event, state.engine.rules())
                .into_iter()
                .collect(),
            Vec::new(),
            vec![record.id],
        )
        .await
        .map_err(|error| {
            vec![EventProblem {
                index: record.index,
                field: String::new(),
                message: format!("storage: {error}"),
            }]
        })?;
    // No record: the event names an erased person and was dropped.
    Ok(
        match receipt
            .appended
            .first()
            .copied()
            .unwrap_or(Appended::Suppressed)
        {
            Appended::Suppressed => ReplayOutcome {
                id: record.id,
                status: "suppressed",
                seq: None,
            },
            Appended::Stored(seq) => ReplayOutcome {
                id: record.id,
                status: "accepted",
                seq: Some(seq),
            },
            Appended::Duplicate(seq) => ReplayOutcome {
                id: record.id,
                status: "duplicate",
                seq: Some(seq),
            },
        },
    )
}

pub async fn replay_quarantined(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ReplayOne>,
) -> Result<Response, Problem> {
    let record = existing_record(&state, quarantine_id(&id)?)?;
    match replay(&state, record, body.event).await {
        Ok(outcome) => Ok(axum::Json(outcome).into_response()),
        Err(problems) => Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "still_invalid",
            "Event still invalid",
            "the event is still invalid; it stays in quarantine. Send a corrected event as {\"event\": {...}} or fix the tracking plan",
        )
        .with_errors(problems)),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ReplayAll {
    #[serde(default)]
    source_id: Option<String>,
}

pub async fn replay_all_quarantine(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<ReplayAll>,
) -> Result<Response, Problem> {
    let records = state
        .store
        .quarantine
        .list(0, REPLAY_BATCH_MAX, body.source_id.as_deref())?;
    let (mut accepted, mut duplicates, mut still_invalid) = (0, 0, Vec::new());
    let considered = records.len();
    for record in records {
        let id = record.id;
        match replay(&state, record, None).await {
            Ok(outcome) if outcome.status == "accepted" => accepted += 1,
            Ok(_) => duplicates += 1,
            Err(errors) => still_invalid.push(json!({"id": id, "errors": errors})),
        }
    }
    Ok(axum::Json(json!({
        "considered": considered,
        "accepted": accepted,
        "duplicates": duplicates,
        "still_invalid": still_invalid,
        "more": considered == REPLAY_BATCH_MAX,
    }))
    .into_response())
}

pub async fn discard_quarantined(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let record = existing_record(&state, quarantine_id(&id)?)?;
    state
        .store
        .writer
        .append(Vec::new(), Vec::new(), vec![record.id])
        .await?;
    tracing::info!(id = record.id, source = %record.source_id, "quarantined event discarded");
    Ok(axum::Json(json!({"discarded": record.id})).into_response())
}

// --- live tail -----------------------------------------------------------

#[derive(Deserialize)]
pub struct TailQuery {
    source: Option<String>,
    /// Start after this sequence number instead of at the end of the log.
    after: Option<u64>,
}

/// Events read from the log per step of the tail.
const TAIL_READ_MAX: usize = 500;

/// `GET /v1/admin/tail`: every accepted event as Server-Sent Events, read
/// from the log behind the commit point, so a slow reader never loses any.
pub async fn tail(
    _: Admin,
    State(state): State<AppState>,
    Query(query): Query<TailQuery>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let committed = state.store.writer.committed();
    let cursor = query.after.unwrap_or(*committed.borrow());
    let steps = stream::unfold(
        (state, committed, cursor, query.source),
        |(state, mut committed, mut cursor, source)| async move {
            loop {
                let durable = *committed.borrow_and_update();
                let events = match state.store.log.read_after(
                    cursor,
                    durable,
                    TAIL_READ_MAX,
                    source.as_deref(),
                ) {
                    Ok(events) => events,
                    Err(error) => {
                        tracing::error!(%error, "tail read failed");
                        return None;
                    }
                };
                if events.len() < TAIL_READ_MAX {
                    cursor = cursor.max(durable);
                }
                if let Some(last) = events.last() {
                    cursor = cursor.max(last.seq);
                    let batch: Vec<Result<SseEvent, Infallible>> = events
                        .iter()
                        .map(|event| {
                            Ok(SseEvent::default()
                                .id(event.seq.to_string())
                                .event("event")
                                .data(event.to_json()))
                        })
                        .collect();
                    return Some((stream::iter(batch), (state, committed, cursor, source)));
                }
                if committed.changed().await.is_err() {
                    return None;
                }
            }
        },
    );
    Sse::new(steps.flatten()).keep_alive(KeepAlive::default())
}

// --- test faults ---------------------------------------------------------

/// Forced answers for the next collection requests (only with `--test-faults`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultPlan {
    pub fail_next: u32,
    #[serde(default = "default_fault_status")]
    pub status: u16,
    #[serde(default)]
    pub retry_after_seconds: Option<u64>,
    /// Store the events first, then answer with the failure, as when a
    /// response is lost after a commit: the retry must be deduplicated.
    #[serde(default)]
    pub after_commit: bool,
}

fn default_fault_status() -> u16 {
    503
}

impl FaultPlan {
    pub fn response(&self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        crate::collect::status_response(status, self.retry_after_seconds)
    }
}

/// Takes one forced failure, if any are left.
pub(crate) fn take_fault(state: &AppState) -> Option<FaultPlan> {
    let mut slot = state.faults.as_ref()?.lock().expect("fault lock");
    let plan = slot.as_mut()?;
    if plan.fail_next == 0 {
        return None;
    }
    plan.fail_next -= 1;
    Some(plan.clone())
}

pub async fn set_faults(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(plan): JsonBody<FaultPlan>,
) -> Result<Response, Problem> {
    let Some(faults) = state.faults.as_ref() else {
        return Err(Problem::not_found(
            "test faults are off; start the server with --test-faults to use this endpoint",
        ));
    };
    if !(400..=599).contains(&plan.status) {
        return Err(Problem::bad_request(
            "status_invalid",
            "status must be an HTTP error status (400-599)",
        ));
    }
    *faults.lock().expect("fault lock") = Some(plan.clone());
    Ok(axum::Json(json!({"fail_next": plan.fail_next, "status": plan.status})).into_response())
}
