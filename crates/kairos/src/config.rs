//! Configuration in two stages: what the user typed (file, `KAIROS_*`
//! environment, flags — later ones win) → a validated [`ServeConfig`].
//! Every problem is collected and reported at once.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kairos_core::identity::IdentityRules;
use kairos_core::normalize::IngestLimits;
use kairos_core::profile::Retention;
use kairos_store::StoreOptions;
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
    #[serde(default)]
    pub delivery: DeliveryConfig,
    #[serde(default)]
    pub policy: PolicyConfig,
    #[serde(default)]
    pub models: ModelsConfig,
    #[serde(default)]
    pub decisions: DecisionsConfig,
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

/// What `kairos serve` runs with, after validation.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub admin_token: Option<String>,
    /// Where the admin token was set (printed instead of the token).
    pub admin_token_origin: Option<String>,
    pub access: kairos_http::access::AccessSettings,
    pub json_logs: bool,
    pub demo: bool,
    pub test_faults: bool,
    pub limits: IngestLimits,
    pub server: kairos_http::server::ServerLimits,
    pub store: StoreOptions,
    pub engine: kairos_engine::EngineSettings,
    /// Audiences from the config file, each checked to parse.
    pub audiences: Vec<AudienceConfig>,
    /// Computed traits from the config file, each checked to parse.
    pub computed_traits: Vec<AudienceConfig>,
    pub delivery: kairos_deliver::DeliverySettings,
    /// `libonnxruntime.so`, if configured.
    pub onnxruntime: Option<PathBuf>,
    /// `[models] score_timeout`: one ONNX run at most.
    pub score_timeout: Duration,
    /// Set with `--clock manual`: the clock POST /v1/admin/clock moves.
    pub manual_clock: Option<std::sync::Arc<kairos_core::clock::ManualClock>>,
    /// `[decisions] retention`.
    pub decision_retention: Duration,
}

/// Values given on the command line (they win over everything).
#[derive(Debug, Default, Clone)]
pub struct FlagConfig {
    pub config_file: Option<PathBuf>,
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub no_demo: bool,
    pub test_faults: bool,
    pub unsafe_no_fsync: bool,
    pub log_format: Option<String>,
    pub clock: Option<String>,
}

/// Builds and validates the configuration; `env` is the process environment
/// (passed in so tests need no global state).
pub fn load(flags: &FlagConfig, env: &[(String, String)]) -> Result<ServeConfig, Vec<String>> {
    let mut problems = Vec::new();
    let mut file = match &flags.config_file {
        Some(path) => read_file(path).unwrap_or_else(|problem| {
            problems.push(problem);
            FileConfig::default()
        }),
        None => FileConfig::default(),
    };
    let admin_token_origin = admin_token_origin(&file, flags, env);
    apply_env(&mut file, env, &mut problems);
    apply_flags(&mut file, flags);
    let mut config = validate(file, flags.test_faults, &mut problems);
    config.admin_token_origin = admin_token_origin;
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(problems)
    }
}

/// Where the admin token comes from, said at start instead of the token
/// (it would otherwise end up in every log collector).
fn admin_token_origin(
    file: &FileConfig,
    flags: &FlagConfig,
    env: &[(String, String)],
) -> Option<String> {
    if env.iter().any(|(name, _)| name == "KAIROS_ADMIN_TOKEN") {
        return Some("KAIROS_ADMIN_TOKEN".to_string());
    }
    let path = flags.config_file.as_ref()?;
    file.admin_token
        .as_ref()
        .map(|_| format!("admin_token in {}", path.display()))
}

fn read_file(path: &Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("config file {}: {error}", path.display()))?;
    toml::from_str(&text).map_err(|error| format!("config file {}: {error}", path.display()))
}

