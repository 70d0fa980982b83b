//! Identity resolution, over any view of who owns which identifier.
//!
//! One node resolves on its whole identity graph
//! ([`super::graph::IdentityGraph`]); a node of a cluster (docs/cluster.md,
//! §5.2) resolves a group of events on a view of the replicated index that
//! holds only the records the group read, then writes back what changed.
//! Both run these rules, so a cluster links exactly what one node links:
//! the identifiers are taken in priority order; the profile of the first
//! known one is the anchor unless more trusted ones before it cannot join
//! it (then a new profile starts); every other profile named is merged into
//! the anchor if the union keeps within the limits, else its identifier is
//! left out.

use std::collections::{HashMap, HashSet};

use super::graph::{Merge, ProfileId, Resolution};
use super::{Identifier, IdentityRules};

/// What resolution reads and changes.
pub trait IdentityView {
    /// The profile that owns `identifier`, if any.
    fn profile_of(&self, identifier: &Identifier) -> Option<ProfileId>;
    /// A profile's identifiers (empty for an unknown profile).
    fn identities(&self, profile: ProfileId) -> &[Identifier];
    /// A new, empty profile.
    fn create_profile(&mut self) -> ProfileId;
    /// `identifier` joins `profile` (it was nobody's).
    fn add(&mut self, profile: ProfileId, identifier: Identifier);
    /// `absorbed`'s identifiers join `survivor`; `absorbed` is gone.
    fn merge(&mut self, survivor: ProfileId, absorbed: ProfileId);
}

/// Finds or creates the profile of an event's identifiers, merging what
/// they link. `None` when the event carries no identifier.
pub fn resolve<V: IdentityView + ?Sized>(
    view: &mut V,
    identifiers: &[Identifier],
    rules: &IdentityRules,
) -> Option<Resolution> {
    let mut seen = HashSet::new();
    let mut ordered: Vec<&Identifier> = identifiers
        .iter()
        .filter(|identifier| seen.insert(*identifier))
        .collect();
    ordered.sort_by_key(|identifier| rules.rank(&identifier.kind));
    if ordered.is_empty() {
        return None;
    }
    let (profile, created) = match anchor(view, &ordered, rules) {
        Some(profile) => (profile, false),
        None => (view.create_profile(), true),
    };
    let mut resolution = Resolution {
        profile,
        created,
        merges: Vec::new(),
        left_out: Vec::new(),
    };
    for identifier in ordered {
        match view.profile_of(identifier) {
            Some(owner) if owner == profile => {}
            Some(owner) if can_merge(view, profile, owner, rules) => {
                view.merge(profile, owner);
                resolution.merges.push(Merge {
                    survivor: profile,
                    absorbed: owner,
                    via: identifier.clone(),
                });
            }
            None if count(view, profile, &identifier.kind) < rules.limit(&identifier.kind) => {
                view.add(profile, identifier.clone());
            }
            _ => resolution.left_out.push(identifier.clone()),
        }
    }
    Some(resolution)
}

/// The profile of the most trusted known identifier, if every more
/// trusted (unknown) identifier of the event can join it.
fn anchor<V: IdentityView + ?Sized>(
    view: &V,
    ordered: &[&Identifier],
    rules: &IdentityRules,
) -> Option<ProfileId> {
    let (position, profile) = ordered
        .iter()
        .enumerate()
        .find_map(|(position, identifier)| Some((position, view.profile_of(identifier)?)))?;
    let mut added: HashMap<&str, usize> = HashMap::new();
    for identifier in &ordered[..position] {
        let count_added = added.entry(identifier.kind.as_str()).or_default();
        *count_added += 1;
        if count(view, profile, &identifier.kind) + *count_added > rules.limit(&identifier.kind) {
            return None;
        }
    }
    Some(profile)
}

fn count<V: IdentityView + ?Sized>(view: &V, profile: ProfileId, kind: &str) -> usize {
    view.identities(profile)
        .iter()
        .filter(|identifier| identifier.kind == kind)
        .count()
}

