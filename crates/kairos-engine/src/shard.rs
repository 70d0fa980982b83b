//! A profile shard: owns the profiles whose id falls to it and applies, in
//! order, the operations the router sends it.
//!
//! A merge of profiles owned by two shards is an `Extract` on the absorbed
//! profile's shard, which hands its whole state over a channel, and an
//! `Absorb` on the survivor's shard, which waits for it. The router emits
//! both at the same point of one global order and every shard applies its
//! operations in that order, so the absorbed profile's earlier events are in
//! the state handed over, later events go to the survivor after the absorb,
//! and the wait always ends (the extract it waits for is never behind
//! another wait on a later operation).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::mpsc;

use jiff::Timestamp;
use kairos_core::Event;
use kairos_core::event::EventProperties;
use kairos_core::identity::Identifier;
use kairos_core::identity::graph::ProfileId;
use kairos_core::profile::{MergeRecord, Profile, SourceStanding, TimelineEntry};
use serde_json::Value;
use tokio::sync::oneshot;

use kairos_core::audience::eval::{EventFact, PersonFacts};
use kairos_core::audience::incremental::{AudienceEngine, Change, PersonState, Program};

use crate::announcer::{self, Announcement, Announcer, Cause};
use crate::effects_feed::{EffectInput, EffectsInterest};
use crate::shard_checkpoint::PendingPart;

use crate::types::{
    EngineSettings, ErasedProfile, MatchCandidate, ProfileExport, ProfileView, TimelinePage,
    profile_key,
};

/// A profile and the identities it holds (a copy of the router's graph).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct ShardProfile {
    pub profile: Profile,
    pub identities: Vec<Identifier>,
    /// What models read of the person (sessions, orders, context).
    pub features: kairos_models::FeatureState,
    pub scores: kairos_models::Scores,
}

/// A profile leaving its shard in a merge: its state and its audience state.
#[derive(Default)]
pub struct Handover {
    pub profile: ShardProfile,
    pub audiences: Option<PersonState>,
}

pub enum ShardOp {
    Apply {
        profile: ProfileId,
        event: Arc<Event>,
        /// The source's trait precedence and trust.
        source: SourceStanding,
        /// The profile's identities, when the event changed them.
        identities: Option<Vec<Identifier>>,
    },
    /// Hands the absorbed profile's state to the survivor's shard.
    Extract {
        profile: ProfileId,
        to: mpsc::Sender<Handover>,
    },
    Absorb {
        survivor: ProfileId,
        from: mpsc::Receiver<Handover>,
        record: MergeRecord,
    },
    /// New audience definitions: every membership is recomputed from the
    /// `Backfill` events that follow.
    SetAudiences { program: Arc<Program> },
    /// A past event replayed into the audiences only (backfill).
    Backfill {
        profile: ProfileId,
        event: Arc<Event>,
    },
    Remove {
        profile: ProfileId,
        erased: ErasedProfile,
        reply: oneshot::Sender<Option<ErasedProfile>>,
    },
    /// Encodes the shard's state at this point of the global order for a
    /// checkpoint ([`crate::checkpoint`]).
    Checkpoint { reply: mpsc::Sender<Vec<u8>> },
    /// Caught up (after the start-up replay or a backfill): announce the
    /// difference between what was announced and the memberships now, then
    /// announce every change as it happens.
    GoLive,
}

/// What was announced per profile, while the shard is not live.
type Baseline = HashMap<ProfileId, BTreeSet<String>>;

pub struct ShardState {
    settings: Arc<EngineSettings>,
    profiles: HashMap<ProfileId, ShardProfile>,
    audiences: AudienceEngine,
    /// Where membership changes are announced (none in the in-process
    /// model and benchmarks).
    announcer: Option<Announcer>,
    /// `Some` while replaying (not live): the memberships announced so far,
    /// from the log's own announcements or the memberships before new
    /// definitions; reconciled by [`ShardOp::GoLive`].
    baseline: Option<Baseline>,
    /// The day (since the epoch) time-dependent scores were last aged to.
    aged_day: i64,
    /// What the operation being applied is, for its announcements.
    cause: Cause,
    /// The event names the effects stage acts on, as of this batch.
    interest: Arc<EffectsInterest>,
    /// This batch's events for the effects stage, with their person.
    effect_inputs: Vec<EffectInput>,
    /// A checkpoint part being encoded between batches.
    pending_part: Option<PendingPart>,
}

