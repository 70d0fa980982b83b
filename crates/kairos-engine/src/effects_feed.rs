//! What the shards hand the effects stage: every event a journey or an
//! audience sync can act on, with the person it belongs to as the shard
//! holds them right after applying it — so the stage decides on the
//! profile the event made, never re-reads or re-decrypts the log, and never
//! waits on the engine for an event it was handed.
//!
//! Each shard sends, after every batch it applied, the inputs of that batch
//! and the router position it has passed (`through`) on one bounded channel
//! ([`EFFECT_BATCHES_QUEUED_MAX`]: a slow stage holds the shards back rather
//! than growing memory). The stage's [`Merger`] hands inputs over in log
//! order, and only up to the position every shard has passed: a step
//! decided with the cursor at that position covers every input at or below
//! it, so after a crash the shards' replay re-sends them and the stage drops
//! what is at or below its stored cursor — the rule announcements follow.
//! A checkpoint is written only once the stage has passed its position
//! ([`EffectsLink::committed`]): a restore never skips an input the stage has
//! not decided on.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use kairos_core::Event;
use kairos_core::audience::eval::EventFact;
use kairos_core::identity::Identifier;
use tokio::sync::{mpsc, watch};

use crate::types::ProfileView;

/// Shard batches queued for the effects stage before shards wait for it.
pub const EFFECT_BATCHES_QUEUED_MAX: usize = 64;

/// One event the effects stage acts on, with its person.
#[derive(Debug, Clone)]
pub struct EffectInput {
    /// The event's position in the log.
    pub seq: u64,
    pub event: Arc<Event>,
    /// Its name, time and properties (decoded once, by the shard).
    pub fact: EventFact,
    /// Whom the event names (its most trusted identifier): runs, waits and
    /// entries are kept per subject.
    pub subject: Identifier,
    /// The profile right after the event (identities, traits, consent,
    /// memberships, computed traits, scores).
    pub person: Box<ProfileView>,
    /// An `Audience Entered`/`Exited` announcement of the engine.
    pub announcement: bool,
}

/// What one shard applied in one batch.
#[derive(Debug)]
pub struct ShardOutput {
    pub shard: usize,
    pub inputs: Vec<EffectInput>,
    /// The router position the shard has passed.
    pub through: u64,
}

/// The event names the effects stage acts on (journey triggers, the events
/// runs wait for or end on, membership announcements for audience syncs).
/// Only these are handed over with their person.
#[derive(Debug, Default, Clone)]
pub struct EffectsInterest {
    names: BTreeSet<String>,
}

impl EffectsInterest {
    pub fn new(names: impl IntoIterator<Item = String>) -> EffectsInterest {
        EffectsInterest {
            names: names.into_iter().collect(),
        }
    }

