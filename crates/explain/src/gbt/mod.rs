//! Gradient-boosted regression trees, written here because the surrogate's trees must
//! carry what TreeSHAP reads: per node the feature, threshold, both children, the default
//! child for missing values, the value, and the cover (training rows reaching the node).
//!
//! Neither ready-made Rust learner gives that (checked against their sources):
//! `linfa-trees` 0.8 builds single CART *classifiers*; its `TreeNode` shows a node's
//! split (feature, value, impurity decrease), children and leaf label, but no count of
//! the rows that reached it and no branch for missing values. `smartcore` 0.7's
//! `DecisionTreeRegressor` keeps its tree in a private field whose nodes hold a split
//! and an output but no sample count either. Neither boosts with a learned default
//! child, and without covers TreeSHAP cannot weight the paths.
//!
//! The learner: squared-error boosting from the mean; per tree, rows are (optionally)
//! subsampled, features are pre-binned once into at most 255 quantile bins held as `u8`
//! in row-major order, and the tree grows best-leaf-first (as LightGBM does) bounded by
//! `max_depth` and `max_leaves`. Each split's histogram is built for the smaller child
//! only; the larger child's is the parent's minus it. Missing values get their own bin
//! and each split tries sending them left and right, keeping the better as the default
//! child. Early stopping watches the squared error on a held-out validation share.
//!
//! It composes with linfa: [`GbtParams`] is a [`ParamGuard`] whose checked form
//! implements [`Fit`] over `Dataset<f64, f64>`, and [`GbtRegressor`] implements
//! [`PredictInplace`], so `params.fit(&dataset)?.predict(&records)` works.
//!
//! ```
//! use linfa::prelude::*;
//! use ndarray::{Array1, Array2};
//! use sidelight_explain::gbt::{GbtError, GbtParams, GbtRegressor};
//!
//! let x = Array2::from_shape_fn((400, 2), |(i, j)| ((i * (j + 3)) % 17) as f64);
//! let y: Array1<f64> = x.rows().into_iter().map(|r| r[0] * 2.0 - r[1]).collect();
//! let data = Dataset::new(x.clone(), y.clone());
//! let model: GbtRegressor = GbtParams::new()
//!     .n_trees(50)
//!     .min_samples_leaf(5)
//!     .validation_fraction(0.0)
//!     .fit(&data)?;
//! let pred: Array1<f64> = model.predict(&x);
//! assert!(pred.r2(&y)? > 0.95);
//! # Ok::<(), GbtError>(())
//! ```
//!
//! [`ParamGuard`]: linfa::ParamGuard
//! [`Fit`]: linfa::traits::Fit
//! [`PredictInplace`]: linfa::traits::PredictInplace

mod bins;
mod grow;

use linfa::ParamGuard;
use linfa::dataset::{AsSingleTargets, DatasetBase};
use linfa::traits::{Fit, PredictInplace};
use ndarray::{Array1, ArrayBase, Data, Ix2};
use serde::{Deserialize, Serialize};

use crate::rng::SplitMix64;
use crate::tree::{Ensemble, Tree};
use bins::{BinnedData, MAX_VALUE_BINS};
use grow::{GrowLimits, Grower, fill_internal_values, leaf_of_binned};

/// Fitting could not proceed: what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum GbtError {
    /// A parameter is out of range.
    #[error("invalid parameter `{name}`: {message}")]
    Param {
        /// The parameter's name.
        name: &'static str,
        /// The allowed range.
        message: String,
    },
    /// No rows to train on.
    #[error("no training rows")]
    NoRows,
    /// The feature matrix is not `n_rows × n_features`, or targets do not match it.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A target is `NaN` or infinite.
    #[error("target of row {row} is not a finite number")]
    Target {
        /// Index of the row.
        row: usize,
    },
    /// More rows or features than the trees can index.
    #[error("too large: {0}")]
    TooLarge(String),
    /// An error from linfa.
    #[error(transparent)]
    Linfa(#[from] linfa::Error),
}

/// Checked boosting parameters; get them from [`GbtParams::check`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GbtValidParams {
    n_trees: usize,
    max_depth: usize,
    max_leaves: usize,
    learning_rate: f64,
    subsample: f64,
    min_samples_leaf: usize,
    lambda: f64,
    max_bins: usize,
    validation_fraction: f64,
    patience: usize,
    seed: u64,
}

/// Boosting parameters, checked once by [`ParamGuard::check`] (linfa's pattern).
///
/// Defaults: 100 trees of depth ≤ 6 and ≤ 63 leaves, learning rate 0.1, no row
/// subsampling, ≥ 20 rows per leaf, λ = 1, 255 bins, 10 % of rows held out for early
/// stopping with a patience of 10 trees, seed 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GbtParams(GbtValidParams);

