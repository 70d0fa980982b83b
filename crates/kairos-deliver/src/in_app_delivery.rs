//! Delivery to an in-app destination. In-app delivery is per person: a
//! message goes to the person's open pages, and nobody being on the site is
//! not a failure — the message waits ([`Outcome::Waiting`]: no attempt
//! counted, no circuit breaker) until a page of theirs opens
//! ([`catch_up`]) or it expires after [`IN_APP_WAIT_MAX`]. A message the
//! contact policy deferred (quiet hours) is offered to no page before its
//! time on the engine's clock. So one
//! visitor's message never waits behind thousands addressed to people who
//! are away. The loop around it is the one every destination shares
//! ([`crate::worker`], paced by the recipient).

use jiff::{SignedDuration, Timestamp};
use kairos_store::{Message, MessageStatus, Store};

use crate::destination::Outcome;
use crate::in_app::InAppHub;

/// How long a message waits for its person to open a page.
pub const IN_APP_WAIT_MAX: SignedDuration = SignedDuration::from_hours(7 * 24);
/// A person's messages looked at when their page opens.
const CATCH_UP_MAX: usize = 1_000;

/// One attempt: the message goes to every open page of its person.
pub(crate) fn attempt(hub: &InAppHub, message: &Message) -> Outcome {
    if hub.publish(&message.identifier, &message.payload) {
        Outcome::Delivered
    } else {
        Outcome::Waiting
    }
}

/// A page of the person known by `identifiers` just opened: their waiting
/// in-app messages go to it at once — except those the contact policy
/// still holds at `engine_now` (quiet hours; the worker offers them when
/// they end). Returns how many went.
pub fn catch_up(
    store: &Store,
    hub: &InAppHub,
    identifiers: &[String],
    engine_now: Timestamp,
) -> usize {
    let Ok(messages) = store.outbox.by_identifiers(identifiers, CATCH_UP_MAX) else {
        return 0;
    };
    let mut sent = 0;
    // Oldest first, as they were decided.
    for mut message in messages.into_iter().rev() {
        let waiting = message.status == MessageStatus::Pending
            && message.channel == "in_app"
            && !crate::worker::held(&message, engine_now);
        if waiting && hub.publish(&message.identifier, &message.payload) {
            crate::worker::delivered(&mut message, Timestamp::now());
            if let Err(error) = store.outbox.update(&message) {
                tracing::error!(%error, message = %message.id, "recording an in-app delivery failed");
            }
            sent += 1;
        }
    }
    sent
}
