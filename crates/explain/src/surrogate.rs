//! The surrogate the proxy holds: schema and encoder, one tree ensemble per model output,
//! and what kind of output the model gives.
//!
//! The trees regress the model's score in *raw* space:
//!
//! - regression: the model's output itself (identity link);
//! - binary classifier: the logit `ln(p / (1 − p))` of the probability of the positive
//!   class, with `p` clipped to `[1e-6, 1 − 1e-6]` ([`PROBABILITY_CLIP`]) so that a
//!   model that answers exactly 0 or 1 gives a finite target (±13.8);
//! - multi-class: one ensemble per class, each fitting that class's probability logit
//!   the same way (one-vs-rest). The trees are independent, so the per-class outputs are
//!   each class's own probability estimate and need not sum to exactly 1.
//!
//! SHAP values are additive in raw space, so explanations are computed there; the
//! model-output space (`sigmoid` of the raw value for classifiers) is what predictions
//! and fidelity are reported in.
//!
//! ```
//! use linfa::ParamGuard;
//! use sidelight_explain::{Feature, FeatureKind, GbtParams, OutputKind, Schema, Surrogate, Value};
//!
//! let schema = Schema::new(vec![
//!     Feature::new("income", FeatureKind::Numeric),
//!     Feature::new("housing", FeatureKind::Categorical),
//! ])?;
//! let rows: Vec<Vec<Value>> = (0..400)
//!     .map(|i| vec![Value::from(f64::from(i % 50)), Value::from(["own", "rent"][i as usize % 2])])
//!     .collect();
//! // The model's probability of approval for each row.
//! let p: Vec<f64> = (0..400).map(|i| if i % 50 > 25 { 0.9 } else { 0.2 }).collect();
//! let params = GbtParams::new().n_trees(20).check()?;
//! let s = Surrogate::fit(schema, &rows, &p, OutputKind::BinaryProbability, &params)?;
//! let row = [Value::from(40.0), Value::from("castle")]; // an unseen level is fine
//! assert!(s.predict(&row)?[0] > 0.8);
//! let saved = s.to_json()?;
//! assert_eq!(Surrogate::from_json(&saved)?, s);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use serde::{Deserialize, Serialize};

use crate::encode::{EncodeError, Encoder};
use crate::fidelity::{Fidelity, FidelityError, fidelity, split_holdout};
use crate::gbt::{GbtError, GbtValidParams};
use crate::linear::{LinearError, LinearSurrogate};
use crate::schema::{Schema, Value};
use crate::tree::{Ensemble, TreeError};

// Defined apart so that `fidelity` can use it without importing this module; the
// public path stays `surrogate::OutputKind`.
pub use crate::output::{OutputKind, PROBABILITY_CLIP};

/// Where a surrogate came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SurrogateMetadata {
    /// Rows the surrogate was trained on (including its early-stopping share).
    pub n_train: usize,
    /// Of those, rows held out for early stopping.
    pub n_validation: usize,
    /// Boosting parameters used.
    pub params: GbtValidParams,
    /// Trees kept, per output.
    pub trees: Vec<usize>,
    /// Whether early stopping ended boosting, per output.
    pub stopped_early: Vec<bool>,
    /// The `sidelight-explain` version that trained it.
    pub trained_by: String,
}

/// Which share of rows to hold out for measuring fidelity, and the seed of the split.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Holdout {
    /// Share of rows held out, in `[0, 1)`.
    pub fraction: f64,
    /// Seed of the split.
    pub seed: u64,
}

impl Default for Holdout {
    fn default() -> Self {
        Self {
            fraction: 0.2,
            seed: 0,
        }
    }
}

/// Progress of a surrogate fit, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FitProgress {
    /// The output (class) being fitted.
    pub output: usize,
    /// Outputs in all.
    pub n_outputs: usize,
    /// Trees done for this output.
    pub trees_done: usize,
    /// Most trees this output can get.
    pub n_trees: usize,
}

