//! Audiences (docs/audiences.md): definitions in the audience language,
//! kept exact per event and per timer by the engine's shards.
//!
//! - `POST /v1/audiences` `{"name", "definition"}` → 201; a definition that
//!   does not parse → 400 with `line`, `column` and what was expected;
//! - `GET /v1/audiences`, `GET /v1/audiences/{id}`, `DELETE /v1/audiences/{id}`;
//! - `GET /v1/audiences/{id}/members?limit=N&after=CURSOR`;
//! - `POST /v1/admin/clock` `{"now"}` with `kairos serve --clock manual`:
//!   moves the engine's clock and answers once everything due by then has
//!   run: audience timers fired and announced, journeys following the log
//!   up to that point, their waits and steps due fired, messages decided.
//!
//! A new or deleted definition is applied by recomputing every membership
//! from the log (backfill) before the answer.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use kairos_core::audience::incremental::Program;
use kairos_core::audience::{Expr, parse};
use kairos_store::{DefinitionKind, DefinitionRecord};
use serde::Deserialize;
use serde_json::json;

use crate::AppState;
use crate::admin::JsonBody;
use crate::auth::Admin;
use crate::definitions::{self, Edit, Parsed, checked, program};
use crate::problem::{Problem, limit_param};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateAudience {
    name: String,
    definition: String,
}

fn checked_definition(text: &str) -> Result<Expr, Problem> {
    match checked(AUDIENCE, text)? {
        Parsed::Audience(expr) => Ok(expr),
        Parsed::ComputedTrait(_) => unreachable!("an audience parses as a condition"),
    }
}

fn describe(record: &DefinitionRecord, size: Option<usize>) -> serde_json::Value {
    json!({
        "id": record.id,
        "name": record.name,
        "definition": record.definition,
        "json": parse(&record.definition).ok(),
        "created_at": record.created_at,
        "size": size,
    })
}

/// `POST /v1/audiences`
pub async fn create(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CreateAudience>,
) -> Result<Response, Problem> {
    if body
        .name
        .trim()
        .starts_with(kairos_core::audience::QUIET_AUDIENCE_PREFIX)
    {
        return Err(Problem::bad_request(
            "name_invalid",
            "names starting with \"offer \" are kept for the audiences offers own (docs/decisions.md); choose another name",
        ));
    }
    let (program, record) =
        definitions::create(&state, AUDIENCE, body.name.trim(), &body.definition)?;
    let answer = apply(&state, program, &record).await?;
    Ok((StatusCode::CREATED, axum::Json(answer)).into_response())
}

const AUDIENCE: DefinitionKind = DefinitionKind::Audience;

/// Installs the definitions (the engine backfills memberships from the
/// log), records sizes, and describes `record` with its backfill.
async fn apply(
    state: &AppState,
    program: Program,
    record: &DefinitionRecord,
) -> Result<serde_json::Value, Problem> {
    let backfill = definitions::install(state, program).await?;
    let size = sizes(state, std::slice::from_ref(&record.name)).await?[0];
    record_sizes(state).await?;
    let mut answer = describe(record, Some(size));
    answer["backfill"] = backfill;
    Ok(answer)
}

/// Records every audience's current size in its size history, at the
/// engine's "now". Called after definitions change, when the manual clock
/// moves, and every minute by the server.
pub async fn record_sizes(state: &AppState) -> Result<(), Problem> {
    let records = state.store.definitions.list(AUDIENCE);
    if records.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = records.iter().map(|record| record.name.clone()).collect();
    let sizes = sizes(state, &names).await?;
    let now = state.engine.now();
    for (record, size) in records.iter().zip(sizes) {
        state
            .store
            .definitions
            .record_size(&record.id, now, size as u64)?;
    }
    Ok(())
}

#[derive(Deserialize)]
pub struct SizesQuery {
    limit: Option<usize>,
}

/// `GET /v1/audiences/{id}/sizes`: the size history, oldest first.
pub async fn size_history(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<SizesQuery>,
) -> Result<Response, Problem> {
    let record = existing(&state, &id)?;
    let limit = limit_param(query.limit, 1000, 10_000)?;
    let sizes: Vec<_> = state
        .store
        .definitions
        .sizes(&record.id, limit)?
        .into_iter()
        .map(|(at, size)| json!({"at": at, "size": size}))
        .collect();
    Ok(axum::Json(json!({"audience": record.id, "sizes": sizes})).into_response())
}

async fn sizes(state: &AppState, names: &[String]) -> Result<Vec<usize>, Problem> {
    Ok(state.engine.audience_sizes(names).await?)
}

/// `GET /v1/audiences`
pub async fn list(_: Admin, State(state): State<AppState>) -> Result<Response, Problem> {
    let records = state.store.definitions.list(AUDIENCE);
    let names: Vec<String> = records.iter().map(|record| record.name.clone()).collect();
    let sizes = sizes(&state, &names).await?;
    let audiences: Vec<_> = records
        .iter()
        .zip(sizes)
        .map(|(record, size)| describe(record, Some(size)))
        .collect();
    Ok(axum::Json(json!({ "audiences": audiences })).into_response())
}

fn existing(state: &AppState, id: &str) -> Result<DefinitionRecord, Problem> {
    definitions::existing(state, AUDIENCE, id)
}

