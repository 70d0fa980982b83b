//! The identity graph: which profile owns each identifier.
//!
//! Every identifier belongs to at most one profile. An event's identifiers
//! are taken in priority order (`user_id` before `email` before
//! `anonymous_id`, by default): the profile of the first known one is the
//! anchor — unless the more trusted identifiers before it cannot join that
//! profile, in which case they start a new one. Every other profile the
//! event names is merged into the anchor if the union stays within the
//! limits; otherwise its identifier is left out and the profiles stay apart.
//! (The rules are [`super::resolve`]'s, over any [`IdentityView`]; this
//! graph is the one node's view.)

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::resolve::IdentityView;
use super::{Identifier, IdentityRules};

pub type ProfileId = u64;

/// One profile absorbed into another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Merge {
    pub survivor: ProfileId,
    pub absorbed: ProfileId,
    /// The identifier of the event that linked the two.
    pub via: Identifier,
}

/// Where an event landed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    pub profile: ProfileId,
    pub created: bool,
    pub merges: Vec<Merge>,
    /// Identifiers not linked because they would break a limit.
    pub left_out: Vec<Identifier>,
}

#[derive(Debug, Clone, Default)]
pub struct IdentityGraph {
    owner: HashMap<Identifier, ProfileId>,
    members: BTreeMap<ProfileId, Vec<Identifier>>,
    last_profile: ProfileId,
}

impl IdentityGraph {
    pub fn new() -> IdentityGraph {
        IdentityGraph::default()
    }

    /// What a checkpoint keeps: each profile's identifiers and the last
    /// profile id given out (the owner index is rebuilt from them).
    pub fn snapshot(&self) -> (ProfileId, Vec<(ProfileId, Vec<Identifier>)>) {
        let members = self
            .members
            .iter()
            .map(|(profile, identifiers)| (*profile, identifiers.clone()))
            .collect();
        (self.last_profile, members)
    }

    pub fn from_snapshot(
        last_profile: ProfileId,
        members: Vec<(ProfileId, Vec<Identifier>)>,
    ) -> IdentityGraph {
        let mut graph = IdentityGraph {
            last_profile,
            ..IdentityGraph::default()
        };
        for (profile, identifiers) in members {
            for identifier in &identifiers {
                graph.owner.insert(identifier.clone(), profile);
            }
            graph.members.insert(profile, identifiers);
        }
        graph
    }

    pub fn profile_of(&self, identifier: &Identifier) -> Option<ProfileId> {
        self.owner.get(identifier).copied()
    }

    pub fn identities(&self, profile: ProfileId) -> &[Identifier] {
        self.members.get(&profile).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn profiles(&self) -> impl Iterator<Item = (ProfileId, &[Identifier])> {
        self.members
            .iter()
            .map(|(profile, identities)| (*profile, identities.as_slice()))
    }

    /// Finds or creates the profile of an event's identifiers, merging what
    /// they link. `None` when the event carries no identifier.
    pub fn resolve(
        &mut self,
        identifiers: &[Identifier],
        rules: &IdentityRules,
    ) -> Option<Resolution> {
        super::resolve::resolve(self, identifiers, rules)
    }

    /// Forgets a profile and its identifiers (right to erasure).
    pub fn remove_profile(&mut self, profile: ProfileId) -> Vec<Identifier> {
        let identities = self.members.remove(&profile).unwrap_or_default();
        for identifier in &identities {
            self.owner.remove(identifier);
        }
        identities
    }

    /// Every identifier maps to exactly one live profile that lists it, and
    /// every profile keeps within the limits.
    pub fn check_consistency(&self, rules: &IdentityRules) -> Result<(), String> {
        let listed: usize = self.members.values().map(Vec::len).sum();
        if listed != self.owner.len() {
            return Err(format!(
                "{listed} identities listed, {} owned",
                self.owner.len()
            ));
        }
        for (profile, identities) in &self.members {
            for identifier in identities {
                if self.owner.get(identifier) != Some(profile) {
                    return Err(format!(
                        "{identifier:?} listed by {profile} but owned by {:?}",
                        self.owner.get(identifier)
                    ));
                }
            }
            let mut counts: HashMap<&str, usize> = HashMap::new();
            for identifier in identities {
                *counts.entry(identifier.kind.as_str()).or_default() += 1;
            }
            if let Some((kind, count)) = counts
                .iter()
                .find(|(kind, count)| **count > rules.limit(kind))
            {
                return Err(format!("profile {profile} holds {count} values of {kind}"));
            }
        }
        Ok(())
    }
}

/// The one-node graph is the view resolution reads and changes.
impl IdentityView for IdentityGraph {
    fn profile_of(&self, identifier: &Identifier) -> Option<ProfileId> {
        IdentityGraph::profile_of(self, identifier)
    }

    fn identities(&self, profile: ProfileId) -> &[Identifier] {
        IdentityGraph::identities(self, profile)
    }

    fn create_profile(&mut self) -> ProfileId {
        self.last_profile += 1;
        self.members.insert(self.last_profile, Vec::new());
        self.last_profile
    }

    fn add(&mut self, profile: ProfileId, identifier: Identifier) {
        self.owner.insert(identifier.clone(), profile);
        self.members.entry(profile).or_default().push(identifier);
    }

    fn merge(&mut self, survivor: ProfileId, absorbed: ProfileId) {
        for identifier in self.members.remove(&absorbed).unwrap_or_default() {
            self.add(survivor, identifier);
        }
    }
}

#[cfg(test)]
mod tests;
