//! Mergeable summaries of a window: what a monitor keeps as rows arrive and leave, so
//! that a computation reads counts and sums instead of every row, and so that the
//! summaries of several windows (the replicas of a fleet) merge by adding.
//!
//! - **Numeric drift** ([`NumericGrid`], [`Histogram`]): the reference fixes a grid of
//!   cut points — every distinct reference value when there are at most
//!   [`NumericGrid::MAX_POINTS`], else that many reference quantiles plus the PSI cut
//!   points. A value falls in one of `2P + 1` cells: strictly between two cut points,
//!   on a cut point, or above the last. Both windows are kept as counts per cell.
//!   - PSI is exact: its bins are unions of cells (its cut points are grid points), so
//!     [`NumericGrid::drift`] gives the figure [`crate::drift::numeric_drift`] gives over
//!     the same values.
//!   - Kolmogorov–Smirnov: both CDFs are known exactly at every cell's end. Inside a
//!     cell between two cut points each CDF only climbs, so the largest gap there is at
//!     most `max(|R_start − C_end|, |R_end − C_start|)`. `statistic` is the largest gap
//!     at cell ends (never more than the true `D`), `upper_bound` the largest the cells
//!     allow. When the grid holds every reference value, no reference value lies inside
//!     a cell, the two coincide and `D` is exact (`upper_bound` is `None`); else the
//!     gap is at most the reference share of one cell, about `1 / MAX_POINTS`, plus
//!     what the current window piles into it.
//! - **Fairness** counts: [`crate::fairness::GroupCounts`].
//! - **Attributions** ([`AttributionSums`]): per feature, the sum of |contribution| in
//!   fixed point (exact to 2⁻³² of a unit, so that taking a row out undoes adding it
//!   bit for bit, in any order) and the count of rows where it is a number.

use serde::{Deserialize, Serialize};

use crate::MonitorError;
use crate::attribution::{AttributionSummary, protected_flags, summary_of_means};
use crate::drift::{DriftConfig, KsTest, NumericDrift, psi_bins, psi_cuts};
use crate::stats::kolmogorov_sf;

/// The cut points of a numeric feature's reference, and where its PSI bins end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NumericGrid {
    points: Vec<f64>,
    /// Indices into `points` of the PSI cut points, in order.
    psi_edges: Vec<usize>,
    /// Every distinct reference value is a point: KS is exact.
    exact: bool,
}

impl NumericGrid {
    /// The most cut points a grid keeps.
    pub const MAX_POINTS: usize = 4096;

    /// The grid of a reference's values (NaN is missing and ignored). The PSI cut
    /// points are those of [`crate::drift::NumericReference`].
    pub fn new(values: &[f64], config: &DriftConfig) -> Result<Self, MonitorError> {
        Self::from_values(values.to_vec(), config)
    }

    /// As [`NumericGrid::new`], sorting `values` in place rather than a copy of them.
    pub fn from_values(mut values: Vec<f64>, config: &DriftConfig) -> Result<Self, MonitorError> {
        config.validate()?;
        values.retain(|x| !x.is_nan());
        values.sort_unstable_by(f64::total_cmp);
        let sorted = values;
        let n = sorted.len();
        let quantile = |k: usize, of: usize| sorted[(k.saturating_mul(n).div_ceil(of)).max(1) - 1];
        let psi_cuts = psi_cuts(&sorted, config.bins);
        // -0.0 and 0.0 compare equal: one point for both.
        let mut distinct: Vec<f64> = Vec::new();
        for &x in &sorted {
            if distinct.last() != Some(&x) {
                if distinct.len() == Self::MAX_POINTS {
                    distinct.clear();
                    break;
                }
                distinct.push(x);
            }
        }
        let (points, exact) = if !distinct.is_empty() || n == 0 {
            (distinct, true)
        } else {
            let mut points: Vec<f64> = (1..=Self::MAX_POINTS)
                .map(|k| quantile(k, Self::MAX_POINTS))
                .chain(psi_cuts.iter().copied())
                .collect();
            points.sort_unstable_by(f64::total_cmp);
            points.dedup_by(|a, b| a == b);
            (points, false)
        };
        let psi_edges = psi_cuts
            .iter()
            .filter_map(|e| points.iter().position(|p| p == e))
            .collect();
        Ok(Self {
            points,
            psi_edges,
            exact,
        })
    }

