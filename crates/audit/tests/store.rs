//! Store, writer and tamper-detection tests.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use rusqlite::{Connection, params};
use serde_json::json;
use sidelight_audit::{
    AuditStore, BreakKind, Consent, Durability, Erasure, Keys, Pending, QueuePolicy, Record,
    RecordQuery, SqliteConfig, SqliteStore, SubmitError, VerifyError, WriteError, Writer,
    WriterConfig, verify,
};
use std::path::{Path, PathBuf};

const KEY: &[u8] = b"test checkpoint key";

fn config(every: u64) -> SqliteConfig {
    SqliteConfig {
        checkpoint_every: every,
        ..SqliteConfig::new(Keys::from_master(KEY.to_vec()).unwrap())
    }
}

fn record(i: u64) -> Record {
    let mut r = Record::new(
        format!("req-{i}"),
        1_700_000_000_000 + i64::try_from(i).unwrap(),
        "score",
        "credit-v3",
    );
    r.request = Some(format!("{{\"income\": {i}}}").into_bytes());
    r.response = Some(b"{\"predictions\": [0.7]}".to_vec());
    r.features = Some(json!({"income": i, "age": 41.5}));
    r.outputs = Some(json!([0.7]));
    r.surrogate_version = Some(3);
    r.attributions = Some(json!({"base": 0.1, "values": [0.3, -0.2]}));
    r.texts = Some(vec![format!("income mattered most ({i})")]);
    r.consent = if i % 3 == 0 {
        Consent::ExplainOnly
    } else {
        Consent::Full
    };
    r.subject = Some(format!("subj-{}", i % 4));
    r
}

/// A store at a fresh path with `n` records appended in batches of `batch`.
fn filled(n: u64, batch: usize) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let mut store = SqliteStore::open(&path, config(4)).unwrap();
    let records: Vec<Record> = (1..=n).map(record).collect();
    for chunk in records.chunks(batch) {
        store.append_batch(chunk).unwrap();
    }
    (dir, path)
}

fn reopen(path: &Path) -> SqliteStore {
    SqliteStore::open(path, config(4)).unwrap()
}

fn tamper(path: &Path, sql: &str) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(sql).unwrap();
}

fn broken_at(path: &Path) -> (u64, String, BreakKind) {
    match verify(&reopen(path), KEY) {
        Err(VerifyError::Broken { seq, id, kind }) => (seq, id, kind),
        other => panic!("expected a broken record, got {other:?}"),
    }
}

#[test]
fn append_and_read_back() {
    let (_dir, path) = filled(10, 3);
    let store = reopen(&path);
    let got = store.get("req-5").unwrap().unwrap();
    assert_eq!(got.seq, 5);
    let want = record(5);
    assert_eq!(got.record.request, want.request);
    assert_eq!(got.record.features, want.features);
    assert_eq!(got.record.texts, want.texts);
    assert_eq!(got.record.consent, want.consent);
    assert_eq!(got.record.hash.len(), 64);
    let prev = store.get("req-4").unwrap().unwrap();
    assert_eq!(got.record.prev_hash, prev.record.hash);
    assert!(store.get("nope").unwrap().is_none());
    let report = verify(&store, KEY).unwrap();
    assert_eq!(report.records, 10);
    assert_eq!(report.last_seq, 10);
    // Periodic checkpoints at 4 and 8 plus batch ends at 3, 6, 9, 10.
    assert_eq!(report.checkpoints, 6);
}

#[test]
fn range_paginates() {
    let (_dir, path) = filled(25, 7);
    let store = reopen(&path);
    let mut q = RecordQuery {
        from_ms: Some(1_700_000_000_003),
        to_ms: Some(1_700_000_000_023),
        limit: 6,
        ..RecordQuery::default()
    };
    let mut seqs = Vec::new();
    loop {
        let page = store.query(&q).unwrap();
        assert!(page.records.len() <= 6);
        seqs.extend(page.records.iter().map(|s| s.seq));
        match page.next {
            Some(n) => q.after = Some(n),
            None => break,
        }
    }
    assert_eq!(seqs, (3..23).collect::<Vec<u64>>());
}

