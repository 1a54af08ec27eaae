//! The JSON file format of a trained surrogate, `format_version` 1.
//!
//! ```json
//! {
//!   "format_version": 1,
//!   "output": { "kind": "binary_probability" },
//!   "features": [
//!     { "name": "amount",  "kind": "numeric" },
//!     { "name": "owner",   "kind": "boolean" },
//!     { "name": "housing", "kind": "categorical", "levels": { "own": 0, "free": 1, "rent": 2 } }
//!   ],
//!   "ensembles": [
//!     {
//!       "base_offset": -0.81,
//!       "n_features": 3,
//!       "trees": [
//!         {
//!           "children_left":    [1, -1, -1],
//!           "children_right":   [2, -1, -1],
//!           "children_default": [2, -1, -1],
//!           "feature":          [0, -1, -1],
//!           "threshold":        [2500.5, 0.0, 0.0],
//!           "value":            [0.01, -0.03, 0.08],
//!           "cover":            [900.0, 620.0, 280.0]
//!         }
//!       ]
//!     }
//!   ],
//!   "metadata": { "n_train": 1000, "n_validation": 100, "params": { "n_trees": 100, "…": "…" },
//!                 "trees": [1], "stopped_early": [false], "trained_by": "sidelight-explain 0.1.0" }
//! }
//! ```
//!
//! - `output.kind`: `regression` (trees predict the score), `binary_probability` (trees
//!   predict the logit of the positive-class probability), or `multi_class` with
//!   `"classes": [...]` (one ensemble per class, each predicting that class's logit).
//! - `features`: in row order; an encoded row has one column per feature, in this order.
//!   Numeric values are used as they are, booleans as 0/1, categorical levels as the code
//!   given in `levels` (level → code). Missing values and unknown levels are `NaN`.
//! - `ensembles`: one per output. Prediction (raw space) is `base_offset` plus, for each
//!   tree, the `value` of the leaf reached from node 0 by going to `children_left` when
//!   `x[feature] <= threshold`, `children_right` when greater, and `children_default` when
//!   `x[feature]` is missing. Leaves have `-1` in `children_*` and `feature`; their
//!   `threshold` is unused. `value` at an internal node is the cover-weighted mean of the
//!   leaves below it; `cover` is the number of training rows that reached the node.
//! - Numbers are written with the shortest decimal that reads back as the same `f64`,
//!   and read back exactly, so a loaded surrogate predicts bit for bit as the saved one.
//!
//! Loading checks the version, the trees ([`Ensemble::validate`](crate::Ensemble::validate)),
//! that every ensemble reads as many features as the schema has, that feature names and
//! class labels are unique, that categorical codes are `0..n`, that values are finite, and
//! that the parameters are in range; each error says what is wrong and where.

use serde::{Deserialize, Serialize};

use crate::encode::{EncodeError, Encoder, Levels};
use crate::gbt::{GbtError, GbtParams};
use crate::schema::{Feature, FeatureKind, Schema, SchemaError};
use crate::surrogate::{OutputKind, Surrogate, SurrogateError, SurrogateMetadata};
use crate::tree::Ensemble;
use linfa::ParamGuard;

/// The version this crate writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// A surrogate file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// Not JSON, or a field is missing or of the wrong type (with line and column).
    #[error("surrogate JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A version this crate does not read.
    #[error("format_version {found} is not supported (this build reads {FORMAT_VERSION})")]
    Version {
        /// The version in the file.
        found: u64,
    },
    /// The feature list is not a schema.
    #[error("features: {0}")]
    Schema(#[from] SchemaError),
    /// A feature's encoding does not fit its kind.
    #[error("features: {0}")]
    Encoding(#[from] EncodeError),
    /// The parts do not fit together, or the trees are malformed.
    #[error(transparent)]
    Surrogate(#[from] SurrogateError),
    /// The recorded parameters are out of range.
    #[error("metadata.params: {0}")]
    Params(#[from] GbtError),
}

#[derive(Serialize, Deserialize)]
struct FeatureEntry {
    name: String,
    kind: FeatureKind,
    #[serde(default, skip_serializing_if = "Levels::is_empty")]
    levels: Levels,
}

#[derive(Serialize, Deserialize)]
struct SurrogateFile {
    format_version: u64,
    output: OutputKind,
    features: Vec<FeatureEntry>,
    ensembles: Vec<Ensemble>,
    metadata: SurrogateMetadata,
}

#[derive(Deserialize)]
struct VersionOnly {
    format_version: u64,
}

impl Surrogate {
    fn to_file(&self) -> SurrogateFile {
        let features = self
            .schema()
            .features()
            .iter()
            .enumerate()
            .map(|(i, f)| FeatureEntry {
                name: f.name.clone(),
                kind: f.kind,
                levels: self.encoder().levels(i).cloned().unwrap_or_default(),
            })
            .collect();
        SurrogateFile {
            format_version: u64::from(FORMAT_VERSION),
            output: self.output().clone(),
            features,
            ensembles: self.ensembles().to_vec(),
            metadata: self.metadata().clone(),
        }
    }

    /// The surrogate as compact JSON (format version 1).
    pub fn to_json(&self) -> Result<String, FormatError> {
        Ok(serde_json::to_string(&self.to_file())?)
    }

    /// The surrogate as indented JSON, for people to read.
    pub fn to_json_pretty(&self) -> Result<String, FormatError> {
        Ok(serde_json::to_string_pretty(&self.to_file())?)
    }

    /// Reads and checks a surrogate written by [`to_json`](Self::to_json).
    pub fn from_json(json: &str) -> Result<Self, FormatError> {
        // The version first, so an old or new file says so instead of a field error.
        let version: VersionOnly = serde_json::from_str(json)?;
        if version.format_version != u64::from(FORMAT_VERSION) {
            return Err(FormatError::Version {
                found: version.format_version,
            });
        }
        let file: SurrogateFile = serde_json::from_str(json)?;
        GbtParams::from(file.metadata.params.clone()).check()?;
        let mut features = Vec::with_capacity(file.features.len());
        let mut levels = Vec::with_capacity(file.features.len());
        for f in file.features {
            features.push(Feature::new(f.name, f.kind));
            levels.push(f.levels);
        }
        let schema = Schema::new(features)?;
        let encoder = Encoder::from_parts(schema, levels)?;
        let n_outputs = file.output.n_outputs();
        if file.metadata.trees.len() != n_outputs || file.metadata.stopped_early.len() != n_outputs
        {
            return Err(SurrogateError::Inconsistent(format!(
                "metadata describes {} outputs, the output kind has {n_outputs}",
                file.metadata.trees.len()
            ))
            .into());
        }
        Ok(Surrogate::from_parts(
            encoder,
            file.output,
            file.ensembles,
            file.metadata,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        /// serde_json writes the shortest round-tripping decimal (ryu) and, with its
        /// `float_roundtrip` feature, parses it back correctly rounded: every finite f64
        /// survives bit for bit.
        #[test]
        fn every_finite_f64_round_trips_through_json(bits in any::<u64>()) {
            let v = f64::from_bits(bits);
            prop_assume!(v.is_finite());
            let json = serde_json::to_string(&v).unwrap();
            let back: f64 = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(back.to_bits(), v.to_bits(), "{}", json);
        }
    }
}
