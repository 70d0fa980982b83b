//! Partition leases in the `kairos_leases` bucket (docs/cluster.md §4.2).
//!
//! Key `p.<p>` holds `{node, holder}`; the key's *revision* (its sequence in
//! the bucket's stream) is the lease's identity. Every write is a
//! compare-and-set on the revision the writer last saw
//! (`Nats-Expected-Last-Subject-Sequence`), carries a per-message TTL
//! (`Nats-TTL`), and the bucket's stream leader deletes the key — leaving a
//! marker — when the TTL runs out without a renewal. So:
//!
//! - acquire succeeds only on a free key (absent, or a marker), and of two
//!   nodes racing for it exactly one wins;
//! - renew succeeds only while nobody else wrote the key: a renewal refused
//!   with `wrong last sequence` means the lease is lost;
//! - a holder that cannot get a renewal confirmed stops writing
//!   [`PAUSE_AFTER`] after it *sent* its last confirmed renewal, before the
//!   server can expire the key ([`Lease::may_write`]).
//!
//! Timing only decides when a partition moves; safety rests on the chains
//! ([`crate::chain`]), which refuse a deposed owner's writes.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::Duration;

use async_nats::header::{NATS_MARKER_REASON, NATS_MESSAGE_TTL};
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::{PublishMessage, StreamMessage};
use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::connect::Cluster;
use crate::setup::{LEASES_BUCKET, bucket_stream, bucket_subject};
use crate::{Error, WRITE_ID_HEADER};

/// Longer than the lease bucket's leader election (4–9 s by nats-server's
/// Raft timeouts, 4.2–5.5 s measured) plus a renewal: a NATS server's death
/// must not expire every lease it led.
pub const LEASE_TTL: Duration = Duration::from_secs(15);
/// Many renewals fit in one TTL.
pub const RENEW_EVERY: Duration = Duration::from_secs(1);
/// The owner stops writing when its last confirmed renewal was sent longer
/// ago than this: 4 s of margin before the server can expire the key.
pub const PAUSE_AFTER: Duration = Duration::from_secs(11);

/// KV operation header the client's bucket API uses for deletes.
const KV_OPERATION_HEADER: &str = "KV-Operation";

/// The three lease timings; [`Default`] is the production set above.
/// Tests shorten them (the relations between them are checked).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseTimings {
    pub ttl: Duration,
    pub renew_every: Duration,
    pub pause_after: Duration,
}

impl Default for LeaseTimings {
    fn default() -> Self {
        LeaseTimings {
            ttl: LEASE_TTL,
            renew_every: RENEW_EVERY,
            pause_after: PAUSE_AFTER,
        }
    }
}

impl LeaseTimings {
    /// Checks what the argument of §4.2 needs: whole seconds (the server's
    /// TTL unit), renewals well inside the pause, the pause before expiry.
    pub fn new(ttl: Duration, renew_every: Duration, pause_after: Duration) -> Result<Self, Error> {
        if ttl.as_secs() == 0 || ttl.subsec_nanos() != 0 {
            return Err(Error::Config(format!(
                "lease ttl {ttl:?}: must be whole seconds, at least 1 s (Nats-TTL's unit)"
            )));
        }
        if !(renew_every < pause_after && pause_after < ttl) {
            return Err(Error::Config(format!(
                "lease timings: need renew_every ({renew_every:?}) < pause_after ({pause_after:?}) < ttl ({ttl:?})"
            )));
        }
        Ok(LeaseTimings {
            ttl,
            renew_every,
            pause_after,
        })
    }
}

/// The value of a lease key.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
struct LeaseValue {
    node: String,
    /// Unique per acquisition: tells this holder's writes from those of an
    /// earlier or later acquisition by the same node.
    holder: String,
}

/// A lease this node holds.
#[derive(Clone, Debug)]
pub struct Lease {
    pub partition: u32,
    pub node: String,
    /// The revision of the acquiring write: names this tenure (takeover
    /// records carry it).
    pub epoch: u64,
    /// The revision of the last write of this holder.
    pub revision: u64,
    holder: String,
    /// When the last *confirmed* write was sent (monotonic clock).
    confirmed_sent: Instant,
    pause_after: Duration,
}

