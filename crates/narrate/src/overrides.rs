//! A route's own sentences: a decision sentence and per-feature reason sentences,
//! given in the config as `custom-…` message ids or as literal Fluent patterns.

use std::collections::BTreeMap;
use std::fmt;

use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource};
use fluent_syntax::ast;

use crate::catalogue::{CUSTOM_PREFIX, DECISION_VARIABLES, REASON_VARIABLES};
use crate::error::{NarrateError, Result};
use crate::narrator::{Narrator, format_in};
use crate::source::{self, Refs};

/// Where a config value was written, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The config file.
    pub file: String,
    /// 1-based line of the value (the first line of a literal pattern).
    pub line: usize,
}

/// One overriding sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OverrideText {
    /// The id of a `custom-…` message in the `.ftl` files (one per language).
    Message(String),
    /// A literal Fluent pattern, used for every language.
    Pattern(String),
}

/// One overriding sentence and where the config gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverrideSpec {
    /// The sentence.
    pub text: OverrideText,
    /// Where it was written.
    pub origin: Origin,
}

/// A route's overrides as configured, before checking.
///
/// The decision sentence may use `$favourable` (yes | no), `$has_outcome` (yes | no)
/// and `$outcome`; a feature's reason sentence `$your`, `$feature`, `$comparison`
/// (higher | lower | typical | none), `$more`, `$less` and `$effect` (for | against).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouteOverridesSpec {
    /// Replaces `customer-decision`.
    pub decision: Option<OverrideSpec>,
    /// Feature name -> replaces `customer-reason` for that feature.
    pub features: BTreeMap<String, OverrideSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Slot {
    /// A `custom-` message of the narrator.
    Message(String),
    /// A message of this route's inline bundles.
    Inline(String),
}

/// A route's checked overrides, ready for [`crate::Input::overrides`].
/// `RouteOverrides::default()` overrides nothing.
#[derive(Default)]
pub struct RouteOverrides {
    decision: Option<Slot>,
    features: BTreeMap<String, Slot>,
    /// One bundle per narrator language holding the literal patterns, so that their
    /// plural rules are the reader's.
    inline: Vec<FluentBundle<FluentResource>>,
}

impl fmt::Debug for RouteOverrides {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteOverrides")
            .field("decision", &self.decision)
            .field("features", &self.features)
            .finish_non_exhaustive()
    }
}

// === impl Narrator (overrides) ===

impl Narrator {
    /// Checks a route's overrides against this narrator's files: a message must be a
    /// `custom-…` message defined in at least one language; a literal pattern must
    /// parse; neither may use a variable that is not offered to it, nor (for literal
    /// patterns) refer to other messages. Errors name the config file and line, or the
    /// `.ftl` file and line of the offending message.
    ///
    /// A `custom-` message missing in the reader's language falls back to the built-in
    /// sentence of that language, not to another language's.
    pub fn compile_overrides(&self, spec: &RouteOverridesSpec) -> Result<RouteOverrides> {
        let mut inline_text = String::new();
        let mut compile = |key: String, spec: &OverrideSpec, offered: &[&str]| -> Result<Slot> {
            match &spec.text {
                OverrideText::Message(id) => {
                    self.check_custom(id, &spec.origin, offered)?;
                    Ok(Slot::Message(id.clone()))
                }
                OverrideText::Pattern(pattern) => {
                    check_pattern(pattern, &spec.origin, offered)?;
                    inline_text.push_str(&entry(&key, pattern));
                    Ok(Slot::Inline(key))
                }
            }
        };
        let decision = match &spec.decision {
            Some(d) => Some(compile(
                "inline-decision".to_owned(),
                d,
                DECISION_VARIABLES,
            )?),
            None => None,
        };
        let mut features = BTreeMap::new();
        for (n, (name, feature)) in spec.features.iter().enumerate() {
            let slot = compile(format!("inline-feature-{n}"), feature, REASON_VARIABLES)?;
            features.insert(name.clone(), slot);
        }
        let mut inline = Vec::new();
        if !inline_text.is_empty() {
            for language in &self.languages {
                let mut bundle = FluentBundle::new_concurrent(vec![language.locale.0.clone()]);
                bundle.set_use_isolating(false);
                // Each pattern parsed on its own above; together they cannot fail.
                let resource = match FluentResource::try_new(inline_text.clone()) {
                    Ok(r) | Err((r, _)) => r,
                };
                bundle.add_resource_overriding(resource);
                inline.push(bundle);
            }
        }
        Ok(RouteOverrides {
            decision,
            features,
            inline,
        })
    }

