//! A small JSON tree for the adapters, and the paths their errors name.
//!
//! `serde_json::Value` would do, but without its `preserve_order` feature (which would
//! change map order for the whole workspace) it sorts object keys, and feature names must
//! come out in the order the client wrote them. This tree keeps members in document
//! order, borrows strings from the body when they contain no escapes, and costs one
//! `Vec` per array or object — cheaper than a `BTreeMap` per row object.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::{AdapterError, Side};

/// One parsed JSON value, members in document order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node<'a> {
    Null,
    Bool(bool),
    /// Every JSON number as `f64`: the adapters feed a model of real numbers, and integers
    /// beyond 2^53 lose only precision they could not use.
    Number(f64),
    String(Cow<'a, str>),
    Array(Vec<Node<'a>>),
    /// Members in document order. A repeated key keeps both entries; [`Node::get`]
    /// returns the last, as `serde_json` does.
    Object(Vec<(Cow<'a, str>, Node<'a>)>),
}

impl<'a> Node<'a> {
    /// The value of member `key` of an object (the last, if the key repeats).
    pub(crate) fn get(&self, key: &str) -> Option<&Node<'a>> {
        match self {
            Self::Object(members) => members.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// A number as a model output: JSON numbers, and booleans as 1 / 0 (a binary
    /// classifier that answers `true` predicts the positive class).
    pub(crate) fn as_output_number(&self) -> Option<f64> {
        match self {
            Self::Number(n) => Some(*n),
            Self::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            _ => None,
        }
    }

    pub(crate) fn is_scalar(&self) -> bool {
        !matches!(self, Self::Array(_) | Self::Object(_))
    }

    /// The node at a JSON Pointer (RFC 6901); `Ok(None)` when nothing is there,
    /// `Err(())` when the pointer itself is malformed.
    pub(crate) fn pointer(&self, pointer: &str) -> Result<Option<&Node<'a>>, ()> {
        if pointer.is_empty() {
            return Ok(Some(self));
        }
        let Some(rest) = pointer.strip_prefix('/') else {
            return Err(());
        };
        let mut node = self;
        for token in rest.split('/') {
            let token = unescape_token(token)?;
            node = match node {
                Self::Object(_) => match node.get(&token) {
                    Some(next) => next,
                    None => return Ok(None),
                },
                Self::Array(items) => match array_index(&token).and_then(|i| items.get(i)) {
                    Some(next) => next,
                    None => return Ok(None),
                },
                _ => return Ok(None),
            };
        }
        Ok(Some(node))
    }
}

/// Whether `pointer` is a syntactically valid JSON Pointer (RFC 6901).
pub(crate) fn pointer_is_valid(pointer: &str) -> bool {
    pointer.is_empty()
        || pointer
            .strip_prefix('/')
            .is_some_and(|rest| rest.split('/').all(|t| unescape_token(t).is_ok()))
}

/// RFC 6901 §4: `~1` is `/`, `~0` is `~`, and any other `~` makes the pointer invalid.
pub(super) fn unescape_token(token: &str) -> Result<Cow<'_, str>, ()> {
    if !token.contains('~') {
        return Ok(Cow::Borrowed(token));
    }
    let mut out = String::with_capacity(token.len());
    let mut chars = token.chars();
    while let Some(c) = chars.next() {
        if c == '~' {
            match chars.next() {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                _ => return Err(()),
            }
        } else {
            out.push(c);
        }
    }
    Ok(Cow::Owned(out))
}

/// RFC 6901 array indexes: decimal digits with no leading zero (`-`, "past the end",
/// never names an existing element).
fn array_index(token: &str) -> Option<usize> {
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if token.len() > 1 && token.starts_with('0') {
        return None;
    }
    token.parse().ok()
}

/// Parses a whole body (trailing whitespace only) into a [`Node`].
pub(crate) fn parse(body: &[u8], side: Side) -> Result<Node<'_>, AdapterError> {
    serde_json::from_slice(body).map_err(|e| not_json(side, &e))
}

/// The error for a body that is not JSON. Only the position is kept: `serde_json`'s
/// message can quote the offending input.
pub(crate) fn not_json(side: Side, e: &serde_json::Error) -> AdapterError {
    AdapterError::NotJson {
        side,
        line: e.line(),
        column: e.column(),
    }
}

