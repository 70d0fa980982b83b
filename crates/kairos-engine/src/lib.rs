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
//! Reads (the profile API) run on the caller's thread against the router's
//! graph and the owning shard's state, each behind a read-write lock that
//! its thread holds only while applying: a read first waits until every
//! event acknowledged before it is routed and applied, then reads — no
//! hop through another thread when the engine is caught up, and an answer
//! always reflects the events accepted a moment earlier.
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

use std::sync::{Arc, RwLock};

use kairos_core::identity::graph::ProfileId;
use kairos_core::identity::{Identifier, IdentityRules};
use kairos_store::Store;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use kairos_core::audience::incremental::Program;
use router::{Outbox, Router};
use shard::{ShardOp, ShardState};

pub use state::EngineState;
pub use types::{
    EngineSettings, ErasedProfile, MatchCandidate, ProfileExport, ProfileView, SuppressionCheck,
    TimelinePage,
};

/// Events read from the log per step.
const READ_BATCH_EVENTS: usize = 20_000;
/// Erasures that may wait for the router.
const COMMANDS_QUEUED_MAX: usize = 256;
/// Batches a shard may have queued before the router waits for it (bounds
/// memory during replay; channels are unbounded so a merge's two halves
/// can never block each other).
const SHARD_BATCHES_AHEAD_MAX: u64 = 8;
/// A read that finds its profile moved by a merge between looking it up and
/// reading it looks again, this many times.
const READ_ATTEMPTS_MAX: usize = 4;

/// Work that must happen on the router thread, in order with events.
enum Command {
    /// Removes the person and suppresses their identifiers at once.
    Erase {
        identifier: Identifier,
        reply: oneshot::Sender<Option<ErasedProfile>>,
    },
    /// New audience definitions: recompute every membership from the log.
    SetAudiences {
        program: Arc<Program>,
        reply: oneshot::Sender<usize>,
    },
    /// Fire every due timer now (after a manual clock moved), then reply.
    Sync { reply: oneshot::Sender<()> },
}

/// How often shards check their timers against the clock.
const TIMER_TICK: std::time::Duration = std::time::Duration::from_millis(200);

/// A command waiting until the router has routed the log up to `min_seq`.
struct Pending {
    min_seq: u64,
    command: Command,
}

/// A shard as readers see it.
#[derive(Clone)]
struct ShardView {
    state: Arc<RwLock<ShardState>>,
    /// The router's position when this shard last finished a batch.
    applied: watch::Receiver<u64>,
}

#[derive(Clone)]
pub struct Engine {
    commands: mpsc::Sender<Pending>,
    store: Arc<Store>,
    router: Arc<RwLock<Router>>,
    /// The router's position once the operations up to it are sent.
    routed: watch::Receiver<u64>,
    shards: Vec<ShardView>,
    rules: Arc<IdentityRules>,
    clock: Arc<dyn kairos_core::clock::Clock>,
}

/// What a draft audience would hold now.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AudiencePreview {
    pub size: usize,
    pub profiles_evaluated: usize,
    pub events_read: usize,
    /// The first members in profile order: `{id, identities}`.
    pub sample: Vec<(String, Vec<Identifier>)>,
}

#[derive(Debug)]
pub struct EngineStopped;

impl std::fmt::Display for EngineStopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the engine has stopped or is overloaded")
    }
}

