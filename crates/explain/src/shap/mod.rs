//! SHAP attributions: exact tree explainers, linear SHAP and model-agnostic KernelSHAP.
//!
//! Every explainer returns an [`Attribution`](crate::tree::Attribution): a base value φ₀, one value φᵢ per encoded
//! feature, and the explained model's prediction, with `φ₀ + Σφᵢ == prediction`. What
//! differs between them is the *game* whose Shapley values they compute, that is, what
//! "the model's output when only the features in S are known" means.
//!
//! # Definitions
//!
//! Write `M` for the number of features, `x` for the explained row and, for a set of
//! features `S`, `v(S)` for the value of the game. The Shapley value of feature `i` is
//!
//! ```text
//! φᵢ = Σ_{S ⊆ F∖{i}}  |S|! (M − |S| − 1)! / M!  · (v(S ∪ {i}) − v(S)),   φ₀ = v(∅)
//! ```
//!
//! and efficiency (`φ₀ + Σφᵢ = v(F)`) holds by construction.
//!
//! * **Path-dependent (conditional on the tree's own training data)** —
//!   [`TreeExplainer`] and [`tree_shap_reference`]. For one tree, `v(S) = E[f | x_S]` is
//!   defined recursively from the root: at a split on a feature in `S` follow `x` (a
//!   missing `x` follows the node's default child); at a split on a feature outside `S`
//!   take the average of both children weighted by their share of the node's cover,
//!   `cover(child) / cover(node)`; at a leaf return its value. For an ensemble the game is
//!   `base_offset` plus the sum over trees, so φ is the sum of per-tree φ and
//!   `φ₀ = base_offset + Σ_trees v_tree(∅)`, the cover-weighted mean of the leaves. The
//!   stored values of internal nodes are never read: the base value is recomputed from
//!   the leaves and covers, so efficiency holds even when a caller's internal values are
//!   stale. `prediction` is [`Ensemble::predict`].
//! * **Interventional** — [`InterventionalExplainer`]. For each background row `z`,
//!   `v_z(S) = f(x_S, z_{F∖S})`: the model evaluated on a hybrid row taking `x` on `S` and
//!   `z` elsewhere. The attribution is the average over the background of the Shapley
//!   values of `v_z` (equal, by linearity, to the Shapley values of the averaged game),
//!   and `φ₀` is the mean of `f(z)`. This is the "independent" TreeSHAP of the `shap`
//!   package.
//! * **Linear** — [`LinearExplainer`]: for `f(x) = b + Σ wᵢ xᵢ` with feature means `μ`,
//!   the interventional game against the mean has the closed form
//!   `φᵢ = wᵢ (xᵢ − μᵢ)`, `φ₀ = b + Σ wᵢ μᵢ`.
//! * **KernelSHAP** — [`kernel_shap`]: the interventional game of any black-box
//!   [`BatchModel`] against a background set, estimated by weighted least squares with
//!   the Shapley kernel; exact when every coalition is enumerated.
//!
//! # Covers and missing values
//!
//! Covers must be finite and non-negative, and every internal node must have a positive
//! cover (a split is only ever made on data). A leaf or subtree with zero cover is allowed:
//! it weighs nothing when its feature is unknown. Covers need not add up exactly
//! (`cover(parent) = cover(left) + cover(right)`); each edge simply carries the ratio
//! `cover(child) / cover(parent)`. A missing value (`NaN`) in `x` always follows the
//! node's `children_default`, in every explainer and in the brute-force references.
//!
//! # Limits
//!
//! Trees deeper than [`MAX_DEPTH`] are refused ([`ShapError::TooDeep`]): the path
//! algorithms recurse once per level and need `O(depth²)` scratch.

mod common;
pub mod contrast;
pub mod fast;
pub mod interventional;
pub mod kernel;
pub mod linear;
pub mod path;
pub mod synth;

#[cfg(test)]
pub(crate) mod brute;
#[cfg(test)]
mod tests;

