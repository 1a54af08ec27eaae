//! The data port under hostile clients: one test per attack a client could make on
//! Sidelight itself (not on the model), each through real sockets. None of these
//! clients is trusted (`[server.trust]` lists none of them) unless the test says so.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use serde_json::{Value, json};
use sidelight_e2e::live::{config, kserve_body, post, status, warm_up};
use sidelight_e2e::model::ModelServer;
use sidelight_e2e::*;

/// A route of the test model with an audit log; `extra` goes into `[routes.explain]`.
fn audited(model: &ModelServer, state: &Path, extra: &str, server: &str) -> String {
    let routes = format!(
        "[audit]\npath = \"{}\"\n{}\
         [[routes]]\nname = \"m\"\npath_prefix = \"/v1/models/m\"\n\
         [routes.explain]\nprotocol = \"kserve_v1\"\noutput = \"score\"\n{extra}\n\
         [routes.explain.surrogate]\nwarm_up_rows = 60\nretrain_every_rows = 100000\n\
         retrain_interval = \"1h\"\nmin_r2 = 0.0\n",
        state.join("audit.db").display(),
        audit_key_file_line(state),
    );
    format!("{}{server}", config(model, state, &routes))
}

async fn started(extra: &str, server: &str) -> (ModelServer, tempfile::TempDir, InProcess) {
    let model = ModelServer::start().await;
    let state = tempfile::tempdir().unwrap();
    let proxy = InProcess::start(&audited(&model, state.path(), extra, server));
    warm_up(&proxy, "m", async |i| {
        post(&proxy, "/v1/models/m:predict", kserve_body(&[i]), &[]).await;
    })
    .await;
    (model, state, proxy)
}

