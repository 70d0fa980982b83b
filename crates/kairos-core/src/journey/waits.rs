//! "A not followed by B within T" (the abandoned cart): what an event does
//! to the wait kept for its key. An A starts (or restarts) the wait, a B
//! with the same key inside the window ends it; a wait that reaches its
//! deadline starts the journey. Pure: the effects stage stores the waits
//! (the `waits` keyspace) and fires them on the engine's clock.

use jiff::Timestamp;
use serde_json::Value;

use super::definition::{CompiledJourney, Matcher};
use crate::audience::eval::{EventFact, matches_event};

impl CompiledJourney {
    /// The key an event's wait is kept under: the value of the trigger's
    /// `key` property, or the person (`identifier`) without a key. `None`
    /// for other triggers, and for an event without the property (it
    /// neither starts nor ends a wait).
    pub fn wait_key(&self, fact: &EventFact, identifier: &str) -> Option<String> {
        let Matcher::NotFollowed { key, .. } = &self.matcher else {
            return None;
        };
        match key {
            Some(path) => match fact.properties.get(path) {
                Some(Value::String(text)) => Some(text.clone()),
                Some(value) if !value.is_null() => Some(value.to_string()),
                _ => None,
            },
            None => Some(identifier.to_string()),
        }
    }

    /// Whether `fact` is a B: worth looking its wait up for (most events
    /// are not, and the lookup reads the store).
    pub fn may_end_wait(&self, fact: &EventFact) -> bool {
        matches!(&self.matcher, Matcher::NotFollowed { then, .. } if fact.name == *then)
    }

    /// Whether `fact` is the B that ends a wait which started at
    /// `started_at` and runs until `deadline`.
    pub fn ends_wait(&self, fact: &EventFact, started_at: Timestamp, deadline: Timestamp) -> bool {
        let Matcher::NotFollowed { then, .. } = &self.matcher else {
            return false;
        };
        fact.name == *then && fact.at > started_at && fact.at <= deadline
    }

    /// The deadline of the wait `fact` starts, if it is an A the journey
    /// acts on: newer than the journey (`seq`) and live behaviour, not
    /// history ([`super::entry::Entry::acts_on`], by `received_at`).
    pub fn starts_wait(
        &self,
        seq: u64,
        fact: &EventFact,
        received_at: Timestamp,
    ) -> Option<Timestamp> {
        let Matcher::NotFollowed { first, within, .. } = &self.matcher else {
            return None;
        };
        let starts = seq > self.starts_after_seq
            && matches_event(first, fact)
            && self.entry.acts_on(fact, received_at, false);
        starts.then(|| fact.at + *within)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journey::definition::{Checks, EmailTemplate, compile};
    use serde_json::json;

    struct Hooks;

    impl Checks for Hooks {
        fn destination(&self, _name: &str) -> Option<(String, String)> {
            Some(("dst_1".into(), "webhook".into()))
        }
        fn email_template(&self, _template: &EmailTemplate) -> Result<(), String> {
            Ok(())
        }
        fn message_template(&self, _message: &Value) -> Result<(), String> {
            Ok(())
        }
    }

    fn fact(name: &str, at: &str, properties: Value) -> EventFact {
        EventFact {
            name: name.into(),
            at: at.parse().unwrap(),
            properties: serde_json::from_value(properties).unwrap(),
        }
    }

    #[test]
    fn a_cart_waits_under_its_key_until_its_order_or_the_deadline() {
        let trigger = json!({"event": "Product Added", "not_followed_by": "Order Completed",
                             "within": "30m", "key": "cart_id"});
        let definition = json!({"trigger": trigger, "steps": [{"send": {"destination": "h"}}]});
        let journey = compile("jny_1", "cart", 10, &definition, &Hooks).unwrap();
        let added = fact(
            "Product Added",
            "2030-01-01T12:00:00Z",
            json!({"cart_id": "c1"}),
        );
        let received: Timestamp = "2030-01-01T12:00:01Z".parse().unwrap();
        assert_eq!(
            journey.wait_key(&added, "user_id:u1").as_deref(),
            Some("c1")
        );
        assert_eq!(
            journey.wait_key(
                &fact("Product Added", "2030-01-01T12:00:00Z", json!({})),
                "user_id:u1"
            ),
            None
        );
        let deadline = journey.starts_wait(11, &added, received).unwrap();
        assert_eq!(deadline, "2030-01-01T12:30:00Z".parse().unwrap());
        // Events the journey is older than start nothing.
        assert_eq!(journey.starts_wait(10, &added, received), None);
        let started = added.at;
        let order = |at| fact("Order Completed", at, json!({"cart_id": "c1"}));
        assert!(
            journey.may_end_wait(&order("2030-01-01T12:10:00Z")) && !journey.may_end_wait(&added)
        );
        assert!(journey.ends_wait(&order("2030-01-01T12:29:59Z"), started, deadline));
        assert!(!journey.ends_wait(&order("2030-01-01T12:30:01Z"), started, deadline));
        assert!(!journey.ends_wait(&order("2030-01-01T11:59:00Z"), started, deadline));
    }
}
