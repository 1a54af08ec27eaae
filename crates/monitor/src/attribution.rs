//! Attribution-based fairness checks: how much of the explained model's behaviour rests on
//! protected features, and which other features could stand in for them.
//!
//! - [`attribution_summary`]: the mean |contribution| of each feature over rows of SHAP
//!   attributions, and the share of the total mean |contribution| carried by the
//!   protected features. A protected feature's share is direct reliance on it.
//! - [`possible_proxies`]: for each protected feature, the non-protected features most
//!   associated with it in the data, with the association measure that fits the pair of
//!   kinds (all in `[0, 1]`, 0 = no association):
//!   - numeric–numeric: `|r|`, the absolute Pearson correlation;
//!   - numeric–categorical: the correlation ratio `η = √(SS_between / SS_total)` of the
//!     numeric values grouped by the categorical levels;
//!   - categorical–categorical: Cramér's `V = √(χ² / (n · (min(r, c) − 1)))` of their
//!     contingency table, without bias correction.
//!
//!   A feature strongly associated with a protected one can carry its information into
//!   the model even when the protected feature itself has no weight; together with its
//!   own mean |contribution| ([`AttributionCheck`]), this is what a reviewer looks at.
//!
//! Missing values (NaN numbers, `None` levels) leave their pair out of an association; a
//! NaN contribution leaves that cell out of its feature's mean.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::Serialize;

use crate::MonitorError;

/// One feature's reliance in a set of attributions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeatureImportance {
    /// The feature's name, as given.
    pub feature: String,
    /// Whether it was named as protected, so that its reliance counts towards
    /// [`AttributionSummary::protected_share`].
    pub protected: bool,
    /// Mean of |contribution| over the rows where it is a number.
    pub mean_abs_contribution: f64,
    /// `mean_abs_contribution` over the sum of all features' mean |contribution|;
    /// `None` when that sum is 0.
    pub share: Option<f64>,
}

/// Mean |contribution| per feature and the protected features' share.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttributionSummary {
    /// Rows of attributions summarised, NaN cells included.
    pub rows: u64,
    /// In the order the features were given.
    pub features: Vec<FeatureImportance>,
    /// Sum of the protected features' mean |contribution|.
    pub protected_mean_abs: f64,
    /// Sum of every feature's mean |contribution|.
    pub total_mean_abs: f64,
    /// `protected_mean_abs / total_mean_abs`; `None` when the total is 0.
    pub protected_share: Option<f64>,
}

impl AttributionSummary {
    /// The mean |contribution| of a feature by name.
    pub fn mean_abs(&self, feature: &str) -> Option<f64> {
        self.features
            .iter()
            .find(|f| f.feature == feature)
            .map(|f| f.mean_abs_contribution)
    }
}

/// Summarises rows of attributions: `rows[i][j]` is feature `features[j]`'s contribution
/// to row `i`. `protected` names the protected features; each must be among `features`.
pub fn attribution_summary<R: AsRef<[f64]>>(
    features: &[impl AsRef<str>],
    protected: &[impl AsRef<str>],
    rows: &[R],
) -> Result<AttributionSummary, MonitorError> {
    let (names, is_protected) = protected_flags(features, protected)?;
    let mut sums = vec![0.0f64; names.len()];
    let mut counts = vec![0u64; names.len()];
    for (i, row) in rows.iter().enumerate() {
        let row = row.as_ref();
        if row.len() != names.len() {
            return Err(MonitorError::RowLength {
                row: i,
                found: row.len(),
                expected: names.len(),
            });
        }
        for (j, c) in row.iter().enumerate() {
            if !c.is_nan() {
                sums[j] += c.abs();
                counts[j] += 1;
            }
        }
    }
    let means: Vec<f64> = sums
        .iter()
        .zip(&counts)
        .map(|(s, &n)| if n == 0 { 0.0 } else { s / n as f64 })
        .collect();
    Ok(summary_of_means(
        &names,
        &is_protected,
        rows.len() as u64,
        &means,
    ))
}

