//! Offers and decisions: the catalog (`meta`, `offer/<id>`, each change a
//! new version), each offer's response counts per placement (`meta`,
//! `offer-stats/<offer id>\0<placement>`: what the adaptive propensities
//! learn from and what budgets count), the decisions made (`waits`,
//! `dc/<decision id>`, with `dp/<pseudonym>\0<decision id>` to find a
//! person's and `dt/<time>\0<decision id>` to expire them after the
//! retention window, [`Outbox::expire_decisions`]) and each person's
//! history per offer (`waits`,
//! `oh/<pseudonym>\0<offer id>`: impressions and the last dismissal, for
//! caps and blackouts). Personal records name the person only by
//! pseudonym ([`crate::pseudonym`]) and are erased with them.
//!
//! A decision is stored without waiting for an fsync (a decision is an
//! answer, not an accepted event; `/v1/decide` must stay in milliseconds):
//! a crash may lose the last few, and a response to a lost decision is
//! counted as unattributed. Responses are applied by the effects stage in
//! its atomic batch with its cursor ([`super::Effects`]), so each counts
//! exactly once.

use std::collections::{BTreeMap, BTreeSet};

use fjall::PersistMode;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Outbox, decode};
use crate::{StoreError, random_token};

const OFFER_PREFIX: &str = "offer/";
const OFFER_STATS_PREFIX: &str = "offer-stats/";
pub(super) const DECISION_PREFIX: &str = "dc/";
pub(super) const DECISION_BY_PERSON_PREFIX: &str = "dp/";
pub(super) const HISTORY_PREFIX: &str = "oh/";
/// Decisions by time (`dt/<ms, 16 hex digits>\0<id>`), oldest first.
const DECISION_BY_TIME_PREFIX: &str = "dt/";
/// Set once every decision stored before the time index is in it.
const META_DECISIONS_TIMED_KEY: &[u8] = b"decisions/time-indexed";
/// How long decisions are kept by default: a quarter's worth of responses
/// to attribute and of logs to train uplift models and evaluate policies
/// on (`[decisions] retention`).
pub const DECISION_RETENTION_DEFAULT: std::time::Duration =
    std::time::Duration::from_secs(90 * 24 * 3600);
/// Impressions kept per person and offer: enough for any cap a marketer
/// sets ("3 a week"); older ones fall off.
pub const HISTORY_IMPRESSIONS_MAX: usize = 100;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OfferRecord {
    /// `off_…`.
    pub id: String,
    pub name: String,
    /// 1 when created, one more at each change.
    pub version: u32,
    /// The definition as submitted (JSON), checked by the caller.
    pub definition: Value,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Creation order (a manual clock may not move between two).
    pub seq: u64,
}

/// Responses to one offer in one placement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferStats {
    pub impressions: u64,
    pub clicks: u64,
    pub dismissals: u64,
    pub conversions: u64,
}

/// One action of a decision, as decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecidedAction {
    pub offer: String,
    pub version: u32,
    pub rank: usize,
    pub propensity: f64,
    pub priority: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// `dec_…`.
    pub id: String,
    /// The person's pseudonym (of the identifier the decision was asked for).
    pub person: String,
    pub placement: String,
    pub at: Timestamp,
    pub actions: Vec<DecidedAction>,
    /// Responses applied (`<offer id>\0<kind>`): each counts once.
    #[serde(default)]
    pub responses: BTreeSet<String>,
    /// Incentive offers randomized in this decision (treated or held out),
    /// with what the person looked like: the log uplift models are trained
    /// on and policies evaluated against.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub incentives: Vec<IncentiveLog>,
}

/// One randomized incentive of a decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncentiveLog {
    pub offer: String,
    /// Whether the incentive was given (else held out as control).
    pub treated: bool,
    /// The probability of what happened (treated or held out) — a logged
    /// propensity, as off-policy estimators need it.
    pub propensity: f64,
    /// The incentive's features (its `features`, in order) at the decision.
    pub features: Vec<f64>,
    /// Conversions count until then.
    pub window_ends: Timestamp,
    /// The offer's conversion event came within the window.
    #[serde(default)]
    pub converted: bool,
}

/// Counts by offer, then placement.
pub(super) type StatsByOffer = std::collections::HashMap<String, BTreeMap<String, OfferStats>>;

