//! `sidelight audit`: work with the audit log.
//!
//! - `verify` walks the hash chain and checks the HMAC checkpoints;
//! - `export` writes records as JSON lines, or feature rows as CSV for `surrogate fit`;
//! - `erase` forgets a subject, offline on the database or through a running proxy;
//! - `subject` prints the pseudonym of a raw identifier;
//! - `rotate-key` adds a new encryption key, re-seals records under it and retires keys
//!   no record uses any longer.
//!
//! Exit status (sysexits): 0 done; 1 the log is broken (`verify`) or a step failed (a
//! call to a running proxy, a locked database); 64 the arguments are wrong; 65 an input
//! is not usable (not an audit log, a wrong or malformed key); 66 an input is missing
//! (the database or the key file); 73 an output file (`--out`, the key file) cannot be
//! written; 74 writing the output failed part-way.
//!
//! Nothing here prints key bytes, raw subject identifiers or payload values to stderr;
//! only `export` writes records, and only to its output.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use sidelight_audit::{
    AuditStore, CsvExport, Erasure, ExportError, KeyError, Keys, PostgresConfig, PostgresStore,
    RecordQuery, SqliteConfig, SqliteStore, StoreError, VerifyError, VerifyReport, WitnessError,
    WitnessLine, check_expected, check_witness, checkpoint_mac_ok, read_witness, verify,
    write_jsonl,
};
use sidelight_config::AUDIT_KEY_VARIABLE;

/// A step failed (a remote call, a locked database), or `verify` found the log broken.
const EXIT_FAILED: u8 = 1;
/// sysexits' EX_USAGE: the arguments are wrong.
const EXIT_USAGE: u8 = 64;
/// sysexits' EX_DATAERR: the input exists but is not usable.
const EXIT_DATA: u8 = 65;
/// sysexits' EX_NOINPUT: an input file is missing.
const EXIT_NO_INPUT: u8 = 66;
/// sysexits' EX_CANTCREAT: an output file cannot be written.
const EXIT_CANT_CREATE: u8 = 73;
/// sysexits' EX_IOERR: writing the output failed part-way.
const EXIT_IO: u8 = 74;

/// Records read per query page while exporting.
const EXPORT_PAGE: usize = 1000;
/// Records re-sealed per transaction by `rotate-key`.
const RESEAL_BATCH: usize = 500;
/// How often `rotate-key` retries a batch the database refused because it was locked.
const LOCKED_RETRIES: u32 = 20;

#[derive(Args)]
pub(crate) struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain and the checkpoints; name the first broken record.
    ///
    /// Exit status: 0 intact, 1 broken (the report names the first broken record), 65
    /// the key does not fit the log (wrong master key, or an encryption key that does
    /// not open the records or is missing from the keyring) or the file is not an audit
    /// log, 66 the database or the key file is missing.
    ///
    /// With a PostgreSQL log (--url or --url-file), one line per writer (replica) and a
    /// total; no writer is locked, so it runs beside the proxies.
    ///
    /// The log is read in one snapshot, so it runs beside a proxy that keeps writing:
    /// records appended meanwhile are counted, not reported as broken. Every erasure
    /// tombstone must be bound to an authenticated erasure, and every review state to a
    /// chained review decision. A tail deleted together with its checkpoints is found
    /// only with --witness (the file `audit.witness` publishes to) or --expect-seq.
    Verify(VerifyArgs),
    /// Write records as JSON lines, or feature rows as CSV for `sidelight surrogate fit`.
    ///
    /// Sealed fields are opened with the key, so the output holds personal data in the
    /// clear: keep it as safe as the database. Filters combine (all must match). A
    /// summary (records read, rows written, records skipped) goes to stderr.
    ///
    /// CSV: one row per feature row, with the feature names of the first exported record
    /// as columns and the model's output as `prediction` (`prediction_0`, … for several
    /// outputs), so that `sidelight surrogate fit --data FILE --target prediction`
    /// reads it as it is. Records without features (erased, consent `none`) or with
    /// other columns (another route) are skipped and counted: export one route at a
    /// time with --route.
    ///
    /// With a PostgreSQL log (--url or --url-file), the records of every writer.
    Export(ExportArgs),
    /// Forget a subject: remove the contents of every record of theirs.
    ///
    /// Payloads, features, outputs, attributions and texts go; digests and a tombstone
    /// stay, so `audit verify` still passes and counts the records as erased. The
    /// erasure is stored as an event authenticated with the audit key, which is
    /// therefore needed offline (--db) too.
    ///
    /// Give the subject as the pseudonym stored in the log (--subject ps_…) or as the
    /// raw identifier the proxy pseudonymised (--subject-id, e.g. the customer number
    /// from the "forget me" request); the pseudonym is then computed with the audit key
    /// and the identifier is never printed.
    ///
    /// Where: --admin URL asks a running proxy (its admin API), which erases the
    /// records AND drops the subject's rows from its in-memory training window, then
    /// retrains the affected surrogates. --db FILE works on the database directly,
    /// without a proxy; a proxy that is running keeps the subject's rows in its
    /// training window until it is erased through --admin too (or restarted).
    Erase(EraseArgs),
    /// Print the pseudonym (ps_…) the proxy stores for a raw subject identifier.
    ///
    /// The pseudonym is a keyed hash: it needs the audit key (--key-file or
    /// SIDELIGHT_AUDIT_KEY). Use it with `export --subject` or `erase --subject`.
    Subject(SubjectArgs),
    /// Add a new encryption key, re-seal the records under it, and retire old keys.
    ///
    /// Steps: (1) a fresh random key is added to the keyring in --key-file and made
    /// active; the file is rewritten atomically (mode 0600) as a keyring, keeping the
    /// old keys; (2) every record not sealed with the new key is re-sealed with it, in
    /// batches of 500; (3) with --retire, keys no record uses any longer are dropped
    /// from the file. The master key (checkpoints, pseudonyms) never changes.
    ///
    /// A running proxy keeps sealing new records with the key it started with until it
    /// is restarted, so the usual flow has three steps:
    ///
    /// 1. `sidelight audit rotate-key --db audit.db --key-file audit.key`
    ///
    /// 2. restart every proxy that writes audit.db, so that it loads the new key;
    ///
    /// 3. `sidelight audit rotate-key --db audit.db --key-file audit.key --reseal-only
    /// --retire` re-seals what the proxies wrote in between and drops the old keys.
    ///
    /// Use --retire only when no running proxy still seals with an old key: records it
    /// wrote after the retirement could not be opened any more. Backups of the database
    /// taken before the rotation need the old key file.
    RotateKey(RotateArgs),
}