    /// Each cut point with its count in `h`, when the grid holds every value of the
    /// reference it was made from (so `h`, that reference's histogram, has nothing
    /// between points); `None` otherwise.
    pub fn point_counts<'a>(
        &'a self,
        h: &'a Histogram,
    ) -> Option<impl Iterator<Item = (f64, u64)> + 'a> {
        let between: u64 = h.counts.iter().step_by(2).sum();
        (self.exact && between == 0 && h.counts.len() == self.cells()).then(|| {
            self.points
                .iter()
                .enumerate()
                .map(|(i, &x)| (x, h.counts[2 * i + 1]))
        })
    }

    /// Whether the grid is one [`NumericGrid::from_values`] can make: points ascending
    /// without repeats or NaN, PSI edges ascending among them. One read from elsewhere
    /// (a fleet's shared reference) is checked before it is counted on.
    pub fn is_valid(&self) -> bool {
        self.points.iter().all(|x| !x.is_nan())
            && self.points.windows(2).all(|w| w[0] < w[1])
            && self.psi_edges.windows(2).all(|w| w[0] < w[1])
            && self.psi_edges.iter().all(|&e| e < self.points.len())
    }

    /// How many cells a histogram on this grid has.
    pub fn cells(&self) -> usize {
        2 * self.points.len() + 1
    }

    /// The cell of a value; `None` for NaN (missing).
    pub fn cell(&self, x: f64) -> Option<usize> {
        if x.is_nan() {
            return None;
        }
        let i = self.points.partition_point(|&p| p < x);
        Some(if self.points.get(i) == Some(&x) {
            2 * i + 1
        } else {
            2 * i
        })
    }

    /// An empty histogram on this grid.
    pub fn histogram(&self) -> Histogram {
        Histogram {
            counts: vec![0; self.cells()],
            missing: 0,
        }
    }

    /// Counts `values` on this grid.
    pub fn count(&self, values: impl IntoIterator<Item = f64>) -> Histogram {
        let mut h = self.histogram();
        for x in values {
            h.add(self.cell(x), 1);
        }
        h
    }

    /// Drift between two histograms on this grid (see the module docs).
    pub fn drift(
        &self,
        reference: &Histogram,
        current: &Histogram,
        config: &DriftConfig,
    ) -> NumericDrift {
        let nr: u64 = reference.counts.iter().sum();
        let nc: u64 = current.counts.iter().sum();
        // PSI bins: cells up to and including each PSI cut point's own cell.
        let mut ref_bins = Vec::with_capacity(self.psi_edges.len() + 1);
        let mut cur_bins = Vec::with_capacity(self.psi_edges.len() + 1);
        let mut from = 0usize;
        for &e in &self.psi_edges {
            let to = 2 * e + 2;
            ref_bins.push(sum(&reference.counts, from, to));
            cur_bins.push(sum(&current.counts, from, to));
            from = to;
        }
        ref_bins.push(sum(&reference.counts, from, self.cells()));
        cur_bins.push(sum(&current.counts, from, self.cells()));
        let (bins, psi_value) = if nr == 0 {
            (Vec::new(), None)
        } else {
            let edges: Vec<f64> = self
                .psi_edges
                .iter()
                .filter_map(|&e| self.points.get(e).copied())
                .collect();
            psi_bins(&edges, &ref_bins, &cur_bins, config.epsilon)
        };
        NumericDrift {
            reference_count: nr,
            current_count: nc,
            reference_missing: reference.missing,
            current_missing: current.missing,
            psi: psi_value,
            bins,
            ks: self.ks(reference, current, nr, nc),
        }
    }

    fn ks(&self, reference: &Histogram, current: &Histogram, nr: u64, nc: u64) -> Option<KsTest> {
        if nr == 0 || nc == 0 {
            return None;
        }
        let (n, m) = (nr as f64, nc as f64);
        let (mut r, mut c) = (0u64, 0u64);
        let (mut lower, mut upper) = (0.0f64, 0.0f64);
        for (&dr, &dc) in reference.counts.iter().zip(&current.counts) {
            let (r0, c0) = (r as f64 / n, c as f64 / m);
            r += dr;
            c += dc;
            let (r1, c1) = (r as f64 / n, c as f64 / m);
            lower = lower.max((r1 - c1).abs());
            upper = upper.max((r0 - c1).abs()).max((r1 - c0).abs());
        }
        // Inside a point cell both CDFs jump at the one value: no gap between its ends.
        // Only cells between points (even indices) can hide a larger one, and only if
        // they hold reference values, which an exact grid's never do.
        let upper = if self.exact { lower } else { upper.max(lower) };
        let en = n * m / (n + m);
        Some(KsTest {
            statistic: lower,
            p_value: kolmogorov_sf(en.sqrt() * lower),
            upper_bound: (upper > lower).then_some(upper),
        })
    }
}

