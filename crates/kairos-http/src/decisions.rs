//! Offers and decisions (docs/decisions.md): `POST/GET/PUT/DELETE
//! /v1/offers`, `POST /v1/decide`.
//!
//! An offer whose eligibility reads behaviour (counts, sums, sequences in
//! windows) owns an audience (`offer <name>`) the engine keeps exact per
//! event; its other conditions are evaluated at the decision. A decision
//! reads the profile after every event acknowledged before the call.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use kairos_deliver::decisions::{self, Eligibility, Request};
use kairos_store::{DefinitionKind, OfferRecord};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::admin::JsonBody;
use crate::auth::Admin;
use crate::definitions;
use crate::problem::Problem;
use crate::profiles::identifier;

/// Largest `context` of a decision (JSON bytes).
const CONTEXT_BYTES_MAX: usize = 16 * 1024;

fn offer_problem(error: decisions::offer::OfferError) -> Problem {
    let mut problem = Problem::bad_request("offer_invalid", error.message);
    problem.position = error
        .position
        .map(|(line, column)| (line as u32, column as u32));
    problem
}

/// Compiles a submitted definition and checks what it names exists.
fn checked(state: &AppState, definition: &Value) -> Result<decisions::Offer, Problem> {
    if definition.to_string().len() > decisions::offer::OFFER_BYTES_MAX {
        return Err(Problem::bad_request(
            "offer_invalid",
            format!(
                "an offer is at most {} bytes of JSON",
                decisions::offer::OFFER_BYTES_MAX
            ),
        ));
    }
    let offer = decisions::compile("off_new", 1, definition).map_err(offer_problem)?;
    if let Some(link) = &offer.experiment {
        check_experiment(state, link)?;
    }
    if let Some(Eligibility::Profile(expr)) = &offer.eligibility {
        let references = kairos_core::audience::References::of(expr);
        if let Some(missing) = crate::references::missing(state, &references, None) {
            return Err(Problem::bad_request(
                "offer_invalid",
                format!("eligibility: {missing}"),
            ));
        }
    }
    Ok(offer)
}

/// An offer's experiment exists and each variant names one of its arms.
fn check_experiment(
    state: &AppState,
    link: &decisions::offer::ExperimentLink,
) -> Result<(), Problem> {
    let invalid = |detail: String| Problem::bad_request("offer_invalid", detail);
    let Some(record) = state.store.outbox.experiment(&link.name) else {
        return Err(invalid(format!(
            "experiment.name: no experiment {:?}; create it first (POST /v1/experiments)",
            link.name
        )));
    };
    let definition = kairos_deliver::experiments::Definition::parse(&record.definition)
        .map_err(|error| Problem::internal("a stored experiment", error))?;
    let arms = definition.arm_names();
    if let Some(unknown) = link.variants.keys().find(|arm| !arms.contains(arm)) {
        return Err(invalid(format!(
            "experiment.variants.{unknown}: not an arm of {:?}; its arms are {}",
            link.name,
            arms.join(", ")
        )));
    }
    Ok(())
}

fn eligibility_text(definition: &Value) -> Option<&str> {
    definition.get("eligibility").and_then(Value::as_str)
}

/// `POST /v1/offers`
pub async fn create_offer(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(definition): JsonBody<Value>,
) -> Result<Response, Problem> {
    let record = create(&state, definition).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(decisions::describe(&record)),
    )
        .into_response())
}

/// Creates an offer as `POST /v1/offers` does (also the config file's
/// `[[offers]]` at start).
pub async fn create(state: &AppState, definition: Value) -> Result<OfferRecord, Problem> {
    let offer = checked(state, &definition)?;
    if state.store.outbox.offer(&offer.name).is_some() {
        return Err(kairos_store::StoreError::NameTaken {
            thing: "offer",
            name: offer.name.clone(),
        }
        .into());
    }
    if state.store.outbox.offers().len() >= decisions::offer::OFFERS_MAX {
        return Err(Problem::conflict(
            "offers_full",
            format!(
                "the catalog holds at most {} offers; delete some first",
                decisions::offer::OFFERS_MAX
            ),
        ));
    }
    if let (Some(Eligibility::Audience(audience)), Some(text)) =
        (&offer.eligibility, eligibility_text(&definition))
    {
        let (program, _) = definitions::create(state, DefinitionKind::Audience, audience, text)?;
        definitions::install(state, program).await?;
    }
    // Responses (and this offer's conversion event) are handed to the
    // effects stage from now on.
    state
        .engine
        .widen_effects_interest(decisions::response_event_names(std::slice::from_ref(
            &offer,
        )));
    Ok(state
        .store
        .outbox
        .create_offer(&offer.name, definition, state.clock.now())?)
}

/// `GET /v1/offers`
pub async fn list_offers(_: Admin, State(state): State<AppState>) -> Result<Response, Problem> {
    let offers: Vec<Value> = state
        .store
        .outbox
        .offers()
        .iter()
        .map(|record| with_stats(&state, record))
        .collect();
    Ok(axum::Json(json!({"offers": offers})).into_response())
}

