//! The audit log on the request path: opens the store and the group-commit writer at
//! start-up, makes record ids unique, submits records with the configured durability,
//! applies the store-failure policy, and exposes the writer's counters as metrics. Also
//! the admin side: queries, subject erasure, and the retention purge.
//!
//! Nothing here logs a record or a payload: failures are logged with the store's error
//! text only, which never carries record content.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use sidelight_audit::{
    AuditStore, Durability, Erasure, Feedback, FleetStore, Keys, Page, Pending, PostgresConfig,
    PostgresStore, QueuePolicy, Record, RecordQuery, Review, SqliteConfig, SqliteStore, StoreError,
    Stored, SubmitError, WriteError, Writer, WriterConfig,
};

use crate::error::ProxyError;
use sidelight_config::{
    AUDIT_KEY_VARIABLE, AuditBackend, AuditConfig, AuditDurability, ConfigError, QueueFull,
    StoreFailure,
};

/// Client-supplied ids remembered in memory to keep concurrent duplicates apart; older
/// ones are found in the store.
const RECENT_IDS: usize = 100_000;
/// Records per transaction: large enough to amortise the fsync under load.
const MAX_BATCH: usize = 512;
/// How often the WAL is copied into the database, in the background.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    /// `full`, `read_only`, `locked`, `io`, `unavailable`, `key`, `stopped` or `other`.
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErasedLabels {
    /// `subject_erasure` or `retention`.
    reason: &'static str,
}

/// The field name a contest's words are sealed under.
const CONTEST_FIELD: &str = "contest_reason";

/// The audit log as the data plane and the admin API see it.
pub struct AuditLog {
    writer: Arc<Writer>,
    durability: Durability,
    on_failure: StoreFailure,
    upstream: String,
    keys: Arc<Keys>,
    /// A connection for the data plane's id look-ups only, so that a long admin query
    /// never holds up a request. WAL lets it read while the writer thread writes.
    ids: Arc<Mutex<Box<dyn AuditStore>>>,
    /// Whether `ids` blocks on the network (PostgreSQL), so that look-ups must go to a
    /// blocking thread rather than run on the data plane's worker.
    remote: bool,
    /// A connection for queries and erasure; its writes take turns with the writer's.
    admin: Arc<Mutex<Box<dyn AuditStore>>>,
    /// What the replicas of a fleet share (PostgreSQL only).
    pub fleet: Option<Arc<Fleet>>,
    /// Never connected itself: a pattern for read-only connections to the same
    /// database (PostgreSQL only), so that long reads need not hold the admin one.
    readers: Option<PostgresStore>,
    recent_ids: Mutex<RecentIds>,
    failures: Family<FailureLabels, Counter>,
    erased: Family<ErasedLabels, Counter>,
    /// Held responses and flagged groups of the review queue, which lives in this log.
    pub reviews: Arc<crate::reviews::Reviews>,
    /// The retention purge's connection and settings, until its job takes them.
    retention: Mutex<Option<RetentionPurge>>,
    /// Copies the WAL into the database off the commit path and bounds it (SQLite
    /// only).
    checkpoints: Option<sidelight_audit::BackgroundCheckpoints>,
    /// The witness publisher (`audit.witness`), until its job takes it.
    witness: Mutex<Option<WitnessPublisher>>,
    /// Heads published to the witness, and publications that failed.
    witness_published: Counter,
    witness_failures: Counter,
}

/// Publishes the chain's head to the witness file (`audit.witness`): a connection of its
/// own, the file, and how often. Run as a background job (`sidelight-tasks`).
pub struct WitnessPublisher {
    pub store: Box<dyn AuditStore>,
    /// The chain whose head is published (`""` for SQLite, the replica's writer name).
    pub writer: String,
    pub file: sidelight_audit::FileWitness,
    pub interval: Duration,
    /// The checkpoint key: only a head whose MAC verifies is published, so that a
    /// checkpoint forged in the database cannot make the witness file unreadable.
    key: Vec<u8>,
    /// The highest seq published: a head that goes back is not published (and said).
    highest: u64,
    published: Counter,
    failures: Counter,
}

