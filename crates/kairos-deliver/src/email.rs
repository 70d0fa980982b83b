//! Email: templates rendered with minijinja when a journey decides a send
//! (so every attempt sends the same mail), delivered over SMTP with lettre.
//!
//! Templates are written by users, so they are treated as untrusted: one
//! fuel budget and one size limit for the whole message ([`crate::render`]).
//! Their context is the person now — `traits`, `computed`, `audiences`,
//! `scores`, `profile.id` — and the triggering `event` (`{{
//! traits.first_name | default("there") }}`, `{% for item in
//! event.properties.products %}`): [`person_context`], the same names a
//! journey's templates are checked against when it is created.

use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::address_policy;
use crate::endpoint::{SmtpServer, SmtpTls};
use lettre::transport::smtp::client::Tls;

use crate::render::MessageRenderer;

/// An email's parts, as templates (defined with journeys, in the core).
pub use kairos_core::journey::definition::EmailTemplate;

/// An email ready to send (what the outbox stores).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RenderedEmail {
    pub to: String,
    pub subject: String,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
}

/// For checking templates at journey creation (rendering has its own).
fn environment() -> minijinja::Environment<'static> {
    // Knows the functions sends provide (`recommendations(...)`).
    crate::render::MessageRenderer::environment()
}

/// The names a template reads — the person now and the triggering event
/// — the same at check and at send ([`person_context`]).
pub const CONTEXT_NAMES: [&str; 6] = [
    "traits",
    "computed",
    "audiences",
    "scores",
    "profile",
    "event",
];

/// What every template renders with: the person's traits, computed traits,
/// audiences and active scores now (empty for someone Kairos does not
/// know), their profile id, and the triggering event.
pub fn person_context(view: Option<&kairos_engine::ProfileView>, event: &Value) -> Value {
    let object = |map: Option<&Map<String, Value>>| Value::Object(map.cloned().unwrap_or_default());
    json!({
        "traits": object(view.map(|view| &view.traits)),
        "computed": object(view.map(|view| &view.computed)),
        "audiences": view.map_or_else(Vec::new, |view| view.audiences.clone()),
        "scores": object(view.map(|view| &view.scores)),
        "profile": {"id": view.map(|view| &view.id)},
        "event": event,
    })
}

/// Checks that every part parses and reads only what sends provide (at
/// journey creation).
pub fn check(template: &EmailTemplate) -> Result<(), String> {
    let environment = environment();
    for (part, source) in parts(template) {
        check_source(&environment, source).map_err(|error| format!("template {part}: {error}"))?;
    }
    Ok(())
}

/// A template's text parses, and the names it reads are the context's
/// (or the template language's own functions such as `range`).
fn check_source(environment: &minijinja::Environment<'static>, source: &str) -> Result<(), String> {
    let template = environment
        .template_from_str(source)
        .map_err(|error| error.to_string())?;
    let mut unknown: Vec<String> = template
        .undeclared_variables(false)
        .into_iter()
        .filter(|name| {
            !CONTEXT_NAMES.contains(&name.as_str())
                && !environment.globals().any(|(global, _)| global == name)
        })
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    unknown.sort();
    Err(format!(
        "reads {unknown:?}, which no send provides; templates read {} (docs/journeys.md, \"Templates\")",
        CONTEXT_NAMES.join(", ")
    ))
}

fn parts(template: &EmailTemplate) -> Vec<(&'static str, &str)> {
    let mut parts = vec![
        ("subject", template.subject.as_str()),
        ("text", template.text.as_str()),
    ];
    if let Some(html) = &template.html {
        parts.push(("html", html));
    }
    parts
}

/// Renders every part for one person, under one budget for the mail.
pub fn render(
    template: &EmailTemplate,
    to: &str,
    context: &Value,
    recommendations: Option<crate::render::Recommendations>,
) -> Result<RenderedEmail, String> {
    let mut renderer = MessageRenderer::new(context).with_recommendations(recommendations);
    Ok(RenderedEmail {
        to: to.to_string(),
        subject: renderer
            .render("template subject", &template.subject)?
            .trim()
            .to_string(),
        text: renderer.render("template text", &template.text)?,
        html: template
            .html
            .as_deref()
            .map(|html| renderer.render("template html", html))
            .transpose()?,
    })
}

