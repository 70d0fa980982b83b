//! The unified profile: what Kairos knows about one person, kept current by
//! applying each of their events in turn.
//!
//! Traits are last-write-wins by *event* time, not arrival order: browser
//! SDKs send calls in parallel, so an older identify may arrive after a
//! newer one and must not overwrite it.

use std::collections::{BTreeMap, VecDeque};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::event::{Event, EventType};
use crate::identity::Identifier;
use crate::identity::graph::ProfileId;

/// Most events a profile's timeline keeps by default (older ones stay in
/// the log).
pub const TIMELINE_EVENTS_MAX: usize = 10_000;

/// How much of a person's history the timeline keeps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retention {
    pub events_max: usize,
    /// Events older than this (by event time, against the wall clock) leave
    /// the timeline.
    pub max_age: Option<jiff::SignedDuration>,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            events_max: TIMELINE_EVENTS_MAX,
            max_age: None,
        }
    }
}

impl Retention {
    /// The oldest event time kept at `now`.
    pub fn horizon(&self, now: Timestamp) -> Option<Timestamp> {
        self.max_age.and_then(|age| now.checked_sub(age).ok())
    }
}

/// One event on a profile's timeline: where to find it in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub seq: u64,
    pub timestamp: Timestamp,
}

/// A trait value and the event time that set it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraitValue {
    pub value: Value,
    pub set_at: Timestamp,
    /// Precedence of the source that set it (0 = most trusted): a less
    /// trusted source never overwrites it, however new.
    #[serde(skip)]
    pub source_rank: u32,
    /// Set by a source whose write key is public (a web page).
    #[serde(skip)]
    pub from_client: bool,
}

/// Traits that identify a person and that journeys send to: a client
/// source (its write key is public) never overwrites one a server source
/// set, so a visitor who claims someone's userId cannot redirect their
/// email or SMS (docs/security.md).
pub const IDENTITY_TRAITS: [&str; 2] = ["email", "phone"];

/// Where an event's traits come from: the source's precedence rank and
/// whether its write key is public.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceStanding {
    pub rank: u32,
    pub client: bool,
}

impl From<u32> for SourceStanding {
    /// A server source of this rank.
    fn from(rank: u32) -> SourceStanding {
        SourceStanding {
            rank,
            client: false,
        }
    }
}

/// Another profile folded into this one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergeRecord {
    pub absorbed: ProfileId,
    pub via: Identifier,
    /// The event that linked the two.
    pub seq: u64,
    pub at: Timestamp,
}

/// Serialized only into checkpoints (`kairos-engine`), whole: the API shows
/// profiles through its own views.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Profile {
    #[serde(with = "traits_whole")]
    pub traits: BTreeMap<String, TraitValue>,
    pub consent: BTreeMap<String, bool>,
    pub first_seen: Option<Timestamp>,
    pub last_seen: Option<Timestamp>,
    pub timeline: VecDeque<TimelineEntry>,
    /// The timeline's entries that are Kairos' own events about the person
    /// (audience announcements), in timeline order: shown on the timeline,
    /// but not the person's behaviour.
    own: VecDeque<TimelineEntry>,
    pub merges: Vec<MergeRecord>,
}

impl TraitValue {
    /// Source precedence first, then event time (last write wins); a
    /// client source never replaces a server source's identity trait.
    fn wins_over(&self, key: &str, current: &TraitValue) -> bool {
        if self.from_client && !current.from_client && IDENTITY_TRAITS.contains(&key) {
            return false;
        }
        (self.source_rank, std::cmp::Reverse(self.set_at))
            <= (current.source_rank, std::cmp::Reverse(current.set_at))
    }
}

impl Profile {
    /// Applies one event of this person; `source_rank` is its source's
    /// trait precedence (0 when no precedence is configured).
    pub fn apply(&mut self, event: &Event, source: impl Into<SourceStanding>) {
        let source = source.into();
        let time = event.timestamp;
        self.first_seen = Some(self.first_seen.map_or(time, |seen| seen.min(time)));
        self.last_seen = Some(self.last_seen.map_or(time, |seen| seen.max(time)));
        if matches!(event.event_type, EventType::Identify)
            && let Some(traits) = &event.traits
        {
            self.set_traits(traits, time, source);
        }
        if let Some(consent) = consent_of(event) {
            for (purpose, granted) in consent {
                self.consent.insert(purpose, granted);
            }
        }
        self.record(TimelineEntry {
            seq: event.seq,
            timestamp: time,
        });
    }

