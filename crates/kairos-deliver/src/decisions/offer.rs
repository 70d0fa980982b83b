//! An offer as a marketer defines it (docs/decisions.md, "Offers"), checked
//! and compiled: durations parsed, the eligibility condition parsed in the
//! audience language, every content template parsed. Errors say where
//! (`content.web.title: line 1, column 9: …`) and how to fix it.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use kairos_core::audience::Expr;
use serde::Deserialize;
use serde_json::Value;

/// Offers in the catalog: a decision scores every one of them.
pub const OFFERS_MAX: usize = 10_000;
/// Channels an offer may carry content for.
pub const CHANNELS: [&str; 4] = ["web", "in_app", "email", "webhook"];
/// The largest offer definition (JSON): templates included.
pub const OFFER_BYTES_MAX: usize = 64 * 1024;

/// The definition as submitted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfferDefinition {
    pub name: String,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Placements it may fill (`home_hero`); empty: any.
    #[serde(default)]
    pub placements: Vec<String>,
    /// Content per channel: a JSON value whose strings are templates over
    /// the person (traits, computed, scores, audiences) and the context.
    pub content: BTreeMap<String, Value>,
    /// Business value of a conversion (priority is proportional to it).
    #[serde(default = "one")]
    pub value: f64,
    /// A business lever (boost > 1, damp < 1).
    #[serde(default = "one")]
    pub lever: f64,
    #[serde(default)]
    pub valid_from: Option<Timestamp>,
    #[serde(default)]
    pub valid_until: Option<Timestamp>,
    /// Who may get it: an audience-language condition.
    #[serde(default)]
    pub eligibility: Option<String>,
    /// Where the propensity comes from: `{"score": "<model>"}`; default:
    /// the offer's own adaptive model (Thompson sampling over responses).
    #[serde(default)]
    pub propensity: Option<PropensitySource>,
    #[serde(default)]
    pub limits: LimitsDefinition,
    /// At most one offer of a group in one decision.
    #[serde(default)]
    pub exclusive_group: Option<String>,
    /// The event that counts as a conversion when it carries the decision id.
    #[serde(default)]
    pub conversion_event: Option<String>,
    /// A purpose the person must not have refused (consent).
    #[serde(default)]
    pub purpose: Option<String>,
    /// An incentive with a randomized holdout (docs/decisions.md, "The
    /// influence zone").
    #[serde(default)]
    pub incentive: Option<IncentiveDefinition>,
    /// An experiment on the offer's content: the person's arm picks the
    /// variant shown (docs/decisions.md, "Experiments in decisions").
    #[serde(default)]
    pub experiment: Option<ExperimentLink>,
    /// Recommended items the offer shows (docs/recommendations.md): the
    /// action carries them, and without any the offer does not apply.
    #[serde(default)]
    pub items: Option<ItemsDefinition>,
}

/// The items an offer recommends.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemsDefinition {
    /// A recommendation strategy (`next`, `popular`, ...; default `auto`).
    #[serde(default)]
    pub strategy: Option<String>,
    /// Items wanted (1 to [`crate::render::TEMPLATE_RECOMMENDATIONS_MAX`]).
    #[serde(default = "three")]
    pub limit: usize,
    /// Only these categories.
    #[serde(default)]
    pub categories: Vec<String>,
}

fn three() -> usize {
    3
}

/// An offer's content tested in an experiment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentLink {
    /// The experiment (its name or id).
    pub name: String,
    /// Content per channel for each arm that shows something else than
    /// `content` (arms not listed, and holdouts, get `content`).
    pub variants: BTreeMap<String, BTreeMap<String, Value>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncentiveDefinition {
    /// The share of people it would go to who are held out as control.
    pub holdout: f64,
    /// What giving it costs (in the unit of `value`).
    pub cost: f64,
    /// How long after the decision its `conversion_event` counts.
    #[serde(default = "default_window")]
    pub window: String,
    /// What the log records of the person for uplift models:
    /// `trait.<name>` and `computed.<name>` (numbers).
    #[serde(default)]
    pub features: Vec<String>,
    /// The policy: give it only where this model's predicted uplift ×
    /// value exceeds the cost (an uplift model's score).
    #[serde(default)]
    pub uplift_score: Option<String>,
}

fn default_window() -> String {
    "7d".into()
}