impl Default for GbtParams {
    fn default() -> Self {
        Self(GbtValidParams {
            n_trees: 100,
            max_depth: 6,
            max_leaves: 63,
            learning_rate: 0.1,
            subsample: 1.0,
            min_samples_leaf: 20,
            lambda: 1.0,
            max_bins: MAX_VALUE_BINS,
            validation_fraction: 0.1,
            patience: 10,
            seed: 0,
        })
    }
}

impl GbtParams {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Maximum number of trees (fewer when early stopping ends sooner). At least 1.
    pub fn n_trees(mut self, n: usize) -> Self {
        self.0.n_trees = n;
        self
    }

    /// Maximum depth of a tree (root at depth 0). 1 to 30.
    pub fn max_depth(mut self, d: usize) -> Self {
        self.0.max_depth = d;
        self
    }

    /// Maximum leaves of a tree. At least 2.
    pub fn max_leaves(mut self, n: usize) -> Self {
        self.0.max_leaves = n;
        self
    }

    /// Shrinkage applied to every leaf, in `(0, 1]`.
    pub fn learning_rate(mut self, r: f64) -> Self {
        self.0.learning_rate = r;
        self
    }

    /// Share of training rows each tree sees, in `(0, 1]`.
    pub fn subsample(mut self, s: f64) -> Self {
        self.0.subsample = s;
        self
    }

    /// Minimum rows in a leaf. At least 1.
    pub fn min_samples_leaf(mut self, n: usize) -> Self {
        self.0.min_samples_leaf = n;
        self
    }

    /// L2 regularisation of leaf values, `≥ 0`.
    pub fn lambda(mut self, l: f64) -> Self {
        self.0.lambda = l;
        self
    }

    /// Quantile bins per feature, 2 to 255.
    pub fn max_bins(mut self, n: usize) -> Self {
        self.0.max_bins = n;
        self
    }

    /// Share of rows held out to decide early stopping, in `[0, 0.5]`; 0 turns early
    /// stopping off.
    pub fn validation_fraction(mut self, f: f64) -> Self {
        self.0.validation_fraction = f;
        self
    }

    /// Trees without a better validation error before boosting stops. At least 1.
    pub fn patience(mut self, n: usize) -> Self {
        self.0.patience = n;
        self
    }

    /// Seed of the row subsampling and validation split.
    pub fn seed(mut self, s: u64) -> Self {
        self.0.seed = s;
        self
    }
}

impl From<GbtValidParams> for GbtParams {
    /// Back to the unchecked builder, e.g. to adjust recorded parameters and re-check.
    fn from(p: GbtValidParams) -> Self {
        Self(p)
    }
}

impl ParamGuard for GbtParams {
    type Checked = GbtValidParams;
    type Error = GbtError;

    fn check_ref(&self) -> Result<&GbtValidParams, GbtError> {
        let p = &self.0;
        let bad = |name, message: &str| {
            Err(GbtError::Param {
                name,
                message: message.to_owned(),
            })
        };
        if p.n_trees == 0 {
            return bad("n_trees", "must be at least 1");
        }
        if !(1..=30).contains(&p.max_depth) {
            return bad("max_depth", "must be 1 to 30");
        }
        if p.max_leaves < 2 {
            return bad("max_leaves", "must be at least 2");
        }
        if !(p.learning_rate > 0.0 && p.learning_rate <= 1.0) {
            return bad("learning_rate", "must be in (0, 1]");
        }
        if !(p.subsample > 0.0 && p.subsample <= 1.0) {
            return bad("subsample", "must be in (0, 1]");
        }
        if p.min_samples_leaf == 0 {
            return bad("min_samples_leaf", "must be at least 1");
        }
        if !(p.lambda >= 0.0 && p.lambda.is_finite()) {
            return bad("lambda", "must be a finite number >= 0");
        }
        if !(2..=MAX_VALUE_BINS).contains(&p.max_bins) {
            return bad("max_bins", "must be 2 to 255");
        }
        if !(0.0..=0.5).contains(&p.validation_fraction) {
            return bad("validation_fraction", "must be in [0, 0.5]");
        }
        if p.patience == 0 {
            return bad("patience", "must be at least 1");
        }
        Ok(p)
    }

    fn check(self) -> Result<GbtValidParams, GbtError> {
        self.check_ref()?;
        Ok(self.0)
    }
}

