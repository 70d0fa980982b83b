//! Splitting a collection request body into its events.
//!
//! Two shapes arrive: a batch envelope `{"batch": [...], "sentAt": ...}` and,
//! on single-event endpoints, the event object itself. Events stay raw JSON
//! slices of the body until `normalize_event` looks at them.

use jiff::Timestamp;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::normalize::{IngestLimits, parse_timestamp};

/// A collection request split into its events.
#[derive(Debug)]
pub struct CollectRequest<'a> {
    pub events: Vec<&'a RawValue>,
    pub sent_at: Option<Timestamp>,
    /// `writeKey` from the body (the Segment SDKs put it there too).
    pub write_key: Option<String>,
}

/// Why a request as a whole cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("the body is not valid JSON: {0}")]
    NotJson(String),
    #[error("the body must be a JSON object{0}")]
    NotObject(&'static str),
    #[error("a batch request needs a \"batch\" array of events")]
    MissingBatch,
    #[error(
        "the batch has {count} events; the limit is {limit} (limits.batch_events_max); split it into smaller batches"
    )]
    TooManyEvents { count: usize, limit: usize },
    #[error("sentAt {0:?} is not a date-time; send RFC 3339, e.g. \"2024-05-01T12:00:00.000Z\"")]
    BadSentAt(String),
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    batch: Option<Vec<&'a RawValue>>,
    #[serde(rename = "sentAt", default)]
    sent_at: Option<serde_json::Value>,
    #[serde(rename = "writeKey", default)]
    write_key: Option<serde_json::Value>,
}

/// Reads a `/v1/batch`-shaped body.
pub fn parse_batch<'a>(
    body: &'a [u8],
    limits: &IngestLimits,
) -> Result<CollectRequest<'a>, RequestError> {
    let envelope = parse_envelope(body, " with a \"batch\" array")?;
    let events = envelope.batch.ok_or(RequestError::MissingBatch)?;
    if events.len() > limits.batch_events_max {
        return Err(RequestError::TooManyEvents {
            count: events.len(),
            limit: limits.batch_events_max,
        });
    }
    Ok(CollectRequest {
        events,
        sent_at: sent_at(envelope.sent_at)?,
        write_key: write_key(envelope.write_key),
    })
}

/// Reads a single-event body (`/v1/track` and friends).
pub fn parse_single<'a>(body: &'a [u8]) -> Result<CollectRequest<'a>, RequestError> {
    let envelope = parse_envelope(body, " (the event itself)")?;
    let event: &RawValue =
        serde_json::from_slice(body).map_err(|error| RequestError::NotJson(error.to_string()))?;
    // The event's own sentAt is read by normalization; keep it out of the
    // envelope so it is not applied twice.
    Ok(CollectRequest {
        events: vec![event],
        sent_at: None,
        write_key: write_key(envelope.write_key),
    })
}

fn parse_envelope<'a>(body: &'a [u8], shape: &'static str) -> Result<Envelope<'a>, RequestError> {
    let first = body.iter().find(|byte| !byte.is_ascii_whitespace());
    match first {
        None => return Err(RequestError::NotJson("the body is empty".to_string())),
        Some(b'{') => {}
        Some(_) => {
            // Valid JSON of another shape gets a clearer message than a parse error.
            return Err(
                match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                    Ok(_) => RequestError::NotObject(shape),
                    Err(error) => RequestError::NotJson(error.to_string()),
                },
            );
        }
    }
    serde_json::from_slice(body).map_err(|error| {
        if error.is_data() {
            RequestError::NotObject(shape)
        } else {
            RequestError::NotJson(error.to_string())
        }
    })
}

fn sent_at(value: Option<serde_json::Value>) -> Result<Option<Timestamp>, RequestError> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(text)) => parse_timestamp(&text)
            .map(Some)
            .ok_or(RequestError::BadSentAt(text)),
        Some(other) => Err(RequestError::BadSentAt(other.to_string())),
    }
}

fn write_key(value: Option<serde_json::Value>) -> Option<String> {
    match value {
        Some(serde_json::Value::String(key)) if !key.is_empty() => Some(key),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_events_stay_raw_slices_of_the_body() {
        let body = br#"{"batch":[{"type":"track","event":"A"},{"type":"page"}],"sentAt":"2024-01-01T00:00:00Z","writeKey":"k"}"#;
        let request = parse_batch(body, &IngestLimits::default()).unwrap();
        assert_eq!(request.events.len(), 2);
        assert_eq!(request.events[1].get(), r#"{"type":"page"}"#);
        assert_eq!(request.write_key.as_deref(), Some("k"));
        assert!(request.sent_at.is_some());
    }

    #[test]
    fn batch_limit_names_the_config_key() {
        let limits = IngestLimits {
            batch_events_max: 1,
            ..IngestLimits::default()
        };
        let error = parse_batch(br#"{"batch":[{},{}]}"#, &limits).unwrap_err();
        assert!(error.to_string().contains("limits.batch_events_max"));
    }

    #[test]
    fn wrong_shapes_get_specific_errors() {
        let limits = IngestLimits::default();
        assert_eq!(
            parse_batch(b"[1]", &limits).unwrap_err(),
            RequestError::NotObject(" with a \"batch\" array")
        );
        assert_eq!(
            parse_batch(b"{}", &limits).unwrap_err(),
            RequestError::MissingBatch
        );
        assert!(matches!(
            parse_batch(b"{\"batch\":[", &limits).unwrap_err(),
            RequestError::NotJson(_)
        ));
        assert!(matches!(
            parse_batch(br#"{"batch":"x"}"#, &limits).unwrap_err(),
            RequestError::NotObject(_)
        ));
        assert!(matches!(
            parse_batch(br#"{"batch":[],"sentAt":"soon"}"#, &limits).unwrap_err(),
            RequestError::BadSentAt(_)
        ));
    }
}
