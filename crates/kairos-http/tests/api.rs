//! In-process checks of the HTTP layer: the OpenAPI document matches the
//! router, and the request edge (auth, gzip, CORS) behaves as documented.
//! The end-to-end suite in tests/ drives the real binary with real SDKs.

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use kairos_core::clock::SystemClock;
use kairos_core::normalize::IngestLimits;
use kairos_http::{AppInner, AppState, Metrics, app};
use kairos_store::{Store, StoreOptions};
use tower::ServiceExt;

struct Harness {
    _dir: tempfile::TempDir,
    state: AppState,
    write_key: String,
}

fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let write_key = store
        .sources
        .create(
            "test",
            None,
            kairos_store::SourceTrust::Client,
            jiff::Timestamp::now(),
        )
        .unwrap()
        .write_key;
    let store = Arc::new(store);
    let engine = kairos_engine::Engine::start(store.clone(), Default::default()).unwrap();
    let state = AppState::new(AppInner {
        engine,
        store,
        admin_token: "admin-token".into(),
        access: Default::default(),
        limits: IngestLimits::default(),
        metrics: Metrics::new(),
        clock: Arc::new(SystemClock),
        faults: Some(Mutex::new(None)),
        matching: Default::default(),
        ingest_runtime: None,
        manual_clock: None,
        deliverer: None,
        address_policy: Default::default(),
    });
    Harness {
        _dir: dir,
        state,
        write_key,
    }
}

async fn send(harness: &Harness, request: Request<Body>) -> (StatusCode, serde_json::Value) {
    let response = app(harness.state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn collect_request(harness: &Harness, body: Vec<u8>, encoding: Option<&str>) -> Request<Body> {
    let mut builder = Request::post("/v1/batch")
        .header("content-type", "application/x-www-form-urlencoded") // as rudder-sdk-node sends it
        .header(
            "authorization",
            format!("Basic {}", base64_key(&harness.write_key)),
        );
    if let Some(encoding) = encoding {
        builder = builder.header("content-encoding", encoding);
    }
    builder.body(Body::from(body)).unwrap()
}

fn base64_key(key: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{key}:"))
}

#[test]
fn every_route_is_documented_and_every_documented_path_is_routed() {
    let spec: serde_json::Value = serde_json::from_str(kairos_http::ops::OPENAPI_JSON).unwrap();
    let documented: Vec<&String> = spec["paths"].as_object().unwrap().keys().collect();
    let source = include_str!("../src/lib.rs");
    let mut routed: Vec<String> = source
        .split(".route(")
        .skip(1)
        .map(|rest| {
            rest.trim_start()
                .trim_start_matches('"')
                .split('"')
                .next()
                .unwrap()
                .to_string()
        })
        .filter(|path| path.starts_with('/'))
        .collect();
    for name in ["track", "identify", "page", "screen", "group", "alias"] {
        routed.push(format!("/v1/{name}"));
        routed.push(format!("/v1/{}", &name[..1]));
    }
    for path in &routed {
        assert!(
            documented.contains(&path),
            "route {path} is missing from openapi.json (run scripts/openapi.py)"
        );
    }
    for path in documented {
        assert!(
            routed.contains(path),
            "openapi.json documents {path}, which is not routed"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn gzip_bodies_are_accepted_whatever_the_content_type_says() {
    let harness = harness();
    let body = br#"{"batch":[{"type":"track","event":"A","userId":"u","messageId":"g1"}]}"#;
    let (status, json) = send(
        &harness,
        collect_request(&harness, gzip(body), Some("gzip")),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["accepted"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn gzip_bombs_are_refused_with_the_limit_named() {
    let harness = harness();
    let mut body =
        br#"{"batch":[{"type":"track","event":"A","userId":"u","properties":{"p":""#.to_vec();
    body.extend(std::iter::repeat_n(b'x', 2_000_000));
    body.extend(br#""}}]}"#);
    let (status, json) = send(
        &harness,
        collect_request(&harness, gzip(&body), Some("gzip")),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        json["detail"]
            .as_str()
            .unwrap()
            .contains("limits.request_bytes_max"),
        "{json}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn preflights_allow_what_browser_sdks_send() {
    let harness = harness();
    let request = Request::options("/v1/t")
        .header("origin", "http://localhost:3000")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,authorization,x-retry-count",
        )
        .body(Body::empty())
        .unwrap();
    let response = app(harness.state.clone()).oneshot(request).await.unwrap();
    assert!(response.status().is_success());
    let headers = response.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "http://localhost:3000"
    );
    assert!(
        headers["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("x-retry-count")
    );
    assert!(
        headers["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .contains("Retry-After")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn forced_faults_after_commit_are_deduplicated_on_retry() {
    let harness = harness();
    *harness.state.faults.as_ref().unwrap().lock().unwrap() = Some(kairos_http::FaultPlan {
        fail_next: 1,
        status: 503,
        retry_after_seconds: Some(1),
        after_commit: true,
    });
    let body =
        br#"{"batch":[{"type":"track","event":"A","userId":"u","messageId":"retry-1"}]}"#.to_vec();
    let (first, _) = send(&harness, collect_request(&harness, body.clone(), None)).await;
    assert_eq!(first, StatusCode::SERVICE_UNAVAILABLE);
    let (second, json) = send(&harness, collect_request(&harness, body, None)).await;
    assert_eq!(second, StatusCode::OK);
    assert_eq!(
        json["duplicates"], 1,
        "the retry of a committed batch is stored once: {json}"
    );
}

/// A console session: the admin token for a cookie, accepted where the
/// token is; unsafe methods also need the CSRF token (docs/console.md).
#[tokio::test(flavor = "multi_thread")]
async fn a_console_session_opens_admin_routes_and_unsafe_methods_need_its_csrf_token() {
    let harness = harness();
    let login = |token: &str| {
        Request::post("/v1/console/session")
            .header("content-type", "application/json")
            .body(Body::from(format!(r#"{{"token":"{token}"}}"#)))
            .unwrap()
    };
    let (status, problem) = send(&harness, login("wrong-token")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{problem}");
    let response = app(harness.state.clone())
        .oneshot(login("admin-token"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let set_cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"));
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let answer: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let csrf = answer["csrf_token"].as_str().unwrap().to_string();

    let with_cookie = |method: &str, csrf: Option<&str>| {
        let mut builder = Request::builder()
            .method(method)
            .uri("/v1/admin/sources")
            .header("cookie", &cookie)
            .header("content-type", "application/json");
        if let Some(csrf) = csrf {
            builder = builder.header("x-csrf-token", csrf);
        }
        builder
            .body(Body::from(r#"{"name":"by-console"}"#))
            .unwrap()
    };
    assert_eq!(
        send(&harness, with_cookie("GET", None)).await.0,
        StatusCode::OK
    );
    let (status, problem) = send(&harness, with_cookie("POST", None)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(problem["code"], "csrf_token_invalid");
    let (status, _) = send(&harness, with_cookie("POST", Some("not-the-token"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, source) = send(&harness, with_cookie("POST", Some(&csrf))).await;
    assert_eq!(status, StatusCode::CREATED, "{source}");

    // No cookie, an unknown cookie: nothing.
    let stranger = Request::get("/v1/admin/sources")
        .header("cookie", "kairos_session=unknown")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&harness, stranger).await.0, StatusCode::UNAUTHORIZED);
}
