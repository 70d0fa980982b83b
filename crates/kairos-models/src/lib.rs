//! Model scores in the stream (docs/models.md): features kept per profile
//! ([`features`]), model versions loaded for serving ([`runtime`]), and
//! [`ModelSet`], what the engine's shards run on every event of a person —
//! before audiences read the scores, so `score purchase_propensity > 0.7`
//! sees the score that this very event produced.
//!
//! A model version is `active` (its scores are the profile's `scores`,
//! read by audiences, journeys and decisions), `shadow` (scored and shown
//! under `shadow_scores`, acted on by nothing: to compare before
//! promoting) or `retired`.
//!
//! [`training`] builds training rows from stored history through the same
//! feature code, so a model trained on them reads what serving computes.

pub mod features;
pub mod metrics;
mod onnx_check;
pub mod runtime;
pub mod training;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use features::{CATALOG, Feature, FeatureState};
pub use onnx_check::ONNX_NESTING_MAX;
pub use runtime::{Runtime, ScoreError, init_onnx, set_score_timeout};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Active,
    Shadow,
    Retired,
}

/// A stored model version, as the registry keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    pub name: String,
    pub version: u32,
    pub format: String,
    /// Feature names, in the model's input order.
    pub inputs: Vec<String>,
    pub mode: Mode,
    pub created_at: jiff::Timestamp,
    /// Kairos' JSON, or the ONNX file in base64.
    pub model: Value,
}

impl ModelSpec {
    /// The scores this version puts on profiles (what `score …` reads),
    /// known from its format without loading it; the same names as
    /// [`Runtime::outputs`].
    pub fn outputs(&self) -> Vec<String> {
        let name = &self.name;
        match self.format.as_str() {
            "uplift" => vec![name.clone(), format!("{name}_baseline")],
            "bgnbd" => vec![name.clone(), format!("{name}_expected")],
            _ => vec![name.clone()],
        }
    }
}

/// One loaded version.
pub struct LoadedModel {
    pub name: String,
    pub version: u32,
    pub mode: Mode,
    features: Vec<Feature>,
    runtime: Runtime,
    outputs: Vec<String>,
}

impl LoadedModel {
    /// Checks and loads a version; errors say what is wrong.
    pub fn load(spec: &ModelSpec) -> Result<LoadedModel, String> {
        if spec.inputs.is_empty() {
            return Err(
                "inputs: a model reads at least one feature, e.g. [\"session.product_views\"]"
                    .into(),
            );
        }
        let features = spec
            .inputs
            .iter()
            .map(|name| Feature::parse(name))
            .collect::<Result<Vec<_>, _>>()?;
        let runtime = Runtime::load(&spec.format, &spec.model, features.len())?;
        // A structurally broken model (a tree pointing outside itself) must
        // be refused here, not panic a shard later.
        let probe = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut out = Vec::new();
            for value in [0.0, 1.0, -1.0, f64::NAN, 1e9] {
                runtime
                    .predict(&vec![value; features.len()], &mut out)
                    .map_err(|error| format!("model: scoring a probe row: {error}"))?;
            }
            Ok::<(), String>(())
        }));
        match probe {
            Ok(result) => result?,
            Err(_) => {
                return Err(
                    "model: malformed (scoring a probe row failed); export it again".into(),
                );
            }
        }
        let outputs = runtime.outputs(&spec.name);
        Ok(LoadedModel {
            name: spec.name.clone(),
            version: spec.version,
            mode: spec.mode,
            features,
            runtime,
            outputs,
        })
    }

    /// Scores an explicit input row (the parity check, `POST
    /// /v1/models/{name}/score`).
    pub fn score_row(&self, row: &[f64]) -> Result<Vec<(String, f64)>, String> {
        if row.len() != self.features.len() {
            return Err(format!(
                "a row of {} numbers was given; the model reads {} inputs",
                row.len(),
                self.features.len()
            ));
        }
        let mut values = Vec::with_capacity(self.outputs.len());
        self.runtime.predict(row, &mut values)?;
        Ok(self.outputs.iter().cloned().zip(values).collect())
    }
}

/// Scores of a person now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    pub active: BTreeMap<String, f64>,
    pub shadow: BTreeMap<String, f64>,
}

/// The model versions being served.
#[derive(Default)]
pub struct ModelSet {
    models: Vec<LoadedModel>,
}

