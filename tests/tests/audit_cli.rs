//! `sidelight audit export | erase | subject | rotate-key | verify` through the real
//! binary, on databases written directly with `sidelight-audit` (no proxy): a CSV export
//! that `surrogate fit` reads as it is, filters, erasure by raw identifier, key rotation
//! that leaves no plaintext on disk, wrong keys told apart, and bad flags named.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sidelight_audit::{AuditStore, Erasure, Keys, Record, RecordQuery, SqliteConfig, SqliteStore};
use sidelight_e2e::{AUDIT_KEY_HEX, CliRun, cli};

const OTHER_MASTER: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";
/// A value only ever in payloads and texts: it must never be on disk in the clear once
/// sealed, nor in any stderr.
const SECRET: &str = "plaintext-canary-7d1e0b";
/// 2026-11-27T10:00:00Z.
const T0: i64 = 1_795_773_600_000;
const N: usize = 300;

/// `sidelight ARGS…`, checked for leaks: neither a payload nor the key may reach stderr.
fn sidelight<I, S>(args: I) -> CliRun
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let run = cli(args).run();
    assert!(
        !run.stderr.contains(SECRET),
        "payload on stderr: {}",
        run.stderr
    );
    assert!(
        !run.stderr.contains(AUDIT_KEY_HEX),
        "key on stderr: {}",
        run.stderr
    );
    run
}

/// `sidelight audit COMMAND [--db DB] [--key-file KEY] EXTRA…`.
fn audit(command: &str, db: Option<&Path>, key: Option<&Path>, extra: &[&str]) -> CliRun {
    let mut args: Vec<OsString> = vec!["audit".into(), command.into()];
    if let Some(db) = db {
        args.extend(["--db".into(), db.into()]);
    }
    if let Some(key) = key {
        args.extend(["--key-file".into(), key.into()]);
    }
    args.extend(extra.iter().map(OsString::from));
    sidelight(args)
}

/// `sidelight audit export --db DB --key-file KEY --format FORMAT EXTRA…`.
fn export(db: &Path, key: &Path, format: &str, extra: &[&str]) -> CliRun {
    let args = [&["--format", format], extra].concat();
    audit("export", Some(db), Some(key), &args)
}

