//! Model-agnostic KernelSHAP (Lundberg & Lee 2017, "A unified approach to interpreting
//! model predictions") for any batched black-box model.
//!
//! # Game
//!
//! The interventional game against a background set `Z`:
//! `v(S) = mean_{z∈Z} f(x_S, z_{F∖S})`, so `φ₀ = mean f(z)` and, with every coalition,
//! the result is the one of [`InterventionalExplainer`](super::InterventionalExplainer)
//! on a tree model. Features where `x` equals every background row (missing counts as
//! equal to missing) cannot change any hybrid row: they are null players, get exactly 0,
//! and are left out of the regression. Call the remaining `m` features the players.
//!
//! # Estimator
//!
//! The Shapley values are the solution of the weighted least-squares problem
//!
//! ```text
//! minimise Σ_S π(S) (v(S) − φ₀ − Σ_{i∈S} φᵢ)²   subject to   Σᵢ φᵢ = f(x) − φ₀,
//! π(S) = (m − 1) / (C(m, |S|) · |S| · (m − |S|))   for 0 < |S| < m,
//! ```
//!
//! which is exact when every coalition is present. The constraint is enforced exactly by
//! eliminating the last player, `φ_m = Δ − Σ_{i<m} φᵢ` with `Δ = f(x) − φ₀`: each
//! coalition gives the row `aᵢ = [i ∈ S] − [m ∈ S]` and target `v(S) − φ₀ − [m ∈ S]·Δ`,
//! and the `(m − 1)`-dimensional normal equations are solved by Cholesky. If they are
//! not positive definite (too few sampled coalitions), one retry adds a ridge of 1e-10
//! of the mean diagonal; failing that, [`ShapError::Singular`].
//!
//! # Coalitions
//!
//! * **Exact**: when `m ≤ exact_up_to` or `2^m − 2 ≤ max_coalitions`, every proper,
//!   non-empty coalition is evaluated with its kernel weight. With all coalitions the
//!   result equals the exact Shapley values up to the rounding of the solve (tested to
//!   1e-6 against interventional TreeSHAP; in practice about 1e-12).
//! * **Sampled** (as in the `shap` package): coalition sizes are visited in pairs
//!   `(s, m − s)` from the smallest. A pair whose share of the kernel mass, times the
//!   remaining budget, covers all its coalitions is enumerated with exact weights.
//!   The budget left is then spent on random coalitions: a size drawn in proportion to
//!   its kernel mass among the sizes not enumerated, a uniform subset of that size, and
//!   always its complement too (paired sampling, which cancels the first-order error).
//!   Repeated draws add to a coalition's count; the sampled coalitions share the
//!   remaining kernel mass in proportion to their counts. The generator is seeded with
//!   [`KernelOptions::seed`] afresh for each row, so a row's attribution does not depend
//!   on which rows were explained before it.
//!
//! # Cost
//!
//! One evaluation of the model per background row per coalition, `R · K` rows in all,
//! handed to [`BatchModel::predict_batch`] in batches of at most
//! [`KernelOptions::max_batch_rows`] rows.

use std::collections::HashMap;

use super::common::binomials;
use super::{ShapError, check_row};
use crate::rng::SplitMix64;
use crate::tree::{Attribution, Ensemble};

/// A model that scores many encoded rows in one call.
pub trait BatchModel {
    /// Writes the output for each of the `out.len()` rows in `rows` (row-major, `n_cols`
    /// values each, so `rows.len() == out.len() * n_cols`) into `out`.
    fn predict_batch(&mut self, rows: &[f64], n_cols: usize, out: &mut [f64]);
}

impl<M: BatchModel + ?Sized> BatchModel for &mut M {
    fn predict_batch(&mut self, rows: &[f64], n_cols: usize, out: &mut [f64]) {
        (**self).predict_batch(rows, n_cols, out);
    }
}

impl BatchModel for Ensemble {
    fn predict_batch(&mut self, rows: &[f64], n_cols: usize, out: &mut [f64]) {
        (&*self).predict_batch(rows, n_cols, out);
    }
}

impl BatchModel for &Ensemble {
    fn predict_batch(&mut self, rows: &[f64], n_cols: usize, out: &mut [f64]) {
        out.fill(0.0);
        if n_cols == 0 {
            return;
        }
        // Tree by tree, so that one tree's nodes stay in cache across the batch; the
        // offset is added last so that each output is bit for bit `Ensemble::predict`.
        for tree in &self.trees {
            for (o, row) in out.iter_mut().zip(rows.chunks_exact(n_cols)) {
                *o += tree.predict(row);
            }
        }
        for o in out.iter_mut() {
            *o += self.base_offset;
        }
    }
}

/// Adapts a per-row function `FnMut(&[f64]) -> f64` to a [`BatchModel`].
#[derive(Debug, Clone)]
pub struct PerRow<F>(pub F);