impl ShardState {
    pub fn new(settings: Arc<EngineSettings>, program: Arc<Program>) -> ShardState {
        ShardState {
            settings,
            profiles: HashMap::new(),
            audiences: AudienceEngine::new(program),
            announcer: None,
            baseline: None,
            aged_day: i64::MIN,
            cause: Cause::Time,
            interest: Arc::default(),
            effect_inputs: Vec::new(),
            pending_part: None,
        }
    }

    /// Before a batch: what the effects stage wants handed over now (a new
    /// journey widens it before the log position it starts after is read).
    pub(crate) fn begin_batch(&mut self) {
        if let Some(link) = &self.settings.effects {
            self.interest = link.interest();
        }
    }

    /// The batch's events for the effects stage.
    pub(crate) fn take_effect_inputs(&mut self) -> Vec<EffectInput> {
        std::mem::take(&mut self.effect_inputs)
    }

    /// A shard holding a checkpoint's part.
    pub(crate) fn restore(
        settings: Arc<EngineSettings>,
        program: Arc<Program>,
        part: crate::checkpoint::ShardPart,
    ) -> ShardState {
        let mut shard = ShardState::new(settings, program.clone());
        shard.profiles = part.profiles.into_iter().collect();
        shard.audiences = AudienceEngine::restore(program, part.audiences);
        shard.aged_day = part.aged_day;
        shard
    }

    /// After a restore: the memberships at the checkpoint count as
    /// announced (the checkpoint was written only once their announcements
    /// were durable), so going live announces only what changed since.
    pub(crate) fn restored_announce_to(&mut self, announcer: Announcer) {
        self.announcer = Some(announcer);
        self.baseline = Some(self.memberships_now());
    }

    /// Scores every profile with the models served now (a checkpoint
    /// taken while others were served), as a full replay would have.
    pub(crate) fn rescore_all(&mut self, now: Timestamp) {
        let profiles: Vec<ProfileId> = self.profiles.keys().copied().collect();
        for profile in profiles {
            if self.score(profile, now) {
                self.set_audience_facts(profile, now);
            }
        }
    }

    /// Starts encoding this shard's checkpoint part as of now; it is
    /// encoded between batches ([`Self::continue_checkpoint_part`]) and
    /// sent to `reply` when complete.
    fn begin_checkpoint_part(&mut self, reply: mpsc::Sender<Vec<u8>>) {
        self.finish_checkpoint_part(); // one at a time, in order
        self.pending_part = Some(PendingPart::begin(
            reply,
            self.aged_day,
            self.profiles.keys().copied(),
            &self.audiences,
        ));
    }

    /// Encodes more of the pending checkpoint part for up to `budget`;
    /// true while some is left.
    pub(crate) fn continue_checkpoint_part(&mut self, budget: std::time::Duration) -> bool {
        let Some(part) = &mut self.pending_part else {
            return false;
        };
        if part.step(budget, &self.profiles, &self.audiences) {
            if let Some(part) = self.pending_part.take() {
                part.finish();
            }
            return false;
        }
        true
    }

    /// Encodes the rest of the pending part now (before an operation that
    /// changes everyone, and when the shard stops).
    pub(crate) fn finish_checkpoint_part(&mut self) {
        while self.continue_checkpoint_part(std::time::Duration::MAX) {}
    }

    /// The part as one-go encoding gives it now (people in id order).
    #[cfg(test)]
    pub(crate) fn part_in_one_go(&self) -> Vec<u8> {
        let mut profiles: Vec<(ProfileId, &ShardProfile)> = self
            .profiles
            .iter()
            .map(|(profile, entry)| (*profile, entry))
            .collect();
        profiles.sort_unstable_by_key(|(profile, _)| *profile);
        let mut audiences: Vec<_> = self.audiences.persons().collect();
        audiences.sort_unstable_by_key(|(person, _)| *person);
        crate::checkpoint::encode(&crate::checkpoint::ShardPartRef {
            aged_day: self.aged_day,
            profiles,
            audiences,
        })
    }