fn apply_env(file: &mut FileConfig, env: &[(String, String)], problems: &mut Vec<String>) {
    for (name, value) in env {
        let Some(key) = name.strip_prefix("KAIROS_") else {
            continue;
        };
        match key {
            "LISTEN" => file.listen = Some(value.clone()),
            "DATA_DIR" => file.data_dir = Some(PathBuf::from(value)),
            "ADMIN_TOKEN" => file.admin_token = Some(value.clone()),
            "METRICS_TOKEN" => file.metrics_token = Some(value.clone()),
            "TRUSTED_PROXIES" => {
                file.trusted_proxies = Some(
                    value
                        .split(',')
                        .map(|entry| entry.trim().to_string())
                        .collect(),
                )
            }
            "LOG_FORMAT" => file.log_format = Some(value.clone()),
            "DEMO" => file.demo = parse_env(name, value, problems),
            "UNSAFE_NO_FSYNC" => file.unsafe_no_fsync = parse_env(name, value, problems),
            "EVENT_BYTES_MAX" => file.limits.event_bytes_max = parse_env(name, value, problems),
            "REQUEST_BYTES_MAX" => file.limits.request_bytes_max = parse_env(name, value, problems),
            "BATCH_EVENTS_MAX" => file.limits.batch_events_max = parse_env(name, value, problems),
            "LOG_PARTITIONS" => file.storage.log_partitions = parse_env(name, value, problems),
            "DEDUP_WINDOW" => file.storage.dedup_window = Some(value.clone()),
            "INGEST_QUEUE_REQUESTS_MAX" => {
                file.storage.ingest_queue_requests_max = parse_env(name, value, problems)
            }
            "CACHE_MB" => file.storage.cache_mb = parse_env(name, value, problems),
            "SHARDS" => file.profiles.shards = parse_env(name, value, problems),
            "CHECKPOINT_EVERY_EVENTS" => {
                file.profiles.checkpoint_every_events = parse_env(name, value, problems)
            }
            "CLOCK" => file.clock = Some(value.clone()),
            "DECISIONS_RETENTION" => file.decisions.retention = Some(value.clone()),
            "DELIVERY_CA_FILE" => file.delivery.ca_file = Some(PathBuf::from(value)),
            "DELIVERY_ALLOW_PRIVATE_NETWORKS" => {
                file.delivery.allow_private_networks = parse_env(name, value, problems)
            }
            // The log filter (read when logging starts), variables of the
            // client commands and of tests.
            "LOG" | "URL" | "BIN" | "WRITE_KEY" => {}
            _ => problems.push(format!(
                "{name}: unknown setting (see docs/configuration.md)"
            )),
        }
    }
}

fn parse_env<T: std::str::FromStr>(
    name: &str,
    value: &str,
    problems: &mut Vec<String>,
) -> Option<T> {
    match value.trim().parse() {
        Ok(parsed) => Some(parsed),
        Err(_) => {
            problems.push(format!(
                "{name}={value:?}: not a valid {}",
                std::any::type_name::<T>()
            ));
            None
        }
    }
}

fn apply_flags(file: &mut FileConfig, flags: &FlagConfig) {
    if let Some(listen) = &flags.listen {
        file.listen = Some(listen.clone());
    }
    if let Some(dir) = &flags.data_dir {
        file.data_dir = Some(dir.clone());
    }
    if let Some(format) = &flags.log_format {
        file.log_format = Some(format.clone());
    }
    if flags.no_demo {
        file.demo = Some(false);
    }
    if flags.unsafe_no_fsync {
        file.unsafe_no_fsync = Some(true);
    }
    if let Some(clock) = &flags.clock {
        file.clock = Some(clock.clone());
    }
}

