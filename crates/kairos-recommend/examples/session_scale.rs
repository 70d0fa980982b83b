//! Scale benchmark of the session index on synthetic clicks: build
//! throughput, memory and recommendation latency with 1 M items and 10 M
//! clicks.
//!
//! ```sh
//! cargo run --release -p kairos-recommend --example session_scale -- [--clicks 10000000] [--items 1000000]
//! ```
//!
//! # Distribution (deterministic, splitmix64 seeded 42)
//!
//! - Sessions follow one another (one click every 100 ms of event time);
//!   a session's length is geometric with mean 5 (p = 0.2, at least 1).
//! - A session's first item is drawn from a Zipf law over the items
//!   (exponent 1.0: item of rank r has weight 1/r, r = 1..items).
//! - Each next click, with probability 0.5, is a related item — the
//!   previous one plus an offset uniform in ±50 (wrapping) — otherwise a
//!   fresh Zipf draw. This gives items real co-occurrence neighbourhoods.
//!
//! Build throughput = clicks / (generate and record − generate alone).
//! Latency: 10,000 fresh sessions of the same law (lengths 1..10, not
//! recorded), one `recommend(prefix, 20)` each, p50 / p99.

use kairos_recommend::evaluate::percentile;
use kairos_recommend::session::{SessionConfig, SessionIndex};
use std::time::Instant;

mod synthetic;

use synthetic::{Generator, argument, peak_rss_mib};

fn main() {
    let clicks = argument("--clicks", 10_000_000);
    let items = argument("--items", 1_000_000);
    let mut generator = Generator::new(items);
    let started = Instant::now();
    let mut checksum = 0u64;
    generator.clicks(clicks, |session, item, _| {
        checksum = checksum.wrapping_add(session ^ u64::from(item))
    });
    let generate_s = started.elapsed().as_secs_f64();

    let mut generator = Generator::new(items);
    let mut index = SessionIndex::new(SessionConfig::default());
    let started = Instant::now();
    generator.clicks(clicks, |session, item, time_ms| {
        index.record(session, item, time_ms)
    });
    let total_s = started.elapsed().as_secs_f64();
    let record_s = (total_s - generate_s).max(f64::MIN_POSITIVE);
    println!(
        "built: {clicks} clicks over {items} items in {total_s:.2} s ({generate_s:.2} s generating): {:.0} clicks/s recorded (checksum {checksum})",
        clicks as f64 / record_s
    );
    println!(
        "held: {} sessions, {} items; memory_bytes {:.1} MiB; peak RSS {:.1} MiB (includes the generator's {:.1} MiB table)",
        index.sessions(),
        index.items(),
        index.memory_bytes() as f64 / 1048576.0,
        peak_rss_mib(),
        (items * 8) as f64 / 1048576.0
    );

    let mut latencies_ns = Vec::with_capacity(10_000);
    let mut returned = 0usize;
    for _ in 0..10_000 {
        let length = 1 + (generator.next_u64() % 10) as usize;
        let mut prefix = vec![generator.zipf()];
        while prefix.len() < length {
            let next = generator.next_item(*prefix.last().unwrap_or(&0));
            prefix.push(next);
        }
        let started = Instant::now();
        let answer = index.recommend(&prefix, 20, &|_| false);
        latencies_ns.push(started.elapsed().as_nanos() as u64);
        returned += answer.len();
    }
    latencies_ns.sort_unstable();
    println!(
        "recommend: p50 {:.1} µs, p99 {:.1} µs over 10000 prefixes of 1..10 clicks ({:.1} items returned on average)",
        percentile(&latencies_ns, 50.0) / 1000.0,
        percentile(&latencies_ns, 99.0) / 1000.0,
        returned as f64 / 10_000.0
    );
}
