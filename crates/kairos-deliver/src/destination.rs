//! One destination as the worker loop sees it: what one attempt at one
//! message came to ([`Outcome`]), and how its queue is read
//! ([`QueueRules`]). The loop itself — the queue, retries and backoff, the
//! circuit breaker, dead letters, metrics — is written once, in
//! [`crate::worker`]; a kind of destination only says how to deliver.
//!
//! Kinds: a signed webhook POST ([`crate::webhook`]), an email over SMTP
//! ([`crate::email`]), an in-app message published to the person's open
//! pages ([`crate::in_app_delivery`]). Audience syncs are not a kind of
//! their own: their batches are webhook messages, made by the effects
//! stage ([`crate::audience_sync`]) and delivered like any other.

use std::time::Duration;

use jiff::SignedDuration;
use kairos_store::{DestinationRecord, Message};

use crate::DeliverySettings;
use crate::in_app::InAppHub;

/// What one attempt came to.
pub(crate) enum Outcome {
    Delivered,
    /// 410: the endpoint asks never to be called again; the destination
    /// is disabled until re-enabled through the API.
    Disable,
    /// Try again: after `after` if the endpoint said when
    /// (`Retry-After`), else on the retry schedule.
    Retry {
        error: String,
        after: Option<Duration>,
    },
    /// Retrying cannot help (a permanent SMTP refusal): a dead letter now.
    Failed(String),
    /// The recipient is not there to take it (nobody has a page open): not
    /// an attempt, not a failure; the message waits for them.
    Waiting,
}

/// How a destination's queue is read and its attempts paced.
pub(crate) struct QueueRules {
    /// Messages taken per look at the queue.
    pub take: usize,
    /// Longest sleep when nothing is due (a wake cuts it short).
    pub idle_max: Duration,
    pub pace: Pace,
}

/// Who decides when a message goes.
pub(crate) enum Pace {
    /// Kairos calls the endpoint when a message is due (`next_attempt_at`:
    /// backoff, `Retry-After`, quiet hours); attempts are counted and
    /// timed on `/metrics`, and failures open the circuit.
    Scheduled,
    /// The recipient comes for the message (a page opens): it is offered
    /// whenever the queue is read, and one that waited longer than
    /// `wait_max` (read at a rescan) becomes a dead letter.
    Recipient { wait_max: SignedDuration },
}

/// Webhooks and email: up to this many messages per look at the queue.
const SCHEDULED_TAKE: usize = 100;
/// Webhooks and email: at most this long asleep, so a message that falls
/// due is attempted within about a second.
const SCHEDULED_IDLE_MAX: Duration = Duration::from_secs(1);
/// In-app: publishing is an in-memory hand-over, so more at a time.
const RECIPIENT_TAKE: usize = 500;
/// In-app: a page is waiting on the other end; decided messages should
/// reach it within a fifth of a second even if no wake arrives.
const RECIPIENT_IDLE_MAX: Duration = Duration::from_millis(200);

/// A destination ready to deliver: its record with what its kind needs.
pub(crate) enum Destination<'a> {
    Webhook {
        record: &'a DestinationRecord,
        client: &'a reqwest::Client,
    },
    Email {
        record: &'a DestinationRecord,
    },
    InApp {
        hub: &'a InAppHub,
    },
}

impl<'a> Destination<'a> {
    /// The destination a record describes (any kind but `email` and
    /// `in_app` is a webhook, as the worker always treated it).
    pub fn of(
        record: &'a DestinationRecord,
        client: &'a reqwest::Client,
        hub: &'a InAppHub,
    ) -> Destination<'a> {
        match record.kind.as_str() {
            "email" => Destination::Email { record },
            "in_app" => Destination::InApp { hub },
            _ => Destination::Webhook { record, client },
        }
    }

    /// One attempt at `message`.
    pub async fn deliver(&self, message: &Message, settings: &DeliverySettings) -> Outcome {
        match self {
            Destination::Webhook { record, client } => {
                crate::webhook::attempt(client, record, message, settings).await
            }
            Destination::Email { record } => crate::email::attempt(record, message, settings).await,
            Destination::InApp { hub } => crate::in_app_delivery::attempt(hub, message),
        }
    }

    pub fn rules(&self) -> QueueRules {
        match self {
            Destination::Webhook { .. } | Destination::Email { .. } => QueueRules {
                take: SCHEDULED_TAKE,
                idle_max: SCHEDULED_IDLE_MAX,
                pace: Pace::Scheduled,
            },
            Destination::InApp { .. } => QueueRules {
                take: RECIPIENT_TAKE,
                idle_max: RECIPIENT_IDLE_MAX,
                pace: Pace::Recipient {
                    wait_max: crate::in_app_delivery::IN_APP_WAIT_MAX,
                },
            },
        }
    }
}
