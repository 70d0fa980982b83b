//! `kairos serve`: open the store, print how to connect, serve until a signal.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use kairos_http::{AppInner, AppState, Metrics};
use kairos_store::Store;
use tracing_subscriber::EnvFilter;

use crate::config::ServeConfig;

/// After the HTTP server has stopped, blocking tasks still running (an
/// in-app page's catch-up, an erasure's compaction) get this long.
const BLOCKING_TASKS_STOP_MAX: Duration = Duration::from_secs(2);

pub fn run(config: ServeConfig) -> anyhow::Result<()> {
    init_logging(config.json_logs);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(serve(config));
    runtime.shutdown_timeout(BLOCKING_TASKS_STOP_MAX);
    result
}

/// The owner of every long-lived thread `kairos serve` starts besides
/// HTTP's: stops them in order when stopped or dropped (an error on the
/// way out stops them too). HTTP stops first (in `serve`): no request
/// can reach a stopped part. Then the effects stage (it reads the
/// engine), the delivery workers, the engine (router, shards, announcer:
/// what it announced is appended first), and last the store makes every
/// write durable. docs/architecture.md, "Threads and their owners".
struct Running {
    store: Arc<Store>,
    engine: Option<kairos_engine::Engine>,
    deliverer: Option<kairos_deliver::Deliverer>,
    stopped: bool,
}

