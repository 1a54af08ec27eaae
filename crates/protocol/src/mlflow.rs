//! The MLflow scoring server (`mlflow models serve`, `/invocations`).
//!
//! Requests carry exactly one of `dataframe_split` (`{columns, data}`, pandas "split"
//! orientation), `dataframe_records` (a list of objects), `instances` (as KServe v1) or
//! `inputs` (a list of rows, or a dictionary of columns). MLflow itself rejects a body
//! with several; if one arrives anyway, the first in that order is read. Responses are
//! `{"predictions": [...]}`, or a bare array from MLflow before 2.0.

use super::json::{Node, Path};
use super::kserve_v1::inputs_rows;
use super::rows::{
    from_instances, from_objects, from_predictions, missing, positional_names, wrong,
};
use super::{AdapterError, Outputs, Rows, Side};

pub(super) fn request(root: &Node<'_>) -> Result<Rows, AdapterError> {
    let top = Path::Root("");
    if !matches!(root, Node::Object(_)) {
        return Err(wrong(Side::Request, top, "an object"));
    }
    if let Some(split) = root.get("dataframe_split") {
        return dataframe_split(split, top.key("dataframe_split"));
    }
    if let Some(records) = root.get("dataframe_records") {
        let path = top.key("dataframe_records");
        return match records {
            Node::Array(items) if items.is_empty() => from_instances(items, path),
            Node::Array(items) => from_objects(items, path, false),
            _ => Err(wrong(Side::Request, path, "an array of objects")),
        };
    }
    if let Some(instances) = root.get("instances") {
        let path = top.key("instances");
        return match instances {
            Node::Array(items) => from_instances(items, path),
            _ => Err(wrong(Side::Request, path, "an array of instances")),
        };
    }
    match root.get("inputs") {
        Some(inputs) => inputs_rows(inputs, top.key("inputs")),
        None => Err(missing(Side::Request, top.key("dataframe_split"))),
    }
}

/// pandas "split": `{"columns": [...], "data": [[...], ...], "index": [...]}`. Without
/// `columns` (pandas allows it) the names are positional.
fn dataframe_split(split: &Node<'_>, path: Path<'_>) -> Result<Rows, AdapterError> {
    if !matches!(split, Node::Object(_)) {
        return Err(wrong(
            Side::Request,
            path,
            "an object with columns and data",
        ));
    }
    let data_path = path.key("data");
    let Some(data) = split.get("data") else {
        return Err(missing(Side::Request, data_path));
    };
    let Node::Array(items) = data else {
        return Err(wrong(Side::Request, data_path, "an array of rows"));
    };
    // Rows of a split frame are arrays; reading them through `from_instances` checks
    // that they all are, and that they are all the same width.
    let mut rows = match items.first() {
        Some(Node::Array(_)) | None => from_instances(items, data_path)?,
        Some(_) => {
            return Err(wrong(
                Side::Request,
                data_path.index(0),
                "an array of values",
            ));
        }
    };
    let columns_path = path.key("columns");
    rows.names = match split.get("columns") {
        None => positional_names(rows.names.len()),
        Some(Node::Array(columns)) => {
            rows.positional = false;
            if columns.len() != rows.names.len() {
                return Err(AdapterError::Ragged {
                    side: Side::Request,
                    path: columns_path.render(),
                    expected: rows.names.len(),
                    found: columns.len(),
                });
            }
            columns
                .iter()
                .enumerate()
                .map(|(i, c)| column_name(c, columns_path.index(i)))
                .collect::<Result<_, _>>()?
        }
        Some(_) => {
            return Err(wrong(
                Side::Request,
                columns_path,
                "an array of column names",
            ));
        }
    };
    Ok(rows)
}

/// pandas allows non-string column labels (integers from a NumPy array); they are named
/// by their text.
fn column_name(node: &Node<'_>, path: Path<'_>) -> Result<String, AdapterError> {
    match node {
        Node::String(s) => Ok(s.as_ref().to_owned()),
        Node::Number(n) => Ok(n.to_string()),
        Node::Bool(b) => Ok(b.to_string()),
        _ => Err(wrong(Side::Request, path, "a column name")),
    }
}

