//! Linear SHAP for a linear model `f(x) = b + Σ wᵢ xᵢ`.
//!
//! Under the interventional game against a background whose feature means are `μ`, the
//! Shapley values of a linear model have the closed form `φᵢ = wᵢ (xᵢ − μᵢ)` with
//! `φ₀ = b + Σ wᵢ μᵢ = f(μ)` (Lundberg & Lee 2017, "independent features"). A missing
//! `xᵢ` is taken to be `μᵢ`, so it gets `φᵢ = 0` and the prediction imputes the mean:
//! the same convention a linear surrogate uses when it scores a row with a gap.

use super::{ShapError, check_row};
use crate::tree::Attribution;

/// Explains a linear model from its coefficients, intercept and feature means.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearExplainer {
    coefficients: Vec<f64>,
    intercept: f64,
    means: Vec<f64>,
    base_value: f64,
}

// === impl LinearExplainer ===

impl LinearExplainer {
    /// `coefficients` and `means` must have one entry per encoded feature.
    pub fn new(coefficients: Vec<f64>, intercept: f64, means: Vec<f64>) -> Result<Self, ShapError> {
        if coefficients.len() != means.len() {
            return Err(ShapError::LinearShape {
                coefficients: coefficients.len(),
                means: means.len(),
            });
        }
        let base_value = intercept
            + coefficients
                .iter()
                .zip(&means)
                .map(|(w, m)| w * m)
                .sum::<f64>();
        Ok(Self {
            coefficients,
            intercept,
            means,
            base_value,
        })
    }

    /// `φ₀ = b + Σ wᵢ μᵢ`.
    pub fn base_value(&self) -> f64 {
        self.base_value
    }

    /// The model's output for `x`, missing values imputed by the mean.
    pub fn predict(&self, x: &[f64]) -> Result<f64, ShapError> {
        check_row(self.coefficients.len(), x)?;
        Ok(self.intercept
            + self
                .coefficients
                .iter()
                .zip(x.iter().zip(&self.means))
                .map(|(w, (&xi, &m))| w * if xi.is_nan() { m } else { xi })
                .sum::<f64>())
    }

    /// `φᵢ = wᵢ (xᵢ − μᵢ)`, and 0 for a missing `xᵢ`.
    pub fn explain(&self, x: &[f64]) -> Result<Attribution, ShapError> {
        check_row(self.coefficients.len(), x)?;
        let values = self
            .coefficients
            .iter()
            .zip(x.iter().zip(&self.means))
            .map(|(w, (&xi, &m))| if xi.is_nan() { 0.0 } else { w * (xi - m) })
            .collect();
        Ok(Attribution {
            base_value: self.base_value,
            values,
            prediction: self.predict(x)?,
        })
    }
}
