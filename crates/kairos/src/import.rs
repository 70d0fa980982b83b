//! `kairos import`: NDJSON or CSV files of events, sent in batches through
//! the collection API, so they pass the same validation, deduplication and
//! quarantine as live traffic. Shows progress and ends with a report.
//!
//! With `--traits TYPE`, the files are CRM records instead — one person's
//! traits per row, keyed by the identifier column `TYPE` (email, user_id,
//! phone, a custom type) — sent to the profile import API
//! (`POST /v1/profiles/import`) with the admin token.
//!
//! With `--items`, the files are the recommendations' item catalog, sent to
//! `POST /v1/items` ([`crate::import_items`]).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Map, Value};

use crate::client::checked;

#[derive(clap::Args)]
pub struct ImportArgs {
    /// Files to import (.ndjson / .jsonl / .csv).
    #[arg(required = true)]
    pub(crate) files: Vec<PathBuf>,
    /// Write key of the source the events belong to (event imports).
    #[arg(long, env = "KAIROS_WRITE_KEY", required_unless_present_any = ["traits", "items"])]
    write_key: Option<String>,
    /// Import CRM trait records keyed by this identifier type (a column of
    /// that name) instead of events.
    #[arg(long, value_name = "IDENTIFIER_TYPE")]
    traits: Option<String>,
    /// Import the item catalog of recommendations (POST /v1/items) instead
    /// of events: CSV columns id, name, category, price, available, stock,
    /// image_url; any other column becomes an attribute.
    #[arg(long, conflicts_with = "traits")]
    pub(crate) items: bool,
    /// Source name the trait records belong to (with --traits).
    #[arg(long, default_value = "crm-import")]
    source_name: String,
    /// Admin token (with --traits).
    #[arg(long, env = "KAIROS_ADMIN_TOKEN", hide_env_values = true)]
    pub(crate) admin_token: Option<String>,
    #[arg(long, env = "KAIROS_URL", default_value = "http://127.0.0.1:8080")]
    pub(crate) url: String,
    /// File format; by default from the extension.
    #[arg(long, value_parser = ["ndjson", "csv"])]
    pub(crate) format: Option<String>,
    /// Events per request.
    #[arg(long, default_value_t = 500)]
    pub(crate) batch_size: usize,
    /// Write the full report (every rejected row) as JSON to this file.
    #[arg(long)]
    pub(crate) report: Option<PathBuf>,
    /// When stderr is not a terminal (a pipe, a log file): print a progress
    /// line this often, e.g. "5s" or "500ms".
    #[arg(long, default_value = "5s", value_parser = parse_interval)]
    pub(crate) progress_every: Duration,
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    crate::config::parse_duration(text)
        .ok_or_else(|| format!("{text:?}: expected a duration such as \"5s\" or \"500ms\""))
}

/// One row the server or the reader refused.
#[derive(Debug, serde::Serialize)]
struct RejectedRow {
    file: String,
    line: usize,
    errors: Value,
}

#[derive(Debug, Default, serde::Serialize)]
struct Report {
    rows: usize,
    accepted: usize,
    duplicates: usize,
    /// Dropped: they name an erased person.
    suppressed: usize,
    rejected: Vec<RejectedRow>,
}

pub fn run(args: ImportArgs) -> anyhow::Result<()> {
    if args.batch_size == 0 || args.batch_size > 2500 {
        bail!("--batch-size must be 1 to 2500");
    }
    if args.items {
        return crate::import_items::run(&args);
    }
    if args.traits.is_some() && args.admin_token.is_none() {
        bail!("--traits needs the admin token: --admin-token or KAIROS_ADMIN_TOKEN");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut report = Report::default();
    for file in &args.files {
        runtime.block_on(import_file(&args, file, &mut report))?;
    }
    print_report(&report);
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if report.accepted + report.duplicates == 0 && report.rows > 0 {
        bail!("no row was accepted");
    }
    Ok(())
}

async fn import_file(args: &ImportArgs, path: &Path, report: &mut Report) -> anyhow::Result<()> {
    let format = match args.format.as_deref() {
        Some(format) => format.to_string(),
        None if path.extension().is_some_and(|ext| ext == "csv") => "csv".to_string(),
        None => "ndjson".to_string(),
    };
    let size = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    let unit = if args.traits.is_some() {
        "records"
    } else {
        "events"
    };
    let mut progress = Progress::new(path, size, unit, args.progress_every);
    let rows: Box<dyn Iterator<Item = Row>> = match format.as_str() {
        "csv" => Box::new(csv_rows(path)?),
        _ => Box::new(ndjson_rows(path)?),
    };
    let client = reqwest::Client::new();
    let mut batch: Vec<(usize, Value)> = Vec::with_capacity(args.batch_size);
    let file_name = path.display().to_string();
    let rows_before = report.rows;
    for row in rows {
        let (line, position, value) = match row {
            Ok(row) => row,
            Err((line, error)) => {
                report.rows += 1;
                report.rejected.push(RejectedRow {
                    file: file_name.clone(),
                    line,
                    errors: Value::String(error.to_string()),
                });
                continue;
            }
        };
        report.rows += 1;
        progress.update(report.rows - rows_before, position);
        batch.push((line, value));
        if batch.len() == args.batch_size {
            send_batch(&client, args, &file_name, &mut batch, report).await?;
        }
    }
    send_batch(&client, args, &file_name, &mut batch, report).await?;
    progress.finish(report.rows - rows_before);
    Ok(())
}

/// Progress of one file: a bar on a terminal; on anything else (a pipe, a
/// CI log) a plain line every `every`, since a bar redrawn with escape
/// codes is unreadable there (and indicatif draws nothing at all).
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    file: String,
    size: u64,
    unit: &'static str,
    every: Duration,
    started: Instant,
    last_line: Instant,
    rows: usize,
    position: u64,
}