/// Checks every text value of a JSON message as a template.
pub fn check_value(value: &Value) -> Result<(), String> {
    let environment = environment();
    let mut problem = None;
    walk_strings(value, &mut |text| {
        if problem.is_none()
            && let Err(error) = check_source(&environment, text)
        {
            problem = Some(format!("message template {text:?}: {error}"));
        }
    });
    problem.map_or(Ok(()), Err)
}

/// Renders every text value of a JSON message (in-app) as a template,
/// under one budget for the message.
pub fn render_value(
    value: &Value,
    context: &Value,
    recommendations: Option<crate::render::Recommendations>,
) -> Result<Value, String> {
    MessageRenderer::new(context)
        .with_recommendations(recommendations)
        .render_value(value)
}

fn walk_strings(value: &Value, visit: &mut impl FnMut(&str)) {
    match value {
        Value::String(text) => visit(text),
        Value::Array(items) => items.iter().for_each(|item| walk_strings(item, visit)),
        Value::Object(map) => map.values().for_each(|item| walk_strings(item, visit)),
        _ => {}
    }
}

/// One delivery attempt of a stored email to its destination's server.
pub(crate) async fn attempt(
    destination: &kairos_store::DestinationRecord,
    message: &kairos_store::Message,
    settings: &crate::DeliverySettings,
) -> crate::destination::Outcome {
    use crate::destination::Outcome;
    let Ok(email) = serde_json::from_value::<RenderedEmail>(message.payload.clone()) else {
        return Outcome::Failed("the stored message is not an email".into());
    };
    let from = destination.from.as_deref().unwrap_or_default();
    match send(&destination.url, from, &email, &message.id, settings).await {
        SmtpOutcome::Sent => Outcome::Delivered,
        SmtpOutcome::Transient(error) => Outcome::Retry { error, after: None },
        SmtpOutcome::Permanent(error) => Outcome::Failed(error),
    }
}

/// What an SMTP attempt came to.
pub enum SmtpOutcome {
    Sent,
    /// 4xx, connection trouble: try again later.
    Transient(String),
    /// 5xx, or a mail that cannot be built: retrying cannot help.
    Permanent(String),
}

/// Sends one email through the SMTP server at `server` (forms in
/// [`crate::endpoint`]), connecting only to an address the policy allows:
/// the host is resolved and checked here, and the checked address is
/// what lettre connects to (the name still is what TLS verifies).
pub async fn send(
    server: &str,
    from: &str,
    email: &RenderedEmail,
    message_id: &str,
    settings: &crate::DeliverySettings,
) -> SmtpOutcome {
    let server = match crate::endpoint::smtp_server(server) {
        Ok(server) => server,
        Err(error) => return SmtpOutcome::Permanent(error),
    };
    let mail = match build(from, email, message_id) {
        Ok(mail) => mail,
        Err(error) => return SmtpOutcome::Permanent(error),
    };
    let address = match address_policy::resolve(&server.host, server.port, settings.addresses).await
    {
        Ok(addresses) => addresses[0],
        Err(error) => {
            tracing::warn!(host = %server.host, %error, "SMTP server not reached");
            return SmtpOutcome::Transient(unreachable(&error));
        }
    };
    let tls = match smtp_tls(&server, &settings.extra_roots) {
        Ok(tls) => tls,
        Err(error) => return outcome_of(&server.host, &error),
    };
    let transport =
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(address.ip().to_string())
            .port(address.port())
            .tls(tls)
            .timeout(Some(settings.timeout))
            .build();
    match transport.send(mail).await {
        Ok(_) => SmtpOutcome::Sent,
        Err(error) => outcome_of(&server.host, &error),
    }
}

/// How the connection is secured: STARTTLS is required when asked for
/// (never a silent fall back to plain text), implicit TLS wraps it from the
/// first byte; the certificate must name the host as written.
fn smtp_tls(
    server: &SmtpServer,
    extra_roots: &crate::tls::ExtraRoots,
) -> Result<Tls, lettre::transport::smtp::Error> {
    Ok(match server.tls {
        SmtpTls::None => Tls::None,
        SmtpTls::StartTls => Tls::Required(crate::tls::smtp_parameters(&server.host, extra_roots)?),
        SmtpTls::Implicit => Tls::Wrapper(crate::tls::smtp_parameters(&server.host, extra_roots)?),
    })
}