    /// Encodes `id` for the pending part before it changes.
    fn preserve_for_checkpoint(&mut self, id: u64) {
        if let Some(part) = &mut self.pending_part
            && part.owes(id)
        {
            part.preserve(id, self.profiles.get(&id), self.audiences.person(id));
        }
    }

    /// Before `op` changes anything: the people it changes are encoded for
    /// a pending checkpoint part as they are now (or all, when it changes
    /// everyone).
    fn before_change(&mut self, op: &ShardOp) {
        if self.pending_part.is_none() {
            return;
        }
        match op {
            ShardOp::Apply { profile, .. }
            | ShardOp::Extract { profile, .. }
            | ShardOp::Backfill { profile, .. }
            | ShardOp::Remove { profile, .. } => self.preserve_for_checkpoint(*profile),
            ShardOp::Absorb { survivor, .. } => self.preserve_for_checkpoint(*survivor),
            ShardOp::SetAudiences { .. } | ShardOp::GoLive => self.finish_checkpoint_part(),
            ShardOp::Checkpoint { .. } => {}
        }
    }

    /// Announces membership changes from now on; until [`ShardOp::GoLive`]
    /// the shard is replaying and only notes what the log says was
    /// announced.
    pub fn announce_to(&mut self, announcer: Announcer) {
        self.announcer = Some(announcer);
        self.baseline = Some(Baseline::new());
    }

    /// Fires the audience timers due by `now`.
    pub fn advance(&mut self, now: Timestamp) {
        if self.pending_part.is_some() {
            if now.as_second().div_euclid(86_400) > self.aged_day {
                self.finish_checkpoint_part(); // a new day may re-score everyone
            } else {
                for person in self.audiences.due_persons(now) {
                    self.preserve_for_checkpoint(person);
                }
            }
        }
        self.cause = Cause::Time;
        let changes = self.audiences.advance(now);
        self.announce(changes);
        self.age_scores(now);
    }

    /// Scores that time alone changes (P(alive) falls while nobody buys)
    /// are re-scored when a new day starts — the unit their features count
    /// in — so audiences and triggers on them move with time, not only
    /// with events.
    fn age_scores(&mut self, now: Timestamp) {
        let day = now.as_second().div_euclid(86_400);
        if day <= self.aged_day {
            return;
        }
        self.aged_day = day;
        if !self.models().reads_time() {
            return;
        }
        let profiles: Vec<ProfileId> = self.profiles.keys().copied().collect();
        for profile in profiles {
            if self.score(profile, now) {
                self.set_audience_facts(profile, now);
            }
        }
    }

    fn models(&self) -> Arc<kairos_models::ModelSet> {
        self.settings
            .models
            .read()
            .map(|models| models.clone())
            .unwrap_or_default()
    }

    /// Sends changes to the announcer when live.
    fn announce(&self, changes: Vec<Change>) {
        let (Some(announcer), None) = (&self.announcer, &self.baseline) else {
            return;
        };
        let announcements: Vec<Announcement> = changes
            .into_iter()
            .filter(|change| kairos_core::audience::is_announced(&change.audience))
            .filter_map(|change| {
                Some(Announcement {
                    identifier: self.announced_identifier(change.person)?,
                    profile: change.person,
                    audience: change.audience,
                    entered: change.entered,
                    at: change.at,
                    cause: self.cause,
                })
            })
            .collect();
        if !announcements.is_empty() {
            announcer.send(announcements);
        }
    }

    /// The event as the effects stage reads it, if it acts on its name.
    fn effects_fact(&self, event: &Event, properties: &EventProperties) -> Option<EventFact> {
        let name = event.event.as_deref()?;
        if self.settings.effects.is_none() || !self.interest.wants(name) {
            return None;
        }
        Some(EventFact {
            name: name.to_string(),
            at: event.timestamp,
            properties: properties.get().clone(),
        })
    }

