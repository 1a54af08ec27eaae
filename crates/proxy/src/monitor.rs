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

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};

use arc_swap::ArcSwapOption;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;
use sidelight_explain::Value;
use sidelight_monitor::{
    CategoricalReference, Decision, DriftConfig, FairnessConfig, FairnessReport, FeatureDrift,
    NumericDrift, NumericReference, ProtectedAttribute, Verdict,
};

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
        Arc::new(gauges)
    }
}

/// What the monitor computed last, served by `GET /api/v1/monitoring`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct MonitorReport {
    /// When it was computed, in milliseconds since the Unix epoch.
    pub(crate) computed_at: i64,
    /// Rows in the current window.
    pub(crate) window_rows: usize,
    /// Rows monitored since the proxy started.
    pub(crate) rows_seen: u64,
    /// Rows not monitored because they arrived while the window was being copied for
    /// the computation (the request path never waits for the monitor).
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
}

/// One route's monitor.
pub(crate) struct RouteMonitor {
    pub(crate) route: String,
    config: MonitorConfig,
    windows: Mutex<Windows>,
    pub(crate) latest: ArcSwapOption<MonitorReport>,
    gauges: OnceLock<Arc<MonitorGauges>>,
    reviews: OnceLock<Arc<Reviews>>,
    /// Groups this monitor flagged, so that it removes only its own flags.
    own_flags: Mutex<HashSet<(String, String)>>,
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
            latest: ArcSwapOption::empty(),
            gauges: OnceLock::new(),
            reviews: OnceLock::new(),
            own_flags: Mutex::default(),
            skipped: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            stop_lock: Mutex::new(()),
            wake: Condvar::new(),
        })
    }

    /// Gives the monitor its gauges and, with an audit log, the review flags.
    pub(crate) fn attach(&self, gauges: Arc<MonitorGauges>, reviews: Option<Arc<Reviews>>) {
        let _ = self.gauges.set(gauges);
        if let Some(reviews) = reviews {
            let _ = self.reviews.set(reviews);
        }
    }

    /// Adds explained rows (in the order of `names`); the request path's only cost.
    pub(crate) fn push(&self, names: &[String], rows: impl Iterator<Item = Observation>) {
        // Never wait behind the computation's copy: drop the rows instead.
        let Ok(mut w) = self.windows.try_lock() else {
            self.skipped
                .fetch_add(rows.count() as u64, Ordering::Relaxed);
            return;
        };
        if w.names.is_empty() {
            w.names = names.to_vec();
        } else if w.names != names {
            return;
        }
        let cap = self.config.window_rows;
        for obs in rows {
            if !w.reference_from_training && w.reference.len() < cap {
                w.reference.push(obs.clone());
            }
            if w.current.len() == cap {
                w.current.pop_front();
            }
            w.current.push_back(obs);
            w.fresh += 1;
            w.seen += 1;
        }
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
                favourable: false,
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
        // Copy out what the statistics need, then let the request path go on.
        let (names, current, reference, groups_current, from_training, seen) = {
            let Ok(mut w) = self.windows.lock() else {
                return;
            };
            if w.fresh == 0 && self.latest.load().is_some() {
                return;
            }
            w.fresh = 0;
            let names = w.names.clone();
            let current: Vec<(Arc<[Value]>, f64, bool)> = w
                .current
                .iter()
                .map(|o| (o.row.clone(), o.prediction, o.favourable))
                .collect();
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
        for p in &self.config.protected {
            let Some(index) = names.iter().position(|n| *n == p.feature) else {
                if !names.is_empty() {
                    errors.push(format!(
                        "protected feature `{}` is not in the rows",
                        p.feature
                    ));
                }
                continue;
            };
            let labels: Vec<String> = current
                .iter()
                .map(|(row, _, _)| {
                    row.get(index)
                        .map(|v| group_label(p, v))
                        .unwrap_or_default()
                })
                .collect();
            let attribute = ProtectedAttribute {
                name: p.feature.clone(),
                privileged: p.privileged.clone(),
                unprivileged: p.unprivileged.clone(),
            };
            let decisions = labels
                .iter()
                .zip(&current)
                .map(|(label, (_, _, favourable))| Decision {
                    group: label,
                    favourable: *favourable,
                    outcome: None,
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
                let column = |rows: &mut dyn Iterator<Item = &Arc<[Value]>>| -> Vec<Value> {
                    rows.map(|r| r.get(i).cloned().unwrap_or(Value::Missing))
                        .collect()
                };
                let ref_col = column(&mut reference.iter().map(|(r, _)| r));
                let cur_col = column(&mut current.iter().map(|(r, _, _)| r));
                let numeric = ref_col
                    .iter()
                    .chain(&cur_col)
                    .all(|v| matches!(v, Value::Number(_) | Value::Missing));
                let result = if numeric {
                    let num = |c: &[Value]| -> Vec<f64> {
                        c.iter()
                            .map(|v| match v {
                                Value::Number(x) => *x,
                                _ => f64::NAN,
                            })
                            .collect()
                    };
                    NumericReference::new(&num(&ref_col), &config)
                        .map(|r| sidelight_monitor::Drift::Numeric(r.compare(&num(&cur_col))))
                } else {
                    let cat = |c: &[Value]| -> Vec<Option<String>> {
                        c.iter()
                            .map(|v| match v {
                                Value::Missing => None,
                                other => Some(value_text(other)),
                            })
                            .collect()
                    };
                    CategoricalReference::new(&cat(&ref_col), &config)
                        .map(|r| sidelight_monitor::Drift::Categorical(r.compare(&cat(&cur_col))))
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
            let cur_pred: Vec<f64> = current.iter().map(|(_, p, _)| *p).collect();
            match sidelight_monitor::prediction_drift(&ref_pred, &cur_pred, &config) {
                Ok(d) => prediction_drift = Some(d),
                Err(e) => errors.push(e.to_string()),
            }
        }
        let flagged = self.update_flags(&fairness);
        self.set_gauges(&fairness, &drift, prediction_drift.as_ref());
        self.latest.store(Some(Arc::new(MonitorReport {
            computed_at: now,
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
            flagged,
            errors,
        })));
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
    }
}

/// The most severe of a comparison's verdicts that the window can support (equal
/// opportunity needs outcomes, which the monitor does not join yet).
pub(crate) fn worst(c: &sidelight_monitor::GroupComparison) -> Verdict {
    let v = [c.disparate_impact_verdict, c.statistical_parity_verdict];
    v.into_iter().fold(Verdict::Pass, Verdict::worst)
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

fn group_label(p: &ProtectedConfig, value: &Value) -> String {
    match value {
        Value::Number(x) if !p.bands.is_empty() => p.band(*x).unwrap_or_default(),
        other => value_text(other),
    }
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
        .spawn(move || monitor.run())
        .map_err(|e| tracing::error!(error = %e, "cannot start a monitor"))
        .ok()
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
    fn numeric_features_are_grouped_by_bands() {
        let p = ProtectedConfig {
            feature: "age".to_owned(),
            privileged: ">=25".to_owned(),
            unprivileged: vec!["<25".to_owned()],
            bands: vec![25.0, 40.0],
        };
        assert_eq!(group_label(&p, &Value::Number(24.9)), "<25");
        assert_eq!(group_label(&p, &Value::Number(25.0)), "25-40");
        assert_eq!(group_label(&p, &Value::Number(40.0)), ">=40");
        assert_eq!(group_label(&p, &Value::Text("x".to_owned())), "x");
        assert_eq!(group_label(&p, &Value::Number(f64::NAN)), "");
    }
}
