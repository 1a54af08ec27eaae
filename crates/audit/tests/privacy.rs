//! Encryption at rest, erasure, retention, key rotation, size limits and export.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use rusqlite::Connection;
use serde_json::json;
use sidelight_audit::{
    AuditStore, CsvExport, DERIVED_KEY_ID, Erasure, Keys, Record, RecordQuery, SqliteConfig,
    SqliteStore, VerifyError, verify, write_jsonl,
};
use std::path::Path;

const MASTER: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const SECRET: &str = "very-private-value-91c2";

fn keys() -> Keys {
    Keys::parse(MASTER.as_bytes(), "test").unwrap()
}

fn record(i: i64, subject: &str) -> Record {
    let mut r = Record::new(format!("r{i}"), 1_000 + i, "credit", "m");
    r.request = Some(format!(r#"{{"instances":[{{"a":{i},"note":"{SECRET}"}}]}}"#).into_bytes());
    r.response = Some(br#"{"predictions":[0.5]}"#.to_vec());
    r.features = Some(json!({"names": ["a", "b"], "rows": [[i, "x"]]}));
    r.outputs = Some(json!([[0.5]]));
    r.texts = Some(vec![format!("because {SECRET}")]);
    r.subject = Some(subject.to_owned());
    r
}

fn open(path: &Path, keys: Keys) -> SqliteStore {
    SqliteStore::open(path, SqliteConfig::new(keys)).unwrap()
}

fn filled(path: &Path, n: i64) -> SqliteStore {
    let mut store = open(path, keys());
    let records: Vec<Record> = (1..=n)
        .map(|i| record(i, if i % 2 == 0 { "ps_even" } else { "ps_odd" }))
        .collect();
    store.append_batch(&records).unwrap();
    store
}

fn file_bytes(path: &Path) -> Vec<u8> {
    // The WAL holds the newest pages; checkpoint it into the main file first.
    let conn = Connection::open(path).unwrap();
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .unwrap();
    drop(conn);
    std::fs::read(path).unwrap()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn fields_are_sealed_on_disk_and_read_back_in_the_clear() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let store = filled(&path, 4);
    let got = store.get("r3").unwrap().unwrap();
    assert!(String::from_utf8_lossy(got.record.request.as_ref().unwrap()).contains(SECRET));
    assert_eq!(got.record.texts.unwrap()[0], format!("because {SECRET}"));
    drop(store);
    assert!(
        !contains(&file_bytes(&path), SECRET),
        "a payload is on disk in the clear"
    );
}

#[test]
fn erasing_a_subject_removes_contents_and_keeps_the_chain_verifiable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let mut store = filled(&path, 10);
    assert_eq!(
        store
            .erase(&Erasure::Subject("ps_even".to_owned()), 99)
            .unwrap(),
        5
    );
    // Again: nothing left to erase.
    assert_eq!(
        store
            .erase(&Erasure::Subject("ps_even".to_owned()), 100)
            .unwrap(),
        0
    );
    let erased = store.get("r4").unwrap().unwrap().record;
    assert_eq!(erased.request, None);
    assert_eq!(erased.features, None);
    assert_eq!(erased.texts, None);
    assert_eq!(erased.erased_at, Some(99));
    assert_eq!(erased.erased_reason.as_deref(), Some("subject_erasure"));
    let kept = store.get("r3").unwrap().unwrap().record;
    assert!(kept.request.is_some());
    let report = verify(&store, keys().checkpoint_key()).unwrap();
    assert_eq!((report.records, report.erased), (10, 5));
}

#[test]
fn retention_erases_what_is_older_than_the_cutoff() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let mut store = filled(&path, 10);
    // Records r1..r10 have time 1001..1010.
    assert_eq!(store.erase(&Erasure::Before(1_004), 5_000).unwrap(), 3);
    let page = store
        .query(&RecordQuery {
            limit: 100,
            ..RecordQuery::default()
        })
        .unwrap();
    let erased: Vec<&str> = page
        .records
        .iter()
        .filter(|s| s.record.erased_at.is_some())
        .map(|s| s.record.id.as_str())
        .collect();
    assert_eq!(erased, ["r1", "r2", "r3"]);
    assert_eq!(
        page.records[0].record.erased_reason.as_deref(),
        Some("retention")
    );
    assert!(verify(&store, keys().checkpoint_key()).is_ok());
}

#[test]
fn queries_filter_by_subject_route_time_and_review_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let mut store = filled(&path, 10);
    let mut other = record(11, "ps_odd");
    other.route = "churn".to_owned();
    other.review_state = "pending".to_owned();
    store.append_batch(&[other]).unwrap();
    let ids = |q: RecordQuery| -> Vec<String> {
        let mut q = RecordQuery { limit: 3, ..q };
        let mut out = Vec::new();
        loop {
            let page = store.query(&q).unwrap();
            out.extend(page.records.into_iter().map(|s| s.record.id));
            match page.next {
                Some(n) => q.after = Some(n),
                None => return out,
            }
        }
    };
    assert_eq!(
        ids(RecordQuery {
            subject: Some("ps_odd".to_owned()),
            route: Some("credit".to_owned()),
            ..RecordQuery::default()
        }),
        ["r1", "r3", "r5", "r7", "r9"]
    );
    assert_eq!(
        ids(RecordQuery {
            review_state: Some("pending".to_owned()),
            ..RecordQuery::default()
        }),
        ["r11"]
    );
    assert_eq!(
        ids(RecordQuery {
            from_ms: Some(1_009),
            to_ms: Some(1_011),
            ..RecordQuery::default()
        }),
        ["r9", "r10"]
    );
    assert!(store.contains("r11").unwrap());
    assert!(!store.contains("r12").unwrap());
}

