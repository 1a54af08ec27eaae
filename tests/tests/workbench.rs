//! The developer's workbench end to end: a real proxy with an audit log in front of the
//! test model `3a + 2bc + [colour = red]`; the summary, cohorts, dependence and slices
//! over what the log recorded, the export read back as CSV and Parquet, the what-if
//! against the real model, and the roles across them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use http::Method;
use serde_json::{Value, json};
use sidelight_e2e::live::{config, kserve_body, post};
use sidelight_e2e::model::{ModelServer, row, score};
use sidelight_e2e::*;

const VIEWER: &str = "sl_viewer-token-0123456789abcdef";

fn workbench_config(model: &ModelServer, state: &Path) -> String {
    let routes = format!(
        "[admin]\n[[admin.tokens]]\nname = \"vera\"\nrole = \"viewer\"\nsha256 = \"{}\"\n\
         [[admin.tokens]]\nname = \"ops\"\nrole = \"admin\"\nsha256 = \"{}\"\n\
         [audit]\npath = \"{}\"\n{}\
         [[routes]]\nname = \"m\"\npath_prefix = \"/v1/models/m\"\n\
         [routes.explain]\nprotocol = \"kserve_v1\"\noutput = \"score\"\n\
         [[routes.explain.features]]\nname = \"a\"\nkind = \"numeric\"\n\
         [[routes.explain.features]]\nname = \"b\"\nkind = \"numeric\"\n\
         [[routes.explain.features]]\nname = \"c\"\nkind = \"numeric\"\n\
         [[routes.explain.features]]\nname = \"colour\"\nkind = \"categorical\"\n\
         [routes.explain.surrogate]\nwarm_up_rows = 60\nretrain_every_rows = 100000\n\
         retrain_interval = \"1h\"\nmin_r2 = 0.0\n\
         [routes.privacy]\nfields = {{ c = \"band:0.5\" }}\n",
        sha256_hex(VIEWER),
        sha256_hex(TEST_ADMIN_TOKEN),
        state.join("audit.db").display(),
        audit_key_file_line(state),
    );
    config(model, state, &routes)
}