impl Running {
    fn stop(&mut self) {
        if std::mem::replace(&mut self.stopped, true) {
            return;
        }
        let started = std::time::Instant::now();
        let mut clean = true;
        if let Some(deliverer) = self.deliverer.take() {
            clean &= deliverer.stop();
        }
        if let Some(engine) = self.engine.take() {
            clean &= engine.stop();
        }
        if let Err(error) = self.store.sync_all() {
            tracing::error!(%error, "the last writes could not be made durable");
            clean = false;
        }
        let took_ms = started.elapsed().as_millis() as u64;
        tracing::info!(
            clean,
            took_ms,
            "journeys, deliveries and the engine stopped"
        );
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Text logs are coloured only on a terminal (and without `NO_COLOR`):
/// a log file or a collector must not receive escape codes.
fn init_logging(json: bool) {
    use std::io::IsTerminal;
    let filter = EnvFilter::try_from_env("KAIROS_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,fjall=warn,lsm_tree=warn"));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour && !json)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let store = Store::open(&config.data_dir, config.store.clone())
        .with_context(|| format!("opening the data directory {}", config.data_dir.display()))?;
    let store = Arc::new(store);
    // A token the operator set is never printed (logs are collected and
    // kept); only a generated one is, as the user has no other copy at hand.
    let (admin_token, token_line) = match &config.admin_token {
        Some(token) => {
            let origin = config
                .admin_token_origin
                .as_deref()
                .unwrap_or("the configuration");
            (
                token.clone(),
                format!("admin token: set from {origin} (not printed)"),
            )
        }
        None => {
            let token = store.stored_admin_token()?;
            let line = format!("admin token (generated, stored in the data directory): {token}");
            (token, line)
        }
    };
    // The manual clock resumes first: everything below is dated on it.
    if let (Some(clock), Some(saved)) = (&config.manual_clock, store.definitions.manual_clock()) {
        clock.advance_to(saved);
        tracing::info!(now = %saved, "manual clock resumed where it was set last");
    }
    let clock = config.engine.clock.clone();
    let demo_key = if config.demo {
        Some(crate::demo::ensure_demo(&store, &config.engine.rules, clock.now()).await?)
    } else {
        None
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let address = listener.local_addr()?;
    println!("Kairos listening on http://{address}");
    println!("  console: http://{address}/");
    for package in kairos_http::web::missing_packages() {
        println!(
            "  warning: web/{package} is not built into this binary (its pages answer 503): install Node.js 18+ and npm, run `cd web/{package} && npm ci && npm run build`, then rebuild"
        );
    }
    println!("  data directory: {}", config.data_dir.display());
    println!("  {token_line}");
    if let Some(key) = &demo_key {
        println!("  demo source write key: {key}");
        println!(
            "  try: curl -u {key}: http://{address}/v1/track -d '{{\"userId\":\"u1\",\"event\":\"Hello\"}}'"
        );
    }
    if !config.store.fsync {
        tracing::warn!("--unsafe-no-fsync: events are acknowledged before they are fsynced");
    }
    tracing::info!(%address, partitions = store.log.partition_count(), "serving");
    apply_configured_definitions(
        &store,
        &config.audiences,
        &config.computed_traits,
        clock.now(),
    )?;
    kairos_models::set_score_timeout(config.score_timeout);
    if let Some(library) = &config.onnxruntime
        && let Err(error) = kairos_models::init_onnx(Some(library))
    {
        anyhow::bail!("[models] onnxruntime: {error}");
    }
    // Models before the engine: the start-up replay computes every score.
    let models: Vec<kairos_models::ModelSpec> = store
        .models
        .all()
        .into_iter()
        .filter_map(|record| serde_json::from_value(record).ok())
        .collect();
    let (served, problems) = kairos_models::ModelSet::load(&models);
    for problem in problems {
        tracing::warn!(%problem, "model not served");
    }
    if let Ok(mut slot) = config.engine.models.write() {
        *slot = Arc::new(served);
    }
    // The effects stage acts on what the stored journeys and syncs name;
    // the shards hand those events over with their person.
    let (effects_link, effects_tap) =
        kairos_engine::effects_feed::channel(kairos_deliver::effects_interest(&store));
    let mut engine_settings = config.engine.clone();
    engine_settings.effects = Some(effects_link);
    let engine = kairos_engine::Engine::start(store.clone(), engine_settings)?;
    let mut running = Running {
        store: store.clone(),
        engine: Some(engine.clone()),
        deliverer: None,
        stopped: false,
    };
    let metrics = Metrics::new();
    let deliverer = kairos_deliver::Deliverer::start(
        store.clone(),
        Arc::new(config.engine.rules.clone()),
        config.delivery.clone(),
        engine.clone(),
        effects_tap,
        metrics.delivery.clone(),
    )?;
    running.deliverer = Some(deliverer.clone());
    let ingest_runtime = ingest_runtime()?;
    let state = AppState::new(AppInner {
        engine,
        store,
        admin_token,
        access: config.access.clone(),
        limits: config.limits,
        metrics,
        // The engine's clock: under `--clock manual` the API dates what it
        // receives and creates on the same clock the engine decides on.
        clock: clock.clone(),
        faults: config.test_faults.then(|| Mutex::new(None)),
        matching: Default::default(),
        ingest_runtime: Some(ingest_runtime.handle().clone()),
        manual_clock: config.manual_clock.clone(),
        deliverer: Some(deliverer),
        address_policy: config.delivery.addresses,
    });
    // The file's offers need the running engine (their eligibility
    // audiences are installed in it) and go in before any request.
    if let Err(error) = crate::configured_offers::apply(&state, &config.offers).await {
        // Stopped as at the end below: a runtime and threads are not
        // dropped on a runtime worker.
        ingest_runtime.shutdown_background();
        tokio::task::spawn_blocking(move || drop(running)).await?;
        return Err(error);
    }
    // Each audience's size over time: a point a minute (and whenever
    // definitions change or the manual clock moves).
    let sampler_state = state.clone();
    let sampler = tokio::spawn(async move {
        let mut every_minute = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            every_minute.tick().await;
            if let Err(problem) = kairos_http::audiences::record_sizes(&sampler_state).await {
                tracing::warn!(detail = %problem.detail, "recording audience sizes failed");
            }
        }
    });
    let sweeper = tokio::spawn(expire_decisions(
        state.store.clone(),
        clock.clone(),
        config.decision_retention,
    ));
    if config.demo {
        // The demo's extras must not keep the server from starting.
        match crate::demo::ensure_demo_store(&state).await {
            Ok(()) => println!("  demo store: http://{address}/demo/"),
            Err(error) => {
                tracing::warn!(%error, "the demo store's model, audience or journey could not be made");
                println!("  demo store: http://{address}/demo/ (without its journey: {error})");
            }
        }
    }
    let server_limits = connection_limits_within_descriptors(config.server);
    let engine = state.engine.clone();
    kairos_http::serve(listener, state, server_limits, shutdown_signal()).await?;
    sampler.abort();
    sweeper.abort();
    // Before the engine stops: everything routed so far, so the next start
    // replays nothing.
    checkpoint_at_shutdown(&engine).await;
    // Dropping a runtime inside another one would block it.
    ingest_runtime.shutdown_background();
    // Joins threads: off the runtime's workers.
    tokio::task::spawn_blocking(move || {
        let mut running = running;
        running.stop();
    })
    .await?;
    tracing::info!("stopped");
    Ok(())
}

