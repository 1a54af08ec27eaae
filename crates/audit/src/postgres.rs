//! The PostgreSQL backend, for several Sidelight replicas sharing one database.
//!
//! - **A chain per writer.** Each open store appends as one named writer (a replica's
//!   pod name, say). A record's `(writer, seq)` places it in that writer's chain, its
//!   `prev_hash` is the writer's previous hash, and its canonical form (version 2) hashes
//!   the writer's name. Checkpoints are per writer. Replicas therefore append at once
//!   without any lock in common; a fleet-wide order comes from the identity column `n`,
//!   which is what [`Stored::seq`], [`Page::next`] and the seqs `append_batch` returns
//!   are here. [`verify`](crate::verify) walks every writer's chain.
//! - **One process per writer.** The store holds a session advisory lock keyed by the
//!   writer's name on its connection; opening a writer that another live process holds
//!   fails with [`StoreError::WriterActive`]. The lock goes with the session, so a
//!   replica that dies frees its name.
//! - **Durability.** One transaction per batch, checkpoints inside it, and the session's
//!   `synchronous_commit = on` whatever the server's default: a batch that returned `Ok`
//!   is flushed to the server's WAL.
//! - **Migrations** run at open, in a transaction under an advisory lock (so replicas
//!   that start together do not race), and are recorded in `audit_migrations`.
//! - **Outages.** A call made while the server is unreachable fails with
//!   [`StoreError::kind`] `unavailable` and is not retried (an append may have
//!   committed just before the connection broke). The next call reconnects, takes the
//!   writer's lock again and re-reads the chain's tip, so the store goes on without
//!   being reopened.
//! - **Erasure and retention** act on every writer's records.
//! - **TLS** with rustls, verifying the server's certificate and host name (what libpq
//!   calls `verify-full`) against [`PostgresConfig::ca_file`] or else the system's roots
//!   (`SSL_CERT_FILE` is honoured). `sslmode=require` refuses plain text; `prefer`, and
//!   a URL without `sslmode`, try TLS first and fall back to plain text only when the
//!   server does not offer TLS ([`PostgresStore::fell_back_to_plain`] tells); a
//!   certificate that cannot be verified is refused under both. `disable` connects
//!   without TLS.
//! - The client is blocking and drives its connection on a runtime of its own: call the
//!   store from a thread that may block (the group-commit writer's, or `spawn_blocking`),
//!   never from inside an async task.

use crate::common::{
    Columns, all_opened, canonical, prepare, read_chain_row, read_stored, record_columns,
    reseal_fields, sql_limit, to_i64, to_u64,
};
use crate::fleet::FleetStore;
use crate::keys::Keys;
use crate::pg::{PostgresConfig, connect_client, drop_off_thread, settings};
use crate::record::{GENESIS_HASH, Record};
use crate::store::{
    AuditStore, ChainRow, Checkpoint, ERASED_CONTEST, Erasure, ErasureEvent, Feedback, Page,
    RecordQuery, Review, StoreError, Stored, checkpoint_mac, checkpoint_mac_ok, erasure_mac,
    tombstone_mac,
};
use postgres::types::ToSql;
use postgres::{Client, Row, Statement};
use std::sync::{Mutex, PoisonError};
use tokio_postgres_rustls::MakeRustlsConnect;

/// The longest writer name accepted.
const MAX_WRITER_LEN: usize = 200;

/// `n` and `writer` come first, then the record's columns.
const COLUMNS: &str = concat!("n, writer, ", record_columns!());

/// Where [`record_columns`] start in [`COLUMNS`].
const AT: usize = 2;

// Tombstones are never appended: erasure writes them, bound to an authenticated event.
const INSERT: &str = concat!(
    "INSERT INTO audit_records (writer, ",
    record_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
     $18, $19, $20, $21, $22, NULL, $23, $24, $25, NULL, $26, NULL, NULL) RETURNING n"
);

