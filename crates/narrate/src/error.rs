//! The one error type of the crate: a `.ftl` file or a route override that cannot be used.
//!
//! Every variant names the file (as the caller named it) and, where there is one, the
//! 1-based line, so that a start-up failure points at the text to fix.

/// A `.ftl` source or a route override was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NarrateError {
    /// The text is not valid Fluent syntax.
    #[error("{file}:{line}: Fluent syntax error: {message}")]
    Syntax {
        /// The file (or config file of an inline pattern).
        file: String,
        /// 1-based line.
        line: usize,
        /// The parser's description.
        message: String,
    },
    /// A message that the narrator never formats: most likely a typo.
    #[error(
        "{file}:{line}: unknown message `{id}`: a file may define the narrator's messages, \
         `feature-<name>` and `custom-<anything>` (route overrides refer to `custom-` messages)"
    )]
    UnknownMessage {
        /// The file.
        file: String,
        /// 1-based line.
        line: usize,
        /// The message id.
        id: String,
    },
    /// A message uses a variable that the narrator does not pass to it.
    #[error(
        "{file}:{line}: message `{id}` uses `${variable}`, which is not offered to it \
         (offered: {offered})"
    )]
    UnknownVariable {
        /// The file.
        file: String,
        /// 1-based line.
        line: usize,
        /// The message id.
        id: String,
        /// The variable, without `$`.
        variable: String,
        /// The variables that are offered, comma-separated (or "none").
        offered: String,
    },
    /// A message has an attribute that the narrator never reads.
    #[error("{file}:{line}: message `{id}` has attribute `.{attribute}`, allowed: {allowed}")]
    UnknownAttribute {
        /// The file.
        file: String,
        /// 1-based line.
        line: usize,
        /// The message id.
        id: String,
        /// The attribute name.
        attribute: String,
        /// The attributes that are read, comma-separated (or "none").
        allowed: String,
    },
    /// A pattern refers to a message or term that no file of its locale defines.
    #[error("{file}:{line}: `{id}` refers to `{target}`, which is not defined for locale {locale}")]
    UnknownReference {
        /// The file.
        file: String,
        /// 1-based line.
        line: usize,
        /// The referring message.
        id: String,
        /// The message (or `-term`) referred to.
        target: String,
        /// The locale.
        locale: String,
    },
    /// The same message is defined twice among the override files of one locale.
    #[error("{file}:{line}: `{id}` is already defined for locale {locale} in {first}")]
    Duplicate {
        /// The file with the second definition.
        file: String,
        /// 1-based line.
        line: usize,
        /// The message id.
        id: String,
        /// The locale.
        locale: String,
        /// The file with the first definition.
        first: String,
    },
    /// The locale of a source is not a language tag.
    #[error("{file}: `{locale}` is not a language tag (like `en`, `de` or `pt-BR`)")]
    BadLocale {
        /// The file.
        file: String,
        /// The rejected tag.
        locale: String,
    },
    /// A locale that has no built-in files lacks a message that the narrator needs.
    #[error(
        "locale {locale} lacks message `{id}`: a new language must define every message \
         of the built-in files (its files: {files})"
    )]
    Incomplete {
        /// The locale.
        locale: String,
        /// The first missing message.
        id: String,
        /// The files given for it, comma-separated.
        files: String,
    },
}

/// The result type of this crate.
pub type Result<T, E = NarrateError> = std::result::Result<T, E>;