/// A large batch is sealed on several threads: its records still come back whole, each
/// in its place, and the chain verifies.
#[test]
fn a_large_batch_sealed_in_parts_reads_back_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let mut store = SqliteStore::open(&path, config(64)).unwrap();
    let batch: Vec<Record> = (1..=300).map(record).collect();
    let seqs = store.append_batch(&batch).unwrap();
    assert_eq!(seqs, (1..=300).collect::<Vec<u64>>());
    for i in [1u64, 17, 150, 299, 300] {
        let stored = store.get(&format!("req-{i}")).unwrap().unwrap();
        assert_eq!(stored.seq, i);
        assert_eq!(stored.record.request, batch[(i - 1) as usize].request);
        assert_eq!(stored.record.features, batch[(i - 1) as usize].features);
    }
    assert_eq!(verify(&reopen(&path), KEY).unwrap().records, 300);
}

#[test]
fn reopened_store_continues_the_chain() {
    let (_dir, path) = filled(5, 2);
    let mut store = reopen(&path);
    assert_eq!(
        store.append_batch(&[record(6), record(7)]).unwrap(),
        vec![6, 7]
    );
    assert_eq!(verify(&store, KEY).unwrap().records, 7);
}

#[test]
fn sync_ack_only_after_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let writer = Writer::start(
        SqliteStore::open(&path, config(100)).unwrap(),
        WriterConfig::default(),
    )
    .unwrap();
    let acks: Vec<_> = (1..=50)
        .map(|i| writer.submit(record(i), Durability::Sync).unwrap())
        .collect();
    for (i, ack) in (1..=50u64).zip(acks) {
        let seq = ack.wait().unwrap().unwrap();
        // Read it from a separate connection, as another process would.
        let other = Connection::open(&path).unwrap();
        let id: String = other
            .query_row(
                "SELECT id FROM records WHERE seq = ?1",
                params![i64::try_from(seq).unwrap()],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(id, format!("req-{i}"));
    }
    let m = writer.metrics();
    assert_eq!((m.committed, m.queued, m.failed, m.shed), (50, 0, 0, 0));
    writer.shutdown();
    assert_eq!(verify(&reopen(&path), KEY).unwrap().records, 50);
}

#[test]
fn ack_is_a_future() {
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let writer = Writer::start(
        SqliteStore::open(dir.path().join("a.db"), config(10)).unwrap(),
        WriterConfig::default(),
    )
    .unwrap();
    let mut ack = std::pin::pin!(writer.submit(record(1), Durability::Sync).unwrap());
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = Context::from_waker(&waker);
    let seq = loop {
        match ack.as_mut().poll(&mut cx) {
            Poll::Ready(r) => break r.unwrap(),
            Poll::Pending => std::thread::park(),
        }
    };
    assert_eq!(seq, Some(1));
}

/// A record made on the writer's thread is committed like one made before; one whose
/// making panics fails alone, and the records around it and the writer go on.
#[test]
fn deferred_records_are_made_by_the_writer_and_a_failing_one_is_lost_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let writer = Writer::start(
        SqliteStore::open(&path, config(100)).unwrap(),
        WriterConfig::default(),
    )
    .unwrap();
    let made_on = std::sync::Arc::new(std::sync::Mutex::new(None));
    let first = {
        let made_on = made_on.clone();
        writer
            .submit(
                Pending::deferred("req-1".to_owned(), move || {
                    *made_on.lock().unwrap() = std::thread::current().name().map(str::to_owned);
                    record(1)
                }),
                Durability::Sync,
            )
            .unwrap()
    };
    let failing = writer
        .submit(
            Pending::deferred("req-2".to_owned(), || panic!("a bug in making a record")),
            Durability::Sync,
        )
        .unwrap();
    let third = writer.submit(record(3), Durability::Sync).unwrap();
    assert_eq!(first.wait().unwrap(), Some(1));
    assert!(matches!(failing.wait(), Err(WriteError::Build)));
    assert_eq!(third.wait().unwrap(), Some(2));
    assert_eq!(
        made_on.lock().unwrap().as_deref(),
        Some("sidelight-audit-writer")
    );
    let m = writer.metrics();
    assert_eq!((m.committed, m.queued, m.failed), (2, 0, 1));
    writer.shutdown();
    assert_eq!(verify(&reopen(&path), KEY).unwrap().records, 2);
}

