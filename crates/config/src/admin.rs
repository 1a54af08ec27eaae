//! Configuration of who may use the admin API, and of TLS on the listeners.
//!
//! The admin API is reached with bearer tokens. The config never holds a token, only the
//! SHA-256 digest of one (`sidelight token new` makes a token and prints its entry), so a
//! printed or leaked config grants nothing. Entries are `[[admin.tokens]]` tables, or come
//! from `admin.tokens_file`, a TOML file of `[[tokens]]` entries (where secrets are
//! usually mounted), or from `SIDELIGHT_ADMIN__TOKENS` as an inline TOML array. All of
//! them are read again by a config reload, which is how a token is revoked.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use figment::Figment;
use figment::providers::{Format, Toml};
use serde::{Deserialize, Serialize};

use super::ConfigError;

/// The admin API's access rules (`[admin]`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// The tokens that may call the admin API, by the SHA-256 of each. With none at all
    /// (here or in `tokens_file`), every `/api/v1` endpoint answers 401.
    pub tokens: Vec<TokenConfig>,
    /// A TOML file of more `[[tokens]]` entries, read at start-up and on every reload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_file: Option<PathBuf>,
    /// Ask a viewer token for `/metrics` too. Off, scrapers need no token; `/healthz` and
    /// `/readyz` are always open (orchestrators' probes carry none).
    pub metrics_token_required: bool,
    /// TLS on the admin listener (`server.admin_listen`); absent, plain HTTP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// The developer's workbench (`/api/v1/explanations/…`): how much one question may
    /// read from the audit store.
    pub workbench: WorkbenchConfig,
}

/// `[admin.workbench]`: bounds on the workbench's reads of the audit store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkbenchConfig {
    /// The most explained rows one question (a summary, a cohort, an export) reads;
    /// a longer period is answered as cut short, or, for an export, refused.
    pub max_rows: usize,
    /// The longest one question may read for.
    #[serde(with = "humantime_serde")]
    pub time_budget: std::time::Duration,
}

impl Default for WorkbenchConfig {
    fn default() -> Self {
        Self {
            max_rows: 100_000,
            time_budget: std::time::Duration::from_secs(10),
        }
    }
}

/// The largest `admin.workbench.max_rows`: about 2 GiB of rows at 100 features.
pub(crate) const MAX_WORKBENCH_ROWS: usize = 2_000_000;

/// What a token may do. Each role may do everything the roles before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Aggregates only: surrogates and their fidelity, inferred schemas, metrics.
    Viewer,
    /// The review queue, and the records it shows.
    Reviewer,
    /// Records, the probe check, reports, verification, exports.
    Auditor,
    /// Erasure, key rotation, config reload.
    Admin,
}

impl Role {
    /// Every role, least first.
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Reviewer, Role::Auditor, Role::Admin];

    /// The name used in the config and in answers.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Reviewer => "reviewer",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is none of the four.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a role; use viewer, reviewer, auditor or admin")]
pub struct UnknownRole(pub String);

impl std::str::FromStr for Role {
    type Err = UnknownRole;

    fn from_str(text: &str) -> Result<Self, UnknownRole> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == text)
            .ok_or_else(|| UnknownRole(text.to_owned()))
    }
}

/// One token that may call the admin API (`[[admin.tokens]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds it: logged and put in the audit record of every action taken with it.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// The hex SHA-256 of the token (`sidelight token hash` prints it). Never the token.
    pub sha256: String,
    /// When it stops working, RFC 3339 (`2026-12-31T00:00:00Z`), quoted or as a TOML
    /// date-time. Absent: never.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "expiry"
    )]
    pub expires: Option<String>,
    /// Refuse it (401 `token_revoked`) from the next reload on.
    #[serde(default)]
    pub revoked: bool,
}

/// `expires` as written: a string, or a TOML date-time (which figment hands over as a
/// table of its own), kept as RFC 3339 text.
fn expiry<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Expiry {
        Text(String),
        Toml(toml::value::Datetime),
    }
    Ok(
        Option::<Expiry>::deserialize(deserializer)?.map(|expiry| match expiry {
            Expiry::Text(text) => text,
            Expiry::Toml(datetime) => datetime.to_string(),
        }),
    )
}

