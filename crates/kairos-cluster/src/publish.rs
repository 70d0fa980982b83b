//! Publishing a batch of events to their partition's stream (§3.1).
//!
//! Every event goes out with `Nats-Msg-Id` = its dedup id; all publishes of
//! a batch are pipelined, and the call returns only when each one has its
//! ack — the stream stored it on a quorum of its replicas (or recognised it
//! as a duplicate within the window). A publish that fails or times out is
//! sent again with the same id until [`PUBLISH_DEADLINE`]: during a leader
//! election the request in flight times out or finds no responder, and the
//! retry lands on the new leader; an attempt that did land is recognised by
//! its id, so nothing is stored twice.

use std::time::Duration;

use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use tokio::time::{Instant, sleep};

use crate::connect::Cluster;
use crate::setup::events_subject;
use crate::{Error, RECEIVED_HEADER};

/// `cluster.publish_deadline`: one leader election (4–9 s by nats-server's
/// Raft timeouts, 4.2–5.5 s measured) plus its campaign fits; after it the
/// collection request answers 503 and the client retries.
pub const PUBLISH_DEADLINE: Duration = Duration::from_secs(15);

/// Pause between two rounds of retries, so a cluster without a leader is not
/// hammered with requests that cannot succeed yet.
pub const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Events in one call: a collection request holds at most this many (the
/// one-node batch limit), and each holds an ack slot until it is answered.
pub const BATCH_EVENTS_MAX: usize = 1_000;

/// One event as published: the log record bytes (sealed), its dedup id and
/// its `receivedAt`.
#[derive(Clone, Debug)]
pub struct EventMessage {
    /// Hex of the 128-bit dedup hash of (source, messageId): the same retry
    /// is the same id on every node (§3.1).
    pub dedup_id: String,
    pub received_ms: i64,
    pub payload: Bytes,
}

/// What the stream answered for one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventAck {
    /// The event's position in `KAIROS_EVENTS_<p>` (the first copy's, for a
    /// duplicate).
    pub sequence: u64,
    /// The stream had this `Nats-Msg-Id` within its window: not stored again.
    pub duplicate: bool,
}

/// Publishes `events` to `kairos.events.<partition>` and returns one ack per
/// event, in order.
pub async fn publish_events(
    cluster: &Cluster,
    partition: u32,
    events: &[EventMessage],
) -> Result<Vec<EventAck>, Error> {
    if events.len() > BATCH_EVENTS_MAX {
        return Err(Error::TooMany {
            count: events.len(),
            limit: BATCH_EVENTS_MAX,
            why: "events in one publish batch; split the request",
        });
    }
    let subject = events_subject(partition);
    let deadline = Instant::now() + PUBLISH_DEADLINE;
    let mut acks: Vec<Option<EventAck>> = vec![None; events.len()];
    loop {
        let last_error = publish_round(cluster, &subject, events, &mut acks).await?;
        let Some(last_error) = last_error else {
            return Ok(acks
                .into_iter()
                .map(|ack| ack.expect("every event acked"))
                .collect());
        };
        if Instant::now() + RETRY_PAUSE >= deadline {
            return Err(Error::PublishDeadline {
                subject,
                deadline: PUBLISH_DEADLINE,
                last_error,
            });
        }
        sleep(RETRY_PAUSE).await;
    }
}

/// Sends every event without an ack yet, then waits for those acks. Returns
/// the last error if some are still missing, and fails at once on an error
/// a retry cannot cure (a message over the server's size limit).
async fn publish_round(
    cluster: &Cluster,
    subject: &str,
    events: &[EventMessage],
    acks: &mut [Option<EventAck>],
) -> Result<Option<String>, Error> {
    let mut pending: Vec<(usize, PublishAckFuture)> = Vec::new();
    let mut last_error = None;
    for (index, event) in events.iter().enumerate() {
        if acks[index].is_some() {
            continue;
        }
        match cluster
            .jetstream
            .send_publish(subject.to_string(), message(event))
            .await
        {
            Ok(future) => pending.push((index, future)),
            Err(error) if retryable(error.kind()) => last_error = Some(error.to_string()),
            Err(error) => return Err(Error::jetstream(format!("publish to {subject}"), error)),
        }
    }
    for (index, future) in pending {
        match future.await {
            Ok(ack) => {
                acks[index] = Some(EventAck {
                    sequence: ack.sequence,
                    duplicate: ack.duplicate,
                })
            }
            Err(error) if retryable(error.kind()) => last_error = Some(error.to_string()),
            Err(error) => return Err(Error::jetstream(format!("publish to {subject}"), error)),
        }
    }
    Ok(last_error)
}

fn message(event: &EventMessage) -> PublishMessage {
    PublishMessage::build()
        .message_id(&event.dedup_id)
        .header(RECEIVED_HEADER, event.received_ms.to_string().as_str())
        .payload(event.payload.clone())
}

/// Errors a retry with the same id can cure: a lost or late ack, no leader
/// yet ("no responders" is reported as stream not found), a dropped
/// connection.
fn retryable(kind: PublishErrorKind) -> bool {
    matches!(
        kind,
        PublishErrorKind::TimedOut
            | PublishErrorKind::StreamNotFound
            | PublishErrorKind::BrokenPipe
            | PublishErrorKind::Other
    )
}
