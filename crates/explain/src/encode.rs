//! Turning a row of [`Value`]s into the dense `f64` row the trees read.
//!
//! Each original feature becomes exactly one encoded column, in schema order:
//!
//! - numeric: the number itself (text that parses as a number is accepted);
//! - boolean: `0.0` / `1.0`;
//! - categorical: an ordinal code. The levels are ordered at fit time by the mean target
//!   of the rows that carry them, so that one threshold split can separate "low" levels
//!   from "high" ones; a tree still splits the same column again to carve out any subset
//!   it needs.
//!
//! Missing values (`null`, `NaN`) and categorical levels never seen in training encode as
//! `NaN`, which every split sends down its learned default child.
//!
//! Because a feature is one column, an attribution to that column *is* the attribution to
//! the original feature: this is how "a categorical is explained as one feature" holds
//! without summing one-hot columns back together.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::schema::{FeatureKind, Schema, Value};

/// A value could not be encoded: which feature, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EncodeError {
    /// The row does not have one value per feature.
    #[error("row has {found} values, the schema has {expected} features")]
    Width {
        /// Values in the row.
        found: usize,
        /// Features in the schema.
        expected: usize,
    },
    /// A value of the wrong type for its feature.
    #[error("feature `{feature}` is {kind:?} but got {got}")]
    Type {
        /// The feature's name.
        feature: String,
        /// The feature's kind.
        kind: FeatureKind,
        /// What kind of value came (never the value itself: it may be personal data).
        got: &'static str,
    },
    /// The target used to order categorical levels is not finite.
    #[error("target of row {row} is not a finite number")]
    Target {
        /// Index of the row.
        row: usize,
    },
    /// Rows and targets differ in number.
    #[error("{rows} rows but {targets} targets")]
    Length {
        /// Number of rows.
        rows: usize,
        /// Number of targets.
        targets: usize,
    },
    /// More categorical levels than codes.
    #[error("too many levels")]
    TooManyLevels,
    /// A level listed twice in a saved encoder.
    #[error("level `{0}` appears twice")]
    DuplicateLevel(String),
    /// A saved encoder with a different number of level sets than features.
    #[error("{sets} level sets for {features} features")]
    LevelSets {
        /// Level sets given.
        sets: usize,
        /// Features in the schema.
        features: usize,
    },
    /// Levels given for a feature that is not categorical.
    #[error("feature `{feature}` is {kind:?} but has categorical levels")]
    LevelsNotCategorical {
        /// The feature's name.
        feature: String,
        /// The feature's kind.
        kind: FeatureKind,
    },
    /// A row inside a batch failed.
    #[error("row {row}: {source}")]
    Row {
        /// Index of the row.
        row: usize,
        /// What went wrong.
        #[source]
        source: Box<EncodeError>,
    },
}

/// The learned codes of one categorical feature: level `levels[c]` encodes as `c`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Levels {
    levels: Vec<String>,
    codes: HashMap<String, u32>,
}

impl Levels {
    /// Levels in code order (`levels()[c]` has code `c`).
    pub fn new(levels: Vec<String>) -> Result<Self, EncodeError> {
        let mut codes = HashMap::with_capacity(levels.len());
        for (i, l) in levels.iter().enumerate() {
            let code = u32::try_from(i).map_err(|_| EncodeError::TooManyLevels)?;
            if codes.insert(l.clone(), code).is_some() {
                return Err(EncodeError::DuplicateLevel(l.clone()));
            }
        }
        Ok(Self { levels, codes })
    }

    /// The levels in code order.
    pub fn levels(&self) -> &[String] {
        &self.levels
    }

    /// The code of a level, if it was seen in training.
    pub fn code(&self, level: &str) -> Option<u32> {
        self.codes.get(level).copied()
    }

    /// Number of levels.
    pub fn len(&self) -> usize {
        self.levels.len()
    }

    /// True when no level was seen in training.
    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }
}