    /// Applies one of Kairos' own events about this person (an audience
    /// announcement): on the timeline, but first and last seen and the
    /// event count leave it out — a membership timer firing is not the
    /// person being seen.
    pub fn apply_own(&mut self, event: &Event) {
        let entry = TimelineEntry {
            seq: event.seq,
            timestamp: event.timestamp,
        };
        self.record(entry);
        insert_sorted(&mut self.own, entry);
    }

    /// The person's own events on the timeline (Kairos' excluded).
    pub fn event_count(&self) -> usize {
        self.timeline.len() - self.own.len()
    }

    fn set_traits(&mut self, traits: &Map<String, Value>, time: Timestamp, source: SourceStanding) {
        for (key, value) in traits {
            let incoming = TraitValue {
                value: value.clone(),
                set_at: time,
                source_rank: source.rank,
                from_client: source.client,
            };
            if self
                .traits
                .get(key)
                .is_none_or(|current| incoming.wins_over(key, current))
            {
                self.traits.insert(key.clone(), incoming);
            }
        }
    }

    /// Drops timeline entries beyond the retention (count, then age).
    pub fn retain(&mut self, retention: &Retention, now: Timestamp) {
        while self.timeline.len() > retention.events_max {
            self.drop_oldest();
        }
        if let Some(horizon) = retention.horizon(now) {
            while self
                .timeline
                .front()
                .is_some_and(|entry| entry.timestamp < horizon)
            {
                self.drop_oldest();
            }
        }
    }

    fn drop_oldest(&mut self) {
        let dropped = self.timeline.pop_front();
        // Both are in timeline order: the oldest own entry is the oldest
        // entry exactly when it is own.
        if dropped.is_some() && self.own.front() == dropped.as_ref() {
            self.own.pop_front();
        }
    }

    /// Inserts in event-time order (late events land in their place).
    fn record(&mut self, entry: TimelineEntry) {
        insert_sorted(&mut self.timeline, entry);
    }

    /// Folds `other` into this profile: trusted then newer traits win, seen times widen,
    /// timelines interleave by event time, merge histories concatenate.
    pub fn absorb(&mut self, other: Profile) {
        for (key, value) in other.traits {
            if self
                .traits
                .get(&key)
                .is_none_or(|current| value.wins_over(&key, current))
            {
                self.traits.insert(key, value);
            }
        }
        for (purpose, granted) in other.consent {
            self.consent.entry(purpose).or_insert(granted);
        }
        self.first_seen = [self.first_seen, other.first_seen]
            .into_iter()
            .flatten()
            .min();
        self.last_seen = [self.last_seen, other.last_seen]
            .into_iter()
            .flatten()
            .max();
        for entry in other.timeline {
            self.record(entry);
        }
        for entry in other.own {
            insert_sorted(&mut self.own, entry);
        }
        self.merges.extend(other.merges);
    }

    pub fn trait_values(&self) -> Map<String, Value> {
        self.traits
            .iter()
            .map(|(key, value)| (key.clone(), value.value.clone()))
            .collect()
    }
}

/// Inserts in timeline order: event time, then log position.
fn insert_sorted(entries: &mut VecDeque<TimelineEntry>, entry: TimelineEntry) {
    let position = entries.partition_point(|existing| {
        (existing.timestamp, existing.seq) <= (entry.timestamp, entry.seq)
    });
    entries.insert(position, entry);
}

