//! The item catalog: what can be recommended. Items come from the API
//! (`POST /v1/items`), the CLI (`kairos import --items`) and, for sources
//! that allow it, from `Product Viewed` events; recommendations only ever
//! name items of the catalog that are available.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Longest item id, name or category (characters): ids are SKUs, names
/// are titles; longer is a mistake (a description pasted in a name).
pub const ID_CHARS_MAX: usize = 200;
pub const NAME_CHARS_MAX: usize = 500;
/// A URL longer than this is not an image link a page would render.
pub const IMAGE_URL_CHARS_MAX: usize = 2_000;
/// An item's attributes as JSON: enough for a product's facets and
/// business fields (margin, brand), bounded so a million items fit in
/// memory.
pub const ATTRIBUTES_BYTES_MAX: usize = 4_096;

/// One item, as the API takes and answers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Item {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<f64>,
    /// Whether it can be bought now; `stock: 0` also makes it unavailable.
    #[serde(default = "available_by_default")]
    pub available: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stock: Option<u64>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub attributes: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    /// The item's page (a widget links to it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

fn available_by_default() -> bool {
    true
}

impl Item {
    /// Whether it may be recommended: available and not out of stock.
    pub fn in_stock(&self) -> bool {
        self.available && self.stock != Some(0)
    }

    /// Checks every field; the message names the field and the fix.
    pub fn validate(&self) -> Result<(), String> {
        let id = self.id.trim();
        if id.is_empty() || id.chars().count() > ID_CHARS_MAX || id != self.id {
            return Err(format!(
                "id: expected 1 to {ID_CHARS_MAX} characters without surrounding spaces (e.g. \"sku-1042\")"
            ));
        }
        if let Some(name) = &self.name
            && name.chars().count() > NAME_CHARS_MAX
        {
            return Err(format!("name: at most {NAME_CHARS_MAX} characters"));
        }
        if let Some(category) = &self.category
            && (category.is_empty() || category.chars().count() > ID_CHARS_MAX)
        {
            return Err(format!("category: expected 1 to {ID_CHARS_MAX} characters"));
        }
        if let Some(price) = self.price
            && !(price.is_finite() && price >= 0.0)
        {
            return Err("price: expected a number >= 0".into());
        }
        for (field, url) in [("image_url", &self.image_url), ("url", &self.url)] {
            if let Some(url) = url
                && (url.len() > IMAGE_URL_CHARS_MAX
                    || !(url.starts_with("https://")
                        || url.starts_with("http://")
                        || url.starts_with('/')))
            {
                return Err(format!(
                    "{field}: expected an http(s) URL or a path of at most {IMAGE_URL_CHARS_MAX} characters"
                ));
            }
        }
        let attributes = serde_json::to_string(&self.attributes).unwrap_or_default();
        if attributes.len() > ATTRIBUTES_BYTES_MAX {
            return Err(format!(
                "attributes: at most {ATTRIBUTES_BYTES_MAX} bytes of JSON ({} given); keep descriptions elsewhere",
                attributes.len()
            ));
        }
        Ok(())
    }

    /// The item as an audience-language person, so a rule's condition
    /// reads its fields and attributes as traits (`trait margin > 0.3`,
    /// `trait category = "shoes"`).
    pub fn as_traits(&self) -> Map<String, Value> {
        let mut traits = self.attributes.clone();
        traits.insert("id".into(), Value::from(self.id.clone()));
        if let Some(name) = &self.name {
            traits.insert("name".into(), Value::from(name.clone()));
        }
        if let Some(category) = &self.category {
            traits.insert("category".into(), Value::from(category.clone()));
        }
        if let Some(price) = self.price {
            traits.insert("price".into(), Value::from(price));
        }
        traits.insert("available".into(), Value::from(self.in_stock()));
        traits
    }

    /// The item a `Product Viewed` (or similar) event describes, from its
    /// properties in the Segment e-commerce spec (`product_id` or `sku`,
    /// `name`, `category`, `price`, `image_url`); `None` without an id.
    pub fn from_properties(properties: &Map<String, Value>) -> Option<Item> {
        let id = item_id(properties)?;
        let text = |key: &str| {
            properties
                .get(key)
                .and_then(Value::as_str)
                .filter(|text| !text.is_empty())
                .map(str::to_string)
        };
        let item = Item {
            id,
            name: text("name"),
            category: text("category"),
            price: properties.get("price").and_then(Value::as_f64),
            available: true,
            stock: None,
            attributes: Map::new(),
            image_url: text("image_url"),
            url: text("url"),
        };
        item.validate().is_ok().then_some(item)
    }

