//! `Engine::stop` ends the router, the shards and the announcer in order:
//! what the shards announced before the stop is in the log after it, reads
//! answer "stopped", and a second stop does nothing.

mod common;

use std::sync::Arc;

use kairos_core::identity::Identifier;
use kairos_engine::{Engine, EngineSettings};
use kairos_store::{DefinitionKind, Store, StoreOptions};
use serde_json::json;

const PEOPLE: usize = 50;

async fn sign_up(store: &Store, rules: &kairos_core::identity::IdentityRules) {
    let events: Vec<_> = (0..PEOPLE)
        .map(|n| {
            json!({"type": "track", "event": "Signed Up", "userId": format!("u{n}"),
                        "messageId": format!("m{n}")})
        })
        .collect();
    common::append_at(store, rules, &events, jiff::Timestamp::now()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_ends_every_thread_after_what_they_announced_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), StoreOptions::default()).unwrap());
    store
        .definitions
        .create(
            DefinitionKind::Audience,
            "new",
            r#"performed "Signed Up" within 30d"#,
            jiff::Timestamp::now(),
        )
        .unwrap();
    let settings = EngineSettings {
        shards: 3,
        ..EngineSettings::default()
    };
    let engine = Engine::start(store.clone(), settings.clone()).unwrap();
    sign_up(&store, &settings.rules).await;
    // Every shard has applied the sign-ups (and sent its announcements).
    let last = Identifier::new("user_id", &format!("u{}", PEOPLE - 1));
    assert!(engine.profile(last.clone()).await.unwrap().is_some());

    let stopping = engine.clone();
    let clean = tokio::task::spawn_blocking(move || stopping.stop())
        .await
        .unwrap();
    assert!(clean, "every thread ends in time");

    let entered = store
        .log
        .read_after(0, u64::MAX, usize::MAX, None)
        .unwrap()
        .iter()
        .filter(|stored| stored.decode().unwrap().event.as_deref() == Some("Audience Entered"))
        .count();
    assert_eq!(
        entered, PEOPLE,
        "announcements made before the stop are durable"
    );
    assert!(
        engine.profile(last).await.is_err(),
        "a stopped engine answers stopped"
    );
    assert!(engine.stop(), "a second stop does nothing");
}
