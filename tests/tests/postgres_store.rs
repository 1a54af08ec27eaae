//! The PostgreSQL audit store against a real server: a chain per writer, group commit,
//! verification across writers, tamper detection that names the writer, fleet-wide
//! erasure, re-sealing, reviews and feedback, and an outage the store recovers from.
//! Each test has a server of its own (one of them stops it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use sidelight_audit::{
    AuditStore, BreakKind, Durability, Erasure, Feedback, Keys, PostgresConfig, PostgresStore,
    Record, RecordQuery, Review, StoreError, VerifyError, WriteError, Writer, WriterConfig, verify,
};
use sidelight_e2e::postgres::PgServer;

const MASTER: &[u8] = b"postgres store test master key, long enough";

fn keys() -> Keys {
    Keys::from_master(MASTER.to_vec()).unwrap()
}

fn config(keys: Keys) -> PostgresConfig {
    PostgresConfig {
        checkpoint_every: 4,
        ..PostgresConfig::new(keys)
    }
}

fn open(url: &str, writer: &str) -> PostgresStore {
    PostgresStore::open(url, writer, config(keys())).unwrap()
}

fn record(writer: &str, i: u64) -> Record {
    let mut r = Record::new(
        format!("{writer}-{i}"),
        1_700_000_000_000 + i64::try_from(i).unwrap(),
        "score",
        "credit-v3",
    );
    r.request = Some(format!("{{\"income\": {i}}}").into_bytes());
    r.response = Some(b"{\"predictions\": [0.7]}".to_vec());
    r.features = Some(json!({"income": i}));
    r.outputs = Some(json!([0.7]));
    r.attributions = Some(json!({"base": 0.1, "values": [0.3]}));
    r.texts = Some(vec![format!("income mattered most ({i})")]);
    r.subject = Some(format!("ps_subject{}", i % 3));
    r
}

fn append(store: &mut PostgresStore, writer: &str, range: std::ops::Range<u64>) {
    let records: Vec<Record> = range.map(|i| record(writer, i)).collect();
    store.append_batch(&records).unwrap();
}

fn all_ids(store: &PostgresStore) -> Vec<String> {
    let mut ids = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .query(&RecordQuery {
                limit: 7,
                after,
                ..RecordQuery::default()
            })
            .unwrap();
        ids.extend(page.records.iter().map(|s| s.record.id.clone()));
        match page.next {
            Some(n) => after = Some(n),
            None => return ids,
        }
    }
}

#[test]
fn sync_records_through_the_group_commit_writer_are_committed_when_acknowledged() {
    let pg = PgServer::start();
    let url = pg.create_database("audit");
    let writer = Writer::start(open(&url, "pod-0"), WriterConfig::default()).unwrap();
    let acks: Vec<_> = (1..=120)
        .map(|i| writer.submit(record("pod-0", i), Durability::Sync).unwrap())
        .collect();
    // Every acknowledged record is readable from another connection right away.
    let reader = open(&url, "reader");
    for (i, ack) in (1..=120).zip(acks) {
        ack.wait().unwrap();
        assert!(
            reader.contains(&format!("pod-0-{i}")).unwrap(),
            "record {i}"
        );
    }
    let metrics = writer.metrics();
    assert_eq!(metrics.committed, 120);
    assert_eq!(metrics.failed, 0);
    writer.shutdown();

    // The chain goes on where it stopped when the writer comes back.
    let mut store = open(&url, "pod-0");
    assert_eq!(store.last_seq(), 120);
    append(&mut store, "pod-0", 121..125);
    let report = verify(&store, MASTER).unwrap();
    assert_eq!(report.records, 124);
    let pod = report.writers.iter().find(|w| w.writer == "pod-0").unwrap();
    assert_eq!((pod.records, pod.last_seq), (124, 124));
    let got = store.get("pod-0-7").unwrap().unwrap();
    assert_eq!(got.record.request, record("pod-0", 7).request);
    assert_eq!(got.record.texts, record("pod-0", 7).texts);
    // Stored in the database sealed, not in the clear.
    let clear = pg.sql(
        "audit",
        "SELECT count(*) FROM audit_records WHERE position(convert_to('income', 'UTF8') IN request) > 0",
    );
    assert_eq!(clear, "0");
}

