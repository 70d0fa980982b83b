//! `kairos train purchase-propensity | uplift | churn`: trains one of the
//! built-in models (kairos-insights) on files, evaluates it, and writes a
//! report directory. The last line printed is the key figures, `name=value`
//! separated by spaces, for scripts.
//!
//! Exit codes: 0 trained, 2 unusable input (missing file, wrong format,
//! bad value), 1 anything else.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use kairos_insights::datasets::DatasetError;

#[derive(clap::Args)]
pub struct TrainArgs {
    #[command(subcommand)]
    model: Model,
}

#[derive(clap::Subcommand)]
enum Model {
    /// Will this session buy? Online Shoppers format (UCI), Revenue = TRUE/FALSE.
    PurchasePropensity {
        /// CSV to train on (every choice is made by cross-validation on it).
        #[arg(long)]
        train: PathBuf,
        /// CSV to evaluate on (only scored).
        #[arg(long)]
        test: PathBuf,
        /// Directory for index.html, metrics.json, model.json, predictions.csv (created).
        #[arg(long)]
        report: PathBuf,
    },
    /// Whom does an e-mail move? Hillstrom format: Womens E-Mail vs No E-Mail, target visit.
    Uplift {
        #[arg(long)]
        train: PathBuf,
        #[arg(long)]
        test: PathBuf,
        #[arg(long)]
        report: PathBuf,
    },
    /// BG/NBD churn model from transactions (`customer_id [id] YYYYMMDD cds dollars`).
    Churn {
        #[arg(long)]
        transactions: PathBuf,
        /// Last day of the calibration period, YYYY-MM-DD.
        #[arg(long)]
        calibration_end: String,
        #[arg(long)]
        report: PathBuf,
    },
}

pub fn run(args: TrainArgs) -> ExitCode {
    let started = Instant::now();
    let mut progress = |line: &str| println!("[{:6.1}s] {line}", started.elapsed().as_secs_f64());
    let result = match &args.model {
        Model::PurchasePropensity {
            train,
            test,
            report,
        } => kairos_insights::train::purchase_propensity(train, test, report, &mut progress)
            .map(|s| format!("auc={:.4} f1={:.4} accuracy={:.4}", s.auc, s.f1, s.accuracy)),
        Model::Uplift {
            train,
            test,
            report,
        } => kairos_insights::train::uplift(train, test, report, &mut progress)
            .map(|s| format!("qini={:.4} uplift_at_30={:.4}", s.qini, s.uplift_at_30)),
        Model::Churn {
            transactions,
            calibration_end,
            report,
        } => kairos_insights::train::churn(transactions, calibration_end, report, &mut progress)
            .map(|s| {
                format!(
                    "r={:.4} alpha={:.4} a={:.4} b={:.4}",
                    s.params.r, s.params.alpha, s.params.a, s.params.b
                )
            }),
    };
    match result {
        Ok(line) => {
            println!(
                "[{:6.1}s] report written to {}",
                started.elapsed().as_secs_f64(),
                report_dir(&args.model).display()
            );
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("kairos train: {error:#}");
            let bad_input = error.downcast_ref::<DatasetError>().is_some()
                || error.to_string().contains("--calibration-end");
            ExitCode::from(if bad_input { 2 } else { 1 })
        }
    }
}

fn report_dir(model: &Model) -> &Path {
    match model {
        Model::PurchasePropensity { report, .. }
        | Model::Uplift { report, .. }
        | Model::Churn { report, .. } => report,
    }
}
