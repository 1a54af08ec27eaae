//! The duties to the person, end to end through a real proxy and model: the route's
//! transparency notice in two languages, a customer contesting a decision through to
//! the reviewer's decision and the customer's view of it, and the subject's access to
//! their decisions before and after an erasure.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use http::Method;
use serde_json::{Value, json};
use sidelight_e2e::live::{config, kserve_body, post, warm_up};
use sidelight_e2e::model::ModelServer;
use sidelight_e2e::*;

/// An audited, encrypted route `m` whose decisions can be contested for 30 days, with
/// the protected `colour` monitored for fairness.
fn duties_config(model: &ModelServer, state: &Path) -> String {
    let routes = format!(
        "[audit]\npath = \"{}\"\nencrypt = true\nretention = \"400days\"\n{}\
         [[routes]]\nname = \"m\"\npath_prefix = \"/v1/models/m\"\n\
         [routes.explain]\nprotocol = \"kserve_v1\"\noutput = \"score\"\n\
         [[routes.explain.features]]\nname = \"a\"\nkind = \"numeric\"\n\
         [[routes.explain.features]]\nname = \"b\"\nkind = \"numeric\"\n\
         [[routes.explain.features]]\nname = \"c\"\nkind = \"numeric\"\ncustomer_visible = false\n\
         [[routes.explain.features]]\nname = \"colour\"\nkind = \"categorical\"\n\
         pii = true\nprotected = true\n\
         [routes.explain.surrogate]\nwarm_up_rows = 60\nretrain_every_rows = 100000\n\
         retrain_interval = \"1h\"\nmin_r2 = 0.0\n\
         [routes.review]\ncontest_within = \"30days\"\n\
         [routes.monitor]\n[[routes.monitor.protected]]\nfeature = \"colour\"\nprivileged = \"red\"\nunprivileged = [\"blue\"]\n",
        state.join("audit.db").display(),
        audit_key_file_line(state),
    );
    config(model, state, &routes)
}

async fn data(
    proxy: &InProcess,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Value,
) -> Answer {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    let body = if body.is_null() {
        empty()
    } else {
        full(body.to_string())
    };
    send(&client(), method, &proxy.url(path), &all, body).await
}

async fn admin(proxy: &InProcess, method: Method, path: &str, body: Value) -> Answer {
    let body = if body.is_null() {
        empty()
    } else {
        full(body.to_string())
    };
    send(
        &client(),
        method,
        &proxy.admin_url(path),
        &[("content-type", "application/json")],
        body,
    )
    .await
}

