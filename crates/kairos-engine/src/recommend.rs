//! Recommendations in the engine (docs/recommendations.md):
//!
//! - feeding the live recommender ([`kairos_recommend::Recommender`]) from
//!   the router: product events in the Segment e-commerce spec, read after
//!   the person is resolved, so merges and erasures reach it in the log's
//!   order and a checkpoint holds it at the same position as the identity
//!   graph;
//! - the [`Shelf`]: the item catalog (durable in the store, held here in
//!   memory) and the boost and bury rules, so every caller — the API,
//!   journeys' templates, decisions — recommends under the same rules.

use std::sync::RwLock;

use kairos_core::Event;
use kairos_core::audience::ast::Expr;
use kairos_core::audience::eval::{PersonFacts, evaluate};
use kairos_core::event::EventType;
use kairos_recommend::{Catalog, Interaction, Item};
use kairos_store::Store;
use serde::{Deserialize, Serialize};

/// Boost and bury rules: each is evaluated on every candidate item.
pub const RULES_MAX: usize = 50;

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
    // Only the product references are read: the router must not parse
    // every product event's properties whole (the shard does that once).
    let refs: ProductRef = event
        .field("properties")
        .and_then(|raw| serde_json::from_str(raw.get()).ok())?;
    let items: Vec<String> = match (&refs.products, interaction) {
        (Some(products), Interaction::Purchase) => products
            .iter()
            .take(ORDER_ITEMS_MAX)
            .filter_map(ProductRef::item_id)
            .collect(),
        _ => refs.item_id().into_iter().collect(),
    };
    (!items.is_empty()).then_some((interaction, items))
}

/// What the recommender reads of a product event's properties — its
/// product, or an order's `products` — the rest is skipped, not built.
/// One product: `product_id`, else `sku`, else `id` (as
/// [`kairos_recommend::catalog::item_id`] reads them).
#[derive(Deserialize, Default)]
struct ProductRef {
    #[serde(default)]
    product_id: Option<IdText>,
    #[serde(default)]
    sku: Option<IdText>,
    #[serde(default)]
    id: Option<IdText>,
    /// An order's products (read on `Order Completed` only).
    #[serde(default)]
    products: Option<Vec<ProductRef>>,
}

/// An id as sent: text, or a number taken as its decimal text; anything
/// else counts as absent.
#[derive(Deserialize)]
#[serde(untagged)]
enum IdText {
    Text(String),
    Number(serde_json::Number),
    Other(serde::de::IgnoredAny),
}

impl ProductRef {
    fn item_id(&self) -> Option<String> {
        [&self.product_id, &self.sku, &self.id]
            .into_iter()
            .find_map(|id| {
                let text = match id.as_ref()? {
                    IdText::Text(text) => text.trim().to_string(),
                    IdText::Number(number) => number.to_string(),
                    IdText::Other(_) => return None,
                };
                (!text.is_empty()
                    && text.chars().count() <= kairos_recommend::catalog::ID_CHARS_MAX)
                    .then_some(text)
            })
    }
}

/// A boost (weight > 1) or bury (weight < 1; 0 never recommends) of the
/// items a condition holds for.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// An audience-language condition on the item, whose fields and
    /// attributes read as traits: `trait margin > 0.3`.
    pub when: String,
    pub weight: f64,
}

/// Why a rule was refused; `position` is the condition's line and column.
#[derive(Debug)]
pub struct RuleError {
    pub message: String,
    pub position: Option<(usize, usize)>,
}

struct Rule {
    spec: RuleSpec,
    condition: Expr,
}

/// The catalog and the rules every recommendation is made under.
pub struct Shelf {
    catalog: RwLock<Catalog>,
    rules: RwLock<Vec<Rule>>,
}

impl Shelf {
    /// The catalog and rules stored (an unreadable one starts empty and
    /// says so).
    pub(crate) fn load(store: &Store) -> Shelf {
        let stored = store.items.all().unwrap_or_else(|error| {
            tracing::error!(%error, "the item catalog is unreadable; starting empty");
            Vec::new()
        });
        let items = stored
            .iter()
            .filter_map(|json| serde_json::from_slice::<Item>(json).ok());
        let specs: Vec<RuleSpec> = store
            .items
            .rules()
            .ok()
            .flatten()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        let rules = specs
            .into_iter()
            .filter_map(|spec| compile_rule(spec).ok())
            .collect();
        Shelf {
            catalog: RwLock::new(Catalog::from_items(items)),
            rules: RwLock::new(rules),
        }
    }

