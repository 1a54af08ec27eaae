//! Shape errors of a config (an unknown key, a wrong type, an unknown variant), said the
//! way the user wrote the config: the key as a dotted path in the file (or the
//! `SIDELIGHT_…` variable that set it), with the closest valid key when a name is
//! misspelt. figment's own message adds its profile (`default.`), quotes the key inside
//! quotes and lists every valid key without saying which one was meant.

use figment::error::Kind;

/// One config value that does not fit the expected shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The key as the user wrote it: `server.shutdown_grace` in a file,
    /// `SIDELIGHT_SERVER__SHUTDOWN_GRACE` for a variable; empty for the whole document.
    pub key: String,
    /// Where the value came from: `/etc/sidelight.toml`, `environment variable`.
    pub origin: Option<String>,
    /// What is wrong, with the closest valid name when there is one.
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)?;
        } else {
            write!(f, "key `{}`: {}", self.key, self.message)?;
        }
        if let Some(origin) = &self.origin {
            write!(f, " (in {origin})")?;
        }
        Ok(())
    }
}

/// All the shape errors of one extraction (figment reports the first of each value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseErrors(pub Vec<ParseError>);

impl std::fmt::Display for ParseErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl From<figment::Error> for ParseErrors {
    fn from(error: figment::Error) -> Self {
        Self(error.into_iter().map(one).collect())
    }
}

fn one(error: figment::Error) -> ParseError {
    let from_env = error
        .metadata
        .as_ref()
        .is_some_and(|m| m.name == crate::ENV_METADATA_NAME);
    let key = match (&error.metadata, &error.profile) {
        // The variable's own name: what the user set.
        (Some(metadata), Some(profile)) if from_env && !error.path.is_empty() => {
            metadata.interpolate(profile, &error.path)
        }
        _ => dotted(&error.path),
    };
    let origin = error.metadata.as_ref().map(|m| match &m.source {
        Some(figment::Source::File(path)) => path.display().to_string(),
        Some(source) => source.to_string(),
        None => m.name.to_string(),
    });
    let message = match &error.kind {
        Kind::UnknownField(found, expected) => {
            let mut message = format!("unknown key `{found}`");
            match closest(found, expected) {
                Some(best) => message.push_str(&format!("; did you mean `{best}`?")),
                None => message.push_str(&format!("; valid keys here: {}", list(expected))),
            }
            message
        }
        Kind::UnknownVariant(found, expected) => {
            let mut message = format!("unknown value `{found}`");
            match closest(found, expected) {
                Some(best) => message.push_str(&format!("; did you mean `{best}`?")),
                None => message.push_str(&format!("; expected {}", list(expected))),
            }
            message
        }
        Kind::InvalidType(found, expected) => format!("found {found}, expected {expected}"),
        Kind::InvalidValue(found, expected) => {
            format!("invalid value {found}, expected {expected}")
        }
        Kind::MissingField(name) => format!("missing key `{name}`"),
        other => other.to_string().trim_end().to_owned(),
    };
    ParseError {
        key,
        origin,
        message,
    }
}

/// A key path as the rest of the config's messages write it: `routes[0].explain.protocol`.
fn dotted(path: &[String]) -> String {
    let mut key = String::new();
    for part in path {
        if !key.is_empty() && part.parse::<usize>().is_ok() {
            key.push_str(&format!("[{part}]"));
        } else {
            if !key.is_empty() {
                key.push('.');
            }
            key.push_str(part);
        }
    }
    key
}

fn list(names: &[&str]) -> String {
    if names.is_empty() {
        return "none".to_owned();
    }
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The valid name nearest to `found` by edit distance (ignoring case), if it is near
/// enough to be a slip of the keyboard: at most a third of the name's length, and 1 for
/// short names.
fn closest<'a>(found: &str, names: &[&'a str]) -> Option<&'a str> {
    let found = found.to_ascii_lowercase();
    let limit = (found.chars().count() / 3).max(1);
    names
        .iter()
        .map(|name| (levenshtein(&found, &name.to_ascii_lowercase()), *name))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
}

/// The number of single-character insertions, deletions and substitutions that turn `a`
/// into `b`.
fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = Vec::with_capacity(b.len() + 1);
        current.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            let deletion = previous[j + 1] + 1;
            let insertion = current[j] + 1;
            current.push(substitution.min(deletion).min(insertion));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_slips() {
        assert_eq!(levenshtein("shutdown_grase", "shutdown_grace"), 1);
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(levenshtein("listn", "listen"), 1);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
    }

    #[test]
    fn array_items_are_written_with_their_index() {
        let path: Vec<String> = ["routes", "0", "explain", "protocol"]
            .iter()
            .map(|p| (*p).to_owned())
            .collect();
        assert_eq!(dotted(&path), "routes[0].explain.protocol");
    }

    #[test]
    fn only_a_near_name_is_suggested() {
        let names = ["listen", "admin_listen", "shutdown_grace"];
        assert_eq!(closest("listn", &names), Some("listen"));
        assert_eq!(closest("Shutdown_Grase", &names), Some("shutdown_grace"));
        assert_eq!(closest("colour", &names), None);
    }
}
