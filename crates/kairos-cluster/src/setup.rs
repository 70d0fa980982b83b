//! The streams and buckets of docs/cluster.md §2, created idempotently.
//!
//! Running [`ensure_layout`] again is a no-op: JetStream answers a create
//! with an identical configuration with the existing stream. A stream that
//! exists with *another* configuration is never changed (a different
//! partition count or replica count means a different cluster, and an
//! update could drop data): the error names every field that differs.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::stream::{
    Compression, Config, DiscardPolicy, RetentionPolicy, StorageType,
};
use async_nats::jetstream::{Context, ErrorCode};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::Error;

/// Profile ids carry the partition in 10 bits (`seq << 10 | p`, §5.1).
pub const MAX_PARTITIONS: u32 = 1_024;
/// `cluster.partitions` default: many more than nodes, so a dead node's
/// load spreads over the survivors (§1).
pub const DEFAULT_PARTITIONS: u32 = 64;
/// `cluster.publish_dedup_window`: recent retries meet their first copy
/// (§3.3); short because the stream leader keeps rate × window ids in memory.
pub const EVENTS_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// Ops and effects journals are kept a week: longer than the checkpoint
/// interval, so a restore always finds the ops after its checkpoint (§2).
pub const JOURNAL_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Dedup window of the ops and message streams: a retried publish of a
/// stage that restarted within minutes is still recognised (§2).
pub const JOURNAL_DUPLICATE_WINDOW: Duration = Duration::from_secs(600);
/// How long the server keeps the marker left by an expired lease: long
/// enough for every watcher to see it (§4.2).
pub const LEASE_MARKER_TTL: Duration = Duration::from_secs(1);
/// Stream creations in flight during setup: 64 partitions make ~200
/// streams; one at a time would take seconds at R3, all at once would
/// flood the meta leader.
pub const SETUP_CONCURRENCY: usize = 16;

/// KV bucket names (§2).
pub const IDENTITY_BUCKET: &str = "kairos_identity";
pub const LEASES_BUCKET: &str = "kairos_leases";
pub const CONFIG_BUCKET: &str = "kairos_config";
pub const VAULT_BUCKET: &str = "kairos_vault";
pub const PRIVACY_BUCKET: &str = "kairos_privacy";
/// Object store bucket for checkpoints (§7).
pub const CHECKPOINTS_BUCKET: &str = "kairos_checkpoints";
/// The work-queue stream of messages to deliver (§8.3).
pub const MSG_STREAM: &str = "KAIROS_MSG";

/// The shape of a cluster: fixed when it is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// `cluster.partitions`, 1..=[`MAX_PARTITIONS`].
    pub partitions: u32,
    /// `cluster.replicas`: 3 in a 3-server cluster, 1 on one test server.
    pub replicas: usize,
}

impl Layout {
    pub fn new(partitions: u32, replicas: usize) -> Result<Layout, Error> {
        if partitions == 0 || partitions > MAX_PARTITIONS {
            return Err(Error::Config(format!(
                "cluster.partitions = {partitions}: must be 1..={MAX_PARTITIONS} (profile ids hold the partition in 10 bits)"
            )));
        }
        if !(1..=5).contains(&replicas) {
            return Err(Error::Config(format!(
                "cluster.replicas = {replicas}: JetStream allows 1..=5 (3 for a 3-server cluster)"
            )));
        }
        Ok(Layout {
            partitions,
            replicas,
        })
    }

    /// Every stream of the layout, in creation order.
    pub fn streams(&self) -> Vec<Config> {
        let mut streams = Vec::new();
        for partition in 0..self.partitions {
            streams.push(self.events_stream(partition));
            streams.push(self.ops_stream(partition));
            streams.push(self.effects_stream(partition));
        }
        streams.push(self.message_stream());
        streams.extend(self.buckets());
        streams.push(self.checkpoint_store());
        streams
    }

    fn base(&self, name: String, subjects: Vec<String>) -> Config {
        Config {
            name,
            subjects,
            num_replicas: self.replicas,
            storage: StorageType::File,
            retention: RetentionPolicy::Limits,
            ..Default::default()
        }
    }

    /// `KAIROS_EVENTS_<p>`: the log of partition p, kept without age limit.
    pub fn events_stream(&self, partition: u32) -> Config {
        Config {
            duplicate_window: EVENTS_DUPLICATE_WINDOW,
            compression: Some(Compression::S2),
            allow_direct: true,
            ..self.base(
                events_stream_name(partition),
                vec![events_subject(partition)],
            )
        }
    }

