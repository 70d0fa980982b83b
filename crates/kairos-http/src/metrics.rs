//! Prometheus metrics: every metric name is defined here, once.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

pub struct Metrics {
    registry: Registry,
    pub requests: Family<Labels, Counter>,
    pub request_seconds: Family<Labels, Histogram>,
    pub request_bytes: Histogram,
    pub batch_events: Histogram,
    pub events_accepted: Counter,
    pub events_rejected: Family<Labels, Counter>,
    pub events_quarantined: Counter,
    pub events_deduplicated: Counter,
    pub events_suppressed: Counter,
    pub requests_rejected: Family<Labels, Counter>,
    pub log_append_seconds: Histogram,
    pub log_fsync_seconds: Histogram,
    pub log_group_requests: Histogram,
    pub ingest_queue_depth: Gauge,
    pub log_committed_seq: Gauge,
    pub engine_applied_seq: Gauge,
    pub engine_restored_seq: Gauge,
    /// Pages connected to the in-app hub now (set at each scrape).
    pub in_app_pages: Gauge,
    /// Journeys and deliveries: counted on the delivery thread.
    pub delivery: kairos_deliver::metrics::DeliveryMetrics,
    /// The engine's audience work, copied from its counters at each scrape
    /// ([`Metrics::observe_engine`]).
    pub audience_evaluations: Counter,
    pub audience_membership_changes: Family<Labels, Counter>,
    pub model_scorings: Counter,
    pub model_scoring_seconds: Counter<f64, std::sync::atomic::AtomicU64>,
    /// One scrape copies at a time (two at once would both add the change).
    observing: std::sync::Mutex<()>,
}

