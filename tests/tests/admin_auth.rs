//! The admin API's doors: bearer tokens with roles on every endpoint, reloading the token
//! set (revocation) from the config file, TLS on both listeners, and the `sidelight
//! token` command. Everything through the real binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use sidelight_e2e::{
    AUDIT_KEY_HEX, Answer, CliRun, Proxy, Upstream, cli, client, config_for, empty, full, send,
    sha256_hex,
};

/// A token for each role, and some that must not get in.
const VIEWER: &str = "sl_viewer-token-0123456789abcdef";
const REVIEWER: &str = "sl_reviewer-token-0123456789abcdef";
const AUDITOR: &str = "sl_auditor-token-0123456789abcdef";
const ADMIN: &str = "sl_admin-token-0123456789abcdef";
const EXPIRED: &str = "sl_expired-admin-token-0123456789";
const REVOKED: &str = "sl_revoked-admin-token-0123456789";
const UNKNOWN: &str = "sl_nobody-knows-this-token-012345";

fn entry(name: &str, role: &str, token: &str, extra: &str) -> String {
    format!(
        "[[admin.tokens]]\nname = \"{name}\"\nrole = \"{role}\"\nsha256 = \"{}\"\n{extra}",
        sha256_hex(token)
    )
}

/// The tokens above as `[admin]` config, with `extra` keys in `[admin]`.
fn admin_section(extra: &str) -> String {
    [
        format!("[admin]\n{extra}\n"),
        entry("vera", "viewer", VIEWER, ""),
        entry("rita", "reviewer", REVIEWER, ""),
        entry("audrey", "auditor", AUDITOR, ""),
        entry("ops", "admin", ADMIN, ""),
        entry(
            "old",
            "admin",
            EXPIRED,
            "expires = \"2020-01-01T00:00:00Z\"\n",
        ),
        entry("gone", "admin", REVOKED, "revoked = true\n"),
    ]
    .join("")
}

/// A proxy with an audit log (so that the records endpoints answer) and `admin`.
fn start(upstream: &Upstream, dir: &Path, server_extra: &str, admin: &str) -> Proxy {
    let config = format!(
        "{}\n[state]\ndir = \"{}\"\n[log]\nlevel = \"info,sidelight_proxy=debug\"\n\
         [audit]\npath = \"{}\"\n{admin}",
        config_for(&upstream.url(), server_extra, ""),
        dir.join("state").display(),
        dir.join("audit.db").display(),
    );
    Proxy::start_with_env(&config, &[("SIDELIGHT_AUDIT_KEY", AUDIT_KEY_HEX)])
}

