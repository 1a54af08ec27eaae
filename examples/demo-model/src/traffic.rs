//! Replays the data set against a model API (directly, or through Sidelight) at a fixed
//! rate, one application per request.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use thiserror::Error;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use crate::data::{DataError, applications};
use crate::server::{PREDICT_PATH, RANK_PATH};

/// A request that has not answered by then is counted as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long in-flight requests may still finish once shutdown is requested.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Caps concurrency when the target is slower than the rate, so a stalled upstream cannot
/// make the generator pile up unbounded tasks.
const MAX_IN_FLIGHT: usize = 64;

/// What to replay against, and how fast.
#[derive(Clone, Debug, PartialEq)]
pub struct TrafficConfig {
    /// Scheme, host and port, optionally a path prefix, e.g. `http://127.0.0.1:8080`.
    pub base_url: String,
    /// Requests per second; must be positive and finite.
    pub rate_per_sec: f64,
    /// Stop after this many requests; `None` runs until shutdown.
    pub limit: Option<u64>,
    /// Also ask the shop's recommender (`/v1/models/shop:rank`), once for every four
    /// applications, each for a customer of its own (`customer-N`).
    pub with_shop: bool,
}

/// Live counters, shared with the caller through an `Arc` so it can print progress.
///
/// Once `replay` has returned, `sent == ok + failed`; requests abandoned at shutdown count
/// as failed.
#[derive(Debug, Default)]
pub struct TrafficStats {
    pub sent: AtomicU64,
    /// Answered with a 2xx status.
    pub ok: AtomicU64,
    /// Answered with another status, or the connection/timeout failed.
    pub failed: AtomicU64,
}

/// A point-in-time copy of [`TrafficStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrafficSnapshot {
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
}