/// An incentive, compiled.
#[derive(Debug, Clone)]
pub struct Incentive {
    pub holdout: f64,
    pub cost: f64,
    pub window: SignedDuration,
    pub features: Vec<String>,
    pub uplift_score: Option<String>,
}

fn one() -> f64 {
    1.0
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PropensitySource {
    pub score: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsDefinition {
    /// `{"max": 3, "per": "7d"}`: impressions per person.
    #[serde(default)]
    pub impressions: Option<ImpressionCap>,
    /// Not offered again for this long after a dismissal (`"3d"`).
    #[serde(default)]
    pub after_dismissal: Option<String>,
    /// Impressions in all (stock, budget); the offer stops at it.
    #[serde(default)]
    pub budget: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImpressionCap {
    pub max: u32,
    pub per: String,
}

/// An offer ready to be decided on.
#[derive(Debug, Clone)]
pub struct Offer {
    pub id: String,
    pub version: u32,
    pub name: String,
    pub category: Option<String>,
    pub tags: Vec<String>,
    pub placements: Vec<String>,
    pub content: BTreeMap<String, Value>,
    pub value: f64,
    pub lever: f64,
    pub valid_from: Option<Timestamp>,
    pub valid_until: Option<Timestamp>,
    pub eligibility: Option<Eligibility>,
    pub propensity: Option<PropensitySource>,
    pub impressions_cap: Option<(u32, SignedDuration)>,
    pub after_dismissal: Option<SignedDuration>,
    pub budget: Option<u64>,
    pub exclusive_group: Option<String>,
    pub conversion_event: Option<String>,
    pub purpose: Option<String>,
    pub incentive: Option<Incentive>,
    pub experiment: Option<ExperimentLink>,
    pub items: Option<kairos_recommend::Query>,
}

/// Who may get an offer.
#[derive(Debug, Clone)]
pub enum Eligibility {
    /// A condition on what the profile holds (traits, computed traits,
    /// scores, audiences): evaluated at the decision.
    Profile(Expr),
    /// A condition on behaviour (events in windows): kept exact per event
    /// by the engine as an audience of its own, named here.
    Audience(String),
}

/// Why a definition is refused: what is wrong and how to fix it, and where
/// in a template or condition when it is there.
#[derive(Debug, Clone, PartialEq)]
pub struct OfferError {
    pub message: String,
    /// Line and column (1-based) in the template or condition named.
    pub position: Option<(usize, usize)>,
}

impl std::fmt::Display for OfferError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<String> for OfferError {
    fn from(message: String) -> OfferError {
        OfferError {
            message,
            position: None,
        }
    }
}

impl From<&str> for OfferError {
    fn from(message: &str) -> OfferError {
        OfferError::from(message.to_string())
    }
}

/// The audience an offer's behavioural eligibility lives in.
pub fn eligibility_audience(offer_name: &str) -> String {
    format!(
        "{}{}",
        kairos_core::audience::QUIET_AUDIENCE_PREFIX,
        offer_name.trim()
    )
}

/// Parses and checks a definition (`id`, `version` as stored).
pub fn compile(id: &str, version: u32, definition: &Value) -> Result<Offer, OfferError> {
    let parsed: OfferDefinition = serde_json::from_value(definition.clone())
        .map_err(|error| format!("{error} (docs/decisions.md, \"Offers\")"))?;
    let name = parsed.name.trim().to_string();
    if name.is_empty() || name.len() > 200 {
        return Err("name: expected 1 to 200 characters".into());
    }
    check_content(&parsed.content)?;
    for (field, number) in [("value", parsed.value), ("lever", parsed.lever)] {
        if !number.is_finite() || number < 0.0 {
            return Err(format!("{field}: expected a number >= 0, got {number}").into());
        }
    }
    if let (Some(from), Some(until)) = (parsed.valid_from, parsed.valid_until)
        && until <= from
    {
        return Err("valid_until: must be after valid_from".into());
    }
    let eligibility = match &parsed.eligibility {
        None => None,
        Some(text) => {
            let expr = kairos_core::audience::parse(text).map_err(|error| OfferError {
                message: format!("eligibility: {error}"),
                position: Some((error.line, error.column)),
            })?;
            Some(if reads_events(&expr) {
                Eligibility::Audience(eligibility_audience(&name))
            } else {
                Eligibility::Profile(expr)
            })
        }
    };
    let limits = &parsed.limits;
    let impressions_cap = match &limits.impressions {
        None => None,
        Some(cap) => {
            if cap.max == 0 {
                return Err("limits.impressions.max: expected at least 1".into());
            }
            Some((cap.max, duration("limits.impressions.per", &cap.per)?))
        }
    };
    let after_dismissal = match &limits.after_dismissal {
        None => None,
        Some(text) => Some(duration("limits.after_dismissal", text)?),
    };
    let incentive = match &parsed.incentive {
        None => None,
        Some(incentive) => Some(checked_incentive(
            incentive,
            parsed.conversion_event.is_some(),
        )?),
    };
    if let Some(link) = &parsed.experiment {
        check_variants(link)?;
    }
    let items = parsed.items.as_ref().map(items_query).transpose()?;
    Ok(Offer {
        items,
        experiment: parsed.experiment,
        incentive,
        id: id.to_string(),
        version,
        name,
        category: parsed.category,
        tags: parsed.tags,
        placements: parsed.placements,
        content: parsed.content,
        value: parsed.value,
        lever: parsed.lever,
        valid_from: parsed.valid_from,
        valid_until: parsed.valid_until,
        eligibility,
        propensity: parsed.propensity,
        impressions_cap,
        after_dismissal,
        budget: limits.budget,
        exclusive_group: parsed.exclusive_group,
        conversion_event: parsed.conversion_event,
        purpose: parsed.purpose,
    })
}

fn checked_incentive(
    incentive: &IncentiveDefinition,
    converts: bool,
) -> Result<Incentive, OfferError> {
    if !(incentive.holdout > 0.0 && incentive.holdout < 1.0) {
        return Err(
            "incentive.holdout: the share held out as control, above 0 and below 1 (e.g. 0.5)"
                .into(),
        );
    }
    if !(incentive.cost.is_finite() && incentive.cost >= 0.0) {
        return Err("incentive.cost: a number >= 0 (in the unit of value)".into());
    }
    if !converts {
        return Err(
            "incentive: needs the offer's conversion_event (the outcome it is judged on)".into(),
        );
    }
    for feature in &incentive.features {
        let known = ["trait.", "computed."].iter().any(|prefix| {
            feature
                .strip_prefix(prefix)
                .is_some_and(|rest| !rest.is_empty())
        });
        if !known {
            return Err(format!(
                "incentive.features: {feature:?}: use trait.<name> or computed.<name> (numbers)"
            )
            .into());
        }
    }
    Ok(Incentive {
        holdout: incentive.holdout,
        cost: incentive.cost,
        window: duration("incentive.window", &incentive.window)?,
        features: incentive.features.clone(),
        uplift_score: incentive.uplift_score.clone(),
    })
}

fn duration(field: &str, text: &str) -> Result<SignedDuration, OfferError> {
    kairos_core::duration::parse_seconds(text)
        .map(|seconds| SignedDuration::from_secs(seconds as i64))
        .ok_or_else(|| {
            format!("{field}: {text:?} is not a duration (a number and s, m, h, d or w: \"7d\")")
                .into()
        })
}

/// Whether a condition reads events (counts, sums, sequences in windows):
/// those are kept exact per event by the engine, not re-read at decisions.
pub fn reads_events(expr: &Expr) -> bool {
    match expr {
        Expr::And { all } => all.iter().any(reads_events),
        Expr::Or { any } => any.iter().any(reads_events),
        Expr::Not { expr } => reads_events(expr),
        Expr::Trait { .. }
        | Expr::Computed { .. }
        | Expr::Score { .. }
        | Expr::InAudience { .. } => false,
        _ => true,
    }
}

/// Every channel is known and every string of its content is a template
/// that parses; errors name the path, line and column.
/// An offer's items as a recommendation request.
fn items_query(items: &ItemsDefinition) -> Result<kairos_recommend::Query, OfferError> {
    use kairos_recommend::Strategy;
    let strategy = match items.strategy.as_deref() {
        None => Strategy::Auto,
        Some(name) => Strategy::parse(name).ok_or_else(|| {
            OfferError::from(format!(
                "items.strategy: expected one of {}",
                Strategy::NAMES.join(", ")
            ))
        })?,
    };
    let max = crate::render::TEMPLATE_RECOMMENDATIONS_MAX;
    if !(1..=max).contains(&items.limit) {
        return Err(format!("items.limit: expected 1 to {max}").into());
    }
    let mut query = kairos_recommend::Query::new(strategy, items.limit);
    query.include_categories = items.categories.clone();
    Ok(query)
}

/// An experiment's variants: named arms, each with checked content.
fn check_variants(link: &ExperimentLink) -> Result<(), OfferError> {
    if link.name.trim().is_empty() {
        return Err("experiment.name: the experiment whose arms pick the content".into());
    }
    if link.variants.is_empty() {
        return Err("experiment.variants: expected content for at least one arm, e.g. {\"red\": {\"web\": {...}}}".into());
    }
    for (arm, content) in &link.variants {
        check_content(content).map_err(|error| OfferError {
            message: format!("experiment.variants.{arm}: {}", error.message),
            position: error.position,
        })?;
    }
    Ok(())
}

fn check_content(content: &BTreeMap<String, Value>) -> Result<(), OfferError> {
    if content.is_empty() {
        return Err(OfferError::from(format!(
            "content: expected content for at least one channel ({})",
            CHANNELS.join(", ")
        )));
    }
    let environment = minijinja::Environment::new();
    for (channel, value) in content {
        if !CHANNELS.contains(&channel.as_str()) {
            return Err(OfferError::from(format!(
                "content.{channel}: unknown channel; expected one of {}",
                CHANNELS.join(", ")
            )));
        }
        check_templates(&environment, &format!("content.{channel}"), value)?;
    }
    Ok(())
}

fn check_templates(
    environment: &minijinja::Environment<'_>,
    path: &str,
    value: &Value,
) -> Result<(), OfferError> {
    match value {
        Value::String(source) => environment
            .template_from_str(source)
            .map(drop)
            .map_err(|error| template_error(path, source, &error)),
        Value::Array(items) => items.iter().enumerate().try_for_each(|(index, item)| {
            check_templates(environment, &format!("{path}[{index}]"), item)
        }),
        Value::Object(map) => map.iter().try_for_each(|(key, item)| {
            check_templates(environment, &format!("{path}.{key}"), item)
        }),
        _ => Ok(()),
    }
}

/// `content.web.title: line 1, column 9: unexpected end of input …`.
fn template_error(path: &str, source: &str, error: &minijinja::Error) -> OfferError {
    let detail = error.detail().unwrap_or("syntax error");
    let (line, column) = match error.range() {
        Some(range) => {
            let before = &source[..range.start.min(source.len())];
            let line = before.matches('\n').count() + 1;
            let column = before
                .rsplit('\n')
                .next()
                .map_or(0, |text| text.chars().count())
                + 1;
            (line, column)
        }
        None => (error.line().unwrap_or(1), 1),
    };
    OfferError {
        message: format!("{path}: line {line}, column {column}: {detail}"),
        position: Some((line, column)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_template_error_names_its_place() {
        let error = compile(
            "off_1",
            1,
            &json!({"name": "a", "content": {"web": {"title": "Hi {{ traits.name "}}}),
        )
        .unwrap_err();
        assert!(
            error
                .message
                .starts_with("content.web.title: line 1, column"),
            "{error}"
        );
        assert!(error.position.is_some());
    }

    #[test]
    fn behavioural_eligibility_becomes_an_audience() {
        let offer = compile(
            "off_1",
            1,
            &json!({"name": "cart", "content": {"web": "x"},
                    "eligibility": "count \"Product Added\" within 1h >= 1"}),
        )
        .unwrap();
        assert!(
            matches!(offer.eligibility, Some(Eligibility::Audience(ref name)) if name == "offer cart")
        );
        let offer = compile(
            "off_2",
            1,
            &json!({"name": "vip", "content": {"web": "x"}, "eligibility": "trait plan = \"pro\""}),
        )
        .unwrap();
        assert!(matches!(offer.eligibility, Some(Eligibility::Profile(_))));
    }

    #[test]
    fn bad_limits_and_channels_are_refused_with_the_field() {
        let bad = |definition: Value| compile("off_1", 1, &definition).unwrap_err().message;
        assert!(bad(json!({"name": "a", "content": {"fax": "x"}})).starts_with("content.fax"));
        assert!(
            bad(
                json!({"name": "a", "content": {"web": "x"}, "limits": {"after_dismissal": "soon"}})
            )
            .starts_with("limits.after_dismissal")
        );
        assert!(
            bad(json!({"name": "a", "content": {"web": "x"}, "value": -1})).starts_with("value")
        );
    }
}