#[test]
fn async_records_are_committed_by_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let writer = Writer::start(
        SqliteStore::open(&path, config(16)).unwrap(),
        WriterConfig {
            queue_capacity: 8,
            max_batch: 4,
            policy: QueuePolicy::Block,
        },
    )
    .unwrap();
    for i in 1..=100 {
        assert_eq!(
            writer
                .submit(record(i), Durability::Async)
                .unwrap()
                .wait()
                .unwrap(),
            None
        );
    }
    writer.shutdown();
    assert_eq!(verify(&reopen(&path), KEY).unwrap().records, 100);
}

/// A store whose appends block until released, to fill the queue deterministically.
struct Gate {
    inner: SqliteStore,
    release: crossbeam_channel::Receiver<()>,
    entered: crossbeam_channel::Sender<()>,
}

impl AuditStore for Gate {
    fn append_batch(
        &mut self,
        records: &[Record],
    ) -> Result<Vec<u64>, sidelight_audit::StoreError> {
        let _ = self.entered.send(());
        let _ = self.release.recv();
        self.inner.append_batch(records)
    }
    fn get(
        &self,
        id: &str,
    ) -> Result<Option<sidelight_audit::Stored>, sidelight_audit::StoreError> {
        self.inner.get(id)
    }
    fn contains(&self, id: &str) -> Result<bool, sidelight_audit::StoreError> {
        self.inner.contains(id)
    }
    fn query(&self, q: &RecordQuery) -> Result<sidelight_audit::Page, sidelight_audit::StoreError> {
        self.inner.query(q)
    }
    fn erase(&mut self, what: &Erasure, now_ms: i64) -> Result<u64, sidelight_audit::StoreError> {
        self.inner.erase(what, now_ms)
    }
    fn erased_subjects_since(
        &self,
        since_ms: i64,
    ) -> Result<Vec<String>, sidelight_audit::StoreError> {
        self.inner.erased_subjects_since(since_ms)
    }
    fn erasures(&self) -> Result<Vec<sidelight_audit::ErasureEvent>, sidelight_audit::StoreError> {
        self.inner.erasures()
    }
    fn reseal(&mut self, limit: usize) -> Result<u64, sidelight_audit::StoreError> {
        self.inner.reseal(limit)
    }
    fn key_usage(&self) -> Result<Vec<(Option<String>, u64)>, sidelight_audit::StoreError> {
        self.inner.key_usage()
    }
    fn add_review(
        &mut self,
        r: &sidelight_audit::Review,
    ) -> Result<bool, sidelight_audit::StoreError> {
        self.inner.add_review(r)
    }
    fn reviews(
        &self,
        id: &str,
    ) -> Result<Vec<sidelight_audit::Review>, sidelight_audit::StoreError> {
        self.inner.reviews(id)
    }
    fn add_feedback(
        &mut self,
        f: &sidelight_audit::Feedback,
    ) -> Result<bool, sidelight_audit::StoreError> {
        self.inner.add_feedback(f)
    }
    fn feedback(
        &self,
        id: &str,
    ) -> Result<Vec<sidelight_audit::Feedback>, sidelight_audit::StoreError> {
        self.inner.feedback(id)
    }
    fn chain_rows(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<sidelight_audit::ChainRow>, sidelight_audit::StoreError> {
        self.inner.chain_rows(after, limit)
    }
    fn checkpoints(&self) -> Result<Vec<sidelight_audit::Checkpoint>, sidelight_audit::StoreError> {
        self.inner.checkpoints()
    }
}

#[test]
fn shed_policy_counts_dropped_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let (release_tx, release) = crossbeam_channel::unbounded();
    let (entered, entered_rx) = crossbeam_channel::unbounded();
    let store = Gate {
        inner: SqliteStore::open(&path, config(16)).unwrap(),
        release,
        entered,
    };
    let writer = Writer::start(
        store,
        WriterConfig {
            queue_capacity: 2,
            max_batch: 1,
            policy: QueuePolicy::Shed,
        },
    )
    .unwrap();
    writer.submit(record(1), Durability::Async).unwrap();
    // The writer thread holds record 1 and is blocked in append: the queue is empty.
    entered_rx.recv().unwrap();
    writer.submit(record(2), Durability::Async).unwrap();
    writer.submit(record(3), Durability::Async).unwrap();
    for i in 10..20 {
        assert!(matches!(
            writer.submit(record(i), Durability::Async),
            Err(SubmitError::Shed)
        ));
    }
    let m = writer.metrics();
    assert_eq!((m.shed, m.queued, m.committed), (10, 3, 0));
    for _ in 0..3 {
        release_tx.send(()).unwrap();
    }
    writer.shutdown();
    let report = verify(&reopen(&path), KEY).unwrap();
    assert_eq!(report.records, 3);
}

