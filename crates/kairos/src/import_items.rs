//! `kairos import --items FILE...`: the item catalog of recommendations,
//! sent to `POST /v1/items` in batches with the admin token, with the same
//! progress display and report as event imports.
//!
//! CSV: a header row with `id` (or `product_id` / `sku`), `name`,
//! `category`, `price`, `available`, `stock`, `image_url`; every other
//! column is an attribute (`attributes.X` columns too). NDJSON: one item
//! object per line, as the API takes it. A refused row is reported with
//! its line and the rest of its batch is sent again without it.

use std::path::Path;

use anyhow::{Context, bail};
use serde_json::{Map, Value, json};

use crate::client::checked;
use crate::import::{ImportArgs, Progress, Row, cell_value, csv_rows, ndjson_rows};

/// The server takes at most this many items per request
/// (`kairos_http::recommendations::ITEMS_PER_REQUEST_MAX`).
const ITEMS_PER_REQUEST_MAX: usize = 1_000;

#[derive(Debug, Default)]
struct Report {
    rows: usize,
    stored: usize,
    rejected: Vec<(String, usize, String)>,
}

pub fn run(args: &ImportArgs) -> anyhow::Result<()> {
    let Some(token) = args.admin_token.clone() else {
        bail!("--items needs the admin token: --admin-token or KAIROS_ADMIN_TOKEN");
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut report = Report::default();
    for file in &args.files {
        runtime.block_on(import_file(args, &token, file, &mut report))?;
    }
    eprintln!();
    for (file, line, error) in report.rejected.iter().take(20) {
        eprintln!("  rejected {file}:{line}: {error}");
    }
    println!(
        "rows={} stored={} rejected={}",
        report.rows,
        report.stored,
        report.rejected.len()
    );
    if report.stored == 0 && report.rows > 0 {
        bail!("no item was stored");
    }
    Ok(())
}

async fn import_file(
    args: &ImportArgs,
    token: &str,
    path: &Path,
    report: &mut Report,
) -> anyhow::Result<()> {
    let csv = match args.format.as_deref() {
        Some(format) => format == "csv",
        None => path.extension().is_some_and(|ext| ext == "csv"),
    };
    let size = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    let mut progress = Progress::new(path, size, "items", args.progress_every);
    let rows: Box<dyn Iterator<Item = Row>> = if csv {
        Box::new(csv_rows(path)?)
    } else {
        Box::new(ndjson_rows(path)?)
    };
    let client = reqwest::Client::new();
    let file = path.display().to_string();
    let batch_size = args.batch_size.min(ITEMS_PER_REQUEST_MAX);
    let mut batch: Vec<(usize, Value)> = Vec::new();
    let rows_before = report.rows;
    for row in rows {
        report.rows += 1;
        match row {
            Ok((line, position, value)) => {
                progress.update(report.rows - rows_before, position);
                let item = if csv { item_of_csv_row(value) } else { value };
                batch.push((line, item));
            }
            Err((line, error)) => report
                .rejected
                .push((file.clone(), line, error.to_string())),
        }
        if batch.len() == batch_size {
            send(&client, args, token, &file, &mut batch, report).await?;
        }
    }
    send(&client, args, token, &file, &mut batch, report).await?;
    progress.finish(report.rows - rows_before);
    Ok(())
}

/// A CSV row as an item: typed known columns, the rest as attributes.
fn item_of_csv_row(row: Value) -> Value {
    let Value::Object(row) = row else {
        return row;
    };
    let mut item = Map::new();
    let mut attributes = Map::new();
    for (column, cell) in row {
        if let ("attributes", Value::Object(nested)) = (column.as_str(), &cell) {
            attributes.extend(nested.clone());
            continue;
        }
        let text = cell.as_str().map(str::to_string);
        match (column.as_str(), text) {
            ("id" | "product_id" | "sku", Some(id)) => {
                item.insert("id".into(), Value::from(id));
            }
            ("name" | "category" | "image_url", Some(text)) => {
                item.insert(column, Value::from(text));
            }
            ("price" | "stock", Some(text)) => {
                item.insert(column, cell_value(&text));
            }
            ("available", Some(text)) => {
                let value = match text.to_ascii_lowercase().as_str() {
                    "true" | "1" | "yes" | "in stock" => Value::Bool(true),
                    "false" | "0" | "no" | "out of stock" => Value::Bool(false),
                    _ => Value::from(text),
                };
                item.insert(column, value);
            }
            (_, Some(text)) => {
                attributes.insert(column, cell_value(&text));
            }
            (_, None) => {
                attributes.insert(column, cell);
            }
        }
    }
    if !attributes.is_empty() {
        item.insert("attributes".into(), Value::Object(attributes));
    }
    Value::Object(item)
}

/// Sends a batch; a refused item (the server names `items[N]`) is
/// reported and the batch is sent again without it.
async fn send(
    client: &reqwest::Client,
    args: &ImportArgs,
    token: &str,
    file: &str,
    batch: &mut Vec<(usize, Value)>,
    report: &mut Report,
) -> anyhow::Result<()> {
    let base = args.url.trim_end_matches('/');
    while !batch.is_empty() {
        let items: Vec<&Value> = batch.iter().map(|(_, item)| item).collect();
        let response = client
            .post(format!("{base}/v1/items"))
            .bearer_auth(token)
            .json(&json!({"items": items}))
            .send()
            .await
            .with_context(|| format!("connecting to {}", args.url))?;
        if response.status().as_u16() != 400 {
            let body: Value = checked(response).await?;
            report.stored += body["stored"].as_u64().unwrap_or(0) as usize;
            batch.clear();
            return Ok(());
        }
        let problem: Value = response.json().await.unwrap_or(Value::Null);
        let detail = problem["detail"].as_str().unwrap_or("").to_string();
        let Some(index) = refused_index(&detail).filter(|index| *index < batch.len()) else {
            bail!("the server refused a batch: {detail}");
        };
        let (line, _) = batch.remove(index);
        let reason = detail
            .split_once(": ")
            .map_or(detail.as_str(), |(_, rest)| rest);
        report
            .rejected
            .push((file.to_string(), line, reason.to_string()));
    }
    Ok(())
}

/// `N` of a detail that starts `items[N]: ...`.
fn refused_index(detail: &str) -> Option<usize> {
    let rest = detail.strip_prefix("items[")?;
    rest.split_once(']')?.0.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_columns_become_typed_fields_and_attributes() {
        let row = json!({"id": "sku-1", "price": "12.50", "stock": "0", "available": "yes",
            "brand": "Acme", "attributes": {"margin": 0.4}});
        let item = item_of_csv_row(row);
        assert_eq!(item["price"], json!(12.5));
        assert_eq!(item["stock"], json!(0));
        assert_eq!(item["available"], json!(true));
        assert_eq!(item["attributes"], json!({"brand": "Acme", "margin": 0.4}));
    }

    #[test]
    fn a_refused_item_is_found_by_its_index() {
        assert_eq!(
            refused_index("items[12]: price: expected a number >= 0"),
            Some(12)
        );
        assert_eq!(refused_index("expected an item"), None);
    }
}
