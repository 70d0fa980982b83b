//! Loaders for the three training formats. Every problem is reported with
//! the file, the line, the column and what was expected, because the person
//! reading it has a CSV open in another window and wants to go straight there.

use std::fs::File;
use std::path::{Path, PathBuf};

/// Why a training file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DatasetError {
    #[error("{path}: cannot read the file: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}: not a valid {format} file: missing column `{column}` (expected columns: {expected})"
    )]
    MissingColumn {
        path: PathBuf,
        format: &'static str,
        column: &'static str,
        expected: String,
    },
    #[error("{path}: line {line}, column `{column}`: {message}")]
    BadValue {
        path: PathBuf,
        line: u64,
        column: String,
        message: String,
    },
    #[error("{path}: line {line}: {message}")]
    BadLine {
        path: PathBuf,
        line: u64,
        message: String,
    },
    #[error("{path}: no data rows")]
    Empty { path: PathBuf },
    #[error("{path}: {message}")]
    Folder { path: PathBuf, message: String },
}

/// One Online Shoppers session: model features and whether it purchased.
pub struct Session {
    pub features: Vec<f64>,
    pub revenue: bool,
}

const SHOPPERS_NUMERIC: [&str; 10] = [
    "Administrative",
    "Administrative_Duration",
    "Informational",
    "Informational_Duration",
    "ProductRelated",
    "ProductRelated_Duration",
    "BounceRates",
    "ExitRates",
    "PageValues",
    "SpecialDay",
];
const SHOPPERS_CODES: [&str; 4] = ["OperatingSystems", "Browser", "Region", "TrafficType"];

/// Feature names in the order of [`Session::features`].
pub fn session_feature_names() -> Vec<String> {
    let mut names: Vec<String> = SHOPPERS_NUMERIC
        .iter()
        .map(|name| name.to_string())
        .collect();
    names.extend(SHOPPERS_CODES.iter().map(|name| name.to_string()));
    names.extend(["Month", "VisitorType", "Weekend"].map(String::from));
    names
}

/// Reads the UCI Online Shoppers Purchasing Intention format.
pub fn load_sessions(path: &Path) -> Result<Vec<Session>, DatasetError> {
    let mut table = Table::open(path, "Online Shoppers")?;
    let numeric = table.columns(&SHOPPERS_NUMERIC)?;
    let codes = table.columns(&SHOPPERS_CODES)?;
    let [month, visitor, weekend, revenue] =
        table.columns(&["Month", "VisitorType", "Weekend", "Revenue"])?[..]
    else {
        unreachable!("four names give four columns")
    };
    let mut sessions = Vec::new();
    while let Some(row) = table.next_row()? {
        let mut features = Vec::with_capacity(17);
        for &column in numeric.iter().chain(&codes) {
            features.push(row.number(column)?);
        }
        features.push(row.parse(month, "a month (Jan … Dec)", month_number)?);
        features.push(row.parse(
            visitor,
            "Returning_Visitor, New_Visitor or Other",
            visitor_code,
        )?);
        features.push(f64::from(u8::from(row.parse(
            weekend,
            "TRUE or FALSE",
            boolean,
        )?)));
        let revenue = row.parse(revenue, "TRUE or FALSE", boolean)?;
        sessions.push(Session { features, revenue });
    }
    non_empty(path, sessions)
}

fn month_number(text: &str) -> Option<f64> {
    let prefix: String = text
        .chars()
        .take(3)
        .collect::<String>()
        .to_ascii_lowercase();
    let months = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    months
        .iter()
        .position(|&month| month == prefix)
        .map(|index| index as f64 + 1.0)
}

fn visitor_code(text: &str) -> Option<f64> {
    match text {
        "Returning_Visitor" => Some(0.0),
        "New_Visitor" => Some(1.0),
        "Other" => Some(2.0),
        _ => None,
    }
}