#[test]
fn two_writers_append_at_once_and_both_chains_verify() {
    let pg = PgServer::start();
    let url = pg.create_database("audit");
    let handles: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|w| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut store = open(&url, w);
                for batch in 0..10 {
                    append(&mut store, w, batch * 10..batch * 10 + 10);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let store = open(&url, "a");
    let report = verify(&store, MASTER).unwrap();
    assert_eq!(report.records, 200);
    let chains: Vec<(String, u64, u64)> = report
        .writers
        .iter()
        .map(|w| (w.writer.clone(), w.records, w.last_seq))
        .collect();
    assert_eq!(
        chains,
        vec![("a".to_owned(), 100, 100), ("b".to_owned(), 100, 100)]
    );
    // Pages run over both writers' records in the fleet-wide order, each once.
    let mut ids = all_ids(&store);
    assert_eq!(ids.len(), 200);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 200);
    let page = store
        .query(&RecordQuery {
            subject: Some("ps_subject1".to_owned()),
            limit: 1000,
            ..RecordQuery::default()
        })
        .unwrap();
    assert_eq!(page.records.len(), 66);
    assert!(page.records.windows(2).all(|w| w[0].seq < w[1].seq));
}

#[test]
fn a_writer_name_held_by_a_live_store_is_refused() {
    let pg = PgServer::start();
    let url = pg.create_database("audit");
    let mut first = open(&url, "pod-0");
    append(&mut first, "pod-0", 0..3);
    let err = PostgresStore::open(&url, "pod-0", config(keys())).unwrap_err();
    assert!(matches!(&err, StoreError::WriterActive(w) if w == "pod-0"));
    assert_eq!(err.kind(), "locked");
    assert!(
        err.to_string().contains("`pod-0` is already active"),
        "{err}"
    );
    // Another name is fine alongside; the name is free again once its holder is gone.
    let _other = open(&url, "pod-1");
    drop(first);
    let mut again = open(&url, "pod-0");
    assert_eq!(again.last_seq(), 3);
    append(&mut again, "pod-0", 3..5);
    verify(&again, MASTER).unwrap();
}

