use std::collections::BTreeSet;

use super::*;

fn id(kind: &str, value: &str) -> Identifier {
    Identifier::new(kind, value)
}

fn resolve(graph: &mut IdentityGraph, identifiers: &[Identifier]) -> Resolution {
    let resolution = graph
        .resolve(identifiers, &IdentityRules::default())
        .unwrap();
    graph.check_consistency(&IdentityRules::default()).unwrap();
    resolution
}

#[test]
fn an_anonymous_visitor_who_logs_in_keeps_one_profile() {
    let mut graph = IdentityGraph::new();
    let anonymous = resolve(&mut graph, &[id("anonymous_id", "a1")]);
    let identified = resolve(&mut graph, &[id("user_id", "u1"), id("anonymous_id", "a1")]);
    assert_eq!(anonymous.profile, identified.profile);
    assert!(!identified.created);
}

#[test]
fn two_people_on_one_shared_browser_stay_apart() {
    let mut graph = IdentityGraph::new();
    let first = resolve(
        &mut graph,
        &[id("user_id", "u1"), id("anonymous_id", "shared")],
    );
    let second = resolve(
        &mut graph,
        &[id("user_id", "u2"), id("anonymous_id", "shared")],
    );
    assert_ne!(first.profile, second.profile);
    assert!(second.created);
    assert_eq!(second.left_out, vec![id("anonymous_id", "shared")]);
    // The shared device stays with the first person; u2's events go to u2.
    assert_eq!(
        graph.profile_of(&id("anonymous_id", "shared")),
        Some(first.profile)
    );
    assert_eq!(
        resolve(&mut graph, &[id("user_id", "u2")]).profile,
        second.profile
    );
}

#[test]
fn an_email_links_two_devices_and_records_the_merge() {
    let mut graph = IdentityGraph::new();
    let phone = resolve(
        &mut graph,
        &[id("anonymous_id", "phone"), id("email", "ada@example.org")],
    );
    let laptop = resolve(&mut graph, &[id("anonymous_id", "laptop")]);
    let linked = resolve(
        &mut graph,
        &[id("anonymous_id", "laptop"), id("email", "ada@example.org")],
    );
    assert_eq!(
        linked.profile, phone.profile,
        "the email is more trusted: its profile survives"
    );
    assert_eq!(
        linked.merges,
        vec![Merge {
            survivor: phone.profile,
            absorbed: laptop.profile,
            via: id("anonymous_id", "laptop")
        }]
    );
    assert_eq!(graph.identities(phone.profile).len(), 3);
}

#[test]
fn erasure_forgets_every_identifier() {
    let mut graph = IdentityGraph::new();
    let person = resolve(&mut graph, &[id("user_id", "u1"), id("email", "a@b.c")]);
    assert_eq!(graph.remove_profile(person.profile).len(), 2);
    assert_eq!(graph.profile_of(&id("email", "a@b.c")), None);
    graph.check_consistency(&IdentityRules::default()).unwrap();
}

// --- property test against a naive model ------------------------------------

/// The same rules applied from scratch with plain lists and linear scans.
fn naive_partition(
    events: &[Vec<Identifier>],
    rules: &IdentityRules,
) -> BTreeSet<BTreeSet<Identifier>> {
    let mut profiles: Vec<Vec<Identifier>> = Vec::new();
    let owner = |profiles: &Vec<Vec<Identifier>>, identifier: &Identifier| {
        profiles.iter().position(|p| p.contains(identifier))
    };
    let count =
        |profile: &Vec<Identifier>, kind: &str| profile.iter().filter(|i| i.kind == kind).count();
    for identifiers in events {
        let mut ordered = identifiers.clone();
        ordered.sort_by_key(|identifier| rules.rank(&identifier.kind));
        if ordered.is_empty() {
            continue;
        }
        let first_known = ordered
            .iter()
            .position(|identifier| owner(&profiles, identifier).is_some());
        let mut anchor = first_known.map(|position| owner(&profiles, &ordered[position]).unwrap());
        if let (Some(position), Some(profile)) = (first_known, anchor) {
            for (index, identifier) in ordered[..position].iter().enumerate() {
                let same_kind_before = ordered[..=index]
                    .iter()
                    .filter(|i| i.kind == identifier.kind)
                    .count();
                if count(&profiles[profile], &identifier.kind) + same_kind_before
                    > rules.limit(&identifier.kind)
                {
                    anchor = None;
                }
            }
        }
        let profile = anchor.unwrap_or_else(|| {
            profiles.push(Vec::new());
            profiles.len() - 1
        });
        for identifier in &ordered {
            match owner(&profiles, identifier) {
                Some(other) if other == profile => {}
                Some(other) => {
                    let union: Vec<Identifier> = profiles[profile]
                        .iter()
                        .chain(&profiles[other])
                        .cloned()
                        .collect();
                    let within = union
                        .iter()
                        .all(|i| count(&union, &i.kind) <= rules.limit(&i.kind));
                    if within {
                        let moved = std::mem::take(&mut profiles[other]);
                        profiles[profile].extend(moved);
                    }
                }
                None => {
                    if count(&profiles[profile], &identifier.kind) < rules.limit(&identifier.kind) {
                        profiles[profile].push(identifier.clone());
                    }
                }
            }
        }
    }
    profiles
        .into_iter()
        .filter(|profile| !profile.is_empty())
        .map(|profile| profile.into_iter().collect())
        .collect()
}

