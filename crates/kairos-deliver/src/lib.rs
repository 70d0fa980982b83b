//! Delivery: journeys decide, destinations receive (docs/journeys.md).
//!
//! - [`journey`]: journey definitions (a trigger, steps) and matching;
//! - the **follower** reads every durable event after the outbox's cursor,
//!   matches it against the journeys and enqueues the messages they send,
//!   moving the cursor in the same atomic batch (exactly-once decisions);
//! - a **worker** per destination delivers its queue: Standard Webhooks
//!   signatures ([`signing`]), the same `webhook-id` on every attempt,
//!   backoff with jitter, `Retry-After`, 410 disables, a circuit breaker,
//!   dead letters — each destination isolated from the others.
//!
//! All of it runs on one thread of its own ([`Deliverer::start`]), beside
//! the engine; its state is in the store ([`kairos_store::outbox`]), so a
//! restart resumes where it stopped.

mod audience_sync;
pub mod email;
pub mod in_app;
pub mod journey;
pub mod lists;
pub mod policy;
pub mod render;
pub mod signing;
pub mod unusual;

mod follower;
mod worker;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kairos_core::identity::IdentityRules;
use kairos_store::Store;
use tokio::sync::Notify;

pub use follower::active_journeys;
pub use worker::backoff;

/// How deliveries are retried.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// Delays before the 2nd, 3rd, ... attempt; the last repeats. Default:
    /// the Standard Webhooks schedule (5 s, 5 min, 30 min, 2 h, 5 h, 10 h,
    /// 14 h, 20 h, 24 h).
    pub retry_schedule: Vec<Duration>,
    /// Attempts before a message becomes a dead letter.
    pub max_attempts: u32,
    /// How long one attempt may take.
    pub timeout: Duration,
    /// Consent, frequency caps, quiet hours.
    pub policy: policy::ContactPolicy,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        DeliverySettings {
            retry_schedule: [5, 300, 1_800, 7_200, 18_000, 36_000, 50_400, 72_000, 86_400]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            max_attempts: 10,
            timeout: Duration::from_secs(15),
            policy: policy::ContactPolicy::default(),
        }
    }
}

/// A handle on the delivery thread: wake it when definitions change.
#[derive(Clone)]
pub struct Deliverer {
    wake: Arc<Notify>,
    hub: in_app::InAppHub,
}

impl Deliverer {
    /// Starts the follower and the destination workers on a thread of
    /// their own.
    /// `engine` answers what the contact policy needs of a person.
    pub fn start(
        store: Arc<Store>,
        rules: Arc<IdentityRules>,
        settings: DeliverySettings,
        engine: Option<kairos_engine::Engine>,
    ) -> std::io::Result<Deliverer> {
        let wake = Arc::new(Notify::new());
        let hub = in_app::InAppHub::default();
        let deliverer = Deliverer {
            wake: wake.clone(),
            hub: hub.clone(),
        };
        std::thread::Builder::new()
            .name("kairos-deliver".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("delivery runtime");
                runtime.block_on(supervise(store, rules, settings, engine, wake, hub));
            })?;
        Ok(deliverer)
    }

    /// The pages connected for in-app messages.
    pub fn hub(&self) -> &in_app::InAppHub {
        &self.hub
    }

    /// Wakes the workers (a destination or journey changed, a dead letter
    /// was replayed).
    pub fn wake(&self) {
        self.wake.notify_waiters();
    }
}

/// Runs the follower, and a worker for every destination as they appear.
async fn supervise(
    store: Arc<Store>,
    rules: Arc<IdentityRules>,
    settings: DeliverySettings,
    engine: Option<kairos_engine::Engine>,
    wake: Arc<Notify>,
    hub: in_app::InAppHub,
) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client");
    let follower = follower::Follower {
        store: store.clone(),
        rules,
        engine,
        policy: settings.policy.clone(),
    };
    tokio::spawn(follower::run(follower, wake.clone()));
    let mut workers: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
    loop {
        for destination in store.outbox.destinations() {
            let running = workers
                .get(&destination.id)
                .is_some_and(|handle| !handle.is_finished());
            if !running {
                let handle = tokio::spawn(worker::run(
                    store.clone(),
                    destination.id.clone(),
                    settings.clone(),
                    wake.clone(),
                    client.clone(),
                    hub.clone(),
                ));
                workers.insert(destination.id, handle);
            }
        }
        let _ = tokio::time::timeout(Duration::from_millis(500), wake.notified()).await;
    }
}
