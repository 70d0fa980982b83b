//! Journey definitions (docs/journeys.md): what starts a journey and what
//! it does. The JSON form is what `POST /v1/journeys` accepts:
//!
//! ```json
//! {"name": "welcome",
//!  "trigger": {"event": "Signed Up", "where": "plan = \"pro\""},
//!  "steps": [{"send": {"destination": "crm-hook"}}]}
//! ```
//!
//! Triggers: an event (with optional property filters in the audience
//! language, optionally only when it departs from the person's own usual
//! values), an event not followed by another within a time, a profile
//! entering or leaving an audience, or any audience-language condition
//! becoming true (a computed trait or score crossing a threshold). Steps:
//! send, wait (a duration, until a time of day, for an event), branch,
//! set a trait, add to a list. docs/journeys.md has the whole language.
//!
//! [`compile`] turns a definition into a [`CompiledJourney`]: a matcher
//! for its trigger and its steps flattened into a program. What only the
//! caller can check — which destinations exist, whether a template parses
//! in the template language — it asks through [`Checks`].

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::audience::References;
use crate::audience::ast::{EventRef, Expr};
use crate::audience::eval::{EventFact, matches_event};

pub use super::entry::{Entry, EntryRule, MAX_EVENT_AGE_DEFAULT};

/// A definition that cannot be compiled; the message says what is wrong
/// and how to fix it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidJourney(pub String);

impl InvalidJourney {
    pub fn kind(&self) -> crate::error::ErrorKind {
        crate::error::ErrorKind::Invalid
    }
}

/// What compiling a definition needs from outside the core.
pub trait Checks {
    /// A destination named by name or id: its id and kind ("webhook",
    /// "email", "in_app"), or `None` when there is none.
    fn destination(&self, name: &str) -> Option<(String, String)>;
    /// Whether an email's templates parse and read only names the
    /// message context has.
    fn email_template(&self, template: &EmailTemplate) -> Result<(), String>;
    /// The same for every text value of an in-app message.
    fn message_template(&self, message: &Value) -> Result<(), String>;
}

/// An email's parts, as templates (rendered by kairos-deliver's `email`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailTemplate {
    pub subject: String,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JourneyDefinition {
    pub trigger: Trigger,
    pub steps: Vec<Step>,
    /// An event name: when the person does it, they leave the journey
    /// (the order came in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal: Option<String>,
    /// `"every_time"` (default), `"once"` (ever), or an object:
    /// `{"once_per": "7d"}`, `{"rule": "once"}`, with `"include_existing"`
    /// and `"max_event_age"` (docs/journeys.md, "What starts a journey").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<Value>,
}

