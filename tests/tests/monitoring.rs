//! Fairness and drift monitoring end to end: the proxy watches explained predictions,
//! reports selection rates, disparate impact and drift at `GET /api/v1/monitoring` and
//! in /metrics, and flags a group that fails the four-fifths rule for review.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sidelight_e2e::live::{config, kserve_body, post, warm_up};
use sidelight_e2e::model::{ModelServer, row};
use sidelight_e2e::*;

const KEY_HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const THRESHOLD: f64 = 3.5;
const WINDOW: usize = 300;

/// The test model gives red rows +1: with the decision at 3.5, red is approved far more
/// often than blue.
fn monitored(model: &ModelServer, state: &Path) -> String {
    let routes = format!(
        "[audit]\npath = \"{}\"\n\
         [[routes]]\nname = \"m\"\npath_prefix = \"/v1/models/m\"\n\
         [routes.explain]\nprotocol = \"kserve_v1\"\noutput = \"score\"\n\
         [[routes.explain.features]]\nname = \"a\"\nkind = \"numeric\"\n\
         [[routes.explain.features]]\nname = \"b\"\nkind = \"numeric\"\n\
         [[routes.explain.features]]\nname = \"c\"\nkind = \"numeric\"\n\
         [[routes.explain.features]]\nname = \"colour\"\nkind = \"categorical\"\n\
         protected = true\n\
         [routes.explain.decision]\nthreshold = {THRESHOLD}\n\
         [routes.explain.surrogate]\nwarm_up_rows = 60\nretrain_every_rows = 100000\n\
         retrain_interval = \"1h\"\nmin_r2 = 0.0\n\
         [routes.review]\nflagged_groups = true\n\
         [routes.monitor]\nwindow_rows = {WINDOW}\nevery = \"200ms\"\nmin_group_size = 30\n\
         [[routes.monitor.protected]]\nfeature = \"colour\"\nprivileged = \"red\"\n\
         unprivileged = [\"blue\"]\n",
        state.join("audit.db").display()
    );
    config(model, state, &routes)
}