#[test]
fn bad_settings_are_refused_with_what_is_wrong() {
    let pg = PgServer::start();
    let url = pg.create_database("audit");
    let err = PostgresStore::open(&url, "", config(keys())).unwrap_err();
    assert!(err.to_string().contains("writer name"), "{err}");
    let tls = url.replace("sslmode=disable", "sslmode=verify-full");
    let err = PostgresStore::open(&tls, "pod-0", config(keys())).unwrap_err();
    assert!(err.to_string().contains("sslmode"), "{err}");
    let secret = "postgresql://postgres:hunter2@127.0.0.1:1/audit?nosuchoption=1";
    let err = PostgresStore::open(secret, "pod-0", config(keys())).unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

fn writer_break(url: &str) -> (String, u64, BreakKind) {
    match verify(&open(url, "verifier"), MASTER) {
        Err(VerifyError::InWriter { writer, source }) => match *source {
            VerifyError::Broken { seq, kind, .. } => (writer, seq, kind),
            other => panic!("expected a broken record, got {other:?}"),
        },
        other => panic!("expected a break in a writer's chain, got {other:?}"),
    }
}

#[test]
fn tampering_is_named_with_its_writer() {
    let pg = PgServer::start();
    let mut urls = Vec::new();
    for db in ["altered", "deleted", "renamed"] {
        let url = pg.create_database(db);
        let mut a = open(&url, "a");
        let mut b = open(&url, "b");
        for i in 0..3 {
            append(&mut a, "a", i * 3..i * 3 + 3);
            append(&mut b, "b", i * 3..i * 3 + 3);
        }
        urls.push(url);
    }
    // A sealed column altered in b's chain.
    pg.sql(
        "altered",
        "UPDATE audit_records SET request = decode(repeat('ab', 40), 'hex') \
         WHERE writer = 'b' AND seq = 5",
    );
    let (writer, seq, kind) = writer_break(&urls[0]);
    assert_eq!((writer.as_str(), seq), ("b", 5));
    assert_eq!(kind, BreakKind::SealBroken { field: "request" });

    // A record deleted from the middle of a's chain.
    pg.sql(
        "deleted",
        "DELETE FROM audit_records WHERE writer = 'a' AND seq = 4",
    );
    let (writer, seq, kind) = writer_break(&urls[1]);
    assert_eq!((writer.as_str(), seq), ("a", 5));
    assert_eq!(kind, BreakKind::Gap { expected: 4 });
    let message = verify(&open(&urls[1], "verifier"), MASTER)
        .unwrap_err()
        .to_string();
    assert!(message.starts_with("writer `a`: record seq 5"), "{message}");

    // A whole chain, checkpoints and all, passed off as another writer's.
    pg.sql(
        "renamed",
        "UPDATE audit_records SET writer = 'c' WHERE writer = 'b'; \
         UPDATE audit_checkpoints SET writer = 'c' WHERE writer = 'b'",
    );
    let (writer, seq, kind) = writer_break(&urls[2]);
    assert_eq!((writer.as_str(), seq), ("c", 1));
    assert_eq!(kind, BreakKind::HashMismatch);
}

#[test]
fn erasing_a_subject_reaches_every_writer() {
    let pg = PgServer::start();
    let url = pg.create_database("audit");
    let mut a = open(&url, "a");
    let mut b = open(&url, "b");
    append(&mut a, "a", 0..6);
    append(&mut b, "b", 0..6);
    // Subject 1 has records 1 and 4 in each chain.
    let erased = a
        .erase(
            &Erasure::Subject("ps_subject1".to_owned()),
            1_800_000_000_000,
        )
        .unwrap();
    assert_eq!(erased, 4);
    let gone = b.get("b-4").unwrap().unwrap().record;
    assert_eq!((gone.request, gone.features), (None, None));
    assert_eq!(gone.erased_at, Some(1_800_000_000_000));
    assert_eq!(gone.erased_reason.as_deref(), Some("subject_erasure"));
    assert!(b.get("b-3").unwrap().unwrap().record.request.is_some());
    let report = verify(&b, MASTER).unwrap();
    assert_eq!((report.records, report.erased), (12, 4));
    // Retention, fleet-wide too: everything before record 2.
    let purged = b
        .erase(&Erasure::Before(1_700_000_000_002), 1_800_000_000_001)
        .unwrap();
    assert_eq!(purged, 2, "a-0 and b-0; a-1 and b-1 were erased already");
    let report = verify(&a, MASTER).unwrap();
    assert_eq!((report.erased, report.erasures), (6, 2));
    // A tombstone written by hand, without the key, is named in its writer's chain.
    pg.sql(
        "audit",
        "UPDATE audit_records SET request = NULL, features = NULL, outputs = NULL, \
         erased_at = 1, erased_reason = 'retention' WHERE writer = 'b' AND seq = 3",
    );
    let (writer, seq, kind) = writer_break(&url);
    assert_eq!((writer.as_str(), seq), ("b", 3));
    assert!(
        matches!(kind, BreakKind::UnauthenticatedErasure { .. }),
        "{kind:?}"
    );
}

#[test]
fn records_are_resealed_under_a_rotated_key() {
    let pg = PgServer::start();
    let url = pg.create_database("audit");
    let mut a = open(&url, "a");
    append(&mut a, "a", 0..10);
    drop(a);
    let mut rotated = keys();
    rotated.rotate("k2").unwrap();
    let mut a = PostgresStore::open(&url, "a", config(rotated.clone())).unwrap();
    append(&mut a, "a", 10..12);
    let mut total = 0;
    loop {
        let n = a.reseal(4).unwrap();
        if n == 0 {
            break;
        }
        total += n;
    }
    assert_eq!(total, 10);
    assert_eq!(a.key_usage().unwrap(), vec![(Some("k2".to_owned()), 12)]);
    let report = verify(&a, MASTER).unwrap();
    assert_eq!(report.records, 12);
    assert_eq!(
        a.get("a-3").unwrap().unwrap().record.request,
        record("a", 3).request
    );
}

#[test]
fn reviews_and_reported_outcomes_are_kept_with_their_record() {
    let pg = PgServer::start();
    let url = pg.create_database("audit");
    let mut a = open(&url, "a");
    let mut b = open(&url, "b");
    let mut pending = record("b", 1);
    pending.review_state = "pending".to_owned();
    pending.review_reasons = vec!["low_confidence".to_owned()];
    b.append_batch(&[pending]).unwrap();
    append(&mut a, "a", 0..2);
    let got = a.get("b-1").unwrap().unwrap().record;
    assert_eq!(got.review_reasons, vec!["low_confidence".to_owned()]);

    let review = Review {
        record_id: "b-1".to_owned(),
        time_ms: 1_800_000_000_000,
        reviewer: "alice".to_owned(),
        decision: "override".to_owned(),
        outcome: Some(json!({"approved": false})),
        reason: "income proof missing".to_owned(),
    };
    // A replica other than the one that wrote the record takes the decision.
    assert!(a.add_review(&review).unwrap());
    assert!(
        !a.add_review(&Review {
            record_id: "nope".to_owned(),
            ..review.clone()
        })
        .unwrap()
    );
    assert_eq!(b.reviews("b-1").unwrap(), std::slice::from_ref(&review));
    let overridden = b
        .query(&RecordQuery {
            review_state: Some("overridden".to_owned()),
            limit: 10,
            ..RecordQuery::default()
        })
        .unwrap();
    assert_eq!(overridden.records.len(), 1);
    assert_eq!(overridden.records[0].record.id, "b-1");

    let outcome = Feedback {
        record_id: "a-0".to_owned(),
        time_ms: 1_800_000_000_001,
        outcome: json!(1),
    };
    assert!(b.add_feedback(&outcome).unwrap());
    assert!(
        !b.add_feedback(&Feedback {
            record_id: "nope".to_owned(),
            ..outcome.clone()
        })
        .unwrap()
    );
    assert_eq!(a.feedback("a-0").unwrap(), vec![outcome]);
    // A review state that no chained decision set breaks the log, in the record's chain.
    let (writer, seq, kind) = writer_break(&url);
    assert_eq!((writer.as_str(), seq), ("b", 1));
    assert_eq!(
        kind,
        BreakKind::ReviewStateWithoutDecision {
            state: "overridden".to_owned()
        }
    );
    // The proxy chains the decision (here in the deciding replica's chain): it verifies.
    let mut event = Record::new("review-1", 1_800_000_000_000, "_review", "sidelight");
    event.request = Some(serde_json::to_vec(&review).unwrap());
    a.append_batch(&[event]).unwrap();
    verify(&a, MASTER).unwrap();
}

#[test]
fn an_outage_fails_writes_as_unavailable_and_the_store_goes_on_after_it() {
    let mut pg = PgServer::start();
    let url = pg.create_database("audit");
    let writer = Writer::start(open(&url, "pod-0"), WriterConfig::default()).unwrap();
    for i in 0..5 {
        writer
            .submit(record("pod-0", i), Durability::Sync)
            .unwrap()
            .wait()
            .unwrap();
    }

    pg.stop();
    for i in 5..7 {
        let err = writer
            .submit(record("pod-0", i), Durability::Sync)
            .unwrap()
            .wait()
            .unwrap_err();
        match err {
            WriteError::Store(e) => assert_eq!(e.kind(), "unavailable", "{e}"),
            other => panic!("expected a store error, got {other}"),
        }
    }

    // The same writer (and store) goes on once the server is back: it reconnects.
    pg.start_again();
    for i in 7..10 {
        writer
            .submit(record("pod-0", i), Durability::Sync)
            .unwrap()
            .wait()
            .unwrap();
    }
    let metrics = writer.metrics();
    assert_eq!((metrics.committed, metrics.failed), (8, 2));
    writer.shutdown();

    let store = open(&url, "pod-0");
    let report = verify(&store, MASTER).unwrap();
    assert_eq!(report.records, 8);
    let ids = all_ids(&store);
    let want: Vec<String> = [0, 1, 2, 3, 4, 7, 8, 9]
        .iter()
        .map(|i| format!("pod-0-{i}"))
        .collect();
    assert_eq!(ids, want);
}

#[test]
fn a_full_or_read_only_database_fails_with_its_kind() {
    let pg = PgServer::start();
    let url = pg.create_database("audit");
    let mut limited = PostgresStore::open(
        &url,
        "a",
        PostgresConfig {
            max_bytes: Some(1),
            ..config(keys())
        },
    )
    .unwrap();
    let err = limited.append_batch(&[record("a", 0)]).unwrap_err();
    assert_eq!(err.kind(), "full", "{err}");
    assert!(!limited.contains("a-0").unwrap());
    drop(limited);

    pg.sql(
        "audit",
        "ALTER DATABASE audit SET default_transaction_read_only = on",
    );
    let err = PostgresStore::open(&url, "a", config(keys())).unwrap_err();
    assert_eq!(err.kind(), "read_only", "{err}");
    assert!(err.to_string().contains("25006"), "{err}");
}

#[test]
fn sslmode_require_connects_over_tls_and_checks_the_certificate() {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let cert_pem = certified.cert.pem();
    let pg = PgServer::start_tls(&cert_pem, &certified.signing_key.serialize_pem());
    let url = pg
        .create_database("audit")
        .replace("sslmode=disable", "sslmode=require");
    let ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca.path(), &cert_pem).unwrap();
    let trusting = PostgresConfig {
        ca_file: Some(ca.path().to_path_buf()),
        ..config(keys())
    };
    let mut store = PostgresStore::open(&url, "a", trusting).unwrap();
    append(&mut store, "a", 0..3);
    verify(&store, MASTER).unwrap();
    let over_tls = pg.sql(
        "audit",
        "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE s.ssl AND a.application_name = 'sidelight-audit'",
    );
    assert_eq!(over_tls, "1");

    // A server whose certificate the CA file does not vouch for is refused.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(ca.path(), other.cert.pem()).unwrap();
    let distrusting = PostgresConfig {
        ca_file: Some(ca.path().to_path_buf()),
        ..config(keys())
    };
    let err = PostgresStore::open(&url, "b", distrusting).unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");
    assert_ne!(err.kind(), "unavailable", "{err}");
}

