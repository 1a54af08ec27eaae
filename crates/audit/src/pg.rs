//! What the PostgreSQL audit store and the fleet's shared state both need: their
//! configuration, connecting (TLS, session settings), the schema migrations of both, and
//! closing a connection away from any async runtime. Kept apart from both so that
//! [`PostgresStore::fleet`](crate::PostgresStore::fleet) can make a
//! [`FleetStore`](crate::FleetStore) while the fleet's code depends on this module only.

use crate::db_error::postgres_describe;
use crate::keys::Keys;
use crate::store::StoreError;
use postgres::config::SslMode;
use postgres::{Client, NoTls};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres_rustls::MakeRustlsConnect;

/// Configuration of the PostgreSQL store.
#[derive(Clone, Debug)]
pub struct PostgresConfig {
    /// Write a checkpoint every this many records of this writer (0 disables periodic
    /// checkpoints; the end of every batch is checkpointed regardless).
    pub checkpoint_every: u64,
    /// The master key (checkpoints) and the encryption keyring. Never logged.
    pub keys: Keys,
    /// Whether erasable fields are sealed with the active key on append.
    pub encrypt: bool,
    /// How long a statement waits for a row lock another session holds before it fails
    /// (`lock_timeout`; the error's kind is `locked`).
    pub lock_timeout: Duration,
    /// How long connecting may take, when the URL does not say (`connect_timeout`).
    pub connect_timeout: Duration,
    /// The most the audit tables (with their indexes and TOAST) may take; beyond it an
    /// append fails with kind `full`. Checked before each batch, so the tables may
    /// overshoot by one batch. `None`: no limit.
    pub max_bytes: Option<u64>,
    /// PEM file of the CA certificates that `sslmode=require` trusts; `None`: the
    /// system's.
    pub ca_file: Option<PathBuf>,
}

impl PostgresConfig {
    /// Defaults: a checkpoint every 1000 records, sealing on, a 5 s lock wait, a 5 s
    /// connect timeout, no size limit.
    pub fn new(keys: Keys) -> Self {
        PostgresConfig {
            checkpoint_every: 1000,
            keys,
            encrypt: true,
            lock_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            max_bytes: None,
            ca_file: None,
        }
    }
}

/// Key of the transaction-level advisory lock that serialises migrations. Writer locks
/// use `hashtextextended(name, 0)` in the same (bigint) key space; a clash would only
/// make one start wait for the other's migration.
const MIGRATION_LOCK: i64 = 0x5349_4445_4c49_4748; // "SIDELIGH"

