//! Quantile bins: each feature's values are mapped once to a `u8` bin so that split
//! finding scans at most 255 bins instead of sorting values at every node.

/// The bin a missing value goes to in a feature's histogram is the one after its last
/// value bin; with at most 255 value bins it still fits a `u8`.
pub(crate) const MAX_VALUE_BINS: usize = 255;

/// Above this many rows, cut points are chosen from an evenly strided sample: quantiles
/// of 200,000 values are as good as those of all of them, and sorting is the cost.
const SAMPLE_FOR_CUTS: usize = 200_000;

/// The cut points of one feature. Value bin `b` holds `cuts[b-1] < x <= cuts[b]`, so a
/// split "bins `0..=b` go left" is exactly the tree rule `x <= cuts[b]`.
#[derive(Debug, Clone)]
pub(crate) struct FeatureBins {
    pub(crate) cuts: Vec<f64>,
}

impl FeatureBins {
    /// Number of value bins (the missing bin comes after them).
    pub(crate) fn n_value_bins(&self) -> usize {
        self.cuts.len() + 1
    }

    pub(crate) fn missing_bin(&self) -> u8 {
        // n_value_bins <= MAX_VALUE_BINS = 255, so this fits.
        self.cuts.len() as u8 + 1
    }

    #[inline]
    pub(crate) fn bin(&self, x: f64) -> u8 {
        if x.is_nan() {
            self.missing_bin()
        } else {
            self.cuts.partition_point(|&c| c < x) as u8
        }
    }

    /// Chooses cut points for one column (`values` strided through a row-major buffer).
    pub(crate) fn fit(column: impl Iterator<Item = f64>, n_rows: usize, max_bins: usize) -> Self {
        let max_bins = max_bins.clamp(2, MAX_VALUE_BINS);
        let stride = n_rows.div_ceil(SAMPLE_FOR_CUTS).max(1);
        let mut values: Vec<f64> = column.step_by(stride).filter(|v| !v.is_nan()).collect();
        values.sort_unstable_by(f64::total_cmp);
        // Distinct values with their counts; `==` so that -0.0 and 0.0 are one value.
        let mut distinct: Vec<(f64, usize)> = Vec::new();
        for v in values {
            match distinct.last_mut() {
                Some((last, count)) if *last == v => *count += 1,
                _ => distinct.push((v, 1)),
            }
        }
        let mut cuts = Vec::new();
        if distinct.len() <= max_bins {
            for w in distinct.windows(2) {
                cuts.push(cut_between(w[0].0, w[1].0));
            }
        } else {
            // Greedy equal-frequency bins; a value more frequent than a bin's share gets a
            // bin of its own because cuts only fall between distinct values.
            let mut remaining: usize = distinct.iter().map(|d| d.1).sum();
            let mut bins_left = max_bins;
            let mut acc = 0usize;
            for i in 0..distinct.len() - 1 {
                let target = remaining.div_ceil(bins_left).max(1);
                acc += distinct[i].1;
                if acc >= target {
                    cuts.push(cut_between(distinct[i].0, distinct[i + 1].0));
                    remaining -= acc;
                    acc = 0;
                    bins_left -= 1;
                    if bins_left == 1 {
                        break;
                    }
                }
            }
        }
        Self { cuts }
    }
}

/// A finite threshold `t` with `a <= t < b`, halfway where floating point allows.
fn cut_between(a: f64, b: f64) -> f64 {
    let mid = a / 2.0 + b / 2.0;
    if mid.is_finite() && a <= mid && mid < b {
        mid
    } else if a.is_finite() {
        a
    } else {
        f64::MIN
    }
}

/// A row-major matrix of bins plus each feature's histogram layout.
#[derive(Debug)]
pub(crate) struct BinnedData {
    pub(crate) n_features: usize,
    pub(crate) features: Vec<FeatureBins>,
    /// `bins[row * n_features + f]`.
    pub(crate) bins: Vec<u8>,
    /// Start of feature `f`'s block in a histogram; the block has its value bins then
    /// the missing bin.
    pub(crate) offsets: Vec<usize>,
    pub(crate) total_bins: usize,
}

impl BinnedData {
    /// Bins the given rows of a row-major `x`; cut points come from those rows only.
    pub(crate) fn new(x: &[f64], n_features: usize, rows: &[u32], max_bins: usize) -> Self {
        let features: Vec<FeatureBins> = (0..n_features)
            .map(|f| {
                let column = rows.iter().map(|&r| x[r as usize * n_features + f]);
                FeatureBins::fit(column, rows.len(), max_bins)
            })
            .collect();
        let mut offsets = Vec::with_capacity(n_features);
        let mut total_bins = 0;
        for fb in &features {
            offsets.push(total_bins);
            total_bins += fb.n_value_bins() + 1;
        }
        let mut bins = vec![0u8; rows.len() * n_features];
        for (out, &r) in bins.chunks_exact_mut(n_features.max(1)).zip(rows) {
            let row = &x[r as usize * n_features..(r as usize + 1) * n_features];
            for ((o, &v), fb) in out.iter_mut().zip(row).zip(&features) {
                *o = fb.bin(v);
            }
        }
        Self {
            n_features,
            features,
            bins,
            offsets,
            total_bins,
        }
    }

    #[inline]
    pub(crate) fn row(&self, row: usize) -> &[u8] {
        &self.bins[row * self.n_features..(row + 1) * self.n_features]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_points_agree_with_the_tree_rule() {
        let values = [3.0, 1.0, 2.0, 2.0, f64::NAN, 5.0];
        let fb = FeatureBins::fit(values.iter().copied(), values.len(), 255);
        assert_eq!(fb.cuts, vec![1.5, 2.5, 4.0]);
        for v in values.iter().filter(|v| !v.is_nan()) {
            let b = fb.bin(*v) as usize;
            assert!(b == fb.cuts.len() || *v <= fb.cuts[b]);
            assert!(b == 0 || *v > fb.cuts[b - 1]);
        }
        assert_eq!(fb.bin(f64::NAN), 4);
    }

    #[test]
    fn many_values_get_at_most_max_bins_of_similar_size() {
        let n = 10_000;
        let values: Vec<f64> = (0..n).map(|i| ((i * 7919) % n) as f64).collect();
        let fb = FeatureBins::fit(values.iter().copied(), n, 16);
        assert_eq!(fb.n_value_bins(), 16);
        let mut counts = vec![0usize; 16];
        for v in &values {
            counts[fb.bin(*v) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (600..=650).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn infinities_and_adjacent_floats_give_finite_separating_cuts() {
        let a = 1.0f64;
        let b = f64::from_bits(a.to_bits() + 1);
        for (lo, hi) in [
            (a, b),
            (f64::NEG_INFINITY, 0.0),
            (0.0, f64::INFINITY),
            (-f64::MAX, f64::MAX),
        ] {
            let c = cut_between(lo, hi);
            assert!(c.is_finite() && lo <= c && c < hi, "{lo} {hi} {c}");
        }
    }
}
