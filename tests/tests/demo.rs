//! `sidelight demo` starts with no configuration, serves predictions through the proxy,
//! and stops cleanly on Ctrl-C.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use http::Method;
use sidelight_e2e::demo::DemoProcess;
use sidelight_e2e::{client, console_page, console_session, full, get, send};

#[tokio::test]
async fn the_demo_serves_predictions_through_the_proxy_and_stops_on_sigint() {
    let state = tempfile::tempdir().unwrap();
    let mut demo = DemoProcess::start(state.path());
    demo.read_until("its URLs", Duration::from_secs(60), |l| {
        l.starts_with("Try:")
    });
    let proxy = demo.after("sidelight (proxy):");
    let admin = demo.after("sidelight admin:");
    // The demo makes an admin token for the run and prints it, with curl lines using it.
    demo.read_until("its admin calls", Duration::from_secs(10), |l| {
        l.contains("/api/v1/surrogates")
    });
    let lines = demo.lines.clone();
    let token = demo.after("admin token:");
    assert!(token.starts_with("sl_"), "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("SIDELIGHT_ADMIN_TOKEN={token}"))),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("curl")
                && l.contains("authorization: Bearer $SIDELIGHT_ADMIN_TOKEN")),
        "{lines:#?}"
    );
    // Without it, the records are closed.
    assert_eq!(get(&format!("{admin}/api/v1/records")).await.status, 401);

    let body = r#"{"instances": [{"checking_account": "no checking account", "duration_months": 12,
        "credit_history": "existing credits paid back duly till now", "purpose": "car (new)",
        "credit_amount": 2500, "savings": "... < 100 DM", "employed_since": "1 <= ... < 4 years",
        "installment_rate_pct_income": 2, "personal_status_sex": "female : divorced/separated/married",
        "other_debtors": "none", "residence_since_years": 2, "property": "car or other",
        "age_years": 35, "other_installment_plans": "none", "housing": "own", "existing_credits": 1,
        "job": "skilled employee/ official", "dependents": 1, "telephone": "no", "foreign_worker": "yes"}]}"#;
    let predict = async |body: String| {
        send(
            &client(),
            Method::POST,
            &format!("{proxy}/v1/models/credit:predict"),
            &[("content-type", "application/json")],
            full(body),
        )
        .await
    };
    let answer = predict(body.to_owned()).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let p = answer.json()["predictions"][0].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&p));

    // The replayed traffic goes through the proxy too.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let metrics = get(&format!("{admin}/metrics")).await;
        let text = String::from_utf8_lossy(&metrics.body).into_owned();
        let replayed = text
            .lines()
            .find(|l| {
                l.starts_with(
                    "sidelight_requests_total{route=\"credit\",method=\"POST\",status=\"200\"}",
                )
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        if replayed >= 5 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no replayed traffic reached the proxy:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // After warm-up on the replayed traffic, predictions come with explanations, in the
    // customer's words, never naming a protected attribute.
    let deadline = Instant::now() + Duration::from_secs(60);
    let explained = loop {
        let answer = predict(body.to_owned()).await;
        let json = answer.json();
        if json.get("explanations").is_some() {
            break json;
        }
        assert!(
            Instant::now() < deadline,
            "no explanation after warm-up: {json}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let explanation = &explained["explanations"][0];
    let text = explanation["text"].as_str().unwrap_or_default();
    // The route's own decision sentence (examples/narration/en/credit.ftl), then reasons.
    assert!(
        text.starts_with("We cannot approve your loan application")
            || text.starts_with("Your loan application has been approved."),
        "{explanation}"
    );
    assert!(text.contains("The main reason"), "{explanation}");
    // A declined application lists its principal reasons as codes with statements
    // (at most four, from the demo's list, none about a protected attribute); an
    // approved one lists none.
    let codes = explanation["reason_codes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if text.starts_with("Your loan application has been approved.") {
        assert!(codes.is_empty(), "{explanation}");
    }
    // A clearly weak application: overdrawn account, a long large loan, no savings.
    let weak = body
        .replace("no checking account", "... < 0 DM")
        .replace("\"duration_months\": 12", "\"duration_months\": 60")
        .replace("\"credit_amount\": 2500", "\"credit_amount\": 15000")
        .replace(
            "existing credits paid back duly till now",
            "no credits taken/ all credits paid back duly",
        );
    let answer = predict(weak).await;
    let declined = answer.json()["explanations"][0].clone();
    let text = declined["text"].as_str().unwrap_or_default().to_owned();
    let codes = declined["reason_codes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(text.starts_with("We cannot approve"), "{declined}");
    {
        assert!((1..=4).contains(&codes.len()), "{explanation}");
        for code in &codes {
            let statement = code["statement"].as_str().unwrap_or_default();
            assert!(
                !statement.is_empty() && !statement.contains("custom-"),
                "{code}"
            );
            assert!(code["weight"].as_f64().unwrap_or(0.0) > 0.0, "{code}");
        }
    }
    for protected in ["age", "sex", "foreign", "personal status"] {
        assert!(!text.contains(protected), "{text}");
    }
    // The route's notice, in German, in the route's own words, with its reason codes;
    // protected attributes only as information explanations never use.
    let notice = get(&format!("{proxy}/v1/notice/credit?format=json&lang=de"))
        .await
        .json();
    assert_eq!(
        notice["title"], "Wie wir über Kreditanträge entscheiden",
        "{notice}"
    );
    assert_eq!(
        notice["facts"]["reason_codes"].as_array().map(Vec::len),
        Some(10)
    );
    let used = notice["facts"]["information_used"].to_string();
    assert!(
        used.contains("Sparguthaben") || used.contains("Ersparnisse"),
        "{used}"
    );
    for protected in ["Alter", "Familienstand"] {
        assert!(!used.contains(protected), "{used}");
    }
    assert_eq!(notice["facts"]["contest_within_days"], 30);
    let features: Vec<&str> = explanation["attributions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["feature"].as_str().unwrap())
        .collect();
    assert!(!features.contains(&"age_years") && !features.contains(&"personal_status_sex"));

    // Once the surrogate is in service the demo prints, once, what customers and
    // developers read, in English and German.
    demo.read_until("the side-by-side texts", Duration::from_secs(60), |l| {
        l.trim_start().starts_with("developer, de")
    });
    let lines = demo.lines.clone();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("customer, de") && l.contains("Kreditantrag")),
        "{lines:#?}"
    );
    // The developer's German text names the decision in German, in the route's words.
    assert!(
        lines.iter().any(|l| l.contains("developer, de")
            && (l.contains("Entscheidung: abgelehnt") || l.contains("Entscheidung: genehmigt"))),
        "{lines:#?}"
    );
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("Entscheidung: declined") || l.contains("Entscheidung: approved")),
        "{lines:#?}"
    );

    // Every request is in the audit log, its subject pseudonymised and age banded.
    let bearer = format!("Bearer {token}");
    let page = send(
        &client(),
        Method::GET,
        &format!("{admin}/api/v1/records?limit=50"),
        &[("authorization", &bearer)],
        sidelight_e2e::empty(),
    )
    .await
    .json();
    let record = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| !r["subject"].is_null())
        .unwrap_or_else(|| panic!("no replayed applicant among {page}"));
    assert!(
        record["subject"].as_str().unwrap().starts_with("ps_"),
        "{record}"
    );
    let age = &record["request"]["instances"][0]["age_years"];
    assert!(age.as_str().is_some_and(|a| a.starts_with('[')), "{record}");
    assert!(
        lines.iter().any(|l| l.contains("/api/v1/erasure")),
        "{lines:#?}"
    );

    let (status, rest) = demo.interrupt(Duration::from_secs(15));
    let status = status.expect("the demo did not stop on SIGINT");
    assert!(status.success(), "exit status {status:?}");
    assert!(rest.iter().any(|l| l.starts_with("stopped:")), "{rest:#?}");
}

