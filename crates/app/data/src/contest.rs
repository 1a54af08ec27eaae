//! A customer contests a decision: `POST /v1/contests` with the record's id and the
//! feedback token the response carried (`x-sidelight-record-id`,
//! `x-sidelight-feedback-token`) and their reason; `GET /v1/contests/{id}` with the
//! token in `x-sidelight-feedback-token` says where it stands. Both answer in the
//! customer's language (`Accept-Language`), through the business's app.
//!
//! A contest is kept like a reviewer's decision (`contest`, state `contested`, chained
//! into the audit log), so it enters the review queue; the reviewer's next decision is
//! its outcome. The customer's words are sealed in the store and only their digest is
//! chained (see `AuditLog::add_contest`). Without the right token, every answer is the
//! same 404, so that nothing says whether another person's record exists.

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Value as Json, json};
use sidelight_audit::{CONTEST, Review, Stored};
use sidelight_narrate::{Arg, Locale, Narrator};

use crate::audit::AuditLog;
use crate::body::{ProxyBody, json_response};
use crate::error::audit_unavailable as store_error;
use crate::live::RouteLive;
use crate::record::FEEDBACK_PURPOSE;
use sidelight_core::clock::now_ms;

/// Where customers contest decisions, on the data port.
pub const CONTESTS_PATH: &str = "/v1/contests";
/// The longest reason, in characters.
pub const MAX_REASON_CHARS: usize = 2000;
/// The token header, as for outcome reports.
const TOKEN: &str = "x-sidelight-feedback-token";

/// What the contest endpoints reach.
#[derive(Clone)]
pub struct ContestDesk {
    pub audit: Option<Arc<AuditLog>>,
    pub routes: Arc<[Arc<RouteLive>]>,
}

/// What a contest endpoint answers with: the wording, the customer's language, the log.
struct Door<'a> {
    narrator: Arc<Narrator>,
    locale: Locale,
    audit: &'a Arc<AuditLog>,
}

/// One contest kept at a time in this process (every worker's), so that two at once
/// for one record cannot both pass the "already contested" check.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// An answer in the customer's language: `{"error": {"code", "message"}}` for a refusal.
fn answer(status: StatusCode, body: &Json, locale: &Locale) -> http::Response<ProxyBody> {
    let mut response = json_response(status, body);
    if let Ok(value) = HeaderValue::from_str(&locale.to_string()) {
        response
            .headers_mut()
            .insert(header::CONTENT_LANGUAGE, value);
    }
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("accept-language"));
    response
}

