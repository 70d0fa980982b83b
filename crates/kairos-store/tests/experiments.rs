//! Experiment exposures: sticky per identifier, the earliest kept across a
//! person's identifiers, outcomes counted once after exposure in the
//! effects batch, kept across a reopen, erased with the person.

use jiff::Timestamp;
use kairos_store::{ExperimentOutcome, Exposure, Store, StoreOptions};
use serde_json::json;

const ANN: &str = "user_id:ann";
const ANON: &str = "anonymous_id:a1";

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + seconds).unwrap()
}

fn exposure(group: &str, after_seq: u64) -> Exposure {
    Exposure {
        group: group.into(),
        at: at(after_seq as i64),
        after_seq,
        pre: 2.0,
        value: 0.0,
        converted: false,
        guardrails: Default::default(),
    }
}

const CONVERSION: ExperimentOutcome = ExperimentOutcome::Metric {
    value: 1.0,
    continuous: false,
};

#[test]
fn exposures_are_sticky_count_outcomes_once_and_are_erased() {
    let dir = tempfile::tempdir().unwrap();
    let experiment = {
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let record = store
            .outbox
            .create_experiment("hero", json!({"name": "hero"}), at(0))
            .unwrap();
        let id = record.id.clone();
        // First exposure of the anonymous id: stored; asked again, the same.
        let (first, new) = store
            .outbox
            .expose(&id, &[ANON.into()], ANON, |_| exposure("b", 5))
            .unwrap();
        assert!(new && first.group == "b");
        let (again, new) = store
            .outbox
            .expose(&id, &[ANON.into()], ANON, |_| exposure("a", 9))
            .unwrap();
        assert!(!new && again == first);
        // The user id exposed later (before the merge) to another arm.
        store
            .outbox
            .expose(&id, &[ANN.into()], ANN, |_| exposure("a", 8))
            .unwrap();
        // Merged: the earliest exposure (the anonymous id's) wins.
        let both = [ANN.to_string(), ANON.to_string()];
        let (merged, new) = store
            .outbox
            .expose(&id, &both, ANN, |_| exposure("a", 20))
            .unwrap();
        assert!(!new && merged.group == "b");
        // An event before the exposure is no outcome; one after counts once.
        let mut effects = store.effects();
        assert!(
            !effects
                .experiment_outcome(&id, &both, 5, CONVERSION)
                .unwrap()
        );
        assert!(
            effects
                .experiment_outcome(&id, &both, 6, CONVERSION)
                .unwrap()
        );
        assert!(
            !effects
                .experiment_outcome(&id, &both, 7, CONVERSION)
                .unwrap()
        );
        assert!(
            effects
                .experiment_outcome(&id, &both, 7, ExperimentOutcome::Guardrail(0))
                .unwrap()
        );
        effects.commit(Some(7)).unwrap();
        let mut effects = store.effects();
        assert!(
            !effects
                .experiment_outcome(&id, &both, 8, CONVERSION)
                .unwrap()
        );
        drop(effects);
        assert_eq!(store.outbox.group_counts(&id)["b"], (1, 1));
        assert_eq!(store.outbox.group_counts(&id)["a"], (0, 1));
        id
    };
    // Reopened: the exposures and counts are still there.
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let stored = store
        .outbox
        .exposure_of(&experiment, &[ANON.into()])
        .unwrap()
        .unwrap();
    assert!(stored.converted && stored.guardrails.contains(&0));
    assert_eq!(store.outbox.group_counts(&experiment)["b"], (1, 1));
    assert_eq!(store.outbox.exposures(&experiment).unwrap().len(), 2);
    // Erased: gone, and not counted.
    let erased = store
        .outbox
        .forget(&[ANN.to_string(), ANON.to_string()])
        .unwrap();
    assert_eq!(erased.experiment_exposures, 2);
    assert!(store.outbox.exposures(&experiment).unwrap().is_empty());
    assert!(store.outbox.group_counts(&experiment).is_empty());
    // A step that read the exposure before the erasure writes nothing back.
    let (_, new) = store
        .outbox
        .expose(&experiment, &[ANN.into()], ANN, |_| exposure("a", 30))
        .unwrap();
    assert!(new);
    assert!(store.outbox.exposures(&experiment).unwrap().is_empty());
    // Deleting the experiment removes its record.
    store
        .outbox
        .delete_experiment(&experiment)
        .unwrap()
        .unwrap();
    assert!(store.outbox.experiment(&experiment).is_none());
}
