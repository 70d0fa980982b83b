//! The engine: derived state, kept current by following the log.
//!
//! One engine thread takes every durable event in log order (from the log
//! writer's live feed; from the log itself on start and whenever it falls
//! behind), resolves its
//! identifiers to a profile ([`kairos_core::identity`]) and applies it to
//! that profile ([`kairos_core::profile`]). Reads (the profile API) are
//! commands to the same thread, so there are no locks on the hot path and a
//! read waits until every event acknowledged before it has been applied —
//! an answer always reflects the events accepted a moment earlier.
//!
//! State is a pure function of the log (and the erasures made since): on
//! start the engine replays it from the beginning; events of erased people
//! can no longer be read and identifiers they held are suppressed
//! ([`kairos_store::privacy`]). (Checkpoints and shards per partition set
//! are the next steps; see docs/architecture.md.)

mod state;

use std::sync::Arc;

use kairos_core::identity::{Identifier, IdentityRules};
use kairos_store::Store;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

pub use state::{
    EngineSettings, EngineState, ErasedProfile, MatchCandidate, ProfileExport, ProfileView,
    SuppressionCheck, TimelinePage,
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

async fn run(
    store: Arc<Store>,
    settings: EngineSettings,
    mut commands: mpsc::Receiver<Pending>,
    applied: watch::Sender<u64>,
) {
    let mut state = EngineState::new(settings).with_suppression(SuppressionCheck {
        vault: store.vault.clone(),
        privacy: store.privacy.clone(),
    });
    // Subscribe before replaying, so no durable group falls between the two.
    let mut feed = store.writer.subscribe();
    if let Err(error) = catch_up(&store, &mut state, store.writer.committed_seq()) {
        tracing::error!(%error, "engine stopped: the log could not be replayed");
        return;
    }
    let mut waiting: Vec<Pending> = Vec::new();
    loop {
        applied.send_replace(state.applied_seq());
        waiting = answer_ready(&store, &mut state, waiting);
        tokio::select! {
            group = feed.recv() => {
                let result = match group {
                    Ok(events) => follow(&store, &mut state, &events),
                    // Fell behind the live feed: the log has everything.
                    Err(broadcast::error::RecvError::Lagged(_)) => catch_up(&store, &mut state, store.writer.committed_seq()),
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                if let Err(error) = result {
                    tracing::error!(%error, "engine stopped: the log could not be read");
                    return;
                }
            }
            command = commands.recv() => match command {
                Some(command) => waiting.push(command),
                None => return,
            },
        }
    }
}

/// Applies one durable group from the live feed; reads the log first if
/// events before the group have not been applied yet.
fn follow(
    store: &Store,
    state: &mut EngineState,
    events: &[kairos_store::log::StoredEvent],
) -> Result<(), kairos_store::StoreError> {
    let Some(first) = events.first() else {
        return Ok(());
    };
    if first.seq > state.applied_seq() + 1 {
        catch_up(store, state, first.seq - 1)?;
    }
    for stored in events {
        if stored.seq > state.applied_seq() {
            apply(store, state, stored)?;
        }
    }
    Ok(())
}

fn apply(
    store: &Store,
    state: &mut EngineState,
    stored: &kairos_store::log::StoredEvent,
) -> Result<(), kairos_store::StoreError> {
    let event = stored.decode()?;
    if !state.knows_source(&event.source_id) {
        let source = store.sources.get(&event.source_id);
        state.learn_source(
            &event.source_id,
            source.as_ref().map(|source| source.record.name.as_str()),
        );
    }
    state.apply(&event);
    Ok(())
}

fn catch_up(
    store: &Store,
    state: &mut EngineState,
    durable: u64,
) -> Result<(), kairos_store::StoreError> {
    while state.applied_seq() < durable {
        let events = store
            .log
            .read_after(state.applied_seq(), durable, READ_BATCH_EVENTS, None)?;
        if events.is_empty() {
            state.skip_to(durable);
            break;
        }
        for stored in &events {
            apply(store, state, stored)?;
        }
    }
    Ok(())
}

/// Answers the commands whose events are applied; returns the rest.
fn answer_ready(store: &Store, state: &mut EngineState, waiting: Vec<Pending>) -> Vec<Pending> {
    let mut still_waiting = Vec::new();
    for pending in waiting {
        if pending.min_seq > state.applied_seq() {
            still_waiting.push(pending);
            continue;
        }
        match pending.command {
            Command::Profile { identifier, reply } => {
                let _ = reply.send(state.profile_view(&identifier));
            }
            Command::Search {
                trait_name,
                value,
                limit,
                reply,
            } => {
                let _ = reply.send(state.search(&trait_name, &value, limit));
            }
            Command::Timeline {
                identifier,
                before_seq,
                limit,
                reply,
            } => {
                let _ = reply.send(state.timeline(&identifier, before_seq, limit));
            }
            Command::Export { identifier, reply } => {
                let _ = reply.send(state.export(&identifier));
            }
            Command::MatchCandidates { reply } => {
                let _ = reply.send(state.match_candidates());
            }
            Command::Erase { identifier, reply } => {
                let erased = state.erase(&identifier);
                if let Some(erased) = &erased {
                    // On the engine thread, before the next event: nothing
                    // applied after this point can bring the person back.
                    let subjects: Vec<_> = erased
                        .identities
                        .iter()
                        .map(|identity| store.vault.subject(identity))
                        .collect();
                    store.privacy.suppress_now(&subjects, erased.applied_seq);
                }
                let _ = reply.send(erased);
            }
        }
    }
    still_waiting
}
