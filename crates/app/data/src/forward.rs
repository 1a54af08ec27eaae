//! Forwarding a request to the upstream and its response back, streaming both bodies.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::uri::PathAndQuery;
use http::{HeaderValue, Method, Request, Response, Uri, Version, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::{BodyLimitExceeded, BodyTimedOut, Metered, ProxyBody, ReadDeadline};
use crate::config::{Config, UpstreamBase, UpstreamProtocol};
use crate::error::{ProxyError, chain, find_cause};
use crate::headers;
use crate::inspect::{self, Inspection};
use crate::route::Route;

/// The address of the client, put on each request by the listener.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// An error while reading the client's body, kept apart from upstream errors so that a
/// client that hangs up mid-upload is not reported as a broken upstream.
#[derive(Debug, thiserror::Error)]
#[error("client body: {0}")]
struct ClientBodyError(#[source] hyper::Error);

pub type UpstreamClient = Client<HttpConnector, ProxyBody>;

/// Builds the pooled client to the upstream.
pub fn upstream_client(config: &Config) -> UpstreamClient {
    let upstream = &config.upstream;
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(upstream.connect_timeout));
    connector.set_nodelay(true);
    connector.set_keepalive(Some(Duration::from_secs(60)));
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(upstream.pool_idle_timeout)
        .pool_max_idle_per_host(upstream.pool_max_idle)
        .http2_only(upstream.protocol == UpstreamProtocol::H2c);
    builder.build(connector)
}

/// The innermost service: sends the request upstream and returns its response.
#[derive(Clone)]
pub struct Forward {
    shared: Arc<ForwardShared>,
}

struct ForwardShared {
    client: UpstreamClient,
    base: UpstreamBase,
    version: Version,
    connect_timeout: Duration,
    request_timeout: Duration,
    max_body_bytes: u64,
    body_deadline: ReadDeadline,
    /// `X-Forwarded-Proto`: how clients reach the data listener.
    proto: &'static str,
}

// === impl Forward ===

impl Forward {
    pub fn new(config: &Config) -> Result<Self, crate::config::ConfigError> {
        let base = config.upstream.base()?;
        Ok(Self {
            shared: Arc::new(ForwardShared {
                client: upstream_client(config),
                base,
                version: match config.upstream.protocol {
                    UpstreamProtocol::Http1 => Version::HTTP_11,
                    UpstreamProtocol::H2c => Version::HTTP_2,
                },
                connect_timeout: config.upstream.connect_timeout,
                request_timeout: config.upstream.request_timeout,
                max_body_bytes: config.server.max_body_bytes,
                body_deadline: ReadDeadline {
                    grace: config.server.body_timeout,
                    min_rate: config.server.body_min_rate,
                },
                proto: if config.server.tls.is_some() {
                    "https"
                } else {
                    "http"
                },
            }),
        })
    }
}

impl tower::Service<Request<Incoming>> for Forward {
    type Response = Response<ProxyBody>;
    type Error = ProxyError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, ProxyError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Incoming>) -> Self::Future {
        let shared = self.shared.clone();
        Box::pin(async move { shared.forward(request).await })
    }
}