#[derive(Args)]
struct VerifyArgs {
    /// The audit database (the `audit.path` of the proxy's config).
    #[arg(long, value_name = "FILE", required_unless_present_any = ["url", "url_file"])]
    db: Option<PathBuf>,
    /// A PostgreSQL audit log instead (the `audit.url` of the proxies' config): every
    /// writer's chain is verified, and each is reported. The URL may hold a password;
    /// --url-file keeps it out of the process list.
    #[arg(long, value_name = "URL", conflicts_with_all = ["db", "url_file"])]
    url: Option<String>,
    /// A file holding the PostgreSQL URL (as `audit.url_file`).
    #[arg(long, value_name = "FILE", conflicts_with = "db")]
    url_file: Option<PathBuf>,
    /// The audit key file: a hex master key, or a keyring (TOML). Without it,
    /// SIDELIGHT_AUDIT_KEY is used.
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// The witness file the proxy published its chain's heads to (`audit.witness`):
    /// every line must verify under the key, and the latest head of each writer must
    /// be in the log with the hash the witness saw. Names a cut tail (records deleted
    /// together with their checkpoints) or a rewritten history.
    #[arg(long, value_name = "FILE")]
    witness: Option<PathBuf>,
    /// A seq the log is known to have reached (from an earlier `verify`, a report, a
    /// witness kept elsewhere): fails when the log ends before it. `N` for a SQLite log,
    /// `WRITER=N` for a writer of a PostgreSQL log; repeatable.
    #[arg(long, value_name = "[WRITER=]N")]
    expect_seq: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// One JSON object per record and line: every field, payloads embedded as JSON.
    Jsonl,
    /// Feature rows with the prediction as the last column(s), for `surrogate fit`.
    Csv,
}

#[derive(Args)]
struct ExportArgs {
    /// The audit database (the `audit.path` of the proxy's config).
    #[arg(long, value_name = "FILE", required_unless_present_any = ["url", "url_file"])]
    db: Option<PathBuf>,
    /// A PostgreSQL audit log instead (the `audit.url` of the proxies' config): the
    /// records of every writer.
    #[arg(long, value_name = "URL", conflicts_with_all = ["db", "url_file"])]
    url: Option<String>,
    /// A file holding the PostgreSQL URL (as `audit.url_file`).
    #[arg(long, value_name = "FILE", conflicts_with = "db")]
    url_file: Option<PathBuf>,
    /// The audit key file: a hex master key, or a keyring (TOML). Without it,
    /// SIDELIGHT_AUDIT_KEY is used.
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// What to write.
    #[arg(long, value_enum)]
    format: Format,
    /// Only records of this route.
    #[arg(long, value_name = "ROUTE")]
    route: Option<String>,
    /// Only records of this pseudonymous subject (ps_…, as stored).
    #[arg(long, value_name = "KEY")]
    subject: Option<String>,
    /// Only records of the subject with this raw identifier (pseudonymised with the
    /// key; the identifier itself is not stored).
    #[arg(long, value_name = "RAW")]
    subject_id: Option<String>,
    /// Only records in this review state (e.g. `none`, `pending`, `approved`).
    #[arg(long, value_name = "STATE")]
    review_state: Option<String>,
    /// Only records at or after this time: RFC 3339 in UTC (2026-11-27T10:00:00Z, or a
    /// date, 2026-11-27) or unix milliseconds.
    #[arg(long, value_name = "TIME")]
    from: Option<String>,
    /// Only records before this time (exclusive): RFC 3339 in UTC or unix milliseconds.
    #[arg(long, value_name = "TIME")]
    to: Option<String>,
    /// Write here instead of stdout (created or truncated).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

#[derive(Args)]
struct EraseArgs {
    /// The subject's pseudonymous key, as stored in the log (ps_…).
    #[arg(long, value_name = "KEY")]
    subject: Option<String>,
    /// The subject's raw identifier (e.g. a customer number); its pseudonym is computed
    /// with the audit key. With --admin and no key at hand (no --key-file, no
    /// SIDELIGHT_AUDIT_KEY), the proxy pseudonymises it with its own key.
    #[arg(long, value_name = "RAW")]
    subject_id: Option<String>,
    /// Erase offline, directly in this audit database.
    #[arg(long, value_name = "FILE")]
    db: Option<PathBuf>,
    /// Erase through a running proxy's admin API (e.g. http://127.0.0.1:9100): the
    /// records and the subject's rows in its training window.
    #[arg(long, value_name = "URL")]
    admin: Option<String>,
    /// The audit key file (hex master key or keyring); without it, SIDELIGHT_AUDIT_KEY.
    /// Needed with --subject-id, and to check that --db belongs to the key.
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// How long to wait for the proxy's answer (--admin), in seconds.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    timeout: u64,
    /// With --admin: an admin-role token to call it with.
    #[command(flatten)]
    token: crate::token::AdminToken,
}

#[derive(Args)]
struct SubjectArgs {
    /// The raw identifier (e.g. a customer number).
    #[arg(long, value_name = "RAW")]
    id: String,
    /// The audit key file (hex master key or keyring); without it, SIDELIGHT_AUDIT_KEY.
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
}

#[derive(Args)]
struct RotateArgs {
    /// The audit database (the `audit.path` of the proxy's config).
    #[arg(long, value_name = "FILE")]
    db: PathBuf,
    /// The audit key file, rewritten as a keyring with the new key (required: the
    /// environment variable cannot be written back). A bare hex master key is fine;
    /// it becomes a keyring with the same master key.
    #[arg(long, value_name = "FILE")]
    key_file: PathBuf,
    /// The new key's id (letters, digits, '-', '_', '.'); default: k + the UTC time,
    /// like k20261127T101500.
    #[arg(long, value_name = "ID")]
    id: Option<String>,
    /// Add no key: only re-seal records not sealed with the active key (those a running
    /// proxy wrote with an old key before it was restarted).
    #[arg(long)]
    reseal_only: bool,
    /// Afterwards, drop from the key file the keys no record uses any longer. Only when
    /// no running proxy still seals with an old key.
    #[arg(long)]
    retire: bool,
}

/// Why a command stopped: an exit status and what to tell the user (nothing when it
/// has been told already).
pub(crate) struct Failure {
    pub(crate) code: u8,
    pub(crate) message: Option<String>,
}

impl Failure {
    pub(crate) fn new(code: u8, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: Some(message.into()),
        }
    }

    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self::new(EXIT_USAGE, message)
    }

    pub(crate) fn data(message: impl Into<String>) -> Self {
        Self::new(EXIT_DATA, message)
    }

    fn failed(message: impl Into<String>) -> Self {
        Self::new(EXIT_FAILED, message)
    }
}

