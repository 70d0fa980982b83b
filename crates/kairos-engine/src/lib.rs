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
//! start the engine restores its newest checkpoint ([`checkpoint`]) and
//! replays the log after it; events of erased people can no longer be read
//! and identifiers they held are suppressed ([`kairos_store::privacy`]).

pub mod announcer;
mod checkpoint;
pub mod effects_feed;
mod preview;
pub mod recommend;
mod router;
mod runtime;
mod shard;
mod shard_checkpoint;
mod state;
mod threads;
mod types;

use std::sync::{Arc, RwLock};

use kairos_core::identity::graph::ProfileId;
use kairos_core::identity::{Identifier, IdentityRules};
use kairos_store::Store;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot, watch};

use kairos_core::audience::incremental::Program;
use router::Router;
use runtime::{Routing, run, start_shards, stored_audiences};
use shard::ShardState;

pub use preview::{AudiencePreview, Draft};
pub use state::EngineState;
pub use threads::{STAGE_STOP_MAX, join_within};
pub use types::{
    CHECKPOINT_EVERY_EVENTS, EngineSettings, ErasedProfile, MatchCandidate, ProfileExport,
    ProfileView, SuppressionCheck, TimelinePage,
};

/// Erasures that may wait for the router.
const COMMANDS_QUEUED_MAX: usize = 256;
/// A read that finds its profile moved by a merge between looking it up and
/// reading it looks again, this many times.
const READ_ATTEMPTS_MAX: usize = 4;

/// Work that must happen on the router thread, in order with events.
pub(crate) enum Command {
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
    /// Take a checkpoint now; replies once it is written (its position).
    Checkpoint {
        reply: oneshot::Sender<Result<u64, EngineError>>,
    },
    /// Fire every due timer now (after a manual clock moved), then reply.
    Sync { reply: oneshot::Sender<()> },
}

/// A command waiting until the router has routed the log up to `min_seq`.
pub(crate) struct Pending {
    min_seq: u64,
    command: Command,
}

/// A shard as readers see it.
#[derive(Clone)]
pub(crate) struct ShardView {
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
    announcer: announcer::Announcer,
    models: types::ModelHandle,
    /// The log position of the checkpoint this start restored, if any.
    restored_from: Option<u64>,
    /// The feed to the effects stage, if one is connected.
    effects: Option<effects_feed::EffectsLink>,
    /// The threads, until [`Engine::stop`] takes them (any handle may).
    threads: Arc<std::sync::Mutex<Option<threads::EngineThreads>>>,
    /// The live recommender the router feeds.
    recommender: Arc<RwLock<kairos_recommend::Recommender>>,
    /// The item catalog and the rules recommendations are made under.
    shelf: Arc<recommend::Shelf>,
    /// `[recommendations] enabled`.
    recommendations_on: bool,
}

/// Recommendations for one request.
#[derive(Debug)]
pub struct Recommended {
    /// Whether the recommender knows anything of the person.
    pub known: bool,
    pub items: Vec<kairos_recommend::Recommendation>,
}

/// Why the engine could not answer; [`EngineError::kind`] says what a
/// caller can do about it. A caller must never read an error as "no
/// profile" or "no members": it retries or reports it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The engine's threads have ended (shutdown, or a panic).
    #[error("the engine has stopped")]
    Stopped,
    /// Its command queue is full; the same request later will be taken.
    #[error("the engine is busy (its command queue is full); retry shortly")]
    Overloaded,
    /// The person is between two shards (a merge in flight) for a read that
    /// does not wait; the same read shortly will find them.
    #[error("the profile is being merged; retry shortly")]
    Settling,
    /// Reading the log failed (previews read the whole log).
    #[error(transparent)]
    Store(#[from] kairos_store::StoreError),
    /// Recommendations are switched off (`[recommendations] enabled =
    /// false`): nothing learns from the events.
    #[error(
        "recommendations are off: set `[recommendations] enabled = true` (or KAIROS_RECOMMENDATIONS_ENABLED=true) and restart; the log is replayed so they learn from every event"
    )]
    RecommendationsOff,
}