impl GbtValidParams {
    /// Maximum number of trees.
    pub fn n_trees(&self) -> usize {
        self.n_trees
    }
    /// Maximum depth.
    pub fn max_depth(&self) -> usize {
        self.max_depth
    }
    /// Maximum leaves per tree.
    pub fn max_leaves(&self) -> usize {
        self.max_leaves
    }
    /// Learning rate.
    pub fn learning_rate(&self) -> f64 {
        self.learning_rate
    }
    /// Row subsampling share.
    pub fn subsample(&self) -> f64 {
        self.subsample
    }
    /// Minimum rows per leaf.
    pub fn min_samples_leaf(&self) -> usize {
        self.min_samples_leaf
    }
    /// L2 regularisation.
    pub fn lambda(&self) -> f64 {
        self.lambda
    }
    /// Bins per feature.
    pub fn max_bins(&self) -> usize {
        self.max_bins
    }
    /// Validation share for early stopping.
    pub fn validation_fraction(&self) -> f64 {
        self.validation_fraction
    }
    /// Early-stopping patience.
    pub fn patience(&self) -> usize {
        self.patience
    }
    /// Seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Fits on a row-major matrix `x` (`y.len()` rows × `n_features`; `NaN` = missing).
    pub fn fit_dense(
        &self,
        x: &[f64],
        n_features: usize,
        y: &[f64],
    ) -> Result<GbtRegressor, GbtError> {
        self.fit_dense_with_progress(x, n_features, y, &mut |_, _| {})
    }

    /// As [`fit_dense`](Self::fit_dense), calling `progress(trees_done, n_trees)` after
    /// every tree (for a progress bar).
    pub fn fit_dense_with_progress(
        &self,
        x: &[f64],
        n_features: usize,
        y: &[f64],
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<GbtRegressor, GbtError> {
        let n = y.len();
        if n == 0 {
            return Err(GbtError::NoRows);
        }
        if n_features == 0 || x.len() != n * n_features {
            return Err(GbtError::Shape(format!(
                "{} values for {n} rows of {n_features} features",
                x.len()
            )));
        }
        if n > u32::MAX as usize || n_features > i32::MAX as usize {
            return Err(GbtError::TooLarge(format!(
                "{n} rows × {n_features} features"
            )));
        }
        if let Some(row) = y.iter().position(|v| !v.is_finite()) {
            return Err(GbtError::Target { row });
        }
        let mut rng = SplitMix64::new(self.seed);

        // Validation rows: a seeded shuffle, so the split does not depend on row order
        // patterns such as time.
        let n_valid = if self.validation_fraction > 0.0 && n >= 10 {
            ((n as f64 * self.validation_fraction).round() as usize).clamp(1, n / 2)
        } else {
            0
        };
        let mut order: Vec<u32> = (0..n as u32).collect();
        let (mut train, mut valid) = if n_valid > 0 {
            rng.shuffle(&mut order);
            let (v, t) = order.split_at(n_valid);
            (t.to_vec(), v.to_vec())
        } else {
            (order, Vec::new())
        };
        train.sort_unstable();
        valid.sort_unstable();

        let data = BinnedData::new(x, n_features, &train, self.max_bins);
        let n_train = train.len();
        let targets: Vec<f64> = train.iter().map(|&r| y[r as usize]).collect();
        let base = targets.iter().sum::<f64>() / n_train as f64;
        let mut pred = vec![base; n_train];
        let mut residual = vec![0.0; n_train];
        let mut valid_pred = vec![base; valid.len()];

        let limits = GrowLimits {
            max_depth: self.max_depth,
            max_leaves: self.max_leaves,
            min_samples_leaf: self.min_samples_leaf,
            lambda: self.lambda,
            learning_rate: self.learning_rate,
        };
        let mut grower = Grower::default();
        let mut trees: Vec<Tree> = Vec::with_capacity(self.n_trees);
        let mut validation_loss = Vec::new();
        let mut best = (f64::INFINITY, 0usize);
        let mut stopped_early = false;
        let mut rows: Vec<u32> = Vec::with_capacity(n_train);
        let mut in_sample = vec![true; n_train];

        for t in 0..self.n_trees {
            for ((r, p), y) in residual.iter_mut().zip(&pred).zip(&targets) {
                *r = y - p;
            }
            rows.clear();
            if self.subsample < 1.0 {
                for (i, s) in in_sample.iter_mut().enumerate() {
                    *s = rng.next_f64() < self.subsample;
                    if *s {
                        rows.push(i as u32);
                    }
                }
            } else {
                rows.extend(0..n_train as u32);
            }
            let (mut tree, rule, leaves) = grower.grow(&data, &residual, &mut rows, &limits);
            if tree.len() == 1 {
                if self.subsample < 1.0 {
                    // An unlucky sample; the next one may still find a split.
                    progress(t + 1, self.n_trees);
                    continue;
                }
                // Nothing left to learn: further trees would be single leaves too.
                progress(self.n_trees, self.n_trees);
                break;
            }
            for &(node, start, end) in &leaves {
                let v = tree.value[node];
                for &r in &rows[start..end] {
                    pred[r as usize] += v;
                }
            }
            if self.subsample < 1.0 {
                // Rows outside the sample still get the tree's output, and count in the
                // covers: a cover is the training rows that reach a node.
                for (i, _) in in_sample.iter().enumerate().filter(|(_, s)| !**s) {
                    let leaf = leaf_of_binned(&tree, &rule, &data, data.row(i));
                    pred[i] += tree.value[leaf];
                    tree.cover[leaf] += 1.0;
                }
            }
            fill_internal_values(&mut tree);
            trees.push(tree);
            progress(t + 1, self.n_trees);

            if !valid.is_empty() {
                let tree = &trees[trees.len() - 1];
                let mut sse = 0.0;
                for (p, &r) in valid_pred.iter_mut().zip(&valid) {
                    let r = r as usize;
                    *p += tree.predict(&x[r * n_features..(r + 1) * n_features]);
                    sse += (y[r] - *p).powi(2);
                }
                let loss = sse / valid.len() as f64;
                validation_loss.push(loss);
                if loss < best.0 {
                    best = (loss, trees.len());
                } else if trees.len() - best.1 >= self.patience {
                    stopped_early = true;
                    trees.truncate(best.1);
                    progress(self.n_trees, self.n_trees);
                    break;
                }
            }
        }
        let report = FitReport {
            n_train,
            n_validation: valid.len(),
            trees: trees.len(),
            stopped_early,
            validation_loss,
        };
        Ok(GbtRegressor {
            ensemble: Ensemble {
                base_offset: base,
                trees,
                n_features,
            },
            report,
        })
    }
}

/// How a fit went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitReport {
    /// Rows the trees were fitted on.
    pub n_train: usize,
    /// Rows held out for early stopping.
    pub n_validation: usize,
    /// Trees kept.
    pub trees: usize,
    /// Whether early stopping ended boosting before `n_trees`.
    pub stopped_early: bool,
    /// Mean squared error on the validation rows after each tree (empty without them).
    pub validation_loss: Vec<f64>,
}

