//! `kairos experiment-stats`: the experiments' statistics
//! (`kairos_insights::experiments`, the same code behind `GET
//! /v1/experiments/{id}/results`) on counts given as JSON, one request per
//! stdin line, one answer per stdout line — so a script can check them on
//! thousands of simulated experiments in one process.
//!
//! A line is either an analysis, `{"control": "a", "alpha": 0.05, "arms":
//! [{"name": "a", "exposures": 1000, "conversions": 100}, …]}` (arms may add
//! `sum`, `sum_sq` for a continuous metric and `covariate` {`sum_x`,
//! `sum_x2`, `sum_xy`} for CUPED; `draws`, 0 to skip the Thompson
//! probabilities), answered `{"arms": [...]}`; or an
//! allocation, `{"allocate": {"counts": [[conversions, exposures], …],
//! "people": 100, "seed": 1}}`, answered `{"arms": [index per person]}` (Thompson
//! sampling, person `i` drawn with seed `seed + i`).
//!
//! Exit codes: 0 every line answered, 2 a line that is not a valid request
//! (its line number and what is wrong on stderr).

use std::io::{BufRead, Write};
use std::process::ExitCode;

use kairos_insights::experiments::{ArmData, analyze_with, thompson_choice};
use serde::Deserialize;
use serde_json::json;

/// The most people one allocation line may ask for: bounds its answer.
const PEOPLE_MAX: usize = 1_000_000;
/// The most posterior draws one analysis may ask for (time).
const DRAWS_MAX: usize = 1_000_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Analysis {
    control: String,
    #[serde(default = "default_alpha")]
    alpha: f64,
    arms: Vec<ArmData>,
    /// Posterior draws for `probability_best` (0: leave it out).
    #[serde(default = "default_draws")]
    draws: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Allocation {
    counts: Vec<(u64, u64)>,
    people: usize,
    #[serde(default)]
    seed: u64,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Request {
    Allocate { allocate: Allocation },
    Analyze(Analysis),
}

fn default_alpha() -> f64 {
    0.05
}

fn default_draws() -> usize {
    kairos_insights::experiments::THOMPSON_DRAWS
}

pub fn run() -> ExitCode {
    let stdin = std::io::stdin();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (number, line) in stdin.lock().lines().enumerate() {
        let line = match line {
            Ok(line) => line,
            Err(error) => {
                eprintln!("kairos experiment-stats: stdin: {error}");
                return ExitCode::FAILURE;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        match answer(&line) {
            Ok(answer) => {
                let written = writeln!(out, "{answer}").and_then(|()| out.flush());
                if written.is_err() {
                    return ExitCode::FAILURE; // the reader went away
                }
            }
            Err(problem) => {
                eprintln!("kairos experiment-stats: line {}: {problem}", number + 1);
                return ExitCode::from(2);
            }
        }
    }
    ExitCode::SUCCESS
}

fn answer(line: &str) -> Result<serde_json::Value, String> {
    let request: Request = serde_json::from_str(line).map_err(|error| {
        format!(
            "{error}; expected {{\"control\": \"a\", \"arms\": [{{\"name\": \"a\", \"exposures\": 1000, \"conversions\": 100}}]}} \
             or {{\"allocate\": {{\"counts\": [[10, 100]], \"people\": 10}}}}"
        )
    })?;
    match request {
        Request::Analyze(analysis) => {
            if analysis.draws > DRAWS_MAX {
                return Err(format!("draws: at most {DRAWS_MAX}"));
            }
            let arms = analyze_with(
                &analysis.arms,
                &analysis.control,
                analysis.alpha,
                analysis.draws,
            )
            .map_err(|error| error.to_string())?;
            Ok(json!({ "arms": arms }))
        }
        Request::Allocate { allocate } => {
            if allocate.counts.is_empty() || allocate.people > PEOPLE_MAX {
                return Err(format!(
                    "allocate: expected at least one arm's counts and at most {PEOPLE_MAX} people"
                ));
            }
            let arms: Vec<usize> = (0..allocate.people)
                .map(|person| thompson_choice(&allocate.counts, allocate.seed + person as u64))
                .collect();
            Ok(json!({ "arms": arms }))
        }
    }
}
