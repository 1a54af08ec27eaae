//! The data port's own endpoints, answered by Sidelight before a request reaches the
//! explanation layer or the model: `GET /v1/explanations/{id}` (explanations attached by
//! reference), `POST /v1/feedback` (outcomes reported later), `GET /v1/notice/{route}`
//! (the route's transparency notice), `/v1/contests` (a customer contests a
//! decision) and `GET /v1/explanations/{id}/compare` (why one recommended item is
//! ranked above another). Every other request goes on down the stack.
//!
//! A reference is a capability: 128 random bits made when the explanation was kept,
//! never a client's own id. Outcome reports from clients that are not trusted are
//! limited per client address (`server.trust.feedback_per_minute`).

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use tower::{Layer, Service};

use crate::audit::AuditLog;
use crate::body::{ProxyBody, full};
use crate::contest::{CONTESTS_PATH, ContestDesk};
use crate::error::{ProxyError, json_error};
use crate::live::RecentExplanations;
use crate::metrics::Metrics;
use crate::notice::{NOTICE_PATH, NoticeDesk};
use crate::review::FEEDBACK_PATH;
use crate::trust::Caller;

/// Where clients fetch explanations attached by reference.
pub const EXPLANATIONS_PATH: &str = "/v1/explanations/";

#[derive(Clone)]
pub struct EndpointsLayer {
    pub recent: Arc<RecentExplanations>,
    pub audit: Option<Arc<AuditLog>>,
    pub feedback_limit: Arc<FeedbackLimit>,
    pub metrics: Arc<Metrics>,
    pub notices: Arc<NoticeDesk>,
    pub contests: ContestDesk,
}

impl<S> Layer<S> for EndpointsLayer {
    type Service = Endpoints<S>;

    fn layer(&self, inner: S) -> Endpoints<S> {
        Endpoints {
            inner,
            recent: self.recent.clone(),
            audit: self.audit.clone(),
            feedback_limit: self.feedback_limit.clone(),
            metrics: self.metrics.clone(),
            notices: self.notices.clone(),
            contests: self.contests.clone(),
        }
    }
}

/// Answers the data port's own endpoints; passes everything else to `inner`.
#[derive(Clone)]
pub struct Endpoints<S> {
    inner: S,
    recent: Arc<RecentExplanations>,
    audit: Option<Arc<AuditLog>>,
    feedback_limit: Arc<FeedbackLimit>,
    metrics: Arc<Metrics>,
    notices: Arc<NoticeDesk>,
    contests: ContestDesk,
}

/// Outcome reports per client address in the current minute. The map is emptied each
/// minute and holds at most [`FeedbackLimit::MAX_CLIENTS`] addresses; past that, the
/// addresses it has no room for share one count (a flood of addresses cannot grow it).
pub struct FeedbackLimit {
    per_minute: u32,
    window: Mutex<(u64, HashMap<IpAddr, u32>, u32)>,
}

impl FeedbackLimit {
    const MAX_CLIENTS: usize = 100_000;

    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            window: Mutex::new((0, HashMap::new(), 0)),
        }
    }

    /// Counts one report from `client` at `now_ms`; whether it is within the limit. An
    /// IPv6 client counts by its /64, which one host usually holds whole.
    pub fn admit(&self, client: IpAddr, now_ms: i64) -> bool {
        let client = match client {
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
                IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into())
            }
            other => other,
        };
        let minute = u64::try_from(now_ms / 60_000).unwrap_or(0);
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        let (current, counts, overflow) = &mut *window;
        if *current != minute {
            *current = minute;
            counts.clear();
            *overflow = 0;
        }
        let count = if counts.len() < Self::MAX_CLIENTS || counts.contains_key(&client) {
            counts.entry(client).or_insert(0)
        } else {
            overflow
        };
        *count = count.saturating_add(1);
        *count <= self.per_minute
    }
}

