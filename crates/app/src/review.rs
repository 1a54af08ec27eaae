//! Human oversight of predictions: the review rules that send a prediction to the
//! queue, holding a response until a reviewer decides, the reviewers' endpoints, and
//! the outcomes clients report later (`POST /v1/feedback` on the data port).
//!
//! A flagged prediction's record has review state `pending` and the names of the rules
//! that caught it. A decision (`confirm`, `override` with the corrected outcome, or
//! `escalate`, always with a reason) sets the state, is kept with the record, and is
//! chained into the audit log as a record of its own.

use std::collections::HashSet;
use std::sync::Arc;

use http::{Method, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value as Json, json};
use sidelight_audit::{Feedback, FieldRule, PrivacyPolicy, RecordQuery, Review, record_json};
use sidelight_explain::Value;
use sidelight_core::reviews::Reviews;

use crate::audit::AuditLog;
use crate::monitor::value_text;
use crate::audit::now_ms;
use crate::body::{ProxyBody, json_response};
use crate::config::ReviewConfig;
use crate::error::json_error;
use crate::live::model::RowExplanation;
use crate::live::{LiveModel, RouteLive};
use crate::records::{no_audit, store_error};

/// Where reviewers work, on the admin listener.
pub(crate) const REVIEWS_PATH: &str = "/api/v1/reviews";
/// Where the fairness monitor (and admins) flag protected groups.
pub(crate) const FLAGS_PATH: &str = "/api/v1/review-flags";
/// Where clients report what really happened, on the data listener.
pub(crate) const FEEDBACK_PATH: &str = "/v1/feedback";
/// The largest decision or feedback body.
const MAX_BODY: usize = 64 * 1024;

