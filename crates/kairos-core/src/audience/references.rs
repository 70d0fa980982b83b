//! What a definition refers to by name — other audiences, computed traits,
//! model scores — so that a reference to something missing is refused when
//! it is written and something still referred to cannot be deleted.

use std::collections::BTreeSet;

use super::ast::{Expr, ValueExpr};

/// The names a definition reads, each kind sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct References {
    /// `in audience "X"`.
    pub audiences: BTreeSet<String>,
    /// `computed X`.
    pub computed: BTreeSet<String>,
    /// `score X` (a model's output).
    pub scores: BTreeSet<String>,
}

impl References {
    /// The references of an audience condition.
    pub fn of(expr: &Expr) -> References {
        let mut references = References::default();
        references.add(expr);
        references
    }

    /// The references of a computed trait.
    pub fn of_value(expr: &ValueExpr) -> References {
        let mut references = References::default();
        if let ValueExpr::Case { branches, .. } = expr {
            for branch in branches {
                references.add(&branch.when);
            }
        }
        references
    }

    /// Adds the references of another definition.
    pub fn extend(&mut self, other: References) {
        self.audiences.extend(other.audiences);
        self.computed.extend(other.computed);
        self.scores.extend(other.scores);
    }

    fn add(&mut self, expr: &Expr) {
        match expr {
            Expr::And { all: parts } | Expr::Or { any: parts } => {
                parts.iter().for_each(|part| self.add(part));
            }
            Expr::Not { expr } => self.add(expr),
            Expr::Computed { name, .. } => {
                self.computed.insert(name.clone());
            }
            Expr::Score { model, .. } => {
                self.scores.insert(model.clone());
            }
            Expr::InAudience { audience } => {
                self.audiences.insert(audience.clone());
            }
            Expr::Trait { .. }
            | Expr::Aggregate { .. }
            | Expr::Performed { .. }
            | Expr::Recency { .. }
            | Expr::Sequence { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audience::{parse, parse_value};

    #[test]
    fn finds_every_named_reference_under_and_or_not() {
        let expr = parse(
            r#"(in audience "vip" or not computed orders_90d >= 3) and score churn > 0.5 and trait plan = "pro""#,
        )
        .unwrap();
        let references = References::of(&expr);
        assert_eq!(references.audiences, BTreeSet::from(["vip".to_string()]));
        assert_eq!(
            references.computed,
            BTreeSet::from(["orders_90d".to_string()])
        );
        assert_eq!(references.scores, BTreeSet::from(["churn".to_string()]));
    }

    #[test]
    fn a_computed_traits_case_branches_count() {
        let expr = parse_value(
            r#"case when score ltv > 100 then "high" when in audience "vip" then "vip" else "low" end"#,
        )
        .unwrap();
        let references = References::of_value(&expr);
        assert_eq!(references.scores, BTreeSet::from(["ltv".to_string()]));
        assert_eq!(references.audiences, BTreeSet::from(["vip".to_string()]));
        assert!(references.computed.is_empty());
    }
}
