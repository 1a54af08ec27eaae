//! The embedded SQLite backend.
//!
//! - WAL mode: readers (queries, verification, another process) never block the writer.
//! - `synchronous=FULL`: in WAL mode, `NORMAL` may lose the last transactions on power
//!   loss or OS crash; `FULL` syncs the WAL on every commit, so a batch that returned `Ok`
//!   (and therefore every acknowledged `sync` record) survives kill -9 and power loss.
//!   Group commit amortises the fsync over a whole batch.
//! - One transaction per batch; checkpoints are written in the same transaction.

use crate::common::{
    Columns, all_opened, canonical, prepare, read_chain_row, read_stored, record_columns,
    reseal_fields, sql_limit, to_i64, to_u64,
};
use crate::keys::Keys;
use crate::record::{GENESIS_HASH, Record};
use crate::store::{
    AuditStore, ChainRow, Checkpoint, ERASED_CONTEST, Erasure, ErasureEvent, Feedback,
    LEGACY_SELECTOR, Page, RecordQuery, Review, StoreError, Stored, checkpoint_mac, erasure_mac,
    tombstone_mac,
};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};
use std::path::Path;
use std::time::Duration;

/// Configuration of the SQLite store.
#[derive(Clone, Debug)]
pub struct SqliteConfig {
    /// Write a checkpoint every this many records (0 disables periodic checkpoints; the
    /// end of every batch is checkpointed regardless).
    pub checkpoint_every: u64,
    /// The master key (checkpoints) and the encryption keyring. Never logged.
    pub keys: Keys,
    /// Whether erasable fields are sealed with the active key on append. Reading opens
    /// sealed fields either way.
    pub encrypt: bool,
    /// How long a write waits for a lock another process holds before it fails.
    pub busy_timeout: Duration,
    /// The largest the database file may grow; beyond it a write fails as if the disk
    /// were full. `None`: as large as the disk allows.
    pub max_bytes: Option<u64>,
}

impl SqliteConfig {
    /// Defaults: a checkpoint every 1000 records, sealing on, a 5 s lock wait, no size
    /// limit.
    pub fn new(keys: Keys) -> Self {
        SqliteConfig {
            checkpoint_every: 1000,
            keys,
            encrypt: true,
            busy_timeout: Duration::from_secs(5),
            max_bytes: None,
        }
    }
}

/// The bound on the write-ahead log that [`SqliteStore::checkpoint_in_background`]
/// keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalLimit {
    /// Past this size a pass restarts the log (a `TRUNCATE` checkpoint) instead of only
    /// copying it into the database; also SQLite's `journal_size_limit`.
    pub max_bytes: u64,
    /// How long such a pass waits for readers still on the old log (and holds new
    /// writes meanwhile) before it gives up until the next tick.
    pub wait: Duration,
}

impl Default for WalLimit {
    /// 64 MiB and 200 ms.
    fn default() -> Self {
        WalLimit {
            max_bytes: 64 << 20,
            wait: Duration::from_millis(200),
        }
    }
}

/// What the checkpoint thread saw, for metrics and alerts.
#[derive(Debug, Default)]
pub struct WalStats {
    /// The log's size at the last tick, in bytes.
    pub bytes: std::sync::atomic::AtomicU64,
    /// Set by the checkpoint thread when the log is past its limit; the writing
    /// connection restarts it before its next batch.
    restart_wanted: std::sync::atomic::AtomicBool,
    /// Passes that restarted the log because it was past its limit.
    pub truncations: std::sync::atomic::AtomicU64,
    /// Times the log was past its limit but could not be restarted: a reader on an old
    /// snapshot kept the copy from finishing, or the restart's wait ran out.
    pub truncations_busy: std::sync::atomic::AtomicU64,
}

/// The thread of [`SqliteStore::checkpoint_in_background`]; dropping it stops the thread.
#[derive(Debug)]
pub struct BackgroundCheckpoints {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    stats: std::sync::Arc<WalStats>,
    limit: WalLimit,
}

impl BackgroundCheckpoints {
    /// What the thread saw.
    pub fn stats(&self) -> &WalStats {
        &self.stats
    }

    /// The bound it keeps.
    pub fn limit(&self) -> WalLimit {
        self.limit
    }
}

