//! The one query-string and form parser: `application/x-www-form-urlencoded` bodies and
//! query strings, and %-encoding for links.

/// The fields of an `application/x-www-form-urlencoded` body, or the pairs of a query
/// string, in order, %-decoded (`+` as space); `None` if any is malformed.
pub fn parse_form(body: &[u8]) -> Option<Vec<(String, String)>> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| percent_decode(&s.replace('+', " "));
            Some((decode(k)?, decode(v)?))
        })
        .collect()
}

/// Why a query string was refused: the admin API answers it as `400 bad_query` with this
/// text, which names the parameter at fault.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// A `%XX` escape is malformed or the decoded text is not UTF-8.
    #[error("the query is not correctly %-encoded")]
    Encoding,
    /// A parameter this endpoint does not take.
    #[error("unknown parameter `{given}`; use {accepted}")]
    Unknown {
        /// The parameter as sent.
        given: String,
        /// The parameters the endpoint takes, for the message.
        accepted: &'static str,
    },
    /// A known parameter with a value it cannot take.
    #[error("`{key}`: {reason}")]
    Value {
        /// The parameter (or pair of parameters) at fault.
        key: String,
        /// What was wrong with its value.
        reason: String,
    },
}

impl QueryError {
    /// A value error for `key`.
    pub fn value(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Value {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// The pairs of a query string (absent: none), or why it is not one.
pub fn query_pairs(query: Option<&str>) -> Result<Vec<(String, String)>, QueryError> {
    parse_form(query.unwrap_or_default().as_bytes()).ok_or(QueryError::Encoding)
}

/// Decodes `%XX` escapes; `None` if an escape is malformed or the result is not UTF-8.
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The first value of `name` in parsed form fields or query pairs.
pub fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// `text` %-encoded for a URL path segment or query value: everything but RFC 3986's
/// unreserved characters.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