/// Schema versions, applied in order; `audit_migrations` records which ran.
const MIGRATIONS: &[&str] = &[
    // 1: records in a chain per writer, checkpoints per writer, reviews, feedback.
    "CREATE TABLE audit_writers (
         name TEXT PRIMARY KEY,
         first_seen TIMESTAMPTZ NOT NULL DEFAULT now()
     );
     CREATE TABLE audit_records (
         n BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
         writer TEXT NOT NULL,
         seq BIGINT NOT NULL,
         id TEXT NOT NULL UNIQUE,
         time_ms BIGINT NOT NULL,
         route TEXT NOT NULL,
         model TEXT NOT NULL,
         consent TEXT NOT NULL,
         subject TEXT,
         surrogate_version BIGINT,
         review_state TEXT NOT NULL,
         request BYTEA, request_sha256 TEXT,
         response BYTEA, response_sha256 TEXT,
         features BYTEA, features_sha256 TEXT,
         outputs BYTEA, outputs_sha256 TEXT,
         attributions BYTEA, attributions_sha256 TEXT,
         texts BYTEA, texts_sha256 TEXT,
         erased_at BIGINT,
         prev_hash TEXT NOT NULL,
         hash TEXT NOT NULL,
         key_id TEXT,
         erased_reason TEXT,
         review_reasons TEXT,
         UNIQUE (writer, seq)
     );
     CREATE INDEX audit_records_time ON audit_records (time_ms);
     CREATE INDEX audit_records_subject ON audit_records (subject);
     CREATE INDEX audit_records_route ON audit_records (route, n);
     CREATE INDEX audit_records_review ON audit_records (review_state, n);
     CREATE TABLE audit_checkpoints (
         writer TEXT NOT NULL,
         seq BIGINT NOT NULL,
         hash TEXT NOT NULL,
         mac TEXT NOT NULL,
         PRIMARY KEY (writer, seq)
     );
     CREATE TABLE audit_reviews (
         n BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
         record_id TEXT NOT NULL,
         time_ms BIGINT NOT NULL,
         reviewer TEXT NOT NULL,
         decision TEXT NOT NULL,
         outcome TEXT,
         reason TEXT NOT NULL
     );
     CREATE INDEX audit_reviews_record ON audit_reviews (record_id);
     CREATE TABLE audit_feedback (
         n BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
         record_id TEXT NOT NULL,
         time_ms BIGINT NOT NULL,
         outcome TEXT NOT NULL
     );
     CREATE INDEX audit_feedback_record ON audit_feedback (record_id);",
    // 2: the fleet's shared training rows, published surrogates, and erasures.
    "CREATE TABLE fleet_training_rows (
         n BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
         id TEXT NOT NULL,
         route TEXT NOT NULL,
         time_ms BIGINT NOT NULL,
         subject TEXT,
         rows BIGINT NOT NULL,
         key_id TEXT,
         payload BYTEA NOT NULL
     );
     CREATE INDEX fleet_training_rows_route ON fleet_training_rows (route, n);
     CREATE INDEX fleet_training_rows_subject ON fleet_training_rows (subject);
     CREATE INDEX fleet_training_rows_time ON fleet_training_rows (time_ms);
     CREATE TABLE fleet_surrogates (
         route TEXT NOT NULL,
         version BIGINT NOT NULL,
         trained_at BIGINT NOT NULL,
         rows BIGINT NOT NULL,
         r2 DOUBLE PRECISION NOT NULL,
         mae DOUBLE PRECISION NOT NULL,
         agreement DOUBLE PRECISION,
         accepted BOOLEAN NOT NULL,
         reason TEXT NOT NULL,
         surrogate TEXT,
         writer TEXT NOT NULL,
         PRIMARY KEY (route, version)
     );
     CREATE TABLE fleet_erasures (
         n BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
         subject TEXT NOT NULL,
         time_ms BIGINT NOT NULL,
         writer TEXT NOT NULL
     );",
    // 3: authenticated erasures. Tombstones written before are marked `erasure = 0`
    // until a key holder binds them (`bind_legacy_tombstones`).
    "CREATE TABLE audit_erasures (
         n BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
         time_ms BIGINT NOT NULL,
         reason TEXT NOT NULL,
         selector TEXT NOT NULL,
         mac TEXT NOT NULL
     );
     ALTER TABLE audit_records ADD COLUMN erasure BIGINT, ADD COLUMN erasure_mac TEXT;
     UPDATE audit_records SET erasure = 0 WHERE erased_at IS NOT NULL;
     CREATE INDEX audit_records_legacy_tombstones ON audit_records (n) WHERE erasure = 0;",
    // 4: the subjects each published surrogate learnt from (keyed digests), so that an
    // erasure retires every version that saw the subject.
    "ALTER TABLE fleet_surrogates ADD COLUMN subjects BIGINT[];",
    // 5: each replica's monitoring summaries (aggregates only), merged by every replica
    // into the fleet's figures.
    "CREATE TABLE fleet_monitor (
         route TEXT NOT NULL,
         writer TEXT NOT NULL,
         time_ms BIGINT NOT NULL,
         summary TEXT NOT NULL,
         PRIMARY KEY (route, writer)
     );",
    // 6: the fleet's drift reference per route (grids and counts, sealed like the
    // training rows), which every replica counts its window against so that drift
    // counts merge; `rank` says which of several offered the fleet keeps.
    "CREATE TABLE fleet_reference (
         route TEXT PRIMARY KEY,
         id TEXT NOT NULL,
         rank BIGINT NOT NULL,
         time_ms BIGINT NOT NULL,
         key_id TEXT,
         body BYTEA NOT NULL
     );",
];

