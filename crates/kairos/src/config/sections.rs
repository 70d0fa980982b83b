//! Each section of the configuration checked and turned into the settings
//! a part of Kairos runs with; problems are collected, not returned early.

use std::time::Duration;

use kairos_core::identity::IdentityRules;
use kairos_core::normalize::IngestLimits;
use kairos_core::profile::Retention;
use kairos_store::StoreOptions;

use super::file::*;

pub(super) fn score_timeout(config: &ModelsConfig, problems: &mut Vec<String>) -> Duration {
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
pub(super) const CONNECTIONS_MAX_LIMIT: usize = 1_000_000;

pub(super) fn server_limits(
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
pub(super) fn access_settings(
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

pub(super) fn identity_rules(config: &IdentityConfig, problems: &mut Vec<String>) -> IdentityRules {
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
pub(super) fn check_definitions(
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

pub(super) fn retention(config: &ProfilesConfig, problems: &mut Vec<String>) -> Retention {
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

pub(super) fn check_limits(limits: &IngestLimits, problems: &mut Vec<String>) {
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

pub(super) fn store_options(
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

pub(super) fn contact_policy(
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

pub(super) fn delivery_settings(
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
pub(super) const DECISION_RETENTION_MIN: Duration = Duration::from_secs(3600);

pub(super) fn decision_retention(config: &DecisionsConfig, problems: &mut Vec<String>) -> Duration {
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

/// `[[offers]]` as JSON offers, each compiled as `POST /v1/offers` would
/// (a problem names the entry's index and name, and the field, line and
/// column in its template or condition); names unique, at most the
/// catalog's size.
pub(super) fn configured_offers(
    offers: &[toml::Table],
    problems: &mut Vec<String>,
) -> Vec<serde_json::Value> {
    use kairos_deliver::decisions::offer::{OFFER_BYTES_MAX, OFFERS_MAX};
    if offers.len() > OFFERS_MAX {
        problems.push(format!(
            "offers: at most {OFFERS_MAX} (the catalog's size), got {}",
            offers.len()
        ));
    }
    let mut names = std::collections::BTreeSet::new();
    let mut definitions = Vec::new();
    for (index, table) in offers.iter().enumerate() {
        let definition = toml_to_json(&toml::Value::Table(table.clone()));
        let name = definition["name"].as_str().unwrap_or_default().trim();
        let at = format!("offers[{index}] {name:?}");
        if definition.to_string().len() > OFFER_BYTES_MAX {
            problems.push(format!(
                "{at}: an offer is at most {OFFER_BYTES_MAX} bytes of JSON"
            ));
            continue;
        }
        match kairos_deliver::decisions::compile("off_config", 1, &definition) {
            // The message says the line and column in the template or
            // condition it names.
            Err(error) => problems.push(format!("{at}: {}", error.message)),
            Ok(offer) if !names.insert(offer.name.clone()) => {
                problems.push(format!("{at}: the name is used by an earlier entry"));
            }
            Ok(_) => definitions.push(definition),
        }
    }
    definitions
}

/// TOML as the JSON the API takes; a TOML date-time becomes its RFC 3339
/// text, as an offer's `valid_from` is written in JSON.
fn toml_to_json(value: &toml::Value) -> serde_json::Value {
    use serde_json::Value as Json;
    match value {
        toml::Value::String(text) => Json::String(text.clone()),
        toml::Value::Integer(number) => Json::from(*number),
        toml::Value::Float(number) => serde_json::Number::from_f64(*number)
            .map(Json::Number)
            .unwrap_or(Json::Null),
        toml::Value::Boolean(flag) => Json::Bool(*flag),
        toml::Value::Datetime(datetime) => Json::String(datetime.to_string()),
        toml::Value::Array(items) => Json::Array(items.iter().map(toml_to_json).collect()),
        toml::Value::Table(table) => Json::Object(
            table
                .iter()
                .map(|(key, value)| (key.clone(), toml_to_json(value)))
                .collect(),
        ),
    }
}
