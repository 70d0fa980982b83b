//! The follower: reads the log after the outbox's cursor, matches every
//! durable event against the journeys and enqueues the messages they send,
//! moving the cursor in the same atomic batch — so after a crash nothing is
//! decided twice and nothing is skipped. Each send passes the contact
//! policy ([`crate::policy`]) first: blocked sends are recorded with their
//! reason, deferred ones wait.

use std::sync::Arc;

use jiff::Timestamp;
use kairos_core::audience::eval::EventFact;
use kairos_core::identity::IdentityRules;
use kairos_core::identity::extract::{identifiers_of, subject_of};
use kairos_store::{Message, MessageStatus, Store, StoreError};
use serde_json::{Map, Value, json};
use tokio::sync::Notify;

use crate::journey::{CompiledJourney, SendStep, compile};
use crate::policy::{ContactPolicy, Person, Verdict};

/// Events read per step.
const READ_BATCH: usize = 2_000;
/// A person's latest messages the frequency caps look at.
const RECENT_SENDS_MAX: usize = 1_000;

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

/// What the follower works with.
pub(crate) struct Follower {
    pub(crate) store: Arc<Store>,
    pub(crate) rules: Arc<IdentityRules>,
    pub(crate) engine: Option<kairos_engine::Engine>,
    pub(crate) policy: ContactPolicy,
}

pub(crate) async fn run(follower: Follower, wake_workers: Arc<Notify>) {
    let store = follower.store.clone();
    let mut committed = store.writer.committed();
    loop {
        let durable = *committed.borrow_and_update();
        match follower.step(durable).await {
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

impl Follower {
    /// Applies the journeys to the next events up to `durable`; returns how
    /// many messages were decided.
    async fn step(&self, durable: u64) -> Result<usize, StoreError> {
        let store = &self.store;
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
        let mut messages: Vec<Message> = Vec::new();
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
                let subject = subject_of(&identifiers_of(&event, &self.rules), &event, &self.rules);
                for (step, send) in journey.sends.iter().enumerate() {
                    let mut message = message(
                        store, journey, step, send, &subject, stored.seq, &fact, &event, now,
                    );
                    if send.purpose.is_some() {
                        self.apply_policy(&mut message, &subject, &messages, now)
                            .await?;
                    }
                    messages.push(message);
                }
            }
        }
        store.outbox.enqueue(&messages, next_cursor)?;
        Ok(messages.len())
    }

    /// Judges a send with a purpose: sends, defers (quiet hours) or blocks
    /// it (consent, caps), recording why.
    async fn apply_policy(
        &self,
        message: &mut Message,
        subject: &kairos_core::identity::Identifier,
        decided: &[Message],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let person = self.person(subject, decided).await?;
        match self
            .policy
            .judge(message.purpose.as_deref(), &message.channel, &person, now)
        {
            Verdict::Send => {}
            Verdict::Defer { until, reason } => {
                message.next_attempt_at = until;
                message.last_error = Some(reason);
            }
            Verdict::Block { reason } => {
                message.status = MessageStatus::Blocked;
                message.last_error = Some(reason);
            }
        }
        Ok(())
    }

    /// The person as the policy sees them: consent and time zone from the
    /// profile now, and their sends with a purpose (stored, and decided in
    /// this step).
    async fn person(
        &self,
        subject: &kairos_core::identity::Identifier,
        decided: &[Message],
    ) -> Result<Person, StoreError> {
        let view = match &self.engine {
            Some(engine) => engine.profile(subject.clone()).await.ok().flatten(),
            None => None,
        };
        let identities: Vec<String> = match &view {
            Some(view) => view
                .identities
                .iter()
                .map(|identity| format!("{}:{}", identity.kind, identity.value))
                .collect(),
            None => vec![format!("{}:{}", subject.kind, subject.value)],
        };
        let counted = |message: &Message| {
            message.purpose.is_some() && message.status != MessageStatus::Blocked
        };
        let mut recent: Vec<(Timestamp, String)> = self
            .store
            .outbox
            .by_identifiers(&identities, RECENT_SENDS_MAX)?
            .into_iter()
            .filter(|message| counted(message))
            .map(|message| (message.created_at, message.channel))
            .collect();
        recent.extend(
            decided
                .iter()
                .filter(|message| counted(message) && identities.contains(&message.identifier))
                .map(|message| (message.created_at, message.channel.clone())),
        );
        Ok(Person {
            consent: view
                .as_ref()
                .map(|view| view.consent.clone())
                .unwrap_or_default(),
            time_zone: view
                .as_ref()
                .and_then(|view| view.traits.get("timezone")?.as_str().map(str::to_string)),
            recent,
        })
    }
}

#[allow(clippy::too_many_arguments)]
fn message(
    store: &Store,
    journey: &CompiledJourney,
    step: usize,
    send: &SendStep,
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
        destination: send.destination.clone(),
        journey: journey.id.clone(),
        purpose: send.purpose.clone(),
        channel: store
            .outbox
            .destination(&send.destination)
            .map(|record| record.kind)
            .unwrap_or_default(),
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
