//! Scale benchmark of the whole live recommender — what the engine's
//! router feeds and what `GET /v1/recommendations` reads: a catalog of
//! 1 M items, 10 M interactions by 500 k people, then requests.
//!
//! ```sh
//! cargo run --release -p kairos-recommend --example live_scale -- [--clicks 10000000] [--items 1000000] [--people 500000]
//! ```
//!
//! The click stream is `session_scale`'s (Zipf item popularity, geometric
//! session lengths with mean 5, half of the next clicks related); session
//! `s` is person `s % people`, and one click happens every 100 ms of event
//! time, so a person comes back after their 30-minute session gap. Each
//! click is a view; every 15th click also adds the item to the cart and
//! every 40th completes an order of it — about what a shop's event mix is.
//!
//! Reports: interactions applied per second (`Recommender::observe`, the
//! cost the router pays per product event), memory (`Stats::memory_bytes`
//! plus the catalog, and the process' peak RSS), and the latency of
//! `Recommender::recommend` for `auto` (next, filled by popular) with the
//! default business rules, for people picked at random, p50 / p99.

use std::time::Instant;

use kairos_recommend::evaluate::percentile;
use kairos_recommend::{Catalog, Inputs, Interaction, Item, Query, Recommender, Strategy};

mod synthetic;

use synthetic::{Generator, argument, peak_rss_mib};

fn catalog(items: usize) -> Catalog {
    Catalog::from_items((0..items).map(|index| Item {
        id: format!("sku-{index}"),
        name: Some(format!("Product {index}")),
        category: Some(format!("category-{}", index % 200)),
        price: Some(5.0 + (index % 500) as f64),
        available: index % 50 != 0,
        stock: None,
        attributes: Default::default(),
        image_url: None,
        url: None,
    }))
}

fn main() {
    let clicks = argument("--clicks", 10_000_000);
    let items = argument("--items", 1_000_000);
    let people = argument("--people", 500_000) as u64;
    let started = Instant::now();
    let catalog = catalog(items);
    println!(
        "catalog: {items} items in {:.2} s",
        started.elapsed().as_secs_f64()
    );

    // The names the events carry, made once (the router gets them parsed).
    let names: Vec<String> = (0..items).map(|index| format!("sku-{index}")).collect();
    let mut generator = Generator::new(items);
    let mut recommender = Recommender::new();
    let mut made = 0usize;
    let started = Instant::now();
    generator.clicks(clicks, |session, item, time_ms| {
        let person = session % people;
        let name = std::slice::from_ref(&names[item as usize]);
        recommender.observe(person, Interaction::View, name, time_ms);
        made += 1;
        if made.is_multiple_of(15) {
            recommender.observe(person, Interaction::AddToCart, name, time_ms);
        }
        if made.is_multiple_of(40) {
            recommender.observe(person, Interaction::Purchase, name, time_ms);
        }
    });
    let seconds = started.elapsed().as_secs_f64();
    let interactions = clicks + clicks / 15 + clicks / 40;
    println!(
        "applied: {interactions} interactions ({clicks} views) in {seconds:.2} s: {:.0} interactions/s (generator included)",
        interactions as f64 / seconds
    );
    let stats = recommender.stats();
    println!(
        "held: {} items, {} people, {} view sessions, {} orders; recommender memory_bytes {:.1} MiB; peak RSS {:.1} MiB (with the catalog)",
        stats.items,
        stats.people,
        stats.view_sessions,
        stats.order_sessions,
        stats.memory_bytes as f64 / 1048576.0,
        peak_rss_mib()
    );

    let weight = |_: &Item| 1.0;
    let inputs = Inputs {
        catalog: &catalog,
        weight: &weight,
        now_ms: clicks as i64 * 100,
    };
    let mut latencies_ns = Vec::with_capacity(10_000);
    let mut returned = 0usize;
    for _ in 0..10_000 {
        let person = generator.next_u64() % people;
        let query = Query::new(Strategy::Auto, 10);
        let started = Instant::now();
        let answer = recommender.recommend(Some(person), &query, &inputs);
        latencies_ns.push(started.elapsed().as_nanos() as u64);
        returned += answer.len();
    }
    latencies_ns.sort_unstable();
    println!(
        "recommend (auto, limit 10, default rules): p50 {:.1} µs, p99 {:.1} µs over 10000 people ({:.1} items on average)",
        percentile(&latencies_ns, 50.0) / 1000.0,
        percentile(&latencies_ns, 99.0) / 1000.0,
        returned as f64 / 10_000.0
    );
}
