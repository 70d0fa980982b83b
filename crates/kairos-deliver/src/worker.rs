//! Delivery to one webhook destination: its own task, its own queue, so a
//! failing or hanging endpoint never delays another destination.
//!
//! Each pending message is POSTed with Standard Webhooks headers (the same
//! `webhook-id` on every attempt, a fresh timestamp and signature); 2xx
//! delivers it; 410 disables the destination (its messages become dead
//! letters); 429, 502, 503 and 504 honour `Retry-After`; other failures are
//! retried on an exponential schedule with jitter until the attempts run
//! out (then the message is a dead letter, replayable through the API).
//! After several failures in a row the destination's circuit opens: no
//! attempts until it cools down.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use kairos_store::{DestinationRecord, Message, MessageStatus, Store};
use tokio::sync::Notify;

use crate::DeliverySettings;
use crate::address_policy;
use crate::email::{self, RenderedEmail, SmtpOutcome};
use crate::endpoint;
use crate::failure;
use crate::in_app::InAppHub;
use crate::signing::sign_all;

/// Messages taken per look at the queue.
const TAKE: usize = 100;
/// Failures in a row that open the circuit.
const BREAKER_FAILURES: u32 = 5;
/// How often the queue is read from its start again.
const RESCAN_EVERY: Duration = Duration::from_secs(5);

/// What one attempt came to.
enum Outcome {
    Delivered,
    /// 410: the endpoint asks never to be called again.
    Gone,
    Retry {
        error: String,
        after: Option<Duration>,
    },
    /// Retrying cannot help (a permanent SMTP refusal): a dead letter now.
    Failed(String),
}

pub(crate) async fn run(
    store: Arc<Store>,
    destination_id: String,
    settings: DeliverySettings,
    wake: Arc<Notify>,
    client: reqwest::Client,
    hub: InAppHub,
    metrics: crate::metrics::DeliveryMetrics,
) {
    if store
        .outbox
        .destination(&destination_id)
        .is_some_and(|destination| destination.kind == "in_app")
    {
        return crate::in_app_worker::run(store, destination_id, wake, hub).await;
    }
    let mut failures_in_row = 0u32;
    // Messages before this sequence number are known to be done; a full
    // rescan now and then picks up replayed dead letters.
    let mut from_seq = 0u64;
    let mut rescan_at = Instant::now() + RESCAN_EVERY;
    loop {
        let Some(destination) = store.outbox.destination(&destination_id) else {
            return; // deleted
        };
        if Instant::now() >= rescan_at {
            from_seq = 0;
            rescan_at = Instant::now() + RESCAN_EVERY;
        }
        let pending = store
            .outbox
            .pending(&destination.id, from_seq, TAKE)
            .unwrap_or_default();
        if let Some(first) = pending.first() {
            from_seq = first.seq;
        }
        if destination.disabled.is_some() {
            for message in pending {
                dead(
                    &store,
                    message,
                    "the destination is disabled (it answered 410 Gone)",
                );
            }
            wait(&wake, Duration::from_secs(1)).await;
            continue;
        }
        let now = Timestamp::now();
        let due: Vec<Message> = pending
            .iter()
            .filter(|message| message.next_attempt_at <= now)
            .cloned()
            .collect();
        if due.is_empty() {
            let next = pending.iter().map(|message| message.next_attempt_at).min();
            let until = next.map_or(Duration::from_secs(1), |at| {
                Duration::try_from(at.duration_since(now)).unwrap_or_default()
            });
            let until = until.min(Duration::from_secs(1));
            wait(&wake, until).await;
            continue;
        }
        for message in due {
            if store.outbox.is_erased(&message.identifier) {
                continue; // erased since it was read: never sent
            }
            let started = Instant::now();
            let outcome = attempt(&client, &destination, &message, &settings).await;
            count(
                &metrics,
                &destination,
                &message,
                &outcome,
                &settings,
                started,
            );
            match outcome {
                Outcome::Delivered => failures_in_row = 0,
                _ => failures_in_row += 1,
            }
            let gone = matches!(outcome, Outcome::Gone);
            record(&store, message, outcome, &settings);
            if gone {
                let reason = format!(
                    "the endpoint answered 410 Gone; once it is back, re-enable it with PATCH /v1/destinations/{} {{\"enabled\": true}}",
                    destination.id
                );
                let _ = store.outbox.disable_destination(&destination.id, &reason);
                break;
            }
            if failures_in_row >= BREAKER_FAILURES {
                // Circuit open: let the endpoint recover before trying again.
                tracing::warn!(destination = %destination.name, "circuit open after {failures_in_row} failures");
                tokio::time::sleep(backoff(&settings, 1, &destination.id) * 2).await;
                failures_in_row = BREAKER_FAILURES - 1; // half open: one more try
                break;
            }
        }
    }
}

