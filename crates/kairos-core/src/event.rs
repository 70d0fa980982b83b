//! The normalized event: what the log stores and every later stage reads.
//!
//! Only the fields Kairos itself interprets are decoded into typed fields.
//! Everything else the sender put at the top level (`properties`, `context`,
//! `integrations`, `_metadata`, `channel`, ...) is kept as raw JSON, byte for
//! byte, so nothing a client sent is lost and the hot path never builds a
//! JSON tree for data it does not look at.

use std::fmt;

use jiff::Timestamp;
use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// The six Segment Spec call types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    Track,
    Identify,
    Page,
    Screen,
    Group,
    Alias,
}

impl EventType {
    pub const ALL: [EventType; 6] = [
        EventType::Track,
        EventType::Identify,
        EventType::Page,
        EventType::Screen,
        EventType::Group,
        EventType::Alias,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Track => "track",
            EventType::Identify => "identify",
            EventType::Page => "page",
            EventType::Screen => "screen",
            EventType::Group => "group",
            EventType::Alias => "alias",
        }
    }

    /// Parses a spec type name; also accepts the browser short forms (`t`, `i`, ...).
    pub fn parse(name: &str) -> Option<EventType> {
        Some(match name {
            "track" | "t" => EventType::Track,
            "identify" | "i" => EventType::Identify,
            "page" | "p" => EventType::Page,
            "screen" | "s" => EventType::Screen,
            "group" | "g" => EventType::Group,
            "alias" | "a" => EventType::Alias,
            _ => return None,
        })
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An accepted, normalized event.
#[derive(Debug, Clone)]
pub struct Event {
    /// Position in the log; assigned when the event is appended (0 before).
    pub seq: u64,
    pub source_id: String,
    pub message_id: String,
    pub event_type: EventType,
    /// The track event name (`"Order Completed"`).
    pub event: Option<String>,
    pub user_id: Option<String>,
    pub anonymous_id: Option<String>,
    /// Event time, corrected for client clock skew.
    pub timestamp: Timestamp,
    pub received_at: Timestamp,
    pub sent_at: Option<Timestamp>,
    /// The client's own clock reading, before skew correction.
    pub original_timestamp: Option<Timestamp>,
    /// Traits of identify and group calls, normalized (emails lower-cased),
    /// taken from `context.traits` when the top level has none.
    pub traits: Option<Map<String, Value>>,
    /// Tracking-plan violations of a plan in `flag` mode.
    pub violations: Vec<String>,
    /// Every other top-level field, exactly as sent.
    pub fields: Vec<(String, Box<RawValue>)>,
}

/// Raw fields compare by their exact JSON text.
impl PartialEq for Event {
    fn eq(&self, other: &Event) -> bool {
        let same_fields = self.fields.len() == other.fields.len()
            && self.fields.iter().zip(&other.fields).all(
                |((key, value), (other_key, other_value))| {
                    key == other_key && value.get() == other_value.get()
                },
            );
        same_fields
            && self.seq == other.seq
            && self.source_id == other.source_id
            && self.message_id == other.message_id
            && self.event_type == other.event_type
            && self.event == other.event
            && self.user_id == other.user_id
            && self.anonymous_id == other.anonymous_id
            && self.timestamp == other.timestamp
            && self.received_at == other.received_at
            && self.sent_at == other.sent_at
            && self.original_timestamp == other.original_timestamp
            && self.traits == other.traits
            && self.violations == other.violations
    }
}

impl Event {
    /// A top-level field kept as sent (`properties`, `context`, ...).
    pub fn field(&self, name: &str) -> Option<&RawValue> {
        self.fields
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_ref())
    }

    /// `properties` decoded, or an empty object.
    pub fn properties(&self) -> Map<String, Value> {
        EventProperties::of(self).into_map()
    }

    /// The key that chooses the log partition: the device first, so one
    /// browser's stream stays in order in one partition; server-side calls
    /// without a device fall back to the user id.
    pub fn routing_key(&self) -> &str {
        self.anonymous_id
            .as_deref()
            .or(self.user_id.as_deref())
            .unwrap_or(&self.message_id)
    }

    /// Serializes the event for the log. `seq` is not written: it is the
    /// log key, and injected again when read.
    pub fn to_log_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            256 + self
                .fields
                .iter()
                .map(|(_, v)| v.get().len() + 16)
                .sum::<usize>(),
        );
        serde_json::to_writer(&mut out, &LogForm(self)).expect("an event always serializes");
        out
    }

    /// Reads an event back from the log.
    pub fn from_log_bytes(seq: u64, bytes: &[u8]) -> Result<Event, serde_json::Error> {
        let mut event: Event = serde_json::from_slice(bytes)?;
        event.seq = seq;
        Ok(event)
    }
}

