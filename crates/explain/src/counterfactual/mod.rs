//! Counterfactuals: the smallest change to a row that moves the model's output into a
//! target region ("what would have to be different for the decision to change").
//!
//! # Problem
//!
//! Given an encoded row `x`, a score function `f`, a [`Target`] (`f ≥ t` or `f ≤ t`) and,
//! per feature, a [`Constraint`] (fixed; numeric within `[min, max]`, optionally on a grid
//! of `step`; or one of a list of allowed encoded levels), find `x'` that reaches the
//! target and, lexicographically, changes as few features as possible and then has the
//! smallest distance
//!
//! ```text
//! d(x, x') = Σ_{changed numeric i} |x'ᵢ − xᵢ| / scaleᵢ  +  Σ_{changed levels, or from missing} 1
//! ```
//!
//! where the caller gives the scales (the training standard deviation is a good choice),
//! so a one-standard-deviation move costs as much as switching a category.
//!
//! # Candidates
//!
//! A tree ensemble is piecewise constant: along one feature it only changes at the split
//! thresholds on that feature, so the only values worth trying are, for each interval
//! between consecutive thresholds (`(t_k, t_{k+1}]`, since a split goes left when
//! `x ≤ t`), the point of that interval closest to the current value, clipped to the
//! bounds and snapped to the step grid: the threshold itself when moving down, the next
//! floating-point number above it when moving up (unless a `step` rounds it). For a
//! missing current value, the point closest to the middle of the bounds. For a black-box
//! model, [`grid_candidates`] spreads evenly spaced values over the bounds instead.
//!
//! # Search
//!
//! A beam search over the number of changed features, 1 to `max_changes`. Depth 1 tries
//! every single change (exhaustive, so the best single change is optimal among the
//! candidates). Each deeper level extends the `beam_width` most promising states of the
//! previous level (smallest remaining gap to the target, then smallest distance) by one
//! more feature. At the first depth where some state reaches the target, the one of
//! least distance is taken and polished: each changed feature in turn is moved to the
//! cheapest candidate value (or back to its original value) that still reaches the
//! target. All ties are broken by feature index and value, so the result is
//! deterministic. If no state reaches the target, the result says so (`reached: false`)
//! and carries the state that came closest.
//!
//! # Speed on trees
//!
//! For a tree ensemble ([`counterfactual`], [`counterfactual_indexed`]) no candidate row
//! is scored from scratch. Changing feature `f` of a row only changes the trees whose
//! path for that row tests `f`, and in such a tree the leaf reached is a step function
//! of the new value: one walk of the tree, following the row everywhere except at the
//! nodes on `f`, yields every leaf reachable with the interval of values that reaches
//! it. Adding those steps over the sorted candidates of `f` scores all of them at once.
//! A child is scored from its parent's exact score this way; a score so close to the
//! target that rounding could decide is checked by a full prediction, and every
//! returned score is a full prediction, so the result is the one the plain search over
//! full predictions ([`search`]) finds. The split thresholds per feature are collected
//! once per ensemble ([`SplitIndex`]).

use std::collections::HashSet;

mod trees;

pub use trees::SplitIndex;

use crate::shap::BatchModel;
use crate::tree::Ensemble;

/// What a feature may do.
#[derive(Debug, Clone, PartialEq)]
pub enum Constraint {
    /// Must not change (e.g. age, or a protected attribute).
    Fixed,
    /// Any value in `[min, max]`; with `step`, only `min + k·step`.
    Numeric {
        /// Lowest allowed value.
        min: f64,
        /// Highest allowed value.
        max: f64,
        /// Grid spacing, if the feature is discrete (counts, whole currency units).
        step: Option<f64>,
    },
    /// One of these encoded values (the codes of the allowed categorical levels).
    Levels(Vec<f64>),
}

/// The region of the output to reach.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// `score ≥ t`.
    AtLeast(f64),
    /// `score ≤ t`.
    AtMost(f64),
}

impl Target {
    /// Whether `score` is in the region.
    pub fn reached(&self, score: f64) -> bool {
        match *self {
            Target::AtLeast(t) => score >= t,
            Target::AtMost(t) => score <= t,
        }
    }

