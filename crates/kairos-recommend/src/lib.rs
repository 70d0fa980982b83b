//! Real-time recommendations (docs/recommendations.md), kept current by the
//! event stream: every click updates the indexes in place, and the next
//! request already reflects it.
//!
//! - [`session`]: session-based next-item recommendations (VMIS-kNN, the
//!   session k-nearest-neighbour family of Kersbergen, Sprangers & Schelter,
//!   SIGMOD 2022), with bounded memory: the most recent sessions per item.
//!   The same index answers "viewed together" and, fed with orders,
//!   "bought together".
//! - [`popular`]: popular and trending items (decayed counts).
//! - [`live`]: the [`Recommender`] the engine feeds: both indexes, the
//!   leaderboards and each person's recent views, cart and purchases.
//! - [`query`]: answering a request with business rules and reasons.
//! - [`catalog`]: the items that may be recommended.
//! - [`evaluate`]: offline next-item evaluation (HitRate@20, MRR@20,
//!   latency per prediction) on files in the YOOCHOOSE format, for
//!   `kairos evaluate-recommendations` and the peers benchmark.
//!
//! Pure data structures: no I/O besides [`evaluate`]'s reader, no clock
//! (times are the events' own), so a replay of the log rebuilds exactly the
//! same state.

pub mod catalog;
pub mod evaluate;
pub mod interner;
pub mod live;
pub mod popular;
pub mod query;
pub mod session;

pub use catalog::{Catalog, Item};
pub use live::{Interaction, PersonKey, Recommender, Stats};
pub use query::{Inputs, Query, Reason, Recommendation, Strategy};
