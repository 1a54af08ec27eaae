//! Plain-language explanations end to end: the real binary in front of the demo's credit
//! model, with the wording of examples/narration as `narration.dir`: languages chosen by
//! Accept-Language, the three audiences, the route's decision words, next steps, and the
//! start-up checks of the wording.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use http::Method;
use serde_json::{Value, json};
use sidelight_demo_model::data::{FEATURE_NAMES, applications};
use sidelight_demo_model::server::PREDICT_PATH;
use sidelight_e2e::*;

/// The demo's own wording, used as a business would: a directory of .ftl files.
fn example_narration_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/narration")
}

const NUMERIC: [&str; 7] = [
    "duration_months",
    "credit_amount",
    "installment_rate_pct_income",
    "residence_since_years",
    "age_years",
    "existing_credits",
    "dependents",
];

/// Every credit feature; durations and amounts are actionable, age and sex protected.
fn features() -> String {
    FEATURE_NAMES
        .iter()
        .map(|name| {
            let kind = if NUMERIC.contains(name) {
                "numeric"
            } else {
                "categorical"
            };
            let extra = match *name {
                "duration_months" => {
                    "unit = \"months\"\nactionable = true\nmin = 4.0\nmax = 72.0\n"
                }
                "credit_amount" => "unit = \"DM\"\nactionable = true\nmin = 250.0\nmax = 20000.0\n",
                "age_years" | "personal_status_sex" | "foreign_worker" => {
                    "protected = true\ncustomer_visible = false\n"
                }
                _ => "",
            };
            format!("[[routes.explain.features]]\nname = \"{name}\"\nkind = \"{kind}\"\n{extra}")
        })
        .collect()
}

fn config(model: &str, state: &Path, narration: &Path, wording: &str) -> String {
    format!(
        "{}\n[state]\ndir = \"{}\"\n[narration]\ndir = \"{}\"\n\
         [[routes]]\nname = \"credit\"\npath_prefix = \"/v1/models/credit\"\n\
         [routes.explain]\nprotocol = \"kserve_v1\"\noutput = \"probability\"\n\
         audiences = [\"developer\", \"auditor\"]\n\
         decision = {{ favourable = \"approved\", unfavourable = \"declined\", higher_is_favourable = true, threshold = 0.5 }}\n\
         [routes.explain.wording]\n{wording}\n{}\
         [routes.explain.surrogate]\nwarm_up_rows = 300\nretrain_every_rows = 100000\n\
         min_r2 = 0.5\ncpu_share = 1.0\n{TRUSTED_LOOPBACK}",
        config_for(model, "", ""),
        state.display(),
        narration.display(),
        features()
    )
}

async fn start_model() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(sidelight_demo_model::server::serve(
        listener,
        std::future::pending(),
    ));
    format!("http://{addr}")
}

fn bodies() -> Vec<String> {
    applications()
        .unwrap()
        .into_iter()
        .map(|a| json!({ "instances": [a.application] }).to_string())
        .collect()
}

async fn ask(proxy: &InProcess, body: &str, headers: &[(&str, &str)]) -> Value {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    let answer = send(
        &client(),
        Method::POST,
        &proxy.url(PREDICT_PATH),
        &all,
        full(body.to_owned()),
    )
    .await;
    assert_eq!(answer.status, 200);
    answer.json()
}