impl Drop for BackgroundCheckpoints {
    fn drop(&mut self) {
        self.stop = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The SQLite implementation of [`AuditStore`].
pub struct SqliteStore {
    conn: Connection,
    config: SqliteConfig,
    last_seq: u64,
    last_hash: String,
    /// Set by [`SqliteStore::checkpoint_in_background`]: the bound on the WAL, which
    /// this (the writing) connection restarts when the checkpoint thread asks.
    wal: Option<(WalLimit, std::sync::Arc<WalStats>)>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("config", &self.config)
            .field("last_seq", &self.last_seq)
            .finish_non_exhaustive()
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    time_ms INTEGER NOT NULL,
    route TEXT NOT NULL,
    model TEXT NOT NULL,
    consent TEXT NOT NULL,
    subject TEXT,
    surrogate_version INTEGER,
    review_state TEXT NOT NULL,
    request BLOB, request_sha256 TEXT,
    response BLOB, response_sha256 TEXT,
    features BLOB, features_sha256 TEXT,
    outputs BLOB, outputs_sha256 TEXT,
    attributions BLOB, attributions_sha256 TEXT,
    texts BLOB, texts_sha256 TEXT,
    erased_at INTEGER,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_time ON records(time_ms);
CREATE INDEX IF NOT EXISTS records_subject ON records(subject);
CREATE TABLE IF NOT EXISTS checkpoints (
    seq INTEGER PRIMARY KEY,
    hash TEXT NOT NULL,
    mac TEXT NOT NULL
);
";

/// Schema changes after the first version, applied in order; `PRAGMA user_version`
/// counts how many a database has had.
const MIGRATIONS: &[&str] = &[
    // 1: sealed fields name their key; tombstones say why.
    "ALTER TABLE records ADD COLUMN key_id TEXT;
     ALTER TABLE records ADD COLUMN erased_reason TEXT;
     CREATE INDEX IF NOT EXISTS records_route ON records(route, seq);",
    // 2: review decisions, reported outcomes, and why a record awaits review.
    "ALTER TABLE records ADD COLUMN review_reasons TEXT;
     CREATE INDEX IF NOT EXISTS records_review ON records(review_state, seq);
     CREATE TABLE IF NOT EXISTS reviews (
         n INTEGER PRIMARY KEY,
         record_id TEXT NOT NULL,
         time_ms INTEGER NOT NULL,
         reviewer TEXT NOT NULL,
         decision TEXT NOT NULL,
         outcome TEXT,
         reason TEXT NOT NULL
     );
     CREATE INDEX IF NOT EXISTS reviews_record ON reviews(record_id);
     CREATE TABLE IF NOT EXISTS feedback (
         n INTEGER PRIMARY KEY,
         record_id TEXT NOT NULL,
         time_ms INTEGER NOT NULL,
         outcome TEXT NOT NULL
     );
     CREATE INDEX IF NOT EXISTS feedback_record ON feedback(record_id);",
    // 3: authenticated erasures. Tombstones written before are marked `erasure = 0`
    // until the upgrade, in its own transaction, binds them (`bind_legacy`).
    // AUTOINCREMENT: a number is never reused, even after the newest event is deleted.
    "CREATE TABLE IF NOT EXISTS erasures (
         n INTEGER PRIMARY KEY AUTOINCREMENT,
         time_ms INTEGER NOT NULL,
         reason TEXT NOT NULL,
         selector TEXT NOT NULL,
         mac TEXT NOT NULL
     );
     ALTER TABLE records ADD COLUMN erasure INTEGER;
     ALTER TABLE records ADD COLUMN erasure_mac TEXT;
     UPDATE records SET erasure = 0 WHERE erased_at IS NOT NULL;
     CREATE INDEX IF NOT EXISTS records_legacy_tombstones ON records(seq) WHERE erasure = 0;",
];

/// The records table holds nothing but [`record_columns`], in that order.
const COLUMNS: &str = record_columns!();

/// Where [`record_columns`] start in [`COLUMNS`].
const AT: usize = 0;

const CLEAR_FIELDS: &str = "request = NULL, response = NULL, features = NULL, outputs = NULL, \
     attributions = NULL, texts = NULL, key_id = NULL";

impl Columns for Row<'_> {
    fn int(&self, i: usize) -> Result<i64, StoreError> {
        Ok(self.get(i)?)
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        Ok(self.get(i)?)
    }
    fn text(&self, i: usize) -> Result<String, StoreError> {
        Ok(self.get(i)?)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        Ok(self.get(i)?)
    }
    fn opt_bytes(&self, i: usize) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.get(i)?)
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: impl AsRef<Path>, config: SqliteConfig) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(config.busy_timeout)?;
        // Another application's SQLite file must not become an audit log by being opened.
        let tables: i64 = conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
            [],
            |r| r.get(0),
        )?;
        let records: i64 = conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'records'",
            [],
            |r| r.get(0),
        )?;
        if tables > 0 && records == 0 {
            return Err(StoreError::Corrupt(
                "the database holds other tables and no audit records: not a Sidelight audit log"
                    .to_owned(),
            ));
        }
        // For a new database only (SQLite keeps an existing one's): a record is a few KiB,
        // and with 32 KiB pages the writer issues an eighth of the WAL writes it would
        // with 4 KiB, which on a real disk is the difference between ~35,000 and ~50,000
        // sealed records/s (`cargo bench -p sidelight-audit --bench writer`).
        conn.pragma_update(None, "page_size", 32_768)?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Corrupt(format!(
                "could not enable WAL (journal_mode={mode})"
            )));
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        // Erased content is overwritten on disk, not left in free pages.
        conn.pragma_update(None, "secure_delete", "ON")?;
        conn.execute_batch(SCHEMA)?;
        migrate(&conn, config.keys.checkpoint_key())?;
        if let Some(max) = config.max_bytes {
            let page: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
            let pages = (max / u64::try_from(page.max(1)).unwrap_or(4096)).max(1);
            conn.pragma_update(None, "max_page_count", to_i64(pages, "max_bytes")?)?;
        }
        let tip: Option<(i64, String)> = conn
            .query_row(
                "SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let (last_seq, last_hash) = match tip {
            Some((s, h)) => (to_u64(s, "seq")?, h),
            None => (0, GENESIS_HASH.to_owned()),
        };
        Ok(SqliteStore {
            conn,
            config,
            last_seq,
            last_hash,
            wal: None,
        })
    }

    /// Checks that the keys fit this log before anything is appended with them: the
    /// last checkpoint verifies under the master key, and the last sealed record opens.
    /// Cheap (two indexed look-ups), so a writer can run it at start-up rather than
    /// extend a log with a key its own history does not verify under.
    pub fn check_keys(&self) -> Result<(), StoreError> {
        let last: Option<(i64, String, String)> = self
            .conn
            .query_row(
                "SELECT seq, hash, mac FROM checkpoints ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        if let Some((seq, hash, mac)) = last {
            let seq = to_u64(seq, "checkpoint seq")?;
            if !crate::store::checkpoint_mac_ok(self.config.keys.checkpoint_key(), seq, &hash, &mac)
            {
                return Err(StoreError::WrongKey(format!(
                    "the master key does not match this audit log: its last checkpoint (seq {seq}) does not verify under it"
                )));
            }
        }
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM records WHERE key_id IS NOT NULL ORDER BY seq DESC LIMIT 1"
        ))?;
        let mut rows = stmt.query([])?;
        if let Some(row) = rows.next()? {
            all_opened(&read_chain_row(row, AT, &self.config.keys)?).map_err(|e| {
                StoreError::WrongKey(format!("the keys do not open this audit log: {e}"))
            })?;
        }
        Ok(())
    }

    /// Moves WAL checkpoints off the commit path and bounds the log: this connection
    /// stops checkpointing on commit, and a thread with a connection of its own
    /// checkpoints every `every`. A commit that happens to cross SQLite's automatic
    /// checkpoint threshold would otherwise copy the WAL into the database and fsync it
    /// before returning, which is what a `sync` response's p99 would feel.
    ///
    /// A passive pass never blocks the writer, but under writes that never pause it
    /// never lets the log start over either, and the file grows without end (another
    /// connection asking for a restart starves: the writer takes the lock again at
    /// once). So when the thread finds the log past `limit.max_bytes` and its passive
    /// pass has copied all but a quarter of the bound, this connection — the writer —
    /// restarts it before its next batch: a `TRUNCATE` checkpoint that waits up to
    /// `limit.wait` for readers still on the old log, copies the rest (that quarter at
    /// most), and empties the file. That batch waits for it:
    /// at most `limit.wait` plus that copy. Readers that stay longer (a long
    /// verification) make it give up until the thread asks again, counted in
    /// [`WalStats::truncations_busy`]. The thread stops when the returned handle is
    /// dropped.
    pub fn checkpoint_in_background(
        &mut self,
        path: &Path,
        every: Duration,
        limit: WalLimit,
    ) -> Result<BackgroundCheckpoints, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(self.config.busy_timeout)?;
        self.conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        // After a checkpoint that restarts the log, SQLite cuts the file to this size
        // rather than leave it at its high-water mark.
        let journal_limit = to_i64(limit.max_bytes, "wal max_bytes")?;
        self.conn
            .pragma_update(None, "journal_size_limit", journal_limit)?;
        let wal = wal_path(path);
        let stats = std::sync::Arc::new(WalStats::default());
        self.wal = Some((limit, stats.clone()));
        let seen = stats.clone();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("sidelight-audit-checkpoint".to_owned())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(every)
                {
                    checkpoint_pass(&conn, &wal, limit, &seen);
                }
            })
            .map_err(|e| StoreError::Corrupt(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(BackgroundCheckpoints {
            stop: Some(stop),
            thread: Some(thread),
            stats,
            limit,
        })
    }

    /// Restarts the WAL if the checkpoint thread found it past its bound.
    fn restart_wal_if_wanted(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let Some((limit, stats)) = &self.wal else {
            return;
        };
        if !stats.restart_wanted.swap(false, Relaxed) {
            return;
        }
        stats.truncations.fetch_add(1, Relaxed);
        let _ = self.conn.busy_timeout(limit.wait);
        // The first column is 1 when the pass could not finish (readers kept it busy).
        let restarted = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                r.get::<_, i64>(0)
            })
            .is_ok_and(|b| b == 0);
        let _ = self.conn.busy_timeout(self.config.busy_timeout);
        if !restarted {
            stats.truncations_busy.fetch_add(1, Relaxed);
        }
    }

    /// Seq of the last appended record (0 when empty).
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }
}