type Outcome = Result<(), Failure>;

pub(crate) fn run(args: AuditArgs) -> ExitCode {
    let (name, outcome) = match args.command {
        AuditCommand::Verify(a) => ("verify", verify_db(&a)),
        AuditCommand::Export(a) => ("export", export(&a)),
        AuditCommand::Erase(a) => ("erase", erase(&a)),
        AuditCommand::Subject(a) => ("subject", subject(&a)),
        AuditCommand::RotateKey(a) => ("rotate-key", rotate_key(&a)),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if let Some(message) = failure.message {
                eprintln!("sidelight audit {name}: {message}");
            }
            ExitCode::from(failure.code)
        }
    }
}

// === keys and the store ===

/// Where the keys come from, for messages.
fn key_origin(key_file: Option<&Path>) -> String {
    key_file.map_or_else(
        || AUDIT_KEY_VARIABLE.to_owned(),
        |f| format!("the key file {}", f.display()),
    )
}

/// The keys from `key_file`, or without one from SIDELIGHT_AUDIT_KEY.
pub(crate) fn load_keys(key_file: Option<&Path>) -> Result<Keys, Failure> {
    let env = match key_file {
        Some(_) => None,
        None => std::env::var(AUDIT_KEY_VARIABLE).ok(),
    };
    Keys::load(key_file, env.as_deref(), AUDIT_KEY_VARIABLE).map_err(|error| match error {
        KeyError::Missing { .. } => Failure::usage(format!(
            "no audit key: give --key-file FILE or set {AUDIT_KEY_VARIABLE} (a hex master key or a keyring)"
        )),
        KeyError::Read { path, source } => Failure::new(
            EXIT_NO_INPUT,
            format!("--key-file {}: cannot read it: {source}", path.display()),
        ),
        KeyError::BadId(_) => Failure::data(format!("{}: {error}", key_origin(key_file))),
        // The other errors name the file or variable themselves.
        other => Failure::data(other.to_string()),
    })
}

/// Opens an existing audit database. Opening creates a missing one, so a file that is
/// not there is refused first.
pub(crate) fn open_store(db: &Path, keys: Keys) -> Result<SqliteStore, Failure> {
    if !db.is_file() {
        return Err(Failure::new(
            EXIT_NO_INPUT,
            format!("--db {}: no such file", db.display()),
        ));
    }
    SqliteStore::open(db, SqliteConfig::new(keys)).map_err(|error| {
        Failure::data(format!(
            "--db {} is not a usable audit log: {error}",
            db.display()
        ))
    })
}

/// Refuses a key whose master does not authenticate the log's checkpoints: pseudonyms
/// computed with it would not match, and a keyring written with it would not verify.
/// An empty log has no checkpoint and fits any key.
fn check_master(store: &SqliteStore, keys: &Keys, origin: &str, db: &Path) -> Outcome {
    let checkpoints = store.checkpoints().map_err(|e| store_failure(&e, db))?;
    let key = keys.checkpoint_key();
    let fits = |c: &sidelight_audit::Checkpoint| checkpoint_mac_ok(key, c.seq, &c.hash, &c.mac);
    if checkpoints.is_empty()
        || checkpoints.last().is_some_and(fits)
        || checkpoints.iter().any(fits)
    {
        return Ok(());
    }
    Err(Failure::data(format!(
        "the key from {origin} does not match the audit log {} (no checkpoint verifies under its master key)",
        db.display()
    )))
}

