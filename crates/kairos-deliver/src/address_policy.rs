//! Which network addresses deliveries may reach: the one place that
//! decides it (SSRF, docs/journeys.md, "Addresses").
//!
//! A destination's URL is written by an admin, but an admin token is not a
//! licence to make Kairos call `169.254.169.254` (the cloud's metadata
//! service), `127.0.0.1:6379` or a machine on the office network, and to
//! read the answer back through `last_error`. So by default only public
//! unicast addresses are reached; `[delivery] allow_private_networks =
//! true` lifts that for tests and on-premise use.
//!
//! The check runs twice: when a destination is created (its host, written
//! as any IPv4 form resolvers accept, or the names it resolves to now) and
//! at every connection, after DNS resolution, on the very addresses
//! connected to ([`PolicyResolver`] for webhooks, [`resolve`] for SMTP), so
//! a name that resolves differently later (DNS rebinding) does not help.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// How long a resolution may take before the attempt counts as failed (a
/// hanging resolver must not hold a delivery worker or an API call).
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// What deliveries may connect to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    /// Also loopback, private, link-local, CGNAT and other special-purpose
    /// ranges (tests, on-premise receivers). Off by default.
    pub allow_private_networks: bool,
}

/// An address the policy refuses, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotAllowed {
    pub address: IpAddr,
    /// The kind of range, e.g. "loopback", "link-local (cloud metadata)".
    pub range: &'static str,
}

/// How to lift the policy, for every message that refuses an address.
pub const HOW_TO_ALLOW: &str = "deliveries reach only public addresses unless \
     [delivery] allow_private_networks = true (environment: \
     KAIROS_DELIVERY_ALLOW_PRIVATE_NETWORKS=true)";

impl std::fmt::Display for NotAllowed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is a {} address; {HOW_TO_ALLOW}",
            self.address, self.range
        )
    }
}

impl std::error::Error for NotAllowed {}

impl AddressPolicy {
    /// `Ok` when a delivery may connect to `address`.
    pub fn check(&self, address: IpAddr) -> Result<(), NotAllowed> {
        match special_range(address) {
            Some(range) if !self.allow_private_networks => Err(NotAllowed { address, range }),
            _ => Ok(()),
        }
    }

    /// The allowed addresses among `resolved`; the first refusal when none is.
    pub fn filter(&self, resolved: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, ResolveError> {
        let mut refused = None;
        let mut allowed = Vec::with_capacity(resolved.len());
        for address in resolved {
            match self.check(address.ip()) {
                Ok(()) => allowed.push(address),
                Err(not_allowed) => refused = refused.or(Some(not_allowed)),
            }
        }
        match (allowed.is_empty(), refused) {
            (false, _) => Ok(allowed),
            (true, Some(not_allowed)) => Err(ResolveError::NotAllowed(not_allowed)),
            (true, None) => Err(ResolveError::NoAddress),
        }
    }
}

/// Why a host gave no address to connect to.
#[derive(Debug)]
pub enum ResolveError {
    NotAllowed(NotAllowed),
    /// The name does not resolve (or resolved to nothing).
    NoAddress,
    Lookup(std::io::Error),
    TimedOut,
}

impl std::fmt::Display for ResolveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResolveError::NotAllowed(not_allowed) => not_allowed.fmt(f),
            ResolveError::NoAddress => f.write_str("the name has no address"),
            ResolveError::Lookup(error) => write!(f, "resolving the name: {error}"),
            ResolveError::TimedOut => write!(f, "no DNS answer within {RESOLVE_TIMEOUT:?}"),
        }
    }
}

impl std::error::Error for ResolveError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ResolveError::NotAllowed(not_allowed) => Some(not_allowed),
            ResolveError::Lookup(error) => Some(error),
            _ => None,
        }
    }
}

/// The addresses to connect to for `host:port`, each allowed by `policy`.
/// `host` is a name, an IP literal (IPv6 with or without brackets) or any
/// IPv4 form resolvers accept (`2130706433`, `0x7f.1`, `0177.0.0.1`).
pub async fn resolve(
    host: &str,
    port: u16,
    policy: AddressPolicy,
) -> Result<Vec<SocketAddr>, ResolveError> {
    if let Some(address) = host_ip(host) {
        return policy.filter(vec![SocketAddr::new(address, port)]);
    }
    if is_localhost_name(host) {
        let loopback = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
        return policy.filter(vec![loopback]);
    }
    let lookup = tokio::net::lookup_host((host, port));
    let resolved = tokio::time::timeout(RESOLVE_TIMEOUT, lookup)
        .await
        .map_err(|_| ResolveError::TimedOut)?
        .map_err(ResolveError::Lookup)?;
    policy.filter(resolved.collect())
}

