//! How far a surrogate can be trusted: agreement with the real model on rows it did not
//! train on, overall and row by row.
//!
//! Figures are in the model's output space (the values the model returned: a score, a
//! probability, class probabilities), because that is what a reader compares. For
//! multi-class outputs R² and MAE pool every (row, class) value.

use serde::{Deserialize, Serialize};

use crate::output::OutputKind;
use crate::rng::SplitMix64;

/// Fidelity could not be measured.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FidelityError {
    /// The two sides have different lengths, or a length that is not a whole number of
    /// rows.
    #[error("{surrogate} surrogate values and {model} model values for {width} outputs per row")]
    Length {
        /// Values from the surrogate.
        surrogate: usize,
        /// Values from the model.
        model: usize,
        /// Outputs per row.
        width: usize,
    },
    /// No rows to measure on.
    #[error("no held-out rows to measure fidelity on")]
    NoRows,
    /// A value is `NaN` or infinite.
    #[error("value {index} is not a finite number")]
    NotFinite {
        /// Index into the flat values.
        index: usize,
    },
    /// The held-out share is not in `[0, 1)`.
    #[error("held-out fraction must be in [0, 1), got {0}")]
    Fraction(f64),
}

/// Surrogate-versus-model agreement on held-out rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fidelity {
    /// Rows measured.
    pub n: usize,
    /// Coefficient of determination of the surrogate for the model's output: 1 is a
    /// perfect mimic. When the model's output is constant it is 1 for a perfect mimic and
    /// 0 otherwise.
    pub r2: f64,
    /// Mean absolute difference.
    pub mae: f64,
    /// Largest absolute difference.
    pub max_abs_error: f64,
    /// Classifiers only: share of rows where both take the same decision (probability ≥
    /// 0.5 for binary, the arg-max class for multi-class).
    pub agreement: Option<f64>,
}

/// Compares surrogate and model outputs, both flat row-major with `kind.n_outputs()`
/// values per row.
pub fn fidelity(
    kind: &OutputKind,
    surrogate: &[f64],
    model: &[f64],
) -> Result<Fidelity, FidelityError> {
    let width = kind.n_outputs();
    if surrogate.len() != model.len() || width == 0 || model.len() % width != 0 {
        return Err(FidelityError::Length {
            surrogate: surrogate.len(),
            model: model.len(),
            width,
        });
    }
    if model.is_empty() {
        return Err(FidelityError::NoRows);
    }
    if let Some(index) = surrogate.iter().chain(model).position(|v| !v.is_finite()) {
        return Err(FidelityError::NotFinite {
            index: index % model.len(),
        });
    }
    let count = model.len() as f64;
    let mean = model.iter().sum::<f64>() / count;
    let (mut ss_res, mut ss_tot, mut abs, mut max) = (0.0, 0.0, 0.0, 0.0f64);
    for (s, m) in surrogate.iter().zip(model) {
        let d = s - m;
        ss_res += d * d;
        ss_tot += (m - mean) * (m - mean);
        abs += d.abs();
        max = max.max(d.abs());
    }
    let r2 = if ss_tot > 0.0 {
        1.0 - ss_res / ss_tot
    } else if ss_res == 0.0 {
        1.0
    } else {
        0.0
    };
    let rows = model.len() / width;
    let agreement = match kind {
        OutputKind::Regression => None,
        OutputKind::BinaryProbability => {
            let same = surrogate
                .iter()
                .zip(model)
                .filter(|(s, m)| (**s >= 0.5) == (**m >= 0.5))
                .count();
            Some(same as f64 / rows as f64)
        }
        OutputKind::MultiClass { .. } => {
            let same = surrogate
                .chunks_exact(width)
                .zip(model.chunks_exact(width))
                .filter(|(s, m)| argmax(s) == argmax(m))
                .count();
            Some(same as f64 / rows as f64)
        }
    };
    Ok(Fidelity {
        n: rows,
        r2,
        mae: abs / count,
        max_abs_error: max,
        agreement,
    })
}

