//! `sidelight-config`: Sidelight's configuration, one TOML file with every key
//! overridable by a `SIDELIGHT_…` variable, parsed and validated.
//!
//! What it must never do: start tasks or threads, open sockets, or read any file but the
//! config file and the `admin.tokens_file` it names (wording and TLS files are read
//! when the proxy binds); put a secret's value in an error message.
//!
//! Nested keys are joined with a double underscore in the environment, so
//! `upstream.request_timeout` is `SIDELIGHT_UPSTREAM__REQUEST_TIMEOUT`. Values from the
//! environment win over the file. Unknown keys are errors, so that a typo is not silently
//! ignored, and every error names the key it is about.

#![warn(missing_docs)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Value};
use figment::{Figment, Metadata, Profile, Provider};
use http::Uri;
use serde::{Deserialize, Serialize};

mod admin;
mod alerts;
mod audit;
mod live;
mod monitor;
mod parse_error;
mod review;
mod trust;

pub use admin::{AdminConfig, Role, TlsConfig, TokenConfig, WorkbenchConfig, parse_rfc3339};
pub use alerts::{ALERT_SECRET_VARIABLE, AlertsConfig};
pub use trust::TrustConfig;

pub use audit::{
    AuditBackend, AuditConfig, AuditDurability, DatabaseUrl, GpcRule, PrivacyConfig, QueueFull,
    SUBJECT_HEADER, StoreFailure,
};
pub use monitor::{AlertBounds, MonitorConfig, ProtectedConfig};
pub use parse_error::{ParseError, ParseErrors};
pub use review::{HoldFallback, ReviewConfig};

pub use live::{
    AttachMode, Audience, DecisionConfig, DistillConfig, ExplainConfig, ExplainLimits,
    FeatureConfig, FeatureKindConfig, GroupConfig, MAX_REASON_CODES, NarrationConfig, OutputConfig,
    ProtocolName, RankingConfig, ReasonConfig, StateConfig, SurrogateConfig, WordingConfig,
};

/// Everything `sidelight serve` needs to run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The listeners and what they accept from clients.
    pub server: ServerConfig,
    /// The model API that requests are forwarded to.
    pub upstream: UpstreamConfig,
    /// Logging.
    pub log: LogConfig,
    /// Where state that must survive a restart is kept.
    pub state: StateConfig,
    /// The wording of explanations: a directory of `.ftl` files.
    pub narration: NarrationConfig,
    /// Named parts of the model API. A request matches the route with the longest
    /// `path_prefix`; requests that match none are forwarded under the route `other`.
    pub routes: Vec<RouteConfig>,
    /// The audit log; absent, nothing is recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditConfig>,
    /// Who may use the admin API (tokens and roles), and TLS on the admin listener.
    pub admin: AdminConfig,
    /// Where the monitors' alerts are delivered (`[routes.monitor.alerts]` says when a
    /// route's alert fires).
    pub alerts: AlertsConfig,
    /// The file this config was read from, if any: errors about values written in it
    /// (a route's wording) name it. Not a key.
    #[serde(skip)]
    pub file: Option<std::path::PathBuf>,
}

/// The data and admin listeners.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address of the data listener, where clients send model requests.
    pub listen: SocketAddr,
    /// Address of the admin listener: health, readiness, metrics.
    pub admin_listen: SocketAddr,
    /// Accept HTTP/2 (prior knowledge, h2c) as well as HTTP/1.1 from clients.
    pub http2: bool,
    /// Threads serving model traffic, each with its own connections and upstream pool.
    /// Defaults to the number of CPUs.
    pub workers: usize,
    /// How long a client connection may sit idle between requests before it is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Hard limit on a request body, in bytes. Larger bodies are refused with 413.
    pub max_body_bytes: u64,
    /// How long a client may take to send a request body, before the time it earns by
    /// sending (`body_min_rate`); slower bodies are refused with 408.
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// Bytes per second of body that earn a client one more second (a large upload at
    /// this rate or faster always fits).
    pub body_min_rate: u64,
    /// Client connections open at once on the data port; past it, new connections wait
    /// in the listen queue until one closes.
    pub max_connections: usize,
    /// Request headers a client may send in one request (HTTP/1.1); more is refused
    /// with 431.
    pub max_headers: usize,
    /// Bytes of request head (request line and headers, HTTP/1.1; the header list,
    /// HTTP/2) a client may send; more is refused with 431.
    pub max_header_bytes: usize,
    /// HTTP/2: how often an idle connection is pinged, and closed if the ping is not
    /// answered within the same time (a peer that vanished without a FIN).
    #[serde(with = "humantime_serde")]
    pub http2_keep_alive: Duration,
    /// Bytes of explanation JSON kept in all for `GET /v1/explanations/{ref}`; the oldest
    /// go first.
    pub explanation_store_bytes: u64,
    /// Bytes of one request's explanation JSON that may be kept by reference; a larger
    /// one is attached in the response body instead (`x-sidelight-status` says so).
    pub explanation_max_bytes: u64,
    /// Threads explanations are computed on, apart from the data workers. Defaults to
    /// the number of CPUs.
    pub compute_threads: usize,
    /// Requests being explained or waiting for the compute pool at once; past it, a
    /// request is served unexplained at once (`explain_overloaded`).
    pub compute_queue: usize,
    /// Whom the data port believes (see `[server.trust]`).
    pub trust: TrustConfig,
    /// On SIGTERM or SIGINT, how long in-flight requests may take to finish.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// TLS on the data listener (`listen`); absent, plain HTTP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
}

