//! The admin listener: liveness, readiness and metrics, on a port of its own so that
//! probes and scrapes never compete with model traffic and are never exposed with it.
//! Also the admin JSON API under `/api/v1`: surrogates, inferred schemas, the probe check
//! (`POST /api/v1/probe/{request_id}`), the audit log's records and erasure (see
//! `records`), and config reload.
//!
//! Every `/api/v1` endpoint needs a bearer token whose role is at least the one
//! [`Endpoint::role`] names (see `auth`); `/healthz` and `/readyz` are open, for
//! orchestrators' probes, and `/metrics` is open unless `admin.metrics_token_required`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use serde_json::json;

use crate::auth::{Principal, Role};
use crate::body::{ProxyBody, full, json_response};
use crate::error::json_error;
use crate::query::percent_decode;
use crate::reload::ReloadError;
use crate::state::AdminState;

/// An endpoint of the admin API, found from the path alone, so that its role is checked
/// before anything else about the request is (an unauthenticated caller learns nothing
/// from a 405 or a 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint<'a> {
    /// `GET /api/v1/surrogates`.
    Surrogates,
    /// `GET /api/v1/monitoring`: the latest fairness and drift results.
    Monitoring,
    /// `GET /api/v1/alerts`: the monitors' firing alerts and recent transitions.
    Alerts,
    /// `GET /api/v1/report`: the audit report of a period.
    Report,
    /// `GET /api/v1/evidence`: the evidence pack of a period.
    Evidence,
    /// `GET /api/v1/schema/{route}`.
    Schema(&'a str),
    /// `GET /api/v1/records` and `GET /api/v1/records/{id}`; `records` reads the path.
    Records,
    /// `POST /api/v1/probe/{request_id}`, the id still %-encoded.
    Probe(&'a str),
    /// `POST /api/v1/erasure`.
    Erasure,
    /// `POST /api/v1/subject-access`: every decision about one person.
    SubjectAccess,
    /// `POST /api/v1/config/reload`.
    ConfigReload,
    /// `GET /api/v1/reviews`: the review queue.
    ReviewQueue,
    /// `GET` or `POST /api/v1/reviews/{id}`, the id still %-encoded.
    Review(&'a str),
    /// `GET` or `PUT /api/v1/review-flags` (`PUT` needs `admin`).
    ReviewFlags,
    /// `GET /api/v1/explanations/{summary,cohorts,dependence,slices,export}`.
    Explanations(crate::workbench::View),
    /// `POST /api/v1/whatif`: the model's answer for a changed row.
    WhatIf,
    /// Any other path under `/api/v1/`: 404, but only to a caller with a token.
    Unknown,
}

const API_PREFIX: &str = "/api/v1/";
const SURROGATES_PATH: &str = "/api/v1/surrogates";
const MONITORING_PATH: &str = "/api/v1/monitoring";
const ALERTS_PATH: &str = "/api/v1/alerts";
const SCHEMA_PATH: &str = "/api/v1/schema/";
const PROBE_PATH: &str = "/api/v1/probe/";
const RELOAD_PATH: &str = "/api/v1/config/reload";
const REVIEW_PATH: &str = "/api/v1/reviews/";

const READ: &[Method] = &[Method::GET, Method::HEAD];
const POST: &[Method] = &[Method::POST];
const READ_OR_POST: &[Method] = &[Method::GET, Method::HEAD, Method::POST];
const READ_OR_PUT: &[Method] = &[Method::GET, Method::HEAD, Method::PUT];

impl<'a> Endpoint<'a> {
    /// The endpoint at `path`, or `None` for a path outside `/api/v1/`.
    fn parse(path: &'a str) -> Option<Self> {
        let records = crate::records::RECORDS_PATH;
        Some(match path {
            SURROGATES_PATH => Endpoint::Surrogates,
            MONITORING_PATH => Endpoint::Monitoring,
            ALERTS_PATH => Endpoint::Alerts,
            crate::records::ERASURE_PATH => Endpoint::Erasure,
            crate::access::SUBJECT_ACCESS_PATH => Endpoint::SubjectAccess,
            crate::desk::REVIEWS_PATH => Endpoint::ReviewQueue,
            crate::desk::FLAGS_PATH => Endpoint::ReviewFlags,
            RELOAD_PATH => Endpoint::ConfigReload,
            crate::report_endpoint::REPORT_PATH => Endpoint::Report,
            crate::report_endpoint::EVIDENCE_PATH => Endpoint::Evidence,
            crate::whatif::WHATIF_PATH => Endpoint::WhatIf,
            _ if path == records
                || path
                    .strip_prefix(records)
                    .is_some_and(|r| r.starts_with('/')) =>
            {
                Endpoint::Records
            }
            _ if path.starts_with(SCHEMA_PATH) => Endpoint::Schema(&path[SCHEMA_PATH.len()..]),
            _ if path.starts_with(REVIEW_PATH) => Endpoint::Review(&path[REVIEW_PATH.len()..]),
            _ if path.starts_with(PROBE_PATH) => Endpoint::Probe(&path[PROBE_PATH.len()..]),
            _ if path.starts_with(crate::workbench::EXPLANATIONS_PATH) => {
                match crate::workbench::View::parse(
                    &path[crate::workbench::EXPLANATIONS_PATH.len()..],
                ) {
                    Some(view) => Endpoint::Explanations(view),
                    None => Endpoint::Unknown,
                }
            }
            _ if path.starts_with(API_PREFIX) => Endpoint::Unknown,
            _ => return None,
        })
    }

    /// The least role that may call the endpoint: the one place where this is decided.
    fn role(self, method: &Method) -> Role {
        match self {
            // Reviewers read the flags; setting them is the monitor's or an admin's.
            Endpoint::ReviewFlags if method == Method::PUT => Role::Admin,
            // Aggregates only: no record, no payload.
            Endpoint::Surrogates
            | Endpoint::Monitoring
            | Endpoint::Alerts
            | Endpoint::Schema(_)
            | Endpoint::Unknown => Role::Viewer,
            // Aggregates for a viewer; an export is rows of records, for an auditor.
            Endpoint::Explanations(view) => view.role(),
            // Records hold personal data; the probe check calls the model with a
            // recorded request.
            // Reviewers see records with personal data masked, and decide.
            Endpoint::ReviewQueue | Endpoint::Review(_) | Endpoint::ReviewFlags => Role::Reviewer,
            // The report and the evidence pack hold aggregates only, but of the whole
            // audit log; a subject's access answer is one person's records.
            Endpoint::Records
            | Endpoint::Probe(_)
            | Endpoint::WhatIf
            | Endpoint::Report
            | Endpoint::Evidence
            | Endpoint::SubjectAccess => Role::Auditor,
            Endpoint::Erasure | Endpoint::ConfigReload => Role::Admin,
        }
    }

    fn methods(self) -> &'static [Method] {
        match self {
            Endpoint::Surrogates
            | Endpoint::Monitoring
            | Endpoint::Alerts
            | Endpoint::Schema(_)
            | Endpoint::Records
            | Endpoint::Report
            | Endpoint::Evidence
            | Endpoint::ReviewQueue
            | Endpoint::Explanations(_)
            | Endpoint::Unknown => READ,
            Endpoint::Review(_) => READ_OR_POST,
            Endpoint::ReviewFlags => READ_OR_PUT,
            // The probe check calls the model; erasure and reload change state.
            // A subject's identifier goes in a body, never in a URL that logs keep.
            Endpoint::Probe(_)
            | Endpoint::WhatIf
            | Endpoint::Erasure
            | Endpoint::ConfigReload
            | Endpoint::SubjectAccess => POST,
        }
    }
}

pub async fn handle(
    state: Arc<AdminState>,
    request: Request<hyper::body::Incoming>,
) -> Response<ProxyBody> {
    let path = request.uri().path().to_owned();
    // The web console signs in with a session cookie, not a bearer token: its pages
    // check their own doors (session, role, CSRF) and answer in HTML.
    if crate::console::owns(&path) {
        return crate::console::handle(&state, request).await;
    }
    let Some(endpoint) = Endpoint::parse(&path) else {
        return open_endpoint(&state, &request, &path).await;
    };
    let principal =
        match state
            .auth
            .authorize(request.headers(), endpoint.role(request.method()), &path)
        {
            Ok(principal) => principal,
            Err(refused) => return refused,
        };
    if !endpoint.methods().contains(request.method()) {
        return method_not_allowed(endpoint.methods());
    }
    dispatch(&state, endpoint, principal, request).await
}

/// The endpoints outside `/api/v1/`: open, but for `/metrics` when the config says so.
async fn open_endpoint(
    state: &AdminState,
    request: &Request<hyper::body::Incoming>,
    path: &str,
) -> Response<ProxyBody> {
    if !matches!(path, "/healthz" | "/readyz" | "/metrics") {
        return json_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such admin endpoint; try /healthz, /readyz, /metrics or /api/v1/surrogates",
        );
    }
    if path == "/metrics" && state.auth.policy().metrics_token_required {
        if let Err(refused) = state.auth.authorize(request.headers(), Role::Viewer, path) {
            return refused;
        }
    }
    if !READ.contains(request.method()) {
        return method_not_allowed(READ);
    }
    match path {
        "/healthz" => json_response(StatusCode::OK, &json!({ "status": "ok" })),
        "/readyz" => readiness(state).await,
        _ => metrics(state),
    }
}