fn boolean(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

/// One Hillstrom customer in the Womens-e-mail-versus-none experiment.
pub struct Customer {
    pub features: Vec<f64>,
    pub treated: bool,
    pub visit: bool,
}

/// Feature names in the order of [`Customer::features`].
pub fn customer_feature_names() -> Vec<String> {
    [
        "recency",
        "history_segment",
        "history",
        "log_history",
        "mens",
        "womens",
        "newbie",
        "zip_urban",
        "zip_suburban",
        "zip_rural",
        "channel_phone",
        "channel_web",
        "channel_multichannel",
    ]
    .map(String::from)
    .to_vec()
}

/// Reads the MineThatData Hillstrom format, keeping "Womens E-Mail"
/// (treated) and "No E-Mail" (control) and dropping "Mens E-Mail".
pub fn load_customers(path: &Path) -> Result<Vec<Customer>, DatasetError> {
    let mut table = Table::open(path, "Hillstrom")?;
    let names = [
        "recency",
        "history_segment",
        "history",
        "mens",
        "womens",
        "zip_code",
        "newbie",
        "channel",
    ];
    let columns = table.columns(&names)?;
    let [segment, visit] = table.columns(&["segment", "visit"])?[..] else {
        unreachable!("two names")
    };
    let mut customers = Vec::new();
    while let Some(row) = table.next_row()? {
        let treated = match row.text(segment) {
            "Womens E-Mail" => true,
            "No E-Mail" => false,
            "Mens E-Mail" => continue,
            _ => return Err(row.bad(segment, "Womens E-Mail, Mens E-Mail or No E-Mail")),
        };
        let history = row.number(columns[2])?;
        let zip = row.parse(columns[5], "Urban, Surburban or Rural", |text| {
            ["Urban", "Surburban", "Rural"]
                .iter()
                .position(|&zip| zip == text)
        })?;
        let channel = row.parse(columns[7], "Phone, Web or Multichannel", |text| {
            ["Phone", "Web", "Multichannel"]
                .iter()
                .position(|&channel| channel == text)
        })?;
        let mut features = vec![
            row.number(columns[0])?,
            row.parse(columns[1], "a segment like `2) $100 - $200`", |text| {
                text.split(')').next()?.trim().parse::<f64>().ok()
            })?,
            history,
            history.max(0.0).ln_1p(),
            row.number(columns[3])?,
            row.number(columns[4])?,
            row.number(columns[6])?,
        ];
        features.extend((0..3).map(|index| f64::from(u8::from(zip == index))));
        features.extend((0..3).map(|index| f64::from(u8::from(channel == index))));
        let visit = row.parse(visit, "0 or 1", boolean)?;
        customers.push(Customer {
            features,
            treated,
            visit,
        });
    }
    non_empty(path, customers)
}

/// One purchase: customer, day number (days since 1970-01-01) and amount.
#[derive(Debug, Clone, PartialEq)]
pub struct Purchase {
    pub customer: String,
    pub day: i64,
    pub dollars: f64,
}

/// Reads CDNOW transactions: whitespace-separated
/// `customer_id [id] date(YYYYMMDD) cds dollars` (the sample has the extra id).
pub fn load_purchases(path: &Path) -> Result<Vec<Purchase>, DatasetError> {
    let text = std::fs::read_to_string(path).map_err(|source| DatasetError::Unreadable {
        path: path.to_path_buf(),
        source,
    })?;
    let mut purchases = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        let bad = |message: String| DatasetError::BadLine {
            path: path.to_path_buf(),
            line: index as u64 + 1,
            message,
        };
        let date_index = match fields.len() {
            5 => 2,
            4 => 1,
            count => {
                return Err(bad(format!(
                    "expected `customer_id [id] date(YYYYMMDD) cds dollars` separated by spaces, found {count} fields"
                )));
            }
        };
        let day = parse_yyyymmdd(fields[date_index]).ok_or_else(|| {
            bad(format!(
                "date `{}` is not a YYYYMMDD date",
                fields[date_index]
            ))
        })?;
        let dollars = fields[date_index + 2].parse().map_err(|_| {
            bad(format!(
                "dollars `{}` is not a number",
                fields[date_index + 2]
            ))
        })?;
        purchases.push(Purchase {
            customer: fields[0].to_string(),
            day,
            dollars,
        });
    }
    non_empty(path, purchases)
}

/// The columns an Open Bandit Dataset log must have (besides
/// `user_feature_*` and `user-item_affinity_<item>`, which are optional).
const BANDIT_COLUMNS: [&str; 4] = ["item_id", "position", "click", "propensity_score"];
/// The item table every Open Bandit folder holds next to its log.
pub const BANDIT_ITEM_FILE: &str = "item_context.csv";

