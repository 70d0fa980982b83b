//! Lists of identifiers (docs/journeys.md, "Lists and suppression"):
//!
//! - `GET /v1/lists`: every list and its size;
//! - `GET /v1/lists/{name}?after=&limit=`: members in identifier order;
//! - `POST /v1/lists/{name}/members` `{"identifiers": ["email:a@b.example"],
//!   "reason": "hard bounce"}`: adds (normalized like events' identifiers);
//! - `DELETE /v1/lists/{name}/members/{type}:{value}`.
//!
//! Journeys add people with `add_to_list`; `[policy] suppression_lists`
//! names the lists whose members get no message.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use kairos_core::identity::Identifier;
use kairos_core::identity::extract::normalize;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::admin::JsonBody;
use crate::auth::Admin;
use crate::problem::{Problem, limit_param};

/// Identifiers one request may add.
const ADD_MAX: usize = 10_000;

fn checked_list(name: &str) -> Result<(), Problem> {
    kairos_deliver::lists::checked_name(name)
        .map_err(|error| Problem::bad_request("list_name_invalid", error.to_string()))
}

/// `type:value`, normalized by the workspace's identity rules.
fn list_identifier(state: &AppState, text: &str) -> Result<String, Problem> {
    let problem = || {
        Problem::bad_request(
            "identifier_invalid",
            format!(
                "{text:?}: a member is an identifier {{type}}:{{value}}, e.g. email:ada@example.org or user_id:u1"
            ),
        )
    };
    let identifier = Identifier::parse(text).ok_or_else(problem)?;
    let identifier = normalize(identifier, state.engine.rules()).ok_or_else(problem)?;
    Ok(format!("{}:{}", identifier.kind, identifier.value))
}

/// `GET /v1/lists`
pub async fn lists(_: Admin, State(state): State<AppState>) -> Result<Response, Problem> {
    let lists: Vec<Value> = state
        .store
        .lists
        .lists()?
        .into_iter()
        .map(|(name, size)| json!({"name": name, "size": size}))
        .collect();
    Ok(axum::Json(json!({ "lists": lists })).into_response())
}

#[derive(Deserialize)]
pub struct MembersQuery {
    after: Option<String>,
    limit: Option<usize>,
}

/// `GET /v1/lists/{name}`
pub async fn members(
    _: Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<MembersQuery>,
) -> Result<Response, Problem> {
    checked_list(&name)?;
    let limit = limit_param(query.limit, 100, 1000)?;
    let members = state
        .store
        .lists
        .members(&name, query.after.as_deref(), limit)?;
    let next = (members.len() == limit)
        .then(|| members.last().map(|member| member.identifier.clone()))
        .flatten();
    Ok(axum::Json(json!({"name": name, "members": members, "next_after": next})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddMembers {
    identifiers: Vec<String>,
    reason: Option<String>,
}

/// `POST /v1/lists/{name}/members`
pub async fn add_members(
    _: Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<AddMembers>,
) -> Result<Response, Problem> {
    checked_list(&name)?;
    if body.identifiers.is_empty() || body.identifiers.len() > ADD_MAX {
        return Err(Problem::bad_request(
            "identifiers_invalid",
            format!("send 1 to {ADD_MAX} identifiers per request"),
        ));
    }
    let identifiers = body
        .identifiers
        .iter()
        .map(|text| list_identifier(&state, text))
        .collect::<Result<Vec<_>, _>>()?;
    let reason = format!("api: {}", body.reason.as_deref().unwrap_or("added"));
    let added = state
        .store
        .lists
        .add(&name, &identifiers, &reason, state.clock.now())?;
    Ok(axum::Json(
        json!({"name": name, "added": added, "already_members": identifiers.len() - added}),
    )
    .into_response())
}

/// `DELETE /v1/lists/{name}/members/{type}:{value}`
pub async fn remove_member(
    _: Admin,
    State(state): State<AppState>,
    Path((name, identifier)): Path<(String, String)>,
) -> Result<Response, Problem> {
    checked_list(&name)?;
    let identifier = list_identifier(&state, &identifier)?;
    if !state.store.lists.remove(&name, &identifier)? {
        return Err(Problem::not_found(format!(
            "{identifier} is not on the list {name:?}"
        )));
    }
    Ok(
        axum::Json(json!({"name": name, "identifier": identifier, "removed": true}))
            .into_response(),
    )
}