impl TrafficStats {
    pub fn snapshot(&self) -> TrafficSnapshot {
        TrafficSnapshot {
            sent: self.sent.load(Ordering::Relaxed),
            ok: self.ok.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }
}

/// Why the replay could not start. Failing requests are counted, never reported here.
#[derive(Debug, Error)]
pub enum TrafficError {
    #[error("invalid base URL {url:?}: {reason}")]
    InvalidBaseUrl { url: String, reason: String },
    #[error("invalid rate {rate}: must be a positive, finite number of requests per second")]
    InvalidRate { rate: f64 },
    #[error(transparent)]
    Data(#[from] DataError),
}

/// Sends the data set's applications, cycling through the rows, to
/// `{base_url}/v1/models/credit:predict` at `rate_per_sec`, until `limit` requests have
/// completed or `shutdown` resolves.
pub async fn replay(
    config: TrafficConfig,
    stats: Arc<TrafficStats>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), TrafficError> {
    let uri = predict_uri(&config.base_url, PREDICT_PATH)?;
    let rank_uri = predict_uri(&config.base_url, RANK_PATH)?;
    if !(config.rate_per_sec.is_finite() && config.rate_per_sec > 0.0) {
        return Err(TrafficError::InvalidRate {
            rate: config.rate_per_sec,
        });
    }
    // Serialised once: the body of each request is fixed by its row. Each applicant is a
    // subject of their own (`applicant-N`), so the demo's audit log can erase one.
    let mut bodies: Vec<(Uri, Bytes, HeaderValue)> = Vec::new();
    for (i, row) in applications()?.into_iter().enumerate() {
        let subject = HeaderValue::from_str(&format!("applicant-{}", i + 1))
            .unwrap_or(HeaderValue::from_static("applicant"));
        bodies.push((
            uri.clone(),
            Bytes::from(json!({"instances": [row.application]}).to_string()),
            subject,
        ));
        if config.with_shop && i % 4 == 3 {
            let n = i as u64 / 4;
            let customer = HeaderValue::from_str(&format!("customer-{}", n + 1))
                .unwrap_or(HeaderValue::from_static("customer"));
            bodies.push((
                rank_uri.clone(),
                Bytes::from(crate::shop::request(n).to_string()),
                customer,
            ));
        }
    }

    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(connector);

    // Clamped so that absurdly high rates do not produce a zero period (which panics).
    let period = Duration::from_secs_f64((1.0 / config.rate_per_sec).clamp(1e-6, 1e9));
    let mut ticks = tokio::time::interval(period);
    // After a stall, resume the steady rate rather than bursting to catch up.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);

    let mut in_flight = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut rows = bodies.iter().cycle();
    let mut dispatched: u64 = 0;
    let mut stopped = false;

    while config.limit.is_none_or(|limit| dispatched < limit) {
        tokio::select! {
            () = &mut shutdown => { stopped = true; break; }
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => continue,
            _ = ticks.tick() => {}
        }
        if in_flight.len() >= MAX_IN_FLIGHT {
            // Skip this tick rather than queue: the target is not keeping up.
            continue;
        }
        let Some((uri, body, subject)) = rows.next() else {
            break;
        };
        let request = predict_request(uri, body.clone(), subject.clone());
        let (client, stats) = (client.clone(), Arc::clone(&stats));
        stats.sent.fetch_add(1, Ordering::Relaxed);
        dispatched += 1;
        in_flight.spawn(async move {
            let outcome = tokio::time::timeout(REQUEST_TIMEOUT, async {
                let response = client.request(request).await.map_err(|err| {
                    tracing::debug!(%err, "traffic request failed");
                })?;
                let success = response.status().is_success();
                // Reading the body to the end returns the connection to the pool.
                response.into_body().collect().await.map_err(|err| {
                    tracing::debug!(%err, "traffic response body failed");
                })?;
                if success { Ok(()) } else { Err(()) }
            })
            .await;
            let counter = match outcome {
                Ok(Ok(())) => &stats.ok,
                _ => &stats.failed,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        });
    }

    let drain = async { while in_flight.join_next().await.is_some() {} };
    if stopped {
        // On shutdown, stragglers get a short grace period and are then abandoned.
        if tokio::time::timeout(DRAIN_TIMEOUT, drain).await.is_err() {
            let abandoned = in_flight.len() as u64;
            in_flight.shutdown().await;
            stats.failed.fetch_add(abandoned, Ordering::Relaxed);
        }
    } else {
        // Every request is bounded by REQUEST_TIMEOUT, so this wait is too.
        drain.await;
    }
    Ok(())
}

fn predict_request(uri: &Uri, body: Bytes, subject: HeaderValue) -> Request<Full<Bytes>> {
    let mut request = Request::new(Full::new(body));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = uri.clone();
    let headers = request.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert("x-sidelight-subject", subject);
    request
}

/// Validates `base_url` (plain `http`, a host, no query) and appends `path`.
pub(crate) fn predict_uri(base_url: &str, path: &str) -> Result<Uri, TrafficError> {
    let invalid = |reason: &str| TrafficError::InvalidBaseUrl {
        url: base_url.to_owned(),
        reason: reason.to_owned(),
    };
    let base: Uri = base_url
        .parse()
        .map_err(|err: http::uri::InvalidUri| invalid(&err.to_string()))?;
    match base.scheme_str() {
        Some("http") => {}
        Some("https") => return Err(invalid("https is not supported; use http")),
        Some(_) => return Err(invalid("scheme must be http")),
        None => return Err(invalid("missing scheme, e.g. http://127.0.0.1:8080")),
    }
    if base.host().is_none_or(str::is_empty) {
        return Err(invalid("missing host"));
    }
    if base.query().is_some() {
        return Err(invalid("must not have a query"));
    }
    let prefix = base.path().trim_end_matches('/');
    format!(
        "http://{}{prefix}{path}",
        base.authority().map_or("", |a| a.as_str())
    )
    .parse()
    .map_err(|err: http::uri::InvalidUri| invalid(&err.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_validated() {
        assert_eq!(
            predict_uri("http://127.0.0.1:8080", PREDICT_PATH).unwrap(),
            "http://127.0.0.1:8080/v1/models/credit:predict"
        );
        assert_eq!(
            predict_uri("http://proxy:9/prefix/", PREDICT_PATH).unwrap(),
            "http://proxy:9/prefix/v1/models/credit:predict"
        );
        for bad in [
            "",
            "127.0.0.1:8080",
            "https://x",
            "ftp://x",
            "http://x/?q=1",
            "not a url",
        ] {
            let err = predict_uri(bad, PREDICT_PATH).unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[tokio::test]
    async fn bad_configuration_is_reported_before_any_request() {
        let stats = Arc::new(TrafficStats::default());
        let config = TrafficConfig {
            base_url: "localhost:1".to_owned(),
            rate_per_sec: 1.0,
            with_shop: false,
            limit: Some(1),
        };
        let err = replay(config, Arc::clone(&stats), std::future::pending())
            .await
            .unwrap_err();
        assert!(matches!(err, TrafficError::InvalidBaseUrl { .. }), "{err}");

        let config = TrafficConfig {
            base_url: "http://127.0.0.1:1".to_owned(),
            rate_per_sec: 0.0,
            with_shop: false,
            limit: Some(1),
        };
        let err = replay(config, Arc::clone(&stats), std::future::pending())
            .await
            .unwrap_err();
        assert!(matches!(err, TrafficError::InvalidRate { .. }), "{err}");
        assert_eq!(stats.snapshot(), TrafficSnapshot::default());
    }

    #[tokio::test]
    async fn unreachable_target_is_counted_not_fatal() {
        // Bind then drop, so the port is (almost certainly) closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let stats = Arc::new(TrafficStats::default());
        let config = TrafficConfig {
            base_url: format!("http://127.0.0.1:{port}"),
            rate_per_sec: 200.0,
            with_shop: false,
            limit: Some(3),
        };
        replay(config, Arc::clone(&stats), std::future::pending())
            .await
            .unwrap();
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.sent, 3);
        assert_eq!(snapshot.ok + snapshot.failed, 3);
        assert_eq!(snapshot.failed, 3);
    }
}
