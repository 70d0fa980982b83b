//! The effects stage: the shards hand it every event a journey or an
//! audience sync acts on, with the person as the event left them
//! ([`kairos_engine::effects_feed`]), in log order; it matches the journeys,
//! runs their steps and enqueues the messages they send, moving its cursor
//! in the same atomic batch — so after a crash nothing is decided twice and
//! nothing is skipped (the shards' replay hands over again what is after
//! the cursor). Each send passes the contact policy ([`kairos_core::journey::policy`])
//! first: blocked sends are recorded with their reason, deferred ones wait.
//! Waits and timed steps fire on the engine's clock once the stage has
//! passed everything durable.
//!
//! Here: the loop, triggers and `not followed by` waits; [`runs`]: entering
//! journeys and executing their steps; [`person`]: what steps read about a
//! person (the profile handed over, or the shard's now for timed steps) and
//! the contact policy.

mod experiments;
mod person;
mod runs;

use std::sync::Arc;

use jiff::Timestamp;
use kairos_core::audience::Expr;
use kairos_core::audience::eval::{EventFact, PersonFacts, evaluate};
use kairos_core::identity::Identifier;
use kairos_core::identity::IdentityRules;
use kairos_engine::effects_feed::{EffectInput, EffectsInterest, EffectsTap, Merger};
use kairos_store::{Effects, Message, MessageStatus, Run, Store, StoreError, Wait};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::DeliverError;
use crate::journey::{CompiledJourney, EntryRule, Instruction, Matcher, SendStep, compile};
use crate::policy::{ContactPolicy, Person, Verdict};

pub(crate) use person::Seen;

/// A person's latest messages the frequency caps look at.
const RECENT_SENDS_MAX: usize = 1_000;
/// Waits fired per look.
const WAITS_FIRED_MAX: usize = 1_000;
/// Timeline events a branch condition reads.
const BRANCH_EVENTS_MAX: usize = 1_000;
/// The source `set_trait` steps write their identify events as.
pub const JOURNEY_SOURCE: &str = "kairos-journeys";
/// The pause before a failed step is tried again: long enough not to spin
/// on a stopped engine or a full disk, short enough to go unnoticed.
const STEP_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);
/// How often due waits are looked for when no event arrives.
const WAIT_CHECK: std::time::Duration = std::time::Duration::from_millis(200);

/// The journeys stored now, compiled; one that no longer compiles (its
/// destination was deleted) is left out and logged.
pub fn active_journeys(store: &Store) -> Vec<CompiledJourney> {
    let destination = |name: &str| {
        let record = store.outbox.destination(name)?;
        Some((record.id, record.kind))
    };
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
                destination,
            ) {
                Ok(journey) => Some(CompiledJourney {
                    paused: record.paused,
                    ..journey
                }),
                Err(error) => {
                    tracing::warn!(journey = %record.name, %error, "journey inactive");
                    None
                }
            }
        })
        .collect()
}

/// The event names the stored journeys and audience syncs act on: what
/// the shards hand the stage at start ([`kairos_engine::effects_feed`]).
pub fn effects_interest(store: &Store) -> EffectsInterest {
    let mut names: Vec<String> = active_journeys(store)
        .iter()
        .flat_map(CompiledJourney::event_names)
        .collect();
    if !store.outbox.syncs().is_empty() {
        names.extend(sync_event_names());
    }
    let offers = crate::decisions::Catalog::default().offers(&store.outbox);
    names.extend(crate::decisions::response_event_names(&offers));
    names.extend(crate::experiments::event_names(&store.outbox));
    EffectsInterest::new(names)
}

/// What an audience sync acts on: membership announcements.
pub fn sync_event_names() -> Vec<String> {
    vec![
        kairos_core::audience::ANNOUNCED_ENTERED.to_string(),
        kairos_core::audience::ANNOUNCED_EXITED.to_string(),
    ]
}

/// What the stage works with.
pub(crate) struct Stage {
    pub(crate) store: Arc<Store>,
    pub(crate) rules: Arc<IdentityRules>,
    /// Profiles for timed steps (read without waiting on the shards).
    pub(crate) engine: kairos_engine::Engine,
    /// The offers responses are attributed to.
    pub(crate) catalog: Arc<crate::decisions::Catalog>,
    pub(crate) policy: ContactPolicy,
    pub(crate) metrics: crate::metrics::DeliveryMetrics,
    /// The engine's clock (manual in tests): decisions, waits, dates.
    pub(crate) clock: Arc<dyn kairos_core::clock::Clock>,
}

