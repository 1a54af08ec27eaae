//! The audit log on the request path: opens the store and the group-commit writer at
//! start-up, makes record ids unique, submits records with the configured durability,
//! applies the store-failure policy, and exposes the writer's counters as metrics.
//!
//! Nothing here logs a record or a payload: failures are logged with the store's error
//! text only, which never carries record content.

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use sidelight_audit::{
    AuditStore, Durability, QueuePolicy, Record, SqliteConfig, SqliteStore, SubmitError, Writer,
    WriterConfig,
};

use crate::config::{
    AUDIT_KEY_VARIABLE, AuditConfig, AuditDurability, ConfigError, QueueFull, StoreFailure,
};
use crate::error::ProxyError;

/// The shortest checkpoint key accepted: shorter HMAC keys are guessable.
const MIN_KEY_BYTES: usize = 16;
/// Client-supplied ids remembered in memory to keep concurrent duplicates apart; older
/// ones are found in the store.
const RECENT_IDS: usize = 100_000;
/// Records per transaction: large enough to amortise the fsync under load.
const MAX_BATCH: usize = 512;

/// Why the checkpoint key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Neither a key file nor the environment variable was given.
    #[error("no audit checkpoint key: set `audit.key_file` or {AUDIT_KEY_VARIABLE} (hex)")]
    Missing,
    /// The key file could not be read.
    #[error("cannot read the audit key file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The environment variable is not hex.
    #[error("{AUDIT_KEY_VARIABLE} must be hex")]
    NotHex,
    /// The key is too short to be a secret.
    #[error("the audit checkpoint key must be at least {MIN_KEY_BYTES} bytes")]
    TooShort,
}

