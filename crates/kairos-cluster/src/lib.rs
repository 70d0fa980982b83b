//! Kairos on a NATS JetStream cluster: the building blocks (issue 17, step 2
//! of docs/cluster.md §13).
//!
//! `kairos serve` does **not** use this crate yet: one process on its
//! embedded store stays the default, and the `--cluster` mode that will run
//! on these blocks is step 3 onwards. What is here, each against a real
//! `nats-server` (see `tests/`):
//!
//! - [`connect`]: a client for several server URLs, with timeouts and
//!   endless reconnects, and a JetStream context whose publishes are bounded
//!   in flight ([`Cluster`]).
//! - [`setup`]: the streams and buckets of docs/cluster.md §2, created
//!   idempotently; an existing stream with another configuration is an error
//!   that names the fields that differ ([`Error::StreamConflict`]).
//! - [`publish`]: a batch of events to `kairos.events.<p>`, each with its
//!   `Nats-Msg-Id`, answered only once every publish is acknowledged by the
//!   stream (a quorum of its replicas), retried with the same id until a
//!   deadline (§3.1).
//! - [`lease`]: partition leases in the `kairos_leases` bucket, taken and
//!   renewed by compare-and-set on the key's revision, expired by the server
//!   through a per-message TTL (§4.2).
//! - [`chain`]: fencing chains — a subject only the owner appends to, every
//!   append expecting the chain's last sequence, so a deposed owner's next
//!   write is refused by the stream leader whatever its clock says (§4.3).
//! - [`batch`]: JetStream atomic batches (ADR-50, nats-server ≥ 2.12) over
//!   plain request/reply: all messages stored or none (§5.2).
//!
//! Everything is async (tokio) and talks to NATS only; nothing here knows
//! about events, profiles or the engine.

pub mod batch;
pub mod chain;
pub mod connect;
mod error;
pub mod lease;
pub mod publish;
pub mod setup;

pub use batch::{BatchAck, BatchMessage, publish_atomic_batch};
pub use chain::Chain;
pub use connect::{Cluster, ConnectConfig, connect};
pub use error::Error;
pub use lease::{Lease, LeaseTimings, Leases};
pub use publish::{EventAck, EventMessage, publish_events};
pub use setup::{Layout, ensure_layout};

/// Header carrying the id of one write on a chain, so a retry that finds
/// `wrong last sequence` can tell "my earlier attempt landed" from "deposed"
/// (§4.3).
pub const WRITE_ID_HEADER: &str = "Kairos-Write";

/// Header carrying an event's `receivedAt` in ms, readable without
/// decrypting the payload (§3.1).
pub const RECEIVED_HEADER: &str = "Kairos-Received";