    /// How far `score` is from the region (0 inside; infinite for a NaN score).
    fn gap(&self, score: f64) -> f64 {
        if score.is_nan() {
            return f64::INFINITY;
        }
        match *self {
            Target::AtLeast(t) => (t - score).max(0.0),
            Target::AtMost(t) => (score - t).max(0.0),
        }
    }
}

/// What to search for, and how hard.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// The region to reach.
    pub target: Target,
    /// One constraint per encoded feature.
    pub constraints: Vec<Constraint>,
    /// One positive scale per encoded feature, dividing numeric changes.
    pub scales: Vec<f64>,
    /// Most features changed at once (default 3).
    pub max_changes: usize,
    /// States kept between depths (default 16).
    pub beam_width: usize,
}

impl Query {
    /// A query with the default search limits.
    pub fn new(target: Target, constraints: Vec<Constraint>, scales: Vec<f64>) -> Self {
        Self {
            target,
            constraints,
            scales,
            max_changes: 3,
            beam_width: 16,
        }
    }
}

/// One changed feature.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Change {
    /// Encoded feature index.
    pub feature: usize,
    /// The row's value.
    pub from: f64,
    /// The counterfactual value.
    pub to: f64,
}

/// The outcome of a search.
#[derive(Debug, Clone, PartialEq)]
pub struct Counterfactual {
    /// The changes, by feature index (empty when the row already reaches the target).
    pub changes: Vec<Change>,
    /// The changed row.
    pub row: Vec<f64>,
    /// The score of the changed row.
    pub score: f64,
    /// The score of the original row.
    pub original_score: f64,
    /// Whether the changed row reaches the target. When false, no change within the
    /// bounds and limits was found, and the fields describe the closest approach.
    pub reached: bool,
    /// The normalised distance of the change (see the module docs).
    pub distance: f64,
}

/// The query does not fit the row.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CounterfactualError {
    /// The constraints, scales or candidates do not have one entry per feature.
    #[error("{what} has {got} entries, the row has {expected}")]
    Length {
        /// Which input.
        what: &'static str,
        /// Width of the row.
        expected: usize,
        /// Entries given.
        got: usize,
    },
    /// A bound, step or scale is not usable.
    #[error("feature {feature}: {message}")]
    BadConstraint {
        /// Encoded feature index.
        feature: usize,
        /// What is wrong.
        message: &'static str,
    },
    /// The beam width or the number of changes is zero.
    #[error("max_changes and beam_width must be at least 1")]
    Limits,
}

/// Searches a counterfactual for a tree ensemble, with candidates from its thresholds.
/// Collects the thresholds first; to search many rows of one ensemble, build its
/// [`SplitIndex`] once and call [`counterfactual_indexed`].
pub fn counterfactual(
    ensemble: &Ensemble,
    row: &[f64],
    query: &Query,
) -> Result<Counterfactual, CounterfactualError> {
    counterfactual_indexed(ensemble, &SplitIndex::new(ensemble), row, query)
}

/// [`counterfactual`] with the ensemble's thresholds already collected. `index` must
/// have been built from `ensemble`.
pub fn counterfactual_indexed(
    ensemble: &Ensemble,
    index: &SplitIndex,
    row: &[f64],
    query: &Query,
) -> Result<Counterfactual, CounterfactualError> {
    check_len("row", ensemble.n_features, row.len())?;
    let candidates = index.candidates(row, &query.constraints)?;
    trees::search(ensemble, index, row, query, &candidates)
}

/// Candidate values per feature from the ensemble's split thresholds (see the module
/// docs). Fixed features get none.
pub fn tree_candidates(
    ensemble: &Ensemble,
    row: &[f64],
    constraints: &[Constraint],
) -> Result<Vec<Vec<f64>>, CounterfactualError> {
    SplitIndex::new(ensemble).candidates(row, constraints)
}

/// Candidate values per feature for a black-box model: `points` evenly spaced values over
/// each numeric range (snapped to the step), and the allowed levels.
pub fn grid_candidates(
    row: &[f64],
    constraints: &[Constraint],
    points: usize,
) -> Result<Vec<Vec<f64>>, CounterfactualError> {
    per_feature(row, constraints, |f, min, max, step| {
        let mut out: Vec<f64> = (0..points)
            .map(|k| {
                let v = if points == 1 {
                    0.5 * (min + max)
                } else {
                    min + (max - min) * k as f64 / (points - 1) as f64
                };
                snap(v, min, max, step)
            })
            .filter(|v| !same(*v, row[f]))
            .collect();
        out.sort_by(f64::total_cmp);
        out.dedup();
        out
    })
}

