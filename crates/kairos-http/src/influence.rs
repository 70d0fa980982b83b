//! The closed loop of the influence zone (docs/decisions.md, "The influence
//! zone"): an incentive offer is given or held out at random and every such
//! decision is logged with the person's features and whether its
//! conversion followed; from that log
//!
//! - `POST /v1/models/{name}/train` `{"insight": "uplift", "offer": …}`
//!   trains an uplift model (Kairos' uplift learner) on the features the
//!   stream serves, registered so it scores every profile;
//! - `POST /v1/offers/{id}/evaluate` `{"uplift_score": …}` estimates, before
//!   it goes live, what the policy "give it where predicted uplift × value
//!   exceeds the cost" would earn, with off-policy estimators (IPW, SNIPW,
//!   DM, DR; `kairos_insights::ope`) — next to giving it to everyone and to
//!   no one.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kairos_deliver::decisions::{self, Offer};
use kairos_insights::ope::{self, LoggedDecision};
use kairos_insights::uplift::{self, Approach, Experiment, UpliftModel};
use kairos_models::{Mode, ModelSpec};
use kairos_store::IncentiveLog;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::admin::JsonBody;
use crate::auth::Admin;
use crate::models::{invalid, register};
use crate::problem::Problem;

/// Decisions read for training or evaluation (the log is scanned whole).
const DECISIONS_READ_MAX: usize = 1_000_000;
/// Fewest complete decisions, and of each arm, to learn from.
const LOGS_MIN: usize = 100;
const ARM_MIN: usize = 20;
/// The seed of the reward model's cross-fitting: the same log gives the
/// same estimates.
const EVALUATION_SEED: u64 = 7;

fn incentive_offer(state: &AppState, id: &str) -> Result<Offer, Problem> {
    let record = state.store.outbox.offer(id).ok_or_else(|| {
        Problem::not_found(format!("no offer {id}; list them with GET /v1/offers"))
    })?;
    let offer = decisions::compile(&record.id, record.version, &record.definition)
        .map_err(|error| invalid(error.message))?;
    if offer.incentive.is_none() {
        return Err(invalid(format!(
            "the offer {:?} is not an incentive: give it an \"incentive\" with a holdout first (docs/decisions.md)",
            offer.name
        )));
    }
    Ok(offer)
}

/// The offer's randomized decisions whose conversion window has ended.
fn complete_logs(state: &AppState, offer: &Offer) -> Result<Vec<IncentiveLog>, Problem> {
    let now = state.clock.now();
    let logs: Vec<IncentiveLog> = state
        .store
        .outbox
        .decisions(DECISIONS_READ_MAX)?
        .into_iter()
        .flat_map(|decision| decision.incentives)
        .filter(|log| log.offer == offer.id && log.window_ends <= now)
        .collect();
    let treated = logs.iter().filter(|log| log.treated).count();
    if logs.len() < LOGS_MIN || treated < ARM_MIN || logs.len() - treated < ARM_MIN {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_enough_history",
            "Not enough decisions to learn from",
            format!(
                "{} decisions of {:?} have a finished conversion window ({treated} given, {} held out); \
                 at least {LOGS_MIN}, and {ARM_MIN} of each, are needed — decide more, or wait for the windows to end",
                logs.len(),
                offer.name,
                logs.len() - treated
            ),
        ));
    }
    Ok(logs)
}

/// Missing values (NaN) as 0, the way the rows were built.
fn row(log: &IncentiveLog) -> Vec<f64> {
    log.features
        .iter()
        .map(|value| if value.is_finite() { *value } else { 0.0 })
        .collect()
}

/// `POST /v1/models/{name}/train` with `"insight": "uplift"`.
pub(crate) async fn train_uplift(
    state: AppState,
    name: String,
    mode: Mode,
    offer: Option<String>,
) -> Result<Response, Problem> {
    let Some(offer) = offer else {
        return Err(invalid(
            "an uplift model needs `offer`: the incentive offer whose randomized decisions it learns from",
        ));
    };
    let offer = incentive_offer(&state, &offer)?;
    let incentive = offer.incentive.clone().expect("an incentive offer");
    if incentive.features.is_empty() {
        return Err(invalid(format!(
            "the offer {:?} logs no features: give its incentive \"features\" (trait.<name>, computed.<name>)",
            offer.name
        )));
    }
    let logs = complete_logs(&state, &offer)?;
    let summary = arms(&logs);
    let names = incentive.features.clone();
    let model = tokio::task::spawn_blocking(move || {
        let rows: Vec<Vec<f64>> = logs.iter().map(row).collect();
        let treated: Vec<bool> = logs.iter().map(|log| log.treated).collect();
        let outcomes: Vec<bool> = logs.iter().map(|log| log.converted).collect();
        let experiment = Experiment {
            rows: &rows,
            treated: &treated,
            outcomes: &outcomes,
        };
        uplift::fit(&experiment, Approach::DEFAULT, names)
    })
    .await
    .map_err(|error| Problem::internal("uplift training", error))?;
    let spec = ModelSpec {
        name,
        version: 0,
        format: "uplift".into(),
        inputs: incentive.features.clone(),
        mode,
        created_at: state.clock.now(),
        model: serde_json::to_value(&model).expect("a model serializes"),
    };
    let mut answer = register(&state, spec)?;
    answer["training"] = summary;
    Ok((StatusCode::CREATED, axum::Json(answer)).into_response())
}

