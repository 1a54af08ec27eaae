//! Body types: the boxed body every layer passes on, and a streaming meter that counts
//! bytes and enforces the hard size limit without ever holding the body in memory.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use prometheus_client::metrics::counter::Counter;

/// Errors that callers of this crate see are boxed so that any layer can add its own.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of every request and response inside the proxy.
pub type ProxyBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// The streamed body went past `server.max_body_bytes`.
#[derive(Debug, thiserror::Error)]
#[error("body exceeded the limit of {limit} bytes")]
pub struct BodyLimitExceeded {
    pub limit: u64,
}

/// The client sent its body too slowly (`server.body_timeout`, `server.body_min_rate`).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BodyTimedOut(pub ReadDeadline);

/// How long a client may take to send its body: `grace`, plus one second for every
/// `min_rate` bytes it has sent. A large upload at a fair rate always fits; a client
/// that trickles a few bytes to hold a connection and a worker does not.
#[derive(Debug, Clone, Copy)]
pub struct ReadDeadline {
    pub grace: Duration,
    pub min_rate: u64,
}

impl std::fmt::Display for ReadDeadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body did not arrive in time: more than {:?} plus one second per {} bytes",
            self.grace, self.min_rate
        )
    }
}

/// A [`ReadDeadline`] running: when it started, and the timer set to its current end.
struct Running {
    deadline: ReadDeadline,
    start: Instant,
    timer: Pin<Box<tokio::time::Sleep>>,
}

/// Wraps a body, adding each data frame's length to a counter and failing the stream
/// once more than `limit` bytes have passed, or once it is later than its
/// [`ReadDeadline`].
pub struct Metered<B> {
    inner: B,
    counter: Counter,
    seen: u64,
    limit: Option<u64>,
    deadline: Option<Running>,
    /// Fired once the last byte has been handed on, so that the upstream timeout can
    /// start when the request is fully sent rather than when sending began.
    on_end: Option<tokio::sync::oneshot::Sender<()>>,
}

impl<B> Metered<B> {
    pub fn new(inner: B, counter: Counter, limit: Option<u64>) -> Self {
        Self {
            inner,
            counter,
            seen: 0,
            limit,
            deadline: None,
            on_end: None,
        }
    }

    /// Fails the body once it is later than `deadline`, counted from now.
    pub fn with_deadline(mut self, deadline: ReadDeadline) -> Self {
        let start = Instant::now();
        self.deadline = Some(Running {
            deadline,
            start,
            timer: Box::pin(tokio::time::sleep_until(start + deadline.grace)),
        });
        self
    }

    /// Returns a receiver that completes when the body has been read to its end (or
    /// dropped). A body that is empty from the start completes it at once.
    pub fn notify_end(&mut self) -> tokio::sync::oneshot::Receiver<()>
    where
        B: Body,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.inner.is_end_stream() {
            let _ = tx.send(());
        } else {
            self.on_end = Some(tx);
        }
        rx
    }

    fn ended(&mut self) {
        self.deadline = None;
        if let Some(tx) = self.on_end.take() {
            let _ = tx.send(());
        }
    }
}

// === impl Metered ===

impl<B> Body for Metered<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if polled.is_pending() {
            if let Some(running) = &mut this.deadline {
                if running.timer.as_mut().poll(cx).is_ready() {
                    let error = BodyTimedOut(running.deadline);
                    this.deadline = None;
                    return Poll::Ready(Some(Err(Box::new(error))));
                }
            }
        }
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    this.seen += len;
                    this.counter.inc_by(len);
                    if let Some(limit) = this.limit {
                        if this.seen > limit {
                            return Poll::Ready(Some(Err(Box::new(BodyLimitExceeded { limit }))));
                        }
                    }
                    if let Some(running) = &mut this.deadline {
                        let ReadDeadline { grace, min_rate } = running.deadline;
                        let earned =
                            Duration::from_secs_f64(this.seen as f64 / min_rate.max(1) as f64);
                        running.timer.as_mut().reset(running.start + grace + earned);
                    }
                }
                // hyper stops polling once `is_end_stream` is true, so the end may never
                // be seen as a `None` frame.
                if this.inner.is_end_stream() {
                    this.ended();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => {
                this.ended();
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A body held whole in memory, for answers Sidelight writes itself.
pub fn full(bytes: Bytes) -> ProxyBody {
    use http_body_util::BodyExt;
    http_body_util::Full::new(bytes)
        .map_err(|never| match never {})
        .boxed()
}

/// A JSON answer with the given status.
pub fn json_response(
    status: http::StatusCode,
    body: &serde_json::Value,
) -> http::Response<ProxyBody> {
    let mut response = http::Response::new(full(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}