/// Every offer's counts, read at open.
pub(super) fn load_stats(meta: &fjall::Keyspace) -> Result<StatsByOffer, StoreError> {
    let mut stats = StatsByOffer::new();
    for guard in meta.prefix(OFFER_STATS_PREFIX) {
        let (key, value) = guard.into_inner()?;
        let key = String::from_utf8_lossy(&key).to_string();
        if let Some((offer, placement)) = split_stats_key(&key) {
            stats
                .entry(offer.to_string())
                .or_default()
                .insert(placement.to_string(), decode(&value)?);
        }
    }
    Ok(stats)
}

/// `offer-stats/<offer>\0<placement>` → (offer, placement).
fn split_stats_key(key: &str) -> Option<(&str, &str)> {
    key.strip_prefix(OFFER_STATS_PREFIX)?.split_once('\0')
}

/// A person's history with one offer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OfferHistory {
    /// Impressions, oldest first (at most [`HISTORY_IMPRESSIONS_MAX`]).
    pub impressions: Vec<Timestamp>,
    pub dismissed_at: Option<Timestamp>,
}

/// What a response event says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseKind {
    Impression,
    Click,
    Dismissal,
    Conversion,
}

impl ResponseKind {
    pub fn name(self) -> &'static str {
        match self {
            ResponseKind::Impression => "impression",
            ResponseKind::Click => "click",
            ResponseKind::Dismissal => "dismissal",
            ResponseKind::Conversion => "conversion",
        }
    }
}

impl Outbox {
    // --- the catalog -----------------------------------------------------

    /// Stores a new offer; the caller has checked it.
    pub fn create_offer(
        &self,
        name: &str,
        definition: Value,
        now: Timestamp,
    ) -> Result<OfferRecord, StoreError> {
        let _changing = self.changing.lock().expect("outbox lock");
        if self.offer(name).is_some() {
            return Err(StoreError::NameTaken {
                thing: "offer",
                name: name.to_string(),
            });
        }
        let seq = self
            .offers()
            .iter()
            .map(|offer| offer.seq)
            .max()
            .unwrap_or(0)
            + 1;
        let record = OfferRecord {
            id: format!("off_{}", random_token(12)),
            name: name.to_string(),
            version: 1,
            definition,
            created_at: now,
            updated_at: now,
            seq,
        };
        self.write_offer(&record)?;
        Ok(record)
    }

    /// Replaces an offer's definition: a new version (id and name stay).
    pub fn change_offer(
        &self,
        id: &str,
        definition: Value,
        now: Timestamp,
    ) -> Result<Option<OfferRecord>, StoreError> {
        let _changing = self.changing.lock().expect("outbox lock");
        let Some(mut record) = self.offer(id) else {
            return Ok(None);
        };
        record.definition = definition;
        record.version += 1;
        record.updated_at = now;
        self.write_offer(&record)?;
        Ok(Some(record))
    }

    pub fn delete_offer(&self, id: &str) -> Result<Option<OfferRecord>, StoreError> {
        let _changing = self.changing.lock().expect("outbox lock");
        let Some(record) = self.offer(id) else {
            return Ok(None);
        };
        self.meta.remove(format!("{OFFER_PREFIX}{}", record.id))?;
        self.db.persist(PersistMode::SyncAll)?;
        self.offers_version
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Ok(Some(record))
    }

