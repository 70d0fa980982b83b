//! Tracking plans: an optional JSON Schema per event name, per source.
//!
//! A plan in `block` mode quarantines events that violate it; in `flag` mode
//! they are accepted and carry their violations in `Event::violations`.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlanMode {
    /// Violating events are quarantined.
    Block,
    /// Violating events are accepted and flagged.
    Flag,
}

/// A tracking plan as a user writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackingPlanSpec {
    pub mode: PlanMode,
    /// Whether track events whose name is not in `events` are allowed.
    #[serde(default = "default_allow_unplanned")]
    pub allow_unplanned: bool,
    /// Event name → JSON Schema of its `properties`.
    #[serde(default)]
    pub events: BTreeMap<String, Value>,
}

fn default_allow_unplanned() -> bool {
    true
}

/// A plan whose schemas are compiled, ready to check events.
pub struct TrackingPlan {
    spec: TrackingPlanSpec,
    validators: HashMap<String, jsonschema::Validator>,
}

impl std::fmt::Debug for TrackingPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackingPlan")
            .field("spec", &self.spec)
            .finish()
    }
}

/// Largest number of violations reported for one event.
const VIOLATIONS_PER_EVENT_MAX: usize = 10;

impl TrackingPlan {
    /// Compiles every schema; reports every invalid schema at once.
    pub fn compile(spec: TrackingPlanSpec) -> Result<TrackingPlan, Vec<String>> {
        let mut validators = HashMap::new();
        let mut problems = Vec::new();
        for (event_name, schema) in &spec.events {
            match jsonschema::validator_for(schema) {
                Ok(validator) => {
                    validators.insert(event_name.clone(), validator);
                }
                Err(error) => problems.push(format!(
                    "schema for event {event_name:?} is invalid: {error}"
                )),
            }
        }
        if problems.is_empty() {
            Ok(TrackingPlan { spec, validators })
        } else {
            Err(problems)
        }
    }

    pub fn spec(&self) -> &TrackingPlanSpec {
        &self.spec
    }

    pub fn mode(&self) -> PlanMode {
        self.spec.mode
    }

    /// The violations of one track event's properties (empty when it conforms).
    pub fn check(&self, event_name: &str, properties: &Value) -> Vec<String> {
        let Some(validator) = self.validators.get(event_name) else {
            if self.spec.allow_unplanned {
                return Vec::new();
            }
            return vec![format!(
                "event {event_name:?} is not in the tracking plan (allow_unplanned is false)"
            )];
        };
        validator
            .iter_errors(properties)
            .take(VIOLATIONS_PER_EVENT_MAX)
            .map(|error| {
                let path = error.instance_path().to_string();
                if path.is_empty() {
                    format!("properties: {error}")
                } else {
                    format!("properties{path}: {error}")
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plan(mode: PlanMode, allow_unplanned: bool) -> TrackingPlan {
        TrackingPlan::compile(TrackingPlanSpec {
            mode,
            allow_unplanned,
            events: BTreeMap::from([(
                "Order Completed".to_string(),
                json!({"type": "object", "required": ["revenue"], "properties": {"revenue": {"type": "number"}}}),
            )]),
        })
        .unwrap()
    }

    #[test]
    fn conforming_properties_have_no_violations() {
        assert!(
            plan(PlanMode::Block, true)
                .check("Order Completed", &json!({"revenue": 10}))
                .is_empty()
        );
    }

    #[test]
    fn violations_name_the_property() {
        let violations =
            plan(PlanMode::Block, true).check("Order Completed", &json!({"revenue": "ten"}));
        assert_eq!(violations.len(), 1);
        assert!(
            violations[0].starts_with("properties/revenue"),
            "{violations:?}"
        );
    }

    #[test]
    fn unplanned_events_follow_the_plan_setting() {
        assert!(
            plan(PlanMode::Flag, true)
                .check("Other", &json!({}))
                .is_empty()
        );
        assert_eq!(
            plan(PlanMode::Flag, false).check("Other", &json!({})).len(),
            1
        );
    }

    #[test]
    fn invalid_schemas_are_reported_by_event_name() {
        let error = TrackingPlan::compile(TrackingPlanSpec {
            mode: PlanMode::Block,
            allow_unplanned: true,
            events: BTreeMap::from([("Bad".to_string(), json!({"type": "no-such-type"}))]),
        })
        .unwrap_err();
        assert!(error[0].contains("\"Bad\""), "{error:?}");
    }
}
