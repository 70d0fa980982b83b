//! Per-person storage of one event-reading condition ("leaf"): the
//! matching events it needs, how a new event is recorded, what the
//! recorded events aggregate to in a window, and the next moment time
//! alone changes the leaf's truth (for timers).

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde_json::Value;

use super::ast::*;
use super::eval::{EventFact, canonical, lookup, matches_event, seconds, value_order};

/// An event-reading condition, compiled.
#[derive(Debug, Clone)]
pub(super) enum Leaf {
    /// Aggregates, performed, recency: matching events with one value.
    Stream {
        event: EventRef,
        window: Window,
        /// The property the aggregate reads, if any.
        property: Option<String>,
        /// Recency needs only the earliest or latest time.
        keep: Keep,
        /// For recency: the threshold whose passing flips the condition.
        recency: Option<(Relation, u64)>,
        /// For trends: the age (seconds) at which an entry moves from the
        /// last window to the one before it, which changes the value too.
        split: Option<u64>,
    },
    Sequence {
        first: EventRef,
        then: EventRef,
        within: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Keep {
    All,
    Earliest,
    Latest,
}

#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct LeafEntries {
    /// Sorted by time: (time, value of the aggregated property).
    #[serde(with = "stream_exact")]
    pub(super) stream: Vec<(Timestamp, Option<Value>)>,
    /// Sequences: times of A and of B, sorted.
    pub(super) firsts: Vec<Timestamp>,
    pub(super) thens: Vec<Timestamp>,
}

/// Adds a matching event to a leaf at `now`; false if it does not match.
pub(super) fn record(
    leaf: &Leaf,
    entries: &mut LeafEntries,
    event: &EventFact,
    now: Timestamp,
) -> bool {
    match leaf {
        Leaf::Stream {
            event: reference,
            window,
            property,
            keep,
            ..
        } => {
            if !matches_event(reference, event) {
                return false;
            }
            if let Window::Between { from, to } = window
                && !(*from <= event.at && event.at < *to)
            {
                return false; // never in the window
            }
            // Numbers in one form: `distinct` and `most frequent` see 12
            // and 12.0 as one value, as eval does.
            let value = property
                .as_deref()
                .and_then(|property| lookup(&event.properties, property).map(canonical));
            if *keep != Keep::All && property.is_some() && value.as_ref().is_none_or(Value::is_null)
            {
                return false; // `last P of`: only events that have P
            }
            let stream = &mut entries.stream;
            match keep {
                // `performed ... within D`: the latest event up to now
                // decides, but one dated in the future must wait for the
                // clock, and the latest before it may still count meanwhile.
                Keep::Latest if matches!(window, Window::Within { .. }) => {
                    let position = stream.partition_point(|(at, _)| *at <= event.at);
                    stream.insert(position, (event.at, value));
                    keep_latest_past(stream, now);
                }
                Keep::All => insert_in_time_order(stream, (event.at, value)),
                Keep::Latest
                    if stream
                        .first()
                        .is_none_or(|kept| later(&(event.at, value.clone()), kept)) =>
                {
                    *stream = vec![(event.at, value)];
                }
                Keep::Earliest if stream.first().is_none_or(|(at, _)| event.at < *at) => {
                    *stream = vec![(event.at, value)];
                }
                _ => {}
            }
            true
        }
        Leaf::Sequence { first, then, .. } => {
            let mut touched = false;
            for (reference, times) in [(first, &mut entries.firsts), (then, &mut entries.thens)] {
                if matches_event(reference, event) {
                    let position = times.partition_point(|at| *at <= event.at);
                    times.insert(position, event.at);
                    touched = true;
                }
            }
            touched
        }
    }
}

/// Inserts an entry after those at or before its time. Events mostly
/// arrive in time order: appending is checked first, so a person with
/// thousands of entries in a window costs no binary search per event.
fn insert_in_time_order(
    stream: &mut Vec<(Timestamp, Option<Value>)>,
    entry: (Timestamp, Option<Value>),
) {
    if stream.last().is_none_or(|(at, _)| *at <= entry.0) {
        stream.push(entry);
    } else {
        let position = stream.partition_point(|(at, _)| *at <= entry.0);
        stream.insert(position, entry);
    }
}

/// Of the entries up to `now`, keeps only the latest (entries after `now`
/// stay, each will be the latest when the clock reaches it).
pub(super) fn keep_latest_past(stream: &mut Vec<(Timestamp, Option<Value>)>, now: Timestamp) {
    let past = stream.partition_point(|(at, _)| *at <= now);
    if past > 1 {
        stream.drain(..past - 1);
    }
}

/// Whether entry `a` comes after `b`: by time, ties by value
/// ([`value_order`]), so the kept latest entry does not depend on arrival.
pub(super) fn later(a: &(Timestamp, Option<Value>), b: &(Timestamp, Option<Value>)) -> bool {
    a.0.cmp(&b.0)
        .then_with(|| match (&a.1, &b.1) {
            (Some(a), Some(b)) => value_order(a, b),
            (a, b) => a.is_some().cmp(&b.is_some()),
        })
        .is_gt()
}

/// The entries inside the window (entries are sorted by time; a rolling
/// window's are a suffix, a fixed range's were filtered when recorded).
pub(super) fn in_window_entries<'a>(
    stream: &'a [(Timestamp, Option<Value>)],
    window: &Window,
    now: Timestamp,
) -> &'a [(Timestamp, Option<Value>)] {
    match window {
        Window::Within { seconds: span } => {
            let horizon = now - seconds(*span);
            // Pruned streams start inside the window and rarely hold
            // entries dated after now: check the ends before searching.
            let start = match stream.first() {
                Some((at, _)) if *at > horizon => 0,
                _ => stream.partition_point(|(at, _)| *at <= horizon),
            };
            let end = match stream.last() {
                Some((at, _)) if *at <= now => stream.len(),
                _ => stream.partition_point(|(at, _)| *at <= now),
            };
            &stream[start..end.max(start)]
        }
        Window::Ever | Window::Between { .. } => stream,
    }
}

