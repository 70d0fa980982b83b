//! Incremental evaluation: each definition's event conditions ("leaves")
//! keep, per person, only the matching events they need (time and the one
//! property they aggregate), pruned as windows move on. An event touches
//! only the leaves that read its name and re-evaluates only the
//! definitions using them (and, when the person's traits changed, those
//! reading traits). Every definition's next moment of change without new
//! events — a window entry expiring, a recency threshold passing, a
//! sequence's time running out — is a timer; advancing the clock fires due
//! timers in time order, so memberships change exactly when they should.
//!
//! The meaning of every condition is [`super::eval`]'s; the property test
//! holds the two together.

use std::collections::{BTreeSet, HashMap};

use jiff::Timestamp;
use serde_json::Value;

use super::ast::*;
use super::eval::{
    EventFact, PersonFacts, in_window, lookup, matches_event, recency_holds, seconds, test_value,
};

pub type PersonId = u64;

/// A membership that changed, and when.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub person: PersonId,
    pub audience: String,
    pub entered: bool,
    pub at: Timestamp,
}

/// An event-reading condition, compiled.
#[derive(Debug, Clone)]
enum Leaf {
    /// Aggregates, performed, recency: matching events with one value.
    Stream {
        event: EventRef,
        window: Window,
        /// The property the aggregate reads, if any.
        property: Option<String>,
        /// Recency needs only the earliest or latest time.
        keep: Keep,
        /// For recency: the threshold whose passing flips the condition.
        recency: Option<(Relation, u64)>,
    },
    Sequence {
        first: EventRef,
        then: EventRef,
        within: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Keep {
    All,
    Earliest,
    Latest,
}

#[derive(Debug, Default, Clone)]
struct LeafEntries {
    /// Sorted by time: (time, value of the aggregated property).
    stream: Vec<(Timestamp, Option<Value>)>,
    /// Sequences: times of A and of B, sorted.
    firsts: Vec<Timestamp>,
    thens: Vec<Timestamp>,
}

struct Compiled {
    name: String,
    expr: Expr,
    leaves: Vec<usize>,
    reads_facts: bool,
    /// Whether it uses `in audience` (memberships are then looked up).
    reads_audiences: bool,
    /// Definitions whose `in audience` names this one.
    dependents: Vec<usize>,
}

pub struct Program {
    definitions: Vec<Compiled>,
    leaves: Vec<Leaf>,
    by_event: HashMap<String, Vec<usize>>,
    /// For each leaf, the definitions that read it.
    leaf_definitions: Vec<Vec<usize>>,
    /// Definition indexes in an order where `in audience` targets come first.
    order: Vec<usize>,
    /// Each definition's position in `order`.
    position: Vec<usize>,
    /// Definitions true for someone with no events and no traits (e.g.
    /// `did not perform ...`): what a person's first appearance evaluates
    /// besides what their first event touches.
    vacuous: Vec<bool>,
}

/// A hasher for small integer keys (profile and definition ids): one
/// multiply instead of SipHash, which dominated the per-event cost.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(*byte)).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }
    fn write_u64(&mut self, value: u64) {
        self.0 = (self.0 ^ value)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(26);
    }
    fn write_usize(&mut self, value: usize) {
        self.write_u64(value as u64);
    }
}

type IdMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<IdHasher>>;

impl Program {
    /// Compiles named definitions; refuses unknown or circular `in audience`.
    pub fn compile(definitions: &[(String, Expr)]) -> Result<Program, String> {
        let index: HashMap<&str, usize> = definitions
            .iter()
            .enumerate()
            .map(|(position, (name, _))| (name.as_str(), position))
            .collect();
        let mut program = Program {
            definitions: Vec::new(),
            leaves: Vec::new(),
            by_event: HashMap::new(),
            leaf_definitions: Vec::new(),
            order: Vec::new(),
            position: Vec::new(),
            vacuous: Vec::new(),
        };
        let mut references: Vec<Vec<usize>> = Vec::new();
        for (name, expr) in definitions {
            let mut compiled = Compiled {
                name: name.clone(),
                expr: expr.clone(),
                leaves: Vec::new(),
                reads_facts: false,
                reads_audiences: false,
                dependents: Vec::new(),
            };
            let mut referenced = Vec::new();
            program.collect_leaves(expr, &mut compiled, &mut referenced, &index)?;
            references.push(referenced);
            program.definitions.push(compiled);
        }
        for (position, referenced) in references.iter().enumerate() {
            for target in referenced {
                program.definitions[*target].dependents.push(position);
            }
        }
        program.order = topological_order(&references).ok_or_else(|| {
            "audiences refer to each other in a circle (`in audience`)".to_string()
        })?;
        program.position = vec![0; program.definitions.len()];
        for (position, definition) in program.order.iter().enumerate() {
            program.position[*definition] = position;
        }
        program.leaf_definitions = vec![Vec::new(); program.leaves.len()];
        for (index, definition) in program.definitions.iter().enumerate() {
            for leaf in &definition.leaves {
                program.leaf_definitions[*leaf].push(index);
            }
        }
        program.vacuous = program.vacuous_truths();
        Ok(program)
    }

