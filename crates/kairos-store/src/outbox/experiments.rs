//! Experiments: their definitions (`meta`, `experiment/<id>`), the global
//! settings (`meta`, `experiments/settings`: the global holdout) and each
//! person's exposure (`waits`, `xe/<experiment id>\0<pseudonym>`): the
//! group they were given (an arm or a holdout), when, the log position it
//! came after, their pre-exposure covariate and their outcome so far.
//!
//! An exposure is stored per identifier, under the pseudonym of the one the
//! assignment was asked for ([`crate::pseudonym`]), fsynced before the arm
//! is answered: it survives restarts, and a person known by several
//! identifiers (after a merge) keeps the earliest exposure of any of them.
//! Outcomes are written by the effects stage in its atomic batch
//! ([`super::Effects::experiment_outcome`]), so each conversion counts once.
//! Each group's counts are kept in memory for Thompson allocation
//! (loaded at open, updated by every write). Exposures are erased with the
//! person ([`Outbox::forget`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, RwLock};

use fjall::PersistMode;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Outbox, decode};
use crate::{StoreError, random_token};

const EXPERIMENT_PREFIX: &str = "experiment/";
const SETTINGS_KEY: &str = "experiments/settings";
pub(super) const EXPOSURE_PREFIX: &str = "xe/";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentRecord {
    /// `exp_…`.
    pub id: String,
    pub name: String,
    /// The definition as submitted (JSON), checked by the caller.
    pub definition: Value,
    /// Hashed with each person's identifier: their arm. Random per
    /// experiment, so two experiments split people independently.
    pub salt: String,
    pub created_at: Timestamp,
    /// Set when stopped: no new exposures, outcomes still count.
    pub stopped_at: Option<Timestamp>,
    /// Creation order.
    pub seq: u64,
}

/// Settings every experiment shares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ExperimentSettings {
    /// The fraction of all people excluded from every experiment.
    pub global_holdout: f64,
}

/// One person's exposure to one experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exposure {
    /// The arm, or a holdout group (names in parentheses, which arms cannot have).
    pub group: String,
    pub at: Timestamp,
    /// Events at or before this log position came before the exposure:
    /// they are not outcomes.
    pub after_seq: u64,
    /// The pre-exposure covariate (CUPED): the person's count of the
    /// metric event before exposure.
    pub pre: f64,
    /// The outcome so far: 1 once converted, or the summed value of a
    /// continuous metric.
    pub value: f64,
    pub converted: bool,
    /// Guardrail metrics (their index in the definition) seen after exposure.
    #[serde(default)]
    pub guardrails: BTreeSet<usize>,
}

/// Group → `(conversions, exposures)`.
pub type GroupCounts = BTreeMap<String, (u64, u64)>;

/// Each experiment's groups' `(conversions, exposures)`, in memory.
#[derive(Default)]
pub(super) struct Counts {
    /// Experiment id → group → counts.
    groups: RwLock<HashMap<String, GroupCounts>>,
    /// Serializes first exposures (look, then write).
    exposing: Mutex<()>,
}

impl Counts {
    pub(super) fn load(waits: &fjall::Keyspace) -> Result<Counts, StoreError> {
        let counts = Counts::default();
        counts.reload(waits)?;
        Ok(counts)
    }

    fn reload(&self, waits: &fjall::Keyspace) -> Result<(), StoreError> {
        let mut groups: HashMap<String, GroupCounts> = HashMap::new();
        for guard in waits.prefix(EXPOSURE_PREFIX) {
            let (key, value) = guard.into_inner()?;
            let Some(experiment) = experiment_of_key(&key) else {
                continue;
            };
            let exposure: Exposure = decode(&value)?;
            let counts = groups
                .entry(experiment)
                .or_default()
                .entry(exposure.group)
                .or_default();
            counts.0 += u64::from(exposure.converted);
            counts.1 += 1;
        }
        *self.groups.write().expect("experiment counts lock") = groups;
        Ok(())
    }

    /// After a batch: `(experiment, group)` converted once more.
    pub(super) fn converted(&self, converted: &[(String, String)]) {
        let mut groups = self.groups.write().expect("experiment counts lock");
        for (experiment, group) in converted {
            groups
                .entry(experiment.clone())
                .or_default()
                .entry(group.clone())
                .or_default()
                .0 += 1;
        }
    }
}

