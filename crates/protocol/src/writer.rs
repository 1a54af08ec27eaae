//! Request writers: feature rows back into a protocol's request body, so that Sidelight
//! can ask the real model about rows it made up (the probe check's coalition rows).
//!
//! Each writer produces a body that this crate's own parser reads back into the same
//! names and values (tested below), in the shape most servers of the protocol accept:
//!
//! - KServe v1: `{"instances": [{name: value, …}, …]}`; rows with positional names
//!   (`x0`, `x1`, …) go as arrays, since that is how they arrived;
//! - Open Inference v2: one tensor per feature, shape `[batch]`, datatype FP64 for
//!   numbers, BOOL for booleans, BYTES for text; features named `t[0]`, `t[1]`, … (from
//!   one `[batch, n]` tensor) go back as that one tensor;
//! - MLflow: `{"dataframe_split": {"columns": […], "data": [[…], …]}}`;
//! - Pointer: one row per body, an object (an array for positional names) placed at the
//!   rows pointer, with the objects the pointer passes through built around it.
//!
//! Objects are written by hand rather than through `serde_json::Map` so that members keep
//! the feature order (the map sorts its keys).
//!
//! Besides its rows, a request may carry members the server needs: a v2 `outputs` list
//! asking for probabilities rather than labels (MLServer answers labels without it),
//! `parameters`, a signature name. [`request_extras`] takes them from a client's request
//! and [`with_extras`] adds them to a written body, so rows Sidelight writes itself are
//! answered the way the client's were.

use std::fmt::Write as _;

use super::json::unescape_token;
use super::{Protocol, Value};

/// Why rows cannot be written in a protocol's request format. Names features and
/// counts, never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[allow(missing_docs)] // each variant's message says what it means
pub enum WriteError {
    #[error("no rows to write")]
    Empty,
    #[error("a row has {found} values for {expected} feature names")]
    Ragged { expected: usize, found: usize },
    #[error("the pointer and ranking protocols send one row per request; {0} were given")]
    OneRowOnly(usize),
    #[error("{0:?} is not a valid JSON Pointer (RFC 6901) where a body can be written")]
    InvalidPointer(String),
    #[error("feature {0:?} of a ranking route is neither a context. nor an item. feature")]
    NotRanking(String),
    #[error(
        "feature {feature:?} cannot be written as a v2 tensor: its values are missing or \
         of mixed kinds"
    )]
    Untyped { feature: String },
}

/// Writes `rows` (each with one value per name, in `names` order) as a request body.
pub fn write_request(
    protocol: &Protocol,
    names: &[String],
    rows: &[Vec<Value>],
) -> Result<Vec<u8>, WriteError> {
    if rows.is_empty() {
        return Err(WriteError::Empty);
    }
    if let Some(row) = rows.iter().find(|r| r.len() != names.len()) {
        return Err(WriteError::Ragged {
            expected: names.len(),
            found: row.len(),
        });
    }
    let mut out = String::with_capacity(64 + rows.len() * names.len() * 16);
    match protocol {
        Protocol::KServeV1 => {
            out.push_str("{\"instances\":");
            write_rows(&mut out, names, rows);
            out.push('}');
        }
        Protocol::Mlflow => {
            out.push_str("{\"dataframe_split\":{\"columns\":[");
            for (i, name) in names.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_str(&mut out, name);
            }
            out.push_str("],\"data\":[");
            for (i, row) in rows.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_array(&mut out, row);
            }
            out.push_str("]}}");
        }
        Protocol::OpenInferenceV2 => write_v2(&mut out, names, rows)?,
        Protocol::Ranking { shape, .. } => {
            let [row] = rows else {
                return Err(WriteError::OneRowOnly(rows.len()));
            };
            return write_ranking(shape, names, row);
        }
        Protocol::Pointer { rows: pointer, .. } => {
            let [row] = rows else {
                return Err(WriteError::OneRowOnly(rows.len()));
            };
            let tokens: Vec<String> = if pointer.is_empty() {
                Vec::new()
            } else {
                pointer
                    .strip_prefix('/')
                    .ok_or_else(|| WriteError::InvalidPointer(pointer.clone()))?
                    .split('/')
                    .map(|t| {
                        unescape_token(t)
                            .map(|t| t.into_owned())
                            .map_err(|()| WriteError::InvalidPointer(pointer.clone()))
                    })
                    .collect::<Result<_, _>>()?
            };
            for token in &tokens {
                out.push('{');
                write_str(&mut out, token);
                out.push(':');
            }
            if is_positional(names) {
                // Arrays at the pointer are a batch: one row of them.
                out.push('[');
                write_array(&mut out, row);
                out.push(']');
            } else {
                write_object(&mut out, names, row);
            }
            for _ in &tokens {
                out.push('}');
            }
        }
    }
    Ok(out.into_bytes())
}

