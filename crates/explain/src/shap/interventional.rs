//! Interventional ("independent") TreeSHAP against a background sample.
//!
//! # Game
//!
//! For a background row `z`, `v_z(S) = f(x_S, z_{F∖S})`: the ensemble on the hybrid row
//! that takes `x`'s values on `S` and `z`'s elsewhere. The attribution is the mean over
//! the background rows of the Shapley values of `v_z`; `φ₀` is the mean of `f(z)`. Unlike
//! the path-dependent game it does not use covers, and it breaks the dependence between
//! features (it asks "what if this feature had the background's value").
//!
//! # Algorithm
//!
//! For one tree and one `z`, walk from the root. At a split where `x` and `z` go the same
//! way (missing values follow the default child), the split's feature does not matter:
//! follow both. Where they part, the hybrid row goes `x`'s way if the feature is in `S`
//! and `z`'s way otherwise, so the walk branches, recording the feature in `A` ("must be
//! in S") on `x`'s side and in `B` ("must not be in S") on `z`'s side; a feature already
//! in `A` or `B` higher up is not branched on again but follows its side. Each leaf with
//! value `v` that the walk reaches is reached by exactly the coalitions with `A ⊆ S` and
//! `B ∩ S = ∅`, a game `v · [A ⊆ S, B ∩ S = ∅]` whose Shapley values (over the random
//! order of players, `i ∈ A` contributes when it comes after the rest of `A` and before
//! all of `B`, and `j ∈ B` subtracts when it comes first of `B` after all of `A`) are
//!
//! ```text
//! φ_i = +v (|A| − 1)! |B|! / (|A| + |B|)!   for i ∈ A,
//! φ_j = −v |A|! (|B| − 1)! / (|A| + |B|)!   for j ∈ B.
//! ```
//!
//! The per-tree, per-`z` values are summed over leaves and averaged over `z`.
//!
//! # Walking all background rows at once
//!
//! The walks of different background rows share most of their steps, so they are done
//! together: the walk carries a *group*, a bitset of the background rows that reach the
//! current node with the current `(A, B)`, starting with all rows at the root. At a split
//! on feature `f` where `x` goes to child `c`:
//!
//! * `f ∈ A`: the whole group follows `c`;
//! * `f ∈ B`: the group splits by each row's own direction, `(A, B)` unchanged;
//! * `f` free: the rows that also go to `c` follow it unchanged; the others branch into
//!   `c` with `f` added to `A` and into their own child with `f` added to `B`.
//!
//! Empty groups stop; a leaf adds the values above times the group's size. The rows'
//! directions at every split are bitsets computed once when the explainer is built, so a
//! step costs a few word operations for up to 64 background rows per word, and the
//! number of steps is bounded by the distinct `(node, A, B)` the background reaches
//! rather than by the number of background rows.

use super::common::{binomials, depth};
use super::{ShapError, check_ensemble, check_row};
use crate::tree::{Attribution, Ensemble, Tree};

/// Exact interventional TreeSHAP of an ensemble against a fixed background set.
/// Immutable once built.
#[derive(Debug, Clone)]
pub struct InterventionalExplainer {
    ensemble: Ensemble,
    n_background: usize,
    /// Per tree, `len × words` bits: bit `b` of node `n`'s words says whether background
    /// row `b` goes left at `n`.
    background_left: Vec<Vec<u64>>,
    /// Words per group bitset.
    words: usize,
    base_value: f64,
    /// `(|A|−1)!|B|!/(|A|+|B|)!` at `a * stride + b`.
    weight_in: Vec<f64>,
    /// `|A|!(|B|−1)!/(|A|+|B|)!` at `a * stride + b`.
    weight_out: Vec<f64>,
    stride: usize,
    max_nodes: usize,
}

// === impl InterventionalExplainer ===

impl InterventionalExplainer {
    /// Checks the ensemble and the background rows (each the ensemble's width; at least
    /// one) and precomputes the background's routing.
    pub fn new(ensemble: &Ensemble, background: &[Vec<f64>]) -> Result<Self, ShapError> {
        check_ensemble(ensemble)?;
        if background.is_empty() {
            return Err(ShapError::EmptyBackground);
        }
        for (row, z) in background.iter().enumerate() {
            if z.len() != ensemble.n_features {
                return Err(ShapError::BackgroundRow {
                    row,
                    expected: ensemble.n_features,
                    got: z.len(),
                });
            }
        }
        let words = background.len().div_ceil(64);
        let mut flags = Vec::new();
        let background_left = ensemble
            .trees
            .iter()
            .map(|tree| {
                let mut bits = vec![0u64; tree.len() * words];
                for (b, z) in background.iter().enumerate() {
                    flags.clear();
                    go_left(tree, z, &mut flags);
                    for (node, &left) in flags.iter().enumerate() {
                        if left {
                            bits[node * words + b / 64] |= 1 << (b % 64);
                        }
                    }
                }
                bits
            })
            .collect();
        let base_value =
            background.iter().map(|z| ensemble.predict(z)).sum::<f64>() / background.len() as f64;
        let max_depth = ensemble.trees.iter().map(depth).max().unwrap_or(0);
        let stride = max_depth + 1;
        let binom = binomials(2 * stride);
        let mut weight_in = vec![0.0; stride * stride];
        let mut weight_out = vec![0.0; stride * stride];
        for a in 0..stride {
            for b in 0..stride {
                let n = a + b;
                if a > 0 {
                    weight_in[a * stride + b] = 1.0 / (n as f64 * binom[n - 1][b]);
                }
                if b > 0 {
                    weight_out[a * stride + b] = 1.0 / (n as f64 * binom[n - 1][a]);
                }
            }
        }
        Ok(Self {
            ensemble: ensemble.clone(),
            n_background: background.len(),
            background_left,
            words,
            base_value,
            weight_in,
            weight_out,
            stride,
            max_nodes: ensemble.trees.iter().map(Tree::len).max().unwrap_or(0),
        })
    }

