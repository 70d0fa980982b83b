//! What a definition means: the from-scratch evaluation over a person's
//! whole history. It is the reference the incremental evaluator
//! ([`super::incremental`]) is tested against, and it defines the
//! semantics precisely:
//!
//! - `within D`: events with `now − D < time <= now` — an event dated in
//!   the future of the clock is not yet in the last D; it enters when the
//!   clock reaches its time (the incremental engine sets a timer). Trends'
//!   two windows likewise end at `now`. `between A and B`: `A <= time < B`;
//!   no window: all history (whatever the clock). Event time, not arrival.
//! - `count` counts matching events; `sum`/`avg`/`min`/`max` use the
//!   property's numeric values (others are skipped; `avg`/`min`/`max` of
//!   nothing is false whatever the comparison, `sum` of nothing is 0);
//!   `distinct` counts distinct values of the property, numbers by value
//!   (`12` and `12.0` are one value: [`canonical`]), others as JSON text.
//! - `last X more than D ago`: there is an X and `now − latest > D`;
//!   `less than`: `now − latest < D`; `first` uses the earliest X.
//! - `A then B within T`: some A at `a` and some B at `b` with
//!   `a < b <= a + T` (strictly after: an event never follows itself).
//! - `A not followed by B within T`: some A at `a` with `a + T <= now` and
//!   no B at `b` with `a < b <= a + T`.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use serde_json::{Map, Value};

use super::ast::*;

/// One event of a person, as the audience language sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct EventFact {
    pub name: String,
    pub at: Timestamp,
    pub properties: Map<String, Value>,
}

impl EventFact {
    /// A track event as definitions see it (`None` for other calls), its
    /// `properties` decoded here.
    pub fn of(event: &crate::Event) -> Option<EventFact> {
        EventFact::with(event, crate::event::EventProperties::of(event))
    }

    /// Like [`EventFact::of`], with properties another reader of the event
    /// may already have decoded (they are decoded once per event).
    pub fn with(
        event: &crate::Event,
        properties: crate::event::EventProperties<'_>,
    ) -> Option<EventFact> {
        Some(EventFact {
            name: event.event.clone()?,
            at: event.timestamp,
            properties: properties.into_map(),
        })
    }
}

/// Everything a definition can look at besides events.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct PersonFacts {
    pub traits: Map<String, Value>,
    pub computed: Map<String, Value>,
    pub scores: BTreeMap<String, f64>,
    pub audiences: BTreeSet<String>,
}

/// The from-scratch evaluation of `expr` for a person at `now`.
pub fn evaluate(expr: &Expr, events: &[EventFact], facts: &PersonFacts, now: Timestamp) -> bool {
    match expr {
        Expr::And { all } => all.iter().all(|expr| evaluate(expr, events, facts, now)),
        Expr::Or { any } => any.iter().any(|expr| evaluate(expr, events, facts, now)),
        Expr::Not { expr } => !evaluate(expr, events, facts, now),
        Expr::Trait { name, test } => test_value(lookup(&facts.traits, name), test),
        Expr::Computed { name, test } => test_value(lookup(&facts.computed, name), test),
        Expr::Score { model, op, value } => facts
            .scores
            .get(model)
            .is_some_and(|score| op.holds(score.total_cmp(value))),
        Expr::InAudience { audience } => facts.audiences.contains(audience),
        Expr::Aggregate {
            function,
            event,
            window,
            op,
            value,
        } => {
            let matching: Vec<&EventFact> = events
                .iter()
                .filter(|fact| matches_event(event, fact) && in_window(window, fact.at, now))
                .collect();
            aggregate(function, &matching)
                .is_some_and(|aggregate| op.holds(aggregate.total_cmp(value)))
        }
        Expr::Performed {
            event,
            window,
            negated,
        } => {
            let any = events
                .iter()
                .any(|fact| matches_event(event, fact) && in_window(window, fact.at, now));
            any != *negated
        }
        Expr::Recency {
            which,
            event,
            relation,
            ago_seconds,
        } => {
            let times = events
                .iter()
                .filter(|fact| matches_event(event, fact))
                .map(|fact| fact.at);
            let chosen = match which {
                Occurrence::First => times.min(),
                Occurrence::Last => times.max(),
            };
            chosen.is_some_and(|at| recency_holds(at, *relation, *ago_seconds, now))
        }
        Expr::Sequence {
            first,
            then,
            within_seconds,
            negated,
        } => {
            let limit = seconds(*within_seconds);
            let followed = |a: Timestamp| {
                events
                    .iter()
                    .any(|b| matches_event(then, b) && b.at > a && b.at <= a + limit)
            };
            let starts = events.iter().filter(|fact| matches_event(first, fact));
            if *negated {
                starts
                    .clone()
                    .any(|a| a.at + limit <= now && !followed(a.at))
            } else {
                starts.clone().any(|a| followed(a.at))
            }
        }
    }
}