fn method_not_allowed(methods: &[Method]) -> Response<ProxyBody> {
    let allow = methods
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    let mut response = json_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        &format!("this endpoint answers {allow}"),
    );
    if let Ok(value) = header::HeaderValue::from_str(&allow) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}

/// Runs an authorised request. `principal` is who asked: what it does to records and to
/// the running proxy is logged with its name and becomes an audit record.
async fn dispatch(
    state: &AdminState,
    endpoint: Endpoint<'_>,
    principal: Principal,
    request: Request<hyper::body::Incoming>,
) -> Response<ProxyBody> {
    match endpoint {
        Endpoint::Surrogates => json_response(StatusCode::OK, &state.surrogates.to_json()),
        Endpoint::Monitoring => json_response(
            StatusCode::OK,
            &crate::monitor::to_json(&state.surrogates.monitors()),
        ),
        Endpoint::Alerts => json_response(
            StatusCode::OK,
            &sidelight_tasks::alert::to_json(&state.surrogates.monitors()),
        ),
        Endpoint::Schema(route) => schema(state, route),
        Endpoint::Evidence => {
            let query = request.uri().query();
            let response = crate::report_endpoint::evidence(
                state.erasable.audit.as_ref(),
                running(state).await,
                query,
            )
            .await;
            let detail = json!({ "status": response.status().as_u16() });
            record_action(
                state,
                &principal,
                "evidence",
                query.unwrap_or_default(),
                detail,
            )
            .await;
            response
        }
        Endpoint::Report => {
            let query = request.uri().query();
            let config = state.reloader.running().await;
            let in_service = in_service(state);
            let response = crate::report_endpoint::report(
                state.erasable.audit.as_ref(),
                config,
                in_service,
                query,
            )
            .await;
            let detail = json!({ "status": response.status().as_u16() });
            record_action(
                state,
                &principal,
                "report",
                query.unwrap_or_default(),
                detail,
            )
            .await;
            response
        }
        Endpoint::Records => {
            let path = request.uri().path();
            let query = request.uri().query();
            let response = crate::records::records(&state.erasable, path, query).await;
            // Reading records is reading personal data: who read what is kept.
            let (action, target) = match path
                .strip_prefix(crate::records::RECORDS_PATH)
                .and_then(|rest| rest.strip_prefix('/'))
            {
                Some(id) => (
                    "records.read",
                    percent_decode(id).unwrap_or_else(|| id.to_owned()),
                ),
                None => ("records.query", query.unwrap_or_default().to_owned()),
            };
            tracing::debug!(principal = %principal.name, action, "admin action");
            let detail = json!({ "status": response.status().as_u16() });
            record_action(state, &principal, action, &target, detail).await;
            response
        }
        Endpoint::Probe(id) => {
            let Some(id) = percent_decode(id).filter(|id| !id.is_empty() && !id.contains('/'))
            else {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    "bad_request_id",
                    "the request id must be one non-empty, correctly %-encoded path segment",
                );
            };
            tracing::info!(principal = %principal.name, action = "probe", target = %id, "admin action");
            let query = request.uri().query().map(str::to_owned);
            let response = state.probe.clone().handle(&id, query.as_deref()).await;
            let detail = json!({ "status": response.status().as_u16(), "query": query });
            record_action(state, &principal, "probe", &id, detail).await;
            response
        }
        Endpoint::Erasure => {
            // The identifier asked for is personal data: neither logged nor recorded
            // here. The audit record names the subject by the pseudonym the answer gives.
            tracing::info!(principal = %principal.name, action = "erasure", "admin action");
            let (parts, body) = request.into_parts();
            let response = crate::records::erasure(&state.erasable, &parts.method, body).await;
            let (response, answer) = read_answer(response).await;
            let subject = answer["subject"].as_str().unwrap_or_default().to_owned();
            let detail = json!({
                "status": answer_status(&response),
                "erased_records": answer["erased_records"],
            });
            record_action(state, &principal, "erasure", &subject, detail).await;
            response
        }
        Endpoint::SubjectAccess => {
            // Like erasure: the identifier is personal data, neither logged nor
            // recorded; the audit record names the subject by its pseudonym.
            tracing::info!(principal = %principal.name, action = "subject_access", "admin action");
            let (_, body) = request.into_parts();
            let access = crate::access::subject_access(
                state.erasable.audit.as_ref(),
                &state.erasable.routes,
                body,
            )
            .await;
            let detail = json!({
                "status": access.response.status().as_u16(),
                "records": access.records,
            });
            record_action(
                state,
                &principal,
                "subject_access",
                access.subject.as_deref().unwrap_or_default(),
                detail,
            )
            .await;
            access.response
        }
        Endpoint::Explanations(view) => {
            let query = request.uri().query();
            let config = state.reloader.running().await;
            let response = crate::workbench::answer(
                state.erasable.audit.as_ref(),
                &config,
                view,
                principal.role,
                query,
            )
            .await;
            // The route, and the parameters' names: filter values may be personal.
            let pairs = crate::query::query_pairs(query).unwrap_or_default();
            let route = crate::query::field(&pairs, "route").unwrap_or_default();
            let names: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
            let detail = json!({ "status": response.status().as_u16(), "parameters": names });
            let action = format!("explanations.{}", view.name());
            record_action(state, &principal, &action, route, detail).await;
            response
        }
        Endpoint::WhatIf => {
            tracing::info!(principal = %principal.name, action = "whatif", "admin action");
            let (_, body) = request.into_parts();
            let done = crate::whatif::what_if(
                &state.probe,
                state.erasable.audit.as_ref(),
                &state.erasable.routes,
                body,
            )
            .await;
            // The features changed, never their values.
            let detail = json!({
                "status": done.response.status().as_u16(),
                "features": done.features,
            });
            record_action(
                state,
                &principal,
                "whatif",
                done.record.as_deref().unwrap_or_default(),
                detail,
            )
            .await;
            done.response
        }
        Endpoint::ConfigReload => reload(state, &principal).await,
        Endpoint::ReviewQueue => state.desk().queue(request.uri().query()).await,
        Endpoint::Review(id) => {
            let Some(id) = percent_decode(id).filter(|id| !id.is_empty() && !id.contains('/'))
            else {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    "bad_record_id",
                    "the record id must be one non-empty, correctly %-encoded path segment",
                );
            };
            if request.method() == Method::POST {
                // The decision is chained into the audit log by the desk itself, with
                // the reviewer's name.
                let (_, body) = request.into_parts();
                state.desk().decide(&id, &principal.name, body).await
            } else {
                let response = state.desk().item(&id).await;
                let detail = json!({ "status": response.status().as_u16() });
                record_action(state, &principal, "reviews.read", &id, detail).await;
                response
            }
        }
        Endpoint::ReviewFlags => {
            let method = request.method().clone();
            let (_, body) = request.into_parts();
            let response = state.desk().flags(&method, body).await;
            if method == Method::PUT {
                let detail = json!({ "status": response.status().as_u16() });
                record_action(state, &principal, "review_flags.set", "", detail).await;
            }
            response
        }
        Endpoint::Unknown => json_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such admin endpoint; see \"Admin endpoints\" in the book (docs/src/operations.md)",
        ),
    }
}

