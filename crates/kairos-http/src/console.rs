//! Console sessions: the admin token exchanged for a session cookie.
//!
//! Decisions (docs/console.md, "Login"):
//! - `POST /v1/console/session {"token": ...}` checks the admin token and
//!   sets `kairos_session` (HttpOnly, SameSite=Strict, Path=/, Secure when
//!   the client reached Kairos over https through a trusted proxy); the
//!   answer carries a CSRF token, which the page keeps in memory only. The
//!   admin token itself is never stored by the page, never in a URL.
//! - The cookie is accepted wherever the admin token is ([`crate::auth`]),
//!   so the console calls the public API and nothing else; unsafe methods
//!   also need `X-CSRF-Token` equal to the session's token (SameSite=Strict
//!   already keeps other sites' requests from carrying the cookie; the
//!   token is the second, independent lock).
//! - `GET` answers the CSRF token again (a reloaded page restores itself
//!   from the cookie); no route a foreign origin may read (CORS) is here.
//! - Sessions live in the process's memory: a restart logs everyone out,
//!   and a changed admin token ends every session made with the old one.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;

use crate::AppState;
use crate::admin::JsonBody;
use crate::problem::Problem;

/// The cookie's name.
pub const COOKIE: &str = "kairos_session";

/// The header carrying the CSRF token on unsafe methods.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A session lasts a working day; then the token is asked again.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// Sessions kept at most: logins are rare, and a flood of them (each needs
/// the admin token) must not grow memory without bound; the oldest goes.
const SESSIONS_MAX: usize = 1000;

/// Length of session ids and CSRF tokens: 32 characters of [0-9A-Za-z],
/// about 190 bits.
const TOKEN_CHARS: usize = 32;

struct Session {
    csrf: String,
    expires: Instant,
    /// The admin token the session was opened with: a session outlives
    /// neither a changed token nor the server it was made on.
    admin_token: String,
}

fn sessions() -> &'static Mutex<HashMap<String, Session>> {
    static SESSIONS: OnceLock<Mutex<HashMap<String, Session>>> = OnceLock::new();
    SESSIONS.get_or_init(Default::default)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    token: String,
}

/// `POST /v1/console/session`: the admin token for a session cookie.
pub async fn login(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    JsonBody(login): JsonBody<Login>,
) -> Result<Response, Problem> {
    if !crate::auth::constant_time_eq(login.token.as_bytes(), state.admin_token.as_bytes()) {
        return Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "admin_token_invalid",
            "Admin token required",
            "that is not the admin token: use the token printed when `kairos serve` started (or KAIROS_ADMIN_TOKEN)",
        ));
    }
    let id = kairos_store::random_token(TOKEN_CHARS);
    let csrf = kairos_store::random_token(TOKEN_CHARS);
    let session = Session {
        csrf: csrf.clone(),
        expires: Instant::now() + SESSION_TTL,
        admin_token: state.admin_token.clone(),
    };
    insert(id.clone(), session);
    let peer = peer.map(|Extension(ConnectInfo(address))| address.ip());
    let (scheme, _) = crate::access::public_origin(&headers, peer, &state.access);
    let cookie = format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        SESSION_TTL.as_secs(),
        if scheme == "https" { "; Secure" } else { "" }
    );
    let mut response = (StatusCode::CREATED, Json(describe(&csrf))).into_response();
    set_cookie(&mut response, &cookie);
    Ok(response)
}

/// `GET /v1/console/session`: the current session's CSRF token.
pub async fn current(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match lookup(&headers, &state) {
        Some((_, csrf)) => Json(describe(&csrf)).into_response(),
        None => no_session().into_response(),
    }
}

/// `DELETE /v1/console/session`: log out (needs the CSRF token).
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some((id, csrf)) = lookup(&headers, &state) else {
        return no_session().into_response();
    };
    if !csrf_matches(&headers, &csrf) {
        return csrf_problem().into_response();
    }
    sessions().lock().unwrap().remove(&id);
    let mut response = StatusCode::NO_CONTENT.into_response();
    set_cookie(
        &mut response,
        &format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    response
}

/// What a session cookie on `parts` allows: `None` without a live session,
/// `Some(Ok)` when the method is safe or the CSRF token matches,
/// `Some(Err)` for an unsafe method without the right CSRF token.
pub fn authorize(parts: &Parts, state: &AppState) -> Option<Result<(), Problem>> {
    let (_, csrf) = lookup(&parts.headers, state)?;
    let safe = parts.method.is_safe();
    Some(if safe || csrf_matches(&parts.headers, &csrf) {
        Ok(())
    } else {
        Err(csrf_problem())
    })
}

fn describe(csrf: &str) -> serde_json::Value {
    json!({
        "csrf_token": csrf,
        "csrf_header": "X-CSRF-Token",
        "expires_in_seconds": SESSION_TTL.as_secs(),
    })
}

fn insert(id: String, session: Session) {
    let mut sessions = sessions().lock().unwrap();
    let now = Instant::now();
    sessions.retain(|_, session| session.expires > now);
    if sessions.len() >= SESSIONS_MAX {
        let oldest = sessions
            .iter()
            .min_by_key(|(_, session)| session.expires)
            .map(|(id, _)| id.clone());
        if let Some(oldest) = oldest {
            sessions.remove(&oldest);
        }
    }
    sessions.insert(id, session);
}

/// The live session named by the request's cookie: (id, CSRF token).
fn lookup(headers: &HeaderMap, state: &AppState) -> Option<(String, String)> {
    let id = cookie_value(headers, COOKIE)?;
    let sessions = sessions().lock().unwrap();
    let session = sessions.get(id)?;
    let live = session.expires > Instant::now()
        && crate::auth::constant_time_eq(
            session.admin_token.as_bytes(),
            state.admin_token.as_bytes(),
        );
    live.then(|| (id.to_string(), session.csrf.clone()))
}

/// The value of cookie `name` in the `Cookie` headers.
pub fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty())
}

fn csrf_matches(headers: &HeaderMap, csrf: &str) -> bool {
    headers
        .get(CSRF_HEADER)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|given| crate::auth::constant_time_eq(given.as_bytes(), csrf.as_bytes()))
}

fn set_cookie(response: &mut Response, cookie: &str) {
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(cookie).expect("cookie is ASCII"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

fn no_session() -> Problem {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "session_missing",
        "No console session",
        "no live console session: log in with POST /v1/console/session {\"token\": <admin token>} (sessions end after 12 hours and when the server restarts)",
    )
}

fn csrf_problem() -> Problem {
    Problem::new(
        StatusCode::FORBIDDEN,
        "csrf_token_invalid",
        "CSRF token missing or wrong",
        "a console session's POST, PUT, PATCH and DELETE need the header X-CSRF-Token with the csrf_token answered by POST or GET /v1/console/session",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_values_are_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, "a=1; kairos_session=abc".parse().unwrap());
        headers.append(header::COOKIE, "b=2".parse().unwrap());
        assert_eq!(cookie_value(&headers, COOKIE), Some("abc"));
        assert_eq!(cookie_value(&headers, "b"), Some("2"));
        assert_eq!(cookie_value(&headers, "kairos"), None);
        headers.insert(header::COOKIE, "kairos_session=".parse().unwrap());
        assert_eq!(cookie_value(&headers, COOKIE), None);
    }
}
