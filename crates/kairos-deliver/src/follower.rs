//! The follower: reads the log after the outbox's cursor, matches every
//! durable event against the journeys and enqueues the messages they send,
//! moving the cursor in the same atomic batch — so after a crash nothing is
//! decided twice and nothing is skipped.

use std::sync::Arc;

use jiff::Timestamp;
use kairos_core::audience::eval::EventFact;
use kairos_core::identity::IdentityRules;
use kairos_core::identity::extract::{identifiers_of, subject_of};
use kairos_store::{Message, MessageStatus, Store, StoreError};
use serde_json::{Map, Value, json};
use tokio::sync::Notify;

use crate::journey::{CompiledJourney, compile};

/// Events read per step.
const READ_BATCH: usize = 2_000;

/// The journeys stored now, compiled; one that no longer compiles (its
/// destination was deleted) is left out and logged.
pub fn active_journeys(store: &Store) -> Vec<CompiledJourney> {
    let destination_id = |name: &str| store.outbox.destination(name).map(|record| record.id);
    store
        .outbox
        .journeys()
        .into_iter()
        .filter_map(|record| {
            match compile(
                &record.id,
                &record.name,
                record.starts_after_seq,
                &record.definition,
                destination_id,
            ) {
                Ok(journey) => Some(journey),
                Err(error) => {
                    tracing::warn!(journey = %record.name, %error, "journey inactive");
                    None
                }
            }
        })
        .collect()
}

pub(crate) async fn run(store: Arc<Store>, rules: Arc<IdentityRules>, wake_workers: Arc<Notify>) {
    let mut committed = store.writer.committed();
    loop {
        let durable = *committed.borrow_and_update();
        match step(&store, &rules, durable) {
            Ok(0) => {}
            Ok(_) => wake_workers.notify_waiters(),
            Err(error) => {
                tracing::error!(%error, "journeys could not read the log; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        }
        if store.outbox.cursor().unwrap_or(0) >= durable && committed.changed().await.is_err() {
            return;
        }
    }
}

/// Applies the journeys to the next events up to `durable`; returns how
/// many messages were enqueued.
fn step(store: &Store, rules: &IdentityRules, durable: u64) -> Result<usize, StoreError> {
    let cursor = store.outbox.cursor()?;
    if cursor >= durable {
        return Ok(0);
    }
    let journeys = active_journeys(store);
    if journeys.is_empty() {
        // Nothing can start: skip ahead without reading.
        store.outbox.enqueue(&[], durable)?;
        return Ok(0);
    }
    let events = store.log.read_after(cursor, durable, READ_BATCH, None)?;
    let next_cursor = events.last().map_or(durable, |last| last.seq);
    let announcer = store
        .sources
        .list()
        .into_iter()
        .find(|source| source.name == kairos_core::audience::AUDIENCE_SOURCE)
        .map(|source| source.id);
    let now = Timestamp::now();
    let mut messages = Vec::new();
    for stored in &events {
        let event = stored.decode()?;
        let Some(name) = event.event.clone() else {
            continue;
        };
        let properties: Map<String, Value> = event
            .field("properties")
            .and_then(|raw| serde_json::from_str(raw.get()).ok())
            .unwrap_or_default();
        let fact = EventFact {
            name,
            at: event.timestamp,
            properties,
        };
        let announcement = announcer.as_deref() == Some(event.source_id.as_str());
        for journey in &journeys {
            if stored.seq <= journey.starts_after_seq || !journey.matches(&fact, announcement) {
                continue;
            }
            let subject = subject_of(&identifiers_of(&event, rules), &event, rules);
            for (step, destination) in journey.destinations.iter().enumerate() {
                messages.push(message(
                    store,
                    journey,
                    step,
                    destination,
                    &subject,
                    stored.seq,
                    &fact,
                    &event,
                    now,
                ));
            }
        }
    }
    store.outbox.enqueue(&messages, next_cursor)?;
    Ok(messages.len())
}

#[allow(clippy::too_many_arguments)]
fn message(
    store: &Store,
    journey: &CompiledJourney,
    step: usize,
    destination: &str,
    subject: &kairos_core::identity::Identifier,
    event_seq: u64,
    fact: &EventFact,
    event: &kairos_core::Event,
    now: Timestamp,
) -> Message {
    // Deterministic: the same event and step always make the same id.
    let id = format!(
        "msg_{event_seq:x}_{}_{step}",
        journey.id.trim_start_matches("jny_")
    );
    let payload = json!({
        "type": "journey.message",
        "timestamp": now.to_string(),
        "data": {
            "message_id": id,
            "journey": {"id": journey.id, "name": journey.name},
            "profile": {"identifier": {"type": subject.kind, "value": subject.value}},
            "event": {
                "name": fact.name,
                "messageId": event.message_id,
                "timestamp": fact.at.to_string(),
                "properties": fact.properties,
            },
        },
    });
    Message {
        id,
        seq: store.outbox.next_seq(),
        destination: destination.to_string(),
        journey: journey.id.clone(),
        identifier: format!("{}:{}", subject.kind, subject.value),
        event_seq,
        payload,
        status: MessageStatus::Pending,
        attempts: 0,
        next_attempt_at: now,
        last_error: None,
        created_at: now,
        delivered_at: None,
    }
}