/// The surrogates in service, as a report names them.
fn in_service(state: &AdminState) -> Vec<sidelight_report::InService> {
    state
        .surrogates
        .routes()
        .into_iter()
        .map(|s| sidelight_report::InService {
            route: s.route,
            version: s.version,
            r2: s.r2.filter(|r2| r2.is_finite()),
        })
        .collect()
}

/// What an evidence pack takes from the running proxy: its config, its surrogates in
/// service and their histories, and the narrator.
pub(crate) async fn running(state: &AdminState) -> crate::report_endpoint::Running {
    let config = state.reloader.running().await;
    let in_service = in_service(state);
    let mut surrogates = serde_json::Map::new();
    for live in &state.erasable.routes {
        let history = live
            .history
            .lock()
            .map(|h| serde_json::to_value(&*h).unwrap_or_default())
            .unwrap_or_default();
        surrogates.insert(live.route.clone(), history);
    }
    let narrator = state.erasable.routes.first().map(|l| l.narrator.clone());
    crate::report_endpoint::Running {
        config,
        in_service,
        narrator,
        surrogates: serde_json::Value::Object(surrogates),
    }
}

/// Makes `action` on `target` by `principal` an audit record, when there is an audit log.
async fn record_action(
    state: &AdminState,
    principal: &Principal,
    action: &str,
    target: &str,
    detail: serde_json::Value,
) {
    if let Some(audit) = &state.erasable.audit {
        audit
            .record_admin_action(
                &principal.name,
                principal.role.as_str(),
                action,
                target,
                detail,
            )
            .await;
    }
}