/// Local fidelity of one row: the largest `|surrogate − model|` over its outputs, in the
/// model's output space. An explanation quotes it so a reader knows how closely the
/// explained surrogate tracks the model at this very row.
pub fn local_fidelity(surrogate: &[f64], model: &[f64]) -> f64 {
    surrogate
        .iter()
        .zip(model)
        .map(|(s, m)| (s - m).abs())
        .fold(0.0, f64::max)
}

/// The first index of the largest value (ties go to the lower class).
pub fn argmax(values: &[f64]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best
}

/// Row indices split into training and held-out rows, each in ascending order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldoutSplit {
    /// Rows to fit on.
    pub train: Vec<usize>,
    /// Rows to measure fidelity on.
    pub holdout: Vec<usize>,
}

/// Splits `n` rows at random, deterministically for `seed`: `round(n · fraction)` rows
/// held out, but at least one of each side when `n ≥ 2` and `fraction > 0`.
pub fn split_holdout(n: usize, fraction: f64, seed: u64) -> Result<HoldoutSplit, FidelityError> {
    if !(0.0..1.0).contains(&fraction) {
        return Err(FidelityError::Fraction(fraction));
    }
    let mut k = (n as f64 * fraction).round() as usize;
    if fraction > 0.0 && n >= 2 {
        k = k.clamp(1, n - 1);
    }
    let mut order: Vec<usize> = (0..n).collect();
    SplitMix64::new(seed).shuffle(&mut order);
    let (h, t) = order.split_at(k.min(n));
    let (mut train, mut holdout) = (t.to_vec(), h.to_vec());
    train.sort_unstable();
    holdout.sort_unstable();
    Ok(HoldoutSplit { train, holdout })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_and_imperfect_mimics() {
        let m = [1.0, 2.0, 3.0, 4.0];
        let f = fidelity(&OutputKind::Regression, &m, &m).unwrap();
        assert_eq!((f.r2, f.mae, f.agreement), (1.0, 0.0, None));
        let s = [1.0, 2.0, 3.0, 6.0];
        let f = fidelity(&OutputKind::Regression, &s, &m).unwrap();
        assert!((f.r2 - (1.0 - 4.0 / 5.0)).abs() < 1e-12);
        assert_eq!((f.mae, f.max_abs_error), (0.5, 2.0));
        assert!(fidelity(&OutputKind::Regression, &s[..3], &m).is_err());
        assert!(fidelity(&OutputKind::Regression, &[], &[]).is_err());
    }

    #[test]
    fn decisions_agree_by_threshold_and_argmax() {
        let f = fidelity(
            &OutputKind::BinaryProbability,
            &[0.6, 0.4, 0.1],
            &[0.9, 0.6, 0.2],
        )
        .unwrap();
        assert_eq!(f.agreement, Some(2.0 / 3.0));
        let kind = OutputKind::MultiClass {
            classes: vec!["a".into(), "b".into(), "c".into()],
        };
        let s = [0.1, 0.7, 0.2, 0.5, 0.3, 0.2];
        let m = [0.2, 0.6, 0.2, 0.3, 0.5, 0.2];
        assert_eq!(fidelity(&kind, &s, &m).unwrap().agreement, Some(0.5));
        assert_eq!(
            local_fidelity(&s[..3], &m[..3]),
            0.1f64.max((0.7f64 - 0.6).abs())
        );
    }

    #[test]
    fn holdout_split_is_a_deterministic_partition() {
        let a = split_holdout(100, 0.2, 3).unwrap();
        assert_eq!(a, split_holdout(100, 0.2, 3).unwrap());
        assert_ne!(a, split_holdout(100, 0.2, 4).unwrap());
        assert_eq!(a.holdout.len(), 20);
        let mut all: Vec<usize> = a.train.iter().chain(&a.holdout).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        assert_eq!(split_holdout(2, 0.01, 0).unwrap().holdout.len(), 1);
        assert!(split_holdout(10, 1.0, 0).is_err());
    }
}