pub use contrast::{Contrast, ContrastError, contrast};
pub use fast::{FastOptions, Scratch, TreeExplainer};
pub use interventional::InterventionalExplainer;
pub use kernel::{BatchModel, Batched, KernelExplainer, KernelOptions, PerRow, kernel_shap};
pub use linear::LinearExplainer;
pub use path::tree_shap_reference;

use crate::tree::{Ensemble, TreeError};

/// The deepest tree the explainers accept (root at depth 0).
pub const MAX_DEPTH: usize = 256;

/// Why an attribution could not be computed. Never a panic: every input from outside is
/// checked and refused with one of these.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ShapError {
    /// The ensemble's structure is not valid.
    #[error(transparent)]
    Tree(#[from] TreeError),
    /// A cover is negative or not finite, or an internal node has no cover.
    #[error("tree {tree}, node {node}: cover {cover} is not usable (finite, >= 0, > 0 at splits)")]
    BadCover {
        /// Index of the tree.
        tree: usize,
        /// Index of the node.
        node: usize,
        /// The offending cover.
        cover: f64,
    },
    /// A tree is deeper than [`MAX_DEPTH`].
    #[error("tree {tree} is deeper than {max} levels")]
    TooDeep {
        /// Index of the tree.
        tree: usize,
        /// The limit.
        max: usize,
    },
    /// The row's width is not the model's.
    #[error("row has {got} values, the model reads {expected}")]
    RowLength {
        /// Width the model reads.
        expected: usize,
        /// Width of the row given.
        got: usize,
    },
    /// The background set has no rows.
    #[error("the background set is empty")]
    EmptyBackground,
    /// A background row's width is not the model's.
    #[error("background row {row} has {got} values, the model reads {expected}")]
    BackgroundRow {
        /// Index of the background row.
        row: usize,
        /// Width the model reads.
        expected: usize,
        /// Width of the row given.
        got: usize,
    },
    /// The parts of a linear model do not have matching lengths.
    #[error("linear model: {coefficients} coefficients but {means} feature means")]
    LinearShape {
        /// Number of coefficients.
        coefficients: usize,
        /// Number of means.
        means: usize,
    },
    /// KernelSHAP: the sampled coalitions do not determine the attributions.
    #[error("KernelSHAP: the weighted least-squares system is singular; raise the budget")]
    Singular,
    /// KernelSHAP: the options cannot work (zero budget or batch size).
    #[error("KernelSHAP: {0}")]
    Options(&'static str),
}

/// Checks the row width against the ensemble's.
pub(crate) fn check_row(expected: usize, x: &[f64]) -> Result<(), ShapError> {
    if x.len() == expected {
        Ok(())
    } else {
        Err(ShapError::RowLength {
            expected,
            got: x.len(),
        })
    }
}

/// Checks everything the tree explainers rely on: structure, covers and depth.
pub(crate) fn check_ensemble(ensemble: &Ensemble) -> Result<(), ShapError> {
    ensemble.validate()?;
    for (t, tree) in ensemble.trees.iter().enumerate() {
        for node in 0..tree.len() {
            let cover = tree.cover[node];
            let usable = cover.is_finite() && cover >= 0.0 && (tree.is_leaf(node) || cover > 0.0);
            if !usable {
                return Err(ShapError::BadCover {
                    tree: t,
                    node,
                    cover,
                });
            }
        }
        if common::depth(tree) > MAX_DEPTH {
            return Err(ShapError::TooDeep {
                tree: t,
                max: MAX_DEPTH,
            });
        }
    }
    Ok(())
}

/// `φ₀` of the path-dependent game: `base_offset` plus each tree's cover-weighted mean
/// of its leaves (see the module docs).
pub fn expected_value(ensemble: &Ensemble) -> Result<f64, ShapError> {
    check_ensemble(ensemble)?;
    Ok(ensemble.base_offset
        + ensemble
            .trees
            .iter()
            .map(common::tree_expected_value)
            .sum::<f64>())
}
