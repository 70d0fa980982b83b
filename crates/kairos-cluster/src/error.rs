//! The crate's errors: each says what went wrong and what to do about it.

use std::time::Duration;

/// What a cluster operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("configuration: {0}")]
    Config(String),

    #[error(
        "could not connect to NATS at {servers}: {detail}; check that the servers run with JetStream enabled and that cluster.servers lists their client URLs"
    )]
    Connect { servers: String, detail: String },

    #[error(
        "stream {stream} already exists with another configuration ({differences}); Kairos never changes an existing stream: create the cluster with the settings it was made with (cluster.partitions, cluster.replicas), or delete the stream if its data may go"
    )]
    StreamConflict { stream: String, differences: String },

    #[error("JetStream refused {what}: {detail}")]
    JetStream { what: String, detail: String },

    #[error(
        "publish to {subject} not acknowledged within {deadline:?} (last error: {last_error}); nothing was acknowledged to the client, which retries with the same Nats-Msg-Id"
    )]
    PublishDeadline {
        subject: String,
        deadline: Duration,
        last_error: String,
    },

    #[error("too many messages in one call: {count} > {limit} ({why})")]
    TooMany {
        count: usize,
        limit: usize,
        why: &'static str,
    },

    #[error("lease of partition {partition} is held by {holder} (revision {revision})")]
    LeaseHeld {
        partition: u32,
        holder: String,
        revision: u64,
    },

    #[error(
        "lease of partition {partition} is lost: the key moved past revision {revision} (another node took it, or it expired); stop every stage of the partition without writing"
    )]
    LeaseLost { partition: u32, revision: u64 },

    #[error(
        "lease renewal of partition {partition} not confirmed: {detail}; the owner pauses after {pause_after:?} without a confirmed renewal"
    )]
    LeaseUnconfirmed {
        partition: u32,
        detail: String,
        pause_after: Duration,
    },

    #[error(
        "deposed on chain {subject}: its last message (sequence {found}) is not this writer's; drop the partition's state without writing"
    )]
    Deposed { subject: String, found: u64 },

    #[error("atomic batch refused, nothing of it stored: {detail}")]
    BatchRefused { detail: String },
}

impl Error {
    pub(crate) fn jetstream(what: impl Into<String>, detail: impl ToString) -> Self {
        Error::JetStream {
            what: what.into(),
            detail: detail.to_string(),
        }
    }
}
