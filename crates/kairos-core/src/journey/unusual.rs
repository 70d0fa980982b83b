//! Behaviour that departs from the person's own baseline (trigger
//! `"unusual"`): an order from a country they never ordered from, a spend
//! far above their usual range. The baseline is the person's earlier
//! events of the same name on their timeline, read when the event is
//! matched — the event itself and anything after it excluded, so replaying
//! gives the same answer.

use crate::audience::eval::EventFact;
use serde_json::{Value, json};

use super::definition::Unusual;

/// Earlier events needed before anything counts as unusual.
const MIN_HISTORY_DEFAULT: usize = 3;

/// The baseline the event departs from (for the message), or `None` when
/// it is usual, lacks the property, or there is too little history.
pub fn departure(unusual: &Unusual, event: &EventFact, history: &[EventFact]) -> Option<Value> {
    let value = event.properties.get(&unusual.property)?;
    let earlier: Vec<&Value> = history
        .iter()
        .filter(|earlier| earlier.name == event.name && earlier.at <= event.at)
        .filter_map(|earlier| earlier.properties.get(&unusual.property))
        .filter(|value| !value.is_null())
        .collect();
    if earlier.len() < unusual.min_history.unwrap_or(MIN_HISTORY_DEFAULT) {
        return None;
    }
    match unusual.sigmas {
        Some(sigmas) => above_usual(value.as_f64()?, &earlier, sigmas, &unusual.property),
        None => never_seen(value, &earlier, &unusual.property),
    }
}

/// A value none of the earlier events had.
fn never_seen(value: &Value, earlier: &[&Value], property: &str) -> Option<Value> {
    if earlier.contains(&value) {
        return None;
    }
    let mut usual: Vec<&Value> = Vec::new();
    for seen in earlier {
        if !usual.contains(seen) && usual.len() < 20 {
            usual.push(seen);
        }
    }
    Some(
        json!({"property": property, "value": value, "usual_values": usual, "history": earlier.len()}),
    )
}

/// A number more than `sigmas` standard deviations above the earlier mean.
/// The deviation is floored at 10 % of the mean, so a person who always
/// spent exactly 50 is not "unusual" at 50.01.
fn above_usual(value: f64, earlier: &[&Value], sigmas: f64, property: &str) -> Option<Value> {
    let numbers: Vec<f64> = earlier.iter().filter_map(|value| value.as_f64()).collect();
    if numbers.is_empty() {
        return None;
    }
    let count = numbers.len() as f64;
    let mean = numbers.iter().sum::<f64>() / count;
    let variance = numbers.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / count;
    let deviation = variance.sqrt().max(mean.abs() * 0.1);
    let threshold = mean + sigmas * deviation;
    (value > threshold).then(|| {
        json!({"property": property, "value": value, "mean": mean,
               "standard_deviation": variance.sqrt(), "threshold": threshold,
               "history": numbers.len()})
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(at: i64, country: &str, revenue: f64) -> EventFact {
        EventFact {
            name: "Order Completed".into(),
            at: jiff::Timestamp::from_second(at).unwrap(),
            properties: serde_json::from_value(json!({"country": country, "revenue": revenue}))
                .unwrap(),
        }
    }

    #[test]
    fn new_country_and_unusual_spend() {
        let history = vec![
            order(3, "FR", 40.0),
            order(2, "FR", 60.0),
            order(1, "DE", 50.0),
        ];
        let country = Unusual {
            property: "country".into(),
            sigmas: None,
            min_history: None,
        };
        assert!(departure(&country, &order(4, "FR", 50.0), &history).is_none());
        let found = departure(&country, &order(4, "BR", 50.0), &history).unwrap();
        assert_eq!(found["value"], "BR");
        // Too little history: nothing is unusual yet.
        assert!(departure(&country, &order(4, "BR", 50.0), &history[..2]).is_none());

        let spend = Unusual {
            property: "revenue".into(),
            sigmas: Some(3.0),
            min_history: None,
        };
        // mean 50, sd 8.16 → threshold 74.5.
        assert!(departure(&spend, &order(4, "FR", 70.0), &history).is_none());
        let found = departure(&spend, &order(4, "FR", 500.0), &history).unwrap();
        assert_eq!(found["mean"], 50.0);
        // A later event of the history (clock skew) is not part of the baseline.
        let mut skewed = history.clone();
        skewed.push(order(10, "BR", 1.0));
        assert!(departure(&country, &order(4, "BR", 50.0), &skewed).is_some());
    }
}
