//! The privacy policy: what of each field a record may keep.
//!
//! Every named field gets one rule:
//!
//! | rule            | stored value                                                   |
//! |-----------------|----------------------------------------------------------------|
//! | `keep`          | as sent                                                        |
//! | `drop`          | nothing (the member is removed; a column's values become null) |
//! | `pseudonymise`  | `ps_…`, a keyed HMAC of the value: stable, so joins still work |
//! | `band:W`        | the numeric band `"[40, 50)"` of width `W`                     |
//! | `prefix:N`      | the first `N` characters (postcodes: `"10115"` → `"101"`)     |
//! | `year`, `month` | a date truncated to `"2026"` or `"2026-11"`                    |
//!
//! The policy is applied to the structured features and attributions by name, and to
//! raw payloads wherever a field can be found by name: an object member (`{"age": 41}`,
//! also column-wise `{"age": [41, 52]}`), an Open Inference input (`{"name": "age",
//! "data": [...]}`), or a split data frame (`{"columns": [...], "data": [[...]]}`). A
//! payload in which a field with a rule other than `keep` could not be found by name
//! (positional rows) is not stored at all: a policy that cannot be applied must not be
//! bypassed.

use std::collections::{BTreeMap, HashSet};

use serde_json::Value;

use crate::keys::Keys;

/// The rule for one field.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldRule {
    /// Store as sent.
    Keep,
    /// Store nothing.
    Drop,
    /// Store a keyed HMAC of the value.
    Pseudonymise,
    /// Store the numeric band of this width.
    Band(f64),
    /// Store the first N characters.
    Prefix(usize),
    /// Store the year of a date.
    Year,
    /// Store the year and month of a date.
    Month,
    /// Show that there is a value but not which (`•••`): for people who may see a
    /// record but not the personal data in it.
    Mask,
}

/// Why a `[…privacy.fields]` rule could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FieldRuleError {
    /// `band:` with a width that is not a positive number.
    #[error("band width `{0}` must be a positive number")]
    BandWidth(String),
    /// `prefix:` with a length that is not a whole number above 0.
    #[error("prefix length `{0}` must be a whole number above 0")]
    PrefixLength(String),
    /// None of the rules.
    #[error(
        "`{0}` is not a rule: use keep, drop, pseudonymise, band:WIDTH, prefix:N, year, month or mask"
    )]
    Unknown(String),
}

impl std::str::FromStr for FieldRule {
    type Err = FieldRuleError;

    fn from_str(s: &str) -> Result<Self, FieldRuleError> {
        let s = s.trim();
        let (head, arg) = s.split_once(':').map_or((s, None), |(h, a)| (h, Some(a)));
        match (head, arg) {
            ("keep", None) => Ok(Self::Keep),
            ("drop", None) => Ok(Self::Drop),
            ("pseudonymise" | "pseudonymize", None) => Ok(Self::Pseudonymise),
            ("year", None) => Ok(Self::Year),
            ("month", None) => Ok(Self::Month),
            ("mask", None) => Ok(Self::Mask),
            ("band", Some(w)) => match w.trim().parse::<f64>() {
                Ok(w) if w.is_finite() && w > 0.0 => Ok(Self::Band(w)),
                _ => Err(FieldRuleError::BandWidth(w.to_owned())),
            },
            ("prefix", Some(n)) => match n.trim().parse::<usize>() {
                Ok(n) if n > 0 => Ok(Self::Prefix(n)),
                _ => Err(FieldRuleError::PrefixLength(n.to_owned())),
            },
            _ => Err(FieldRuleError::Unknown(s.to_owned())),
        }
    }
}

impl std::fmt::Display for FieldRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Keep => f.write_str("keep"),
            Self::Drop => f.write_str("drop"),
            Self::Pseudonymise => f.write_str("pseudonymise"),
            Self::Band(w) => write!(f, "band:{w}"),
            Self::Prefix(n) => write!(f, "prefix:{n}"),
            Self::Year => f.write_str("year"),
            Self::Month => f.write_str("month"),
            Self::Mask => f.write_str("mask"),
        }
    }
}