/// A failed SMTP conversation as a category and reply code: never the
/// server's text, which could be any TCP service's banner.
fn outcome_of(host: &str, error: &lettre::transport::smtp::Error) -> SmtpOutcome {
    tracing::warn!(%host, error = %crate::failure::chain(error), "SMTP attempt failed");
    let code = error.status().map(|code| code.to_string());
    match code {
        Some(code) if error.is_permanent() => {
            SmtpOutcome::Permanent(format!("the SMTP server refused the mail ({code})"))
        }
        Some(code) => SmtpOutcome::Transient(format!("the SMTP server deferred the mail ({code})")),
        None if error.is_timeout() => SmtpOutcome::Transient("SMTP server: timed out".into()),
        None if error.is_tls() => {
            SmtpOutcome::Transient("could not reach the SMTP server: TLS handshake failed".into())
        }
        None if error.is_response() => {
            SmtpOutcome::Transient("the SMTP conversation failed (not an SMTP answer)".into())
        }
        None => SmtpOutcome::Transient(unreachable(error)),
    }
}

fn unreachable(error: &(dyn std::error::Error + 'static)) -> String {
    format!(
        "could not reach the SMTP server: {}",
        crate::failure::category(error)
    )
}

fn build(from: &str, email: &RenderedEmail, message_id: &str) -> Result<lettre::Message, String> {
    let from: Mailbox = from
        .parse()
        .map_err(|error| format!("from {from:?}: {error}"))?;
    let to: Mailbox = email
        .to
        .parse()
        .map_err(|error| format!("to {:?}: {error}", email.to))?;
    let builder = lettre::Message::builder()
        .from(from)
        .to(to)
        .subject(&email.subject)
        // The same Message-ID on every attempt: receivers can deduplicate.
        .message_id(Some(format!("<{message_id}@kairos>")));
    let result = match &email.html {
        Some(html) => builder.multipart(MultiPart::alternative_plain_html(
            email.text.clone(),
            html.clone(),
        )),
        None => builder.singlepart(SinglePart::plain(email.text.clone())),
    };
    result.map_err(|error| format!("building the mail: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_with_defaults_loops_and_filters() {
        let template = EmailTemplate {
            subject: "Hi {{ traits.first_name | default(\"there\") }}".into(),
            text: "{% for p in event.properties.products %}{{ p.name | upper }};{% endfor %}"
                .into(),
            html: None,
        };
        let context = json!({"traits": {}, "event": {"properties": {"products": [{"name": "shoe"}, {"name": "sock"}]}}});
        let email = render(&template, "a@example.org", &context, None).unwrap();
        assert_eq!(email.subject, "Hi there");
        assert_eq!(email.text, "SHOE;SOCK;");
    }

    #[test]
    fn a_runaway_template_runs_out_of_fuel() {
        let template = EmailTemplate {
            subject: "x".into(),
            text:
                "{% for i in range(100000) %}{% for j in range(100000) %}.{% endfor %}{% endfor %}"
                    .into(),
            html: None,
        };
        let error = render(&template, "a@example.org", &json!({}), None).unwrap_err();
        assert!(error.contains("template text"), "{error}");
        assert!(
            check(&EmailTemplate {
                subject: "{{ x".into(),
                text: String::new(),
                html: None
            })
            .is_err()
        );
    }

    #[test]
    fn templates_are_checked_against_the_names_sends_provide() {
        let reading = |text: &str| EmailTemplate {
            subject: "Hi".into(),
            text: text.into(),
            html: None,
        };
        assert!(
            check(&reading(
                "{{ scores.churn }} {{ computed.ltv }} {{ profile.id }}"
            ))
            .is_ok()
        );
        assert!(
            check(&reading(
                "{% for i in range(3) %}{{ loop.index }}{% endfor %}"
            ))
            .is_ok()
        );
        let error = check(&reading("{{ score.churn }}")).unwrap_err();
        assert!(
            error.contains("[\"score\"]") && error.contains("scores"),
            "{error}"
        );
        assert!(check_value(&json!({"title": "{{ user.name }}"})).is_err());
    }

    #[test]
    fn a_template_that_passes_the_check_renders_for_someone_unknown() {
        let template = EmailTemplate {
            subject: "{{ scores.churn | default(0) }} {{ traits.name | default(\"you\") }}".into(),
            text: "{{ computed.ltv }}{{ audiences | length }}{{ profile.id }}".into(),
            html: None,
        };
        check(&template).unwrap();
        let context = person_context(None, &json!({"name": "Signed Up"}));
        let email = render(&template, "a@example.org", &context, None).unwrap();
        assert_eq!(email.subject, "0 you");
    }
}
