//! The probabilistic matcher on live profiles (`kairos_core::matching`):
//! `POST /v1/admin/matching/run` compares every profile with enough traits
//! (names, date of birth, address, ...), merges pairs above the threshold
//! and keeps the pairs in the review band as suggestions, which
//! `GET /v1/admin/matching/suggestions` lists and a reviewer accepts or
//! rejects.
//!
//! A merge is a `Profiles Matched` event of the source `kairos-matcher`
//! naming one identifier of each profile (`context.externalIds`): durable,
//! replayed like any event, and subject to the identity rules (a merge that
//! would break a limit — two user ids — is refused as for any event).
//! Suggestions are derived data kept in memory: the next run recomputes
//! them (they would otherwise be one more place an erased person's
//! identifiers could linger).
//!
//! The m parameters a run estimated are kept in the store when they are
//! the best supported so far, and later runs (over the residue a merge
//! leaves, mostly different people) reuse them rather than fit EM where
//! the duplicates no longer are; see `kairos_core::matching`.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use kairos_core::identity::Identifier;
use kairos_core::matching::{MatchConfig, ParameterSource, dedupe};
use serde::Serialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::Admin;
use crate::internal::append_internal;
use crate::privacy::addressed_to;
use crate::problem::Problem;

/// Source name of the matcher's merge events.
pub const MATCHER_SOURCE: &str = "kairos-matcher";

#[derive(Debug, Clone, Serialize)]
pub struct MatchedProfile {
    pub profile_id: String,
    pub identifier: Identifier,
}

/// A pair just below the threshold, for a person to decide.
#[derive(Debug, Clone, Serialize)]
pub struct Suggestion {
    pub id: String,
    pub a: MatchedProfile,
    pub b: MatchedProfile,
    /// Evidence in bits; `threshold` is where merging starts.
    pub score: f64,
    pub threshold: f64,
    pub created_at: Timestamp,
}

/// The last run's suggestions.
#[derive(Default)]
pub struct MatchState {
    suggestions: std::sync::Mutex<Vec<Suggestion>>,
    next_id: AtomicU64,
}

/// `POST /v1/admin/matching/run`
pub async fn run(_: Admin, State(state): State<AppState>) -> Result<Response, Problem> {
    let candidates = state.engine.match_candidates().await?;
    let records: Vec<_> = candidates
        .iter()
        .map(|candidate| candidate.record.clone())
        .collect();
    let kept = state.store.definitions.matching_parameters();
    let started = std::time::Instant::now();
    let linkage = tokio::task::spawn_blocking(move || {
        dedupe(&records, &MatchConfig::default(), kept.as_ref())
    })
    .await
    .map_err(|error| Problem::internal("matching profiles", error))?;
    let seconds = started.elapsed().as_secs_f64();
    if linkage.source == ParameterSource::Estimated {
        state
            .store
            .definitions
            .save_matching_parameters(&linkage.parameters)?;
    }
    let profile = |index: usize| MatchedProfile {
        profile_id: candidates[index].profile_id.clone(),
        identifier: candidates[index].identifier.clone(),
    };
    let events: Vec<Value> = linkage
        .links
        .iter()
        .map(|link| {
            merge_event(
                &profile(link.a),
                &profile(link.b),
                link.score,
                linkage.threshold,
            )
        })
        .collect();
    let outcome = append_internal(&state, MATCHER_SOURCE, events).await?;
    let now = state.clock.now();
    let suggestions: Vec<Suggestion> = linkage
        .review
        .iter()
        .map(|link| Suggestion {
            id: format!(
                "sug_{}",
                state.matching.next_id.fetch_add(1, Ordering::Relaxed) + 1
            ),
            a: profile(link.a),
            b: profile(link.b),
            score: link.score,
            threshold: linkage.threshold,
            created_at: now,
        })
        .collect();
    let suggested = suggestions.len();
    *state.matching.suggestions.lock().expect("suggestions lock") = suggestions;
    Ok(axum::Json(json!({
        "profiles_compared": candidates.len(),
        "candidate_pairs": linkage.candidate_pairs,
        "threshold_bits": linkage.threshold,
        "match_share": linkage.match_share,
        "parameters": linkage.source,
        "parameters_support": linkage.parameters.support,
        "links": linkage.links.len(),
        "merge_events": outcome.accepted + outcome.duplicates,
        "suggestions": suggested,
        "seconds": seconds,
    }))
    .into_response())
}

fn merge_event(a: &MatchedProfile, b: &MatchedProfile, score: f64, threshold: f64) -> Value {
    let mut event = addressed_to(&a.identifier);
    let mut external = addressed_to(&b.identifier)["context"]["externalIds"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if external.is_empty() {
        // user_id / anonymous_id of b: name it as an external id too.
        external.push(json!({"id": b.identifier.value, "type": b.identifier.kind, "collection": "users", "encoding": "none"}));
    }
    let ids = event["context"]["externalIds"].as_array_mut();
    match ids {
        Some(ids) => ids.extend(external),
        None => event["context"]["externalIds"] = Value::Array(external),
    }
    event["type"] = json!("track");
    event["event"] = json!("Profiles Matched");
    event["properties"] = json!({
        "profiles": [a.profile_id, b.profile_id],
        "score_bits": score,
        "threshold_bits": threshold,
    });
    event
}

/// `GET /v1/admin/matching/suggestions`
pub async fn list_suggestions(_: Admin, State(state): State<AppState>) -> Response {
    let suggestions = state
        .matching
        .suggestions
        .lock()
        .expect("suggestions lock")
        .clone();
    axum::Json(json!({ "suggestions": suggestions })).into_response()
}

fn take_suggestion(state: &AppState, id: &str) -> Result<Suggestion, Problem> {
    let mut suggestions = state.matching.suggestions.lock().expect("suggestions lock");
    let position = suggestions
        .iter()
        .position(|suggestion| suggestion.id == id)
        .ok_or_else(|| {
            Problem::not_found(format!(
                "no suggestion {id}; list them with GET /v1/admin/matching/suggestions"
            ))
        })?;
    Ok(suggestions.remove(position))
}

/// `POST /v1/admin/matching/suggestions/{id}/accept`: merges the pair.
pub async fn accept_suggestion(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let suggestion = take_suggestion(&state, &id)?;
    let event = merge_event(
        &suggestion.a,
        &suggestion.b,
        suggestion.score,
        suggestion.threshold,
    );
    let outcome = append_internal(&state, MATCHER_SOURCE, vec![event]).await?;
    let status = if outcome.suppressed > 0 {
        "suppressed"
    } else {
        "merged"
    };
    Ok(axum::Json(json!({ "id": suggestion.id, "status": status })).into_response())
}

/// `DELETE /v1/admin/matching/suggestions/{id}`: rejects the pair.
pub async fn reject_suggestion(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let suggestion = take_suggestion(&state, &id)?;
    Ok(axum::Json(json!({ "id": suggestion.id, "status": "rejected" })).into_response())
}
