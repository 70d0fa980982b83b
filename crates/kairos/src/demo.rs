//! Demo data for a first start: a `demo` source, a small storefront's
//! worth of events, and a few audiences and computed traits over them, so
//! the APIs have something to show.

use jiff::{SignedDuration, Timestamp};
use kairos_core::identity::IdentityRules;
use kairos_core::normalize::{Arrival, IngestLimits, normalize_event};
use kairos_store::Store;
use serde_json::json;

/// Creates the demo source (once) and returns its write key.
pub async fn ensure_demo(
    store: &Store,
    rules: &IdentityRules,
    now: Timestamp,
) -> anyhow::Result<String> {
    if let Some(existing) = store
        .sources
        .list()
        .into_iter()
        .find(|source| source.name == "demo")
    {
        return Ok(existing.write_key);
    }
    let source = store
        .sources
        .create("demo", None, kairos_store::SourceTrust::Client, now)?;
    let limits = IngestLimits::default();
    let arrival = Arrival {
        source_id: &source.id,
        received_at: now,
        batch_sent_at: None,
        path_type: None,
        limits: &limits,
        plan: None,
    };
    let mut records = Vec::new();
    for (index, raw) in demo_events(now).iter().enumerate() {
        let raw = serde_json::value::RawValue::from_string(raw.to_string())?;
        let event = normalize_event(&raw, &arrival)
            .map_err(|errors| anyhow::anyhow!("demo event {index}: {errors:?}"))?;
        records.extend(store.prepare(&event, rules));
    }
    store.writer.append(records, Vec::new(), Vec::new()).await?;
    create_demo_definitions(store, now)?;
    Ok(source.write_key)
}

