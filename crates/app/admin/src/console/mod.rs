//! The web console on the admin listener, under `/console`: server-rendered HTML for
//! the people who oversee the model, with no front-end build step and no JavaScript.
//!
//! - `GET /console/login`, `POST /console/login`: sign in with an admin API token;
//!   `POST /console/logout` signs out.
//! - `GET /console`: the overview (any role): per route, traffic, the surrogate in
//!   service, its fidelity over time, explanation coverage and pending reviews.
//! - `GET /console/records` (auditor): records, filtered and paginated;
//!   `GET /console/records/{id}` (reviewer, who sees personal data masked): one record
//!   with the waterfall of its attributions, the customer's and the developer's texts,
//!   its review history and reported outcomes.
//! - `GET /console/reviews` (reviewer): the review queue; `POST /console/reviews/{id}`
//!   decides, through the same code as `POST /api/v1/reviews/{id}`.
//! - `GET /console/monitoring` (reviewer): fidelity per route, the flagged groups, and the
//!   latest fairness and drift results of monitored routes.
//! - `GET /console/duties` (auditor): the routes' notices, a subject's access
//!   (`POST /console/duties/access`: their decisions as a printable page) and the
//!   evidence pack (`GET /console/duties/evidence`: the tar archive).
//!
//! The doors: every page needs a session (see `session`), whose token is checked again
//! on every request against the tokens in force, so roles gate pages exactly as they
//! gate the API. Every POST carries the session's CSRF token (the sign-in form a
//! double-submit one) and must come from this origin. Every answer carries a strict
//! content security policy: no script at all, styles only from the console's own
//! stylesheet.

mod pages;
pub mod session;
mod workbench_page;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use serde_json::Value as Json;
use sidelight_audit::{RecordQuery, Review, record_json};

use crate::auth::{Principal, Role};
use crate::body::{ProxyBody, full};
use crate::desk::DecisionError;
use crate::query::percent_decode;
use crate::state::AdminState;
use pages::{Chrome, Nav};
use session::{
    Console, Flash, SessionRef, Visitor, field, parse_form, percent_encode, same_secret,
};
use sidelight_core::clock::now_ms;

const HOME: &str = "/console";
pub const LOGIN_PATH: &str = "/console/login";
pub const LOGOUT_PATH: &str = "/console/logout";
pub const STYLESHEET_PATH: &str = "/console/static/console.css";
const STYLESHEET: &str = include_str!("console.css");

/// No script, no plugin, no frame; styles from our stylesheet; images (and inline SVG's
/// data) from here only; forms post only here.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
/// The largest form body: a decision's reason and outcome are short.
const MAX_FORM: usize = 16 * 1024;
/// Records per page of the records list and the queue.
const PAGE: usize = 50;
/// Predictions counted for the overview's coverage, per route.
const COVERAGE_SAMPLE: usize = 500;
/// Pending records counted for the overview.
const PENDING_SAMPLE: usize = 1000;
const DAY_MS: i64 = 86_400_000;

/// Whether `path` is the console's (the admin listener's root leads to it too).
pub fn owns(path: &str) -> bool {
    path == "/" || path == HOME || path.starts_with("/console/")
}

