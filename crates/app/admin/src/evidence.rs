//! The evidence pack for a regulator: one tar archive with the audit report of a period
//! (HTML and JSON), the verification of the whole log, the config with its secrets
//! removed and its digests, the surrogate versions with their fidelity, every explained
//! route's notice in every language, and a manifest of them all (SHA-256 and size per
//! file) signed with a key derived from the audit key. `sidelight evidence verify`
//! checks a pack offline with that key; `sidelight evidence export`,
//! `GET /api/v1/evidence` and the console's report page make one.
//!
//! What it must never hold: a record's payload, a subject, a token or a key. The report
//! is aggregates only; the config's secrets are removed by name (see [`redact`]).

use std::collections::BTreeMap;
use std::io::Read;

use serde::{Deserialize, Serialize};
use sidelight_audit::{AuditStore, Keys, evidence_mac, evidence_mac_ok, sha256_hex};
use sidelight_config::Config;
use sidelight_data::notice::{FairnessFinding, KeptRecords, Notice, NoticeInput};
use sidelight_narrate::Narrator;
use sidelight_report::{InService, Period, ReportError, ReportInput};

/// The manifest's format, so that a later release can read older packs.
pub const FORMAT: &str = "sidelight-evidence/1";
const MANIFEST: &str = "manifest.json";
const SIGNATURE: &str = "manifest.sig";
/// The largest pack `verify` reads, and the largest file in it.
const MAX_PACK_BYTES: u64 = 512 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error("cannot encode the pack: {0}")]
    Encode(String),
    #[error("the pack is not a readable tar archive: {0}")]
    Archive(String),
    #[error("the pack has no {0}")]
    Missing(&'static str),
    #[error(
        "the manifest's signature does not verify with this key: the manifest was altered, or the pack was made with another audit key"
    )]
    BadSignature,
    #[error(
        "`{0}` is not what the manifest says (its SHA-256 or size differ): the file was altered"
    )]
    Altered(String),
    #[error("`{0}` is listed in the manifest but missing from the pack")]
    Absent(String),
    #[error("`{0}` is in the pack but not in the manifest")]
    Unlisted(String),
    #[error("the manifest is not a {FORMAT} manifest: {0}")]
    Manifest(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManifestFile {
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
}

/// What the pack says about itself; signed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub created_at: String,
    pub sidelight_version: String,
    pub period: PeriodSpan,
    /// The whole log's verification when the pack was made.
    pub log: LogState,
    pub files: Vec<ManifestFile>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeriodSpan {
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogState {
    pub intact: bool,
    pub records: u64,
    pub last_seq: u64,
    pub last_hash: Option<String>,
}

/// What a pack is made from besides the store.
pub struct PackInput<'a> {
    pub config: &'a Config,
    /// The config file's text as it was loaded; redacted before it goes in.
    pub config_text: Option<&'a str>,
    pub keys: &'a Keys,
    /// The routes' wording; `None`: no notices (no explained route).
    pub narrator: Option<&'a Narrator>,
    pub period: Period,
    pub in_service: Option<&'a [InService]>,
    /// Per route, every surrogate version trained with its fidelity (as the proxy keeps
    /// them in `<state>/<route>.versions.json`).
    pub surrogates: serde_json::Value,
    pub now_ms: i64,
}

/// Keys whose values are secret or lead to one: removed from the config in the pack.
/// Matched on the last part of the key.
const SECRET_KEYS: &[&str] = &[
    "sha256",
    "credentials_sha256",
    "secret",
    "password",
    "token",
    "url",
    "url_file",
    "key_file",
    "secret_variable",
    // A chat webhook's URL is itself the credential to post to it.
    "webhook",
];

/// The config text with the value of every key named in [`SECRET_KEYS`] (at any
/// depth, in arrays of tables too) replaced by `"[removed]"`. A text that is not TOML
/// (it was loaded, so it is) yields an error rather than a partial copy.
pub fn redact(text: &str) -> Result<String, EvidenceError> {
    let mut value: toml::Value =
        toml::from_str(text).map_err(|e| EvidenceError::Encode(e.to_string()))?;
    fn walk(value: &mut toml::Value) {
        match value {
            toml::Value::Table(table) => {
                for (key, v) in table.iter_mut() {
                    let secret = SECRET_KEYS.contains(&key.as_str())
                        || key.ends_with("_token")
                        || key.ends_with("_secret")
                        || key.ends_with("_password")
                        // Paths to files holding secrets (tokens_file, secret_file).
                        || key.ends_with("_file");
                    if secret {
                        *v = toml::Value::String("[removed]".to_owned());
                    } else {
                        walk(v);
                    }
                }
            }
            toml::Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut value);
    toml::to_string_pretty(&value).map_err(|e| EvidenceError::Encode(e.to_string()))
}

/// Builds the pack (a tar archive in memory) from `store`.
pub fn export<S: AuditStore>(store: S, input: &PackInput<'_>) -> Result<Vec<u8>, EvidenceError> {
    let report = sidelight_report::build(
        store,
        &ReportInput {
            config: input.config,
            keys: input.keys,
            period: input.period,
            reference: None,
            in_service: input.in_service,
            generated_at_ms: input.now_ms,
        },
        &mut |_| {},
    )?;
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    files.insert(
        "report.html".to_owned(),
        sidelight_report::render_html(&report).into_bytes(),
    );
    files.insert("report.json".to_owned(), json(&report)?);
    files.insert("verification.json".to_owned(), json(&report.verification)?);
    if let Some(text) = input.config_text {
        let redacted = redact(text)?;
        let digests = serde_json::json!({
            "original_sha256": sha256_hex(text.as_bytes()),
            "redacted_sha256": sha256_hex(redacted.as_bytes()),
            "removed_keys": SECRET_KEYS,
        });
        files.insert(
            "config/sidelight.redacted.toml".to_owned(),
            redacted.into_bytes(),
        );
        files.insert("config/digests.json".to_owned(), json(&digests)?);
    }
    files.insert("surrogates.json".to_owned(), json(&input.surrogates)?);

    // The notices, with the period's fairness finding (a running proxy's notice uses
    // its latest check; a pack is about its period).
    let records = KeptRecords::from_config(input.config.audit.as_ref());
    for route in &input.config.routes {
        let (Some(explain), Some(narrator)) = (&route.explain, input.narrator) else {
            continue;
        };
        let fairness = report
            .fairness
            .routes
            .iter()
            .find(|f| f.route == route.name && !f.attributes.is_empty())
            .map(|f| {
                let failing = f
                    .attributes
                    .iter()
                    .any(|a| a.verdict == sidelight_monitor::Verdict::Fail);
                let finding = if failing {
                    FairnessFinding::Disparity
                } else {
                    FairnessFinding::NoDisparity
                };
                (input.period.to_ms.min(input.now_ms), finding)
            });
        for language in narrator.locales() {
            let Some(locale) = sidelight_narrate::Locale::parse(&language) else {
                continue;
            };
            let notice = Notice::build(&NoticeInput {
                route: &route.name,
                explain,
                privacy: &route.privacy,
                review: &route.review,
                monitor: route.monitor.as_ref(),
                records,
                fairness,
                narrator,
                locale: &locale,
                now_ms: input.now_ms,
            });
            let stem = format!("notices/{}.{language}", route.name);
            files.insert(format!("{stem}.html"), notice.html().into_bytes());
            files.insert(format!("{stem}.json"), json(&notice)?);
        }
    }

    let v = &report.verification;
    let manifest = Manifest {
        format: FORMAT.to_owned(),
        created_at: report.generated_at.clone(),
        sidelight_version: env!("CARGO_PKG_VERSION").to_owned(),
        period: PeriodSpan {
            from: report.period.from.clone(),
            to: report.period.to.clone(),
        },
        log: LogState {
            intact: v.ok,
            records: v.records,
            last_seq: v.last_seq,
            last_hash: v.last_hash.clone(),
        },
        files: files
            .iter()
            .map(|(path, bytes)| ManifestFile {
                path: path.clone(),
                sha256: sha256_hex(bytes),
                bytes: bytes.len() as u64,
            })
            .collect(),
    };
    let manifest_bytes = json(&manifest)?;
    let signature = evidence_mac(&input.keys.evidence_key(), &manifest_bytes);
    files.insert(MANIFEST.to_owned(), manifest_bytes);
    files.insert(SIGNATURE.to_owned(), format!("{signature}\n").into_bytes());

    let mtime = u64::try_from(input.now_ms / 1000).unwrap_or(0);
    let mut archive = tar::Builder::new(Vec::new());
    for (path, bytes) in &files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(mtime);
        archive
            .append_data(&mut header, format!("evidence/{path}"), bytes.as_slice())
            .map_err(|e| EvidenceError::Encode(e.to_string()))?;
    }
    archive
        .into_inner()
        .map_err(|e| EvidenceError::Encode(e.to_string()))
}

/// What a verified pack holds.
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    pub manifest: Manifest,
    pub files: usize,
}