/// The route's latest monitoring results.
async fn latest(proxy: &Proxy) -> Value {
    let all = get(&proxy.admin_url("/api/v1/monitoring")).await.json();
    all["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == "m")
        .unwrap_or_else(|| panic!("no route m in {all}"))["latest"]
        .clone()
}

/// The results once no row has arrived for a while (every 200 ms, the monitor
/// recomputes when rows came in): they count every row sent.
async fn settled(proxy: &Proxy) -> Value {
    tokio::time::sleep(Duration::from_millis(700)).await;
    let report = latest(proxy).await;
    assert!(report["rows_seen"].is_u64(), "{report}");
    report
}

/// Rows the monitor has been given: monitored, or skipped because they came while the
/// window was being copied (the request path never waits for the monitor).
fn counted(report: &Value) -> u64 {
    report["rows_seen"].as_u64().unwrap_or(0) + report["rows_skipped"].as_u64().unwrap_or(0)
}

/// The results once they count `seen` rows.
async fn monitoring_with(proxy: &Proxy, seen: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let report = latest(proxy).await;
        let counted = counted(&report);
        if counted >= seen {
            assert_eq!(counted, seen, "{report}");
            return report;
        }
        assert!(Instant::now() < deadline, "not recomputed: {report}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends rows `indices` (10 per request), `a` shifted by `shift`; returns the model's
/// predictions with their colour.
async fn send_rows(
    proxy: &Proxy,
    indices: std::ops::Range<usize>,
    shift: f64,
) -> Vec<(&'static str, f64)> {
    let mut out = Vec::new();
    let all: Vec<usize> = indices.collect();
    for chunk in all.chunks(10) {
        let instances: Vec<Value> = chunk
            .iter()
            .map(|&i| {
                let (a, b, c, colour) = row(i);
                json!({"a": a + shift, "b": b, "c": c, "colour": colour})
            })
            .collect();
        let body = json!({ "instances": instances }).to_string();
        let answer = post(proxy, "/v1/models/m:predict", body, &[]).await;
        assert_eq!(answer.status, 200);
        let json = answer.json();
        assert!(
            json["explanations"].is_array(),
            "not explained: {:?}",
            answer.headers
        );
        for (k, &i) in chunk.iter().enumerate() {
            out.push((row(i).3, json["predictions"][k].as_f64().unwrap()));
        }
    }
    out
}

fn drift_of<'a>(report: &'a Value, feature: &str) -> &'a Value {
    report["drift"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["feature"] == feature)
        .unwrap_or_else(|| panic!("no drift for {feature}: {report}"))
}

#[tokio::test]
async fn the_monitor_reports_fairness_and_drift_and_flags_a_disadvantaged_group() {
    let model = ModelServer::start().await;
    let state = tempfile::tempdir().unwrap();
    let proxy = Proxy::start_with_env(
        &monitored(&model, state.path()),
        &[("SIDELIGHT_AUDIT_KEY", KEY_HEX)],
    );
    warm_up(&proxy, "m", async |i| {
        post(&proxy, "/v1/models/m:predict", kserve_body(&[i]), &[]).await;
    })
    .await;

    // Rows under consent `none` are not monitored.
    let start = settled(&proxy).await;
    let before = start["window_rows"].as_u64().unwrap();
    let seen = counted(&start);
    for i in 0..5 {
        let body = kserve_body(&[i, i + 1]);
        let answer = post(
            &proxy,
            "/v1/models/m:predict",
            body,
            &[("x-sidelight-consent", "none")],
        )
        .await;
        assert_eq!(answer.status, 200);
    }
    post(&proxy, "/v1/models/m:predict", kserve_body(&[7]), &[]).await;
    let report = monitoring_with(&proxy, seen + 1).await;
    assert_eq!(
        report["window_rows"].as_u64().unwrap(),
        before + 1,
        "{report}"
    );
    // Waiting longer shows no other row.
    let report = settled(&proxy).await;
    assert_eq!(counted(&report), seen + 1, "{report}");

    // A full window of ordinary traffic: the window holds exactly these rows.
    let sent = send_rows(&proxy, 1000..1000 + WINDOW, 0.0).await;
    let report = monitoring_with(&proxy, seen + 1 + WINDOW as u64).await;
    assert_eq!(report["window_rows"], WINDOW, "{report}");

    let mut expected: HashMap<&str, (u64, u64)> = HashMap::new();
    for (colour, prediction) in &sent {
        let e = expected.entry(colour).or_default();
        e.0 += u64::from(*prediction >= THRESHOLD);
        e.1 += 1;
    }
    let fairness = &report["fairness"][0];
    assert_eq!(fairness["attribute"], "colour", "{report}");
    for group in fairness["groups"].as_array().unwrap() {
        let name = group["group"].as_str().unwrap();
        let (favourable, total) = expected[name];
        assert_eq!(group["selection"]["successes"], favourable, "{group}");
        assert_eq!(group["selection"]["trials"], total, "{group}");
        let rate = group["selection"]["rate"].as_f64().unwrap();
        assert!((rate - favourable as f64 / total as f64).abs() < 1e-12);
        assert!(group["selection"]["interval"]["lower"].as_f64().unwrap() <= rate);
    }
    let comparison = &fairness["comparisons"][0];
    assert_eq!(comparison["unprivileged"], "blue");
    let di = comparison["disparate_impact"]["value"].as_f64().unwrap();
    let (red, blue) = (expected["red"], expected["blue"]);
    let expected_di = (blue.0 as f64 / blue.1 as f64) / (red.0 as f64 / red.1 as f64);
    assert!((di - expected_di).abs() < 1e-9, "{di} vs {expected_di}");
    assert!(di < 0.5, "{report}");
    assert_eq!(comparison["disparate_impact_verdict"], "fail", "{report}");
    assert_eq!(report["flagged"], json!([["colour", "blue"]]), "{report}");

    // The gauges.
    let metrics = get(&proxy.admin_url("/metrics")).await;
    let metrics = String::from_utf8_lossy(&metrics.body).into_owned();
    for line in [
        "sidelight_fairness_disparate_impact{route=\"m\",attribute=\"colour\",group=\"blue\"}",
        "sidelight_fairness_statistical_parity_difference{route=\"m\",attribute=\"colour\",group=\"blue\"}",
        "sidelight_fairness_selection_rate{route=\"m\",attribute=\"colour\",group=\"red\"}",
        "sidelight_drift_psi{route=\"m\",feature=\"a\"}",
        "sidelight_drift_ks{route=\"m\",feature=\"a\"}",
        "sidelight_prediction_drift_psi{route=\"m\"}",
    ] {
        assert!(metrics.contains(line), "no {line} in\n{metrics}");
    }

    // The failing group is flagged for review, and its predictions go to review.
    let flags = get(&proxy.admin_url("/api/v1/review-flags")).await.json();
    assert_eq!(
        flags["groups"],
        json!([{"feature": "colour", "value": "blue"}])
    );
    let blue_row = post(&proxy, "/v1/models/m:predict", kserve_body(&[5]), &[]).await; // row 5 is blue
    let review = blue_row
        .headers
        .get("x-sidelight-review")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert!(review.contains("flagged_group"), "{:?}", blue_row.headers);
    let red_row = post(&proxy, "/v1/models/m:predict", kserve_body(&[3]), &[]).await; // red
    assert!(red_row.headers.get("x-sidelight-review").is_none());

    // Drift: the same rows with `a` shifted; b and c come from the same formula.
    send_rows(&proxy, 1000..1000 + WINDOW, 2.0).await;
    let report = monitoring_with(&proxy, seen + 3 + 2 * WINDOW as u64).await;
    // The reference is what the surrogate in service was trained on: the warm-up rows.
    assert_eq!(report["reference"], "training_window", "{report}");
    assert!(report["reference_rows"].as_u64().unwrap() >= 60, "{report}");
    let (a, b) = (drift_of(&report, "a"), drift_of(&report, "b"));
    let psi = |d: &Value| d["psi"].as_f64().unwrap();
    let ks = |d: &Value| d["ks"]["statistic"].as_f64().unwrap();
    assert!(psi(a) > 1.0 && psi(a) > 10.0 * psi(b).max(0.01), "{a}\n{b}");
    assert!(ks(a) > 0.9 && ks(a) > ks(b), "{a}\n{b}");
    assert_eq!(drift_of(&report, "colour")["kind"], "categorical");
    assert!(
        report["prediction_drift"]["psi"].as_f64().unwrap() > 0.25,
        "{report}"
    );
}