#[test]
fn failed_batch_fails_its_sync_acks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let writer = Writer::start(
        SqliteStore::open(&path, config(16)).unwrap(),
        WriterConfig::default(),
    )
    .unwrap();
    writer
        .submit(record(1), Durability::Sync)
        .unwrap()
        .wait()
        .unwrap();
    // A duplicate id violates the unique constraint: the batch fails, the ack says so.
    let err = writer
        .submit(record(1), Durability::Sync)
        .unwrap()
        .wait()
        .unwrap_err();
    assert!(err.to_string().contains("write failed"), "{err}");
    assert_eq!(writer.metrics().failed, 1);
}

#[test]
fn deleted_record_is_detected() {
    let (_dir, path) = filled(12, 5);
    tamper(&path, "DELETE FROM records WHERE seq = 7");
    let (seq, id, kind) = broken_at(&path);
    assert_eq!(
        (seq, id.as_str(), kind),
        (8, "req-8", BreakKind::Gap { expected: 7 })
    );
}

#[test]
fn deleted_tail_is_detected() {
    let (_dir, path) = filled(12, 5);
    tamper(&path, "DELETE FROM records WHERE seq >= 11");
    assert!(matches!(
        verify(&reopen(&path), KEY),
        Err(VerifyError::Truncated {
            seq: 12,
            last_seq: 10
        })
    ));
}

#[test]
fn altered_field_is_detected() {
    let (_dir, path) = filled(12, 5);
    tamper(&path, "UPDATE records SET route = 'other' WHERE seq = 6");
    assert_eq!(broken_at(&path).0, 6);
    assert_eq!(broken_at(&path).2, BreakKind::HashMismatch);
}

#[test]
fn altered_payload_is_detected() {
    // Sealed: the altered bytes no longer open.
    let (_dir, path) = filled(12, 5);
    tamper(
        &path,
        "UPDATE records SET features = CAST('{\"income\":1}' AS BLOB) WHERE seq = 9",
    );
    assert_eq!(
        broken_at(&path),
        (
            9,
            "req-9".to_owned(),
            BreakKind::SealBroken { field: "features" }
        )
    );
    // In the clear: the bytes no longer match their digest.
    let dir = tempfile::tempdir().unwrap();
    let clear = dir.path().join("clear.db");
    let clear_config = SqliteConfig {
        encrypt: false,
        ..config(4)
    };
    let mut store = SqliteStore::open(&clear, clear_config).unwrap();
    store
        .append_batch(&(1..=12).map(record).collect::<Vec<_>>())
        .unwrap();
    drop(store);
    tamper(
        &clear,
        "UPDATE records SET features = CAST('{\"income\":1}' AS BLOB) WHERE seq = 9",
    );
    assert_eq!(
        broken_at(&clear),
        (
            9,
            "req-9".to_owned(),
            BreakKind::DigestMismatch { field: "features" }
        )
    );
}

