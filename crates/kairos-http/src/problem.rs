//! RFC 9457 problem details: the one place where errors become HTTP.
//!
//! Every crate's error reports an [`ErrorKind`]; [`kind_answer`] is the one
//! table that turns a kind into a status, a stable `code` (the last segment
//! of `type`) and a title, and the `From` impls below let handlers answer
//! any crate's error with `?`. Two kinds may carry a more specific code
//! naming the rule that was broken (`Invalid`: `journey_invalid`,
//! `url_invalid`; `Conflict`: `destination_in_use`); their status and title
//! still come from the table. Every `detail` says what was wrong and how to
//! fix it; I/O, corruption and internal errors are logged in full and
//! answered without internals. docs/api.md ("Errors") lists the table.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kairos_core::error::ErrorKind;
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

/// How one kind of error is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindAnswer {
    pub status: StatusCode,
    /// Stable machine-readable code, also the last segment of `type`.
    pub code: &'static str,
    pub title: &'static str,
    /// Sent as `Retry-After` for kinds a client should simply retry.
    pub retry_after_seconds: Option<u64>,
}

/// Seconds a client waits before retrying a retryable kind: long enough
/// for a full queue to drain a few groups, short enough not to matter.
const RETRY_AFTER_SECONDS: u64 = 1;

/// The error table: every kind's status, code and title.
pub const fn kind_answer(kind: ErrorKind) -> KindAnswer {
    const fn answer(status: StatusCode, code: &'static str, title: &'static str) -> KindAnswer {
        KindAnswer {
            status,
            code,
            title,
            retry_after_seconds: None,
        }
    }
    const fn retryable(status: StatusCode, code: &'static str, title: &'static str) -> KindAnswer {
        KindAnswer {
            status,
            code,
            title,
            retry_after_seconds: Some(RETRY_AFTER_SECONDS),
        }
    }
    match kind {
        ErrorKind::Invalid => answer(StatusCode::BAD_REQUEST, "invalid", "Bad request"),
        ErrorKind::NameTaken => answer(StatusCode::CONFLICT, "name_taken", "Name taken"),
        ErrorKind::NotFound => answer(StatusCode::NOT_FOUND, "not_found", "Not found"),
        ErrorKind::Conflict => answer(StatusCode::CONFLICT, "conflict", "Conflict"),
        ErrorKind::Overloaded => retryable(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "Overloaded, retry later",
        ),
        ErrorKind::Stopped => retryable(
            StatusCode::SERVICE_UNAVAILABLE,
            "stopped",
            "Not running, retry later",
        ),
        ErrorKind::Io => retryable(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            "Storage unavailable, retry later",
        ),
        ErrorKind::Corrupt => answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            "data_corrupt",
            "Stored data unreadable",
        ),
        ErrorKind::Internal => answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
        ),
    }
}

/// Whether an error of this kind may be shown to the client as it is;
/// the others can name paths, keys or internals and go to the log only.
fn detail_is_public(kind: ErrorKind) -> bool {
    !matches!(
        kind,
        ErrorKind::Io | ErrorKind::Corrupt | ErrorKind::Internal
    )
}