impl<F: FnMut(&[f64]) -> f64> BatchModel for PerRow<F> {
    fn predict_batch(&mut self, rows: &[f64], n_cols: usize, out: &mut [f64]) {
        if n_cols == 0 {
            return;
        }
        for (o, row) in out.iter_mut().zip(rows.chunks_exact(n_cols)) {
            *o = (self.0)(row);
        }
    }
}

/// Adapts a batched closure `FnMut(rows, n_cols, out)` to a [`BatchModel`].
#[derive(Debug, Clone)]
pub struct Batched<F>(pub F);

impl<F: FnMut(&[f64], usize, &mut [f64])> BatchModel for Batched<F> {
    fn predict_batch(&mut self, rows: &[f64], n_cols: usize, out: &mut [f64]) {
        (self.0)(rows, n_cols, out);
    }
}

/// Settings of [`kernel_shap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelOptions {
    /// Most coalitions to evaluate when sampling (each costs one model call per
    /// background row).
    pub max_coalitions: usize,
    /// Enumerate every coalition when there are at most this many players, whatever the
    /// budget (2^12 − 2 = 4094 coalitions at the default).
    pub exact_up_to: usize,
    /// Seed of the coalition sampler.
    pub seed: u64,
    /// Most rows handed to the model in one call.
    pub max_batch_rows: usize,
}

impl Default for KernelOptions {
    fn default() -> Self {
        Self {
            max_coalitions: 2048,
            exact_up_to: 12,
            seed: 0,
            max_batch_rows: 1 << 16,
        }
    }
}

/// KernelSHAP values of `x` for `model` against `background` (see the module docs).
pub fn kernel_shap<M: BatchModel + ?Sized>(
    model: &mut M,
    x: &[f64],
    background: &[Vec<f64>],
    options: &KernelOptions,
) -> Result<Attribution, ShapError> {
    let mut explainer = KernelExplainer::new(model, background, *options)?;
    explainer.explain(x)
}

/// KernelSHAP with the background's mean output computed once for many rows.
#[derive(Debug)]
pub struct KernelExplainer<M> {
    model: M,
    background: Vec<f64>,
    n_background: usize,
    n_features: usize,
    base_value: f64,
    options: KernelOptions,
}

impl<M: BatchModel> KernelExplainer<M> {
    /// Checks the background (non-empty, equal widths) and the options, and scores the
    /// background once for `φ₀`.
    pub fn new(
        mut model: M,
        background: &[Vec<f64>],
        options: KernelOptions,
    ) -> Result<Self, ShapError> {
        let Some(first) = background.first() else {
            return Err(ShapError::EmptyBackground);
        };
        let n_features = first.len();
        for (row, z) in background.iter().enumerate() {
            if z.len() != n_features {
                return Err(ShapError::BackgroundRow {
                    row,
                    expected: n_features,
                    got: z.len(),
                });
            }
        }
        if options.max_batch_rows == 0 {
            return Err(ShapError::Options("max_batch_rows must be at least 1"));
        }
        let flat: Vec<f64> = background.iter().flatten().copied().collect();
        let mut out = vec![0.0; background.len()];
        model.predict_batch(&flat, n_features, &mut out);
        let base_value = out.iter().sum::<f64>() / out.len() as f64;
        Ok(Self {
            model,
            background: flat,
            n_background: background.len(),
            n_features,
            base_value,
            options,
        })
    }

    /// `φ₀`: the mean output over the background.
    pub fn base_value(&self) -> f64 {
        self.base_value
    }

    /// Gives the model back.
    pub fn into_model(self) -> M {
        self.model
    }

    /// KernelSHAP values of one encoded row.
    pub fn explain(&mut self, x: &[f64]) -> Result<Attribution, ShapError> {
        check_row(self.n_features, x)?;
        let mut fx = [0.0];
        self.model.predict_batch(x, self.n_features, &mut fx);
        let prediction = fx[0];
        let delta = prediction - self.base_value;
        let players: Vec<usize> = (0..self.n_features)
            .filter(|&j| {
                self.background
                    .chunks_exact(self.n_features)
                    .any(|z| !same(z[j], x[j]))
            })
            .collect();
        let mut values = vec![0.0; self.n_features];
        let m = players.len();
        match m {
            0 => {}
            1 => values[players[0]] = delta,
            _ => {
                let coalitions = self.coalitions(m)?;
                let worth = self.evaluate(x, &players, &coalitions);
                let phi = solve(m, &coalitions, &worth, self.base_value, delta)?;
                for (&j, p) in players.iter().zip(phi) {
                    values[j] = p;
                }
            }
        }
        Ok(Attribution {
            base_value: self.base_value,
            values,
            prediction,
        })
    }

