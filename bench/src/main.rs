//! `kairos-loadgen`: the ingest workload runner.
//!
//! - `kairos-loadgen bare --listen ADDR` serves the ceiling: a bare axum
//!   handler that only parses the JSON body and answers 200.
//! - `kairos-loadgen ingest --url URL --write-key K` posts 100-event batches of
//!   realistic ~600-byte events over keep-alive connections for a duration and
//!   prints events/s and request latency percentiles as one JSON line.
//!
//! - `kairos-loadgen profiles` times identity resolution + profile updates
//!   in-process.
//!
//! Every event gets a unique messageId (patched into a template body at fixed
//! offsets), so the server appends every event instead of deduplicating.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

mod audiences;
mod decide;
mod membership;
mod models;
mod profiles;
mod reads;
mod webhooks;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Scoring cost per event (300-tree GBM, logistic) and the in-process
    /// pipeline with a model active against none.
    Models {
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
        #[arg(long, default_value_t = 100_000)]
        people: usize,
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Print the `POST /v1/models` body of the benchmark's 300-tree model.
    ModelSpec,
    /// Serve the bare-handler ceiling.
    Bare {
        #[arg(long, default_value = "127.0.0.1:18181")]
        listen: String,
    },
    /// Identity resolution + profile update in-process (no HTTP, no disk).
    Profiles {
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
        #[arg(long, default_value_t = 100_000)]
        people: usize,
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// The incremental audience engine in-process (no HTTP, no disk).
    Audiences {
        #[arg(long, default_value_t = 1_000)]
        definitions: usize,
        /// Computed traits evaluated alongside.
        #[arg(long, default_value_t = 20)]
        computed: usize,
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
        #[arg(long, default_value_t = 100_000)]
        people: u64,
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Through the whole engine: identity → profile → audiences.
        #[arg(long)]
        pipeline: bool,
    },
    /// Profile read (or decision) latency while ingesting at a steady
    /// rate over HTTP.
    ReadWhileIngest(reads::ReadArgs),
    /// The decision benchmark's offers, one JSON per line.
    DecideOffers {
        #[arg(long, default_value_t = 200)]
        offers: usize,
    },
    /// One decision in-process (no HTTP): arbitration over the catalog,
    /// rendering, storing the decision.
    Decide {
        #[arg(long, default_value_t = 200)]
        offers: usize,
        #[arg(long, default_value_t = 20_000)]
        decisions: usize,
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Event acknowledged → its `Audience Entered` on the live stream,
    /// while ingesting at a steady rate with many definitions active.
    MembershipLatency(membership::MembershipArgs),
    /// Event acknowledged → its journey's signed webhook received.
    WebhookLatency(webhooks::WebhookArgs),
    /// Drive /v1/batch and report throughput and latency.
    Ingest {
        #[arg(long)]
        url: String,
        #[arg(long, default_value = "")]
        write_key: String,
        #[arg(long, default_value_t = 16)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 100)]
        batch: usize,
        /// Distinguishes runs so messageIds never repeat across runs.
        #[arg(long, default_value = "run")]
        run_id: String,
    },
}

fn main() {
    let cli = Cli::parse();
    // reqwest refuses to build a client without one (even for plain HTTP).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    match cli.command {
        Command::Bare { listen } => runtime.block_on(bare(listen)),
        Command::Profiles {
            events,
            people,
            runs,
        } => profiles::run(events, people, runs),
        Command::Models {
            events,
            people,
            runs,
        } => models::run(events, people, runs),
        Command::ModelSpec => models::print_spec(),
        Command::Audiences {
            definitions,
            computed,
            events,
            people,
            runs,
            pipeline,
        } => audiences::run(definitions, computed, events, people, runs, pipeline),
        Command::MembershipLatency(args) => runtime.block_on(membership::run(args)),
        Command::WebhookLatency(args) => runtime.block_on(webhooks::run(args)),
        Command::ReadWhileIngest(args) => runtime.block_on(reads::run(args)),
        Command::DecideOffers { offers } => decide::print_offers(offers),
        Command::Decide {
            offers,
            decisions,
            runs,
        } => decide::run(offers, decisions, runs),
        Command::Ingest {
            url,
            write_key,
            connections,
            seconds,
            batch,
            run_id,
        } => runtime.block_on(ingest(
            url,
            write_key,
            connections,
            Duration::from_secs(seconds),
            batch,
            run_id,
        )),
    }
}

async fn bare(listen: String) {
    async fn handler(body: bytes::Bytes) -> axum::http::StatusCode {
        match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(_) => axum::http::StatusCode::OK,
            Err(_) => axum::http::StatusCode::BAD_REQUEST,
        }
    }
    let app = axum::Router::new()
        .route("/v1/batch", axum::routing::post(handler))
        .layer(axum::extract::DefaultBodyLimit::max(4 * 1024 * 1024));
    let listener = tokio::net::TcpListener::bind(&listen).await.unwrap();
    println!("bare handler on http://{}", listener.local_addr().unwrap());
    axum::serve(listener, app).await.unwrap();
}