/// Candidate values per feature: none for a fixed feature, the allowed levels but the
/// row's own for a categorical one, and `numeric(feature, min, max, step)` for a numeric
/// one; after checking that the constraints fit the row.
fn per_feature(
    row: &[f64],
    constraints: &[Constraint],
    numeric: impl Fn(usize, f64, f64, Option<f64>) -> Vec<f64>,
) -> Result<Vec<Vec<f64>>, CounterfactualError> {
    check_len("constraints", row.len(), constraints.len())?;
    constraints
        .iter()
        .enumerate()
        .map(|(f, c)| {
            check_constraint(f, c)?;
            Ok(match c {
                Constraint::Fixed => Vec::new(),
                Constraint::Levels(levels) => levels_except(levels, row[f]),
                Constraint::Numeric { min, max, step } => numeric(f, *min, *max, *step),
            })
        })
        .collect()
}

/// The beam search of the module docs over the given candidate values per feature.
pub fn search<M: BatchModel + ?Sized>(
    model: &mut M,
    row: &[f64],
    query: &Query,
    candidates: &[Vec<f64>],
) -> Result<Counterfactual, CounterfactualError> {
    let n = row.len();
    check_query(n, query, candidates)?;
    let mut scorer = Scorer { model, n };
    let original_score = scorer.one(row);
    let start = State {
        row: row.to_vec(),
        changed: Vec::new(),
        distance: 0.0,
        score: original_score,
    };
    if query.target.reached(original_score) {
        return Ok(start.finish(row, original_score, true));
    }
    let cost = |f: usize, to: f64| change_cost(row, query, f, to);
    let mut beam = vec![start.clone()];
    let mut closest = start;
    let mut seen: HashSet<Vec<(usize, u64)>> = HashSet::new();
    for _depth in 0..query.max_changes {
        let mut children = Vec::new();
        for state in &beam {
            for (f, values) in candidates.iter().enumerate() {
                if state.changed.contains(&f) || matches!(query.constraints[f], Constraint::Fixed) {
                    continue;
                }
                for &v in values {
                    if !allowed(&query.constraints[f], v) {
                        continue;
                    }
                    let mut changed = state.changed.clone();
                    let at = changed.partition_point(|&c| c < f);
                    changed.insert(at, f);
                    let mut next = state.row.clone();
                    next[f] = v;
                    if !seen.insert(changed.iter().map(|&c| (c, next[c].to_bits())).collect()) {
                        continue;
                    }
                    children.push(State {
                        row: next,
                        changed,
                        distance: state.distance + cost(f, v),
                        score: f64::NAN,
                    });
                }
            }
        }
        if children.is_empty() {
            break;
        }
        scorer.all(&mut children);
        let target = query.target;
        if let Some(best) = children
            .iter()
            .filter(|s| target.reached(s.score))
            .min_by(|a, b| a.distance.total_cmp(&b.distance).then_with(|| a.key_cmp(b)))
        {
            let best = polish(best.clone(), row, query, candidates, &mut scorer, &cost);
            let score = best.score;
            return Ok(best.finish(row, original_score, true).with_score(score));
        }
        children.sort_by(|a, b| {
            target
                .gap(a.score)
                .total_cmp(&target.gap(b.score))
                .then(a.distance.total_cmp(&b.distance))
                .then_with(|| a.key_cmp(b))
        });
        children.truncate(query.beam_width);
        if let Some(first) = children.first() {
            if target.gap(first.score) < target.gap(closest.score) {
                closest = first.clone();
            }
        }
        beam = children;
    }
    let score = closest.score;
    Ok(closest.finish(row, original_score, false).with_score(score))
}

