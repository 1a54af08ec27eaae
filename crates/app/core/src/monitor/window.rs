//! The window of explained rows and the summaries kept as rows arrive and leave.
//!
//! Every row adds to the summaries when it is pushed and is taken out of them, exactly,
//! when it leaves (the window is full, it is older than `max_age`, or its subject is
//! erased): counts per protected group, counts per cell of the reference's grid for
//! every numeric feature and for the outputs, level counts, and fixed-point sums of
//! |attribution|. A computation reads the summaries, not the rows. The rows themselves
//! are kept in compact columns ([`super::columns`]) for what the summaries cannot
//! answer: taking a row out again, joining an outcome or an attribute reported later,
//! a new reference's grid, and the associations between features (proxies).

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use half::bf16;
use sidelight_config::ProtectedConfig;
use sidelight_explain::Value;
use sidelight_monitor::{
    AttributionSums, CategoricalReference, DriftConfig, GroupCounts, Histogram, MonitorError,
    NumericGrid, Values,
};

#[cfg(test)]
use super::columns::Cell;
use super::columns::{Column, reserve, retain};
use super::{Observation, attribute_label, attribute_of, group_label, value_text};

/// A row of no listed group.
const UNLISTED: u8 = u8::MAX;

/// A numeric column's values as levels (their text), and how many are missing: counted
/// by bit pattern first, so that a million rows cost no million strings.
fn number_levels(column: &Column) -> (Vec<(String, u64)>, u64) {
    let mut by_bits: HashMap<u64, u64> = HashMap::new();
    let mut missing = 0;
    for x in column.numbers() {
        if x.is_nan() {
            missing += 1;
        } else {
            *by_bits.entry(x.to_bits()).or_insert(0) += 1;
        }
    }
    let levels = by_bits
        .into_iter()
        .map(|(bits, n)| (value_text(&Value::Number(f64::from_bits(bits))), n))
        .collect();
    (levels, missing)
}
const FAVOURABLE: u8 = 1;
const OUTCOME_FALSE: u8 = 2;
const OUTCOME_TRUE: u8 = 4;
const ATTRIBUTED: u8 = 8;

fn outcome_of_flags(flags: u8) -> Option<bool> {
    if flags & OUTCOME_TRUE != 0 {
        Some(true)
    } else if flags & OUTCOME_FALSE != 0 {
        Some(false)
    } else {
        None
    }
}

/// One protected attribute's groups and their counts over the window.
#[derive(Debug, Clone)]
struct Groups {
    /// The privileged group, then the unprivileged ones.
    labels: Vec<String>,
    /// Where the attribute is among the features, if it is one.
    feature: Option<usize>,
    /// The attribute is named as a feature but the rows do not have it.
    absent: bool,
    counts: Vec<GroupCounts>,
    unlisted: u64,
}

/// One feature of the drift reference.
#[derive(Debug, Clone)]
pub(super) enum ReferenceFeature {
    Numeric {
        grid: Arc<NumericGrid>,
        counts: Arc<Histogram>,
    },
    Levels(Arc<CategoricalReference>),
}

/// The drift reference, as summaries: it never changes once made.
#[derive(Debug, Clone)]
pub(super) struct Reference {
    features: Vec<ReferenceFeature>,
    prediction: (Arc<NumericGrid>, Arc<Histogram>),
    rows: usize,
    from_training: bool,
    /// The subjects of a reference of first rows: erasing one of them drops it.
    subjects: HashSet<u64>,
    /// Names this reference wherever it is counted against: replicas of a fleet merge
    /// their drift counts only when they count against the same one.
    id: String,
    /// When it was made, in milliseconds since the Unix epoch.
    made_at: i64,
    /// Taken from the fleet rather than made here: this replica cannot tell whose rows
    /// it came from, so it keeps it only while the fleet does.
    adopted: bool,
}

/// A drift reference as the replicas of a fleet share it: the grids and counts it is
/// made of, never a row.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SharedReference {
    pub id: String,
    /// Which reference a fleet keeps when replicas offer several: a surrogate's
    /// training window (the newest) over first rows (the first offered).
    pub rank: i64,
    pub names: Vec<String>,
    pub rows: usize,
    pub from_training: bool,
    pub features: Vec<SharedFeature>,
    pub prediction: (NumericGrid, Histogram),
}

/// One feature of a [`SharedReference`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum SharedFeature {
    Numeric {
        grid: NumericGrid,
        counts: Histogram,
    },
    Levels {
        levels: Vec<(String, u64)>,
        missing: u64,
    },
}

impl Reference {
    /// Summarises the first `rows` rows of reference columns.
    fn from_columns(
        features: &[Column],
        prediction: &Column,
        rows: usize,
        subjects: HashSet<u64>,
        from_training: bool,
    ) -> Result<Self, MonitorError> {
        let config = DriftConfig::default();
        let mut out = Vec::with_capacity(features.len());
        for column in features {
            out.push(if column.is_numeric() {
                let grid =
                    NumericGrid::from_values(column.numbers().take(rows).collect(), &config)?;
                let counts = grid.count(column.numbers().take(rows));
                ReferenceFeature::Numeric {
                    grid: Arc::new(grid),
                    counts: Arc::new(counts),
                }
            } else {
                let (counts, missing) = column.level_counts(rows);
                ReferenceFeature::Levels(Arc::new(CategoricalReference::from_counts(
                    counts, missing, &config,
                )?))
            });
        }
        let grid = NumericGrid::from_values(prediction.numbers().take(rows).collect(), &config)?;
        let counts = grid.count(prediction.numbers().take(rows));
        Ok(Self {
            features: out,
            prediction: (Arc::new(grid), Arc::new(counts)),
            rows: rows.min(prediction.len()),
            from_training,
            subjects,
            id: uuid::Uuid::new_v4().simple().to_string(),
            made_at: crate::clock::now_ms(),
            adopted: false,
        })
    }

    /// The reference as a fleet shares it.
    fn share(&self, names: &[String]) -> SharedReference {
        SharedReference {
            id: self.id.clone(),
            rank: if self.from_training {
                self.made_at.max(1)
            } else {
                0
            },
            names: names.to_vec(),
            rows: self.rows,
            from_training: self.from_training,
            features: self
                .features
                .iter()
                .map(|f| match f {
                    ReferenceFeature::Numeric { grid, counts } => SharedFeature::Numeric {
                        grid: (**grid).clone(),
                        counts: (**counts).clone(),
                    },
                    ReferenceFeature::Levels(r) => SharedFeature::Levels {
                        levels: r.levels().to_vec(),
                        missing: r.missing(),
                    },
                })
                .collect(),
            prediction: ((*self.prediction.0).clone(), (*self.prediction.1).clone()),
        }
    }