impl WitnessPublisher {
    /// Publishes the head if it moved since the last publication. Failures are counted
    /// and logged (the file's name and the error only), and retried at the next tick.
    pub fn publish(&mut self) {
        let head = match self.store.last_checkpoint(&self.writer) {
            Ok(Some(head)) => head,
            Ok(None) => return,
            Err(error) => {
                self.failures.inc();
                tracing::warn!(%error, kind = error.kind(), "cannot read the audit log's head for the witness; retrying");
                return;
            }
        };
        if !sidelight_audit::checkpoint_mac_ok(&self.key, head.seq, &head.hash, &head.mac) {
            self.failures.inc();
            tracing::error!(
                seq = head.seq,
                "the audit log's newest checkpoint does not verify under the key: not published to the witness (the database was written by someone without the key)"
            );
            return;
        }
        if head.seq < self.highest {
            self.failures.inc();
            tracing::error!(
                seq = head.seq,
                published = self.highest,
                "the audit log's head went back below what the witness saw: records were removed"
            );
            return;
        }
        match self.file.publish(&self.writer, &head, now_ms()) {
            Ok(true) => {
                self.highest = head.seq;
                self.published.inc();
            }
            Ok(false) => {}
            Err(error) => {
                self.failures.inc();
                tracing::warn!(%error, witness = %self.file.path().display(), "cannot write the audit witness; retrying");
            }
        }
    }
}

/// Why a query, an event or an erasure did not reach the audit store. The texts name
/// files, SQLite codes and PostgreSQL SQLSTATEs, never a record's content.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The writer took the event but could not make it durable.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// The writer did not take the event (stopped, or shedding).
    #[error("the audit writer did not take the event: {0}")]
    NotQueued(String),
    /// The event could not be encoded.
    #[error("cannot encode the event: {0}")]
    Encode(#[from] serde_json::Error),
    /// The blocking task that talks to the store failed.
    #[error("the store task failed: {0}")]
    Task(String),
}

/// The retention purge (`audit.retention`): a connection of its own, the window, and the
/// counter of records it erased. The purge runs as a background job (`sidelight-tasks`).
pub struct RetentionPurge {
    pub store: Box<dyn AuditStore>,
    /// The fleet's training rows are personal data too (PostgreSQL only).
    pub fleet: Option<FleetStore>,
    /// Payloads older than this are erased.
    pub window: Duration,
    erased: Family<ErasedLabels, Counter>,
}

impl RetentionPurge {
    /// Counts records the purge erased, in `sidelight_audit_erased_records{reason=
    /// "retention"}` (which appears with the first erasure).
    pub fn count_erased(&self, records: u64) {
        self.erased
            .get_or_create(&ErasedLabels {
                reason: "retention",
            })
            .inc_by(records);
    }
}

/// A fleet's shared state, for a replica on PostgreSQL.
#[derive(Debug)]
pub struct Fleet {
    /// This replica's name (its chain's writer).
    pub writer: String,
    /// How often the replica looks for new surrogates and erasures.
    pub poll_interval: Duration,
    /// For erasure and retention; the background tasks take connections of their own
    /// with [`FleetStore::another`].
    pub store: Mutex<FleetStore>,
}

/// The stores of one audit log: the writer's, and connections for id look-ups, the
/// admin API and the retention purge.
struct Opened {
    writer: Box<dyn AuditStore>,
    ids: Box<dyn AuditStore>,
    admin: Box<dyn AuditStore>,
    retention: Option<Box<dyn AuditStore>>,
    witness: Option<Box<dyn AuditStore>>,
    checkpoints: Option<sidelight_audit::BackgroundCheckpoints>,
    fleet: Option<Arc<Fleet>>,
    readers: Option<PostgresStore>,
}

