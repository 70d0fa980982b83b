//! Journeys' pure logic (docs/journeys.md): what a definition means and
//! what the contact policy decides, as functions of their inputs.
//!
//! - [`definition`]: the JSON a journey is written in, checked and
//!   compiled into a trigger matcher and a flat program of steps;
//! - [`unusual`]: whether an event departs from the person's own history
//!   (trigger `"unusual"`), over the history it is given;
//! - [`policy`]: consent, frequency caps, quiet hours and suppression,
//!   judged over what is known about the person and `now`;
//! - [`lists`]: the rule for list names (`add_to_list`, suppression).
//!
//! What reads the store, follows the log and moves the cursor (the effects
//! stage), renders templates (minijinja) and talks to endpoints (the
//! destination workers) is in kairos-deliver; it calls into this module.

pub mod definition;
pub mod lists;
pub mod policy;
pub mod unusual;
