//! The recorded explanations of one route over a period, read back from the audit store
//! page by page, within a row cap and a time budget: what the developer's workbench
//! (the global summary, cohorts, dependence and the export for notebooks) is computed
//! from. It never reads more than the cap: a period with more rows comes back marked
//! as cut short, with the time it reached, so no answer looks complete when it is not.
//!
//! Values are the ones the privacy policy kept (the attributions' `value`s, recorded
//! after the policy); contributions are the surrogate's, in its explanation space, so
//! `base + Σ contributions` is the explained prediction on every row.

use std::time::Instant;

use serde::Serialize;
use serde_json::Value as Json;
use sidelight_audit::{AuditStore, RecordQuery, StoreError};

/// Records read per page.
const PAGE: usize = 500;

/// Which rows: one route, `[from_ms, to_ms)`.
#[derive(Debug, Clone)]
pub struct Scope {
    pub route: String,
    pub from_ms: i64,
    pub to_ms: i64,
    /// The route's config, when it has one: its decision tells favourable answers and
    /// outcomes.
    pub config: Option<sidelight_config::RouteConfig>,
}

impl Scope {
    fn higher_is_favourable(&self) -> bool {
        self.config
            .as_ref()
            .and_then(|r| r.explain.as_ref())
            .is_none_or(|e| e.decision.higher_is_favourable)
    }
}

/// How much a read may take.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// At most this many explained rows are read; one more means the read stops short.
    pub max_rows: usize,
    /// The read stops at the first page boundary after this instant.
    pub deadline: Option<Instant>,
    /// Join each record's latest reported outcome (one more store read per record).
    pub outcomes: bool,
}

/// One explained prediction as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct ExplainedRow {
    /// When the request arrived, unix milliseconds.
    pub time_ms: i64,
    /// The record's id (the request id).
    pub record: String,
    /// The row within the record's batch.
    pub row: usize,
    /// One value per feature of the frame, as the privacy policy kept it (null when it
    /// kept nothing).
    pub values: Vec<Json>,
    /// One contribution per feature, in the explanation's space.
    pub contributions: Vec<f64>,
    /// The surrogate's expected output.
    pub base: f64,
    /// The model's own answer as it returned it (a probability where the space is
    /// `logit`), when recorded.
    pub model_prediction: Option<f64>,
    /// The surrogate's answer in the same terms as `model_prediction`, when recorded.
    pub surrogate_output: Option<f64>,
    /// `output`, `probability` or `logit`: the space of base, contributions and
    /// predictions.
    pub space: String,
    pub surrogate_version: Option<u64>,
    /// Whether the model's answer was favourable (against the route's threshold), when
    /// the route has a decision.
    pub favourable: Option<bool>,
    pub review_state: String,
    /// The latest outcome reported for this row, as the client sent it.
    pub outcome: Option<Json>,
    /// Whether that outcome was favourable to the person; `None` when none was
    /// reported or it could not be read.
    pub outcome_favourable: Option<bool>,
    /// On a ranking route: the shown item's rank (1 = top).
    pub rank: Option<u64>,
}

impl ExplainedRow {
    /// `base + Σ contributions`: the prediction the attributions explain.
    pub fn prediction(&self) -> f64 {
        self.base + self.contributions.iter().sum::<f64>()
    }

    /// The view the pure workbench computations take.
    pub fn as_explained(&self) -> sidelight_monitor::workbench::ExplainedRow<'_> {
        sidelight_monitor::workbench::ExplainedRow {
            base: self.base,
            attributions: &self.contributions,
        }
    }
}

/// Why a read stopped before the end of its period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    /// It reached its row cap.
    RowCap,
    /// It ran out of its time budget.
    TimeBudget,
}

/// The rows of a period, and what was left out.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Frame {
    /// The features, in the schema's order: fixed by the first explained row.
    pub names: Vec<String>,
    pub rows: Vec<ExplainedRow>,
    /// Records of the route in the period without attributions (erased, not explained,
    /// recorded without them by consent).
    pub unexplained_records: u64,
    /// Explained rows over another set of features or in another space (a schema
    /// change or a new link function within the period).
    pub other_features: u64,
    /// The explanation space every row is in (fixed by the first row).
    pub space: Option<String>,
    /// Set when the read stopped short of the period's end.
    pub stopped: Option<Stop>,
    /// The time of the last record read when the read stopped short.
    pub through_ms: Option<i64>,
}

