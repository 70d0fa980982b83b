//! Audience syncs: an audience's membership changes (the engine's
//! `Audience Entered` / `Exited` announcements, read from the log by the
//! follower) delivered in batches to a webhook destination — how a CRM or
//! an ad platform keeps a copy of a segment.
//!
//! A change is stored with the follower's cursor in one atomic batch; a
//! batch message is stored and its changes removed in another, when it is
//! full (`batch_size`) or its oldest change has waited `max_wait`. So every
//! change is in exactly one message, across crashes; the message is then
//! delivered at least once under one `webhook-id`, like any other.
//!
//! The body: `{"type": "audience.sync", "timestamp", "data": {"sync": {id,
//! name}, "audience", "changes": [{"action": "entered"|"exited",
//! "identifier": {type, value}, "at"}]}}`.

use jiff::Timestamp;
use kairos_core::audience::eval::EventFact;
use kairos_core::audience::{ANNOUNCED_ENTERED, ANNOUNCED_EXITED};
use kairos_core::identity::extract::{identifiers_of, subject_of};
use kairos_core::identity::{Identifier, IdentityRules};
use kairos_store::{AudienceSyncRecord, Message, MessageStatus, Store, StoreError, SyncChange};
use serde_json::json;

/// The changes an announcement makes for the syncs of its audience.
pub(crate) fn changes_of(
    syncs: &[AudienceSyncRecord],
    seq: u64,
    fact: &EventFact,
    event: &kairos_core::Event,
    rules: &IdentityRules,
) -> Vec<(String, SyncChange)> {
    let action = match fact.name.as_str() {
        ANNOUNCED_ENTERED => "entered",
        ANNOUNCED_EXITED => "exited",
        _ => return Vec::new(),
    };
    let audience = fact
        .properties
        .get("audience")
        .and_then(|value| value.as_str());
    let subject = subject_of(&identifiers_of(event, rules), event, rules);
    syncs
        .iter()
        .filter(|sync| Some(sync.audience.as_str()) == audience && seq > sync.starts_after_seq)
        .map(|sync| {
            let change = SyncChange {
                seq,
                action: action.to_string(),
                identifier: format!("{}:{}", subject.kind, subject.value),
                at: fact.at,
                noticed_at: Timestamp::now(),
            };
            (sync.id.clone(), change)
        })
        .collect()
}

/// Sends every batch that is full or has waited long enough; returns how
/// many messages were made.
pub(crate) fn flush(store: &Store) -> Result<usize, StoreError> {
    let mut made = 0;
    for sync in store.outbox.syncs() {
        loop {
            let changes = store.outbox.sync_changes(&sync.id, sync.batch_size)?;
            let Some(oldest) = changes.first() else {
                break;
            };
            let waited = oldest.noticed_at
                + jiff::SignedDuration::from_secs(sync.max_wait_seconds as i64)
                <= Timestamp::now();
            if changes.len() < sync.batch_size && !waited {
                break;
            }
            store
                .outbox
                .flush_sync(&sync.id, &changes, &batch_message(store, &sync, &changes))?;
            made += 1;
        }
    }
    Ok(made)
}

fn batch_message(store: &Store, sync: &AudienceSyncRecord, changes: &[SyncChange]) -> Message {
    let first = changes.first().map_or(0, |change| change.seq);
    let last = changes.last().map_or(0, |change| change.seq);
    // Deterministic: the same changes always make the same id.
    let id = format!(
        "msg_sync_{}_{first:x}_{last:x}",
        sync.id.trim_start_matches("syn_")
    );
    let listed: Vec<_> = changes
        .iter()
        .map(|change| {
            let identifier = Identifier::parse(&change.identifier)
                .unwrap_or_else(|| Identifier::new("", &change.identifier));
            json!({"action": change.action, "identifier": identifier, "at": change.at.to_string()})
        })
        .collect();
    let now = Timestamp::now();
    Message {
        id: id.clone(),
        seq: store.outbox.next_seq(),
        destination: sync.destination.clone(),
        journey: sync.id.clone(),
        purpose: None,
        channel: "webhook".into(),
        identifier: format!("audience:{}", sync.audience),
        event_seq: last,
        payload: json!({
            "type": "audience.sync",
            "timestamp": now.to_string(),
            "data": {
                "message_id": id,
                "sync": {"id": sync.id, "name": sync.name},
                "audience": sync.audience,
                "changes": listed,
            },
        }),
        status: MessageStatus::Pending,
        attempts: 0,
        next_attempt_at: now,
        last_error: None,
        created_at: now,
        deferred_until: None,
        delivered_at: None,
    }
}