/// Checks a pack: the manifest's signature with the evidence key (`Keys::evidence_key`,
/// or as `sidelight evidence key` prints it), then every file against it, and that
/// nothing is in the pack that the manifest does not list. Only regular files under
/// `evidence/`, each once, with no `..` or absolute part, are accepted: a pack that
/// would unpack differently from what was checked is refused.
pub fn verify(pack: impl Read, evidence_key: &[u8]) -> Result<Verified, EvidenceError> {
    let mut archive = tar::Archive::new(pack.take(MAX_PACK_BYTES));
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let entries = archive
        .entries()
        .map_err(|e| EvidenceError::Archive(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| EvidenceError::Archive(e.to_string()))?;
        let raw = entry
            .path()
            .map_err(|e| EvidenceError::Archive(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(EvidenceError::Archive(format!(
                "`{raw}` is not a regular file"
            )));
        }
        let path = raw
            .strip_prefix("evidence/")
            .filter(|rest| {
                !rest.is_empty()
                    && rest
                        .split('/')
                        .all(|part| !part.is_empty() && part != "." && part != "..")
            })
            .ok_or_else(|| {
                EvidenceError::Archive(format!("`{raw}` is not a plain path under evidence/"))
            })?
            .to_owned();
        let mut bytes = Vec::new();
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| EvidenceError::Archive(e.to_string()))?;
        if files.insert(path, bytes).is_some() {
            return Err(EvidenceError::Archive(format!(
                "`{raw}` is in the pack twice"
            )));
        }
    }
    let manifest_bytes = files
        .remove(MANIFEST)
        .ok_or(EvidenceError::Missing(MANIFEST))?;
    let signature = files
        .remove(SIGNATURE)
        .ok_or(EvidenceError::Missing(SIGNATURE))?;
    let signature = String::from_utf8_lossy(&signature);
    if !evidence_mac_ok(evidence_key, &manifest_bytes, &signature) {
        return Err(EvidenceError::BadSignature);
    }
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| EvidenceError::Manifest(e.to_string()))?;
    if manifest.format != FORMAT {
        return Err(EvidenceError::Manifest(format!(
            "its format is `{}`",
            manifest.format
        )));
    }
    for listed in &manifest.files {
        let bytes = files
            .remove(&listed.path)
            .ok_or_else(|| EvidenceError::Absent(listed.path.clone()))?;
        if bytes.len() as u64 != listed.bytes || sha256_hex(&bytes) != listed.sha256 {
            return Err(EvidenceError::Altered(listed.path.clone()));
        }
    }
    if let Some(extra) = files.into_keys().next() {
        return Err(EvidenceError::Unlisted(extra));
    }
    let count = manifest.files.len();
    Ok(Verified {
        manifest,
        files: count,
    })
}

