//! One message's rendering under one budget: every template of the message
//! (an email's subject, text and html; each text value of an in-app
//! message) draws from the same fuel and the same output allowance.
//!
//! Templates are written by users and fed with event properties, so they
//! are untrusted: without a per-message budget, a message of many values,
//! each within its own limits, built a 360 MB in-app message (2.7 GB RSS).
//! Output is counted while it is written, so a loop that would emit
//! gigabytes stops at the allowance instead of after it.

use std::io;
use std::sync::Arc;

use serde_json::Value;

/// Items one template call `recommendations(...)` may return: a widget's
/// row, not the catalog.
pub const TEMPLATE_RECOMMENDATIONS_MAX: usize = 20;

/// What a template's `recommendations(strategy=..., limit=..., context_item=...)`
/// answers for the person the message is for (items as JSON, best first).
#[derive(Clone)]
pub struct Recommendations(pub Arc<RecommendFn>);

/// Items (as JSON) for one request, or why not.
pub type RecommendFn = dyn Fn(&kairos_recommend::Query) -> Result<Vec<Value>, String> + Send + Sync;

impl std::fmt::Debug for Recommendations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Recommendations")
    }
}

impl Recommendations {
    /// The engine's recommendations for `person` (`None`: for anyone),
    /// from what it has applied now (the effects stage never waits on it).
    /// `history: false` (a page that proved no identity, acting as an
    /// anonymous id that may since belong to someone identified): nothing
    /// that shows what the person viewed or bought — `recently_viewed` and
    /// `buy_again` answer nothing, the session's own items are left out.
    pub fn from_engine(
        engine: kairos_engine::Engine,
        person: Option<kairos_core::identity::Identifier>,
        history: bool,
    ) -> Recommendations {
        Recommendations(Arc::new(move |ask| {
            let ask = match history {
                true => ask.clone(),
                false => match ask.clone().without_history() {
                    Some(ask) => ask,
                    None => return Ok(Vec::new()),
                },
            };
            let recommended = engine
                .recommend_now(person.as_ref(), &ask)
                .map_err(|error| format!("recommendations: {error}"))?;
            Ok(recommended
                .items
                .into_iter()
                .map(|recommendation| recommendation.public())
                .collect())
        }))
    }

    /// Registers `recommendations(...)` in a template environment.
    fn install(self, environment: &mut minijinja::Environment<'static>) {
        environment.add_function(
            "recommendations",
            move |kwargs: minijinja::value::Kwargs| -> Result<minijinja::Value, minijinja::Error> {
                let ask = ask_of(&kwargs)?;
                let items = (self.0)(&ask).map_err(|error| {
                    minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, error)
                })?;
                Ok(minijinja::value::Serde(items).into())
            },
        );
    }
}

/// A template call's arguments as a request.
fn ask_of(kwargs: &minijinja::value::Kwargs) -> Result<kairos_recommend::Query, minijinja::Error> {
    let invalid =
        |detail: String| minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, detail);
    let name: Option<String> = kwargs.get("strategy")?;
    let strategy = match name.as_deref() {
        None => kairos_recommend::Strategy::Auto,
        Some(name) => kairos_recommend::Strategy::parse(name).ok_or_else(|| {
            invalid(format!(
                "recommendations(strategy={name:?}): expected one of {}",
                kairos_recommend::Strategy::NAMES.join(", ")
            ))
        })?,
    };
    let limit: Option<usize> = kwargs.get("limit")?;
    let limit = limit.unwrap_or(3);
    if !(1..=TEMPLATE_RECOMMENDATIONS_MAX).contains(&limit) {
        return Err(invalid(format!(
            "recommendations(limit={limit}): expected 1 to {TEMPLATE_RECOMMENDATIONS_MAX}"
        )));
    }
    let mut ask = kairos_recommend::Query::new(strategy, limit);
    ask.context_item = kwargs.get("context_item")?;
    ask.exclude_viewed = kwargs
        .get::<Option<bool>>("exclude_viewed")?
        .unwrap_or(false);
    kwargs.assert_all_used()?;
    Ok(ask)
}