fn validate(file: FileConfig, test_faults: bool, problems: &mut Vec<String>) -> ServeConfig {
    let listen_text = file
        .listen
        .clone()
        .unwrap_or_else(|| "127.0.0.1:8080".to_string());
    let listen = listen_text.parse().unwrap_or_else(|_| {
        problems.push(format!(
            "listen {listen_text:?}: expected IP:PORT, e.g. 127.0.0.1:8080"
        ));
        SocketAddr::from(([127, 0, 0, 1], 8080))
    });
    let json_logs = match file.log_format.as_deref().unwrap_or("text") {
        "text" => false,
        "json" => true,
        other => {
            problems.push(format!(
                "log_format {other:?}: expected \"text\" or \"json\""
            ));
            false
        }
    };
    if file
        .admin_token
        .as_deref()
        .is_some_and(|token| token.trim().len() < 8)
    {
        problems.push("admin_token: use at least 8 characters".to_string());
    }
    let access = access_settings(&file, problems);
    let defaults = IngestLimits::default();
    let limits = IngestLimits {
        event_bytes_max: file
            .limits
            .event_bytes_max
            .unwrap_or(defaults.event_bytes_max),
        request_bytes_max: file
            .limits
            .request_bytes_max
            .unwrap_or(defaults.request_bytes_max),
        batch_events_max: file
            .limits
            .batch_events_max
            .unwrap_or(defaults.batch_events_max),
    };
    check_limits(&limits, problems);
    let server = server_limits(&file.server, problems);
    let mut store = store_options(
        &file.storage,
        file.unsafe_no_fsync.unwrap_or(false),
        problems,
    );
    let manual_clock = match file.clock.as_deref().unwrap_or("system") {
        "system" => None,
        // Starts at the Unix epoch, so a replay can set any "now" first.
        "manual" => Some(std::sync::Arc::new(kairos_core::clock::ManualClock::new(
            jiff::Timestamp::UNIX_EPOCH,
        ))),
        other => {
            problems.push(format!(
                "clock {other:?}: expected \"system\" or \"manual\""
            ));
            None
        }
    };
    let clock: std::sync::Arc<dyn kairos_core::clock::Clock> = match &manual_clock {
        Some(manual) => manual.clone(),
        None => std::sync::Arc::new(kairos_core::clock::SystemClock),
    };
    // One clock for the whole process: store, engine, journeys, HTTP.
    store.clock = clock.clone();
    let engine = kairos_engine::EngineSettings {
        clock: clock.clone(),
        rules: identity_rules(&file.identity, problems),
        retention: retention(&file.profiles, problems),
        source_precedence: file.profiles.source_precedence.clone().unwrap_or_default(),
        shards: file.profiles.shards.unwrap_or(2),
        models: Default::default(),
        checkpoint_every_events: file
            .profiles
            .checkpoint_every_events
            .unwrap_or(kairos_engine::CHECKPOINT_EVERY_EVENTS),
        // Connected by `serve`, with the journeys stored then.
        effects: None,
    };
    if !(1..=64).contains(&engine.shards) {
        problems.push("profiles.shards: expected 1 to 64".to_string());
    }
    check_definitions("audiences", &file.audiences, problems, |text| {
        kairos_core::audience::parse(text).map(drop)
    });
    check_definitions("computed_traits", &file.computed_traits, problems, |text| {
        kairos_core::audience::parse_value(text).map(drop)
    });
    ServeConfig {
        engine,
        audiences: file.audiences.clone(),
        computed_traits: file.computed_traits.clone(),
        delivery: kairos_deliver::DeliverySettings {
            policy: contact_policy(&file.policy, problems),
            clock,
            ..delivery_settings(&file.delivery, problems)
        },
        manual_clock,
        listen,
        onnxruntime: file.models.onnxruntime.clone(),
        score_timeout: score_timeout(&file.models, problems),
        decision_retention: decision_retention(&file.decisions, problems),
        data_dir: file
            .data_dir
            .unwrap_or_else(|| PathBuf::from("./kairos-data")),
        admin_token: file.admin_token,
        admin_token_origin: None,
        access,
        json_logs,
        demo: file.demo.unwrap_or(true),
        test_faults,
        limits,
        server,
        store,
    }
}

fn score_timeout(config: &ModelsConfig, problems: &mut Vec<String>) -> Duration {
    let Some(text) = &config.score_timeout else {
        return kairos_models::runtime::SCORE_TIMEOUT_DEFAULT;
    };
    match parse_duration(text) {
        Some(timeout) if timeout <= Duration::from_secs(60) => timeout,
        _ => {
            problems.push(format!(
                "models.score_timeout {text:?}: expected a positive duration up to 60s, such as \"100ms\""
            ));
            kairos_models::runtime::SCORE_TIMEOUT_DEFAULT
        }
    }
}

/// Most connections a server may be configured for; each holds a file
/// descriptor and a few KB of buffers.
const CONNECTIONS_MAX_LIMIT: usize = 1_000_000;

