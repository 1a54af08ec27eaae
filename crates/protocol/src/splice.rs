//! Adding one member to a JSON response object by splicing bytes.
//!
//! Re-serialising the model's response would reformat numbers (`1.0e5` → `100000.0`,
//! `12345678901234567890` → a rounded float), reorder keys and change escapes: a client
//! comparing bytes, or a number beyond f64, would see a different answer. So the body is
//! only validated, never rebuilt, and the new member goes in just before the closing
//! brace; every byte of the model's own is kept.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::json::{Key, not_json};
use super::{AdapterError, Side};

/// JSON's insignificant whitespace (RFC 8259 §2).
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Returns `body` with `"field": value_json` added as the last member of its top-level
/// object. `value_json` must be JSON.
///
/// Errors: [`AdapterError::NotAnObject`] for JSON that is not an object (the caller falls
/// back to a header), [`AdapterError::NotJson`] for a body that is not JSON,
/// [`AdapterError::FieldExists`] when the model already has a top-level `field` (the
/// model's fields are never overwritten), [`AdapterError::InvalidAttachment`] when
/// `value_json` is not JSON.
pub fn attach_field(body: &[u8], field: &str, value_json: &str) -> Result<Bytes, AdapterError> {
    // JSON is UTF-8 (RFC 8259 §8.1), and serde_json skips the strings it ignores without
    // checking them: a model's invalid bytes inside a value would otherwise pass, and be
    // answered as JSON with an explanation. Found by fuzzing (fuzz/).
    if let Err(e) = std::str::from_utf8(body) {
        let valid = &body[..e.valid_up_to()];
        let line_start = valid.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        return Err(AdapterError::NotJson {
            side: Side::Response,
            line: 1 + valid.iter().filter(|b| **b == b'\n').count(),
            column: 1 + valid.len() - line_start,
        });
    }
    let first = body.iter().position(|b| !is_ws(*b));
    if first.map(|i| body[i]) != Some(b'{') {
        // Not an object; which error depends on whether it is JSON at all.
        return match serde_json::from_slice::<IgnoredAny>(body) {
            Ok(_) => Err(AdapterError::NotAnObject),
            Err(e) => Err(not_json(Side::Response, &e)),
        };
    }
    // One pass validates the whole body (numbers are scanned, not converted, so `1e400`
    // and 30-digit integers pass) and reads the top-level keys.
    let mut de = serde_json::Deserializer::from_slice(body);
    let scan = TopLevel { field }
        .deserialize(&mut de)
        .and_then(|scan| de.end().map(|()| scan))
        .map_err(|e| not_json(Side::Response, &e))?;
    if scan.has_field {
        return Err(AdapterError::FieldExists {
            field: field.to_owned(),
        });
    }
    serde_json::from_str::<IgnoredAny>(value_json).map_err(|_| AdapterError::InvalidAttachment)?;
    let key = serde_json::to_string(field).map_err(|_| AdapterError::InvalidAttachment)?;

    // The body is a valid object, so its last non-whitespace byte is its closing brace.
    let close = body
        .iter()
        .rposition(|b| !is_ws(*b))
        .ok_or(AdapterError::NotAnObject)?;
    let separator: &[u8] = if scan.members == 0 { b"" } else { b"," };
    let mut out =
        BytesMut::with_capacity(body.len() + separator.len() + key.len() + 1 + value_json.len());
    out.put_slice(&body[..close]);
    out.put_slice(separator);
    out.put_slice(key.as_bytes());
    out.put_u8(b':');
    out.put_slice(value_json.as_bytes());
    out.put_slice(&body[close..]);
    Ok(out.freeze())
}

/// What the top level of an object holds: how many members, and whether one is named
/// `field` (compared after unescaping, so `"expl\u0061nations"` counts).
struct Scan {
    members: usize,
    has_field: bool,
}

struct TopLevel<'f> {
    field: &'f str,
}