impl Engine {
    /// Starts the router and shard threads; they replay the log before
    /// reads are answered.
    pub fn start(store: Arc<Store>, settings: EngineSettings) -> std::io::Result<Engine> {
        let settings = Arc::new(settings);
        let program = Arc::new(stored_audiences(&store));
        let rules = Arc::new(settings.rules.clone());
        let router = Arc::new(RwLock::new(Router::new(settings.clone()).with_suppression(
            SuppressionCheck {
                vault: store.vault.clone(),
                privacy: store.privacy.clone(),
            },
        )));
        let (handles, shards) = start_shards(&settings, &program)?;
        let (commands, receiver) = mpsc::channel(COMMANDS_QUEUED_MAX);
        let (routed_sender, routed) = watch::channel(0);
        let routing = Routing {
            router: router.clone(),
            shards: handles,
            outbox: Vec::new(),
            flushed_upto: 0,
        };
        let worker_store = store.clone();
        std::thread::Builder::new()
            .name("kairos-engine".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("engine runtime");
                runtime.block_on(run(worker_store, routing, receiver, routed_sender));
            })?;
        Ok(Engine {
            commands,
            store,
            router,
            routed,
            shards,
            rules,
            clock: settings.clock.clone(),
        })
    }

    /// Evaluates a draft definition for every profile at the engine's
    /// "now", from the stored history, without saving anything: the
    /// reference evaluation (`audience::eval`) over each profile's events
    /// read from the log. Costs a read of the whole log.
    pub async fn preview(
        &self,
        expr: kairos_core::audience::Expr,
        sample: usize,
    ) -> Result<AudiencePreview, EngineStopped> {
        self.caught_up().await?;
        let (store, router, shards) =
            (self.store.clone(), self.router.clone(), self.shards.clone());
        let now = self.clock.now();
        tokio::task::spawn_blocking(move || preview(&store, &router, &shards, &expr, now, sample))
            .await
            .map_err(|_| EngineStopped)?
            .map_err(|_| EngineStopped)
    }

    /// The identity rules events are resolved with.
    pub fn rules(&self) -> &IdentityRules {
        &self.rules
    }

    /// The engine's "now" (system or manual clock).
    pub fn now(&self) -> jiff::Timestamp {
        self.clock.now()
    }

    /// The highest log sequence number routed to the shards.
    pub fn applied_seq(&self) -> u64 {
        *self.routed.borrow()
    }

    /// Waits until every event durable now is routed.
    async fn caught_up(&self) -> Result<(), EngineStopped> {
        let durable = self.store.writer.committed_seq();
        let mut routed = self.routed.clone();
        routed
            .wait_for(|seq| *seq >= durable)
            .await
            .map(|_| ())
            .map_err(|_| EngineStopped)
    }

    /// Reads the profile of `identifier` on its shard once that shard has
    /// applied everything the lookup saw.
    async fn read_profile<T>(
        &self,
        identifier: &Identifier,
        read: impl Fn(&ShardState, ProfileId) -> Option<T>,
    ) -> Result<Option<T>, EngineStopped> {
        self.caught_up().await?;
        for _ in 0..READ_ATTEMPTS_MAX {
            let (profile, seen) = {
                let router = self.router.read().map_err(|_| EngineStopped)?;
                (router.lookup(identifier), router.applied_seq())
            };
            let Some(profile) = profile else {
                return Ok(None);
            };
            let shard = &self.shards[(profile % self.shards.len() as u64) as usize];
            let mut applied = shard.applied.clone();
            applied
                .wait_for(|seq| *seq >= seen)
                .await
                .map_err(|_| EngineStopped)?;
            let answer = {
                let state = shard.state.read().map_err(|_| EngineStopped)?;
                read(&state, profile)
            };
            if answer.is_some() {
                return Ok(answer);
            }
            // Merged away meanwhile: look the identifier up again.
        }
        Ok(None)
    }

    /// Reads every shard once all have applied what is durable now.
    async fn read_all<T>(
        &self,
        read: impl Fn(&ShardState) -> Vec<T>,
    ) -> Result<Vec<T>, EngineStopped> {
        self.caught_up().await?;
        let seen = self.router.read().map_err(|_| EngineStopped)?.applied_seq();
        let mut found = Vec::new();
        for shard in &self.shards {
            let mut applied = shard.applied.clone();
            applied
                .wait_for(|seq| *seq >= seen)
                .await
                .map_err(|_| EngineStopped)?;
            let state = shard.state.read().map_err(|_| EngineStopped)?;
            found.extend(read(&state));
        }
        Ok(found)
    }

    pub async fn profile(
        &self,
        identifier: Identifier,
    ) -> Result<Option<ProfileView>, EngineStopped> {
        self.read_profile(&identifier, |shard, profile| shard.view(profile))
            .await
    }

    pub async fn timeline(
        &self,
        identifier: Identifier,
        before_seq: Option<u64>,
        limit: usize,
    ) -> Result<Option<TimelinePage>, EngineStopped> {
        let now = jiff::Timestamp::now();
        self.read_profile(&identifier, |shard, profile| {
            shard.timeline(profile, before_seq, limit, now)
        })
        .await
    }

    /// Everything held about a person: profile and timeline positions.
    pub async fn export(
        &self,
        identifier: Identifier,
    ) -> Result<Option<ProfileExport>, EngineStopped> {
        self.read_profile(&identifier, |shard, profile| shard.export(profile))
            .await
    }

    /// Profiles whose trait `trait_name` equals `value` (as text).
    pub async fn search(
        &self,
        trait_name: String,
        value: String,
        limit: usize,
    ) -> Result<Vec<ProfileView>, EngineStopped> {
        let mut found = self
            .read_all(|shard| shard.search(&trait_name, &value, limit))
            .await?;
        found.sort_by_key(types::by_profile_number);
        found.truncate(limit);
        Ok(found)
    }

    /// Every profile the probabilistic matcher can compare.
    pub async fn match_candidates(&self) -> Result<Vec<MatchCandidate>, EngineStopped> {
        let mut candidates = self.read_all(ShardState::match_candidates).await?;
        candidates
            .sort_by_key(|candidate| (candidate.profile_id.len(), candidate.profile_id.clone()));
        Ok(candidates)
    }

    /// Replaces the audience definitions; answers once every membership
    /// is recomputed from the log (the number of events replayed).
    pub async fn set_audiences(&self, program: Program) -> Result<usize, EngineStopped> {
        let (reply, answer) = oneshot::channel();
        self.command(Command::SetAudiences {
            program: Arc::new(program),
            reply,
        })?;
        answer.await.map_err(|_| EngineStopped)
    }

    /// Fires every timer due by the clock's now; answers when done.
    pub async fn sync_timers(&self) -> Result<(), EngineStopped> {
        let (reply, answer) = oneshot::channel();
        self.command(Command::Sync { reply })?;
        answer.await.map_err(|_| EngineStopped)
    }

    /// Members of an audience after profile `after` (profile order), with
    /// their identities.
    pub async fn audience_members(
        &self,
        audience: &str,
        after: Option<ProfileId>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<Identifier>)>, EngineStopped> {
        let mut members = self
            .read_all(|shard| {
                shard
                    .audience_members(audience)
                    .into_iter()
                    .filter(|profile| after.is_none_or(|after| *profile > after))
                    .map(|profile| (profile, shard.identities(profile).unwrap_or(&[]).to_vec()))
                    .collect()
            })
            .await?;
        members.sort_by_key(|(profile, _)| *profile);
        members.truncate(limit);
        Ok(members
            .into_iter()
            .map(|(profile, identities)| (types::profile_key(profile), identities))
            .collect())
    }

    /// Number of members of each audience.
    pub async fn audience_sizes(&self, audiences: &[String]) -> Result<Vec<usize>, EngineStopped> {
        let counts = self
            .read_all(|shard| {
                audiences
                    .iter()
                    .map(|audience| shard.audience_members(audience).len())
                    .collect::<Vec<usize>>()
            })
            .await?;
        let mut sizes = vec![0; audiences.len()];
        for (index, count) in counts.into_iter().enumerate() {
            sizes[index % audiences.len().max(1)] += count;
        }
        Ok(sizes)
    }

    fn command(&self, command: Command) -> Result<(), EngineStopped> {
        let min_seq = self.store.writer.committed_seq();
        self.commands
            .try_send(Pending { min_seq, command })
            .map_err(|_| EngineStopped)
    }

    /// Removes a person from the derived state and suppresses their
    /// identifiers in memory; the caller makes it durable with
    /// [`kairos_store::LogWriter::erase`].
    pub async fn erase(
        &self,
        identifier: Identifier,
    ) -> Result<Option<ErasedProfile>, EngineStopped> {
        let (reply, answer) = oneshot::channel();
        self.command(Command::Erase { identifier, reply })?;
        answer.await.map_err(|_| EngineStopped)
    }
}

