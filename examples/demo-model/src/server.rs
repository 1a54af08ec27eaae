//! The model API: KServe v1 over HTTP/1.1 (h2c is accepted too, since the auto builder
//! offers it for free).
//!
//! - `POST /v1/models/credit:predict` `{"instances": [...]}` → `{"predictions": [...]}`
//! - `POST /v1/models/shop:rank` `{"customer": {...}, "items": [...]}` →
//!   `{"recommendations": [{"sku", "score"}, …]}`, best first (see [`crate::shop`])
//! - `GET /v1/models/credit`, `GET /v1/models`, `GET /healthz`
//!
//! Error bodies are `{"error": "..."}` and name the instance index and the field, never
//! the value, because the proxy in front of this server may log upstream errors.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::data::{Application, FEATURE_NAMES, is_numeric};
use crate::model::score;

/// Name of the single model this server hosts.
pub const MODEL_NAME: &str = "credit";

/// Path of the predict endpoint.
pub const PREDICT_PATH: &str = "/v1/models/credit:predict";

/// Path of the recommender's ranking endpoint.
pub const RANK_PATH: &str = "/v1/models/shop:rank";

const MODEL_PATH: &str = "/v1/models/credit";
const MODELS_PATH: &str = "/v1/models";
const HEALTH_PATH: &str = "/healthz";

/// Largest request body accepted; larger ones get 413.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// How long in-flight connections get to finish after shutdown is requested.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves the model API on `listener` until `shutdown` resolves, then stops accepting and
/// gives in-flight connections up to 5 s to finish before dropping them.
///
/// Accept errors (aborted handshakes, file-descriptor exhaustion) are logged and retried
/// rather than returned, because one bad connection must not take the demo down; the
/// `io::Result` is kept so that callers do not depend on that policy.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // A timer enables hyper's header-read timeout, so idle half-open clients cannot pin
    // connection tasks forever.
    builder.http1().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _peer)) => stream,
                    Err(err) => {
                        backoff_after_accept_error(&err).await;
                        continue;
                    }
                };
                if let Err(err) = stream.set_nodelay(true) {
                    tracing::debug!(%err, "could not set TCP_NODELAY");
                }
                let connection = builder
                    .serve_connection(TokioIo::new(stream), service_fn(handle))
                    .into_owned();
                let connection = graceful.watch(connection);
                connections.spawn(async move {
                    if let Err(err) = connection.await {
                        tracing::debug!(%err, "connection ended with an error");
                    }
                });
            }
        }
    }

    drop(listener);
    tracing::debug!(
        in_flight = connections.len(),
        "demo model stopping; draining connections"
    );
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            remaining = connections.len(),
            "demo model: connections still open after the drain timeout; dropping them"
        );
    }
    connections.shutdown().await;
    Ok(())
}