impl FieldRule {
    /// The stored form of `value`; `None` to store nothing.
    pub fn apply(&self, value: &Value, keys: &Keys) -> Option<Value> {
        match self {
            Self::Keep => Some(value.clone()),
            Self::Drop => None,
            Self::Mask => Some(Value::String("•••".to_owned())),
            Self::Pseudonymise => match value {
                Value::Null => Some(Value::Null),
                Value::String(s) => Some(Value::String(keys.pseudonym(s))),
                other => Some(Value::String(keys.pseudonym(&other.to_string()))),
            },
            Self::Band(width) => {
                let x = match value {
                    Value::Number(n) => n.as_f64(),
                    Value::String(s) => s.trim().parse::<f64>().ok(),
                    _ => None,
                }
                .filter(|x| x.is_finite())?;
                let low = (x / width).floor() * width;
                Some(Value::String(format!("[{low}, {})", low + width)))
            }
            Self::Prefix(n) => {
                let text = match value {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => return None,
                };
                Some(Value::String(text.chars().take(*n).collect()))
            }
            Self::Year | Self::Month => {
                let Value::String(s) = value else { return None };
                let keep = if *self == Self::Year { 4 } else { 7 };
                let head: String = s.chars().take(keep).collect();
                let shape_ok = head.len() == keep
                    && head
                        .char_indices()
                        .all(|(i, c)| if i == 4 { c == '-' } else { c.is_ascii_digit() });
                shape_ok.then_some(Value::String(head))
            }
        }
    }
}

/// The rules of one route, by field name. Fields not named are kept.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PrivacyPolicy {
    rules: BTreeMap<String, FieldRule>,
}

/// Where the policy found and transformed a field in a payload.
#[derive(Default)]
struct Seen(HashSet<String>);

impl PrivacyPolicy {
    /// A policy from `(field, rule)` pairs; `keep` rules are dropped as no-ops.
    pub fn new(rules: impl IntoIterator<Item = (String, FieldRule)>) -> Self {
        PrivacyPolicy {
            rules: rules
                .into_iter()
                .filter(|(_, r)| *r != FieldRule::Keep)
                .collect(),
        }
    }

