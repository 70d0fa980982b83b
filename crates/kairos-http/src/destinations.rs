//! Operating a destination after it is created (docs/journeys.md,
//! "Operating destinations"):
//!
//! - `GET /v1/destinations/{id}`: the destination (never its secrets),
//!   its header names, the rotation under way and its dead letters;
//! - `PATCH /v1/destinations/{id}` `{"url", "from", "headers",
//!   "rotate_secret", "secret_overlap", "enabled"}`: every field optional;
//!   the address is checked as at creation; a rotation answers the new
//!   secret once and keeps signing with the old one too during the overlap;
//!   `"enabled": true` resumes a destination disabled by a 410;
//! - `POST /v1/destinations/{id}/dead-letters/replay`: every dead letter of
//!   the destination queued again (same ids), to its address now.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use jiff::{SignedDuration, Timestamp};
use kairos_store::DestinationRecord;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::admin::JsonBody;
use crate::auth::Admin;
use crate::journeys::{checked_destination, describe_destination, requeue};
use crate::problem::Problem;

/// How long the old secret still signs after a rotation, unless told: a
/// day lets receivers deploy the new one without a window of failures.
const SECRET_OVERLAP_DEFAULT: SignedDuration = SignedDuration::from_hours(24);
/// The longest overlap: two valid secrets for long defeats rotating.
const SECRET_OVERLAP_MAX: SignedDuration = SignedDuration::from_hours(30 * 24);
/// Extra headers per destination, and the size of each value: enough for
/// API keys and routing headers, not a way to send a payload.
const HEADERS_MAX: usize = 20;
const HEADER_VALUE_BYTES_MAX: usize = 1_000;
/// Headers Kairos sets itself (the protocol's, and the transport's).
const RESERVED_HEADERS: [&str; 9] = [
    "content-type",
    "content-length",
    "host",
    "user-agent",
    "connection",
    "transfer-encoding",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];
/// Dead letters replayed per call; more: call again.
const REPLAY_MAX: usize = 10_000;

fn not_found(id: &str) -> Problem {
    Problem::not_found(format!(
        "no destination {id}; list them with GET /v1/destinations"
    ))
}

fn existing(state: &AppState, id: &str) -> Result<DestinationRecord, Problem> {
    state
        .store
        .outbox
        .destination(id)
        .ok_or_else(|| not_found(id))
}

/// A destination with what an operator looks at: header names (values
/// may be credentials), the rotation under way, dead letters waiting.
fn describe(state: &AppState, record: &DestinationRecord) -> Result<Value, Problem> {
    let mut answer = describe_destination(record);
    answer["headers"] = json!(record.headers.keys().collect::<Vec<_>>());
    answer["previous_secret_valid_until"] = json!(
        record
            .previous_secret_until
            // Signing is part of an attempt: on the system clock.
            .filter(|until| *until > Timestamp::now())
    );
    answer["dead_letters"] = json!(state.store.outbox.dead_of(&record.id, REPLAY_MAX)?.len());
    Ok(answer)
}