pub(crate) fn store_failure(error: &StoreError, db: &Path) -> Failure {
    match error {
        StoreError::Open { .. } => Failure::data(format!(
            "{}: {error} (does the key hold the keys that sealed this log?)",
            db.display()
        )),
        StoreError::Corrupt(_) | StoreError::Json(_) => Failure::data(format!(
            "{} is not a usable audit log: {error}",
            db.display()
        )),
        _ if error.kind() == "locked" => Failure::failed(format!(
            "{}: {error} (another process holds the lock; try again)",
            db.display()
        )),
        _ => Failure::failed(format!("{}: {error}", db.display())),
    }
}

/// Whom `--subject KEY` / `--subject-id RAW` name.
enum Subject<'a> {
    /// The pseudonym as stored (ps_…).
    Key(&'a str),
    /// A raw identifier, to pseudonymise with the master key.
    Raw(&'a str),
}

impl Subject<'_> {
    /// At most one of the two flags; a `--subject` that is not a pseudonym is refused,
    /// since it could only ever match nothing.
    fn from_flags<'a>(
        subject: Option<&'a str>,
        subject_id: Option<&'a str>,
    ) -> Result<Option<Subject<'a>>, Failure> {
        match (subject, subject_id) {
            (Some(_), Some(_)) => Err(Failure::usage(
                "give either --subject KEY or --subject-id RAW, not both",
            )),
            // The value is not repeated: it may be the very identifier to forget.
            (Some(key), None) if !key.starts_with("ps_") => Err(Failure::usage(
                "--subject takes the pseudonymous key stored in the log (ps_…); for a raw \
                 identifier (a customer number) use --subject-id",
            )),
            (Some(key), None) => Ok(Some(Subject::Key(key))),
            (None, Some("")) => Err(Failure::usage("--subject-id must not be empty")),
            (None, Some(raw)) => Ok(Some(Subject::Raw(raw))),
            (None, None) => Ok(None),
        }
    }

    fn needs_key(&self) -> bool {
        matches!(self, Subject::Raw(_))
    }

    /// The pseudonym; `keys` are only used for a raw identifier.
    fn pseudonym(&self, keys: &Keys) -> String {
        match self {
            Subject::Key(key) => (*key).to_owned(),
            Subject::Raw(raw) => keys.pseudonym(raw),
        }
    }
}

// === verify ===

fn verify_db(args: &VerifyArgs) -> Outcome {
    let keys = load_keys(args.key_file.as_deref())?;
    if let Some(url) = postgres_url(args.url.as_deref(), args.url_file.as_deref())? {
        return verify_postgres(args, &url, keys);
    }
    let Some(db) = &args.db else {
        return Err(Failure::usage(
            "give one of --db FILE, --url URL or --url-file FILE",
        ));
    };
    let store = open_store(db, keys.clone())?;
    let lines = witness_lines(args, keys.checkpoint_key())?;
    match verify(&store, keys.checkpoint_key()) {
        Ok(report) => {
            println!(
                "{}: intact: {} record(s), {} checkpoint(s) verified, {} erased by {} authenticated erasure(s); last seq {} hash {}",
                db.display(),
                report.records,
                report.checkpoints,
                report.erased,
                report.erasures,
                report.last_seq,
                report.last_hash
            );
            let label = db.display().to_string();
            print_notes(&label, &report);
            witness_check(args, &label, &store, &report, lines.as_deref())
        }
        Err(
            error @ (VerifyError::KeyMismatch
            | VerifyError::WrongEncryptionKey { .. }
            | VerifyError::MissingEncryptionKey { .. }
            | VerifyError::Store(_)),
        ) => Err(Failure::data(format!(
            "{} with the key from {}: {error}",
            db.display(),
            key_origin(args.key_file.as_deref())
        ))),
        Err(error) => {
            println!("{}: BROKEN: {error}", db.display());
            Err(Failure {
                code: EXIT_FAILED,
                message: None,
            })
        }
    }
}

/// What an intact log still has to say: records appended while it was verified, review
/// states behind their decisions.
fn print_notes(label: &str, report: &VerifyReport) {
    if report.appended_since > 0 {
        println!(
            "{label}: {} record(s) appended while verifying (covered by authenticated checkpoints; the next run verifies them in full)",
            report.appended_since
        );
    }
    if report.reviews_not_applied > 0 {
        println!(
            "{label}: note: {} record(s) show a review state older than the latest review decision chained for them",
            report.reviews_not_applied
        );
    }
}

/// The witness lines of `--witness`, read before the verification begins (see
/// [`check_witness`]).
fn witness_lines(args: &VerifyArgs, key: &[u8]) -> Result<Option<Vec<WitnessLine>>, Failure> {
    let Some(path) = &args.witness else {
        return Ok(None);
    };
    read_witness(path, key)
        .map(Some)
        .map_err(|error| match error {
            WitnessError::Read { .. } => Failure::new(EXIT_NO_INPUT, error.to_string()),
            _ => Failure::data(error.to_string()),
        })
}

/// `--expect-seq` values: `N` (the single chain of a SQLite log) or `WRITER=N`.
fn expected_seqs(values: &[String]) -> Result<BTreeMap<String, u64>, Failure> {
    let mut out = BTreeMap::new();
    for value in values {
        let (writer, seq) = value.rsplit_once('=').unwrap_or(("", value));
        let seq = seq.trim().parse::<u64>().map_err(|_| {
            Failure::usage(format!(
                "--expect-seq `{value}`: expected N or WRITER=N, N a record seq"
            ))
        })?;
        out.insert(writer.to_owned(), seq);
    }
    Ok(out)
}

