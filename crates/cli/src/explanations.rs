//! `sidelight explanations export`: one row per explained prediction of a route and
//! period, read from the audit log without a running proxy, as Parquet or CSV for
//! pandas, polars or DuckDB (see `sidelight_report::export` for the columns).
//!
//! Unlike the admin API's export, it has no time budget; its row cap (`--max-rows`)
//! refuses a period larger than the memory it would take, and it never writes a file
//! that looks complete when it is not.
//!
//! Exit status (sysexits): 0 written; 1 the database could not be read; 64 the arguments
//! or the config are wrong, or the route has no explained rows in the period; 65 the
//! period holds more rows than `--max-rows`; 66 the database or the key file is missing;
//! 73 the output file cannot be created; 74 writing it failed part-way.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use sidelight_report::explained::{self, Bounds, Scope};
use sidelight_report::export::{self, ExportError, Format};

use crate::audit::{Failure, load_keys, parse_time, store_failure};

/// sysexits' EX_DATAERR.
const EXIT_DATA: u8 = 65;
/// sysexits' EX_CANTCREAT.
const EXIT_CANT_CREATE: u8 = 73;
/// sysexits' EX_IOERR.
const EXIT_IO: u8 = 74;

#[derive(Args)]
pub(crate) struct ExplanationsArgs {
    #[command(subcommand)]
    command: ExplanationsCommand,
}

#[derive(Subcommand)]
enum ExplanationsCommand {
    /// Write one row per explained prediction: time, record id, the features as
    /// recorded, the prediction and its space, the base value, one shap_<feature>
    /// column per feature, the surrogate version and any reported outcome.
    Export(ExportArgs),
}

#[derive(Args)]
struct ExportArgs {
    /// The proxy's config: `[audit]` says where the log is (a SQLite file, or with
    /// `backend = "postgres"` the shared database, read on a read-only connection).
    #[arg(long, short, env = "SIDELIGHT_CONFIG")]
    config: PathBuf,
    /// The route whose explanations to write.
    #[arg(long)]
    route: String,
    /// Start of the period (included): RFC 3339 in UTC, a date (midnight UTC) or unix
    /// milliseconds. Default: seven days before --to.
    #[arg(long)]
    from: Option<String>,
    /// End of the period (excluded), as --from. Default: now.
    #[arg(long)]
    to: Option<String>,
    /// parquet (typed columns, snappy-compressed) or csv.
    #[arg(long, value_enum, default_value_t = FileFormat::Parquet)]
    format: FileFormat,
    /// The most rows to write; a period with more is refused, never cut.
    #[arg(long, default_value_t = 1_000_000)]
    max_rows: usize,
    /// Write here instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum FileFormat {
    Parquet,
    Csv,
}

pub(crate) fn run(args: ExplanationsArgs) -> ExitCode {
    let ExplanationsCommand::Export(args) = args.command;
    match export_explanations(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if let Some(message) = failure.message {
                eprintln!("sidelight explanations export: {message}");
            }
            ExitCode::from(failure.code)
        }
    }
}

fn export_explanations(args: &ExportArgs) -> Result<(), Failure> {
    let to = match &args.to {
        Some(to) => parse_time("--to", to)?,
        None => crate::report::now_ms(),
    };
    let from = match &args.from {
        Some(from) => parse_time("--from", from)?,
        None => to - 7 * 86_400_000,
    };
    if from >= to {
        return Err(Failure::usage("--from/--to: --from must be before --to"));
    }
    if args.max_rows == 0 {
        return Err(Failure::usage("--max-rows must be at least 1"));
    }
    let config = crate::load(Some(&args.config))
        .map_err(|e| Failure::usage(format!("--config {}: {e}", args.config.display())))?;
    let Some(route) = config.routes.iter().find(|r| r.name == args.route).cloned() else {
        let known: Vec<&str> = config.routes.iter().map(|r| r.name.as_str()).collect();
        return Err(Failure::usage(format!(
            "--route {}: no such route in {}; the routes are: {}",
            args.route,
            args.config.display(),
            known.join(", ")
        )));
    };
    let Some(audit) = config.audit.as_ref() else {
        return Err(Failure::usage(format!(
            "--config {} has no [audit] section: explanations are read from the audit log",
            args.config.display()
        )));
    };
    let keys = load_keys(audit.key_file.as_deref())?;
    let (store, label) = crate::report::open_log(audit, &args.config, keys)?;
    // As the admin API's export: personal features masked, whoever runs it.
    let masked = sidelight_report::workbench::personal_features(&route);
    let scope = Scope {
        route: args.route.clone(),
        from_ms: from,
        to_ms: to,
        config: Some(route),
    };
    let bounds = Bounds {
        max_rows: args.max_rows,
        deadline: None,
        outcomes: true,
    };
    let frame = explained::read(store.as_ref(), &scope, &bounds)
        .map_err(|e| store_failure(&e, Path::new(&label)))?;
    if frame.rows.is_empty() {
        return Err(Failure::usage(format!(
            "route {} has no explained rows in the period ({} record(s) without attributions)",
            args.route, frame.unexplained_records
        )));
    }
    let format = match args.format {
        FileFormat::Parquet => Format::Parquet,
        FileFormat::Csv => Format::Csv,
    };
    let mut bytes = Vec::new();
    export::write(&frame, &masked, format, &mut bytes).map_err(|e| match e {
        ExportError::Truncated { .. } => Failure::new(
            EXIT_DATA,
            format!("{e}, or raise --max-rows (now {})", args.max_rows),
        ),
        other => Failure::new(EXIT_IO, other.to_string()),
    })?;
    match &args.out {
        Some(path) => {
            // Written beside the target and renamed, so that a file under this name is
            // always whole.
            let partial = path.with_extension(format!("{}.partial", format.extension()));
            let mut file = std::fs::File::create(&partial).map_err(|e| Failure {
                code: EXIT_CANT_CREATE,
                message: Some(format!("--out {}: cannot create it: {e}", path.display())),
            })?;
            file.write_all(&bytes)
                .and_then(|()| file.sync_all())
                .and_then(|()| std::fs::rename(&partial, path))
                .map_err(|e| Failure {
                    code: EXIT_IO,
                    message: Some(format!("--out {}: writing failed: {e}", path.display())),
                })?;
            eprintln!(
                "sidelight explanations export: {} row(s) of route {} over {} feature(s) written to {}",
                frame.rows.len(),
                args.route,
                frame.names.len(),
                path.display()
            );
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(&bytes)
                .and_then(|()| out.flush())
                .map_err(|e| Failure {
                    code: EXIT_IO,
                    message: Some(format!("writing to standard output failed: {e}")),
                })?;
        }
    }
    Ok(())
}
