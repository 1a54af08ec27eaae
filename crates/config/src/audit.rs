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
    /// Where records are kept: `sqlite` (one file, one replica) or `postgres` (a
    /// database several replicas share).
    #[serde(default)]
    pub backend: AuditBackend,
    /// The SQLite file, created if missing. Relative paths are taken from the working
    /// directory. Required with `sqlite`, unused with `postgres`.
    #[serde(default, skip_serializing_if = "is_empty_path")]
    pub path: PathBuf,
    /// The PostgreSQL connection URL (`postgresql://user:password@host/db?sslmode=require`
    /// or `key=value` pairs). It holds a password: prefer `url_file` or the
    /// `SIDELIGHT_AUDIT__URL` variable. Never printed with its password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<DatabaseUrl>,
    /// A file holding the connection URL (a mounted Secret), read at start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_file: Option<PathBuf>,
    /// This replica's name in the shared log: its own hash chain. Default: the
    /// `HOSTNAME` variable (the pod name in Kubernetes), else the machine's host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writer: Option<String>,
    /// PEM file of the CA certificates that vouch for the PostgreSQL server's
    /// certificate, under `sslmode=require` and `prefer` (or no sslmode), which tries
    /// TLS first. Default: the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// How often a replica looks for new surrogates and fleet-wide erasures (postgres).
    #[serde(default = "default_poll_interval", with = "humantime_serde")]
    pub poll_interval: Duration,
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
    /// SQLite: the write-ahead log's bound, in bytes. Past it the background checkpoint
    /// restarts the log (waiting at most `wal_checkpoint_wait` for readers), so that a
    /// log under writes that never pause does not grow until the disk is full.
    #[serde(default = "default_wal_max_bytes")]
    pub wal_max_bytes: u64,
    /// SQLite: how long a checkpoint that restarts the log waits for readers on the old
    /// one; new writes wait meanwhile, so this bounds what the bound costs a request.
    #[serde(default = "default_wal_checkpoint_wait", with = "humantime_serde")]
    pub wal_checkpoint_wait: Duration,
    /// An append-only file outside the database (another volume) to which the proxy
    /// publishes its chain's head — seq, hash, checkpoint MAC — every
    /// `witness_interval`, so that `sidelight audit verify --witness FILE` names a tail
    /// cut from the log together with its checkpoints. Absent: no witness.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub witness: Option<PathBuf>,
    /// How often the head is published (only when it moved). A tail younger than this
    /// can be cut unseen.
    #[serde(default = "default_witness_interval", with = "humantime_serde")]
    pub witness_interval: Duration,
}

fn default_wal_max_bytes() -> u64 {
    64 * 1024 * 1024
}

fn default_wal_checkpoint_wait() -> Duration {
    Duration::from_millis(200)
}

fn default_witness_interval() -> Duration {
    Duration::from_secs(1)
}

fn yes() -> bool {
    true
}

fn is_empty_path(path: &std::path::Path) -> bool {
    path.as_os_str().is_empty()
}

fn default_poll_interval() -> Duration {
    Duration::from_secs(2)
}

/// Where the audit log is kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditBackend {
    /// A SQLite file: one replica.
    #[default]
    Sqlite,
    /// A PostgreSQL database that several replicas share.
    Postgres,
}

/// A database connection URL. It may hold a password, so its `Debug` and `Serialize`
/// forms (config dumps, error messages, logs) show it with the password masked; only
/// [`DatabaseUrl::expose`] gives the real one, to connect with.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// Wraps a URL (read from a file, say).
    pub fn new(url: impl Into<String>) -> Self {
        DatabaseUrl(url.into())
    }

    /// The URL with its password: only to hand to the database client.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `***`.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl Serialize for DatabaseUrl {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.redacted())
    }
}

