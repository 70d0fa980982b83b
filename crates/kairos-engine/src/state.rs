//! The whole engine on one thread — the router and every shard, operations
//! applied in their global order as soon as they are made. Used by tests
//! (the threaded engine must give the same profiles) and the in-process
//! benchmark. Replaying the same log gives the same state.

use std::sync::Arc;

use jiff::Timestamp;
use kairos_core::Event;
use kairos_core::identity::Identifier;
use kairos_core::identity::graph::IdentityGraph;
use tokio::sync::oneshot;

use crate::router::{Outbox, Router};
use crate::shard::{ShardOp, ShardState};
use crate::types::{
    EngineSettings, ErasedProfile, MatchCandidate, ProfileExport, ProfileView, TimelinePage,
    by_profile_number, profile_key,
};

fn no_audiences() -> kairos_core::audience::incremental::Program {
    kairos_core::audience::incremental::Program::compile(&[]).expect("no definitions compile")
}

pub struct EngineState {
    router: Router,
    shards: Vec<ShardState>,
    outbox: Outbox,
}

impl EngineState {
    pub fn new(settings: EngineSettings) -> EngineState {
        EngineState::with_audiences(settings, Arc::new(no_audiences()))
    }

    /// An engine evaluating these audience definitions.
    pub fn with_audiences(
        settings: EngineSettings,
        audiences: Arc<kairos_core::audience::incremental::Program>,
    ) -> EngineState {
        let settings = Arc::new(settings);
        let router = Router::new(settings.clone());
        let shards = (0..router.shard_count())
            .map(|_| ShardState::new(settings.clone(), audiences.clone()))
            .collect();
        EngineState {
            router,
            shards,
            outbox: Vec::new(),
        }
    }

    pub fn applied_seq(&self) -> u64 {
        self.router.applied_seq()
    }

    pub fn graph(&self) -> &IdentityGraph {
        self.router.graph()
    }

    /// Profiles held by each shard.
    pub fn shard_sizes(&self) -> Vec<usize> {
        self.shards.iter().map(ShardState::len).collect()
    }

    pub fn apply(&mut self, event: &Event) {
        self.apply_shared(Arc::new(event.clone()));
    }

    pub fn apply_shared(&mut self, event: Arc<Event>) {
        self.apply_at(event, Timestamp::now());
    }

    /// Applies an event with the engine's clock at `now` (due audience
    /// timers fire first).
    pub fn apply_at(&mut self, event: Arc<Event>, now: Timestamp) {
        self.router.route(event, &mut self.outbox);
        for shard in &mut self.shards {
            shard.advance(now);
        }
        for (shard, op) in self.outbox.drain(..) {
            self.shards[shard].handle(op, now);
        }
    }

    /// The audiences a profile is in.
    pub fn audiences_of(&self, identifier: &Identifier) -> Vec<String> {
        self.profile_view(identifier)
            .map(|view| view.audiences)
            .unwrap_or_default()
    }

    pub fn profile_view(&self, identifier: &Identifier) -> Option<ProfileView> {
        let profile = self.router.lookup(identifier)?;
        self.shards[self.router.shard_of(profile)].view(profile)
    }

    pub fn timeline(
        &self,
        identifier: &Identifier,
        before_seq: Option<u64>,
        limit: usize,
    ) -> Option<TimelinePage> {
        let profile = self.router.lookup(identifier)?;
        self.shards[self.router.shard_of(profile)].timeline(
            profile,
            before_seq,
            limit,
            Timestamp::now(),
        )
    }

    pub fn export(&self, identifier: &Identifier) -> Option<ProfileExport> {
        let profile = self.router.lookup(identifier)?;
        self.shards[self.router.shard_of(profile)].export(profile)
    }

    pub fn search(&self, trait_name: &str, value: &str, limit: usize) -> Vec<ProfileView> {
        let mut found: Vec<ProfileView> = self
            .shards
            .iter()
            .flat_map(|shard| shard.search(trait_name, value, limit))
            .collect();
        found.sort_by_key(by_profile_number);
        found.truncate(limit);
        found
    }

    pub fn match_candidates(&self) -> Vec<MatchCandidate> {
        self.shards
            .iter()
            .flat_map(ShardState::match_candidates)
            .collect()
    }

    pub fn erase(&mut self, identifier: &Identifier) -> Option<ErasedProfile> {
        let (profile, identities) = self.router.erase(identifier)?;
        let (reply, mut answer) = oneshot::channel();
        let erased = ErasedProfile {
            profile_id: profile_key(profile),
            identities,
            events: 0,
            applied_seq: self.applied_seq(),
        };
        let shard = self.router.shard_of(profile);
        self.shards[shard].handle(
            ShardOp::Remove {
                profile,
                erased,
                reply,
            },
            Timestamp::now(),
        );
        answer.try_recv().ok().flatten()
    }
}

#[cfg(test)]
impl EngineState {
    /// The shards, for tests that drive them directly.
    pub(crate) fn shards_mut(&mut self) -> &mut [ShardState] {
        &mut self.shards
    }
}
