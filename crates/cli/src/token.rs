//! `sidelight token`: admin API tokens. `new` makes a random token and prints the config
//! entry that lets it in (its SHA-256, never the token); `hash` prints the SHA-256 of a
//! token read from standard input, for tokens made elsewhere.
//!
//! Also the `--token` option of the commands that call a running proxy's admin API.

use std::io::Read;
use std::process::ExitCode;

use sidelight_config::{ADMIN_TOKEN_VARIABLE, Role, parse_rfc3339};

/// Tokens shorter than this are refused by `token hash`: too easy to guess.
const MIN_TOKEN_LEN: usize = 16;

#[derive(clap::Args)]
pub(crate) struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(clap::Subcommand)]
enum TokenCommand {
    /// Make a new random token. Prints the token (once: it is not kept anywhere) on the
    /// first line of standard output, then the [[admin.tokens]] entry to add to the
    /// config, which holds only the token's SHA-256.
    New {
        /// Who will hold it; shown in logs and in the audit log's admin records.
        #[arg(long)]
        name: String,
        /// What it may do: viewer, reviewer, auditor or admin (each includes the ones
        /// before it).
        #[arg(long)]
        role: Role,
        /// When it stops working, RFC 3339 (2026-12-31T00:00:00Z).
        #[arg(long, value_name = "RFC3339")]
        expires: Option<String>,
    },
    /// Read a token from standard input and print its SHA-256, the `sha256` of its
    /// [[admin.tokens]] entry.
    Hash,
}

/// The bearer token for a command's calls to the admin API.
#[derive(clap::Args)]
pub(crate) struct AdminToken {
    /// The admin API token. Prefer the environment variable: a command line can be read
    /// by other users of the machine.
    #[arg(long = "token", value_name = "TOKEN", env = ADMIN_TOKEN_VARIABLE, hide_env_values = true)]
    token: Option<String>,
}

impl AdminToken {
    /// The `Authorization` header value, if a token was given.
    pub(crate) fn authorization(&self) -> Option<String> {
        self.token
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| format!("Bearer {t}"))
    }

    /// Runs `call` with the request headers that carry the token.
    pub(crate) fn with_headers<T>(&self, call: impl FnOnce(&[(&str, &str)]) -> T) -> T {
        match self.authorization() {
            Some(value) => call(&[("authorization", value.as_str())]),
            None => call(&[]),
        }
    }

    /// What to tell the user when the admin API refused them.
    pub(crate) fn hint(&self, status: u16) -> Option<String> {
        match (status, &self.token) {
            (401, None) => Some(format!(
                "the admin API needs a token: set {ADMIN_TOKEN_VARIABLE} or pass --token"
            )),
            (401, Some(_)) => {
                Some("the token was not accepted (unknown, expired or revoked)".to_owned())
            }
            (403, _) => Some("the token's role may not do this".to_owned()),
            _ => None,
        }
    }
}

pub(crate) fn run(args: TokenArgs) -> ExitCode {
    match args.command {
        TokenCommand::New {
            name,
            role,
            expires,
        } => new(&name, role, expires.as_deref()),
        TokenCommand::Hash => hash(),
    }
}

fn new(name: &str, role: Role, expires: Option<&str>) -> ExitCode {
    if let Some(expires) = expires {
        if parse_rfc3339(expires).is_none() {
            eprintln!(
                "sidelight: --expires `{expires}` is not an RFC 3339 time like 2026-12-31T00:00:00Z"
            );
            return ExitCode::from(crate::EXIT_CONFIG);
        }
    }
    let token = match sidelight_proxy::new_token() {
        Ok(token) => token,
        Err(error) => {
            eprintln!("sidelight: the operating system's random generator failed: {error}");
            return ExitCode::FAILURE;
        }
    };
    // The entry goes through the config's own validation, so that a name the proxy would
    // refuse is refused here, before anyone relies on the token.
    let entry = entry(name, role, &sidelight_proxy::token_sha256(&token), expires);
    if let Err(error) = sidelight_proxy::Config::from_toml_str(&entry) {
        eprintln!("sidelight: {error}");
        return ExitCode::from(crate::EXIT_CONFIG);
    }
    println!("{token}");
    println!();
    print!("{entry}");
    eprintln!(
        "The first line is the token: give it to `{name}` now, it is shown only this once. \
         Add the entry to the config (or to admin.tokens_file) and reload \
         (POST /api/v1/config/reload or SIGHUP) or restart."
    );
    ExitCode::SUCCESS
}

/// The TOML of a `[[admin.tokens]]` entry.
fn entry(name: &str, role: Role, sha256: &str, expires: Option<&str>) -> String {
    let quoted = |text: &str| toml_string(text);
    let mut entry = format!(
        "[[admin.tokens]]\nname = {}\nrole = \"{role}\"\nsha256 = \"{sha256}\"\n",
        quoted(name)
    );
    if let Some(expires) = expires {
        entry.push_str(&format!("expires = {}\n", quoted(expires)));
    }
    entry
}

/// A TOML basic string: quotes and backslashes escaped (names are validated to plain
/// characters anyway).
fn toml_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

fn hash() -> ExitCode {
    let mut input = String::new();
    if let Err(error) = std::io::stdin().read_to_string(&mut input) {
        eprintln!("sidelight: cannot read the token from standard input: {error}");
        return ExitCode::from(crate::EXIT_CONFIG);
    }
    // A trailing newline from `echo` or a file is not part of the token.
    let token = input.trim();
    if token.len() < MIN_TOKEN_LEN || token.chars().any(|c| !c.is_ascii_graphic()) {
        eprintln!(
            "sidelight: a token must be at least {MIN_TOKEN_LEN} visible ASCII characters \
             without spaces (`sidelight token new` makes one)"
        );
        return ExitCode::from(crate::EXIT_CONFIG);
    }
    println!("{}", sidelight_proxy::token_sha256(token));
    ExitCode::SUCCESS
}
