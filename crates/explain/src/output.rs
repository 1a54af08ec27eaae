//! What the explained model outputs, and the map between its output space and the raw
//! space the trees regress in.
//!
//! A module of its own because both the surrogate (which fits in raw space) and the
//! fidelity measures (which compare in output space) need it. Its public path is
//! `surrogate::OutputKind`, which re-exports it.

use serde::{Deserialize, Serialize};

/// Probabilities are clipped to `[PROBABILITY_CLIP, 1 − PROBABILITY_CLIP]` before the
/// logit is taken.
pub const PROBABILITY_CLIP: f64 = 1e-6;

/// What the explained model outputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OutputKind {
    /// One real-valued score.
    Regression,
    /// The probability of the positive class.
    BinaryProbability,
    /// One probability per class, in this order.
    MultiClass {
        /// Class labels.
        classes: Vec<String>,
    },
}

impl OutputKind {
    /// Values per row, and ensembles in the surrogate.
    pub fn n_outputs(&self) -> usize {
        match self {
            Self::Regression | Self::BinaryProbability => 1,
            Self::MultiClass { classes } => classes.len(),
        }
    }

    /// Whether the trees fit logits of probabilities.
    pub fn is_probability(&self) -> bool {
        !matches!(self, Self::Regression)
    }

    /// The raw (tree) value for a model output: the clipped logit for probabilities.
    pub fn to_raw(&self, output: f64) -> f64 {
        if self.is_probability() {
            let p = output.clamp(PROBABILITY_CLIP, 1.0 - PROBABILITY_CLIP);
            (p / (1.0 - p)).ln()
        } else {
            output
        }
    }

    /// The model-output value for a raw (tree) value: the logistic function for
    /// probabilities.
    pub fn to_output(&self, raw: f64) -> f64 {
        if self.is_probability() {
            1.0 / (1.0 + (-raw).exp())
        } else {
            raw
        }
    }
}