/// How the stage is woken and tells how far it got.
pub(crate) struct Signals {
    pub(crate) wake_workers: Arc<Notify>,
    /// Notified when the manual clock moves: look at the waits now.
    pub(crate) wake_stage: Arc<Notify>,
    pub(crate) handled: tokio::sync::watch::Sender<crate::Handled>,
    /// Set at shutdown: the stage ends after the step it is in.
    pub(crate) stop: tokio::sync::watch::Receiver<bool>,
}

pub(crate) async fn run(stage: Stage, mut tap: EffectsTap, signals: Signals) {
    let store = stage.store.clone();
    let wake_workers = signals.wake_workers.clone();
    let mut stop = signals.stop.clone();
    let cursor = loop {
        match store.outbox.cursor() {
            Ok(cursor) => break cursor,
            Err(error) => {
                tracing::error!(%error, "the journeys' cursor could not be read; retrying");
                tokio::time::sleep(STEP_RETRY_PAUSE).await;
            }
        }
    };
    let mut merger = Merger::new(stage.engine.shard_count(), cursor);
    // Every input at or below `through` is decided and durable.
    let mut through = cursor;
    tap.committed.send_replace(through);
    // Inputs whose step failed: tried again, never skipped.
    let mut unfinished: Option<(Vec<EffectInput>, u64)> = None;
    loop {
        if *stop.borrow() {
            return;
        }
        while let Ok(output) = tap.receiver.try_recv() {
            merger.push(output);
        }
        let durable = store.writer.committed_seq();
        // Read before the work: the clock only moves forward, so every
        // look below uses this `now` or a later one.
        let now = stage.now();
        let (inputs, upto) = unfinished.take().unwrap_or_else(|| merger.take_ready());
        let mut decided = 0;
        if upto > through {
            match stage.step(&inputs, upto).await {
                Ok(count) => {
                    decided = count;
                    through = upto;
                    tap.committed.send_replace(through);
                }
                Err(error) => {
                    // Nothing of the step is committed (the cursor moves in
                    // the batch with its decisions): the same inputs are
                    // decided again after the pause.
                    tracing::error!(%error, kind = ?error.kind(), "a journey step failed; retrying it");
                    unfinished = Some((inputs, upto));
                    tokio::time::sleep(STEP_RETRY_PAUSE).await;
                    continue;
                }
            }
        }
        // Waits and timeouts fire only once everything durable at this
        // look is decided: while catching up (after a restart) the event
        // that cancels a wait or resumes a run may still be on its way.
        let caught_up = through >= durable;
        let fired = if caught_up { stage.fire_due().await } else { 0 }
            + crate::audience_sync::flush(&store).unwrap_or_else(|error| {
                tracing::error!(%error, "audience syncs could not send; retrying");
                0
            });
        if decided + fired > 0 {
            wake_workers.notify_waiters();
        }
        let more_due = caught_up && stage.more_due(now);
        if more_due && fired > 0 {
            continue; // more than one look's worth came due at once
        }
        // Only a complete look counts as handled; a failing one retries
        // after the pause above.
        if caught_up && !more_due {
            signals.handled.send_if_modified(|handled| {
                let next = crate::Handled { seq: durable, now };
                let moved = *handled != next;
                *handled = next;
                moved
            });
        }
        // The shards' next batch, the clock moving, or the next look at
        // the waits.
        tokio::select! {
            output = tap.receiver.recv() => match output {
                Some(output) => merger.push(output),
                None => return, // the engine stopped
            },
            _ = signals.wake_stage.notified() => {}
            _ = tokio::time::sleep(WAIT_CHECK) => {}
            _ = stop.changed() => return,
        }
    }
}

impl Stage {
    /// Fires the waits and resumes the runs that are due; how many fired
    /// and messages were decided.
    async fn fire_due(&self) -> usize {
        self.fire_due_waits().await.unwrap_or_else(|error| {
            tracing::error!(%error, "journey waits could not fire; retrying");
            0
        }) + self.fire_due_runs().await.unwrap_or_else(|error| {
            tracing::error!(%error, "journey steps could not resume; retrying");
            0
        })
    }

    /// Whether waits or steps are still due at `now` (more than one look
    /// fires, or an error stopped one).
    fn more_due(&self, now: Timestamp) -> bool {
        let outbox = &self.store.outbox;
        let waits = outbox.due_waits(now, 1).map_or(true, |due| !due.is_empty());
        let runs = outbox.due_runs(now, 1).map_or(true, |due| !due.is_empty());
        waits || runs
    }

