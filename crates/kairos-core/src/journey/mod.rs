//! Journeys' pure logic (docs/journeys.md): what a definition means and
//! what the contact policy decides, as functions of their inputs.
//!
//! - [`policy`]: consent, frequency caps, quiet hours and suppression,
//!   judged over what is known about the person and `now`.
//!
//! What reads the store, follows the log and moves the cursor (the effects
//! stage), and what talks to endpoints (the destination workers), is in
//! kairos-deliver; both call into this module.

pub mod policy;
