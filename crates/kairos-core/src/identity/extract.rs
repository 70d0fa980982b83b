//! Identifiers carried by an event, normalized per type.

use serde_json::{Map, Value};

use super::{Identifier, IdentityRules};
use crate::event::{Event, EventType};

/// The identifier the event's personal data is sealed under: its most
/// trusted identifier, which always ends up in the profile the event is
/// applied to (the graph anchors on it or adds it), so erasing that profile
/// destroys the event. An event whose identifiers are all blocked belongs
/// to no profile and falls back to its routing key.
pub fn subject_of(identifiers: &[Identifier], event: &Event, rules: &IdentityRules) -> Identifier {
    identifiers
        .iter()
        .min_by_key(|identifier| rules.rank(&identifier.kind))
        .cloned()
        .unwrap_or_else(|| Identifier::new("routing_key", event.routing_key()))
}

/// Every identifier in the event, normalized, blocked values removed,
/// without repeats.
pub fn identifiers_of(event: &Event, rules: &IdentityRules) -> Vec<Identifier> {
    let mut found = Vec::new();
    if let Some(user_id) = &event.user_id {
        found.push(Identifier::new("user_id", user_id));
    }
    if let Some(anonymous_id) = &event.anonymous_id {
        found.push(Identifier::new("anonymous_id", anonymous_id));
    }
    if event.event_type == EventType::Alias
        && let Some(previous) = event
            .field("previousId")
            .and_then(|raw| serde_json::from_str::<Value>(raw.get()).ok())
        && let Some(previous) = scalar_text(&previous)
    {
        // The previous id is whatever the caller knew the person by; an
        // anonymous id is by far the most common case.
        found.push(Identifier::new("anonymous_id", &previous));
    }
    // Only a context naming traits or externalIds is worth parsing; most
    // track events carry page and user-agent context only.
    let context: Map<String, Value> = event
        .field("context")
        .filter(|raw| raw.get().contains("\"traits\"") || raw.get().contains("\"externalIds\""))
        .and_then(|raw| serde_json::from_str(raw.get()).ok())
        .unwrap_or_default();
    let trait_sources = [
        event.traits.as_ref(),
        context.get("traits").and_then(Value::as_object),
    ];
    for traits in trait_sources.into_iter().flatten() {
        collect_traits(traits, rules, &mut found);
    }
    if let Some(Value::Array(external)) = context.get("externalIds") {
        for entry in external {
            let kind = entry
                .get("type")
                .and_then(Value::as_str)
                .map(str::to_lowercase);
            let value = entry.get("id").and_then(scalar_text);
            if let (Some(kind), Some(value)) = (kind, value) {
                found.push(Identifier { kind, value });
            }
        }
    }
    let mut normalized: Vec<Identifier> = found
        .into_iter()
        .filter_map(|identifier| normalize(identifier, rules))
        .collect();
    normalized.retain(|identifier| !rules.is_blocked(identifier));
    let mut seen = std::collections::HashSet::new();
    normalized.retain(|identifier| seen.insert(identifier.clone()));
    normalized
}

fn collect_traits(traits: &Map<String, Value>, rules: &IdentityRules, found: &mut Vec<Identifier>) {
    for kind in ["email", "phone"]
        .into_iter()
        .chain(rules.custom_types.iter().map(String::as_str))
    {
        if let Some(value) = traits.get(kind).and_then(scalar_text) {
            found.push(Identifier::new(kind, &value));
        }
    }
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// Normalizes one identifier by its type; `None` when the value is not a
/// valid identifier of that type (such as a phone number without digits).
pub fn normalize(identifier: Identifier, rules: &IdentityRules) -> Option<Identifier> {
    let value = identifier.value.trim();
    let value = match identifier.kind.as_str() {
        "email" => {
            let email = value.to_lowercase();
            email.contains('@').then_some(email)?
        }
        "phone" => normalize_phone(value, rules.default_calling_code.as_deref())?,
        _ => value.to_string(),
    };
    (!value.is_empty()).then_some(Identifier {
        kind: identifier.kind,
        value,
    })
}

/// E.164: `+` and 8 to 15 digits. `00` is read as `+`; a number without a
/// calling code gets the workspace's default after dropping a trunk `0`.
pub fn normalize_phone(text: &str, default_calling_code: Option<&str>) -> Option<String> {
    let international = text.starts_with('+') || text.starts_with("00");
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    let digits = if text.starts_with("00") {
        digits[2..].to_string()
    } else {
        digits
    };
    let full = if international {
        digits
    } else {
        let code = default_calling_code?;
        format!("{code}{}", digits.strip_prefix('0').unwrap_or(&digits))
    };
    (8..=15).contains(&full.len()).then(|| format!("+{full}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::{Arrival, IngestLimits, normalize_event};
    use serde_json::json;

    fn event(value: Value) -> Event {
        let limits = IngestLimits::default();
        let raw = serde_json::value::RawValue::from_string(value.to_string()).unwrap();
        let arrival = Arrival {
            source_id: "src",
            received_at: "2024-01-01T00:00:00Z".parse().unwrap(),
            batch_sent_at: None,
            path_type: None,
            limits: &limits,
            plan: None,
        };
        normalize_event(&raw, &arrival).unwrap()
    }

    #[test]
    fn identifiers_come_from_ids_traits_and_external_ids() {
        let rules = IdentityRules {
            custom_types: ["loyalty_id".to_string()].into(),
            default_calling_code: Some("49".into()),
            ..IdentityRules::default()
        };
        let found = identifiers_of(
            &event(json!({
                "type": "identify", "userId": "u1", "anonymousId": "a1",
                "traits": {"email": " Ada@Example.org ", "phone": "030 1234567", "loyalty_id": 77},
                "context": {"externalIds": [{"id": "crm-9", "type": "crm_id", "collection": "users", "encoding": "none"}]}
            })),
            &rules,
        );
        let pairs: Vec<(String, String)> =
            found.into_iter().map(|id| (id.kind, id.value)).collect();
        assert_eq!(
            pairs,
            [
                ("user_id", "u1"),
                ("anonymous_id", "a1"),
                ("email", "ada@example.org"),
                ("phone", "+49301234567"),
                ("loyalty_id", "77"),
                ("crm_id", "crm-9")
            ]
            .map(|(kind, value)| (kind.to_string(), value.to_string()))
        );
    }

    #[test]
    fn blocked_values_link_nothing() {
        let found = identifiers_of(
            &event(
                json!({"type": "identify", "userId": "undefined", "anonymousId": "a1", "traits": {"email": "TEST@example.com"}}),
            ),
            &IdentityRules::default(),
        );
        assert_eq!(found, vec![Identifier::new("anonymous_id", "a1")]);
    }

    #[test]
    fn phones_become_e164() {
        assert_eq!(
            normalize_phone("+1 (415) 555-0100", None).as_deref(),
            Some("+14155550100")
        );
        assert_eq!(
            normalize_phone("0044 20 7946 0958", None).as_deref(),
            Some("+442079460958")
        );
        assert_eq!(
            normalize_phone("030 1234567", Some("49")).as_deref(),
            Some("+49301234567")
        );
        assert_eq!(
            normalize_phone("030 1234567", None),
            None,
            "no calling code known"
        );
        assert_eq!(normalize_phone("12", Some("49")), None);
    }
}
