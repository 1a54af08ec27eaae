//! The embedded SQLite backend.
//!
//! - WAL mode: readers (queries, verification, another process) never block the writer.
//! - `synchronous=FULL`: in WAL mode, `NORMAL` may lose the last transactions on power
//!   loss or OS crash; `FULL` syncs the WAL on every commit, so a batch that returned `Ok`
//!   (and therefore every acknowledged `sync` record) survives kill -9 and power loss.
//!   Group commit amortises the fsync over a whole batch.
//! - One transaction per batch; checkpoints are written in the same transaction.

use crate::record::{Canonical, Consent, GENESIS_HASH, Record, sha256_hex};
use crate::store::{
    AuditStore, ChainRow, Checkpoint, ErasableField, Page, RangeQuery, StoreError, Stored,
    checkpoint_mac,
};
use rusqlite::{Connection, OptionalExtension, Row, params};
use std::path::Path;

/// Configuration of the SQLite store.
#[derive(Clone)]
pub struct SqliteConfig {
    /// Write a checkpoint every this many records (0 disables periodic checkpoints; the
    /// end of every batch is checkpointed regardless).
    pub checkpoint_every: u64,
    /// HMAC key for checkpoints. Never logged.
    pub checkpoint_key: Vec<u8>,
}

impl std::fmt::Debug for SqliteConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteConfig")
            .field("checkpoint_every", &self.checkpoint_every)
            .field("checkpoint_key", &"<redacted>")
            .finish()
    }
}

/// The SQLite implementation of [`AuditStore`].
pub struct SqliteStore {
    conn: Connection,
    config: SqliteConfig,
    last_seq: u64,
    last_hash: String,
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

const COLUMNS: &str = "seq, id, time_ms, route, model, consent, subject, surrogate_version, review_state, \
     request, request_sha256, response, response_sha256, features, features_sha256, \
     outputs, outputs_sha256, attributions, attributions_sha256, texts, texts_sha256, \
     erased_at, prev_hash, hash";

fn to_i64(v: u64, what: &'static str) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::OutOfRange(what))
}

fn to_u64(v: i64, what: &'static str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::OutOfRange(what))
}

fn json_bytes<T: serde::Serialize>(v: Option<&T>) -> Result<Option<Vec<u8>>, StoreError> {
    v.map(serde_json::to_vec)
        .transpose()
        .map_err(StoreError::from)
}

fn read_chain_row(row: &Row<'_>) -> Result<ChainRow, StoreError> {
    let field = |c: usize| -> Result<ErasableField, StoreError> {
        Ok(ErasableField {
            content: row.get(c)?,
            sha256: row.get(c + 1)?,
        })
    };
    let seq: i64 = row.get(0)?;
    let id: String = row.get(1)?;
    let seq = u64::try_from(seq)
        .map_err(|_| StoreError::Corrupt(format!("record {id} has an invalid seq {seq}")))?;
    Ok(ChainRow {
        seq,
        id,
        time_ms: row.get(2)?,
        route: row.get(3)?,
        model: row.get(4)?,
        consent: row.get(5)?,
        subject: row.get(6)?,
        surrogate_version: row
            .get::<_, Option<i64>>(7)?
            .map(|v| to_u64(v, "surrogate_version"))
            .transpose()?,
        fields: [
            field(9)?,
            field(11)?,
            field(13)?,
            field(15)?,
            field(17)?,
            field(19)?,
        ],
        erased_at: row.get(21)?,
        prev_hash: row.get(22)?,
        hash: row.get(23)?,
    })
}

fn parse_json<T: serde::de::DeserializeOwned>(f: &ErasableField) -> Result<Option<T>, StoreError> {
    f.content
        .as_deref()
        .map(serde_json::from_slice)
        .transpose()
        .map_err(StoreError::from)
}

fn read_stored(row: &Row<'_>) -> Result<Stored, StoreError> {
    let c = read_chain_row(row)?;
    let consent = Consent::parse(&c.consent)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown consent at seq {}", c.seq)))?;
    let [request, response, features, outputs, attributions, texts] = &c.fields;
    let record = Record {
        id: c.id.clone(),
        time_ms: c.time_ms,
        route: c.route.clone(),
        model: c.model.clone(),
        request: request.content.clone(),
        response: response.content.clone(),
        features: parse_json(features)?,
        outputs: parse_json(outputs)?,
        surrogate_version: c.surrogate_version,
        attributions: parse_json(attributions)?,
        texts: parse_json(texts)?,
        consent,
        subject: c.subject.clone(),
        review_state: row.get(8)?,
        erased_at: c.erased_at,
        prev_hash: c.prev_hash.clone(),
        hash: c.hash.clone(),
    };
    Ok(Stored { seq: c.seq, record })
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: impl AsRef<Path>, config: SqliteConfig) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Corrupt(format!(
                "could not enable WAL (journal_mode={mode})"
            )));
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(SCHEMA)?;
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
        })
    }

    /// Seq of the last appended record (0 when empty).
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }
}

