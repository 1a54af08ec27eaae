//! A fleet end to end: two real proxies (writers `a` and `b`) on one PostgreSQL
//! database in front of the test model. Concurrent traffic through both lands in one
//! log whose chains both verify; one replica trains and both serve its surrogate; the
//! trainer role moves when its proxy stops; erasure through one replica reaches the
//! records both wrote and the other replica's memory; a database outage gives 503s with
//! `fail_closed` and records flow again when it is back, with nothing acknowledged lost.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use sidelight_e2e::live::{config, kserve_body, post, status};
use sidelight_e2e::model::ModelServer;
use sidelight_e2e::postgres::PgServer;
use sidelight_e2e::*;

/// The database password in the URL: the test server trusts every local connection,
/// so it is accepted, and it must never be printed.
const PASSWORD: &str = "pw-7c1e93d0";
const CUSTOMERS: [&str; 4] = ["C-1001", "C-1002", "C-1003", "C-1004"];

fn fleet_config(model: &ModelServer, state: &Path, writer: &str, url_line: &str) -> String {
    let routes = format!(
        "[audit]\nbackend = \"postgres\"\n{url_line}\nwriter = \"{writer}\"\n\
         on_store_failure = \"fail_closed\"\npoll_interval = \"200ms\"\n\
         [[routes]]\nname = \"m\"\npath_prefix = \"/v1/models/m\"\n\
         [routes.explain]\nprotocol = \"kserve_v1\"\noutput = \"score\"\nreferences = true\n\
         [routes.explain.surrogate]\nwarm_up_rows = 60\nretrain_every_rows = 100000\n\
         retrain_interval = \"1h\"\nmin_r2 = 0.0\n"
    );
    config(model, state, &routes)
}

/// Sends row `i` for customer `i % 4`; returns the answer.
async fn send_row(proxy: &Proxy, i: usize) -> Answer {
    post(
        proxy,
        "/v1/models/m:predict",
        kserve_body(&[i]),
        &[("x-sidelight-subject", CUSTOMERS[i % 4])],
    )
    .await
}