/// Consent from `context.consent.categoryPreferences` (Segment's format):
/// `{"Advertising": true, "Analytics": false}`.
fn consent_of(event: &Event) -> Option<Vec<(String, bool)>> {
    let raw = event.field("context")?.get();
    // Most events carry no consent: skip parsing their context.
    if !raw.contains("\"consent\"") {
        return None;
    }
    let context: Map<String, Value> = serde_json::from_str(raw).ok()?;
    let preferences = context
        .get("consent")?
        .get("categoryPreferences")?
        .as_object()?;
    Some(
        preferences
            .iter()
            .filter_map(|(purpose, granted)| {
                granted.as_bool().map(|granted| (purpose.clone(), granted))
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::{Arrival, IngestLimits, normalize_event};
    use serde_json::json;

    fn event(seq: u64, value: Value) -> Event {
        let limits = IngestLimits::default();
        let raw = serde_json::value::RawValue::from_string(value.to_string()).unwrap();
        let arrival = Arrival {
            source_id: "src",
            received_at: "2024-06-01T00:00:00Z".parse().unwrap(),
            batch_sent_at: None,
            path_type: None,
            limits: &limits,
            plan: None,
        };
        Event {
            seq,
            ..normalize_event(&raw, &arrival).unwrap()
        }
    }

    #[test]
    fn traits_are_last_write_wins_by_event_time_not_arrival() {
        let mut profile = Profile::default();
        profile.apply(&event(1, json!({"type": "identify", "userId": "u", "timestamp": "2024-05-02T00:00:00Z", "traits": {"plan": "pro"}})), 0);
        // Sent earlier, arrived later: must not overwrite.
        profile.apply(&event(2, json!({"type": "identify", "userId": "u", "timestamp": "2024-05-01T00:00:00Z", "traits": {"plan": "free", "name": "Ada"}})), 0);
        assert_eq!(profile.traits["plan"].value, "pro");
        assert_eq!(profile.traits["name"].value, "Ada");
        assert_eq!(
            profile.timeline.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![2, 1],
            "timeline in event time"
        );
        assert_eq!(
            profile.first_seen,
            Some("2024-05-01T00:00:00Z".parse().unwrap())
        );
    }

    #[test]
    fn consent_comes_from_segment_category_preferences() {
        let mut profile = Profile::default();
        profile.apply(&event(1, json!({"type": "track", "event": "A", "userId": "u", "context": {"consent": {"categoryPreferences": {"Advertising": false, "Analytics": true}}}})), 0);
        assert_eq!(profile.consent.get("Advertising"), Some(&false));
        assert_eq!(profile.consent.get("Analytics"), Some(&true));
    }

    #[test]
    fn absorbing_keeps_the_newest_trait_and_both_timelines() {
        let mut survivor = Profile::default();
        survivor.apply(&event(1, json!({"type": "identify", "userId": "u", "timestamp": "2024-05-01T00:00:00Z", "traits": {"plan": "free"}})), 0);
        let mut absorbed = Profile::default();
        absorbed.apply(&event(2, json!({"type": "identify", "anonymousId": "a", "timestamp": "2024-05-03T00:00:00Z", "traits": {"plan": "pro"}})), 0);
        survivor.absorb(absorbed);
        assert_eq!(survivor.traits["plan"].value, "pro");
        assert_eq!(survivor.timeline.len(), 2);
        assert_eq!(
            survivor.last_seen,
            Some("2024-05-03T00:00:00Z".parse().unwrap())
        );
    }

    #[test]
    fn kairos_own_events_are_on_the_timeline_but_not_seen_or_counted() {
        let mut profile = Profile::default();
        profile.apply(&event(1, json!({"type": "track", "event": "A", "userId": "u", "timestamp": "2024-05-01T00:00:00Z"})), 0);
        profile.apply_own(&event(2, json!({"type": "track", "event": "Audience Entered", "userId": "u", "timestamp": "2024-05-03T00:00:00Z"})));
        let mut absorbed = Profile::default();
        absorbed.apply_own(&event(3, json!({"type": "track", "event": "Audience Exited", "userId": "u", "timestamp": "2024-04-01T00:00:00Z"})));
        profile.absorb(absorbed);
        let day_one = Some("2024-05-01T00:00:00Z".parse().unwrap());
        assert_eq!((profile.first_seen, profile.last_seen), (day_one, day_one));
        assert_eq!((profile.timeline.len(), profile.event_count()), (3, 1));
        // Retention drops the oldest entry (an own one): still one event.
        let retention = Retention {
            events_max: 2,
            max_age: None,
        };
        profile.retain(&retention, "2024-06-01T00:00:00Z".parse().unwrap());
        assert_eq!((profile.timeline.len(), profile.event_count()), (2, 1));
        profile.retain(
            &Retention {
                events_max: 1,
                ..retention
            },
            "2024-06-01T00:00:00Z".parse().unwrap(),
        );
        assert_eq!((profile.timeline.len(), profile.event_count()), (1, 0));
    }
}

/// Traits with their precedence and trust, which `TraitValue`'s own
/// serialization (the API's) leaves out: a checkpoint must keep them.
mod traits_whole {
    use std::collections::BTreeMap;

    use jiff::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};
    use serde_json::Value;

    use super::TraitValue;

    type Whole = (String, Value, Timestamp, u32, bool);

    pub fn serialize<S: Serializer>(
        traits: &BTreeMap<String, TraitValue>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(traits.iter().map(|(key, value)| {
            (
                key,
                &value.value,
                value.set_at,
                value.source_rank,
                value.from_client,
            )
        }))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BTreeMap<String, TraitValue>, D::Error> {
        let whole: Vec<Whole> = Vec::deserialize(deserializer)?;
        Ok(whole
            .into_iter()
            .map(|(key, value, set_at, source_rank, from_client)| {
                let value = TraitValue {
                    value,
                    set_at,
                    source_rank,
                    from_client,
                };
                (key, value)
            })
            .collect())
    }
}
