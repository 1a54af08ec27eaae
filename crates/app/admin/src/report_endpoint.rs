//! `GET /api/v1/report?from=&to=&format=html|md|json&reference_from=&reference_to=`:
//! the audit report built by the running proxy, which adds its surrogates in service.
//!
//! The report reads the whole period and verifies the whole log, so it runs on a
//! blocking thread with a read connection of its own (to the SQLite file, or a
//! read-only one to the PostgreSQL database): a long report never holds up the admin
//! connection that queries, reviews and erasure share.

use std::sync::Arc;

use bytes::Bytes;
use http::{Response, StatusCode, header};
use sidelight_audit::{AuditStore, PostgresStore, SqliteConfig, SqliteStore};

use crate::audit::AuditLog;
use crate::body::{ProxyBody, full, json_response};
use crate::config::{AuditBackend, AuditConfig, Config};
use crate::error::json_error;
use crate::query::{QueryError, query_pairs};
use sidelight_report::{InService, Period, ReportError, ReportInput};

pub const REPORT_PATH: &str = "/api/v1/report";
/// `GET /api/v1/evidence?from=&to=`: the evidence pack of a period, as a tar archive.
pub const EVIDENCE_PATH: &str = "/api/v1/evidence";

/// The default period, up to now.
const DEFAULT_DAYS: i64 = 30;
const DAY_MS: i64 = 24 * 3600 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Html,
    Markdown,
    Json,
}

struct Ask {
    period: Period,
    reference: Option<Period>,
    format: Format,
}

/// A time as RFC 3339, a date (midnight UTC) or unix milliseconds.
pub(crate) fn time(key: &str, value: &str) -> Result<i64, QueryError> {
    let text = if value.len() == "2026-11-27".len() {
        format!("{value}T00:00:00Z")
    } else {
        value.to_owned()
    };
    crate::records::parse_time(&text).ok_or_else(|| {
        QueryError::value(
            key,
            format!("`{value}` is neither an RFC 3339 time, a date nor unix milliseconds"),
        )
    })
}

fn parse(query: Option<&str>, now_ms: i64) -> Result<Ask, QueryError> {
    let pairs = query_pairs(query)?;
    let (mut from, mut to, mut ref_from, mut ref_to) = (None, None, None, None);
    let mut format = Format::Json;
    for (key, value) in pairs {
        match key.as_str() {
            "from" => from = Some(time(&key, &value)?),
            "to" => to = Some(time(&key, &value)?),
            "reference_from" => ref_from = Some(time(&key, &value)?),
            "reference_to" => ref_to = Some(time(&key, &value)?),
            "format" => {
                format = match value.as_str() {
                    "html" => Format::Html,
                    "md" | "markdown" => Format::Markdown,
                    "json" => Format::Json,
                    other => {
                        return Err(QueryError::value(
                            "format",
                            format!("`{other}` is not html, md or json"),
                        ));
                    }
                }
            }
            _ => {
                return Err(QueryError::Unknown {
                    given: key,
                    accepted: "from, to, format, reference_from, reference_to",
                });
            }
        }
    }
    let to = to.unwrap_or(now_ms);
    let from = from.unwrap_or(to - DEFAULT_DAYS * DAY_MS);
    let period =
        Period::new(from, to).map_err(|e| QueryError::value("from`/`to", e.to_string()))?;
    let reference = match (ref_from, ref_to) {
        (None, None) => None,
        (Some(f), Some(t)) => Some(
            Period::new(f, t)
                .map_err(|e| QueryError::value("reference_from`/`reference_to", e.to_string()))?,
        ),
        _ => {
            return Err(QueryError::value(
                "reference_from`/`reference_to",
                "give both, or neither",
            ));
        }
    };
    Ok(Ask {
        period,
        reference,
        format,
    })
}

/// A read-only connection of its own to a PostgreSQL log (`None` for SQLite, opened on
/// the blocking thread by [`read_store`]); `Err` when the log has none to give.
pub(crate) fn postgres_reader(
    audit: &AuditLog,
    audit_config: &AuditConfig,
) -> Result<Option<PostgresStore>, &'static str> {
    match audit_config.backend {
        AuditBackend::Sqlite => Ok(None),
        AuditBackend::Postgres => audit
            .postgres_reader()
            .map(Some)
            .ok_or("the PostgreSQL audit log has no read connection"),
    }
}

/// The store a report or an evidence pack reads, on a connection of its own: so that
/// a long read never holds up the admin connection. Blocks: call it off the workers.
pub(crate) fn read_store(
    postgres: Option<PostgresStore>,
    audit_config: &AuditConfig,
    keys: &sidelight_audit::Keys,
) -> Result<Box<dyn AuditStore>, sidelight_audit::StoreError> {
    Ok(match postgres {
        Some(reader) => Box::new(reader),
        None => Box::new(SqliteStore::open(
            &audit_config.path,
            SqliteConfig {
                busy_timeout: audit_config.lock_timeout,
                ..SqliteConfig::new(keys.clone())
            },
        )?),
    })
}

