//! What kairos-deliver's public functions fail with; [`DeliverError::kind`]
//! is the shared kind the HTTP layer's error table answers.
//!
//! Inside the follower the kind decides between retrying and giving up: a
//! store or engine failure is never read as "no profile" or "no
//! messages"; the step returns it and is retried without moving the
//! cursor.

use kairos_core::error::ErrorKind;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeliverError {
    /// A journey definition or a list name is wrong; the message says how
    /// to fix it.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] kairos_store::StoreError),
    #[error(transparent)]
    Engine(#[from] kairos_engine::EngineError),
}

impl DeliverError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            DeliverError::Invalid(_) => ErrorKind::Invalid,
            DeliverError::Store(error) => error.kind(),
            DeliverError::Engine(error) => error.kind(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_come_from_the_failing_crate() {
        assert_eq!(DeliverError::Invalid("x".into()).kind(), ErrorKind::Invalid);
        let stopped = DeliverError::from(kairos_engine::EngineError::Stopped);
        assert_eq!(stopped.kind(), ErrorKind::Stopped);
        let io = DeliverError::from(kairos_store::StoreError::Io("fsync".into()));
        assert_eq!(io.kind(), ErrorKind::Io);
    }
}
