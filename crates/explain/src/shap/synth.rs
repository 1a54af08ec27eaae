//! Deterministic synthetic ensembles and rows, for benchmarks, comparisons with other
//! implementations, and tests. Not a model of anything: the trees are grown on random
//! Gaussian data with random splits, so that covers, thresholds and leaf populations
//! look like those of a trained ensemble without training one.

use crate::rng::SplitMix64;
use crate::tree::{Ensemble, LEAF, Tree};

/// `n_trees` trees of depth `depth` (full, unless a node runs out of data) over
/// `n_features` features, grown on `n_data` Gaussian rows: every split picks a random
/// feature and a threshold at a random quantile (10–90 %) of the node's rows, covers are
/// the number of rows reaching each node, missing values go to a random child, leaves
/// hold small Gaussian values, and internal values are cover-weighted means.
pub fn random_ensemble(
    seed: u64,
    n_trees: usize,
    depth: usize,
    n_features: usize,
    n_data: usize,
) -> Ensemble {
    let mut rng = SplitMix64::new(seed);
    let n_features = n_features.max(1);
    let data: Vec<f64> = (0..n_data * n_features).map(|_| rng.normal()).collect();
    let trees = (0..n_trees)
        .map(|_| grow(&mut rng, &data, n_features, depth))
        .collect();
    Ensemble {
        base_offset: rng.normal(),
        trees,
        n_features,
    }
}

/// `n_rows` Gaussian rows with each value missing (`NaN`) with probability `missing`.
pub fn random_rows(seed: u64, n_rows: usize, n_features: usize, missing: f64) -> Vec<Vec<f64>> {
    let mut rng = SplitMix64::new(seed);
    (0..n_rows)
        .map(|_| {
            (0..n_features)
                .map(|_| {
                    let v = rng.normal();
                    if rng.next_f64() < missing {
                        f64::NAN
                    } else {
                        v
                    }
                })
                .collect()
        })
        .collect()
}

fn grow(rng: &mut SplitMix64, data: &[f64], n_features: usize, depth: usize) -> Tree {
    let mut t = Tree::default();
    let rows: Vec<usize> = (0..data.len() / n_features).collect();
    let push = |t: &mut Tree, cover: usize| {
        t.children_left.push(LEAF);
        t.children_right.push(LEAF);
        t.children_default.push(LEAF);
        t.feature.push(LEAF);
        t.threshold.push(0.0);
        t.value.push(0.0);
        t.cover.push(cover as f64);
        t.value.len() - 1
    };
    let root = push(&mut t, rows.len());
    let mut stack = vec![(root, rows, 0usize)];
    while let Some((node, rows, level)) = stack.pop() {
        if level >= depth || rows.len() < 2 {
            t.value[node] = 0.1 * rng.normal();
            continue;
        }
        let f = rng.below(n_features);
        let mut values: Vec<f64> = rows.iter().map(|&r| data[r * n_features + f]).collect();
        values.sort_by(f64::total_cmp);
        let q = 0.1 + 0.8 * rng.next_f64();
        let i = ((q * (values.len() - 1) as f64) as usize).min(values.len() - 2);
        let threshold = 0.5 * (values[i] + values[i + 1]);
        let (left_rows, right_rows): (Vec<usize>, Vec<usize>) = rows
            .iter()
            .partition(|&&r| data[r * n_features + f] <= threshold);
        let left = push(&mut t, left_rows.len());
        let right = push(&mut t, right_rows.len());
        t.children_left[node] = left as i32;
        t.children_right[node] = right as i32;
        t.children_default[node] = if rng.next_f64() < 0.5 { left } else { right } as i32;
        t.feature[node] = f as i32;
        t.threshold[node] = threshold;
        stack.push((right, right_rows, level + 1));
        stack.push((left, left_rows, level + 1));
    }
    // Children are always numbered after their parent, so one backward pass fills the
    // internal nodes' cover-weighted means.
    for node in (0..t.len()).rev() {
        if !t.is_leaf(node) {
            let (l, r) = (
                t.children_left[node] as usize,
                t.children_right[node] as usize,
            );
            let total = t.cover[l] + t.cover[r];
            t.value[node] = if total > 0.0 {
                (t.value[l] * t.cover[l] + t.value[r] * t.cover[r]) / total
            } else {
                0.5 * (t.value[l] + t.value[r])
            };
        }
    }
    t
}