// Serialised as a JSON object level -> code, written in code order so a reader sees the
// learned ordering.
impl Serialize for Levels {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.levels.iter().zip(0u32..))
    }
}

impl<'de> Deserialize<'de> for Levels {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map: HashMap<String, u32> = HashMap::deserialize(d)?;
        let mut levels = vec![None; map.len()];
        for (level, code) in map {
            match levels.get_mut(code as usize) {
                Some(slot @ None) => *slot = Some(level),
                Some(Some(_)) => {
                    return Err(serde::de::Error::custom(format!(
                        "code {code} is given to two levels"
                    )));
                }
                None => {
                    return Err(serde::de::Error::custom(format!(
                        "code {code} is out of range: codes must be 0..{}",
                        levels.len()
                    )));
                }
            }
        }
        let levels = levels.into_iter().flatten().collect();
        Self::new(levels).map_err(serde::de::Error::custom)
    }
}

/// Encodes rows of [`Value`]s for one schema; holds the learned categorical codes.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoder {
    schema: Schema,
    // One entry per feature; empty for non-categorical features.
    levels: Vec<Levels>,
}

impl Encoder {
    /// Learns categorical codes from training rows and their (finite) targets.
    ///
    /// Levels are ordered by their smoothed mean target (a level's mean shrunk towards
    /// the overall mean by one pseudo-row, so a level seen once does not jump to an
    /// extreme), ties broken by name so the result does not depend on row order.
    pub fn fit<R: AsRef<[Value]>>(
        schema: Schema,
        rows: &[R],
        target: &[f64],
    ) -> Result<Self, EncodeError> {
        if rows.len() != target.len() {
            return Err(EncodeError::Length {
                rows: rows.len(),
                targets: target.len(),
            });
        }
        if let Some(row) = target.iter().position(|t| !t.is_finite()) {
            return Err(EncodeError::Target { row });
        }
        let n = schema.len();
        let mut sums: Vec<HashMap<String, (f64, f64)>> = vec![HashMap::new(); n];
        for (i, row) in rows.iter().enumerate() {
            let row = row.as_ref();
            if row.len() != n {
                return Err(EncodeError::Row {
                    row: i,
                    source: Box::new(EncodeError::Width {
                        found: row.len(),
                        expected: n,
                    }),
                });
            }
            for (j, (feature, value)) in schema.features().iter().zip(row).enumerate() {
                if feature.kind != FeatureKind::Categorical {
                    continue;
                }
                if let Some(level) = level_of(value) {
                    let e = sums[j].entry(level.into_owned()).or_insert((0.0, 0.0));
                    e.0 += target[i];
                    e.1 += 1.0;
                }
            }
        }
        let overall = if target.is_empty() {
            0.0
        } else {
            target.iter().sum::<f64>() / target.len() as f64
        };
        let mut levels = Vec::with_capacity(n);
        for s in sums {
            let mut ranked: Vec<(f64, String)> = s
                .into_iter()
                .map(|(level, (sum, count))| ((sum + overall) / (count + 1.0), level))
                .collect();
            ranked.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
            let names = ranked.into_iter().map(|(_, l)| l).collect();
            // Names are unique keys of a map, so this cannot fail; fall back to no levels.
            levels.push(Levels::new(names).unwrap_or_default());
        }
        Ok(Self { schema, levels })
    }

    /// An encoder from a schema and given levels (one entry per feature, empty for
    /// non-categorical features), as read back from a saved surrogate.
    pub fn from_parts(schema: Schema, levels: Vec<Levels>) -> Result<Self, EncodeError> {
        if levels.len() != schema.len() {
            return Err(EncodeError::LevelSets {
                sets: levels.len(),
                features: schema.len(),
            });
        }
        for (f, l) in schema.features().iter().zip(&levels) {
            if f.kind != FeatureKind::Categorical && !l.is_empty() {
                return Err(EncodeError::LevelsNotCategorical {
                    feature: f.name.clone(),
                    kind: f.kind,
                });
            }
        }
        Ok(Self { schema, levels })
    }