async fn call(proxy: &Proxy, method: Method, path: &str, auth: Option<&str>, body: &str) -> Answer {
    let mut headers = vec![("content-type", "application/json")];
    if let Some(auth) = auth {
        headers.push(("authorization", auth));
    }
    let body = if body.is_empty() {
        empty()
    } else {
        full(body.to_owned())
    };
    send(&client(), method, &proxy.admin_url(path), &headers, body).await
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// An admin endpoint, the least role that may call it, and the status it answers then
/// (for endpoints whose success needs data, what they answer without it: the point is
/// that the request got past the door).
struct Endpoint {
    method: Method,
    path: &'static str,
    body: &'static str,
    role: &'static str,
    allowed: StatusCode,
}

fn endpoints() -> Vec<Endpoint> {
    let e = |method, path, body, role, allowed| Endpoint {
        method,
        path,
        body,
        role,
        allowed,
    };
    vec![
        e(Method::GET, "/metrics", "", "viewer", StatusCode::OK),
        e(
            Method::GET,
            "/api/v1/surrogates",
            "",
            "viewer",
            StatusCode::OK,
        ),
        e(Method::GET, "/api/v1/alerts", "", "viewer", StatusCode::OK),
        e(
            Method::GET,
            "/api/v1/schema/credit",
            "",
            "viewer",
            StatusCode::NOT_FOUND,
        ),
        e(
            Method::GET,
            "/api/v1/no-such-endpoint",
            "",
            "viewer",
            StatusCode::NOT_FOUND,
        ),
        e(
            Method::GET,
            "/api/v1/reviews",
            "",
            "reviewer",
            StatusCode::OK,
        ),
        e(
            Method::GET,
            "/api/v1/reviews/no-such-id",
            "",
            "reviewer",
            StatusCode::NOT_FOUND,
        ),
        e(
            Method::POST,
            "/api/v1/reviews/no-such-id",
            r#"{"decision": "confirm", "reason": "fine"}"#,
            "reviewer",
            StatusCode::NOT_FOUND,
        ),
        e(
            Method::GET,
            "/api/v1/review-flags",
            "",
            "reviewer",
            StatusCode::OK,
        ),
        e(
            Method::PUT,
            "/api/v1/review-flags",
            r#"{"groups": []}"#,
            "admin",
            StatusCode::OK,
        ),
        e(
            Method::GET,
            "/api/v1/records?limit=5",
            "",
            "auditor",
            StatusCode::OK,
        ),
        e(
            Method::GET,
            "/api/v1/records/no-such-id",
            "",
            "auditor",
            StatusCode::NOT_FOUND,
        ),
        e(
            Method::POST,
            "/api/v1/probe/no-such-id",
            "",
            "auditor",
            StatusCode::NOT_FOUND,
        ),
        // The workbench: aggregates for a viewer (a route that does not exist: 404),
        // exports and what-ifs for an auditor.
        e(
            Method::GET,
            "/api/v1/explanations/summary?route=credit",
            "",
            "viewer",
            StatusCode::NOT_FOUND,
        ),
        e(
            Method::GET,
            "/api/v1/explanations/export?route=credit",
            "",
            "auditor",
            StatusCode::NOT_FOUND,
        ),
        e(
            Method::POST,
            "/api/v1/whatif",
            r#"{"record": "no-such-id", "changes": {"a": 1}}"#,
            "auditor",
            StatusCode::NOT_FOUND,
        ),
        e(
            Method::POST,
            "/api/v1/erasure",
            r#"{"subject_id": "nobody"}"#,
            "admin",
            StatusCode::OK,
        ),
        e(
            Method::POST,
            "/api/v1/config/reload",
            "",
            "admin",
            StatusCode::OK,
        ),
    ]
}

const ROLES: [(&str, &str); 4] = [
    ("viewer", VIEWER),
    ("reviewer", REVIEWER),
    ("auditor", AUDITOR),
    ("admin", ADMIN),
];

fn rank(role: &str) -> usize {
    ROLES.iter().position(|(r, _)| *r == role).unwrap()
}

#[tokio::test]
async fn every_admin_endpoint_checks_the_token_and_the_role() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = start(
        &upstream,
        dir.path(),
        "",
        &admin_section("metrics_token_required = true"),
    );

    let refused: Vec<(String, Option<String>, &str)> = vec![
        ("no header".to_owned(), None, "unauthorized"),
        (
            "Bearer without a token".to_owned(),
            Some("Bearer".to_owned()),
            "unauthorized",
        ),
        (
            "a token without Bearer".to_owned(),
            Some(ADMIN.to_owned()),
            "unauthorized",
        ),
        (
            "Basic".to_owned(),
            Some("Basic b3BzOnNlY3JldA==".to_owned()),
            "unauthorized",
        ),
        (
            "an unknown token".to_owned(),
            Some(bearer(UNKNOWN)),
            "unauthorized",
        ),
        (
            "an expired token".to_owned(),
            Some(bearer(EXPIRED)),
            "token_expired",
        ),
        (
            "a revoked token".to_owned(),
            Some(bearer(REVOKED)),
            "token_revoked",
        ),
    ];
    for endpoint in endpoints() {
        let what = format!("{} {}", endpoint.method, endpoint.path);
        for (case, auth, code) in &refused {
            let answer = call(
                &proxy,
                endpoint.method.clone(),
                endpoint.path,
                auth.as_deref(),
                endpoint.body,
            )
            .await;
            assert_eq!(answer.status, 401, "{what} with {case}: {answer:?}");
            assert_eq!(answer.error_code(), *code, "{what} with {case}");
            let challenge = answer.headers["www-authenticate"].to_str().unwrap();
            assert!(challenge.starts_with("Bearer"), "{what}: {challenge}");
        }
        for (role, token) in ROLES {
            let answer = call(
                &proxy,
                endpoint.method.clone(),
                endpoint.path,
                Some(&bearer(token)),
                endpoint.body,
            )
            .await;
            if rank(role) >= rank(endpoint.role) {
                assert_eq!(
                    answer.status, endpoint.allowed,
                    "{what} as {role}: {:?}",
                    answer.body
                );
            } else {
                assert_eq!(answer.status, 403, "{what} as {role}: {answer:?}");
                assert_eq!(answer.error_code(), "forbidden");
                let message = answer.json()["error"]["message"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                assert!(
                    message.contains(&format!("`{}`", endpoint.role)),
                    "{what} as {role}: {message}"
                );
            }
        }
    }

    // Kubernetes' probes carry no token; a wrong one does not matter either.
    for path in ["/healthz", "/readyz"] {
        for auth in [None, Some(bearer(UNKNOWN))] {
            let answer = call(&proxy, Method::GET, path, auth.as_deref(), "").await;
            assert_eq!(answer.status, 200, "{path}: {answer:?}");
        }
    }
    // A wrong method is only told to those who may call the endpoint.
    let answer = call(
        &proxy,
        Method::GET,
        "/api/v1/erasure",
        Some(&bearer(VIEWER)),
        "",
    )
    .await;
    assert_eq!(answer.status, 403);
    let answer = call(
        &proxy,
        Method::GET,
        "/api/v1/erasure",
        Some(&bearer(ADMIN)),
        "",
    )
    .await;
    assert_eq!(answer.status, 405);
    assert_eq!(answer.headers["allow"], "POST");

    // Admin actions are audit records naming who acted.
    let page = call(
        &proxy,
        Method::GET,
        "/api/v1/records?route=_admin&limit=100",
        Some(&bearer(AUDITOR)),
        "",
    )
    .await;
    assert_eq!(page.status, 200, "{page:?}");
    let text = String::from_utf8_lossy(&page.body).into_owned();
    for actor in ["ops", "audrey"] {
        assert!(text.contains(actor), "no admin record by {actor}: {text}");
    }

    // Tokens never reach the log; the names of their holders do.
    let logs = proxy.log_text();
    for token in [VIEWER, REVIEWER, AUDITOR, ADMIN, EXPIRED, REVOKED, UNKNOWN] {
        assert!(!logs.contains(token), "a token is in the log:\n{logs}");
    }
    assert!(logs.contains("\"principal\":\"ops\""), "{logs}");
    assert!(logs.contains("token_revoked"), "{logs}");
}

#[tokio::test]
async fn without_tokens_the_api_is_closed_and_says_how_to_open_it() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = start(&upstream, dir.path(), "", "[admin]\n");
    for endpoint in endpoints().iter().filter(|e| e.path.starts_with("/api/")) {
        let answer = call(
            &proxy,
            endpoint.method.clone(),
            endpoint.path,
            Some(&bearer(ADMIN)),
            endpoint.body,
        )
        .await;
        assert_eq!(answer.status, 401, "{}", endpoint.path);
        assert_eq!(answer.error_code(), "no_tokens_configured");
        let message = answer.json()["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(message.contains("sidelight token new"), "{message}");
    }
    // The metrics stay open by default, and health and readiness always.
    for path in ["/metrics", "/healthz", "/readyz"] {
        assert_eq!(
            call(&proxy, Method::GET, path, None, "").await.status,
            200,
            "{path}"
        );
    }
    assert!(proxy.log_text().contains("no admin tokens configured"));
}

#[tokio::test]
async fn a_reload_applies_revocations_and_refuses_a_broken_file() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let tokens = |viewer_extra: &str| {
        format!(
            "[admin]\n{}{}",
            entry("ops", "admin", ADMIN, ""),
            entry("vera", "viewer", VIEWER, viewer_extra)
        )
    };
    let proxy = start(&upstream, dir.path(), "", &tokens(""));
    let original = std::fs::read_to_string(&proxy.config_path).unwrap();
    let surrogates = async |token: &str| {
        call(
            &proxy,
            Method::GET,
            "/api/v1/surrogates",
            Some(&bearer(token)),
            "",
        )
        .await
    };
    let reload = async || {
        call(
            &proxy,
            Method::POST,
            "/api/v1/config/reload",
            Some(&bearer(ADMIN)),
            "",
        )
        .await
    };
    assert_eq!(surrogates(VIEWER).await.status, 200);

    // Revoked in the file, refused after the reload.
    std::fs::write(
        &proxy.config_path,
        original.replace(&tokens(""), &tokens("revoked = true\n")),
    )
    .unwrap();
    let answer = reload().await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let report = answer.json();
    assert_eq!(report["reloaded"], true);
    assert_eq!(report["applied"], serde_json::json!(["admin.tokens"]));
    assert_eq!(report["restart_needed"], serde_json::json!([]));
    let refused = surrogates(VIEWER).await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.error_code(), "token_revoked");

    // A broken file changes nothing and says what is wrong, naming the key.
    std::fs::write(
        &proxy.config_path,
        original.replace(&sha256_hex(VIEWER), "not-a-digest"),
    )
    .unwrap();
    let answer = reload().await;
    assert_eq!(answer.status, 400, "{answer:?}");
    assert_eq!(answer.error_code(), "invalid_config");
    let message = answer.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("admin.tokens[1].sha256"), "{message}");
    std::fs::write(&proxy.config_path, "[server\nlisten = ").unwrap();
    let answer = reload().await;
    assert_eq!(answer.status, 400, "{answer:?}");
    assert_eq!(surrogates(VIEWER).await.error_code(), "token_revoked");
    assert_eq!(surrogates(ADMIN).await.status, 200);

    // Sections that cannot change live are named; the tokens still apply. Removing an
    // entry is a revocation too.
    let moved = original
        .replace(&entry("vera", "viewer", VIEWER, ""), "")
        .replace(&upstream.url(), "http://127.0.0.1:9");
    std::fs::write(&proxy.config_path, moved).unwrap();
    let report = reload().await.json();
    assert_eq!(
        report["restart_needed"],
        serde_json::json!(["upstream"]),
        "{report}"
    );
    assert_eq!(surrogates(VIEWER).await.error_code(), "unauthorized");
    assert_eq!(report["tokens"], 1);

    // SIGHUP does the same: a new token works once the signal is handled.
    const NEW: &str = "sl_added-by-sighup-0123456789abcdef";
    std::fs::write(
        &proxy.config_path,
        format!("{original}{}", entry("new", "viewer", NEW, "")),
    )
    .unwrap();
    proxy.signal(nix::sys::signal::Signal::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while surrogates(NEW).await.status != 200 {
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not reload: {}",
            proxy.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The new tokens take effect before the line is written: wait for it too.
    while !proxy.log_text().contains("SIGHUP: config reloaded") {
        assert!(
            Instant::now() < deadline,
            "no reload line: {}",
            proxy.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And the reloads are audit records of who did them.
    let page = call(
        &proxy,
        Method::GET,
        "/api/v1/records?route=_admin",
        Some(&bearer(ADMIN)),
        "",
    )
    .await;
    assert!(
        String::from_utf8_lossy(&page.body).contains("config.reload"),
        "{page:?}"
    );
}

// === TLS ===

struct Tls {
    cert_pem: String,
    cert_der: rustls_pki_types::CertificateDer<'static>,
}

/// A self-signed certificate for localhost, written as `cert.pem` and `key.pem` in `dir`.
fn self_signed(dir: &Path) -> Tls {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let cert_pem = certified.cert.pem();
    std::fs::write(dir.join("cert.pem"), &cert_pem).unwrap();
    std::fs::write(dir.join("key.pem"), certified.signing_key.serialize_pem()).unwrap();
    Tls {
        cert_pem,
        cert_der: certified.cert.der().clone(),
    }
}

fn tls_client(
    trusted: &rustls_pki_types::CertificateDer<'static>,
    alpn: &[&[u8]],
) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trusted.clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

type TlsStream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

async fn tls_connect(
    connector: &tokio_rustls::TlsConnector,
    addr: std::net::SocketAddr,
) -> std::io::Result<TlsStream> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await
}

/// One request over an established TLS connection, HTTP/2 if ALPN chose it.
async fn tls_request(stream: TlsStream, request: Request<Full<Bytes>>) -> (StatusCode, Bytes) {
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let io = TokioIo::new(stream);
    let response = if h2 {
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .unwrap();
        tokio::spawn(connection);
        sender.send_request(request).await.unwrap()
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(connection);
        sender.send_request(request).await.unwrap()
    };
    let status = response.status();
    (
        status,
        response.into_body().collect().await.unwrap().to_bytes(),
    )
}

#[tokio::test]
async fn both_listeners_speak_tls_with_the_configured_certificate() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let tls = self_signed(dir.path());
    let files = format!(
        "cert_file = \"{}\"\nkey_file = \"{}\"\n",
        dir.path().join("cert.pem").display(),
        dir.path().join("key.pem").display()
    );
    let proxy = start(
        &upstream,
        dir.path(),
        &format!("[server.tls]\n{files}"),
        &format!("{}[admin.tls]\n{files}", admin_section("")),
    );

    // Data port: HTTP/2 chosen by ALPN, forwarded, and the upstream told it was https.
    let connector = tls_client(&tls.cert_der, &[b"h2", b"http/1.1"]);
    let stream = tls_connect(&connector, proxy.data).await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let request = Request::builder()
        .uri(format!("https://localhost:{}/inspect", proxy.data.port()))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, body) = tls_request(stream, request).await;
    assert_eq!(status, 200, "{body:?}");
    let seen: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(seen["headers"]["x-forwarded-proto"], "https", "{seen}");

    // HTTP/1.1 on the data port too.
    let connector = tls_client(&tls.cert_der, &[b"http/1.1"]);
    let stream = tls_connect(&connector, proxy.data).await.unwrap();
    let request = Request::builder()
        .method(Method::POST)
        .uri("/echo")
        .header("host", "localhost")
        .body(Full::new(Bytes::from_static(b"over tls")))
        .unwrap();
    let (status, body) = tls_request(stream, request).await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"over tls"[..]));

    // Admin port: tokens as ever, over TLS.
    for (auth, expected) in [(None, 401), (Some(bearer(VIEWER)), 200)] {
        let stream = tls_connect(&connector, proxy.admin).await.unwrap();
        let mut request = Request::builder()
            .uri("/api/v1/surrogates")
            .header("host", "localhost");
        if let Some(auth) = &auth {
            request = request.header("authorization", auth);
        }
        let (status, body) =
            tls_request(stream, request.body(Full::new(Bytes::new())).unwrap()).await;
        assert_eq!(status, expected, "{body:?}");
    }

    // The command reaches an https:// admin API, trusting the certificate named by
    // SSL_CERT_FILE (and nothing else).
    let admin_url = format!("https://localhost:{}", proxy.admin.port());
    let erase = |cert: Option<&Path>| {
        let command = cli([
            "audit",
            "erase",
            "--admin",
            &admin_url,
            "--subject-id",
            "nobody",
        ])
        .env("SIDELIGHT_ADMIN_TOKEN", ADMIN)
        .env_remove("SSL_CERT_DIR")
        .env_remove("SSL_CERT_FILE");
        match cert {
            Some(cert) => command.env("SSL_CERT_FILE", cert),
            None => command,
        }
        .run_async()
    };
    let trusted = erase(Some(&dir.path().join("cert.pem"))).await;
    assert_eq!(trusted.code, Some(0), "{}", trusted.stderr);
    let untrusted = erase(None).await;
    let stderr = &untrusted.stderr;
    assert_ne!(untrusted.code, Some(0), "{stderr}");
    assert!(stderr.contains("SSL_CERT_FILE"), "{stderr}");

    // A client that does not trust the certificate gets no connection, and plain HTTP
    // gets no answer.
    let stranger = self_signed(tempfile::tempdir().unwrap().path());
    assert_ne!(stranger.cert_pem, tls.cert_pem);
    let untrusting = tls_client(&stranger.cert_der, &[b"http/1.1"]);
    assert!(tls_connect(&untrusting, proxy.admin).await.is_err());
    let plain = client()
        .request(
            Request::builder()
                .uri(proxy.admin_url("/healthz"))
                .body(empty())
                .unwrap(),
        )
        .await;
    assert!(plain.is_err(), "plain HTTP was answered on the TLS port");
    // The proxy keeps serving after both.
    let stream = tls_connect(&connector, proxy.admin).await.unwrap();
    let request = Request::builder()
        .uri("/healthz")
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(tls_request(stream, request).await.0, 200);
}

