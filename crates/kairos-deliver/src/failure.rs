//! What a failed attempt tells API callers (`last_error`, dead letters): a
//! category, never the raw error. Raw connect errors told an admin which
//! ports of which hosts were open (a port-scan oracle); the detail goes to
//! the server's log instead, where the operator can read it.

use std::error::Error;
use std::io::ErrorKind;

use crate::address_policy::{NotAllowed, ResolveError};

/// The category of a failure to reach an endpoint, from the error's chain.
pub(crate) fn category(error: &(dyn Error + 'static)) -> &'static str {
    let mut next = Some(error);
    while let Some(current) = next {
        if let Some(category) = known(current) {
            return category;
        }
        // `io::Error::source` skips the error it wraps: look inside it.
        next = match current.downcast_ref::<std::io::Error>() {
            Some(io) if io.get_ref().is_some() => io.get_ref().map(|inner| inner as _),
            _ => current.source(),
        };
    }
    "could not connect"
}

/// The whole chain, for the log: `outer: inner: innermost`.
pub(crate) fn chain(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(current) = next {
        text.push_str(": ");
        text.push_str(&current.to_string());
        next = current.source();
    }
    text
}

fn known(error: &(dyn Error + 'static)) -> Option<&'static str> {
    if error.is::<NotAllowed>() {
        return Some(NOT_ALLOWED);
    }
    if let Some(resolve) = error.downcast_ref::<ResolveError>() {
        return Some(match resolve {
            ResolveError::NotAllowed(_) => NOT_ALLOWED,
            ResolveError::TimedOut => "timed out",
            ResolveError::NoAddress | ResolveError::Lookup(_) => "the host name does not resolve",
        });
    }
    if error.is::<rustls::Error>() {
        return Some("TLS handshake failed");
    }
    let io = error.downcast_ref::<std::io::Error>()?;
    match io.kind() {
        ErrorKind::ConnectionRefused => Some("connection refused"),
        ErrorKind::TimedOut => Some("timed out"),
        ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted
        | ErrorKind::BrokenPipe
        | ErrorKind::UnexpectedEof => Some("connection closed"),
        ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable => Some("unreachable"),
        _ => None,
    }
}

/// What an API caller reads when the address policy refused the host.
pub(crate) const NOT_ALLOWED: &str = "address not allowed (a private or special-purpose address; \
     see [delivery] allow_private_networks)";

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    #[test]
    fn categories_come_from_anywhere_in_the_chain() {
        let refused = std::io::Error::from(ErrorKind::ConnectionRefused);
        assert_eq!(category(&refused), "connection refused");
        let wrapped = std::io::Error::other(NotAllowed {
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            range: "loopback",
        });
        assert_eq!(category(&wrapped), NOT_ALLOWED);
        let tls = std::io::Error::new(
            ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert_eq!(category(&tls), "TLS handshake failed");
        assert_eq!(
            category(&std::io::Error::other("port 6379: redis says hi")),
            "could not connect"
        );
    }
}
