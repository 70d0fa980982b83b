//! A journey step's writes ([`Effects`]): read back before they are
//! stored, and stored all together with the cursor or not at all.

use jiff::{SignedDuration, Timestamp};
use kairos_store::{Message, MessageStatus, Run, Store, StoreOptions, SyncChange, Wait};
use serde_json::json;

const ANN: &str = "user_id:ann";

fn options() -> StoreOptions {
    StoreOptions {
        log_partitions: 2,
        ..StoreOptions::default()
    }
}

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + seconds).unwrap()
}

fn run(event_seq: u64, resume_at: i64) -> Run {
    Run {
        journey: "jny_a".into(),
        identifier: ANN.into(),
        event_seq,
        pc: 1,
        resume_at: at(resume_at),
        waiting_for: None,
        started_at: at(0),
        event: json!({"name": "Signed Up"}),
    }
}

fn wait(key: &str, deadline: i64) -> Wait {
    Wait {
        journey: "jny_b".into(),
        key: key.into(),
        deadline: at(deadline),
        event_seq: 7,
        started_at: at(0),
        identifier: ANN.into(),
        event: json!({"name": "Product Added"}),
    }
}

fn message() -> Message {
    Message {
        id: "msg_7_a_0".into(),
        seq: 1,
        destination: "dst_a".into(),
        journey: "jny_a".into(),
        purpose: None,
        channel: "webhook".into(),
        identifier: ANN.into(),
        event_seq: 7,
        payload: json!({}),
        status: MessageStatus::Pending,
        attempts: 0,
        next_attempt_at: at(0),
        last_error: None,
        created_at: at(0),
        deferred_until: None,
        delivered_at: None,
    }
}

/// Every kind of write a step makes, over a stored run and wait.
fn step(effects: &mut kairos_store::Effects<'_>) {
    effects.record_entry("jny_a", ANN, at(1)).unwrap();
    effects.record_entry("jny_a", ANN, at(2)).unwrap();
    effects.count("jny_a", "entered", 1);
    effects.count("jny_a", "entered", 1);
    effects.remove_run(&run(1, 10));
    effects.save_run(&run(2, 20));
    effects.cancel_wait(&wait("cart-1", 10));
    effects.set_wait(&wait("cart-2", 20));
    effects.add_to_list("vip", &[ANN.to_string()], "journey a", at(1));
    effects.send(message());
    effects.sync_change(
        "syn_a".into(),
        SyncChange {
            seq: 7,
            action: "entered".into(),
            identifier: ANN.into(),
            at: at(1),
            noticed_at: at(1),
        },
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_step_is_read_back_before_commit_and_stored_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), options()).unwrap();
        let mut before = store.effects();
        before.save_run(&run(1, 10));
        before.set_wait(&wait("cart-1", 10));
        before.commit(Some(5)).unwrap();

        let mut effects = store.effects();
        step(&mut effects);
        // The step reads what it wrote…
        let entries = effects.entries("jny_a", ANN).unwrap().unwrap();
        assert_eq!((entries.count, entries.last), (2, at(2)));
        assert_eq!(effects.runs_of(ANN).unwrap(), vec![run(2, 20)]);
        assert_eq!(effects.wait("jny_b", "cart-1").unwrap(), None);
        assert_eq!(
            effects.wait("jny_b", "cart-2").unwrap(),
            Some(wait("cart-2", 20))
        );
        let lists = ["vip".to_string()];
        assert!(
            effects
                .find_in_lists(&lists, &[ANN.into()])
                .unwrap()
                .is_some()
        );
        assert_eq!(effects.messages().len(), 1);
        // …and nothing of it is stored until it commits.
        assert_eq!(store.outbox.entries("jny_a", ANN).unwrap(), None);
        assert_eq!(store.outbox.runs_of(ANN).unwrap(), vec![run(1, 10)]);
        drop(effects); // the crash before the commit
    }
    {
        let store = Store::open(dir.path(), options()).unwrap();
        let outbox = &store.outbox;
        assert_eq!(outbox.cursor().unwrap(), 5);
        assert_eq!(outbox.entries("jny_a", ANN).unwrap(), None);
        assert!(outbox.counts("jny_a").unwrap().is_empty());
        assert_eq!(outbox.runs_of(ANN).unwrap(), vec![run(1, 10)]);
        assert_eq!(
            outbox.wait("jny_b", "cart-1").unwrap(),
            Some(wait("cart-1", 10))
        );
        assert_eq!(outbox.wait("jny_b", "cart-2").unwrap(), None);
        assert_eq!(
            store.lists.find(&["vip".into()], &[ANN.into()]).unwrap(),
            None
        );
        assert_eq!(outbox.message("msg_7_a_0").unwrap(), None);
        assert!(outbox.sync_changes("syn_a", 10).unwrap().is_empty());

        let mut effects = store.effects();
        step(&mut effects);
        effects.commit(Some(9)).unwrap();
    }
    let store = Store::open(dir.path(), options()).unwrap();
    let outbox = &store.outbox;
    assert_eq!(outbox.cursor().unwrap(), 9);
    assert_eq!(outbox.entries("jny_a", ANN).unwrap().unwrap().count, 2);
    assert_eq!(outbox.counts("jny_a").unwrap()["entered"], 2);
    assert_eq!(outbox.runs_of(ANN).unwrap(), vec![run(2, 20)]);
    // The ended run's timer went with it; the saved one's is there.
    let later = at(30) + SignedDuration::from_secs(1);
    assert_eq!(outbox.due_runs(later, 10).unwrap(), vec![run(2, 20)]);
    assert_eq!(
        outbox.due_waits(later, 10).unwrap(),
        vec![wait("cart-2", 20)]
    );
    assert_eq!(outbox.wait("jny_b", "cart-1").unwrap(), None);
    assert!(
        store
            .lists
            .find(&["vip".into()], &[ANN.into()])
            .unwrap()
            .is_some()
    );
    assert_eq!(outbox.message("msg_7_a_0").unwrap(), Some(message()));
    assert_eq!(outbox.sync_changes("syn_a", 10).unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_saved_again_moves_its_timer_and_an_erased_person_is_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    let mut effects = store.effects();
    effects.save_run(&run(1, 10));
    effects.commit(None).unwrap();
    // Resumed and waiting again: removed, then saved with a later time.
    let mut effects = store.effects();
    effects.remove_run(&run(1, 10));
    effects.save_run(&run(1, 40));
    effects.commit(None).unwrap();
    assert!(store.outbox.due_runs(at(20), 10).unwrap().is_empty());
    assert_eq!(store.outbox.due_runs(at(40), 10).unwrap(), vec![run(1, 40)]);

    store.outbox.forget(&[ANN.to_string()]).unwrap();
    let mut effects = store.effects();
    step(&mut effects);
    effects.commit(Some(3)).unwrap();
    assert_eq!(store.outbox.cursor().unwrap(), 3);
    assert_eq!(store.outbox.entries("jny_a", ANN).unwrap(), None);
    assert!(store.outbox.runs_of(ANN).unwrap().is_empty());
    assert_eq!(store.outbox.wait("jny_b", "cart-2").unwrap(), None);
    assert_eq!(store.outbox.message("msg_7_a_0").unwrap(), None);
    assert_eq!(
        store.lists.find(&["vip".into()], &[ANN.into()]).unwrap(),
        None
    );
}