    /// `KAIROS_OPS_<q>`: route and profile stages' chains into partition q.
    pub fn ops_stream(&self, partition: u32) -> Config {
        let subjects = vec![format!("kairos.ops.{partition}.>")];
        Config {
            max_age: JOURNAL_MAX_AGE,
            duplicate_window: JOURNAL_DUPLICATE_WINDOW,
            ..self.base(format!("KAIROS_OPS_{partition}"), subjects)
        }
    }

    /// `KAIROS_FX_<p>`: the effects journal chain; large records are
    /// atomic batches.
    pub fn effects_stream(&self, partition: u32) -> Config {
        let subjects = vec![format!("kairos.fx.{partition}")];
        Config {
            max_age: JOURNAL_MAX_AGE,
            allow_atomic_publish: true,
            ..self.base(format!("KAIROS_FX_{partition}"), subjects)
        }
    }

    /// `KAIROS_MSG`: the work queue of messages to deliver.
    pub fn message_stream(&self) -> Config {
        Config {
            retention: RetentionPolicy::WorkQueue,
            duplicate_window: JOURNAL_DUPLICATE_WINDOW,
            ..self.base(MSG_STREAM.to_string(), vec!["kairos.msg.>".to_string()])
        }
    }

    /// The KV buckets, as the streams behind them (`KV_<bucket>`): the
    /// client's bucket API cannot set `allow_atomic` or the TTL markers.
    pub fn buckets(&self) -> Vec<Config> {
        vec![
            Config {
                allow_atomic_publish: true,
                ..self.bucket(IDENTITY_BUCKET, 1)
            },
            Config {
                allow_message_ttl: true,
                subject_delete_marker_ttl: Some(LEASE_MARKER_TTL),
                // Markers and expiries are deletions the server makes.
                deny_delete: false,
                ..self.bucket(LEASES_BUCKET, 1)
            },
            self.bucket(CONFIG_BUCKET, 64),
            self.bucket(VAULT_BUCKET, 1),
            self.bucket(PRIVACY_BUCKET, 1),
        ]
    }

    fn bucket(&self, bucket: &str, history: i64) -> Config {
        Config {
            max_messages_per_subject: history,
            discard: DiscardPolicy::New,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            duplicate_window: EVENTS_DUPLICATE_WINDOW,
            ..self.base(bucket_stream(bucket), vec![format!("$KV.{bucket}.>")])
        }
    }

    /// The object store's stream (`OBJ_<bucket>`), laid out as the client's
    /// object store API expects it.
    pub fn checkpoint_store(&self) -> Config {
        let bucket = CHECKPOINTS_BUCKET;
        let subjects = vec![format!("$O.{bucket}.C.>"), format!("$O.{bucket}.M.>")];
        Config {
            discard: DiscardPolicy::New,
            allow_rollup: true,
            allow_direct: true,
            ..self.base(format!("OBJ_{bucket}"), subjects)
        }
    }
}

pub fn events_stream_name(partition: u32) -> String {
    format!("KAIROS_EVENTS_{partition}")
}

pub fn events_subject(partition: u32) -> String {
    format!("kairos.events.{partition}")
}

/// The stream behind a KV bucket.
pub fn bucket_stream(bucket: &str) -> String {
    format!("KV_{bucket}")
}

/// The subject of a key in a KV bucket.
pub fn bucket_subject(bucket: &str, key: &str) -> String {
    format!("$KV.{bucket}.{key}")
}

