//! The review rules on the request path (which predictions go to a reviewer) and the
//! outcomes clients report later (`POST /v1/feedback` on the data port).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value as Json, json};
use sidelight_audit::{Feedback, Review};
use sidelight_core::reviews::Reviews;
use sidelight_explain::Value;
use sidelight_protocol as adapter;
use tokio::sync::oneshot;
use tower::{Layer, Service};

use crate::audit::AuditLog;
use crate::body::{ProxyBody, full, json_response};
use crate::config::ReviewConfig;
use crate::error::audit_unavailable as store_error;
use crate::error::{ProxyError, json_error};
use crate::handoff::Handoff;
use crate::live::model::RowExplanation;
use crate::live::{LiveModel, RouteLive};
use crate::monitor::value_text;
use sidelight_core::clock::now_ms;

/// Sidelight's own review request header, and the review state of a response.
pub static REVIEW: HeaderName = HeaderName::from_static("x-sidelight-review");

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
                        // A monitor's flag is its own route's: a disparity found on
                        // one route's traffic says nothing of another's.
                        flagged.iter().any(|f| f.applies(&live.route, name, &label))
                    })
                })
            });
        if hit {
            reviews.count_flag_hit(&live.route);
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
/// an optional `"row": k` (0-based) for one row of a record of several. A client that
/// is not trusted (`[server.trust]`) shows the record's feedback token, in `"token"` or
/// `x-sidelight-feedback-token`; without the right one the answer is the same 404 as
/// for an id that does not exist, so that it says nothing about which ids do. The outcome is
/// kept in the audit log whatever its form; one the monitor understands (see
/// `monitor::outcome_of`; an array gives one per row) is also joined to the record's rows
/// still in the monitor's window. The answer says how many rows it joined.
pub async fn feedback(
    audit: Option<&AuditLog>,
    parts: &http::request::Parts,
    trusted: bool,
    body: hyper::body::Incoming,
) -> Response<ProxyBody> {
    let method = &parts.method;
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
    let token = body["token"].as_str().or_else(|| {
        parts
            .headers
            .get("x-sidelight-feedback-token")
            .and_then(|v| v.to_str().ok())
    });
    let shown = token.is_some_and(|token| {
        audit
            .keys()
            .check_capability(crate::record::FEEDBACK_PURPOSE, id, token)
    });
    if !trusted && !shown {
        return unknown_record();
    }
    // A protected attribute places the record's rows in a group: only a trusted client
    // may say which (the record's own token is held by the client it is about).
    if attributes.is_some() && !trusted {
        return json_error(
            StatusCode::FORBIDDEN,
            "attributes_need_trust",
            "protected attributes are accepted only from trusted clients ([server.trust])",
        );
    }
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
            // Kept with its row, as the client sent the pair, so that a report applies
            // it to that row alone (an array already says which row each item is for).
            let stored = match (outcome, row) {
                (Json::Array(_), _) | (_, None) => outcome.clone(),
                (single, Some(k)) => json!({ "row": k, "outcome": single }),
            };
            let feedback = Feedback {
                record_id: id.to_owned(),
                time_ms: now_ms(),
                outcome: stored,
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
        Ok(false) => unknown_record(),
        Err(e) => store_error(&e),
    }
}

/// The one answer for an id that does not exist and a token that does not fit it.
fn unknown_record() -> Response<ProxyBody> {
    json_error(
        StatusCode::NOT_FOUND,
        "record_not_found",
        "no record has this id and feedback token (use the x-sidelight-record-id and x-sidelight-feedback-token of the prediction)",
    )
}

/// A response held for a reviewer's decision, handed from the record layer (which
/// registered it before committing) to the hold layer in the response's extensions.
pub struct Held {
    pub live: Arc<RouteLive>,
    pub audit: Arc<AuditLog>,
    pub id: String,
    pub decision: oneshot::Receiver<Review>,
    /// The response body as sent, to add an overriding decision to.
    pub body: Option<Bytes>,
}

#[derive(Clone)]
pub struct HoldLayer;

impl<S> Layer<S> for HoldLayer {
    type Service = Hold<S>;

    fn layer(&self, inner: S) -> Hold<S> {
        Hold { inner }
    }
}

/// The review layer: waits for the decision on a held response (see [`Held`]).
#[derive(Clone)]
pub struct Hold<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for Hold<S>
where
    S: Service<Request<B>, Response = Response<ProxyBody>, Error = ProxyError>,
    S::Future: Send + 'static,
{
    type Response = Response<ProxyBody>;
    type Error = ProxyError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, ProxyError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let response = self.inner.call(request);
        Box::pin(async move {
            let mut response = response.await?;
            match response
                .extensions_mut()
                .remove::<Handoff<Held>>()
                .and_then(|h| h.take())
            {
                Some(held) => Ok(hold(held, response).await),
                None => Ok(response),
            }
        })
    }
}

/// Waits for a reviewer's decision up to the route's deadline. A confirmation releases
/// the model's answer; an override releases it with the reviewer's outcome added (as a
/// `"review"` member next to the model's own, whose bytes stay as they are); an
/// escalation or the deadline lets the route's fallback decide.
async fn hold(held: Held, mut response: Response<ProxyBody>) -> Response<ProxyBody> {
    let Held {
        live,
        audit,
        id,
        decision,
        body,
    } = held;
    let live = &*live;
    let deadline = live.review.hold.unwrap_or_default();
    let outcome = tokio::time::timeout(deadline, decision).await;
    audit.reviews.release(&id);
    let review = match outcome {
        Ok(Ok(review)) => review,
        _ => return fallback(live, response, "pending; held=timeout", "review_timeout"),
    };
    match review.decision.as_str() {
        "confirm" => {
            response
                .headers_mut()
                .insert(REVIEW.clone(), HeaderValue::from_static("confirmed"));
            response
        }
        "override" => {
            let (mut parts, old) = response.into_parts();
            parts
                .headers
                .insert(REVIEW.clone(), HeaderValue::from_static("overridden"));
            let member = serde_json::json!({
                "decision": "override",
                "outcome": review.outcome,
                "reason": review.reason,
                "reviewer": review.reviewer,
            })
            .to_string();
            match body.map(|b| adapter::attach_field(&b, "review", &member)) {
                Some(Ok(with_review)) => {
                    parts.headers.remove(header::CONTENT_LENGTH);
                    Response::from_parts(parts, full(with_review))
                }
                // Not a JSON object: the header says it was overridden, and the
                // decision is in the audit log and the review API.
                _ => Response::from_parts(parts, old),
            }
        }
        _ => fallback(live, response, "escalated", "review_escalated"),
    }
}

fn fallback(
    live: &RouteLive,
    mut response: Response<ProxyBody>,
    state: &'static str,
    code: &str,
) -> Response<ProxyBody> {
    match live.review.hold_fallback {
        crate::config::HoldFallback::Serve => {
            response
                .headers_mut()
                .insert(REVIEW.clone(), HeaderValue::from_static(state));
            response
        }
        crate::config::HoldFallback::Reject => json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            code,
            "this prediction awaits a person's review and no decision came in time",
        ),
    }
}
