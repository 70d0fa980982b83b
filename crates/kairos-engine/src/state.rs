//! The engine's state: the identity graph and every profile. Pure apart from
//! being owned by one thread; replaying the same log gives the same state.

use std::collections::HashMap;

use jiff::Timestamp;
use kairos_core::Event;
use kairos_core::identity::extract::identifiers_of;
use kairos_core::identity::graph::{IdentityGraph, ProfileId};
use kairos_core::identity::{Identifier, IdentityRules};
use kairos_core::profile::{MergeRecord, Profile, Retention, TimelineEntry};
use kairos_store::{Privacy, Vault};
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

/// What the engine is configured with.
#[derive(Debug, Clone, Default)]
pub struct EngineSettings {
    pub rules: IdentityRules,
    pub retention: Retention,
    /// Source names from most to least trusted for traits; sources not
    /// listed come after, equal to each other.
    pub source_precedence: Vec<String>,
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

pub struct EngineState {
    settings: EngineSettings,
    /// Trait precedence rank by source id (resolved from names by the engine).
    source_ranks: HashMap<String, u32>,
    suppression: Option<SuppressionCheck>,
    graph: IdentityGraph,
    profiles: HashMap<ProfileId, Profile>,
    applied: u64,
    /// Events dropped because they carried an erased identifier.
    pub suppressed_events: u64,
}

pub fn profile_key(profile: ProfileId) -> String {
    format!("prof_{profile}")
}

impl EngineState {
    pub fn new(settings: EngineSettings) -> EngineState {
        EngineState {
            settings,
            source_ranks: HashMap::new(),
            suppression: None,
            graph: IdentityGraph::new(),
            profiles: HashMap::new(),
            applied: 0,
            suppressed_events: 0,
        }
    }

    /// Drops events of erased people (see [`kairos_store::privacy`]).
    pub fn with_suppression(mut self, check: SuppressionCheck) -> EngineState {
        self.suppression = Some(check);
        self
    }

    pub fn rules(&self) -> &IdentityRules {
        &self.settings.rules
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// Whether the source's trait precedence is known yet.
    pub fn knows_source(&self, source_id: &str) -> bool {
        self.settings.source_precedence.is_empty() || self.source_ranks.contains_key(source_id)
    }

    /// Records a source's precedence from its name.
    pub fn learn_source(&mut self, source_id: &str, name: Option<&str>) {
        let rank = name
            .and_then(|name| {
                self.settings
                    .source_precedence
                    .iter()
                    .position(|listed| listed == name)
            })
            .unwrap_or(self.settings.source_precedence.len());
        self.source_ranks.insert(source_id.to_string(), rank as u32);
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
        let Some(identifiers) = self.live_identifiers(event) else {
            return;
        };
        let Some(resolution) = self.graph.resolve(&identifiers, &self.settings.rules) else {
            return;
        };
        let now = Timestamp::now();
        for merge in &resolution.merges {
            let absorbed = self.profiles.remove(&merge.absorbed).unwrap_or_default();
            let survivor = self.profiles.entry(merge.survivor).or_default();
            survivor.absorb(absorbed);
            survivor.retain(&self.settings.retention, now);
            survivor.merges.push(MergeRecord {
                absorbed: merge.absorbed,
                via: merge.via.clone(),
                seq: event.seq,
                at: event.timestamp,
            });
        }
        let rank = self
            .source_ranks
            .get(&event.source_id)
            .copied()
            .unwrap_or(0);
        let profile = self.profiles.entry(resolution.profile).or_default();
        profile.apply(event, rank);
        profile.retain(&self.settings.retention, now);
    }

    /// Removes a person: the profile and every identifier it holds.
    pub fn erase(&mut self, identifier: &Identifier) -> Option<ErasedProfile> {
        let (id, profile) = self.lookup(identifier)?;
        let events = profile.timeline.len();
        self.profiles.remove(&id);
        let identities = self.graph.remove_profile(id);
        Some(ErasedProfile {
            profile_id: profile_key(id),
            identities,
            events,
            applied_seq: self.applied,
        })
    }

    pub fn export(&self, identifier: &Identifier) -> Option<ProfileExport> {
        let (id, profile) = self.lookup(identifier)?;
        Some(ProfileExport {
            profile: self.view(id, profile),
            seqs: profile.timeline.iter().map(|entry| entry.seq).collect(),
        })
    }

    fn lookup(&self, identifier: &Identifier) -> Option<(ProfileId, &Profile)> {
        let identifier =
            kairos_core::identity::extract::normalize(identifier.clone(), &self.settings.rules)?;
        let profile = self.graph.profile_of(&identifier)?;
        Some((profile, self.profiles.get(&profile)?))
    }

    /// Every profile with enough traits to be matched, with the identifier
    /// that addresses it (its most trusted), in profile order.
    pub fn match_candidates(&self) -> Vec<MatchCandidate> {
        let mut candidates: Vec<MatchCandidate> = self
            .profiles
            .iter()
            .filter_map(|(id, profile)| {
                let record = kairos_core::matching::record_from_traits(&profile.trait_values())?;
                let identifier = self
                    .graph
                    .identities(*id)
                    .iter()
                    .min_by_key(|identifier| self.settings.rules.rank(&identifier.kind))?
                    .clone();
                Some(MatchCandidate {
                    profile_id: profile_key(*id),
                    identifier,
                    record,
                })
            })
            .collect();
        candidates.sort_by(|a, b| a.profile_id.cmp(&b.profile_id));
        candidates
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
        let horizon = self.settings.retention.horizon(Timestamp::now());
        let mut entries: Vec<TimelineEntry> = profile
            .timeline
            .iter()
            .rev()
            .filter(|entry| horizon.is_none_or(|horizon| entry.timestamp >= horizon))
            .copied()
            .collect();
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
