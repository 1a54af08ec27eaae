//! Verifying a log that a running proxy keeps appending to.
//!
//! `sidelight_audit::verify` reads the checkpoints first and then walks the chain; a
//! batch committed in between (with its own checkpoint) shows up as records after the
//! last checkpoint read, which is exactly what a forged append looks like. So the chain
//! is verified as it stood when verification began — every writer's records up to its
//! last checkpoint then — and the records beyond are checked afterwards against the
//! checkpoints as they are now: covered, they were appended by the key holder meanwhile
//! (and are verified in full next time); not covered, they are reported as
//! unauthenticated, as `verify` would.

use std::collections::BTreeMap;

use sidelight_audit::{
    AuditStore, ChainRow, Checkpoint, Erasure, Feedback, Keys, Page, Record, RecordQuery, Review,
    StoreError, Stored, checkpoint_mac_ok,
};

use super::{VerificationSection, WriterVerification};

/// Rows read per page while looking past the frozen end.
const PAGE: usize = 1024;

/// A read-only view of `store` that ends at each writer's last checkpoint as it was
/// when the view was made.
struct Frozen<S> {
    store: S,
    checkpoints: BTreeMap<String, Vec<Checkpoint>>,
}

impl<S: AuditStore> Frozen<S> {
    fn new(store: S) -> Result<Self, StoreError> {
        let mut checkpoints = BTreeMap::new();
        for writer in store.writers()? {
            let c = store.writer_checkpoints(&writer)?;
            checkpoints.insert(writer, c);
        }
        Ok(Self { store, checkpoints })
    }

    fn end(&self, writer: &str) -> u64 {
        self.checkpoints
            .get(writer)
            .and_then(|c| c.last())
            .map_or(0, |c| c.seq)
    }
}

fn read_only() -> StoreError {
    StoreError::Corrupt("the verification view is read-only".to_owned())
}

impl<S: AuditStore> AuditStore for Frozen<S> {
    fn append_batch(&mut self, _: &[Record]) -> Result<Vec<u64>, StoreError> {
        Err(read_only())
    }
    fn get(&self, id: &str) -> Result<Option<Stored>, StoreError> {
        self.store.get(id)
    }
    fn contains(&self, id: &str) -> Result<bool, StoreError> {
        self.store.contains(id)
    }
    fn query(&self, query: &RecordQuery) -> Result<Page, StoreError> {
        self.store.query(query)
    }
    fn erase(&mut self, _: &Erasure, _: i64) -> Result<u64, StoreError> {
        Err(read_only())
    }
    fn erased_subjects_since(&self, since_ms: i64) -> Result<Vec<String>, StoreError> {
        self.store.erased_subjects_since(since_ms)
    }
    fn reseal(&mut self, _: usize) -> Result<u64, StoreError> {
        Err(read_only())
    }
    fn key_usage(&self) -> Result<Vec<(Option<String>, u64)>, StoreError> {
        self.store.key_usage()
    }
    fn add_review(&mut self, _: &Review) -> Result<bool, StoreError> {
        Err(read_only())
    }
    fn reviews(&self, record_id: &str) -> Result<Vec<Review>, StoreError> {
        self.store.reviews(record_id)
    }
    fn add_feedback(&mut self, _: &Feedback) -> Result<bool, StoreError> {
        Err(read_only())
    }
    fn feedback(&self, record_id: &str) -> Result<Vec<Feedback>, StoreError> {
        self.store.feedback(record_id)
    }
    fn chain_rows(&self, after: Option<u64>, limit: usize) -> Result<Vec<ChainRow>, StoreError> {
        self.writer_chain_rows("", after, limit)
    }
    fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        self.writer_checkpoints("")
    }
    fn writers(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.checkpoints.keys().cloned().collect())
    }
    fn writer_chain_rows(
        &self,
        writer: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<ChainRow>, StoreError> {
        let end = self.end(writer);
        let mut rows = self.store.writer_chain_rows(writer, after, limit)?;
        rows.retain(|r| r.seq <= end);
        Ok(rows)
    }
    fn writer_checkpoints(&self, writer: &str) -> Result<Vec<Checkpoint>, StoreError> {
        Ok(self.checkpoints.get(writer).cloned().unwrap_or_default())
    }
}

/// Verifies the whole log (see the module docs).
pub(super) fn verify<S: AuditStore>(store: S, keys: &Keys) -> VerificationSection {
    match Frozen::new(store) {
        Ok(frozen) => check(&frozen, keys),
        Err(e) => failed(e.to_string()),
    }
}

fn failed(error: String) -> VerificationSection {
    VerificationSection {
        ok: false,
        records: 0,
        checkpoints: 0,
        erased: 0,
        last_seq: 0,
        last_hash: None,
        appended_while_verifying: 0,
        error: Some(error),
        writers: Vec::new(),
    }
}

