//! The delivery loop, written once for every kind of destination
//! ([`crate::destination`]): each destination has its own task and its own
//! queue, so a failing or hanging endpoint never delays another.
//!
//! Each due message gets one attempt ([`Destination::deliver`]); delivered
//! ends it; a destination that asks never to be called again (410) is
//! disabled and its messages become dead letters; failures are retried on
//! an exponential schedule with jitter (or after the endpoint's
//! `Retry-After`) until the attempts run out, then the message is a dead
//! letter, replayable through the API. After several failures in a row the
//! destination's circuit opens: no attempts until it cools down. A message
//! whose recipient is away (in-app: no page open) is not an attempt: it
//! waits, and expires after the destination's `wait_max`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use kairos_store::{DestinationRecord, Message, MessageStatus, Store};
use tokio::sync::Notify;

use crate::DeliverySettings;
use crate::destination::{Destination, Outcome, Pace, QueueRules};
use crate::in_app::InAppHub;
use crate::metrics::DeliveryMetrics;

/// Failures in a row that open the circuit.
const BREAKER_FAILURES: u32 = 5;
/// How often the queue is read from its start again: replayed dead
/// letters come back, and messages waiting for their recipient expire.
const RESCAN_EVERY: Duration = Duration::from_secs(5);
/// How often a disabled destination's queue is turned into dead letters.
const DISABLED_SLEEP: Duration = Duration::from_secs(1);

/// One destination's worker and what it remembers between looks.
struct Worker {
    store: Arc<Store>,
    destination_id: String,
    settings: DeliverySettings,
    wake: Arc<Notify>,
    client: reqwest::Client,
    hub: InAppHub,
    metrics: DeliveryMetrics,
    failures_in_row: u32,
    /// Messages before this sequence number are known to be done (or, for
    /// recipient-paced ones, offered since the last rescan).
    from_seq: u64,
    rescan_at: Instant,
    /// The earliest end of quiet hours (engine clock) among the held
    /// messages read since the last rescan: the queue is read from its
    /// start again once the engine's clock reaches it, so a recipient-paced
    /// message goes the moment it may.
    held_until: Option<Timestamp>,
}

pub(crate) async fn run(
    store: Arc<Store>,
    destination_id: String,
    settings: DeliverySettings,
    wake: Arc<Notify>,
    client: reqwest::Client,
    hub: InAppHub,
    metrics: DeliveryMetrics,
) {
    let mut worker = Worker {
        store,
        destination_id,
        settings,
        wake,
        client,
        hub,
        metrics,
        failures_in_row: 0,
        from_seq: 0,
        rescan_at: Instant::now(),
        held_until: None,
    };
    // Read on every look: URL, headers, secrets and `disabled` may change.
    while let Some(record) = worker.store.outbox.destination(&worker.destination_id) {
        if let Some(sleep) = worker.look(&record).await {
            let _ = tokio::time::timeout(sleep, worker.wake.notified()).await;
        }
    }
    // Deleted: the worker ends.
}

