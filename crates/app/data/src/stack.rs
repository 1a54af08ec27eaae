//! The data plane, assembled in one place. Read it inside out: the forwarder sends the
//! request upstream; `Explain` pairs its features with the model's outputs, records and
//! attaches the why; `Record` commits the audit record; `Hold`
//! waits for a reviewer's decision on a held response; `Endpoints` answers the data port's own
//! endpoints; `Rescue` turns failures into JSON answers; `Observe` names the route,
//! tags the request id and counts what the client finally received.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use http::{Request, Response};
use hyper::body::Incoming;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

use crate::body::ProxyBody;
use crate::endpoints::{Endpoints, EndpointsLayer};
use crate::error::ProxyError;
use crate::explain::{Explain, ExplainLayer};
use crate::forward::{ClientAddr, ErrorCode, Forward};
use crate::headers;
use crate::live::{RecentExplanations, RecentRequests};
use crate::metrics::{ErrorLabels, Metrics, RequestLabels, method_label};
use crate::record::{Record, RecordLayer};
use crate::review::{Hold, HoldLayer};
use crate::route::RouteTable;
use crate::trust::Trust;

/// The data-plane service handed to each client connection. A concrete type rather than
/// a boxed service: it is cloned for every request, and cloning it is a few reference
/// counts.
pub type DataPlane = Observe<Rescue<Endpoints<Hold<Record<Explain<Forward>>>>>>;

/// What the data plane shares with the rest of Sidelight, and its workers with each
/// other.
#[derive(Clone)]
pub struct Shared {
    /// Explanations kept by reference.
    pub recent: Arc<RecentExplanations>,
    /// Explained requests kept for the probe check.
    pub requests: Arc<RecentRequests>,
    pub audit: Option<Arc<crate::audit::AuditLog>>,
    pub trust: Arc<Trust>,
    /// Outcome reports per client, counted across the workers.
    pub feedback_limit: Arc<crate::endpoints::FeedbackLimit>,
    /// Where explanations are computed, shared by the workers.
    pub pool: Arc<crate::compute::ComputePool>,
    /// `server.explanation_max_bytes`.
    pub reference_max_bytes: usize,
    /// What the audit log keeps, for the routes' notices.
    pub kept_records: Option<crate::notice::KeptRecords>,
}

pub fn data_plane(forward: Forward, routes: Arc<RouteTable>, shared: Shared) -> DataPlane {
    let Shared {
        recent,
        requests,
        audit,
        trust,
        feedback_limit,
        pool,
        reference_max_bytes,
        kept_records,
    } = shared;
    let live_routes: Arc<[Arc<crate::live::RouteLive>]> = routes.live_routes().into();
    let metrics = Arc::new(routes.metrics().clone());
    ServiceBuilder::new()
        // Outermost, so that answers Sidelight made itself are counted and tagged too.
        .layer(ObserveLayer {
            routes,
            metrics: metrics.clone(),
            trust,
        })
        // The one place where a failure becomes an HTTP answer; nothing below may
        // fail a request in any other way.
        .layer(RescueLayer)
        // The data port's own endpoints (`/v1/explanations/{id}`, `/v1/feedback`,
        // `/v1/notice/{route}`, `/v1/contests`).
        .layer(EndpointsLayer {
            recent: recent.clone(),
            audit: audit.clone(),
            feedback_limit,
            metrics: metrics.clone(),
            notices: Arc::new(crate::notice::NoticeDesk {
                routes: live_routes.clone(),
                records: kept_records,
            }),
            contests: crate::contest::ContestDesk {
                audit: audit.clone(),
                routes: live_routes,
            },
        })
        // Waits for a reviewer's decision on a response the record layer held.
        .layer(HoldLayer)
        // Gives an explained request its audit record id, then commits its record
        // (with `sync`, before the response goes on).
        .layer(RecordLayer {
            audit: audit.clone(),
        })
        // Pairs the request's features with the model's outputs and attaches the why;
        // it never fails a request the model answered.
        .layer(ExplainLayer {
            recent,
            requests,
            audit,
            metrics,
            reference_max_bytes,
            pool,
        })
        .service(forward)
}

#[derive(Clone)]
struct ObserveLayer {
    routes: Arc<RouteTable>,
    metrics: Arc<Metrics>,
    trust: Arc<Trust>,
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            routes: self.routes.clone(),
            metrics: self.metrics.clone(),
            trust: self.trust.clone(),
        }
    }
}

/// Matches the route, resolves who the caller is (`[server.trust]`), keeps or creates
/// the request id (and returns it to the client), tracks in-flight requests and counts
/// answers by route, method and status.
#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    routes: Arc<RouteTable>,
    metrics: Arc<Metrics>,
    trust: Arc<Trust>,
}

