//! JetStream atomic batches (ADR-50, nats-server ≥ 2.12, `allow_atomic` on
//! the stream): every message of the batch is stored, or none is.
//!
//! async-nats 0.51 has the headers but no API for it, and the
//! `jetstream-extra` crate pins an older async-nats, so this is the protocol
//! over plain publish and request/reply: every message carries
//! `Nats-Batch-Id` and `Nats-Batch-Sequence` (1, 2, …), the last one also
//! `Nats-Batch-Commit: 1`. The first is a request, so a stream that refuses
//! batches says so at once; the middle ones go without a reply (one
//! connection keeps them in order); the commit's reply is the batch's ack or
//! its refusal. A condition of any message (an expected revision) that
//! fails refuses the whole batch at the commit (docs/cluster.md, measured).
//!
//! A batch is not retried here: a commit whose reply was lost may have
//! landed, and its expected revisions make a blind retry fail anyway; the
//! caller reads the keys again and decides (§5.2).

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

use async_nats::HeaderMap;
use async_nats::header::{
    NATS_BATCH_COMMIT, NATS_BATCH_COMMIT_FINAL, NATS_BATCH_ID, NATS_BATCH_SEQUENCE,
    NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
};
use bytes::Bytes;
use serde::Deserialize;

use crate::Error;
use crate::connect::Cluster;
use crate::setup::bucket_subject;

/// The server's limit on messages in one atomic batch (ADR-50); the
/// identity index's writes of a group are split below it (§5.1).
pub const BATCH_MESSAGES_MAX: usize = 1_000;

/// One message of a batch.
#[derive(Clone, Debug)]
pub struct BatchMessage {
    pub subject: String,
    pub payload: Bytes,
    pub headers: HeaderMap,
}

impl BatchMessage {
    pub fn new(subject: impl Into<String>, payload: impl Into<Bytes>) -> Self {
        BatchMessage {
            subject: subject.into(),
            payload: payload.into(),
            headers: HeaderMap::new(),
        }
    }

    /// Stored only if the subject's last sequence is `revision` (0: the
    /// subject has no message yet) — compare-and-set.
    pub fn expect_revision(mut self, revision: u64) -> Self {
        self.headers.insert(
            NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
            revision.to_string().as_str(),
        );
        self
    }

    /// A compare-and-set put of `key` in a KV bucket.
    pub fn kv_put(bucket: &str, key: &str, value: impl Into<Bytes>, revision: u64) -> Self {
        BatchMessage::new(bucket_subject(bucket, key), value).expect_revision(revision)
    }
}

/// The ack of a committed batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchAck {
    pub stream: String,
    /// Sequence of the batch's last message; the others precede it.
    pub sequence: u64,
    pub count: u64,
}

#[derive(Deserialize)]
struct Reply {
    error: Option<ReplyError>,
    #[serde(default)]
    stream: String,
    #[serde(default)]
    seq: u64,
    #[serde(default)]
    count: u64,
}

#[derive(Deserialize)]
struct ReplyError {
    #[serde(default)]
    err_code: u64,
    #[serde(default)]
    description: String,
}

/// Publishes `messages` (all to subjects of one stream) as one atomic batch.
pub async fn publish_atomic_batch(
    cluster: &Cluster,
    messages: Vec<BatchMessage>,
) -> Result<BatchAck, Error> {
    if messages.is_empty() || messages.len() > BATCH_MESSAGES_MAX {
        return Err(Error::TooMany {
            count: messages.len(),
            limit: BATCH_MESSAGES_MAX,
            why: "messages in one atomic batch (1 at least; the server's limit); split the writes",
        });
    }
    let batch_id = new_batch_id();
    let last = messages.len();
    for (index, message) in messages.into_iter().enumerate() {
        let position = index + 1;
        let headers = batch_headers(message.headers, &batch_id, position, position == last);
        let subject = message.subject;
        if position == last {
            let reply = request(cluster, subject, headers, message.payload).await?;
            return committed(reply);
        }
        if position == 1 {
            // An empty reply means "batch started"; an error, that the
            // stream refuses it (no allow_atomic, a bad header).
            request(cluster, subject, headers, message.payload).await?;
        } else {
            cluster
                .client
                .publish_with_headers(subject, headers, message.payload)
                .await
                .map_err(|error| Error::jetstream("an atomic batch message", error))?;
        }
    }
    unreachable!("the last message returns")
}

fn batch_headers(
    mut headers: HeaderMap,
    batch_id: &str,
    position: usize,
    commit: bool,
) -> HeaderMap {
    headers.insert(NATS_BATCH_ID, batch_id);
    headers.insert(NATS_BATCH_SEQUENCE, position.to_string().as_str());
    if commit {
        headers.insert(NATS_BATCH_COMMIT, NATS_BATCH_COMMIT_FINAL);
    }
    headers
}

/// Sends one message as a request and reads its reply: empty (a batch
/// message accepted) or JSON (the commit's ack, or an error).
async fn request(
    cluster: &Cluster,
    subject: String,
    headers: HeaderMap,
    payload: Bytes,
) -> Result<Option<Reply>, Error> {
    let message = cluster
        .client
        .request_with_headers(subject, headers, payload)
        .await
        .map_err(|error| Error::jetstream("an atomic batch request", error))?;
    if message.payload.is_empty() {
        return Ok(None);
    }
    let reply: Reply = serde_json::from_slice(&message.payload)
        .map_err(|error| Error::jetstream("an atomic batch reply", error))?;
    match reply.error {
        Some(error) => Err(Error::BatchRefused {
            detail: format!("{} (JetStream error {})", error.description, error.err_code),
        }),
        None => Ok(Some(reply)),
    }
}

fn committed(reply: Option<Reply>) -> Result<BatchAck, Error> {
    let reply = reply.ok_or_else(|| Error::BatchRefused {
        detail: "the commit got an empty reply, not an ack".to_string(),
    })?;
    Ok(BatchAck {
        stream: reply.stream,
        sequence: reply.seq,
        count: reply.count,
    })
}

/// Unique per batch in this process and across processes (the server keeps
/// at most 50 open batches per stream, keyed by id).
fn new_batch_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let process = RandomState::new().hash_one(std::process::id());
    format!(
        "{process:016x}{:x}",
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}
