//! Drift between a reference window (the surrogate's training window) and the current
//! one, per feature and for the model's outputs.
//!
//! # Numeric features ([`NumericReference`], [`numeric_drift`])
//!
//! Missing values (NaN) are counted separately and take no part in the statistics.
//!
//! - **Population stability index.** Bins come from the reference window's quantiles:
//!   with `B` bins and the `n` sorted reference values `r₁ ≤ … ≤ rₙ`, the cut points are
//!   `e_k = r_⌈kn/B⌉` for `k = 1 … B−1` (the inverse of the empirical CDF), duplicates
//!   removed (so heavily tied data gets fewer bins). Bins are `(−∞, e₁]`, `(e₁, e₂]`,
//!   …, `(e_last, +∞)`. Every bin but the last holds reference values; the last is empty
//!   in the reference only when at least `n/B` reference values tie at the maximum (a
//!   constant reference, say), and then a current value above all the reference ones
//!   counts as drift. With `R_i` and `C_i` the shares of the reference and current values
//!   in bin `i`, each raised to at least `ε` (an empty bin would otherwise make the
//!   logarithm infinite; the shares are not renormalised):
//!
//!   `PSI = Σ_i (C_i − R_i) · ln(C_i / R_i)`.
//!
//!   Every term is ≥ 0 (the two factors share their sign), so PSI ≥ 0, with 0 exactly
//!   when every bin has the same share. Rules of thumb: < 0.1 stable, 0.1–0.25 moderate
//!   shift, > 0.25 large shift. The default `ε` is 1e-4, so a bin empty on one side
//!   and holding a share `s` on the other adds `(s − ε) ln(s / ε)`, e.g. 0.39 for
//!   `s = 0.05`.
//! - **Kolmogorov–Smirnov.** `D = sup_x |F_ref(x) − F_cur(x)|` over the two empirical
//!   CDFs (ties handled: both CDFs step past a shared value together), and its
//!   asymptotic p-value `Q_KS(√(nm/(n+m)) · D)`, the Kolmogorov limiting distribution
//!   ([`crate::stats::kolmogorov_sf`]; as R's `ks.test(exact = FALSE)` and SciPy's
//!   `kstwobign.sf`). SciPy's `ks_2samp(method="asymp")` gives the same `D` but a
//!   slightly different p-value: it evaluates the exact one-sample distribution
//!   `kstwo.sf(D, round(nm/(n+m)))`, which tends to the same limit as the windows grow
//!   (see `tests/reference.rs`).
//!
//! # Categorical features ([`CategoricalReference`], [`categorical_drift`])
//!
//! Missing levels (`None`) are counted separately. Bins are the levels seen in either
//! window; a level seen only in the current window gets its own bin (its reference
//! share is 0, raised to `ε`), as does a level seen only in the reference.
//!
//! - **PSI over levels**, as above with one bin per level.
//! - **Chi-square test of homogeneity** on the 2 × k table of counts (reference, current)
//!   × levels: `χ² = Σ (O − E)² / E` with `E` from the pooled level shares, `k − 1`
//!   degrees of freedom, p-value `P(χ²_{k−1} > χ²)` (SciPy's
//!   `chi2_contingency(table, correction=False)`). The reference window is itself a
//!   sample, so this two-sample test is the right one rather than a goodness-of-fit test
//!   against fixed reference shares, and an unseen level needs no `ε` here.
//!
//! # Predictions
//!
//! [`prediction_drift`] is the numeric drift of the model's outputs (scores,
//! probabilities); for label outputs use [`categorical_drift`] on the labels.
//!
//! # Cost
//!
//! Each window is sorted once per feature (`O(n log n)`); PSI bins are then counted by
//! binary search (`O(B log n)`) and KS by one merge (`O(n + m)`). A
//! [`NumericReference`] keeps the sorted reference so that a fixed reference window is
//! sorted once, whatever the number of current windows compared with it.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::MonitorError;
use crate::stats::{chi_square_sf, kolmogorov_sf};

