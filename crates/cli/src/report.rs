//! `sidelight report`: the audit report of a period, from the audit log and the config,
//! without a running proxy.
//!
//! With `audit.backend = "postgres"` it reads the shared database on a read-only
//! connection (`audit.url`, `audit.url_file` or `SIDELIGHT_AUDIT__URL`), which takes no
//! writer's chain, so it runs beside the proxies.
//!
//! Exit status (sysexits): 0 written (even when the report finds the log broken: it
//! says so in its last section); 1 the database could not be read; 64 the arguments or
//! the config are wrong; 65 the key does not fit or the file is not an audit log; 66
//! the database, the URL file or the key file is missing; 73 the output file cannot be
//! created; 74 writing it failed part-way.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sidelight_audit::{AuditStore, PostgresConfig, PostgresStore, StoreError};
use sidelight_config::{AuditBackend, AuditConfig};
use sidelight_report::{self as report, Period, Progress, ReportError, ReportInput, Stage};

use crate::audit::{Failure, load_keys, open_store, parse_time, store_failure};

/// sysexits' EX_NOINPUT.
const EXIT_NO_INPUT: u8 = 66;
/// sysexits' EX_SOFTWARE, as `sidelight audit` uses it for a store that failed.
const EXIT_FAILED: u8 = 1;

/// sysexits' EX_CANTCREAT.
const EXIT_CANT_CREATE: u8 = 73;
/// sysexits' EX_IOERR.
const EXIT_IO: u8 = 74;

#[derive(Args)]
pub(crate) struct ReportArgs {
    /// The proxy's config: `[audit]` (path, key_file) says where the log is, the routes
    /// their protected attributes and decision thresholds.
    /// With `backend = "postgres"`, `[audit] url` or `url_file` (or SIDELIGHT_AUDIT__URL)
    /// names the shared database, read on a read-only connection.
    #[arg(long, short, env = "SIDELIGHT_CONFIG")]
    config: PathBuf,
    /// Start of the period (included): RFC 3339 in UTC (2026-11-01T00:00:00Z), a date
    /// (2026-11-01, midnight UTC) or unix milliseconds.
    #[arg(long)]
    from: String,
    /// End of the period (excluded), as --from. Default: now.
    #[arg(long)]
    to: Option<String>,
    /// Start of drift's reference period. Default: the period of the same length just
    /// before --from.
    #[arg(long, requires = "reference_to")]
    reference_from: Option<String>,
    /// End of drift's reference period (excluded).
    #[arg(long, requires = "reference_from")]
    reference_to: Option<String>,
    /// html: one printable page with charts; md: Markdown tables; json: every figure.
    #[arg(long, value_enum, default_value_t = Format::Html)]
    format: Format,
    /// Write here instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Html,
    Md,
    Json,
}

