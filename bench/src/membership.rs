//! Membership latency (`kairos-loadgen membership-latency`): the time from
//! an event's acknowledgement to its `Audience Entered` on the live stream,
//! while the server ingests a steady background load with many audiences
//! and computed traits active.
//!
//! - `--setup` creates the definitions: `--definitions` audiences and
//!   `--computed` computed traits like the in-process benchmark's (over
//!   "Event 0".."Event 49"), and the probe audience `performed "Probe"
//!   within 1h`.
//! - Background: 100-event batches of ~600-byte "Event k" track events of
//!   100,000 people, paced to `--events-per-second`, timestamped now.
//! - Probes: `--probes-per-second` single `Probe` events, each of a new
//!   person; the probe's acknowledgement time is noted, and a reader of
//!   `/v1/admin/tail` (the `kairos-audiences` source) notes when that
//!   person's `Audience Entered` arrives.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::audiences::{computed_definition, definition};

#[derive(clap::Args)]
pub struct MembershipArgs {
    #[arg(long)]
    url: String,
    #[arg(long)]
    write_key: String,
    #[arg(long)]
    admin_token: String,
    /// Create the definitions, then exit.
    #[arg(long)]
    setup: bool,
    #[arg(long, default_value_t = 1_000)]
    definitions: usize,
    #[arg(long, default_value_t = 20)]
    computed: usize,
    #[arg(long, default_value_t = 20_000)]
    events_per_second: u64,
    #[arg(long, default_value_t = 50)]
    probes_per_second: u64,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long, default_value = "membership")]
    run_id: String,
}

const BATCH: u64 = 100;
const INGEST_CONNECTIONS: u64 = 4;
const PEOPLE: u64 = 100_000;
const PROBE_AUDIENCE: &str = "probed";

pub async fn run(mut args: MembershipArgs) {
    args.url = args.url.trim_end_matches('/').to_string();
    let client = reqwest::Client::new();
    if args.setup {
        setup(&client, &args).await;
        return;
    }
    let source = audience_source(&client, &args).await;
    let acks: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let seen: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let early = Arc::new(AtomicU64::new(0));
    let reader = tokio::spawn(read_tail(
        client.clone(),
        format!("{}/v1/admin/tail?source={source}", args.url),
        args.admin_token.clone(),
        format!("probe-{}-", args.run_id),
        acks.clone(),
        seen.clone(),
        early.clone(),
    ));
    // Let the tail connect before anything is sent.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let counter = Arc::new(AtomicU64::new(0));
    let mut background = Vec::new();
    for _ in 0..INGEST_CONNECTIONS {
        background.push(tokio::spawn(ingest(
            client.clone(),
            format!("{}/v1/batch", args.url),
            args.write_key.clone(),
            args.run_id.clone(),
            counter.clone(),
            Duration::from_secs_f64(
                INGEST_CONNECTIONS as f64 * BATCH as f64 / args.events_per_second as f64,
            ),
            deadline,
        )));
    }
    let probes = send_probes(&client, &args, acks.clone(), deadline).await;
    let mut events = 0;
    for task in background {
        events += task.await.unwrap_or(0);
    }
    // The last announcements arrive within moments.
    tokio::time::sleep(Duration::from_secs(2)).await;
    reader.abort();
    let mut latencies = seen.lock().unwrap().clone();
    latencies.sort();
    let percentile = |p: f64| crate::percentile_ms(&latencies, p);
    println!(
        "{}",
        json!({
            "definitions": args.definitions, "computed_traits": args.computed,
            "ingested_events_per_second": events as f64 / args.seconds as f64,
            "probes": probes, "announced": latencies.len(),
            "announced_before_ack_seen": early.load(Ordering::Relaxed),
            "p50_ms": percentile(0.50), "p99_ms": percentile(0.99),
            "max_ms": latencies.last().map(|latency| latency.as_secs_f64() * 1000.0),
        })
    );
}

async fn setup(client: &reqwest::Client, args: &MembershipArgs) {
    let create = |path: &'static str, name: String, definition: String| {
        crate::admin_post(
            client,
            &args.url,
            &args.admin_token,
            path,
            json!({"name": name, "definition": definition}),
        )
    };
    let started = Instant::now();
    for index in 0..args.computed {
        create(
            "/v1/computed-traits",
            format!("trait{index}"),
            computed_definition(index),
        )
        .await;
    }
    for index in 0..args.definitions {
        create("/v1/audiences", format!("aud{index}"), definition(index)).await;
    }
    create(
        "/v1/audiences",
        PROBE_AUDIENCE.to_string(),
        "performed \"Probe\" within 1h".to_string(),
    )
    .await;
    println!(
        "{}",
        json!({"created_audiences": args.definitions + 1, "created_computed_traits": args.computed,
               "seconds": started.elapsed().as_secs_f64()})
    );
}

