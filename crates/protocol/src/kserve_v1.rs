//! KServe v1 (the TF Serving REST shape): `{"instances": [...]}` in,
//! `{"predictions": [...]}` out.
//!
//! The v1 protocol also allows `{"inputs": ...}`: a list (read like `instances`) or TF
//! Serving's columnar dictionary of named inputs (transposed into rows). The answer to a
//! columnar request may come as `{"outputs": [...]}`, read like `predictions`.

use super::json::{Node, Path};
use super::rows::{from_columns, from_instances, from_predictions, missing, wrong};
use super::{AdapterError, Outputs, Rows, Side};

pub(super) fn request(root: &Node<'_>) -> Result<Rows, AdapterError> {
    let top = Path::Root("");
    if !matches!(root, Node::Object(_)) {
        return Err(wrong(Side::Request, top, "an object"));
    }
    if let Some(instances) = root.get("instances") {
        let path = top.key("instances");
        return match instances {
            Node::Array(items) => from_instances(items, path),
            _ => Err(wrong(Side::Request, path, "an array of instances")),
        };
    }
    match root.get("inputs") {
        Some(inputs) => {
            let path = top.key("inputs");
            inputs_rows(inputs, path)
        }
        None => Err(missing(Side::Request, top.key("instances"))),
    }
}

/// `inputs` as MLflow and TF Serving write it: a list of rows, or a dictionary of
/// columns.
pub(super) fn inputs_rows(inputs: &Node<'_>, path: Path<'_>) -> Result<Rows, AdapterError> {
    match inputs {
        Node::Array(items) => from_instances(items, path),
        Node::Object(members) => from_columns(members, path),
        _ => Err(wrong(
            Side::Request,
            path,
            "an array of rows or an object of columns",
        )),
    }
}

pub(super) fn response(root: &Node<'_>, expected_rows: usize) -> Result<Outputs, AdapterError> {
    let top = Path::Root("");
    if !matches!(root, Node::Object(_)) {
        return Err(wrong(Side::Response, top, "an object"));
    }
    let (key, node) = match (root.get("predictions"), root.get("outputs")) {
        (Some(p), _) => ("predictions", p),
        (None, Some(o)) => ("outputs", o),
        (None, None) => return Err(missing(Side::Response, top.key("predictions"))),
    };
    let path = top.key(key);
    match node {
        Node::Array(items) => from_predictions(items, path, expected_rows),
        _ => Err(wrong(Side::Response, path, "an array of predictions")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Protocol, Value, parse_request, parse_response};
    use super::*;

    fn req(body: &str) -> Result<Rows, AdapterError> {
        parse_request(&Protocol::KServeV1, body.as_bytes())
    }

    fn resp(body: &str, n: usize) -> Result<Outputs, AdapterError> {
        parse_response(&Protocol::KServeV1, body.as_bytes(), n)
    }

    #[test]
    fn array_instances_get_positional_names_in_order() {
        let rows = req(r#"{"instances": [[1, "a", true, null], [2.5, "b", false, 0]]}"#).unwrap();
        assert_eq!(rows.names, ["x0", "x1", "x2", "x3"]);
        assert_eq!(
            rows.rows,
            [
                vec![
                    Value::Number(1.0),
                    Value::Text("a".into()),
                    Value::Bool(true),
                    Value::Missing
                ],
                vec![
                    Value::Number(2.5),
                    Value::Text("b".into()),
                    Value::Bool(false),
                    Value::Number(0.0)
                ],
            ]
        );
    }

    #[test]
    fn object_instances_union_keys_in_first_seen_order() {
        let rows = req(r#"{"instances": [
            {"zeta": 1, "age": 30},
            {"age": 40, "income": 5, "zeta": 2},
            {"income": 7}
        ]}"#)
        .unwrap();
        assert_eq!(rows.names, ["zeta", "age", "income"]);
        use Value::{Missing, Number};
        assert_eq!(
            rows.rows,
            [
                vec![Number(1.0), Number(30.0), Missing],
                vec![Number(2.0), Number(40.0), Number(5.0)],
                vec![Missing, Missing, Number(7.0)],
            ]
        );
    }

    #[test]
    fn scalar_instances_are_one_feature() {
        let rows = req(r#"{"instances": [1, 2, 3]}"#).unwrap();
        assert_eq!(rows.names, ["x0"]);
        assert_eq!(rows.rows.len(), 3);
    }

    #[test]
    fn inputs_list_and_columns() {
        let list = req(r#"{"inputs": [[1, 2], [3, 4]]}"#).unwrap();
        let cols = req(r#"{"inputs": {"a": [1, 3], "b": [2, 4]}}"#).unwrap();
        assert_eq!(list.rows, cols.rows);
        assert_eq!(cols.names, ["a", "b"]);
    }

    #[test]
    fn request_errors_name_the_path() {
        assert_eq!(
            req(r#"{"instances": [{"age": 1}, {"age": [1]}]}"#).unwrap_err(),
            AdapterError::WrongType {
                side: Side::Request,
                path: "/instances/1/age".into(),
                expected: "a number, string, boolean or null"
            }
        );
        assert_eq!(
            req(r#"{"instances": [[1, 2], [3]]}"#).unwrap_err(),
            AdapterError::Ragged {
                side: Side::Request,
                path: "/instances/1".into(),
                expected: 2,
                found: 1
            }
        );
        assert!(matches!(
            req(r#"{"instances": [[1], {"a": 1}]}"#).unwrap_err(),
            AdapterError::WrongType { path, .. } if path == "/instances/1"
        ));
        assert!(matches!(
            req(r#"{"instances": []}"#).unwrap_err(),
            AdapterError::Empty { .. }
        ));
        assert!(matches!(
            req(r#"{"signature_name": "x"}"#).unwrap_err(),
            AdapterError::MissingField { path, .. } if path == "/instances"
        ));
        assert!(matches!(
            req("[1]").unwrap_err(),
            AdapterError::WrongType { .. }
        ));
        assert!(matches!(
            req("nope").unwrap_err(),
            AdapterError::NotJson { .. }
        ));
    }

    #[test]
    fn error_messages_carry_no_values() {
        let err = req(r#"{"instances": [{"ssn": {"n": "123-45-6789"}}]}"#).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("/instances/0/ssn"), "{msg}");
        assert!(!msg.contains("123-45"), "{msg}");
    }

    #[test]
    fn responses() {
        assert_eq!(
            resp(r#"{"predictions": [0.5, 1]}"#, 2).unwrap().rows,
            [vec![0.5], vec![1.0]]
        );
        assert_eq!(
            resp(r#"{"predictions": [[0.3, 0.7]], "model": "m"}"#, 1)
                .unwrap()
                .rows,
            [vec![0.3, 0.7]]
        );
        assert_eq!(
            resp(r#"{"predictions": [{"score": 0.9, "rank": 1}]}"#, 1)
                .unwrap()
                .rows,
            [vec![0.9]]
        );
        assert_eq!(resp(r#"{"outputs": [4]}"#, 1).unwrap().rows, [vec![4.0]]);
        assert_eq!(
            resp(r#"{"predictions": [1, 2]}"#, 1).unwrap_err(),
            AdapterError::RowCountMismatch {
                expected: 1,
                found: 2
            }
        );
        assert_eq!(
            resp(r#"{"error": "x"}"#, 1).unwrap_err().reason(),
            "unparseable_response"
        );
        assert_eq!(
            resp(r#"{"predictions": 1}"#, 1).unwrap_err().reason(),
            "unparseable_response"
        );
    }
}