/// Reads `scope` within `bounds`.
pub fn read(store: &dyn AuditStore, scope: &Scope, bounds: &Bounds) -> Result<Frame, StoreError> {
    let mut frame = Frame::default();
    let higher = scope.higher_is_favourable();
    let configured_threshold = scope
        .config
        .as_ref()
        .and_then(|r| r.explain.as_ref())
        .and_then(|e| e.decision.threshold);
    let mut query = RecordQuery {
        from_ms: Some(scope.from_ms),
        to_ms: Some(scope.to_ms),
        route: Some(scope.route.clone()),
        limit: PAGE,
        ..RecordQuery::default()
    };
    'pages: loop {
        let page = store.query(&query)?;
        for stored in &page.records {
            let record = &stored.record;
            let explained = record
                .attributions
                .as_ref()
                .and_then(Json::as_array)
                .filter(|rows| !rows.is_empty());
            let Some(explained) = explained else {
                frame.unexplained_records += 1;
                frame.through_ms = Some(record.time_ms);
                continue;
            };
            // A record's rows are taken whole or not at all, so that the cap is never
            // passed and a record is never half in a frame.
            if frame.rows.len() + explained.len() > bounds.max_rows {
                frame.stopped = Some(Stop::RowCap);
                break 'pages;
            }
            let outcome = if bounds.outcomes {
                store.feedback(&record.id)?.pop().map(|f| f.outcome)
            } else {
                None
            };
            let order = record_order(record.features.as_ref());
            for (i, row) in explained.iter().enumerate() {
                let Some(pairs) = pairs(row) else {
                    frame.unexplained_records += 1;
                    continue;
                };
                if frame.names.is_empty() {
                    frame.names = ordered_names(&pairs, &order);
                }
                let Some((values, contributions)) = aligned(&frame.names, &pairs) else {
                    frame.other_features += 1;
                    continue;
                };
                let number = |key: &str| row.get(key).and_then(Json::as_f64);
                let row_outcome = outcome.as_ref().and_then(|o| crate::row_outcome(o, i));
                let Some(base) = number("base_value").filter(|b| b.is_finite()) else {
                    frame.unexplained_records += 1;
                    continue;
                };
                let space = row.get("space").and_then(Json::as_str).unwrap_or("output");
                if frame.space.get_or_insert_with(|| space.to_owned()) != space {
                    frame.other_features += 1;
                    continue;
                }
                let favourable = match (number("prediction"), number("threshold")) {
                    (Some(p), Some(t)) if higher => Some(p >= t),
                    (Some(p), Some(t)) => Some(p <= t),
                    _ => None,
                };
                frame.rows.push(ExplainedRow {
                    time_ms: record.time_ms,
                    record: record.id.clone(),
                    row: i,
                    values,
                    contributions,
                    base,
                    model_prediction: number("prediction"),
                    surrogate_output: number("surrogate_prediction"),
                    space: space.to_owned(),
                    surrogate_version: row
                        .get("surrogate_version")
                        .and_then(Json::as_u64)
                        .or(record.surrogate_version),
                    favourable,
                    review_state: record.review_state.clone(),
                    outcome_favourable: row_outcome.and_then(|o| {
                        crate::outcome_favourable(
                            o,
                            scope.config.as_ref(),
                            higher,
                            configured_threshold.or(number("threshold")),
                        )
                    }),
                    outcome: row_outcome.cloned(),
                    rank: row
                        .get("item")
                        .and_then(|item| item.get("rank"))
                        .and_then(Json::as_u64),
                });
            }
            frame.through_ms = Some(record.time_ms);
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
        if bounds.deadline.is_some_and(|d| Instant::now() >= d) {
            frame.stopped = Some(Stop::TimeBudget);
            break;
        }
    }
    if frame.stopped.is_none() {
        frame.through_ms = None;
    }
    Ok(frame)
}

/// `(feature, value, contribution)` of one recorded row; `None` when it has none.
fn pairs(row: &Json) -> Option<Vec<(&str, &Json, f64)>> {
    let items = row.get("attributions")?.as_array()?;
    let pairs: Option<Vec<_>> = items
        .iter()
        .map(|a| {
            let contribution = a.get("contribution")?.as_f64().filter(|c| c.is_finite())?;
            Some((
                a.get("feature")?.as_str()?,
                a.get("value").unwrap_or(&Json::Null),
                contribution,
            ))
        })
        .collect();
    pairs.filter(|p| !p.is_empty())
}

/// The record's feature order (`features.names`), which attributions, sorted by size,
/// do not keep.
fn record_order(features: Option<&Json>) -> Vec<String> {
    features
        .and_then(|f| f.get("names"))
        .and_then(|n| serde_json::from_value(n.clone()).ok())
        .unwrap_or_default()
}

/// The row's features in the record's order; the rest after them by name.
fn ordered_names(pairs: &[(&str, &Json, f64)], order: &[String]) -> Vec<String> {
    let mut names: Vec<String> = order
        .iter()
        .filter(|n| pairs.iter().any(|(f, _, _)| f == n))
        .cloned()
        .collect();
    let mut rest: Vec<String> = pairs
        .iter()
        .map(|(f, _, _)| (*f).to_owned())
        .filter(|f| !names.contains(f))
        .collect();
    rest.sort();
    names.extend(rest);
    names
}

/// Values and contributions in the order of `names`; `None` unless the row has exactly
/// these features.
fn aligned(names: &[String], pairs: &[(&str, &Json, f64)]) -> Option<(Vec<Json>, Vec<f64>)> {
    if pairs.len() != names.len() {
        return None;
    }
    let mut values = Vec::with_capacity(names.len());
    let mut contributions = Vec::with_capacity(names.len());
    for name in names {
        let (_, value, contribution) = pairs.iter().find(|(f, _, _)| f == name)?;
        values.push((*value).clone());
        contributions.push(*contribution);
    }
    Some((values, contributions))
}