/// With --witness or --expect-seq, holds the verified log against what was published
/// outside it (the log itself is intact). A cut tail or rewritten history is a broken
/// log (exit 1); a witness that cannot be read or does not verify under the key is an
/// unusable input (65, 66).
fn witness_check(
    args: &VerifyArgs,
    label: &str,
    store: &dyn AuditStore,
    report: &VerifyReport,
    lines: Option<&[WitnessLine]>,
) -> Outcome {
    let broken = |error: WitnessError| {
        println!("{label}: BROKEN: {error}");
        Failure {
            code: EXIT_FAILED,
            message: None,
        }
    };
    let expected = expected_seqs(&args.expect_seq)?;
    check_expected(report, &expected).map_err(broken)?;
    let (Some(path), Some(lines)) = (&args.witness, lines) else {
        return Ok(());
    };
    match check_witness(store, report, lines) {
        Ok(found) => {
            let heads: Vec<String> = found
                .heads
                .iter()
                .map(|(w, seq)| match w.is_empty() {
                    true => format!("seq {seq}"),
                    false => format!("writer {w} seq {seq}"),
                })
                .collect();
            println!(
                "{label}: witness {}: {} line(s); the latest head(s) it saw are in the log ({})",
                path.display(),
                found.lines,
                if heads.is_empty() {
                    "none published yet".to_owned()
                } else {
                    heads.join(", ")
                }
            );
            Ok(())
        }
        Err(error @ WitnessError::Store(_)) => Err(Failure::failed(error.to_string())),
        Err(error) => Err(broken(error)),
    }
}

/// The PostgreSQL URL of `--url` or `--url-file`, if one was given.
fn postgres_url(url: Option<&str>, url_file: Option<&Path>) -> Result<Option<String>, Failure> {
    match (url, url_file) {
        (Some(url), _) => Ok(Some(url.to_owned())),
        (None, Some(file)) => {
            let text = std::fs::read_to_string(file).map_err(|e| {
                Failure::new(
                    EXIT_NO_INPUT,
                    format!("--url-file {}: cannot read it: {e}", file.display()),
                )
            })?;
            Ok(Some(text.trim().to_owned()))
        }
        (None, None) => Ok(None),
    }
}

/// Opens a PostgreSQL log to read it, with a label for messages that masks the URL's
/// password.
fn open_postgres(url: &str, keys: Keys) -> Result<(PostgresStore, String), Failure> {
    let label = sidelight_config::DatabaseUrl::new(url).redacted();
    let store =
        PostgresStore::open_reader(url, PostgresConfig::new(keys)).map_err(
            |error| match error {
                StoreError::Config(_) => Failure::usage(format!("--url: {error}")),
                _ => Failure::failed(format!("{label}: {error}")),
            },
        )?;
    Ok((store, label))
}

/// Verifies every writer's chain of a PostgreSQL log; the URL is printed only with its
/// password masked.
fn verify_postgres(args: &VerifyArgs, url: &str, keys: Keys) -> Outcome {
    let (store, label) = open_postgres(url, keys.clone())?;
    let lines = witness_lines(args, keys.checkpoint_key())?;
    match verify(&store, keys.checkpoint_key()) {
        Ok(report) => {
            for w in &report.writers {
                println!(
                    "{label}: writer {}: intact: {} record(s), {} checkpoint(s) verified, {} erased; last seq {} hash {}",
                    w.writer, w.records, w.checkpoints, w.erased, w.last_seq, w.last_hash
                );
            }
            println!(
                "{label}: intact: {} writer(s), {} record(s), {} checkpoint(s) verified, {} erased by {} authenticated erasure(s)",
                report.writers.len(),
                report.records,
                report.checkpoints,
                report.erased,
                report.erasures
            );
            print_notes(&label, &report);
            witness_check(args, &label, &store, &report, lines.as_deref())
        }
        Err(
            error @ (VerifyError::KeyMismatch
            | VerifyError::WrongEncryptionKey { .. }
            | VerifyError::MissingEncryptionKey { .. }),
        ) => Err(Failure::data(format!(
            "{label} with the key from {}: {error}",
            key_origin(args.key_file.as_deref())
        ))),
        Err(error @ VerifyError::Store(_)) => Err(Failure::failed(format!("{label}: {error}"))),
        Err(error) => {
            println!("{label}: BROKEN: {error}");
            Err(Failure {
                code: EXIT_FAILED,
                message: None,
            })
        }
    }
}

// === export ===

/// Parses `--from` / `--to`: RFC 3339 in UTC, a date (midnight UTC), or unix
/// milliseconds.
pub(crate) fn parse_time(flag: &str, value: &str) -> Result<i64, Failure> {
    let text = value.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<i64>().map_err(|_| {
            Failure::usage(format!(
                "{flag}: `{value}` is too large for unix milliseconds"
            ))
        });
    }
    let full = if text.len() == "2026-11-27".len() {
        format!("{text}T00:00:00Z")
    } else {
        text.to_owned()
    };
    let bad = |why: String| {
        Failure::usage(format!(
            "{flag}: `{value}` is neither an RFC 3339 time in UTC (like 2026-11-27T10:00:00Z) \
             nor unix milliseconds{why}"
        ))
    };
    let time = humantime::parse_rfc3339(&full).map_err(|e| bad(format!(" ({e})")))?;
    let since = time
        .duration_since(UNIX_EPOCH)
        .map_err(|_| bad(" (it is before 1970)".to_owned()))?;
    i64::try_from(since.as_millis()).map_err(|_| bad(" (out of range)".to_owned()))
}

enum Sink<W: Write> {
    Jsonl { out: W, written: u64 },
    // Boxed: the CSV writer's state is large, and there is one sink per export.
    Csv(Box<CsvExport<W>>),
}

struct Exported {
    records: u64,
    rows: u64,
    skipped: u64,
    /// The output was closed early (a pipe into `head`).
    closed: bool,
}