impl Progress {
    pub(crate) fn new(path: &Path, size: u64, unit: &'static str, every: Duration) -> Progress {
        use std::io::IsTerminal;
        let file = path.display().to_string();
        let bar = std::io::stderr().is_terminal().then(|| {
            let template = format!(
                "{{msg}} [{{bar:40}}] {{bytes}}/{{total_bytes}} {{binary_bytes_per_sec}} eta {{eta}} {{prefix}} {unit}/s"
            );
            let bar = ProgressBar::new(size).with_style(
                ProgressStyle::with_template(&template)
                    .expect("a valid template")
                    .progress_chars("=> "),
            );
            bar.set_message(file.clone());
            bar
        });
        let now = Instant::now();
        Progress {
            bar,
            file,
            size,
            unit,
            every,
            started: now,
            last_line: now,
            rows: 0,
            position: 0,
        }
    }

    pub(crate) fn update(&mut self, rows: usize, position: u64) {
        self.rows = rows;
        self.position = position;
        match &self.bar {
            Some(bar) => {
                bar.set_position(position);
                bar.set_prefix(format!("{:.0}", self.rate()));
            }
            None if self.last_line.elapsed() >= self.every => {
                self.last_line = Instant::now();
                eprintln!("{}", self.line());
            }
            None => {}
        }
    }

    pub(crate) fn finish(&mut self, rows: usize) {
        self.update(rows, self.size);
        match &self.bar {
            Some(bar) => bar.finish(),
            None => eprintln!("{} (done)", self.line()),
        }
    }

    fn rate(&self) -> f64 {
        self.rows as f64 / self.started.elapsed().as_secs_f64().max(1e-3)
    }

    /// e.g. "import events.ndjson: 120000 events, 45% of 30.0 MB, 24000 events/s"
    fn line(&self) -> String {
        let percent = if self.size == 0 {
            100.0
        } else {
            self.position as f64 * 100.0 / self.size as f64
        };
        format!(
            "import {}: {} {}, {:.0}% of {:.1} MB, {:.0} {}/s",
            self.file,
            self.rows,
            self.unit,
            percent,
            self.size as f64 / 1e6,
            self.rate(),
            self.unit
        )
    }
}

async fn send_batch(
    client: &reqwest::Client,
    args: &ImportArgs,
    file: &str,
    batch: &mut Vec<(usize, Value)>,
    report: &mut Report,
) -> anyhow::Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let events: Vec<&Value> = batch.iter().map(|(_, value)| value).collect();
    let base = args.url.trim_end_matches('/');
    let request = match (&args.traits, &args.admin_token, &args.write_key) {
        (Some(kind), Some(token), _) => client
            .post(format!("{base}/v1/profiles/import"))
            .bearer_auth(token)
            .json(&serde_json::json!({"identifier_type": kind, "source": args.source_name, "records": events})),
        (_, _, Some(write_key)) => client
            .post(format!("{base}/v1/batch"))
            .basic_auth(write_key, Some(""))
            .json(&serde_json::json!({"batch": events})),
        _ => bail!("give --write-key (events) or --traits with the admin token (CRM records)"),
    };
    let response = request
        .send()
        .await
        .with_context(|| format!("connecting to {}", args.url))?;
    let status = response.status();
    let body: Value = if status.as_u16() == 400 {
        response.json().await.unwrap_or(Value::Null)
    } else {
        checked(response).await?
    };
    report.accepted += body["accepted"].as_u64().unwrap_or(0) as usize;
    report.duplicates += body["duplicates"].as_u64().unwrap_or(0) as usize;
    report.suppressed += body["suppressed"].as_u64().unwrap_or(0) as usize;
    let rejected = if status.as_u16() == 400 {
        rejected_from_problem(&body)
    } else {
        rejected_from_success(&body)
    };
    if status.as_u16() == 400 && rejected.is_empty() {
        bail!("the server refused a batch: {}", body["detail"]);
    }
    for (index, errors) in rejected {
        let line = batch.get(index).map(|(line, _)| *line).unwrap_or(0);
        report.rejected.push(RejectedRow {
            file: file.to_string(),
            line,
            errors,
        });
    }
    batch.clear();
    Ok(())
}