/// The members of a request body besides its rows (and besides a v2 request `id`, which
/// names one client request), as the text of JSON object members without the braces
/// (`"outputs":[…],"parameters":{…}`); empty when there are none. `None` when the body is
/// not a JSON object, or for the pointer protocol, whose rows may sit anywhere.
pub fn request_extras(protocol: &Protocol, body: &[u8]) -> Option<String> {
    let rows_members: &[&str] = match protocol {
        Protocol::KServeV1 => &["instances", "inputs"],
        Protocol::OpenInferenceV2 => &["inputs", "id"],
        Protocol::Mlflow => &[
            "dataframe_split",
            "dataframe_records",
            "instances",
            "inputs",
        ],
        Protocol::Pointer { .. } | Protocol::Ranking { .. } => return None,
    };
    let serde_json::Value::Object(members) = serde_json::from_slice(body).ok()? else {
        return None;
    };
    let mut out = String::new();
    for (key, value) in members {
        if rows_members.contains(&key.as_str()) {
            continue;
        }
        let Ok(value) = serde_json::to_string(&value) else {
            continue;
        };
        if !out.is_empty() {
            out.push(',');
        }
        write_str(&mut out, &key);
        out.push(':');
        out.push_str(&value);
    }
    Some(out)
}

/// Adds `extras` (from [`request_extras`]) to a body [`write_request`] wrote.
pub fn with_extras(mut body: Vec<u8>, extras: &str) -> Vec<u8> {
    if extras.is_empty() || body.last() != Some(&b'}') {
        return body;
    }
    body.pop();
    body.push(b',');
    body.extend_from_slice(extras.as_bytes());
    body.push(b'}');
    body
}

/// One row of a ranking route as a request of its own: the `context.` features as the
/// context object, the `item.` features as the one candidate, whose id (when the route
/// names an id field) is `"0"`, its position, as [`crate::parse_response`] expects.
fn write_ranking(
    shape: &crate::RankingShape,
    names: &[String],
    row: &[Value],
) -> Result<Vec<u8>, WriteError> {
    let (mut context, mut item) = (Vec::new(), Vec::new());
    for (name, value) in names.iter().zip(row) {
        if let Some(n) = name.strip_prefix(crate::CONTEXT_PREFIX) {
            context.push((n.to_owned(), value));
        } else if let Some(n) = name.strip_prefix(crate::ITEM_PREFIX) {
            item.push((n.to_owned(), value));
        } else {
            return Err(WriteError::NotRanking(name.clone()));
        }
    }
    let as_json = |part: &[(String, &Value)]| -> serde_json::Value {
        let part_names: Vec<String> = part.iter().map(|(n, _)| n.clone()).collect();
        if !part.is_empty() && is_positional(&part_names) {
            serde_json::Value::Array(part.iter().map(|(_, v)| json_value(v)).collect())
        } else {
            serde_json::Value::Object(
                part.iter()
                    .map(|(n, v)| (n.clone(), json_value(v)))
                    .collect(),
            )
        }
    };
    let mut candidate = as_json(&item);
    if let (Some(field), serde_json::Value::Object(members)) = (&shape.id_field, &mut candidate) {
        members.insert(field.clone(), serde_json::Value::String("0".into()));
    }
    let mut root = serde_json::Value::Object(serde_json::Map::new());
    set_at(&mut root, &shape.context, as_json(&context))?;
    set_at(
        &mut root,
        &shape.candidates,
        serde_json::Value::Array(vec![candidate]),
    )?;
    serde_json::to_vec(&root).map_err(|_| WriteError::InvalidPointer(shape.candidates.clone()))
}

