//! Compiling definitions: their event-reading conditions ("leaves"), the
//! index from event names to leaves to definitions, the dependency order
//! of `in audience`, and what holds for someone who has done nothing.

use std::collections::HashMap;

use jiff::Timestamp;

use super::ast::*;
use serde_json::Value;

use super::incremental::{PersonState, evaluate, evaluate_value};
use super::leaves::{Keep, Leaf};

/// What a definition is: an audience (a condition) or a computed trait (a
/// value).
pub(super) enum Body {
    Audience(Expr),
    Computed(ValueExpr),
}

pub(super) struct Compiled {
    pub(super) name: String,
    pub(super) body: Body,
    pub(super) leaves: Vec<usize>,
    pub(super) reads_facts: bool,
    /// Whether it refers to other definitions (`in audience`, `computed`).
    pub(super) reads_derived: bool,
    /// Definitions whose `in audience` / `computed` names this one.
    pub(super) dependents: Vec<usize>,
}

pub struct Program {
    /// Audiences first, then computed traits.
    pub(super) definitions: Vec<Compiled>,
    pub(super) leaves: Vec<Leaf>,
    pub(super) by_event: HashMap<String, Vec<usize>>,
    /// For each leaf, the definitions that read it.
    pub(super) leaf_definitions: Vec<Vec<usize>>,
    /// Each distinct leaf (its compiled form, printed) to its index.
    leaf_ids: HashMap<String, usize>,
    /// Definition indexes in an order where what a definition refers to
    /// (`in audience`, `computed`) comes before it.
    pub(super) order: Vec<usize>,
    /// Each definition's position in `order`.
    pub(super) position: Vec<usize>,
    /// Each definition for someone with no events and no traits: audiences
    /// that hold (`did not perform ...`), computed traits that have a value
    /// (a count of 0). What a person's first appearance must evaluate
    /// besides what their first event touches.
    pub(super) vacuous: Vec<bool>,
    /// Computed traits' values for someone who has done nothing; a person
    /// stores only values that differ from these.
    pub(super) vacuous_values: Vec<Option<Value>>,
    audience_index: HashMap<String, usize>,
    computed_index: HashMap<String, usize>,
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

pub(super) type IdMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<IdHasher>>;

/// The layout of per-person state under a program (how leaves are
/// numbered). Part of the fingerprint, so state kept under another layout
/// (a checkpoint written before identical leaves were shared) is rebuilt
/// by replay rather than read with the wrong leaf numbers.
const STATE_LAYOUT: u64 = 2;

impl Program {
    /// A fingerprint of the definitions, in their order: state kept under
    /// one program (a checkpoint) is valid under another only if they are
    /// equal. FNV-1a over each definition's name and expression, so it is
    /// the same in every build.
    pub fn fingerprint(&self) -> u64 {
        let mut hash = 0xcbf2_9ce4_8422_2325u64 ^ STATE_LAYOUT;
        let mut eat = |bytes: &[u8]| {
            for byte in bytes {
                hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3);
            }
            hash = (hash ^ 0xff).wrapping_mul(0x0000_0100_0000_01b3);
        };
        for definition in &self.definitions {
            eat(definition.name.as_bytes());
            let body = match &definition.body {
                Body::Audience(expr) => serde_json::to_vec(expr),
                Body::Computed(expr) => serde_json::to_vec(expr),
            };
            eat(&body.unwrap_or_default());
        }
        hash
    }

    /// Compiles named audience definitions.
    pub fn compile(audiences: &[(String, Expr)]) -> Result<Program, String> {
        Program::compile_all(audiences, &[])
    }

