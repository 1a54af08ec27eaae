//! The developer's workbench on the admin API, over the attributions the audit log
//! recorded (so it answers after a restart, and for a whole fleet on PostgreSQL):
//!
//! - `GET /api/v1/explanations/summary?route=&from=&to=&bucket=hour|day`
//! - `GET /api/v1/explanations/cohorts?route=&from=&to=&a=…&b=…`
//! - `GET /api/v1/explanations/dependence?route=&feature=&from=&to=&points=`
//! - `GET /api/v1/explanations/slices?route=&from=&to=&min_rows=&top=`
//! - `GET /api/v1/explanations/export?route=&from=&to=&format=parquet|csv`
//!
//! Each question reads its period page by page on a blocking thread with a read
//! connection of its own, within `[admin.workbench]`'s row cap and time budget: an
//! answer cut short says so, an export cut short is refused. The computations are
//! `sidelight_report::workbench`'s.

use std::sync::Arc;

use bytes::Bytes;
use http::{Response, StatusCode, header};
use serde_json::Value as Json;
use sidelight_report::explained::{self, Bounds, Frame, Scope};
use sidelight_report::export::{self, ExportError, Format};
use sidelight_report::workbench::{self as bench, Bucket, Cohort, WorkbenchError};

use crate::audit::AuditLog;
use crate::body::{ProxyBody, full, json_response};
use crate::config::{Config, Role, RouteConfig};
use crate::error::json_error;
use crate::query::{QueryError, query_pairs};

pub const EXPLANATIONS_PATH: &str = "/api/v1/explanations/";

/// The default period: the last seven days.
const DEFAULT_DAYS: i64 = 7;
const DAY_MS: i64 = 86_400_000;

/// One of the workbench's questions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Summary,
    Cohorts,
    Dependence,
    Slices,
    Export,
}

impl View {
    /// The question at `/api/v1/explanations/{rest}`.
    pub fn parse(rest: &str) -> Option<Self> {
        Some(match rest {
            "summary" => Self::Summary,
            "cohorts" => Self::Cohorts,
            "dependence" => Self::Dependence,
            "slices" => Self::Slices,
            "export" => Self::Export,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Summary => "summary",
            Self::Cohorts => "cohorts",
            Self::Dependence => "dependence",
            Self::Slices => "slices",
            Self::Export => "export",
        }
    }

    /// Exports are rows of records; the rest are aggregates.
    pub fn role(self) -> Role {
        match self {
            Self::Export => Role::Auditor,
            _ => Role::Viewer,
        }
    }

    fn accepted(self) -> &'static str {
        match self {
            Self::Summary => "route, from, to, bucket",
            Self::Cohorts => "route, from, to, a, b",
            Self::Dependence => "route, from, to, feature, points",
            Self::Slices => "route, from, to, min_rows, top",
            Self::Export => "route, from, to, format",
        }
    }

    /// Whether the question needs reported outcomes (one more read per record).
    fn outcomes(self) -> bool {
        matches!(self, Self::Cohorts | Self::Slices | Self::Export)
    }
}

/// A question, read from the query.
#[derive(Debug, Clone, PartialEq)]
pub struct Ask {
    pub view: View,
    pub route: String,
    pub from_ms: i64,
    pub to_ms: i64,
    pub bucket: Option<Bucket>,
    pub a: Vec<String>,
    pub b: Vec<String>,
    pub feature: Option<String>,
    pub points: usize,
    pub min_rows: usize,
    pub top: usize,
    pub format: Format,
}

fn number(
    key: &str,
    value: &str,
    range: std::ops::RangeInclusive<usize>,
) -> Result<usize, QueryError> {
    value
        .parse::<usize>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            QueryError::value(
                key,
                format!(
                    "must be a whole number from {} to {}",
                    range.start(),
                    range.end()
                ),
            )
        })
}

