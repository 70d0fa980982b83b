//! The audience language's syntax tree. Its serde form is the JSON form of
//! a definition (the API and the console send and receive it).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Expr {
    And {
        all: Vec<Expr>,
    },
    Or {
        any: Vec<Expr>,
    },
    Not {
        expr: Box<Expr>,
    },
    /// `trait plan = "pro"`, `trait email exists`.
    Trait {
        name: String,
        test: ValueTest,
    },
    /// `computed orders_90d >= 3`: a computed trait's value.
    Computed {
        name: String,
        test: ValueTest,
    },
    /// `score churn > 0.8`: a model score (models arrive with a later issue).
    Score {
        model: String,
        op: CmpOp,
        value: f64,
    },
    /// `in audience "big-spenders"`.
    InAudience {
        audience: String,
    },
    /// `count "Support Contacted" within 30d > 3`,
    /// `sum revenue of "Order Completed" within 365d > 1000000`.
    Aggregate {
        function: Aggregate,
        event: EventRef,
        window: Window,
        op: CmpOp,
        value: f64,
    },
    /// `performed "Product Viewed" within 7d`; `did not perform ...`.
    Performed {
        event: EventRef,
        window: Window,
        negated: bool,
    },
    /// `last "Order Completed" more than 90d ago`.
    Recency {
        which: Occurrence,
        event: EventRef,
        relation: Relation,
        ago_seconds: u64,
    },
    /// `"Cart Viewed" then "Order Completed" within 1d`;
    /// `... not followed by ...`: A with no B within T after it.
    Sequence {
        first: EventRef,
        then: EventRef,
        within_seconds: u64,
        negated: bool,
    },
}

/// An event name with optional property filters (`where sku = "X"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<Filter>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Filter {
    /// A property path, dots for nesting: `product.category`.
    pub property: String,
    pub test: ValueTest,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "function", content = "property", rename_all = "snake_case")]
pub enum Aggregate {
    Count,
    Sum(String),
    Avg(String),
    Min(String),
    Max(String),
    /// Distinct values of a property.
    Distinct(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Window {
    /// All of the person's history.
    Ever,
    /// The last `seconds` before now (a rolling window).
    Within { seconds: u64 },
    /// Event time from `from` (inclusive) to `to` (exclusive).
    Between {
        from: jiff::Timestamp,
        to: jiff::Timestamp,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Occurrence {
    First,
    Last,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Relation {
    MoreThan,
    LessThan,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CmpOp {
    #[serde(rename = "=")]
    Eq,
    #[serde(rename = "!=")]
    Ne,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
}

impl CmpOp {
    pub fn holds(self, ordering: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            CmpOp::Eq => ordering == Equal,
            CmpOp::Ne => ordering != Equal,
            CmpOp::Gt => ordering == Greater,
            CmpOp::Ge => ordering != Less,
            CmpOp::Lt => ordering == Less,
            CmpOp::Le => ordering != Greater,
        }
    }
}

/// A test of one value (a trait, computed trait or event property).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "test", rename_all = "snake_case")]
pub enum ValueTest {
    Compare { op: CmpOp, value: Literal },
    In { values: Vec<Literal> },
    Contains { text: String },
    Exists,
    Missing,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Literal {
    Bool(bool),
    Number(f64),
    /// Dates are written bare (`2024-01-01`) and kept as RFC 3339 text.
    Text(String),
}

/// A computed trait's definition: a value per person, kept current like an
/// audience (docs/audiences.md, "Computed traits").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ValueExpr {
    /// `count "Order Completed" within 90d`, `sum revenue of ... within 365d`:
    /// a number (`avg`, `min`, `max` of no values: no value).
    Aggregate {
        function: Aggregate,
        event: EventRef,
        window: Window,
    },
    /// `first "X"` / `last "X"`: when it first or last happened (RFC 3339).
    Occurrence { which: Occurrence, event: EventRef },
    /// `last plan of "Plan Viewed"`: the property on the latest matching event.
    LatestValue { property: String, event: EventRef },
    /// `most frequent category of "Product Viewed" within 90d`: the value
    /// seen most often (ties: the smallest value).
    MostFrequent {
        property: String,
        event: EventRef,
        window: Window,
    },
    /// `trend sum revenue of "Order Completed" within 30d`: how the
    /// aggregate over the last window compares with the window just before
    /// it (a rate of change: spend trend, usage drop). Time alone moves it,
    /// exactly: an event counts in "now" for one window, then in "before".
    Trend {
        measure: TrendMeasure,
        function: Aggregate,
        event: EventRef,
        /// The length of each of the two windows.
        seconds: u64,
    },
    /// `case when <condition> then <value> ... else <value> end`: the value
    /// of the first branch whose condition holds (RFM scores, tiers).
    Case {
        branches: Vec<CaseBranch>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        otherwise: Option<Literal>,
    },
}

/// What a [`ValueExpr::Trend`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrendMeasure {
    /// `trend`: (now − before) / before, a fraction (−0.5 = halved); no
    /// value when "before" is 0 or has no value (no baseline to compare).
    Relative,
    /// `change`: now − before, in the aggregate's own unit.
    Difference,
}

impl TrendMeasure {
    /// The measure from the aggregates over the earlier and the last window.
    pub fn of(self, before: Option<f64>, now: Option<f64>) -> Option<f64> {
        let (before, now) = (before?, now?);
        match self {
            TrendMeasure::Relative => (before != 0.0).then(|| (now - before) / before.abs()),
            TrendMeasure::Difference => Some(now - before),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseBranch {
    pub when: Expr,
    pub then: Literal,
}
