//! The developer's questions about many explained predictions at once, from their
//! recorded attributions: what the model relies on (a global summary per feature), and
//! why one cohort's predictions differ from another's (a cohort difference).
//!
//! SHAP values add up: every row's base value plus its attributions is its prediction
//! in the explanation's space. So, for two cohorts explained from one base value, the
//! difference of their mean attributions, feature by feature, is an exact decomposition
//! of the difference of their mean predictions. Rows explained by surrogates with
//! different base values (a retrain between them) add the difference of their mean base
//! values as a term of its own, [`CohortDifference::base`], so the decomposition stays
//! exact.
//!
//! (The first pure piece of the developer's workbench: the admin API, the store's reads
//! and the console come after.)

use serde::Serialize;

use crate::MonitorError;

/// One explained prediction: its base value and each feature's attribution, in one
/// feature order shared by every row.
#[derive(Debug, Clone, PartialEq)]
pub struct ExplainedRow<'a> {
    /// The surrogate's expected output, in the explanation's space.
    pub base: f64,
    /// One attribution per feature.
    pub attributions: &'a [f64],
}

impl ExplainedRow<'_> {
    /// `base + Σ attributions`: the prediction in the explanation's space.
    pub fn prediction(&self) -> f64 {
        self.base + self.attributions.iter().sum::<f64>()
    }
}

/// One feature's place in a global summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeatureSummary {
    /// The feature.
    pub feature: String,
    /// Mean |attribution|: how much the model relies on it.
    pub mean_abs: f64,
    /// Mean signed attribution: which way it pushes on average.
    pub mean: f64,
}

/// What the model relied on over some rows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GlobalSummary {
    /// Rows behind every figure.
    pub rows: u64,
    /// Per feature, by mean |attribution|, largest first (ties by name).
    pub features: Vec<FeatureSummary>,
}

/// The global summary of `rows` over features `names`. Rows of another width, or with a
/// figure that is not finite, are an error naming the row (never a value).
pub fn global_summary(
    names: &[String],
    rows: &[ExplainedRow<'_>],
) -> Result<GlobalSummary, MonitorError> {
    let sums = sums(names, rows)?;
    let n = rows.len().max(1) as f64;
    let mut features: Vec<FeatureSummary> = names
        .iter()
        .zip(sums.abs.iter().zip(&sums.signed))
        .map(|(feature, (abs, signed))| FeatureSummary {
            feature: feature.clone(),
            mean_abs: abs / n,
            mean: signed / n,
        })
        .collect();
    features.sort_by(|a, b| {
        b.mean_abs
            .total_cmp(&a.mean_abs)
            .then_with(|| a.feature.cmp(&b.feature))
    });
    Ok(GlobalSummary {
        rows: rows.len() as u64,
        features,
    })
}

struct Sums {
    abs: Vec<f64>,
    signed: Vec<f64>,
    base: f64,
}

fn sums(names: &[String], rows: &[ExplainedRow<'_>]) -> Result<Sums, MonitorError> {
    let mut out = Sums {
        abs: vec![0.0; names.len()],
        signed: vec![0.0; names.len()],
        base: 0.0,
    };
    for (i, row) in rows.iter().enumerate() {
        if row.attributions.len() != names.len() {
            return Err(MonitorError::RowLength {
                row: i,
                found: row.attributions.len(),
                expected: names.len(),
            });
        }
        if !row.base.is_finite() || row.attributions.iter().any(|a| !a.is_finite()) {
            return Err(MonitorError::Input(format!(
                "row {i} has a figure that is not a finite number"
            )));
        }
        out.base += row.base;
        for (k, a) in row.attributions.iter().enumerate() {
            out.abs[k] += a.abs();
            out.signed[k] += a;
        }
    }
    Ok(out)
}

/// One feature's share of the difference between two cohorts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeatureDifference {
    /// The feature.
    pub feature: String,
    /// Its mean attribution in cohort A.
    pub mean_a: f64,
    /// Its mean attribution in cohort B.
    pub mean_b: f64,
    /// `mean_a − mean_b`: its share of the difference of the mean predictions.
    pub difference: f64,
}

/// Why cohort A's predictions differ from cohort B's, feature by feature.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CohortDifference {
    /// Rows in cohort A.
    pub rows_a: u64,
    /// Rows in cohort B.
    pub rows_b: u64,
    /// Mean prediction of A, in the explanation's space.
    pub mean_prediction_a: f64,
    /// Mean prediction of B.
    pub mean_prediction_b: f64,
    /// The difference of the mean base values (0 when one surrogate explained both).
    pub base: f64,
    /// Per feature, by |difference|, largest first (ties by name). With `base`, the
    /// differences add up to `mean_prediction_a − mean_prediction_b` exactly (up to
    /// rounding).
    pub features: Vec<FeatureDifference>,
}