    /// Applies the journeys and syncs to the inputs every shard has passed
    /// (up to `upto`), in log order; returns how many messages were decided.
    /// Without inputs nothing is written: no decision lies at or below
    /// `upto`, so a restart that hands those positions over again decides
    /// nothing either.
    async fn step(&self, inputs: &[EffectInput], upto: u64) -> Result<usize, DeliverError> {
        if inputs.is_empty() {
            return Ok(0);
        }
        let store = &self.store;
        let journeys = active_journeys(store);
        let syncs = store.outbox.syncs();
        let offers = self.catalog.offers(&store.outbox);
        let now = self.now();
        // Every write of the step, stored with the cursor in one batch.
        let mut effects = store.effects();
        for input in inputs {
            let (fact, event) = (&input.fact, &*input.event);
            let seen = Seen::WithEvent {
                person: &input.person,
                seq: input.seq,
            };
            if input.announcement {
                for (sync, change) in
                    crate::audience_sync::changes_of(&syncs, input.seq, fact, event, &self.rules)
                {
                    effects.sync_change(sync, change);
                }
            } else {
                self.apply_responses(&offers, fact, &mut effects)?;
                self.apply_incentive_outcomes(&offers, input, &mut effects)?;
                self.apply_experiment_metrics(input, &mut effects)?;
                // Runs of this person waiting for this event, or whose goal
                // it is, go on or end first.
                self.resume_waiting(
                    &input.subject,
                    &fact.name,
                    &journeys,
                    now,
                    seen,
                    &mut effects,
                )
                .await?;
            }
            for journey in journeys.iter().filter(|journey| !journey.paused) {
                if let Matcher::NotFollowed { .. } = journey.matcher {
                    if !input.announcement {
                        self.track_wait(journey, input, &mut effects)?;
                    }
                    continue;
                }
                if input.seq <= journey.starts_after_seq
                    || !journey.matches(fact, input.announcement)
                    || !journey
                        .entry
                        .acts_on(fact, event.received_at, input.announcement)
                {
                    continue;
                }
                let mut summary = event_summary(fact, event);
                if let Matcher::Event(_, Some(unusual)) = &journey.matcher {
                    let history = self.history(&input.subject, Some(input.seq), seen)?;
                    match crate::unusual::departure(unusual, fact, &history) {
                        Some(baseline) => summary["unusual"] = baseline,
                        None => continue,
                    }
                }
                self.enter(
                    journey,
                    &input.subject,
                    (input.seq, summary),
                    now,
                    seen,
                    &mut effects,
                )
                .await?;
            }
        }
        let decided = effects.messages().len();
        let triggered: std::collections::BTreeSet<u64> = effects
            .messages()
            .iter()
            .map(|message| message.event_seq)
            .collect();
        effects.commit(Some(upto))?;
        let now = Timestamp::now();
        for input in inputs.iter().filter(|input| triggered.contains(&input.seq)) {
            let latency = now.duration_since(input.event.received_at).as_secs_f64();
            self.metrics.trigger_seconds.observe(latency.max(0.0));
        }
        Ok(decided)
    }

    /// An offer response (impression, click, dismissal, conversion with a
    /// `decision_id`): counted for the offer and the person, once, in the
    /// step's batch; one that names no known decision is only logged.
    fn apply_responses(
        &self,
        offers: &[crate::decisions::Offer],
        fact: &EventFact,
        effects: &mut Effects<'_>,
    ) -> Result<(), StoreError> {
        let decision = |id: &str| self.store.outbox.decision(id).ok().flatten();
        for (decision_id, offer, kind) in
            crate::decisions::responses_of(offers, &fact.name, &fact.properties, decision)
        {
            if effects
                .offer_response(&decision_id, &offer, kind, fact.at)?
                .is_none()
            {
                tracing::debug!(%decision_id, %offer, "an offer response names no decision of that offer");
            }
        }
        Ok(())
    }

    /// A conversion event of an incentive offer: every randomized incentive
    /// of the person (treated or held out) whose window holds it is marked
    /// converted — the outcome uplift models learn from.
    fn apply_incentive_outcomes(
        &self,
        offers: &[crate::decisions::Offer],
        input: &EffectInput,
        effects: &mut Effects<'_>,
    ) -> Result<(), StoreError> {
        let converted: Vec<String> = offers
            .iter()
            .filter(|offer| {
                offer.incentive.is_some()
                    && offer.conversion_event.as_deref() == Some(&input.fact.name)
            })
            .map(|offer| offer.id.clone())
            .collect();
        if converted.is_empty() {
            return Ok(());
        }
        let identifiers: Vec<String> = input
            .person
            .identities
            .iter()
            .map(|identity| format!("{}:{}", identity.kind, identity.value))
            .collect();
        effects.incentive_outcomes(&identifiers, &converted, input.fact.at)?;
        Ok(())
    }