impl Worker {
    /// One look at the queue: attempts what is due. Returns how long to
    /// sleep before the next look (`None`: look again at once).
    async fn look(&mut self, record: &DestinationRecord) -> Option<Duration> {
        // Handles (reference-counted) the destination borrows while the
        // worker's own state changes during the look.
        let (client, hub) = (self.client.clone(), self.hub.clone());
        let destination = Destination::of(record, &client, &hub);
        let rules = destination.rules();
        let clocks = Clocks {
            system: Timestamp::now(),
            engine: self.settings.clock.now(),
        };
        let released = self.held_until.is_some_and(|until| until <= clocks.engine);
        let rescan = Instant::now() >= self.rescan_at || released;
        if rescan {
            self.from_seq = 0;
            self.rescan_at = Instant::now() + RESCAN_EVERY;
            self.held_until = None;
        }
        let pending = self
            .store
            .outbox
            .pending(&record.id, self.from_seq, rules.take)
            .unwrap_or_default();
        self.from_seq = next_from_seq(&pending, &rules, self.from_seq);
        self.held_until = self
            .held_until
            .into_iter()
            .chain(held_until(&pending, clocks.engine))
            .min();
        if record.disabled.is_some() {
            for message in pending {
                let reason = "the destination is disabled (it answered 410 Gone)";
                dead(&self.store, message, reason);
            }
            return Some(DISABLED_SLEEP);
        }
        let now = clocks.system;
        let due = due(&pending, &rules, clocks);
        if due.is_empty() {
            return Some(sleep_until_due(&pending, &rules, clocks));
        }
        for message in due {
            if self.store.outbox.is_erased(&message.identifier) {
                continue; // erased since it was read: never sent
            }
            let started = Instant::now();
            let outcome = destination.deliver(&message, &self.settings).await;
            if let Outcome::Waiting = outcome {
                self.waiting(message, &rules, rescan, now);
                continue;
            }
            if let Pace::Scheduled = rules.pace {
                count(
                    &self.metrics,
                    record,
                    &message,
                    &outcome,
                    &self.settings,
                    started,
                );
            }
            if self.settled(record, message, outcome).await.is_break() {
                break;
            }
        }
        None
    }

    /// Records an attempt's outcome; breaks the pass when the destination
    /// was disabled or its circuit opened (after cooling down).
    async fn settled(
        &mut self,
        record: &DestinationRecord,
        message: Message,
        outcome: Outcome,
    ) -> std::ops::ControlFlow<()> {
        match outcome {
            Outcome::Delivered => self.failures_in_row = 0,
            _ => self.failures_in_row += 1,
        }
        let disable = matches!(outcome, Outcome::Disable);
        record_attempt(&self.store, message, outcome, &self.settings);
        if disable {
            let reason = format!(
                "the endpoint answered 410 Gone; once it is back, re-enable it with PATCH /v1/destinations/{} {{\"enabled\": true}}",
                record.id
            );
            let _ = self.store.outbox.disable_destination(&record.id, &reason);
            return std::ops::ControlFlow::Break(());
        }
        if self.failures_in_row >= BREAKER_FAILURES {
            // Circuit open: let the endpoint recover before trying again.
            tracing::warn!(destination = %record.name, "circuit open after {} failures", self.failures_in_row);
            tokio::time::sleep(backoff(&self.settings, 1, &record.id) * 2).await;
            self.failures_in_row = BREAKER_FAILURES - 1; // half open: one more try
            return std::ops::ControlFlow::Break(());
        }
        std::ops::ControlFlow::Continue(())
    }

    /// The recipient was away: the message keeps waiting, unless a rescan
    /// finds it waited longer than the destination allows.
    fn waiting(&self, message: Message, rules: &QueueRules, rescan: bool, now: Timestamp) {
        let Pace::Recipient { wait_max } = rules.pace else {
            return;
        };
        // Both on the system clock: `created_at` is on the engine's (a
        // manual clock in 2031 would keep it forever, one in 2020 expire
        // it at once), and a replay resets `next_attempt_at`.
        if rescan && message.next_attempt_at + wait_max < now {
            let reason = format!(
                "the person opened no page within {}h; replay it to keep it waiting",
                wait_max.as_hours()
            );
            dead(&self.store, message, &reason);
        }
    }
}

/// What a look reads the time from: attempts and retries run on the
/// system clock; quiet hours ([`Message::deferred_until`]) on the engine's
/// — the same clock, except under `--clock manual`, whose moves wake the
/// workers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clocks {
    pub(crate) system: Timestamp,
    pub(crate) engine: Timestamp,
}

/// Whether the contact policy still holds the message back (quiet hours).
pub(crate) fn held(message: &Message, engine_now: Timestamp) -> bool {
    message
        .deferred_until
        .is_some_and(|until| until > engine_now)
}

/// When the message may be attempted, on the system clock: its next
/// attempt, or later while it is held.
fn due_at(message: &Message, clocks: Clocks) -> Timestamp {
    match message.deferred_until {
        Some(until) if until > clocks.engine => message
            .next_attempt_at
            .max(clocks.system + clocks.engine.duration_until(until)),
        _ => message.next_attempt_at,
    }
}