/// A folder of the Open Bandit Dataset: one campaign logged by one policy.
pub struct BanditLog {
    /// Items are `0..item_count`, the rows of `item_context.csv`.
    pub item_count: usize,
    /// Slots on the page; positions are `0..position_count` (the file's 1, 2, 3).
    pub position_count: usize,
    pub user_feature_names: Vec<String>,
    pub impressions: Vec<Impression>,
}

/// One logged impression: an item shown in one slot to one visitor.
pub struct Impression {
    pub item: usize,
    /// Zero-based (the file counts from 1).
    pub position: usize,
    pub click: bool,
    /// Probability the logging policy gave this item in this slot.
    pub propensity: f64,
    /// The visitor's categorical features (hashed strings in the dataset).
    pub user_features: Vec<String>,
    /// The visitor's affinity to each item, `item_count` values (empty if
    /// the log has no `user-item_affinity_*` columns).
    pub affinity: Vec<f64>,
}

/// Most impressions read from one log. Off-policy evaluation holds every
/// impression in memory twice during a bootstrap run, about 1 KB each with
/// the Open Bandit affinities: 500,000 stay under a gigabyte, and already
/// hold ~2,500 clicks at the dataset's click rate.
pub const MAX_BANDIT_IMPRESSIONS: usize = 500_000;

/// Reads an Open Bandit Dataset folder: `item_context.csv` plus exactly one
/// other CSV, the log (its name is free: `men.csv`, `all.csv`, …).
pub fn load_open_bandit(folder: &Path) -> Result<BanditLog, DatasetError> {
    load_open_bandit_at_most(folder, MAX_BANDIT_IMPRESSIONS)
}

fn load_open_bandit_at_most(folder: &Path, limit: usize) -> Result<BanditLog, DatasetError> {
    let log_path = bandit_log_file(folder)?;
    let item_count = bandit_item_count(&folder.join(BANDIT_ITEM_FILE))?;
    let mut table = Table::open(&log_path, "Open Bandit Dataset log")?;
    let [item, position, click, propensity] = table.columns(&BANDIT_COLUMNS)?[..] else {
        unreachable!("four names give four columns")
    };
    let user_columns: Vec<usize> = (0..table.headers.len())
        .filter(|&i| table.headers[i].starts_with("user_feature_"))
        .collect();
    let user_feature_names = user_columns
        .iter()
        .map(|&i| table.headers[i].to_string())
        .collect();
    let affinity_columns = bandit_affinity_columns(&table, item_count)?;
    let mut impressions = Vec::new();
    let mut position_count = 0;
    while let Some(row) = table.next_row()? {
        if impressions.len() == limit {
            return Err(DatasetError::BadLine {
                path: log_path.clone(),
                line: row.line,
                message: format!(
                    "more than {limit} impressions, the most one evaluation holds in \
                     memory; evaluate a sample (e.g. the first {limit}: \
                     `head -n {} log.csv`)",
                    limit + 1
                ),
            });
        }
        let shown = row.parse(item, &format!("an item id in 0..{item_count}"), |t| {
            t.parse::<usize>().ok().filter(|&i| i < item_count)
        })?;
        let slot = row.parse(position, "a position 1, 2, 3, …", |t| {
            t.parse::<usize>().ok().filter(|&p| p >= 1)
        })?;
        position_count = position_count.max(slot);
        let mut affinity = Vec::with_capacity(affinity_columns.len());
        for &column in &affinity_columns {
            affinity.push(row.number(column)?);
        }
        impressions.push(Impression {
            item: shown,
            position: slot - 1,
            click: row.parse(click, "0 or 1", boolean)?,
            propensity: row.parse(propensity, "a probability in (0, 1]", |t| {
                t.parse::<f64>().ok().filter(|p| *p > 0.0 && *p <= 1.0)
            })?,
            user_features: user_columns
                .iter()
                .map(|&c| row.text(c).to_string())
                .collect(),
            affinity,
        });
    }
    Ok(BanditLog {
        item_count,
        position_count,
        user_feature_names,
        impressions: non_empty(&log_path, impressions)?,
    })
}

