//! The original exact path-dependent TreeSHAP (Lundberg, Erion & Lee 2018, "Consistent
//! individualized feature attribution for tree ensembles", Algorithm 2), kept as the
//! reference that the faster [`TreeExplainer`](super::TreeExplainer) is tested against.
//!
//! # Algorithm
//!
//! The tree is walked once from the root. Along the way the algorithm keeps the *unique
//! path*: for each distinct feature split on between the root and the current node, its
//! "zero fraction" `z` (the product of the cover ratios `cover(child)/cover(parent)` of the
//! edges taken on that feature — the weight of the path when the feature is unknown) and
//! its "one fraction" `o` (1 if `x` follows every one of those edges, else 0 — the weight
//! when it is known), plus a vector of *permutation weights* `w[0..=d]` where `w[k]` is the
//! total weight of the subsets of size `k` of the path's features, each subset `S`
//! contributing `|S|!(d−|S|)!/(d+1)! · Π_{j∈S} o_j · Π_{j∉S} z_j`.
//!
//! * EXTEND adds a feature `(z, o)` to the path and updates the weights in `O(d)`:
//!   every subset either leaves the feature out (times `z`) or takes it in (times `o`),
//!   with the Shapley weights rescaled for the longer path.
//! * UNWIND undoes an EXTEND in `O(d)`. It is used when a feature is split on a second
//!   time on the same path: its previous entry is removed and the feature re-added with
//!   the products of both edges' fractions, so every feature appears once.
//! * At a leaf with value `v`, for each feature `i` on the path, the sum of the weights
//!   after unwinding `i` (UNWOUNDSUM, `O(d)`) is the Shapley-weighted sum over the subsets
//!   of the other features, and `φᵢ += UNWOUNDSUM(i) · (o_i − z_i) · v`.
//!
//! The cost is `O(L · D²)` per tree and row for `L` leaves and depth `D`.
//!
//! Edge cases handled here and not in the paper: a branch whose `z` and `o` are both zero
//! (a branch `x` does not take, with zero cover) contributes nothing to any feature, and
//! is skipped, which keeps UNWIND from ever dividing by a zero fraction; a missing value
//! follows the default child, which is then the "hot" branch.

use super::common::{hot_child, tree_expected_value, zero_fraction};
use super::{ShapError, check_ensemble, check_row};
use crate::tree::{Attribution, Ensemble, Tree};

/// A feature on the unique path, with its fractions and the permutation weight stored at
/// its position.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PathElem {
    pub(crate) feature: usize,
    pub(crate) zero: f64,
    pub(crate) one: f64,
    pub(crate) weight: f64,
}

/// Marks the root's placeholder element, which carries no feature.
const NO_FEATURE: usize = usize::MAX;

/// EXTEND: `path[..len]` is the current path; appends `(zero, one, feature)` at
/// `path[len]` and updates the permutation weights. Returns the new length.
#[inline]
pub(crate) fn extend(
    path: &mut [PathElem],
    len: usize,
    zero: f64,
    one: f64,
    feature: usize,
) -> usize {
    let d = len; // index of the new element, also the new path's number of features
    path[d] = PathElem {
        feature,
        zero,
        one,
        weight: if d == 0 { 1.0 } else { 0.0 },
    };
    let denom = (d + 1) as f64;
    for i in (0..d).rev() {
        path[i + 1].weight += one * path[i].weight * (i + 1) as f64 / denom;
        path[i].weight = zero * path[i].weight * (d - i) as f64 / denom;
    }
    d + 1
}

/// UNWIND: removes the element at `index` from `path[..len]`, restoring the weights as
/// if it had never been added. Returns the new length. The element's `one` and `zero`
/// are never both zero (such branches are pruned before they are extended).
#[inline]
pub(crate) fn unwind(path: &mut [PathElem], len: usize, index: usize) -> usize {
    let d = len - 1;
    let one = path[index].one;
    let zero = path[index].zero;
    let denom = (d + 1) as f64;
    let mut next_one = path[d].weight;
    for i in (0..d).rev() {
        if one != 0.0 {
            let tmp = path[i].weight;
            path[i].weight = next_one * denom / ((i + 1) as f64 * one);
            next_one = tmp - path[i].weight * zero * (d - i) as f64 / denom;
        } else {
            path[i].weight = path[i].weight * denom / (zero * (d - i) as f64);
        }
    }
    for i in index..d {
        path[i].feature = path[i + 1].feature;
        path[i].zero = path[i + 1].zero;
        path[i].one = path[i + 1].one;
    }
    d
}