/// Instructions (loops, filters, lookups) all templates of one message may
/// run together before rendering stops: ample for a personalised message,
/// far below what would stall the delivery thread.
pub const MESSAGE_FUEL: u64 = 100_000;

/// Largest rendered message (all of an email's parts together; an in-app
/// message's content as JSON): the size of a large marketing email, and
/// what a browser page can take in one go.
pub const MESSAGE_BYTES_MAX: usize = 256 * 1024;

/// Renders the templates of one message for one person.
pub struct MessageRenderer {
    environment: minijinja::Environment<'static>,
    context: minijinja::Value,
    fuel_remaining: u64,
    bytes_remaining: usize,
}

impl MessageRenderer {
    /// The template environment: minijinja's builtins and
    /// `recommendations(...)` (no items until
    /// [`MessageRenderer::with_recommendations`]).
    pub fn environment() -> minijinja::Environment<'static> {
        let mut environment = minijinja::Environment::new();
        Recommendations(Arc::new(|_| Ok(Vec::new()))).install(&mut environment);
        environment
    }

    pub fn new(context: &Value) -> MessageRenderer {
        MessageRenderer::with_context(minijinja::value::Serde(context).into())
    }

    /// A renderer over a context already in the template engine's form.
    pub fn with_context(context: minijinja::Value) -> MessageRenderer {
        MessageRenderer {
            environment: MessageRenderer::environment(),
            context,
            fuel_remaining: MESSAGE_FUEL,
            bytes_remaining: MESSAGE_BYTES_MAX,
        }
    }

    /// Lets the templates call `recommendations(...)` for the person;
    /// without it the call returns no items (nothing to recommend from).
    pub fn with_recommendations(
        mut self,
        recommendations: Option<Recommendations>,
    ) -> MessageRenderer {
        if let Some(recommendations) = recommendations {
            recommendations.install(&mut self.environment);
        }
        self
    }

    /// Renders `source` (`what` names it in errors), charging its fuel and
    /// output to the message.
    pub fn render(&mut self, what: &str, source: &str) -> Result<String, String> {
        if is_plain_text(source) {
            return self.plain(source);
        }
        // minijinja counts fuel per render; each render gets what is left.
        self.environment.set_fuel(Some(self.fuel_remaining));
        let template = self
            .environment
            .template_from_str(source)
            .map_err(|error| format!("{what}: {error}"))?;
        let mut output = BoundedWriter {
            written: Vec::new(),
            allowance: self.bytes_remaining,
            overflowed: false,
        };
        let result = template.render_captured_to(self.context.clone(), &mut output);
        if output.overflowed {
            return Err(too_large());
        }
        let captured = result.map_err(|error| {
            if error.kind() == minijinja::ErrorKind::OutOfFuel {
                format!("{what}: the message's templates ran out of fuel ({MESSAGE_FUEL} steps for the whole message); simplify the loops")
            } else {
                format!("{what}: {error}")
            }
        })?;
        let consumed = captured
            .state()
            .fuel_levels()
            .map_or(0, |(consumed, _)| consumed);
        self.fuel_remaining = self.fuel_remaining.saturating_sub(consumed);
        self.bytes_remaining -= output.written.len();
        String::from_utf8(output.written).map_err(|error| format!("{what}: {error}"))
    }

    /// Every text value of a JSON message rendered as a template; the
    /// result as JSON must fit [`MESSAGE_BYTES_MAX`] too (escaping grows it).
    pub fn render_value(&mut self, value: &Value) -> Result<Value, String> {
        let rendered = self.render_tree(value)?;
        let size = serde_json::to_vec(&rendered).map_or(usize::MAX, |bytes| bytes.len());
        if size > MESSAGE_BYTES_MAX {
            return Err(too_large());
        }
        Ok(rendered)
    }

    fn render_tree(&mut self, value: &Value) -> Result<Value, String> {
        match value {
            Value::String(text) => self
                .render(&format!("message template {text:.60?}"), text)
                .map(Value::String),
            Value::Array(items) => items
                .iter()
                .map(|item| self.render_tree(item))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            Value::Object(map) => map
                .iter()
                .map(|(key, item)| Ok((key.clone(), self.render_tree(item)?)))
                .collect::<Result<serde_json::Map<_, _>, String>>()
                .map(Value::Object),
            other => Ok(other.clone()),
        }
    }
}

