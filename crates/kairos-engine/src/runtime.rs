//! The router thread: follows the log writer's live feed (the log itself
//! on start and when it falls behind), routes every event to the shards,
//! fires timers, and carries out the commands that must happen in order
//! with events (erasure, new audience definitions and their backfill).

use std::sync::{Arc, RwLock};

use kairos_core::audience::incremental::Program;
use kairos_core::identity::Identifier;
use kairos_store::Store;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::router::{Outbox, Router};
use crate::shard::{ShardOp, ShardState};
use crate::types::{self, EngineSettings, ErasedProfile};
use crate::{Command, Pending, ShardView};

/// Events read from the log per step.
pub(crate) const READ_BATCH_EVENTS: usize = 20_000;
/// Batches a shard may have queued before the router waits for it (bounds
/// memory during replay; channels are unbounded so a merge's two halves
/// can never block each other).
pub(crate) const SHARD_BATCHES_AHEAD_MAX: u64 = 8;
/// How often shards check their timers against the clock.
pub(crate) const TIMER_TICK: std::time::Duration = std::time::Duration::from_millis(200);

/// One shard thread, as the router sees it.
pub(crate) struct ShardHandle {
    pub(crate) sender: std::sync::mpsc::Sender<(Vec<ShardOp>, u64)>,
    pub(crate) sent: u64,
    /// Batches finished.
    pub(crate) done: Arc<std::sync::atomic::AtomicU64>,
}

/// The audiences and computed traits stored in the data directory,
/// compiled. A definition that no longer parses is left out (and logged),
/// not fatal.
pub(crate) fn stored_audiences(store: &Store) -> Program {
    use kairos_core::audience::{parse, parse_value};
    use kairos_store::DefinitionKind;
    let mut audiences = Vec::new();
    for record in store.definitions.list(DefinitionKind::Audience) {
        match parse(&record.definition) {
            Ok(expr) => audiences.push((record.name, expr)),
            Err(error) => {
                tracing::error!(audience = %record.name, %error, "stored audience does not parse; left out")
            }
        }
    }
    let mut computed = Vec::new();
    for record in store.definitions.list(DefinitionKind::ComputedTrait) {
        match parse_value(&record.definition) {
            Ok(expr) => computed.push((record.name, expr)),
            Err(error) => {
                tracing::error!(computed_trait = %record.name, %error, "stored computed trait does not parse; left out")
            }
        }
    }
    Program::compile_all(&audiences, &computed).unwrap_or_else(|error| {
        tracing::error!(%error, "stored definitions do not compile together; none are active");
        Program::compile(&[]).expect("no definitions compile")
    })
}

/// The shard threads: the router's senders, the readers' views, and the
/// threads' handles for whoever stops them (threads.rs).
pub(crate) struct StartedShards {
    pub(crate) handles: Vec<ShardHandle>,
    pub(crate) views: Vec<ShardView>,
    pub(crate) threads: Vec<std::thread::JoinHandle<()>>,
}