const CLEAR_FIELDS: &str = "request = NULL, response = NULL, features = NULL, outputs = NULL, \
     attributions = NULL, texts = NULL, key_id = NULL";

/// A tombstone about to be written: the record (by `n`, and by its place in its chain)
/// and what the tombstone says.
struct Tombstone {
    n: i64,
    writer: String,
    seq: u64,
    hash: String,
    erased_at: i64,
    reason: String,
}

/// Stores a new authenticated erasure event; returns its number.
fn new_erasure(
    tx: &mut postgres::Transaction<'_>,
    key: &[u8],
    now_ms: i64,
    reason: &str,
    selector: &str,
) -> Result<u64, StoreError> {
    let n: i64 = tx
        .query_one(
            "INSERT INTO audit_erasures (time_ms, reason, selector, mac) \
             VALUES ($1, $2, $3, '') RETURNING n",
            &[&now_ms, &reason, &selector],
        )?
        .try_get(0)?;
    let mac = erasure_mac(key, to_u64(n, "erasure")?, now_ms, reason, selector);
    tx.execute(
        "UPDATE audit_erasures SET mac = $1 WHERE n = $2",
        &[&mac, &n],
    )?;
    to_u64(n, "erasure")
}

/// Removes the records' content and writes their tombstones, bound to erasure `n`.
fn bind_tombstones(
    tx: &mut postgres::Transaction<'_>,
    key: &[u8],
    n: u64,
    tombstones: &[Tombstone],
) -> Result<(), StoreError> {
    let update = tx.prepare(&format!(
        "UPDATE audit_records SET {CLEAR_FIELDS}, erased_at = $1, erased_reason = $2, \
         erasure = $3, erasure_mac = $4 WHERE n = $5"
    ))?;
    let event = to_i64(n, "erasure")?;
    for t in tombstones {
        let mac = tombstone_mac(key, n, &t.writer, t.seq, &t.hash, t.erased_at, &t.reason);
        tx.execute(&update, &[&t.erased_at, &t.reason, &event, &mac, &t.n])?;
    }
    Ok(())
}

/// One connection, holding the writer's lock, and the tip of the writer's chain.
struct Session {
    client: Client,
    insert: Statement,
    checkpoint: Statement,
    last_seq: u64,
    last_hash: String,
}

/// The PostgreSQL implementation of [`AuditStore`]; see the module documentation.
pub struct PostgresStore {
    pg: postgres::Config,
    /// `Some` for `sslmode=require`.
    tls: Option<MakeRustlsConnect>,
    writer: String,
    config: PostgresConfig,
    /// Whether this store appends to `writer`'s chain (and holds its lock); a reader
    /// only queries, erases and stores reviews.
    appends: bool,
    /// `None` after the connection was lost, until the next call reconnects.
    session: Mutex<Option<Session>>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the connection settings: they may hold a password.
        f.debug_struct("PostgresStore")
            .field("writer", &self.writer)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        drop_off_thread(
            self.session
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
    }
}

impl Columns for Row {
    fn int(&self, i: usize) -> Result<i64, StoreError> {
        Ok(self.try_get(i)?)
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        Ok(self.try_get(i)?)
    }
    fn text(&self, i: usize) -> Result<String, StoreError> {
        Ok(self.try_get(i)?)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        Ok(self.try_get(i)?)
    }
    fn opt_bytes(&self, i: usize) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.try_get(i)?)
    }
}

/// The record of a row selected with [`COLUMNS`], placed in the fleet-wide order (`n`)
/// rather than its writer's chain.
fn read_ordered(row: &Row, keys: &Keys) -> Result<Stored, StoreError> {
    let n = to_u64(row.try_get(0)?, "n")?;
    let chained = read_stored(row, AT, keys)?;
    Ok(Stored {
        seq: n,
        record: chained.record,
    })
}

