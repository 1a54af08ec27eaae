//! `sidelight-monitor`: fairness, drift and fidelity statistics over windows of records.
//!
//! The proxy keeps windows of what passed through it (decisions, feature values,
//! attributions, fidelity measurements) and asks this crate what they say: whether a
//! protected group is treated worse, whether the traffic has moved away from what the
//! surrogate was trained on, whether the surrogate still follows the model. Plain slices
//! and structs go in; plain result structs come out, `Serialize` so the proxy can serve
//! them as JSON unchanged.
//!
//! Pure: no file or network I/O, no async, no threads, no logging, no clock (times are
//! passed in). What it must never do:
//!
//! - **Raise a fairness alarm that the data cannot support.** Every rate carries a
//!   Wilson interval, groups below the minimum size get
//!   [`Verdict::InsufficientData`], and [`Verdict::Fail`] is given only when the whole
//!   confidence interval breaks the rule ([`mod@fairness`] module docs).
//! - **Hide a sign or a definition.** Differences are always unprivileged minus
//!   privileged, ratios unprivileged over privileged; every figure's definition is in
//!   its doc comment, and where a well-known tool (Fairlearn, SciPy) reports it
//!   differently the docs say how.
//! - **Return a number that means nothing**: a statistic without data is `None`
//!   (serialised as `null`), never 0 or NaN. Missing values (NaN, `None`) are counted,
//!   never binned.
//! - Panic on data that came from outside, or log values.
//!
//! # Modules
//!
//! - [`mod@fairness`]: selection rates, TPR and FPR per group; statistical parity
//!   difference, disparate impact (four-fifths rule), equal opportunity and average odds
//!   differences, with intervals and verdicts.
//! - [`attribution`]: mean |SHAP| per feature, the protected features' share, and
//!   possible proxies of protected features (|r|, η, Cramér's V).
//! - [`drift`]: PSI (reference-quantile bins) and Kolmogorov–Smirnov for numeric
//!   features and predictions; PSI over levels and chi-square for categorical ones.
//! - [`summary`]: what a window keeps instead of its rows — histograms on the
//!   reference's grid (PSI exact, KS exact or bounded), fixed-point attribution sums,
//!   and (in [`mod@fairness`]) group counts; all add, subtract and merge exactly, so a
//!   fleet's replicas merge theirs.
//! - [`exposure`]: in rankings, each item group's share of the top slots shown to each
//!   protected group of customers, with Wilson intervals.
//! - [`fidelity`]: last, minimum and trend of a surrogate's R² over time.
//! - [`window`]: bounded windows by count and by age.
//! - [`workbench`]: many explained predictions at once: a global summary per feature,
//!   and the exact decomposition of two cohorts' difference.
//! - [`stats`]: the distribution functions and intervals underneath.

#![warn(missing_docs)]

pub mod attribution;
pub mod drift;
pub mod exposure;
pub mod fairness;
pub mod fidelity;
pub mod stats;
pub mod summary;
pub mod window;
pub mod workbench;

pub use attribution::{
    Association, AttributionCheck, AttributionSummary, Column, FeatureImportance, Measure,
    ProxyCandidate, Values, association, attribution_summary, possible_proxies, rank_proxies,
};
pub use drift::{
    CategoricalDrift, CategoricalReference, ChiSquareTest, Drift, DriftConfig, FeatureDrift,
    KsTest, LevelCounts, NumericDrift, NumericReference, PsiBin, categorical_drift,
    chi_square_homogeneity, numeric_drift, prediction_drift, psi,
};
pub use fairness::{
    Decision, Estimate, FairnessConfig, FairnessReport, GroupComparison, GroupCounts, GroupStats,
    ProtectedAttribute, Rate, Verdict, fairness, fairness_from_counts,
};
pub use fidelity::{FidelityPoint, FidelitySummary, summarise_fidelity};
pub use stats::{Interval, kolmogorov_sf, wilson_interval};
pub use summary::{AttributionSums, Histogram, NumericGrid};
pub use window::{Window, WindowLimits};

/// Milliseconds since the Unix epoch.
pub type UnixMillis = i64;

/// What can go wrong: the caller's configuration or the shape of its input. Messages
/// name features and groups, never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MonitorError {
    /// A setting is out of range or inconsistent (a confidence outside `(0, 1)`, fewer
    /// than two drift bins, a group listed twice); the message says which.
    #[error("invalid monitor configuration: {0}")]
    InvalidConfig(String),
    /// A feature named as protected is not among the features or columns given; holds
    /// the name as the caller spelt it.
    #[error("unknown feature {0:?}")]
    UnknownFeature(String),
    /// A row of attributions does not hold one value per feature.
    #[error("attribution row {row} has {found} values, expected {expected}")]
    RowLength {
        /// Index of the offending row, from 0.
        row: usize,
        /// Values in that row.
        found: usize,
        /// Features given, which every row must match.
        expected: usize,
    },
    /// A column of feature values is not as long as the first column: columns must be
    /// aligned row by row for an association to mean anything.
    #[error("column {column:?} has {found} values, expected {expected}")]
    ColumnLength {
        /// The column's name.
        column: String,
        /// Its number of values.
        found: usize,
        /// The first column's number of values.
        expected: usize,
    },
    /// Rows given to a summary do not fit it (a figure that is not finite, an empty
    /// cohort); the message names the row or cohort, never a value.
    #[error("{0}")]
    Input(String),
}