fn refusal(
    status: StatusCode,
    code: &str,
    narrator: &Narrator,
    message: &str,
    args: &[(&str, Arg<'_>)],
    locale: &Locale,
) -> http::Response<ProxyBody> {
    let text = narrator.text(message, args, locale);
    answer(
        status,
        &json!({ "error": { "code": code, "message": text } }),
        locale,
    )
}

/// The answer about an erased record: that it was erased, nothing more.
fn erased(narrator: &Narrator, locale: &Locale) -> http::Response<ProxyBody> {
    refusal(
        StatusCode::GONE,
        "record_erased",
        narrator,
        "contest-erased",
        &[],
        locale,
    )
}

/// Whole days in a contest window, as the notice tells them (rounded down).
fn window_days(within: std::time::Duration) -> f64 {
    (within.as_secs() / 86_400) as f64
}

impl ContestDesk {
    /// Any route's narrator (they share one); the built-in one without routes.
    fn narrator(&self) -> Option<Arc<Narrator>> {
        self.routes.first().map(|l| l.narrator.clone())
    }

    /// What both endpoints start from: the narrator, the customer's language, and the
    /// audit log the contests live in; else the answer that there is none.
    fn door(&self, headers: &HeaderMap) -> Result<Door<'_>, Box<http::Response<ProxyBody>>> {
        let Some(narrator) = self.narrator() else {
            return Err(Box::new(unavailable_without_routes()));
        };
        let locale = negotiate(&narrator, headers);
        match &self.audit {
            Some(audit) => Ok(Door {
                narrator,
                locale,
                audit,
            }),
            None => Err(Box::new(refusal(
                StatusCode::NOT_FOUND,
                "contest_unavailable",
                &narrator,
                "contest-unavailable",
                &[],
                &locale,
            ))),
        }
    }

    /// The record `id` if `token` is its capability and it exists: else the one
    /// answer for "no such record".
    async fn find(
        &self,
        audit: &AuditLog,
        id: &str,
        token: Option<&str>,
        narrator: &Narrator,
        locale: &Locale,
    ) -> Result<Stored, http::Response<ProxyBody>> {
        let unknown = || {
            refusal(
                StatusCode::NOT_FOUND,
                "record_not_found",
                narrator,
                "contest-unknown",
                &[],
                locale,
            )
        };
        let shown = token.is_some_and(|t| audit.keys().check_capability(FEEDBACK_PURPOSE, id, t));
        if !shown {
            return Err(unknown());
        }
        match audit.get(id.to_owned()).await {
            Ok(Some(stored)) => Ok(stored),
            Ok(None) => Err(unknown()),
            Err(e) => Err(store_error(&e)),
        }
    }

    /// `POST /v1/contests` with `{"id", "token", "reason"}` (the token may come in
    /// `x-sidelight-feedback-token` instead).
    pub async fn contest(&self, headers: &HeaderMap, body: Json) -> http::Response<ProxyBody> {
        let Door {
            narrator,
            locale,
            audit,
        } = match self.door(headers) {
            Ok(door) => door,
            Err(response) => return *response,
        };
        let id = body["id"].as_str().unwrap_or_default();
        let token = body["token"].as_str().or_else(|| header_token(headers));
        let stored = match self.find(audit, id, token, &narrator, &locale).await {
            Ok(s) => s,
            Err(response) => return response,
        };
        let reason = body["reason"].as_str().map(str::trim).unwrap_or_default();
        if reason.is_empty() || reason.chars().count() > MAX_REASON_CHARS {
            return refusal(
                StatusCode::BAD_REQUEST,
                "bad_reason",
                &narrator,
                "contest-reason-needed",
                &[("max", Arg::Number(MAX_REASON_CHARS as f64))],
                &locale,
            );
        }
        if stored.record.erased_at.is_some() {
            return erased(&narrator, &locale);
        }
        let within = self
            .routes
            .iter()
            .find(|l| l.route == stored.record.route)
            .and_then(|l| l.review.contest_within);
        let Some(within) = within else {
            return refusal(
                StatusCode::FORBIDDEN,
                "contest_unavailable",
                &narrator,
                "contest-unavailable",
                &[],
                &locale,
            );
        };
        let now = now_ms();
        let window_ms = i64::try_from(within.as_millis()).unwrap_or(i64::MAX);
        if now.saturating_sub(stored.record.time_ms) > window_ms {
            return refusal(
                StatusCode::GONE,
                "contest_window_closed",
                &narrator,
                "contest-closed",
                &[("days", Arg::Number(window_days(within)))],
                &locale,
            );
        }
        let _one_at_a_time = ONE_AT_A_TIME.lock().await;
        match audit.review_history(id.to_owned()).await {
            Ok((reviews, _)) if reviews.iter().any(Review::is_contest) => {
                return refusal(
                    StatusCode::CONFLICT,
                    "already_contested",
                    &narrator,
                    "contest-already",
                    &[],
                    &locale,
                );
            }
            Ok(_) => {}
            Err(e) => return store_error(&e),
        }
        let contest = Review {
            record_id: id.to_owned(),
            time_ms: now,
            reviewer: "customer".to_owned(),
            decision: CONTEST.to_owned(),
            outcome: None,
            reason: reason.to_owned(),
        };
        match audit.add_contest(contest).await {
            Ok(true) => {
                tracing::info!(route = %stored.record.route, "decision contested");
                answer(
                    StatusCode::ACCEPTED,
                    &json!({
                        "id": id,
                        "state": "contested",
                        "contested_at": sidelight_audit::rfc3339_ms(now),
                        "message": narrator.text("contest-received", &[], &locale),
                    }),
                    &locale,
                )
            }
            Ok(false) => refusal(
                StatusCode::NOT_FOUND,
                "record_not_found",
                &narrator,
                "contest-unknown",
                &[],
                &locale,
            ),
            Err(e) => store_error(&e),
        }
    }

    /// `GET /v1/contests/{id}` with the token in `x-sidelight-feedback-token`.
    pub async fn status(&self, id: &str, headers: &HeaderMap) -> http::Response<ProxyBody> {
        let Door {
            narrator,
            locale,
            audit,
        } = match self.door(headers) {
            Ok(door) => door,
            Err(response) => return *response,
        };
        let stored = match self
            .find(audit, id, header_token(headers), &narrator, &locale)
            .await
        {
            Ok(s) => s,
            Err(response) => return response,
        };
        if stored.record.erased_at.is_some() {
            return erased(&narrator, &locale);
        }
        let reviews = match audit.review_history(id.to_owned()).await {
            Ok((reviews, _)) => reviews,
            Err(e) => return store_error(&e),
        };
        let Some(contest) = reviews.iter().find(|r| r.is_contest()) else {
            return refusal(
                StatusCode::NOT_FOUND,
                "not_contested",
                &narrator,
                "contest-not-contested",
                &[],
                &locale,
            );
        };
        let status = contest_status(contest, &reviews);
        let message = narrator.text(status.message_id(), &[], &locale);
        answer(
            StatusCode::OK,
            &json!({
                "id": id,
                "state": status.state,
                "contested_at": sidelight_audit::rfc3339_ms(contest.time_ms),
                "decided_at": status.decided_ms.map(sidelight_audit::rfc3339_ms),
                "message": message,
            }),
            &locale,
        )
    }
}

/// Where a contest stands: the first confirm or override after it decides it; an
/// escalation leaves it under review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContestStatus {
    /// `contested`, `confirmed` or `overridden`.
    pub state: &'static str,
    pub decided_ms: Option<i64>,
}

