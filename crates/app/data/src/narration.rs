//! Start-up of the narrator: the built-in wording, the files of `narration.dir` and
//! any embedded sources (the demo's), and every route's own sentences, all checked
//! before a request is served. `sidelight-narrate` is pure; the file I/O is here.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use sidelight_narrate::{
    FtlSource, Narrator, Origin, OverrideSpec, OverrideText, RouteOverrides, RouteOverridesSpec,
};

use crate::config::{Config, ConfigError, WordingConfig};

/// The checked wording of one config: the narrator and each explained route's overrides.
pub struct Wording {
    pub narrator: Arc<Narrator>,
    /// Route name -> its compiled overrides.
    pub routes: HashMap<String, RouteOverrides>,
}

/// Builds the narrator from the built-in files, `extra` (embedded by the caller) and
/// the files of `narration.dir`, then compiles every route's wording against it. Every
/// error names the file and line to fix.
pub fn prepare(config: &Config, extra: Vec<FtlSource>) -> Result<Wording, ConfigError> {
    let mut sources = extra;
    if let Some(dir) = &config.narration.dir {
        sources.extend(read_dir(dir)?);
    }
    let invalid_dir = |message: String| ConfigError::Invalid {
        key: "narration.dir".to_owned(),
        message,
    };
    let narrator = Narrator::builtin()
        .map_err(|e| invalid_dir(format!("the built-in wording does not load: {e}")))?
        .with_overrides(sources)
        .map_err(|e| invalid_dir(e.to_string()))?;
    // Only read when a route has wording: errors then point at its line.
    let config_text = config
        .routes
        .iter()
        .any(|r| r.explain.as_ref().is_some_and(|e| has_wording(&e.wording)))
        .then(|| {
            config
                .file
                .as_deref()
                .and_then(|f| std::fs::read_to_string(f).ok())
        })
        .flatten()
        .unwrap_or_default();
    let file_name = config
        .file
        .as_deref()
        .map_or_else(|| "config".to_owned(), |f| f.display().to_string());
    let mut routes = HashMap::new();
    for (i, route) in config.routes.iter().enumerate() {
        let Some(explain) = &route.explain else {
            continue;
        };
        // The route's own notice sentences are given no variables.
        for part in ["title", "purpose"] {
            let id = sidelight_narrate::notice_message_id(&route.name, part);
            narrator
                .check_plain(&id)
                .map_err(|e| ConfigError::Invalid {
                    key: "narration.dir".to_owned(),
                    message: e.to_string(),
                })?;
        }
        for (j, reason) in explain.reasons.iter().enumerate() {
            let key = format!("routes[{i}].explain.reasons[{j}]");
            let worded = narrator
                .check_reason(&reason.code)
                .map_err(|e| ConfigError::Invalid {
                    key: format!("{key}.code"),
                    message: e.to_string(),
                })?;
            if !worded && reason.statement.is_none() {
                return Err(ConfigError::Invalid {
                    key: format!("{key}.statement"),
                    message: format!(
                        "reason `{}` has no statement: give one here, or a `{}` message in the \
                         English narration files",
                        reason.code,
                        sidelight_narrate::reason_message_id(&reason.code)
                    ),
                });
            }
        }
        let spec = route_spec(&explain.wording, &file_name, &config_text);
        let overrides = narrator
            .compile_overrides(&spec)
            .map_err(|e| ConfigError::Invalid {
                key: format!("routes[{i}].explain.wording"),
                message: e.to_string(),
            })?;
        routes.insert(route.name.clone(), overrides);
    }
    Ok(Wording {
        narrator: Arc::new(narrator),
        routes,
    })
}

fn has_wording(wording: &WordingConfig) -> bool {
    wording.decision.is_some() || !wording.features.is_empty()
}