/// The write-ahead log of the database at `path`.
fn wal_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    std::path::PathBuf::from(name)
}

fn wal_size(wal: &Path) -> u64 {
    std::fs::metadata(wal).map_or(0, |m| m.len())
}

/// One tick of the checkpoint thread. Failures are retried at the next tick; the log
/// only grows meanwhile, which the stats show.
fn checkpoint_pass(conn: &Connection, wal: &Path, limit: WalLimit, stats: &WalStats) {
    use std::sync::atomic::Ordering::Relaxed;
    // (busy, frames in the log, frames copied into the database).
    let pass = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    });
    let size = wal_size(wal);
    // The writer is asked to restart the log only when this pass left little to copy
    // (a quarter of the bound at most), so that its restart waits for readers and copies
    // no more than that. A reader holding an old snapshot keeps the pass from catching
    // up: then no write is held up, and the log grows until the reader is done
    // (counted as busy).
    if size > limit.max_bytes {
        let page = conn
            .query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0))
            .unwrap_or(4096);
        match pass {
            Ok((_, log, copied))
                if u64::try_from((log - copied).max(0).saturating_mul(page))
                    .unwrap_or(u64::MAX)
                    <= limit.max_bytes / 4 =>
            {
                stats.restart_wanted.store(true, Relaxed);
            }
            _ => {
                stats.truncations_busy.fetch_add(1, Relaxed);
            }
        }
    }
    stats.bytes.store(size, Relaxed);
}