/// Names features and which are protected; checks every protected name is a feature.
pub(crate) fn protected_flags<'a>(
    features: &'a [impl AsRef<str>],
    protected: &[impl AsRef<str>],
) -> Result<(Vec<&'a str>, Vec<bool>), MonitorError> {
    let names: Vec<&str> = features.iter().map(AsRef::as_ref).collect();
    let mut is_protected = vec![false; names.len()];
    for p in protected {
        let p = p.as_ref();
        let j = names
            .iter()
            .position(|n| *n == p)
            .ok_or_else(|| MonitorError::UnknownFeature(p.to_owned()))?;
        is_protected[j] = true;
    }
    Ok((names, is_protected))
}

/// The summary of per-feature mean |contribution|s over `rows` rows.
pub(crate) fn summary_of_means(
    names: &[&str],
    is_protected: &[bool],
    rows: u64,
    means: &[f64],
) -> AttributionSummary {
    let total: f64 = means.iter().sum();
    let protected_mean_abs: f64 = means
        .iter()
        .zip(is_protected)
        .filter(|(_, p)| **p)
        .map(|(m, _)| m)
        .sum();
    let share = |m: f64| (total > 0.0 && total.is_finite()).then(|| m / total);
    AttributionSummary {
        rows,
        features: names
            .iter()
            .zip(means)
            .zip(is_protected)
            .map(|((name, &m), &p)| FeatureImportance {
                feature: (*name).to_owned(),
                protected: p,
                mean_abs_contribution: m,
                share: share(m),
            })
            .collect(),
        protected_mean_abs,
        total_mean_abs: total,
        protected_share: share(protected_mean_abs),
    }
}

/// A feature's values, aligned by row with every other column.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Values<'a> {
    /// Numbers; NaN is missing.
    Numeric(&'a [f64]),
    /// Levels; `None` is missing.
    Categorical(&'a [Option<&'a str>]),
    /// Levels already coded `0 .. levels` (the second field); `u32::MAX` is missing.
    Coded(&'a [u32], usize),
}

impl Values<'_> {
    fn len(&self) -> usize {
        match self {
            Values::Numeric(v) => v.len(),
            Values::Categorical(v) => v.len(),
            Values::Coded(v, _) => v.len(),
        }
    }
}

/// A named column of feature values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Column<'a> {
    /// The feature's name, which the `protected` names refer to.
    pub name: &'a str,
    /// One value per row, aligned with every other column's.
    pub values: Values<'a>,
}

/// The association measure used for a pair of features.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    /// `|r|`, numeric–numeric.
    AbsPearson,
    /// `η`, numeric–categorical.
    CorrelationRatio,
    /// Cramér's `V`, categorical–categorical.
    CramersV,
}

/// An association between two features, in `[0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Association {
    /// Which measure `value` is, fixed by the two features' kinds.
    pub measure: Measure,
    /// In `[0, 1]`: 0 is no association, 1 the strongest the measure can express.
    /// Different measures are not on one scale: compare values of the same measure.
    pub value: f64,
    /// Rows where both values are present.
    pub pairs: u64,
}

/// A non-protected feature strongly associated with a protected one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProxyCandidate {
    /// The protected feature it may stand in for.
    pub protected: String,
    /// The non-protected feature.
    pub feature: String,
    /// How strongly the two are associated; flattened into this object in JSON
    /// (`measure`, `value`, `pairs`).
    #[serde(flatten)]
    pub association: Association,
    /// The candidate's own mean |contribution|, when attributions were summarised
    /// ([`AttributionCheck::new`]).
    pub mean_abs_contribution: Option<f64>,
}