/// Why a prediction goes to review: the names of the rules that fired.
pub(crate) fn reasons(
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

/// Why a decision was not recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DecisionError {
    /// There is no audit log to keep it in.
    NoAudit,
    /// The decision is incomplete: what is missing, in a sentence.
    Invalid(&'static str),
    /// No record has the id.
    NotFound,
    /// The store failed; its error text (never record content).
    Store(String),
}

/// What the admin endpoints of this module reach.
pub(crate) struct ReviewDesk {
    pub(crate) audit: Option<Arc<AuditLog>>,
    pub(crate) reviews: Arc<Reviews>,
    pub(crate) routes: Vec<Arc<RouteLive>>,
}

async fn read_json(body: hyper::body::Incoming) -> Result<Json, Response<ProxyBody>> {
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

impl ReviewDesk {
    /// A record as a reviewer may see it: personal fields (features marked `pii` and
    /// the subject's field) masked, the subject key left out.
    pub(crate) fn masked(&self, stored: &sidelight_audit::Stored) -> Json {
        let Some(live) = self.routes.iter().find(|l| l.route == stored.record.route) else {
            // Not a prediction of a known route: nothing a reviewer needs.
            return json!({ "id": stored.record.id, "route": stored.record.route });
        };
        let mut names: Vec<String> = live
            .config
            .features
            .iter()
            .filter(|f| f.pii)
            .map(|f| f.name.clone())
            .collect();
        names.extend(live.privacy.subject_field.clone());
        let mask = PrivacyPolicy::new(names.into_iter().map(|n| (n, FieldRule::Mask)));
        let mut shown = stored.clone();
        let record = &mut shown.record;
        let keys = self.audit.as_ref().map(|a| a.keys().clone());
        if let Some(keys) = &keys {
            record.request = record
                .request
                .as_ref()
                .and_then(|b| mask.apply_payload(b, &[], keys));
            record.response = record
                .response
                .as_ref()
                .and_then(|b| mask.apply_payload(b, &[], keys));
            if let Some(features) = record.features.as_mut() {
                let columns: Vec<String> = features
                    .get("names")
                    .and_then(|n| serde_json::from_value(n.clone()).ok())
                    .unwrap_or_default();
                if let Some(Json::Array(rows)) = features.get_mut("rows") {
                    let mut typed: Vec<Vec<Json>> = rows
                        .iter()
                        .map(|r| r.as_array().cloned().unwrap_or_default())
                        .collect();
                    mask.apply_rows(&columns, &mut typed, keys);
                    *rows = typed.into_iter().map(Json::Array).collect();
                }
            }
            if let Some(a) = record.attributions.as_mut() {
                mask.apply_attributions(a, keys);
            }
        }
        record.subject = None;
        record_json(&shown)
    }

    /// `GET /api/v1/reviews?state=pending&route=&limit=&after=`: the queue.
    pub(crate) async fn queue(&self, query: Option<&str>) -> Response<ProxyBody> {
        let Some(audit) = &self.audit else {
            return no_audit();
        };
        let q = match queue_query(query) {
            Ok(q) => q,
            Err(message) => return json_error(StatusCode::BAD_REQUEST, "bad_query", &message),
        };
        match audit.query(q).await {
            Ok(page) => json_response(
                StatusCode::OK,
                &json!({
                    "records": page.records.iter().map(|s| self.masked(s)).collect::<Vec<_>>(),
                    "next": page.next,
                }),
            ),
            Err(e) => store_error(&e),
        }
    }

    /// `GET /api/v1/reviews/{id}`: the record (masked), its decisions and outcomes.
    pub(crate) async fn item(&self, id: &str) -> Response<ProxyBody> {
        let Some(audit) = &self.audit else {
            return no_audit();
        };
        let stored = match audit.get(id.to_owned()).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                return json_error(
                    StatusCode::NOT_FOUND,
                    "record_not_found",
                    "no record has this id",
                );
            }
            Err(e) => return store_error(&e),
        };
        match audit.review_history(id.to_owned()).await {
            Ok((reviews, feedback)) => json_response(
                StatusCode::OK,
                &json!({ "record": self.masked(&stored), "reviews": reviews, "feedback": feedback }),
            ),
            Err(e) => store_error(&e),
        }
    }

    /// `POST /api/v1/reviews/{id}` with `{"decision": "confirm"|"override"|"escalate",
    /// "outcome": …, "reason": "…"}`, by `reviewer`.
    pub(crate) async fn decide(
        &self,
        id: &str,
        reviewer: &str,
        body: hyper::body::Incoming,
    ) -> Response<ProxyBody> {
        if self.audit.is_none() {
            return no_audit();
        }
        let body = match read_json(body).await {
            Ok(b) => b,
            Err(response) => return response,
        };
        let decision = body["decision"].as_str().unwrap_or_default();
        let reason = body["reason"].as_str().unwrap_or_default();
        let outcome = body.get("outcome").filter(|o| !o.is_null()).cloned();
        match self
            .record_decision(id, reviewer, decision, outcome, reason)
            .await
        {
            Ok(review) => json_response(
                StatusCode::OK,
                &json!({ "id": id, "review_state": review.state(), "review": review }),
            ),
            Err(DecisionError::NoAudit) => no_audit(),
            Err(DecisionError::Invalid(problem)) => {
                json_error(StatusCode::BAD_REQUEST, "bad_decision", problem)
            }
            Err(DecisionError::NotFound) => json_error(
                StatusCode::NOT_FOUND,
                "record_not_found",
                "no record has this id",
            ),
            Err(DecisionError::Store(e)) => store_error(&e),
        }
    }

    /// Checks and records a decision about record `id` by `reviewer`: the one path of
    /// both the API (`decide`) and the console's form. `outcome` is the corrected outcome
    /// (`override` needs it); `reason` is always required. Releases a held response.
    pub(crate) async fn record_decision(
        &self,
        id: &str,
        reviewer: &str,
        decision: &str,
        outcome: Option<Json>,
        reason: &str,
    ) -> Result<Review, DecisionError> {
        let Some(audit) = &self.audit else {
            return Err(DecisionError::NoAudit);
        };
        let reason = reason.trim().to_owned();
        let problem = match (decision, &outcome) {
            ("confirm" | "escalate", _) | ("override", Some(_)) if reason.is_empty() => {
                Some("a decision needs a `reason`")
            }
            ("confirm" | "escalate", _) => None,
            ("override", Some(_)) => None,
            ("override", None) => Some("`override` needs the corrected `outcome`"),
            _ => Some("`decision` must be confirm, override or escalate"),
        };
        if let Some(problem) = problem {
            return Err(DecisionError::Invalid(problem));
        }
        let review = Review {
            record_id: id.to_owned(),
            time_ms: now_ms(),
            reviewer: reviewer.to_owned(),
            decision: decision.to_owned(),
            outcome,
            reason,
        };
        match audit.add_review(review.clone()).await {
            Ok(true) => {
                self.reviews.decided(&review);
                tracing::info!(reviewer, decision = %review.decision, "review decided");
                Ok(review)
            }
            Ok(false) => Err(DecisionError::NotFound),
            Err(e) => Err(DecisionError::Store(e)),
        }
    }

    /// The protected groups flagged now, as (feature, value), sorted.
    pub(crate) fn flagged_groups(&self) -> Vec<(String, String)> {
        let mut groups: Vec<(String, String)> =
            self.reviews.flagged_set().iter().cloned().collect();
        groups.sort();
        groups
    }

    /// `GET` or `PUT /api/v1/review-flags`: the protected groups the `flagged_groups`
    /// rule sends to review, as `{"groups": [{"feature": "age_group", "value": "young"}]}`.
    /// The fairness monitor sets them as it finds disparities; an admin may too.
    pub(crate) async fn flags(
        &self,
        method: &Method,
        body: hyper::body::Incoming,
    ) -> Response<ProxyBody> {
        if method == Method::PUT {
            let body = match read_json(body).await {
                Ok(b) => b,
                Err(response) => return response,
            };
            let Some(groups) = body["groups"].as_array() else {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    "bad_body",
                    "expected {\"groups\": [{\"feature\": …, \"value\": …}]}",
                );
            };
            let mut set = HashSet::new();
            for g in groups {
                let (Some(feature), Some(value)) = (g["feature"].as_str(), g.get("value")) else {
                    return json_error(
                        StatusCode::BAD_REQUEST,
                        "bad_body",
                        "each group needs `feature` and `value`",
                    );
                };
                let value = match value {
                    Json::String(s) => s.clone(),
                    other => other.to_string(),
                };
                set.insert((feature.to_owned(), value));
            }
            self.reviews.replace_flags(set);
        }
        let flagged = self.reviews.flagged_set();
        let mut groups: Vec<Json> = flagged
            .iter()
            .map(|(f, v)| json!({ "feature": f, "value": v }))
            .collect();
        groups.sort_by_key(|g| g.to_string());
        json_response(StatusCode::OK, &json!({ "groups": groups }))
    }
}

