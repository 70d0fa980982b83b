//! Operations endpoints and the cross-cutting layers: health, readiness,
//! Prometheus metrics, the OpenAPI document, CORS and request metrics.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::AppState;
use crate::problem::Problem;

/// The OpenAPI 3.1 document, written by hand and checked against the router
/// by a test (every route is documented).
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

pub async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

pub async fn readyz(State(state): State<AppState>) -> Response {
    if state.store.writer.is_running() {
        axum::Json(json!({"status": "ready"})).into_response()
    } else {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "Not ready",
            "the log writer has stopped; see the server log",
        )
        .into_response()
    }
}

/// Prometheus metrics; they reveal traffic and names, so they need the
/// admin token or the read-only metrics token ([`crate::auth::MetricsReader`]).
pub async fn metrics(
    _reader: crate::auth::MetricsReader,
    State(state): State<AppState>,
) -> Response {
    state
        .metrics
        .ingest_queue_depth
        .set(state.store.writer.queue_depth() as i64);
    let metrics = &state.metrics;
    metrics
        .log_committed_seq
        .set(state.store.writer.committed_seq() as i64);
    metrics
        .engine_applied_seq
        .set(state.engine.applied_seq() as i64);
    metrics
        .engine_restored_seq
        .set(state.engine.restored_from().unwrap_or(0) as i64);
    metrics.observe_engine(state.engine.counters());
    if let Some(deliverer) = &state.deliverer {
        let pages = deliverer.hub().page_count();
        metrics.in_app_pages.set(pages as i64);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON).into_response()
}

pub async fn not_found(request: Request) -> Response {
    Problem::not_found(format!(
        "no endpoint {} {}; the API is described at /openapi.json",
        request.method(),
        request.uri().path()
    ))
    .into_response()
}

pub async fn method_not_allowed(request: Request) -> Response {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "Method not allowed",
        format!(
            "{} is not allowed on {}; see /openapi.json",
            request.method(),
            request.uri().path()
        ),
    )
    .into_response()
}

/// Records count and latency per route template (bounded label values).
pub async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let started = Instant::now();
    let response = next.run(request).await;
    let labels = vec![
        ("route", route.clone()),
        ("status", response.status().as_u16().to_string()),
    ];
    state.metrics.requests.get_or_create(&labels).inc();
    state
        .metrics
        .request_seconds
        .get_or_create(&vec![("route", route)])
        .observe(started.elapsed().as_secs_f64());
    response
}

const ALLOWED_HEADERS: &str = "authorization, content-type, content-encoding, x-retry-count, anonymousid, sentat, x-requested-with";

/// CORS for browser SDKs on any origin, on the browser routes only
/// ([`crate::access::is_browser_route`]): preflights answered here, and every
/// response lets the page read `Retry-After` (analytics-next needs it).
/// Other routes (admin, profiles, metrics) get no CORS headers, so a page
/// on another origin can never read their answers.
pub async fn cors(request: Request, next: Next) -> Response {
    if !crate::access::is_browser_route(request.uri().path()) {
        return next.run(request).await;
    }
    let origin = request.headers().get(header::ORIGIN).cloned();
    if request.method() == Method::OPTIONS {
        let requested = request
            .headers()
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .cloned();
        let mut response = StatusCode::NO_CONTENT.into_response();
        let headers = response.headers_mut();
        allow_origin(headers, origin);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, PUT, DELETE, OPTIONS"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            requested.unwrap_or(HeaderValue::from_static(ALLOWED_HEADERS)),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("86400"),
        );
        return response;
    }
    let mut response = next.run(request).await;
    allow_origin(response.headers_mut(), origin);
    response
}

fn allow_origin(headers: &mut HeaderMap, origin: Option<HeaderValue>) {
    match origin {
        // Echoing the origin (not `*`) lets SDKs that send credentials work;
        // only browser routes come here.
        Some(origin) => {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
            headers.append(header::VARY, HeaderValue::from_static("Origin"));
        }
        None => {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
        }
    }
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Retry-After"),
    );
}
