//! `sidelight schema infer`: a route's feature schema inferred from recorded request
//! bodies (one JSON body per line), printed as config TOML to start from.

use std::path::PathBuf;
use std::process::ExitCode;

use sidelight_config::ProtocolName;

/// sysexits' EX_DATAERR and EX_NOINPUT.
const EXIT_DATA: u8 = 65;
const EXIT_NO_INPUT: u8 = 66;

#[derive(clap::Args)]
pub(crate) struct SchemaArgs {
    #[command(subcommand)]
    command: SchemaCommand,
}

#[derive(clap::Subcommand)]
enum SchemaCommand {
    /// Infer feature names and kinds from request bodies and print them as TOML for the
    /// route's [routes.explain] table. (A running proxy serves the same for its recent
    /// traffic at GET /api/v1/schema/{route} on the admin port.)
    Infer {
        /// A file of request bodies, one JSON document per line (JSON Lines); or the
        /// admin URL of a running proxy (http://127.0.0.1:9100), with --route, to infer
        /// from the route's recent traffic.
        #[arg(long)]
        from: String,
        /// With an admin URL: the route whose traffic to use.
        #[arg(long)]
        route: Option<String>,
        /// The wire format of the bodies.
        #[arg(long, value_enum, default_value = "kserve-v1")]
        protocol: Protocol,
        /// With --protocol pointer: a JSON Pointer to the rows in each body.
        #[arg(long, default_value = "")]
        rows_pointer: String,
        /// With --protocol ranking: a JSON Pointer to the context object (the customer)
        /// in each body.
        #[arg(long)]
        context: Option<String>,
        /// With --protocol ranking: a JSON Pointer to the list of candidates.
        #[arg(long)]
        candidates: Option<String>,
        /// With --protocol ranking: the member of each candidate holding its id (not a
        /// feature).
        #[arg(long)]
        id_field: Option<String>,
        /// With an admin URL: the token to call it with.
        #[command(flatten)]
        token: crate::token::AdminToken,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Protocol {
    KserveV1,
    OpenInferenceV2,
    Mlflow,
    Pointer,
    Ranking,
}

pub(crate) fn run(args: SchemaArgs) -> ExitCode {
    let SchemaCommand::Infer {
        from,
        route,
        protocol,
        rows_pointer,
        context,
        candidates,
        id_field,
        token,
    } = args.command;
    if from.starts_with("http://") || from.starts_with("https://") {
        return from_running_proxy(&from, route.as_deref(), &token);
    }
    let from = PathBuf::from(from);
    let text = match std::fs::read_to_string(&from) {
        Ok(text) => text,
        Err(error) => {
            eprintln!("sidelight: cannot read {}: {error}", from.display());
            return ExitCode::from(EXIT_NO_INPUT);
        }
    };
    // Blank lines are skipped, but errors must name the line of the file.
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| (i + 1, line))
        .collect();
    let protocol = match protocol {
        Protocol::KserveV1 => ProtocolName::KserveV1,
        Protocol::OpenInferenceV2 => ProtocolName::OpenInferenceV2,
        Protocol::Mlflow => ProtocolName::Mlflow,
        Protocol::Pointer => ProtocolName::Pointer,
        Protocol::Ranking => ProtocolName::Ranking,
    };
    if matches!(protocol, ProtocolName::Ranking) && (context.is_none() || candidates.is_none()) {
        eprintln!("sidelight: --protocol ranking needs --context and --candidates (JSON Pointers)");
        return ExitCode::from(2);
    }
    let ranking = sidelight_config::RankingConfig {
        context,
        candidates,
        id_field,
        ..Default::default()
    };
    let bodies = lines.iter().map(|(_, line)| line.as_bytes());
    match sidelight_proxy::infer_from_requests(
        protocol,
        Some(&rows_pointer),
        Some(&ranking),
        bodies,
    ) {
        Ok(toml) => {
            print!("{toml}");
            ExitCode::SUCCESS
        }
        Err(sidelight_proxy::SchemaInferError::Request { index, message }) => {
            let line = lines.get(index - 1).map_or(0, |(line, _)| *line);
            eprintln!("sidelight: {}:{line}: {message}", from.display());
            ExitCode::from(EXIT_DATA)
        }
        Err(error) => {
            eprintln!("sidelight: {}: {error}", from.display());
            ExitCode::from(EXIT_DATA)
        }
    }
}

/// Asks a running proxy for the schema of a route's recent traffic.
fn from_running_proxy(
    admin: &str,
    route: Option<&str>,
    token: &crate::token::AdminToken,
) -> ExitCode {
    let Some(route) = route else {
        eprintln!("sidelight: --route is needed with an admin URL");
        return ExitCode::from(crate::EXIT_CONFIG);
    };
    let url = format!("{}/api/v1/schema/{route}", admin.trim_end_matches('/'));
    let answer = crate::runtime().and_then(|rt| {
        token
            .with_headers(|headers| {
                rt.block_on(sidelight_proxy::admin_get(
                    &url,
                    headers,
                    std::time::Duration::from_secs(30),
                ))
            })
            .map_err(anyhow::Error::from)
    });
    match answer {
        Ok((200, toml)) => {
            print!("{toml}");
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            eprintln!("sidelight: {url} answered {status}: {body}");
            if let Some(hint) = token.hint(status) {
                eprintln!("sidelight: {hint}");
            }
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("sidelight: {error:#}");
            ExitCode::from(EXIT_NO_INPUT)
        }
    }
}