/// An offer with its response counts per placement.
fn with_stats(state: &AppState, record: &kairos_store::OfferRecord) -> Value {
    let mut answer = decisions::describe(record);
    answer["stats"] = json!(state.store.outbox.offer_stats(&record.id));
    answer
}

fn existing(state: &AppState, id: &str) -> Result<kairos_store::OfferRecord, Problem> {
    state
        .store
        .outbox
        .offer(id)
        .ok_or_else(|| Problem::not_found(format!("no offer {id}; list them with GET /v1/offers")))
}

/// `GET /v1/offers/{id}`
pub async fn get_offer(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let record = existing(&state, &id)?;
    Ok(axum::Json(with_stats(&state, &record)).into_response())
}

/// `PUT /v1/offers/{id}`: a new version (the name stays).
pub async fn change_offer(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(definition): JsonBody<Value>,
) -> Result<Response, Problem> {
    let record = existing(&state, &id)?;
    let record = change(&state, &record, definition).await?;
    Ok(axum::Json(decisions::describe(&record)).into_response())
}

/// Changes an offer as `PUT /v1/offers/{id}` does (also the config file's
/// `[[offers]]` at start): a new version, its owned audience made,
/// changed or deleted to match.
pub async fn change(
    state: &AppState,
    record: &OfferRecord,
    definition: Value,
) -> Result<OfferRecord, Problem> {
    let id = record.id.clone();
    let offer = checked(state, &definition)?;
    if offer.name != record.name {
        return Err(Problem::bad_request(
            "offer_invalid",
            format!(
                "name: an offer keeps its name ({:?}); create a new offer for a new name",
                record.name
            ),
        ));
    }
    let owned = decisions::eligibility_audience(&record.name);
    let stored = state
        .store
        .definitions
        .get(DefinitionKind::Audience, &owned);
    match (&offer.eligibility, eligibility_text(&definition), stored) {
        (Some(Eligibility::Audience(_)), Some(text), Some(audience))
            if audience.definition == text => {}
        (Some(Eligibility::Audience(_)), Some(text), Some(audience)) => {
            let (program, _) =
                definitions::change(state, DefinitionKind::Audience, &audience.id, text)?;
            definitions::install(state, program).await?;
        }
        (Some(Eligibility::Audience(audience)), Some(text), None) => {
            let (program, _) =
                definitions::create(state, DefinitionKind::Audience, audience, text)?;
            definitions::install(state, program).await?;
        }
        (_, _, Some(audience)) => {
            definitions::delete(state, DefinitionKind::Audience, &audience.id).await?;
        }
        _ => {}
    }
    state
        .engine
        .widen_effects_interest(decisions::response_event_names(std::slice::from_ref(
            &offer,
        )));
    state
        .store
        .outbox
        .change_offer(&record.id, definition, state.clock.now())?
        .ok_or_else(|| Problem::not_found(format!("no offer {id}")))
}