    /// A reference taken from the fleet.
    fn adopt(shared: SharedReference) -> Result<Self, MonitorError> {
        let config = DriftConfig::default();
        let features = shared
            .features
            .into_iter()
            .map(|f| {
                Ok(match f {
                    SharedFeature::Numeric { grid, counts } => ReferenceFeature::Numeric {
                        grid: Arc::new(grid),
                        counts: Arc::new(counts),
                    },
                    SharedFeature::Levels { levels, missing } => ReferenceFeature::Levels(
                        Arc::new(CategoricalReference::from_counts(levels, missing, &config)?),
                    ),
                })
            })
            .collect::<Result<Vec<_>, MonitorError>>()?;
        Ok(Self {
            features,
            prediction: (Arc::new(shared.prediction.0), Arc::new(shared.prediction.1)),
            rows: shared.rows,
            from_training: shared.from_training,
            subjects: HashSet::new(),
            id: shared.id,
            made_at: shared.rank,
            adopted: true,
        })
    }
}

/// The first rows seen, while they are collected to become the reference.
#[derive(Debug)]
enum Collect {
    /// They are the window's own first rows: none has left it yet, so nothing is
    /// copied. Once they are all in, the window may run up to [`OVERFLOW_ROWS`] past
    /// its size until the job makes them the reference.
    InWindow,
    /// Rows left the window first (`max_age`, an erasure, or the job was late): the
    /// first rows are kept apart.
    Apart(Box<Collecting>),
}

/// Rows the window may hold past its size while first rows wait to become the
/// reference.
const OVERFLOW_ROWS: usize = 65_536;

#[derive(Debug, Default)]
struct Collecting {
    features: Vec<Column>,
    prediction: Column,
    subjects: Vec<u64>,
}

/// A protected attribute's values, widened for a sweep of possible proxies.
#[derive(Debug)]
pub(super) struct ProxySource {
    pub(super) name: String,
    /// Its place among the features, if it is one.
    pub(super) feature: Option<usize>,
    numbers: Vec<f64>,
    codes: Vec<u32>,
    levels: Option<usize>,
}

impl ProxySource {
    /// Its values at positions `range` of the rows it was widened from.
    pub(super) fn values(&self, range: std::ops::Range<usize>) -> Values<'_> {
        widened(&self.numbers, &self.codes, self.levels, range)
    }
}

/// Values widened from a column (coded levels when `levels`), at positions `range`.
pub(super) fn widened<'a>(
    numbers: &'a [f64],
    codes: &'a [u32],
    levels: Option<usize>,
    range: std::ops::Range<usize>,
) -> Values<'a> {
    match levels {
        Some(n) => Values::Coded(codes.get(range).unwrap_or_default(), n),
        None => Values::Numeric(numbers.get(range).unwrap_or_default()),
    }
}

/// Where a window's rows were when something was read from it: rows keep their
/// sequence numbers as others come and go, until an erasure renumbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RowSpan {
    pub(super) first: u64,
    pub(super) rows: usize,
    pub(super) erasures: u64,
}

/// One feature's drift summaries, as a computation reads them.
#[derive(Debug, Clone)]
pub enum FeatureSummary {
    Numeric {
        grid: Arc<NumericGrid>,
        reference: Arc<Histogram>,
        current: Histogram,
    },
    Levels {
        reference: Arc<CategoricalReference>,
        current: Vec<(String, u64)>,
        missing: u64,
    },
    /// The reference holds numbers and the window text (or the other way round).
    Mismatch,
}

/// One protected attribute's counts, as a computation reads them (and as a replica of
/// a fleet publishes them).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GroupSummary {
    /// The privileged group's counts first, then the unprivileged groups'.
    pub counts: Vec<GroupCounts>,
    /// Rows of the window.
    pub total: u64,
    /// Rows of no listed group.
    pub unlisted: u64,
}

/// What a computation reads: the window's summaries, copied out.
#[derive(Debug, Clone)]
pub struct Summary {
    pub names: Vec<String>,
    pub window_rows: usize,
    /// Rows monitored since start.
    pub seen: u64,
    /// Per protected attribute of the config; `None` for a feature the rows lack.
    pub fairness: Vec<Option<GroupSummary>>,
    /// Per feature, once the reference is complete.
    pub drift: Option<Vec<FeatureSummary>>,
    /// The outputs' (grid, reference, current), once the reference is complete.
    pub prediction: Option<(Arc<NumericGrid>, Arc<Histogram>, Histogram)>,
    pub reference_rows: usize,
    pub from_training: bool,
    /// The reference's id ([`SharedReference::id`]), once there is one.
    pub reference_id: Option<String>,
    /// Whether the reference was taken from the fleet.
    pub reference_adopted: bool,
    pub attributions: AttributionSums,
    pub rows_with_outcome: u64,
}

/// The window: compact rows and their summaries.
#[derive(Debug)]
pub(super) struct Windows {
    pub(super) names: Vec<String>,
    cap: usize,
    features: Vec<Column>,
    prediction: Column,
    /// Per feature, each row's contribution as bf16 (f32's range, 2⁻⁸ relative).
    attributions: Vec<VecDeque<bf16>>,
    flags: VecDeque<u8>,
    /// When each row was seen: kept only for `max_age`.
    at: VecDeque<i64>,
    keep_times: bool,
    /// Index into `decisions` of each row's (threshold, higher is favourable).
    decision: VecDeque<u8>,
    decisions: Vec<(f64, bool)>,
    /// Hashed subjects (0: none); kept once a row has one.
    subjects: Option<VecDeque<u64>>,
    /// Per protected attribute, each row's group (`UNLISTED`: none listed).
    groups: Vec<VecDeque<u8>>,
    /// Per protected attribute that is not a feature, each row's value.
    attributes: Vec<Option<Column>>,
    fairness: Vec<Groups>,
    drift: Vec<Option<Histogram>>,
    prediction_drift: Option<Histogram>,
    sums: AttributionSums,
    with_outcome: u64,
    reference: Option<Reference>,
    collecting: Option<Collect>,
    /// Rows pushed (or changed) since the last computation.
    pub(super) fresh: u64,
    pub(super) seen: u64,
    /// The sequence number of the first row (rows are numbered as pushed).
    front_seq: u64,
    /// Erasures that removed rows (and renumbered the rest).
    erasures: u64,
    /// Per hashed audit record with rows in the window: its first row's sequence
    /// number and how many it has.
    records: HashMap<u64, (u64, u32)>,
    /// The records' keys in the order their rows came.
    record_order: VecDeque<u64>,
    hasher: RandomState,
}

impl Windows {
    pub(super) fn new(cap: usize, keep_times: bool) -> Self {
        Self {
            names: Vec::new(),
            cap,
            keep_times,
            features: Vec::new(),
            prediction: Column::default(),
            attributions: Vec::new(),
            flags: VecDeque::new(),
            at: VecDeque::new(),
            decision: VecDeque::new(),
            decisions: Vec::new(),
            subjects: None,
            groups: Vec::new(),
            attributes: Vec::new(),
            fairness: Vec::new(),
            drift: Vec::new(),
            prediction_drift: None,
            sums: AttributionSums::new(0),
            with_outcome: 0,
            reference: None,
            collecting: Some(Collect::InWindow),
            fresh: 0,
            seen: 0,
            front_seq: 0,
            erasures: 0,
            records: HashMap::new(),
            record_order: VecDeque::new(),
            hasher: RandomState::new(),
        }
    }

    /// A keyed hash of a record id or a subject (never 0, which means none). Keyed per
    /// process, so that nobody can choose ids that collide; two of a window's ids share
    /// one with odds of about n²/2⁶⁵.
    fn hash(&self, id: &str) -> u64 {
        self.hasher.hash_one(id).max(1)
    }

