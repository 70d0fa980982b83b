//! RFC 9457 problem details: the one place where errors become HTTP.
//!
//! Every error a client can cause has a stable `code`, a status, and a
//! `detail` that says what was wrong and how to fix it. Internal errors are
//! logged in full and answered without internals.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kairos_core::normalize::FieldError;
use serde::Serialize;

/// One event's problem inside a batch.
#[derive(Debug, Clone, Serialize)]
pub struct EventProblem {
    pub index: usize,
    pub field: String,
    pub message: String,
}

impl EventProblem {
    pub fn from_field_errors(
        index: usize,
        errors: &[FieldError],
    ) -> impl Iterator<Item = EventProblem> + '_ {
        errors.iter().map(move |error| EventProblem {
            index,
            field: error.field.clone(),
            message: error.message.clone(),
        })
    }
}

/// An error answered as `application/problem+json`.
#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    /// Stable machine-readable code, also the last segment of `type`.
    pub code: &'static str,
    pub title: &'static str,
    pub detail: String,
    pub errors: Vec<EventProblem>,
    pub retry_after_seconds: Option<u64>,
    /// Where in a submitted definition the problem is (line, column).
    pub position: Option<(u32, u32)>,
}

#[derive(Serialize)]
struct ProblemBody<'a> {
    #[serde(rename = "type")]
    type_uri: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
    code: &'a str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    errors: &'a [EventProblem],
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    column: Option<u32>,
}

impl Problem {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Problem {
        Problem {
            status,
            code,
            title,
            detail: detail.into(),
            errors: Vec::new(),
            retry_after_seconds: None,
            position: None,
        }
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, code, "Bad request", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "not_found", "Not found", detail)
    }

    pub fn missing_write_key() -> Problem {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "write_key_missing",
            "Write key required",
            "send the source's write key as HTTP Basic auth (`Authorization: Basic base64(\"<writeKey>:\")`), as `writeKey` in the JSON body, or as `?writeKey=` in the query",
        )
    }

    pub fn unknown_write_key() -> Problem {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "write_key_unknown",
            "Unknown write key",
            "no source has this write key (it may have been rotated); copy the current key from `kairos sources list` or GET /v1/admin/sources",
        )
    }

    pub fn admin_unauthorized() -> Problem {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "admin_token_invalid",
            "Admin token required",
            "send `Authorization: Bearer <token>` with the admin token (KAIROS_ADMIN_TOKEN, or the token printed when the server started)",
        )
    }

    pub fn metrics_unauthorized() -> Problem {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "metrics_token_invalid",
            "Metrics token required",
            "send `Authorization: Bearer <token>` with the metrics token (metrics_token / KAIROS_METRICS_TOKEN) or the admin token; in Prometheus, set `authorization: {credentials: <token>}` on the scrape job",
        )
    }

    /// A failure the client cannot fix; details go to the log only.
    pub fn internal(context: &str, error: impl std::fmt::Display) -> Problem {
        tracing::error!(%error, context, "internal error");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            format!("{context} failed; nothing was acknowledged, retry the request"),
        )
    }

    pub fn overloaded(detail: impl Into<String>) -> Problem {
        Problem {
            retry_after_seconds: Some(1),
            ..Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "Overloaded, retry later",
                detail,
            )
        }
    }

    pub fn with_errors(mut self, errors: Vec<EventProblem>) -> Problem {
        self.errors = errors;
        self
    }
}

/// A `limit` query parameter: `default` when absent, else 1 to `max`.
pub fn limit_param(limit: Option<usize>, default: usize, max: usize) -> Result<usize, Problem> {
    let limit = limit.unwrap_or(default);
    if (1..=max).contains(&limit) {
        Ok(limit)
    } else {
        Err(Problem::bad_request(
            "limit_invalid",
            format!("limit must be from 1 to {max}"),
        ))
    }
}

impl Problem {
    /// The `application/problem+json` body.
    pub fn to_json(&self) -> Vec<u8> {
        let body = ProblemBody {
            type_uri: format!("https://kairos.dev/problems/{}", self.code),
            title: self.title,
            status: self.status.as_u16(),
            detail: &self.detail,
            code: self.code,
            errors: &self.errors,
            line: self.position.map(|(line, _)| line),
            column: self.position.map(|(_, column)| column),
        };
        serde_json::to_vec(&body).expect("a problem always serializes")
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let json = self.to_json();
        let mut response = (self.status, json).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(seconds) = self.retry_after_seconds {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<kairos_store::StoreError> for Problem {
    fn from(error: kairos_store::StoreError) -> Problem {
        match error {
            kairos_store::StoreError::QueueFull(_) => Problem::overloaded(error.to_string()),
            kairos_store::StoreError::Invalid(message) => Problem::bad_request("invalid", message),
            other => Problem::internal("storage", other),
        }
    }
}