/// A fitted boosted-tree regressor.
#[derive(Debug, Clone, PartialEq)]
pub struct GbtRegressor {
    ensemble: Ensemble,
    report: FitReport,
}

impl GbtRegressor {
    /// The trees.
    pub fn ensemble(&self) -> &Ensemble {
        &self.ensemble
    }

    /// The trees, taken out.
    pub fn into_ensemble(self) -> Ensemble {
        self.ensemble
    }

    /// How the fit went.
    pub fn report(&self) -> &FitReport {
        &self.report
    }

    /// Prediction for one encoded row.
    pub fn predict_row(&self, x: &[f64]) -> f64 {
        self.ensemble.predict(x)
    }
}

impl<D, T> Fit<ArrayBase<D, Ix2>, T, GbtError> for GbtValidParams
where
    D: Data<Elem = f64>,
    T: AsSingleTargets<Elem = f64>,
{
    type Object = GbtRegressor;

    fn fit(&self, dataset: &DatasetBase<ArrayBase<D, Ix2>, T>) -> Result<GbtRegressor, GbtError> {
        let records = dataset.records();
        let targets = dataset.as_single_targets();
        if records.nrows() != targets.len() {
            return Err(linfa::Error::MismatchedShapes(records.nrows(), targets.len()).into());
        }
        let x: Vec<f64> = records.iter().copied().collect();
        let y: Vec<f64> = targets.iter().copied().collect();
        self.fit_dense(&x, records.ncols(), &y)
    }
}

impl<D: Data<Elem = f64>> PredictInplace<ArrayBase<D, Ix2>, Array1<f64>> for GbtRegressor {
    /// Rows of the wrong width are an error of the caller; they predict `NaN` rather
    /// than panic.
    fn predict_inplace(&self, x: &ArrayBase<D, Ix2>, y: &mut Array1<f64>) {
        let width_ok = x.ncols() == self.ensemble.n_features;
        let mut row = vec![0.0; x.ncols()];
        for (r, out) in x.rows().into_iter().zip(y.iter_mut()) {
            *out = if width_ok {
                row.iter_mut().zip(r.iter()).for_each(|(a, b)| *a = *b);
                self.ensemble.predict(&row)
            } else {
                f64::NAN
            };
        }
    }

    fn default_target(&self, x: &ArrayBase<D, Ix2>) -> Array1<f64> {
        Array1::zeros(x.nrows())
    }
}

#[cfg(test)]
mod tests;
