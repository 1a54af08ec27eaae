//! A subject's access to their own decisions (`POST /api/v1/subject-access`, auditor):
//! every decision about one person, with its explanation in the person's words and
//! language, the consent it was made under, the information as recorded, the reasons
//! given, reviews, contests and reported outcomes, as JSON or as a printable page — the
//! answer to a subject access request. An erased record says that it was erased and
//! when, and nothing more.
//!
//! The person is named by the business's own identifier (`subject_id`, pseudonymised
//! as the proxy pseudonymises it) or by the pseudonym (`subject`); the identifier is
//! never logged or recorded.

use std::sync::Arc;

use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::BodyExt;
use maud::{DOCTYPE, html};
use serde_json::{Value as Json, json};
use sidelight_audit::{RecordQuery, Stored, rfc3339_ms};
use sidelight_narrate::{Arg, Locale, Narrator};

use crate::audit::AuditLog;
use crate::body::{ProxyBody, full, json_response};
use crate::config::Audience;
use crate::error::json_error;
use crate::live::RouteLive;
use crate::records::{no_audit, store_error};

/// Where auditors ask for a subject's decisions.
pub const SUBJECT_ACCESS_PATH: &str = "/api/v1/subject-access";
/// The most records one answer holds; a subject with more is told so.
const MAX_RECORDS: usize = 10_000;
const MAX_BODY: usize = 16 * 1024;

/// Whose decisions, in what form and language.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AccessRequest {
    /// The pseudonym (`ps_…`).
    pub subject: Option<String>,
    /// The business's own identifier, pseudonymised here.
    pub subject_id: Option<String>,
    /// `json` (default) or `html`.
    #[serde(default)]
    pub format: Option<String>,
    /// A language tag or an `Accept-Language` value.
    #[serde(default)]
    pub language: Option<String>,
}

/// The answer and the pseudonym it was for (for the admin action's record).
pub struct Access {
    pub response: Response<ProxyBody>,
    pub subject: Option<String>,
    pub records: usize,
}

fn refused(response: Response<ProxyBody>) -> Access {
    Access {
        response,
        subject: None,
        records: 0,
    }
}

pub async fn subject_access(
    audit: Option<&Arc<AuditLog>>,
    routes: &[Arc<RouteLive>],
    body: hyper::body::Incoming,
) -> Access {
    let Some(audit) = audit else {
        return refused(no_audit());
    };
    let bytes = match http_body_util::Limited::new(body, MAX_BODY).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            return refused(json_error(
                StatusCode::BAD_REQUEST,
                "bad_body",
                &format!("cannot read the body: {e}"),
            ));
        }
    };
    let request: AccessRequest = match serde_json::from_slice(&bytes) {
        Ok(r) => r,
        Err(e) => {
            return refused(json_error(
                StatusCode::BAD_REQUEST,
                "bad_body",
                &format!(
                    "expected {{\"subject_id\": \"<your identifier>\"}} or {{\"subject\": \"ps_…\"}}, \
                     with \"format\": \"json\"|\"html\" and \"language\": \"en\"|…: {e}"
                ),
            ));
        }
    };
    answer(audit, routes, request).await
}