    pub(super) fn len(&self) -> usize {
        self.flags.len()
    }

    /// Sets the window up for rows of `names`.
    fn start(&mut self, names: &[String], protected: &[ProtectedConfig]) {
        self.names = names.to_vec();
        let n = names.len();
        self.features = vec![Column::default(); n];
        self.attributions = vec![VecDeque::new(); n];
        self.drift = vec![None; n];
        self.sums = AttributionSums::new(n);
        self.groups = vec![VecDeque::new(); protected.len()];
        self.attributes = protected
            .iter()
            .map(|p| (!p.is_feature()).then(Column::default))
            .collect();
        self.fairness = protected
            .iter()
            .map(|p| {
                let labels: Vec<String> = std::iter::once(p.privileged.clone())
                    .chain(p.unprivileged.iter().cloned())
                    .collect();
                let feature = p
                    .is_feature()
                    .then(|| names.iter().position(|m| *m == p.feature))
                    .flatten();
                Groups {
                    counts: vec![GroupCounts::default(); labels.len()],
                    labels,
                    feature,
                    absent: p.is_feature() && feature.is_none(),
                    unlisted: 0,
                }
            })
            .collect();
        if let Some(Collect::Apart(c)) = &mut self.collecting {
            c.features = vec![Column::default(); n];
        }
    }

    /// Adds explained rows given in the order of `names`; rows of other names (a new
    /// schema) are not monitored.
    pub(super) fn add(
        &mut self,
        names: &[String],
        rows: impl Iterator<Item = Observation>,
        protected: &[ProtectedConfig],
    ) {
        if self.names.is_empty() {
            self.start(names, protected);
        } else if self.names != names {
            return;
        }
        for obs in rows {
            self.add_row(obs, protected);
        }
    }

    fn add_row(&mut self, obs: Observation, protected: &[ProtectedConfig]) {
        if self.cap == 0 {
            return;
        }
        if self.len() >= self.cap {
            let waiting = matches!(self.collecting, Some(Collect::InWindow))
                && self.len() < self.cap.saturating_add(OVERFLOW_ROWS);
            if !waiting {
                self.pop_front();
            }
        }
        let cap = self.cap;
        let seq = self.front_seq + self.len() as u64;
        let subject = obs.subject.as_deref().map_or(0, |s| self.hash(s));
        if let Some(id) = &obs.record {
            // Numbered from the row's place in its record, so that a record whose first
            // rows have left (a window smaller than a request) still joins right.
            let key = self.hash(id);
            let first = seq.saturating_sub(u64::from(obs.index));
            let order = &mut self.record_order;
            self.records
                .entry(key)
                .and_modify(|(f, n)| {
                    let end = (*f + u64::from(*n)).max(seq + 1);
                    *n = u32::try_from(end - *f).unwrap_or(u32::MAX);
                })
                .or_insert_with(|| {
                    order.push_back(key);
                    (first, obs.index.saturating_add(1))
                });
        }
        if let Some(Collect::Apart(c)) = &mut self.collecting {
            if c.prediction.len() < cap {
                for (j, column) in c.features.iter_mut().enumerate() {
                    column.push(obs.row.get(j).unwrap_or(&Value::Missing), cap);
                }
                c.prediction.push(&Value::Number(obs.prediction), cap);
                c.subjects.push(subject);
            }
        }
        for (j, column) in self.features.iter_mut().enumerate() {
            column.push(obs.row.get(j).unwrap_or(&Value::Missing), cap);
            if !column.is_numeric() {
                // Text in a column the reference holds as numbers: no counts on its
                // grid until the next reference.
                if let Some(slot) = self.drift.get_mut(j) {
                    *slot = None;
                }
            }
        }
        self.prediction.push(&Value::Number(obs.prediction), cap);
        let attributed = obs.attributions.len() == self.names.len() && !self.names.is_empty();
        for (j, q) in self.attributions.iter_mut().enumerate() {
            reserve(q, cap);
            q.push_back(if attributed {
                bf16::from_f64(obs.attributions[j])
            } else {
                bf16::NAN
            });
        }
        let mut flags = if obs.favourable { FAVOURABLE } else { 0 };
        flags |= match obs.outcome {
            Some(true) => OUTCOME_TRUE,
            Some(false) => OUTCOME_FALSE,
            None => 0,
        };
        if attributed {
            flags |= ATTRIBUTED;
        }
        reserve(&mut self.flags, cap);
        self.flags.push_back(flags);
        if self.keep_times {
            reserve(&mut self.at, cap);
            self.at.push_back(obs.at);
        }
        let decision = self.decision_index(obs.threshold, obs.higher_is_favourable);
        reserve(&mut self.decision, cap);
        self.decision.push_back(decision);
        if subject != 0 && self.subjects.is_none() {
            self.subjects = Some(std::iter::repeat_n(0, self.len() - 1).collect());
        }
        if let Some(s) = &mut self.subjects {
            reserve(s, cap);
            s.push_back(subject);
        }
        for (k, p) in protected.iter().enumerate().take(self.fairness.len()) {
            let g = match self.fairness[k].feature {
                Some(j) => {
                    let label = obs
                        .row
                        .get(j)
                        .map(|v| group_label(p, v))
                        .unwrap_or_default();
                    self.group_index(k, &label)
                }
                None if p.is_feature() => UNLISTED,
                None => {
                    let value = attribute_of(&obs, k);
                    if let Some(Some(column)) = self.attributes.get_mut(k) {
                        let v = value.map_or(Value::Missing, |t| Value::Text(t.to_owned()));
                        column.push(&v, cap);
                    }
                    self.group_index(k, &attribute_label(p, value))
                }
            };
            reserve(&mut self.groups[k], cap);
            self.groups[k].push_back(g);
        }
        let last = self.len() - 1;
        self.count_row(last, 1);
        self.fresh += 1;
        self.seen += 1;
    }

    fn group_index(&self, k: usize, label: &str) -> u8 {
        self.fairness[k]
            .labels
            .iter()
            .position(|l| l == label)
            .and_then(|i| u8::try_from(i).ok())
            .filter(|&i| i != UNLISTED)
            .unwrap_or(UNLISTED)
    }

    /// The index of a decision rule; a route has one or two (a reload), so the table
    /// stays tiny. Past 255 distinct rules the last slot is reused for the newest.
    fn decision_index(&mut self, threshold: f64, higher: bool) -> u8 {
        if let Some(i) = self
            .decisions
            .iter()
            .position(|&(t, h)| t.to_bits() == threshold.to_bits() && h == higher)
        {
            return u8::try_from(i).unwrap_or(u8::MAX);
        }
        if self.decisions.len() < 256 {
            self.decisions.push((threshold, higher));
        } else if let Some(last) = self.decisions.last_mut() {
            *last = (threshold, higher);
        }
        u8::try_from(self.decisions.len() - 1).unwrap_or(u8::MAX)
    }

