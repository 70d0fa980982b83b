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
    events
}

/// How long a demo-store cart may wait before its nudge: short, so a
/// visitor trying the store sees the in-app message arrive while still
/// looking at the page.
pub const DEMO_CART_WAIT: &str = "15s";

/// The demo store's abandoned-cart journey (docs/console.md, "Demo
/// store"): an in-app destination and a journey nudging a visitor whose
/// `Product Added` is not followed by `Order Completed` within
/// [`DEMO_CART_WAIT`]. Made through the public API in-process, so every
/// rule a user's journey follows applies; existing ones are left alone.
pub async fn ensure_demo_journey(state: &kairos_http::AppState) -> anyhow::Result<()> {
    let destination = json!({"type": "in_app", "name": "demo-store", "url": ""});
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
    for (path, body) in [("/v1/destinations", destination), ("/v1/journeys", journey)] {
        let request = axum::http::Request::post(path)
            .header("authorization", format!("Bearer {}", state.admin_token))
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body.to_string()))?;
        let response = tower::ServiceExt::oneshot(kairos_http::app(state.clone()), request).await?;
        let status = response.status();
        if !status.is_success() && status != axum::http::StatusCode::CONFLICT {
            let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024).await?;
            anyhow::bail!(
                "creating the demo store's {path}: {status} {}",
                String::from_utf8_lossy(&bytes)
            );
        }
    }
    Ok(())
}
