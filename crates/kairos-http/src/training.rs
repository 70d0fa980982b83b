//! Training on Kairos' own data (docs/models.md, "Training on your data"):
//!
//! - `POST /v1/training-rows` `{"features": [...], "label": {"event",
//!   "within"}, "at": [...]}` → CSV, one row per moment a model would have
//!   scored, with the features as serving computed them then
//!   (`kairos_models::training`) and whether the label event followed;
//! - `POST /v1/models/{name}/train` — the same request, plus `"mode"` and
//!   `"search"` (`"quick"` | `"thorough"`): Kairos' propensity trainer on
//!   those rows, every choice by cross-validation, and the result registered
//!   as a new version of `name` (shadow unless `"mode": "active"`), reading
//!   the same feature names, so it scores live events at once;
//!   `"insight": "churn"` instead fits BG/NBD to every person's orders up
//!   to the engine's clock (P(alive) and expected purchases per profile);
//!   `"insight": "uplift"` with `"offer"` learns from an incentive offer's
//!   randomized decisions (crate::influence).

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kairos_core::Event;
use kairos_insights::bgnbd::{self, CustomerSummary};
use kairos_insights::propensity::{self, Search};
use kairos_models::training::{LabelSpec, PersonRows, RowPlan, RowSpec, Rows};
use kairos_models::{FeatureState, Mode, ModelSpec};
use serde::Deserialize;
use serde_json::json;

use crate::AppState;
use crate::admin::JsonBody;
use crate::auth::Admin;
use crate::models::{checked_name, invalid, register};
use crate::problem::Problem;

/// Fewest rows, and of each label, a model is trained on.
const ROWS_MIN: usize = 50;
const CLASS_MIN: usize = 5;

