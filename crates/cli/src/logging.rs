//! Log set-up: `RUST_LOG` wins over `log.level`; `log.format` picks human or JSON lines.
//! Human lines are coloured only on a terminal, and never under `NO_COLOR`: escape codes
//! in a log file or a pipe are noise that every reader has to strip.

use std::io::IsTerminal;

use anyhow::Context;
use sidelight_config::{LogConfig, LogFormat};
use tracing_subscriber::EnvFilter;

pub(crate) fn init(config: &LogConfig) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(value) if !value.trim().is_empty() => EnvFilter::try_new(&value)
            .with_context(|| format!("RUST_LOG `{value}` is not a valid filter"))?,
        _ => EnvFilter::try_new(&config.level).with_context(|| {
            format!(
                "invalid value for key `log.level`: `{}` is not a valid filter",
                config.level
            )
        })?,
    };
    let colour = colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    let result = match config.format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}

/// Whether to colour: on a terminal, unless `NO_COLOR` is set to anything but the empty
/// string (https://no-color.org).
fn colour(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|value| value.is_empty())
}

#[cfg(test)]
mod tests {
    use super::colour;
    use std::ffi::OsStr;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(colour(true, Some(OsStr::new(""))));
        assert!(!colour(true, Some(OsStr::new("1"))));
        assert!(!colour(false, None));
    }
}
