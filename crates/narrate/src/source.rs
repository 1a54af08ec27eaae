//! Parsing one `.ftl` source and checking it against the catalogue.

use fluent_bundle::FluentResource;
use fluent_syntax::ast;

use crate::catalogue::{self, FEATURE_ATTRIBUTES, Kind};
use crate::error::{NarrateError, Result};

/// One `.ftl` text, as read by the caller (the proxy reads a configured directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FtlSource {
    /// The language tag it is written in (`en`, `de`, `pt-BR`).
    pub locale: String,
    /// The file name, used only in error messages.
    pub name: String,
    /// The Fluent text.
    pub text: String,
}

impl FtlSource {
    /// A source from its three parts.
    pub fn new(
        locale: impl Into<String>,
        name: impl Into<String>,
        text: impl Into<String>,
    ) -> Self {
        Self {
            locale: locale.into(),
            name: name.into(),
            text: text.into(),
        }
    }
}

/// A message or term defined by a source, with its line.
#[derive(Debug, Clone)]
pub(crate) struct Defined {
    pub(crate) id: String,
    pub(crate) line: usize,
    /// For `custom-` messages: the variables used, with their lines, checked where a
    /// route uses the message.
    pub(crate) variables: Vec<(String, usize)>,
}

/// A reference from a pattern to a message or `-term`, checked once all files of a
/// locale are loaded.
#[derive(Debug, Clone)]
pub(crate) struct Reference {
    pub(crate) from: String,
    pub(crate) target: String,
    pub(crate) term: bool,
    pub(crate) line: usize,
}

/// A checked source.
pub(crate) struct Parsed {
    pub(crate) resource: FluentResource,
    pub(crate) messages: Vec<Defined>,
    pub(crate) terms: Vec<String>,
    pub(crate) references: Vec<Reference>,
}

/// What a pattern refers to.
#[derive(Default)]
pub(crate) struct Refs<'s> {
    pub(crate) variables: Vec<&'s str>,
    pub(crate) messages: Vec<&'s str>,
    pub(crate) terms: Vec<&'s str>,
}

/// Parses `text` and checks every entry against the catalogue.
pub(crate) fn parse(file: &str, text: String) -> Result<Parsed> {
    let resource = match FluentResource::try_new(text) {
        Ok(resource) => resource,
        Err((resource, errors)) => {
            let source = resource.source();
            let (line, message) = errors.first().map_or((1, String::from("invalid")), |e| {
                (line_of(source, e.pos.start), e.kind.to_string())
            });
            return Err(NarrateError::Syntax {
                file: file.to_owned(),
                line,
                message,
            });
        }
    };
    let mut messages = Vec::new();
    let mut terms = Vec::new();
    let mut references = Vec::new();
    let source = resource.source();
    for entry in resource.entries() {
        match entry {
            ast::Entry::Message(message) => {
                let id = message.id.name;
                let line = entry_line(source, id);
                let Some(kind) = catalogue::kind(id) else {
                    return Err(NarrateError::UnknownMessage {
                        file: file.to_owned(),
                        line,
                        id: id.to_owned(),
                    });
                };
                let allowed_attributes: &[&str] = match kind {
                    Kind::Feature => FEATURE_ATTRIBUTES,
                    Kind::Known(_) | Kind::Custom => &[],
                };
                for attribute in &message.attributes {
                    if !allowed_attributes.contains(&attribute.id.name) {
                        return Err(NarrateError::UnknownAttribute {
                            file: file.to_owned(),
                            line: find_after(source, line, &format!(".{}", attribute.id.name)),
                            id: id.to_owned(),
                            attribute: attribute.id.name.to_owned(),
                            allowed: list_or_none(allowed_attributes),
                        });
                    }
                }
                let mut refs = Refs::default();
                if let Some(value) = &message.value {
                    walk_pattern(value, &mut refs);
                }
                for attribute in &message.attributes {
                    walk_pattern(&attribute.value, &mut refs);
                }
                let variables = refs
                    .variables
                    .iter()
                    .map(|v| ((*v).to_owned(), find_after(source, line, &format!("${v}"))))
                    .collect::<Vec<_>>();
                match kind {
                    Kind::Known(offered) => check_variables(file, id, &variables, offered)?,
                    Kind::Feature => check_variables(file, id, &variables, &[])?,
                    Kind::Custom => {}
                }
                for target in refs.messages {
                    references.push(Reference {
                        from: id.to_owned(),
                        target: target.to_owned(),
                        term: false,
                        line: find_after(source, line, target),
                    });
                }
                for target in refs.terms {
                    references.push(Reference {
                        from: id.to_owned(),
                        target: target.to_owned(),
                        term: true,
                        line: find_after(source, line, &format!("-{target}")),
                    });
                }
                messages.push(Defined {
                    id: id.to_owned(),
                    line,
                    variables: if kind == Kind::Custom {
                        variables
                    } else {
                        Vec::new()
                    },
                });
            }
            ast::Entry::Term(term) => terms.push(term.id.name.to_owned()),
            _ => {}
        }
    }
    Ok(Parsed {
        resource,
        messages,
        terms,
        references,
    })
}

