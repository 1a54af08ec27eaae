//! Language tags and their negotiation against `Accept-Language`.

use std::fmt;
use std::str::FromStr;

use unic_langid::LanguageIdentifier;

/// A language the narrator writes in (`en`, `de`, `pt-BR`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Locale(pub(crate) LanguageIdentifier);

impl Locale {
    /// English, the fallback.
    pub fn english() -> Self {
        Self(unic_langid::langid!("en"))
    }

    /// Parses a language tag; `None` if it is not one.
    pub fn parse(tag: &str) -> Option<Self> {
        LanguageIdentifier::from_str(tag.trim()).ok().map(Self)
    }

    /// The primary language subtag (`de` for `de-AT`).
    pub fn language(&self) -> &str {
        self.0.language.as_str()
    }
}

impl fmt::Display for Locale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