/// The earliest end of quiet hours among the messages still held.
fn held_until(pending: &[Message], engine_now: Timestamp) -> Option<Timestamp> {
    pending
        .iter()
        .filter(|message| held(message, engine_now))
        .filter_map(|message| message.deferred_until)
        .min()
}

/// Where the next read of the queue starts. Scheduled messages come back
/// by themselves (a retry is due later), so the read starts at the first
/// pending one; recipient-paced ones were all offered (or are held), so it
/// starts after the last (a page opening sends them,
/// [`crate::in_app_delivery::catch_up`]; a rescan offers them again, and
/// the end of the earliest quiet hours read makes one).
fn next_from_seq(pending: &[Message], rules: &QueueRules, from_seq: u64) -> u64 {
    match rules.pace {
        Pace::Scheduled => pending.first().map_or(from_seq, |first| first.seq),
        Pace::Recipient { .. } => pending.last().map_or(from_seq, |last| last.seq + 1),
    }
}

/// The messages to attempt now: scheduled ones once their time has come,
/// recipient-paced ones whenever they are read — neither while the
/// contact policy holds them (quiet hours).
fn due(pending: &[Message], rules: &QueueRules, clocks: Clocks) -> Vec<Message> {
    pending
        .iter()
        .filter(|message| match rules.pace {
            Pace::Scheduled => due_at(message, clocks) <= clocks.system,
            Pace::Recipient { .. } => !held(message, clocks.engine),
        })
        .cloned()
        .collect()
}

/// Until the first pending message is due, at most the idle maximum.
fn sleep_until_due(pending: &[Message], rules: &QueueRules, clocks: Clocks) -> Duration {
    let next = pending.iter().map(|message| due_at(message, clocks)).min();
    let until = next.map_or(rules.idle_max, |at| {
        Duration::try_from(at.duration_since(clocks.system)).unwrap_or_default()
    });
    until.min(rules.idle_max)
}

/// One attempt on `/metrics`: its outcome and how long it took.
fn count(
    metrics: &DeliveryMetrics,
    destination: &DestinationRecord,
    message: &Message,
    outcome: &Outcome,
    settings: &DeliverySettings,
    started: Instant,
) {
    let status = match outcome {
        Outcome::Delivered => "delivered",
        Outcome::Disable => "gone",
        Outcome::Failed(_) => "dead",
        Outcome::Retry { .. } if message.attempts + 1 >= settings.max_attempts => "dead",
        Outcome::Retry { .. } => "retry",
        Outcome::Waiting => return,
    };
    let name = destination.name.clone();
    metrics
        .deliveries
        .get_or_create(&vec![
            ("destination", name.clone()),
            ("status", status.to_string()),
        ])
        .inc();
    metrics
        .delivery_seconds
        .get_or_create(&vec![("destination", name)])
        .observe(started.elapsed().as_secs_f64());
}

/// A test send (`POST /v1/destinations/{id}/test`): one attempt of a
/// message that is not stored, through the same path as every delivery
/// (signing, headers, address policy, SMTP). `Ok(())` when it was taken,
/// else why not (a category, never the raw error).
pub(crate) async fn test_attempt(
    client: &reqwest::Client,
    destination: &DestinationRecord,
    message: &Message,
    settings: &DeliverySettings,
) -> Result<(), String> {
    let hub = InAppHub::default(); // test sends never go to in-app pages
    match Destination::of(destination, client, &hub)
        .deliver(message, settings)
        .await
    {
        Outcome::Delivered => Ok(()),
        Outcome::Disable => Err("the endpoint answered 410 Gone".into()),
        Outcome::Retry { error, .. } | Outcome::Failed(error) => Err(error),
        Outcome::Waiting => Err("nobody took the message".into()),
    }
}

/// Marks a message delivered now (system clock).
pub(crate) fn delivered(message: &mut Message, now: Timestamp) {
    message.attempts += 1;
    message.status = MessageStatus::Delivered;
    message.delivered_at = Some(now);
    message.last_error = None;
}