/// `localhost` and `*.localhost` always mean this machine (RFC 6761),
/// whatever the resolver says.
fn is_localhost_name(host: &str) -> bool {
    let name = host.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// The IP address a URL host denotes without DNS: an IPv6 literal, or an
/// IPv4 address in any form `inet_aton` and URL parsers accept — one to
/// four parts, each decimal, octal (`0` prefix) or hex (`0x` prefix), the
/// last filling the remaining bytes (`127.1`, `2130706433`).
pub fn host_ip(host: &str) -> Option<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(address) = bare.parse::<Ipv6Addr>() {
        return Some(IpAddr::V6(address));
    }
    legacy_ipv4(host).map(IpAddr::V4)
}

fn legacy_ipv4(host: &str) -> Option<Ipv4Addr> {
    // A trailing dot is the root of the name space, allowed by both.
    let host = host.strip_suffix('.').unwrap_or(host);
    let parts: Vec<u64> = host.split('.').map(ipv4_part).collect::<Option<_>>()?;
    let (last, leading) = parts.split_last()?;
    if leading.len() > 3 || leading.iter().any(|part| *part > 255) {
        return None;
    }
    let last_bits = 8 * (4 - leading.len() as u32);
    if *last >= 1u64 << last_bits {
        return None;
    }
    let high = leading
        .iter()
        .enumerate()
        .fold(0u64, |sum, (index, part)| sum | part << (24 - 8 * index));
    Some(Ipv4Addr::from((high | last) as u32))
}

fn ipv4_part(text: &str) -> Option<u64> {
    let (digits, radix) =
        if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
            (hex, 16)
        } else if text.len() > 1 && text.starts_with('0') {
            (&text[1..], 8)
        } else {
            (text, 10)
        };
    if digits.is_empty() {
        // "0x" alone is zero to URL parsers; an empty part is no number.
        return (radix == 16).then_some(0);
    }
    if !digits.chars().all(|digit| digit.is_digit(radix)) || digits.len() > 12 {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// The special-purpose range `address` is in (IANA's registries), or
/// `None` for a public unicast address.
pub fn special_range(address: IpAddr) -> Option<&'static str> {
    match address {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => special_v6(v6),
    }
}

fn special_v4(address: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = address.octets();
    let range = match (a, b, c) {
        (0, _, _) => "\"this network\" (0.0.0.0/8)",
        (10, _, _) => "private (10.0.0.0/8)",
        (100, 64..=127, _) => "shared carrier-grade NAT (100.64.0.0/10)",
        (127, _, _) => "loopback",
        (169, 254, _) => "link-local (cloud metadata, 169.254.0.0/16)",
        (172, 16..=31, _) => "private (172.16.0.0/12)",
        (192, 0, 0) => "IETF protocol assignment (192.0.0.0/24)",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (192, 168, _) => "private (192.168.0.0/16)",
        (198, 18..=19, _) => "benchmarking (198.18.0.0/15)",
        (224..=239, _, _) => "multicast",
        (255, 255, 255) if address == Ipv4Addr::BROADCAST => "broadcast",
        (240..=255, _, _) => "reserved (240.0.0.0/4)",
        _ => return None,
    };
    Some(range)
}

fn special_v6(address: Ipv6Addr) -> Option<&'static str> {
    let segments = address.segments();
    // Forms that carry an IPv4 address reach it: judge that address.
    if let Some(v4) = address.to_ipv4_mapped() {
        return special_v4(v4);
    }
    let embedded = |high: usize| {
        Ipv4Addr::new(
            (segments[high] >> 8) as u8,
            segments[high] as u8,
            (segments[high + 1] >> 8) as u8,
            segments[high + 1] as u8,
        )
    };
    let range = match segments {
        [0, 0, 0, 0, 0, 0, 0, 0] => "unspecified (::)",
        [0, 0, 0, 0, 0, 0, 0, 1] => "loopback",
        [0, 0, 0, 0, 0, 0, _, _] => "IPv4-compatible (deprecated, ::/96)",
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => return special_v4(embedded(6)),
        [0x64, 0xff9b, 1, ..] => "local-use NAT64 (64:ff9b:1::/48)",
        [0x100, 0, 0, 0, ..] => "discard-only (100::/64)",
        [0x2001, 0, ..] => "Teredo (2001::/32)",
        [0x2001, 0xdb8, ..] => "documentation (2001:db8::/32)",
        [0x2002, ..] => return special_v4(embedded(1)),
        [first, ..] if first & 0xfe00 == 0xfc00 => "unique local (fc00::/7)",
        [first, ..] if first & 0xffc0 == 0xfe80 => "link-local (fe80::/10)",
        [first, ..] if first & 0xffc0 == 0xfec0 => "site-local (deprecated, fec0::/10)",
        [first, ..] if first & 0xff00 == 0xff00 => "multicast",
        _ => return None,
    };
    Some(range)
}