#[test]
fn an_unreadable_certificate_stops_start_up_naming_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let self_signed = self_signed(dir.path());
    drop(self_signed);
    let cases = [
        (
            format!(
                "[server.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
                dir.path().join("missing.pem").display(),
                dir.path().join("key.pem").display()
            ),
            "server.tls.cert_file",
        ),
        (
            // A "key" file that holds no key.
            format!(
                "[admin.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
                dir.path().join("cert.pem").display(),
                dir.path().join("cert.pem").display()
            ),
            "admin.tls.key_file",
        ),
    ];
    for (tls, key) in cases {
        let config = dir.path().join("sidelight.toml");
        std::fs::write(
            &config,
            format!("[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n{tls}"),
        )
        .unwrap();
        let output = cli(["serve", "--config"]).arg(&config).run();
        let stderr = &output.stderr;
        assert_eq!(output.code, Some(64), "{stderr}");
        assert!(stderr.contains(key), "{stderr}");
        let check = cli(["config", "check"]).arg(&config).run();
        assert_eq!(check.code, Some(64));
        assert!(check.stderr.contains(key));
    }
}

// === the sidelight token command ===

#[tokio::test]
async fn a_token_made_by_the_command_opens_the_doors_of_its_role() {
    let CliRun {
        code,
        stdout,
        stderr,
        ..
    } = cli([
        "token",
        "new",
        "--name",
        "ci",
        "--role",
        "auditor",
        "--expires",
        "2099-01-01T00:00:00Z",
    ])
    .run();
    assert_eq!(code, Some(0), "{stderr}");
    let token = stdout.lines().next().unwrap().to_owned();
    assert!(token.starts_with("sl_") && token.len() > 40, "{stdout}");
    let entry = stdout.lines().skip(1).collect::<Vec<_>>().join("\n");
    assert!(
        !entry.contains(&token),
        "the entry holds the token: {stdout}"
    );
    assert!(entry.contains(&sha256_hex(&token)), "{stdout}");
    assert!(
        entry.contains("role = \"auditor\"") && entry.contains("expires = \"2099"),
        "{stdout}"
    );

    // `token hash` agrees, with or without a trailing newline.
    let CliRun {
        code,
        stdout: hashed,
        ..
    } = cli(["token", "hash"]).stdin(format!("{token}\n")).run();
    assert_eq!(code, Some(0));
    assert_eq!(hashed.trim(), sha256_hex(&token));
    let CliRun { code, stderr, .. } = cli(["token", "hash"]).stdin("short").run();
    assert_eq!(code, Some(64), "{stderr}");
    let CliRun { code, .. } = cli(["token", "new", "--name", "x", "--role", "root"]).run();
    assert_eq!(code, Some(64));
    let CliRun { code, .. } = cli([
        "token",
        "new",
        "--name",
        "x",
        "--role",
        "admin",
        "--expires",
        "soon",
    ])
    .run();
    assert_eq!(code, Some(64));

    // The printed entry, as it is, lets the token in with its role.
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let admin = format!("{entry}\n{}", entry_for_admin());
    let proxy = start(&upstream, dir.path(), "", &admin);
    let records = call(
        &proxy,
        Method::GET,
        "/api/v1/records",
        Some(&bearer(&token)),
        "",
    )
    .await;
    assert_eq!(records.status, 200, "{records:?}");
    let erasure = call(
        &proxy,
        Method::POST,
        "/api/v1/erasure",
        Some(&bearer(&token)),
        r#"{"subject_id": "x"}"#,
    )
    .await;
    assert_eq!(erasure.status, 403);

    // The commands that call the admin API send the token from the environment.
    let admin_url = format!("http://{}", proxy.admin);
    let erase = [
        "audit",
        "erase",
        "--admin",
        admin_url.as_str(),
        "--subject-id",
        "nobody",
    ];
    let CliRun { code, stderr, .. } = cli(erase).run();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("SIDELIGHT_ADMIN_TOKEN"), "{stderr}");
    let CliRun {
        code,
        stdout,
        stderr,
        ..
    } = cli(erase).env("SIDELIGHT_ADMIN_TOKEN", ADMIN).run();
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let CliRun { code, stderr, .. } = cli([
        "explain",
        "--admin",
        admin_url.as_str(),
        "--probe",
        "nothing",
    ])
    .env("SIDELIGHT_ADMIN_TOKEN", &token)
    .run();
    // Past the door: the probe check knows no such request.
    assert_eq!(code, Some(1));
    assert!(stderr.contains("404"), "{stderr}");
}

/// An admin entry for [`ADMIN`].
fn entry_for_admin() -> String {
    entry("ops", "admin", ADMIN, "")
}
