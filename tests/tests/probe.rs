//! The probe check end to end: the real binary in front of the test model
//! `3a + 2bc + [colour = red]`, `sidelight explain --probe` and the admin endpoint.
//!
//! The model's true (interventional) attribution of the additive feature `a` against any
//! background is `3 (a − mean of the background's a)`; the probe enumerates every
//! coalition of the four features, so KernelSHAP must find exactly that.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use http::Method;
use serde_json::{Value, json};
use sidelight_e2e::live::{config, kserve_body, post, status, warm_up};
use sidelight_e2e::model::{ModelServer, row, score};
use sidelight_e2e::*;

fn route(name: &str, prefix: &str, protocol: &str, extra: &str) -> String {
    format!(
        "[[routes]]\nname = \"{name}\"\npath_prefix = \"{prefix}\"\n\
         [routes.explain]\nprotocol = \"{protocol}\"\noutput = \"score\"\n{extra}\n\
         [routes.explain.surrogate]\nwarm_up_rows = 60\nretrain_every_rows = 100000\n\
         min_r2 = 0.5\ntrees = 60\ndepth = 4\ncpu_share = 1.0\n"
    )
}

fn pointer_body(i: usize) -> String {
    let (a, b, c, colour) = row(i);
    json!({"applicant": {"a": a, "b": b, "c": c, "colour": colour}}).to_string()
}

async fn admin_post(proxy: &InProcess, path: &str) -> Answer {
    send(
        &client(),
        Method::POST,
        &proxy.admin_url(path),
        &[],
        empty(),
    )
    .await
}

async fn rows_seen(proxy: &InProcess, route: &str) -> u64 {
    let surrogates = get(&proxy.admin_url("/api/v1/surrogates")).await.json();
    surrogates["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == route)
        .and_then(|r| r["rows_seen"].as_u64())
        .unwrap()
}

/// Runs `sidelight explain --probe …` without blocking the runtime the model server
/// answers on.
async fn explain_cli(proxy: &InProcess, args: &[&str]) -> CliRun {
    let admin = proxy.admin_url("");
    cli(["explain", "--admin", admin.as_str()])
        .args(args)
        .env(
            "SIDELIGHT_ADMIN_TOKEN",
            proxy.admin_token.expect("a proxy with the test token"),
        )
        .run_async()
        .await
}

fn contribution(attributions: &Value, feature: &str) -> f64 {
    attributions
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["feature"] == feature)
        .and_then(|a| a["contribution"].as_f64())
        .unwrap()
}

