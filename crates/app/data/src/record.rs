//! The record layer: on an explained route with an audit log, gives the request its
//! record id before it goes on, and once the explain layer has answered, commits the
//! record (with `sync`, the response waits until it is durable) and names it in
//! `x-sidelight-record-id`. A prediction that goes to a reviewer with a hold is
//! registered for its decision before the record can be seen in the queue, so that no
//! decision can come in between; the review layer above then waits for it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderName, HeaderValue, Request, Response};
use tower::{Layer, Service};

use crate::audit::AuditLog;
use crate::body::ProxyBody;
use crate::error::ProxyError;
use crate::explain::{Explained, RecordId};
use crate::handoff::Handoff;
use crate::headers::{ClientRequestId, REQUEST_ID};
use crate::review::Held;
use crate::route::Route;

static RECORD_ID: HeaderName = HeaderName::from_static("x-sidelight-record-id");
/// The record's feedback token: what an untrusted client shows to report its outcome.
static FEEDBACK_TOKEN: HeaderName = HeaderName::from_static("x-sidelight-feedback-token");
/// What the feedback token is a capability for.
pub const FEEDBACK_PURPOSE: &str = "feedback";

#[derive(Clone)]
pub struct RecordLayer {
    pub audit: Option<Arc<AuditLog>>,
}

impl<S> Layer<S> for RecordLayer {
    type Service = Record<S>;

