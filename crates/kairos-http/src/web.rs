//! The web assets built into the binary (see `build.rs`): the browser SDK
//! at `/sdk/kairos.js`, the console at `/`, the demo store at `/demo/`.
//!
//! Every asset is answered with a strong ETag (`If-None-Match` → 304),
//! gzip when the client accepts it and the build wrote a `.gz` (with
//! `Vary: Accept-Encoding`), `nosniff`, and a cache policy per kind:
//! scripts and styles `public, max-age=300` (a new SDK reaches sites within
//! five minutes), pages `no-cache` (always revalidated, so a new build's
//! pages point at its scripts). A package missing from the build is
//! answered `503 <package>_not_built` saying what to install and run.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use crate::AppState;
use crate::problem::Problem;

/// The source the demo store sends to (created by `kairos serve`'s demo).
const DEMO_SOURCE: &str = "demo";

/// One embedded file.
pub struct Asset {
    pub name: &'static str,
    pub body: &'static [u8],
    pub gzip: Option<&'static [u8]>,
    /// Content hash (hex), the ETag's base.
    pub hash: &'static str,
}

/// One web package (`web/<name>`): its served files, none when it was not
/// built.
pub struct Package {
    pub name: &'static str,
    pub files: &'static [Asset],
}

include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

/// How long browsers and CDNs may reuse a script or stylesheet without
/// asking: short, so a fixed SDK reaches every site within minutes.
const SCRIPT_CACHE: &str = "public, max-age=300";

/// Pages are revalidated each time (cheap with the ETag), so a new build's
/// page never points at an old script.
const PAGE_CACHE: &str = "no-cache";

/// The console's pages load only their own scripts and styles and talk only
/// to this server; nothing may frame them (clickjacking).
const CONSOLE_CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The web packages this binary was built without (Node.js was missing).
pub fn missing_packages() -> Vec<&'static str> {
    PACKAGES
        .iter()
        .filter(|package| package.files.is_empty())
        .map(|package| package.name)
        .collect()
}

/// `GET /sdk/kairos.js`.
pub async fn sdk(headers: HeaderMap) -> Response {
    serve("sdk", "kairos.js", &headers)
}

/// `GET /`: the console's page.
pub async fn console_page(headers: HeaderMap) -> Response {
    serve("console", "index.html", &headers)
}

/// `GET /console/{file}`: the console's scripts and styles.
pub async fn console_asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    match file.as_str() {
        "console.js" | "console.css" => serve("console", &file, &headers),
        _ => not_found(&format!("/console/{file}")),
    }
}

/// `GET /demo`: the store lives at `/demo/` (relative links need the slash).
pub async fn demo_redirect() -> Response {
    Redirect::permanent("/demo/").into_response()
}

/// `GET /demo/`: the demo store's page.
pub async fn demo_page(headers: HeaderMap) -> Response {
    serve("console", "demo.html", &headers)
}

/// `GET /demo/{file}`: the demo store's scripts and styles, and
/// `config.json`: the `demo` source's write key (public by design: a write
/// key sits in every page that sends events).
pub async fn demo_asset(
    State(state): State<AppState>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Response {
    match file.as_str() {
        "demo.js" | "demo.css" => serve("console", &file, &headers),
        "config.json" => demo_config(&state),
        _ => not_found(&format!("/demo/{file}")),
    }
}

fn demo_config(state: &AppState) -> Response {
    let demo = state
        .store
        .sources
        .list()
        .into_iter()
        .find(|source| source.name == DEMO_SOURCE);
    match demo {
        Some(source) => (
            [(header::CACHE_CONTROL, "no-store")],
            axum::Json(serde_json::json!({"write_key": source.write_key})),
        )
            .into_response(),
        None => Problem::not_found(
            "there is no `demo` source: the demo store needs `kairos serve` started without --no-demo (it creates the source, its events and the abandoned-cart journey)",
        )
        .into_response(),
    }
}

fn not_found(path: &str) -> Response {
    Problem::not_found(format!("no file {path}; the console is at /")).into_response()
}

fn serve(package: &str, file: &str, headers: &HeaderMap) -> Response {
    let Some(package) = PACKAGES.iter().find(|p| p.name == package) else {
        return not_built(package);
    };
    match package.files.iter().find(|asset| asset.name == file) {
        Some(asset) => answer(asset, headers),
        None => not_built(package.name),
    }
}

fn not_built(package: &str) -> Response {
    let code = match package {
        "sdk" => "sdk_not_built",
        _ => "console_not_built",
    };
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        code,
        "Web assets not built",
        format!(
            "this Kairos binary was built without web/{package}/dist because Node.js and npm were not on PATH (or its build failed; see the cargo:warning of the build): install Node.js 18+ and npm, run `cd web/{package} && npm ci && npm run build`, then rebuild Kairos (`cargo build -p kairos`)"
        ),
    )
    .into_response()
}

