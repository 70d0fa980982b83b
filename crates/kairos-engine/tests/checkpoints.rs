//! A start from a checkpoint gives exactly the state of a full replay:
//! profiles, identities, traits, merges, memberships, computed values and
//! scores, compared field by field for every person, on random streams of
//! identify / alias / track events (merges across four shards, windowed
//! audiences and computed traits) with a checkpoint taken mid-stream.

mod common;

use std::sync::Arc;

use common::Random;
use kairos_core::clock::{Clock, ManualClock};
use kairos_core::identity::Identifier;
use kairos_engine::{Engine, EngineSettings};
use kairos_store::{DefinitionKind, Store, StoreOptions};
use serde_json::{Value, json};

const USERS: [&str; 5] = ["u1", "u2", "u3", "u4", "u5"];
const DEVICES: [&str; 10] = ["a0", "a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8", "a9"];
const EMAILS: [&str; 3] = ["x@example.org", "y@example.org", "z@example.org"];

fn pick<'a>(random: &mut Random, values: &[&'a str]) -> &'a str {
    values[random.below(values.len() as u64) as usize]
}

/// An event `index` minutes after the stream's start (2024-05-01).
fn random_event(random: &mut Random, index: usize) -> Value {
    let at = jiff::Timestamp::from_second(1_714_521_600 + 60 * index as i64).unwrap();
    let mut event = json!({"messageId": format!("m{index}"), "timestamp": at.to_string(),
                           "anonymousId": pick(random, &DEVICES)});
    match random.below(6) {
        0 => {
            event["type"] = json!("identify");
            event["userId"] = json!(pick(random, &USERS));
            event["traits"] =
                json!({"email": pick(random, &EMAILS), "plan": pick(random, &["free", "pro"])});
        }
        1 => {
            event["type"] = json!("alias");
            event["userId"] = json!(pick(random, &USERS));
            event["previousId"] = json!(pick(random, &DEVICES));
        }
        2 | 3 => {
            event["type"] = json!("track");
            event["event"] = json!("Order Completed");
            event["properties"] =
                json!({"revenue": random.below(200), "category": pick(random, &["shoes", "hats"])});
        }
        _ => {
            event["type"] = json!("track");
            event["event"] = json!("Product Viewed");
            event["properties"] = json!({"category": pick(random, &["shoes", "hats"])});
        }
    }
    event
}

fn define(store: &Store) {
    let now = jiff::Timestamp::UNIX_EPOCH;
    let audiences = [
        ("buyers", "performed \"Order Completed\" within 2h"),
        (
            "big spenders",
            "sum revenue of \"Order Completed\" within 1d > 300",
        ),
        (
            "pro browsers",
            "trait plan = \"pro\" and count \"Product Viewed\" at least 2 times within 3h",
        ),
    ];
    for (name, definition) in audiences {
        store
            .definitions
            .create(DefinitionKind::Audience, name, definition, now)
            .unwrap();
    }
    let computed = [
        ("orders_6h", "count \"Order Completed\" within 6h"),
        ("revenue_total", "sum revenue of \"Order Completed\""),
    ];
    for (name, definition) in computed {
        store
            .definitions
            .create(DefinitionKind::ComputedTrait, name, definition, now)
            .unwrap();
    }
}

async fn append(store: &Store, events: &[Value]) {
    let received_at = jiff::Timestamp::from_second(1_714_600_000).unwrap();
    common::append_at(store, &Default::default(), events, received_at).await;
}

/// Every person's profile as the API answers it, by identifier.
async fn everyone(engine: &Engine) -> Vec<(String, Value)> {
    let mut all = Vec::new();
    let identifiers = USERS
        .iter()
        .map(|user| Identifier::new("user_id", user))
        .chain(
            DEVICES
                .iter()
                .map(|device| Identifier::new("anonymous_id", device)),
        )
        .chain(EMAILS.iter().map(|email| Identifier::new("email", email)));
    for identifier in identifiers {
        let view = engine.profile(identifier.clone()).await.unwrap();
        let mut view = serde_json::to_value(view).unwrap();
        if let Some(identities) = view.get_mut("identities").and_then(Value::as_array_mut) {
            identities.sort_by_key(|identity| identity.to_string());
        }
        all.push((format!("{identifier:?}"), view));
    }
    all
}

fn settings(clock: Arc<ManualClock>) -> EngineSettings {
    EngineSettings {
        shards: 4,
        clock,
        checkpoint_every_events: 0,
        ..EngineSettings::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_from_a_checkpoint_equals_a_full_replay() {
    for seed in 1..=4u64 {
        let dir = tempfile::tempdir().unwrap();
        let mut random = Random(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let events: Vec<Value> = (0..600)
            .map(|index| random_event(&mut random, index))
            .collect();
        // "Now" is within the stream, so windows hold some events, not all.
        let clock = Arc::new(ManualClock::new(
            jiff::Timestamp::from_second(1_714_521_600 + 60 * 450).unwrap(),
        ));
        let checkpointed_at;
        {
            let store = Arc::new(Store::open(dir.path(), StoreOptions::default()).unwrap());
            define(&store);
            let engine = Engine::start(store.clone(), settings(clock.clone())).unwrap();
            for chunk in events[..300].chunks(25) {
                append(&store, chunk).await;
            }
            checkpointed_at = engine.checkpoint().await.unwrap();
            for chunk in events[300..].chunks(25) {
                append(&store, chunk).await;
            }
            assert!(
                checkpointed_at >= 300,
                "seed {seed}: checkpoint at {checkpointed_at}"
            );
            everyone(&engine).await;
        }
        let later = clock.now() + jiff::SignedDuration::from_mins(90);
        clock.advance_to(later);
        let from_checkpoint = {
            let store = Arc::new(Store::open(dir.path(), StoreOptions::default()).unwrap());
            let engine = Engine::start(store.clone(), settings(clock.clone())).unwrap();
            assert_eq!(engine.restored_from(), Some(checkpointed_at), "seed {seed}");
            everyone(&engine).await
        };
        let full_replay = {
            let store = Arc::new(Store::open(dir.path(), StoreOptions::default()).unwrap());
            assert_eq!(store.checkpoints.delete_all().unwrap(), 1);
            let engine = Engine::start(store.clone(), settings(clock.clone())).unwrap();
            assert_eq!(engine.restored_from(), None);
            everyone(&engine).await
        };
        let members: usize = full_replay
            .iter()
            .filter_map(|(_, view)| view["audiences"].as_array().map(Vec::len))
            .sum();
        assert!(members > 0, "seed {seed}: the stream must make members");
        for ((identifier, restored), (_, replayed)) in from_checkpoint.iter().zip(&full_replay) {
            assert_eq!(restored, replayed, "seed {seed}: {identifier}");
        }
    }
}
