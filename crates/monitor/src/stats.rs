//! Distribution functions and interval estimates that the monitors share.
//!
//! Everything here is a plain function of numbers. Functions return `None` rather than a
//! number that would mean nothing (an interval for zero trials, a confidence outside
//! `(0, 1)`), and never panic.

use serde::Serialize;
use statrs::distribution::{ChiSquared, ContinuousCDF, Normal};

/// A two-sided confidence interval `[lower, upper]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    /// Lower bound, inclusive.
    pub lower: f64,
    /// Upper bound, inclusive; never below `lower` in the intervals this crate makes.
    pub upper: f64,
}

impl Interval {
    /// Whether `x` lies in the closed interval.
    pub fn contains(&self, x: f64) -> bool {
        self.lower <= x && x <= self.upper
    }
}

/// The two-sided standard normal critical value `z = Φ⁻¹(1 − (1 − confidence) / 2)`
/// (1.959964 for 95 %). `None` unless `0 < confidence < 1`.
pub fn normal_critical_value(confidence: f64) -> Option<f64> {
    if !(confidence > 0.0 && confidence < 1.0) {
        return None;
    }
    let normal = Normal::new(0.0, 1.0).ok()?;
    Some(normal.inverse_cdf(0.5 + 0.5 * confidence))
}

/// The Wilson score interval for a binomial proportion `successes / trials` at the given
/// two-sided confidence.
///
/// With `p = k/n`, `q = 1 − p` and `z` the critical value:
/// `centre = (2np + z²) / (2(n + z²))`, `half = z / (2(n + z²)) · √(4npq + z²)`, and the
/// interval is `[centre − half, centre + half]`, except that the lower bound is exactly 0
/// when `k = 0` and the upper bound exactly 1 when `k = n` (as SciPy's
/// `binomtest(k, n).proportion_ci(method="wilson")`). Unlike the normal (Wald) interval
/// it never leaves `[0, 1]`, is never empty, and always contains `p`, which is what
/// makes it usable on small groups.
///
/// `None` for zero trials, more successes than trials, or a confidence outside `(0, 1)`.
pub fn wilson_interval(successes: u64, trials: u64, confidence: f64) -> Option<Interval> {
    wilson_with_z(successes, trials, normal_critical_value(confidence)?)
}

pub(crate) fn wilson_with_z(successes: u64, trials: u64, z: f64) -> Option<Interval> {
    if trials == 0 || successes > trials || !z.is_finite() {
        return None;
    }
    let n = trials as f64;
    let p = successes as f64 / n;
    let q = 1.0 - p;
    let z2 = z * z;
    let denom = 2.0 * (n + z2);
    let centre = (2.0 * n * p + z2) / denom;
    let half = z / denom * (4.0 * n * p * q + z2).sqrt();
    // Rounding can put a bound a hair on the wrong side of p; the clamps keep the
    // documented guarantees (p inside, bounds inside [0, 1]) exact.
    let lower = if successes == 0 {
        0.0
    } else {
        (centre - half).clamp(0.0, p)
    };
    let upper = if successes == trials {
        1.0
    } else {
        (centre + half).clamp(p, 1.0)
    };
    Some(Interval { lower, upper })
}

/// Newcombe's hybrid score interval (Newcombe 1998, method 10) for the difference of two
/// independent proportions `p1 − p2`, built from their Wilson intervals `(l1, u1)` and
/// `(l2, u2)`:
///
/// `[d − √((p1 − l1)² + (u2 − p2)²), d + √((u1 − p1)² + (p2 − l2)²)]`, `d = p1 − p2`.
///
/// Clamped to `[−1, 1]`. Like the Wilson intervals it is built from, it behaves on small
/// groups and at rates of 0 or 1, where the Wald interval collapses to a point.
pub fn newcombe_difference(p1: f64, w1: Interval, p2: f64, w2: Interval) -> Interval {
    let d = p1 - p2;
    let lower = d - ((p1 - w1.lower).powi(2) + (w2.upper - p2).powi(2)).sqrt();
    let upper = d + ((w1.upper - p1).powi(2) + (p2 - w2.lower).powi(2)).sqrt();
    Interval {
        lower: lower.clamp(-1.0, d.clamp(-1.0, 1.0)),
        upper: upper.clamp(d.clamp(-1.0, 1.0), 1.0),
    }
}

