//! The kinds of failure every Kairos crate reports.
//!
//! Each library crate has its own error type (`StoreError`,
//! `EngineError`, `DeliverError`, ...) with a `kind()` returning one of
//! these. Callers decide on the kind, never on a message: the HTTP layer
//! maps each kind to one status, problem code and title in a single table
//! (kairos-http's `problem::KIND_TABLE`), and background loops retry the
//! kinds that are [`ErrorKind::is_retryable`] without moving their cursor.

/// What went wrong, in terms a caller can act on.
///
/// Not `#[non_exhaustive]` on purpose: the HTTP table matches every kind,
/// so adding one fails to compile until it has a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The input is wrong (a definition, a parameter); the caller fixes it.
    Invalid,
    /// A create used a name something of the same kind already has.
    NameTaken,
    /// The thing named does not exist.
    NotFound,
    /// The request is valid but the current state forbids it (in use,
    /// disabled, still referenced).
    Conflict,
    /// A bounded queue is full; the same request later will succeed.
    Overloaded,
    /// A component (log writer, engine) has stopped; nothing was done.
    Stopped,
    /// Reading or writing the disk failed (including fsync); nothing was
    /// acknowledged. Distinct from [`ErrorKind::Corrupt`]: the data may be
    /// fine and a retry may succeed.
    Io,
    /// Stored data cannot be read as what it should be.
    Corrupt,
    /// A bug or an unexpected state; details are only in the log.
    Internal,
}

impl ErrorKind {
    /// Every kind, for tables and their tests.
    pub const ALL: [ErrorKind; 9] = [
        ErrorKind::Invalid,
        ErrorKind::NameTaken,
        ErrorKind::NotFound,
        ErrorKind::Conflict,
        ErrorKind::Overloaded,
        ErrorKind::Stopped,
        ErrorKind::Io,
        ErrorKind::Corrupt,
        ErrorKind::Internal,
    ];

    /// Whether the same operation may succeed later unchanged: a loop that
    /// gets one of these keeps its cursor and tries again after a pause.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::Overloaded | ErrorKind::Stopped | ErrorKind::Io
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_each_kind_once() {
        let unique: std::collections::HashSet<_> = ErrorKind::ALL.iter().collect();
        assert_eq!(unique.len(), ErrorKind::ALL.len());
    }

    #[test]
    fn disk_failures_are_retryable_and_corruption_is_not() {
        assert!(ErrorKind::Io.is_retryable());
        assert!(!ErrorKind::Corrupt.is_retryable());
        assert!(!ErrorKind::NameTaken.is_retryable());
    }
}
