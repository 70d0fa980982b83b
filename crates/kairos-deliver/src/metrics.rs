//! What the delivery thread counts: journey entries and decisions, each
//! delivery attempt by destination and outcome, with its latency. The
//! families live here so the follower and workers can count; kairos-http
//! gives them their names on `/metrics` (`kairos_http::metrics`).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

pub type Labels = Vec<(&'static str, String)>;

#[derive(Clone)]
pub struct DeliveryMetrics {
    /// People entering a journey, by journey name.
    pub journey_entries: Family<Labels, Counter>,
    /// Messages journeys decided, by journey and status (`pending`, or
    /// `blocked` by the contact policy).
    pub journey_messages: Family<Labels, Counter>,
    /// Delivery attempts by destination name and outcome (`delivered`,
    /// `retry`, `dead`, `gone`).
    pub deliveries: Family<Labels, Counter>,
    /// How long each attempt took, by destination name.
    pub delivery_seconds: Family<Labels, Histogram>,
    /// Trigger latency: from an event's acknowledgement (`received_at`) to
    /// the effects stage's decisions on it being durable, for events that
    /// started or moved a journey (wall clock; meaningless under
    /// `--clock manual`).
    pub trigger_seconds: Histogram,
}

fn attempt_histogram() -> Histogram {
    // 1 ms .. ~65 s: loopback receivers to the attempt timeout.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

impl Default for DeliveryMetrics {
    fn default() -> Self {
        DeliveryMetrics {
            journey_entries: Family::default(),
            journey_messages: Family::default(),
            deliveries: Family::default(),
            delivery_seconds: Family::new_with_constructor(attempt_histogram),
            // 0.5 ms .. ~33 s.
            trigger_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 17)),
        }
    }
}