/// The from-scratch value of a computed trait for a person at `now`;
/// `None` when it has no value (no matching event, no branch that holds).
///
/// - aggregates as in conditions (`count`, `sum`, `distinct` of nothing
///   are 0; `avg`, `min`, `max` of nothing have no value);
/// - `first`/`last "X"`: the earliest / latest time of a matching event;
/// - `last P of "X"`: P on the latest matching event that has it (ties in
///   time: the greatest value, [`value_order`]);
/// - `most frequent P of "X"`: the value of P seen on the most matching
///   events in the window (ties: the smallest value);
/// - `case`: the first branch whose condition holds, else `else`.
pub fn value(
    expr: &ValueExpr,
    events: &[EventFact],
    facts: &PersonFacts,
    now: Timestamp,
) -> Option<Value> {
    let matching = |event: &EventRef, window: &Window| -> Vec<&EventFact> {
        events
            .iter()
            .filter(|fact| matches_event(event, fact) && in_window(window, fact.at, now))
            .collect()
    };
    match expr {
        ValueExpr::Aggregate {
            function,
            event,
            window,
        } => aggregate(function, &matching(event, window)).map(number_value),
        ValueExpr::Occurrence { which, event } => {
            let times = matching(event, &Window::Ever)
                .into_iter()
                .map(|fact| fact.at);
            let chosen = match which {
                Occurrence::First => times.min(),
                Occurrence::Last => times.max(),
            };
            chosen.map(|at| Value::String(at.to_string()))
        }
        ValueExpr::LatestValue { property, event } => matching(event, &Window::Ever)
            .into_iter()
            .filter_map(|fact| Some((fact.at, property_value(&fact.properties, property)?)))
            .max_by(|(a_at, a), (b_at, b)| a_at.cmp(b_at).then_with(|| value_order(a, b)))
            .map(|(_, value)| canonical(value)),
        ValueExpr::MostFrequent {
            property,
            event,
            window,
        } => most_frequent(
            matching(event, window)
                .into_iter()
                .filter_map(|fact| property_value(&fact.properties, property)),
        ),
        ValueExpr::Trend {
            measure,
            function,
            event,
            seconds: span,
        } => {
            let (last, before): (Vec<&EventFact>, Vec<&EventFact>) = events
                .iter()
                .filter(|fact| matches_event(event, fact))
                .filter(|fact| fact.at > now - seconds(2 * span) && fact.at <= now)
                .partition(|fact| fact.at > now - seconds(*span));
            measure
                .of(aggregate(function, &before), aggregate(function, &last))
                .map(number_value)
        }
        ValueExpr::Case {
            branches,
            otherwise,
        } => branches
            .iter()
            .find(|branch| evaluate(&branch.when, events, facts, now))
            .map(|branch| &branch.then)
            .or(otherwise.as_ref())
            .map(literal_value),
    }
}

/// A property's value when it has one (null counts as none).
pub(crate) fn property_value<'a>(map: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    lookup(map, path).filter(|value| !value.is_null())
}

/// A value with numbers in one form, so that values equal as numbers are
/// one value: a whole float is the integer (`12.0` → `12`, `-0.0` → `0`);
/// integers stay exact (no detour through f64); other values as they are.
pub fn canonical(value: &Value) -> Value {
    match value {
        Value::Number(number) if number.is_f64() => number
            .as_f64()
            .filter(|float| float.fract() == 0.0 && float.abs() < WHOLE_FLOAT_MAX)
            .map_or_else(|| value.clone(), |float| Value::from(float as i64)),
        _ => value.clone(),
    }
}

/// Whole floats below this are exact integers (2^53): beyond it a float
/// names no single integer, so it stays a float.
const WHOLE_FLOAT_MAX: f64 = 9_007_199_254_740_992.0;

/// The value seen most often, numbers by value ([`canonical`], which is
/// also the form returned); ties go to the smallest ([`value_order`]).
pub(crate) fn most_frequent<'a>(values: impl Iterator<Item = &'a Value>) -> Option<Value> {
    let mut counts: Vec<(Value, usize)> = Vec::new();
    for value in values.map(canonical) {
        match counts.iter_mut().find(|(seen, _)| *seen == value) {
            Some((_, count)) => *count += 1,
            None => counts.push((value, 1)),
        }
    }
    counts
        .into_iter()
        .max_by(|(a, a_count), (b, b_count)| a_count.cmp(b_count).then_with(|| value_order(b, a)))
        .map(|(value, _)| value)
}

/// A total order on property values: numbers numerically, before
/// everything else, which is ordered by its JSON text.
pub fn value_order(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a.as_f64(), b.as_f64()) {
        (Some(a), Some(b)) => a.total_cmp(&b),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.to_string().cmp(&b.to_string()),
    }
}