fn check<S: AuditStore>(frozen: &Frozen<S>, keys: &Keys) -> VerificationSection {
    let report = match sidelight_audit::verify(frozen, keys.checkpoint_key()) {
        Ok(r) => r,
        Err(e) => return failed(e.to_string()),
    };
    // A replica that joined meanwhile has a chain the frozen view does not know: all of
    // it was appended while verifying, and is held to the same rule.
    let mut writers: Vec<String> = frozen.checkpoints.keys().cloned().collect();
    match frozen.store.writers() {
        Ok(now) => writers.extend(
            now.into_iter()
                .filter(|w| !frozen.checkpoints.contains_key(w)),
        ),
        Err(e) => return failed(e.to_string()),
    }
    let mut appended: BTreeMap<String, u64> = BTreeMap::new();
    for writer in &writers {
        match appended_since(frozen, keys, writer) {
            Ok(0) => {}
            Ok(n) => {
                appended.insert(writer.clone(), n);
            }
            Err(error) => return failed(error),
        }
    }
    let mut chains: Vec<WriterVerification> = report
        .writers
        .iter()
        .map(|w| WriterVerification {
            writer: w.writer.clone(),
            records: w.records,
            checkpoints: w.checkpoints,
            erased: w.erased,
            last_seq: w.last_seq,
            last_hash: w.last_hash.clone(),
            appended_while_verifying: appended.get(&w.writer).copied().unwrap_or(0),
        })
        .collect();
    for writer in writers
        .iter()
        .filter(|w| !frozen.checkpoints.contains_key(*w))
    {
        if let Some(&n) = appended.get(writer) {
            chains.push(WriterVerification {
                writer: writer.clone(),
                records: 0,
                checkpoints: 0,
                erased: 0,
                last_seq: 0,
                last_hash: sidelight_audit::GENESIS_HASH.to_owned(),
                appended_while_verifying: n,
            });
        }
    }
    VerificationSection {
        ok: true,
        records: report.records,
        checkpoints: report.checkpoints,
        erased: report.erased,
        last_seq: report.last_seq,
        last_hash: Some(report.last_hash),
        appended_while_verifying: appended.values().sum(),
        error: None,
        writers: chains,
    }
}

/// How many records `writer` appended after the frozen end of its chain; `Err` names
/// the first of them when they are not all covered by an authenticated checkpoint.
fn appended_since<S: AuditStore>(
    frozen: &Frozen<S>,
    keys: &Keys,
    writer: &str,
) -> Result<u64, String> {
    let end = frozen.end(writer);
    let tail = tail(&frozen.store, writer, end).map_err(|e| e.to_string())?;
    let Some(last) = tail.last() else {
        return Ok(0);
    };
    // Read after the rows: a batch commits with its checkpoint, so every row read
    // above that the key holder wrote is covered by now.
    let now = frozen
        .store
        .writer_checkpoints(writer)
        .map_err(|e| e.to_string())?;
    let key = keys.checkpoint_key();
    let covered = now
        .iter()
        .rev()
        .find(|c| checkpoint_mac_ok(key, c.seq, &c.hash, &c.mac))
        .is_some_and(|c| c.seq >= last.0);
    if !covered {
        let (seq, id) = tail.first().cloned().unwrap_or_default();
        let chain = if writer.is_empty() {
            String::new()
        } else {
            format!(" in the chain of writer {writer}")
        };
        return Err(format!(
            "record seq {seq} (id {id}){chain} is broken: record is not covered by any authenticated checkpoint"
        ));
    }
    Ok(tail.len() as u64)
}

/// The (seq, id) of a writer's records after `end`.
fn tail<S: AuditStore>(
    store: &S,
    writer: &str,
    end: u64,
) -> Result<Vec<(u64, String)>, StoreError> {
    let mut out = Vec::new();
    // Seq 0 is never assigned; a forged one sorts first and is walked by `verify`.
    let mut after = (end > 0).then_some(end);
    loop {
        let rows = store.writer_chain_rows(writer, after, PAGE)?;
        let Some(last) = rows.last() else {
            return Ok(out);
        };
        after = Some(last.seq);
        out.extend(rows.into_iter().map(|r| (r.seq, r.id)));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use sidelight_audit::{SqliteConfig, SqliteStore};

    fn records(from: i64, n: i64) -> Vec<Record> {
        (from..from + n)
            .map(|i| Record::new(format!("r{i}"), i, "credit", "m"))
            .collect()
    }

    #[test]
    fn records_appended_during_verification_count_only_when_a_checkpoint_covers_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let keys = Keys::from_master(vec![7; 32]).unwrap();
        let open = |keys: &Keys| SqliteStore::open(&path, SqliteConfig::new(keys.clone())).unwrap();
        let mut writer = open(&keys);
        writer.append_batch(&records(0, 5)).unwrap();

        // A proxy appends a batch (with its checkpoint) after verification began.
        let frozen = Frozen::new(open(&keys)).unwrap();
        writer.append_batch(&records(5, 3)).unwrap();
        let v = check(&frozen, &keys);
        assert!(v.ok, "{:?}", v.error);
        assert_eq!((v.records, v.appended_while_verifying), (5, 3));
        let chain = &v.writers[..];
        assert_eq!(chain.len(), 1);
        assert_eq!(
            (chain[0].records, chain[0].appended_while_verifying),
            (5, 3)
        );

        // Records appended without the key stay unauthenticated.
        let frozen = Frozen::new(open(&keys)).unwrap();
        let forger = Keys::from_master(vec![8; 32]).unwrap();
        let mut forged = SqliteStore::open(&path, SqliteConfig::new(forger)).unwrap();
        forged.append_batch(&records(8, 1)).unwrap();
        let v = check(&frozen, &keys);
        assert!(!v.ok);
        let error = v.error.unwrap();
        assert!(
            error.contains("seq 9") && error.contains("not covered"),
            "{error}"
        );
    }
}
