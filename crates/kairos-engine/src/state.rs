//! The engine's state: the identity graph and every profile. Pure apart from
//! being owned by one thread; replaying the same log gives the same state.

use std::collections::HashMap;

use jiff::Timestamp;
use kairos_core::Event;
use kairos_core::identity::extract::identifiers_of;
use kairos_core::identity::graph::{IdentityGraph, ProfileId};
use kairos_core::identity::{Identifier, IdentityRules};
use kairos_core::profile::{MergeRecord, Profile, TimelineEntry};
use serde::Serialize;
use serde_json::{Map, Value};

/// A profile as the API shows it.
#[derive(Debug, Clone, Serialize)]
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
    pub scores: Map<String, Value>,
}

/// A page of a profile's timeline, newest first.
#[derive(Debug, Clone, Serialize)]
pub struct TimelinePage {
    pub profile_id: String,
    pub entries: Vec<TimelineEntry>,
    /// Pass as `before` for the next (older) page.
    pub next: Option<u64>,
}

pub struct EngineState {
    rules: IdentityRules,
    graph: IdentityGraph,
    profiles: HashMap<ProfileId, Profile>,
    applied: u64,
}

pub fn profile_key(profile: ProfileId) -> String {
    format!("prof_{profile}")
}

impl EngineState {
    pub fn new(rules: IdentityRules) -> EngineState {
        EngineState {
            rules,
            graph: IdentityGraph::new(),
            profiles: HashMap::new(),
            applied: 0,
        }
    }

    pub fn applied_seq(&self) -> u64 {
        self.applied
    }

    /// Marks sequence numbers with no event for this engine as applied.
    pub fn skip_to(&mut self, seq: u64) {
        self.applied = self.applied.max(seq);
    }

    /// Resolves the event's person, folds in any profiles it links, applies it.
    pub fn apply(&mut self, event: &Event) {
        self.applied = self.applied.max(event.seq);
        let identifiers = identifiers_of(event, &self.rules);
        let Some(resolution) = self.graph.resolve(&identifiers, &self.rules) else {
            return;
        };
        for merge in &resolution.merges {
            let absorbed = self.profiles.remove(&merge.absorbed).unwrap_or_default();
            let survivor = self.profiles.entry(merge.survivor).or_default();
            survivor.absorb(absorbed);
            survivor.merges.push(MergeRecord {
                absorbed: merge.absorbed,
                via: merge.via.clone(),
                seq: event.seq,
                at: event.timestamp,
            });
        }
        self.profiles
            .entry(resolution.profile)
            .or_default()
            .apply(event);
    }

    fn lookup(&self, identifier: &Identifier) -> Option<(ProfileId, &Profile)> {
        let identifier =
            kairos_core::identity::extract::normalize(identifier.clone(), &self.rules)?;
        let profile = self.graph.profile_of(&identifier)?;
        Some((profile, self.profiles.get(&profile)?))
    }

    pub fn profile_view(&self, identifier: &Identifier) -> Option<ProfileView> {
        let (id, profile) = self.lookup(identifier)?;
        Some(self.view(id, profile))
    }

    /// Profiles whose trait equals `value` (strings compare as they are,
    /// other JSON values by their JSON text), in profile order. A linear scan:
    /// a trait index comes with computed traits.
    pub fn search(&self, trait_name: &str, value: &str, limit: usize) -> Vec<ProfileView> {
        let mut found: Vec<(ProfileId, &Profile)> = self
            .profiles
            .iter()
            .filter(|(_, profile)| {
                profile
                    .traits
                    .get(trait_name)
                    .is_some_and(|current| match &current.value {
                        Value::String(text) => text == value,
                        other => serde_json::to_string(other).is_ok_and(|text| text == value),
                    })
            })
            .map(|(id, profile)| (*id, profile))
            .collect();
        found.sort_by_key(|(id, _)| *id);
        found
            .into_iter()
            .take(limit)
            .map(|(id, profile)| self.view(id, profile))
            .collect()
    }

    fn view(&self, id: ProfileId, profile: &Profile) -> ProfileView {
        ProfileView {
            id: profile_key(id),
            identities: self.graph.identities(id).to_vec(),
            traits: profile.trait_values(),
            consent: profile.consent.clone(),
            first_seen: profile.first_seen,
            last_seen: profile.last_seen,
            event_count: profile.timeline.len(),
            merges: profile.merges.clone(),
            computed: Map::new(),
            audiences: Vec::new(),
            scores: Map::new(),
        }
    }

    pub fn timeline(
        &self,
        identifier: &Identifier,
        before_seq: Option<u64>,
        limit: usize,
    ) -> Option<TimelinePage> {
        let (id, profile) = self.lookup(identifier)?;
        // Newest first by event time; `before` is the last entry's seq of the
        // previous page.
        let mut entries: Vec<TimelineEntry> = profile.timeline.iter().rev().copied().collect();
        if let Some(before) = before_seq
            && let Some(position) = entries.iter().position(|entry| entry.seq == before)
        {
            entries.drain(..=position);
        }
        let more = entries.len() > limit;
        entries.truncate(limit);
        let next = if more {
            entries.last().map(|entry| entry.seq)
        } else {
            None
        };
        Some(TimelinePage {
            profile_id: profile_key(id),
            entries,
            next,
        })
    }
}