/// Checks that the query and the candidates fit a row of `n` features.
fn check_query(
    n: usize,
    query: &Query,
    candidates: &[Vec<f64>],
) -> Result<(), CounterfactualError> {
    check_len("constraints", n, query.constraints.len())?;
    check_len("scales", n, query.scales.len())?;
    check_len("candidates", n, candidates.len())?;
    if query.max_changes == 0 || query.beam_width == 0 {
        return Err(CounterfactualError::Limits);
    }
    for (feature, (c, &s)) in query.constraints.iter().zip(&query.scales).enumerate() {
        check_constraint(feature, c)?;
        if !(s.is_finite() && s > 0.0) {
            return Err(CounterfactualError::BadConstraint {
                feature,
                message: "scale must be positive and finite",
            });
        }
    }
    Ok(())
}

/// The distance of moving feature `f` of `row` to `to` (see the module docs).
fn change_cost(row: &[f64], query: &Query, f: usize, to: f64) -> f64 {
    let from = row[f];
    match query.constraints[f] {
        Constraint::Numeric { .. } if !from.is_nan() => (to - from).abs() / query.scales[f],
        _ => 1.0,
    }
}

#[derive(Debug, Clone)]
struct State {
    row: Vec<f64>,
    /// Changed features, ascending.
    changed: Vec<usize>,
    distance: f64,
    score: f64,
}

impl State {
    /// Orders states by their changes, for deterministic ties.
    fn key_cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.changed.cmp(&other.changed).then_with(|| {
            self.changed
                .iter()
                .map(|&f| self.row[f])
                .zip(other.changed.iter().map(|&f| other.row[f]))
                .map(|(a, b)| a.total_cmp(&b))
                .find(|o| o.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        })
    }

    fn finish(self, original: &[f64], original_score: f64, reached: bool) -> Counterfactual {
        let changes = self
            .changed
            .iter()
            .map(|&f| Change {
                feature: f,
                from: original[f],
                to: self.row[f],
            })
            .collect();
        Counterfactual {
            changes,
            score: self.score,
            row: self.row,
            original_score,
            reached,
            distance: self.distance,
        }
    }
}

impl Counterfactual {
    fn with_score(mut self, score: f64) -> Self {
        self.score = score;
        self
    }
}

/// Moves each changed feature to its cheapest value that keeps the target (its original
/// value first), one feature at a time in index order.
fn polish<M: BatchModel + ?Sized>(
    mut best: State,
    row: &[f64],
    query: &Query,
    candidates: &[Vec<f64>],
    scorer: &mut Scorer<'_, M>,
    cost: &dyn Fn(usize, f64) -> f64,
) -> State {
    for f in best.changed.clone() {
        let current = cost(f, best.row[f]);
        let mut options: Vec<(f64, f64)> = std::iter::once((0.0, row[f]))
            .chain(
                candidates[f]
                    .iter()
                    .filter(|&&v| allowed(&query.constraints[f], v))
                    .map(|&v| (cost(f, v), v)),
            )
            .filter(|&(c, _)| c < current)
            .collect();
        options.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
        if options.is_empty() {
            continue;
        }
        let mut trials: Vec<State> = options
            .iter()
            .map(|&(c, v)| {
                let mut s = best.clone();
                s.row[f] = v;
                s.distance = best.distance - current + c;
                if same(v, row[f]) {
                    s.changed.retain(|&g| g != f);
                    s.distance = best.distance - current;
                }
                s
            })
            .collect();
        scorer.all(&mut trials);
        if let Some(better) = trials.into_iter().find(|s| query.target.reached(s.score)) {
            best = better;
        }
    }
    best
}

struct Scorer<'a, M: ?Sized> {
    model: &'a mut M,
    n: usize,
}

impl<M: BatchModel + ?Sized> Scorer<'_, M> {
    fn one(&mut self, row: &[f64]) -> f64 {
        let mut out = [0.0];
        self.model.predict_batch(row, self.n, &mut out);
        out[0]
    }

    fn all(&mut self, states: &mut [State]) {
        const BATCH: usize = 4096;
        let mut rows = Vec::with_capacity(BATCH.min(states.len()) * self.n);
        let mut out = vec![0.0; BATCH];
        for chunk in states.chunks_mut(BATCH) {
            rows.clear();
            for s in chunk.iter() {
                rows.extend_from_slice(&s.row);
            }
            let out = &mut out[..chunk.len()];
            self.model.predict_batch(&rows, self.n, out);
            for (s, &o) in chunk.iter_mut().zip(out.iter()) {
                s.score = o;
            }
        }
    }
}