/// The checks every report must pass for the row `i` of the test model.
fn check_report(report: &Value, i: usize, max_calls: u64) {
    let (a, b, c, colour) = row(i);
    let calls = report["calls"].as_u64().unwrap();
    assert!(calls >= 1 && calls <= max_calls, "{report}");
    assert_eq!(report["max_calls"], max_calls);
    assert_eq!(report["coalitions"], 14, "{report}");
    assert_eq!(report["exact"], true);
    let kernel = &report["kernel"];
    // The model's own answer for the row, and efficiency of the attributions.
    let prediction = kernel["prediction"].as_f64().unwrap();
    assert!(
        (prediction - score(a, b, c, colour)).abs() < 1e-9,
        "{report}"
    );
    let sum: f64 = kernel["attributions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["contribution"].as_f64().unwrap())
        .sum();
    assert!((kernel["base_value"].as_f64().unwrap() + sum - prediction).abs() < 1e-9);
    // The additive feature: exactly 3 (a − mean of the background's a).
    let mean_a = report["background"]["numeric_means"]["a"].as_f64().unwrap();
    let phi_a = contribution(&kernel["attributions"], "a");
    assert!(
        (phi_a - 3.0 * (a - mean_a)).abs() < 1e-6,
        "φ_a = {phi_a}, expected {}: {report}",
        3.0 * (a - mean_a)
    );
    assert!(report["rank_correlation"].is_number(), "{report}");
    assert!(report["largest_difference"]["feature"].is_string());
    assert!(["trustworthy", "doubtful"].contains(&report["verdict"].as_str().unwrap()));
    assert_eq!(
        report["surrogate"]["attributions"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
}

#[tokio::test]
async fn probe_of_a_kserve_request_finds_the_true_attributions_without_training_on_its_calls() {
    let model = ModelServer::start().await;
    let state = tempfile::tempdir().unwrap();
    // The tests' client is trusted, so that its own x-sidelight-probe is honoured.
    let proxy = InProcess::start(&format!(
        "{}{TRUSTED_LOOPBACK}",
        config(
            &model,
            state.path(),
            &route("m", "/v1/models/m", "kserve_v1", ""),
        )
    ));
    warm_up(&proxy, "m", async |i| {
        post(&proxy, "/v1/models/m:predict", kserve_body(&[i]), &[]).await;
    })
    .await;
    let explained = post(
        &proxy,
        "/v1/models/m:predict",
        kserve_body(&[7, 8]),
        &[
            ("x-request-id", "probe-me"),
            ("x-sidelight-audience", "customer"),
        ],
    )
    .await;
    assert!(
        status(&explained).starts_with("explained"),
        "{}",
        status(&explained)
    );
    let seen = rows_seen(&proxy, "m").await;

    // The CLI, as JSON: row 1 of the batch.
    let output = explain_cli(
        &proxy,
        &[
            "--probe",
            "probe-me",
            "--row",
            "1",
            "--max-calls",
            "50",
            "--json",
        ],
    )
    .await;
    assert!(output.success(), "{}", output.stderr);
    let report: Value = serde_json::from_str(&output.stdout).unwrap();
    assert_eq!(report["request_id"], "probe-me");
    assert_eq!(report["row"], 1);
    check_report(&report, 8, 50);
    let mut calls = report["calls"].as_u64().unwrap();

    // The CLI's table, for row 0 (a customer request: the probe still compares every
    // feature, not only those the customer saw).
    let output = explain_cli(&proxy, &["--probe", "probe-me"]).await;
    assert!(output.success());
    let text = output.stdout;
    assert!(
        text.starts_with("Probe check of request probe-me (row 0, route m): "),
        "{text}"
    );
    for needle in [
        "feature",
        "kernel",
        "surrogate",
        "difference",
        "Rank correlation (Spearman)",
        "colour",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }

    // The admin endpoint directly.
    let answer = admin_post(
        &proxy,
        "/api/v1/probe/probe-me?row=0&max_calls=200&background=10",
    )
    .await;
    assert_eq!(answer.status, 200);
    let report = answer.json();
    check_report(&report, 7, 200);
    assert_eq!(report["background"]["rows"], 10);
    calls += report["calls"].as_u64().unwrap();

    // Every probe call reached the model marked; none entered the training window.
    assert!(model.probe_calls() as u64 >= calls);
    assert_eq!(rows_seen(&proxy, "m").await, seen);

    // A trusted client's own x-sidelight-probe is honoured (no training) and never
    // forwarded.
    let before = model.probe_calls();
    let marked = post(
        &proxy,
        "/v1/models/m:predict",
        kserve_body(&[9]),
        &[("x-sidelight-probe", "1"), ("x-request-id", "marked")],
    )
    .await;
    assert!(status(&marked).starts_with("explained"));
    assert_eq!(model.probe_calls(), before);
    assert_eq!(rows_seen(&proxy, "m").await, seen);
    // …and such a request is not kept for a probe.
    assert_eq!(admin_post(&proxy, "/api/v1/probe/marked").await.status, 404);
    post(&proxy, "/v1/models/m:predict", kserve_body(&[9]), &[]).await;
    assert_eq!(rows_seen(&proxy, "m").await, seen + 1);

    // Refusals.
    let answer = admin_post(&proxy, "/api/v1/probe/probe-me?max_calls=2").await;
    assert_eq!(
        (answer.status.as_u16(), answer.error_code().as_str()),
        (400, "budget_too_small")
    );
    let answer = admin_post(&proxy, "/api/v1/probe/probe-me?row=5").await;
    assert_eq!(
        (answer.status.as_u16(), answer.error_code().as_str()),
        (400, "no_such_row")
    );
    let answer = get(&proxy.admin_url("/api/v1/probe/probe-me")).await;
    assert_eq!(answer.status, 405);
}

#[tokio::test]
async fn probe_of_a_pointer_request_sends_one_row_per_call_within_the_budget() {
    let model = ModelServer::start().await;
    let state = tempfile::tempdir().unwrap();
    let proxy = InProcess::start(&config(
        &model,
        state.path(),
        &route(
            "pointer",
            "/pointer",
            "pointer",
            "rows_pointer = \"/applicant\"\noutputs_pointer = \"/result/score\"",
        ),
    ));
    warm_up(&proxy, "pointer", async |i| {
        post(&proxy, "/pointer", pointer_body(i), &[]).await;
    })
    .await;
    let explained = post(
        &proxy,
        "/pointer",
        pointer_body(11),
        &[("x-request-id", "p-11")],
    )
    .await;
    assert!(status(&explained).starts_with("explained"));
    let seen = rows_seen(&proxy, "pointer").await;
    let before = model.probe_calls();

    let answer = admin_post(&proxy, "/api/v1/probe/p-11?max_calls=100").await;
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let report = answer.json();
    check_report(&report, 11, 100);
    // One row per call: the background was shrunk so that every coalition fits.
    let background = report["background"]["rows"].as_u64().unwrap();
    assert!(background < 20);
    assert_eq!(
        report["calls"].as_u64().unwrap(),
        background + 1 + 14 * background
    );
    assert_eq!(
        (model.probe_calls() - before) as u64,
        report["calls"].as_u64().unwrap()
    );
    assert_eq!(rows_seen(&proxy, "pointer").await, seen);
}

#[tokio::test]
async fn probe_of_an_unknown_request_is_a_404_and_a_clear_cli_failure() {
    let model = ModelServer::start().await;
    let state = tempfile::tempdir().unwrap();
    let proxy = InProcess::start(&config(
        &model,
        state.path(),
        &route("m", "/v1/models/m", "kserve_v1", ""),
    ));
    let answer = admin_post(&proxy, "/api/v1/probe/nobody").await;
    assert_eq!(
        (answer.status.as_u16(), answer.error_code().as_str()),
        (404, "request_not_found")
    );
    let output = explain_cli(&proxy, &["--probe", "nobody"]).await;
    assert_eq!(output.code, Some(1));
    let stderr = &output.stderr;
    assert!(
        stderr.contains("request_not_found") && stderr.contains("no recent explained request"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
    assert_eq!(model.probe_calls(), 0);
}