/// Stores what an attempt came to: delivered, dead, or its next attempt.
fn record_attempt(
    store: &Store,
    mut message: Message,
    outcome: Outcome,
    settings: &DeliverySettings,
) {
    let now = Timestamp::now();
    match outcome {
        Outcome::Waiting => return, // not an attempt
        Outcome::Delivered => delivered(&mut message, now),
        Outcome::Failed(error) => {
            message.attempts += 1;
            message.status = MessageStatus::Dead;
            message.last_error = Some(error);
        }
        Outcome::Disable => {
            message.attempts += 1;
            message.status = MessageStatus::Dead;
            message.last_error =
                Some("the endpoint answered 410 Gone: destination disabled".into());
        }
        Outcome::Retry { error, after } => {
            message.attempts += 1;
            message.last_error = Some(error);
            if message.attempts >= settings.max_attempts {
                message.status = MessageStatus::Dead;
            } else {
                let delay =
                    after.unwrap_or_else(|| backoff(settings, message.attempts, &message.id));
                message.next_attempt_at = now + SignedDuration::try_from(delay).unwrap_or_default();
            }
        }
    }
    if let Err(error) = store.outbox.update(&message) {
        tracing::error!(%error, message = %message.id, "recording a delivery attempt failed");
    }
}

fn dead(store: &Store, mut message: Message, reason: &str) {
    message.status = MessageStatus::Dead;
    message.last_error = Some(reason.to_string());
    let _ = store.outbox.update(&message);
}

