#![no_main]
//! Splicing the explanations member into a response body: on success the output is JSON
//! whose bytes are the body's with the member inserted before the closing brace (every
//! original member byte-identical), and the member reads back as what was attached; a
//! refusal agrees with what the body is (not JSON, not an object, already has the field);
//! and a JSON object without the field is never refused.

use libfuzzer_sys::fuzz_target;
use serde::de::IgnoredAny;
use sidelight_protocol::{AdapterError, attach_field};

const FIELD: &str = "explanations";
const VALUE: &str = r#"[{"id":"0f8fad5b","text":"Mostly because of \"income\" ≥ 3000."}]"#;

fn is_ws(b: &u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fuzz_target!(|body: &[u8]| {
    // JSON is UTF-8; serde_json does not check the strings it skips, so check first.
    let scanned =
        std::str::from_utf8(body).is_ok() && serde_json::from_slice::<IgnoredAny>(body).is_ok();
    // `None` when the body is not JSON, or holds a number serde_json cannot represent.
    let parsed = serde_json::from_slice::<serde_json::Value>(body).ok();
    match attach_field(body, FIELD, VALUE) {
        Ok(out) => {
            assert!(scanned, "a body that is not JSON was accepted");
            let close = body
                .iter()
                .rposition(|b| !is_ws(b))
                .expect("a non-empty body");
            assert_eq!(body[close], b'}');
            assert_eq!(
                &out[..close],
                &body[..close],
                "bytes before the member changed"
            );
            assert_eq!(&out[out.len() - (body.len() - close)..], &body[close..]);
            let member = &out[close..out.len() - (body.len() - close)];
            let member = std::str::from_utf8(member).expect("the member is UTF-8");
            let member = member.strip_prefix(',').unwrap_or(member);
            assert_eq!(member, format!("\"{FIELD}\":{VALUE}"));
            assert!(
                serde_json::from_slice::<IgnoredAny>(&out).is_ok(),
                "output is not JSON"
            );
            if let Some(serde_json::Value::Object(original)) = parsed {
                let spliced: serde_json::Value =
                    serde_json::from_slice(&out).expect("spliced body parses as the body did");
                let expected: serde_json::Value =
                    serde_json::from_str(VALUE).expect("the attached value is JSON");
                assert_eq!(spliced.get(FIELD), Some(&expected));
                let spliced = spliced.as_object().expect("an object");
                assert_eq!(spliced.len(), original.len() + 1);
                for (k, v) in &original {
                    assert_eq!(spliced.get(k), Some(v), "member {k:?} changed");
                }
            }
        }
        // RFC 8259 §8.2 leaves a lone surrogate escape (`"\uDAFA"`) to the parser; serde_json
        // refuses one, and so may the splice, where it reads a key.
        Err(AdapterError::NotJson { .. }) => assert!(
            !scanned
                || serde_json::from_slice::<serde_json::Value>(body).is_err_and(|e| {
                    let e = e.to_string();
                    e.contains("surrogate")
                        || e.contains("hex escape")
                        || e.contains("unicode code point")
                }),
            "valid JSON refused as not JSON"
        ),
        Err(AdapterError::NotAnObject) => {
            assert!(scanned, "not JSON refused as not an object");
            if let Some(v) = parsed {
                assert!(!v.is_object(), "an object refused as not an object");
            }
        }
        Err(AdapterError::FieldExists { .. }) => {
            assert!(scanned);
            if let Some(v) = parsed {
                assert!(
                    v.get(FIELD).is_some(),
                    "refused for a field it does not have"
                );
            }
        }
        Err(other) => panic!("unexpected refusal {other:?}"),
    }
});