/// Stores a new authenticated erasure event; returns its number.
fn new_erasure(
    tx: &rusqlite::Transaction<'_>,
    key: &[u8],
    now_ms: i64,
    reason: &str,
    selector: &str,
) -> Result<u64, StoreError> {
    tx.execute(
        "INSERT INTO erasures (time_ms, reason, selector, mac) VALUES (?1, ?2, ?3, '')",
        params![now_ms, reason, selector],
    )?;
    let n = to_u64(tx.last_insert_rowid(), "erasure")?;
    let mac = erasure_mac(key, n, now_ms, reason, selector);
    tx.execute(
        "UPDATE erasures SET mac = ?1 WHERE n = ?2",
        params![mac, to_i64(n, "erasure")?],
    )?;
    Ok(n)
}

/// Removes the content of the records at `rows` (seq, hash) and writes their tombstones,
/// bound to erasure `n`.
fn bind_tombstones(
    tx: &rusqlite::Transaction<'_>,
    key: &[u8],
    n: u64,
    now_ms: i64,
    reason: &str,
    rows: &[(i64, String)],
) -> Result<(), StoreError> {
    let mut update = tx.prepare_cached(&format!(
        "UPDATE records SET {CLEAR_FIELDS}, erased_at = ?1, erased_reason = ?2, \
         erasure = ?3, erasure_mac = ?4 WHERE seq = ?5 AND erased_at IS NULL"
    ))?;
    for (seq, hash) in rows {
        let mac = tombstone_mac(key, n, "", to_u64(*seq, "seq")?, hash, now_ms, reason);
        update.execute(params![now_ms, reason, to_i64(n, "erasure")?, mac, seq])?;
    }
    Ok(())
}

