//! Destinations, journeys and deliveries (docs/journeys.md):
//!
//! - `POST /v1/destinations` `{"type": "webhook", "name", "url"}` → 201 with
//!   `"id"` and the `whsec_…` signing secret (shown once, never again);
//!   `GET /v1/destinations`, `DELETE /v1/destinations/{id}`;
//! - `POST /v1/journeys` `{"name", "trigger", "steps"}` → 201;
//!   `GET /v1/journeys`, `DELETE /v1/journeys/{id}`;
//! - `GET /v1/profiles/{type}:{value}/deliveries`: the messages sent about
//!   a person, with status, attempts and the last error;
//! - `GET /v1/admin/dead-letters`, `POST /v1/admin/dead-letters/{id}/replay`.

use std::convert::Infallible;

use axum::extract::{Path, Query, RawQuery, State};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use jiff::Timestamp;
use kairos_store::{DestinationRecord, Message, MessageStatus};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::admin::JsonBody;
use crate::auth::Admin;
use crate::definitions;
use crate::problem::{Problem, limit_param};
use crate::profiles::{identifier, unknown};
use crate::references;
use kairos_store::DefinitionKind;

const NAME_BYTES_MAX: usize = 200;
const URL_BYTES_MAX: usize = 2_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateDestination {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    /// Webhook: `http://…` or `https://…`; email: the SMTP server,
    /// `smtp://host:port`, `smtp://host:587?tls=starttls` or
    /// `smtps://host:465`.
    url: String,
    /// Email: the sender, `Shop <hello@shop.example>`.
    from: Option<String>,
}

/// A destination as listed: never its secret.
pub(crate) fn describe_destination(record: &DestinationRecord) -> Value {
    json!({
        "id": record.id, "name": record.name, "type": record.kind, "url": record.url,
        "from": record.from, "created_at": record.created_at, "disabled": record.disabled,
    })
}

fn checked_name(name: &str, what: &str) -> Result<(), Problem> {
    if name.trim().is_empty() || name.len() > NAME_BYTES_MAX {
        return Err(Problem::bad_request(
            "name_invalid",
            format!("a {what} needs a name of 1 to {NAME_BYTES_MAX} bytes"),
        ));
    }
    Ok(())
}

/// `POST /v1/destinations`
pub async fn create_destination(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CreateDestination>,
) -> Result<Response, Problem> {
    checked_name(&body.name, "destination")?;
    let url = body.url.trim();
    checked_destination(&state, &body.kind, url, body.from.as_deref()).await?;
    let record = state.store.outbox.create_destination(
        body.name.trim(),
        &body.kind,
        url,
        body.from.as_deref().map(str::trim),
        state.clock.now(),
    )?;
    if let Some(deliverer) = &state.deliverer {
        deliverer.wake();
    }
    let mut answer = describe_destination(&record);
    if record.kind == "webhook" {
        // The only time the secret is shown.
        answer["secret"] = json!(record.secret);
    }
    Ok((StatusCode::CREATED, axum::Json(answer)).into_response())
}

/// Checks a destination's address, at creation and on every edit (one
/// place, so every rule about where Kairos may send applies to both).
/// Checks a destination's kind, sender and URL (address policy
/// included): at creation and on every edit.
pub(crate) async fn checked_destination(
    state: &AppState,
    kind: &str,
    url: &str,
    from: Option<&str>,
) -> Result<(), Problem> {
    match kind {
        "webhook" | "in_app" => {}
        "email" => checked_sender(from)?,
        other => {
            return Err(Problem::bad_request(
                "destination_type_invalid",
                format!(
                    "type {other:?} is not supported yet; use \"webhook\", \"email\" or \"in_app\""
                ),
            ));
        }
    }
    checked_destination_url(kind, url, state.address_policy).await
}

#[derive(Deserialize)]
pub struct InAppQuery {
    /// `{type}:{value}`: who is on the page (e.g. `anonymous_id:a1`).
    identifier: String,
    /// The identity token the site's backend minted for `identifier`;
    /// needed for every type but `anonymous_id`.
    token: Option<String>,
}

