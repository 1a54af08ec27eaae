//! Helpers shared by the tree explainers: routing, cover ratios, depth and weights.

use crate::tree::Tree;

/// The child that `x` follows at an internal node (the default child for a missing value).
#[inline]
pub(crate) fn hot_child(tree: &Tree, node: usize, x: &[f64]) -> usize {
    tree.child_for(node, x[tree.feature[node] as usize])
}

/// Share of the node's cover that goes to `child`: the weight of that branch when the
/// node's feature is unknown. The caller has checked that internal covers are positive.
#[inline]
pub(crate) fn zero_fraction(tree: &Tree, node: usize, child: usize) -> f64 {
    tree.cover[child] / tree.cover[node]
}

/// Depth of the deepest leaf, without recursion (the tree may come from outside).
pub(crate) fn depth(tree: &Tree) -> usize {
    if tree.is_empty() {
        return 0;
    }
    let mut deepest = 0;
    let mut stack = vec![(0usize, 0usize)];
    while let Some((node, d)) = stack.pop() {
        if tree.is_leaf(node) {
            deepest = deepest.max(d);
        } else {
            stack.push((tree.children_left[node] as usize, d + 1));
            stack.push((tree.children_right[node] as usize, d + 1));
        }
    }
    deepest
}

/// `v(∅)` of the path-dependent game for one tree: each leaf's value times the product of
/// the cover ratios on its path.
pub(crate) fn tree_expected_value(tree: &Tree) -> f64 {
    let mut total = 0.0;
    let mut stack = vec![(0usize, 1.0f64)];
    while let Some((node, weight)) = stack.pop() {
        if tree.is_leaf(node) {
            total += weight * tree.value[node];
        } else {
            for child in [tree.children_left[node], tree.children_right[node]] {
                let child = child as usize;
                stack.push((child, weight * zero_fraction(tree, node, child)));
            }
        }
    }
    total
}

/// Binomial coefficients `C(n, k)` for `n <= max_n`, as `f64` (exact up to 2⁵³, and
/// relative error of a few ulps beyond).
pub(crate) fn binomials(max_n: usize) -> Vec<Vec<f64>> {
    let mut rows: Vec<Vec<f64>> = Vec::with_capacity(max_n + 1);
    for n in 0..=max_n {
        let mut row = vec![1.0; n + 1];
        for k in 1..n {
            row[k] = rows[n - 1][k - 1] + rows[n - 1][k];
        }
        rows.push(row);
    }
    rows
}

/// The Shapley weight of a coalition of `s` other players out of `d` players,
/// `s! (d − s − 1)! / d! = 1 / (d · C(d − 1, s))`.
#[inline]
pub(crate) fn shapley_weight(binom: &[Vec<f64>], s: usize, d: usize) -> f64 {
    1.0 / (d as f64 * binom[d - 1][s])
}
