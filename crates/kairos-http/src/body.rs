//! Reading a request body within its limit, decompressing gzip safely.

use std::io::Read;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};

use crate::problem::Problem;
use crate::server::BodyReadTimeout;

/// Reads the body, refusing anything over `bytes_max` before or after
/// decompression (a small gzip body can expand a thousandfold).
pub async fn read_body(
    headers: &HeaderMap,
    body: Body,
    bytes_max: usize,
) -> Result<Bytes, Problem> {
    let raw = axum::body::to_bytes(body, bytes_max)
        .await
        .map_err(|error| {
            if let Some(problem) = timeout_problem(&error) {
                return problem;
            }
            let too_large = std::error::Error::source(&error)
                .is_some_and(|source| source.to_string().contains("length limit"))
                || error.to_string().contains("length limit");
            if too_large {
                too_large_problem(bytes_max, "")
            } else {
                Problem::bad_request(
                    "body_unreadable",
                    format!("the request body could not be read: {error}"),
                )
            }
        })?;
    match content_encoding(headers)?.as_deref() {
        None | Some("identity") => Ok(raw),
        Some("gzip") | Some("x-gzip") => gunzip(&raw, bytes_max),
        Some(other) => Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "encoding_unsupported",
            "Unsupported content encoding",
            format!(
                "Content-Encoding {other:?} is not supported; send the body plain or gzip-compressed"
            ),
        )),
    }
}

/// A `408` if the body read failed for `server.body_read_timeout`.
pub(crate) fn timeout_problem(error: &(dyn std::error::Error + 'static)) -> Option<Problem> {
    body_timeout(error).map(|timeout| {
        Problem::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            "Request body too slow",
            format!("{timeout}; send the whole body without pauses"),
        )
    })
}

/// The body-read timeout behind `error`, if that is what ended the read.
fn body_timeout<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a BodyReadTimeout> {
    let mut source = Some(error);
    while let Some(error) = source {
        if let Some(timeout) = error.downcast_ref::<BodyReadTimeout>() {
            return Some(timeout);
        }
        source = error.source();
    }
    None
}

fn content_encoding(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    match headers.get(header::CONTENT_ENCODING) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .map(|text| Some(text.trim().to_ascii_lowercase()))
            .map_err(|_| {
                Problem::bad_request(
                    "encoding_invalid",
                    "the Content-Encoding header is not ASCII",
                )
            }),
    }
}

fn gunzip(compressed: &[u8], bytes_max: usize) -> Result<Bytes, Problem> {
    let mut decoder = flate2::read::MultiGzDecoder::new(compressed).take(bytes_max as u64 + 1);
    let mut out = Vec::with_capacity((compressed.len() * 4).min(bytes_max));
    decoder.read_to_end(&mut out).map_err(|error| {
        Problem::bad_request(
            "gzip_invalid",
            format!("the body says Content-Encoding: gzip but is not valid gzip ({error}); compress it or drop the header"),
        )
    })?;
    if out.len() > bytes_max {
        return Err(too_large_problem(bytes_max, " after decompression"));
    }
    Ok(Bytes::from(out))
}

fn too_large_problem(bytes_max: usize, when: &str) -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "request_too_large",
        "Request too large",
        format!(
            "the request body is over {bytes_max} bytes{when} (limits.request_bytes_max); send fewer events per batch"
        ),
    )
}
