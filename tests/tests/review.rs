//! Human oversight end to end: review rules flag predictions, reviewers see them with
//! personal data masked and decide with a reason, each decision is chained into the
//! audit log, a held response waits for the decision (or the fallback), and clients
//! report true outcomes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use http::Method;
use serde_json::{Value, json};
use sidelight_e2e::live::{config, kserve_body, post, warm_up};
use sidelight_e2e::model::ModelServer;
use sidelight_e2e::*;

/// An audited route `m` over the test model, colour marked personal and protected,
/// with `review` as its `[routes.review]` section.
fn reviewed(model: &ModelServer, state: &Path, review: &str) -> String {
    let routes = format!(
        "[audit]\npath = \"{}\"\n{}\
         [[routes]]\nname = \"m\"\npath_prefix = \"/v1/models/m\"\n\
         [routes.explain]\nprotocol = \"kserve_v1\"\noutput = \"score\"\n\
         [[routes.explain.features]]\nname = \"a\"\nkind = \"numeric\"\n\
         [[routes.explain.features]]\nname = \"b\"\nkind = \"numeric\"\n\
         [[routes.explain.features]]\nname = \"c\"\nkind = \"numeric\"\n\
         [[routes.explain.features]]\nname = \"colour\"\nkind = \"categorical\"\n\
         pii = true\nprotected = true\n\
         [routes.explain.surrogate]\nwarm_up_rows = 60\nretrain_every_rows = 100000\n\
         retrain_interval = \"1h\"\nmin_r2 = 0.0\n\
         [routes.privacy]\nfields = {{ colour = \"keep\" }}\n\
         [routes.review]\n{review}\n",
        state.join("audit.db").display(),
        audit_key_file_line(state),
    );
    config(model, state, &routes)
}

async fn ready(model: &ModelServer, state: &Path, review: &str) -> InProcess {
    let proxy = InProcess::start(&reviewed(model, state, review));
    warm_up(&proxy, "m", async |i| {
        post(&proxy, "/v1/models/m:predict", kserve_body(&[i]), &[]).await;
    })
    .await;
    proxy
}