/// A journey's steps, flattened: branches become jumps, so a person's place
/// in the journey is one number.
#[derive(Debug, Clone)]
pub enum Instruction {
    Send(SendStep),
    Wait(jiff::SignedDuration),
    /// Until the event or the timeout, whichever comes first.
    WaitFor {
        event: String,
        timeout: jiff::SignedDuration,
    },
    /// Goes on when the condition holds, else jumps to `otherwise`.
    Branch {
        condition: Expr,
        otherwise: usize,
    },
    /// Until the next time the person's clock shows this time of day.
    WaitUntil(jiff::civil::Time),
    Jump(usize),
    AddToList(String),
    SetTrait {
        name: String,
        value: Value,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Trigger {
    /// `{"event": "Product Added", "not_followed_by": "Order Completed",
    /// "within": "30m", "key": "cart_id"}`: starts when the first event is
    /// not followed by the second (same key value, or same person without a
    /// key) within the time — the abandoned cart. First in the list: the
    /// plain event trigger would otherwise match it.
    NotFollowed {
        event: String,
        #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
        filter: Option<String>,
        not_followed_by: String,
        within: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
    Event {
        event: String,
        /// Property filters in the audience language: `plan = "pro" and
        /// price >= 10`.
        #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
        filter: Option<String>,
        /// Only when the event departs from the person's own history.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        unusual: Option<Unusual>,
    },
    /// `{"when": "computed orders_90d >= 3"}`: starts when the condition
    /// becomes true for a person (a computed trait or a score crossing a
    /// threshold). Kept exactly, per event and as time passes, by an
    /// audience the journey owns (named [`condition_audience`]).
    When {
        when: String,
    },
    Entered {
        audience_entered: String,
    },
    Exited {
        audience_exited: String,
    },
}

/// `{"property": "country"}`: a value the person never had in this
/// event before; `{"property": "revenue", "sigmas": 3}`: a number more than
/// 3 standard deviations above their mean. Needs `min_history` earlier
/// events (default 3) — without a baseline nothing is unusual.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unusual {
    pub property: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigmas: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_history: Option<usize>,
}

/// The audience a `{"when": …}` journey owns.
pub fn condition_audience(journey_name: &str) -> String {
    format!("journey {}", journey_name.trim())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// `{"wait": "1h"}`.
    Wait(String),
    /// `{"wait_for": {"event": "Order Completed", "timeout": "1d"}}`.
    WaitFor { event: String, timeout: String },
    /// `{"branch": {"if": "<audience-language condition>", "then": [...],
    /// "else": [...]}}`.
    Branch {
        #[serde(rename = "if")]
        condition: String,
        #[serde(default)]
        then: Vec<Step>,
        #[serde(default, rename = "else")]
        otherwise: Vec<Step>,
    },
    /// `{"wait_until": "09:00"}`: the next 09:00 in the person's time zone
    /// (trait `timezone`, else the policy's `default_time_zone`).
    WaitUntil(String),
    /// `{"add_to_list": "call-back"}`: every identifier of the person joins
    /// the list (`GET /v1/lists/call-back`); a suppression list stops sends.
    AddToList(String),
    /// `{"set_trait": {"name": "nudged", "value": true}}`.
    SetTrait { name: String, value: Value },
    /// `purpose` ("marketing") subjects the send to consent, caps and
    /// quiet hours; without one it is transactional.
    Send {
        destination: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        purpose: Option<String>,
        /// Email destinations: the mail's subject, text and HTML templates.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        template: Option<EmailTemplate>,
        /// In-app destinations: the message shown (any JSON; its text
        /// values are templates).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<serde_json::Value>,
        /// In-app and webhook destinations: what is sent is the top action
        /// Kairos decides for the person in this placement
        /// (docs/decisions.md, "In journeys").
        #[serde(default, skip_serializing_if = "Option::is_none")]
        decide: Option<DecideStep>,
    },
}

/// `{"placement": "cart_nudge"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecideStep {
    pub placement: String,
}

/// A compiled `send` step.
#[derive(Debug, Clone)]
pub struct SendStep {
    /// The destination's id.
    pub destination: String,
    /// "webhook" or "email".
    pub kind: String,
    pub purpose: Option<String>,
    pub template: Option<EmailTemplate>,
    pub message: Option<serde_json::Value>,
    /// The placement whose top action is sent.
    pub decide: Option<String>,
}

/// A journey ready to match events.
#[derive(Debug, Clone)]
pub struct CompiledJourney {
    pub id: String,
    pub name: String,
    /// Events at or before this log position are older than the journey.
    pub starts_after_seq: u64,
    pub matcher: Matcher,
    pub program: Vec<Instruction>,
    /// Where each instruction is in the definition (`steps[1].branch.then[0]`),
    /// to report per step.
    pub paths: Vec<String>,
    pub goal: Option<String>,
    pub entry: Entry,
    /// Paused: nobody enters and its runs hold (set from the record).
    pub paused: bool,
}

impl CompiledJourney {
    /// The event names this journey acts on: its trigger, the events its
    /// runs wait for and its goal (the effects stage is handed only these).
    pub fn event_names(&self) -> Vec<String> {
        let mut names = match &self.matcher {
            Matcher::Event(event, _) => vec![event.name.clone()],
            Matcher::NotFollowed { first, then, .. } => vec![first.name.clone(), then.clone()],
            Matcher::Membership { .. } => vec![
                crate::audience::ANNOUNCED_ENTERED.to_string(),
                crate::audience::ANNOUNCED_EXITED.to_string(),
            ],
        };
        for instruction in &self.program {
            if let Instruction::WaitFor { event, .. } = instruction {
                names.push(event.clone());
            }
        }
        names.extend(self.goal.clone());
        names
    }

