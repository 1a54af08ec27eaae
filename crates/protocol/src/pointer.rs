//! Generic JSON APIs, mapped with two JSON Pointers (RFC 6901): where the rows are and
//! where the outputs are (`""` is the whole document).
//!
//! Rows: an array of objects or arrays (a batch), or one object (a single-row payload,
//! such as `{"applicant": {...}}` with the pointer `/applicant`).
//!
//! Outputs: a number (single row), an array of numbers, an array of arrays (per-class
//! values), or objects with one numeric field. One case is ambiguous — an array of `k`
//! numbers for a one-row request: `k` rows of one value, or one row of `k` class
//! probabilities? With `k` ≠ 1 only the second fits the request, so that is how it reads.

use super::json::{Node, Path};
use super::rows::{from_instances, from_objects, from_predictions, missing, output_row, wrong};
use super::{AdapterError, Outputs, Rows, Side};

fn resolve<'n, 'a>(
    root: &'n Node<'a>,
    pointer: &str,
    side: Side,
) -> Result<&'n Node<'a>, AdapterError> {
    match root.pointer(pointer) {
        Ok(Some(node)) => Ok(node),
        Ok(None) => Err(missing(side, Path::Root(pointer))),
        Err(()) => Err(AdapterError::InvalidPointer {
            pointer: pointer.to_owned(),
        }),
    }
}

pub(super) fn request(root: &Node<'_>, pointer: &str) -> Result<Rows, AdapterError> {
    let node = resolve(root, pointer, Side::Request)?;
    let path = Path::Root(pointer);
    match node {
        Node::Array(items) => from_instances(items, path),
        Node::Object(_) => from_objects(std::slice::from_ref(node), path, true),
        _ => Err(wrong(
            Side::Request,
            path,
            "an array of rows or a single object",
        )),
    }
}

pub(super) fn response(
    root: &Node<'_>,
    pointer: &str,
    expected_rows: usize,
) -> Result<Outputs, AdapterError> {
    let node = resolve(root, pointer, Side::Response)?;
    let path = Path::Root(pointer);
    match node {
        Node::Array(items)
            if expected_rows == 1
                && items.len() > 1
                && items.iter().all(|i| i.as_output_number().is_some()) =>
        {
            // One row's per-class values (see the module note).
            Ok(Outputs {
                rows: vec![output_row(node, path)?],
            })
        }
        Node::Array(items) => from_predictions(items, path, expected_rows),
        _ => {
            let row = output_row(node, path)?;
            if expected_rows != 1 {
                return Err(AdapterError::RowCountMismatch {
                    expected: expected_rows,
                    found: 1,
                });
            }
            Ok(Outputs { rows: vec![row] })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Protocol, Value, parse_request, parse_response};
    use super::*;

    fn protocol(rows: &str, outputs: &str) -> Protocol {
        Protocol::Pointer {
            rows: rows.into(),
            outputs: outputs.into(),
        }
    }

    #[test]
    fn single_object_is_one_row() {
        let p = protocol("/applicant", "/decision/score");
        let rows =
            parse_request(&p, br#"{"applicant": {"age": 30, "owner": true}, "v": 1}"#).unwrap();
        assert_eq!(rows.names, ["age", "owner"]);
        assert_eq!(rows.rows, [vec![Value::Number(30.0), Value::Bool(true)]]);
        let out = parse_response(&p, br#"{"decision": {"score": 0.8}}"#, 1).unwrap();
        assert_eq!(out.rows, [vec![0.8]]);
    }

    #[test]
    fn whole_document_pointer() {
        let p = protocol("", "");
        let rows = parse_request(&p, br#"{"age": 30}"#).unwrap();
        assert_eq!(rows.rows, [vec![Value::Number(30.0)]]);
        let rows = parse_request(&p, br#"[[1, 2], [3, 4]]"#).unwrap();
        assert_eq!(rows.names, ["x0", "x1"]);
        assert_eq!(parse_response(&p, b"0.5", 1).unwrap().rows, [vec![0.5]]);
        assert_eq!(
            parse_response(&p, b"[0.5, 0.7]", 2).unwrap().rows,
            [vec![0.5], vec![0.7]]
        );
    }

    #[test]
    fn batches_and_class_outputs() {
        let p = protocol("/data/rows", "/result/probs");
        let rows = parse_request(
            &p,
            br#"{"data": {"rows": [{"a": 1}, {"b": "x"}, {"a": 3, "b": "y"}]}}"#,
        )
        .unwrap();
        assert_eq!(rows.names, ["a", "b"]);
        assert_eq!(rows.rows[1], [Value::Missing, Value::Text("x".into())]);
        let out = parse_response(
            &p,
            br#"{"result": {"probs": [[0.1, 0.9], [0.5, 0.5], [1, 0]]}}"#,
            3,
        )
        .unwrap();
        assert_eq!(out.rows[2], [1.0, 0.0]);
        // One row, several numbers: that row's class probabilities.
        let out = parse_response(&p, br#"{"result": {"probs": [0.2, 0.3, 0.5]}}"#, 1).unwrap();
        assert_eq!(out.rows, [vec![0.2, 0.3, 0.5]]);
    }

    #[test]
    fn errors_name_the_pointer() {
        let p = protocol("/rows", "/out");
        assert_eq!(
            parse_request(&p, br#"{"other": []}"#).unwrap_err(),
            AdapterError::MissingField {
                side: Side::Request,
                path: "/rows".into()
            }
        );
        assert!(matches!(
            parse_request(&p, br#"{"rows": 3}"#).unwrap_err(),
            AdapterError::WrongType { path, .. } if path == "/rows"
        ));
        assert!(matches!(
            parse_request(&p, br#"{"rows": {"a": [1]}}"#).unwrap_err(),
            AdapterError::WrongType { path, .. } if path == "/rows/a"
        ));
        assert_eq!(
            parse_response(&p, br#"{"out": 1}"#, 2).unwrap_err(),
            AdapterError::RowCountMismatch {
                expected: 2,
                found: 1
            }
        );
        assert_eq!(
            parse_response(&p, br#"{"out": [1, 2, 3]}"#, 2).unwrap_err(),
            AdapterError::RowCountMismatch {
                expected: 2,
                found: 3
            }
        );
        assert!(matches!(
            parse_request(&protocol("rows", ""), b"{}").unwrap_err(),
            AdapterError::InvalidPointer { .. }
        ));
    }
}