/// The URL of `database` on `pg` without any `sslmode`: what most users write.
fn url_without_sslmode(pg: &PgServer, database: &str) -> String {
    pg.create_database(database).replace("?sslmode=disable", "")
}

fn ssl_in_use(pg: &PgServer, database: &str) -> String {
    pg.sql(
        database,
        "SELECT bool_or(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.application_name = 'sidelight-audit'",
    )
}

/// `sslmode=prefer`, or no sslmode at all, tries TLS first as libpq does: a server that
/// offers it is reached over TLS (its certificate verified); one that does not is
/// reached in plain text, which the store says; one whose certificate cannot be verified
/// is refused with what to change, never used in plain text instead.
#[test]
fn without_sslmode_tls_is_tried_first_and_plain_text_is_said() {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let cert_pem = certified.cert.pem();
    let tls = PgServer::start_tls(&cert_pem, &certified.signing_key.serialize_pem());
    let ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca.path(), &cert_pem).unwrap();
    let trusting = || PostgresConfig {
        ca_file: Some(ca.path().to_path_buf()),
        ..config(keys())
    };
    for (database, url) in [
        ("bare", url_without_sslmode(&tls, "bare")),
        (
            "prefer",
            tls.create_database("prefer")
                .replace("sslmode=disable", "sslmode=prefer"),
        ),
    ] {
        let mut store = PostgresStore::open(&url, "a", trusting()).unwrap();
        append(&mut store, "a", 0..3);
        assert!(!store.fell_back_to_plain().unwrap(), "{database}");
        assert_eq!(ssl_in_use(&tls, database), "t", "{database}: not over TLS");
    }

    // A certificate the CA file does not vouch for: refused, saying what to change.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let other_ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(other_ca.path(), other.cert.pem()).unwrap();
    let distrusting = PostgresConfig {
        ca_file: Some(other_ca.path().to_path_buf()),
        ..config(keys())
    };
    let err =
        PostgresStore::open(&url_without_sslmode(&tls, "refused"), "b", distrusting).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("sslmode=prefer") && text.contains("sslmode=disable"),
        "{text}"
    );
    assert_eq!(
        ssl_in_use(&tls, "refused"),
        "",
        "a plain connection was made"
    );

    // A server without TLS: plain text, and the store says so.
    let plain = PgServer::start();
    let store =
        PostgresStore::open(&url_without_sslmode(&plain, "audit"), "a", trusting()).unwrap();
    assert!(store.fell_back_to_plain().unwrap());
    assert_eq!(ssl_in_use(&plain, "audit"), "f");
    // …and not when plain text is what the URL asks for.
    let store = PostgresStore::open(&plain.url("audit"), "b", trusting()).unwrap();
    assert!(!store.fell_back_to_plain().unwrap());
}