/// A surrogate could not be trained, used or loaded.
#[derive(Debug, thiserror::Error)]
pub enum SurrogateError {
    /// A row could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// Boosting failed.
    #[error(transparent)]
    Gbt(#[from] GbtError),
    /// The linear baseline failed.
    #[error(transparent)]
    Linear(#[from] LinearError),
    /// Fidelity could not be measured.
    #[error(transparent)]
    Fidelity(#[from] FidelityError),
    /// A model output is unusable.
    #[error("model output of row {row}: {message}")]
    Output {
        /// Index of the row.
        row: usize,
        /// What is wrong.
        message: String,
    },
    /// Rows and outputs do not line up.
    #[error("{rows} rows but {outputs} model outputs ({width} per row expected)")]
    Length {
        /// Number of rows.
        rows: usize,
        /// Number of output values.
        outputs: usize,
        /// Outputs per row.
        width: usize,
    },
    /// The parts do not fit together (a loaded file, or hand-built parts).
    #[error("inconsistent surrogate: {0}")]
    Inconsistent(String),
    /// An ensemble's trees are malformed.
    #[error("ensemble {output}: {source}")]
    Tree {
        /// The output the ensemble belongs to.
        output: usize,
        /// What is wrong.
        #[source]
        source: TreeError,
    },
}

/// A trained surrogate of a black-box model.
#[derive(Debug, Clone, PartialEq)]
pub struct Surrogate {
    encoder: Encoder,
    output: OutputKind,
    ensembles: Vec<Ensemble>,
    metadata: SurrogateMetadata,
}

impl Surrogate {
    /// Trains on rows of values and the model's outputs for them: `outputs` is flat,
    /// `kind.n_outputs()` values per row (the score; the positive-class probability; or
    /// one probability per class).
    pub fn fit<R: AsRef<[Value]>>(
        schema: Schema,
        rows: &[R],
        outputs: &[f64],
        kind: OutputKind,
        params: &GbtValidParams,
    ) -> Result<Self, SurrogateError> {
        Self::fit_with_progress(schema, rows, outputs, kind, params, &mut |_| {})
    }

    /// As [`fit`](Self::fit), reporting progress after every tree.
    pub fn fit_with_progress<R: AsRef<[Value]>>(
        schema: Schema,
        rows: &[R],
        outputs: &[f64],
        kind: OutputKind,
        params: &GbtValidParams,
        progress: &mut dyn FnMut(FitProgress),
    ) -> Result<Self, SurrogateError> {
        let width = kind.n_outputs();
        let targets = raw_targets(&kind, rows.len(), outputs)?;
        // One encoding serves every ensemble; with several classes, levels are ordered by
        // the class whose logit varies most, the one a threshold split helps most.
        let order_by = (0..width)
            .max_by(|&a, &b| variance(&targets[a]).total_cmp(&variance(&targets[b])))
            .unwrap_or(0);
        let order_target = targets.get(order_by).map_or(&[][..], Vec::as_slice);
        let encoder = Encoder::fit(schema, rows, order_target)?;
        let x = encoder.encode_rows(rows)?;
        let nf = encoder.n_features();
        let mut ensembles = Vec::with_capacity(width);
        let mut trees = Vec::with_capacity(width);
        let mut stopped_early = Vec::with_capacity(width);
        let mut n_validation = 0;
        for (k, y) in targets.iter().enumerate() {
            let model = params.fit_dense_with_progress(&x, nf, y, &mut |done, total| {
                progress(FitProgress {
                    output: k,
                    n_outputs: width,
                    trees_done: done,
                    n_trees: total,
                });
            })?;
            trees.push(model.report().trees);
            stopped_early.push(model.report().stopped_early);
            n_validation = model.report().n_validation;
            ensembles.push(model.into_ensemble());
        }
        let metadata = SurrogateMetadata {
            n_train: rows.len(),
            n_validation,
            params: params.clone(),
            trees,
            stopped_early,
            trained_by: format!("sidelight-explain {}", env!("CARGO_PKG_VERSION")),
        };
        Self::from_parts(encoder, kind, ensembles, metadata)
    }

    /// Splits rows deterministically for `holdout.seed`, trains on the larger share and
    /// measures fidelity on the `holdout.fraction` it did not see.
    pub fn fit_and_evaluate<R: AsRef<[Value]>>(
        schema: Schema,
        rows: &[R],
        outputs: &[f64],
        kind: OutputKind,
        params: &GbtValidParams,
        holdout: Holdout,
        progress: &mut dyn FnMut(FitProgress),
    ) -> Result<(Self, Fidelity), SurrogateError> {
        let width = kind.n_outputs();
        check_length(rows.len(), outputs.len(), width)?;
        let split = split_holdout(rows.len(), holdout.fraction, holdout.seed)?;
        let pick = |idx: &[usize]| -> (Vec<&[Value]>, Vec<f64>) {
            let r = idx.iter().map(|&i| rows[i].as_ref()).collect();
            let o = idx
                .iter()
                .flat_map(|&i| outputs[i * width..(i + 1) * width].iter().copied())
                .collect();
            (r, o)
        };
        let (train_rows, train_out) = pick(&split.train);
        let (test_rows, test_out) = pick(&split.holdout);
        let surrogate =
            Self::fit_with_progress(schema, &train_rows, &train_out, kind, params, progress)?;
        let fid = surrogate.fidelity(&test_rows, &test_out)?;
        Ok((surrogate, fid))
    }

    /// Assembles a surrogate from parts, checking that they fit together.
    pub fn from_parts(
        encoder: Encoder,
        output: OutputKind,
        ensembles: Vec<Ensemble>,
        metadata: SurrogateMetadata,
    ) -> Result<Self, SurrogateError> {
        let width = output.n_outputs();
        if width == 0 {
            return Err(SurrogateError::Inconsistent(
                "multi-class output with no classes".into(),
            ));
        }
        if let OutputKind::MultiClass { classes } = &output {
            let mut seen = std::collections::HashSet::new();
            if let Some(dup) = classes.iter().find(|c| !seen.insert(c.as_str())) {
                return Err(SurrogateError::Inconsistent(format!(
                    "class `{dup}` appears twice"
                )));
            }
        }
        if ensembles.len() != width {
            return Err(SurrogateError::Inconsistent(format!(
                "{} ensembles for {width} outputs",
                ensembles.len()
            )));
        }
        let nf = encoder.n_features();
        for (k, e) in ensembles.iter().enumerate() {
            if e.n_features != nf {
                return Err(SurrogateError::Inconsistent(format!(
                    "ensemble {k} reads {} features but the schema has {nf}",
                    e.n_features
                )));
            }
            if !e.base_offset.is_finite() {
                return Err(SurrogateError::Inconsistent(format!(
                    "ensemble {k}: base_offset is not finite"
                )));
            }
            e.validate()
                .map_err(|source| SurrogateError::Tree { output: k, source })?;
            for (t, tree) in e.trees.iter().enumerate() {
                if let Some(node) = tree.value.iter().position(|v| !v.is_finite()) {
                    return Err(SurrogateError::Inconsistent(format!(
                        "ensemble {k}, tree {t}, node {node}: value is not finite"
                    )));
                }
                if let Some(node) = tree
                    .cover
                    .iter()
                    .position(|c| !(c.is_finite() && *c >= 0.0))
                {
                    return Err(SurrogateError::Inconsistent(format!(
                        "ensemble {k}, tree {t}, node {node}: cover is not a finite number >= 0"
                    )));
                }
            }
        }
        Ok(Self {
            encoder,
            output,
            ensembles,
            metadata,
        })
    }

    /// The same surrogate with the categorical levels renamed (see
    /// [`Encoder::rename_levels`]): it predicts and explains alike for rows whose values
    /// are renamed alike.
    pub fn rename_levels(
        &self,
        rename: impl FnMut(usize, &str) -> String,
    ) -> Result<Self, SurrogateError> {
        Ok(Self {
            encoder: self.encoder.rename_levels(rename)?,
            output: self.output.clone(),
            ensembles: self.ensembles.clone(),
            metadata: self.metadata.clone(),
        })
    }

    /// The feature schema.
    pub fn schema(&self) -> &Schema {
        self.encoder.schema()
    }

    /// The encoder (schema and categorical codes).
    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    /// What the model outputs.
    pub fn output(&self) -> &OutputKind {
        &self.output
    }

    /// One ensemble per output, in raw (logit for probabilities) space.
    pub fn ensembles(&self) -> &[Ensemble] {
        &self.ensembles
    }

    /// Where the surrogate came from.
    pub fn metadata(&self) -> &SurrogateMetadata {
        &self.metadata
    }

    /// Encodes a row of values for the ensembles.
    pub fn encode(&self, row: &[Value]) -> Result<Vec<f64>, EncodeError> {
        self.encoder.encode(row)
    }

    /// Raw-space predictions (one per output) for an encoded row.
    pub fn predict_raw_encoded(&self, x: &[f64]) -> Vec<f64> {
        self.ensembles.iter().map(|e| e.predict(x)).collect()
    }

    /// Raw-space predictions (the values the trees and SHAP add up to), one per output.
    pub fn predict_raw(&self, row: &[Value]) -> Result<Vec<f64>, EncodeError> {
        Ok(self.predict_raw_encoded(&self.encode(row)?))
    }

    /// Predictions in the model's output space (score, or probability per output).
    pub fn predict(&self, row: &[Value]) -> Result<Vec<f64>, EncodeError> {
        Ok(self
            .predict_raw(row)?
            .into_iter()
            .map(|r| self.output.to_output(r))
            .collect())
    }

    /// Counts the trees' covers again over `rows` (see [`Tree::recover`](crate::Tree)):
    /// after training on real and synthetic rows, attributions and the base value should
    /// take their expectations over the real rows, as the model's own path-dependent
    /// TreeSHAP does over its training data, not over rows made to break correlations.
    /// Predictions do not change.
    pub fn recover<R: AsRef<[Value]>>(&mut self, rows: &[R]) -> Result<(), SurrogateError> {
        if rows.is_empty() {
            return Ok(());
        }
        let x = self.encoder.encode_rows(rows)?;
        let nf = self.encoder.n_features();
        // A trace of the old covers keeps every node the trees were grown on reachable.
        let keep = 1e-6;
        for ensemble in &mut self.ensembles {
            for tree in &mut ensemble.trees {
                tree.recover(x.chunks_exact(nf.max(1)), keep);
            }
        }
        Ok(())
    }

    /// Fidelity against the model's outputs for rows the surrogate did not train on
    /// (`model_outputs` flat, one value per output per row).
    pub fn fidelity<R: AsRef<[Value]>>(
        &self,
        rows: &[R],
        model_outputs: &[f64],
    ) -> Result<Fidelity, SurrogateError> {
        let width = self.output.n_outputs();
        check_length(rows.len(), model_outputs.len(), width)?;
        let mut pred = Vec::with_capacity(model_outputs.len());
        for (i, row) in rows.iter().enumerate() {
            let p = self.predict(row.as_ref()).map_err(|e| EncodeError::Row {
                row: i,
                source: Box::new(e),
            })?;
            pred.extend(p);
        }
        Ok(fidelity(&self.output, &pred, model_outputs)?)
    }

    /// The linear baseline on the same encoding and raw-space targets: one linear model
    /// per output, to compare with the trees or to explain with linear SHAP.
    pub fn fit_linear_baseline<R: AsRef<[Value]>>(
        &self,
        rows: &[R],
        outputs: &[f64],
    ) -> Result<Vec<LinearSurrogate>, SurrogateError> {
        let targets = raw_targets(&self.output, rows.len(), outputs)?;
        let x = self.encoder.encode_rows(rows)?;
        let nf = self.encoder.n_features();
        targets
            .iter()
            .map(|y| LinearSurrogate::fit(&x, nf, y).map_err(SurrogateError::from))
            .collect()
    }
}

pub(crate) fn check_length(
    rows: usize,
    outputs: usize,
    width: usize,
) -> Result<(), SurrogateError> {
    if rows.checked_mul(width) != Some(outputs) {
        return Err(SurrogateError::Length {
            rows,
            outputs,
            width,
        });
    }
    Ok(())
}

/// Per output, the raw-space target of every row.
fn raw_targets(
    kind: &OutputKind,
    rows: usize,
    outputs: &[f64],
) -> Result<Vec<Vec<f64>>, SurrogateError> {
    let width = kind.n_outputs();
    if width == 0 {
        return Err(SurrogateError::Inconsistent(
            "multi-class output with no classes".into(),
        ));
    }
    check_length(rows, outputs.len(), width)?;
    let mut targets = vec![Vec::with_capacity(rows); width];
    for (row, values) in outputs.chunks_exact(width).enumerate() {
        for (k, &v) in values.iter().enumerate() {
            if !v.is_finite() {
                return Err(SurrogateError::Output {
                    row,
                    message: format!("output {k} is not a finite number"),
                });
            }
            // A hair of slack for probabilities that rounding pushed past 0 or 1.
            if kind.is_probability() && !(-1e-9..=1.0 + 1e-9).contains(&v) {
                return Err(SurrogateError::Output {
                    row,
                    message: format!("output {k} is not a probability in [0, 1]"),
                });
            }
            targets[k].push(kind.to_raw(v));
        }
    }
    Ok(targets)
}

fn variance(v: &[f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let m = v.iter().sum::<f64>() / v.len() as f64;
    v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64
}

#[cfg(test)]
mod tests;