fn header(answer: &Answer, name: &str) -> String {
    answer
        .headers
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_customer_reads_the_notice_contests_a_decision_and_gets_their_records() {
    let model = ModelServer::start().await;
    let state = tempfile::tempdir().unwrap();
    let proxy = InProcess::start(&duties_config(&model, state.path()));
    warm_up(&proxy, "m", async |i| {
        post(&proxy, "/v1/models/m:predict", kserve_body(&[i]), &[]).await;
    })
    .await;

    // The notice: a page in English by default, in German on request, JSON for programs.
    let page = data(&proxy, Method::GET, "/v1/notice/m", &[], Value::Null).await;
    assert_eq!(page.status, 200);
    assert!(header(&page, "content-type").starts_with("text/html"));
    let text = String::from_utf8_lossy(&page.body).into_owned();
    assert!(text.contains("How an automated model takes part"), "{text}");
    assert!(
        text.contains("You can contest a decision within 30 days"),
        "{text}"
    );
    assert!(text.contains("for 400 days"), "{text}");
    assert!(text.contains("encrypted"), "{text}");
    let german = data(
        &proxy,
        Method::GET,
        "/v1/notice/m",
        &[("accept-language", "de-DE,de;q=0.9")],
        Value::Null,
    )
    .await;
    assert_eq!(header(&german, "content-language"), "de");
    let text = String::from_utf8_lossy(&german.body).into_owned();
    assert!(
        text.contains("Sie können eine Entscheidung innerhalb von 30 Tagen"),
        "{text}"
    );
    let facts = data(
        &proxy,
        Method::GET,
        "/v1/notice/m?format=json&lang=de",
        &[],
        Value::Null,
    )
    .await
    .json();
    assert_eq!(facts["language"], "de");
    assert_eq!(facts["facts"]["protected"], json!(["colour"]));
    // Only customer-visible features are named; the other is counted.
    assert_eq!(facts["facts"]["information_used"], json!(["a", "b"]));
    assert_eq!(facts["facts"]["other_details"], 1);
    assert_eq!(facts["facts"]["contest_within_days"], 30);
    assert_eq!(facts["facts"]["fairness_monitored"], true);
    let missing = data(&proxy, Method::GET, "/v1/notice/nope", &[], Value::Null).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.error_code(), "notice_not_found");

    // A decision about customer 7, with its record id and token.
    let answer = post(
        &proxy,
        "/v1/models/m:predict",
        kserve_body(&[3]),
        &[("x-sidelight-subject", "customer-7")],
    )
    .await;
    assert_eq!(answer.status, 200);
    let id = header(&answer, "x-sidelight-record-id");
    let token = header(&answer, "x-sidelight-feedback-token");
    assert!(!id.is_empty() && !token.is_empty(), "{:?}", answer.headers);

    // A wrong token is answered as an unknown record, in the customer's language.
    let de = [("accept-language", "de")];
    let wrong = data(
        &proxy,
        Method::POST,
        "/v1/contests",
        &de,
        json!({"id": id, "token": "0".repeat(32), "reason": "x"}),
    )
    .await;
    assert_eq!(wrong.status, 404);
    assert_eq!(wrong.error_code(), "record_not_found");
    let unknown = data(
        &proxy,
        Method::POST,
        "/v1/contests",
        &de,
        json!({"id": "no-such", "token": token, "reason": "x"}),
    )
    .await;
    assert_eq!(
        (unknown.status, unknown.json()),
        (wrong.status, wrong.json())
    );
    assert_eq!(
        wrong.json()["error"]["message"],
        "Zu dieser Referenz finden wir keine Entscheidung."
    );
    let no_reason = data(
        &proxy,
        Method::POST,
        "/v1/contests",
        &de,
        json!({"id": id, "token": token, "reason": "  "}),
    )
    .await;
    assert_eq!(no_reason.status, 400);
    assert_eq!(no_reason.error_code(), "bad_reason");

    // The contest, then the same again.
    let words = "My income has doubled since I applied";
    let contested = data(
        &proxy,
        Method::POST,
        "/v1/contests",
        &[],
        json!({"id": id, "token": token, "reason": words}),
    )
    .await;
    assert_eq!(contested.status, 202, "{:?}", contested.body);
    assert_eq!(contested.json()["state"], "contested");
    let again = data(
        &proxy,
        Method::POST,
        "/v1/contests",
        &[],
        json!({"id": id, "token": token, "reason": words}),
    )
    .await;
    assert_eq!(again.status, 409);
    assert_eq!(again.error_code(), "already_contested");
    let token_header = [
        ("x-sidelight-feedback-token", token.as_str()),
        ("accept-language", "de"),
    ];
    let status = data(
        &proxy,
        Method::GET,
        &format!("/v1/contests/{id}"),
        &token_header,
        Value::Null,
    )
    .await;
    assert_eq!(status.status, 200);
    assert_eq!(status.json()["state"], "contested");
    assert_eq!(
        status.json()["message"],
        "Eine Person prüft die Entscheidung."
    );
    let blind = data(
        &proxy,
        Method::GET,
        &format!("/v1/contests/{id}"),
        &[],
        Value::Null,
    )
    .await;
    assert_eq!(blind.status, 404);

    // The reviewer finds it on the contested queue and reads the customer's words.
    let queue = admin(
        &proxy,
        Method::GET,
        "/api/v1/reviews?state=contested",
        Value::Null,
    )
    .await
    .json();
    assert!(
        queue["records"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == id.as_str()),
        "{queue}"
    );
    let item = admin(
        &proxy,
        Method::GET,
        &format!("/api/v1/reviews/{id}"),
        Value::Null,
    )
    .await
    .json();
    assert_eq!(item["record"]["review_state"], "contested");
    assert_eq!(item["reviews"][0]["decision"], "contest");
    assert_eq!(item["reviews"][0]["reason"], words);
    // The words are sealed at rest: neither the database nor its WAL holds them.
    for file in ["audit.db", "audit.db-wal"] {
        let bytes = std::fs::read(state.path().join(file)).unwrap_or_default();
        assert!(
            !bytes.windows(words.len()).any(|w| w == words.as_bytes()),
            "{file} holds the customer's words in clear"
        );
    }
    let decided = admin(
        &proxy,
        Method::POST,
        &format!("/api/v1/reviews/{id}"),
        json!({"decision": "override", "outcome": 0.9, "reason": "income checked"}),
    )
    .await;
    assert_eq!(decided.status, 200, "{:?}", decided.body);
    let status = data(
        &proxy,
        Method::GET,
        &format!("/v1/contests/{id}"),
        &token_header,
        Value::Null,
    )
    .await
    .json();
    assert_eq!(status["state"], "overridden");
    assert!(status["decided_at"].is_string(), "{status}");
    assert_eq!(
        status["message"],
        "Eine Person hat die Entscheidung geprüft und geändert."
    );

    // The report counts the contest and maps each duty to what this deployment does.
    let report = admin(&proxy, Method::GET, "/api/v1/report", Value::Null).await;
    assert_eq!(report.status, 200, "{:?}", report.body);
    let report = report.json();
    let contests = &report["reviews"]["contests"];
    assert_eq!(
        (
            &contests["contested"],
            &contests["decided"],
            &contests["overturned"]
        ),
        (&json!(1), &json!(1), &json!(1)),
        "{contests}"
    );
    let duties = report["duties"]["duties"].as_array().unwrap();
    let duty = |name: &str| {
        duties
            .iter()
            .find(|d| d["duty"] == name)
            .unwrap_or_else(|| panic!("no duty {name} in {duties:?}"))
            .clone()
    };
    let contesting = duty("Contesting a decision");
    assert_eq!(contesting["status"], "in_place");
    assert!(
        contesting["what"]
            .as_str()
            .unwrap()
            .contains("contested 1, decided 1, overturned 1"),
        "{contesting}"
    );
    assert!(
        duty("Retention limits")["what"]
            .as_str()
            .unwrap()
            .contains("400 days")
    );
    // No reason codes on this route: the duty says so rather than hide.
    assert_eq!(
        duty("Specific principal reasons for an unfavourable decision")["status"],
        "not_configured"
    );
    let page = admin(
        &proxy,
        Method::GET,
        "/api/v1/report?format=html",
        Value::Null,
    )
    .await;
    assert!(
        String::from_utf8_lossy(&page.body).contains("9. Duties and what this deployment does")
    );

    // The evidence pack: written by the proxy for an auditor, verified offline with the
    // audit key; a pack with one byte changed, or checked with another key, is refused.
    let pack = admin(&proxy, Method::GET, "/api/v1/evidence", Value::Null).await;
    assert_eq!(
        pack.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&pack.body)
    );
    assert_eq!(header(&pack, "content-type"), "application/x-tar");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evidence.tar");
    std::fs::write(&path, &pack.body).unwrap();
    let key = state.path().join("audit.key");
    let verify = |file: &Path, key: &Path| {
        cli(["evidence", "verify"])
            .arg(file)
            .arg("--key-file")
            .arg(key)
            .run()
    };
    let run = verify(&path, &key);
    assert_eq!(run.code, Some(0), "{}", run.text());
    assert!(run.text().contains("verified"), "{}", run.text());
    let listing = String::from_utf8_lossy(&pack.body).into_owned();
    for file in [
        "evidence/report.html",
        "evidence/report.json",
        "evidence/verification.json",
        "evidence/config/sidelight.redacted.toml",
        "evidence/surrogates.json",
        "evidence/notices/m.en.html",
        "evidence/notices/m.de.json",
        "evidence/manifest.sig",
    ] {
        assert!(listing.contains(file), "{file} not in the pack");
    }
    // Neither the key file's path nor the customer's words are in it.
    assert!(
        !listing.contains("audit.key"),
        "the key file's path is in the pack"
    );
    assert!(
        !listing.contains(words),
        "the customer's words are in the pack"
    );
    let mut altered = pack.body.to_vec();
    let at = listing.find("Audit report").unwrap();
    altered[at] = b'a';
    let tampered = dir.path().join("tampered.tar");
    std::fs::write(&tampered, &altered).unwrap();
    let run = verify(&tampered, &key);
    assert_eq!(run.code, Some(65), "{}", run.text());
    assert!(run.text().contains("report.html"), "{}", run.text());
    assert!(run.text().contains("altered"), "{}", run.text());
    // A checker without the audit key verifies with the evidence key alone.
    let printed = cli(["evidence", "key", "--key-file"]).arg(&key).run();
    assert_eq!(printed.code, Some(0), "{}", printed.text());
    let evidence_key = dir.path().join("evidence.key");
    std::fs::write(&evidence_key, printed.stdout.trim()).unwrap();
    let run = cli(["evidence", "verify"])
        .arg(&path)
        .arg("--evidence-key-file")
        .arg(&evidence_key)
        .run();
    assert_eq!(run.code, Some(0), "{}", run.text());
    let other_key = dir.path().join("other.key");
    std::fs::write(&other_key, "ab".repeat(32)).unwrap();
    let run = verify(&path, &other_key);
    assert_eq!(run.code, Some(65), "{}", run.text());
    assert!(run.text().contains("signature"), "{}", run.text());

    // The command line writes the same pack from the config and the log alone.
    let config_file = dir.path().join("sidelight.toml");
    std::fs::write(&config_file, duties_config(&model, state.path())).unwrap();
    let offline = dir.path().join("offline.tar");
    let run = cli(["evidence", "export", "--config"])
        .arg(&config_file)
        .arg("--out")
        .arg(&offline)
        .env("SIDELIGHT_AUDIT_KEY", AUDIT_KEY_HEX)
        .run();
    assert_eq!(run.code, Some(0), "{}", run.text());
    let run = verify(&offline, &key);
    assert_eq!(run.code, Some(0), "{}", run.text());

    // The subject's access: every decision about customer 7, in their language.
    let access = admin(
        &proxy,
        Method::POST,
        "/api/v1/subject-access",
        json!({"subject_id": "customer-7", "language": "de"}),
    )
    .await;
    assert_eq!(access.status, 200, "{:?}", access.body);
    let access = access.json();
    assert_eq!(access["records"], 1);
    let decision = &access["decisions"][0];
    assert_eq!(decision["id"], id.as_str());
    // Its explanation in the customer's words, or why there is none (this small test
    // surrogate may fit a row too poorly to explain it).
    let explained = &decision["explanations"][0];
    assert!(
        explained["explanation"].is_string() || explained["explanation_withheld"] == "low_fidelity",
        "{decision}"
    );
    assert_eq!(decision["reviews"][0]["by"], "you");
    assert_eq!(decision["reviews"][0]["reason"], words);
    assert_eq!(decision["reviews"][1]["decision"], "override");
    // Explanations never name the protected attribute: neither does the access answer.
    let information = decision["explanations"][0]["information"].to_string();
    assert!(!information.contains("colour"), "{information}");
    // The person's own request, as recorded, protected attribute included.
    assert!(
        decision["request_as_recorded"]["instances"][0]
            .get("colour")
            .is_some(),
        "{decision}"
    );
    let printable = admin(
        &proxy,
        Method::POST,
        "/api/v1/subject-access",
        json!({"subject_id": "customer-7", "format": "html"}),
    )
    .await;
    assert!(String::from_utf8_lossy(&printable.body).contains("<h1>Decisions about"));
    let gedruckt = admin(
        &proxy,
        Method::POST,
        "/api/v1/subject-access",
        json!({"subject_id": "customer-7", "format": "html", "language": "de"}),
    )
    .await;
    let page = String::from_utf8_lossy(&gedruckt.body).into_owned();
    assert!(page.contains("<h1>Entscheidungen über"), "{page}");
    assert!(page.contains("durch Sie"), "{page}");
    let nobody = admin(
        &proxy,
        Method::POST,
        "/api/v1/subject-access",
        json!({"subject_id": "customer-8"}),
    )
    .await;
    assert_eq!(nobody.status, 404);
    assert_eq!(nobody.error_code(), "no_records");

    // After the erasure the record says only that it was erased; the contest's words
    // are gone too, and the record can no longer be contested.
    let erased = admin(
        &proxy,
        Method::POST,
        "/api/v1/erasure",
        json!({"subject_id": "customer-7"}),
    )
    .await;
    assert_eq!(erased.status, 200, "{:?}", erased.body);
    let access = admin(
        &proxy,
        Method::POST,
        "/api/v1/subject-access",
        json!({"subject_id": "customer-7"}),
    )
    .await
    .json();
    let decision = access["decisions"][0].as_object().unwrap();
    assert_eq!(decision["erased"], true);
    let mut keys: Vec<&str> = decision.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["erased", "erased_at", "id"]);
    let item = admin(
        &proxy,
        Method::GET,
        &format!("/api/v1/reviews/{id}"),
        Value::Null,
    )
    .await
    .json();
    assert_eq!(item["reviews"][0]["reason"], "[erased]");
    let late = data(
        &proxy,
        Method::POST,
        "/v1/contests",
        &[],
        json!({"id": id, "token": token, "reason": words}),
    )
    .await;
    assert_eq!(late.status, 410);
    assert_eq!(late.error_code(), "record_erased");

    // Contests and decisions are in the chain, which verifies.
    let db = state.path().join("audit.db");
    let (code, report) = audit_verify(&["--db", db.to_str().unwrap()]);
    assert_eq!(code, 0, "{report}");
}
