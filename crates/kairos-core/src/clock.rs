//! Time as an input. Production reads the system clock; tests and history
//! replays drive a manual clock, so windows of days run in microseconds.

use std::sync::Mutex;

use jiff::Timestamp;

pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// Settings structs that hold a clock stay `Debug`.
impl std::fmt::Debug for dyn Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that only moves when told to, and never backwards.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<Timestamp>,
}

impl ManualClock {
    pub fn new(start: Timestamp) -> ManualClock {
        ManualClock {
            now: Mutex::new(start),
        }
    }

    /// Moves the clock to `to`; returns false (and does not move) if `to` is
    /// in the clock's past.
    pub fn advance_to(&self, to: Timestamp) -> bool {
        let mut now = self.now.lock().expect("clock lock");
        if to < *now {
            return false;
        }
        *now = to;
        true
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.lock().expect("clock lock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_forward() {
        let clock = ManualClock::new("2024-01-01T00:00:00Z".parse().unwrap());
        assert!(clock.advance_to("2024-01-02T00:00:00Z".parse().unwrap()));
        assert!(!clock.advance_to("2023-12-31T00:00:00Z".parse().unwrap()));
        assert_eq!(
            clock.now(),
            "2024-01-02T00:00:00Z".parse::<Timestamp>().unwrap()
        );
    }
}
