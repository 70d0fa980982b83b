//! Compiling definitions: their event-reading conditions ("leaves"), the
//! index from event names to leaves to definitions, the dependency order
//! of `in audience`, and what holds for someone who has done nothing.

use std::collections::HashMap;

use jiff::Timestamp;

use super::ast::*;
use super::incremental::{PersonState, evaluate};
use super::leaves::{Keep, Leaf};

pub(super) struct Compiled {
    pub(super) name: String,
    pub(super) expr: Expr,
    pub(super) leaves: Vec<usize>,
    pub(super) reads_facts: bool,
    /// Whether it uses `in audience` (memberships are then looked up).
    pub(super) reads_audiences: bool,
    /// Definitions whose `in audience` names this one.
    pub(super) dependents: Vec<usize>,
}

pub struct Program {
    pub(super) definitions: Vec<Compiled>,
    pub(super) leaves: Vec<Leaf>,
    pub(super) by_event: HashMap<String, Vec<usize>>,
    /// For each leaf, the definitions that read it.
    pub(super) leaf_definitions: Vec<Vec<usize>>,
    /// Definition indexes in an order where `in audience` targets come first.
    pub(super) order: Vec<usize>,
    /// Each definition's position in `order`.
    pub(super) position: Vec<usize>,
    /// Definitions true for someone with no events and no traits (e.g.
    /// `did not perform ...`): what a person's first appearance evaluates
    /// besides what their first event touches.
    pub(super) vacuous: Vec<bool>,
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
    pub(super) fn first_appearance(&self) -> impl Iterator<Item = usize> + '_ {
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
