//! Brute-force Shapley values straight from the definitions in the [module docs](super):
//! every coalition of every feature is enumerated (`2^M` games), so only for small `M`.
//! The tests hold the fast explainers to these.

use super::common::zero_fraction;
use crate::tree::{Attribution, Ensemble, Tree};

/// `φ` of the game `v` over `n` players by the subset formula.
pub(crate) fn shapley(n: usize, mut v: impl FnMut(&[bool]) -> f64) -> Vec<f64> {
    assert!(n < 20, "brute force is for small games");
    let mut worth = vec![0.0; 1 << n];
    let mut members = vec![false; n];
    for (s, w) in worth.iter_mut().enumerate() {
        for (k, m) in members.iter_mut().enumerate() {
            *m = s >> k & 1 == 1;
        }
        *w = v(&members);
    }
    let fact: Vec<f64> = (0..=n)
        .scan(1.0, |f, k| {
            if k > 0 {
                *f *= k as f64;
            }
            Some(*f)
        })
        .collect();
    (0..n)
        .map(|i| {
            (0..1usize << n)
                .filter(|s| s >> i & 1 == 0)
                .map(|s| {
                    let size = s.count_ones() as usize;
                    fact[size] * fact[n - size - 1] / fact[n] * (worth[s | 1 << i] - worth[s])
                })
                .sum()
        })
        .collect()
}

/// `E[f | x_S]` of one tree by the recursive definition: follow `x` on `S` (missing
/// values take the default child), average by cover elsewhere.
pub(crate) fn conditional(tree: &Tree, node: usize, x: &[f64], in_s: &[bool]) -> f64 {
    if tree.is_leaf(node) {
        return tree.value[node];
    }
    let f = tree.feature[node] as usize;
    let (l, r) = (
        tree.children_left[node] as usize,
        tree.children_right[node] as usize,
    );
    if in_s[f] {
        let child = if x[f].is_nan() {
            tree.children_default[node] as usize
        } else if x[f] <= tree.threshold[node] {
            l
        } else {
            r
        };
        conditional(tree, child, x, in_s)
    } else {
        zero_fraction(tree, node, l) * conditional(tree, l, x, in_s)
            + zero_fraction(tree, node, r) * conditional(tree, r, x, in_s)
    }
}

/// Path-dependent SHAP by enumeration.
pub(crate) fn path_dependent(ensemble: &Ensemble, x: &[f64]) -> Attribution {
    let game = |s: &[bool]| {
        ensemble.base_offset
            + ensemble
                .trees
                .iter()
                .map(|t| conditional(t, 0, x, s))
                .sum::<f64>()
    };
    let none = vec![false; ensemble.n_features];
    Attribution {
        base_value: game(&none),
        values: shapley(ensemble.n_features, game),
        prediction: ensemble.predict(x),
    }
}

/// Interventional SHAP by enumeration: the mean over `background` of the Shapley values
/// of `S ↦ f(x_S, z_rest)`.
pub(crate) fn interventional(
    ensemble: &Ensemble,
    x: &[f64],
    background: &[Vec<f64>],
) -> Attribution {
    let n = ensemble.n_features;
    let mut values = vec![0.0; n];
    let mut hybrid = vec![0.0; n];
    for z in background {
        let phi = shapley(n, |s| {
            for j in 0..n {
                hybrid[j] = if s[j] { x[j] } else { z[j] };
            }
            ensemble.predict(&hybrid)
        });
        for (v, p) in values.iter_mut().zip(phi) {
            *v += p / background.len() as f64;
        }
    }
    Attribution {
        base_value: background.iter().map(|z| ensemble.predict(z)).sum::<f64>()
            / background.len() as f64,
        values,
        prediction: ensemble.predict(x),
    }
}