    /// `A not followed by B`: an A starts (or restarts) the wait for its
    /// key, a B with the same key inside the window cancels it (in the
    /// step's `effects`, committed with the cursor).
    fn track_wait(
        &self,
        journey: &CompiledJourney,
        input: &EffectInput,
        effects: &mut Effects<'_>,
    ) -> Result<(), StoreError> {
        let (seq, fact, event) = (input.seq, &input.fact, &*input.event);
        let subject = &input.subject;
        let identifier = format!("{}:{}", subject.kind, subject.value);
        let Some(key_value) = journey.wait_key(fact, &identifier) else {
            return Ok(()); // another trigger, or no key: no wait moves
        };
        if journey.may_end_wait(fact)
            && let Some(wait) = effects.wait(&journey.id, &key_value)?
            && journey.ends_wait(fact, wait.started_at, wait.deadline)
        {
            effects.cancel_wait(&wait);
        }
        if let Some(deadline) = journey.starts_wait(seq, fact, event.received_at) {
            effects.set_wait(&Wait {
                journey: journey.id.clone(),
                key: key_value,
                deadline,
                event_seq: seq,
                started_at: fact.at,
                identifier,
                event: event_summary(fact, event),
            });
        }
        Ok(())
    }

    /// Fires every wait whose deadline has passed on the engine's clock:
    /// its messages are decided (policy included) and stored, the wait
    /// removed, with the rest of what its journey did, in one batch.
    /// Returns how many waits fired and messages were decided.
    async fn fire_due_waits(&self) -> Result<usize, DeliverError> {
        let now = self.now();
        let due = self.store.outbox.due_waits(now, WAITS_FIRED_MAX)?;
        if due.is_empty() {
            return Ok(0);
        }
        let journeys = active_journeys(&self.store);
        let mut effects = self.store.effects();
        for wait in &due {
            effects.cancel_wait(wait);
            let Some(journey) = journeys.iter().find(|journey| journey.id == wait.journey) else {
                continue; // the journey was deleted: the wait just ends
            };
            if journey.paused {
                continue; // paused: nobody enters; the wait just ends
            }
            let subject = person(&wait.identifier);
            self.enter(
                journey,
                &subject,
                (wait.event_seq, wait.event.clone()),
                now,
                Seen::Now,
                &mut effects,
            )
            .await?;
        }
        let decided = effects.messages().len();
        effects.commit(None)?;
        Ok(due.len() + decided)
    }
}

/// The person a stored `type:value` names.
fn person(identifier: &str) -> Identifier {
    Identifier::parse(identifier).unwrap_or_else(|| Identifier::new("", identifier))
}

/// The triggering event as a message shows it.
fn event_summary(fact: &EventFact, event: &kairos_core::Event) -> Value {
    json!({
        "name": fact.name,
        "messageId": event.message_id,
        "timestamp": fact.at.to_string(),
        "properties": fact.properties,
    })
}

/// A message of `journey`'s `step` about `identifier` (`type:value`).
#[allow(clippy::too_many_arguments)]
fn message(
    store: &Store,
    journey: &CompiledJourney,
    step: usize,
    send: &SendStep,
    identifier: &str,
    event_seq: u64,
    event: Value,
    now: Timestamp,
) -> Message {
    // Deterministic: the same event and step always make the same id.
    let id = format!(
        "msg_{event_seq:x}_{}_{step}",
        journey.id.trim_start_matches("jny_")
    );
    let mut data = json!({
        "message_id": id,
        "journey": {"id": journey.id, "name": journey.name},
        "profile": {"identifier": person(identifier)},
        "event": event,
    });
    if let Matcher::NotFollowed {
        then, within, key, ..
    } = &journey.matcher
    {
        data["not_followed_by"] =
            json!({"event": then, "within_seconds": within.as_secs(), "key": key});
    }
    let payload = json!({"type": "journey.message", "timestamp": now.to_string(), "data": data});
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
        identifier: identifier.to_string(),
        event_seq,
        payload,
        status: MessageStatus::Pending,
        attempts: 0,
        // Attempts run on the system clock; decisions on the engine's.
        next_attempt_at: Timestamp::now(),
        last_error: None,
        created_at: now,
        deferred_until: None,
        delivered_at: None,
    }
}
