//! The threaded engine — a router and four shard threads, so most merges
//! move a profile between shards — gives exactly the profiles of the
//! single-threaded model on random identify / alias / track streams with
//! limit breaks and blocked values, live while events are in flight, and
//! again after a restart that replays the log.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::Random;
use kairos_core::identity::Identifier;
use kairos_engine::{Engine, EngineSettings, EngineState};
use kairos_store::{Store, StoreOptions};
use serde_json::{Value, json};

fn pick(random: &mut Random, values: &[&str]) -> String {
    values[random.below(values.len() as u64) as usize].to_string()
}

fn random_event(random: &mut Random, index: usize) -> Value {
    let users = ["u1", "u2", "u3", "u4", "0", "null"];
    let devices = ["a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8"];
    let emails = [
        "x@example.org",
        "y@example.org",
        "z@example.org",
        "test@example.com",
    ];
    let mut event = json!({"messageId": format!("m{index}"), "timestamp": format!("2024-05-01T10:{:02}:{:02}Z", index / 60 % 60, index % 60)});
    match random.below(4) {
        0 => {
            event["type"] = json!("identify");
            event["userId"] = json!(pick(random, &users));
            event["anonymousId"] = json!(pick(random, &devices));
            event["traits"] = json!({"email": pick(random, &emails), "n": index});
        }
        1 => {
            event["type"] = json!("alias");
            event["userId"] = json!(pick(random, &users));
            event["previousId"] = json!(pick(random, &devices));
        }
        2 => {
            event["type"] = json!("identify");
            event["anonymousId"] = json!(pick(random, &devices));
            event["traits"] =
                json!({"email": pick(random, &emails), "plan": pick(random, &["free", "pro"])});
        }
        _ => {
            event["type"] = json!("track");
            event["event"] = json!("Viewed");
            event["anonymousId"] = json!(pick(random, &devices));
            if random.below(2) == 0 {
                event["userId"] = json!(pick(random, &users));
            }
        }
    }
    event
}

fn every_identifier() -> Vec<Identifier> {
    let mut all = Vec::new();
    for user in ["u1", "u2", "u3", "u4"] {
        all.push(Identifier::new("user_id", user));
    }
    for device in ["a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8"] {
        all.push(Identifier::new("anonymous_id", device));
    }
    for email in ["x@example.org", "y@example.org", "z@example.org"] {
        all.push(Identifier::new("email", email));
    }
    all
}

/// Everything a profile answer says, comparable.
fn summary(view: Option<kairos_engine::ProfileView>) -> Option<String> {
    let view = view?;
    let identities: BTreeSet<_> = view.identities.iter().cloned().collect();
    Some(format!(
        "{} {:?} {:?} {} {:?} {:?} {:?}",
        view.id,
        identities,
        view.traits,
        view.event_count,
        view.first_seen,
        view.last_seen,
        view.merges
            .iter()
            .map(|merge| merge.absorbed)
            .collect::<Vec<_>>()
    ))
}

async fn append(store: &Store, rules: &kairos_core::identity::IdentityRules, events: &[Value]) {
    common::append_at(store, rules, events, jiff::Timestamp::now()).await;
}

fn model(store: &Store, settings: &EngineSettings) -> EngineState {
    let mut state = EngineState::new(EngineSettings {
        shards: 1,
        ..settings.clone()
    });
    for stored in store.log.read_after(0, u64::MAX, usize::MAX, None).unwrap() {
        state.apply(&stored.decode().unwrap());
    }
    state
}

async fn compare(engine: &Engine, model: &EngineState, context: &str) {
    for identifier in every_identifier() {
        let live = summary(engine.profile(identifier.clone()).await.unwrap());
        assert_eq!(
            live,
            summary(model.profile_view(&identifier)),
            "{context}: {identifier:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_shards_give_the_single_threaded_profiles_live_and_after_restart() {
    let settings = EngineSettings {
        shards: 4,
        ..EngineSettings::default()
    };
    let mut total_merges = 0;
    for seed in 1..=6u64 {
        let dir = tempfile::tempdir().unwrap();
        let mut random = Random(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        {
            let store = Arc::new(Store::open(dir.path(), StoreOptions::default()).unwrap());
            let engine = Engine::start(store.clone(), settings.clone()).unwrap();
            let mut index = 0;
            for step in 0..12 {
                // Several requests in flight at once: groups interleave.
                let batches: Vec<Vec<Value>> = (0..3)
                    .map(|_| {
                        (0..8)
                            .map(|_| {
                                index += 1;
                                random_event(&mut random, index)
                            })
                            .collect()
                    })
                    .collect();
                let rules = settings.rules.clone();
                futures_join(&store, &rules, &batches).await;
                compare(
                    &engine,
                    &model(&store, &settings),
                    &format!("seed {seed} step {step}"),
                )
                .await;
            }
        }
        // Restart: a new engine replays the log.
        let store = Arc::new(Store::open(dir.path(), StoreOptions::default()).unwrap());
        let engine = Engine::start(store.clone(), settings.clone()).unwrap();
        let state = model(&store, &settings);
        compare(&engine, &state, &format!("seed {seed} after restart")).await;
        let profiles: BTreeSet<_> = every_identifier()
            .iter()
            .filter_map(|identifier| state.profile_view(identifier))
            .map(|view| (view.id.clone(), view.merges.len()))
            .collect();
        total_merges += profiles.iter().map(|(_, merges)| merges).sum::<usize>();
    }
    assert!(
        total_merges >= 10,
        "the streams must merge profiles: {total_merges}"
    );
}

async fn futures_join(
    store: &Arc<Store>,
    rules: &kairos_core::identity::IdentityRules,
    batches: &[Vec<Value>],
) {
    let tasks: Vec<_> = batches
        .iter()
        .cloned()
        .map(|batch| {
            let store = store.clone();
            let rules = rules.clone();
            tokio::spawn(async move { append(&store, &rules, &batch).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}