impl ModelSet {
    /// Loads every active and shadow version (retired ones are skipped);
    /// a version that no longer loads is reported, not served.
    pub fn load(specs: &[ModelSpec]) -> (ModelSet, Vec<String>) {
        let mut problems = Vec::new();
        let models = specs
            .iter()
            .filter(|spec| spec.mode != Mode::Retired)
            .filter_map(|spec| match LoadedModel::load(spec) {
                Ok(model) => Some(model),
                Err(error) => {
                    problems.push(format!("model {} v{}: {error}", spec.name, spec.version));
                    None
                }
            })
            .collect();
        (ModelSet { models }, problems)
    }

    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// Stops the versions that `next` no longer serves (deleted, retired),
    /// ending a run of theirs in progress: a shard scoring with this set
    /// must not stay inside a model that is gone.
    pub fn stop_removed(&self, next: &ModelSet) {
        for model in &self.models {
            let kept = next
                .models
                .iter()
                .any(|other| other.name == model.name && other.version == model.version);
            if !kept {
                model.runtime.stop();
            }
        }
    }

    /// Whether a model reads a feature that time alone changes
    /// ([`features::TIME_FEATURES`]).
    pub fn reads_time(&self) -> bool {
        self.models.iter().any(|model| {
            model.features.iter().any(|feature| {
                matches!(feature, Feature::Builtin(position)
                    if features::TIME_FEATURES.contains(&CATALOG[*position].0))
            })
        })
    }

    /// Whether a model reads `trait.*` inputs.
    pub fn reads_traits(&self) -> bool {
        self.models.iter().any(|model| {
            model
                .features
                .iter()
                .any(|feature| matches!(feature, Feature::Trait(_)))
        })
    }

    /// Whether a model reads `computed.*` inputs.
    pub fn reads_computed(&self) -> bool {
        self.models.iter().any(|model| {
            model
                .features
                .iter()
                .any(|feature| matches!(feature, Feature::Computed(_)))
        })
    }

    /// The versions served: (name, version, mode).
    pub fn served(&self) -> Vec<(String, u32, Mode)> {
        self.models
            .iter()
            .map(|model| (model.name.clone(), model.version, model.mode))
            .collect()
    }

    /// Every model's outputs for the person now; NaN (not enough to say,
    /// such as P(alive) before any order) is left out.
    pub fn score(
        &self,
        state: &FeatureState,
        traits: &Map<String, Value>,
        computed: &Map<String, Value>,
    ) -> Scores {
        let mut scores = Scores::default();
        let mut row = Vec::new();
        let mut values = Vec::new();
        for model in &self.models {
            row.clear();
            row.extend(
                model
                    .features
                    .iter()
                    .map(|feature| state.value(feature, traits, computed)),
            );
            values.clear();
            let started = std::time::Instant::now();
            let result = model.runtime.predict(&row, &mut values);
            metrics::scored(&model.name, started.elapsed(), result.as_ref().err());
            if let Err(error) = result {
                if !matches!(error, ScoreError::Suspended | ScoreError::Stopped) {
                    tracing::warn!(model = %model.name, version = model.version, %error, "no score");
                }
                continue;
            }
            let target = if model.mode == Mode::Active {
                &mut scores.active
            } else {
                &mut scores.shadow
            };
            for (name, value) in model.outputs.iter().zip(&values) {
                if value.is_finite() {
                    target.insert(name.clone(), *value);
                }
            }
        }
        scores
    }
}

#[cfg(test)]
mod spec_tests {
    use super::*;
    use serde_json::json;

    fn spec(name: &str, format: &str, model: Value, inputs: &[&str]) -> ModelSpec {
        ModelSpec {
            name: name.into(),
            version: 1,
            format: format.into(),
            inputs: inputs.iter().map(|input| input.to_string()).collect(),
            mode: Mode::Active,
            created_at: jiff::Timestamp::UNIX_EPOCH,
            model,
        }
    }

    /// What references are checked against (without loading) is what a
    /// loaded model scores.
    #[test]
    fn a_specs_outputs_are_the_loaded_models() {
        let logistic = json!({"means": [0.0], "scales": [1.0], "intercept": 0.0, "weights": [0.0]});
        let bgnbd = json!({"r": 0.24, "alpha": 4.4, "a": 0.79, "b": 2.4});
        for spec in [
            spec("buy", "logistic", logistic, &["session.product_views"]),
            spec(
                "churn",
                "bgnbd",
                bgnbd,
                &[
                    "profile.repeat_order_days",
                    "profile.order_recency_weeks",
                    "profile.order_age_weeks",
                ],
            ),
        ] {
            let loaded = LoadedModel::load(&spec).unwrap();
            assert_eq!(spec.outputs(), loaded.outputs, "{}", spec.format);
        }
    }
}
