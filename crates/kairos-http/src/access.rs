//! Who may read what beyond the admin token: the read-only metrics token,
//! the proxies whose forwarding headers are believed, and which routes a
//! browser page on another origin may call (CORS).
//!
//! Decisions (docs/configuration.md, "Access"):
//! - `/metrics` answers the admin token or a dedicated `metrics_token`, so a
//!   Prometheus scraper does not need the token that can erase profiles;
//! - `X-Forwarded-Host` / `X-Forwarded-Proto` are read only when the TCP peer
//!   is one of `trusted_proxies` (anyone else could make the settings Kairos
//!   hands to SDKs point at a host of their choosing);
//! - only the collection endpoints and the in-app stream are meant for
//!   browsers; every other route gets no CORS headers at all, so a page on
//!   another origin can never read an admin answer (and credentials are
//!   never allowed there).

use std::net::IpAddr;

use axum::http::{HeaderMap, header};
use kairos_core::EventType;

/// The access settings of a running server (all optional).
#[derive(Debug, Clone, Default)]
pub struct AccessSettings {
    /// A bearer token that opens `/metrics` and nothing else.
    pub metrics_token: Option<String>,
    /// Peers allowed to set `X-Forwarded-Host` and `X-Forwarded-Proto`.
    pub trusted_proxies: Vec<TrustedProxy>,
}

impl AccessSettings {
    /// Whether `peer` is a configured proxy (no peer known: no).
    pub fn trusts(&self, peer: Option<IpAddr>) -> bool {
        peer.is_some_and(|peer| self.trusted_proxies.iter().any(|net| net.contains(peer)))
    }
}

/// One address or CIDR block, e.g. `10.0.0.0/8`, `127.0.0.1`, `::1/128`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustedProxy {
    network: IpAddr,
    prefix_bits: u8,
}

impl std::str::FromStr for TrustedProxy {
    type Err = String;

    fn from_str(text: &str) -> Result<TrustedProxy, String> {
        let invalid =
            || format!("{text:?}: expected an IP address or a CIDR block such as 10.0.0.0/8");
        let (address, bits) = match text.trim().split_once('/') {
            Some((address, bits)) => (address, Some(bits)),
            None => (text.trim(), None),
        };
        let network: IpAddr = address.parse().map_err(|_| invalid())?;
        let width = if network.is_ipv4() { 32 } else { 128 };
        let prefix_bits = match bits {
            Some(bits) => bits
                .parse::<u8>()
                .ok()
                .filter(|bits| *bits <= width)
                .ok_or_else(invalid)?,
            None => width,
        };
        Ok(TrustedProxy {
            network,
            prefix_bits,
        })
    }
}

impl TrustedProxy {
    pub fn contains(&self, address: IpAddr) -> bool {
        // An IPv4 peer may arrive as an IPv4-mapped IPv6 address.
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
            v4 => v4,
        };
        match (self.network, address) {
            (IpAddr::V4(network), IpAddr::V4(address)) => same_prefix(
                u32::from(network).into(),
                u32::from(address).into(),
                self.prefix_bits,
                32,
            ),
            (IpAddr::V6(network), IpAddr::V6(address)) => same_prefix(
                u128::from(network),
                u128::from(address),
                self.prefix_bits,
                128,
            ),
            _ => false,
        }
    }
}

fn same_prefix(network: u128, address: u128, prefix_bits: u8, width: u32) -> bool {
    let ignored = width - u32::from(prefix_bits);
    let shift = |value: u128| value.checked_shr(ignored).unwrap_or(0);
    shift(network) == shift(address)
}

