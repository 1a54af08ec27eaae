//! `sidelight health`: asks a running proxy's `/healthz` whether it is up, for container
//! health checks (Docker's HEALTHCHECK, an exec probe) in an image that has no curl.
//!
//! Exit status: 0 when the URL answers 2xx, 1 otherwise, with one line on stderr saying
//! why. Nothing is printed on success, so a healthcheck log stays quiet.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

#[derive(Args)]
pub(crate) struct HealthArgs {
    /// The URL to ask; any 2xx answer means healthy.
    #[arg(
        long,
        value_name = "URL",
        default_value = "http://127.0.0.1:9100/healthz"
    )]
    url: String,
    /// How long to wait for the answer ("2s", "500ms").
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_timeout)]
    timeout: Duration,
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(timeout) if !timeout.is_zero() => Ok(timeout),
        Ok(_) => Err("must be more than zero".to_owned()),
        Err(error) => Err(format!("{error} (write it as 2s or 500ms)")),
    }
}

pub(crate) fn run(args: HealthArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("sidelight: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // /healthz needs no token; sending none also keeps a token out of a probe's config.
    match runtime.block_on(sidelight_proxy::admin_get(&args.url, &[], args.timeout)) {
        Ok((status, _)) if (200..300).contains(&status) => ExitCode::SUCCESS,
        Ok((status, _)) => {
            eprintln!("sidelight: {} answered {status}: unhealthy", args.url);
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("sidelight: unhealthy: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_durations_above_zero() {
        assert_eq!(parse_timeout("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_timeout("0s").is_err());
        assert!(parse_timeout("soon").is_err());
    }
}