fn sum(counts: &[u64], from: usize, to: usize) -> u64 {
    counts
        .get(from..to.min(counts.len()))
        .map_or(0, |c| c.iter().sum())
}

/// Counts per cell of a [`NumericGrid`], and the missing values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Histogram {
    /// One count per cell.
    pub counts: Vec<u64>,
    /// Values that were missing (NaN).
    pub missing: u64,
}

impl Histogram {
    /// Counts `n` values of cell `cell` (`None`: missing) in; [`Histogram::remove`]
    /// takes them out.
    pub fn add(&mut self, cell: Option<usize>, n: u64) {
        match cell.and_then(|c| self.counts.get_mut(c)) {
            Some(slot) => *slot += n,
            None => self.missing += n,
        }
    }

    /// Takes values counted by [`Histogram::add`] out (never below zero).
    pub fn remove(&mut self, cell: Option<usize>, n: u64) {
        match cell.and_then(|c| self.counts.get_mut(c)) {
            Some(slot) => *slot = slot.saturating_sub(n),
            None => self.missing = self.missing.saturating_sub(n),
        }
    }

    /// Adds another window's histogram on the same grid; `false` (and nothing added)
    /// when the grids differ in size.
    pub fn merge(&mut self, other: &Self) -> bool {
        if other.counts.len() != self.counts.len() {
            return false;
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.missing += other.missing;
        true
    }
}

/// Sums of |contribution| per feature, kept exactly (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributionSums {
    /// Rows of attributions counted.
    pub rows: u64,
    /// Per feature, Σ |contribution| in units of 2⁻³², over the rows where it is a
    /// number (as decimal text when serialised: JSON numbers cannot hold it).
    #[serde(with = "fixed_text")]
    pub abs: Vec<i128>,
    /// Per feature, the rows where it is a number.
    pub counts: Vec<u64>,
}

const FIXED_SCALE: f64 = 4_294_967_296.0; // 2³²

/// The largest |contribution| counted, 2⁶⁸ (about 3·10²⁰), so that 2²⁷ rows of it
/// cannot overflow the sum; a larger one counts as this (and, like every value, leaves
/// exactly as it came).
const FIXED_MAX: f64 = 295_147_905_179_352_825_856.0 * FIXED_SCALE; // 2⁶⁸ · 2³²

fn fixed(x: f64) -> i128 {
    (x.abs() * FIXED_SCALE).round().min(FIXED_MAX) as i128
}

impl AttributionSums {
    /// Empty sums for `features` features.
    pub fn new(features: usize) -> Self {
        Self {
            rows: 0,
            abs: vec![0; features],
            counts: vec![0; features],
        }
    }