/// One attempt on `/metrics`: its outcome and how long it took.
fn count(
    metrics: &crate::metrics::DeliveryMetrics,
    destination: &DestinationRecord,
    message: &Message,
    outcome: &Outcome,
    settings: &DeliverySettings,
    started: Instant,
) {
    let status = match outcome {
        Outcome::Delivered => "delivered",
        Outcome::Gone => "gone",
        Outcome::Failed(_) => "dead",
        Outcome::Retry { .. } if message.attempts + 1 >= settings.max_attempts => "dead",
        Outcome::Retry { .. } => "retry",
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

async fn wait(wake: &Notify, at_most: Duration) {
    let _ = tokio::time::timeout(at_most, wake.notified()).await;
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
    match attempt(client, destination, message, settings).await {
        Outcome::Delivered => Ok(()),
        Outcome::Gone => Err("the endpoint answered 410 Gone".into()),
        Outcome::Retry { error, .. } | Outcome::Failed(error) => Err(error),
    }
}

async fn attempt(
    client: &reqwest::Client,
    destination: &DestinationRecord,
    message: &Message,
    settings: &DeliverySettings,
) -> Outcome {
    if destination.kind == "email" {
        return attempt_email(destination, message, settings).await;
    }
    let url = match endpoint::webhook_url(&destination.url) {
        Ok(url) => url,
        Err(error) => return Outcome::Failed(error),
    };
    // An IP literal is connected to without resolution: check it here
    // (names are checked by the client's resolver, after resolution).
    if let Err(not_allowed) = address_policy::check_url(&url, settings.addresses) {
        tracing::warn!(destination = %destination.name, %not_allowed, "delivery refused");
        return Outcome::Failed(failure::NOT_ALLOWED.into());
    }
    let body = serde_json::to_vec(&message.payload).unwrap_or_default();
    let now = Timestamp::now();
    let timestamp = now.as_second();
    let secrets = destination.signing_secrets(now);
    let signature = match sign_all(&secrets, &message.id, timestamp, &body) {
        Ok(signature) => signature,
        Err(error) => {
            return Outcome::Retry { error, after: None };
        }
    };
    let mut request = client.post(url);
    // The destination's own headers first: the protocol's below win.
    for (name, value) in &destination.headers {
        request = request.header(name, value);
    }
    let request = request
        .timeout(settings.timeout)
        .header("content-type", "application/json")
        .header("user-agent", "Kairos-Webhooks/1")
        .header("webhook-id", &message.id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body);
    match request.send().await {
        Ok(response) if response.status().is_success() => Outcome::Delivered,
        Ok(response) if response.status().as_u16() == 410 => Outcome::Gone,
        Ok(response) => {
            let status = response.status().as_u16();
            let after = matches!(status, 429 | 502 | 503 | 504)
                .then(|| retry_after(response.headers()))
                .flatten();
            Outcome::Retry {
                error: format!("the endpoint answered {status}"),
                after,
            }
        }
        Err(error) if error.is_timeout() => Outcome::Retry {
            error: format!("timed out: no answer within {:?}", settings.timeout),
            after: None,
        },
        Err(error) => {
            // The detail (which host, which port, what it said) is for the
            // operator's log; API callers read a category.
            tracing::warn!(destination = %destination.name, error = %failure::chain(&error), "delivery attempt failed");
            Outcome::Retry {
                error: format!(
                    "could not reach the endpoint: {}",
                    failure::category(&error)
                ),
                after: None,
            }
        }
    }
}

async fn attempt_email(
    destination: &DestinationRecord,
    message: &Message,
    settings: &DeliverySettings,
) -> Outcome {
    let Ok(email) = serde_json::from_value::<RenderedEmail>(message.payload.clone()) else {
        return Outcome::Failed("the stored message is not an email".into());
    };
    let from = destination.from.as_deref().unwrap_or_default();
    match email::send(&destination.url, from, &email, &message.id, settings).await {
        SmtpOutcome::Sent => Outcome::Delivered,
        SmtpOutcome::Transient(error) => Outcome::Retry { error, after: None },
        SmtpOutcome::Permanent(error) => Outcome::Failed(error),
    }
}

/// `Retry-After` in seconds (HTTP dates are not worth the parser).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers
        .get("retry-after")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds.min(24 * 3600)))
}

fn record(store: &Store, mut message: Message, outcome: Outcome, settings: &DeliverySettings) {
    let now = Timestamp::now();
    message.attempts += 1;
    match outcome {
        Outcome::Delivered => {
            message.status = MessageStatus::Delivered;
            message.delivered_at = Some(now);
            message.last_error = None;
        }
        Outcome::Failed(error) => {
            message.status = MessageStatus::Dead;
            message.last_error = Some(error);
        }
        Outcome::Gone => {
            message.status = MessageStatus::Dead;
            message.last_error =
                Some("the endpoint answered 410 Gone: destination disabled".into());
        }
        Outcome::Retry { error, after } => {
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
