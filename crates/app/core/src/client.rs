//! A minimal HTTP client for the `sidelight` command's calls to a running proxy (its
//! admin API, and the demo's calls to its data port), so that the command needs no HTTP
//! stack of its own. `https://` URLs are verified against the system's roots, or against
//! the certificates of the PEM file named by `SSL_CERT_FILE` (a private CA, or a proxy's
//! self-signed certificate), as curl and OpenSSL do.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, Uri};
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

/// Sends a bodiless `POST` to `url` with extra `headers` (an `Authorization` with the
/// admin token) and returns the status and the body as text.
pub async fn admin_post(
    url: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> Result<(u16, String), AdminClientError> {
    call(Method::POST, url, headers, Bytes::new(), timeout)
        .await
        .map(|(status, _, body)| (status, body))
}

/// Sends a `GET` to `url` with extra `headers` (an `Authorization` with the admin token)
/// and returns the status and the body as text.
pub async fn admin_get(
    url: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> Result<(u16, String), AdminClientError> {
    call(Method::GET, url, headers, Bytes::new(), timeout)
        .await
        .map(|(status, _, body)| (status, body))
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
    call(Method::POST, url, &all, Bytes::from(body), timeout)
        .await
        .map(|(status, _, body)| (status, body))
}

/// As [`post_json`], with the answer's headers (a record id and its token, say).
pub async fn post_json_with_headers(
    url: &str,
    headers: &[(&str, &str)],
    body: String,
    timeout: Duration,
) -> Result<(u16, http::HeaderMap, String), AdminClientError> {
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
) -> Result<(u16, http::HeaderMap, String), AdminClientError> {
    let uri: Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| AdminClientError::Url {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
    let https = match (uri.scheme_str(), uri.authority()) {
        (Some("http"), Some(_)) => false,
        (Some("https"), Some(_)) => true,
        _ => {
            return Err(AdminClientError::Url {
                url: url.to_owned(),
                reason: "write it as http://host:port/… or https://host:port/…".to_owned(),
            });
        }
    };
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
        let response = if https {
            send_tls(request, url).await?
        } else {
            let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
            client
                .request(request)
                .await
                .map_err(|e| unreachable(crate::error::chain(&e)))?
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| unreachable(crate::error::chain(e.as_ref())))?
            .to_bytes();
        Ok((status, headers, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| AdminClientError::Timeout {
            url: url.to_owned(),
            timeout,
        })?
}

/// Sends `request` (absolute URI, `https`) on a connection of its own: one call per
/// command needs no pool.
async fn send_tls(
    mut request: Request<Full<Bytes>>,
    url: &str,
) -> Result<Response<hyper::body::Incoming>, AdminClientError> {
    let unreachable = |reason: String| AdminClientError::Unreachable {
        url: url.to_owned(),
        reason,
    };
    let bad_url = |reason: String| AdminClientError::Url {
        url: url.to_owned(),
        reason,
    };
    let authority = request
        .uri()
        .authority()
        .cloned()
        .ok_or_else(|| bad_url("no host".to_owned()))?;
    let host = authority.host().trim_matches(['[', ']']).to_owned();
    let port = authority.port_u16().unwrap_or(443);
    let name = rustls_pki_types::ServerName::try_from(host.clone())
        .map_err(|e| bad_url(format!("`{host}` is not a host name: {e}")))?;
    let connector = tls_connector().map_err(unreachable)?;
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let stream = connector.connect(name, tcp).await.map_err(|e| {
        unreachable(format!("TLS: {e} (to trust a private CA or a self-signed certificate, set SSL_CERT_FILE to its PEM file)"))
    })?;
    // The connection speaks HTTP/1.1 to the origin: the target is the path, the
    // authority goes in Host.
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .parse::<Uri>()
        .map_err(|e| bad_url(e.to_string()))?;
    *request.uri_mut() = path;
    let host_header =
        http::HeaderValue::from_str(authority.as_str()).map_err(|e| bad_url(e.to_string()))?;
    request
        .headers_mut()
        .insert(http::header::HOST, host_header);
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(crate::error::chain(&e)))?;
    tokio::spawn(async move {
        // Ends when the answer has been read and the sender dropped; its errors show in
        // the answer's.
        let _ = connection.await;
    });
    sender
        .send_request(request)
        .await
        .map_err(|e| unreachable(crate::error::chain(&e)))
}

/// A TLS client trusting the system's roots, or `SSL_CERT_FILE`'s certificates; the
/// error says what to set (it becomes the reason of an `Unreachable`).
fn tls_connector() -> Result<tokio_rustls::TlsConnector, String> {
    let loaded = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(loaded.certs);
    if added == 0 {
        let why = loaded
            .errors
            .first()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        return Err(format!(
            "no trusted certificates found{why}: set SSL_CERT_FILE to a PEM file of the \
             certificates to trust"
        ));
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(std::sync::Arc::new(
        config,
    )))
}
