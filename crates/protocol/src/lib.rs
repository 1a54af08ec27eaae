//! `sidelight-protocol`: the wire formats of model-serving APIs. Protocol adapters read feature rows out of a model request, predictions out of its
//! response, and add a field to a JSON response without touching the model's bytes; and,
//! for the probe check, write rows back into a request ([`write_request`]).
//!
//! Pure functions over byte slices — no I/O, no async — so that every protocol can be
//! tested without a socket, and so that a failure here can only ever mean "this request
//! carries no explanation", never a failed request.
//!
//! Errors name *where* a body was wrong (a JSON Pointer, a tensor name, a count) and
//! never *what* it held: they end up in logs and in the `x-sidelight-status` header, and
//! payload values may be personal data.
//!
//! Feature names, per protocol:
//! - object rows (KServe v1 / MLflow `instances`, `dataframe_records`, pointer rows):
//!   the union of the objects' keys in first-seen order; a row without a key gets
//!   [`Value::Missing`] for it;
//! - array rows: positional, `x0`, `x1`, …;
//! - column dictionaries (KServe v1 / MLflow `inputs: {col: [..]}`) and MLflow
//!   `dataframe_split`: the column names;
//! - Open Inference v2: a tensor of shape `[batch]` or `[batch, 1]` is one feature named
//!   after the tensor; a tensor of shape `[batch, n, ...]` gives `n·…` features named
//!   `{tensor}[0]`, `{tensor}[1]`, … (trailing dimensions flattened row-major). Several
//!   tensors are concatenated in request order.
//!
//! Whenever names were made from positions ([`Rows::positional`]), a route that
//! configures `features` reads the columns as those features, in order (the proxy's column mapping).

#![warn(missing_docs)]

mod json;
mod kserve_v1;
mod mlflow;
mod pointer;
mod ranking;
mod rows;
mod splice;
mod v2;
mod writer;

use std::fmt;

pub use ranking::{
    CONTEXT_PREFIX, ITEM_PREFIX, PairError, RankingAnswer, RankingError, RankingOutputs,
    RankingRows, RankingShape, pair_by_id, parse_ranking_answer, parse_ranking_request,
    parse_ranking_response,
};
pub use sidelight_explain::Value;
pub use splice::attach_field;
pub use writer::{WriteError, request_extras, with_extras, write_request};

/// The API shape of a route's model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protocol {
    /// KServe v1 / TF Serving: `{"instances": [...]}` → `{"predictions": [...]}`.
    KServeV1,
    /// Open Inference Protocol v2 (KServe v2, Triton, MLServer): named tensors.
    OpenInferenceV2,
    /// MLflow scoring server: `dataframe_split`, `dataframe_records`, `instances`,
    /// `inputs` → `{"predictions": [...]}` or a bare array.
    Mlflow,
    /// Any JSON API: where the rows are and where the outputs are, as JSON Pointers
    /// (RFC 6901; `""` is the whole document).
    Pointer {
        /// Where the rows are: an array of objects or arrays, or one object (one row).
        rows: String,
        /// Where the outputs are, one per row.
        outputs: String,
    },
    /// A recommendation API: one context object and a list of candidates in, scores or
    /// a ranked list out (see [`parse_ranking_request`]). Read through this enum, the
    /// rows are every candidate's (ids dropped), and a ranked answer is matched to the
    /// candidates by the ids [`write_request`] gives them: their positions, as text.
    Ranking {
        /// Where the context and the candidates are.
        shape: RankingShape,
        /// Where the scores are.
        answer: RankingAnswer,
    },
}

/// Whether `pointer` is a syntactically valid JSON Pointer (RFC 6901: `""` or `/…`, and
/// every `~` followed by `0` or `1`), so configuration can be rejected at start-up
/// rather than failing every request with [`AdapterError::InvalidPointer`].
pub fn pointer_is_valid(pointer: &str) -> bool {
    json::pointer_is_valid(pointer)
}

/// The feature rows of one request, in request order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rows {
    /// One name per column; every row has exactly `names.len()` values.
    pub names: Vec<String>,
    /// The rows, each with one value per name.
    pub rows: Vec<Vec<Value>>,
    /// The body named no columns (array rows, a v2 tensor wider than one column, a
    /// split frame without `columns`): `names` were made from positions, so a route
    /// that configures its features maps the columns to them in order.
    pub positional: bool,
}

/// The model's outputs for one response, one entry per request row, in order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Outputs {
    /// Per row: one value (a regression or a score), or one per class (probabilities).
    /// Every row has the same width.
    pub rows: Vec<Vec<f64>>,
}