/// Pretty JSON, as bytes.
fn json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, EvidenceError> {
    serde_json::to_vec_pretty(value).map_err(|e| EvidenceError::Encode(e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn tar_of(entries: &[(&str, &[u8], tar::EntryType)]) -> Vec<u8> {
        let mut archive = tar::Builder::new(Vec::new());
        for (path, bytes, kind) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(*kind);
            archive.append_data(&mut header, path, *bytes).unwrap();
        }
        archive.into_inner().unwrap()
    }

    #[test]
    fn a_pack_that_would_unpack_otherwise_than_it_was_checked_is_refused() {
        let key = [7u8; 32];
        let regular = tar::EntryType::Regular;
        for (entries, why) in [
            (
                vec![
                    ("evidence/report.html", &b"a"[..], regular),
                    ("evidence/report.html", &b"b"[..], regular),
                ],
                "twice",
            ),
            (
                vec![("report.html", &b"a"[..], regular)],
                "not a plain path",
            ),
            (
                vec![("evidence/link", &b""[..], tar::EntryType::Symlink)],
                "not a regular file",
            ),
        ] {
            let pack = tar_of(&entries);
            let error = verify(pack.as_slice(), &key).unwrap_err().to_string();
            assert!(error.contains(why), "{why}: {error}");
        }
        // A name with `..`, written into the header by hand (the builder refuses it).
        let mut header = tar::Header::new_gnu();
        header.set_size(1);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        let name = b"evidence/../x";
        header.as_old_mut().name[..name.len()].copy_from_slice(name);
        header.set_cksum();
        let mut pack = header.as_bytes().to_vec();
        pack.extend_from_slice(b"a");
        pack.resize(512 * 2, 0);
        pack.resize(512 * 4, 0);
        let error = verify(pack.as_slice(), &key).unwrap_err().to_string();
        assert!(error.contains("not a plain path"), "{error}");
    }

    #[test]
    fn secrets_are_removed_at_any_depth_and_the_rest_is_kept() {
        let text = r#"
[server]
listen = "0.0.0.0:8080"
[server.trust]
credentials_sha256 = ["ab"]
[audit]
backend = "postgres"
url = "postgres://sidelight:hunter2@db/audit"
key_file = "/etc/sidelight/audit.key"
[alerts]
webhook = "https://hooks.slack.com/services/T0/B0/XYZ"
secret_file = "/etc/sidelight/alert.secret"
[admin]
tokens_file = "/etc/sidelight/tokens.toml"
[[admin.tokens]]
name = "ops"
sha256 = "0123"
role = "admin"
"#;
        let out = redact(text).unwrap();
        for secret in [
            "hunter2",
            "0123",
            "audit.key",
            "\"ab\"",
            "XYZ",
            "alert.secret",
            "tokens.toml",
        ] {
            assert!(!out.contains(secret), "{secret} left in:\n{out}");
        }
        for kept in ["0.0.0.0:8080", "ops", "postgres\""] {
            assert!(out.contains(kept), "{kept} lost:\n{out}");
        }
    }
}