fn record_id(answer: &Answer) -> String {
    answer.headers["x-sidelight-record-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

/// `sidelight_fleet_trainer{route="m"}` of a proxy.
async fn is_trainer(proxy: &Proxy) -> bool {
    metrics_text(proxy)
        .await
        .lines()
        .any(|l| l == "sidelight_fleet_trainer{route=\"m\"} 1")
}

/// The version a proxy serves on route `m`, and its history's length.
async fn serving(proxy: &Proxy) -> (Option<u64>, usize) {
    let s = get(&proxy.admin_url("/api/v1/surrogates")).await.json();
    let route = &s["routes"][0];
    (
        route["in_service"]["version"].as_u64(),
        route["history"].as_array().map_or(0, Vec::len),
    )
}

/// Waits (a minute at most) until `check` holds.
async fn eventually<F: AsyncFnMut() -> bool>(what: &str, mut check: F) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A JSON report has every section, counts `predictions` (as `psql` prints the count),
/// and verifies the chains of writers `a` and `b`.
fn check_report(report: &serde_json::Value, predictions: &str) {
    for section in [
        "system",
        "importance",
        "fairness",
        "drift",
        "consent",
        "reviews",
        "erasures",
        "verification",
    ] {
        assert!(report[section].is_object(), "no {section}: {report}");
    }
    assert_eq!(report["system"]["records"].to_string(), predictions);
    assert_eq!(report["consent"]["total"]["total"].to_string(), predictions);
    let v = &report["verification"];
    assert_eq!(v["ok"], true, "{v}");
    let writers = v["writers"].as_array().unwrap();
    let names: Vec<_> = writers
        .iter()
        .map(|w| w["writer"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b"], "{v}");
    // Each replica served 100 predictions of its own.
    assert!(
        writers.iter().all(|w| w["records"].as_u64().unwrap() > 100),
        "{v}"
    );
    let total: u64 = writers.iter().map(|w| w["records"].as_u64().unwrap()).sum();
    assert_eq!(v["records"], total, "{v}");
}

fn stored_ids(pg: &PgServer) -> BTreeSet<String> {
    pg.sql("fleet", "SELECT id FROM audit_records")
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_shares_one_log_one_trainer_and_erasure_and_rides_out_an_outage() {
    let mut pg = PgServer::start();
    let plain = pg.create_database("fleet");
    let url = plain.replace("postgres@", &format!("postgres:{PASSWORD}@"));
    let model = ModelServer::start().await;
    let (state_a, state_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // `a` takes the URL from the environment, `b` from a file (a mounted Secret).
    let url_file = state_b.path().join("database-url");
    std::fs::write(&url_file, format!("{url}\n")).unwrap();
    let a = Proxy::start_with_env(
        &fleet_config(&model, state_a.path(), "a", ""),
        &[
            ("SIDELIGHT_AUDIT_KEY", AUDIT_KEY_HEX),
            ("SIDELIGHT_AUDIT__URL", &url),
        ],
    );
    let b = Proxy::start_with_env(
        &fleet_config(
            &model,
            state_b.path(),
            "b",
            &format!("url_file = \"{}\"", url_file.display()),
        ),
        &[("SIDELIGHT_AUDIT_KEY", AUDIT_KEY_HEX)],
    );

    // Both replicas at once, four clients each.
    let mut acknowledged = BTreeSet::new();
    let mut tasks = Vec::new();
    for (p, proxy) in [&a, &b].into_iter().enumerate() {
        for t in 0..4 {
            let (data, admin) = (proxy.data, proxy.admin);
            tasks.push(tokio::spawn(async move {
                let proxy_url = format!("http://{data}/v1/models/m:predict");
                let mut ids = Vec::new();
                for k in 0..25 {
                    let i = p * 1000 + t * 100 + k;
                    let answer = send(
                        &client(),
                        http::Method::POST,
                        &proxy_url,
                        &[
                            ("content-type", "application/json"),
                            ("x-sidelight-subject", CUSTOMERS[i % 4]),
                        ],
                        full(kserve_body(&[i])),
                    )
                    .await;
                    assert_eq!(answer.status, 200, "{:?} (admin {admin})", answer.body);
                    ids.push(record_id(&answer));
                }
                ids
            }));
        }
    }
    for task in tasks {
        acknowledged.extend(task.await.unwrap());
    }
    assert_eq!(acknowledged.len(), 200);
    let stored = stored_ids(&pg);
    let lost: Vec<_> = acknowledged.difference(&stored).collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");

    // One trainer, and both replicas serve its surrogate, in responses too.
    eventually("both replicas serve the same surrogate", async || {
        let (va, vb) = (serving(&a).await.0, serving(&b).await.0);
        va.is_some() && va == vb
    })
    .await;
    let (trainer_a, trainer_b) = (is_trainer(&a).await, is_trainer(&b).await);
    assert!(
        trainer_a ^ trainer_b,
        "trainers: a {trainer_a}, b {trainer_b}"
    );
    let version = serving(&a).await.0.unwrap();
    for proxy in [&a, &b] {
        let answer = send_row(proxy, 7).await;
        assert_eq!(
            status(&answer),
            format!("explained; surrogate_version={version}")
        );
        acknowledged.insert(record_id(&answer));
    }

    // Both chains verify; the password is printed by nobody.
    let (code, report) = audit_verify(&["--url", &url]);
    assert_eq!(code, 0, "{report}");
    assert!(report.contains("writer a: intact"), "{report}");
    assert!(report.contains("writer b: intact"), "{report}");
    assert!(report.contains("2 writer(s)"), "{report}");
    assert!(!report.contains(PASSWORD), "{report}");
    // Both writers' records export from one command.
    let out = cli([
        "audit", "export", "--format", "jsonl", "--route", "m", "--url", &url,
    ])
    .env("SIDELIGHT_AUDIT_KEY", AUDIT_KEY_HEX)
    .run();
    assert!(out.success(), "{out}");
    let exported: BTreeSet<String> = out
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(exported, acknowledged);
    assert!(!out.stderr.contains(PASSWORD));

    // The audit report counts both writers' predictions and verifies both chains, from
    // a replica and from the command line (with `b`'s config, which names a URL file).
    let predictions = pg.sql(
        "fleet",
        "SELECT count(*) FROM audit_records WHERE route = 'm'",
    );
    let answer = get(&a.admin_url("/api/v1/report?format=json")).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    check_report(&answer.json(), &predictions);
    let markdown = get(&a.admin_url("/api/v1/report?format=md")).await;
    let markdown = String::from_utf8_lossy(&markdown.body);
    assert!(
        markdown.contains("\n| a | ") && markdown.contains("\n| b | "),
        "{markdown}"
    );
    let day_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        - 86_400_000;
    let out = cli(["report", "--format", "json", "--config"])
        .arg(&b.config_path)
        .args(["--from", &day_ago.to_string()])
        .env("SIDELIGHT_AUDIT_KEY", AUDIT_KEY_HEX)
        .env_remove("SIDELIGHT_AUDIT__URL")
        .run();
    assert!(out.success(), "{out}");
    assert!(!out.stderr.contains(PASSWORD));
    check_report(&serde_json::from_str(&out.stdout).unwrap(), &predictions);

    // Erasure through `a` reaches the records both wrote, the shared training rows,
    // and `b`'s memory.
    let history_before = serving(if trainer_a { &a } else { &b }).await.1;
    // An explanation `b` keeps for later (reference mode) for the subject.
    let kept = post(
        &b,
        "/v1/models/m:predict",
        kserve_body(&[1]),
        &[
            ("x-sidelight-subject", "C-1002"),
            ("x-sidelight-explain", "reference"),
        ],
    )
    .await;
    acknowledged.insert(record_id(&kept));
    let kept_url = b.url(&format!(
        "/v1/explanations/{}",
        kept.headers["x-sidelight-explanation-id"].to_str().unwrap()
    ));
    assert_eq!(get(&kept_url).await.status, 200);
    let subject = sidelight_audit::Keys::parse(AUDIT_KEY_HEX.as_bytes(), "test")
        .unwrap()
        .pseudonym("C-1002");
    let by_writer = pg.sql(
        "fleet",
        &format!("SELECT count(DISTINCT writer) FROM audit_records WHERE subject = '{subject}'"),
    );
    assert_eq!(by_writer, "2");
    let answer = send(
        &client(),
        http::Method::POST,
        &a.admin_url("/api/v1/erasure"),
        &[("content-type", "application/json")],
        full(json!({"subject_id": "C-1002"}).to_string()),
    )
    .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let erased = answer.json()["erased_records"].as_u64().unwrap();
    let of_subject = pg.sql(
        "fleet",
        &format!(
            "SELECT count(*) FILTER (WHERE erased_at IS NOT NULL), count(*) \
             FROM audit_records WHERE subject = '{subject}'"
        ),
    );
    assert_eq!(of_subject, format!("{erased}|{erased}"));
    assert_eq!(
        pg.sql(
            "fleet",
            &format!("SELECT count(*) FROM fleet_training_rows WHERE subject = '{subject}'")
        ),
        "0"
    );
    eventually("b forgets the erased subject", async || {
        get(&kept_url).await.status == 404
    })
    .await;
    let trainer = if trainer_a { &a } else { &b };
    eventually("the trainer retrains without the subject", async || {
        serving(trainer).await.1 > history_before
    })
    .await;

    // The trainer stops: the other replica takes over and trains a newer version.
    let (mut gone, remaining) = if trainer_a { (a, b) } else { (b, a) };
    // The erasure retired the version the other replica served; it serves the retrained
    // one once it has polled for it.
    eventually(
        "the other replica serves the retrained version",
        async || serving(&remaining).await.0.is_some(),
    )
    .await;
    let before = serving(&remaining).await.0.unwrap();
    gone.signal(nix::sys::signal::Signal::SIGKILL);
    gone.wait_exit(Duration::from_secs(10)).unwrap();
    drop(gone);
    eventually("the remaining replica becomes the trainer", async || {
        is_trainer(&remaining).await
    })
    .await;
    assert!(
        remaining
            .log_text()
            .contains("this replica is now the trainer for route m"),
        "{}",
        remaining.log_text()
    );
    for i in 0..5 {
        acknowledged.insert(record_id(&send_row(&remaining, 3000 + i).await));
    }
    eventually("the new trainer's version is served", async || {
        serving(&remaining).await.0.is_some_and(|v| v > before)
    })
    .await;

    // An outage: 503 audit_unavailable and not ready, then records flow again.
    pg.stop();
    let answer = send_row(&remaining, 4000).await;
    assert_eq!(answer.status, 503, "{:?}", answer.body);
    assert_eq!(answer.error_code(), "audit_unavailable");
    let ready = get(&remaining.admin_url("/readyz")).await;
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json()["checks"]["audit_store"]["ok"], false);
    pg.start_again();
    let mut i = 4001;
    eventually("records are stored again", async || {
        let answer = send_row(&remaining, i).await;
        i += 1;
        if answer.status == 200 {
            acknowledged.insert(record_id(&answer));
            true
        } else {
            false
        }
    })
    .await;
    for k in 0..10 {
        let answer = send_row(&remaining, 5000 + k).await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        acknowledged.insert(record_id(&answer));
    }
    assert_eq!(get(&remaining.admin_url("/readyz")).await.status, 200);
    let stored = stored_ids(&pg);
    let lost: Vec<_> = acknowledged.difference(&stored).collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    let metrics = metrics_text(&remaining).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("sidelight_audit_failures_total{kind=\"unavailable\"}")),
        "{metrics}"
    );
    let (code, report) = audit_verify(&["--url", &url]);
    assert_eq!(code, 0, "{report}");
    assert!(!remaining.log_text().contains(PASSWORD));
}

#[test]
fn a_database_that_cannot_be_reached_at_start_is_named_without_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sidelight.toml");
    // Nothing listens on port 1.
    let url = format!("postgresql://app:{PASSWORD}@127.0.0.1:1/audit?sslmode=disable");
    std::fs::write(
        &path,
        format!(
            "{}[audit]\nbackend = \"postgres\"\nurl = \"{url}\"\nwriter = \"a\"\n",
            config_for("http://127.0.0.1:9", "", "")
        ),
    )
    .unwrap();
    let out = cli(["serve", "--config"])
        .arg(&path)
        .env("SIDELIGHT_AUDIT_KEY", AUDIT_KEY_HEX)
        .run();
    let text = out.text();
    assert_eq!(out.code, Some(64), "{text}");
    assert!(text.contains("audit.url"), "{text}");
    assert!(!text.contains(PASSWORD), "{text}");
}

#[test]
fn the_fleet_store_seals_rows_keeps_the_window_elects_one_trainer_and_records_erasures() {
    use sidelight_audit::{
        FleetStore, FleetSurrogate, Keys, PostgresConfig, PostgresStore, Published, TrainingBatch,
    };
    let pg = PgServer::start();
    let url = pg.create_database("fleet");
    let keys = Keys::parse(AUDIT_KEY_HEX.as_bytes(), "test").unwrap();
    let a = PostgresStore::open(&url, "a", PostgresConfig::new(keys.clone())).unwrap();
    let b = PostgresStore::open(&url, "b", PostgresConfig::new(keys)).unwrap();
    let (fa, fb) = (a.fleet(), b.fleet());
    let batch = |i: u64, rows: u64, subject: &str| TrainingBatch {
        route: "m".to_owned(),
        time_ms: 1_700_000_000_000 + i64::try_from(i).unwrap(),
        subject: Some(subject.to_owned()),
        rows,
        payload: format!("secret-row-{i}").into_bytes(),
    };
    fa.append_training(&[batch(1, 3, "ps_x"), batch(2, 3, "ps_y")])
        .unwrap();
    fb.append_training(&[batch(3, 3, "ps_x")]).unwrap();
    // Sealed at rest.
    assert_eq!(
        pg.sql(
            "fleet",
            "SELECT count(*) FROM fleet_training_rows \
             WHERE position(convert_to('secret-row', 'UTF8') IN payload) > 0"
        ),
        "0"
    );
    // The newest batches that hold 4 rows: the last two, oldest first, opened.
    let (window, newest) = fb.training_window("m", 4).unwrap();
    let payloads: Vec<_> = window.iter().map(|b| b.payload.clone()).collect();
    assert_eq!(
        payloads,
        [b"secret-row-2".to_vec(), b"secret-row-3".to_vec()]
    );
    assert_eq!(fa.training_rows_after("m", 0).unwrap(), (9, newest));
    assert_eq!(fa.prune_training("m", 4).unwrap(), 1);
    assert_eq!(fa.training_rows_after("m", 0).unwrap().0, 6);

    // One trainer per route; the lock moves when its session ends.
    let (lead_a, lead_b) = (fa.another(), fb.another());
    assert!(lead_a.try_lead("m").unwrap());
    assert!(lead_a.try_lead("m").unwrap());
    assert!(!lead_b.try_lead("m").unwrap());
    assert!(lead_b.try_lead("other").unwrap());
    drop(lead_a);
    // The server ends the closed session's backend (and frees its lock) on its own time.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !lead_b.try_lead("m").unwrap() {
        assert!(
            std::time::Instant::now() < deadline,
            "the lock did not move"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    // Versions are numbered once for the fleet; only the newest accepted carries its
    // surrogate.
    let version = |v: u64, accepted: bool, writer: &str| FleetSurrogate {
        version: v,
        trained_at: 1,
        rows: 6,
        r2: 0.9,
        mae: 0.1,
        agreement: None,
        accepted,
        reason: "test".to_owned(),
        surrogate: accepted.then(|| format!("surrogate {v}")),
        writer: writer.to_owned(),
        subjects: Some(Vec::new()),
    };
    let publish =
        |store: &FleetStore, v: FleetSurrogate| store.publish_surrogate("m", &v, 0).unwrap();
    assert_eq!(publish(&fb, version(1, true, "b")), Published::Published);
    assert_eq!(publish(&fa, version(1, true, "a")), Published::Taken);
    assert_eq!(publish(&fb, version(2, true, "b")), Published::Published);
    assert_eq!(publish(&fb, version(3, false, "b")), Published::Published);
    assert_eq!(fa.latest_version("m").unwrap(), 3);
    let seen: Vec<_> = fa
        .surrogates_after("m", 0, 10)
        .unwrap()
        .into_iter()
        .map(|s| (s.version, s.writer, s.surrogate))
        .collect();
    assert_eq!(
        seen,
        [
            (1, "b".to_owned(), None),
            (2, "b".to_owned(), Some("surrogate 2".to_owned())),
            (3, "b".to_owned(), None),
        ]
    );

    // An erasure removes the subject's rows and is seen by the others.
    let (_, start) = fb.erasures_after(None).unwrap();
    assert_eq!(fa.erase_subject("ps_x", 5).unwrap(), 1);
    let (erased, _) = fb.erasures_after(Some(start)).unwrap();
    assert_eq!(erased, [("ps_x".to_owned(), "a".to_owned())]);
    let (left, _) = fb.training_window("m", 100).unwrap();
    assert!(left.iter().all(|b| b.subject.as_deref() == Some("ps_y")));

    // Erasing a subject retires every published version that learnt from its rows, in
    // the erasure's transaction; versions that did not keep theirs.
    let digest = Keys::parse(AUDIT_KEY_HEX.as_bytes(), "test")
        .unwrap()
        .subject_digest("ps_y") as i64;
    let with_subjects = |v: u64, subjects: Vec<i64>| FleetSurrogate {
        subjects: Some(subjects),
        ..version(v, true, "b")
    };
    assert_eq!(
        publish(&fb, with_subjects(4, vec![digest, 7])),
        Published::Published
    );
    assert_eq!(
        publish(&fb, with_subjects(5, vec![7])),
        Published::Published
    );
    fa.erase_subject("ps_y", 1_000).unwrap();
    let kept = |v: u64| {
        pg.sql(
            "fleet",
            &format!(
                "SELECT (surrogate IS NOT NULL)::text || ' ' || (reason LIKE '%retired%')::text \
                 FROM fleet_surrogates WHERE route = 'm' AND version = {v}"
            ),
        )
    };
    assert_eq!(kept(4), "false true");
    assert_eq!(kept(5), "true false");
    // A version whose rows were read before that erasure is published retired.
    let taken_before = 900;
    assert_eq!(
        fb.publish_surrogate("m", &with_subjects(6, vec![digest]), taken_before)
            .unwrap(),
        Published::Retired
    );
    assert_eq!(kept(6), "false true");
    assert_eq!(
        fb.publish_surrogate("m", &with_subjects(7, vec![7]), taken_before)
            .unwrap(),
        Published::Published
    );
}

/// A replica's config with a monitor: red rows score +1 in the test model, so with the
/// decision at 3.5 blue applicants are never approved and the fairness check fails.
fn monitored_config(model: &ModelServer, state: &Path, writer: &str) -> String {
    let routes = format!(
        "[audit]\nbackend = \"postgres\"\nwriter = \"{writer}\"\npoll_interval = \"200ms\"\n\
         [[routes]]\nname = \"m\"\npath_prefix = \"/v1/models/m\"\n\
         [routes.explain]\nprotocol = \"kserve_v1\"\noutput = \"score\"\n\
         [routes.explain.decision]\nthreshold = 3.5\n\
         [routes.explain.surrogate]\nwarm_up_rows = 60\nretrain_every_rows = 100000\n\
         retrain_interval = \"1h\"\nmin_r2 = 0.0\n\
         [routes.monitor]\nwindow_rows = 1000\nevery = \"200ms\"\nmin_group_size = 30\n\
         [[routes.monitor.protected]]\nfeature = \"colour\"\nprivileged = \"red\"\n\
         unprivileged = [\"blue\"]\n"
    );
    config(model, state, &routes)
}

/// The latest monitoring results of route `m`.
async fn monitoring(proxy: &Proxy) -> serde_json::Value {
    get(&proxy.admin_url("/api/v1/monitoring")).await.json()["routes"][0]["latest"].clone()
}

/// Sends rows `indices`, ten per request; every one must come back explained.
async fn send_explained(proxy: &Proxy, indices: std::ops::Range<usize>) {
    let all: Vec<usize> = indices.collect();
    for chunk in all.chunks(10) {
        let answer = post(proxy, "/v1/models/m:predict", kserve_body(chunk), &[]).await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        assert!(answer.json()["explanations"].is_array(), "not explained");
    }
}

/// With the PostgreSQL backend every replica's monitor publishes its counts and sums
/// and merges the others': both replicas report the fleet's rows, fairness and drift
/// figures (drift against the one reference the fleet agreed on), as one proxy that saw
/// all the traffic would, and the fairness alert fires once, on the one replica that
/// holds the route's alert lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleets_monitoring_counts_every_replicas_rows_and_alerts_once() {
    let pg = PgServer::start();
    let url = pg.create_database("monitoring");
    let model = ModelServer::start().await;
    let (state_a, state_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let env = [
        ("SIDELIGHT_AUDIT_KEY", AUDIT_KEY_HEX),
        ("SIDELIGHT_AUDIT__URL", url.as_str()),
    ];
    let a = Proxy::start_with_env(&monitored_config(&model, state_a.path(), "a"), &env);
    let b = Proxy::start_with_env(&monitored_config(&model, state_b.path(), "b"), &env);

    // Enough rows for the fleet's trainer (the first ones only settle the route's
    // columns); both replicas then explain with its surrogate.
    for i in 0..20 {
        let proxy = if i % 2 == 0 { &a } else { &b };
        let rows: Vec<usize> = (i * 10..i * 10 + 10).collect();
        assert_eq!(
            post(proxy, "/v1/models/m:predict", kserve_body(&rows), &[])
                .await
                .status,
            200
        );
    }
    eventually("both replicas serve the fleet's surrogate", async || {
        let (va, vb) = (serving(&a).await.0, serving(&b).await.0);
        va.is_some() && va == vb
    })
    .await;
    eventually("both monitors see two replicas", async || {
        let (ma, mb) = (monitoring(&a).await, monitoring(&b).await);
        ma["fleet"]["replicas"] == 2 && mb["fleet"]["replicas"] == 2
    })
    .await;
    // The warm-up rows reach each monitor a little after their answers, and the other
    // replica's counts a publish later: take the starting count only once both
    // replicas agree on it and it has held for a few publishes.
    let mut settled: Option<(serde_json::Value, Instant)> = None;
    eventually("both replicas agree on the warm-up rows", async || {
        let (ma, mb) = (monitoring(&a).await, monitoring(&b).await);
        let seen = ma["rows_seen"].clone();
        if seen != mb["rows_seen"] || !seen.is_u64() {
            settled = None;
            return false;
        }
        match &settled {
            Some((held, since)) if *held == seen => since.elapsed() > Duration::from_secs(1),
            _ => {
                settled = Some((seen, Instant::now()));
                false
            }
        }
    })
    .await;
    let before = monitoring(&a).await["rows_seen"].as_u64().unwrap();

    // 300 rows through `a`, 180 through `b`.
    send_explained(&a, 1000..1300).await;
    send_explained(&b, 2000..2180).await;
    let expected = before + 480;
    eventually("both replicas count the fleet's rows", async || {
        let (ma, mb) = (monitoring(&a).await, monitoring(&b).await);
        ma["rows_seen"] == expected && mb["rows_seen"] == expected
    })
    .await;
    let (ma, mb) = (monitoring(&a).await, monitoring(&b).await);
    // The same fleet-wide figures on both: the window is both replicas' together.
    assert_eq!(ma["window_rows"], mb["window_rows"], "{ma}\n{mb}");
    assert_eq!(ma["window_rows"], expected, "{ma}");
    let groups = |m: &serde_json::Value| m["fairness"][0]["groups"].clone();
    assert_eq!(groups(&ma), groups(&mb), "{ma}\n{mb}");
    let counted: u64 = ma["fairness"][0]["total"].as_u64().unwrap();
    assert_eq!(counted, expected, "{ma}");
    assert_eq!(
        ma["attribution"]["summary"]["rows"], mb["attribution"]["summary"]["rows"],
        "{ma}\n{mb}"
    );
    // Drift too: both count against the fleet's reference (the trainer's training
    // window), so each reports the drift of every replica's rows together.
    eventually("both replicas report the fleet's drift", async || {
        let (ma, mb) = (monitoring(&a).await, monitoring(&b).await);
        let whole = |m: &serde_json::Value| {
            m["fleet"]["shared_reference"] == true
                && m["fleet"]["drift_replicas"] == 2
                && m["rows_seen"] == expected
                && m["drift"].as_array().is_some_and(|d| {
                    !d.is_empty()
                        && d.iter().all(|f| {
                            f["current_count"].as_u64().unwrap_or(0)
                                + f["current_missing"].as_u64().unwrap_or(0)
                                == expected
                        })
                })
        };
        whole(&ma) && whole(&mb)
    })
    .await;
    let (ma, mb) = (monitoring(&a).await, monitoring(&b).await);
    assert_eq!(ma["reference"], "training_window", "{ma}");
    assert_eq!(ma["drift"], mb["drift"], "{ma}\n{mb}");
    assert_eq!(ma["prediction_drift"], mb["prediction_drift"], "{ma}\n{mb}");
    // One replica sends the route's alerts.
    let senders = [&ma, &mb]
        .iter()
        .filter(|m| m["fleet"]["sends_alerts"] == true)
        .count();
    assert_eq!(senders, 1, "{ma}\n{mb}");
    assert_eq!(ma["fairness"][0]["verdict"], "fail", "{ma}");

    // The failing group's alert fires once in the fleet.
    let firing =
        "sidelight_alerts_total{route=\"m\",check=\"disparate_impact\",state=\"firing\"} 1";
    eventually("the fairness alert fires", async || {
        metrics_text(&a).await.contains(firing) || metrics_text(&b).await.contains(firing)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let fired = |p: &Proxy| {
        p.log_text()
            .lines()
            .filter(|l| l.contains("alert firing") && l.contains("\"check\":\"disparate_impact\""))
            .count()
    };
    assert_eq!(
        fired(&a) + fired(&b),
        1,
        "{}\n{}",
        a.log_text(),
        b.log_text()
    );
    drop(pg);
}