fn export(args: &ExportArgs) -> Outcome {
    let from = args
        .from
        .as_deref()
        .map(|v| parse_time("--from", v))
        .transpose()?;
    let to = args
        .to
        .as_deref()
        .map(|v| parse_time("--to", v))
        .transpose()?;
    if let (Some(f), Some(t)) = (from, to) {
        if f >= t {
            return Err(Failure::usage(
                "--from must be before --to (--from is inclusive, --to exclusive)",
            ));
        }
    }
    let subject = Subject::from_flags(args.subject.as_deref(), args.subject_id.as_deref())?;
    let keys = load_keys(args.key_file.as_deref())?;
    let subject = subject.map(|s| s.pseudonym(&keys));
    let store: Box<dyn AuditStore>;
    let source: PathBuf;
    if let Some(url) = postgres_url(args.url.as_deref(), args.url_file.as_deref())? {
        let (pg, label) = open_postgres(&url, keys.clone())?;
        pg.check_keys().map_err(|e| {
            Failure::data(format!(
                "{label} with the key from {}: {e}",
                key_origin(args.key_file.as_deref())
            ))
        })?;
        store = Box::new(pg);
        // Only ever shown, and only with the password masked.
        source = PathBuf::from(label);
    } else {
        let Some(db) = &args.db else {
            return Err(Failure::usage(
                "give one of --db FILE, --url URL or --url-file FILE",
            ));
        };
        let sqlite = open_store(db, keys.clone())?;
        check_master(&sqlite, &keys, &key_origin(args.key_file.as_deref()), db)?;
        store = Box::new(sqlite);
        source = db.clone();
    }
    let query = RecordQuery {
        from_ms: from,
        to_ms: to,
        route: args.route.clone(),
        subject,
        review_state: args.review_state.clone(),
        limit: EXPORT_PAGE,
        after: None,
    };
    let (destination, exported) = match &args.out {
        Some(path) => {
            let file = File::create(path).map_err(|e| {
                Failure::new(
                    EXIT_CANT_CREATE,
                    format!("--out {}: cannot create it: {e}", path.display()),
                )
            })?;
            let out = BufWriter::new(file);
            (
                path.display().to_string(),
                export_into(&*store, query, args.format, out, &source, path)?,
            )
        }
        None => {
            let out = BufWriter::new(io::stdout().lock());
            (
                "stdout".to_owned(),
                export_into(
                    &*store,
                    query,
                    args.format,
                    out,
                    &source,
                    Path::new("stdout"),
                )?,
            )
        }
    };
    let ended = if exported.closed {
        " (the output was closed early)"
    } else {
        ""
    };
    match args.format {
        Format::Jsonl => eprintln!(
            "exported {} record(s) from {} as JSON lines to {destination}{ended}",
            exported.records,
            source.display()
        ),
        Format::Csv => {
            eprintln!(
                "exported {} record(s) from {} as CSV to {destination}{ended}: {} row(s) written, \
                 {} record(s) skipped (no features left, or other columns than the first record's)",
                exported.records,
                source.display(),
                exported.rows,
                exported.skipped
            );
            if exported.skipped > 0 && args.route.is_none() {
                eprintln!(
                    "hint: routes have different features; export one at a time with --route"
                );
            }
        }
    }
    Ok(())
}

fn export_into<W: Write>(
    store: &dyn AuditStore,
    mut query: RecordQuery,
    format: Format,
    out: W,
    db: &Path,
    destination: &Path,
) -> Result<Exported, Failure> {
    let mut sink = match format {
        Format::Jsonl => Sink::Jsonl { out, written: 0 },
        Format::Csv => Sink::Csv(Box::new(CsvExport::new(out))),
    };
    let mut records = 0u64;
    let write_failure = |error: ExportError| -> Result<(), Failure> {
        let io_error = match &error {
            ExportError::Io(e) => Some(e),
            ExportError::Csv(e) => match e.kind() {
                csv::ErrorKind::Io(e) => Some(e),
                _ => None,
            },
        };
        if io_error.is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe) {
            return Ok(());
        }
        Err(Failure::new(
            EXIT_IO,
            format!("writing {}: {error}", destination.display()),
        ))
    };
    let mut closed = false;
    'pages: loop {
        let page = store.query(&query).map_err(|e| store_failure(&e, db))?;
        for stored in &page.records {
            let written = match &mut sink {
                Sink::Jsonl { out, written } => write_jsonl(out, stored).map(|()| *written += 1),
                Sink::Csv(csv) => csv.push(stored),
            };
            if let Err(error) = written {
                write_failure(error)?;
                closed = true;
                break 'pages;
            }
            records += 1;
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    let (rows, skipped, finished) = match sink {
        Sink::Jsonl { mut out, written } => (written, 0, out.flush().map_err(ExportError::from)),
        Sink::Csv(csv) => {
            let (rows, skipped) = (csv.rows, csv.skipped);
            (rows, skipped, csv.finish())
        }
    };
    if !closed {
        if let Err(error) = finished {
            write_failure(error)?;
            closed = true;
        }
    }
    Ok(Exported {
        records,
        rows,
        skipped,
        closed,
    })
}