    fn collect_leaves(
        &mut self,
        expr: &Expr,
        compiled: &mut Compiled,
        referenced: &mut Vec<usize>,
        index: &HashMap<&str, usize>,
    ) -> Result<(), String> {
        let leaf = match expr {
            Expr::And { all } => {
                for expr in all {
                    self.collect_leaves(expr, compiled, referenced, index)?;
                }
                return Ok(());
            }
            Expr::Or { any } => {
                for expr in any {
                    self.collect_leaves(expr, compiled, referenced, index)?;
                }
                return Ok(());
            }
            Expr::Not { expr } => return self.collect_leaves(expr, compiled, referenced, index),
            Expr::Trait { .. } | Expr::Computed { .. } | Expr::Score { .. } => {
                compiled.reads_facts = true;
                return Ok(());
            }
            Expr::InAudience { audience } => {
                let target = index
                    .get(audience.as_str())
                    .ok_or_else(|| format!("`in audience \"{audience}\"`: no such audience"))?;
                referenced.push(*target);
                compiled.reads_audiences = true;
                return Ok(());
            }
            Expr::Aggregate {
                function,
                event,
                window,
                ..
            } => Leaf::Stream {
                event: event.clone(),
                window: window.clone(),
                property: match function {
                    Aggregate::Count => None,
                    Aggregate::Sum(property)
                    | Aggregate::Avg(property)
                    | Aggregate::Min(property)
                    | Aggregate::Max(property)
                    | Aggregate::Distinct(property) => Some(property.clone()),
                },
                keep: Keep::All,
                recency: None,
            },
            Expr::Performed { event, window, .. } => Leaf::Stream {
                event: event.clone(),
                window: window.clone(),
                property: None,
                keep: Keep::Latest,
                recency: None,
            },
            Expr::Recency {
                which,
                event,
                relation,
                ago_seconds,
            } => Leaf::Stream {
                event: event.clone(),
                window: Window::Ever,
                property: None,
                keep: match which {
                    Occurrence::First => Keep::Earliest,
                    Occurrence::Last => Keep::Latest,
                },
                recency: Some((*relation, *ago_seconds)),
            },
            Expr::Sequence {
                first,
                then,
                within_seconds,
                ..
            } => Leaf::Sequence {
                first: first.clone(),
                then: then.clone(),
                within: *within_seconds,
            },
        };
        let id = self.leaves.len();
        let names: Vec<String> = match &leaf {
            Leaf::Stream { event, .. } => vec![event.name.clone()],
            Leaf::Sequence { first, then, .. } => vec![first.name.clone(), then.name.clone()],
        };
        for name in names {
            let readers = self.by_event.entry(name).or_default();
            if !readers.contains(&id) {
                readers.push(id);
            }
        }
        self.leaves.push(leaf);
        compiled.leaves.push(id);
        Ok(())
    }

