//! `kairos evaluate-policy --logs DIR --target DIR`: off-policy evaluation
//! on Open Bandit Dataset folders (kairos-insights' `policy_eval`). Stdout
//! has exactly one line per estimator, for scripts:
//! `estimator=<name> estimate=<v> truth=<v> relative_error=<v>`; what the
//! figures were computed from goes to stderr.
//!
//! Exit codes: 0 evaluated, 2 unusable input (folder, file, column, value,
//! or two folders that do not go together), 1 anything else.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use kairos_insights::datasets::load_open_bandit;
use kairos_insights::policy_eval::evaluate_policy;

#[derive(clap::Args)]
pub struct EvaluatePolicyArgs {
    /// Folder of the logging policy's files: the estimates use only these.
    #[arg(long, value_name = "DIR")]
    logs: PathBuf,
    /// Folder of the target policy's files: its item frequencies define the
    /// policy, its click rate is the truth compared against.
    #[arg(long, value_name = "DIR")]
    target: PathBuf,
    /// Bootstrap runs (each resamples the logs and refits the reward model).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    runs: u32,
    /// Seed of the resampling: the same seed gives the same figures.
    #[arg(long, default_value_t = 12_345)]
    seed: u64,
}

pub fn run(args: EvaluatePolicyArgs) -> ExitCode {
    let started = Instant::now();
    let loaded = load_open_bandit(&args.logs)
        .map_err(|e| format!("--logs {e}"))
        .and_then(|logs| {
            load_open_bandit(&args.target)
                .map(|target| (logs, target))
                .map_err(|e| format!("--target {e}"))
        });
    let (logs, target) = match loaded {
        Ok(pair) => pair,
        Err(message) => return fail(&message),
    };
    let evaluation = match evaluate_policy(&logs, &target, args.runs as usize, args.seed) {
        Ok(evaluation) => evaluation,
        Err(message) => return fail(&message),
    };
    eprintln!(
        "logs: {} impressions, {} clicks; target: {} impressions, {} clicks; \
         reward model penalty {} (cross-validated); {} runs, seed {}, {:.1}s",
        logs.impressions.len(),
        evaluation.logged_clicks,
        target.impressions.len(),
        evaluation.target_clicks,
        evaluation.penalty,
        args.runs,
        args.seed,
        started.elapsed().as_secs_f64()
    );
    for s in &evaluation.summaries {
        eprintln!(
            "  {:<9} 95% of runs in [{:.6}, {:.6}]",
            s.estimator.name(),
            s.low,
            s.high
        );
    }
    for s in &evaluation.summaries {
        println!(
            "estimator={} estimate={:.6} truth={:.6} relative_error={:.4}",
            s.estimator.name(),
            s.estimate,
            s.truth,
            s.relative_error
        );
    }
    ExitCode::SUCCESS
}

fn fail(message: &str) -> ExitCode {
    eprintln!("kairos evaluate-policy: {message}");
    ExitCode::from(2)
}
