//! Loading and running one model version: Kairos' own models (JSON from
//! `kairos train` or `kairos-insights`) in pure Rust, and ONNX files
//! exported from scikit-learn, XGBoost or LightGBM through ONNX Runtime
//! (`ort`, loaded dynamically from `libonnxruntime.so`, e.g. the PyPI
//! `onnxruntime` wheel's — set `[models] onnxruntime` or `ORT_DYLIB_PATH`).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

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

/// Levels of one tree at most (root to deepest leaf). Scoring walks one
/// path per tree on every event; Kairos trains depth 6, XGBoost defaults
/// to 6 and LightGBM's deepest real trees stay well under this.
pub const GBM_DEPTH_MAX: usize = 64;

/// Nodes of all trees together at most: what a model may hold in memory.
pub const GBM_NODES_MAX: usize = 1_000_000;

/// Nodes one score may visit at most: the sum over trees of each tree's
/// depth. Bounds the work per event (a millisecond or two); a chain of
/// trees sharing one deep path would otherwise cost millions of steps.
pub const GBM_PATH_NODES_MAX: usize = 500_000;

/// Default time one ONNX run may take before it is stopped ([models]
/// score_timeout): a tree ensemble or a linear model scores a row in tens
/// of microseconds, so this is only reached by a model that misbehaves.
pub const SCORE_TIMEOUT_DEFAULT: Duration = Duration::from_millis(100);

/// How long a model that ran over its time is skipped (no score) before
/// it is tried again, so a model that always runs long cannot slow every
/// event of its shard.
pub const MODEL_SUSPENSION: Duration = Duration::from_secs(60);

/// How often the watchdog checks ONNX runs against their deadline.
const WATCHDOG_TICK: Duration = Duration::from_millis(5);

/// Why a model gave no score.
#[derive(Debug, Clone, PartialEq)]
pub enum ScoreError {
    /// The run took longer than the score timeout and was stopped.
    Deadline(Duration),
    /// Skipped: the model ran over its time recently.
    Suspended,
    /// The model was deleted or replaced while scoring.
    Stopped,
    Failed(String),
}

impl ScoreError {
    /// The metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            ScoreError::Deadline(_) => "deadline",
            ScoreError::Suspended => "suspended",
            ScoreError::Stopped => "stopped",
            ScoreError::Failed(_) => "error",
        }
    }
}

impl std::fmt::Display for ScoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScoreError::Deadline(limit) => write!(
                f,
                "scoring took over {} ms ([models] score_timeout) and was stopped",
                limit.as_millis()
            ),
            ScoreError::Suspended => write!(
                f,
                "skipped: the model ran over its time in the last {} s",
                MODEL_SUSPENSION.as_secs()
            ),
            ScoreError::Stopped => write!(f, "the model was deleted or replaced"),
            ScoreError::Failed(message) => write!(f, "{message}"),
        }
    }
}

impl From<String> for ScoreError {
    fn from(message: String) -> ScoreError {
        ScoreError::Failed(message)
    }
}

impl From<&str> for ScoreError {
    fn from(message: &str) -> ScoreError {
        ScoreError::Failed(message.to_string())
    }
}

impl From<ScoreError> for String {
    fn from(error: ScoreError) -> String {
        error.to_string()
    }
}

/// The score timeout in microseconds (set once at start-up).
static SCORE_TIMEOUT_MICROS: AtomicU64 = AtomicU64::new(SCORE_TIMEOUT_DEFAULT.as_micros() as u64);

/// Sets how long one ONNX run may take (`[models] score_timeout`).
pub fn set_score_timeout(timeout: Duration) {
    SCORE_TIMEOUT_MICROS.store(timeout.as_micros().max(1) as u64, Ordering::Relaxed);
}

fn score_timeout() -> Duration {
    Duration::from_micros(SCORE_TIMEOUT_MICROS.load(Ordering::Relaxed))
}

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
    Onnx {
        guard: Arc<RunGuard>,
        model: Mutex<OnnxModel>,
    },
}

/// What stops an ONNX run from outside it: the watchdog at its deadline,
/// or deletion of the model. Kept outside the model's mutex, which the
/// running shard holds.
pub struct RunGuard {
    options: ort::session::RunOptions,
    run: Mutex<RunState>,
    stopped: AtomicBool,
    /// Microseconds since [`epoch`] until which the model is skipped.
    suspended_until: AtomicU64,
}

