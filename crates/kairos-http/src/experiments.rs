//! Experiments (docs/decisions.md, "Experiments"): `POST/GET/DELETE
//! /v1/experiments`, `POST /v1/experiments/{id}/stop`, the global holdout
//! (`GET/PUT /v1/experiments/settings`), a person's assignment and the
//! results.
//!
//! An assignment is stored at the first call (the person's exposure) and
//! read back afterwards, whatever identifier of the person is asked for
//! (the earliest exposure of any of their identities wins). Its
//! pre-exposure covariate — the person's count of the metric event so far
//! — is read from their timeline then, for CUPED.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kairos_core::identity::Identifier;
use kairos_deliver::experiments::{
    Assigned, Definition, Direction, Exposing, GLOBAL_HOLDOUT_GROUP, HOLDOUT_GROUP,
};
use kairos_insights::experiments::{
    ArmData, Covariate, analyze, newcombe, normal_quantile, wilson,
};
use kairos_store::{ExperimentRecord, ExperimentSettings, Exposure};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::admin::JsonBody;
use crate::auth::Admin;
use crate::problem::Problem;
use crate::profiles::identifier;

/// Experiments stored at once: each is looked at for every event the
/// effects stage handles.
pub const EXPERIMENTS_MAX: usize = 200;
/// Largest definition (JSON bytes).
const DEFINITION_BYTES_MAX: usize = 64 * 1024;
/// The results' default significance level (95 % intervals).
const ALPHA_DEFAULT: f64 = 0.05;

fn invalid(detail: impl Into<String>) -> Problem {
    Problem::bad_request("experiment_invalid", detail)
}

fn existing(state: &AppState, id: &str) -> Result<(ExperimentRecord, Definition), Problem> {
    let record = state.store.outbox.experiment(id).ok_or_else(|| {
        Problem::not_found(format!(
            "no experiment {id}; list them with GET /v1/experiments"
        ))
    })?;
    let definition = Definition::parse(&record.definition)
        .map_err(|error| Problem::internal("a stored experiment", error))?;
    Ok((record, definition))
}

fn describe(record: &ExperimentRecord) -> Value {
    json!({
        "id": record.id,
        "name": record.name,
        "status": if record.stopped_at.is_some() { "stopped" } else { "running" },
        "created_at": record.created_at,
        "stopped_at": record.stopped_at,
        "definition": record.definition,
    })
}

