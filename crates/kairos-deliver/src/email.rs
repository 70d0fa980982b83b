//! Email: templates rendered with minijinja when a journey decides a send
//! (so every attempt sends the same mail), delivered over SMTP with lettre.
//!
//! Templates are written by users, so they are treated as untrusted: one
//! fuel budget and one size limit for the whole message ([`crate::render`]).
//! Their context is the person now — `traits`, `computed`, `audiences`,
//! `profile.id` — and the triggering `event` (`{{ traits.first_name |
//! default("there") }}`, `{% for item in event.properties.products %}`).

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::render::MessageRenderer;

/// An email's parts, as templates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailTemplate {
    pub subject: String,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
}

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
    minijinja::Environment::new()
}

/// Checks that every part parses (at journey creation).
pub fn check(template: &EmailTemplate) -> Result<(), String> {
    let environment = environment();
    for (part, source) in parts(template) {
        environment
            .template_from_str(source)
            .map_err(|error| format!("template {part}: {error}"))?;
    }
    Ok(())
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
) -> Result<RenderedEmail, String> {
    let mut renderer = MessageRenderer::new(context);
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
            && let Err(error) = environment.template_from_str(text)
        {
            problem = Some(format!("message template {text:?}: {error}"));
        }
    });
    problem.map_or(Ok(()), Err)
}

/// Renders every text value of a JSON message (in-app) as a template,
/// under one budget for the message.
pub fn render_value(value: &Value, context: &Value) -> Result<Value, String> {
    MessageRenderer::new(context).render_value(value)
}

fn walk_strings(value: &Value, visit: &mut impl FnMut(&str)) {
    match value {
        Value::String(text) => visit(text),
        Value::Array(items) => items.iter().for_each(|item| walk_strings(item, visit)),
        Value::Object(map) => map.values().for_each(|item| walk_strings(item, visit)),
        _ => {}
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

/// Sends one email through the SMTP server at `smtp://host:port`.
pub async fn send(
    server: &str,
    from: &str,
    email: &RenderedEmail,
    message_id: &str,
    timeout: Duration,
) -> SmtpOutcome {
    let Some((host, port)) = server
        .strip_prefix("smtp://")
        .and_then(|address| address.trim_end_matches('/').rsplit_once(':'))
        .and_then(|(host, port)| Some((host.to_string(), port.parse::<u16>().ok()?)))
    else {
        return SmtpOutcome::Permanent(format!("{server:?} is not smtp://host:port"));
    };
    let mail = match build(from, email, message_id) {
        Ok(mail) => mail,
        Err(error) => return SmtpOutcome::Permanent(error),
    };
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        .port(port)
        .timeout(Some(timeout))
        .build();
    match transport.send(mail).await {
        Ok(_) => SmtpOutcome::Sent,
        Err(error) if error.is_permanent() => {
            SmtpOutcome::Permanent(format!("the SMTP server refused the mail: {error}"))
        }
        Err(error) => SmtpOutcome::Transient(format!("SMTP: {error}")),
    }
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
    use serde_json::json;

    #[test]
    fn renders_with_defaults_loops_and_filters() {
        let template = EmailTemplate {
            subject: "Hi {{ traits.first_name | default(\"there\") }}".into(),
            text: "{% for p in event.properties.products %}{{ p.name | upper }};{% endfor %}"
                .into(),
            html: None,
        };
        let context = json!({"traits": {}, "event": {"properties": {"products": [{"name": "shoe"}, {"name": "sock"}]}}});
        let email = render(&template, "a@example.org", &context).unwrap();
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
        let error = render(&template, "a@example.org", &json!({})).unwrap_err();
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
}
