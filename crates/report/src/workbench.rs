//! The developer's workbench over a [`Frame`] of recorded explanations: what the model
//! relied on over a period and against the period before it, why one cohort's
//! predictions differ from another's, how one feature's value moves its contribution
//! (dependence), and where the surrogate or the model errs most (slices).
//!
//! Everything here is computed from the frame alone: the admin API and the command line
//! read the frame (bounded) and hand it over.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value as Json;
use sidelight_monitor::workbench::{
    CohortDifference, ExplainedRow as Row, cohort_difference, global_summary,
};

use crate::explained::{ExplainedRow, Frame, Stop};

/// What was wrong with a workbench question; the message names the parameter.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WorkbenchError {
    /// A filter or parameter names a feature the route's explanations do not have.
    #[error("`{key}`: the route's explanations have no feature `{feature}`; they have: {known}")]
    UnknownFeature {
        key: String,
        feature: String,
        known: String,
    },
    /// A filter that cannot be read.
    #[error("`{key}`: {message}")]
    BadFilter { key: String, message: String },
    /// Nothing to compute from.
    #[error("{0}")]
    Empty(String),
    /// The pure computation refused the rows.
    #[error("{0}")]
    Compute(String),
}

/// Features whose values are personal: marked `pii`, or kept by the route's privacy
/// policy in any form but as they were (pseudonymised, banded, dropped…). The workbench
/// never shows, filters on or exports their values, whoever asks.
pub fn personal_features(route: &sidelight_config::RouteConfig) -> Vec<String> {
    let mut personal: Vec<String> = route
        .explain
        .as_ref()
        .map(|e| {
            e.features
                .iter()
                .filter(|f| f.pii)
                .map(|f| f.name.clone())
                .collect()
        })
        .unwrap_or_default();
    for (name, rule) in &route.privacy.fields {
        let kept = rule
            .parse::<sidelight_audit::FieldRule>()
            .is_ok_and(|r| r == sidelight_audit::FieldRule::Keep);
        if !kept && !personal.contains(name) {
            personal.push(name.clone());
        }
    }
    personal
}

/// Hour or day buckets for the series of a summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Bucket {
    Hour,
    Day,
}

impl Bucket {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "hour" => Some(Self::Hour),
            "day" => Some(Self::Day),
            _ => None,
        }
    }

    pub fn millis(self) -> i64 {
        match self {
            Self::Hour => 3_600_000,
            Self::Day => 86_400_000,
        }
    }
}

/// How much was read, and whether it is the whole period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Coverage {
    pub from_ms: i64,
    pub to_ms: i64,
    /// Explained rows behind the figures.
    pub rows: u64,
    /// Records without attributions (erased, or not explained).
    pub unexplained_records: u64,
    /// Rows over another feature set or space, left out.
    pub other_features: u64,
    /// Set when the read stopped short: `row_cap` or `time_budget`.
    pub truncated: Option<Stop>,
    /// How far the read got when it stopped short.
    pub through_ms: Option<i64>,
}

impl Coverage {
    pub fn of(frame: &Frame, from_ms: i64, to_ms: i64) -> Self {
        Self {
            from_ms,
            to_ms,
            rows: frame.rows.len() as u64,
            unexplained_records: frame.unexplained_records,
            other_features: frame.other_features,
            truncated: frame.stopped,
            through_ms: frame.through_ms,
        }
    }
}

/// Mean |contribution| and mean signed contribution over some rows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Means {
    pub rows: u64,
    pub mean_abs: f64,
    pub mean: f64,
}

/// One point of a feature's series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    /// The bucket's start, unix milliseconds.
    pub start_ms: i64,
    #[serde(flatten)]
    pub means: Means,
}