/// Reads the query of `view`; `now_ms` ends the default period.
pub fn parse(view: View, query: Option<&str>, now_ms: i64) -> Result<Ask, QueryError> {
    let mut ask = Ask {
        view,
        route: String::new(),
        from_ms: 0,
        to_ms: 0,
        bucket: None,
        a: Vec::new(),
        b: Vec::new(),
        feature: None,
        points: 1000,
        min_rows: 20,
        top: 10,
        format: Format::Parquet,
    };
    let (mut from, mut to, mut route) = (None, None, None);
    // A form's empty field means "the default".
    for (key, value) in query_pairs(query)?
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
    {
        match (key.as_str(), view) {
            ("route", _) => route = Some(value),
            ("from", _) => from = Some(crate::report_endpoint::time(&key, &value)?),
            ("to", _) => to = Some(crate::report_endpoint::time(&key, &value)?),
            ("bucket", View::Summary) => {
                ask.bucket = Some(Bucket::parse(&value).ok_or_else(|| {
                    QueryError::value("bucket", format!("`{value}` is not hour or day"))
                })?);
            }
            ("a", View::Cohorts) => ask.a.push(value),
            ("b", View::Cohorts) => ask.b.push(value),
            ("feature", View::Dependence) => ask.feature = Some(value),
            ("points", View::Dependence) => ask.points = number("points", &value, 1..=5000)?,
            ("min_rows", View::Slices) => ask.min_rows = number("min_rows", &value, 1..=100_000)?,
            ("top", View::Slices) => ask.top = number("top", &value, 1..=100)?,
            ("format", View::Export) => {
                ask.format = Format::parse(&value).ok_or_else(|| {
                    QueryError::value("format", format!("`{value}` is not parquet or csv"))
                })?;
            }
            _ => {
                return Err(QueryError::Unknown {
                    given: key,
                    accepted: view.accepted(),
                });
            }
        }
    }
    ask.route = route.ok_or_else(|| QueryError::value("route", "is required: name a route"))?;
    ask.to_ms = to.unwrap_or(now_ms);
    ask.from_ms = from.unwrap_or(ask.to_ms.saturating_sub(DEFAULT_DAYS * DAY_MS));
    if ask.from_ms >= ask.to_ms {
        return Err(QueryError::value("from`/`to", "`from` must be before `to`"));
    }
    if view == View::Cohorts && ask.a.is_empty() {
        return Err(QueryError::value(
            "a",
            "is required: a condition such as `a=duration_months=24..` (repeat `a` for more; `b` \
             likewise, or none for every other row)",
        ));
    }
    if view == View::Dependence && ask.feature.is_none() {
        return Err(QueryError::value("feature", "is required: name a feature"));
    }
    if ask.bucket.is_none() {
        ask.bucket = Some(if ask.to_ms.saturating_sub(ask.from_ms) <= 2 * DAY_MS {
            Bucket::Hour
        } else {
            Bucket::Day
        });
    }
    Ok(ask)
}

/// Rows a viewer's cohort needs at least: fewer would show a few people's own figures.
pub const VIEWER_MIN_COHORT: usize = 10;

/// What a question produced: JSON, or an export's bytes.
enum Answer {
    Json(Json),
    File(Vec<u8>),
}

/// Why a question got no answer.
enum Refusal {
    Bad(WorkbenchError),
    Export(ExportError),
    Store(String),
}

fn empty_period(ask: &Ask, frame: &Frame) -> Refusal {
    let mut message = format!(
        "route `{}` has no explained rows between {} and {}",
        ask.route,
        sidelight_audit::rfc3339_ms(ask.from_ms),
        sidelight_audit::rfc3339_ms(ask.to_ms),
    );
    if frame.unexplained_records > 0 {
        message.push_str(&format!(
            " ({} records without attributions: erased, or not explained)",
            frame.unexplained_records
        ));
    }
    Refusal::Bad(WorkbenchError::Empty(message))
}