/// A certificate and its key for a listener (`[server.tls]`, `[admin.tls]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

impl TlsConfig {
    /// `key` is where this table is, e.g. `server.tls`.
    pub fn validate(&self, key: &str) -> Result<(), (String, String)> {
        for (field, path) in [("cert_file", &self.cert_file), ("key_file", &self.key_file)] {
            if path.as_os_str().is_empty() {
                return Err((format!("{key}.{field}"), "must name a PEM file".to_owned()));
            }
        }
        Ok(())
    }
}

/// The shape of `admin.tokens_file`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    #[serde(default)]
    tokens: Vec<TokenConfig>,
}

impl AdminConfig {
    /// Checks the inline entries and the TLS table; `tokens_file` is read by
    /// [`AdminConfig::all_tokens`].
    pub fn validate(&self) -> Result<(), (String, String)> {
        for (i, token) in self.tokens.iter().enumerate() {
            token.validate(&format!("admin.tokens[{i}]"))?;
        }
        unique(
            self.tokens
                .iter()
                .enumerate()
                .map(|(i, t)| (format!("admin.tokens[{i}]"), t)),
        )?;
        if let Some(file) = &self.tokens_file {
            if file.as_os_str().is_empty() {
                return Err((
                    "admin.tokens_file".to_owned(),
                    "must name a TOML file of [[tokens]] entries".to_owned(),
                ));
            }
        }
        if let Some(tls) = &self.tls {
            tls.validate("admin.tls")?;
        }
        if !(1..=MAX_WORKBENCH_ROWS).contains(&self.workbench.max_rows) {
            return Err((
                "admin.workbench.max_rows".to_owned(),
                format!("must be 1 to {MAX_WORKBENCH_ROWS}"),
            ));
        }
        if self.workbench.time_budget.is_zero() {
            return Err((
                "admin.workbench.time_budget".to_owned(),
                "must be longer than zero, e.g. \"10s\"".to_owned(),
            ));
        }
        Ok(())
    }

    /// The inline entries followed by those of `tokens_file`, checked together: a
    /// name or digest used twice is an error wherever the two entries are. Reads the file.
    pub fn all_tokens(&self) -> Result<Vec<TokenConfig>, ConfigError> {
        let invalid = |(key, message): (String, String)| ConfigError::Invalid { key, message };
        self.validate().map_err(invalid)?;
        let mut keyed: Vec<(String, TokenConfig)> = self
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("admin.tokens[{i}]"), t.clone()))
            .collect();
        if let Some(path) = &self.tokens_file {
            for (i, token) in read_tokens_file(path)?.into_iter().enumerate() {
                let key = format!("admin.tokens_file ({}) tokens[{i}]", path.display());
                token.validate(&key).map_err(invalid)?;
                keyed.push((key, token));
            }
        }
        unique(keyed.iter().map(|(key, token)| (key.clone(), token))).map_err(invalid)?;
        Ok(keyed.into_iter().map(|(_, token)| token).collect())
    }
}

fn read_tokens_file(path: &Path) -> Result<Vec<TokenConfig>, ConfigError> {
    // Figment treats a missing file as empty; a named secrets file that is missing is a
    // mistake (an unmounted volume) that would otherwise lock everyone out silently.
    std::fs::metadata(path).map_err(|source| ConfigError::Read {
        path: format!("{} (admin.tokens_file)", path.display()),
        source,
    })?;
    // Read through figment so that errors name the key and the file, as the config's do.
    let file: TokensFile = Figment::from(Toml::file_exact(path))
        .extract()
        .map_err(|e| ConfigError::Parse(e.into()))?;
    Ok(file.tokens)
}