/// The survival function of the Kolmogorov distribution (the limit of `√n · D_n`):
/// `Q(λ) = P(K > λ) = 2 Σ_{k≥1} (−1)^{k−1} e^{−2k²λ²}`.
///
/// For `λ < 1` the alternating series converges slowly, so there the CDF is summed in its
/// Jacobi theta form `P(K ≤ λ) = (√(2π)/λ) Σ_{k≥1} e^{−(2k−1)²π²/(8λ²)}` and `Q = 1 − P`.
/// Both series are summed until their terms no longer change the sum; the result agrees
/// with SciPy's `kstwobign.sf` to rounding.
pub fn kolmogorov_sf(lambda: f64) -> f64 {
    if lambda.is_nan() {
        return f64::NAN;
    }
    if lambda <= 0.0 {
        return 1.0;
    }
    if lambda < 1.0 {
        let w = std::f64::consts::PI * std::f64::consts::PI / (8.0 * lambda * lambda);
        let mut sum = 0.0;
        for k in 1..=100u32 {
            let m = f64::from(2 * k - 1);
            let term = (-m * m * w).exp();
            sum += term;
            if term <= f64::EPSILON * sum * 0.25 {
                break;
            }
        }
        let cdf = (2.0 * std::f64::consts::PI).sqrt() / lambda * sum;
        (1.0 - cdf).clamp(0.0, 1.0)
    } else {
        let mut sum = 0.0;
        let mut sign = 1.0;
        for k in 1..=100u32 {
            let kf = f64::from(k);
            let term = (-2.0 * kf * kf * lambda * lambda).exp();
            sum += sign * term;
            sign = -sign;
            if term <= f64::EPSILON * sum.abs() * 0.25 {
                break;
            }
        }
        (2.0 * sum).clamp(0.0, 1.0)
    }
}

/// `P(X > x)` for a chi-square variable with `dof` degrees of freedom (statrs' regularised
/// upper incomplete gamma function). `None` for `dof = 0` or a NaN statistic.
pub fn chi_square_sf(x: f64, dof: u64) -> Option<f64> {
    if dof == 0 || x.is_nan() {
        return None;
    }
    if x <= 0.0 {
        return Some(1.0);
    }
    let dist = ChiSquared::new(dof as f64).ok()?;
    Some(dist.sf(x).clamp(0.0, 1.0))
}