/// How drift is measured.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DriftConfig {
    /// Number of PSI bins for numeric features (before tied cut points merge). At least
    /// 2. Default 10.
    pub bins: usize,
    /// Smallest share a PSI bin counts with, in `(0, 1)`. Default 1e-4.
    pub epsilon: f64,
}

impl Default for DriftConfig {
    fn default() -> Self {
        Self {
            bins: 10,
            epsilon: 1e-4,
        }
    }
}

impl DriftConfig {
    /// Checks `bins ≥ 2` and `0 < epsilon < 1`.
    pub fn validate(&self) -> Result<(), MonitorError> {
        if self.bins < 2 {
            return Err(MonitorError::InvalidConfig(
                "drift bins must be at least 2".into(),
            ));
        }
        if !(self.epsilon > 0.0 && self.epsilon < 1.0) {
            return Err(MonitorError::InvalidConfig(
                "drift epsilon must be between 0 and 1".into(),
            ));
        }
        Ok(())
    }
}

/// One PSI bin of a numeric feature.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PsiBin {
    /// The bin's inclusive upper edge; `None` for the last bin (unbounded).
    pub upper_edge: Option<f64>,
    /// Share of the reference values in the bin (before `ε`).
    pub reference: f64,
    /// Share of the current values in the bin (before `ε`).
    pub current: f64,
}

/// The two-sample Kolmogorov–Smirnov test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct KsTest {
    /// `D = sup |F_ref − F_cur|`, in `[0, 1]`.
    pub statistic: f64,
    /// Asymptotic p-value `Q_KS(√(nm/(n+m)) · D)`.
    pub p_value: f64,
    /// When the windows were kept as counts on a grid that does not hold every
    /// reference value (see [`crate::summary::NumericGrid`]), `statistic` is the largest
    /// gap at the grid's points (a lower bound) and this the largest `D` the counts
    /// allow; `None` when `statistic` is exact.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upper_bound: Option<f64>,
}

/// The chi-square test of homogeneity.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ChiSquareTest {
    /// `χ² = Σ (O − E)² / E` over the 2 × k table, ≥ 0. For the same shift in shares it
    /// grows with the window sizes, so compare p-values, not statistics, across windows.
    pub statistic: f64,
    /// Levels − 1.
    pub dof: u64,
    /// `P(χ²_dof > statistic)`, in `[0, 1]`: small means the level shares differ more
    /// than sampling alone explains. Large windows make even a harmless shift
    /// significant; read it together with the PSI, which measures the size of the shift.
    pub p_value: f64,
}

/// Drift of one numeric feature (or of numeric predictions).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NumericDrift {
    /// Non-missing reference values.
    pub reference_count: u64,
    /// Non-missing current values.
    pub current_count: u64,
    /// NaN values in the reference window.
    pub reference_missing: u64,
    /// NaN values in the current window.
    pub current_missing: u64,
    /// `None` when either window has no value.
    pub psi: Option<f64>,
    /// Empty when the reference has no value.
    pub bins: Vec<PsiBin>,
    /// `None` when either window has no value.
    pub ks: Option<KsTest>,
}

/// One level of a categorical feature.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LevelCounts {
    /// The level, as given.
    pub level: String,
    /// Occurrences in the reference window (0 for a level seen only in the current one).
    pub reference: u64,
    /// Occurrences in the current window (0 for a level that has disappeared).
    pub current: u64,
}

/// Drift of one categorical feature.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CategoricalDrift {
    /// Non-missing values in the reference window.
    pub reference_count: u64,
    /// Non-missing values in the current window.
    pub current_count: u64,
    /// `None` values in the reference window, left out of the PSI and the test.
    pub reference_missing: u64,
    /// `None` values in the current window, left out of the PSI and the test.
    pub current_missing: u64,
    /// Reference levels (most frequent first, ties by name), then levels seen only in
    /// the current window (most frequent first, ties by name).
    pub levels: Vec<LevelCounts>,
    /// `None` when either window has no value.
    pub psi: Option<f64>,
    /// `None` when either window has no value or fewer than two levels occur.
    pub chi_square: Option<ChiSquareTest>,
}