/// Runs `f` on a thread of its own: the PostgreSQL client blocks on a runtime of its
/// own, which cannot start on a thread that is inside tokio's.
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> Option<T> {
    std::thread::scope(|scope| scope.spawn(f).join().ok())
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

/// The routes of the audit log's own events (records that are not predictions): review
/// decisions, reported outcomes, admin actions and monitoring alerts.
pub const EVENT_ROUTES: [&str; 4] = ["_review", "_feedback", "_admin", "_alert"];

use crate::clock::now_ms;

impl AuditLog {
    /// Opens the store, starts the writer and registers the
    /// metrics. Errors name the config key at fault.
    pub fn open(
        config: &AuditConfig,
        upstream: &str,
        registry: &mut Registry,
    ) -> Result<Arc<Self>, ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            key: key.to_owned(),
            message,
        };
        let env_key = std::env::var(AUDIT_KEY_VARIABLE).ok();
        let keys = Keys::load(
            config.key_file.as_deref(),
            env_key.as_deref(),
            AUDIT_KEY_VARIABLE,
        )
        .map_err(|e| invalid("audit.key_file", e.to_string()))?;
        let retention_on = config.retention.is_some();
        let opened = match config.backend {
            AuditBackend::Sqlite => open_sqlite(config, &keys, retention_on)?,
            AuditBackend::Postgres => {
                let url = config
                    .database_url()
                    .map_err(|(key, message)| invalid(&key, message))?;
                let name = config
                    .writer_name()
                    .map_err(|(key, message)| invalid(&key, message))?;
                let keys = keys.clone();
                off_runtime(move || open_postgres(config, &url, &name, keys, retention_on))
                    .unwrap_or_else(|| {
                        Err(invalid(
                            "audit.url",
                            "opening the PostgreSQL audit log failed".to_owned(),
                        ))
                    })?
            }
        };
        let remote = config.backend == AuditBackend::Postgres;
        let Opened {
            writer: store,
            ids,
            admin,
            retention,
            witness: witness_store,
            checkpoints,
            fleet,
            readers,
        } = opened;
        let store_key = match config.backend {
            AuditBackend::Sqlite => "audit.path",
            AuditBackend::Postgres => "audit.url",
        };
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
        .map_err(|e| invalid(store_key, format!("cannot start the audit writer: {e}")))?;
        let erased: Family<ErasedLabels, Counter> = Family::default();
        let retention = match (config.retention, retention) {
            (Some(window), Some(store)) => Some(RetentionPurge {
                store,
                fleet: fleet.as_ref().map(|f| f.store_for_task()),
                window,
                erased: erased.clone(),
            }),
            _ => None,
        };
        let witness_published = Counter::default();
        let witness_failures = Counter::default();
        let witness = match (&config.witness, witness_store) {
            (Some(path), Some(store)) => {
                let file = sidelight_audit::FileWitness::open(path).map_err(|e| {
                    invalid(
                        "audit.witness",
                        format!("cannot open {} for appending: {e}", path.display()),
                    )
                })?;
                Some(WitnessPublisher {
                    store,
                    writer: fleet.as_ref().map(|f| f.writer.clone()).unwrap_or_default(),
                    file,
                    interval: config.witness_interval,
                    key: keys.checkpoint_key().to_vec(),
                    highest: 0,
                    published: witness_published.clone(),
                    failures: witness_failures.clone(),
                })
            }
            _ => None,
        };
        let log = Arc::new(Self {
            writer: Arc::new(writer),
            durability: match config.durability {
                AuditDurability::Sync => Durability::Sync,
                AuditDurability::Async => Durability::Async,
            },
            on_failure: config.on_store_failure,
            upstream: upstream.to_owned(),
            keys: Arc::new(keys),
            ids: Arc::new(Mutex::new(ids)),
            remote,
            admin: Arc::new(Mutex::new(admin)),
            fleet,
            readers,
            recent_ids: Mutex::new(RecentIds::default()),
            failures: Family::default(),
            erased,
            reviews: Arc::default(),
            retention: Mutex::new(retention),
            checkpoints,
            witness: Mutex::new(witness),
            witness_published,
            witness_failures,
        });
        registry.register(
            "sidelight_audit_failures",
            "Requests whose audit record could not be stored, by kind of store trouble",
            log.failures.clone(),
        );
        registry.register(
            "sidelight_audit_erased_records",
            "Records whose payloads were erased, by reason",
            log.erased.clone(),
        );
        registry.register(
            "sidelight_audit_witness_published",
            "Chain heads published to the audit witness (audit.witness)",
            log.witness_published.clone(),
        );
        registry.register(
            "sidelight_audit_witness_failures",
            "Publications to the audit witness that failed (retried at the next tick)",
            log.witness_failures.clone(),
        );
        registry.register_collector(Box::new(WriterCollector(log.clone())));
        Ok(log)
    }

    /// The witness publisher (`audit.witness`), for its job to take once.
    pub fn take_witness(&self) -> Option<WitnessPublisher> {
        self.witness
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// What the retention purge needs (`audit.retention`), for its job to take once.
    pub fn take_retention(&self) -> Option<RetentionPurge> {
        self.retention
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// The model's identity in a record: the upstream and the route.
    pub fn model(&self, route: &str) -> String {
        format!("{} route={route}", self.upstream)
    }

    /// A read-only connection of its own to a PostgreSQL log (`None` for SQLite), made
    /// on its first call: it blocks, so use it off the tokio workers.
    pub fn postgres_reader(&self) -> Option<PostgresStore> {
        self.readers.as_ref().map(PostgresStore::reader)
    }

    /// The keys: pseudonyms and the privacy policy need them.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The keys, shared: for a record made on the writer's thread.
    pub fn shared_keys(&self) -> Arc<Keys> {
        self.keys.clone()
    }

    /// A record id for `request_id` that no other record has. Generated ids are UUIDs
    /// and unique already; a client may send the same id twice, and the store's ids are
    /// unique, so a repeated one gets a random suffix (`order-7~3f9c0a…`, 64 bits). An
    /// untrusted client's id always gets one (`always_suffix`): whether its id came back
    /// suffixed must not tell it that another client used that id before.
    pub async fn unique_id(
        &self,
        request_id: &str,
        client_supplied: bool,
        always_suffix: bool,
    ) -> String {
        if !client_supplied {
            return request_id.to_owned();
        }
        // One lookup for the id (as sent, or suffixed); a repeat gets a fresh random
        // suffix, so the cost of a repeat does not grow with how often an id was used.
        let mut candidate = if always_suffix {
            suffixed(request_id)
        } else {
            request_id.to_owned()
        };
        loop {
            let in_store = self.stored(&candidate).await;
            let mut recent = self
                .recent_ids
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            // Checked and taken under one lock: two requests with the same id never
            // both get it.
            if !in_store && !recent.set.contains(&candidate) {
                recent.set.insert(candidate.clone());
                recent.order.push_back(candidate.clone());
                if recent.order.len() > RECENT_IDS {
                    if let Some(old) = recent.order.pop_front() {
                        recent.set.remove(&old);
                    }
                }
                return candidate;
            }
            drop(recent);
            candidate = suffixed(request_id);
        }
    }

    async fn stored(&self, id: &str) -> bool {
        let look_up = |ids: &Mutex<Box<dyn AuditStore>>, id: &str| {
            let ids = ids.lock().unwrap_or_else(PoisonError::into_inner);
            // A read error is not a reason to rename; the writer reports real store
            // trouble.
            matches!(ids.contains(id), Ok(true))
        };
        if !self.remote {
            return look_up(&self.ids, id);
        }
        let (ids, id) = (self.ids.clone(), id.to_owned());
        tokio::task::spawn_blocking(move || look_up(&ids, &id))
            .await
            .unwrap_or(false)
    }

    /// Whether the store answers, for `/readyz`: `None` when it does not matter (a
    /// local SQLite file, or `fail_open`, which serves whatever the store does).
    pub async fn reachable(&self) -> Option<Result<(), AuditError>> {
        if !self.remote || self.on_failure != StoreFailure::FailClosed {
            return None;
        }
        let ids = self.ids.clone();
        let answer = tokio::task::spawn_blocking(move || {
            let ids = ids.lock().unwrap_or_else(PoisonError::into_inner);
            ids.contains("").map(|_| ()).map_err(AuditError::from)
        })
        .await
        .unwrap_or_else(|e| Err(AuditError::Task(e.to_string())));
        Some(answer)
    }

    /// Submits `record`. `Ok(Some(id))`: recorded (committed, with `sync`); `Ok(None)`:
    /// not recorded but the response may go (shed, or fail-open); `Err`: fail-closed.
    /// A deferred record is made on the writer's thread (see [`Pending`]).
    pub async fn commit(&self, record: impl Into<Pending>) -> Result<Option<String>, ProxyError> {
        let record = record.into();
        let id = record.id().to_owned();
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
            Ok(ack) => ack.await.map_err(|e| {
                let kind = match &e {
                    WriteError::Store(store) => store.kind(),
                    WriteError::Stopped => "stopped",
                    WriteError::Build => "build",
                };
                (kind, e.to_string())
            }),
            // Counted by the writer (`shed`); the policy says to serve without a record.
            Err(SubmitError::Shed) => return Ok(None),
            Err(error) => Err(("stopped", error.to_string())),
        };
        match outcome {
            Ok(_) => Ok(Some(id)),
            Err((kind, error)) => {
                self.failures.get_or_create(&FailureLabels { kind }).inc();
                // The store's error text names files, SQLite codes and PostgreSQL
                // SQLSTATEs, never a value (nor the database URL).
                tracing::warn!(%error, kind, policy = ?self.on_failure, "audit record not stored");
                match self.on_failure {
                    StoreFailure::FailOpen => Ok(None),
                    StoreFailure::FailClosed => Err(ProxyError::AuditUnavailable(error)),
                }
            }
        }
    }

    /// Runs `f` on the admin connection, on a blocking thread.
    pub async fn with_admin<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn AuditStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, AuditError> {
        let admin = self.admin.clone();
        tokio::task::spawn_blocking(move || {
            let mut store = admin.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut **store).map_err(AuditError::from)
        })
        .await
        .map_err(|e| AuditError::Task(e.to_string()))?
    }

    /// The pseudonymous subjects erased (on request, not by retention) at or after
    /// `since_ms`: at start-up, what a surrogate saved before then may have learnt from.
    /// Blocks; the store is reached on a thread of its own (the PostgreSQL client cannot
    /// run on one of tokio's).
    pub fn erased_subjects_since(&self, since_ms: i64) -> Result<Vec<String>, AuditError> {
        let admin = self.admin.clone();
        off_runtime(move || {
            let store = admin.lock().unwrap_or_else(PoisonError::into_inner);
            store.erased_subjects_since(since_ms)
        })
        .ok_or_else(|| AuditError::Task("the erasure look-up failed".to_owned()))?
        .map_err(AuditError::from)
    }

    /// One page of records.
    pub async fn query(&self, query: RecordQuery) -> Result<Page, AuditError> {
        self.with_admin(move |store| store.query(&query)).await
    }

    /// The record with this id.
    pub async fn get(&self, id: String) -> Result<Option<Stored>, AuditError> {
        self.with_admin(move |store| store.get(&id)).await
    }

    /// Appends an event that is not a prediction (an admin action, a review decision, a
    /// reported outcome) to the chain, so that it is as tamper-evident as the
    /// predictions it concerns. `kind` is the record's route (one of [`EVENT_ROUTES`]);
    /// `event` its content. Returns the record id once it is durable (with
    /// `sync`) or queued (with `async`).
    pub async fn record_event(
        &self,
        kind: &str,
        event: serde_json::Value,
    ) -> Result<String, AuditError> {
        self.record_event_with(kind, event, self.durability).await
    }

    /// [`record_event`](Self::record_event) with a durability of its own.
    async fn record_event_with(
        &self,
        kind: &str,
        event: serde_json::Value,
        durability: Durability,
    ) -> Result<String, AuditError> {
        let id = format!("{}-{}", kind.trim_start_matches('_'), uuid::Uuid::new_v4());
        let mut record = Record::new(id.clone(), now_ms(), kind, "sidelight");
        record.request = Some(serde_json::to_vec(&event)?);
        let submitted = match self.writer.try_submit(record, durability) {
            Err(SubmitError::Full(record)) => {
                let writer = self.writer.clone();
                tokio::task::spawn_blocking(move || writer.submit(*record, durability))
                    .await
                    .unwrap_or(Err(SubmitError::Stopped))
            }
            other => other,
        };
        match submitted {
            Ok(ack) => ack.await.map(|_| id).map_err(AuditError::from),
            Err(e) => Err(AuditError::NotQueued(e.to_string())),
        }
    }

    /// Records what a person did through the admin API: who, what, to what, when.
    /// A failure is logged, not returned: the action itself has already happened.
    pub async fn record_admin_action(
        &self,
        actor: &str,
        role: &str,
        action: &str,
        target: &str,
        detail: serde_json::Value,
    ) {
        let event = serde_json::json!({
            "actor": actor, "role": role, "action": action, "target": target, "detail": detail,
        });
        if let Err(error) = self.record_event("_admin", event).await {
            tracing::warn!(%error, actor, action, "admin action not recorded in the audit log");
        }
    }

    /// Chains a review decision, then stores it and sets the record's state.
    /// `Ok(false)` when no record has that id.
    ///
    /// Chained first: verification holds every review state against the decisions in
    /// the chain, so a state must never exist without its decision. A crash (or a
    /// verification) between the two sees a decision whose state is not yet written,
    /// which verification counts as lagging rather than broken.
    pub async fn add_review(&self, review: Review) -> Result<bool, AuditError> {
        let id = review.record_id.clone();
        if !self.with_admin(move |s| s.contains(&id)).await? {
            return Ok(false);
        }
        // Synchronously whatever `audit.durability` says: the state written next must
        // never be on disk without its decision.
        self.record_event_with("_review", serde_json::to_value(&review)?, Durability::Sync)
            .await?;
        self.with_admin(move |s| s.add_review(&review)).await
    }

    /// Keeps a customer's contest of a record (a [`Review`] with decision `contest`),
    /// like a reviewer's decision, with two differences: the customer's words are
    /// sealed in the store (they are personal, and cleared if the record is erased), and
    /// the chain holds a keyed digest of them rather than the words, so that an erasure
    /// leaves nothing readable of them behind. `Ok(false)` when no record has that id.
    pub async fn add_contest(&self, contest: Review) -> Result<bool, AuditError> {
        let id = contest.record_id.clone();
        if !self.with_admin(move |s| s.contains(&id)).await? {
            return Ok(false);
        }
        // Keyed, so that nobody without the audit key can test a guess of the words
        // against the chain.
        let chained = Review {
            reason: format!(
                "hmac:{}",
                self.keys.capability(CONTEST_FIELD, &contest.reason)
            ),
            ..contest.clone()
        };
        let stored = Review {
            reason: self
                .keys
                .seal_text(&contest.record_id, CONTEST_FIELD, &contest.reason)
                .ok_or_else(|| AuditError::Store(StoreError::Seal(contest.record_id.clone())))?,
            ..contest
        };
        self.record_event_with("_review", serde_json::to_value(&chained)?, Durability::Sync)
            .await?;
        self.with_admin(move |s| s.add_review(&stored)).await
    }

    /// The decisions about a record and the outcomes reported for it; a contest's words
    /// opened (or `[erased]`).
    pub async fn review_history(
        &self,
        id: String,
    ) -> Result<(Vec<Review>, Vec<Feedback>), AuditError> {
        let (mut reviews, feedback) = self
            .with_admin(move |store| Ok((store.reviews(&id)?, store.feedback(&id)?)))
            .await?;
        for review in reviews.iter_mut().filter(|r| r.is_contest()) {
            review.reason = self
                .keys
                .open_text(&review.record_id, CONTEST_FIELD, &review.reason)
                .unwrap_or_else(|_| "[cannot be opened with these keys]".to_owned());
        }
        Ok((reviews, feedback))
    }

    /// Stores a reported outcome and chains it. `Ok(false)` when no record has that id.
    pub async fn add_feedback(&self, feedback: Feedback) -> Result<bool, AuditError> {
        self.store_then_chain("_feedback", feedback, |store, f| store.add_feedback(f))
            .await
    }

    /// Stores `item` with `store` (which says whether its record exists) and, when it
    /// was stored, chains it as a `kind` record, so that the table a person queries and
    /// the tamper-evident log agree.
    async fn store_then_chain<T>(
        &self,
        kind: &str,
        item: T,
        store: fn(&mut dyn AuditStore, &T) -> Result<bool, StoreError>,
    ) -> Result<bool, AuditError>
    where
        T: serde::Serialize + Clone + Send + 'static,
    {
        let kept = item.clone();
        if !self.with_admin(move |s| store(s, &kept)).await? {
            return Ok(false);
        }
        let event = serde_json::to_value(&item)?;
        self.record_event(kind, event).await?;
        Ok(true)
    }

    /// Erases a subject's payloads from the store; returns how many records. In a
    /// fleet, also the subject's shared training rows, and the erasure is recorded for
    /// the other replicas to drop the subject from their memory.
    pub async fn erase_subject(&self, subject: String) -> Result<u64, AuditError> {
        let fleet = self.fleet.clone();
        let n = self
            .with_admin(move |store| {
                let n = store.erase(&Erasure::Subject(subject.clone()), now_ms())?;
                if let Some(fleet) = fleet {
                    let fleet = fleet.store.lock().unwrap_or_else(PoisonError::into_inner);
                    fleet.erase_subject(&subject, now_ms())?;
                }
                Ok(n)
            })
            .await?;
        self.erased
            .get_or_create(&ErasedLabels {
                reason: "subject_erasure",
            })
            .inc_by(n);
        Ok(n)
    }
}

