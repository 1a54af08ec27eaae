//! Reading CSV files of rows into memory, with every error pointing at a file, a line and
//! a column, and turning cells into the values a surrogate reads.
//!
//! Line numbers are the ones an editor shows: 1-based, the header is line 1, and a quoted
//! field that spans lines moves the count on (the `csv` crate counts raw lines).

use std::fs::File;
use std::io::ErrorKind;
use std::path::Path;

use csv::{StringRecord, Trim};
use sidelight_explain::{FeatureKind, Value};

use super::Failure;

/// A CSV file read whole: its header and its data rows with their line numbers.
pub(crate) struct Table {
    /// The file as the user named it, for messages.
    pub(crate) name: String,
    pub(crate) header: Vec<String>,
    pub(crate) rows: Vec<Row>,
}

pub(crate) struct Row {
    pub(crate) line: u64,
    pub(crate) cells: StringRecord,
}

impl Row {
    /// The cell in column `index`; ragged rows are refused while reading, so every row
    /// has a cell for every header column.
    pub(crate) fn cell(&self, index: usize) -> &str {
        self.cells.get(index).unwrap_or("")
    }
}

impl Table {
    /// Reads `path`, keeping at most `limit` data rows.
    pub(crate) fn read(path: &Path, limit: Option<usize>) -> Result<Self, Failure> {
        let name = path.display().to_string();
        let file = File::open(path).map_err(|e| open_failure(&name, &e))?;
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .trim(Trim::All)
            .from_reader(std::io::BufReader::with_capacity(1 << 16, file));
        let header: Vec<String> = reader
            .headers()
            .map_err(|e| csv_failure(&name, &[], &e))?
            .iter()
            .map(str::to_owned)
            .collect();
        if header.is_empty() || (header.len() == 1 && header[0].is_empty()) {
            return Err(Failure::data(format!(
                "{name}: the file is empty; expected a header line naming the columns, then one row per line"
            )));
        }
        check_header(&name, &header)?;
        let mut rows = Vec::new();
        let mut record = StringRecord::new();
        while limit.is_none_or(|n| rows.len() < n) {
            match reader.read_record(&mut record) {
                Ok(true) => rows.push(Row {
                    line: record.position().map_or(0, csv::Position::line),
                    cells: std::mem::take(&mut record),
                }),
                Ok(false) => break,
                Err(e) => return Err(csv_failure(&name, &header, &e)),
            }
        }
        if rows.is_empty() {
            return Err(Failure::data(format!(
                "{name}: no data rows: the file has only the header on line 1"
            )));
        }
        Ok(Self { name, header, rows })
    }

    /// The index of the column called `name`.
    pub(crate) fn column(&self, name: &str) -> Option<usize> {
        self.header.iter().position(|h| h == name)
    }

    /// "rows.csv, line 7, column 3 (`purpose`)".
    pub(crate) fn at(&self, line: u64, column: usize) -> String {
        at(&self.name, &self.header, line, column)
    }
}

fn at(name: &str, header: &[String], line: u64, column: usize) -> String {
    match header.get(column) {
        Some(h) => format!("{name}, line {line}, column {} (`{h}`)", column + 1),
        None => format!("{name}, line {line}, column {}", column + 1),
    }
}

fn check_header(name: &str, header: &[String]) -> Result<(), Failure> {
    for (i, h) in header.iter().enumerate() {
        if h.is_empty() {
            return Err(Failure::data(format!(
                "{name}, line 1, column {}: the column has no name; every column needs one",
                i + 1
            )));
        }
        if let Some(j) = header[..i].iter().position(|other| other == h) {
            return Err(Failure::data(format!(
                "{name}, line 1: columns {} and {} are both named `{h}`",
                j + 1,
                i + 1
            )));
        }
    }
    Ok(())
}

fn open_failure(name: &str, error: &std::io::Error) -> Failure {
    let why = match error.kind() {
        ErrorKind::NotFound => "no such file".to_owned(),
        ErrorKind::PermissionDenied => "permission denied".to_owned(),
        _ => error.to_string(),
    };
    Failure::no_input(format!("{name}: cannot open: {why}"))
}

fn csv_failure(name: &str, header: &[String], error: &csv::Error) -> Failure {
    match error.kind() {
        csv::ErrorKind::UnequalLengths {
            pos,
            expected_len,
            len,
        } => {
            let line = pos.as_ref().map_or(0, csv::Position::line);
            let (expected, len) = (*expected_len as usize, *len as usize);
            let detail = if len < expected {
                let missing = header
                    .get(len)
                    .map_or(String::new(), |h| format!(" (`{h}`)"));
                format!("column {}{missing} and after are missing", len + 1)
            } else {
                format!("column {} has no header", expected + 1)
            };
            let fields = if len == 1 { "field" } else { "fields" };
            Failure::data(format!(
                "{name}, line {line}: the row has {len} {fields} but the header on line 1 has {expected} columns: {detail}"
            ))
        }
        csv::ErrorKind::Utf8 { pos, err } => {
            let line = pos.as_ref().map_or(0, csv::Position::line);
            Failure::data(format!(
                "{}: not valid UTF-8 text",
                at(name, header, line, err.field())
            ))
        }
        csv::ErrorKind::Io(e) => Failure::io(format!("{name}: cannot read: {e}")),
        _ => Failure::data(format!("{name}: {error}")),
    }
}

/// The value of a cell for a feature of `kind`, or what is wrong with it (never the
/// cell's text: it may be personal data, and the line and column find it).
pub(crate) fn value(kind: FeatureKind, cell: &str) -> Result<Value, &'static str> {
    if cell.is_empty() {
        return Ok(Value::Missing);
    }
    match kind {
        FeatureKind::Numeric => number(cell)
            .map(Value::Number)
            .ok_or("text where a number is expected (leave the cell empty for a missing value)"),
        FeatureKind::Boolean => boolean(cell)
            .map(Value::Bool)
            .ok_or("not a boolean (true/false, yes/no, 1/0; empty for missing)"),
        FeatureKind::Categorical => Ok(Value::Text(cell.to_owned())),
    }
}

/// What a cell looks like before the column's kind is known, for `Schema::infer`.
pub(crate) fn guess(cell: &str) -> Value {
    if cell.is_empty() {
        Value::Missing
    } else if cell.eq_ignore_ascii_case("true") {
        Value::Bool(true)
    } else if cell.eq_ignore_ascii_case("false") {
        Value::Bool(false)
    } else {
        Value::Text(cell.to_owned())
    }
}

pub(crate) fn number(cell: &str) -> Option<f64> {
    cell.parse::<f64>().ok()
}

/// The same spellings the encoder accepts for a boolean feature.
fn boolean(cell: &str) -> Option<bool> {
    match cell.to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" => Some(true),
        "false" | "no" | "0" => Some(false),
        _ => None,
    }
}