/// `GET /v1/in-app/stream?identifier=user_id:u1&token=…&writeKey=…`:
/// Server-Sent Events carrying the in-app messages journeys send to this
/// person while the page is open. The write key names the source; the
/// identity token (HMAC-SHA256 of the identifier under the source's
/// identity secret, hex) proves the page is that person's — a write key
/// alone opens only `anonymous_id:…` streams (see [`kairos_deliver::in_app`]).
pub async fn in_app_stream(
    State(state): State<AppState>,
    RawQuery(raw_query): RawQuery,
    Query(query): Query<InAppQuery>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let source = crate::auth::page_source(&state, &headers, raw_query.as_deref())?;
    let identifier = identifier(&query.identifier)?;
    let deliverer = state
        .deliverer
        .as_ref()
        .ok_or_else(|| Problem::overloaded("in-app messages are not served by this process"))?;
    let identities = page_identities(&state, &source.record, &identifier, &query).await?;
    let subscription = deliverer
        .open_page(&source.record.id, identities)
        .await
        .map_err(|_| {
            Problem::overloaded(format!(
                "{} pages are connected for in-app messages, the most one process serves; try again later",
                kairos_deliver::in_app::PAGES_MAX
            ))
        })?;
    let messages = stream::unfold(subscription, |mut subscription| async move {
        let message = subscription.receiver.recv().await?;
        let event = SseEvent::default()
            .event("message")
            .data(message.to_string());
        Some((Ok::<_, Infallible>(event), subscription))
    });
    Ok(Sse::new(messages)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// The identifiers a page may listen under: an anonymous page its own id
/// only; a page with a valid identity token the profile's identities too.
async fn page_identities(
    state: &AppState,
    source: &kairos_store::SourceRecord,
    identifier: &kairos_core::identity::Identifier,
    query: &InAppQuery,
) -> Result<Vec<String>, Problem> {
    let own = format!("{}:{}", identifier.kind, identifier.value);
    let verified = crate::auth::page_identity(
        source,
        &query.identifier,
        identifier,
        query.token.as_deref(),
        "listening",
    )?;
    if !verified {
        return Ok(vec![own]);
    }
    let mut identities = vec![own];
    if let Some(view) = state.engine.profile(identifier.clone()).await? {
        identities.extend(
            view.identities
                .iter()
                .map(|identity| format!("{}:{}", identity.kind, identity.value)),
        );
    }
    Ok(identities)
}

/// The check a destination's URL passes when it is created (and edited):
/// its form for the destination's type, and the address policy for its
/// host (docs/journeys.md, "Addresses").
pub(crate) async fn checked_destination_url(
    kind: &str,
    url: &str,
    policy: kairos_deliver::address_policy::AddressPolicy,
) -> Result<(), Problem> {
    use kairos_deliver::endpoint::{UrlProblem, checked_destination_url};
    if url.len() > URL_BYTES_MAX {
        return Err(Problem::bad_request(
            "url_invalid",
            format!("url: at most {URL_BYTES_MAX} bytes"),
        ));
    }
    match checked_destination_url(kind, url, policy).await {
        Ok(()) => Ok(()),
        Err(UrlProblem::Invalid(detail)) => Err(Problem::bad_request("url_invalid", detail)),
        Err(UrlProblem::NotAllowed(detail)) => {
            Err(Problem::bad_request("address_not_allowed", detail))
        }
    }
}

fn checked_sender(from: Option<&str>) -> Result<(), Problem> {
    let from_ok = from.is_some_and(|from| from.contains('@') && from.len() <= NAME_BYTES_MAX);
    if !from_ok {
        return Err(Problem::bad_request(
            "from_invalid",
            "an email destination needs a sender: \"from\": \"Shop <hello@shop.example>\"",
        ));
    }
    Ok(())
}

/// `GET /v1/destinations`
pub async fn list_destinations(
    _: Admin,
    State(state): State<AppState>,
) -> Result<Response, Problem> {
    let destinations: Vec<Value> = state
        .store
        .outbox
        .destinations()
        .iter()
        .map(describe_destination)
        .collect();
    Ok(axum::Json(json!({ "destinations": destinations })).into_response())
}

/// `DELETE /v1/destinations/{id}`: refused while a journey sends to it.
pub async fn delete_destination(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let record = state.store.outbox.destination(&id).ok_or_else(|| {
        Problem::not_found(format!(
            "no destination {id}; list them with GET /v1/destinations"
        ))
    })?;
    let mut users: Vec<String> = kairos_deliver::active_journeys(&state.store)
        .into_iter()
        .filter(|journey| journey.sends().any(|send| send.destination == record.id))
        .map(|journey| format!("journey {}", journey.name))
        .collect();
    users.extend(
        state
            .store
            .outbox
            .syncs()
            .into_iter()
            .filter(|sync| sync.destination == record.id)
            .map(|sync| format!("audience sync {}", sync.name)),
    );
    if !users.is_empty() {
        return Err(Problem::conflict(
            "destination_in_use",
            format!("{users:?} send to it; delete them first"),
        ));
    }
    state.store.outbox.delete_destination(&record.id)?;
    Ok(axum::Json(json!({"id": record.id, "deleted": true})).into_response())
}

#[derive(Deserialize)]
pub struct CreateJourney {
    name: String,
    #[serde(flatten)]
    definition: serde_json::Map<String, Value>,
}

/// `POST /v1/journeys`: starts with events acknowledged after it. A
/// `{"when": condition}` trigger first creates the audience the journey
/// owns (backfilled: people already inside do not start it; crossing in
/// later does).
pub async fn create_journey(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CreateJourney>,
) -> Result<Response, Problem> {
    checked_name(&body.name, "journey")?;
    let definition = Value::Object(body.definition);
    let compiled =
        kairos_deliver::journey::compile("jny_new", &body.name, 0, &definition, |name| {
            let record = state.store.outbox.destination(name)?;
            Some((record.id, record.kind))
        })
        .map_err(|error| match error {
            kairos_deliver::DeliverError::Invalid(message) => {
                Problem::bad_request("journey_invalid", message)
            }
            other => other.into(),
        })?;
    // A `when` journey's own audience is created below, with it.
    let owned = definition["trigger"]["when"]
        .is_string()
        .then(|| kairos_deliver::journey::condition_audience(&body.name));
    if let Some(missing) = references::missing(&state, &compiled.references(), owned.as_deref()) {
        return Err(Problem::bad_request("journey_invalid", missing));
    }
    if state.store.outbox.journey(body.name.trim()).is_some() {
        return Err(kairos_store::StoreError::NameTaken {
            thing: "journey",
            name: body.name.trim().to_string(),
        }
        .into());
    }
    if let Some(condition) = definition["trigger"]["when"].as_str() {
        let audience = kairos_deliver::journey::condition_audience(&body.name);
        let (program, _) =
            definitions::create(&state, DefinitionKind::Audience, &audience, condition)?;
        definitions::install(&state, program).await?;
    }
    // The shards hand the effects stage every later event this journey
    // acts on: widened before the position it starts after is read.
    state.engine.widen_effects_interest(compiled.event_names());
    // After the owned audience's first announcements: they do not count.
    let starts_after_seq = state.store.writer.committed_seq();
    let record = state.store.outbox.create_journey(
        body.name.trim(),
        definition,
        starts_after_seq,
        state.clock.now(),
    )?;
    if let Some(deliverer) = &state.deliverer {
        deliverer.wake();
    }
    Ok((StatusCode::CREATED, axum::Json(describe_journey(&record))).into_response())
}

fn describe_journey(record: &kairos_store::JourneyRecord) -> Value {
    let mut answer = record.definition.clone();
    answer["id"] = json!(record.id);
    answer["name"] = json!(record.name);
    answer["created_at"] = json!(record.created_at);
    answer["paused"] = json!(record.paused);
    answer
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TestSend {
    /// Email destinations: the address the test goes to.
    #[serde(default)]
    to: Option<String>,
}

/// `POST /v1/destinations/{id}/test` (`{}`, or `{"to"}` for email): one
/// message now, through the same
/// path as every delivery, not stored; `{"delivered", "took_ms"}` or
/// `{"delivered": false, "error"}` (a category).
pub async fn test_destination(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<TestSend>,
) -> Result<Response, Problem> {
    let record = state.store.outbox.destination(&id).ok_or_else(|| {
        Problem::not_found(format!(
            "no destination {id}; list them with GET /v1/destinations"
        ))
    })?;
    let deliverer = state
        .deliverer
        .as_ref()
        .ok_or_else(|| Problem::overloaded("deliveries are not made by this process"))?;
    let to = body.to;
    if record.kind == "email" && to.is_none() {
        return Err(Problem::bad_request(
            "test_invalid",
            "an email test send needs {\"to\": \"you@example.org\"}",
        ));
    }
    if record.kind == "in_app" {
        return Err(Problem::bad_request(
            "test_invalid",
            "in-app messages go to connected pages: send the journey's trigger event from a page instead",
        ));
    }
    let answer = match deliverer.test_send(&record, to.as_deref()).await {
        Ok(took) => json!({"delivered": true, "took_ms": took.as_secs_f64() * 1000.0}),
        Err(error) => json!({"delivered": false, "error": error}),
    };
    Ok(axum::Json(answer).into_response())
}

/// `POST /v1/journeys/{id}/pause`: nobody enters and nothing is sent;
/// runs hold at their next step, waits that come due end without a message.
pub async fn pause_journey(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    set_paused(&state, &id, true).await
}

/// `POST /v1/journeys/{id}/resume`: entries start again; runs held while
/// it was paused go on at once.
pub async fn resume_journey(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    set_paused(&state, &id, false).await
}

async fn set_paused(state: &AppState, id: &str, paused: bool) -> Result<Response, Problem> {
    let record = state
        .store
        .outbox
        .set_journey_paused(id, paused)?
        .ok_or_else(|| {
            Problem::not_found(format!("no journey {id}; list them with GET /v1/journeys"))
        })?;
    let mut answer = describe_journey(&record);
    if !paused {
        answer["resumed_runs"] = json!(
            state
                .store
                .resume_held_runs(&record.id, state.clock.now())?
        );
    }
    if let Some(deliverer) = &state.deliverer {
        deliverer.wake();
    }
    Ok(axum::Json(answer).into_response())
}

/// `GET /v1/journeys`
pub async fn list_journeys(_: Admin, State(state): State<AppState>) -> Result<Response, Problem> {
    let journeys: Vec<Value> = state
        .store
        .outbox
        .journeys()
        .iter()
        .map(describe_journey)
        .collect();
    Ok(axum::Json(json!({ "journeys": journeys })).into_response())
}

/// `DELETE /v1/journeys/{id}`: no new messages; those decided are still
/// delivered.
pub async fn delete_journey(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let record = state.store.outbox.journey(&id).ok_or_else(|| {
        Problem::not_found(format!("no journey {id}; list them with GET /v1/journeys"))
    })?;
    let owned = kairos_deliver::journey::condition_audience(&record.name);
    if record.definition["trigger"]["when"].is_string()
        && let Some(audience) = state
            .store
            .definitions
            .get(DefinitionKind::Audience, &owned)
    {
        definitions::delete(&state, DefinitionKind::Audience, &audience.id).await?;
    }
    state.store.outbox.delete_journey(&record.id)?;
    Ok(axum::Json(json!({"id": record.id, "deleted": true})).into_response())
}

fn describe_message(message: &Message) -> Value {
    json!({
        "id": message.id, "destination": message.destination, "journey": message.journey,
        "identifier": message.identifier, "status": message.status, "attempts": message.attempts,
        "next_attempt_at": (message.status == MessageStatus::Pending).then_some(message.next_attempt_at),
        "deferred_until": message.deferred_until,
        "last_error": message.last_error, "created_at": message.created_at,
        "delivered_at": message.delivered_at, "event_seq": message.event_seq,
    })
}

#[derive(Deserialize)]
pub struct DeliveriesQuery {
    limit: Option<usize>,
}

/// `GET /v1/profiles/{type}:{value}/deliveries`: newest first.
pub async fn profile_deliveries(
    _: Admin,
    State(state): State<AppState>,
    Path(path): Path<String>,
    Query(query): Query<DeliveriesQuery>,
) -> Result<Response, Problem> {
    let identifier = identifier(&path)?;
    let limit = limit_param(query.limit, 100, 1000)?;
    let view = state
        .engine
        .profile(identifier.clone())
        .await?
        .ok_or_else(|| unknown(&identifier))?;
    let identities: Vec<String> = view
        .identities
        .iter()
        .map(|identity| format!("{}:{}", identity.kind, identity.value))
        .collect();
    let deliveries: Vec<Value> = state
        .store
        .outbox
        .by_identifiers(&identities, limit)?
        .iter()
        .map(describe_message)
        .collect();
    Ok(axum::Json(json!({"profile_id": view.id, "deliveries": deliveries})).into_response())
}

/// `GET /v1/admin/dead-letters`: messages given up on, newest first.
pub async fn dead_letters(
    _: Admin,
    State(state): State<AppState>,
    Query(query): Query<DeliveriesQuery>,
) -> Result<Response, Problem> {
    let limit = limit_param(query.limit, 100, 1000)?;
    let messages: Vec<Value> = state
        .store
        .outbox
        .dead(limit)?
        .iter()
        .map(describe_message)
        .collect();
    Ok(axum::Json(json!({ "dead_letters": messages })).into_response())
}

/// `POST /v1/admin/dead-letters/{id}/replay`: delivers it again (same id).
pub async fn replay_dead_letter(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let mut message = state
        .store
        .outbox
        .message(&id)?
        .filter(|message| message.status == MessageStatus::Dead)
        .ok_or_else(|| {
            Problem::not_found(format!(
                "no dead letter {id}; list them with GET /v1/admin/dead-letters"
            ))
        })?;
    if let Some(destination) = state.store.outbox.destination(&message.destination)
        && destination.disabled.is_some()
    {
        return Err(Problem::conflict(
            "destination_disabled",
            format!(
                "its destination is disabled (410 Gone); once the endpoint is back, re-enable it with PATCH /v1/destinations/{} {{\"enabled\": true}}",
                destination.id
            ),
        ));
    }
    requeue(&state, &mut message)?;
    if let Some(deliverer) = &state.deliverer {
        deliverer.wake();
    }
    Ok(axum::Json(describe_message(&message)).into_response())
}

/// A dead letter queued again at the end: its id (the webhook-id) stays,
/// its attempts start over.
pub(crate) fn requeue(state: &AppState, message: &mut Message) -> Result<(), Problem> {
    message.status = MessageStatus::Pending;
    message.seq = state.store.outbox.next_seq();
    message.attempts = 0;
    // Attempts run on the system clock (docs/journeys.md).
    message.next_attempt_at = Timestamp::now();
    state.store.outbox.update(message)?;
    Ok(())
}