impl Fleet {
    /// A connection of its own for a background task.
    pub fn store_for_task(&self) -> FleetStore {
        self.store
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .another()
    }
}

fn invalid(key: &str, message: String) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        message,
    }
}

fn open_sqlite(config: &AuditConfig, keys: &Keys, retention: bool) -> Result<Opened, ConfigError> {
    let store_config = SqliteConfig {
        checkpoint_every: config.checkpoint_every,
        encrypt: config.encrypt,
        busy_timeout: config.lock_timeout,
        max_bytes: config.max_bytes,
        ..SqliteConfig::new(keys.clone())
    };
    let open = |what: &str| {
        SqliteStore::open(&config.path, store_config.clone()).map_err(|e| {
            invalid(
                "audit.path",
                format!("cannot open {} ({what}): {e}", config.path.display()),
            )
        })
    };
    let mut store = open("writer")?;
    store
        .check_keys()
        .map_err(|e| invalid("audit.key_file", e.to_string()))?;
    let limit = sidelight_audit::WalLimit {
        max_bytes: config.wal_max_bytes,
        wait: config.wal_checkpoint_wait,
    };
    let checkpoints = store
        .checkpoint_in_background(&config.path, CHECKPOINT_EVERY, limit)
        .map_err(|e| invalid("audit.path", e.to_string()))?;
    Ok(Opened {
        writer: Box::new(store),
        ids: Box::new(open("id look-ups")?),
        admin: Box::new(open("admin")?),
        retention: if retention {
            Some(Box::new(open("retention")?))
        } else {
            None
        },
        witness: match config.witness {
            Some(_) => Some(Box::new(open("witness")?)),
            None => None,
        },
        checkpoints: Some(checkpoints),
        fleet: None,
        readers: None,
    })
}