/// One feature's place in a summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeatureFigures {
    pub feature: String,
    #[serde(flatten)]
    pub means: Means,
    /// The same figures over the previous period; `None` when it has no rows with this
    /// feature.
    pub previous: Option<Means>,
    /// `means − previous`, when there is a previous.
    pub change: Option<Change>,
    /// Per bucket, oldest first (buckets without rows are left out).
    pub series: Vec<Point>,
    /// At most [`STRIP_POINTS`] predictions spread over the period: each one's
    /// contribution, and its value's place between the feature's lowest (0) and highest
    /// (1) number, for a beeswarm-like strip; `None` for text values and personal
    /// features.
    pub strip: Vec<StripPoint>,
}

/// Points of a feature's strip at most.
pub const STRIP_POINTS: usize = 200;

/// One prediction on a feature's strip.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StripPoint {
    pub contribution: f64,
    pub value: Option<f64>,
}

/// Each feature's strip over `frame`, by feature name.
fn strips(frame: &Frame, masked: &[String]) -> BTreeMap<String, Vec<StripPoint>> {
    let step = frame.rows.len().div_ceil(STRIP_POINTS).max(1);
    frame
        .names
        .iter()
        .enumerate()
        .map(|(k, name)| {
            let hidden = masked.contains(name);
            let numbers: Vec<f64> = frame
                .rows
                .iter()
                .filter_map(|r| numeric(&r.values[k]))
                .collect();
            let lo = numbers.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = numbers.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let place = |v: &Json| {
                let x = numeric(v)?;
                Some(if hi > lo { (x - lo) / (hi - lo) } else { 0.5 })
            };
            let points = frame
                .rows
                .iter()
                .step_by(step)
                .map(|r| StripPoint {
                    contribution: r.contributions[k],
                    value: if hidden { None } else { place(&r.values[k]) },
                })
                .collect();
            (name.clone(), points)
        })
        .collect()
}

/// A change against the previous period.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Change {
    pub mean_abs: f64,
    pub mean: f64,
}

/// What the model relied on over a period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub route: String,
    /// The explanation space of every figure.
    pub space: Option<String>,
    pub period: Coverage,
    pub previous_period: Coverage,
    pub bucket: Bucket,
    /// By mean |contribution| in the period, largest first.
    pub features: Vec<FeatureFigures>,
}

fn rows_of(frame: &Frame) -> Vec<Row<'_>> {
    frame.rows.iter().map(ExplainedRow::as_explained).collect()
}