/// The experiment id in an exposure key.
fn experiment_of_key(key: &[u8]) -> Option<String> {
    let rest = key.strip_prefix(EXPOSURE_PREFIX.as_bytes())?;
    let split = rest.iter().position(|byte| *byte == 0)?;
    Some(String::from_utf8_lossy(&rest[..split]).to_string())
}

impl Outbox {
    // --- definitions ---------------------------------------------------------

    /// Stores a new experiment; the caller has checked its definition.
    pub fn create_experiment(
        &self,
        name: &str,
        definition: Value,
        now: Timestamp,
    ) -> Result<ExperimentRecord, StoreError> {
        let _changing = self.changing.lock().expect("outbox lock");
        if self.experiment(name).is_some() {
            return Err(StoreError::NameTaken {
                thing: "experiment",
                name: name.to_string(),
            });
        }
        let seq = self
            .experiments()
            .iter()
            .map(|experiment| experiment.seq)
            .max()
            .unwrap_or(0)
            + 1;
        let record = ExperimentRecord {
            id: format!("exp_{}", random_token(12)),
            name: name.to_string(),
            definition,
            salt: random_token(16),
            created_at: now,
            stopped_at: None,
            seq,
        };
        self.write_experiment(&record)?;
        Ok(record)
    }

    fn write_experiment(&self, record: &ExperimentRecord) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(record).expect("an experiment serializes");
        self.meta
            .insert(format!("{EXPERIMENT_PREFIX}{}", record.id), bytes)?;
        self.db.persist(PersistMode::SyncAll)?;
        Ok(())
    }

    /// Every experiment, oldest first.
    pub fn experiments(&self) -> Vec<ExperimentRecord> {
        let mut experiments: Vec<ExperimentRecord> = self
            .meta
            .prefix(EXPERIMENT_PREFIX)
            .filter_map(|guard| decode(&guard.value().ok()?).ok())
            .collect();
        experiments.sort_by_key(|experiment| experiment.seq);
        experiments
    }

    /// An experiment by id or name.
    pub fn experiment(&self, id_or_name: &str) -> Option<ExperimentRecord> {
        self.experiments()
            .into_iter()
            .find(|experiment| experiment.id == id_or_name || experiment.name == id_or_name)
    }

    /// Stops an experiment (no new exposures); `None` if unknown.
    pub fn stop_experiment(
        &self,
        id: &str,
        now: Timestamp,
    ) -> Result<Option<ExperimentRecord>, StoreError> {
        let _changing = self.changing.lock().expect("outbox lock");
        let Some(mut record) = self.experiment(id) else {
            return Ok(None);
        };
        record.stopped_at.get_or_insert(now);
        self.write_experiment(&record)?;
        Ok(Some(record))
    }

    /// Deletes an experiment and every exposure to it.
    pub fn delete_experiment(&self, id: &str) -> Result<Option<ExperimentRecord>, StoreError> {
        let _changing = self.changing.lock().expect("outbox lock");
        let _exposing = self
            .experiment_counts
            .exposing
            .lock()
            .expect("exposing lock");
        let Some(record) = self.experiment(id) else {
            return Ok(None);
        };
        let mut batch = self.db.batch();
        batch.remove(&self.meta, format!("{EXPERIMENT_PREFIX}{}", record.id));
        for guard in self.waits.prefix(exposures_prefix(&record.id)) {
            batch.remove(&self.waits, guard.key()?.to_vec());
        }
        batch.commit()?;
        self.db.persist(PersistMode::SyncAll)?;
        self.experiment_counts
            .groups
            .write()
            .expect("experiment counts lock")
            .remove(&record.id);
        Ok(Some(record))
    }

    pub fn experiment_settings(&self) -> Result<ExperimentSettings, StoreError> {
        match self.meta.get(SETTINGS_KEY)? {
            Some(bytes) => decode(&bytes),
            None => Ok(ExperimentSettings::default()),
        }
    }

    pub fn set_experiment_settings(&self, settings: ExperimentSettings) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(&settings).expect("settings serialize");
        self.meta.insert(SETTINGS_KEY, bytes)?;
        self.db.persist(PersistMode::SyncAll)?;
        Ok(())
    }

    // --- exposures -------------------------------------------------------------

    pub(super) fn exposure_key(&self, experiment: &str, identifier: &str) -> Vec<u8> {
        format!(
            "{}{}",
            exposures_prefix(experiment),
            self.pseudonyms.of(identifier)
        )
        .into_bytes()
    }

    /// The earliest stored exposure of any of `identifiers` (`type:value`,
    /// every identity of one person) and its key.
    pub fn exposure_of(
        &self,
        experiment: &str,
        identifiers: &[String],
    ) -> Result<Option<Exposure>, StoreError> {
        Ok(self
            .stored_exposure(experiment, identifiers)?
            .map(|(_, exposure)| exposure))
    }

    pub(super) fn stored_exposure(
        &self,
        experiment: &str,
        identifiers: &[String],
    ) -> Result<Option<(Vec<u8>, Exposure)>, StoreError> {
        let mut earliest: Option<(Vec<u8>, Exposure)> = None;
        for identifier in identifiers {
            let key = self.exposure_key(experiment, identifier);
            if let Some(bytes) = self.waits.get(&key)? {
                let exposure: Exposure = decode(&bytes)?;
                if earliest
                    .as_ref()
                    .is_none_or(|(_, first)| earlier(&exposure, first))
                {
                    earliest = Some((key, exposure));
                }
            }
        }
        Ok(earliest)
    }

    /// The person's exposure: the earliest of `identifiers`' if any
    /// (`false`), or else the one `make` gives, stored under `identifier`
    /// and fsynced (`true`). Nothing is stored about an erased person.
    pub fn expose(
        &self,
        experiment: &str,
        identifiers: &[String],
        identifier: &str,
        make: impl FnOnce(&BTreeMap<String, (u64, u64)>) -> Exposure,
    ) -> Result<(Exposure, bool), StoreError> {
        let _exposing = self
            .experiment_counts
            .exposing
            .lock()
            .expect("exposing lock");
        if let Some(exposure) = self.exposure_of(experiment, identifiers)? {
            return Ok((exposure, false));
        }
        let exposure = make(&self.group_counts(experiment));
        if self.is_erased(identifier) {
            return Ok((exposure, true));
        }
        let key = self.exposure_key(experiment, identifier);
        self.waits.insert(
            key,
            serde_json::to_vec(&exposure).expect("an exposure serializes"),
        )?;
        self.db.persist(PersistMode::SyncData)?;
        let mut groups = self
            .experiment_counts
            .groups
            .write()
            .expect("experiment counts lock");
        let counts = groups
            .entry(experiment.to_string())
            .or_default()
            .entry(exposure.group.clone())
            .or_default();
        counts.0 += u64::from(exposure.converted);
        counts.1 += 1;
        Ok((exposure, true))
    }

    /// Each group's `(conversions, exposures)` (from memory).
    pub fn group_counts(&self, experiment: &str) -> BTreeMap<String, (u64, u64)> {
        self.experiment_counts
            .groups
            .read()
            .expect("experiment counts lock")
            .get(experiment)
            .cloned()
            .unwrap_or_default()
    }

    /// Every exposure to an experiment (what results are computed from).
    pub fn exposures(&self, experiment: &str) -> Result<Vec<Exposure>, StoreError> {
        let mut exposures = Vec::new();
        for guard in self.waits.prefix(exposures_prefix(experiment)) {
            exposures.push(decode(&guard.value()?)?);
        }
        Ok(exposures)
    }

    /// After a batch: the conversions it stored.
    pub(super) fn experiments_converted(&self, converted: &[(String, String)]) {
        if !converted.is_empty() {
            self.experiment_counts.converted(converted);
        }
    }

    /// Erasure: the person's exposures to every experiment.
    pub(super) fn forget_exposures(
        &self,
        identifiers: &[String],
        batch: &mut fjall::OwnedWriteBatch,
    ) -> Result<usize, StoreError> {
        let mut removed = 0;
        for experiment in self.experiments() {
            for identifier in identifiers {
                let key = self.exposure_key(&experiment.id, identifier);
                if self.waits.get(&key)?.is_some() {
                    batch.remove(&self.waits, key);
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// After an erasure: the counts without the erased exposures.
    pub(super) fn recount_exposures(&self) -> Result<(), StoreError> {
        self.experiment_counts.reload(&self.waits)
    }
}

fn exposures_prefix(experiment: &str) -> String {
    format!("{EXPOSURE_PREFIX}{experiment}\0")
}

/// Which of two exposures of one person came first (log position, then time).
fn earlier(one: &Exposure, two: &Exposure) -> bool {
    (one.after_seq, one.at) < (two.after_seq, two.at)
}