impl<'de> Deserialize<'de> for Node<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Node::Null)
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Node::Null)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Node::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Node::Number(v as f64))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Node::Number(v as f64))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Node::Number(v))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Node::String(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Node::String(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Node::String(Cow::Owned(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some(Key(key)) = map.next_key()? {
            members.push((key, map.next_value()?));
        }
        Ok(Node::Object(members))
    }
}

/// An object key, borrowed from the body when it has no escapes. (serde's own
/// `Cow<str>` impl always allocates.)
pub(crate) struct Key<'a>(pub(crate) Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Where in a body a node sits, built on the stack as the adapters descend and rendered
/// as a JSON Pointer only when an error needs it, so the success path pays nothing.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Path<'p> {
    /// A starting point, already written as a pointer (`""` for the document).
    Root(&'p str),
    Key(&'p Path<'p>, &'p str),
    Index(&'p Path<'p>, usize),
}

/// Keys come from the payload; a long one is cut so that error lines stay short.
const MAX_KEY_CHARS: usize = 64;

impl<'p> Path<'p> {
    pub(crate) fn key(&'p self, key: &'p str) -> Self {
        Self::Key(self, key)
    }

    pub(crate) fn index(&'p self, index: usize) -> Self {
        Self::Index(self, index)
    }

    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        self.render_into(&mut out);
        out
    }

    fn render_into(&self, out: &mut String) {
        match self {
            Self::Root(base) => out.push_str(base),
            Self::Key(parent, key) => {
                parent.render_into(out);
                out.push('/');
                for (i, c) in key.chars().enumerate() {
                    if i == MAX_KEY_CHARS {
                        out.push('…');
                        break;
                    }
                    match c {
                        '~' => out.push_str("~0"),
                        '/' => out.push_str("~1"),
                        // Control characters would break a log line or a header.
                        c if c.is_control() => out.push('?'),
                        c => out.push(c),
                    }
                }
            }
            Self::Index(parent, index) => {
                parent.render_into(out);
                out.push('/');
                out.push_str(&index.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(text: &str) -> Node<'_> {
        parse(text.as_bytes(), Side::Request).unwrap_or(Node::Null)
    }

    #[test]
    fn keeps_member_order_and_borrows_plain_strings() {
        let n = node(r#"{"z": 1, "a": "plain", "m": "esc\u0061ped"}"#);
        let Node::Object(members) = &n else {
            panic!("not an object");
        };
        let keys: Vec<&str> = members.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(keys, ["z", "a", "m"]);
        assert!(matches!(
            &members[1].1,
            Node::String(Cow::Borrowed("plain"))
        ));
        assert!(matches!(&members[2].1, Node::String(Cow::Owned(s)) if s == "escaped"));
    }

    #[test]
    fn repeated_key_reads_last() {
        assert_eq!(
            node(r#"{"a": 1, "a": 2}"#).get("a"),
            Some(&Node::Number(2.0))
        );
    }

    #[test]
    fn pointers_follow_rfc_6901() {
        let n = node(r#"{"a/b": {"m~n": [10, 20]}, "": 5}"#);
        assert_eq!(n.pointer(""), Ok(Some(&n)));
        assert_eq!(n.pointer("/a~1b/m~0n/1"), Ok(Some(&Node::Number(20.0))));
        assert_eq!(n.pointer("/"), Ok(Some(&Node::Number(5.0))));
        assert_eq!(n.pointer("/a~1b/m~0n/01"), Ok(None));
        assert_eq!(n.pointer("/a~1b/m~0n/-"), Ok(None));
        assert_eq!(n.pointer("/missing"), Ok(None));
        assert_eq!(n.pointer("a"), Err(()));
        assert_eq!(n.pointer("/a~2"), Err(()));
        assert!(pointer_is_valid("") && pointer_is_valid("/x/0") && !pointer_is_valid("x"));
        assert!(!pointer_is_valid("/~"));
    }

    #[test]
    fn paths_render_as_escaped_pointers() {
        let root = Path::Root("/data");
        let i = root.index(3);
        let k = i.key("a/b~c");
        assert_eq!(k.render(), "/data/3/a~1b~0c");
        let long = "k".repeat(100);
        let l = root.key(&long);
        assert_eq!(
            l.render().chars().count(),
            "/data/".len() + MAX_KEY_CHARS + 1
        );
    }

    #[test]
    fn not_json_keeps_position_only() {
        let err = parse(b"{\"secret\": 12, oops}", Side::Request).err();
        let Some(err) = err else {
            panic!("parsed invalid JSON");
        };
        let msg = err.to_string();
        assert!(
            !msg.contains("secret") && !msg.contains("oops") && !msg.contains("12,"),
            "{msg}"
        );
        assert!(msg.contains("line 1"), "{msg}");
    }
}
