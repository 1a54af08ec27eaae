//! The properties every protocol adapter must keep, whatever the body.

use std::collections::HashSet;

use sidelight_protocol::{AdapterError, Protocol, parse_request, parse_response, write_request};

/// Reading a body as a request and as a response never panics, and what is read is
/// well formed: at least one row, every row as wide as the names, no name twice, and
/// (where the writer can write them) the rows written back read as the same rows; a
/// response's outputs number the rows asked for and share one width of at least one.
pub fn check(protocol: &Protocol, body: &[u8]) {
    if let Ok(read) = parse_request(protocol, body) {
        let (names, rows) = (read.names, read.rows);
        assert!(!rows.is_empty(), "a parsed request has no rows");
        for row in &rows {
            assert_eq!(row.len(), names.len(), "a row is not as wide as the names");
        }
        let mut seen = HashSet::new();
        for name in &names {
            assert!(seen.insert(name), "feature name {name:?} appears twice");
        }
        if let Ok(written) = write_request(protocol, &names, &rows) {
            match parse_request(protocol, &written) {
                Ok(again) => {
                    let (again_names, again_rows) = (again.names, again.rows);
                    assert_eq!(again_names, names, "names change through the writer");
                    assert_eq!(again_rows, rows, "values change through the writer");
                }
                Err(e) => panic!("the writer's own body does not parse: {e}"),
            }
        }
    }
    let mut expected = 1;
    for _ in 0..2 {
        match parse_response(protocol, body, expected) {
            Ok(outputs) => {
                let outputs = outputs.rows;
                assert_eq!(
                    outputs.len(),
                    expected,
                    "outputs do not match the row count"
                );
                let width = outputs.first().map_or(0, Vec::len);
                assert!(width >= 1, "an output row is empty");
                assert!(
                    outputs.iter().all(|o| o.len() == width),
                    "output rows differ in width"
                );
                break;
            }
            // The proxy asks with the request's row count, never zero.
            Err(AdapterError::RowCountMismatch { found, .. }) if found != expected && found > 0 => {
                expected = found
            }
            Err(_) => break,
        }
    }
}
