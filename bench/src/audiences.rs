//! `kairos-loadgen audiences`: the incremental audience engine in-process —
//! N definitions (windowed counts and sums, performed, recency, sequences
//! over 50 event names) and M computed traits, events of many people applied with the clock
//! moving forward, timers firing. Reports events/s and memory per person.
//! With `--pipeline`, the same events go through the whole engine instead:
//! identity resolution → profile update → audiences (the engine's work per
//! event, on one thread).

use std::sync::Arc;
use std::time::Instant;

use jiff::{SignedDuration, Timestamp};
use kairos_core::audience::eval::EventFact;
use kairos_core::audience::incremental::{AudienceEngine, Program};
use kairos_core::audience::parse;
use serde_json::json;

use crate::profiles::resident_kib;

const EVENT_NAMES: usize = 50;

/// The `index`-th benchmark audience: windowed counts and sums, performed
/// and not performed, recency, sequences over [`EVENT_NAMES`] event names.
pub(crate) fn definition(index: usize) -> String {
    let event = |offset: usize| format!("\"Event {}\"", (index + offset) % EVENT_NAMES);
    match index % 5 {
        0 => format!("count {} within {}d >= 3", event(0), 1 + index % 30),
        1 => format!(
            "sum amount of {} within {}d > 100",
            event(0),
            7 + index % 60
        ),
        2 => format!(
            "performed {} within {}h and not performed {} within 7d",
            event(0),
            1 + index % 48,
            event(1)
        ),
        3 => format!("last {} more than {}d ago", event(0), 1 + index % 90),
        _ => format!("{} then {} within {}h", event(0), event(2), 1 + index % 24),
    }
}

/// The `index`-th benchmark computed trait: windowed counts and sums, last
/// time, most frequent value, a case score.
pub(crate) fn computed_definition(index: usize) -> String {
    let event = format!("\"Event {}\"", index % EVENT_NAMES);
    match index % 5 {
        0 => format!("count {event} within {}d", 1 + index % 30),
        1 => format!("sum amount of {event} within {}d", 7 + index % 60),
        2 => format!("last {event}"),
        3 => format!("most frequent amount of {event} within 7d"),
        _ => format!(
            "case when count {event} within 7d >= 3 then 3 when performed {event} within 30d then 2 else 1 end"
        ),
    }
}

pub fn run(
    definitions: usize,
    computed: usize,
    events: usize,
    people: u64,
    runs: usize,
    pipeline: bool,
) {
    let parsed: Vec<(String, kairos_core::audience::Expr)> = (0..definitions)
        .map(|index| {
            (
                format!("aud{index}"),
                parse(&definition(index)).expect("bench definitions parse"),
            )
        })
        .collect();
    let computed_parsed: Vec<(String, kairos_core::audience::ValueExpr)> = (0..computed)
        .map(|index| {
            (
                format!("trait{index}"),
                kairos_core::audience::parse_value(&computed_definition(index))
                    .expect("bench computed traits parse"),
            )
        })
        .collect();
    let program = Arc::new(
        Program::compile_all(&parsed, &computed_parsed).expect("bench definitions compile"),
    );
    let start: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    // One event every ~30 s of simulated time per person on average.
    let step = SignedDuration::from_millis((30_000 / people.max(1)).max(1) as i64);
    let facts: Vec<(u64, EventFact)> = (0..events)
        .map(|index| {
            let person = (index as u64).wrapping_mul(2_654_435_761) % people;
            let fact = EventFact {
                name: format!("Event {}", (index * 7 + person as usize) % EVENT_NAMES),
                at: start + step * index as i32,
                properties: json!({"amount": (index % 50) as f64})
                    .as_object()
                    .unwrap()
                    .clone(),
            };
            (person, fact)
        })
        .collect();
    let normalized = if pipeline {
        normalized_events(&facts)
    } else {
        Vec::new()
    };
    let mut rates = Vec::new();
    let mut bytes_per_person = 0.0;
    let mut changes = 0usize;
    for _ in 0..runs {
        let before = resident_kib();
        let started = Instant::now();
        if pipeline {
            let mut engine =
                kairos_engine::EngineState::with_audiences(Default::default(), program.clone());
            for event in &normalized {
                engine.apply_at(event.clone(), event.timestamp);
            }
        } else {
            let mut engine = AudienceEngine::new(program.clone());
            for (person, fact) in &facts {
                changes += engine.advance(fact.at).len();
                changes += engine.apply(*person, fact, fact.at).len();
            }
        }
        rates.push(events as f64 / started.elapsed().as_secs_f64());
        if bytes_per_person == 0.0 {
            bytes_per_person =
                (resident_kib().saturating_sub(before) * 1024) as f64 / people as f64;
        }
    }
    let mut sorted = rates.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "{}",
        json!({
            "definitions": definitions, "computed_traits": computed, "events": events, "people": people, "runs": runs, "pipeline": pipeline,
            "median_events_per_second": sorted[sorted.len() / 2], "all_runs": rates,
            "membership_changes": changes / runs.max(1),
            "approx_bytes_per_person": bytes_per_person,
        })
    );
}

/// The facts as normalized track events of `user-N` (every 20th an
/// identify with traits), sequence numbers in order.
fn normalized_events(facts: &[(u64, EventFact)]) -> Vec<Arc<kairos_core::Event>> {
    facts
        .iter()
        .enumerate()
        .map(|(index, (person, fact))| {
            let value = if index % 20 == 0 {
                json!({"type": "identify", "userId": format!("user-{person}"), "timestamp": fact.at.to_string(),
                       "traits": {"email": format!("person{person}@example.org"), "plan": "pro"}})
            } else {
                json!({"type": "track", "event": fact.name, "userId": format!("user-{person}"),
                       "timestamp": fact.at.to_string(), "properties": fact.properties})
            };
            Arc::new(crate::profiles::normalized(&value, index as u64 + 1))
        })
        .collect()
}
