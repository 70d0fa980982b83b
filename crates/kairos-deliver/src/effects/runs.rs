//! Entering journeys and executing their steps: send, wait, wait_until,
//! wait_for, branch, set_trait, add_to_list.

use super::*;

impl Stage {
    /// A person enters a journey (if its entry rule and the cap on
    /// concurrent journeys let them) and goes through its steps up to the
    /// first wait; the triggering event is its position and summary.
    pub(super) async fn enter(
        &self,
        journey: &CompiledJourney,
        subject: &Identifier,
        (event_seq, event): (u64, Value),
        now: Timestamp,
        seen: Seen<'_>,
        effects: &mut Effects<'_>,
    ) -> Result<(), DeliverError> {
        let identifier = format!("{}:{}", subject.kind, subject.value);
        if journey.entry.rule != EntryRule::EveryTime {
            let last_entry = effects
                .entries(&journey.id, &identifier)?
                .map(|entries| entries.last);
            if !journey.entry.admits(last_entry, now) {
                return Ok(());
            }
            effects.record_entry(&journey.id, &identifier, now)?;
        }
        let under_way = match self.policy.max_concurrent_journeys {
            Some(_) => effects.runs_of(&identifier)?.len(),
            None => 0, // no cap: the runs need not be read
        };
        if let Some(cap) = self.policy.journeys_cap_reached(under_way) {
            tracing::info!(journey = %journey.name, %identifier, "not entered: {cap} journeys under way");
            return Ok(());
        }
        effects.count(&journey.id, "entered", 1);
        self.metrics
            .journey_entries
            .get_or_create(&vec![("journey", journey.name.clone())])
            .inc();
        let run = Run {
            journey: journey.id.clone(),
            identifier,
            event_seq,
            pc: 0,
            resume_at: now,
            waiting_for: None,
            started_at: now,
            event,
        };
        self.execute(journey, run, subject, now, seen, effects)
            .await
    }

    /// Runs the journey's steps from the run's place until a wait (the run
    /// is saved) or the end (the run ends), in the step's `effects`.
    pub(super) async fn execute(
        &self,
        journey: &CompiledJourney,
        mut run: Run,
        subject: &Identifier,
        now: Timestamp,
        seen: Seen<'_>,
        effects: &mut Effects<'_>,
    ) -> Result<(), DeliverError> {
        loop {
            let Some(instruction) = journey.program.get(run.pc) else {
                effects.count(&journey.id, "exited", 1);
                effects.remove_run(&run);
                return Ok(());
            };
            match instruction {
                Instruction::Send(send) => {
                    let mut message = message(
                        &self.store,
                        journey,
                        run.pc,
                        send,
                        &run.identifier,
                        run.event_seq,
                        run.event.clone(),
                        now,
                    );
                    if send.purpose.is_some() || !self.policy.suppression_lists.is_empty() {
                        self.apply_policy(&mut message, subject, effects, now, seen)?;
                    }
                    self.render_content(&mut message, send, subject, effects, seen)?;
                    if let Some(placement) = &send.decide {
                        self.decided_content(&mut message, placement, subject, now, seen)?;
                    }
                    let status = match message.status {
                        MessageStatus::Blocked => "blocked",
                        _ => "pending",
                    };
                    self.metrics
                        .journey_messages
                        .get_or_create(&vec![
                            ("journey", journey.name.clone()),
                            ("status", status.to_string()),
                        ])
                        .inc();
                    effects.send(message);
                    run.pc += 1;
                }
                Instruction::Wait(span) => {
                    run.pc += 1;
                    run.resume_at = now + *span;
                    effects.save_run(&run);
                    return Ok(());
                }
                Instruction::WaitFor { event, timeout } => {
                    run.pc += 1;
                    run.waiting_for = Some(event.clone());
                    run.resume_at = now + *timeout;
                    effects.save_run(&run);
                    return Ok(());
                }
                Instruction::Branch {
                    condition,
                    otherwise,
                } => {
                    run.pc = if self.holds(condition, subject, now, seen)? {
                        run.pc + 1
                    } else {
                        *otherwise
                    };
                }
                Instruction::WaitUntil(time) => {
                    run.pc += 1;
                    run.resume_at = self.next_local_time(*time, subject, now, seen)?;
                    effects.save_run(&run);
                    return Ok(());
                }
                Instruction::AddToList(list) => {
                    let identifiers = self.identifiers(subject, seen)?;
                    let reason = format!("journey {}", journey.name);
                    effects.add_to_list(list, &identifiers, &reason, now);
                    run.pc += 1;
                }
                Instruction::Jump(target) => run.pc = *target,
                Instruction::SetTrait { name, value } => {
                    self.set_trait(&run, name, value, now).await?;
                    run.pc += 1;
                }
            }
        }
    }