/// Per arm: decisions, conversions, rate; and the observed uplift.
fn arms(logs: &[IncentiveLog]) -> Value {
    let arm = |treated: bool| {
        let arm: Vec<&IncentiveLog> = logs.iter().filter(|log| log.treated == treated).collect();
        let conversions = arm.iter().filter(|log| log.converted).count();
        let rate = conversions as f64 / arm.len().max(1) as f64;
        (
            json!({"decisions": arm.len(), "conversions": conversions, "rate": rate}),
            rate,
        )
    };
    let ((given, given_rate), (held, held_rate)) = (arm(true), arm(false));
    json!({"rows": logs.len(), "given": given, "held_out": held, "observed_uplift": given_rate - held_rate})
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluateBody {
    /// The uplift model (registered, any mode) whose policy is evaluated.
    uplift_score: String,
}

/// `POST /v1/offers/{id}/evaluate`
pub async fn evaluate(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<EvaluateBody>,
) -> Result<Response, Problem> {
    let offer = incentive_offer(&state, &id)?;
    let incentive = offer.incentive.clone().expect("an incentive offer");
    let model = uplift_model(&state, &body.uplift_score)?;
    if model.feature_names != incentive.features {
        return Err(invalid(format!(
            "the model {:?} reads {:?}, the offer's log has {:?}: train it on this offer",
            body.uplift_score, model.feature_names, incentive.features
        )));
    }
    let logs = complete_logs(&state, &offer)?;
    let (value, cost) = (offer.value, incentive.cost);
    let answer = tokio::task::spawn_blocking(move || {
        let decisions: Vec<LoggedDecision> = logs
            .iter()
            .map(|log| LoggedDecision {
                context: row(log),
                action_affinity: Vec::new(),
                action: usize::from(log.treated),
                reward: if log.converted { 1.0 } else { 0.0 },
                propensity: log.propensity,
            })
            .collect();
        let gives: Vec<f64> = logs
            .iter()
            .map(|log| f64::from(u8::from(model.predict(&row(log)).uplift * value > cost)))
            .collect();
        let policy = |give: &dyn Fn(usize) -> f64| {
            let target: Vec<Vec<f64>> = (0..decisions.len())
                .map(|index| vec![1.0 - give(index), give(index)])
                .collect();
            let give_rate = (0..decisions.len()).map(give).sum::<f64>() / decisions.len() as f64;
            let estimates = ope::evaluate(&decisions, &target, &[vec![0.0], vec![1.0]], EVALUATION_SEED);
            let by_estimator: serde_json::Map<String, Value> = estimates
                .iter()
                .map(|estimate| {
                    let net = |rate: f64| value * rate - cost * give_rate;
                    (estimate.estimator.name().to_string(), json!({
                        "conversion_rate": estimate.value, "interval": [estimate.low, estimate.high],
                        "net_value_per_decision": net(estimate.value),
                        "net_value_interval": [net(estimate.low), net(estimate.high)],
                    }))
                })
                .collect();
            json!({"give_rate": give_rate, "estimates": by_estimator})
        };
        json!({
            "decisions": decisions.len(),
            "policy": policy(&|index| gives[index]),
            "give_to_all": policy(&|_| 1.0),
            "give_to_none": policy(&|_| 0.0),
            "logged": arms(&logs),
        })
    })
    .await
    .map_err(|error| Problem::internal("policy evaluation", error))?;
    Ok(axum::Json(answer).into_response())
}

/// The newest version of an uplift model, whatever its mode.
fn uplift_model(state: &AppState, name: &str) -> Result<UpliftModel, Problem> {
    let spec: ModelSpec = state
        .store
        .models
        .versions(name)
        .into_iter()
        .filter_map(|record| serde_json::from_value::<ModelSpec>(record).ok())
        .filter(|spec| spec.format == "uplift")
        .max_by_key(|spec| spec.version)
        .ok_or_else(|| {
            Problem::not_found(format!(
                "no uplift model {name}; train one with POST /v1/models/{name}/train {{\"insight\": \"uplift\", \"offer\": …}}"
            ))
        })?;
    serde_json::from_value(spec.model).map_err(|error| Problem::internal("uplift model", error))
}
