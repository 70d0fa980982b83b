//! A destination's URL, read once and the same way at creation (or edit)
//! and at delivery: where to connect and whether with TLS.
//!
//! - webhooks: `http://…` or `https://…` (rustls, the platform's roots plus
//!   `[delivery] ca_file`);
//! - email, the SMTP server: `smtp://host[:25]` (plain, a local relay),
//!   `smtp://host[:587]?tls=starttls` (STARTTLS, required: never falls back
//!   to plain text), `smtps://host[:465]` (implicit TLS).

use crate::address_policy::{self, AddressPolicy, ResolveError};

/// How an SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    None,
    StartTls,
    Implicit,
}

/// An SMTP server to deliver email to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpServer {
    /// As written (a name, or an IP literal without brackets): what the
    /// TLS certificate must name.
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
}

const SMTP_FORMS: &str = "an email destination's url is its SMTP server: smtp://host:port \
     (plain), smtp://host:587?tls=starttls (STARTTLS) or smtps://host:465 (implicit TLS)";

/// Reads a webhook URL: `http` or `https`, with a host.
pub fn webhook_url(url: &str) -> Result<reqwest::Url, String> {
    let invalid = || format!("url must be an http:// or https:// URL, got {url:?}");
    let parsed = reqwest::Url::parse(url).map_err(|_| invalid())?;
    let has_host = parsed.host_str().is_some_and(|host| !host.is_empty());
    if !matches!(parsed.scheme(), "http" | "https") || !has_host {
        return Err(invalid());
    }
    Ok(parsed)
}

/// Reads an SMTP server URL (forms in the module's doc).
pub fn smtp_server(url: &str) -> Result<SmtpServer, String> {
    let parsed = reqwest::Url::parse(url).map_err(|_| SMTP_FORMS.to_string())?;
    let query: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
    let tls = match (parsed.scheme(), query.as_slice()) {
        ("smtp", []) => SmtpTls::None,
        ("smtp", [(key, value)]) if key == "tls" && value == "starttls" => SmtpTls::StartTls,
        ("smtps", []) => SmtpTls::Implicit,
        _ => return Err(SMTP_FORMS.to_string()),
    };
    let host = parsed
        .host_str()
        .map(|host| host.trim_start_matches('[').trim_end_matches(']'))
        .filter(|host| !host.is_empty())
        .ok_or_else(|| SMTP_FORMS.to_string())?;
    let credentials = !parsed.username().is_empty() || parsed.password().is_some();
    let extra = !matches!(parsed.path(), "" | "/") || parsed.fragment().is_some();
    if credentials || extra {
        return Err(SMTP_FORMS.to_string());
    }
    let default_port = match tls {
        SmtpTls::None => 25,
        SmtpTls::StartTls => 587,
        SmtpTls::Implicit => 465,
    };
    Ok(SmtpServer {
        host: host.to_string(),
        port: parsed.port().unwrap_or(default_port),
        tls,
    })
}

/// Why a destination URL was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlProblem {
    /// Not a URL of the destination's kind.
    Invalid(String),
    /// Its host is (or resolves to) an address the policy refuses.
    NotAllowed(String),
}

/// The check a destination's URL passes when it is created or edited:
/// its form, then its host under the address policy — an IP literal in
/// any form, `localhost`, or the addresses a name resolves to now. A name
/// that does not resolve now is accepted: the same check runs again on
/// every connection, after resolution.
pub async fn checked_destination_url(
    kind: &str,
    url: &str,
    policy: AddressPolicy,
) -> Result<(), UrlProblem> {
    let (host, port) = match kind {
        "webhook" => {
            let parsed = webhook_url(url).map_err(UrlProblem::Invalid)?;
            let port = parsed.port_or_known_default().unwrap_or(80);
            (parsed.host_str().unwrap_or_default().to_string(), port)
        }
        "email" => {
            let server = smtp_server(url).map_err(UrlProblem::Invalid)?;
            (server.host, server.port)
        }
        _ => return Ok(()),
    };
    if policy.allow_private_networks {
        return Ok(()); // nothing to refuse: no need to ask DNS
    }
    match address_policy::resolve(&host, port, policy).await {
        // A name's addresses are not echoed: the API is no way to learn
        // how internal names resolve.
        Err(ResolveError::NotAllowed(not_allowed)) if address_policy::host_ip(&host).is_none() => {
            Err(UrlProblem::NotAllowed(format!(
                "the host {host:?} resolves to a {} address; {}",
                not_allowed.range,
                address_policy::HOW_TO_ALLOW
            )))
        }
        Err(ResolveError::NotAllowed(not_allowed)) => Err(UrlProblem::NotAllowed(format!(
            "the host {host:?}: {not_allowed}"
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: AddressPolicy = AddressPolicy {
        allow_private_networks: false,
    };

    #[test]
    fn smtp_forms() {
        let server = |host: &str, port, tls| SmtpServer {
            host: host.into(),
            port,
            tls,
        };
        assert_eq!(
            smtp_server("smtp://mail.example:2525"),
            Ok(server("mail.example", 2525, SmtpTls::None))
        );
        assert_eq!(
            smtp_server("smtp://mail.example?tls=starttls"),
            Ok(server("mail.example", 587, SmtpTls::StartTls))
        );
        assert_eq!(
            smtp_server("smtps://[::1]"),
            Ok(server("::1", 465, SmtpTls::Implicit))
        );
        for bad in [
            "http://mail.example",
            "smtp://mail.example?tls=maybe",
            "smtp://user:secret@mail.example",
            "smtps://mail.example/inbox",
            "smtp://",
            "mail.example:25",
        ] {
            assert!(smtp_server(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn webhook_forms() {
        assert!(webhook_url("https://hooks.example/kairos").is_ok());
        assert!(webhook_url("http://127.0.0.1:9/x").is_ok());
        for bad in ["ftp://hooks.example", "hooks.example", "http://"] {
            assert!(webhook_url(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn private_hosts_are_refused_in_every_form() {
        for (kind, url) in [
            ("webhook", "http://127.0.0.1:8080/x"),
            ("webhook", "http://2130706433/x"),
            ("webhook", "http://0x7f.1/x"),
            ("webhook", "https://[::1]/x"),
            ("webhook", "http://[::ffff:169.254.169.254]/"),
            ("webhook", "http://169.254.169.254/latest/meta-data"),
            ("webhook", "http://0.0.0.0:80/"),
            ("webhook", "http://localhost:9/"),
            ("email", "smtp://2130706433:25"),
            ("email", "smtps://localhost"),
            ("email", "smtp://10.0.0.5:25?tls=starttls"),
        ] {
            let problem = checked_destination_url(kind, url, STRICT).await;
            assert!(
                matches!(&problem, Err(UrlProblem::NotAllowed(detail)) if detail.contains("allow_private_networks")),
                "{url}: {problem:?}"
            );
        }
        let named = checked_destination_url("webhook", "http://localhost:9/", STRICT).await;
        assert_eq!(
            named,
            Err(UrlProblem::NotAllowed(format!(
                "the host \"localhost\" resolves to a loopback address; {}",
                address_policy::HOW_TO_ALLOW
            )))
        );
        let open = AddressPolicy {
            allow_private_networks: true,
        };
        assert_eq!(
            checked_destination_url("webhook", "http://127.0.0.1:8080/x", open).await,
            Ok(())
        );
        assert_eq!(
            checked_destination_url("webhook", "https://8.8.8.8/x", STRICT).await,
            Ok(())
        );
    }
}
