//! Delivery: journeys decide, destinations receive (docs/journeys.md).
//!
//! What lives where: what a journey means — its definition compiled into a
//! matcher and a program, unusual-behaviour triggers, the contact policy —
//! is pure and lives in [`kairos_core::journey`] (re-exported here as
//! [`journey`], [`policy`], [`unusual`]). This crate holds what has
//! effects:
//!
//! - the **effects stage** takes the events journeys and syncs act on from
//!   the engine's shards, each with the profile it made
//!   ([`kairos_engine::effects_feed`]), in log order; it drives the core's
//!   journey logic against the store (runs, waits, lists, counters),
//!   renders messages ([`email`], [`render`]: minijinja) and enqueues them,
//!   moving its cursor in the same atomic batch (exactly-once decisions);
//! - **one delivery loop** per destination delivers its queue through one
//!   `Destination` type (webhook with Standard Webhooks signatures
//!   ([`signing`]), email over SMTP, in-app pages; audience-sync batches
//!   are webhook messages): the same `webhook-id` on every attempt, backoff
//!   with jitter, `Retry-After`, 410 disables, a circuit breaker, dead
//!   letters — each destination isolated from the others.
//!
//! The stage runs on a thread of its own and the workers on another
//! ([`Deliverer::start`]), so the stage's fsynced batches never hold up a
//! delivery; [`Deliverer::stop`] ends the stage, then the workers. Their
//! state is in the store ([`kairos_store::outbox`]), so a restart resumes
//! where they stopped.

pub mod address_policy;
mod audience_sync;
pub mod decisions;
mod destination;
pub mod email;
pub mod endpoint;
mod error;
pub mod experiments;
mod failure;
pub mod in_app;
mod in_app_delivery;
pub mod journey;
pub mod lists;
pub mod metrics;
/// The contact policy, pure, in the core; re-exported for existing callers.
pub use kairos_core::journey::policy;
pub mod render;
pub mod signing;
pub mod tls;
mod webhook;
/// Unusual-behaviour triggers, pure, in the core.
pub use kairos_core::journey::unusual;

mod effects;
mod worker;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kairos_core::identity::IdentityRules;
use kairos_store::Store;
use tokio::sync::{Notify, watch};

pub use effects::{active_journeys, effects_interest, sync_event_names};
pub use error::DeliverError;
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
    /// Wakes the effects stage at once (the manual clock moved).
    wake_stage: Arc<Notify>,
    /// How far the effects stage has fully handled the log and the clock.
    handled: watch::Receiver<Handled>,
    /// The threads, until [`Deliverer::stop`] takes them (any handle may).
    threads: Arc<std::sync::Mutex<Option<DeliveryThreads>>>,
    /// The offer catalog, compiled (decisions and the effects stage share it).
    catalog: Arc<decisions::Catalog>,
    /// For test sends: the workers' settings and client.
    settings: DeliverySettings,
    client: reqwest::Client,
}

/// The effects stage's thread and the workers' thread, each with its stop.
struct DeliveryThreads {
    stage: (watch::Sender<bool>, std::thread::JoinHandle<()>),
    workers: (watch::Sender<bool>, std::thread::JoinHandle<()>),
}

/// At a stop, attempts still in flight after this long are dropped; they
/// are retried after the restart under the same `webhook-id` (delivery is
/// at least once).
const ATTEMPTS_STOP_MAX: Duration = Duration::from_secs(1);

/// What the effects stage has fully handled: every event up to `seq` is
/// decided on and every wait and step due at `now` (engine clock) has run,
/// its messages decided and stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handled {
    pub seq: u64,
    pub now: jiff::Timestamp,
}

/// The effects stage did not reach a position in the time given.
#[derive(Debug)]
pub struct NotHandledYet {
    pub handled: Handled,
}