impl AuditStore for SqliteStore {
    fn append_batch(&mut self, records: &[Record]) -> Result<Vec<u64>, StoreError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let tx = self.conn.transaction()?;
        let mut seq = self.last_seq;
        let mut prev = self.last_hash.clone();
        let mut seqs = Vec::with_capacity(records.len());
        {
            let mut insert = tx.prepare_cached(&format!(
                "INSERT INTO records ({COLUMNS}) VALUES \
                 (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24)"
            ))?;
            let mut checkpoint =
                tx.prepare_cached("INSERT INTO checkpoints (seq, hash, mac) VALUES (?1, ?2, ?3)")?;
            for (i, r) in records.iter().enumerate() {
                seq += 1;
                let contents = [
                    r.request.clone(),
                    r.response.clone(),
                    json_bytes(r.features.as_ref())?,
                    json_bytes(r.outputs.as_ref())?,
                    json_bytes(r.attributions.as_ref())?,
                    json_bytes(r.texts.as_ref())?,
                ];
                let digests: Vec<Option<String>> = contents
                    .iter()
                    .map(|c| c.as_deref().map(sha256_hex))
                    .collect();
                let canonical = Canonical {
                    v: 1,
                    seq,
                    id: &r.id,
                    time_ms: r.time_ms,
                    route: &r.route,
                    model: &r.model,
                    consent: r.consent.as_str(),
                    subject: r.subject.as_deref(),
                    surrogate_version: r.surrogate_version,
                    request_sha256: digests[0].as_deref(),
                    response_sha256: digests[1].as_deref(),
                    features_sha256: digests[2].as_deref(),
                    outputs_sha256: digests[3].as_deref(),
                    attributions_sha256: digests[4].as_deref(),
                    texts_sha256: digests[5].as_deref(),
                };
                let hash = canonical.chain_hash(&prev);
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
                    contents[0],
                    digests[0],
                    contents[1],
                    digests[1],
                    contents[2],
                    digests[2],
                    contents[3],
                    digests[3],
                    contents[4],
                    digests[4],
                    contents[5],
                    digests[5],
                    r.erased_at,
                    prev,
                    hash,
                ])?;
                let periodic =
                    self.config.checkpoint_every > 0 && seq % self.config.checkpoint_every == 0;
                if periodic || i + 1 == records.len() {
                    let mac = checkpoint_mac(&self.config.checkpoint_key, seq, &hash);
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
            Some(row) => Ok(Some(read_stored(row)?)),
            None => Ok(None),
        }
    }

    fn range(&self, q: &RangeQuery) -> Result<Page, StoreError> {
        let limit = q.limit.max(1);
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM records WHERE seq > ?1 AND time_ms >= ?2 AND time_ms < ?3 \
             ORDER BY seq LIMIT ?4"
        ))?;
        let after = to_i64(q.after.unwrap_or(0), "after")?;
        let fetch = to_i64(
            u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1),
            "limit",
        )?;
        let mut rows = stmt.query(params![
            after,
            q.from_ms.unwrap_or(i64::MIN),
            q.to_ms.unwrap_or(i64::MAX),
            fetch
        ])?;
        let mut records = Vec::new();
        while let Some(row) = rows.next()? {
            records.push(read_stored(row)?);
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
        let limit = to_i64(u64::try_from(limit.max(1)).unwrap_or(u64::MAX), "limit")?;
        let after = after.map_or(Ok(i64::MIN), |a| to_i64(a, "after"))?;
        let mut rows = stmt.query(params![after, limit])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(read_chain_row(row)?);
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
}