/// The rustls connector of `sslmode=require` and `prefer` (`mode`, for messages): the CA
/// certificates of `ca_file`, or the system's.
fn tls_connector(ca_file: Option<&Path>, mode: &str) -> Result<MakeRustlsConnect, StoreError> {
    let certs = match ca_file {
        Some(path) => {
            use rustls_pki_types::pem::PemObject;
            let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| {
                    StoreError::Config(format!("PostgreSQL CA file {}: {e}", path.display()))
                })?;
            if certs.is_empty() {
                return Err(StoreError::Config(format!(
                    "PostgreSQL CA file {} holds no certificate",
                    path.display()
                )));
            }
            certs
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            if found.certs.is_empty() {
                return Err(StoreError::Config(format!(
                    "sslmode={mode}: no CA certificates found on this system to verify the \
                     server with; give a CA file"
                )));
            }
            found.certs
        }
    };
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(StoreError::Config(format!(
            "sslmode={mode}: none of the CA certificates is usable"
        )));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| StoreError::Config(format!("TLS set-up: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// Drops a connection on a thread of its own: the client closes it by blocking on its
/// own runtime, which panics on a thread that runs an async runtime already (a store
/// may well be dropped on one).
pub(crate) fn drop_off_thread<T: Send + 'static>(value: Option<T>) {
    if let Some(value) = value {
        let _ = std::thread::spawn(move || drop(value)).join();
    }
}

/// The migration that introduced authenticated erasures (a 1-based version).
const ERASURES_VERSION: usize = 3;

/// In the upgrade's own transaction, binds the tombstones written before erasures were
/// authenticated to one `legacy` event — once, and only when `key` authenticates the
/// log's newest checkpoint (the process upgrading holds the log's key). Otherwise they
/// stay marked `erasure = 0`, which verification reports: no later start binds them, so
/// a tombstone forged after the upgrade can never be laundered this way.
fn bind_legacy(tx: &mut postgres::Transaction<'_>, key: &[u8]) -> Result<(), StoreError> {
    let newest = tx.query_opt(
        "SELECT seq, hash, mac FROM audit_checkpoints ORDER BY seq DESC LIMIT 1",
        &[],
    )?;
    if let Some(row) = newest {
        let seq: i64 = row.try_get(0)?;
        let hash: String = row.try_get(1)?;
        let mac: String = row.try_get(2)?;
        let seq = u64::try_from(seq).map_err(|_| StoreError::OutOfRange("seq"))?;
        if !crate::store::checkpoint_mac_ok(key, seq, &hash, &mac) {
            return Ok(());
        }
    }
    let rows = tx.query(
        "SELECT n, writer, seq, hash, erased_at, erased_reason FROM audit_records \
         WHERE erasure = 0 AND erased_at IS NOT NULL ORDER BY n",
        &[],
    )?;
    if rows.is_empty() {
        return Ok(());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let event: i64 = tx
        .query_one(
            "INSERT INTO audit_erasures (time_ms, reason, selector, mac) \
             VALUES ($1, 'legacy', $2, '') RETURNING n",
            &[&now, &crate::store::LEGACY_SELECTOR],
        )?
        .try_get(0)?;
    let n = u64::try_from(event).map_err(|_| StoreError::OutOfRange("erasure"))?;
    let mac = crate::store::erasure_mac(key, n, now, "legacy", crate::store::LEGACY_SELECTOR);
    tx.execute(
        "UPDATE audit_erasures SET mac = $1 WHERE n = $2",
        &[&mac, &event],
    )?;
    for row in &rows {
        let record: i64 = row.try_get(0)?;
        let writer: String = row.try_get(1)?;
        let seq: i64 = row.try_get(2)?;
        let hash: String = row.try_get(3)?;
        let at: i64 = row.try_get(4)?;
        let why: Option<String> = row.try_get(5)?;
        let seq = u64::try_from(seq).map_err(|_| StoreError::OutOfRange("seq"))?;
        let mac = crate::store::tombstone_mac(
            key,
            n,
            &writer,
            seq,
            &hash,
            at,
            why.as_deref().unwrap_or_default(),
        );
        tx.execute(
            "UPDATE audit_records SET erasure = $1, erasure_mac = $2 WHERE n = $3",
            &[&event, &mac, &record],
        )?;
    }
    Ok(())
}

fn migrate(client: &mut Client, key: &[u8]) -> Result<(), StoreError> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS audit_migrations (
             version INTEGER PRIMARY KEY,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )?;
    let done: i32 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM audit_migrations",
            &[],
        )?
        .try_get(0)?;
    let done = usize::try_from(done).unwrap_or(0);
    if done > MIGRATIONS.len() {
        return Err(StoreError::Corrupt(format!(
            "the audit database has schema version {done}, newer than this Sidelight knows ({})",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done) {
        tx.batch_execute(sql)?;
        let version = i32::try_from(i + 1).map_err(|_| StoreError::OutOfRange("version"))?;
        tx.execute(
            "INSERT INTO audit_migrations (version) VALUES ($1)",
            &[&version],
        )?;
        if i + 1 == ERASURES_VERSION {
            bind_legacy(&mut tx, key)?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// The connection settings of `url` (never repeated in an error: it may carry a
/// password) and the TLS connector its `sslmode` asks for.
pub(crate) fn settings(
    url: &str,
    config: &PostgresConfig,
) -> Result<(postgres::Config, Option<MakeRustlsConnect>), StoreError> {
    let mut pg = postgres::Config::from_str(url).map_err(|e| {
        StoreError::Config(format!(
            "invalid PostgreSQL connection URL: {}",
            postgres_describe(&e)
        ))
    })?;
    let tls = match pg.get_ssl_mode() {
        SslMode::Disable => None,
        // libpq's default, and what a URL without `sslmode` means: TLS when the server
        // offers it, plain text when it does not (which the caller can tell with
        // `fell_back_to_plain` and should say). Unlike libpq, a certificate that cannot
        // be verified is refused, not used unverified or dropped for plain text.
        SslMode::Prefer => Some(tls_connector(config.ca_file.as_deref(), "prefer")?),
        _ => Some(tls_connector(config.ca_file.as_deref(), "require")?),
    };
    if pg.get_connect_timeout().is_none() {
        pg.connect_timeout(config.connect_timeout);
    }
    if pg.get_application_name().is_none() {
        pg.application_name("sidelight-audit");
    }
    Ok((pg, tls))
}

/// Whether `client`, connected under `pg`'s settings, fell back to plain text: the URL
/// said `sslmode=prefer` (or nothing) and the server does not offer TLS.
pub(crate) fn fell_back_to_plain(
    pg: &postgres::Config,
    client: &mut Client,
) -> Result<bool, StoreError> {
    if pg.get_ssl_mode() != SslMode::Prefer {
        return Ok(false);
    }
    let ssl: Option<bool> = client
        .query_opt(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )?
        .map(|row| row.try_get(0))
        .transpose()?;
    Ok(ssl != Some(true))
}

/// Connects with `pg` (over TLS when `tls` is given), with durable commits and a
/// bounded lock wait whatever the server's or role's defaults, and runs the migrations.
pub(crate) fn connect_client(
    pg: &postgres::Config,
    tls: Option<&MakeRustlsConnect>,
    lock_timeout: Duration,
    key: &[u8],
) -> Result<Client, StoreError> {
    let connected = match tls {
        Some(tls) => pg.connect(tls.clone()),
        None => pg.connect(NoTls),
    };
    let mut client = match connected {
        Ok(client) => client,
        // The client's error names the TLS handshake in its text only.
        Err(e) if pg.get_ssl_mode() == SslMode::Prefer && e.to_string().contains("TLS") => {
            return Err(StoreError::Config(format!(
                "sslmode=prefer (what a URL without sslmode means): the server offers TLS \
                 but the connection could not be secured ({}); give the CA file that \
                 vouches for its certificate, or write sslmode=disable in the URL to \
                 connect in plain text",
                postgres_describe(&e)
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let lock_ms = lock_timeout.as_millis().max(1);
    client.batch_execute(&format!(
        "SET synchronous_commit = on; SET lock_timeout = {lock_ms}; \
         SET client_min_messages = warning"
    ))?;
    migrate(&mut client, key)?;
    Ok(client)
}