/// `POST /v1/training-rows`
pub async fn training_rows(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(spec): JsonBody<RowSpec>,
) -> Result<Response, Problem> {
    let plan = RowPlan::new(spec).map_err(invalid)?;
    let rows = build_rows(&state, &plan).await?;
    let mut response = rows.to_csv(&plan.names).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    for (name, count) in [
        ("kairos-rows", rows.rows.len()),
        ("kairos-positive-rows", rows.positives()),
        ("kairos-censored-rows", rows.censored),
    ] {
        headers.insert(name, HeaderValue::from(count));
    }
    Ok(response)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainRequest {
    #[serde(default)]
    insight: Insight,
    features: Option<Vec<String>>,
    label: Option<LabelSpec>,
    #[serde(default)]
    at: Option<Vec<String>>,
    mode: Option<Mode>,
    #[serde(default)]
    search: SearchName,
    /// Churn: the weeks `<name>_expected` looks ahead.
    horizon_weeks: Option<f64>,
    /// Uplift: the incentive offer whose randomized decisions (given or
    /// held out, and whether its conversion followed) are the rows.
    offer: Option<String>,
}

/// What is trained.
#[derive(Deserialize, Default, Clone, Copy, PartialEq)]
#[serde(rename_all = "snake_case")]
enum Insight {
    /// Will this moment lead to the label event? (features + label)
    #[default]
    Propensity,
    /// BG/NBD over every person's orders: P(alive), expected purchases.
    Churn,
    /// Who an incentive moves: from its randomized decisions.
    Uplift,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum SearchName {
    #[default]
    Quick,
    Thorough,
}

/// `POST /v1/models/{name}/train`
pub async fn train_model(
    _: Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
    JsonBody(request): JsonBody<TrainRequest>,
) -> Result<Response, Problem> {
    let name = checked_name(&name)?.to_string();
    let mode = request.mode.unwrap_or(Mode::Shadow);
    if mode == Mode::Retired {
        return Err(invalid("mode: a new version is \"shadow\" or \"active\""));
    }
    if request.offer.is_some() && request.insight != Insight::Uplift {
        return Err(invalid("offer: only for \"insight\": \"uplift\""));
    }
    match request.insight {
        Insight::Propensity => train_propensity(state, name, mode, request).await,
        Insight::Churn => train_churn(state, name, mode, request).await,
        Insight::Uplift => crate::influence::train_uplift(state, name, mode, request.offer).await,
    }
}

async fn train_propensity(
    state: AppState,
    name: String,
    mode: Mode,
    request: TrainRequest,
) -> Result<Response, Problem> {
    let (Some(features), Some(label)) = (request.features, request.label) else {
        return Err(invalid(
            "a propensity model needs `features` (e.g. [\"session.product_views\"]) and `label` ({\"event\": \"Order Completed\", \"within\": \"30m\"})",
        ));
    };
    if request.horizon_weeks.is_some() {
        return Err(invalid("horizon_weeks: only for \"insight\": \"churn\""));
    }
    let plan = RowPlan::new(RowSpec {
        features,
        label,
        at: request.at,
    })
    .map_err(invalid)?;
    let rows = build_rows(&state, &plan).await?;
    let positives = rows.positives();
    let negatives = rows.rows.len() - positives;
    if rows.rows.len() < ROWS_MIN || positives < CLASS_MIN || negatives < CLASS_MIN {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_enough_history",
            "Not enough history to train on",
            format!(
                "the stored events give {} rows ({positives} where the label followed, {negatives} where it did not, {} still within their horizon); training needs at least {ROWS_MIN} rows and {CLASS_MIN} of each label — send more events, or widen `at` / `label.within`",
                rows.rows.len(),
                rows.censored
            ),
        ));
    }
    let search = match request.search {
        SearchName::Quick => Search::quick(),
        SearchName::Thorough => Search::thorough(),
    };
    let names = plan.names.clone();
    let censored = rows.censored;
    let (model, choices, row_count) = tokio::task::spawn_blocking(move || {
        let labels: Vec<bool> = rows.rows.iter().map(|row| row.label).collect();
        let values: Vec<Vec<f64>> = rows.rows.into_iter().map(|row| row.values).collect();
        let (model, choices) = propensity::train(&values, &labels, names, &search, &mut |_| {});
        (model, choices, labels.len())
    })
    .await
    .map_err(|error| Problem::internal("training", error))?;
    let chosen = &choices.candidates[choices.chosen];
    let training = json!({
        "rows": row_count, "positive_rows": positives, "censored_rows": censored,
        "folds": choices.folds, "cv_auc": finite(choices.cv_auc),
        "cv_f1": finite(choices.cv_f1_at_threshold), "threshold": model.threshold,
        "trees": chosen.best_trees, "max_depth": chosen.params.max_depth,
        "averaged_fits": choices.seeds,
    });
    let spec = ModelSpec {
        name,
        version: 0,
        format: "propensity".into(),
        inputs: plan.names.clone(),
        mode,
        created_at: state.clock.now(),
        model: serde_json::to_value(&model).expect("a model serializes"),
    };
    let mut answer = register(&state, spec)?;
    answer["training"] = training;
    Ok((StatusCode::CREATED, axum::Json(answer)).into_response())
}

/// BG/NBD fitted to every person's orders up to the engine's clock (the
/// calibration end), from the same stream features that serve it.
async fn train_churn(
    state: AppState,
    name: String,
    mode: Mode,
    request: TrainRequest,
) -> Result<Response, Problem> {
    if request.features.is_some() || request.label.is_some() || request.at.is_some() {
        return Err(invalid(
            "churn reads every person's orders (Order Completed); it takes no `features`, `label` or `at`",
        ));
    }
    let horizon_weeks = request.horizon_weeks.unwrap_or(13.0);
    if !(horizon_weeks > 0.0 && horizon_weeks <= 520.0) {
        return Err(invalid(
            "horizon_weeks: the weeks expected purchases look ahead, above 0 and at most 520",
        ));
    }
    let summaries = purchase_summaries(&state).await?;
    let repeaters = summaries
        .iter()
        .filter(|summary| summary.frequency > 0.0)
        .count();
    if summaries.len() < ROWS_MIN || repeaters < CLASS_MIN {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_enough_history",
            "Not enough history to train on",
            format!(
                "{} people have ordered ({repeaters} more than once); BG/NBD needs at least {ROWS_MIN} customers and {CLASS_MIN} repeat buyers — send more Order Completed events",
                summaries.len()
            ),
        ));
    }
    let customers = summaries.len();
    let (params, log_likelihood) = tokio::task::spawn_blocking(move || {
        let params = bgnbd::fit(&summaries);
        (params, bgnbd::log_likelihood(&params, &summaries))
    })
    .await
    .map_err(|error| Problem::internal("training", error))?;
    let spec = ModelSpec {
        name,
        version: 0,
        format: "bgnbd".into(),
        inputs: [
            "profile.repeat_order_days",
            "profile.order_recency_weeks",
            "profile.order_age_weeks",
        ]
        .map(String::from)
        .to_vec(),
        mode,
        created_at: state.clock.now(),
        model: json!({"r": params.r, "alpha": params.alpha, "a": params.a, "b": params.b,
                      "horizon_weeks": horizon_weeks}),
    };
    let mut answer = register(&state, spec)?;
    answer["training"] = json!({
        "customers": customers, "repeat_customers": repeaters,
        "calibration_end": state.engine.now(), "r": params.r, "alpha": params.alpha,
        "a": params.a, "b": params.b, "log_likelihood": finite(log_likelihood),
    });
    Ok((StatusCode::CREATED, axum::Json(answer)).into_response())
}

