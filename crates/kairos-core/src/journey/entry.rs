//! Who enters a journey, and on what (docs/journeys.md, "What starts a
//! journey"): the `entry` field of a definition and the decisions made on
//! it — whether a person may enter again, and whether what caused the
//! entry is live behaviour or history. Pure: the effects stage passes in
//! the person's last entry, the event's arrival time and `now`.

use jiff::Timestamp;
use serde_json::Value;

use super::definition::duration;
use crate::audience::eval::EventFact;

/// How old (event time against arrival) the event that causes an entry
/// may be, by default: older ones are history, not behaviour to act on.
pub const MAX_EVENT_AGE_DEFAULT: jiff::SignedDuration = jiff::SignedDuration::from_hours(24);

/// Who enters a journey, and on what.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub rule: EntryRule,
    /// Memberships found while catching up (a restart's replay, a new
    /// definition computed over history) start the journey too.
    pub include_existing: bool,
    /// The causing event's age limit (its event time against when Kairos
    /// received it).
    pub max_event_age: jiff::SignedDuration,
}

/// Who may enter a journey again.
#[derive(Debug, Clone, PartialEq)]
pub enum EntryRule {
    EveryTime,
    Once,
    OncePer(jiff::SignedDuration),
}

impl Entry {
    /// The `entry` field of a definition (`None`: every time, live
    /// behaviour only, events up to a day old).
    pub(super) fn parse(entry: Option<&Value>) -> Result<Entry, String> {
        let mut options = Entry {
            rule: EntryRule::EveryTime,
            include_existing: false,
            max_event_age: MAX_EVENT_AGE_DEFAULT,
        };
        match entry {
            None => {}
            Some(Value::String(rule)) => options.rule = named_rule(rule)?,
            Some(Value::Object(fields)) => {
                for (field, value) in fields {
                    match (field.as_str(), value) {
                        ("rule", Value::String(rule)) => options.rule = named_rule(rule)?,
                        ("once_per", Value::String(period)) => {
                            options.rule =
                                EntryRule::OncePer(duration(period).map_err(|error| {
                                    error.replace("trigger.within", "entry.once_per")
                                })?)
                        }
                        ("include_existing", Value::Bool(include)) => {
                            options.include_existing = *include
                        }
                        ("max_event_age", Value::String(age)) => {
                            options.max_event_age = duration(age).map_err(|error| {
                                error.replace("trigger.within", "entry.max_event_age")
                            })?
                        }
                        _ => return Err(entry_problem(&Value::Object(fields.clone()))),
                    }
                }
            }
            Some(other) => return Err(entry_problem(other)),
        }
        Ok(options)
    }

    /// Whether a person whose last entry was at `last_entry` (`None`:
    /// never entered) may enter now.
    pub fn admits(&self, last_entry: Option<Timestamp>, now: Timestamp) -> bool {
        match (&self.rule, last_entry) {
            (_, None) => true,
            (EntryRule::Once, Some(_)) => false,
            (EntryRule::OncePer(period), Some(last)) => last + *period <= now,
            (EntryRule::EveryTime, _) => true,
        }
    }

    /// Whether the entry comes from live behaviour the journey acts on: not
    /// a membership found while catching up (a restart's replay, a
    /// definition computed over history — unless the journey includes
    /// existing members), and not an event that was already older than
    /// `max_event_age` when Kairos received it (`received_at`: history
    /// being imported).
    pub fn acts_on(&self, fact: &EventFact, received_at: Timestamp, announcement: bool) -> bool {
        if self.include_existing {
            return true;
        }
        let caused_at = if announcement {
            match fact.properties.get("cause").and_then(Value::as_str) {
                Some("catch_up") => return false,
                Some("event") => fact
                    .properties
                    .get("cause_at")
                    .and_then(Value::as_str)
                    .and_then(|at| at.parse::<Timestamp>().ok()),
                _ => None, // time alone, while running: live
            }
        } else {
            Some(fact.at)
        };
        caused_at.is_none_or(|at| received_at.duration_since(at) <= self.max_event_age)
    }
}

fn named_rule(rule: &str) -> Result<EntryRule, String> {
    match rule {
        "every_time" => Ok(EntryRule::EveryTime),
        "once" => Ok(EntryRule::Once),
        other => Err(entry_problem(&Value::String(other.to_string()))),
    }
}

fn entry_problem(entry: &Value) -> String {
    format!(
        "entry {entry}: expected \"every_time\", \"once\", or an object with \"rule\" \
         (\"every_time\" or \"once\") or \"once_per\" (\"7d\"), \"include_existing\" \
         (true or false) and \"max_event_age\" (\"1d\")"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn entry_rules_admit_again_by_their_period() {
        let now = at("2030-01-10T00:00:00Z");
        let parse = |entry: Value| Entry::parse(Some(&entry)).unwrap();
        let every = Entry::parse(None).unwrap();
        assert!(every.admits(Some(now), now));
        let once = parse(json!("once"));
        assert!(once.admits(None, now));
        assert!(!once.admits(Some(at("2020-01-01T00:00:00Z")), now));
        let weekly = parse(json!({"once_per": "7d"}));
        assert!(!weekly.admits(Some(at("2030-01-04T00:00:01Z")), now));
        assert!(weekly.admits(Some(at("2030-01-03T00:00:00Z")), now));
        assert!(Entry::parse(Some(&json!({"rule": "sometimes"}))).is_err());
    }

    fn fact(at: &str, properties: Value) -> EventFact {
        EventFact {
            name: "Audience Entered".into(),
            at: at.parse().unwrap(),
            properties: serde_json::from_value(properties).unwrap(),
        }
    }

    #[test]
    fn only_live_behaviour_starts_a_journey_unless_existing_members_are_included() {
        let received = at("2030-01-10T12:00:00Z");
        let entry = Entry::parse(None).unwrap();
        // An event two days old when received is history; an hour old is live.
        assert!(!entry.acts_on(&fact("2030-01-08T12:00:00Z", json!({})), received, false));
        assert!(entry.acts_on(&fact("2030-01-10T11:00:00Z", json!({})), received, false));
        // Announcements: catching up never, time alone always, an event by its age.
        let catch_up = fact("2030-01-10T12:00:00Z", json!({"cause": "catch_up"}));
        assert!(!entry.acts_on(&catch_up, received, true));
        assert!(entry.acts_on(
            &fact("2030-01-01T00:00:00Z", json!({"cause": "time"})),
            received,
            true
        ));
        let old = json!({"cause": "event", "cause_at": "2030-01-01T00:00:00Z"});
        assert!(!entry.acts_on(&fact("2030-01-10T12:00:00Z", old), received, true));
        let existing = Entry::parse(Some(&json!({"include_existing": true}))).unwrap();
        assert!(existing.acts_on(&catch_up, received, true));
    }
}
