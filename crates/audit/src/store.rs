//! The store trait that every backend (SQLite, PostgreSQL) implements.

use crate::db_error::{postgres_describe, postgres_kind, sqlite_kind};
use crate::keys::OpenError;
use crate::record::Record;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Errors from a store backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The SQLite backend failed (disk full, read-only, locked, ...).
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A JSON field could not be encoded or decoded.
    #[error("json field: {0}")]
    Json(#[from] serde_json::Error),
    /// A stored value is not what this crate writes.
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// A value does not fit the storage type.
    #[error("value out of range: {0}")]
    OutOfRange(&'static str),
    /// A sealed field could not be opened with the keyring.
    #[error("record {id}, field `{field}`: {source}")]
    Open {
        /// The record's id.
        id: String,
        /// The field.
        field: &'static str,
        /// Why.
        source: OpenError,
    },
    /// The keys do not fit the log (checked when a writer opens it).
    #[error("{0}")]
    WrongKey(String),
    /// A field could not be sealed (the active key is unusable).
    #[error("cannot seal record {0} with the active key")]
    Seal(String),
    /// The PostgreSQL backend failed (server unreachable, disk full, read-only, lock
    /// timeout, ...). Shown as the SQLSTATE code and the server's message, never its
    /// detail, which may quote values.
    #[error("postgres: {}", postgres_describe(.0))]
    Postgres(#[from] postgres::Error),
    /// Another live process appends to this writer's chain.
    #[error(
        "audit writer `{0}` is already active in another process (each replica needs a writer name of its own)"
    )]
    WriterActive(String),
    /// The store reached its configured size limit.
    #[error("the audit store reached its size limit of {limit} bytes")]
    SizeLimit {
        /// The limit, in bytes.
        limit: u64,
    },
    /// The store's settings are unusable (connection URL, writer name).
    #[error("{0}")]
    Config(String),
}

impl StoreError {
    /// Whether the store refused the write because it is full (disk full or the
    /// configured size limit), read-only, locked by another process, or unreachable (a
    /// database server that is down or dropped the connection: `unavailable`): the kinds
    /// of trouble an operator fixes outside Sidelight.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::Sqlite(e) => sqlite_kind(e),
            StoreError::Open { .. } | StoreError::Seal(_) | StoreError::WrongKey(_) => "key",
            StoreError::Postgres(e) => postgres_kind(e),
            StoreError::WriterActive(_) => "locked",
            StoreError::SizeLimit { .. } => "full",
            _ => "other",
        }
    }
}

/// A record together with its position in the chain.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// Position in the log, starting at 1: in the chain for SQLite, in the fleet-wide
    /// order across writers for PostgreSQL (its chains' own seqs are in [`ChainRow`]).
    pub seq: u64,
    /// The record, with `prev_hash` and `hash` filled in.
    pub record: Record,
}

/// A query over records with keyset pagination on `seq`. Every filter is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordQuery {
    /// Inclusive lower bound on `time_ms`.
    pub from_ms: Option<i64>,
    /// Exclusive upper bound on `time_ms`.
    pub to_ms: Option<i64>,
    /// Only this route.
    pub route: Option<String>,
    /// Only this pseudonymous subject.
    pub subject: Option<String>,
    /// Only this review state.
    pub review_state: Option<String>,
    /// Page size (at least 1 is used).
    pub limit: usize,
    /// Return only records with `seq` greater than this (the previous page's `next`).
    pub after: Option<u64>,
}

/// One page of a query.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// Records in ascending `seq`.
    pub records: Vec<Stored>,
    /// Cursor for the next page (`RecordQuery::after`), `None` when this page is the last.
    pub next: Option<u64>,
}

