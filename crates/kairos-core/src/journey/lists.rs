//! The rule for list names: lists a journey adds people to (`add_to_list`)
//! and suppression lists the contact policy checks. Storage is
//! kairos-store's `Lists`.

/// Bytes a list name may have.
pub const NAME_BYTES_MAX: usize = 100;

/// A list name: 1–100 bytes of letters, digits, `-`, `_` or `.`, so it
/// can stand in a URL path as it is.
pub fn checked(name: &str) -> Result<(), String> {
    let name = name.trim();
    let valid = !name.is_empty()
        && name.len() <= NAME_BYTES_MAX
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "list name {name:?}: use 1 to {NAME_BYTES_MAX} letters, digits, '-', '_' or '.', e.g. \"call-back\""
        ))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names() {
        assert!(super::checked("call-back_2.0").is_ok());
        assert!(super::checked("").is_err());
        assert!(super::checked("a/b").is_err());
        assert!(super::checked(&"x".repeat(101)).is_err());
    }
}
