//! Fairness and drift monitoring of a route's explained predictions (`[routes.monitor]`).
//!
//! The request path pushes one small [`Observation`] per explained row into a bounded
//! window under a mutex (never waiting on the statistics); a background thread per
//! route recomputes, every `every`, the fairness report of each protected attribute
//! and the drift of every feature and of the predictions against a reference (the rows
//! the surrogate in service was trained on; until one is trained while the proxy runs,
//! the first `window_rows` rows the monitor saw), stores the results for
//! `GET /api/v1/monitoring`, sets the `sidelight_fairness_*` and `sidelight_drift_*`
//! gauges, and flags the protected groups whose fairness verdict is `fail` for review
//! (and unflags them, only those it flagged itself, when they pass again).
//!
//! Each row carries its audit record id, so that outcomes reported later
//! (`POST /v1/feedback`) join the rows still in the window and give equal opportunity and
//! average odds; rows also carry their attributions, for the attribution check (mean
//! |SHAP| per feature, the protected features' share, possible proxies). Every
//! computation feeds the route's alerts (see `alert`).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};

use arc_swap::ArcSwapOption;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;
use sidelight_explain::Value;
use sidelight_monitor::{
    AttributionCheck, CategoricalReference, Column, Decision, DriftConfig, FairnessConfig,
    FairnessReport, FeatureDrift, FidelityPoint, FidelitySummary, NumericDrift, NumericReference,
    ProtectedAttribute, Values, Verdict,
};

use crate::alert::{AlertBook, Alerter, Check, Reading};
use crate::audit::now_ms;
use crate::config::{MonitorConfig, ProtectedConfig};
use crate::review::Reviews;

/// One explained row, as the monitor keeps it (the row shared between the window and
/// the reference, and cheap to copy out for the computation).
#[derive(Clone)]
pub(crate) struct Observation {
    pub(crate) row: Arc<[Value]>,
    pub(crate) prediction: f64,
    pub(crate) favourable: bool,
    /// The audit record the row belongs to (with an audit log), and its place in it.
    pub(crate) record: Option<Arc<str>>,
    pub(crate) index: u32,
    /// The row's attributions, in the order of the rows' names; empty if unknown.
    pub(crate) attributions: Arc<[f64]>,
    /// The output at which the row's decision turns, and its direction: a numeric
    /// outcome reported later is judged the same way.
    pub(crate) threshold: f64,
    pub(crate) higher_is_favourable: bool,
    /// When it was seen, in milliseconds since the Unix epoch (for `max_age`).
    pub(crate) at: i64,
    /// The true outcome reported through `POST /v1/feedback` (favourable or not).
    pub(crate) outcome: Option<bool>,
    /// The values of the protected attributes that are not features (from a header, or
    /// reported later), by their place in `[routes.monitor] protected`; `None` while
    /// the route has none or the row has no value yet.
    pub(crate) attributes: Option<Box<[Option<String>]>>,
}

impl Default for Observation {
    fn default() -> Self {
        Self {
            row: Arc::from(Vec::new()),
            prediction: 0.0,
            favourable: false,
            record: None,
            index: 0,
            attributions: Arc::from(Vec::new()),
            threshold: 0.0,
            higher_is_favourable: true,
            at: 0,
            outcome: None,
            attributes: None,
        }
    }
}