/// The longest a clean shutdown waits for its checkpoint; past it the
/// next start replays from the previous one (nothing is lost either way).
const SHUTDOWN_CHECKPOINT_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// A checkpoint of everything routed, so the next start replays nothing.
async fn checkpoint_at_shutdown(engine: &kairos_engine::Engine) {
    match tokio::time::timeout(SHUTDOWN_CHECKPOINT_WAIT, engine.checkpoint()).await {
        Ok(Ok(seq)) => tracing::info!(seq, "checkpoint written at shutdown"),
        Ok(Err(error)) => tracing::warn!(%error, "no checkpoint at shutdown"),
        Err(_) => tracing::warn!("checkpoint at shutdown took too long; left"),
    }
}

/// Creates the config file's audiences and computed traits, or changes
/// their definitions, before the engine starts (it backfills what it
/// loads). Definitions made through the API and absent from the file stay.
fn apply_configured_definitions(
    store: &Store,
    audiences: &[crate::config::AudienceConfig],
    computed_traits: &[crate::config::AudienceConfig],
    now: jiff::Timestamp,
) -> anyhow::Result<()> {
    use kairos_core::audience::{parse, parse_value};
    use kairos_store::DefinitionKind;
    let configured = |list: &[crate::config::AudienceConfig], name: &str| {
        list.iter().any(|entry| entry.name.trim() == name)
    };
    let mut audience_exprs = Vec::new();
    for record in store.definitions.list(DefinitionKind::Audience) {
        if !configured(audiences, &record.name) {
            audience_exprs.push((record.name.clone(), parse(&record.definition)?));
        }
    }
    for audience in audiences {
        audience_exprs.push((
            audience.name.trim().to_string(),
            parse(&audience.definition)?,
        ));
    }
    let mut computed_exprs = Vec::new();
    for record in store.definitions.list(DefinitionKind::ComputedTrait) {
        if !configured(computed_traits, &record.name) {
            computed_exprs.push((record.name.clone(), parse_value(&record.definition)?));
        }
    }
    for computed in computed_traits {
        computed_exprs.push((
            computed.name.trim().to_string(),
            parse_value(&computed.definition)?,
        ));
    }
    kairos_core::audience::incremental::Program::compile_all(&audience_exprs, &computed_exprs)
        .map_err(|problem| {
            anyhow::anyhow!("definitions in the config file and the store: {problem}")
        })?;
    for (kind, list) in [
        (DefinitionKind::Audience, audiences),
        (DefinitionKind::ComputedTrait, computed_traits),
    ] {
        for entry in list {
            let name = entry.name.trim();
            match store.definitions.get(kind, name) {
                Some(record) if record.definition == entry.definition => {}
                Some(record) => {
                    store
                        .definitions
                        .change(kind, &record.id, &entry.definition)?;
                }
                None => {
                    store
                        .definitions
                        .create(kind, name, &entry.definition, now)?;
                }
            }
        }
    }
    Ok(())
}

/// Scheduling priority of the ingest runtime's threads. Measured on the
/// 2-core machine (docs/benchmarks.md): nice 0 → profile read p99 3.2 ms,
/// nice 4 → 2.5 ms with ingest unchanged, nice 10 → 2.7 ms but ingest −15 %.
const INGEST_NICE: i32 = 4;