fn can_merge<V: IdentityView + ?Sized>(
    view: &V,
    survivor: ProfileId,
    absorbed: ProfileId,
    rules: &IdentityRules,
) -> bool {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for identifier in view
        .identities(survivor)
        .iter()
        .chain(view.identities(absorbed))
    {
        *counts.entry(identifier.kind.as_str()).or_default() += 1;
    }
    counts
        .iter()
        .all(|(kind, count)| *count <= rules.limit(kind))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::identity::graph::IdentityGraph;

    /// A view shaped like the cluster's index (docs/cluster.md §5.1): one
    /// record per identifier, one per profile, and profile ids handed out
    /// by the caller (there: the id of the event that created it).
    #[derive(Default)]
    struct IndexView {
        claims: BTreeMap<String, ProfileId>,
        profiles: BTreeMap<ProfileId, Vec<Identifier>>,
        next_id: ProfileId,
    }

    fn key(identifier: &Identifier) -> String {
        format!("{}:{}", identifier.kind, identifier.value)
    }

    impl IdentityView for IndexView {
        fn profile_of(&self, identifier: &Identifier) -> Option<ProfileId> {
            self.claims.get(&key(identifier)).copied()
        }
        fn identities(&self, profile: ProfileId) -> &[Identifier] {
            self.profiles
                .get(&profile)
                .map(Vec::as_slice)
                .unwrap_or(&[])
        }
        fn create_profile(&mut self) -> ProfileId {
            self.profiles.insert(self.next_id, Vec::new());
            self.next_id
        }
        fn add(&mut self, profile: ProfileId, identifier: Identifier) {
            self.claims.insert(key(&identifier), profile);
            self.profiles.entry(profile).or_default().push(identifier);
        }
        fn merge(&mut self, survivor: ProfileId, absorbed: ProfileId) {
            for identifier in self.profiles.remove(&absorbed).unwrap_or_default() {
                self.add(survivor, identifier);
            }
        }
    }

    fn identifier(kind: &str, value: u64) -> Identifier {
        Identifier {
            kind: kind.to_string(),
            value: format!("{kind}-{value}"),
        }
    }

    /// Random events over few people and devices (with limits that bite):
    /// the index-shaped view links exactly what the graph links, profile
    /// for profile, whatever its ids are.
    #[test]
    fn an_index_shaped_view_resolves_exactly_as_the_graph() {
        let rules = IdentityRules {
            limits: [("user_id", 1), ("email", 2)]
                .into_iter()
                .map(|(kind, limit)| (kind.to_string(), limit))
                .collect(),
            ..IdentityRules::default()
        };
        let mut graph = IdentityGraph::new();
        let mut index = IndexView::default();
        let mut ids: BTreeMap<ProfileId, ProfileId> = BTreeMap::new();
        let mut state = 7u64;
        let mut random = |below: u64| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) % below
        };
        for event in 0..5_000u64 {
            let mut identifiers = vec![identifier("anonymous_id", random(60))];
            if random(3) == 0 {
                identifiers.push(identifier("user_id", random(20)));
            }
            if random(4) == 0 {
                identifiers.push(identifier("email", random(25)));
            }
            index.next_id = 1_000_000 + event;
            let expected = graph.resolve(&identifiers, &rules).unwrap();
            let got = resolve(&mut index, &identifiers, &rules).unwrap();
            if got.created {
                ids.insert(got.profile, expected.profile);
            }
            let same = |profile: ProfileId| ids[&profile];
            assert_eq!(same(got.profile), expected.profile, "event {event}");
            assert_eq!(got.created, expected.created);
            assert_eq!(got.left_out, expected.left_out);
            let merges: Vec<(ProfileId, ProfileId)> = got
                .merges
                .iter()
                .map(|m| (same(m.survivor), same(m.absorbed)))
                .collect();
            let expected_merges: Vec<(ProfileId, ProfileId)> = expected
                .merges
                .iter()
                .map(|m| (m.survivor, m.absorbed))
                .collect();
            assert_eq!(merges, expected_merges, "event {event}");
        }
        graph.check_consistency(&rules).unwrap();
        assert_eq!(index.profiles.len(), graph.profiles().count());
    }
}
