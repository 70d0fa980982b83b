//! Identity resolution: which profile an event belongs to.
//!
//! Identifiers (`user_id`, `anonymous_id`, `email`, `phone`, and custom
//! types a workspace declares) are taken from an event and normalized
//! ([`extract`]); the [`graph::IdentityGraph`] then finds or creates the
//! profile, merging profiles the event links — unless a merge would give one
//! profile more values of a type than the [`IdentityRules`] allow, in which
//! case the lower-priority identifier is left out, in the manner of Segment
//! Unify. That rule is what keeps two people who log in on one shared
//! browser (one anonymousId, two userIds) apart.
//!
//! Status: the pure model (rules, extraction, graph, checked against a
//! naive model by a property test). The engine that applies it to the log,
//! persists it and serves profiles is the next step.

pub mod extract;
pub mod graph;
pub mod resolve;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// One identifier: its type and normalized value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Identifier {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

impl Identifier {
    pub fn new(kind: &str, value: &str) -> Identifier {
        Identifier {
            kind: kind.to_string(),
            value: value.to_string(),
        }
    }

    /// From its `type:value` text form (`user_id:u1`).
    pub fn parse(text: &str) -> Option<Identifier> {
        let (kind, value) = text.split_once(':')?;
        (!kind.is_empty() && !value.is_empty()).then(|| Identifier::new(kind, value))
    }

    /// Names this person in an event Kairos writes itself (membership
    /// announcements, journey steps): `userId`, `anonymousId`, or an
    /// external id of the identifier's type.
    pub fn name_in(&self, event: &mut serde_json::Value) {
        let value = serde_json::Value::String(self.value.clone());
        match self.kind.as_str() {
            "user_id" => event["userId"] = value,
            "anonymous_id" => event["anonymousId"] = value,
            _ => {
                event["context"] =
                    serde_json::json!({"externalIds": [{"type": self.kind, "id": self.value}]})
            }
        }
    }
}

/// Per-workspace identity rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdentityRules {
    /// Most values of each type one profile may hold; types not listed are
    /// unlimited up to `values_per_type_max`.
    pub limits: BTreeMap<String, usize>,
    /// Types from most to least trusted: decides which identifier is left
    /// out when an event would break a limit.
    pub priority: Vec<String>,
    /// Normalized values that never link anything.
    pub blocked_values: BTreeSet<String>,
    /// Custom types this workspace takes from `context.externalIds` and
    /// traits, e.g. `loyalty_id`.
    pub custom_types: BTreeSet<String>,
    /// Calling code for phone numbers written without one (e.g. "49").
    pub default_calling_code: Option<String>,
}

/// Ceiling for types without an explicit limit.
pub const VALUES_PER_TYPE_MAX: usize = 1000;

impl Default for IdentityRules {
    fn default() -> Self {
        IdentityRules {
            limits: [
                ("user_id", 1),
                ("email", 5),
                ("phone", 5),
                ("anonymous_id", 1000),
            ]
            .into_iter()
            .map(|(kind, limit)| (kind.to_string(), limit))
            .collect(),
            priority: ["user_id", "email", "phone", "anonymous_id"]
                .into_iter()
                .map(String::from)
                .collect(),
            blocked_values: [
                "",
                "null",
                "undefined",
                "none",
                "nil",
                "0",
                "-1",
                "unknown",
                "n/a",
                "test@example.com",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            custom_types: BTreeSet::new(),
            default_calling_code: None,
        }
    }
}

impl IdentityRules {
    pub fn limit(&self, kind: &str) -> usize {
        self.limits
            .get(kind)
            .copied()
            .unwrap_or(VALUES_PER_TYPE_MAX)
    }

    /// Position in the priority order; unlisted types come last, by name.
    pub fn rank(&self, kind: &str) -> usize {
        self.priority
            .iter()
            .position(|listed| listed == kind)
            .unwrap_or(self.priority.len())
    }

    pub fn is_blocked(&self, identifier: &Identifier) -> bool {
        self.blocked_values
            .contains(&identifier.value.to_lowercase())
    }
}
