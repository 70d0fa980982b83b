//! Journey definitions: what starts a journey and what it does. The
//! language, its checks and the compiled form are pure and live in the
//! core ([`kairos_core::journey::definition`], re-exported here); this
//! module adds what only kairos-deliver knows — templates are checked in
//! the template language the messages are rendered with ([`crate::email`]).

pub use kairos_core::journey::definition::*;

use serde_json::Value;

use crate::DeliverError;

/// Parses and checks a definition; `destination` resolves a destination
/// name or id to its (id, kind). Errors ([`DeliverError::Invalid`]) say
/// what is wrong and how to fix it.
pub fn compile(
    id: &str,
    name: &str,
    starts_after_seq: u64,
    definition: &Value,
    destination: impl Fn(&str) -> Option<(String, String)>,
) -> Result<CompiledJourney, DeliverError> {
    let checks = Checked { destination };
    kairos_core::journey::definition::compile(id, name, starts_after_seq, definition, &checks)
        .map_err(|invalid| DeliverError::Invalid(invalid.0))
}

/// Destinations from the caller, templates through minijinja.
struct Checked<F> {
    destination: F,
}

impl<F: Fn(&str) -> Option<(String, String)>> Checks for Checked<F> {
    fn destination(&self, name: &str) -> Option<(String, String)> {
        (self.destination)(name)
    }

    fn email_template(&self, template: &EmailTemplate) -> Result<(), String> {
        crate::email::check(template)
    }

    fn message_template(&self, message: &Value) -> Result<(), String> {
        crate::email::check_value(message)
    }
}