impl ContestStatus {
    fn message_id(&self) -> &'static str {
        match self.state {
            "confirmed" => "contest-confirmed",
            "overridden" => "contest-overridden",
            _ => "contest-pending",
        }
    }
}

/// Where `contest` stands among the record's `reviews` (in the order they were kept).
pub fn contest_status(contest: &Review, reviews: &[Review]) -> ContestStatus {
    let decision = reviews
        .iter()
        .skip_while(|r| !r.is_contest())
        .skip(1)
        .find(|r| matches!(r.decision.as_str(), "confirm" | "override"));
    match decision {
        Some(r) => ContestStatus {
            state: r.state(),
            decided_ms: Some(r.time_ms.max(contest.time_ms)),
        },
        None => ContestStatus {
            state: "contested",
            decided_ms: None,
        },
    }
}

fn header_token(headers: &HeaderMap) -> Option<&str> {
    headers.get(TOKEN).and_then(|v| v.to_str().ok())
}

fn negotiate(narrator: &Narrator, headers: &HeaderMap) -> Locale {
    narrator.negotiate(
        headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
    )
}

fn unavailable_without_routes() -> http::Response<ProxyBody> {
    crate::error::json_error(
        StatusCode::NOT_FOUND,
        "contest_unavailable",
        "no route explains its decisions here, so none can be contested",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review(decision: &str, time_ms: i64) -> Review {
        Review {
            record_id: "r".to_owned(),
            time_ms,
            reviewer: "x".to_owned(),
            decision: decision.to_owned(),
            outcome: None,
            reason: "why".to_owned(),
        }
    }

    #[test]
    fn a_contest_is_decided_by_the_first_confirm_or_override_after_it() {
        let contest = review(CONTEST, 10);
        // A routine confirmation before the contest does not decide it; an escalation
        // after it leaves it under review.
        let reviews = [
            review("confirm", 5),
            contest.clone(),
            review("escalate", 20),
        ];
        assert_eq!(
            contest_status(&contest, &reviews),
            ContestStatus {
                state: "contested",
                decided_ms: None
            }
        );
        let reviews = [
            review("confirm", 5),
            contest.clone(),
            review("escalate", 20),
            review("override", 30),
            review("confirm", 40),
        ];
        assert_eq!(
            contest_status(&contest, &reviews),
            ContestStatus {
                state: "overridden",
                decided_ms: Some(30)
            }
        );
    }
}