fn read_checkpoints(rows: &[Row]) -> Result<Vec<Checkpoint>, StoreError> {
    rows.iter()
        .map(|r| {
            Ok(Checkpoint {
                seq: to_u64(r.try_get(0)?, "checkpoint seq")?,
                hash: r.try_get(1)?,
                mac: r.try_get(2)?,
            })
        })
        .collect()
}

impl PostgresStore {
    /// Connects to the database at `url` (a `postgresql://` URL or `key=value` string),
    /// runs the migrations, and takes the chain of `writer`, which no other live process
    /// may hold.
    pub fn open(url: &str, writer: &str, config: PostgresConfig) -> Result<Self, StoreError> {
        if writer.is_empty()
            || writer.len() > MAX_WRITER_LEN
            || writer.chars().any(char::is_control)
        {
            return Err(StoreError::Config(format!(
                "audit writer name must be 1 to {MAX_WRITER_LEN} characters without control characters"
            )));
        }
        let (pg, tls) = settings(url, &config)?;
        let store = PostgresStore {
            pg,
            tls,
            writer: writer.to_owned(),
            config,
            appends: true,
            session: Mutex::new(None),
        };
        let session = store.connect()?;
        *store.session.lock().unwrap_or_else(PoisonError::into_inner) = Some(session);
        Ok(store)
    }

    /// Connects to the database at `url` to read it (verification, export, queries,
    /// erasure) without taking any writer's chain: appending fails. Runs the migrations.
    pub fn open_reader(url: &str, config: PostgresConfig) -> Result<Self, StoreError> {
        let (pg, tls) = settings(url, &config)?;
        let store = PostgresStore {
            pg,
            tls,
            writer: String::new(),
            config,
            appends: false,
            session: Mutex::new(None),
        };
        let session = store.connect()?;
        *store.session.lock().unwrap_or_else(PoisonError::into_inner) = Some(session);
        Ok(store)
    }

    /// Another connection to the same database as a reader (see
    /// [`open_reader`](Self::open_reader)), with this store's writer as the default chain
    /// of [`chain_rows`](AuditStore::chain_rows). It connects on its first call.
    pub fn reader(&self) -> PostgresStore {
        PostgresStore {
            pg: self.pg.clone(),
            tls: self.tls.clone(),
            writer: self.writer.clone(),
            config: self.config.clone(),
            appends: false,
            session: Mutex::new(None),
        }
    }

    /// The fleet's shared state in the same database, on a connection of its own that
    /// is made on the first call.
    pub fn fleet(&self) -> FleetStore {
        FleetStore::new(
            self.pg.clone(),
            self.tls.clone(),
            self.writer.clone(),
            self.config.clone(),
        )
    }

    /// Whether the connection is in plain text though TLS was not refused: the URL says
    /// `sslmode=prefer` (or nothing) and the server does not offer TLS. The caller
    /// should say so; `sslmode=require` refuses plain text, `disable` asks for it.
    pub fn fell_back_to_plain(&self) -> Result<bool, StoreError> {
        self.with(|s| crate::pg::fell_back_to_plain(&self.pg, &mut s.client))
    }

    /// The name of the chain this store appends to.
    pub fn writer(&self) -> &str {
        &self.writer
    }

    /// Seq of the last record in this writer's chain (0 when empty), as of the last
    /// append or (re)connect.
    pub fn last_seq(&self) -> u64 {
        self.session
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map_or(0, |s| s.last_seq)
    }