/// Serializes without `seq` (the log's key holds it).
struct LogForm<'a>(&'a Event);

impl Serialize for LogForm<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_event(self.0, false, serializer)
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_event(self, true, serializer)
    }
}

fn serialize_event<S: Serializer>(
    event: &Event,
    with_seq: bool,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut map = serializer.serialize_map(None)?;
    if with_seq {
        map.serialize_entry("seq", &event.seq)?;
    }
    map.serialize_entry("sourceId", &event.source_id)?;
    map.serialize_entry("messageId", &event.message_id)?;
    map.serialize_entry("type", &event.event_type)?;
    if let Some(name) = &event.event {
        map.serialize_entry("event", name)?;
    }
    if let Some(user_id) = &event.user_id {
        map.serialize_entry("userId", user_id)?;
    }
    if let Some(anonymous_id) = &event.anonymous_id {
        map.serialize_entry("anonymousId", anonymous_id)?;
    }
    map.serialize_entry("timestamp", &event.timestamp)?;
    map.serialize_entry("receivedAt", &event.received_at)?;
    if let Some(sent_at) = &event.sent_at {
        map.serialize_entry("sentAt", sent_at)?;
    }
    if let Some(original) = &event.original_timestamp {
        map.serialize_entry("originalTimestamp", original)?;
    }
    if let Some(traits) = &event.traits {
        map.serialize_entry("traits", traits)?;
    }
    if !event.violations.is_empty() {
        map.serialize_entry("violations", &event.violations)?;
    }
    for (key, value) in &event.fields {
        map.serialize_entry(key, value)?;
    }
    map.end()
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(EventVisitor)
    }
}

struct EventVisitor;

impl<'de> Visitor<'de> for EventVisitor {
    type Value = Event;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a logged Kairos event")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Event, A::Error> {
        let mut seq = 0;
        let mut source_id = None;
        let mut message_id = None;
        let mut event_type = None;
        let mut event = None;
        let mut user_id = None;
        let mut anonymous_id = None;
        let mut timestamp = None;
        let mut received_at = None;
        let mut sent_at = None;
        let mut original_timestamp = None;
        let mut traits = None;
        let mut violations = Vec::new();
        let mut fields = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "seq" => seq = map.next_value()?,
                "sourceId" => source_id = Some(map.next_value()?),
                "messageId" => message_id = Some(map.next_value()?),
                "type" => event_type = Some(map.next_value()?),
                "event" => event = map.next_value()?,
                "userId" => user_id = map.next_value()?,
                "anonymousId" => anonymous_id = map.next_value()?,
                "timestamp" => timestamp = Some(map.next_value()?),
                "receivedAt" => received_at = Some(map.next_value()?),
                "sentAt" => sent_at = map.next_value()?,
                "originalTimestamp" => original_timestamp = map.next_value()?,
                "traits" => traits = map.next_value()?,
                "violations" => violations = map.next_value()?,
                _ => fields.push((key, map.next_value::<Box<RawValue>>()?)),
            }
        }
        Ok(Event {
            seq,
            source_id: source_id.ok_or_else(|| de::Error::missing_field("sourceId"))?,
            message_id: message_id.ok_or_else(|| de::Error::missing_field("messageId"))?,
            event_type: event_type.ok_or_else(|| de::Error::missing_field("type"))?,
            event,
            user_id,
            anonymous_id,
            timestamp: timestamp.ok_or_else(|| de::Error::missing_field("timestamp"))?,
            received_at: received_at.ok_or_else(|| de::Error::missing_field("receivedAt"))?,
            sent_at,
            original_timestamp,
            traits,
            violations,
            fields,
        })
    }
}