    /// `φ₀`: the mean of the ensemble over the background rows.
    pub fn base_value(&self) -> f64 {
        self.base_value
    }

    /// Number of background rows.
    pub fn n_background(&self) -> usize {
        self.n_background
    }

    /// Exact interventional SHAP values of one encoded row.
    pub fn explain(&self, x: &[f64]) -> Result<Attribution, ShapError> {
        check_row(self.ensemble.n_features, x)?;
        let n = self.ensemble.n_features;
        let mut state = vec![Side::Free; n];
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let mut values = vec![0.0; n];
        let mut x_left = Vec::with_capacity(self.max_nodes);
        let w = self.words;
        let mut all = vec![u64::MAX; w];
        if self.n_background % 64 != 0 {
            all[w - 1] = (1u64 << (self.n_background % 64)) - 1;
        }
        let mut groups = Vec::new();
        for (tree, bits) in self.ensemble.trees.iter().zip(&self.background_left) {
            if tree.is_leaf(0) {
                continue;
            }
            x_left.clear();
            go_left(tree, x, &mut x_left);
            groups.clear();
            groups.extend_from_slice(&all);
            Walk {
                tree,
                x_left: &x_left,
                z_left: bits,
                words: w,
                groups: &mut groups,
                state: &mut state,
                a: &mut a,
                b: &mut b,
                phi: &mut values,
                weight_in: &self.weight_in,
                weight_out: &self.weight_out,
                stride: self.stride,
            }
            .visit(0, 0);
        }
        let scale = 1.0 / self.n_background as f64;
        for v in &mut values {
            *v *= scale;
        }
        Ok(Attribution {
            base_value: self.base_value,
            values,
            prediction: self.ensemble.predict(x),
        })
    }
}

/// Appends, for every node of `tree`, whether `row` goes left there (false at leaves).
fn go_left(tree: &Tree, row: &[f64], out: &mut Vec<bool>) {
    for node in 0..tree.len() {
        out.push(if tree.is_leaf(node) {
            false
        } else {
            let value = row[tree.feature[node] as usize];
            if value.is_nan() {
                tree.children_default[node] == tree.children_left[node]
            } else {
                value <= tree.threshold[node]
            }
        });
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Free,
    /// In `A`: the hybrid row takes `x`'s value.
    FromX,
    /// In `B`: the hybrid row takes `z`'s value.
    FromZ,
}

struct Walk<'a> {
    tree: &'a Tree,
    x_left: &'a [bool],
    z_left: &'a [u64],
    words: usize,
    /// Group bitsets, `words` each, as a stack: a visit's group lives at its offset.
    groups: &'a mut Vec<u64>,
    state: &'a mut [Side],
    a: &'a mut Vec<usize>,
    b: &'a mut Vec<usize>,
    phi: &'a mut [f64],
    weight_in: &'a [f64],
    weight_out: &'a [f64],
    stride: usize,
}

impl Walk<'_> {
    /// Pushes `group & mask` (or `& !mask`) and returns its offset, or `None` if empty.
    fn push_group(&mut self, group: usize, node: usize, same_as_left: bool) -> Option<usize> {
        let w = self.words;
        let at = self.groups.len();
        let mut any = 0;
        for k in 0..w {
            let mask = self.z_left[node * w + k];
            let g = self.groups[group + k] & if same_as_left { mask } else { !mask };
            any |= g;
            self.groups.push(g);
        }
        if any == 0 {
            self.groups.truncate(at);
            None
        } else {
            Some(at)
        }
    }

    fn visit(&mut self, node: usize, group: usize) {
        let tree = self.tree;
        if tree.is_leaf(node) {
            let (na, nb) = (self.a.len(), self.b.len());
            if na + nb > 0 {
                let count: u32 = self.groups[group..group + self.words]
                    .iter()
                    .map(|g| g.count_ones())
                    .sum();
                let v = tree.value[node] * f64::from(count);
                let up = v * self.weight_in[na * self.stride + nb];
                let down = v * self.weight_out[na * self.stride + nb];
                for &f in self.a.iter() {
                    self.phi[f] += up;
                }
                for &f in self.b.iter() {
                    self.phi[f] -= down;
                }
            }
            return;
        }
        let (left, right) = (
            tree.children_left[node] as usize,
            tree.children_right[node] as usize,
        );
        let x_goes_left = self.x_left[node];
        let (hot, cold) = if x_goes_left {
            (left, right)
        } else {
            (right, left)
        };
        let f = tree.feature[node] as usize;
        let top = self.groups.len();
        match self.state[f] {
            Side::FromX => self.visit(hot, group),
            Side::FromZ => {
                if let Some(g) = self.push_group(group, node, true) {
                    self.visit(left, g);
                }
                self.groups.truncate(top);
                if let Some(g) = self.push_group(group, node, false) {
                    self.visit(right, g);
                }
            }
            Side::Free => {
                if let Some(g) = self.push_group(group, node, x_goes_left) {
                    self.visit(hot, g);
                }
                self.groups.truncate(top);
                if let Some(g) = self.push_group(group, node, !x_goes_left) {
                    self.state[f] = Side::FromX;
                    self.a.push(f);
                    self.visit(hot, g);
                    self.a.pop();
                    self.state[f] = Side::FromZ;
                    self.b.push(f);
                    self.visit(cold, g);
                    self.b.pop();
                    self.state[f] = Side::Free;
                }
            }
        }
        self.groups.truncate(top);
    }
}