impl MessageRenderer {
    /// Text with nothing for the template engine renders as itself: most
    /// values of a message's JSON (a link, a button's label) skip compiling.
    fn plain(&mut self, source: &str) -> Result<String, String> {
        if source.len() > self.bytes_remaining {
            return Err(too_large());
        }
        self.bytes_remaining -= source.len();
        Ok(source.to_string())
    }
}

/// Whether minijinja would give `source` back unchanged: no tag, variable
/// or comment can start, and no trailing newline (which it drops).
fn is_plain_text(source: &str) -> bool {
    !source.contains('{') && !source.ends_with('\n')
}

fn too_large() -> String {
    format!(
        "the rendered message is larger than {MESSAGE_BYTES_MAX} bytes (the limit for one message); \
         render less per person, e.g. fewer items of a list (`{{% for p in event.properties.products[:10] %}}`)"
    )
}

/// Collects output up to an allowance, then refuses (rendering stops).
struct BoundedWriter {
    written: Vec<u8>,
    allowance: usize,
    overflowed: bool,
}

impl io::Write for BoundedWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.written.len() + bytes.len() > self.allowance {
            self.overflowed = true;
            return Err(io::Error::other("rendered message too large"));
        }
        self.written.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fuel_is_one_budget_for_the_whole_message() {
        // Each value alone fits the fuel; together they do not.
        let loop_text = "{% for i in range(20000) %}{% endfor %}"; // ~60,000 steps
        let mut renderer = MessageRenderer::new(&json!({}));
        let alone = renderer.render_value(&json!({"a": loop_text}));
        assert!(alone.is_ok(), "{alone:?}");
        assert!(
            renderer.fuel_remaining < MESSAGE_FUEL / 2,
            "{}",
            renderer.fuel_remaining
        );
        let mut renderer = MessageRenderer::new(&json!({}));
        let error = renderer
            .render_value(&json!({"a": loop_text, "b": loop_text, "c": loop_text}))
            .unwrap_err();
        assert!(error.contains("ran out of fuel"), "{error}");
    }

    #[test]
    fn output_is_one_allowance_for_the_whole_message() {
        let big = "x".repeat(100 * 1024);
        let context = json!({"traits": {"big": big}});
        let mut renderer = MessageRenderer::new(&context);
        assert!(
            renderer
                .render_value(&json!(["{{ traits.big }}", "{{ traits.big }}"]))
                .is_ok()
        );
        let mut renderer = MessageRenderer::new(&context);
        let three = json!(["{{ traits.big }}", "{{ traits.big }}", "{{ traits.big }}"]);
        let error = renderer.render_value(&three).unwrap_err();
        assert!(error.contains("larger than 262144 bytes"), "{error}");
        // A loop that would write gigabytes stops at the allowance.
        let mut renderer = MessageRenderer::new(&context);
        let error = renderer
            .render(
                "text",
                "{% for i in range(10000) %}{{ traits.big }}{% endfor %}",
            )
            .unwrap_err();
        assert!(error.contains("larger than"), "{error}");
    }

    #[test]
    fn plain_text_renders_as_minijinja_would_and_counts_toward_the_allowance() {
        let mut renderer = MessageRenderer::new(&json!({}));
        for text in [
            "Shop now",
            "https://shop.example/p?a=1&b=2",
            "",
            "a } b",
            "line\nnext",
        ] {
            assert!(is_plain_text(text));
            let mut engine = MessageRenderer::environment();
            engine.set_fuel(Some(MESSAGE_FUEL));
            let expected = engine.render_str(text, ()).unwrap();
            assert_eq!(renderer.render("text", text).unwrap(), expected);
        }
        // minijinja drops one trailing newline: such text goes through it.
        assert!(!is_plain_text("ends\n"));
        assert_eq!(renderer.render("text", "ends\n").unwrap(), "ends");
        let big = "x".repeat(200 * 1024);
        let mut renderer = MessageRenderer::new(&json!({}));
        let error = renderer.render_value(&json!([big, big])).unwrap_err();
        assert!(error.contains("larger than"), "{error}");
    }
}