/// Drift of a named feature, numeric or categorical.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeatureDrift {
    /// The feature's name.
    pub feature: String,
    /// Its drift; flattened into this object in JSON, with `kind` saying which.
    #[serde(flatten)]
    pub drift: Drift,
}

/// Numeric or categorical drift.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Drift {
    /// A numeric feature (or numeric predictions): PSI over reference-quantile bins and
    /// the KS test.
    Numeric(NumericDrift),
    /// A categorical feature (or label predictions): PSI over levels and the chi-square
    /// test.
    Categorical(CategoricalDrift),
}

impl Drift {
    /// Non-missing values in the reference and in the current window.
    pub fn counts(&self) -> (u64, u64) {
        match self {
            Drift::Numeric(d) => (d.reference_count, d.current_count),
            Drift::Categorical(d) => (d.reference_count, d.current_count),
        }
    }

    /// The PSI, whichever the kind.
    pub fn psi(&self) -> Option<f64> {
        match self {
            Drift::Numeric(d) => d.psi,
            Drift::Categorical(d) => d.psi,
        }
    }
}

/// PSI of two lists of bin counts (same bins), with shares raised to at least `epsilon`.
pub fn psi(reference: &[u64], current: &[u64], epsilon: f64) -> Option<f64> {
    if reference.len() != current.len() {
        return None;
    }
    let nr: u64 = reference.iter().sum();
    let nc: u64 = current.iter().sum();
    if nr == 0 || nc == 0 {
        return None;
    }
    let mut sum = 0.0;
    for (&r, &c) in reference.iter().zip(current) {
        let r = (r as f64 / nr as f64).max(epsilon);
        let c = (c as f64 / nc as f64).max(epsilon);
        sum += (c - r) * (c / r).ln();
    }
    Some(sum.max(0.0))
}

/// A numeric reference window, sorted once, with its PSI cut points.
#[derive(Debug, Clone, PartialEq)]
pub struct NumericReference {
    sorted: Vec<f64>,
    missing: u64,
    edges: Vec<f64>,
    counts: Vec<u64>,
    config: DriftConfig,
}

/// Splits off NaN and sorts the rest.
fn sorted_values(values: &[f64]) -> (Vec<f64>, u64) {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    let missing = (values.len() - v.len()) as u64;
    v.sort_unstable_by(f64::total_cmp);
    (v, missing)
}

/// Counts of a sorted sample in the bins `(−∞, e₁], (e₁, e₂], …, (e_last, ∞)`.
fn bin_counts(sorted: &[f64], edges: &[f64]) -> Vec<u64> {
    let mut out = Vec::with_capacity(edges.len() + 1);
    let mut below = 0usize;
    for &e in edges {
        let upto = sorted.partition_point(|&x| x <= e);
        out.push((upto - below) as u64);
        below = upto;
    }
    out.push((sorted.len() - below) as u64);
    out
}

/// `D = sup |F_a − F_b|` of two sorted, NaN-free samples (both non-empty).
fn ks_statistic(a: &[f64], b: &[f64]) -> f64 {
    let (n, m) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j) = (0usize, 0usize);
    let mut d: f64 = 0.0;
    while i < a.len() && j < b.len() {
        let v = if a[i] <= b[j] { a[i] } else { b[j] };
        while i < a.len() && a[i] <= v {
            i += 1;
        }
        while j < b.len() && b[j] <= v {
            j += 1;
        }
        d = d.max((i as f64 / n - j as f64 / m).abs());
    }
    // Once one sample is exhausted its CDF is 1 and the other's only climbs towards it:
    // the largest gap is already counted.
    d
}

/// The two-sample KS test of two sorted, NaN-free samples.
fn ks_test(a: &[f64], b: &[f64]) -> Option<KsTest> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let d = ks_statistic(a, b);
    let (n, m) = (a.len() as f64, b.len() as f64);
    let en = n * m / (n + m);
    Some(KsTest {
        statistic: d,
        p_value: kolmogorov_sf(en.sqrt() * d),
        upper_bound: None,
    })
}