    /// Queues an event for the effects stage with the profile it just
    /// made (sent after the batch, see `runtime::start_shards`).
    fn hand_to_effects(
        &mut self,
        profile: ProfileId,
        event: Arc<Event>,
        fact: EventFact,
        announcement: bool,
    ) {
        let Some(entry) = self.profiles.get(&profile) else {
            return;
        };
        let rules = &self.settings.rules;
        let subject = kairos_core::identity::extract::subject_of(
            &kairos_core::identity::extract::identifiers_of(&event, rules),
            &event,
            rules,
        );
        let person = Box::new(self.view_of(profile, entry));
        self.effect_inputs.push(EffectInput {
            seq: event.seq,
            event,
            fact,
            subject,
            person,
            announcement,
        });
    }

    /// Whom an announcement names: the profile's most trusted identifier.
    fn announced_identifier(&self, profile: ProfileId) -> Option<Identifier> {
        let rules = &self.settings.rules;
        self.profiles
            .get(&profile)?
            .identities
            .iter()
            .min_by_key(|identifier| rules.rank(&identifier.kind))
            .cloned()
    }

    /// While replaying: an announcement found in the log updates what was
    /// announced for the profile it now belongs to.
    fn note_announcement(
        &mut self,
        profile: ProfileId,
        event: &Event,
        properties: &EventProperties,
    ) {
        let (Some(announcer), Some(baseline)) = (&self.announcer, &mut self.baseline) else {
            return;
        };
        let entered = match event.event.as_deref() {
            Some(announcer::ENTERED) => true,
            Some(announcer::EXITED) => false,
            _ => return,
        };
        if event.source_id != announcer.source_id {
            return;
        }
        let Some(audience) = properties
            .get()
            .get("audience")
            .and_then(Value::as_str)
            .map(str::to_string)
        else {
            return;
        };
        let announced = baseline.entry(profile).or_default();
        if entered {
            announced.insert(audience);
        } else {
            announced.remove(&audience);
        }
    }

    /// Announces the difference between the baseline and the memberships
    /// now, and goes live.
    fn go_live(&mut self, now: Timestamp) {
        let Some(baseline) = self.baseline.take() else {
            return;
        };
        self.cause = Cause::CatchUp;
        let mut changes = Vec::new();
        let known: BTreeSet<&str> = self.audiences.audience_names().collect();
        let mut profiles: BTreeSet<ProfileId> = self.profiles.keys().copied().collect();
        profiles.extend(baseline.keys().copied());
        for profile in profiles {
            let now_in: BTreeSet<String> =
                self.audiences.memberships(profile).into_iter().collect();
            let before = baseline.get(&profile);
            let was_in = |audience: &String| before.is_some_and(|set| set.contains(audience));
            for audience in now_in.iter().filter(|audience| !was_in(audience)) {
                changes.push(change(profile, audience, true, now));
            }
            for audience in before.into_iter().flatten() {
                // A deleted audience's members are not told they left.
                if !now_in.contains(audience) && known.contains(audience.as_str()) {
                    changes.push(change(profile, audience, false, now));
                }
            }
        }
        self.announce(changes);
    }

    /// Every profile's memberships now (the baseline for new definitions).
    fn memberships_now(&self) -> Baseline {
        self.profiles
            .keys()
            .map(|profile| {
                let memberships = self.audiences.memberships(*profile).into_iter().collect();
                (*profile, memberships)
            })
            .filter(|(_, memberships): &(ProfileId, BTreeSet<String>)| !memberships.is_empty())
            .collect()
    }

    /// An audience's number of members here.
    pub fn audience_size(&self, audience: &str) -> usize {
        self.audiences.size(audience)
    }

    /// The profiles in an audience, in profile order.
    pub fn audience_members(&self, audience: &str) -> Vec<ProfileId> {
        self.audiences.members(audience)
    }