/// One shard thread, as the router sees it.
struct ShardHandle {
    sender: std::sync::mpsc::Sender<(Vec<ShardOp>, u64)>,
    sent: u64,
    /// Batches finished.
    done: Arc<std::sync::atomic::AtomicU64>,
}

fn preview(
    store: &Store,
    router: &RwLock<Router>,
    shards: &[ShardView],
    expr: &kairos_core::audience::Expr,
    now: jiff::Timestamp,
    sample: usize,
) -> Result<AudiencePreview, kairos_store::StoreError> {
    use kairos_core::audience::eval::{EventFact, PersonFacts, evaluate};
    let mut histories: std::collections::HashMap<ProfileId, Vec<EventFact>> = Default::default();
    let upto = store.writer.committed_seq();
    let (mut after, mut events_read) = (0, 0);
    while after < upto {
        let events = store.log.read_after(after, upto, READ_BATCH_EVENTS, None)?;
        let Some(last) = events.last() else {
            break;
        };
        after = last.seq;
        events_read += events.len();
        let router = router.read().expect("router lock");
        for stored in &events {
            let event = stored.decode()?;
            let (Some(name), Some(profile)) = (event.event.clone(), router.current_profile(&event))
            else {
                continue;
            };
            let properties = event
                .field("properties")
                .and_then(|raw| serde_json::from_str(raw.get()).ok())
                .unwrap_or_default();
            histories.entry(profile).or_default().push(EventFact {
                name,
                at: event.timestamp,
                properties,
            });
        }
    }
    let mut members = Vec::new();
    let mut profiles_evaluated = 0;
    for shard in shards {
        let state = shard.state.read().expect("shard lock");
        state.each_profile(|profile, traits, identities, audiences| {
            profiles_evaluated += 1;
            let facts = PersonFacts {
                traits: traits.clone(),
                audiences: audiences.into_iter().collect(),
                ..PersonFacts::default()
            };
            let history = histories.get(&profile).map(Vec::as_slice).unwrap_or(&[]);
            if evaluate(expr, history, &facts, now) {
                members.push((profile, identities.to_vec()));
            }
        });
    }
    members.sort_by_key(|(profile, _)| *profile);
    Ok(AudiencePreview {
        size: members.len(),
        profiles_evaluated,
        events_read,
        sample: members
            .into_iter()
            .take(sample)
            .map(|(profile, identities)| (types::profile_key(profile), identities))
            .collect(),
    })
}

