//! What the replicas of a fleet share besides the audit log, in the same PostgreSQL
//! database:
//!
//! - **Training rows** (`fleet_training_rows`): every replica appends the consented
//!   feature rows and model outputs of its traffic, one database row per request,
//!   sealed with the audit keys like a record's fields, with the subject's pseudonym,
//!   the route and the time. The trainer reads the newest of them and prunes the rest.
//! - **Surrogates** (`fleet_surrogates`): each version the trainer trained, accepted or
//!   not, with fleet-wide version numbers per route; accepted ones carry the serialised
//!   surrogate, which every replica loads.
//! - **Erasures** (`fleet_erasures`): the subjects erased through any replica, which the
//!   others read to drop the subject from their memory.
//! - **Monitoring summaries** (`fleet_monitor`): each replica's latest counts and sums
//!   per route (one sealed row per replica and route), which every replica merges into
//!   the fleet's fairness, attribution and drift figures; and the fleet's drift
//!   reference per route (`fleet_reference`), which every replica counts drift against.
//! - **Trainer election**: a session advisory lock per route
//!   ([`FleetStore::try_lead`]); the holder trains, and the lock goes with its session.
//!   A second lock per route ([`FleetStore::try_lead_alerts`]) picks the one replica that
//!   sends the route's alerts.
//!
//! Like [`PostgresStore`](crate::PostgresStore), the client is blocking; a lost
//! connection fails the call with kind `unavailable` and the next call reconnects.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

use postgres::Client;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::common::{sql_limit, to_i64, to_u64};
use crate::pg::{PostgresConfig, connect_client, drop_off_thread};
use crate::store::StoreError;

/// The field name sealed training payloads are bound to.
const TRAINING_FIELD: &str = "training_rows";
const MONITOR_FIELD: &str = "monitor_summary";
const REFERENCE_FIELD: &str = "monitor_reference";
/// How a sealed monitoring summary starts in its text column (a clear one is JSON).
const SEALED_SUMMARY: &str = "sealed:";

/// The requests a training read looks at, at most: one row each at worst.
const MAX_BATCHES: usize = 1_000_000;

/// One request's training rows, as a replica contributes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainingBatch {
    /// The route.
    pub route: String,
    /// Unix milliseconds.
    pub time_ms: i64,
    /// The pseudonymous subject the rows came from.
    pub subject: Option<String>,
    /// How many feature rows `payload` holds.
    pub rows: u64,
    /// The rows and outputs, in whatever encoding the caller reads back (never logged;
    /// sealed at rest when the store seals fields).
    pub payload: Vec<u8>,
}

/// One surrogate version trained for a route, as published to the fleet.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetSurrogate {
    /// Fleet-wide version number of the route.
    pub version: u64,
    /// Unix seconds.
    pub trained_at: u64,
    /// Rows trained on.
    pub rows: u64,
    /// Held-out R².
    pub r2: f64,
    /// Held-out mean absolute error.
    pub mae: f64,
    /// Held-out class agreement, for classifiers.
    pub agreement: Option<f64>,
    /// Whether it passed the fidelity gate.
    pub accepted: bool,
    /// Why it was accepted or not.
    pub reason: String,
    /// The serialised surrogate; `None` for a version that was not accepted.
    pub surrogate: Option<String>,
    /// The writer (replica) that trained it.
    pub writer: String,
    /// The keyed digests ([`Keys::subject_digest`](crate::Keys::subject_digest), as
    /// signed 64-bit numbers) of the subjects its training rows came from; `None`: not
    /// known (published by an earlier release). Erasing one of them retires it.
    pub subjects: Option<Vec<i64>>,
}

/// What became of a version given to [`FleetStore::publish_surrogate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// Published, and replicas will load it if it was accepted.
    Published,
    /// Published without its surrogate: a subject its rows came from was erased since
    /// they were read.
    Retired,
    /// Another trainer published that version number first; nothing was written.
    Taken,
}

/// Serialises publishing surrogates with erasures (a transaction-level advisory lock,
/// in the same bigint key space as the others; see `pg::MIGRATION_LOCK`).
const SURROGATES_LOCK: i64 = 0x5349_4445_4c53_5552; // "SIDELSUR"

/// What a retired version's reason gains.
pub(crate) const RETIRED_REASON: &str =
    " (retired: trained on rows of a subject erased since; its surrogate is deleted)";

struct FleetSession {
    client: Client,
    /// Routes whose trainer lock this session holds.
    leading: HashSet<String>,
}