    /// The audiences, computed traits and scores the journey reads: its
    /// trigger's audience and its branches' conditions. Checked when it is
    /// created; what it names cannot be deleted while it exists.
    pub fn references(&self) -> References {
        let mut references = References::default();
        if let Matcher::Membership { audience, .. } = &self.matcher {
            references.audiences.insert(audience.clone());
        }
        for instruction in &self.program {
            if let Instruction::Branch { condition, .. } = instruction {
                references.extend(References::of(condition));
            }
        }
        references
    }

    /// Every send of the journey.
    pub fn sends(&self) -> impl Iterator<Item = &SendStep> {
        self.program
            .iter()
            .filter_map(|instruction| match instruction {
                Instruction::Send(send) => Some(send),
                _ => None,
            })
    }
}

#[derive(Debug, Clone)]
pub enum Matcher {
    Event(EventRef, Option<Unusual>),
    NotFollowed {
        first: EventRef,
        then: String,
        within: jiff::SignedDuration,
        /// The property both events must share; `None`: the same person.
        key: Option<String>,
    },
    /// `Audience Entered` (true) or `Exited` (false) of this audience, from
    /// the engine's announcements.
    Membership {
        audience: String,
        entered: bool,
    },
}

/// Parses and checks a definition; `checks` resolves destination names
/// and checks templates. Errors say what is wrong and how to fix it.
pub fn compile(
    id: &str,
    name: &str,
    starts_after_seq: u64,
    definition: &serde_json::Value,
    checks: &dyn Checks,
) -> Result<CompiledJourney, InvalidJourney> {
    compile_checked(id, name, starts_after_seq, definition, checks).map_err(InvalidJourney)
}

fn compile_checked(
    id: &str,
    name: &str,
    starts_after_seq: u64,
    definition: &serde_json::Value,
    checks: &dyn Checks,
) -> Result<CompiledJourney, String> {
    let definition: JourneyDefinition = serde_json::from_value(definition.clone()).map_err(|error| {
        format!(
            "{error}; a journey is {{\"trigger\": {{\"event\": \"Signed Up\"}} or {{\"audience_entered\": \"vip\"}} or {{\"audience_exited\": \"vip\"}} or {{\"when\": \"computed orders_90d >= 3\"}}, \"steps\": [{{\"send\": {{\"destination\": \"<name or id>\"}}}}]}} (docs/journeys.md)"
        )
    })?;
    let matcher = match &definition.trigger {
        Trigger::Event {
            event,
            filter,
            unusual,
        } => Matcher::Event(
            event_ref(event, filter.as_deref())?,
            checked_unusual(unusual)?,
        ),
        Trigger::When { when } => {
            crate::audience::parse(when).map_err(|error| format!("trigger.when: {error}"))?;
            Matcher::Membership {
                audience: condition_audience(name),
                entered: true,
            }
        }
        Trigger::NotFollowed {
            event,
            filter,
            not_followed_by,
            within,
            key,
        } => Matcher::NotFollowed {
            first: event_ref(event, filter.as_deref())?,
            then: not_followed_by.clone(),
            within: duration(within)?,
            key: key.clone(),
        },
        Trigger::Entered { audience_entered } => Matcher::Membership {
            audience: audience_entered.clone(),
            entered: true,
        },
        Trigger::Exited { audience_exited } => Matcher::Membership {
            audience: audience_exited.clone(),
            entered: false,
        },
    };
    if definition.steps.is_empty() {
        return Err(
            "a journey needs at least one step, e.g. {\"send\": {\"destination\": \"crm-hook\"}}"
                .into(),
        );
    }
    let mut program = Vec::new();
    let mut paths = Vec::new();
    emit(&definition.steps, "steps", checks, &mut program, &mut paths)?;
    Ok(CompiledJourney {
        id: id.to_string(),
        name: name.to_string(),
        starts_after_seq,
        matcher,
        program,
        paths,
        goal: definition.goal.clone(),
        entry: Entry::parse(definition.entry.as_ref())?,
        paused: false,
    })
}

/// Appends the steps to the program; a branch becomes a conditional jump
/// over its `then` steps and a jump over its `else` steps.
fn emit(
    steps: &[Step],
    prefix: &str,
    checks: &dyn Checks,
    program: &mut Vec<Instruction>,
    paths: &mut Vec<String>,
) -> Result<(), String> {
    for (index, step) in steps.iter().enumerate() {
        let path = format!("{prefix}[{index}]");
        emit_step(step, &path, checks, program, paths)?;
        // A plain step's one instruction is reported at its path (a
        // branch named its own and its arms').
        while paths.len() < program.len() {
            paths.push(path.clone());
        }
    }
    Ok(())
}

/// The instructions of one step (a branch: its own and its arms').
fn emit_step(
    step: &Step,
    path: &str,
    checks: &dyn Checks,
    program: &mut Vec<Instruction>,
    paths: &mut Vec<String>,
) -> Result<(), String> {
    {
        match step {
            Step::Wait(text) => program.push(Instruction::Wait(
                duration(text).map_err(|error| error.replace("trigger.within", "wait"))?,
            )),
            Step::WaitFor { event, timeout } => program.push(Instruction::WaitFor {
                event: event.clone(),
                timeout: duration(timeout)
                    .map_err(|error| error.replace("trigger.within", "wait_for.timeout"))?,
            }),
            Step::WaitUntil(text) => {
                program.push(Instruction::WaitUntil(text.trim().parse().map_err(
                    |_| format!("wait_until {text:?}: expected a time of day such as \"09:00\""),
                )?))
            }
            Step::AddToList(list) => {
                super::lists::checked(list)?;
                program.push(Instruction::AddToList(list.trim().to_string()));
            }
            Step::SetTrait { name, value } => {
                if name.trim().is_empty() {
                    return Err("set_trait needs a trait name".into());
                }
                program.push(Instruction::SetTrait {
                    name: name.clone(),
                    value: value.clone(),
                });
            }
            Step::Branch {
                condition,
                then,
                otherwise,
            } => {
                let condition = crate::audience::parse(condition)
                    .map_err(|error| format!("branch \"if\": {error}"))?;
                let branch = program.len();
                program.push(Instruction::Branch {
                    condition,
                    otherwise: 0,
                });
                paths.push(path.to_string());
                emit(then, &format!("{path}.branch.then"), checks, program, paths)?;
                let jump = program.len();
                program.push(Instruction::Jump(0));
                paths.push(path.to_string());
                let else_start = program.len();
                emit(
                    otherwise,
                    &format!("{path}.branch.else"),
                    checks,
                    program,
                    paths,
                )?;
                let end = program.len();
                if let Instruction::Branch { otherwise, .. } = &mut program[branch] {
                    *otherwise = else_start;
                }
                program[jump] = Instruction::Jump(end);
            }
            Step::Send {
                destination: name,
                purpose,
                template,
                message,
                decide,
            } => {
                let (id, kind) = checks.destination(name).ok_or_else(|| {
                    format!("no destination {name:?}; create it with POST /v1/destinations")
                })?;
                if let Some(decide) = decide {
                    checked_decide(name, &kind, decide, template.is_some() || message.is_some())?;
                }
                match (kind.as_str(), template, message) {
                    ("email", None, _) => {
                        return Err(format!(
                            "sending to the email destination {name:?} needs a \"template\": {{\"subject\": \"...\", \"text\": \"...\", \"html\": \"...\"}}"
                        ));
                    }
                    ("email", Some(template), _) => checks.email_template(template)?,
                    ("in_app", _, None) if decide.is_none() => {
                        return Err(format!(
                            "sending to the in-app destination {name:?} needs a \"message\", e.g. {{\"title\": \"Still thinking?\", \"body\": \"Your cart is waiting\"}}"
                        ));
                    }
                    ("in_app", _, Some(message)) => checks.message_template(message)?,
                    _ => {}
                }
                program.push(Instruction::Send(SendStep {
                    destination: id,
                    kind,
                    purpose: purpose.clone(),
                    template: template.clone(),
                    message: message.clone(),
                    decide: decide
                        .as_ref()
                        .map(|decide| decide.placement.trim().to_string()),
                }));
            }
        }
    }
    Ok(())
}

/// A `decide` send: to an in-app or webhook destination, alone.
fn checked_decide(
    name: &str,
    kind: &str,
    decide: &DecideStep,
    has_content: bool,
) -> Result<(), String> {
    if !matches!(kind, "in_app" | "webhook") {
        return Err(format!(
            "\"decide\" sends to in-app and webhook destinations; {name:?} is {kind}"
        ));
    }
    if has_content {
        return Err("a send with \"decide\" sends the decided offer's content: leave out \"message\" and \"template\"".into());
    }
    if decide.placement.trim().is_empty() {
        return Err(
            "decide.placement: name the placement, e.g. {\"placement\": \"cart_nudge\"}".into(),
        );
    }
    Ok(())
}

fn checked_unusual(unusual: &Option<Unusual>) -> Result<Option<Unusual>, String> {
    if let Some(unusual) = unusual {
        if unusual.property.trim().is_empty() {
            return Err("trigger.unusual needs a \"property\"".into());
        }
        if let Some(sigmas) = unusual.sigmas
            && !(sigmas.is_finite() && sigmas > 0.0)
        {
            return Err("trigger.unusual.sigmas must be a positive number, e.g. 3".into());
        }
    }
    Ok(unusual.clone())
}

/// "30m", "2h", "1d", "90s", "2w".
pub(super) fn duration(text: &str) -> Result<jiff::SignedDuration, String> {
    crate::duration::parse_seconds(text)
        .and_then(|seconds| i64::try_from(seconds).ok())
        .map(jiff::SignedDuration::from_secs)
        .ok_or_else(|| {
            format!(
                "trigger.within {:?}: expected a duration such as \"30m\" (units s, m, h, d, w)",
                text.trim()
            )
        })
}

/// The event name with its filters, parsed by the audience language.
fn event_ref(event: &str, filter: Option<&str>) -> Result<EventRef, String> {
    if event.trim().is_empty() {
        return Err("trigger.event needs an event name".into());
    }
    let Some(filter) = filter else {
        return Ok(EventRef {
            name: event.to_string(),
            filters: Vec::new(),
        });
    };
    // A `performed` condition carries exactly an event with filters.
    let quoted = event.replace('\\', "\\\\").replace('"', "\\\"");
    let text = format!("performed \"{quoted}\" where ({filter})");
    match crate::audience::parse(&text) {
        Ok(Expr::Performed { event, .. }) => Ok(event),
        Ok(_) => Err(format!(
            "trigger.where {filter:?} is not a list of property tests"
        )),
        Err(error) => Err(format!(
            "trigger.where {filter:?}: {} (property tests such as plan = \"pro\" and price >= 10)",
            error.message
        )),
    }
}

impl CompiledJourney {
    /// Whether an event (name, properties, and whether it is one of the
    /// engine's membership announcements) starts this journey.
    pub fn matches(&self, fact: &EventFact, announcement: bool) -> bool {
        match &self.matcher {
            Matcher::Event(event, _) => !announcement && matches_event(event, fact),
            // Waits are handled by the follower (`starts` / `ends`).
            Matcher::NotFollowed { .. } => false,
            Matcher::Membership { audience, entered } => {
                let name = if *entered {
                    crate::audience::ANNOUNCED_ENTERED
                } else {
                    crate::audience::ANNOUNCED_EXITED
                };
                announcement
                    && fact.name == name
                    && fact
                        .properties
                        .get("audience")
                        .and_then(|value| value.as_str())
                        == Some(audience.as_str())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Every name is a webhook; every template passes.
    struct AnyWebhook;

    impl Checks for AnyWebhook {
        fn destination(&self, _name: &str) -> Option<(String, String)> {
            Some(("dst_1".to_string(), "webhook".to_string()))
        }
        fn email_template(&self, _template: &EmailTemplate) -> Result<(), String> {
            Ok(())
        }
        fn message_template(&self, _message: &Value) -> Result<(), String> {
            Ok(())
        }
    }

    /// Destinations and templates are the caller's to check: an unknown
    /// name, or a template the caller refuses, fails the definition with
    /// the caller's reason.
    #[test]
    fn the_callers_checks_decide_destinations_and_templates() {
        struct OneMailer;
        impl Checks for OneMailer {
            fn destination(&self, name: &str) -> Option<(String, String)> {
                (name == "mailer").then(|| ("dst_m".to_string(), "email".to_string()))
            }
            fn email_template(&self, template: &EmailTemplate) -> Result<(), String> {
                match template.subject.contains("{{") {
                    true => Err("template subject: unknown name".into()),
                    false => Ok(()),
                }
            }
            fn message_template(&self, _message: &Value) -> Result<(), String> {
                Ok(())
            }
        }
        let send = |destination: &str, subject: &str| {
            json!({"trigger": {"event": "X"}, "steps": [{"send": {"destination": destination,
                "template": {"subject": subject, "text": "hi"}}}]})
        };
        let compiled = compile("j", "j", 0, &send("mailer", "Hello"), &OneMailer).unwrap();
        assert_eq!(compiled.sends().next().unwrap().destination, "dst_m");
        let unknown = compile("j", "j", 0, &send("other", "Hello"), &OneMailer).unwrap_err();
        assert!(unknown.0.contains("no destination \"other\""), "{unknown}");
        let refused = compile("j", "j", 0, &send("mailer", "{{ x }}"), &OneMailer).unwrap_err();
        assert_eq!(refused.0, "template subject: unknown name");
        assert_eq!(refused.kind(), crate::error::ErrorKind::Invalid);
    }

    #[test]
    fn every_instruction_knows_the_step_it_came_from() {
        let definition = json!({"trigger": {"event": "X"}, "steps": [
            {"wait": "1h"},
            {"branch": {"if": "trait vip = true",
                        "then": [{"send": {"destination": "hooks"}}],
                        "else": [{"wait_until": "09:00"}, {"send": {"destination": "hooks"}}]}},
            {"set_trait": {"name": "done", "value": true}},
        ]});
        let journey = compile("jny_1", "j", 0, &definition, &AnyWebhook).unwrap();
        assert_eq!(journey.paths.len(), journey.program.len());
        assert_eq!(
            journey.paths,
            [
                "steps[0]",
                "steps[1]",
                "steps[1].branch.then[0]",
                "steps[1]",
                "steps[1].branch.else[0]",
                "steps[1].branch.else[1]",
                "steps[2]",
            ]
        );
        assert!(matches!(journey.program[3], Instruction::Jump(6)));
    }
}