    fn coalitions(&self, m: usize) -> Result<Vec<Coalition>, ShapError> {
        let opts = &self.options;
        let exact =
            m <= opts.exact_up_to || (m < 63 && (1u64 << m) - 2 <= opts.max_coalitions as u64);
        if exact && m < 63 {
            let binom = binomials(m);
            return Ok((1u64..(1u64 << m) - 1)
                .map(|s| Coalition {
                    mask: vec![s],
                    weight: kernel_weight(&binom, m, s.count_ones() as usize),
                })
                .collect());
        }
        if opts.max_coalitions < 2 {
            return Err(ShapError::Options("max_coalitions must be at least 2"));
        }
        Ok(sample_coalitions(m, opts.max_coalitions, opts.seed))
    }

    /// `v(S)` for every coalition: the mean output over the background of the hybrid rows.
    fn evaluate(&mut self, x: &[f64], players: &[usize], coalitions: &[Coalition]) -> Vec<f64> {
        let n = self.n_features;
        let r = self.n_background;
        let per_batch = (self.options.max_batch_rows / r).max(1);
        let mut worth = Vec::with_capacity(coalitions.len());
        let mut rows = Vec::with_capacity(per_batch * r * n);
        let mut out = Vec::with_capacity(per_batch * r);
        for chunk in coalitions.chunks(per_batch) {
            rows.clear();
            for c in chunk {
                let start = rows.len();
                rows.extend_from_slice(&self.background);
                for b in 0..r {
                    let row = &mut rows[start + b * n..start + (b + 1) * n];
                    for (k, &j) in players.iter().enumerate() {
                        if c.mask[k / 64] >> (k % 64) & 1 == 1 {
                            row[j] = x[j];
                        }
                    }
                }
            }
            out.clear();
            out.resize(chunk.len() * r, 0.0);
            self.model.predict_batch(&rows, n, &mut out);
            worth.extend(
                out.chunks_exact(r)
                    .map(|o| o.iter().sum::<f64>() / r as f64),
            );
        }
        worth
    }
}