/// The answer to a parsed request: the API's and the console's one path.
pub async fn answer(
    audit: &Arc<AuditLog>,
    routes: &[Arc<RouteLive>],
    request: AccessRequest,
) -> Access {
    let subject = match (request.subject, request.subject_id) {
        (Some(s), None) if !s.is_empty() => s,
        (None, Some(id)) if !id.is_empty() => audit.keys().pseudonym(&id),
        _ => {
            return refused(json_error(
                StatusCode::BAD_REQUEST,
                "bad_body",
                "give exactly one of `subject` and `subject_id`, non-empty",
            ));
        }
    };
    let html_page = match request.format.as_deref() {
        None | Some("json") => false,
        Some("html") => true,
        Some(other) => {
            return refused(json_error(
                StatusCode::BAD_REQUEST,
                "bad_body",
                &format!("`format` is `{other}`; it must be json or html"),
            ));
        }
    };
    let narrator = routes.first().map(|l| l.narrator.clone());
    let locale = match (&narrator, request.language.as_deref()) {
        (Some(n), language) => n.negotiate(language),
        (None, _) => Locale::english(),
    };

    let mut records: Vec<Stored> = Vec::new();
    let mut after = None;
    let mut truncated = false;
    loop {
        let q = RecordQuery {
            subject: Some(subject.clone()),
            limit: 500,
            after,
            ..RecordQuery::default()
        };
        let page = match audit.query(q).await {
            Ok(p) => p,
            Err(e) => return refused(store_error(&e)),
        };
        records.extend(page.records);
        match page.next {
            Some(_) if records.len() >= MAX_RECORDS => {
                truncated = true;
                break;
            }
            Some(next) => after = Some(next),
            None => break,
        }
    }
    if records.is_empty() {
        // Whether a person has records is itself personal: the answer is the same for
        // an identifier that never came and for one whose records all expired.
        return Access {
            response: json_error(
                StatusCode::NOT_FOUND,
                "no_records",
                "the audit log holds no record about this subject",
            ),
            subject: Some(subject),
            records: 0,
        };
    }

    let mut decisions = Vec::with_capacity(records.len());
    for stored in &records {
        match decision(audit, routes, stored, &locale).await {
            Ok(d) => decisions.push(d),
            // Never a partial answer that looks complete.
            Err(e) => return refused(store_error(&e)),
        }
    }
    let document = json!({
        "subject": subject,
        "language": locale.to_string(),
        "generated_at": rfc3339_ms(sidelight_core::clock::now_ms()),
        "records": decisions.len(),
        "truncated": truncated,
        "decisions": decisions,
    });
    let count = records.len();
    let response = if html_page {
        let page = printable(&document, narrator.as_deref(), &locale);
        let mut r = Response::new(full(bytes::Bytes::from(page)));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        r
    } else {
        json_response(StatusCode::OK, &document)
    };
    Access {
        response,
        subject: Some(subject),
        records: count,
    }
}

/// One record as the person may read it.
async fn decision(
    audit: &AuditLog,
    routes: &[Arc<RouteLive>],
    stored: &Stored,
    locale: &Locale,
) -> Result<Json, crate::audit::AuditError> {
    let record = &stored.record;
    if let Some(at) = record.erased_at {
        return Ok(json!({
            "id": record.id,
            "erased": true,
            "erased_at": rfc3339_ms(at),
        }));
    }
    let live = routes.iter().find(|l| l.route == record.route);
    let rows: Vec<Json> = record
        .attributions
        .as_ref()
        .and_then(Json::as_array)
        .cloned()
        .unwrap_or_default();
    let explanations: Vec<Json> = rows
        .iter()
        .map(|row| {
            let narration = live.and_then(|live| {
                let model = live.model.load_full();
                crate::live::model::narrate_stored(
                    row,
                    model.as_deref(),
                    &live.config,
                    &live.narrator,
                    &live.overrides,
                    Audience::Customer,
                    locale,
                )
            });
            let (text, withheld) = match narration {
                Some(n) => match n.text {
                    Some(text) => (
                        Some(match n.next_step {
                            Some(step) => format!("{text} {step}"),
                            None => text,
                        }),
                        None,
                    ),
                    None => (None, Some(n.withheld_reason.unwrap_or("withheld"))),
                },
                None if live.is_none() => (None, Some("route_not_configured")),
                None => (None, Some("incomplete_record")),
            };
            let shown = row.get("shown");
            json!({
                "explanation": text,
                "explanation_withheld": withheld,
                "reason_codes": shown.and_then(|s| s.get("reason_codes")).cloned().unwrap_or(json!([])),
                "information": row.get("attributions").and_then(Json::as_array).map(|a| {
                    a.iter()
                        .filter(|c| !is_protected(live, c))
                        .map(|c| json!({ "feature": c["feature"], "value": c["value"] }))
                        .collect::<Vec<_>>()
                }),
            })
        })
        .collect();
    let (reviews, feedback) = audit.review_history(record.id.clone()).await?;
    // Everything recorded about the request, as the privacy policy kept it: protected
    // attributes included (an explanation never names them; the person may see them).
    let request: Option<Json> = record
        .request
        .as_deref()
        .and_then(|b| serde_json::from_slice(b).ok());
    Ok(json!({
        "id": record.id,
        "time": rfc3339_ms(record.time_ms),
        "route": record.route,
        "consent": record.consent,
        "request_as_recorded": request,
        "outputs": record.outputs,
        "explanations": explanations,
        "review_state": record.review_state,
        "reviews": reviews.iter().map(|r| json!({
            "time": rfc3339_ms(r.time_ms),
            "by": if r.is_contest() { "you" } else { "a reviewer" },
            "decision": r.decision,
            "reason": r.reason,
        })).collect::<Vec<_>>(),
        "outcomes_reported": feedback.iter().map(|f| json!({
            "time": rfc3339_ms(f.time_ms),
            "outcome": f.outcome,
        })).collect::<Vec<_>>(),
    }))
}

