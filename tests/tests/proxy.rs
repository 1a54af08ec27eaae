//! Sidelight in front of a real upstream, through real sockets: in the test process
//! where only the traffic matters, as the real `sidelight serve` binary where the
//! process itself is under test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use http::Method;
use nix::sys::signal::Signal;
use sidelight_e2e::*;

fn proxy_for(upstream: &Upstream) -> InProcess {
    InProcess::start(&config_for(&upstream.url(), "", ""))
}

#[tokio::test]
async fn bodies_statuses_and_end_to_end_headers_are_identical_for_every_method() {
    let upstream = Upstream::start().await;
    let proxy = proxy_for(&upstream);
    let client = client();
    let payload = r#"{"instances": [[1, 2, 3]]}"#;
    for method in [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::HEAD,
    ] {
        let body = if matches!(method, Method::GET | Method::HEAD) {
            ""
        } else {
            payload
        };
        let headers = [("content-type", "application/json")];
        let direct = send(
            &client,
            method.clone(),
            &format!("{}/echo?x=1", upstream.url()),
            &headers,
            full(body),
        )
        .await;
        let proxied = send(
            &client,
            method.clone(),
            &proxy.url("/echo?x=1"),
            &headers,
            full(body),
        )
        .await;
        assert_eq!(proxied.status, direct.status, "{method}");
        assert_eq!(proxied.body, direct.body, "{method}");
        for name in [
            "x-echo-method",
            "x-model-version",
            "cache-control",
            "content-type",
            "content-length",
        ] {
            assert_eq!(
                proxied.headers.get(name),
                direct.headers.get(name),
                "{method} {name}"
            );
        }
        // Hop-by-hop headers describe the upstream connection and must not leak through.
        assert!(direct.headers.contains_key("x-upstream-hop"));
        assert!(!proxied.headers.contains_key("x-upstream-hop"), "{method}");
        assert!(!proxied.headers.contains_key("keep-alive"), "{method}");
        assert!(proxied.headers.contains_key("x-request-id"), "{method}");
    }
    for status in [201, 204, 404, 418, 500, 503] {
        let answer = send(
            &client,
            Method::GET,
            &proxy.url(&format!("/status/{status}")),
            &[],
            empty(),
        )
        .await;
        assert_eq!(answer.status.as_u16(), status);
    }
}