    /// Compiles audiences and computed traits together; refuses unknown or
    /// circular references (`in audience`, `computed`). Definitions are
    /// placed by name, whatever order they come in (stores list them in
    /// key order), so the same definitions always compile to the same
    /// program — state kept by definition position (a checkpoint) relies
    /// on it.
    pub fn compile_all(
        audiences: &[(String, Expr)],
        computed: &[(String, ValueExpr)],
    ) -> Result<Program, String> {
        let mut audiences: Vec<&(String, Expr)> = audiences.iter().collect();
        audiences.sort_by(|left, right| left.0.cmp(&right.0));
        let mut computed: Vec<&(String, ValueExpr)> = computed.iter().collect();
        computed.sort_by(|left, right| left.0.cmp(&right.0));
        let bodies: Vec<(&String, Body)> = audiences
            .iter()
            .map(|(name, expr)| (name, Body::Audience(expr.clone())))
            .chain(
                computed
                    .iter()
                    .map(|(name, expr)| (name, Body::Computed(expr.clone()))),
            )
            .collect();
        let mut program = Program {
            definitions: Vec::new(),
            leaves: Vec::new(),
            by_event: HashMap::new(),
            leaf_definitions: Vec::new(),
            leaf_ids: HashMap::new(),
            order: Vec::new(),
            position: Vec::new(),
            vacuous: Vec::new(),
            vacuous_values: Vec::new(),
            audience_index: audiences
                .iter()
                .enumerate()
                .map(|(position, (name, _))| (name.clone(), position))
                .collect(),
            computed_index: computed
                .iter()
                .enumerate()
                .map(|(position, (name, _))| (name.clone(), audiences.len() + position))
                .collect(),
        };
        let mut references: Vec<Vec<usize>> = Vec::new();
        for (name, body) in bodies {
            let mut compiled = Compiled {
                name: name.clone(),
                body,
                leaves: Vec::new(),
                reads_facts: false,
                reads_derived: false,
                dependents: Vec::new(),
            };
            let mut referenced = Vec::new();
            match &compiled.body {
                Body::Audience(expr) => {
                    let expr = expr.clone();
                    program.collect_leaves(&expr, &mut compiled, &mut referenced)?
                }
                Body::Computed(expr) => {
                    let expr = expr.clone();
                    program.collect_value_leaves(&expr, &mut compiled, &mut referenced)?
                }
            }
            references.push(referenced);
            program.definitions.push(compiled);
        }
        for (position, referenced) in references.iter().enumerate() {
            for target in referenced {
                program.definitions[*target].dependents.push(position);
            }
        }
        program.order = topological_order(&references).ok_or_else(|| {
            "definitions refer to each other in a circle (`in audience`, `computed`)".to_string()
        })?;
        program.position = vec![0; program.definitions.len()];
        for (position, definition) in program.order.iter().enumerate() {
            program.position[*definition] = position;
        }
        program.leaf_definitions = vec![Vec::new(); program.leaves.len()];
        for (index, definition) in program.definitions.iter().enumerate() {
            for leaf in &definition.leaves {
                if !program.leaf_definitions[*leaf].contains(&index) {
                    program.leaf_definitions[*leaf].push(index);
                }
            }
        }
        program.vacuous_truths();
        Ok(program)
    }

    fn collect_value_leaves(
        &mut self,
        expr: &ValueExpr,
        compiled: &mut Compiled,
        referenced: &mut Vec<usize>,
    ) -> Result<(), String> {
        let leaf = match expr {
            ValueExpr::Case { branches, .. } => {
                for branch in branches {
                    self.collect_leaves(&branch.when, compiled, referenced)?;
                }
                return Ok(());
            }
            ValueExpr::Aggregate {
                function,
                event,
                window,
            } => stream_leaf(event, window, aggregated_property(function), Keep::All),
            ValueExpr::Occurrence { which, event } => stream_leaf(
                event,
                &Window::Ever,
                None,
                match which {
                    Occurrence::First => Keep::Earliest,
                    Occurrence::Last => Keep::Latest,
                },
            ),
            ValueExpr::LatestValue { property, event } => {
                stream_leaf(event, &Window::Ever, Some(property.clone()), Keep::Latest)
            }
            ValueExpr::MostFrequent {
                property,
                event,
                window,
            } => stream_leaf(event, window, Some(property.clone()), Keep::All),
            ValueExpr::Trend {
                function,
                event,
                seconds,
                ..
            } => Leaf::Stream {
                event: event.clone(),
                // Both windows: the last `seconds` and the `seconds` before.
                window: Window::Within {
                    seconds: 2 * seconds,
                },
                property: aggregated_property(function),
                keep: Keep::All,
                recency: None,
                split: Some(*seconds),
            },
        };
        self.push_leaf(leaf, compiled);
        Ok(())
    }

