//! Feeding the live recommender ([`kairos_recommend::Recommender`]) from
//! the router: product events in the Segment e-commerce spec, read after
//! the person is resolved, so merges and erasures reach it in the log's
//! order and a checkpoint holds it at the same position as the identity
//! graph.

use kairos_core::Event;
use kairos_core::event::{EventProperties, EventType};
use kairos_recommend::Interaction;
use kairos_recommend::catalog::item_id;
use serde_json::Value;

/// Products one `Order Completed` may name here; a bigger order is a bulk
/// import, not a basket that says what goes together.
pub const ORDER_ITEMS_MAX: usize = 100;

/// What the event says a person did with which items; `None` for events
/// the recommender does not read (checked on the name first: cheap).
pub fn interaction_of(event: &Event) -> Option<(Interaction, Vec<String>)> {
    if event.event_type != EventType::Track {
        return None;
    }
    let interaction = match event.event.as_deref()? {
        "Product Viewed" | "Product Clicked" => Interaction::View,
        "Product Added" => Interaction::AddToCart,
        "Product Removed" => Interaction::RemoveFromCart,
        "Order Completed" => Interaction::Purchase,
        _ => return None,
    };
    let properties = EventProperties::of(event);
    let properties = properties.get();
    let items: Vec<String> = match properties.get("products").and_then(Value::as_array) {
        Some(products) if interaction == Interaction::Purchase => products
            .iter()
            .take(ORDER_ITEMS_MAX)
            .filter_map(|product| item_id(product.as_object()?))
            .collect(),
        _ => item_id(properties).into_iter().collect(),
    };
    (!items.is_empty()).then_some((interaction, items))
}
