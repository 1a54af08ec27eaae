//! `sidelight evidence export` writes the evidence pack of a period from the audit log
//! and the config, without a running proxy; `sidelight evidence verify` checks a pack
//! offline with the audit key. The pack itself is `sidelight_admin::evidence`'s.
//!
//! Exit status (sysexits): 0 written or verified; 1 the database could not be read; 64
//! the arguments or the config are wrong; 65 the pack does not verify (altered, or made
//! with another key) or the key does not fit; 66 a file is missing; 73 the output
//! cannot be created; 74 writing it failed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use sidelight_admin::evidence::{self, EvidenceError, PackInput};
use sidelight_audit::AuditStore;
use sidelight_config::AuditBackend;
use sidelight_report::{Period, ReportError};

use crate::audit::{Failure, load_keys, open_store, parse_time, store_failure};

const EXIT_NO_INPUT: u8 = 66;
const EXIT_CANT_CREATE: u8 = 73;
const EXIT_IO: u8 = 74;
const DAY_MS: i64 = 24 * 3600 * 1000;

#[derive(Args)]
pub(crate) struct EvidenceArgs {
    #[command(subcommand)]
    command: EvidenceCommand,
}

#[derive(Subcommand)]
enum EvidenceCommand {
    /// Write the evidence pack of a period: the report (HTML, JSON), the verification
    /// of the whole log, the config without its secrets and its digests, the surrogate
    /// versions and their fidelity, every route's notice in every language, and a
    /// manifest signed with the audit key.
    Export(ExportArgs),
    /// Check a pack offline: the manifest's signature with the evidence key (derived
    /// from the audit key), and every file against the manifest.
    Verify(VerifyArgs),
    /// Print the evidence key (hex): give it to whoever checks packs instead of the
    /// audit key. It checks (and signs) evidence manifests and opens nothing.
    Key(KeyArgs),
}

#[derive(Args)]
struct KeyArgs {
    /// The audit key file (else SIDELIGHT_AUDIT_KEY).
    #[arg(long)]
    key_file: Option<PathBuf>,
}

#[derive(Args)]
struct ExportArgs {
    /// The proxy's config (as for `sidelight serve`): the audit log, its key, the
    /// routes and their wording (`[narration] dir`), the state directory.
    #[arg(long, short, env = "SIDELIGHT_CONFIG")]
    config: PathBuf,
    /// Start of the period (included): RFC 3339, a date or unix ms. Default: 30 days
    /// before --to.
    #[arg(long)]
    from: Option<String>,
    /// End of the period (excluded). Default: now.
    #[arg(long)]
    to: Option<String>,
    /// The archive to write (a tar file).
    #[arg(long, short)]
    out: PathBuf,
}

#[derive(Args)]
struct VerifyArgs {
    /// The pack (`evidence.tar`).
    pack: PathBuf,
    /// The audit key file (else SIDELIGHT_AUDIT_KEY).
    #[arg(long, conflicts_with = "evidence_key_file")]
    key_file: Option<PathBuf>,
    /// A file holding the evidence key as `sidelight evidence key` prints it, for a
    /// checker who does not hold the audit key.
    #[arg(long)]
    evidence_key_file: Option<PathBuf>,
}

pub(crate) fn run(args: EvidenceArgs) -> ExitCode {
    let (name, outcome) = match args.command {
        EvidenceCommand::Export(a) => ("export", export(&a)),
        EvidenceCommand::Verify(a) => ("verify", verify(&a)),
        EvidenceCommand::Key(a) => ("key", print_key(&a)),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if let Some(message) = failure.message {
                eprintln!("sidelight evidence {name}: {message}");
            }
            ExitCode::from(failure.code)
        }
    }
}

