//! `sidelight-audit`: the audit record store.
//!
//! Every prediction that passes through Sidelight becomes a [`Record`]: what was asked,
//! answered and explained, and under which consent. This crate stores records in a
//! tamper-evident hash chain and verifies it:
//!
//! - [`Record`] and its canonical form [`Canonical`]: the chain covers the SHA-256
//!   *digests* of erasable fields (payloads, features, outputs, attributions, texts), not
//!   the fields themselves, so erasing them later keeps the chain verifiable. Mutable
//!   workflow state (`review_state`, the `erased_at` tombstone) is not hashed.
//! - Hash chain: `hash = SHA-256(prev_hash bytes || canonical bytes)`, with HMAC-SHA256
//!   checkpoints over `(seq, hash)` every N records and at the end of every batch.
//! - [`AuditStore`], implemented by [`SqliteStore`] (WAL, `synchronous=FULL`, one
//!   transaction per batch) and [`PostgresStore`] (several replicas sharing one
//!   database, a hash chain per writer), with [`FleetStore`] for what else a fleet
//!   shares: training rows, published surrogates, erasures and trainer election.
//! - [`Writer`]: a group-commit writer on a dedicated thread, with `Sync` / `Async`
//!   durability and a `Block` / `Shed` full-queue policy. No async runtime is required:
//!   an [`Ack`] can be waited on (blocking) or awaited (it is a `Future`).
//! - [`verify`]: walks every writer's chain and names the first broken record.
//! - [`PrivacyPolicy`]: per-field rules (keep, drop, pseudonymise, generalise) applied
//!   before anything is stored.
//! - [`Keys`]: the master key (checkpoints, pseudonyms) and the AES-256-GCM keyring that
//!   seals every erasable field at rest, with a fresh nonce per field and the key id
//!   stored so keys can rotate ([`AuditStore::reseal`]).
//! - Erasure and retention ([`AuditStore::erase`]): contents go, digests and a tombstone
//!   stay, so the chain still verifies.
//! - Export: [`record_json`] / [`write_jsonl`], and [`CsvExport`] whose CSV feeds
//!   `sidelight surrogate fit`.
//!
//! What this crate must never do:
//!
//! - **never log payloads** (or any erasable field, or a key) — it does no logging at
//!   all, and its `Debug` impls leave key bytes out;
//! - **never write an erasable field in the clear** when sealing is on;
//! - **never lose an acknowledged record** — a `Sync` ack completes only after the
//!   transaction holding the record has committed with `synchronous=FULL` (SQLite) or
//!   `synchronous_commit = on` (PostgreSQL).

mod common;
mod db_error;
mod export;
mod fleet;
mod keys;
mod pg;
mod postgres;
mod privacy;
mod record;
mod sqlite;
mod store;
mod verify;
mod witness;
mod writer;

pub use export::{CsvExport, ExportError, record_json, rfc3339_ms, write_jsonl};
pub use fleet::{FleetStore, FleetSurrogate, Published, TrainingBatch};
pub use keys::{DERIVED_KEY_ID, KeyError, Keys, MIN_MASTER_BYTES, OpenError};
pub use pg::PostgresConfig;
pub use postgres::PostgresStore;
pub use privacy::{FieldRule, PrivacyPolicy};
pub use record::{Canonical, Consent, GENESIS_HASH, Record, sha256_hex};
pub use sqlite::{BackgroundCheckpoints, SqliteConfig, SqliteStore, WalLimit, WalStats};
pub use store::{
    AuditStore, CONTEST, ChainRow, Checkpoint, ContestTally, ERASABLE_FIELDS, ERASED_CONTEST,
    ErasableField, Erasure, ErasureEvent, Feedback, LEGACY_SELECTOR, Page, RecordQuery, Review,
    StoreError, Stored, checkpoint_mac, checkpoint_mac_ok, erasure_mac, erasure_mac_ok,
    evidence_mac, evidence_mac_ok, tombstone_mac, tombstone_mac_ok,
};
pub use verify::{BreakKind, VerifyError, VerifyReport, WriterReport, verify};
pub use witness::{
    FileWitness, WitnessError, WitnessLine, WitnessReport, check_expected, check_witness,
    read_witness,
};
pub use writer::{
    Ack, Durability, Pending, QueuePolicy, SubmitError, WriteError, Writer, WriterConfig,
    WriterMetrics,
};
