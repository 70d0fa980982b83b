//! What the user writes: the config file's sections, every field
//! optional (the environment and flags fill the same shape).

use std::path::PathBuf;

use serde::Deserialize;

/// The config file's shape; every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub admin_token: Option<String>,
    /// A read-only bearer token for `/metrics` (Prometheus).
    pub metrics_token: Option<String>,
    /// Proxies (IPs or CIDR blocks) whose `X-Forwarded-Host` / `-Proto`
    /// are believed.
    pub trusted_proxies: Option<Vec<String>>,
    pub log_format: Option<String>,
    pub demo: Option<bool>,
    pub unsafe_no_fsync: Option<bool>,
    /// "system" or "manual".
    pub clock: Option<String>,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub identity: IdentityConfig,
    #[serde(default)]
    pub profiles: ProfilesConfig,
    /// `[[audiences]]`: definitions created (or changed) at start-up.
    #[serde(default)]
    pub audiences: Vec<AudienceConfig>,
    /// `[[computed_traits]]`: computed traits created (or changed) at
    /// start-up, same shape as audiences.
    #[serde(default)]
    pub computed_traits: Vec<AudienceConfig>,
    /// `[[offers]]`: offers created (or changed: a new version) at
    /// start-up, each as `POST /v1/offers` takes it, written in TOML.
    #[serde(default)]
    pub offers: Vec<toml::Table>,
    #[serde(default)]
    pub delivery: DeliveryConfig,
    #[serde(default)]
    pub policy: PolicyConfig,
    #[serde(default)]
    pub models: ModelsConfig,
    #[serde(default)]
    pub decisions: DecisionsConfig,
    #[serde(default)]
    pub recommendations: RecommendationsConfig,
}

/// `[recommendations]`: whether the engine learns them from the events.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecommendationsConfig {
    /// Default true; false saves the router ~2 µs per product event.
    pub enabled: Option<bool>,
}

/// `[decisions]`: how long decisions are kept.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionsConfig {
    /// Decisions older than this are deleted ("90d"); responses to them
    /// count as unattributed, training and evaluation no longer see them.
    pub retention: Option<String>,
}

/// `[models]`: where ONNX Runtime is (for ONNX models).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsConfig {
    /// Path to `libonnxruntime.so` (else `ORT_DYLIB_PATH`).
    pub onnxruntime: Option<PathBuf>,
    /// How long one ONNX run may take, e.g. "100ms".
    pub score_timeout: Option<String>,
}

/// `[policy]`: the contact policy every send with a purpose passes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    pub messages_per_day: Option<u32>,
    pub messages_per_channel_per_hour: Option<u32>,
    /// "21:00-08:00", local time of the person.
    pub quiet_hours: Option<String>,
    /// IANA time zone for people without a `timezone` trait.
    pub default_time_zone: Option<String>,
    /// Journeys a person may be in at once.
    pub max_concurrent_journeys: Option<u32>,
    /// Lists whose members get no message (default `["do-not-contact"]`).
    pub suppression_lists: Option<Vec<String>>,
}

/// `[delivery]`: how webhook deliveries are retried.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Delays before the 2nd, 3rd, ... attempt (["5s", "5m", ...]); the
    /// last repeats.
    pub retry_schedule: Option<Vec<String>>,
    /// Attempts before a message becomes a dead letter.
    pub max_attempts: Option<u32>,
    /// How long one attempt may take ("15s").
    pub timeout: Option<String>,
    /// Let deliveries reach loopback, private, link-local and other
    /// special-purpose addresses (tests, on-premise receivers). Default
    /// false: only public addresses (docs/journeys.md, "Addresses").
    pub allow_private_networks: Option<bool>,
    /// PEM file of CA certificates trusted besides the system's (HTTPS
    /// webhooks and syncs, SMTP over TLS).
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudienceConfig {
    /// What definitions refer to it by.
    pub name: String,
    /// The text form (docs/audiences.md).
    pub definition: String,
}

/// `[identity]`: the workspace's identity rules (Segment Unify's model).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// Most values of a type one profile may hold, e.g. `{ user_id = 1 }`;
    /// merged over the defaults.
    pub limits: Option<std::collections::BTreeMap<String, usize>>,
    /// Types from most to least trusted.
    pub priority: Option<Vec<String>>,
    /// Values that never link anything; replaces the default list.
    pub blocked_values: Option<Vec<String>>,
    /// Custom identifier types taken from traits and `context.externalIds`.
    pub custom_types: Option<Vec<String>>,
    /// Calling code for phone numbers written without one, e.g. "49".
    pub default_calling_code: Option<String>,
}

/// `[profiles]`: timeline retention and trait precedence.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfilesConfig {
    pub timeline_events_max: Option<usize>,
    /// A duration such as "365d".
    pub timeline_max_age: Option<String>,
    /// Source names whose traits win over other sources', most trusted first.
    pub source_precedence: Option<Vec<String>>,
    /// Profile shard threads.
    pub shards: Option<usize>,
    /// Events routed between two engine checkpoints (0: only at clean
    /// shutdown and after erasures).
    pub checkpoint_every_events: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    pub event_bytes_max: Option<usize>,
    pub request_bytes_max: Option<usize>,
    pub batch_events_max: Option<usize>,
}

/// `[server]`: connection limits (see `kairos_http::server`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub connections_max: Option<usize>,
    /// Durations such as "10s" or "500ms".
    pub header_read_timeout: Option<String>,
    pub body_read_timeout: Option<String>,
    pub idle_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    pub log_partitions: Option<u32>,
    /// A duration such as "24h" or "90m".
    pub dedup_window: Option<String>,
    pub ingest_queue_requests_max: Option<usize>,
    pub cache_mb: Option<u64>,
}