// === erase and subject ===

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn erase(args: &EraseArgs) -> Outcome {
    let Some(subject) = Subject::from_flags(args.subject.as_deref(), args.subject_id.as_deref())?
    else {
        return Err(Failure::usage(
            "say whom to erase: --subject KEY (ps_…) or --subject-id RAW",
        ));
    };
    match (&args.db, &args.admin) {
        (Some(_), Some(_)) => {
            return Err(Failure::usage(
                "give either --db FILE (offline) or --admin URL (a running proxy), not both",
            ));
        }
        (None, None) => {
            return Err(Failure::usage(
                "say where to erase: --db FILE (offline, on the database) or --admin URL \
                 (through a running proxy)",
            ));
        }
        _ => {}
    }
    let key_file = args.key_file.as_deref();
    // The key is needed for a raw identifier's pseudonym, and is checked against the
    // log whenever it is given: a pseudonym computed with another master key would
    // silently match no record.
    // Through a running proxy, a raw identifier without a key at hand is sent as it is:
    // the proxy pseudonymises it with its own key.
    // Offline, the key is always needed: the erasure is written as an event
    // authenticated with it, and `audit verify` fails on a tombstone without one.
    let key_at_hand = key_file.is_some() || std::env::var_os(AUDIT_KEY_VARIABLE).is_some();
    let keys = if args.db.is_some() || (subject.needs_key() && key_at_hand) || key_file.is_some() {
        Some(load_keys(key_file)?)
    } else {
        None
    };
    match (&args.db, &args.admin) {
        (Some(db), _) => {
            let Some(keys) = keys else {
                return Err(Failure::usage(
                    "erasing offline needs the audit key (--key-file or SIDELIGHT_AUDIT_KEY)",
                ));
            };
            let subject = subject.pseudonym(&keys);
            let mut store = open_store(db, keys.clone())?;
            check_master(&store, &keys, &key_origin(key_file), db)?;
            let erased = store
                .erase(&Erasure::Subject(subject.clone()), now_ms())
                .map_err(|e| store_failure(&e, db))?;
            if erased == 0 {
                println!(
                    "erased 0 records of subject {subject} in {}: none with content left \
                     (unknown subject, or erased before)",
                    db.display()
                );
            } else {
                println!(
                    "erased {erased} record(s) of subject {subject} in {}",
                    db.display()
                );
            }
            eprintln!(
                "note: a running proxy keeps this subject's rows in its in-memory training \
                 window; only `sidelight audit erase --admin URL` (its admin API) clears them \
                 and retrains at once. A proxy started later does not restore a saved \
                 surrogate trained on this subject's rows: it retires it and retrains"
            );
            Ok(())
        }
        (None, admin) => {
            let admin = admin.as_deref().unwrap_or_default();
            let body = match (&subject, &keys) {
                (Subject::Key(key), _) => json!({ "subject": key }),
                (Subject::Raw(_), Some(keys)) => json!({ "subject": subject.pseudonym(keys) }),
                (Subject::Raw(raw), None) => json!({ "subject_id": raw }),
            };
            erase_remote(admin, &body, Duration::from_secs(args.timeout), &args.token)
        }
    }
}