/// The difference of cohort `a` from cohort `b`. An empty cohort is an error naming it.
pub fn cohort_difference(
    names: &[String],
    a: &[ExplainedRow<'_>],
    b: &[ExplainedRow<'_>],
) -> Result<CohortDifference, MonitorError> {
    for (cohort, rows) in [("a", a), ("b", b)] {
        if rows.is_empty() {
            return Err(MonitorError::Input(format!("cohort {cohort} has no rows")));
        }
    }
    let (sa, sb) = (sums(names, a)?, sums(names, b)?);
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let mean_prediction = |rows: &[ExplainedRow<'_>], n: f64| {
        rows.iter().map(ExplainedRow::prediction).sum::<f64>() / n
    };
    let mut features: Vec<FeatureDifference> = names
        .iter()
        .enumerate()
        .map(|(k, feature)| {
            let (mean_a, mean_b) = (sa.signed[k] / na, sb.signed[k] / nb);
            FeatureDifference {
                feature: feature.clone(),
                mean_a,
                mean_b,
                difference: mean_a - mean_b,
            }
        })
        .collect();
    features.sort_by(|x, y| {
        y.difference
            .abs()
            .total_cmp(&x.difference.abs())
            .then_with(|| x.feature.cmp(&y.feature))
    });
    Ok(CohortDifference {
        rows_a: a.len() as u64,
        rows_b: b.len() as u64,
        mean_prediction_a: mean_prediction(a, na),
        mean_prediction_b: mean_prediction(b, nb),
        base: sa.base / na - sb.base / nb,
        features,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|k| format!("f{k}")).collect()
    }

    #[test]
    fn rows_that_do_not_fit_are_named_not_quoted() {
        let attributions = [1.0, f64::NAN];
        let rows = [ExplainedRow {
            base: 0.0,
            attributions: &attributions,
        }];
        let error = global_summary(&names(2), &rows).unwrap_err();
        assert!(error.to_string().contains("row 0"), "{error}");
        let error = global_summary(&names(3), &rows).unwrap_err();
        assert!(
            error.to_string().contains("row 0 has 2 values, expected 3"),
            "{error}"
        );
        let error = cohort_difference(&names(2), &[], &rows).unwrap_err();
        assert!(error.to_string().contains("cohort a"), "{error}");
    }

    proptest! {
        /// Against the definition: each feature's figures are the plain means over the
        /// rows, and the features come largest mean |attribution| first.
        #[test]
        fn the_summary_is_the_mean_of_the_attributions(
            raw in proptest::collection::vec(proptest::collection::vec(-5.0f64..5.0, 4), 1..40),
            base in -2.0f64..2.0,
        ) {
            let rows: Vec<ExplainedRow<'_>> =
                raw.iter().map(|a| ExplainedRow { base, attributions: a }).collect();
            let summary = global_summary(&names(4), &rows).unwrap();
            prop_assert_eq!(summary.rows, raw.len() as u64);
            for f in &summary.features {
                let k: usize = f.feature[1..].parse().unwrap();
                let n = raw.len() as f64;
                let mean_abs = raw.iter().map(|r| r[k].abs()).sum::<f64>() / n;
                let mean = raw.iter().map(|r| r[k]).sum::<f64>() / n;
                prop_assert!((f.mean_abs - mean_abs).abs() < 1e-9);
                prop_assert!((f.mean - mean).abs() < 1e-9);
            }
            prop_assert!(summary.features.windows(2).all(|w| w[0].mean_abs >= w[1].mean_abs));
        }

        /// The decomposition is exact: the base term plus the features' differences is
        /// the difference of the cohorts' mean predictions, whatever their base values.
        #[test]
        fn a_cohort_difference_adds_up_to_the_difference_of_mean_predictions(
            a in proptest::collection::vec((-1.0f64..1.0, proptest::collection::vec(-5.0f64..5.0, 3)), 1..30),
            b in proptest::collection::vec((-1.0f64..1.0, proptest::collection::vec(-5.0f64..5.0, 3)), 1..30),
        ) {
            let ea: Vec<ExplainedRow<'_>> =
                a.iter().map(|(base, x)| ExplainedRow { base: *base, attributions: x }).collect();
            let eb: Vec<ExplainedRow<'_>> =
                b.iter().map(|(base, x)| ExplainedRow { base: *base, attributions: x }).collect();
            let d = cohort_difference(&names(3), &ea, &eb).unwrap();
            let total = d.base + d.features.iter().map(|f| f.difference).sum::<f64>();
            let mean = |e: &[ExplainedRow<'_>]| {
                e.iter().map(|r| r.base + r.attributions.iter().sum::<f64>()).sum::<f64>() / e.len() as f64
            };
            prop_assert!((total - (mean(&ea) - mean(&eb))).abs() < 1e-9);
            prop_assert!((d.mean_prediction_a - mean(&ea)).abs() < 1e-9);
            prop_assert!((d.mean_prediction_b - mean(&eb)).abs() < 1e-9);
        }
    }
}