/// Column after preparation: numbers as they are, levels as dense codes.
enum Prepared<'a> {
    Numeric(Cow<'a, [f64]>),
    /// Codes (`u32::MAX` = missing) and the number of levels.
    Categorical(Cow<'a, [u32]>, usize),
}

const MISSING: u32 = u32::MAX;

/// Borrows what needs no work (numbers, valid codes): a million-row column is not
/// copied for each pair it is compared in.
fn prepare<'a>(values: &Values<'a>) -> Prepared<'a> {
    match *values {
        Values::Numeric(v) => Prepared::Numeric(Cow::Borrowed(v)),
        Values::Categorical(v) => {
            let mut codes: HashMap<&str, u32> = HashMap::new();
            let out = v
                .iter()
                .map(|x| match x {
                    None => MISSING,
                    Some(s) => {
                        let next = codes.len() as u32;
                        *codes.entry(s).or_insert(next)
                    }
                })
                .collect();
            Prepared::Categorical(Cow::Owned(out), codes.len())
        }
        Values::Coded(v, levels) => {
            let valid = |c: u32| (c as usize) < levels || c == MISSING;
            if v.iter().all(|&c| valid(c)) {
                Prepared::Categorical(Cow::Borrowed(v), levels)
            } else {
                Prepared::Categorical(
                    Cow::Owned(
                        v.iter()
                            .map(|&c| if (c as usize) < levels { c } else { MISSING })
                            .collect(),
                    ),
                    levels,
                )
            }
        }
    }
}

/// The association between two columns of equal length (see the module docs), or `None`
/// when it is undefined: fewer than two complete pairs, a constant numeric column, or a
/// categorical column with a single level among the pairs.
pub fn association(a: &Values<'_>, b: &Values<'_>) -> Option<Association> {
    if a.len() != b.len() {
        return None;
    }
    associate(&prepare(a), &prepare(b))
}

fn associate(a: &Prepared<'_>, b: &Prepared<'_>) -> Option<Association> {
    match (a, b) {
        (Prepared::Numeric(x), Prepared::Numeric(y)) => pearson_abs(x, y),
        (Prepared::Numeric(x), Prepared::Categorical(g, k))
        | (Prepared::Categorical(g, k), Prepared::Numeric(x)) => correlation_ratio(x, g, *k),
        (Prepared::Categorical(g, k), Prepared::Categorical(h, l)) => cramers_v(g, *k, h, *l),
    }
}

fn pearson_abs(x: &[f64], y: &[f64]) -> Option<Association> {
    let pairs = || {
        x.iter()
            .zip(y)
            .filter(|(a, b)| !a.is_nan() && !b.is_nan())
            .map(|(a, b)| (*a, *b))
    };
    let n = pairs().count();
    if n < 2 {
        return None;
    }
    let mx = crate::stats::mean(pairs().map(|p| p.0))?;
    let my = crate::stats::mean(pairs().map(|p| p.1))?;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in pairs() {
        let (da, db) = (a - mx, b - my);
        sxy += da * db;
        sxx += da * da;
        syy += db * db;
    }
    let denom = (sxx * syy).sqrt();
    if !(denom > 0.0 && denom.is_finite()) {
        return None;
    }
    Some(Association {
        measure: Measure::AbsPearson,
        value: (sxy / denom).abs().min(1.0),
        pairs: n as u64,
    })
}

fn correlation_ratio(x: &[f64], g: &[u32], levels: usize) -> Option<Association> {
    let pairs = || {
        x.iter()
            .zip(g)
            .filter(|(a, c)| !a.is_nan() && **c != MISSING)
            .map(|(a, c)| (*a, *c as usize))
    };
    let n = pairs().count();
    if n < 2 {
        return None;
    }
    let mean = crate::stats::mean(pairs().map(|p| p.0))?;
    let mut sums = vec![0.0f64; levels];
    let mut counts = vec![0u64; levels];
    let mut total = 0.0;
    for (a, c) in pairs() {
        let d = a - mean;
        sums[c] += d;
        counts[c] += 1;
        total += d * d;
    }
    if !(total > 0.0 && total.is_finite()) {
        return None;
    }
    // SS_between = Σ n_g (mean_g − mean)², with mean_g − mean = (Σ_g (x − mean)) / n_g.
    let between: f64 = sums
        .iter()
        .zip(&counts)
        .filter(|(_, n)| **n > 0)
        .map(|(s, &n)| s * s / n as f64)
        .sum();
    Some(Association {
        measure: Measure::CorrelationRatio,
        value: (between / total).clamp(0.0, 1.0).sqrt(),
        pairs: n as u64,
    })
}