/// Masks the password of a `postgresql://user:password@host` URL, of a `password=`
/// query parameter, and of a `password=…` pair of the `key=value` form.
pub(crate) fn redact_url(url: &str) -> String {
    const MASK: &str = "***";
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let rest = scheme_end + 3;
        let authority_end = out[rest..].find(['/', '?']).map_or(out.len(), |i| rest + i);
        if let Some(at) = out[rest..authority_end].rfind('@') {
            let userinfo = &out[rest..rest + at];
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(rest + colon + 1..rest + at, MASK);
            }
        }
    }
    // `password=` as a query parameter or a key=value pair, up to the next separator.
    let mut from = 0;
    while let Some(i) = out[from..].to_ascii_lowercase().find("password=") {
        let start = from + i + "password=".len();
        let boundary = out[..start - "password=".len()]
            .chars()
            .next_back()
            .is_none_or(|c| matches!(c, '?' | '&' | ' '));
        let end = if out[start..].starts_with('\'') {
            out[start + 1..]
                .find('\'')
                .map_or(out.len(), |j| start + j + 2)
        } else {
            out[start..]
                .find(['&', ' '])
                .map_or(out.len(), |j| start + j)
        };
        if boundary && end > start {
            out.replace_range(start..end, MASK);
            from = start + MASK.len();
        } else {
            from = start;
        }
    }
    out
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
    pub fn policy<'a>(
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
                .map_err(|e| (format!("{prefix}.fields.{name}"), e.to_string()))?;
            rules.insert(name.clone(), rule);
        }
        Ok(PrivacyPolicy::new(rules))
    }

    /// Checks the rules and the header name; errors name the key.
    pub fn validate(&self, prefix: &str) -> Result<(), (String, String)> {
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
    /// The PostgreSQL URL: `url`, or the content of `url_file` (trimmed). Errors name
    /// the key and never quote the URL.
    pub fn database_url(&self) -> Result<DatabaseUrl, (String, String)> {
        if let Some(url) = &self.url {
            return Ok(url.clone());
        }
        let Some(file) = &self.url_file else {
            return Err((
                "audit.url".to_owned(),
                "backend = \"postgres\" needs the database: set url or url_file".to_owned(),
            ));
        };
        let text = std::fs::read_to_string(file).map_err(|e| {
            (
                "audit.url_file".to_owned(),
                format!("cannot read {}: {e}", file.display()),
            )
        })?;
        let url = text.trim();
        if url.is_empty() {
            return Err((
                "audit.url_file".to_owned(),
                format!("{} is empty", file.display()),
            ));
        }
        Ok(DatabaseUrl::new(url))
    }

    /// This replica's writer name: `writer`, else `HOSTNAME`, else the host name.
    pub fn writer_name(&self) -> Result<String, (String, String)> {
        if let Some(writer) = &self.writer {
            return Ok(writer.clone());
        }
        let from_env = std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.trim().is_empty());
        let from_file = || {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .or_else(|_| std::fs::read_to_string("/etc/hostname"))
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
        };
        from_env.or_else(from_file).ok_or_else(|| {
            (
                "audit.writer".to_owned(),
                "no HOSTNAME and no host name found: set a name for this replica".to_owned(),
            )
        })
    }

    /// Checks what types alone cannot; errors name the key.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let err = |key: &str, message: &str| Err((key.to_owned(), message.to_owned()));
        match self.backend {
            AuditBackend::Sqlite => {
                if self.path.as_os_str().is_empty() {
                    return err("audit.path", "must name a file");
                }
                for (key, set) in [
                    ("audit.url", self.url.is_some()),
                    ("audit.url_file", self.url_file.is_some()),
                    ("audit.ca_file", self.ca_file.is_some()),
                ] {
                    if set {
                        return err(key, "is for backend = \"postgres\"; this log is SQLite");
                    }
                }
            }
            AuditBackend::Postgres => {
                match (&self.url, &self.url_file) {
                    (Some(_), Some(_)) => {
                        return err("audit.url_file", "give either url or url_file, not both");
                    }
                    (None, None) => {
                        return err(
                            "audit.url",
                            "backend = \"postgres\" needs the database: set url (or \
                             SIDELIGHT_AUDIT__URL) or url_file",
                        );
                    }
                    (Some(url), None) if url.expose().trim().is_empty() => {
                        return err("audit.url", "must not be empty");
                    }
                    (None, Some(file)) if file.as_os_str().is_empty() => {
                        return err("audit.url_file", "must name a file");
                    }
                    _ => {}
                }
                if !self.path.as_os_str().is_empty() {
                    return err(
                        "audit.path",
                        "is for backend = \"sqlite\"; a PostgreSQL log is named by url",
                    );
                }
                if self
                    .ca_file
                    .as_ref()
                    .is_some_and(|f| f.as_os_str().is_empty())
                {
                    return err("audit.ca_file", "must name a file");
                }
            }
        }
        if let Some(writer) = &self.writer {
            if writer.is_empty() || writer.len() > 200 || writer.chars().any(char::is_control) {
                return err(
                    "audit.writer",
                    "must be 1 to 200 characters without control characters",
                );
            }
        }
        if self.poll_interval < Duration::from_millis(100) {
            return err(
                "audit.poll_interval",
                "must be at least 100ms (e.g. \"2s\")",
            );
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
        if self.wal_max_bytes < 1024 * 1024 {
            return Err((
                "audit.wal_max_bytes".to_owned(),
                "must be at least 1048576 (1 MiB)".to_owned(),
            ));
        }
        if self.wal_checkpoint_wait > Duration::from_secs(10) {
            return Err((
                "audit.wal_checkpoint_wait".to_owned(),
                "must be at most 10s: writes wait while it does (e.g. \"200ms\")".to_owned(),
            ));
        }
        if self
            .witness
            .as_ref()
            .is_some_and(|f| f.as_os_str().is_empty())
        {
            return Err(("audit.witness".to_owned(), "must name a file".to_owned()));
        }
        if self.witness_interval < Duration::from_millis(100) {
            return Err((
                "audit.witness_interval".to_owned(),
                "must be at least 100ms (e.g. \"1s\")".to_owned(),
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn audit(toml: &str) -> Result<AuditConfig, String> {
        let config: AuditConfig = toml::from_str(toml).map_err(|e| e.to_string())?;
        config
            .validate()
            .map_err(|(key, message)| format!("{key}: {message}"))?;
        Ok(config)
    }

    #[test]
    fn passwords_are_masked_in_every_url_form() {
        for (url, masked) in [
            (
                "postgresql://app:s3cret@db:5432/audit?sslmode=require",
                "postgresql://app:***@db:5432/audit?sslmode=require",
            ),
            ("postgres://app@db/audit", "postgres://app@db/audit"),
            (
                "postgresql://db/audit?user=app&password=s3cret&sslmode=disable",
                "postgresql://db/audit?user=app&password=***&sslmode=disable",
            ),
            (
                "host=db user=app password=s3cret dbname=audit",
                "host=db user=app password=*** dbname=audit",
            ),
            (
                "host=db password='s3 cret' dbname=audit",
                "host=db password=*** dbname=audit",
            ),
        ] {
            assert_eq!(redact_url(url), masked, "{url}");
        }
    }

    #[test]
    fn a_postgres_config_never_shows_its_password() {
        let config =
            audit("backend = \"postgres\"\nurl = \"postgresql://app:s3cret@db/audit\"\n").unwrap();
        assert_eq!(
            config.database_url().unwrap().expose(),
            "postgresql://app:s3cret@db/audit"
        );
        let dumped = toml::to_string(&config).unwrap();
        let debugged = format!("{config:?}");
        for text in [&dumped, &debugged] {
            assert!(!text.contains("s3cret"), "{text}");
            assert!(text.contains("postgresql://app:***@db/audit"), "{text}");
        }
        // SQLite stays the default, and its file is still required.
        assert_eq!(
            audit("path = \"a.db\"\n").unwrap().backend,
            AuditBackend::Sqlite
        );
        assert_eq!(
            audit("path = \"a.db\"\n").unwrap().poll_interval,
            Duration::from_secs(2)
        );
    }

    #[test]
    fn backend_mistakes_name_their_key() {
        for (toml, key) in [
            ("backend = \"sqlite\"\n", "audit.path"),
            ("backend = \"postgres\"\n", "audit.url"),
            (
                "backend = \"postgres\"\nurl = \"postgresql://db/a\"\nurl_file = \"/run/u\"\n",
                "audit.url_file",
            ),
            (
                "backend = \"postgres\"\nurl = \"postgresql://db/a\"\npath = \"a.db\"\n",
                "audit.path",
            ),
            (
                "path = \"a.db\"\nurl = \"postgresql://db/a\"\n",
                "audit.url",
            ),
            (
                "backend = \"postgres\"\nurl = \"postgresql://db/a\"\nwriter = \"\"\n",
                "audit.writer",
            ),
            (
                "backend = \"postgres\"\nurl = \"postgresql://db/a\"\npoll_interval = \"1ms\"\n",
                "audit.poll_interval",
            ),
        ] {
            let error = audit(toml).unwrap_err();
            assert!(error.starts_with(key), "{toml}: {error}");
        }
    }

    #[test]
    fn the_url_file_is_read_and_trimmed_and_a_missing_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("url");
        std::fs::write(&file, "postgresql://app:s3cret@db/audit\n").unwrap();
        let config = audit(&format!(
            "backend = \"postgres\"\nurl_file = \"{}\"\n",
            file.display()
        ))
        .unwrap();
        assert_eq!(
            config.database_url().unwrap().expose(),
            "postgresql://app:s3cret@db/audit"
        );
        std::fs::remove_file(&file).unwrap();
        let (key, _) = config.database_url().unwrap_err();
        assert_eq!(key, "audit.url_file");
    }
}
