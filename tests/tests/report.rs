//! The audit report of the demo's traffic: `GET /api/v1/report` from the running demo
//! (JSON with every section filled, HTML with charts and no script) and `sidelight
//! report` from the command line over the same audit log, with its errors named.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::Method;
use serde_json::Value;
use sidelight_e2e::demo::DemoProcess;
use sidelight_e2e::{CliRun, client, empty, full, run_cli, send};

const SECTIONS: [&str; 8] = [
    "1. The system",
    "2. Global feature importance",
    "3. Fairness and alerts",
    "4. Drift",
    "5. Consent and opt-out",
    "6. Reviews and overrides",
    "7. Erasures",
    "8. Verification of the audit log",
];
const KEYS: [&str; 8] = [
    "system",
    "importance",
    "fairness",
    "drift",
    "consent",
    "reviews",
    "erasures",
    "verification",
];

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn report(admin: &str, bearer: &str, query: &str) -> sidelight_e2e::Answer {
    send(
        &client(),
        Method::GET,
        &format!("{admin}/api/v1/report?{query}"),
        &[("authorization", bearer)],
        empty(),
    )
    .await
}

#[tokio::test]
async fn a_report_of_the_demos_traffic_has_every_section() {
    let state = tempfile::tempdir().unwrap();
    let mut demo = DemoProcess::start(state.path());
    demo.read_until("its URLs", Duration::from_secs(60), |l| {
        l.starts_with("Try:")
    });
    // The traffic starts with the banner.
    let started = now_ms();
    // The report lines come once the first surrogate is in service.
    demo.read_until("a report line", Duration::from_secs(60), |l| {
        l.contains(" report --config ")
    });
    let lines = &demo.lines;
    let admin = demo.after("sidelight admin:");
    let bearer = format!("Bearer {}", demo.after("admin token:"));
    let config = lines
        .iter()
        .find_map(|l| l.split_once(" report --config "))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap()
        .to_owned();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("/api/v1/report?format=html")),
        "{lines:#?}"
    );

    // A subject's erasure, which the report lists without naming the subject.
    let erased = send(
        &client(),
        Method::POST,
        &format!("{admin}/api/v1/erasure"),
        &[
            ("authorization", &bearer),
            ("content-type", "application/json"),
        ],
        full(r#"{"subject_id": "applicant-1"}"#),
    )
    .await;
    assert_eq!(erased.status, 200, "{:?}", erased.body);
    let pseudonym = erased.json()["subject"].as_str().unwrap().to_owned();

    // Reports need an auditor.
    assert_eq!(
        send(
            &client(),
            Method::GET,
            &format!("{admin}/api/v1/report"),
            &[],
            empty()
        )
        .await
        .status,
        401
    );

    // Wait for explained traffic: the surrogate is trained after 200 rows.
    let deadline = Instant::now() + Duration::from_secs(120);
    let json: Value = loop {
        let answer = report(&admin, &bearer, "format=json").await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        let json = answer.json();
        let rows = json["fairness"]["routes"][0]["rows"].as_u64().unwrap_or(0);
        if rows >= 150 {
            break json;
        }
        assert!(Instant::now() < deadline, "no explained traffic: {json}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    for key in KEYS {
        assert!(json.get(key).is_some(), "no `{key}` in {json}");
    }
    assert_eq!(json["built_by"], "proxy");
    let system = &json["system"]["routes"][0];
    assert_eq!(system["route"], "credit");
    assert!(
        system["in_service"]["version"].as_u64().is_some(),
        "{system}"
    );
    assert!(system["in_service"]["r2"].as_f64().is_some(), "{system}");

    let features = json["importance"]["routes"][0]["summary"]["features"]
        .as_array()
        .unwrap();
    assert_eq!(features.len(), 20, "{features:?}");
    let protected: Vec<&str> = features
        .iter()
        .filter(|f| f["protected"] == true)
        .map(|f| f["feature"].as_str().unwrap())
        .collect();
    assert!(protected.contains(&"age_years") && protected.contains(&"personal_status_sex"));

    // Groups are found through the privacy policy: sex is pseudonymised and age kept as
    // a five-year band, yet both land in the configured groups.
    let attributes = json["fairness"]["routes"][0]["attributes"]
        .as_array()
        .unwrap();
    assert_eq!(attributes.len(), 2, "{attributes:?}");
    for a in attributes {
        let groups = a["groups"].as_array().unwrap();
        let counted: u64 = groups.iter().map(|g| g["count"].as_u64().unwrap()).sum();
        assert!(counted > 0, "{a}");
        assert!(
            groups[0]["count"].as_u64().unwrap() > 0,
            "privileged group empty: {a}"
        );
        assert!(counted + a["unlisted"].as_u64().unwrap() == a["total"].as_u64().unwrap());
    }
    assert_eq!(attributes[0]["attribute"], "personal_status_sex");
    assert_eq!(attributes[1]["groups"][1]["group"], "<25");
    assert!(attributes[1]["groups"][1]["count"].as_u64().unwrap() > 0);

    let consent = &json["consent"]["total"];
    assert_eq!(consent["total"], json["system"]["records"]);
    assert!(consent["total"].as_u64().unwrap() > 0);
    assert!(
        json["reviews"]["flagged"].as_u64().unwrap() > 0,
        "{}",
        json["reviews"]
    );
    assert_eq!(json["erasures"]["actions"].as_array().unwrap().len(), 1);
    assert!(
        json["verification"]["ok"] == true,
        "{}",
        json["verification"]
    );
    assert!(json["verification"]["records"].as_u64().unwrap() > 0);
    // The default reference (the 30 days before) is empty, and the report says so.
    assert!(
        json["drift"]["note"]
            .as_str()
            .unwrap_or_default()
            .contains("reference"),
        "{}",
        json["drift"]
    );
    let text = json.to_string();
    assert!(!text.contains(&pseudonym), "a subject in the report");
    assert!(!text.contains("applicant-"), "a subject in the report");

    // Against the first half of the traffic, every feature has a drift figure.
    let mid = (started + now_ms()) / 2;
    let query = format!("from={mid}&reference_from={started}&reference_to={mid}");
    let split = report(&admin, &bearer, &format!("{query}&format=json"))
        .await
        .json();
    let drift = &split["drift"]["routes"][0];
    assert_eq!(drift["features"].as_array().unwrap().len(), 20, "{drift}");
    assert!(drift["prediction"]["psi"].as_f64().is_some(), "{drift}");

    let html = report(&admin, &bearer, &format!("{query}&format=html")).await;
    assert_eq!(html.status, 200);
    assert_eq!(html.headers["content-type"], "text/html; charset=utf-8");
    let html = String::from_utf8(html.body.to_vec()).unwrap();
    for heading in SECTIONS {
        assert!(
            html.contains(&format!("<h2>{heading}</h2>")),
            "no {heading}"
        );
    }
    let sections: Vec<&str> = html.split("<section").skip(1).collect();
    // The nine sections (the last the duty map), then the definitions of the figures.
    assert_eq!(sections.len(), 10);
    assert!(sections[8].contains("Duties and what this deployment does"));
    assert!(sections[8].contains("Logging of every decision"));
    assert!(sections[9].contains("Definitions of the figures"));
    assert!(sections[9].contains("SR_u / SR_p, from 0 with no upper bound"));
    // Importance, fairness, drift and consent have charts.
    for i in [1, 2, 3, 4] {
        assert!(sections[i].contains("<svg"), "no chart in {}", SECTIONS[i]);
    }
    assert!(!html.contains("<script") && !html.contains("<link") && !html.contains("src="));
    assert!(html.contains("@media print"));
    let md = report(&admin, &bearer, "format=md").await;
    assert_eq!(md.headers["content-type"], "text/markdown; charset=utf-8");
    assert!(String::from_utf8_lossy(&md.body).contains("## 8. Verification of the audit log"));
    assert_eq!(
        report(&admin, &bearer, "format=pdf").await.status,
        400,
        "an unknown format"
    );

    // The command line reads the same log, with the config the demo wrote.
    let from = started.to_string();
    let CliRun {
        code,
        stdout,
        stderr,
        ..
    } = run_cli(&[
        "report", "--config", &config, "--from", &from, "--format", "json",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let cli: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(cli["built_by"], "audit_log");
    assert!(
        cli["system"]["records"].as_u64().unwrap() >= json["system"]["records"].as_u64().unwrap()
    );
    assert_eq!(cli["consent"]["total"]["total"], cli["system"]["records"]);
    assert!(cli["verification"]["ok"] == true, "{}", cli["verification"]);
    assert_eq!(
        cli["fairness"]["routes"][0]["attributes"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let out = state.path().join("report.html");
    let CliRun { code, stderr, .. } = run_cli(&[
        "report",
        "--config",
        &config,
        "--from",
        &from,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let written = std::fs::read_to_string(&out).unwrap();
    assert!(SECTIONS.iter().all(|s| written.contains(s)));

    let CliRun { code, stderr, .. } =
        run_cli(&["report", "--config", &config, "--from", "yesterday"]);
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("--from"), "{stderr}");
    let CliRun { code, stderr, .. } = run_cli(&[
        "report",
        "--config",
        &config,
        "--from",
        "2026-11-02",
        "--to",
        "2026-11-01",
    ]);
    assert_eq!(code, Some(64), "{stderr}");
    assert!(
        stderr.contains("--from/--to") && stderr.contains("end after"),
        "{stderr}"
    );
    let bare = state.path().join("no-audit.toml");
    std::fs::write(&bare, "[upstream]\nurl = \"http://127.0.0.1:1\"\n").unwrap();
    let CliRun { code, stderr, .. } = run_cli(&[
        "report",
        "--config",
        bare.to_str().unwrap(),
        "--from",
        &from,
    ]);
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("[audit]"), "{stderr}");
}