    /// Every profile with its identities and what definitions can read of
    /// it: traits, memberships, computed traits.
    pub fn each_profile(&self, mut visit: impl FnMut(ProfileId, &[Identifier], PersonFacts)) {
        for (profile, entry) in &self.profiles {
            let facts = PersonFacts {
                traits: entry.profile.trait_values(),
                computed: self.audiences.computed_values(*profile),
                audiences: self.audiences.memberships(*profile).into_iter().collect(),
                ..PersonFacts::default()
            };
            visit(*profile, &entry.identities, facts);
        }
    }

    /// Profiles with a value of a computed trait, in profile order.
    pub fn computed_values(&self, name: &str) -> Vec<(ProfileId, Value)> {
        self.audiences.values(name)
    }

    /// A profile's identities, for listing members.
    pub fn identities(&self, profile: ProfileId) -> Option<&[Identifier]> {
        self.profiles
            .get(&profile)
            .map(|entry| entry.identities.as_slice())
    }

    /// Feeds an event to the audience engine: track events by name (their
    /// properties decoded unless another reader did), and the profile's
    /// traits after an identify.
    fn feed_audiences(
        &mut self,
        profile: ProfileId,
        event: &Event,
        properties: EventProperties,
        now: Timestamp,
    ) {
        if let Some(name) = event.event.as_deref()
            && self.audiences.reads_event(name)
            && let Some(fact) = EventFact::with(event, properties)
        {
            let changes = self.audiences.apply(profile, &fact, now);
            if let Some(announcer) = &self.announcer {
                announcer
                    .counters
                    .audience_evaluations
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            self.announce(changes);
        }
        if event.event_type == kairos_core::EventType::Identify || !self.audiences.knows(profile) {
            self.set_audience_facts(profile, now);
        }
    }

    fn set_audience_facts(&mut self, profile: ProfileId, now: Timestamp) {
        let traits = self
            .profiles
            .get(&profile)
            .map(|entry| entry.profile.trait_values())
            .unwrap_or_default();
        let scores = self
            .profiles
            .get(&profile)
            .map(|entry| entry.scores.active.clone())
            .unwrap_or_default();
        let facts = PersonFacts {
            traits,
            scores,
            ..PersonFacts::default()
        };
        let changes = self.audiences.set_facts(profile, facts, now);
        self.announce(changes);
    }

    /// Recomputes the person's scores with the served models (features
    /// that time changes measured to `now`'s day); whether the active ones
    /// changed.
    fn score(&mut self, profile: ProfileId, now: Timestamp) -> bool {
        let models = self.models();
        let Some(entry) = self.profiles.get_mut(&profile) else {
            return false;
        };
        if models.reads_time() {
            // Replayed (or late) events are scored as of today.
            entry.features.age_to(now);
        }
        if models.is_empty() {
            let had = !entry.scores.active.is_empty();
            entry.scores = Default::default();
            return had;
        }
        let traits = if models.reads_traits() {
            entry.profile.trait_values()
        } else {
            Default::default()
        };
        let computed = if models.reads_computed() {
            self.audiences.computed_values(profile)
        } else {
            Default::default()
        };
        let started = std::time::Instant::now();
        let scores = models.score(&entry.features, &traits, &computed);
        if let Some(announcer) = &self.announcer {
            announcer.counters.scored(started.elapsed());
        }
        let changed = scores.active != entry.scores.active;
        entry.scores = scores;
        changed
    }

    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.profiles.len()
    }