/// Computes `ask` over the store, blocking.
fn compute(
    store: &dyn sidelight_audit::AuditStore,
    ask: &Ask,
    route: RouteConfig,
    bounds: Bounds,
    role: Role,
) -> Result<Answer, Refusal> {
    let masked = bench::personal_features(&route);
    let scope = |from_ms, to_ms| Scope {
        route: ask.route.clone(),
        from_ms,
        to_ms,
        config: Some(route.clone()),
    };
    let read = |scope: &Scope| {
        explained::read(store, scope, &bounds).map_err(|e| Refusal::Store(e.to_string()))
    };
    let frame = read(&scope(ask.from_ms, ask.to_ms))?;
    if frame.rows.is_empty() && frame.stopped.is_some() {
        return Err(Refusal::Bad(WorkbenchError::Empty(format!(
            "the read of route `{}` stopped at the workbench's {} before any explained row \
             ({} records without attributions read): ask for a shorter period",
            ask.route,
            match frame.stopped {
                Some(explained::Stop::RowCap) => "row cap (admin.workbench.max_rows)",
                _ => "time budget (admin.workbench.time_budget)",
            },
            frame.unexplained_records
        ))));
    }
    if frame.rows.is_empty() {
        return Err(empty_period(ask, &frame));
    }
    let period = (&frame, ask.from_ms, ask.to_ms);
    let json =
        |value: Result<Json, serde_json::Error>| value.map_err(|e| Refusal::Store(e.to_string()));
    match ask.view {
        View::Summary => {
            let length = ask.to_ms.saturating_sub(ask.from_ms);
            let previous = read(&scope(ask.from_ms.saturating_sub(length), ask.from_ms))?;
            let bucket = ask.bucket.unwrap_or(Bucket::Day);
            let summary = bench::summary(&ask.route, period, &previous, bucket, &masked)
                .map_err(Refusal::Bad)?;
            json(serde_json::to_value(summary)).map(Answer::Json)
        }
        View::Cohorts => {
            let a = Cohort::parse("a", &ask.a, &frame.names, &masked).map_err(Refusal::Bad)?;
            let b = Cohort::parse("b", &ask.b, &frame.names, &masked).map_err(Refusal::Bad)?;
            let least = if role < Role::Auditor {
                VIEWER_MIN_COHORT
            } else {
                1
            };
            let answer = bench::cohorts(&ask.route, period, &a, &b, least).map_err(Refusal::Bad)?;
            json(serde_json::to_value(answer)).map(Answer::Json)
        }
        View::Dependence => {
            let feature = ask.feature.as_deref().unwrap_or_default();
            let answer = bench::dependence(&ask.route, period, feature, &masked, ask.points)
                .map_err(Refusal::Bad)?;
            json(serde_json::to_value(answer)).map(Answer::Json)
        }
        View::Slices => {
            let mut answer = bench::slices(&ask.route, period, &masked, ask.min_rows, ask.top)
                .map_err(Refusal::Bad)?;
            // Record ids lead to records: not for a viewer, who sees aggregates only.
            if role < Role::Auditor {
                answer.overall.examples.clear();
                for slice in answer
                    .by_surrogate_error
                    .iter_mut()
                    .chain(answer.by_model_error.iter_mut())
                {
                    slice.examples.clear();
                }
            }
            json(serde_json::to_value(answer)).map(Answer::Json)
        }
        View::Export => {
            let mut bytes = Vec::new();
            export::write(&frame, &masked, ask.format, &mut bytes).map_err(Refusal::Export)?;
            Ok(Answer::File(bytes))
        }
    }
}

/// A refused question: status, code and a message naming what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl Failure {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn respond(&self) -> Response<ProxyBody> {
        json_error(self.status, self.code, &self.message)
    }
}

/// What a question produced: JSON, or an export's file.
pub enum Produced {
    Json(Json),
    File(Response<ProxyBody>),
}

/// Answers a workbench question; `role` is the caller's.
pub async fn answer(
    audit: Option<&Arc<AuditLog>>,
    config: &Config,
    view: View,
    role: Role,
    query: Option<&str>,
) -> Response<ProxyBody> {
    match produce(audit, config, view, role, query).await {
        Ok(Produced::Json(json)) => json_response(StatusCode::OK, &json),
        Ok(Produced::File(response)) => response,
        Err(failure) => failure.respond(),
    }
}

/// Computes a workbench question.
pub async fn produce(
    audit: Option<&Arc<AuditLog>>,
    config: &Config,
    view: View,
    role: Role,
    query: Option<&str>,
) -> Result<Produced, Failure> {
    let (Some(audit), Some(audit_config)) = (audit, config.audit.clone()) else {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            "audit_not_configured",
            "the workbench reads the audit log, and this proxy has no [audit] section",
        ));
    };
    let now = sidelight_core::clock::now_ms();
    let ask = parse(view, query, now)
        .map_err(|e| Failure::new(StatusCode::BAD_REQUEST, "bad_query", e.to_string()))?;
    let Some(route) = config.routes.iter().find(|r| r.name == ask.route).cloned() else {
        let known: Vec<&str> = config.routes.iter().map(|r| r.name.as_str()).collect();
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            "unknown_route",
            format!(
                "`route`: no route is named `{}`; the routes are: {}",
                ask.route,
                known.join(", ")
            ),
        ));
    };
    if route.explain.is_none() {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            "route_not_explained",
            format!("`route`: route `{}` has no explanations", ask.route),
        ));
    }
    let unavailable = |message: String| {
        Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "audit_unavailable",
            message,
        )
    };
    let postgres = crate::report_endpoint::postgres_reader(audit, &audit_config)
        .map_err(|message| unavailable(message.to_owned()))?;
    let keys = audit.keys().clone();
    let limits = config.admin.workbench.clone();
    let bounds = Bounds {
        max_rows: limits.max_rows,
        deadline: std::time::Instant::now().checked_add(limits.time_budget),
        outcomes: view.outcomes(),
    };
    let asked = ask.clone();
    let computed = tokio::task::spawn_blocking(move || {
        let store = crate::report_endpoint::read_store(postgres, &audit_config, &keys)
            .map_err(|e| Refusal::Store(e.to_string()))?;
        compute(store.as_ref(), &asked, route, bounds, role)
    })
    .await;
    match computed {
        Ok(Ok(Answer::Json(json))) => Ok(Produced::Json(json)),
        Ok(Ok(Answer::File(bytes))) => Ok(Produced::File(file(&ask, bytes))),
        Ok(Err(refusal)) => Err(refused(refusal, &limits)),
        Err(e) => Err(unavailable(format!("the workbench task failed: {e}"))),
    }
}