/// Which of the data port's endpoints a request is for, if any.
enum Endpoint<'a> {
    Explanation(&'a str),
    Compare(&'a str),
    Feedback,
    Notice(&'a str),
    Contest,
    ContestStatus(&'a str),
}

fn endpoint<B>(request: &Request<B>) -> Option<Endpoint<'_>> {
    let path = request.uri().path();
    if request.method() == Method::GET {
        if let Some(id) = path.strip_prefix(EXPLANATIONS_PATH) {
            if let Some(reference) = id.strip_suffix("/compare") {
                return Some(Endpoint::Compare(reference));
            }
            return Some(Endpoint::Explanation(id));
        }
        if let Some(route) = path.strip_prefix(NOTICE_PATH) {
            return Some(Endpoint::Notice(route));
        }
        if let Some(id) = path
            .strip_prefix(CONTESTS_PATH)
            .and_then(|rest| rest.strip_prefix('/'))
        {
            return Some(Endpoint::ContestStatus(id));
        }
    }
    if path == CONTESTS_PATH {
        return Some(Endpoint::Contest);
    }
    (path == FEEDBACK_PATH).then_some(Endpoint::Feedback)
}

impl<S> Service<Request<Incoming>> for Endpoints<S>
where
    S: Service<Request<Incoming>, Response = Response<ProxyBody>, Error = ProxyError>,
    S::Future: Send + 'static,
{
    type Response = Response<ProxyBody>;
    type Error = ProxyError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, ProxyError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Incoming>) -> Self::Future {
        match endpoint(&request) {
            Some(Endpoint::Explanation(id)) => {
                let answer = fetch(&self.recent, id);
                Box::pin(async move { Ok(answer) })
            }
            Some(Endpoint::Compare(reference)) => {
                let answer = crate::compare::answer(
                    &self.recent,
                    &self.notices.routes,
                    reference,
                    request.uri().query(),
                );
                Box::pin(async move { Ok(answer) })
            }
            Some(Endpoint::Feedback) => {
                let trusted = request
                    .extensions()
                    .get::<Caller>()
                    .is_some_and(|c| c.trusted);
                if let Some(answer) = self.over_limit(
                    &request,
                    "feedback_rate_limited",
                    "too many outcome reports from this client; server.trust.feedback_per_minute limits them",
                ) {
                    return Box::pin(async move { Ok(answer) });
                }
                let audit = self.audit.clone();
                let (parts, body) = request.into_parts();
                Box::pin(async move {
                    Ok(crate::review::feedback(audit.as_deref(), &parts, trusted, body).await)
                })
            }
            Some(Endpoint::Notice(route)) => {
                let answer = self.notices.answer(
                    route,
                    request.uri().query(),
                    request.headers(),
                    sidelight_core::clock::now_ms(),
                );
                Box::pin(async move { Ok(answer) })
            }
            Some(Endpoint::ContestStatus(id)) => {
                let desk = self.contests.clone();
                let id = id.to_owned();
                let headers = request.headers().clone();
                Box::pin(async move { Ok(desk.status(&id, &headers).await) })
            }
            Some(Endpoint::Contest) => {
                if request.method() != Method::POST {
                    return Box::pin(async move {
                        Ok(json_error(
                            StatusCode::METHOD_NOT_ALLOWED,
                            "method_not_allowed",
                            "a decision is contested with POST; its state is read with GET /v1/contests/{id}",
                        ))
                    });
                }
                // Limited like outcome reports: an untrusted client cannot flood the
                // review queue's store with attempts.
                if let Some(answer) = self.over_limit(
                    &request,
                    "contest_rate_limited",
                    "too many attempts from this client; server.trust.feedback_per_minute limits them",
                ) {
                    return Box::pin(async move { Ok(answer) });
                }
                let desk = self.contests.clone();
                let (parts, body) = request.into_parts();
                Box::pin(async move {
                    let body = match crate::review::read_json(body).await {
                        Ok(b) => b,
                        Err(response) => return Ok(response),
                    };
                    Ok(desk.contest(&parts.headers, body).await)
                })
            }
            None => Box::pin(self.inner.call(request)),
        }
    }
}

impl<S> Endpoints<S> {
    /// `Some(429)` when an untrusted caller is past `server.trust.feedback_per_minute`
    /// (outcome reports and contests share the count); trusted callers are not counted.
    fn over_limit<B>(
        &self,
        request: &Request<B>,
        code: &str,
        message: &str,
    ) -> Option<Response<ProxyBody>> {
        let caller = request.extensions().get::<Caller>().copied();
        let admitted = caller.is_none_or(|c| {
            c.trusted
                || self
                    .feedback_limit
                    .admit(c.address, sidelight_core::clock::now_ms())
        });
        if admitted {
            return None;
        }
        self.metrics.limit_hit("feedback_per_minute");
        let mut answer = json_error(StatusCode::TOO_MANY_REQUESTS, code, message);
        answer
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
        Some(answer)
    }
}

fn fetch(recent: &RecentExplanations, id: &str) -> Response<ProxyBody> {
    // A reference is one path segment; what is kept under longer keys (a ranking's
    // comparison data) is answered by its own endpoint.
    match recent.get(id).filter(|_| !id.contains('/')) {
        Some(json) => {
            let mut response = Response::new(full(json));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        None => json_error(
            StatusCode::NOT_FOUND,
            "explanation_not_found",
            "no kept explanation has this reference; explanations are kept for recent requests only, within server.explanation_store_bytes",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, path: &str) -> Request<()> {
        Request::builder()
            .method(method)
            .uri(path)
            .body(())
            .unwrap_or_default()
    }

    #[test]
    fn only_the_data_ports_own_paths_are_answered_here() {
        assert!(matches!(
            endpoint(&request(Method::GET, "/v1/explanations/abc")),
            Some(Endpoint::Explanation("abc"))
        ));
        assert!(matches!(
            endpoint(&request(Method::POST, "/v1/feedback")),
            Some(Endpoint::Feedback)
        ));
        // Wrong methods still reach the feedback endpoint, which names the right one.
        assert!(matches!(
            endpoint(&request(Method::GET, "/v1/feedback")),
            Some(Endpoint::Feedback)
        ));
        for model in [
            (Method::POST, "/v1/explanations/abc"),
            (Method::POST, "/v1/models/credit:predict"),
            (Method::GET, "/v1/feedback/x"),
        ] {
            assert!(endpoint(&request(model.0, model.1)).is_none());
        }
    }

    #[test]
    fn outcome_reports_are_limited_per_client_and_minute() {
        let limit = FeedbackLimit::new(2);
        let (a, b) = ([192, 0, 2, 1].into(), [192, 0, 2, 2].into());
        assert!(limit.admit(a, 0) && limit.admit(a, 1));
        assert!(!limit.admit(a, 2), "the third in a minute");
        assert!(limit.admit(b, 3), "another client has its own count");
        assert!(limit.admit(a, 60_000), "a new minute starts afresh");
        let (c, d): (IpAddr, IpAddr) = (
            "2001:db8::1".parse().unwrap_or(a),
            "2001:db8::2".parse().unwrap_or(b),
        );
        assert!(limit.admit(c, 60_001) && limit.admit(d, 60_002));
        assert!(!limit.admit(c, 60_003), "one /64, one count");
    }

    #[test]
    fn an_unknown_reference_is_a_json_404() {
        let recent = RecentExplanations::new(4);
        let answer = fetch(&recent, "nope");
        assert_eq!(answer.status(), StatusCode::NOT_FOUND);
    }
}