    fn connect(&self) -> Result<Session, StoreError> {
        let mut client = connect_client(
            &self.pg,
            self.tls.as_ref(),
            self.config.lock_timeout,
            self.config.keys.checkpoint_key(),
        )?;
        let insert = client.prepare(INSERT)?;
        let checkpoint = client.prepare(
            "INSERT INTO audit_checkpoints (writer, seq, hash, mac) VALUES ($1, $2, $3, $4)",
        )?;
        if !self.appends {
            return Ok(Session {
                client,
                insert,
                checkpoint,
                last_seq: 0,
                last_hash: GENESIS_HASH.to_owned(),
            });
        }
        let locked: bool = client
            .query_one(
                "SELECT pg_try_advisory_lock(hashtextextended($1, 0))",
                &[&self.writer],
            )?
            .try_get(0)?;
        if !locked {
            return Err(StoreError::WriterActive(self.writer.clone()));
        }
        client.execute(
            "INSERT INTO audit_writers (name) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&self.writer],
        )?;
        let tip = client.query_opt(
            "SELECT seq, hash FROM audit_records WHERE writer = $1 ORDER BY seq DESC LIMIT 1",
            &[&self.writer],
        )?;
        let (last_seq, last_hash) = match tip {
            Some(row) => (to_u64(row.try_get(0)?, "seq")?, row.try_get(1)?),
            None => (0, GENESIS_HASH.to_owned()),
        };
        Ok(Session {
            client,
            insert,
            checkpoint,
            last_seq,
            last_hash,
        })
    }

    /// Runs `f` on the session, connecting first if the last connection was lost, and
    /// forgetting the session if `f` finds the connection gone.
    fn with<T>(
        &self,
        f: impl FnOnce(&mut Session) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut guard = self.session.lock().unwrap_or_else(PoisonError::into_inner);
        if guard.as_ref().is_none_or(|s| s.client.is_closed()) {
            // Dropped first: a half-dead session must not keep the writer's lock.
            *guard = None;
            *guard = Some(self.connect()?);
        }
        let Some(session) = guard.as_mut() else {
            return Err(StoreError::Corrupt("no database session".to_owned()));
        };
        let result = f(session);
        if result.is_err() && session.client.is_closed() {
            *guard = None;
        }
        result
    }

    /// Checks that the keys fit this log before anything is appended with them: the
    /// last checkpoint (this writer's, or another's when it has none) verifies under the
    /// master key, and the last sealed record opens.
    pub fn check_keys(&self) -> Result<(), StoreError> {
        let keys = &self.config.keys;
        self.with(|s| {
            let last = s.client.query_opt(
                "SELECT writer, seq, hash, mac FROM audit_checkpoints \
                 ORDER BY (writer = $1) DESC, seq DESC LIMIT 1",
                &[&self.writer],
            )?;
            if let Some(row) = last {
                let writer: String = row.try_get(0)?;
                let seq = to_u64(row.try_get(1)?, "checkpoint seq")?;
                let hash: String = row.try_get(2)?;
                let mac: String = row.try_get(3)?;
                if !checkpoint_mac_ok(keys.checkpoint_key(), seq, &hash, &mac) {
                    return Err(StoreError::WrongKey(format!(
                        "the master key does not match this audit log: the last checkpoint of writer `{writer}` (seq {seq}) does not verify under it"
                    )));
                }
            }
            let sealed = s.client.query_opt(
                &format!(
                    "SELECT {COLUMNS} FROM audit_records WHERE key_id IS NOT NULL \
                     ORDER BY n DESC LIMIT 1"
                ),
                &[],
            )?;
            if let Some(row) = sealed {
                all_opened(&read_chain_row(&row, AT, keys)?).map_err(|e| {
                    StoreError::WrongKey(format!("the keys do not open this audit log: {e}"))
                })?;
            }
            Ok(())
        })
    }