/// The migration that introduced authenticated erasures (a 1-based version).
const ERASURES_VERSION: usize = 3;

/// In the upgrade's own transaction, binds the tombstones written before erasures were
/// authenticated to one `legacy` event — once, and only when `key` authenticates the
/// log's newest checkpoint (the process upgrading holds the log's key). Otherwise they
/// stay marked `erasure = 0`, which verification reports: no later start binds them, so
/// a tombstone forged after the upgrade can never be laundered this way.
fn bind_legacy(tx: &rusqlite::Transaction<'_>, key: &[u8]) -> Result<(), StoreError> {
    let newest: Option<(i64, String, String)> = tx
        .query_row(
            "SELECT seq, hash, mac FROM checkpoints ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    if let Some((seq, hash, mac)) = newest {
        if !crate::store::checkpoint_mac_ok(key, to_u64(seq, "seq")?, &hash, &mac) {
            return Ok(());
        }
    }
    type Legacy = (i64, String, i64, Option<String>);
    let rows: Vec<Legacy> = tx
        .prepare(
            "SELECT seq, hash, erased_at, erased_reason FROM records \
             WHERE erasure = 0 AND erased_at IS NOT NULL ORDER BY seq",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    if rows.is_empty() {
        return Ok(());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let n = new_erasure(tx, key, now, "legacy", LEGACY_SELECTOR)?;
    let mut update =
        tx.prepare("UPDATE records SET erasure = ?1, erasure_mac = ?2 WHERE seq = ?3")?;
    for (seq, hash, at, why) in &rows {
        let mac = tombstone_mac(
            key,
            n,
            "",
            to_u64(*seq, "seq")?,
            hash,
            *at,
            why.as_deref().unwrap_or_default(),
        );
        update.execute(params![to_i64(n, "erasure")?, mac, seq])?;
    }
    Ok(())
}

fn migrate(conn: &Connection, key: &[u8]) -> Result<(), StoreError> {
    let done: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let done = usize::try_from(done).unwrap_or(0);
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done) {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)?;
        if i + 1 == ERASURES_VERSION {
            bind_legacy(&tx, key)?;
        }
        tx.pragma_update(
            None,
            "user_version",
            i64::try_from(i + 1).unwrap_or(i64::MAX),
        )?;
        tx.commit()?;
    }
    Ok(())
}

