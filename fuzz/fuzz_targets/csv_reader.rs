#![no_main]
//! The CSV reader of `sidelight surrogate fit/explain` on arbitrary bytes. The reader is
//! crates/cli/src/surrogate/table.rs itself, compiled in here (the `sidelight` crate is a
//! binary, so it cannot be a dependency). A table it accepts has a header of distinct,
//! non-empty names, at least one row, every row as wide as the header, line numbers that
//! only go up; a limit keeps the first rows; and turning any cell into a value of any
//! kind never panics.

use libfuzzer_sys::fuzz_target;

/// The shape of the `sidelight` crate's `surrogate::Failure` that table.rs uses (it
/// names it `super::Failure`).
#[derive(Debug)]
struct Failure {
    message: String,
}

impl Failure {
    fn data(message: String) -> Self {
        Self { message }
    }
    fn io(message: String) -> Self {
        Self { message }
    }
    fn no_input(message: String) -> Self {
        Self { message }
    }
}

#[allow(dead_code)]
#[path = "../../crates/cli/src/surrogate/table.rs"]
mod table;

use sidelight_explain::{FeatureKind, Value};
use table::Table;

const NAME: &str = "rows.csv";

fuzz_target!(|data: &[u8]| {
    let table = match Table::from_reader(NAME.to_owned(), data, None) {
        Ok(t) => t,
        Err(e) => {
            assert!(
                e.message.starts_with(NAME),
                "the error does not name the file"
            );
            return;
        }
    };
    assert!(!table.header.is_empty());
    for (i, h) in table.header.iter().enumerate() {
        assert!(!h.is_empty(), "an empty column name was accepted");
        assert!(
            !table.header[..i].contains(h),
            "column {h:?} accepted twice"
        );
    }
    assert!(!table.rows.is_empty());
    let mut last = 1;
    for row in &table.rows {
        assert_eq!(
            row.cells.len(),
            table.header.len(),
            "a ragged row was accepted"
        );
        assert!(row.line > last, "line numbers do not go up");
        last = row.line;
        for c in 0..table.header.len() {
            let cell = row.cell(c);
            if let Ok(Value::Number(n)) = table::value(FeatureKind::Numeric, cell) {
                assert_eq!(table::number(cell), Some(n));
            }
            let _ = table::value(FeatureKind::Boolean, cell);
            let _ = table::value(FeatureKind::Categorical, cell);
            let _ = table::guess(cell);
        }
    }
    let first = Table::from_reader(NAME.to_owned(), data, Some(1)).unwrap_or_else(|e| {
        panic!(
            "a limit of one row refuses what the whole read took: {}",
            e.message
        )
    });
    assert_eq!(first.rows.len(), 1);
    assert_eq!(first.rows[0].line, table.rows[0].line);
    assert_eq!(first.rows[0].cells, table.rows[0].cells);
});