    pub fn catalog(&self) -> std::sync::RwLockReadGuard<'_, Catalog> {
        self.catalog.read().expect("catalog lock")
    }

    pub fn catalog_mut(&self) -> std::sync::RwLockWriteGuard<'_, Catalog> {
        self.catalog.write().expect("catalog lock")
    }

    pub fn rules(&self) -> Vec<RuleSpec> {
        let rules = self.rules.read().expect("rules lock");
        rules.iter().map(|rule| rule.spec.clone()).collect()
    }

    /// Checks and stores new rules (replacing all); durable when it returns.
    pub fn set_rules(&self, store: &Store, specs: Vec<RuleSpec>) -> Result<(), RuleError> {
        if specs.len() > RULES_MAX {
            return Err(RuleError {
                message: format!("rules: at most {RULES_MAX}"),
                position: None,
            });
        }
        let compiled = specs
            .iter()
            .cloned()
            .map(compile_rule)
            .collect::<Result<Vec<Rule>, RuleError>>()?;
        let json = serde_json::to_vec(&specs).expect("rules serialize");
        store.items.set_rules(json).map_err(|error| RuleError {
            message: error.to_string(),
            position: None,
        })?;
        *self.rules.write().expect("rules lock") = compiled;
        Ok(())
    }

    /// The product of the weights of every rule whose condition holds.
    pub fn weight(&self, item: &Item, now: jiff::Timestamp) -> f64 {
        let rules = self.rules.read().expect("rules lock");
        if rules.is_empty() {
            return 1.0;
        }
        let facts = PersonFacts {
            traits: item.as_traits(),
            ..Default::default()
        };
        rules
            .iter()
            .filter(|rule| evaluate(&rule.condition, &[], &facts, now))
            .map(|rule| rule.spec.weight)
            .product()
    }

    /// Stores items learned from a source's events (`items_from_events`):
    /// each updates what it names of a known item. Not waited on by the
    /// event's acknowledgement; a lost update is learned again.
    pub fn learn(&self, store: &Store, learned: Vec<Item>) {
        if learned.is_empty() {
            return;
        }
        let mut catalog = self.catalog_mut();
        let mut changed = Vec::new();
        for item in learned {
            let merged = match catalog.get(&item.id) {
                Some(known) => known.updated_by(&item),
                None => item,
            };
            if catalog.get(&merged.id) != Some(&merged) {
                changed.push(merged.clone());
                catalog.put(merged);
            }
        }
        if let Err(error) = store.items.put_many(&encoded(&changed), false) {
            tracing::warn!(%error, "items learned from events not stored");
        }
    }
}

/// Items as the store keeps them: `(id, JSON)`.
pub fn encoded(items: &[Item]) -> Vec<(String, Vec<u8>)> {
    items
        .iter()
        .map(|item| {
            let json = serde_json::to_vec(item).expect("an item serializes");
            (item.id.clone(), json)
        })
        .collect()
}

/// A rule's condition may only read the item (its traits), combined with
/// `and`, `or` and `not`.
fn item_only(expr: &Expr) -> bool {
    match expr {
        Expr::And { all } => all.iter().all(item_only),
        Expr::Or { any } => any.iter().all(item_only),
        Expr::Not { expr } => item_only(expr),
        Expr::Trait { .. } => true,
        _ => false,
    }
}

fn compile_rule(spec: RuleSpec) -> Result<Rule, RuleError> {
    if !(spec.weight.is_finite() && spec.weight >= 0.0) {
        return Err(RuleError {
            message: format!(
                "{:?}: weight: expected a number >= 0 (0 never recommends)",
                spec.when
            ),
            position: None,
        });
    }
    let condition =
        kairos_core::audience::parser::parse(&spec.when).map_err(|error| RuleError {
            message: format!("{:?}: {}", spec.when, error.message),
            position: Some((error.line, error.column)),
        })?;
    if !item_only(&condition) {
        return Err(RuleError {
            message: format!(
                "{:?}: a rule reads the item only: `trait <field or attribute> ...` joined by and/or/not",
                spec.when
            ),
            position: None,
        });
    }
    Ok(Rule { spec, condition })
}
