//! The search of the module docs on a tree ensemble, scoring every change of one feature
//! of a row at once from the row's own tree paths (see "Speed on trees").

use std::cmp::Ordering;
use std::collections::HashSet;

use super::{
    Constraint, Counterfactual, CounterfactualError, Query, State, Target, allowed, change_cost,
    check_query, interval_points, per_feature, same,
};
use crate::tree::{Ensemble, Tree};

/// An ensemble's split thresholds per feature, sorted and without repeats, and how close
/// to the target a score summed out of order may be before a full prediction decides.
/// Built once per ensemble; a search reads it for every row.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitIndex {
    thresholds: Vec<Vec<f64>>,
    /// A wide margin over the rounding error of adding the ensemble's leaves in another
    /// order: 1e-9 of the largest score the leaves can add up to.
    tolerance: f64,
}

impl SplitIndex {
    /// Collects the thresholds of `ensemble`.
    pub fn new(ensemble: &Ensemble) -> Self {
        let mut thresholds = vec![Vec::new(); ensemble.n_features];
        let mut magnitude = ensemble.base_offset.abs();
        let mut finite = ensemble.base_offset.is_finite();
        for tree in &ensemble.trees {
            let mut largest_leaf = 0.0f64;
            for node in 0..tree.len() {
                if tree.is_leaf(node) {
                    finite &= tree.value[node].is_finite();
                    largest_leaf = largest_leaf.max(tree.value[node].abs());
                    continue;
                }
                let threshold = tree.threshold[node];
                if let Some(list) = usize::try_from(tree.feature[node])
                    .ok()
                    .and_then(|f| thresholds.get_mut(f))
                {
                    if threshold.is_finite() {
                        list.push(threshold);
                    }
                }
            }
            magnitude += largest_leaf;
        }
        for list in &mut thresholds {
            list.sort_by(f64::total_cmp);
            list.dedup();
        }
        Self {
            thresholds,
            // A leaf that is not finite makes sums of leaves meaningless to compare:
            // then every score is decided by a full prediction.
            tolerance: if finite {
                magnitude * 1e-9
            } else {
                f64::INFINITY
            },
        }
    }

    /// Candidate values per feature for `row` (see the module docs); fixed features get
    /// none.
    pub fn candidates(
        &self,
        row: &[f64],
        constraints: &[Constraint],
    ) -> Result<Vec<Vec<f64>>, CounterfactualError> {
        per_feature(row, constraints, |f, min, max, step| {
            let thresholds = self.thresholds.get(f).map_or(&[][..], Vec::as_slice);
            interval_points(thresholds, row[f], min, max, step)
        })
    }
}

/// A state one change further than its parent in the beam, not yet written out as a row.
#[derive(Debug, Clone, Copy)]
struct Child {
    parent: usize,
    feature: usize,
    value: f64,
    distance: f64,
    score: f64,
    /// Whether `score` is bit for bit a full prediction: the change moved no tree to
    /// another leaf, or a full prediction was made.
    exact: bool,
}