    /// Counts row `i` into the summaries (`sign = 1`) or out of them (`-1`).
    fn count_row(&mut self, i: usize, sign: i8) {
        let n = u64::from(sign != 0);
        let (add, remove) = (sign > 0, sign < 0);
        if let Some(reference) = &self.reference {
            for (j, feature) in reference.features.iter().enumerate() {
                if let (ReferenceFeature::Numeric { grid, .. }, Some(h), Some(x)) = (
                    feature,
                    self.drift.get_mut(j).and_then(Option::as_mut),
                    self.features.get(j).and_then(|c| c.number(i)),
                ) {
                    if add {
                        h.add(grid.cell(x), n);
                    } else if remove {
                        h.remove(grid.cell(x), n);
                    }
                }
            }
            if let (Some(h), Some(x)) = (&mut self.prediction_drift, self.prediction.number(i)) {
                let cell = reference.prediction.0.cell(x);
                if add {
                    h.add(cell, n);
                } else if remove {
                    h.remove(cell, n);
                }
            }
        }
        let flags = self.flags.get(i).copied().unwrap_or(0);
        if flags & ATTRIBUTED != 0 {
            let row = self
                .attributions
                .iter()
                .map(|q| q.get(i).map_or(f64::NAN, |x| x.to_f64()));
            self.sums.count(row, sign);
        }
        self.count_fairness(i, sign);
    }

    fn count_fairness(&mut self, i: usize, sign: i8) {
        let flags = self.flags.get(i).copied().unwrap_or(0);
        let favourable = flags & FAVOURABLE != 0;
        let outcome = outcome_of_flags(flags);
        if outcome.is_some() {
            self.with_outcome = if sign > 0 {
                self.with_outcome + 1
            } else {
                self.with_outcome.saturating_sub(1)
            };
        }
        for (k, groups) in self.fairness.iter_mut().enumerate() {
            let g = self.groups.get(k).and_then(|q| q.get(i)).copied();
            match g.map(usize::from).and_then(|g| groups.counts.get_mut(g)) {
                Some(c) => c.count(favourable, outcome, sign),
                None if sign > 0 => groups.unlisted += 1,
                None => groups.unlisted = groups.unlisted.saturating_sub(1),
            }
        }
    }

    /// Counts again, on the reference's grid, a column that has turned back into
    /// numbers (its last text row left).
    fn restore_drift(&mut self) {
        let Some(reference) = &self.reference else {
            return;
        };
        for (j, feature) in reference.features.iter().enumerate() {
            if let (ReferenceFeature::Numeric { grid, .. }, Some(slot @ None), Some(column)) =
                (feature, self.drift.get_mut(j), self.features.get(j))
            {
                if column.is_numeric() {
                    *slot = Some(grid.count(column.numbers()));
                }
            }
        }
    }

    /// Takes the oldest row out.
    pub(super) fn pop_front(&mut self) {
        if self.len() == 0 {
            return;
        }
        self.keep_first_rows_apart();
        self.count_row(0, -1);
        for c in &mut self.features {
            c.pop_front();
            c.tidy();
        }
        self.restore_drift();
        self.prediction.pop_front();
        for q in &mut self.attributions {
            q.pop_front();
        }
        self.flags.pop_front();
        self.at.pop_front();
        self.decision.pop_front();
        if let Some(s) = &mut self.subjects {
            s.pop_front();
        }
        for q in &mut self.groups {
            q.pop_front();
        }
        for c in self.attributes.iter_mut().flatten() {
            c.pop_front();
            c.tidy();
        }
        self.front_seq += 1;
        // Records leave in the order they came: only the oldest can be done.
        while let Some(&key) = self.record_order.front() {
            match self.records.get(&key) {
                Some(&(first, n)) if first + u64::from(n) > self.front_seq => break,
                Some(_) => {
                    self.records.remove(&key);
                    self.record_order.pop_front();
                }
                None => {
                    self.record_order.pop_front();
                }
            }
        }
    }

    /// Drops the rows older than `cutoff` (they were pushed in time order).
    pub(super) fn expire_before(&mut self, cutoff: i64) {
        while self.at.front().is_some_and(|&t| t < cutoff) {
            self.pop_front();
            self.fresh += 1;
        }
    }

    /// Whether first rows are being collected for the reference and are all in.
    pub(super) fn reference_due(&self) -> bool {
        self.cap > 0
            && match &self.collecting {
                Some(Collect::InWindow) => self.len() >= self.cap,
                Some(Collect::Apart(c)) => c.prediction.len() >= self.cap,
                None => false,
            }
    }

    /// Makes the collected first rows the reference (a sort per feature: the
    /// monitoring job calls it, never the request path), and brings the window back
    /// to its size.
    pub(super) fn finish_reference(&mut self) -> Result<(), MonitorError> {
        let reference = match self.collecting.take() {
            None => return Ok(()),
            Some(Collect::InWindow) => {
                let rows = self.cap.min(self.len());
                let subjects = self
                    .subjects
                    .iter()
                    .flat_map(|s| s.iter().take(rows))
                    .copied()
                    .filter(|&s| s != 0)
                    .collect();
                Reference::from_columns(&self.features, &self.prediction, rows, subjects, false)
            }
            Some(Collect::Apart(c)) => {
                let subjects = c.subjects.iter().copied().filter(|&s| s != 0).collect();
                Reference::from_columns(&c.features, &c.prediction, usize::MAX, subjects, false)
            }
        };
        let result = reference.map(|r| self.install(r));
        if result.is_err() {
            // Collected again from the next rows rather than never.
            self.collecting = Some(Collect::Apart(Box::new(Collecting {
                features: vec![Column::default(); self.names.len()],
                ..Collecting::default()
            })));
        }
        while self.len() > self.cap {
            self.pop_front();
        }
        result
    }

    /// Copies the window's rows aside as the first rows collected so far, before a row
    /// leaves the window while they are still its own.
    fn keep_first_rows_apart(&mut self) {
        if !matches!(self.collecting, Some(Collect::InWindow)) {
            return;
        }
        let rows = self.cap.min(self.len());
        let mut c = Collecting {
            features: vec![Column::default(); self.features.len()],
            ..Collecting::default()
        };
        for i in 0..rows {
            for (j, column) in self.features.iter().enumerate() {
                c.features[j].push(&column.value(i), self.cap);
            }
            let p = self.prediction.number(i).unwrap_or(f64::NAN);
            c.prediction.push(&Value::Number(p), self.cap);
            c.subjects.push(
                self.subjects
                    .as_ref()
                    .and_then(|s| s.get(i))
                    .copied()
                    .unwrap_or(0),
            );
        }
        self.collecting = Some(Collect::Apart(Box::new(c)));
    }

    /// Makes `reference` the drift reference and counts the window on its grids.
    fn install(&mut self, reference: Reference) {
        self.drift = reference
            .features
            .iter()
            .zip(&self.features)
            .map(|(r, column)| match r {
                ReferenceFeature::Numeric { grid, .. } if column.is_numeric() => {
                    Some(grid.count(column.numbers()))
                }
                _ => None,
            })
            .collect();
        self.drift.resize(self.features.len(), None);
        self.prediction_drift = Some(reference.prediction.0.count(self.prediction.numbers()));
        self.reference = Some(reference);
        self.fresh += 1;
    }