/// Whether a reported outcome is favourable: `true`/`false`; a number, judged against
/// the row's decision threshold in the route's direction; or the words `favourable` /
/// `unfavourable` (`favorable` / `unfavorable` too). Anything else is not joined.
pub(crate) fn outcome_of(
    value: &serde_json::Value,
    threshold: f64,
    higher_is_favourable: bool,
) -> Option<bool> {
    match value {
        serde_json::Value::Bool(b) => Some(*b),
        serde_json::Value::Number(n) => n.as_f64().filter(|x| x.is_finite()).map(|x| {
            if higher_is_favourable {
                x >= threshold
            } else {
                x <= threshold
            }
        }),
        serde_json::Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "favourable" | "favorable" => Some(true),
            "unfavourable" | "unfavorable" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// The reported outcome of row `k` of a record: an array gives one per row; a single
/// value applies to row `row` if named, else to every row.
pub(crate) fn outcome_for_row(
    outcome: &serde_json::Value,
    row: Option<usize>,
    k: usize,
) -> Option<&serde_json::Value> {
    match (outcome, row) {
        (serde_json::Value::Array(items), _) => items.get(k),
        (single, Some(r)) => (r == k).then_some(single),
        (single, None) => Some(single),
    }
}

/// The Prometheus gauges every route's monitor sets.
#[derive(Default)]
pub(crate) struct MonitorGauges {
    disparate_impact: Family<GroupLabels, Gauge<f64, AtomicU64>>,
    parity_difference: Family<GroupLabels, Gauge<f64, AtomicU64>>,
    selection_rate: Family<GroupLabels, Gauge<f64, AtomicU64>>,
    psi: Family<FeatureLabels, Gauge<f64, AtomicU64>>,
    ks: Family<FeatureLabels, Gauge<f64, AtomicU64>>,
    prediction_psi: Family<RouteLabels, Gauge<f64, AtomicU64>>,
    equal_opportunity: Family<GroupLabels, Gauge<f64, AtomicU64>>,
    average_odds: Family<GroupLabels, Gauge<f64, AtomicU64>>,
    attribution_mean_abs: Family<FeatureLabels, Gauge<f64, AtomicU64>>,
    protected_share: Family<RouteLabels, Gauge<f64, AtomicU64>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabels {
    route: String,
    attribute: String,
    group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FeatureLabels {
    route: String,
    feature: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

impl MonitorGauges {
    /// Creates the gauges and registers them in `registry`.
    pub(crate) fn register(registry: &mut Registry) -> Arc<Self> {
        let gauges = Self::default();
        registry.register(
            "sidelight_fairness_disparate_impact",
            "Selection rate of an unprivileged group over the privileged group's",
            gauges.disparate_impact.clone(),
        );
        registry.register(
            "sidelight_fairness_statistical_parity_difference",
            "Selection rate of an unprivileged group minus the privileged group's",
            gauges.parity_difference.clone(),
        );
        registry.register(
            "sidelight_fairness_selection_rate",
            "Share of a group's predictions with the favourable decision",
            gauges.selection_rate.clone(),
        );
        registry.register(
            "sidelight_drift_psi",
            "Population stability index of a feature, current window against the reference",
            gauges.psi.clone(),
        );
        registry.register(
            "sidelight_drift_ks",
            "Kolmogorov-Smirnov statistic of a numeric feature, current window against the reference",
            gauges.ks.clone(),
        );
        registry.register(
            "sidelight_prediction_drift_psi",
            "Population stability index of the model's outputs, current window against the reference",
            gauges.prediction_psi.clone(),
        );
        registry.register(
            "sidelight_fairness_equal_opportunity_difference",
            "True positive rate of an unprivileged group minus the privileged group's, over rows with a reported outcome",
            gauges.equal_opportunity.clone(),
        );
        registry.register(
            "sidelight_fairness_average_odds_difference",
            "Mean of the true and false positive rate differences of an unprivileged group, over rows with a reported outcome",
            gauges.average_odds.clone(),
        );
        registry.register(
            "sidelight_attribution_mean_abs",
            "Mean absolute attribution of a feature over the current window",
            gauges.attribution_mean_abs.clone(),
        );
        registry.register(
            "sidelight_attribution_protected_share",
            "Protected features' share of the total mean absolute attribution over the current window",
            gauges.protected_share.clone(),
        );
        Arc::new(gauges)
    }
}

/// What the monitor computed last, served by `GET /api/v1/monitoring`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct MonitorReport {
    /// When it was computed, in milliseconds since the Unix epoch.
    pub(crate) computed_at: i64,
    /// How long the computation took, in milliseconds (copying the window included).
    pub(crate) compute_ms: u64,
    /// Rows in the current window.
    pub(crate) window_rows: usize,
    /// Rows monitored since the proxy started.
    pub(crate) rows_seen: u64,
    /// Rows not monitored: they arrived while the window was being copied for the
    /// computation and the inbox that holds such rows was busy or full (the request
    /// path never waits for the monitor).
    pub(crate) rows_skipped: u64,
    /// Rows in the drift reference.
    pub(crate) reference_rows: usize,
    /// What the reference is: `training_window` (the rows the surrogate in service was
    /// trained on) or `first_rows` (the first `window_rows` rows seen, until a surrogate
    /// is trained while the proxy runs).
    pub(crate) reference: &'static str,
    pub(crate) fairness: Vec<FairnessReport>,
    /// Per feature; empty until the reference is complete.
    pub(crate) drift: Vec<FeatureDrift>,
    /// Of the model's output (the first value per row); `None` until the reference is
    /// complete.
    pub(crate) prediction_drift: Option<NumericDrift>,
    /// Rows of the window with a reported outcome (what equal opportunity and average
    /// odds are computed over).
    pub(crate) rows_with_outcome: usize,
    /// Mean |attribution| per feature, the protected features' share, and possible
    /// proxies of each protected feature; `None` without attributions.
    pub(crate) attribution: Option<AttributionCheck>,
    /// The held-out R² of every surrogate trained for the route (accepted or not), over
    /// time; `None` until one is trained.
    pub(crate) fidelity: Option<FidelitySummary>,
    /// Protected groups flagged for review by this monitor, as (feature, group).
    pub(crate) flagged: Vec<(String, String)>,
    /// Why something could not be computed, if anything.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) errors: Vec<String>,
}

#[derive(Default)]
struct Windows {
    names: Vec<String>,
    current: VecDeque<Observation>,
    reference: Vec<Observation>,
    /// The reference is the training window of the surrogate in service (else: the
    /// first `window_rows` rows seen).
    reference_from_training: bool,
    /// Rows pushed since the last computation.
    fresh: u64,
    /// Rows pushed since start.
    seen: u64,
    /// The sequence number of `current`'s first row (rows are numbered as pushed).
    front_seq: u64,
    /// Per audit record with rows in `current`: the sequence number of its first row and
    /// how many it has, so that an outcome finds its rows.
    records: HashMap<Arc<str>, (u64, u32)>,
}

impl Windows {
    /// Adds explained rows given in the order of `names`; rows of other names (a new
    /// schema) are not monitored.
    fn add(&mut self, names: &[String], rows: impl Iterator<Item = Observation>, cap: usize) {
        if self.names.is_empty() {
            self.names = names.to_vec();
        } else if self.names != names {
            return;
        }
        for obs in rows {
            if !self.reference_from_training && self.reference.len() < cap {
                self.reference.push(obs.clone());
            }
            if self.current.len() == cap {
                self.pop_front();
            }
            let seq = self.front_seq + self.current.len() as u64;
            if let Some(id) = &obs.record {
                self.records
                    .entry(id.clone())
                    .and_modify(|(_, n)| *n += 1)
                    .or_insert((seq, 1));
            }
            self.current.push_back(obs);
            self.fresh += 1;
            self.seen += 1;
        }
    }

    /// Moves the rows that waited in the inbox into the window.
    fn merge(&mut self, inbox: &mut Inbox, cap: usize) {
        if inbox.rows.is_empty() {
            return;
        }
        let names = std::mem::take(&mut inbox.names);
        let rows = std::mem::take(&mut inbox.rows);
        self.add(&names, rows.into_iter(), cap);
    }

    fn pop_front(&mut self) {
        let Some(old) = self.current.pop_front() else {
            return;
        };
        let seq = self.front_seq;
        self.front_seq += 1;
        if let Some(id) = &old.record {
            if self
                .records
                .get(id)
                .is_some_and(|(first, n)| first + u64::from(*n) <= seq + 1)
            {
                self.records.remove(id);
            }
        }
    }
}

/// Rows pushed while the window was locked for a computation's copy.
#[derive(Default)]
struct Inbox {
    names: Vec<String>,
    rows: Vec<Observation>,
}

/// Reads the route's surrogate fidelity series.
pub(crate) type FidelitySource = Box<dyn Fn() -> Vec<FidelityPoint> + Send + Sync>;

/// One route's monitor.
pub(crate) struct RouteMonitor {
    pub(crate) route: String,
    config: MonitorConfig,
    windows: Mutex<Windows>,
    inbox: Mutex<Inbox>,
    pub(crate) latest: ArcSwapOption<MonitorReport>,
    gauges: OnceLock<Arc<MonitorGauges>>,
    reviews: OnceLock<Arc<Reviews>>,
    /// Groups this monitor flagged, so that it removes only its own flags.
    own_flags: Mutex<HashSet<(String, String)>>,
    alerter: OnceLock<Arc<Alerter>>,
    fidelity: OnceLock<FidelitySource>,
    alerts: Mutex<AlertBook>,
    /// How many of the route's alerts fire now, for the review rule `alerts`.
    firing: AtomicUsize,
    /// Rows not monitored because the computation was copying the window just then.
    skipped: AtomicU64,
    stopping: AtomicBool,
    stop_lock: Mutex<()>,
    wake: Condvar,
}

impl std::fmt::Debug for RouteMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteMonitor")
            .field("route", &self.route)
            .finish_non_exhaustive()
    }
}

impl RouteMonitor {
    pub(crate) fn new(route: &str, config: MonitorConfig) -> Arc<Self> {
        Arc::new(Self {
            route: route.to_owned(),
            config,
            windows: Mutex::default(),
            inbox: Mutex::default(),
            latest: ArcSwapOption::empty(),
            gauges: OnceLock::new(),
            reviews: OnceLock::new(),
            own_flags: Mutex::default(),
            alerter: OnceLock::new(),
            fidelity: OnceLock::new(),
            alerts: Mutex::default(),
            firing: AtomicUsize::new(0),
            skipped: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            stop_lock: Mutex::new(()),
            wake: Condvar::new(),
        })
    }

    /// Gives the monitor its gauges and, with an audit log, the review flags and the
    /// reported outcomes (`reviews` passes them on).
    pub(crate) fn attach(
        self: &Arc<Self>,
        gauges: Arc<MonitorGauges>,
        reviews: Option<Arc<Reviews>>,
    ) {
        let _ = self.gauges.set(gauges);
        if let Some(reviews) = reviews {
            reviews.watch_outcomes(self);
            let _ = self.reviews.set(reviews);
        }
    }

    /// Gives the monitor where its alerts go and where the route's fidelity series is.
    pub(crate) fn attach_alerts(&self, alerter: Arc<Alerter>, fidelity: Option<FidelitySource>) {
        let _ = self.alerter.set(alerter);
        if let Some(f) = fidelity {
            let _ = self.fidelity.set(f);
        }
    }

    /// How many of the route's alerts fire now.
    pub(crate) fn firing_alerts(&self) -> usize {
        self.firing.load(Ordering::Relaxed)
    }

    /// The firing alerts and recent transitions, for `GET /api/v1/alerts`.
    pub(crate) fn alerts_json(&self) -> serde_json::Value {
        self.alerts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .json()
    }

    /// Joins an outcome reported for audit record `id` to its rows still in the window
    /// (see [`outcome_for_row`] and [`outcome_of`]); returns how many rows it joined.
    /// Rows that have left the window are not joined: the outcome stays in the audit log.
    pub(crate) fn join_outcome(
        &self,
        id: &str,
        outcome: &serde_json::Value,
        row: Option<usize>,
    ) -> usize {
        self.update_record(id, |obs| {
            let value = outcome_for_row(outcome, row, obs.index as usize)
                .and_then(|v| outcome_of(v, obs.threshold, obs.higher_is_favourable));
            if let Some(v) = value {
                obs.outcome = Some(v);
            }
            value.is_some()
        })
    }

    /// Applies `update` to each row of audit record `id` still in the window; returns
    /// how many rows it changed (it says so by returning `true`).
    fn update_record(&self, id: &str, mut update: impl FnMut(&mut Observation) -> bool) -> usize {
        let Some(mut w) = self.windows() else {
            return 0;
        };
        let Some(&(first, n)) = w.records.get(id) else {
            return 0;
        };
        let front = w.front_seq;
        let mut changed = 0;
        for seq in first..first + u64::from(n) {
            let Some(obs) = seq
                .checked_sub(front)
                .and_then(|p| usize::try_from(p).ok())
                .and_then(|p| w.current.get_mut(p))
            else {
                continue;
            };
            if update(obs) {
                changed += 1;
            }
        }
        if changed > 0 {
            w.fresh += 1;
        }
        changed
    }

    /// Joins protected attributes reported after the prediction (`reported = true`) to
    /// the record's rows still in the window; returns how many rows got a value.
    pub(crate) fn join_attributes(
        &self,
        id: &str,
        attributes: &serde_json::Map<String, serde_json::Value>,
    ) -> usize {
        let reported: Vec<(usize, String)> = self
            .config
            .protected
            .iter()
            .enumerate()
            .filter(|(_, p)| p.reported)
            .filter_map(|(k, p)| {
                let text = match attributes.get(&p.feature)? {
                    serde_json::Value::String(s) => s.trim().to_owned(),
                    serde_json::Value::Number(n) => n.to_string(),
                    serde_json::Value::Bool(b) => b.to_string(),
                    _ => return None,
                };
                Some((k, text))
            })
            .collect();
        if reported.is_empty() {
            return 0;
        }
        let width = self.config.protected.len();
        self.update_record(id, |obs| {
            let values = obs
                .attributes
                .get_or_insert_with(|| vec![None; width].into_boxed_slice());
            for (k, text) in &reported {
                if let Some(slot) = values.get_mut(*k) {
                    *slot = Some(text.clone());
                }
            }
            true
        })
    }

    /// The protected attributes read from request headers: their place in the config
    /// and the header's name.
    pub(crate) fn header_attributes(&self) -> Vec<(usize, http::HeaderName)> {
        self.config
            .protected
            .iter()
            .enumerate()
            .filter_map(|(k, p)| {
                let name = http::HeaderName::from_bytes(p.header.as_ref()?.as_bytes()).ok()?;
                Some((k, name))
            })
            .collect()
    }

    /// How many protected attributes the route has (the width of
    /// [`Observation::attributes`]).
    pub(crate) fn protected_count(&self) -> usize {
        self.config.protected.len()
    }

    /// Adds explained rows (in the order of `names`); the request path's only cost.
    pub(crate) fn push(&self, names: &[String], rows: impl Iterator<Item = Observation>) {
        let cap = self.config.window_rows;
        if let Ok(mut w) = self.windows.try_lock() {
            if let Ok(mut inbox) = self.inbox.try_lock() {
                w.merge(&mut inbox, cap);
            }
            w.add(names, rows, cap);
            return;
        }
        // Never wait behind the computation's copy: the rows wait in the inbox for the
        // next push or computation, and only when that is busy too (or full) are they
        // dropped and counted.
        let Ok(mut inbox) = self.inbox.try_lock() else {
            self.skipped
                .fetch_add(rows.count() as u64, Ordering::Relaxed);
            return;
        };
        if inbox.rows.is_empty() {
            inbox.names = names.to_vec();
        } else if inbox.names != names {
            return;
        }
        let mut dropped = 0u64;
        for obs in rows {
            if inbox.rows.len() < cap {
                inbox.rows.push(obs);
            } else {
                dropped += 1;
            }
        }
        if dropped > 0 {
            self.skipped.fetch_add(dropped, Ordering::Relaxed);
        }
    }

    /// The window, with the rows that waited in the inbox merged in.
    fn windows(&self) -> Option<std::sync::MutexGuard<'_, Windows>> {
        let mut w = self.windows.lock().ok()?;
        let mut inbox = self.inbox.lock().unwrap_or_else(PoisonError::into_inner);
        w.merge(&mut inbox, self.config.window_rows);
        Some(w)
    }

    /// Makes the rows a newly accepted surrogate was trained on (given in the order of
    /// `names`, with the explained output of each) the drift reference.
    pub(crate) fn set_reference(&self, names: &[String], rows: Vec<(Arc<[Value]>, f64)>) {
        let Ok(mut w) = self.windows.lock() else {
            return;
        };
        if w.names.is_empty() {
            w.names = names.to_vec();
        }
        let order: Vec<Option<usize>> = w
            .names
            .iter()
            .map(|n| names.iter().position(|m| m == n))
            .collect();
        let identity = order.iter().enumerate().all(|(i, o)| *o == Some(i));
        w.reference = rows
            .into_iter()
            .map(|(row, prediction)| Observation {
                row: if identity {
                    row
                } else {
                    order
                        .iter()
                        .map(|o| {
                            o.and_then(|i| row.get(i).cloned())
                                .unwrap_or(Value::Missing)
                        })
                        .collect()
                },
                prediction,
                ..Observation::default()
            })
            .collect();
        w.reference_from_training = true;
        w.fresh += 1;
    }

    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        let _guard = self.stop_lock.lock();
        self.wake.notify_all();
    }

    /// The background loop: recompute every `every` until stopped.
    pub(crate) fn run(&self) {
        loop {
            {
                let guard = self
                    .stop_lock
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if self.stopping.load(Ordering::Relaxed) {
                    return;
                }
                let _ = self.wake.wait_timeout(guard, self.config.every);
            }
            if self.stopping.load(Ordering::Relaxed) {
                return;
            }
            self.compute(now_ms());
        }
    }

    /// Computes the statistics over the current windows and publishes them.
    pub(crate) fn compute(&self, now: i64) {
        let started = std::time::Instant::now();
        // Copy out what the statistics need, then let the request path go on.
        let (names, current, reference, groups_current, from_training, seen) = {
            let Some(mut w) = self.windows() else {
                return;
            };
            // Rows are pushed in time order: the oldest are at the front.
            if let Some(max_age) = self.config.max_age {
                let cutoff =
                    now.saturating_sub(i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX));
                while w.current.front().is_some_and(|o| o.at < cutoff) {
                    w.pop_front();
                    w.fresh += 1;
                }
            }
            if w.fresh == 0 && self.latest.load().is_some() {
                return;
            }
            w.fresh = 0;
            let names = w.names.clone();
            let current: Vec<Observation> = w.current.iter().cloned().collect();
            let complete =
                w.reference_from_training || w.reference.len() >= self.config.window_rows;
            let reference: Option<Vec<(Arc<[Value]>, f64)>> = (complete && !w.reference.is_empty())
                .then(|| {
                    w.reference
                        .iter()
                        .map(|o| (o.row.clone(), o.prediction))
                        .collect()
                });
            let n = w.current.len();
            (
                names,
                current,
                reference,
                n,
                w.reference_from_training,
                w.seen,
            )
        };
        let mut errors = Vec::new();
        let fairness_config = FairnessConfig {
            confidence: self.config.confidence,
            min_group_size: self.config.min_group_size,
            ..FairnessConfig::default()
        };
        let mut fairness = Vec::new();
        for (k, p) in self.config.protected.iter().enumerate() {
            let labels: Vec<String> = if p.is_feature() {
                let Some(index) = names.iter().position(|n| *n == p.feature) else {
                    if !names.is_empty() {
                        errors.push(format!(
                            "protected feature `{}` is not in the rows",
                            p.feature
                        ));
                    }
                    continue;
                };
                current
                    .iter()
                    .map(|o| {
                        o.row
                            .get(index)
                            .map(|v| group_label(p, v))
                            .unwrap_or_default()
                    })
                    .collect()
            } else {
                // A row without the attribute's value (no header, not reported yet)
                // belongs to no group.
                current
                    .iter()
                    .map(|o| attribute_label(p, attribute_of(o, k)))
                    .collect()
            };
            let attribute = ProtectedAttribute {
                name: p.feature.clone(),
                privileged: p.privileged.clone(),
                unprivileged: p.unprivileged.clone(),
            };
            let decisions = labels.iter().zip(&current).map(|(label, o)| Decision {
                group: label,
                favourable: o.favourable,
                outcome: o.outcome,
            });
            match sidelight_monitor::fairness(&attribute, decisions, &fairness_config) {
                Ok(report) => fairness.push(report),
                Err(e) => errors.push(e.to_string()),
            }
        }
        let mut drift = Vec::new();
        let mut prediction_drift = None;
        let reference_rows = reference.as_ref().map_or(0, Vec::len);
        if let Some(reference) = &reference {
            let config = DriftConfig::default();
            for (i, name) in names.iter().enumerate() {
                // Borrowed from the rows: a million-row window must not be copied cell by
                // cell for each feature.
                let ref_col: Vec<&Value> = reference.iter().map(|(r, _)| cell(r, i)).collect();
                let cur_col: Vec<&Value> = current.iter().map(|o| cell(&o.row, i)).collect();
                let numeric = ref_col
                    .iter()
                    .chain(&cur_col)
                    .all(|v| matches!(v, Value::Number(_) | Value::Missing));
                let result = if numeric {
                    NumericReference::new(&numbers(&ref_col), &config)
                        .map(|r| sidelight_monitor::Drift::Numeric(r.compare(&numbers(&cur_col))))
                } else {
                    CategoricalReference::new(&texts(&ref_col), &config)
                        .map(|r| sidelight_monitor::Drift::Categorical(r.compare(&texts(&cur_col))))
                };
                match result {
                    Ok(d) => drift.push(FeatureDrift {
                        feature: name.clone(),
                        drift: d,
                    }),
                    Err(e) => errors.push(e.to_string()),
                }
            }
            let ref_pred: Vec<f64> = reference.iter().map(|(_, p)| *p).collect();
            let cur_pred: Vec<f64> = current.iter().map(|o| o.prediction).collect();
            match sidelight_monitor::prediction_drift(&ref_pred, &cur_pred, &config) {
                Ok(d) => prediction_drift = Some(d),
                Err(e) => errors.push(e.to_string()),
            }
        }
        let attribution = self.attribution_check(&names, &current, &mut errors);
        let fidelity = self
            .fidelity
            .get()
            .map(|series| series())
            .filter(|s| !s.is_empty())
            .map(|s| sidelight_monitor::summarise_fidelity(&s));
        let flagged = self.update_flags(&fairness);
        self.set_gauges(
            &fairness,
            &drift,
            prediction_drift.as_ref(),
            attribution.as_ref(),
        );
        let readings = self.readings(
            &fairness,
            &fairness_config,
            &drift,
            prediction_drift.as_ref(),
            attribution.as_ref(),
            fidelity.as_ref(),
        );
        self.raise(readings, now);
        self.latest.store(Some(Arc::new(MonitorReport {
            computed_at: now,
            compute_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            window_rows: groups_current,
            rows_seen: seen,
            rows_skipped: self.skipped.load(Ordering::Relaxed),
            reference_rows,
            reference: if from_training {
                "training_window"
            } else {
                "first_rows"
            },
            fairness,
            drift,
            prediction_drift,
            rows_with_outcome: current.iter().filter(|o| o.outcome.is_some()).count(),
            attribution,
            fidelity,
            flagged,
            errors,
        })));
    }

    /// Mean |attribution| per feature and the protected share over the rows that have
    /// attributions, and for each protected feature the three features most associated
    /// with it in the window.
    fn attribution_check(
        &self,
        names: &[String],
        current: &[Observation],
        errors: &mut Vec<String>,
    ) -> Option<AttributionCheck> {
        let rows: Vec<&[f64]> = current
            .iter()
            .filter(|o| o.attributions.len() == names.len())
            .map(|o| &*o.attributions)
            .collect();
        if rows.is_empty() || names.is_empty() {
            return None;
        }
        let protected: Vec<&str> = self
            .config
            .protected
            .iter()
            .filter(|p| p.is_feature())
            .map(|p| p.feature.as_str())
            .filter(|p| names.iter().any(|n| n == p))
            .collect();
        let summary = match sidelight_monitor::attribution_summary(names, &protected, &rows) {
            Ok(s) => s,
            Err(e) => {
                errors.push(e.to_string());
                return None;
            }
        };
        let mut kinds = Vec::with_capacity(names.len());
        for i in 0..names.len() {
            let numeric = current
                .iter()
                .all(|o| matches!(o.row.get(i), Some(Value::Number(_) | Value::Missing) | None));
            kinds.push(numeric);
        }
        let column =
            |i: usize| -> Vec<&Value> { current.iter().map(|o| cell(&o.row, i)).collect() };
        let nums: Vec<Vec<f64>> = (0..names.len())
            .map(|i| {
                if kinds[i] {
                    numbers(&column(i))
                } else {
                    Vec::new()
                }
            })
            .collect();
        let texts: Vec<Vec<Option<Cow<'_, str>>>> = (0..names.len())
            .map(|i| {
                if kinds[i] {
                    Vec::new()
                } else {
                    texts(&column(i))
                }
            })
            .collect();
        let refs: Vec<Vec<Option<&str>>> = texts
            .iter()
            .map(|c| c.iter().map(Option::as_deref).collect())
            .collect();
        let mut columns: Vec<Column<'_>> = names
            .iter()
            .enumerate()
            .map(|(i, name)| Column {
                name,
                values: if kinds[i] {
                    Values::Numeric(&nums[i])
                } else {
                    Values::Categorical(&refs[i])
                },
            })
            .collect();
        // An attribute the model never sees (from a header, or reported) is where a
        // proxy matters most: the features most associated with it carry it in.
        let outside: Vec<(&str, Vec<Option<&str>>)> = self
            .config
            .protected
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.is_feature() && !names.contains(&p.feature))
            .map(|(k, p)| {
                let values = current.iter().map(|o| attribute_of(o, k)).collect();
                (p.feature.as_str(), values)
            })
            .collect();
        let mut proxied = protected.clone();
        for (name, values) in &outside {
            columns.push(Column {
                name,
                values: Values::Categorical(values),
            });
            proxied.push(name);
        }
        match sidelight_monitor::possible_proxies(&columns, &proxied, 3) {
            Ok(proxies) => Some(AttributionCheck::new(summary, proxies)),
            Err(e) => {
                errors.push(e.to_string());
                Some(AttributionCheck::new(summary, Vec::new()))
            }
        }
    }

    /// Each alert check's reading in this computation.
    fn readings(
        &self,
        fairness: &[FairnessReport],
        config: &FairnessConfig,
        drift: &[FeatureDrift],
        prediction: Option<&NumericDrift>,
        attribution: Option<&AttributionCheck>,
        fidelity: Option<&FidelitySummary>,
    ) -> Vec<Reading> {
        let bounds = &self.config.alerts;
        let mut out = Vec::new();
        let verdict = |v: Verdict| match v {
            Verdict::Fail => Some(true),
            Verdict::Pass => Some(false),
            // Inconclusive keeps a firing alert firing and does not fire a new one.
            Verdict::Inconclusive | Verdict::InsufficientData => None,
        };
        if bounds.fairness {
            for report in fairness {
                for c in &report.comparisons {
                    let subject = format!("{}={}", report.attribute, c.unprivileged);
                    for (check, v, value, bound) in [
                        (
                            Check::DisparateImpact,
                            c.disparate_impact_verdict,
                            c.disparate_impact.map(|e| e.value),
                            config.four_fifths,
                        ),
                        (
                            Check::StatisticalParity,
                            c.statistical_parity_verdict,
                            c.statistical_parity_difference.map(|e| e.value),
                            config.max_difference,
                        ),
                        (
                            Check::EqualOpportunity,
                            c.equal_opportunity_verdict,
                            c.equal_opportunity_difference.map(|e| e.value),
                            config.max_difference,
                        ),
                    ] {
                        out.push(Reading {
                            check,
                            subject: subject.clone(),
                            breaking: verdict(v),
                            value,
                            bound: Some(bound),
                        });
                    }
                }
            }
        }
        if bounds.drift {
            for d in drift {
                let psi = d.drift.psi();
                out.push(Reading {
                    check: Check::FeaturePsi,
                    subject: d.feature.clone(),
                    breaking: psi.map(|p| p > bounds.feature_psi_above),
                    value: psi,
                    bound: Some(bounds.feature_psi_above),
                });
            }
            if let Some(p) = prediction {
                out.push(Reading {
                    check: Check::PredictionPsi,
                    subject: String::new(),
                    breaking: p.psi.map(|x| x > bounds.prediction_psi_above),
                    value: p.psi,
                    bound: Some(bounds.prediction_psi_above),
                });
            }
        }
        if let (Some(bound), Some(a)) = (bounds.protected_share_above, attribution) {
            let share = a.summary.protected_share;
            out.push(Reading {
                check: Check::ProtectedShare,
                subject: String::new(),
                breaking: share.map(|s| s > bound),
                value: share,
                bound: Some(bound),
            });
        }
        if let (Some(bound), Some(f)) = (bounds.fidelity_r2_below, fidelity) {
            let r2 = f.last.map(|p| p.r2);
            out.push(Reading {
                check: Check::FidelityR2,
                subject: String::new(),
                breaking: r2.map(|r| r < bound),
                value: r2,
                bound: Some(bound),
            });
        }
        out
    }

    /// Applies the readings to the route's alerts and publishes the transitions.
    fn raise(&self, readings: Vec<Reading>, now: i64) {
        let (transitions, firing) = {
            let mut book = self.alerts.lock().unwrap_or_else(PoisonError::into_inner);
            let t = book.update(&self.route, readings, now);
            (t, book.firing_count())
        };
        self.firing.store(firing, Ordering::Relaxed);
        if let Some(alerter) = self.alerter.get() {
            alerter.publish(&self.route, transitions, firing);
        }
    }

    /// Flags the groups whose verdict is `fail`; unflags those it flagged that no longer
    /// fail. Returns the groups it flags now.
    fn update_flags(&self, reports: &[FairnessReport]) -> Vec<(String, String)> {
        let failing: HashSet<(String, String)> = reports
            .iter()
            .flat_map(|r| {
                r.comparisons
                    .iter()
                    .filter(|c| worst(c) == Verdict::Fail)
                    .map(|c| (r.attribute.clone(), c.unprivileged.clone()))
            })
            .collect();
        let mut own = self
            .own_flags
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(reviews) = self.reviews.get() {
            let add: Vec<_> = failing.difference(&own).cloned().collect();
            let remove: Vec<_> = own.difference(&failing).cloned().collect();
            if !add.is_empty() || !remove.is_empty() {
                let mut mine = reviews.update_flags(&add, &remove);
                // Groups an admin had flagged already stay the admin's.
                mine.retain(|g| add.contains(g));
                for g in &remove {
                    own.remove(g);
                }
                own.extend(mine);
                for (feature, group) in &add {
                    tracing::warn!(route = %self.route, feature, group, "fairness check failed; group flagged for review");
                }
            }
        }
        let mut flagged: Vec<_> = own.iter().cloned().collect();
        flagged.sort();
        flagged
    }

    fn set_gauges(
        &self,
        fairness: &[FairnessReport],
        drift: &[FeatureDrift],
        prediction: Option<&NumericDrift>,
        attribution: Option<&AttributionCheck>,
    ) {
        let Some(g) = self.gauges.get() else {
            return;
        };
        let route = &self.route;
        for report in fairness {
            let labels = |group: &str| GroupLabels {
                route: route.clone(),
                attribute: report.attribute.clone(),
                group: group.to_owned(),
            };
            for group in &report.groups {
                if let Some(rate) = group.selection.rate {
                    g.selection_rate
                        .get_or_create(&labels(&group.group))
                        .set(rate);
                }
            }
            for c in &report.comparisons {
                if let Some(di) = c.disparate_impact {
                    g.disparate_impact
                        .get_or_create(&labels(&c.unprivileged))
                        .set(di.value);
                }
                if let Some(spd) = c.statistical_parity_difference {
                    g.parity_difference
                        .get_or_create(&labels(&c.unprivileged))
                        .set(spd.value);
                }
                if let Some(eod) = c.equal_opportunity_difference {
                    g.equal_opportunity
                        .get_or_create(&labels(&c.unprivileged))
                        .set(eod.value);
                }
                if let Some(aod) = c.average_odds_difference {
                    g.average_odds
                        .get_or_create(&labels(&c.unprivileged))
                        .set(aod);
                }
            }
        }
        for d in drift {
            let labels = FeatureLabels {
                route: route.clone(),
                feature: d.feature.clone(),
            };
            if let Some(psi) = d.drift.psi() {
                g.psi.get_or_create(&labels).set(psi);
            }
            if let sidelight_monitor::Drift::Numeric(n) = &d.drift {
                if let Some(ks) = n.ks {
                    g.ks.get_or_create(&labels).set(ks.statistic);
                }
            }
        }
        if let Some(psi) = prediction.and_then(|p| p.psi) {
            g.prediction_psi
                .get_or_create(&RouteLabels {
                    route: route.clone(),
                })
                .set(psi);
        }
        if let Some(a) = attribution {
            for f in &a.summary.features {
                g.attribution_mean_abs
                    .get_or_create(&FeatureLabels {
                        route: route.clone(),
                        feature: f.feature.clone(),
                    })
                    .set(f.mean_abs_contribution);
            }
            if let Some(share) = a.summary.protected_share {
                g.protected_share
                    .get_or_create(&RouteLabels {
                        route: route.clone(),
                    })
                    .set(share);
            }
        }
    }
}