/// Rejected rows of a 200 answer: `quarantined` events (event import) or
/// `rejected` records (trait import).
fn rejected_from_success(body: &Value) -> Vec<(usize, Value)> {
    let events = body["quarantined"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|item| {
            (
                item["index"].as_u64().unwrap_or(0) as usize,
                item["errors"].clone(),
            )
        });
    let records = body["rejected"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|item| {
            (
                item["row"].as_u64().unwrap_or(0) as usize,
                item["errors"].clone(),
            )
        });
    events.chain(records).collect()
}

fn rejected_from_problem(body: &Value) -> Vec<(usize, Value)> {
    let mut by_index: std::collections::BTreeMap<usize, Vec<Value>> = Default::default();
    for error in body["errors"].as_array().into_iter().flatten() {
        by_index
            .entry(error["index"].as_u64().unwrap_or(0) as usize)
            .or_default()
            .push(error.clone());
    }
    by_index
        .into_iter()
        .map(|(index, errors)| (index, Value::Array(errors)))
        .collect()
}

fn print_report(report: &Report) {
    eprintln!();
    for row in report.rejected.iter().take(20) {
        eprintln!("  rejected {}:{}: {}", row.file, row.line, row.errors);
    }
    if report.rejected.len() > 20 {
        eprintln!(
            "  ... and {} more (use --report FILE for all)",
            report.rejected.len() - 20
        );
    }
    println!(
        "rows={} accepted={} duplicates={} suppressed={} rejected={}",
        report.rows,
        report.accepted,
        report.duplicates,
        report.suppressed,
        report.rejected.len()
    );
}

/// A row: its line number, the byte position reached, and the event; or the
/// line number and why the row could not be read.
pub(crate) type Row = Result<(usize, u64, Value), (usize, anyhow::Error)>;

pub(crate) fn ndjson_rows(path: &Path) -> anyhow::Result<impl Iterator<Item = Row>> {
    let reader =
        BufReader::new(File::open(path).with_context(|| format!("opening {}", path.display()))?);
    let mut position = 0u64;
    Ok(reader.lines().enumerate().filter_map(move |(index, line)| {
        let line = match line {
            Ok(line) => line,
            Err(error) => {
                return Some(Err((
                    index + 1,
                    anyhow::anyhow!("line {}: {error}", index + 1),
                )));
            }
        };
        position += line.len() as u64 + 1;
        if line.trim().is_empty() {
            return None;
        }
        Some(
            serde_json::from_str(&line)
                .map(|value| (index + 1, position, value))
                .map_err(|error| {
                    (
                        index + 1,
                        anyhow::anyhow!("line {}: not JSON: {error}", index + 1),
                    )
                }),
        )
    }))
}

/// CSV: a header row; `type`, `event`, `userId`, `anonymousId`, `messageId`,
/// `timestamp` columns, and `properties.X`, `traits.X`, `context.X` columns
/// nested under their object. Numbers and true/false become JSON values;
/// empty cells are left out.
pub(crate) fn csv_rows(path: &Path) -> anyhow::Result<impl Iterator<Item = Row>> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("opening {}", path.display()))?;
    let headers = reader.headers()?.clone();
    Ok(reader
        .into_records()
        .enumerate()
        .map(move |(index, record)| {
            let record = record
                .map_err(|error| (index + 2, anyhow::anyhow!("row {}: {error}", index + 2)))?;
            let position = record
                .position()
                .map(|position| position.byte())
                .unwrap_or(0);
            let mut event = Map::new();
            for (header, cell) in headers.iter().zip(record.iter()) {
                if cell.is_empty() {
                    continue;
                }
                match header.split_once('.') {
                    Some((object, key)) => {
                        let nested = event
                            .entry(object.to_string())
                            .or_insert_with(|| Value::Object(Map::new()));
                        if let Value::Object(map) = nested {
                            map.insert(key.to_string(), cell_value(cell));
                        }
                    }
                    None => {
                        event.insert(header.to_string(), Value::String(cell.to_string()));
                    }
                }
            }
            Ok((index + 2, position, Value::Object(event)))
        }))
}

/// A cell as JSON: numbers only when they read back the same (so zip codes
/// like `01234` and phone numbers like `+4915...` stay text), true/false as
/// booleans, anything else as text.
pub(crate) fn cell_value(cell: &str) -> Value {
    if let Ok(integer) = cell.parse::<i64>()
        && integer.to_string() == cell
    {
        return Value::from(integer);
    }
    let leading_zero =
        cell.starts_with('0') && cell.as_bytes().get(1).is_some_and(u8::is_ascii_digit);
    let plain_decimal = !cell.starts_with(['+', '.']) && !leading_zero && cell.contains('.');
    if plain_decimal
        && let Ok(float) = cell.parse::<f64>()
        && float.is_finite()
    {
        return Value::from(float);
    }
    match cell {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => Value::String(cell.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_progress_line_names_the_unit_of_its_rate() {
        let mut progress = Progress::new(
            Path::new("crm.csv"),
            2_000_000,
            "records",
            Duration::from_secs(5),
        );
        progress.rows = 1200;
        progress.position = 500_000;
        let line = progress.line();
        assert!(
            line.starts_with("import crm.csv: 1200 records, 25% of 2.0 MB, "),
            "{line}"
        );
        assert!(line.ends_with(" records/s"), "{line}");
    }
}