fn json_value(value: &Value) -> serde_json::Value {
    match value {
        Value::Number(n) => serde_json::Number::from_f64(*n)
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
        Value::Missing => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Text(s) => serde_json::Value::String(s.clone()),
    }
}

/// Puts `value` at `pointer` in `root`, making the objects on the way.
fn set_at(
    root: &mut serde_json::Value,
    pointer: &str,
    value: serde_json::Value,
) -> Result<(), WriteError> {
    let invalid = || WriteError::InvalidPointer(pointer.to_owned());
    if pointer.is_empty() {
        return Err(invalid());
    }
    let tokens: Vec<String> = pointer
        .strip_prefix('/')
        .ok_or_else(invalid)?
        .split('/')
        .map(|t| {
            unescape_token(t)
                .map(|t| t.into_owned())
                .map_err(|()| invalid())
        })
        .collect::<Result<_, _>>()?;
    let mut at = root;
    for (k, token) in tokens.iter().enumerate() {
        let serde_json::Value::Object(members) = at else {
            return Err(invalid());
        };
        if k + 1 == tokens.len() {
            members.insert(token.clone(), value);
            return Ok(());
        }
        at = members
            .entry(token.clone())
            .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
    }
    Err(invalid())
}

/// `x0`, `x1`, …: the names the parsers give rows that carried none.
fn is_positional(names: &[String]) -> bool {
    names
        .iter()
        .enumerate()
        .all(|(i, n)| n.strip_prefix('x') == Some(i.to_string().as_str()))
}

fn write_rows(out: &mut String, names: &[String], rows: &[Vec<Value>]) {
    let positional = is_positional(names);
    out.push('[');
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        if positional {
            write_array(out, row);
        } else {
            write_object(out, names, row);
        }
    }
    out.push(']');
}

fn write_object(out: &mut String, names: &[String], row: &[Value]) {
    out.push('{');
    for (i, (name, value)) in names.iter().zip(row).enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, name);
        out.push(':');
        write_value(out, value);
    }
    out.push('}');
}

fn write_array(out: &mut String, row: &[Value]) {
    out.push('[');
    for (i, value) in row.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_value(out, value);
    }
    out.push(']');
}

fn write_str(out: &mut String, s: &str) {
    // Serialising a &str cannot fail; the fallback keeps the body valid JSON regardless.
    match serde_json::to_string(s) {
        Ok(quoted) => out.push_str(&quoted),
        Err(_) => out.push_str("\"\""),
    }
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        // JSON has no NaN or infinity; the parsers read a non-finite number as missing.
        // (serde_json writes the shortest form that reads back to the same f64.)
        Value::Number(n) => match serde_json::Number::from_f64(*n) {
            Some(n) => {
                let _ = write!(out, "{n}");
            }
            None => out.push_str("null"),
        },
        Value::Missing => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Text(s) => write_str(out, s),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Datatype {
    Fp64,
    Bool,
    Bytes,
}

impl Datatype {
    fn name(self) -> &'static str {
        match self {
            Self::Fp64 => "FP64",
            Self::Bool => "BOOL",
            Self::Bytes => "BYTES",
        }
    }
}

/// The one v2 datatype that holds every value of these columns; v2 has no null, so a
/// missing value has none.
fn datatype(rows: &[Vec<Value>], columns: std::ops::Range<usize>) -> Option<Datatype> {
    let mut found = None;
    for row in rows {
        for value in row.get(columns.clone())? {
            let this = match value {
                Value::Number(n) if n.is_finite() => Datatype::Fp64,
                Value::Bool(_) => Datatype::Bool,
                Value::Text(_) => Datatype::Bytes,
                Value::Number(_) | Value::Missing => return None,
            };
            match found {
                None => found = Some(this),
                Some(f) if f != this => return None,
                Some(_) => {}
            }
        }
    }
    found
}