/// The delay before attempt `attempts + 1`: the retry schedule's step
/// (the last repeats), with ±20 % jitter so retries of many messages
/// spread.
pub fn backoff(settings: &DeliverySettings, attempts: u32, id: &str) -> Duration {
    let schedule = &settings.retry_schedule;
    let Some(last) = schedule.last() else {
        return Duration::from_secs(5);
    };
    let base = *schedule
        .get(attempts.saturating_sub(1) as usize)
        .unwrap_or(last);
    // Jitter from the id and attempt: spread, yet reproducible in tests.
    let hash = id
        .bytes()
        .chain(attempts.to_le_bytes())
        .fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3)
        });
    let jitter = 0.8 + 0.4 * (hash % 1_000) as f64 / 1_000.0;
    base.mul_f64(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(seq: u64, due_in_secs: i64, now: Timestamp) -> Message {
        Message {
            id: format!("msg_{seq}"),
            seq,
            destination: "dst_1".into(),
            journey: String::new(),
            purpose: None,
            channel: "webhook".into(),
            identifier: "user_id:u1".into(),
            event_seq: 0,
            payload: serde_json::json!({}),
            status: MessageStatus::Pending,
            attempts: 0,
            next_attempt_at: now + SignedDuration::from_secs(due_in_secs),
            last_error: None,
            created_at: now,
            deferred_until: None,
            delivered_at: None,
        }
    }

    /// Both clocks at `now` (the system clock's case).
    fn at(now: Timestamp) -> Clocks {
        Clocks {
            system: now,
            engine: now,
        }
    }

    fn rules(pace: Pace) -> QueueRules {
        QueueRules {
            take: 10,
            idle_max: Duration::from_secs(1),
            pace,
        }
    }

    /// A scheduled destination attempts only what is due and keeps reading
    /// from its first pending message (retries come back by themselves); a
    /// recipient-paced one offers everything it read and reads on after it.
    #[test]
    fn pace_decides_what_is_due_and_where_the_next_read_starts() {
        let now: Timestamp = "2030-01-01T12:00:00Z".parse().unwrap();
        let pending = vec![message(3, 30, now), message(5, -1, now), message(9, 0, now)];
        let scheduled = rules(Pace::Scheduled);
        let recipient = rules(Pace::Recipient {
            wait_max: SignedDuration::from_hours(1),
        });
        let seqs = |messages: Vec<Message>| messages.iter().map(|m| m.seq).collect::<Vec<_>>();
        let clocks = Clocks {
            system: now,
            engine: now,
        };
        assert_eq!(seqs(due(&pending, &scheduled, clocks)), [5, 9]);
        assert_eq!(seqs(due(&pending, &recipient, clocks)), [3, 5, 9]);
        assert_eq!(next_from_seq(&pending, &scheduled, 0), 3);
        assert_eq!(next_from_seq(&pending, &recipient, 0), 10);
        // An empty read keeps the position.
        assert_eq!(next_from_seq(&[], &scheduled, 7), 7);
        assert_eq!(next_from_seq(&[], &recipient, 7), 7);
    }

    #[test]
    fn sleeps_until_the_first_due_message_at_most_the_idle_maximum() {
        let now: Timestamp = "2030-01-01T12:00:00Z".parse().unwrap();
        let scheduled = rules(Pace::Scheduled);
        assert_eq!(
            sleep_until_due(&[], &scheduled, at(now)),
            Duration::from_secs(1)
        );
        let soon = vec![message(1, 30, now)];
        assert_eq!(
            sleep_until_due(&soon, &scheduled, at(now)),
            Duration::from_secs(1)
        );
        let mut sooner = message(2, 0, now);
        sooner.next_attempt_at = now + SignedDuration::from_millis(250);
        assert_eq!(
            sleep_until_due(&[sooner], &scheduled, at(now)),
            Duration::from_millis(250)
        );
    }

    /// Issue 13's defect: a message deferred by quiet hours is due for no
    /// destination before they end on the engine's clock — a manual one
    /// far from the system's here; the worker remembers when they end (a
    /// rescan then), so later messages are not held up behind it.
    #[test]
    fn quiet_hours_hold_a_message_on_the_engine_s_clock_for_every_pace() {
        let system: Timestamp = "2026-01-01T12:00:00Z".parse().unwrap();
        let engine: Timestamp = "2030-05-01T14:00:00Z".parse().unwrap();
        let ends = engine + SignedDuration::from_hours(9);
        let mut deferred = message(4, 0, system);
        deferred.deferred_until = Some(ends);
        let pending = vec![
            message(2, 0, system),
            deferred.clone(),
            message(6, 0, system),
        ];
        let recipient = rules(Pace::Recipient {
            wait_max: SignedDuration::from_hours(1),
        });
        let scheduled = rules(Pace::Scheduled);
        let seqs = |messages: Vec<Message>| messages.iter().map(|m| m.seq).collect::<Vec<_>>();
        let night = Clocks { system, engine };
        assert_eq!(seqs(due(&pending, &recipient, night)), [2, 6]);
        assert_eq!(seqs(due(&pending, &scheduled, night)), [2, 6]);
        assert_eq!(next_from_seq(&pending, &recipient, 0), 7);
        assert_eq!(held_until(&pending, night.engine), Some(ends));
        // Held: the worker sleeps (the idle maximum here; a manual clock's
        // move wakes it).
        assert_eq!(
            sleep_until_due(&[deferred.clone()], &scheduled, night),
            Duration::from_secs(1)
        );
        let morning = Clocks {
            system: system + SignedDuration::from_secs(1),
            engine: ends,
        };
        assert_eq!(seqs(due(&pending, &recipient, morning)), [2, 4, 6]);
        assert_eq!(seqs(due(&pending, &scheduled, morning)), [2, 4, 6]);
        assert_eq!(held_until(&pending, morning.engine), None);
    }

    #[test]
    fn backoff_follows_the_schedule_with_bounded_jitter() {
        let settings = DeliverySettings::default();
        for attempts in 1..=12 {
            let delay = backoff(&settings, attempts, "msg_x");
            let step = settings.retry_schedule[(attempts as usize - 1).min(8)];
            assert!(delay >= step.mul_f64(0.8) && delay <= step.mul_f64(1.2));
        }
        assert_eq!(
            backoff(&settings, 3, "msg_x"),
            backoff(&settings, 3, "msg_x")
        );
    }
}