/// Creates every stream and bucket of the layout that does not exist yet;
/// one that exists with the same configuration is left as it is.
pub async fn ensure_layout(jetstream: &Context, layout: &Layout) -> Result<(), Error> {
    let slots = Arc::new(Semaphore::new(SETUP_CONCURRENCY));
    let mut creations = JoinSet::new();
    for config in layout.streams() {
        let jetstream = jetstream.clone();
        let slots = slots.clone();
        creations.spawn(async move {
            let _slot = slots.acquire_owned().await;
            ensure_stream(&jetstream, config).await
        });
    }
    let mut first_error = None;
    while let Some(done) = creations.join_next().await {
        let outcome = done.map_err(|error| Error::jetstream("stream setup", error))?;
        if let Err(error) = outcome {
            first_error.get_or_insert(error);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Creates one stream, or accepts it when it exists with this configuration.
pub async fn ensure_stream(jetstream: &Context, config: Config) -> Result<(), Error> {
    use async_nats::jetstream::context::CreateStreamErrorKind;
    let name = config.name.clone();
    let error = match jetstream.create_stream(config.clone()).await {
        Ok(_) => return Ok(()),
        Err(error) => error,
    };
    if let CreateStreamErrorKind::JetStream(refusal) = error.kind()
        && refusal.error_code() == ErrorCode::STREAM_NAME_EXIST
    {
        return Err(conflict(jetstream, &config).await);
    }
    Err(Error::jetstream(format!("creating stream {name}"), error))
}

/// The error for a stream that exists with another configuration, naming
/// the fields that differ.
async fn conflict(jetstream: &Context, wanted: &Config) -> Error {
    let existing = match jetstream.get_stream(&wanted.name).await {
        Ok(mut stream) => match stream.info().await {
            Ok(info) => info.config.clone(),
            Err(error) => {
                return Error::jetstream(format!("reading stream {}", wanted.name), error);
            }
        },
        Err(error) => return Error::jetstream(format!("reading stream {}", wanted.name), error),
    };
    Error::StreamConflict {
        stream: wanted.name.clone(),
        differences: differences(&existing, wanted).join(", "),
    }
}

/// `field: existing → wanted` for each field Kairos sets that differs.
pub fn differences(existing: &Config, wanted: &Config) -> Vec<String> {
    let mut found = Vec::new();
    let mut compare = |field: &str, existing: String, wanted: String| {
        if existing != wanted {
            found.push(format!("{field}: {existing} exists, {wanted} wanted"));
        }
    };
    compare(
        "subjects",
        format!("{:?}", existing.subjects),
        format!("{:?}", wanted.subjects),
    );
    compare(
        "replicas",
        existing.num_replicas.to_string(),
        wanted.num_replicas.to_string(),
    );
    compare(
        "max_age",
        format!("{:?}", existing.max_age),
        format!("{:?}", wanted.max_age),
    );
    compare(
        "duplicate_window",
        format!("{:?}", existing.duplicate_window),
        format!("{:?}", wanted.duplicate_window),
    );
    compare(
        "retention",
        format!("{:?}", existing.retention),
        format!("{:?}", wanted.retention),
    );
    compare(
        "storage",
        format!("{:?}", existing.storage),
        format!("{:?}", wanted.storage),
    );
    compare(
        "max_messages_per_subject",
        existing.max_messages_per_subject.to_string(),
        wanted.max_messages_per_subject.to_string(),
    );
    compare(
        "allow_atomic",
        existing.allow_atomic_publish.to_string(),
        wanted.allow_atomic_publish.to_string(),
    );
    compare(
        "allow_msg_ttl",
        existing.allow_message_ttl.to_string(),
        wanted.allow_message_ttl.to_string(),
    );
    if found.is_empty() {
        found.push("a field Kairos does not set (compare `nats stream info`)".to_string());
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layout_is_bounded() {
        assert!(Layout::new(0, 1).is_err());
        assert!(Layout::new(MAX_PARTITIONS + 1, 3).is_err());
        assert!(Layout::new(64, 0).is_err());
        let layout = Layout::new(MAX_PARTITIONS, 3).unwrap();
        assert_eq!(layout.streams().len(), 3 * 1_024 + 1 + 5 + 1);
    }

    #[test]
    fn differences_name_each_changed_field() {
        let layout = Layout::new(4, 3).unwrap();
        let existing = layout.events_stream(2);
        let mut wanted = existing.clone();
        assert_eq!(
            differences(&existing, &wanted),
            ["a field Kairos does not set (compare `nats stream info`)"]
        );
        wanted.num_replicas = 1;
        wanted.duplicate_window = Duration::from_secs(60);
        assert_eq!(
            differences(&existing, &wanted),
            [
                "replicas: 3 exists, 1 wanted",
                "duplicate_window: 120s exists, 60s wanted"
            ]
        );
    }

    #[test]
    fn only_the_lease_bucket_has_ttls_and_only_journals_and_the_index_take_batches() {
        let layout = Layout::new(2, 1).unwrap();
        let streams = layout.streams();
        let ttl: Vec<&str> = streams
            .iter()
            .filter(|s| s.allow_message_ttl)
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(ttl, ["KV_kairos_leases"]);
        let atomic: Vec<&str> = streams
            .iter()
            .filter(|s| s.allow_atomic_publish)
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(atomic, ["KAIROS_FX_0", "KAIROS_FX_1", "KV_kairos_identity"]);
    }
}