/// A few audiences and computed traits over the demo events (the engine
/// backfills them when it starts).
fn create_demo_definitions(store: &Store, now: Timestamp) -> anyhow::Result<()> {
    use kairos_store::DefinitionKind::{Audience, ComputedTrait};
    let definitions = [
        (
            ComputedTrait,
            "orders_90d",
            r#"count "Order Completed" within 90d"#,
        ),
        (
            ComputedTrait,
            "spend_365d",
            r#"sum revenue of "Order Completed" within 365d"#,
        ),
        (ComputedTrait, "last_order_at", r#"last "Order Completed""#),
        (
            Audience,
            "recent buyers",
            r#"performed "Order Completed" within 30d"#,
        ),
        (Audience, "big spenders", "computed spend_365d > 100"),
        (
            Audience,
            "viewed, not bought",
            r#""Product Viewed" not followed by "Order Completed" within 1h"#,
        ),
    ];
    for (kind, name, definition) in definitions {
        if store.definitions.get(kind, name).is_none() {
            store.definitions.create(kind, name, definition, now)?;
        }
    }
    Ok(())
}

fn demo_events(now: Timestamp) -> Vec<serde_json::Value> {
    let people = [
        ("ada", "Ada Lovelace", "ada@example.org"),
        ("grace", "Grace Hopper", "grace@example.org"),
        ("alan", "Alan Turing", "alan@example.org"),
    ];
    let products = [
        ("sku-1", "Trail Shoes", 89.0),
        ("sku-2", "Rain Jacket", 149.0),
        ("sku-3", "Wool Socks", 12.5),
    ];
    let mut events = Vec::new();
    for (person_index, (user, name, email)) in people.iter().enumerate() {
        let anonymous = format!("anon-{user}");
        let at = |minutes: i64| {
            (now - SignedDuration::from_mins(minutes + 60 * person_index as i64)).to_string()
        };
        events.push(json!({"type": "page", "anonymousId": anonymous, "name": "Home", "timestamp": at(50), "messageId": format!("demo-{user}-1")}));
        for (product_index, (sku, title, price)) in products.iter().enumerate() {
            events.push(json!({"type": "track", "event": "Product Viewed", "anonymousId": anonymous, "timestamp": at(40 - product_index as i64), "messageId": format!("demo-{user}-view-{sku}"), "properties": {"product_id": sku, "name": title, "price": price}}));
        }
        events.push(json!({"type": "identify", "anonymousId": anonymous, "userId": user, "traits": {"name": name, "email": email}, "timestamp": at(30), "messageId": format!("demo-{user}-identify")}));
        let (sku, _, price) = products[person_index];
        events.push(json!({"type": "track", "event": "Order Completed", "userId": user, "anonymousId": anonymous, "timestamp": at(20), "messageId": format!("demo-{user}-order"), "properties": {"order_id": format!("o-{user}"), "revenue": price, "products": [{"product_id": sku}]}}));
    }
    events.extend(past_shoppers(now));
    events
}

/// The demo store's catalog, exactly as the store's page generates it
/// (web/console/src/demo/catalog.ts; a test compares the two): five
/// categories of five products in two colours.
pub fn demo_store_items() -> Vec<serde_json::Value> {
    const CATEGORIES: [(&str, [&str; 5], f64); 5] = [
        (
            "Shoes",
            [
                "Trail Shoes",
                "Road Runners",
                "Hiking Boots",
                "Court Sneakers",
                "Slip-ons",
            ],
            89.0,
        ),
        (
            "Jackets",
            [
                "Rain Jacket",
                "Down Parka",
                "Fleece",
                "Windbreaker",
                "Softshell",
            ],
            149.0,
        ),
        (
            "Socks",
            [
                "Wool Socks",
                "Running Socks",
                "Hiking Socks",
                "Ankle Socks",
                "Compression Socks",
            ],
            12.5,
        ),
        (
            "Bags",
            ["Daypack", "Duffel", "Tote", "Sling Bag", "Hip Pack"],
            59.0,
        ),
        (
            "Hats",
            ["Beanie", "Sun Hat", "Cap", "Bucket Hat", "Trapper"],
            24.0,
        ),
    ];
    const COLORS: [&str; 2] = ["Forest", "Slate"];
    let mut items = Vec::new();
    for (c, (category, names, base)) in CATEGORIES.iter().enumerate() {
        for (n, name) in names.iter().enumerate() {
            for (k, color) in COLORS.iter().enumerate() {
                let price =
                    (base * (1.0 + n as f64 * 0.12 + k as f64 * 0.05) * 100.0).round() / 100.0;
                let id = format!("sku-{}{n}{k}", c + 1);
                items.push(json!({"id": id, "name": format!("{name}, {color}"), "url": format!("/demo/#product/{id}"),
                                  "category": category, "price": price, "attributes": {"color": color}}));
            }
        }
    }
    items
}

/// Earlier visitors of the demo store, so "goes well with it" has
/// sessions to learn from: hikers look at boots, then socks, then a
/// jacket; runners at shoes, then running socks, then a cap; commuters at
/// a bag, then a jacket.
fn past_shoppers(now: Timestamp) -> Vec<serde_json::Value> {
    let paths: [&[&str]; 3] = [
        &["sku-120", "sku-320", "sku-200"],
        &["sku-110", "sku-310", "sku-520"],
        &["sku-400", "sku-230", "sku-500"],
    ];
    let mut events = Vec::new();
    for visitor in 0..12 {
        let path = paths[visitor % paths.len()];
        for (step, sku) in path.iter().enumerate() {
            let at = now - SignedDuration::from_mins(120 + 45 * visitor as i64 - step as i64);
            events.push(json!({"type": "track", "event": "Product Viewed", "anonymousId": format!("demo-shopper-{visitor}"),
                               "timestamp": at.to_string(), "messageId": format!("demo-shopper-{visitor}-{step}"),
                               "properties": {"product_id": sku}}));
        }
    }
    events
}

/// How long a demo-store cart may wait before its nudge: short, so a
/// visitor trying the store sees the in-app message arrive while still
/// looking at the page.
pub const DEMO_CART_WAIT: &str = "15s";

/// The demo store's purchase-propensity model: logistic on the session's
/// product views and cart adds (Kairos' own format, no training needed),
/// so the store's side panel shows a score moving as the visitor clicks.
/// A view adds 0.8 and a cart add 2.5 to the log-odds from -3: one view
/// and one add make 0.57, past the "likely buyers" threshold.
pub const DEMO_MODEL: &str = "demo_purchase_propensity";

/// The demo store's definitions (docs/console.md, "Demo store"), made
/// through the public API in-process so every rule a user's definitions
/// follow applies: the propensity model ([`DEMO_MODEL`]), an audience of
/// likely buyers over it, an in-app destination and a journey nudging a
/// visitor whose `Product Added` is not followed by `Order Completed`
/// within [`DEMO_CART_WAIT`]. Existing ones are left alone (409), so a
/// user's changes to them survive restarts.
pub async fn ensure_demo_store(state: &kairos_http::AppState) -> anyhow::Result<()> {
    let (_, models) = call(state, "GET", "/v1/models", None).await?;
    let has_model = models["models"]
        .as_array()
        .is_some_and(|all| all.iter().any(|model| model["name"] == DEMO_MODEL));
    if !has_model {
        let model = json!({
            "name": DEMO_MODEL, "format": "logistic", "mode": "active",
            "inputs": ["session.product_views", "session.cart_adds"],
            "model": {"means": [0.0, 0.0], "scales": [1.0, 1.0], "intercept": -3.0, "weights": [0.8, 2.5]}
        });
        create(state, "/v1/models", model).await?;
    }
    let audience = json!({
        "name": "demo: likely buyers",
        "definition": format!("score(\"{DEMO_MODEL}\") > 0.5"),
    });
    create(state, "/v1/audiences", audience).await?;
    // The "Picked for you" slot: a welcome, until a cart makes the
    // free-shipping offer eligible (behaviour: exact per event).
    let welcome = json!({
        "name": "demo: welcome", "placements": ["demo_hero"], "value": 1, "category": "welcome",
        "content": {"web": {"title": "Welcome to Trailhead", "body": "Gear for the trail, picked for you as you browse."}}
    });
    create(state, "/v1/offers", welcome).await?;
    let shipping = json!({
        "name": "demo: free shipping", "placements": ["demo_hero"], "value": 5, "category": "cart",
        "eligibility": "count \"Product Added\" within 1h >= 1",
        "conversion_event": "Order Completed",
        "content": {"web": {"title": "Free shipping on your cart today", "body": "Check out within the hour and it ships free.",
                            "cta": "Go to my cart", "url": "/demo/#cart"}}
    });
    create(state, "/v1/offers", shipping).await?;
    // The catalog the store sells (once: later changes to it are the
    // user's), and a slot of what goes well with what the visitor looks at.
    let (status, _) = call(state, "GET", "/v1/items/sku-100", None).await?;
    if status == axum::http::StatusCode::NOT_FOUND {
        create(state, "/v1/items", json!({"items": demo_store_items()})).await?;
    }
    let related = json!({
        "name": "demo: goes well with it", "placements": ["demo_related"], "value": 1, "category": "recommendations",
        "content": {"web": {"title": "Goes well with it",
                            "body": "{% for item in recommendations(limit=3) %}{{ item.name }}{% if not loop.last %} · {% endif %}{% endfor %}"}}
    });
    create(state, "/v1/offers", related).await?;
    let destination = json!({"type": "in_app", "name": "demo-store", "url": ""});
    create(state, "/v1/destinations", destination).await?;
    let journey = json!({
        "name": "demo: abandoned cart",
        "trigger": {"event": "Product Added", "not_followed_by": "Order Completed",
                    "within": DEMO_CART_WAIT, "key": "cart_id"},
        "steps": [{"send": {"destination": "demo-store", "message": {
            "title": "Still thinking about the {{ event.properties.name | default(\"item\") }}?",
            "body": "Your cart is waiting: check out now and it ships today.",
            "button": "Back to my cart",
            "url": "/demo/#cart"
        }}}]
    });
    create(state, "/v1/journeys", journey).await
}

/// `POST path body`; a 409 (it exists already) is fine.
async fn create(
    state: &kairos_http::AppState,
    path: &str,
    body: serde_json::Value,
) -> anyhow::Result<()> {
    let (status, answer) = call(state, "POST", path, Some(body)).await?;
    if !status.is_success() && status != axum::http::StatusCode::CONFLICT {
        anyhow::bail!("creating the demo store's {path}: {status} {answer}");
    }
    Ok(())
}

/// One request to the router, in-process, with the admin token.
async fn call(
    state: &kairos_http::AppState,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<(axum::http::StatusCode, serde_json::Value)> {
    let request = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {}", state.admin_token))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(
            body.map(|body| body.to_string()).unwrap_or_default(),
        ))?;
    let response = tower::ServiceExt::oneshot(kairos_http::app(state.clone()), request).await?;
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), ANSWER_BYTES_MAX).await?;
    Ok((status, serde_json::from_slice(&bytes).unwrap_or_default()))
}

/// The demo's own requests get small answers (a model list at most).
const ANSWER_BYTES_MAX: usize = 4 * 1024 * 1024;
