//! Shapes shared by several protocols: lists of row instances, dictionaries of columns,
//! and lists of per-row predictions.

use std::collections::HashMap;

use super::json::{Node, Path};
use super::{AdapterError, Outputs, Rows, Side, Value};

const SCALAR: &str = "a number, string, boolean or null";

/// One feature value. Nested arrays or objects are not tabular: no feature can hold them.
pub(super) fn cell(node: &Node<'_>, path: Path<'_>) -> Result<Value, AdapterError> {
    Ok(match node {
        Node::Null => Value::Missing,
        Node::Bool(b) => Value::Bool(*b),
        Node::Number(n) => Value::Number(*n),
        Node::String(s) => Value::Text(s.as_ref().to_owned()),
        Node::Array(_) | Node::Object(_) => return Err(wrong(Side::Request, path, SCALAR)),
    })
}

pub(super) fn wrong(side: Side, path: Path<'_>, expected: &'static str) -> AdapterError {
    AdapterError::WrongType {
        side,
        path: path.render(),
        expected,
    }
}

pub(super) fn missing(side: Side, path: Path<'_>) -> AdapterError {
    AdapterError::MissingField {
        side,
        path: path.render(),
    }
}

/// `x0`, `x1`, … for rows that carry no names.
pub(super) fn positional_names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("x{i}")).collect()
}

/// Rows from a list of instances, each an array of values, an object of values, or a
/// single value (a one-feature model). The first instance decides which; the rest must
/// agree.
pub(super) fn from_instances(items: &[Node<'_>], path: Path<'_>) -> Result<Rows, AdapterError> {
    match items.first() {
        None => Err(AdapterError::Empty {
            side: Side::Request,
            path: path.render(),
        }),
        Some(Node::Object(_)) => from_objects(items, path, false),
        Some(Node::Array(_)) => from_arrays(items, path),
        Some(_) => {
            let rows = items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    if item.is_scalar() {
                        cell(item, path.index(i)).map(|v| vec![v])
                    } else {
                        Err(wrong(
                            Side::Request,
                            path.index(i),
                            "a single value, like the first row",
                        ))
                    }
                })
                .collect::<Result<_, _>>()?;
            Ok(Rows {
                names: positional_names(1),
                rows,
                positional: true,
            })
        }
    }
}

/// Rows from objects: names are the union of keys in first-seen order; a key a row lacks
/// is [`Value::Missing`] there. With `single`, `items` is one object at `path` itself (a
/// single-row payload) rather than a list.
pub(super) fn from_objects(
    items: &[Node<'_>],
    path: Path<'_>,
    single: bool,
) -> Result<Rows, AdapterError> {
    let mut names: Vec<String> = Vec::new();
    // Only consulted when a row's keys are not in the order already seen; the common
    // case (every object written alike) is a positional string compare per cell.
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut rows = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let row_path = if single { path } else { path.index(i) };
        let Node::Object(members) = item else {
            return Err(wrong(
                Side::Request,
                row_path,
                "an object, like the first row",
            ));
        };
        let mut row = vec![Value::Missing; names.len()];
        for (j, (key, value)) in members.iter().enumerate() {
            let key: &str = key;
            let column = if names.get(j).is_some_and(|n| n == key) {
                j
            } else if let Some(&c) = index.get(key) {
                c
            } else {
                let c = names.len();
                names.push(key.to_owned());
                index.insert(key, c);
                row.push(Value::Missing);
                c
            };
            row[column] = cell(value, row_path.key(key))?;
        }
        rows.push(row);
    }
    if rows.is_empty() {
        return Err(AdapterError::Empty {
            side: Side::Request,
            path: path.render(),
        });
    }
    // Rows read before a later row brought a new key lack that column.
    for row in &mut rows {
        row.resize(names.len(), Value::Missing);
    }
    Ok(Rows {
        names,
        rows,
        positional: false,
    })
}