impl ForwardShared {
    async fn forward(&self, request: Request<Incoming>) -> Result<Response<ProxyBody>, ProxyError> {
        let (mut parts, body) = request.into_parts();
        let route =
            parts
                .extensions
                .get::<Route>()
                .cloned()
                .ok_or(ProxyError::MalformedRequest(
                    "request reached the forwarder without a route",
                ))?;

        if parts.method == Method::CONNECT {
            return Err(ProxyError::MalformedRequest(
                "CONNECT is not supported: Sidelight is a reverse proxy, not a tunnel",
            ));
        }
        let path_and_query = parts
            .uri
            .path_and_query()
            .filter(|pq| pq.path().starts_with('/'))
            .cloned()
            .ok_or(ProxyError::MalformedRequest(
                "the request target must be a path starting with `/`",
            ))?;
        if let Some(declared) = content_length(&parts.headers) {
            if declared > self.max_body_bytes {
                return Err(ProxyError::BodyTooLarge {
                    limit: self.max_body_bytes,
                });
            }
        }

        let original_host = parts.headers.get(header::HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        let is_json = parts
            .headers
            .get(header::CONTENT_TYPE)
            .is_some_and(headers::is_json);
        headers::remove_hop_by_hop(&mut parts.headers);
        headers::remove_sidelight(&mut parts.headers);
        // The client is always known for accepted connections; a missing address only
        // happens for requests built in-process, which get no X-Forwarded-For.
        if let Some(ClientAddr(client)) = parts.extensions.get::<ClientAddr>().copied() {
            let via_trusted_proxy = parts
                .extensions
                .get::<crate::trust::Caller>()
                .is_some_and(|caller| caller.via_trusted_proxy);
            headers::add_forwarded(
                &mut parts.headers,
                client,
                self.proto,
                original_host,
                via_trusted_proxy,
            );
        }
        // The upstream gets its own authority as Host, as nginx's proxy_pass does;
        // the client's Host travels in X-Forwarded-Host.
        parts.headers.remove(header::HOST);
        parts.uri = self.upstream_uri(&path_and_query)?;
        parts.version = self.version;

        let mut metered = Metered::new(
            body.map_err(ClientBodyError),
            route.metrics.request_bytes.clone(),
            Some(self.max_body_bytes),
        )
        .with_deadline(self.body_deadline);
        let sent = metered.notify_end();
        let mut body = metered.boxed();

        let mut inspected = None;
        if let Some(limit) = route.inspect_limit {
            let inspection = if is_json && !matches!(parts.method, Method::GET | Method::HEAD) {
                let (inspection, replayed) = inspect::read_prefix(body, limit)
                    .await
                    .map_err(|e| classify_body_error(e.as_ref(), self.max_body_bytes))?;
                body = replayed;
                inspection
            } else {
                Inspection::Skipped
            };
            route.metrics.inspected(&inspection).inc();
            inspected = Some(inspection);
        }

        let started = Instant::now();
        let response_future = self.client.request(Request::from_parts(parts, body));
        let timeout = self.request_timeout;
        // The timeout counts from the moment the whole request has been handed to the
        // upstream, so that a long upload is not mistaken for a slow model.
        let deadline = async move {
            let _ = sent.await;
            tokio::time::sleep(timeout).await;
        };
        let response = tokio::select! {
            result = response_future => result.map_err(|e| self.classify_client_error(&e))?,
            () = deadline => return Err(ProxyError::UpstreamTimeout(timeout)),
        };
        route
            .metrics
            .upstream_latency
            .observe(started.elapsed().as_secs_f64());

        let (mut parts, body) = response.into_parts();
        headers::remove_hop_by_hop(&mut parts.headers);
        let body = Metered::new(body, route.metrics.response_bytes.clone(), None).boxed();
        // What was read of the request travels back with the response, for the stages
        // that pair the model's inputs with its outputs.
        if let Some(inspection) = inspected {
            parts.extensions.insert(inspection);
        }
        Ok(Response::from_parts(parts, body))
    }

    fn upstream_uri(&self, path_and_query: &PathAndQuery) -> Result<Uri, ProxyError> {
        let joined = format!("{}{}", self.base.path_prefix, path_and_query.as_str());
        Uri::builder()
            .scheme(self.base.scheme.clone())
            .authority(self.base.authority.clone())
            .path_and_query(joined)
            .build()
            .map_err(|_| ProxyError::MalformedRequest("the request target cannot be forwarded"))
    }

    fn classify_client_error(&self, error: &hyper_util::client::legacy::Error) -> ProxyError {
        if error.is_connect() {
            let timed_out = find_cause::<std::io::Error>(error)
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut);
            return if timed_out {
                ProxyError::UpstreamConnectTimeout(self.connect_timeout)
            } else {
                ProxyError::UpstreamUnreachable(chain(error))
            };
        }
        classify_body_error(error, self.max_body_bytes)
    }
}

fn classify_body_error(error: &(dyn std::error::Error + 'static), max: u64) -> ProxyError {
    if find_cause::<BodyLimitExceeded>(error).is_some() {
        ProxyError::BodyTooLarge { limit: max }
    } else if let Some(BodyTimedOut(deadline)) = find_cause::<BodyTimedOut>(error) {
        ProxyError::BodyTimeout(*deadline)
    } else if let Some(client) = find_cause::<ClientBodyError>(error) {
        ProxyError::ClientBody(client.to_string())
    } else {
        ProxyError::UpstreamReset(chain(error))
    }
}

fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// The error code of a response that Sidelight made itself.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);
