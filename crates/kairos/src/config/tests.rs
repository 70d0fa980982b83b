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

fn offers_of(text: &str) -> (Vec<serde_json::Value>, Vec<String>) {
    let file: FileConfig = toml::from_str(text).unwrap();
    let mut problems = Vec::new();
    let offers = configured_offers(&file.offers, &mut problems);
    (offers, problems)
}

#[test]
fn offers_in_toml_become_the_json_the_api_takes() {
    let (offers, problems) = offers_of(
        r#"
        [[offers]]
        name = "welcome"
        value = 2
        placements = ["home"]
        valid_from = 2030-01-01T00:00:00Z
        content.web = { title = "Welcome {{ traits.first_name }}" }
        "#,
    );
    assert_eq!(problems, Vec::<String>::new());
    assert_eq!(
        offers,
        vec![serde_json::json!({
            "name": "welcome", "value": 2, "placements": ["home"],
            "valid_from": "2030-01-01T00:00:00Z",
            "content": {"web": {"title": "Welcome {{ traits.first_name }}"}},
        })]
    );
}

#[test]
fn a_bad_offer_names_its_entry_line_and_column() {
    let (offers, problems) = offers_of(
        r#"
        [[offers]]
        name = "fine"
        content.web = "hi"

        [[offers]]
        name = "broken"
        eligibility = "trait plan =="
        content.web = "hi"

        [[offers]]
        name = "fine"
        content.web = "again"
        "#,
    );
    assert_eq!(offers.len(), 1);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].starts_with("offers[1] \"broken\": eligibility:")
            && problems[0].contains("line 1, column 13"),
        "{problems:?}"
    );
    assert!(problems[1].contains("offers[2] \"fine\""), "{problems:?}");
}