/// The beam search of the module docs, scoring a state's children from its tree paths.
/// `candidates` come from [`SplitIndex::candidates`] (ascending per feature).
pub(super) fn search(
    ensemble: &Ensemble,
    index: &SplitIndex,
    row: &[f64],
    query: &Query,
    candidates: &[Vec<f64>],
) -> Result<Counterfactual, CounterfactualError> {
    let n = row.len();
    check_query(n, query, candidates)?;
    let values: Vec<Vec<f64>> = candidates
        .iter()
        .zip(&query.constraints)
        .map(|(list, c)| {
            let mut kept: Vec<f64> = list.iter().copied().filter(|&v| allowed(c, v)).collect();
            kept.sort_by(f64::total_cmp);
            // A repeated value would be a repeated child, which the plain search drops.
            kept.dedup_by(|a, b| a.to_bits() == b.to_bits());
            kept
        })
        .collect();
    let movable: Vec<bool> = values.iter().map(|v| !v.is_empty()).collect();
    let mut scorer = Scorer::new(ensemble, movable);
    let target = query.target;
    let threshold = match target {
        Target::AtLeast(t) | Target::AtMost(t) => t,
    };
    // Gaps are differences from the threshold: their rounding grows with it too.
    let tolerance = index.tolerance.max(threshold.abs() * 1e-9);
    let decide = Decide {
        target,
        tolerance,
        ensemble,
    };
    let original_score = scorer.rebase(row);
    let start = State {
        row: row.to_vec(),
        changed: Vec::new(),
        distance: 0.0,
        score: original_score,
    };
    if target.reached(original_score) {
        return Ok(start.finish(row, original_score, true));
    }
    let mut beam = vec![start.clone()];
    let mut closest = start;
    let mut children: Vec<Child> = Vec::new();
    let mut scores = Vec::new();
    let mut unmoved = Vec::new();
    let mut seen: HashSet<Vec<(usize, u64)>> = HashSet::new();
    for _depth in 0..query.max_changes {
        children.clear();
        // Two parents yield the same child only when each adds a change the other
        // already has, so only such children need the full comparison.
        let in_beam: HashSet<(usize, u64)> = beam
            .iter()
            .flat_map(|s| s.changed.iter().map(|&f| (f, s.row[f].to_bits())))
            .collect();
        for (parent, state) in beam.iter_mut().enumerate() {
            state.score = scorer.rebase(&state.row);
            for (f, list) in values.iter().enumerate() {
                if list.is_empty() || state.changed.contains(&f) {
                    continue;
                }
                scorer.one_change(state.score, &state.row, f, list, &mut scores, &mut unmoved);
                for ((&value, &score), &exact) in list.iter().zip(&scores).zip(&unmoved) {
                    if in_beam.contains(&(f, value.to_bits())) {
                        let mut key: Vec<(usize, u64)> = state
                            .changed
                            .iter()
                            .map(|&g| (g, state.row[g].to_bits()))
                            .chain(std::iter::once((f, value.to_bits())))
                            .collect();
                        key.sort_unstable();
                        if !seen.insert(key) {
                            continue;
                        }
                    }
                    children.push(Child {
                        parent,
                        feature: f,
                        value,
                        distance: state.distance + change_cost(row, query, f, value),
                        score,
                        exact,
                    });
                }
            }
        }
        if children.is_empty() {
            break;
        }
        let mut best: Option<usize> = None;
        for i in 0..children.len() {
            let child = children[i];
            let reached = match decide.by_score(child.score) {
                Some(reached) => reached,
                None if child.exact => target.reached(child.score),
                None => {
                    let exact = ensemble.predict(&child_row(&beam, &child));
                    children[i].score = exact;
                    children[i].exact = true;
                    target.reached(exact)
                }
            };
            if !reached {
                continue;
            }
            let better = best.is_none_or(|b| {
                let b = &children[b];
                child
                    .distance
                    .total_cmp(&b.distance)
                    .then_with(|| key_cmp(&beam, &child, b))
                    .is_lt()
            });
            if better {
                best = Some(i);
            }
        }
        if let Some(best) = best {
            let state = materialise(&beam, &children[best]);
            let best = polish(state, row, query, &values, &mut scorer, &decide);
            let score = ensemble.predict(&best.row);
            let reached = target.reached(score);
            return Ok(best.finish(row, original_score, reached).with_score(score));
        }
        let order = |a: &Child, b: &Child| {
            target
                .gap(a.score)
                .total_cmp(&target.gap(b.score))
                .then(a.distance.total_cmp(&b.distance))
                .then_with(|| key_cmp(&beam, a, b))
        };
        // The beam by the children's scores as summed here, then again by full
        // predictions for every child that rounding could have put in or out of it (or
        // out of its order), so that it holds what the plain search's beam holds.
        let keep = query.beam_width.min(children.len());
        children.select_nth_unstable_by(keep - 1, order);
        let cut = children[..keep]
            .iter()
            .map(|c| target.gap(c.score))
            .fold(f64::NEG_INFINITY, f64::max);
        let (kept, rest) = children.split_at_mut(keep);
        let mut contenders: Vec<Child> = kept.to_vec();
        contenders.extend(
            rest.iter()
                .filter(|c| target.gap(c.score) <= cut + tolerance),
        );
        for child in contenders.iter_mut().filter(|c| !c.exact) {
            child.score = ensemble.predict(&child_row(&beam, child));
        }
        contenders.sort_by(order);
        contenders.truncate(keep);
        let next: Vec<State> = contenders.iter().map(|c| materialise(&beam, c)).collect();
        if let Some(first) = next.first() {
            if target.gap(first.score) < target.gap(closest.score) {
                closest = first.clone();
            }
        }
        beam = next;
    }
    let score = ensemble.predict(&closest.row);
    let reached = target.reached(score);
    Ok(closest
        .finish(row, original_score, reached)
        .with_score(score))
}

/// Whether a score reaches the target, when rounding cannot have decided it.
struct Decide<'a> {
    target: Target,
    tolerance: f64,
    ensemble: &'a Ensemble,
}