/// No two entries may share a name (the name is who acted, in the audit log) or a digest
/// (one token must mean one role).
fn unique<'a>(
    tokens: impl Iterator<Item = (String, &'a TokenConfig)>,
) -> Result<(), (String, String)> {
    let mut names: HashMap<&str, String> = HashMap::new();
    let mut digests: HashMap<String, String> = HashMap::new();
    for (key, token) in tokens {
        if let Some(other) = names.insert(&token.name, key.clone()) {
            return Err((
                format!("{key}.name"),
                format!("`{}` is also the name of {other}", token.name),
            ));
        }
        if let Some(other) = digests.insert(token.sha256.to_ascii_lowercase(), key.clone()) {
            return Err((
                format!("{key}.sha256"),
                format!("the same digest as {other}: one token, one role"),
            ));
        }
    }
    Ok(())
}

impl TokenConfig {
    fn validate(&self, key: &str) -> Result<(), (String, String)> {
        let err = |field: &str, message: String| Err((format!("{key}.{field}"), message));
        // The name goes into log lines and audit records: keep it to what cannot forge
        // either.
        if self.name.is_empty()
            || self.name.len() > 128
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@' | ':'))
        {
            return err(
                "name",
                format!(
                    "`{}` must be 1 to 128 letters, digits, `_`, `-`, `.`, `@` or `:`",
                    self.name.escape_debug()
                ),
            );
        }
        if self.sha256.len() != 64 || !self.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return err(
                "sha256",
                "must be the 64 hex digits of the token's SHA-256 (`sidelight token hash`), \
                 never the token itself"
                    .to_owned(),
            );
        }
        if let Some(expires) = &self.expires {
            if parse_rfc3339(expires).is_none() {
                return err(
                    "expires",
                    format!("`{expires}` is not an RFC 3339 time like 2026-12-31T00:00:00Z"),
                );
            }
        }
        Ok(())
    }
}

/// Parses an RFC 3339 date-time: `2026-12-31T23:59:59Z`, with optional fractions of a
/// second and a `+01:00`-style offset instead of `Z`.
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    if text.len() < 20 || !text.is_ascii() {
        return None;
    }
    // RFC 3339 allows lower-case `t` and `z`; humantime takes upper case only.
    let text = text.to_ascii_uppercase();
    if text.ends_with('Z') {
        return humantime::parse_rfc3339(&text).ok();
    }
    // humantime knows only `Z`: read the local time as if it were UTC, then take the
    // offset away.
    let (local, offset) = text.split_at(text.len() - 6);
    let sign = match offset.as_bytes()[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (hours, minutes) = offset[1..].split_once(':')?;
    if hours.len() != 2 || minutes.len() != 2 {
        return None;
    }
    let hours: u64 = hours.parse().ok().filter(|h| *h < 24)?;
    let minutes: u64 = minutes.parse().ok().filter(|m| *m < 60)?;
    let shift = Duration::from_secs(hours * 3600 + minutes * 60);
    let as_utc = humantime::parse_rfc3339(&format!("{local}Z")).ok()?;
    if sign > 0 {
        as_utc.checked_sub(shift)
    } else {
        as_utc.checked_add(shift)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_offsets_are_applied() {
        let utc = parse_rfc3339("2026-06-01T12:00:00Z").unwrap();
        assert_eq!(parse_rfc3339("2026-06-01T14:00:00+02:00"), Some(utc));
        assert_eq!(parse_rfc3339("2026-06-01T07:30:00-04:30"), Some(utc));
        assert_eq!(parse_rfc3339("2026-06-01t12:00:00z"), Some(utc));
        assert!(parse_rfc3339("2026-06-01T12:00:00.250Z").is_some());
        for bad in [
            "2026-06-01",
            "tomorrow",
            "2026-06-01T12:00:00+2:00",
            "2026-06-01T12:00:00",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn roles_are_ordered_least_first() {
        assert!(Role::Viewer < Role::Reviewer);
        assert!(Role::Reviewer < Role::Auditor);
        assert!(Role::Auditor < Role::Admin);
        assert_eq!("auditor".parse::<Role>().ok(), Some(Role::Auditor));
        assert!("root".parse::<Role>().is_err());
    }
}