    /// An event of a person: their runs waiting for it go on; runs whose
    /// goal it is end.
    pub(super) async fn resume_waiting(
        &self,
        subject: &Identifier,
        name: &str,
        journeys: &[CompiledJourney],
        now: Timestamp,
        seen: Seen<'_>,
        effects: &mut Effects<'_>,
    ) -> Result<(), DeliverError> {
        let identifier = format!("{}:{}", subject.kind, subject.value);
        for mut run in effects.runs_of(&identifier)? {
            let Some(journey) = journeys.iter().find(|journey| journey.id == run.journey) else {
                effects.remove_run(&run);
                continue;
            };
            if journey.paused {
                continue; // held until the journey resumes
            }
            if journey.goal.as_deref() == Some(name) {
                effects.remove_run(&run); // the goal is met: they leave
                effects.count(&journey.id, "goal_reached", 1);
            } else if run.waiting_for.as_deref() == Some(name) {
                effects.remove_run(&run);
                run.waiting_for = None;
                self.execute(journey, run, subject, now, seen, effects)
                    .await?;
            }
        }
        Ok(())
    }

    /// Resumes runs whose wait is over on the engine's clock; returns how
    /// many resumed and messages were decided.
    pub(super) async fn fire_due_runs(&self) -> Result<usize, DeliverError> {
        let now = self.now();
        let due = self.store.outbox.due_runs(now, WAITS_FIRED_MAX)?;
        if due.is_empty() {
            return Ok(0);
        }
        let resumed = due.len();
        let journeys = active_journeys(&self.store);
        let mut effects = self.store.effects();
        for mut run in due {
            let Some(journey) = journeys.iter().find(|journey| journey.id == run.journey) else {
                effects.remove_run(&run);
                continue;
            };
            if journey.paused {
                // Held at its next step until the journey resumes.
                run.resume_at = kairos_store::outbox::HELD_UNTIL;
                effects.save_run(&run);
                continue;
            }
            effects.remove_run(&run);
            let subject = person(&run.identifier);
            run.waiting_for = None;
            self.execute(journey, run, &subject, now, Seen::Now, &mut effects)
                .await?;
        }
        let decided = effects.messages().len();
        effects.commit(None)?;
        Ok(resumed + decided)
    }

    /// A `set_trait` step: an identify event of the `kairos-journeys`
    /// source through the log, so the trait is durable and replayed like
    /// any other (and audiences see it); received at the step's `now`.
    pub(super) async fn set_trait(
        &self,
        run: &Run,
        name: &str,
        value: &Value,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut event = json!({
            "type": "identify",
            "messageId": format!("journey-{}-{:x}-{}", run.journey, run.event_seq, run.pc),
            "traits": {name: value},
        });
        person(&run.identifier).name_in(&mut event);
        let outcome = self
            .store
            .append_internal(&self.rules, JOURNEY_SOURCE, &[event], now)
            .await?;
        if let Some(rejected) = outcome.rejected.first() {
            let errors = &rejected.errors;
            tracing::warn!(trait_name = %name, %errors, "a set_trait step did not make a valid event");
        }
        Ok(())
    }