    /// Makes rows a surrogate was trained on (in the window's order of names) the
    /// reference.
    pub(super) fn set_reference(&mut self, rows: &[(Arc<[Value]>, f64)]) {
        let mut features = vec![Column::default(); self.names.len()];
        let mut prediction = Column::default();
        for (row, p) in rows {
            for (j, column) in features.iter_mut().enumerate() {
                column.push(row.get(j).unwrap_or(&Value::Missing), usize::MAX);
            }
            prediction.push(&Value::Number(*p), usize::MAX);
        }
        match Reference::from_columns(&features, &prediction, usize::MAX, HashSet::new(), true) {
            Ok(reference) => {
                self.collecting = None;
                self.install(reference);
                // Rows held past the window's size for first rows that are no longer
                // needed.
                while self.len() > self.cap {
                    self.pop_front();
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "the training rows could not become the drift reference")
            }
        }
    }

    /// Drops the rows of `subject`; a reference that saw the subject goes too (a
    /// training window when `training_reference_saw`, first rows when they held the
    /// subject), and first rows are collected again. Returns how many window rows went.
    pub(super) fn forget(&mut self, subject: &str, training_reference_saw: bool) -> usize {
        let key = self.hash(subject);
        let mut removed = 0;
        if self.subjects.as_ref().is_some_and(|s| s.contains(&key)) {
            self.keep_first_rows_apart();
        }
        if let Some(subjects) = &self.subjects {
            let keep: Vec<bool> = subjects.iter().map(|&s| s != key).collect();
            removed = keep.iter().filter(|k| !**k).count();
            if removed > 0 {
                for (i, k) in keep.iter().enumerate() {
                    if !k {
                        self.count_row(i, -1);
                    }
                }
                for c in &mut self.features {
                    c.retain(&keep);
                }
                self.restore_drift();
                self.prediction.retain(&keep);
                for q in &mut self.attributions {
                    retain(q, &keep);
                }
                retain(&mut self.flags, &keep);
                retain(&mut self.at, &keep);
                retain(&mut self.decision, &keep);
                if let Some(s) = &mut self.subjects {
                    retain(s, &keep);
                }
                for q in &mut self.groups {
                    retain(q, &keep);
                }
                for c in self.attributes.iter_mut().flatten() {
                    c.retain(&keep);
                }
                self.renumber(&keep);
                self.erasures += 1;
                self.fresh += 1;
            }
        }
        if let Some(Collect::Apart(c)) = &mut self.collecting {
            if c.subjects.contains(&key) {
                let keep: Vec<bool> = c.subjects.iter().map(|&s| s != key).collect();
                for column in &mut c.features {
                    column.retain(&keep);
                }
                c.prediction.retain(&keep);
                c.subjects.retain(|&s| s != key);
            }
        }
        let drop_reference = self.reference.as_ref().is_some_and(|r| {
            if r.from_training {
                training_reference_saw
            } else {
                r.subjects.contains(&key)
            }
        });
        if drop_reference {
            self.drop_reference();
        }
        removed
    }

    fn drop_reference(&mut self) {
        self.reference = None;
        self.drift = vec![None; self.features.len()];
        self.prediction_drift = None;
        // The window's rows have left before (it is past its first rows): collect the
        // next ones apart.
        self.collecting = Some(Collect::Apart(Box::new(Collecting {
            features: vec![Column::default(); self.names.len()],
            ..Collecting::default()
        })));
        self.fresh += 1;
    }

    /// The reference made here (not one taken from the fleet), as a fleet shares it.
    pub(super) fn shared_reference(&self) -> Option<SharedReference> {
        self.reference
            .as_ref()
            .filter(|r| !r.adopted)
            .map(|r| r.share(&self.names))
    }

    /// Makes the fleet's reference this window's (counting the window on its grids),
    /// unless it is already.
    pub(super) fn adopt_reference(&mut self, shared: SharedReference) -> Result<(), String> {
        if self.reference.as_ref().is_some_and(|r| r.id == shared.id) {
            return Ok(());
        }
        if shared.names != self.names || shared.features.len() != self.names.len() {
            return Err("the fleet's drift reference is for other features".to_owned());
        }
        let grids_fit = shared
            .features
            .iter()
            .filter_map(|f| match f {
                SharedFeature::Numeric { grid, counts } => Some((grid, counts)),
                SharedFeature::Levels { .. } => None,
            })
            .chain([(&shared.prediction.0, &shared.prediction.1)])
            .all(|(grid, counts)| grid.is_valid() && counts.counts.len() == grid.cells());
        if !grids_fit {
            return Err(
                "the fleet's drift reference has counts that do not fit its grids".to_owned(),
            );
        }
        let reference = Reference::adopt(shared).map_err(|e| e.to_string())?;
        self.collecting = None;
        self.install(reference);
        while self.len() > self.cap {
            self.pop_front();
        }
        Ok(())
    }

    /// Drops a reference taken from the fleet (the fleet no longer keeps it: a subject
    /// it may have come from was erased); first rows are collected again.
    pub(super) fn drop_adopted_reference(&mut self) {
        if self.reference.as_ref().is_some_and(|r| r.adopted) {
            self.drop_reference();
        }
    }

    /// Renumbers the records after rows went: a record's rows were pushed together and
    /// stay together.
    fn renumber(&mut self, keep: &[bool]) {
        let mut by_first: Vec<(u64, u64, u32)> = self
            .records
            .iter()
            .map(|(&k, &(first, n))| (first, k, n))
            .collect();
        by_first.sort_unstable();
        // Kept rows before each old position, to move every record's first row.
        let mut kept_before = Vec::with_capacity(keep.len() + 1);
        let mut count = 0u64;
        for k in keep {
            kept_before.push(count);
            count += u64::from(*k);
        }
        kept_before.push(count);
        self.records.clear();
        self.record_order.clear();
        for (first, key, n) in by_first {
            // Rows of the record that left at the front before keep their places in it:
            // the record's first row stays numbered before the window's.
            let gone = self.front_seq.saturating_sub(first);
            let Ok(start) = usize::try_from(first.saturating_sub(self.front_seq)) else {
                continue;
            };
            let present = usize::try_from(u64::from(n).saturating_sub(gone)).unwrap_or(0);
            let end = start.saturating_add(present).min(keep.len());
            let left = keep
                .get(start..end)
                .map_or(0, |s| s.iter().filter(|k| **k).count());
            if left > 0 {
                let new_present = self.front_seq + kept_before.get(start).copied().unwrap_or(0);
                let count = gone + left as u64;
                self.records.insert(
                    key,
                    (new_present - gone, u32::try_from(count).unwrap_or(u32::MAX)),
                );
                self.record_order.push_back(key);
            }
        }
    }