/// The PSI cut points of sorted values (NaN removed): the `k/bins` quantiles
/// (⌈kn/bins⌉-th value) for k = 1 … bins − 1, without repeats.
pub(crate) fn psi_cuts(sorted: &[f64], bins: usize) -> Vec<f64> {
    let n = sorted.len();
    let mut edges: Vec<f64> = Vec::with_capacity(bins.saturating_sub(1));
    if n > 0 {
        for k in 1..bins {
            // ⌈kn/B⌉ − 1 (0-based), in integers.
            let idx = (k.saturating_mul(n)).div_ceil(bins).max(1) - 1;
            let e = sorted[idx.min(n - 1)];
            if edges.last() != Some(&e) {
                edges.push(e);
            }
        }
    }
    edges
}

/// The PSI bins and the PSI of reference and current counts per bin (`edges`: each
/// bin's inclusive upper edge but the last's). The reference must not be empty.
pub(crate) fn psi_bins(
    edges: &[f64],
    reference: &[u64],
    current: &[u64],
    epsilon: f64,
) -> (Vec<PsiBin>, Option<f64>) {
    let nr: u64 = reference.iter().sum();
    let nc: u64 = current.iter().sum();
    let bins = reference
        .iter()
        .zip(current)
        .enumerate()
        .map(|(i, (&r, &c))| PsiBin {
            upper_edge: edges.get(i).copied(),
            reference: r as f64 / nr as f64,
            current: if nc == 0 { 0.0 } else { c as f64 / nc as f64 },
        })
        .collect();
    (bins, psi(reference, current, epsilon))
}

impl NumericReference {
    /// Sorts the reference values (NaN counted as missing) and fixes the PSI cut points.
    pub fn new(values: &[f64], config: &DriftConfig) -> Result<Self, MonitorError> {
        config.validate()?;
        let (sorted, missing) = sorted_values(values);
        let n = sorted.len();
        let edges = psi_cuts(&sorted, config.bins);
        let counts = if n > 0 {
            bin_counts(&sorted, &edges)
        } else {
            Vec::new()
        };
        Ok(Self {
            sorted,
            missing,
            edges,
            counts,
            config: *config,
        })
    }

    /// The PSI cut points (the bins' inclusive upper edges but the last).
    pub fn edges(&self) -> &[f64] {
        &self.edges
    }

    /// Non-missing reference values.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// Whether the reference has no non-missing value.
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// Compares a current window with this reference (sorts a copy of `current`).
    pub fn compare(&self, current: &[f64]) -> NumericDrift {
        let (sorted, missing) = sorted_values(current);
        self.compare_sorted(&sorted, missing)
    }

    fn compare_sorted(&self, current: &[f64], current_missing: u64) -> NumericDrift {
        let (nr, nc) = (self.sorted.len(), current.len());
        let (bins, psi_value) = if nr == 0 {
            (Vec::new(), None)
        } else {
            let cur = bin_counts(current, &self.edges);
            psi_bins(&self.edges, &self.counts, &cur, self.config.epsilon)
        };
        NumericDrift {
            reference_count: nr as u64,
            current_count: nc as u64,
            reference_missing: self.missing,
            current_missing,
            psi: psi_value,
            bins,
            ks: ks_test(&self.sorted, current),
        }
    }
}

/// Drift of a numeric feature between two windows (NaN = missing). Sorts each window
/// once; to compare many windows with one reference, build a [`NumericReference`].
pub fn numeric_drift(
    reference: &[f64],
    current: &[f64],
    config: &DriftConfig,
) -> Result<NumericDrift, MonitorError> {
    Ok(NumericReference::new(reference, config)?.compare(current))
}

