//! What the engine answers with and is configured with.

use jiff::Timestamp;
use kairos_core::identity::graph::ProfileId;
use kairos_core::identity::{Identifier, IdentityRules};
use kairos_core::profile::{MergeRecord, Retention, TimelineEntry};
use kairos_store::{Privacy, Vault};
use serde::Serialize;
use serde_json::{Map, Value};

/// A profile as the API shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProfileView {
    pub id: String,
    pub identities: Vec<Identifier>,
    pub traits: Map<String, Value>,
    pub consent: std::collections::BTreeMap<String, bool>,
    pub first_seen: Option<Timestamp>,
    pub last_seen: Option<Timestamp>,
    pub event_count: usize,
    pub merges: Vec<MergeRecord>,
    /// Computed traits, audiences and scores arrive with later capabilities.
    pub computed: Map<String, Value>,
    pub audiences: Vec<String>,
    /// Active models' scores (audiences and journeys read these).
    pub scores: Map<String, Value>,
    /// Shadow models' scores: shown, acted on by nothing.
    pub shadow_scores: Map<String, Value>,
}

/// A page of a profile's timeline, newest first.
#[derive(Debug, Clone, Serialize)]
pub struct TimelinePage {
    pub profile_id: String,
    pub entries: Vec<TimelineEntry>,
    /// Pass as `before` for the next (older) page.
    pub next: Option<u64>,
}

/// What the engine is configured with.
#[derive(Clone)]
pub struct EngineSettings {
    /// "Now" for audiences: the system clock, or a manual one
    /// (`kairos serve --clock manual`).
    pub clock: std::sync::Arc<dyn kairos_core::clock::Clock>,
    pub rules: IdentityRules,
    pub retention: Retention,
    /// Source names from most to least trusted for traits; sources not
    /// listed come after, equal to each other.
    pub source_precedence: Vec<String>,
    /// Profile shards: threads that each own the profiles whose id falls to
    /// them (`id % shards`).
    pub shards: usize,
    /// The model versions served; replaced as a whole when the registry
    /// changes ([`crate::Engine::set_models`]).
    pub models: ModelHandle,
    /// A checkpoint is taken each time this many events were routed since
    /// the last one (0: only at clean shutdown and erasure).
    pub checkpoint_every_events: u64,
    /// Where shards hand the events journeys and syncs act on, with their
    /// person ([`crate::effects_feed`]); `None`: nothing acts on events
    /// (the in-process model, benchmarks, commands other than `serve`).
    pub effects: Option<crate::effects_feed::EffectsLink>,
    /// Whether the router feeds the recommender (`[recommendations]
    /// enabled`): about 2 µs per product event on the router thread,
    /// docs/benchmarks.md; a workspace that recommends nothing saves it.
    pub recommendations: bool,
}

/// Events routed between two checkpoints by default: at ~100k events/s of
/// replay, a start replays at most ~10 s of log after the checkpoint.
pub const CHECKPOINT_EVERY_EVENTS: u64 = 1_000_000;

/// The models every shard scores with.
pub type ModelHandle = std::sync::Arc<std::sync::RwLock<std::sync::Arc<kairos_models::ModelSet>>>;

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            clock: std::sync::Arc::new(kairos_core::clock::SystemClock),
            rules: IdentityRules::default(),
            retention: Retention::default(),
            source_precedence: Vec::new(),
            shards: 2,
            models: ModelHandle::default(),
            checkpoint_every_events: CHECKPOINT_EVERY_EVENTS,
            effects: None,
            recommendations: true,
        }
    }
}

impl std::fmt::Debug for EngineSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineSettings")
            .field("rules", &self.rules)
            .field("retention", &self.retention)
            .field("source_precedence", &self.source_precedence)
            .field("shards", &self.shards)
            .field("recommendations", &self.recommendations)
            .finish_non_exhaustive()
    }
}

/// A person removed by an erasure.
#[derive(Debug, Clone)]
pub struct ErasedProfile {
    pub profile_id: String,
    pub identities: Vec<Identifier>,
    pub events: usize,
    /// The engine's log position when the profile was removed.
    pub applied_seq: u64,
}

/// What the right of access returns: the profile and where its events are.
#[derive(Debug, Clone)]
pub struct ProfileExport {
    pub profile: ProfileView,
    /// Every timeline event's log position, oldest first.
    pub seqs: Vec<u64>,
}

/// A profile as the matcher sees it.
#[derive(Debug, Clone)]
pub struct MatchCandidate {
    pub profile_id: String,
    pub identifier: Identifier,
    pub record: kairos_core::matching::Record,
}

/// Suppression as the engine sees it: pseudonyms of erased identifiers.
#[derive(Clone)]
pub struct SuppressionCheck {
    pub vault: std::sync::Arc<Vault>,
    pub privacy: std::sync::Arc<Privacy>,
}

pub fn profile_key(profile: ProfileId) -> String {
    format!("prof_{profile}")
}

/// Orders profile views by profile number (`prof_9` before `prof_10`).
pub(crate) fn by_profile_number(view: &ProfileView) -> (usize, String) {
    (view.id.len(), view.id.clone())
}