/// A DNS resolver for reqwest that hands it only allowed addresses, so
/// the check holds for the address actually connected to. (IP-literal
/// URLs never reach a resolver: [`check_url`] covers them.)
#[derive(Debug, Clone, Copy)]
pub struct PolicyResolver(pub AddressPolicy);

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addresses = resolve(&host, 0, policy).await?;
            Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Checks an HTTP URL's host when it is an IP literal (connected to
/// without resolution). reqwest has normalised every IPv4 form already.
pub fn check_url(url: &reqwest::Url, policy: AddressPolicy) -> Result<(), NotAllowed> {
    match url.host_str().and_then(host_ip) {
        Some(address) => policy.check(address),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: AddressPolicy = AddressPolicy {
        allow_private_networks: false,
    };
    const OPEN: AddressPolicy = AddressPolicy {
        allow_private_networks: true,
    };

    fn ip(text: &str) -> IpAddr {
        host_ip(text).unwrap_or_else(|| panic!("{text} is no IP address"))
    }

    #[test]
    fn every_ipv4_form_resolvers_accept_is_read() {
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        for form in [
            "127.0.0.1",
            "2130706433",
            "0x7f000001",
            "0X7F.0.0.1",
            "017700000001",
            "0177.0.0.1",
            "0177.0.0.01",
            "127.1",
            "127.0.1",
            "0x7f.1",
            "127.0.0.1.",
        ] {
            assert_eq!(host_ip(form), Some(loopback), "{form}");
        }
        assert_eq!(host_ip("0"), Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)));
        assert_eq!(
            host_ip("0xa9.0xfe.0xa9.0xfe"),
            Some(IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)))
        );
        assert_eq!(
            host_ip("2852039166"),
            Some(IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)))
        );
    }

    #[test]
    fn names_and_malformed_numbers_are_not_addresses() {
        for name in [
            "example.com",
            "hooks.example",
            "127.0.0.1.example",
            "08.0.0.1",
            "0x7g.0.0.1",
            "256.0.0.1",
            "1.2.3.4.5",
            "4294967296",
            "1..2",
            "",
            "[127.0.0.1]",
        ] {
            assert_eq!(host_ip(name), None, "{name}");
        }
    }

    #[test]
    fn ipv6_literals_with_or_without_brackets() {
        assert_eq!(ip("[::1]"), IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(ip("::1"), IpAddr::V6(Ipv6Addr::LOCALHOST));
    }

    #[test]
    fn special_ranges_are_refused_by_default() {
        for address in [
            "127.0.0.1",
            "127.255.255.254",
            "0.0.0.0",
            "0.1.2.3",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "169.254.169.254",
            "192.0.0.170",
            "192.0.2.1",
            "198.18.0.1",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::127.0.0.1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "2002:7f00:1::1",
            "2001::1",
            "2001:db8::1",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "100::1",
        ] {
            let error = STRICT.check(ip(address)).unwrap_err();
            assert!(
                error.to_string().contains("allow_private_networks"),
                "{error}"
            );
            assert_eq!(OPEN.check(ip(address)), Ok(()), "{address}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for address in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "169.253.0.1",
            "192.169.0.1",
            "223.255.255.255",
            "2606:4700::1111",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(STRICT.check(ip(address)), Ok(()), "{address}");
        }
    }

    #[test]
    fn ranges_are_named_for_the_reader() {
        assert_eq!(
            special_range(ip("169.254.169.254")),
            Some("link-local (cloud metadata, 169.254.0.0/16)")
        );
        assert_eq!(special_range(ip("255.255.255.255")), Some("broadcast"));
        assert_eq!(special_range(ip("fe80::1")), Some("link-local (fe80::/10)"));
    }

    #[test]
    fn filtering_keeps_allowed_addresses_only() {
        let public = SocketAddr::new(ip("8.8.8.8"), 443);
        let private = SocketAddr::new(ip("10.0.0.1"), 443);
        assert_eq!(STRICT.filter(vec![private, public]).unwrap(), vec![public]);
        assert!(matches!(
            STRICT.filter(vec![private]),
            Err(ResolveError::NotAllowed(_))
        ));
        assert!(matches!(
            STRICT.filter(Vec::new()),
            Err(ResolveError::NoAddress)
        ));
    }

    #[tokio::test]
    async fn names_are_checked_after_resolution() {
        for host in [
            "localhost",
            "LOCALHOST.",
            "api.localhost",
            "2130706433",
            "[::1]",
        ] {
            let error = resolve(host, 80, STRICT).await.unwrap_err();
            assert!(
                matches!(error, ResolveError::NotAllowed(_)),
                "{host}: {error}"
            );
            assert!(resolve(host, 80, OPEN).await.is_ok(), "{host}");
        }
    }
}