/// Through `sidelight serve`: a plain-text fallback is said at start-up naming
/// `audit.url`, and a server whose certificate cannot be verified stops start-up with a
/// message naming `audit.url`.
#[test]
fn the_proxy_names_audit_url_when_tls_falls_back_or_fails() {
    use sidelight_e2e::{AUDIT_KEY_HEX, Proxy, cli, config_for};
    let audit = |url: &str| {
        format!(
            "{}\n[audit]\nbackend = \"postgres\"\nurl = \"{url}\"\nwriter = \"a\"\n",
            config_for("http://127.0.0.1:9", "", "")
        )
    };
    let plain = PgServer::start();
    let proxy = Proxy::start_with_env(
        &audit(&url_without_sslmode(&plain, "audit")),
        &[("SIDELIGHT_AUDIT_KEY", AUDIT_KEY_HEX)],
    );
    let log = proxy.log_text();
    assert!(
        log.contains("audit.url") && log.contains("plain text") && log.contains("sslmode=require"),
        "{log}"
    );
    drop(proxy);

    // The system's CAs do not vouch for a self-signed certificate.
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let tls = PgServer::start_tls(
        &certified.cert.pem(),
        &certified.signing_key.serialize_pem(),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sidelight.toml");
    std::fs::write(&path, audit(&url_without_sslmode(&tls, "audit"))).unwrap();
    let out = cli(["serve", "--config"])
        .arg(&path)
        .env("SIDELIGHT_AUDIT_KEY", AUDIT_KEY_HEX)
        .run();
    assert_eq!(out.code, Some(64), "{out:?}");
    assert!(
        out.stderr.contains("audit.url") && out.stderr.contains("sslmode=prefer"),
        "{}",
        out.stderr
    );
}

/// A fleet's monitoring shares are sealed at rest (their level counts name feature
/// values) and open for every replica; the fleet keeps one drift reference per route,
/// the highest ranked offered (the first among equals), sealed too, and an erasure
/// withdraws it, since no replica can tell whose rows another's came from.
#[test]
fn the_fleets_monitoring_shares_and_drift_reference_are_sealed_and_ranked() {
    let pg = PgServer::start();
    let url = pg.create_database("audit");
    let a = open(&url, "a").fleet();
    let b = open(&url, "b").fleet();
    a.publish_monitor("m", 1_000, r#"{"level":"secret-level"}"#)
        .unwrap();
    let stored = pg.sql("audit", "SELECT summary FROM fleet_monitor");
    assert!(stored.starts_with("sealed:"), "{stored}");
    assert!(!stored.contains("secret-level"), "{stored}");
    assert_eq!(
        b.monitor_summaries("m", 0).unwrap(),
        vec![("a".to_owned(), r#"{"level":"secret-level"}"#.to_owned())]
    );

    assert_eq!(b.reference_id("m").unwrap(), None);
    assert_eq!(
        a.offer_reference("m", "first-a", 0, 1, b"grid a").unwrap(),
        "first-a"
    );
    // Another replica's first rows do not replace the first offered.
    assert_eq!(
        b.offer_reference("m", "first-b", 0, 2, b"grid b").unwrap(),
        "first-a"
    );
    // A training window does, and a newer one replaces it; an older one does not.
    assert_eq!(
        b.offer_reference("m", "train-1", 500, 3, b"grid t1")
            .unwrap(),
        "train-1"
    );
    assert_eq!(
        a.offer_reference("m", "train-0", 400, 4, b"grid t0")
            .unwrap(),
        "train-1"
    );
    assert_eq!(
        a.reference("m").unwrap(),
        Some(("train-1".to_owned(), b"grid t1".to_vec()))
    );
    assert!(
        !pg.sql(
            "audit",
            "SELECT encode(body, 'escape') FROM fleet_reference"
        )
        .contains("grid t1")
    );
    // Withdrawn only by the id it has.
    a.retire_reference("m", "train-0").unwrap();
    assert_eq!(a.reference_id("m").unwrap().as_deref(), Some("train-1"));
    a.erase_subject("ps_someone", 5).unwrap();
    assert_eq!(b.reference_id("m").unwrap(), None);
}

/// An explained prediction of route `credit` as the proxy records it.
fn explained(writer: &str, i: u64) -> Record {
    let mut r = Record::new(
        format!("{writer}-x{i}"),
        1_700_000_000_000 + i64::try_from(i).unwrap(),
        "credit",
        "credit-v3",
    );
    let income = i as f64;
    r.features = Some(json!({"names": ["income", "term"], "rows": [[income, "short"]]}));
    r.attributions = Some(json!([{
        "surrogate_version": 1, "space": "output", "base_value": 0.5, "prediction": 0.5,
        "attributions": [
            {"feature": "term", "value": "short", "contribution": -0.1},
            {"feature": "income", "value": income, "contribution": 0.01 * income},
        ],
    }]));
    r
}

#[test]
fn the_workbench_reads_every_replicas_explanations_from_the_shared_database() {
    use sidelight_report::explained::{Bounds, Scope, read};
    let server = PgServer::start();
    let url = server.create_database("workbench");
    let (mut a, mut b) = (open(&url, "replica-a"), open(&url, "replica-b"));
    a.append_batch(&(0..30).map(|i| explained("a", i)).collect::<Vec<_>>())
        .unwrap();
    b.append_batch(&(30..50).map(|i| explained("b", i)).collect::<Vec<_>>())
        .unwrap();
    append(&mut a, "a", 0..5);
    let reader = PostgresStore::open_reader(&url, config(keys())).unwrap();
    let scope = Scope {
        route: "credit".to_owned(),
        from_ms: 1_700_000_000_000,
        to_ms: 1_700_000_001_000,
        config: None,
    };
    let bounds = Bounds {
        max_rows: 1000,
        deadline: None,
        outcomes: true,
    };
    let frame = read(&reader, &scope, &bounds).unwrap();
    assert_eq!(frame.names, ["income", "term"]);
    assert_eq!(frame.rows.len(), 50, "both replicas' rows");
    let mean_income = frame.rows.iter().map(|r| r.contributions[0]).sum::<f64>() / 50.0;
    assert!((mean_income - 0.01 * 24.5).abs() < 1e-12);
    // The cap holds across writers, and says so.
    let short = read(
        &reader,
        &scope,
        &Bounds {
            max_rows: 10,
            ..bounds
        },
    )
    .unwrap();
    assert_eq!(short.rows.len(), 10);
    assert!(short.stopped.is_some());
}