/// The audiences stored in the data directory, compiled. A definition
/// that no longer compiles is left out (and logged), not fatal.
fn stored_audiences(store: &Store) -> Program {
    let mut definitions = Vec::new();
    for record in store.definitions.audiences() {
        match kairos_core::audience::parse(&record.definition) {
            Ok(expr) => definitions.push((record.name, expr)),
            Err(error) => {
                tracing::error!(audience = %record.name, %error, "stored audience does not parse; left out")
            }
        }
    }
    Program::compile(&definitions).unwrap_or_else(|error| {
        tracing::error!(%error, "stored audiences do not compile together; none are active");
        Program::compile(&[]).expect("no definitions compile")
    })
}

fn start_shards(
    settings: &Arc<EngineSettings>,
    program: &Arc<Program>,
) -> std::io::Result<(Vec<ShardHandle>, Vec<ShardView>)> {
    let mut handles = Vec::new();
    let mut views = Vec::new();
    for index in 0..settings.shards.max(1) {
        let (sender, receiver) = std::sync::mpsc::channel::<(Vec<ShardOp>, u64)>();
        let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let state = Arc::new(RwLock::new(ShardState::new(
            settings.clone(),
            program.clone(),
        )));
        let clock = settings.clock.clone();
        let (applied_sender, applied) = watch::channel(0u64);
        let (shard_state, shard_done) = (state.clone(), done.clone());
        std::thread::Builder::new()
            .name(format!("kairos-shard-{index}"))
            .spawn(move || {
                for (batch, upto) in receiver {
                    let now = clock.now();
                    {
                        let Ok(mut state) = shard_state.write() else {
                            return;
                        };
                        // Timers due before these events fire first.
                        state.advance(now);
                        for op in batch {
                            state.handle(op, now);
                        }
                    }
                    applied_sender.send_replace(upto);
                    shard_done.fetch_add(1, std::sync::atomic::Ordering::Release);
                }
            })?;
        handles.push(ShardHandle {
            sender,
            sent: 0,
            done,
        });
        views.push(ShardView { state, applied });
    }
    Ok((handles, views))
}