/// The checkpoint key from `key_file` (hex, or raw bytes when the file is not hex) or,
/// without a file, from `env_hex` (the value of `SIDELIGHT_AUDIT_KEY`). The proxy and
/// `sidelight audit verify` both use this, so a key means the same bytes to both.
pub fn load_key(key_file: Option<&Path>, env_hex: Option<&str>) -> Result<Vec<u8>, KeyError> {
    let key = match (key_file, env_hex) {
        (Some(path), _) => {
            let raw = std::fs::read(path).map_err(|source| KeyError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            // A key written with `openssl rand -hex 32 > key` ends with a newline.
            match std::str::from_utf8(&raw).ok().map(str::trim) {
                Some(text) if !text.is_empty() && text.len() % 2 == 0 => {
                    hex::decode(text).unwrap_or(raw)
                }
                _ => raw,
            }
        }
        (None, Some(hex_key)) => hex::decode(hex_key.trim()).map_err(|_| KeyError::NotHex)?,
        (None, None) => return Err(KeyError::Missing),
    };
    if key.len() < MIN_KEY_BYTES {
        return Err(KeyError::TooShort);
    }
    Ok(key)
}

/// The audit log as the data plane sees it.
pub(crate) struct AuditLog {
    writer: Arc<Writer>,
    durability: Durability,
    on_failure: StoreFailure,
    upstream: String,
    /// A second connection, for id look-ups only: WAL lets it read while the writer
    /// thread writes.
    reader: Mutex<SqliteStore>,
    recent_ids: Mutex<RecentIds>,
    failures: Counter,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("durability", &self.durability)
            .field("on_failure", &self.on_failure)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct RecentIds {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl AuditLog {
    /// Opens the store, starts the writer and registers the metrics. Errors name the
    /// config key at fault.
    pub(crate) fn open(
        config: &AuditConfig,
        upstream: &str,
        registry: &mut Registry,
    ) -> Result<Arc<Self>, ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            key: key.to_owned(),
            message,
        };
        let env_key = std::env::var(AUDIT_KEY_VARIABLE).ok();
        let key = load_key(config.key_file.as_deref(), env_key.as_deref())
            .map_err(|e| invalid("audit.key_file", e.to_string()))?;
        let store_config = SqliteConfig {
            checkpoint_every: config.checkpoint_every,
            checkpoint_key: key,
        };
        let open = |what: &str| {
            SqliteStore::open(&config.path, store_config.clone()).map_err(|e| {
                invalid(
                    "audit.path",
                    format!("cannot open {} ({what}): {e}", config.path.display()),
                )
            })
        };
        let store = open("writer")?;
        let reader = open("reader")?;
        let writer = Writer::start(
            store,
            WriterConfig {
                queue_capacity: config.queue_capacity,
                max_batch: MAX_BATCH,
                policy: match config.queue_full {
                    QueueFull::Block => QueuePolicy::Block,
                    QueueFull::Shed => QueuePolicy::Shed,
                },
            },
        )
        .map_err(|e| invalid("audit.path", format!("cannot start the audit writer: {e}")))?;
        let log = Arc::new(Self {
            writer: Arc::new(writer),
            durability: match config.durability {
                AuditDurability::Sync => Durability::Sync,
                AuditDurability::Async => Durability::Async,
            },
            on_failure: config.on_store_failure,
            upstream: upstream.to_owned(),
            reader: Mutex::new(reader),
            recent_ids: Mutex::new(RecentIds::default()),
            failures: Counter::default(),
        });
        registry.register(
            "sidelight_audit_failures",
            "Requests whose audit record could not be stored",
            log.failures.clone(),
        );
        registry.register_collector(Box::new(WriterCollector(log.clone())));
        Ok(log)
    }

    /// The model's identity in a record: the upstream and the route.
    pub(crate) fn model(&self, route: &str) -> String {
        format!("{} route={route}", self.upstream)
    }

    /// A record id for `request_id` that no other record has. Generated ids are UUIDs
    /// and unique already; a client may send the same id twice, and the store's ids are
    /// unique, so a repeated one gets a `~2`, `~3`… suffix.
    pub(crate) fn unique_id(&self, request_id: &str, client_supplied: bool) -> String {
        if !client_supplied {
            return request_id.to_owned();
        }
        let mut recent = self
            .recent_ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut candidate = request_id.to_owned();
        let mut n = 1u64;
        while recent.set.contains(&candidate) || self.stored(&candidate) {
            n += 1;
            candidate = format!("{request_id}~{n}");
        }
        recent.set.insert(candidate.clone());
        recent.order.push_back(candidate.clone());
        if recent.order.len() > RECENT_IDS {
            if let Some(old) = recent.order.pop_front() {
                recent.set.remove(&old);
            }
        }
        candidate
    }

    fn stored(&self, id: &str) -> bool {
        let reader = self.reader.lock().unwrap_or_else(PoisonError::into_inner);
        // A read error is not a reason to rename; the writer reports real store trouble.
        matches!(reader.get(id), Ok(Some(_)))
    }

    /// Submits `record`. `Ok(Some(id))`: recorded (committed, with `sync`); `Ok(None)`:
    /// not recorded but the response may go (shed, or fail-open); `Err`: fail-closed.
    pub(crate) async fn commit(&self, record: Record) -> Result<Option<String>, ProxyError> {
        let id = record.id.clone();
        let submitted = match self.writer.try_submit(record, self.durability) {
            // A full queue under `block`: wait for room on a blocking thread, never on
            // the worker, whose other connections must keep moving.
            Err(SubmitError::Full(record)) => {
                let writer = self.writer.clone();
                let durability = self.durability;
                tokio::task::spawn_blocking(move || writer.submit(*record, durability))
                    .await
                    .unwrap_or(Err(SubmitError::Stopped))
            }
            other => other,
        };
        let outcome = match submitted {
            Ok(ack) => ack.await.map_err(|e| e.to_string()),
            // Counted by the writer (`shed`); the policy says to serve without a record.
            Err(SubmitError::Shed) => return Ok(None),
            Err(error) => Err(error.to_string()),
        };
        match outcome {
            Ok(_) => Ok(Some(id)),
            Err(error) => {
                self.failures.inc();
                tracing::warn!(%error, policy = ?self.on_failure, "audit record not stored");
                match self.on_failure {
                    StoreFailure::FailOpen => Ok(None),
                    StoreFailure::FailClosed => Err(ProxyError::AuditUnavailable(error)),
                }
            }
        }
    }
}

/// The writer's counters, read at scrape time.
#[derive(Debug)]
struct WriterCollector(Arc<AuditLog>);

impl Collector for WriterCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let m = self.0.writer.metrics();
        let queued = ConstGauge::new(i64::try_from(m.queued).unwrap_or(i64::MAX));
        queued.encode(encoder.encode_descriptor(
            "sidelight_audit_queued_records",
            "Audit records accepted and not yet durable",
            None,
            queued.metric_type(),
        )?)?;
        for (name, help, value) in [
            (
                "sidelight_audit_committed_records",
                "Audit records committed",
                m.committed,
            ),
            (
                "sidelight_audit_shed_records",
                "Audit records dropped because the queue was full (queue_full = shed)",
                m.shed,
            ),
            (
                "sidelight_audit_failed_records",
                "Audit records whose transaction failed",
                m.failed,
            ),
        ] {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        Ok(())
    }
}
