//! Lists a journey adds people to (`add_to_list`) and suppression lists
//! the contact policy checks (`[policy] suppression_lists`). Storage is
//! [`kairos_store::Lists`]; the rule for names is the core's
//! ([`kairos_core::journey::lists`]).

pub use kairos_core::journey::lists::NAME_BYTES_MAX;

use crate::DeliverError;

/// A list name: 1–100 bytes of letters, digits, `-`, `_` or `.`, so it
/// can stand in a URL path as it is.
pub fn checked_name(name: &str) -> Result<(), DeliverError> {
    kairos_core::journey::lists::checked(name).map_err(DeliverError::Invalid)
}

#[cfg(test)]
mod tests {
    #[test]
    fn names() {
        assert!(super::checked_name("call-back_2.0").is_ok());
        assert!(super::checked_name("a/b").is_err());
    }
}