fn means_by_feature(
    names: &[String],
    rows: &[Row<'_>],
) -> Result<BTreeMap<String, Means>, WorkbenchError> {
    if rows.is_empty() {
        return Ok(BTreeMap::new());
    }
    let summary =
        global_summary(names, rows).map_err(|e| WorkbenchError::Compute(e.to_string()))?;
    Ok(summary
        .features
        .into_iter()
        .map(|f| {
            (
                f.feature,
                Means {
                    rows: summary.rows,
                    mean_abs: f.mean_abs,
                    mean: f.mean,
                },
            )
        })
        .collect())
}

/// The summary of `current` (the period `[from_ms, to_ms)`), with changes against
/// `previous` (the period of the same length just before it) and a series per bucket.
pub fn summary(
    route: &str,
    (current, from_ms, to_ms): (&Frame, i64, i64),
    previous: &Frame,
    bucket: Bucket,
    masked: &[String],
) -> Result<Summary, WorkbenchError> {
    let length = to_ms.saturating_sub(from_ms);
    let rows = rows_of(current);
    let now = means_by_feature(&current.names, &rows)?;
    // A previous period in another space is not comparable.
    let before = if previous.space.is_none() || previous.space == current.space {
        means_by_feature(&previous.names, &rows_of(previous))?
    } else {
        BTreeMap::new()
    };
    let width = bucket.millis();
    let mut buckets: BTreeMap<i64, Vec<Row<'_>>> = BTreeMap::new();
    for (row, explained) in current.rows.iter().zip(&rows) {
        // Aligned to UTC hours and days, whatever minute the period starts at.
        let start = row.time_ms.div_euclid(width) * width;
        buckets.entry(start).or_default().push(explained.clone());
    }
    let mut series: BTreeMap<String, Vec<Point>> = BTreeMap::new();
    for (start, rows) in &buckets {
        for (feature, means) in means_by_feature(&current.names, rows)? {
            series.entry(feature).or_default().push(Point {
                start_ms: *start,
                means,
            });
        }
    }
    let mut strips = strips(current, masked);
    let mut features: Vec<FeatureFigures> = now
        .into_iter()
        .map(|(feature, means)| {
            let previous = before.get(&feature).copied();
            FeatureFigures {
                change: previous.map(|p| Change {
                    mean_abs: means.mean_abs - p.mean_abs,
                    mean: means.mean - p.mean,
                }),
                previous,
                series: series.remove(&feature).unwrap_or_default(),
                strip: strips.remove(&feature).unwrap_or_default(),
                feature,
                means,
            }
        })
        .collect();
    features.sort_by(|a, b| {
        b.means
            .mean_abs
            .total_cmp(&a.means.mean_abs)
            .then_with(|| a.feature.cmp(&b.feature))
    });
    Ok(Summary {
        route: route.to_owned(),
        space: current.space.clone(),
        period: Coverage::of(current, from_ms, to_ms),
        previous_period: Coverage::of(previous, from_ms.saturating_sub(length), from_ms),
        bucket,
        features,
    })
}

/// What a cohort condition looks at.
#[derive(Debug, Clone, PartialEq)]
enum Field {
    Feature(usize),
    /// The model's answer against the route's threshold: `favourable` / `unfavourable`.
    Decision,
    /// The reported outcome: `favourable`, `unfavourable` or `unknown`.
    Outcome,
    ReviewState,
    SurrogateVersion,
}

#[derive(Debug, Clone, PartialEq)]
enum Test {
    Is(String),
    IsNot(String),
    /// `lo..hi`: `lo <= x < hi`, either end open when left out.
    Range(Option<f64>, Option<f64>),
}

/// One condition of a cohort: `field=value`, `field!=value` or `field=lo..hi`.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    field: Field,
    test: Test,
}

/// Rows meeting every condition.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Cohort {
    conditions: Vec<Condition>,
    /// As given, for the answer.
    pub text: Vec<String>,
}

/// The fields a cohort condition may name besides features.
pub const COHORT_FIELDS: &str = "decision, outcome, review_state, surrogate_version";

