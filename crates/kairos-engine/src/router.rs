//! The router: the identity graph, owned by one thread. It resolves each
//! event to a profile and turns it into operations for the shards that own
//! the profiles involved ([`crate::shard`]), in one global order.

use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Arc, RwLock};

use kairos_core::Event;
use kairos_core::identity::Identifier;
use kairos_core::identity::extract::{identifiers_of, normalize};
use kairos_core::identity::graph::{IdentityGraph, ProfileId};
use kairos_core::profile::{MergeRecord, SourceStanding};
use kairos_recommend::Recommender;

use crate::shard::ShardOp;
use crate::types::{EngineSettings, SuppressionCheck};

/// Operations for shards, in the global order: `(shard, operation)`.
pub type Outbox = Vec<(usize, ShardOp)>;

pub struct Router {
    settings: Arc<EngineSettings>,
    /// Trait precedence rank and trust by source id (resolved by the engine).
    source_ranks: HashMap<String, SourceStanding>,
    suppression: Option<SuppressionCheck>,
    graph: IdentityGraph,
    applied: u64,
    /// Events dropped because they carried an erased identifier.
    pub suppressed_events: u64,
    /// The live recommender, fed here in the log's order (requests read it
    /// through the engine once the router has applied what they must see).
    recommender: Arc<RwLock<Recommender>>,
}

impl Router {
    pub fn new(settings: Arc<EngineSettings>) -> Router {
        Router {
            settings,
            source_ranks: HashMap::new(),
            suppression: None,
            graph: IdentityGraph::new(),
            applied: 0,
            suppressed_events: 0,
            recommender: Arc::default(),
        }
    }

    /// The recommender this router feeds.
    pub fn recommender(&self) -> Arc<RwLock<Recommender>> {
        self.recommender.clone()
    }

    /// Drops events of erased people (see [`kairos_store::privacy`]).
    pub fn with_suppression(mut self, check: SuppressionCheck) -> Router {
        self.suppression = Some(check);
        self
    }

    pub fn shard_count(&self) -> usize {
        self.settings.shards.max(1)
    }

    pub fn shard_of(&self, profile: ProfileId) -> usize {
        (profile % self.shard_count() as u64) as usize
    }

    pub fn applied_seq(&self) -> u64 {
        self.applied
    }

    /// Marks sequence numbers with no event for this engine as applied.
    pub fn skip_to(&mut self, seq: u64) {
        self.applied = self.applied.max(seq);
    }

    /// The router's part of a checkpoint, encoded: the identity graph and
    /// the recommender (read in place: it may be large).
    pub(crate) fn checkpoint_part(&self, header: crate::checkpoint::Header) -> Vec<u8> {
        let (last_profile, members) = self.graph.snapshot();
        let recommender = self.recommender.read().expect("recommender lock");
        crate::checkpoint::encode(&crate::checkpoint::RouterPartRef {
            header,
            suppressed_events: self.suppressed_events,
            last_profile,
            members,
            recommender: &recommender,
        })
    }

    /// Takes the graph, the recommender and the position of a checkpoint.
    pub(crate) fn restore(&mut self, part: crate::checkpoint::RouterPart) {
        self.graph = IdentityGraph::from_snapshot(part.last_profile, part.members);
        self.applied = part.header.seq;
        self.suppressed_events = part.suppressed_events;
        let mut recommender = part.recommender;
        recommender.after_decode();
        *self.recommender.write().expect("recommender lock") = recommender;
    }

    pub fn graph(&self) -> &IdentityGraph {
        &self.graph
    }

    /// Whether the source's trait precedence and trust are known yet.
    pub fn knows_source(&self, source_id: &str) -> bool {
        self.source_ranks.contains_key(source_id)
    }

    /// Records a source's precedence (from its name) and trust.
    pub fn learn_source(&mut self, source_id: &str, name: Option<&str>, client: bool) {
        let rank = name
            .and_then(|name| {
                self.settings
                    .source_precedence
                    .iter()
                    .position(|listed| listed == name)
            })
            .unwrap_or(self.settings.source_precedence.len());
        let standing = SourceStanding {
            rank: rank as u32,
            client,
        };
        self.source_ranks.insert(source_id.to_string(), standing);
    }

