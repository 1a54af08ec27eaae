//! Configuration of the audit log: where records are kept, how durable they must be
//! before a response is released, what happens when the store cannot keep up or fails,
//! and how long payloads are kept. Keys are secrets, so they are never TOML values: they
//! come from `key_file` or the `SIDELIGHT_AUDIT_KEY` environment variable (a hex master
//! key, or a keyring).
//!
//! Also each route's privacy settings (`[routes.privacy]`): the consent a request gets
//! by default, what Global Privacy Control means, where the subject's identifier is, and
//! the rule for each field.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sidelight_audit::{Consent, FieldRule, PrivacyPolicy};

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
    /// A file holding the keys: a hex master key, or a keyring written by `sidelight
    /// audit rotate-key`. Without it the keys come from `SIDELIGHT_AUDIT_KEY`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Seal the erasable fields (payloads, features, outputs, attributions, texts) with
    /// AES-256-GCM at rest.
    #[serde(default = "yes")]
    pub encrypt: bool,
    /// Erase payloads older than this (their digests and the record stay, so the chain
    /// still verifies). Absent: kept until a subject is erased.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub retention: Option<Duration>,
    /// How long a write waits for a lock held by another process before it fails.
    #[serde(default = "default_lock_timeout", with = "humantime_serde")]
    pub lock_timeout: Duration,
    /// The largest the database may grow, in bytes; beyond it writes fail as on a full
    /// disk (and `on_store_failure` applies). Absent: as large as the disk allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
}

fn yes() -> bool {
    true
}

fn default_lock_timeout() -> Duration {
    Duration::from_secs(5)
}

/// What a `Sec-GPC: 1` request header (Global Privacy Control) means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GpcRule {
    /// Consent `none`: nothing identifying stored, never trained on.
    None,
    /// Consent `explain_only`: stored under the privacy policy, never trained on.
    ExplainOnly,
    /// The header is ignored.
    Ignore,
}

/// A route's privacy settings: `[routes.privacy]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacyConfig {
    /// The consent of a request without `x-sidelight-consent`: `full`, `explain_only`
    /// or `none`.
    pub consent_default: Consent,
    /// What `Sec-GPC: 1` means: `none`, `explain_only`, or `ignore`.
    pub gpc: GpcRule,
    /// The request header that carries the subject's identifier (a customer number).
    /// It is pseudonymised before it is stored, and removed before the request goes on
    /// when it is Sidelight's own `x-sidelight-subject`.
    pub subject_header: String,
    /// A member of the request body holding the subject's identifier (its first
    /// occurrence), used when the header is absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject_field: Option<String>,
    /// The rule for each field, by name: `keep`, `drop`, `pseudonymise`, `band:WIDTH`,
    /// `prefix:N`, `year` or `month`. Features marked `pii = true` without a rule are
    /// pseudonymised.
    pub fields: BTreeMap<String, String>,
}

/// Sidelight's own subject header.
pub const SUBJECT_HEADER: &str = "x-sidelight-subject";

impl Default for PrivacyConfig {
    fn default() -> Self {
        PrivacyConfig {
            consent_default: Consent::Full,
            gpc: GpcRule::None,
            subject_header: SUBJECT_HEADER.to_owned(),
            subject_field: None,
            fields: BTreeMap::new(),
        }
    }
}

impl PrivacyConfig {
    /// The policy of a route whose features marked `pii` are `pii_features`. Errors
    /// name the key (`{prefix}.fields.NAME`).
    pub(crate) fn policy<'a>(
        &self,
        prefix: &str,
        pii_features: impl Iterator<Item = &'a str>,
    ) -> Result<PrivacyPolicy, (String, String)> {
        let mut rules = BTreeMap::new();
        for name in pii_features {
            rules.insert(name.to_owned(), FieldRule::Pseudonymise);
        }
        for (name, rule) in &self.fields {
            let rule = rule
                .parse::<FieldRule>()
                .map_err(|message| (format!("{prefix}.fields.{name}"), message))?;
            rules.insert(name.clone(), rule);
        }
        Ok(PrivacyPolicy::new(rules))
    }

    /// Checks the rules and the header name; errors name the key.
    pub(crate) fn validate(&self, prefix: &str) -> Result<(), (String, String)> {
        self.policy(prefix, std::iter::empty())?;
        if http::HeaderName::from_bytes(self.subject_header.as_bytes()).is_err() {
            return Err((
                format!("{prefix}.subject_header"),
                format!("`{}` is not a header name", self.subject_header),
            ));
        }
        if self.subject_field.as_deref().is_some_and(str::is_empty) {
            return Err((
                format!("{prefix}.subject_field"),
                "must name a member of the request body".to_owned(),
            ));
        }
        Ok(())
    }
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
        if self.retention.is_some_and(|r| r < Duration::from_secs(60)) {
            return Err((
                "audit.retention".to_owned(),
                "must be at least a minute (e.g. \"90d\")".to_owned(),
            ));
        }
        if self.max_bytes.is_some_and(|m| m < 64 * 1024) {
            return Err((
                "audit.max_bytes".to_owned(),
                "must be at least 65536".to_owned(),
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
