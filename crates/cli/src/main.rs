//! The `sidelight` command. It only parses arguments, sets up logging, loads config and
//! runs the libraries; everything a test would want to exercise lives in
//! `sidelight-proxy`.

mod audit;
mod demo;
mod evidence;
mod explanations;
mod health;
mod logging;
mod probe;
mod report;
mod schema;
mod surrogate;
mod token;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::error::ErrorKind;
use clap::{Parser, Subcommand};
use sidelight_proxy::{Config, Sidelight, StartError};

// The proxy allocates and frees small buffers on every request; mimalloc's thread-local
// free lists cost measurably less CPU per request than glibc's malloc (bench/passthrough.py).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit status for a configuration the user must fix (sysexits' EX_USAGE).
const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(
    name = "sidelight",
    version,
    about = "An explainability sidecar: a reverse proxy in front of a model's HTTP API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy in front of the configured upstream.
    Serve {
        /// The TOML config file. Without one, the defaults and SIDELIGHT_* variables apply.
        #[arg(long, short, env = "SIDELIGHT_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Run everything on this machine with no set-up: a demo credit model, Sidelight in
    /// front of it, and traffic replayed from the German credit data set.
    Demo(demo::DemoArgs),
    /// Fit a surrogate of a model to rows and outputs in a CSV file, and explain rows
    /// with it (SHAP values to CSV).
    Surrogate(surrogate::SurrogateArgs),
    /// Work with feature schemas.
    Schema(schema::SchemaArgs),
    /// Check a live explanation against the real model: `explain --probe REQUEST_ID`
    /// runs KernelSHAP through a running proxy and compares it with the surrogate's.
    Explain(probe::ExplainArgs),
    /// Work with the audit log: `verify` checks its hash chain and checkpoints, `export`
    /// writes records as JSON lines or CSV, `erase` forgets a data subject, `subject`
    /// prints the pseudonym of an identifier and `rotate-key` re-seals records under a
    /// new encryption key.
    Audit(audit::AuditArgs),
    /// Write the audit report of a period from the audit log: the system, feature
    /// importance, fairness and alerts, drift, consent, reviews, erasures, and the
    /// verification of the log, as printable HTML with charts, Markdown or JSON.
    Report(report::ReportArgs),
    /// The developer's workbench offline: `export` writes every explained prediction of
    /// a route and period, with one shap_<feature> column per feature, as Parquet or
    /// CSV for notebooks.
    Explanations(explanations::ExplanationsArgs),
    /// The evidence pack for a regulator: `export` writes the report, the log's
    /// verification, the redacted config, the surrogates, the notices and a signed
    /// manifest as one tar archive; `verify` checks a pack offline with the audit key.
    Evidence(evidence::EvidenceArgs),
    /// Admin API tokens: `new` makes one and prints its config entry, `hash` prints the
    /// SHA-256 of a token read from standard input.
    Token(token::TokenArgs),
    /// Ask a running proxy whether it is up (GET /healthz): exit 0 on 2xx, 1 otherwise.
    /// For container health checks in images without curl.
    Health(health::HealthArgs),
    /// Work with config files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a config file (and SIDELIGHT_* variables), and the files it names (wording,
    /// admin.tokens_file, TLS certificates and keys), without starting anything.
    Check {
        /// The TOML config file.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return parse_error(&error),
    };
    match cli.command {
        Command::Serve { config } => serve(config),
        Command::Demo(args) => demo::run(args),
        Command::Surrogate(args) => surrogate::run(args),
        Command::Schema(args) => schema::run(args),
        Command::Explain(args) => probe::run(args),
        Command::Audit(args) => audit::run(args),
        Command::Report(args) => report::run(args),
        Command::Explanations(args) => explanations::run(args),
        Command::Evidence(args) => evidence::run(args),
        Command::Token(args) => token::run(args),
        Command::Health(args) => health::run(args),
        Command::Config {
            command: ConfigCommand::Check { file },
        } => check(&file),
    }
}

/// Prints what clap has to say about the command line and picks the exit status: 0 for
/// `--help` and `--version`, EX_USAGE for everything else, so that a wrong flag exits
/// like every other usage error (clap's own `exit` would use 2).
fn parse_error(error: &clap::Error) -> ExitCode {
    // Printing only fails when stdout or stderr is gone; the status still tells.
    let _ = error.print();
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => ExitCode::SUCCESS,
        // DisplayHelpOnMissingArgumentOrSubcommand too: a bare `sidelight` or
        // `sidelight audit` is a usage error; clap prints the help to stderr for it.
        _ => ExitCode::from(EXIT_CONFIG),
    }
}

fn load(path: Option<&std::path::Path>) -> Result<Config, sidelight_proxy::ConfigError> {
    match path {
        Some(path) => Config::load(path),
        None => Config::load_with_env(None, std::env::vars().collect()),
    }
}

fn check(file: &std::path::Path) -> ExitCode {
    match load(Some(file)).and_then(|config| sidelight_proxy::check_files(&config).map(|()| config))
    {
        Ok(config) => {
            // check_files has read the tokens already; this cannot fail differently.
            let tokens = config.admin.all_tokens().map_or(0, |t| t.len());
            println!(
                "{}: ok (upstream {}, listen {}, admin {}, {} route(s), {tokens} admin token(s))",
                file.display(),
                config.upstream.url,
                config.server.listen,
                config.server.admin_listen,
                config.routes.len()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{}: {error}", file.display());
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

fn serve(path: Option<PathBuf>) -> ExitCode {
    let config = match load(path.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("sidelight: invalid configuration: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Err(error) = logging::init(&config.log) {
        eprintln!("sidelight: {error:#}");
        return ExitCode::from(EXIT_CONFIG);
    }
    match runtime().and_then(|rt| rt.block_on(serve_config(config))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("sidelight: {error:#}");
            let usage = error
                .downcast_ref::<StartError>()
                .is_some_and(|e| matches!(e, StartError::Config(_)));
            ExitCode::from(if usage { EXIT_CONFIG } else { 1 })
        }
    }
}

async fn serve_config(config: Config) -> anyhow::Result<()> {
    let upstream = config.upstream.url.clone();
    let sidelight = Sidelight::bind(config).await?;
    tracing::info!(
        data = %sidelight.data_addr(),
        admin = %sidelight.admin_addr(),
        %upstream,
        "sidelight is serving"
    );
    reload_on_sighup(sidelight.reloader())?;
    let drained = sidelight.run(shutdown_signal()?).await;
    if drained.cut_connections > 0 {
        tracing::warn!(
            connections = drained.cut_connections,
            "some connections were still busy at the end of the grace period"
        );
    }
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Re-reads the config file on every SIGHUP, as `POST /api/v1/config/reload` does: the
/// admin tokens are applied; a file that does not load is logged and changes nothing.
fn reload_on_sighup(reloader: sidelight_proxy::Reloader) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            match reloader.reload().await {
                Ok(report) => tracing::info!(
                    applied = ?report.applied,
                    restart_needed = ?report.restart_needed,
                    tokens = report.tokens,
                    "SIGHUP: config reloaded"
                ),
                Err(error) => {
                    tracing::error!(%error, "SIGHUP: config reload failed; the running config stays")
                }
            }
        }
    });
    Ok(())
}

/// Completes on the first SIGTERM or SIGINT.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}
