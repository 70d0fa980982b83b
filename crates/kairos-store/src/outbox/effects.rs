//! Every write one follower step makes, held in memory and committed with
//! the cursor in one atomic, fsynced batch: messages, audience-sync
//! changes, journey entries and counters, runs saved or ended, `not
//! followed by` waits set or cancelled, list additions, offer responses,
//! experiment outcomes (`effects/experiments.rs`). After `kill -9`
//! (or a failed step that is retried) the step's events are looked at
//! again with none of its writes applied — never with half of them (an
//! `"entry": "once"` journey finding its entry recorded and sending
//! nothing, a counter counting twice).
//!
//! The reads a step makes about what it may already have written
//! (`entries`, `runs_of`, `wait`, suppression lists) go through
//! [`Effects`]: a later event of the same step sees an earlier one's
//! entry, run or wait as if it were stored.

mod experiments;

use std::collections::BTreeMap;

use fjall::{OwnedWriteBatch, PersistMode};
use jiff::Timestamp;

use super::offers::{
    DecisionRecord, HISTORY_IMPRESSIONS_MAX, OfferHistory, OfferStats, ResponseKind,
};
use super::{COUNT_PREFIX, CURSOR_KEY, Entries, Message, Outbox, Run, SyncChange, Wait, decode};
use crate::StoreError;
use crate::lists::{ListMember, Lists};

/// Runs or waits written in this step, by key: the latest state, and
/// whether it is kept (`false`: ended or cancelled).
type Pending<T> = BTreeMap<Vec<u8>, (T, bool)>;

/// One step's writes, not yet stored (see the module's documentation).
/// Dropping it writes nothing.
pub struct Effects<'a> {
    outbox: &'a Outbox,
    lists: &'a Lists,
    messages: Vec<Message>,
    changes: Vec<(String, SyncChange)>,
    /// `(journey, identifier)` → entries after this step.
    entries: BTreeMap<(String, String), Entries>,
    /// `(journey, counter)` → how much to add.
    counts: BTreeMap<(String, String), u64>,
    /// Person → run key → (run, saved: true / ended: false): by person,
    /// so `runs_of` does not walk every run of the step.
    runs: BTreeMap<String, Pending<Run>>,
    /// Wait key → (wait, set: true / cancelled: false).
    waits: Pending<Wait>,
    /// `(list, identifier)` → the new member.
    members: BTreeMap<(String, String), ListMember>,
    /// Decisions responded to in this step, as they now are.
    decisions: BTreeMap<String, DecisionRecord>,
    /// Offer counts (stats key) and histories (history key) after this step.
    offer_stats: BTreeMap<String, OfferStats>,
    histories: BTreeMap<String, OfferHistory>,
    /// Experiment exposures changed in this step, by key.
    exposures: BTreeMap<Vec<u8>, experiments::Pending>,
}

pub use experiments::Outcome;