    pub fn handle(&mut self, op: ShardOp, now: Timestamp) {
        self.before_change(&op);
        match op {
            ShardOp::Apply {
                profile,
                event,
                source,
                identities,
            } => {
                self.cause = Cause::Event(event.timestamp);
                // Decoded at most once, by the first of features,
                // announcements, audiences and the effects stage that reads
                // them.
                let properties = EventProperties::of(&event);
                let for_effects = self.effects_fact(&event, &properties);
                let entry = self.profiles.entry(profile).or_default();
                if let Some(identities) = identities {
                    entry.identities = identities;
                }
                // Membership announcements are not behaviour: they neither
                // feed features nor change scores, nor first/last seen and
                // the event count (a timer firing is not the person seen).
                let announcement = self
                    .announcer
                    .as_ref()
                    .is_some_and(|announcer| announcer.source_id == event.source_id);
                if announcement {
                    entry.profile.apply_own(&event);
                } else {
                    entry.profile.apply(&event, source);
                }
                entry.profile.retain(&self.settings.retention, now);
                let rescored = !announcement && {
                    entry.features.observe_with(&event, &properties);
                    self.score(profile, now)
                };
                if self.baseline.is_some() {
                    self.note_announcement(profile, &event, &properties);
                }
                if rescored {
                    // Audiences read this event's scores, not the last ones.
                    self.set_audience_facts(profile, now);
                }
                self.feed_audiences(profile, &event, properties, now);
                if let Some(fact) = for_effects {
                    self.hand_to_effects(profile, event, fact, announcement);
                }
            }
            ShardOp::Extract { profile, to } => {
                // Announced memberships stay with a profile: the absorbed
                // one's end here, the survivor's changes are announced.
                if let Some(baseline) = &mut self.baseline {
                    baseline.remove(&profile);
                }
                let _ = to.send(Handover {
                    profile: self.profiles.remove(&profile).unwrap_or_default(),
                    audiences: self.audiences.take_person(profile),
                });
            }
            ShardOp::SetAudiences { program } => {
                if self.announcer.is_some() && self.baseline.is_none() {
                    self.baseline = Some(self.memberships_now());
                }
                self.audiences = AudienceEngine::new(program);
                let profiles: Vec<ProfileId> = self.profiles.keys().copied().collect();
                for profile in profiles {
                    self.set_audience_facts(profile, now);
                }
            }
            ShardOp::Backfill { profile, event } => {
                if self.profiles.contains_key(&profile) {
                    self.feed_audiences(profile, &event, EventProperties::of(&event), now);
                }
            }
            ShardOp::Absorb {
                survivor,
                from,
                record,
            } => {
                self.cause = Cause::Event(record.at);
                // The extract is ahead in the global order: this wait ends.
                let absorbed = from.recv().unwrap_or_default();
                let entry = self.profiles.entry(survivor).or_default();
                entry.profile.absorb(absorbed.profile.profile);
                entry.profile.retain(&self.settings.retention, now);
                entry.profile.merges.push(record);
                if let Some(state) = absorbed.audiences {
                    let changes = self.audiences.absorb_person(survivor, state, now);
                    self.announce(changes);
                }
                self.set_audience_facts(survivor, now);
            }
            ShardOp::Remove {
                profile,
                mut erased,
                reply,
            } => {
                let removed = self.profiles.remove(&profile);
                self.audiences.take_person(profile);
                if let Some(baseline) = &mut self.baseline {
                    baseline.remove(&profile);
                }
                erased.events = removed
                    .map(|entry| entry.profile.timeline.len())
                    .unwrap_or(0);
                let _ = reply.send(Some(erased));
            }
            ShardOp::GoLive => self.go_live(now),
            ShardOp::Checkpoint { reply } => self.begin_checkpoint_part(reply),
        }
    }

    pub fn view(&self, profile: ProfileId) -> Option<ProfileView> {
        let entry = self.profiles.get(&profile)?;
        Some(self.view_of(profile, entry))
    }

    fn view_of(&self, profile: ProfileId, entry: &ShardProfile) -> ProfileView {
        let mut view = view(profile, entry);
        view.audiences = self.audiences.memberships(profile);
        view.computed = self.audiences.computed_values(profile);
        let numbers = |scores: &std::collections::BTreeMap<String, f64>| {
            scores
                .iter()
                .map(|(name, value)| (name.clone(), serde_json::json!(value)))
                .collect()
        };
        view.scores = numbers(&entry.scores.active);
        view.shadow_scores = numbers(&entry.scores.shadow);
        view
    }