    /// Counts a row of contributions in (`sign = 1`) or out (`sign = -1`); a row of
    /// another width is ignored. NaN and infinite cells are left out of their feature;
    /// |contribution| counts up to 2⁶⁸.
    pub fn count(&mut self, row: impl ExactSizeIterator<Item = f64>, sign: i8) {
        if row.len() != self.abs.len() {
            return;
        }
        let add = sign >= 0;
        self.rows = if add {
            self.rows + 1
        } else {
            self.rows.saturating_sub(1)
        };
        for ((sum, n), c) in self.abs.iter_mut().zip(&mut self.counts).zip(row) {
            // Infinite contributions (a degenerate surrogate) are left out like NaN.
            if !c.is_finite() {
                continue;
            }
            // Wrapping arithmetic undoes exactly whatever order rows come and go in.
            if add {
                *sum = sum.wrapping_add(fixed(c));
                *n += 1;
            } else {
                *sum = sum.wrapping_sub(fixed(c));
                *n = n.saturating_sub(1);
            }
        }
    }

    /// Adds another window's sums over the same features; `false` (and nothing added)
    /// when they differ in width.
    pub fn merge(&mut self, other: &Self) -> bool {
        if other.abs.len() != self.abs.len() {
            return false;
        }
        self.rows += other.rows;
        for (a, b) in self.abs.iter_mut().zip(&other.abs) {
            *a = a.wrapping_add(*b);
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        true
    }

    /// The summary [`crate::attribution::attribution_summary`] gives over the rows
    /// counted (means to within 2⁻³² of a unit).
    pub fn summary(
        &self,
        features: &[impl AsRef<str>],
        protected: &[impl AsRef<str>],
    ) -> Result<AttributionSummary, MonitorError> {
        if features.len() != self.abs.len() {
            return Err(MonitorError::RowLength {
                row: 0,
                found: self.abs.len(),
                expected: features.len(),
            });
        }
        let (names, is_protected) = protected_flags(features, protected)?;
        let means: Vec<f64> = self
            .abs
            .iter()
            .zip(&self.counts)
            .map(|(&s, &n)| {
                if n == 0 {
                    0.0
                } else {
                    s as f64 / FIXED_SCALE / n as f64
                }
            })
            .collect();
        Ok(summary_of_means(&names, &is_protected, self.rows, &means))
    }
}

mod fixed_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[i128], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(ToString::to_string))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<i128>, D::Error> {
        let texts: Vec<String> = Vec::deserialize(d)?;
        texts
            .iter()
            .map(|t| t.parse::<i128>().map_err(serde::de::Error::custom))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::numeric_drift;
    use proptest::prelude::*;

    fn config() -> DriftConfig {
        DriftConfig::default()
    }

