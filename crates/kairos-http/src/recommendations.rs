//! Items and recommendations (docs/recommendations.md): `POST/GET
//! /v1/items`, `GET/PATCH/DELETE /v1/items/{id}`, `GET
//! /v1/recommendations`, `GET/PUT /v1/recommendations/rules`.
//!
//! The catalog is durable in the store and held in memory by the engine
//! (its `Shelf`, with the rules); the indexes live in the engine too, fed
//! by the router, so a request answered after a click's acknowledgement
//! already reflects it.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, RawQuery, State};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kairos_engine::recommend::RuleSpec;
use kairos_recommend::query::LIMIT_MAX;
use kairos_recommend::{Item, Query as Ask, Strategy};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::admin::JsonBody;
use crate::auth::Admin;
use crate::problem::Problem;
use crate::profiles::identifier;

/// Items one request may create or replace: a bulk upload is split by the
/// caller (`kairos import --items` sends batches of this size).
pub const ITEMS_PER_REQUEST_MAX: usize = 1_000;
/// Items one page of `GET /v1/items` lists.
const ITEMS_PAGE_MAX: usize = 1_000;

fn invalid(detail: impl Into<String>) -> Problem {
    Problem::bad_request("items_invalid", detail)
}

/// One item from JSON, checked; `at` names it in errors.
fn parse_item(value: Value, at: &str) -> Result<Item, Problem> {
    let item: Item =
        serde_json::from_value(value).map_err(|error| invalid(format!("{at}{error}")))?;
    item.validate()
        .map_err(|error| invalid(format!("{at}{error}")))?;
    Ok(item)
}

