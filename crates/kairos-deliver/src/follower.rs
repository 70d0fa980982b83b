//! The follower: reads the log after the outbox's cursor, matches every
//! durable event against the journeys and enqueues the messages they send,
//! moving the cursor in the same atomic batch — so after a crash nothing is
//! decided twice and nothing is skipped. Each send passes the contact
//! policy ([`crate::policy`]) first: blocked sends are recorded with their
//! reason, deferred ones wait.

use std::sync::Arc;

use jiff::Timestamp;
use kairos_core::audience::Expr;
use kairos_core::audience::eval::{EventFact, PersonFacts, evaluate, matches_event};
use kairos_core::identity::Identifier;
use kairos_core::identity::IdentityRules;
use kairos_core::identity::extract::{identifiers_of, subject_of};
use kairos_core::normalize::{Arrival, IngestLimits, normalize_internal_event};
use kairos_store::{Message, MessageStatus, Run, Store, StoreError, Wait};
use serde_json::{Map, Value, json};
use tokio::sync::Notify;

use crate::journey::{CompiledJourney, EntryRule, Instruction, Matcher, SendStep, compile};
use crate::policy::{ContactPolicy, Person, Verdict};

/// Events read per step.
const READ_BATCH: usize = 2_000;
/// A person's latest messages the frequency caps look at.
const RECENT_SENDS_MAX: usize = 1_000;
/// Waits fired per look.
const WAITS_FIRED_MAX: usize = 1_000;
/// Timeline events a branch condition reads.
const BRANCH_EVENTS_MAX: usize = 1_000;
/// The source `set_trait` steps write their identify events as.
pub const JOURNEY_SOURCE: &str = "kairos-journeys";
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
        let decided = match follower.step(durable).await {
            Ok(decided) => decided,
            Err(error) => {
                tracing::error!(%error, "journeys could not read the log; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        let fired = follower.fire_due_waits().await.unwrap_or_else(|error| {
            tracing::error!(%error, "journey waits could not fire; retrying");
            0
        }) + follower.fire_due_runs().await.unwrap_or_else(|error| {
            tracing::error!(%error, "journey steps could not resume; retrying");
            0
        }) + crate::audience_sync::flush(&store).unwrap_or_else(|error| {
            tracing::error!(%error, "audience syncs could not send; retrying");
            0
        });
        if decided + fired > 0 {
            wake_workers.notify_waiters();
        }
        if store.outbox.cursor().unwrap_or(0) < durable {
            continue;
        }
        // Caught up: the next durable group, or the next look at the waits.
        tokio::select! {
            changed = committed.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(WAIT_CHECK) => {}
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
        let syncs = store.outbox.syncs();
        if journeys.is_empty() && syncs.is_empty() {
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
        let now = self.now();
        let mut messages: Vec<Message> = Vec::new();
        let mut changes = Vec::new();
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
            if announcement {
                changes.extend(crate::audience_sync::changes_of(
                    &syncs,
                    stored.seq,
                    &fact,
                    &event,
                    &self.rules,
                ));
            } else {
                // Runs of this person waiting for this event, or whose goal
                // it is, go on or end first.
                let subject = subject_of(&identifiers_of(&event, &self.rules), &event, &self.rules);
                self.resume_waiting(&subject, &fact.name, &journeys, now, &mut messages)
                    .await?;
            }
            for journey in &journeys {
                if let Matcher::NotFollowed { .. } = journey.matcher {
                    if !announcement {
                        self.track_wait(journey, stored.seq, &fact, &event)?;
                    }
                    continue;
                }
                if stored.seq <= journey.starts_after_seq || !journey.matches(&fact, announcement) {
                    continue;
                }
                let subject = subject_of(&identifiers_of(&event, &self.rules), &event, &self.rules);
                let mut summary = event_summary(&fact, &event);
                if let Matcher::Event(_, Some(unusual)) = &journey.matcher {
                    let history = self.history(&subject, Some(stored.seq)).await;
                    match crate::unusual::departure(unusual, &fact, &history) {
                        Some(baseline) => summary["unusual"] = baseline,
                        None => continue,
                    }
                }
                self.enter(journey, &subject, stored.seq, summary, now, &mut messages)
                    .await?;
            }
        }
        store
            .outbox
            .enqueue_with_changes(&messages, &changes, next_cursor)?;
        Ok(messages.len())
    }

    /// `A not followed by B`: an A starts (or restarts) the wait for its
    /// key, a B with the same key inside the window cancels it. Applying an
    /// event twice (after a crash) sets or cancels the same wait.
    fn track_wait(
        &self,
        journey: &CompiledJourney,
        seq: u64,
        fact: &EventFact,
        event: &kairos_core::Event,
    ) -> Result<(), StoreError> {
        let Matcher::NotFollowed {
            first,
            then,
            within,
            key,
        } = &journey.matcher
        else {
            return Ok(());
        };
        let subject = subject_of(&identifiers_of(event, &self.rules), event, &self.rules);
        let identifier = format!("{}:{}", subject.kind, subject.value);
        let key_value = match key {
            Some(path) => match fact.properties.get(path) {
                Some(Value::String(text)) => text.clone(),
                Some(value) if !value.is_null() => value.to_string(),
                _ => return Ok(()), // no key: neither starts nor ends a wait
            },
            None => identifier.clone(),
        };
        let outbox = &self.store.outbox;
        if fact.name == *then
            && let Some(wait) = outbox.wait(&journey.id, &key_value)?
            && fact.at > wait.started_at
            && fact.at <= wait.deadline
        {
            outbox.cancel_wait(&wait)?;
        }
        if seq > journey.starts_after_seq && matches_event(first, fact) {
            outbox.set_wait(&Wait {
                journey: journey.id.clone(),
                key: key_value,
                deadline: fact.at + *within,
                event_seq: seq,
                started_at: fact.at,
                identifier,
                event: event_summary(fact, event),
            })?;
        }
        Ok(())
    }

    /// Fires every wait whose deadline has passed on the engine's clock:
    /// its messages are decided (policy included) and stored, the wait
    /// removed, in one batch. Returns how many messages were decided.
    async fn fire_due_waits(&self) -> Result<usize, StoreError> {
        let now = self.now();
        let due = self.store.outbox.due_waits(now, WAITS_FIRED_MAX)?;
        if due.is_empty() {
            return Ok(0);
        }
        let journeys = active_journeys(&self.store);
        let mut messages: Vec<Message> = Vec::new();
        for wait in &due {
            let Some(journey) = journeys.iter().find(|journey| journey.id == wait.journey) else {
                continue; // the journey was deleted: the wait just ends
            };
            let subject = person(&wait.identifier);
            self.enter(
                journey,
                &subject,
                wait.event_seq,
                wait.event.clone(),
                now,
                &mut messages,
            )
            .await?;
        }
        self.store.outbox.fire_waits(&due, &messages)?;
        Ok(messages.len())
    }

    /// A person enters a journey (if its entry rule and the cap on
    /// concurrent journeys let them) and goes through its steps up to the
    /// first wait.
    async fn enter(
        &self,
        journey: &CompiledJourney,
        subject: &Identifier,
        event_seq: u64,
        event: Value,
        now: Timestamp,
        messages: &mut Vec<Message>,
    ) -> Result<(), StoreError> {
        let identifier = format!("{}:{}", subject.kind, subject.value);
        let outbox = &self.store.outbox;
        if journey.entry != EntryRule::EveryTime {
            let entries = outbox.entries(&journey.id, &identifier)?;
            let allowed = match (&journey.entry, entries) {
                (_, None) => true,
                (EntryRule::Once, Some(_)) => false,
                (EntryRule::OncePer(period), Some(entries)) => entries.last + *period <= now,
                (EntryRule::EveryTime, _) => true,
            };
            if !allowed {
                return Ok(());
            }
            outbox.record_entry(&journey.id, &identifier, now)?;
        }
        if let Some(cap) = self.policy.max_concurrent_journeys
            && outbox.runs_of(&identifier)?.len() >= cap as usize
        {
            tracing::info!(journey = %journey.name, %identifier, "not entered: {cap} journeys under way");
            return Ok(());
        }
        let run = Run {
            journey: journey.id.clone(),
            identifier,
            event_seq,
            pc: 0,
            resume_at: now,
            waiting_for: None,
            started_at: now,
            event,
        };
        self.execute(journey, run, subject, now, messages).await
    }

    /// Runs the journey's steps from the run's place until a wait (the run
    /// is stored) or the end (the run ends).
    async fn execute(
        &self,
        journey: &CompiledJourney,
        mut run: Run,
        subject: &Identifier,
        now: Timestamp,
        messages: &mut Vec<Message>,
    ) -> Result<(), StoreError> {
        loop {
            let Some(instruction) = journey.program.get(run.pc) else {
                return self.store.outbox.remove_run(&run);
            };
            match instruction {
                Instruction::Send(send) => {
                    let mut message = message(
                        &self.store,
                        journey,
                        run.pc,
                        send,
                        &run.identifier,
                        run.event_seq,
                        run.event.clone(),
                        now,
                    );
                    if send.purpose.is_some() || !self.policy.suppression_lists.is_empty() {
                        self.apply_policy(&mut message, subject, messages, now)
                            .await?;
                    }
                    self.render_content(&mut message, send, subject).await;
                    messages.push(message);
                    run.pc += 1;
                }
                Instruction::Wait(span) => {
                    run.pc += 1;
                    run.resume_at = now + *span;
                    return self.store.outbox.save_run(&run);
                }
                Instruction::WaitFor { event, timeout } => {
                    run.pc += 1;
                    run.waiting_for = Some(event.clone());
                    run.resume_at = now + *timeout;
                    return self.store.outbox.save_run(&run);
                }
                Instruction::Branch {
                    condition,
                    otherwise,
                } => {
                    run.pc = if self.holds(condition, subject, now).await {
                        run.pc + 1
                    } else {
                        *otherwise
                    };
                }
                Instruction::WaitUntil(time) => {
                    run.pc += 1;
                    run.resume_at = self.next_local_time(*time, subject, now).await;
                    return self.store.outbox.save_run(&run);
                }
                Instruction::AddToList(list) => {
                    let identifiers = self.identifiers(subject).await;
                    let reason = format!("journey {}", journey.name);
                    self.store.lists.add(list, &identifiers, &reason, now)?;
                    run.pc += 1;
                }
                Instruction::Jump(target) => run.pc = *target,
                Instruction::SetTrait { name, value } => {
                    self.set_trait(&run, name, value).await?;
                    run.pc += 1;
                }
            }
        }
    }

    /// An event of a person: their runs waiting for it go on; runs whose
    /// goal it is end.
    async fn resume_waiting(
        &self,
        subject: &Identifier,
        name: &str,
        journeys: &[CompiledJourney],
        now: Timestamp,
        messages: &mut Vec<Message>,
    ) -> Result<(), StoreError> {
        let identifier = format!("{}:{}", subject.kind, subject.value);
        for mut run in self.store.outbox.runs_of(&identifier)? {
            let Some(journey) = journeys.iter().find(|journey| journey.id == run.journey) else {
                self.store.outbox.remove_run(&run)?;
                continue;
            };
            if journey.goal.as_deref() == Some(name) {
                self.store.outbox.remove_run(&run)?; // the goal is met: they leave
            } else if run.waiting_for.as_deref() == Some(name) {
                self.store.outbox.remove_run(&run)?;
                run.waiting_for = None;
                self.execute(journey, run, subject, now, messages).await?;
            }
        }
        Ok(())
    }

    /// Resumes runs whose wait is over on the engine's clock.
    async fn fire_due_runs(&self) -> Result<usize, StoreError> {
        let now = self.now();
        let due = self.store.outbox.due_runs(now, WAITS_FIRED_MAX)?;
        if due.is_empty() {
            return Ok(0);
        }
        let journeys = active_journeys(&self.store);
        let mut messages = Vec::new();
        for mut run in due {
            self.store.outbox.remove_run(&run)?;
            let Some(journey) = journeys.iter().find(|journey| journey.id == run.journey) else {
                continue;
            };
            let subject = person(&run.identifier);
            run.waiting_for = None;
            self.execute(journey, run, &subject, now, &mut messages)
                .await?;
        }
        self.store.outbox.fire_waits(&[], &messages)?;
        Ok(messages.len())
    }

    /// A branch's condition for the person now: the from-scratch meaning of
    /// the audience language over their traits, computed traits,
    /// memberships and timeline.
    async fn holds(&self, condition: &Expr, subject: &Identifier, now: Timestamp) -> bool {
        let Some(engine) = &self.engine else {
            return false;
        };
        let Ok(Some(view)) = engine.profile(subject.clone()).await else {
            return false;
        };
        let events = self.history(subject, None).await;
        let facts = PersonFacts {
            traits: view.traits,
            computed: view.computed,
            audiences: view.audiences.into_iter().collect(),
            ..PersonFacts::default()
        };
        evaluate(condition, &events, &facts, now)
    }

    /// The person's latest timeline events (newest first), only those
    /// before the log position `before` if given.
    async fn history(&self, subject: &Identifier, before: Option<u64>) -> Vec<EventFact> {
        let Some(engine) = &self.engine else {
            return Vec::new();
        };
        let page = engine
            .timeline(subject.clone(), before, BRANCH_EVENTS_MAX)
            .await
            .ok()
            .flatten();
        page.map(|page| page.entries)
            .unwrap_or_default()
            .iter()
            .filter(|entry| before.is_none_or(|before| entry.seq < before))
            .filter_map(|entry| self.store.log.get(entry.seq).ok().flatten()?.decode().ok())
            .filter_map(|event| {
                Some(EventFact {
                    name: event.event.clone()?,
                    at: event.timestamp,
                    properties: event
                        .field("properties")
                        .and_then(|raw| serde_json::from_str(raw.get()).ok())
                        .unwrap_or_default(),
                })
            })
            .collect()
    }

    /// Every identifier of the person's profile (`type:value`), or just
    /// the one we know.
    async fn identifiers(&self, subject: &Identifier) -> Vec<String> {
        let view = match &self.engine {
            Some(engine) => engine.profile(subject.clone()).await.ok().flatten(),
            None => None,
        };
        match view {
            Some(view) => view
                .identities
                .iter()
                .map(|identity| format!("{}:{}", identity.kind, identity.value))
                .collect(),
            None => vec![format!("{}:{}", subject.kind, subject.value)],
        }
    }

    /// The next moment after `now` at which the person's clock (trait
    /// `timezone`, else the policy's default zone) shows `time`.
    async fn next_local_time(
        &self,
        time: jiff::civil::Time,
        subject: &Identifier,
        now: Timestamp,
    ) -> Timestamp {
        let view = match &self.engine {
            Some(engine) => engine.profile(subject.clone()).await.ok().flatten(),
            None => None,
        };
        let zone = view
            .as_ref()
            .and_then(|view| view.traits.get("timezone")?.as_str())
            .and_then(|name| jiff::tz::TimeZone::get(name).ok())
            .unwrap_or_else(|| self.policy.default_time_zone.clone());
        crate::policy::next_local(now, time, &zone)
    }

    /// A `set_trait` step: an identify event of the `kairos-journeys`
    /// source through the log, so the trait is durable and replayed like
    /// any other (and audiences see it).
    async fn set_trait(&self, run: &Run, name: &str, value: &Value) -> Result<(), StoreError> {
        let mut event = json!({
            "type": "identify",
            "messageId": format!("journey-{}-{:x}-{}", run.journey, run.event_seq, run.pc),
            "traits": {name: value},
        });
        person(&run.identifier).name_in(&mut event);
        let source = self.store.sources.named(JOURNEY_SOURCE, Timestamp::now())?;
        let limits = IngestLimits::default();
        let arrival = Arrival {
            source_id: &source.id,
            received_at: Timestamp::now(),
            batch_sent_at: None,
            path_type: None,
            limits: &limits,
            plan: None,
        };
        let raw = serde_json::value::RawValue::from_string(event.to_string())
            .map_err(|error| StoreError::Corrupt(error.to_string()))?;
        let Ok(event) = normalize_internal_event(&raw, &arrival) else {
            tracing::warn!(trait_name = %name, "a set_trait step did not make a valid event");
            return Ok(());
        };
        if let Some(record) = self.store.prepare(&event, &self.rules) {
            self.store
                .writer
                .append(vec![record], Vec::new(), Vec::new())
                .await?;
        }
        Ok(())
    }

    /// Email and in-app sends: their content rendered for the person now
    /// replaces the payload, so every attempt sends the same thing. An email
    /// goes to the `email` trait, else an email identity; without one, or
    /// with a failing template, the send is blocked with the reason.
    async fn render_content(
        &self,
        message: &mut Message,
        send: &SendStep,
        subject: &kairos_core::identity::Identifier,
    ) {
        if (send.template.is_none() && send.message.is_none())
            || message.status == MessageStatus::Blocked
        {
            return;
        }
        let view = match &self.engine {
            Some(engine) => engine.profile(subject.clone()).await.ok().flatten(),
            None => None,
        };
        let context = json!({
            "traits": view.as_ref().map(|view| &view.traits),
            "computed": view.as_ref().map(|view| &view.computed),
            "audiences": view.as_ref().map(|view| &view.audiences),
            "profile": {"id": view.as_ref().map(|view| &view.id)},
            "event": message.payload["data"]["event"],
        });
        let rendered = match (&send.template, &send.message) {
            (Some(template), _) => {
                let recipient = view.as_ref().and_then(|view| {
                    view.traits
                        .get("email")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .or_else(|| {
                            view.identities
                                .iter()
                                .find(|identity| identity.kind == "email")
                                .map(|identity| identity.value.clone())
                        })
                });
                match recipient {
                    None => {
                        Err("no email address: the profile has no email trait or identity".into())
                    }
                    Some(recipient) => match self.suppressed_address(&recipient) {
                        Some(reason) => Err(reason),
                        None => crate::email::render(template, &recipient, &context)
                            .map(|email| serde_json::to_value(email).unwrap_or_default()),
                    },
                }
            }
            (None, Some(content)) => crate::email::render_value(content, &context).map(|content| {
                let mut payload = message.payload.clone();
                payload["data"]["content"] = content;
                payload
            }),
            (None, None) => return,
        };
        match rendered {
            Ok(payload) => message.payload = payload,
            Err(error) => {
                message.status = MessageStatus::Blocked;
                message.last_error = Some(error);
            }
        }
    }

    /// Why mail to this address must not go (it is on a suppression list).
    fn suppressed_address(&self, address: &str) -> Option<String> {
        let identifier = format!("email:{}", address.trim().to_lowercase());
        match self
            .store
            .lists
            .find(&self.policy.suppression_lists, &[identifier])
        {
            Ok(Some((list, identifier))) => {
                Some(format!("suppressed: {identifier} is on the list {list:?}"))
            }
            Ok(None) => None,
            Err(error) => Some(format!("suppression lists unreadable: {error}")),
        }
    }

    /// The engine's "now" (the manual clock in tests), else the system's.
    fn now(&self) -> Timestamp {
        self.engine
            .as_ref()
            .map_or_else(Timestamp::now, kairos_engine::Engine::now)
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
                // `until` is on the engine's clock; attempts on the system's.
                message.next_attempt_at = Timestamp::now() + now.duration_until(until);
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
        let suppressed = self
            .store
            .lists
            .find(&self.policy.suppression_lists, &identities)?;
        Ok(Person {
            suppressed,
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
        delivered_at: None,
    }
}