/// Missing equals missing; otherwise ordinary equality.
fn same(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

/// A coalition of players (bit `k` of the mask: player `k` takes `x`'s value) and its
/// regression weight.
#[derive(Debug, Clone)]
struct Coalition {
    mask: Vec<u64>,
    weight: f64,
}

/// The Shapley kernel `π` for a coalition of `s` of `m` players.
fn kernel_weight(binom: &[Vec<f64>], m: usize, s: usize) -> f64 {
    (m - 1) as f64 / (binom[m][s] * s as f64 * (m - s) as f64)
}

fn sample_coalitions(m: usize, budget: usize, seed: u64) -> Vec<Coalition> {
    let binom = binomials(m);
    let words = m.div_ceil(64);
    let half = m / 2;
    // Kernel mass of the size pair (s, m − s): C(m, s) π(s) = (m − 1)/(s (m − s)) per side.
    let mass = |s: usize| {
        let side = (m - 1) as f64 / (s as f64 * (m - s) as f64);
        if 2 * s == m { side } else { 2.0 * side }
    };
    let mut out = Vec::new();
    let mut budget_left = budget as f64;
    let mut mass_left: f64 = (1..=half).map(mass).sum();
    let mut next_size = 1;
    while next_size <= half {
        let s = next_size;
        let count = binom[m][s] * if 2 * s == m { 1.0 } else { 2.0 };
        if budget_left * mass(s) / mass_left + 1e-9 < count {
            break;
        }
        let w = kernel_weight(&binom, m, s);
        for_each_combination(m, s, |members| {
            let mut mask = vec![0u64; words];
            for &k in members {
                mask[k / 64] |= 1 << (k % 64);
            }
            if 2 * s != m {
                out.push(Coalition {
                    mask: complement(&mask, m),
                    weight: w,
                });
            }
            out.push(Coalition { mask, weight: w });
        });
        budget_left -= count;
        mass_left -= mass(s);
        next_size += 1;
    }
    if next_size > half || budget_left < 2.0 {
        return out;
    }
    let sizes: Vec<usize> = (next_size..=half).collect();
    let masses: Vec<f64> = sizes.iter().map(|&s| mass(s)).collect();
    let total: f64 = masses.iter().sum();
    let mut rng = SplitMix64::new(seed);
    let mut index: HashMap<Vec<u64>, usize> = HashMap::new();
    let mut sampled: Vec<(Vec<u64>, f64)> = Vec::new();
    let target = budget_left as usize;
    let mut members: Vec<usize> = (0..m).collect();
    // Bounded: if most of the space is already taken, repeats would loop for long.
    let max_draws = 64 * target + 1024;
    let mut draws = 0;
    while sampled.len() + 1 < target && draws < max_draws {
        draws += 1;
        let mut u = rng.next_f64() * total;
        let mut pick = sizes.len() - 1;
        for (i, &w) in masses.iter().enumerate() {
            if u < w {
                pick = i;
                break;
            }
            u -= w;
        }
        let s = sizes[pick];
        // Partial Fisher–Yates: the first s entries become a uniform subset.
        for i in 0..s {
            let j = i + rng.below(m - i);
            members.swap(i, j);
        }
        let mut mask = vec![0u64; words];
        for &k in &members[..s] {
            mask[k / 64] |= 1 << (k % 64);
        }
        let comp = complement(&mask, m);
        for key in [mask, comp] {
            match index.get(&key) {
                Some(&i) => sampled[i].1 += 1.0,
                None => {
                    index.insert(key.clone(), sampled.len());
                    sampled.push((key, 1.0));
                }
            }
        }
    }
    let count: f64 = sampled.iter().map(|(_, c)| c).sum();
    out.extend(sampled.into_iter().map(|(mask, c)| Coalition {
        mask,
        weight: mass_left * c / count,
    }));
    out
}

fn complement(mask: &[u64], m: usize) -> Vec<u64> {
    let mut out: Vec<u64> = mask.iter().map(|w| !w).collect();
    let rem = m % 64;
    if let Some(last) = out.last_mut().filter(|_| rem != 0) {
        *last &= (1u64 << rem) - 1;
    }
    out
}

/// Calls `f` with every `s`-subset of `0..m`, in lexicographic order.
fn for_each_combination(m: usize, s: usize, mut f: impl FnMut(&[usize])) {
    if s > m {
        return;
    }
    let mut c: Vec<usize> = (0..s).collect();
    loop {
        f(&c);
        let Some(i) = (0..s).rev().find(|&i| c[i] != i + m - s) else {
            return;
        };
        c[i] += 1;
        for j in i + 1..s {
            c[j] = c[j - 1] + 1;
        }
    }
}

/// The constrained weighted least squares of the module docs.
fn solve(
    m: usize,
    coalitions: &[Coalition],
    worth: &[f64],
    base: f64,
    delta: f64,
) -> Result<Vec<f64>, ShapError> {
    let p = m - 1;
    let last = m - 1;
    let mut a = vec![0.0; p * p];
    let mut b = vec![0.0; p];
    let mut row = vec![0.0; p];
    for (c, &v) in coalitions.iter().zip(worth) {
        let bit = |k: usize| (c.mask[k / 64] >> (k % 64) & 1) as f64;
        let z_last = bit(last);
        for (k, r) in row.iter_mut().enumerate() {
            *r = bit(k) - z_last;
        }
        let y = v - base - z_last * delta;
        for i in 0..p {
            if row[i] == 0.0 {
                continue;
            }
            let wi = c.weight * row[i];
            b[i] += wi * y;
            for j in 0..=i {
                a[i * p + j] += wi * row[j];
            }
        }
    }
    let phi = match cholesky_solve(&a, &b, p, 0.0) {
        Some(phi) => phi,
        None => {
            let ridge = 1e-10 * (0..p).map(|i| a[i * p + i]).sum::<f64>() / p as f64;
            cholesky_solve(&a, &b, p, ridge.max(f64::MIN_POSITIVE)).ok_or(ShapError::Singular)?
        }
    };
    let mut out = phi;
    let rest: f64 = out.iter().sum();
    out.push(delta - rest);
    Ok(out)
}

/// Solves `(A + ridge·I) x = b` for the symmetric `A` given by its lower triangle; `None`
/// if it is not (numerically) positive definite.
fn cholesky_solve(a: &[f64], b: &[f64], p: usize, ridge: f64) -> Option<Vec<f64>> {
    let mut l = vec![0.0; p * p];
    let scale = (0..p).map(|i| a[i * p + i].abs()).fold(0.0, f64::max);
    for i in 0..p {
        for j in 0..=i {
            let mut sum = a[i * p + j] + if i == j { ridge } else { 0.0 };
            for k in 0..j {
                sum -= l[i * p + k] * l[j * p + k];
            }
            if i == j {
                if sum.is_nan() || sum <= 1e-13 * scale {
                    return None;
                }
                l[i * p + i] = sum.sqrt();
            } else {
                l[i * p + j] = sum / l[j * p + j];
            }
        }
    }
    let mut y = vec![0.0; p];
    for i in 0..p {
        let mut sum = b[i];
        for k in 0..i {
            sum -= l[i * p + k] * y[k];
        }
        y[i] = sum / l[i * p + i];
    }
    let mut x = vec![0.0; p];
    for i in (0..p).rev() {
        let mut sum = y[i];
        for k in i + 1..p {
            sum -= l[k * p + i] * x[k];
        }
        x[i] = sum / l[i * p + i];
    }
    Some(x)
}