    /// The schema this encoder reads.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The learned levels of feature `index` (empty unless categorical).
    pub fn levels(&self, index: usize) -> Option<&Levels> {
        self.levels.get(index)
    }

    /// The same encoder with every level of feature `i` renamed to `rename(i, level)`,
    /// codes unchanged: a row whose values are renamed alike encodes exactly as before.
    /// Fails if two levels of a feature would get one name.
    pub fn rename_levels(
        &self,
        mut rename: impl FnMut(usize, &str) -> String,
    ) -> Result<Self, EncodeError> {
        let levels = self
            .levels
            .iter()
            .enumerate()
            .map(|(i, l)| Levels::new(l.levels().iter().map(|v| rename(i, v)).collect()))
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_parts(self.schema.clone(), levels)
    }

    /// Width of an encoded row: one column per feature.
    pub fn n_features(&self) -> usize {
        self.schema.len()
    }

    /// Encodes one row.
    pub fn encode(&self, row: &[Value]) -> Result<Vec<f64>, EncodeError> {
        let mut out = vec![0.0; self.n_features()];
        self.encode_into(row, &mut out)?;
        Ok(out)
    }

    /// Encodes one row into `out`, which must be `n_features` wide.
    pub fn encode_into(&self, row: &[Value], out: &mut [f64]) -> Result<(), EncodeError> {
        let n = self.n_features();
        if row.len() != n {
            return Err(EncodeError::Width {
                found: row.len(),
                expected: n,
            });
        }
        if out.len() != n {
            return Err(EncodeError::Width {
                found: out.len(),
                expected: n,
            });
        }
        for (j, ((feature, value), slot)) in self
            .schema
            .features()
            .iter()
            .zip(row)
            .zip(out.iter_mut())
            .enumerate()
        {
            let type_error = |got| EncodeError::Type {
                feature: feature.name.clone(),
                kind: feature.kind,
                got,
            };
            *slot = match (feature.kind, value) {
                (_, Value::Missing) => f64::NAN,
                (FeatureKind::Numeric, Value::Number(v)) => *v,
                (FeatureKind::Numeric, Value::Bool(b)) => f64::from(u8::from(*b)),
                (FeatureKind::Numeric, Value::Text(t)) => {
                    parse_number(t).ok_or_else(|| type_error("text that is not a number"))?
                }
                (FeatureKind::Boolean, Value::Bool(b)) => f64::from(u8::from(*b)),
                (FeatureKind::Boolean, Value::Number(v)) => {
                    if v.is_nan() || *v == 0.0 || *v == 1.0 {
                        *v
                    } else {
                        return Err(type_error("a number other than 0 or 1"));
                    }
                }
                (FeatureKind::Boolean, Value::Text(t)) => match parse_bool(t) {
                    Some(b) => f64::from(u8::from(b)),
                    None if t.trim().is_empty() => f64::NAN,
                    None => return Err(type_error("text that is not a boolean")),
                },
                (FeatureKind::Categorical, v) => match level_of(v) {
                    Some(level) => self.levels[j].code(&level).map_or(f64::NAN, f64::from),
                    None => f64::NAN,
                },
            };
        }
        Ok(())
    }

    /// Encodes many rows into one row-major buffer (`rows.len() × n_features`).
    pub fn encode_rows<R: AsRef<[Value]>>(&self, rows: &[R]) -> Result<Vec<f64>, EncodeError> {
        let n = self.n_features();
        let mut out = vec![0.0; rows.len() * n];
        for (i, (row, slot)) in rows.iter().zip(out.chunks_exact_mut(n.max(1))).enumerate() {
            self.encode_into(row.as_ref(), slot)
                .map_err(|e| EncodeError::Row {
                    row: i,
                    source: Box::new(e),
                })?;
        }
        Ok(out)
    }
}