/// The router thread's side: the graph, the shards, operations not sent yet.
struct Routing {
    router: Arc<RwLock<Router>>,
    shards: Vec<ShardHandle>,
    outbox: Outbox,
    /// The router position the shards were last told about.
    flushed_upto: u64,
}

impl Routing {
    fn router(&self) -> std::sync::RwLockWriteGuard<'_, Router> {
        self.router.write().expect("router lock")
    }

    fn applied_seq(&self) -> u64 {
        self.router.read().expect("router lock").applied_seq()
    }

    /// Sends every queued operation, one batch per shard, with the router's
    /// position, so every shard's `applied` reaches it.
    fn flush(&mut self) {
        let upto = self.applied_seq();
        if self.outbox.is_empty() && upto == self.flushed_upto {
            return;
        }
        let mut batches: Vec<Vec<ShardOp>> = (0..self.shards.len()).map(|_| Vec::new()).collect();
        for (shard, op) in self.outbox.drain(..) {
            batches[shard].push(op);
        }
        for (handle, batch) in self.shards.iter_mut().zip(batches) {
            if handle.sender.send((batch, upto)).is_ok() {
                handle.sent += 1;
            }
        }
        self.flushed_upto = upto;
    }

    /// Sends every shard an empty batch, so each checks its timers.
    fn tick(&mut self) {
        self.flush();
        for handle in &mut self.shards {
            if handle.sender.send((Vec::new(), self.flushed_upto)).is_ok() {
                handle.sent += 1;
            }
        }
    }

    /// Waits while a shard is more than `ahead` batches behind.
    fn wait_for_shards(&self, ahead: u64) {
        for handle in &self.shards {
            while handle.sent > handle.done.load(std::sync::atomic::Ordering::Acquire) + ahead {
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
        }
    }
}