    fn select_stored(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Stored>, StoreError> {
        let rows = self.with(|s| Ok(s.client.query(sql, params)?))?;
        rows.iter()
            .map(|r| read_ordered(r, &self.config.keys))
            .collect()
    }
}

impl AuditStore for PostgresStore {
    fn append_batch(&mut self, records: &[Record]) -> Result<Vec<u64>, StoreError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        if !self.appends {
            return Err(StoreError::Config(
                "this PostgreSQL connection reads the audit log; it appends to no chain".to_owned(),
            ));
        }
        let prepared = prepare(records, &self.config.keys, self.config.encrypt)?;
        let config = &self.config;
        let writer = self.writer.as_str();
        self.with(|s| {
            if let Some(limit) = config.max_bytes {
                let used: i64 = s
                    .client
                    .query_one(
                        "SELECT (pg_total_relation_size('audit_records') \
                         + pg_total_relation_size('audit_checkpoints'))::BIGINT",
                        &[],
                    )?
                    .try_get(0)?;
                if u64::try_from(used).unwrap_or(0) >= limit {
                    return Err(StoreError::SizeLimit { limit });
                }
            }
            let mut tx = s.client.transaction()?;
            let mut seq = s.last_seq;
            let mut prev = s.last_hash.clone();
            let mut ns = Vec::with_capacity(records.len());
            for (i, (r, p)) in records.iter().zip(&prepared).enumerate() {
                seq += 1;
                let hash = canonical(r, seq, &p.digests, Some(writer)).chain_hash(&prev);
                let reasons = (!r.review_reasons.is_empty())
                    .then(|| serde_json::to_string(&r.review_reasons))
                    .transpose()?;
                let sv = r
                    .surrogate_version
                    .map(|v| to_i64(v, "surrogate_version"))
                    .transpose()?;
                let seq_sql = to_i64(seq, "seq")?;
                let (st, d) = (&p.stored, &p.digests);
                let row = tx.query_one(
                    &s.insert,
                    &[
                        &writer,
                        &seq_sql,
                        &r.id,
                        &r.time_ms,
                        &r.route,
                        &r.model,
                        &r.consent.as_str(),
                        &r.subject,
                        &sv,
                        &r.review_state,
                        &st[0],
                        &d[0],
                        &st[1],
                        &d[1],
                        &st[2],
                        &d[2],
                        &st[3],
                        &d[3],
                        &st[4],
                        &d[4],
                        &st[5],
                        &d[5],
                        &prev,
                        &hash,
                        &p.key_id,
                        &reasons,
                    ],
                )?;
                ns.push(to_u64(row.try_get(0)?, "n")?);
                let periodic = config.checkpoint_every > 0 && seq % config.checkpoint_every == 0;
                if periodic || i + 1 == records.len() {
                    let mac = checkpoint_mac(config.keys.checkpoint_key(), seq, &hash);
                    tx.execute(&s.checkpoint, &[&writer, &seq_sql, &hash, &mac])?;
                }
                prev = hash;
            }
            tx.commit()?;
            s.last_seq = seq;
            s.last_hash = prev;
            Ok(ns)
        })
    }