/// `sidelight audit verify --db DB --key-file KEY`.
fn verify(db: &Path, key: &Path) -> CliRun {
    audit("verify", Some(db), Some(key), &[])
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn keys() -> Keys {
    Keys::parse(AUDIT_KEY_HEX.as_bytes(), "test").unwrap()
}

fn raw_subject(i: usize) -> String {
    format!("customer-{}", i % 3)
}

/// A deterministic model: what `surrogate fit` should learn from the export.
fn prediction(a: f64, b: f64) -> f64 {
    0.3 + 0.05 * a - 0.1 * b
}

fn record(i: usize, keys: &Keys) -> Record {
    let a = (i % 17) as f64;
    let b = (i % 11) as f64 / 2.0;
    let mut r = Record::new(format!("r{i:03}"), T0 + i as i64 * 1000, "credit", "m:1");
    r.request = Some(
        json!({"instances": [{"a": a, "b": b, "note": SECRET}]})
            .to_string()
            .into_bytes(),
    );
    r.response = Some(
        json!({"predictions": [prediction(a, b)]})
            .to_string()
            .into_bytes(),
    );
    r.features = Some(json!({"names": ["a", "b"], "rows": [[a, b]]}));
    r.outputs = Some(json!([[prediction(a, b)]]));
    r.texts = Some(vec![format!("because of {SECRET}")]);
    r.subject = Some(keys.pseudonym(&raw_subject(i)));
    r
}

/// A database of `N` records, sealed (or not) with `keys`, in a few batches.
fn database(dir: &Path, keys: &Keys, encrypt: bool) -> PathBuf {
    let path = dir.join("audit.db");
    let mut store = SqliteStore::open(
        &path,
        SqliteConfig {
            encrypt,
            ..SqliteConfig::new(keys.clone())
        },
    )
    .unwrap();
    let records: Vec<Record> = (0..N).map(|i| record(i, keys)).collect();
    for batch in records.chunks(64) {
        store.append_batch(batch).unwrap();
    }
    path
}

fn key_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn file_bytes(path: &Path) -> Vec<u8> {
    // The WAL holds the newest pages; checkpoint it into the main file first.
    let conn = rusqlite::Connection::open(path).unwrap();
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

fn jsonl(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn ids(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .map(|l| l["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_csv_export_feeds_surrogate_fit() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path(), &keys(), true);
    let key = key_file(dir.path(), "audit.key", AUDIT_KEY_HEX);
    let csv = dir.path().join("export.csv");
    let run = export(&db, &key, "csv", &["--out", p(&csv)]);
    assert_eq!(run.code, Some(0), "{}", run.text());
    assert!(run.stderr.contains("300 record(s)"), "{}", run.stderr);
    assert!(run.stderr.contains("300 row(s) written"), "{}", run.stderr);
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("a,b,prediction"));
    assert_eq!(lines.count(), N);

    let model = dir.path().join("m.json");
    let fit = sidelight([
        "surrogate",
        "fit",
        "--data",
        p(&csv),
        "--target",
        "prediction",
        "--out",
        p(&model),
    ]);
    assert_eq!(fit.code, Some(0), "{}", fit.text());
    assert!(model.is_file());
}

#[test]
fn jsonl_exports_filter_by_subject_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path(), &keys(), true);
    let key = key_file(dir.path(), "audit.key", AUDIT_KEY_HEX);
    let export = |extra: &[&str]| -> Vec<Value> {
        let run = export(&db, &key, "jsonl", extra);
        assert_eq!(run.code, Some(0), "{}", run.text());
        jsonl(&run.stdout)
    };

    let all = export(&[]);
    assert_eq!(all.len(), N);
    assert_eq!(all[0]["request"]["instances"][0]["note"], SECRET);
    assert_eq!(all[0]["time"], "2026-11-27T10:00:00.000Z");

    let subject = keys().pseudonym("customer-1");
    let by_key = export(&["--subject", &subject]);
    assert_eq!(by_key.len(), N / 3);
    assert!(by_key.iter().all(|l| l["subject"] == subject.as_str()));
    let by_raw = export(&["--subject-id", "customer-1"]);
    assert_eq!(ids(&by_raw), ids(&by_key));

    // --from inclusive (RFC 3339), --to exclusive (unix milliseconds).
    let to = (T0 + 120_000).to_string();
    let window = export(&["--from", "2026-11-27T10:01:00Z", "--to", &to]);
    assert_eq!(window.len(), 60);
    assert_eq!(window[0]["id"], "r060");
    assert_eq!(window[59]["id"], "r119");
    let both = export(&["--from", "2026-11-27T10:01:00Z", "--subject", &subject]);
    assert!(both.iter().all(|l| l["subject"] == subject.as_str()));
    assert_eq!(both.len(), 80);
    assert!(export(&["--route", "churn"]).is_empty());
}

#[test]
fn erasing_by_raw_identifier_forgets_exactly_that_subject() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path(), &keys(), true);
    let key = key_file(dir.path(), "audit.key", AUDIT_KEY_HEX);
    let erase = || {
        audit(
            "erase",
            Some(&db),
            Some(&key),
            &["--subject-id", "customer-2"],
        )
    };
    let run = erase();
    assert_eq!(run.code, Some(0), "{}", run.text());
    let subject = keys().pseudonym("customer-2");
    assert!(
        run.stdout
            .contains(&format!("erased 100 record(s) of subject {subject}")),
        "{}",
        run.stdout
    );
    assert!(!run.text().contains("customer-2"), "{}", run.text());
    assert!(run.stderr.contains("--admin"), "{}", run.stderr);

    let store = SqliteStore::open(&db, SqliteConfig::new(keys())).unwrap();
    let page = store
        .query(&RecordQuery {
            limit: 1000,
            ..RecordQuery::default()
        })
        .unwrap();
    assert_eq!(page.records.len(), N);
    for stored in &page.records {
        let r = &stored.record;
        let mine = r.subject.as_deref() == Some(subject.as_str());
        assert_eq!(r.erased_at.is_some(), mine, "{}", r.id);
        assert_eq!(r.request.is_none(), mine, "{}", r.id);
        assert_eq!(r.features.is_none(), mine, "{}", r.id);
    }
    drop(store);

    let again = erase();
    assert_eq!(again.code, Some(0), "{}", again.text());
    assert!(
        again.stdout.contains("erased 0 records"),
        "{}",
        again.stdout
    );

    let verify = verify(&db, &key);
    assert_eq!(verify.code, Some(0), "{}", verify.text());
    assert!(verify.stdout.contains("300 record(s)"), "{}", verify.stdout);
    assert!(verify.stdout.contains("100 erased"), "{}", verify.stdout);
}

