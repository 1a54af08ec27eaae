//! Walking the chain and checking the checkpoints.

use crate::keys::OpenError;
use crate::record::{Canonical, Consent, GENESIS_HASH, sha256_hex};
use crate::store::{
    AuditStore, ChainRow, Checkpoint, ERASABLE_FIELDS, ErasureEvent, LEGACY_SELECTOR, StoreError,
    checkpoint_mac_ok, erasure_mac_ok, tombstone_mac_ok,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};

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
    /// Authenticated erasures (each a person's request, a retention purge, or the
    /// binding of tombstones older than authenticated erasures).
    pub erasures: u64,
    /// Records appended after the snapshot that was verified (a log being written), all
    /// covered by an authenticated checkpoint; the next verification walks them.
    pub appended_since: u64,
    /// Records whose review state lags their latest chained review decision (a decision
    /// is chained before the state is written, so a crash or a verification in between
    /// shows one; a state set back by hand shows the same way). Not a break: the
    /// decision itself is in the chain.
    pub reviews_not_applied: u64,
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
    /// Records appended to this chain after the verified snapshot.
    pub appended_since: u64,
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
    /// The record carries a tombstone that no authenticated erasure wrote.
    UnauthenticatedErasure {
        /// What is missing or does not match.
        why: &'static str,
    },
    /// The record's review state matches no review decision chained for it.
    ReviewStateWithoutDecision {
        /// The state stored.
        state: String,
    },
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
            BreakKind::UnauthenticatedErasure { why } => write!(
                f,
                "its erasure tombstone is not covered by an authenticated erasure ({why})"
            ),
            BreakKind::ReviewStateWithoutDecision { state } => write!(
                f,
                "review state `{state}` matches no review decision chained for the record"
            ),
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
    /// An erasure event's MAC does not verify: it was forged or altered.
    #[error("erasure {n} has an invalid MAC (forged or altered)")]
    BadErasure {
        /// The event's number.
        n: u64,
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

/// Whether a tombstoned row was erased by an authenticated erasure that selects it.
fn check_tombstone(
    key: &[u8],
    writer: &str,
    row: &ChainRow,
    erased_at: i64,
    erasures: &HashMap<u64, ErasureEvent>,
) -> Result<(), VerifyError> {
    let fail = |why| Err(broken(row, BreakKind::UnauthenticatedErasure { why }));
    let (Some(n), Some(mac)) = (row.erasure, row.erasure_mac.as_deref()) else {
        return match row.erasure {
            Some(0) => fail(
                "it predates authenticated erasures and the upgrade that would have bound it \
                 ran without the log's key, or it was forged since",
            ),
            _ => fail("no erasure is named"),
        };
    };
    let Some(event) = erasures.get(&n) else {
        return fail("the erasure it names is not in the log");
    };
    let reason = row.erased_reason.as_deref().unwrap_or_default();
    if !tombstone_mac_ok(key, n, writer, row.seq, &row.hash, erased_at, reason, mac) {
        return fail("its MAC does not verify");
    }
    if event.selector != LEGACY_SELECTOR {
        if event.time_ms != erased_at || event.reason != reason {
            return fail("its time or reason differs from the erasure's");
        }
        let selected = match event.selector.split_once(':') {
            Some(("subject", subject)) => row.subject.as_deref() == Some(subject),
            Some(("before", cutoff)) => cutoff.parse::<i64>().is_ok_and(|c| row.time_ms < c),
            _ => false,
        };
        if !selected {
            return fail("the erasure does not select this record");
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
/// and records missing before a checkpoint (truncation) are detected too. Every
/// tombstone must be bound to an authenticated erasure that selects its record, and
/// every review state must be one a chained review decision set.
///
/// The log is read in one snapshot ([`AuditStore::begin_snapshot`]), so a log that a
/// proxy keeps writing is verified as it stood; records appended since are then checked
/// against the checkpoints (covered, they are counted in
/// [`VerifyReport::appended_since`]; not covered, they break the log as any forged
/// append does).
pub fn verify<S: AuditStore + ?Sized>(store: &S, key: &[u8]) -> Result<VerifyReport, VerifyError> {
    store.begin_snapshot()?;
    let verified = verify_snapshot(store, key);
    // A failed end only loses the snapshot, which the walk no longer needs.
    let _ = store.end_snapshot();
    let mut report = verified?;
    let mut known: BTreeSet<&str> = BTreeSet::new();
    for w in &mut report.writers {
        known.insert(&w.writer);
        w.appended_since = appended_since(store, key, &w.writer, w.last_seq, &w.last_hash)?;
    }
    let mut late = Vec::new();
    for writer in store.writers()? {
        if !known.contains(writer.as_str()) {
            let n = appended_since(store, key, &writer, 0, GENESIS_HASH)?;
            late.push(WriterReport {
                writer,
                records: 0,
                checkpoints: 0,
                erased: 0,
                last_seq: 0,
                last_hash: GENESIS_HASH.to_owned(),
                appended_since: n,
            });
        }
    }
    report
        .writers
        .extend(late.into_iter().filter(|w| w.appended_since > 0));
    report.appended_since = report.writers.iter().map(|w| w.appended_since).sum();
    Ok(report)
}

/// How many records `writer` appended after seq `end` (whose hash is `end_hash`): they
/// must continue the chain and be covered by an authenticated checkpoint.
fn appended_since<S: AuditStore + ?Sized>(
    store: &S,
    key: &[u8],
    writer: &str,
    end: u64,
    end_hash: &str,
) -> Result<u64, VerifyError> {
    let in_writer = |e: VerifyError| match writer.is_empty() {
        true => e,
        false => VerifyError::InWriter {
            writer: writer.to_owned(),
            source: Box::new(e),
        },
    };
    let named = (!writer.is_empty()).then_some(writer);
    let mut first: Option<ChainRow> = None;
    let mut last = end;
    let mut last_hash = end_hash.to_owned();
    let mut count = 0u64;
    let mut after = (end > 0).then_some(end);
    loop {
        let rows = store.writer_chain_rows(writer, after, PAGE)?;
        let Some(tail) = rows.last() else { break };
        after = Some(tail.seq);
        for row in &rows {
            check_row(named, row, last + 1, &last_hash).map_err(in_writer)?;
            last = row.seq;
            last_hash.clone_from(&row.hash);
        }
        count += rows.len() as u64;
        if first.is_none() {
            first = rows.into_iter().next();
        }
    }
    let Some(first) = first else {
        return Ok(0);
    };
    // Read after the rows: a batch commits with its checkpoint, so every row read above
    // that the key holder wrote is covered by now.
    let checkpoints = store.writer_checkpoints(writer)?;
    // Every batch commits with a checkpoint of its last record, and a read sees whole
    // batches: the last record read must carry an authenticated checkpoint of its own.
    let covered = checkpoints.iter().any(|c| {
        c.seq == last && c.hash == last_hash && checkpoint_mac_ok(key, c.seq, &c.hash, &c.mac)
    });
    if !covered {
        return Err(in_writer(broken(&first, BreakKind::Unauthenticated)));
    }
    Ok(count)
}

/// What the chain says about reviews: the states each record's chained decisions set
/// (the last one last), and the stored states to hold against them.
#[derive(Default)]
struct Reviews {
    decided: HashMap<String, Vec<&'static str>>,
    /// Records (not erased) with a state a reviewer sets: (writer, row).
    reviewed: Vec<(String, ChainRow)>,
    /// Records (not erased) still `none` or `pending`.
    undecided: BTreeSet<String>,
}

impl Reviews {
    fn note(&mut self, writer: &str, row: &ChainRow) {
        if row.route == "_review" {
            let decision = row.fields[0]
                .content
                .as_deref()
                .and_then(|c| serde_json::from_slice::<crate::store::Review>(c).ok());
            if let Some(review) = decision {
                self.decided
                    .entry(review.record_id.clone())
                    .or_default()
                    .push(review.state());
            }
            return;
        }
        if row.erased_at.is_some() {
            return;
        }
        match row.review_state.as_str() {
            "none" | "pending" => {
                self.undecided.insert(row.id.clone());
            }
            _ => self.reviewed.push((writer.to_owned(), trimmed(row))),
        }
    }

    /// The first record whose state no chained decision set; else how many lag their
    /// latest decision.
    fn check(&self) -> Result<u64, VerifyError> {
        let mut lagging = 0;
        for (writer, row) in &self.reviewed {
            let states = self.decided.get(&row.id);
            if !states.is_some_and(|s| s.contains(&row.review_state.as_str())) {
                let e = broken(
                    row,
                    BreakKind::ReviewStateWithoutDecision {
                        state: row.review_state.clone(),
                    },
                );
                return Err(match writer.is_empty() {
                    true => e,
                    false => VerifyError::InWriter {
                        writer: writer.clone(),
                        source: Box::new(e),
                    },
                });
            }
            if states.and_then(|s| s.last()) != Some(&row.review_state.as_str()) {
                lagging += 1;
            }
        }
        lagging += self
            .undecided
            .iter()
            .filter(|id| self.decided.contains_key(*id))
            .count() as u64;
        Ok(lagging)
    }
}

/// A row without its contents, to keep for later checks.
fn trimmed(row: &ChainRow) -> ChainRow {
    ChainRow {
        fields: Default::default(),
        ..row.clone()
    }
}

fn verify_snapshot<S: AuditStore + ?Sized>(
    store: &S,
    key: &[u8],
) -> Result<VerifyReport, VerifyError> {
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
    let mut erasures = HashMap::new();
    for event in store.erasures()? {
        if !erasure_mac_ok(key, &event) {
            return Err(VerifyError::BadErasure { n: event.n });
        }
        erasures.insert(event.n, event);
    }
    let mut report = VerifyReport {
        records: 0,
        checkpoints: 0,
        erased: 0,
        last_seq: 0,
        last_hash: GENESIS_HASH.to_owned(),
        erasures: erasures.len() as u64,
        appended_since: 0,
        reviews_not_applied: 0,
        writers: Vec::with_capacity(writers.len()),
    };
    let mut seen = KeysSeen::default();
    let mut reviews = Reviews::default();
    for (writer, checkpoints) in writers.iter().zip(&checkpoints) {
        let walk = Walk {
            writer,
            checkpoints,
            key,
            erasures: &erasures,
        };
        let chain =
            walk.run(store, &mut seen, &mut reviews)
                .map_err(|e| match (writer.is_empty(), e) {
                    // Not the writer's doing: the same whichever chain noticed it.
                    (_, e @ (VerifyError::Store(_) | VerifyError::KeyMismatch)) | (true, e) => e,
                    (false, e) => VerifyError::InWriter {
                        writer: writer.clone(),
                        source: Box::new(e),
                    },
                })?;
        report.records += chain.records;
        report.checkpoints += chain.checkpoints;
        report.erased += chain.erased;
        report.last_seq = chain.last_seq;
        report.last_hash.clone_from(&chain.last_hash);
        report.writers.push(chain);
    }
    report.reviews_not_applied = reviews.check()?;
    Ok(report)
}

/// One writer's chain, and what it is checked against.
struct Walk<'a> {
    writer: &'a str,
    checkpoints: &'a [Checkpoint],
    key: &'a [u8],
    erasures: &'a HashMap<u64, ErasureEvent>,
}

impl Walk<'_> {
    fn run<S: AuditStore + ?Sized>(
        &self,
        store: &S,
        seen: &mut KeysSeen,
        reviews: &mut Reviews,
    ) -> Result<WriterReport, VerifyError> {
        let (writer, checkpoints, key) = (self.writer, self.checkpoints, self.key);
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
            appended_since: 0,
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
                if let Some(at) = row.erased_at {
                    check_tombstone(key, writer, row, at, self.erasures)?;
                }
                check_seals(store, writer, row, seen)?;
                reviews.note(writer, row);
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
}
