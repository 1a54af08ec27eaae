//! Open Inference Protocol v2 (KServe v2, Triton, MLServer), JSON form:
//! `{"inputs": [{"name", "shape", "datatype", "data", "parameters"?}, ...]}` in,
//! `{"outputs": [{"name", "shape", "datatype", "data"}, ...]}` out.
//!
//! `data` is row-major and may be flat or nested to the tensor's shape; it is flattened
//! and checked against the shape's element count. The first dimension is the batch.
//! Binary-extension tensors (no JSON `data`) are not readable here and are reported as
//! missing data.
//!
//! Output choice when a response has several tensors: the first whose name says it holds
//! probabilities (contains `proba` or `probabilit`, e.g. `predict_proba`,
//! `probabilities`, `output_probability`), otherwise the first with a numeric datatype
//! (a BYTES label tensor can't be explained as a number).

use super::json::{Node, Path};
use super::rows::{missing, wrong};
use super::{AdapterError, Outputs, Rows, Side, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Number,
    Bool,
    Text,
}

fn kind(datatype: &str) -> Option<Kind> {
    Some(match datatype {
        "FP16" | "BF16" | "FP32" | "FP64" | "INT8" | "INT16" | "INT32" | "INT64" | "UINT8"
        | "UINT16" | "UINT32" | "UINT64" => Kind::Number,
        "BOOL" => Kind::Bool,
        "BYTES" => Kind::Text,
        _ => return None,
    })
}

/// One tensor, validated: its data's element count matches its shape.
struct Tensor<'n, 'a> {
    name: &'n str,
    shape: Vec<usize>,
    kind: Kind,
    data: Vec<&'n Node<'a>>,
}

impl Tensor<'_, '_> {
    fn batch(&self) -> usize {
        self.shape.first().copied().unwrap_or(0)
    }

    /// Elements per batch item: the product of the trailing dimensions (validated not to
    /// overflow, since the whole product matched the data).
    fn width(&self) -> usize {
        self.shape.iter().skip(1).product()
    }
}

fn name_of<'n>(node: &'n Node<'_>, path: Path<'_>, side: Side) -> Result<&'n str, AdapterError> {
    match node.get("name") {
        Some(Node::String(s)) => Ok(s),
        Some(_) => Err(wrong(side, path.key("name"), "a string")),
        None => Err(missing(side, path.key("name"))),
    }
}

fn kind_of(node: &Node<'_>, path: Path<'_>, side: Side) -> Result<Kind, AdapterError> {
    let path = path.key("datatype");
    match node.get("datatype") {
        Some(Node::String(s)) => kind(s).ok_or_else(|| wrong(side, path, "a v2 datatype")),
        Some(_) => Err(wrong(side, path, "a v2 datatype")),
        None => Err(missing(side, path)),
    }
}