impl AuditStore for SqliteStore {
    fn append_batch(&mut self, records: &[Record]) -> Result<Vec<u64>, StoreError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let prepared = prepare(records, &self.config.keys, self.config.encrypt)?;
        self.restart_wal_if_wanted();
        let tx = self.conn.transaction()?;
        let mut seq = self.last_seq;
        let mut prev = self.last_hash.clone();
        let mut seqs = Vec::with_capacity(records.len());
        {
            let mut insert = tx.prepare_cached(&format!(
                "INSERT INTO records ({COLUMNS}) VALUES \
                 (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, \
                 ?20, ?21, NULL, ?22, ?23, ?24, NULL, ?25, NULL, NULL)"
            ))?;
            let mut checkpoint =
                tx.prepare_cached("INSERT INTO checkpoints (seq, hash, mac) VALUES (?1, ?2, ?3)")?;
            for (i, (r, p)) in records.iter().zip(&prepared).enumerate() {
                seq += 1;
                let (stored, digests) = (&p.stored, &p.digests);
                let hash = canonical(r, seq, digests, None).chain_hash(&prev);
                let reasons = (!r.review_reasons.is_empty())
                    .then(|| serde_json::to_string(&r.review_reasons))
                    .transpose()?;
                let sv = r
                    .surrogate_version
                    .map(|v| to_i64(v, "surrogate_version"))
                    .transpose()?;
                insert.execute(params![
                    to_i64(seq, "seq")?,
                    r.id,
                    r.time_ms,
                    r.route,
                    r.model,
                    r.consent.as_str(),
                    r.subject,
                    sv,
                    r.review_state,
                    stored[0],
                    digests[0],
                    stored[1],
                    digests[1],
                    stored[2],
                    digests[2],
                    stored[3],
                    digests[3],
                    stored[4],
                    digests[4],
                    stored[5],
                    digests[5],
                    prev,
                    hash,
                    p.key_id,
                    reasons,
                ])?;
                let periodic =
                    self.config.checkpoint_every > 0 && seq % self.config.checkpoint_every == 0;
                if periodic || i + 1 == records.len() {
                    let mac = checkpoint_mac(self.config.keys.checkpoint_key(), seq, &hash);
                    checkpoint.execute(params![to_i64(seq, "seq")?, hash, mac])?;
                }
                seqs.push(seq);
                prev = hash;
            }
        }
        tx.commit()?;
        self.last_seq = seq;
        self.last_hash = prev;
        Ok(seqs)
    }

    fn get(&self, id: &str) -> Result<Option<Stored>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM records WHERE id = ?1"))?;
        let mut rows = stmt.query(params![id])?;
        match rows.next()? {
            Some(row) => Ok(Some(read_stored(row, AT, &self.config.keys)?)),
            None => Ok(None),
        }
    }

    fn contains(&self, id: &str) -> Result<bool, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT 1 FROM records WHERE id = ?1")?;
        Ok(stmt.exists(params![id])?)
    }

    fn query(&self, q: &RecordQuery) -> Result<Page, StoreError> {
        let limit = q.limit.max(1);
        let mut sql = format!("SELECT {COLUMNS} FROM records WHERE seq > ?");
        let mut args: Vec<SqlValue> =
            vec![SqlValue::Integer(to_i64(q.after.unwrap_or(0), "after")?)];
        for (column, op, value) in [
            ("time_ms", ">=", q.from_ms.map(SqlValue::Integer)),
            ("time_ms", "<", q.to_ms.map(SqlValue::Integer)),
            ("route", "=", q.route.clone().map(SqlValue::Text)),
            ("subject", "=", q.subject.clone().map(SqlValue::Text)),
            (
                "review_state",
                "=",
                q.review_state.clone().map(SqlValue::Text),
            ),
        ] {
            if let Some(v) = value {
                sql.push_str(&format!(" AND {column} {op} ?"));
                args.push(v);
            }
        }
        sql.push_str(" ORDER BY seq LIMIT ?");
        args.push(SqlValue::Integer(to_i64(
            u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1),
            "limit",
        )?));
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut rows = stmt.query(params_from_iter(args))?;
        let mut records = Vec::new();
        while let Some(row) = rows.next()? {
            records.push(read_stored(row, AT, &self.config.keys)?);
        }
        let next = if records.len() > limit {
            records.truncate(limit);
            records.last().map(|s| s.seq)
        } else {
            None
        };
        Ok(Page { records, next })
    }

    fn chain_rows(&self, after: Option<u64>, limit: usize) -> Result<Vec<ChainRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM records WHERE seq > ?1 ORDER BY seq LIMIT ?2"
        ))?;
        let limit = sql_limit(limit)?;
        let after = after.map_or(Ok(i64::MIN), |a| to_i64(a, "after"))?;
        let mut rows = stmt.query(params![after, limit])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(read_chain_row(row, AT, &self.config.keys)?);
        }
        Ok(out)
    }

    fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT seq, hash, mac FROM checkpoints ORDER BY seq")?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(Checkpoint {
                seq: to_u64(row.get(0)?, "checkpoint seq")?,
                hash: row.get(1)?,
                mac: row.get(2)?,
            });
        }
        Ok(out)
    }

    fn last_checkpoint(&self, _writer: &str) -> Result<Option<Checkpoint>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT seq, hash, mac FROM checkpoints ORDER BY seq DESC LIMIT 1")?;
        let mut rows = stmt.query([])?;
        match rows.next()? {
            Some(row) => Ok(Some(Checkpoint {
                seq: to_u64(row.get(0)?, "checkpoint seq")?,
                hash: row.get(1)?,
                mac: row.get(2)?,
            })),
            None => Ok(None),
        }
    }

    fn erase(&mut self, what: &Erasure, now_ms: i64) -> Result<u64, StoreError> {
        let (filter, arg) = match what {
            Erasure::Subject(subject) => ("subject = ?1", SqlValue::Text(subject.clone())),
            Erasure::Before(cutoff) => ("time_ms < ?1", SqlValue::Integer(*cutoff)),
        };
        let select = format!(
            "SELECT seq, hash FROM records WHERE {filter} AND erased_at IS NULL \
             ORDER BY seq LIMIT 500"
        );
        let key = self.config.keys.checkpoint_key().to_vec();
        let reason = what.reason();
        let mut event = None;
        let mut total = 0u64;
        // In slices, so that a large purge never holds the write lock for long: the
        // group-commit writer of a running proxy gets its turn between slices.
        loop {
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let rows: Vec<(i64, String)> = tx
                .prepare_cached(&select)?
                .query_map(params![arg], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            if rows.is_empty() {
                {
                    // A contest's words are the customer's: they go with the record. Run
                    // whatever this call erased, so that a purge cut short before this
                    // point clears them when it is run again.
                    tx.execute(
                        &format!(
                            "UPDATE reviews SET reason = '{ERASED_CONTEST}' WHERE decision = 'contest' \
                             AND reason <> '{ERASED_CONTEST}' AND record_id IN \
                             (SELECT id FROM records WHERE {filter} AND erased_at IS NOT NULL)"
                        ),
                        params![arg],
                    )?;
                }
                tx.commit()?;
                return Ok(total);
            }
            // The event is written with the first slice, so that a purge that finds
            // nothing leaves nothing behind.
            let n = match event {
                Some(n) => n,
                None => {
                    let n = new_erasure(&tx, &key, now_ms, reason, &what.selector())?;
                    event = Some(n);
                    n
                }
            };
            bind_tombstones(&tx, &key, n, now_ms, reason, &rows)?;
            tx.commit()?;
            total += u64::try_from(rows.len()).unwrap_or(0);
        }
    }

    fn erasures(&self) -> Result<Vec<ErasureEvent>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT n, time_ms, reason, selector, mac FROM erasures ORDER BY n")?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(ErasureEvent {
                n: to_u64(row.get(0)?, "erasure")?,
                time_ms: row.get(1)?,
                reason: row.get(2)?,
                selector: row.get(3)?,
                mac: row.get(4)?,
            });
        }
        Ok(out)
    }

    fn begin_snapshot(&self) -> Result<(), StoreError> {
        // Deferred: the snapshot is taken at the first read, and nothing is locked.
        self.conn.execute_batch("BEGIN DEFERRED")?;
        Ok(())
    }

    fn end_snapshot(&self) -> Result<(), StoreError> {
        if !self.conn.is_autocommit() {
            self.conn.execute_batch("COMMIT")?;
        }
        Ok(())
    }

    fn erased_subjects_since(&self, since_ms: i64) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT DISTINCT subject FROM records WHERE erased_reason = 'subject_erasure' \
             AND erased_at >= ?1 AND subject IS NOT NULL ORDER BY subject",
        )?;
        let rows = stmt.query_map(params![since_ms], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn reseal(&mut self, limit: usize) -> Result<u64, StoreError> {
        let active = self.config.keys.active_id().to_owned();
        let limit = sql_limit(limit)?;
        // Immediate: the transaction reads before it writes, and a deferred one could not
        // upgrade to a write while a proxy's writer holds the lock (it would fail at once
        // instead of waiting its turn).
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut done = 0u64;
        {
            let mut select = tx.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM records WHERE erased_at IS NULL \
                 AND (key_id IS NULL OR key_id != ?1) \
                 AND (request IS NOT NULL OR response IS NOT NULL OR features IS NOT NULL \
                      OR outputs IS NOT NULL OR attributions IS NOT NULL OR texts IS NOT NULL) \
                 ORDER BY seq LIMIT ?2"
            ))?;
            let rows: Vec<ChainRow> = {
                let mut rows = select.query(params![active, limit])?;
                let mut out = Vec::new();
                while let Some(row) = rows.next()? {
                    out.push(read_chain_row(row, AT, &self.config.keys)?);
                }
                out
            };
            let mut update = tx.prepare_cached(
                "UPDATE records SET request = ?1, response = ?2, features = ?3, outputs = ?4, \
                 attributions = ?5, texts = ?6, key_id = ?7 WHERE seq = ?8",
            )?;
            for row in rows {
                let sealed = reseal_fields(&self.config.keys, &row)?;
                update.execute(params![
                    sealed[0],
                    sealed[1],
                    sealed[2],
                    sealed[3],
                    sealed[4],
                    sealed[5],
                    active,
                    to_i64(row.seq, "seq")?,
                ])?;
                done += 1;
            }
        }
        tx.commit()?;
        Ok(done)
    }

    fn key_usage(&self) -> Result<Vec<(Option<String>, u64)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT key_id, COUNT(*) FROM records WHERE erased_at IS NULL \
             GROUP BY key_id ORDER BY key_id",
        )?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push((row.get(0)?, to_u64(row.get(1)?, "count")?));
        }
        Ok(out)
    }

    fn add_review(&mut self, review: &Review) -> Result<bool, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let updated = tx.execute(
            "UPDATE records SET review_state = ?1 WHERE id = ?2",
            params![review.state(), review.record_id],
        )?;
        if updated == 0 {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO reviews (record_id, time_ms, reviewer, decision, outcome, reason) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                review.record_id,
                review.time_ms,
                review.reviewer,
                review.decision,
                review
                    .outcome
                    .as_ref()
                    .map(serde_json::to_string)
                    .transpose()?,
                review.reason,
            ],
        )?;
        tx.commit()?;
        Ok(true)
    }

    fn reviews(&self, record_id: &str) -> Result<Vec<Review>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT record_id, time_ms, reviewer, decision, outcome, reason FROM reviews \
             WHERE record_id = ?1 ORDER BY n",
        )?;
        let mut rows = stmt.query(params![record_id])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(Review {
                record_id: row.get(0)?,
                time_ms: row.get(1)?,
                reviewer: row.get(2)?,
                decision: row.get(3)?,
                outcome: row
                    .get::<_, Option<String>>(4)?
                    .map(|t| serde_json::from_str(&t))
                    .transpose()?,
                reason: row.get(5)?,
            });
        }
        Ok(out)
    }

    fn add_feedback(&mut self, feedback: &Feedback) -> Result<bool, StoreError> {
        if !self.contains(&feedback.record_id)? {
            return Ok(false);
        }
        self.conn.execute(
            "INSERT INTO feedback (record_id, time_ms, outcome) VALUES (?1, ?2, ?3)",
            params![
                feedback.record_id,
                feedback.time_ms,
                serde_json::to_string(&feedback.outcome)?
            ],
        )?;
        Ok(true)
    }

    fn feedback(&self, record_id: &str) -> Result<Vec<Feedback>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT record_id, time_ms, outcome FROM feedback WHERE record_id = ?1 ORDER BY n",
        )?;
        let mut rows = stmt.query(params![record_id])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(Feedback {
                record_id: row.get(0)?,
                time_ms: row.get(1)?,
                outcome: serde_json::from_str(&row.get::<_, String>(2)?)?,
            });
        }
        Ok(out)
    }
}
