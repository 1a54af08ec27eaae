//! The model API and the traffic generator over a real socket.

// The helpers below are test code too; clippy's test exemption only covers #[test] bodies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use sidelight_demo_model::data::{FEATURE_NAMES, applications};
use sidelight_demo_model::model::score;
use sidelight_demo_model::server::{MAX_BODY_BYTES, serve};
use sidelight_demo_model::traffic::{TrafficConfig, TrafficStats, replay};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, async {
            let _ = stopped.await;
        }));
        Server {
            addr,
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: impl Into<Bytes>,
    ) -> (StatusCode, Value) {
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let request = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr))
            .header("content-type", "application/json")
            .body(Full::new(body.into()))
            .unwrap();
        let response = client.request(request).await.unwrap();
        let status = response.status();
        assert_eq!(
            response.headers()["content-type"],
            "application/json",
            "{path}"
        );
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    async fn predict(&self, body: &Value) -> (StatusCode, Value) {
        self.call(Method::POST, "/v1/models/credit:predict", body.to_string())
            .await
    }
}

fn expected(app: &sidelight_demo_model::data::Application) -> f64 {
    (score(app) * 1e6).round() / 1e6
}

#[tokio::test]
async fn predictions_match_the_model_for_objects_and_arrays_in_order() {
    let server = Server::start().await;
    let rows = applications().unwrap();
    let batch: Vec<_> = rows.iter().take(25).map(|r| &r.application).collect();

    let objects: Vec<Value> = batch
        .iter()
        .map(|a| serde_json::to_value(a).unwrap())
        .collect();
    let arrays: Vec<Value> = objects
        .iter()
        .map(|o| Value::Array(FEATURE_NAMES.iter().map(|f| o[*f].clone()).collect()))
        .collect();
    let want: Vec<f64> = batch.iter().map(|a| expected(a)).collect();
    assert!(
        want.windows(2).any(|w| w[0] != w[1]),
        "order would be untested"
    );

    for instances in [objects.clone(), arrays.clone()] {
        let (status, body) = server.predict(&json!({ "instances": instances })).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let got: Vec<f64> = body["predictions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_f64().unwrap())
            .collect();
        assert_eq!(got, want);
    }

    // Mixed forms in one batch, reversed, still come back in request order.
    let mixed: Vec<Value> = objects
        .iter()
        .zip(&arrays)
        .enumerate()
        .map(|(i, (o, a))| if i % 2 == 0 { o.clone() } else { a.clone() })
        .rev()
        .collect();
    let (status, body) = server.predict(&json!({ "instances": mixed })).await;
    assert_eq!(status, StatusCode::OK);
    let reversed: Vec<f64> = want.iter().rev().copied().collect();
    assert_eq!(body["predictions"], json!(reversed));

    server.stop().await;
}

#[tokio::test]
async fn bad_requests_name_the_instance_and_field() {
    let server = Server::start().await;
    let good = serde_json::to_value(&applications().unwrap()[0].application).unwrap();
    let mut bad = good.clone();
    bad["age_years"] = json!("old");

    let (status, body) = server
        .predict(&json!({"instances": [good, good, bad]}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = body["error"].as_str().unwrap();
    assert!(message.contains("instance 2"), "{message}");
    assert!(message.contains("age_years"), "{message}");

    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("savings");
    let (status, body) = server.predict(&json!({"instances": [missing]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"].as_str().unwrap().contains("savings"),
        "{body}"
    );

    let (status, body) = server
        .call(Method::POST, "/v1/models/credit:predict", "{not json")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = server.predict(&json!({"rows": []})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"].as_str().unwrap().contains("instances"));

    server.stop().await;
}

#[tokio::test]
async fn metadata_routes_and_http_errors() {
    let server = Server::start().await;

    let (status, body) = server.call(Method::GET, "/v1/models/credit", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"name": "credit", "ready": true}));
    let (status, body) = server.call(Method::GET, "/v1/models", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"models": ["credit"]}));
    let (status, _) = server.call(Method::GET, "/healthz", "").await;
    assert_eq!(status, StatusCode::OK);

    let (status, body) = server.call(Method::GET, "/nope", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].is_string());
    let (status, body) = server
        .call(Method::GET, "/v1/models/credit:predict", "")
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(body["error"].is_string());
    let (status, _) = server.call(Method::DELETE, "/v1/models", "").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);

    let (status, body) = server
        .call(
            Method::POST,
            "/v1/models/credit:predict",
            vec![b' '; MAX_BODY_BYTES + 1],
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(body["error"].is_string());

    server.stop().await;
}

#[tokio::test]
async fn replay_against_the_real_server() {
    let server = Server::start().await;
    let stats = Arc::new(TrafficStats::default());
    let config = TrafficConfig {
        base_url: format!("http://{}", server.addr),
        rate_per_sec: 200.0,
        with_shop: false,
        limit: Some(20),
    };
    replay(config, Arc::clone(&stats), std::future::pending())
        .await
        .unwrap();
    let done = stats.snapshot();
    assert_eq!((done.sent, done.ok, done.failed), (20, 20, 0));
    server.stop().await;
}

#[tokio::test]
async fn replay_stops_on_shutdown() {
    let server = Server::start().await;
    let stats = Arc::new(TrafficStats::default());
    let config = TrafficConfig {
        base_url: format!("http://{}/", server.addr),
        rate_per_sec: 50.0,
        limit: None,
        with_shop: false,
    };
    let shutdown = tokio::time::sleep(std::time::Duration::from_millis(300));
    replay(config, Arc::clone(&stats), shutdown).await.unwrap();
    let done = stats.snapshot();
    assert!(done.sent >= 2, "{done:?}");
    assert_eq!(done.sent, done.ok + done.failed);
    server.stop().await;
}

#[tokio::test]
async fn chunked_body_over_the_limit_is_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let server = Server::start().await;
    let stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    // Without a Content-Length the limit can only be enforced while reading.
    let writer = tokio::spawn(async move {
        let head = "POST /v1/models/credit:predict HTTP/1.1\r\nhost: x\r\n\
                    transfer-encoding: chunked\r\n\r\n";
        write.write_all(head.as_bytes()).await?;
        let chunk = vec![b' '; 1024 * 1024];
        for _ in 0..9 {
            write
                .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await?;
            write.write_all(&chunk).await?;
            write.write_all(b"\r\n").await?;
        }
        write.write_all(b"0\r\n\r\n").await
    });
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    while !response.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = read.read(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed without a response");
        response.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    drop(read);
    let _ = writer.await;
    server.stop().await;
}
