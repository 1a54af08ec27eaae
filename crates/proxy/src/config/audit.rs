//! Configuration of the audit log: where records are kept, how durable they must be
//! before a response is released, and what happens when the store cannot keep up or
//! fails. The checkpoint key is a secret, so it is never a TOML value: it comes from
//! `key_file` or the `SIDELIGHT_AUDIT_KEY` environment variable (hex).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The audit log. Absent from the config, nothing is recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// The SQLite file, created if missing. Relative paths are taken from the working
    /// directory.
    pub path: PathBuf,
    /// `sync` (a response waits until its record is committed) or `async`.
    #[serde(default = "default_durability")]
    pub durability: AuditDurability,
    /// Records that may wait for the writer.
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
    /// With `async`, what a full queue does: `block` (backpressure) or `shed` (serve
    /// without a record, and count it).
    #[serde(default = "default_queue_full")]
    pub queue_full: QueueFull,
    /// When the store fails: `fail_open` (serve, count) or `fail_closed` (503).
    #[serde(default = "default_on_store_failure")]
    pub on_store_failure: StoreFailure,
    /// An HMAC checkpoint every this many records (and at the end of every batch).
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,
    /// A file holding the checkpoint key (hex, or raw bytes). Without it the key comes
    /// from `SIDELIGHT_AUDIT_KEY` (hex).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// How durable a record must be before its response is released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditDurability {
    /// After the record's transaction committed (no acknowledged record is lost).
    Sync,
    /// At once; the record is committed soon after.
    Async,
}

/// What a full queue does in `async` mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueFull {
    /// Wait for room.
    Block,
    /// Serve without recording, and count it.
    Shed,
}

/// What a store failure does to the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreFailure {
    /// Serve the response anyway and count the failure.
    FailOpen,
    /// Answer 503 `audit_unavailable`.
    FailClosed,
}

fn default_durability() -> AuditDurability {
    AuditDurability::Sync
}
fn default_queue_capacity() -> usize {
    10_000
}
fn default_queue_full() -> QueueFull {
    QueueFull::Block
}
fn default_on_store_failure() -> StoreFailure {
    StoreFailure::FailOpen
}
fn default_checkpoint_every() -> u64 {
    1000
}

impl AuditConfig {
    /// Checks what types alone cannot; errors name the key.
    pub(crate) fn validate(&self) -> Result<(), (String, String)> {
        if self.path.as_os_str().is_empty() {
            return Err(("audit.path".to_owned(), "must name a file".to_owned()));
        }
        if self.queue_capacity == 0 {
            return Err((
                "audit.queue_capacity".to_owned(),
                "must be at least 1".to_owned(),
            ));
        }
        if self.checkpoint_every == 0 {
            return Err((
                "audit.checkpoint_every".to_owned(),
                "must be at least 1".to_owned(),
            ));
        }
        if self
            .key_file
            .as_ref()
            .is_some_and(|f| f.as_os_str().is_empty())
        {
            return Err((
                "audit.key_file".to_owned(),
                "must name a file (or leave it out and set SIDELIGHT_AUDIT_KEY)".to_owned(),
            ));
        }
        Ok(())
    }
}