fn check_len(what: &'static str, expected: usize, got: usize) -> Result<(), CounterfactualError> {
    if expected == got {
        Ok(())
    } else {
        Err(CounterfactualError::Length {
            what,
            expected,
            got,
        })
    }
}

fn check_constraint(feature: usize, c: &Constraint) -> Result<(), CounterfactualError> {
    let bad = |message| Err(CounterfactualError::BadConstraint { feature, message });
    match c {
        Constraint::Numeric { min, max, step } => {
            if !(min.is_finite() && max.is_finite() && min <= max) {
                return bad("numeric bounds must be finite with min <= max");
            }
            if let Some(s) = step {
                if !(s.is_finite() && *s > 0.0) {
                    return bad("step must be positive and finite");
                }
            }
            Ok(())
        }
        Constraint::Levels(levels) if levels.iter().any(|v| !v.is_finite()) => {
            bad("levels must be finite codes")
        }
        _ => Ok(()),
    }
}

fn allowed(c: &Constraint, v: f64) -> bool {
    match c {
        Constraint::Fixed => false,
        Constraint::Numeric { min, max, .. } => v >= *min && v <= *max,
        Constraint::Levels(levels) => levels.contains(&v),
    }
}

fn levels_except(levels: &[f64], current: f64) -> Vec<f64> {
    let mut out: Vec<f64> = levels
        .iter()
        .copied()
        .filter(|&l| !same(l, current))
        .collect();
    out.sort_by(f64::total_cmp);
    out.dedup();
    out
}

