//! Membership changes as events: every time a profile enters or leaves an
//! audience, an `Audience Entered` / `Audience Exited` track event is
//! appended to the log, from a source named [`AUDIENCE_SOURCE`]. Like any
//! event it is durable, on the live stream (`/v1/admin/tail`), routed back
//! to the profile's timeline, and there for triggers and destinations.
//!
//! Exactly the changes that happened are announced, across restarts and
//! definition changes, without a separate store: while the engine replays
//! the log on start, shards announce nothing and note the memberships the
//! log's own `Audience Entered`/`Exited` events say were announced; once
//! caught up they announce the difference between that and the memberships
//! now (what changed while Kairos was down, e.g. a window that ran out).
//! A new or changed definition works the same way against the memberships
//! just before it.

use std::sync::Arc;

use jiff::Timestamp;
use kairos_core::clock::Clock;
use kairos_core::identity::Identifier;
use kairos_core::identity::graph::ProfileId;
use kairos_store::Store;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, watch};

pub use kairos_core::audience::{
    ANNOUNCED_ENTERED as ENTERED, ANNOUNCED_EXITED as EXITED, AUDIENCE_SOURCE,
};
/// Announcements appended per log write.
const BATCH_MAX: usize = 2_000;

/// What made a membership change — journeys act on live behaviour only
/// (docs/journeys.md, "What starts a journey").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// An event of the person (its event time).
    Event(Timestamp),
    /// Time alone, while Kairos ran: a window ran out, a day began.
    Time,
    /// Catching up: after a restart's replay, or a new or changed
    /// definition computed over history. Not live behaviour.
    CatchUp,
}

impl Cause {
    fn name(self) -> &'static str {
        match self {
            Cause::Event(_) => "event",
            Cause::Time => "time",
            Cause::CatchUp => "catch_up",
        }
    }
}

/// One membership change to announce.
#[derive(Debug, Clone)]
pub struct Announcement {
    pub profile: ProfileId,
    /// The profile's most trusted identifier: whom the event names.
    pub identifier: Identifier,
    pub audience: String,
    pub entered: bool,
    pub at: Timestamp,
    pub cause: Cause,
}

/// Where shards send announcements.
#[derive(Clone)]
pub struct Announcer {
    sender: mpsc::UnboundedSender<Vec<Announcement>>,
    /// The id of [`AUDIENCE_SOURCE`], to recognise its events in the log.
    pub(crate) source_id: String,
    /// Announcements sent, and announcements durable in the log.
    sent: Arc<AtomicU64>,
    durable: watch::Receiver<u64>,
    /// The engine's work, for metrics.
    pub(crate) counters: Arc<EngineCounters>,
}

/// Counts of the engine's audience work since start, for `/metrics`
/// (kairos-http names and exports them).
#[derive(Debug, Default)]
pub struct EngineCounters {
    /// Events the audience engine evaluated for a profile (each reads the
    /// definitions that event can change).
    pub audience_evaluations: AtomicU64,
    /// Memberships gained and lost (announced changes).
    pub audience_entered: AtomicU64,
    pub audience_exited: AtomicU64,
    /// Profiles scored with the served models, and the time it took
    /// (nanoseconds, all models of one person together).
    pub model_scorings: AtomicU64,
    pub model_scoring_nanos: AtomicU64,
}