/// The most severe of a comparison's verdicts that the window can support: equal
/// opportunity counts once reported outcomes give it a figure.
pub(crate) fn worst(c: &sidelight_monitor::GroupComparison) -> Verdict {
    let eo = c
        .equal_opportunity_difference
        .map(|_| c.equal_opportunity_verdict);
    [c.disparate_impact_verdict, c.statistical_parity_verdict]
        .into_iter()
        .chain(eo)
        .fold(Verdict::Pass, Verdict::worst)
}

impl RouteMonitor {
    /// The group of `value` of `feature` as the monitor labels it (its band, for a
    /// banded numeric feature; else the value as text), for the review rules.
    pub(crate) fn group_label(&self, feature: &str, value: &Value) -> String {
        match self.config.protected.iter().find(|p| p.feature == feature) {
            Some(p) => group_label(p, value),
            None => value_text(value),
        }
    }
}

/// The value of the `k`th protected attribute of a row, when it is not a feature.
fn attribute_of(o: &Observation, k: usize) -> Option<&str> {
    o.attributes.as_ref()?.get(k)?.as_deref()
}

/// The group of a header's or reported value: its band for a banded attribute (when the
/// value is a number), else the value itself; no value, no group.
fn attribute_label(p: &ProtectedConfig, value: Option<&str>) -> String {
    let Some(v) = value else {
        return String::new();
    };
    match v.parse::<f64>() {
        Ok(x) if !p.bands.is_empty() => p.band(x).unwrap_or_default(),
        _ => v.to_owned(),
    }
}