/// What the client is told instead of a private error's message.
fn private_detail(kind: ErrorKind, context: &str) -> String {
    match kind {
        ErrorKind::Io => format!(
            "{context}: the server's disk refused a read or write; nothing was acknowledged — retry after Retry-After, and if it persists check the data directory's disk (space, permissions) and the server log"
        ),
        ErrorKind::Corrupt => format!(
            "{context}: stored data could not be read; nothing was changed — the server log names what is damaged"
        ),
        _ => format!("{context} failed; nothing was acknowledged, retry the request"),
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

    /// An error of `kind`, answered as the table says.
    pub fn of(kind: ErrorKind, detail: impl Into<String>) -> Problem {
        let answer = kind_answer(kind);
        Problem {
            retry_after_seconds: answer.retry_after_seconds,
            ..Problem::new(answer.status, answer.code, answer.title, detail)
        }
    }

    /// Any crate's error by its kind; private kinds are logged in full
    /// and answered with what the client can do.
    pub fn from_error(kind: ErrorKind, context: &str, error: impl std::fmt::Display) -> Problem {
        if detail_is_public(kind) {
            return Problem::of(kind, error.to_string());
        }
        tracing::error!(%error, context, ?kind, "request failed");
        Problem::of(kind, private_detail(kind, context))
    }

    /// A more specific code for an `Invalid` or `Conflict` problem.
    fn with_code(mut self, code: &'static str) -> Problem {
        self.code = code;
        self
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Problem {
        Problem::of(ErrorKind::Invalid, detail).with_code(code)
    }

    /// 409: valid, but the current state forbids it (`code` names why).
    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Problem {
        Problem::of(ErrorKind::Conflict, detail).with_code(code)
    }

    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::of(ErrorKind::NotFound, detail)
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
        Problem::from_error(ErrorKind::Internal, context, error)
    }

    pub fn overloaded(detail: impl Into<String>) -> Problem {
        Problem::of(ErrorKind::Overloaded, detail)
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
        Problem::from_error(error.kind(), "storage", error)
    }
}

impl From<kairos_engine::EngineError> for Problem {
    fn from(error: kairos_engine::EngineError) -> Problem {
        Problem::from_error(error.kind(), "the engine", error)
    }
}

impl From<kairos_deliver::DeliverError> for Problem {
    fn from(error: kairos_deliver::DeliverError) -> Problem {
        Problem::from_error(error.kind(), "delivery", error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_an_error_status_code_and_title() {
        for kind in ErrorKind::ALL {
            let answer = kind_answer(kind);
            assert!(
                answer.status.is_client_error() || answer.status.is_server_error(),
                "{kind:?}"
            );
            assert!(
                !answer.code.is_empty() && !answer.title.is_empty(),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn codes_are_unique_so_a_type_names_one_kind() {
        let codes: std::collections::HashSet<_> = ErrorKind::ALL
            .iter()
            .map(|kind| kind_answer(*kind).code)
            .collect();
        assert_eq!(codes.len(), ErrorKind::ALL.len());
    }

    #[test]
    fn statuses_are_as_designed() {
        let status = |kind| kind_answer(kind).status.as_u16();
        assert_eq!(status(ErrorKind::Invalid), 400);
        assert_eq!(status(ErrorKind::NameTaken), 409);
        assert_eq!(status(ErrorKind::Conflict), 409);
        assert_eq!(status(ErrorKind::NotFound), 404);
        assert_eq!(status(ErrorKind::Overloaded), 503);
        assert_eq!(status(ErrorKind::Stopped), 503);
        assert_eq!(status(ErrorKind::Io), 503);
        assert_eq!(status(ErrorKind::Corrupt), 500);
        assert_eq!(status(ErrorKind::Internal), 500);
    }

    #[test]
    fn retryable_kinds_and_only_they_send_retry_after() {
        for kind in ErrorKind::ALL {
            assert_eq!(
                kind_answer(kind).retry_after_seconds.is_some(),
                kind.is_retryable(),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn an_io_failure_is_not_reported_as_corrupt_data() {
        let problem: Problem = kairos_store::StoreError::Io("fsync failed: EIO".into()).into();
        assert_eq!(problem.status.as_u16(), 503);
        assert_eq!(problem.code, "storage_unavailable");
        assert_eq!(problem.retry_after_seconds, Some(RETRY_AFTER_SECONDS));
        assert!(!problem.detail.contains("EIO"), "internals stay in the log");
        let corrupt: Problem = kairos_store::StoreError::Corrupt("event 7".into()).into();
        assert_eq!(
            (corrupt.status.as_u16(), corrupt.code),
            (500, "data_corrupt")
        );
    }

    #[test]
    fn a_taken_name_is_409_and_says_what_and_how_to_fix_it() {
        let problem: Problem = kairos_store::StoreError::NameTaken {
            thing: "journey",
            name: "welcome".into(),
        }
        .into();
        assert_eq!((problem.status.as_u16(), problem.code), (409, "name_taken"));
        assert!(problem.detail.contains("journey named \"welcome\" exists"));
        assert!(problem.detail.contains("choose another name"));
    }

    #[test]
    fn specific_codes_keep_the_kinds_status_and_title() {
        let problem = Problem::bad_request("journey_invalid", "no audience");
        let table = kind_answer(ErrorKind::Invalid);
        assert_eq!((problem.status, problem.title), (table.status, table.title));
        assert_eq!(problem.code, "journey_invalid");
    }
}