impl EngineCounters {
    pub(crate) fn scored(&self, took: std::time::Duration) {
        self.model_scorings.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.model_scoring_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

impl Announcer {
    pub(crate) fn send(&self, announcements: Vec<Announcement>) {
        self.sent
            .fetch_add(announcements.len() as u64, Ordering::AcqRel);
        let entered = announcements.iter().filter(|change| change.entered).count() as u64;
        let counters = &self.counters;
        counters
            .audience_entered
            .fetch_add(entered, Ordering::Relaxed);
        counters
            .audience_exited
            .fetch_add(announcements.len() as u64 - entered, Ordering::Relaxed);
        let _ = self.sender.send(announcements);
    }

    /// Announcements sent so far.
    pub(crate) fn sent_count(&self) -> u64 {
        self.sent.load(Ordering::Acquire)
    }

    /// Waits until the first `count` announcements sent are in the log.
    pub(crate) async fn durable_through(&self, count: u64) {
        let mut durable = self.durable.clone();
        let _ = durable.wait_for(|durable| *durable >= count).await;
    }

    /// Whether every announcement sent so far is in the log.
    pub(crate) fn is_flushed(&self) -> bool {
        *self.durable.borrow() >= self.sent.load(Ordering::Acquire)
    }

    /// Waits until every announcement sent so far is in the log.
    pub(crate) async fn flushed(&self) {
        let sent = self.sent.load(Ordering::Acquire);
        let mut durable = self.durable.clone();
        let _ = durable.wait_for(|durable| *durable >= sent).await;
    }
}

/// Starts the announcer thread; it appends what shards send, received at
/// `clock`'s now (the engine's clock).
pub(crate) fn start(
    store: Arc<Store>,
    rules: Arc<kairos_core::identity::IdentityRules>,
    clock: Arc<dyn Clock>,
) -> std::io::Result<(Announcer, crate::threads::Stoppable)> {
    let source = store
        .sources
        .named(AUDIENCE_SOURCE, clock.now())
        .map_err(std::io::Error::other)?;
    let (sender, receiver) = mpsc::unbounded_channel();
    let source_id = source.id.clone();
    let (durable_sender, durable) = watch::channel(0u64);
    let (stop, stopped) = watch::channel(false);
    let handle = std::thread::Builder::new()
        .name("kairos-announcer".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("announcer runtime");
            let work = run(store, rules, clock, receiver, durable_sender);
            runtime.block_on(crate::threads::until_stopped(work, stopped));
        })?;
    let announcer = Announcer {
        sender,
        source_id,
        sent: Arc::new(AtomicU64::new(0)),
        durable,
        counters: Arc::default(),
    };
    Ok((announcer, crate::threads::Stoppable { stop, handle }))
}

async fn run(
    store: Arc<Store>,
    rules: Arc<kairos_core::identity::IdentityRules>,
    clock: Arc<dyn Clock>,
    mut receiver: mpsc::UnboundedReceiver<Vec<Announcement>>,
    durable: watch::Sender<u64>,
) {
    let mut audience_ids = AudienceIds::default();
    let mut sequence: u64 = 0;
    // The wall clock on purpose: it only makes this process's message ids
    // unique across restarts, which a manual clock resumed at the same time
    // would not (a repeated id is dropped as a duplicate).
    let started = Timestamp::now().as_nanosecond();
    while let Some(mut batch) = receiver.recv().await {
        // Everything queued meanwhile goes in the same write.
        while batch.len() < BATCH_MAX {
            match receiver.try_recv() {
                Ok(more) => batch.extend(more),
                Err(_) => break,
            }
        }
        let events: Vec<Value> = batch
            .iter()
            .map(|announcement| {
                sequence += 1;
                let message_id = format!("kairos-audience-{started:x}-{sequence}");
                let audience_id = audience_ids.get(&store, &announcement.audience);
                event_json(announcement, audience_id, &message_id)
            })
            .collect();
        append(&store, &rules, &events, clock.now()).await;
        durable.send_modify(|count| *count += batch.len() as u64);
    }
}

/// Audience ids by name, read from the store again when a name is new.
#[derive(Default)]
struct AudienceIds(std::collections::HashMap<String, String>);

impl AudienceIds {
    fn get(&mut self, store: &Store, name: &str) -> Option<String> {
        if !self.0.contains_key(name) {
            self.0 = store
                .definitions
                .list(kairos_store::DefinitionKind::Audience)
                .into_iter()
                .map(|record| (record.name, record.id))
                .collect();
        }
        self.0.get(name).cloned()
    }
}

/// Appends, retrying while the writer is overloaded: an announcement is
/// never dropped while Kairos runs (a restart re-announces from the log).
async fn append(
    store: &Store,
    rules: &kairos_core::identity::IdentityRules,
    events: &[Value],
    now: Timestamp,
) {
    let mut delay = std::time::Duration::from_millis(5);
    loop {
        match store
            .append_internal(rules, AUDIENCE_SOURCE, events, now)
            .await
        {
            Ok(outcome) => {
                for rejected in outcome.rejected {
                    let errors = rejected.errors;
                    tracing::error!(%errors, "an audience change did not make a valid event");
                }
                return;
            }
            Err(error) => {
                tracing::warn!(%error, "announcing audience changes; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(1));
            }
        }
    }
}

fn event_json(announcement: &Announcement, audience_id: Option<String>, message_id: &str) -> Value {
    let mut event = json!({
        "type": "track",
        "event": if announcement.entered { ENTERED } else { EXITED },
        "messageId": message_id,
        "timestamp": announcement.at.to_string(),
        "properties": {"audience": announcement.audience, "audience_id": audience_id,
                       "cause": announcement.cause.name()},
    });
    if let Cause::Event(at) = announcement.cause {
        event["properties"]["cause_at"] = json!(at.to_string());
    }
    announcement.identifier.name_in(&mut event);
    event
}