/// `GET /v1/destinations/{id}`
pub async fn get_destination(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let record = existing(&state, &id)?;
    Ok(axum::Json(describe(&state, &record)?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EditDestination {
    url: Option<String>,
    from: Option<String>,
    /// Replaces every extra header (`{}` removes them).
    headers: Option<BTreeMap<String, String>>,
    /// A new signing secret, answered once.
    #[serde(default)]
    rotate_secret: bool,
    /// How long the old secret signs too: "24h" (default), "0s" for none.
    secret_overlap: Option<String>,
    /// `true`: deliveries resume (after a 410 disabled the destination).
    enabled: Option<bool>,
}

/// `PATCH /v1/destinations/{id}` (also `PUT`)
pub async fn edit_destination(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<EditDestination>,
) -> Result<Response, Problem> {
    let current = existing(&state, &id)?;
    let url = body.url.as_deref().map(str::trim).unwrap_or(&current.url);
    let from = body.from.as_deref().or(current.from.as_deref());
    checked_destination(&state, &current.kind, url, from).await?;
    if let Some(headers) = &body.headers {
        checked_headers(&current.kind, headers)?;
    }
    if body.enabled == Some(false) {
        return Err(Problem::bad_request(
            "enabled_invalid",
            "only \"enabled\": true (resume after a 410) is supported; to stop sending, delete the journeys that send here",
        ));
    }
    let overlap = overlap(body.rotate_secret, body.secret_overlap.as_deref())?;
    let secret = match body.rotate_secret {
        true => Some(kairos_store::outbox::new_secret()?),
        false => None,
    };
    // The overlap is read when attempts are signed: on the system clock.
    let now = Timestamp::now();
    let record = state
        .store
        .outbox
        .edit_destination(&current.id, |record| {
            record.url = url.to_string();
            record.from = from.map(str::to_string);
            if let Some(headers) = body.headers {
                record.headers = headers;
            }
            if let Some(secret) = secret.clone() {
                record.previous_secret = Some(std::mem::replace(&mut record.secret, secret));
                record.previous_secret_until = Some(now + overlap);
            }
            if body.enabled == Some(true) {
                record.disabled = None;
            }
        })?
        .ok_or_else(|| not_found(&id))?;
    if let Some(deliverer) = &state.deliverer {
        deliverer.wake();
    }
    let mut answer = describe(&state, &record)?;
    if secret.is_some() {
        // Like at creation: the only time this secret is shown.
        answer["secret"] = json!(record.secret);
    }
    Ok(axum::Json(answer).into_response())
}

/// The rotation's overlap; refused without a rotation to apply it to.
fn overlap(rotate: bool, text: Option<&str>) -> Result<SignedDuration, Problem> {
    let Some(text) = text else {
        return Ok(SECRET_OVERLAP_DEFAULT);
    };
    if !rotate {
        return Err(Problem::bad_request(
            "secret_overlap_invalid",
            "secret_overlap applies to a rotation: send it with \"rotate_secret\": true",
        ));
    }
    kairos_core::duration::parse_seconds(text)
        .and_then(|seconds| i64::try_from(seconds).ok())
        .map(SignedDuration::from_secs)
        .filter(|overlap| *overlap <= SECRET_OVERLAP_MAX)
        .ok_or_else(|| {
            Problem::bad_request(
                "secret_overlap_invalid",
                format!(
                    "secret_overlap {text:?}: expected a duration from \"0s\" to \"{}d\" (units s, m, h, d, w)",
                    SECRET_OVERLAP_MAX.as_hours() / 24
                ),
            )
        })
}

fn checked_headers(kind: &str, headers: &BTreeMap<String, String>) -> Result<(), Problem> {
    let invalid = |detail: String| Problem::bad_request("headers_invalid", detail);
    if kind != "webhook" && !headers.is_empty() {
        return Err(invalid(format!(
            "headers apply to webhook destinations; this one is {kind}"
        )));
    }
    if headers.len() > HEADERS_MAX {
        return Err(invalid(format!(
            "at most {HEADERS_MAX} headers per destination"
        )));
    }
    for (name, value) in headers {
        let lower = name.to_ascii_lowercase();
        if RESERVED_HEADERS.contains(&lower.as_str()) {
            return Err(invalid(format!(
                "{name:?} is set by Kairos itself; reserved: {RESERVED_HEADERS:?}"
            )));
        }
        if axum::http::HeaderName::from_bytes(name.as_bytes()).is_err()
            || axum::http::HeaderValue::from_str(value).is_err()
            || value.len() > HEADER_VALUE_BYTES_MAX
        {
            return Err(invalid(format!(
                "header {name:?}: a name of letters, digits and -, and a visible-ASCII value of at most {HEADER_VALUE_BYTES_MAX} bytes"
            )));
        }
    }
    Ok(())
}

/// `POST /v1/destinations/{id}/dead-letters/replay`: the destination's
/// dead letters, oldest first, queued again to its address now.
pub async fn replay_dead_letters(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let record = existing(&state, &id)?;
    if record.disabled.is_some() {
        return Err(Problem::conflict(
            "destination_disabled",
            format!(
                "{} is disabled ({}); re-enable it first with PATCH /v1/destinations/{} {{\"enabled\": true}}",
                record.name,
                record.disabled.as_deref().unwrap_or_default(),
                record.id
            ),
        ));
    }
    let mut dead = state.store.outbox.dead_of(&record.id, REPLAY_MAX + 1)?;
    let more = dead.len() > REPLAY_MAX;
    dead.truncate(REPLAY_MAX);
    for message in &mut dead {
        requeue(&state, message)?;
    }
    if let Some(deliverer) = &state.deliverer {
        deliverer.wake();
    }
    let ids: Vec<&str> = dead.iter().map(|message| message.id.as_str()).collect();
    Ok(axum::Json(
        json!({"destination": record.id, "replayed": ids.len(), "ids": ids, "more": more}),
    )
    .into_response())
}