fn cramers_v(g: &[u32], k: usize, h: &[u32], l: usize) -> Option<Association> {
    let mut table = vec![0u64; k * l];
    let mut rows = vec![0u64; k];
    let mut cols = vec![0u64; l];
    let mut n = 0u64;
    for (&a, &b) in g.iter().zip(h) {
        if a == MISSING || b == MISSING {
            continue;
        }
        let (a, b) = (a as usize, b as usize);
        table[a * l + b] += 1;
        rows[a] += 1;
        cols[b] += 1;
        n += 1;
    }
    let r = rows.iter().filter(|&&c| c > 0).count();
    let c = cols.iter().filter(|&&c| c > 0).count();
    if n < 2 || r < 2 || c < 2 {
        return None;
    }
    let nf = n as f64;
    let mut chi2 = 0.0;
    for (a, &ra) in rows.iter().enumerate() {
        if ra == 0 {
            continue;
        }
        for (b, &cb) in cols.iter().enumerate() {
            if cb == 0 {
                continue;
            }
            let expected = ra as f64 * cb as f64 / nf;
            let d = table[a * l + b] as f64 - expected;
            chi2 += d * d / expected;
        }
    }
    let v = (chi2 / (nf * (r.min(c) - 1) as f64)).clamp(0.0, 1.0).sqrt();
    Some(Association {
        measure: Measure::CramersV,
        value: v,
        pairs: n,
    })
}

/// For each protected column (in the order of `protected`), the `top_k` non-protected
/// columns most associated with it, strongest first (ties: column order). Pairs whose
/// association is undefined are left out.
pub fn possible_proxies(
    columns: &[Column<'_>],
    protected: &[impl AsRef<str>],
    top_k: usize,
) -> Result<Vec<ProxyCandidate>, MonitorError> {
    let expected = columns.first().map_or(0, |c| c.values.len());
    for c in columns {
        if c.values.len() != expected {
            return Err(MonitorError::ColumnLength {
                column: c.name.to_owned(),
                found: c.values.len(),
                expected,
            });
        }
    }
    let mut protected_idx = Vec::new();
    for p in protected {
        let p = p.as_ref();
        let j = columns
            .iter()
            .position(|c| c.name == p)
            .ok_or_else(|| MonitorError::UnknownFeature(p.to_owned()))?;
        protected_idx.push(j);
    }
    let prepared: Vec<Prepared<'_>> = columns.iter().map(|c| prepare(&c.values)).collect();
    let names: Vec<&str> = columns.iter().map(|c| c.name).collect();
    let mut out = Vec::new();
    for &pi in &protected_idx {
        let found: Vec<(usize, Association)> = (0..columns.len())
            .filter(|j| !protected_idx.contains(j))
            .filter_map(|j| associate(&prepared[pi], &prepared[j]).map(|a| (j, a)))
            .collect();
        out.extend(rank_proxies(columns[pi].name, &names, found, top_k));
    }
    Ok(out)
}

/// The `top_k` strongest of the associations `found` between protected column
/// `protected` and the columns named by `names` (each found as its index in `names`),
/// strongest first, ties by column order: how [`possible_proxies`] ranks, for callers
/// that compute the associations column by column themselves.
pub fn rank_proxies(
    protected: &str,
    names: &[impl AsRef<str>],
    mut found: Vec<(usize, Association)>,
    top_k: usize,
) -> Vec<ProxyCandidate> {
    found.sort_by(|x, y| y.1.value.total_cmp(&x.1.value).then(x.0.cmp(&y.0)));
    found
        .into_iter()
        .take(top_k)
        .filter_map(|(j, association)| {
            Some(ProxyCandidate {
                protected: protected.to_owned(),
                feature: names.get(j)?.as_ref().to_owned(),
                association,
                mean_abs_contribution: None,
            })
        })
        .collect()
}

/// Attribution summary and possible proxies together, each proxy carrying its own mean
/// |contribution|: a strongly associated feature with a large contribution is the
/// pattern to review.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttributionCheck {
    /// The summary the proxies' contributions were taken from.
    pub summary: AttributionSummary,
    /// The possible proxies in the order [`possible_proxies`] gave them, each with
    /// `mean_abs_contribution` filled in (`None` for a feature the summary lacks).
    pub proxies: Vec<ProxyCandidate>,
}

