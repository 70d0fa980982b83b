//! The audience language (docs/audiences.md): conditions on traits,
//! computed traits, model scores, other audiences, and the person's events
//! — windowed aggregates, recency, sequences — combined with and / or / not;
//! and computed traits ([`ValueExpr`]): values in the same terms.
//!
//! - `lexer` and [`parser`]: text form → [`Expr`] / [`ValueExpr`] (the
//!   JSON form is their serde form), errors with line and column;
//! - [`eval`]: the meaning, as a from-scratch evaluation over a person's
//!   history — the reference;
//! - `program` (compiling: leaves, dependency order, vacuous truths) and
//!   `leaves` (per-person storage of one event condition);
//! - [`incremental`]: per-person leaf state, a dependency index from event
//!   names to definitions, and timers for every moment the passing of time
//!   alone flips a membership. A property test holds it equal to [`eval`]
//!   at every step of random streams, definitions and clock moves.
//!
//! Pure: the engine's shards own an [`incremental::AudienceEngine`] each
//! and announce its membership changes (`kairos-engine`, `announcer`).

pub mod ast;
pub mod eval;
pub mod incremental;
mod leaves;
mod lexer;
pub mod parser;
mod program;
pub mod references;

pub use ast::{Expr, ValueExpr};
pub use references::References;

/// The events membership changes are announced as (by the engine), from
/// the source named [`AUDIENCE_SOURCE`].
pub const ANNOUNCED_ENTERED: &str = "Audience Entered";
/// Audiences an offer owns for its behavioural eligibility (`offer <name>`):
/// kept exact per event like any other, read only by decisions, and never
/// announced — no `Audience Entered`/`Exited` events (with 50 such offers a
/// new visitor's first event would otherwise write 50 announcements), so no
/// journey or sync can start on them. Only offers create them.
pub const QUIET_AUDIENCE_PREFIX: &str = "offer ";

/// Whether membership changes of `audience` are announced.
pub fn is_announced(audience: &str) -> bool {
    !audience.starts_with(QUIET_AUDIENCE_PREFIX)
}
pub const ANNOUNCED_EXITED: &str = "Audience Exited";
pub const AUDIENCE_SOURCE: &str = "kairos-audiences";
pub use parser::{DefinitionError, parse, parse_value};

#[cfg(test)]
mod tests;
