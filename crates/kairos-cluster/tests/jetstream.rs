//! kairos-cluster against real nats-server processes on loopback (one
//! server, or a 3-server cluster), per docs/cluster.md §12.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use kairos_cluster::lease::LeaseState;
use kairos_cluster::setup::{self, IDENTITY_BUCKET, events_stream_name};
use kairos_cluster::{
    BatchMessage, Chain, Cluster, Error, EventMessage, Layout, LeaseTimings, Leases,
    publish_atomic_batch, publish_events,
};
use support::{client, ensure_when_ready, start, start_single};

fn events(ids: &[&str]) -> Vec<EventMessage> {
    ids.iter()
        .map(|id| EventMessage {
            dedup_id: id.to_string(),
            received_ms: 1_700_000_000_000,
            payload: Bytes::from(format!("sealed record {id}")),
        })
        .collect()
}

async fn stream_messages(cluster: &Cluster, name: &str) -> u64 {
    let mut stream = cluster.jetstream.get_stream(name).await.unwrap();
    stream.info().await.unwrap().state.messages
}

/// Short lease timings so expiry tests take seconds (relations as in prod).
fn short_timings() -> LeaseTimings {
    LeaseTimings::new(
        Duration::from_secs(2),
        Duration::from_millis(300),
        Duration::from_millis(1_500),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_is_idempotent_and_a_conflicting_stream_is_explained() {
    let servers = start_single();
    let cluster = client(&servers).await;
    let layout = Layout::new(4, 1).unwrap();
    ensure_when_ready(&cluster, &layout).await;
    ensure_when_ready(&cluster, &layout).await; // second run: nothing to do
    let account = cluster.jetstream.query_account().await.unwrap();
    assert_eq!(account.streams, layout.streams().len());
    assert_eq!(account.streams, 4 * 3 + 1 + 5 + 1);

    // The client's KV API works on the buckets made as plain streams.
    let identity = cluster
        .jetstream
        .get_key_value(IDENTITY_BUCKET)
        .await
        .unwrap();
    let revision = identity.create("i.abc", "7".into()).await.unwrap();
    assert_eq!(
        identity.get("i.abc").await.unwrap().unwrap(),
        Bytes::from("7")
    );
    assert!(
        identity.create("i.abc", "8".into()).await.is_err(),
        "create is first-claim-wins"
    );
    assert!(revision > 0);

    // The same name with another configuration is refused, naming the field.
    let mut other = layout.events_stream(0);
    other.max_age = Duration::from_secs(3_600);
    let error = setup::ensure_stream(&cluster.jetstream, other)
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, Error::StreamConflict { .. }), "{message}");
    assert!(
        message.contains("KAIROS_EVENTS_0") && message.contains("max_age"),
        "{message}"
    );

    // Through the whole setup: a stream made earlier with another age limit
    // stops it with the same error, and nothing of it is changed.
    let mut earlier = Layout::new(6, 1).unwrap().events_stream(5);
    earlier.max_age = Duration::from_secs(3_600);
    cluster.jetstream.create_stream(earlier).await.unwrap();
    let error = kairos_cluster::ensure_layout(&cluster.jetstream, &Layout::new(6, 1).unwrap())
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("stream KAIROS_EVENTS_5 already exists"),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("max_age: 3600s exists, 0ns wanted"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_reachable_server_is_a_clear_error_not_a_hang() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let config = kairos_cluster::ConnectConfig::new([format!("nats://127.0.0.1:{port}")]);
    let error = kairos_cluster::connect(&config).await.unwrap_err();
    assert!(matches!(error, Error::Connect { .. }), "{error}");
    assert!(error.to_string().contains(&port.to_string()), "{error}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_is_acked_and_deduplicated_by_msg_id() {
    let servers = start_single();
    let cluster = client(&servers).await;
    ensure_when_ready(&cluster, &Layout::new(2, 1).unwrap()).await;

    let first = publish_events(&cluster, 1, &events(&["a1", "a2", "a3"]))
        .await
        .unwrap();
    let sequences: Vec<u64> = first.iter().map(|ack| ack.sequence).collect();
    assert_eq!(sequences, vec![1, 2, 3]);
    assert!(first.iter().all(|ack| !ack.duplicate));

    // A retry (same ids, e.g. through another node) plus one new event.
    let retry = publish_events(&cluster, 1, &events(&["a2", "a1", "a3", "a4"]))
        .await
        .unwrap();
    let duplicates: Vec<bool> = retry.iter().map(|ack| ack.duplicate).collect();
    assert_eq!(duplicates, vec![true, true, true, false]);
    // A duplicate's ack names the first copy's position.
    let sequences: Vec<u64> = retry.iter().map(|ack| ack.sequence).collect();
    assert_eq!(sequences, vec![2, 1, 3, 4]);
    assert_eq!(stream_messages(&cluster, &events_stream_name(1)).await, 4);
    assert_eq!(stream_messages(&cluster, &events_stream_name(0)).await, 0);

    // The stored message carries its receivedAt for the long dedup window.
    let stream = cluster
        .jetstream
        .get_stream_no_info(events_stream_name(1))
        .await
        .unwrap();
    let stored = stream.get_raw_message(4).await.unwrap();
    assert_eq!(
        stored
            .headers
            .get(kairos_cluster::RECEIVED_HEADER)
            .unwrap()
            .as_str(),
        "1700000000000"
    );
    assert_eq!(stored.payload, Bytes::from("sealed record a4"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_lease_cannot_be_taken_until_it_expires() {
    let servers = start_single();
    let cluster = client(&servers).await;
    ensure_when_ready(&cluster, &Layout::new(2, 1).unwrap()).await;
    let leases = Leases::open(&cluster, short_timings()).await.unwrap();

    let mut held = leases.acquire(1, "node-a").await.unwrap();
    // A renewal whose ack was lost: the retry on the old revision finds
    // this holder's write and adopts its revision (not "lost").
    let before_renewal = held.clone();
    leases.renew(&mut held).await.unwrap();
    let mut retry = before_renewal;
    leases.renew(&mut retry).await.unwrap();
    assert_eq!(retry.revision, held.revision);
    let error = leases.acquire(1, "node-b").await.unwrap_err();
    assert!(
        matches!(&error, Error::LeaseHeld { holder, .. } if holder == "node-a"),
        "{error}"
    );
    // Renewals keep it: still refused to B after longer than one TTL.
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(2_600) {
        leases.renew(&mut held).await.unwrap();
        assert!(held.may_write());
        assert!(leases.acquire(1, "node-b").await.is_err());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(held.revision > held.epoch);

    // A stops renewing (as if stalled): it stops writing after pause_after,
    // and B gets the lease only once the server expired the key.
    let last_renewal = Instant::now();
    leases.renew(&mut held).await.unwrap();
    let taken = loop {
        match leases.acquire(1, "node-b").await {
            Ok(lease) => break lease,
            Err(Error::LeaseHeld { .. }) => {
                assert!(
                    last_renewal.elapsed() < Duration::from_secs(8),
                    "lease never expired"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("{error}"),
        }
    };
    let waited = last_renewal.elapsed();
    assert!(
        waited >= Duration::from_millis(1_900),
        "taken {waited:?} after the last renewal, before the TTL"
    );
    assert!(
        !held.may_write(),
        "the stalled holder must have paused before the takeover"
    );
    println!("lease taken over {waited:?} after the holder's last renewal (TTL 2 s)");

    // The old holder's renewal is refused: lost, not renewable.
    let error = leases.renew(&mut held).await.unwrap_err();
    assert!(
        matches!(error, Error::LeaseLost { partition: 1, .. }),
        "{error}"
    );
    assert!(taken.epoch > held.revision);

    // A release frees it at once (no TTL wait).
    leases.release(taken).await.unwrap();
    assert!(matches!(
        leases.state(1).await.unwrap(),
        LeaseState::Free { .. }
    ));
    leases.acquire(1, "node-c").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_lost_its_lease_is_fenced_on_its_chains() {
    let servers = start_single();
    let cluster = client(&servers).await;
    ensure_when_ready(&cluster, &Layout::new(2, 1).unwrap()).await;
    let leases = Leases::open(&cluster, short_timings()).await.unwrap();
    let (stream, subject) = ("KAIROS_OPS_1", "kairos.ops.1.from.0");

    let mut lease_a = leases.acquire(0, "node-a").await.unwrap();
    let writer_a = format!("node-a/{}", lease_a.epoch);
    let mut chain_a = Chain::take_over(&cluster, stream, subject, &writer_a, "takeover a".into())
        .await
        .unwrap();
    chain_a.append("op 1 from a".into()).await.unwrap();
    // A retry of an append whose ack was lost finds its own write there:
    // stored, not deposed, and not stored twice.
    let before_append = chain_a.clone();
    let a_last = chain_a.append("op 2 from a".into()).await.unwrap();
    let mut retry = before_append;
    assert_eq!(retry.append("op 2 from a".into()).await.unwrap(), a_last);
    assert_eq!(a_last, chain_a.last_sequence());

    // A stalls; its lease expires and B takes the partition and the chain.
    let lease_b = loop {
        match leases.acquire(0, "node-b").await {
            Ok(lease) => break lease,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let writer_b = format!("node-b/{}", lease_b.epoch);
    let mut chain_b = Chain::take_over(&cluster, stream, subject, &writer_b, "takeover b".into())
        .await
        .unwrap();
    assert!(chain_b.last_sequence() > a_last);

    // A wakes up, still believing it owns the partition: its write with the
    // chain's old last sequence is refused by the stream, whatever its clock.
    let error = chain_a
        .append("op 3 from a (stale)".into())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::Deposed { found, .. } if *found == chain_b.last_sequence()),
        "{error}"
    );
    assert!(matches!(
        leases.renew(&mut lease_a).await,
        Err(Error::LeaseLost { .. })
    ));
    let b_op = chain_b.append("op 3 from b".into()).await.unwrap();

    // The chain holds A's writes before the takeover, B's after, nothing else.
    let jetstream_stream = cluster.jetstream.get_stream_no_info(stream).await.unwrap();
    let mut payloads = Vec::new();
    for sequence in 1..=b_op {
        let message = jetstream_stream.get_raw_message(sequence).await.unwrap();
        payloads.push(String::from_utf8(message.payload.to_vec()).unwrap());
    }
    assert_eq!(
        payloads,
        [
            "takeover a",
            "op 1 from a",
            "op 2 from a",
            "takeover b",
            "op 3 from b"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_atomic_batch_stores_all_or_nothing_and_fences_a_deposed_router() {
    let servers = start_single();
    let cluster = client(&servers).await;
    ensure_when_ready(&cluster, &Layout::new(2, 1).unwrap()).await;
    let index = cluster
        .jetstream
        .get_key_value(IDENTITY_BUCKET)
        .await
        .unwrap();
    let fence = index.create("f.0", "owner a".into()).await.unwrap();
    let profile = index.create("p.7", "profile 7".into()).await.unwrap();

    // One stale revision: nothing of the batch is stored.
    let stale = vec![
        BatchMessage::kv_put(IDENTITY_BUCKET, "f.0", "a, cursor 1", fence),
        BatchMessage::kv_put(IDENTITY_BUCKET, "p.7", "merged", profile + 99),
        BatchMessage::kv_put(IDENTITY_BUCKET, "i.abc", "7", 0),
    ];
    let error = publish_atomic_batch(&cluster, stale).await.unwrap_err();
    assert!(matches!(error, Error::BatchRefused { .. }), "{error}");
    assert_eq!(
        index.get("f.0").await.unwrap().unwrap(),
        Bytes::from("owner a")
    );
    assert!(
        index.get("i.abc").await.unwrap().is_none(),
        "the new key of a refused batch is absent"
    );

    // All current: all stored, in one batch.
    let current = vec![
        BatchMessage::kv_put(IDENTITY_BUCKET, "f.0", "a, cursor 1", fence),
        BatchMessage::kv_put(IDENTITY_BUCKET, "p.7", "merged", profile),
        BatchMessage::kv_put(IDENTITY_BUCKET, "i.abc", "7", 0),
    ];
    let ack = publish_atomic_batch(&cluster, current).await.unwrap();
    assert_eq!(ack.count, 3);
    assert_eq!(index.get("i.abc").await.unwrap().unwrap(), Bytes::from("7"));
    let fence_a = index.entry("f.0").await.unwrap().unwrap().revision;

    // B takes the route fence over; A's next batch (fenced on f.0) fails.
    index
        .update("f.0", "owner b".into(), fence_a)
        .await
        .unwrap();
    let deposed = vec![
        BatchMessage::kv_put(IDENTITY_BUCKET, "f.0", "a, cursor 2", fence_a),
        BatchMessage::kv_put(IDENTITY_BUCKET, "i.xyz", "7", 0),
    ];
    assert!(matches!(
        publish_atomic_batch(&cluster, deposed).await,
        Err(Error::BatchRefused { .. })
    ));
    assert!(index.get("i.xyz").await.unwrap().is_none());

    // A stream without allow_atomic refuses a batch with a clear error.
    let error = publish_atomic_batch(
        &cluster,
        vec![
            BatchMessage::new("kairos.ops.0.admin", "x"),
            BatchMessage::new("kairos.ops.0.admin", "y"),
        ],
    )
    .await
    .unwrap_err();
    assert!(matches!(error, Error::BatchRefused { .. }), "{error}");
    assert_eq!(stream_messages(&cluster, "KAIROS_OPS_0").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_go_on_after_kill_9_of_a_server_in_a_3_node_cluster() {
    let mut servers = start(3);
    let cluster = client(&servers).await;
    ensure_when_ready(&cluster, &Layout::new(1, 3).unwrap()).await;
    let stream_name = events_stream_name(0);
    let mut stream = cluster.jetstream.get_stream(&stream_name).await.unwrap();
    // Kill the server that both leads the stream and carries the client's
    // connection: an election and a reconnect at once.
    let leader = cluster.client.server_info().server_name;
    move_leader(&cluster, &stream_name, &leader).await;
    let mut acked = 0u64;
    let mut acks_at = Vec::new();
    let mut killed_at = None;
    let started = Instant::now();
    for batch in 0u64.. {
        let ids: Vec<String> = (0..10).map(|n| format!("e{batch}-{n}")).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let acks = publish_events(&cluster, 0, &events(&ids))
            .await
            .expect("publish within the deadline");
        assert!(acks.iter().all(|ack| !ack.duplicate) || killed_at.is_some());
        acked += acks.iter().filter(|ack| !ack.duplicate).count() as u64;
        acks_at.push(Instant::now());
        if batch == 20 {
            servers.by_name(&leader).kill(); // kill -9 of the stream's leader
            killed_at = Some(Instant::now());
        }
        if batch >= 60 && killed_at.is_some_and(|at| at.elapsed() > Duration::from_secs(1)) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(40), "too slow");
    }
    let killed_at = killed_at.unwrap();
    let pause = acks_at
        .windows(2)
        .map(|pair| pair[1] - pair[0])
        .max()
        .unwrap();
    println!("kill -9 of {leader}: longest pause between acked batches {pause:?}");
    let after = acks_at.iter().filter(|at| **at > killed_at).count();
    assert!(after >= 40, "only {after} batches acked after the kill");

    // Every acknowledged event is stored exactly once.
    let stored = stream.info().await.unwrap().state.messages;
    assert_eq!(stored, acked);
    assert_eq!(stored, 10 * acks_at.len() as u64);
    let new_leader = stream
        .info()
        .await
        .unwrap()
        .cluster
        .clone()
        .unwrap()
        .leader
        .unwrap();
    assert_ne!(new_leader, leader);
    assert_ne!(
        cluster.client.server_info().server_name,
        leader,
        "the client reconnected to a surviving server"
    );
}

/// Asks the stream's leader to step down in favour of `wanted` (nats-server
/// 2.11+ takes a preferred server) until `wanted` leads.
async fn move_leader(cluster: &Cluster, stream_name: &str, wanted: &str) {
    let subject = format!("$JS.API.STREAM.LEADER.STEPDOWN.{stream_name}");
    let request = format!(r#"{{"placement":{{"preferred":"{wanted}"}}}}"#);
    for _ in 0..50 {
        let mut stream = cluster.jetstream.get_stream(stream_name).await.unwrap();
        let leader = stream.info().await.unwrap().cluster.clone().unwrap().leader;
        if leader.as_deref() == Some(wanted) {
            return;
        }
        let _ = cluster
            .client
            .request(subject.clone(), request.clone().into())
            .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{wanted} never became the leader of {stream_name}");
}
