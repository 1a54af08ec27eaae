//! The narrator: one Fluent bundle per language, built-in files plus a business's own.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource};
use unic_langid::LanguageIdentifier;

use crate::catalogue::MESSAGES;
use crate::error::{NarrateError, Result};
use crate::locale::Locale;
use crate::source::{self, FtlSource};

/// The built-in files: (locale, file, text).
const BUILTIN: &[(&str, &str, &str)] = &[
    ("en", "common.ftl", include_str!("../locales/en/common.ftl")),
    (
        "en",
        "customer.ftl",
        include_str!("../locales/en/customer.ftl"),
    ),
    (
        "en",
        "developer.ftl",
        include_str!("../locales/en/developer.ftl"),
    ),
    ("en", "notice.ftl", include_str!("../locales/en/notice.ftl")),
    ("de", "common.ftl", include_str!("../locales/de/common.ftl")),
    ("de", "notice.ftl", include_str!("../locales/de/notice.ftl")),
    (
        "de",
        "customer.ftl",
        include_str!("../locales/de/customer.ftl"),
    ),
    (
        "de",
        "developer.ftl",
        include_str!("../locales/de/developer.ftl"),
    ),
];

/// Where a message of one locale was last defined.
#[derive(Debug, Clone)]
pub(crate) struct Definition {
    pub(crate) file: String,
    /// Variables of a `custom-` message, with their lines.
    pub(crate) variables: Vec<(String, usize)>,
}

/// One language: its bundle and where each message came from.
pub(crate) struct Language {
    pub(crate) locale: Locale,
    pub(crate) bundle: FluentBundle<FluentResource>,
    pub(crate) definitions: BTreeMap<String, Definition>,
    terms: BTreeSet<String>,
}

impl Language {
    fn new(locale: Locale) -> Self {
        let mut bundle = FluentBundle::new_concurrent(vec![locale.0.clone()]);
        // Unicode isolation marks around placeables would end up in HTTP responses and
        // in golden files; the texts are single-direction.
        bundle.set_use_isolating(false);
        Self {
            locale,
            bundle,
            definitions: BTreeMap::new(),
            terms: BTreeSet::new(),
        }
    }
}

/// Turns attributions into sentences, for an audience, in a language.
///
/// Built once at start-up ([`Narrator::builtin`], then [`Narrator::with_overrides`]) and
/// shared across threads: it is `Send + Sync` and every method takes `&self`.
pub struct Narrator {
    /// `languages[0]` is English, the fallback.
    pub(crate) languages: Vec<Language>,
}

/// A variable's value for [`Narrator::text`].
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    Text(&'a str),
    /// A number: Fluent picks plural forms by it.
    Number(f64),
}

// === impl Narrator ===

impl Narrator {
    /// The narrator with the built-in English and German files.
    pub fn builtin() -> Result<Self> {
        let mut narrator = Self {
            languages: Vec::new(),
        };
        let sources = BUILTIN
            .iter()
            .map(|(locale, file, text)| {
                FtlSource::new(*locale, format!("builtin:{locale}/{file}"), *text)
            })
            .collect();
        narrator.load(sources, false)?;
        Ok(narrator)
    }

    /// Adds a business's own files: messages that override the built-in ones,
    /// `feature-<name>` messages that name features in a language, `custom-…` messages
    /// for route overrides, or a whole new language (which must then define every
    /// built-in message).
    ///
    /// Everything is checked: a syntax error, an unknown message or attribute, a
    /// variable that is not offered to its message, a reference to an undefined message,
    /// or a message defined twice among `sources` of one locale is an error naming the
    /// source's `name` and the line.
    pub fn with_overrides(mut self, sources: Vec<FtlSource>) -> Result<Self> {
        self.load(sources, true)?;
        Ok(self)
    }

    /// The languages it writes, as tags (`en` first).
    pub fn locales(&self) -> Vec<String> {
        self.languages
            .iter()
            .map(|l| l.locale.to_string())
            .collect()
    }

    /// The statement of reason code `code` in `locale`: the narration's
    /// `custom-reason-<code>` message in that language, else in English; `None` when no
    /// language has it (the caller then uses the config's statement).
    pub fn reason_statement(&self, code: &str, locale: &Locale) -> Option<String> {
        let id = crate::catalogue::reason_message_id(code);
        let lang = self.language_index(locale);
        self.own_message(lang, &id, None)
            .or_else(|| self.own_message(0, &id, None))
    }