/// Replays the data set in batches until the surrogate is in service.
async fn warm_up(proxy: &InProcess) {
    let rows: Vec<Value> = applications()
        .unwrap()
        .into_iter()
        .map(|a| serde_json::to_value(a.application).unwrap())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(90);
    for batch in rows.chunks(25).cycle() {
        ask(proxy, &json!({ "instances": batch }).to_string(), &[]).await;
        let surrogates = get(&proxy.admin_url("/api/v1/surrogates")).await.json();
        if !surrogates["routes"][0]["in_service"].is_null() {
            return;
        }
        assert!(Instant::now() < deadline, "no surrogate: {surrogates}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn languages_audiences_decision_words_and_next_steps() {
    let model = start_model().await;
    let state = tempfile::tempdir().unwrap();
    let proxy = InProcess::start(&config(
        &model,
        state.path(),
        &example_narration_dir(),
        "decision = \"custom-credit-decision\"",
    ));
    warm_up(&proxy).await;
    let bodies = bodies();

    // German for de-DE, from examples/narration/de/credit.ftl.
    let first =
        &ask(&proxy, &bodies[1], &[("accept-language", "de-DE,de;q=0.9")]).await["explanations"][0];
    assert_eq!(first["locale"], "de", "{first}");
    let text = first["text"].as_str().unwrap();
    assert!(text.contains("Kreditantrag"), "{text}");
    assert!(text.contains("Gründe") || text.contains("Grund"), "{text}");
    assert!(first["caveat"].is_boolean());

    // No French wording: English.
    let french =
        &ask(&proxy, &bodies[1], &[("accept-language", "fr-FR,fr;q=0.9")]).await["explanations"][0];
    assert_eq!(french["locale"], "en", "{french}");
    let text = french["text"].as_str().unwrap();
    assert!(
        text.starts_with("We cannot approve") || text.starts_with("Your loan application"),
        "{text}"
    );

    // The auditor reads the developer view and the record's consent and storage facts
    // (no audit log is configured here).
    let audited = &ask(
        &proxy,
        &bodies[1],
        &[
            ("x-sidelight-audience", "auditor"),
            ("x-request-id", "audit-1"),
        ],
    )
    .await["explanations"][0];
    let text = audited["text"].as_str().unwrap();
    assert!(text.starts_with("Decision: "), "{text}");
    assert!(text.contains("Pushed the prediction"), "{text}");
    assert!(text.contains("Record audit-1:0."), "{text}");
    assert!(text.contains("Consent: full."), "{text}");
    assert!(
        text.contains("Storage: nothing about this request is written to disk"),
        "{text}"
    );
    assert_eq!(audited["next_step"], Value::Null);

    // Declined customers get a next step on loan duration or amount only; approved ones
    // none. Following the step really turns the surrogate's decision.
    let mut steps = 0;
    for body in bodies.iter().take(150) {
        let explanation = ask(&proxy, body, &[]).await["explanations"][0].clone();
        let prediction = explanation["prediction"].as_f64().unwrap();
        let text = explanation["text"].as_str().unwrap_or_default();
        if prediction >= 0.5 {
            assert!(
                text.starts_with("Your loan application has been approved."),
                "{text}"
            );
            assert_eq!(explanation["next_step"], Value::Null, "{explanation}");
            continue;
        }
        assert!(text.starts_with("We cannot approve"), "{text}");
        let Some(step) = explanation["next_step"].as_str() else {
            continue;
        };
        assert!(
            step.starts_with("A shorter loan duration") || step.starts_with("A lower loan amount"),
            "{step}"
        );
        // A single change of loan duration: follow it and ask again.
        if let Some(months) = step
            .strip_prefix("A shorter loan duration (about ")
            .and_then(|rest| rest.strip_suffix(" months) would likely change the decision."))
        {
            let months: f64 = months.parse().unwrap();
            assert!((4.0..=72.0).contains(&months), "{step}");
            let mut changed: Value = serde_json::from_str(body).unwrap();
            changed["instances"][0]["duration_months"] = json!(months);
            let after = &ask(&proxy, &changed.to_string(), &[]).await["explanations"][0];
            assert!(
                after["surrogate_prediction"].as_f64().unwrap() >= 0.5,
                "{step}: {after}"
            );
            steps += 1;
        }
        if steps >= 3 {
            break;
        }
    }
    assert!(steps > 0, "no declined applicant got a next step to follow");
}

/// Runs `sidelight serve` with `config` expecting it to stop at start-up.
fn refused(config: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sidelight.toml");
    std::fs::write(&path, config).unwrap();
    let output = cli(["serve", "--config"]).arg(&path).run();
    (output.code, output.stderr)
}

#[test]
fn a_bad_ftl_file_stops_start_up_naming_file_and_line() {
    let narration = tempfile::tempdir().unwrap();
    std::fs::create_dir(narration.path().join("de")).unwrap();
    std::fs::write(
        narration.path().join("de/credit.ftl"),
        "feature-duration_months = Laufzeit\n    .your = Ihre Laufzeit\n\
         customer-caveat = Vorsicht: { $verdict }\n",
    )
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let (code, stderr) = refused(&config(
        "http://127.0.0.1:9",
        state.path(),
        narration.path(),
        "decision = \"custom-credit-decision\"",
    ));
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("narration.dir"), "{stderr}");
    assert!(stderr.contains("de/credit.ftl:3"), "{stderr}");
    assert!(stderr.contains("$verdict"), "{stderr}");
}

#[test]
fn wording_for_an_unknown_feature_or_with_a_bad_placeholder_stops_start_up() {
    let state = tempfile::tempdir().unwrap();
    let narration = example_narration_dir();
    let (code, stderr) = refused(&config(
        "http://127.0.0.1:9",
        state.path(),
        &narration,
        "features.loan_purpose = \"{ $your } mattered\"",
    ));
    assert_eq!(code, Some(64), "{stderr}");
    assert!(
        stderr.contains("routes[0].explain.wording.features.loan_purpose"),
        "{stderr}"
    );

    // A literal pattern with a placeholder the narrator does not offer: named with the
    // config file and the line it is on.
    let (code, stderr) = refused(&config(
        "http://127.0.0.1:9",
        state.path(),
        &narration,
        "decision = \"Result: { $verdict }\"",
    ));
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("routes[0].explain.wording"), "{stderr}");
    assert!(stderr.contains("sidelight.toml:"), "{stderr}");
    assert!(stderr.contains("$verdict"), "{stderr}");
}