    pub fn timeline(
        &self,
        profile: ProfileId,
        before_seq: Option<u64>,
        limit: usize,
        now: Timestamp,
    ) -> Option<TimelinePage> {
        let entry = self.profiles.get(&profile)?;
        let horizon = self.settings.retention.horizon(now);
        // Newest first by event time; `before` is the last entry's seq of the
        // previous page.
        let mut entries: Vec<TimelineEntry> = entry
            .profile
            .timeline
            .iter()
            .rev()
            .filter(|entry| horizon.is_none_or(|horizon| entry.timestamp >= horizon))
            .copied()
            .collect();
        if let Some(before) = before_seq
            && let Some(position) = entries.iter().position(|entry| entry.seq == before)
        {
            entries.drain(..=position);
        }
        let more = entries.len() > limit;
        entries.truncate(limit);
        let next = if more {
            entries.last().map(|entry| entry.seq)
        } else {
            None
        };
        Some(TimelinePage {
            profile_id: profile_key(profile),
            entries,
            next,
        })
    }

    pub fn export(&self, profile: ProfileId) -> Option<ProfileExport> {
        let entry = self.profiles.get(&profile)?;
        Some(ProfileExport {
            profile: self.view_of(profile, entry),
            seqs: entry
                .profile
                .timeline
                .iter()
                .map(|entry| entry.seq)
                .collect(),
        })
    }

    /// Profiles whose trait equals `value` (strings compare as they are,
    /// other JSON values by their JSON text), in profile order. A linear
    /// scan: a trait index comes with computed traits.
    pub fn search(&self, trait_name: &str, value: &str, limit: usize) -> Vec<ProfileView> {
        let mut found: Vec<(ProfileId, &ShardProfile)> =
            self.profiles
                .iter()
                .filter(|(_, entry)| {
                    entry.profile.traits.get(trait_name).is_some_and(|current| {
                        match &current.value {
                            Value::String(text) => text == value,
                            other => serde_json::to_string(other).is_ok_and(|text| text == value),
                        }
                    })
                })
                .map(|(id, entry)| (*id, entry))
                .collect();
        found.sort_by_key(|(id, _)| *id);
        found
            .into_iter()
            .take(limit)
            .map(|(id, entry)| self.view_of(id, entry))
            .collect()
    }

    /// Profiles with enough traits to be matched, with the identifier that
    /// addresses each (its most trusted).
    /// Every profile's events, as log positions in log order (the order
    /// its features were fed): what training rows are rebuilt from.
    pub fn histories(&self) -> Vec<(String, Vec<u64>)> {
        self.profiles
            .iter()
            .map(|(id, entry)| {
                let mut seqs: Vec<u64> = entry
                    .profile
                    .timeline
                    .iter()
                    .map(|entry| entry.seq)
                    .collect();
                seqs.sort_unstable();
                (profile_key(*id), seqs)
            })
            .collect()
    }

    pub fn match_candidates(&self) -> Vec<MatchCandidate> {
        let rules = &self.settings.rules;
        self.profiles
            .iter()
            .filter_map(|(id, entry)| {
                let record =
                    kairos_core::matching::record_from_traits(&entry.profile.trait_values())?;
                let identifier = entry
                    .identities
                    .iter()
                    .min_by_key(|identifier| rules.rank(&identifier.kind))?
                    .clone();
                Some(MatchCandidate {
                    profile_id: profile_key(*id),
                    identifier,
                    record,
                })
            })
            .collect()
    }
}

fn view(id: ProfileId, entry: &ShardProfile) -> ProfileView {
    let profile = &entry.profile;
    ProfileView {
        id: profile_key(id),
        identities: entry.identities.clone(),
        traits: profile.trait_values(),
        consent: profile.consent.clone(),
        first_seen: profile.first_seen,
        last_seen: profile.last_seen,
        event_count: profile.event_count(),
        merges: profile.merges.clone(),
        computed: Default::default(),
        audiences: Vec::new(),
        scores: Default::default(),
        shadow_scores: Default::default(),
    }
}

fn change(profile: ProfileId, audience: &str, entered: bool, at: Timestamp) -> Change {
    Change {
        person: profile,
        audience: audience.to_string(),
        entered,
        at,
    }
}
