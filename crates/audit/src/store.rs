//! The store trait that every backend (SQLite now, PostgreSQL later) implements.

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
}

/// A record together with its position in the chain.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// Position in the chain, starting at 1.
    pub seq: u64,
    /// The record, with `prev_hash` and `hash` filled in.
    pub record: Record,
}

/// A time-range query with keyset pagination on `seq`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeQuery {
    /// Inclusive lower bound on `time_ms`.
    pub from_ms: Option<i64>,
    /// Exclusive upper bound on `time_ms`.
    pub to_ms: Option<i64>,
    /// Page size (at least 1 is used).
    pub limit: usize,
    /// Return only records with `seq` greater than this (the previous page's `next`).
    pub after: Option<u64>,
}

/// One page of a range query.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// Records in ascending `seq`.
    pub records: Vec<Stored>,
    /// Cursor for the next page (`RangeQuery::after`), `None` when this page is the last.
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
    /// attributions, texts.
    pub fields: [ErasableField; 6],
    /// Tombstone time, if erased.
    pub erased_at: Option<i64>,
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
    /// The stored bytes (JSON text for JSON fields), `None` if absent or erased.
    pub content: Option<Vec<u8>>,
    /// Hex SHA-256 of the content as appended, `None` if there never was content.
    pub sha256: Option<String>,
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

    /// Records in a time range, ascending by seq, one page at a time.
    fn range(&self, query: &RangeQuery) -> Result<Page, StoreError>;

    /// Up to `limit` raw chain rows with seq greater than `after`, in ascending seq, for
    /// verification. `None` starts at the very first row, including rows whose seq the
    /// store would never assign (a forged seq 0).
    fn chain_rows(&self, after: Option<u64>, limit: usize) -> Result<Vec<ChainRow>, StoreError>;

    /// All checkpoints in ascending seq.
    fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError>;
}