/// A recorded event: its time and the value it carries.
type Entry<T> = (Timestamp, T);

/// A trend's two windows, from entries sorted by time: those of the
/// `span` before the last one (older than `now - span`, within `2 * span`),
/// then those of the last `span`.
pub(super) fn trend_halves<T>(
    stream: &[Entry<T>],
    span: u64,
    now: Timestamp,
) -> (&[Entry<T>], &[Entry<T>]) {
    let start = stream.partition_point(|(at, _)| *at <= now - seconds(2 * span));
    let end = stream.partition_point(|(at, _)| *at <= now);
    let stream = &stream[start..end.max(start)];
    stream.split_at(stream.partition_point(|(at, _)| *at <= now - seconds(span)))
}

/// The aggregate over recorded values (the aggregated property's value of
/// each matching event), as [`super::eval`] defines it.
pub(super) fn aggregate_entries(
    function: &Aggregate,
    entries: &[(Timestamp, Option<Value>)],
) -> Option<f64> {
    let numbers = || {
        entries
            .iter()
            .filter_map(|(_, value)| value.as_ref()?.as_f64())
    };
    match function {
        Aggregate::Count => Some(entries.len() as f64),
        Aggregate::Sum(_) => Some(numbers().sum()),
        Aggregate::Avg(_) => {
            let (sum, count) = numbers().fold((0.0, 0usize), |(sum, count), value| {
                (sum + value, count + 1)
            });
            (count > 0).then(|| sum / count as f64)
        }
        Aggregate::Min(_) => numbers().reduce(f64::min),
        Aggregate::Max(_) => numbers().reduce(f64::max),
        Aggregate::Distinct(_) => Some(
            entries
                .iter()
                .filter_map(|(_, value)| value.as_ref().filter(|value| !value.is_null()))
                .map(Value::to_string)
                .collect::<BTreeSet<_>>()
                .len() as f64,
        ),
    }
}

/// The next moment after `now` when the leaf's truth can change with no
/// new event.
pub(super) fn next_change(leaf: &Leaf, entries: &LeafEntries, now: Timestamp) -> Option<Timestamp> {
    match leaf {
        Leaf::Stream {
            window: Window::Within { seconds: span },
            split,
            ..
        } => {
            // The oldest entry still younger than an age limit crosses it
            // first: the window's span, and a trend's split.
            let crossing = |age: u64| {
                let horizon = now - seconds(age);
                let first = entries.stream.partition_point(|(at, _)| *at <= horizon);
                entries.stream.get(first).map(|(at, _)| *at + seconds(age))
            };
            // An entry dated after now enters the window when now reaches it.
            let future = entries.stream.partition_point(|(at, _)| *at <= now);
            let arrival = entries.stream.get(future).map(|(at, _)| *at);
            [crossing(*span), split.and_then(crossing), arrival]
                .into_iter()
                .flatten()
                .min()
        }
        Leaf::Stream {
            recency: Some((relation, ago)),
            ..
        } => {
            // `less than D ago` turns false at at + D; `more than D ago`
            // turns true just after it.
            let (at, _) = entries.stream.first()?;
            let threshold = *at + seconds(*ago);
            let due = match relation {
                Relation::LessThan => threshold,
                Relation::MoreThan => threshold + jiff::SignedDuration::from_nanos(1),
            };
            (due > now).then_some(due)
        }
        Leaf::Stream { .. } => None,
        Leaf::Sequence { within, .. } => {
            let limit = seconds(*within);
            entries
                .firsts
                .iter()
                .map(|a| *a + limit)
                .filter(|due| *due > now)
                .min()
        }
    }
}

pub(super) fn merge_sorted<T>(target: &mut Vec<T>, other: Vec<T>, key: impl Fn(&T) -> Timestamp) {
    if other.is_empty() {
        return;
    }
    target.extend(other);
    target.sort_by_key(|item| key(item));
}

/// Keeps "no value" and a JSON `null` apart when encoded (compact formats
/// such as a checkpoint's write both as nil).
mod stream_exact {
    use jiff::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};
    use serde_json::Value;

    pub fn serialize<S: Serializer>(
        stream: &[(Timestamp, Option<Value>)],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(
            stream
                .iter()
                .map(|(at, value)| (at, value.is_some(), value.as_ref().unwrap_or(&Value::Null))),
        )
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<(Timestamp, Option<Value>)>, D::Error> {
        let entries: Vec<(Timestamp, bool, Value)> = Vec::deserialize(deserializer)?;
        Ok(entries
            .into_iter()
            .map(|(at, has, value)| (at, has.then_some(value)))
            .collect())
    }
}