/// Protected attributes are in the record (the privacy policy decides how), but an
/// explanation never names them; the access answer lists the information the
/// explanation is about.
fn is_protected(live: Option<&Arc<RouteLive>>, contribution: &Json) -> bool {
    let Some(name) = contribution.get("feature").and_then(Json::as_str) else {
        return false;
    };
    live.is_some_and(|l| {
        l.config
            .features
            .iter()
            .any(|f| f.protected && f.name == name)
    })
}

/// The printable page: one section per decision, for the person to keep, labelled in
/// the person's language (`access-…` messages).
fn printable(document: &Json, narrator: Option<&Narrator>, locale: &Locale) -> String {
    let decisions = document["decisions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let text = |v: &Json| match v {
        Json::String(s) => s.clone(),
        Json::Null => "—".to_owned(),
        other => other.to_string(),
    };
    let builtin;
    let narrator = match narrator {
        Some(n) => n,
        None => match Narrator::builtin() {
            Ok(n) => {
                builtin = n;
                &builtin
            }
            Err(_) => return String::new(),
        },
    };
    let label = |id: &str| narrator.text(id, &[], locale);
    let subject = text(&document["subject"]);
    let title = narrator.text("access-title", &[("subject", Arg::Text(&subject))], locale);
    let generated = text(&document["generated_at"]);
    let summary = narrator.text(
        "access-summary",
        &[
            ("count", Arg::Number(decisions.len() as f64)),
            ("date", Arg::Text(&generated)),
        ],
        locale,
    );
    html! {
        (DOCTYPE)
        html lang=(text(&document["language"])) {
            head {
                meta charset="utf-8";
                title { (title) }
                style { "body{font-family:system-ui,sans-serif;max-width:48rem;margin:2rem auto;padding:0 1rem;line-height:1.45}\
                    section{border-top:1px solid #ccc;padding:.5rem 0}dt{font-weight:600}dd{margin:0 0 .4rem 1rem}\
                    @media print{section{break-inside:avoid}}" }
            }
            body {
                h1 { (title) }
                p { (summary) }
                @if document["truncated"] == true {
                    p { strong { (label("access-truncated")) } }
                }
                @for d in &decisions {
                    section {
                        h2 { code { (text(&d["id"])) } }
                        @if d["erased"] == true {
                            p.erased { (narrator.text("access-erased", &[("date", Arg::Text(&text(&d["erased_at"])))], locale)) }
                        } @else {
                            dl {
                                dt { (label("access-when")) } dd { (text(&d["time"])) }
                                dt { (label("access-service")) } dd { (text(&d["route"])) }
                                dt { (label("access-consent")) } dd { (text(&d["consent"])) }
                                dt { (label("access-request")) } dd { code { (text(&d["request_as_recorded"])) } }
                                @for e in d["explanations"].as_array().into_iter().flatten() {
                                    dt { (label("access-explanation")) }
                                    @if e["explanation"].is_string() {
                                        dd.explanation { (text(&e["explanation"])) }
                                    } @else {
                                        dd.explanation { (narrator.text("access-no-explanation", &[("why", Arg::Text(&text(&e["explanation_withheld"])))], locale)) }
                                    }
                                    @let codes = e["reason_codes"].as_array().cloned().unwrap_or_default();
                                    @if !codes.is_empty() {
                                        dt { (label("access-reasons")) }
                                        dd { ol { @for c in &codes { li { (text(&c["statement"])) " (" (text(&c["code"])) ")" } } } }
                                    }
                                    dt { (label("access-information")) }
                                    dd { ul { @for i in e["information"].as_array().into_iter().flatten() {
                                        li { (text(&i["feature"])) ": " (text(&i["value"])) }
                                    } } }
                                }
                                @for r in d["reviews"].as_array().into_iter().flatten() {
                                    dt { (label("access-review")) }
                                    dd {
                                        (text(&r["time"])) ": " (text(&r["decision"])) " "
                                        (if r["by"] == "you" { label("access-by-you") } else { label("access-by-reviewer") })
                                        " — " (text(&r["reason"]))
                                    }
                                }
                                @for o in d["outcomes_reported"].as_array().into_iter().flatten() {
                                    dt { (label("access-outcome")) } dd { (text(&o["time"])) ": " (text(&o["outcome"])) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    .into_string()
}
