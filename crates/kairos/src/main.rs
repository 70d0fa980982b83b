//! `kairos`: the one binary. `serve` runs the server; the other commands are
//! clients of a running server's HTTP API (one process owns a data directory).

mod client;
mod config;
mod configured_offers;
mod demo;
mod evaluate_policy;
mod evaluate_recommendations;
mod experiment_stats;
mod import;
mod import_items;
mod match_eval;
mod serve;
mod train;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "kairos",
    version,
    about = "Kairos: a real-time customer engagement hub"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Print every accepted event as it is committed (one JSON per line).
    Tail {
        #[command(flatten)]
        server: client::ServerArgs,
        /// Only events of this source id.
        #[arg(long)]
        source: Option<String>,
    },
    /// Send NDJSON or CSV files of events through the collection API.
    Import(import::ImportArgs),
    /// Evaluate the probabilistic matcher on two FEBRL-style CSV files.
    MatchEval(match_eval::MatchEvalArgs),
    /// Train a built-in model on files and write a report (see `kairos train --help`).
    Train(train::TrainArgs),
    /// Estimate a policy's click rate from another policy's logs (off-policy evaluation).
    ///
    /// Estimates the click rate of the policy that produced the --target logs from
    /// the --logs of another policy, with six estimators (dm, ipw, snipw, dr, dr-os,
    /// switch-dr), and compares with the click rate the target logs observed.
    ///
    /// Each folder holds Open Bandit Dataset files: one log CSV of any name (columns
    /// item_id, position, click, propensity_score, user_feature_*,
    /// user-item_affinity_*) and item_context.csv. The target policy is taken as
    /// context-free: its probability of each item in each position is the target
    /// logs' frequency. Each run resamples the logs with replacement; the estimate
    /// is the mean over runs, relative_error the mean over runs of
    /// |estimate - truth| / truth. Output: one line per estimator,
    /// `estimator=<name> estimate=<v> truth=<v> relative_error=<v>`.
    ///
    /// Example: kairos evaluate-policy --logs open_bandit/random/men --target open_bandit/bts/men
    EvaluatePolicy(evaluate_policy::EvaluatePolicyArgs),
    /// Evaluate the shipped recommender's next-item predictions offline.
    ///
    /// Trains on --train (YOOCHOOSE format: a header, then SessionId, ItemId,
    /// Time in epoch seconds, tab separated), predicts every next click of every
    /// --test session from its prefix, and prints
    /// `hitrate@20=<v> mrr@20=<v> p50_us=<v> p99_us=<v>`.
    ///
    /// Example: kairos evaluate-recommendations --train yoochoose-clicks-100k_train_full.txt --test yoochoose-clicks-100k_test.txt
    EvaluateRecommendations(evaluate_recommendations::EvaluateRecommendationsArgs),
    /// An experiment's statistics from arms' counts, one JSON request per stdin line.
    ///
    /// Each line: {"control": "a", "alpha": 0.05, "arms": [{"name": "a",
    /// "exposures": 1000, "conversions": 100}, ...]} (arms may add "sum" and
    /// "sum_sq" for a continuous metric, "covariate": {"sum_x", "sum_x2",
    /// "sum_xy"} for CUPED); answered with one JSON line, the per-arm results
    /// GET /v1/experiments/{id}/results shows. Or {"allocate": {"counts":
    /// [[conversions, exposures], ...], "people": N, "seed": S}}: the arm
    /// Thompson sampling gives each of N new people.
    ExperimentStats,
    /// Off-policy evaluation of an incentive offer's uplift policy on its logged decisions.
    ///
    /// Asks the running server (POST /v1/offers/{offer}/evaluate) to estimate, from the
    /// offer's randomized decisions, the net value per decision of giving the incentive
    /// only where the uplift model's score × value exceeds the cost, against giving it to
    /// everyone and to no one. Prints one line per estimator: `estimator=<name>
    /// policy=<v> low=<v> high=<v> give_to_all=<v> give_to_none=<v> give_rate=<v>`.
    ///
    /// Example: kairos evaluate-offer "ten off" --uplift-score uplift_ten
    EvaluateOffer {
        #[command(flatten)]
        server: client::ServerArgs,
        /// The incentive offer (name or id).
        offer: String,
        /// The uplift model whose score the policy reads.
        #[arg(long)]
        uplift_score: String,
    },
    /// Create, list and rotate sources and their write keys.
    Sources {
        #[command(flatten)]
        server: client::ServerArgs,
        #[command(subcommand)]
        action: client::SourcesAction,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// TOML configuration file (see docs/configuration.md).
    #[arg(long, env = "KAIROS_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long)]
    listen: Option<String>,
    /// Data directory [default: ./kairos-data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Do not create the demo source and events on first start.
    #[arg(long)]
    no_demo: bool,
    /// Enable POST /v1/admin/test/faults (forced failures for retry tests).
    #[arg(long)]
    test_faults: bool,
    /// UNSAFE: acknowledge events before they are fsynced. A power cut or
    /// kernel crash can then lose acknowledged events (a process crash cannot).
    #[arg(long)]
    unsafe_no_fsync: bool,
    /// Log format: text or json.
    #[arg(long)]
    log_format: Option<String>,
    /// The engine's clock: `system`, or `manual` (starts at the Unix epoch;
    /// set "now" with POST /v1/admin/clock; for tests and replaying history).
    #[arg(long)]
    clock: Option<String>,
}

/// The server's file-creation mask: owner-only. Kairos' files (through
/// fjall) hold events, keys and tokens; the data directory is closed too
/// (`kairos_store::DATA_DIR_MODE`), this is defence in depth for anything
/// a dependency creates. The client commands keep the user's umask (their
/// reports are the user's to share).
const SERVE_UMASK: libc::mode_t = 0o077;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Every command's HTTP client (the client commands' too) runs on
    // rustls with ring: install it before any client is built.
    kairos_deliver::tls::install_crypto_provider();
    let result = match cli.command {
        Command::Serve(args) => {
            // SAFETY: umask only sets the process's file-creation mask; it
            // runs before any thread is started.
            unsafe {
                libc::umask(SERVE_UMASK);
            }
            let flags = config::FlagConfig {
                config_file: args.config,
                listen: args.listen,
                data_dir: args.data_dir,
                no_demo: args.no_demo,
                test_faults: args.test_faults,
                unsafe_no_fsync: args.unsafe_no_fsync,
                log_format: args.log_format,
                clock: args.clock,
            };
            let env: Vec<(String, String)> = std::env::vars()
                .filter(|(name, _)| name.starts_with("KAIROS_") && name != "KAIROS_CONFIG")
                .collect();
            match config::load(&flags, &env) {
                Ok(config) => serve::run(config),
                Err(problems) => {
                    eprintln!(
                        "kairos: the configuration has {} problem(s):",
                        problems.len()
                    );
                    for problem in problems {
                        eprintln!("  - {problem}");
                    }
                    return std::process::ExitCode::from(2);
                }
            }
        }
        Command::Tail { server, source } => client::tail(&server, source.as_deref()),
        Command::Import(args) => import::run(args),
        Command::MatchEval(args) => match_eval::run(args),
        Command::Sources { server, action } => client::sources(&server, action),
        Command::EvaluateOffer {
            server,
            offer,
            uplift_score,
        } => client::evaluate_offer(&server, &offer, &uplift_score),
        Command::Train(args) => return train::run(args),
        Command::EvaluatePolicy(args) => return evaluate_policy::run(args),
        Command::EvaluateRecommendations(args) => return evaluate_recommendations::run(args),
        Command::ExperimentStats => return experiment_stats::run(),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("kairos: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