    fn write_offer(&self, record: &OfferRecord) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(record).expect("an offer serializes");
        self.meta
            .insert(format!("{OFFER_PREFIX}{}", record.id), bytes)?;
        self.db.persist(PersistMode::SyncAll)?;
        self.offers_version
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Ok(())
    }

    /// Changes with every catalog change (create, change, delete).
    pub fn offers_version(&self) -> u64 {
        self.offers_version
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Every offer, oldest first.
    pub fn offers(&self) -> Vec<OfferRecord> {
        let mut offers: Vec<OfferRecord> = self
            .meta
            .prefix(OFFER_PREFIX)
            .filter_map(|guard| decode(&guard.value().ok()?).ok())
            .collect();
        offers.sort_by_key(|offer| offer.seq);
        offers
    }

    /// An offer by id or name.
    pub fn offer(&self, id_or_name: &str) -> Option<OfferRecord> {
        self.offers()
            .into_iter()
            .find(|offer| offer.id == id_or_name || offer.name == id_or_name)
    }

    // --- response counts --------------------------------------------------

    /// An offer's counts per placement (from memory).
    pub fn offer_stats(&self, offer: &str) -> BTreeMap<String, OfferStats> {
        let stats = self.offer_stats.read().expect("offer stats lock");
        stats.get(offer).cloned().unwrap_or_default()
    }

    /// For each offer (by id): its counts in `placement` and its
    /// impressions in all placements — under one lock, without copying
    /// (a decision reads every offer's).
    pub fn offer_counts<'a>(
        &self,
        offers: impl Iterator<Item = &'a str>,
        placement: &str,
    ) -> Vec<(OfferStats, u64)> {
        let stats = self.offer_stats.read().expect("offer stats lock");
        offers
            .map(|offer| match stats.get(offer) {
                Some(by_placement) => (
                    by_placement.get(placement).copied().unwrap_or_default(),
                    by_placement.values().map(|counts| counts.impressions).sum(),
                ),
                None => (OfferStats::default(), 0),
            })
            .collect()
    }

    /// After a batch: the counts it stored (by stats key).
    pub(super) fn counted(&self, changed: &BTreeMap<String, OfferStats>) {
        let mut stats = self.offer_stats.write().expect("offer stats lock");
        for (key, counts) in changed {
            if let Some((offer, placement)) = split_stats_key(key) {
                stats
                    .entry(offer.to_string())
                    .or_default()
                    .insert(placement.to_string(), *counts);
            }
        }
    }

    pub(super) fn offer_stats_key(offer: &str, placement: &str) -> String {
        format!("{OFFER_STATS_PREFIX}{offer}\0{placement}")
    }

    pub(super) fn stored_offer_stats(&self, offer: &str, placement: &str) -> OfferStats {
        let stats = self.offer_stats.read().expect("offer stats lock");
        stats
            .get(offer)
            .and_then(|by_placement| by_placement.get(placement))
            .copied()
            .unwrap_or_default()
    }

    // --- decisions ----------------------------------------------------------

    /// A new decision id.
    pub fn new_decision_id() -> String {
        format!("dec_{}", random_token(16))
    }

    /// Stores a decision about the person known by `identifier`, and counts
    /// it for each action's offer — without waiting for an fsync (see the
    /// module's documentation).
    pub fn record_decision(
        &self,
        identifier: &str,
        mut record: DecisionRecord,
    ) -> Result<(), StoreError> {
        if self.is_erased(identifier) {
            return Ok(());
        }
        record.person = self.pseudonyms.of(identifier);
        let mut batch = self.db.batch();
        batch.insert(
            &self.waits,
            format!("{DECISION_PREFIX}{}", record.id),
            serde_json::to_vec(&record).expect("a decision serializes"),
        );
        batch.insert(
            &self.waits,
            format!(
                "{DECISION_BY_PERSON_PREFIX}{}\0{}",
                record.person, record.id
            ),
            b"",
        );
        batch.insert(&self.waits, time_key(&record), b"");
        batch.commit()?;
        Ok(())
    }

    /// Deletes decisions made before `before`, oldest first, at most `max`
    /// (a sweep calls it again while it finds some); returns how many. A
    /// response to an expired decision counts as unattributed.
    pub fn expire_decisions(&self, before: Timestamp, max: usize) -> Result<usize, StoreError> {
        let cutoff = format!("{DECISION_BY_TIME_PREFIX}{:016x}", millis(before));
        let mut batch = self.db.batch();
        let mut expired = 0;
        for guard in self.waits.prefix(DECISION_BY_TIME_PREFIX).take(max) {
            let key = guard.key()?;
            if key.as_ref() >= cutoff.as_bytes() {
                break;
            }
            let id =
                String::from_utf8_lossy(&key[DECISION_BY_TIME_PREFIX.len() + 17..]).to_string();
            if let Some(record) = self.decision(&id)? {
                batch.remove(
                    &self.waits,
                    format!("{DECISION_BY_PERSON_PREFIX}{}\0{id}", record.person),
                );
            }
            batch.remove(&self.waits, format!("{DECISION_PREFIX}{id}"));
            batch.remove(&self.waits, key.to_vec());
            expired += 1;
        }
        if expired > 0 {
            batch.commit()?;
        }
        Ok(expired)
    }

    /// Puts decisions stored before the time index existed into it (once).
    pub(super) fn index_decisions_by_time(&self) -> Result<(), StoreError> {
        if self.meta.get(META_DECISIONS_TIMED_KEY)?.is_some() {
            return Ok(());
        }
        let mut batch = self.db.batch();
        for guard in self.waits.prefix(DECISION_PREFIX) {
            let record: DecisionRecord = decode(&guard.value()?)?;
            batch.insert(&self.waits, time_key(&record), b"");
        }
        batch.insert(&self.meta, META_DECISIONS_TIMED_KEY, b"1");
        batch.commit()?;
        self.db.persist(PersistMode::SyncAll)?;
        Ok(())
    }

    pub fn decision(&self, id: &str) -> Result<Option<DecisionRecord>, StoreError> {
        match self.waits.get(format!("{DECISION_PREFIX}{id}"))? {
            Some(bytes) => Ok(Some(decode(&bytes)?)),
            None => Ok(None),
        }
    }

    /// Every decision stored (a scan: training and evaluation read the
    /// whole log), at most `limit`.
    pub fn decisions(&self, limit: usize) -> Result<Vec<DecisionRecord>, StoreError> {
        let mut found = Vec::new();
        for guard in self.waits.prefix(DECISION_PREFIX).take(limit) {
            found.push(decode(&guard.value()?)?);
        }
        Ok(found)
    }

    /// The ids of the decisions about the person known by `identifier`.
    pub fn decision_ids_of(&self, identifier: &str) -> Result<Vec<String>, StoreError> {
        let prefix = format!(
            "{DECISION_BY_PERSON_PREFIX}{}\0",
            self.pseudonyms.of(identifier)
        );
        let mut ids = Vec::new();
        for guard in self.waits.prefix(&prefix) {
            let key = guard.key()?;
            ids.push(String::from_utf8_lossy(&key[prefix.len()..]).to_string());
        }
        Ok(ids)
    }

    /// The person's history with every offer, over all their identifiers
    /// (`type:value`): impressions merged, the latest dismissal.
    pub fn offer_histories(
        &self,
        identifiers: &[String],
    ) -> Result<BTreeMap<String, OfferHistory>, StoreError> {
        let mut histories: BTreeMap<String, OfferHistory> = BTreeMap::new();
        for identifier in identifiers {
            let prefix = format!("{HISTORY_PREFIX}{}\0", self.pseudonyms.of(identifier));
            for guard in self.waits.prefix(&prefix) {
                let (key, value) = guard.into_inner()?;
                let offer = String::from_utf8_lossy(&key[prefix.len()..]).to_string();
                let found: OfferHistory = decode(&value)?;
                let history = histories.entry(offer).or_default();
                history.impressions.extend(found.impressions);
                history.impressions.sort();
                history.dismissed_at = history.dismissed_at.max(found.dismissed_at);
            }
        }
        Ok(histories)
    }

    pub(super) fn history_key(person: &str, offer: &str) -> String {
        format!("{HISTORY_PREFIX}{person}\0{offer}")
    }

    pub(super) fn stored_history(
        &self,
        person: &str,
        offer: &str,
    ) -> Result<OfferHistory, StoreError> {
        match self.waits.get(Self::history_key(person, offer))? {
            Some(bytes) => decode(&bytes),
            None => Ok(OfferHistory::default()),
        }
    }

    /// Erasure: the person's decisions and offer histories.
    pub(super) fn forget_decisions(
        &self,
        person: &str,
        batch: &mut fjall::OwnedWriteBatch,
    ) -> Result<usize, StoreError> {
        let mut removed = 0;
        let by_person = format!("{DECISION_BY_PERSON_PREFIX}{person}\0");
        for guard in self.waits.prefix(&by_person) {
            let key = guard.key()?;
            let id = String::from_utf8_lossy(&key[by_person.len()..]).to_string();
            if let Some(record) = self.decision(&id)? {
                batch.remove(&self.waits, time_key(&record));
            }
            batch.remove(&self.waits, format!("{DECISION_PREFIX}{id}"));
            batch.remove(&self.waits, key.to_vec());
            removed += 1;
        }
        for guard in self.waits.prefix(format!("{HISTORY_PREFIX}{person}\0")) {
            batch.remove(&self.waits, guard.key()?.to_vec());
            removed += 1;
        }
        Ok(removed)
    }
}

/// A decision's key in the time index.
fn time_key(record: &DecisionRecord) -> String {
    format!(
        "{DECISION_BY_TIME_PREFIX}{:016x}\0{}",
        millis(record.at),
        record.id
    )
}

/// Milliseconds since the epoch, never negative (keys sort as numbers).
fn millis(at: Timestamp) -> u64 {
    at.as_millisecond().max(0) as u64
}
