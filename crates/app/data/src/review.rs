//! The review rules on the request path (which predictions go to a reviewer) and the
//! outcomes clients report later (`POST /v1/feedback` on the data port).

use http::{Method, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value as Json, json};
use sidelight_audit::Feedback;
use sidelight_core::reviews::Reviews;
use sidelight_explain::Value;

use crate::audit::AuditLog;
use crate::audit::now_ms;
use crate::body::{ProxyBody, json_response};
use crate::config::ReviewConfig;
use crate::error::audit_unavailable as store_error;
use crate::error::json_error;
use crate::live::model::RowExplanation;
use crate::live::{LiveModel, RouteLive};
use crate::monitor::value_text;

/// Where clients report what really happened, on the data listener.
pub const FEEDBACK_PATH: &str = "/v1/feedback";
/// The largest decision or feedback body.
const MAX_BODY: usize = 64 * 1024;

/// Why a prediction goes to review: the names of the rules that fired.
pub fn reasons(
    rules: &ReviewConfig,
    live: &RouteLive,
    reviews: &Reviews,
    model: &LiveModel,
    rows: &[Vec<Value>],
    explanations: &[RowExplanation],
    requested: bool,
) -> Vec<String> {
    let mut out: Vec<&str> = Vec::new();
    if requested {
        out.push("requested");
    }
    if let Some(bound) = rules.local_error_above {
        if explanations.iter().any(|e| e.fidelity.local_error > bound) {
            out.push("low_local_fidelity");
        }
    }
    if let Some(margin) = rules.threshold_margin {
        if explanations
            .iter()
            .any(|e| (e.prediction - e.threshold).abs() <= margin)
        {
            out.push("near_threshold");
        }
    }
    if rules.out_of_distribution && rows.iter().any(|r| model.out_of_distribution(r).is_some()) {
        out.push("out_of_distribution");
    }
    if rules.flagged_groups {
        let flagged = reviews.flagged_set();
        let protected: Vec<(usize, &str)> = model
            .names()
            .iter()
            .enumerate()
            .filter(|(_, n)| {
                live.config
                    .features
                    .iter()
                    .any(|f| f.protected && f.name == n.as_str())
            })
            .map(|(i, n)| (i, n.as_str()))
            .collect();
        let hit = !flagged.is_empty()
            && rows.iter().any(|row| {
                protected.iter().any(|(i, name)| {
                    row.get(*i).is_some_and(|v| {
                        let label = match &live.monitor {
                            Some(m) => m.group_label(name, v),
                            None => value_text(v),
                        };
                        flagged.contains(&((*name).to_owned(), label))
                    })
                })
            });
        if hit {
            out.push("flagged_group");
        }
    }
    if rules.alerts && live.monitor.as_ref().is_some_and(|m| m.firing_alerts() > 0) {
        out.push("alert");
    }
    if rules.sample_rate > 0.0 && random_unit() < rules.sample_rate {
        out.push("sampled");
    }
    out.into_iter().map(str::to_owned).collect()
}

/// A uniform number in [0, 1) from the OS-seeded generator behind v4 UUIDs: sampling
/// needs no reproducibility, only independence from the traffic.
fn random_unit() -> f64 {
    let bits = uuid::Uuid::new_v4().as_u64_pair().0 >> 11;
    bits as f64 / (1u64 << 53) as f64
}

pub async fn read_json(body: hyper::body::Incoming) -> Result<Json, Response<ProxyBody>> {
    let bytes = http_body_util::Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|e| {
            json_error(
                StatusCode::BAD_REQUEST,
                "bad_body",
                &format!("cannot read the body: {e}"),
            )
        })?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| {
        json_error(
            StatusCode::BAD_REQUEST,
            "bad_body",
            &format!("the body is not JSON: {e}"),
        )
    })
}

/// `POST /v1/feedback` on the data port: `{"id": "<record id>", "outcome": …}`, with
/// an optional `"row": k` (0-based) for one row of a record of several. The outcome is
/// kept in the audit log whatever its form; one the monitor understands (see
/// `monitor::outcome_of`; an array gives one per row) is also joined to the record's rows
/// still in the monitor's window. The answer says how many rows it joined.
pub async fn feedback(
    audit: Option<&AuditLog>,
    method: &Method,
    body: hyper::body::Incoming,
) -> Response<ProxyBody> {
    if method != Method::POST {
        return json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "outcomes are reported with POST",
        );
    }
    let Some(audit) = audit else {
        return json_error(
            StatusCode::NOT_FOUND,
            "feedback_unavailable",
            "outcomes are kept in the audit log, which is not configured",
        );
    };
    let body = match read_json(body).await {
        Ok(b) => b,
        Err(response) => return response,
    };
    let attributes = match body.get("attributes") {
        None | Some(Json::Null) => None,
        Some(Json::Object(map)) => Some(map),
        Some(_) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "bad_body",
                "`attributes` must be an object of protected attributes, {\"<name>\": \"<value>\"}",
            );
        }
    };
    let outcome = body.get("outcome");
    let Some(id) = body["id"]
        .as_str()
        .filter(|_| outcome.is_some() || attributes.is_some())
    else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "bad_body",
            "expected {\"id\": \"<x-sidelight-record-id>\", \"outcome\": …} and/or \"attributes\": {…}",
        );
    };
    let row = match body.get("row") {
        None | Some(Json::Null) => None,
        Some(r) => match r.as_u64().and_then(|r| usize::try_from(r).ok()) {
            Some(r) => Some(r),
            None => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    "bad_body",
                    "`row` must be the 0-based index of a row of the record",
                );
            }
        },
    };
    // The outcome is kept in the audit log; reported protected attributes are not (they
    // are joined to the monitor's window in memory only), but the record must exist.
    let found = match outcome {
        Some(outcome) => {
            let feedback = Feedback {
                record_id: id.to_owned(),
                time_ms: now_ms(),
                outcome: outcome.clone(),
            };
            audit.add_feedback(feedback).await
        }
        None => audit.get(id.to_owned()).await.map(|r| r.is_some()),
    };
    match found {
        Ok(true) => {
            let joined = outcome.map_or(0, |o| audit.reviews.join_outcome(id, o, row));
            let joined_attributes = attributes.map_or(0, |a| audit.reviews.join_attributes(id, a));
            json_response(
                StatusCode::OK,
                &json!({
                    "id": id,
                    "recorded": outcome.is_some(),
                    "joined_rows": joined,
                    "joined_attributes": joined_attributes,
                }),
            )
        }
        Ok(false) => json_error(
            StatusCode::NOT_FOUND,
            "record_not_found",
            "no record has this id (use the x-sidelight-record-id of the prediction)",
        ),
        Err(e) => store_error(&e),
    }
}
