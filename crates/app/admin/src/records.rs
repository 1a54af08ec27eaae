//! The audit log on the admin API:
//!
//! - `GET /api/v1/records?route=&subject=&review_state=&from=&to=&limit=&after=`: one
//!   page of records (`from`/`to` as RFC 3339 or unix milliseconds; `after` is the
//!   previous page's `next`);
//! - `GET /api/v1/records/{id}`: one record;
//! - `POST /api/v1/erasure` with `{"subject": "ps_…"}` or `{"subject_id": "C-1234"}`:
//!   erases a subject's payloads from the store, removes their rows from every route's
//!   training window and from the in-memory caches, and has the routes that held any
//!   retrain without them.
//!
//! Records hold personal data: `admin.rs` lets only auditors read them and admins erase,
//! and records who did.

use std::sync::Arc;

use http::{Method, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::json;
use sidelight_audit::{RecordQuery, record_json};

use crate::audit::AuditLog;
use crate::body::{ProxyBody, json_response};
use crate::error::json_error;
use crate::live::{RecentExplanations, RecentRequests, RouteLive};
use crate::query::{QueryError, query_pairs};

pub const RECORDS_PATH: &str = "/api/v1/records";
pub const ERASURE_PATH: &str = "/api/v1/erasure";
/// The largest page a query returns.
const MAX_PAGE: usize = 1000;
/// The largest erasure request body.
const MAX_ERASURE_BODY: usize = 16 * 1024;

/// What erasure reaches besides the store.
pub struct Erasable {
    pub audit: Option<Arc<AuditLog>>,
    pub routes: Vec<Arc<RouteLive>>,
    pub explanations: Arc<RecentExplanations>,
    pub requests: Arc<RecentRequests>,
}

pub use crate::error::{audit_unavailable as store_error, no_audit};

/// A time as RFC 3339 (`2026-11-27T10:00:00Z`) or unix milliseconds.
pub fn parse_time(text: &str) -> Option<i64> {
    if let Ok(ms) = text.parse::<i64>() {
        return Some(ms);
    }
    let t = humantime::parse_rfc3339_weak(text).ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_millis()).ok()
}

/// Reads a paging parameter (`limit`, at most `max`, or `after`, the previous page's
/// `next`) into `q`; the records API and the review queue page alike.
pub(crate) fn page(
    q: &mut RecordQuery,
    key: &str,
    value: &str,
    max: usize,
) -> Result<(), QueryError> {
    match key {
        "limit" => {
            q.limit = value
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| QueryError::value("limit", format!("must be 1 to {max}")))?;
        }
        _ => {
            q.after = Some(value.parse::<u64>().map_err(|_| {
                QueryError::value("after", "must be the `next` of the previous page")
            })?);
        }
    }
    Ok(())
}

fn parse_query(query: Option<&str>) -> Result<RecordQuery, QueryError> {
    let mut q = RecordQuery {
        limit: 100,
        ..RecordQuery::default()
    };
    for (key, value) in query_pairs(query)? {
        let key = key.as_str();
        let time = |v: &str| {
            parse_time(v).ok_or_else(|| {
                QueryError::value(
                    key,
                    format!("`{v}` is neither RFC 3339 nor unix milliseconds"),
                )
            })
        };
        match key {
            "route" => q.route = Some(value),
            "subject" => q.subject = Some(value),
            "review_state" => q.review_state = Some(value),
            "from" => q.from_ms = Some(time(&value)?),
            "to" => q.to_ms = Some(time(&value)?),
            "limit" | "after" => page(&mut q, key, &value, MAX_PAGE)?,
            other => {
                return Err(QueryError::Unknown {
                    given: other.to_owned(),
                    accepted: "route, subject, review_state, from, to, limit, after",
                });
            }
        }
    }
    Ok(q)
}