impl Cohort {
    /// Reads the conditions given under `key` (`a` or `b`), each `field=value`,
    /// `field!=value` or `field=lo..hi`, against the frame's features. Features in
    /// `masked` (personal data) cannot be filtered on.
    pub fn parse(
        key: &str,
        texts: &[String],
        names: &[String],
        masked: &[String],
    ) -> Result<Self, WorkbenchError> {
        let mut conditions = Vec::new();
        for text in texts {
            let bad = |message: String| WorkbenchError::BadFilter {
                key: key.to_owned(),
                message,
            };
            let (field, value, negated) = if let Some((f, v)) = text.split_once("!=") {
                (f, v, true)
            } else if let Some((f, v)) = text.split_once('=') {
                (f, v, false)
            } else {
                return Err(bad(format!(
                    "`{text}` is not `field=value`, `field!=value` or `field=lo..hi`"
                )));
            };
            let field = field.trim();
            let value = value.trim();
            if field.is_empty() || value.is_empty() {
                return Err(bad(format!("`{text}` needs a field and a value")));
            }
            let parsed_field = match field {
                "decision" => Field::Decision,
                "outcome" => Field::Outcome,
                "review_state" => Field::ReviewState,
                "surrogate_version" => Field::SurrogateVersion,
                feature => {
                    if masked.iter().any(|m| m == feature) {
                        return Err(bad(format!(
                            "`{feature}` is personal data (marked pii): cohorts cannot be drawn on it"
                        )));
                    }
                    let Some(i) = names.iter().position(|n| n == feature) else {
                        return Err(WorkbenchError::UnknownFeature {
                            key: key.to_owned(),
                            feature: feature.to_owned(),
                            known: format!("{}, and {COHORT_FIELDS}", names.join(", ")),
                        });
                    };
                    Field::Feature(i)
                }
            };
            let allowed: Option<&[&str]> = match parsed_field {
                Field::Decision => Some(&["favourable", "unfavourable"]),
                Field::Outcome => Some(&["favourable", "unfavourable", "unknown"]),
                _ => None,
            };
            if let Some(allowed) = allowed {
                if !allowed.contains(&value) {
                    return Err(bad(format!(
                        "`{field}` is one of {}, not `{value}`",
                        allowed.join(", ")
                    )));
                }
            }
            let test = match value.split_once("..") {
                Some((lo, hi)) if !negated => {
                    let end = |s: &str| -> Result<Option<f64>, WorkbenchError> {
                        let s = s.trim();
                        if s.is_empty() {
                            return Ok(None);
                        }
                        s.parse::<f64>()
                            .ok()
                            .filter(|x| x.is_finite())
                            .map(Some)
                            .ok_or_else(|| {
                                bad(format!("`{text}`: `{s}` is not a number for a range"))
                            })
                    };
                    let (lo, hi) = (end(lo)?, end(hi)?);
                    if lo.is_none() && hi.is_none() {
                        return Err(bad(format!("`{text}`: a range needs at least one end")));
                    }
                    Test::Range(lo, hi)
                }
                _ if negated => Test::IsNot(value.to_owned()),
                _ => Test::Is(value.to_owned()),
            };
            conditions.push(Condition {
                field: parsed_field,
                test,
            });
        }
        Ok(Self {
            conditions,
            text: texts.to_vec(),
        })
    }

    pub fn is_everyone(&self) -> bool {
        self.conditions.is_empty()
    }

    pub fn contains(&self, row: &ExplainedRow) -> bool {
        self.conditions.iter().all(|c| c.holds(row))
    }
}

fn word(favourable: Option<bool>) -> &'static str {
    match favourable {
        Some(true) => "favourable",
        Some(false) => "unfavourable",
        None => "unknown",
    }
}

/// A value as text, as a filter compares it: strings as they are, numbers as JSON
/// writes them.
fn as_text(value: &Json) -> String {
    match value {
        Json::String(s) => s.clone(),
        Json::Null => String::new(),
        other => other.to_string(),
    }
}

impl Condition {
    fn holds(&self, row: &ExplainedRow) -> bool {
        let number: Option<f64>;
        let text: String = match &self.field {
            Field::Feature(i) => {
                let value = row.values.get(*i).unwrap_or(&Json::Null);
                number = match value {
                    Json::Number(n) => n.as_f64(),
                    Json::String(s) => s.trim().parse().ok(),
                    _ => None,
                };
                as_text(value)
            }
            Field::Decision => {
                number = None;
                word(row.favourable).to_owned()
            }
            Field::Outcome => {
                number = None;
                word(row.outcome_favourable).to_owned()
            }
            Field::ReviewState => {
                number = None;
                row.review_state.clone()
            }
            Field::SurrogateVersion => {
                number = row.surrogate_version.map(|v| v as f64);
                row.surrogate_version
                    .map(|v| v.to_string())
                    .unwrap_or_default()
            }
        };
        let same = |wanted: &str| {
            text == wanted || number.is_some_and(|x| wanted.parse::<f64>().is_ok_and(|w| w == x))
        };
        match &self.test {
            Test::Is(wanted) => same(wanted),
            Test::IsNot(wanted) => !same(wanted),
            Test::Range(lo, hi) => {
                number.is_some_and(|x| lo.is_none_or(|lo| x >= lo) && hi.is_none_or(|hi| x < hi))
            }
        }
    }
}

