//! Header rewriting at the proxy boundary: hop-by-hop headers are removed (they describe
//! one connection, not the message), forwarding headers are added, and every request gets
//! an `x-request-id`. End-to-end headers, `traceparent` and `tracestate` included, pass
//! through untouched.

use std::net::SocketAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// The header that carries a request's id, kept if the client sent one.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Whether a `content-type` value is JSON: `application/json` or a `+json` structured
/// syntax suffix (`application/problem+json`), with any parameters, in any case.
pub fn is_json(value: &HeaderValue) -> bool {
    let Ok(value) = value.to_str() else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || (essence.contains('/') && essence.ends_with("+json"))
}

/// Removes the headers of RFC 9110 §7.6.1, and any header that `Connection` names.
/// `TE: trailers` survives, since gRPC-style upstreams need it end to end.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    let te_trailers = headers
        .get(header::TE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        });
    for name in [
        &header::CONNECTION,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &header::PROXY_AUTHENTICATE,
        &header::PROXY_AUTHORIZATION,
        &header::TE,
        &header::TRAILER,
        &header::TRANSFER_ENCODING,
        &header::UPGRADE,
    ] {
        headers.remove(name);
    }
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// Removes every `x-sidelight-*` header: they are Sidelight's, never the model's, on
/// every route (the layers that read some of them have removed those already).
pub fn remove_sidelight(headers: &mut HeaderMap) {
    let ours: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("x-sidelight-"))
        .cloned()
        .collect();
    for name in ours {
        headers.remove(name);
    }
}

/// Sets the forwarding headers for the upstream. Behind a trusted proxy
/// (`[server.trust]`) its `X-Forwarded-For` is extended with the peer and its `-Proto`
/// and `-Host` are kept; from anyone else, whatever forwarding headers the client sent
/// are replaced: `X-Forwarded-For` is the peer, `-Proto` this listener's, `-Host` the
/// request's own Host. (`Forwarded`, which Sidelight does not write, is removed then.)
pub fn add_forwarded(
    headers: &mut HeaderMap,
    client: SocketAddr,
    proto: &'static str,
    original_host: Option<HeaderValue>,
    via_trusted_proxy: bool,
) {
    let client_ip = client.ip().to_string();
    // Every line of a trusted chain, in order: proxies may each add a line.
    let existing: Vec<&str> = if via_trusted_proxy {
        headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect()
    } else {
        Vec::new()
    };
    let forwarded_for = if existing.is_empty() {
        client_ip
    } else {
        format!("{}, {client_ip}", existing.join(", "))
    };
    if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
        headers.insert(X_FORWARDED_FOR.clone(), value);
    }
    if !via_trusted_proxy {
        headers.remove(&X_FORWARDED_HOST);
        headers.remove(&X_FORWARDED_PROTO);
        headers.remove(header::FORWARDED);
    }
    if !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    }
    if !headers.contains_key(&X_FORWARDED_HOST) {
        if let Some(host) = original_host {
            headers.insert(X_FORWARDED_HOST.clone(), host);
        }
    }
}

/// Returns the request's id, creating one if the client sent none (or an unusable one).
/// On a request: whether its `x-request-id` came from the client (and so may repeat)
/// rather than being generated here.
#[derive(Debug, Clone, Copy)]
pub struct ClientRequestId(pub bool);

pub fn ensure_request_id(headers: &mut HeaderMap) -> HeaderValue {
    if let Some(existing) = headers.get(&REQUEST_ID) {
        let usable =
            existing.len() <= 200 && existing.as_bytes().iter().all(|b| b.is_ascii_graphic());
        if usable {
            return existing.clone();
        }
    }
    let id = uuid::Uuid::new_v4().hyphenated().to_string();
    // A hyphenated UUID is always a valid header value.
    let value = HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    headers.insert(REQUEST_ID.clone(), value.clone());
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (k, v) in pairs {
            headers.append(*k, HeaderValue::from_static(v));
        }
        headers
    }

    #[test]
    fn hop_by_hop_headers_and_those_named_by_connection_are_removed() {
        let mut headers = map(&[
            ("connection", "keep-alive, x-secret-hop"),
            ("keep-alive", "timeout=5"),
            ("x-secret-hop", "1"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("te", "gzip"),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            ("content-type", "application/json"),
        ]);
        remove_hop_by_hop(&mut headers);
        let left: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["traceparent", "content-type"]);
    }

    #[test]
    fn te_trailers_is_kept() {
        let mut headers = map(&[("te", "trailers, deflate")]);
        remove_hop_by_hop(&mut headers);
        assert_eq!(headers["te"], "trailers");
    }

    #[test]
    fn behind_a_trusted_proxy_its_forwarding_headers_are_extended() {
        let mut headers = map(&[
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "shop.example"),
        ]);
        let client: SocketAddr = "127.0.0.9:5555".parse().unwrap();
        let host = Some(HeaderValue::from_static("api.example"));
        add_forwarded(&mut headers, client, "http", host, true);
        assert_eq!(headers["x-forwarded-for"], "203.0.113.7, 127.0.0.9");
        assert_eq!(headers["x-forwarded-proto"], "https");
        assert_eq!(headers["x-forwarded-host"], "shop.example");
    }

    #[test]
    fn from_anyone_else_forwarding_headers_are_replaced() {
        let mut headers = map(&[
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "admin.internal"),
            ("forwarded", "for=10.0.0.1;host=admin.internal"),
        ]);
        let client: SocketAddr = "198.51.100.4:5555".parse().unwrap();
        let host = Some(HeaderValue::from_static("api.example"));
        add_forwarded(&mut headers, client, "http", host, false);
        assert_eq!(headers["x-forwarded-for"], "198.51.100.4");
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert_eq!(headers["x-forwarded-host"], "api.example");
        assert!(headers.get("forwarded").is_none());
    }

    #[test]
    fn a_client_request_id_is_kept_and_a_missing_one_created() {
        let mut headers = map(&[("x-request-id", "abc-123")]);
        assert_eq!(ensure_request_id(&mut headers), "abc-123");
        let mut headers = HeaderMap::new();
        let id = ensure_request_id(&mut headers);
        assert_eq!(id.len(), 36);
        assert_eq!(headers["x-request-id"], id);
    }

    #[test]
    fn json_content_types_are_recognised_with_suffixes_and_parameters() {
        for json in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/problem+json",
            "application/vnd.api+json ; q=1",
        ] {
            assert!(is_json(&HeaderValue::from_static(json)), "{json}");
        }
        for other in ["text/plain", "+json", "application/jsonl", ""] {
            assert!(!is_json(&HeaderValue::from_static(other)), "{other}");
        }
    }
}
