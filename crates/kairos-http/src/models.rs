//! The model registry (docs/models.md):
//!
//! - `POST /v1/models` `{"name", "format", "model", "inputs", "mode"}` → 201
//!   with the new version (`shadow` unless `"mode": "active"`);
//! - `GET /v1/models`: every version, and the feature catalog;
//! - `POST /v1/models/{name}/versions/{version}/promote`: that version
//!   becomes the active one (the previous active one retires);
//!   `.../retire` stops scoring with it;
//! - `POST /v1/models/{name}/score` `{"rows": [[…]], "version": 2}`: the
//!   model on explicit input rows (parity checks against another runtime);
//! - `DELETE /v1/models/{name}`.
//!
//! Every change reloads the served set: scores follow from each person's
//! next event on (and all of them after a restart, which replays the log).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kairos_models::{CATALOG, LoadedModel, Mode, ModelSet, ModelSpec};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::admin::{JsonBody, MODEL_BODY_BYTES_MAX};
use crate::auth::Admin;
use crate::problem::Problem;
use crate::references;

/// Rows scored per request at most.
const ROWS_MAX: usize = 10_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateModel {
    name: String,
    format: String,
    model: Value,
    inputs: Vec<String>,
    mode: Option<Mode>,
}

pub(crate) fn invalid(message: impl Into<String>) -> Problem {
    Problem::bad_request("model_invalid", message)
}

/// Every registered model version, as specs (unreadable records skipped).
pub(crate) fn specs(state: &AppState) -> Vec<ModelSpec> {
    state
        .store
        .models
        .all()
        .into_iter()
        .filter_map(|record| serde_json::from_value(record).ok())
        .collect()
}

/// Loads the active and shadow versions into the engine.
pub fn reload(state: &AppState) {
    let (models, problems) = ModelSet::load(&specs(state));
    for problem in problems {
        tracing::warn!(%problem, "model not served");
    }
    state.engine.set_models(models);
}

fn describe(spec: &ModelSpec) -> Value {
    json!({"name": spec.name, "version": spec.version, "format": spec.format,
           "inputs": spec.inputs, "mode": spec.mode, "created_at": spec.created_at})
}

/// `POST /v1/models`
pub async fn create_model(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CreateModel, MODEL_BODY_BYTES_MAX>,
) -> Result<Response, Problem> {
    let name = checked_name(&body.name)?;
    let spec = ModelSpec {
        name: name.to_string(),
        version: 0,
        format: body.format,
        inputs: body.inputs,
        mode: body.mode.unwrap_or(Mode::Shadow),
        created_at: state.clock.now(),
        model: body.model,
    };
    if spec.mode == Mode::Retired {
        return Err(invalid("a new version is \"shadow\" or \"active\""));
    }
    let answer = register(&state, spec)?;
    Ok((StatusCode::CREATED, axum::Json(answer)).into_response())
}

/// A model's name: what audiences read (`score purchase_propensity > 0.7`).
pub(crate) fn checked_name(name: &str) -> Result<&str, Problem> {
    let name = name.trim();
    if name.is_empty()
        || name.len() > 100
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(invalid(
            "a model's name is 1 to 100 letters, digits and `_` (audiences read it as `score purchase_propensity > 0.7`)",
        ));
    }
    Ok(name)
}

/// Checks, stores and serves a new version of `spec.name` (its version
/// number is assigned here); the answer describes it and its outputs.
pub fn register(state: &AppState, mut spec: ModelSpec) -> Result<Value, Problem> {
    let name = spec.name.clone();
    // Checked (loaded) before anything is stored.
    let loaded = LoadedModel::load(&spec).map_err(invalid)?;
    let outputs: Vec<String> = loaded
        .score_row(&vec![0.0; spec.inputs.len()])
        .map(|scores| scores.into_iter().map(|(name, _)| name).collect())
        .unwrap_or_default();
    let record = state.store.models.add(&name, |version| {
        spec.version = version;
        serde_json::to_value(&spec).expect("a model spec serializes")
    })?;
    let spec: ModelSpec =
        serde_json::from_value(record).map_err(|error| Problem::internal("model record", error))?;
    if spec.mode == Mode::Active {
        retire_others(state, &spec.name, spec.version)?;
    }
    reload(state);
    let mut answer = describe(&spec);
    answer["outputs"] = json!(outputs);
    Ok(answer)
}