    /// A `decide` send: the top action decided for the person in the
    /// placement is what is sent (in-app: its content is the message;
    /// webhook: `data.decision`), with the decision's id for responses.
    /// An offer tested in an experiment exposes the person and sends their
    /// arm's variant.
    /// Without an action the send is blocked, saying why.
    pub(super) fn decided_content(
        &self,
        message: &mut Message,
        placement: &str,
        subject: &Identifier,
        now: Timestamp,
        seen: Seen<'_>,
    ) -> Result<(), DeliverError> {
        if message.status == MessageStatus::Blocked {
            return Ok(());
        }
        let view = self
            .profile(subject, seen)?
            .unwrap_or_else(|| kairos_engine::ProfileView {
                identities: vec![subject.clone()],
                ..Default::default()
            });
        let request = crate::decisions::Request {
            placement: placement.to_string(),
            channel: None,
            prefer_channel: Some(message.channel.clone()),
            weights: Default::default(),
            limit: 1,
            max_per_category: None,
            explore: true,
            personal: true,
            now,
            recommendations: Some(crate::render::Recommendations::from_engine(
                self.engine.clone(),
                Some(subject.clone()),
                true,
            )),
            experiments: Some(self.experiment_assigner(subject, &view, now, seen)),
        };
        let context = json!({"journey": message.payload["data"]["journey"].clone(),
                             "event": message.payload["data"]["event"].clone()});
        let identifier = format!("{}:{}", subject.kind, subject.value);
        let decision = crate::decisions::decide(
            &self.store,
            &self.catalog,
            &identifier,
            &view,
            &request,
            &context,
            false,
        )?;
        let Some(action) = decision.actions.first() else {
            message.status = MessageStatus::Blocked;
            message.last_error = Some(format!("decide: no offer for placement {placement:?}"));
            return Ok(());
        };
        let data = &mut message.payload["data"];
        data["decision"] = json!({"decision_id": decision.decision_id, "placement": placement,
                                  "offer": action.offer, "offer_id": action.offer_id,
                                  "content": action.content});
        if let Some(experiment) = &action.experiment {
            data["decision"]["experiment"] = experiment.clone();
        }
        if message.channel == "in_app" {
            data["content"] = action.content.clone();
        }
        Ok(())
    }

    /// Exposes the person to the experiments of the offer a `decide` send
    /// shows, as `/v1/decide` does (one assignment: the same arm on every
    /// path). Outcomes count after the event the step handles (a timed
    /// step: after what is durable now); the pre-exposure history is what
    /// came up to that event.
    fn experiment_assigner(
        &self,
        subject: &Identifier,
        view: &kairos_engine::ProfileView,
        now: Timestamp,
        seen: Seen<'_>,
    ) -> crate::decisions::arbitrate::Assigner {
        let (after_seq, before) = match seen {
            Seen::WithEvent { seq, .. } => (seq, Some(seq + 1)),
            Seen::Now => (self.store.writer.committed_seq(), None),
        };
        let exposing = crate::experiments::Exposing::new(subject, Some(view), now, after_seq);
        crate::experiments::assigner(
            self.store.clone(),
            self.engine.clone(),
            subject.clone(),
            exposing,
            before,
        )
    }

    /// Email and in-app sends: their content rendered for the person now
    /// replaces the payload, so every attempt sends the same thing. An email
    /// goes to the `email` trait, else an email identity; without one, or
    /// with a failing template, the send is blocked with the reason.
    pub(super) fn render_content(
        &self,
        message: &mut Message,
        send: &SendStep,
        subject: &kairos_core::identity::Identifier,
        effects: &Effects<'_>,
        seen: Seen<'_>,
    ) -> Result<(), DeliverError> {
        if (send.template.is_none() && send.message.is_none())
            || message.status == MessageStatus::Blocked
        {
            return Ok(());
        }
        let view = self.profile(subject, seen)?;
        let context =
            crate::email::person_context(view.as_ref(), &message.payload["data"]["event"]);
        let recommendations = crate::render::Recommendations::from_engine(
            self.engine.clone(),
            Some(subject.clone()),
            true,
        );
        let rendered = match (&send.template, &send.message) {
            (Some(template), _) => {
                let recipient = view.as_ref().and_then(|view| {
                    view.traits
                        .get("email")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .or_else(|| {
                            view.identities
                                .iter()
                                .find(|identity| identity.kind == "email")
                                .map(|identity| identity.value.clone())
                        })
                });
                match recipient {
                    None => {
                        Err("no email address: the profile has no email trait or identity".into())
                    }
                    Some(recipient) => match self.suppressed_address(&recipient, effects)? {
                        Some(reason) => Err(reason),
                        None => crate::email::render(
                            template,
                            &recipient,
                            &context,
                            Some(recommendations),
                        )
                        .map(|email| serde_json::to_value(email).unwrap_or_default()),
                    },
                }
            }
            (None, Some(content)) => {
                crate::email::render_value(content, &context, Some(recommendations)).map(
                    |content| {
                        let mut payload = message.payload.clone();
                        payload["data"]["content"] = content;
                        payload
                    },
                )
            }
            (None, None) => return Ok(()),
        };
        match rendered {
            Ok(payload) => message.payload = payload,
            Err(error) => {
                message.status = MessageStatus::Blocked;
                message.last_error = Some(error);
            }
        }
        Ok(())
    }
}
