//! The contact policy every send passes (docs/journeys.md, "Contact
//! policy"), decided when a journey sends — before anything is queued:
//!
//! - **consent**: a send with a `purpose` ("marketing") needs the person's
//!   consent for it to be `true` (`context.consent.categoryPreferences` or
//!   `PUT /v1/profiles/{id}/consent`); sends without a purpose are
//!   transactional and need none;
//! - **frequency caps** on sends with a purpose: at most
//!   `messages_per_day` per person in any 24 hours, and
//!   `messages_per_channel_per_hour` per person and channel in any hour;
//! - **quiet hours** in the person's time zone (trait `timezone`, an IANA
//!   name; else `default_time_zone`): a send with a purpose is deferred to
//!   their end, not dropped.
//!
//! - **suppression lists** (`suppression_lists`): a person any of whose
//!   identifiers (or whose email recipient address) is on one gets nothing
//!   — transactional sends included: "do not contact" means it.
//!
//! Blocked sends are recorded with their reason; deferred ones wait.

use std::collections::BTreeMap;

use jiff::civil::Time;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

#[derive(Debug, Clone)]
pub struct ContactPolicy {
    pub messages_per_day: Option<u32>,
    pub messages_per_channel_per_hour: Option<u32>,
    /// From (inclusive) to (exclusive), local time; may wrap midnight.
    pub quiet_hours: Option<(Time, Time)>,
    pub default_time_zone: TimeZone,
    /// Journeys a person may be in at once (waiting in a step).
    pub max_concurrent_journeys: Option<u32>,
    /// Lists (`GET /v1/lists/{name}`) whose members get no message.
    pub suppression_lists: Vec<String>,
}

impl Default for ContactPolicy {
    fn default() -> Self {
        ContactPolicy {
            messages_per_day: None,
            messages_per_channel_per_hour: None,
            quiet_hours: None,
            default_time_zone: TimeZone::UTC,
            max_concurrent_journeys: None,
            suppression_lists: Vec::new(),
        }
    }
}

/// What the policy needs to know about the person.
#[derive(Debug, Clone, Default)]
pub struct Person {
    pub consent: BTreeMap<String, bool>,
    /// The `timezone` trait, if any.
    pub time_zone: Option<String>,
    /// Sends with a purpose already decided for them: when, on which channel.
    pub recent: Vec<(Timestamp, String)>,
    /// A suppression list holding one of their identifiers: (list, identifier).
    pub suppressed: Option<(String, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Send,
    Defer { until: Timestamp, reason: String },
    Block { reason: String },
}

impl ContactPolicy {
    pub fn judge(
        &self,
        purpose: Option<&str>,
        channel: &str,
        person: &Person,
        now: Timestamp,
    ) -> Verdict {
        if let Some((list, identifier)) = &person.suppressed {
            return Verdict::Block {
                reason: suppressed(list, identifier),
            };
        }
        let Some(purpose) = purpose else {
            return Verdict::Send; // transactional
        };
        match person.consent.get(purpose) {
            Some(true) => {}
            Some(false) => {
                return Verdict::Block {
                    reason: format!("no consent: the person declined {purpose:?}"),
                };
            }
            None => {
                return Verdict::Block {
                    reason: format!("no consent: the person never agreed to {purpose:?}"),
                };
            }
        }
        let within = |span: i64| {
            person
                .recent
                .iter()
                .filter(move |(at, _)| *at > now - SignedDuration::from_secs(span))
        };
        if let Some(cap) = self.messages_per_day
            && within(86_400).count() >= cap as usize
        {
            return Verdict::Block {
                reason: format!("frequency cap: {cap} messages in 24 hours reached"),
            };
        }
        if let Some(cap) = self.messages_per_channel_per_hour
            && within(3_600).filter(|(_, used)| used == channel).count() >= cap as usize
        {
            return Verdict::Block {
                reason: format!("frequency cap: {cap} {channel} messages in an hour reached"),
            };
        }
        if let Some(until) = self.quiet_until(person, now) {
            return Verdict::Defer {
                until,
                reason: format!("deferred: quiet hours in the person's time zone until {until}"),
            };
        }
        Verdict::Send
    }

    /// The cap on journeys under way at once, if a person with
    /// `under_way` runs has reached it (they enter no other journey).
    pub fn journeys_cap_reached(&self, under_way: usize) -> Option<u32> {
        self.max_concurrent_journeys
            .filter(|cap| under_way >= *cap as usize)
    }