/// UNWOUNDSUM: the total of the permutation weights of `path[..len]` once the element at
/// `index` is unwound, without modifying the path.
#[inline]
pub(crate) fn unwound_sum(path: &[PathElem], len: usize, index: usize) -> f64 {
    let d = len - 1;
    let one = path[index].one;
    let zero = path[index].zero;
    let denom = (d + 1) as f64;
    let mut next_one = path[d].weight;
    let mut total = 0.0;
    for i in (0..d).rev() {
        if one != 0.0 {
            let tmp = next_one * denom / ((i + 1) as f64 * one);
            total += tmp;
            next_one = path[i].weight - tmp * zero * (d - i) as f64 / denom;
        } else if zero != 0.0 {
            total += path[i].weight * denom / (zero * (d - i) as f64);
        }
    }
    total
}

/// Exact path-dependent TreeSHAP of `ensemble` at `x` by the original algorithm.
/// `O(T · L · D²)` per row; prefer [`TreeExplainer`](super::TreeExplainer), which gives
/// the same values (to rounding) faster.
pub fn tree_shap_reference(ensemble: &Ensemble, x: &[f64]) -> Result<Attribution, ShapError> {
    check_ensemble(ensemble)?;
    check_row(ensemble.n_features, x)?;
    let mut values = vec![0.0; ensemble.n_features];
    let mut base_value = ensemble.base_offset;
    let deepest = ensemble
        .trees
        .iter()
        .map(super::common::depth)
        .max()
        .unwrap_or(0);
    // Each recursion level copies the path (at most depth + 2 elements) past its own.
    let mut buf = vec![PathElem::default(); (deepest + 2) * (deepest + 3)];
    for tree in &ensemble.trees {
        base_value += tree_expected_value(tree);
        let mut walk = Walk {
            tree,
            x,
            phi: &mut values,
        };
        walk.recurse(&mut buf, 0, 0, 1.0, 1.0, NO_FEATURE);
    }
    Ok(Attribution {
        base_value,
        values,
        prediction: ensemble.predict(x),
    })
}

struct Walk<'a> {
    tree: &'a Tree,
    x: &'a [f64],
    phi: &'a mut [f64],
}

impl Walk<'_> {
    /// `buf[..len]` holds the parent's unique path; the edge into `node` brings the
    /// fractions `(zero, one)` for `feature`.
    fn recurse(
        &mut self,
        buf: &mut [PathElem],
        len: usize,
        node: usize,
        zero: f64,
        one: f64,
        feature: usize,
    ) {
        let len = extend(buf, len, zero, one, feature);
        let tree = self.tree;
        if tree.is_leaf(node) {
            let v = tree.value[node];
            for i in 1..len {
                let e = buf[i];
                if e.one != e.zero {
                    self.phi[e.feature] += unwound_sum(buf, len, i) * (e.one - e.zero) * v;
                }
            }
            return;
        }
        let split = tree.feature[node] as usize;
        let hot = hot_child(tree, node, self.x);
        let previous = (1..len).find(|&i| buf[i].feature == split);
        for child in [
            tree.children_left[node] as usize,
            tree.children_right[node] as usize,
        ] {
            let (current, next) = buf.split_at_mut(len);
            next[..len].copy_from_slice(current);
            let (mut child_len, mut zero, mut one) = (len, 1.0, 1.0);
            if let Some(k) = previous {
                zero = next[k].zero;
                one = next[k].one;
                child_len = unwind(next, len, k);
            }
            zero *= zero_fraction(tree, node, child);
            if child != hot {
                one = 0.0;
            }
            if zero == 0.0 && one == 0.0 {
                continue;
            }
            self.recurse(next, child_len, child, zero, one, split);
        }
    }
}