    /// Resolves the event's person, links what it links, and queues the
    /// shard operations: merges first, then the event itself.
    pub fn route(&mut self, event: Arc<Event>, out: &mut Outbox) {
        self.applied = self.applied.max(event.seq);
        let Some(identifiers) = self.live_identifiers(&event) else {
            return;
        };
        let adds_identifiers = identifiers
            .iter()
            .any(|identifier| self.graph.profile_of(identifier).is_none());
        let rules = &self.settings.rules;
        let Some(resolution) = self.graph.resolve(&identifiers, rules) else {
            return;
        };
        let interaction = self
            .settings
            .recommendations
            .then(|| crate::recommend::interaction_of(&event))
            .flatten();
        let mut recommender = (interaction.is_some() || !resolution.merges.is_empty())
            .then(|| self.recommender.write().expect("recommender lock"));
        for merge in &resolution.merges {
            if let Some(recommender) = recommender.as_mut() {
                recommender.merge(merge.absorbed, merge.survivor);
            }
            let (to, from) = mpsc::channel();
            out.push((
                self.shard_of(merge.absorbed),
                ShardOp::Extract {
                    profile: merge.absorbed,
                    to,
                },
            ));
            out.push((
                self.shard_of(merge.survivor),
                ShardOp::Absorb {
                    survivor: merge.survivor,
                    from,
                    record: MergeRecord {
                        absorbed: merge.absorbed,
                        via: merge.via.clone(),
                        seq: event.seq,
                        at: event.timestamp,
                    },
                },
            ));
        }
        if let (Some(recommender), Some((interaction, items))) = (recommender.as_mut(), interaction)
        {
            let at_ms = event.timestamp.as_millisecond();
            recommender.observe(resolution.profile, interaction, &items, at_ms);
        }
        drop(recommender);
        let identities = (adds_identifiers || resolution.created || !resolution.merges.is_empty())
            .then(|| self.graph.identities(resolution.profile).to_vec());
        let source = self
            .source_ranks
            .get(&event.source_id)
            .copied()
            .unwrap_or_default();
        out.push((
            self.shard_of(resolution.profile),
            ShardOp::Apply {
                profile: resolution.profile,
                event,
                source,
                identities,
            },
        ));
    }

    /// The event's identifiers with erased ones removed; `None` when the
    /// event must be dropped: it carries an identifier erased before it.
    fn live_identifiers(&mut self, event: &Event) -> Option<Vec<Identifier>> {
        let mut identifiers = identifiers_of(event, &self.settings.rules);
        let Some(check) = &self.suppression else {
            return Some(identifiers);
        };
        if !check.privacy.has_suppressions() {
            return Some(identifiers);
        }
        let mut erased_before = false;
        identifiers.retain(|identifier| {
            match check
                .privacy
                .suppressed_after(&check.vault.subject(identifier))
            {
                Some(after) => {
                    erased_before |= event.seq > after;
                    false
                }
                None => true,
            }
        });
        if erased_before {
            self.suppressed_events += 1;
            return None;
        }
        Some(identifiers)
    }

    /// The profile an event belongs to now: that of its most trusted
    /// identifier that is still known (after merges and erasures).
    pub fn current_profile(&self, event: &Event) -> Option<ProfileId> {
        let rules = &self.settings.rules;
        let mut identifiers = identifiers_of(event, rules);
        identifiers.sort_by_key(|identifier| rules.rank(&identifier.kind));
        identifiers
            .iter()
            .find_map(|identifier| self.graph.profile_of(identifier))
    }

    /// The profile an identifier (as the API gives it) belongs to.
    pub fn lookup(&self, identifier: &Identifier) -> Option<ProfileId> {
        let identifier = normalize(identifier.clone(), &self.settings.rules)?;
        self.graph.profile_of(&identifier)
    }

    /// Forgets a profile's identifiers (erasure); the caller removes the
    /// profile from its shard.
    pub fn erase(&mut self, identifier: &Identifier) -> Option<(ProfileId, Vec<Identifier>)> {
        let profile = self.lookup(identifier)?;
        self.recommender
            .write()
            .expect("recommender lock")
            .forget(profile);
        Some((profile, self.graph.remove_profile(profile)))
    }
}
