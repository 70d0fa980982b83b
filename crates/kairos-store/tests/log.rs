//! The log survives reopening, deduplicates across restarts, and keeps
//! quarantine records with their reasons.

use kairos_core::normalize::{Arrival, FieldError, IngestLimits, normalize_event};
use kairos_store::{Appended, LogRecord, QuarantineEntry, Store, StoreOptions};
use serde_json::value::RawValue;

fn record(message_id: &str, user: &str) -> LogRecord {
    let limits = IngestLimits::default();
    let raw = RawValue::from_string(format!(
        r#"{{"type":"track","event":"Viewed","userId":"{user}","messageId":"{message_id}","properties":{{"n":1}}}}"#
    ))
    .unwrap();
    let arrival = Arrival {
        source_id: "src_a",
        received_at: jiff::Timestamp::now(),
        batch_sent_at: None,
        path_type: None,
        limits: &limits,
        plan: None,
    };
    // One pseudonym for every test event; the vault tests cover many.
    LogRecord::from_event(
        &normalize_event(&raw, &arrival).unwrap(),
        *b"test-subject-000",
    )
}

fn options() -> StoreOptions {
    StoreOptions {
        log_partitions: 4,
        ..StoreOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn appended_events_survive_reopen_and_stay_deduplicated() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), options()).unwrap();
        let receipt = store
            .writer
            .append(
                (0..100)
                    .map(|i| record(&format!("m{i}"), &format!("u{}", i % 7)))
                    .collect(),
                vec![],
                vec![],
            )
            .await
            .unwrap();
        assert!(
            receipt
                .appended
                .iter()
                .all(|outcome| matches!(outcome, Appended::Stored(_)))
        );
        let again = store
            .writer
            .append(vec![record("m5", "u5")], vec![], vec![])
            .await
            .unwrap();
        assert!(matches!(again.appended[0], Appended::Duplicate(_)));
    }
    let store = Store::open(dir.path(), options()).unwrap();
    let events = store
        .log
        .read_after(0, store.writer.committed_seq(), 1000, None)
        .unwrap();
    let seqs: Vec<u64> = events.iter().map(|event| event.seq).collect();
    assert_eq!(
        seqs,
        (1..=100).collect::<Vec<_>>(),
        "log order is the sequence order across partitions"
    );
    let decoded = events[5].decode().unwrap();
    assert_eq!(decoded.message_id, "m5");
    assert!(
        events[5]
            .to_json()
            .starts_with("{\"seq\":6,\"sourceId\":\"src_a\"")
    );
    assert!(events[0].is_from("src_a") && !events[0].is_from("src_b"));
    let again = store
        .writer
        .append(
            vec![record("m5", "u5"), record("new", "u1")],
            vec![],
            vec![],
        )
        .await
        .unwrap();
    assert!(matches!(again.appended[0], Appended::Duplicate(6)));
    assert_eq!(
        again.appended[1],
        Appended::Stored(101),
        "sequence numbers continue after reopen"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn paging_by_cursor_and_source() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    store
        .writer
        .append(
            (0..10)
                .map(|i| record(&format!("m{i}"), &format!("u{i}")))
                .collect(),
            vec![],
            vec![],
        )
        .await
        .unwrap();
    let page = store
        .log
        .read_after(3, store.writer.committed_seq(), 4, None)
        .unwrap();
    assert_eq!(
        page.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![4, 5, 6, 7]
    );
    assert!(
        store
            .log
            .read_after(0, store.writer.committed_seq(), 10, Some("src_other"))
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn quarantine_keeps_reasons_and_can_be_cleared() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    let entry = QuarantineEntry {
        subject: *b"test-subject-001",
        source_id: "src_a".into(),
        received_at: jiff::Timestamp::now(),
        index: 3,
        errors: vec![FieldError {
            field: "userId".into(),
            message: "missing".into(),
        }],
        event: RawValue::from_string("{\"type\":\"track\"}".into()).unwrap(),
        batch_sent_at: None,
        path_type: None,
    };
    let receipt = store
        .writer
        .append(vec![], vec![entry], vec![])
        .await
        .unwrap();
    let id = receipt.quarantine_ids[0];
    let listed = store.quarantine.list(0, 10, None).unwrap();
    assert_eq!(listed[0].index, 3);
    assert_eq!(listed[0].errors[0].field, "userId");
    store.writer.append(vec![], vec![], vec![id]).await.unwrap();
    assert!(store.quarantine.get(id).unwrap().is_none());
}

#[test]
fn partition_count_is_fixed_at_creation() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path(), options()).unwrap());
    let error = Store::open(
        dir.path(),
        StoreOptions {
            log_partitions: 2,
            ..StoreOptions::default()
        },
    )
    .err()
    .unwrap();
    assert!(error.to_string().contains("log_partitions = 4"), "{error}");
}

/// Copies of the same batch racing through the queue (an SDK retrying after
/// a timeout while the first attempt is still in flight) are stored once:
/// the dedup lookups run concurrently on the callers' threads, and the writer
/// closes the race with the groups committed meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_copies_of_a_batch_are_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(Store::open(dir.path(), options()).unwrap());
    for round in 0..5 {
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let records = (0..200)
                    .map(|i| record(&format!("r{round}-{i}"), &format!("u{i}")))
                    .collect();
                store.writer.append(records, vec![], vec![]).await.unwrap()
            }));
        }
        let mut stored = 0;
        for task in tasks {
            stored += task
                .await
                .unwrap()
                .appended
                .iter()
                .filter(|outcome| matches!(outcome, Appended::Stored(_)))
                .count();
        }
        assert_eq!(stored, 200, "round {round}");
    }
    let events = store
        .log
        .read_after(0, store.writer.committed_seq(), 1000, None)
        .unwrap();
    assert_eq!(events.len(), 1000);
}

/// Scans every file under `dir` for `needle`.
fn files_holding(dir: &std::path::Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        // fjall's background threads may delete a file while we look:
        // what is gone holds nothing.
        if path.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&path) {
                pending.extend(entries.flatten().map(|entry| entry.path()));
            }
        } else if std::fs::read(&path)
            .is_ok_and(|bytes| bytes.windows(needle.len()).any(|window| window == needle))
        {
            found.push(path);
        }
    }
    found
}

/// An erasure killed between its commit and the end of its purge (the
/// pending marker set, the journal still holding what was deleted) is
/// finished when the store opens again; list members are keyed by
/// pseudonyms, so their deletion names nobody either.
#[test]
fn an_interrupted_purge_is_finished_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "email:purge-me-7f3a@example.org";
    {
        let store = Store::open(dir.path(), options()).unwrap();
        store
            .lists
            .add("vip", &[secret.to_string()], "test", jiff::Timestamp::now())
            .unwrap();
        store.lists.forget(&[secret.to_string()]).unwrap();
        store.purge_pending().unwrap();
        // Dropped here without purging: as after a kill -9.
    }
    assert!(
        !files_holding(dir.path(), b"purge-me-7f3a").is_empty(),
        "the journal still holds the member before the purge"
    );
    drop(Store::open(dir.path(), options()).unwrap());
    assert_eq!(
        files_holding(dir.path(), b"purge-me-7f3a"),
        Vec::<std::path::PathBuf>::new()
    );
}