/// Groups of consecutive names that came from one wide tensor: `t[0]`, `t[1]`, … `t[n-1]`
/// with n ≥ 2 (a `[batch, 1]` tensor is named `t`, not `t[0]`). Returns (tensor name,
/// column range) per tensor to write.
fn tensors(names: &[String]) -> Vec<(String, std::ops::Range<usize>)> {
    let element = |name: &str| -> Option<(String, usize)> {
        let open = name.rfind('[')?;
        let index = name.get(open + 1..)?.strip_suffix(']')?.parse().ok()?;
        Some((name[..open].to_owned(), index))
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < names.len() {
        if let Some((base, 0)) = element(&names[i]) {
            let mut end = i + 1;
            while end < names.len()
                && element(&names[end]).is_some_and(|(b, k)| b == base && k == end - i)
            {
                end += 1;
            }
            if end - i >= 2 {
                out.push((base, i..end));
                i = end;
                continue;
            }
        }
        out.push((names[i].clone(), i..i + 1));
        i += 1;
    }
    out
}

fn write_v2(out: &mut String, names: &[String], rows: &[Vec<Value>]) -> Result<(), WriteError> {
    out.push_str("{\"inputs\":[");
    for (t, (name, columns)) in tensors(names).into_iter().enumerate() {
        let Some(kind) = datatype(rows, columns.clone()) else {
            let feature = names.get(columns.start).cloned().unwrap_or_default();
            return Err(WriteError::Untyped { feature });
        };
        if t > 0 {
            out.push(',');
        }
        out.push_str("{\"name\":");
        write_str(out, &name);
        let _ = write!(out, ",\"shape\":[{}", rows.len());
        if columns.len() > 1 {
            let _ = write!(out, ",{}", columns.len());
        }
        let _ = write!(out, "],\"datatype\":\"{}\",\"data\":[", kind.name());
        let mut first = true;
        for row in rows {
            for value in row.get(columns.clone()).unwrap_or_default() {
                if !first {
                    out.push(',');
                }
                first = false;
                write_value(out, value);
            }
        }
        out.push_str("]}");
    }
    out.push_str("]}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::parse_request;
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn sample() -> (Vec<String>, Vec<Vec<Value>>) {
        (
            names(&["age", "city \"quoted\"", "owner", "score/x"]),
            vec![
                vec![
                    Value::Number(30.5),
                    Value::Text("Oslo".into()),
                    Value::Bool(true),
                    Value::Number(-1e-7),
                ],
                vec![
                    Value::Number(41.0),
                    Value::Text("Ål ~ 1".into()),
                    Value::Bool(false),
                    Value::Number(12345.0),
                ],
            ],
        )
    }

    fn round_trip(protocol: &Protocol, names: &[String], rows: &[Vec<Value>]) {
        let body = write_request(protocol, names, rows).unwrap();
        let parsed = parse_request(protocol, &body)
            .unwrap_or_else(|e| panic!("{protocol:?}: {e}: {}", String::from_utf8_lossy(&body)));
        assert_eq!(parsed.names, names, "{protocol:?}");
        assert_eq!(parsed.rows, rows, "{protocol:?}");
    }

    #[test]
    fn kserve_v1_mlflow_and_v2_read_back_what_was_written() {
        let (names, rows) = sample();
        for protocol in [
            Protocol::KServeV1,
            Protocol::Mlflow,
            Protocol::OpenInferenceV2,
        ] {
            round_trip(&protocol, &names, &rows);
            round_trip(&protocol, &names, &rows[..1]);
        }
    }

    #[test]
    fn missing_values_go_as_null_where_json_allows_them() {
        let names = names(&["a", "b"]);
        let rows = vec![
            vec![Value::Missing, Value::Number(1.0)],
            vec![Value::Number(2.0), Value::Missing],
        ];
        round_trip(&Protocol::KServeV1, &names, &rows);
        round_trip(&Protocol::Mlflow, &names, &rows);
        // v2 has no null: the writer refuses rather than invent a value.
        assert_eq!(
            write_request(&Protocol::OpenInferenceV2, &names, &rows),
            Err(WriteError::Untyped {
                feature: "a".into()
            })
        );
    }

    #[test]
    fn extras_of_a_client_request_go_with_written_rows() {
        let client = br#"{"id": "r1", "inputs": [{"name": "input-0", "shape": [1, 2], "datatype": "FP64", "data": [1, 2]}],
            "outputs": [{"name": "predict_proba"}], "parameters": {"content_type": "np"}}"#;
        let extras = request_extras(&Protocol::OpenInferenceV2, client).unwrap();
        assert_eq!(
            extras,
            r#""outputs":[{"name":"predict_proba"}],"parameters":{"content_type":"np"}"#
        );
        let names = names(&["input-0[0]", "input-0[1]"]);
        let rows = vec![vec![Value::Number(3.0), Value::Number(4.0)]];
        let body = with_extras(
            write_request(&Protocol::OpenInferenceV2, &names, &rows).unwrap(),
            &extras,
        );
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["outputs"][0]["name"], "predict_proba");
        assert!(json.get("id").is_none());
        let parsed = super::super::parse_request(&Protocol::OpenInferenceV2, &body).unwrap();
        assert_eq!(parsed.rows, rows);
        assert_eq!(
            request_extras(&Protocol::KServeV1, br#"{"instances": [[1]]}"#),
            Some(String::new())
        );
        assert_eq!(request_extras(&Protocol::KServeV1, b"[1]"), None);
    }

    #[test]
    fn positional_rows_go_back_as_arrays() {
        let names = names(&["x0", "x1"]);
        let rows = vec![vec![Value::Number(1.0), Value::Text("b".into())]];
        round_trip(&Protocol::KServeV1, &names, &rows);
        round_trip(
            &Protocol::Pointer {
                rows: "/rows".into(),
                outputs: "/out".into(),
            },
            &names,
            &rows,
        );
        let body = write_request(&Protocol::KServeV1, &names, &rows).unwrap();
        assert_eq!(body, br#"{"instances":[[1.0,"b"]]}"#);
    }

    #[test]
    fn v2_wide_tensors_are_written_back_whole() {
        let names = names(&["x[0]", "x[1]", "x[2]", "flag", "y[0]"]);
        let rows = vec![
            vec![
                Value::Number(1.0),
                Value::Number(2.0),
                Value::Number(3.0),
                Value::Bool(true),
                Value::Number(9.0),
            ],
            vec![
                Value::Number(4.0),
                Value::Number(5.0),
                Value::Number(6.0),
                Value::Bool(false),
                Value::Number(8.0),
            ],
        ];
        let body = write_request(&Protocol::OpenInferenceV2, &names, &rows).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["inputs"][0]["shape"], serde_json::json!([2, 3]));
        assert_eq!(json["inputs"][1]["datatype"], "BOOL");
        // A lone `y[0]` is not a wide tensor; it goes as its own feature.
        assert_eq!(json["inputs"][2]["name"], "y[0]");
        let parsed = parse_request(&Protocol::OpenInferenceV2, &body).unwrap();
        assert_eq!(parsed.names[..4], names[..4]);
        assert_eq!(parsed.rows, rows);
    }

    #[test]
    fn pointer_places_one_row_at_the_pointer() {
        let (names, rows) = sample();
        for pointer in ["", "/applicant", "/data/the~1row/x~0y"] {
            let protocol = Protocol::Pointer {
                rows: pointer.into(),
                outputs: "/score".into(),
            };
            round_trip(&protocol, &names, &rows[..1]);
        }
        let protocol = Protocol::Pointer {
            rows: "/applicant".into(),
            outputs: "/score".into(),
        };
        let body = write_request(&protocol, &names[..1], &[rows[0][..1].to_vec()]).unwrap();
        assert_eq!(body, br#"{"applicant":{"age":30.5}}"#);
        assert_eq!(
            write_request(&protocol, &names, &rows),
            Err(WriteError::OneRowOnly(2))
        );
        let bad = Protocol::Pointer {
            rows: "rows".into(),
            outputs: String::new(),
        };
        assert!(matches!(
            write_request(&bad, &names, &rows[..1]),
            Err(WriteError::InvalidPointer(_))
        ));
    }

    #[test]
    fn ragged_and_empty_input_is_refused() {
        let names = names(&["a", "b"]);
        assert_eq!(
            write_request(&Protocol::KServeV1, &names, &[]),
            Err(WriteError::Empty)
        );
        assert_eq!(
            write_request(&Protocol::KServeV1, &names, &[vec![Value::Number(1.0)]]),
            Err(WriteError::Ragged {
                expected: 2,
                found: 1
            })
        );
    }
}