#[test]
fn the_subject_command_prints_the_pseudonym() {
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), "audit.key", AUDIT_KEY_HEX);
    let run = audit("subject", None, Some(&key), &["--id", "customer-1"]);
    assert_eq!(run.code, Some(0), "{}", run.text());
    assert_eq!(run.stdout.trim(), keys().pseudonym("customer-1"));
    // The environment variable works too.
    let out = cli(["audit", "subject", "--id", "customer-1"])
        .env("SIDELIGHT_AUDIT_KEY", AUDIT_KEY_HEX)
        .run();
    assert_eq!(out.stdout.trim(), keys().pseudonym("customer-1"));
    // No key at all is a usage error.
    let run = audit("subject", None, None, &["--id", "customer-1"]);
    assert_eq!(run.code, Some(64), "{}", run.text());
    assert!(run.stderr.contains("--key-file"), "{}", run.stderr);
}

#[test]
fn rotate_key_reseals_everything_and_retires_the_old_key() {
    let dir = tempfile::tempdir().unwrap();
    // Stored in the clear (sealing was off), with a bare master key.
    let db = database(dir.path(), &keys(), false);
    let key = key_file(dir.path(), "audit.key", AUDIT_KEY_HEX);
    assert!(contains(&file_bytes(&db), SECRET));
    let rotate = |extra: &[&str]| audit("rotate-key", Some(&db), Some(&key), extra);

    let run = rotate(&["--id", "k1"]);
    assert_eq!(run.code, Some(0), "{}", run.text());
    assert!(
        run.stdout.contains("re-sealed 300 record(s)"),
        "{}",
        run.stdout
    );
    let text = std::fs::read_to_string(&key).unwrap();
    let ring = Keys::parse(text.as_bytes(), "ring").unwrap();
    assert!(ring.is_keyring());
    assert_eq!(ring.active_id(), "k1");
    assert_eq!(ring.checkpoint_key(), keys().checkpoint_key());
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    assert!(!dir.path().join("audit.key.tmp").exists());
    let v = verify(&db, &key);
    assert_eq!(v.code, Some(0), "{}", v.text());
    assert!(
        !contains(&file_bytes(&db), SECRET),
        "plaintext left on disk"
    );

    // A second rotation with --retire: everything moves to the new key and k1 goes.
    let run = rotate(&["--retire"]);
    assert_eq!(run.code, Some(0), "{}", run.text());
    assert!(
        run.stdout.contains("re-sealed 300 record(s)"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("k1"), "{}", run.stdout);
    let text = std::fs::read_to_string(&key).unwrap();
    let ring = Keys::parse(text.as_bytes(), "ring").unwrap();
    let active = ring.active_id().to_owned();
    assert!(
        active.starts_with("k20") && active.len() == "k20261127T101500".len(),
        "{active}"
    );
    let section = text.split("[encryption]").nth(1).unwrap();
    let listed: Vec<&str> = section
        .lines()
        .filter_map(|l| l.split_once(" = ").map(|(id, _)| id.trim()))
        .collect();
    assert_eq!(listed, [active.as_str()], "{section}");
    let v = verify(&db, &key);
    assert_eq!(v.code, Some(0), "{}", v.text());
    assert!(
        !contains(&file_bytes(&db), SECRET),
        "plaintext left on disk"
    );

    // The records still read back in the clear with the new file.
    let run = export(&db, &key, "jsonl", &[]);
    assert_eq!(run.code, Some(0), "{}", run.text());
    assert_eq!(
        jsonl(&run.stdout)[5]["texts"][0],
        format!("because of {SECRET}")
    );

    // --reseal-only with nothing to do, and --id with it is refused.
    let run = rotate(&["--reseal-only", "--retire"]);
    assert_eq!(run.code, Some(0), "{}", run.text());
    assert!(
        run.stdout.contains("re-sealed 0 record(s)"),
        "{}",
        run.stdout
    );
    let run = rotate(&["--reseal-only", "--id", "k9"]);
    assert_eq!(run.code, Some(64), "{}", run.text());

    // The old bare master key no longer holds the key the records are sealed with.
    let old = key_file(dir.path(), "old.key", AUDIT_KEY_HEX);
    let v = verify(&db, &old);
    assert_eq!(v.code, Some(65), "{}", v.text());
    assert!(v.stderr.contains("does not hold"), "{}", v.stderr);
}

#[test]
fn wrong_keys_are_unusable_input_and_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let mut ring = keys();
    ring.rotate("k2").unwrap();
    let db = database(dir.path(), &ring, true);
    let verify = |key: &Path| verify(&db, key);
    let good = key_file(dir.path(), "good.key", &ring.to_keyring_text());
    let run = verify(&good);
    assert_eq!(run.code, Some(0), "{}", run.text());

    // Another master key.
    let other = key_file(dir.path(), "other.key", OTHER_MASTER);
    let run = verify(&other);
    assert_eq!(run.code, Some(65), "{}", run.text());
    assert!(run.stderr.contains("does not match"), "{}", run.stderr);

    // The right master and key id, other key bytes.
    let forged: String = ring
        .to_keyring_text()
        .lines()
        .map(|l| {
            if l.starts_with("k2 = ") {
                format!("k2 = \"{}\"\n", "ab".repeat(32))
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    let forged = key_file(dir.path(), "forged.key", &forged);
    let run = verify(&forged);
    assert_eq!(run.code, Some(65), "{}", run.text());
    assert!(run.stderr.contains("does not open"), "{}", run.stderr);

    // Exporting or erasing with another master key is refused before anything happens.
    let run = audit(
        "erase",
        Some(&db),
        Some(&other),
        &["--subject-id", "customer-1"],
    );
    assert_eq!(run.code, Some(65), "{}", run.text());
    assert!(run.stderr.contains("does not match"), "{}", run.stderr);

    // A malformed key file, a missing key file, a missing database.
    let bad = key_file(dir.path(), "bad.key", "master = \"zz\"\nactive = \"x\"\n");
    assert_eq!(verify(&bad).code, Some(65));
    assert_eq!(verify(&dir.path().join("none.key")).code, Some(66));
    let run = export(&dir.path().join("missing.db"), &good, "jsonl", &[]);
    assert_eq!(run.code, Some(66), "{}", run.text());
    assert!(run.stderr.contains("missing.db"), "{}", run.stderr);
    assert!(!dir.path().join("missing.db").exists());
}

#[test]
fn bad_flags_are_usage_errors_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path(), &keys(), true);
    let key = key_file(dir.path(), "audit.key", AUDIT_KEY_HEX);
    let export = |extra: &[&str]| export(&db, &key, "csv", extra);
    let run = export(&["--from", "yesterday"]);
    assert_eq!(run.code, Some(64), "{}", run.text());
    assert!(run.stderr.contains("--from"), "{}", run.stderr);
    let run = export(&["--to", "2026-13-45T99:00:00Z"]);
    assert_eq!(run.code, Some(64), "{}", run.text());
    assert!(run.stderr.contains("--to"), "{}", run.stderr);
    let run = export(&["--from", "2026-11-28", "--to", "2026-11-27"]);
    assert_eq!(run.code, Some(64), "{}", run.text());
    let run = export(&["--subject", "customer-1"]);
    assert_eq!(run.code, Some(64), "{}", run.text());
    assert!(run.stderr.contains("--subject-id"), "{}", run.stderr);
    // clap's own usage errors (here an unknown flag) exit 64 like the rest, not 2.
    let run = export(&["--no-such-flag"]);
    assert_eq!(run.code, Some(64), "{}", run.text());
    assert!(run.stderr.contains("--no-such-flag"), "{}", run.stderr);

    let run = audit("erase", None, None, &["--subject-id", "customer-1"]);
    assert_eq!(run.code, Some(64), "{}", run.text());
    assert!(
        run.stderr.contains("--db") && run.stderr.contains("--admin"),
        "{}",
        run.stderr
    );
}

/// A one-shot HTTP server: answers the first request with `status` and `body`, and
/// hands back the request's path and body.
fn admin_stub(
    status: u16,
    body: &'static str,
) -> (String, std::thread::JoinHandle<(String, String)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream);
        let mut request_line = String::new();
        reader.read_line(&mut request_line).unwrap();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap();
                }
            }
        }
        let mut request = vec![0; length];
        reader.read_exact(&mut request).unwrap();
        let mut stream = reader.into_inner();
        write!(
            stream,
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        stream.flush().unwrap();
        (
            request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or("")
                .to_owned(),
            String::from_utf8(request).unwrap(),
        )
    });
    (url, handle)
}

