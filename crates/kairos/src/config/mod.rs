//! Configuration in two stages: what the user typed (file, `KAIROS_*`
//! environment, flags — later ones win) → a validated [`ServeConfig`].
//! Every problem is collected and reported at once.
//!
//! - [`file`]: the shape the user writes (file sections, filled by the
//!   environment and flags too);
//! - `sections`: each section checked and turned into its settings;
//! - here: reading, merging and the validated [`ServeConfig`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kairos_core::normalize::IngestLimits;
use kairos_store::StoreOptions;

mod file;
mod sections;
#[cfg(test)]
mod tests;

pub use file::*;
pub use sections::parse_duration;
use sections::*;

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
    /// Offers from the config file (as `POST /v1/offers` takes them), each
    /// checked to compile; what they name is checked when they are applied.
    pub offers: Vec<serde_json::Value>,
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
            "RECOMMENDATIONS_ENABLED" => {
                file.recommendations.enabled = parse_env(name, value, problems)
            }
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
        recommendations: file.recommendations.enabled.unwrap_or(true),
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
    let offers = configured_offers(&file.offers, problems);
    ServeConfig {
        engine,
        offers,
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