/// `POST /v1/experiments`
pub async fn create_experiment(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, Problem> {
    if body.to_string().len() > DEFINITION_BYTES_MAX {
        return Err(invalid(format!(
            "an experiment is at most {DEFINITION_BYTES_MAX} bytes of JSON"
        )));
    }
    let definition = Definition::parse(&body).map_err(invalid)?;
    if state.store.outbox.experiments().len() >= EXPERIMENTS_MAX {
        return Err(Problem::conflict(
            "experiments_full",
            format!("at most {EXPERIMENTS_MAX} experiments; delete finished ones first"),
        ));
    }
    // Outcomes are handed to the effects stage from now on.
    state
        .engine
        .widen_effects_interest(definition.event_names());
    let record = state.store.outbox.create_experiment(
        &definition.name,
        serde_json::to_value(&definition).expect("a definition serializes"),
        state.clock.now(),
    )?;
    Ok((StatusCode::CREATED, axum::Json(describe(&record))).into_response())
}

/// `GET /v1/experiments`
pub async fn list_experiments(
    _: Admin,
    State(state): State<AppState>,
) -> Result<Response, Problem> {
    let experiments: Vec<Value> = state
        .store
        .outbox
        .experiments()
        .iter()
        .map(describe)
        .collect();
    Ok(axum::Json(json!({"experiments": experiments})).into_response())
}

/// `GET /v1/experiments/{id}`
pub async fn get_experiment(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let (record, _) = existing(&state, &id)?;
    Ok(axum::Json(describe(&record)).into_response())
}

/// `DELETE /v1/experiments/{id}`: the experiment and every exposure.
pub async fn delete_experiment(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let (record, _) = existing(&state, &id)?;
    state.store.outbox.delete_experiment(&record.id)?;
    Ok(axum::Json(json!({"id": record.id, "deleted": true})).into_response())
}

/// `POST /v1/experiments/{id}/stop`: no new exposures (new people get the
/// control, unrecorded); outcomes of those exposed still count.
pub async fn stop_experiment(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let (record, _) = existing(&state, &id)?;
    let record = state
        .store
        .outbox
        .stop_experiment(&record.id, state.clock.now())?
        .ok_or_else(|| Problem::not_found(format!("no experiment {id}")))?;
    Ok(axum::Json(describe(&record)).into_response())
}

/// `GET /v1/experiments/settings`
pub async fn get_settings(_: Admin, State(state): State<AppState>) -> Result<Response, Problem> {
    let settings = state.store.outbox.experiment_settings()?;
    Ok(axum::Json(json!(settings)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsBody {
    global_holdout: f64,
}

/// `PUT /v1/experiments/settings`: the global holdout, a fraction of all
/// people excluded from every experiment (people already exposed keep
/// their group).
pub async fn put_settings(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<SettingsBody>,
) -> Result<Response, Problem> {
    if !(body.global_holdout.is_finite() && (0.0..1.0).contains(&body.global_holdout)) {
        return Err(invalid(
            "global_holdout: expected a fraction from 0 up to (not including) 1, e.g. 0.05",
        ));
    }
    let settings = ExperimentSettings {
        global_holdout: body.global_holdout,
    };
    state.store.outbox.set_experiment_settings(settings)?;
    Ok(axum::Json(json!(settings)).into_response())
}

#[derive(Deserialize)]
pub struct AssignmentQuery {
    profile: Option<String>,
}

/// `GET /v1/experiments/{id}/assignment?profile=<type>:<value>`
pub async fn assignment(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<AssignmentQuery>,
) -> Result<Response, Problem> {
    let (record, definition) = existing(&state, &id)?;
    let Some(profile) = query.profile else {
        return Err(invalid(
            "profile: expected ?profile=<type>:<value>, e.g. ?profile=user_id:u1",
        ));
    };
    let who = identifier(&profile)?;
    let asked = format!("{}:{}", who.kind, who.value);
    // After every event acknowledged before the call.
    let view = state.engine.profile(who.clone()).await?;
    let Some(assigned) = assign(&state, &record, &definition, &who, view.as_ref())? else {
        return Ok(axum::Json(json!({
            "experiment": record.id,
            "profile": asked,
            "arm": definition.control,
            "group": definition.control,
            "exposed": false,
            "detail": "the experiment is stopped: new people get the control and are not counted",
        }))
        .into_response());
    };
    Ok(axum::Json(json!({
        "experiment": record.id,
        "profile": asked,
        "arm": assigned.arm(),
        "group": assigned.exposure.group,
        "exposed": true,
        "new": assigned.new,
        "exposed_at": assigned.exposure.at,
    }))
    .into_response())
}

/// The person's group in the experiment
/// ([`kairos_deliver::experiments::assign`], shared with decisions and
/// journeys): read back, or chosen and stored now with what is durable at
/// the call as their exposure's log position. The caller has waited for
/// the engine (`view` is the profile after every acknowledged event).
pub fn assign(
    state: &AppState,
    record: &ExperimentRecord,
    definition: &Definition,
    who: &Identifier,
    view: Option<&kairos_engine::ProfileView>,
) -> Result<Option<Assigned>, Problem> {
    let exposing = Exposing::new(
        who,
        view,
        state.clock.now(),
        state.store.writer.committed_seq(),
    );
    kairos_deliver::experiments::assign(
        &state.store.outbox,
        record,
        definition,
        &exposing,
        |event| {
            kairos_deliver::experiments::pre_exposure_count(
                &state.engine,
                &state.store,
                who,
                None,
                event,
            )
            .map_err(Problem::from)
        },
    )
}

#[derive(Deserialize)]
pub struct ResultsQuery {
    alpha: Option<f64>,
}

/// One group's sums over its exposures.
#[derive(Default)]
struct Sums {
    data: ArmData,
    guardrails: Vec<u64>,
}

/// `GET /v1/experiments/{id}/results`
pub async fn results(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<ResultsQuery>,
) -> Result<Response, Problem> {
    let (record, definition) = existing(&state, &id)?;
    let alpha = query.alpha.unwrap_or(ALPHA_DEFAULT);
    if !(alpha > 0.0 && alpha < 0.5) {
        return Err(invalid(
            "alpha: expected a level between 0 and 0.5, e.g. 0.05",
        ));
    }
    let groups = sums(&definition, &state.store.outbox.exposures(&record.id)?);
    let arm_data: Vec<ArmData> = definition
        .arms
        .iter()
        .map(|arm| {
            let mut data = groups
                .get(&arm.name)
                .map(|sums| sums.data.clone())
                .unwrap_or_default();
            data.name = arm.name.clone();
            if definition.metric.value.is_some() {
                data.sum.get_or_insert(0.0);
                data.sum_sq.get_or_insert(0.0);
            }
            data
        })
        .collect();
    let analyzed = analyze(&arm_data, &definition.control, alpha)
        .map_err(|error| Problem::internal("experiment results", error))?;
    let z = normal_quantile(1.0 - alpha / 2.0);
    let control = groups.get(&definition.control);
    let arms: Vec<Value> = analyzed
        .iter()
        .map(|result| {
            let mut value = json!(result);
            value["guardrails"] = guardrails(&definition, groups.get(&result.name), control, z);
            value
        })
        .collect();
    let holdouts: Vec<Value> = [HOLDOUT_GROUP, GLOBAL_HOLDOUT_GROUP]
        .iter()
        .filter_map(|group| {
            let sums = groups.get(*group)?;
            let data = &sums.data;
            Some(json!({
                "group": group,
                "exposures": data.exposures,
                "conversions": data.conversions,
                "rate": data.mean(),
                "interval": wilson(data.conversions, data.exposures, z),
            }))
        })
        .collect();
    Ok(axum::Json(json!({
        "id": record.id,
        "name": record.name,
        "status": if record.stopped_at.is_some() { "stopped" } else { "running" },
        "metric": definition.metric,
        "control": definition.control,
        "allocation": definition.allocation,
        "alpha": alpha,
        "arms": arms,
        "holdouts": holdouts,
        "verdict": verdict(&analyzed, &definition.control),
    }))
    .into_response())
}

/// Each group's sufficient statistics (the covariate with them).
fn sums(definition: &Definition, exposures: &[Exposure]) -> BTreeMap<String, Sums> {
    let mut groups: BTreeMap<String, Sums> = BTreeMap::new();
    for exposure in exposures {
        let sums = groups
            .entry(exposure.group.clone())
            .or_insert_with(|| Sums {
                guardrails: vec![0; definition.guardrails.len()],
                ..Sums::default()
            });
        let data = &mut sums.data;
        let y = exposure.value;
        data.exposures += 1;
        data.conversions += u64::from(exposure.converted);
        if definition.metric.value.is_some() {
            *data.sum.get_or_insert(0.0) += y;
            *data.sum_sq.get_or_insert(0.0) += y * y;
        }
        let covariate = data.covariate.get_or_insert(Covariate::default());
        covariate.sum_x += exposure.pre;
        covariate.sum_x2 += exposure.pre * exposure.pre;
        covariate.sum_xy += exposure.pre * y;
        for &index in &exposure.guardrails {
            if let Some(count) = sums.guardrails.get_mut(index) {
                *count += 1;
            }
        }
    }
    groups
}

/// Each guardrail's rate in the arm and its difference from the control:
/// `degraded` when the difference goes against the wanted direction with
/// its whole interval.
fn guardrails(
    definition: &Definition,
    arm: Option<&Sums>,
    control: Option<&Sums>,
    z: f64,
) -> Value {
    let n = |sums: Option<&Sums>| sums.map_or(0, |sums| sums.data.exposures);
    let count = |sums: Option<&Sums>, index: usize| sums.map_or(0, |sums| sums.guardrails[index]);
    let rate = |k: u64, n: u64| (n > 0).then(|| k as f64 / n as f64);
    definition
        .guardrails
        .iter()
        .enumerate()
        .map(|(index, guardrail)| {
            let (k, total) = (count(arm, index), n(arm));
            let (control_k, control_n) = (count(control, index), n(control));
            let interval = newcombe((k, total), (control_k, control_n), z);
            let degraded = interval.is_some_and(|[low, high]| match guardrail.direction {
                Direction::Decrease => low > 0.0,
                Direction::Increase => high < 0.0,
            });
            json!({
                "event": guardrail.event,
                "direction": guardrail.direction,
                "count": k,
                "rate": rate(k, total),
                "difference": rate(k, total).zip(rate(control_k, control_n)).map(|(a, b)| a - b),
                "difference_interval": interval,
                "degraded": degraded,
            })
        })
        .collect()
}

/// The sequential test's verdict over the arms: the best arm whose
/// always-valid p-value crossed alpha, if any.
fn verdict(analyzed: &[kairos_insights::experiments::ArmResult], control: &str) -> Value {
    let significant: Vec<_> = analyzed
        .iter()
        .filter(|arm| arm.sequential.is_some_and(|test| test.significant))
        .collect();
    let better = significant
        .iter()
        .filter(|arm| arm.difference.is_some_and(|d| d > 0.0))
        .max_by(|a, b| {
            a.difference
                .partial_cmp(&b.difference)
                .unwrap_or(std::cmp::Ordering::Equal)
        });
    let (decision, winner) = match better {
        Some(arm) => ("treatment_better", arm.name.as_str()),
        None if !significant.is_empty() => ("control_better", control),
        None => ("keep_running", ""),
    };
    json!({
        "decision": decision,
        "winner": (!winner.is_empty()).then_some(winner),
        "significant": !significant.is_empty(),
        "test": "mSPRT (always-valid p-value, normal mixture): safe to look at any time",
    })
}