    fn get(&self, id: &str) -> Result<Option<Stored>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM audit_records WHERE id = $1");
        Ok(self.select_stored(&sql, &[&id])?.into_iter().next())
    }

    fn contains(&self, id: &str) -> Result<bool, StoreError> {
        self.with(|s| {
            Ok(s.client
                .query_opt("SELECT 1 FROM audit_records WHERE id = $1", &[&id])?
                .is_some())
        })
    }

    fn query(&self, q: &RecordQuery) -> Result<Page, StoreError> {
        let limit = q.limit.max(1);
        let after = to_i64(q.after.unwrap_or(0), "after")?;
        let fetch = to_i64(
            u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1),
            "limit",
        )?;
        let mut sql = format!("SELECT {COLUMNS} FROM audit_records WHERE n > $1");
        let mut args: Vec<&(dyn ToSql + Sync)> = vec![&after];
        let filters: [(&str, &str, Option<&(dyn ToSql + Sync)>); 5] = [
            ("time_ms", ">=", q.from_ms.as_ref().map(|v| v as _)),
            ("time_ms", "<", q.to_ms.as_ref().map(|v| v as _)),
            ("route", "=", q.route.as_ref().map(|v| v as _)),
            ("subject", "=", q.subject.as_ref().map(|v| v as _)),
            ("review_state", "=", q.review_state.as_ref().map(|v| v as _)),
        ];
        for (column, op, value) in filters {
            if let Some(v) = value {
                args.push(v);
                sql.push_str(&format!(" AND {column} {op} ${}", args.len()));
            }
        }
        args.push(&fetch);
        sql.push_str(&format!(" ORDER BY n LIMIT ${}", args.len()));
        let mut records = self.select_stored(&sql, &args)?;
        let next = if records.len() > limit {
            records.truncate(limit);
            records.last().map(|s| s.seq)
        } else {
            None
        };
        Ok(Page { records, next })
    }

    fn erase(&mut self, what: &Erasure, now_ms: i64) -> Result<u64, StoreError> {
        let (filter, arg): (&str, &(dyn ToSql + Sync)) = match what {
            Erasure::Subject(subject) => ("subject = $1", subject),
            Erasure::Before(cutoff) => ("time_ms < $1", cutoff),
        };
        // In slices, so that a large purge never holds row locks for long. Every
        // writer's records: erasure is fleet-wide. Replicas purging at once skip the
        // rows another is erasing rather than wait for them, and never count a record
        // twice.
        let select = format!(
            "SELECT n, writer, seq, hash FROM audit_records WHERE {filter} \
             AND erased_at IS NULL ORDER BY n LIMIT 500 FOR UPDATE SKIP LOCKED"
        );
        let key = self.config.keys.checkpoint_key().to_vec();
        let reason = what.reason();
        let selector = what.selector();
        let mut event = None;
        let mut total = 0u64;
        loop {
            let erased = self.with(|s| {
                let mut tx = s.client.transaction()?;
                let rows = tx.query(select.as_str(), &[arg])?;
                if rows.is_empty() {
                    tx.commit()?;
                    return Ok(0);
                }
                // The event is written with the first slice, so that a purge that finds
                // nothing leaves nothing behind.
                let n = match event {
                    Some(n) => n,
                    None => new_erasure(&mut tx, &key, now_ms, reason, &selector)?,
                };
                event = Some(n);
                let tombstones: Vec<Tombstone> = rows
                    .iter()
                    .map(|r| {
                        Ok(Tombstone {
                            n: r.try_get(0)?,
                            writer: r.try_get(1)?,
                            seq: to_u64(r.try_get(2)?, "seq")?,
                            hash: r.try_get(3)?,
                            erased_at: now_ms,
                            reason: reason.to_owned(),
                        })
                    })
                    .collect::<Result<_, StoreError>>()?;
                bind_tombstones(&mut tx, &key, n, &tombstones)?;
                tx.commit()?;
                Ok(u64::try_from(tombstones.len()).unwrap_or(0))
            })?;
            if erased == 0 {
                {
                    // A contest's words are the customer's: they go with the record. Run
                    // whatever this call erased, so that a purge cut short before this
                    // point clears them when it is run again.
                    let clear = format!(
                        "UPDATE audit_reviews SET reason = '{ERASED_CONTEST}' WHERE decision = 'contest' \
                         AND reason <> '{ERASED_CONTEST}' AND record_id IN \
                         (SELECT id FROM audit_records WHERE {filter} AND erased_at IS NOT NULL)"
                    );
                    self.with(|s| Ok(s.client.execute(clear.as_str(), &[arg])?))?;
                }
                return Ok(total);
            }
            total += erased;
        }
    }

    fn erasures(&self) -> Result<Vec<ErasureEvent>, StoreError> {
        let rows = self.with(|s| {
            Ok(s.client.query(
                "SELECT n, time_ms, reason, selector, mac FROM audit_erasures ORDER BY n",
                &[],
            )?)
        })?;
        rows.iter()
            .map(|r| {
                Ok(ErasureEvent {
                    n: to_u64(r.try_get(0)?, "erasure")?,
                    time_ms: r.try_get(1)?,
                    reason: r.try_get(2)?,
                    selector: r.try_get(3)?,
                    mac: r.try_get(4)?,
                })
            })
            .collect()
    }

    fn begin_snapshot(&self) -> Result<(), StoreError> {
        // Repeatable read: every statement until the end sees the snapshot of the first.
        self.with(|s| {
            Ok(s.client
                .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")?)
        })
    }

    fn end_snapshot(&self) -> Result<(), StoreError> {
        self.with(|s| Ok(s.client.batch_execute("COMMIT")?))
    }

    fn erased_subjects_since(&self, since_ms: i64) -> Result<Vec<String>, StoreError> {
        self.with(|s| {
            let rows = s.client.query(
                "SELECT DISTINCT subject FROM audit_records WHERE erased_reason = 'subject_erasure' \
                 AND erased_at >= $1 AND subject IS NOT NULL ORDER BY subject",
                &[&since_ms],
            )?;
            rows.iter()
                .map(|r| Ok(r.try_get(0)?))
                .collect()
        })
    }

    fn reseal(&mut self, limit: usize) -> Result<u64, StoreError> {
        let keys = &self.config.keys;
        let active = keys.active_id().to_owned();
        let limit = sql_limit(limit)?;
        self.with(|s| {
            let mut tx = s.client.transaction()?;
            // SKIP LOCKED: replicas resealing at once share the work instead of queueing
            // on each other's rows.
            let rows = tx.query(
                &format!(
                    "SELECT {COLUMNS} FROM audit_records WHERE erased_at IS NULL \
                     AND (key_id IS NULL OR key_id <> $1) \
                     AND (request IS NOT NULL OR response IS NOT NULL OR features IS NOT NULL \
                          OR outputs IS NOT NULL OR attributions IS NOT NULL OR texts IS NOT NULL) \
                     ORDER BY n LIMIT $2 FOR UPDATE SKIP LOCKED"
                ),
                &[&active, &limit],
            )?;
            let update = tx.prepare(
                "UPDATE audit_records SET request = $1, response = $2, features = $3, \
                 outputs = $4, attributions = $5, texts = $6, key_id = $7 WHERE n = $8",
            )?;
            let mut done = 0u64;
            for row in &rows {
                let n: i64 = row.try_get(0)?;
                let sealed = reseal_fields(keys, &read_chain_row(row, AT, keys)?)?;
                tx.execute(
                    &update,
                    &[
                        &sealed[0], &sealed[1], &sealed[2], &sealed[3], &sealed[4], &sealed[5],
                        &active, &n,
                    ],
                )?;
                done += 1;
            }
            tx.commit()?;
            Ok(done)
        })
    }

    fn key_usage(&self) -> Result<Vec<(Option<String>, u64)>, StoreError> {
        let rows = self.with(|s| {
            Ok(s.client.query(
                "SELECT key_id, COUNT(*) FROM audit_records WHERE erased_at IS NULL \
                 GROUP BY key_id ORDER BY key_id",
                &[],
            )?)
        })?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, to_u64(r.try_get(1)?, "count")?)))
            .collect()
    }

    fn add_review(&mut self, review: &Review) -> Result<bool, StoreError> {
        let outcome = review
            .outcome
            .as_ref()
            .map(serde_json::to_string)
            .transpose()?;
        self.with(|s| {
            let mut tx = s.client.transaction()?;
            let updated = tx.execute(
                "UPDATE audit_records SET review_state = $1 WHERE id = $2",
                &[&review.state(), &review.record_id],
            )?;
            if updated == 0 {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO audit_reviews (record_id, time_ms, reviewer, decision, outcome, reason) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &review.record_id,
                    &review.time_ms,
                    &review.reviewer,
                    &review.decision,
                    &outcome,
                    &review.reason,
                ],
            )?;
            tx.commit()?;
            Ok(true)
        })
    }

    fn reviews(&self, record_id: &str) -> Result<Vec<Review>, StoreError> {
        let rows = self.with(|s| {
            Ok(s.client.query(
                "SELECT record_id, time_ms, reviewer, decision, outcome, reason \
                 FROM audit_reviews WHERE record_id = $1 ORDER BY n",
                &[&record_id],
            )?)
        })?;
        rows.iter()
            .map(|r| {
                Ok(Review {
                    record_id: r.try_get(0)?,
                    time_ms: r.try_get(1)?,
                    reviewer: r.try_get(2)?,
                    decision: r.try_get(3)?,
                    outcome: r
                        .try_get::<_, Option<String>>(4)?
                        .map(|t| serde_json::from_str(&t))
                        .transpose()?,
                    reason: r.try_get(5)?,
                })
            })
            .collect()
    }

    fn add_feedback(&mut self, feedback: &Feedback) -> Result<bool, StoreError> {
        let outcome = serde_json::to_string(&feedback.outcome)?;
        self.with(|s| {
            let n = s.client.execute(
                "INSERT INTO audit_feedback (record_id, time_ms, outcome) \
                 SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM audit_records WHERE id = $1)",
                &[&feedback.record_id, &feedback.time_ms, &outcome],
            )?;
            Ok(n > 0)
        })
    }

    fn feedback(&self, record_id: &str) -> Result<Vec<Feedback>, StoreError> {
        let rows = self.with(|s| {
            Ok(s.client.query(
                "SELECT record_id, time_ms, outcome FROM audit_feedback \
                 WHERE record_id = $1 ORDER BY n",
                &[&record_id],
            )?)
        })?;
        rows.iter()
            .map(|r| {
                Ok(Feedback {
                    record_id: r.try_get(0)?,
                    time_ms: r.try_get(1)?,
                    outcome: serde_json::from_str(&r.try_get::<_, String>(2)?)?,
                })
            })
            .collect()
    }

    /// This writer's chain; [`writer_chain_rows`](Self::writer_chain_rows) reads any.
    fn chain_rows(&self, after: Option<u64>, limit: usize) -> Result<Vec<ChainRow>, StoreError> {
        self.writer_chain_rows(&self.writer, after, limit)
    }

    /// This writer's checkpoints; [`writer_checkpoints`](Self::writer_checkpoints) reads
    /// any writer's.
    fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        self.writer_checkpoints(&self.writer)
    }

    fn writers(&self) -> Result<Vec<String>, StoreError> {
        // Not from `audit_writers` alone: a chain must not drop out of verification
        // because its row there was deleted.
        let rows = self.with(|s| {
            Ok(s.client.query(
                "SELECT name FROM audit_writers \
                 UNION SELECT writer FROM audit_checkpoints \
                 UNION SELECT writer FROM audit_records ORDER BY 1",
                &[],
            )?)
        })?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    fn writer_chain_rows(
        &self,
        writer: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<ChainRow>, StoreError> {
        let limit = sql_limit(limit)?;
        let after = after.map_or(Ok(i64::MIN), |a| to_i64(a, "after"))?;
        let rows = self.with(|s| {
            Ok(s.client.query(
                &format!(
                    "SELECT {COLUMNS} FROM audit_records WHERE writer = $1 AND seq > $2 \
                     ORDER BY seq LIMIT $3"
                ),
                &[&writer, &after, &limit],
            )?)
        })?;
        rows.iter()
            .map(|r| read_chain_row(r, AT, &self.config.keys))
            .collect()
    }

    fn writer_checkpoints(&self, writer: &str) -> Result<Vec<Checkpoint>, StoreError> {
        let rows = self.with(|s| {
            Ok(s.client.query(
                "SELECT seq, hash, mac FROM audit_checkpoints WHERE writer = $1 ORDER BY seq",
                &[&writer],
            )?)
        })?;
        read_checkpoints(&rows)
    }

    fn last_checkpoint(&self, writer: &str) -> Result<Option<Checkpoint>, StoreError> {
        let rows = self.with(|s| {
            Ok(s.client.query(
                "SELECT seq, hash, mac FROM audit_checkpoints WHERE writer = $1 \
                 ORDER BY seq DESC LIMIT 1",
                &[&writer],
            )?)
        })?;
        Ok(read_checkpoints(&rows)?.pop())
    }
}