#[test]
fn erasing_through_the_admin_api_posts_the_pseudonym() {
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), "audit.key", AUDIT_KEY_HEX);
    let (url, server) = admin_stub(
        200,
        r#"{"erased_records": 3, "window_rows_removed": 2, "routes_retraining": ["credit"]}"#,
    );
    let run = audit(
        "erase",
        None,
        Some(&key),
        &["--admin", &url, "--subject-id", "customer-1"],
    );
    assert_eq!(run.code, Some(0), "{}", run.text());
    let (path, body) = server.join().unwrap();
    assert_eq!(path, "/api/v1/erasure");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body, json!({"subject": keys().pseudonym("customer-1")}));
    assert!(run.stdout.contains("erased 3 record(s)"), "{}", run.stdout);
    assert!(run.stdout.contains("2 row(s)"), "{}", run.stdout);
    assert!(run.stdout.contains("credit"), "{}", run.stdout);

    // Without a key at hand the raw identifier goes to the proxy, which pseudonymises
    // it with its own key.
    let (url, server) = admin_stub(
        200,
        r#"{"subject": "ps_00", "erased_records": 0, "window_rows_removed": 0, "routes_retraining": []}"#,
    );
    let run = audit(
        "erase",
        None,
        None,
        &["--admin", &url, "--subject-id", "customer-1"],
    );
    assert_eq!(run.code, Some(0), "{}", run.text());
    let (_, body) = server.join().unwrap();
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body, json!({"subject_id": "customer-1"}));
    assert!(run.stdout.contains("ps_00"), "{}", run.stdout);
    assert!(run.stdout.contains("no surrogate"), "{}", run.stdout);

    let (url, server) = admin_stub(
        404,
        r#"{"error": {"code": "not_found", "message": "no such thing"}}"#,
    );
    let subject = "ps_0123456789abcdef0123456789abcdef";
    let run = audit(
        "erase",
        None,
        None,
        &["--admin", &url, "--subject", subject],
    );
    server.join().unwrap();
    assert_eq!(run.code, Some(1), "{}", run.text());
    assert!(run.stderr.contains("no such thing"), "{}", run.stderr);
}

