use super::*;
use crate::tracking_plan::TrackingPlanSpec;
use serde_json::json;

const RECEIVED: &str = "2024-05-01T12:00:10Z";

fn arrival<'a>(limits: &'a IngestLimits, plan: Option<&'a TrackingPlan>) -> Arrival<'a> {
    Arrival {
        source_id: "src_test",
        received_at: RECEIVED.parse().unwrap(),
        batch_sent_at: None,
        path_type: None,
        limits,
        plan,
    }
}

fn normalize(value: serde_json::Value) -> Result<Event, Vec<FieldError>> {
    let limits = IngestLimits::default();
    let raw = RawValue::from_string(value.to_string()).unwrap();
    normalize_event(&raw, &arrival(&limits, None))
}

fn fields_of(errors: Vec<FieldError>) -> Vec<String> {
    errors.into_iter().map(|error| error.field).collect()
}

#[test]
fn clock_skew_is_corrected_from_sent_at() {
    // The client's clock is 1 hour fast: it stamped the event 5 s before sending.
    let event = normalize(json!({
        "type": "track", "event": "A", "userId": "u",
        "timestamp": "2024-05-01T13:00:00Z", "sentAt": "2024-05-01T13:00:05Z"
    }))
    .unwrap();
    assert_eq!(
        event.timestamp,
        "2024-05-01T12:00:05Z".parse::<Timestamp>().unwrap()
    );
    assert_eq!(
        event.original_timestamp,
        Some("2024-05-01T13:00:00Z".parse().unwrap())
    );
}

#[test]
fn original_timestamp_stands_in_for_timestamp() {
    let event = normalize(json!({
        "type": "track", "event": "A", "anonymousId": "a",
        "originalTimestamp": "2024-05-01T11:00:00.123+00:00"
    }))
    .unwrap();
    assert_eq!(
        event.timestamp,
        "2024-05-01T11:00:00.123Z".parse::<Timestamp>().unwrap()
    );
}

#[test]
fn missing_time_is_the_receive_time() {
    let event = normalize(json!({"type": "page", "anonymousId": "a"})).unwrap();
    assert_eq!(event.timestamp, RECEIVED.parse::<Timestamp>().unwrap());
}

#[test]
fn identify_traits_come_from_context_and_emails_are_normalized() {
    let event = normalize(json!({
        "type": "identify", "userId": "u", "anonymousId": null,
        "context": {"traits": {"email": "  Ada@Example.COM ", "name": "Ada"}}
    }))
    .unwrap();
    let traits = event.traits.unwrap();
    assert_eq!(traits["email"], "ada@example.com");
    assert_eq!(traits["name"], "Ada");
    assert_eq!(event.anonymous_id, None);
}

#[test]
fn numeric_ids_become_strings_and_unknown_fields_are_kept() {
    let event = normalize(json!({
        "type": "track", "event": "A", "userId": 42, "messageId": 7,
        "channel": "server", "_metadata": {"x": 1}, "writeKey": "secret"
    }))
    .unwrap();
    assert_eq!(event.user_id.as_deref(), Some("42"));
    assert_eq!(event.message_id, "7");
    assert!(event.field("channel").is_some());
    assert!(event.field("_metadata").is_some());
    assert!(
        event.field("writeKey").is_none(),
        "credentials are not stored"
    );
}

#[test]
fn every_problem_is_reported_with_its_field() {
    let errors = normalize(json!({
        "type": "track", "userId": null, "timestamp": "yesterday", "properties": [1]
    }))
    .unwrap_err();
    let fields = fields_of(errors);
    for expected in ["userId", "event", "timestamp", "properties"] {
        assert!(
            fields.contains(&expected.to_string()),
            "{expected} missing from {fields:?}"
        );
    }
}

#[test]
fn type_and_required_fields_per_call() {
    assert_eq!(
        fields_of(normalize(json!({"userId": "u"})).unwrap_err()),
        ["type"]
    );
    assert_eq!(
        fields_of(normalize(json!({"type": "buy", "userId": "u"})).unwrap_err()),
        ["type"]
    );
    assert_eq!(
        fields_of(normalize(json!({"type": "alias", "userId": "u"})).unwrap_err()),
        ["previousId"]
    );
    assert_eq!(
        fields_of(normalize(json!({"type": "group", "userId": "u"})).unwrap_err()),
        ["groupId"]
    );
    assert_eq!(
        fields_of(
            normalize(json!({"type": "track", "event": "A", "userId": {"id": 1}})).unwrap_err()
        ),
        ["userId"]
    );
}