/// The fleet's shared state; see the module documentation. Made by
/// [`PostgresStore::fleet`](crate::PostgresStore::fleet).
pub struct FleetStore {
    pg: postgres::Config,
    tls: Option<MakeRustlsConnect>,
    writer: String,
    config: PostgresConfig,
    session: Mutex<Option<FleetSession>>,
}

impl std::fmt::Debug for FleetStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the connection settings: they may hold a password.
        f.debug_struct("FleetStore")
            .field("writer", &self.writer)
            .finish_non_exhaustive()
    }
}

impl Drop for FleetStore {
    fn drop(&mut self) {
        drop_off_thread(
            self.session
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
    }
}

impl FleetStore {
    pub(crate) fn new(
        pg: postgres::Config,
        tls: Option<MakeRustlsConnect>,
        writer: String,
        config: PostgresConfig,
    ) -> Self {
        FleetStore {
            pg,
            tls,
            writer,
            config,
            session: Mutex::new(None),
        }
    }

    /// Another connection to the same database (a trainer's election needs one of its
    /// own: the lock lives as long as the session).
    pub fn another(&self) -> FleetStore {
        FleetStore::new(
            self.pg.clone(),
            self.tls.clone(),
            self.writer.clone(),
            self.config.clone(),
        )
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut FleetSession) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut guard = self.session.lock().unwrap_or_else(PoisonError::into_inner);
        if guard.as_ref().is_none_or(|s| s.client.is_closed()) {
            *guard = None;
            let client = connect_client(
                &self.pg,
                self.tls.as_ref(),
                self.config.lock_timeout,
                self.config.keys.checkpoint_key(),
            )?;
            *guard = Some(FleetSession {
                client,
                leading: HashSet::new(),
            });
        }
        let Some(session) = guard.as_mut() else {
            return Err(StoreError::Corrupt("no database session".to_owned()));
        };
        let result = f(session);
        if result.is_err() && session.client.is_closed() {
            // The session's locks went with it.
            *guard = None;
        }
        result
    }

    /// Whether this connection holds the trainer lock of `route`, taking it if it is
    /// free. The lock is held until the session ends (the process stops, or the
    /// connection is lost).
    pub fn try_lead(&self, route: &str) -> Result<bool, StoreError> {
        self.try_lock(&format!("sidelight-trainer:{route}"))
    }

    /// Whether this connection holds the alert lock of `route` (taking it if free): the
    /// one replica that sends the route's alerts, so that they fire once per fleet.
    pub fn try_lead_alerts(&self, route: &str) -> Result<bool, StoreError> {
        self.try_lock(&format!("sidelight-alerts:{route}"))
    }

    fn try_lock(&self, key: &str) -> Result<bool, StoreError> {
        self.with(|s| {
            if s.leading.contains(key) {
                // A round trip: a session the server has dropped has lost its lock.
                s.client.batch_execute("SELECT 1")?;
                return Ok(true);
            }
            let locked: bool = s
                .client
                .query_one(
                    "SELECT pg_try_advisory_lock(hashtextextended($1, 0))",
                    &[&key],
                )?
                .try_get(0)?;
            if locked {
                s.leading.insert(key.to_owned());
            }
            Ok(locked)
        })
    }

    /// Seals `bytes` as field `field` of `context` with the active key, returning them
    /// with the key's id; as they are, with `None`, when the store does not seal fields.
    fn seal_field(
        &self,
        context: &str,
        field: &str,
        bytes: &[u8],
    ) -> Result<(Vec<u8>, Option<String>), StoreError> {
        if !self.config.encrypt {
            return Ok((bytes.to_vec(), None));
        }
        let keys = &self.config.keys;
        let sealed = keys
            .seal(context, field, bytes)
            .ok_or_else(|| StoreError::Seal(context.to_owned()))?;
        Ok((sealed, Some(keys.active_id().to_owned())))
    }

    /// Opens a field sealed under `key_id` for `context` (a clear one, `None`, as is).
    fn open_field(
        &self,
        key_id: Option<String>,
        context: &str,
        field: &'static str,
        stored: Vec<u8>,
    ) -> Result<Vec<u8>, StoreError> {
        match key_id {
            Some(key) => self
                .config
                .keys
                .open(&key, context, field, &stored)
                .map_err(|source| StoreError::Open {
                    id: context.to_owned(),
                    field,
                    source,
                }),
            None => Ok(stored),
        }
    }