/// Starts the shard threads, holding a checkpoint's parts if one was
/// restored (`restored`: the parts, whether to re-score, the position).
pub(crate) fn start_shards(
    settings: &Arc<EngineSettings>,
    program: &Arc<Program>,
    announcer: Option<crate::announcer::Announcer>,
    restored: Option<(Vec<crate::checkpoint::ShardPart>, bool, u64)>,
) -> std::io::Result<StartedShards> {
    let mut handles = Vec::new();
    let mut views = Vec::new();
    let mut threads = Vec::new();
    let (mut parts, rescore, restored_seq) = match restored {
        Some((parts, rescore, seq)) => (Some(parts.into_iter()), rescore, seq),
        None => (None, false, 0),
    };
    for index in 0..settings.shards.max(1) {
        let (sender, receiver) = std::sync::mpsc::channel::<(Vec<ShardOp>, u64)>();
        let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let part = parts.as_mut().and_then(Iterator::next);
        let shard = match part {
            Some(part) => {
                let mut shard = ShardState::restore(settings.clone(), program.clone(), part);
                if rescore {
                    shard.rescore_all(settings.clock.now());
                }
                if let Some(announcer) = &announcer {
                    shard.restored_announce_to(announcer.clone());
                }
                shard
            }
            None => {
                let mut shard = ShardState::new(settings.clone(), program.clone());
                if let Some(announcer) = &announcer {
                    shard.announce_to(announcer.clone());
                }
                shard
            }
        };
        let state = Arc::new(RwLock::new(shard));
        let clock = settings.clock.clone();
        let (applied_sender, applied) = watch::channel(restored_seq);
        let (shard_state, shard_done) = (state.clone(), done.clone());
        let effects = settings.effects.clone();
        let thread = std::thread::Builder::new()
            .name(format!("kairos-shard-{index}"))
            .spawn(move || {
                let mut last_slice = std::time::Instant::now();
                while let Some((batch, upto)) = next_batch(&receiver, &shard_state, &mut last_slice)
                {
                    let now = clock.now();
                    let inputs = {
                        let Ok(mut state) = shard_state.write() else {
                            return;
                        };
                        state.begin_batch();
                        // Timers due before these events fire first.
                        state.advance(now);
                        for op in batch {
                            state.handle(op, now);
                        }
                        state.take_effect_inputs()
                    };
                    applied_sender.send_replace(upto);
                    if let Some(effects) = &effects {
                        // Every batch, even an empty one, tells the stage
                        // how far this shard is. Waits while the stage is
                        // behind (bounded); a stopped stage is not waited on.
                        let output = crate::effects_feed::ShardOutput {
                            shard: index,
                            inputs,
                            through: upto,
                        };
                        let _ = effects.sender.blocking_send(output);
                    }
                    shard_done.fetch_add(1, std::sync::atomic::Ordering::Release);
                }
                // Stopping: a checkpoint part still being encoded is
                // completed (a clean stop's checkpoint waits for it).
                if let Ok(mut state) = shard_state.write() {
                    state.finish_checkpoint_part();
                }
            })?;
        handles.push(ShardHandle {
            sender,
            sent: 0,
            done,
        });
        views.push(ShardView { state, applied });
        threads.push(thread);
    }
    Ok(StartedShards {
        handles,
        views,
        threads,
    })
}

/// A shard's next batch. While a checkpoint part is being encoded, slices
/// of it are encoded continuously while no batch waits, and one slice per
/// [`crate::shard_checkpoint::ENCODE_EVERY`] while batches do — so the
/// part completes under any load without the shard falling behind.
fn next_batch(
    receiver: &std::sync::mpsc::Receiver<(Vec<ShardOp>, u64)>,
    state: &RwLock<ShardState>,
    last_slice: &mut std::time::Instant,
) -> Option<(Vec<ShardOp>, u64)> {
    use std::sync::mpsc::TryRecvError;
    let encode = |last_slice: &mut std::time::Instant| {
        *last_slice = std::time::Instant::now();
        state.write().is_ok_and(|mut state| {
            state.continue_checkpoint_part(crate::shard_checkpoint::ENCODE_SLICE)
        })
    };
    loop {
        match receiver.try_recv() {
            Ok(next) => {
                if last_slice.elapsed() >= crate::shard_checkpoint::ENCODE_EVERY {
                    encode(last_slice);
                }
                return Some(next);
            }
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) => {
                if !encode(last_slice) {
                    return receiver.recv().ok();
                }
            }
        }
    }
}

/// The router thread's side: the graph, the shards, operations not sent yet.
pub(crate) struct Routing {
    pub(crate) router: Arc<RwLock<Router>>,
    pub(crate) shards: Vec<ShardHandle>,
    pub(crate) outbox: Outbox,
    /// The router position the shards were last told about.
    pub(crate) flushed_upto: u64,
    pub(crate) settings: Arc<EngineSettings>,
    /// The definitions the shards hold (a checkpoint records which).
    pub(crate) program: Arc<Program>,
    pub(crate) announcer: Option<crate::announcer::Announcer>,
    /// The position of the last checkpoint taken (or restored).
    pub(crate) checkpointed_seq: u64,
    /// The models every profile was scored with: those served at start
    /// (a replay, or a restore re-scores with them). Models served later
    /// score a person at their next event only, so a checkpoint records
    /// these and a restore re-scores unless they are served.
    pub(crate) scored_under: Vec<(String, u32)>,
    /// Set while a periodic checkpoint is being written: one at a time.
    pub(crate) checkpoint_running: Arc<std::sync::atomic::AtomicBool>,
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

