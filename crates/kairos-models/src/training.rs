//! Training rows from stored history, by the same code that serves: each
//! person's stored events go through [`FeatureState::observe`] in log
//! order, exactly as the engine's shard feeds them, and at every
//! observation point the row holds the features as a model would have seen
//! them at that moment. The label looks ahead: did the person do the label
//! event within the horizon after it?
//!
//! Only the built-in features (`session.*`, `context.*`, `profile.*`) can
//! be rebuilt for a past moment; traits and computed traits are kept as
//! they are now, and using today's value for a past row would leak the
//! future into training, so they are refused.

use std::collections::VecDeque;

use jiff::Timestamp;
use kairos_core::duration::parse_seconds;
use kairos_core::{Event, EventType};
use serde::Deserialize;

use crate::features::{Feature, FeatureState};

/// What rows to build: declared in the same feature names as a model's
/// `inputs`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RowSpec {
    /// Feature names, in column order.
    pub features: Vec<String>,
    /// What a row predicts.
    pub label: LabelSpec,
    /// Events that make a row (the moments a model would score and a
    /// decision be taken). Default: every event except the label event.
    #[serde(default)]
    pub at: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelSpec {
    /// The track event that makes a row positive (`"Order Completed"`).
    pub event: String,
    /// How long after the row's moment it may happen: `30m`, `1h`, `7d`.
    pub within: String,
}

/// A [`RowSpec`] checked and resolved.
#[derive(Debug, Clone)]
pub struct RowPlan {
    pub names: Vec<String>,
    features: Vec<Feature>,
    label_event: String,
    horizon_seconds: i64,
    at: Option<Vec<String>>,
}

impl RowPlan {
    pub fn new(spec: RowSpec) -> Result<RowPlan, String> {
        if spec.features.is_empty() {
            return Err(
                "features: name at least one, e.g. [\"session.product_views\", \"session.page_value\"]"
                    .into(),
            );
        }
        let mut features = Vec::with_capacity(spec.features.len());
        for name in &spec.features {
            match Feature::parse(name)? {
                Feature::Builtin(position) => features.push(Feature::Builtin(position)),
                _ => {
                    return Err(format!(
                        "features: {name:?} is kept only as it is now, so a past row cannot have it (today's value would leak the future into training); use session.*, context.* and profile.* features"
                    ));
                }
            }
        }
        if spec.label.event.trim().is_empty() {
            return Err("label.event: the event a row predicts, e.g. \"Order Completed\"".into());
        }
        let horizon_seconds = parse_seconds(&spec.label.within)
            .and_then(|seconds| i64::try_from(seconds).ok())
            .ok_or_else(|| {
                format!(
                    "label.within: {:?} is not a duration; write a number and a unit: 30m, 1h, 7d",
                    spec.label.within
                )
            })?;
        Ok(RowPlan {
            names: spec.features,
            features,
            label_event: spec.label.event,
            horizon_seconds,
            at: spec.at,
        })
    }

    fn observes(&self, event: &Event) -> bool {
        let name = event_name(event);
        match &self.at {
            Some(names) => names.iter().any(|wanted| wanted == name),
            None => name != self.label_event,
        }
    }
}

/// One training row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub profile: String,
    pub at: Timestamp,
    pub values: Vec<f64>,
    pub label: bool,
}

/// The rows of many people, and how many moments were left out because
/// their horizon has not passed yet (their label is not known).
#[derive(Debug, Default)]
pub struct Rows {
    pub rows: Vec<Row>,
    pub censored: usize,
}

impl Rows {
    /// Adds one person's rows; `events` in log order, `now` the clock
    /// (a row is kept only once its whole horizon lies before `now`).
    pub fn add_person(&mut self, plan: &RowPlan, profile: &str, events: &[Event], now: Timestamp) {
        let mut person = PersonRows::default();
        for event in events {
            person.observe(plan, profile, event, self);
        }
        person.finish(plan, now, self);
    }

    pub fn positives(&self) -> usize {
        self.rows.iter().filter(|row| row.label).count()
    }

    /// CSV: `profile,at,<features...>,label` (NaN written as an empty cell).
    pub fn to_csv(&self, names: &[String]) -> String {
        let mut csv = format!("profile,at,{},label\n", names.join(","));
        for row in &self.rows {
            csv.push_str(&csv_cell(&row.profile));
            csv.push(',');
            csv.push_str(&row.at.to_string());
            for value in &row.values {
                csv.push(',');
                if value.is_finite() {
                    csv.push_str(&value.to_string());
                }
            }
            csv.push_str(if row.label { ",1\n" } else { ",0\n" });
        }
        csv
    }
}

/// One person's rows as their events go by in log order: the features
/// kept as serving keeps them, and the rows still waiting for their label.
#[derive(Debug, Default)]
pub struct PersonRows {
    state: FeatureState,
    /// Rows whose horizon has not ended yet, oldest first.
    open: VecDeque<Row>,
}

