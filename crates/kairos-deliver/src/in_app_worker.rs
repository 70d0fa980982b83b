//! Delivery to an in-app destination. In-app delivery is per person: a
//! message goes to the person's open pages, and nobody being on the site is
//! not a failure — the message waits (no attempt counted, no circuit
//! breaker) until a page of theirs opens ([`catch_up`]) or it expires
//! after [`IN_APP_WAIT_MAX`]. So one visitor's message never waits behind
//! thousands addressed to people who are away.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use kairos_store::{Message, MessageStatus, Store};
use tokio::sync::Notify;

use crate::in_app::InAppHub;

/// Messages read per look at the queue.
const TAKE: usize = 500;
/// How long a message waits for its person to open a page.
pub const IN_APP_WAIT_MAX: SignedDuration = SignedDuration::from_hours(7 * 24);
/// How often the whole queue is read again (replayed dead letters, expiry).
const RESCAN_EVERY: Duration = Duration::from_secs(5);
/// A person's messages looked at when their page opens.
const CATCH_UP_MAX: usize = 1_000;

pub(crate) async fn run(
    store: Arc<Store>,
    destination_id: String,
    wake: Arc<Notify>,
    hub: InAppHub,
) {
    // Messages below `from_seq` were seen: each waits for its person's page.
    let mut from_seq = 0u64;
    let mut rescan_at = Instant::now();
    loop {
        if store.outbox.destination(&destination_id).is_none() {
            return; // deleted
        }
        let rescan = Instant::now() >= rescan_at;
        if rescan {
            from_seq = 0;
            rescan_at = Instant::now() + RESCAN_EVERY;
        }
        let pending = store
            .outbox
            .pending(&destination_id, from_seq, TAKE)
            .unwrap_or_default();
        let Some(last) = pending.last() else {
            let _ = tokio::time::timeout(Duration::from_millis(200), wake.notified()).await;
            continue;
        };
        from_seq = last.seq + 1;
        let now = Timestamp::now();
        for message in pending {
            if store.outbox.is_erased(&message.identifier) {
                continue;
            }
            if hub.publish(&message.identifier, &message.payload) {
                delivered(&store, message);
            } else if rescan && message.next_attempt_at + IN_APP_WAIT_MAX < now {
                // Both on the system clock: `created_at` is on the engine's
                // (a manual clock in 2031 would keep it forever, one in
                // 2020 expire it at once), and a replay resets this one.
                expired(&store, message);
            }
        }
    }
}

/// A page of the person known by `identifiers` just opened: their waiting
/// in-app messages go to it at once. Returns how many went.
pub fn catch_up(store: &Store, hub: &InAppHub, identifiers: &[String]) -> usize {
    let Ok(messages) = store.outbox.by_identifiers(identifiers, CATCH_UP_MAX) else {
        return 0;
    };
    let mut sent = 0;
    // Oldest first, as they were decided.
    for message in messages.into_iter().rev() {
        let waiting = message.status == MessageStatus::Pending && message.channel == "in_app";
        if waiting && hub.publish(&message.identifier, &message.payload) {
            delivered(store, message);
            sent += 1;
        }
    }
    sent
}

fn delivered(store: &Store, mut message: Message) {
    message.attempts += 1;
    message.status = MessageStatus::Delivered;
    message.delivered_at = Some(Timestamp::now());
    message.last_error = None;
    if let Err(error) = store.outbox.update(&message) {
        tracing::error!(%error, message = %message.id, "recording an in-app delivery failed");
    }
}

fn expired(store: &Store, mut message: Message) {
    message.status = MessageStatus::Dead;
    message.last_error = Some(format!(
        "the person opened no page within {}h; replay it to keep it waiting",
        IN_APP_WAIT_MAX.as_hours()
    ));
    let _ = store.outbox.update(&message);
}
