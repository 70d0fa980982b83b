//! The engine: derived state, kept current by following the log.
//!
//! A **router** thread takes every durable event in log order (from the log
//! writer's live feed; from the log itself on start and whenever it falls
//! behind), resolves its identifiers to a profile with the identity graph
//! ([`kairos_core::identity`], [`router`]) and sends the work to the
//! **shard** threads that own the profiles involved (`profile id % shards`,
//! [`shard`]), which apply events to profiles ([`kairos_core::profile`]).
//! A merge of profiles on two shards moves the absorbed profile's state to
//! the survivor's shard in the same global order as everything else, so no
//! event is lost or counted twice, including events in flight.
//!
//! Reads (the profile API) are commands to the router, which forwards them
//! to the owning shard behind every event routed before: no locks on the
//! hot path, and a read waits until every event acknowledged before it has
//! been applied — an answer always reflects the events accepted a moment
//! earlier.
//!
//! State is a pure function of the log (and the erasures made since): on
//! start the engine replays it from the beginning; events of erased people
//! can no longer be read and identifiers they held are suppressed
//! ([`kairos_store::privacy`]). Checkpoints are the next step (see
//! docs/architecture.md).

mod router;
mod shard;
mod state;
mod types;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use kairos_core::identity::graph::ProfileId;
use kairos_core::identity::{Identifier, IdentityRules};
use kairos_store::Store;

use router::{Outbox, Router};
use shard::{ShardOp, ShardState};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

pub use state::EngineState;
pub use types::{
    EngineSettings, ErasedProfile, MatchCandidate, ProfileExport, ProfileView, SuppressionCheck,
    TimelinePage,
};

/// Events read from the log per step.
const READ_BATCH_EVENTS: usize = 20_000;
/// Reads that may wait for the engine.
const COMMANDS_QUEUED_MAX: usize = 4_096;

enum Command {
    Profile {
        identifier: Identifier,
        reply: oneshot::Sender<Option<ProfileView>>,
    },
    Search {
        trait_name: String,
        value: String,
        limit: usize,
        reply: oneshot::Sender<Vec<ProfileView>>,
    },
    Timeline {
        identifier: Identifier,
        before_seq: Option<u64>,
        limit: usize,
        reply: oneshot::Sender<Option<TimelinePage>>,
    },
    Export {
        identifier: Identifier,
        reply: oneshot::Sender<Option<ProfileExport>>,
    },
    MatchCandidates {
        reply: oneshot::Sender<Vec<MatchCandidate>>,
    },
    /// Removes the person and suppresses their identifiers at once.
    Erase {
        identifier: Identifier,
        reply: oneshot::Sender<Option<ErasedProfile>>,
    },
}

/// A command waiting until the engine has applied the log up to `min_seq`.
struct Pending {
    min_seq: u64,
    command: Command,
}

#[derive(Clone)]
pub struct Engine {
    commands: mpsc::Sender<Pending>,
    store: Arc<Store>,
    applied: watch::Receiver<u64>,
    rules: Arc<IdentityRules>,
}

#[derive(Debug)]
pub struct EngineStopped;

impl std::fmt::Display for EngineStopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the engine has stopped or is overloaded")
    }
}

