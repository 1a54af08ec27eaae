//! The one place where a failure on the request path becomes an HTTP answer.
//!
//! Every layer returns a [`ProxyError`] that says what went wrong; [`ProxyError::into_response`]
//! alone decides the status and the JSON body, so the mapping can be read (and audited)
//! in one screen.

use std::error::Error as StdError;
use std::time::Duration;

use http::{Response, StatusCode};

use crate::body::{ProxyBody, json_response};

pub use crate::body::BoxError;

/// Why a request could not be answered by the upstream.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The request is well-formed HTTP but cannot be forwarded (CONNECT, `*` target).
    #[error("malformed request: {0}")]
    MalformedRequest(&'static str),
    /// The declared or streamed body is over `server.max_body_bytes`.
    #[error("request body is larger than the limit of {limit} bytes")]
    BodyTooLarge {
        /// The configured limit.
        limit: u64,
    },
    /// The client sent its body too slowly (`server.body_timeout`,
    /// `server.body_min_rate`).
    #[error("{0}")]
    BodyTimeout(crate::body::ReadDeadline),
    /// No TCP connection could be made to the upstream.
    #[error("upstream unreachable: {0}")]
    UpstreamUnreachable(String),
    /// The TCP connection could not be made within `upstream.connect_timeout`.
    #[error("upstream did not accept a connection within {0:?}")]
    UpstreamConnectTimeout(Duration),
    /// The upstream did not answer within `upstream.request_timeout`.
    #[error("upstream did not answer within {0:?}")]
    UpstreamTimeout(Duration),
    /// The connection was closed or reset before a response arrived.
    #[error("upstream closed the connection before answering: {0}")]
    UpstreamReset(String),
    /// Reading the client's request body failed (client went away mid-upload).
    #[error("could not read the request body: {0}")]
    ClientBody(String),
    /// The audit record could not be stored and `audit.on_store_failure` is
    /// `fail_closed`: no response goes out without its record.
    #[error("the audit log is unavailable: {0}")]
    AuditUnavailable(String),
}

impl ProxyError {
    /// The stable machine-readable code in the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MalformedRequest(_) => "malformed_request",
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::BodyTimeout(_) => "body_timeout",
            Self::UpstreamUnreachable(_) => "upstream_unreachable",
            Self::UpstreamConnectTimeout(_) => "upstream_connect_timeout",
            Self::UpstreamTimeout(_) => "upstream_timeout",
            Self::UpstreamReset(_) => "upstream_reset",
            Self::ClientBody(_) => "client_body_error",
            Self::AuditUnavailable(_) => "audit_unavailable",
        }
    }

    /// The HTTP status a client gets for this failure.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MalformedRequest(_) | Self::ClientBody(_) => StatusCode::BAD_REQUEST,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::UpstreamUnreachable(_) | Self::UpstreamReset(_) => StatusCode::BAD_GATEWAY,
            Self::UpstreamConnectTimeout(_) | Self::UpstreamTimeout(_) => {
                StatusCode::GATEWAY_TIMEOUT
            }
            Self::AuditUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The JSON answer: `{"error": {"code": "...", "message": "..."}}`.
    pub fn into_response(self) -> Response<ProxyBody> {
        json_error(self.status(), self.code(), &self.to_string())
    }
}

/// A JSON error answer with the shape every Sidelight error has.
pub fn json_error(status: StatusCode, code: &str, message: &str) -> Response<ProxyBody> {
    json_response(
        status,
        &serde_json::json!({ "error": { "code": code, "message": message } }),
    )
}

/// Finds an error of type `E` anywhere in the source chain of `error`.
pub fn find_cause<'a, E: StdError + 'static>(error: &'a (dyn StdError + 'static)) -> Option<&'a E> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<E>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

/// Renders an error and all its causes on one line, for logs. Never includes payloads:
/// none of the errors on the request path carry body bytes.
pub fn chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut current = error.source();
    while let Some(e) = current {
        let next = e.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        current = e.source();
    }
    text
}

/// The answer when a feature needs the audit log and none is configured.
pub fn no_audit() -> Response<ProxyBody> {
    json_error(
        StatusCode::NOT_FOUND,
        "audit_not_configured",
        "there is no audit log: add an [audit] section to the config",
    )
}

/// The answer when the audit store cannot be reached or fails (its error text never
/// carries record content).
pub fn audit_unavailable(error: &dyn std::fmt::Display) -> Response<ProxyBody> {
    json_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "audit_unavailable",
        &error.to_string(),
    )
}
