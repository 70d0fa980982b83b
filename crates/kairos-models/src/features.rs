//! Features computed in the stream, declared once: [`FeatureState`] is
//! what a profile keeps (a few hundred bytes), updated by every event in
//! log order; [`Feature`] names what a model may read of it. Training rows
//! come from the same code — feed a person's stored events through
//! [`FeatureState::observe`] and read the features — so training and
//! serving cannot disagree.
//!
//! Sessions end after 30 minutes without an event (the analytics
//! convention). Page kinds follow the Online Shoppers data set: a page's
//! `properties.page_type` (`administrative`, `informational`,
//! `product_related`, or `account`/`help`/`product`-like synonyms).

use jiff::Timestamp;
use kairos_core::event::EventProperties;
use kairos_core::{Event, EventType};
use kairos_insights::bgnbd::CustomerSummary;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Inactivity that ends a session.
pub const SESSION_GAP_SECONDS: i64 = 30 * 60;
/// Distinct products / categories remembered per session.
const DISTINCT_MAX: usize = 64;

/// Every feature a model can read, by name (`inputs` of a model).
pub const CATALOG: &[(&str, &str)] = &[
    ("session.events", "events in the current session"),
    ("session.page_views", "page events in the session"),
    (
        "session.product_views",
        "`Product Viewed` events in the session",
    ),
    ("session.cart_adds", "`Product Added` events in the session"),
    (
        "session.distinct_products",
        "distinct `product_id`s seen in the session",
    ),
    (
        "session.distinct_categories",
        "distinct `category` values seen in the session",
    ),
    (
        "session.duration_seconds",
        "seconds from the session's first event to this one",
    ),
    (
        "session.administrative",
        "administrative pages (account, login, checkout) in the session",
    ),
    ("session.administrative_duration", "seconds spent on them"),
    (
        "session.informational",
        "informational pages (help, about, faq) in the session",
    ),
    ("session.informational_duration", "seconds spent on them"),
    (
        "session.product_related",
        "product pages (and Product Viewed) in the session",
    ),
    ("session.product_related_duration", "seconds spent on them"),
    (
        "session.bounce_rate",
        "mean `bounce_rate` property of the session's pages (NaN if none)",
    ),
    (
        "session.exit_rate",
        "mean `exit_rate` property of the session's pages (NaN if none)",
    ),
    (
        "session.page_value",
        "mean `page_value` property of the session's pages (0 if none)",
    ),
    (
        "session.special_day",
        "the latest `special_day` property in the session (0 if none)",
    ),
    ("context.hour", "hour of the event (UTC), 0-23"),
    ("context.weekday", "weekday of the event, 1 = Monday .. 7"),
    ("context.weekend", "1 on Saturday and Sunday"),
    ("context.month", "month of the event, 1-12"),
    (
        "context.mobile",
        "1 when context.device.type is mobile or tablet",
    ),
    ("profile.sessions", "sessions so far, this one included"),
    (
        "profile.returning",
        "1 when this is not the person's first session",
    ),
    ("profile.orders", "`Order Completed` events"),
    (
        "profile.revenue",
        "sum of their `revenue` (or `total`) properties",
    ),
    (
        "profile.days_since_last_order",
        "days from the previous order to this event (NaN before any)",
    ),
    (
        "profile.repeat_order_days",
        "distinct order days minus one (BG/NBD frequency)",
    ),
    (
        "profile.order_recency_weeks",
        "weeks from the first to the last order day (BG/NBD recency)",
    ),
    (
        "profile.order_age_weeks",
        "weeks from the first order day to this event (BG/NBD T)",
    ),
];

/// Features that change with time alone: models reading them are
/// re-scored as days pass ([`crate::ModelSet::reads_time`]).
pub const TIME_FEATURES: [&str; 2] = ["profile.days_since_last_order", "profile.order_age_weeks"];

/// Track events whose properties feed features; other events' properties
/// are not parsed at all.
const TRACKED: [&str; 3] = ["Product Viewed", "Product Added", "Order Completed"];

/// The properties features read, borrowed from the event's properties
/// decoded once for every reader in the shard ([`EventProperties`]).
#[derive(Debug)]
struct FeatureProperties<'a> {
    page_type: Option<&'a Value>,
    bounce_rate: Option<&'a Value>,
    exit_rate: Option<&'a Value>,
    page_value: Option<&'a Value>,
    special_day: Option<&'a Value>,
    product_id: Option<&'a Value>,
    category: Option<&'a Value>,
    revenue: Option<&'a Value>,
    total: Option<&'a Value>,
}