/// Drift of the model's numeric outputs: [`numeric_drift`] over predictions.
pub fn prediction_drift(
    reference: &[f64],
    current: &[f64],
    config: &DriftConfig,
) -> Result<NumericDrift, MonitorError> {
    numeric_drift(reference, current, config)
}

/// A categorical reference window's level counts.
#[derive(Debug, Clone, PartialEq)]
pub struct CategoricalReference {
    /// Levels most frequent first, ties by name.
    levels: Vec<(String, u64)>,
    index: HashMap<String, usize>,
    count: u64,
    missing: u64,
    config: DriftConfig,
}

impl CategoricalReference {
    /// Counts the reference levels (`None` counted as missing).
    pub fn new<S: AsRef<str>>(
        values: &[Option<S>],
        config: &DriftConfig,
    ) -> Result<Self, MonitorError> {
        config.validate()?;
        let mut counts: HashMap<&str, u64> = HashMap::new();
        let mut missing = 0u64;
        for v in values {
            match v {
                Some(s) => *counts.entry(s.as_ref()).or_insert(0) += 1,
                None => missing += 1,
            }
        }
        Self::from_counts(counts, missing, config)
    }

    /// A reference from level counts kept elsewhere (`missing` values had no level).
    pub fn from_counts<S: AsRef<str>>(
        counts: impl IntoIterator<Item = (S, u64)>,
        missing: u64,
        config: &DriftConfig,
    ) -> Result<Self, MonitorError> {
        config.validate()?;
        let mut merged: HashMap<String, u64> = HashMap::new();
        for (level, n) in counts {
            if n > 0 {
                *merged.entry(level.as_ref().to_owned()).or_insert(0) += n;
            }
        }
        // Most frequent first, ties by name.
        let mut levels: Vec<(String, u64)> = merged.into_iter().collect();
        levels.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let index = levels
            .iter()
            .enumerate()
            .map(|(i, (l, _))| (l.clone(), i))
            .collect();
        Ok(Self {
            count: levels.iter().map(|(_, n)| n).sum(),
            levels,
            index,
            missing,
            config: *config,
        })
    }

    /// The reference's levels with their counts, most frequent first: with
    /// [`missing`](Self::missing), what [`from_counts`](Self::from_counts) makes the
    /// same reference from again.
    pub fn levels(&self) -> &[(String, u64)] {
        &self.levels
    }

    /// Reference values that were missing.
    pub fn missing(&self) -> u64 {
        self.missing
    }

    /// Compares a current window kept as level counts with this reference: the same
    /// result as [`CategoricalReference::compare`] over the values counted. A level may
    /// be listed more than once (counts of several windows): its counts add.
    pub fn compare_counts<S: AsRef<str>>(
        &self,
        current: impl IntoIterator<Item = (S, u64)>,
        missing: u64,
    ) -> CategoricalDrift {
        let mut seen = vec![0u64; self.levels.len()];
        let mut unseen: HashMap<String, u64> = HashMap::new();
        for (level, n) in current {
            if n == 0 {
                continue;
            }
            match self.index.get(level.as_ref()) {
                Some(&i) => seen[i] += n,
                None => *unseen.entry(level.as_ref().to_owned()).or_insert(0) += n,
            }
        }
        let unseen: Vec<(&str, u64)> = unseen.iter().map(|(l, n)| (l.as_str(), *n)).collect();
        self.drift(&seen, unseen, missing)
    }

    /// Compares a current window with this reference.
    pub fn compare<S: AsRef<str>>(&self, current: &[Option<S>]) -> CategoricalDrift {
        let mut seen = vec![0u64; self.levels.len()];
        let mut unseen: HashMap<&str, u64> = HashMap::new();
        let mut missing = 0u64;
        for v in current {
            match v {
                None => missing += 1,
                Some(s) => match self.index.get(s.as_ref()) {
                    Some(&i) => seen[i] += 1,
                    None => *unseen.entry(s.as_ref()).or_insert(0) += 1,
                },
            }
        }
        let unseen: Vec<(&str, u64)> = unseen.into_iter().collect();
        self.drift(&seen, unseen, missing)
    }