/// `GET /v1/audiences/{id}` (id or name)
pub async fn get(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let record = existing(&state, &id)?;
    let size = sizes(&state, std::slice::from_ref(&record.name)).await?[0];
    Ok(axum::Json(describe(&record, Some(size))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeAudience {
    definition: String,
}

/// `PUT /v1/audiences/{id}`: a new definition for an existing audience,
/// backfilled from the log before the answer.
pub async fn change(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ChangeAudience>,
) -> Result<Response, Problem> {
    let (program, record) = definitions::change(&state, AUDIENCE, &id, &body.definition)?;
    Ok(axum::Json(apply(&state, program, &record).await?).into_response())
}

/// `DELETE /v1/audiences/{id}`
pub async fn delete(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    // Refused while a journey, a sync or another definition refers to it.
    let answer = definitions::delete_unused(&state, AUDIENCE, &id).await?;
    Ok(axum::Json(answer).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviewAudience {
    definition: String,
    /// Members to show (default 10, at most 100).
    sample: Option<usize>,
}

/// `POST /v1/audiences/preview`: a draft's size and first members now,
/// from the stored history, without saving it.
pub async fn preview(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<PreviewAudience>,
) -> Result<Response, Problem> {
    let sample = preview_sample(body.sample)?;
    let expr = checked_definition(&body.definition)?;
    // References to other definitions must exist (the draft is not saved).
    program(
        &state,
        Edit {
            upsert: Some(("(draft)", Parsed::Audience(expr.clone()))),
            without: None,
        },
    )?;
    let started = std::time::Instant::now();
    let preview = state
        .engine
        .preview(kairos_engine::Draft::Audience(expr), sample)
        .await?;
    let members: Vec<_> = preview
        .sample
        .iter()
        .map(|(id, identities, _)| json!({"id": id, "identities": identities}))
        .collect();
    Ok(axum::Json(json!({
        "size": preview.size,
        "sample": members,
        "profiles_evaluated": preview.profiles_evaluated,
        "events_read": preview.events_read,
        "seconds": started.elapsed().as_secs_f64(),
    }))
    .into_response())
}

/// The number of sample members a preview shows (default 10).
pub(crate) fn preview_sample(sample: Option<usize>) -> Result<usize, Problem> {
    let sample = sample.unwrap_or(10);
    if sample > 100 {
        return Err(Problem::bad_request(
            "sample_invalid",
            "sample must be from 0 to 100",
        ));
    }
    Ok(sample)
}

#[derive(Deserialize)]
pub struct MembersQuery {
    pub(crate) limit: Option<usize>,
    pub(crate) after: Option<String>,
}

/// A page cursor: the `next` of the previous page (a profile id).
pub(crate) fn profile_cursor(after: Option<&str>) -> Result<Option<u64>, Problem> {
    let Some(cursor) = after else {
        return Ok(None);
    };
    cursor
        .strip_prefix("prof_")
        .and_then(|number| number.parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| {
            Problem::bad_request(
                "cursor_invalid",
                "after must be the `next` of the previous page (a profile id such as prof_42)",
            )
        })
}

/// `GET /v1/audiences/{id}/members?limit=N&after=CURSOR`
pub async fn members(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<MembersQuery>,
) -> Result<Response, Problem> {
    let record = existing(&state, &id)?;
    let limit = limit_param(query.limit, 100, 1000)?;
    let after = profile_cursor(query.after.as_deref())?;
    let members = state
        .engine
        .audience_members(&record.name, after, limit)
        .await?;
    let next = (members.len() == limit)
        .then(|| members.last().map(|(id, _)| id.clone()))
        .flatten();
    let members: Vec<_> = members
        .into_iter()
        .map(|(id, identities)| json!({"id": id, "identities": identities}))
        .collect();
    Ok(
        axum::Json(json!({"audience": record.id, "members": members, "next": next}))
            .into_response(),
    )
}

/// How long moving the manual clock waits for journeys to run what came
/// due. Far above what a test's backlog takes (milliseconds); reaching it
/// means the delivery thread is stuck, which the answer then says.
const CLOCK_SETTLE_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// The clock moved but journeys did not finish what came due in time.
fn journeys_behind(now: Timestamp, logged: u64, handled: kairos_deliver::Handled) -> Problem {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "journeys_behind",
        "Journeys are still catching up",
        format!(
            "the clock is at {now}, but after {} s journeys have handled the log up to {} of {logged} \
             and the waits due up to {}; see the server's log for errors, then set the clock again \
             (setting it to the same time waits again)",
            CLOCK_SETTLE_MAX.as_secs(),
            handled.seq,
            handled.now,
        ),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetClock {
    now: Timestamp,
}

/// `POST /v1/admin/clock` (only with `--clock manual`)
pub async fn set_clock(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<SetClock>,
) -> Result<Response, Problem> {
    let Some(clock) = &state.manual_clock else {
        return Err(Problem::conflict(
            "clock_not_manual",
            "the engine runs on the system clock; start with `kairos serve --clock manual` to set it",
        ));
    };
    if !clock.advance_to(body.now) {
        return Err(Problem::bad_request(
            "clock_backwards",
            format!(
                "the clock only moves forward; it is at {}",
                kairos_core::clock::Clock::now(clock.as_ref())
            ),
        ));
    }
    state.store.definitions.save_manual_clock(body.now)?;
    // Timers due now fire and their announcements reach the log...
    state.engine.sync_timers().await?;
    // ...then journeys follow everything logged so far at the new time.
    if let Some(deliverer) = &state.deliverer {
        let logged = state.store.writer.committed_seq();
        if let Err(behind) = deliverer.handled(logged, body.now, CLOCK_SETTLE_MAX).await {
            return Err(journeys_behind(body.now, logged, behind.handled));
        }
    }
    record_sizes(&state).await?;
    Ok(axum::Json(json!({"now": body.now})).into_response())
}