    /// Whether every field is kept as sent.
    pub fn keeps_everything(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rule of `field`.
    pub fn rule(&self, field: &str) -> &FieldRule {
        self.rules.get(field).unwrap_or(&FieldRule::Keep)
    }

    /// Fields among `names` whose rule is not `keep`.
    pub fn restricted<'a>(&self, names: &'a [String]) -> Vec<&'a str> {
        names
            .iter()
            .filter(|n| self.rules.contains_key(n.as_str()))
            .map(String::as_str)
            .collect()
    }

    /// A JSON payload with the policy applied. `present` are the restricted fields the
    /// payload is known to carry (from the adapter); if any of them cannot be found by
    /// name, `None`: the payload is not stored. Bytes that are not JSON are stored only
    /// when no restricted field is present.
    pub fn apply_payload(&self, bytes: &[u8], present: &[&str], keys: &Keys) -> Option<Vec<u8>> {
        if self.keeps_everything() {
            return Some(bytes.to_vec());
        }
        let Ok(mut value) = serde_json::from_slice::<Value>(bytes) else {
            return present.is_empty().then(|| bytes.to_vec());
        };
        let mut seen = Seen::default();
        self.walk(&mut value, keys, &mut seen);
        if present.iter().any(|f| !seen.0.contains(*f)) {
            return None;
        }
        serde_json::to_vec(&value).ok()
    }

    fn walk(&self, value: &mut Value, keys: &Keys, seen: &mut Seen) {
        match value {
            Value::Object(map) => {
                // Open Inference input: {"name": F, "data": [...]}.
                if let Some(Value::String(name)) = map.get("name") {
                    let name = name.clone();
                    if let (Some(rule), Some(Value::Array(data))) =
                        (self.rules.get(&name), map.get_mut("data"))
                    {
                        apply_all(rule, data, keys);
                        seen.0.insert(name);
                        return;
                    }
                }
                // Split data frame: {"columns": [...], "data": [[...], ...]}.
                if let (Some(Value::Array(columns)), Some(Value::Array(_))) =
                    (map.get("columns"), map.get("data"))
                {
                    let ruled: Vec<(usize, FieldRule, String)> = columns
                        .iter()
                        .enumerate()
                        .filter_map(|(i, c)| {
                            let c = c.as_str()?;
                            self.rules.get(c).map(|r| (i, r.clone(), c.to_owned()))
                        })
                        .collect();
                    if let Some(Value::Array(rows)) = map.get_mut("data") {
                        for row in rows.iter_mut() {
                            if let Value::Array(cells) = row {
                                for (i, rule, _) in &ruled {
                                    if let Some(cell) = cells.get_mut(*i) {
                                        *cell = rule.apply(cell, keys).unwrap_or(Value::Null);
                                    }
                                }
                            }
                        }
                    }
                    seen.0.extend(ruled.into_iter().map(|(_, _, name)| name));
                    return;
                }
                let ruled: Vec<String> = map
                    .keys()
                    .filter(|k| self.rules.contains_key(k.as_str()))
                    .cloned()
                    .collect();
                for name in ruled {
                    let Some(rule) = self.rules.get(&name) else {
                        continue;
                    };
                    let replacement = match map.get_mut(&name) {
                        // Column-wise: {"age": [41, 52]}.
                        Some(Value::Array(items)) => {
                            apply_all(rule, items, keys);
                            seen.0.insert(name);
                            continue;
                        }
                        Some(v) => rule.apply(v, keys),
                        None => continue,
                    };
                    match replacement {
                        Some(v) => {
                            map.insert(name.clone(), v);
                        }
                        None => {
                            map.remove(&name);
                        }
                    }
                    seen.0.insert(name);
                }
                for v in map.values_mut() {
                    self.walk(v, keys, seen);
                }
            }
            Value::Array(items) => {
                for v in items {
                    self.walk(v, keys, seen);
                }
            }
            _ => {}
        }
    }

    /// Feature rows (`names` and row-major values) with the policy applied column by
    /// column; a dropped column's values become null.
    pub fn apply_rows(&self, names: &[String], rows: &mut [Vec<Value>], keys: &Keys) {
        if self.keeps_everything() {
            return;
        }
        let ruled: Vec<(usize, &FieldRule)> = names
            .iter()
            .enumerate()
            .filter_map(|(i, n)| self.rules.get(n).map(|r| (i, r)))
            .collect();
        for row in rows {
            for (i, rule) in &ruled {
                if let Some(cell) = row.get_mut(*i) {
                    *cell = rule.apply(cell, keys).unwrap_or(Value::Null);
                }
            }
        }
    }

    /// Applies the policy to `{"feature": F, "value": v}` objects anywhere in `value`
    /// (the attributions of an explanation).
    pub fn apply_attributions(&self, value: &mut Value, keys: &Keys) {
        if self.keeps_everything() {
            return;
        }
        match value {
            Value::Object(map) => {
                let rule = match map.get("feature") {
                    Some(Value::String(f)) => self.rules.get(f).cloned(),
                    _ => None,
                };
                if let Some(rule) = rule {
                    if let Some(v) = map.get_mut("value") {
                        *v = rule.apply(v, keys).unwrap_or(Value::Null);
                    }
                }
                for v in map.values_mut() {
                    self.apply_attributions(v, keys);
                }
            }
            Value::Array(items) => {
                for v in items {
                    self.apply_attributions(v, keys);
                }
            }
            _ => {}
        }
    }

    /// Whether `text` quotes the value of a restricted field: the value's own text, or a
    /// number in the ways a narration prints it. Conservative: a text that might quote
    /// a withheld value counts as quoting it.
    pub fn text_quotes(&self, text: &str, names: &[String], rows: &[Vec<Value>]) -> bool {
        if self.keeps_everything() {
            return false;
        }
        let ruled: Vec<usize> = names
            .iter()
            .enumerate()
            .filter(|(_, n)| self.rules.contains_key(n.as_str()))
            .map(|(i, _)| i)
            .collect();
        rows.iter().any(|row| {
            ruled.iter().filter_map(|i| row.get(*i)).any(|v| {
                spellings(v)
                    .iter()
                    .any(|s| !s.is_empty() && text.contains(s.as_str()))
            })
        })
    }
}

fn apply_all(rule: &FieldRule, items: &mut [Value], keys: &Keys) {
    for item in items {
        *item = rule.apply(item, keys).unwrap_or(Value::Null);
    }
}

/// How a value may appear in a narrated text.
fn spellings(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Number(n) => {
            let mut out = vec![n.to_string()];
            if let Some(x) = n.as_f64() {
                let whole = x.round();
                if (x - whole).abs() < 1e-9 && whole.abs() < 1e15 {
                    // Safe: checked to be whole and small.
                    #[allow(clippy::cast_possible_truncation)]
                    let whole = whole as i64;
                    out.push(whole.to_string());
                    out.push(group(whole, ','));
                    out.push(group(whole, '.'));
                }
                out.push(format!("{x:.1}"));
                out.push(format!("{x:.2}"));
                out.push(format!("{x:.1}").replace('.', ","));
                out.push(format!("{x:.2}").replace('.', ","));
            }
            out.dedup();
            out
        }
        _ => Vec::new(),
    }
}

