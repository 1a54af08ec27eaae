//! What the features of a row are: their names, kinds, and the values a row carries.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

/// One value of one feature in a row, as it came from the model's traffic.
///
/// Serialises untagged, so a JSON row `[3.5, true, "rent", null]` reads as
/// `[Number, Bool, Text, Missing]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    /// A number (`NaN` counts as missing).
    Number(f64),
    /// A boolean.
    Bool(bool),
    /// A string: a categorical level, or a number written as text.
    Text(String),
    /// No value (JSON `null`, an empty cell).
    Missing,
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Self::Number(v)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Self::Bool(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Self::Text(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Self::Text(v)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Self::Missing, Into::into)
    }
}

/// What kind of values a feature takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureKind {
    /// Real numbers.
    Numeric,
    /// `true` / `false`.
    Boolean,
    /// String levels.
    Categorical,
}

/// One feature of the schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feature {
    /// The feature's name, unique in its schema.
    pub name: String,
    /// The kind of values it takes.
    pub kind: FeatureKind,
}

impl Feature {
    /// A feature of the given name and kind.
    pub fn new(name: impl Into<String>, kind: FeatureKind) -> Self {
        Self {
            name: name.into(),
            kind,
        }
    }
}

/// The schema is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// Two features share a name.
    #[error("feature `{0}` appears more than once in the schema")]
    Duplicate(String),
    /// The schema has no features.
    #[error("the schema has no features")]
    Empty,
    /// A row for inference has a different width from the names.
    #[error("row {row} has {found} values, expected {expected} (one per feature)")]
    RowWidth {
        /// Index of the row.
        row: usize,
        /// Values in the row.
        found: usize,
        /// Number of feature names.
        expected: usize,
    },
}

/// The ordered features of the rows a surrogate reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    features: Vec<Feature>,
}

impl Schema {
    /// A schema of these features, in row order; names must be unique.
    pub fn new(features: Vec<Feature>) -> Result<Self, SchemaError> {
        if features.is_empty() {
            return Err(SchemaError::Empty);
        }
        let mut seen = HashSet::with_capacity(features.len());
        for f in &features {
            if !seen.insert(f.name.as_str()) {
                return Err(SchemaError::Duplicate(f.name.clone()));
            }
        }
        Ok(Self { features })
    }

    /// Infers each feature's kind from rows of values: numeric when every present value
    /// is a number (or text that parses as one), boolean when every present value is a
    /// boolean, categorical otherwise. A feature with no present value is numeric.
    pub fn infer<R: AsRef<[Value]>>(names: &[String], rows: &[R]) -> Result<Self, SchemaError> {
        #[derive(Clone, Copy)]
        struct Seen {
            number: bool,
            boolean: bool,
            text: bool,
        }
        let mut seen = vec![
            Seen {
                number: false,
                boolean: false,
                text: false
            };
            names.len()
        ];
        for (i, row) in rows.iter().enumerate() {
            let row = row.as_ref();
            if row.len() != names.len() {
                return Err(SchemaError::RowWidth {
                    row: i,
                    found: row.len(),
                    expected: names.len(),
                });
            }
            for (s, v) in seen.iter_mut().zip(row) {
                match v {
                    Value::Number(_) => s.number = true,
                    Value::Bool(_) => s.boolean = true,
                    Value::Text(t) if t.trim().parse::<f64>().is_ok() => s.number = true,
                    Value::Text(_) => s.text = true,
                    Value::Missing => {}
                }
            }
        }
        let features = names
            .iter()
            .zip(seen)
            .map(|(name, s)| {
                let kind = match (s.number, s.boolean, s.text) {
                    (_, _, true) | (true, true, false) => FeatureKind::Categorical,
                    (false, true, false) => FeatureKind::Boolean,
                    (_, false, false) => FeatureKind::Numeric,
                };
                Feature::new(name.clone(), kind)
            })
            .collect();
        Self::new(features)
    }

    /// The features, in row order.
    pub fn features(&self) -> &[Feature] {
        &self.features
    }

    /// Number of features.
    pub fn len(&self) -> usize {
        self.features.len()
    }

    /// Always false for a schema built by [`Schema::new`].
    pub fn is_empty(&self) -> bool {
        self.features.is_empty()
    }

    /// The index of the feature called `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.features.iter().position(|f| f.name == name)
    }

    /// The feature names, in row order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.features.iter().map(|f| f.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_from_plain_json() {
        let row: Vec<Value> = serde_json::from_str(r#"[3.5, true, "rent", null]"#).unwrap();
        assert_eq!(
            row,
            vec![
                Value::Number(3.5),
                Value::Bool(true),
                Value::Text("rent".into()),
                Value::Missing
            ]
        );
    }

    #[test]
    fn kinds_are_inferred_and_duplicates_rejected() {
        let names: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
        let rows = vec![
            vec![
                Value::from(1.0),
                Value::from(true),
                Value::from("x"),
                Value::Missing,
            ],
            vec![
                Value::from("2.5"),
                Value::Missing,
                Value::from("y"),
                Value::Missing,
            ],
        ];
        let s = Schema::infer(&names, &rows).unwrap();
        let kinds: Vec<_> = s.features().iter().map(|f| f.kind).collect();
        assert_eq!(
            kinds,
            [
                FeatureKind::Numeric,
                FeatureKind::Boolean,
                FeatureKind::Categorical,
                FeatureKind::Numeric
            ]
        );
        let dup = Schema::new(vec![
            Feature::new("a", FeatureKind::Numeric),
            Feature::new("a", FeatureKind::Boolean),
        ]);
        assert_eq!(dup, Err(SchemaError::Duplicate("a".into())));
    }
}