/// Which HTTP version is spoken to the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    /// HTTP/1.1 with keep-alive.
    Http1,
    /// HTTP/2 over cleartext with prior knowledge.
    H2c,
}

/// The model API in front of which Sidelight stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// Base URL, `http://host:port` with an optional path prefix that is put in front
    /// of every forwarded path.
    pub url: String,
    /// `http1` or `h2c`.
    pub protocol: UpstreamProtocol,
    /// How long to wait for a TCP connection to the upstream.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// How long to wait for the upstream's response headers once the request is sent.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How long an idle pooled connection to the upstream is kept.
    #[serde(with = "humantime_serde")]
    pub pool_idle_timeout: Duration,
    /// How many idle connections to keep open to the upstream.
    pub pool_max_idle: usize,
}

/// Log output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `human` or `json`.
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `sidelight_proxy=debug`; `RUST_LOG` wins.
    pub level: String,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One readable line per event.
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

/// A named part of the model API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Name used in metrics and logs.
    pub name: String,
    /// Requests whose path starts with this prefix belong to the route.
    pub path_prefix: String,
    /// How much of a JSON request body may be read to inspect it; a larger body is
    /// streamed to the upstream uninspected.
    #[serde(default = "default_inspect_limit")]
    pub inspect_limit_bytes: u64,
    /// Live explanations of this route's predictions; absent, the route is only proxied.
    #[serde(default)]
    pub explain: Option<ExplainConfig>,
    /// Consent defaults, the subject's identifier and per-field privacy rules, for the
    /// training window and the audit log.
    #[serde(default)]
    pub privacy: PrivacyConfig,
    /// Which predictions a person must review, and whether responses wait for them.
    #[serde(default)]
    pub review: ReviewConfig,
    /// Fairness and drift monitoring of the route's explained predictions; absent, none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<MonitorConfig>,
}

impl RouteConfig {
    /// The route's privacy policy: its `[routes.privacy] fields`, and `pseudonymise`
    /// for features marked `pii` without a rule. `key` names the route's config key.
    pub fn privacy_policy(
        &self,
        key: &str,
    ) -> Result<sidelight_audit::PrivacyPolicy, (String, String)> {
        let pii = self
            .explain
            .iter()
            .flat_map(|e| e.features.iter())
            .filter(|f| f.pii)
            .map(|f| f.name.as_str());
        self.privacy.policy(&format!("{key}.privacy"), pii)
    }
}

fn default_inspect_limit() -> u64 {
    1024 * 1024
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9100)),
            http2: true,
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            idle_timeout: Duration::from_secs(60),
            max_body_bytes: 64 * 1024 * 1024,
            body_timeout: Duration::from_secs(30),
            body_min_rate: 16 * 1024,
            max_connections: 10_000,
            max_headers: 100,
            max_header_bytes: 64 * 1024,
            http2_keep_alive: Duration::from_secs(20),
            explanation_store_bytes: 64 * 1024 * 1024,
            explanation_max_bytes: 1024 * 1024,
            compute_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            compute_queue: 256,
            trust: TrustConfig::default(),
            shutdown_grace: Duration::from_secs(30),
            tls: None,
        }
    }
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8000".to_owned(),
            protocol: UpstreamProtocol::Http1,
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(30),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle: 64,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Human,
            level: "info".to_owned(),
        }
    }
}