/// Rows from arrays of values, all of the first one's length; names are positional.
fn from_arrays(items: &[Node<'_>], path: Path<'_>) -> Result<Rows, AdapterError> {
    let mut width = None;
    let mut rows = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let row_path = path.index(i);
        let Node::Array(values) = item else {
            return Err(wrong(
                Side::Request,
                row_path,
                "an array, like the first row",
            ));
        };
        let expected = *width.get_or_insert(values.len());
        if values.len() != expected {
            return Err(AdapterError::Ragged {
                side: Side::Request,
                path: row_path.render(),
                expected,
                found: values.len(),
            });
        }
        // A plain loop: collecting into `Result<Vec<_>, _>` loses the size hint and
        // regrows the row several times.
        let mut row = Vec::with_capacity(values.len());
        for (j, v) in values.iter().enumerate() {
            row.push(cell(v, row_path.index(j))?);
        }
        rows.push(row);
    }
    Ok(Rows {
        names: positional_names(width.unwrap_or(0)),
        rows,
        positional: true,
    })
}

/// Rows from a dictionary of columns, `{"a": [1, 2], "b": [3, 4]}` (transposed), or of
/// single values, `{"a": 1, "b": 3}` (one row).
pub(super) fn from_columns(
    members: &[(std::borrow::Cow<'_, str>, Node<'_>)],
    path: Path<'_>,
) -> Result<Rows, AdapterError> {
    let empty = || AdapterError::Empty {
        side: Side::Request,
        path: path.render(),
    };
    let Some((_, first)) = members.first() else {
        return Err(empty());
    };
    let names = members.iter().map(|(k, _)| k.as_ref().to_owned()).collect();
    if first.is_scalar() {
        let row = members
            .iter()
            .map(|(k, v)| cell(v, path.key(k)))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Rows {
            names,
            rows: vec![row],
            positional: false,
        });
    }
    let mut rows: Vec<Vec<Value>> = Vec::new();
    for (c, (key, column)) in members.iter().enumerate() {
        let column_path = path.key(key);
        let Node::Array(values) = column else {
            return Err(wrong(
                Side::Request,
                column_path,
                "an array, like the first column",
            ));
        };
        if c == 0 {
            if values.is_empty() {
                return Err(empty());
            }
            rows = (0..values.len())
                .map(|_| Vec::with_capacity(members.len()))
                .collect();
        } else if values.len() != rows.len() {
            return Err(AdapterError::Ragged {
                side: Side::Request,
                path: column_path.render(),
                expected: rows.len(),
                found: values.len(),
            });
        }
        for (r, (row, value)) in rows.iter_mut().zip(values).enumerate() {
            row.push(cell(value, column_path.index(r))?);
        }
    }
    Ok(Rows {
        names,
        rows,
        positional: false,
    })
}

const PREDICTION: &str = "a number, an array of numbers, or an object with one numeric field";

/// Fields a prediction object may name its output with, most informative first:
/// probabilities explain better than a thresholded label.
const PREFERRED_FIELDS: [&str; 5] = [
    "probabilities",
    "predict_proba",
    "probability",
    "score",
    "prediction",
];