/// Width of the per-event counter patched into each messageId.
const COUNTER_DIGITS: usize = 12;

/// A batch body with `batch` events and the byte offsets of their counters.
pub(crate) fn template(batch: usize, run_id: &str) -> (Vec<u8>, Vec<usize>) {
    let mut body = String::from("{\"batch\":[");
    let mut offsets = Vec::with_capacity(batch);
    for index in 0..batch {
        if index > 0 {
            body.push(',');
        }
        body.push_str(&format!(
            "{{\"type\":\"track\",\"event\":\"Product Viewed\",\"messageId\":\"{run_id}-"
        ));
        offsets.push(body.len());
        body.push_str(&"0".repeat(COUNTER_DIGITS));
        body.push_str(&format!(
            "\",\"anonymousId\":\"anon-{user:08}\",\"userId\":\"user-{user:08}\",\"timestamp\":\"2026-11-23T12:00:00.000Z\",\
\"properties\":{{\"product_id\":\"sku-{sku:06}\",\"name\":\"Trail Running Shoe\",\"category\":\"Footwear\",\"price\":89.95,\"currency\":\"EUR\",\"position\":{index}}},\
\"context\":{{\"library\":{{\"name\":\"analytics.js\",\"version\":\"next-1.84.3\"}},\"page\":{{\"path\":\"/products/trail\",\"url\":\"https://shop.example/products/trail\",\"referrer\":\"https://www.google.com/\"}},\
\"userAgent\":\"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36\",\"ip\":\"203.0.113.7\",\"locale\":\"en-US\"}}}}",
            user = index * 7919 % 100_000,
            sku = index * 31 % 5000,
        ));
    }
    body.push_str("],\"sentAt\":\"2026-11-23T12:00:00.100Z\"}");
    (body.into_bytes(), offsets)
}

pub(crate) fn patch(body: &mut [u8], offsets: &[usize], first: u64) {
    for (index, offset) in offsets.iter().enumerate() {
        let digits = format!("{:0width$}", first + index as u64, width = COUNTER_DIGITS);
        body[*offset..*offset + COUNTER_DIGITS].copy_from_slice(digits.as_bytes());
    }
}

/// POSTs JSON to an admin endpoint and insists on success (benchmark
/// setup: a failure stops the run with the server's answer).
pub(crate) async fn admin_post(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    path: &str,
    body: serde_json::Value,
) {
    let response = client
        .post(format!("{url}{path}"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap_or_else(|error| panic!("POST {path}: {error}"));
    if !response.status().is_success() {
        panic!("POST {path}: {}", response.text().await.unwrap_or_default());
    }
}

/// Sends a request and reads the whole answer; its latency if it succeeded.
pub(crate) async fn timed(request: reqwest::RequestBuilder) -> Option<Duration> {
    let started = Instant::now();
    let response = request.send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.bytes().await.ok()?;
    Some(started.elapsed())
}

/// The `p` quantile of sorted latencies, in milliseconds.
pub(crate) fn percentile_ms(sorted: &[Duration], p: f64) -> Option<f64> {
    let index = ((sorted.len() as f64 * p) as usize).min(sorted.len().checked_sub(1)?);
    Some(sorted[index].as_secs_f64() * 1000.0)
}

async fn ingest(
    url: String,
    write_key: String,
    connections: usize,
    duration: Duration,
    batch: usize,
    run_id: String,
) {
    let (template, offsets) = template(batch, &run_id);
    let template = Arc::new(template);
    let offsets = Arc::new(offsets);
    let counter = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()
        .unwrap();
    let endpoint = format!("{}/v1/batch", url.trim_end_matches('/'));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (client, endpoint, key) = (client.clone(), endpoint.clone(), write_key.clone());
        let (template, offsets, counter, stop) = (
            template.clone(),
            offsets.clone(),
            counter.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let first = counter.fetch_add(offsets.len() as u64, Ordering::Relaxed);
                let mut body = template.to_vec();
                patch(&mut body, &offsets, first);
                let request = client.post(&endpoint).basic_auth(&key, Some("")).body(body);
                match timed(request).await {
                    Some(latency) => latencies.push(latency),
                    None => failures += 1,
                }
            }
            (latencies, failures)
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    let mut failures = 0;
    for task in tasks {
        let (task_latencies, task_failures) = task.await.unwrap();
        latencies.extend(task_latencies);
        failures += task_failures;
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let percentile = |p: f64| percentile_ms(&latencies, p).unwrap_or(f64::NAN);
    let report = serde_json::json!({
        "requests": latencies.len(),
        "failed_requests": failures,
        "events_per_second": (latencies.len() * batch) as f64 / elapsed,
        "p50_ms": percentile(0.50),
        "p99_ms": percentile(0.99),
        "max_ms": latencies.last().map(|d| d.as_secs_f64() * 1000.0),
        "body_bytes": template.len(),
        "seconds": elapsed,
    });
    println!("{report}");
}