/// A configuration that could not be read or is not valid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file is missing or unreadable.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file that was asked for.
        path: String,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// The TOML or an environment variable does not fit the expected shape. The message
    /// names the key as written, where it came from, and the closest valid name.
    #[error("{0}")]
    Parse(ParseErrors),
    /// A value has the right type but is not acceptable.
    #[error("invalid value for key `{key}`: {message}")]
    Invalid {
        /// Dotted path of the offending key, e.g. `upstream.url`.
        key: String,
        /// What is wrong and what would be accepted.
        message: String,
    },
}

/// The environment variables that override keys, as pairs, so that callers (and tests)
/// can pass a map instead of the process environment.
pub type EnvOverrides = Vec<(String, String)>;

impl Config {
    /// Reads `path`, applies `SIDELIGHT_…` variables from the process environment, and
    /// validates the result.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with_env(Some(path), std::env::vars().collect())
    }

    /// Like [`Config::load`], with the environment given explicitly. `path` may be `None`
    /// to start from the defaults.
    pub fn load_with_env(path: Option<&Path>, env: EnvOverrides) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = path {
            // Figment treats a missing file as empty; a user who names a file means it.
            std::fs::metadata(path).map_err(|source| ConfigError::Read {
                path: path.display().to_string(),
                source,
            })?;
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(EnvOverridesProvider(env));
        let mut config: Config = figment
            .extract()
            .map_err(|e| ConfigError::Parse(e.into()))?;
        config.file = path.map(Path::to_path_buf);
        config.validate()?;
        Ok(config)
    }

    /// Parses a TOML document (no environment) and validates it.
    pub fn from_toml_str(toml: &str) -> Result<Self, ConfigError> {
        let config: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(toml))
            .extract()
            .map_err(|e| ConfigError::Parse(e.into()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what types alone cannot: URLs, non-zero limits, unique route names.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            key: key.to_owned(),
            message,
        };
        self.upstream.base()?;
        for (key, value) in [
            ("upstream.connect_timeout", self.upstream.connect_timeout),
            ("upstream.request_timeout", self.upstream.request_timeout),
            ("server.idle_timeout", self.server.idle_timeout),
            ("server.body_timeout", self.server.body_timeout),
            ("server.http2_keep_alive", self.server.http2_keep_alive),
        ] {
            if value.is_zero() {
                return Err(invalid(key, "must be longer than zero".to_owned()));
            }
        }
        if self.server.workers == 0 {
            return Err(invalid("server.workers", "must be at least 1".to_owned()));
        }
        if self.server.body_min_rate == 0 {
            return Err(invalid(
                "server.body_min_rate",
                "must be at least 1 (byte per second)".to_owned(),
            ));
        }
        if self.server.max_connections == 0 {
            return Err(invalid(
                "server.max_connections",
                "must be at least 1".to_owned(),
            ));
        }
        for (key, value) in [
            ("server.max_headers", self.server.max_headers as u64),
            ("server.compute_threads", self.server.compute_threads as u64),
            ("server.compute_queue", self.server.compute_queue as u64),
            (
                "server.explanation_store_bytes",
                self.server.explanation_store_bytes,
            ),
            (
                "server.explanation_max_bytes",
                self.server.explanation_max_bytes,
            ),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be at least 1".to_owned()));
            }
        }
        // hyper reads a request head into a buffer of at least 8 KiB.
        if self.server.max_header_bytes < 8192 {
            return Err(invalid(
                "server.max_header_bytes",
                "must be at least 8192".to_owned(),
            ));
        }
        self.server
            .trust
            .validate()
            .map_err(|(key, message)| invalid(&key, message))?;
        if self.server.max_body_bytes == 0 {
            return Err(invalid(
                "server.max_body_bytes",
                "must be at least 1".to_owned(),
            ));
        }
        if self.server.listen == self.server.admin_listen && self.server.listen.port() != 0 {
            return Err(invalid(
                "server.admin_listen",
                format!(
                    "must differ from server.listen ({}); the admin API needs its own port",
                    self.server.listen
                ),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for (i, route) in self.routes.iter().enumerate() {
            let key = |field: &str| format!("routes[{i}].{field}");
            if route.name.is_empty() || route.name == OTHER_ROUTE {
                return Err(invalid(
                    &key("name"),
                    format!(
                        "must be non-empty and not `{OTHER_ROUTE}` (reserved for unmatched requests)"
                    ),
                ));
            }
            // The name labels metrics and names the route's files in the state directory.
            if !route
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
                || route.name.starts_with('.')
            {
                return Err(invalid(
                    &key("name"),
                    format!(
                        "`{}` may use only letters, digits, `_`, `-` and `.`, and not start with `.`",
                        route.name
                    ),
                ));
            }
            if !names.insert(route.name.as_str()) {
                return Err(invalid(
                    &key("name"),
                    format!("`{}` is used by another route", route.name),
                ));
            }
            if !route.path_prefix.starts_with('/') {
                return Err(invalid(
                    &key("path_prefix"),
                    format!("`{}` must start with `/`", route.path_prefix),
                ));
            }
            if let Some(explain) = &route.explain {
                explain
                    .validate(&key("explain"))
                    .map_err(|(key, message)| ConfigError::Invalid { key, message })?;
            }
            route
                .review
                .validate(&key("review"))
                .map_err(|(key, message)| ConfigError::Invalid { key, message })?;
            if route.review.contest_within.is_some() && route.explain.is_none() {
                return Err(invalid(
                    &key("review.contest_within"),
                    "needs [routes.explain]: only explained decisions are recorded and can be contested".to_owned(),
                ));
            }
            if route.review.contest_within.is_some() && self.audit.is_none() {
                return Err(invalid(
                    &key("review.contest_within"),
                    "needs [audit]: a contest is kept with the decision's record".to_owned(),
                ));
            }
            if route.review.alerts && route.monitor.is_none() {
                return Err(invalid(
                    &key("review.alerts"),
                    "needs [routes.monitor]: alerts come from the route's monitor".to_owned(),
                ));
            }
            if let Some(monitor) = &route.monitor {
                if route.explain.is_none() {
                    return Err(invalid(
                        &key("monitor"),
                        "needs [routes.explain]: the monitor watches explained predictions"
                            .to_owned(),
                    ));
                }
                monitor
                    .validate(&key("monitor"))
                    .map_err(|(key, message)| ConfigError::Invalid { key, message })?;
            }
            route
                .privacy
                .validate(&key("privacy"))
                .map_err(|(key, message)| ConfigError::Invalid { key, message })?;
            if route.inspect_limit_bytes > self.server.max_body_bytes {
                return Err(invalid(
                    &key("inspect_limit_bytes"),
                    format!(
                        "{} is above server.max_body_bytes ({})",
                        route.inspect_limit_bytes, self.server.max_body_bytes
                    ),
                ));
            }
        }
        if let Some(audit) = &self.audit {
            audit
                .validate()
                .map_err(|(key, message)| ConfigError::Invalid { key, message })?;
        }
        if let Some(tls) = &self.server.tls {
            tls.validate("server.tls")
                .map_err(|(key, message)| ConfigError::Invalid { key, message })?;
        }
        self.admin
            .validate()
            .map_err(|(key, message)| ConfigError::Invalid { key, message })?;
        self.alerts
            .validate()
            .map_err(|(key, message)| ConfigError::Invalid { key, message })?;
        Ok(())
    }

    /// The top-level sections (and `admin.tls`) in which `other` differs from this
    /// config: what a reload to `other` cannot apply without a restart. The keys a reload
    /// applies live (`admin.tokens`, `admin.tokens_file`, `admin.metrics_token_required`)
    /// are not compared.
    pub fn sections_needing_restart(&self, other: &Config) -> Vec<&'static str> {
        let mut sections = Vec::new();
        let mut differs = |name: &'static str, differ: bool| {
            if differ {
                sections.push(name);
            }
        };
        differs("server", self.server != other.server);
        differs("upstream", self.upstream != other.upstream);
        differs("log", self.log != other.log);
        differs("state", self.state != other.state);
        differs("narration", self.narration != other.narration);
        differs("routes", self.routes != other.routes);
        differs("audit", self.audit != other.audit);
        differs("admin.tls", self.admin.tls != other.admin.tls);
        differs("alerts", self.alerts != other.alerts);
        sections
    }
}