    /// Each definition evaluated for a person with no events and no traits
    /// (no timestamps are involved, so any "now" gives the same answer).
    fn vacuous_truths(&self) -> Vec<bool> {
        let mut empty = PersonState::default();
        let mut truths = vec![false; self.definitions.len()];
        for &definition in &self.order {
            let compiled = &self.definitions[definition];
            let mut cursor = compiled.leaves.iter();
            truths[definition] =
                evaluate(&compiled.expr, &mut cursor, &empty, Timestamp::UNIX_EPOCH);
            if truths[definition] {
                empty.facts.audiences.insert(compiled.name.clone());
            }
        }
        truths
    }

    /// What a person's first appearance must evaluate besides what their
    /// first event touches: definitions true for someone who has done
    /// nothing, and those reading other audiences (whose memberships the
    /// vacuous evaluation could only assume).
    fn first_appearance(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.definitions.len())
            .filter(|index| self.vacuous[*index] || self.definitions[*index].reads_audiences)
    }

    pub fn audience_names(&self) -> impl Iterator<Item = &str> {
        self.definitions
            .iter()
            .map(|definition| definition.name.as_str())
    }
}

/// Kahn's algorithm over "definition → definitions it refers to".
fn topological_order(references: &[Vec<usize>]) -> Option<Vec<usize>> {
    let mut pending: Vec<usize> = references.iter().map(Vec::len).collect();
    let mut order = Vec::new();
    let mut ready: Vec<usize> = (0..references.len()).filter(|&d| pending[d] == 0).collect();
    while let Some(done) = ready.pop() {
        order.push(done);
        for (definition, referenced) in references.iter().enumerate() {
            let hits = referenced.iter().filter(|&&target| target == done).count();
            if hits > 0 {
                pending[definition] -= hits;
                if pending[definition] == 0 {
                    ready.push(definition);
                }
            }
        }
    }
    (order.len() == references.len()).then_some(order)
}

/// One person's audience state, movable between engines (profile merges
/// across shards).
#[derive(Default)]
pub struct PersonState {
    leaves: IdMap<usize, LeafEntries>,
    members: BTreeSet<usize>,
    facts: PersonFacts,
    /// Each definition's pending timer (few per person: a small vector).
    timers: Vec<(usize, Timestamp)>,
    /// The earliest of them: this person's entry in the engine's timer set.
    scheduled: Option<Timestamp>,
}

/// Audience memberships of many people, kept current event by event and
/// timer by timer.
pub struct AudienceEngine {
    program: std::sync::Arc<Program>,
    persons: IdMap<PersonId, PersonState>,
    /// One entry per person with timers: their earliest.
    timers: BTreeSet<(Timestamp, PersonId)>,
}

impl AudienceEngine {
    pub fn new(program: std::sync::Arc<Program>) -> AudienceEngine {
        AudienceEngine {
            program,
            persons: IdMap::default(),
            timers: BTreeSet::new(),
        }
    }

    pub fn is_member(&self, person: PersonId, audience: &str) -> bool {
        let Some(state) = self.persons.get(&person) else {
            return false;
        };
        state
            .members
            .iter()
            .any(|&definition| self.program.definitions[definition].name == audience)
    }

    pub fn members(&self, audience: &str) -> Vec<PersonId> {
        let Some(definition) = self
            .program
            .definitions
            .iter()
            .position(|definition| definition.name == audience)
        else {
            return Vec::new();
        };
        let mut members: Vec<PersonId> = self
            .persons
            .iter()
            .filter(|(_, state)| state.members.contains(&definition))
            .map(|(person, _)| *person)
            .collect();
        members.sort_unstable();
        members
    }

    /// Whether any definition reads events of this name.
    pub fn reads_event(&self, name: &str) -> bool {
        self.program.by_event.contains_key(name)
    }

    /// Whether the person has been seen.
    pub fn knows(&self, person: PersonId) -> bool {
        self.persons.contains_key(&person)
    }