fn group_label(p: &ProtectedConfig, value: &Value) -> String {
    match value {
        Value::Number(x) if !p.bands.is_empty() => p.band(*x).unwrap_or_default(),
        other => value_text(other),
    }
}

/// The `i`th value of a row; missing when the row is shorter.
fn cell(row: &[Value], i: usize) -> &Value {
    const MISSING: &Value = &Value::Missing;
    row.get(i).unwrap_or(MISSING)
}

/// Numbers of a column; anything else is missing (NaN).
fn numbers(column: &[&Value]) -> Vec<f64> {
    column
        .iter()
        .map(|v| match v {
            Value::Number(x) => *x,
            _ => f64::NAN,
        })
        .collect()
}

/// A column's values as category labels, borrowed where they are text already.
fn texts<'a>(column: &[&'a Value]) -> Vec<Option<Cow<'a, str>>> {
    column
        .iter()
        .map(|v| match v {
            Value::Missing => None,
            Value::Text(t) => Some(Cow::Borrowed(t.as_str())),
            other => Some(Cow::Owned(value_text(other))),
        })
        .collect()
}

/// A value as a group label: as the review rules compare it.
pub(crate) fn value_text(v: &Value) -> String {
    match v {
        Value::Number(x) => x.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Text(t) => t.clone(),
        Value::Missing => String::new(),
    }
}