    fn layer(&self, inner: S) -> Record<S> {
        Record {
            inner,
            audit: self.audit.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Record<S> {
    inner: S,
    audit: Option<Arc<AuditLog>>,
}

impl<S, B> Service<Request<B>> for Record<S>
where
    S: Service<Request<B>, Response = Response<ProxyBody>, Error = ProxyError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<ProxyBody>;
    type Error = ProxyError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, ProxyError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let explained_route = request
            .extensions()
            .get::<Route>()
            .is_some_and(|route| route.live.is_some());
        let Some(audit) = self.audit.clone().filter(|_| explained_route) else {
            return Box::pin(self.inner.call(request));
        };
        let request_id = request
            .headers()
            .get(&REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let supplied = request
            .extensions()
            .get::<ClientRequestId>()
            .is_some_and(|c| c.0);
        let trusted = request
            .extensions()
            .get::<crate::trust::Caller>()
            .is_some_and(|c| c.trusted);
        // The service that was made ready goes into the future; a fresh clone stays.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let id = audit.unique_id(&request_id, supplied, !trusted).await;
            request
                .extensions_mut()
                .insert(RecordId(Arc::from(id.as_str())));
            let mut response = inner.call(request).await?;
            let Some(Explained {
                live,
                mut facts,
                consent,
                received_ms,
            }) = response
                .extensions_mut()
                .remove::<Handoff<Explained>>()
                .and_then(|h| h.take())
            else {
                return Ok(response);
            };
            let flagged = !facts.review_reasons.is_empty();
            let body = facts.body.take();
            let decision = (flagged && live.review.hold.is_some()).then(|| audit.reviews.hold(&id));
            // The record is made on the audit writer's thread: the privacy policy, the
            // attributions' JSON, sealing and hashing never hold up the response (with
            // `sync`, it waits for the commit, not for the work).
            let record = {
                let (id, live, keys) = (id.clone(), live.clone(), audit.shared_keys());
                let model = audit.model(&live.route);
                sidelight_audit::Pending::deferred(id.clone(), move || {
                    facts.into_record(id, received_ms, &live, &keys, model, consent)
                })
            };
            match audit.commit(record).await {
                Ok(Some(committed)) => {
                    let token = audit.keys().capability(FEEDBACK_PURPOSE, &committed);
                    if let Ok(value) = HeaderValue::from_str(&committed) {
                        response.headers_mut().insert(RECORD_ID.clone(), value);
                    }
                    if let Ok(value) = HeaderValue::from_str(&token) {
                        response.headers_mut().insert(FEEDBACK_TOKEN.clone(), value);
                    }
                }
                Ok(None) => {
                    audit.reviews.release(&id);
                    return Ok(response);
                }
                Err(error) => {
                    audit.reviews.release(&id);
                    return Err(error);
                }
            }
            if let Some(decision) = decision {
                response.extensions_mut().insert(Handoff::new(Held {
                    live,
                    audit,
                    id,
                    decision,
                    body,
                }));
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use prometheus_client::registry::Registry;
    use sidelight_audit::Review;
    use tower::{ServiceBuilder, ServiceExt};

    use super::*;
    use crate::body::full;
    use crate::explain::Facts;
    use crate::metrics::Metrics;
    use crate::review::HoldLayer;
    use crate::route::RouteTable;

    /// An explained route with an audit log and a review hold, set up as the server
    /// does, and the route's table entry the observe layer would add to a request.
    fn route_and_audit(dir: &std::path::Path) -> (Route, Arc<AuditLog>) {
        std::fs::write(dir.join("key"), "11".repeat(32)).unwrap();
        let config = sidelight_config::Config::from_toml_str(&format!(
            r#"
[upstream]
url = "http://127.0.0.1:9"
[audit]
path = "{dir}/audit.db"
key_file = "{dir}/key"
[[routes]]
name = "credit"
path_prefix = "/v1"
[routes.explain]
protocol = "kserve_v1"
[routes.review]
header = "x-review"
hold = "10s"
"#,
            dir = dir.display()
        ))
        .unwrap();
        let mut registry = Registry::default();
        let audit = AuditLog::open(config.audit.as_ref().unwrap(), "model", &mut registry).unwrap();
        let table = RouteTable::new(
            &config.routes,
            Metrics::register(&mut registry),
            dir,
            &mut crate::narration::prepare(&config, Vec::new()).unwrap(),
            Some(&audit),
        )
        .unwrap();
        (table.lookup("/v1/predict").clone(), audit)
    }

    /// What the explain layer hands up for a prediction that goes to review.
    fn flagged(request: &Request<()>, route: &Route) -> Response<ProxyBody> {
        assert!(
            request.extensions().get::<RecordId>().is_some(),
            "the record id is given before the request goes on"
        );
        let mut response = Response::new(full(bytes::Bytes::from_static(b"{\"p\":0.2}")));
        let mut facts = Facts::default();
        facts.review_reasons = vec!["requested".to_owned()];
        response.extensions_mut().insert(Handoff::new(Explained {
            live: route.live.clone().unwrap(),
            facts,
            consent: sidelight_audit::Consent::Full,
            received_ms: 1,
        }));
        response
    }

    #[tokio::test]
    async fn a_flagged_prediction_is_recorded_then_held_until_a_reviewer_confirms_it() {
        let dir = tempfile::tempdir().unwrap();
        let (route, audit) = route_and_audit(dir.path());
        let explained_route = route.clone();
        let service = ServiceBuilder::new()
            .layer(HoldLayer)
            .layer(RecordLayer {
                audit: Some(audit.clone()),
            })
            .service(tower::service_fn(move |request: Request<()>| {
                let response = flagged(&request, &explained_route);
                async move { Ok::<_, ProxyError>(response) }
            }));
        let request = Request::builder()
            .uri("/v1/predict")
            .header("x-request-id", "order-7")
            .extension(route)
            .body(())
            .unwrap();
        let answer = tokio::spawn(service.oneshot(request));
        // The record is in the store (pending review) while the response is held.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let stored = loop {
            if let Some(stored) = audit.get("order-7".to_owned()).await.unwrap() {
                break stored;
            }
            assert!(std::time::Instant::now() < deadline, "no record");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!(stored.record.review_state, "pending");
        assert!(!answer.is_finished(), "the response waits for the decision");
        audit.reviews.decided(&Review {
            record_id: "order-7".to_owned(),
            time_ms: 2,
            reviewer: "ana".to_owned(),
            decision: "confirm".to_owned(),
            outcome: None,
            reason: "checked".to_owned(),
        });
        let response = answer.await.unwrap().unwrap();
        assert_eq!(response.headers()["x-sidelight-record-id"], "order-7");
        assert_eq!(response.headers()["x-sidelight-review"], "confirmed");
    }

    #[tokio::test]
    async fn a_route_without_explanations_is_not_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let (_, audit) = route_and_audit(dir.path());
        let service = RecordLayer {
            audit: Some(audit.clone()),
        }
        .layer(tower::service_fn(|request: Request<()>| async move {
            assert!(request.extensions().get::<RecordId>().is_none());
            Ok::<_, ProxyError>(Response::new(full(bytes::Bytes::new())))
        }));
        let request = Request::builder()
            .uri("/healthz")
            .header("x-request-id", "plain-1")
            .body(())
            .unwrap();
        let response = service.oneshot(request).await.unwrap();
        assert!(response.headers().get("x-sidelight-record-id").is_none());
        assert!(audit.get("plain-1".to_owned()).await.unwrap().is_none());
    }
}