/// Builds and answers the report.
pub async fn report(
    audit: Option<&Arc<AuditLog>>,
    config: Config,
    in_service: Vec<InService>,
    query: Option<&str>,
) -> Response<ProxyBody> {
    let (Some(audit), Some(audit_config)) = (audit, config.audit.clone()) else {
        return crate::records::no_audit();
    };
    let postgres = match postgres_reader(audit, &audit_config) {
        Ok(reader) => reader,
        Err(message) => return crate::records::store_error(&message),
    };
    let now = sidelight_core::clock::now_ms();
    let ask = match parse(query, now) {
        Ok(ask) => ask,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, "bad_query", &e.to_string()),
    };
    let keys = audit.keys().clone();
    let built = tokio::task::spawn_blocking(move || {
        let store = read_store(postgres, &audit_config, &keys)?;
        let input = ReportInput {
            config: &config,
            keys: &keys,
            period: ask.period,
            reference: ask.reference,
            in_service: Some(&in_service),
            generated_at_ms: now,
        };
        sidelight_report::build(store, &input, &mut |_| {})
    })
    .await;
    let report = match built {
        Ok(Ok(report)) => report,
        Ok(Err(ReportError::Period(message))) => {
            return json_error(StatusCode::BAD_REQUEST, "bad_query", &message);
        }
        Ok(Err(error)) => return crate::records::store_error(&error.to_string()),
        Err(error) => {
            return crate::records::store_error(&format!("the report task failed: {error}"));
        }
    };
    let (body, content_type) = match ask.format {
        Format::Json => {
            return match serde_json::to_value(&report) {
                Ok(json) => json_response(StatusCode::OK, &json),
                Err(error) => crate::records::store_error(&error.to_string()),
            };
        }
        Format::Html => (
            sidelight_report::render_html(&report),
            "text/html; charset=utf-8",
        ),
        Format::Markdown => (
            sidelight_report::render_markdown(&report),
            "text/markdown; charset=utf-8",
        ),
    };
    let mut response = Response::new(full(Bytes::from(body)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}

/// What an evidence pack takes from the running proxy besides the log.
pub struct Running {
    pub config: Config,
    pub in_service: Vec<InService>,
    /// The routes' narrator; `None` without explained routes (no notice to write).
    pub narrator: Option<Arc<sidelight_narrate::Narrator>>,
    /// Per route, every version trained with its fidelity.
    pub surrogates: serde_json::Value,
}

/// Builds and answers the evidence pack of the period `from`/`to` (default: the last
/// 30 days), as the report does, on a blocking thread with its own read connection.
pub async fn evidence(
    audit: Option<&Arc<AuditLog>>,
    running: Running,
    query: Option<&str>,
) -> Response<ProxyBody> {
    let (Some(audit), Some(audit_config)) = (audit, running.config.audit.clone()) else {
        return crate::records::no_audit();
    };
    let now = sidelight_core::clock::now_ms();
    let period = match query_pairs(query)
        .map_err(|e| e.to_string())
        .and_then(|pairs| {
            let (mut from, mut to) = (None, None);
            // A form's empty date field means "the default".
            for (key, value) in pairs.into_iter().filter(|(_, v)| !v.is_empty()) {
                match key.as_str() {
                    "from" => from = Some(time(&key, &value).map_err(|e| e.to_string())?),
                    "to" => to = Some(time(&key, &value).map_err(|e| e.to_string())?),
                    _ => {
                        return Err(QueryError::Unknown {
                            given: key,
                            accepted: "from, to",
                        }
                        .to_string());
                    }
                }
            }
            let to = to.unwrap_or(now);
            let from = from.unwrap_or(to - DEFAULT_DAYS * DAY_MS);
            Period::new(from, to).map_err(|e| e.to_string())
        }) {
        Ok(period) => period,
        Err(message) => return json_error(StatusCode::BAD_REQUEST, "bad_query", &message),
    };
    let postgres = match postgres_reader(audit, &audit_config) {
        Ok(reader) => reader,
        Err(message) => return crate::records::store_error(&message),
    };
    let keys = audit.keys().clone();
    let built = tokio::task::spawn_blocking(move || {
        let store = read_store(postgres, &audit_config, &keys).map_err(ReportError::from)?;
        // The file as loaded; a config without a file (variables only) has none.
        let config_text = running
            .config
            .file
            .as_deref()
            .and_then(|f| std::fs::read_to_string(f).ok());
        crate::evidence::export(
            store,
            &crate::evidence::PackInput {
                config: &running.config,
                config_text: config_text.as_deref(),
                keys: &keys,
                narrator: running.narrator.as_deref(),
                period,
                in_service: Some(&running.in_service),
                surrogates: running.surrogates,
                now_ms: now,
            },
        )
    })
    .await;
    let pack = match built {
        Ok(Ok(pack)) => pack,
        Ok(Err(crate::evidence::EvidenceError::Report(ReportError::Period(message)))) => {
            return json_error(StatusCode::BAD_REQUEST, "bad_query", &message);
        }
        Ok(Err(error)) => return crate::records::store_error(&error.to_string()),
        Err(error) => {
            return crate::records::store_error(&format!("the evidence task failed: {error}"));
        }
    };
    let mut response = Response::new(full(Bytes::from(pack)));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/x-tar"),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        header::HeaderValue::from_static("attachment; filename=\"sidelight-evidence.tar\""),
    );
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_query_names_what_is_wrong() {
        let ask = parse(Some("from=2026-11-01&to=2026-11-02&format=html"), 0).unwrap();
        assert_eq!(ask.period.to_ms - ask.period.from_ms, DAY_MS);
        assert_eq!(ask.format, Format::Html);
        let ask = parse(None, 100 * DAY_MS).unwrap();
        assert_eq!(ask.period.from_ms, 70 * DAY_MS);
        assert_eq!(ask.format, Format::Json);
        for (query, named) in [
            ("from=yesterday", "`from`"),
            ("format=pdf", "`format`"),
            ("from=2026-11-02&to=2026-11-01", "`from`/`to`"),
            ("reference_from=2026-11-01", "reference_to"),
            ("colour=red", "`colour`"),
        ] {
            let error = parse(Some(query), 0).err().unwrap();
            assert!(error.to_string().contains(named), "{query}: {error}");
        }
    }
}