/// The arithmetic mean of `xs` in two passes (a first mean, then the mean residual added
/// back), which keeps large windows of similar values accurate.
pub(crate) fn mean(xs: impl Iterator<Item = f64> + Clone) -> Option<f64> {
    let mut n = 0u64;
    let mut sum = 0.0;
    for x in xs.clone() {
        n += 1;
        sum += x;
    }
    if n == 0 {
        return None;
    }
    let first = sum / n as f64;
    let residual: f64 = xs.map(|x| x - first).sum();
    Some(first + residual / n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn critical_values() {
        let z = normal_critical_value(0.95).unwrap();
        assert!(close(z, 1.959_963_984_540_054, 1e-12), "{z}");
        let z = normal_critical_value(0.90).unwrap();
        assert!(close(z, 1.644_853_626_951_472_2, 1e-12), "{z}");
        assert_eq!(normal_critical_value(1.0), None);
        assert_eq!(normal_critical_value(0.0), None);
        assert_eq!(normal_critical_value(f64::NAN), None);
    }

    #[test]
    fn wilson_by_hand() {
        // k = 8, n = 10, z = 1.959964 (z² = 3.841459):
        //   denom  = 2 (10 + 3.841459)            = 27.682918
        //   centre = (16 + 3.841459) / 27.682918  = 0.716740
        //   half   = 1.959964 / 27.682918 · √(4·10·0.8·0.2 + 3.841459)
        //          = 0.070800 · √10.241459 = 0.070800 · 3.200228 = 0.226578
        //   [0.490162, 0.943318]
        let w = wilson_interval(8, 10, 0.95).unwrap();
        assert!(close(w.lower, 0.490_162, 1e-6), "{w:?}");
        assert!(close(w.upper, 0.943_318, 1e-6), "{w:?}");
        // k = 0: lower is exactly 0 and upper is z²/(n + z²) = 3.841459/13.841459.
        let w = wilson_interval(0, 10, 0.95).unwrap();
        assert_eq!(w.lower, 0.0);
        assert!(close(w.upper, 3.841_459 / 13.841_459, 1e-6), "{w:?}");
        let w = wilson_interval(10, 10, 0.95).unwrap();
        assert_eq!(w.upper, 1.0);
        assert_eq!(wilson_interval(0, 0, 0.95), None);
        assert_eq!(wilson_interval(3, 2, 0.95), None);
    }

    #[test]
    fn newcombe_by_hand() {
        // p1 = 0.8 (8/10) with [0.490162, 0.943318]; p2 = 0.5 (5/10) with Wilson
        //   centre 0.5, half = 0.070800 · √(10 + 3.841459) = 0.070800 · 3.720411 = 0.263407
        //   → [0.236593, 0.763407].
        // d = 0.3; lower = 0.3 − √(0.309838² + 0.263407²) = 0.3 − 0.406672 = −0.106672
        //          upper = 0.3 + √(0.143318² + 0.263407²) = 0.3 + 0.299872 =  0.599872
        let w1 = wilson_interval(8, 10, 0.95).unwrap();
        let w2 = wilson_interval(5, 10, 0.95).unwrap();
        assert!(close(w2.lower, 0.236_593, 1e-6), "{w2:?}");
        let d = newcombe_difference(0.8, w1, 0.5, w2);
        assert!(close(d.lower, -0.106_672, 1e-6), "{d:?}");
        assert!(close(d.upper, 0.599_872, 1e-6), "{d:?}");
    }

    #[test]
    fn kolmogorov_values() {
        // Reference values of the Kolmogorov survival function Q(λ) (SciPy kstwobign.sf).
        assert_eq!(kolmogorov_sf(0.0), 1.0);
        assert!(close(kolmogorov_sf(1.0), 0.269_999_671_677_354_56, 1e-14));
        assert!(close(kolmogorov_sf(0.5), 0.963_945_243_664_875_1, 1e-14));
        assert!(close(kolmogorov_sf(1.358), 0.050_026_797_334_446_98, 1e-14));
        assert!(close(kolmogorov_sf(2.0), 6.709_252_557_796_953e-4, 1e-16));
        assert!(close(kolmogorov_sf(0.2), 0.999_999_999_999_495, 1e-15));
        assert_eq!(kolmogorov_sf(0.1), 1.0);
        assert!(kolmogorov_sf(10.0) < 1e-80);
        // Both series agree where they meet.
        let below = kolmogorov_sf(1.0 - 1e-12);
        let above = kolmogorov_sf(1.0);
        assert!(close(below, above, 1e-11));
    }

    #[test]
    fn chi_square_values() {
        // P(χ²₁ > 3.841459) = 0.05; P(χ²₂ > x) = e^{−x/2}.
        assert!(close(
            chi_square_sf(3.841_458_820_694_124, 1).unwrap(),
            0.05,
            1e-12
        ));
        assert!(close(
            chi_square_sf(3.0, 2).unwrap(),
            (-1.5f64).exp(),
            1e-14
        ));
        assert_eq!(chi_square_sf(0.0, 3), Some(1.0));
        assert_eq!(chi_square_sf(1.0, 0), None);
    }
}