fn refused(refusal: Refusal, limits: &crate::config::WorkbenchConfig) -> Failure {
    let failure = Failure::new;
    match refusal {
        Refusal::Bad(error @ WorkbenchError::UnknownFeature { .. }) => failure(
            StatusCode::BAD_REQUEST,
            "unknown_feature",
            error.to_string(),
        ),
        Refusal::Bad(error @ WorkbenchError::BadFilter { .. }) => {
            failure(StatusCode::BAD_REQUEST, "bad_filter", error.to_string())
        }
        Refusal::Bad(error @ WorkbenchError::Empty(_)) => {
            failure(StatusCode::NOT_FOUND, "no_rows", error.to_string())
        }
        Refusal::Bad(error @ WorkbenchError::Compute(_)) => failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            "workbench_failed",
            error.to_string(),
        ),
        Refusal::Export(error @ ExportError::Truncated { stop, .. }) => {
            let (status, code) = match stop {
                explained::Stop::RowCap => (StatusCode::PAYLOAD_TOO_LARGE, "export_too_large"),
                explained::Stop::TimeBudget => {
                    (StatusCode::SERVICE_UNAVAILABLE, "export_time_budget")
                }
            };
            failure(
                status,
                code,
                format!(
                    "{error} (admin.workbench.max_rows = {}, time_budget = {:?}); \
                     `sidelight explanations export` reads a database without a time budget",
                    limits.max_rows, limits.time_budget
                ),
            )
        }
        Refusal::Export(error @ ExportError::Mixed(_)) => failure(
            StatusCode::CONFLICT,
            "export_mixed_features",
            error.to_string(),
        ),
        Refusal::Export(error) => failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            "export_failed",
            error.to_string(),
        ),
        Refusal::Store(message) => failure(
            StatusCode::SERVICE_UNAVAILABLE,
            "audit_unavailable",
            message,
        ),
    }
}

fn file(ask: &Ask, bytes: Vec<u8>) -> Response<ProxyBody> {
    let mut response = Response::new(full(Bytes::from(bytes)));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(ask.format.content_type()),
    );
    // Route names are config keys; anything unusual in a file name is replaced.
    let route: String = ask
        .route
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let name = format!(
        "attachment; filename=\"sidelight-{route}-explanations.{}\"",
        ask.format.extension()
    );
    if let Ok(value) = header::HeaderValue::from_str(&name) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_query_names_what_is_wrong() {
        let ask = parse(View::Summary, Some("route=credit"), 30 * DAY_MS).unwrap();
        assert_eq!(ask.from_ms, 23 * DAY_MS);
        assert_eq!(ask.bucket, Some(Bucket::Day));
        let ask = parse(
            View::Cohorts,
            Some("route=credit&a=age=..25&a=sex=f&b=&from=2026-12-01&to=2026-12-02"),
            0,
        )
        .unwrap();
        assert_eq!(ask.a, ["age=..25", "sex=f"]);
        assert!(ask.b.is_empty());
        assert_eq!(ask.bucket, Some(Bucket::Hour));
        for (view, query, named) in [
            (View::Summary, "from=2026-12-01", "`route`"),
            (View::Summary, "route=c&bucket=week", "`bucket`"),
            (View::Summary, "route=c&format=csv", "`format`"),
            (View::Cohorts, "route=c", "`a`"),
            (View::Dependence, "route=c", "`feature`"),
            (View::Dependence, "route=c&feature=x&points=0", "`points`"),
            (View::Export, "route=c&format=xlsx", "`format`"),
            (
                View::Export,
                "route=c&from=2026-12-02&to=2026-12-01",
                "`from`",
            ),
        ] {
            let error = parse(view, Some(query), DAY_MS).unwrap_err().to_string();
            assert!(error.contains(named), "{query}: {error}");
        }
    }
}