/// The one CSV in `folder` that is not the item table.
fn bandit_log_file(folder: &Path) -> Result<PathBuf, DatasetError> {
    let problem = |message: String| DatasetError::Folder {
        path: folder.to_path_buf(),
        message,
    };
    let entries = std::fs::read_dir(folder).map_err(|error| {
        problem(format!(
            "cannot read the folder ({error}); give a folder of Open Bandit Dataset files: \
             one log CSV and {BANDIT_ITEM_FILE}"
        ))
    })?;
    let mut logs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.extension().is_some_and(|e| e == "csv")
                && path.file_name().is_some_and(|n| n != BANDIT_ITEM_FILE)
        })
        .collect();
    logs.sort();
    if !folder.join(BANDIT_ITEM_FILE).is_file() {
        return Err(problem(format!(
            "no {BANDIT_ITEM_FILE}; an Open Bandit Dataset folder holds it next to the log CSV \
             (one row per item: ,item_id,item_feature_0,…)"
        )));
    }
    match logs.len() {
        1 => Ok(logs.remove(0)),
        0 => Err(problem(format!(
            "no log CSV; put the policy's log (columns {}, user_feature_*, \
             user-item_affinity_*) next to {BANDIT_ITEM_FILE}",
            BANDIT_COLUMNS.join(",")
        ))),
        _ => Err(problem(format!(
            "{} log CSVs ({}); keep exactly one besides {BANDIT_ITEM_FILE}",
            logs.len(),
            logs.iter()
                .filter_map(|p| p.file_name())
                .map(|n| n.to_string_lossy())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Checks `item_context.csv` numbers its items 0, 1, 2, … and counts them.
fn bandit_item_count(path: &Path) -> Result<usize, DatasetError> {
    let mut table = Table::open(path, "Open Bandit Dataset item_context")?;
    let [item] = table.columns(&["item_id"])?[..] else {
        unreachable!("one name gives one column")
    };
    let mut count = 0;
    while let Some(row) = table.next_row()? {
        row.parse(
            item,
            &format!("item id {count} (items numbered 0, 1, 2, …)"),
            |t| t.parse::<usize>().ok().filter(|&i| i == count),
        )?;
        count += 1;
    }
    if count == 0 {
        return Err(DatasetError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(count)
}

/// Columns `user-item_affinity_0 … _<item_count − 1>`: all or none.
fn bandit_affinity_columns(table: &Table, item_count: usize) -> Result<Vec<usize>, DatasetError> {
    let found: Vec<Option<usize>> = (0..item_count)
        .map(|k| {
            let name = format!("user-item_affinity_{k}");
            table.headers.iter().position(|h| h == name)
        })
        .collect();
    if found.iter().all(Option::is_none) {
        return Ok(Vec::new());
    }
    match found.iter().position(Option::is_none) {
        None => Ok(found.into_iter().flatten().collect()),
        Some(missing) => Err(DatasetError::BadLine {
            path: table.path.clone(),
            line: 1,
            message: format!(
                "column `user-item_affinity_{missing}` is missing: a log has one affinity \
                 column per item of {BANDIT_ITEM_FILE} ({item_count}), or none"
            ),
        }),
    }
}

/// Days since 1970-01-01 of a `YYYYMMDD` or `YYYY-MM-DD` date.
pub fn parse_yyyymmdd(text: &str) -> Option<i64> {
    let digits: String = text.chars().filter(|c| *c != '-').collect();
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let year: i64 = digits[..4].parse().ok()?;
    let month: i64 = digits[4..6].parse().ok()?;
    let day: i64 = digits[6..].parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    Some(days_from_civil(year, month, day))
}

/// Howard Hinnant's days-from-civil algorithm (proleptic Gregorian).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn non_empty<T>(path: &Path, rows: Vec<T>) -> Result<Vec<T>, DatasetError> {
    if rows.is_empty() {
        Err(DatasetError::Empty {
            path: path.to_path_buf(),
        })
    } else {
        Ok(rows)
    }
}

/// A CSV file with a header, read row by row with positions kept for errors.
struct Table {
    path: PathBuf,
    format: &'static str,
    headers: csv::StringRecord,
    reader: csv::Reader<File>,
    record: csv::StringRecord,
}

impl Table {
    fn open(path: &Path, format: &'static str) -> Result<Table, DatasetError> {
        let file = File::open(path).map_err(|source| DatasetError::Unreadable {
            path: path.to_path_buf(),
            source,
        })?;
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_reader(file);
        let headers = reader
            .headers()
            .map_err(|error| csv_error(path, error))?
            .clone();
        Ok(Table {
            path: path.to_path_buf(),
            format,
            headers,
            reader,
            record: csv::StringRecord::new(),
        })
    }

    fn columns(&self, names: &[&'static str]) -> Result<Vec<usize>, DatasetError> {
        names
            .iter()
            .map(|&name| {
                self.headers
                    .iter()
                    .position(|header| header == name)
                    .ok_or_else(|| DatasetError::MissingColumn {
                        path: self.path.clone(),
                        format: self.format,
                        column: name,
                        expected: names.join(","),
                    })
            })
            .collect()
    }

    fn next_row(&mut self) -> Result<Option<Row<'_>>, DatasetError> {
        match self.reader.read_record(&mut self.record) {
            Ok(false) => Ok(None),
            Ok(true) => Ok(Some(Row {
                table_path: &self.path,
                headers: &self.headers,
                record: &self.record,
                line: self.record.position().map_or(0, csv::Position::line),
            })),
            Err(error) => Err(csv_error(&self.path, error)),
        }
    }
}

fn csv_error(path: &Path, error: csv::Error) -> DatasetError {
    let line = error.position().map_or(0, csv::Position::line);
    DatasetError::BadLine {
        path: path.to_path_buf(),
        line,
        message: error.to_string(),
    }
}

struct Row<'a> {
    table_path: &'a Path,
    headers: &'a csv::StringRecord,
    record: &'a csv::StringRecord,
    line: u64,
}

impl Row<'_> {
    fn text(&self, column: usize) -> &str {
        self.record.get(column).unwrap_or("")
    }

    fn bad(&self, column: usize, expected: &str) -> DatasetError {
        DatasetError::BadValue {
            path: self.table_path.to_path_buf(),
            line: self.line,
            column: self.headers.get(column).unwrap_or("?").to_string(),
            message: format!("expected {expected}, found `{}`", self.text(column)),
        }
    }

    fn parse<T>(
        &self,
        column: usize,
        expected: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<T, DatasetError> {
        parse(self.text(column)).ok_or_else(|| self.bad(column, expected))
    }

    fn number(&self, column: usize) -> Result<f64, DatasetError> {
        self.parse(column, "a number", |text| {
            text.parse::<f64>().ok().filter(|x| x.is_finite())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temporary(name: &str, contents: &str) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("kairos-insights-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn a_bad_value_names_the_line_and_the_column() {
        let header = "Administrative,Administrative_Duration,Informational,Informational_Duration,ProductRelated,ProductRelated_Duration,BounceRates,ExitRates,PageValues,SpecialDay,Month,OperatingSystems,Browser,Region,TrafficType,VisitorType,Weekend,Revenue";
        let good = "0,0,0,0,1,0,0.2,0.2,0,0,Feb,1,1,1,1,Returning_Visitor,FALSE,FALSE";
        let bad = "0,0,0,0,1,0,0.2,0.2,0,0,Feb,1,1,1,1,Returning_Visitor,FALSE,maybe";
        let path = temporary("bad.csv", &format!("{header}\n{good}\n{bad}\n"));
        let message = load_sessions(&path).err().unwrap().to_string();
        assert!(message.contains("line 3, column `Revenue`"), "{message}");
        assert!(
            message.contains("TRUE or FALSE, found `maybe`"),
            "{message}"
        );
        let sessions =
            load_sessions(&temporary("good.csv", &format!("{header}\n{good}\n"))).unwrap();
        assert_eq!(sessions[0].features.len(), session_feature_names().len());
        assert_eq!(sessions[0].features[14], 2.0, "Month Feb");
    }

    #[test]
    fn a_missing_column_names_it() {
        let path = temporary("wrong.csv", "a,b\n1,2\n");
        let message = load_customers(&path).err().unwrap().to_string();
        assert!(message.contains("missing column `recency`"), "{message}");
        assert!(message.contains("Hillstrom"), "{message}");
    }

    fn bandit_folder(name: &str, files: &[(&str, &str)]) -> PathBuf {
        let folder =
            std::env::temp_dir().join(format!("kairos-insights-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&folder);
        std::fs::create_dir_all(&folder).unwrap();
        for (file, contents) in files {
            std::fs::write(folder.join(file), contents).unwrap();
        }
        folder
    }

    const ITEMS: &str = ",item_id,item_feature_0\n0,0,0.5\n1,1,-0.5\n";
    const LOG_HEADER: &str = ",timestamp,item_id,position,click,propensity_score,user_feature_0,user-item_affinity_0,user-item_affinity_1";

    #[test]
    fn an_open_bandit_folder_is_read() {
        let log = format!("{LOG_HEADER}\n0,t,1,2,1,0.5,abc,0.0,3.0\n1,t,0,1,0,0.5,def,0.0,0.0\n");
        let folder = bandit_folder(
            "obd-good",
            &[("item_context.csv", ITEMS), ("any.csv", &log)],
        );
        let bandit = load_open_bandit(&folder).unwrap();
        assert_eq!((bandit.item_count, bandit.position_count), (2, 2));
        assert_eq!(bandit.user_feature_names, ["user_feature_0"]);
        let first = &bandit.impressions[0];
        assert_eq!((first.item, first.position, first.click), (1, 1, true));
        assert_eq!(first.propensity, 0.5);
        assert_eq!(first.user_features, ["abc"]);
        assert_eq!(first.affinity, [0.0, 3.0]);
    }

    #[test]
    fn a_bad_open_bandit_folder_says_what_to_fix() {
        let missing = std::env::temp_dir().join("kairos-insights-no-such-folder");
        let message = load_open_bandit(&missing).err().unwrap().to_string();
        assert!(message.contains("cannot read the folder"), "{message}");
        let only_items = bandit_folder("obd-empty", &[("item_context.csv", ITEMS)]);
        let message = load_open_bandit(&only_items).err().unwrap().to_string();
        assert!(message.contains("no log CSV"), "{message}");
        let log = format!("{LOG_HEADER}\n0,t,1,2,1,0.5,abc,0.0,3.0\n");
        let two = bandit_folder(
            "obd-two",
            &[
                ("item_context.csv", ITEMS),
                ("a.csv", &log),
                ("b.csv", &log),
            ],
        );
        let message = load_open_bandit(&two).err().unwrap().to_string();
        assert!(message.contains("2 log CSVs (a.csv, b.csv)"), "{message}");
        let no_items = bandit_folder("obd-no-items", &[("a.csv", &log)]);
        let message = load_open_bandit(&no_items).err().unwrap().to_string();
        assert!(message.contains("no item_context.csv"), "{message}");
        let unknown_item = format!("{LOG_HEADER}\n0,t,7,2,1,0.5,abc,0.0,3.0\n");
        let folder = bandit_folder(
            "obd-item",
            &[("item_context.csv", ITEMS), ("a.csv", &unknown_item)],
        );
        let message = load_open_bandit(&folder).err().unwrap().to_string();
        assert!(message.contains("line 2, column `item_id`"), "{message}");
        assert!(
            message.contains("an item id in 0..2, found `7`"),
            "{message}"
        );
        let folder = bandit_folder(
            "obd-columns",
            &[
                ("item_context.csv", ITEMS),
                ("a.csv", "item_id,click\n1,0\n"),
            ],
        );
        let message = load_open_bandit(&folder).err().unwrap().to_string();
        assert!(message.contains("missing column `position`"), "{message}");
        let three = format!(
            "{LOG_HEADER}\n0,t,1,2,1,0.5,a,0,0\n1,t,1,2,1,0.5,a,0,0\n2,t,1,2,1,0.5,a,0,0\n"
        );
        let folder = bandit_folder(
            "obd-long",
            &[("item_context.csv", ITEMS), ("a.csv", &three)],
        );
        let message = load_open_bandit_at_most(&folder, 2)
            .err()
            .unwrap()
            .to_string();
        assert!(
            message.contains("line 4: more than 2 impressions"),
            "{message}"
        );
        assert!(message.contains("head -n 3"), "{message}");
    }

    #[test]
    fn dates_count_days_from_the_epoch() {
        assert_eq!(parse_yyyymmdd("19700101"), Some(0));
        assert_eq!(
            parse_yyyymmdd("1997-09-30").unwrap() - parse_yyyymmdd("19970101").unwrap(),
            272
        );
        assert_eq!(parse_yyyymmdd("19971301"), None);
    }
}