/// One row's output: a number, an array of numbers (one per class), or an object with
/// one numeric field (or several, one of them a [`PREFERRED_FIELDS`] name).
pub(super) fn output_row(node: &Node<'_>, path: Path<'_>) -> Result<Vec<f64>, AdapterError> {
    if let Some(n) = node.as_output_number() {
        return Ok(vec![n]);
    }
    match node {
        Node::Array(_) => numbers(node).ok_or_else(|| wrong(Side::Response, path, PREDICTION)),
        Node::Object(members) => {
            let numeric: Vec<(&str, &Node<'_>)> = members
                .iter()
                .filter(|(_, v)| v.as_output_number().is_some() || numbers(v).is_some())
                .map(|(k, v)| (k.as_ref(), v))
                .collect();
            let chosen = match numeric.as_slice() {
                [] => return Err(wrong(Side::Response, path, PREDICTION)),
                [(_, only)] => *only,
                several => {
                    let preferred = PREFERRED_FIELDS
                        .iter()
                        .find_map(|p| several.iter().find(|(k, _)| k == p));
                    match preferred {
                        Some((_, v)) => *v,
                        None => {
                            let fields: Vec<&str> = several.iter().map(|(k, _)| *k).collect();
                            return Err(AdapterError::Ambiguous {
                                side: Side::Response,
                                path: path.render(),
                                fields: fields.join(", "),
                            });
                        }
                    }
                }
            };
            match chosen.as_output_number() {
                Some(n) => Ok(vec![n]),
                None => numbers(chosen).ok_or_else(|| wrong(Side::Response, path, PREDICTION)),
            }
        }
        _ => Err(wrong(Side::Response, path, PREDICTION)),
    }
}

/// A non-empty array of numbers.
fn numbers(node: &Node<'_>) -> Option<Vec<f64>> {
    match node {
        Node::Array(items) if !items.is_empty() => {
            items.iter().map(Node::as_output_number).collect()
        }
        _ => None,
    }
}

/// Outputs from a list of per-row predictions, which must number `expected_rows` and all
/// have the same width.
pub(super) fn from_predictions(
    items: &[Node<'_>],
    path: Path<'_>,
    expected_rows: usize,
) -> Result<Outputs, AdapterError> {
    // Checked first: when the count is off, that is the more useful thing to report.
    if items.len() != expected_rows {
        return Err(AdapterError::RowCountMismatch {
            expected: expected_rows,
            found: items.len(),
        });
    }
    let mut width = None;
    let mut rows = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let row_path = path.index(i);
        let row = output_row(item, row_path)?;
        let expected = *width.get_or_insert(row.len());
        if row.len() != expected {
            return Err(AdapterError::Ragged {
                side: Side::Response,
                path: row_path.render(),
                expected,
                found: row.len(),
            });
        }
        rows.push(row);
    }
    Ok(Outputs { rows })
}

#[cfg(test)]
mod tests {
    use super::super::json::parse;
    use super::*;

    fn outputs(text: &str, expected: usize) -> Result<Outputs, AdapterError> {
        let node = parse(text.as_bytes(), Side::Response)?;
        match &node {
            Node::Array(items) => from_predictions(items, Path::Root("/predictions"), expected),
            _ => panic!("test input must be an array"),
        }
    }

    #[test]
    fn predictions_numbers_arrays_objects_and_bools() {
        assert_eq!(outputs("[1, 2.5]", 2).unwrap().rows, [vec![1.0], vec![2.5]]);
        assert_eq!(
            outputs("[[0.2, 0.8], [0.9, 0.1]]", 2).unwrap().rows,
            [vec![0.2, 0.8], vec![0.9, 0.1]]
        );
        assert_eq!(
            outputs("[true, false]", 2).unwrap().rows,
            [vec![1.0], vec![0.0]]
        );
        assert_eq!(
            outputs(r#"[{"label": "yes", "p": 0.7}]"#, 1).unwrap().rows,
            [vec![0.7]]
        );
        assert_eq!(
            outputs(r#"[{"label": 1, "probability": 0.7, "score": 3}]"#, 1)
                .unwrap()
                .rows,
            [vec![0.7]]
        );
        assert_eq!(
            outputs(r#"[{"class": "b", "probabilities": [0.1, 0.9]}]"#, 1)
                .unwrap()
                .rows,
            [vec![0.1, 0.9]]
        );
    }

    #[test]
    fn ambiguous_object_names_fields_not_values() {
        let err = outputs(r#"[1, {"a": 0.125, "b": 0.375}]"#, 2).unwrap_err();
        assert_eq!(
            err,
            AdapterError::Ambiguous {
                side: Side::Response,
                path: "/predictions/1".into(),
                fields: "a, b".into()
            }
        );
        let msg = err.to_string();
        assert!(msg.contains("a, b") && !msg.contains("0.125"), "{msg}");
    }

    #[test]
    fn prediction_errors() {
        assert_eq!(
            outputs("[1, 2]", 3).unwrap_err(),
            AdapterError::RowCountMismatch {
                expected: 3,
                found: 2
            }
        );
        assert_eq!(
            outputs(r#"[1, "cat"]"#, 2).unwrap_err(),
            AdapterError::WrongType {
                side: Side::Response,
                path: "/predictions/1".into(),
                expected: PREDICTION
            }
        );
        assert!(matches!(
            outputs("[[0.1, 0.9], [1]]", 2).unwrap_err(),
            AdapterError::Ragged {
                expected: 2,
                found: 1,
                ..
            }
        ));
        assert!(matches!(
            outputs("[[]]", 1).unwrap_err(),
            AdapterError::WrongType { .. }
        ));
        assert!(matches!(
            outputs(r#"[{"label": "x"}]"#, 1).unwrap_err(),
            AdapterError::WrongType { .. }
        ));
    }
}