    /// The names of the audiences a person is in.
    pub fn memberships(&self, person: PersonId) -> Vec<String> {
        self.persons
            .get(&person)
            .map(|state| {
                state
                    .members
                    .iter()
                    .map(|&definition| self.program.definitions[definition].name.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Removes a person (erased, or absorbed into another profile) and
    /// their timers; returns their state.
    pub fn take_person(&mut self, person: PersonId) -> Option<PersonState> {
        let mut state = self.persons.remove(&person)?;
        if let Some(due) = state.scheduled.take() {
            self.timers.remove(&(due, person));
        }
        state.timers.clear();
        Some(state)
    }

    /// Folds an absorbed person's state into `survivor` (their events are
    /// now one history) and re-evaluates every definition for them.
    pub fn absorb_person(
        &mut self,
        survivor: PersonId,
        absorbed: PersonState,
        now: Timestamp,
    ) -> Vec<Change> {
        let state = self.persons.entry(survivor).or_default();
        for (leaf, entries) in absorbed.leaves {
            let target = state.leaves.entry(leaf).or_default();
            merge_sorted(&mut target.stream, entries.stream, |(at, _)| *at);
            merge_sorted(&mut target.firsts, entries.firsts, |at| *at);
            merge_sorted(&mut target.thens, entries.thens, |at| *at);
            if let Leaf::Stream { keep, .. } = &self.program.leaves[leaf] {
                match keep {
                    Keep::Latest => target
                        .stream
                        .drain(..target.stream.len().saturating_sub(1))
                        .for_each(drop),
                    Keep::Earliest => target.stream.truncate(1),
                    Keep::All => {}
                }
            }
        }
        let all = (0..self.program.definitions.len()).collect();
        let mut changes = Vec::new();
        self.reevaluate(survivor, all, now, &mut changes);
        changes
    }

    /// People with pending timers (for tests and metrics).
    pub fn timer_count(&self) -> usize {
        self.timers.len()
    }

    /// Fires every timer due at or before `now`, in time order.
    pub fn advance(&mut self, now: Timestamp) -> Vec<Change> {
        let mut changes = Vec::new();
        while let Some(&(due, person)) = self.timers.first() {
            if due > now {
                break;
            }
            self.timers.pop_first();
            let Some(state) = self.persons.get_mut(&person) else {
                continue;
            };
            state.scheduled = None;
            // Every definition of this person due at this instant.
            let mut dirty = BTreeSet::new();
            state.timers.retain(|(definition, at)| {
                let fired = *at <= due;
                if fired {
                    dirty.insert(*definition);
                }
                !fired
            });
            self.reevaluate(person, dirty, due, &mut changes);
            self.reschedule(person);
        }
        changes
    }

    /// Records a person's traits (and computed traits, scores); call when
    /// they change. Re-evaluates what reads them.
    pub fn set_facts(
        &mut self,
        person: PersonId,
        facts: PersonFacts,
        now: Timestamp,
    ) -> Vec<Change> {
        let first_seen = !self.persons.contains_key(&person);
        let state = self.persons.entry(person).or_default();
        state.facts.traits = facts.traits;
        state.facts.computed = facts.computed;
        state.facts.scores = facts.scores;
        let dirty: BTreeSet<usize> = self
            .program
            .definitions
            .iter()
            .enumerate()
            .filter(|(_, definition)| definition.reads_facts)
            .map(|(index, _)| index)
            .chain(
                first_seen
                    .then(|| self.program.first_appearance())
                    .into_iter()
                    .flatten(),
            )
            .collect();
        let mut changes = Vec::new();
        self.reevaluate(person, dirty, now, &mut changes);
        changes
    }

    /// Applies one event of a person at `now` (after `advance(now)`). A
    /// person's first event evaluates every definition: some hold for
    /// someone who has done nothing (`did not perform ...`).
    pub fn apply(&mut self, person: PersonId, event: &EventFact, now: Timestamp) -> Vec<Change> {
        let first_seen = !self.persons.contains_key(&person);
        let mut dirty_leaves = Vec::new();
        if let Some(readers) = self.program.by_event.get(&event.name) {
            let state = self.persons.entry(person).or_default();
            for &leaf in readers {
                if record(
                    &self.program.leaves[leaf],
                    state.leaves.entry(leaf).or_default(),
                    event,
                ) {
                    dirty_leaves.push(leaf);
                }
            }
        }
        if dirty_leaves.is_empty() && !first_seen {
            return Vec::new();
        }
        self.persons.entry(person).or_default();
        // Definitions reading the touched leaves; on a first appearance also
        // those true for someone who has done nothing. (The others evaluate
        // as for an empty state: false, no change.)
        let mut dirty: BTreeSet<usize> = dirty_leaves
            .iter()
            .flat_map(|leaf| self.program.leaf_definitions[*leaf].iter().copied())
            .collect();
        if first_seen {
            dirty.extend(self.program.first_appearance());
        }
        let mut changes = Vec::new();
        self.reevaluate(person, dirty, now, &mut changes);
        changes
    }

    /// Re-evaluates `dirty` definitions (and, on a change, those that refer
    /// to them) in dependency order at `now`; reschedules their timers.
    fn reevaluate(
        &mut self,
        person: PersonId,
        dirty: BTreeSet<usize>,
        now: Timestamp,
        changes: &mut Vec<Change>,
    ) {
        let program = &self.program;
        let state = self.persons.entry(person).or_default();
        // Positions in dependency order, so a definition is evaluated after
        // the audiences it refers to.
        let mut queue: BTreeSet<usize> = dirty
            .into_iter()
            .map(|definition| program.position[definition])
            .collect();
        while let Some(position) = queue.pop_first() {
            let definition = program.order[position];
            let compiled = &program.definitions[definition];
            prune(program, compiled, state, now);
            if compiled.reads_audiences {
                state.facts.audiences = state
                    .members
                    .iter()
                    .map(|&member| program.definitions[member].name.clone())
                    .collect();
            }
            let mut leaf_cursor = compiled.leaves.iter();
            let member = evaluate(&compiled.expr, &mut leaf_cursor, state, now);
            if member != state.members.contains(&definition) {
                if member {
                    state.members.insert(definition);
                } else {
                    state.members.remove(&definition);
                }
                changes.push(Change {
                    person,
                    audience: compiled.name.clone(),
                    entered: member,
                    at: now,
                });
                queue.extend(
                    compiled
                        .dependents
                        .iter()
                        .map(|dependent| program.position[*dependent]),
                );
            }
            let next = compiled
                .leaves
                .iter()
                .filter_map(|leaf| {
                    next_change(&program.leaves[*leaf], state.leaves.get(leaf)?, now)
                })
                .min();
            state.timers.retain(|(pending, _)| *pending != definition);
            if let Some(due) = next {
                state.timers.push((definition, due));
            }
        }
        self.reschedule(person);
    }

    /// Puts the person's earliest timer in the engine's timer set.
    fn reschedule(&mut self, person: PersonId) {
        let Some(state) = self.persons.get_mut(&person) else {
            return;
        };
        let earliest = state.timers.iter().map(|(_, due)| *due).min();
        if earliest != state.scheduled {
            if let Some(old) = state.scheduled {
                self.timers.remove(&(old, person));
            }
            if let Some(due) = earliest {
                self.timers.insert((due, person));
            }
            state.scheduled = earliest;
        }
    }
}

/// Adds a matching event to a leaf; false if it does not match.
fn record(leaf: &Leaf, entries: &mut LeafEntries, event: &EventFact) -> bool {
    match leaf {
        Leaf::Stream {
            event: reference,
            window,
            property,
            keep,
            ..
        } => {
            if !matches_event(reference, event) {
                return false;
            }
            if let Window::Between { from, to } = window
                && !(*from <= event.at && event.at < *to)
            {
                return false; // never in the window
            }
            let value = property
                .as_deref()
                .and_then(|property| lookup(&event.properties, property).cloned());
            let stream = &mut entries.stream;
            match keep {
                Keep::All => {
                    let position = stream.partition_point(|(at, _)| *at <= event.at);
                    stream.insert(position, (event.at, value));
                }
                Keep::Latest if stream.first().is_none_or(|(at, _)| event.at > *at) => {
                    *stream = vec![(event.at, value)];
                }
                Keep::Earliest if stream.first().is_none_or(|(at, _)| event.at < *at) => {
                    *stream = vec![(event.at, value)];
                }
                _ => {}
            }
            true
        }
        Leaf::Sequence { first, then, .. } => {
            let mut touched = false;
            for (reference, times) in [(first, &mut entries.firsts), (then, &mut entries.thens)] {
                if matches_event(reference, event) {
                    let position = times.partition_point(|at| *at <= event.at);
                    times.insert(position, event.at);
                    touched = true;
                }
            }
            touched
        }
    }
}

/// Drops stream entries that have left a rolling window for good.
fn prune(program: &Program, compiled: &Compiled, state: &mut PersonState, now: Timestamp) {
    for leaf in &compiled.leaves {
        if let Leaf::Stream {
            window: Window::Within { seconds: span },
            keep: Keep::All,
            ..
        } = &program.leaves[*leaf]
            && let Some(entries) = state.leaves.get_mut(leaf)
        {
            let horizon = now - seconds(*span);
            let expired = entries.stream.partition_point(|(at, _)| *at <= horizon);
            entries.stream.drain(..expired);
        }
    }
}

/// Evaluates like [`super::eval::evaluate`], reading event conditions from
/// the leaves (visited in compile order).
fn evaluate<'a>(
    expr: &Expr,
    leaves: &mut impl Iterator<Item = &'a usize>,
    state: &PersonState,
    now: Timestamp,
) -> bool {
    match expr {
        // Every branch is visited, so the leaf cursor stays in step.
        Expr::And { all } => all
            .iter()
            .map(|expr| evaluate(expr, leaves, state, now))
            .collect::<Vec<bool>>()
            .into_iter()
            .all(|value| value),
        Expr::Or { any } => any
            .iter()
            .map(|expr| evaluate(expr, leaves, state, now))
            .collect::<Vec<bool>>()
            .into_iter()
            .any(|value| value),
        Expr::Not { expr } => !evaluate(expr, leaves, state, now),
        Expr::Trait { name, test } => test_value(lookup(&state.facts.traits, name), test),
        Expr::Computed { name, test } => test_value(lookup(&state.facts.computed, name), test),
        Expr::Score { model, op, value } => state
            .facts
            .scores
            .get(model)
            .is_some_and(|score| op.holds(score.total_cmp(value))),
        Expr::InAudience { audience } => state.facts.audiences.contains(audience),
        Expr::Aggregate {
            function,
            window,
            op,
            value,
            ..
        } => {
            let entries = leaf_entries(leaves, state)
                .map(|entries| in_window_entries(&entries.stream, window, now))
                .unwrap_or(&[]);
            aggregate_entries(function, entries)
                .is_some_and(|aggregate| op.holds(aggregate.total_cmp(value)))
        }
        Expr::Performed {
            window, negated, ..
        } => {
            // The latest matching event decides: in a rolling window it is
            // the one that stays longest; for a fixed range only matching
            // events inside it were kept.
            let any = leaf_entries(leaves, state)
                .and_then(|entries| entries.stream.last())
                .is_some_and(|(at, _)| in_window(window, *at, now));
            any != *negated
        }
        Expr::Recency {
            relation,
            ago_seconds,
            ..
        } => leaf_entries(leaves, state)
            .and_then(|entries| entries.stream.first())
            .is_some_and(|(at, _)| recency_holds(*at, *relation, *ago_seconds, now)),
        Expr::Sequence {
            within_seconds,
            negated,
            ..
        } => {
            let Some(entries) = leaf_entries(leaves, state) else {
                return false;
            };
            let limit = seconds(*within_seconds);
            let followed = |a: Timestamp| {
                let start = entries.thens.partition_point(|b| *b <= a);
                entries.thens.get(start).is_some_and(|b| *b <= a + limit)
            };
            if *negated {
                entries
                    .firsts
                    .iter()
                    .any(|a| *a + limit <= now && !followed(*a))
            } else {
                entries.firsts.iter().any(|a| followed(*a))
            }
        }
    }
}

/// The entries inside the window (entries are sorted by time; a rolling
/// window's are a suffix, a fixed range's were filtered when recorded).
fn in_window_entries<'a>(
    stream: &'a [(Timestamp, Option<Value>)],
    window: &Window,
    now: Timestamp,
) -> &'a [(Timestamp, Option<Value>)] {
    match window {
        Window::Within { seconds: span } => {
            let horizon = now - seconds(*span);
            &stream[stream.partition_point(|(at, _)| *at <= horizon)..]
        }
        Window::Ever | Window::Between { .. } => stream,
    }
}

/// The aggregate over recorded values (the aggregated property's value of
/// each matching event), as [`super::eval`] defines it.
fn aggregate_entries(function: &Aggregate, entries: &[(Timestamp, Option<Value>)]) -> Option<f64> {
    let numbers = || {
        entries
            .iter()
            .filter_map(|(_, value)| value.as_ref()?.as_f64())
    };
    match function {
        Aggregate::Count => Some(entries.len() as f64),
        Aggregate::Sum(_) => Some(numbers().sum()),
        Aggregate::Avg(_) => {
            let (sum, count) = numbers().fold((0.0, 0usize), |(sum, count), value| {
                (sum + value, count + 1)
            });
            (count > 0).then(|| sum / count as f64)
        }
        Aggregate::Min(_) => numbers().reduce(f64::min),
        Aggregate::Max(_) => numbers().reduce(f64::max),
        Aggregate::Distinct(_) => Some(
            entries
                .iter()
                .filter_map(|(_, value)| value.as_ref().filter(|value| !value.is_null()))
                .map(Value::to_string)
                .collect::<BTreeSet<_>>()
                .len() as f64,
        ),
    }
}

fn leaf_entries<'a, 'b>(
    leaves: &mut impl Iterator<Item = &'b usize>,
    state: &'a PersonState,
) -> Option<&'a LeafEntries> {
    let leaf = leaves.next()?;
    state.leaves.get(leaf)
}

