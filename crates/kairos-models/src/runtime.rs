//! Loading and running one model version: Kairos' own models (JSON from
//! `kairos train` or `kairos-insights`) in pure Rust, and ONNX files
//! exported from scikit-learn, XGBoost or LightGBM through ONNX Runtime
//! (`ort`, loaded dynamically from `libonnxruntime.so`, e.g. the PyPI
//! `onnxruntime` wheel's — set `[models] onnxruntime` or `ORT_DYLIB_PATH`).

use std::path::Path;
use std::sync::{Mutex, OnceLock};

use base64::Engine as _;
use kairos_insights::bgnbd::{BgNbdParams, expected_purchases, probability_alive};
use kairos_insights::gbm::Gbm;
use kairos_insights::logistic::Logistic;
use kairos_insights::propensity::PropensityModel;
use kairos_insights::uplift::{Scorer, UpliftModel};
use serde::Deserialize;
use serde_json::Value;

/// Bytes of an uploaded model at most.
pub const MODEL_BYTES_MAX: usize = 32 * 1024 * 1024;

/// A loaded model: inputs (a feature vector) → one or more named outputs.
pub enum Runtime {
    Gbm(Gbm),
    Logistic(Logistic),
    Propensity(PropensityModel),
    /// Outputs `<name>` (the uplift) and `<name>_baseline`.
    Uplift(UpliftModel),
    /// Inputs: repeat order days, recency weeks, age weeks; outputs
    /// `<name>` = P(alive) and `<name>_expected` = purchases expected in
    /// the horizon.
    BgNbd {
        params: BgNbdParams,
        horizon_weeks: f64,
    },
    Onnx(Mutex<OnnxModel>),
}

pub struct OnnxModel {
    session: ort::session::Session,
    input: String,
    /// Which class's probability is the score.
    class: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BgNbdSpec {
    r: f64,
    alpha: f64,
    a: f64,
    b: f64,
    #[serde(default = "default_horizon")]
    horizon_weeks: f64,
}

fn default_horizon() -> f64 {
    13.0
}

/// Where ONNX Runtime was loaded from, once per process.
static ONNX_RUNTIME: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();

/// Loads ONNX Runtime from `library` (or `ORT_DYLIB_PATH`); later calls
/// return the first result.
pub fn init_onnx(library: Option<&Path>) -> Result<(), String> {
    environment(library).map(|_| ())
}

fn environment(library: Option<&Path>) -> Result<ort::environment::Environment, String> {
    ONNX_RUNTIME
        .get_or_init(|| {
            let path = library
                .map(Path::to_path_buf)
                .or_else(|| std::env::var_os("ORT_DYLIB_PATH").map(Into::into))
                .ok_or_else(|| {
                    "ONNX models need the ONNX Runtime library: set [models] onnxruntime (or ORT_DYLIB_PATH) to libonnxruntime.so, e.g. from the PyPI onnxruntime wheel (onnxruntime/capi/)".to_string()
                })?;
            if !path.exists() {
                return Err(format!("ONNX Runtime library {} does not exist", path.display()));
            }
            ort::init_from(&path)
                .map_err(|error| format!("loading ONNX Runtime from {}: {error}", path.display()))?
                .with_name("kairos")
                .build()
                .map_err(|error| format!("starting ONNX Runtime: {error}"))
        })
        .clone()
}

impl Runtime {
    /// Loads a model of `format` ("onnx": base64 of the file; "gbm",
    /// "logistic", "propensity", "uplift", "bgnbd": Kairos' JSON).
    pub fn load(format: &str, model: &Value, input_count: usize) -> Result<Runtime, String> {
        let json = |what: &str| -> Result<Value, String> {
            match model {
                Value::Object(_) => Ok(model.clone()),
                Value::String(text) => serde_json::from_str(text)
                    .map_err(|error| format!("model: not {what} JSON: {error}")),
                _ => Err(format!("model: expected the {what} model as JSON")),
            }
        };
        let runtime = match format {
            "gbm" => {
                let model: Gbm = parse(json("gbm")?, "gbm")?;
                check_trees(&model, input_count)?;
                Runtime::Gbm(model)
            }
            "logistic" => Runtime::Logistic(parse(json("logistic")?, "logistic")?),
            "propensity" => {
                let model: PropensityModel = parse(json("propensity")?, "propensity")?;
                check_trees(&model.gbm, input_count)?;
                Runtime::Propensity(model)
            }
            "uplift" => {
                let model: UpliftModel = parse(json("uplift")?, "uplift")?;
                for scorer in [&model.control, &model.treated_or_transformed] {
                    if let Scorer::Gbm(trees) = scorer {
                        check_trees(trees, input_count + model.approach.extra_inputs())?;
                    }
                }
                Runtime::Uplift(model)
            }
            "bgnbd" => {
                let spec: BgNbdSpec = parse(json("bgnbd")?, "bgnbd")?;
                if input_count != 3 {
                    return Err("a bgnbd model reads 3 inputs: profile.repeat_order_days, profile.order_recency_weeks, profile.order_age_weeks".into());
                }
                Runtime::BgNbd {
                    params: BgNbdParams {
                        r: spec.r,
                        alpha: spec.alpha,
                        a: spec.a,
                        b: spec.b,
                    },
                    horizon_weeks: spec.horizon_weeks,
                }
            }
            "onnx" => Runtime::Onnx(Mutex::new(OnnxModel::load(model)?)),
            other => {
                return Err(format!(
                    "format {other:?}: expected \"onnx\", \"gbm\", \"logistic\", \"propensity\", \"uplift\" or \"bgnbd\""
                ));
            }
        };
        Ok(runtime)
    }