fn answer(asset: &Asset, headers: &HeaderMap) -> Response {
    let gzip = asset.gzip.filter(|_| accepts_gzip(headers));
    let etag = match gzip {
        Some(_) => format!("\"{}-gz\"", asset.hash),
        None => format!("\"{}\"", asset.hash),
    };
    let kind = content_type(asset.name);
    let mut response = if none_match(headers, asset.hash) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let body = gzip.unwrap_or(asset.body);
        let mut response = (StatusCode::OK, body).into_response();
        if gzip.is_some() {
            response
                .headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        response
    };
    let out = response.headers_mut();
    out.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    out.insert(header::ETAG, HeaderValue::from_str(&etag).unwrap());
    out.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if asset.gzip.is_some() {
        out.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
    let is_page = kind.starts_with("text/html");
    out.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if is_page { PAGE_CACHE } else { SCRIPT_CACHE }),
    );
    if is_page {
        out.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONSOLE_CSP),
        );
        out.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        out.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        );
    }
    response
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("html") => "text/html; charset=utf-8",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// Whether `Accept-Encoding` lists gzip (or `*`) with a non-zero weight.
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    value.split(',').any(|item| {
        let mut parts = item.split(';').map(str::trim);
        let coding = parts.next().unwrap_or("");
        let refused = parts.any(|param| {
            param
                .strip_prefix("q=")
                .and_then(|q| q.parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
    })
}

/// Whether `If-None-Match` names this content, in either coding (the weak
/// comparison RFC 9110 prescribes for `If-None-Match`).
pub fn none_match(headers: &HeaderMap, hash: &str) -> bool {
    let Some(value) = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    value.split(',').map(str::trim).any(|tag| {
        let tag = tag.strip_prefix("W/").unwrap_or(tag);
        tag == "*" || tag.trim_matches('"').trim_end_matches("-gz") == hash
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: header::HeaderName, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, value.parse().unwrap());
        headers
    }

    #[test]
    fn a_package_missing_from_the_build_says_what_to_install() {
        let response = serve("sdk-missing", "kairos.js", &HeaderMap::new());
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let response = not_built("sdk");
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = futures_util::FutureExt::now_or_never(axum::body::to_bytes(
            response.into_body(),
            usize::MAX,
        ))
        .unwrap()
        .unwrap();
        let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(problem["code"], "sdk_not_built");
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains("install Node.js 18+ and npm"), "{detail}");
        assert!(
            detail.contains("cd web/sdk && npm ci && npm run build"),
            "{detail}"
        );
    }

    #[test]
    fn every_embedded_asset_has_a_known_content_type() {
        for package in PACKAGES {
            for asset in package.files {
                assert_ne!(
                    content_type(asset.name),
                    "application/octet-stream",
                    "{}",
                    asset.name
                );
                if let Some(gzip) = asset.gzip {
                    assert_eq!(&gzip[..2], &[0x1f, 0x8b], "{} gzip", asset.name);
                }
            }
        }
    }

    #[test]
    fn gzip_is_accepted_unless_weighted_zero() {
        let accept = |value| accepts_gzip(&headers(header::ACCEPT_ENCODING, value));
        assert!(accept("gzip, deflate, br"));
        assert!(accept("br;q=1.0, GZIP;q=0.5"));
        assert!(accept("*"));
        assert!(!accept("gzip;q=0"));
        assert!(!accept("br, identity"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn if_none_match_matches_either_coding_and_star() {
        let matches = |value| none_match(&headers(header::IF_NONE_MATCH, value), "abc");
        assert!(matches("\"abc\""));
        assert!(matches("\"x\", W/\"abc-gz\""));
        assert!(matches("*"));
        assert!(!matches("\"abcd\""));
        assert!(!none_match(&HeaderMap::new(), "abc"));
    }
}
