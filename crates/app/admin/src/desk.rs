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
use serde_json::{Value as Json, json};
use sidelight_audit::{FieldRule, PrivacyPolicy, RecordQuery, Review, record_json};
use sidelight_core::reviews::{Flag, Reviews};

use crate::audit::AuditLog;
use crate::body::{ProxyBody, json_response};
use crate::error::json_error;
use crate::live::RouteLive;
use crate::query::{QueryError, query_pairs};
use crate::records::{no_audit, store_error};
use sidelight_core::clock::now_ms;
use sidelight_data::review::read_json;

/// Where reviewers work, on the admin listener.
pub const REVIEWS_PATH: &str = "/api/v1/reviews";
/// Where the fairness monitor (and admins) flag protected groups.
pub const FLAGS_PATH: &str = "/api/v1/review-flags";

/// Why a decision was not recorded.
#[derive(Debug)]
pub enum DecisionError {
    /// There is no audit log to keep it in.
    NoAudit,
    /// The decision is incomplete: what is missing, in a sentence.
    Invalid(&'static str),
    /// No record has the id.
    NotFound,
    /// The store failed; its error text (never record content).
    Store(crate::audit::AuditError),
}

/// What the admin endpoints of this module reach.
pub struct ReviewDesk {
    pub audit: Option<Arc<AuditLog>>,
    pub reviews: Arc<Reviews>,
    pub routes: Vec<Arc<RouteLive>>,
}

impl ReviewDesk {
    /// A record as a reviewer may see it: personal fields (features marked `pii` and
    /// the subject's field) masked, the subject key left out.
    pub fn masked(&self, stored: &sidelight_audit::Stored) -> Json {
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
    pub async fn queue(&self, query: Option<&str>) -> Response<ProxyBody> {
        let Some(audit) = &self.audit else {
            return no_audit();
        };
        let q = match queue_query(query) {
            Ok(q) => q,
            Err(e) => return json_error(StatusCode::BAD_REQUEST, "bad_query", &e.to_string()),
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
    pub async fn item(&self, id: &str) -> Response<ProxyBody> {
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
    pub async fn decide(
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
    pub async fn record_decision(
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

    /// The protected groups flagged now, sorted.
    pub fn flagged_groups(&self) -> Vec<Flag> {
        let mut groups: Vec<Flag> = self.reviews.flagged_set().iter().cloned().collect();
        groups.sort();
        groups
    }

    /// `GET` or `PUT /api/v1/review-flags`: the protected groups the `flagged_groups`
    /// rule sends to review, as `{"groups": [{"route": "credit", "feature": "age_group",
    /// "value": "young"}]}`. The fairness monitor sets them, each on the route whose
    /// traffic showed the disparity; an admin may too, with or without a `route` (without:
    /// every route's predictions about the group).
    pub async fn flags(&self, method: &Method, body: hyper::body::Incoming) -> Response<ProxyBody> {
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
                        "each group needs `feature` and `value` (and may name a `route`)",
                    );
                };
                let route = match g.get("route") {
                    None | Some(Json::Null) => None,
                    Some(Json::String(r)) => Some(r.clone()),
                    Some(_) => {
                        return json_error(
                            StatusCode::BAD_REQUEST,
                            "bad_body",
                            "a group's `route` must be a route name",
                        );
                    }
                };
                let value = match value {
                    Json::String(s) => s.clone(),
                    other => other.to_string(),
                };
                set.insert(Flag {
                    route,
                    feature: feature.to_owned(),
                    value,
                });
            }
            self.reviews.replace_flags(set);
        }
        let flagged = self.reviews.flagged_set();
        let mut groups: Vec<Json> = flagged
            .iter()
            .map(|f| match &f.route {
                Some(route) => json!({ "route": route, "feature": f.feature, "value": f.value }),
                None => json!({ "feature": f.feature, "value": f.value }),
            })
            .collect();
        groups.sort_by_key(|g| g.to_string());
        json_response(StatusCode::OK, &json!({ "groups": groups }))
    }
}

/// The queue's query: `state` (default `pending`), `route`, `limit` (1 to 500, default
/// 50), `after`.
fn queue_query(query: Option<&str>) -> Result<RecordQuery, QueryError> {
    let mut q = RecordQuery {
        review_state: Some("pending".to_owned()),
        limit: 50,
        ..RecordQuery::default()
    };
    for (key, value) in query_pairs(query)? {
        match key.as_str() {
            "state" => q.review_state = Some(value),
            "route" => q.route = Some(value),
            "limit" | "after" => crate::records::page(&mut q, &key, &value, 500)?,
            _ => {
                return Err(QueryError::Unknown {
                    given: key,
                    accepted: "state, route, limit, after",
                });
            }
        }
    }
    Ok(q)
}
