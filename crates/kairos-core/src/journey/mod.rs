//! Journeys' pure logic (docs/journeys.md): what a definition means and
//! what the contact policy decides, as functions of their inputs.
//!
//! - [`definition`]: the JSON a journey is written in, checked and
//!   compiled into a trigger matcher and a flat program of steps;
//! - [`entry`]: who may enter a journey again, and whether what caused
//!   an entry is live behaviour or history;
//! - [`waits`]: what an event does to an abandoned-cart wait ("A not
//!   followed by B within T");
//! - [`unusual`]: whether an event departs from the person's own history
//!   (trigger `"unusual"`), over the history it is given;
//! - [`policy`]: consent, frequency caps, quiet hours, suppression and
//!   the cap on journeys under way, judged over what is known about the
//!   person and `now`;
//! - [`lists`]: the rule for list names (`add_to_list`, suppression).
//!
//! What reads the store, follows the log and moves the cursor (the effects
//! stage), renders templates (minijinja) and talks to endpoints (the
//! delivery loop) is in kairos-deliver; it calls into this module. Nothing
//! here reads a store or a clock: the stage passes in what it read and
//! `now`, so these rules are tested over days of time in microseconds.

pub mod definition;
pub mod entry;
pub mod lists;
pub mod policy;
pub mod unusual;
pub mod waits;