/// The runtime collection requests are processed on: as many threads as
/// cores, at a slightly lower scheduling priority, so that on a saturated
/// machine the kernel runs the main runtime's short requests (profile reads,
/// health checks) first.
fn ingest_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .thread_name("kairos-ingest")
        .enable_all()
        .on_thread_start(|| {
            // SAFETY: setpriority on the calling thread's id; no memory is touched.
            unsafe {
                let thread = libc::gettid() as libc::id_t;
                libc::setpriority(libc::PRIO_PROCESS, thread, INGEST_NICE);
            }
        })
        .build()
}

/// Descriptors kept for everything but client connections: the store's
/// files, outbound deliveries, over-cap answers in progress.
const DESCRIPTORS_RESERVED: u64 = 512;

/// Raises the open-files limit to its hard maximum (as Go's runtime does)
/// and, if even that cannot hold `connections_max` connections besides
/// what the rest of the process needs, lowers the cap so that accepting
/// never fails for lack of descriptors.
fn connection_limits_within_descriptors(
    mut limits: kairos_http::server::ServerLimits,
) -> kairos_http::server::ServerLimits {
    let mut rlimit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    let soft = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rlimit) != 0 {
            return limits;
        }
        if rlimit.rlim_cur < rlimit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: rlimit.rlim_max,
                rlim_max: rlimit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                rlimit.rlim_cur = rlimit.rlim_max;
            }
        }
        rlimit.rlim_cur
    };
    let room = soft.saturating_sub(DESCRIPTORS_RESERVED).max(1);
    if (limits.connections_max as u64) > room {
        tracing::warn!(
            configured = limits.connections_max,
            open_files_limit = soft,
            serving = room,
            "server.connections_max is above what the open-files limit allows; raise `ulimit -n` to serve more"
        );
        limits.connections_max = room as usize;
    }
    limits
}

/// Resolves at the first SIGINT or SIGTERM; a second one while the
/// server stops exits at once (status 130, without the clean stop), the
/// operator's way out if a stop ever hangs.
async fn shutdown_signal() {
    signal().await;
    tracing::info!("shutting down: finishing requests in flight");
    tokio::spawn(async {
        signal().await;
        tracing::warn!("second signal: exiting now, without finishing the stop");
        std::process::exit(130);
    });
}

async fn signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
}

/// Decisions expired per pass of the sweep: one batch of deletes, small
/// enough not to hold up the store's writer.
const DECISIONS_EXPIRED_PER_PASS: usize = 10_000;

/// Deletes decisions older than the retention window (`[decisions]
/// retention`) at start and every minute, in passes of
/// [`DECISIONS_EXPIRED_PER_PASS`] until none is left (a write key can ask
/// for decisions as fast as it sends events; this bounds what they keep).
async fn expire_decisions(
    store: Arc<kairos_store::Store>,
    clock: Arc<dyn kairos_core::clock::Clock>,
    retention: std::time::Duration,
) {
    let retention = jiff::SignedDuration::try_from(retention).unwrap_or(jiff::SignedDuration::MAX);
    let mut every_minute = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        every_minute.tick().await;
        let Ok(before) = clock.now().checked_sub(retention) else {
            continue;
        };
        loop {
            let pass = store.clone();
            let expired = tokio::task::spawn_blocking(move || {
                pass.outbox
                    .expire_decisions(before, DECISIONS_EXPIRED_PER_PASS)
            })
            .await;
            match expired {
                Ok(Ok(count)) if count == DECISIONS_EXPIRED_PER_PASS => continue,
                Ok(Ok(count)) => {
                    if count > 0 {
                        tracing::info!(count, "decisions past their retention deleted");
                    }
                    break;
                }
                Ok(Err(error)) => {
                    tracing::warn!(%error, "expiring decisions failed; retrying in a minute");
                    break;
                }
                Err(_) => return,
            }
        }
    }
}