async fn backoff_after_accept_error(err: &io::Error) {
    match err.kind() {
        io::ErrorKind::ConnectionAborted
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::Interrupted => {}
        _ => {
            // Typically EMFILE: retrying at once would spin.
            tracing::warn!(%err, "accept failed; retrying shortly");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn handle(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let read_only = [Method::GET, Method::HEAD];
    let response = match request.uri().path() {
        PREDICT_PATH if request.method() == Method::POST => predict(request).await,
        RANK_PATH if request.method() == Method::POST => rank(request).await,
        PREDICT_PATH | RANK_PATH => method_not_allowed("POST"),
        path @ (MODEL_PATH | MODELS_PATH | HEALTH_PATH) => {
            if !read_only.contains(request.method()) {
                method_not_allowed("GET, HEAD")
            } else if path == MODEL_PATH {
                json_response(StatusCode::OK, &json!({"name": MODEL_NAME, "ready": true}))
            } else if path == MODELS_PATH {
                json_response(StatusCode::OK, &json!({"models": [MODEL_NAME]}))
            } else {
                json_response(StatusCode::OK, &json!({"status": "ok"}))
            }
        }
        _ => error_response(StatusCode::NOT_FOUND, "no such endpoint".to_owned()),
    };
    Ok(response)
}

async fn rank(request: Request<Incoming>) -> Response<Full<Bytes>> {
    let body = match read_body(request).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let parsed: Value = match serde_json::from_slice(&body) {
        Ok(parsed) => parsed,
        Err(err) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                format!("request body is not valid JSON: {err}"),
            );
        }
    };
    match crate::shop::rank(&parsed) {
        Ok(answer) => json_response(StatusCode::OK, &answer),
        Err(message) => error_response(StatusCode::BAD_REQUEST, message),
    }
}

/// The whole body, within [`MAX_BODY_BYTES`]; or the error answer.
async fn read_body(request: Request<Incoming>) -> Result<Bytes, Response<Full<Bytes>>> {
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    match Limited::new(request.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(err) => {
            tracing::debug!(%err, "could not read request body");
            Err(error_response(
                StatusCode::BAD_REQUEST,
                "could not read the request body".to_owned(),
            ))
        }
    }
}

async fn predict(request: Request<Incoming>) -> Response<Full<Bytes>> {
    let body = match read_body(request).await {
        Ok(body) => body,
        Err(response) => return response,
    };

    match predictions(&body) {
        Ok(predictions) => {
            tracing::debug!(instances = predictions.len(), "scored");
            json_response(StatusCode::OK, &json!({"predictions": predictions}))
        }
        Err(message) => error_response(StatusCode::BAD_REQUEST, message),
    }
}

/// Scores a KServe v1 request body; the error is the client-facing message.
pub(crate) fn predictions(body: &[u8]) -> Result<Vec<f64>, String> {
    let request: Value = serde_json::from_slice(body).map_err(|err| {
        // serde_json errors carry only a position and a category, never input text.
        format!("request body is not valid JSON: {err}")
    })?;
    let instances = request
        .get("instances")
        .ok_or_else(|| "request body must be an object with an `instances` array".to_owned())?
        .as_array()
        .ok_or_else(|| "`instances` must be an array".to_owned())?;
    instances
        .iter()
        .enumerate()
        .map(|(index, instance)| {
            let application = parse_instance(instance)
                .map_err(|message| format!("instance {index}: {message}"))?;
            Ok(round6(score(&application)))
        })
        .collect()
}

/// Accepts either an object keyed by feature name (extra keys ignored) or an array of the
/// 20 values in `FEATURE_NAMES` order.
pub(crate) fn parse_instance(instance: &Value) -> Result<Application, String> {
    let owned;
    let object: &Map<String, Value> = match instance {
        Value::Object(object) => object,
        Value::Array(values) if values.len() == FEATURE_NAMES.len() => {
            owned = FEATURE_NAMES
                .iter()
                .map(|name| (*name).to_owned())
                .zip(values.iter().cloned())
                .collect();
            &owned
        }
        Value::Array(values) => {
            return Err(format!(
                "an array instance needs {} values in feature order, got {}",
                FEATURE_NAMES.len(),
                values.len()
            ));
        }
        _ => {
            return Err(format!(
                "must be an object or an array of {} values",
                FEATURE_NAMES.len()
            ));
        }
    };

    for (position, field) in FEATURE_NAMES.iter().enumerate() {
        let value = object
            .get(*field)
            .ok_or_else(|| format!("missing field `{field}`"))?;
        let expected = if is_numeric(field) {
            value.is_number().then_some(()).ok_or("a number")
        } else {
            value.is_string().then_some(()).ok_or("a string")
        };
        if let Err(kind) = expected {
            return Err(format!(
                "field `{field}` (position {position}) must be {kind}, got {}",
                json_kind(value)
            ));
        }
    }

    let application = Application::deserialize(Value::Object(
        FEATURE_NAMES
            .iter()
            .filter_map(|name| Some(((*name).to_owned(), object.get(*name)?.clone())))
            .collect(),
    ))
    .map_err(|err| format!("could not read the instance: {err}"))?;
    application
        .validate()
        .map_err(|invalid| format!("field `{}`: {}", invalid.field, invalid.message))?;
    Ok(application)
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Six decimals is far below the model's meaningful precision and keeps responses stable
/// across platforms' last-bit differences.
pub(crate) fn round6(p: f64) -> f64 {
    (p * 1e6).round() / 1e6
}

fn too_large() -> Response<Full<Bytes>> {
    error_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body exceeds {MAX_BODY_BYTES} bytes"),
    )
}

fn method_not_allowed(allow: &'static str) -> Response<Full<Bytes>> {
    let mut response = error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method not allowed; use {allow}"),
    );
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    response
}

fn error_response(status: StatusCode, message: String) -> Response<Full<Bytes>> {
    json_response(status, &json!({ "error": message }))
}

fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::applications;

    fn first() -> Application {
        applications().unwrap()[0].application.clone()
    }

    #[test]
    fn object_and_array_instances_parse_to_the_same_application() {
        let app = first();
        let object = serde_json::to_value(&app).unwrap();
        let array = Value::Array(FEATURE_NAMES.iter().map(|f| object[*f].clone()).collect());
        assert_eq!(parse_instance(&object).unwrap(), app);
        assert_eq!(parse_instance(&array).unwrap(), app);
    }

    #[test]
    fn integers_and_floats_are_both_accepted() {
        let mut object = serde_json::to_value(first()).unwrap();
        object["duration_months"] = json!(6);
        assert_eq!(parse_instance(&object).unwrap(), first());
    }

    #[test]
    fn errors_name_instance_and_field() {
        let mut bad = serde_json::to_value(first()).unwrap();
        bad["credit_amount"] = json!("lots");
        let good = serde_json::to_value(first()).unwrap();
        let body = json!({"instances": [good, bad]}).to_string();
        let err = predictions(body.as_bytes()).unwrap_err();
        assert!(err.contains("instance 1"), "{err}");
        assert!(err.contains("credit_amount"), "{err}");
        assert!(!err.contains("lots"), "{err}");

        let mut missing = serde_json::to_value(first()).unwrap();
        missing.as_object_mut().unwrap().remove("housing");
        let err = parse_instance(&missing).unwrap_err();
        assert!(err.contains("missing field `housing`"), "{err}");

        let mut unknown = serde_json::to_value(first()).unwrap();
        unknown["purpose"] = json!("yacht");
        let err = parse_instance(&unknown).unwrap_err();
        assert!(err.contains("purpose") && !err.contains("yacht"), "{err}");

        assert!(parse_instance(&json!([1, 2])).unwrap_err().contains("20"));
        assert!(predictions(b"{}").unwrap_err().contains("instances"));
        assert!(predictions(b"not json").unwrap_err().contains("JSON"));
    }

    #[test]
    fn rounding_keeps_six_decimals() {
        assert_eq!(round6(0.123_456_789), 0.123_457);
    }
}