impl Engine {
    /// Starts the engine thread; it replays the log before answering reads.
    pub fn start(store: Arc<Store>, settings: EngineSettings) -> std::io::Result<Engine> {
        let rules = Arc::new(settings.rules.clone());
        let (commands, receiver) = mpsc::channel(COMMANDS_QUEUED_MAX);
        let (applied_sender, applied) = watch::channel(0);
        let worker_store = store.clone();
        std::thread::Builder::new()
            .name("kairos-engine".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("engine runtime");
                runtime.block_on(run(worker_store, settings, receiver, applied_sender));
            })?;
        Ok(Engine {
            commands,
            store,
            applied,
            rules,
        })
    }

    /// The identity rules events are resolved with.
    pub fn rules(&self) -> &IdentityRules {
        &self.rules
    }

    /// Everything held about a person: profile and timeline positions.
    pub async fn export(
        &self,
        identifier: Identifier,
    ) -> Result<Option<ProfileExport>, EngineStopped> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Export { identifier, reply })?;
        answer.await.map_err(|_| EngineStopped)
    }

    /// Every profile the probabilistic matcher can compare.
    pub async fn match_candidates(&self) -> Result<Vec<MatchCandidate>, EngineStopped> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::MatchCandidates { reply })?;
        answer.await.map_err(|_| EngineStopped)
    }

    /// Removes a person from the derived state and suppresses their
    /// identifiers in memory; the caller makes it durable with
    /// [`kairos_store::LogWriter::erase`].
    pub async fn erase(
        &self,
        identifier: Identifier,
    ) -> Result<Option<ErasedProfile>, EngineStopped> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Erase { identifier, reply })?;
        answer.await.map_err(|_| EngineStopped)
    }

    /// The highest log sequence number applied to profiles.
    pub fn applied_seq(&self) -> u64 {
        *self.applied.borrow()
    }

    pub async fn profile(
        &self,
        identifier: Identifier,
    ) -> Result<Option<ProfileView>, EngineStopped> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Profile { identifier, reply })?;
        answer.await.map_err(|_| EngineStopped)
    }

    /// Profiles whose trait `trait_name` equals `value` (as text).
    pub async fn search(
        &self,
        trait_name: String,
        value: String,
        limit: usize,
    ) -> Result<Vec<ProfileView>, EngineStopped> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Search {
            trait_name,
            value,
            limit,
            reply,
        })?;
        answer.await.map_err(|_| EngineStopped)
    }

    pub async fn timeline(
        &self,
        identifier: Identifier,
        before_seq: Option<u64>,
        limit: usize,
    ) -> Result<Option<TimelinePage>, EngineStopped> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Timeline {
            identifier,
            before_seq,
            limit,
            reply,
        })?;
        answer.await.map_err(|_| EngineStopped)
    }

    fn send(&self, command: Command) -> Result<(), EngineStopped> {
        let min_seq = self.store.writer.committed_seq();
        self.commands
            .try_send(Pending { min_seq, command })
            .map_err(|_| EngineStopped)
    }
}

/// Batches a shard may have queued before the router waits for it (bounds
/// memory during replay; channels are unbounded so a merge's two halves
/// can never block each other).
const SHARD_BATCHES_AHEAD_MAX: u64 = 8;

/// One shard thread, as the router sees it.
struct ShardHandle {
    sender: std::sync::mpsc::Sender<Vec<ShardOp>>,
    sent: u64,
    done: Arc<AtomicU64>,
}

fn start_shards(settings: &Arc<EngineSettings>) -> std::io::Result<Vec<ShardHandle>> {
    (0..settings.shards.max(1))
        .map(|index| {
            let (sender, receiver) = std::sync::mpsc::channel::<Vec<ShardOp>>();
            let done = Arc::new(AtomicU64::new(0));
            let mut shard = ShardState::new(settings.clone());
            let shard_done = done.clone();
            std::thread::Builder::new()
                .name(format!("kairos-shard-{index}"))
                .spawn(move || {
                    for batch in receiver {
                        let now = jiff::Timestamp::now();
                        for op in batch {
                            shard.handle(op, now);
                        }
                        shard_done.fetch_add(1, Ordering::Release);
                    }
                })?;
            Ok(ShardHandle {
                sender,
                sent: 0,
                done,
            })
        })
        .collect()
}

/// The router's side: the graph, the shards, and operations not sent yet.
struct Routing {
    router: Router,
    shards: Vec<ShardHandle>,
    outbox: Outbox,
}

impl Routing {
    /// Sends every queued operation, one batch per shard.
    fn flush(&mut self) {
        if self.outbox.is_empty() {
            return;
        }
        let mut batches: Vec<Vec<ShardOp>> = (0..self.shards.len()).map(|_| Vec::new()).collect();
        for (shard, op) in self.outbox.drain(..) {
            batches[shard].push(op);
        }
        for (handle, batch) in self.shards.iter_mut().zip(batches) {
            if !batch.is_empty() && handle.sender.send(batch).is_ok() {
                handle.sent += 1;
            }
        }
    }

