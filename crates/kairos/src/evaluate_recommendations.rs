//! `kairos evaluate-recommendations --train FILE --test FILE`: offline
//! next-item evaluation of the shipped session recommender
//! (`kairos_recommend::evaluate`). Stdout has exactly one line, for
//! scripts: `hitrate@20=<v> mrr@20=<v> p50_us=<v> p99_us=<v>`; the counts
//! go to stderr.
//!
//! Exit codes: 0 evaluated, 2 unusable input (a file, a line, a value).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(clap::Args)]
pub struct EvaluateRecommendationsArgs {
    /// Clicks to learn from (SessionId, ItemId, Time; tab separated, header).
    #[arg(long, value_name = "FILE")]
    train: PathBuf,
    /// Later sessions whose every next click is predicted from its prefix.
    #[arg(long, value_name = "FILE")]
    test: PathBuf,
}

pub fn run(args: EvaluateRecommendationsArgs) -> ExitCode {
    let started = Instant::now();
    match kairos_recommend::evaluate::evaluate_shipped(&args.train, &args.test) {
        Ok(report) => {
            eprintln!(
                "{} predictions, {:.1}s",
                report.predictions,
                started.elapsed().as_secs_f64()
            );
            println!("{}", report.line());
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("kairos evaluate-recommendations: {message}");
            ExitCode::from(2)
        }
    }
}