impl Deliverer {
    /// Starts the effects stage, fed by `engine`'s shards through `tap`
    /// (the other end of [`kairos_engine::EngineSettings::effects`]), and
    /// the destination workers, each on a thread of its own.
    pub fn start(
        store: Arc<Store>,
        rules: Arc<IdentityRules>,
        settings: DeliverySettings,
        engine: kairos_engine::Engine,
        tap: kairos_engine::effects_feed::EffectsTap,
        metrics: metrics::DeliveryMetrics,
    ) -> std::io::Result<Deliverer> {
        let wake = Arc::new(Notify::new());
        let wake_stage = Arc::new(Notify::new());
        let catalog = Arc::new(decisions::Catalog::default());
        let hub = in_app::InAppHub::default();
        let (handled_sender, handled) = watch::channel(Handled {
            seq: 0,
            now: jiff::Timestamp::UNIX_EPOCH,
        });
        let (stop_stage, stage_stopped) = watch::channel(false);
        let signals = effects::Signals {
            wake_workers: wake.clone(),
            wake_stage: wake_stage.clone(),
            handled: handled_sender,
            stop: stage_stopped,
        };
        let stage = effects::Stage {
            store: store.clone(),
            rules,
            engine,
            catalog: catalog.clone(),
            policy: settings.policy.clone(),
            metrics: metrics.clone(),
            clock: settings.clock.clone(),
        };
        let stage_thread = std::thread::Builder::new()
            .name("kairos-effects".into())
            .spawn(move || {
                current_thread_runtime().block_on(effects::run(stage, tap, signals));
            })?;
        let test_settings = settings.clone();
        let (stop_workers, workers_stopped) = watch::channel(false);
        let (worker_store, worker_hub, worker_wake) = (store.clone(), hub.clone(), wake.clone());
        let workers_thread = std::thread::Builder::new()
            .name("kairos-deliver".into())
            .spawn(move || {
                let runtime = current_thread_runtime();
                runtime.block_on(supervise(
                    worker_store,
                    settings,
                    worker_wake,
                    worker_hub,
                    metrics,
                    workers_stopped,
                ));
                // Workers are cancelled at their next await point.
                runtime.shutdown_timeout(ATTEMPTS_STOP_MAX);
            })?;
        let threads = DeliveryThreads {
            stage: (stop_stage, stage_thread),
            workers: (stop_workers, workers_thread),
        };
        Ok(Deliverer {
            wake,
            hub,
            store,
            wake_stage,
            handled,
            catalog,
            threads: Arc::new(std::sync::Mutex::new(Some(threads))),
            client: http_client(&test_settings),
            settings: test_settings,
        })
    }

    /// Stops the effects stage (between two steps: its batches are
    /// atomic), then the workers; blocks, each within
    /// [`kairos_engine::STAGE_STOP_MAX`]. Returns whether both ended in
    /// time; a second call does nothing.
    pub fn stop(&self) -> bool {
        let taken = self.threads.lock().ok().and_then(|mut slot| slot.take());
        let Some(threads) = taken else {
            return true;
        };
        let (stop, handle) = threads.stage;
        let _ = stop.send(true);
        let stage = kairos_engine::join_within("effects stage", handle);
        let (stop, handle) = threads.workers;
        let _ = stop.send(true);
        stage & kairos_engine::join_within("delivery workers", handle)
    }

    /// The offer catalog, compiled once per change.
    pub fn catalog(&self) -> &decisions::Catalog {
        &self.catalog
    }

    /// Sends one test message to a webhook (signed like every delivery)
    /// or an email destination (to `to`), now, without storing it; how long
    /// it took, or why it was not taken.
    pub async fn test_send(
        &self,
        destination: &kairos_store::DestinationRecord,
        to: Option<&str>,
    ) -> Result<Duration, String> {
        let now = jiff::Timestamp::now();
        let id = format!("msg_test_{}", now.as_millisecond());
        let payload = match destination.kind.as_str() {
            "email" => {
                let to = to.ok_or("an email test send needs \"to\": the address to send it to")?;
                serde_json::json!({"to": to, "subject": "Kairos test message",
                                   "text": format!("A test from Kairos to the destination {:?}.", destination.name)})
            }
            "webhook" => serde_json::json!({"type": "kairos.test", "timestamp": now.to_string(),
                                            "data": {"destination": destination.name}}),
            other => {
                return Err(format!(
                    "test sends go to webhook and email destinations, not {other}"
                ));
            }
        };
        let message = kairos_store::Message {
            id,
            seq: 0,
            destination: destination.id.clone(),
            journey: String::new(),
            purpose: None,
            channel: destination.kind.clone(),
            identifier: String::new(),
            event_seq: 0,
            payload,
            status: kairos_store::MessageStatus::Pending,
            attempts: 0,
            next_attempt_at: now,
            last_error: None,
            created_at: now,
            deferred_until: None,
            delivered_at: None,
        };
        let started = std::time::Instant::now();
        worker::test_attempt(&self.client, destination, &message, &self.settings).await?;
        Ok(started.elapsed())
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
        let engine_now = self.settings.clock.now();
        let _ = tokio::task::spawn_blocking(move || {
            in_app_delivery::catch_up(&store, &hub, &identifiers, engine_now)
        })
        .await;
        Ok(subscription)
    }

    /// Wakes the workers (a destination or journey changed, a dead letter
    /// was replayed).
    pub fn wake(&self) {
        self.wake.notify_waiters();
    }

    /// Waits until the effects stage has decided on the log up to `seq` and run
    /// everything due at `now` on the engine's clock (at most `limit`).
    /// The manual clock answers only then, so a test's next move cannot
    /// overtake waits due at this one.
    pub async fn handled(
        &self,
        seq: u64,
        now: jiff::Timestamp,
        limit: Duration,
    ) -> Result<(), NotHandledYet> {
        self.wake_stage.notify_one();
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

fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("delivery runtime")
}

/// Runs a worker for every destination as they appear, until `stop`.
async fn supervise(
    store: Arc<Store>,
    settings: DeliverySettings,
    wake: Arc<Notify>,
    hub: in_app::InAppHub,
    metrics: metrics::DeliveryMetrics,
    mut stop: watch::Receiver<bool>,
) {
    let client = http_client(&settings);
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
        tokio::select! {
            _ = tokio::time::timeout(Duration::from_millis(500), wake.notified()) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
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