    /// Seals a replica's monitoring summary (its level counts name feature values) as
    /// text: `sealed:<key id>:<base64>`; clear when the store does not seal fields.
    fn seal_summary(&self, route: &str, writer: &str, summary: &str) -> Result<String, StoreError> {
        let context = format!("{route}\0{writer}");
        match self.seal_field(&context, MONITOR_FIELD, summary.as_bytes())? {
            (sealed, Some(key_id)) => {
                use base64::Engine as _;
                let text = base64::engine::general_purpose::STANDARD.encode(sealed);
                Ok(format!("{SEALED_SUMMARY}{key_id}:{text}"))
            }
            (_, None) => Ok(summary.to_owned()),
        }
    }

    fn open_summary(&self, route: &str, writer: &str, text: String) -> Result<String, StoreError> {
        let Some(rest) = text.strip_prefix(SEALED_SUMMARY) else {
            return Ok(text);
        };
        use base64::Engine as _;
        let context = format!("{route}\0{writer}");
        let corrupt =
            |why: &str| StoreError::Corrupt(format!("monitoring summary of {writer}: {why}"));
        let (key_id, body) = rest.split_once(':').ok_or_else(|| corrupt("no key id"))?;
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|_| corrupt("not base64"))?;
        let opened = self.open_field(Some(key_id.to_owned()), &context, MONITOR_FIELD, sealed)?;
        String::from_utf8(opened).map_err(|_| corrupt("not UTF-8"))
    }

    /// Publishes this replica's monitoring summary of `route` (aggregates: counts and
    /// sums, never a row; sealed when the store seals fields), replacing its previous
    /// one; summaries not renewed for a day (a replica or a route gone) are dropped on
    /// the way.
    pub fn publish_monitor(
        &self,
        route: &str,
        time_ms: i64,
        summary: &str,
    ) -> Result<(), StoreError> {
        let summary = self.seal_summary(route, &self.writer, summary)?;
        self.with(|s| {
            let mut tx = s.client.transaction()?;
            tx.execute(
                "INSERT INTO fleet_monitor (route, writer, time_ms, summary) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (route, writer) DO UPDATE SET time_ms = EXCLUDED.time_ms, summary = EXCLUDED.summary",
                &[&route, &self.writer, &time_ms, &summary],
            )?;
            // Any route's: a route removed from every config leaves nothing behind.
            tx.execute(
                "DELETE FROM fleet_monitor WHERE time_ms < $1",
                &[&time_ms.saturating_sub(86_400_000)],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    /// The other replicas' monitoring summaries of `route` published at `since_ms` or
    /// later, as (writer, summary).
    pub fn monitor_summaries(
        &self,
        route: &str,
        since_ms: i64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        self.with(|s| {
            let rows = s.client.query(
                "SELECT writer, summary FROM fleet_monitor \
                 WHERE route = $1 AND time_ms >= $2 AND writer <> $3 ORDER BY writer",
                &[&route, &since_ms, &self.writer],
            )?;
            rows.iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect::<Result<Vec<(String, String)>, StoreError>>()
        })?
        .into_iter()
        .map(|(writer, text)| {
            let summary = self.open_summary(route, &writer, text)?;
            Ok((writer, summary))
        })
        .collect()
    }

    /// Offers `body` (a serialised drift reference named `id`) as the fleet's drift
    /// reference of `route`: it becomes it when the route has none or one of a lower
    /// `rank`. Returns the id of the fleet's reference afterwards.
    pub fn offer_reference(
        &self,
        route: &str,
        id: &str,
        rank: i64,
        time_ms: i64,
        body: &[u8],
    ) -> Result<String, StoreError> {
        let (stored, key_id) = self.seal_field(&format!("{route}\0{id}"), REFERENCE_FIELD, body)?;
        self.with(|s| {
            let mut tx = s.client.transaction()?;
            tx.execute(
                "INSERT INTO fleet_reference (route, id, rank, time_ms, key_id, body) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (route) DO UPDATE SET id = EXCLUDED.id, rank = EXCLUDED.rank, \
                 time_ms = EXCLUDED.time_ms, key_id = EXCLUDED.key_id, body = EXCLUDED.body \
                 WHERE fleet_reference.rank < EXCLUDED.rank",
                &[&route, &id, &rank, &time_ms, &key_id, &stored],
            )?;
            let row = tx.query_one("SELECT id FROM fleet_reference WHERE route = $1", &[&route])?;
            tx.commit()?;
            Ok(row.try_get(0)?)
        })
    }

    /// The id of the fleet's drift reference of `route`, if it has one.
    pub fn reference_id(&self, route: &str) -> Result<Option<String>, StoreError> {
        self.with(|s| {
            Ok(s.client
                .query_opt("SELECT id FROM fleet_reference WHERE route = $1", &[&route])?
                .map(|r| r.try_get(0))
                .transpose()?)
        })
    }

    /// The fleet's drift reference of `route`, opened: (id, body).
    pub fn reference(&self, route: &str) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        let row = self.with(|s| {
            Ok(s.client.query_opt(
                "SELECT id, key_id, body FROM fleet_reference WHERE route = $1",
                &[&route],
            )?)
        })?;
        let Some(row) = row else {
            return Ok(None);
        };
        let id: String = row.try_get(0)?;
        let key_id: Option<String> = row.try_get(1)?;
        let stored: Vec<u8> = row.try_get(2)?;
        let body = self.open_field(key_id, &format!("{route}\0{id}"), REFERENCE_FIELD, stored)?;
        Ok(Some((id, body)))
    }

    /// Withdraws reference `id` of `route` if it is still the fleet's (the replica that
    /// made it dropped it: a subject its rows came from was erased).
    pub fn retire_reference(&self, route: &str, id: &str) -> Result<(), StoreError> {
        self.with(|s| {
            s.client.execute(
                "DELETE FROM fleet_reference WHERE route = $1 AND id = $2",
                &[&route, &id],
            )?;
            Ok(())
        })
    }

    /// Appends training rows, sealed with the active key when the store seals fields.
    pub fn append_training(&self, batches: &[TrainingBatch]) -> Result<(), StoreError> {
        if batches.is_empty() {
            return Ok(());
        }
        let mut sealed = Vec::with_capacity(batches.len());
        for b in batches {
            let id = format!("{}:{}", self.writer, uuid_like());
            let (payload, key_id) = self.seal_field(&id, TRAINING_FIELD, &b.payload)?;
            sealed.push((id, payload, key_id, to_i64(b.rows, "rows")?));
        }
        self.with(|s| {
            let mut tx = s.client.transaction()?;
            let insert = tx.prepare(
                "INSERT INTO fleet_training_rows (id, route, time_ms, subject, rows, key_id, payload) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )?;
            for (b, (id, payload, key_id, rows)) in batches.iter().zip(&sealed) {
                tx.execute(
                    &insert,
                    &[id, &b.route, &b.time_ms, &b.subject, rows, key_id, payload],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    /// The newest batches of `route` that together hold at least `rows` rows (or all
    /// there are), oldest first, opened, with the position of the newest (0 when
    /// none): what the trainer trains on.
    pub fn training_window(
        &self,
        route: &str,
        rows: usize,
    ) -> Result<(Vec<TrainingBatch>, u64), StoreError> {
        let limit = sql_limit(rows.clamp(1, MAX_BATCHES))?;
        let found = self.with(|s| {
            Ok(s.client.query(
                "SELECT n, id, time_ms, subject, rows, key_id, payload FROM ( \
                     SELECT *, (SUM(rows) OVER (ORDER BY n DESC) - rows)::BIGINT AS before \
                     FROM fleet_training_rows WHERE route = $1 ORDER BY n DESC LIMIT $2 \
                 ) newest WHERE before < $3 ORDER BY n",
                &[&route, &limit, &limit],
            )?)
        })?;
        let mut out = Vec::with_capacity(found.len());
        let mut newest = 0;
        for row in &found {
            newest = to_u64(row.try_get(0)?, "n")?;
            let id: String = row.try_get(1)?;
            let key_id: Option<String> = row.try_get(5)?;
            let stored: Vec<u8> = row.try_get(6)?;
            let payload = self.open_field(key_id, &id, TRAINING_FIELD, stored)?;
            out.push(TrainingBatch {
                route: route.to_owned(),
                time_ms: row.try_get(2)?,
                subject: row.try_get(3)?,
                rows: to_u64(row.try_get(4)?, "rows")?,
                payload,
            });
        }
        Ok((out, newest))
    }

    /// Rows of `route` appended after position `after`, and the newest position (`after`
    /// when there are none): how much new traffic the fleet has seen.
    pub fn training_rows_after(&self, route: &str, after: u64) -> Result<(u64, u64), StoreError> {
        let after_sql = to_i64(after, "after")?;
        let row = self.with(|s| {
            Ok(s.client.query_one(
                "SELECT COALESCE(SUM(rows), 0)::BIGINT, COALESCE(MAX(n), $2) \
                 FROM fleet_training_rows WHERE route = $1 AND n > $2",
                &[&route, &after_sql],
            )?)
        })?;
        Ok((
            to_u64(row.try_get(0)?, "rows")?,
            to_u64(row.try_get(1)?, "n")?,
        ))
    }

    /// Deletes the batches of `route` older than the newest `keep_rows` rows; returns
    /// how many batches went.
    pub fn prune_training(&self, route: &str, keep_rows: usize) -> Result<u64, StoreError> {
        let keep = sql_limit(keep_rows.max(1))?;
        self.with(|s| {
            Ok(s.client.execute(
                "DELETE FROM fleet_training_rows WHERE route = $1 AND n < ( \
                     SELECT COALESCE(MIN(n), 0) FROM ( \
                         SELECT n, (SUM(rows) OVER (ORDER BY n DESC) - rows)::BIGINT AS before \
                         FROM fleet_training_rows WHERE route = $1 \
                     ) newest WHERE before < $2)",
                &[&route, &keep],
            )?)
        })
    }

    /// Deletes a subject's training rows, records the erasure for the other replicas,
    /// and retires the published surrogates trained on the subject's rows, in one
    /// transaction. Returns how many batches went.
    pub fn erase_subject(&self, subject: &str, now_ms: i64) -> Result<u64, StoreError> {
        // The digest's bits as PostgreSQL's signed BIGINT.
        let digest = self.config.keys.subject_digest(subject) as i64;
        self.with(|s| {
            let mut tx = s.client.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SURROGATES_LOCK])?;
            let n = tx.execute(
                "DELETE FROM fleet_training_rows WHERE subject = $1",
                &[&subject],
            )?;
            tx.execute(
                "INSERT INTO fleet_erasures (subject, time_ms, writer) VALUES ($1, $2, $3)",
                &[&subject, &now_ms, &self.writer],
            )?;
            // Every published surrogate that learnt from the subject's rows (or may have:
            // one of an earlier release lists none) loses its serialised form, so that no
            // replica loads it again, now or after a restart.
            tx.execute(
                "UPDATE fleet_surrogates SET surrogate = NULL, reason = reason || $2 \
                 WHERE surrogate IS NOT NULL AND (subjects IS NULL OR $1 = ANY(subjects))",
                &[&digest, &RETIRED_REASON],
            )?;
            // The drift references go too: a replica cannot tell whose rows another's
            // came from. Each replica made its own against its own subjects and offers it
            // again if the subject was not among them.
            tx.execute("DELETE FROM fleet_reference", &[])?;
            tx.commit()?;
            Ok(n)
        })
    }

    /// Deletes training rows older than `cutoff_ms` (the retention window). Replicas
    /// running it at once delete each row once.
    pub fn erase_training_before(&self, cutoff_ms: i64) -> Result<u64, StoreError> {
        self.with(|s| {
            Ok(s.client.execute(
                "DELETE FROM fleet_training_rows WHERE time_ms < $1",
                &[&cutoff_ms],
            )?)
        })
    }

    /// The subjects erased after position `after`, each with the writer (replica) that
    /// erased it, and the newest position. With `None`, only the newest position: a
    /// replica that just started holds nobody's rows yet.
    pub fn erasures_after(
        &self,
        after: Option<u64>,
    ) -> Result<(Vec<(String, String)>, u64), StoreError> {
        self.with(|s| match after {
            None => {
                let newest: i64 = s
                    .client
                    .query_one("SELECT COALESCE(MAX(n), 0) FROM fleet_erasures", &[])?
                    .try_get(0)?;
                Ok((Vec::new(), to_u64(newest, "n")?))
            }
            Some(after) => {
                let rows = s.client.query(
                    "SELECT n, subject, writer FROM fleet_erasures WHERE n > $1 ORDER BY n",
                    &[&to_i64(after, "after")?],
                )?;
                let mut newest = after;
                let mut subjects = Vec::with_capacity(rows.len());
                for row in &rows {
                    newest = to_u64(row.try_get(0)?, "n")?;
                    subjects.push((row.try_get(1)?, row.try_get(2)?));
                }
                Ok((subjects, newest))
            }
        })
    }

    /// The highest version published for `route` (0 when none).
    pub fn latest_version(&self, route: &str) -> Result<u64, StoreError> {
        self.with(|s| {
            let v: i64 = s
                .client
                .query_one(
                    "SELECT COALESCE(MAX(version), 0) FROM fleet_surrogates WHERE route = $1",
                    &[&route],
                )?
                .try_get(0)?;
            to_u64(v, "version")
        })
    }

    /// Publishes a version of `route`. A version whose training rows came from a subject
    /// erased since `rows_taken_ms` (less a minute for clocks apart) is published
    /// retired, without its surrogate. Serialised with erasures, so that an erasure either
    /// sees the version (and retires it) or the version sees the erasure.
    pub fn publish_surrogate(
        &self,
        route: &str,
        surrogate: &FleetSurrogate,
        rows_taken_ms: i64,
    ) -> Result<Published, StoreError> {
        let version = to_i64(surrogate.version, "version")?;
        let trained_at = to_i64(surrogate.trained_at, "trained_at")?;
        let rows = to_i64(surrogate.rows, "rows")?;
        let keys = &self.config.keys;
        self.with(|s| {
            let mut tx = s.client.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SURROGATES_LOCK])?;
            let mut text = surrogate.surrogate.clone();
            let mut reason = surrogate.reason.clone();
            if text.is_some() {
                let erased = tx.query(
                    "SELECT DISTINCT subject FROM fleet_erasures WHERE time_ms >= $1",
                    &[&rows_taken_ms.saturating_sub(60_000)],
                )?;
                let saw = |subject: &str| {
                    let digest = keys.subject_digest(subject) as i64;
                    surrogate
                        .subjects
                        .as_ref()
                        .is_none_or(|s| s.contains(&digest))
                };
                for row in &erased {
                    let subject: String = row.try_get(0)?;
                    if saw(&subject) {
                        text = None;
                        reason.push_str(RETIRED_REASON);
                        break;
                    }
                }
            }
            let retired = surrogate.surrogate.is_some() && text.is_none();
            let n = tx.execute(
                "INSERT INTO fleet_surrogates (route, version, trained_at, rows, r2, mae, \
                 agreement, accepted, reason, surrogate, writer, subjects) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT DO NOTHING",
                &[
                    &route,
                    &version,
                    &trained_at,
                    &rows,
                    &surrogate.r2,
                    &surrogate.mae,
                    &surrogate.agreement,
                    &surrogate.accepted,
                    &reason,
                    &text,
                    &surrogate.writer,
                    &surrogate.subjects,
                ],
            )?;
            tx.commit()?;
            Ok(match (n > 0, retired) {
                (false, _) => Published::Taken,
                (true, false) => Published::Published,
                (true, true) => Published::Retired,
            })
        })
    }

    /// The versions of `route` above `after`, oldest first, at most `limit`; only the
    /// newest accepted one of them carries its surrogate (the others are history).
    pub fn surrogates_after(
        &self,
        route: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<FleetSurrogate>, StoreError> {
        let after = to_i64(after, "after")?;
        let limit = sql_limit(limit)?;
        let rows = self.with(|s| {
            Ok(s.client.query(
                "SELECT version, trained_at, rows, r2, mae, agreement, accepted, reason, \
                 CASE WHEN version = (SELECT MAX(version) FROM fleet_surrogates \
                     WHERE route = $1 AND accepted) THEN surrogate END, writer, subjects \
                 FROM (SELECT * FROM fleet_surrogates WHERE route = $1 AND version > $2 \
                     ORDER BY version DESC LIMIT $3) newest ORDER BY version",
                &[&route, &after, &limit],
            )?)
        })?;
        rows.iter()
            .map(|r| {
                Ok(FleetSurrogate {
                    version: to_u64(r.try_get(0)?, "version")?,
                    trained_at: to_u64(r.try_get(1)?, "trained_at")?,
                    rows: to_u64(r.try_get(2)?, "rows")?,
                    r2: r.try_get(3)?,
                    mae: r.try_get(4)?,
                    agreement: r.try_get(5)?,
                    accepted: r.try_get(6)?,
                    reason: r.try_get(7)?,
                    surrogate: r.try_get(8)?,
                    writer: r.try_get(9)?,
                    subjects: r.try_get(10)?,
                })
            })
            .collect()
    }
}

/// A random 128-bit id in hex: training rows' ids only bind their sealed bytes to them.
fn uuid_like() -> String {
    let mut bytes = [0u8; 16];
    aes_gcm::aead::rand_core::RngCore::fill_bytes(&mut aes_gcm::aead::OsRng, &mut bytes);
    hex::encode(bytes)
}
