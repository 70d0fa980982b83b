//! The HTTP edge of Kairos: collection, admin and operations APIs.
//!
//! `app(state) -> Router` builds everything, so tests and the binary serve
//! the same thing. Handlers stay thin: they read and check the request, call
//! the pure core ([`kairos_core`]) and the store ([`kairos_store`]), and turn
//! every error into an RFC 9457 problem ([`problem`]).
//!
//! - [`collect`]: the Segment / RudderStack compatible collection endpoints;
//! - [`admin`]: sources, the event log, quarantine, live tail, test faults;
//! - [`profiles`]: the real-time profile API;
//! - [`privacy`]: export, erasure with receipt and audit log, consent;
//! - [`imports`]: bulk CRM trait records;
//! - [`matching`]: the probabilistic matcher on live profiles;
//! - [`audiences`], [`computed_traits`]: definitions, members, values;
//! - [`journeys`]: destinations, journeys, deliveries, dead letters;
//!   [`destinations`]: editing a destination, rotating its secret,
//!   replaying its dead letters;
//! - [`ops`]: health, readiness, metrics, OpenAPI, CORS;
//! - [`access`]: the metrics token, trusted proxies, which routes browsers may call;
//! - [`console`]: console sessions (the admin token for a cookie);
//! - [`web`]: the built-in SDK, console and demo store assets.

pub mod access;
pub mod admin;
pub mod audience_syncs;
pub mod audiences;
pub mod auth;
pub mod body;
pub mod collect;
pub mod computed_traits;
pub mod console;
pub mod decisions;
mod definitions;
pub mod destinations;
pub mod experiments;
pub mod imports;
mod influence;
mod internal;
pub mod journey_counts;
pub mod journeys;
pub mod lists;
pub mod matching;
pub mod metrics;
pub mod models;
pub mod ops;
pub mod privacy;
pub mod problem;
pub mod profiles;
pub mod recommendations;
mod references;
pub mod server;
pub mod training;
pub mod web;

use std::ops::Deref;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::{delete, get, post, put};
use kairos_core::EventType;
use kairos_core::clock::Clock;
use kairos_core::normalize::IngestLimits;
use kairos_store::Store;

pub use admin::FaultPlan;
pub use metrics::Metrics;

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<AppInner>);

pub struct AppInner {
    pub store: Arc<Store>,
    pub engine: kairos_engine::Engine,
    pub admin_token: String,
    /// The metrics token, trusted proxies (see [`access`]).
    pub access: access::AccessSettings,
    pub limits: IngestLimits,
    pub metrics: Metrics,
    pub clock: Arc<dyn Clock>,
    /// `Some` only when the server runs with `--test-faults`.
    pub faults: Option<Mutex<Option<FaultPlan>>>,
    /// Where collection requests are processed; `None` = on the caller's
    /// runtime. See `kairos::serve` (a lower-priority runtime).
    pub ingest_runtime: Option<tokio::runtime::Handle>,
    /// Set with `--clock manual`: what `POST /v1/admin/clock` moves.
    pub manual_clock: Option<Arc<kairos_core::clock::ManualClock>>,
    /// The probabilistic matcher's review suggestions.
    pub matching: matching::MatchState,
    /// The delivery thread (journeys, destinations), to wake on changes;
    /// `None` where nothing delivers (API tests).
    pub deliverer: Option<kairos_deliver::Deliverer>,
    /// Which addresses destinations may point to (checked at creation;
    /// the deliverer checks again at every connection).
    pub address_policy: kairos_deliver::address_policy::AddressPolicy,
}

impl AppState {
    pub fn new(inner: AppInner) -> AppState {
        AppState(Arc::new(inner))
    }
}