/// The raw, hashed view of one stored row, as verification needs it: digests and the
/// stored bytes of every erasable field, exactly as they are on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainRow {
    /// Position in the chain.
    pub seq: u64,
    /// Record id.
    pub id: String,
    /// Unix milliseconds.
    pub time_ms: i64,
    /// Route name.
    pub route: String,
    /// Model identity.
    pub model: String,
    /// Consent as stored.
    pub consent: String,
    /// Pseudonymous subject key.
    pub subject: Option<String>,
    /// Surrogate version.
    pub surrogate_version: Option<u64>,
    /// Erasable fields in canonical order: request, response, features, outputs,
    /// attributions, texts; opened (decrypted) where they were sealed.
    pub fields: [ErasableField; 6],
    /// The key that sealed the fields; `None` when they are stored in the clear.
    pub key_id: Option<String>,
    /// Tombstone time, if erased.
    pub erased_at: Option<i64>,
    /// Why it was erased, as the tombstone says.
    pub erased_reason: Option<String>,
    /// The authenticated erasure ([`ErasureEvent::n`]) the tombstone is bound to; `Some(0)`
    /// marks a tombstone older than authenticated erasures that the upgrade could not
    /// bind (it ran without the log's key).
    pub erasure: Option<u64>,
    /// The tombstone's MAC ([`tombstone_mac`]), binding it to its erasure and record.
    pub erasure_mac: Option<String>,
    /// The record's review state as stored (not hashed; checked against the chained
    /// review decisions).
    pub review_state: String,
    /// Stored previous hash.
    pub prev_hash: String,
    /// Stored hash.
    pub hash: String,
}

/// Names of the erasable fields, in the order of [`ChainRow::fields`].
pub const ERASABLE_FIELDS: [&str; 6] = [
    "request",
    "response",
    "features",
    "outputs",
    "attributions",
    "texts",
];

/// An erasable field as stored: its content bytes (if still present) and its digest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErasableField {
    /// The content (JSON text for JSON fields), opened if it was sealed; `None` if
    /// absent, erased, or sealed and not openable (then `open_error` says why).
    pub content: Option<Vec<u8>>,
    /// Hex SHA-256 of the content (in the clear) as appended, `None` if there never was
    /// content.
    pub sha256: Option<String>,
    /// Why sealed content could not be opened.
    pub open_error: Option<OpenError>,
}

/// A reviewer's decision about a record.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Review {
    /// The record decided about.
    pub record_id: String,
    /// When, unix milliseconds.
    pub time_ms: i64,
    /// Who decided (the token's name).
    pub reviewer: String,
    /// `confirm`, `override` or `escalate` (a reviewer's), or `contest` (the customer's,
    /// through `POST /v1/contests`; the reviewer is then `customer`).
    pub decision: String,
    /// The corrected outcome, for `override`.
    pub outcome: Option<serde_json::Value>,
    /// Why; always given.
    pub reason: String,
}

/// A contest's words once its record is erased.
pub const ERASED_CONTEST: &str = "[erased]";

/// The decision a customer's contest is kept as.
pub const CONTEST: &str = "contest";

impl Review {
    /// Whether it is a customer's contest rather than a reviewer's decision.
    pub fn is_contest(&self) -> bool {
        self.decision == CONTEST
    }

    /// The record's review state after this decision.
    pub fn state(&self) -> &'static str {
        match self.decision.as_str() {
            "confirm" => "confirmed",
            "override" => "overridden",
            CONTEST => "contested",
            _ => "escalated",
        }
    }
}

/// Customers' contests among decisions read in the order they were kept: how many,
/// how many a reviewer has decided since (the first `confirm` or `override` after the
/// contest), how many of those changed the decision, and the median time to decide.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ContestTally {
    pub contested: u64,
    pub decided: u64,
    /// Decided by `override`: the contest changed the decision.
    pub overturned: u64,
    /// Median hours from a contest to its decision; `None` before the first decision.
    pub median_hours_to_decision: Option<f64>,
    /// Contested records by id, to their contest's time, until decided.
    #[serde(skip)]
    open: std::collections::HashMap<String, i64>,
    #[serde(skip)]
    waits_ms: Vec<i64>,
}

impl ContestTally {
    /// Counts one decision; call in the order they were kept.
    pub fn add(&mut self, review: &Review) {
        if review.is_contest() {
            if self
                .open
                .insert(review.record_id.clone(), review.time_ms)
                .is_none()
            {
                self.contested += 1;
            }
            return;
        }
        if !matches!(review.decision.as_str(), "confirm" | "override") {
            return;
        }
        if let Some(at) = self.open.remove(&review.record_id) {
            self.decided += 1;
            if review.decision == "override" {
                self.overturned += 1;
            }
            self.waits_ms.push(review.time_ms.saturating_sub(at).max(0));
            self.median_hours_to_decision = median_hours(&mut self.waits_ms);
        }
    }

