//! `sidelight audit`: work with the audit log offline.
//!
//! `verify` walks the hash chain and checks the HMAC checkpoints. Exit status: 0 when
//! the log is intact, 1 when it is broken (the report names the first broken record), 65
//! for input that is not usable (not an audit log, wrong or malformed key), 66 for input
//! that is missing (the database or the key file).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use sidelight_audit::{SqliteConfig, SqliteStore, VerifyError, verify};
use sidelight_proxy::{KeyError, load_key};

/// sysexits' EX_DATAERR: the input exists but is not usable.
const EXIT_DATA: u8 = 65;
/// sysexits' EX_NOINPUT: an input file is missing.
const EXIT_NO_INPUT: u8 = 66;

#[derive(Args)]
pub(crate) struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain and the checkpoints; name the first broken record.
    Verify {
        /// The audit database (the `audit.path` of the proxy's config).
        #[arg(long)]
        db: PathBuf,
        /// The checkpoint key file; without it, SIDELIGHT_AUDIT_KEY (hex) is used.
        #[arg(long)]
        key_file: Option<PathBuf>,
    },
}

pub(crate) fn run(args: AuditArgs) -> ExitCode {
    match args.command {
        AuditCommand::Verify { db, key_file } => verify_db(&db, key_file.as_deref()),
    }
}

fn verify_db(db: &Path, key_file: Option<&Path>) -> ExitCode {
    let env_key = std::env::var(sidelight_proxy::config::AUDIT_KEY_VARIABLE).ok();
    let key = match load_key(key_file, env_key.as_deref()) {
        Ok(key) => key,
        Err(error @ KeyError::Read { .. }) => return fail(EXIT_NO_INPUT, &error),
        Err(error) => return fail(EXIT_DATA, &error),
    };
    // Opening creates a missing database; verifying a file that is not there must say so
    // instead of reporting an empty, intact log.
    if !db.is_file() {
        eprintln!("sidelight audit verify: {} does not exist", db.display());
        return ExitCode::from(EXIT_NO_INPUT);
    }
    let store = match SqliteStore::open(
        db,
        SqliteConfig {
            checkpoint_every: 0,
            checkpoint_key: key.clone(),
        },
    ) {
        Ok(store) => store,
        Err(error) => {
            eprintln!(
                "sidelight audit verify: {} is not a usable audit log: {error}",
                db.display()
            );
            return ExitCode::from(EXIT_DATA);
        }
    };
    match verify(&store, &key) {
        Ok(report) => {
            println!(
                "{}: intact: {} record(s), {} checkpoint(s) verified, {} erased; last seq {} hash {}",
                db.display(),
                report.records,
                report.checkpoints,
                report.erased,
                report.last_seq,
                report.last_hash
            );
            ExitCode::SUCCESS
        }
        Err(error @ (VerifyError::KeyMismatch | VerifyError::Store(_))) => fail(EXIT_DATA, &error),
        Err(error) => {
            println!("{}: BROKEN: {error}", db.display());
            ExitCode::from(1)
        }
    }
}

fn fail(code: u8, error: &dyn std::error::Error) -> ExitCode {
    eprintln!("sidelight audit verify: {error}");
    ExitCode::from(code)
}