/// Reads the feature rows out of a request body. At least one row, or an error.
pub fn parse_request(protocol: &Protocol, body: &[u8]) -> Result<Rows, AdapterError> {
    let root = json::parse(body, Side::Request)?;
    let rows = match protocol {
        Protocol::KServeV1 => kserve_v1::request(&root),
        Protocol::OpenInferenceV2 => v2::request(&root),
        Protocol::Mlflow => mlflow::request(&root),
        Protocol::Pointer { rows, .. } => pointer::request(&root, rows),
        Protocol::Ranking { shape, .. } => {
            return ranking::request_rows(shape, &root);
        }
    }?;
    // A name twice (a repeated key in a column dictionary, a repeated MLflow column, two
    // v2 tensors of one name) would make two features no schema, explanation or reviewer
    // could tell apart. Found by fuzzing (fuzz/).
    let mut seen = std::collections::HashSet::with_capacity(rows.names.len());
    if let Some(name) = rows.names.iter().find(|n| !seen.insert(n.as_str())) {
        return Err(AdapterError::DuplicateName { name: name.clone() });
    }
    Ok(rows)
}

/// Reads the model's outputs out of a response body; `expected_rows` is the number of
/// rows its request had, and any other count is an error (outputs are matched to rows by
/// position, so a count that differs means the pairing cannot be trusted).
pub fn parse_response(
    protocol: &Protocol,
    body: &[u8],
    expected_rows: usize,
) -> Result<Outputs, AdapterError> {
    let root = json::parse(body, Side::Response)?;
    match protocol {
        Protocol::KServeV1 => kserve_v1::response(&root, expected_rows),
        Protocol::OpenInferenceV2 => v2::response(&root, expected_rows),
        Protocol::Mlflow => mlflow::response(&root, expected_rows),
        Protocol::Pointer { outputs, .. } => pointer::response(&root, outputs, expected_rows),
        Protocol::Ranking { answer, .. } => {
            let ids: Vec<String> = (0..expected_rows).map(|i| i.to_string()).collect();
            ranking::response_outputs(answer, &root, Some(&ids), expected_rows)
                .map_err(AdapterError::from)
        }
    }
}

/// Which body an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The body the client sent.
    Request,
    /// The body the model answered.
    Response,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Request => "request",
            Self::Response => "response",
        })
    }
}

/// Why a body could not be read or augmented. Messages name paths, fields, tensors and
/// counts, never payload values. In the fields, `side` is the body at fault, `path` a
/// JSON Pointer into it, `tensor` a v2 tensor's name, and `expected`/`found` counts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[allow(missing_docs)] // the fields are described above; each variant's message says the rest
pub enum AdapterError {
    #[error("{side} body is not valid JSON (line {line}, column {column})")]
    NotJson {
        side: Side,
        line: usize,
        column: usize,
    },
    #[error("{side} body has nothing at {path:?}")]
    MissingField { side: Side, path: String },
    #[error("{side} body has the wrong type at {path:?}: expected {expected}")]
    WrongType {
        side: Side,
        path: String,
        expected: &'static str,
    },
    #[error("{side} body has no rows at {path:?}")]
    Empty { side: Side, path: String },
    #[error("{side} body has {found} values at {path:?} where the first row has {expected}")]
    Ragged {
        side: Side,
        path: String,
        expected: usize,
        found: usize,
    },
    #[error(
        "{side} tensor {tensor:?} has shape {shape:?}, which does not match its {found} data elements"
    )]
    ShapeMismatch {
        side: Side,
        tensor: String,
        shape: Vec<usize>,
        found: usize,
    },
    #[error("{side} tensor {tensor:?} has a batch of {found} where {expected} was expected")]
    BatchMismatch {
        side: Side,
        tensor: String,
        expected: usize,
        found: usize,
    },
    #[error(
        "{side} body has several numeric fields at {path:?} ({fields}) and none is named \
         probability, probabilities, predict_proba, score or prediction"
    )]
    Ambiguous {
        side: Side,
        path: String,
        fields: String,
    },
    #[error("request body names the feature {name:?} more than once")]
    DuplicateName { name: String },
    #[error("response has outputs for {found} rows but its request had {expected}")]
    RowCountMismatch { expected: usize, found: usize },
    #[error("response body is JSON but not an object, so no field can be added to it")]
    NotAnObject,
    #[error("response body already has a top-level field {field:?}")]
    FieldExists { field: String },
    #[error("{pointer:?} is not a valid JSON Pointer (RFC 6901)")]
    InvalidPointer { pointer: String },
    #[error("the value to attach is not valid JSON")]
    InvalidAttachment,
    #[error("{message}")]
    Ranking {
        /// The stable code of [`RankingError::reason`].
        reason: &'static str,
        message: String,
    },
}

impl From<RankingError> for AdapterError {
    fn from(error: RankingError) -> Self {
        match error {
            RankingError::Body(e) => e,
            other => AdapterError::Ranking {
                reason: other.reason(),
                message: other.to_string(),
            },
        }
    }
}