    /// This item with the fields `newer` sets (an event's view of an
    /// item updates what it names and keeps the rest, such as stock).
    pub fn updated_by(&self, newer: &Item) -> Item {
        Item {
            id: self.id.clone(),
            name: newer.name.clone().or_else(|| self.name.clone()),
            category: newer.category.clone().or_else(|| self.category.clone()),
            price: newer.price.or(self.price),
            available: self.available,
            stock: self.stock,
            attributes: self.attributes.clone(),
            image_url: newer.image_url.clone().or_else(|| self.image_url.clone()),
            url: newer.url.clone().or_else(|| self.url.clone()),
        }
    }
}

/// The item id an event's properties (or one entry of an order's
/// `products`) name: `product_id`, else `sku`, else `id`; numbers are
/// taken as their decimal text.
pub fn item_id(properties: &Map<String, Value>) -> Option<String> {
    ["product_id", "sku", "id"].iter().find_map(|key| {
        let id = match properties.get(*key)? {
            Value::String(text) => text.trim().to_string(),
            Value::Number(number) => number.to_string(),
            _ => return None,
        };
        (!id.is_empty() && id.chars().count() <= ID_CHARS_MAX).then_some(id)
    })
}

/// The catalog in memory (the store keeps it durable).
#[derive(Debug, Default)]
pub struct Catalog {
    items: HashMap<String, Item>,
}

impl Catalog {
    pub fn from_items(items: impl IntoIterator<Item = Item>) -> Catalog {
        Catalog {
            items: items
                .into_iter()
                .map(|item| (item.id.clone(), item))
                .collect(),
        }
    }

    pub fn get(&self, id: &str) -> Option<&Item> {
        self.items.get(id)
    }

    pub fn put(&mut self, item: Item) {
        self.items.insert(item.id.clone(), item);
    }

    pub fn remove(&mut self, id: &str) -> Option<Item> {
        self.items.remove(id)
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Items in id order from `after` (exclusive), at most `limit`.
    pub fn page(&self, after: Option<&str>, limit: usize) -> Vec<&Item> {
        let mut ids: Vec<&String> = self
            .items
            .keys()
            .filter(|id| after.is_none_or(|after| id.as_str() > after))
            .collect();
        ids.sort();
        ids.truncate(limit);
        ids.into_iter()
            .filter_map(|id| self.items.get(id))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(value: Value) -> Result<Item, String> {
        let item: Item = serde_json::from_value(value).map_err(|error| error.to_string())?;
        item.validate().map(|_| item)
    }

    #[test]
    fn an_item_needs_a_clean_id_and_sane_fields() {
        assert!(item(json!({"id": "sku-1", "price": 10.5, "category": "shoes"})).is_ok());
        assert!(item(json!({"id": " sku-1"})).unwrap_err().contains("id:"));
        assert!(
            item(json!({"id": "a", "price": -1}))
                .unwrap_err()
                .contains("price")
        );
        assert!(
            item(json!({"id": "a", "image_url": "javascript:alert(1)"}))
                .unwrap_err()
                .contains("image_url")
        );
        assert!(
            item(json!({"id": "a", "colour": "red"}))
                .unwrap_err()
                .contains("unknown field")
        );
        let big = "x".repeat(ATTRIBUTES_BYTES_MAX);
        assert!(
            item(json!({"id": "a", "attributes": {"d": big}}))
                .unwrap_err()
                .contains("attributes")
        );
    }

    #[test]
    fn zero_stock_or_unavailable_is_out_of_stock() {
        assert!(item(json!({"id": "a"})).unwrap().in_stock());
        assert!(!item(json!({"id": "a", "stock": 0})).unwrap().in_stock());
        assert!(
            !item(json!({"id": "a", "available": false}))
                .unwrap()
                .in_stock()
        );
    }

    #[test]
    fn events_describe_items_by_product_id_or_sku() {
        let properties = json!({"sku": 42, "name": "Shoe", "price": 9.5})
            .as_object()
            .unwrap()
            .clone();
        let from_event = Item::from_properties(&properties).unwrap();
        assert_eq!(from_event.id, "42");
        let stocked = Item {
            stock: Some(3),
            ..item(json!({"id": "42", "name": "Old"})).unwrap()
        };
        let merged = stocked.updated_by(&from_event);
        assert_eq!(merged.name.as_deref(), Some("Shoe"));
        assert_eq!(merged.stock, Some(3));
        assert!(Item::from_properties(&Map::new()).is_none());
    }
}
