//! The linear surrogate: the simple baseline against which the trees are judged.
//!
//! Ordinary least squares (linfa-linear, a pure-Rust QR solve) on encoded rows, with each
//! missing value imputed by its feature's training mean. It keeps exactly what linear SHAP
//! needs — coefficients `w`, intercept `b` and training means `μ` — since for a linear
//! model with independent features `φ_i = w_i (x_i − μ_i)` and the base value is
//! `b + Σ w_i μ_i`. A missing `x_i` is imputed to `μ_i` and so gets `φ_i = 0`.

use linfa::prelude::*;
use linfa_linear::LinearRegression;
use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

/// The linear surrogate could not be fitted.
#[derive(Debug, thiserror::Error)]
pub enum LinearError {
    /// No rows.
    #[error("no training rows")]
    NoRows,
    /// The matrix is not `y.len() × n_features`.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A target is not finite.
    #[error("target of row {row} is not a finite number")]
    Target {
        /// Index of the row.
        row: usize,
    },
    /// The least-squares solve failed.
    #[error(transparent)]
    Solve(#[from] linfa_linear::LinearError<f64>),
    /// An error from linfa.
    #[error(transparent)]
    Linfa(#[from] linfa::Error),
}

/// `prediction = intercept + Σ coefficients[i] · x[i]`, missing `x[i]` read as `means[i]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearSurrogate {
    /// One weight per encoded feature (0 for features constant in training).
    pub coefficients: Vec<f64>,
    /// The constant term.
    pub intercept: f64,
    /// Each feature's training mean over its present values (0 if never present).
    pub means: Vec<f64>,
}

impl LinearSurrogate {
    /// Fits on a row-major matrix `x` (`y.len()` rows × `n_features`; `NaN` = missing).
    pub fn fit(x: &[f64], n_features: usize, y: &[f64]) -> Result<Self, LinearError> {
        let n = y.len();
        if n == 0 {
            return Err(LinearError::NoRows);
        }
        if n_features == 0 || x.len() != n * n_features {
            return Err(LinearError::Shape(format!(
                "{} values for {n} rows of {n_features} features",
                x.len()
            )));
        }
        if let Some(row) = y.iter().position(|v| !v.is_finite()) {
            return Err(LinearError::Target { row });
        }
        let mut sums = vec![(0.0, 0usize); n_features];
        for row in x.chunks_exact(n_features) {
            for (s, &v) in sums.iter_mut().zip(row) {
                if v.is_finite() {
                    s.0 += v;
                    s.1 += 1;
                }
            }
        }
        let means: Vec<f64> = sums
            .iter()
            .map(|&(s, c)| if c > 0 { s / c as f64 } else { 0.0 })
            .collect();
        let value = |r: usize, j: usize| {
            let v = x[r * n_features + j];
            if v.is_finite() { v - means[j] } else { 0.0 }
        };
        // A column constant after imputation carries nothing and would make the
        // least-squares system singular.
        let kept: Vec<usize> = (0..n_features)
            .filter(|&j| (0..n).any(|r| value(r, j) != 0.0))
            .collect();
        let y_mean = y.iter().sum::<f64>() / n as f64;
        let mut coefficients = vec![0.0; n_features];
        if !kept.is_empty() {
            let centred = Array2::from_shape_fn((n, kept.len()), |(r, k)| value(r, kept[k]));
            let target: Array1<f64> = y.iter().map(|v| v - y_mean).collect();
            let w = match solve(centred.clone(), target.clone()) {
                Ok(w) => w,
                // Collinear columns: a whisper of ridge (appended as pseudo-rows) picks
                // the minimum-norm-like solution instead of failing.
                Err(_) => {
                    let k = kept.len();
                    let scale = centred.iter().map(|v| v * v).sum::<f64>() / k as f64;
                    let alpha = (1e-8 * scale).max(1e-12).sqrt();
                    let aug = Array2::from_shape_fn((n + k, k), |(r, c)| {
                        if r < n {
                            centred[[r, c]]
                        } else if r - n == c {
                            alpha
                        } else {
                            0.0
                        }
                    });
                    let t = Array1::from_shape_fn(n + k, |r| if r < n { target[r] } else { 0.0 });
                    solve(aug, t)?
                }
            };
            for (&j, &wj) in kept.iter().zip(w.iter()) {
                coefficients[j] = if wj.is_finite() { wj } else { 0.0 };
            }
        }
        let intercept = y_mean
            - coefficients
                .iter()
                .zip(&means)
                .map(|(w, m)| w * m)
                .sum::<f64>();
        Ok(Self {
            coefficients,
            intercept,
            means,
        })
    }

    /// Prediction for one encoded row; missing (or non-finite) values read as the mean.
    pub fn predict(&self, x: &[f64]) -> f64 {
        self.intercept
            + self
                .coefficients
                .iter()
                .zip(&self.means)
                .zip(x)
                .map(|((w, m), v)| w * if v.is_finite() { *v } else { *m })
                .sum::<f64>()
    }

    /// Number of encoded features.
    pub fn n_features(&self) -> usize {
        self.coefficients.len()
    }
}

fn solve(x: Array2<f64>, y: Array1<f64>) -> Result<Array1<f64>, LinearError> {
    let model = LinearRegression::new()
        .with_intercept(false)
        .fit(&Dataset::new(x, y))?;
    Ok(model.params().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_a_linear_function_and_imputes_means() {
        let n = 200;
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..n {
            let a = (i % 17) as f64;
            let b = ((i * 7) % 13) as f64;
            x.extend([a, b, 5.0]);
            y.push(3.0 + 2.0 * a - 0.5 * b);
        }
        let m = LinearSurrogate::fit(&x, 3, &y).unwrap();
        assert!((m.coefficients[0] - 2.0).abs() < 1e-9);
        assert!((m.coefficients[1] + 0.5).abs() < 1e-9);
        assert_eq!(m.coefficients[2], 0.0);
        assert!((m.intercept - 3.0).abs() < 1e-9);
        assert_eq!(m.means[2], 5.0);
        let p = m.predict(&[f64::NAN, 2.0, f64::NAN]);
        assert!((p - (3.0 + 2.0 * m.means[0] - 1.0)).abs() < 1e-9);
    }

    #[test]
    fn duplicate_columns_do_not_fail() {
        let x: Vec<f64> = (0..50).flat_map(|i| [i as f64, i as f64]).collect();
        let y: Vec<f64> = (0..50).map(|i| 2.0 * i as f64).collect();
        let m = LinearSurrogate::fit(&x, 2, &y).unwrap();
        assert!((m.predict(&[10.0, 10.0]) - 20.0).abs() < 1e-3);
    }
}