impl<'a> Effects<'a> {
    pub(crate) fn new(outbox: &'a Outbox, lists: &'a Lists) -> Effects<'a> {
        Effects {
            outbox,
            lists,
            messages: Vec::new(),
            changes: Vec::new(),
            entries: BTreeMap::new(),
            counts: BTreeMap::new(),
            runs: BTreeMap::new(),
            waits: BTreeMap::new(),
            members: BTreeMap::new(),
            decisions: BTreeMap::new(),
            offer_stats: BTreeMap::new(),
            histories: BTreeMap::new(),
            exposures: BTreeMap::new(),
        }
    }

    /// A conversion event (`name`... resolved by the caller to the offers
    /// it converts) of the person known by `identifiers`, at `at`: every
    /// randomized incentive of those offers in their decisions whose window
    /// holds `at` is marked converted (once). Returns how many.
    pub fn incentive_outcomes(
        &mut self,
        identifiers: &[String],
        offers: &[String],
        at: Timestamp,
    ) -> Result<usize, StoreError> {
        let mut marked = 0;
        for identifier in identifiers {
            for id in self.outbox.decision_ids_of(identifier)? {
                let decision = match self.decisions.get(&id) {
                    Some(decision) => decision.clone(),
                    None => match self.outbox.decision(&id)? {
                        Some(decision) => decision,
                        None => continue,
                    },
                };
                let mut decision = decision;
                let mut changed = false;
                for incentive in &mut decision.incentives {
                    if offers.contains(&incentive.offer)
                        && !incentive.converted
                        && decision.at <= at
                        && at <= incentive.window_ends
                    {
                        incentive.converted = true;
                        changed = true;
                        marked += 1;
                    }
                }
                if changed {
                    self.decisions.insert(id, decision);
                }
            }
        }
        Ok(marked)
    }

    /// A response (impression, click, dismissal, conversion) to an offer of
    /// a decision, at `at`: counted for the offer in the decision's
    /// placement and in the person's history, once per decision, offer and
    /// kind. Returns `None` when the decision is unknown (lost in a crash,
    /// erased, or never made) or did not include the offer — unattributed —
    /// and otherwise whether it counted (false: a repeat).
    pub fn offer_response(
        &mut self,
        decision_id: &str,
        offer: &str,
        kind: ResponseKind,
        at: Timestamp,
    ) -> Result<Option<bool>, StoreError> {
        let decision = match self.decisions.get(decision_id) {
            Some(decision) => decision.clone(),
            None => match self.outbox.decision(decision_id)? {
                Some(decision) => decision,
                None => return Ok(None),
            },
        };
        let Some(action) = decision
            .actions
            .iter()
            .find(|action| action.offer == offer)
            .cloned()
        else {
            return Ok(None);
        };
        let response = format!("{}\0{}", action.offer, kind.name());
        let mut decision = decision;
        if !decision.responses.insert(response) {
            return Ok(Some(false));
        }
        let stats_key = Outbox::offer_stats_key(&action.offer, &decision.placement);
        let mut stats = match self.offer_stats.get(&stats_key) {
            Some(stats) => *stats,
            None => self
                .outbox
                .stored_offer_stats(&action.offer, &decision.placement),
        };
        match kind {
            ResponseKind::Impression => stats.impressions += 1,
            ResponseKind::Click => stats.clicks += 1,
            ResponseKind::Dismissal => stats.dismissals += 1,
            ResponseKind::Conversion => stats.conversions += 1,
        }
        self.offer_stats.insert(stats_key, stats);
        if matches!(kind, ResponseKind::Impression | ResponseKind::Dismissal) {
            let history_key = Outbox::history_key(&decision.person, &action.offer);
            let mut history = match self.histories.get(&history_key) {
                Some(history) => history.clone(),
                None => self
                    .outbox
                    .stored_history(&decision.person, &action.offer)?,
            };
            if kind == ResponseKind::Impression {
                history.impressions.push(at);
                let excess = history
                    .impressions
                    .len()
                    .saturating_sub(HISTORY_IMPRESSIONS_MAX);
                history.impressions.drain(..excess);
            } else {
                history.dismissed_at = history.dismissed_at.max(Some(at));
            }
            self.histories.insert(history_key, history);
        }
        self.decisions.insert(decision_id.to_string(), decision);
        Ok(Some(true))
    }

    // --- writes (in memory until `commit`) ---------------------------------

    /// A message decided in this step.
    pub fn send(&mut self, message: Message) {
        self.messages.push(message);
    }

    /// The messages decided so far in this step (frequency caps count them).
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// A membership change for an audience sync's next batch.
    pub fn sync_change(&mut self, sync: String, change: SyncChange) {
        self.changes.push((sync, change));
    }

    /// The person entered the journey at `now` (entry rules read it).
    pub fn record_entry(
        &mut self,
        journey: &str,
        identifier: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let count = self
            .entries(journey, identifier)?
            .map_or(0, |entries| entries.count);
        self.entries.insert(
            (journey.to_string(), identifier.to_string()),
            Entries {
                count: count + 1,
                last: now,
            },
        );
        Ok(())
    }

    /// Adds to a journey's counter (`entered`, `exited`, `goal_reached`).
    pub fn count(&mut self, journey: &str, counter: &str, by: u64) {
        *self
            .counts
            .entry((journey.to_string(), counter.to_string()))
            .or_default() += by;
    }

    /// Stores a waiting run (replacing its previous state).
    pub fn save_run(&mut self, run: &Run) {
        self.write_run(run, true);
    }

    /// Ends a run (finished, its goal met, or resumed to be saved anew).
    pub fn remove_run(&mut self, run: &Run) {
        self.write_run(run, false);
    }

    fn write_run(&mut self, run: &Run, saved: bool) {
        let key = self.outbox.run_key(run);
        self.runs
            .entry(run.identifier.clone())
            .or_default()
            .insert(key, (run.clone(), saved));
    }

    /// Starts (or restarts, with a new deadline) a wait.
    pub fn set_wait(&mut self, wait: &Wait) {
        let key = self.outbox.wait_key(&wait.journey, &wait.key);
        self.waits.insert(key, (wait.clone(), true));
    }

    /// Cancels a wait (the expected event came, or it fired).
    pub fn cancel_wait(&mut self, wait: &Wait) {
        let key = self.outbox.wait_key(&wait.journey, &wait.key);
        self.waits.insert(key, (wait.clone(), false));
    }

    /// Adds identifiers to a list (already members keep their first entry).
    pub fn add_to_list(&mut self, list: &str, identifiers: &[String], reason: &str, at: Timestamp) {
        for identifier in identifiers {
            self.members
                .entry((list.to_string(), identifier.clone()))
                .or_insert_with(|| ListMember {
                    identifier: identifier.clone(),
                    added_at: at,
                    reason: reason.to_string(),
                });
        }
    }

    // --- reads: the store as this step has changed it ------------------------

    pub fn entries(&self, journey: &str, identifier: &str) -> Result<Option<Entries>, StoreError> {
        match self
            .entries
            .get(&(journey.to_string(), identifier.to_string()))
        {
            Some(entries) => Ok(Some(*entries)),
            None => self.outbox.entries(journey, identifier),
        }
    }

    /// The waiting runs of a person, in the store's order.
    pub fn runs_of(&self, identifier: &str) -> Result<Vec<Run>, StoreError> {
        let mut runs: BTreeMap<Vec<u8>, Run> = self
            .outbox
            .runs_of(identifier)?
            .into_iter()
            .map(|run| (self.outbox.run_key(&run), run))
            .collect();
        for (key, (run, saved)) in self.runs.get(identifier).into_iter().flatten() {
            if *saved {
                runs.insert(key.clone(), run.clone());
            } else {
                runs.remove(key);
            }
        }
        Ok(runs.into_values().collect())
    }

    pub fn wait(&self, journey: &str, key: &str) -> Result<Option<Wait>, StoreError> {
        match self.waits.get(&self.outbox.wait_key(journey, key)) {
            Some((wait, set)) => Ok(set.then(|| wait.clone())),
            None => self.outbox.wait(journey, key),
        }
    }

    /// [`Lists::find`], with the additions of this step.
    pub fn find_in_lists(
        &self,
        lists: &[String],
        identifiers: &[String],
    ) -> Result<Option<(String, String)>, StoreError> {
        if let Some(found) = self.lists.find(lists, identifiers)? {
            return Ok(Some(found));
        }
        Ok(lists.iter().find_map(|list| {
            identifiers
                .iter()
                .find(|identifier| {
                    self.members
                        .contains_key(&(list.clone(), (*identifier).clone()))
                })
                .map(|identifier| (list.clone(), identifier.clone()))
        }))
    }

    // --- commit ------------------------------------------------------------

    /// Stores every write of the step — and moves the journeys' cursor to
    /// `cursor`, if given — in one atomic, fsynced batch. Nothing is
    /// written about a person erased meanwhile.
    pub fn commit(self, cursor: Option<u64>) -> Result<(), StoreError> {
        let outbox = self.outbox;
        let mut batch = outbox.db.batch();
        for (sync, change) in &self.changes {
            if !outbox.is_erased(&change.identifier) {
                batch.insert(
                    &outbox.waits,
                    super::sync_change_key(sync, change.seq),
                    serde_json::to_vec(change).expect("a change serializes"),
                );
            }
        }
        for message in &self.messages {
            outbox.write_new_message(&mut batch, message);
        }
        for ((journey, identifier), entries) in &self.entries {
            if !outbox.is_erased(identifier) {
                batch.insert(
                    &outbox.waits,
                    outbox.entries_key(journey, identifier),
                    serde_json::to_vec(entries).expect("entries serialize"),
                );
            }
        }
        for ((journey, counter), by) in &self.counts {
            let key = format!("{COUNT_PREFIX}{journey}\0{counter}");
            let stored = match outbox.meta.get(&key)? {
                Some(bytes) => decode::<u64>(&bytes)?,
                None => 0,
            };
            batch.insert(
                &outbox.meta,
                key,
                serde_json::to_vec(&(stored + by)).expect("a number"),
            );
        }
        self.write_runs(&mut batch)?;
        self.write_waits(&mut batch)?;
        for ((list, _), member) in &self.members {
            if !outbox.is_erased(&member.identifier) {
                self.lists.write_member(&mut batch, list, member)?;
            }
        }
        self.write_offer_responses(&mut batch);
        self.write_exposures(&mut batch);
        if let Some(cursor) = cursor {
            batch.insert(&outbox.meta, CURSOR_KEY, cursor.to_be_bytes());
        }
        if batch.is_empty() {
            return Ok(());
        }
        batch.commit()?;
        outbox.db.persist(PersistMode::SyncData)?;
        outbox.counted(&self.offer_stats);
        outbox.experiments_converted(&self.experiment_conversions());
        Ok(())
    }

    /// Decisions responded to, offer counts and histories, as they now are.
    fn write_offer_responses(&self, batch: &mut OwnedWriteBatch) {
        let outbox = self.outbox;
        for (key, stats) in &self.offer_stats {
            batch.insert(
                &outbox.meta,
                key.clone(),
                serde_json::to_vec(stats).expect("counts serialize"),
            );
        }
        for decision in self.decisions.values() {
            batch.insert(
                &outbox.waits,
                format!("{}{}", super::offers::DECISION_PREFIX, decision.id),
                serde_json::to_vec(decision).expect("a decision serializes"),
            );
        }
        for (key, history) in &self.histories {
            batch.insert(
                &outbox.waits,
                key.clone(),
                serde_json::to_vec(history).expect("a history serializes"),
            );
        }
    }

    /// Each touched run: its stored state (and timer) replaced by the
    /// latest. A key is written at most once per batch (two writes of one
    /// key in one batch share a sequence number: which wins is undefined).
    fn write_runs(&self, batch: &mut OwnedWriteBatch) -> Result<(), StoreError> {
        let outbox = self.outbox;
        for (key, (run, saved)) in self.runs.values().flatten() {
            let old_timer = match outbox.waits.get(key)? {
                Some(bytes) => Some(outbox.run_timer_key(&decode::<Run>(&bytes)?)),
                None => None,
            };
            let mut new_timer = None;
            if *saved && !outbox.is_erased(&run.identifier) {
                let timer = outbox.run_timer_key(run);
                batch.insert(
                    &outbox.waits,
                    key.clone(),
                    serde_json::to_vec(run).expect("a run serializes"),
                );
                batch.insert(&outbox.waits, timer.clone(), key.clone());
                new_timer = Some(timer);
            } else {
                batch.remove(&outbox.waits, key.clone());
            }
            if let Some(old_timer) = old_timer
                && new_timer.as_ref() != Some(&old_timer)
            {
                batch.remove(&outbox.waits, old_timer);
            }
        }
        Ok(())
    }

    /// Each touched wait: its stored state (and deadline) replaced by the
    /// latest, each key written once (see [`Effects::write_runs`]).
    fn write_waits(&self, batch: &mut OwnedWriteBatch) -> Result<(), StoreError> {
        let outbox = self.outbox;
        for (key, (wait, set)) in &self.waits {
            let old_deadline = match outbox.waits.get(key)? {
                Some(bytes) => Some(outbox.deadline_key(&decode::<Wait>(&bytes)?)),
                None => None,
            };
            let mut new_deadline = None;
            if *set && !outbox.is_erased(&wait.identifier) {
                let deadline = outbox.deadline_key(wait);
                batch.insert(
                    &outbox.waits,
                    key.clone(),
                    serde_json::to_vec(wait).expect("a wait serializes"),
                );
                batch.insert(&outbox.waits, deadline.clone(), b"");
                new_deadline = Some(deadline);
            } else {
                batch.remove(&outbox.waits, key.clone());
            }
            if let Some(old_deadline) = old_deadline
                && new_deadline.as_ref() != Some(&old_deadline)
            {
                batch.remove(&outbox.waits, old_deadline);
            }
        }
        Ok(())
    }
}