/// Answers a console request, with the security headers on every answer.
pub async fn handle(
    state: &AdminState,
    request: Request<hyper::body::Incoming>,
) -> Response<ProxyBody> {
    let mut response = respond(state, request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Pages show personal data and CSRF tokens: never kept by a browser or a proxy.
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// A console page, found from the path alone so that the session and the role are
/// checked before anything else about the request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Page<'a> {
    Overview,
    Records,
    /// `/console/records/{id}`, the id still %-encoded.
    Record(&'a str),
    Reviews,
    /// `/console/reviews/{id}` (POST: a decision), the id still %-encoded.
    Decide(&'a str),
    Monitoring,
    Duties,
    /// `POST /console/duties/access`: a subject's decisions, printable.
    Access,
    /// `GET /console/duties/evidence`: the evidence pack.
    Evidence,
    /// `GET /console/workbench`: the developer's workbench over recorded explanations.
    Workbench,
    /// `GET /console/workbench/export`: its export, as a file.
    WorkbenchExport,
    /// `POST /console/whatif`: a what-if from a record's page.
    WhatIf,
    Logout,
    NotFound,
}

const GET: &[Method] = &[Method::GET, Method::HEAD];
const POST: &[Method] = &[Method::POST];

impl<'a> Page<'a> {
    fn parse(path: &'a str) -> Self {
        match path.trim_end_matches('/') {
            HOME => Page::Overview,
            "/console/records" => Page::Records,
            "/console/reviews" => Page::Reviews,
            "/console/monitoring" => Page::Monitoring,
            "/console/duties" => Page::Duties,
            "/console/duties/access" => Page::Access,
            "/console/duties/evidence" => Page::Evidence,
            "/console/workbench" => Page::Workbench,
            "/console/workbench/export" => Page::WorkbenchExport,
            "/console/whatif" => Page::WhatIf,
            LOGOUT_PATH => Page::Logout,
            p => match (
                p.strip_prefix("/console/records/"),
                p.strip_prefix("/console/reviews/"),
            ) {
                (Some(id), _) if !id.contains('/') => Page::Record(id),
                (_, Some(id)) if !id.contains('/') => Page::Decide(id),
                _ => Page::NotFound,
            },
        }
    }

    /// The least role that may open the page: as the API's endpoints for the same data.
    fn role(self) -> Role {
        match self {
            Page::Overview | Page::Logout | Page::NotFound | Page::Workbench => Role::Viewer,
            Page::Record(_) | Page::Reviews | Page::Decide(_) | Page::Monitoring => Role::Reviewer,
            Page::Records
            | Page::Duties
            | Page::Access
            | Page::Evidence
            | Page::WorkbenchExport
            | Page::WhatIf => Role::Auditor,
        }
    }

    fn methods(self) -> &'static [Method] {
        match self {
            Page::Decide(_) | Page::Logout | Page::Access | Page::WhatIf => POST,
            _ => GET,
        }
    }
}

async fn respond(
    state: &AdminState,
    request: Request<hyper::body::Incoming>,
) -> Response<ProxyBody> {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    match path.as_str() {
        "/" => return redirect(HOME),
        STYLESHEET_PATH if GET.contains(&method) => return stylesheet(),
        STYLESHEET_PATH => return method_not_allowed(GET),
        LOGIN_PATH if GET.contains(&method) => return login_form(state, request.headers()),
        LOGIN_PATH if method == Method::POST => return sign_in(state, request).await,
        LOGIN_PATH => return method_not_allowed(&[Method::GET, Method::HEAD, Method::POST]),
        _ => {}
    }
    let page = Page::parse(&path);
    let (session, principal) = match state.console.visitor(request.headers(), &state.auth) {
        Visitor::SignedIn(session, principal) => (session, principal),
        Visitor::Anonymous => return redirect(LOGIN_PATH),
        // A stale cookie is removed as the browser is sent to sign in.
        Visitor::Stale => {
            let mut response = redirect(LOGIN_PATH);
            state.console.end_session(&mut response, None);
            return response;
        }
    };
    let chrome_for = |nav, flash| Chrome {
        principal: &principal,
        csrf: &session.csrf,
        flash,
        nav,
    };
    if principal.role < page.role() {
        let chrome = chrome_for(Nav::Other, None);
        return html(
            StatusCode::FORBIDDEN,
            pages::message(
                "Not for your role",
                Some(&chrome),
                &format!(
                    "This page needs the {} role or higher; your token's role is {}.",
                    page.role(),
                    principal.role
                ),
            ),
        );
    }
    if !page.methods().contains(&method) {
        return method_not_allowed(page.methods());
    }
    if method == Method::POST {
        let origin_ok = same_origin(request.headers(), request.uri(), state.console.secure);
        let form = match read_form(request.into_body()).await {
            Ok(form) => form,
            Err(response) => return response,
        };
        let token_ok = field(&form, "csrf").is_some_and(|t| same_secret(t, &session.csrf));
        if !origin_ok || !token_ok {
            tracing::warn!(principal = %principal.name, path, origin_ok, "console form refused: CSRF check failed");
            let chrome = chrome_for(Nav::Other, None);
            return html(
                StatusCode::FORBIDDEN,
                pages::message(
                    "Form refused",
                    Some(&chrome),
                    "The form was not sent from this console's own page (its security token \
                     is missing or wrong). Open the page again and resend it.",
                ),
            );
        }
        return match page {
            Page::Logout => sign_out(state, &session, &principal).await,
            Page::Decide(id) => decide(state, &session, &principal, id, &form).await,
            Page::Access => access(state, &principal, &form).await,
            Page::WhatIf => {
                let chrome = chrome_for(Nav::Workbench, None);
                whatif(state, &chrome, &principal, &form).await
            }
            _ => method_not_allowed(page.methods()),
        };
    }
    let flash = state.console.sessions.take_flash(&session.key);
    let query = request.uri().query().map(str::to_owned);
    let query = query.as_deref();
    let accept_language = request
        .headers()
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match page {
        Page::Overview => overview(state, &chrome_for(Nav::Overview, flash)).await,
        Page::Records => records(state, &chrome_for(Nav::Records, flash), query).await,
        Page::Record(id) => {
            let chrome = chrome_for(Nav::Other, flash);
            record(state, &chrome, id, accept_language.as_deref()).await
        }
        Page::Reviews => reviews(state, &chrome_for(Nav::Reviews, flash), query).await,
        Page::Monitoring => monitoring(state, &chrome_for(Nav::Monitoring, flash)),
        Page::Duties => duties(state, &chrome_for(Nav::Duties, flash)).await,
        Page::Workbench => {
            workbench(state, &chrome_for(Nav::Workbench, flash), &principal, query).await
        }
        Page::WorkbenchExport => {
            let config = state.reloader.running().await;
            let produced = crate::workbench::produce(
                state.erasable.audit.as_ref(),
                &config,
                crate::workbench::View::Export,
                principal.role,
                query,
            )
            .await;
            record_action(
                state,
                &principal,
                "explanations.export",
                query.unwrap_or_default(),
            )
            .await;
            match produced {
                Ok(crate::workbench::Produced::File(response)) => response,
                Ok(crate::workbench::Produced::Json(_)) => html(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    pages::message(
                        "No export",
                        Some(&chrome_for(Nav::Workbench, None)),
                        "The export produced no file.",
                    ),
                ),
                Err(failure) => html(
                    failure.status,
                    pages::message(
                        "No export",
                        Some(&chrome_for(Nav::Workbench, None)),
                        &failure.message,
                    ),
                ),
            }
        }
        Page::Evidence => {
            let response = crate::report_endpoint::evidence(
                state.erasable.audit.as_ref(),
                crate::admin::running(state).await,
                query,
            )
            .await;
            record_action(state, &principal, "evidence", query.unwrap_or_default()).await;
            if response.status().is_success() {
                return response;
            }
            html(
                response.status(),
                pages::message(
                    "No evidence pack",
                    Some(&chrome_for(Nav::Duties, None)),
                    "The pack could not be made for this period: check the dates (the start \
                     before the end), or the audit log's status on the overview.",
                ),
            )
        }
        Page::NotFound | Page::Logout | Page::Decide(_) | Page::Access | Page::WhatIf => html(
            StatusCode::NOT_FOUND,
            pages::message(
                "Not found",
                Some(&chrome_for(Nav::Other, flash)),
                "The console has no such page.",
            ),
        ),
    }
}

/// One workbench answer as JSON, or the message of its refusal.
async fn workbench_json(
    state: &AdminState,
    config: &crate::config::Config,
    view: crate::workbench::View,
    role: Role,
    query: &str,
) -> Result<Json, String> {
    match crate::workbench::produce(
        state.erasable.audit.as_ref(),
        config,
        view,
        role,
        Some(query),
    )
    .await
    {
        Ok(crate::workbench::Produced::Json(json)) => Ok(json),
        Ok(crate::workbench::Produced::File(_)) => Err("not a page".to_owned()),
        Err(failure) => Err(failure.message),
    }
}

/// `field=value;field=lo..hi` as repeated query parameters `key=…`.
fn conditions(key: &str, text: &str) -> String {
    text.split(';')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(|c| format!("&{key}={}", crate::query::percent_encode(c)))
        .collect()
}

/// The workbench page: summary, dependence, cohorts and slices of one route and period.
async fn workbench(
    state: &AdminState,
    chrome: &Chrome<'_>,
    principal: &Principal,
    query: Option<&str>,
) -> Response<ProxyBody> {
    let config = state.reloader.running().await;
    let routes: Vec<String> = config
        .routes
        .iter()
        .filter(|r| r.explain.is_some())
        .map(|r| r.name.clone())
        .collect();
    let pairs = crate::query::query_pairs(query).unwrap_or_default();
    let get = |key: &str| {
        crate::query::field(&pairs, key)
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    let route = match get("route") {
        r if !r.is_empty() => r,
        _ => match routes.first() {
            Some(first) => first.clone(),
            None => {
                return html(
                    StatusCode::NOT_FOUND,
                    pages::message("Workbench", Some(chrome), "No route has explanations."),
                );
            }
        },
    };
    let (from, to, a, b) = (get("from"), get("to"), get("a"), get("b"));
    let mut base = format!("route={}", crate::query::percent_encode(&route));
    for (key, value) in [("from", &from), ("to", &to)] {
        if !value.is_empty() {
            base.push_str(&format!("&{key}={}", crate::query::percent_encode(value)));
        }
    }
    use crate::workbench::View;
    let role = principal.role;
    let summary = workbench_json(state, &config, View::Summary, role, &base).await;
    // The feature asked for, else the one the model relies on most whose values may
    // be shown.
    let masked = config
        .routes
        .iter()
        .find(|r| r.name == route)
        .map(sidelight_report::workbench::personal_features)
        .unwrap_or_default();
    let feature = match get("feature") {
        f if !f.is_empty() => f,
        _ => summary
            .as_ref()
            .ok()
            .and_then(|s| s["features"].as_array())
            .and_then(|features| {
                features
                    .iter()
                    .filter_map(|f| f["feature"].as_str())
                    .find(|f| !masked.iter().any(|m| m == f))
            })
            .unwrap_or_default()
            .to_owned(),
    };
    let dependence = if feature.is_empty() || summary.is_err() {
        None
    } else {
        let q = format!(
            "{base}&feature={}&points=600",
            crate::query::percent_encode(&feature)
        );
        Some(workbench_json(state, &config, View::Dependence, role, &q).await)
    };
    let cohorts = if a.is_empty() || summary.is_err() {
        None
    } else {
        let q = format!("{base}{}{}", conditions("a", &a), conditions("b", &b));
        Some(workbench_json(state, &config, View::Cohorts, role, &q).await)
    };
    let slices = if summary.is_err() {
        None
    } else {
        Some(workbench_json(state, &config, View::Slices, role, &base).await)
    };
    // The route and the questions asked; filter values may be personal.
    let asked: Vec<&str> = [
        ("summary", true),
        ("dependence", !feature.is_empty()),
        ("cohorts", !a.is_empty()),
        ("slices", true),
    ]
    .into_iter()
    .filter_map(|(name, asked)| asked.then_some(name))
    .collect();
    record_action(
        state,
        principal,
        &format!("explanations.console:{}", asked.join(",")),
        &route,
    )
    .await;
    let view = workbench_page::WorkbenchView {
        routes: &routes,
        route: &route,
        from: &from,
        to: &to,
        a: &a,
        b: &b,
        feature: &feature,
        summary,
        cohorts,
        dependence,
        slices,
        auditor: role >= Role::Auditor,
    };
    html(StatusCode::OK, workbench_page::workbench(chrome, &view))
}

/// A what-if from a record's page: `changes` holds one `feature = value` per line, each
/// value read as JSON where it is (numbers, true/false), else as text.
async fn whatif(
    state: &AdminState,
    chrome: &Chrome<'_>,
    principal: &Principal,
    form: &[(String, String)],
) -> Response<ProxyBody> {
    let record = field(form, "record").unwrap_or_default().to_owned();
    let row = field(form, "row")
        .and_then(|r| r.parse::<usize>().ok())
        .unwrap_or(0);
    let mut changes = serde_json::Map::new();
    let mut unreadable = Vec::new();
    for line in field(form, "changes").unwrap_or_default().lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match line.split_once('=') {
            Some((name, value)) if !name.trim().is_empty() => {
                let value = value.trim();
                let parsed = serde_json::from_str::<Json>(value)
                    .ok()
                    .filter(|v| !v.is_object() && !v.is_array())
                    .unwrap_or_else(|| Json::String(value.to_owned()));
                changes.insert(name.trim().to_owned(), parsed);
            }
            _ => unreadable.push(line.to_owned()),
        }
    }
    let answer = if unreadable.is_empty() {
        crate::whatif::from_form(
            &state.probe,
            state.erasable.audit.as_ref(),
            &state.erasable.routes,
            record.clone(),
            row,
            changes.clone(),
        )
        .await
        .map_err(|refusal| refusal.2)
    } else {
        Err(format!(
            "Write each change as feature = value; these lines are not: {}",
            unreadable.join(" | ")
        ))
    };
    if let Some(audit) = &state.erasable.audit {
        audit
            .record_admin_action(
                &principal.name,
                principal.role.as_str(),
                "whatif",
                &record,
                serde_json::json!({
                    "via": "console",
                    "ok": answer.is_ok(),
                    "features": changes.keys().collect::<Vec<_>>(),
                }),
            )
            .await;
    }
    let status = if answer.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    html(status, workbench_page::whatif(chrome, &record, &answer))
}

/// The duties page: the routes' notices, a subject's access, the evidence pack.
async fn duties(state: &AdminState, chrome: &Chrome<'_>) -> Response<ProxyBody> {
    let notices: Vec<pages::NoticeRow> = state
        .erasable
        .routes
        .iter()
        .map(|live| pages::NoticeRow {
            route: live.route.clone(),
            languages: live.narrator.locales(),
            reason_codes: live.config.reasons.len(),
            contest_days: live.review.contest_within.map(|d| d.as_secs() / 86_400),
        })
        .collect();
    html(
        StatusCode::OK,
        pages::duties(chrome, &notices, state.erasable.audit.is_some()),
    )
}

/// `POST /console/duties/access`: a subject's decisions as the printable page.
async fn access(
    state: &AdminState,
    principal: &Principal,
    form: &[(String, String)],
) -> Response<ProxyBody> {
    let Some(audit) = &state.erasable.audit else {
        return html(
            StatusCode::NOT_FOUND,
            pages::message(
                "No audit log",
                None,
                "No [audit] log is configured: there are no records to give.",
            ),
        );
    };
    let request = crate::access::AccessRequest {
        subject: None,
        subject_id: field(form, "subject_id")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        format: Some("html".to_owned()),
        language: field(form, "language").map(str::to_owned),
    };
    let access = crate::access::answer(audit, &state.erasable.routes, request).await;
    record_action(
        state,
        principal,
        "subject_access",
        access.subject.as_deref().unwrap_or_default(),
    )
    .await;
    if access.response.status().is_success() {
        return access.response;
    }
    let (title, text) = match access.response.status() {
        StatusCode::NOT_FOUND => (
            "No records",
            "The audit log holds no record about this identifier.",
        ),
        StatusCode::BAD_REQUEST => ("No identifier", "Give the subject's identifier."),
        _ => (
            "Not available",
            "The audit log could not be read just now; try again, and see the overview's audit status.",
        ),
    };
    html(access.response.status(), pages::message(title, None, text))
}

/// Whether a form was sent from this origin, by the headers browsers add: a
/// `Sec-Fetch-Site` other than `same-origin`, or an `Origin` other than ours, is refused.
/// Under `Referrer-Policy: no-referrer` browsers send `Origin: null` with their own
/// forms, so `null` passes only when `Sec-Fetch-Site` vouches for the request. Clients
/// that send neither header (not a browser) are left to the CSRF token.
fn same_origin(headers: &HeaderMap, uri: &Uri, secure: bool) -> bool {
    let fetch_site = headers.get("sec-fetch-site");
    if fetch_site.is_some_and(|site| site.as_bytes() != b"same-origin") {
        return false;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    if origin.as_bytes() == b"null" {
        return fetch_site.is_some();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(http::uri::Authority::as_str));
    let scheme = if secure { "https" } else { "http" };
    match (origin.to_str(), host) {
        (Ok(origin), Some(host)) => origin.eq_ignore_ascii_case(&format!("{scheme}://{host}")),
        _ => false,
    }
}

async fn read_form(
    body: hyper::body::Incoming,
) -> Result<Vec<(String, String)>, Response<ProxyBody>> {
    let bytes = http_body_util::Limited::new(body, MAX_FORM)
        .collect()
        .await
        .map_err(|_| {
            html(
                StatusCode::BAD_REQUEST,
                pages::message(
                    "Form not read",
                    None,
                    "The form could not be read (too large, or cut off).",
                ),
            )
        })?
        .to_bytes();
    parse_form(&bytes).ok_or_else(|| {
        html(
            StatusCode::BAD_REQUEST,
            pages::message("Form not read", None, "The form is not correctly encoded."),
        )
    })
}

// === responses ===

fn html(status: StatusCode, body: String) -> Response<ProxyBody> {
    let mut response = Response::new(full(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

/// 303 See Other: after a form, the browser GETs the next page.
fn redirect(location: &str) -> Response<ProxyBody> {
    let mut response = Response::new(full(Bytes::new()));
    *response.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

fn method_not_allowed(methods: &[Method]) -> Response<ProxyBody> {
    let allow = methods
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    let mut response = html(
        StatusCode::METHOD_NOT_ALLOWED,
        pages::message(
            "Method not allowed",
            None,
            &format!("This page answers {allow}."),
        ),
    );
    if let Ok(value) = HeaderValue::from_str(&allow) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}

fn stylesheet() -> Response<ProxyBody> {
    let mut response = Response::new(full(Bytes::from_static(STYLESHEET.as_bytes())));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    // The same bytes for the life of the binary; a short lifetime picks up an upgrade.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=300"),
    );
    response
}

fn unavailable(chrome: &Chrome<'_>, error: &str) -> Response<ProxyBody> {
    html(
        StatusCode::SERVICE_UNAVAILABLE,
        pages::message(
            "Audit log unavailable",
            Some(chrome),
            &format!("The audit log could not be read: {error}"),
        ),
    )
}

fn no_audit(chrome: &Chrome<'_>) -> Response<ProxyBody> {
    html(
        StatusCode::NOT_FOUND,
        pages::message(
            "No audit log",
            Some(chrome),
            "Records and reviews live in the audit log, which is not configured: add an \
             [audit] section to the config.",
        ),
    )
}

// === sign-in ===

/// `GET /console/login`: the form, with a CSRF token in a short-lived cookie.
fn login_form(state: &AdminState, headers: &HeaderMap) -> Response<ProxyBody> {
    if matches!(
        state.console.visitor(headers, &state.auth),
        Visitor::SignedIn(..)
    ) {
        return redirect(HOME);
    }
    let (csrf, fresh) = match state.console.login_token(headers) {
        Ok(token) => token,
        Err(error) => {
            tracing::error!(%error, "the operating system's random generator failed");
            return html(
                StatusCode::INTERNAL_SERVER_ERROR,
                pages::message("Sign-in unavailable", None, "No random numbers."),
            );
        }
    };
    let mut response = html(StatusCode::OK, pages::login(&csrf, None));
    if fresh {
        state.console.set_login_token(&mut response, &csrf);
    }
    response
}

/// `POST /console/login`: checks the token with the API's policy; on success a session.
async fn sign_in(
    state: &AdminState,
    request: Request<hyper::body::Incoming>,
) -> Response<ProxyBody> {
    let secure = state.console.secure;
    let origin_ok = same_origin(request.headers(), request.uri(), secure);
    let expected = Console::expected_login_token(request.headers());
    let form = match read_form(request.into_body()).await {
        Ok(form) => form,
        Err(response) => return response,
    };
    let token_ok = match (&expected, field(&form, "csrf")) {
        (Some(expected), Some(sent)) => same_secret(sent, expected),
        _ => false,
    };
    if !origin_ok || !token_ok {
        tracing::warn!(origin_ok, "console sign-in refused: CSRF check failed");
        return html(
            StatusCode::FORBIDDEN,
            pages::message(
                "Form refused",
                None,
                "The sign-in form was not sent from this console's own page, or has expired. \
                 Open /console/login again.",
            ),
        );
    }
    let token = field(&form, "token").unwrap_or_default();
    let (principal, digest) = match state.auth.sign_in(token) {
        Ok(found) => found,
        // The same form again, with the same CSRF cookie: no cookie is set.
        Err(why) => {
            return html(
                StatusCode::OK,
                pages::login(expected.as_deref().unwrap_or_default(), Some(why)),
            );
        }
    };
    let mut response = redirect(HOME);
    if let Err(error) = state.console.start_session(&mut response, digest) {
        tracing::error!(%error, "the operating system's random generator failed");
        return html(
            StatusCode::INTERNAL_SERVER_ERROR,
            pages::message("Sign-in unavailable", None, "No random numbers."),
        );
    }
    tracing::info!(principal = %principal.name, role = %principal.role, "console sign-in");
    record_action(state, &principal, "console.sign_in", "").await;
    response
}

/// `POST /console/logout`.
async fn sign_out(
    state: &AdminState,
    session: &SessionRef,
    principal: &Principal,
) -> Response<ProxyBody> {
    let mut response = redirect(LOGIN_PATH);
    state.console.end_session(&mut response, Some(session));
    tracing::info!(principal = %principal.name, "console sign-out");
    record_action(state, principal, "console.sign_out", "").await;
    response
}

/// Makes what a person did through the console an audit record, as the API does.
async fn record_action(state: &AdminState, principal: &Principal, action: &str, target: &str) {
    if let Some(audit) = &state.erasable.audit {
        audit
            .record_admin_action(
                &principal.name,
                principal.role.as_str(),
                action,
                target,
                serde_json::json!({ "via": "console" }),
            )
            .await;
    }
}

// === pages ===

/// The query's pairs, %-decoded; `None` if one is malformed.
fn query_pairs(query: Option<&str>) -> Option<Vec<(String, String)>> {
    parse_form(query.unwrap_or_default().as_bytes())
}

fn bad_query(chrome: &Chrome<'_>, what: &str) -> Response<ProxyBody> {
    html(
        StatusCode::BAD_REQUEST,
        pages::message("Bad request", Some(chrome), what),
    )
}

/// Requests served per route since start, summed over methods and statuses, from the
/// metrics registry (the same numbers `/metrics` shows).
fn requests_per_route(state: &AdminState) -> std::collections::HashMap<String, u64> {
    counter_per_route(state, "sidelight_requests_total{", None)
}

/// Requests whose body was over the route's inspection limit, per route since start:
/// served, but neither explained nor audited with their payload.
fn over_limit_per_route(state: &AdminState) -> std::collections::HashMap<String, u64> {
    counter_per_route(
        state,
        "sidelight_inspected_requests_total{",
        Some("outcome=\"over_limit\""),
    )
}

/// A counter of the metrics summed per `route` label, over the series whose labels
/// contain `label` (all of them when `None`).
fn counter_per_route(
    state: &AdminState,
    series: &str,
    label: Option<&str>,
) -> std::collections::HashMap<String, u64> {
    let mut text = String::new();
    let mut counts = std::collections::HashMap::new();
    if prometheus_client::encoding::text::encode(&mut text, &state.registry).is_err() {
        return counts;
    }
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(series) else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        if label.is_some_and(|l| !labels.contains(l)) {
            continue;
        }
        let route = labels
            .split_once("route=\"")
            .and_then(|(_, r)| r.split_once('"'))
            .map(|(r, _)| r.to_owned());
        let value = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok());
        if let (Some(route), Some(value)) = (route, value) {
            *counts.entry(route).or_insert(0) += value as u64;
        }
    }
    counts
}

/// When a surrogate first answered on a route, as far as its version history tells (Unix
/// ms): the training time of its first accepted version, when the history still holds
/// version 1 (it keeps the newest 50; a later first entry says nothing of when the
/// route's warm-up ended). Predictions before it were warm-up rows.
fn first_in_service_ms(route: &Json) -> Option<i64> {
    let history = history(route);
    if history.iter().map(|v| v.version).min() != Some(1) {
        return None;
    }
    history
        .iter()
        .filter(|v| v.accepted && v.trained_at > 0)
        // Training times are whole seconds, and the version is gated and swapped in
        // after it: the next whole second is the earliest time it surely answered.
        .map(|v| {
            i64::try_from(v.trained_at.saturating_add(1).saturating_mul(1000)).unwrap_or(i64::MAX)
        })
        .min()
}

/// Windows tried for the overview's coverage after the first, widest first: the widest
/// whose audited predictions fit in one sample is counted, so that the figure is about
/// recent traffic and complete, not the first sample of a busy day.
const COVERAGE_WINDOWS_MS: [i64; 4] = [3_600_000, 300_000, 60_000, 10_000];

/// The time of the route's first explained prediction in the last 24 hours, read from
/// the audit log: where its warm-up ended (`None` when the first sample holds none).
async fn first_explained(
    audit: &crate::audit::AuditLog,
    route: &str,
    since: i64,
) -> Result<Option<i64>, String> {
    let q = RecordQuery {
        route: Some(route.to_owned()),
        from_ms: Some(since),
        limit: COVERAGE_SAMPLE,
        ..RecordQuery::default()
    };
    let page = audit.query(q).await.map_err(|e| e.to_string())?;
    Ok(page
        .records
        .iter()
        .find(|s| s.record.surrogate_version.is_some())
        .map(|s| s.record.time_ms))
}

async fn coverage(
    audit: &crate::audit::AuditLog,
    route: &str,
    history_first: Option<i64>,
) -> pages::Coverage {
    let now = now_ms();
    let day = now - DAY_MS;
    // The log says best where warm-up ended (the history may have lost its first
    // versions); the history serves when warm-up was longer than one sample.
    let first = match first_explained(audit, route, day).await {
        Ok(Some(t)) => t,
        Ok(None) => match history_first {
            Some(t) => t,
            None => return pages::Coverage::WarmingUp,
        },
        Err(e) => return pages::Coverage::Unavailable(e),
    };
    let floor = first.max(day);
    let mut froms = vec![floor];
    froms.extend(
        COVERAGE_WINDOWS_MS
            .iter()
            .map(|span| now - span)
            .filter(|from| *from > floor),
    );
    let mut last = None;
    for from in froms {
        let q = RecordQuery {
            route: Some(route.to_owned()),
            from_ms: Some(from),
            limit: COVERAGE_SAMPLE,
            ..RecordQuery::default()
        };
        let page = match audit.query(q).await {
            Ok(page) => page,
            Err(e) => return pages::Coverage::Unavailable(e.to_string()),
        };
        let capped = page.next.is_some();
        // A prediction was explained when a surrogate version answered for it; under
        // consent `none` the attributions are not kept, but the version is.
        last = Some(pages::Coverage::Counted {
            explained: page
                .records
                .iter()
                .filter(|s| s.record.surrogate_version.is_some())
                .count(),
            total: page.records.len(),
            capped,
            window: if from == first {
                pages::CoverageWindow::SinceInService(first)
            } else {
                pages::CoverageWindow::Last(now - from)
            },
            warm_up_before: (first > day).then_some(first),
        });
        if !capped {
            break;
        }
    }
    last.unwrap_or(pages::Coverage::WarmingUp)
}

/// Every route's version history and surrogate, as `GET /api/v1/surrogates` reports it.
fn surrogate_routes(state: &AdminState) -> Vec<Json> {
    state.surrogates.to_json()["routes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn history(route: &Json) -> Vec<pages::Version> {
    route["history"]
        .as_array()
        .map(|h| h.iter().filter_map(pages::Version::from_json).collect())
        .unwrap_or_default()
}

async fn overview(state: &AdminState, chrome: &Chrome<'_>) -> Response<ProxyBody> {
    let requests = requests_per_route(state);
    let over_limit = over_limit_per_route(state);
    let audit = state.erasable.audit.as_ref();
    // Pending reviews, counted per route over the first page of the pending state.
    let mut pending: Option<(std::collections::HashMap<String, usize>, bool)> = None;
    if let Some(audit) = audit {
        let q = RecordQuery {
            review_state: Some("pending".to_owned()),
            limit: PENDING_SAMPLE,
            ..RecordQuery::default()
        };
        if let Ok(page) = audit.query(q).await {
            let mut counts = std::collections::HashMap::new();
            for s in &page.records {
                *counts.entry(s.record.route.clone()).or_insert(0) += 1;
            }
            pending = Some((counts, page.next.is_some()));
        }
    }
    let mut routes = Vec::new();
    for r in surrogate_routes(state) {
        let name = r["route"].as_str().unwrap_or_default().to_owned();
        let coverage = match audit {
            None => pages::Coverage::NoAudit,
            Some(audit) => coverage(audit, &name, first_in_service_ms(&r)).await,
        };
        routes.push(pages::RouteSummary {
            requests: requests.get(&name).copied(),
            over_limit: over_limit.get(&name).copied().unwrap_or(0),
            rows_seen: r["rows_seen"].as_u64().unwrap_or(0),
            warm_up_rows: r["warm_up_rows"].as_u64().unwrap_or(0),
            in_service: pages::Version::from_json(&r["in_service"]),
            history: history(&r),
            unexplainable: r["columns"]["problem"]["message"]
                .as_str()
                .map(|m| (m.to_owned(), r["columns"]["unmapped"].as_u64().unwrap_or(0))),
            coverage,
            pending: pending.as_ref().map(|(counts, capped)| pages::Count {
                n: counts.get(&name).copied().unwrap_or(0),
                capped: *capped,
            }),
            route: name,
        });
    }
    html(
        StatusCode::OK,
        pages::overview(chrome, &routes, audit.is_some()),
    )
}

/// The routes a filter offers: the explained ones and the audit log's own events.
fn route_names(state: &AdminState, events: bool) -> Vec<String> {
    let mut names: Vec<String> = state
        .erasable
        .routes
        .iter()
        .map(|l| l.route.clone())
        .collect();
    if events {
        names.extend(crate::audit::EVENT_ROUTES.map(str::to_owned));
    }
    names
}

async fn records(
    state: &AdminState,
    chrome: &Chrome<'_>,
    query: Option<&str>,
) -> Response<ProxyBody> {
    let Some(audit) = &state.erasable.audit else {
        return no_audit(chrome);
    };
    let Some(pairs) = query_pairs(query) else {
        return bad_query(chrome, "The query is not correctly %-encoded.");
    };
    let get = |k| field(&pairs, k).unwrap_or_default().to_owned();
    let filters = pages::RecordFilters {
        route: get("route"),
        review_state: get("review_state"),
        since: Some(get("since"))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "24h".to_owned()),
    };
    let Some(window) = pages::SINCE
        .iter()
        .find(|(v, _, _)| *v == filters.since)
        .map(|(_, _, w)| *w)
    else {
        return bad_query(chrome, "`since` must be 1h, 24h, 7d or all.");
    };
    let after = match field(&pairs, "after").filter(|a| !a.is_empty()) {
        None => None,
        Some(a) => match a.parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => return bad_query(chrome, "`after` must be the previous page's cursor."),
        },
    };
    let q = RecordQuery {
        route: Some(filters.route.clone()).filter(|r| !r.is_empty()),
        review_state: Some(filters.review_state.clone()).filter(|s| !s.is_empty()),
        from_ms: window.map(|w| now_ms() - w),
        limit: PAGE,
        after,
        ..RecordQuery::default()
    };
    let page = match audit.query(q).await {
        Ok(page) => page,
        Err(e) => return unavailable(chrome, &e.to_string()),
    };
    // Reading records is reading personal data: who read what is kept, as for the API.
    record_action(
        state,
        chrome.principal,
        "records.query",
        query.unwrap_or_default(),
    )
    .await;
    // Unexplained predictions from before a route's first surrogate are warm-up rows,
    // and say so, rather than look like failures.
    // Only where that is known: a route that never had a surrogate is all warm-up; one
    // whose history has lost its first versions is labelled nowhere.
    let first: std::collections::HashMap<String, i64> = surrogate_routes(state)
        .iter()
        .filter_map(|r| {
            let first = if history(r).is_empty() && r["in_service"].is_null() {
                i64::MAX
            } else {
                first_in_service_ms(r)?
            };
            Some((r["route"].as_str()?.to_owned(), first))
        })
        .collect();
    let rows: Vec<pages::RecordRow> = page
        .records
        .iter()
        .map(|s| {
            let mut row = pages::RecordRow::from_json(&record_json(s));
            row.warm_up = s.record.surrogate_version.is_none()
                && first
                    .get(&s.record.route)
                    .is_some_and(|t| s.record.time_ms < *t);
            row
        })
        .collect();
    let next = page.next.map(|n| {
        format!(
            "/console/records?route={}&review_state={}&since={}&after={n}",
            percent_encode(&filters.route),
            percent_encode(&filters.review_state),
            percent_encode(&filters.since),
        )
    });
    html(
        StatusCode::OK,
        pages::records(chrome, &route_names(state, true), &filters, &rows, next),
    )
}

/// `id` decoded from a path segment, if it is one.
fn path_id(id: &str) -> Option<String> {
    percent_decode(id).filter(|id| !id.is_empty() && !id.contains('/'))
}

async fn record(
    state: &AdminState,
    chrome: &Chrome<'_>,
    raw_id: &str,
    accept_language: Option<&str>,
) -> Response<ProxyBody> {
    let Some(audit) = &state.erasable.audit else {
        return no_audit(chrome);
    };
    let Some(id) = path_id(raw_id) else {
        return bad_query(chrome, "The record id is not correctly %-encoded.");
    };
    let stored = match audit.get(id.clone()).await {
        Ok(Some(stored)) => stored,
        Ok(None) => {
            return html(
                StatusCode::NOT_FOUND,
                pages::message("No such record", Some(chrome), "No record has this id."),
            );
        }
        Err(e) => return unavailable(chrome, &e.to_string()),
    };
    let (reviews, feedback) = match audit.review_history(id.clone()).await {
        Ok(history) => history,
        Err(e) => return unavailable(chrome, &e.to_string()),
    };
    // Reviewers see what `GET /api/v1/reviews/{id}` shows them: personal data masked.
    let masked = chrome.principal.role < Role::Auditor;
    let json = if masked {
        state.desk().masked(&stored)
    } else {
        record_json(&stored)
    };
    let action = if masked {
        "reviews.read"
    } else {
        "records.read"
    };
    record_action(state, chrome.principal, action, &id).await;
    let rows = explained_rows(state, &json, masked, accept_language);
    let view = pages::RecordPage {
        record: &json,
        masked,
        rows,
        reviews: &reviews,
        feedback: &feedback,
        whatif: !masked,
    };
    html(StatusCode::OK, pages::record(chrome, &view))
}

/// The record's attribution rows, each with the customer's and the developer's text
/// written again by the route's narrator in the reader's language. `masked`: the record
/// is a reviewer's, with personal data masked.
fn explained_rows(
    state: &AdminState,
    record: &Json,
    masked: bool,
    accept_language: Option<&str>,
) -> Vec<pages::ExplainedRow> {
    let rows: Vec<&Json> = match record.get("attributions") {
        Some(Json::Array(rows)) => rows.iter().collect(),
        Some(row @ Json::Object(_)) => vec![row],
        _ => return Vec::new(),
    };
    let route = record
        .get("route")
        .and_then(Json::as_str)
        .unwrap_or_default();
    let live = state.erasable.routes.iter().find(|l| l.route == route);
    let texts: Vec<String> = record
        .get("texts")
        .and_then(Json::as_array)
        .map(|t| {
            t.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            let number = |key: &str| row.get(key).and_then(Json::as_f64);
            let contributions: Vec<(String, String, f64)> = row
                .get("attributions")
                .and_then(Json::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|c| {
                            let feature = c.get("feature")?.as_str()?.to_owned();
                            let value = match c.get("value") {
                                Some(Json::String(s)) => s.clone(),
                                Some(Json::Null) | None => "—".to_owned(),
                                Some(Json::Number(n)) => {
                                    n.as_f64().map_or_else(|| n.to_string(), short_number)
                                }
                                Some(other) => other.to_string(),
                            };
                            Some((feature, value, c.get("contribution")?.as_f64()?))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let narrate = |audience| -> Result<String, pages::Withheld> {
                let Some(live) = live else {
                    return Err(pages::Withheld::RouteGone);
                };
                let model = live.model.load_full();
                let locale = live.narrator.negotiate(accept_language);
                let narration = crate::live::model::narrate_stored(
                    row,
                    model.as_deref(),
                    &live.config,
                    &live.narrator,
                    &live.overrides,
                    audience,
                    &locale,
                )
                .ok_or(pages::Withheld::Incomplete)?;
                match narration.text {
                    Some(text) => Ok(match narration.next_step {
                        Some(step) => format!("{text} {step}"),
                        None => text,
                    }),
                    None => Err(match narration.withheld_reason {
                        Some("low_fidelity") => pages::Withheld::LowFidelity,
                        Some(other) => pages::Withheld::Other(other.to_owned()),
                        None => pages::Withheld::Unstated,
                    }),
                }
            };
            let shown_audience = row
                .get("shown")
                .and_then(|s| s.get("audience"))
                .and_then(Json::as_str)
                .map(str::to_owned);
            // The principal reasons the caller was given: business statements, never a
            // value, so shown whatever the caller's role.
            let reason_codes = row
                .get("shown")
                .and_then(|s| s.get("reason_codes"))
                .and_then(Json::as_array)
                .map(|codes| {
                    codes
                        .iter()
                        .filter_map(|c| {
                            Some((
                                c.get("code")?.as_str()?.to_owned(),
                                c.get("statement")?.as_str()?.to_owned(),
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let item = row.get("item").and_then(|item| {
                Some((
                    item.get("rank")?.as_u64()?,
                    item.get("id").and_then(Json::as_str).map(str::to_owned),
                ))
            });
            pages::ExplainedRow {
                item,
                reason_codes,
                space: row
                    .get("space")
                    .and_then(Json::as_str)
                    .unwrap_or("output")
                    .to_owned(),
                base_value: number("base_value").unwrap_or(0.0),
                prediction: number("prediction"),
                surrogate_prediction: number("surrogate_prediction"),
                local_error: row
                    .get("fidelity")
                    .and_then(|f| f.get("local_error"))
                    .and_then(Json::as_f64),
                contributions,
                customer: narrate(crate::config::Audience::Customer),
                developer: narrate(crate::config::Audience::Developer),
                // The stored text, which the privacy policy has checked (a text quoting
                // a restricted value is kept as a placeholder). With personal data
                // masked, only a customer's text, which never quotes values.
                shown: texts
                    .get(i)
                    .cloned()
                    .filter(|_| !masked || shown_audience.as_deref() == Some("customer")),
                shown_audience,
            }
        })
        .collect()
}

/// A number in at most four decimals, without trailing zeros (`0.4167`, `3`).
fn short_number(x: f64) -> String {
    let text = format!("{x:.4}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

async fn reviews(
    state: &AdminState,
    chrome: &Chrome<'_>,
    query: Option<&str>,
) -> Response<ProxyBody> {
    let Some(audit) = &state.erasable.audit else {
        return no_audit(chrome);
    };
    let Some(pairs) = query_pairs(query) else {
        return bad_query(chrome, "The query is not correctly %-encoded.");
    };
    let route = field(&pairs, "route").unwrap_or_default().to_owned();
    let queue = match field(&pairs, "state").filter(|s| !s.is_empty()) {
        None | Some("pending") => "pending",
        Some("contested") => "contested",
        Some("escalated") => "escalated",
        Some(_) => {
            return bad_query(chrome, "`state` must be pending, contested or escalated.");
        }
    };
    let after = match field(&pairs, "after").filter(|a| !a.is_empty()) {
        None => None,
        Some(a) => match a.parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => return bad_query(chrome, "`after` must be the previous page's cursor."),
        },
    };
    let q = RecordQuery {
        review_state: Some(queue.to_owned()),
        route: Some(route.clone()).filter(|r| !r.is_empty()),
        limit: PAGE,
        after,
        ..RecordQuery::default()
    };
    let page = match audit.query(q).await {
        Ok(page) => page,
        Err(e) => return unavailable(chrome, &e.to_string()),
    };
    let desk = state.desk();
    let mut items: Vec<pages::QueueItem> = Vec::with_capacity(page.records.len());
    for s in &page.records {
        // A contested record carries the customer's own words: the reviewer reads them.
        // (An escalated record may be a contest a reviewer passed on.)
        let contest = if queue != "pending" {
            match audit.review_history(s.record.id.clone()).await {
                Ok((reviews, _)) => reviews.into_iter().rev().find(Review::is_contest),
                Err(e) => return unavailable(chrome, &e.to_string()),
            }
        } else {
            None
        };
        items.push(pages::QueueItem {
            row: pages::RecordRow::from_json(&desk.masked(s)),
            reasons: s.record.review_reasons.clone(),
            contest,
        });
    }
    let next = page.next.map(|n| {
        format!(
            "/console/reviews?state={queue}&route={}&after={n}",
            percent_encode(&route)
        )
    });
    let (decided, contests) = match recent_decisions(audit).await {
        Ok(found) => found,
        Err(e) => return unavailable(chrome, &e.to_string()),
    };
    html(
        StatusCode::OK,
        pages::reviews(
            chrome,
            &pages::QueueFilter {
                routes: &route_names(state, false),
                route: &route,
                queue,
            },
            &items,
            next,
            &decided,
            &contests,
        ),
    )
}

/// The newest decisions of the last 24 hours, newest first, and the customers'
/// contests of the last 30 days, from the `_review` records the audit log chains (read
/// up to a bound).
async fn recent_decisions(
    audit: &crate::audit::AuditLog,
) -> Result<(Vec<Review>, pages::Contests), crate::audit::AuditError> {
    const SHOWN: usize = 20;
    const READ_AT_MOST: usize = 20_000;
    const CONTEST_DAYS: i64 = 30;
    let now = now_ms();
    let mut decided: std::collections::VecDeque<Review> = std::collections::VecDeque::new();
    let mut tally = sidelight_audit::ContestTally::default();
    let mut after = None;
    let mut read = 0;
    let mut complete = true;
    loop {
        let q = RecordQuery {
            route: Some("_review".to_owned()),
            from_ms: Some(now - CONTEST_DAYS * DAY_MS),
            limit: 500,
            after,
            ..RecordQuery::default()
        };
        let page = audit.query(q).await?;
        read += page.records.len();
        for s in &page.records {
            let review = s
                .record
                .request
                .as_deref()
                .and_then(|b| serde_json::from_slice::<Review>(b).ok());
            if let Some(review) = review {
                tally.add(&review);
                if review.time_ms >= now - DAY_MS {
                    decided.push_back(review);
                    if decided.len() > SHOWN {
                        decided.pop_front();
                    }
                }
            }
        }
        match page.next {
            Some(next) if read < READ_AT_MOST => after = Some(next),
            Some(_) => {
                complete = false;
                break;
            }
            None => break,
        }
    }
    let contests = pages::Contests {
        days: CONTEST_DAYS,
        tally,
        complete,
    };
    Ok((decided.into_iter().rev().collect(), contests))
}

/// `POST /console/reviews/{id}`: the form's decision, recorded as the API records it;
/// back to the queue or the record with a message.
async fn decide(
    state: &AdminState,
    session: &SessionRef,
    principal: &Principal,
    raw_id: &str,
    form: &[(String, String)],
) -> Response<ProxyBody> {
    let Some(id) = path_id(raw_id) else {
        return html(
            StatusCode::BAD_REQUEST,
            pages::message(
                "Bad request",
                None,
                "The record id is not correctly %-encoded.",
            ),
        );
    };
    let decision = field(form, "decision").unwrap_or_default();
    let reason = field(form, "reason").unwrap_or_default();
    // A number or JSON is taken as such; anything else as text ("approved").
    let outcome = field(form, "outcome")
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(|o| serde_json::from_str::<Json>(o).unwrap_or_else(|_| Json::String(o.to_owned())));
    let desk = state.desk();
    let flash = match desk
        .record_decision(&id, &principal.name, decision, outcome, reason)
        .await
    {
        Ok(review) => Flash {
            ok: true,
            text: format!(
                "Decision recorded: {id} is now {} (by {}).",
                review.state(),
                review.reviewer
            ),
        },
        Err(DecisionError::Invalid(problem)) => Flash {
            ok: false,
            text: format!("Not recorded: {}.", problem.replace('`', "")),
        },
        Err(DecisionError::NotFound) => Flash {
            ok: false,
            text: "Not recorded: no record has this id.".to_owned(),
        },
        Err(DecisionError::NoAudit) => Flash {
            ok: false,
            text: "Not recorded: there is no audit log.".to_owned(),
        },
        Err(DecisionError::Store(e)) => Flash {
            ok: false,
            text: format!("Not recorded: the audit log failed ({e})."),
        },
    };
    state.console.sessions.set_flash(&session.key, flash);
    let back = if field(form, "return") == Some("record") {
        format!("/console/records/{}", percent_encode(&id))
    } else {
        "/console/reviews".to_owned()
    };
    redirect(&back)
}

fn monitoring(state: &AdminState, chrome: &Chrome<'_>) -> Response<ProxyBody> {
    let routes: Vec<pages::RouteFidelity> = surrogate_routes(state)
        .iter()
        .map(|r| pages::RouteFidelity {
            route: r["route"].as_str().unwrap_or_default().to_owned(),
            history: history(r),
        })
        .collect();
    let flagged = state.desk().flagged_groups();
    let cohort_features: Vec<(String, Vec<String>)> = state
        .erasable
        .routes
        .iter()
        .map(|live| {
            let features = live
                .config
                .features
                .iter()
                .filter(|f| !f.pii)
                .map(|f| f.name.clone())
                .collect();
            (live.route.clone(), features)
        })
        .collect();
    let monitors: Vec<_> = state
        .surrogates
        .monitors()
        .iter()
        .map(|m| (m.route.clone(), m.latest.load_full()))
        .collect();
    html(
        StatusCode::OK,
        pages::monitoring(chrome, &routes, &flagged, &monitors, &cohort_features),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn pages_are_found_from_the_path_with_their_role() {
        let cases = [
            ("/console", Page::Overview, Role::Viewer),
            ("/console/", Page::Overview, Role::Viewer),
            ("/console/records", Page::Records, Role::Auditor),
            (
                "/console/records/a%2Fb",
                Page::Record("a%2Fb"),
                Role::Reviewer,
            ),
            ("/console/reviews", Page::Reviews, Role::Reviewer),
            ("/console/reviews/x", Page::Decide("x"), Role::Reviewer),
            ("/console/monitoring", Page::Monitoring, Role::Reviewer),
            ("/console/workbench", Page::Workbench, Role::Viewer),
            (
                "/console/workbench/export",
                Page::WorkbenchExport,
                Role::Auditor,
            ),
            ("/console/whatif", Page::WhatIf, Role::Auditor),
            ("/console/logout", Page::Logout, Role::Viewer),
            ("/console/records/a/b", Page::NotFound, Role::Viewer),
            ("/console/nothing", Page::NotFound, Role::Viewer),
        ];
        for (path, page, role) in cases {
            assert_eq!(Page::parse(path), page, "{path}");
            assert_eq!(page.role(), role, "{path}");
        }
        assert!(owns("/") && owns("/console") && owns("/console/x"));
        assert!(!owns("/consoles") && !owns("/api/v1/records"));
    }

    #[test]
    fn numbers_are_short() {
        assert_eq!(short_number(0.416_666_666), "0.4167");
        assert_eq!(short_number(3.0), "3");
        assert_eq!(short_number(-0.5), "-0.5");
    }

    #[test]
    fn forms_must_come_from_this_origin() {
        let uri: Uri = "/console/logout".parse().unwrap();
        let headers = |pairs: &[(&str, &str)]| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:9100"));
            for (k, v) in pairs {
                h.insert(
                    http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                );
            }
            h
        };
        assert!(same_origin(&headers(&[]), &uri, false));
        assert!(same_origin(
            &headers(&[
                ("origin", "http://127.0.0.1:9100"),
                ("sec-fetch-site", "same-origin")
            ]),
            &uri,
            false
        ));
        assert!(!same_origin(
            &headers(&[("origin", "http://127.0.0.1:9100")]),
            &uri,
            true
        ));
        assert!(!same_origin(
            &headers(&[("origin", "http://evil.example")]),
            &uri,
            false
        ));
        assert!(!same_origin(&headers(&[("origin", "null")]), &uri, false));
        assert!(same_origin(
            &headers(&[("origin", "null"), ("sec-fetch-site", "same-origin")]),
            &uri,
            false
        ));
        assert!(!same_origin(
            &headers(&[("sec-fetch-site", "cross-site")]),
            &uri,
            false
        ));
    }
}