#[test]
fn offline_erasure_needs_the_key_and_leaves_an_authenticated_erasure() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path(), &keys(), true);
    let subject = keys().pseudonym("customer-0");
    // Without the key the erasure could not be authenticated, so it is refused.
    let run = audit("erase", Some(&db), None, &["--subject", &subject]);
    assert_eq!(run.code, Some(64), "{}", run.text());
    assert!(run.stderr.contains("no audit key"), "{}", run.stderr);
    let key = key_file(dir.path(), "audit.key", AUDIT_KEY_HEX);
    let run = audit("erase", Some(&db), Some(&key), &["--subject", &subject]);
    assert_eq!(run.code, Some(0), "{}", run.text());
    assert!(
        run.stdout.contains("erased 100 record(s)"),
        "{}",
        run.stdout
    );
    let checked = verify(&db, &key);
    assert_eq!(checked.code, Some(0), "{}", checked.text());
    assert!(
        checked
            .stdout
            .contains("100 erased by 1 authenticated erasure(s)"),
        "{}",
        checked.stdout
    );
    // The same tombstones written by hand, without the key, are named.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "UPDATE records SET request = NULL, response = NULL, features = NULL, outputs = NULL, \
         attributions = NULL, texts = NULL, erased_at = 5, erased_reason = 'subject_erasure' \
         WHERE seq = (SELECT min(seq) FROM records WHERE erased_at IS NULL)",
    )
    .unwrap();
    let forged = verify(&db, &key);
    assert_eq!(forged.code, Some(1), "{}", forged.text());
    assert!(
        forged
            .stdout
            .contains("not covered by an authenticated erasure"),
        "{}",
        forged.stdout
    );
    let mut store = SqliteStore::open(&db, SqliteConfig::new(keys())).unwrap();
    assert_eq!(store.erase(&Erasure::Subject(subject), 1).unwrap(), 0);
}
