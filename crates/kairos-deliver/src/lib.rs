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

pub mod address_policy;
mod audience_sync;
pub mod email;
pub mod endpoint;
mod failure;
pub mod in_app;
mod in_app_worker;
pub mod journey;
pub mod lists;
pub mod metrics;
pub mod policy;
pub mod render;
pub mod signing;
pub mod tls;
pub mod unusual;

mod follower;
mod worker;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kairos_core::identity::IdentityRules;
use kairos_store::Store;
use tokio::sync::{Notify, watch};

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
    /// Which addresses webhooks, syncs and SMTP may reach.
    pub addresses: address_policy::AddressPolicy,
    /// CA certificates trusted besides the system's (`[delivery] ca_file`).
    pub extra_roots: tls::ExtraRoots,
    /// The engine's clock: journeys decide, wait and date messages on it.
    /// Attempts (backoff, `Retry-After`, batching, delivery times) run on
    /// the system clock: they talk to real endpoints in real time.
    pub clock: Arc<dyn kairos_core::clock::Clock>,
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
            addresses: address_policy::AddressPolicy::default(),
            extra_roots: tls::ExtraRoots::default(),
            clock: Arc::new(kairos_core::clock::SystemClock),
        }
    }
}

/// A handle on the delivery thread: wake it when definitions change.
#[derive(Clone)]
pub struct Deliverer {
    wake: Arc<Notify>,
    hub: in_app::InAppHub,
    store: Arc<Store>,
    /// Wakes the follower at once (the manual clock moved).
    wake_follower: Arc<Notify>,
    /// How far the follower has fully handled the log and the clock.
    handled: watch::Receiver<Handled>,
}

/// What the follower has fully handled: every event up to `seq` is
/// followed and every wait and step due at `now` (engine clock) has run,
/// its messages decided and stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handled {
    pub seq: u64,
    pub now: jiff::Timestamp,
}

/// The follower did not reach a position in the time given.
#[derive(Debug)]
pub struct NotHandledYet {
    pub handled: Handled,
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
        metrics: metrics::DeliveryMetrics,
    ) -> std::io::Result<Deliverer> {
        let wake = Arc::new(Notify::new());
        let wake_follower = Arc::new(Notify::new());
        let hub = in_app::InAppHub::default();
        let (handled_sender, handled) = watch::channel(Handled {
            seq: 0,
            now: jiff::Timestamp::UNIX_EPOCH,
        });
        let deliverer = Deliverer {
            wake: wake.clone(),
            hub: hub.clone(),
            store: store.clone(),
            wake_follower: wake_follower.clone(),
            handled,
        };
        let follower_signals = follower::Signals {
            wake_workers: wake.clone(),
            wake_follower,
            handled: handled_sender,
        };
        std::thread::Builder::new()
            .name("kairos-deliver".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("delivery runtime");
                runtime.block_on(supervise(
                    store,
                    rules,
                    settings,
                    engine,
                    follower_signals,
                    hub,
                    metrics,
                ));
            })?;
        Ok(deliverer)
    }

    /// The pages connected for in-app messages.
    pub fn hub(&self) -> &in_app::InAppHub {
        &self.hub
    }

    /// Opens a page of the person known by `identifiers` (through
    /// `source_id`) and hands it the in-app messages waiting for them.
    pub async fn open_page(
        &self,
        source_id: &str,
        identifiers: Vec<String>,
    ) -> Result<in_app::Subscription, in_app::SubscribeError> {
        let subscription = self.hub.subscribe(source_id, &identifiers)?;
        let (store, hub) = (self.store.clone(), self.hub.clone());
        let _ = tokio::task::spawn_blocking(move || {
            in_app_worker::catch_up(&store, &hub, &identifiers)
        })
        .await;
        Ok(subscription)
    }

    /// Wakes the workers (a destination or journey changed, a dead letter
    /// was replayed).
    pub fn wake(&self) {
        self.wake.notify_waiters();
    }

    /// Waits until the follower has followed the log up to `seq` and run
    /// everything due at `now` on the engine's clock (at most `limit`).
    /// The manual clock answers only then, so a test's next move cannot
    /// overtake waits due at this one.
    pub async fn handled(
        &self,
        seq: u64,
        now: jiff::Timestamp,
        limit: Duration,
    ) -> Result<(), NotHandledYet> {
        self.wake_follower.notify_one();
        let mut handled = self.handled.clone();
        let reached = tokio::time::timeout(
            limit,
            handled.wait_for(|handled| handled.seq >= seq && handled.now >= now),
        )
        .await;
        match reached {
            Ok(Ok(_)) => {
                self.wake();
                Ok(())
            }
            _ => Err(NotHandledYet {
                handled: *self.handled.borrow(),
            }),
        }
    }
}

/// The client every webhook and sync is sent with: no redirects (a 3xx
/// could point anywhere), no proxy from the environment (the address
/// policy judges the endpoint itself), and a resolver that hands out only
/// the addresses the policy allows. HTTPS verifies certificates against
/// the system's roots and `[delivery] ca_file`.
fn http_client(settings: &DeliverySettings) -> reqwest::Client {
    tls::install_crypto_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(address_policy::PolicyResolver(settings.addresses))
        .tls_certs_merge(settings.extra_roots.for_http())
        .build()
        .expect("an HTTP client")
}

/// Runs the follower, and a worker for every destination as they appear.
async fn supervise(
    store: Arc<Store>,
    rules: Arc<IdentityRules>,
    settings: DeliverySettings,
    engine: Option<kairos_engine::Engine>,
    signals: follower::Signals,
    hub: in_app::InAppHub,
    metrics: metrics::DeliveryMetrics,
) {
    let wake = signals.wake_workers.clone();
    let client = http_client(&settings);
    let follower = follower::Follower {
        store: store.clone(),
        rules,
        engine,
        policy: settings.policy.clone(),
        metrics: metrics.clone(),
        clock: settings.clock.clone(),
    };
    tokio::spawn(follower::run(follower, signals));
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
                    metrics.clone(),
                ));
                workers.insert(destination.id, handle);
            }
        }
        let _ = tokio::time::timeout(Duration::from_millis(500), wake.notified()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Answers every connection with 204 and counts them.
    async fn receiver() -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let _ = socket
                    .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                    .await;
            }
        });
        (port, accepted)
    }

    #[tokio::test]
    async fn the_client_resolves_names_through_the_address_policy() {
        let (port, accepted) = receiver().await;
        let strict = http_client(&DeliverySettings::default());
        for host in ["localhost", "hooks.localhost"] {
            let error = strict
                .get(format!("http://{host}:{port}/"))
                .send()
                .await
                .unwrap_err();
            assert_eq!(failure::category(&error), failure::NOT_ALLOWED, "{host}");
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 0);
        let open = http_client(&DeliverySettings {
            addresses: address_policy::AddressPolicy {
                allow_private_networks: true,
            },
            ..DeliverySettings::default()
        });
        let response = open
            .get(format!("http://localhost:{port}/"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 204);
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
