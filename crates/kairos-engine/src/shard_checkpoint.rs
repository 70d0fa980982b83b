//! A shard's checkpoint part, encoded a slice at a time between batches
//! instead of in one stop.
//!
//! Encoding a shard's whole state at once stopped it (and every profile
//! read waiting on its lock) for seconds with 100,000 people. Now the
//! `Checkpoint` operation only records who exists at that point of the
//! global order; the shard then encodes a few milliseconds' worth of
//! people whenever it has nothing to apply, and — copy-on-write — encodes a
//! person *before* any operation changes them. So every person is encoded
//! as they were at the checkpoint's position, exactly as the one-stop
//! encoding did, and the bytes are the same (the unit test compares).
//! Operations that touch everyone (new definitions, a new day's re-scoring)
//! first finish the part.

use std::collections::HashSet;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kairos_core::audience::incremental::{AudienceEngine, PersonId, PersonState};
use kairos_core::identity::graph::ProfileId;
use serde::Serialize;

use crate::shard::ShardProfile;

/// Longest a shard encodes in one go while a part is pending: short
/// enough that the next batch and profile reads wait no longer than a
/// slow batch would make them.
pub(crate) const ENCODE_SLICE: Duration = Duration::from_millis(2);

/// While batches keep coming, one slice per this long: encoding takes at
/// most a tenth of a busy shard's time, so the shard does not fall behind
/// (a part of 200 MB then takes about half a minute instead of three
/// seconds; whenever the shard is idle, it encodes without pause).
pub(crate) const ENCODE_EVERY: Duration = Duration::from_millis(20);

/// A part being encoded: who is still to be encoded, and what was.
pub(crate) struct PendingPart {
    reply: mpsc::Sender<Vec<u8>>,
    aged_day: i64,
    /// Everyone present at the checkpoint, visited in this order.
    order: Vec<u64>,
    /// Profiles and audience states present at the checkpoint and not
    /// encoded yet.
    profiles_left: HashSet<ProfileId>,
    persons_left: HashSet<PersonId>,
    profiles_done: Vec<(ProfileId, Vec<u8>)>,
    persons_done: Vec<(PersonId, Vec<u8>)>,
}

impl PendingPart {
    /// Notes everyone present now (the checkpoint's position).
    pub(crate) fn begin(
        reply: mpsc::Sender<Vec<u8>>,
        aged_day: i64,
        profiles: impl Iterator<Item = ProfileId>,
        audiences: &AudienceEngine,
    ) -> PendingPart {
        let profiles_left: HashSet<ProfileId> = profiles.collect();
        let persons_left: HashSet<PersonId> =
            audiences.persons().map(|(person, _)| person).collect();
        let mut order: Vec<u64> = profiles_left.union(&persons_left).copied().collect();
        order.sort_unstable_by(|a, b| b.cmp(a)); // popped from the end: ascending
        PendingPart {
            reply,
            aged_day,
            order,
            profiles_done: Vec::with_capacity(profiles_left.len()),
            persons_done: Vec::with_capacity(persons_left.len()),
            profiles_left,
            persons_left,
        }
    }

    /// Encodes `id` as it is now if it is still owed: call before anything
    /// changes them.
    pub(crate) fn preserve(
        &mut self,
        id: u64,
        profile: Option<&ShardProfile>,
        person: Option<&PersonState>,
    ) {
        if self.profiles_left.remove(&id) {
            let encoded = match profile {
                Some(entry) => encode_entry(id, entry),
                None => encode_entry(id, &ShardProfile::default()),
            };
            self.profiles_done.push((id, encoded));
        }
        if self.persons_left.remove(&id) {
            let encoded = match person {
                Some(state) => encode_entry(id, state),
                None => encode_entry(id, &PersonState::default()),
            };
            self.persons_done.push((id, encoded));
        }
    }

    /// Encodes people for up to `budget`; true when everyone is.
    pub(crate) fn step(
        &mut self,
        budget: Duration,
        profiles: &std::collections::HashMap<ProfileId, ShardProfile>,
        audiences: &AudienceEngine,
    ) -> bool {
        let started = Instant::now();
        while let Some(id) = self.order.pop() {
            self.preserve(id, profiles.get(&id), audiences.person(id));
            if started.elapsed() >= budget {
                break;
            }
        }
        self.order.is_empty()
    }