/// `POST /v1/items`: one item, or `{"items": [...]}`; each replaces the
/// item of its id. All or nothing: one invalid item refuses the request.
pub async fn put_items(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, Problem> {
    let items = match body {
        Value::Object(mut object) if object.contains_key("items") && !object.contains_key("id") => {
            let Some(Value::Array(list)) = object.remove("items") else {
                return Err(invalid("items: expected an array of items"));
            };
            if list.len() > ITEMS_PER_REQUEST_MAX {
                return Err(invalid(format!(
                    "items: at most {ITEMS_PER_REQUEST_MAX} per request ({} given); send the rest in further requests",
                    list.len()
                )));
            }
            list.into_iter()
                .enumerate()
                .map(|(index, value)| parse_item(value, &format!("items[{index}]: ")))
                .collect::<Result<Vec<Item>, Problem>>()?
        }
        object @ Value::Object(_) => vec![parse_item(object, "")?],
        _ => {
            return Err(invalid(
                "expected an item ({\"id\": \"sku-1\", ...}) or {\"items\": [...]}",
            ));
        }
    };
    let store = state.store.clone();
    let rows = kairos_engine::recommend::encoded(&items);
    tokio::task::spawn_blocking(move || store.items.put_many(&rows, true))
        .await
        .map_err(|_| Problem::of(kairos_core::error::ErrorKind::Stopped, "storing items"))??;
    let stored = items.len();
    let mut catalog = state.engine.shelf().catalog_mut();
    for item in items {
        catalog.put(item);
    }
    let total = catalog.len();
    Ok(axum::Json(json!({"stored": stored, "items": total})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemsPage {
    after: Option<String>,
    limit: Option<usize>,
}

/// `GET /v1/items?after=<id>&limit=N`: items in id order.
pub async fn list_items(
    _: Admin,
    State(state): State<AppState>,
    Query(page): Query<ItemsPage>,
) -> Result<Response, Problem> {
    let limit = page.limit.unwrap_or(100);
    if !(1..=ITEMS_PAGE_MAX).contains(&limit) {
        return Err(invalid(format!("limit: expected 1 to {ITEMS_PAGE_MAX}")));
    }
    let catalog = state.engine.shelf().catalog();
    let items = catalog.page(page.after.as_deref(), limit);
    let next = (items.len() == limit).then(|| items.last().map(|item| item.id.clone()));
    Ok(
        axum::Json(json!({"items": items, "total": catalog.len(), "next_after": next.flatten()}))
            .into_response(),
    )
}

fn no_item(id: &str) -> Problem {
    Problem::not_found(format!(
        "no item {id:?}; create it with POST /v1/items or list them with GET /v1/items"
    ))
}

/// `GET /v1/items/{id}`
pub async fn get_item(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let catalog = state.engine.shelf().catalog();
    let item = catalog.get(&id).ok_or_else(|| no_item(&id))?;
    Ok(axum::Json(item).into_response())
}

/// `PATCH /v1/items/{id}`: changes the fields given (`{"stock": 0}`).
pub async fn patch_item(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(changes): JsonBody<Value>,
) -> Result<Response, Problem> {
    let Value::Object(changes) = changes else {
        return Err(invalid(
            "expected an object of the fields to change, e.g. {\"stock\": 0}",
        ));
    };
    if changes
        .get("id")
        .is_some_and(|given| given != &Value::from(id.clone()))
    {
        return Err(invalid(
            "id: an item's id does not change; create the new id instead",
        ));
    }
    let known = {
        let catalog = state.engine.shelf().catalog();
        catalog.get(&id).cloned().ok_or_else(|| no_item(&id))?
    };
    let Value::Object(mut merged) = serde_json::to_value(&known).expect("an item serializes")
    else {
        unreachable!("an item is an object");
    };
    for (key, value) in changes {
        if value.is_null() {
            merged.remove(&key);
        } else {
            merged.insert(key, value);
        }
    }
    let item = parse_item(Value::Object(merged), "")?;
    let store = state.store.clone();
    let rows = kairos_engine::recommend::encoded(std::slice::from_ref(&item));
    tokio::task::spawn_blocking(move || store.items.put_many(&rows, true))
        .await
        .map_err(|_| Problem::of(kairos_core::error::ErrorKind::Stopped, "storing an item"))??;
    state.engine.shelf().catalog_mut().put(item.clone());
    Ok(axum::Json(item).into_response())
}

/// `DELETE /v1/items/{id}`: never recommended again (what the indexes
/// learned of it stays, and counts again if it is created anew).
pub async fn delete_item(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let store = state.store.clone();
    let key = id.clone();
    let existed = tokio::task::spawn_blocking(move || store.items.delete(&key))
        .await
        .map_err(|_| Problem::of(kairos_core::error::ErrorKind::Stopped, "deleting an item"))??;
    state.engine.shelf().catalog_mut().remove(&id);
    if !existed {
        return Err(no_item(&id));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The parameters `GET /v1/recommendations` takes.
const PARAMETERS: [&str; 12] = [
    "profile",
    "strategy",
    "limit",
    "context_item",
    "category",
    "exclude_category",
    "min_price",
    "max_price",
    "max_per_category",
    "include_purchased",
    "include_cart",
    "exclude_viewed",
];

/// `GET /v1/recommendations?profile=<type>:<value>&strategy=...&limit=N&context_item=...`
pub async fn recommend(
    _: Admin,
    State(state): State<AppState>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Response, Problem> {
    let ask = ask_of(&params)?;
    let who = params
        .get("profile")
        .map(|profile| identifier(profile))
        .transpose()?;
    let recommended = state.engine.recommend(who.as_ref(), &ask).await?;
    let (known, answer) = (recommended.known, recommended.items);
    let items: Vec<Value> = answer
        .into_iter()
        .map(|recommendation| {
            let mut item = serde_json::to_value(&recommendation.item).expect("an item serializes");
            item["score"] = json!(recommendation.score);
            item["reason"] = json!(recommendation.reason);
            item
        })
        .collect();
    Ok(axum::Json(json!({
        "profile": params.get("profile"),
        "known": known,
        "strategy": ask.strategy,
        "items": items,
    }))
    .into_response())
}

/// What a page may ask besides the recommendation parameters.
const PAGE_PARAMETERS: [&str; 3] = ["identifier", "writeKey", "token"];
/// Recommendation parameters a page may not use: it asks for its own
/// visitor (`identifier`), and a write key is public.
const ADMIN_ONLY_PARAMETERS: [&str; 3] = ["profile", "include_purchased", "include_cart"];

/// `GET /v1/in-app/recommendations?writeKey=&identifier=<type>:<value>&token=&strategy=&limit=&context_item=...`:
/// a page's widget, with the source's write key — as its own anonymous id
/// (then nothing that shows what the person viewed or bought: the id may
/// since belong to someone identified), or as a signed-in person with the
/// identity token its backend minted. Items carry their public fields
/// only: never attributes, stock or scores' neighbours.
pub async fn page_recommend(
    State(state): State<AppState>,
    RawQuery(raw_query): RawQuery,
    headers: HeaderMap,
    Query(mut params): Query<BTreeMap<String, String>>,
) -> Result<Response, Problem> {
    let source = crate::auth::page_source(&state, &headers, raw_query.as_deref())?;
    let bad = |detail: String| Problem::bad_request("recommendations_invalid", detail);
    let Some(text) = params.get("identifier").cloned() else {
        return Err(bad(
            "identifier: expected ?identifier=anonymous_id:<the visitor's id> (or user_id:<id> with a token)".into(),
        ));
    };
    if let Some(refused) = ADMIN_ONLY_PARAMETERS
        .iter()
        .find(|key| params.contains_key(**key))
    {
        return Err(bad(format!(
            "{refused}: only with the admin token (GET /v1/recommendations); a page asks for its own visitor"
        )));
    }
    let who = identifier(&text)?;
    let token = params.get("token").cloned();
    let verified = crate::auth::page_identity(
        &source.record,
        &text,
        &who,
        token.as_deref(),
        "reading recommendations",
    )?;
    params.retain(|key, _| !PAGE_PARAMETERS.contains(&key.as_str()));
    let ask = ask_of(&params)?;
    let ask = match verified {
        true => Some(ask),
        false => ask.without_history(),
    };
    let items: Vec<Value> = match ask {
        None => Vec::new(),
        Some(ask) => state
            .engine
            .recommend(Some(&who), &ask)
            .await?
            .items
            .into_iter()
            .map(|recommendation| recommendation.public())
            .collect(),
    };
    Ok(axum::Json(json!({"items": items})).into_response())
}

/// The request's parameters, checked.
fn ask_of(params: &BTreeMap<String, String>) -> Result<Ask, Problem> {
    let bad = |detail: String| Problem::bad_request("recommendations_invalid", detail);
    if let Some(unknown) = params
        .keys()
        .find(|key| !PARAMETERS.contains(&key.as_str()))
    {
        return Err(bad(format!(
            "{unknown}: not a parameter; expected {}",
            PARAMETERS.join(", ")
        )));
    }
    let strategy = match params.get("strategy") {
        None => Strategy::Auto,
        Some(name) => Strategy::parse(name).ok_or_else(|| {
            bad(format!(
                "strategy: expected one of {}",
                Strategy::NAMES.join(", ")
            ))
        })?,
    };
    let number = |key: &str| -> Result<Option<f64>, Problem> {
        params
            .get(key)
            .map(|text| match text.parse::<f64>() {
                Ok(value) if value.is_finite() && value >= 0.0 => Ok(value),
                _ => Err(bad(format!("{key}: expected a number >= 0"))),
            })
            .transpose()
    };
    let count = |key: &str, max: usize| -> Result<Option<usize>, Problem> {
        params
            .get(key)
            .map(|text| match text.parse::<usize>() {
                Ok(value) if (1..=max).contains(&value) => Ok(value),
                _ => Err(bad(format!(
                    "{key}: expected a whole number from 1 to {max}"
                ))),
            })
            .transpose()
    };
    let flag = |key: &str| -> Result<bool, Problem> {
        match params.get(key).map(String::as_str) {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(_) => Err(bad(format!("{key}: expected true or false"))),
        }
    };
    let list = |key: &str| -> Vec<String> {
        params
            .get(key)
            .map(|text| {
                text.split(',')
                    .map(str::trim)
                    .filter(|part| !part.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut ask = Ask::new(strategy, count("limit", LIMIT_MAX)?.unwrap_or(10));
    ask.context_item = params.get("context_item").cloned();
    if matches!(strategy, Strategy::BoughtTogether) && ask.context_item.is_none() {
        return Err(bad(
            "context_item: bought_together needs the item to start from".into(),
        ));
    }
    ask.include_categories = list("category");
    ask.exclude_categories = list("exclude_category");
    ask.min_price = number("min_price")?;
    ask.max_price = number("max_price")?;
    ask.max_per_category = count("max_per_category", LIMIT_MAX)?;
    ask.exclude_purchased = !flag("include_purchased")?;
    ask.exclude_in_cart = !flag("include_cart")?;
    ask.exclude_viewed = flag("exclude_viewed")?;
    Ok(ask)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesBody {
    rules: Vec<RuleSpec>,
}

/// `PUT /v1/recommendations/rules`: replaces every boost and bury rule.
pub async fn put_rules(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<RulesBody>,
) -> Result<Response, Problem> {
    let answer = json!({"rules": body.rules});
    let engine = state.engine.clone();
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || engine.shelf().set_rules(&store, body.rules))
        .await
        .map_err(|_| Problem::of(kairos_core::error::ErrorKind::Stopped, "storing rules"))?
        .map_err(|error| {
            let mut problem = Problem::bad_request("rules_invalid", error.message);
            problem.position = error
                .position
                .map(|(line, column)| (line as u32, column as u32));
            problem
        })?;
    Ok(axum::Json(answer).into_response())
}

/// `GET /v1/recommendations/rules`
pub async fn get_rules(_: Admin, State(state): State<AppState>) -> Result<Response, Problem> {
    Ok(axum::Json(json!({"rules": state.engine.shelf().rules()})).into_response())
}