/// Two cohorts side by side.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CohortAnswer {
    pub route: String,
    pub space: Option<String>,
    pub period: Coverage,
    /// Cohort A's conditions, as given.
    pub a: Vec<String>,
    /// Cohort B's conditions; empty: every row not in A.
    pub b: Vec<String>,
    /// Share of favourable answers in each cohort, where the route has a decision.
    pub favourable_a: Option<f64>,
    pub favourable_b: Option<f64>,
    #[serde(flatten)]
    pub difference: CohortDifference,
}

/// The difference of cohort `a` from cohort `b` (or from every other row when `b` has
/// no condition) over the frame.
pub fn cohorts(
    route: &str,
    (frame, from_ms, to_ms): (&Frame, i64, i64),
    a: &Cohort,
    b: &Cohort,
    min_rows: usize,
) -> Result<CohortAnswer, WorkbenchError> {
    let (mut in_a, mut in_b) = (Vec::new(), Vec::new());
    for row in &frame.rows {
        let is_a = a.contains(row);
        if is_a {
            in_a.push(row);
        }
        if (b.is_everyone() && !is_a) || (!b.is_everyone() && b.contains(row)) {
            in_b.push(row);
        }
    }
    for (name, rows) in [("a", &in_a), ("b", &in_b)] {
        if rows.is_empty() {
            return Err(WorkbenchError::Empty(format!(
                "cohort {name} has no explained rows in the period ({} rows read)",
                frame.rows.len()
            )));
        }
        // A cohort of a handful of rows would show those rows' own figures.
        if rows.len() < min_rows {
            return Err(WorkbenchError::Empty(format!(
                "cohort {name} has {} explained rows in the period, fewer than the {min_rows} \
                 a comparison needs to stay an aggregate",
                rows.len()
            )));
        }
    }
    let view_a: Vec<Row<'_>> = in_a.iter().map(|r| r.as_explained()).collect();
    let view_b: Vec<Row<'_>> = in_b.iter().map(|r| r.as_explained()).collect();
    let difference = cohort_difference(&frame.names, &view_a, &view_b)
        .map_err(|e| WorkbenchError::Compute(e.to_string()))?;
    let share = |rows: &[&ExplainedRow]| {
        let known: Vec<bool> = rows.iter().filter_map(|r| r.favourable).collect();
        (!known.is_empty())
            .then(|| known.iter().filter(|f| **f).count() as f64 / known.len() as f64)
    };
    Ok(CohortAnswer {
        route: route.to_owned(),
        space: frame.space.clone(),
        period: Coverage::of(frame, from_ms, to_ms),
        a: a.text.clone(),
        b: b.text.clone(),
        favourable_a: share(&in_a),
        favourable_b: share(&in_b),
        difference,
    })
}

/// One point of a dependence plot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DependencePoint {
    /// The feature's value, as recorded.
    pub value: Json,
    pub contribution: f64,
    /// The colouring feature's value on the same row.
    pub colour: Json,
}

/// A feature's value against its contribution.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dependence {
    pub route: String,
    pub feature: String,
    pub space: Option<String>,
    pub period: Coverage,
    /// The feature its contribution varies with most besides its own value (the
    /// strongest |correlation| of its contribution with another numeric feature's
    /// value, among rows with the same value of this feature).
    pub colour_feature: Option<String>,
    /// At most `max_points` rows, spread evenly over the period.
    pub points: Vec<DependencePoint>,
}

