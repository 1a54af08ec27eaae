//! Walking the chain and checking the checkpoints.

use crate::keys::OpenError;
use crate::record::{Canonical, Consent, GENESIS_HASH, sha256_hex};
use crate::store::{
    AuditStore, ChainRow, Checkpoint, ERASABLE_FIELDS, StoreError, checkpoint_mac_ok,
};
use std::collections::{BTreeMap, BTreeSet};

/// Rows read per page while walking the chain.
const PAGE: usize = 1024;

/// What a successful verification covered: totals over every writer's chain, and each
/// chain on its own in `writers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records walked.
    pub records: u64,
    /// Checkpoints whose MAC and hash matched.
    pub checkpoints: u64,
    /// Records whose erasable fields are tombstoned.
    pub erased: u64,
    /// Seq of the last record (0 when empty). With several writers, that of the writer
    /// listed last in `writers`.
    pub last_seq: u64,
    /// Hash of the last record (the genesis hash when empty). With several writers, that
    /// of the writer listed last in `writers`.
    pub last_hash: String,
    /// Each writer's chain, in the order [`AuditStore::writers`] lists them (a SQLite log
    /// has one, named `""`).
    pub writers: Vec<WriterReport>,
}

/// What verification found in one writer's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterReport {
    /// The writer's name (`""` for a store with a single chain).
    pub writer: String,
    /// Records walked.
    pub records: u64,
    /// Checkpoints whose MAC and hash matched.
    pub checkpoints: u64,
    /// Records whose erasable fields are tombstoned.
    pub erased: u64,
    /// Seq of the chain's last record (0 when empty).
    pub last_seq: u64,
    /// Hash of the chain's last record (the genesis hash when empty).
    pub last_hash: String,
}

/// Why a record is broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BreakKind {
    /// Records are missing before this one (deleted or reordered); `expected` is the seq
    /// that should have come next.
    Gap {
        /// The seq that was expected.
        expected: u64,
    },
    /// `prev_hash` does not equal the hash of the record before it.
    PrevHashMismatch,
    /// The hash does not match the record's content (a hashed field was altered).
    HashMismatch,
    /// An erasable field's content does not match its digest.
    DigestMismatch {
        /// The field name.
        field: &'static str,
    },
    /// An erasable field's content is gone but the record carries no tombstone.
    RemovedWithoutTombstone {
        /// The field name.
        field: &'static str,
    },
    /// A sealed field does not open although other records sealed with the same key
    /// do: its bytes were altered or moved from another record.
    SealBroken {
        /// The field name.
        field: &'static str,
    },
    /// The consent value is not one this crate writes.
    BadConsent,
    /// The record's hash differs from the authenticated checkpoint at its seq.
    CheckpointHashMismatch,
    /// The record comes after the last authenticated checkpoint: it was appended
    /// without the key (every batch ends with a checkpoint).
    Unauthenticated,
}

impl std::fmt::Display for BreakKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BreakKind::Gap { expected } => {
                write!(f, "records missing: expected seq {expected} next")
            }
            BreakKind::PrevHashMismatch => {
                f.write_str("prev_hash does not match the previous record")
            }
            BreakKind::HashMismatch => f.write_str("hash does not match the record's content"),
            BreakKind::DigestMismatch { field } => {
                write!(f, "field `{field}` does not match its digest")
            }
            BreakKind::RemovedWithoutTombstone { field } => {
                write!(
                    f,
                    "field `{field}` was removed without an erasure tombstone"
                )
            }
            BreakKind::SealBroken { field } => write!(
                f,
                "sealed field `{field}` does not open (altered or moved from another record)"
            ),
            BreakKind::BadConsent => f.write_str("unknown consent value"),
            BreakKind::CheckpointHashMismatch => {
                f.write_str("hash differs from the authenticated checkpoint")
            }
            BreakKind::Unauthenticated => {
                f.write_str("record is not covered by any authenticated checkpoint")
            }
        }
    }
}

/// Why verification failed.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// No checkpoint MAC matches under the given key: the key is wrong (or every
    /// checkpoint was forged).
    #[error(
        "the checkpoint key does not match this audit log (no checkpoint MAC verifies under it)"
    )]
    KeyMismatch,
    /// Records are sealed with an encryption key the key file does not hold.
    #[error(
        "record {id} is sealed with encryption key `{key_id}`, which the key file does not hold"
    )]
    MissingEncryptionKey {
        /// The key id.
        key_id: String,
        /// The first record sealed with it.
        id: String,
    },
    /// No record sealed with this key id opens with the key file's key of that id.
    #[error(
        "encryption key `{key_id}` in the key file does not open this log's records (wrong key)"
    )]
    WrongEncryptionKey {
        /// The key id.
        key_id: String,
    },
    /// A checkpoint's MAC does not verify although others do: the checkpoint was forged
    /// or altered.
    #[error("checkpoint at seq {seq} has an invalid MAC (forged or altered)")]
    BadCheckpoint {
        /// The checkpoint's seq.
        seq: u64,
    },
    /// An authenticated checkpoint refers to a record that is not in the log: records
    /// were deleted from the end.
    #[error(
        "checkpoint at seq {seq} refers to a record that is missing (log truncated after seq {last_seq})"
    )]
    Truncated {
        /// The checkpoint's seq.
        seq: u64,
        /// The last seq present.
        last_seq: u64,
    },
    /// The first broken record.
    #[error("record seq {seq} (id {id}) is broken: {kind}")]
    Broken {
        /// Seq as found in the store.
        seq: u64,
        /// The record's id.
        id: String,
        /// What is wrong.
        kind: BreakKind,
    },
    /// The store could not be read.
    #[error("reading the store: {0}")]
    Store(#[from] StoreError),
    /// What went wrong in one writer's chain, for stores with a chain per writer.
    #[error("writer `{writer}`: {source}")]
    InWriter {
        /// The writer whose chain is broken.
        writer: String,
        /// What is wrong with it.
        source: Box<VerifyError>,
    },
}