/// A number as JSON: whole numbers as integers (`3`, not `3.0`).
pub(crate) fn number_value(number: f64) -> Value {
    if number.fract() == 0.0 && number.abs() < 9.0e15 {
        Value::from(number as i64)
    } else {
        Value::from(number)
    }
}

pub(crate) fn literal_value(literal: &Literal) -> Value {
    match literal {
        Literal::Bool(flag) => Value::Bool(*flag),
        Literal::Number(number) => number_value(*number),
        Literal::Text(text) => Value::String(text.clone()),
    }
}

pub(crate) fn seconds(count: u64) -> jiff::SignedDuration {
    jiff::SignedDuration::from_secs(count.min(i64::MAX as u64) as i64)
}

pub(crate) fn in_window(window: &Window, at: Timestamp, now: Timestamp) -> bool {
    match window {
        Window::Ever => true,
        Window::Within { seconds: span } => at > now - seconds(*span) && at <= now,
        Window::Between { from, to } => *from <= at && at < *to,
    }
}

pub(crate) fn recency_holds(at: Timestamp, relation: Relation, ago: u64, now: Timestamp) -> bool {
    let elapsed = now.duration_since(at);
    match relation {
        Relation::MoreThan => elapsed > seconds(ago),
        Relation::LessThan => elapsed < seconds(ago),
    }
}

/// The aggregate over matching events; `None` when it has no value.
pub(crate) fn aggregate(function: &Aggregate, matching: &[&EventFact]) -> Option<f64> {
    let numbers = |property: &str| -> Vec<f64> {
        matching
            .iter()
            .filter_map(|fact| lookup(&fact.properties, property)?.as_f64())
            .collect()
    };
    match function {
        Aggregate::Count => Some(matching.len() as f64),
        Aggregate::Sum(property) => Some(numbers(property).iter().sum()),
        Aggregate::Avg(property) => {
            let values = numbers(property);
            (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
        }
        Aggregate::Min(property) => numbers(property).into_iter().reduce(f64::min),
        Aggregate::Max(property) => numbers(property).into_iter().reduce(f64::max),
        Aggregate::Distinct(property) => Some(
            matching
                .iter()
                .filter_map(|fact| lookup(&fact.properties, property))
                .filter(|value| !value.is_null())
                .map(|value| canonical(value).to_string())
                .collect::<BTreeSet<_>>()
                .len() as f64,
        ),
    }
}

pub fn matches_event(event: &EventRef, fact: &EventFact) -> bool {
    fact.name == event.name
        && event
            .filters
            .iter()
            .all(|filter| test_value(lookup(&fact.properties, &filter.property), &filter.test))
}

/// A value at a dotted path (`product.category`).
pub(crate) fn lookup<'a>(map: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(value) = map.get(path) {
        return Some(value);
    }
    let mut parts = path.split('.');
    let mut current = map.get(parts.next()?)?;
    for part in parts {
        current = current.as_object()?.get(part)?;
    }
    Some(current)
}

pub(crate) fn test_value(value: Option<&Value>, test: &ValueTest) -> bool {
    let value = value.filter(|value| !value.is_null());
    match test {
        ValueTest::Exists => value.is_some(),
        ValueTest::Missing => value.is_none(),
        ValueTest::Contains { text } => value
            .and_then(Value::as_str)
            .is_some_and(|found| found.contains(text.as_str())),
        ValueTest::In { values } => value.is_some_and(|value| {
            values
                .iter()
                .any(|literal| compare(value, literal) == Some(std::cmp::Ordering::Equal))
        }),
        ValueTest::Compare { op, value: literal } => value
            .and_then(|value| compare(value, literal))
            .is_some_and(|ordering| op.holds(ordering)),
    }
}

/// Numbers numerically, booleans by equality, text as timestamps when
/// both sides are timestamps, else as text. `None` when incomparable.
fn compare(value: &Value, literal: &Literal) -> Option<std::cmp::Ordering> {
    match (value, literal) {
        (Value::Number(number), Literal::Number(expected)) => {
            Some(number.as_f64()?.total_cmp(expected))
        }
        (Value::String(text), Literal::Number(expected)) => {
            Some(text.trim().parse::<f64>().ok()?.total_cmp(expected))
        }
        (Value::Bool(flag), Literal::Bool(expected)) => Some(flag.cmp(expected)),
        (Value::String(text), Literal::Text(expected)) => {
            match (text.parse::<Timestamp>(), expected.parse::<Timestamp>()) {
                (Ok(time), Ok(expected_time)) => Some(time.cmp(&expected_time)),
                _ => Some(text.as_str().cmp(expected.as_str())),
            }
        }
        _ => None,
    }
}