impl<'de> DeserializeSeed<'de> for TopLevel<'_> {
    type Value = Scan;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Scan, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TopLevel<'_> {
    type Value = Scan;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scan, A::Error> {
        let mut scan = Scan {
            members: 0,
            has_field: false,
        };
        while let Some(Key(key)) = map.next_key()? {
            scan.has_field |= key == self.field;
            map.next_value::<IgnoredAny>()?;
            scan.members += 1;
        }
        Ok(scan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FIELD: &str = "explanations";

    fn attach(body: &str, value: &str) -> Result<String, AdapterError> {
        attach_field(body.as_bytes(), FIELD, value).map(|b| String::from_utf8(b.to_vec()).unwrap())
    }

    /// The output with the appended member cut out, and the member itself.
    fn split_out(input: &str, output: &str, member_len: usize) -> (String, String) {
        let close = input.trim_end_matches([' ', '\t', '\n', '\r']).len() - 1;
        let removed = format!("{}{}", &output[..close], &output[close + member_len..]);
        (removed, output[close..close + member_len].to_owned())
    }

    #[test]
    fn keeps_model_bytes_verbatim() {
        let input = "  {\"big\" :12345678901234567890, \"e\":1.0e5,\n\t\"huge\": 1e400,\"s\":\"caf\\u00e9 \\\"q\\\"\",\n \"n\":[ -0.0 ,{ }]   }\r\n ";
        let value = r#"[{"id":"a","text":"ok"}]"#;
        let out = attach(input, value).unwrap();
        let member = format!(",\"{FIELD}\":{value}");
        let (removed, appended) = split_out(input, &out, member.len());
        assert_eq!(removed, input);
        assert_eq!(appended, member);
        // Still JSON; serde_json cannot hold 1e400 as a number, so validate without it.
        serde_json::from_str::<IgnoredAny>(&out).unwrap();
        assert!(
            out.contains("12345678901234567890") && out.contains("1.0e5") && out.contains("1e400")
        );
    }

    #[test]
    fn empty_object_gets_no_comma() {
        assert_eq!(attach("{ \n}", "1").unwrap(), "{ \n\"explanations\":1}");
        assert_eq!(attach("{}", "null").unwrap(), "{\"explanations\":null}");
    }

    #[test]
    fn field_name_is_escaped() {
        let out = attach_field(b"{\"a\":1}", "say \"why\"", "true").unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["say \"why\""], serde_json::Value::Bool(true));
    }

    #[test]
    fn refuses_non_objects_and_non_json() {
        assert_eq!(
            attach("[1, 2]", "1").unwrap_err(),
            AdapterError::NotAnObject
        );
        assert_eq!(attach(" 3 ", "1").unwrap_err(), AdapterError::NotAnObject);
        assert_eq!(attach("\"s\"", "1").unwrap_err(), AdapterError::NotAnObject);
        for bad in [
            "",
            "   ",
            "{",
            "{\"a\":1",
            "{\"a\":1} x",
            "{\"a\":1}{}",
            "[1",
            "{'a':1}",
            "{\"a\":1,}",
        ] {
            assert!(
                matches!(
                    attach(bad, "1"),
                    Err(AdapterError::NotJson {
                        side: Side::Response,
                        ..
                    })
                ),
                "{bad:?}"
            );
        }
    }

    /// Regression from fuzzing: bytes that are not UTF-8, in a key or in a value, make
    /// the body not JSON, so nothing is spliced into it.
    #[test]
    fn refuses_a_body_that_is_not_utf8() {
        for body in [
            &b"{\"res\xff\xffult\": {\"probs\": [0.2, 0.8]}}"[..],
            &b"{\"a\": 1,\n \"label\": \"caf\xe9\"}"[..],
        ] {
            assert!(
                matches!(
                    attach_field(body, FIELD, "1"),
                    Err(AdapterError::NotJson {
                        side: Side::Response,
                        ..
                    })
                ),
                "{body:?}"
            );
        }
        assert_eq!(
            attach_field(b"{\"a\": 1,\n \"label\": \"caf\xe9\"}", FIELD, "1"),
            Err(AdapterError::NotJson {
                side: Side::Response,
                line: 2,
                column: 15
            })
        );
    }

    #[test]
    fn never_overwrites_a_model_field() {
        let err = attach(r#"{"predictions": [1], "explanations": "mine"}"#, "1").unwrap_err();
        assert_eq!(
            err,
            AdapterError::FieldExists {
                field: FIELD.into()
            }
        );
        assert_eq!(err.reason(), "field_exists");
        // The same key written with an escape is the same key.
        assert!(matches!(
            attach(r#"{"expl\u0061nations": 1}"#, "1"),
            Err(AdapterError::FieldExists { .. })
        ));
        // A nested field of that name is the model's business, not a clash.
        assert!(attach(r#"{"meta": {"explanations": 1}}"#, "2").is_ok());
    }

    #[test]
    fn rejects_an_invalid_attachment() {
        assert_eq!(
            attach("{}", "{oops").unwrap_err(),
            AdapterError::InvalidAttachment
        );
    }

    /// JSON text for a value, with random insignificant whitespace and a spread of
    /// number spellings, escapes and nesting.
    fn json_text() -> impl Strategy<Value = String> {
        let ws = prop::sample::select(vec!["", " ", "  ", "\n", "\t", "\r\n  "]);
        let leaf = prop_oneof![
            Just("null".to_owned()),
            Just("true".to_owned()),
            Just("false".to_owned()),
            Just("12345678901234567890".to_owned()),
            Just("1.0e5".to_owned()),
            Just("-0.0".to_owned()),
            Just("1E-7".to_owned()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| format!("{f:e}")),
            "[a-z \\u{e9}\\u{1F600}]{0,8}".prop_map(|s| serde_json::to_string(&s).unwrap()),
            Just(r#""\u00e9\n\"\\\/""#.to_owned()),
        ];
        leaf.prop_recursive(3, 24, 4, move |inner| {
            let ws = ws.clone();
            prop_oneof![
                (prop::collection::vec(inner.clone(), 0..4), ws.clone())
                    .prop_map(|(items, w)| format!("[{w}{}{w}]", items.join(&format!("{w},{w}")))),
                (prop::collection::btree_map("[a-z]{1,4}", inner, 0..4), ws).prop_map(
                    |(members, w)| {
                        let m: Vec<String> = members
                            .iter()
                            .map(|(k, v)| format!("\"{k}\"{w}:{w}{v}"))
                            .collect();
                        format!("{{{w}{}{w}}}", m.join(&format!("{w},")))
                    }
                ),
            ]
        })
    }

    proptest! {
        #[test]
        fn attach_keeps_members_byte_identical(
            members in prop::collection::btree_map("[a-z]{1,6}", json_text(), 0..6),
            lead in "[ \t\n]{0,3}",
            pad in "[ \t\n]{0,3}",
            trail in "[ \t\r\n]{0,3}",
            value in json_text(),
        ) {
            let inner: Vec<String> =
                members.iter().map(|(k, v)| format!("{pad}\"{k}\"{pad}:{pad}{v}{pad}")).collect();
            let input = format!("{lead}{{{}{pad}}}{trail}", inner.join(","));
            let out = attach(&input, &value).unwrap();
            let sep = if members.is_empty() { "" } else { "," };
            let member = format!("{sep}\"{FIELD}\":{value}");
            let (removed, appended) = split_out(&input, &out, member.len());
            prop_assert_eq!(removed, input);
            prop_assert_eq!(appended, member);

            let parsed: serde_json::Value = serde_json::from_str(&out).unwrap();
            let expected: serde_json::Value = serde_json::from_str(&value).unwrap();
            prop_assert_eq!(&parsed[FIELD], &expected);
            prop_assert_eq!(parsed.as_object().map(|o| o.len()), Some(members.len() + 1));
            for (k, v) in &members {
                let original: serde_json::Value = serde_json::from_str(v).unwrap();
                prop_assert_eq!(&parsed[k.as_str()], &original);
            }
        }
    }
}