pub(crate) fn run(args: ReportArgs) -> ExitCode {
    match report(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if let Some(message) = failure.message {
                eprintln!("sidelight report: {message}");
            }
            ExitCode::from(failure.code)
        }
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn checked_period(from: i64, to: i64, flags: &str) -> Result<Period, Failure> {
    Period::new(from, to).map_err(|e| Failure::usage(format!("{flags}: {e}")))
}

fn report(args: &ReportArgs) -> Result<(), Failure> {
    let now = now_ms();
    let from = parse_time("--from", &args.from)?;
    let to = match &args.to {
        Some(to) => parse_time("--to", to)?,
        None => now,
    };
    let period = checked_period(from, to, "--from/--to")?;
    let reference = match (&args.reference_from, &args.reference_to) {
        (Some(f), Some(t)) => Some(checked_period(
            parse_time("--reference-from", f)?,
            parse_time("--reference-to", t)?,
            "--reference-from/--reference-to",
        )?),
        _ => None,
    };
    let config = crate::load(Some(&args.config))
        .map_err(|e| Failure::usage(format!("--config {}: {e}", args.config.display())))?;
    let Some(audit) = config.audit.as_ref() else {
        return Err(Failure::usage(format!(
            "--config {} has no [audit] section: the report is read from the audit log",
            args.config.display()
        )));
    };
    let keys = load_keys(audit.key_file.as_deref())?;
    let (store, label) = open_log(audit, &args.config, keys.clone())?;

    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{msg:22} {bar:40.cyan/blue} {pos}/{len} records ({elapsed})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    let mut progress = |p: Progress| {
        bar.set_message(match p.stage {
            Stage::Period => "reading the period",
            Stage::Reference => "reading the reference",
            Stage::Verify => "verifying the log",
        });
        bar.set_length(p.total);
        bar.set_position(p.done);
    };
    let input = ReportInput {
        config: &config,
        keys: &keys,
        period,
        reference,
        in_service: None,
        generated_at_ms: now,
    };
    let built = report::build(store, &input, &mut progress);
    bar.finish_and_clear();
    let report = match built {
        Ok(report) => report,
        Err(ReportError::Store(e)) => return Err(store_failure(&e, Path::new(&label))),
        Err(e @ ReportError::Period(_)) => return Err(Failure::usage(e.to_string())),
    };
    let text = match args.format {
        Format::Html => report::render_html(&report),
        Format::Md => report::render_markdown(&report),
        Format::Json => serde_json::to_string_pretty(&report)
            .map_err(|e| Failure::data(format!("cannot write the report as JSON: {e}")))?,
    };
    match &args.out {
        Some(path) => {
            let mut file = std::fs::File::create(path).map_err(|e| Failure {
                code: EXIT_CANT_CREATE,
                message: Some(format!("--out {}: cannot create it: {e}", path.display())),
            })?;
            file.write_all(text.as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| Failure {
                    code: EXIT_IO,
                    message: Some(format!("--out {}: writing failed: {e}", path.display())),
                })?;
            eprintln!(
                "sidelight report: {} record(s) from {} to {} written to {}",
                report.system.records,
                report.period.from,
                report.period.to,
                path.display()
            );
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .map_err(|e| Failure {
                    code: EXIT_IO,
                    message: Some(format!("writing to standard output failed: {e}")),
                })?;
        }
    }
    Ok(())
}

/// Opens the config's audit log to read it, SQLite or PostgreSQL (on a read-only
/// connection); the label names it in messages, the URL's password masked.
pub(crate) fn open_log(
    audit: &AuditConfig,
    config: &Path,
    keys: sidelight_audit::Keys,
) -> Result<(Box<dyn AuditStore>, String), Failure> {
    Ok(match audit.backend {
        AuditBackend::Sqlite => (
            Box::new(open_store(&audit.path, keys)?),
            audit.path.display().to_string(),
        ),
        AuditBackend::Postgres => {
            let (store, label) = open_postgres(audit, config, keys)?;
            (Box::new(store), label)
        }
    })
}

/// Opens the PostgreSQL log of the config to read it; the label for messages masks the
/// URL's password.
pub(crate) fn open_postgres(
    audit: &AuditConfig,
    config: &Path,
    keys: sidelight_audit::Keys,
) -> Result<(PostgresStore, String), Failure> {
    let url = audit.database_url().map_err(|(key, message)| {
        let missing = key == "audit.url_file" && message.starts_with("cannot read");
        let mut failure =
            Failure::usage(format!("--config {}: {key}: {message}", config.display()));
        if missing {
            failure.code = EXIT_NO_INPUT;
        }
        failure
    })?;
    let label = url.redacted();
    let store_config = PostgresConfig {
        lock_timeout: audit.lock_timeout,
        ca_file: audit.ca_file.clone(),
        ..PostgresConfig::new(keys)
    };
    // The store's errors never quote the URL, which may hold a password.
    let store =
        PostgresStore::open_reader(url.expose(), store_config).map_err(|error| match &error {
            StoreError::Config(m) if m.contains("CA file") || m.starts_with("sslmode=require") => {
                Failure::usage(format!(
                    "--config {}: audit.ca_file: {error}",
                    config.display()
                ))
            }
            StoreError::Config(_) => {
                Failure::usage(format!("--config {}: audit.url: {error}", config.display()))
            }
            _ => Failure {
                code: EXIT_FAILED,
                message: Some(format!("{label}: {error}")),
            },
        })?;
    Ok((store, label))
}
