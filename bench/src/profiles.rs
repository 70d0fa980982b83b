//! In-process throughput of identity resolution + profile update
//! (`kairos-loadgen profiles`): events are normalized first, then applied to
//! the engine state, timed alone — the work the engine thread does per event.

use std::time::Instant;

use kairos_core::Event;
use kairos_core::normalize::{Arrival, IngestLimits, normalize_event};
use kairos_engine::EngineState;
use serde_json::json;

/// A Segment event as the engine sees it: normalized, at log position `seq`.
pub(crate) fn normalized(value: &serde_json::Value, seq: u64) -> Event {
    let limits = IngestLimits::default();
    let arrival = Arrival {
        source_id: "src_bench",
        received_at: "2026-11-23T12:00:00Z".parse().unwrap(),
        batch_sent_at: None,
        path_type: None,
        limits: &limits,
        plan: None,
    };
    let raw = serde_json::value::RawValue::from_string(value.to_string()).unwrap();
    let mut event = normalize_event(&raw, &arrival).unwrap();
    event.seq = seq;
    event
}

fn events(count: usize, people: usize) -> Vec<Event> {
    (0..count)
        .map(|index| {
            let person = index * 7919 % people;
            // Every 20th event identifies (links device, user and email);
            // the rest are anonymous product views and user-level orders.
            let value = match index % 20 {
                0 => json!({"type": "identify", "userId": format!("user-{person}"), "anonymousId": format!("anon-{person}"),
                            "traits": {"email": format!("person{person}@example.org"), "plan": "pro", "visits": index}}),
                1..=15 => json!({"type": "track", "event": "Product Viewed", "anonymousId": format!("anon-{person}"),
                                 "properties": {"product_id": format!("sku-{}", index % 5000), "price": 89.95}}),
                _ => json!({"type": "track", "event": "Order Completed", "userId": format!("user-{person}"),
                            "properties": {"order_id": format!("o-{index}"), "revenue": 120.5}}),
            };
            normalized(&value, index as u64 + 1)
        })
        .collect()
}

/// Resident memory of this process, from /proc.
pub(crate) fn resident_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .map(str::to_string)
        })
        .and_then(|line| {
            line.split_whitespace()
                .nth(1)
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

/// The benchmark's events, shared like the engine shares them between
/// router and shard.
pub(crate) fn shared_events(count: usize, people: usize) -> Vec<std::sync::Arc<Event>> {
    events(count, people)
        .into_iter()
        .map(std::sync::Arc::new)
        .collect()
}

pub fn run(count: usize, people: usize, runs: usize) {
    let events = shared_events(count, people);
    let mut rates = Vec::new();
    let mut per_profile_bytes = 0.0;
    for _ in 0..runs {
        let before = resident_kib();
        let mut state = EngineState::new(Default::default());
        let started = Instant::now();
        for event in &events {
            state.apply_shared(event.clone());
        }
        let seconds = started.elapsed().as_secs_f64();
        rates.push(count as f64 / seconds);
        if per_profile_bytes == 0.0 {
            // First run only: later runs reuse the memory freed by the previous one.
            per_profile_bytes =
                (resident_kib().saturating_sub(before) * 1024) as f64 / people as f64;
        }
        drop(state);
    }
    rates.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "{}",
        json!({
            "events": count,
            "people": people,
            "runs": runs,
            "median_events_per_second": rates[rates.len() / 2],
            "all_runs": rates,
            "approx_bytes_per_profile": per_profile_bytes,
        })
    );
}
