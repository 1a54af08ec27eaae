//! The adapters' entry points for the fuzz targets in `fuzz/` (a crate outside the
//! workspace, so it can only reach what is `pub`). Hidden from the documentation: this is
//! no API for users, only the same functions the proxy calls, with errors as their
//! messages so the targets can check what an error says.

use bytes::Bytes;

use super::{AdapterError, Protocol, Value};

/// The protocol of a route, as the targets name it.
#[derive(Debug, Clone)]
pub enum FuzzProtocol {
    KServeV1,
    OpenInferenceV2,
    Mlflow,
    Pointer { rows: String, outputs: String },
}

impl FuzzProtocol {
    fn inner(&self) -> Protocol {
        match self {
            Self::KServeV1 => Protocol::KServeV1,
            Self::OpenInferenceV2 => Protocol::OpenInferenceV2,
            Self::Mlflow => Protocol::Mlflow,
            Self::Pointer { rows, outputs } => Protocol::Pointer {
                rows: rows.clone(),
                outputs: outputs.clone(),
            },
        }
    }
}

/// A request's feature names and rows, or the error's message.
pub fn parse_request(
    protocol: &FuzzProtocol,
    body: &[u8],
) -> Result<(Vec<String>, Vec<Vec<Value>>), String> {
    super::parse_request(&protocol.inner(), body)
        .map(|r| (r.names, r.rows))
        .map_err(|e| e.to_string())
}

/// A response's outputs for a request of `expected_rows` rows; on a count that differs,
/// the error carries the count the body has (`Err((message, Some(found)))`) so a target
/// can try again with it and reach the rest of the reader.
pub fn parse_response(
    protocol: &FuzzProtocol,
    body: &[u8],
    expected_rows: usize,
) -> Result<Vec<Vec<f64>>, (String, Option<usize>)> {
    super::parse_response(&protocol.inner(), body, expected_rows)
        .map(|o| o.rows)
        .map_err(|e| {
            let found = match e {
                AdapterError::RowCountMismatch { found, .. } => Some(found),
                _ => None,
            };
            (e.to_string(), found)
        })
}

/// Rows written back as a request body (the probe check's writer).
pub fn write_request(
    protocol: &FuzzProtocol,
    names: &[String],
    rows: &[Vec<Value>],
) -> Result<Vec<u8>, String> {
    super::write_request(&protocol.inner(), names, rows).map_err(|e| e.to_string())
}

/// Why [`attach_field`] refused a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachRefusal {
    NotJson,
    NotAnObject,
    FieldExists,
    InvalidAttachment,
    Other,
}

/// `"field": value_json` spliced into a JSON object response.
pub fn attach_field(body: &[u8], field: &str, value_json: &str) -> Result<Bytes, AttachRefusal> {
    super::attach_field(body, field, value_json).map_err(|e| match e {
        AdapterError::NotJson { .. } => AttachRefusal::NotJson,
        AdapterError::NotAnObject => AttachRefusal::NotAnObject,
        AdapterError::FieldExists { .. } => AttachRefusal::FieldExists,
        AdapterError::InvalidAttachment => AttachRefusal::InvalidAttachment,
        _ => AttachRefusal::Other,
    })
}

/// Whether configuration would accept `pointer`.
pub fn pointer_is_valid(pointer: &str) -> bool {
    super::pointer_is_valid(pointer)
}