async fn admin(
    proxy: &InProcess,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> Answer {
    let mut headers = vec![("content-type", "application/json")];
    let bearer = format!("Bearer {}", token.unwrap_or(TEST_ADMIN_TOKEN));
    headers.push(("authorization", bearer.as_str()));
    let body = if body.is_empty() {
        empty()
    } else {
        full(body.to_owned())
    };
    send(&client(), method, &proxy.admin_url(path), &headers, body).await
}

async fn ask(proxy: &InProcess, path: &str) -> Answer {
    admin(proxy, Method::GET, path, None, "").await
}

/// Every recorded explanation of route `m`, as the records API shows them.
async fn recorded(proxy: &InProcess) -> Vec<Value> {
    let page = ask(proxy, "/api/v1/records?route=m&limit=1000")
        .await
        .json();
    page["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["attributions"].as_array().cloned())
        .flatten()
        .collect()
}

#[tokio::test]
async fn the_workbench_answers_from_the_audit_log_and_asks_the_real_model() {
    let model = ModelServer::start().await;
    let state = tempfile::tempdir().unwrap();
    let proxy = InProcess::start(&workbench_config(&model, state.path()));
    // Warm up until a surrogate is in service (the admin token is our own).
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut i = 0;
    loop {
        for _ in 0..10 {
            post(&proxy, "/v1/models/m:predict", kserve_body(&[i]), &[]).await;
            i += 1;
        }
        let surrogates = ask(&proxy, "/api/v1/surrogates").await.json();
        if surrogates["routes"][0]["in_service"].is_object() {
            break;
        }
        assert!(Instant::now() < deadline, "no surrogate: {surrogates}");
    }
    let mut ids = Vec::new();
    for i in 0..40 {
        let answer = post(
            &proxy,
            "/v1/models/m:predict",
            kserve_body(&[100 + i]),
            &[("x-request-id", &format!("wb-{i}"))],
        )
        .await;
        assert_eq!(answer.status, 200);
        // With an audit log, requests are kept under their record's id.
        ids.push(
            answer.headers["x-sidelight-record-id"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    // The audit writer records off the request path.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut rows = recorded(&proxy).await;
    while rows.len() < 40 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        rows = recorded(&proxy).await;
    }
    assert!(rows.len() >= 40, "{} rows recorded", rows.len());

    // The summary is the mean of the recorded attributions.
    let summary = ask(&proxy, "/api/v1/explanations/summary?route=m").await;
    assert_eq!(
        summary.status,
        200,
        "{}",
        String::from_utf8_lossy(&summary.body)
    );
    let summary = summary.json();
    assert_eq!(
        summary["period"]["rows"].as_u64().unwrap() as usize,
        rows.len()
    );
    assert_eq!(summary["period"]["truncated"], Value::Null);
    assert_eq!(summary["bucket"], "day");
    let features = summary["features"].as_array().unwrap();
    assert_eq!(features.len(), 4);
    for figure in features {
        let name = figure["feature"].as_str().unwrap();
        let contributions: Vec<f64> = rows
            .iter()
            .map(|r| {
                r["attributions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|a| a["feature"] == name)
                    .unwrap()["contribution"]
                    .as_f64()
                    .unwrap()
            })
            .collect();
        let n = contributions.len() as f64;
        let mean_abs = contributions.iter().map(|c| c.abs()).sum::<f64>() / n;
        assert!(
            (figure["mean_abs"].as_f64().unwrap() - mean_abs).abs() < 1e-9,
            "{figure}"
        );
        assert_eq!(figure["series"].as_array().unwrap().len(), 1);
    }
    // `a` counts most in `3a + 2bc + [red]` over these rows.
    assert_eq!(features[0]["feature"], "a");

    // Cohorts: red against the rest add up to the difference of mean predictions.
    let cohorts = ask(&proxy, "/api/v1/explanations/cohorts?route=m&a=colour=red").await;
    assert_eq!(
        cohorts.status,
        200,
        "{}",
        String::from_utf8_lossy(&cohorts.body)
    );
    let cohorts = cohorts.json();
    let total = cohorts["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["difference"].as_f64().unwrap())
        .sum::<f64>()
        + cohorts["base"].as_f64().unwrap();
    let gap = cohorts["mean_prediction_a"].as_f64().unwrap()
        - cohorts["mean_prediction_b"].as_f64().unwrap();
    assert!((total - gap).abs() < 1e-9, "{cohorts}");
    assert_eq!(cohorts["features"][0]["feature"], "colour", "{cohorts}");
    let bad = ask(&proxy, "/api/v1/explanations/cohorts?route=m&a=size=big").await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.error_code(), "unknown_feature");
    assert!(
        String::from_utf8_lossy(&bad.body).contains("`size`"),
        "{}",
        String::from_utf8_lossy(&bad.body)
    );
    let unknown = ask(&proxy, "/api/v1/explanations/summary?route=nope").await;
    assert_eq!(unknown.error_code(), "unknown_route");
    let empty_period = ask(
        &proxy,
        "/api/v1/explanations/summary?route=m&from=2001-01-01&to=2001-01-02",
    )
    .await;
    assert_eq!(empty_period.status, 404);
    assert_eq!(empty_period.error_code(), "no_rows");

    // Dependence and slices; a viewer sees slices without record ids.
    let dependence = ask(&proxy, "/api/v1/explanations/dependence?route=m&feature=a").await;
    assert_eq!(
        dependence.status,
        200,
        "{}",
        String::from_utf8_lossy(&dependence.body)
    );
    assert_eq!(
        dependence.json()["points"].as_array().unwrap().len(),
        rows.len()
    );
    let slices = ask(&proxy, "/api/v1/explanations/slices?route=m&min_rows=5").await;
    assert_eq!(
        slices.status,
        200,
        "{}",
        String::from_utf8_lossy(&slices.body)
    );
    assert!(
        !slices.json()["overall"]["examples"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let viewed = admin(
        &proxy,
        Method::GET,
        "/api/v1/explanations/slices?route=m&min_rows=5",
        Some(VIEWER),
        "",
    )
    .await;
    assert_eq!(viewed.status, 200);
    assert!(
        viewed.json()["overall"]["examples"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let refused = admin(
        &proxy,
        Method::GET,
        "/api/v1/explanations/export?route=m",
        Some(VIEWER),
        "",
    )
    .await;
    assert_eq!(refused.status, 403);

    // The export adds up on every row.
    let csv = ask(&proxy, "/api/v1/explanations/export?route=m&format=csv").await;
    assert_eq!(csv.status, 200, "{}", String::from_utf8_lossy(&csv.body));
    assert!(
        csv.headers["content-disposition"]
            .to_str()
            .unwrap()
            .contains(".csv")
    );
    let text = String::from_utf8_lossy(&csv.body).into_owned();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let at = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let mut exported = 0;
    for line in lines {
        // Bands such as "[0.5, 1)" are quoted: split on the rest only.
        let cells: Vec<String> = csv_cells(line);
        let number = |name: &str| cells[at(name)].parse::<f64>().unwrap();
        let sum = number("base_value")
            + ["a", "b", "c", "colour"]
                .iter()
                .map(|f| number(&format!("shap_{f}")))
                .sum::<f64>();
        assert!((sum - number("prediction")).abs() < 1e-9, "{line}");
        // `c` is banded by the privacy policy: personal, so masked in an export.
        assert_eq!(cells[at("c")], "•••", "{line}");
        exported += 1;
    }
    assert_eq!(exported, rows.len());
    let parquet = ask(&proxy, "/api/v1/explanations/export?route=m").await;
    assert_eq!(parquet.status, 200);
    assert_eq!(
        parquet.headers["content-type"],
        "application/vnd.apache.parquet"
    );
    let bytes = parquet.body.as_ref();
    assert!(bytes.starts_with(b"PAR1") && bytes.ends_with(b"PAR1"));

    // What-if: the model's own answer for the changed row, not recorded.
    let before = ask(&proxy, "/api/v1/records?route=m&limit=1000")
        .await
        .json()["records"]
        .as_array()
        .unwrap()
        .len();
    let (a, b, c, colour) = row(100 + 7);
    let whatif = admin(
        &proxy,
        Method::POST,
        "/api/v1/whatif",
        None,
        &json!({"record": ids[7], "changes": {"a": 0.95, "colour": "red"}}).to_string(),
    )
    .await;
    assert_eq!(
        whatif.status,
        200,
        "{}",
        String::from_utf8_lossy(&whatif.body)
    );
    let whatif = whatif.json();
    let original = whatif["original"]["model_prediction"].as_f64().unwrap();
    let changed = whatif["changed"]["model_prediction"].as_f64().unwrap();
    assert!((original - score(a, b, c, colour)).abs() < 1e-9, "{whatif}");
    assert!(
        (changed - score(0.95, b, c, "red")).abs() < 1e-9,
        "{whatif}"
    );
    assert!(
        (whatif["difference"]["model_prediction"].as_f64().unwrap() - (changed - original)).abs()
            < 1e-9
    );
    assert_eq!(whatif["recorded"], false);
    assert_eq!(whatif["restricted"][0]["feature"], "c");
    assert!(
        whatif["restricted"][0]["kept"]
            .as_str()
            .unwrap()
            .starts_with('[')
    );
    let after = ask(&proxy, "/api/v1/records?route=m&limit=1000")
        .await
        .json()["records"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(before, after, "a what-if is never recorded as a decision");
    for (body, status, code) in [
        (
            json!({"record": ids[7], "changes": {"c": 0.1}}),
            422,
            "whatif_restricted",
        ),
        (
            json!({"record": ids[7], "changes": {"a": "high"}}),
            400,
            "bad_change",
        ),
        (
            json!({"record": ids[7], "changes": {"size": 1}}),
            400,
            "unknown_feature",
        ),
        (json!({"record": ids[7], "changes": {}}), 400, "bad_body"),
        (
            json!({"record": "nobody", "changes": {"a": 1}}),
            404,
            "request_not_found",
        ),
    ] {
        let answer = admin(
            &proxy,
            Method::POST,
            "/api/v1/whatif",
            None,
            &body.to_string(),
        )
        .await;
        assert_eq!(
            answer.status,
            status,
            "{body}: {}",
            String::from_utf8_lossy(&answer.body)
        );
        assert_eq!(answer.error_code(), code, "{body}");
    }
    // The same export offline, from the log the proxy writes, with the command.
    let config_file = state.path().join("sidelight.toml");
    std::fs::write(&config_file, workbench_config(&model, state.path())).unwrap();
    let out = state.path().join("explanations.csv");
    let run = cli([
        "explanations",
        "export",
        "--config",
        config_file.to_str().unwrap(),
        "--route",
        "m",
        "--format",
        "csv",
        "--out",
        out.to_str().unwrap(),
    ])
    .run_async()
    .await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let offline = std::fs::read_to_string(&out).unwrap();
    assert_eq!(offline.lines().count(), rows.len() + 1);
    assert_eq!(offline.lines().next(), text.lines().next());
    // The banded `c` is masked offline too.
    assert!(
        offline.lines().skip(1).all(|l| l.contains("•••")),
        "{offline}"
    );
    let capped = cli([
        "explanations",
        "export",
        "--config",
        config_file.to_str().unwrap(),
        "--route",
        "m",
        "--max-rows",
        "3",
        "--out",
        state.path().join("capped.parquet").to_str().unwrap(),
    ])
    .run_async()
    .await;
    assert_eq!(capped.code, Some(65), "{}", capped.stderr);
    assert!(
        capped.stderr.contains("more than 3 explained rows"),
        "{}",
        capped.stderr
    );
    assert!(!state.path().join("capped.parquet").exists());
    let unknown = cli([
        "explanations",
        "export",
        "--config",
        config_file.to_str().unwrap(),
        "--route",
        "shop",
    ])
    .run_async()
    .await;
    assert_eq!(unknown.code, Some(64));
    assert!(
        unknown.stderr.contains("--route shop"),
        "{}",
        unknown.stderr
    );

    // Each question is an admin action in the log.
    let actions = ask(&proxy, "/api/v1/records?route=_admin&limit=1000")
        .await
        .json();
    let text = actions.to_string();
    for action in ["explanations.summary", "explanations.export", "whatif"] {
        assert!(text.contains(action), "{action} not recorded");
    }

    // After a restart the workbench answers from the log as before; a what-if on a
    // record no longer in memory is read from the log, which keeps `c` banded, not as
    // the model saw it: refused, saying why.
    let explained_rows = rows.len();
    drop(proxy);
    let proxy = InProcess::start(&workbench_config(&model, state.path()));
    let summary = ask(&proxy, "/api/v1/explanations/summary?route=m").await;
    assert_eq!(
        summary.status,
        200,
        "{}",
        String::from_utf8_lossy(&summary.body)
    );
    assert!(summary.json()["period"]["rows"].as_u64().unwrap() as usize >= explained_rows);
    let old = json!({"record": ids[3], "changes": {"a": 0.5}}).to_string();
    let answer = admin(&proxy, Method::POST, "/api/v1/whatif", None, &old).await;
    assert!(
        ["whatif_restricted", "whatif_no_target", "no_surrogate"]
            .contains(&answer.error_code().as_str()),
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    post(&proxy, "/v1/models/m:predict", kserve_body(&[3]), &[]).await;
    let answer = admin(&proxy, Method::POST, "/api/v1/whatif", None, &old).await;
    assert_eq!(
        answer.status,
        422,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(answer.error_code(), "whatif_restricted");
    let message = answer.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("no longer in memory") && message.contains("c (band:0.5)"),
        "{message}"
    );
}

/// The cells of one CSV line (quoted cells may hold commas).
fn csv_cells(line: &str) -> Vec<String> {
    let mut cells = vec![String::new()];
    let mut quoted = false;
    for ch in line.chars() {
        match ch {
            '"' => quoted = !quoted,
            ',' if !quoted => cells.push(String::new()),
            other => cells.last_mut().unwrap().push(other),
        }
    }
    cells
}