/// `DELETE /v1/offers/{id}`: no longer decided; its counts and the
/// decisions that named it stay (responses to them still count).
pub async fn delete_offer(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let record = existing(&state, &id)?;
    let owned = decisions::eligibility_audience(&record.name);
    if let Some(audience) = state
        .store
        .definitions
        .get(DefinitionKind::Audience, &owned)
    {
        definitions::delete(&state, DefinitionKind::Audience, &audience.id).await?;
    }
    state.store.outbox.delete_offer(&record.id)?;
    Ok(axum::Json(json!({"id": record.id, "deleted": true})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecideBody {
    /// `type:value`.
    profile: String,
    placement: String,
    #[serde(default)]
    context: Option<Value>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    explain: bool,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    diversity: Option<Diversity>,
    /// `false`: rank by posterior means instead of Thompson samples.
    #[serde(default)]
    explore: Option<bool>,
    /// `/v1/in-app/decide` only: the identity token for `profile`
    /// (required unless it is an anonymous id).
    #[serde(default)]
    token: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Diversity {
    max_per_category: usize,
}

/// `POST /v1/decide`
pub async fn decide(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<DecideBody>,
) -> Result<Response, Problem> {
    if body.token.is_some() {
        return Err(Problem::bad_request(
            "decide_invalid",
            "token: only pages send one (POST /v1/in-app/decide); the admin token decides for anyone",
        ));
    }
    let request = decide_request(&state, &body)?;
    decided(&state, &body, request).await
}

/// `POST /v1/in-app/decide`: a page decides for its visitor with the
/// source's write key — as its own anonymous id, or as an identified person
/// with the identity token its backend minted (as the in-app stream). A
/// page without a token gets content rendered without the person's traits.
pub async fn page_decide(
    State(state): State<AppState>,
    RawQuery(raw_query): RawQuery,
    headers: HeaderMap,
    JsonBody(body): JsonBody<DecideBody>,
) -> Result<Response, Problem> {
    let source = crate::auth::page_source(&state, &headers, raw_query.as_deref())?;
    let who = identifier(&body.profile)?;
    let verified = crate::auth::page_identity(
        &source.record,
        &body.profile,
        &who,
        body.token.as_deref(),
        "deciding",
    )?;
    if body.explain {
        return Err(Problem::bad_request(
            "decide_invalid",
            "explain: only with the admin token (POST /v1/decide); a page may not read why",
        ));
    }
    let mut request = decide_request(&state, &body)?;
    request.personal = verified;
    decided(&state, &body, request).await
}

async fn decided(
    state: &AppState,
    body: &DecideBody,
    request: Request,
) -> Result<Response, Problem> {
    let who = identifier(&body.profile)?;
    let Some(deliverer) = &state.deliverer else {
        return Err(Problem::of(
            kairos_core::error::ErrorKind::Stopped,
            "decisions need the delivery stage, which does not run here",
        ));
    };
    // After every event acknowledged before this call.
    let view = std::sync::Arc::new(state.engine.profile(who.clone()).await?.unwrap_or_else(|| {
        // Someone Kairos has not seen: decided on what is known (nothing).
        kairos_engine::ProfileView {
            identities: vec![who.clone()],
            ..Default::default()
        }
    }));
    let context = body.context.clone().unwrap_or_else(|| json!({}));
    let store = state.store.clone();
    // Content may embed recommendations: with the person's history when
    // the caller may read it, else from the session without showing it.
    let mut request = request;
    request.recommendations = Some(kairos_deliver::render::Recommendations::from_engine(
        state.engine.clone(),
        Some(who.clone()),
        request.personal,
    ));
    request.experiments = Some(experiment_assigner(state, &who, &view));
    let identifier_text = format!("{}:{}", who.kind, who.value);
    let decision = decisions::decide(
        &store,
        deliverer.catalog(),
        &identifier_text,
        &view,
        &request,
        &context,
        body.explain,
    )?;
    Ok(axum::Json(decision).into_response())
}

/// Exposes the person to the experiments of the offers a decision shows
/// (`kairos_deliver::experiments::assign`, as journeys' `decide` steps:
/// sticky, merges keep the first exposure), at what is durable now.
fn experiment_assigner(
    state: &AppState,
    who: &kairos_core::identity::Identifier,
    view: &std::sync::Arc<kairos_engine::ProfileView>,
) -> decisions::arbitrate::Assigner {
    let exposing = kairos_deliver::experiments::Exposing::new(
        who,
        Some(view.as_ref()),
        state.clock.now(),
        state.store.writer.committed_seq(),
    );
    kairos_deliver::experiments::assigner(
        state.store.clone(),
        state.engine.clone(),
        who.clone(),
        exposing,
        None,
    )
}

fn decide_request(state: &AppState, body: &DecideBody) -> Result<Request, Problem> {
    let invalid = |detail: String| Problem::bad_request("decide_invalid", detail);
    let placement = body.placement.trim();
    if placement.is_empty() || placement.len() > 200 {
        return Err(invalid(
            "placement: expected 1 to 200 characters (e.g. \"home_hero\")".into(),
        ));
    }
    let limit = body.limit.unwrap_or(1);
    if !(1..=decisions::ACTIONS_MAX).contains(&limit) {
        return Err(invalid(format!(
            "limit: expected 1 to {}",
            decisions::ACTIONS_MAX
        )));
    }
    let context = body.context.clone().unwrap_or_else(|| json!({}));
    if !context.is_object() {
        return Err(invalid("context: expected a JSON object".into()));
    }
    if context.to_string().len() > CONTEXT_BYTES_MAX {
        return Err(invalid(format!(
            "context: at most {CONTEXT_BYTES_MAX} bytes of JSON"
        )));
    }
    let mut weights = std::collections::BTreeMap::new();
    if let Some(given) = context.get("weights") {
        let Some(given) = given.as_object() else {
            return Err(invalid(
                "context.weights: expected an object of numbers, e.g. {\"shoes\": 2}".into(),
            ));
        };
        for (key, value) in given {
            match value.as_f64() {
                Some(weight) if weight.is_finite() && weight >= 0.0 => {
                    weights.insert(key.clone(), weight);
                }
                _ => {
                    return Err(invalid(format!(
                        "context.weights.{key}: expected a number >= 0"
                    )));
                }
            }
        }
    }
    if let Some(channel) = &body.channel
        && !decisions::offer::CHANNELS.contains(&channel.as_str())
    {
        return Err(invalid(format!(
            "channel: expected one of {}",
            decisions::offer::CHANNELS.join(", ")
        )));
    }
    let max_per_category = match &body.diversity {
        Some(diversity) if diversity.max_per_category == 0 => {
            return Err(invalid(
                "diversity.max_per_category: expected at least 1".into(),
            ));
        }
        Some(diversity) => Some(diversity.max_per_category),
        None => None,
    };
    Ok(Request {
        placement: placement.to_string(),
        channel: body.channel.clone(),
        prefer_channel: None,
        weights,
        limit,
        max_per_category,
        explore: body.explore.unwrap_or(true),
        personal: true,
        now: state.clock.now(),
        recommendations: None,
        experiments: None,
    })
}