/// The dependence of `feature`'s contribution on its value, coloured by the feature it
/// interacts with most, on at most `max_points` points.
pub fn dependence(
    route: &str,
    (frame, from_ms, to_ms): (&Frame, i64, i64),
    feature: &str,
    masked: &[String],
    max_points: usize,
) -> Result<Dependence, WorkbenchError> {
    if masked.iter().any(|m| m == feature) {
        return Err(WorkbenchError::BadFilter {
            key: "feature".to_owned(),
            message: format!("`{feature}` is personal data (marked pii): its values are not shown"),
        });
    }
    let Some(k) = frame.names.iter().position(|n| n == feature) else {
        return Err(WorkbenchError::UnknownFeature {
            key: "feature".to_owned(),
            feature: feature.to_owned(),
            known: frame.names.join(", "),
        });
    };
    if frame.rows.is_empty() {
        return Err(WorkbenchError::Empty(
            "no explained rows in the period".to_owned(),
        ));
    }
    let colour = interacting(frame, k, masked);
    let n = frame.rows.len();
    let step = n.div_ceil(max_points.max(1)).max(1);
    let points = frame
        .rows
        .iter()
        .step_by(step)
        .map(|row| DependencePoint {
            value: row.values[k].clone(),
            contribution: row.contributions[k],
            colour: colour.map_or(Json::Null, |c| row.values[c].clone()),
        })
        .collect();
    Ok(Dependence {
        route: route.to_owned(),
        feature: feature.to_owned(),
        space: frame.space.clone(),
        period: Coverage::of(frame, from_ms, to_ms),
        colour_feature: colour.map(|c| frame.names[c].clone()),
        points,
    })
}

fn numeric(value: &Json) -> Option<f64> {
    match value {
        Json::Number(n) => n.as_f64(),
        Json::Bool(b) => Some(f64::from(u8::from(*b))),
        _ => None,
    }
}

/// The feature whose value explains most of what is left of feature `k`'s
/// contribution once its own value is accounted for: the contribution minus the mean
/// contribution at the same value (or in the same tenth of the rows by value, for a
/// numeric feature), correlated with each other numeric feature's value (levels of a
/// categorical one are compared by their mean residual). shap's dependence plot colours
/// by a similar choice.
fn interacting(frame: &Frame, k: usize, masked: &[String]) -> Option<usize> {
    let rows = &frame.rows;
    // Residuals of k's contribution after its own value.
    let mut keyed: Vec<(String, f64, usize)> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| (as_text(&r.values[k]), r.contributions[k], i))
        .collect();
    let all_numeric = rows.iter().all(|r| numeric(&r.values[k]).is_some());
    let groups: Vec<Vec<usize>> = if all_numeric {
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by(|a, b| {
            numeric(&rows[*a].values[k])
                .unwrap_or(0.0)
                .total_cmp(&numeric(&rows[*b].values[k]).unwrap_or(0.0))
        });
        let size = order.len().div_ceil(10).max(1);
        order.chunks(size).map(<[usize]>::to_vec).collect()
    } else {
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut last: Option<&str> = None;
        for (key, _, i) in &keyed {
            if last != Some(key.as_str()) {
                groups.push(Vec::new());
                last = Some(key);
            }
            if let Some(g) = groups.last_mut() {
                g.push(*i);
            }
        }
        groups
    };
    let mut residual = vec![0.0; rows.len()];
    for group in &groups {
        let mean =
            group.iter().map(|i| rows[*i].contributions[k]).sum::<f64>() / group.len() as f64;
        for i in group {
            residual[*i] = rows[*i].contributions[k] - mean;
        }
    }
    let mut best: Option<(usize, f64)> = None;
    for (j, name) in frame.names.iter().enumerate() {
        if j == k || masked.contains(name) {
            continue;
        }
        let xs: Vec<f64> = match rows.iter().map(|r| numeric(&r.values[j])).collect() {
            Some(xs) => xs,
            // A categorical feature of a few levels: each level stands for its
            // residuals' mean (with many levels that would fit the residuals by itself).
            None => {
                let distinct: std::collections::BTreeSet<String> =
                    rows.iter().map(|r| as_text(&r.values[j])).collect();
                if distinct.len() > 20 || distinct.len() * 5 > rows.len() {
                    continue;
                }
                let mut by_level: BTreeMap<String, (f64, usize)> = BTreeMap::new();
                for (r, e) in rows.iter().zip(&residual) {
                    let slot = by_level.entry(as_text(&r.values[j])).or_default();
                    slot.0 += e;
                    slot.1 += 1;
                }
                rows.iter()
                    .map(|r| {
                        let (sum, n) = by_level[&as_text(&r.values[j])];
                        sum / n as f64
                    })
                    .collect()
            }
        };
        if let Some(r) = correlation(&xs, &residual) {
            if best.is_none_or(|(_, b)| r.abs() > b) {
                best = Some((j, r.abs()));
            }
        }
    }
    best.filter(|(_, r)| *r > 0.0).map(|(j, _)| j)
}