fn tensor<'n, 'a>(
    node: &'n Node<'a>,
    path: Path<'_>,
    side: Side,
) -> Result<Tensor<'n, 'a>, AdapterError> {
    if !matches!(node, Node::Object(_)) {
        return Err(wrong(side, path, "a tensor object"));
    }
    let name = name_of(node, path, side)?;
    let kind = kind_of(node, path, side)?;
    let shape_path = path.key("shape");
    const SHAPE: &str = "an array of non-negative integers with a batch dimension first";
    let shape = match node.get("shape") {
        Some(Node::Array(dims)) if !dims.is_empty() => dims
            .iter()
            .map(|d| match d {
                // Exact integers only: f64 holds every integer up to 2^53.
                Node::Number(n)
                    if *n >= 0.0 && n.fract() == 0.0 && *n <= 9_007_199_254_740_992.0 =>
                {
                    usize::try_from(*n as u64).map_err(|_| wrong(side, shape_path, SHAPE))
                }
                _ => Err(wrong(side, shape_path, SHAPE)),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err(wrong(side, shape_path, SHAPE)),
        None => return Err(missing(side, shape_path)),
    };
    let data_path = path.key("data");
    let mut data = Vec::new();
    match node.get("data") {
        Some(d @ Node::Array(_)) => flatten(d, &mut data),
        Some(_) => return Err(wrong(side, data_path, "an array")),
        None => return Err(missing(side, data_path)),
    }
    let elements = shape.iter().try_fold(1usize, |acc, d| acc.checked_mul(*d));
    if elements != Some(data.len()) {
        return Err(AdapterError::ShapeMismatch {
            side,
            tensor: name.to_owned(),
            shape,
            found: data.len(),
        });
    }
    Ok(Tensor {
        name,
        shape,
        kind,
        data,
    })
}

/// Leaves of (possibly nested) `data`, row-major. Depth is bounded by `serde_json`'s
/// recursion limit on the parse.
fn flatten<'n, 'a>(node: &'n Node<'a>, out: &mut Vec<&'n Node<'a>>) {
    match node {
        Node::Array(items) => {
            for item in items {
                flatten(item, out);
            }
        }
        leaf => out.push(leaf),
    }
}

pub(super) fn request(root: &Node<'_>) -> Result<Rows, AdapterError> {
    let side = Side::Request;
    let top = Path::Root("");
    if !matches!(root, Node::Object(_)) {
        return Err(wrong(side, top, "an object"));
    }
    let inputs_path = top.key("inputs");
    let items = match root.get("inputs") {
        Some(Node::Array(items)) => items,
        Some(_) => return Err(wrong(side, inputs_path, "an array of tensors")),
        None => return Err(missing(side, inputs_path)),
    };
    let tensors = items
        .iter()
        .enumerate()
        .map(|(i, t)| tensor(t, inputs_path.index(i), side))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(batch) = tensors.first().map(Tensor::batch) else {
        return Err(AdapterError::Empty {
            side,
            path: inputs_path.render(),
        });
    };
    if batch == 0 {
        return Err(AdapterError::Empty {
            side,
            path: inputs_path.render(),
        });
    }
    let mut names = Vec::new();
    let mut positional = false;
    for (i, t) in tensors.iter().enumerate() {
        if t.batch() != batch {
            return Err(AdapterError::BatchMismatch {
                side,
                tensor: t.name.to_owned(),
                expected: batch,
                found: t.batch(),
            });
        }
        // A zero trailing dimension carries no feature: rows made of it would be
        // explained as nothing, and written back as no tensor at all.
        if t.width() == 0 {
            return Err(wrong(
                side,
                inputs_path.index(i).key("shape"),
                "[batch] or [batch, features] with at least one feature",
            ));
        }
        // `[batch]` and `[batch, 1]` are one feature; anything wider is a block of
        // positional features under the tensor's name.
        match t.width() {
            1 if t.shape.len() <= 2 => names.push(t.name.to_owned()),
            w => {
                positional = true;
                names.extend((0..w).map(|i| format!("{}[{i}]", t.name)));
            }
        }
    }
    let mut rows = Vec::with_capacity(batch);
    for r in 0..batch {
        let mut row = Vec::with_capacity(names.len());
        for (i, t) in tensors.iter().enumerate() {
            let w = t.width();
            for node in &t.data[r * w..(r + 1) * w] {
                let path = inputs_path.index(i);
                row.push(value(node, t.kind, path.key("data"))?);
            }
        }
        rows.push(row);
    }
    Ok(Rows {
        names,
        rows,
        positional,
    })
}

fn value(node: &Node<'_>, kind: Kind, path: Path<'_>) -> Result<Value, AdapterError> {
    match (kind, node) {
        (Kind::Number, Node::Number(n)) => Ok(Value::Number(*n)),
        (Kind::Bool, Node::Bool(b)) => Ok(Value::Bool(*b)),
        // Some clients write BOOL tensors as 0 / 1.
        (Kind::Bool, Node::Number(n)) if *n == 0.0 || *n == 1.0 => Ok(Value::Bool(*n == 1.0)),
        (Kind::Text, Node::String(s)) => Ok(Value::Text(s.as_ref().to_owned())),
        (Kind::Number, _) => Err(wrong(Side::Request, path, "numbers, as the datatype says")),
        (Kind::Bool, _) => Err(wrong(Side::Request, path, "booleans, as the datatype says")),
        (Kind::Text, _) => Err(wrong(Side::Request, path, "strings, as the datatype says")),
    }
}

pub(super) fn response(root: &Node<'_>, expected_rows: usize) -> Result<Outputs, AdapterError> {
    let side = Side::Response;
    let top = Path::Root("");
    if !matches!(root, Node::Object(_)) {
        return Err(wrong(side, top, "an object"));
    }
    let outputs_path = top.key("outputs");
    let items = match root.get("outputs") {
        Some(Node::Array(items)) => items,
        Some(_) => return Err(wrong(side, outputs_path, "an array of tensors")),
        None => return Err(missing(side, outputs_path)),
    };
    if items.is_empty() {
        return Err(AdapterError::Empty {
            side,
            path: outputs_path.render(),
        });
    }
    let numeric = |t: &Node<'_>| matches!(t.get("datatype"), Some(Node::String(d)) if matches!(kind(d), Some(Kind::Number | Kind::Bool)));
    let probabilities = |t: &Node<'_>| {
        matches!(t.get("name"), Some(Node::String(n)) if {
            let n = n.to_ascii_lowercase();
            n.contains("proba") || n.contains("probabilit")
        })
    };
    let chosen = items
        .iter()
        .position(|t| numeric(t) && probabilities(t))
        .or_else(|| items.iter().position(numeric));
    let Some(index) = chosen else {
        return Err(wrong(
            side,
            outputs_path,
            "a tensor with a numeric datatype",
        ));
    };
    let path = outputs_path.index(index);
    let t = tensor(&items[index], path, side)?;
    if t.shape.len() > 2 {
        return Err(wrong(
            side,
            path.key("shape"),
            "[batch] or [batch, classes]",
        ));
    }
    if t.batch() != expected_rows {
        return Err(AdapterError::RowCountMismatch {
            expected: expected_rows,
            found: t.batch(),
        });
    }
    let width = t.width();
    if width == 0 {
        return Err(wrong(
            side,
            path.key("shape"),
            "[batch] or [batch, classes]",
        ));
    }
    let rows = t
        .data
        .chunks(width)
        .map(|chunk| {
            chunk
                .iter()
                .map(|n| n.as_output_number())
                .collect::<Option<Vec<f64>>>()
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| wrong(side, path.key("data"), "numbers, as the datatype says"))?;
    Ok(Outputs { rows })
}

#[cfg(test)]
mod tests {
    use super::super::{Protocol, parse_request, parse_response};
    use super::*;

    fn req(body: &str) -> Result<Rows, AdapterError> {
        parse_request(&Protocol::OpenInferenceV2, body.as_bytes())
    }

    fn resp(body: &str, n: usize) -> Result<Outputs, AdapterError> {
        parse_response(&Protocol::OpenInferenceV2, body.as_bytes(), n)
    }

    #[test]
    fn one_tensor_batch_by_features_flat_or_nested() {
        let flat = r#"{"inputs": [{"name": "input-0", "shape": [2, 3], "datatype": "FP32",
                       "data": [1, 2, 3, 4, 5, 6], "parameters": {"content_type": "np"}}]}"#;
        let nested = r#"{"id": "r1", "inputs": [{"name": "input-0", "shape": [2, 3],
                         "datatype": "FP32", "data": [[1, 2, 3], [4, 5, 6]]}]}"#;
        let a = req(flat).unwrap();
        assert_eq!(a, req(nested).unwrap());
        assert_eq!(a.names, ["input-0[0]", "input-0[1]", "input-0[2]"]);
        assert_eq!(
            a.rows[1],
            [Value::Number(4.0), Value::Number(5.0), Value::Number(6.0)]
        );
    }

    #[test]
    fn one_tensor_per_feature_with_every_datatype_family() {
        let body = r#"{"inputs": [
            {"name": "age", "shape": [2], "datatype": "INT64", "data": [30, 41]},
            {"name": "income", "shape": [2, 1], "datatype": "FP64", "data": [[1.5], [2.5]]},
            {"name": "owner", "shape": [2], "datatype": "BOOL", "data": [true, 0]},
            {"name": "city", "shape": [2], "datatype": "BYTES", "data": ["Oslo", "Rome"]},
            {"name": "flags", "shape": [2], "datatype": "UINT8", "data": [255, 0]}
        ]}"#;
        let rows = req(body).unwrap();
        assert_eq!(rows.names, ["age", "income", "owner", "city", "flags"]);
        assert_eq!(
            rows.rows,
            [
                vec![
                    Value::Number(30.0),
                    Value::Number(1.5),
                    Value::Bool(true),
                    Value::Text("Oslo".into()),
                    Value::Number(255.0)
                ],
                vec![
                    Value::Number(41.0),
                    Value::Number(2.5),
                    Value::Bool(false),
                    Value::Text("Rome".into()),
                    Value::Number(0.0)
                ],
            ]
        );
    }

    #[test]
    fn request_errors_name_the_tensor() {
        let err = req(r#"{"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3]}]}"#)
            .unwrap_err();
        assert_eq!(
            err,
            AdapterError::ShapeMismatch {
                side: Side::Request,
                tensor: "x".into(),
                shape: vec![2, 2],
                found: 3
            }
        );
        assert!(err.to_string().contains("\"x\""), "{err}");
        assert_eq!(
            req(r#"{"inputs": [{"name": "a", "shape": [2], "datatype": "FP32", "data": [1, 2]},
                               {"name": "b", "shape": [3], "datatype": "FP32", "data": [1, 2, 3]}]}"#)
                .unwrap_err(),
            AdapterError::BatchMismatch {
                side: Side::Request,
                tensor: "b".into(),
                expected: 2,
                found: 3
            }
        );
        assert!(matches!(
            req(r#"{"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": ["s"]}]}"#).unwrap_err(),
            AdapterError::WrongType { path, .. } if path == "/inputs/0/data"
        ));
        assert!(matches!(
            req(r#"{"inputs": [{"name": "a", "shape": [1], "datatype": "COMPLEX", "data": [1]}]}"#).unwrap_err(),
            AdapterError::WrongType { path, .. } if path == "/inputs/0/datatype"
        ));
        assert!(matches!(
            req(r#"{"inputs": [{"name": "a", "shape": [1.5], "datatype": "FP32", "data": [1]}]}"#).unwrap_err(),
            AdapterError::WrongType { path, .. } if path == "/inputs/0/shape"
        ));
        assert!(matches!(
            req(r#"{"inputs": [{"name": "a", "shape": [1], "datatype": "FP32",
                                "parameters": {"binary_data_size": 4}}]}"#).unwrap_err(),
            AdapterError::MissingField { path, .. } if path == "/inputs/0/data"
        ));
        assert!(matches!(
            req(
                r#"{"inputs": [{"name": "a", "shape": [4294967296, 4294967296, 4294967296],
                                "datatype": "FP32", "data": [1]}]}"#
            )
            .unwrap_err(),
            AdapterError::ShapeMismatch { .. }
        ));
        assert!(matches!(
            req(r#"{"inputs": []}"#).unwrap_err(),
            AdapterError::Empty { .. }
        ));
        assert!(matches!(
            req(r#"{"inputs": [{"name": "a", "shape": [0, 3], "datatype": "FP32", "data": []}]}"#)
                .unwrap_err(),
            AdapterError::Empty { .. }
        ));
        // Found by the fuzzer: rows with no feature at all.
        assert!(matches!(
            req(r#"{"inputs": [{"name": "a", "shape": [3, 0], "datatype": "FP32", "data": []}]}"#)
                .unwrap_err(),
            AdapterError::WrongType { path, .. } if path == "/inputs/0/shape"
        ));
    }

    #[test]
    fn response_scores_and_probabilities() {
        assert_eq!(
            resp(
                r#"{"model_name": "m", "outputs": [{"name": "predict", "shape": [2],
                     "datatype": "FP64", "data": [0.25, 0.75]}]}"#,
                2
            )
            .unwrap()
            .rows,
            [vec![0.25], vec![0.75]]
        );
        assert_eq!(
            resp(
                r#"{"outputs": [{"name": "out", "shape": [1, 2], "datatype": "FP32",
                     "data": [[0.4, 0.6]]}]}"#,
                1
            )
            .unwrap()
            .rows,
            [vec![0.4, 0.6]]
        );
        let several = r#"{"outputs": [
            {"name": "label", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]},
            {"name": "predict", "shape": [2], "datatype": "INT64", "data": [0, 1]},
            {"name": "predict_proba", "shape": [2, 2], "datatype": "FP32", "data": [0.9, 0.1, 0.2, 0.8]}
        ]}"#;
        assert_eq!(
            resp(several, 2).unwrap().rows,
            [vec![0.9, 0.1], vec![0.2, 0.8]]
        );
        let no_proba = r#"{"outputs": [
            {"name": "label", "shape": [1], "datatype": "BYTES", "data": ["a"]},
            {"name": "predict", "shape": [1], "datatype": "INT64", "data": [1]}
        ]}"#;
        assert_eq!(resp(no_proba, 1).unwrap().rows, [vec![1.0]]);
    }

    /// MLServer 1.7.1 with mlserver-sklearn, as it answers a [2, 7] FP64 request: flat
    /// `data`, `parameters` on every tensor, `predict` as INT64 [batch, 1] and, when the
    /// request asks for it, `predict_proba` as FP64 [batch, classes].
    #[test]
    fn mlserver_sklearn_responses() {
        let both = r#"{"model_name":"credit","model_version":"v1","id":"c31d0fc1","parameters":{},"outputs":[{"name":"predict","shape":[2,1],"datatype":"INT64","parameters":{"content_type":"np"},"data":[0,1]},{"name":"predict_proba","shape":[2,2],"datatype":"FP64","parameters":{"content_type":"np"},"data":[0.8893803574844487,0.11061964251555131,0.2979470218977752,0.7020529781022248]}]}"#;
        assert_eq!(
            resp(both, 2).unwrap().rows,
            [
                vec![0.8893803574844487, 0.11061964251555131],
                vec![0.2979470218977752, 0.7020529781022248]
            ]
        );
        let labels = r#"{"model_name":"credit","model_version":"v1","id":"x","parameters":{},"outputs":[{"name":"predict","shape":[2,1],"datatype":"INT64","parameters":{"content_type":"np"},"data":[0,1]}]}"#;
        assert_eq!(resp(labels, 2).unwrap().rows, [vec![0.0], vec![1.0]]);
    }

    #[test]
    fn response_errors() {
        assert_eq!(
            resp(
                r#"{"outputs": [{"name": "p", "shape": [2], "datatype": "FP32", "data": [1, 2]}]}"#,
                3
            )
            .unwrap_err(),
            AdapterError::RowCountMismatch {
                expected: 3,
                found: 2
            }
        );
        assert!(matches!(
            resp(r#"{"outputs": [{"name": "p", "shape": [3], "datatype": "FP32", "data": [1, 2]}]}"#, 3)
                .unwrap_err(),
            AdapterError::ShapeMismatch { side: Side::Response, tensor, .. } if tensor == "p"
        ));
        assert!(matches!(
            resp(
                r#"{"outputs": [{"name": "l", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}"#,
                1
            )
            .unwrap_err(),
            AdapterError::WrongType { .. }
        ));
        assert!(matches!(
            resp(r#"{"outputs": [{"name": "p", "shape": [1, 2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]}]}"#, 1)
                .unwrap_err(),
            AdapterError::WrongType { .. }
        ));
        assert!(matches!(
            resp(r#"{"error": "boom"}"#, 1).unwrap_err(),
            AdapterError::MissingField { .. }
        ));
    }
}