    /// Contests not decided yet.
    pub fn open(&self) -> u64 {
        self.contested.saturating_sub(self.decided)
    }
}

fn median_hours(waits_ms: &mut [i64]) -> Option<f64> {
    if waits_ms.is_empty() {
        return None;
    }
    waits_ms.sort_unstable();
    let n = waits_ms.len();
    let middle = if n % 2 == 1 {
        waits_ms[n / 2] as f64
    } else {
        (waits_ms[n / 2 - 1] as f64 + waits_ms[n / 2] as f64) / 2.0
    };
    Some(middle / 3_600_000.0)
}

/// The true outcome of a prediction, reported later.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Feedback {
    /// The record the outcome belongs to.
    pub record_id: String,
    /// When it was reported, unix milliseconds.
    pub time_ms: i64,
    /// The outcome, as the client sent it.
    pub outcome: serde_json::Value,
}

/// Which records an erasure removes the erasable fields of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Erasure {
    /// Every record of this pseudonymous subject (a person's request to be forgotten).
    Subject(String),
    /// Every record older than this, unix milliseconds (the retention window).
    Before(i64),
}

impl Erasure {
    /// The reason stored with the tombstone.
    pub fn reason(&self) -> &'static str {
        match self {
            Erasure::Subject(_) => "subject_erasure",
            Erasure::Before(_) => "retention",
        }
    }

    /// What the erasure selects, as its event stores it: `subject:ps_…` or
    /// `before:<unix ms>`.
    pub fn selector(&self) -> String {
        match self {
            Erasure::Subject(subject) => format!("subject:{subject}"),
            Erasure::Before(cutoff) => format!("before:{cutoff}"),
        }
    }
}

/// Selector of the event that binds, at the schema upgrade, the tombstones written before
/// erasures were authenticated.
pub const LEGACY_SELECTOR: &str = "legacy";

/// One authenticated erasure: a person's request to be forgotten, a retention purge, or
/// the binding of older tombstones. Every tombstone it wrote carries its `n` and a MAC
/// ([`tombstone_mac`]), so that a tombstone nobody with the key wrote is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasureEvent {
    /// Its number, from 1.
    pub n: u64,
    /// When, unix milliseconds; each of its tombstones has this `erased_at`.
    pub time_ms: i64,
    /// `subject_erasure`, `retention` or `legacy`.
    pub reason: String,
    /// What it selected ([`Erasure::selector`], or [`LEGACY_SELECTOR`]).
    pub selector: String,
    /// Hex HMAC-SHA256 over the fields above ([`erasure_mac`]).
    pub mac: String,
}

/// Domain-separation prefixes of the erasure MACs.
const ERASURE_DOMAIN: &[u8] = b"sidelight-audit erasure v1\0";
const TOMBSTONE_DOMAIN: &[u8] = b"sidelight-audit tombstone v1\0";

fn hmac_hex(key: &[u8], parts: &[&[u8]]) -> String {
    // HMAC accepts keys of any length, so this never fails in practice.
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(key) else {
        return String::new();
    };
    for part in parts {
        // Length-prefixed, so that no two different field lists hash alike.
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    hex::encode(mac.finalize().into_bytes())
}

fn hex_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The MAC of an erasure event.
pub fn erasure_mac(key: &[u8], n: u64, time_ms: i64, reason: &str, selector: &str) -> String {
    hmac_hex(
        key,
        &[
            ERASURE_DOMAIN,
            &n.to_be_bytes(),
            &time_ms.to_be_bytes(),
            reason.as_bytes(),
            selector.as_bytes(),
        ],
    )
}

/// Whether `event`'s MAC verifies under `key`.
pub fn erasure_mac_ok(key: &[u8], event: &ErasureEvent) -> bool {
    let expected = erasure_mac(key, event.n, event.time_ms, &event.reason, &event.selector);
    hex_eq(&expected, &event.mac)
}

/// The MAC of a tombstone: erasure `n` removed the content of the record at `seq` of
/// `writer`'s chain (whose hash is `hash`) at `erased_at`, for `reason`.
pub fn tombstone_mac(
    key: &[u8],
    n: u64,
    writer: &str,
    seq: u64,
    hash: &str,
    erased_at: i64,
    reason: &str,
) -> String {
    hmac_hex(
        key,
        &[
            TOMBSTONE_DOMAIN,
            &n.to_be_bytes(),
            writer.as_bytes(),
            &seq.to_be_bytes(),
            hash.as_bytes(),
            &erased_at.to_be_bytes(),
            reason.as_bytes(),
        ],
    )
}

/// Whether a tombstone's stored MAC verifies.
#[allow(clippy::too_many_arguments)]
pub fn tombstone_mac_ok(
    key: &[u8],
    n: u64,
    writer: &str,
    seq: u64,
    hash: &str,
    erased_at: i64,
    reason: &str,
    mac: &str,
) -> bool {
    hex_eq(
        &tombstone_mac(key, n, writer, seq, hash, erased_at, reason),
        mac,
    )
}

/// An HMAC-authenticated checkpoint of the chain head at `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Position of the checkpointed record.
    pub seq: u64,
    /// That record's hash (hex).
    pub hash: String,
    /// Hex HMAC-SHA256 over `(seq, hash)`, see [`checkpoint_mac`].
    pub mac: String,
}

