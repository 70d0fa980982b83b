//! Computed traits (docs/audiences.md, "Computed traits"): named values per
//! person — `orders_90d`, `spend_365d`, `last_order_at`, RFM scores, the
//! most frequent category — defined in the audience language and kept
//! current per event and per timer by the same engine as audiences.
//!
//! - `POST /v1/computed-traits` `{"name", "definition"}` → 201 (backfilled
//!   from the log first); a definition that does not parse → 400 with
//!   `line`, `column` and what was expected;
//! - `GET /v1/computed-traits`, `GET|PUT|DELETE /v1/computed-traits/{id}`;
//! - `GET /v1/computed-traits/{id}/values?limit=N&after=CURSOR`: every
//!   profile's value;
//! - `POST /v1/computed-traits/preview`: a draft's values now, unsaved.
//!
//! The profile API shows them under `"computed"`; audiences read them as
//! `computed orders_90d >= 3`.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kairos_core::audience::ValueExpr;
use kairos_store::{DefinitionKind, DefinitionRecord};
use serde::Deserialize;
use serde_json::json;

use crate::AppState;
use crate::admin::JsonBody;
use crate::audiences::{MembersQuery, preview_sample, profile_cursor};
use crate::auth::Admin;
use crate::definitions::{self, Edit, Parsed, checked, program};
use crate::problem::{Problem, limit_param};

const COMPUTED: DefinitionKind = DefinitionKind::ComputedTrait;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateComputedTrait {
    name: String,
    definition: String,
}

fn checked_definition(text: &str) -> Result<ValueExpr, Problem> {
    match checked(COMPUTED, text)? {
        Parsed::ComputedTrait(expr) => Ok(expr),
        Parsed::Audience(_) => unreachable!("a computed trait parses as a value"),
    }
}

fn describe(record: &DefinitionRecord) -> serde_json::Value {
    json!({
        "id": record.id,
        "name": record.name,
        "definition": record.definition,
        "json": checked(COMPUTED, &record.definition).ok().map(|parsed| parsed.json()),
        "created_at": record.created_at,
    })
}

fn existing(state: &AppState, id: &str) -> Result<DefinitionRecord, Problem> {
    definitions::existing(state, COMPUTED, id)
}

/// Installs the definitions (the engine backfills every value from the
/// log) and describes `record` with its backfill.
async fn apply(
    state: &AppState,
    program: kairos_core::audience::incremental::Program,
    record: &DefinitionRecord,
) -> Result<serde_json::Value, Problem> {
    let mut answer = describe(record);
    answer["backfill"] = definitions::install(state, program).await?;
    Ok(answer)
}

/// `POST /v1/computed-traits`
pub async fn create(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CreateComputedTrait>,
) -> Result<Response, Problem> {
    let (program, record) =
        definitions::create(&state, COMPUTED, body.name.trim(), &body.definition)?;
    let answer = apply(&state, program, &record).await?;
    Ok((StatusCode::CREATED, axum::Json(answer)).into_response())
}

/// `GET /v1/computed-traits`
pub async fn list(_: Admin, State(state): State<AppState>) -> Result<Response, Problem> {
    let traits: Vec<_> = state
        .store
        .definitions
        .list(COMPUTED)
        .iter()
        .map(describe)
        .collect();
    Ok(axum::Json(json!({ "computed_traits": traits })).into_response())
}

/// `GET /v1/computed-traits/{id}` (id or name)
pub async fn get(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    Ok(axum::Json(describe(&existing(&state, &id)?)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeComputedTrait {
    definition: String,
}

/// `PUT /v1/computed-traits/{id}`: a new definition, backfilled.
pub async fn change(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ChangeComputedTrait>,
) -> Result<Response, Problem> {
    let (program, record) = definitions::change(&state, COMPUTED, &id, &body.definition)?;
    Ok(axum::Json(apply(&state, program, &record).await?).into_response())
}

/// `DELETE /v1/computed-traits/{id}`: refused while a definition uses it.
pub async fn delete(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let answer = definitions::delete_unused(&state, COMPUTED, &id).await?;
    Ok(axum::Json(answer).into_response())
}

/// `GET /v1/computed-traits/{id}/values?limit=N&after=CURSOR`: profiles
/// with a value, in profile order.
pub async fn values(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<MembersQuery>,
) -> Result<Response, Problem> {
    let record = existing(&state, &id)?;
    let limit = limit_param(query.limit, 100, 1000)?;
    let after = profile_cursor(query.after.as_deref())?;
    let found = state
        .engine
        .computed_values(&record.name, after, limit)
        .await?;
    let next = (found.len() == limit)
        .then(|| found.last().map(|(id, _, _)| id.clone()))
        .flatten();
    let values: Vec<_> = found
        .into_iter()
        .map(|(id, identities, value)| json!({"id": id, "identities": identities, "value": value}))
        .collect();
    Ok(
        axum::Json(json!({"computed_trait": record.id, "values": values, "next": next}))
            .into_response(),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviewComputedTrait {
    definition: String,
    /// Profiles to show (default 10, at most 100).
    sample: Option<usize>,
}

/// `POST /v1/computed-traits/preview`: how many profiles a draft gives a
/// value now, and the first of them with their values; nothing saved.
pub async fn preview(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<PreviewComputedTrait>,
) -> Result<Response, Problem> {
    let sample = preview_sample(body.sample)?;
    let expr = checked_definition(&body.definition)?;
    program(
        &state,
        Edit {
            upsert: Some(("__draft__", Parsed::ComputedTrait(expr.clone()))),
            without: None,
        },
    )?;
    let started = std::time::Instant::now();
    let preview = state
        .engine
        .preview(kairos_engine::Draft::ComputedTrait(expr), sample)
        .await?;
    let sample: Vec<_> = preview
        .sample
        .iter()
        .map(|(id, identities, value)| json!({"id": id, "identities": identities, "value": value}))
        .collect();
    Ok(axum::Json(json!({
        "with_value": preview.size,
        "sample": sample,
        "profiles_evaluated": preview.profiles_evaluated,
        "events_read": preview.events_read,
        "seconds": started.elapsed().as_secs_f64(),
    }))
    .into_response())
}