fn export(args: &ExportArgs) -> Result<(), Failure> {
    let now = crate::report::now_ms();
    let to = match &args.to {
        Some(to) => parse_time("--to", to)?,
        None => now,
    };
    let from = match &args.from {
        Some(from) => parse_time("--from", from)?,
        None => to - 30 * DAY_MS,
    };
    let period = Period::new(from, to).map_err(|e| Failure::usage(format!("--from/--to: {e}")))?;
    let config = crate::load(Some(&args.config))
        .map_err(|e| Failure::usage(format!("--config {}: {e}", args.config.display())))?;
    let Some(audit) = config.audit.as_ref() else {
        return Err(Failure::usage(format!(
            "--config {} has no [audit] section: the evidence is read from the audit log",
            args.config.display()
        )));
    };
    let config_text = std::fs::read_to_string(&args.config).map_err(|e| {
        Failure::new(
            EXIT_NO_INPUT,
            format!("--config {}: cannot read it: {e}", args.config.display()),
        )
    })?;
    let wording = sidelight_data::narration::prepare(&config, Vec::new())
        .map_err(|e| Failure::usage(format!("--config {}: {e}", args.config.display())))?;
    let surrogates = surrogate_histories(&config);
    let keys = load_keys(audit.key_file.as_deref())?;
    let (store, label): (Box<dyn AuditStore>, String) = match audit.backend {
        AuditBackend::Sqlite => (
            Box::new(open_store(&audit.path, keys.clone())?),
            audit.path.display().to_string(),
        ),
        AuditBackend::Postgres => {
            let (store, label) = crate::report::open_postgres(audit, &args.config, keys.clone())?;
            (Box::new(store), label)
        }
    };
    let input = PackInput {
        config: &config,
        config_text: Some(&config_text),
        keys: &keys,
        narrator: config
            .routes
            .iter()
            .any(|r| r.explain.is_some())
            .then_some(&*wording.narrator),
        period,
        in_service: None,
        surrogates,
        now_ms: now,
    };
    let pack = match evidence::export(store, &input) {
        Ok(pack) => pack,
        Err(EvidenceError::Report(ReportError::Store(e))) => {
            return Err(store_failure(&e, Path::new(&label)));
        }
        Err(EvidenceError::Report(e @ ReportError::Period(_))) => {
            return Err(Failure::usage(e.to_string()));
        }
        Err(e) => return Err(Failure::data(e.to_string())),
    };
    let mut file = std::fs::File::create(&args.out).map_err(|e| {
        Failure::new(
            EXIT_CANT_CREATE,
            format!("--out {}: cannot create it: {e}", args.out.display()),
        )
    })?;
    file.write_all(&pack)
        .and_then(|()| file.sync_all())
        .map_err(|e| {
            Failure::new(
                EXIT_IO,
                format!("--out {}: writing failed: {e}", args.out.display()),
            )
        })?;
    eprintln!(
        "sidelight evidence export: {} bytes written to {}; check it with `sidelight evidence verify {}`",
        pack.len(),
        args.out.display(),
        args.out.display()
    );
    Ok(())
}

/// Every route's version history as the proxy saved it (`<state>/<route>.versions.json`);
/// a route without one (never trained here, or a fleet's) has `null`.
fn surrogate_histories(config: &sidelight_config::Config) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for route in config.routes.iter().filter(|r| r.explain.is_some()) {
        let path = config
            .state
            .dir
            .join(format!("{}.versions.json", route.name));
        let history = std::fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or(serde_json::Value::Null);
        out.insert(route.name.clone(), history);
    }
    serde_json::Value::Object(out)
}

fn verify(args: &VerifyArgs) -> Result<(), Failure> {
    let file = std::fs::File::open(&args.pack).map_err(|e| {
        Failure::new(
            EXIT_NO_INPUT,
            format!("{}: cannot open it: {e}", args.pack.display()),
        )
    })?;
    let key = match &args.evidence_key_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Failure::new(
                    EXIT_NO_INPUT,
                    format!(
                        "--evidence-key-file {}: cannot read it: {e}",
                        path.display()
                    ),
                )
            })?;
            hex::decode(text.trim())
                .ok()
                .filter(|k| k.len() == 32)
                .ok_or_else(|| {
                    Failure::data(format!(
                        "--evidence-key-file {}: not an evidence key (64 hex digits, as `sidelight evidence key` prints)",
                        path.display()
                    ))
                })?
        }
        None => load_keys(args.key_file.as_deref())?.evidence_key().to_vec(),
    };
    match evidence::verify(std::io::BufReader::new(file), &key) {
        Ok(verified) if !verified.manifest.log.intact => Err(Failure::data(format!(
            "{}: the pack is authentic, but it records that the audit log was NOT intact when it was made (see verification.json)",
            args.pack.display()
        ))),
        Ok(verified) => {
            let m = &verified.manifest;
            println!(
                "{}: verified: {} file(s) match the signed manifest; period {} to {}; made {} by Sidelight {}; the log was intact at seq {} ({} record(s))",
                args.pack.display(),
                verified.files,
                m.period.from,
                m.period.to,
                m.created_at,
                m.sidelight_version,
                m.log.last_seq,
                m.log.records
            );
            Ok(())
        }
        Err(e) => Err(Failure::data(format!("{}: {e}", args.pack.display()))),
    }
}

fn print_key(args: &KeyArgs) -> Result<(), Failure> {
    let keys = load_keys(args.key_file.as_deref())?;
    println!("{}", hex::encode(keys.evidence_key()));
    Ok(())
}
