//! The tree and ensemble types that every algorithm in this crate shares.
//!
//! A tree is stored as parallel arrays in node order, root at index 0, the layout the
//! `shap` package and the JSON format use. Features are columns of an encoded row of
//! `f64` (see the encoder); a missing value is `NaN` and follows the node's default child.

use serde::{Deserialize, Serialize};

/// Marks "no child" in `children_*` and "no feature" in `feature` (at leaves).
pub const LEAF: i32 = -1;

/// One regression tree. `Tree::default()` has no nodes, for builders to push into.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    /// Left child of each node (taken when `x[feature] <= threshold`), or [`LEAF`].
    pub children_left: Vec<i32>,
    /// Right child of each node, or [`LEAF`].
    pub children_right: Vec<i32>,
    /// The child a missing (`NaN`) value goes to: one of the two children, or [`LEAF`].
    pub children_default: Vec<i32>,
    /// The encoded feature index a node splits on, or [`LEAF`] at leaves.
    pub feature: Vec<i32>,
    /// Split threshold: go left when `x[feature] <= threshold`.
    pub threshold: Vec<f64>,
    /// Output at leaves; at internal nodes the cover-weighted mean of the leaves below.
    pub value: Vec<f64>,
    /// Training weight (number of rows, for unit weights) that reached the node.
    pub cover: Vec<f64>,
}

/// A sum of trees plus a constant: `prediction = base_offset + Σ tree(x)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ensemble {
    /// Constant added to the sum of the trees (the initial prediction of boosting).
    pub base_offset: f64,
    /// The trees, in boosting order.
    pub trees: Vec<Tree>,
    /// Width of the encoded rows the ensemble reads.
    pub n_features: usize,
}

/// The trees are not well formed: what is wrong, and where.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TreeError {
    /// The node arrays of a tree have different lengths.
    #[error("tree {tree}: node arrays have different lengths")]
    Ragged {
        /// Index of the tree.
        tree: usize,
    },
    /// A tree has no nodes.
    #[error("tree {tree} has no nodes")]
    Empty {
        /// Index of the tree.
        tree: usize,
    },
    /// A node's child or feature index is out of range, or a node is reached twice.
    #[error("tree {tree}, node {node}: {message}")]
    BadNode {
        /// Index of the tree.
        tree: usize,
        /// Index of the node.
        node: usize,
        /// What is wrong.
        message: String,
    },
}

// === impl Tree ===

impl Tree {
    /// A tree of a single leaf.
    pub fn leaf(value: f64, cover: f64) -> Self {
        Self {
            children_left: vec![LEAF],
            children_right: vec![LEAF],
            children_default: vec![LEAF],
            feature: vec![LEAF],
            threshold: vec![0.0],
            value: vec![value],
            cover: vec![cover],
        }
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.value.len()
    }

    /// True for a tree with no nodes (never the case for a validated tree).
    pub fn is_empty(&self) -> bool {
        self.value.is_empty()
    }

    /// Whether `node` is a leaf.
    #[inline]
    pub fn is_leaf(&self, node: usize) -> bool {
        self.children_left[node] == LEAF
    }

    /// The leaf that `x` reaches.
    #[inline]
    pub fn leaf_of(&self, x: &[f64]) -> usize {
        let mut node = 0usize;
        while !self.is_leaf(node) {
            node = self.child_for(node, x[self.feature[node] as usize]);
        }
        node
    }

    /// The child an internal node sends `value` of its feature to (the default child
    /// for a missing value).
    #[inline]
    pub fn child_for(&self, node: usize, value: f64) -> usize {
        (if value.is_nan() {
            self.children_default[node]
        } else if value <= self.threshold[node] {
            self.children_left[node]
        } else {
            self.children_right[node]
        }) as usize
    }