impl Deref for AppState {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

/// Every route, in one table; `ops::openapi` documents each of them (a test
/// checks that none is missing).
pub fn app(state: AppState) -> Router {
    let mut router = Router::new()
        .route("/v1/batch", post(collect::batch))
        .route("/v1/b", post(collect::batch))
        .route("/v1/import", post(collect::batch))
        .route("/beacon/v1/batch", post(collect::batch))
        .route(
            "/v1/projects/{write_key}/settings",
            get(collect::segment_settings),
        )
        .route("/sourceConfig", get(collect::rudder_source_config))
        .route("/sourceConfig/", get(collect::rudder_source_config))
        .route(
            "/v1/admin/sources",
            post(admin::create_source).get(admin::list_sources),
        )
        .route("/v1/admin/sources/{id}", get(admin::get_source))
        .route("/v1/admin/sources/{id}/rotate", post(admin::rotate_source))
        .route(
            "/v1/admin/sources/{id}/identity-secret/rotate",
            post(admin::rotate_identity_secret),
        )
        .route(
            "/v1/admin/sources/{id}/tracking-plan",
            put(admin::put_tracking_plan).delete(admin::delete_tracking_plan),
        )
        .route("/v1/admin/events", get(admin::list_events))
        .route("/v1/profiles", get(profiles::search_profiles))
        .route(
            "/v1/profiles/{identifier}",
            get(profiles::get_profile).delete(privacy::erase_profile),
        )
        .route("/v1/profiles/import", post(imports::import_traits))
        .route(
            "/v1/profiles/{identifier}/deliveries",
            get(journeys::profile_deliveries),
        )
        .route(
            "/v1/destinations",
            post(journeys::create_destination).get(journeys::list_destinations),
        )
        .route(
            "/v1/destinations/{id}",
            delete(journeys::delete_destination)
                .get(destinations::get_destination)
                .patch(destinations::edit_destination)
                .put(destinations::edit_destination),
        )
        .route(
            "/v1/destinations/{id}/dead-letters/replay",
            post(destinations::replay_dead_letters),
        )
        .route(
            "/v1/journeys",
            post(journeys::create_journey).get(journeys::list_journeys),
        )
        .route(
            "/v1/offers",
            post(decisions::create_offer).get(decisions::list_offers),
        )
        .route(
            "/v1/offers/{id}",
            get(decisions::get_offer)
                .put(decisions::change_offer)
                .delete(decisions::delete_offer),
        )
        .route("/v1/offers/{id}/evaluate", post(influence::evaluate))
        .route("/v1/decide", post(decisions::decide))
        .route(
            "/v1/items",
            post(recommendations::put_items).get(recommendations::list_items),
        )
        .route(
            "/v1/items/{id}",
            get(recommendations::get_item)
                .patch(recommendations::patch_item)
                .delete(recommendations::delete_item),
        )
        .route("/v1/recommendations", get(recommendations::recommend))
        .route(
            "/v1/in-app/recommendations",
            get(recommendations::page_recommend),
        )
        .route(
            "/v1/recommendations/rules",
            get(recommendations::get_rules).put(recommendations::put_rules),
        )
        .route("/v1/in-app/decide", post(decisions::page_decide))
        .route(
            "/v1/experiments",
            post(experiments::create_experiment).get(experiments::list_experiments),
        )
        .route(
            "/v1/experiments/settings",
            get(experiments::get_settings).put(experiments::put_settings),
        )
        .route(
            "/v1/experiments/{id}",
            get(experiments::get_experiment).delete(experiments::delete_experiment),
        )
        .route(
            "/v1/experiments/{id}/stop",
            post(experiments::stop_experiment),
        )
        .route(
            "/v1/experiments/{id}/assignment",
            get(experiments::assignment),
        )
        .route("/v1/experiments/{id}/results", get(experiments::results))
        .route(
            "/v1/destinations/{id}/test",
            post(journeys::test_destination),
        )
        .route("/v1/journeys/{id}/pause", post(journeys::pause_journey))
        .route("/v1/journeys/{id}/resume", post(journeys::resume_journey))
        .route(
            "/v1/journeys/{id}",
            delete(journeys::delete_journey).get(journey_counts::get_journey),
        )
        .route(
            "/v1/audience-syncs",
            post(audience_syncs::create_sync).get(audience_syncs::list_syncs),
        )
        .route(
            "/v1/audience-syncs/{id}",
            delete(audience_syncs::delete_sync),
        )
        .route(
            "/v1/models",
            post(models::create_model).get(models::list_models),
        )
        .route("/v1/models/{name}", delete(models::delete_model))
        .route("/v1/models/{name}/score", post(models::score_rows))
        .route("/v1/models/{name}/train", post(training::train_model))
        .route("/v1/training-rows", post(training::training_rows))
        .route(
            "/v1/models/{name}/versions/{version}/promote",
            post(models::promote),
        )
        .route(
            "/v1/models/{name}/versions/{version}/retire",
            post(models::retire),
        )
        .route("/v1/lists", get(lists::lists))
        .route("/v1/lists/{name}", get(lists::members))
        .route("/v1/lists/{name}/members", post(lists::add_members))
        .route(
            "/v1/lists/{name}/members/{identifier}",
            delete(lists::remove_member),
        )
        .route("/v1/admin/dead-letters", get(journeys::dead_letters))
        .route("/v1/in-app/stream", get(journeys::in_app_stream))
        .route(
            "/v1/admin/dead-letters/{id}/replay",
            post(journeys::replay_dead_letter),
        )
        .route(
            "/v1/profiles/{identifier}/export",
            get(privacy::export_profile),
        )
        .route(
            "/v1/profiles/{identifier}/consent",
            put(privacy::update_consent),
        )
        .route("/v1/admin/audit", get(privacy::list_audit))
        .route(
            "/v1/audiences",
            post(audiences::create).get(audiences::list),
        )
        .route(
            "/v1/audiences/{id}",
            get(audiences::get)
                .put(audiences::change)
                .delete(audiences::delete),
        )
        .route("/v1/audiences/{id}/members", get(audiences::members))
        .route("/v1/audiences/{id}/sizes", get(audiences::size_history))
        .route("/v1/audiences/preview", post(audiences::preview))
        .route(
            "/v1/computed-traits",
            post(computed_traits::create).get(computed_traits::list),
        )
        .route(
            "/v1/computed-traits/{id}",
            get(computed_traits::get)
                .put(computed_traits::change)
                .delete(computed_traits::delete),
        )
        .route(
            "/v1/computed-traits/{id}/values",
            get(computed_traits::values),
        )
        .route(
            "/v1/computed-traits/preview",
            post(computed_traits::preview),
        )
        .route("/v1/admin/clock", post(audiences::set_clock))
        .route("/v1/admin/matching/run", post(matching::run))
        .route(
            "/v1/admin/matching/suggestions",
            get(matching::list_suggestions),
        )
        .route(
            "/v1/admin/matching/suggestions/{id}",
            delete(matching::reject_suggestion),
        )
        .route(
            "/v1/admin/matching/suggestions/{id}/accept",
            post(matching::accept_suggestion),
        )
        .route(
            "/v1/profiles/{identifier}/events",
            get(profiles::get_events),
        )
        .route(
            "/v1/profiles/{identifier}/merges",
            get(profiles::get_merges),
        )
        .route("/v1/admin/quarantine", get(admin::list_quarantine))
        .route(
            "/v1/admin/quarantine/replay",
            post(admin::replay_all_quarantine),
        )
        .route(
            "/v1/admin/quarantine/{id}",
            delete(admin::discard_quarantined),
        )
        .route(
            "/v1/admin/quarantine/{id}/replay",
            post(admin::replay_quarantined),
        )
        .route("/v1/admin/tail", get(admin::tail))
        .route("/v1/admin/test/faults", post(admin::set_faults))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .route(
            "/v1/console/session",
            post(console::login)
                .get(console::current)
                .delete(console::logout),
        )
        .route("/", get(web::console_page))
        .route("/console/{file}", get(web::console_asset))
        .route("/sdk/kairos.js", get(web::sdk))
        .route("/demo", get(web::demo_redirect))
        .route("/demo/", get(web::demo_page))
        .route("/demo/{file}", get(web::demo_asset));
    for event_type in EventType::ALL {
        let long = format!("/v1/{}", event_type.as_str());
        let short = format!("/v1/{}", &event_type.as_str()[..1]);
        router = router
            .route(&long, collect::single(event_type))
            .route(&short, collect::single(event_type));
    }
    router
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            ops::observe,
        ))
        .layer(axum::middleware::from_fn(ops::cors))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state)
}

/// Serves `app` on `listener` within `limits` until `shutdown` resolves,
/// then drains (see [`server`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    limits: server::ServerLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    server::serve(listener, app(state), limits, shutdown).await
}
