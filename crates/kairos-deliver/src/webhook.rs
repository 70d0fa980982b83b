//! One webhook attempt: the message POSTed with Standard Webhooks headers
//! (the same `webhook-id` on every attempt, a fresh timestamp and
//! signature). 2xx delivers it; 410 disables the destination; 429, 502,
//! 503 and 504 honour `Retry-After`; anything else is retried on the
//! schedule ([`crate::worker`]).

use std::time::Duration;

use jiff::Timestamp;
use kairos_store::{DestinationRecord, Message};

use crate::DeliverySettings;
use crate::address_policy;
use crate::destination::Outcome;
use crate::endpoint;
use crate::failure;
use crate::signing::sign_all;

/// Longest `Retry-After` honoured: an endpoint asking for more is tried
/// again after a day, like the retry schedule's longest step.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(24 * 3600);

pub(crate) async fn attempt(
    client: &reqwest::Client,
    destination: &DestinationRecord,
    message: &Message,
    settings: &DeliverySettings,
) -> Outcome {
    let url = match endpoint::webhook_url(&destination.url) {
        Ok(url) => url,
        Err(error) => return Outcome::Failed(error),
    };
    // An IP literal is connected to without resolution: check it here
    // (names are checked by the client's resolver, after resolution).
    if let Err(not_allowed) = address_policy::check_url(&url, settings.addresses) {
        tracing::warn!(destination = %destination.name, %not_allowed, "delivery refused");
        return Outcome::Failed(failure::NOT_ALLOWED.into());
    }
    let body = serde_json::to_vec(&message.payload).unwrap_or_default();
    let now = Timestamp::now();
    let timestamp = now.as_second();
    let secrets = destination.signing_secrets(now);
    let signature = match sign_all(&secrets, &message.id, timestamp, &body) {
        Ok(signature) => signature,
        Err(error) => {
            return Outcome::Retry { error, after: None };
        }
    };
    let mut request = client.post(url);
    // The destination's own headers first: the protocol's below win.
    for (name, value) in &destination.headers {
        request = request.header(name, value);
    }
    let request = request
        .timeout(settings.timeout)
        .header("content-type", "application/json")
        .header("user-agent", "Kairos-Webhooks/1")
        .header("webhook-id", &message.id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body);
    match request.send().await {
        Ok(response) if response.status().is_success() => Outcome::Delivered,
        Ok(response) if response.status().as_u16() == 410 => Outcome::Disable,
        Ok(response) => {
            let status = response.status().as_u16();
            let after = matches!(status, 429 | 502 | 503 | 504)
                .then(|| retry_after(response.headers()))
                .flatten();
            Outcome::Retry {
                error: format!("the endpoint answered {status}"),
                after,
            }
        }
        Err(error) if error.is_timeout() => Outcome::Retry {
            error: format!("timed out: no answer within {:?}", settings.timeout),
            after: None,
        },
        Err(error) => {
            // The detail (which host, which port, what it said) is for the
            // operator's log; API callers read a category.
            tracing::warn!(destination = %destination.name, error = %failure::chain(&error), "delivery attempt failed");
            Outcome::Retry {
                error: format!(
                    "could not reach the endpoint: {}",
                    failure::category(&error)
                ),
                after: None,
            }
        }
    }
}

/// `Retry-After` in seconds (HTTP dates are not worth the parser).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers
        .get("retry-after")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds).min(RETRY_AFTER_MAX))
}
