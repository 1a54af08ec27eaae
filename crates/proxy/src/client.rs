//! A minimal HTTP client for the `sidelight` command's calls to a running proxy (its
//! admin API, and the demo's calls to its data port), so that the command needs no HTTP
//! stack of its own.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Most bytes of an admin answer read (reports are a few KiB).
const MAX_ANSWER: usize = 16 << 20;

/// Why an admin call got no answer.
#[derive(Debug, thiserror::Error)]
pub enum AdminClientError {
    /// The URL cannot be used.
    #[error("`{url}` is not an http:// URL: {reason}")]
    Url {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No connection, or the connection broke.
    #[error("cannot reach {url}: {reason}")]
    Unreachable {
        /// The URL called.
        url: String,
        /// The transport's reason.
        reason: String,
    },
    /// No answer in time.
    #[error("no answer from {url} within {timeout:?}")]
    Timeout {
        /// The URL called.
        url: String,
        /// How long was waited.
        timeout: Duration,
    },
}

/// Sends a bodiless `POST` to `url` and returns the status and the body as text.
pub async fn admin_post(url: &str, timeout: Duration) -> Result<(u16, String), AdminClientError> {
    call(Method::POST, url, &[], Bytes::new(), timeout).await
}

/// Sends a `GET` to `url` and returns the status and the body as text.
pub async fn admin_get(url: &str, timeout: Duration) -> Result<(u16, String), AdminClientError> {
    call(Method::GET, url, &[], Bytes::new(), timeout).await
}

/// Sends `body` as JSON in a `POST` to `url` with extra `headers`, and returns the
/// status and the body as text. The demo calls its own proxy with it.
pub async fn post_json(
    url: &str,
    headers: &[(&str, &str)],
    body: String,
    timeout: Duration,
) -> Result<(u16, String), AdminClientError> {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    call(Method::POST, url, &all, Bytes::from(body), timeout).await
}

async fn call(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Bytes,
    timeout: Duration,
) -> Result<(u16, String), AdminClientError> {
    let uri: Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| AdminClientError::Url {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
    if uri.scheme_str() != Some("http") || uri.authority().is_none() {
        return Err(AdminClientError::Url {
            url: url.to_owned(),
            reason: "write it as http://host:port/…".to_owned(),
        });
    }
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut builder = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder
        .body(Full::new(body))
        .map_err(|e| AdminClientError::Url {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
    let unreachable = |reason: String| AdminClientError::Unreachable {
        url: url.to_owned(),
        reason,
    };
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| unreachable(crate::error::chain(&e)))?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| unreachable(crate::error::chain(e.as_ref())))?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| AdminClientError::Timeout {
            url: url.to_owned(),
            timeout,
        })?
}