fn same(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

/// The smallest `f64` greater than `t` (finite `t`).
fn next_up(t: f64) -> f64 {
    if t == 0.0 {
        f64::from_bits(1)
    } else if t > 0.0 {
        f64::from_bits(t.to_bits() + 1)
    } else {
        f64::from_bits(t.to_bits() - 1)
    }
}

/// Nearest grid point inside `[min, max]`.
fn snap(v: f64, min: f64, max: f64, step: Option<f64>) -> f64 {
    let v = v.clamp(min, max);
    match step {
        None => v,
        Some(s) => {
            let k = ((v - min) / s).round();
            let top = ((max - min) / s).floor();
            min + k.clamp(0.0, top) * s
        }
    }
}

/// One value per threshold interval within the bounds, closest to `current` (see the
/// module docs); the interval holding `current` gives none.
fn interval_points(
    thresholds: &[f64],
    current: f64,
    min: f64,
    max: f64,
    step: Option<f64>,
) -> Vec<f64> {
    let anchor = if current.is_nan() {
        0.5 * (min + max)
    } else {
        current
    };
    let mut out = Vec::new();
    for k in 0..=thresholds.len() {
        // Interval (lo, hi]: lo = t_{k-1} (exclusive), hi = t_k.
        let lower = if k == 0 {
            min
        } else {
            next_up(thresholds[k - 1]).max(min)
        };
        let upper = if k == thresholds.len() {
            max
        } else {
            thresholds[k].min(max)
        };
        let (lower, upper) = match step {
            None => (lower, upper),
            Some(s) => {
                let mut first = min + ((lower - min) / s).ceil() * s;
                let mut last = min + ((upper - min) / s).floor() * s;
                // Rounding can put a grid point on the interval's open end (the
                // threshold below it) or past its closed end: step inwards, so that
                // every candidate is strictly in its own interval and none repeats
                // another or the row's own value.
                if k > 0 && first <= thresholds[k - 1] {
                    first += s;
                }
                if k < thresholds.len() && last > thresholds[k] {
                    last -= s;
                }
                (first, last.min(max))
            }
        };
        if lower > upper {
            continue;
        }
        let inside = !current.is_nan() && {
            let lo_ok = k == 0 || current > thresholds[k - 1];
            let hi_ok = k == thresholds.len() || current <= thresholds[k];
            lo_ok && hi_ok
        };
        if inside {
            continue;
        }
        out.push(anchor.clamp(lower, upper));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shap::{PerRow, synth};
    use crate::tree::{LEAF, Tree};
    use proptest::prelude::*;

    /// f = [x0 > 0.5] + 0.5·[x1 > 2] + 2·[x2 > 10], as three stumps.
    fn stumps() -> Ensemble {
        let stump = |f: i32, t: f64, hi: f64| Tree {
            children_left: vec![1, LEAF, LEAF],
            children_right: vec![2, LEAF, LEAF],
            children_default: vec![1, LEAF, LEAF],
            feature: vec![f, LEAF, LEAF],
            threshold: vec![t, 0.0, 0.0],
            value: vec![hi / 2.0, 0.0, hi],
            cover: vec![2.0, 1.0, 1.0],
        };
        Ensemble {
            base_offset: 0.0,
            trees: vec![stump(0, 0.5, 1.0), stump(1, 2.0, 0.5), stump(2, 10.0, 2.0)],
            n_features: 3,
        }
    }

    fn free(min: f64, max: f64) -> Constraint {
        Constraint::Numeric {
            min,
            max,
            step: None,
        }
    }

    #[test]
    fn one_change_just_past_the_threshold() {
        let q = Query::new(
            Target::AtLeast(1.0),
            vec![free(-5.0, 5.0), free(-5.0, 5.0), Constraint::Fixed],
            vec![1.0; 3],
        );
        let cf = counterfactual(&stumps(), &[0.0, 0.0, 0.0], &q).unwrap();
        assert!(cf.reached);
        assert_eq!(
            cf.changes,
            vec![Change {
                feature: 0,
                from: 0.0,
                to: next_up(0.5)
            }]
        );
        assert_eq!(cf.score, 1.0);
        assert_eq!(cf.original_score, 0.0);
        assert!((cf.distance - 0.5).abs() < 1e-12);
    }

    #[test]
    fn two_changes_when_one_is_not_enough_and_a_step_rounds_the_values() {
        let q = Query::new(
            Target::AtLeast(1.5),
            vec![
                Constraint::Numeric {
                    min: 0.0,
                    max: 5.0,
                    step: Some(1.0),
                },
                free(-5.0, 5.0),
                Constraint::Fixed,
            ],
            vec![1.0; 3],
        );
        let cf = counterfactual(&stumps(), &[0.0, 0.0, 0.0], &q).unwrap();
        assert!(cf.reached);
        assert_eq!(cf.changes.len(), 2);
        assert_eq!(
            cf.changes[0],
            Change {
                feature: 0,
                from: 0.0,
                to: 1.0
            }
        );
        assert_eq!(cf.changes[1].feature, 1);
        assert!(cf.score >= 1.5);
    }

    #[test]
    fn the_cheaper_feature_wins_by_its_scale() {
        // Either x0 (> 0.5) or x2 (> 10) alone reaches 1; x2's move of 10 is cheap at scale 100.
        let cons = vec![free(-50.0, 50.0), Constraint::Fixed, free(-50.0, 50.0)];
        let q = Query::new(Target::AtLeast(1.0), cons.clone(), vec![0.1, 1.0, 100.0]);
        let cf = counterfactual(&stumps(), &[0.0, 0.0, 0.0], &q).unwrap();
        assert_eq!(cf.changes.len(), 1);
        assert_eq!(cf.changes[0].feature, 2);
        let q = Query::new(Target::AtLeast(1.0), cons, vec![1.0, 1.0, 1.0]);
        assert_eq!(
            counterfactual(&stumps(), &[0.0, 0.0, 0.0], &q)
                .unwrap()
                .changes[0]
                .feature,
            0
        );
    }

    #[test]
    fn impossible_targets_are_reported_not_invented() {
        // x0 may not pass its threshold, x1 and x2 are fixed.
        let q = Query::new(
            Target::AtLeast(1.0),
            vec![free(-5.0, 0.4), Constraint::Fixed, Constraint::Fixed],
            vec![1.0; 3],
        );
        let cf = counterfactual(&stumps(), &[0.0, 0.0, 0.0], &q).unwrap();
        assert!(!cf.reached);
        assert!(cf.score < 1.0);
        // Beyond the ensemble's range altogether.
        let q = Query::new(
            Target::AtLeast(10.0),
            vec![free(-50.0, 50.0); 3],
            vec![1.0; 3],
        );
        let cf = counterfactual(&stumps(), &[0.0, 0.0, 0.0], &q).unwrap();
        assert!(!cf.reached);
        assert_eq!(cf.score, 3.5, "the closest approach changes all three");
    }

    #[test]
    fn downward_targets_levels_and_missing_values() {
        let q = Query::new(
            Target::AtMost(0.5),
            vec![
                Constraint::Levels(vec![0.0, 1.0, 2.0]),
                Constraint::Fixed,
                free(0.0, 20.0),
            ],
            vec![1.0; 3],
        );
        // x0 = 2 (score 1) and a missing x2 (default left, score 0).
        let cf = counterfactual(&stumps(), &[2.0, 0.0, f64::NAN], &q).unwrap();
        assert!(cf.reached);
        assert_eq!(
            cf.changes,
            vec![Change {
                feature: 0,
                from: 2.0,
                to: 0.0
            }]
        );
        assert_eq!(cf.distance, 1.0);
        let already = counterfactual(&stumps(), &[0.0, 0.0, 0.0], &q).unwrap();
        assert!(already.reached && already.changes.is_empty());
    }

    #[test]
    fn a_black_box_with_grid_candidates() {
        let mut model = PerRow(|r: &[f64]| r[0] * r[0] + r[1]);
        let cons = vec![free(-3.0, 3.0), free(0.0, 1.0)];
        let cands = grid_candidates(&[0.0, 0.0], &cons, 13).unwrap();
        let q = Query::new(Target::AtLeast(4.0), cons, vec![1.0, 1.0]);
        let cf = search(&mut model, &[0.0, 0.0], &q, &cands).unwrap();
        assert!(cf.reached);
        assert_eq!(cf.changes.len(), 1);
        assert_eq!(cf.changes[0].to.abs(), 2.0);
    }

    /// Thresholds on the step grid: rounding once offered 0.5 for the interval
    /// (0.5, 0.6] as well as for (.., 0.5], a repeated candidate.
    #[test]
    fn candidates_on_a_step_grid_are_distinct_and_inside_their_intervals() {
        let thresholds = [0.5, 0.6];
        let points = interval_points(&thresholds, 1.0, -1.5, 1.5, Some(0.25));
        let mut unique = points.clone();
        unique.dedup();
        assert_eq!(points, unique, "{points:?}");
        assert!(points.iter().all(|&v| v != 1.0), "{points:?}");
        assert_eq!(
            points,
            vec![0.5],
            "only (.., 0.5] has a grid point besides 1.0's own"
        );
    }

    /// A leaf that is not finite: every decision falls back to full predictions, and the
    /// result is still the plain search's.
    #[test]
    fn an_ensemble_with_an_infinite_leaf_is_searched_by_full_predictions() {
        let mut e = stumps();
        e.trees[1].value[2] = f64::INFINITY;
        let q = Query::new(Target::AtLeast(1.0), vec![free(-5.0, 5.0); 3], vec![1.0; 3]);
        let candidates = tree_candidates(&e, &[0.0; 3], &q.constraints).unwrap();
        let plain = search(&mut &e, &[0.0; 3], &q, &candidates).unwrap();
        let fast = counterfactual(&e, &[0.0; 3], &q).unwrap();
        assert_eq!(format!("{fast:?}"), format!("{plain:?}"));
    }

    #[test]
    fn a_row_of_the_wrong_width_is_an_error_not_a_panic() {
        let q = Query::new(Target::AtLeast(1.0), vec![free(-5.0, 5.0); 2], vec![1.0; 2]);
        assert!(matches!(
            counterfactual(&stumps(), &[0.0, 0.0], &q),
            Err(CounterfactualError::Length { what: "row", .. })
        ));
    }

    #[test]
    fn bad_queries_are_errors() {
        let e = stumps();
        let q = Query::new(
            Target::AtLeast(1.0),
            vec![free(1.0, 0.0), Constraint::Fixed, Constraint::Fixed],
            vec![1.0; 3],
        );
        assert!(matches!(
            counterfactual(&e, &[0.0; 3], &q),
            Err(CounterfactualError::BadConstraint { feature: 0, .. })
        ));
        let q = Query::new(
            Target::AtLeast(1.0),
            vec![Constraint::Fixed; 2],
            vec![1.0; 3],
        );
        assert!(matches!(
            counterfactual(&e, &[0.0; 3], &q),
            Err(CounterfactualError::Length { .. })
        ));
        let q = Query::new(
            Target::AtLeast(1.0),
            vec![Constraint::Fixed; 3],
            vec![0.0; 3],
        );
        assert!(counterfactual(&e, &[0.0; 3], &q).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        #[test]
        fn results_respect_the_constraints_and_reach_what_they_claim(seed in 0u64..1000, up in any::<bool>(), quantile in 0.0f64..1.0) {
            let e = synth::random_ensemble(seed, 5, 3, 4, 200);
            let rows = synth::random_rows(seed + 1, 20, 4, 0.1);
            let x = &rows[0];
            let mut scores: Vec<f64> = rows.iter().map(|r| e.predict(r)).collect();
            scores.sort_by(f64::total_cmp);
            let t = scores[((quantile * 19.0) as usize).min(19)];
            let cons = vec![free(-2.0, 2.0), Constraint::Fixed, Constraint::Levels(vec![-1.0, 0.0, 1.0]), free(-1.0, 1.0)];
            let q = Query::new(if up { Target::AtLeast(t) } else { Target::AtMost(t) }, cons.clone(), vec![1.0; 4]);
            let cf = counterfactual(&e, x, &q).unwrap();
            prop_assert_eq!(cf.score, e.predict(&cf.row));
            prop_assert_eq!(cf.reached, q.target.reached(cf.score));
            prop_assert!(cf.changes.len() <= 3);
            prop_assert!(same(cf.row[1], x[1]));
            for ch in &cf.changes {
                prop_assert!(allowed(&cons[ch.feature], ch.to), "{:?}", ch);
                prop_assert!(same(ch.from, x[ch.feature]));
            }
            for (f, (a, b)) in cf.row.iter().zip(x).enumerate() {
                prop_assert_eq!(!same(*a, *b), cf.changes.iter().any(|c| c.feature == f));
            }
        }

        /// The tree search scores children from their parents' paths; the plain search
        /// scores every child by a full prediction. Both must find the same thing,
        /// missing values, steps, levels, deep and narrow beams included.
        #[test]
        fn the_tree_search_finds_what_full_predictions_find(
            seed in 0u64..5000,
            up in any::<bool>(),
            quantile in 0.0f64..1.0,
            max_changes in 1usize..4,
            beam_width in 1usize..6,
        ) {
            let mut e = synth::random_ensemble(seed, 12, 4, 5, 200);
            // Half the time the thresholds sit on feature 2's step grid, where rounding
            // is most likely to put a candidate on an interval's end.
            if seed % 2 == 0 {
                for tree in &mut e.trees {
                    for t in &mut tree.threshold {
                        *t = (*t / 0.25).round() * 0.25;
                    }
                }
            }
            let rows = synth::random_rows(seed + 7, 20, 5, 0.15);
            let x = &rows[(seed % 20) as usize];
            let mut scores: Vec<f64> = rows.iter().map(|r| e.predict(r)).collect();
            scores.sort_by(f64::total_cmp);
            let t = scores[((quantile * 19.0) as usize).min(19)];
            let cons = vec![
                free(-2.0, 2.0),
                Constraint::Levels(vec![-1.0, 0.0, 1.0]),
                Constraint::Numeric { min: -1.5, max: 1.5, step: Some(0.25) },
                Constraint::Fixed,
                free(-3.0, 3.0),
            ];
            let mut q = Query::new(
                if up { Target::AtLeast(t) } else { Target::AtMost(t) },
                cons,
                vec![0.5, 1.0, 1.0, 1.0, 2.0],
            );
            q.max_changes = max_changes;
            q.beam_width = beam_width;
            let candidates = tree_candidates(&e, x, &q.constraints).unwrap();
            let plain = search(&mut &e, x, &q, &candidates).unwrap();
            let fast = counterfactual(&e, x, &q).unwrap();
            // Debug output compares missing values (NaN) as equal.
            prop_assert_eq!(format!("{fast:?}"), format!("{plain:?}"));
        }
    }
}