    /// Audit record `id`'s rows still in the window: each row's place in its record and
    /// its position in the window.
    fn rows_of(&self, id: &str) -> Vec<(usize, usize)> {
        let Some(&(first, n)) = self.records.get(&self.hash(id)) else {
            return Vec::new();
        };
        // Rows held past the window's size while first rows wait to become the
        // reference have left it as far as anyone can tell.
        let oldest = self.len().saturating_sub(self.cap);
        (first..first + u64::from(n))
            .filter_map(|seq| {
                let k = usize::try_from(seq - first).ok()?;
                let p = usize::try_from(seq.checked_sub(self.front_seq)?).ok()?;
                Some((k, p))
            })
            .filter(|&(_, p)| p >= oldest && p < self.len())
            .collect()
    }
    /// Joins outcomes to a record's rows: `judge(k, threshold, higher)` gives row `k`'s
    /// outcome. Returns how many rows got one.
    pub(super) fn join_outcome(
        &mut self,
        id: &str,
        mut judge: impl FnMut(usize, f64, bool) -> Option<bool>,
    ) -> usize {
        let mut changed = 0;
        for (k, i) in self.rows_of(id) {
            let (threshold, higher) = self
                .decision
                .get(i)
                .and_then(|&d| self.decisions.get(usize::from(d)))
                .copied()
                .unwrap_or((0.0, true));
            let Some(outcome) = judge(k, threshold, higher) else {
                continue;
            };
            self.count_fairness(i, -1);
            if let Some(f) = self.flags.get_mut(i) {
                *f &= !(OUTCOME_TRUE | OUTCOME_FALSE);
                *f |= if outcome { OUTCOME_TRUE } else { OUTCOME_FALSE };
            }
            self.count_fairness(i, 1);
            changed += 1;
        }
        if changed > 0 {
            self.fresh += 1;
        }
        changed
    }

    /// Joins reported attribute values (by protected attribute) to a record's rows.
    pub(super) fn join_attributes(
        &mut self,
        id: &str,
        reported: &[(usize, String)],
        protected: &[ProtectedConfig],
    ) -> usize {
        let rows = self.rows_of(id);
        for &(_, i) in &rows {
            self.count_fairness(i, -1);
            for (k, text) in reported {
                let Some(p) = protected.get(*k) else {
                    continue;
                };
                if let Some(Some(column)) = self.attributes.get_mut(*k) {
                    column.set_level(i, Some(text));
                }
                let g = self.group_index(*k, &attribute_label(p, Some(text)));
                if let Some(slot) = self.groups.get_mut(*k).and_then(|q| q.get_mut(i)) {
                    *slot = g;
                }
            }
            self.count_fairness(i, 1);
        }
        if !rows.is_empty() {
            self.fresh += 1;
        }
        rows.len()
    }

    /// The summaries, copied out for a computation.
    pub(super) fn summary(&self) -> Summary {
        let drift = self.reference.as_ref().map(|reference| {
            reference
                .features
                .iter()
                .enumerate()
                .map(
                    |(j, r)| match (r, self.drift.get(j).and_then(Option::as_ref)) {
                        (ReferenceFeature::Numeric { grid, counts }, Some(current)) => {
                            FeatureSummary::Numeric {
                                grid: grid.clone(),
                                reference: counts.clone(),
                                current: current.clone(),
                            }
                        }
                        (ReferenceFeature::Levels(reference), None) => {
                            let Some(column) = self.features.get(j) else {
                                return FeatureSummary::Mismatch;
                            };
                            let (current, missing) = match column.levels() {
                                Some(levels) => (
                                    levels.counts().map(|(l, n)| (l.to_owned(), n)).collect(),
                                    levels.missing,
                                ),
                                // Text in the reference, numbers only in the window:
                                // both as levels, the numbers as their text.
                                None => number_levels(column),
                            };
                            FeatureSummary::Levels {
                                reference: reference.clone(),
                                current,
                                missing,
                            }
                        }
                        // Numbers in the reference, text in the window: levels on both
                        // sides when the reference's grid holds each of its values.
                        (ReferenceFeature::Numeric { grid, counts }, None) => {
                            let levels = self.features.get(j).and_then(Column::levels);
                            match (levels, grid.point_counts(counts)) {
                                (Some(levels), Some(points)) => {
                                    match CategoricalReference::from_counts(
                                        points.map(|(x, n)| (value_text(&Value::Number(x)), n)),
                                        counts.missing,
                                        &DriftConfig::default(),
                                    ) {
                                        Ok(reference) => FeatureSummary::Levels {
                                            reference: Arc::new(reference),
                                            current: levels
                                                .counts()
                                                .map(|(l, n)| (l.to_owned(), n))
                                                .collect(),
                                            missing: levels.missing,
                                        },
                                        Err(_) => FeatureSummary::Mismatch,
                                    }
                                }
                                _ => FeatureSummary::Mismatch,
                            }
                        }
                        _ => FeatureSummary::Mismatch,
                    },
                )
                .collect()
        });
        let prediction = self.reference.as_ref().and_then(|r| {
            Some((
                r.prediction.0.clone(),
                r.prediction.1.clone(),
                self.prediction_drift.clone()?,
            ))
        });
        Summary {
            names: self.names.clone(),
            window_rows: self.len(),
            seen: self.seen,
            fairness: self
                .fairness
                .iter()
                .map(|g| {
                    (!g.absent).then(|| GroupSummary {
                        counts: g.counts.clone(),
                        total: self.len() as u64,
                        unlisted: g.unlisted,
                    })
                })
                .collect(),
            drift,
            prediction,
            reference_rows: self.reference.as_ref().map_or(0, |r| r.rows),
            from_training: self.reference.as_ref().is_some_and(|r| r.from_training),
            reference_id: self.reference.as_ref().map(|r| r.id.clone()),
            reference_adopted: self.reference.as_ref().is_some_and(|r| r.adopted),
            attributions: self.sums.clone(),
            rows_with_outcome: self.with_outcome,
        }
    }

    /// The protected attributes' columns (features, and attributes outside the rows),
    /// widened for a sweep of possible proxies, with where their rows are.
    pub(super) fn proxy_sources(
        &self,
        protected: &[ProtectedConfig],
    ) -> (Vec<ProxySource>, RowSpan) {
        let mut sources = Vec::new();
        for (k, p) in protected.iter().enumerate() {
            let column = if p.is_feature() {
                self.names
                    .iter()
                    .position(|n| *n == p.feature)
                    .map(|j| (Some(j), &self.features[j]))
            } else if !self.names.contains(&p.feature) {
                self.attributes
                    .get(k)
                    .and_then(Option::as_ref)
                    .map(|c| (None, c))
            } else {
                None
            };
            if let Some((feature, column)) = column {
                let (mut numbers, mut codes) = (Vec::new(), Vec::new());
                let levels = match column.values_into(&mut numbers, &mut codes) {
                    Values::Coded(_, n) => Some(n),
                    _ => None,
                };
                sources.push(ProxySource {
                    name: p.feature.clone(),
                    feature,
                    numbers,
                    codes,
                    levels,
                });
            }
        }
        (sources, self.span())
    }

    /// Feature `j`'s column widened into `numbers` or `codes` (coded levels: `Some` of
    /// how many), with where its rows are; `None` past the last feature.
    pub(super) fn widen_feature(
        &self,
        j: usize,
        numbers: &mut Vec<f64>,
        codes: &mut Vec<u32>,
    ) -> Option<(Option<usize>, RowSpan)> {
        let levels = match self.features.get(j)?.values_into(numbers, codes) {
            Values::Coded(_, n) => Some(n),
            _ => None,
        };
        Some((levels, self.span()))
    }