    /// Counts the covers again over `rows` (encoded), keeping `keep` times the old
    /// cover so that no node that was trained on drops to zero, and sets each internal
    /// node's value to the cover-weighted mean of its children's again. Predictions are
    /// unchanged (leaves keep their values); what changes is the distribution that
    /// path-dependent TreeSHAP and the base value take expectations over.
    pub fn recover<'a>(&mut self, rows: impl IntoIterator<Item = &'a [f64]>, keep: f64) {
        if self.is_empty() {
            return;
        }
        for c in &mut self.cover {
            *c *= keep;
        }
        for x in rows {
            let mut node = 0usize;
            loop {
                self.cover[node] += 1.0;
                if self.is_leaf(node) {
                    break;
                }
                let value = x
                    .get(self.feature[node] as usize)
                    .copied()
                    .unwrap_or(f64::NAN);
                node = self.child_for(node, value);
            }
        }
        // Post-order without recursion: every child before its parent, whatever the
        // order of the arrays.
        let mut stack = vec![(0usize, false)];
        while let Some((node, children_done)) = stack.pop() {
            if self.is_leaf(node) {
                continue;
            }
            let (l, r) = (
                self.children_left[node] as usize,
                self.children_right[node] as usize,
            );
            if !children_done {
                stack.push((node, true));
                stack.push((l, false));
                stack.push((r, false));
            } else if self.cover[node] > 0.0 {
                self.value[node] = (self.cover[l] * self.value[l] + self.cover[r] * self.value[r])
                    / self.cover[node];
            }
        }
    }

    /// The tree's output for an encoded row.
    #[inline]
    pub fn predict(&self, x: &[f64]) -> f64 {
        self.value[self.leaf_of(x)]
    }

    /// Depth of the deepest leaf (a single leaf has depth 0).
    pub fn max_depth(&self) -> usize {
        fn depth(tree: &Tree, node: usize) -> usize {
            if tree.is_leaf(node) {
                0
            } else {
                1 + depth(tree, tree.children_left[node] as usize)
                    .max(depth(tree, tree.children_right[node] as usize))
            }
        }
        if self.is_empty() { 0 } else { depth(self, 0) }
    }

    /// Checks the structure: equal array lengths, children in range and reached once,
    /// default children among the two children, features below `n_features`.
    pub fn validate(&self, index: usize, n_features: usize) -> Result<(), TreeError> {
        let n = self.value.len();
        if n == 0 {
            return Err(TreeError::Empty { tree: index });
        }
        let lens = [
            self.children_left.len(),
            self.children_right.len(),
            self.children_default.len(),
            self.feature.len(),
            self.threshold.len(),
            self.cover.len(),
        ];
        if lens.iter().any(|&l| l != n) {
            return Err(TreeError::Ragged { tree: index });
        }
        let bad = |node: usize, message: String| TreeError::BadNode {
            tree: index,
            node,
            message,
        };
        let mut reached = vec![false; n];
        reached[0] = true;
        for node in 0..n {
            let (l, r, d) = (
                self.children_left[node],
                self.children_right[node],
                self.children_default[node],
            );
            if l == LEAF {
                if r != LEAF {
                    return Err(bad(node, "a leaf with a right child".to_owned()));
                }
                continue;
            }
            for child in [l, r] {
                let Ok(c) = usize::try_from(child) else {
                    return Err(bad(node, format!("child {child} is not a node index")));
                };
                if c >= n || c == 0 {
                    return Err(bad(node, format!("child {child} is out of range")));
                }
                if reached[c] {
                    return Err(bad(node, format!("child {child} is reached twice")));
                }
                reached[c] = true;
            }
            if d != l && d != r {
                return Err(bad(node, format!("default child {d} is neither child")));
            }
            let f = self.feature[node];
            if f < 0 || f as usize >= n_features {
                return Err(bad(node, format!("feature {f} is out of range")));
            }
            if !self.threshold[node].is_finite() {
                return Err(bad(node, "threshold is not finite".to_owned()));
            }
        }
        if let Some(node) = reached.iter().position(|r| !r) {
            return Err(bad(node, "not reachable from the root".to_owned()));
        }
        Ok(())
    }
}

// === impl Ensemble ===

impl Ensemble {
    /// The ensemble's output for an encoded row.
    pub fn predict(&self, x: &[f64]) -> f64 {
        self.base_offset + self.trees.iter().map(|t| t.predict(x)).sum::<f64>()
    }

    /// Validates every tree.
    pub fn validate(&self) -> Result<(), TreeError> {
        self.trees
            .iter()
            .enumerate()
            .try_for_each(|(i, t)| t.validate(i, self.n_features))
    }
}

/// What every explainer returns for one row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attribution {
    /// Expected output over the reference distribution (the φ₀ of SHAP).
    pub base_value: f64,
    /// One value per feature; `base_value + Σ values == prediction`.
    pub values: Vec<f64>,
    /// The explained model's output for the row.
    pub prediction: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// x0 <= 0.5 ? (x1 <= 2 ? 1 : 2) : 3, missing x0 goes right, missing x1 goes left.
    pub(crate) fn small() -> Tree {
        Tree {
            children_left: vec![1, 3, LEAF, LEAF, LEAF],
            children_right: vec![2, 4, LEAF, LEAF, LEAF],
            children_default: vec![2, 3, LEAF, LEAF, LEAF],
            feature: vec![0, 1, LEAF, LEAF, LEAF],
            threshold: vec![0.5, 2.0, 0.0, 0.0, 0.0],
            value: vec![1.9, 1.5, 3.0, 1.0, 2.0],
            cover: vec![10.0, 8.0, 2.0, 4.0, 4.0],
        }
    }

    #[test]
    fn rows_follow_thresholds_and_missing_values_follow_the_default_child() {
        let t = small();
        t.validate(0, 2).unwrap();
        assert_eq!(t.predict(&[0.5, 2.0]), 1.0);
        assert_eq!(t.predict(&[0.0, 2.5]), 2.0);
        assert_eq!(t.predict(&[0.6, 0.0]), 3.0);
        assert_eq!(t.predict(&[f64::NAN, 0.0]), 3.0);
        assert_eq!(t.predict(&[0.0, f64::NAN]), 1.0);
        assert_eq!(t.max_depth(), 2);
    }

    #[test]
    fn malformed_trees_are_rejected_with_the_node() {
        let mut t = small();
        t.children_default[1] = 2;
        assert!(matches!(
            t.validate(0, 2),
            Err(TreeError::BadNode { node: 1, .. })
        ));
        let mut t = small();
        t.feature[0] = 5;
        assert!(t.validate(0, 2).is_err());
        let mut t = small();
        t.cover.pop();
        assert_eq!(t.validate(3, 2), Err(TreeError::Ragged { tree: 3 }));
    }
}
