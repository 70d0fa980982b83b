//! The effects stage against a model: random streams of events for a few
//! people go through the real store, the threaded engine (4 shards) and the
//! effects stage, on a manual clock that moves between rounds, with a clean
//! restart (sometimes from a checkpoint) half-way; a single-threaded model of
//! the same three journeys — a wait and a branch on a trait, a `not followed
//! by` window, a `wait_for` with a timeout, an `entry: once` and a goal —
//! says which messages must exist. Every message the stage decided must be
//! one the model expects, and every one it expects must exist, exactly once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use kairos_core::clock::ManualClock;
use kairos_core::identity::IdentityRules;
use kairos_core::normalize::{Arrival, IngestLimits, normalize_event};
use kairos_deliver::journey::{Instruction, compile};
use kairos_deliver::{Deliverer, DeliverySettings};
use kairos_engine::{Engine, EngineSettings};
use kairos_store::{Store, StoreOptions};
use serde_json::{Value, json};

/// A small xorshift generator: the same seed gives the same stream.
struct Random(u64);

impl Random {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

const PEOPLE: u64 = 6;
const ROUNDS: u64 = 36;
const ROUND: SignedDuration = SignedDuration::from_mins(30);
const NAMES: [&str; 5] = ["Added", "Viewed", "Bought", "Signed Up", "Activated"];

fn journeys() -> Vec<(&'static str, Value)> {
    let hook = json!({"send": {"destination": "hook"}});
    vec![
        (
            "after add",
            json!({"trigger": {"event": "Added"}, "steps": [
                hook, {"wait": "1h"},
                {"branch": {"if": "trait plan = \"pro\"", "then": [hook]}}, hook]}),
        ),
        (
            "viewed not bought",
            json!({"trigger": {"event": "Viewed", "not_followed_by": "Bought", "within": "2h"},
                   "steps": [hook]}),
        ),
        (
            "activation",
            json!({"trigger": {"event": "Signed Up"}, "entry": "once", "goal": "Bought",
                   "steps": [{"wait_for": {"event": "Activated", "timeout": "3h"}}, hook]}),
        ),
    ]
}

/// A message as both sides name it: journey, person, triggering event, step.
type Decision = (String, String, u64, usize);

/// The single-threaded model of the three journeys.
#[derive(Default)]
struct Model {
    /// Journey name → id, and the positions of its sends.
    ids: HashMap<&'static str, String>,
    sends: HashMap<&'static str, Vec<usize>>,
    plan: HashMap<String, String>,
    /// "after add" runs waiting: (person, event seq, resume at).
    waiting_add: Vec<(String, u64, Timestamp)>,
    /// "viewed not bought" windows per person: (started, deadline, seq).
    windows: BTreeMap<String, (Timestamp, Timestamp, u64)>,
    /// "activation": runs waiting for Activated: person → (seq, timeout).
    activation: BTreeMap<String, (u64, Timestamp)>,
    activated_once: BTreeSet<String>,
    decided: BTreeSet<Decision>,
}

impl Model {
    fn send(&mut self, journey: &'static str, person: &str, seq: u64, nth: usize) {
        let decision = (
            self.ids[journey].clone(),
            person.to_string(),
            seq,
            self.sends[journey][nth],
        );
        assert!(self.decided.insert(decision), "the model decided twice");
    }

    /// What comes due when the clock reaches `now`.
    fn advance(&mut self, now: Timestamp) {
        let due: Vec<_> = self
            .waiting_add
            .iter()
            .filter(|(_, _, at)| *at <= now)
            .cloned()
            .collect();
        self.waiting_add.retain(|(_, _, at)| *at > now);
        for (person, seq, _) in due {
            if self.plan.get(&person).map(String::as_str) == Some("pro") {
                self.send("after add", &person, seq, 1);
            }
            self.send("after add", &person, seq, 2);
        }
        let closed: Vec<_> = self
            .windows
            .iter()
            .filter(|(_, (_, deadline, _))| *deadline <= now)
            .map(|(person, (_, _, seq))| (person.clone(), *seq))
            .collect();
        for (person, seq) in closed {
            self.windows.remove(&person);
            self.send("viewed not bought", &person, seq, 0);
        }
        let timed_out: Vec<_> = self
            .activation
            .iter()
            .filter(|(_, (_, timeout))| *timeout <= now)
            .map(|(person, (seq, _))| (person.clone(), *seq))
            .collect();
        for (person, seq) in timed_out {
            self.activation.remove(&person);
            self.send("activation", &person, seq, 0);
        }
    }

