//! What the engine's integration tests share: a seeded generator and
//! appending raw events to the store the way the collection API does.

#![allow(dead_code)] // each test file uses part of it

use jiff::Timestamp;
use kairos_core::identity::IdentityRules;
use kairos_core::normalize::{Arrival, IngestLimits, normalize_event};
use kairos_store::Store;
use serde_json::Value;

/// A small xorshift generator: the same seed gives the same stream.
pub struct Random(pub u64);

impl Random {
    pub fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

/// Normalizes, seals and appends `events` (source `src_test`, received at
/// `received_at`) as one durable group.
pub async fn append_at(
    store: &Store,
    rules: &IdentityRules,
    events: &[Value],
    received_at: Timestamp,
) {
    let limits = IngestLimits::default();
    let arrival = Arrival {
        source_id: "src_test",
        received_at,
        batch_sent_at: None,
        path_type: None,
        limits: &limits,
        plan: None,
    };
    let records = events
        .iter()
        .map(|event| {
            let raw = serde_json::value::RawValue::from_string(event.to_string()).unwrap();
            store
                .prepare(&normalize_event(&raw, &arrival).unwrap(), rules)
                .unwrap()
        })
        .collect();
    store.writer.append(records, vec![], vec![]).await.unwrap();
}