fn review_header(answer: &Answer) -> String {
    answer
        .headers
        .get("x-sidelight-review")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

fn record_id(answer: &Answer) -> String {
    answer.headers["x-sidelight-record-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

async fn admin_json(proxy: &impl Sidecar, method: Method, path: &str, body: Value) -> Answer {
    send(
        &client(),
        method,
        &proxy.admin_url(path),
        &[("content-type", "application/json")],
        full(body.to_string()),
    )
    .await
}

#[tokio::test]
async fn flagged_predictions_are_queued_masked_decided_and_chained() {
    let model = ModelServer::start().await;
    let state = tempfile::tempdir().unwrap();
    let proxy = ready(
        &model,
        state.path(),
        "header = \"x-sidelight-review\"\nout_of_distribution = true\nflagged_groups = true",
    )
    .await;

    // Not flagged: a row like the training rows.
    let plain = post(&proxy, "/v1/models/m:predict", kserve_body(&[1]), &[]).await;
    assert_eq!(review_header(&plain), "");

    // The client asks for a review.
    let asked = post(
        &proxy,
        "/v1/models/m:predict",
        kserve_body(&[2]),
        &[("x-sidelight-review", "1")],
    )
    .await;
    assert_eq!(review_header(&asked), "pending; reasons=requested");
    let id = record_id(&asked);
    let token = asked.headers["x-sidelight-feedback-token"]
        .to_str()
        .unwrap()
        .to_owned();

    // A number far outside the training range.
    let odd = json!({"instances": [{"a": 1000.0, "b": 0.5, "c": 0.5, "colour": "green"}]});
    let odd = post(&proxy, "/v1/models/m:predict", odd.to_string(), &[]).await;
    assert!(
        review_header(&odd).contains("out_of_distribution"),
        "{:?}",
        odd.headers
    );

    // A protected group the fairness monitor (here: an admin) flags.
    let flags = json!({"groups": [{"feature": "colour", "value": "blue"}]});
    let set = admin_json(&proxy, Method::PUT, "/api/v1/review-flags", flags).await;
    assert_eq!(set.status, 200, "{:?}", set.body);
    let blue = post(&proxy, "/v1/models/m:predict", kserve_body(&[5]), &[]).await; // row 5 is blue
    assert!(
        review_header(&blue).contains("flagged_group"),
        "{:?}",
        blue.headers
    );
    // A flag on another route's predictions leaves this route's alone.
    let elsewhere =
        json!({"groups": [{"route": "elsewhere", "feature": "colour", "value": "blue"}]});
    let set = admin_json(&proxy, Method::PUT, "/api/v1/review-flags", elsewhere).await;
    assert_eq!(set.status, 200, "{:?}", set.body);
    assert_eq!(set.json()["groups"][0]["route"], "elsewhere");
    let blue = post(&proxy, "/v1/models/m:predict", kserve_body(&[5]), &[]).await;
    assert!(
        !review_header(&blue).contains("flagged_group"),
        "{:?}",
        blue.headers
    );

    // The queue shows the record with the personal field masked.
    let queue = get(&proxy.admin_url("/api/v1/reviews?state=pending"))
        .await
        .json();
    let queued = queue["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} not in {queue}"))
        .clone();
    assert_eq!(queued["review_reasons"], json!(["requested"]));
    assert_eq!(queued["request"]["instances"][0]["colour"], "•••");
    assert!(queued["subject"].is_null());
    let attributions = queued["attributions"][0]["attributions"]
        .as_array()
        .unwrap();
    assert_eq!(
        attributions.len(),
        4,
        "every feature is in the record: {queued}"
    );

    // A decision needs a reason, and an override its outcome.
    let no_reason = admin_json(
        &proxy,
        Method::POST,
        &format!("/api/v1/reviews/{id}"),
        json!({"decision": "confirm"}),
    )
    .await;
    assert_eq!(no_reason.status, 400);
    assert_eq!(no_reason.error_code(), "bad_decision");
    let no_outcome = admin_json(
        &proxy,
        Method::POST,
        &format!("/api/v1/reviews/{id}"),
        json!({"decision": "override", "reason": "x"}),
    )
    .await;
    assert_eq!(no_outcome.status, 400);
    let decided = admin_json(
        &proxy,
        Method::POST,
        &format!("/api/v1/reviews/{id}"),
        json!({"decision": "override", "outcome": 1.5, "reason": "b was misread"}),
    )
    .await;
    assert_eq!(decided.status, 200, "{:?}", decided.body);
    assert_eq!(decided.json()["review_state"], "overridden");

    // The outcome the client reports later is kept with the record.
    let fed = send(
        &client(),
        Method::POST,
        &proxy.url("/v1/feedback"),
        &[("content-type", "application/json")],
        full(json!({"id": id, "token": token, "outcome": 1.4}).to_string()),
    )
    .await;
    assert_eq!(fed.status, 200, "{:?}", fed.body);
    let unknown = send(
        &client(),
        Method::POST,
        &proxy.url("/v1/feedback"),
        &[("content-type", "application/json")],
        full(json!({"id": "no-such-record", "outcome": 1}).to_string()),
    )
    .await;
    assert_eq!(unknown.status, 404);

    let item = get(&proxy.admin_url(&format!("/api/v1/reviews/{id}")))
        .await
        .json();
    assert_eq!(item["record"]["review_state"], "overridden");
    assert_eq!(item["reviews"][0]["reason"], "b was misread");
    assert_eq!(item["reviews"][0]["reviewer"], "e2e");
    assert_eq!(item["feedback"][0]["outcome"], 1.4);

    // The decision and the outcome are records of the chain, verifiable like any other.
    let chained = get(&proxy.admin_url("/api/v1/records?route=_review"))
        .await
        .json();
    let decision = &chained["records"][0]["request"];
    assert_eq!(decision["record_id"], id.as_str());
    assert_eq!(decision["decision"], "override");
    let feedback = get(&proxy.admin_url("/api/v1/records?route=_feedback"))
        .await
        .json();
    assert_eq!(feedback["records"][0]["request"]["record_id"], id.as_str());
    let db = state.path().join("audit.db");
    let (code, report) = audit_verify(&["--db", db.to_str().unwrap()]);
    assert_eq!(code, 0, "{report}");
}

#[tokio::test]
async fn a_held_response_waits_for_the_decision_or_the_fallback() {
    let model = ModelServer::start().await;
    let state = tempfile::tempdir().unwrap();
    let proxy = std::sync::Arc::new(
        ready(
            &model,
            state.path(),
            "header = \"x-sidelight-review\"\nhold = \"20s\"",
        )
        .await,
    );
    let started = Instant::now();
    let held = {
        let proxy = proxy.clone();
        tokio::spawn(async move {
            post(
                &proxy,
                "/v1/models/m:predict",
                kserve_body(&[3]),
                &[("x-sidelight-review", "yes")],
            )
            .await
        })
    };
    // The reviewer finds it in the queue while the client waits…
    let id = loop {
        let queue = get(&proxy.admin_url("/api/v1/reviews")).await.json();
        if let Some(r) = queue["records"].as_array().unwrap().first() {
            break r["id"].as_str().unwrap().to_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "nothing queued"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!held.is_finished(), "the response did not wait");
    let decided = admin_json(
        &proxy,
        Method::POST,
        &format!("/api/v1/reviews/{id}"),
        json!({"decision": "override", "outcome": {"score": 0.0}, "reason": "manual check"}),
    )
    .await;
    assert_eq!(decided.status, 200);
    // …and gets the model's answer with the reviewer's outcome next to it.
    let answer = held.await.unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(review_header(&answer), "overridden");
    let body = answer.json();
    assert!(body["predictions"].is_array(), "{body}");
    assert_eq!(body["review"]["outcome"], json!({"score": 0.0}));
    assert_eq!(body["review"]["reason"], "manual check");

    // With no decision in time and `reject`, the client gets 503.
    let state = tempfile::tempdir().unwrap();
    let proxy = ready(
        &model,
        state.path(),
        "header = \"x-sidelight-review\"\nhold = \"300ms\"\nhold_fallback = \"reject\"",
    )
    .await;
    let late = post(
        &proxy,
        "/v1/models/m:predict",
        kserve_body(&[3]),
        &[("x-sidelight-review", "1")],
    )
    .await;
    assert_eq!(late.status, 503);
    assert_eq!(late.error_code(), "review_timeout");
    // A request nobody asked to review is not held.
    let quick = post(&proxy, "/v1/models/m:predict", kserve_body(&[4]), &[]).await;
    assert_eq!(quick.status, 200);
}

#[tokio::test]
async fn close_calls_poorly_explained_rows_and_samples_are_flagged() {
    let model = ModelServer::start().await;
    let state = tempfile::tempdir().unwrap();
    // Bounds every prediction crosses: each rule must name itself.
    let proxy = ready(
        &model,
        state.path(),
        "threshold_margin = 1000.0\nlocal_error_above = 0.0\nsample_rate = 1.0",
    )
    .await;
    let answer = post(&proxy, "/v1/models/m:predict", kserve_body(&[7]), &[]).await;
    let header = review_header(&answer);
    for reason in ["near_threshold", "low_local_fidelity", "sampled"] {
        assert!(header.contains(reason), "{reason} missing from {header}");
    }
    // With no rule on, nothing is flagged.
    let state = tempfile::tempdir().unwrap();
    let quiet = ready(&model, state.path(), "").await;
    let answer = post(&quiet, "/v1/models/m:predict", kserve_body(&[7]), &[]).await;
    assert_eq!(review_header(&answer), "");
}
