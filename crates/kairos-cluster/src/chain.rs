//! Fencing chains (docs/cluster.md §4.3).
//!
//! A chain is a subject only the owner of a partition appends to. Every
//! append expects the chain's last sequence, which the writer knows because
//! it wrote it. A new owner first appends a takeover record (expecting the
//! last sequence as it reads it); from then on the previous owner's next
//! append is refused by the stream leader with `wrong last sequence`,
//! whatever its clock or its lease says.
//!
//! A retry of an append that did land also meets `wrong last sequence`; the
//! writer tells the two apart by the chain's last message: its own
//! `Kairos-Write` id means "stored, go on", anything else means "deposed".

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::{PublishMessage, StreamMessage};
use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use bytes::Bytes;
use tokio::time::{Instant, sleep};

use crate::connect::Cluster;
use crate::lease::publish;
use crate::publish::{PUBLISH_DEADLINE, RETRY_PAUSE};
use crate::{Error, WRITE_ID_HEADER};

/// Attempts at a takeover when the chain keeps moving between the read of
/// its last sequence and the takeover record: only a deposed owner still
/// writing can move it, and it is refused once the record lands, so a few
/// attempts suffice; more means two nodes both believe they own the
/// partition, which the caller must hear about.
pub const TAKEOVER_ATTEMPTS_MAX: usize = 16;

/// One chain as its current writer sees it.
#[derive(Clone, Debug)]
pub struct Chain {
    cluster: Cluster,
    stream: Stream<()>,
    subject: String,
    last_sequence: u64,
    /// `node/epoch` of the writer; write ids are `<writer>.<n>`.
    writer: String,
    next_write: u64,
}

impl Chain {
    /// Takes the chain over for `writer` (`node/epoch`): appends `record`
    /// expecting the chain's last sequence, reading it again if a deposed
    /// writer moved it in between.
    pub async fn take_over(
        cluster: &Cluster,
        stream: &str,
        subject: &str,
        writer: &str,
        record: Bytes,
    ) -> Result<Chain, Error> {
        let stream = cluster
            .jetstream
            .get_stream_no_info(stream)
            .await
            .map_err(|error| Error::jetstream(format!("opening {stream}"), error))?;
        let mut chain = Chain {
            cluster: cluster.clone(),
            stream,
            subject: subject.to_string(),
            last_sequence: 0,
            writer: writer.to_string(),
            next_write: 0,
        };
        for _ in 0..TAKEOVER_ATTEMPTS_MAX {
            chain.last_sequence = chain.last().await?.map_or(0, |message| message.sequence);
            match chain.append(record.clone()).await {
                Err(Error::Deposed { .. }) => continue,
                outcome => return outcome.map(|_| chain),
            }
        }
        Err(Error::jetstream(
            format!("taking over {subject}"),
            format!(
                "the chain moved {TAKEOVER_ATTEMPTS_MAX} times during the takeover: another writer is active"
            ),
        ))
    }

    /// The sequence of the chain's last message (this writer's).
    pub fn last_sequence(&self) -> u64 {
        self.last_sequence
    }

    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Appends `payload` if the chain is still this writer's; returns its
    /// sequence. [`Error::Deposed`] once another writer took the chain over.
    pub async fn append(&mut self, payload: Bytes) -> Result<u64, Error> {
        let write_id = format!("{}.{}", self.writer, self.next_write);
        self.next_write += 1;
        let deadline = Instant::now() + PUBLISH_DEADLINE;
        loop {
            let message = PublishMessage::build()
                .payload(payload.clone())
                .header(WRITE_ID_HEADER, write_id.as_str())
                .expected_last_subject_sequence(self.last_sequence);
            let error = match publish(&self.cluster, self.subject.clone(), message).await {
                Ok(sequence) => return Ok(self.advance(sequence)),
                Err(PublishErrorKind::WrongLastSequence) => {
                    return self.stored_or_deposed(&write_id).await;
                }
                Err(error) => error,
            };
            if Instant::now() + RETRY_PAUSE >= deadline {
                return Err(Error::PublishDeadline {
                    subject: self.subject.clone(),
                    deadline: PUBLISH_DEADLINE,
                    last_error: error.to_string(),
                });
            }
            sleep(RETRY_PAUSE).await;
        }
    }

    fn advance(&mut self, sequence: u64) -> u64 {
        debug_assert!(sequence > self.last_sequence, "a chain only grows");
        self.last_sequence = sequence;
        sequence
    }

    /// After `wrong last sequence`: our own earlier attempt, or a takeover.
    async fn stored_or_deposed(&mut self, write_id: &str) -> Result<u64, Error> {
        let last = self.last().await?;
        let found = last.as_ref().map_or(0, |message| message.sequence);
        match last {
            Some(message) if written(&message, write_id) => Ok(self.advance(found)),
            _ => Err(Error::Deposed {
                subject: self.subject.clone(),
                found,
            }),
        }
    }

    /// The chain's last message, read from the stream leader.
    async fn last(&self) -> Result<Option<StreamMessage>, Error> {
        match self
            .stream
            .get_last_raw_message_by_subject(&self.subject)
            .await
        {
            Ok(message) => Ok(Some(message)),
            Err(error) if error.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(error) => Err(Error::jetstream(format!("reading {}", self.subject), error)),
        }
    }
}

fn written(message: &StreamMessage, write_id: &str) -> bool {
    message
        .headers
        .get(WRITE_ID_HEADER)
        .is_some_and(|value| value.as_str() == write_id)
}