pub(super) fn response(root: &Node<'_>, expected_rows: usize) -> Result<Outputs, AdapterError> {
    let top = Path::Root("");
    match root {
        Node::Array(items) => from_predictions(items, top, expected_rows),
        Node::Object(_) => {
            let path = top.key("predictions");
            match root.get("predictions") {
                Some(Node::Array(items)) => from_predictions(items, path, expected_rows),
                Some(_) => Err(wrong(Side::Response, path, "an array of predictions")),
                None => Err(missing(Side::Response, path)),
            }
        }
        _ => Err(wrong(Side::Response, top, "an object or an array")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Protocol, Value, parse_request, parse_response};
    use super::*;

    fn req(body: &str) -> Result<Rows, AdapterError> {
        parse_request(&Protocol::Mlflow, body.as_bytes())
    }

    fn resp(body: &str, n: usize) -> Result<Outputs, AdapterError> {
        parse_response(&Protocol::Mlflow, body.as_bytes(), n)
    }

    fn expected() -> Rows {
        Rows {
            positional: false,
            names: vec!["age".into(), "city".into()],
            rows: vec![
                vec![Value::Number(30.0), Value::Text("Oslo".into())],
                vec![Value::Number(41.0), Value::Missing],
            ],
        }
    }

    #[test]
    fn four_request_forms_read_alike() {
        let split = r#"{"dataframe_split": {"index": [7, 8], "columns": ["age", "city"],
                        "data": [[30, "Oslo"], [41, null]]}}"#;
        let records = r#"{"dataframe_records": [{"age": 30, "city": "Oslo"}, {"age": 41}]}"#;
        let instances =
            r#"{"instances": [{"age": 30, "city": "Oslo"}, {"age": 41, "city": null}]}"#;
        let inputs = r#"{"inputs": {"age": [30, 41], "city": ["Oslo", null]}, "params": {"k": 1}}"#;
        for body in [split, records, instances, inputs] {
            assert_eq!(req(body).unwrap(), expected(), "{body}");
        }
        let rows = req(r#"{"inputs": [[30, "Oslo"], [41, null]]}"#).unwrap();
        assert_eq!(rows.names, ["x0", "x1"]);
        assert_eq!(rows.rows, expected().rows);
        let one = req(r#"{"inputs": {"age": 30, "city": "Oslo"}}"#).unwrap();
        assert_eq!(one.rows, expected().rows[..1]);
    }

    #[test]
    fn split_without_columns_and_with_numeric_labels() {
        let rows = req(r#"{"dataframe_split": {"data": [[1, 2]]}}"#).unwrap();
        assert_eq!(rows.names, ["x0", "x1"]);
        let rows = req(r#"{"dataframe_split": {"columns": [0, 1], "data": [[1, 2]]}}"#).unwrap();
        assert_eq!(rows.names, ["0", "1"]);
    }

    #[test]
    fn request_errors() {
        assert!(matches!(
            req(r#"{"dataframe_split": {"columns": ["a"], "data": [[1, 2]]}}"#).unwrap_err(),
            AdapterError::Ragged { path, expected: 2, found: 1, .. } if path == "/dataframe_split/columns"
        ));
        assert!(matches!(
            req(r#"{"dataframe_split": {"columns": ["a"], "data": [1]}}"#).unwrap_err(),
            AdapterError::WrongType { path, .. } if path == "/dataframe_split/data/0"
        ));
        assert!(matches!(
            req(r#"{"dataframe_records": [{"a": 1}, [2]]}"#).unwrap_err(),
            AdapterError::WrongType { path, .. } if path == "/dataframe_records/1"
        ));
        assert!(matches!(
            req(r#"{"inputs": {"a": [1, 2], "b": [3]}}"#).unwrap_err(),
            AdapterError::Ragged { path, .. } if path == "/inputs/b"
        ));
        assert!(matches!(
            req(r#"{"dataframe_records": []}"#).unwrap_err(),
            AdapterError::Empty { .. }
        ));
        assert!(matches!(
            req(r#"{"inputs": {}}"#).unwrap_err(),
            AdapterError::Empty { .. }
        ));
        assert!(matches!(
            req(r#"{"params": {}}"#).unwrap_err(),
            AdapterError::MissingField { .. }
        ));
    }

    #[test]
    fn responses_wrapped_and_bare() {
        assert_eq!(
            resp(r#"{"predictions": [0.1, 0.2]}"#, 2).unwrap().rows,
            [vec![0.1], vec![0.2]]
        );
        assert_eq!(resp("[0.1, 0.2]", 2).unwrap().rows, [vec![0.1], vec![0.2]]);
        assert_eq!(
            resp("[[0.1, 0.9], [0.6, 0.4]]", 2).unwrap().rows,
            [vec![0.1, 0.9], vec![0.6, 0.4]]
        );
        assert_eq!(
            resp(
                r#"{"predictions": [{"prediction": 3}, {"prediction": 4}]}"#,
                2
            )
            .unwrap()
            .rows,
            [vec![3.0], vec![4.0]]
        );
        assert_eq!(
            resp("[1]", 2).unwrap_err(),
            AdapterError::RowCountMismatch {
                expected: 2,
                found: 1
            }
        );
        assert!(matches!(
            resp("3", 1).unwrap_err(),
            AdapterError::WrongType { .. }
        ));
    }
}