impl Lease {
    /// Whether the stages of the partition may still write: the last
    /// confirmed renewal was sent less than `pause_after` ago.
    pub fn may_write(&self) -> bool {
        self.confirmed_sent.elapsed() < self.pause_after
    }
}

/// What the key of a partition says now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseState {
    /// Never held, expired (marker) or released: acquire expects `revision`.
    Free {
        revision: u64,
    },
    Held {
        node: String,
        revision: u64,
    },
}

/// The lease bucket of one cluster.
#[derive(Clone, Debug)]
pub struct Leases {
    cluster: Cluster,
    stream: Stream<()>,
    timings: LeaseTimings,
}

impl Leases {
    /// The bucket must exist ([`crate::ensure_layout`]).
    pub async fn open(cluster: &Cluster, timings: LeaseTimings) -> Result<Leases, Error> {
        let name = bucket_stream(LEASES_BUCKET);
        let stream = cluster
            .jetstream
            .get_stream_no_info(&name)
            .await
            .map_err(|error| Error::jetstream(format!("opening {name}"), error))?;
        Ok(Leases {
            cluster: cluster.clone(),
            stream,
            timings,
        })
    }

    pub fn timings(&self) -> LeaseTimings {
        self.timings
    }

    /// Reads the key of `partition` from the stream leader.
    pub async fn state(&self, partition: u32) -> Result<LeaseState, Error> {
        Ok(match self.last(partition).await? {
            None => LeaseState::Free { revision: 0 },
            Some(message) if is_free_marker(&message) => LeaseState::Free {
                revision: message.sequence,
            },
            Some(message) => LeaseState::Held {
                node: decode(&message).map(|value| value.node).unwrap_or_default(),
                revision: message.sequence,
            },
        })
    }

    /// Takes the lease of a free partition; [`Error::LeaseHeld`] if another
    /// holder has it (or wins the race for it).
    pub async fn acquire(&self, partition: u32, node: &str) -> Result<Lease, Error> {
        let expected = match self.state(partition).await? {
            LeaseState::Free { revision } => revision,
            LeaseState::Held { node, revision } => return Err(held(partition, node, revision)),
        };
        let value = LeaseValue {
            node: node.to_string(),
            holder: format!("{node}/{:016x}", RandomState::new().hash_one(partition)),
        };
        let sent = Instant::now();
        match self.write(partition, &value, expected).await {
            Ok(revision) => Ok(Lease {
                partition,
                node: node.to_string(),
                epoch: revision,
                revision,
                holder: value.holder,
                confirmed_sent: sent,
                pause_after: self.timings.pause_after,
            }),
            Err(PublishErrorKind::WrongLastSequence) => match self.state(partition).await? {
                LeaseState::Held { node, revision } => Err(held(partition, node, revision)),
                LeaseState::Free { revision } => Err(held(
                    partition,
                    "another node (since released)".into(),
                    revision,
                )),
            },
            Err(kind) => Err(Error::jetstream(format!("lease p.{partition}"), kind)),
        }
    }

    /// Extends the lease by one TTL. [`Error::LeaseLost`]: someone else wrote
    /// the key (drop the partition without writing);
    /// [`Error::LeaseUnconfirmed`]: no answer (keep trying; stop writing
    /// once [`Lease::may_write`] says so).
    pub async fn renew(&self, lease: &mut Lease) -> Result<(), Error> {
        let value = LeaseValue {
            node: lease.node.clone(),
            holder: lease.holder.clone(),
        };
        let sent = Instant::now();
        match self.write(lease.partition, &value, lease.revision).await {
            Ok(revision) => {
                lease.revision = revision;
                lease.confirmed_sent = sent;
                Ok(())
            }
            Err(PublishErrorKind::WrongLastSequence) => self.adopt_or_lose(lease).await,
            Err(kind) => Err(Error::LeaseUnconfirmed {
                partition: lease.partition,
                detail: kind.to_string(),
                pause_after: self.timings.pause_after,
            }),
        }
    }