/// Opens the writer's chain and the other connections; blocks (see [`off_runtime`]).
fn open_postgres(
    config: &AuditConfig,
    url: &sidelight_config::DatabaseUrl,
    writer: &str,
    keys: Keys,
    retention: bool,
) -> Result<Opened, ConfigError> {
    let store_config = PostgresConfig {
        checkpoint_every: config.checkpoint_every,
        encrypt: config.encrypt,
        lock_timeout: config.lock_timeout,
        max_bytes: config.max_bytes,
        ca_file: config.ca_file.clone(),
        ..PostgresConfig::new(keys)
    };
    // The store's errors never repeat the URL, which may hold a password.
    let url_key = if config.url_file.is_some() {
        "audit.url_file"
    } else {
        "audit.url"
    };
    let store = PostgresStore::open(url.expose(), writer, store_config).map_err(|e| match &e {
        StoreError::WriterActive(_) => invalid("audit.writer", e.to_string()),
        // TLS tried because the URL asks for `prefer` or says nothing: the URL's sslmode
        // is what to change, or the CA file.
        StoreError::Config(m) if m.starts_with("sslmode=prefer") => {
            invalid(url_key, format!("{m} (the CA file is audit.ca_file)"))
        }
        // The CA file's own errors and those of the system's roots under sslmode=require.
        StoreError::Config(m) if m.contains("CA file") || m.starts_with("sslmode=require") => {
            invalid("audit.ca_file", e.to_string())
        }
        StoreError::Config(m) if m.starts_with("audit writer name") => {
            invalid("audit.writer", e.to_string())
        }
        _ => invalid(
            url_key,
            format!("cannot open the PostgreSQL audit log as writer `{writer}`: {e}"),
        ),
    })?;
    store
        .check_keys()
        .map_err(|e| invalid("audit.key_file", e.to_string()))?;
    if store.fell_back_to_plain().unwrap_or(false) {
        // Said once at start-up: records, keys' checkpoints and the fleet's rows travel
        // unencrypted to this server.
        tracing::warn!(
            "{url_key}: the PostgreSQL server does not offer TLS, so the audit log is \
             reached in plain text (sslmode=prefer, or no sslmode, allows it); write \
             sslmode=require in {url_key} to refuse plain text, or sslmode=disable to say \
             it is meant"
        );
    }
    let fleet = Arc::new(Fleet {
        writer: writer.to_owned(),
        poll_interval: config.poll_interval,
        store: Mutex::new(store.fleet()),
    });
    Ok(Opened {
        ids: Box::new(store.reader()),
        admin: Box::new(store.reader()),
        retention: retention.then(|| Box::new(store.reader()) as Box<dyn AuditStore>),
        witness: config
            .witness
            .as_ref()
            .map(|_| Box::new(store.reader()) as Box<dyn AuditStore>),
        readers: Some(store.reader()),
        writer: Box::new(store),
        checkpoints: None,
        fleet: Some(fleet),
    })
}

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
        if let Some(checkpoints) = &self.0.checkpoints {
            use std::sync::atomic::Ordering::Relaxed;
            let stats = checkpoints.stats();
            for (name, help, value) in [
                (
                    "sidelight_audit_wal_bytes",
                    "Size of the SQLite write-ahead log at the last background checkpoint",
                    stats.bytes.load(Relaxed),
                ),
                (
                    "sidelight_audit_wal_limit_bytes",
                    "The write-ahead log's bound (audit.wal_max_bytes)",
                    checkpoints.limit().max_bytes,
                ),
            ] {
                let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
                gauge.encode(encoder.encode_descriptor(
                    name,
                    help,
                    None,
                    gauge.metric_type(),
                )?)?;
            }
            for (name, help, value) in [
                (
                    "sidelight_audit_wal_truncations",
                    "Checkpoints that restarted the write-ahead log because it passed its bound",
                    stats.truncations.load(Relaxed),
                ),
                (
                    "sidelight_audit_wal_truncations_busy",
                    "Such checkpoints that gave up because readers kept the old log busy",
                    stats.truncations_busy.load(Relaxed),
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
        }
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

/// `id~` and 64 random bits in hex.
fn suffixed(id: &str) -> String {
    format!("{id}~{}", crate::trust::unguessable_hex::<8>())
}