    fn span(&self) -> RowSpan {
        RowSpan {
            first: self.front_seq,
            rows: self.len(),
            erasures: self.erasures,
        }
    }

    /// The level of a row's protected attribute that is not a feature.
    #[cfg(test)]
    pub(super) fn attribute(&self, k: usize, i: usize) -> Option<String> {
        let column = self.attributes.get(k)?.as_ref()?;
        match column.get(i) {
            Cell::Level(stored) => column.levels()?.name_of(stored).map(str::to_owned),
            Cell::Number(x) => (!x.is_nan()).then(|| x.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    fn protected() -> Vec<ProtectedConfig> {
        vec![
            ProtectedConfig {
                feature: "g".to_owned(),
                privileged: "a".to_owned(),
                unprivileged: vec!["b".to_owned()],
                bands: Vec::new(),
                header: None,
                reported: false,
            },
            ProtectedConfig {
                feature: "h".to_owned(),
                privileged: "p".to_owned(),
                unprivileged: vec!["q".to_owned()],
                bands: Vec::new(),
                header: Some("x-h".to_owned()),
                reported: true,
            },
        ]
    }

    #[derive(Debug, Clone)]
    enum Op {
        Push {
            rows: u8,
            x: u8,
            y: i16,
            level: u8,
            group: u8,
            favourable: bool,
            subject: u8,
            attributed: bool,
        },
        Forget(u8),
        Outcome(u8, bool),
        Attribute(u8, bool),
        Reference,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            12 => (1u8..4, any::<u8>(), any::<i16>(), 0u8..6, 0u8..3, any::<bool>(), 0u8..8, prop::bool::weighted(0.8))
                .prop_map(|(rows, x, y, level, group, favourable, subject, attributed)| Op::Push { rows, x, y, level, group, favourable, subject, attributed }),
            1 => (0u8..8).prop_map(Op::Forget),
            2 => (any::<u8>(), any::<bool>()).prop_map(|(r, o)| Op::Outcome(r, o)),
            1 => (any::<u8>(), any::<bool>()).prop_map(|(r, o)| Op::Attribute(r, o)),
            1 => Just(Op::Reference),
        ]
    }

    fn names() -> Vec<String> {
        ["x", "y", "c", "g"].map(str::to_owned).to_vec()
    }

    fn numbered(i: usize, subject: &str) -> Observation {
        Observation {
            row: Arc::from(vec![
                Value::Number(i as f64),
                Value::Number(0.0),
                Value::Text(format!("l{}", i % 3)),
                Value::Text("a".to_owned()),
            ]),
            prediction: i as f64,
            subject: Some(Arc::from(subject)),
            ..Observation::default()
        }
    }

    /// The reference of first rows is the first `cap` rows pushed, whether the job
    /// makes it before more rows come (no copy: they are the window's) or after rows
    /// left the window early.
    #[test]
    fn first_rows_become_the_reference_with_or_without_a_copy() {
        for early_erasure in [false, true] {
            let protected = protected();
            let mut w = Windows::new(10, false);
            w.add(&names(), (0..5).map(|i| numbered(i, "s-early")), &protected);
            if early_erasure {
                // Rows leave before the reference is complete: kept apart from here.
                assert_eq!(w.forget("s-early", false), 5);
            }
            w.add(&names(), (5..25).map(|i| numbered(i, "s")), &protected);
            assert!(w.reference_due());
            w.finish_reference().unwrap();
            assert_eq!(w.len(), 10);
            let s = w.summary();
            let first = if early_erasure { 5..15 } else { 0..10 };
            let Some(FeatureSummary::Numeric {
                grid,
                reference,
                current,
            }) = s.drift.as_ref().map(|d| d[0].clone())
            else {
                panic!("numeric drift of x")
            };
            assert_eq!(*reference, grid.count(first.clone().map(|i| i as f64)));
            assert_eq!(current, grid.count((15..25).map(|i| i as f64)));
            assert_eq!(s.reference_rows, 10);
            let Some(FeatureSummary::Levels { reference, .. }) =
                s.drift.as_ref().map(|d| d[2].clone())
            else {
                panic!("levels of c")
            };
            let drift = reference.compare_counts(Vec::<(String, u64)>::new(), 0);
            let total: u64 = drift.levels.iter().map(|l| l.reference).sum();
            assert_eq!(total, 10);
        }
    }

    /// A replica of a fleet takes another's reference: it counts its own window on that
    /// reference's grids (so that the two windows' counts add), does not offer it as its
    /// own, and drops it when told the fleet no longer keeps it.
    #[test]
    fn a_reference_taken_from_another_window_counts_this_window_on_its_grids() {
        let protected = protected();
        let mut maker = Windows::new(10, false);
        maker.add(&names(), (0..10).map(|i| numbered(i, "s")), &protected);
        maker.finish_reference().unwrap();
        let shared = maker.shared_reference().unwrap();
        assert_eq!(shared.rank, 0, "first rows rank below any training window");

        let mut taker = Windows::new(10, false);
        taker.add(&names(), (30..45).map(|i| numbered(i, "t")), &protected);
        taker.adopt_reference(shared.clone()).unwrap();
        let s = taker.summary();
        assert_eq!(s.reference_id.as_deref(), Some(shared.id.as_str()));
        assert!(s.reference_adopted);
        assert!(
            taker.shared_reference().is_none(),
            "offered only by its maker"
        );
        let Some(FeatureSummary::Numeric {
            grid,
            reference,
            current,
        }) = s.drift.as_ref().map(|d| d[0].clone())
        else {
            panic!("numeric drift of x")
        };
        assert_eq!(*reference, grid.count((0..10).map(|i| i as f64)));
        // The window back to its size, counted on the maker's grid.
        assert_eq!(current, grid.count((35..45).map(|i| i as f64)));

        // Another schema's reference is refused, and nothing changes.
        let mut other = shared.clone();
        other.id = "other".to_owned();
        other.names.pop();
        assert!(taker.adopt_reference(other).is_err());
        assert_eq!(
            taker.summary().reference_id.as_deref(),
            Some(shared.id.as_str())
        );

        taker.drop_adopted_reference();
        assert!(taker.summary().reference_id.is_none());
        assert!(taker.summary().drift.is_none());
        // A reference made here is not dropped that way.
        maker.drop_adopted_reference();
        assert!(maker.summary().reference_id.is_some());
    }

    proptest! {
        /// Whatever rows come, leave (full window, erasure) or get outcomes and
        /// attributes later, the summaries equal what counting the rows still in the
        /// window from scratch gives.
        #[test]
        fn the_kept_summaries_equal_a_count_of_the_rows_in_the_window(
            ops in prop::collection::vec(op(), 1..160),
            cap in 1usize..40,
        ) {
            let protected = protected();
            let mut w = Windows::new(cap, false);
            // Each row with its record's number and its place in the record.
            let mut model: Vec<(Observation, u64, usize)> = Vec::new();
            let mut pushed = 0u64;
            for op in ops {
                match op {
                    Op::Push { rows, x, y, level, group, favourable, subject, attributed } => {
                        pushed += 1;
                        // A record of one to three rows; now and then a stray text in
                        // the numeric column `x`.
                        let batch: Vec<(Observation, u64, usize)> = (0..usize::from(rows))
                            .map(|k| {
                                let x = x.wrapping_add(u8::try_from(k).unwrap_or(0) * 37);
                                let obs = Observation {
                                    row: Arc::from(vec![
                                        if x == 7 { Value::Text("n/a".to_owned()) } else { Value::Number(f64::from(x)) },
                                        Value::Number(f64::from(y) / 7.0),
                                        if level == 5 { Value::Missing } else { Value::Text(format!("l{level}")) },
                                        Value::Text(["a", "b", "z"][usize::from(group)].to_owned()),
                                    ]),
                                    prediction: f64::from(x) / 255.0,
                                    favourable: favourable ^ (k == 1),
                                    record: Some(Arc::from(format!("r{pushed}"))),
                                    subject: Some(Arc::from(format!("s{subject}"))),
                                    attributions: if attributed {
                                        Arc::from(vec![f64::from(y) / 3.0, 0.1, -0.2, f64::from(x) * 1e-3])
                                    } else {
                                        Arc::from(Vec::new())
                                    },
                                    index: u32::try_from(k).unwrap_or(0),
                                    threshold: 0.5,
                                    ..Observation::default()
                                };
                                (obs, pushed, k)
                            })
                            .collect();
                        w.add(&names(), batch.iter().map(|(o, _, _)| o.clone()), &protected);
                        model.extend(batch);
                        while model.len() > cap {
                            model.remove(0);
                        }
                        if w.reference_due() {
                            w.finish_reference().unwrap();
                        }
                    }
                    Op::Forget(s) => {
                        let subject = format!("s{s}");
                        let removed = w.forget(&subject, false);
                        let before = model.len();
                        model.retain(|(o, _, _)| o.subject.as_deref() != Some(&subject));
                        prop_assert_eq!(removed, before - model.len());
                    }
                    Op::Outcome(r, outcome) => {
                        let Some(k) = (!model.is_empty()).then(|| usize::from(r) % model.len()) else { continue };
                        let record = model[k].1;
                        // Row `k` of the record gets `outcome` when k is even, its
                        // opposite when odd: a wrong numbering shows.
                        let judge = |k: usize| outcome ^ (k % 2 == 1);
                        let expected = model.iter().filter(|m| m.1 == record).count();
                        prop_assert_eq!(w.join_outcome(&format!("r{record}"), |k, _, _| Some(judge(k))), expected);
                        for m in model.iter_mut().filter(|m| m.1 == record) {
                            m.0.outcome = Some(judge(m.2));
                        }
                    }
                    Op::Attribute(r, q) => {
                        let Some(k) = (!model.is_empty()).then(|| usize::from(r) % model.len()) else { continue };
                        let record = model[k].1;
                        let value = if q { "q" } else { "p" };
                        let expected = model.iter().filter(|m| m.1 == record).count();
                        prop_assert_eq!(w.join_attributes(&format!("r{record}"), &[(1, value.to_owned())], &protected), expected);
                        for m in model.iter_mut().filter(|m| m.1 == record) {
                            m.0.attributes = Some(vec![None, Some(value.to_owned())].into_boxed_slice());
                        }
                    }
                    Op::Reference => {
                        if w.reference.is_none() && !model.is_empty() {
                            let rows: Vec<(Arc<[Value]>, f64)> = model.iter().map(|(o, ..)| (o.row.clone(), o.prediction)).collect();
                            w.set_reference(&rows);
                        }
                    }
                }
                if w.reference_due() {
                    w.finish_reference().unwrap();
                }
            }
            let s = w.summary();
            prop_assert_eq!(s.window_rows, model.len());
            if s.names.is_empty() {
                // Nothing was ever pushed: the window has not started.
                prop_assert!(model.is_empty());
                return Ok(());
            }
            // Fairness counts.
            for (k, p) in protected.iter().enumerate() {
                let labels: Vec<String> = model.iter().map(|(o, ..)| {
                    if k == 0 { group_label(p, &o.row[3]) } else {
                        attribute_label(p, o.attributes.as_ref().and_then(|a| a[1].as_deref()))
                    }
                }).collect();
                let attribute = sidelight_monitor::ProtectedAttribute { name: p.feature.clone(), privileged: p.privileged.clone(), unprivileged: p.unprivileged.clone() };
                let expected = sidelight_monitor::fairness(&attribute, labels.iter().zip(&model).map(|(l, (o, ..))| sidelight_monitor::Decision { group: l, favourable: o.favourable, outcome: o.outcome }), &Default::default()).unwrap();
                let g = s.fairness[k].as_ref().unwrap();
                let got = sidelight_monitor::fairness_from_counts(&attribute, &g.counts, g.total, g.unlisted, &Default::default()).unwrap();
                prop_assert_eq!(got, expected);
            }
            prop_assert_eq!(s.rows_with_outcome, model.iter().filter(|(o, ..)| o.outcome.is_some()).count() as u64);
            // Attribution sums, exactly.
            let mut sums = AttributionSums::new(4);
            for (o, ..) in &model {
                if o.attributions.len() == 4 {
                    sums.count(o.attributions.iter().map(|&a| bf16::from_f64(a).to_f64()), 1);
                }
            }
            prop_assert_eq!(&s.attributions, &sums);
            // Drift counts on the reference's grids.
            if let Some(features) = &s.drift {
                for (j, f) in features.iter().enumerate() {
                    match f {
                        FeatureSummary::Numeric { grid, current, .. } => {
                            // Numbers only in the window: a stray text has left it.
                            prop_assert!(model.iter().all(|(o, ..)| !matches!(o.row[j], Value::Text(_))));
                            let expected = grid.count(model.iter().map(|(o, ..)| match o.row[j] { Value::Number(x) => x, _ => f64::NAN }));
                            prop_assert_eq!(current, &expected);
                        }
                        FeatureSummary::Levels { current, missing, .. } => {
                            let mut got = current.clone();
                            got.sort();
                            let mut expected: HashMap<String, u64> = HashMap::new();
                            let mut none = 0;
                            for (o, ..) in &model {
                                match &o.row[j] {
                                    Value::Text(t) => *expected.entry(t.clone()).or_default() += 1,
                                    Value::Number(x) => *expected.entry(x.to_string()).or_default() += 1,
                                    _ => none += 1,
                                }
                            }
                            let mut expected: Vec<(String, u64)> = expected.into_iter().collect();
                            expected.sort();
                            prop_assert_eq!(got, expected);
                            prop_assert_eq!(*missing, none);
                        }
                        // Numbers on one side and text on the other: `x` with a stray
                        // text, or `c` whose reference held missing values only.
                        FeatureSummary::Mismatch => prop_assert!(j == 0 || j == 2, "feature {j}"),
                    }
                }
                let (grid, _, current) = s.prediction.as_ref().unwrap();
                prop_assert_eq!(current, &grid.count(model.iter().map(|(o, ..)| o.prediction)));
            }
            // The rows kept for the reported attribute are the model's.
            for (i, (o, ..)) in model.iter().enumerate() {
                let expected = o.attributes.as_ref().and_then(|a| a[1].clone());
                prop_assert_eq!(w.attribute(1, i), expected);
            }
        }
    }
}