impl EngineError {
    pub fn kind(&self) -> kairos_core::error::ErrorKind {
        use kairos_core::error::ErrorKind;
        match self {
            EngineError::Stopped => ErrorKind::Stopped,
            EngineError::Overloaded | EngineError::Settling => ErrorKind::Overloaded,
            EngineError::Store(error) => error.kind(),
            EngineError::RecommendationsOff => ErrorKind::Conflict,
        }
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
        let (announcer, announcer_thread) =
            announcer::start(store.clone(), rules.clone(), settings.clock.clone())?;
        let recommender = router.read().expect("router lock").recommender();
        let store_for_shelf = store.clone();
        let restored = checkpoint::load(&store, &settings, &program);
        let restored_seq = restored
            .as_ref()
            .map_or(0, |restored| restored.router.header.seq);
        let shard_parts = restored.map(|restored| {
            let rescore = restored.rescore;
            router
                .write()
                .expect("router lock")
                .restore(restored.router);
            (restored.shards, rescore, restored_seq)
        });
        let runtime::StartedShards {
            handles,
            views: shards,
            threads: shard_threads,
        } = start_shards(&settings, &program, Some(announcer.clone()), shard_parts)?;
        let (commands, receiver) = mpsc::channel(COMMANDS_QUEUED_MAX);
        let (routed_sender, routed) = watch::channel(restored_seq);
        let routing = Routing {
            router: router.clone(),
            shards: handles,
            outbox: Vec::new(),
            flushed_upto: restored_seq,
            settings: settings.clone(),
            program: program.clone(),
            announcer: Some(announcer.clone()),
            checkpointed_seq: restored_seq,
            scored_under: checkpoint::served_models(&settings),
            checkpoint_running: Default::default(),
        };
        let worker_store = store.clone();
        let (stop, stopped) = watch::channel(false);
        let router_thread = std::thread::Builder::new()
            .name("kairos-engine".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("engine runtime");
                let work = run(worker_store, routing, receiver, routed_sender);
                runtime.block_on(threads::until_stopped(work, stopped));
            })?;
        let threads = threads::EngineThreads {
            router: threads::Stoppable {
                stop,
                handle: router_thread,
            },
            shards: shard_threads,
            announcer: announcer_thread,
        };
        Ok(Engine {
            commands,
            store,
            router,
            routed,
            shards,
            rules,
            clock: settings.clock.clone(),
            announcer,
            models: settings.models.clone(),
            restored_from: (restored_seq > 0).then_some(restored_seq),
            effects: settings.effects.clone(),
            threads: Arc::new(std::sync::Mutex::new(Some(threads))),
            recommender,
            shelf: Arc::new(recommend::Shelf::load(&store_for_shelf)),
            recommendations_on: settings.recommendations,
        })
    }

    /// Stops the router, then the shards, then the announcer once what
    /// they announced is durable (threads.rs), each stage within
    /// [`STAGE_STOP_MAX`]; blocks. Reads answer [`EngineError::Stopped`]
    /// afterwards. Returns whether every thread ended in time; a second
    /// call does nothing.
    pub fn stop(&self) -> bool {
        let taken = self.threads.lock().ok().and_then(|mut slot| slot.take());
        let Some(threads) = taken else {
            return true;
        };
        threads.stop(|| self.announcer.is_flushed())
    }

    /// Evaluates a draft audience or computed trait for every profile at the engine's
    /// "now", from the stored history, without saving anything: the
    /// reference evaluation (`audience::eval`) over each profile's events
    /// read from the log. Costs a read of the whole log.
    pub async fn preview(
        &self,
        draft: Draft,
        sample: usize,
    ) -> Result<AudiencePreview, EngineError> {
        self.caught_up().await?;
        let (store, router, shards) =
            (self.store.clone(), self.router.clone(), self.shards.clone());
        let now = self.clock.now();
        tokio::task::spawn_blocking(move || {
            preview::preview(&store, &router, &shards, &draft, now, sample)
        })
        .await
        .map_err(|_| EngineError::Stopped)?
        .map_err(EngineError::Store)
    }

    /// Serves these model versions from the next event of each person on
    /// (scores are recomputed as their events arrive; a restart recomputes
    /// them all from the log).
    pub fn set_models(&self, models: kairos_models::ModelSet) {
        if let Ok(mut served) = self.models.write() {
            let previous = std::mem::replace(&mut *served, Arc::new(models));
            // A shard may be scoring with the previous set right now.
            previous.stop_removed(&served);
        }
    }

    /// Takes a checkpoint of everything routed so far and waits until it is
    /// written (at clean shutdown, and after an erasure so no checkpoint
    /// holds the person); answers its log position.
    pub async fn checkpoint(&self) -> Result<u64, EngineError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Pending {
                min_seq: self.store.writer.committed_seq(),
                command: Command::Checkpoint { reply },
            })
            .await
            .map_err(|_| EngineError::Stopped)?;
        answer.await.map_err(|_| EngineError::Stopped)?
    }

    /// After an erasure: a fresh checkpoint without the person replaces the
    /// older ones; if none can be written, every checkpoint is deleted (the
    /// next start replays the log, where the person is unreadable).
    pub async fn checkpoint_without_erased(&self) -> Result<(), kairos_store::StoreError> {
        match self.checkpoint().await {
            Ok(_) => return Ok(()),
            Err(error) => {
                tracing::error!(%error, "no checkpoint after an erasure; deleting them all")
            }
        }
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.checkpoints.delete_all().map(|_| ()))
            .await
            .unwrap_or(Ok(()))
    }

    /// The log position of the checkpoint this start restored (`None`: it
    /// replayed the whole log).
    pub fn restored_from(&self) -> Option<u64> {
        self.restored_from
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
    async fn caught_up(&self) -> Result<(), EngineError> {
        let durable = self.store.writer.committed_seq();
        let mut routed = self.routed.clone();
        routed
            .wait_for(|seq| *seq >= durable)
            .await
            .map(|_| ())
            .map_err(|_| EngineError::Stopped)
    }

    /// Reads the profile of `identifier` on its shard once that shard has
    /// applied everything the lookup saw.
    async fn read_profile<T>(
        &self,
        identifier: &Identifier,
        read: impl Fn(&ShardState, ProfileId) -> Option<T>,
    ) -> Result<Option<T>, EngineError> {
        self.caught_up().await?;
        for _ in 0..READ_ATTEMPTS_MAX {
            let (profile, seen) = {
                let router = self.router.read().map_err(|_| EngineError::Stopped)?;
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
                .map_err(|_| EngineError::Stopped)?;
            let answer = {
                let state = shard.state.read().map_err(|_| EngineError::Stopped)?;
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
    ) -> Result<Vec<T>, EngineError> {
        self.caught_up().await?;
        let seen = self
            .router
            .read()
            .map_err(|_| EngineError::Stopped)?
            .applied_seq();
        let mut found = Vec::new();
        for shard in &self.shards {
            let mut applied = shard.applied.clone();
            applied
                .wait_for(|seq| *seq >= seen)
                .await
                .map_err(|_| EngineError::Stopped)?;
            let state = shard.state.read().map_err(|_| EngineError::Stopped)?;
            found.extend(read(&state));
        }
        Ok(found)
    }

    /// Reads the profile of `identifier` as its shard holds it now,
    /// without waiting for the shard to apply what is durable: the effects
    /// stage's reads (the shards may be waiting on the stage, so it must
    /// never wait on them). `None`: nobody is known by it.
    fn read_profile_now<T>(
        &self,
        identifier: &Identifier,
        read: impl Fn(&ShardState, ProfileId) -> Option<T>,
    ) -> Result<Option<T>, EngineError> {
        let profile = {
            let router = self.router.read().map_err(|_| EngineError::Stopped)?;
            router.lookup(identifier)
        };
        let Some(profile) = profile else {
            return Ok(None);
        };
        let shard = &self.shards[(profile % self.shards.len() as u64) as usize];
        let state = shard.state.read().map_err(|_| EngineError::Stopped)?;
        match read(&state, profile) {
            Some(answer) => Ok(Some(answer)),
            None => Err(EngineError::Settling),
        }
    }

    /// The profile as its shard holds it now (see [`Engine::profile`] for a
    /// read that reflects every acknowledged event).
    pub fn profile_now(&self, identifier: &Identifier) -> Result<Option<ProfileView>, EngineError> {
        self.read_profile_now(identifier, |shard, profile| shard.view(profile))
    }

    /// The timeline as its shard holds it now.
    pub fn timeline_now(
        &self,
        identifier: &Identifier,
        before_seq: Option<u64>,
        limit: usize,
    ) -> Result<Option<TimelinePage>, EngineError> {
        let now = self.clock.now();
        self.read_profile_now(identifier, |shard, profile| {
            shard.timeline(profile, before_seq, limit, now)
        })
    }

    /// How many profile shards there are (each hands the effects stage its
    /// own batches).
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Adds event names the effects stage acts on; see
    /// [`effects_feed::EffectsLink::widen`]. Nothing without a stage.
    pub fn widen_effects_interest(&self, names: impl IntoIterator<Item = String>) {
        if let Some(link) = &self.effects {
            link.widen(names);
        }
    }

    /// Recommendations for the person `identifier` names (`None`: anyone)
    /// once the router has applied every event acknowledged before the
    /// call: a click a moment ago is in them.
    pub async fn recommend(
        &self,
        identifier: Option<&Identifier>,
        ask: &kairos_recommend::Query,
    ) -> Result<Recommended, EngineError> {
        self.caught_up().await?;
        self.recommend_now(identifier, ask)
    }

    /// Recommendations from what the router has applied now, without
    /// waiting (journeys' templates, on the effects stage, which must never
    /// wait on the engine).
    pub fn recommend_now(
        &self,
        identifier: Option<&Identifier>,
        ask: &kairos_recommend::Query,
    ) -> Result<Recommended, EngineError> {
        if !self.recommendations_on {
            return Err(EngineError::RecommendationsOff);
        }
        let person = match identifier {
            Some(identifier) => self
                .router
                .read()
                .map_err(|_| EngineError::Stopped)?
                .lookup(identifier),
            None => None,
        };
        let now = self.clock.now();
        let catalog = self.shelf.catalog();
        let weight = |item: &kairos_recommend::Item| self.shelf.weight(item, now);
        let inputs = kairos_recommend::Inputs {
            catalog: &catalog,
            weight: &weight,
            now_ms: now.as_millisecond(),
        };
        let recommender = self.recommender.read().map_err(|_| EngineError::Stopped)?;
        Ok(Recommended {
            known: person.is_some_and(|person| recommender.knows(person)),
            items: recommender.recommend(person, ask, &inputs),
        })
    }

    /// The item catalog and the boost and bury rules.
    pub fn shelf(&self) -> &recommend::Shelf {
        &self.shelf
    }

    /// The recommender's sizes (metrics).
    pub fn recommender_stats(&self) -> Option<kairos_recommend::Stats> {
        self.recommender
            .read()
            .ok()
            .map(|recommender| recommender.stats())
    }

    pub async fn profile(
        &self,
        identifier: Identifier,
    ) -> Result<Option<ProfileView>, EngineError> {
        self.read_profile(&identifier, |shard, profile| shard.view(profile))
            .await
    }

    pub async fn timeline(
        &self,
        identifier: Identifier,
        before_seq: Option<u64>,
        limit: usize,
    ) -> Result<Option<TimelinePage>, EngineError> {
        let now = self.clock.now();
        self.read_profile(&identifier, |shard, profile| {
            shard.timeline(profile, before_seq, limit, now)
        })
        .await
    }

    /// Everything held about a person: profile and timeline positions.
    pub async fn export(
        &self,
        identifier: Identifier,
    ) -> Result<Option<ProfileExport>, EngineError> {
        self.read_profile(&identifier, |shard, profile| shard.export(profile))
            .await
    }

    /// Profiles whose trait `trait_name` equals `value` (as text).
    pub async fn search(
        &self,
        trait_name: String,
        value: String,
        limit: usize,
    ) -> Result<Vec<ProfileView>, EngineError> {
        let mut found = self
            .read_all(|shard| shard.search(&trait_name, &value, limit))
            .await?;
        found.sort_by_key(types::by_profile_number);
        found.truncate(limit);
        Ok(found)
    }

    /// Every profile's event positions in log order, sorted by profile id.
    pub async fn histories(&self) -> Result<Vec<(String, Vec<u64>)>, EngineError> {
        let mut histories = self.read_all(ShardState::histories).await?;
        histories.sort_by(|a, b| (a.0.len(), &a.0).cmp(&(b.0.len(), &b.0)));
        Ok(histories)
    }

    /// Every profile the probabilistic matcher can compare.
    pub async fn match_candidates(&self) -> Result<Vec<MatchCandidate>, EngineError> {
        let mut candidates = self.read_all(ShardState::match_candidates).await?;
        candidates
            .sort_by_key(|candidate| (candidate.profile_id.len(), candidate.profile_id.clone()));
        Ok(candidates)
    }

    /// Replaces the audience definitions; answers once every membership
    /// is recomputed from the log (the number of events replayed).
    pub async fn set_audiences(&self, program: Program) -> Result<usize, EngineError> {
        let (reply, answer) = oneshot::channel();
        self.command(Command::SetAudiences {
            program: Arc::new(program),
            reply,
        })?;
        let replayed = answer.await.map_err(|_| EngineError::Stopped)?;
        self.announcer.flushed().await;
        Ok(replayed)
    }

    /// Fires every timer due by the clock's now; answers when done and the
    /// membership changes they made are announced (durable in the log).
    pub async fn sync_timers(&self) -> Result<(), EngineError> {
        let (reply, answer) = oneshot::channel();
        self.command(Command::Sync { reply })?;
        answer.await.map_err(|_| EngineError::Stopped)?;
        self.announcer.flushed().await;
        Ok(())
    }

    /// Counts of the audience work done since start (for metrics).
    pub fn counters(&self) -> &announcer::EngineCounters {
        &self.announcer.counters
    }

    /// Waits until every membership change made so far is announced.
    pub async fn announcements_flushed(&self) {
        self.announcer.flushed().await;
    }

    /// Members of an audience after profile `after` (profile order), with
    /// their identities.
    pub async fn audience_members(
        &self,
        audience: &str,
        after: Option<ProfileId>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<Identifier>)>, EngineError> {
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

    /// Profiles with a value of a computed trait after profile `after`
    /// (profile order): id, identities, value.
    pub async fn computed_values(
        &self,
        name: &str,
        after: Option<ProfileId>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<Identifier>, serde_json::Value)>, EngineError> {
        let mut found = self
            .read_all(|shard| {
                let mut values = shard.computed_values(name);
                values.retain(|(profile, _)| after.is_none_or(|after| *profile > after));
                values.truncate(limit);
                values
                    .into_iter()
                    .map(|(profile, value)| {
                        let identities = shard.identities(profile).unwrap_or(&[]).to_vec();
                        (profile, identities, value)
                    })
                    .collect()
            })
            .await?;
        found.sort_by_key(|(profile, _, _)| *profile);
        found.truncate(limit);
        Ok(found
            .into_iter()
            .map(|(profile, identities, value)| (types::profile_key(profile), identities, value))
            .collect())
    }

    /// Number of members of each audience.
    pub async fn audience_sizes(&self, audiences: &[String]) -> Result<Vec<usize>, EngineError> {
        let counts = self
            .read_all(|shard| {
                audiences
                    .iter()
                    .map(|audience| shard.audience_size(audience))
                    .collect::<Vec<usize>>()
            })
            .await?;
        let mut sizes = vec![0; audiences.len()];
        for (index, count) in counts.into_iter().enumerate() {
            sizes[index % audiences.len().max(1)] += count;
        }
        Ok(sizes)
    }

    fn command(&self, command: Command) -> Result<(), EngineError> {
        let min_seq = self.store.writer.committed_seq();
        self.commands
            .try_send(Pending { min_seq, command })
            .map_err(|error| match error {
                TrySendError::Full(_) => EngineError::Overloaded,
                TrySendError::Closed(_) => EngineError::Stopped,
            })
    }

    /// Removes a person from the derived state and suppresses their
    /// identifiers in memory; the caller makes it durable with
    /// [`kairos_store::LogWriter::erase`].
    pub async fn erase(
        &self,
        identifier: Identifier,
    ) -> Result<Option<ErasedProfile>, EngineError> {
        let (reply, answer) = oneshot::channel();
        self.command(Command::Erase { identifier, reply })?;
        answer.await.map_err(|_| EngineError::Stopped)
    }
}