fn seconds_histogram() -> Histogram {
    // 50 µs .. ~26 s
    Histogram::new(exponential_buckets(0.000_05, 2.0, 20))
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let metrics = Metrics {
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(seconds_histogram),
            request_bytes: Histogram::new(exponential_buckets(64.0, 2.0, 16)),
            batch_events: Histogram::new(exponential_buckets(1.0, 2.0, 13)),
            events_accepted: Counter::default(),
            events_rejected: Family::default(),
            events_quarantined: Counter::default(),
            events_deduplicated: Counter::default(),
            events_suppressed: Counter::default(),
            requests_rejected: Family::default(),
            log_append_seconds: seconds_histogram(),
            log_fsync_seconds: seconds_histogram(),
            log_group_requests: Histogram::new(exponential_buckets(1.0, 2.0, 10)),
            ingest_queue_depth: Gauge::default(),
            log_committed_seq: Gauge::default(),
            engine_applied_seq: Gauge::default(),
            engine_restored_seq: Gauge::default(),
            delivery: Default::default(),
            audience_evaluations: Counter::default(),
            audience_membership_changes: Family::default(),
            model_scorings: Counter::default(),
            model_scoring_seconds: Counter::default(),
            observing: std::sync::Mutex::new(()),
            in_app_pages: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "kairos_http_requests",
            "HTTP requests by route and status",
            metrics.requests.clone(),
        );
        registry.register(
            "kairos_http_request_duration_seconds",
            "HTTP request latency by route",
            metrics.request_seconds.clone(),
        );
        registry.register(
            "kairos_ingest_request_bytes",
            "Collection request body size after decompression",
            metrics.request_bytes.clone(),
        );
        registry.register(
            "kairos_ingest_batch_events",
            "Events per collection request",
            metrics.batch_events.clone(),
        );
        registry.register(
            "kairos_ingest_events_accepted",
            "Events durably appended to the log",
            metrics.events_accepted.clone(),
        );
        registry.register(
            "kairos_ingest_events_rejected",
            "Invalid events by the field at fault",
            metrics.events_rejected.clone(),
        );
        registry.register(
            "kairos_ingest_events_quarantined",
            "Invalid events kept in quarantine",
            metrics.events_quarantined.clone(),
        );
        registry.register(
            "kairos_ingest_events_deduplicated",
            "Events already in the log (same source and messageId)",
            metrics.events_deduplicated.clone(),
        );
        registry.register(
            "kairos_ingest_events_suppressed",
            "Events dropped because they carry an identifier of an erased person",
            metrics.events_suppressed.clone(),
        );
        registry.register(
            "kairos_ingest_requests_rejected",
            "Whole collection requests refused, by reason",
            metrics.requests_rejected.clone(),
        );
        registry.register(
            "kairos_log_append_seconds",
            "Time to write one group commit (before fsync)",
            metrics.log_append_seconds.clone(),
        );
        registry.register(
            "kairos_log_fsync_seconds",
            "Time to fsync one group commit",
            metrics.log_fsync_seconds.clone(),
        );
        registry.register(
            "kairos_log_group_requests",
            "Requests sharing one group commit",
            metrics.log_group_requests.clone(),
        );
        registry.register(
            "kairos_ingest_queue_depth",
            "Requests waiting for the log writer",
            metrics.ingest_queue_depth.clone(),
        );
        registry.register(
            "kairos_in_app_pages",
            "In-app pages connected now (open /v1/in-app/stream requests)",
            metrics.in_app_pages.clone(),
        );
        registry.register(
            "kairos_log_committed_seq",
            "Log position of the latest durable event",
            metrics.log_committed_seq.clone(),
        );
        registry.register(
            "kairos_engine_applied_seq",
            "Log position the engine has applied (profiles, features, scores, audiences); the lag is committed - applied",
            metrics.engine_applied_seq.clone(),
        );
        registry.register(
            "kairos_engine_restored_seq",
            "Log position of the checkpoint this start restored (0: the whole log was replayed)",
            metrics.engine_restored_seq.clone(),
        );
        register_stages(&mut registry, &metrics);
        let connections = crate::server::connection_metrics();
        registry.register(
            "kairos_http_connections_open",
            "Client connections being served",
            connections.open.clone(),
        );
        registry.register(
            "kairos_http_connections_closed",
            "Connections the server closed for a limit, by reason (over_cap, dropped, evicted, header_timeout, idle_timeout)",
            connections.closed.clone(),
        );
        let scoring = kairos_models::metrics::score_metrics();
        registry.register(
            "kairos_model_score_failures",
            "Scores not given, by model and reason (deadline, suspended, stopped, error)",
            scoring.failures.clone(),
        );
        registry.register(
            "kairos_model_score_seconds",
            "Time to score one person with one model",
            scoring.seconds.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }

    /// Brings the engine's counters up to date (at each scrape).
    pub fn observe_engine(&self, counters: &kairos_engine::announcer::EngineCounters) {
        use std::sync::atomic::Ordering::Relaxed;
        let _one_at_a_time = self.observing.lock();
        let catch_up = |counter: &Counter, now: u64| {
            counter.inc_by(now.saturating_sub(counter.get()));
        };
        catch_up(
            &self.audience_evaluations,
            counters.audience_evaluations.load(Relaxed),
        );
        catch_up(&self.model_scorings, counters.model_scorings.load(Relaxed));
        let seconds = counters.model_scoring_nanos.load(Relaxed) as f64 / 1e9;
        let seconds_counted = self.model_scoring_seconds.get();
        if seconds > seconds_counted {
            self.model_scoring_seconds.inc_by(seconds - seconds_counted);
        }
        for (change, total) in [
            ("entered", &counters.audience_entered),
            ("exited", &counters.audience_exited),
        ] {
            let counter = self
                .audience_membership_changes
                .get_or_create(&vec![("change", change.to_string())]);
            catch_up(&counter, total.load(Relaxed));
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }

    pub fn reject_request(&self, reason: &'static str) {
        self.requests_rejected
            .get_or_create(&vec![("reason", reason.to_string())])
            .inc();
    }

    pub fn reject_event(&self, field: &str) {
        // The field names are bounded by the spec; tracking-plan paths are
        // folded into one label to keep cardinality bounded.
        let reason = match field {
            "" => "event",
            field if field.starts_with("properties") => "properties",
            field => field,
        };
        self.events_rejected
            .get_or_create(&vec![("field", reason.to_string())])
            .inc();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// The stages after ingest: audiences, journeys, deliveries.
fn register_stages(registry: &mut Registry, metrics: &Metrics) {
    registry.register(
        "kairos_audience_evaluations",
        "Events the audience engine evaluated for a profile",
        metrics.audience_evaluations.clone(),
    );
    registry.register(
        "kairos_audience_membership_changes",
        "Audience memberships gained (entered) and lost (exited)",
        metrics.audience_membership_changes.clone(),
    );
    registry.register(
        "kairos_model_scorings",
        "Profiles scored with the served models (all models of a person at once)",
        metrics.model_scorings.clone(),
    );
    registry.register(
        "kairos_model_scoring_seconds",
        "Time spent scoring; divided by kairos_model_scorings_total, the mean time per profile",
        metrics.model_scoring_seconds.clone(),
    );
    let delivery = &metrics.delivery;
    registry.register(
        "kairos_journey_entries",
        "People entering a journey, by journey",
        delivery.journey_entries.clone(),
    );
    registry.register(
        "kairos_journey_messages",
        "Messages journeys decided, by journey and status (pending, blocked)",
        delivery.journey_messages.clone(),
    );
    registry.register(
        "kairos_deliveries",
        "Delivery attempts by destination and outcome (delivered, retry, dead, gone)",
        delivery.deliveries.clone(),
    );
    registry.register(
        "kairos_delivery_duration_seconds",
        "Delivery attempt latency by destination",
        delivery.delivery_seconds.clone(),
    );
    registry.register(
        "kairos_trigger_duration_seconds",
        "Event acknowledged to the journey decisions on it durable (events that started or moved a journey)",
        delivery.trigger_seconds.clone(),
    );
}
