//! Live explanations end to end: the real binary in front of a real model server, for
//! every protocol, with warm-up, training, attaching, pass-through reasons and restarts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use http::Method;
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use sidelight_e2e::live::{config, kserve_body, post, status, warm_up};
use sidelight_e2e::model::{ModelServer, row, score};
use sidelight_e2e::*;

const JSON: [(&str, &str); 1] = [("content-type", "application/json")];

fn route(name: &str, prefix: &str, protocol: &str, extra: &str) -> String {
    format!(
        "[[routes]]\nname = \"{name}\"\npath_prefix = \"{prefix}\"\n\
         [routes.explain]\nprotocol = \"{protocol}\"\n{extra}\n\
         [routes.explain.surrogate]\nwarm_up_rows = 150\nretrain_every_rows = 100000\n\
         min_r2 = 0.5\ntrees = 60\ndepth = 4\ncpu_share = 1.0\n"
    )
}

fn check_efficiency(explanation: &Value) {
    let base = explanation["base_value"].as_f64().unwrap();
    let sum: f64 = explanation["attributions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["contribution"].as_f64().unwrap())
        .sum();
    let surrogate = explanation["surrogate_prediction"].as_f64().unwrap();
    assert!((base + sum - surrogate).abs() < 1e-9, "{explanation}");
}

#[tokio::test]
async fn kserve_v1_warms_up_then_explains_every_row_without_touching_the_model_fields() {
    let model = ModelServer::start().await;
    let state = tempfile::tempdir().unwrap();
    let proxy = InProcess::start(&config(
        &model,
        state.path(),
        &route(
            "m",
            "/v1/models/m",
            "kserve_v1",
            "output = \"score\"\naudience = \"developer\"",
        ),
    ));

    let first = post(&proxy, "/v1/models/m:predict", kserve_body(&[0]), &[]).await;
    assert_eq!(first.status, 200);
    // No feature is configured: one request does not decide the route's columns.
    assert_eq!(status(&first), "warming_up; rows=0/150, columns_agreed=1/3");
    assert!(first.json().get("explanations").is_none());

    warm_up(&proxy, "m", async |i| {
        post(&proxy, "/v1/models/m:predict", kserve_body(&[i]), &[]).await;
    })
    .await;

    let batch = [3, 14, 15, 92, 65];
    let direct = send(
        &client(),
        Method::POST,
        &format!("{}/v1/models/m:predict", model.url()),
        &JSON,
        full(kserve_body(&batch)),
    )
    .await;
    let answer = post(&proxy, "/v1/models/m:predict", kserve_body(&batch), &[]).await;
    assert!(
        status(&answer).starts_with("explained; surrogate_version="),
        "{}",
        status(&answer)
    );
    // The model's bytes are kept exactly; the explanations are the last member.
    let text = String::from_utf8(answer.body.to_vec()).unwrap();
    let original = String::from_utf8(direct.body.to_vec()).unwrap();
    let cut = text
        .find(",\"explanations\":")
        .expect("no explanations member");
    assert_eq!(format!("{}}}", &text[..cut]), original.trim_end());
    let explanations = answer.json()["explanations"].as_array().unwrap().clone();
    assert_eq!(explanations.len(), batch.len());
    for (explanation, &i) in explanations.iter().zip(&batch) {
        let (a, b, c, colour) = row(i);
        assert!(
            (explanation["prediction"].as_f64().unwrap() - score(a, b, c, colour)).abs() < 1e-12
        );
        check_efficiency(explanation);
        let names: Vec<&str> = explanation["attributions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["feature"].as_str().unwrap())
            .collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, ["a", "b", "c", "colour"]);
        // A surrogate of 120 training rows is coarse; it must still be in the right range.
        assert!(
            explanation["fidelity"]["local_error"].as_f64().unwrap() < 1.5,
            "{explanation}"
        );
        assert!(explanation["fidelity"]["r2"].as_f64().unwrap() >= 0.5);
        // The developer text: the decision, then every attribution by direction.
        let text = explanation["text"].as_str().unwrap();
        assert!(text.starts_with("Decision: "), "{text}");
        assert!(text.contains("Pushed the prediction"), "{text}");
        assert_eq!(explanation["locale"], "en");
        assert!(explanation["caveat"].is_boolean());
    }
}

#[tokio::test]
async fn every_protocol_is_explained_and_every_pass_through_reason_is_said() {
    let model = ModelServer::start().await;
    let state = tempfile::tempdir().unwrap();
    let routes = [
        route("v2", "/v2/models/m", "open_inference_v2", "output = \"score\""),
        route("mlflow", "/invocations", "mlflow", "output = \"score\""),
        route(
            "pointer",
            "/pointer",
            "pointer",
            "rows_pointer = \"/applicant\"\noutputs_pointer = \"/result/score\"\noutput = \"score\"\nreferences = true",
        ),
        route("text", "/text", "kserve_v1", ""),
        route("fail", "/fail", "kserve_v1", ""),
    ]
    .join("\n");
    let proxy = InProcess::start(&format!(
        "{}\n[[routes]]\nname = \"small\"\npath_prefix = \"/v1/models/m\"\ninspect_limit_bytes = 64\n\
         [routes.explain]\nprotocol = \"kserve_v1\"\n",
        config(&model, state.path(), &routes)
    ));

    let v2 = |rows: &[usize]| {
        let pick = |f: fn((f64, f64, f64, &'static str)) -> Value| -> Vec<Value> {
            rows.iter().map(|&i| f(row(i))).collect()
        };
        json!({"inputs": [
            {"name": "a", "shape": [rows.len()], "datatype": "FP64", "data": pick(|r| json!(r.0))},
            {"name": "b", "shape": [rows.len()], "datatype": "FP64", "data": pick(|r| json!(r.1))},
            {"name": "c", "shape": [rows.len()], "datatype": "FP64", "data": pick(|r| json!(r.2))},
            {"name": "colour", "shape": [rows.len()], "datatype": "BYTES", "data": pick(|r| json!(r.3))},
        ]})
        .to_string()
    };
    let mlflow = |rows: &[usize]| {
        let data: Vec<Value> = rows
            .iter()
            .map(|&i| {
                let (a, b, c, colour) = row(i);
                json!([colour, a, b, c])
            })
            .collect();
        json!({"dataframe_split": {"columns": ["colour", "a", "b", "c"], "data": data}}).to_string()
    };
    let pointer = |i: usize| {
        let (a, b, c, colour) = row(i);
        json!({"applicant": {"a": a, "b": b, "c": c, "colour": colour}}).to_string()
    };

    warm_up(&proxy, "v2", async |i| {
        post(&proxy, "/v2/models/m/infer", v2(&[i, i + 1000]), &[]).await;
    })
    .await;
    warm_up(&proxy, "mlflow", async |i| {
        post(&proxy, "/invocations", mlflow(&[i, i + 500]), &[]).await;
    })
    .await;
    warm_up(&proxy, "pointer", async |i| {
        post(&proxy, "/pointer", pointer(i), &[]).await;
    })
    .await;

    for (path, body, rows) in [
        ("/v2/models/m/infer", v2(&[7, 8, 9]), 3),
        ("/invocations", mlflow(&[7, 8]), 2),
        ("/pointer", pointer(7), 1),
    ] {
        let answer = post(&proxy, path, body, &[]).await;
        assert!(
            status(&answer).starts_with("explained"),
            "{path}: {}",
            status(&answer)
        );
        let explanations = answer.json()["explanations"].as_array().unwrap().clone();
        assert_eq!(explanations.len(), rows, "{path}");
        for explanation in &explanations {
            check_efficiency(explanation);
        }
        let first = &explanations[0];
        let (a, b, c, colour) = row(7);
        assert!(
            (first["prediction"].as_f64().unwrap() - score(a, b, c, colour)).abs() < 1e-12,
            "{path}"
        );
    }

    // Header and reference modes, asked for per request.
    let answer = post(
        &proxy,
        "/pointer",
        pointer(8),
        &[("x-sidelight-explain", "header")],
    )
    .await;
    assert!(answer.json().get("explanations").is_none());
    let summary = answer.headers["x-sidelight-explanation"].to_str().unwrap();
    assert!(summary.starts_with("v="), "{summary}");
    let answer = post(
        &proxy,
        "/pointer",
        pointer(9),
        &[
            ("x-sidelight-explain", "reference"),
            ("x-request-id", "ref-1"),
        ],
    )
    .await;
    assert!(answer.json().get("explanations").is_none());
    // The reference is the server's, never the client's own id.
    let reference = answer.headers["x-sidelight-explanation-id"]
        .to_str()
        .unwrap();
    assert_eq!(reference.len(), 32, "{reference}");
    assert_ne!(reference, "ref-1");
    assert_eq!(get(&proxy.url("/v1/explanations/ref-1")).await.status, 404);
    let fetched = get(&proxy.url(&format!("/v1/explanations/{reference}"))).await;
    assert_eq!(fetched.status, 200);
    check_efficiency(&fetched.json()["explanations"][0]);
    assert_eq!(
        get(&proxy.url("/v1/explanations/unknown")).await.status,
        404
    );
    let off = post(
        &proxy,
        "/pointer",
        pointer(9),
        &[("x-sidelight-explain", "off")],
    )
    .await;
    assert!(off.json().get("explanations").is_none());
    assert!(off.headers.get("x-sidelight-explanation").is_none());
    assert_eq!(status(&off), "observed; attach=off");

    // Pass-through reasons: the model's answer goes back unchanged.
    let text = post(&proxy, "/text", kserve_body(&[1]), &[]).await;
    assert_eq!(
        (&text.body[..], status(&text).as_str()),
        (&b"plain words"[..], "response_not_json")
    );
    let fail = post(&proxy, "/fail", kserve_body(&[1]), &[]).await;
    assert_eq!(
        (fail.status.as_u16(), status(&fail).as_str()),
        (500, "upstream_error")
    );
    assert_eq!(fail.json()["error"], "model crashed");
    let big = post(
        &proxy,
        "/v1/models/m:predict",
        kserve_body(&[1, 2, 3, 4]),
        &[],
    )
    .await;
    assert_eq!(
        (big.status.as_u16(), status(&big).as_str()),
        (200, "request_over_limit")
    );
    let garbage = post(&proxy, "/pointer", "{\"applicant\": 5}".into(), &[]).await;
    assert!(
        status(&garbage).starts_with("unparseable"),
        "{}",
        status(&garbage)
    );
}

#[tokio::test]
async fn a_restarted_proxy_explains_at_once_with_the_saved_surrogate() {
    let model = ModelServer::start().await;
    let state = tempfile::tempdir().unwrap();
    let config = config(
        &model,
        state.path(),
        &route("m", "/v1/models/m", "kserve_v1", "output = \"score\""),
    );
    let mut proxy = Proxy::start(&config);
    warm_up(&proxy, "m", async |i| {
        post(&proxy, "/v1/models/m:predict", kserve_body(&[i]), &[]).await;
    })
    .await;
    let before = post(&proxy, "/v1/models/m:predict", kserve_body(&[5]), &[]).await;
    proxy.signal(Signal::SIGTERM);
    assert!(proxy.wait_exit(Duration::from_secs(10)).unwrap().success());

    let restarted = Proxy::start(&config);
    let after = post(&restarted, "/v1/models/m:predict", kserve_body(&[5]), &[]).await;
    assert_eq!(status(&after), status(&before));
    assert_eq!(
        after.json()["explanations"][0]["attributions"],
        before.json()["explanations"][0]["attributions"]
    );
}

#[tokio::test]
async fn customer_explanations_never_name_a_protected_or_hidden_feature() {
    let model = ModelServer::start().await;
    let state = tempfile::tempdir().unwrap();
    let features = "\
        [[routes.explain.features]]\nname = \"a\"\nkind = \"numeric\"\ndisplay_name = \"account age\"\n\
        [[routes.explain.features]]\nname = \"b\"\nkind = \"numeric\"\nprotected = true\ncustomer_visible = false\n\
        [[routes.explain.features]]\nname = \"c\"\nkind = \"numeric\"\ncustomer_visible = false\n\
        [[routes.explain.features]]\nname = \"colour\"\nkind = \"categorical\"\n";
    let routes = route(
        "m",
        "/v1/models/m",
        "kserve_v1",
        "output = \"score\"\naudiences = [\"developer\"]",
    )
    .replace(
        "[routes.explain.surrogate]",
        &format!("{features}[routes.explain.surrogate]"),
    );
    let proxy = InProcess::start(&format!(
        "{}{TRUSTED_LOOPBACK}",
        config(&model, state.path(), &routes)
    ));
    warm_up(&proxy, "m", async |i| {
        post(&proxy, "/v1/models/m:predict", kserve_body(&[i]), &[]).await;
    })
    .await;
    for i in 0..20 {
        let answer = post(&proxy, "/v1/models/m:predict", kserve_body(&[i]), &[]).await;
        let explanation = &answer.json()["explanations"][0];
        check_efficiency(explanation);
        let names: Vec<&str> = explanation["attributions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["feature"].as_str().unwrap())
            .collect();
        assert!(!names.contains(&"b") && !names.contains(&"c"), "{names:?}");
        assert!(names.contains(&"other factors"), "{names:?}");
        if let Some(text) = explanation["text"].as_str() {
            assert!(!text.contains(" b ") && !text.contains(" c "), "{text}");
            assert!(
                !text.chars().any(|c| c.is_ascii_digit()),
                "figures in {text}"
            );
        }
    }
    // A developer sees everything.
    let answer = post(
        &proxy,
        "/v1/models/m:predict",
        kserve_body(&[1]),
        &[("x-sidelight-audience", "developer")],
    )
    .await;
    assert_eq!(
        answer.json()["explanations"][0]["attributions"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
}
