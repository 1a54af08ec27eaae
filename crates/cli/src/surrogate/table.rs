//! Reading CSV files of rows into memory, with every error pointing at a file, a line and
//! a column, and turning cells into the values a surrogate reads.
//!
//! Line numbers are the ones an editor shows: 1-based, the header is line 1, and a quoted
//! field that spans lines moves the count on. The `csv` crate's own line numbers are one
//! short after a `\r\n` ending or a blank line (a record starts, for it, where the last
//! one ended), so the lines are counted here ([`Lines`]).

use std::fs::File;
use std::io::{ErrorKind, Read};
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
        Self::from_reader(
            name,
            std::io::BufReader::with_capacity(1 << 16, file),
            limit,
        )
    }

    /// Reads CSV text from `input`, named `name` in messages. Apart from [`Table::read`],
    /// the fuzz target `csv_reader` (fuzz/) calls it on bytes in memory.
    pub(crate) fn from_reader(
        name: String,
        input: impl Read,
        limit: Option<usize>,
    ) -> Result<Self, Failure> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .trim(Trim::All)
            .from_reader(Lines::new(input));
        let header: Vec<String> = match reader.headers() {
            Ok(header) => header.iter().map(str::to_owned).collect(),
            Err(e) => return Err(csv_failure(&name, &[], &e, reader.get_ref())),
        };
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
                    line: reader.get_ref().line(record.position()),
                    cells: std::mem::take(&mut record),
                }),
                Ok(false) => break,
                Err(e) => return Err(csv_failure(&name, &header, &e, reader.get_ref())),
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

/// The input, passed through to the CSV parser, with where its line breaks are.
struct Lines<R> {
    inner: R,
    /// Bytes read so far.
    offset: u64,
    /// Where each line ends: every `\n`, and every `\r` not followed by one (old Mac
    /// files; the parser ends records there too).
    newlines: Vec<u64>,
    /// A `\r` read last, not yet known to start a `\r\n`.
    pending_cr: Option<u64>,
    /// Offsets of every `\r` and `\n`: the bytes that may lie between a record's start
    /// as the `csv` crate reports it and its first byte.
    breaks: Vec<u64>,
}

impl<R: Read> Lines<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            offset: 0,
            newlines: Vec::new(),
            pending_cr: None,
            breaks: Vec::new(),
        }
    }

    /// The 1-based line of the record at `position`: the line of its first byte after
    /// any line breaks (the parser reads ahead, so those have been seen).
    fn line(&self, position: Option<&csv::Position>) -> u64 {
        let Some(position) = position else {
            return 0;
        };
        let mut start = position.byte();
        while self.breaks.binary_search(&start).is_ok() {
            start += 1;
        }
        let pending = self.pending_cr.is_some_and(|cr| cr < start);
        1 + self.newlines.partition_point(|&n| n < start) as u64 + u64::from(pending)
    }
}

impl<R: Read> Read for Lines<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        for (i, b) in buf[..n].iter().enumerate() {
            let at = self.offset + i as u64;
            if let Some(cr) = self.pending_cr.take().filter(|_| *b != b'\n') {
                self.newlines.push(cr);
            }
            match b {
                b'\n' => {
                    self.breaks.push(at);
                    self.newlines.push(at);
                }
                b'\r' => {
                    self.breaks.push(at);
                    self.pending_cr = Some(at);
                }
                _ => {}
            }
        }
        self.offset += n as u64;
        Ok(n)
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

fn csv_failure<R: Read>(
    name: &str,
    header: &[String],
    error: &csv::Error,
    lines: &Lines<R>,
) -> Failure {
    match error.kind() {
        csv::ErrorKind::UnequalLengths {
            pos,
            expected_len,
            len,
        } => {
            let line = lines.line(pos.as_ref());
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
            let line = lines.line(pos.as_ref());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(text: &[u8]) -> Vec<u64> {
        match Table::from_reader("rows.csv".to_owned(), text, None) {
            Ok(table) => table.rows.iter().map(|r| r.line).collect(),
            Err(e) => panic!("{}", e.message),
        }
    }

    fn failure(text: &[u8]) -> String {
        match Table::from_reader("rows.csv".to_owned(), text, None) {
            Ok(_) => panic!("read without error"),
            Err(e) => e.message,
        }
    }

    /// Regression from fuzzing (fuzz/ csv_reader): with `\r\n` endings every row was
    /// reported one line early, so an error pointed at the row above the wrong one.
    #[test]
    fn rows_have_the_lines_an_editor_shows() {
        assert_eq!(lines_of(b"a,b\n1,2\n3,4\n"), [2, 3]);
        assert_eq!(lines_of(b"a,b\r\n1,2\r\n3,\r\n"), [2, 3]);
        assert_eq!(lines_of(b"\xef\xbb\xbfa,b\r\n1,2\r\n3,\r\n"), [2, 3]);
        assert_eq!(lines_of(b"a,b\n\n1,2\n\r\n\n3,4"), [3, 6]);
        assert_eq!(lines_of(b"a,b\r\n\"two\r\nlines\",1\r\n2,3\r\n"), [2, 4]);
        assert_eq!(lines_of(b"a\r\0 /o"), [2]);
        assert_eq!(lines_of(b"a,b\r1,2\r\r3,4\r"), [2, 4]);
    }

    #[test]
    fn errors_name_the_right_line_with_crlf_endings() {
        let message = failure(b"a,b\r\n1,2\r\n3\r\n");
        assert!(
            message.starts_with("rows.csv, line 3: the row has 1 field"),
            "{message}"
        );
        let message = failure(b"a,b\r\n1,2\r\n\r\n3,\xff\r\n");
        assert!(
            message.starts_with("rows.csv, line 4, column 2 (`b`)"),
            "{message}"
        );
    }
}
