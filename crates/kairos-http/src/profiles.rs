//! The profile API (Segment's Profile API is the model, but real-time): a
//! profile is addressed by any of its identifiers, `{type}:{value}`, and the
//! answer reflects every event acknowledged before the request.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use kairos_core::identity::Identifier;
use serde::Deserialize;
use serde_json::json;

use crate::AppState;
use crate::auth::Admin;
use crate::problem::Problem;

/// Largest page of a profile's events.
const EVENTS_PAGE_MAX: usize = 1000;

pub(crate) fn identifier(path: &str) -> Result<Identifier, Problem> {
    Identifier::parse(path).ok_or_else(|| {
        Problem::bad_request(
            "identifier_invalid",
            "address a profile as {type}:{value}, e.g. user_id:u1, email:ada@example.org, anonymous_id:a1",
        )
    })
}

pub(crate) fn unknown(identifier: &Identifier) -> Problem {
    Problem::not_found(format!(
        "no profile has {}:{}",
        identifier.kind, identifier.value
    ))
}

/// The profile of an identifier given as `{type}:{value}`, or a problem.
async fn profile_view(state: &AppState, path: &str) -> Result<kairos_engine::ProfileView, Problem> {
    let identifier = identifier(path)?;
    let view = state.engine.profile(identifier.clone()).await?;
    view.ok_or_else(|| unknown(&identifier))
}

/// A page size from 1 to `EVENTS_PAGE_MAX` (default 50).
fn page_limit(limit: Option<usize>) -> Result<usize, Problem> {
    crate::problem::limit_param(limit, 50, EVENTS_PAGE_MAX)
}

/// `GET /v1/profiles/{type}:{value}`
pub async fn get_profile(
    _: Admin,
    State(state): State<AppState>,
    Path(path): Path<String>,
) -> Result<Response, Problem> {
    Ok(axum::Json(profile_view(&state, &path).await?).into_response())
}

#[derive(Deserialize)]
pub struct SearchQuery {
    #[serde(rename = "trait")]
    trait_name: Option<String>,
    value: Option<String>,
    limit: Option<usize>,
}

/// `GET /v1/profiles?trait=plan&value=pro`
pub async fn search_profiles(
    _: Admin,
    State(state): State<AppState>,
    Query(query): Query<SearchQuery>,
) -> Result<Response, Problem> {
    let (Some(trait_name), Some(value)) = (query.trait_name, query.value) else {
        return Err(Problem::bad_request(
            "search_invalid",
            "search with ?trait=<name>&value=<value>, e.g. ?trait=plan&value=pro",
        ));
    };
    let limit = page_limit(query.limit)?;
    let profiles = state.engine.search(trait_name, value, limit).await?;
    Ok(axum::Json(json!({"profiles": profiles})).into_response())
}

/// `GET /v1/profiles/{type}:{value}/merges`
pub async fn get_merges(
    _: Admin,
    State(state): State<AppState>,
    Path(path): Path<String>,
) -> Result<Response, Problem> {
    let view = profile_view(&state, &path).await?;
    Ok(axum::Json(json!({"profile_id": view.id, "merges": view.merges})).into_response())
}

#[derive(Deserialize)]
pub struct EventsQuery {
    limit: Option<usize>,
    before: Option<u64>,
    /// Only events with this name (track event name or page name).
    event: Option<String>,
    from: Option<Timestamp>,
    to: Option<Timestamp>,
}

/// `GET /v1/profiles/{type}:{value}/events`: newest first, by event time.
pub async fn get_events(
    _: Admin,
    State(state): State<AppState>,
    Path(path): Path<String>,
    Query(query): Query<EventsQuery>,
) -> Result<Response, Problem> {
    let identifier = identifier(&path)?;
    let limit = page_limit(query.limit)?;
    let mut before = query.before;
    let mut events = Vec::new();
    let mut profile_id;
    // Pages of the timeline until `limit` events pass the filters.
    loop {
        let page = state
            .engine
            .timeline(identifier.clone(), before, limit)
            .await?;
        let page = page.ok_or_else(|| unknown(&identifier))?;
        profile_id = page.profile_id.clone();
        for entry in &page.entries {
            before = Some(entry.seq);
            let in_range = query.from.is_none_or(|from| entry.timestamp >= from)
                && query.to.is_none_or(|to| entry.timestamp < to);
            if !in_range {
                continue;
            }
            let Some(stored) = state.store.log.get(entry.seq)? else {
                continue;
            };
            if let Some(name) = &query.event {
                let event = stored.decode()?;
                let event_name = event.event.clone().or_else(|| {
                    event
                        .field("name")
                        .map(|raw| raw.get().trim_matches('"').to_string())
                });
                if event_name.as_deref() != Some(name.as_str()) {
                    continue;
                }
            }
            events.push(stored.to_json());
            if events.len() == limit {
                break;
            }
        }
        if events.len() == limit || page.next.is_none() {
            break;
        }
    }
    let next = if events.len() == limit {
        before.map(|seq| seq.to_string())
    } else {
        None
    };
    let body = format!(
        "{{\"profile_id\":{},\"events\":[{}],\"next\":{}}}",
        serde_json::to_string(&profile_id).expect("a string serializes"),
        events.join(","),
        serde_json::to_string(&next).expect("an option serializes"),
    );
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}
