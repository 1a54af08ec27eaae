//! Inferring a route's feature schema from traffic, written as the TOML a user pastes
//! into their config and then refines (display names, units, protected flags).

use std::collections::BTreeSet;

use sidelight_explain::{FeatureKind, Schema, Value};

use crate::config::ProtocolName;
use sidelight_protocol::{self as adapter, Protocol};

/// Most levels listed for a categorical feature; beyond that the feature is more likely
/// an identifier than a category, and the TOML says so.
const MAX_LEVELS: usize = 50;

/// Why traffic could not be turned into a schema.
#[derive(Debug, thiserror::Error)]
pub enum SchemaInferError {
    /// A request body did not parse with the route's protocol.
    #[error("request {index}: {message}")]
    Request {
        /// 1-based position of the request in the input.
        index: usize,
        /// What was wrong (never the payload's values).
        message: String,
    },
    /// There were no rows at all.
    #[error("no rows to infer a schema from")]
    Empty,
    /// The rows did not make a valid schema.
    #[error("{0}")]
    Schema(String),
}

/// Infers the schema of request bodies in `protocol`'s format. `pointer` is the rows
/// pointer for `ProtocolName::Pointer`; `ranking` the context and candidates pointers
/// for `ProtocolName::Ranking` (its rows are named `context.<name>` and `item.<name>`,
/// as the route's features must be).
pub fn infer_from_requests<'a>(
    protocol: ProtocolName,
    pointer: Option<&str>,
    ranking: Option<&crate::config::RankingConfig>,
    bodies: impl IntoIterator<Item = &'a [u8]>,
) -> Result<String, SchemaInferError> {
    let protocol = match protocol {
        ProtocolName::KserveV1 => Protocol::KServeV1,
        ProtocolName::OpenInferenceV2 => Protocol::OpenInferenceV2,
        ProtocolName::Mlflow => Protocol::Mlflow,
        ProtocolName::Pointer => Protocol::Pointer {
            rows: pointer.unwrap_or_default().to_owned(),
            outputs: String::new(),
        },
        ProtocolName::Ranking => super::ranking_protocol(ranking),
    };
    let mut names: Vec<String> = Vec::new();
    let mut rows: Vec<Vec<Value>> = Vec::new();
    let mut positional = false;
    for (i, body) in bodies.into_iter().enumerate() {
        let parsed =
            adapter::parse_request(&protocol, body).map_err(|e| SchemaInferError::Request {
                index: i + 1,
                message: e.to_string(),
            })?;
        positional |= parsed.positional;
        for name in &parsed.names {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        for row in parsed.rows {
            let by_name = |n: &String| {
                parsed
                    .names
                    .iter()
                    .position(|p| p == n)
                    .and_then(|i| row.get(i).cloned())
                    .unwrap_or(Value::Missing)
            };
            rows.push(names.iter().map(by_name).collect());
        }
    }
    // Rows from before a later request added a name are shorter; pad them.
    for row in &mut rows {
        row.resize(names.len(), Value::Missing);
    }
    // The caller's own files: nothing to withhold from them.
    to_toml(&names, &rows, positional, &[])
}

/// Writes the schema of `rows` (columns named `names`) as `[[routes.explain.features]]`
/// tables. With `positional`, the requests named no columns: the names are placeholders
/// and the TOML says that the order is what counts. The levels of `personal` features
/// (marked `pii` or `protected`, or given a privacy rule) are not listed, only counted:
/// the admin API shows this TOML to viewers.
pub fn to_toml(
    names: &[String],
    rows: &[Vec<Value>],
    positional: bool,
    personal: &[String],
) -> Result<String, SchemaInferError> {
    if rows.is_empty() || names.is_empty() {
        return Err(SchemaInferError::Empty);
    }
    let schema = Schema::infer(names, rows).map_err(|e| SchemaInferError::Schema(e.to_string()))?;
    let mut out = String::from(
        "# Inferred from traffic by Sidelight. Add display names and units, and mark\n\
         # protected, pii and actionable features before using it.\n",
    );
    if positional {
        out.push_str(&format!(
            "#\n# The requests name no columns ({} unnamed columns, such as v1 `instances` arrays\n\
             # or a v2 [batch, {}] tensor), so these tables are in column order and their\n\
             # names are placeholders: give each its real name and keep the order. Sidelight\n\
             # reads unnamed columns as the configured features in order, and passes\n\
             # requests through unexplained (column_count_mismatch) when the counts differ.\n",
            names.len(),
            names.len()
        ));
    }
    for (i, feature) in schema.features().iter().enumerate() {
        let kind = match feature.kind {
            FeatureKind::Numeric => "numeric",
            FeatureKind::Boolean => "boolean",
            FeatureKind::Categorical => "categorical",
        };
        out.push_str("\n[[routes.explain.features]]\n");
        out.push_str(&format!("name = {}\n", toml_string(&feature.name)));
        out.push_str(&format!("kind = \"{kind}\"\n"));
        let present = rows
            .iter()
            .filter(|r| !matches!(r[i], Value::Missing))
            .count();
        if present < rows.len() {
            out.push_str(&format!(
                "# missing in {} of {} rows\n",
                rows.len() - present,
                rows.len()
            ));
        }
        if feature.kind == FeatureKind::Categorical {
            let levels: BTreeSet<String> = rows
                .iter()
                .filter_map(|r| match &r[i] {
                    Value::Text(t) => Some(t.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    Value::Bool(b) => Some(b.to_string()),
                    Value::Missing => None,
                })
                .collect();
            if personal.contains(&feature.name) {
                out.push_str(&format!(
                    "# personal data: its {} distinct values are not listed\n",
                    levels.len()
                ));
            } else if levels.len() > MAX_LEVELS {
                out.push_str(&format!(
                    "# {} distinct values: an identifier? Consider leaving it out.\n",
                    levels.len()
                ));
            } else {
                let list: Vec<String> = levels.iter().map(|l| toml_string(l)).collect();
                out.push_str(&format!("levels = [{}]\n", list.join(", ")));
            }
        }
    }
    let groups = suggested_groups(&schema, rows);
    if !groups.is_empty() {
        out.push_str(&format!(
            "\n# Strongly associated in this traffic (|r|, eta or Cramér's V of at least {GROUP_ASSOCIATION}):\n\
             # traffic alone cannot tell them apart, and a customer reads them better as one\n\
             # reason. Give each group a name a customer understands, or delete it.\n"
        ));
    }
    for group in groups {
        let members: Vec<&str> = group
            .iter()
            .map(|&j| schema.features()[j].name.as_str())
            .collect();
        out.push_str("\n[[routes.explain.groups]]\n");
        out.push_str(&format!("name = {}\n", toml_string(&members.join(" and "))));
        let list: Vec<String> = members.iter().map(|m| toml_string(m)).collect();
        out.push_str(&format!("features = [{}]\n", list.join(", ")));
    }
    Ok(out)
}

/// Features this associated in the traffic are suggested as a group.
const GROUP_ASSOCIATION: f64 = 0.8;
/// …measured on at least this many rows where both are present.
const GROUP_MIN_PAIRS: u64 = 30;

/// Groups of strongly associated features (|r|, η or Cramér's V at least
/// [`GROUP_ASSOCIATION`]): the connected components of that relation, in schema order.
/// Traffic cannot tell such features apart, and a customer reads them better as one
/// reason.
pub fn suggested_groups(schema: &Schema, rows: &[Vec<Value>]) -> Vec<Vec<usize>> {
    use sidelight_monitor::Values;
    let m = schema.features().len();
    let numeric: Vec<Option<Vec<f64>>> = (0..m)
        .map(|j| {
            (schema.features()[j].kind == FeatureKind::Numeric).then(|| {
                rows.iter()
                    .map(|r| match r.get(j) {
                        Some(Value::Number(x)) => *x,
                        _ => f64::NAN,
                    })
                    .collect()
            })
        })
        .collect();
    let text: Vec<Vec<Option<String>>> = (0..m)
        .map(|j| {
            if numeric[j].is_some() {
                return Vec::new();
            }
            rows.iter()
                .map(|r| match r.get(j) {
                    Some(Value::Text(t)) => Some(t.clone()),
                    Some(Value::Bool(b)) => Some(b.to_string()),
                    Some(Value::Number(x)) => Some(x.to_string()),
                    _ => None,
                })
                .collect()
        })
        .collect();
    let refs: Vec<Vec<Option<&str>>> = text
        .iter()
        .map(|col| col.iter().map(|v| v.as_deref()).collect())
        .collect();
    let values = |j: usize| match &numeric[j] {
        Some(x) => Values::Numeric(x),
        None => Values::Categorical(&refs[j]),
    };
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    // Union-find over strongly associated pairs.
    let mut parent: Vec<usize> = (0..m).collect();
    for a in 0..m {
        for b in a + 1..m {
            let strong = sidelight_monitor::association(&values(a), &values(b))
                .is_some_and(|s| s.value >= GROUP_ASSOCIATION && s.pairs >= GROUP_MIN_PAIRS);
            if strong {
                let (ra, rb) = (root(&mut parent, a), root(&mut parent, b));
                parent[rb] = ra;
            }
        }
    }
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for j in 0..m {
        let r = root(&mut parent, j);
        match groups.iter_mut().find(|g| root(&mut parent, g[0]) == r) {
            Some(g) => g.push(j),
            None => groups.push(vec![j]),
        }
    }
    groups.retain(|g| g.len() >= 2);
    groups
}

fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_levels_are_inferred_from_kserve_requests() {
        let second = r#"{"instances": [{"age": 41.5, "city": "Köln \"Mitte\"", "member": false, "extra": 1}]}"#;
        let bodies = [
            br#"{"instances": [{"age": 30, "city": "Bonn", "member": true}]}"#.as_slice(),
            second.as_bytes(),
        ];
        let toml = infer_from_requests(ProtocolName::KserveV1, None, None, bodies).unwrap();
        let parsed: toml::Value = toml.parse().unwrap();
        let features = parsed["routes"]["explain"]["features"].as_array().unwrap();
        let kinds: Vec<(&str, &str)> = features
            .iter()
            .map(|f| (f["name"].as_str().unwrap(), f["kind"].as_str().unwrap()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("age", "numeric"),
                ("city", "categorical"),
                ("member", "boolean"),
                ("extra", "numeric")
            ]
        );
        let levels = features[1]["levels"].as_array().unwrap();
        assert_eq!(levels.len(), 2);
        assert!(toml.contains("# missing in 1 of 2 rows"));
    }

    #[test]
    fn positional_traffic_gives_a_template_in_column_order() {
        let bodies = [br#"{"instances": [[30, "Bonn"], [41, "Koeln"]]}"#.as_slice()];
        let toml = infer_from_requests(ProtocolName::KserveV1, None, None, bodies).unwrap();
        assert!(
            toml.contains("so these tables are in column order"),
            "{toml}"
        );
        let parsed: toml::Value = toml.parse().unwrap();
        let features = parsed["routes"]["explain"]["features"].as_array().unwrap();
        let names: Vec<&str> = features
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["x0", "x1"]);
        let named = [br#"{"instances": [{"age": 30}]}"#.as_slice()];
        let toml = infer_from_requests(ProtocolName::KserveV1, None, None, named).unwrap();
        assert!(!toml.contains("column order"), "{toml}");
    }

    #[test]
    fn strongly_associated_features_are_suggested_as_a_group() {
        // `relationship` follows `marital` exactly, `age` tracks `years_employed`, and
        // `noise` follows nothing.
        let bodies: Vec<String> = (0..120)
            .map(|i| {
                let (marital, relationship) = if i % 3 == 0 {
                    ("married", "husband")
                } else {
                    ("single", "own-child")
                };
                let age = 20 + i % 40;
                format!(
                    r#"{{"instances": [{{"marital": "{marital}", "relationship": "{relationship}", "age": {age}, "years_employed": {}, "noise": {}}}]}}"#,
                    age - 18,
                    (i * 37) % 11
                )
            })
            .collect();
        let toml = infer_from_requests(
            ProtocolName::KserveV1,
            None,
            None,
            bodies.iter().map(|b| b.as_bytes()),
        )
        .unwrap();
        let parsed: toml::Value = toml.parse().unwrap();
        let groups = parsed["routes"]["explain"]["groups"].as_array().unwrap();
        let members: Vec<Vec<&str>> = groups
            .iter()
            .map(|g| {
                g["features"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| f.as_str().unwrap())
                    .collect()
            })
            .collect();
        assert_eq!(
            members,
            [
                vec!["marital", "relationship"],
                vec!["age", "years_employed"]
            ],
            "{toml}"
        );
        assert_eq!(groups[0]["name"].as_str(), Some("marital and relationship"));
    }

    #[test]
    fn a_bad_request_is_named_by_position() {
        let bodies = [br#"{"instances": [[1]]}"#.as_slice(), b"not json"];
        let error = infer_from_requests(ProtocolName::KserveV1, None, None, bodies).unwrap_err();
        assert!(error.to_string().starts_with("request 2:"), "{error}");
    }
}