/// An event as received: its top-level fields, each kept as raw JSON.
///
/// Decoding only splits the object into fields; the values are validated
/// for well-formedness but not materialized.
#[derive(Debug, Default)]
pub struct RawEvent {
    pub fields: Vec<(String, Box<RawValue>)>,
}

impl RawEvent {
    pub fn get(&self, name: &str) -> Option<&RawValue> {
        self.fields
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_ref())
    }
}

impl<'de> Deserialize<'de> for RawEvent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RawEventVisitor;
        impl<'de> Visitor<'de> for RawEventVisitor {
            type Value = RawEvent;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawEvent, A::Error> {
                let mut fields: Vec<(String, Box<RawValue>)> = Vec::with_capacity(16);
                while let Some(key) = map.next_key::<String>()? {
                    let value: Box<RawValue> = map.next_value()?;
                    // A repeated key: the last one wins, as in JavaScript.
                    fields.retain(|(existing, _)| existing != &key);
                    fields.push((key, value));
                }
                Ok(RawEvent { fields })
            }
        }
        deserializer.deserialize_map(RawEventVisitor)
    }
}

/// An event's `properties`, decoded at most once however many readers the
/// event has where it is applied (models' features, audiences,
/// announcements), and not at all when none of them reads it. Invalid or
/// absent properties read as an empty object.
pub struct EventProperties<'a> {
    raw: Option<&'a RawValue>,
    decoded: std::cell::OnceCell<Map<String, Value>>,
}

impl<'a> EventProperties<'a> {
    /// The event's `properties`, not decoded yet.
    pub fn of(event: &'a Event) -> EventProperties<'a> {
        EventProperties {
            raw: event.field("properties"),
            decoded: std::cell::OnceCell::new(),
        }
    }

    /// The decoded properties (decoded on the first call).
    pub fn get(&self) -> &Map<String, Value> {
        self.decoded.get_or_init(|| decode(self.raw))
    }

    /// The decoded properties, owned (decoded now unless already done).
    pub fn into_map(self) -> Map<String, Value> {
        let raw = self.raw;
        self.decoded.into_inner().unwrap_or_else(|| decode(raw))
    }
}

fn decode(raw: Option<&RawValue>) -> Map<String, Value> {
    raw.and_then(|raw| serde_json::from_str(raw.get()).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod properties_tests {
    use super::*;

    fn event_with(properties: Option<&str>) -> Event {
        let fields = properties
            .map(|raw| {
                let raw = RawValue::from_string(raw.to_string()).unwrap();
                vec![("properties".to_string(), raw)]
            })
            .unwrap_or_default();
        Event {
            seq: 1,
            source_id: "src".into(),
            message_id: "m".into(),
            event_type: EventType::Track,
            event: Some("Viewed".into()),
            user_id: Some("u".into()),
            anonymous_id: None,
            timestamp: Timestamp::UNIX_EPOCH,
            received_at: Timestamp::UNIX_EPOCH,
            sent_at: None,
            original_timestamp: None,
            traits: None,
            violations: Vec::new(),
            fields,
        }
    }

    #[test]
    fn properties_are_decoded_once_and_shared_by_every_reader() {
        let event = event_with(Some(r#"{"amount": 12, "plan": "pro"}"#));
        let properties = EventProperties::of(&event);
        let first: *const Map<String, Value> = properties.get();
        let second: *const Map<String, Value> = properties.get();
        assert_eq!(first, second, "the second reader gets the first decoding");
        assert_eq!(properties.get()["amount"], 12);
        let owned = properties.into_map();
        assert_eq!(owned["plan"], "pro");
    }

    #[test]
    fn absent_or_invalid_properties_read_as_an_empty_object() {
        assert!(EventProperties::of(&event_with(None)).get().is_empty());
        assert!(
            EventProperties::of(&event_with(Some("[1, 2]")))
                .into_map()
                .is_empty()
        );
    }
}