fn server_limits(
    config: &ServerConfig,
    problems: &mut Vec<String>,
) -> kairos_http::server::ServerLimits {
    let mut limits = kairos_http::server::ServerLimits::default();
    if let Some(max) = config.connections_max {
        if !(1..=CONNECTIONS_MAX_LIMIT).contains(&max) {
            problems.push(format!(
                "server.connections_max: expected 1 to {CONNECTIONS_MAX_LIMIT}"
            ));
        }
        limits.connections_max = max;
    }
    for (field, text, target) in [
        (
            "header_read_timeout",
            &config.header_read_timeout,
            &mut limits.header_read_timeout,
        ),
        (
            "body_read_timeout",
            &config.body_read_timeout,
            &mut limits.body_read_timeout,
        ),
        (
            "idle_timeout",
            &config.idle_timeout,
            &mut limits.idle_timeout,
        ),
    ] {
        if let Some(text) = text {
            match parse_duration(text) {
                Some(parsed) => *target = parsed,
                None => problems.push(format!(
                    "server.{field} {text:?}: expected a positive duration such as \"10s\" or \"500ms\""
                )),
            }
        }
    }
    limits
}

/// The metrics token and the trusted proxies, checked.
fn access_settings(
    file: &FileConfig,
    problems: &mut Vec<String>,
) -> kairos_http::access::AccessSettings {
    if file
        .metrics_token
        .as_deref()
        .is_some_and(|token| token.trim().len() < 8)
    {
        problems.push("metrics_token: use at least 8 characters".to_string());
    }
    let mut trusted_proxies = Vec::new();
    for entry in file.trusted_proxies.iter().flatten() {
        match entry.parse() {
            Ok(proxy) => trusted_proxies.push(proxy),
            Err(problem) => problems.push(format!("trusted_proxies: {problem}")),
        }
    }
    kairos_http::access::AccessSettings {
        metrics_token: file.metrics_token.clone(),
        trusted_proxies,
    }
}