fn partition(graph: &IdentityGraph) -> BTreeSet<BTreeSet<Identifier>> {
    graph
        .profiles()
        .filter(|(_, identities)| !identities.is_empty())
        .map(|(_, identities)| identities.iter().cloned().collect())
        .collect()
}

/// xorshift64*: a dependency-free, seedable generator for the property test.
struct Random(u64);

impl Random {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % bound
    }
}

/// identify, alias and track calls with identifiers from small pools, so
/// that links, merges and limit breaks are frequent.
fn random_event(random: &mut Random, rules: &IdentityRules) -> Vec<Identifier> {
    let user = format!("u{}", random.below(6));
    let anonymous = format!("a{}", random.below(8));
    let email = format!("e{}@x.org", random.below(5));
    let mut identifiers = match random.below(5) {
        0 => vec![
            id("user_id", &user),
            id("anonymous_id", &anonymous),
            id("email", &email),
        ],
        1 => vec![id("user_id", &user), id("anonymous_id", &anonymous)],
        2 => vec![id("anonymous_id", &anonymous)],
        3 => vec![id("user_id", &user)],
        _ => vec![
            id("anonymous_id", &anonymous),
            id("email", &email),
            id("email", &format!("e{}@x.org", random.below(5))),
        ],
    };
    if random.below(10) == 0 {
        identifiers.push(id("user_id", "null"));
    }
    identifiers.retain(|identifier| !rules.is_blocked(identifier));
    let mut seen = BTreeSet::new();
    identifiers.retain(|identifier| seen.insert(identifier.clone()));
    identifiers
}

#[test]
fn incremental_graph_equals_a_from_scratch_model_at_every_step() {
    let tight = IdentityRules {
        limits: [("user_id", 1), ("email", 1), ("anonymous_id", 3)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        ..IdentityRules::default()
    };
    for rules in [IdentityRules::default(), tight] {
        let (mut merges, mut left_out, mut created) = (0, 0, 0);
        for seed in 1..=40u64 {
            let mut random = Random(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut graph = IdentityGraph::new();
            let mut events = Vec::new();
            for step in 0..60 {
                let identifiers = random_event(&mut random, &rules);
                if let Some(resolution) = graph.resolve(&identifiers, &rules) {
                    // Erasure relies on it: the event's most trusted
                    // identifier (what it is sealed under) is in its profile.
                    let subject = identifiers
                        .iter()
                        .min_by_key(|identifier| rules.rank(&identifier.kind))
                        .expect("an event with a resolution has identifiers");
                    assert_eq!(
                        graph.profile_of(subject),
                        Some(resolution.profile),
                        "seed {seed} step {step}: the subject is outside the event's profile"
                    );
                    merges += resolution.merges.len();
                    left_out += resolution.left_out.len();
                    created += usize::from(resolution.created);
                }
                events.push(identifiers);
                graph
                    .check_consistency(&rules)
                    .unwrap_or_else(|error| panic!("seed {seed} step {step}: {error}"));
                assert_eq!(
                    partition(&graph),
                    naive_partition(&events, &rules),
                    "seed {seed} step {step}"
                );
            }
        }
        // The streams must exercise what the rules are about.
        assert!(
            merges > 50 && left_out > 100 && created > 100,
            "merges {merges}, left out {left_out}, created {created}"
        );
    }
}
