//! The identity graph: which profile owns each identifier.
//!
//! Every identifier belongs to at most one profile. An event's identifiers
//! are taken in priority order (`user_id` before `email` before
//! `anonymous_id`, by default): the profile of the first known one is the
//! anchor — unless the more trusted identifiers before it cannot join that
//! profile, in which case they start a new one. Every other profile the
//! event names is merged into the anchor if the union stays within the
//! limits; otherwise its identifier is left out and the profiles stay apart.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

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
        let mut seen = std::collections::HashSet::new();
        let mut ordered: Vec<&Identifier> = identifiers
            .iter()
            .filter(|identifier| seen.insert(*identifier))
            .collect();
        ordered.sort_by_key(|identifier| rules.rank(&identifier.kind));
        if ordered.is_empty() {
            return None;
        }
        let anchor = self.anchor(&ordered, rules);
        let (profile, created) = match anchor {
            Some(profile) => (profile, false),
            None => (self.create_profile(), true),
        };
        let mut resolution = Resolution {
            profile,
            created,
            merges: Vec::new(),
            left_out: Vec::new(),
        };
        for identifier in ordered {
            match self.owner.get(identifier).copied() {
                Some(owner) if owner == profile => {}
                Some(owner) if self.can_merge(profile, owner, rules) => {
                    self.merge(profile, owner);
                    resolution.merges.push(Merge {
                        survivor: profile,
                        absorbed: owner,
                        via: identifier.clone(),
                    });
                }
                None if self.count(profile, &identifier.kind) < rules.limit(&identifier.kind) => {
                    self.add(profile, identifier.clone());
                }
                _ => resolution.left_out.push(identifier.clone()),
            }
        }
        Some(resolution)
    }

    /// The profile of the most trusted known identifier, if every more
    /// trusted (unknown) identifier of the event can join it.
    fn anchor(&self, ordered: &[&Identifier], rules: &IdentityRules) -> Option<ProfileId> {
        let position = ordered
            .iter()
            .position(|identifier| self.owner.contains_key(*identifier))?;
        let profile = self.owner[ordered[position]];
        let mut added: HashMap<&str, usize> = HashMap::new();
        for identifier in &ordered[..position] {
            let count = added.entry(identifier.kind.as_str()).or_default();
            *count += 1;
            if self.count(profile, &identifier.kind) + *count > rules.limit(&identifier.kind) {
                return None;
            }
        }
        Some(profile)
    }

    fn create_profile(&mut self) -> ProfileId {
        self.last_profile += 1;
        self.members.insert(self.last_profile, Vec::new());
        self.last_profile
    }

    fn count(&self, profile: ProfileId, kind: &str) -> usize {
        self.identities(profile)
            .iter()
            .filter(|identifier| identifier.kind == kind)
            .count()
    }

    fn can_merge(&self, survivor: ProfileId, absorbed: ProfileId, rules: &IdentityRules) -> bool {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for identifier in self
            .identities(survivor)
            .iter()
            .chain(self.identities(absorbed))
        {
            *counts.entry(identifier.kind.as_str()).or_default() += 1;
        }
        counts
            .iter()
            .all(|(kind, count)| *count <= rules.limit(kind))
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

#[cfg(test)]
mod tests;