/// The id of the source membership events belong to.
async fn audience_source(client: &reqwest::Client, args: &MembershipArgs) -> String {
    let body = client
        .get(format!("{}/v1/admin/sources", args.url))
        .bearer_auth(&args.admin_token)
        .send()
        .await
        .expect("list sources")
        .bytes()
        .await
        .expect("the source list");
    let sources: Value = serde_json::from_slice(&body).expect("sources as JSON");
    sources["sources"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|source| source["name"] == "kairos-audiences")
        .and_then(|source| source["id"].as_str())
        .expect("the kairos-audiences source exists once the engine runs")
        .to_string()
}

async fn ingest(
    client: reqwest::Client,
    endpoint: String,
    key: String,
    run_id: String,
    counter: Arc<AtomicU64>,
    interval: Duration,
    deadline: Instant,
) -> u64 {
    let mut ticker = tokio::time::interval(interval);
    let mut sent = 0;
    while Instant::now() < deadline {
        ticker.tick().await;
        let first = counter.fetch_add(BATCH, Ordering::Relaxed);
        let body = background_batch(&run_id, first);
        if let Ok(response) = client
            .post(&endpoint)
            .basic_auth(&key, Some(""))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            && response.status().is_success()
        {
            sent += BATCH;
        }
    }
    sent
}

fn background_batch(run_id: &str, first: u64) -> Value {
    let now = jiff::Timestamp::now().to_string();
    let events: Vec<Value> = (first..first + BATCH)
        .map(|number| {
            let person = number.wrapping_mul(2_654_435_761) % PEOPLE;
            json!({
                "type": "track", "event": format!("Event {}", number % 50),
                "messageId": format!("{run_id}-{number}"), "userId": format!("user-{person:06}"),
                "timestamp": now,
                "properties": {"amount": (number % 50) as f64, "product_id": format!("sku-{:06}", number % 5000),
                               "name": "Trail Running Shoe", "category": "Footwear", "currency": "EUR"},
                "context": {"library": {"name": "analytics.js", "version": "next-1.84.3"},
                            "page": {"path": "/products/trail", "url": "https://shop.example/products/trail"},
                            "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36",
                            "ip": "203.0.113.7", "locale": "en-US"},
            })
        })
        .collect();
    json!({"batch": events})
}

/// Sends probes at a steady pace until `deadline`; each acknowledgement's
/// time is noted under the probe's number. Returns how many were sent.
async fn send_probes(
    client: &reqwest::Client,
    args: &MembershipArgs,
    acks: Arc<Mutex<HashMap<u64, Instant>>>,
    deadline: Instant,
) -> u64 {
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(
        1.0 / args.probes_per_second.max(1) as f64,
    ));
    let mut number = 0;
    let mut pending = Vec::new();
    while Instant::now() < deadline {
        ticker.tick().await;
        number += 1;
        let request = client
            .post(format!("{}/v1/track", args.url))
            .basic_auth(&args.write_key, Some(""))
            .header("content-type", "application/json")
            .body(
                json!({"event": "Probe", "userId": format!("probe-{}-{number}", args.run_id),
                       "messageId": format!("probe-{}-{number}", args.run_id)})
                .to_string(),
            );
        let acks = acks.clone();
        pending.push(tokio::spawn(async move {
            if let Ok(response) = request.send().await
                && response.status().is_success()
            {
                acks.lock().unwrap().insert(number, Instant::now());
            }
        }));
    }
    for task in pending {
        let _ = task.await;
    }
    number
}

/// Follows the live stream; for each probe's `Audience Entered`, notes the
/// time since the probe's acknowledgement.
async fn read_tail(
    client: reqwest::Client,
    url: String,
    token: String,
    prefix: String,
    acks: Arc<Mutex<HashMap<u64, Instant>>>,
    seen: Arc<Mutex<Vec<Duration>>>,
    early: Arc<AtomicU64>,
) {
    let Ok(mut response) = client.get(url).bearer_auth(token).send().await else {
        return;
    };
    let mut buffer = String::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let arrived = Instant::now();
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find('\n') {
            let line: String = buffer.drain(..=end).collect();
            let Some(data) = line.strip_prefix("data:") else {
                continue;
            };
            let Ok(event) = serde_json::from_str::<Value>(data.trim()) else {
                continue;
            };
            if event["event"] != "Audience Entered"
                || event["properties"]["audience"] != PROBE_AUDIENCE
            {
                continue;
            }
            let Some(number) = event["userId"]
                .as_str()
                .and_then(|user| user.strip_prefix(&prefix))
                .and_then(|number| number.parse::<u64>().ok())
            else {
                continue;
            };
            match acks.lock().unwrap().get(&number) {
                Some(acked) => seen
                    .lock()
                    .unwrap()
                    .push(arrived.saturating_duration_since(*acked)),
                None => {
                    // On the stream before the client saw the ack.
                    early.fetch_add(1, Ordering::Relaxed);
                    seen.lock().unwrap().push(Duration::ZERO);
                }
            }
        }
    }
}
