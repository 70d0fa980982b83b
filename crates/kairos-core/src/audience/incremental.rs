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

use std::collections::BTreeSet;

use jiff::Timestamp;

use super::ast::*;
use serde_json::{Map, Value};

use super::eval::{
    EventFact, PersonFacts, literal_value, lookup, most_frequent, number_value, recency_holds,
    seconds, test_value,
};
use super::leaves::{
    Keep, Leaf, LeafEntries, aggregate_entries, in_window_entries, keep_latest_past, later,
    merge_sorted, next_change, record, trend_halves,
};
pub use super::program::Program;
use super::program::{Body, Compiled, IdMap};

pub type PersonId = u64;

/// A membership that changed, and when.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub person: PersonId,
    pub audience: String,
    pub entered: bool,
    pub at: Timestamp,
}

/// One person's audience state, movable between engines (profile merges
/// across shards).
#[derive(Default, serde::Serialize, serde::Deserialize)]
pub struct PersonState {
    leaves: IdMap<usize, LeafEntries>,
    pub(super) members: BTreeSet<usize>,
    /// Traits and scores (computed traits are `computed`).
    facts: PersonFacts,
    /// Computed trait values that differ from the value for someone who has
    /// done nothing (`Program::vacuous_values`), by definition; `Null`
    /// stands for "no value" where that differs.
    computed: Vec<(usize, Value)>,
    /// Each definition's pending timer (few per person: a small vector).
    timers: Vec<(usize, Timestamp)>,
    /// The earliest of them: this person's entry in the engine's timer set.
    scheduled: Option<Timestamp>,
}

impl PersonState {
    /// Records a computed trait's value as given (used while compiling).
    pub(super) fn set_computed(&mut self, definition: usize, value: Value) {
        match self
            .computed
            .binary_search_by_key(&definition, |(index, _)| *index)
        {
            Ok(position) => self.computed[position].1 = value,
            Err(position) => self.computed.insert(position, (definition, value)),
        }
    }

    fn forget_computed(&mut self, definition: usize) {
        if let Ok(position) = self
            .computed
            .binary_search_by_key(&definition, |(index, _)| *index)
        {
            self.computed.remove(position);
        }
    }

    /// A computed trait's current value for this person.
    pub(super) fn computed_value<'a>(
        &'a self,
        program: &'a Program,
        definition: usize,
    ) -> Option<&'a Value> {
        match self
            .computed
            .binary_search_by_key(&definition, |(index, _)| *index)
        {
            Ok(position) => Some(&self.computed[position].1).filter(|value| !value.is_null()),
            Err(_) => program.vacuous_values[definition].as_ref(),
        }
    }
}

/// Audience memberships of many people, kept current event by event and
/// timer by timer.
pub struct AudienceEngine {
    program: std::sync::Arc<Program>,
    persons: IdMap<PersonId, PersonState>,
    /// One entry per person with timers: their earliest.
    timers: BTreeSet<(Timestamp, PersonId)>,
    /// Members of each definition (audiences), kept as memberships change.
    sizes: Vec<usize>,
}

impl AudienceEngine {
    pub fn new(program: std::sync::Arc<Program>) -> AudienceEngine {
        AudienceEngine {
            sizes: vec![0; program.definitions.len()],
            program,
            persons: IdMap::default(),
            timers: BTreeSet::new(),
        }
    }

    pub fn is_member(&self, person: PersonId, audience: &str) -> bool {
        let (Some(state), Some(definition)) = (
            self.persons.get(&person),
            self.program.audience_index(audience),
        ) else {
            return false;
        };
        state.members.contains(&definition)
    }

    /// A person's computed traits (none for someone never seen).
    pub fn computed_values(&self, person: PersonId) -> Map<String, Value> {
        let Some(state) = self.persons.get(&person) else {
            return Map::new();
        };
        self.program
            .definitions
            .iter()
            .enumerate()
            .filter(|(_, definition)| matches!(definition.body, Body::Computed(_)))
            .filter_map(|(index, definition)| {
                let value = state.computed_value(&self.program, index)?;
                Some((definition.name.clone(), value.clone()))
            })
            .collect()
    }

    /// A computed trait's value for a person.
    pub fn computed_value(&self, person: PersonId, name: &str) -> Option<Value> {
        let definition = self.program.computed_index(name)?;
        let state = self.persons.get(&person)?;
        state.computed_value(&self.program, definition).cloned()
    }

