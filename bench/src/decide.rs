//! Decisions: the catalog the decision benchmark uses (`kairos-loadgen
//! decide-offers` prints it for `bench/decide.sh`), and the in-process cost
//! of one decision (`kairos-loadgen decide`): 200 offers arbitrated for one
//! person — eligibility, caps, Thompson draws, rendering the top 3, storing
//! the decision — without HTTP.

use std::time::Instant;

use kairos_deliver::decisions::{Catalog, Request, decide};
use kairos_store::{Store, StoreOptions};
use serde_json::{Value, json};

/// The benchmark's offers: 10 categories, a quarter with an eligibility on
/// the model's score, a quarter on behaviour (an audience of their own),
/// caps, exclusive groups, templates reading traits and context.
pub fn offer(index: usize) -> Value {
    let mut offer = json!({
        "name": format!("offer {index:03}"),
        "category": format!("category {}", index % 10),
        "tags": [format!("tag {}", index % 7)],
        "placements": ["home"],
        "value": 1 + index % 9,
        "content": {"web": {"title": format!("Offer {index} for {{{{ traits.first_name | default('you') }}}}"),
                            "body": "Seen on {{ context.page | default('home') }}", "url": format!("/offers/{index}")}},
        "limits": {"impressions": {"max": 3, "per": "7d"}, "after_dismissal": "1d"},
    });
    match index % 4 {
        1 => offer["eligibility"] = json!("score gbm_300 > 0.05"),
        2 => offer["eligibility"] = json!("count \"Product Viewed\" within 1d >= 1"),
        _ => {}
    }
    if index.is_multiple_of(10) {
        offer["exclusive_group"] = json!(format!("group {}", index % 3));
    }
    offer
}

pub fn print_offers(count: usize) {
    for index in 0..count {
        println!("{}", offer(index));
    }
}

/// Median microseconds per decision over `runs` runs of `decisions`.
pub fn run(offers: usize, decisions: usize, runs: usize) {
    let dir = std::env::temp_dir().join(format!("kairos-decide-bench-{}", std::process::id()));
    let store = Store::open(&dir, StoreOptions::default()).expect("a scratch store");
    let now = jiff::Timestamp::now();
    for index in 0..offers {
        let definition = offer(index);
        let name = definition["name"].as_str().unwrap().to_string();
        store.outbox.create_offer(&name, definition, now).unwrap();
    }
    let catalog = Catalog::default();
    let audiences: Vec<String> = (0..offers)
        .filter(|index| index % 4 == 2)
        .map(|index| format!("offer offer {index:03}"))
        .collect();
    let view = kairos_engine::ProfileView {
        identities: vec![kairos_core::identity::Identifier::new(
            "anonymous_id",
            "anon-1",
        )],
        traits: json!({"first_name": "Ada", "plan": "pro"})
            .as_object()
            .unwrap()
            .clone(),
        audiences,
        scores: json!({"gbm_300": 0.2}).as_object().unwrap().clone(),
        ..Default::default()
    };
    let request = Request {
        placement: "home".into(),
        channel: None,
        prefer_channel: None,
        weights: Default::default(),
        limit: 3,
        max_per_category: Some(1),
        explore: true,
        personal: true,
        now,
        recommendations: None,
        experiments: None,
    };
    let context = json!({"page": "/home"});
    let mut per_decision = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        for _ in 0..decisions {
            let decision = decide(
                &store,
                &catalog,
                "anonymous_id:anon-1",
                &view,
                &request,
                &context,
                false,
            )
            .expect("a decision");
            assert_eq!(decision.actions.len(), 3);
        }
        let micros = started.elapsed().as_secs_f64() * 1e6 / decisions as f64;
        println!(
            "{}",
            json!({"offers": offers, "decisions": decisions, "microseconds_per_decision": micros})
        );
        per_decision.push(micros);
    }
    per_decision.sort_by(f64::total_cmp);
    println!(
        "in-process decision over {offers} offers: {:.1} µs median of {runs} runs ({:.0} decisions/s on one core)",
        per_decision[runs / 2],
        1e6 / per_decision[runs / 2]
    );
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}