/// How often `limit` bit, from `/metrics`.
async fn limit_hits(proxy: &InProcess, limit: &str) -> u64 {
    let metrics = metrics_text(proxy).await;
    let prefix = format!("sidelight_limit_hits_total{{limit=\"{limit}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

fn header(answer: &Answer, name: &str) -> String {
    answer
        .headers
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// Attack 1: read or replace another client's explanation by its request id.
#[tokio::test]
async fn references_are_unguessable_never_taken_over_and_never_kept_under_consent_none() {
    let (_model, _state, proxy) = started("attach = \"reference\"", "").await;
    let victim = post(
        &proxy,
        "/v1/models/m:predict",
        kserve_body(&[1]),
        &[("x-request-id", "order-1001")],
    )
    .await;
    let reference = header(&victim, "x-sidelight-explanation-id");
    assert_eq!(reference.len(), 32, "{reference}");
    let kept = get(&proxy.url(&format!("/v1/explanations/{reference}")))
        .await
        .json();
    // Guessing the client's own id finds nothing.
    assert_eq!(
        get(&proxy.url("/v1/explanations/order-1001")).await.status,
        404
    );
    // The attacker re-sends the victim's id with another row: it gets a reference of its
    // own, and the victim's is what it was.
    let attacker = post(
        &proxy,
        "/v1/models/m:predict",
        kserve_body(&[2]),
        &[("x-request-id", "order-1001")],
    )
    .await;
    assert_ne!(header(&attacker, "x-sidelight-explanation-id"), reference);
    assert_eq!(
        get(&proxy.url(&format!("/v1/explanations/{reference}")))
            .await
            .json(),
        kept
    );
    // Under consent `none` nothing is kept: the explanation comes in the body.
    let withheld = post(
        &proxy,
        "/v1/models/m:predict",
        kserve_body(&[3]),
        &[("x-sidelight-consent", "none")],
    )
    .await;
    assert!(withheld.headers.get("x-sidelight-explanation-id").is_none());
    assert!(withheld.json()["explanations"].is_array());
    assert!(
        status(&withheld).ends_with("reference_not_kept_under_consent_none"),
        "{}",
        status(&withheld)
    );
}

/// Attack 1, on a route that does not keep references: asking for one does not make it.
#[tokio::test]
async fn a_route_that_does_not_allow_references_attaches_in_the_body() {
    let (_model, _state, proxy) = started("", "").await;
    let answer = post(
        &proxy,
        "/v1/models/m:predict",
        kserve_body(&[1]),
        &[("x-sidelight-explain", "reference")],
    )
    .await;
    assert!(answer.headers.get("x-sidelight-explanation-id").is_none());
    assert!(answer.json()["explanations"].is_array());
    assert!(status(&answer).ends_with("reference_not_allowed"));
}

/// Attack 5: fill memory through the reference store.
#[tokio::test]
async fn the_reference_store_keeps_to_its_byte_budget() {
    let model = ModelServer::start().await;
    let state = tempfile::tempdir().unwrap();
    let base = audited(&model, state.path(), "attach = \"reference\"", "");
    let limited = base.replacen(
        "[server]\n",
        "[server]\nexplanation_store_bytes = 20000\nexplanation_max_bytes = 6000\n",
        1,
    );
    let proxy = InProcess::start(&limited);
    warm_up(&proxy, "m", async |i| {
        post(&proxy, "/v1/models/m:predict", kserve_body(&[i]), &[]).await;
    })
    .await;
    let mut references = Vec::new();
    for i in 0..40 {
        let answer = post(&proxy, "/v1/models/m:predict", kserve_body(&[i]), &[]).await;
        references.push(header(&answer, "x-sidelight-explanation-id"));
    }
    let kept = async |reference: &str| {
        get(&proxy.url(&format!("/v1/explanations/{reference}")))
            .await
            .status
            == 200
    };
    assert!(!kept(&references[0]).await, "the oldest went first");
    assert!(kept(&references[39]).await);
    let mut held = 0;
    for reference in &references {
        held += usize::from(kept(reference).await);
    }
    assert!(held < 40, "{held} of 40 kept within 20,000 bytes");
    // One explanation over the per-entry limit is attached in the body instead.
    let batch: Vec<usize> = (0..60).collect();
    let big = post(&proxy, "/v1/models/m:predict", kserve_body(&batch), &[]).await;
    assert!(big.headers.get("x-sidelight-explanation-id").is_none());
    assert_eq!(big.json()["explanations"].as_array().unwrap().len(), 60);
    assert!(status(&big).ends_with("reference_too_large"));
}

/// Attack 2: raise one's own view to the auditor's.
#[tokio::test]
async fn an_untrusted_client_asking_for_another_audience_gets_the_routes_own() {
    let credential = "data-port-credential-for-the-tests";
    let trust = format!(
        "\n[server.trust]\ncredentials_sha256 = [\"{}\"]\n",
        sha256_hex(credential)
    );
    let (_model, _state, proxy) = started("audiences = [\"developer\", \"auditor\"]", &trust).await;
    let asked = post(
        &proxy,
        "/v1/models/m:predict",
        kserve_body(&[1]),
        &[("x-sidelight-audience", "auditor")],
    )
    .await;
    assert_eq!(
        header(&asked, "x-sidelight-audience"),
        "customer; downgraded_from=auditor"
    );
    let text = asked.json()["explanations"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        !text.contains("Consent:") && !text.contains("Record "),
        "{text}"
    );
    // With the credential the auditor's view is served, and the credential never
    // reaches the model.
    let allowed = post(
        &proxy,
        "/v1/models/m:predict",
        kserve_body(&[1]),
        &[
            ("x-sidelight-audience", "auditor"),
            ("x-sidelight-credential", credential),
        ],
    )
    .await;
    assert!(allowed.headers.get("x-sidelight-audience").is_none());
    let text = allowed.json()["explanations"][0]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(text.contains("Consent: full."), "{text}");
}

/// Attack 7: attach outcomes to anyone's record, learn which ids exist, flood.
#[tokio::test]
async fn feedback_needs_the_records_token_and_unknown_and_forbidden_look_alike() {
    let (_model, _state, proxy) = started("", "\n[server.trust]\nfeedback_per_minute = 5\n").await;
    let answer = post(&proxy, "/v1/models/m:predict", kserve_body(&[1]), &[]).await;
    let id = header(&answer, "x-sidelight-record-id");
    let token = header(&answer, "x-sidelight-feedback-token");
    assert_eq!(token.len(), 32, "{token}");
    let report = async |body: Value| post(&proxy, "/v1/feedback", body.to_string(), &[]).await;
    let forbidden = report(json!({"id": id, "outcome": 1})).await;
    let unknown = report(json!({"id": "no-such-record", "outcome": 1})).await;
    assert_eq!(forbidden.status, 404);
    assert_eq!(
        (forbidden.status, &forbidden.body),
        (unknown.status, &unknown.body)
    );
    let wrong = report(json!({"id": id, "token": "0".repeat(32), "outcome": 1})).await;
    assert_eq!(wrong.body, unknown.body);
    let right = report(json!({"id": id, "token": token, "outcome": 1})).await;
    assert_eq!(right.status, 200, "{:?}", right.body);
    // The token does not let the client put itself in a protected group.
    let grouped = report(json!({"id": id, "token": token, "attributes": {"segment": "u"}})).await;
    assert_eq!(grouped.status, 403);
    // Five reports a minute from this client: the sixth is refused.
    let flood = report(json!({"id": id, "token": token, "outcome": 1})).await;
    assert_eq!(flood.status, 429);
    assert_eq!(flood.headers["retry-after"], "60");
    let metrics = metrics_text(&proxy).await;
    assert!(
        metrics.contains("sidelight_limit_hits_total{limit=\"feedback_per_minute\"} 1"),
        "{metrics}"
    );
}

/// Attack 7: keep one's decisions out of training and monitoring with the probe mark.
#[tokio::test]
async fn an_untrusted_probe_mark_is_ignored_and_counted() {
    let (_model, _state, proxy) = started("", "").await;
    let seen = rows_seen(&proxy).await;
    let marked = post(
        &proxy,
        "/v1/models/m:predict",
        kserve_body(&[5]),
        &[("x-sidelight-probe", "1")],
    )
    .await;
    assert!(status(&marked).starts_with("explained"));
    assert_eq!(rows_seen(&proxy).await, seen + 1, "the row was trained on");
    let metrics = metrics_text(&proxy).await;
    assert!(
        metrics.contains("sidelight_limit_hits_total{limit=\"untrusted_probe\"} 1"),
        "{metrics}"
    );
}

async fn rows_seen(proxy: &InProcess) -> u64 {
    let surrogates = get(&proxy.admin_url("/api/v1/surrogates")).await.json();
    surrogates["routes"][0]["rows_seen"].as_u64().unwrap()
}

/// Attack 8: make each repeat of a request id dearer than the last; and learn from a
/// suffixed record id that another client used an id before.
#[tokio::test]
async fn a_repeated_request_id_gets_a_random_suffix_at_once() {
    let (_model, _state, proxy) = started("", TRUSTED_LOOPBACK).await;
    // A trusted client's id is kept the first time.
    let trusted = post(
        &proxy,
        "/v1/models/m:predict",
        kserve_body(&[1]),
        &[("x-request-id", "mine")],
    )
    .await;
    assert_eq!(header(&trusted, "x-sidelight-record-id"), "mine");
    let (_model, _state, proxy) = started("", "").await;
    let mut ids = std::collections::HashSet::new();
    for _ in 0..30 {
        let answer = post(
            &proxy,
            "/v1/models/m:predict",
            kserve_body(&[1]),
            &[("x-request-id", "same")],
        )
        .await;
        ids.insert(header(&answer, "x-sidelight-record-id"));
    }
    assert_eq!(ids.len(), 30);
    // Every one suffixed, the first too: none says whether the id was used before.
    for id in &ids {
        let suffix = id.strip_prefix("same~").unwrap();
        assert!(suffix.len() == 16 && suffix.bytes().all(|b| b.is_ascii_hexdigit()));
    }
}

/// Attack 9: tell the upstream a host (or client address) of one's choosing.
#[tokio::test]
async fn forwarding_headers_are_believed_only_from_trusted_proxies() {
    let upstream = Upstream::start().await;
    let spoofed = [
        ("x-forwarded-host", "admin.internal"),
        ("x-forwarded-for", "10.0.0.1"),
        ("x-forwarded-proto", "https"),
        ("x-sidelight-anything", "1"),
    ];
    let seen = async |proxy: &InProcess| {
        send(
            &client(),
            http::Method::GET,
            &proxy.url("/inspect"),
            &spoofed,
            empty(),
        )
        .await
        .json()["headers"]
            .clone()
    };
    let direct = InProcess::start(&config_for(&upstream.url(), "", ""));
    let headers = seen(&direct).await;
    // Sidelight's headers never reach the model, on any route.
    assert!(headers.get("x-sidelight-anything").is_none(), "{headers}");
    assert_eq!(headers["x-forwarded-host"], direct.data.to_string());
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "http");
    let behind = InProcess::start(&format!(
        "{}\n[server.trust]\nproxies = [\"127.0.0.0/8\"]\n",
        config_for(&upstream.url(), "", "")
    ));
    let headers = seen(&behind).await;
    assert_eq!(headers["x-forwarded-host"], "admin.internal");
    assert_eq!(headers["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "https");
}

/// Attack 3: fix a route's columns with one request of 60,000 keys.
#[tokio::test]
async fn one_wide_request_does_not_decide_the_columns_of_a_route_without_features() {
    let model = ModelServer::start().await;
    let state = tempfile::tempdir().unwrap();
    // A budget a debug build cannot miss, so that the request is refused by the
    // feature limit and not, as timing has it, by the time budget first.
    let proxy = InProcess::start(&audited(
        &model,
        state.path(),
        "[routes.explain.limits]\nbudget = \"10s\"\n",
        "",
    ));
    let mut wide = serde_json::Map::new();
    for (name, value) in [("a", json!(1.0)), ("b", json!(2.0)), ("c", json!(3.0))] {
        wide.insert(name.to_owned(), value);
    }
    wide.insert("colour".to_owned(), json!("red"));
    for k in 0..60_000 {
        wide.insert(format!("k{k}"), json!(k));
    }
    let body = json!({ "instances": [wide] }).to_string();
    let answer = post(&proxy, "/v1/models/m:predict", body, &[]).await;
    assert_eq!(answer.status, 200, "the model's answer goes on");
    // Normal traffic still trains and is explained.
    warm_up(&proxy, "m", async |i| {
        post(&proxy, "/v1/models/m:predict", kserve_body(&[i]), &[]).await;
    })
    .await;
    let answer = post(&proxy, "/v1/models/m:predict", kserve_body(&[7]), &[]).await;
    assert!(
        status(&answer).starts_with("explained"),
        "{}",
        status(&answer)
    );
    let names: Vec<String> = answer.json()["explanations"][0]["attributions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["feature"].as_str().unwrap().to_owned())
        .collect();
    assert!(names.len() <= 5, "{names:?}");
    let metrics = metrics_text(&proxy).await;
    assert!(
        metrics.contains("sidelight_limit_hits_total{limit=\"max_features\"} 1"),
        "{metrics}"
    );
}

/// Attack 4: hold the data workers with a batch that takes seconds to explain.
#[tokio::test]
async fn a_batch_past_the_row_cap_or_the_time_budget_is_answered_unexplained() {
    let (_model, _state, proxy) = started("limits = { max_rows = 100 }", "").await;
    let rows: Vec<usize> = (0..101).collect();
    let answer = post(&proxy, "/v1/models/m:predict", kserve_body(&rows), &[]).await;
    assert_eq!(status(&answer), "too_many_rows; rows=101, max_rows=100");
    assert_eq!(answer.json()["predictions"].as_array().unwrap().len(), 101);
    assert!(answer.json().get("explanations").is_none());
    let answer = post(
        &proxy,
        "/v1/models/m:predict",
        kserve_body(&rows[..100]),
        &[],
    )
    .await;
    assert!(status(&answer).starts_with("explained"));

    // A budget no batch can meet: the answer goes on without waiting for the pool.
    let (_model, _state, proxy) =
        started("limits = { max_rows = 5000, budget = \"1ns\" }", "").await;
    let rows: Vec<usize> = (0..2000).collect();
    let answer = post(&proxy, "/v1/models/m:predict", kserve_body(&rows), &[]).await;
    assert_eq!(status(&answer), "explain_budget_exceeded; budget=1ns");
    assert_eq!(answer.json()["predictions"].as_array().unwrap().len(), 2000);
    // Warm-up requests after the surrogate came may have met the budget too.
    assert!(limit_hits(&proxy, "budget").await >= 1);
}

/// Attack 6: hold connections open forever over HTTP/2, which has no read timeout of
/// its own between requests. A client that answers every ping is still closed once
/// idle for `server.idle_timeout`.
#[tokio::test]
async fn an_idle_http2_connection_is_closed_even_when_it_answers_pings() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = Upstream::start().await;
    let proxy = InProcess::start(&config_for(
        &upstream.url(),
        "idle_timeout = \"1s\"\nhttp2_keep_alive = \"300ms\"",
        "",
    ));
    let mut stream = tokio::net::TcpStream::connect(proxy.data).await.unwrap();
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    // Frames until the server closes: SETTINGS are acknowledged and PINGs answered,
    // as a live client would.
    let closed = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let mut goaway = false;
        loop {
            let mut head = [0u8; 9];
            if stream.read_exact(&mut head).await.is_err() {
                return goaway;
            }
            let length =
                usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
            let mut payload = vec![0u8; length];
            if stream.read_exact(&mut payload).await.is_err() {
                return goaway;
            }
            let (kind, flags) = (head[3], head[4]);
            let reply = match (kind, flags & 1) {
                (0x4, 0) => b"\0\0\0\x04\x01\0\0\0\0".to_vec(),
                (0x6, 0) => {
                    let mut ack = b"\0\0\x08\x06\x01\0\0\0\0".to_vec();
                    ack.extend_from_slice(&payload);
                    ack
                }
                (0x7, _) => {
                    goaway = true;
                    continue;
                }
                _ => continue,
            };
            if stream.write_all(&reply).await.is_err() {
                return goaway;
            }
        }
    })
    .await;
    assert_eq!(closed, Ok(true), "closed with GOAWAY within 10 s");
}

/// Attack 6: a request head too large or with too many headers.
#[tokio::test]
async fn header_count_and_size_are_limited() {
    let upstream = Upstream::start().await;
    let proxy = InProcess::start(&config_for(
        &upstream.url(),
        "max_headers = 20\nmax_header_bytes = 8192",
        "",
    ));
    let names: Vec<String> = (0..30).map(|i| format!("x-h{i}")).collect();
    let many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "1")).collect();
    let answer = send(
        &client(),
        http::Method::GET,
        &proxy.url("/echo"),
        &many,
        empty(),
    )
    .await;
    assert_eq!(answer.status, 431);
    let big = "v".repeat(10_000);
    let answer = send(
        &client(),
        http::Method::GET,
        &proxy.url("/echo"),
        &[("x-big", big.as_str())],
        empty(),
    )
    .await;
    assert_eq!(answer.status, 431);
    let answer = send(
        &client(),
        http::Method::GET,
        &proxy.url("/echo"),
        &many[..10],
        empty(),
    )
    .await;
    assert_eq!(answer.status, 200);
}