    /// Gives the lease up at once (rolling restart, rebalance): the next
    /// owner need not wait for the TTL.
    pub async fn release(&self, lease: Lease) -> Result<(), Error> {
        let message = PublishMessage::build()
            .header(KV_OPERATION_HEADER, "DEL")
            .header(WRITE_ID_HEADER, lease.holder.as_str())
            .expected_last_subject_sequence(lease.revision);
        let subject = bucket_subject(LEASES_BUCKET, &key(lease.partition));
        match publish(&self.cluster, subject, message).await {
            Ok(_) => Ok(()),
            Err(PublishErrorKind::WrongLastSequence) => Err(Error::LeaseLost {
                partition: lease.partition,
                revision: lease.revision,
            }),
            Err(kind) => Err(Error::jetstream(
                format!("releasing p.{}", lease.partition),
                kind,
            )),
        }
    }

    /// A renewal refused on the revision: either an earlier renewal of ours
    /// landed without its ack reaching us (adopt its revision), or the key
    /// is someone else's now.
    async fn adopt_or_lose(&self, lease: &mut Lease) -> Result<(), Error> {
        let last = self.last(lease.partition).await?;
        match last {
            Some(message) if !is_free_marker(&message) && written_by(&message, &lease.holder) => {
                lease.revision = message.sequence;
                Ok(())
            }
            _ => Err(Error::LeaseLost {
                partition: lease.partition,
                revision: lease.revision,
            }),
        }
    }

    async fn write(
        &self,
        partition: u32,
        value: &LeaseValue,
        expected: u64,
    ) -> Result<u64, PublishErrorKind> {
        let payload = serde_json::to_vec(value).expect("a lease value serializes");
        let message = PublishMessage::build()
            .payload(payload.into())
            .header(
                NATS_MESSAGE_TTL,
                self.timings.ttl.as_secs().to_string().as_str(),
            )
            .header(WRITE_ID_HEADER, value.holder.as_str())
            .expected_last_subject_sequence(expected);
        let subject = bucket_subject(LEASES_BUCKET, &key(partition));
        publish(&self.cluster, subject, message).await
    }

    async fn last(&self, partition: u32) -> Result<Option<StreamMessage>, Error> {
        let subject = bucket_subject(LEASES_BUCKET, &key(partition));
        match self.stream.get_last_raw_message_by_subject(&subject).await {
            Ok(message) => Ok(Some(message)),
            Err(error) if error.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(error) => Err(Error::jetstream(format!("reading {subject}"), error)),
        }
    }
}

/// The key of a partition's lease.
pub fn key(partition: u32) -> String {
    format!("p.{partition}")
}

/// One publish with its ack; the error kind is what callers branch on.
pub(crate) async fn publish(
    cluster: &Cluster,
    subject: String,
    message: PublishMessage,
) -> Result<u64, PublishErrorKind> {
    let future = cluster
        .jetstream
        .send_publish(subject, message)
        .await
        .map_err(|error| error.kind())?;
    future
        .await
        .map(|ack| ack.sequence)
        .map_err(|error| error.kind())
}

fn held(partition: u32, holder: String, revision: u64) -> Error {
    Error::LeaseHeld {
        partition,
        holder,
        revision,
    }
}

/// An expiry marker (`Nats-Marker-Reason`) or a delete/purge.
fn is_free_marker(message: &StreamMessage) -> bool {
    message.headers.get(NATS_MARKER_REASON).is_some()
        || message
            .headers
            .get(KV_OPERATION_HEADER)
            .is_some_and(|operation| matches!(operation.as_str(), "DEL" | "PURGE"))
}

fn written_by(message: &StreamMessage, holder: &str) -> bool {
    message
        .headers
        .get(WRITE_ID_HEADER)
        .is_some_and(|value| value.as_str() == holder)
}

fn decode(message: &StreamMessage) -> Option<LeaseValue> {
    serde_json::from_slice(&message.payload).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_timings_keep_the_pause_before_the_expiry() {
        assert_eq!(
            LeaseTimings::default(),
            LeaseTimings::new(LEASE_TTL, RENEW_EVERY, PAUSE_AFTER).unwrap()
        );
        let second = Duration::from_secs(1);
        assert!(
            LeaseTimings::new(Duration::from_millis(1_500), second / 4, second).is_err(),
            "whole seconds"
        );
        assert!(
            LeaseTimings::new(2 * second, second, second).is_err(),
            "renew inside the pause"
        );
        assert!(
            LeaseTimings::new(2 * second, second / 4, 2 * second).is_err(),
            "pause before expiry"
        );
    }
}
