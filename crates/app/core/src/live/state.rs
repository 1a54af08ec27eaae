//! A route's files in `state.dir`: the surrogate in service (`<route>.surrogate.json`)
//! and its version history (`<route>.versions.json`).
//!
//! They are personal data in two ways, and are written accordingly:
//!
//! - **Who trained it.** A surrogate learnt from the training window's rows, and an
//!   erased subject's rows must not live on in it. The saved surrogate lists the
//!   subjects its rows came from as keyed 64-bit digests of their pseudonyms
//!   ([`Keys::subject_digest`]) with the time its rows were taken, so that an erasure,
//!   while Sidelight runs or while it was down, finds every version that saw the subject.
//!   Digests rather than the pseudonyms themselves: 16 hex digits where a pseudonym
//!   takes 35 characters, and nothing in the file joins with the audit log's subjects
//!   without the key; a shared digest only retires a surrogate needlessly.
//! - **What it learnt.** A categorical feature's levels are the values clients sent. For
//!   a feature marked `pii` or `protected` (or given a privacy rule, or monitored as
//!   protected) each level is kept only as its keyed pseudonym
//!   ([`Keys::level_pseudonym`]); a restored surrogate maps a live row's value the same
//!   way before reading it ([`LevelMask`]), so it explains exactly as before. Without an
//!   audit log there is no key, and such a surrogate is not saved at all (it would
//!   otherwise have to forget those levels and explain wrongly after a restart).
//!
//! Files are written 0600 through a temporary file and a rename, and the directory is
//! created 0700.

use std::borrow::Cow;
use std::collections::HashSet;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sidelight_audit::Keys;
use sidelight_explain::{FeatureKind, Surrogate, Value};

/// What the saved surrogate file says it is.
pub const FORMAT: &str = "sidelight-route-surrogate/1";

/// Where a surrogate's training rows came from.
#[derive(Debug, Clone, Default)]
pub struct Provenance {
    /// Keyed digests of the pseudonymous subjects of its training rows (real rows, and
    /// the rows synthetic ones were made from). `None`: not known (a surrogate saved by
    /// an earlier release): any erasure retires it.
    pub subjects: Option<Arc<HashSet<u64>>>,
    /// When its training rows were copied from the window, in ms since the Unix epoch
    /// (0: not known): erasures from then on may concern it.
    pub rows_taken_ms: u64,
    /// The route's count of erasures when its rows were copied (see
    /// [`RouteLive::erased_since`](super::RouteLive::erased_since)).
    pub erasure_epoch: u64,
}

impl Provenance {
    /// A surrogate that learnt from no subject's rows (a configured seed model).
    pub fn no_subjects() -> Self {
        Self {
            subjects: Some(Arc::default()),
            ..Self::default()
        }
    }

    /// Whether its training rows may have come from the subject with this digest.
    pub fn saw(&self, digest: u64) -> bool {
        self.subjects.as_ref().is_none_or(|s| s.contains(&digest))
    }
}

/// How a restored surrogate reads a live row: the levels of some features were saved as
/// pseudonyms, so a value of those features is mapped to its pseudonym first.
#[derive(Clone)]
pub struct LevelMask {
    keys: Keys,
    /// Per schema feature, its name when its levels are pseudonyms.
    features: Vec<Option<String>>,
}

impl std::fmt::Debug for LevelMask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LevelMask")
            .field("features", &self.features)
            .finish_non_exhaustive()
    }
}

impl LevelMask {
    /// The mask of `surrogate` whose features `pseudonymised` were saved as pseudonyms;
    /// `None` when there are none.
    pub fn new(keys: &Keys, surrogate: &Surrogate, pseudonymised: &[String]) -> Option<Self> {
        let features: Vec<Option<String>> = surrogate
            .schema()
            .names()
            .map(|n| pseudonymised.iter().any(|p| p == n).then(|| n.to_owned()))
            .collect();
        features.iter().any(Option::is_some).then(|| Self {
            keys: keys.clone(),
            features,
        })
    }

    /// Whether feature `index`'s levels are pseudonyms.
    pub fn masks(&self, index: usize) -> bool {
        self.features.get(index).is_some_and(Option::is_some)
    }

    /// The row (in schema order) with the values of masked features as their
    /// pseudonyms, read as the encoder reads a level.
    pub fn apply<'a>(&self, row: &'a [Value]) -> Cow<'a, [Value]> {
        let mut out: Option<Vec<Value>> = None;
        for (i, name) in self.features.iter().enumerate() {
            let (Some(name), Some(value)) = (name, row.get(i)) else {
                continue;
            };
            let mapped = match sidelight_explain::encode::level_of(value) {
                Some(level) => Value::Text(self.keys.level_pseudonym(name, &level)),
                None => Value::Missing,
            };
            out.get_or_insert_with(|| row.to_vec())[i] = mapped;
        }
        match out {
            Some(row) => Cow::Owned(row),
            None => Cow::Borrowed(row),
        }
    }
}