    fn drift(&self, seen: &[u64], mut unseen: Vec<(&str, u64)>, missing: u64) -> CategoricalDrift {
        unseen.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        let current_count = seen.iter().sum::<u64>() + unseen.iter().map(|(_, n)| n).sum::<u64>();
        let levels: Vec<LevelCounts> = self
            .levels
            .iter()
            .zip(seen)
            .map(|((l, r), &c)| LevelCounts {
                level: l.clone(),
                reference: *r,
                current: c,
            })
            .chain(unseen.iter().map(|(l, c)| LevelCounts {
                level: (*l).to_owned(),
                reference: 0,
                current: *c,
            }))
            .collect();
        let r: Vec<u64> = levels.iter().map(|l| l.reference).collect();
        let c: Vec<u64> = levels.iter().map(|l| l.current).collect();
        CategoricalDrift {
            reference_count: self.count,
            current_count,
            reference_missing: self.missing,
            current_missing: missing,
            psi: psi(&r, &c, self.config.epsilon),
            chi_square: chi_square_homogeneity(&r, &c),
            levels,
        }
    }
}

/// Drift of a categorical feature between two windows (`None` = missing).
pub fn categorical_drift<S: AsRef<str>, T: AsRef<str>>(
    reference: &[Option<S>],
    current: &[Option<T>],
    config: &DriftConfig,
) -> Result<CategoricalDrift, MonitorError> {
    Ok(CategoricalReference::new(reference, config)?.compare(current))
}

