//! Fairness and drift monitoring end to end: the proxy watches explained predictions,
//! reports selection rates, disparate impact and drift at `GET /api/v1/monitoring` and
//! in /metrics, and flags a group that fails the four-fifths rule for review.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sidelight_e2e::live::{config, kserve_body, post, warm_up};
use sidelight_e2e::model::{ModelServer, row};
use sidelight_e2e::*;

const THRESHOLD: f64 = 3.5;
const WINDOW: usize = 300;

/// The test model gives red rows +1: with the decision at 3.5, red is approved far more
/// often than blue.
fn monitored(model: &ModelServer, state: &Path) -> String {
    let routes = format!(
        "[audit]\npath = \"{}\"\n{}\
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
        state.join("audit.db").display(),
        audit_key_file_line(state),
    );
    config(model, state, &routes)
}

/// The route's latest monitoring results.
async fn latest(proxy: &impl Sidecar) -> Value {
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
async fn settled(proxy: &impl Sidecar) -> Value {
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
async fn monitoring_with(proxy: &impl Sidecar, seen: u64) -> Value {
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
    proxy: &impl Sidecar,
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
    let proxy = InProcess::start(&monitored(&model, state.path()));
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

    // The failing group is flagged for review on this route, and its predictions go to
    // review.
    let flags = get(&proxy.admin_url("/api/v1/review-flags")).await.json();
    assert_eq!(
        flags["groups"],
        json!([{"route": "m", "feature": "colour", "value": "blue"}])
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

/// One POST the webhook received: its answer, whether its signature was valid, and the
/// alert.
#[derive(Debug)]
struct Delivery {
    status: u16,
    signed: bool,
    alert: Value,
    /// `x-sidelight-signature` as received.
    signature: String,
    /// The body's exact bytes.
    body: Vec<u8>,
}

type Received = std::sync::Arc<std::sync::Mutex<Vec<Delivery>>>;

/// A webhook receiver: answers the first POST with 500 (so that a retry is needed) and
/// every later one with 200, and keeps what each request brought.
struct Webhook {
    url: String,
    received: Received,
}

impl Webhook {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let received = Received::default();
        let log = received.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let log = log.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |request: http::Request<hyper::body::Incoming>| {
                            let log = log.clone();
                            async move {
                                use http_body_util::BodyExt;
                                let signature = request
                                    .headers()
                                    .get("x-sidelight-signature")
                                    .map(|v| v.to_str().unwrap().to_owned());
                                let body = request.into_body().collect().await.unwrap().to_bytes();
                                let json: Value = serde_json::from_slice(&body).unwrap();
                                let mut log = log.lock().unwrap();
                                let status = if log.is_empty() { 500 } else { 200 };
                                // The documented receiver's check, over the exact bytes
                                // sent, against this receiver's clock.
                                let signature = signature.unwrap_or_default();
                                let mut seen: HashSet<String> = log
                                    .iter()
                                    // Only accepted deliveries: a retry after a
                                    // refusal may carry the same signature.
                                    .filter(|d| d.signed && d.status == 200)
                                    .map(|d| d.signature.clone())
                                    .collect();
                                let valid = check_signature(
                                    SECRET.as_bytes(),
                                    &signature,
                                    &body,
                                    unix_now(),
                                    &mut seen,
                                )
                                .is_ok();
                                log.push(Delivery {
                                    status,
                                    signed: valid,
                                    alert: json,
                                    signature,
                                    body: body.to_vec(),
                                });
                                Ok::<_, std::convert::Infallible>(
                                    http::Response::builder()
                                        .status(status)
                                        .body(full(""))
                                        .unwrap(),
                                )
                            }
                        },
                    );
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
                });
            }
        });
        Self { url, received }
    }

    /// The alerts the webhook accepted (answered 200) for `check` and `subject`, with
    /// whether each was validly signed.
    fn accepted(&self, check: &str, subject: &str) -> Vec<(bool, Value)> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|d| {
                d.status == 200 && d.alert["check"] == check && d.alert["subject"] == subject
            })
            .map(|d| (d.signed, d.alert.clone()))
            .collect()
    }

    /// Waits until the webhook accepted an alert of `check` and `subject` in `state`.
    async fn wait_for(&self, check: &str, subject: &str, state: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self
            .accepted(check, subject)
            .iter()
            .any(|(_, a)| a["state"] == state)
        {
            assert!(
                Instant::now() < deadline,
                "no {state} alert for {check} {subject}: {:?}",
                self.received.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

const SECRET: &str = "webhook-signing-secret-for-tests";

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// How far a delivery's time may be from the receiver's clock.
const TOLERANCE_SECONDS: u64 = 300;

/// The receiver's check as docs/src/monitoring.md describes it: read `t` and `v1` from
/// `x-sidelight-signature`, refuse a time more than five minutes from the receiver's
/// clock, compare `v1` with the HMAC-SHA256 of `<t>.<body>`, and refuse a signature
/// already accepted within the tolerance (`seen`: the signatures of deliveries
/// answered 2xx; a real receiver forgets entries older than the tolerance).
fn check_signature(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now: u64,
    seen: &mut HashSet<String>,
) -> Result<(), &'static str> {
    let (mut t, mut v1) = (None, None);
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => t = value.parse::<u64>().ok(),
            Some(("v1", value)) => v1 = Some(value),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return Err("no t= and v1= in the header");
    };
    if now.abs_diff(t) > TOLERANCE_SECONDS {
        return Err("the timestamp is too old (or too far ahead)");
    }
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(body);
    if hmac_sha256_hex(secret, &signed) != v1 {
        return Err("the signature does not match");
    }
    if !seen.insert(v1.to_owned()) {
        return Err("replayed");
    }
    Ok(())
}

/// HMAC-SHA256 (RFC 2104) of `body` under `key`, as `sha256=<hex>`.
fn hmac_sha256_hex(key: &[u8], body: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(body)
        .finalize();
    let outer = Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize();
    outer.iter().map(|b| format!("{b:02x}")).collect()
}

/// Sends rows `indices` (10 per request) with `a` shifted by `shift`; returns each
/// request's record id and its rows' colours.
async fn send_recorded(
    proxy: &impl Sidecar,
    indices: std::ops::Range<usize>,
    shift: f64,
) -> Vec<(String, String, Vec<&'static str>)> {
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
        let header = |name: &str| answer.headers[name].to_str().unwrap().to_owned();
        out.push((
            header("x-sidelight-record-id"),
            header("x-sidelight-feedback-token"),
            chunk.iter().map(|&i| row(i).3).collect(),
        ));
    }
    out
}