/// Errors for the first variable not in `offered`.
pub(crate) fn check_variables(
    file: &str,
    id: &str,
    variables: &[(String, usize)],
    offered: &[&str],
) -> Result<()> {
    match variables
        .iter()
        .find(|(v, _)| !offered.contains(&v.as_str()))
    {
        None => Ok(()),
        Some((variable, line)) => Err(NarrateError::UnknownVariable {
            file: file.to_owned(),
            line: *line,
            id: id.to_owned(),
            variable: variable.clone(),
            offered: list_or_none(offered),
        }),
    }
}

pub(crate) fn list_or_none(items: &[&str]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

pub(crate) fn walk_pattern<'s>(pattern: &ast::Pattern<&'s str>, refs: &mut Refs<'s>) {
    for element in &pattern.elements {
        if let ast::PatternElement::Placeable { expression } = element {
            walk_expression(expression, refs);
        }
    }
}

fn walk_expression<'s>(expression: &ast::Expression<&'s str>, refs: &mut Refs<'s>) {
    match expression {
        ast::Expression::Select { selector, variants } => {
            walk_inline(selector, refs);
            for variant in variants {
                walk_pattern(&variant.value, refs);
            }
        }
        ast::Expression::Inline(inline) => walk_inline(inline, refs),
    }
}

fn walk_inline<'s>(inline: &ast::InlineExpression<&'s str>, refs: &mut Refs<'s>) {
    match inline {
        ast::InlineExpression::VariableReference { id } => {
            push_unique(&mut refs.variables, id.name)
        }
        ast::InlineExpression::MessageReference { id, .. } => {
            push_unique(&mut refs.messages, id.name)
        }
        ast::InlineExpression::TermReference { id, arguments, .. } => {
            push_unique(&mut refs.terms, id.name);
            if let Some(arguments) = arguments {
                walk_arguments(arguments, refs);
            }
        }
        ast::InlineExpression::FunctionReference { arguments, .. } => {
            walk_arguments(arguments, refs)
        }
        ast::InlineExpression::Placeable { expression } => walk_expression(expression, refs),
        ast::InlineExpression::StringLiteral { .. }
        | ast::InlineExpression::NumberLiteral { .. } => {}
    }
}

fn walk_arguments<'s>(arguments: &ast::CallArguments<&'s str>, refs: &mut Refs<'s>) {
    for positional in &arguments.positional {
        walk_inline(positional, refs);
    }
    for named in &arguments.named {
        walk_inline(&named.value, refs);
    }
}

fn push_unique<'s>(list: &mut Vec<&'s str>, item: &'s str) {
    if !list.contains(&item) {
        list.push(item);
    }
}

/// The 1-based line of byte offset `pos`.
pub(crate) fn line_of(source: &str, pos: usize) -> usize {
    // An error at the end of the text (an unclosed `{`) belongs to the last written line.
    let written = source.trim_end().len();
    let end = if pos >= written {
        written.saturating_sub(1)
    } else {
        pos
    };
    source
        .as_bytes()
        .iter()
        .take(end)
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// The 1-based line where message (or term) `id` is defined: entries start in column 0.
pub(crate) fn entry_line(source: &str, id: &str) -> usize {
    source
        .lines()
        .position(|line| {
            line.strip_prefix(id)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map_or(1, |i| i + 1)
}

/// The first line at or after `start` (1-based) that contains `needle` as a whole token.
pub(crate) fn find_after(source: &str, start: usize, needle: &str) -> usize {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    for (i, line) in source.lines().enumerate().skip(start.saturating_sub(1)) {
        let mut from = 0;
        while let Some(found) = line.get(from..).and_then(|rest| rest.find(needle)) {
            let at = from + found;
            let after = line.get(at + needle.len()..).and_then(|r| r.chars().next());
            if !after.is_some_and(is_ident) {
                return i + 1;
            }
            from = at + needle.len();
        }
    }
    start.max(1)
}