/// Every other active version of `name` retires.
fn retire_others(state: &AppState, name: &str, keep: u32) -> Result<(), Problem> {
    for mut spec in specs(state).into_iter().filter(|spec| spec.name == name) {
        if spec.version != keep && spec.mode == Mode::Active {
            spec.mode = Mode::Retired;
            state.store.models.put(
                name,
                spec.version,
                &serde_json::to_value(&spec).expect("serializes"),
            )?;
        }
    }
    Ok(())
}

/// `GET /v1/models`
pub async fn list_models(_: Admin, State(state): State<AppState>) -> Result<Response, Problem> {
    let models: Vec<Value> = specs(&state).iter().map(describe).collect();
    let features: Vec<Value> = CATALOG
        .iter()
        .map(|(name, meaning)| json!({"name": name, "meaning": meaning}))
        .chain([
            json!({"name": "trait.<name>", "meaning": "a numeric trait (booleans 0/1)"}),
            json!({"name": "computed.<name>", "meaning": "a computed trait's value"}),
        ])
        .collect();
    Ok(axum::Json(json!({"models": models, "features": features})).into_response())
}

fn version_of(state: &AppState, name: &str, version: Option<u32>) -> Result<ModelSpec, Problem> {
    let versions: Vec<ModelSpec> = specs(state)
        .into_iter()
        .filter(|spec| spec.name == name)
        .collect();
    let found = match version {
        Some(version) => versions.into_iter().find(|spec| spec.version == version),
        None => {
            let active = versions
                .iter()
                .find(|spec| spec.mode == Mode::Active)
                .cloned();
            active.or_else(|| versions.into_iter().last())
        }
    };
    found.ok_or_else(|| {
        Problem::not_found(format!(
            "no model {name} (version {version:?}); list them with GET /v1/models"
        ))
    })
}

/// `POST /v1/models/{name}/versions/{version}/promote`
pub async fn promote(
    _: Admin,
    State(state): State<AppState>,
    Path((name, version)): Path<(String, u32)>,
) -> Result<Response, Problem> {
    set_mode(state, &name, version, Mode::Active).await
}

/// `POST /v1/models/{name}/versions/{version}/retire`
pub async fn retire(
    _: Admin,
    State(state): State<AppState>,
    Path((name, version)): Path<(String, u32)>,
) -> Result<Response, Problem> {
    set_mode(state, &name, version, Mode::Retired).await
}

async fn set_mode(
    state: AppState,
    name: &str,
    version: u32,
    mode: Mode,
) -> Result<Response, Problem> {
    let mut spec = version_of(&state, name, Some(version))?;
    spec.mode = mode;
    state.store.models.put(
        name,
        version,
        &serde_json::to_value(&spec).expect("serializes"),
    )?;
    if mode == Mode::Active {
        retire_others(&state, name, version)?;
    }
    reload(&state);
    Ok(axum::Json(describe(&spec)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreRows {
    rows: Vec<Vec<Option<f64>>>,
    version: Option<u32>,
}

/// `POST /v1/models/{name}/score`: `null` inputs are missing values (NaN).
pub async fn score_rows(
    _: Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<ScoreRows>,
) -> Result<Response, Problem> {
    if body.rows.is_empty() || body.rows.len() > ROWS_MAX {
        return Err(invalid(format!("send 1 to {ROWS_MAX} rows")));
    }
    let spec = version_of(&state, &name, body.version)?;
    let scores = (|| -> Result<Vec<Value>, String> {
        let model = LoadedModel::load(&spec)?;
        body.rows
            .iter()
            .map(|row| {
                let row: Vec<f64> = row.iter().map(|value| value.unwrap_or(f64::NAN)).collect();
                let scores = model.score_row(&row)?;
                Ok(Value::Object(
                    scores
                        .into_iter()
                        .map(|(name, value)| (name, json!(value)))
                        .collect(),
                ))
            })
            .collect()
    })()
    .map_err(invalid)?;
    Ok(
        axum::Json(json!({"name": spec.name, "version": spec.version, "scores": scores}))
            .into_response(),
    )
}

/// `DELETE /v1/models/{name}`: every version; refused (409) while an
/// audience, computed trait or journey reads one of its scores.
pub async fn delete_model(
    _: Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    let users = references::users(&state, &references::Target::Model(&name));
    if !users.is_empty() {
        let what = format!("the model {name:?}");
        return Err(references::in_use("model_in_use", &what, &users));
    }
    if !state.store.models.delete(&name)? {
        return Err(Problem::not_found(format!(
            "no model {name}; list them with GET /v1/models"
        )));
    }
    reload(&state);
    Ok(axum::Json(json!({"name": name, "deleted": true})).into_response())
}
