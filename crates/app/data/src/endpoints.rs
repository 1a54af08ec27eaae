//! The data port's own endpoints, answered by Sidelight before a request reaches the
//! explanation layer or the model: `GET /v1/explanations/{id}` (explanations attached by
//! reference) and `POST /v1/feedback` (outcomes reported later). Every other request
//! goes on down the stack.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use tower::{Layer, Service};

use crate::audit::AuditLog;
use crate::body::{ProxyBody, full};
use crate::error::{ProxyError, json_error};
use crate::live::RecentExplanations;
use crate::review::FEEDBACK_PATH;

/// Where clients fetch explanations attached by reference.
pub const EXPLANATIONS_PATH: &str = "/v1/explanations/";

#[derive(Clone)]
pub struct EndpointsLayer {
    pub recent: Arc<RecentExplanations>,
    pub audit: Option<Arc<AuditLog>>,
}

impl<S> Layer<S> for EndpointsLayer {
    type Service = Endpoints<S>;

    fn layer(&self, inner: S) -> Endpoints<S> {
        Endpoints {
            inner,
            recent: self.recent.clone(),
            audit: self.audit.clone(),
        }
    }
}

/// Answers the data port's own endpoints; passes everything else to `inner`.
#[derive(Clone)]
pub struct Endpoints<S> {
    inner: S,
    recent: Arc<RecentExplanations>,
    audit: Option<Arc<AuditLog>>,
}

/// Which of the data port's endpoints a request is for, if any.
enum Endpoint<'a> {
    Explanation(&'a str),
    Feedback,
}

fn endpoint<B>(request: &Request<B>) -> Option<Endpoint<'_>> {
    let path = request.uri().path();
    if request.method() == Method::GET {
        if let Some(id) = path.strip_prefix(EXPLANATIONS_PATH) {
            return Some(Endpoint::Explanation(id));
        }
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
            Some(Endpoint::Feedback) => {
                let audit = self.audit.clone();
                let (parts, body) = request.into_parts();
                Box::pin(async move {
                    Ok(crate::review::feedback(audit.as_deref(), &parts.method, body).await)
                })
            }
            None => Box::pin(self.inner.call(request)),
        }
    }
}

fn fetch(recent: &RecentExplanations, id: &str) -> Response<ProxyBody> {
    match recent.get(id) {
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
            "no recent explanation has this id; explanations are kept for the most recent requests only",
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
    fn an_unknown_reference_is_a_json_404() {
        let recent = RecentExplanations::new(4);
        let answer = fetch(&recent, "nope");
        assert_eq!(answer.status(), StatusCode::NOT_FOUND);
    }
}