/// Attack 7: place one's decisions in the protected group of one's choosing.
#[tokio::test]
async fn a_protected_attribute_in_a_header_is_believed_only_from_a_trusted_client() {
    let monitor = "[routes.monitor]\nwindow_rows = 500\nevery = \"100ms\"\nmin_group_size = 1\n\
                   [[routes.monitor.protected]]\nattribute = \"segment\"\n\
                   header = \"x-sidelight-attribute-segment\"\nprivileged = \"p\"\n\
                   unprivileged = [\"u\"]\n";
    let model = ModelServer::start().await;
    let state = tempfile::tempdir().unwrap();
    let proxy = InProcess::start(&format!(
        "{}{monitor}",
        audited(&model, state.path(), "", "")
    ));
    warm_up(&proxy, "m", async |i| {
        post(&proxy, "/v1/models/m:predict", kserve_body(&[i]), &[]).await;
    })
    .await;
    for i in 0..5 {
        let answer = post(
            &proxy,
            "/v1/models/m:predict",
            kserve_body(&[i]),
            &[("x-sidelight-attribute-segment", "u")],
        )
        .await;
        assert!(status(&answer).starts_with("explained"));
    }
    assert_eq!(
        model.attribute_header_calls(),
        0,
        "the header reached the model"
    );
    let metrics = metrics_text(&proxy).await;
    assert!(
        metrics.contains("sidelight_limit_hits_total{limit=\"untrusted_attribute\"} 5"),
        "{metrics}"
    );
    // The monitor saw no member of either group.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let monitoring = get(&proxy.admin_url("/api/v1/monitoring")).await.json();
    let latest = &monitoring["routes"][0]["latest"];
    let members: u64 = latest["fairness"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["attribute"] == "segment")
        .flat_map(|f| f["groups"].as_array().cloned().unwrap_or_default())
        .map(|g| g["selection"]["trials"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(members, 0, "{latest}");
}
