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