#[tokio::test]
async fn forwarding_headers_are_added_and_trace_context_passes_through() {
    let upstream = Upstream::start().await;
    let proxy = proxy_for(&upstream);
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let answer = send(
        &client(),
        Method::POST,
        &proxy.url("/inspect?q=a%20b"),
        &[
            ("traceparent", traceparent),
            ("tracestate", "vendor=1"),
            ("x-request-id", "req-42"),
            ("x-forwarded-for", "203.0.113.9"),
            ("connection", "x-client-hop"),
            ("x-client-hop", "1"),
        ],
        full("abc"),
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.headers["x-request-id"], "req-42");
    let seen = answer.json();
    let headers = &seen["headers"];
    assert_eq!(seen["uri"], "/inspect?q=a%20b");
    assert_eq!(seen["body_len"], 3);
    assert_eq!(headers["traceparent"], traceparent);
    assert_eq!(headers["tracestate"], "vendor=1");
    assert_eq!(headers["x-request-id"], "req-42");
    // The client is not a trusted proxy: its own X-Forwarded-For is replaced.
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(headers["x-forwarded-host"], proxy.data.to_string());
    assert_eq!(headers["host"], upstream.addr.to_string());
    assert!(headers.get("x-client-hop").is_none());

    // Without a client id, one is made and given to both sides.
    let answer = send(&client(), Method::GET, &proxy.url("/inspect"), &[], empty()).await;
    let made = answer.headers["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(made.len(), 36);
    assert_eq!(answer.json()["headers"]["x-request-id"], made.as_str());
}

#[tokio::test]
async fn large_bodies_stream_through_with_bounded_memory() {
    const SIZE: u64 = 512 * 1024 * 1024;
    let upstream = Upstream::start().await;
    // A child process: its peak RSS is the proxy's alone.
    let proxy = Proxy::start(&config_for(
        &upstream.url(),
        "max_body_bytes = 1073741824",
        "",
    ));
    let client = client();
    let baseline = proxy.peak_rss_kib();

    let upload = send(
        &client,
        Method::POST,
        &proxy.url("/count"),
        &[],
        pattern_body(SIZE, 256 * 1024),
    )
    .await;
    assert_eq!(upload.status, 200);
    let mut expected = 0;
    let mut offset = 0u64;
    while offset < SIZE {
        let len = (256 * 1024).min(SIZE - offset);
        let chunk: Vec<u8> = (0..len).map(|i| pattern_byte(offset + i)).collect();
        expected = checksum_update(expected, offset, &chunk);
        offset += len;
    }
    assert_eq!(upload.json()["len"], SIZE);
    assert_eq!(upload.json()["checksum"], expected);

    // Downloads stream too: read the response frame by frame without keeping it.
    let request = http::Request::get(proxy.url(&format!("/big?bytes={SIZE}")))
        .body(empty())
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut received = 0u64;
    let mut intact = true;
    while let Some(frame) = http_body_util::BodyExt::frame(&mut body).await {
        if let Some(data) = frame.unwrap().data_ref() {
            intact &= data
                .iter()
                .enumerate()
                .all(|(i, b)| *b == pattern_byte(received + i as u64));
            received += data.len() as u64;
        }
    }
    assert_eq!(received, SIZE);
    assert!(
        intact,
        "the downloaded bytes differ from what the upstream sent"
    );

    let growth_mib = (proxy.peak_rss_kib().saturating_sub(baseline)) / 1024;
    assert!(
        growth_mib < 64,
        "proxy memory grew by {growth_mib} MiB while streaming 2 x {} MiB",
        SIZE >> 20
    );
}

#[tokio::test]
async fn failures_are_json_errors_with_the_right_status() {
    let upstream = Upstream::start().await;
    // A child process: the test reads what the process logged on stderr.
    let proxy = Proxy::start(&config_for(
        &upstream.url(),
        "max_body_bytes = 1000",
        "request_timeout = \"300ms\"",
    ));
    let client = client();

    let slow = send(
        &client,
        Method::GET,
        &proxy.url("/slow?ms=3000"),
        &[],
        empty(),
    )
    .await;
    assert_eq!(
        (slow.status.as_u16(), slow.error_code().as_str()),
        (504, "upstream_timeout")
    );

    let reset = send(&client, Method::GET, &proxy.url("/reset"), &[], empty()).await;
    assert_eq!(
        (reset.status.as_u16(), reset.error_code().as_str()),
        (502, "upstream_reset")
    );

    let declared = send(
        &client,
        Method::POST,
        &proxy.url("/count"),
        &[],
        full(vec![b'x'; 1001]),
    )
    .await;
    assert_eq!(
        (declared.status.as_u16(), declared.error_code().as_str()),
        (413, "body_too_large")
    );
    // A chunked body has no declared length; it is cut when it passes the limit. The
    // proxy answers and closes while the client may still be sending, so a client can
    // see its own write fail before it reads the answer: retry that, never the answer.
    let mut streamed = None;
    for _ in 0..5 {
        let request = http::Request::post(proxy.url("/count"))
            .body(pattern_body(5000, 100))
            .unwrap();
        if let Ok(response) = client.request(request).await {
            let status = response.status();
            let body = http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap()
                .to_bytes();
            streamed = Some((status, body));
            break;
        }
    }
    let (status, body) = streamed.expect("no answer to the over-limit chunked upload");
    let code: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (status.as_u16(), code["error"]["code"].as_str().unwrap()),
        (413, "body_too_large")
    );
    let within = send(
        &client,
        Method::POST,
        &proxy.url("/count"),
        &[],
        pattern_body(1000, 100),
    )
    .await;
    assert_eq!(within.status, 200);

    // A request hyper can parse but a reverse proxy cannot forward.
    let raw = raw_exchange(
        proxy.data,
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    )
    .await;
    assert!(raw.starts_with("HTTP/1.1 400"), "{raw}");
    assert!(raw.contains("\"malformed_request\""), "{raw}");
    // Bytes that are not HTTP at all are refused by the HTTP layer with 400.
    let raw = raw_exchange(proxy.data, b"GET /\x01 HTTP/1.1\r\n\r\n").await;
    assert!(raw.starts_with("HTTP/1.1 400"), "{raw}");

    // Every error is counted by code.
    let metrics = get(&proxy.admin_url("/metrics")).await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains("sidelight_proxy_errors_total{route=\"other\",code=\"upstream_timeout\"} 1"),
        "{text}"
    );
    let too_large: u64 = text
        .lines()
        .find(|l| l.contains("code=\"body_too_large\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    // One per refused upload, and one more for each retried chunked upload.
    assert!(too_large >= 2, "{text}");

    // Nothing on the request path logged a body.
    assert!(!proxy.log_text().contains("xxxxxxxx"));
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_502_and_makes_the_proxy_unready() {
    // Bind and release a port, so that nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let proxy = InProcess::start(&config_for(&format!("http://{closed}"), "", ""));
    let answer = get(&proxy.url("/anything")).await;
    assert_eq!(
        (answer.status.as_u16(), answer.error_code().as_str()),
        (502, "upstream_unreachable")
    );
    let ready = get(&proxy.admin_url("/readyz")).await;
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json()["checks"]["upstream"]["ok"], false);
    assert_eq!(get(&proxy.admin_url("/healthz")).await.status, 200);
}

#[tokio::test]
async fn an_upstream_that_never_completes_the_handshake_is_a_504() {
    // A listener whose accept backlog is full drops further SYNs, so a connection to it
    // hangs until the connect timeout: a black hole on loopback.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(stream)) = tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            fillers.push(stream);
        }
    }
    let proxy = InProcess::start(&config_for(
        &format!("http://{addr}"),
        "",
        "connect_timeout = \"300ms\"",
    ));
    let answer = get(&proxy.url("/anything")).await;
    assert_eq!(
        (answer.status.as_u16(), answer.error_code().as_str()),
        (504, "upstream_connect_timeout"),
        "{:?}",
        answer.body
    );
    drop(listener);
}