    /// A track event (`name`) of `person` at `at`, position `seq`, with the
    /// clock at `now`.
    fn track(&mut self, person: &str, name: &str, seq: u64, at: Timestamp, now: Timestamp) {
        // Runs waiting for this event, or whose goal it is, first.
        if name == "Bought" {
            self.activation.remove(person);
        }
        if name == "Activated"
            && let Some((run_seq, _)) = self.activation.remove(person)
        {
            self.send("activation", person, run_seq, 0);
        }
        if name == "Bought"
            && let Some((started, deadline, _)) = self.windows.get(person)
            && at > *started
            && at <= *deadline
        {
            self.windows.remove(person);
        }
        match name {
            "Viewed" => {
                let window = (at, at + SignedDuration::from_hours(2), seq);
                self.windows.insert(person.to_string(), window);
            }
            "Added" => {
                self.send("after add", person, seq, 0);
                self.waiting_add.push((
                    person.to_string(),
                    seq,
                    now + SignedDuration::from_hours(1),
                ));
            }
            "Signed Up" if self.activated_once.insert(person.to_string()) => {
                self.activation.insert(
                    person.to_string(),
                    (seq, now + SignedDuration::from_hours(3)),
                );
            }
            _ => {}
        }
    }
}

/// The system under test: store, engine with its effects feed, stage.
struct Running {
    store: Arc<Store>,
    engine: Engine,
    deliverer: Deliverer,
}

fn start(dir: &std::path::Path, clock: Arc<ManualClock>) -> Running {
    let store = Arc::new(
        Store::open(
            dir,
            StoreOptions {
                clock: clock.clone(),
                ..StoreOptions::default()
            },
        )
        .unwrap(),
    );
    let (link, tap) =
        kairos_engine::effects_feed::channel(kairos_deliver::effects_interest(&store));
    let engine = Engine::start(
        store.clone(),
        EngineSettings {
            shards: 4,
            clock: clock.clone(),
            checkpoint_every_events: 0,
            effects: Some(link),
            ..EngineSettings::default()
        },
    )
    .unwrap();
    let deliverer = Deliverer::start(
        store.clone(),
        Arc::new(IdentityRules::default()),
        DeliverySettings {
            clock,
            ..DeliverySettings::default()
        },
        engine.clone(),
        tap,
        Default::default(),
    )
    .unwrap();
    Running {
        store,
        engine,
        deliverer,
    }
}

impl Running {
    fn stop(self) {
        assert!(self.deliverer.stop());
        assert!(self.engine.stop());
        self.store.sync_all().unwrap();
    }

    /// Appends `events` as one durable group received at `at`; their
    /// positions.
    async fn append(&self, events: &[Value], at: Timestamp) -> Vec<u64> {
        let limits = IngestLimits::default();
        let arrival = Arrival {
            source_id: "src_test",
            received_at: at,
            batch_sent_at: None,
            path_type: None,
            limits: &limits,
            plan: None,
        };
        let rules = IdentityRules::default();
        let records = events
            .iter()
            .map(|event| {
                let raw = serde_json::value::RawValue::from_string(event.to_string()).unwrap();
                self.store
                    .prepare(&normalize_event(&raw, &arrival).unwrap(), &rules)
                    .unwrap()
            })
            .collect();
        let before = self.store.writer.committed_seq();
        self.store
            .writer
            .append(records, vec![], vec![])
            .await
            .unwrap();
        let after = self.store.writer.committed_seq();
        assert_eq!(
            after - before,
            events.len() as u64,
            "one group, nothing else"
        );
        (before + 1..=after).collect()
    }

    /// Waits until the stage has decided on everything durable and run
    /// everything due at `now`.
    async fn settle(&self, now: Timestamp) {
        let durable = self.store.writer.committed_seq();
        self.deliverer
            .handled(durable, now, std::time::Duration::from_secs(30))
            .await
            .unwrap_or_else(|late| panic!("the stage did not settle: {:?}", late.handled));
    }

