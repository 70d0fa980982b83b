//! Trigger latency (`kairos-loadgen webhook-latency`): the time from an
//! event's acknowledgement to its signed webhook arriving at a receiver,
//! at a steady rate of triggering events.
//!
//! The loadgen serves the receiver itself (a bare axum handler that notes
//! each delivery's arrival by the triggering event's messageId), creates a
//! webhook destination pointing at it and a journey `{"event": "Bench
//! Trigger"}`, then sends batches of triggering events at `--rate` per
//! second and notes each batch's acknowledgement.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[derive(clap::Args)]
pub struct WebhookArgs {
    #[arg(long)]
    url: String,
    #[arg(long)]
    write_key: String,
    #[arg(long)]
    admin_token: String,
    /// Triggering events per second.
    #[arg(long, default_value_t = 1_000)]
    rate: u64,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long, default_value = "webhooks")]
    run_id: String,
    /// Create the destination and journey first.
    #[arg(long)]
    setup: bool,
    #[arg(long, default_value = "127.0.0.1:18282")]
    listen: String,
}

/// Events per request: 100 requests/s at 1,000 triggers/s.
const BATCH: u64 = 10;

type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

pub async fn run(mut args: WebhookArgs) {
    args.url = args.url.trim_end_matches('/').to_string();
    let arrivals: Arrivals = Arc::default();
    let receiver = {
        let arrivals = arrivals.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |body: bytes::Bytes| {
                let arrivals = arrivals.clone();
                async move {
                    let arrived = Instant::now();
                    if let Ok(payload) = serde_json::from_slice::<Value>(&body)
                        && let Some(id) = payload["data"]["event"]["messageId"].as_str()
                    {
                        arrivals.lock().unwrap().insert(id.to_string(), arrived);
                    }
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .expect("bind the receiver");
        tokio::spawn(async move { axum::serve(listener, app).await })
    };
    let client = reqwest::Client::new();
    if args.setup {
        setup(&client, &args).await;
    }
    let acks: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(
        BATCH as f64 / args.rate.max(1) as f64,
    ));
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let mut sent = 0u64;
    let mut tasks = Vec::new();
    while Instant::now() < deadline {
        ticker.tick().await;
        let numbers = sent..sent + BATCH;
        sent += BATCH;
        let ids: Vec<String> = numbers
            .clone()
            .map(|number| format!("{}-{number}", args.run_id))
            .collect();
        let events: Vec<Value> = numbers
            .zip(&ids)
            .map(|(number, id)| json!({"type": "track", "event": "Bench Trigger", "messageId": id,
                                       "userId": format!("bench-{}", number % 1000), "properties": {"amount": 1}}))
            .collect();
        let request = client
            .post(format!("{}/v1/batch", args.url))
            .basic_auth(&args.write_key, Some(""))
            .header("content-type", "application/json")
            .body(json!({"batch": events}).to_string());
        let acks = acks.clone();
        tasks.push(tokio::spawn(async move {
            if let Ok(response) = request.send().await
                && response.status().is_success()
            {
                let acked = Instant::now();
                let mut acks = acks.lock().unwrap();
                for id in ids {
                    acks.insert(id, acked);
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    receiver.abort();
    let acks = acks.lock().unwrap();
    let arrivals = arrivals.lock().unwrap();
    let mut latencies: Vec<Duration> = acks
        .iter()
        .filter_map(|(id, acked)| Some(arrivals.get(id)?.saturating_duration_since(*acked)))
        .collect();
    latencies.sort();
    let percentile = |p: f64| crate::percentile_ms(&latencies, p);
    println!(
        "{}",
        json!({
            "triggers_per_second": args.rate, "seconds": args.seconds,
            "acknowledged": acks.len(), "delivered": latencies.len(),
            "p50_ms": percentile(0.50), "p99_ms": percentile(0.99),
            "max_ms": latencies.last().map(|latency| latency.as_secs_f64() * 1000.0),
        })
    );
}

async fn setup(client: &reqwest::Client, args: &WebhookArgs) {
    crate::admin_post(
        client,
        &args.url,
        &args.admin_token,
        "/v1/destinations",
        json!({"type": "webhook", "name": "bench-receiver", "url": format!("http://{}/hook", args.listen)}),
    )
    .await;
    crate::admin_post(
        client,
        &args.url,
        &args.admin_token,
        "/v1/journeys",
        json!({"name": "bench", "trigger": {"event": "Bench Trigger"},
               "steps": [{"send": {"destination": "bench-receiver"}}]}),
    )
    .await;
}