/// Whether a printed line is a command to paste: `curl …`, `export …`, or the demo's own
/// program (its path, possibly quoted). Headings, URLs and notes are not.
fn is_command(line: &str) -> bool {
    let Some(rest) = line.strip_prefix("  ") else {
        return false;
    };
    let first = rest.split_whitespace().next().unwrap_or_default();
    first == "curl" || first == "export" || first.trim_matches('\'').ends_with("/sidelight")
}

#[tokio::test]
async fn every_command_the_demo_prints_runs_as_printed() {
    // No --state-dir: the newcomer's first run, in a directory of its own.
    let mut demo = DemoProcess::start_in(None);
    // The last command block: the customer's side, printed once a surrogate is in
    // service and the demo has made (and can contest) a declined application.
    demo.read_until("its evidence command", Duration::from_secs(120), |l| {
        l.contains(" evidence verify ")
    });
    // Then the recommender's block, once its surrogate is in service: two customers'
    // top three in their words, and the contrast of two items with its curl.
    demo.read_until(
        "the recommender's contrast",
        Duration::from_secs(120),
        |l| l.contains("customer, en") && l.contains("is ranked above"),
    );
    let lines = demo.lines.clone();
    let recommended = lines
        .iter()
        .filter(|l| l.contains(" │ Recommended because "))
        .count();
    assert!(recommended >= 3, "{lines:#?}");
    assert!(
        lines.iter().any(
            |l| l.trim_start().starts_with("curl -s 'http://") && l.contains("/compare?a=SKU-")
        ),
        "{lines:#?}"
    );
    let state = lines
        .iter()
        .find_map(|l| {
            l.strip_prefix("This run's files (audit log and key, surrogate, report config) are in ")
        })
        .and_then(|rest| rest.split_once(", made for this run"))
        .map(|(dir, _)| std::path::PathBuf::from(dir))
        .unwrap_or_else(|| panic!("no fresh state directory in {lines:#?}"));
    // Removed at the end, whatever happens.
    let _cleanup = RemoveOnDrop(state.clone());
    assert!(
        state.starts_with(std::env::temp_dir()),
        "{}",
        state.display()
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&state).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "{}", state.display());
    assert!(state.join("audit.key").exists());

    let commands: Vec<String> = lines.iter().filter(|l| is_command(l)).cloned().collect();
    assert!(commands.len() >= 12, "{lines:#?}");
    for line in &lines {
        assert!(
            !line.contains('…'),
            "a placeholder in a printed line: {line}"
        );
    }
    // No command calls `sidelight` by a name only the PATH knows.
    for command in &commands {
        let first = command.split_whitespace().next().unwrap();
        assert_ne!(first, "sidelight", "{command}");
    }

    // Let the surrogate come into service, so that the explained curl lines and the
    // report have something to show.
    demo.read_until("the side-by-side texts", Duration::from_secs(90), |l| {
        l.trim_start().starts_with("developer, de")
    });

    // The console's overview says what is true of this run: every prediction since the
    // surrogate came into service is explained; the ones before were warm-up rows, and
    // are labelled so in the records list. (Before the printed commands run: one of
    // them erases an applicant, which retires the surrogate that learnt from them until
    // the next is trained.)
    let admin = demo.after("sidelight admin:");
    let proxy = demo.after("sidelight (proxy):");
    let token = demo.after("admin token:");
    // One request over the route's inspection limit (1 MiB in the demo): served, not
    // explained, and counted on the overview.
    let big = format!(
        r#"{{"instances": [], "padding": "{}"}}"#,
        "x".repeat(1024 * 1024 + 10)
    );
    let answer = send(
        &client(),
        Method::POST,
        &format!("{proxy}/v1/models/credit:predict"),
        &[("content-type", "application/json")],
        full(big),
    )
    .await;
    assert!(
        answer
            .headers
            .get("x-sidelight-status")
            .is_some_and(|v| v.to_str().unwrap().starts_with("request_over_limit")),
        "{:?}",
        answer.headers
    );
    let session = console_session(&admin, &token).await;
    let overview = console_page(&admin, "/console", &session).await;
    let coverage = overview
        .split("Explanation coverage")
        .nth(1)
        .and_then(|rest| rest.split("</dd>").next())
        .unwrap_or_else(|| panic!("no coverage in {overview}"))
        .to_owned();
    assert!(
        coverage.contains("since the first surrogate came into service")
            || coverage.contains("in the last"),
        "{coverage}"
    );
    let percent: f64 = coverage
        .split('%')
        .next()
        .and_then(|head| head.rsplit('>').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no percentage in {coverage}"));
    assert!(percent >= 90.0, "{coverage}");
    assert!(coverage.contains("were warm-up rows"), "{coverage}");
    assert!(
        overview.contains("Over the inspection limit</dt><dd>1 request since start"),
        "{overview}"
    );
    let records = console_page(&admin, "/console/records?route=credit", &session).await;
    assert!(records.contains("— (warm-up)"), "{records}");

    // As a user pastes them into one terminal, in order: a line after `export` sees the
    // variable. Each runs as printed, with `sh -c`, in a directory of its own (the
    // report and export lines write files there).
    let cwd = tempfile::tempdir().unwrap();
    let mut exports = String::new();
    for command in &commands {
        let script = format!("{exports}{}", command.trim_start());
        let output = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .current_dir(cwd.path())
            .env_remove("SIDELIGHT_ADMIN_TOKEN")
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "{command}\nexited {:?}\n{stdout}\n{stderr}",
            output.status
        );
        let first = command.split_whitespace().next().unwrap();
        if first == "export" {
            exports.push_str(command.trim_start());
            exports.push_str("; ");
        } else if first == "curl" && !command.contains('>') {
            // curl -s exits 0 on any HTTP status: what it printed must be an answer.
            assert!(!stdout.trim().is_empty(), "{command}: no answer");
            assert!(
                !stdout.contains("\"error\""),
                "{command}\nanswered an error: {stdout}"
            );
        }
    }
    // Both reports compare the traffic since the surrogate came into service with the
    // warm-up traffic before it: their drift section has a reference with data.
    for file in ["report.html", "report-cli.html"] {
        let report = std::fs::read_to_string(cwd.path().join(file)).unwrap();
        assert!(
            report.contains("<html") || report.contains("<!DOCTYPE"),
            "{file}"
        );
        assert!(!report.contains("has no records"), "{file}: {report}");
    }
    // The workbench's export, as a notebook reads it.
    let parquet = std::fs::read(cwd.path().join("credit.parquet")).unwrap();
    assert!(parquet.starts_with(b"PAR1") && parquet.ends_with(b"PAR1"));
    let csv = std::fs::read_to_string(cwd.path().join("audit.csv")).unwrap();
    assert!(csv.lines().count() > 10, "{csv}");
    // The customer's records as a printable page, and the evidence pack (verified by
    // the printed `evidence verify`, which exited 0 above).
    let access = std::fs::read_to_string(cwd.path().join("access.html")).unwrap();
    assert!(access.contains("<h1>Decisions about"), "{access}");
    assert!(access.contains("My savings are higher"), "{access}");
    assert!(
        std::fs::metadata(cwd.path().join("evidence.tar"))
            .unwrap()
            .len()
            > 10_000,
        "the evidence pack is too small to hold the report"
    );

    // Stopped before its directory is removed.
    let (status, _) = demo.interrupt(Duration::from_secs(15));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}

/// Removes a directory the demo made, when the test ends.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