/// Domain-separation prefix of checkpoint MACs.
const CHECKPOINT_DOMAIN: &[u8] = b"sidelight-audit checkpoint v1\0";

fn checkpoint_hmac(key: &[u8], seq: u64, hash_hex: &str) -> Option<Hmac<Sha256>> {
    // HMAC accepts keys of any length, so this never returns `None` in practice.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).ok()?;
    mac.update(CHECKPOINT_DOMAIN);
    mac.update(&seq.to_be_bytes());
    mac.update(hash_hex.as_bytes());
    Some(mac)
}

/// Hex HMAC-SHA256 with `key` over a domain prefix, `seq` (big-endian u64) and the hash.
pub fn checkpoint_mac(key: &[u8], seq: u64, hash_hex: &str) -> String {
    checkpoint_hmac(key, seq, hash_hex)
        .map(|m| hex::encode(m.finalize().into_bytes()))
        .unwrap_or_default()
}

/// Whether `mac_hex` is the checkpoint MAC of `(seq, hash_hex)` under `key`
/// (constant-time comparison).
pub fn checkpoint_mac_ok(key: &[u8], seq: u64, hash_hex: &str, mac_hex: &str) -> bool {
    match (hex::decode(mac_hex), checkpoint_hmac(key, seq, hash_hex)) {
        (Ok(tag), Some(mac)) => mac.verify_slice(&tag).is_ok(),
        _ => false,
    }
}

/// Domain-separation prefix of an evidence pack's manifest signature.
const EVIDENCE_DOMAIN: &[u8] = b"sidelight evidence manifest v1\0";

/// Hex HMAC-SHA256 of an evidence pack's manifest under the checkpoint key: whoever
/// holds the audit key can check it offline, and nobody without it can make one.
pub fn evidence_mac(key: &[u8], manifest: &[u8]) -> String {
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(EVIDENCE_DOMAIN);
    mac.update(manifest);
    hex::encode(mac.finalize().into_bytes())
}

/// Whether `mac_hex` signs `manifest` under `key` (constant-time comparison).
pub fn evidence_mac_ok(key: &[u8], manifest: &[u8], mac_hex: &str) -> bool {
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(key) else {
        return false;
    };
    mac.update(EVIDENCE_DOMAIN);
    mac.update(manifest);
    match hex::decode(mac_hex.trim()) {
        Ok(tag) => mac.verify_slice(&tag).is_ok(),
        Err(_) => false,
    }
}

/// A backend of the audit log.
///
/// Implementations must make `append_batch` atomic (all records or none) and durable
/// when it returns `Ok`: the group-commit writer acknowledges `sync` records on that.
pub trait AuditStore: Send {
    /// Appends records to the chain in order, in one transaction, computing `prev_hash`
    /// and `hash` (fields on the input are ignored). Returns the assigned seqs.
    fn append_batch(&mut self, records: &[Record]) -> Result<Vec<u64>, StoreError>;

    /// The record with this id.
    fn get(&self, id: &str) -> Result<Option<Stored>, StoreError>;