#[derive(Default)]
struct RunState {
    started: Option<Instant>,
    /// The terminate flag is set (by the watchdog or `stop`).
    terminated: bool,
}

impl RunGuard {
    fn new() -> Result<Arc<RunGuard>, String> {
        let guard = Arc::new(RunGuard {
            options: ort::session::RunOptions::new()
                .map_err(|error| format!("starting ONNX Runtime: {error}"))?,
            run: Mutex::default(),
            stopped: AtomicBool::new(false),
            suspended_until: AtomicU64::new(0),
        });
        watch(&guard);
        Ok(guard)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, RunState> {
        self.run.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Before a run: refuses if stopped or suspended, else marks it started.
    fn begin(&self) -> Result<(), ScoreError> {
        if self.stopped.load(Ordering::Relaxed) {
            return Err(ScoreError::Stopped);
        }
        if micros_since_epoch() < self.suspended_until.load(Ordering::Relaxed) {
            return Err(ScoreError::Suspended);
        }
        let mut state = self.state();
        if state.terminated {
            let _ = self.options.unterminate();
            state.terminated = false;
        }
        state.started = Some(Instant::now());
        Ok(())
    }

    /// After a run: whether it was stopped from outside.
    fn end(&self) -> Option<ScoreError> {
        let mut state = self.state();
        state.started = None;
        if !state.terminated {
            return None;
        }
        if self.stopped.load(Ordering::Relaxed) {
            return Some(ScoreError::Stopped);
        }
        let until = micros_since_epoch() + MODEL_SUSPENSION.as_micros() as u64;
        self.suspended_until.store(until, Ordering::Relaxed);
        Some(ScoreError::Deadline(score_timeout()))
    }

    /// Terminates the run in progress if it is past `timeout`.
    fn check(&self, timeout: Duration) {
        let mut state = self.state();
        if let Some(started) = state.started
            && !state.terminated
            && started.elapsed() > timeout
        {
            tracing::warn!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                "stopping an ONNX run past its deadline ([models] score_timeout)"
            );
            let _ = self.options.terminate();
            state.terminated = true;
        }
    }

    /// The model is gone: its run in progress ends now, later ones refuse.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        let mut state = self.state();
        if state.started.is_some() {
            let _ = self.options.terminate();
            state.terminated = true;
        }
    }
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn micros_since_epoch() -> u64 {
    epoch().elapsed().as_micros() as u64
}

/// The ONNX runs the watchdog thread checks.
static WATCHED: Mutex<Vec<Weak<RunGuard>>> = Mutex::new(Vec::new());

/// Adds a model to the watchdog, starting its thread on first use.
fn watch(guard: &Arc<RunGuard>) {
    static STARTED: OnceLock<()> = OnceLock::new();
    WATCHED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Arc::downgrade(guard));
    STARTED.get_or_init(|| {
        let _ = std::thread::Builder::new()
            .name("kairos-onnx-watchdog".into())
            .spawn(|| {
                loop {
                    std::thread::sleep(WATCHDOG_TICK);
                    let timeout = score_timeout();
                    let mut watched = WATCHED.lock().unwrap_or_else(|e| e.into_inner());
                    watched.retain(|guard| match guard.upgrade() {
                        Some(guard) => {
                            guard.check(timeout);
                            true
                        }
                        None => false,
                    });
                }
            });
    });
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
            "onnx" => Runtime::Onnx {
                model: Mutex::new(OnnxModel::load(model)?),
                guard: RunGuard::new()?,
            },
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

    /// Stops a model that is no longer served: an ONNX run in progress
    /// ends now (the others' work per score is bounded at load).
    pub fn stop(&self) {
        if let Runtime::Onnx { guard, .. } = self {
            guard.stop();
        }
    }

    /// Scores one input vector; pushes one value per output.
    pub fn predict(&self, inputs: &[f64], out: &mut Vec<f64>) -> Result<(), ScoreError> {
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
            Runtime::Onnx { guard, model } => {
                let mut model = model.lock().map_err(|_| "model poisoned")?;
                guard.begin()?;
                let result = model.run(inputs, &guard.options);
                if let Some(stopped) = guard.end() {
                    return Err(stopped);
                }
                out.push(result?);
            }
        }
        Ok(())
    }
}

