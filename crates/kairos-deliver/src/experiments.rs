//! Experiments (docs/decisions.md, "Experiments"): a definition checked at
//! creation, and the assignment of a person to a group.
//!
//! Assignment is deterministic: `SHA-256(salt, identifier)` read as a
//! number in [0, 1) picks the group, with the experiment's random salt (so
//! two experiments split people independently). In order: the global
//! holdout (one salt shared by every experiment, so the same people are
//! held out of all of them), the experiment's holdout, then an arm — by
//! weight (`"allocation": "fixed"`) or by one Thompson draw over the arms'
//! conversions so far, seeded by the same hash (`"bandit"`). The group is
//! stored at first assignment and read back afterwards (sticky), so later
//! changes of weights, posteriors or holdouts move nobody already exposed.
//! [`exposure`] stores it: one function for the API, decisions and journeys.

mod exposure;

use std::collections::BTreeMap;

use kairos_core::audience::eval::EventFact;
use kairos_store::{ExperimentOutcome, Outbox};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use exposure::{
    Assigned, Exposing, PRE_EXPOSURE_EVENTS_MAX, assign, assigner, pre_exposure_count,
};

/// Arms per experiment: A/B/n, or a multivariate grid of a few factors.
pub const ARMS_MAX: usize = 32;
/// Guardrail metrics per experiment: each is counted on every exposed
/// person's events.
pub const GUARDRAILS_MAX: usize = 10;
/// Longest name of an experiment, arm or event.
pub const NAME_CHARS_MAX: usize = 200;
/// The group of people held out of this experiment.
pub const HOLDOUT_GROUP: &str = "(holdout)";
/// The group of people held out of every experiment.
pub const GLOBAL_HOLDOUT_GROUP: &str = "(global holdout)";
/// The salt of the global holdout: the same for every experiment.
const GLOBAL_HOLDOUT_SALT: &str = "kairos/global-holdout";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub arms: Vec<Arm>,
    pub control: String,
    pub metric: Metric,
    #[serde(default)]
    pub allocation: Allocation,
    /// The fraction of people held out of this experiment.
    #[serde(default)]
    pub holdout: f64,
    #[serde(default)]
    pub guardrails: Vec<Guardrail>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arm {
    pub name: String,
    #[serde(default = "one")]
    pub weight: f64,
}