/// The chi-square test of homogeneity of two rows of counts over the same levels
/// (levels empty in both rows are left out). `None` when a row is empty or fewer than
/// two levels occur.
pub fn chi_square_homogeneity(reference: &[u64], current: &[u64]) -> Option<ChiSquareTest> {
    if reference.len() != current.len() {
        return None;
    }
    let nr: u64 = reference.iter().sum();
    let nc: u64 = current.iter().sum();
    if nr == 0 || nc == 0 {
        return None;
    }
    let n = (nr + nc) as f64;
    let (fr, fc) = (nr as f64 / n, nc as f64 / n);
    let mut stat = 0.0;
    let mut levels = 0u64;
    for (&r, &c) in reference.iter().zip(current) {
        let total = (r + c) as f64;
        if total == 0.0 {
            continue;
        }
        levels += 1;
        let (er, ec) = (total * fr, total * fc);
        stat += (r as f64 - er).powi(2) / er + (c as f64 - ec).powi(2) / ec;
    }
    let dof = levels.checked_sub(1).filter(|&d| d > 0)?;
    Some(ChiSquareTest {
        statistic: stat,
        dof,
        p_value: chi_square_sf(stat, dof)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn quantile_bins_by_hand() {
        // Reference 1..=10, 4 bins: cut points r_⌈10k/4⌉ = r₃, r₅, r₈ = 3, 5, 8.
        // Bins (−∞,3] (3,5] (5,8] (8,∞) hold 3, 2, 3, 2 reference values.
        let reference: Vec<f64> = (1..=10).map(f64::from).collect();
        let config = DriftConfig {
            bins: 4,
            epsilon: 1e-4,
        };
        let r = NumericReference::new(&reference, &config).unwrap();
        assert_eq!(r.edges(), &[3.0, 5.0, 8.0]);
        // Current: 1, 2, 4, 6, 7, 9, 9, 9, NaN, 11 → bins 2, 1, 2, 4 (9 values, 1 NaN).
        // Shares R = .3 .2 .3 .2, C = 2/9 1/9 2/9 4/9;
        // PSI = (2/9−.3) ln((2/9)/.3) + (1/9−.2) ln((1/9)/.2)
        //     + (2/9−.3) ln((2/9)/.3) + (4/9−.2) ln((4/9)/.2)
        //     = 0.023341 + 0.052248 + 0.023341 + 0.195191 = 0.294121
        let current = [1.0, 2.0, 4.0, 6.0, 7.0, 9.0, 9.0, 9.0, f64::NAN, 11.0];
        let d = r.compare(&current);
        assert_eq!((d.current_count, d.current_missing), (9, 1));
        let shares: Vec<f64> = d.bins.iter().map(|b| b.current).collect();
        assert_eq!(shares, vec![2.0 / 9.0, 1.0 / 9.0, 2.0 / 9.0, 4.0 / 9.0]);
        assert_eq!(d.bins[3].upper_edge, None);
        let expected = 2.0 * (2.0 / 9.0 - 0.3) * ((2.0 / 9.0) / 0.3f64).ln()
            + (1.0 / 9.0 - 0.2) * ((1.0 / 9.0) / 0.2f64).ln()
            + (4.0 / 9.0 - 0.2) * ((4.0 / 9.0) / 0.2f64).ln();
        assert!(close(d.psi.unwrap(), expected, 1e-12));
        assert!(close(expected, 0.294_121, 1e-6), "{expected}");
        // KS: F_ref − F_cur at x = 1,2,3,4,…: the largest gap is at x = 8 (8/10 − 5/9
        // = 0.244444) vs at x = 9 (9/10 − 8/9 = 0.011): D = 0.244444…
        let ks = d.ks.unwrap();
        assert!(close(ks.statistic, 0.8 - 5.0 / 9.0, 1e-15), "{ks:?}");
        // p = Q_KS(√(90/19) · 0.244444) = Q_KS(0.532021)
        let lambda = (90.0f64 / 19.0).sqrt() * (0.8 - 5.0 / 9.0);
        assert!(close(ks.p_value, kolmogorov_sf(lambda), 0.0));
    }

    #[test]
    fn empty_bins_use_epsilon() {
        // Reference all ≤ 0, current all in the top bin: R = (1, 0), C = (0, 1) raised
        // to ε: PSI = 2 (1 − ε) ln(1/ε) = 2 · 0.9999 · 9.210340 = 18.418839.
        let config = DriftConfig {
            bins: 2,
            epsilon: 1e-4,
        };
        let d = numeric_drift(&[0.0, 0.0, 0.0], &[1.0, 2.0], &config).unwrap();
        assert_eq!(d.bins.len(), 2);
        assert!(close(d.psi.unwrap(), 2.0 * 0.9999 * (1e4f64).ln(), 1e-12));
        assert_eq!(d.ks.unwrap().statistic, 1.0);
    }

    #[test]
    fn ties_merge_cut_points() {
        // Ten 5s and one 6: every cut point is 5, so two bins.
        let mut reference = vec![5.0; 10];
        reference.push(6.0);
        let r = NumericReference::new(&reference, &DriftConfig::default()).unwrap();
        assert_eq!(r.edges(), &[5.0]);
        let d = r.compare(&reference);
        assert_eq!(d.psi, Some(0.0));
        assert_eq!(d.ks.unwrap().statistic, 0.0);
        assert_eq!(d.ks.unwrap().p_value, 1.0);
    }

    #[test]
    fn ks_with_ties_by_hand() {
        // a = 1 2 2 3, b = 2 2 2 4:
        //   x=1: F_a = 1/4, F_b = 0     → .25
        //   x=2: F_a = 3/4, F_b = 3/4   → 0
        //   x=3: F_a = 1,   F_b = 3/4   → .25
        //   x=4: 1, 1                   → 0
        // D = 0.25.
        assert_eq!(
            ks_statistic(&[1.0, 2.0, 2.0, 3.0], &[2.0, 2.0, 2.0, 4.0]),
            0.25
        );
        assert_eq!(ks_statistic(&[1.0], &[2.0]), 1.0);
    }

    #[test]
    fn missing_and_empty_windows() {
        let d = numeric_drift(&[f64::NAN, f64::NAN], &[1.0], &DriftConfig::default()).unwrap();
        assert_eq!(d.reference_missing, 2);
        assert_eq!(d.psi, None);
        assert_eq!(d.ks, None);
        assert!(d.bins.is_empty());
        // Two reference values, 10 bins: cut points r_⌈2k/10⌉ are 1 (k ≤ 5) and 2, so
        // bins (−∞, 1], (1, 2], (2, ∞), the last empty in the reference.
        let d = numeric_drift(&[1.0, 2.0], &[], &DriftConfig::default()).unwrap();
        assert_eq!(d.psi, None);
        assert_eq!(d.ks, None);
        assert_eq!(d.bins.len(), 3);
        assert_eq!(d.bins[2].reference, 0.0);
        let bad = DriftConfig {
            bins: 1,
            ..Default::default()
        };
        assert!(numeric_drift(&[1.0], &[1.0], &bad).is_err());
        let bad = DriftConfig {
            epsilon: 0.0,
            ..Default::default()
        };
        assert!(numeric_drift(&[1.0], &[1.0], &bad).is_err());
    }

    #[test]
    fn categorical_by_hand() {
        // Reference: a ×5, b ×3, c ×2, one missing. Current: a ×3, b ×3, d ×4, two missing.
        // Levels: a, b, c (reference order), then d (unseen).
        // Shares R = .5 .3 .2 0→ε, C = .3 .3 0→ε .4 (ε = 1e-4):
        //   PSI = (.3−.5) ln(.3/.5) + 0 + (ε−.2) ln(ε/.2) + (.4−ε) ln(.4/ε)
        //       = 0.102165 + 1.519420 + 3.316790 = 4.938376
        // Chi-square 2 × 4 table, n = 20, row totals 10 and 10, so every expected count
        // is half the level total: a 4, b 3, c 1, d 2 (each row).
        //   χ² = 2·[(5−4)²/4 + 0 + (2−1)²/1 + (0−2)²/2] = 2·(0.25 + 1 + 2) = 6.5, dof 3.
        let reference = [
            Some("a"),
            Some("a"),
            Some("a"),
            Some("a"),
            Some("a"),
            Some("b"),
            Some("b"),
            Some("b"),
            Some("c"),
            Some("c"),
            None,
        ];
        let current = [
            Some("a"),
            Some("a"),
            Some("a"),
            Some("b"),
            Some("b"),
            Some("b"),
            Some("d"),
            Some("d"),
            Some("d"),
            Some("d"),
            None,
            None,
        ];
        let config = DriftConfig::default();
        let d = categorical_drift(&reference, &current, &config).unwrap();
        assert_eq!((d.reference_count, d.reference_missing), (10, 1));
        assert_eq!((d.current_count, d.current_missing), (10, 2));
        let names: Vec<&str> = d.levels.iter().map(|l| l.level.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "d"]);
        let eps = 1e-4f64;
        let expected = (0.3 - 0.5) * (0.3f64 / 0.5).ln()
            + (eps - 0.2) * (eps / 0.2).ln()
            + (0.4 - eps) * (0.4 / eps).ln();
        assert!(close(d.psi.unwrap(), expected, 1e-12));
        assert!(close(expected, 4.938_376, 1e-6), "{expected}");
        let chi = d.chi_square.unwrap();
        assert!(close(chi.statistic, 6.5, 1e-12));
        assert_eq!(chi.dof, 3);
        // P(χ²₃ > 6.5) = 0.089663 (SciPy: 0.08966250398816791).
        assert!(
            close(chi.p_value, 0.089_662_503_988_167_91, 1e-12),
            "{chi:?}"
        );
        let json = serde_json::to_value(FeatureDrift {
            feature: "housing".into(),
            drift: Drift::Categorical(d),
        })
        .unwrap();
        assert_eq!(json["kind"], "categorical");
        assert_eq!(json["levels"][3]["level"], "d");
    }

    #[test]
    fn single_level_has_no_chi_square() {
        let d = categorical_drift(
            &[Some("a")],
            &[Some("a"), Some("a")],
            &DriftConfig::default(),
        )
        .unwrap();
        assert_eq!(d.psi, Some(0.0));
        assert_eq!(d.chi_square, None);
    }
}