/// A tree model from outside must be well formed (it is walked on every
/// event) and read as many inputs as the model spec maps.
fn check_trees(model: &Gbm, input_count: usize) -> Result<(), String> {
    model.check()?;
    check_work(model)?;
    if model.feature_count != input_count {
        return Err(format!(
            "the trees read {} features but the spec maps {input_count} inputs",
            model.feature_count
        ));
    }
    Ok(())
}

/// Bounds the work one score does ([`GBM_NODES_MAX`], [`GBM_DEPTH_MAX`],
/// [`GBM_PATH_NODES_MAX`]). Runs after `Gbm::check`, so every child comes
/// after its parent: depths are computed bottom-up in one pass, without
/// recursion, even for a hostile million-node chain.
fn check_work(model: &Gbm) -> Result<(), String> {
    let nodes = model.feature.len();
    if nodes > GBM_NODES_MAX {
        return Err(format!(
            "gbm: {nodes} nodes; at most {GBM_NODES_MAX} (GBM_NODES_MAX)"
        ));
    }
    // Levels from each node down to its deepest leaf.
    let mut depth = vec![1usize; nodes];
    for node in (0..nodes).rev() {
        if model.feature[node] != u32::MAX {
            let (left, right) = (model.left[node] as usize, model.right[node] as usize);
            depth[node] = 1 + depth[left].max(depth[right]);
        }
    }
    let mut path_nodes = 0usize;
    for (tree, &root) in model.tree_roots.iter().enumerate() {
        let levels = depth[root as usize];
        if levels > GBM_DEPTH_MAX {
            return Err(format!(
                "gbm: tree {tree} is {levels} levels deep; at most {GBM_DEPTH_MAX} (GBM_DEPTH_MAX): scoring walks every tree on every event"
            ));
        }
        path_nodes += levels;
    }
    if path_nodes > GBM_PATH_NODES_MAX {
        return Err(format!(
            "gbm: one score would visit up to {path_nodes} nodes ({} trees); at most {GBM_PATH_NODES_MAX} (GBM_PATH_NODES_MAX): use fewer or shallower trees",
            model.tree_roots.len()
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
        crate::onnx_check::refuse_external_data(&bytes)?;
        // One row per run: parallelism comes from the shards, and a pool
        // of intra-op threads per model would only hand work between
        // threads (and spin), making a run's time depend on scheduling.
        let session = ort::session::Session::builder(&environment)
            .and_then(|builder| builder.with_intra_threads(1).map_err(Into::into))
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
    fn run(&mut self, inputs: &[f64], options: &ort::session::RunOptions) -> Result<f64, String> {
        let row: Vec<f32> = inputs.iter().map(|value| *value as f32).collect();
        let tensor = ort::value::Tensor::from_array(([1usize, row.len()], row))
            .map_err(|error| error.to_string())?;
        let class = self.class;
        let outputs = self
            .session
            .run_with_options(ort::inputs![self.input.as_str() => tensor], options)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `trees` trees sharing one chain `depth` splits deep.
    fn chain(depth: usize, trees: usize) -> Gbm {
        let leaf = depth as u32;
        Gbm {
            feature_count: 1,
            base_margin: 0.0,
            tree_roots: vec![0; trees],
            feature: [vec![0; depth], vec![u32::MAX]].concat(),
            threshold: vec![0.5; depth + 1],
            left: (1..=depth as u32).chain([0]).collect(),
            right: [vec![leaf; depth], vec![0]].concat(),
            missing_left: vec![true; depth + 1],
            value: vec![0.1; depth + 1],
        }
    }

    #[test]
    fn tree_work_is_bounded_at_load() {
        assert_eq!(check_trees(&chain(6, 100), 1), Ok(()));
        let deep = check_trees(&chain(GBM_DEPTH_MAX, 1), 1).unwrap_err();
        assert!(deep.contains("GBM_DEPTH_MAX"), "{deep}");
        // Shallow enough, but many trees walking the same path.
        let trees = GBM_PATH_NODES_MAX / 40 + 1;
        let wide = check_trees(&chain(39, trees), 1).unwrap_err();
        assert!(wide.contains("GBM_PATH_NODES_MAX"), "{wide}");
    }
}