impl AdapterError {
    /// A short stable code for the `x-sidelight-status` header and metrics labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotJson { side, .. }
            | Self::MissingField { side, .. }
            | Self::WrongType { side, .. }
            | Self::Ragged { side, .. }
            | Self::ShapeMismatch { side, .. }
            | Self::BatchMismatch { side, .. }
            | Self::Ambiguous { side, .. } => match side {
                Side::Request => "unparseable_request",
                Side::Response => "unparseable_response",
            },
            Self::Empty { side, .. } => match side {
                Side::Request => "empty_request",
                Side::Response => "empty_response",
            },
            Self::DuplicateName { .. } => "unparseable_request",
            Self::RowCountMismatch { .. } => "row_count_mismatch",
            Self::NotAnObject => "response_not_object",
            Self::FieldExists { .. } => "field_exists",
            Self::InvalidPointer { .. } => "invalid_pointer",
            Self::InvalidAttachment => "invalid_attachment",
            Self::Ranking { reason, .. } => reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_stable_codes() {
        let e = AdapterError::RowCountMismatch {
            expected: 2,
            found: 3,
        };
        assert_eq!(e.reason(), "row_count_mismatch");
        let e = AdapterError::NotJson {
            side: Side::Response,
            line: 1,
            column: 2,
        };
        assert_eq!(e.reason(), "unparseable_response");
        assert_eq!(AdapterError::NotAnObject.reason(), "response_not_object");
        for e in [
            parse_request(&Protocol::KServeV1, b"{"),
            parse_request(&Protocol::KServeV1, b"{\"instances\": 3}"),
            parse_request(&Protocol::OpenInferenceV2, b"{\"inputs\": [{}]}"),
        ] {
            assert_eq!(
                e.map(|_| ()).err().map(|e| e.reason()),
                Some("unparseable_request")
            );
        }
    }

    /// Regressions from fuzzing: a feature name twice, in each way a body can spell it.
    #[test]
    fn a_feature_name_twice_is_refused() {
        let duplicate = |name: &str| AdapterError::DuplicateName { name: name.into() };
        let cases = [
            (
                Protocol::OpenInferenceV2,
                r#"{"inputs": [
                    {"name": "city", "shape": [2], "datatype": "BYTES", "data": ["Oslo", "Rome"]},
                    {"name": "city", "shape": [2], "datatype": "UINT8", "data": [255, 0]}]}"#,
                "city",
            ),
            (
                Protocol::OpenInferenceV2,
                r#"{"inputs": [
                    {"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1, 2]},
                    {"name": "x[1]", "shape": [1], "datatype": "FP64", "data": [3]}]}"#,
                "x[1]",
            ),
            (
                Protocol::KServeV1,
                r#"{"inputs": {"a": [1], "a": [2]}}"#,
                "a",
            ),
            (
                Protocol::Mlflow,
                r#"{"dataframe_split": {"columns": ["a", "a"], "data": [[1, 2]]}}"#,
                "a",
            ),
        ];
        for (protocol, body, name) in cases {
            let err = parse_request(&protocol, body.as_bytes()).unwrap_err();
            assert_eq!(err, duplicate(name), "{protocol:?}");
            assert_eq!(err.reason(), "unparseable_request");
        }
        // A key repeated inside one row object is one feature (the last value wins, as
        // in serde_json), not two.
        let rows =
            parse_request(&Protocol::KServeV1, br#"{"instances": [{"a": 1, "a": 2}]}"#).unwrap();
        assert_eq!(rows.names, ["a"]);
        assert_eq!(rows.rows, [vec![Value::Number(2.0)]]);
    }

    /// A batch of the size the benchmark uses parses into the right shape under every
    /// protocol (a correctness check on the hot path, not a timing test).
    #[test]
    fn batch_of_32_by_20_under_every_protocol() {
        let row = |r: usize| -> Vec<String> { (0..20).map(|c| format!("{}.{}", r, c)).collect() };
        let arrays: Vec<String> = (0..32).map(|r| format!("[{}]", row(r).join(","))).collect();
        let objects: Vec<String> = (0..32)
            .map(|r| {
                let m: Vec<String> = row(r)
                    .iter()
                    .enumerate()
                    .map(|(c, v)| format!("\"f{c}\":{v}"))
                    .collect();
                format!("{{{}}}", m.join(","))
            })
            .collect();
        let flat: Vec<String> = (0..32).flat_map(row).collect();
        let cases = [
            (
                Protocol::KServeV1,
                format!("{{\"instances\":[{}]}}", arrays.join(",")),
            ),
            (
                Protocol::KServeV1,
                format!("{{\"instances\":[{}]}}", objects.join(",")),
            ),
            (
                Protocol::Mlflow,
                format!("{{\"dataframe_records\":[{}]}}", objects.join(",")),
            ),
            (
                Protocol::OpenInferenceV2,
                format!(
                    "{{\"inputs\":[{{\"name\":\"x\",\"shape\":[32,20],\"datatype\":\"FP64\",\"data\":[{}]}}]}}",
                    flat.join(",")
                ),
            ),
            (
                Protocol::Pointer {
                    rows: "/rows".into(),
                    outputs: "/out".into(),
                },
                format!("{{\"rows\":[{}]}}", objects.join(",")),
            ),
        ];
        for (protocol, body) in cases {
            let rows = parse_request(&protocol, body.as_bytes()).unwrap();
            assert_eq!(rows.names.len(), 20, "{protocol:?}");
            assert_eq!(rows.rows.len(), 32, "{protocol:?}");
            assert_eq!(rows.rows[31][19], Value::Number(31.19), "{protocol:?}");
        }
    }
}
