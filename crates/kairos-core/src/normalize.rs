//! Validation and normalization of one received event.
//!
//! Pure: the receive time and the source come in as arguments. Every problem
//! with an event is reported at once, each naming the field and what to do.

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::event::{Event, EventType, RawEvent};
use crate::tracking_plan::{PlanMode, TrackingPlan};

/// Named limits on what one request may carry. Each has a config key of the
/// same name under `[limits]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestLimits {
    pub event_bytes_max: usize,
    pub request_bytes_max: usize,
    pub batch_events_max: usize,
}

impl Default for IngestLimits {
    fn default() -> Self {
        IngestLimits {
            event_bytes_max: 32 * 1024,
            request_bytes_max: 500 * 1024,
            batch_events_max: 2_500,
        }
    }
}

/// Deepest nesting of objects and arrays allowed in any field of an event
/// (`properties`, `traits`, `context`, ...; the field's own object is level
/// 1). Real payloads stay within a handful of levels; a bound keeps every
/// later reader of the event (profiles, templates, exports, which parse it
/// with serde_json's 128-level limit and recurse over it) safe, where a
/// 10,000-level value used to be stored and served back.
pub const EVENT_NESTING_DEPTH_MAX: usize = 32;

/// One problem with one field of an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct FieldError {
    /// JSON name of the field (`userId`, `timestamp`, `properties/price`), or
    /// empty for the event as a whole.
    pub field: String,
    pub message: String,
}