#[tokio::test]
async fn upstream_connections_are_reused() {
    let upstream = Upstream::start().await;
    let proxy = proxy_for(&upstream);
    let client = client();
    for _ in 0..25 {
        let answer = send(
            &client,
            Method::POST,
            &proxy.url("/echo"),
            &[],
            full("ping"),
        )
        .await;
        assert_eq!(answer.status, 200);
    }
    assert_eq!(upstream.requests(), 25);
    assert_eq!(
        upstream.connections(),
        1,
        "each request opened its own upstream connection"
    );
}

#[tokio::test]
async fn http2_clients_and_h2c_upstreams_are_served() {
    let upstream = Upstream::start().await;
    let proxy = InProcess::start(&config_for(&upstream.url(), "", "protocol = \"h2c\""));
    let client = h2c_client();
    let mut answers = Vec::new();
    for i in 0..10 {
        let client = client.clone();
        let url = proxy.url("/inspect");
        answers.push(tokio::spawn(async move {
            send(
                &client,
                Method::POST,
                &url,
                &[],
                full(format!("request {i}")),
            )
            .await
        }));
    }
    for answer in answers {
        let answer = answer.await.unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.json()["version"], "HTTP/2.0");
    }
    // Multiplexed: one upstream connection carries every request.
    assert_eq!(upstream.connections(), 1);
}