    pub fn wants(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// The interest, shared by the stage (which widens it) and the shards
/// (which read it once per batch).
pub type InterestHandle = Arc<RwLock<Arc<EffectsInterest>>>;

/// The engine's end of the feed ([`crate::types::EngineSettings::effects`]).
#[derive(Clone)]
pub struct EffectsLink {
    pub(crate) sender: mpsc::Sender<ShardOutput>,
    pub(crate) interest: InterestHandle,
    /// The position through which the stage has made every decision
    /// durable (a checkpoint waits for it).
    pub(crate) committed: watch::Receiver<u64>,
}

impl EffectsLink {
    /// Adds event names the stage acts on. Call it before reading the log
    /// position a new journey or sync starts after: every event after that
    /// position is then handed over. Names are never removed while running
    /// (an extra name only costs a hand-over).
    pub fn widen(&self, names: impl IntoIterator<Item = String>) {
        let Ok(mut slot) = self.interest.write() else {
            return;
        };
        let mut widened = (**slot).clone();
        widened.names.extend(names);
        *slot = Arc::new(widened);
    }

    pub(crate) fn interest(&self) -> Arc<EffectsInterest> {
        self.interest
            .read()
            .map(|interest| interest.clone())
            .unwrap_or_default()
    }
}

/// The effects stage's end of the feed.
pub struct EffectsTap {
    pub receiver: mpsc::Receiver<ShardOutput>,
    /// Where the stage says how far its decisions are durable.
    pub committed: watch::Sender<u64>,
}

/// A feed for `shards` shards acting on `interest`: the link goes into the
/// engine's settings, the tap to the effects stage.
pub fn channel(interest: EffectsInterest) -> (EffectsLink, EffectsTap) {
    let (sender, receiver) = mpsc::channel(EFFECT_BATCHES_QUEUED_MAX);
    let (committed_sender, committed) = watch::channel(0);
    let link = EffectsLink {
        sender,
        interest: Arc::new(RwLock::new(Arc::new(interest))),
        committed,
    };
    let tap = EffectsTap {
        receiver,
        committed: committed_sender,
    };
    (link, tap)
}

/// Puts the shards' outputs back into log order, up to the position every
/// shard has passed.
#[derive(Debug)]
pub struct Merger {
    through: Vec<u64>,
    pending: Vec<EffectInput>,
    /// Inputs at or below this were decided before (a restart's replay).
    decided_through: u64,
}

impl Merger {
    /// A merger for `shards` shards; inputs at or below `decided_through`
    /// (the stored cursor) are dropped.
    pub fn new(shards: usize, decided_through: u64) -> Merger {
        Merger {
            through: vec![0; shards.max(1)],
            pending: Vec::new(),
            decided_through,
        }
    }

    pub fn push(&mut self, output: ShardOutput) {
        if let Some(through) = self.through.get_mut(output.shard) {
            *through = (*through).max(output.through);
        }
        let decided = self.decided_through;
        self.pending.extend(
            output
                .inputs
                .into_iter()
                .filter(|input| input.seq > decided),
        );
    }

    /// The position every shard has passed.
    pub fn through(&self) -> u64 {
        self.through.iter().copied().min().unwrap_or(0)
    }

    /// The inputs every shard has passed, in log order, and that position;
    /// later ones stay.
    pub fn take_ready(&mut self) -> (Vec<EffectInput>, u64) {
        let through = self.through();
        let (mut ready, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|input| input.seq <= through);
        self.pending = later;
        ready.sort_by_key(|input| input.seq);
        self.decided_through = self.decided_through.max(through);
        (ready, through)
    }

    /// Inputs received and not handed over yet.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(seq: u64) -> EffectInput {
        let event = Event {
            seq,
            source_id: "src".into(),
            message_id: format!("m{seq}"),
            event_type: kairos_core::EventType::Track,
            event: Some("Bought".into()),
            user_id: None,
            anonymous_id: Some("a".into()),
            timestamp: jiff::Timestamp::UNIX_EPOCH,
            received_at: jiff::Timestamp::UNIX_EPOCH,
            sent_at: None,
            original_timestamp: None,
            traits: None,
            violations: Vec::new(),
            fields: Vec::new(),
        };
        EffectInput {
            seq,
            fact: EventFact {
                name: "Bought".into(),
                at: jiff::Timestamp::UNIX_EPOCH,
                properties: Default::default(),
            },
            event: Arc::new(event),
            subject: Identifier::new("anonymous_id", "a"),
            person: Box::default(),
            announcement: false,
        }
    }

    fn output(shard: usize, seqs: &[u64], through: u64) -> ShardOutput {
        ShardOutput {
            shard,
            inputs: seqs.iter().map(|seq| input(*seq)).collect(),
            through,
        }
    }

    #[test]
    fn inputs_come_out_in_log_order_once_every_shard_passed_them() {
        let mut merger = Merger::new(2, 0);
        merger.push(output(0, &[1, 4], 5));
        // Shard 1 has not passed anything yet: nothing is ready.
        assert_eq!(merger.take_ready().0.len(), 0);
        merger.push(output(1, &[2, 3], 3));
        let (ready, through) = merger.take_ready();
        assert_eq!(through, 3);
        assert_eq!(ready.iter().map(|i| i.seq).collect::<Vec<_>>(), [1, 2, 3]);
        merger.push(output(1, &[5], 6));
        let (ready, through) = merger.take_ready();
        assert_eq!(through, 5);
        assert_eq!(ready.iter().map(|i| i.seq).collect::<Vec<_>>(), [4, 5]);
        assert_eq!(merger.pending(), 0);
    }

    #[test]
    fn what_was_decided_before_a_restart_is_dropped() {
        let mut merger = Merger::new(1, 3);
        merger.push(output(0, &[2, 3, 4], 4));
        let (ready, _) = merger.take_ready();
        assert_eq!(ready.iter().map(|i| i.seq).collect::<Vec<_>>(), [4]);
    }

    #[test]
    fn widening_the_interest_keeps_what_was_there() {
        let (link, _tap) = channel(EffectsInterest::new(["A".to_string()]));
        link.widen(["B".to_string()]);
        let interest = link.interest();
        assert!(interest.wants("A") && interest.wants("B") && !interest.wants("C"));
    }
}
