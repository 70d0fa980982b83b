//! Standard Webhooks signatures (`../shared/reference/standard-webhooks.md`):
//! HMAC-SHA256 over `{webhook-id}.{webhook-timestamp}.{body}` with the
//! decoded `whsec_` secret, sent as `v1,<base64>`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The `webhook-signature` header value, or why the secret is unusable.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Result<String, String> {
    let encoded = secret
        .strip_prefix("whsec_")
        .ok_or("a signing secret starts with whsec_")?;
    let key = BASE64
        .decode(encoded)
        .map_err(|error| format!("the signing secret is not base64: {error}"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|error| error.to_string())?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(format!("v1,{}", BASE64.encode(mac.finalize().into_bytes())))
}

/// The `webhook-signature` header for every secret in use (during a
/// rotation's overlap, the new and the old one): space-separated, as
/// Standard Webhooks allows, so a receiver holding either verifies.
pub fn sign_all(secrets: &[&str], id: &str, timestamp: i64, body: &[u8]) -> Result<String, String> {
    let signatures = secrets
        .iter()
        .map(|secret| sign(secret, id, timestamp, body))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(signatures.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference's test vector (computed by the official library).
    #[test]
    fn signs_the_reference_vector() {
        let signature = sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn signs_with_each_secret_in_use_space_separated() {
        let (new, old) = (
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_bm90LXRoZS1zYW1lLXNlY3JldC0xMjM0NTY=",
        );
        let both = sign_all(&[new, old], "id", 1, b"{}").unwrap();
        let expected = format!(
            "{} {}",
            sign(new, "id", 1, b"{}").unwrap(),
            sign(old, "id", 1, b"{}").unwrap()
        );
        assert_eq!(both, expected);
        assert_eq!(
            sign_all(&[new], "id", 1, b"{}").unwrap(),
            sign(new, "id", 1, b"{}").unwrap()
        );
    }

    #[test]
    fn refuses_a_malformed_secret() {
        assert!(sign("nope", "id", 1, b"{}").is_err());
        assert!(sign("whsec_***", "id", 1, b"{}").is_err());
    }
}