fn review_header(answer: &Answer) -> String {
    answer
        .headers
        .get("x-sidelight-review")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_failing_group_fires_one_signed_alert_and_resolves_once_and_outcomes_give_equal_opportunity()
 {
    let model = ModelServer::start().await;
    let state = tempfile::tempdir().unwrap();
    let webhook = Webhook::start().await;
    let secret_file = state.path().join("alert-secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    // Only fairness alerts, so that the review rule `alerts` follows them alone.
    let config = monitored(&model, state.path())
        .replace(
            "[routes.review]\nflagged_groups = true\n",
            "[routes.review]\nalerts = true\n",
        )
        .replace(
            "[[routes.monitor.protected]]",
            "[routes.monitor.alerts]\ndrift = false\n[[routes.monitor.protected]]",
        );
    let config = format!(
        "[alerts]\nwebhook = \"{}\"\nbackoff = \"50ms\"\nretries = 3\nsecret_file = \"{}\"\n{config}",
        webhook.url,
        secret_file.display()
    );
    let proxy = Proxy::start_with_env(&config, &[("SIDELIGHT_AUDIT_KEY", AUDIT_KEY_HEX)]);
    warm_up(&proxy, "m", async |i| {
        post(&proxy, "/v1/models/m:predict", kserve_body(&[i]), &[]).await;
    })
    .await;
    let seen = counted(&settled(&proxy).await);

    // Ordinary traffic: blue fails the four-fifths rule.
    send_recorded(&proxy, 1000..1000 + WINDOW, 0.0).await;
    let report = monitoring_with(&proxy, seen + WINDOW as u64).await;
    assert_eq!(
        report["fairness"][0]["comparisons"][0]["disparate_impact_verdict"], "fail",
        "{report}"
    );
    webhook
        .wait_for("disparate_impact", "colour=blue", "firing")
        .await;
    // The first attempt was refused with 500 and retried with the same alert.
    {
        let received = webhook.received.lock().unwrap();
        assert_eq!(received[0].status, 500);
        assert!(
            received[1..]
                .iter()
                .any(|d| d.status == 200 && d.alert == received[0].alert),
            "{received:?}"
        );
        // The timestamp is signed: a captured delivery replayed later is refused by the
        // documented check, as is a repeat within the tolerance and a changed body.
        let delivered = received
            .iter()
            .find(|d| d.signed)
            .expect("no signed delivery");
        let t: u64 = delivered.signature["t=".len()..]
            .split(',')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let check = |now: u64, body: &[u8], seen: &mut HashSet<String>| {
            check_signature(SECRET.as_bytes(), &delivered.signature, body, now, seen)
        };
        assert_eq!(check(t, &delivered.body, &mut HashSet::new()), Ok(()));
        assert_eq!(
            check(
                t + TOLERANCE_SECONDS + 1,
                &delivered.body,
                &mut HashSet::new()
            ),
            Err("the timestamp is too old (or too far ahead)")
        );
        let mut seen = HashSet::new();
        assert_eq!(check(t + 10, &delivered.body, &mut seen), Ok(()));
        assert_eq!(check(t + 20, &delivered.body, &mut seen), Err("replayed"));
        let mut forged = delivered.body.clone();
        forged.extend_from_slice(b" ");
        assert_eq!(
            check(t, &forged, &mut HashSet::new()),
            Err("the signature does not match")
        );
    }
    let alerts = get(&proxy.admin_url("/api/v1/alerts")).await.json();
    let route = &alerts["routes"][0];
    assert_eq!(route["route"], "m", "{alerts}");
    assert!(
        route["firing"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["check"] == "disparate_impact" && a["subject"] == "colour=blue"),
        "{alerts}"
    );
    // While it fires, every explained prediction of the route goes to review.
    let red = post(&proxy, "/v1/models/m:predict", kserve_body(&[3]), &[]).await;
    assert_eq!(review_header(&red), "pending; reasons=alert");

    // Fair traffic: everyone is approved. Outcomes reported for it join the window,
    // each with the feedback token its prediction came with.
    let sent = send_recorded(&proxy, 2000..2000 + WINDOW, 2.0).await;
    for (id, token, colours) in &sent {
        // Deserved in every other row: each colour has both kinds of outcome.
        let outcomes: Vec<bool> = (0..colours.len()).map(|k| k % 2 == 0).collect();
        let body = json!({ "id": id, "token": token, "outcome": outcomes }).to_string();
        let answer = post(&proxy, "/v1/feedback", body, &[]).await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        assert_eq!(
            answer.json()["joined_rows"],
            colours.len(),
            "{:?}",
            answer.body
        );
    }
    // One row of one record, by `row` (the token in its header this time).
    let (id, token, _) = &sent[0];
    let body = json!({ "id": id, "outcome": "unfavourable", "row": 1 }).to_string();
    let with_token = [("x-sidelight-feedback-token", token.as_str())];
    assert_eq!(
        post(&proxy, "/v1/feedback", body, &with_token).await.json()["joined_rows"],
        1
    );
    let bad = json!({ "id": id, "outcome": true, "row": -1 }).to_string();
    assert_eq!(
        post(&proxy, "/v1/feedback", bad, &with_token).await.status,
        400
    );

    webhook
        .wait_for("disparate_impact", "colour=blue", "resolved")
        .await;
    // The report counts the rows sent since (one red row, the fair window) and the
    // outcomes.
    let report = monitoring_with(&proxy, seen + 2 * WINDOW as u64 + 1).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut report = report;
    while report["rows_with_outcome"] != WINDOW {
        assert!(Instant::now() < deadline, "outcomes not joined: {report}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        report = latest(&proxy).await;
    }
    let comparison = &report["fairness"][0]["comparisons"][0];
    assert!(
        comparison["equal_opportunity_difference"]["value"].is_f64(),
        "{report}"
    );
    assert!(comparison["average_odds_difference"].is_f64(), "{report}");
    assert_eq!(comparison["disparate_impact_verdict"], "pass", "{report}");
    let attribution = &report["attribution"]["summary"];
    assert!(attribution["protected_share"].is_f64(), "{report}");

    // Resolved: predictions no longer go to review.
    let red = post(&proxy, "/v1/models/m:predict", kserve_body(&[3]), &[]).await;
    assert_eq!(review_header(&red), "");
    // Exactly one firing and one resolved alert for the subject, both signed.
    let accepted = webhook.accepted("disparate_impact", "colour=blue");
    let states: Vec<&str> = accepted
        .iter()
        .map(|(_, a)| a["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["firing", "resolved"], "{accepted:?}");
    assert!(accepted.iter().all(|(valid, _)| *valid), "{accepted:?}");
    let firing = &accepted[0].1;
    assert_eq!(firing["route"], "m");
    assert!(firing["value"].as_f64().unwrap() < 0.8, "{firing}");
    assert_eq!(firing["bound"], 0.8);
    assert!(firing["message"].as_str().unwrap().contains("colour=blue"));

    // Each transition is in the audit log.
    let page = get(&proxy.admin_url("/api/v1/records?route=_alert&limit=100"))
        .await
        .json();
    let events: Vec<&Value> = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["request"])
        .filter(|e| e["check"] == "disparate_impact" && e["subject"] == "colour=blue")
        .collect();
    assert_eq!(events.len(), 2, "{page}");

    let metrics = get(&proxy.admin_url("/metrics")).await;
    let metrics = String::from_utf8_lossy(&metrics.body).into_owned();
    for line in [
        "sidelight_fairness_equal_opportunity_difference{route=\"m\",attribute=\"colour\",group=\"blue\"}",
        "sidelight_fairness_average_odds_difference{route=\"m\",attribute=\"colour\",group=\"blue\"}",
        "sidelight_attribution_mean_abs{route=\"m\",feature=\"a\"}",
        "sidelight_attribution_protected_share{route=\"m\"}",
        "sidelight_alerts_total{route=\"m\",check=\"disparate_impact\",state=\"firing\"} 1",
        "sidelight_alerts_firing{route=\"m\"} 0",
        "sidelight_alert_deliveries_total{outcome=\"delivered\"}",
    ] {
        assert!(metrics.contains(line), "no {line} in\n{metrics}");
    }
    // The secret never reaches the log.
    assert!(!proxy.log_text().contains(SECRET));
}

/// Protected attributes the model never sees: one from Sidelight's own request header
/// (removed before the model), one reported after the prediction with
/// `POST /v1/feedback {"attributes": …}`. Both make groups in the monitor's results.
#[tokio::test]
async fn attributes_from_a_header_and_reported_later_are_monitored_without_reaching_the_model() {
    let model = ModelServer::start().await;
    let state = tempfile::tempdir().unwrap();
    let base = monitored(&model, state.path());
    let cut = base.find("[[routes.monitor.protected]]").unwrap();
    let config = format!(
        "{}[[routes.monitor.protected]]\nattribute = \"segment\"\n\
         header = \"x-sidelight-attribute-segment\"\nprivileged = \"p\"\nunprivileged = [\"u\"]\n\
         [[routes.monitor.protected]]\nattribute = \"region\"\nreported = true\n\
         privileged = \"north\"\nunprivileged = [\"south\"]\n",
        &base[..cut]
    );
    // The header's attribute and tokenless reports are honoured from trusted clients.
    let proxy = InProcess::start(&format!("{config}{TRUSTED_LOOPBACK}"));
    warm_up(&proxy, "m", async |i| {
        post(&proxy, "/v1/models/m:predict", kserve_body(&[i]), &[]).await;
    })
    .await;
    let seen = counted(&settled(&proxy).await);

    // 20 requests of 10 rows, alternately from segment p and u; the region of each is
    // reported afterwards (north for the first 10 requests, south for the rest).
    let mut ids = Vec::new();
    for k in 0..20usize {
        let instances: Vec<Value> = (k * 10..k * 10 + 10)
            .map(|i| {
                let (a, b, c, colour) = row(2000 + i);
                json!({"a": a, "b": b, "c": c, "colour": colour})
            })
            .collect();
        let segment = if k % 2 == 0 { "p" } else { "u" };
        let answer = post(
            &proxy,
            "/v1/models/m:predict",
            json!({ "instances": instances }).to_string(),
            &[("x-sidelight-attribute-segment", segment)],
        )
        .await;
        assert_eq!(answer.status, 200);
        ids.push(
            answer.headers["x-sidelight-record-id"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(
        model.attribute_header_calls(),
        0,
        "the model saw the attribute"
    );
    monitoring_with(&proxy, seen + 200).await;
    for (k, id) in ids.iter().enumerate() {
        let region = if k < 10 { "north" } else { "south" };
        let answer = post(
            &proxy,
            "/v1/feedback",
            json!({ "id": id, "attributes": { "region": region } }).to_string(),
            &[],
        )
        .await;
        assert_eq!(answer.status, 200);
        let json = answer.json();
        assert_eq!(json["joined_attributes"], 10, "{json}");
        assert_eq!(json["recorded"], false, "{json}");
    }
    // Unknown records and malformed attributes are refused, naming what is wrong.
    let unknown = post(
        &proxy,
        "/v1/feedback",
        json!({ "id": "nope", "attributes": { "region": "north" } }).to_string(),
        &[],
    )
    .await;
    assert_eq!(unknown.status, 404);
    let malformed = post(
        &proxy,
        "/v1/feedback",
        json!({ "id": ids[0], "attributes": ["north"] }).to_string(),
        &[],
    )
    .await;
    assert_eq!(malformed.status, 400);
    assert!(
        malformed.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("attributes")
    );

    // Recomputed after the attributes were joined.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let report = latest(&proxy).await;
    let fairness = report["fairness"].as_array().unwrap();
    let trials = |attribute: &str, group: &str| -> u64 {
        let f = fairness
            .iter()
            .find(|f| f["attribute"] == attribute)
            .unwrap_or_else(|| panic!("no {attribute} in {report}"));
        f["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["group"] == group)
            .map_or(0, |g| g["selection"]["trials"].as_u64().unwrap())
    };
    assert_eq!(trials("segment", "p"), 100, "{report}");
    assert_eq!(trials("segment", "u"), 100, "{report}");
    assert_eq!(trials("region", "north"), 100, "{report}");
    assert_eq!(trials("region", "south"), 100, "{report}");
}
