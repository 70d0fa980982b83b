//! What steps read about a person — profile, memberships, timeline,
//! identifiers, time zone — and the contact policy every send passes.
//!
//! A step caused by an event reads the profile the shard handed over with
//! it (as the event left the person); a timed step (a wait or timeout due)
//! reads the profile as its shard holds it now, without waiting on the
//! shards (they may be waiting on this stage). An engine failure is an
//! error — the step is retried — never "no profile".

use super::*;

/// Where a step reads the person from.
#[derive(Clone, Copy)]
pub(crate) enum Seen<'a> {
    /// Handed over with the event at `seq`: the profile right after it.
    WithEvent {
        person: &'a kairos_engine::ProfileView,
        seq: u64,
    },
    /// A timed step: the profile as its shard holds it now.
    Now,
}

impl Stage {
    /// A branch's condition for the person now: the from-scratch meaning of
    /// the audience language over their traits, computed traits,
    /// memberships and timeline.
    pub(super) fn holds(
        &self,
        condition: &Expr,
        subject: &Identifier,
        now: Timestamp,
        seen: Seen<'_>,
    ) -> Result<bool, DeliverError> {
        let Some(view) = self.profile(subject, seen)? else {
            return Ok(false); // no profile: nothing about them holds
        };
        let upto = match seen {
            Seen::WithEvent { seq, .. } => Some(seq + 1),
            Seen::Now => None,
        };
        let events = self.history(subject, upto, seen)?;
        let facts = PersonFacts {
            traits: view.traits,
            computed: view.computed,
            audiences: view.audiences.into_iter().collect(),
            ..PersonFacts::default()
        };
        Ok(evaluate(condition, &events, &facts, now))
    }

    /// The person's latest timeline events (newest first), only those
    /// before the log position `before` if given.
    pub(super) fn history(
        &self,
        subject: &Identifier,
        before: Option<u64>,
        _seen: Seen<'_>,
    ) -> Result<Vec<EventFact>, DeliverError> {
        let page = self
            .engine
            .timeline_now(subject, before, BRANCH_EVENTS_MAX)?;
        let mut stored = Vec::new();
        for entry in page.map(|page| page.entries).unwrap_or_default() {
            if before.is_none_or(|before| entry.seq < before) {
                // `None`: the event was erased since; it no longer counts.
                stored.extend(self.store.log.get(entry.seq)?);
            }
        }
        Ok(stored
            .iter()
            .filter_map(|stored| stored.decode().ok())
            .filter_map(|event| EventFact::of(&event))
            .collect())
    }

    /// Every identifier of the person's profile (`type:value`), or just
    /// the one we know.
    pub(super) fn identifiers(
        &self,
        subject: &Identifier,
        seen: Seen<'_>,
    ) -> Result<Vec<String>, DeliverError> {
        Ok(identifiers_in(
            self.profile(subject, seen)?.as_ref(),
            subject,
        ))
    }

    /// The person's profile (`None`: nobody is known by `subject`, e.g.
    /// erased). An engine failure is an error, never "no profile": a step
    /// decided on it would be committed once and for all.
    pub(super) fn profile(
        &self,
        subject: &Identifier,
        seen: Seen<'_>,
    ) -> Result<Option<kairos_engine::ProfileView>, DeliverError> {
        match seen {
            Seen::WithEvent { person, .. } => Ok(Some(person.clone())),
            Seen::Now => Ok(self.engine.profile_now(subject)?),
        }
    }

    /// The next moment after `now` at which the person's clock (trait
    /// `timezone`, else the policy's default zone) shows `time`.
    pub(super) fn next_local_time(
        &self,
        time: jiff::civil::Time,
        subject: &Identifier,
        now: Timestamp,
        seen: Seen<'_>,
    ) -> Result<Timestamp, DeliverError> {
        let view = self.profile(subject, seen)?;
        let zone = self.policy.time_zone_of(
            view.as_ref()
                .and_then(|view| view.traits.get("timezone")?.as_str()),
        );
        Ok(crate::policy::next_local(now, time, &zone))
    }

    /// Why mail to this address must not go (it is on a suppression list,
    /// or joined one earlier in this step). Lists that cannot be read are
    /// an error (the step is retried), not a reason to block the message
    /// for good.
    pub(super) fn suppressed_address(
        &self,
        address: &str,
        effects: &Effects<'_>,
    ) -> Result<Option<String>, DeliverError> {
        let identifier = format!("email:{}", address.trim().to_lowercase());
        let found = effects.find_in_lists(&self.policy.suppression_lists, &[identifier])?;
        Ok(found.map(|(list, identifier)| crate::policy::suppressed(&list, &identifier)))
    }

    /// The engine's "now" (the manual clock in tests).
    pub(super) fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Judges a send with a purpose: sends, defers (quiet hours) or blocks
    /// it (consent, caps), recording why.
    pub(super) fn apply_policy(
        &self,
        message: &mut Message,
        subject: &kairos_core::identity::Identifier,
        effects: &Effects<'_>,
        now: Timestamp,
        seen: Seen<'_>,
    ) -> Result<(), DeliverError> {
        let person = self.person(subject, effects, seen)?;
        match self
            .policy
            .judge(message.purpose.as_deref(), &message.channel, &person, now)
        {
            Verdict::Send => {}
            Verdict::Defer { until, reason } => {
                // Held on the engine's clock, which the policy judged on
                // (the workers compare it with the engine's now; a manual
                // clock's move wakes them).
                message.deferred_until = Some(until);
                message.last_error = Some(reason);
            }
            Verdict::Block { reason } => {
                message.status = MessageStatus::Blocked;
                message.last_error = Some(reason);
            }
        }
        Ok(())
    }

    /// The person as the policy sees them: consent and time zone from the
    /// profile now, and their sends with a purpose (stored, and decided in
    /// this step), suppression lists as this step left them.
    pub(super) fn person(
        &self,
        subject: &kairos_core::identity::Identifier,
        effects: &Effects<'_>,
        seen: Seen<'_>,
    ) -> Result<Person, DeliverError> {
        let view = self.profile(subject, seen)?;
        let identities = identifiers_in(view.as_ref(), subject);
        let counted = |message: &Message| {
            message.purpose.is_some() && message.status != MessageStatus::Blocked
        };
        let mut recent: Vec<(Timestamp, String)> = self
            .store
            .outbox
            .by_identifiers(&identities, RECENT_SENDS_MAX)?
            .into_iter()
            .filter(|message| counted(message))
            .map(|message| (message.created_at, message.channel))
            .collect();
        recent.extend(
            effects
                .messages()
                .iter()
                .filter(|message| counted(message) && identities.contains(&message.identifier))
                .map(|message| (message.created_at, message.channel.clone())),
        );
        let suppressed = effects.find_in_lists(&self.policy.suppression_lists, &identities)?;
        Ok(Person {
            suppressed,
            consent: view
                .as_ref()
                .map(|view| view.consent.clone())
                .unwrap_or_default(),
            time_zone: view
                .as_ref()
                .and_then(|view| view.traits.get("timezone")?.as_str().map(str::to_string)),
            recent,
        })
    }
}

/// Every identifier of the profile (`type:value`), or just the subject's
/// when there is no profile.
fn identifiers_in(view: Option<&kairos_engine::ProfileView>, subject: &Identifier) -> Vec<String> {
    match view {
        Some(view) => view
            .identities
            .iter()
            .map(|identity| format!("{}:{}", identity.kind, identity.value))
            .collect(),
        None => vec![format!("{}:{}", subject.kind, subject.value)],
    }
}