impl FieldError {
    fn new(field: &str, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// What the event arrived with, beyond its own bytes.
#[derive(Debug, Clone, Copy)]
pub struct Arrival<'a> {
    pub source_id: &'a str,
    pub received_at: Timestamp,
    /// The batch envelope's `sentAt`, used when the event has none.
    pub batch_sent_at: Option<Timestamp>,
    /// Set by single-event endpoints (`/v1/track`): the path decides the type.
    pub path_type: Option<EventType>,
    pub limits: &'a IngestLimits,
    pub plan: Option<&'a TrackingPlan>,
}

/// Fields that normalization consumes; everything else is kept as sent.
/// `writeKey` is dropped because it is a credential, `receivedAt` because
/// only the server's own receive time counts.
const CONSUMED_FIELDS: [&str; 11] = [
    "type",
    "event",
    "userId",
    "anonymousId",
    "messageId",
    "timestamp",
    "originalTimestamp",
    "sentAt",
    "traits",
    "writeKey",
    "receivedAt",
];

/// Validates and normalizes one event given as raw JSON.
pub fn normalize_event(raw_json: &RawValue, arrival: &Arrival) -> Result<Event, Vec<FieldError>> {
    normalize(raw_json, arrival, true)
}

/// Like [`normalize_event`], for records Kairos builds itself (CRM trait
/// imports, consent updates): they may name the person by a trait or an
/// external id alone, without a userId or anonymousId.
pub fn normalize_internal_event(
    raw_json: &RawValue,
    arrival: &Arrival,
) -> Result<Event, Vec<FieldError>> {
    normalize(raw_json, arrival, false)
}

fn normalize(
    raw_json: &RawValue,
    arrival: &Arrival,
    require_ids: bool,
) -> Result<Event, Vec<FieldError>> {
    let size = raw_json.get().len();
    if size > arrival.limits.event_bytes_max {
        return Err(vec![FieldError::new(
            "",
            format!(
                "event is {size} bytes; the limit is {} bytes (limits.event_bytes_max); send large payloads by reference",
                arrival.limits.event_bytes_max
            ),
        )]);
    }
    let raw: RawEvent = serde_json::from_str(raw_json.get()).map_err(|error| {
        vec![FieldError::new(
            "",
            format!("an event must be a JSON object: {error}"),
        )]
    })?;
    let mut errors = Vec::new();
    let event = build_event(raw, raw_json, arrival, require_ids, &mut errors);
    match event {
        Some(event) if errors.is_empty() => Ok(event),
        _ => Err(errors),
    }
}

fn build_event(
    raw: RawEvent,
    raw_json: &RawValue,
    arrival: &Arrival,
    require_ids: bool,
    errors: &mut Vec<FieldError>,
) -> Option<Event> {
    let event_type = event_type(&raw, arrival.path_type, errors);
    let user_id = identifier(&raw, "userId", errors);
    let anonymous_id = identifier(&raw, "anonymousId", errors);
    if require_ids
        && user_id.is_none()
        && anonymous_id.is_none()
        && !has_error(errors, "userId")
        && !has_error(errors, "anonymousId")
    {
        errors.push(FieldError::new(
            "userId",
            "an event needs a userId or an anonymousId; both are missing, null or empty",
        ));
    }
    let message_id = identifier(&raw, "messageId", errors)
        .unwrap_or_else(|| derived_message_id(arrival.source_id, raw_json));
    let event_name = match event_type {
        Some(EventType::Track) => required_string(
            &raw,
            "event",
            "a track call needs the event name, e.g. \"Order Completed\"",
            errors,
        ),
        _ => optional_string(&raw, "event", errors),
    };
    match event_type {
        Some(EventType::Alias) => required_identifier(
            &raw,
            "previousId",
            "an alias call needs the previousId it links to userId",
            errors,
        ),
        Some(EventType::Group) => {
            required_identifier(&raw, "groupId", "a group call needs a groupId", errors)
        }
        _ => {}
    }
    for object_field in ["properties", "context", "integrations"] {
        check_object(&raw, object_field, errors);
    }
    check_nesting(&raw, errors);
    let times = event_times(&raw, arrival, errors);
    let traits = event_type.and_then(|event_type| traits(&raw, event_type, errors));
    let violations = match (event_type, &event_name) {
        (Some(EventType::Track), Some(name)) => plan_violations(&raw, name, arrival, errors),
        _ => Vec::new(),
    };
    let fields = raw
        .fields
        .into_iter()
        .filter(|(key, _)| !CONSUMED_FIELDS.contains(&key.as_str()))
        .collect();
    let (timestamp, sent_at, original_timestamp) = times?;
    Some(Event {
        seq: 0,
        source_id: arrival.source_id.to_string(),
        message_id,
        event_type: event_type?,
        event: event_name,
        user_id,
        anonymous_id,
        timestamp,
        received_at: arrival.received_at,
        sent_at,
        original_timestamp,
        traits,
        violations,
        fields,
    })
}

/// A value that is not even valid JSON text, such as a lone UTF-16
/// surrogate escape (`"\ud800"`), which no JSON parser can turn into a string.
fn unreadable(field: &str, error: &serde_json::Error) -> FieldError {
    FieldError::new(
        field,
        format!("is not valid JSON text ({error}); send valid UTF-8 / Unicode escapes"),
    )
}

fn has_error(errors: &[FieldError], field: &str) -> bool {
    errors.iter().any(|error| error.field == field)
}

fn event_type(
    raw: &RawEvent,
    path_type: Option<EventType>,
    errors: &mut Vec<FieldError>,
) -> Option<EventType> {
    if path_type.is_some() {
        return path_type;
    }
    const EXPECTED: &str = "expected one of track, identify, page, screen, group, alias";
    match raw
        .get("type")
        .map(|value| serde_json::from_str::<Value>(value.get()))
    {
        None | Some(Ok(Value::Null)) => {
            errors.push(FieldError::new("type", format!("missing; {EXPECTED}")));
            None
        }
        Some(Ok(Value::String(name))) => match EventType::parse(&name).filter(|_| name.len() > 1) {
            Some(event_type) => Some(event_type),
            None => {
                errors.push(FieldError::new(
                    "type",
                    format!("{name:?} is not a call type; {EXPECTED}"),
                ));
                None
            }
        },
        Some(_) => {
            errors.push(FieldError::new(
                "type",
                format!("must be a string; {EXPECTED}"),
            ));
            None
        }
    }
}

/// An identifier: a string, or a number turned into one. `null` and empty
/// strings count as absent (the Python SDKs send explicit nulls).
fn identifier(raw: &RawEvent, field: &str, errors: &mut Vec<FieldError>) -> Option<String> {
    let value = raw.get(field)?;
    match serde_json::from_str::<Value>(value.get()) {
        Ok(Value::Null) => None,
        Ok(Value::String(text)) if text.trim().is_empty() => None,
        Ok(Value::String(text)) => Some(text),
        Ok(Value::Number(number)) => Some(number.to_string()),
        Err(error) => {
            errors.push(unreadable(field, &error));
            None
        }
        _ => {
            errors.push(FieldError::new(field, "must be a string (or a number)"));
            None
        }
    }
}

fn required_identifier(raw: &RawEvent, field: &str, why: &str, errors: &mut Vec<FieldError>) {
    if identifier(raw, field, errors).is_none() && !has_error(errors, field) {
        errors.push(FieldError::new(field, why));
    }
}

fn optional_string(raw: &RawEvent, field: &str, errors: &mut Vec<FieldError>) -> Option<String> {
    match serde_json::from_str::<Value>(raw.get(field)?.get()) {
        Ok(Value::Null) => None,
        Ok(Value::String(text)) => Some(text),
        Err(error) => {
            errors.push(unreadable(field, &error));
            None
        }
        _ => {
            errors.push(FieldError::new(field, "must be a string"));
            None
        }
    }
}

fn required_string(
    raw: &RawEvent,
    field: &str,
    why: &str,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    match optional_string(raw, field, errors) {
        Some(text) if !text.trim().is_empty() => Some(text),
        _ => {
            if !has_error(errors, field) {
                errors.push(FieldError::new(field, why));
            }
            None
        }
    }
}

fn check_object(raw: &RawEvent, field: &str, errors: &mut Vec<FieldError>) {
    if let Some(value) = raw.get(field) {
        let text = value.get().trim_start();
        if !(text.starts_with('{') || text == "null") {
            errors.push(FieldError::new(field, "must be a JSON object"));
        }
    }
}

/// Refuses fields nested deeper than [`EVENT_NESTING_DEPTH_MAX`].
fn check_nesting(raw: &RawEvent, errors: &mut Vec<FieldError>) {
    for (field, value) in &raw.fields {
        let depth = nesting_depth(value.get());
        if depth > EVENT_NESTING_DEPTH_MAX {
            errors.push(FieldError::new(
                field,
                format!(
                    "nested {depth} levels deep; the limit is {EVENT_NESTING_DEPTH_MAX} levels of objects and arrays: flatten the value (e.g. \"a.b.c\": 1)"
                ),
            ));
        }
    }
}

/// How deeply objects and arrays nest in a JSON text (already checked to be
/// valid JSON): brackets outside strings.
fn nesting_depth(json: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for byte in json.bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

type EventTimes = (Timestamp, Option<Timestamp>, Option<Timestamp>);

/// `timestamp` (or `originalTimestamp`), corrected for the client's clock skew
/// as `receivedAt − (sentAt − timestamp)`.
fn event_times(
    raw: &RawEvent,
    arrival: &Arrival,
    errors: &mut Vec<FieldError>,
) -> Option<EventTimes> {
    let errors_before = errors.len();
    let timestamp = timestamp_field(raw, "timestamp", errors);
    let original = timestamp_field(raw, "originalTimestamp", errors);
    let sent_at = timestamp_field(raw, "sentAt", errors).or(arrival.batch_sent_at);
    if errors.len() > errors_before {
        return None;
    }
    let client_time = timestamp.or(original);
    let corrected = match (client_time, sent_at) {
        (Some(time), Some(sent)) => {
            let skew: SignedDuration = sent.duration_since(time);
            arrival.received_at.checked_sub(skew).unwrap_or(time)
        }
        (Some(time), None) => time,
        (None, _) => arrival.received_at,
    };
    Some((corrected, sent_at, client_time))
}

fn timestamp_field(raw: &RawEvent, field: &str, errors: &mut Vec<FieldError>) -> Option<Timestamp> {
    let value = raw.get(field)?;
    match serde_json::from_str::<Value>(value.get()) {
        Ok(Value::Null) => None,
        Ok(Value::String(text)) => match parse_timestamp(&text) {
            Some(time) => Some(time),
            None => {
                errors.push(FieldError::new(
                    field,
                    format!("{text:?} is not a date-time; send RFC 3339, e.g. \"2024-05-01T12:00:00.000Z\""),
                ));
                None
            }
        },
        _ => {
            errors.push(FieldError::new(
                field,
                "must be an RFC 3339 string, e.g. \"2024-05-01T12:00:00.000Z\"",
            ));
            None
        }
    }
}

/// RFC 3339 / ISO 8601 with an offset; a date-time without offset or a bare
/// date is read as UTC.
pub fn parse_timestamp(text: &str) -> Option<Timestamp> {
    let text = text.trim();
    if let Ok(time) = text.parse::<Timestamp>() {
        return Some(time);
    }
    if let Ok(civil) = text.parse::<jiff::civil::DateTime>() {
        return jiff::tz::TimeZone::UTC.to_timestamp(civil).ok();
    }
    None
}

/// Traits of an identify or group call, from `traits`, else (identify only)
/// from `context.traits` where RudderStack's SDKs put them.
fn traits(
    raw: &RawEvent,
    event_type: EventType,
    errors: &mut Vec<FieldError>,
) -> Option<Map<String, Value>> {
    let top_level = match raw
        .get("traits")
        .map(|value| serde_json::from_str::<Value>(value.get()))
    {
        Some(Ok(Value::Object(map))) => Some(map),
        None | Some(Ok(Value::Null)) => None,
        Some(_) => {
            errors.push(FieldError::new("traits", "must be a JSON object"));
            return None;
        }
    };
    let mut traits = match (top_level, event_type) {
        (Some(map), _) => map,
        (None, EventType::Identify) => context_traits(raw)?,
        (None, _) => return None,
    };
    normalize_traits(&mut traits);
    Some(traits)
}

fn context_traits(raw: &RawEvent) -> Option<Map<String, Value>> {
    let context: Map<String, Value> = serde_json::from_str(raw.get("context")?.get()).ok()?;
    match context.get("traits") {
        Some(Value::Object(map)) => Some(map.clone()),
        _ => None,
    }
}

/// Emails are trimmed and lower-cased so the same address always matches.
pub fn normalize_traits(traits: &mut Map<String, Value>) {
    if let Some(Value::String(email)) = traits.get_mut("email") {
        let normalized = email.trim().to_lowercase();
        *email = normalized;
    }
}

fn plan_violations(
    raw: &RawEvent,
    event_name: &str,
    arrival: &Arrival,
    errors: &mut Vec<FieldError>,
) -> Vec<String> {
    let Some(plan) = arrival.plan else {
        return Vec::new();
    };
    let properties = raw
        .get("properties")
        .and_then(|value| serde_json::from_str::<Value>(value.get()).ok())
        .filter(|value| !value.is_null())
        .unwrap_or_else(|| Value::Object(Map::new()));
    let violations = plan.check(event_name, &properties);
    if plan.mode() == PlanMode::Block {
        errors.extend(violations.into_iter().map(|violation| {
            let field = violation
                .split(':')
                .next()
                .unwrap_or("properties")
                .to_string();
            FieldError::new(&field, format!("tracking plan violation: {violation}"))
        }));
        Vec::new()
    } else {
        violations
    }
}

/// A stable id for an event sent without one, so an identical retry still
/// deduplicates.
fn derived_message_id(source_id: &str, raw_json: &RawValue) -> String {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(source_id.as_bytes());
    hasher.update(&[0]);
    hasher.update(raw_json.get().as_bytes());
    format!("kairos-{:032x}", hasher.digest128())
}

#[cfg(test)]
mod tests;