    /// The person's time zone: their `timezone` trait when it names an
    /// IANA zone, else the policy's default (a misspelt zone must not
    /// leave them without quiet hours).
    pub fn time_zone_of(&self, trait_value: Option<&str>) -> TimeZone {
        trait_value
            .and_then(|name| TimeZone::get(name).ok())
            .unwrap_or_else(|| self.default_time_zone.clone())
    }

    /// When quiet hours end, if `now` is inside them for this person.
    fn quiet_until(&self, person: &Person, now: Timestamp) -> Option<Timestamp> {
        let (from, to) = self.quiet_hours?;
        let zone = self.time_zone_of(person.time_zone.as_deref());
        let local = now.to_zoned_datetime(zone.clone());
        let time = local.time();
        let quiet = if from <= to {
            from <= time && time < to
        } else {
            time >= from || time < to
        };
        if !quiet {
            return None;
        }
        Some(next_local(now, to, &zone))
    }
}

/// Why a send to someone on a suppression list is blocked.
pub fn suppressed(list: &str, identifier: &str) -> String {
    format!("suppressed: {identifier} is on the list {list:?}")
}

/// The first moment after `now` at which clocks in `zone` show `time` (a
/// time skipped by a DST change resolves to the moment after the gap).
pub fn next_local(now: Timestamp, time: Time, zone: &TimeZone) -> Timestamp {
    let local = now.to_zoned_datetime(zone.clone());
    let mut date = local.date();
    for _ in 0..3 {
        if let Ok(candidate) = date.to_datetime(time).to_zoned_datetime(zone.clone())
            && candidate.timestamp() > now
        {
            return candidate.timestamp();
        }
        date = date.tomorrow().unwrap_or(date);
    }
    now + SignedDuration::from_hours(24)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consenting() -> Person {
        Person {
            consent: BTreeMap::from([("marketing".to_string(), true)]),
            ..Person::default()
        }
    }

    #[test]
    fn consent_caps_and_quiet_hours() {
        let now: Timestamp = "2030-01-01T12:00:00Z".parse().unwrap();
        let policy = ContactPolicy {
            messages_per_day: Some(3),
            messages_per_channel_per_hour: Some(1),
            quiet_hours: Some(("21:00".parse().unwrap(), "08:00".parse().unwrap())),
            default_time_zone: TimeZone::UTC,
            max_concurrent_journeys: None,
            suppression_lists: vec!["do-not-contact".into()],
        };
        // Transactional sends pass; marketing needs consent.
        assert_eq!(
            policy.judge(None, "webhook", &Person::default(), now),
            Verdict::Send
        );
        assert!(matches!(
            policy.judge(Some("marketing"), "webhook", &Person::default(), now),
            Verdict::Block { .. }
        ));
        assert_eq!(
            policy.judge(Some("marketing"), "webhook", &consenting(), now),
            Verdict::Send
        );
        // One webhook an hour, three a day.
        let mut person = consenting();
        person
            .recent
            .push((now - SignedDuration::from_mins(30), "webhook".into()));
        assert!(
            matches!(policy.judge(Some("marketing"), "webhook", &person, now), Verdict::Block { reason } if reason.contains("an hour"))
        );
        assert_eq!(
            policy.judge(Some("marketing"), "email", &person, now),
            Verdict::Send
        );
        person
            .recent
            .push((now - SignedDuration::from_hours(5), "email".into()));
        person
            .recent
            .push((now - SignedDuration::from_hours(20), "email".into()));
        assert!(
            matches!(policy.judge(Some("marketing"), "email", &person, now), Verdict::Block { reason } if reason.contains("24 hours"))
        );
        // Noon UTC is 21:00 in Tokyo: deferred to 08:00 Tokyo = 23:00 UTC.
        let mut tokyo = consenting();
        tokyo.time_zone = Some("Asia/Tokyo".into());
        assert_eq!(
            policy.judge(Some("marketing"), "webhook", &tokyo, now),
            Verdict::Defer {
                until: "2030-01-01T23:00:00Z".parse().unwrap(),
                reason:
                    "deferred: quiet hours in the person's time zone until 2030-01-01T23:00:00Z"
                        .into()
            }
        );
        // A suppressed person gets nothing, transactional sends included.
        let mut listed = consenting();
        listed.suppressed = Some(("do-not-contact".into(), "email:a@b.example".into()));
        assert!(
            matches!(policy.judge(None, "email", &listed, now), Verdict::Block { reason } if reason.contains("do-not-contact"))
        );
    }

    #[test]
    fn the_journeys_cap_counts_runs_under_way() {
        let capped = ContactPolicy {
            max_concurrent_journeys: Some(2),
            ..ContactPolicy::default()
        };
        assert_eq!(capped.journeys_cap_reached(1), None);
        assert_eq!(capped.journeys_cap_reached(2), Some(2));
        assert_eq!(ContactPolicy::default().journeys_cap_reached(1_000), None);
    }

    #[test]
    fn an_unknown_time_zone_falls_back_to_the_default() {
        let policy = ContactPolicy {
            default_time_zone: TimeZone::get("Europe/Paris").unwrap(),
            ..ContactPolicy::default()
        };
        let paris = TimeZone::get("Europe/Paris").unwrap();
        let tokyo = TimeZone::get("Asia/Tokyo").unwrap();
        assert_eq!(policy.time_zone_of(Some("Asia/Tokyo")), tokyo);
        assert_eq!(policy.time_zone_of(Some("Mars/Olympus")), paris);
        assert_eq!(policy.time_zone_of(None), paris);
    }

    #[test]
    fn next_local_time_of_day() {
        let zone = TimeZone::get("Europe/Paris").unwrap();
        let at = |text: &str| text.parse::<Timestamp>().unwrap();
        let nine: Time = "09:00".parse().unwrap();
        // 07:00 UTC is 08:00 in Paris (winter): 09:00 the same day.
        assert_eq!(
            next_local(at("2030-01-10T07:00:00Z"), nine, &zone),
            at("2030-01-10T08:00:00Z")
        );
        // Exactly 09:00 local: the next day's.
        assert_eq!(
            next_local(at("2030-01-10T08:00:00Z"), nine, &zone),
            at("2030-01-11T08:00:00Z")
        );
        // Summer time: 09:00 Paris is 07:00 UTC.
        assert_eq!(
            next_local(at("2030-07-10T12:00:00Z"), nine, &zone),
            at("2030-07-11T07:00:00Z")
        );
    }

    /// Property: for random bursts of sends over random gaps and channels,
    /// the sends the policy lets through never exceed a cap in any sliding
    /// window, and a send is blocked only when a cap is really reached.
    #[test]
    fn caps_hold_under_random_bursts() {
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = move |bound: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % bound
        };
        for _seed in 0..300 {
            let per_day = 1 + next(5) as u32;
            let per_hour = 1 + next(3) as u32;
            let policy = ContactPolicy {
                messages_per_day: Some(per_day),
                messages_per_channel_per_hour: Some(per_hour),
                ..ContactPolicy::default()
            };
            let mut person = consenting();
            let mut now: Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
            for _ in 0..60 {
                // Bursts (same instant) and gaps up to 6 hours.
                let gap = if next(3) == 0 {
                    0
                } else {
                    next(6 * 3_600) as i64
                };
                now += SignedDuration::from_secs(gap);
                let channel = ["webhook", "email", "in_app"][next(3) as usize];
                let in_day = |person: &Person| {
                    person
                        .recent
                        .iter()
                        .filter(|(at, _)| *at > now - SignedDuration::from_hours(24))
                        .count()
                };
                let in_hour = |person: &Person| {
                    person
                        .recent
                        .iter()
                        .filter(|(at, used)| {
                            *at > now - SignedDuration::from_hours(1) && used == channel
                        })
                        .count()
                };
                let room =
                    in_day(&person) < per_day as usize && in_hour(&person) < per_hour as usize;
                match policy.judge(Some("marketing"), channel, &person, now) {
                    Verdict::Send => {
                        assert!(room, "sent beyond a cap");
                        person.recent.push((now, channel.to_string()));
                    }
                    Verdict::Block { reason } => {
                        assert!(!room, "blocked with room left: {reason}");
                        assert!(reason.starts_with("frequency cap"));
                    }
                    Verdict::Defer { .. } => panic!("no quiet hours configured"),
                }
                assert!(in_day(&person) <= per_day as usize);
                assert!(in_hour(&person) <= per_hour as usize);
            }
        }
    }
}
