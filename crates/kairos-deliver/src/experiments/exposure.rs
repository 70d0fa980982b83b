//! A person's exposure to an experiment: the one assignment every path
//! uses — the assignment API, `/v1/decide` and a page's decision, and a
//! journey's `decide` step — so a person has one arm wherever they meet
//! the experiment.
//!
//! The group is read back if any identity of the person was exposed (the
//! earliest exposure wins: a merged person keeps the arm of the identity
//! exposed first), else chosen ([`Definition::assign`]: the hash, the
//! holdouts, the bandit) and stored, fsynced, under the identifier asked
//! for. A stopped experiment exposes nobody new.

use std::sync::Arc;

use jiff::Timestamp;
use kairos_core::audience::eval::EventFact;
use kairos_core::identity::Identifier;
use kairos_engine::{Engine, ProfileView};
use kairos_store::{ExperimentRecord, Exposure, Outbox, Store};

use super::{Definition, GLOBAL_HOLDOUT_GROUP, HOLDOUT_GROUP};
use crate::DeliverError;
use crate::decisions::arbitrate::Assigner;

/// Timeline events read for a person's pre-exposure covariate: the count
/// stops there (a CUPED covariate needs no more precision than that).
pub const PRE_EXPOSURE_EVENTS_MAX: usize = 1_000;

/// A person's exposure to an experiment, and whether it was made now.
#[derive(Debug, Clone)]
pub struct Assigned {
    pub exposure: Exposure,
    pub new: bool,
}

impl Assigned {
    /// The arm, `None` in a holdout.
    pub fn arm(&self) -> Option<&str> {
        let group = self.exposure.group.as_str();
        (group != HOLDOUT_GROUP && group != GLOBAL_HOLDOUT_GROUP).then_some(group)
    }
}

/// Who is exposed, and where in the log and in time.
#[derive(Debug, Clone)]
pub struct Exposing {
    /// The identifier asked for (`type:value`): a new exposure is hashed
    /// from it and stored under it.
    pub asked: String,
    /// Every identity of the person's profile (`type:value`), `asked` with
    /// them: an exposure under any of them is theirs.
    pub identifiers: Vec<String>,
    pub now: Timestamp,
    /// Events at or before this log position came before the exposure:
    /// they are not outcomes. The API passes what is durable at the call;
    /// a journey step the event it is handling.
    pub after_seq: u64,
    /// Whether Kairos knows the person (someone never seen has no history
    /// to count before exposure).
    pub known: bool,
}

impl Exposing {
    /// `who` as asked for, with the identities of their profile `view`.
    pub fn new(
        who: &Identifier,
        view: Option<&ProfileView>,
        now: Timestamp,
        after_seq: u64,
    ) -> Exposing {
        let asked = format!("{}:{}", who.kind, who.value);
        let mut identifiers: Vec<String> = view
            .map(|view| {
                view.identities
                    .iter()
                    .map(|identity| format!("{}:{}", identity.kind, identity.value))
                    .collect()
            })
            .unwrap_or_default();
        if !identifiers.contains(&asked) {
            identifiers.push(asked.clone());
        }
        Exposing {
            asked,
            identifiers,
            now,
            after_seq,
            known: view.is_some_and(|view| !view.id.is_empty()),
        }
    }
}