fn correlation(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len() as f64;
    if x.len() < 3 {
        return None;
    }
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

/// One slice of the rows where the surrogate or the model errs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Slice {
    /// The conditions that draw it, as a cohort filter (`feature=value` or
    /// `feature=lo..hi`), so that it can be asked for as a cohort.
    pub conditions: Vec<String>,
    pub rows: u64,
    /// Mean |model's answer − surrogate's| in the explanation space, over rows where
    /// both are known.
    pub surrogate_error: Option<f64>,
    /// Share of rows with a reported outcome whose outcome differs from the model's
    /// decision.
    pub model_error_rate: Option<f64>,
    /// Rows with a reported, readable outcome.
    pub rows_with_outcome: u64,
    /// Record ids of up to five rows of the slice, for their pages.
    pub examples: Vec<String>,
}

/// Slices ranked by where things go wrong.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Slices {
    pub route: String,
    pub space: Option<String>,
    pub period: Coverage,
    /// Over every row: the figures each slice is compared with.
    pub overall: Slice,
    /// By the surrogate's mean error there, largest first.
    pub by_surrogate_error: Vec<Slice>,
    /// By the model's error rate against reported outcomes, largest first (empty when
    /// no outcome was reported).
    pub by_model_error: Vec<Slice>,
}

/// Levels or value ranges of each feature (and pairs of the worst ones), at least
/// `min_rows` rows each, ranked by the surrogate's error and by the model's error rate.
pub fn slices(
    route: &str,
    (frame, from_ms, to_ms): (&Frame, i64, i64),
    masked: &[String],
    min_rows: usize,
    top: usize,
) -> Result<Slices, WorkbenchError> {
    if frame.rows.is_empty() {
        return Err(WorkbenchError::Empty(
            "no explained rows in the period".to_owned(),
        ));
    }
    let every: Vec<usize> = (0..frame.rows.len()).collect();
    let mut single: Vec<(String, Vec<usize>)> = Vec::new();
    for (k, name) in frame.names.iter().enumerate() {
        if masked.contains(name) {
            continue;
        }
        single.extend(levels(frame, k, name));
    }
    single.retain(|(_, rows)| rows.len() >= min_rows.max(1) && rows.len() < frame.rows.len());
    let slice = |conditions: Vec<String>, rows: &[usize]| figure(frame, conditions, rows);
    let mut candidates: Vec<Slice> = single
        .iter()
        .map(|(c, rows)| slice(vec![c.clone()], rows))
        .collect();
    // Pairs of the eight worst single slices by either measure, on distinct features.
    let mut worst: Vec<usize> = (0..single.len()).collect();
    let key = |s: &Slice| s.surrogate_error.unwrap_or(0.0) + s.model_error_rate.unwrap_or(0.0);
    worst.sort_by(|a, b| key(&candidates[*b]).total_cmp(&key(&candidates[*a])));
    worst.truncate(8);
    for (x, &i) in worst.iter().enumerate() {
        for &j in &worst[x + 1..] {
            let feature = |c: &str| c.split('=').next().unwrap_or_default().to_owned();
            if feature(&single[i].0) == feature(&single[j].0) {
                continue;
            }
            let both = intersection(&single[i].1, &single[j].1);
            if both.len() >= min_rows.max(1) {
                candidates.push(slice(vec![single[i].0.clone(), single[j].0.clone()], &both));
            }
        }
    }
    let rank = |measure: fn(&Slice) -> Option<f64>| {
        let mut ranked: Vec<Slice> = candidates
            .iter()
            .filter(|s| measure(s).is_some())
            .cloned()
            .collect();
        ranked.sort_by(|a, b| {
            measure(b)
                .unwrap_or(0.0)
                .total_cmp(&measure(a).unwrap_or(0.0))
                .then_with(|| b.rows.cmp(&a.rows))
        });
        ranked.truncate(top);
        ranked
    };
    Ok(Slices {
        route: route.to_owned(),
        space: frame.space.clone(),
        period: Coverage::of(frame, from_ms, to_ms),
        overall: figure(frame, Vec::new(), &every),
        by_surrogate_error: rank(|s| s.surrogate_error),
        by_model_error: rank(|s| s.model_error_rate),
    })
}