#[tokio::test]
async fn admin_endpoints_report_health_readiness_and_metrics() {
    let upstream = Upstream::start().await;
    let config = format!(
        "{}\n[[routes]]\nname = \"credit\"\npath_prefix = \"/echo\"\ninspect_limit_bytes = 16\n",
        config_for(&upstream.url(), "", "")
    );
    let proxy = InProcess::start(&config);
    let client = client();
    let json = [("content-type", "application/json")];
    send(
        &client,
        Method::POST,
        &proxy.url("/echo"),
        &json,
        full(r#"{"a": 1}"#),
    )
    .await;
    send(
        &client,
        Method::POST,
        &proxy.url("/echo"),
        &json,
        full(r#"{"a": 1, "b": 2, "c": 3}"#),
    )
    .await;
    send(
        &client,
        Method::GET,
        &proxy.url("/status/404"),
        &[],
        empty(),
    )
    .await;

    assert_eq!(get(&proxy.admin_url("/healthz")).await.status, 200);
    let ready = get(&proxy.admin_url("/readyz")).await;
    assert_eq!(ready.status, 200, "{:?}", ready.json());
    let metrics = get(&proxy.admin_url("/metrics")).await;
    let text = String::from_utf8_lossy(&metrics.body);
    for expected in [
        "sidelight_requests_total{route=\"credit\",method=\"POST\",status=\"200\"} 2",
        "sidelight_requests_total{route=\"other\",method=\"GET\",status=\"404\"} 1",
        "sidelight_inspected_requests_total{route=\"credit\",outcome=\"complete\"} 1",
        "sidelight_inspected_requests_total{route=\"credit\",outcome=\"over_limit\"} 1",
        "sidelight_upstream_duration_seconds_count{route=\"credit\"} 2",
        "sidelight_body_bytes_total{route=\"credit\",direction=\"request\"} 32",
        "sidelight_in_flight_requests 0",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
    assert_eq!(get(&proxy.admin_url("/nope")).await.status, 404);
}

#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish_and_refuses_new_connections() {
    let upstream = Upstream::start().await;
    // A child process: the test sends it SIGTERM and reads its exit status.
    let mut proxy = Proxy::start(&config_for(&upstream.url(), "shutdown_grace = \"10s\"", ""));
    let url = proxy.url("/slow?ms=1500");
    let in_flight = tokio::spawn(async move { get(&url).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.signal(Signal::SIGTERM);

    // New connections are refused while the slow request is still running.
    let mut refused = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if tokio::net::TcpStream::connect(proxy.data).await.is_err() {
            refused = true;
            break;
        }
    }
    assert!(
        refused,
        "the data port still accepts connections after SIGTERM"
    );
    let answer = in_flight.await.unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(&answer.body[..], b"slow done");
    let status = proxy
        .wait_exit(Duration::from_secs(10))
        .expect("sidelight did not exit");
    assert!(status.success(), "exit status {status:?}");
}

#[tokio::test]
async fn a_request_past_the_grace_period_is_cut_and_the_process_still_exits_cleanly() {
    let upstream = Upstream::start().await;
    // A child process: the test sends it SIGINT and reads its exit status.
    let mut proxy = Proxy::start(&config_for(
        &upstream.url(),
        "shutdown_grace = \"200ms\"",
        "",
    ));
    let url = proxy.url("/slow?ms=5000");
    let in_flight = tokio::spawn(async move {
        let request = http::Request::get(url).body(empty()).unwrap();
        client().request(request).await.is_err()
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.signal(Signal::SIGINT);
    let status = proxy
        .wait_exit(Duration::from_secs(4))
        .expect("sidelight did not exit in time");
    assert!(status.success(), "exit status {status:?}");
    assert!(
        in_flight.await.unwrap(),
        "the cut request should fail on the client side"
    );
}

async fn raw_exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

/// Sends a request whose body never finishes on its own connection, and returns what
/// came back (all of it, until the proxy closed the connection or 10 s passed).
async fn trickle(addr: std::net::SocketAddr, declared: usize, sent: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/octet-stream\r\n\
         content-length: {declared}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(sent).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_body_that_trickles_in_is_refused_with_408_and_its_connection_closed() {
    let upstream = Upstream::start().await;
    let proxy = InProcess::start(&config_for(
        &upstream.url(),
        "body_timeout = \"1s\"\nbody_min_rate = 1000",
        "",
    ));
    let started = std::time::Instant::now();
    // 10 bytes of 100,000 earn 10 ms beyond the second of grace.
    let answer = trickle(proxy.data, 100_000, b"0123456789").await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"body_timeout\""), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the connection stayed open"
    );

    // A body sent at a fair rate is not cut, however long it takes past the grace.
    let client = client();
    let slow = futures_util::stream::unfold(0u32, |i| async move {
        if i == 6 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let frame = http_body::Frame::data(bytes::Bytes::from(vec![b'x'; 2000]));
        Some((
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(frame),
            i + 1,
        ))
    });
    let answer = send(
        &client,
        Method::POST,
        &proxy.url("/echo"),
        &[("content-type", "application/octet-stream")],
        http_body_util::BodyExt::boxed(http_body_util::StreamBody::new(slow)),
    )
    .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.body.len(), 12_000);
}

#[tokio::test]
async fn past_max_connections_a_new_connection_waits_until_one_closes() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = Upstream::start().await;
    let proxy = InProcess::start(&config_for(
        &upstream.url(),
        "max_connections = 1\nworkers = 1",
        "",
    ));
    let request = b"GET /echo HTTP/1.1\r\nhost: x\r\n\r\n";
    let mut first = tokio::net::TcpStream::connect(proxy.data).await.unwrap();
    first.write_all(request).await.unwrap();
    let mut buf = [0u8; 1024];
    let n = first.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));

    // The second connection is made by the kernel but not served while the first is open.
    let mut second = tokio::net::TcpStream::connect(proxy.data).await.unwrap();
    second.write_all(request).await.unwrap();
    let waited = tokio::time::timeout(Duration::from_millis(700), second.read(&mut buf)).await;
    assert!(waited.is_err(), "served past the cap");

    drop(first);
    let n = tokio::time::timeout(Duration::from_secs(5), second.read(&mut buf))
        .await
        .expect("not served once the first connection closed")
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
    let metrics = metrics_text(&proxy).await;
    assert!(
        metrics.contains("sidelight_limit_hits_total{limit=\"max_connections\"}"),
        "{metrics}"
    );
}