impl Decide<'_> {
    /// `None` when the score is within the tolerance of the threshold (or NaN): then
    /// only a full prediction may decide.
    fn by_score(&self, score: f64) -> Option<bool> {
        let threshold = match self.target {
            Target::AtLeast(t) | Target::AtMost(t) => t,
        };
        ((score - threshold).abs() > self.tolerance).then(|| self.target.reached(score))
    }

    fn reached(&self, score: f64, row: impl FnOnce() -> Vec<f64>) -> bool {
        self.by_score(score)
            .unwrap_or_else(|| self.target.reached(self.ensemble.predict(&row())))
    }
}

fn child_row(beam: &[State], child: &Child) -> Vec<f64> {
    let mut row = beam[child.parent].row.clone();
    row[child.feature] = child.value;
    row
}

fn materialise(beam: &[State], child: &Child) -> State {
    let parent = &beam[child.parent];
    let mut changed = parent.changed.clone();
    let at = changed.partition_point(|&c| c < child.feature);
    changed.insert(at, child.feature);
    State {
        row: child_row(beam, child),
        changed,
        distance: child.distance,
        score: child.score,
    }
}

/// The order of [`State::key_cmp`] on two children: their changed features, then the
/// values they change them to.
fn key_cmp(beam: &[State], a: &Child, b: &Child) -> Ordering {
    let changes = |c: &Child| {
        let parent = &beam[c.parent];
        let mut out: Vec<(usize, f64)> = parent
            .changed
            .iter()
            .map(|&f| (f, parent.row[f]))
            .chain(std::iter::once((c.feature, c.value)))
            .collect();
        out.sort_by_key(|&(f, _)| f);
        out
    };
    let (a, b) = (changes(a), changes(b));
    a.iter()
        .map(|&(f, _)| f)
        .cmp(b.iter().map(|&(f, _)| f))
        .then_with(|| {
            a.iter()
                .zip(&b)
                .map(|(x, y)| x.1.total_cmp(&y.1))
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
        })
}

/// Moves each changed feature to its cheapest value that keeps the target (its original
/// value first), one feature at a time in index order: `polish` of the plain search,
/// with every value of one feature scored at once.
fn polish(
    mut best: State,
    row: &[f64],
    query: &Query,
    values: &[Vec<f64>],
    scorer: &mut Scorer<'_>,
    decide: &Decide<'_>,
) -> State {
    let mut sorted = Vec::new();
    let mut scores = Vec::new();
    let mut unmoved = Vec::new();
    for f in best.changed.clone() {
        let current = change_cost(row, query, f, best.row[f]);
        let mut options: Vec<(f64, f64)> = std::iter::once((0.0, row[f]))
            .chain(
                values[f]
                    .iter()
                    .map(|&v| (change_cost(row, query, f, v), v)),
            )
            .filter(|&(c, _)| c < current)
            .collect();
        if options.is_empty() {
            continue;
        }
        options.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
        sorted.clear();
        sorted.extend(options.iter().map(|&(_, v)| v).filter(|v| !v.is_nan()));
        sorted.sort_by(f64::total_cmp);
        sorted.dedup();
        let base = scorer.rebase(&best.row);
        scorer.one_change(base, &best.row, f, &sorted, &mut scores, &mut unmoved);
        let with = |v: f64| {
            let mut trial = best.row.clone();
            trial[f] = v;
            trial
        };
        let found = options.iter().copied().find(|&(_, v)| {
            let score = match sorted.binary_search_by(|s| s.total_cmp(&v)) {
                Ok(i) if unmoved[i] => return query.target.reached(scores[i]),
                Ok(i) => scores[i],
                // A missing original value: only a full prediction knows its path.
                Err(_) => return query.target.reached(decide.ensemble.predict(&with(v))),
            };
            decide.reached(score, || with(v))
        });
        if let Some((c, v)) = found {
            best.row[f] = v;
            if same(v, row[f]) {
                best.changed.retain(|&g| g != f);
                best.distance -= current;
            } else {
                best.distance = best.distance - current + c;
            }
        }
    }
    best
}

/// Scores changes of one feature of a base row from the base row's tree paths.
struct Scorer<'a> {
    ensemble: &'a Ensemble,
    /// Per feature: whether the search may change it (only those are tracked).
    movable: Vec<bool>,
    /// Per tree: the value of the leaf the base row reaches.
    leaf: Vec<f64>,
    /// Per feature: the trees whose path for the base row tests it.
    touching: Vec<Vec<usize>>,
    /// Scratch: the leaves one tree reaches as one feature varies, with their intervals.
    steps: Vec<(f64, f64, f64)>,
    /// Scratch: the change of the score at each candidate, as differences.
    diff: Vec<f64>,
    /// Scratch: how many trees change leaf at each candidate, as differences.
    moved: Vec<i32>,
    /// Scratch: subtrees still to walk in `leaves_along`.
    pending: Vec<(usize, f64, f64)>,
}