/// The rows in both ascending lists, in one pass.
fn intersection(a: &[usize], b: &[usize]) -> Vec<usize> {
    let (mut i, mut j, mut both) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                both.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    both
}

/// A feature's slices: its levels, or, for a numeric feature with many values, its
/// quartiles as ranges.
fn levels(frame: &Frame, k: usize, name: &str) -> Vec<(String, Vec<usize>)> {
    let rows = &frame.rows;
    let numbers: Option<Vec<f64>> = rows.iter().map(|r| numeric(&r.values[k])).collect();
    let mut by_level: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        by_level.entry(as_text(&r.values[k])).or_default().push(i);
    }
    match numbers {
        Some(xs) if by_level.len() > 8 => {
            let mut sorted = xs.clone();
            sorted.sort_by(f64::total_cmp);
            let cut = |q: usize| sorted[(sorted.len() - 1) * q / 4];
            let mut edges = vec![cut(1), cut(2), cut(3)];
            edges.dedup();
            let mut out = Vec::new();
            let mut lo: Option<f64> = None;
            for hi in edges.iter().map(|e| Some(*e)).chain([None]) {
                let members: Vec<usize> = xs
                    .iter()
                    .enumerate()
                    .filter(|(_, x)| lo.is_none_or(|l| **x >= l) && hi.is_none_or(|h| **x < h))
                    .map(|(i, _)| i)
                    .collect();
                let show = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
                out.push((format!("{name}={}..{}", show(lo), show(hi)), members));
                lo = hi;
            }
            out
        }
        _ => by_level
            .into_iter()
            .filter(|(level, _)| !level.is_empty())
            .map(|(level, members)| (format!("{name}={level}"), members))
            .collect(),
    }
}

fn figure(frame: &Frame, conditions: Vec<String>, members: &[usize]) -> Slice {
    let mut error = (0.0, 0_u64);
    let (mut wrong, mut judged) = (0_u64, 0_u64);
    for &i in members {
        let row = &frame.rows[i];
        // Both as the model returns its answer: for probabilities, the surrogate's
        // output is the logistic of what its attributions add up to.
        if let (Some(model), Some(surrogate)) = (row.model_prediction, row.surrogate_output) {
            error.0 += (model - surrogate).abs();
            error.1 += 1;
        }
        if let (Some(decision), Some(outcome)) = (row.favourable, row.outcome_favourable) {
            judged += 1;
            if decision != outcome {
                wrong += 1;
            }
        }
    }
    let mut examples: Vec<String> = Vec::new();
    for &i in members {
        let id = &frame.rows[i].record;
        if !examples.contains(id) {
            examples.push(id.clone());
        }
        if examples.len() == 5 {
            break;
        }
    }
    Slice {
        conditions,
        rows: members.len() as u64,
        surrogate_error: (error.1 > 0).then(|| error.0 / error.1 as f64),
        model_error_rate: (judged > 0).then(|| wrong as f64 / judged as f64),
        rows_with_outcome: judged,
        examples,
    }
}