fn finite(value: f64) -> serde_json::Value {
    if value.is_finite() {
        json!(value)
    } else {
        serde_json::Value::Null
    }
}

/// Each person who has ordered: BG/NBD's statistics as of the engine's clock.
async fn purchase_summaries(state: &AppState) -> Result<Vec<CustomerSummary>, Problem> {
    let now = state.engine.now();
    let (states, _) = over_log(
        state,
        |people| vec![FeatureState::default(); people],
        |states, person, _, event| states[person].observe(event),
    )
    .await?;
    Ok(states
        .iter()
        .filter_map(|features| features.purchase_summary(now))
        .collect())
}

/// Every profile's stored events through the plan, up to the engine's
/// clock (rows whose horizon has not passed are counted, not kept).
async fn build_rows(state: &AppState, plan: &RowPlan) -> Result<Rows, Problem> {
    let now = state.engine.now();
    let reading = plan.clone();
    let ((people, mut rows), _) = over_log(
        state,
        |people| {
            let open: Vec<PersonRows> = (0..people).map(|_| PersonRows::default()).collect();
            (open, Rows::default())
        },
        move |(people, rows), person, profile, event| {
            people[person].observe(&reading, profile, event, rows);
        },
    )
    .await?;
    for person in people {
        person.finish(plan, now, &mut rows);
    }
    Ok(rows)
}

/// Log pages read at a time.
const LOG_PAGE: usize = 10_000;

/// Folds `visit` over every profile's stored events in log order — the
/// log read once, front to back (one decode per stored chunk, not one per
/// event), off the async threads. `init` gets the number of profiles;
/// `visit` gets a profile's index and id. Events removed by retention or
/// erasure are simply not there.
async fn over_log<T: Send + 'static>(
    state: &AppState,
    init: impl FnOnce(usize) -> T,
    visit: impl Fn(&mut T, usize, &str, &Event) + Send + 'static,
) -> Result<(T, Vec<String>), Problem> {
    let histories = state.engine.histories().await?;
    let mut owners: Vec<(u64, u32)> = histories
        .iter()
        .enumerate()
        .flat_map(|(person, (_, seqs))| seqs.iter().map(move |seq| (*seq, person as u32)))
        .collect();
    owners.sort_unstable();
    let profiles: Vec<String> = histories.into_iter().map(|(profile, _)| profile).collect();
    let mut folded = init(profiles.len());
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || -> Result<(T, Vec<String>), Problem> {
        let upto = owners.last().map_or(0, |(seq, _)| *seq);
        let (mut after, mut next) = (0, 0);
        loop {
            let page = store.log.read_after(after, upto, LOG_PAGE, None)?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for stored in page {
                while owners.get(next).is_some_and(|(seq, _)| *seq < stored.seq) {
                    next += 1;
                }
                if let Some((seq, person)) = owners.get(next)
                    && *seq == stored.seq
                {
                    let person = *person as usize;
                    visit(&mut folded, person, &profiles[person], &stored.decode()?);
                }
            }
        }
        Ok((folded, profiles))
    })
    .await
    .map_err(|error| Problem::internal("reading stored histories", error))?
}
