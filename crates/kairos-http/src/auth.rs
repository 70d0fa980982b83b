//! Credentials: source write keys on collection, a bearer token on admin.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use base64::Engine;

use crate::AppState;
use crate::problem::Problem;

/// The write key from `Authorization: Basic` (user part, or the password
/// part when the user part is empty).
pub fn basic_write_key(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':').unwrap_or((&text, ""));
    let key = if user.is_empty() { password } else { user };
    (!key.is_empty()).then(|| key.to_string())
}

/// The `writeKey` query parameter (RudderStack beacon, sourceConfig).
pub fn query_write_key(query: Option<&str>) -> Option<String> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| *name == "writeKey")
        .map(|(_, value)| percent_decode(value))
        .filter(|key| !key.is_empty())
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' if index + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).ok();
                match hex.and_then(|hex| u8::from_str_radix(hex, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        index += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            byte => out.push(byte),
        }
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Extractor that admits only requests bearing the admin token, or a
/// console session cookie (with its CSRF token on unsafe methods, see
/// [`crate::console`]).
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Admin, Problem> {
        match bearer_token(&parts.headers) {
            Some(token) if constant_time_eq(token.as_bytes(), state.admin_token.as_bytes()) => {
                Ok(Admin)
            }
            Some(_) => Err(Problem::admin_unauthorized()),
            None => match crate::console::authorize(parts, state) {
                Some(allowed) => allowed.map(|()| Admin),
                None => Err(Problem::admin_unauthorized()),
            },
        }
    }
}

/// Extractor for `/metrics`: the admin token, or the read-only metrics
/// token when one is configured (what a Prometheus scraper is given).
pub struct MetricsReader;

impl FromRequestParts<AppState> for MetricsReader {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<MetricsReader, Problem> {
        let presented = bearer_token(&parts.headers).map(str::as_bytes);
        let matches = |expected: &str| {
            presented.is_some_and(|token| constant_time_eq(token, expected.as_bytes()))
        };
        let metrics_token = state.access.metrics_token.as_deref();
        let console = || presented.is_none() && crate::console::authorize(parts, state).is_some();
        if matches(&state.admin_token) || metrics_token.is_some_and(matches) || console() {
            Ok(MetricsReader)
        } else {
            Err(Problem::metrics_unauthorized())
        }
    }
}

/// The token of `Authorization: Bearer <token>`.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The source a page's request comes from: its write key, as HTTP Basic
/// auth or `?writeKey=` (the in-app stream, page decisions).
pub(crate) fn page_source(
    state: &crate::AppState,
    headers: &axum::http::HeaderMap,
    raw_query: Option<&str>,
) -> Result<std::sync::Arc<kairos_store::sources::Source>, Problem> {
    let key = basic_write_key(headers)
        .or_else(|| query_write_key(raw_query))
        .ok_or_else(Problem::missing_write_key)?;
    state
        .store
        .sources
        .by_write_key(&key, state.clock.now())
        .ok_or_else(Problem::unknown_write_key)
}

/// Whether a page proved who it is for: `Ok(true)` with a valid identity
/// token for `identifier` (`type:value`), `Ok(false)` for an anonymous id
/// without a token (a page may act as its own visitor), else 403. A write
/// key is public: without this, any page could act as anyone. `acting`
/// says what the page does ("listening", "deciding").
pub(crate) fn page_identity(
    source: &kairos_store::SourceRecord,
    text: &str,
    identifier: &kairos_core::identity::Identifier,
    token: Option<&str>,
    acting: &str,
) -> Result<bool, Problem> {
    if token.is_some_and(|token| {
        kairos_deliver::in_app::token_is_valid(&source.identity_secret, text, token)
    }) {
        return Ok(true);
    }
    if identifier.kind == "anonymous_id" && token.is_none() {
        return Ok(false);
    }
    Err(Problem::new(
        axum::http::StatusCode::FORBIDDEN,
        "identity_token_invalid",
        "Identity token missing or wrong",
        format!(
            "a write key is public, so {acting} as {text} needs an identity token: your backend \
             computes hex(HMAC-SHA256(identity_secret, \"{text}\")) with the source's \
             identity_secret (GET /v1/admin/sources/{{id}}) and passes it as `token`; anonymous \
             visitors act as anonymous_id:<their own id> without one"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_user_or_password() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            "Basic V0tfVEVTVF8xMjM6".parse().unwrap(),
        ); // WK_TEST_123:
        assert_eq!(basic_write_key(&headers).as_deref(), Some("WK_TEST_123"));
        headers.insert(header::AUTHORIZATION, "Basic OmtleQ==".parse().unwrap()); // :key
        assert_eq!(basic_write_key(&headers).as_deref(), Some("key"));
        headers.insert(header::AUTHORIZATION, "Bearer x".parse().unwrap());
        assert_eq!(basic_write_key(&headers), None);
    }

    #[test]
    fn query_keys_are_percent_decoded() {
        assert_eq!(
            query_write_key(Some("p=npm&writeKey=a%2Bb")).as_deref(),
            Some("a+b")
        );
        assert_eq!(query_write_key(Some("writeKey=")), None);
        assert_eq!(query_write_key(Some("x=%")), None);
        assert_eq!(query_write_key(Some("writeKey=%4")).as_deref(), Some("%4"));
    }
}
