//! The pure domain of Kairos: no I/O, no clock reads, no threads.
//!
//! Everything here takes its inputs (including "now") as arguments and
//! returns values, so the same code runs in the server, in replays of the
//! log, and in tests that drive days of time in microseconds.
//!
//! - [`request`] splits a collection request body into raw events;
//! - [`normalize`] validates one raw event and turns it into an [`Event`]
//!   (type, identifiers, skew-corrected timestamps, normalized traits), or
//!   reports every problem with it, field by field;
//! - [`tracking_plan`] checks track events against per-source JSON Schemas;
//! - [`event`] is the normalized event the log stores;
//! - [`clock`] is time as an input (system or manual); [`duration`]
//!   reads durations written as `30m`, `7d`;
//! - [`identity`] resolves an event's identifiers to a profile (identity
//!   graph with per-type limits, priorities and blocked values);
//! - [`profile`] is one person's state, updated event by event;
//! - [`error`] is the kinds of failure every crate's errors report;
//! - [`matching`] links records of people with typos (Fellegi–Sunter);
//! - [`journey`] is what journey definitions mean and what the contact
//!   policy decides (kairos-deliver's effects stage drives both).
//!
//! ```
//! use kairos_core::{normalize::{normalize_event, Arrival, IngestLimits}, request::parse_batch};
//! let body = br#"{"batch":[{"type":"track","event":"Signed Up","userId":"u1"}]}"#;
//! let limits = IngestLimits::default();
//! let request = parse_batch(body, &limits).unwrap();
//! let arrival = Arrival {
//!     source_id: "src_1",
//!     received_at: "2024-05-01T12:00:00Z".parse().unwrap(),
//!     batch_sent_at: request.sent_at,
//!     path_type: None,
//!     limits: &limits,
//!     plan: None,
//! };
//! let event = normalize_event(request.events[0], &arrival).unwrap();
//! assert_eq!(event.event.as_deref(), Some("Signed Up"));
//! assert_eq!(event.timestamp, arrival.received_at); // no client time: received time
//! ```

pub mod audience;
pub mod clock;
pub mod duration;
pub mod error;
pub mod event;
pub mod identity;
pub mod journey;
pub mod matching;
pub mod normalize;
pub mod profile;
pub mod request;
pub mod tracking_plan;

pub use event::{Event, EventType};
