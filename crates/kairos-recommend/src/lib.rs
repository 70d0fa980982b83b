//! Real-time recommendations (docs/recommendations.md), kept current by the
//! event stream: every click updates the indexes in place, and the next
//! request already reflects it.
//!
//! - [`session`]: session-based next-item recommendations (VMIS-kNN, the
//!   session k-nearest-neighbour family of Kersbergen, Sprangers & Schelter,
//!   SIGMOD 2022), with bounded memory: the most recent sessions per item.
//!   The same index answers "viewed together" and, fed with orders,
//!   "bought together".
//! - [`evaluate`]: offline next-item evaluation (HitRate@20, MRR@20,
//!   latency per prediction) on files in the YOOCHOOSE format, for
//!   `kairos evaluate-recommendations` and the peers benchmark.
//!
//! Pure data structures: no I/O besides [`evaluate`]'s reader, no clock
//! (times are the events' own), so a replay of the log rebuilds exactly the
//! same state.

pub mod evaluate;
pub mod session;