fn answer_status(response: &Response<ProxyBody>) -> u16 {
    response.status().as_u16()
}

/// The JSON of a small answer of our own, and the answer rebuilt to send on.
async fn read_answer(response: Response<ProxyBody>) -> (Response<ProxyBody>, serde_json::Value) {
    use http_body_util::BodyExt;
    let (parts, body) = response.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (Response::from_parts(parts, full(bytes)), json)
}

/// `POST /api/v1/config/reload`.
async fn reload(state: &AdminState, principal: &Principal) -> Response<ProxyBody> {
    let target = state.reloader.file().unwrap_or_default();
    match state.reloader.reload().await {
        Ok(report) => {
            tracing::info!(
                principal = %principal.name,
                action = "config.reload",
                applied = ?report.applied,
                restart_needed = ?report.restart_needed,
                "config reloaded"
            );
            let answer = report.to_json();
            record_action(state, principal, "config.reload", &target, answer.clone()).await;
            json_response(StatusCode::OK, &answer)
        }
        Err(error) => {
            tracing::warn!(principal = %principal.name, action = "config.reload", %error, "config reload refused; the running config stays");
            let (status, code) = match &error {
                ReloadError::NoConfigFile => (StatusCode::CONFLICT, "no_config_file"),
                ReloadError::Config(_) => (StatusCode::BAD_REQUEST, "invalid_config"),
                ReloadError::Failed(_) => (StatusCode::INTERNAL_SERVER_ERROR, "reload_failed"),
            };
            let detail = json!({ "reloaded": false, "error": error.to_string() });
            record_action(state, principal, "config.reload", &target, detail).await;
            json_error(status, code, &error.to_string())
        }
    }
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
    // Only a shared database with `fail_closed`: then every request would get a 503
    // while it is away, and traffic is better sent to a replica that reaches it.
    let store = match &state.erasable.audit {
        Some(audit) => audit.reachable().await,
        None => None,
    };
    let store_ok = store.as_ref().is_none_or(Result::is_ok);
    let ready = !draining && upstream.is_ok() && store_ok;
    let mut body = json!({
        "ready": ready,
        "checks": {
            "config": { "ok": true },
            "draining": { "ok": !draining },
            "upstream": match &upstream {
                Ok(()) => json!({ "ok": true }),
                Err(reason) => json!({ "ok": false, "error": reason.to_string() }),
            },
        }
    });
    // A route that cannot read its requests as its features still serves them (as a
    // plain proxy), so this check does not make the replica unready; it is here so the
    // operator who looks at readiness sees it.
    let unexplainable: serde_json::Map<String, serde_json::Value> = state
        .surrogates
        .column_problems()
        .into_iter()
        .map(|(route, problem)| (route, json!(problem)))
        .collect();
    body["checks"]["explanations"] = json!({
        "ok": unexplainable.is_empty(),
        "affects_readiness": false,
        "routes": unexplainable,
    });
    // A background job that ended (it panicked, or could not start) leaves the traffic
    // flowing; its absence shows here and in its own figures going stale.
    if let Some(jobs) = state.jobs.get() {
        let jobs = jobs.to_json();
        let ended = jobs
            .as_object()
            .is_some_and(|j| j.values().any(|state| state == "ended"));
        body["checks"]["jobs"] = json!({
            "ok": !ended || draining,
            "affects_readiness": false,
            "jobs": jobs,
        });
    }
    if let Some(store) = store {
        body["checks"]["audit_store"] = match store {
            Ok(()) => json!({ "ok": true }),
            Err(reason) => json!({ "ok": false, "error": reason.to_string() }),
        };
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(status, &body)
}

/// Why readiness says the model server is away.
#[derive(Debug, thiserror::Error)]
enum UpstreamDown {
    #[error("cannot connect to {authority}: {source}")]
    Refused {
        authority: http::uri::Authority,
        source: std::io::Error,
    },
    #[error("no connection to {authority} within {timeout:?}")]
    Timeout {
        authority: http::uri::Authority,
        timeout: std::time::Duration,
    },
}

/// A TCP connect is enough to know the model server is listening, and costs the model
/// nothing; whether it answers well shows in the request metrics.
async fn probe_upstream(state: &AdminState) -> Result<(), UpstreamDown> {
    let authority = state.upstream.authority.clone();
    let port = authority.port_u16().unwrap_or(80);
    let target = (authority.host().trim_matches(['[', ']']).to_owned(), port);
    match tokio::time::timeout(
        state.connect_timeout,
        tokio::net::TcpStream::connect(target),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(source)) => Err(UpstreamDown::Refused { authority, source }),
        Err(_) => Err(UpstreamDown::Timeout {
            authority,
            timeout: state.connect_timeout,
        }),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_api_path_has_an_endpoint_and_a_role() {
        let cases = [
            ("/api/v1/surrogates", Some(Role::Viewer)),
            ("/api/v1/monitoring", Some(Role::Viewer)),
            ("/api/v1/alerts", Some(Role::Viewer)),
            ("/api/v1/schema/credit", Some(Role::Viewer)),
            ("/api/v1/records", Some(Role::Auditor)),
            ("/api/v1/records/abc", Some(Role::Auditor)),
            ("/api/v1/report", Some(Role::Auditor)),
            ("/api/v1/probe/abc", Some(Role::Auditor)),
            ("/api/v1/erasure", Some(Role::Admin)),
            ("/api/v1/whatif", Some(Role::Auditor)),
            ("/api/v1/explanations/summary", Some(Role::Viewer)),
            ("/api/v1/explanations/cohorts", Some(Role::Viewer)),
            ("/api/v1/explanations/export", Some(Role::Auditor)),
            ("/api/v1/explanations/nothing", Some(Role::Viewer)),
            ("/api/v1/config/reload", Some(Role::Admin)),
            ("/api/v1/reviews", Some(Role::Reviewer)),
            ("/api/v1/reviews/abc", Some(Role::Reviewer)),
            ("/api/v1/review-flags", Some(Role::Reviewer)),
            // Unknown API paths still need a token before they are told 404.
            ("/api/v1/recordsX", Some(Role::Viewer)),
            ("/api/v1/records/../erasure", Some(Role::Auditor)),
            ("/api/v1/%65rasure", Some(Role::Viewer)),
            ("/healthz", None),
            ("/metrics", None),
            ("/API/v1/erasure", None),
        ];
        for (path, role) in cases {
            let found = Endpoint::parse(path).map(|e| e.role(&Method::GET));
            assert_eq!(found, role, "{path}");
        }
        assert_eq!(
            Endpoint::parse("/api/v1/review-flags").map(|e| e.role(&Method::PUT)),
            Some(Role::Admin)
        );
        assert_eq!(
            Endpoint::parse("/api/v1/schema/a%20b"),
            Some(Endpoint::Schema("a%20b"))
        );
    }
}