    /// Whether a record with this id exists (cheaper than [`get`](Self::get)).
    fn contains(&self, id: &str) -> Result<bool, StoreError>;

    /// Records matching a query, ascending by seq, one page at a time.
    fn query(&self, query: &RecordQuery) -> Result<Page, StoreError>;

    /// Removes the erasable fields of the records `what` selects, leaving digests and a
    /// tombstone (`erased_at = now_ms`, and the reason), so the chain still verifies.
    /// Returns how many records were erased. Records already erased are left alone.
    ///
    /// When anything is erased, the erasure is stored as an authenticated
    /// [`ErasureEvent`] (MAC under the store's master key) and every tombstone is bound
    /// to it with a MAC of its own, so that verification fails on a tombstone no key
    /// holder wrote.
    fn erase(&mut self, what: &Erasure, now_ms: i64) -> Result<u64, StoreError>;

    /// Every authenticated erasure, oldest first.
    fn erasures(&self) -> Result<Vec<ErasureEvent>, StoreError>;

    /// Starts a read snapshot: until [`end_snapshot`](Self::end_snapshot), every read
    /// through this store sees the log as it was at the first read, whatever is appended
    /// meanwhile. Verification runs in one, so a log being written is checked as one
    /// consistent state. A no-op for a store without snapshots.
    fn begin_snapshot(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Ends the snapshot [`begin_snapshot`](Self::begin_snapshot) started.
    fn end_snapshot(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// The pseudonymous subjects whose records were erased at or after `since_ms` (a
    /// person's request to be forgotten, not retention), each once: what a surrogate
    /// saved before then may still have learned from.
    fn erased_subjects_since(&self, since_ms: i64) -> Result<Vec<String>, StoreError>;

    /// Re-seals up to `limit` records whose fields are not sealed with the active key
    /// (or not sealed at all). Returns how many were re-sealed; 0 when none is left.
    fn reseal(&mut self, limit: usize) -> Result<u64, StoreError>;

    /// How many records each key seals (`None`: stored in the clear), erased ones not
    /// counted.
    fn key_usage(&self) -> Result<Vec<(Option<String>, u64)>, StoreError>;

    /// Stores a review decision and sets the record's review state, in one transaction.
    /// `Ok(false)` when no record has that id.
    fn add_review(&mut self, review: &Review) -> Result<bool, StoreError>;

    /// The decisions about a record, oldest first.
    fn reviews(&self, record_id: &str) -> Result<Vec<Review>, StoreError>;

    /// Stores the true outcome of a prediction. `Ok(false)` when no record has that id.
    fn add_feedback(&mut self, feedback: &Feedback) -> Result<bool, StoreError>;

    /// The outcomes reported for a record, oldest first.
    fn feedback(&self, record_id: &str) -> Result<Vec<Feedback>, StoreError>;

    /// Up to `limit` raw chain rows with seq greater than `after`, in ascending seq, for
    /// verification. `None` starts at the very first row, including rows whose seq the
    /// store would never assign (a forged seq 0).
    fn chain_rows(&self, after: Option<u64>, limit: usize) -> Result<Vec<ChainRow>, StoreError>;

    /// All checkpoints in ascending seq.
    fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError>;

    /// The writers whose chains the store holds, each verified on its own. A store with
    /// a single chain (SQLite) has one writer, named `""`.
    fn writers(&self) -> Result<Vec<String>, StoreError> {
        Ok(vec![String::new()])
    }

    /// [`chain_rows`](Self::chain_rows) of one writer's chain.
    fn writer_chain_rows(
        &self,
        writer: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<ChainRow>, StoreError> {
        let _ = writer;
        self.chain_rows(after, limit)
    }

    /// [`checkpoints`](Self::checkpoints) of one writer's chain.
    fn writer_checkpoints(&self, writer: &str) -> Result<Vec<Checkpoint>, StoreError> {
        let _ = writer;
        self.checkpoints()
    }

    /// The last checkpoint of `writer`'s chain: its head, since every batch ends with
    /// one. What a witness publishes.
    fn last_checkpoint(&self, writer: &str) -> Result<Option<Checkpoint>, StoreError> {
        Ok(self.writer_checkpoints(writer)?.pop())
    }
}

/// A boxed store is a store, so that a caller can choose the backend at run time and
/// still hand it to the [`Writer`](crate::Writer) or to chain verification.
impl<S: AuditStore + ?Sized> AuditStore for Box<S> {
    fn append_batch(&mut self, records: &[Record]) -> Result<Vec<u64>, StoreError> {
        (**self).append_batch(records)
    }
    fn get(&self, id: &str) -> Result<Option<Stored>, StoreError> {
        (**self).get(id)
    }
    fn contains(&self, id: &str) -> Result<bool, StoreError> {
        (**self).contains(id)
    }
    fn query(&self, query: &RecordQuery) -> Result<Page, StoreError> {
        (**self).query(query)
    }
    fn erase(&mut self, what: &Erasure, now_ms: i64) -> Result<u64, StoreError> {
        (**self).erase(what, now_ms)
    }
    fn erased_subjects_since(&self, since_ms: i64) -> Result<Vec<String>, StoreError> {
        (**self).erased_subjects_since(since_ms)
    }
    fn erasures(&self) -> Result<Vec<ErasureEvent>, StoreError> {
        (**self).erasures()
    }
    fn begin_snapshot(&self) -> Result<(), StoreError> {
        (**self).begin_snapshot()
    }
    fn end_snapshot(&self) -> Result<(), StoreError> {
        (**self).end_snapshot()
    }
    fn reseal(&mut self, limit: usize) -> Result<u64, StoreError> {
        (**self).reseal(limit)
    }
    fn key_usage(&self) -> Result<Vec<(Option<String>, u64)>, StoreError> {
        (**self).key_usage()
    }
    fn add_review(&mut self, review: &Review) -> Result<bool, StoreError> {
        (**self).add_review(review)
    }
    fn reviews(&self, record_id: &str) -> Result<Vec<Review>, StoreError> {
        (**self).reviews(record_id)
    }
    fn add_feedback(&mut self, feedback: &Feedback) -> Result<bool, StoreError> {
        (**self).add_feedback(feedback)
    }
    fn feedback(&self, record_id: &str) -> Result<Vec<Feedback>, StoreError> {
        (**self).feedback(record_id)
    }
    fn chain_rows(&self, after: Option<u64>, limit: usize) -> Result<Vec<ChainRow>, StoreError> {
        (**self).chain_rows(after, limit)
    }
    fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        (**self).checkpoints()
    }
    fn writers(&self) -> Result<Vec<String>, StoreError> {
        (**self).writers()
    }
    fn writer_chain_rows(
        &self,
        writer: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<ChainRow>, StoreError> {
        (**self).writer_chain_rows(writer, after, limit)
    }
    fn writer_checkpoints(&self, writer: &str) -> Result<Vec<Checkpoint>, StoreError> {
        (**self).writer_checkpoints(writer)
    }
    fn last_checkpoint(&self, writer: &str) -> Result<Option<Checkpoint>, StoreError> {
        (**self).last_checkpoint(writer)
    }
}

#[cfg(test)]
mod contest_tests {
    use super::*;

    fn review(id: &str, decision: &str, hours: i64) -> Review {
        Review {
            record_id: id.to_owned(),
            time_ms: hours * 3_600_000,
            reviewer: "r".to_owned(),
            decision: decision.to_owned(),
            outcome: None,
            reason: "why".to_owned(),
        }
    }

    #[test]
    fn contests_are_counted_once_and_decided_by_the_first_confirm_or_override_after_them() {
        let mut tally = ContestTally::default();
        for r in [
            review("a", "confirm", 0), // a routine review before any contest
            review("a", CONTEST, 1),
            review("b", CONTEST, 2),
            review("a", "escalate", 3),
            review("a", "override", 5),  // 4 hours after its contest
            review("b", "confirm", 50),  // 48 hours after
            review("b", "override", 60), // already decided
            review("c", CONTEST, 70),
        ] {
            tally.add(&r);
        }
        assert_eq!(tally.contested, 3);
        assert_eq!(tally.decided, 2);
        assert_eq!(tally.overturned, 1);
        assert_eq!(tally.open(), 1);
        assert_eq!(tally.median_hours_to_decision, Some(26.0));
    }
}