    /// Whether `id` is still owed.
    pub(crate) fn owes(&self, id: u64) -> bool {
        self.profiles_left.contains(&id) || self.persons_left.contains(&id)
    }

    /// Assembles the part (as `checkpoint::encode(&ShardPartRef)` would
    /// have, people in id order) and hands it to the checkpoint.
    pub(crate) fn finish(mut self) {
        debug_assert!(self.profiles_left.is_empty() && self.persons_left.is_empty());
        self.profiles_done.sort_unstable_by_key(|(id, _)| *id);
        self.persons_done.sort_unstable_by_key(|(id, _)| *id);
        let mut part = Vec::new();
        rmp::encode::write_array_len(&mut part, 3).expect("writes to a vector");
        rmp_serde::encode::write(&mut part, &self.aged_day).expect("writes to a vector");
        for entries in [&self.profiles_done, &self.persons_done] {
            rmp::encode::write_array_len(&mut part, entries.len() as u32)
                .expect("writes to a vector");
            for (_, bytes) in entries {
                part.extend_from_slice(bytes);
            }
        }
        let _ = self.reply.send(part);
    }
}

/// One `(id, state)` pair, as the part's vectors hold it.
fn encode_entry<T: Serialize>(id: u64, state: &T) -> Vec<u8> {
    rmp_serde::to_vec(&(id, state)).expect("engine state encodes")
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, mpsc};
    use std::time::Duration;

    use jiff::{SignedDuration, Timestamp};
    use kairos_core::audience::incremental::Program;
    use kairos_core::audience::parse;
    use kairos_core::normalize::{Arrival, IngestLimits, normalize_event};
    use serde_json::json;

    use crate::shard::ShardOp;
    use crate::state::EngineState;
    use crate::types::EngineSettings;

    fn event(index: u64, at: Timestamp) -> Arc<kairos_core::Event> {
        let raw = json!({
            "type": "track",
            "event": if index.is_multiple_of(3) { "Order Completed" } else { "Product Viewed" },
            "userId": format!("user-{}", index * 7 % 40),
            "messageId": format!("m{index}"),
            "timestamp": at.to_string(),
            "properties": {"revenue": index % 50},
        });
        let limits = IngestLimits::default();
        let arrival = Arrival {
            source_id: "src_test",
            received_at: at,
            batch_sent_at: None,
            path_type: None,
            limits: &limits,
            plan: None,
        };
        let raw = serde_json::value::RawValue::from_string(raw.to_string()).unwrap();
        Arc::new(normalize_event(&raw, &arrival).unwrap())
    }

    #[test]
    fn a_part_encoded_between_changes_equals_the_state_at_its_position() {
        let program = Program::compile(&[
            (
                "viewers".into(),
                parse("count \"Product Viewed\" within 1h >= 2").unwrap(),
            ),
            (
                "buyers".into(),
                parse("sum revenue of \"Order Completed\" within 1d > 40").unwrap(),
            ),
            (
                "lapsed".into(),
                parse("last \"Order Completed\" more than 30m ago").unwrap(),
            ),
        ])
        .unwrap();
        let mut engine = EngineState::with_audiences(EngineSettings::default(), Arc::new(program));
        let start: Timestamp = "2026-11-20T10:00:00Z".parse().unwrap();
        let at = |index: u64| start + SignedDuration::from_secs(index as i64 * 20);
        for index in 0..300 {
            engine.apply_at(event(index, at(index)), at(index));
        }
        let expected: Vec<Vec<u8>> = engine
            .shards_mut()
            .iter()
            .map(|shard| shard.part_in_one_go())
            .collect();
        let mut replies = Vec::new();
        for shard in engine.shards_mut() {
            let (reply, receiver) = mpsc::channel();
            shard.handle(ShardOp::Checkpoint { reply }, at(300));
            replies.push(receiver);
        }
        // Events (and timers firing) change people while the parts are
        // encoded one person per step.
        for index in 300..500 {
            engine.apply_at(event(index, at(index)), at(index));
            for shard in engine.shards_mut() {
                shard.continue_checkpoint_part(Duration::ZERO);
            }
        }
        for shard in engine.shards_mut() {
            shard.finish_checkpoint_part();
        }
        for (receiver, expected) in replies.into_iter().zip(expected) {
            let part = receiver.recv().unwrap();
            assert!(
                part.len() > 1_000,
                "people were encoded: {} bytes",
                part.len()
            );
            assert!(
                part == expected,
                "the part equals the state at its position"
            );
        }
    }
}