/// Starts the background thread of a monitor.
pub(crate) fn start(monitor: &Arc<RouteMonitor>) -> Option<std::thread::JoinHandle<()>> {
    let monitor = monitor.clone();
    std::thread::Builder::new()
        .name(format!("sidelight-monitor-{}", monitor.route))
        .spawn(move || {
            lower_priority();
            monitor.run();
        })
        .map_err(|e| tracing::error!(error = %e, "cannot start a monitor"))
        .ok()
}

/// Makes the calling thread yield the CPU to request threads: a computation over a large
/// window takes whole seconds of CPU, and the monitor must wait, not the requests. Under
/// `SCHED_IDLE` a waking request thread preempts it at once (under `SCHED_BATCH` with
/// nice 19 the requests' p99 still rose by half on 2 cores); a saturated machine then
/// gives the monitor only a sliver of CPU, so its results come later, never the
/// responses. Lowering a thread's priority needs no privilege.
fn lower_priority() {
    use thread_priority::{
        NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
        set_thread_priority_and_policy, thread_native_id,
    };
    if let Err(e) = set_thread_priority_and_policy(
        thread_native_id(),
        ThreadPriority::Min,
        ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
    ) {
        tracing::debug!(error = ?e, "could not lower the monitor thread's priority");
    }
}