    /// The names of its outputs, given the model's name.
    pub fn outputs(&self, name: &str) -> Vec<String> {
        match self {
            Runtime::Uplift(_) => vec![name.to_string(), format!("{name}_baseline")],
            Runtime::BgNbd { .. } => vec![name.to_string(), format!("{name}_expected")],
            _ => vec![name.to_string()],
        }
    }

    /// Scores one input vector; pushes one value per output.
    pub fn predict(&self, inputs: &[f64], out: &mut Vec<f64>) -> Result<(), String> {
        match self {
            Runtime::Gbm(model) => out.push(model.predict_proba(inputs)),
            Runtime::Logistic(model) => out.push(model.predict_proba(inputs)),
            Runtime::Propensity(model) => out.push(model.probability(inputs)),
            Runtime::Uplift(model) => {
                let prediction = model.predict(inputs);
                out.push(prediction.uplift);
                out.push(prediction.baseline);
            }
            Runtime::BgNbd {
                params,
                horizon_weeks,
            } => {
                let (frequency, recency, age) = (inputs[0], inputs[1], inputs[2]);
                if age <= 0.0 && frequency == 0.0 {
                    // Not a customer yet (no order): nothing to say.
                    out.push(f64::NAN);
                    out.push(f64::NAN);
                } else {
                    out.push(probability_alive(params, frequency, recency, age));
                    out.push(expected_purchases(
                        params,
                        *horizon_weeks,
                        frequency,
                        recency,
                        age,
                    ));
                }
            }
            Runtime::Onnx(model) => {
                out.push(model.lock().map_err(|_| "model poisoned")?.run(inputs)?)
            }
        }
        Ok(())
    }
}

/// A tree model from outside must be well formed (it is walked on every
/// event) and read as many inputs as the model spec maps.
fn check_trees(model: &Gbm, input_count: usize) -> Result<(), String> {
    model.check()?;
    if model.feature_count != input_count {
        return Err(format!(
            "the trees read {} features but the spec maps {input_count} inputs",
            model.feature_count
        ));
    }
    Ok(())
}

fn parse<T: for<'de> Deserialize<'de>>(value: Value, what: &str) -> Result<T, String> {
    serde_json::from_value(value).map_err(|error| format!("model: not a {what} model: {error}"))
}

impl OnnxModel {
    fn load(model: &Value) -> Result<OnnxModel, String> {
        let environment = environment(None)?;
        let text = model
            .as_str()
            .ok_or("model: an ONNX model is the file's bytes in base64 (a JSON string)")?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|error| format!("model: not base64: {error}"))?;
        if bytes.len() > MODEL_BYTES_MAX {
            return Err(format!("model: larger than {MODEL_BYTES_MAX} bytes"));
        }
        let session = ort::session::Session::builder(&environment)
            .and_then(|mut builder| builder.commit_from_memory(&bytes))
            .map_err(|error| format!("model: ONNX Runtime cannot load it: {error}"))?;
        let input = session
            .inputs()
            .first()
            .map(|input| input.name().to_string())
            .ok_or("model: the ONNX graph has no input")?;
        Ok(OnnxModel {
            session,
            input,
            class: 1,
        })
    }

    /// One row through the graph: the probability of class 1 from a
    /// probabilities tensor or a scikit-learn ZipMap, else the first output.
    fn run(&mut self, inputs: &[f64]) -> Result<f64, String> {
        let row: Vec<f32> = inputs.iter().map(|value| *value as f32).collect();
        let tensor = ort::value::Tensor::from_array(([1usize, row.len()], row))
            .map_err(|error| error.to_string())?;
        let class = self.class;
        let outputs = self
            .session
            .run(ort::inputs![self.input.as_str() => tensor])
            .map_err(|error| format!("scoring: {error}"))?;
        let mut first = None;
        for (name, value) in outputs.iter() {
            if let Ok(maps) = value.try_extract_sequence::<ort::value::DynMapValueType>() {
                if let Some(map) = maps.first()
                    && let Ok(map) = map.try_extract_map::<i64, f32>()
                    && let Some(probability) = map.get(&(class as i64))
                {
                    return Ok(f64::from(*probability));
                }
                continue;
            }
            if let Ok((shape, data)) = value.try_extract_tensor::<f32>() {
                let columns = shape.last().copied().unwrap_or(1).max(1) as usize;
                if name.contains("prob") && columns > class {
                    return Ok(f64::from(data[class]));
                }
                first.get_or_insert(f64::from(*data.first().unwrap_or(&f32::NAN)));
            }
        }
        first.ok_or_else(|| "scoring: the ONNX graph gave no float output".to_string())
    }
}