impl AttributionCheck {
    /// Fills each proxy's `mean_abs_contribution` from the summary.
    pub fn new(summary: AttributionSummary, mut proxies: Vec<ProxyCandidate>) -> Self {
        for p in &mut proxies {
            p.mean_abs_contribution = summary.mean_abs(&p.feature);
        }
        Self { summary, proxies }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn summary_by_hand() {
        // Contributions (a, b, sex):
        //   row 1:  0.5, −0.2,  0.1
        //   row 2: −0.3,  0.4, −0.1
        //   row 3:  NaN,  0.0,  0.4
        // mean |a| = (0.5 + 0.3)/2 = 0.4 (NaN left out), |b| = 0.6/3 = 0.2,
        // |sex| = 0.6/3 = 0.2; total 0.8; protected share 0.2/0.8 = 0.25.
        let rows = vec![
            vec![0.5, -0.2, 0.1],
            vec![-0.3, 0.4, -0.1],
            vec![f64::NAN, 0.0, 0.4],
        ];
        let s = attribution_summary(&["a", "b", "sex"], &["sex"], &rows).unwrap();
        assert_eq!(s.rows, 3);
        assert!(close(s.features[0].mean_abs_contribution, 0.4));
        assert!(close(s.features[1].mean_abs_contribution, 0.2));
        assert!(close(s.features[2].mean_abs_contribution, 0.2));
        assert!(s.features[2].protected && !s.features[0].protected);
        assert!(close(s.total_mean_abs, 0.8));
        assert!(close(s.protected_share.unwrap(), 0.25));
        assert!(close(s.features[0].share.unwrap(), 0.5));
        assert!(attribution_summary(&["a"], &["b"], &rows).is_err());
        assert!(attribution_summary(&["a", "b"], &["a"], &rows).is_err());
        let none: Vec<Vec<f64>> = Vec::new();
        let s = attribution_summary(&["a"], &["a"], &none).unwrap();
        assert_eq!(s.protected_share, None);
    }

    #[test]
    fn pearson_by_hand() {
        // x = 1, 2, 3, 4; y = 2, 4, 5, 9: means 2.5 and 5;
        // dx = −1.5 −0.5 0.5 1.5, dy = −3 −1 0 4:
        // Sxy = 4.5 + 0.5 + 0 + 6 = 11, Sxx = 5, Syy = 9 + 1 + 0 + 16 = 26;
        // r = 11/√130 = 0.964764. Negating y keeps |r|.
        let x = [1.0, 2.0, 3.0, 4.0, f64::NAN];
        let y = [2.0, 4.0, 5.0, 9.0, 1.0];
        let a = association(&Values::Numeric(&x), &Values::Numeric(&y)).unwrap();
        assert_eq!(a.measure, Measure::AbsPearson);
        assert_eq!(a.pairs, 4);
        assert!(close(a.value, 11.0 / 130f64.sqrt()));
        let ny: Vec<f64> = y.iter().map(|v| -v).collect();
        let b = association(&Values::Numeric(&x), &Values::Numeric(&ny)).unwrap();
        assert!(close(b.value, a.value));
        assert_eq!(
            association(&Values::Numeric(&[1.0, 1.0]), &Values::Numeric(&[1.0, 2.0])),
            None
        );
    }

    #[test]
    fn correlation_ratio_by_hand() {
        // x = 1, 2, 3 in level a and 7, 8, 9 in level b: mean 5;
        // SS_total = 16+9+4+4+9+16 = 58, SS_between = 3·(2−5)² + 3·(8−5)² = 54;
        // η = √(54/58) = 0.964901.
        let x = [1.0, 2.0, 3.0, 7.0, 8.0, 9.0, 100.0];
        let g = [
            Some("a"),
            Some("a"),
            Some("a"),
            Some("b"),
            Some("b"),
            Some("b"),
            None,
        ];
        let a = association(&Values::Numeric(&x), &Values::Categorical(&g)).unwrap();
        assert_eq!(a.measure, Measure::CorrelationRatio);
        assert_eq!(a.pairs, 6);
        assert!(close(a.value, (54.0f64 / 58.0).sqrt()));
        // Symmetric in argument order.
        let b = association(&Values::Categorical(&g), &Values::Numeric(&x)).unwrap();
        assert!(close(a.value, b.value));
    }

    #[test]
    fn cramers_v_by_hand() {
        // Table (rows u, v; columns p, q):  u: 3 1 | v: 1 3, n = 8.
        // Expected 2 everywhere; χ² = 4 · (1²/2) = 2; V = √(2 / (8 · 1)) = 0.5.
        let g = [
            Some("u"),
            Some("u"),
            Some("u"),
            Some("u"),
            Some("v"),
            Some("v"),
            Some("v"),
            Some("v"),
        ];
        let h = [
            Some("p"),
            Some("p"),
            Some("p"),
            Some("q"),
            Some("p"),
            Some("q"),
            Some("q"),
            Some("q"),
        ];
        let a = association(&Values::Categorical(&g), &Values::Categorical(&h)).unwrap();
        assert_eq!(a.measure, Measure::CramersV);
        assert!(close(a.value, 0.5));
        // Perfect association.
        let a = association(&Values::Categorical(&g), &Values::Categorical(&g)).unwrap();
        assert!(close(a.value, 1.0));
    }

    #[test]
    fn proxies_rank_and_join_attributions() {
        // sex is categorical; "height" follows it closely, "noise" does not, "title" is a
        // relabelling of it.
        let sex = [
            Some("f"),
            Some("m"),
            Some("f"),
            Some("m"),
            Some("f"),
            Some("m"),
        ];
        let title = [
            Some("ms"),
            Some("mr"),
            Some("ms"),
            Some("mr"),
            Some("ms"),
            Some("mr"),
        ];
        let height = [160.0, 180.0, 162.0, 178.0, 165.0, 181.0];
        let noise = [1.0, 2.0, 2.0, 1.0, 1.5, 1.5];
        let columns = [
            Column {
                name: "sex",
                values: Values::Categorical(&sex),
            },
            Column {
                name: "noise",
                values: Values::Numeric(&noise),
            },
            Column {
                name: "height",
                values: Values::Numeric(&height),
            },
            Column {
                name: "title",
                values: Values::Categorical(&title),
            },
        ];
        let p = possible_proxies(&columns, &["sex"], 2).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].feature, "title");
        assert!(close(p[0].association.value, 1.0));
        assert_eq!(p[1].feature, "height");
        assert!(p[1].association.value > 0.9);
        let rows = vec![vec![0.1, 0.0, 0.3, 0.2]; 3];
        let s = attribution_summary(&["sex", "noise", "height", "title"], &["sex"], &rows).unwrap();
        let check = AttributionCheck::new(s, p);
        assert!(close(check.proxies[0].mean_abs_contribution.unwrap(), 0.2));
        let json = serde_json::to_value(&check).unwrap();
        assert_eq!(json["proxies"][0]["measure"], "cramers_v");
        assert!(possible_proxies(&columns, &["age"], 2).is_err());
        let short = [
            Column {
                name: "a",
                values: Values::Numeric(&[1.0]),
            },
            columns[0],
        ];
        assert!(possible_proxies(&short, &["a"], 2).is_err());
    }
}