/// The saved surrogate file.
#[derive(Serialize, Deserialize)]
struct Envelope {
    format: String,
    version: u64,
    rows_taken_ms: u64,
    /// 16 hex digits each; absent: not known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subjects: Option<Vec<String>>,
    /// Features whose levels are keyed pseudonyms.
    #[serde(default)]
    pseudonymised: Vec<String>,
    surrogate: serde_json::Value,
}

/// A surrogate as read from a state file (or the fleet's table).
pub struct Saved {
    pub surrogate: Surrogate,
    /// The version it was saved as (not known for a file of an earlier release).
    pub version: Option<u64>,
    pub provenance: Provenance,
    /// Features whose levels are pseudonyms.
    pub pseudonymised: Vec<String>,
}

/// Why a saved surrogate could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot encode the surrogate: {0}")]
    Encode(String),
    #[error("not a saved surrogate: {0}")]
    Decode(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// The categorical features among `personal` that `surrogate` learnt levels of.
pub fn personal_levels(surrogate: &Surrogate, personal: &[String]) -> Vec<String> {
    surrogate
        .schema()
        .features()
        .iter()
        .enumerate()
        .filter(|(i, f)| {
            f.kind == FeatureKind::Categorical
                && personal.contains(&f.name)
                && surrogate
                    .encoder()
                    .levels(*i)
                    .is_some_and(|l| !l.is_empty())
        })
        .map(|(_, f)| f.name.clone())
        .collect()
}

/// The surrogate with the levels of `personal` features that are not pseudonyms yet
/// (not in `already`) replaced by their pseudonyms, and every feature whose levels are
/// pseudonyms now.
pub fn pseudonymise(
    surrogate: &Surrogate,
    keys: &Keys,
    personal: &[String],
    already: &[String],
) -> Result<(Surrogate, Vec<String>), StateError> {
    let names: Vec<String> = surrogate.schema().names().map(str::to_owned).collect();
    let todo: Vec<String> = personal_levels(surrogate, personal)
        .into_iter()
        .filter(|n| !already.contains(n))
        .collect();
    let mut all = already.to_vec();
    all.extend(todo.iter().cloned());
    if todo.is_empty() {
        return Ok((surrogate.clone(), all));
    }
    let renamed = surrogate
        .rename_levels(|i, level| match names.get(i) {
            Some(name) if todo.contains(name) => keys.level_pseudonym(name, level),
            _ => level.to_owned(),
        })
        .map_err(|e| StateError::Encode(e.to_string()))?;
    Ok((renamed, all))
}

/// The saved form of a surrogate whose levels of `pseudonymised` features are pseudonyms.
pub fn encode(
    surrogate: &Surrogate,
    version: u64,
    provenance: &Provenance,
    pseudonymised: &[String],
) -> Result<String, StateError> {
    let json = surrogate
        .to_json()
        .map_err(|e| StateError::Encode(e.to_string()))?;
    let surrogate: serde_json::Value =
        serde_json::from_str(&json).map_err(|e| StateError::Encode(e.to_string()))?;
    let subjects = provenance.subjects.as_ref().map(|s| {
        let mut list: Vec<String> = s.iter().map(|d| format!("{d:016x}")).collect();
        list.sort_unstable();
        list
    });
    serde_json::to_string(&Envelope {
        format: FORMAT.to_owned(),
        version,
        rows_taken_ms: provenance.rows_taken_ms,
        subjects,
        pseudonymised: pseudonymised.to_vec(),
        surrogate,
    })
    .map_err(|e| StateError::Encode(e.to_string()))
}

/// Reads a saved surrogate: this release's form, or a bare surrogate file (an earlier
/// release's, whose subjects are not known).
pub fn decode(text: &str) -> Result<Saved, StateError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| StateError::Decode(e.to_string()))?;
    if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
        let surrogate =
            Surrogate::from_json(text).map_err(|e| StateError::Decode(e.to_string()))?;
        return Ok(Saved {
            surrogate,
            version: None,
            provenance: Provenance::default(),
            pseudonymised: Vec::new(),
        });
    }
    let envelope: Envelope =
        serde_json::from_value(value).map_err(|e| StateError::Decode(e.to_string()))?;
    let surrogate = Surrogate::from_json(&envelope.surrogate.to_string())
        .map_err(|e| StateError::Decode(e.to_string()))?;
    let subjects = match envelope.subjects {
        Some(list) => Some(Arc::new(
            list.iter()
                .map(|d| u64::from_str_radix(d, 16))
                .collect::<Result<HashSet<u64>, _>>()
                .map_err(|e| StateError::Decode(format!("subjects: {e}")))?,
        )),
        None => None,
    };
    Ok(Saved {
        surrogate,
        version: Some(envelope.version),
        provenance: Provenance {
            subjects,
            rows_taken_ms: envelope.rows_taken_ms,
            erasure_epoch: 0,
        },
        pseudonymised: envelope.pseudonymised,
    })
}