#[test]
fn rotation_reseals_every_record_and_the_old_key_can_go() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    drop(filled(&path, 7));
    let mut rotated = keys();
    rotated.rotate("k2").unwrap();
    let mut store = open(&path, rotated.clone());
    assert_eq!(
        store.key_usage().unwrap(),
        [(Some(DERIVED_KEY_ID.to_owned()), 7)]
    );
    let mut total = 0;
    loop {
        let n = store.reseal(3).unwrap();
        if n == 0 {
            break;
        }
        total += n;
    }
    assert_eq!(total, 7);
    assert_eq!(store.key_usage().unwrap(), [(Some("k2".to_owned()), 7)]);
    drop(store);
    // The written keyring holds k2 only; the derived key is not written out.
    let text = rotated.to_keyring_text();
    let ring = text.split("[encryption]").nth(1).unwrap();
    assert!(ring.contains("k2 = "), "{text}");
    assert!(!ring.contains(DERIVED_KEY_ID), "{text}");
    let reread = Keys::parse(text.as_bytes(), "file").unwrap();
    let store = open(&path, reread.clone());
    assert!(
        String::from_utf8_lossy(&store.get("r2").unwrap().unwrap().record.request.unwrap())
            .contains(SECRET)
    );
    assert_eq!(verify(&store, reread.checkpoint_key()).unwrap().records, 7);
}

#[test]
fn a_wrong_or_missing_encryption_key_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let mut rotated = keys();
    rotated.rotate("k2").unwrap();
    let mut store = open(&path, rotated.clone());
    store
        .append_batch(&[record(1, "s"), record(2, "s")])
        .unwrap();
    drop(store);
    // Same master and id, different key bytes.
    let forged = rotated
        .to_keyring_text()
        .lines()
        .map(|l| {
            if l.starts_with("k2 = ") {
                format!("k2 = \"{}\"", "ab".repeat(32))
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let wrong = Keys::parse(forged.as_bytes(), "f").unwrap();
    let err = verify(&open(&path, wrong.clone()), wrong.checkpoint_key()).unwrap_err();
    assert!(
        matches!(&err, VerifyError::WrongEncryptionKey { key_id } if key_id == "k2"),
        "{err}"
    );
    // No k2 at all.
    let err = verify(&open(&path, keys()), keys().checkpoint_key()).unwrap_err();
    assert!(
        matches!(&err, VerifyError::MissingEncryptionKey { key_id, .. } if key_id == "k2"),
        "{err}"
    );
    assert!(err.to_string().contains("does not hold"), "{err}");
}

#[test]
fn a_size_limit_makes_writes_fail_as_full() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let mut store = SqliteStore::open(
        &path,
        SqliteConfig {
            max_bytes: Some(64 * 1024),
            ..SqliteConfig::new(keys())
        },
    )
    .unwrap();
    let mut failure = None;
    for i in 0..2_000 {
        if let Err(e) = store.append_batch(&[record(i, "s")]) {
            failure = Some(e);
            break;
        }
    }
    let failure = failure.expect("a 64 KiB store never filled up");
    assert_eq!(failure.kind(), "full", "{failure}");
    // What was committed before is intact.
    assert!(verify(&store, keys().checkpoint_key()).is_ok());
}

#[test]
fn exports_read_back_and_csv_is_rows_with_the_prediction() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let mut store = filled(&path, 3);
    store
        .erase(&Erasure::Subject("ps_even".to_owned()), 9)
        .unwrap();
    let page = store
        .query(&RecordQuery {
            limit: 10,
            ..RecordQuery::default()
        })
        .unwrap();
    let mut jsonl = Vec::new();
    let mut csv = CsvExport::new(Vec::new());
    for s in &page.records {
        write_jsonl(&mut jsonl, s).unwrap();
        csv.push(s).unwrap();
    }
    let lines: Vec<serde_json::Value> = String::from_utf8(jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["request"]["instances"][0]["a"], 1);
    assert_eq!(lines[1]["request"], serde_json::Value::Null);
    assert_eq!(lines[1]["erased_reason"], "subject_erasure");
    assert_eq!(lines[0]["time"], "1970-01-01T00:00:01.001Z");
    assert_eq!((csv.rows, csv.skipped), (2, 1));
    let text = {
        let mut buf = Vec::new();
        let mut again = CsvExport::new(&mut buf);
        for s in &page.records {
            again.push(s).unwrap();
        }
        again.finish().unwrap();
        String::from_utf8(buf).unwrap()
    };
    assert_eq!(text, "a,b,prediction\n1,x,0.5\n3,x,0.5\n");
}