impl<'a> FeatureProperties<'a> {
    fn of(properties: &'a Map<String, Value>) -> FeatureProperties<'a> {
        // A null reads as absent (`revenue: null` falls back to `total`).
        let get = |key: &str| properties.get(key).filter(|value| !value.is_null());
        FeatureProperties {
            page_type: get("page_type"),
            bounce_rate: get("bounce_rate"),
            exit_rate: get("exit_rate"),
            page_value: get("page_value"),
            special_day: get("special_day"),
            product_id: get("product_id"),
            category: get("category"),
            revenue: get("revenue"),
            total: get("total"),
        }
    }
}

/// `context.device.type` is mobile or tablet; contexts without a device
/// (most server-side calls) are not parsed.
fn is_mobile(context: &str) -> bool {
    #[derive(Deserialize)]
    struct Context {
        device: Option<Device>,
    }
    #[derive(Deserialize)]
    struct Device {
        #[serde(rename = "type")]
        kind: Option<Value>,
    }
    if !context.contains("\"device\"") {
        return false;
    }
    serde_json::from_str::<Context>(context)
        .ok()
        .and_then(|context| context.device?.kind)
        .and_then(|kind| kind.as_str().map(str::to_lowercase))
        .is_some_and(|kind| kind == "mobile" || kind == "tablet")
}

/// A feature resolved once, when a model is loaded.
#[derive(Debug, Clone, PartialEq)]
pub enum Feature {
    Builtin(usize),
    /// `trait.<name>`: a numeric trait (booleans 0/1; NaN if missing).
    Trait(String),
    /// `computed.<name>`: a computed trait's value (NaN if missing).
    Computed(String),
}

impl Feature {
    pub fn parse(name: &str) -> Result<Feature, String> {
        if let Some(position) = CATALOG.iter().position(|(known, _)| *known == name) {
            return Ok(Feature::Builtin(position));
        }
        if let Some(trait_name) = name.strip_prefix("trait.").filter(|rest| !rest.is_empty()) {
            return Ok(Feature::Trait(trait_name.to_string()));
        }
        if let Some(computed) = name
            .strip_prefix("computed.")
            .filter(|rest| !rest.is_empty())
        {
            return Ok(Feature::Computed(computed.to_string()));
        }
        Err(format!(
            "unknown feature {name:?}: use trait.<name>, computed.<name> or one of {}",
            CATALOG
                .iter()
                .map(|(known, _)| *known)
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

/// What a profile keeps for its features.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FeatureState {
    session_start: i64,
    last_at: i64,
    session_events: u32,
    page_views: u32,
    product_views: u32,
    cart_adds: u32,
    products: Vec<u64>,
    categories: Vec<u64>,
    /// Pages and seconds by kind: administrative, informational, product.
    pages: [u32; 3],
    seconds: [f64; 3],
    /// The kind of the previous page, whose time ends at the next event.
    open_page: Option<usize>,
    bounce: (f64, u32),
    exit: (f64, u32),
    page_value: (f64, u32),
    special_day: f64,
    sessions: u32,
    orders: u32,
    revenue: f64,
    first_order_day: Option<i64>,
    last_order_day: Option<i64>,
    order_days: u32,
    /// The previous order's time (for `days_since_last_order`).
    last_order_at: Option<i64>,
    previous_order_at: Option<i64>,
    /// Of the latest event.
    at: i64,
    /// The moment the time-dependent profile features (order age, days
    /// since the last order) are measured to: the latest event, or later
    /// when [`FeatureState::age_to`] moved it on.
    as_of: i64,
    mobile: bool,
}

impl FeatureState {
    /// Takes one event of the person into account (events in log order).
    pub fn observe(&mut self, event: &Event) {
        self.observe_with(event, &EventProperties::of(event));
    }

    /// [`FeatureState::observe`] with the event's properties shared with
    /// its other readers (decoded here only if no one did before and a
    /// feature reads them).
    pub fn observe_with(&mut self, event: &Event, properties: &EventProperties) {
        let at = event.timestamp.as_second();
        if self.sessions == 0 || at - self.last_at > SESSION_GAP_SECONDS || at < self.session_start
        {
            self.start_session(at);
        } else if let Some(kind) = self.open_page.take() {
            self.seconds[kind] += (at - self.last_at).max(0) as f64;
        }
        self.last_at = self.last_at.max(at);
        self.at = at;
        self.as_of = at;
        self.session_events += 1;
        self.mobile = event
            .field("context")
            .is_some_and(|raw| is_mobile(raw.get()));
        let reads_properties = match (event.event_type, event.event.as_deref()) {
            (EventType::Page | EventType::Screen, _) => true,
            (EventType::Track, Some(name)) => TRACKED.contains(&name),
            _ => false,
        };
        if !reads_properties {
            return;
        }
        let properties = FeatureProperties::of(properties.get());
        match (event.event_type, event.event.as_deref()) {
            (EventType::Page | EventType::Screen, _) => self.page(&properties),
            (EventType::Track, Some("Product Viewed")) => {
                self.product_views += 1;
                self.pages[2] += 1;
                self.open_page = Some(2);
                self.remember(&properties);
            }
            (EventType::Track, Some("Product Added")) => {
                self.cart_adds += 1;
                self.remember(&properties);
            }
            (EventType::Track, Some("Order Completed")) => self.order(at, &properties),
            _ => {}
        }
    }

    fn start_session(&mut self, at: i64) {
        let kept = FeatureState {
            sessions: self.sessions + 1,
            orders: self.orders,
            revenue: self.revenue,
            first_order_day: self.first_order_day,
            last_order_day: self.last_order_day,
            order_days: self.order_days,
            last_order_at: self.last_order_at,
            previous_order_at: self.previous_order_at,
            session_start: at,
            last_at: at,
            ..FeatureState::default()
        };
        *self = kept;
    }

    fn page(&mut self, properties: &FeatureProperties) {
        self.page_views += 1;
        let kind = match properties.page_type.and_then(Value::as_str) {
            Some("administrative" | "account" | "login" | "checkout" | "cart") => Some(0),
            Some("informational" | "help" | "about" | "faq" | "blog") => Some(1),
            Some("product_related" | "product" | "category" | "search") => Some(2),
            _ => None,
        };
        if let Some(kind) = kind {
            self.pages[kind] += 1;
        }
        self.open_page = kind;
        let mean = |value: Option<&Value>, slot: &mut (f64, u32)| {
            if let Some(value) = value.and_then(Value::as_f64) {
                slot.0 += value;
                slot.1 += 1;
            }
        };
        mean(properties.bounce_rate, &mut self.bounce);
        mean(properties.exit_rate, &mut self.exit);
        mean(properties.page_value, &mut self.page_value);
        if let Some(day) = properties.special_day.and_then(Value::as_f64) {
            self.special_day = day;
        }
        self.remember(properties);
    }

    fn remember(&mut self, properties: &FeatureProperties) {
        let note = |set: &mut Vec<u64>, value: Option<&Value>| {
            if let Some(value) = value.filter(|value| !value.is_null()) {
                let hash = fnv(value.to_string().as_bytes());
                if !set.contains(&hash) && set.len() < DISTINCT_MAX {
                    set.push(hash);
                }
            }
        };
        note(&mut self.products, properties.product_id);
        note(&mut self.categories, properties.category);
    }

    fn order(&mut self, at: i64, properties: &FeatureProperties) {
        self.orders += 1;
        self.revenue += properties
            .revenue
            .or(properties.total)
            .and_then(Value::as_f64)
            .unwrap_or(0.0);
        let day = at.div_euclid(86_400);
        // Same-day orders are one purchase occasion (as BG/NBD counts them).
        if self.last_order_day != Some(day) && self.first_order_day != Some(day) {
            self.order_days += 1;
        }
        self.first_order_day = Some(self.first_order_day.map_or(day, |first| first.min(day)));
        self.last_order_day = Some(self.last_order_day.map_or(day, |last| last.max(day)));
        self.previous_order_at = self.last_order_at;
        self.last_order_at = Some(at);
    }

    /// A built-in feature's value now (catalog position).
    pub fn builtin(&self, position: usize) -> f64 {
        let mean = |(sum, count): (f64, u32), empty: f64| {
            if count == 0 {
                empty
            } else {
                sum / f64::from(count)
            }
        };
        let when = Timestamp::from_second(self.at).unwrap_or(Timestamp::UNIX_EPOCH);
        let date = when.to_zoned_datetime(jiff::tz::TimeZone::UTC);
        let weekday = f64::from(date.weekday().to_monday_one_offset());
        let today = self.as_of.div_euclid(86_400);
        match CATALOG[position].0 {
            "session.events" => f64::from(self.session_events),
            "session.page_views" => f64::from(self.page_views),
            "session.product_views" => f64::from(self.product_views),
            "session.cart_adds" => f64::from(self.cart_adds),
            "session.distinct_products" => self.products.len() as f64,
            "session.distinct_categories" => self.categories.len() as f64,
            "session.duration_seconds" => (self.at - self.session_start).max(0) as f64,
            "session.administrative" => f64::from(self.pages[0]),
            "session.administrative_duration" => self.seconds[0],
            "session.informational" => f64::from(self.pages[1]),
            "session.informational_duration" => self.seconds[1],
            "session.product_related" => f64::from(self.pages[2]),
            "session.product_related_duration" => self.seconds[2],
            "session.bounce_rate" => mean(self.bounce, f64::NAN),
            "session.exit_rate" => mean(self.exit, f64::NAN),
            "session.page_value" => mean(self.page_value, 0.0),
            "session.special_day" => self.special_day,
            "context.hour" => f64::from(date.hour()),
            "context.weekday" => weekday,
            "context.weekend" => f64::from(u8::from(weekday >= 6.0)),
            "context.month" => f64::from(date.month()),
            "context.mobile" => f64::from(u8::from(self.mobile)),
            "profile.sessions" => f64::from(self.sessions),
            "profile.returning" => f64::from(u8::from(self.sessions > 1)),
            "profile.orders" => f64::from(self.orders),
            "profile.revenue" => self.revenue,
            "profile.days_since_last_order" => {
                // The order being observed is not "the last order" for itself.
                let previous = if self.last_order_at == Some(self.as_of) {
                    self.previous_order_at
                } else {
                    self.last_order_at
                };
                previous.map_or(f64::NAN, |last| (self.as_of - last) as f64 / 86_400.0)
            }
            "profile.repeat_order_days" => f64::from(self.order_days.saturating_sub(1)),
            "profile.order_recency_weeks" => match (self.first_order_day, self.last_order_day) {
                (Some(first), Some(last)) => weeks(last - first),
                _ => 0.0,
            },
            "profile.order_age_weeks" => self
                .first_order_day
                .map_or(0.0, |first| weeks(today - first)),
            _ => f64::NAN,
        }
    }

    /// A feature's value for a model's input vector.
    pub fn value(
        &self,
        feature: &Feature,
        traits: &Map<String, Value>,
        computed: &Map<String, Value>,
    ) -> f64 {
        let number = |value: Option<&Value>| match value {
            Some(Value::Number(number)) => number.as_f64().unwrap_or(f64::NAN),
            Some(Value::Bool(flag)) => f64::from(u8::from(*flag)),
            Some(Value::String(text)) => text.parse().unwrap_or(f64::NAN),
            _ => f64::NAN,
        };
        match feature {
            Feature::Builtin(position) => self.builtin(*position),
            Feature::Trait(name) => number(traits.get(name)),
            Feature::Computed(name) => number(computed.get(name)),
        }
    }

    /// Measures the time-dependent profile features to `now` instead of
    /// the latest event, once `now` is on a later day (their unit: BG/NBD
    /// counts days; within the event's own day nothing moves, so an
    /// order's "days since the previous order" stays what it was). Returns
    /// whether they moved.
    pub fn age_to(&mut self, now: Timestamp) -> bool {
        let now = now.as_second();
        let moved = now.div_euclid(86_400) > self.as_of.div_euclid(86_400);
        if moved {
            self.as_of = now;
        }
        moved
    }

    /// BG/NBD's statistics of the person's orders as of `now` (frequency:
    /// repeat order days; recency: first to last order day; age: first
    /// order day to `now`'s day, in weeks), or nothing without an order.
    pub fn purchase_summary(&self, now: Timestamp) -> Option<CustomerSummary> {
        let (first, last) = (self.first_order_day?, self.last_order_day?);
        Some(CustomerSummary {
            frequency: f64::from(self.order_days.saturating_sub(1)),
            recency: weeks(last - first),
            age: weeks(now.as_second().div_euclid(86_400) - first),
        })
    }

    /// Whether the person was ever seen.
    pub fn is_empty(&self) -> bool {
        self.sessions == 0
    }
}

fn weeks(days: i64) -> f64 {
    days as f64 / 7.0
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(raw: serde_json::Value) -> Event {
        use kairos_core::normalize::{Arrival, IngestLimits, normalize_event};
        let raw = serde_json::value::RawValue::from_string(raw.to_string()).unwrap();
        let limits = IngestLimits::default();
        let arrival = Arrival {
            source_id: "src",
            received_at: "2030-01-01T00:00:00Z".parse().unwrap(),
            batch_sent_at: None,
            path_type: None,
            limits: &limits,
            plan: None,
        };
        normalize_event(&raw, &arrival).unwrap()
    }

    fn feature(state: &FeatureState, name: &str) -> f64 {
        let position = CATALOG.iter().position(|(known, _)| *known == name);
        state.builtin(position.unwrap())
    }

    #[test]
    fn features_read_the_properties_another_reader_already_decoded() {
        let order = event(serde_json::json!({
            "type": "track", "event": "Order Completed", "userId": "u", "messageId": "o1",
            "timestamp": "2030-01-01T00:00:00Z",
            "properties": {"revenue": null, "total": 42.5, "product_id": "p1"}}));
        let properties = EventProperties::of(&order);
        // Audiences (say) decoded them first; features reuse that map.
        assert_eq!(properties.get()["total"], 42.5);
        let mut shared = FeatureState::default();
        shared.observe_with(&order, &properties);
        let mut alone = FeatureState::default();
        alone.observe(&order);
        assert_eq!(shared, alone);
        // A null revenue reads as absent: the total counts.
        assert_eq!(feature(&shared, "profile.revenue"), 42.5);
        assert_eq!(feature(&shared, "profile.orders"), 1.0);
    }
}