/// The person's group in the experiment: read back, or chosen and stored
/// (fsynced) now — their exposure; `None` when the experiment is stopped
/// and they were never exposed. `pre_exposure` counts the metric event
/// (named) in their history; it is asked only for a new exposure of a
/// known person.
pub fn assign<E: From<kairos_store::StoreError>>(
    outbox: &Outbox,
    record: &ExperimentRecord,
    definition: &Definition,
    exposing: &Exposing,
    pre_exposure: impl FnOnce(&str) -> Result<f64, E>,
) -> Result<Option<Assigned>, E> {
    if let Some(exposure) = outbox.exposure_of(&record.id, &exposing.identifiers)? {
        return Ok(Some(Assigned {
            exposure,
            new: false,
        }));
    }
    if record.stopped_at.is_some() {
        return Ok(None);
    }
    let pre = if exposing.known {
        pre_exposure(&definition.metric.event)?
    } else {
        0.0
    };
    let global_holdout = outbox.experiment_settings()?.global_holdout;
    let (exposure, new) = outbox.expose(
        &record.id,
        &exposing.identifiers,
        &exposing.asked,
        |counts| Exposure {
            group: definition.assign(&record.salt, &exposing.asked, global_holdout, counts),
            at: exposing.now,
            after_seq: exposing.after_seq,
            pre,
            value: 0.0,
            converted: false,
            guardrails: Default::default(),
        },
    )?;
    Ok(Some(Assigned { exposure, new }))
}

/// How many times the person did `event` in their history (at most
/// [`PRE_EXPOSURE_EVENTS_MAX`] of their latest events, only those before
/// the log position `before` if given), from the profile as the engine
/// holds it now (the caller has waited for it, or is the effects stage).
pub fn pre_exposure_count(
    engine: &Engine,
    store: &Store,
    who: &Identifier,
    before: Option<u64>,
    event: &str,
) -> Result<f64, DeliverError> {
    let Some(page) = engine.timeline_now(who, before, PRE_EXPOSURE_EVENTS_MAX)? else {
        return Ok(0.0);
    };
    let mut count = 0.0;
    for entry in page.entries {
        if before.is_some_and(|before| entry.seq >= before) {
            continue;
        }
        // `None`: erased since; it no longer counts.
        if let Some(stored) = store.log.get(entry.seq)?
            && let Ok(decoded) = stored.decode()
            && EventFact::of(&decoded).is_some_and(|fact| fact.name == event)
        {
            count += 1.0;
        }
    }
    Ok(count)
}

/// What a decision uses to expose the person to the experiments of the
/// offers it shows ([`assign`] by experiment name), reading their
/// pre-exposure history from `engine` before the log position `before`.
pub fn assigner(
    store: Arc<Store>,
    engine: Engine,
    who: Identifier,
    exposing: Exposing,
    before: Option<u64>,
) -> Assigner {
    Assigner(Arc::new(move |name: &str| {
        let record = store.outbox.experiment(name).ok_or_else(|| {
            format!("no experiment {name:?} (create it with POST /v1/experiments)")
        })?;
        let definition = Definition::parse(&record.definition)?;
        let assigned = assign(&store.outbox, &record, &definition, &exposing, |event| {
            pre_exposure_count(&engine, &store, &who, before, event)
        })
        .map_err(|error: DeliverError| error.to_string())?;
        Ok(assigned.map(|assigned| assigned.exposure.group))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A merged person is looked up under every identity (so the earliest
    /// exposure of any wins) and exposed under the one asked for; someone
    /// never seen has no history to count.
    #[test]
    fn exposing_looks_at_every_identity_and_knows_who_is_new() {
        let now: Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
        let asked = Identifier::new("user_id", "u1");
        let merged = ProfileView {
            id: "p1".into(),
            identities: vec![
                Identifier::new("anonymous_id", "a1"),
                Identifier::new("user_id", "u1"),
            ],
            ..Default::default()
        };
        let exposing = Exposing::new(&asked, Some(&merged), now, 41);
        assert_eq!(exposing.asked, "user_id:u1");
        assert_eq!(exposing.identifiers, ["anonymous_id:a1", "user_id:u1"]);
        assert!(exposing.known);
        assert_eq!(exposing.after_seq, 41);
        // A decision for someone unseen passes an empty view.
        let unseen = ProfileView {
            identities: vec![asked.clone()],
            ..Default::default()
        };
        let exposing = Exposing::new(&asked, Some(&unseen), now, 0);
        assert_eq!(exposing.identifiers, ["user_id:u1"]);
        assert!(!exposing.known);
        assert!(!Exposing::new(&asked, None, now, 0).known);
    }
}
