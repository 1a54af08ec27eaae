//! The demo model API as a standalone process.
//!
//! Run with `cargo run -p sidelight-demo-model -- --listen 127.0.0.1:8000`

use std::net::SocketAddr;
use std::process::ExitCode;

use sidelight_demo_model::server::{PREDICT_PATH, serve};

const DEFAULT_LISTEN: &str = "127.0.0.1:8000";
const USAGE: &str = "usage: demo-model [--listen ADDR]   (default 127.0.0.1:8000)";

/// sysexits.h EX_USAGE.
const EXIT_USAGE: u8 = 64;

#[tokio::main]
async fn main() -> ExitCode {
    let listen = match parse_args(std::env::args().skip(1)) {
        Ok(Some(addr)) => addr,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("demo-model: {message}\n{USAGE}");
            return ExitCode::from(EXIT_USAGE);
        }
    };

    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("demo-model: cannot listen on {listen}: {err}");
            return ExitCode::FAILURE;
        }
    };
    // Print the bound address, which differs from the requested one for port 0.
    let bound = listener.local_addr().unwrap_or(listen);
    println!("demo-model listening on http://{bound} (POST {PREDICT_PATH}); Ctrl-C to stop");

    let shutdown = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            eprintln!("demo-model: cannot wait for Ctrl-C ({err}); stopping");
        }
    };
    match serve(listener, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("demo-model: server failed: {err}");
            ExitCode::FAILURE
        }
    }
}

/// `Ok(None)` means help was requested.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<SocketAddr>, String> {
    let mut listen: Option<String> = None;
    while let Some(arg) = args.next() {
        let value = match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--listen" => args
                .next()
                .ok_or_else(|| "--listen needs an address, e.g. 127.0.0.1:8000".to_owned())?,
            other => match other.strip_prefix("--listen=") {
                Some(value) => value.to_owned(),
                None => return Err(format!("unexpected argument {other:?}")),
            },
        };
        if listen.replace(value).is_some() {
            return Err("--listen given more than once".to_owned());
        }
    }
    let listen = listen.unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    listen
        .parse()
        .map(Some)
        .map_err(|_| format!("--listen: {listen:?} is not an IP:PORT address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<SocketAddr>, String> {
        parse_args(args.iter().map(|a| (*a).to_owned()))
    }

    #[test]
    fn arguments() {
        assert_eq!(parse(&[]).unwrap(), Some(DEFAULT_LISTEN.parse().unwrap()));
        assert_eq!(
            parse(&["--listen", "0.0.0.0:9"]).unwrap(),
            Some("0.0.0.0:9".parse().unwrap())
        );
        assert_eq!(
            parse(&["--listen=[::1]:9"]).unwrap(),
            Some("[::1]:9".parse().unwrap())
        );
        assert_eq!(parse(&["--help"]).unwrap(), None);
        assert!(parse(&["--listen"]).is_err());
        assert!(parse(&["--listen", "localhost"]).is_err());
        assert!(parse(&["--port", "1"]).is_err());
        assert!(parse(&["--listen", "1.2.3.4:5", "--listen", "1.2.3.4:6"]).is_err());
    }
}
