//! The audience language (docs/audiences.md): conditions on traits,
//! computed traits, model scores, other audiences, and the person's events
//! — windowed aggregates, recency, sequences — combined with and / or / not.
//!
//! Status: the language (text form, JSON form, errors with line and column).
//! Incremental evaluation with durable timers is the next step of the
//! audiences issue.

pub mod ast;
pub mod parser;

pub use ast::Expr;
pub use parser::{DefinitionError, parse};

#[cfg(test)]
mod tests;