/// The queue's query: `state` (default `pending`), `route`, `limit` (1 to 500, default
/// 50), `after`.
fn queue_query(query: Option<&str>) -> Result<RecordQuery, String> {
    let mut q = RecordQuery {
        review_state: Some("pending".to_owned()),
        limit: 50,
        ..RecordQuery::default()
    };
    let pairs = crate::admin::parse_form(query.unwrap_or_default().as_bytes())
        .ok_or_else(|| "bad %-encoding".to_owned())?;
    for (key, value) in pairs {
        match key.as_str() {
            "state" => q.review_state = Some(value),
            "route" => q.route = Some(value),
            "limit" => {
                q.limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=500).contains(n))
                    .ok_or_else(|| "`limit` must be 1 to 500".to_owned())?;
            }
            "after" => {
                q.after =
                    Some(value.parse::<u64>().map_err(|_| {
                        "`after` must be the `next` of the previous page".to_owned()
                    })?);
            }
            other => {
                return Err(format!(
                    "unknown parameter `{other}`; use state, route, limit, after"
                ));
            }
        }
    }
    Ok(q)
}

/// `POST /v1/feedback` on the data port: `{"id": "<record id>", "outcome": …}`, with
/// an optional `"row": k` (0-based) for one row of a record of several. The outcome is
/// kept in the audit log whatever its form; one the monitor understands (see
/// `monitor::outcome_of`; an array gives one per row) is also joined to the record's rows
/// still in the monitor's window. The answer says how many rows it joined.
pub(crate) async fn feedback(
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