/// `GET /api/v1/records…`.
pub async fn records(erasable: &Erasable, path: &str, query: Option<&str>) -> Response<ProxyBody> {
    let Some(audit) = &erasable.audit else {
        return no_audit();
    };
    let rest = path.strip_prefix(RECORDS_PATH).unwrap_or_default();
    if let Some(id) = rest.strip_prefix('/') {
        let Some(id) = crate::query::percent_decode(id).filter(|id| !id.is_empty()) else {
            return json_error(
                StatusCode::BAD_REQUEST,
                "bad_record_id",
                "the record id must be one non-empty, correctly %-encoded path segment",
            );
        };
        return match audit.get(id).await {
            Ok(Some(stored)) => json_response(StatusCode::OK, &record_json(&stored)),
            Ok(None) => json_error(
                StatusCode::NOT_FOUND,
                "record_not_found",
                "no record has this id",
            ),
            Err(e) => store_error(&e),
        };
    }
    if !rest.is_empty() {
        return json_error(StatusCode::NOT_FOUND, "not_found", "no such admin endpoint");
    }
    let q = match parse_query(query) {
        Ok(q) => q,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, "bad_query", &e.to_string()),
    };
    match audit.query(q).await {
        Ok(page) => json_response(
            StatusCode::OK,
            &json!({
                "records": page.records.iter().map(record_json).collect::<Vec<_>>(),
                "next": page.next,
            }),
        ),
        Err(e) => store_error(&e),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ErasureRequest {
    /// The pseudonymous subject key, as records show it.
    subject: Option<String>,
    /// The subject's identifier, pseudonymised here with the audit key.
    subject_id: Option<String>,
}

/// `POST /api/v1/erasure`.
pub async fn erasure(
    erasable: &Erasable,
    method: &Method,
    body: hyper::body::Incoming,
) -> Response<ProxyBody> {
    if method != Method::POST {
        return json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "erasure is requested with POST",
        );
    }
    let Some(audit) = &erasable.audit else {
        return no_audit();
    };
    let bytes = match http_body_util::Limited::new(body, MAX_ERASURE_BODY)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "bad_body",
                &format!("cannot read the body: {e}"),
            );
        }
    };
    let request: ErasureRequest = match serde_json::from_slice(&bytes) {
        Ok(r) => r,
        Err(e) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "bad_body",
                &format!("expected {{\"subject\": \"ps_…\"}} or {{\"subject_id\": \"…\"}}: {e}"),
            );
        }
    };
    let subject = match (request.subject, request.subject_id) {
        (Some(s), None) if !s.is_empty() => s,
        (None, Some(id)) if !id.is_empty() => audit.keys().pseudonym(&id),
        _ => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "bad_body",
                "give exactly one of `subject` and `subject_id`, non-empty",
            );
        }
    };
    // In a fleet the trainer reads the shared table, so the subject's rows leave it
    // before the trainer is woken to retrain without them; the other replicas learn of
    // the erasure on their next poll.
    let shared = if audit.fleet.is_some() {
        for live in &erasable.routes {
            live.forget_pending(&subject);
        }
        match audit.erase_subject(subject.clone()).await {
            Ok(n) => Some(n),
            Err(e) => return store_error(&e),
        }
    } else {
        None
    };
    // Memory first (on a single proxy): from this moment no new surrogate can be
    // trained on them.
    let mut window_rows = 0;
    let mut retraining = Vec::new();
    let mut retired = Vec::new();
    for live in &erasable.routes {
        let forgotten = live.forget_subject(&subject);
        window_rows += forgotten.rows;
        if forgotten.retraining() {
            retraining.push(live.route.clone());
        }
        if let Some(version) = forgotten.retired {
            retired.push(json!({ "route": live.route, "version": version }));
        }
    }
    let cached =
        erasable.explanations.forget_subject(&subject) + erasable.requests.forget_subject(&subject);
    let erased = match shared {
        Some(n) => Ok(n),
        None => audit.erase_subject(subject.clone()).await,
    };
    match erased {
        Ok(n) => {
            tracing::info!(records = n, window_rows, cached, "subject erased");
            json_response(
                StatusCode::OK,
                &json!({
                    "subject": subject,
                    "erased_records": n,
                    "window_rows_removed": window_rows,
                    "cached_entries_removed": cached,
                    "routes_retraining": retraining,
                    "surrogates_retired": retired,
                }),
            )
        }
        Err(e) => store_error(&e),
    }
}