    fn collect_leaves(
        &mut self,
        expr: &Expr,
        compiled: &mut Compiled,
        referenced: &mut Vec<usize>,
    ) -> Result<(), String> {
        let leaf = match expr {
            Expr::And { all: exprs } | Expr::Or { any: exprs } => {
                for expr in exprs {
                    self.collect_leaves(expr, compiled, referenced)?;
                }
                return Ok(());
            }
            Expr::Not { expr } => return self.collect_leaves(expr, compiled, referenced),
            Expr::Trait { .. } | Expr::Score { .. } => {
                compiled.reads_facts = true;
                return Ok(());
            }
            Expr::Computed { name, .. } => {
                let target = self.computed_index.get(name).ok_or_else(|| {
                    format!("`computed {name}`: no such computed trait (create it with POST /v1/computed-traits)")
                })?;
                referenced.push(*target);
                compiled.reads_derived = true;
                return Ok(());
            }
            Expr::InAudience { audience } => {
                let target = self
                    .audience_index
                    .get(audience)
                    .ok_or_else(|| format!("`in audience \"{audience}\"`: no such audience (create it with POST /v1/audiences)"))?;
                referenced.push(*target);
                compiled.reads_derived = true;
                return Ok(());
            }
            Expr::Aggregate {
                function,
                event,
                window,
                ..
            } => stream_leaf(event, window, aggregated_property(function), Keep::All),
            Expr::Performed { event, window, .. } => stream_leaf(event, window, None, Keep::Latest),
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
                split: None,
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
        self.push_leaf(leaf, compiled);
        Ok(())
    }

    /// Adds a leaf, indexed by the event names it reads. Identical leaves
    /// are one: definitions that read the same events the same way (fifty
    /// offers eligible on `count "Product Viewed" within 1d >= 1`) share
    /// one per-person record, so an event is recorded, pruned and kept in
    /// memory once, not once per definition.
    fn push_leaf(&mut self, leaf: Leaf, compiled: &mut Compiled) {
        let key = format!("{leaf:?}");
        if let Some(&id) = self.leaf_ids.get(&key) {
            compiled.leaves.push(id);
            return;
        }
        let id = self.leaves.len();
        self.leaf_ids.insert(key, id);
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
    }

    /// Each definition evaluated for a person with no events and no traits
    /// (no timestamps are involved, so any "now" gives the same answer).
    fn vacuous_truths(&mut self) {
        let mut empty = PersonState::default();
        self.vacuous = vec![false; self.definitions.len()];
        self.vacuous_values = vec![None; self.definitions.len()];
        for position in 0..self.order.len() {
            let definition = self.order[position];
            let compiled = &self.definitions[definition];
            let mut cursor = compiled.leaves.iter();
            match &compiled.body {
                Body::Audience(expr) => {
                    let holds = evaluate(self, expr, &mut cursor, &empty, Timestamp::UNIX_EPOCH);
                    if holds {
                        empty.members.insert(definition);
                    }
                    self.vacuous[definition] = holds;
                }
                Body::Computed(expr) => {
                    let value =
                        evaluate_value(self, expr, &mut cursor, &empty, Timestamp::UNIX_EPOCH);
                    self.vacuous[definition] = value.is_some();
                    // While computing, the empty person holds the values
                    // explicitly (nothing is vacuous yet for them).
                    empty.set_computed(definition, value.clone().unwrap_or(Value::Null));
                    self.vacuous_values[definition] = value;
                }
            }
        }
    }

    /// What a person's first appearance must evaluate besides what their
    /// first event touches: definitions true (or valued) for someone who
    /// has done nothing, and those reading other definitions (whose values
    /// the vacuous evaluation could only assume).
    pub(super) fn first_appearance(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.definitions.len())
            .filter(|index| self.vacuous[*index] || self.definitions[*index].reads_derived)
    }

    pub(super) fn audience_index(&self, name: &str) -> Option<usize> {
        self.audience_index.get(name).copied()
    }

    pub(super) fn computed_index(&self, name: &str) -> Option<usize> {
        self.computed_index.get(name).copied()
    }

    pub fn audience_names(&self) -> impl Iterator<Item = &str> {
        self.definitions
            .iter()
            .filter(|definition| matches!(definition.body, Body::Audience(_)))
            .map(|definition| definition.name.as_str())
    }

    pub fn computed_names(&self) -> impl Iterator<Item = &str> {
        self.definitions
            .iter()
            .filter(|definition| matches!(definition.body, Body::Computed(_)))
            .map(|definition| definition.name.as_str())
    }
}

fn aggregated_property(function: &Aggregate) -> Option<String> {
    match function {
        Aggregate::Count => None,
        Aggregate::Sum(property)
        | Aggregate::Avg(property)
        | Aggregate::Min(property)
        | Aggregate::Max(property)
        | Aggregate::Distinct(property) => Some(property.clone()),
    }
}

fn stream_leaf(event: &EventRef, window: &Window, property: Option<String>, keep: Keep) -> Leaf {
    Leaf::Stream {
        event: event.clone(),
        window: window.clone(),
        property,
        keep,
        recency: None,
        split: None,
    }
}

/// Kahn's algorithm over "definition → definitions it refers to".
pub(super) fn topological_order(references: &[Vec<usize>]) -> Option<Vec<usize>> {
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