/// Reads `dir/<locale>/*.ftl`, in name order so that the result does not depend on the
/// file system's order.
fn read_dir(dir: &Path) -> Result<Vec<FtlSource>, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        key: "narration.dir".to_owned(),
        message,
    };
    let sorted = |path: &Path| -> Result<Vec<std::path::PathBuf>, ConfigError> {
        let mut entries = std::fs::read_dir(path)
            .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?
            .map(|entry| entry.map(|e| e.path()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?;
        entries.sort();
        Ok(entries)
    };
    let is_ftl = |path: &Path| path.extension().is_some_and(|e| e == "ftl");
    let mut sources = Vec::new();
    for entry in sorted(dir)? {
        if entry.is_file() && is_ftl(&entry) {
            // A file beside the locale directories has no language: most likely put
            // one level too high.
            return Err(invalid(format!(
                "{}: .ftl files belong in a directory named after their language, \
                 like {}/en/ or {}/de/",
                entry.display(),
                dir.display(),
                dir.display()
            )));
        }
        if !entry.is_dir() {
            continue;
        }
        let Some(locale) = entry
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_owned)
        else {
            continue;
        };
        for file in sorted(&entry)? {
            if !(file.is_file() && is_ftl(&file)) {
                continue;
            }
            let text = std::fs::read_to_string(&file)
                .map_err(|e| invalid(format!("cannot read {}: {e}", file.display())))?;
            sources.push(FtlSource::new(
                locale.clone(),
                file.display().to_string(),
                text,
            ));
        }
    }
    Ok(sources)
}

/// A route's wording as narrate's spec. A value that is a `custom-…` identifier names a
/// message of the `.ftl` files; anything else is a literal Fluent pattern.
///
/// The line is best-effort: the first line of the config file that contains the value
/// (1 when the value came from an environment variable or no file was read), since the
/// config parser does not keep positions.
fn route_spec(wording: &WordingConfig, file: &str, config_text: &str) -> RouteOverridesSpec {
    let spec = |value: &str| OverrideSpec {
        text: if is_custom_id(value) {
            OverrideText::Message(value.to_owned())
        } else {
            OverrideText::Pattern(value.to_owned())
        },
        origin: Origin {
            file: file.to_owned(),
            line: line_of(config_text, value),
        },
    };
    RouteOverridesSpec {
        decision: wording.decision.as_deref().map(spec),
        features: wording
            .features
            .iter()
            .map(|(name, value)| (name.clone(), spec(value)))
            .collect(),
    }
}

fn is_custom_id(value: &str) -> bool {
    value.strip_prefix("custom-").is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    })
}

/// The 1-based line of the first line of `value` in `text`, or 1.
fn line_of(text: &str, value: &str) -> usize {
    let first = value.lines().next().unwrap_or_default().trim();
    if first.is_empty() {
        return 1;
    }
    text.lines()
        .position(|line| line.contains(first))
        .map_or(1, |i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_ids_are_messages_and_everything_else_a_pattern() {
        assert!(is_custom_id("custom-credit-decision"));
        assert!(!is_custom_id("custom-"));
        assert!(!is_custom_id("Your loan { $outcome }"));
        assert!(!is_custom_id("customer-decision"));
        let text = "[routes.explain.wording]\ndecision = \"Result: { $outcom }\"\n";
        assert_eq!(line_of(text, "Result: { $outcom }"), 2);
        assert_eq!(line_of(text, "absent"), 1);
    }

    #[test]
    fn a_bad_ftl_file_in_the_narration_dir_is_named_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("de")).unwrap();
        std::fs::write(
            dir.path().join("de/credit.ftl"),
            "feature-duration_months = Laufzeit\n\nfeature-x = { $oops\n",
        )
        .unwrap();
        let mut config = Config::default();
        config.narration.dir = Some(dir.path().to_owned());
        let Err(ConfigError::Invalid { key, message }) = prepare(&config, Vec::new()) else {
            panic!("accepted a bad file");
        };
        assert_eq!(key, "narration.dir");
        assert!(message.contains("de/credit.ftl:3"), "{message}");
    }
}
