//! The audit log end to end: the real binary records every request on an explained
//! route, `sync` records survive kill -9, consent `none` keeps nothing identifying nor
//! trains, tampering is detected by `sidelight audit verify`, and no payload value ever
//! reaches the proxy's logs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use nix::sys::signal::Signal;
use serde_json::json;
use sidelight_e2e::live::{config, kserve_body, post};
use sidelight_e2e::model::ModelServer;
use sidelight_e2e::*;

const KEY_HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
/// A value no log line may contain: it is only ever in request bodies.
const SECRET_COLOUR: &str = "ultraviolet-4f9c2a";

fn audited(model: &ModelServer, state: &Path, db: &Path, extra: &str) -> String {
    let routes = format!(
        "[audit]\npath = \"{}\"\n{extra}\n\
         [[routes]]\nname = \"m\"\npath_prefix = \"/v1/models/m\"\n\
         [routes.explain]\nprotocol = \"kserve_v1\"\noutput = \"score\"\n\
         [routes.explain.surrogate]\nwarm_up_rows = 1000\nretrain_every_rows = 100000\n",
        db.display()
    );
    config(model, state, &routes)
}

fn start(config: &str) -> Proxy {
    Proxy::start_with_env(config, &[("SIDELIGHT_AUDIT_KEY", KEY_HEX)])
}

fn verify(db: &Path) -> (i32, String) {
    let out = Command::new(sidelight_bin())
        .args(["audit", "verify", "--db"])
        .arg(db)
        .env("SIDELIGHT_AUDIT_KEY", KEY_HEX)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn secret_body(i: usize) -> String {
    json!({"instances": [{"a": i as f64 / 10.0, "b": 0.5, "c": 0.25, "colour": SECRET_COLOUR}]})
        .to_string()
}

/// consent, request, response, features, subject of a stored record.
type StoredPrivacy = (
    String,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Option<String>,
);

fn rows_seen(surrogates: &serde_json::Value) -> u64 {
    surrogates["routes"][0]["rows_seen"].as_u64().unwrap()
}

#[tokio::test]
async fn sync_records_survive_kill_9_verify_and_keep_payloads_out_of_logs() {
    let model = ModelServer::start().await;
    let state = tempfile::tempdir().unwrap();
    let db = state.path().join("audit.db");
    let proxy = start(&audited(&model, state.path(), &db, "durability = \"sync\""));

    let mut acknowledged = Vec::new();
    for i in 0..60 {
        // Half the ids are the client's own, one of them twice: ids stay unique.
        let id = format!("client-{}", i / 2 * 2);
        let headers: Vec<(&str, &str)> = if i % 2 == 0 || i == 1 {
            vec![("x-request-id", id.as_str())]
        } else {
            vec![]
        };
        let answer = post(&proxy, "/v1/models/m:predict", secret_body(i), &headers).await;
        assert_eq!(answer.status, 200);
        let record = answer.headers["x-sidelight-record-id"].to_str().unwrap();
        let request = answer.headers["x-request-id"].to_str().unwrap();
        assert!(record.starts_with(request), "{record} vs {request}");
        acknowledged.push(record.to_owned());
    }
    assert!(acknowledged.contains(&"client-0~2".to_owned()));
    let metrics = get(&proxy.admin_url("/metrics")).await;
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    assert!(
        text.contains("sidelight_audit_committed_records_total 60"),
        "{text}"
    );
    assert!(text.contains("sidelight_audit_failures_total 0"), "{text}");

    proxy.signal(Signal::SIGKILL);
    let mut proxy = proxy;
    proxy.wait_exit(std::time::Duration::from_secs(10)).unwrap();

    let (code, report) = verify(&db);
    assert_eq!(code, 0, "{report}");
    assert!(report.contains("60 record(s)"), "{report}");
    let conn = rusqlite::Connection::open(&db).unwrap();
    for id in &acknowledged {
        let (request, consent): (Option<Vec<u8>>, String) = conn
            .query_row(
                "SELECT request, consent FROM records WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap_or_else(|e| panic!("acknowledged record {id} missing: {e}"));
        assert_eq!(consent, "full");
        assert!(
            String::from_utf8(request.unwrap())
                .unwrap()
                .contains(SECRET_COLOUR)
        );
    }
    let logs = proxy.log_text();
    assert!(!logs.is_empty());
    assert!(
        !logs.contains(SECRET_COLOUR),
        "payload value in logs: {logs}"
    );
}

#[tokio::test]
async fn consent_none_stores_nothing_identifying_and_does_not_train() {
    let model = ModelServer::start().await;
    let state = tempfile::tempdir().unwrap();
    let db = state.path().join("audit.db");
    let proxy = start(&audited(&model, state.path(), &db, ""));

    post(&proxy, "/v1/models/m:predict", kserve_body(&[1, 2]), &[]).await;
    let before = rows_seen(&get(&proxy.admin_url("/api/v1/surrogates")).await.json());
    assert_eq!(before, 2);

    let none = post(
        &proxy,
        "/v1/models/m:predict",
        kserve_body(&[3]),
        &[("x-sidelight-consent", "none")],
    )
    .await;
    assert_eq!(none.status, 200);
    let gpc = post(
        &proxy,
        "/v1/models/m:predict",
        kserve_body(&[4]),
        &[("sec-gpc", "1")],
    )
    .await;
    let after = rows_seen(&get(&proxy.admin_url("/api/v1/surrogates")).await.json());
    assert_eq!(after, before, "consent none must not train");

    let conn = rusqlite::Connection::open(&db).unwrap();
    for answer in [&none, &gpc] {
        let id = answer.headers["x-sidelight-record-id"].to_str().unwrap();
        let row: StoredPrivacy = conn
            .query_row(
                "SELECT consent, request, response, features, subject FROM records WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .unwrap();
        assert_eq!(row.0, "none");
        assert!(row.1.is_none() && row.2.is_none() && row.3.is_none() && row.4.is_none());
    }
}

#[tokio::test]
async fn tampering_is_detected_and_names_the_record() {
    let model = ModelServer::start().await;
    let state = tempfile::tempdir().unwrap();
    let db = state.path().join("audit.db");
    let mut proxy = start(&audited(&model, state.path(), &db, ""));
    let mut ids = Vec::new();
    for i in 0..5 {
        let answer = post(&proxy, "/v1/models/m:predict", kserve_body(&[i]), &[]).await;
        ids.push(
            answer.headers["x-sidelight-record-id"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    proxy.signal(Signal::SIGTERM);
    proxy.wait_exit(std::time::Duration::from_secs(30)).unwrap();
    assert_eq!(verify(&db).0, 0);

    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute(
        "UPDATE records SET route = 'forged' WHERE id = ?1",
        [&ids[2]],
    )
    .unwrap();
    drop(conn);
    let (code, report) = verify(&db);
    assert_eq!(code, 1, "{report}");
    assert!(report.contains(&ids[2]), "{report}");
    assert!(report.contains("seq 3"), "{report}");

    let (code, _) = verify(&state.path().join("missing.db"));
    assert_eq!(code, 66);
}

#[tokio::test]
async fn a_missing_key_stops_start_up_naming_the_key() {
    let model = ModelServer::start().await;
    let state = tempfile::tempdir().unwrap();
    let db = state.path().join("audit.db");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sidelight.toml");
    std::fs::write(&path, audited(&model, state.path(), &db, "")).unwrap();
    let out = Command::new(sidelight_bin())
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .env_remove("SIDELIGHT_AUDIT_KEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("audit.key_file"), "{stderr}");
}