    /// Tells every shard it is caught up: it announces what changed since
    /// the last announcements and every change from now on.
    fn go_live(&mut self) {
        for shard in 0..self.shards.len() {
            self.outbox.push((shard, ShardOp::GoLive));
        }
        self.flush();
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

    /// Starts a checkpoint when enough of the log was routed since the last
    /// one and none is being written.
    fn checkpoint_if_due(&mut self, store: &Arc<Store>) {
        use std::sync::atomic::Ordering;
        let every = self.settings.checkpoint_every_events;
        if every == 0
            || self.applied_seq() < self.checkpointed_seq + every
            || self.checkpoint_running.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let finishing = self.checkpoint(store);
        let running = self.checkpoint_running.clone();
        tokio::spawn(async move {
            if let Err(error) = finishing.await {
                tracing::error!(%error, "checkpoint not written");
            }
            running.store(false, Ordering::Release);
        });
    }

    /// Captures the state at the router's position, here and on every
    /// shard (in the global order); the future writes it.
    pub(crate) fn checkpoint(
        &mut self,
        store: &Arc<Store>,
    ) -> impl std::future::Future<Output = Result<u64, crate::EngineError>> + use<> {
        let started = std::time::Instant::now();
        let seq = self.applied_seq();
        let generation = store.checkpoints.begin();
        let mut replies = Vec::new();
        for shard in 0..self.shards.len() {
            let (reply, receiver) = std::sync::mpsc::channel();
            self.outbox.push((shard, ShardOp::Checkpoint { reply }));
            replies.push(receiver);
        }
        self.flush();
        let now = self.settings.clock.now();
        let header = crate::checkpoint::header(
            store,
            &self.settings,
            &self.program,
            seq,
            now,
            self.scored_under.clone(),
        );
        let router_part = self
            .router
            .read()
            .expect("router lock")
            .checkpoint_part(header);
        self.checkpointed_seq = seq;
        tracing::debug!(
            seq,
            took_ms = started.elapsed().as_millis() as u64,
            "state captured"
        );
        let (store, announcer) = (store.clone(), self.announcer.clone());
        let effects = self
            .settings
            .effects
            .as_ref()
            .map(|link| link.committed.clone());
        async move {
            // The shards encode their parts between batches; the router
            // routes on meanwhile.
            let shard_parts = tokio::task::spawn_blocking(move || {
                replies
                    .into_iter()
                    // A shard that stopped makes no checkpoint.
                    .map(|receiver| receiver.recv().unwrap_or_default())
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default();
            if shard_parts.is_empty() || shard_parts.iter().any(Vec::is_empty) {
                return Err(crate::EngineError::Stopped); // a shard stopped
            }
            let mut parts = vec![router_part];
            parts.extend(shard_parts);
            // Every announcement of a change up to `seq` was sent before a
            // shard took the operation, so before it sent its part: these
            // (and perhaps a few later ones) must be durable first.
            let announced = announcer
                .as_ref()
                .map_or(0, |announcer| announcer.sent_count());
            let after = crate::checkpoint::After {
                announced,
                effects_through: effects.map(|committed| (committed, seq)),
            };
            crate::checkpoint::finish(store, announcer, after, generation, parts).await?;
            Ok(seq)
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

pub(crate) async fn run(
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
    routing.go_live();
    routing.checkpoint_if_due(&store);
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
                routing.checkpoint_if_due(&store);
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
pub(crate) fn follow(
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

pub(crate) fn route(
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
            source
                .as_ref()
                .is_some_and(|source| source.record.trust == kairos_store::SourceTrust::Client),
        );
    }
    router.route(event, &mut routing.outbox);
    Ok(())
}

pub(crate) fn catch_up(
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
pub(crate) fn answer_ready(
    store: &Arc<Store>,
    routing: &mut Routing,
    waiting: Vec<Pending>,
) -> Vec<Pending> {
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
            Command::Checkpoint { reply } => {
                let finishing = routing.checkpoint(store);
                tokio::spawn(async move {
                    let _ = reply.send(finishing.await);
                });
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
pub(crate) fn backfill(
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
    routing.program = program.clone();
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
    routing.go_live();
    routing.wait_for_shards(0);
    Ok(replayed)
}

/// On the router, before the next event: nothing routed after this point
/// can bring the person back.
pub(crate) fn erase(
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
