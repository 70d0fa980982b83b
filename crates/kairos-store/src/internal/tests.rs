//! The one path for Kairos' own events: stamped on the given clock, of the
//! named source, within the internal limits, deduplicated, and refusing
//! records that name nobody.

use kairos_core::identity::IdentityRules;
use serde_json::{Value, json};

use super::INTERNAL_EVENT_BYTES_MAX;
use crate::{Store, StoreOptions};

fn store(dir: &std::path::Path) -> Store {
    let options = StoreOptions {
        log_partitions: 2,
        ..StoreOptions::default()
    };
    Store::open(dir, options).unwrap()
}

fn at(text: &str) -> jiff::Timestamp {
    text.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn internal_events_carry_the_given_clock_their_source_and_a_message_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let rules = IdentityRules::default();
    let now = at("2031-02-03T04:05:06Z");
    let events = [
        json!({"type": "track", "event": "Audience Entered", "userId": "u1", "messageId": "m-1"}),
        // No messageId: one is derived from the content (so a re-import
        // deduplicates).
        json!({"type": "identify", "userId": "u2", "traits": {"plan": "pro"}}),
    ];
    let outcome = store
        .append_internal(&rules, "kairos-test", &events, now)
        .await
        .unwrap();
    assert_eq!((outcome.accepted, outcome.rejected.len()), (2, 0));
    let source = store.sources.named("kairos-test", now).unwrap();
    let stored = store
        .log
        .read_after(0, store.writer.committed_seq(), 10, None)
        .unwrap();
    assert_eq!(stored.len(), 2);
    for event in &stored {
        let event = event.decode().unwrap();
        assert_eq!(event.received_at, now);
        assert_eq!(event.source_id, source.id);
        assert!(!event.message_id.is_empty());
    }
    assert_eq!(stored[0].decode().unwrap().message_id, "m-1");

    // The same events again: duplicates, nothing appended.
    let again = store
        .append_internal(&rules, "kairos-test", &events, now)
        .await
        .unwrap();
    assert_eq!((again.accepted, again.duplicates), (0, 2));
}

#[tokio::test(flavor = "multi_thread")]
async fn internal_events_over_the_limit_or_naming_nobody_are_rejected_by_position() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let rules = IdentityRules::default();
    let big = "x".repeat(INTERNAL_EVENT_BYTES_MAX);
    let events = [
        json!({"type": "identify", "userId": "u1", "traits": {"big": big}}),
        json!({"type": "identify", "userId": "u1", "traits": {"small": 1}}),
        json!({"type": "identify", "userId": "", "traits": {"small": 1}}),
    ];
    let outcome = store
        .append_internal(&rules, "kairos-test", &events, at("2031-01-01T00:00:00Z"))
        .await
        .unwrap();
    assert_eq!(outcome.accepted, 1);
    let positions: Vec<usize> = outcome.rejected.iter().map(|record| record.index).collect();
    assert_eq!(positions, [0, 2]);
    let limit = outcome.rejected[0].errors.to_string();
    assert!(
        limit.contains(&INTERNAL_EVENT_BYTES_MAX.to_string()),
        "{limit}"
    );
    assert!(matches!(
        outcome.rejected[1].errors,
        Value::Array(_) | Value::String(_)
    ));
}