    fn check_custom(&self, id: &str, origin: &Origin, offered: &[&str]) -> Result<()> {
        let mut found = false;
        if id.starts_with(CUSTOM_PREFIX) {
            for language in &self.languages {
                if let Some(definition) = language.definitions.get(id) {
                    found = true;
                    source::check_variables(&definition.file, id, &definition.variables, offered)?;
                }
            }
        }
        if found {
            Ok(())
        } else {
            Err(NarrateError::UnknownMessage {
                file: origin.file.clone(),
                line: origin.line,
                id: id.to_owned(),
            })
        }
    }

    /// The decision sentence of the route, if it has one that this language can say.
    pub(crate) fn route_decision(
        &self,
        overrides: &RouteOverrides,
        lang: usize,
        args: &FluentArgs<'_>,
    ) -> Option<String> {
        overrides
            .decision
            .as_ref()
            .and_then(|slot| self.format_slot(overrides, slot, lang, args))
    }

    /// The reason sentence of the route for feature `name`, if it has one.
    pub(crate) fn route_reason(
        &self,
        overrides: &RouteOverrides,
        name: &str,
        lang: usize,
        args: &FluentArgs<'_>,
    ) -> Option<String> {
        overrides
            .features
            .get(name)
            .and_then(|slot| self.format_slot(overrides, slot, lang, args))
    }

    fn format_slot(
        &self,
        overrides: &RouteOverrides,
        slot: &Slot,
        lang: usize,
        args: &FluentArgs<'_>,
    ) -> Option<String> {
        match slot {
            Slot::Message(id) => self.own_message(lang, id, Some(args)),
            Slot::Inline(key) => {
                let bundle = overrides
                    .inline
                    .get(lang)
                    .or_else(|| overrides.inline.first())?;
                format_in(bundle, key, None, Some(args))
            }
        }
    }
}

/// A message entry holding `pattern`: continuation lines indented.
fn entry(key: &str, pattern: &str) -> String {
    let mut text = format!("{key} =");
    for (i, line) in pattern.lines().enumerate() {
        if i == 0 {
            text.push(' ');
        } else {
            text.push_str("\n    ");
        }
        text.push_str(line);
    }
    text.push('\n');
    text
}

fn check_pattern(pattern: &str, origin: &Origin, offered: &[&str]) -> Result<()> {
    let text = entry("inline", pattern);
    let at = |line: usize| origin.line + line.saturating_sub(1);
    let resource = match FluentResource::try_new(text) {
        Ok(resource) => resource,
        Err((resource, errors)) => {
            let (line, message) = errors.first().map_or((1, String::from("invalid")), |e| {
                (
                    source::line_of(resource.source(), e.pos.start),
                    e.kind.to_string(),
                )
            });
            return Err(NarrateError::Syntax {
                file: origin.file.clone(),
                line: at(line),
                message,
            });
        }
    };
    let source = resource.source();
    let mut refs = Refs::default();
    let mut entries = 0;
    for e in resource.entries() {
        entries += 1;
        if let ast::Entry::Message(message) = e {
            if let Some(value) = &message.value {
                source::walk_pattern(value, &mut refs);
            }
        }
    }
    if entries != 1 {
        return Err(NarrateError::Syntax {
            file: origin.file.clone(),
            line: origin.line,
            message: "a sentence override must be one Fluent pattern".to_owned(),
        });
    }
    let variables: Vec<(String, usize)> = refs
        .variables
        .iter()
        .map(|v| {
            (
                (*v).to_owned(),
                at(source::find_after(source, 1, &format!("${v}"))),
            )
        })
        .collect();
    source::check_variables(&origin.file, "(inline pattern)", &variables, offered)?;
    if let Some(target) = refs
        .messages
        .first()
        .map(|m| (*m).to_owned())
        .or_else(|| refs.terms.first().map(|t| format!("-{t}")))
    {
        return Err(NarrateError::UnknownReference {
            file: origin.file.clone(),
            line: at(source::find_after(source, 1, &target)),
            id: "(inline pattern)".to_owned(),
            target,
            locale: "any (a literal pattern cannot refer to messages; use a custom- message)"
                .to_owned(),
        });
    }
    Ok(())
}