    /// Everyone with a value of a computed trait, in person order.
    pub fn values(&self, name: &str) -> Vec<(PersonId, Value)> {
        let Some(definition) = self.program.computed_index(name) else {
            return Vec::new();
        };
        let mut values: Vec<(PersonId, Value)> = self
            .persons
            .iter()
            .filter_map(|(person, state)| {
                Some((
                    *person,
                    state.computed_value(&self.program, definition)?.clone(),
                ))
            })
            .collect();
        values.sort_unstable_by_key(|(person, _)| *person);
        values
    }

    /// An audience's number of members (no scan: kept as they change).
    pub fn size(&self, audience: &str) -> usize {
        self.program
            .audience_index(audience)
            .map_or(0, |definition| self.sizes[definition])
    }

    pub fn members(&self, audience: &str) -> Vec<PersonId> {
        let Some(definition) = self.program.audience_index(audience) else {
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

    /// The audiences defined (not computed traits).
    pub fn audience_names(&self) -> impl Iterator<Item = &str> {
        self.program.audience_names()
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
    /// Every person's state, for a checkpoint. Definitions are referred to
    /// by their position in the program: a checkpoint is only restored
    /// under the same program (its fingerprint).
    pub fn persons(&self) -> impl Iterator<Item = (PersonId, &PersonState)> {
        self.persons.iter().map(|(person, state)| (*person, state))
    }

    /// An engine holding the people of a checkpoint taken under `program`:
    /// sizes and the timer set are rebuilt from their states.
    pub fn restore(
        program: std::sync::Arc<Program>,
        persons: impl IntoIterator<Item = (PersonId, PersonState)>,
    ) -> AudienceEngine {
        let mut engine = AudienceEngine::new(program);
        for (person, state) in persons {
            for definition in &state.members {
                if let Some(size) = engine.sizes.get_mut(*definition) {
                    *size += 1;
                }
            }
            if let Some(due) = state.scheduled {
                engine.timers.insert((due, person));
            }
            engine.persons.insert(person, state);
        }
        engine
    }

    /// One person's state, if they have any.
    pub fn person(&self, person: PersonId) -> Option<&PersonState> {
        self.persons.get(&person)
    }

    /// The people whose timers are due by `now`: those [`Self::advance`]
    /// to `now` may change (and no one else).
    pub fn due_persons(&self, now: Timestamp) -> Vec<PersonId> {
        self.timers
            .iter()
            .take_while(|(due, _)| *due <= now)
            .map(|(_, person)| *person)
            .collect()
    }

    pub fn take_person(&mut self, person: PersonId) -> Option<PersonState> {
        let mut state = self.persons.remove(&person)?;
        for definition in &state.members {
            self.sizes[*definition] -= 1;
        }
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
            if let Leaf::Stream { keep, window, .. } = &self.program.leaves[leaf] {
                match keep {
                    Keep::Latest if matches!(window, Window::Within { .. }) => {
                        keep_latest_past(&mut target.stream, now);
                    }
                    Keep::Latest => {
                        let latest = target
                            .stream
                            .drain(..)
                            .reduce(|kept, entry| if later(&entry, &kept) { entry } else { kept });
                        target.stream.extend(latest);
                    }
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

    /// Records a person's traits and scores; call when
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
                    now,
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
        let sizes = &mut self.sizes;
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
            let mut leaf_cursor = compiled.leaves.iter();
            let changed = match &compiled.body {
                Body::Audience(expr) => {
                    let member = evaluate(program, expr, &mut leaf_cursor, state, now);
                    let changed = member != state.members.contains(&definition);
                    if changed {
                        if member {
                            state.members.insert(definition);
                            sizes[definition] += 1;
                        } else {
                            state.members.remove(&definition);
                            sizes[definition] -= 1;
                        }
                        changes.push(Change {
                            person,
                            audience: compiled.name.clone(),
                            entered: member,
                            at: now,
                        });
                    }
                    changed
                }
                Body::Computed(expr) => {
                    let value = evaluate_value(program, expr, &mut leaf_cursor, state, now);
                    let changed = state.computed_value(program, definition) != value.as_ref();
                    if changed {
                        if value == program.vacuous_values[definition] {
                            state.forget_computed(definition);
                        } else {
                            state.set_computed(definition, value.unwrap_or(Value::Null));
                        }
                    }
                    changed
                }
            };
            if changed {
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
            // Usually nothing has left since the last look.
            if entries.stream.first().is_some_and(|(at, _)| *at <= horizon) {
                let expired = entries.stream.partition_point(|(at, _)| *at <= horizon);
                entries.stream.drain(..expired);
            }
        }
    }
}

/// Evaluates like [`super::eval::evaluate`], reading event conditions from
/// the leaves (visited in compile order).
pub(super) fn evaluate<'a>(
    program: &Program,
    expr: &Expr,
    leaves: &mut impl Iterator<Item = &'a usize>,
    state: &PersonState,
    now: Timestamp,
) -> bool {
    match expr {
        // Every branch is visited, so the leaf cursor stays in step.
        Expr::And { all } => all
            .iter()
            .map(|expr| evaluate(program, expr, leaves, state, now))
            .collect::<Vec<bool>>()
            .into_iter()
            .all(|value| value),
        Expr::Or { any } => any
            .iter()
            .map(|expr| evaluate(program, expr, leaves, state, now))
            .collect::<Vec<bool>>()
            .into_iter()
            .any(|value| value),
        Expr::Not { expr } => !evaluate(program, expr, leaves, state, now),
        Expr::Trait { name, test } => test_value(lookup(&state.facts.traits, name), test),
        Expr::Computed { name, test } => test_value(
            program
                .computed_index(name)
                .and_then(|definition| state.computed_value(program, definition)),
            test,
        ),
        Expr::Score { model, op, value } => state
            .facts
            .scores
            .get(model)
            .is_some_and(|score| op.holds(score.total_cmp(value))),
        Expr::InAudience { audience } => program
            .audience_index(audience)
            .is_some_and(|definition| state.members.contains(&definition)),
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
            // The latest matching event up to now decides: in a rolling
            // window it is the one that stays longest; for a fixed range
            // only matching events inside it were kept.
            let any = leaf_entries(leaves, state)
                .is_some_and(|entries| !in_window_entries(&entries.stream, window, now).is_empty());
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

/// Evaluates like [`super::eval::value`], reading event conditions from
/// the leaves (visited in compile order).
pub(super) fn evaluate_value<'a>(
    program: &Program,
    expr: &ValueExpr,
    leaves: &mut impl Iterator<Item = &'a usize>,
    state: &PersonState,
    now: Timestamp,
) -> Option<Value> {
    match expr {
        ValueExpr::Aggregate {
            function, window, ..
        } => {
            let entries = leaf_entries(leaves, state)
                .map(|entries| in_window_entries(&entries.stream, window, now))
                .unwrap_or(&[]);
            aggregate_entries(function, entries).map(number_value)
        }
        ValueExpr::Occurrence { .. } => leaf_entries(leaves, state)
            .and_then(|entries| entries.stream.first())
            .map(|(at, _)| Value::String(at.to_string())),
        ValueExpr::LatestValue { .. } => leaf_entries(leaves, state)
            .and_then(|entries| entries.stream.first())
            .and_then(|(_, value)| value.clone()),
        ValueExpr::MostFrequent { window, .. } => {
            let entries = leaf_entries(leaves, state)
                .map(|entries| in_window_entries(&entries.stream, window, now))
                .unwrap_or(&[]);
            most_frequent(
                entries
                    .iter()
                    .filter_map(|(_, value)| value.as_ref().filter(|value| !value.is_null())),
            )
        }
        ValueExpr::Trend {
            measure,
            function,
            seconds,
            ..
        } => {
            let stream = leaf_entries(leaves, state).map_or(&[][..], |entries| &entries.stream);
            let (before, last) = trend_halves(stream, *seconds, now);
            measure
                .of(
                    aggregate_entries(function, before),
                    aggregate_entries(function, last),
                )
                .map(number_value)
        }
        ValueExpr::Case {
            branches,
            otherwise,
        } => {
            // Every branch is visited, so the leaf cursor stays in step.
            let mut chosen = None;
            for branch in branches {
                let holds = evaluate(program, &branch.when, leaves, state, now);
                if holds && chosen.is_none() {
                    chosen = Some(&branch.then);
                }
            }
            chosen.or(otherwise.as_ref()).map(literal_value)
        }
    }
}

fn leaf_entries<'a, 'b>(
    leaves: &mut impl Iterator<Item = &'b usize>,
    state: &'a PersonState,
) -> Option<&'a LeafEntries> {
    let leaf = leaves.next()?;
    state.leaves.get(leaf)
}