/// The next moment after `now` when the leaf's truth can change with no
/// new event.
fn next_change(leaf: &Leaf, entries: &LeafEntries, now: Timestamp) -> Option<Timestamp> {
    match leaf {
        Leaf::Stream {
            window: Window::Within { seconds: span },
            ..
        } => {
            // The oldest entry still in the window expires first.
            let horizon = now - seconds(*span);
            let first = entries.stream.partition_point(|(at, _)| *at <= horizon);
            entries
                .stream
                .get(first)
                .map(|(at, _)| *at + seconds(*span))
        }
        Leaf::Stream {
            recency: Some((relation, ago)),
            ..
        } => {
            // `less than D ago` turns false at at + D; `more than D ago`
            // turns true just after it.
            let (at, _) = entries.stream.first()?;
            let threshold = *at + seconds(*ago);
            let due = match relation {
                Relation::LessThan => threshold,
                Relation::MoreThan => threshold + jiff::SignedDuration::from_nanos(1),
            };
            (due > now).then_some(due)
        }
        Leaf::Stream { .. } => None,
        Leaf::Sequence { within, .. } => {
            let limit = seconds(*within);
            entries
                .firsts
                .iter()
                .map(|a| *a + limit)
                .filter(|due| *due > now)
                .min()
        }
    }
}

fn merge_sorted<T>(target: &mut Vec<T>, other: Vec<T>, key: impl Fn(&T) -> Timestamp) {
    if other.is_empty() {
        return;
    }
    target.extend(other);
    target.sort_by_key(|item| key(item));
}