#[test]
fn another_applications_database_is_not_taken_for_an_audit_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch("CREATE TABLE customers (id INTEGER)")
        .unwrap();
    drop(conn);
    let err = SqliteStore::open(&path, SqliteConfig::new(keys())).unwrap_err();
    assert!(
        err.to_string().contains("not a Sidelight audit log"),
        "{err}"
    );
    let conn = Connection::open(&path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "delete", "the other database was changed");
}

#[test]
fn reviews_and_feedback_are_kept_and_set_the_review_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let mut store = open(&path, keys());
    let mut flagged = record(1, "s");
    flagged.review_state = "pending".to_owned();
    flagged.review_reasons = vec!["near_threshold".to_owned()];
    store.append_batch(&[flagged]).unwrap();
    let pending = store
        .query(&RecordQuery {
            review_state: Some("pending".to_owned()),
            limit: 10,
            ..RecordQuery::default()
        })
        .unwrap();
    assert_eq!(pending.records.len(), 1);
    assert_eq!(pending.records[0].record.review_reasons, ["near_threshold"]);
    let review = sidelight_audit::Review {
        record_id: "r1".to_owned(),
        time_ms: 5,
        reviewer: "ada".to_owned(),
        decision: "override".to_owned(),
        outcome: Some(json!({"decision": "approved"})),
        reason: "income was misread".to_owned(),
    };
    assert!(store.add_review(&review).unwrap());
    assert!(
        !store
            .add_review(&sidelight_audit::Review {
                record_id: "nope".to_owned(),
                ..review.clone()
            })
            .unwrap()
    );
    assert_eq!(
        store.get("r1").unwrap().unwrap().record.review_state,
        "overridden"
    );
    assert_eq!(store.reviews("r1").unwrap(), std::slice::from_ref(&review));
    let feedback = sidelight_audit::Feedback {
        record_id: "r1".to_owned(),
        time_ms: 9,
        outcome: json!({"repaid": true}),
    };
    assert!(store.add_feedback(&feedback).unwrap());
    assert!(
        !store
            .add_feedback(&sidelight_audit::Feedback {
                record_id: "x".to_owned(),
                ..feedback.clone()
            })
            .unwrap()
    );
    assert_eq!(store.feedback("r1").unwrap(), [feedback]);
    // A review state that no chained decision set is reported: here the decision was
    // stored in the reviews table only.
    let err = verify(&store, keys().checkpoint_key()).unwrap_err();
    assert!(
        err.to_string()
            .contains("review state `overridden` matches no review decision chained"),
        "{err}"
    );
    // The proxy chains the decision as a `_review` event; then it verifies.
    let mut event = Record::new("review-1", 6, "_review", "sidelight");
    event.request = Some(serde_json::to_vec(&review).unwrap());
    store.append_batch(&[event]).unwrap();
    let report = verify(&store, keys().checkpoint_key()).unwrap();
    assert_eq!(report.reviews_not_applied, 0);
    // A second decision chained but not yet applied lags; it does not break the log.
    let mut second = review.clone();
    second.decision = "confirm".to_owned();
    let mut event = Record::new("review-2", 7, "_review", "sidelight");
    event.request = Some(serde_json::to_vec(&second).unwrap());
    store.append_batch(&[event]).unwrap();
    let report = verify(&store, keys().checkpoint_key()).unwrap();
    assert_eq!(report.reviews_not_applied, 1);
}
