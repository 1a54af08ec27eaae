//! Reloading the config file while Sidelight runs (`POST /api/v1/config/reload`, SIGHUP).

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::json;

use crate::auth::{AccessPolicy, Auth};
use crate::config::{Config, ConfigError};

/// Re-reads the config file Sidelight was started with and applies what can change while
/// it runs: the admin tokens and `admin.metrics_token_required`. Everything else that
/// differs is reported as needing a restart. Cheap to clone; `POST
/// /api/v1/config/reload` and the `sidelight` command's SIGHUP handler share one.
///
/// The file is read with the process environment's `SIDELIGHT_…` variables, as
/// [`Config::load`] does.
#[derive(Clone)]
pub struct Reloader {
    inner: Arc<ReloaderInner>,
}

struct ReloaderInner {
    file: Option<PathBuf>,
    /// The config in force: the one started with, with the live keys of the last
    /// reload. Locked for the whole of a reload, so that two never interleave.
    running: tokio::sync::Mutex<Config>,
    auth: Arc<Auth>,
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    /// The keys applied that changed (`admin.tokens`, `admin.metrics_token_required`).
    pub applied: Vec<&'static str>,
    /// The sections that differ from those in force and need a restart.
    pub restart_needed: Vec<&'static str>,
    /// How many tokens are configured now (revoked and expired ones included).
    pub tokens: usize,
}

impl ReloadReport {
    pub(crate) fn to_json(&self) -> serde_json::Value {
        json!({
            "reloaded": true,
            "applied": self.applied,
            "restart_needed": self.restart_needed,
            "tokens": self.tokens,
        })
    }
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// Sidelight was started without a config file.
    #[error("Sidelight was started without a config file (--config): there is nothing to reload")]
    NoConfigFile,
    /// The file does not load or is not valid; the running config stays.
    #[error("the config file was not applied: {0}")]
    Config(#[from] ConfigError),
    /// The reload itself broke down.
    #[error("the reload failed: {0}")]
    Failed(String),
}

impl Reloader {
    /// The config in effect now (with the tokens a reload applied).
    pub async fn running(&self) -> Config {
        self.inner.running.lock().await.clone()
    }

    pub fn new(config: &Config, auth: Arc<Auth>) -> Self {
        Self {
            inner: Arc::new(ReloaderInner {
                file: config.file.clone(),
                running: tokio::sync::Mutex::new(config.clone()),
                auth,
            }),
        }
    }

    /// The config file reloads read, as text.
    pub(crate) fn file(&self) -> Option<String> {
        self.inner.file.as_ref().map(|f| f.display().to_string())
    }

    /// Reads, validates and applies the config file; on any error nothing changes.
    pub async fn reload(&self) -> Result<ReloadReport, ReloadError> {
        let path = self.inner.file.clone().ok_or(ReloadError::NoConfigFile)?;
        let mut running = self.inner.running.lock().await;
        // Reading files (the config, tokens_file, wording, certificates) blocks.
        let (config, policy) = tokio::task::spawn_blocking(move || {
            let config = Config::load(&path)?;
            // Checked as a restart would check it, so that a file that would not start
            // is not half applied now.
            crate::preflight::check_files(&config)?;
            let policy = AccessPolicy::from_config(&config.admin)?;
            Ok::<_, ConfigError>((config, policy))
        })
        .await
        .map_err(|e| ReloadError::Failed(e.to_string()))??;
        let current = self.inner.auth.policy();
        let mut applied = Vec::new();
        if current.tokens_differ(&policy) {
            applied.push("admin.tokens");
        }
        if current.metrics_token_required != policy.metrics_token_required {
            applied.push("admin.metrics_token_required");
        }
        let report = ReloadReport {
            applied,
            restart_needed: running.sections_needing_restart(&config),
            tokens: policy.token_count(),
        };
        self.inner.auth.replace(policy);
        running.admin.tokens = config.admin.tokens;
        running.admin.tokens_file = config.admin.tokens_file;
        running.admin.metrics_token_required = config.admin.metrics_token_required;
        Ok(report)
    }
}