fn one() -> f64 {
    1.0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metric {
    /// The conversion event (`Order Completed`).
    pub event: String,
    /// A numeric property summed per person: a continuous metric (revenue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Allocation {
    #[default]
    Fixed,
    Bandit,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Guardrail {
    pub event: String,
    /// The way the metric should go: a move the other way, significant at
    /// 95 %, is reported as a degradation.
    pub direction: Direction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Increase,
    Decrease,
}

impl Definition {
    /// Parses and checks a submitted definition; the error says what is
    /// wrong and how to fix it.
    pub fn parse(definition: &Value) -> Result<Definition, String> {
        let parsed: Definition = serde_json::from_value(definition.clone()).map_err(|error| {
            format!(
                "{error}; expected {{\"name\", \"arms\": [{{\"name\", \"weight\"}}], \"control\", \
                 \"metric\": {{\"event\", \"value\"?}}, \"allocation\"?: \"fixed\"|\"bandit\", \
                 \"holdout\"?, \"guardrails\"?: [{{\"event\", \"direction\": \"increase\"|\"decrease\"}}]}}"
            )
        })?;
        parsed.check()?;
        Ok(parsed)
    }

    fn check(&self) -> Result<(), String> {
        name("name", &self.name)?;
        if !(2..=ARMS_MAX).contains(&self.arms.len()) {
            return Err(format!(
                "arms: expected 2 to {ARMS_MAX} arms, got {}",
                self.arms.len()
            ));
        }
        for (index, arm) in self.arms.iter().enumerate() {
            let at = format!("arms[{index}]");
            name(&format!("{at}.name"), &arm.name)?;
            if !arm
                .name
                .chars()
                .all(|c| c.is_alphanumeric() || "_-.:=".contains(c))
            {
                return Err(format!(
                    "{at}.name: {:?} may hold only letters, digits and _ - . : = \
                     (e.g. \"control\", \"color=red\")",
                    arm.name
                ));
            }
            if self.arms[..index]
                .iter()
                .any(|other| other.name == arm.name)
            {
                return Err(format!("{at}.name: {:?} is used twice", arm.name));
            }
            if !(arm.weight.is_finite() && arm.weight > 0.0) {
                return Err(format!("{at}.weight: expected a number > 0"));
            }
        }
        if !self.arms.iter().any(|arm| arm.name == self.control) {
            return Err(format!(
                "control: {:?} is not one of the arms ({})",
                self.control,
                self.arm_names().join(", ")
            ));
        }
        name("metric.event", &self.metric.event)?;
        if let Some(value) = &self.metric.value {
            name("metric.value", value)?;
        }
        if !(self.holdout.is_finite() && (0.0..1.0).contains(&self.holdout)) {
            return Err("holdout: expected a fraction from 0 up to (not including) 1".into());
        }
        if self.guardrails.len() > GUARDRAILS_MAX {
            return Err(format!("guardrails: at most {GUARDRAILS_MAX}"));
        }
        for (index, guardrail) in self.guardrails.iter().enumerate() {
            name(&format!("guardrails[{index}].event"), &guardrail.event)?;
        }
        Ok(())
    }

    pub fn arm_names(&self) -> Vec<String> {
        self.arms.iter().map(|arm| arm.name.clone()).collect()
    }

    /// The events outcomes are counted from: the metric's and the guardrails'.
    pub fn event_names(&self) -> Vec<String> {
        std::iter::once(self.metric.event.clone())
            .chain(self.guardrails.iter().map(|g| g.event.clone()))
            .collect()
    }

    /// What `fact` is to this experiment (nothing, the metric, guardrails).
    pub fn outcomes_of(&self, fact: &EventFact) -> Vec<ExperimentOutcome> {
        let mut outcomes = Vec::new();
        if fact.name == self.metric.event {
            let value = match &self.metric.value {
                Some(property) => fact
                    .properties
                    .get(property)
                    .and_then(Value::as_f64)
                    .filter(|value| value.is_finite())
                    .unwrap_or(0.0),
                None => 1.0,
            };
            outcomes.push(ExperimentOutcome::Metric {
                value,
                continuous: self.metric.value.is_some(),
            });
        }
        for (index, guardrail) in self.guardrails.iter().enumerate() {
            if fact.name == guardrail.event {
                outcomes.push(ExperimentOutcome::Guardrail(index));
            }
        }
        outcomes
    }

    /// The group of the person known by `identifier` (`type:value`), given
    /// the global holdout and each group's `(conversions, exposures)` so
    /// far (bandit allocation reads them).
    pub fn assign(
        &self,
        salt: &str,
        identifier: &str,
        global_holdout: f64,
        counts: &BTreeMap<String, (u64, u64)>,
    ) -> String {
        if unit(GLOBAL_HOLDOUT_SALT, identifier) < global_holdout {
            return GLOBAL_HOLDOUT_GROUP.to_string();
        }
        if unit(&format!("{salt}/holdout"), identifier) < self.holdout {
            return HOLDOUT_GROUP.to_string();
        }
        let index = match self.allocation {
            Allocation::Fixed => {
                let total: f64 = self.arms.iter().map(|arm| arm.weight).sum();
                let mut point = unit(&format!("{salt}/arm"), identifier) * total;
                self.arms
                    .iter()
                    .position(|arm| {
                        point -= arm.weight;
                        point < 0.0
                    })
                    .unwrap_or(self.arms.len() - 1)
            }
            Allocation::Bandit => {
                let arm_counts: Vec<(u64, u64)> = self
                    .arms
                    .iter()
                    .map(|arm| counts.get(&arm.name).copied().unwrap_or_default())
                    .collect();
                let seed = hash(&format!("{salt}/bandit"), identifier);
                kairos_insights::experiments::thompson_choice(&arm_counts, seed)
            }
        };
        self.arms[index].name.clone()
    }
}

fn name(what: &str, text: &str) -> Result<(), String> {
    if text.trim().is_empty() || text.chars().count() > NAME_CHARS_MAX {
        return Err(format!("{what}: expected 1 to {NAME_CHARS_MAX} characters"));
    }
    Ok(())
}

fn hash(salt: &str, identifier: &str) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(salt.as_bytes());
    hasher.update([0]);
    hasher.update(identifier.as_bytes());
    let digest = hasher.finalize();
    u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// The hash as a number in [0, 1).
fn unit(salt: &str, identifier: &str) -> f64 {
    (hash(salt, identifier) >> 11) as f64 / (1u64 << 53) as f64
}

/// The events every running experiment counts outcomes from (the effects
/// stage's interest).
pub fn event_names(outbox: &Outbox) -> Vec<String> {
    outbox
        .experiments()
        .iter()
        .filter_map(|record| Definition::parse(&record.definition).ok())
        .flat_map(|definition| definition.event_names())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn definition(extra: Value) -> Definition {
        let mut value = json!({
            "name": "hero",
            "arms": [{"name": "a", "weight": 1}, {"name": "b", "weight": 3}],
            "control": "a",
            "metric": {"event": "Order Completed"},
        });
        for (key, field) in extra.as_object().unwrap() {
            value[key] = field.clone();
        }
        Definition::parse(&value).unwrap()
    }

    #[test]
    fn fixed_assignment_follows_the_weights_and_is_deterministic() {
        let experiment = definition(json!({}));
        let people: Vec<String> = (0..4000).map(|i| format!("user_id:{i}")).collect();
        let b = people
            .iter()
            .filter(|who| experiment.assign("s", who, 0.0, &BTreeMap::new()) == "b")
            .count();
        assert!((2850..3150).contains(&b), "{b}");
        assert_eq!(
            experiment.assign("s", "user_id:7", 0.0, &BTreeMap::new()),
            experiment.assign("s", "user_id:7", 0.0, &BTreeMap::new())
        );
    }

    #[test]
    fn holdouts_take_their_fraction_and_the_global_one_is_shared() {
        let experiment = definition(json!({"holdout": 0.2}));
        let other = definition(json!({}));
        let none = BTreeMap::new();
        let people: Vec<String> = (0..4000).map(|i| format!("user_id:{i}")).collect();
        let held = people
            .iter()
            .filter(|who| experiment.assign("s", who, 0.0, &none) == HOLDOUT_GROUP)
            .count();
        assert!((700..900).contains(&held), "{held}");
        for who in &people {
            let globally = experiment.assign("s", who, 0.1, &none) == GLOBAL_HOLDOUT_GROUP;
            assert_eq!(
                globally,
                other.assign("t", who, 0.1, &none) == GLOBAL_HOLDOUT_GROUP
            );
        }
    }

    #[test]
    fn a_bandit_sends_new_people_to_the_better_arm() {
        let experiment = definition(json!({"allocation": "bandit"}));
        let counts = BTreeMap::from([("a".to_string(), (5, 200)), ("b".to_string(), (40, 200))]);
        let b = (0..1000)
            .filter(|i| experiment.assign("s", &format!("user_id:{i}"), 0.0, &counts) == "b")
            .count();
        assert!(b > 980, "{b}");
    }

    #[test]
    fn bad_definitions_say_what_to_fix() {
        let bad = |value: Value| Definition::parse(&value).unwrap_err();
        let base = json!({"name": "x", "arms": [{"name": "a"}, {"name": "b"}], "control": "a", "metric": {"event": "E"}});
        let with = |key: &str, field: Value| {
            let mut value = base.clone();
            value[key] = field;
            value
        };
        assert!(bad(with("control", json!("z"))).contains("control"));
        assert!(bad(with("arms", json!([{"name": "a"}]))).contains("2 to"));
        assert!(bad(with("arms", json!([{"name": "a"}, {"name": "a"}]))).contains("twice"));
        assert!(
            bad(with(
                "arms",
                json!([{"name": "a"}, {"name": "b", "weight": 0}])
            ))
            .contains("weight")
        );
        assert!(bad(with("holdout", json!(1.5))).contains("holdout"));
        assert!(bad(with("allocation", json!("greedy"))).contains("unknown variant"));
        assert!(bad(with("colour", json!(1))).contains("unknown field"));
    }
}