#[test]
fn oversized_events_name_the_limit() {
    let limits = IngestLimits {
        event_bytes_max: 64,
        ..IngestLimits::default()
    };
    let raw = RawValue::from_string(
        json!({"type": "track", "event": "A", "userId": "u", "properties": {"p": "x".repeat(100)}})
            .to_string(),
    )
    .unwrap();
    let errors = normalize_event(&raw, &arrival(&limits, None)).unwrap_err();
    assert!(errors[0].message.contains("limits.event_bytes_max"));
}

#[test]
fn missing_message_ids_are_derived_stably() {
    let first = normalize(json!({"type": "track", "event": "A", "userId": "u"})).unwrap();
    let second = normalize(json!({"type": "track", "event": "A", "userId": "u"})).unwrap();
    let other = normalize(json!({"type": "track", "event": "B", "userId": "u"})).unwrap();
    assert_eq!(first.message_id, second.message_id);
    assert_ne!(first.message_id, other.message_id);
}

#[test]
fn log_bytes_round_trip() {
    let event = normalize(json!({
        "type": "identify", "userId": "u", "traits": {"email": "a@b.c"},
        "context": {"ip": "1.2.3.4"}, "sentAt": "2024-05-01T12:00:09Z", "timestamp": "2024-05-01T12:00:08Z"
    }))
    .unwrap();
    let back = Event::from_log_bytes(9, &event.to_log_bytes()).unwrap();
    assert_eq!(back.seq, 9);
    assert_eq!(Event { seq: 0, ..back }, event);
}

#[test]
fn blocking_plans_reject_and_flagging_plans_annotate() {
    let spec = |mode| TrackingPlanSpec {
        mode,
        allow_unplanned: true,
        events: [(
            "Order Completed".to_string(),
            json!({"type": "object", "properties": {"revenue": {"type": "number"}}}),
        )]
        .into(),
    };
    let limits = IngestLimits::default();
    let raw = RawValue::from_string(json!({"type": "track", "event": "Order Completed", "userId": "u", "properties": {"revenue": "x"}}).to_string()).unwrap();
    let block = TrackingPlan::compile(spec(PlanMode::Block)).unwrap();
    let errors = normalize_event(&raw, &arrival(&limits, Some(&block))).unwrap_err();
    assert_eq!(errors[0].field, "properties/revenue");
    let flag = TrackingPlan::compile(spec(PlanMode::Flag)).unwrap();
    let event = normalize_event(&raw, &arrival(&limits, Some(&flag))).unwrap();
    assert_eq!(event.violations.len(), 1);
}

#[test]
fn deeply_nested_fields_are_refused_naming_the_field_and_the_limit() {
    let nested = |levels: usize| format!("{}1{}", "[".repeat(levels), "]".repeat(levels));
    let event = |field: &str, levels: usize| {
        let text = format!(
            r#"{{"type":"track","event":"E","userId":"u","{field}":{{"a":{}}}}}"#,
            nested(levels - 1)
        );
        let raw: Box<RawValue> = serde_json::from_str(&text).unwrap();
        let limits = IngestLimits::default();
        normalize_event(&raw, &arrival(&limits, None))
    };
    assert!(event("properties", EVENT_NESTING_DEPTH_MAX).is_ok());
    let errors = event("properties", EVENT_NESTING_DEPTH_MAX + 1).unwrap_err();
    assert_eq!(fields_of(errors.clone()), ["properties"]);
    assert!(
        errors[0]
            .message
            .contains("33 levels deep; the limit is 32"),
        "{errors:?}"
    );
    assert_eq!(
        fields_of(event("context", 10_000).unwrap_err()),
        ["context"]
    );
    assert_eq!(fields_of(event("custom", 100).unwrap_err()), ["custom"]);
    // Brackets inside strings are text, not nesting.
    assert_eq!(nesting_depth(r#"{"a":"[[[[{{{{\"]]"}"#), 1);
}
