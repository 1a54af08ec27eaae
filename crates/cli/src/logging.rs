//! Log set-up: `RUST_LOG` wins over `log.level`; `log.format` picks human or JSON lines.

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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match config.format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}