impl PersonRows {
    /// Takes the person's next event into account; settled rows go to `rows`.
    pub fn observe(&mut self, plan: &RowPlan, profile: &str, event: &Event, rows: &mut Rows) {
        self.state.observe(event);
        let at = event.timestamp;
        if event_name(event) == plan.label_event {
            // Every open row whose horizon covers this moment is positive.
            for row in self.open.iter_mut() {
                let elapsed = at.as_second() - row.at.as_second();
                if elapsed > 0 && elapsed <= plan.horizon_seconds {
                    row.label = true;
                }
            }
        }
        // Rows whose horizon ended before this event are settled.
        while self
            .open
            .front()
            .is_some_and(|row| at.as_second() - row.at.as_second() > plan.horizon_seconds)
        {
            rows.rows.push(self.open.pop_front().expect("checked"));
        }
        if plan.observes(event) {
            let no_traits = serde_json::Map::new();
            self.open.push_back(Row {
                profile: profile.to_string(),
                at,
                values: plan
                    .features
                    .iter()
                    .map(|feature| self.state.value(feature, &no_traits, &no_traits))
                    .collect(),
                label: false,
            });
        }
    }

    /// No more events: rows whose horizon has passed on the clock are
    /// kept, the others counted as censored.
    pub fn finish(self, plan: &RowPlan, now: Timestamp, rows: &mut Rows) {
        for row in self.open {
            if now.as_second() - row.at.as_second() >= plan.horizon_seconds {
                rows.rows.push(row);
            } else {
                rows.censored += 1;
            }
        }
    }
}

fn event_name(event: &Event) -> &str {
    match event.event_type {
        EventType::Track => event.event.as_deref().unwrap_or(""),
        EventType::Page => "page",
        EventType::Screen => "screen",
        EventType::Identify => "identify",
        EventType::Group => "group",
        EventType::Alias => "alias",
    }
}

fn csv_cell(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str, at: &str) -> Event {
        use kairos_core::normalize::{Arrival, IngestLimits, normalize_event};
        let raw = serde_json::json!({"type": "track", "event": name, "userId": "u",
                                     "messageId": format!("{name}{at}"), "timestamp": at});
        let raw = serde_json::value::RawValue::from_string(raw.to_string()).unwrap();
        let limits = IngestLimits::default();
        let arrival = Arrival {
            source_id: "src",
            received_at: at.parse().unwrap(),
            batch_sent_at: None,
            path_type: None,
            limits: &limits,
            plan: None,
        };
        normalize_event(&raw, &arrival).unwrap()
    }

    fn plan(at: Option<Vec<String>>) -> RowPlan {
        RowPlan::new(RowSpec {
            features: vec!["session.product_views".into(), "session.events".into()],
            label: LabelSpec {
                event: "Order Completed".into(),
                within: "1h".into(),
            },
            at,
        })
        .unwrap()
    }

    #[test]
    fn rows_hold_the_features_of_their_moment_and_look_ahead_for_the_label() {
        let events = [
            event("Product Viewed", "2030-01-01T10:00:00Z"),
            event("Product Viewed", "2030-01-01T10:10:00Z"),
            event("Order Completed", "2030-01-01T10:30:00Z"),
            event("Product Viewed", "2030-01-01T12:00:00Z"),
            event("Product Viewed", "2030-01-01T15:00:00Z"),
        ];
        let mut rows = Rows::default();
        rows.add_person(
            &plan(None),
            "p1",
            &events,
            "2030-01-01T15:30:00Z".parse().unwrap(),
        );
        let seen: Vec<(Vec<f64>, bool)> = rows
            .rows
            .iter()
            .map(|row| (row.values.clone(), row.label))
            .collect();
        // 10:00 and 10:10 buy within the hour; 12:00 starts a new session
        // and does not; 15:00's hour has not passed: censored.
        assert_eq!(
            seen,
            vec![
                (vec![1.0, 1.0], true),
                (vec![2.0, 2.0], true),
                (vec![1.0, 1.0], false)
            ]
        );
        assert_eq!(rows.censored, 1);
        assert_eq!(rows.positives(), 2);
        assert!(rows.to_csv(&plan(None).names).starts_with(
            "profile,at,session.product_views,session.events,label\np1,2030-01-01T10:00:00Z,1,1,1\n"
        ));
    }

    #[test]
    fn plans_refuse_what_would_leak_or_cannot_be_read() {
        let spec = |features: &[&str], within: &str| RowSpec {
            features: features.iter().map(|name| name.to_string()).collect(),
            label: LabelSpec {
                event: "Order Completed".into(),
                within: within.into(),
            },
            at: None,
        };
        let error = RowPlan::new(spec(&["trait.plan"], "1h")).unwrap_err();
        assert!(error.contains("leak the future"), "{error}");
        let error = RowPlan::new(spec(&["session.nope"], "1h")).unwrap_err();
        assert!(error.contains("unknown feature"), "{error}");
        let error = RowPlan::new(spec(&["session.events"], "soon")).unwrap_err();
        assert!(error.contains("not a duration"), "{error}");
        assert!(RowPlan::new(spec(&[], "1h")).is_err());
    }
}