/// `GET /api/v1/monitoring`: the latest results of every monitored route.
pub(crate) fn to_json(monitors: &[Arc<RouteMonitor>]) -> serde_json::Value {
    let routes: Vec<serde_json::Value> = monitors
        .iter()
        .map(|m| {
            let latest = m.latest.load_full();
            serde_json::json!({
                "route": m.route,
                "every_ms": u64::try_from(m.config.every.as_millis()).unwrap_or(u64::MAX),
                "window_capacity": m.config.window_rows,
                "latest": latest.as_deref(),
            })
        })
        .collect();
    serde_json::json!({ "routes": routes })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn config() -> MonitorConfig {
        MonitorConfig {
            window_rows: 100,
            protected: vec![ProtectedConfig {
                feature: "colour".to_owned(),
                privileged: "red".to_owned(),
                unprivileged: vec!["blue".to_owned()],
                bands: Vec::new(),
                header: None,
                reported: false,
            }],
            ..MonitorConfig::default()
        }
    }

    /// 50 red rows and 50 blue ones; `red` and `blue` of each 50 are favourable.
    fn push(monitor: &RouteMonitor, red: usize, blue: usize, shift: f64) {
        let names = vec!["a".to_owned(), "colour".to_owned()];
        let rows = (0..100).map(|i| {
            let colour = if i % 2 == 0 { "red" } else { "blue" };
            let k = i / 2;
            let favourable = if colour == "red" { k < red } else { k < blue };
            Observation {
                row: Arc::from(vec![
                    Value::Number(k as f64 + shift),
                    Value::Text(colour.to_owned()),
                ]),
                prediction: if favourable { 1.0 } else { 0.0 },
                favourable,
                ..Observation::default()
            }
        });
        monitor.push(&names, rows);
    }

    #[test]
    fn a_failing_group_is_flagged_and_unflagged_and_an_admins_flag_stays() {
        let monitor = RouteMonitor::new("m", config());
        let reviews = Arc::new(Reviews::default());
        let mut registry = Registry::default();
        monitor.attach(
            MonitorGauges::register(&mut registry),
            Some(reviews.clone()),
        );
        // An admin's flag, which the monitor must leave alone.
        reviews.update_flags(&[("colour".to_owned(), "green".to_owned())], &[]);

        push(&monitor, 40, 10, 0.0);
        monitor.compute(1);
        let report = monitor.latest.load_full().unwrap();
        assert_eq!(report.window_rows, 100);
        let f = &report.fairness[0];
        assert_eq!(f.groups[0].selection.successes, 40);
        assert_eq!(f.groups[1].selection.successes, 10);
        assert_eq!(f.comparisons[0].disparate_impact_verdict, Verdict::Fail);
        assert_eq!(
            report.flagged,
            vec![("colour".to_owned(), "blue".to_owned())]
        );
        assert!(
            reviews
                .flagged_set()
                .contains(&("colour".to_owned(), "blue".to_owned()))
        );
        // The reference is the first 100 rows: no drift against itself.
        assert!(report.drift.iter().all(|d| d.drift.psi().unwrap() < 1e-6));

        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains(
            "sidelight_fairness_selection_rate{route=\"m\",attribute=\"colour\",group=\"red\"} 0.8"
        ), "{text}");

        // Fair again, and shifted: the flag goes, the admin's stays, `a` drifts.
        push(&monitor, 25, 25, 1000.0);
        monitor.compute(2);
        let report = monitor.latest.load_full().unwrap();
        let c = &report.fairness[0].comparisons[0];
        assert_eq!(c.disparate_impact_verdict, Verdict::Pass);
        assert_eq!(c.statistical_parity_verdict, Verdict::Pass);
        assert!(report.flagged.is_empty());
        let flags = reviews.flagged_set();
        assert_eq!(flags.len(), 1);
        assert!(flags.contains(&("colour".to_owned(), "green".to_owned())));
        let a = report.drift.iter().find(|d| d.feature == "a").unwrap();
        assert!(a.drift.psi().unwrap() > 1.0);
    }

    #[test]
    fn reported_outcomes_map_to_favourable_or_not() {
        use serde_json::json;
        assert_eq!(outcome_of(&json!(true), 0.5, true), Some(true));
        assert_eq!(outcome_of(&json!(false), 0.5, false), Some(false));
        // Numbers are judged like predictions, in the route's direction.
        assert_eq!(outcome_of(&json!(0.7), 0.5, true), Some(true));
        assert_eq!(outcome_of(&json!(0.5), 0.5, true), Some(true));
        assert_eq!(outcome_of(&json!(0.7), 0.5, false), Some(false));
        assert_eq!(outcome_of(&json!(0.2), 0.5, false), Some(true));
        assert_eq!(outcome_of(&json!(" Favourable"), 0.5, true), Some(true));
        assert_eq!(outcome_of(&json!("unfavorable"), 0.5, true), Some(false));
        assert_eq!(outcome_of(&json!("maybe"), 0.5, true), None);
        assert_eq!(outcome_of(&json!(null), 0.5, true), None);
        assert_eq!(outcome_of(&json!({"x": 1}), 0.5, true), None);

        let array = json!([true, "unfavourable"]);
        assert_eq!(
            outcome_for_row(&array, None, 1),
            Some(&json!("unfavourable"))
        );
        assert_eq!(outcome_for_row(&array, None, 2), None);
        let single = json!(true);
        assert_eq!(outcome_for_row(&single, None, 3), Some(&single));
        assert_eq!(outcome_for_row(&single, Some(1), 1), Some(&single));
        assert_eq!(outcome_for_row(&single, Some(1), 0), None);
    }

    fn observation(
        record: &str,
        index: u32,
        colour: &str,
        favourable: bool,
        at: i64,
    ) -> Observation {
        Observation {
            row: Arc::from(vec![Value::Number(1.0), Value::Text(colour.to_owned())]),
            prediction: if favourable { 1.0 } else { 0.0 },
            favourable,
            record: Some(Arc::from(record)),
            index,
            attributions: Arc::from(vec![0.3, if colour == "red" { 0.1 } else { -0.1 }]),
            threshold: 0.5,
            higher_is_favourable: true,
            at,
            outcome: None,
            attributes: None,
        }
    }

    #[test]
    fn outcomes_join_rows_in_the_window_only_and_give_equal_opportunity() {
        let monitor = RouteMonitor::new(
            "m",
            MonitorConfig {
                min_group_size: 20,
                ..config()
            },
        );
        let names = vec!["a".to_owned(), "colour".to_owned()];
        // 100 records of two rows each (red, blue); the window keeps the last 100 rows.
        let rows = (0..100).flat_map(|r| {
            let id = format!("r{r}");
            [
                observation(&id, 0, "red", r % 2 == 0, 0),
                observation(&id, 1, "blue", r % 2 == 0, 0),
            ]
        });
        monitor.push(&names, rows);
        // r0..r49 have left the window: their outcomes stay in the audit log only.
        assert_eq!(
            monitor.join_outcome("r10", &serde_json::json!(true), None),
            0
        );
        assert_eq!(monitor.windows.lock().unwrap().records.len(), 50);
        // Every record in the window: red's deserved outcome matches its decision,
        // blue was deserving every time.
        for r in 50..100 {
            let id = format!("r{r}");
            let outcomes = serde_json::json!([r % 2 == 0, "favourable"]);
            assert_eq!(monitor.join_outcome(&id, &outcomes, None), 2);
        }
        // One row of a record: row 1 only.
        assert_eq!(
            monitor.join_outcome("r51", &serde_json::json!(false), Some(1)),
            1
        );
        monitor.compute(1);
        let report = monitor.latest.load_full().unwrap();
        assert_eq!(report.rows_with_outcome, 100);
        let c = &report.fairness[0].comparisons[0];
        // Red: TPR 25/25 = 1. Blue: deserving 49 (r51's row 1 now false), of which the
        // favourable-decision rows are r50, r52, …, r98: 25. TPR 25/49.
        let eod = c.equal_opportunity_difference.unwrap().value;
        assert!((eod - (25.0 / 49.0 - 1.0)).abs() < 1e-12, "{eod}");
        assert_eq!(c.equal_opportunity_verdict, Verdict::Fail);
        assert_eq!(worst(c), Verdict::Fail);
        // The attribution check: |a| = 0.3, |colour| = 0.1; colour's share 0.25.
        let a = report.attribution.as_ref().unwrap();
        assert!((a.summary.protected_share.unwrap() - 0.25).abs() < 1e-12);
        assert!((a.summary.mean_abs("a").unwrap() - 0.3).abs() < 1e-12);
    }

    #[test]
    fn rows_older_than_max_age_leave_the_window() {
        let monitor = RouteMonitor::new(
            "m",
            MonitorConfig {
                max_age: Some(std::time::Duration::from_secs(5)),
                ..config()
            },
        );
        let names = vec!["a".to_owned(), "colour".to_owned()];
        monitor.push(
            &names,
            (0..30).map(|i| observation(&format!("old{i}"), 0, "red", true, 1_000)),
        );
        monitor.push(
            &names,
            (0..20).map(|i| observation(&format!("new{i}"), 0, "blue", true, 4_000)),
        );
        monitor.compute(5_000);
        assert_eq!(monitor.latest.load_full().unwrap().window_rows, 50);
        // At 7 s the first 30 are older than 5 s; nothing new arrived, yet the window
        // shrinks, and their outcomes no longer join.
        monitor.compute(7_000);
        assert_eq!(monitor.latest.load_full().unwrap().window_rows, 20);
        assert_eq!(
            monitor.join_outcome("old3", &serde_json::json!(true), None),
            0
        );
        assert_eq!(
            monitor.join_outcome("new3", &serde_json::json!(true), None),
            1
        );
        monitor.compute(9_500);
        assert_eq!(monitor.latest.load_full().unwrap().window_rows, 0);
    }

    #[test]
    fn a_fairness_alert_fires_once_resolves_once_and_waits_on_insufficient_data() {
        let monitor = RouteMonitor::new(
            "m",
            MonitorConfig {
                max_age: Some(std::time::Duration::from_secs(60)),
                ..config()
            },
        );
        let mut registry = Registry::default();
        let alerter =
            crate::alert::Alerter::new(&crate::config::AlertsConfig::default(), &mut registry)
                .unwrap();
        monitor.attach_alerts(alerter, None);
        let firing_di = |m: &RouteMonitor| {
            m.alerts_json()["firing"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a["check"] == "disparate_impact" && a["subject"] == "colour=blue")
                .count()
        };
        let transitions = |m: &RouteMonitor| {
            m.alerts_json()["recent"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a["check"] == "disparate_impact")
                .map(|a| a["state"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        };
        push(&monitor, 40, 10, 0.0);
        monitor.compute(1);
        assert_eq!(firing_di(&monitor), 1);
        assert!(monitor.firing_alerts() >= 1);
        push(&monitor, 40, 10, 0.0);
        monitor.compute(2);
        assert_eq!(transitions(&monitor), ["firing"]);
        push(&monitor, 25, 25, 0.0);
        monitor.compute(3);
        assert_eq!(firing_di(&monitor), 0);
        assert_eq!(transitions(&monitor), ["resolved", "firing"]);
        // Unfair again, then every row ages out: no verdict, so it stays firing.
        push(&monitor, 40, 10, 0.0);
        monitor.compute(4);
        monitor.compute(120_000);
        assert_eq!(monitor.latest.load_full().unwrap().window_rows, 0);
        assert_eq!(firing_di(&monitor), 1);
        assert_eq!(transitions(&monitor), ["firing", "resolved", "firing"]);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(
                "sidelight_alerts_total{route=\"m\",check=\"disparate_impact\",state=\"firing\"} 2"
            ),
            "{text}"
        );
    }

    /// An attribute the model never sees: sex from a header, age band reported later.
    #[test]
    fn attributes_from_headers_and_reported_later_make_groups_and_reveal_proxies() {
        let attribute = |name: &str, header: Option<&str>, reported: bool| ProtectedConfig {
            feature: name.to_owned(),
            privileged: "a".to_owned(),
            unprivileged: vec!["b".to_owned()],
            bands: Vec::new(),
            header: header.map(str::to_owned),
            reported,
        };
        let config = MonitorConfig {
            window_rows: 100,
            min_group_size: 10,
            protected: vec![
                attribute("sex", Some("x-sidelight-attribute-sex"), false),
                attribute("age_band", None, true),
            ],
            ..MonitorConfig::default()
        };
        let monitor = RouteMonitor::new("m", config);
        assert_eq!(monitor.header_attributes()[0].0, 0);
        assert_eq!(monitor.protected_count(), 2);
        // `zip` mirrors sex exactly (a proxy); the model favours group `a`.
        let names = vec!["zip".to_owned(), "income".to_owned()];
        let rows = (0..60).map(|i| {
            let sex = if i % 2 == 0 { "a" } else { "b" };
            let favourable = sex == "a" || i % 10 == 1;
            Observation {
                row: Arc::from(vec![
                    Value::Text(if sex == "a" { "1000" } else { "2000" }.to_owned()),
                    Value::Number(f64::from(i)),
                ]),
                favourable,
                record: Some(Arc::from(format!("r{}", i / 2))),
                index: u32::try_from(i % 2).unwrap(),
                attributions: Arc::from(vec![0.5, 0.5]),
                attributes: Some(vec![Some(sex.to_owned()), None].into_boxed_slice()),
                ..Observation::default()
            }
        });
        monitor.push(&names, rows);
        // Reported for the first 20 records (40 rows), one value per record.
        let mut joined = 0;
        for r in 0..20 {
            let band = if r % 2 == 0 { "a" } else { "b" };
            let attributes = serde_json::json!({ "age_band": band, "unknown": "x" });
            joined += monitor.join_attributes(&format!("r{r}"), attributes.as_object().unwrap());
        }
        assert_eq!(joined, 40);
        assert_eq!(monitor.join_attributes("nope", &serde_json::Map::new()), 0);
        monitor.compute(1);
        let report = monitor.latest.load_full().unwrap();
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        let sex = &report.fairness[0];
        assert_eq!(sex.attribute, "sex");
        let count = |f: &FairnessReport, g: &str| {
            f.groups
                .iter()
                .find(|s| s.group == g)
                .map(|s| s.selection.trials)
        };
        assert_eq!(count(sex, "a"), Some(30));
        assert_eq!(count(sex, "b"), Some(30));
        assert_eq!(sex.comparisons[0].disparate_impact_verdict, Verdict::Fail);
        // Only the rows whose band was reported are in a group.
        let age = &report.fairness[1];
        assert_eq!(count(age, "a").unwrap() + count(age, "b").unwrap(), 40);
        // Not a feature: no share of the attributions, but `zip` is its proxy.
        let check = report.attribution.as_ref().unwrap();
        assert_eq!(check.summary.protected_share, Some(0.0));
        let proxy = check.proxies.iter().find(|p| p.protected == "sex").unwrap();
        assert_eq!(proxy.feature, "zip");
        assert!((proxy.association.value - 1.0).abs() < 1e-9);
    }

    /// Rows that arrive while a computation holds the window wait in the inbox and are
    /// monitored, not dropped; only when the inbox is busy too are they skipped.
    #[test]
    fn rows_pushed_during_a_computation_wait_in_the_inbox() {
        let monitor = RouteMonitor::new("m", config());
        let guard = monitor.windows.lock().unwrap();
        push(&monitor, 40, 10, 0.0);
        assert_eq!(monitor.inbox.lock().unwrap().rows.len(), 100);
        {
            let _busy = monitor.inbox.lock().unwrap();
            push(&monitor, 40, 10, 0.0);
        }
        drop(guard);
        monitor.compute(1);
        let report = monitor.latest.load_full().unwrap();
        assert_eq!(report.rows_seen, 100);
        assert_eq!(report.rows_skipped, 100);
        assert_eq!(report.window_rows, 100);
        assert!(monitor.inbox.lock().unwrap().rows.is_empty());
    }

    #[test]
    fn numeric_features_are_grouped_by_bands() {
        let p = ProtectedConfig {
            feature: "age".to_owned(),
            privileged: ">=25".to_owned(),
            unprivileged: vec!["<25".to_owned()],
            bands: vec![25.0, 40.0],
            header: None,
            reported: false,
        };
        assert_eq!(group_label(&p, &Value::Number(24.9)), "<25");
        assert_eq!(group_label(&p, &Value::Number(25.0)), "25-40");
        assert_eq!(group_label(&p, &Value::Number(40.0)), ">=40");
        assert_eq!(group_label(&p, &Value::Text("x".to_owned())), "x");
        assert_eq!(group_label(&p, &Value::Number(f64::NAN)), "");
    }
}