async fn run(
    store: Arc<Store>,
    mut routing: Routing,
    mut commands: mpsc::Receiver<Pending>,
    routed: watch::Sender<u64>,
) {
    // Subscribe before replaying, so no durable group falls between the two.
    let mut feed = store.writer.subscribe();
    if let Err(error) = catch_up(&store, &mut routing, store.writer.committed_seq()) {
        tracing::error!(%error, "engine stopped: the log could not be replayed");
        return;
    }
    let mut waiting: Vec<Pending> = Vec::new();
    let mut ticks = tokio::time::interval(TIMER_TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        waiting = answer_ready(&store, &mut routing, waiting);
        routing.flush();
        routed.send_replace(routing.flushed_upto);
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
            _ = ticks.tick() => routing.tick(),
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
    if first.seq > routing.applied_seq() + 1 {
        catch_up(store, routing, first.seq - 1)?;
    }
    for stored in events {
        if stored.seq > routing.applied_seq() {
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
    let event = Arc::new(stored.decode()?);
    let mut router = routing.router.write().expect("router lock");
    if !router.knows_source(&event.source_id) {
        let source = store.sources.get(&event.source_id);
        router.learn_source(
            &event.source_id,
            source.as_ref().map(|source| source.record.name.as_str()),
        );
    }
    router.route(event, &mut routing.outbox);
    Ok(())
}

fn catch_up(
    store: &Store,
    routing: &mut Routing,
    durable: u64,
) -> Result<(), kairos_store::StoreError> {
    while routing.applied_seq() < durable {
        let events =
            store
                .log
                .read_after(routing.applied_seq(), durable, READ_BATCH_EVENTS, None)?;
        if events.is_empty() {
            routing.router().skip_to(durable);
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

/// Carries out the commands whose events are routed; returns the rest.
fn answer_ready(store: &Store, routing: &mut Routing, waiting: Vec<Pending>) -> Vec<Pending> {
    let mut still_waiting = Vec::new();
    for pending in waiting {
        if pending.min_seq > routing.applied_seq() {
            still_waiting.push(pending);
            continue;
        }
        match pending.command {
            Command::Erase { identifier, reply } => erase(store, routing, &identifier, reply),
            Command::SetAudiences { program, reply } => {
                let replayed = backfill(store, routing, program).unwrap_or_else(|error| {
                    tracing::error!(%error, "audience backfill could not read the log");
                    0
                });
                let _ = reply.send(replayed);
            }
            Command::Sync { reply } => {
                routing.tick();
                routing.wait_for_shards(0);
                let _ = reply.send(());
            }
        }
    }
    still_waiting
}

/// Installs new audience definitions on every shard and replays the log's
/// track events into them, each to the profile its identifiers belong to
/// now. Live events wait meanwhile, so nothing is missed or seen twice.
fn backfill(
    store: &Store,
    routing: &mut Routing,
    program: Arc<Program>,
) -> Result<usize, kairos_store::StoreError> {
    for shard in 0..routing.shards.len() {
        routing.outbox.push((
            shard,
            ShardOp::SetAudiences {
                program: program.clone(),
            },
        ));
    }
    routing.flush();
    let upto = routing.applied_seq();
    let (mut after, mut replayed) = (0, 0);
    while after < upto {
        let events = store.log.read_after(after, upto, READ_BATCH_EVENTS, None)?;
        let Some(last) = events.last() else {
            break;
        };
        after = last.seq;
        {
            let router = routing.router.read().expect("router lock");
            for stored in &events {
                let event = stored.decode()?;
                if event.event.is_none() {
                    continue;
                }
                if let Some(profile) = router.current_profile(&event) {
                    routing.outbox.push((
                        router.shard_of(profile),
                        ShardOp::Backfill {
                            profile,
                            event: Arc::new(event),
                        },
                    ));
                    replayed += 1;
                }
            }
        }
        routing.tick();
        routing.wait_for_shards(1);
    }
    routing.wait_for_shards(0);
    Ok(replayed)
}

/// On the router, before the next event: nothing routed after this point
/// can bring the person back.
fn erase(
    store: &Store,
    routing: &mut Routing,
    identifier: &Identifier,
    reply: oneshot::Sender<Option<ErasedProfile>>,
) {
    let mut router = routing.router();
    let Some((profile, identities)) = router.erase(identifier) else {
        let _ = reply.send(None);
        return;
    };
    let subjects: Vec<_> = identities
        .iter()
        .map(|identity| store.vault.subject(identity))
        .collect();
    let applied_seq = router.applied_seq();
    store.privacy.suppress_now(&subjects, applied_seq);
    let shard = router.shard_of(profile);
    drop(router);
    let erased = ErasedProfile {
        profile_id: types::profile_key(profile),
        identities,
        events: 0,
        applied_seq,
    };
    routing.outbox.push((
        shard,
        ShardOp::Remove {
            profile,
            erased,
            reply,
        },
    ));
}
