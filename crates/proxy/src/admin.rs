//! The admin listener: liveness, readiness and metrics, on a port of its own so that
//! probes and scrapes never compete with model traffic and are never exposed with it.
//! Also the admin JSON API: surrogates, inferred schemas, the probe check
//! (`POST /api/v1/probe/{request_id}`), and the audit log's records and erasure (see
//! `records`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use prometheus_client::registry::Registry;
use serde_json::json;

use crate::body::{ProxyBody, full, json_response};
use crate::config::UpstreamBase;
use crate::error::json_error;

/// What the admin endpoints look at.
pub(crate) struct AdminState {
    pub(crate) registry: Registry,
    pub(crate) upstream: UpstreamBase,
    pub(crate) connect_timeout: Duration,
    /// Set when shutdown begins, so that load balancers stop sending new traffic.
    pub(crate) draining: AtomicBool,
    pub(crate) surrogates: crate::live::SurrogateStatus,
    pub(crate) probe: Arc<crate::live::Prober>,
    /// The audit log and what erasure reaches.
    pub(crate) erasable: crate::records::Erasable,
}

pub(crate) async fn handle(
    state: Arc<AdminState>,
    request: Request<hyper::body::Incoming>,
) -> Response<ProxyBody> {
    if request.uri().path() == crate::records::ERASURE_PATH {
        let (parts, body) = request.into_parts();
        return crate::records::erasure(&state.erasable, &parts.method, body).await;
    }
    if let Some(id) = request.uri().path().strip_prefix(PROBE_PATH) {
        if request.method() != Method::POST {
            return json_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "the probe check is run with POST: it calls the model",
            );
        }
        let Some(id) = percent_decode(id).filter(|id| !id.is_empty() && !id.contains('/')) else {
            return json_error(
                StatusCode::BAD_REQUEST,
                "bad_request_id",
                "the request id must be one non-empty, correctly %-encoded path segment",
            );
        };
        let query = request.uri().query().map(str::to_owned);
        return state.probe.clone().handle(&id, query.as_deref()).await;
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "the admin endpoints answer GET and HEAD (POST for the probe check and erasure)",
        );
    }
    match request.uri().path() {
        "/healthz" => json_response(StatusCode::OK, &json!({ "status": "ok" })),
        "/readyz" => readiness(&state).await,
        "/metrics" => metrics(&state),
        "/api/v1/surrogates" => json_response(StatusCode::OK, &state.surrogates.to_json()),
        path if path.starts_with(SCHEMA_PATH) => schema(&state, &path[SCHEMA_PATH.len()..]),
        path if path == crate::records::RECORDS_PATH
            || path.starts_with(&format!("{}/", crate::records::RECORDS_PATH)) =>
        {
            crate::records::records(&state.erasable, path, request.uri().query()).await
        }
        _ => json_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such admin endpoint; try /healthz, /readyz, /metrics or /api/v1/surrogates",
        ),
    }
}

const SCHEMA_PATH: &str = "/api/v1/schema/";
const PROBE_PATH: &str = "/api/v1/probe/";

/// Decodes `%XX` escapes; `None` if an escape is malformed or the result is not UTF-8.
pub(crate) fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The schema inferred from a route's recent traffic, as TOML to start a config from.
fn schema(state: &AdminState, route: &str) -> Response<ProxyBody> {
    match state.surrogates.schema_toml(route) {
        None => json_error(
            StatusCode::NOT_FOUND,
            "route_not_found",
            "no route with live explanations has this name",
        ),
        Some(Err(error)) => json_error(StatusCode::CONFLICT, "no_schema", &error.to_string()),
        Some(Ok(toml)) => {
            let mut response = Response::new(full(Bytes::from(toml)));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/toml; charset=utf-8"),
            );
            response
        }
    }
}

async fn readiness(state: &AdminState) -> Response<ProxyBody> {
    let draining = state.draining.load(Ordering::Relaxed);
    let upstream = probe_upstream(state).await;
    let ready = !draining && upstream.is_ok();
    let body = json!({
        "ready": ready,
        "checks": {
            "config": { "ok": true },
            "draining": { "ok": !draining },
            "upstream": match &upstream {
                Ok(()) => json!({ "ok": true }),
                Err(reason) => json!({ "ok": false, "error": reason }),
            },
        }
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(status, &body)
}

/// A TCP connect is enough to know the model server is listening, and costs the model
/// nothing; whether it answers well shows in the request metrics.
async fn probe_upstream(state: &AdminState) -> Result<(), String> {
    let authority = &state.upstream.authority;
    let port = authority.port_u16().unwrap_or(80);
    let target = (authority.host().trim_matches(['[', ']']).to_owned(), port);
    match tokio::time::timeout(
        state.connect_timeout,
        tokio::net::TcpStream::connect(target),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("cannot connect to {authority}: {e}")),
        Err(_) => Err(format!(
            "no connection to {authority} within {:?}",
            state.connect_timeout
        )),
    }
}

fn metrics(state: &AdminState) -> Response<ProxyBody> {
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &state.registry) {
        return json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics_encoding",
            &e.to_string(),
        );
    }
    let mut response = Response::new(full(Bytes::from(text)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
    );
    response
}