impl VerifyError {
    /// The error itself, without the writer it was found in.
    pub fn innermost(&self) -> &VerifyError {
        match self {
            VerifyError::InWriter { source, .. } => source.innermost(),
            other => other,
        }
    }

    /// The writer whose chain the error is in, when the store has named writers.
    pub fn writer(&self) -> Option<&str> {
        match self {
            VerifyError::InWriter { writer, .. } => Some(writer),
            _ => None,
        }
    }
}

fn broken(row: &ChainRow, kind: BreakKind) -> VerifyError {
    VerifyError::Broken {
        seq: row.seq,
        id: row.id.clone(),
        kind,
    }
}

/// Keys known to open at least one record, so that a field that does not open is an
/// altered record rather than a wrong key.
#[derive(Default)]
struct KeysSeen(BTreeSet<String>);

impl KeysSeen {
    fn note(&mut self, row: &ChainRow) {
        if let Some(k) = &row.key_id {
            if row
                .fields
                .iter()
                .any(|f| f.content.is_some() && f.open_error.is_none())
            {
                self.0.insert(k.clone());
            }
        }
    }

    /// Whether any record from `row` on in `writer`'s chain, or any record of another
    /// writer, opens with `key_id` (looking ahead when none has yet).
    fn opens<S: AuditStore + ?Sized>(
        &mut self,
        store: &S,
        writer: &str,
        row: &ChainRow,
        key_id: &str,
    ) -> Result<bool, StoreError> {
        if self.0.contains(key_id) {
            return Ok(true);
        }
        if self.look_ahead(store, writer, Some(row.seq), key_id)? {
            return Ok(true);
        }
        for other in store.writers()? {
            if other != writer && self.look_ahead(store, &other, None, key_id)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn look_ahead<S: AuditStore + ?Sized>(
        &mut self,
        store: &S,
        writer: &str,
        mut after: Option<u64>,
        key_id: &str,
    ) -> Result<bool, StoreError> {
        loop {
            let rows = store.writer_chain_rows(writer, after, PAGE)?;
            let Some(last) = rows.last() else {
                return Ok(false);
            };
            after = Some(last.seq);
            for r in &rows {
                self.note(r);
            }
            if self.0.contains(key_id) {
                return Ok(true);
            }
        }
    }
}

fn check_seals<S: AuditStore + ?Sized>(
    store: &S,
    writer: &str,
    row: &ChainRow,
    seen: &mut KeysSeen,
) -> Result<(), VerifyError> {
    seen.note(row);
    for (f, name) in row.fields.iter().zip(ERASABLE_FIELDS) {
        match &f.open_error {
            None => {}
            Some(OpenError::MissingKey(key_id)) => {
                return Err(VerifyError::MissingEncryptionKey {
                    key_id: key_id.clone(),
                    id: row.id.clone(),
                });
            }
            Some(OpenError::Failed(key_id)) => {
                if seen.opens(store, writer, row, key_id)? {
                    return Err(broken(row, BreakKind::SealBroken { field: name }));
                }
                return Err(VerifyError::WrongEncryptionKey {
                    key_id: key_id.clone(),
                });
            }
        }
    }
    Ok(())
}

fn check_row(
    writer: Option<&str>,
    row: &ChainRow,
    expected_seq: u64,
    prev: &str,
) -> Result<bool, VerifyError> {
    if row.seq != expected_seq {
        return Err(broken(
            row,
            BreakKind::Gap {
                expected: expected_seq,
            },
        ));
    }
    if Consent::parse(&row.consent).is_none() {
        return Err(broken(row, BreakKind::BadConsent));
    }
    let mut erased = false;
    for (f, name) in row.fields.iter().zip(ERASABLE_FIELDS) {
        match (&f.content, &f.sha256) {
            // Checked by `check_seals`.
            (None, _) if f.open_error.is_some() => {}
            (Some(c), Some(d)) if sha256_hex(c) == *d => {}
            (Some(_), _) => return Err(broken(row, BreakKind::DigestMismatch { field: name })),
            (None, Some(_)) if row.erased_at.is_some() => erased = true,
            (None, Some(_)) => {
                return Err(broken(
                    row,
                    BreakKind::RemovedWithoutTombstone { field: name },
                ));
            }
            (None, None) => {}
        }
    }
    if row.prev_hash != prev {
        return Err(broken(row, BreakKind::PrevHashMismatch));
    }
    let d = |i: usize| row.fields[i].sha256.as_deref();
    let canonical = Canonical {
        v: Canonical::version(writer),
        writer,
        seq: row.seq,
        id: &row.id,
        time_ms: row.time_ms,
        route: &row.route,
        model: &row.model,
        consent: &row.consent,
        subject: row.subject.as_deref(),
        surrogate_version: row.surrogate_version,
        request_sha256: d(0),
        response_sha256: d(1),
        features_sha256: d(2),
        outputs_sha256: d(3),
        attributions_sha256: d(4),
        texts_sha256: d(5),
    };
    if canonical.chain_hash(prev) != row.hash {
        return Err(broken(row, BreakKind::HashMismatch));
    }
    Ok(erased)
}

/// Walks every writer's chain and checks every checkpoint with `key`.
///
/// Detects a deleted, altered, reordered or inserted record and names the first broken
/// one (and, in a store with a chain per writer, its writer). Every batch the store
/// appends ends with a checkpoint, so records after the last checkpoint (forged appends)
/// and records missing before a checkpoint (truncation) are detected too.
pub fn verify<S: AuditStore + ?Sized>(store: &S, key: &[u8]) -> Result<VerifyReport, VerifyError> {
    let writers = store.writers()?;
    let mut checkpoints = Vec::with_capacity(writers.len());
    for writer in &writers {
        checkpoints.push(store.writer_checkpoints(writer)?);
    }
    let any_ok = checkpoints
        .iter()
        .flatten()
        .any(|c| checkpoint_mac_ok(key, c.seq, &c.hash, &c.mac));
    if !any_ok && checkpoints.iter().any(|c| !c.is_empty()) {
        return Err(VerifyError::KeyMismatch);
    }
    let mut report = VerifyReport {
        records: 0,
        checkpoints: 0,
        erased: 0,
        last_seq: 0,
        last_hash: GENESIS_HASH.to_owned(),
        writers: Vec::with_capacity(writers.len()),
    };
    let mut seen = KeysSeen::default();
    for (writer, checkpoints) in writers.iter().zip(&checkpoints) {
        let chain = verify_chain(store, writer, checkpoints, key, &mut seen).map_err(|e| {
            match (writer.is_empty(), e) {
                // Not the writer's doing: the same whichever chain noticed it.
                (_, e @ (VerifyError::Store(_) | VerifyError::KeyMismatch)) | (true, e) => e,
                (false, e) => VerifyError::InWriter {
                    writer: writer.clone(),
                    source: Box::new(e),
                },
            }
        })?;
        report.records += chain.records;
        report.checkpoints += chain.checkpoints;
        report.erased += chain.erased;
        report.last_seq = chain.last_seq;
        report.last_hash.clone_from(&chain.last_hash);
        report.writers.push(chain);
    }
    Ok(report)
}

fn verify_chain<S: AuditStore + ?Sized>(
    store: &S,
    writer: &str,
    checkpoints: &[Checkpoint],
    key: &[u8],
    seen: &mut KeysSeen,
) -> Result<WriterReport, VerifyError> {
    if let Some(c) = checkpoints
        .iter()
        .find(|c| !checkpoint_mac_ok(key, c.seq, &c.hash, &c.mac))
    {
        return Err(VerifyError::BadCheckpoint { seq: c.seq });
    }
    let by_seq: BTreeMap<u64, &str> = checkpoints
        .iter()
        .map(|c| (c.seq, c.hash.as_str()))
        .collect();
    let last_checkpoint = checkpoints.last().map_or(0, |c| c.seq);
    let named = (!writer.is_empty()).then_some(writer);

    let mut report = WriterReport {
        writer: writer.to_owned(),
        records: 0,
        checkpoints: 0,
        erased: 0,
        last_seq: 0,
        last_hash: GENESIS_HASH.to_owned(),
    };
    let mut after = None;
    loop {
        let rows = store.writer_chain_rows(writer, after, PAGE)?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            let expected = report.last_seq + 1;
            if check_row(named, row, expected, &report.last_hash)? {
                report.erased += 1;
            }
            if row.seq > last_checkpoint {
                return Err(broken(row, BreakKind::Unauthenticated));
            }
            if let Some(h) = by_seq.get(&row.seq) {
                if *h != row.hash {
                    return Err(broken(row, BreakKind::CheckpointHashMismatch));
                }
                report.checkpoints += 1;
            }
            check_seals(store, writer, row, seen)?;
            report.records += 1;
            report.last_seq = row.seq;
            report.last_hash.clone_from(&row.hash);
        }
        after = Some(report.last_seq);
    }
    if last_checkpoint > report.last_seq {
        return Err(VerifyError::Truncated {
            seq: last_checkpoint,
            last_seq: report.last_seq,
        });
    }
    Ok(report)
}