    proptest! {
        /// With few distinct reference values the grid holds them all: PSI, its bins
        /// and KS equal what the sorted windows give.
        #[test]
        fn binned_drift_equals_the_sorted_windows_on_an_exact_grid(
            reference in prop::collection::vec(prop_oneof![9 => (0u8..40).prop_map(f64::from), 1 => Just(f64::NAN)], 1..300),
            current in prop::collection::vec(prop_oneof![9 => (0u8..60).prop_map(|x| f64::from(x) - 10.5 * f64::from(x % 2)), 1 => Just(f64::NAN)], 0..300),
        ) {
            let grid = NumericGrid::new(&reference, &config()).unwrap();
            let counted = grid.count(reference.iter().copied());
            // Each reference value is a point, with its own count.
            let points: Vec<(f64, u64)> = grid.point_counts(&counted).unwrap().collect();
            for (x, n) in &points {
                prop_assert_eq!(*n, reference.iter().filter(|v| *v == x).count() as u64);
            }
            let binned = grid.drift(&counted, &grid.count(current.iter().copied()), &config());
            let sorted = numeric_drift(&reference, &current, &config()).unwrap();
            prop_assert_eq!(binned.psi, sorted.psi);
            prop_assert_eq!(&binned.bins, &sorted.bins);
            prop_assert_eq!(binned.reference_missing, sorted.reference_missing);
            prop_assert_eq!(binned.current_count, sorted.current_count);
            match (binned.ks, sorted.ks) {
                (Some(b), Some(s)) => {
                    prop_assert!((b.statistic - s.statistic).abs() < 1e-12, "{} vs {}", b.statistic, s.statistic);
                    prop_assert_eq!(b.upper_bound, None);
                }
                (b, s) => prop_assert_eq!(b.is_none(), s.is_none()),
            }
        }

        /// With more distinct values than the grid keeps, PSI stays exact and the true
        /// KS statistic lies between `statistic` and `upper_bound`.
        #[test]
        fn a_coarse_grid_keeps_psi_exact_and_bounds_ks(
            seed in any::<u64>(),
            shift in -2.0f64..2.0,
            n in 4097usize..6000,
            m in 1usize..3000,
        ) {
            let mut state = seed | 1;
            let mut next = || {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17;
                (state >> 11) as f64 / (1u64 << 53) as f64
            };
            let reference: Vec<f64> = (0..n).map(|_| next() * 10.0).collect();
            let current: Vec<f64> = (0..m).map(|_| next() * 10.0 + shift).collect();
            let grid = NumericGrid::new(&reference, &config()).unwrap();
            prop_assert!(!grid.exact);
            prop_assert!(grid.point_counts(&grid.count(reference.iter().copied())).is_none());
            let binned = grid.drift(&grid.count(reference.iter().copied()), &grid.count(current.iter().copied()), &config());
            let sorted = numeric_drift(&reference, &current, &config()).unwrap();
            prop_assert_eq!(binned.psi, sorted.psi);
            prop_assert_eq!(&binned.bins, &sorted.bins);
            let (b, s) = (binned.ks.unwrap(), sorted.ks.unwrap());
            let upper = b.upper_bound.unwrap_or(b.statistic);
            prop_assert!(b.statistic <= s.statistic + 1e-12 && s.statistic <= upper + 1e-12,
                "{} <= {} <= {}", b.statistic, s.statistic, upper);
        }

        /// Adding rows and taking them out again, in any order, leaves the sums exactly
        /// as if they had never been counted; merged halves equal the whole.
        #[test]
        fn attribution_sums_undo_and_merge_exactly(
            rows in prop::collection::vec(prop::collection::vec(prop_oneof![9 => -1e3f64..1e3, 1 => Just(f64::NAN)], 3), 1..60),
            split in 0usize..60,
        ) {
            let mut all = AttributionSums::new(3);
            for r in &rows { all.count(r.iter().copied(), 1); }
            let split = split.min(rows.len());
            let (mut a, mut b) = (AttributionSums::new(3), AttributionSums::new(3));
            for r in &rows[..split] { a.count(r.iter().copied(), 1); }
            for r in &rows[split..] { b.count(r.iter().copied(), 1); }
            prop_assert!(a.merge(&b));
            prop_assert_eq!(&a, &all);
            for r in rows.iter().rev() { all.count(r.iter().copied(), -1); }
            prop_assert_eq!(all, AttributionSums::new(3));
        }
    }

    #[test]
    fn sums_give_the_same_summary_as_the_rows() {
        let rows = vec![
            vec![0.5, -0.2, 0.1],
            vec![-0.3, 0.4, -0.1],
            vec![f64::NAN, 0.0, 0.4],
        ];
        let mut sums = AttributionSums::new(3);
        for r in &rows {
            sums.count(r.iter().copied(), 1);
        }
        let from_sums = sums.summary(&["a", "b", "sex"], &["sex"]).unwrap();
        let from_rows =
            crate::attribution::attribution_summary(&["a", "b", "sex"], &["sex"], &rows).unwrap();
        assert_eq!(from_sums.rows, from_rows.rows);
        for (x, y) in from_sums.features.iter().zip(&from_rows.features) {
            assert!((x.mean_abs_contribution - y.mean_abs_contribution).abs() < 1e-9);
        }
        let text = serde_json::to_string(&sums).unwrap();
        assert_eq!(
            serde_json::from_str::<AttributionSums>(&text).unwrap(),
            sums
        );
    }
}