    /// Checks the `custom-reason-<code>` messages of reason code `code` (they are given
    /// no variables) and returns whether English has one (else the config must give the
    /// statement).
    pub fn check_reason(&self, code: &str) -> Result<bool> {
        self.check_plain(&crate::catalogue::reason_message_id(code))
    }

    /// Formats one of the built-in messages of the notice and of contests (`notice-…`,
    /// `contest-…`; a business's files may reword them) in the language closest to
    /// `locale`, falling back to English.
    pub fn text(&self, id: &str, args: &[(&str, Arg<'_>)], locale: &Locale) -> String {
        let mut fluent = FluentArgs::new();
        for (name, value) in args {
            match value {
                Arg::Text(text) => fluent.set(*name, (*text).to_owned()),
                Arg::Number(number) => fluent.set(*name, *number),
            }
        }
        let lang = self.language_index(locale);
        self.message(lang, id, (!args.is_empty()).then_some(&fluent))
    }

    /// A business's own message `id` (a `custom-…` message without variables) in the
    /// language closest to `locale`, else in English; `None` when neither has it.
    pub fn own_text(&self, id: &str, locale: &Locale) -> Option<String> {
        let lang = self.language_index(locale);
        self.own_message(lang, id, None)
            .or_else(|| self.own_message(0, id, None))
    }

    /// What a customer calls feature `name` in `locale`: its `feature-<name>` message,
    /// else `display_name`, else the name with spaces.
    pub fn feature_name(&self, name: &str, display_name: Option<&str>, locale: &Locale) -> String {
        let id = crate::catalogue::feature_message_id(name);
        self.own_message(self.language_index(locale), &id, None)
            .or_else(|| display_name.map(str::to_owned))
            .unwrap_or_else(|| name.replace('_', " "))
    }

    /// Checks that no language's message `id` uses a variable (a business's own
    /// sentence is given none) and returns whether English has it.
    pub fn check_plain(&self, id: &str) -> Result<bool> {
        let id = id.to_owned();
        for language in &self.languages {
            if let Some(definition) = language.definitions.get(&id) {
                if let Some((variable, line)) = definition.variables.first() {
                    return Err(NarrateError::UnknownVariable {
                        file: definition.file.clone(),
                        line: *line,
                        id,
                        variable: variable.clone(),
                        offered: "none".to_owned(),
                    });
                }
            }
        }
        Ok(self.own_message(0, &id, None).is_some())
    }

    /// The best language for an `Accept-Language` header; English when nothing matches.
    pub fn negotiate(&self, accept_language: Option<&str>) -> Locale {
        let requested = accept_language
            .map(fluent_langneg::parse_accepted_languages)
            .unwrap_or_default();
        let available: Vec<LanguageIdentifier> =
            self.languages.iter().map(|l| l.locale.0.clone()).collect();
        let default = Locale::english().0;
        let chosen = fluent_langneg::negotiate_languages(
            &requested,
            &available,
            Some(&default),
            fluent_langneg::NegotiationStrategy::Lookup,
        );
        chosen
            .first()
            .map_or_else(Locale::english, |id| Locale((*id).clone()))
    }

    fn load(&mut self, sources: Vec<FtlSource>, overriding: bool) -> Result<()> {
        let mut new_languages: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        let mut first_definitions: BTreeMap<(usize, String), String> = BTreeMap::new();
        let mut references = Vec::new();
        for FtlSource { locale, name, text } in sources {
            let Some(parsed_locale) = Locale::parse(&locale) else {
                return Err(NarrateError::BadLocale { file: name, locale });
            };
            let index = match self
                .languages
                .iter()
                .position(|l| l.locale == parsed_locale)
            {
                Some(index) => index,
                None => {
                    self.languages.push(Language::new(parsed_locale));
                    let index = self.languages.len() - 1;
                    if overriding {
                        new_languages.insert(index, Vec::new());
                    }
                    index
                }
            };
            if let Some(files) = new_languages.get_mut(&index) {
                files.push(name.clone());
            }
            let parsed = source::parse(&name, text)?;
            let language = &mut self.languages[index];
            for defined in &parsed.messages {
                if let Some(first) = first_definitions.get(&(index, defined.id.clone())) {
                    return Err(NarrateError::Duplicate {
                        file: name,
                        line: defined.line,
                        id: defined.id.clone(),
                        locale: language.locale.to_string(),
                        first: first.clone(),
                    });
                }
                first_definitions.insert((index, defined.id.clone()), name.clone());
                language.definitions.insert(
                    defined.id.clone(),
                    Definition {
                        file: name.clone(),
                        variables: defined.variables.clone(),
                    },
                );
            }
            language.terms.extend(parsed.terms.iter().cloned());
            references.extend(
                parsed
                    .references
                    .into_iter()
                    .map(|r| (index, name.clone(), r)),
            );
            language.bundle.add_resource_overriding(parsed.resource);
        }
        for (index, files) in &new_languages {
            let language = &self.languages[*index];
            if let Some((id, _)) = MESSAGES
                .iter()
                .find(|(id, _)| !language.bundle.has_message(id))
            {
                return Err(NarrateError::Incomplete {
                    locale: language.locale.to_string(),
                    id: (*id).to_owned(),
                    files: files.join(", "),
                });
            }
        }
        for (index, file, reference) in references {
            let language = &self.languages[index];
            let defined = if reference.term {
                language.terms.contains(&reference.target)
            } else {
                language.bundle.has_message(&reference.target)
            };
            if !defined {
                let prefix = if reference.term { "-" } else { "" };
                return Err(NarrateError::UnknownReference {
                    file,
                    line: reference.line,
                    id: reference.from,
                    target: format!("{prefix}{}", reference.target),
                    locale: language.locale.to_string(),
                });
            }
        }
        Ok(())
    }

    /// The index of the language to write `locale` in: exact tag, else same language,
    /// else English.
    pub(crate) fn language_index(&self, locale: &Locale) -> usize {
        self.languages
            .iter()
            .position(|l| &l.locale == locale)
            .or_else(|| {
                self.languages
                    .iter()
                    .position(|l| l.locale.language() == locale.language())
            })
            .unwrap_or(0)
    }

    /// Formats message `id` in language `lang`, falling back to English.
    pub(crate) fn message(&self, lang: usize, id: &str, args: Option<&FluentArgs<'_>>) -> String {
        let own = self.languages.get(lang);
        let english = self.languages.first();
        for language in own.into_iter().chain(english) {
            if let Some(text) = format_in(&language.bundle, id, None, args) {
                return text;
            }
        }
        String::new()
    }

    /// Formats attribute `attribute` of message `id` in language `lang` only.
    pub(crate) fn attribute(&self, lang: usize, id: &str, attribute: &str) -> Option<String> {
        let language = self.languages.get(lang)?;
        format_in(&language.bundle, id, Some(attribute), None)
    }

    /// Formats the value of message `id` in language `lang` only.
    pub(crate) fn own_message(
        &self,
        lang: usize,
        id: &str,
        args: Option<&FluentArgs<'_>>,
    ) -> Option<String> {
        let language = self.languages.get(lang)?;
        format_in(&language.bundle, id, None, args)
    }
}

/// Formats a message's value or attribute; `None` if the bundle lacks it. Formatting
/// errors cannot occur for checked files (every variable is passed), and a missing
/// reference is written as its id by Fluent, so the text is still returned.
pub(crate) fn format_in(
    bundle: &FluentBundle<FluentResource>,
    id: &str,
    attribute: Option<&str>,
    args: Option<&FluentArgs<'_>>,
) -> Option<String> {
    let message = bundle.get_message(id)?;
    let pattern = match attribute {
        Some(name) => message.get_attribute(name)?.value(),
        None => message.value()?,
    };
    let mut errors = Vec::new();
    Some(
        bundle
            .format_pattern(pattern, args, &mut errors)
            .into_owned(),
    )
}

impl fmt::Debug for Narrator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Narrator")
            .field("locales", &self.locales())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_language_has_every_message() {
        let narrator = Narrator::builtin().unwrap_or_else(|e| panic!("{e}"));
        for language in &narrator.languages {
            for (id, _) in MESSAGES {
                assert!(
                    language.bundle.has_message(id),
                    "{} lacks {id}",
                    language.locale
                );
            }
        }
    }

    #[test]
    fn no_isolation_marks() {
        let narrator = Narrator::builtin().unwrap_or_else(|e| panic!("{e}"));
        let mut args = FluentArgs::new();
        args.set("text", "x");
        let quoted = narrator.message(1, "value-quoted", Some(&args));
        assert_eq!(quoted, "„x“");
    }
}