/// POSTs `body` (`{"subject": "ps_…"}` or `{"subject_id": "…"}`) to the proxy's erasure
/// endpoint and reports its answer.
fn erase_remote(
    admin: &str,
    body: &Value,
    timeout: Duration,
    token: &crate::token::AdminToken,
) -> Outcome {
    let base = admin.trim_end_matches('/');
    if !base.starts_with("http://") && !base.starts_with("https://") {
        return Err(Failure::usage(format!(
            "--admin `{admin}` is not an http:// or https:// URL (like http://127.0.0.1:9100)"
        )));
    }
    let url = format!("{base}/api/v1/erasure");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::failed(format!("cannot start the async runtime: {e}")))?;
    let (status, answer) = token
        .with_headers(|headers| {
            runtime.block_on(sidelight_proxy::post_json(
                &url,
                headers,
                body.to_string(),
                timeout,
            ))
        })
        .map_err(|e| Failure::failed(format!("erasure through --admin failed: {e}")))?;
    let json: Value = serde_json::from_str(&answer).unwrap_or(Value::Null);
    if status != 200 {
        let message = json["error"]["message"].as_str().unwrap_or(answer.trim());
        let hint = token
            .hint(status)
            .map(|hint| format!("; {hint}"))
            .unwrap_or_default();
        return Err(Failure::failed(format!(
            "the proxy at {base} refused the erasure ({status}): {message}{hint}"
        )));
    }
    let erased = json["erased_records"].as_u64();
    let removed = json["window_rows_removed"].as_u64();
    let (Some(erased), Some(removed)) = (erased, removed) else {
        println!("{}", answer.trim());
        return Ok(());
    };
    let subject = json["subject"]
        .as_str()
        .or_else(|| body["subject"].as_str())
        .unwrap_or("(pseudonymised by the proxy)");
    println!("erased {erased} record(s) of subject {subject} in the audit log");
    println!("removed {removed} row(s) from the proxy's training window");
    if let Some(cached) = json["cached_entries_removed"].as_u64() {
        println!("dropped {cached} cached request(s) and explanation(s) of theirs");
    }
    let routes: Vec<&str> = json["routes_retraining"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if routes.is_empty() {
        println!("no surrogate needs retraining");
    } else {
        println!("retraining the surrogate(s) of: {}", routes.join(", "));
    }
    let retired: Vec<String> = json["surrogates_retired"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|s| {
                    Some(format!(
                        "{} v{}",
                        s["route"].as_str()?,
                        s["version"].as_u64()?
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    if !retired.is_empty() {
        println!(
            "retired the surrogate(s) trained on their rows: {}",
            retired.join(", ")
        );
    }
    Ok(())
}

fn subject(args: &SubjectArgs) -> Outcome {
    if args.id.is_empty() {
        return Err(Failure::usage("--id must not be empty"));
    }
    let keys = load_keys(args.key_file.as_deref())?;
    println!("{}", keys.pseudonym(&args.id));
    Ok(())
}

// === rotate-key ===

/// `k` and the UTC time to the second: k20261127T101500.
fn default_key_id() -> String {
    let time = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let compact: String = time
        .chars()
        .filter(|c| !matches!(c, '-' | ':' | 'Z'))
        .collect();
    format!("k{compact}")
}

/// Writes the keyring next to `path` with mode 0600, then renames it over `path`, so a
/// crash leaves either the old file or the new one.
fn write_keyring(path: &Path, keys: &Keys) -> Outcome {
    let fail = |what: &str, e: io::Error| {
        Failure::new(
            EXIT_CANT_CREATE,
            format!("--key-file {}: cannot {what}: {e}", path.display()),
        )
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    // A leftover from an interrupted run may have other permissions: start afresh.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(fail("remove the stale .tmp file", e));
        }
        _ => {}
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| fail("create the .tmp file", e))?;
    file.write_all(keys.to_keyring_text().as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| fail("write the .tmp file", e))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|e| fail("replace it", e))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Make the rename durable; a failure here leaves a correct file anyway.
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

fn not_active(usage: &[(Option<String>, u64)], active: &str) -> u64 {
    usage
        .iter()
        .filter(|(k, _)| k.as_deref() != Some(active))
        .map(|(_, n)| n)
        .sum()
}

fn reseal_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "re-sealing {bar:40.cyan/blue} {pos}/{len} records ({elapsed}, {eta} left)",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

fn rotate_key(args: &RotateArgs) -> Outcome {
    if args.reseal_only && args.id.is_some() {
        return Err(Failure::usage(
            "--id names a new key; --reseal-only adds none: give one or the other",
        ));
    }
    let path = args.key_file.as_path();
    let db = args.db.as_path();
    let mut keys = load_keys(Some(path))?;
    let origin = key_origin(Some(path));

    // Before touching the key file: the keys must fit the log and hold every key in use,
    // or re-sealing would stop half-way.
    let usage = {
        let store = open_store(db, keys.clone())?;
        check_master(&store, &keys, &origin, db)?;
        store.key_usage().map_err(|e| store_failure(&e, db))?
    };
    let held: Vec<&str> = keys.key_ids().collect();
    if let Some(missing) = usage
        .iter()
        .filter_map(|(k, _)| k.as_deref())
        .find(|k| !held.contains(k))
    {
        return Err(Failure::data(format!(
            "records in {} are sealed with key `{missing}`, which {origin} does not hold; \
             re-sealing needs every key in use",
            db.display()
        )));
    }

    let previous = keys.active_id().to_owned();
    if !args.reseal_only {
        let id = args.id.clone().unwrap_or_else(default_key_id);
        if keys.key_ids().any(|k| k == id) {
            return Err(Failure::usage(format!(
                "--id: {origin} already holds a key `{id}`; choose another id"
            )));
        }
        keys.rotate(&id)
            .map_err(|e| Failure::usage(format!("--id: {e}")))?;
        write_keyring(path, &keys)?;
        println!(
            "new encryption key `{id}` is active in {} (previous active key: `{previous}`)",
            path.display()
        );
    }
    let active = keys.active_id().to_owned();

    let mut store = open_store(db, keys.clone())?;
    let total = not_active(&usage, &active);
    let bar = reseal_bar(total);
    let mut resealed = 0u64;
    let mut locked = 0;
    // Stops at the count found at the start: a proxy still sealing with an old key
    // could otherwise keep this going; what it writes is for the next run.
    while resealed < total {
        match store.reseal(RESEAL_BATCH) {
            Ok(0) => break,
            Ok(n) => {
                resealed += n;
                locked = 0;
                bar.inc(n);
            }
            Err(error) if error.kind() == "locked" && locked < LOCKED_RETRIES => {
                locked += 1;
                std::thread::sleep(Duration::from_millis(250));
            }
            Err(error) => {
                bar.abandon();
                let mut failure = store_failure(&error, db);
                if let Some(message) = failure.message.as_mut() {
                    message.push_str(&format!(
                        "; {resealed} record(s) had been re-sealed under `{active}`, and the \
                         key file still holds every key, so nothing is lost: fix the cause and \
                         run rotate-key --reseal-only to go on"
                    ));
                }
                return Err(failure);
            }
        }
    }
    bar.finish_and_clear();
    println!("re-sealed {resealed} record(s) under key `{active}`");

    let usage = store.key_usage().map_err(|e| store_failure(&e, db))?;
    let left = usage
        .iter()
        .filter(|(k, _)| k.is_some() && k.as_deref() != Some(active.as_str()))
        .map(|(_, n)| n)
        .sum::<u64>();
    if left > 0 {
        println!(
            "{left} record(s) are still sealed with an older key (written meanwhile by a \
             running proxy?); they stay readable: run `sidelight audit rotate-key --db {} \
             --key-file {} --reseal-only` after restarting it",
            db.display(),
            path.display()
        );
    }

    if args.retire {
        let in_use: Vec<String> = usage.iter().filter_map(|(k, _)| k.clone()).collect();
        let mut retired = keys.retire_except(&in_use);
        retired.sort();
        if retired.is_empty() {
            println!(
                "retired no key: every key in {} is still in use",
                path.display()
            );
        } else {
            write_keyring(path, &keys)?;
            println!(
                "retired key(s) no record uses any longer: {}",
                retired.join(", ")
            );
        }
    } else if !args.reseal_only {
        println!(
            "next: restart every proxy that writes {db}, then run `sidelight audit rotate-key \
             --db {db} --key-file {key} --reseal-only --retire` to re-seal what it wrote \
             meanwhile and drop the old key(s)",
            db = db.display(),
            key = path.display()
        );
    }
    Ok(())
}