    fn decided(&self, ids: &HashMap<&'static str, String>) -> BTreeSet<Decision> {
        let mut found = BTreeSet::new();
        for id in ids.values() {
            for message in self.store.outbox.messages_of(id).unwrap() {
                let step = message.id.rsplit('_').next().unwrap().parse().unwrap();
                let decision = (id.clone(), message.identifier, message.event_seq, step);
                assert!(
                    found.insert(decision),
                    "a message decided twice: {}",
                    message.id
                );
            }
        }
        found
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_effects_stage_decides_what_the_single_threaded_model_does() {
    for seed in 1..=3u64 {
        let dir = tempfile::tempdir().unwrap();
        let start_at: Timestamp = "2026-03-02T08:00:00Z".parse().unwrap();
        let clock = Arc::new(ManualClock::new(start_at));
        let mut running = start(dir.path(), clock.clone());
        let mut model = Model::default();
        running
            .store
            .outbox
            .create_destination("hook", "webhook", "http://127.0.0.1:9/hook", None, start_at)
            .unwrap();
        for (name, definition) in journeys() {
            let destination = |name: &str| {
                let record = running.store.outbox.destination(name)?;
                Some((record.id, record.kind))
            };
            let compiled = compile("jny_x", name, 0, &definition, destination).unwrap();
            running
                .engine
                .widen_effects_interest(compiled.event_names());
            let record = running
                .store
                .outbox
                .create_journey(
                    name,
                    definition,
                    running.store.writer.committed_seq(),
                    start_at,
                )
                .unwrap();
            let sends = compiled
                .program
                .iter()
                .enumerate()
                .filter(|(_, instruction)| matches!(instruction, Instruction::Send(_)))
                .map(|(pc, _)| pc)
                .collect();
            model.sends.insert(name, sends);
            model.ids.insert(name, record.id);
        }
        let mut random = Random(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        for round in 0..ROUNDS {
            let now = start_at + ROUND * round as i32;
            assert!(clock.advance_to(now));
            model.advance(now);
            running.settle(now).await;
            if round == ROUNDS / 2 {
                // A clean restart; every other seed from a checkpoint.
                if seed % 2 == 0 {
                    running.engine.checkpoint().await.unwrap();
                }
                let store_dir = dir.path().to_path_buf();
                running.stop();
                running = start(&store_dir, clock.clone());
                running.settle(now).await;
            }
            let count = 1 + random.below(8);
            let mut events = Vec::new();
            let mut facts = Vec::new();
            for index in 0..count {
                let person = format!("u{}", random.below(PEOPLE));
                let at = now + SignedDuration::from_millis(index as i64 + 1);
                if random.below(6) == 0 {
                    let plan = if random.below(2) == 0 { "pro" } else { "free" };
                    events.push(json!({"type": "identify", "userId": person, "messageId": format!("s{seed}r{round}i{index}"),
                                       "timestamp": at.to_string(), "traits": {"plan": plan}}));
                    facts.push((person, None, plan, at));
                } else {
                    let name = NAMES[random.below(NAMES.len() as u64) as usize];
                    events.push(json!({"type": "track", "userId": person, "event": name, "messageId": format!("s{seed}r{round}i{index}"),
                                       "timestamp": at.to_string()}));
                    facts.push((person, Some(name), "", at));
                }
            }
            let seqs = running
                .append(&events, now + SignedDuration::from_secs(1))
                .await;
            for ((person, name, plan, at), seq) in facts.into_iter().zip(seqs) {
                let subject = format!("user_id:{person}");
                match name {
                    Some(name) => model.track(&subject, name, seq, at, now),
                    None => {
                        model.plan.insert(subject, plan.to_string());
                    }
                }
            }
            running.settle(now).await;
        }
        let end = start_at + ROUND * (ROUNDS as i32 + 8);
        assert!(clock.advance_to(end));
        model.advance(end);
        running.settle(end).await;
        let decided = running.decided(&model.ids);
        let missing: Vec<_> = model.decided.difference(&decided).collect();
        let extra: Vec<_> = decided.difference(&model.decided).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "seed {seed}: missing {missing:?}, not in the model {extra:?}"
        );
        eprintln!("seed {seed}: {} decisions", model.decided.len());
        assert!(
            model.decided.len() > 20,
            "seed {seed}: too few decisions to mean much"
        );
        running.stop();
    }
}
