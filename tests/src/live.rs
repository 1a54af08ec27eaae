//! Helpers shared by the live-explanation suites: configs with a state directory,
//! request bodies for the test model, and waiting for a surrogate.

use std::path::Path;
use std::time::{Duration, Instant};

use http::Method;
use serde_json::{Value, json};

use crate::model::{ModelServer, row};
use crate::{Answer, Sidecar, client, config_for, full, get, send};

/// A proxy config in front of `model`, keeping state in `state`, with `routes` appended.
pub fn config(model: &ModelServer, state: &Path, routes: &str) -> String {
    format!(
        "{}\n[state]\ndir = \"{}\"\n{routes}",
        config_for(&model.url(), "", ""),
        state.display()
    )
}

/// A KServe v1 body with the test model's rows `rows`, as objects.
pub fn kserve_body(rows: &[usize]) -> String {
    let instances: Vec<Value> = rows
        .iter()
        .map(|&i| {
            let (a, b, c, colour) = row(i);
            json!({"a": a, "b": b, "c": c, "colour": colour})
        })
        .collect();
    json!({ "instances": instances }).to_string()
}

/// A JSON `POST` of `body` to the proxy's data port, with extra `headers`.
pub async fn post(
    proxy: &impl Sidecar,
    path: &str,
    body: String,
    headers: &[(&str, &str)],
) -> Answer {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    send(&client(), Method::POST, &proxy.url(path), &all, full(body)).await
}

/// The `x-sidelight-status` of an answer, or "".
pub fn status(answer: &Answer) -> String {
    answer
        .headers
        .get("x-sidelight-status")
        .map(|v| v.to_str().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

/// Sends training traffic (`send_one(i)` for i = 0, 1, …) until `route` has a
/// surrogate in service; fails after a minute.
pub async fn warm_up(proxy: &impl Sidecar, route: &str, mut send_one: impl AsyncFnMut(usize)) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut i = 0;
    loop {
        for _ in 0..10 {
            send_one(i).await;
            i += 1;
        }
        let surrogates = get(&proxy.admin_url("/api/v1/surrogates")).await.json();
        let ready = surrogates["routes"].as_array().is_some_and(|routes| {
            routes
                .iter()
                .any(|r| r["route"] == route && !r["in_service"].is_null())
        });
        if ready {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no surrogate after {i} rows: {surrogates}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