impl<'a> Scorer<'a> {
    fn new(ensemble: &'a Ensemble, movable: Vec<bool>) -> Self {
        let touching = vec![Vec::new(); movable.len()];
        Self {
            ensemble,
            movable,
            leaf: vec![0.0; ensemble.trees.len()],
            touching,
            steps: Vec::new(),
            diff: Vec::new(),
            moved: Vec::new(),
            pending: Vec::new(),
        }
    }

    /// Makes `row` the base and returns its score, bit for bit `Ensemble::predict`.
    fn rebase(&mut self, row: &[f64]) -> f64 {
        for list in &mut self.touching {
            list.clear();
        }
        for (t, tree) in self.ensemble.trees.iter().enumerate() {
            let mut node = 0usize;
            while !tree.is_leaf(node) {
                let f = tree.feature[node] as usize;
                if self.movable.get(f) == Some(&true) && self.touching[f].last() != Some(&t) {
                    self.touching[f].push(t);
                }
                node = tree.child_for(node, row.get(f).copied().unwrap_or(f64::NAN));
            }
            self.leaf[t] = tree.value[node];
        }
        self.ensemble.base_offset + self.leaf.iter().sum::<f64>()
    }

    /// The score of the base row (scored `base`) with feature `f` set to each of
    /// `values` (ascending, none NaN), into `out`; into `unmoved`, whether the value
    /// leaves every tree in the same leaf (its score is then `base` itself, exactly).
    fn one_change(
        &mut self,
        base: f64,
        row: &[f64],
        f: usize,
        values: &[f64],
        out: &mut Vec<f64>,
        unmoved: &mut Vec<bool>,
    ) {
        self.diff.clear();
        self.diff.resize(values.len() + 1, 0.0);
        self.moved.clear();
        self.moved.resize(values.len() + 1, 0);
        for &t in &self.touching[f] {
            self.steps.clear();
            leaves_along(
                &self.ensemble.trees[t],
                row,
                f,
                &mut self.pending,
                &mut self.steps,
            );
            let here = self.leaf[t];
            for &(lo, hi, value) in &self.steps {
                let delta = value - here;
                if delta == 0.0 {
                    continue;
                }
                // The candidates in (lo, hi].
                let from = values.partition_point(|&v| v <= lo);
                let to = values.partition_point(|&v| v <= hi);
                if from < to {
                    self.diff[from] += delta;
                    self.diff[to] -= delta;
                    self.moved[from] += 1;
                    self.moved[to] -= 1;
                }
            }
        }
        out.clear();
        unmoved.clear();
        let (mut shift, mut moved) = (0.0, 0);
        for (d, m) in self.diff.iter().zip(&self.moved).take(values.len()) {
            shift += d;
            moved += m;
            out.push(if moved == 0 { base } else { base + shift });
            unmoved.push(moved == 0);
        }
    }
}

/// The leaves `tree` reaches from `row` as feature `f` takes any value (not NaN), each
/// with the interval `(lo, hi]` of values that reaches it: the row's own path except at
/// the nodes on `f`, where both sides are followed.
/// `pending` is scratch space.
fn leaves_along(
    tree: &Tree,
    row: &[f64],
    f: usize,
    pending: &mut Vec<(usize, f64, f64)>,
    out: &mut Vec<(f64, f64, f64)>,
) {
    pending.clear();
    pending.push((0, f64::NEG_INFINITY, f64::INFINITY));
    while let Some((mut node, mut lo, hi)) = pending.pop() {
        loop {
            if tree.is_leaf(node) {
                out.push((lo, hi, tree.value[node]));
                break;
            }
            let left = tree.children_left[node] as usize;
            let right = tree.children_right[node] as usize;
            let g = tree.feature[node] as usize;
            if g != f {
                node = tree.child_for(node, row.get(g).copied().unwrap_or(f64::NAN));
                continue;
            }
            // Left when v <= t: the values (lo, min(hi, t)]; right: (max(lo, t), hi].
            let t = tree.threshold[node];
            if t.is_nan() || t <= lo {
                node = right;
            } else if t >= hi {
                node = left;
            } else {
                pending.push((left, lo, t));
                node = right;
                lo = t;
            }
        }
    }
}
