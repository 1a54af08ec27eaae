//! Where alerts go, `[alerts]`: a webhook (optional; without one, alerts go to the log
//! and the audit log only), how long a delivery may take, how often it is retried, and
//! the secret that signs each body. The secret is never a TOML value: it comes from
//! `secret_file` or the `SIDELIGHT_ALERT_SECRET` environment variable.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The environment variable that may hold the webhook signing secret.
pub const ALERT_SECRET_VARIABLE: &str = "SIDELIGHT_ALERT_SECRET";

/// Delivery of alerts. The per-route bounds are in `[routes.monitor.alerts]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// `http://` or `https://` URL that each alert is POSTed to as JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    /// How long one delivery attempt may take.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Further attempts after a failed one (an answer other than 2xx, or none).
    pub retries: u32,
    /// The wait before the first retry; it doubles with each retry up to `max_backoff`.
    #[serde(with = "humantime_serde")]
    pub backoff: Duration,
    /// The longest wait between two attempts.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Alerts that may wait for delivery; beyond it new ones are dropped (and counted),
    /// so that a webhook that is down never holds memory without end.
    pub queue: usize,
    /// A file holding the secret that signs each delivery (`x-sidelight-signature:
    /// t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, so that a receiver can
    /// refuse replays); else `SIDELIGHT_ALERT_SECRET`; else deliveries are not signed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            webhook: None,
            timeout: Duration::from_secs(5),
            retries: 5,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            queue: 1000,
            secret_file: None,
        }
    }
}

impl AlertsConfig {
    /// Checks what types cannot; errors name the key.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let key = |k: &str| format!("alerts.{k}");
        if let Some(url) = &self.webhook {
            let uri: http::Uri = url
                .parse()
                .map_err(|e| (key("webhook"), format!("is not a URL: {e}")))?;
            if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.authority().is_none() {
                return Err((
                    key("webhook"),
                    "must be an http:// or https:// URL with a host".to_owned(),
                ));
            }
        }
        if self.timeout.is_zero() {
            return Err((key("timeout"), "must be longer than zero".to_owned()));
        }
        if self.retries > 100 {
            return Err((key("retries"), "must be at most 100".to_owned()));
        }
        if self.backoff.is_zero() {
            return Err((key("backoff"), "must be longer than zero".to_owned()));
        }
        if self.max_backoff < self.backoff {
            return Err((key("max_backoff"), "must be at least `backoff`".to_owned()));
        }
        if !(1..=100_000).contains(&self.queue) {
            return Err((key("queue"), "must be between 1 and 100000".to_owned()));
        }
        Ok(())
    }

    /// The signing secret: `secret_file`'s content (trimmed), else the environment
    /// variable's. Errors name the key, never the secret.
    pub fn secret(&self, env: Option<String>) -> Result<Option<Vec<u8>>, (String, String)> {
        if let Some(path) = &self.secret_file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                (
                    "alerts.secret_file".to_owned(),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            let secret = text.trim();
            if secret.is_empty() {
                return Err((
                    "alerts.secret_file".to_owned(),
                    format!("{} is empty", path.display()),
                ));
            }
            return Ok(Some(secret.as_bytes().to_vec()));
        }
        Ok(env
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .map(String::into_bytes))
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;

    fn invalid_key(toml: &str) -> String {
        match Config::from_toml_str(toml) {
            Err(crate::ConfigError::Invalid { key, .. }) => key,
            other => panic!("expected an invalid key, got {other:?}"),
        }
    }

    const ROUTE: &str = "[[routes]]\nname = \"m\"\npath_prefix = \"/m\"\n\
        [routes.explain]\nprotocol = \"kserve_v1\"\n";

    #[test]
    fn bad_alert_settings_are_named() {
        assert_eq!(
            invalid_key("[alerts]\nwebhook = \"ftp://example.com/x\"\n"),
            "alerts.webhook"
        );
        assert_eq!(
            invalid_key("[alerts]\nbackoff = \"2s\"\nmax_backoff = \"1s\"\n"),
            "alerts.max_backoff"
        );
        assert_eq!(
            invalid_key(&format!("{ROUTE}[routes.monitor]\nmax_age = \"10ms\"\n")),
            "routes[0].monitor.max_age"
        );
        assert_eq!(
            invalid_key(&format!(
                "{ROUTE}[routes.monitor.alerts]\nprotected_share_above = 1.5\n"
            )),
            "routes[0].monitor.alerts.protected_share_above"
        );
        assert_eq!(
            invalid_key(&format!("{ROUTE}[routes.review]\nalerts = true\n")),
            "routes[0].review.alerts"
        );
        let ok = Config::from_toml_str(&format!(
            "[alerts]\nwebhook = \"https://hooks.example.com/x\"\n{ROUTE}\
             [routes.review]\nalerts = true\n[routes.monitor]\nmax_age = \"24h\"\n"
        ));
        assert!(ok.is_ok(), "{ok:?}");
    }
}
