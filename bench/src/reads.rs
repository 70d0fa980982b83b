//! Profile reads — or decisions — while ingesting at a steady rate
//! (`kairos-loadgen read-while-ingest`): the ingest tasks pace 100-event
//! batches to the requested events/s; a reader asks for profiles of people
//! in those events (with `--decide-placement`: `POST /v1/decide` for them)
//! at a fixed rate, open loop (each request starts on its tick whether or
//! not the last one answered, so a slow answer cannot hide the ones behind
//! it), and records each one's latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

#[derive(clap::Args)]
pub struct ReadArgs {
    #[arg(long)]
    url: String,
    #[arg(long)]
    write_key: String,
    #[arg(long)]
    admin_token: String,
    #[arg(long, default_value_t = 20_000)]
    events_per_second: u64,
    #[arg(long, default_value_t = 200)]
    reads_per_second: u64,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long, default_value = "reads")]
    run_id: String,
    /// Decide in this placement instead of reading profiles.
    #[arg(long)]
    decide_placement: Option<String>,
}

const BATCH: usize = 100;
const INGEST_CONNECTIONS: u64 = 4;

pub async fn run(mut args: ReadArgs) {
    args.url = args.url.trim_end_matches('/').to_string();
    let (template, offsets) = crate::template(BATCH, &args.run_id);
    let (template, offsets) = (Arc::new(template), Arc::new(offsets));
    let client = reqwest::Client::new();
    let counter = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let batches_per_second_per_connection =
        args.events_per_second as f64 / BATCH as f64 / INGEST_CONNECTIONS as f64;
    let interval = Duration::from_secs_f64(1.0 / batches_per_second_per_connection);
    let mut ingest = Vec::new();
    for _ in 0..INGEST_CONNECTIONS {
        let (client, template, offsets, counter) = (
            client.clone(),
            template.clone(),
            offsets.clone(),
            counter.clone(),
        );
        let endpoint = format!("{}/v1/batch", args.url);
        let key = args.write_key.clone();
        ingest.push(tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            let mut sent = 0u64;
            while Instant::now() < deadline {
                ticker.tick().await;
                let first = counter.fetch_add(BATCH as u64, Ordering::Relaxed);
                let mut body = template.to_vec();
                crate::patch(&mut body, &offsets, first);
                if let Ok(response) = client
                    .post(&endpoint)
                    .basic_auth(&key, Some(""))
                    .body(body)
                    .send()
                    .await
                    && response.status().is_success()
                {
                    sent += BATCH as u64;
                }
            }
            sent
        }));
    }
    let reader = {
        let client = client.clone();
        let (url, token) = (args.url.clone(), args.admin_token.clone());
        let placement = args.decide_placement.clone();
        let interval = Duration::from_secs_f64(1.0 / args.reads_per_second.max(1) as f64);
        tokio::spawn(async move {
            // Let the first events land before reading their people.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut index = 0usize;
            let mut requests = Vec::new();
            while Instant::now() < deadline {
                ticker.tick().await;
                // The template's events belong to these anonymous ids.
                let anonymous = format!("anon-{:08}", (index % BATCH) * 7919 % 100_000);
                index += 1;
                let request = match &placement {
                    Some(placement) => client
                        .post(format!("{url}/v1/decide"))
                        .header("content-type", "application/json")
                        .body(
                            json!({"profile": format!("anonymous_id:{anonymous}"),
                                   "placement": placement, "limit": 3})
                            .to_string(),
                        )
                        .bearer_auth(&token),
                    None => client
                        .get(format!("{url}/v1/profiles/anonymous_id:{anonymous}"))
                        .bearer_auth(&token),
                };
                requests.push(tokio::spawn(crate::timed(request)));
            }
            let (mut latencies, mut misses) = (Vec::new(), 0u64);
            for request in requests {
                match request.await.ok().flatten() {
                    Some(latency) => latencies.push(latency),
                    None => misses += 1,
                }
            }
            (latencies, misses)
        })
    };
    let mut events = 0;
    for task in ingest {
        events += task.await.unwrap();
    }
    let (mut latencies, misses) = reader.await.unwrap();
    latencies.sort();
    let percentile = |p: f64| crate::percentile_ms(&latencies, p);
    println!(
        "{}",
        json!({
            "ingested_events_per_second": events as f64 / args.seconds as f64,
            "reads": latencies.len(),
            "failed_reads": misses,
            "read_p50_ms": percentile(0.50),
            "read_p99_ms": percentile(0.99),
            "read_max_ms": latencies.last().map(|latency| latency.as_secs_f64() * 1000.0),
        })
    );
}
