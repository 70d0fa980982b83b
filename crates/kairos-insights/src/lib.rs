//! Models Kairos trains itself, on its own data, without a Python stack.
//!
//! Three questions a marketer asks about a profile, each answered by a model
//! trained here, serialized as JSON and served by pure functions cheap
//! enough to evaluate on every event:
//!
//! - *Will this session buy?* — [`propensity`]: gradient-boosted trees
//!   ([`gbm`]) on session behaviour, with the decision threshold chosen by
//!   cross-validation on the training data only;
//! - *Whom does a campaign actually move?* — [`uplift`]: treatment-effect
//!   models (two-model and class-transformation learners on [`gbm`] and
//!   [`logistic`]) that separate persuadables from sure things;
//! - *Is this customer still with us?* — [`bgnbd`]: the BG/NBD model of
//!   repeat buying, with P(alive) and expected purchases per profile.
//!
//! And one question about a decision policy before it goes live: *what
//! would it earn?* — [`ope`]: off-policy evaluation (direct method, IPW,
//! self-normalized IPW, doubly robust and two tuned variants) from another
//! policy's logged decisions, replayed on the Open Bandit Dataset by
//! [`policy_eval`] for `kairos evaluate-policy`.
//!
//! [`datasets`] reads the training formats, [`metrics`] scores models the
//! way scikit-learn and scikit-uplift do (so figures compare with published
//! ones), [`report`] writes a self-contained HTML report and [`train`] ties
//! each pipeline together for the `kairos train` command.
//!
//! ```
//! use kairos_insights::bgnbd::{BgNbdParams, probability_alive};
//! let params = BgNbdParams { r: 0.2426, alpha: 4.4135, a: 0.7929, b: 2.4258 };
//! // Five repeat purchases, the last one a week ago: very likely still a customer.
//! assert!(probability_alive(&params, 5.0, 38.0, 39.0) > 0.8);
//! ```

pub mod bgnbd;
pub mod datasets;
pub mod experiments;
pub mod gbm;
pub mod logistic;
pub mod metrics;
pub mod ope;
pub mod policy_eval;
pub mod propensity;
pub mod report;
pub mod rng;
mod svg;
pub mod train;
pub mod uplift;