/// The categorical level a value stands for; `None` for missing.
/// The level a value is read as for a categorical feature (`None`: missing), exactly as
/// [`Encoder::encode`] reads it: a caller that maps levels (say, to pseudonyms) maps a
/// live value through this first so that it meets the level it was trained as.
pub fn level_of(value: &Value) -> Option<std::borrow::Cow<'_, str>> {
    use std::borrow::Cow;
    match value {
        Value::Missing => None,
        Value::Number(v) if v.is_nan() => None,
        // Integral numbers are written without a fraction so that `3` and `"3"` meet.
        Value::Number(v) if v.fract() == 0.0 && v.abs() < 1e15 => {
            Some(Cow::Owned(format!("{}", *v as i64)))
        }
        Value::Number(v) => Some(Cow::Owned(v.to_string())),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        Value::Text(t) if t.is_empty() => None,
        Value::Text(t) => Some(Cow::Borrowed(t.as_str())),
    }
}

fn parse_number(t: &str) -> Option<f64> {
    let t = t.trim();
    if t.is_empty() {
        return Some(f64::NAN);
    }
    t.parse().ok()
}

fn parse_bool(t: &str) -> Option<bool> {
    match t.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Feature;

    fn schema() -> Schema {
        Schema::new(vec![
            Feature::new("amount", FeatureKind::Numeric),
            Feature::new("owner", FeatureKind::Boolean),
            Feature::new("housing", FeatureKind::Categorical),
        ])
        .unwrap()
    }

    #[test]
    fn levels_are_ordered_by_mean_target_and_unseen_levels_are_missing() {
        let rows = vec![
            vec![Value::from(1.0), Value::from(true), Value::from("rent")],
            vec![Value::from(2.0), Value::from(false), Value::from("own")],
            vec![Value::from(3.0), Value::from(false), Value::from("free")],
            vec![Value::from(4.0), Value::from(true), Value::from("own")],
        ];
        let target = [5.0, -3.0, 1.0, -2.0];
        let enc = Encoder::fit(schema(), &rows, &target).unwrap();
        assert_eq!(enc.levels(2).unwrap().levels(), ["own", "free", "rent"]);
        let x = enc
            .encode(&[Value::from("7.5"), Value::from(true), Value::from("rent")])
            .unwrap();
        assert_eq!(x, vec![7.5, 1.0, 2.0]);
        let x = enc
            .encode(&[
                Value::Missing,
                Value::Number(f64::NAN),
                Value::from("castle"),
            ])
            .unwrap();
        assert!(x.iter().all(|v| v.is_nan()));
    }

    #[test]
    fn errors_name_the_feature_but_not_the_value() {
        let enc = Encoder::fit(schema(), &Vec::<Vec<Value>>::new(), &[]).unwrap();
        let err = enc
            .encode(&[Value::from("secret"), Value::from(true), Value::Missing])
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("amount") && !msg.contains("secret"), "{msg}");
        let err = enc.encode(&[Value::Missing]).unwrap_err();
        assert_eq!(
            err,
            EncodeError::Width {
                found: 1,
                expected: 3
            }
        );
        let err = enc
            .encode_rows(&[vec![Value::Missing, Value::from(2.0), Value::Missing]])
            .unwrap_err();
        assert!(
            err.to_string().starts_with("row 0: feature `owner`"),
            "{err}"
        );
    }

    #[test]
    fn levels_serialise_as_level_to_code_in_code_order() {
        let l = Levels::new(vec!["b".into(), "a".into()]).unwrap();
        let json = serde_json::to_string(&l).unwrap();
        assert_eq!(json, r#"{"b":0,"a":1}"#);
        assert_eq!(serde_json::from_str::<Levels>(&json).unwrap(), l);
        assert!(serde_json::from_str::<Levels>(r#"{"b":0,"a":2}"#).is_err());
        assert!(serde_json::from_str::<Levels>(r#"{"b":0,"a":0}"#).is_err());
    }
}