/// The route name for requests that match no configured route.
pub const OTHER_ROUTE: &str = "other";

/// The name of the environment provider, by which an error knows to name the variable.
const ENV_METADATA_NAME: &str = "environment variable";

/// `SIDELIGHT_A__B=v` pairs as a figment provider. Figment's own `Env` reads the process
/// environment; this reads a given list so that tests need not mutate the environment.
struct EnvOverridesProvider(EnvOverrides);

impl Provider for EnvOverridesProvider {
    fn metadata(&self) -> Metadata {
        Metadata::named(ENV_METADATA_NAME).interpolater(|_: &Profile, path: &[&str]| {
            let keys: Vec<String> = path.iter().map(|k| k.to_ascii_uppercase()).collect();
            format!("{ENV_PREFIX}{}", keys.join("__"))
        })
    }

    fn data(&self) -> Result<figment::value::Map<Profile, Dict>, figment::Error> {
        let mut dict = Dict::new();
        for (name, raw) in &self.0 {
            let Some(key) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            // Secrets read by name elsewhere, and the command's own variables: not keys.
            if key.is_empty() || NOT_KEYS.contains(&name.as_str()) {
                continue;
            }
            let path = key.to_ascii_lowercase().replace("__", ".");
            // Values are parsed the way figment parses environment values: numbers,
            // booleans and inline arrays or tables become typed, anything else a string.
            let value: Value = raw.parse().unwrap_or_else(|never| match never {});
            if let Some(nested) = figment::util::nest(&path, value).into_dict() {
                dict = merge_dicts(dict, nested);
            }
        }
        Ok(Profile::Default.collect(dict))
    }
}