    /// Waits while a shard is more than `ahead` batches behind.
    fn wait_for_shards(&self, ahead: u64) {
        for handle in &self.shards {
            while handle.sent > handle.done.load(Ordering::Acquire) + ahead {
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
        }
    }

    fn send_to_shard_of(&mut self, profile: ProfileId, op: ShardOp) {
        let shard = self.router.shard_of(profile);
        self.outbox.push((shard, op));
    }
}

async fn run(
    store: Arc<Store>,
    settings: EngineSettings,
    mut commands: mpsc::Receiver<Pending>,
    applied: watch::Sender<u64>,
) {
    let settings = Arc::new(settings);
    let shards = match start_shards(&settings) {
        Ok(shards) => shards,
        Err(error) => {
            tracing::error!(%error, "engine stopped: shard threads could not start");
            return;
        }
    };
    let mut routing = Routing {
        router: Router::new(settings).with_suppression(SuppressionCheck {
            vault: store.vault.clone(),
            privacy: store.privacy.clone(),
        }),
        shards,
        outbox: Vec::new(),
    };
    // Subscribe before replaying, so no durable group falls between the two.
    let mut feed = store.writer.subscribe();
    if let Err(error) = catch_up(&store, &mut routing, store.writer.committed_seq()) {
        tracing::error!(%error, "engine stopped: the log could not be replayed");
        return;
    }
    let mut waiting: Vec<Pending> = Vec::new();
    loop {
        applied.send_replace(routing.router.applied_seq());
        waiting = answer_ready(&store, &mut routing, waiting);
        routing.flush();
        tokio::select! {
            group = feed.recv() => {
                let result = match group {
                    Ok(events) => follow(&store, &mut routing, &events),
                    // Fell behind the live feed: the log has everything.
                    Err(broadcast::error::RecvError::Lagged(_)) => catch_up(&store, &mut routing, store.writer.committed_seq()),
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                if let Err(error) = result {
                    tracing::error!(%error, "engine stopped: the log could not be read");
                    return;
                }
                routing.flush();
                routing.wait_for_shards(SHARD_BATCHES_AHEAD_MAX);
            }
            command = commands.recv() => match command {
                Some(command) => waiting.push(command),
                None => return,
            },
        }
    }
}

/// Routes one durable group from the live feed; reads the log first if
/// events before the group have not been routed yet.
fn follow(
    store: &Store,
    routing: &mut Routing,
    events: &[kairos_store::log::StoredEvent],
) -> Result<(), kairos_store::StoreError> {
    let Some(first) = events.first() else {
        return Ok(());
    };
    if first.seq > routing.router.applied_seq() + 1 {
        catch_up(store, routing, first.seq - 1)?;
    }
    for stored in events {
        if stored.seq > routing.router.applied_seq() {
            route(store, routing, stored)?;
        }
    }
    Ok(())
}

fn route(
    store: &Store,
    routing: &mut Routing,
    stored: &kairos_store::log::StoredEvent,
) -> Result<(), kairos_store::StoreError> {
    let event = stored.decode()?;
    if !routing.router.knows_source(&event.source_id) {
        let source = store.sources.get(&event.source_id);
        routing.router.learn_source(
            &event.source_id,
            source.as_ref().map(|source| source.record.name.as_str()),
        );
    }
    routing.router.route(Arc::new(event), &mut routing.outbox);
    Ok(())
}

fn catch_up(
    store: &Store,
    routing: &mut Routing,
    durable: u64,
) -> Result<(), kairos_store::StoreError> {
    while routing.router.applied_seq() < durable {
        let events = store.log.read_after(
            routing.router.applied_seq(),
            durable,
            READ_BATCH_EVENTS,
            None,
        )?;
        if events.is_empty() {
            routing.router.skip_to(durable);
            break;
        }
        for stored in &events {
            route(store, routing, stored)?;
        }
        routing.flush();
        routing.wait_for_shards(1);
    }
    Ok(())
}

/// Forwards the commands whose events are routed to the shards that answer
/// them (behind those events); returns the rest.
fn answer_ready(store: &Store, routing: &mut Routing, waiting: Vec<Pending>) -> Vec<Pending> {
    let mut still_waiting = Vec::new();
    for pending in waiting {
        if pending.min_seq > routing.router.applied_seq() {
            still_waiting.push(pending);
            continue;
        }
        forward(store, routing, pending.command);
    }
    still_waiting
}

fn forward(store: &Store, routing: &mut Routing, command: Command) {
    match command {
        Command::Profile { identifier, reply } => match routing.router.lookup(&identifier) {
            Some(profile) => routing.send_to_shard_of(profile, ShardOp::View { profile, reply }),
            None => {
                let _ = reply.send(None);
            }
        },
        Command::Timeline {
            identifier,
            before_seq,
            limit,
            reply,
        } => match routing.router.lookup(&identifier) {
            Some(profile) => routing.send_to_shard_of(
                profile,
                ShardOp::Timeline {
                    profile,
                    before_seq,
                    limit,
                    reply,
                },
            ),
            None => {
                let _ = reply.send(None);
            }
        },
        Command::Export { identifier, reply } => match routing.router.lookup(&identifier) {
            Some(profile) => routing.send_to_shard_of(profile, ShardOp::Export { profile, reply }),
            None => {
                let _ = reply.send(None);
            }
        },
        Command::Search {
            trait_name,
            value,
            limit,
            reply,
        } => {
            let (trait_name, value): (Arc<str>, Arc<str>) = (trait_name.into(), value.into());
            let answers = gather(routing, |reply| ShardOp::Search {
                trait_name: trait_name.clone(),
                value: value.clone(),
                limit,
                reply,
            });
            tokio::spawn(async move {
                let mut found: Vec<ProfileView> = Vec::new();
                for answer in answers {
                    found.extend(answer.await.unwrap_or_default());
                }
                found.sort_by_key(types::by_profile_number);
                found.truncate(limit);
                let _ = reply.send(found);
            });
        }
        Command::MatchCandidates { reply } => {
            let answers = gather(routing, |reply| ShardOp::MatchCandidates { reply });
            tokio::spawn(async move {
                let mut candidates = Vec::new();
                for answer in answers {
                    candidates.extend(answer.await.unwrap_or_default());
                }
                candidates.sort_by_key(|candidate: &MatchCandidate| {
                    (candidate.profile_id.len(), candidate.profile_id.clone())
                });
                let _ = reply.send(candidates);
            });
        }
        Command::Erase { identifier, reply } => match routing.router.erase(&identifier) {
            Some((profile, identities)) => {
                // On the router, before the next event: nothing routed after
                // this point can bring the person back.
                let subjects: Vec<_> = identities
                    .iter()
                    .map(|identity| store.vault.subject(identity))
                    .collect();
                let applied_seq = routing.router.applied_seq();
                store.privacy.suppress_now(&subjects, applied_seq);
                let erased = ErasedProfile {
                    profile_id: types::profile_key(profile),
                    identities,
                    events: 0,
                    applied_seq,
                };
                routing.send_to_shard_of(
                    profile,
                    ShardOp::Remove {
                        profile,
                        erased,
                        reply,
                    },
                );
            }
            None => {
                let _ = reply.send(None);
            }
        },
    }
}

/// Sends one operation to every shard; the answers to await.
fn gather<T>(
    routing: &mut Routing,
    op: impl Fn(oneshot::Sender<T>) -> ShardOp,
) -> Vec<oneshot::Receiver<T>> {
    (0..routing.shards.len())
        .map(|shard| {
            let (reply, answer) = oneshot::channel();
            routing.outbox.push((shard, op(reply)));
            answer
        })
        .collect()
}