/// The scheme and host a client used to reach us, for settings that point
/// SDKs back at this server: the forwarding headers only from a trusted
/// proxy, else the `Host` header.
pub fn public_origin(
    headers: &HeaderMap,
    peer: Option<IpAddr>,
    access: &AccessSettings,
) -> (&'static str, String) {
    let forwarded = |name: &str| {
        access
            .trusts(peer)
            .then(|| headers.get(name))
            .flatten()
            .and_then(|value| value.to_str().ok())
    };
    let host = forwarded("x-forwarded-host")
        .or_else(|| {
            headers
                .get(header::HOST)
                .and_then(|value| value.to_str().ok())
        })
        .unwrap_or("127.0.0.1:8080")
        .to_string();
    let https =
        forwarded("x-forwarded-proto").is_some_and(|proto| proto.eq_ignore_ascii_case("https"));
    (if https { "https" } else { "http" }, host)
}

/// Routes a web page on any origin may call: collection (the browser SDKs
/// and their settings) and the in-app message stream. Everything else is
/// for servers and operators, and gets no CORS headers.
pub fn is_browser_route(path: &str) -> bool {
    const COLLECTION: [&str; 9] = [
        "/v1/batch",
        "/v1/b",
        "/v1/import",
        "/beacon/v1/batch",
        "/sourceConfig",
        "/sourceConfig/",
        "/v1/in-app/stream",
        "/v1/in-app/decide",
        "/v1/in-app/recommendations",
    ];
    if COLLECTION.contains(&path) {
        return true;
    }
    if let Some(rest) = path.strip_prefix("/v1/projects/") {
        return rest.ends_with("/settings") && rest.matches('/').count() == 1;
    }
    let Some(name) = path.strip_prefix("/v1/") else {
        return false;
    };
    EventType::ALL
        .iter()
        .any(|kind| name == kind.as_str() || name == &kind.as_str()[..1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(text: &str) -> TrustedProxy {
        text.parse().unwrap()
    }

    #[test]
    fn cidr_blocks_and_single_addresses() {
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        assert!(proxy("10.0.0.0/8").contains(ip("10.200.3.4")));
        assert!(!proxy("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(proxy("127.0.0.1").contains(ip("127.0.0.1")));
        assert!(!proxy("127.0.0.1").contains(ip("127.0.0.2")));
        assert!(proxy("0.0.0.0/0").contains(ip("8.8.8.8")));
        assert!(proxy("127.0.0.1").contains(ip("::ffff:127.0.0.1")));
        assert!(proxy("fd00::/8").contains(ip("fd12::1")));
        assert!(!proxy("fd00::/8").contains(ip("127.0.0.1")));
        assert!("10.0.0.0/33".parse::<TrustedProxy>().is_err());
        assert!("proxy.local".parse::<TrustedProxy>().is_err());
    }

    #[test]
    fn forwarded_host_only_from_a_trusted_peer() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "kairos.internal:8080".parse().unwrap());
        headers.insert("x-forwarded-host", "evil.example".parse().unwrap());
        headers.insert("x-forwarded-proto", "https".parse().unwrap());
        let access = AccessSettings {
            trusted_proxies: vec![proxy("10.0.0.0/8")],
            ..AccessSettings::default()
        };
        let untrusted = public_origin(&headers, Some("192.168.1.9".parse().unwrap()), &access);
        assert_eq!(untrusted, ("http", "kairos.internal:8080".to_string()));
        let trusted = public_origin(&headers, Some("10.1.2.3".parse().unwrap()), &access);
        assert_eq!(trusted, ("https", "evil.example".to_string()));
        assert_eq!(
            public_origin(&headers, None, &access).1,
            "kairos.internal:8080"
        );
    }

    #[test]
    fn browser_routes_are_collection_and_the_in_app_stream() {
        for path in [
            "/v1/batch",
            "/v1/track",
            "/v1/t",
            "/v1/identify",
            "/v1/projects/wk/settings",
            "/sourceConfig",
            "/v1/in-app/stream",
        ] {
            assert!(is_browser_route(path), "{path}");
        }
        for path in [
            "/v1/admin/sources",
            "/metrics",
            "/v1/profiles/import",
            "/v1/profiles",
            "/v1/projects/a/b/settings",
            "/v1/audiences",
            "/v1/admin/tail",
        ] {
            assert!(!is_browser_route(path), "{path}");
        }
    }
}