fn merge_dicts(mut into: Dict, from: Dict) -> Dict {
    for (key, value) in from {
        let merged = match (into.remove(&key), value) {
            (Some(Value::Dict(_, old)), Value::Dict(tag, new)) => {
                Value::Dict(tag, merge_dicts(old, new))
            }
            (_, new) => new,
        };
        into.insert(key, merged);
    }
    into
}

const ENV_PREFIX: &str = "SIDELIGHT_";

/// `SIDELIGHT_…` variables that are not config keys: secrets, which never go through the
/// config (which can be printed) and are read where they are used, and the `sidelight`
/// command's own settings (`SIDELIGHT_CONFIG` names the file this config is read from).
const NOT_KEYS: &[&str] = &[
    AUDIT_KEY_VARIABLE,
    ADMIN_TOKEN_VARIABLE,
    ALERT_SECRET_VARIABLE,
    "SIDELIGHT_CONFIG",
];

/// The environment variable from which the `sidelight` command's admin API calls take
/// their bearer token (`explain --probe`, `schema infer --from`, `audit erase --admin`).
pub const ADMIN_TOKEN_VARIABLE: &str = "SIDELIGHT_ADMIN_TOKEN";

/// The environment variable with the audit keys (a hex master key, or a keyring).
pub const AUDIT_KEY_VARIABLE: &str = "SIDELIGHT_AUDIT_KEY";

/// The parsed parts of `upstream.url`.
#[derive(Debug, Clone)]
pub struct UpstreamBase {
    /// `http` (TLS to the upstream is not available).
    pub scheme: http::uri::Scheme,
    /// Host and port.
    pub authority: http::uri::Authority,
    /// Path prefix without a trailing slash; empty when the URL has no path.
    pub path_prefix: String,
}

impl UpstreamConfig {
    /// `url` split into the parts a forwarded request is built from; the message names
    /// what is wrong with the URL.
    pub fn base(&self) -> Result<UpstreamBase, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            key: "upstream.url".to_owned(),
            message,
        };
        let uri: Uri = self
            .url
            .parse()
            .map_err(|e| invalid(format!("`{}` is not a URL: {e}", self.url)))?;
        let scheme = uri.scheme().cloned().ok_or_else(|| {
            invalid(format!(
                "`{}` has no scheme; write http://host:port",
                self.url
            ))
        })?;
        if scheme != http::uri::Scheme::HTTP {
            return Err(invalid(format!(
                "scheme `{scheme}` is not supported; use http:// (TLS to the upstream is not available yet)"
            )));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| invalid(format!("`{}` has no host", self.url)))?;
        if uri.query().is_some() {
            return Err(invalid(format!(
                "`{}` must not have a query string",
                self.url
            )));
        }
        let path_prefix = uri.path().trim_end_matches('/').to_owned();
        Ok(UpstreamBase {
            scheme,
            authority,
            path_prefix,
        })
    }
}

#[cfg(test)]
mod tests;
