//! Contrastive attributions: why one row's output is above another's. SHAP values are
//! additive and two rows explained by one model share its base value, so the
//! difference of their attributions is an exact attribution of the difference of their
//! outputs: `Σ (φᵢ(a) − φᵢ(b)) = f(a) − f(b)`. This is "why item A was ranked above
//! item B", feature by feature, with nothing estimated beyond the two explanations.

use crate::tree::Attribution;

/// `a`'s attribution minus `b`'s.
#[derive(Debug, Clone, PartialEq)]
pub struct Contrast {
    /// Per feature, `φᵢ(a) − φᵢ(b)`.
    pub values: Vec<f64>,
    /// `f(a) − f(b)`, which the values add up to.
    pub difference: f64,
}

/// Why two attributions cannot be contrasted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ContrastError {
    /// They attribute different numbers of features.
    #[error("the attributions have {a} and {b} features")]
    Width {
        /// Features of the first.
        a: usize,
        /// Features of the second.
        b: usize,
    },
    /// Their base values differ: they were not made by one model over one reference.
    #[error("the attributions have different base values ({a} and {b}): not one model's")]
    Base {
        /// The first's base value.
        a: f64,
        /// The second's.
        b: f64,
    },
}

/// The contrast of `a` against `b`, both from one model (equal base values, within a
/// relative 1e-9).
pub fn contrast(a: &Attribution, b: &Attribution) -> Result<Contrast, ContrastError> {
    if a.values.len() != b.values.len() {
        return Err(ContrastError::Width {
            a: a.values.len(),
            b: b.values.len(),
        });
    }
    let scale = a.base_value.abs().max(b.base_value.abs()).max(1.0);
    if (a.base_value - b.base_value).abs() > 1e-9 * scale {
        return Err(ContrastError::Base {
            a: a.base_value,
            b: b.base_value,
        });
    }
    Ok(Contrast {
        values: a.values.iter().zip(&b.values).map(|(x, y)| x - y).collect(),
        difference: a.prediction - b.prediction,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attribution(base: f64, values: &[f64]) -> Attribution {
        Attribution {
            base_value: base,
            values: values.to_vec(),
            prediction: base + values.iter().sum::<f64>(),
        }
    }

    #[test]
    fn attributions_of_different_models_or_widths_are_not_contrasted() {
        let a = attribution(1.0, &[0.5, -0.25]);
        assert_eq!(
            contrast(&a, &attribution(1.0, &[0.5])),
            Err(ContrastError::Width { a: 2, b: 1 })
        );
        assert_eq!(
            contrast(&a, &attribution(1.5, &[0.5, 0.0])),
            Err(ContrastError::Base { a: 1.0, b: 1.5 })
        );
        let c = contrast(&a, &attribution(1.0, &[0.25, 0.25])).unwrap();
        assert_eq!(c.values, [0.25, -0.5]);
        assert_eq!(c.difference, -0.25);
    }
}