fn identity_rules(config: &IdentityConfig, problems: &mut Vec<String>) -> IdentityRules {
    let mut rules = IdentityRules::default();
    let type_name_ok = |name: &str| {
        !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    if let Some(custom) = &config.custom_types {
        for name in custom {
            if !type_name_ok(name) {
                problems.push(format!("identity.custom_types: {name:?} is not a type name (lower-case letters, digits and _)"));
            } else if ["user_id", "anonymous_id", "email", "phone"].contains(&name.as_str()) {
                problems.push(format!(
                    "identity.custom_types: {name:?} is built in; list only new types"
                ));
            }
        }
        rules.custom_types = custom.iter().cloned().collect();
    }
    let known = |name: &str| {
        ["user_id", "anonymous_id", "email", "phone"].contains(&name)
            || rules.custom_types.contains(name)
    };
    if let Some(limits) = &config.limits {
        for (kind, limit) in limits {
            if !known(kind) {
                problems.push(format!(
                    "identity.limits: unknown type {kind:?}; declare it in identity.custom_types"
                ));
            }
            if !(1..=kairos_core::identity::VALUES_PER_TYPE_MAX).contains(limit) {
                problems.push(format!(
                    "identity.limits.{kind}: expected 1 to {}",
                    kairos_core::identity::VALUES_PER_TYPE_MAX
                ));
            }
            rules.limits.insert(kind.clone(), *limit);
        }
    }
    if let Some(priority) = &config.priority {
        let mut seen = std::collections::BTreeSet::new();
        for kind in priority {
            if !known(kind) {
                problems.push(format!(
                    "identity.priority: unknown type {kind:?}; declare it in identity.custom_types"
                ));
            }
            if !seen.insert(kind) {
                problems.push(format!("identity.priority: {kind:?} is listed twice"));
            }
        }
        rules.priority = priority.clone();
    }
    if let Some(blocked) = &config.blocked_values {
        rules.blocked_values = blocked
            .iter()
            .map(|value| value.trim().to_lowercase())
            .collect();
    }
    if let Some(code) = &config.default_calling_code {
        let digits = code.trim_start_matches('+');
        if digits.is_empty() || digits.len() > 3 || !digits.chars().all(|c| c.is_ascii_digit()) {
            problems.push(format!(
                "identity.default_calling_code {code:?}: expected 1 to 3 digits, e.g. \"49\""
            ));
        }
        rules.default_calling_code = Some(digits.to_string());
    }
    rules
}

/// Names unique and 1 to 200 bytes; definitions parse (errors with line
/// and column).
fn check_definitions(
    section: &str,
    definitions: &[AudienceConfig],
    problems: &mut Vec<String>,
    parse: impl Fn(&str) -> Result<(), kairos_core::audience::DefinitionError>,
) {
    let mut names = std::collections::BTreeSet::new();
    for definition in definitions {
        let name = definition.name.trim();
        if name.is_empty() || name.len() > 200 {
            problems.push(format!(
                "{section}: every entry needs a name of 1 to 200 bytes"
            ));
        } else if !names.insert(name) {
            problems.push(format!("{section}: {name:?} is defined twice"));
        }
        if let Err(error) = parse(&definition.definition) {
            problems.push(format!("{section} {name:?}: {error}"));
        }
    }
}

fn retention(config: &ProfilesConfig, problems: &mut Vec<String>) -> Retention {
    let mut retention = Retention::default();
    if let Some(max) = config.timeline_events_max {
        if !(1..=1_000_000).contains(&max) {
            problems.push("profiles.timeline_events_max: expected 1 to 1000000".to_string());
        }
        retention.events_max = max;
    }
    if let Some(text) = &config.timeline_max_age {
        match parse_duration(text).and_then(|age| jiff::SignedDuration::try_from(age).ok()) {
            Some(age) => retention.max_age = Some(age),
            None => problems.push(format!(
                "profiles.timeline_max_age {text:?}: expected a positive duration such as \"365d\""
            )),
        }
    }
    retention
}

fn check_limits(limits: &IngestLimits, problems: &mut Vec<String>) {
    if !(256..=16 * 1024 * 1024).contains(&limits.event_bytes_max) {
        problems.push("limits.event_bytes_max: expected 256 to 16777216 bytes".to_string());
    }
    if !(1024..=64 * 1024 * 1024).contains(&limits.request_bytes_max) {
        problems.push("limits.request_bytes_max: expected 1024 to 67108864 bytes".to_string());
    }
    if limits.event_bytes_max > limits.request_bytes_max {
        problems
            .push("limits.event_bytes_max must not exceed limits.request_bytes_max".to_string());
    }
    if !(1..=100_000).contains(&limits.batch_events_max) {
        problems.push("limits.batch_events_max: expected 1 to 100000".to_string());
    }
}

fn store_options(
    storage: &StorageConfig,
    unsafe_no_fsync: bool,
    problems: &mut Vec<String>,
) -> StoreOptions {
    let defaults = StoreOptions::default();
    let log_partitions = storage.log_partitions.unwrap_or(defaults.log_partitions);
    if !(1..=1024).contains(&log_partitions) {
        problems.push("storage.log_partitions: expected 1 to 1024".to_string());
    }
    let dedup_window = match &storage.dedup_window {
        None => defaults.dedup_window,
        Some(text) => parse_duration(text).unwrap_or_else(|| {
            problems.push(format!("storage.dedup_window {text:?}: expected a positive duration such as \"24h\" or \"90m\""));
            defaults.dedup_window
        }),
    };
    let queue = storage
        .ingest_queue_requests_max
        .unwrap_or(defaults.ingest_queue_requests_max);
    if !(1..=1_000_000).contains(&queue) {
        problems.push("storage.ingest_queue_requests_max: expected 1 to 1000000".to_string());
    }
    StoreOptions {
        log_partitions,
        fsync: !unsafe_no_fsync,
        dedup_window,
        ingest_queue_requests_max: queue,
        cache_bytes: storage
            .cache_mb
            .map(|mb| mb * 1024 * 1024)
            .unwrap_or(defaults.cache_bytes),
        clock: defaults.clock,
    }
}

fn contact_policy(
    config: &PolicyConfig,
    problems: &mut Vec<String>,
) -> kairos_deliver::policy::ContactPolicy {
    let mut policy = kairos_deliver::policy::ContactPolicy {
        messages_per_day: config.messages_per_day,
        messages_per_channel_per_hour: config.messages_per_channel_per_hour,
        max_concurrent_journeys: config.max_concurrent_journeys,
        suppression_lists: config
            .suppression_lists
            .clone()
            .unwrap_or_else(|| vec!["do-not-contact".to_string()]),
        ..Default::default()
    };
    for list in &policy.suppression_lists {
        if let Err(message) = kairos_deliver::lists::checked_name(list) {
            problems.push(format!("policy.suppression_lists: {message}"));
        }
    }
    if let Some(text) = &config.quiet_hours {
        let parsed = text
            .split_once('-')
            .and_then(|(from, to)| Some((from.trim().parse().ok()?, to.trim().parse().ok()?)));
        match parsed {
            Some(hours) => policy.quiet_hours = Some(hours),
            None => problems.push(format!(
                "policy.quiet_hours {text:?}: expected local times \"HH:MM-HH:MM\", e.g. \"21:00-08:00\""
            )),
        }
    }
    if let Some(name) = &config.default_time_zone {
        match jiff::tz::TimeZone::get(name) {
            Ok(zone) => policy.default_time_zone = zone,
            Err(_) => problems.push(format!(
                "policy.default_time_zone {name:?}: expected an IANA time zone such as \"Europe/Berlin\""
            )),
        }
    }
    policy
}

fn delivery_settings(
    config: &DeliveryConfig,
    problems: &mut Vec<String>,
) -> kairos_deliver::DeliverySettings {
    let mut settings = kairos_deliver::DeliverySettings::default();
    let mut duration = |field: &str, text: &Option<String>, target: &mut Duration| {
        if let Some(text) = text {
            match parse_duration(text) {
                Some(parsed) => *target = parsed,
                None => problems.push(format!(
                    "delivery.{field} {text:?}: expected a positive duration such as \"5s\" or \"200ms\""
                )),
            }
        }
    };
    if let Some(schedule) = &config.retry_schedule {
        let mut steps = Vec::new();
        for text in schedule {
            let mut step = Duration::ZERO;
            duration("retry_schedule", &Some(text.clone()), &mut step);
            steps.push(step);
        }
        settings.retry_schedule = steps;
    }
    duration("timeout", &config.timeout, &mut settings.timeout);
    settings.addresses.allow_private_networks = config.allow_private_networks.unwrap_or(false);
    if let Some(path) = &config.ca_file {
        match kairos_deliver::tls::ExtraRoots::read(path) {
            Ok(roots) => settings.extra_roots = roots,
            Err(problem) => {
                problems.push(format!("delivery.ca_file {}: {problem}", path.display()))
            }
        }
    }
    if settings.retry_schedule.is_empty() {
        problems
            .push("delivery.retry_schedule: give at least one delay, e.g. [\"5s\", \"5m\"]".into());
    }
    if let Some(attempts) = config.max_attempts {
        if !(1..=100).contains(&attempts) {
            problems.push("delivery.max_attempts: expected 1 to 100".to_string());
        }
        settings.max_attempts = attempts;
    }
    settings
}

/// "24h", "90m", "30s", "2d", or a jiff friendly duration ("1h 30m").
/// Shortest decision retention: responses arrive within minutes to hours
/// of a decision, and less would drop them unattributed.
const DECISION_RETENTION_MIN: Duration = Duration::from_secs(3600);

fn decision_retention(config: &DecisionsConfig, problems: &mut Vec<String>) -> Duration {
    let Some(text) = &config.retention else {
        return kairos_store::outbox::DECISION_RETENTION_DEFAULT;
    };
    match parse_duration(text) {
        Some(retention) if retention >= DECISION_RETENTION_MIN => retention,
        _ => {
            problems.push(format!(
                "decisions.retention {text:?}: expected a duration of at least 1h, e.g. \"90d\""
            ));
            kairos_store::outbox::DECISION_RETENTION_DEFAULT
        }
    }
}

pub fn parse_duration(text: &str) -> Option<Duration> {
    let duration = match kairos_core::duration::parse_seconds(text) {
        Some(seconds) => Some(Duration::from_secs(seconds)),
        None => text
            .trim()
            .parse::<jiff::SignedDuration>()
            .ok()
            .and_then(|duration| duration.try_into().ok()),
    };
    duration.filter(|duration| !duration.is_zero())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn flags_win_over_environment() {
        let flags = FlagConfig {
            listen: Some("127.0.0.1:9000".into()),
            ..FlagConfig::default()
        };
        let config = load(
            &flags,
            &env(&[
                ("KAIROS_LISTEN", "127.0.0.1:7000"),
                ("KAIROS_BATCH_EVENTS_MAX", "10"),
            ]),
        )
        .unwrap();
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.limits.batch_events_max, 10);
    }

    #[test]
    fn access_settings_from_the_environment() {
        let config = load(
            &FlagConfig::default(),
            &env(&[
                ("KAIROS_ADMIN_TOKEN", "admin-token-1"),
                ("KAIROS_METRICS_TOKEN", "metrics-token-1"),
                ("KAIROS_TRUSTED_PROXIES", "10.0.0.0/8, ::1"),
            ]),
        )
        .unwrap();
        assert_eq!(
            config.admin_token_origin.as_deref(),
            Some("KAIROS_ADMIN_TOKEN")
        );
        assert_eq!(
            config.access.metrics_token.as_deref(),
            Some("metrics-token-1")
        );
        assert!(config.access.trusts(Some("10.9.8.7".parse().unwrap())));
        assert!(config.access.trusts(Some("::1".parse().unwrap())));
        assert!(!config.access.trusts(Some("192.168.0.1".parse().unwrap())));
        let problems = load(
            &FlagConfig::default(),
            &env(&[
                ("KAIROS_METRICS_TOKEN", "short"),
                ("KAIROS_TRUSTED_PROXIES", "proxy.local"),
            ]),
        )
        .unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let problems = load(
            &FlagConfig::default(),
            &env(&[
                ("KAIROS_LISTEN", "nowhere"),
                ("KAIROS_EVENT_BYTES_MAX", "lots"),
                ("KAIROS_DEDUP_WINDOW", "soon"),
                ("KAIROS_TYPO", "1"),
            ]),
        )
        .unwrap_err();
        assert_eq!(problems.len(), 4, "{problems:?}");
    }

    #[test]
    fn private_networks_are_refused_unless_allowed() {
        let strict = load(&FlagConfig::default(), &[]).unwrap();
        assert!(!strict.delivery.addresses.allow_private_networks);
        let allowed = load(
            &FlagConfig::default(),
            &env(&[("KAIROS_DELIVERY_ALLOW_PRIVATE_NETWORKS", "true")]),
        )
        .unwrap();
        assert!(allowed.delivery.addresses.allow_private_networks);
        let problems = load(
            &FlagConfig::default(),
            &env(&[("KAIROS_DELIVERY_ALLOW_PRIVATE_NETWORKS", "yes")]),
        )
        .unwrap_err();
        assert!(
            problems[0].contains("KAIROS_DELIVERY_ALLOW_PRIVATE_NETWORKS"),
            "{problems:?}"
        );
    }

    #[test]
    fn server_limits_default_and_parse() {
        let config = load(&FlagConfig::default(), &[]).unwrap();
        assert_eq!(config.server, kairos_http::server::ServerLimits::default());
        let mut problems = Vec::new();
        let limits = server_limits(
            &ServerConfig {
                connections_max: Some(100),
                header_read_timeout: Some("500ms".into()),
                body_read_timeout: Some("2s".into()),
                idle_timeout: Some("soon".into()),
            },
            &mut problems,
        );
        assert_eq!(limits.connections_max, 100);
        assert_eq!(limits.header_read_timeout, Duration::from_millis(500));
        assert_eq!(limits.body_read_timeout, Duration::from_secs(2));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("server.idle_timeout"));
    }

    #[test]
    fn an_unreadable_ca_file_is_a_problem_at_start() {
        let problems = load(
            &FlagConfig::default(),
            &env(&[("KAIROS_DELIVERY_CA_FILE", "/nonexistent/ca.pem")]),
        )
        .unwrap_err();
        assert!(
            problems[0].starts_with("delivery.ca_file /nonexistent/ca.pem"),
            "{problems:?}"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("24h"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("90m"), Some(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("0s"), None);
        assert_eq!(parse_duration("soon"), None);
    }
}