/// Writes a file readable by its owner only, through a temporary file and a rename, so a
/// crash never leaves half a file and no other user can read it at any moment.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let tmp = path.with_extension("json.tmp");
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| StateError::Io { path, source }
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    // A temporary file left by an earlier release may have been created 0644; the mode
    // given above applies to new files only.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(io(&tmp))?;
    file.write_all(bytes).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Creates the state directory (and its parents) readable by its owner only, when it
/// is missing. An existing directory is left as it is; [`open_to_others`] tells whether
/// it lets other users in.
pub fn create_private_dir(path: &Path) -> std::io::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// Whether users outside the owner and the group may enter, list or write `path` (a
/// group is an operator's deliberate choice, as in the container image). Its files are
/// 0600 whatever the directory's mode; a directory others may write lets them replace
/// those files.
pub fn open_to_others(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o007 != 0)
}

/// Removes a state file; a missing one is not an error.
pub fn remove(path: &Path) -> Result<(), StateError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(StateError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use linfa::ParamGuard;
    use sidelight_explain::{Feature, GbtParams, OutputKind, Schema};

    fn keys() -> Keys {
        Keys::load(None, Some(&"42".repeat(32)), "K").unwrap()
    }

    fn surrogate() -> (Surrogate, Vec<Vec<Value>>) {
        let schema = Schema::new(vec![
            Feature::new("email", FeatureKind::Categorical),
            Feature::new("plan", FeatureKind::Categorical),
            Feature::new("x", FeatureKind::Numeric),
        ])
        .unwrap();
        let rows: Vec<Vec<Value>> = (0..200)
            .map(|i| {
                vec![
                    Value::Text(format!("person{}@example.org", i % 7)),
                    Value::Text(["basic", "gold"][i % 2].to_owned()),
                    Value::Number(i as f64),
                ]
            })
            .collect();
        let outputs: Vec<f64> = (0..200)
            .map(|i| (i % 7) as f64 * 0.3 + (i % 2) as f64 + i as f64 * 0.01)
            .collect();
        let params = GbtParams::default().n_trees(20).check().unwrap();
        let s = Surrogate::fit(schema, &rows, &outputs, OutputKind::Regression, &params).unwrap();
        (s, rows)
    }

    #[test]
    fn pseudonymised_levels_leave_no_raw_value_and_explain_alike_through_the_mask() {
        let (raw, rows) = surrogate();
        let keys = keys();
        let personal = vec!["email".to_owned()];
        let (masked, list) = pseudonymise(&raw, &keys, &personal, &[]).unwrap();
        assert_eq!(list, ["email"]);
        let provenance = Provenance {
            subjects: Some(Arc::new([7u64, 9].into_iter().collect())),
            rows_taken_ms: 5,
            erasure_epoch: 3,
        };
        let text = encode(&masked, 4, &provenance, &list).unwrap();
        assert!(!text.contains("example.org"), "a raw level is saved");
        assert!(text.contains("gold"), "other levels stay readable");
        let saved = decode(&text).unwrap();
        assert_eq!(saved.version, Some(4));
        assert_eq!(saved.provenance.rows_taken_ms, 5);
        assert!(saved.provenance.saw(7) && !saved.provenance.saw(8));
        let mask = LevelMask::new(&keys, &saved.surrogate, &saved.pseudonymised).unwrap();
        for row in rows.iter().step_by(13) {
            assert_eq!(
                raw.predict(row).unwrap(),
                saved.surrogate.predict(&mask.apply(row)).unwrap()
            );
        }
        // A bare surrogate file of an earlier release: no known subjects.
        let legacy = decode(&raw.to_json().unwrap()).unwrap();
        assert!(legacy.provenance.saw(1) && legacy.version.is_none());
    }

    #[test]
    fn state_files_and_the_directory_are_private() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/state");
        create_private_dir(&dir).unwrap();
        assert!(!open_to_others(&dir));
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let shared = root.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o750)).unwrap();
        assert!(!open_to_others(&shared), "a group is the operator's choice");
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(open_to_others(&shared));
        let file = dir.join("m.surrogate.json");
        std::fs::write(dir.join("m.surrogate.json.tmp"), "old").unwrap();
        std::fs::set_permissions(
            dir.join("m.surrogate.json.tmp"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        write_private(&file, b"{}").unwrap();
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