fn group(n: i64, sep: char) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(sep);
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn keys() -> Keys {
        Keys::parse(
            b"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
            "t",
        )
        .unwrap()
    }

    fn policy() -> PrivacyPolicy {
        PrivacyPolicy::new([
            ("customer_id".to_owned(), "pseudonymise".parse().unwrap()),
            ("age".to_owned(), "band:10".parse().unwrap()),
            ("postcode".to_owned(), "prefix:3".parse().unwrap()),
            ("birth".to_owned(), "month".parse().unwrap()),
            ("name".to_owned(), "drop".parse().unwrap()),
        ])
    }

    fn apply(v: Value, present: &[&str]) -> Option<Value> {
        let bytes = serde_json::to_vec(&v).unwrap();
        policy()
            .apply_payload(&bytes, present, &keys())
            .map(|b| serde_json::from_slice(&b).unwrap())
    }

    #[test]
    fn rules_parse_and_name_the_bad_part() {
        assert_eq!("band:5".parse::<FieldRule>().unwrap(), FieldRule::Band(5.0));
        assert!(
            "band:-1"
                .parse::<FieldRule>()
                .unwrap_err()
                .to_string()
                .contains("positive")
        );
        assert!(
            "hash"
                .parse::<FieldRule>()
                .unwrap_err()
                .to_string()
                .contains("`hash`")
        );
        assert_eq!(FieldRule::Prefix(3).to_string(), "prefix:3");
    }

    #[test]
    fn each_rule_transforms_an_object_row() {
        let k = keys();
        let out = apply(
            json!({"instances": [{"customer_id": "C-17", "age": 47, "postcode": "10115",
                                  "birth": "1979-04-12", "name": "Ada", "amount": 1200}]}),
            &["customer_id", "age", "postcode", "birth", "name"],
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"instances": [{"customer_id": k.pseudonym("C-17"), "age": "[40, 50)",
                                  "postcode": "101", "birth": "1979-04", "amount": 1200}]})
        );
    }

    #[test]
    fn columnar_forms_are_found_by_name() {
        let v2 = apply(
            json!({"inputs": [{"name": "age", "shape": [2], "datatype": "FP64", "data": [23, 61]},
                              {"name": "amount", "shape": [2], "datatype": "FP64", "data": [1, 2]}]}),
            &["age"],
        )
        .unwrap();
        assert_eq!(v2["inputs"][0]["data"], json!(["[20, 30)", "[60, 70)"]));
        assert_eq!(v2["inputs"][1]["data"], json!([1, 2]));
        let split = apply(
            json!({"dataframe_split": {"columns": ["amount", "name"], "data": [[1, "Ada"], [2, "Bo"]]}}),
            &["name"],
        )
        .unwrap();
        assert_eq!(
            split["dataframe_split"]["data"],
            json!([[1, null], [2, null]])
        );
        let dict = apply(json!({"inputs": {"age": [33, 44]}}), &["age"]).unwrap();
        assert_eq!(dict["inputs"]["age"], json!(["[30, 40)", "[40, 50)"]));
    }

    #[test]
    fn a_payload_whose_restricted_field_cannot_be_found_is_not_stored() {
        assert_eq!(apply(json!({"instances": [[47, 1200]]}), &["age"]), None);
        // Without restricted fields present, positional rows are fine.
        assert!(apply(json!({"instances": [[1200]]}), &[]).is_some());
        assert_eq!(policy().apply_payload(b"not json", &["age"], &keys()), None);
    }

    #[test]
    fn rows_attributions_and_texts() {
        let k = keys();
        let names = vec!["age".to_owned(), "amount".to_owned()];
        let mut rows = vec![vec![json!(1234), json!(5)]];
        let original = rows.clone();
        policy().apply_rows(&names, &mut rows, &k);
        assert_eq!(rows, vec![vec![json!("[1230, 1240)"), json!(5)]]);
        let mut attributions =
            json!([{"attributions": [{"feature": "age", "value": 47, "contribution": 0.1}]}]);
        policy().apply_attributions(&mut attributions, &k);
        assert_eq!(attributions[0]["attributions"][0]["value"], "[40, 50)");
        let p = policy();
        assert!(p.text_quotes("your age of 1,234 years", &names, &original));
        assert!(p.text_quotes("age = 1234", &names, &original));
        assert!(!p.text_quotes("amount = 5", &names, &original));
    }

    #[test]
    fn dates_of_the_wrong_shape_are_not_kept() {
        let k = keys();
        assert_eq!(FieldRule::Year.apply(&json!("12/04/1979"), &k), None);
        assert_eq!(
            FieldRule::Year.apply(&json!("1979-04-12"), &k),
            Some(json!("1979"))
        );
        assert_eq!(FieldRule::Band(10.0).apply(&json!("n/a"), &k), None);
    }
}