// === impl Observe ===

impl<S> Service<Request<Incoming>> for Observe<S>
where
    S: Service<Request<Incoming>, Response = Response<ProxyBody>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Incoming>) -> Self::Future {
        let route = self.routes.lookup(request.uri().path()).clone();
        // Every accepted connection has a peer; requests built in process have none and
        // are nobody's in particular (untrusted).
        if let Some(ClientAddr(peer)) = request.extensions().get::<ClientAddr>().copied() {
            let caller = self.trust.caller(peer.ip(), request.headers_mut());
            request.extensions_mut().insert(caller);
        } else {
            request.headers_mut().remove(&crate::trust::CREDENTIAL);
        }
        let method = method_label(request.method());
        let sent = request.headers().get(&headers::REQUEST_ID).cloned();
        let request_id = headers::ensure_request_id(request.headers_mut());
        // The audit log keeps ids unique; only an id a client chose can repeat.
        let supplied = sent.as_ref() == Some(&request_id);
        request
            .extensions_mut()
            .insert(headers::ClientRequestId(supplied));
        request.extensions_mut().insert(route.clone());
        let metrics = self.metrics.clone();
        let busy = request
            .extensions()
            .get::<Arc<Activity>>()
            .map(|activity| activity.begin());
        // Take the service that was driven to readiness, leave a fresh clone behind.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let _busy = busy;
            let _in_flight = InFlight::enter(&metrics);
            let Ok(mut response) = inner.oneshot(request).await;
            if let Some(ErrorCode(code)) = response.extensions().get::<ErrorCode>().copied() {
                metrics
                    .errors
                    .get_or_create(&ErrorLabels {
                        route: route.label.clone(),
                        code,
                    })
                    .inc();
            }
            metrics
                .requests
                .get_or_create(&RequestLabels {
                    route: route.label.clone(),
                    method,
                    status: response.status().as_u16(),
                })
                .inc();
            response
                .headers_mut()
                .insert(headers::REQUEST_ID.clone(), request_id);
            Ok(response)
        })
    }
}

#[derive(Clone)]
struct RescueLayer;

impl<S> Layer<S> for RescueLayer {
    type Service = Rescue<S>;

    fn layer(&self, inner: S) -> Rescue<S> {
        Rescue { inner }
    }
}

/// Makes the stack infallible for hyper: every [`ProxyError`] becomes its JSON answer,
/// logged once, with its code left on the response for [`Observe`] to count.
#[derive(Clone)]
pub struct Rescue<S> {
    inner: S,
}

// === impl Rescue ===

impl<S> Service<Request<Incoming>> for Rescue<S>
where
    S: Service<Request<Incoming>, Response = Response<ProxyBody>, Error = ProxyError>,
    S::Future: Send + 'static,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The forwarder is always ready; should a future inner layer not be, its
        // readiness error surfaces on the call instead.
        match self.inner.poll_ready(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(_) => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, request: Request<Incoming>) -> Self::Future {
        let future = self.inner.call(request);
        Box::pin(async move {
            Ok(match future.await {
                Ok(response) => response,
                Err(error) => {
                    let code = error.code();
                    if error.status().is_server_error() {
                        tracing::warn!(code, error = %error, "upstream failure");
                    } else {
                        tracing::debug!(code, error = %error, "request refused");
                    }
                    let mut response = error.into_response();
                    response.extensions_mut().insert(ErrorCode(code));
                    response
                }
            })
        })
    }
}

/// Decrements the in-flight gauge however the request ends, cancellation included.
struct InFlight(prometheus_client::metrics::gauge::Gauge);

impl InFlight {
    fn enter(metrics: &Metrics) -> Self {
        metrics.in_flight.inc();
        Self(metrics.in_flight.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// What a client connection is doing, for its idle timeout: when it last began or
/// finished a request, and how many of its requests are in flight. The listener puts
/// it on each request; `Observe` holds the connection busy while the request is
/// answered, so that a long request is never taken for idleness.
#[derive(Debug)]
pub struct Activity {
    /// Milliseconds from `epoch`.
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
    epoch: tokio::time::Instant,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            epoch: tokio::time::Instant::now(),
        })
    }

    /// Notes that a request began now.
    pub fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Holds the connection busy until the guard is dropped.
    pub fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        Busy(self.clone())
    }

    /// Since when the connection has been idle; `None` while a request is in flight.
    pub fn idle_since(&self) -> Option<tokio::time::Instant> {
        (self.in_flight.load(Ordering::Relaxed) == 0).then(|| {
            self.epoch + std::time::Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
        })
    }
}

/// A request in flight on a connection; see [`Activity`].
pub struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