#[test]
fn payload_removed_without_an_authenticated_erasure_is_detected() {
    let (_dir, path) = filled(12, 5);
    tamper(&path, "UPDATE records SET request = NULL WHERE seq = 3");
    assert_eq!(
        broken_at(&path).2,
        BreakKind::RemovedWithoutTombstone { field: "request" }
    );
    // A forged tombstone: the content gone and `erased_at` set, without the key.
    tamper(
        &path,
        "UPDATE records SET erased_at = 1, erased_reason = 'subject_erasure', \
         response = NULL, features = NULL WHERE seq = 3",
    );
    let (seq, _, kind) = broken_at(&path);
    assert_eq!(seq, 3);
    assert!(
        matches!(kind, BreakKind::UnauthenticatedErasure { .. }),
        "{kind:?}"
    );
}

#[test]
fn swapped_records_are_detected() {
    let (_dir, path) = filled(12, 5);
    tamper(
        &path,
        "UPDATE records SET seq = -1 WHERE seq = 4; UPDATE records SET seq = 4 WHERE seq = 5; \
         UPDATE records SET seq = 5 WHERE seq = -1;",
    );
    let (seq, id, kind) = broken_at(&path);
    assert_eq!(
        (seq, id.as_str(), kind),
        (4, "req-5", BreakKind::PrevHashMismatch)
    );
}

#[test]
fn forged_appended_record_is_detected() {
    let (_dir, path) = filled(12, 5);
    // Forge a record with a valid chain hash (no key is needed for that).
    let mut store = SqliteStore::open(
        &path,
        SqliteConfig {
            checkpoint_every: 0,
            ..SqliteConfig::new(Keys::from_master(b"forger forger forger".to_vec()).unwrap())
        },
    )
    .unwrap();
    store.append_batch(&[record(13)]).unwrap();
    drop(store);
    // Remove the forger's checkpoint (signed with the wrong key): the row is now
    // chained correctly but unauthenticated.
    tamper(&path, "DELETE FROM checkpoints WHERE seq = 13");
    assert_eq!(
        broken_at(&path),
        (13, "req-13".to_owned(), BreakKind::Unauthenticated)
    );
}

#[test]
fn forged_record_before_the_first_is_detected() {
    let (_dir, path) = filled(6, 6);
    tamper(
        &path,
        "INSERT INTO records SELECT 0, 'forged', time_ms, route, model, consent, subject, surrogate_version, review_state, request, request_sha256, response, response_sha256, features, features_sha256, outputs, outputs_sha256, attributions, attributions_sha256, texts, texts_sha256, erased_at, prev_hash, hash, key_id, erased_reason, review_reasons, erasure, erasure_mac FROM records WHERE seq = 1",
    );
    assert_eq!(
        broken_at(&path),
        (0, "forged".to_owned(), BreakKind::Gap { expected: 1 })
    );
}

#[test]
fn wrong_key_is_a_clear_error() {
    let (_dir, path) = filled(12, 5);
    let err = verify(&reopen(&path), b"not the key").unwrap_err();
    assert!(matches!(err, VerifyError::KeyMismatch));
    assert!(err.to_string().contains("key does not match"), "{err}");
}

#[test]
fn forged_checkpoint_is_detected() {
    let (_dir, path) = filled(12, 5);
    tamper(&path, "UPDATE checkpoints SET mac = '00' WHERE seq = 8");
    assert!(matches!(
        verify(&reopen(&path), KEY),
        Err(VerifyError::BadCheckpoint { seq: 8 })
    ));
}
