//! The monitoring job (`[routes.monitor]`): every `every`, it copies the route's window
//! out of the [`RouteMonitor`], computes the fairness report of each protected
//! attribute and the drift of every feature and of the predictions against the
//! reference, publishes the results for `GET /api/v1/monitoring`, sets the
//! `sidelight_fairness_*` and `sidelight_drift_*` gauges, flags the protected groups
//! whose fairness verdict is `fail` for review (and unflags them, only those it flagged
//! itself, when they pass again), and feeds the route's alerts (see `alert`).

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use sidelight_audit::FleetStore;
use sidelight_core::clock::now_ms;
use sidelight_core::monitor::{
    FeatureSummary, FleetView, GroupSummary, MonitorReport, RouteMonitor, SharedReference, Summary,
    worst,
};
use sidelight_core::reviews::{Flag, Reviews};
use sidelight_monitor::{
    AttributionCheck, AttributionSums, Drift, DriftConfig, FairnessConfig, FairnessReport,
    FeatureDrift, FidelityPoint, FidelitySummary, Histogram, NumericDrift, ProtectedAttribute,
    ProxyCandidate, Verdict,
};

use crate::alert::{AlertBook, Alerter, Check, Reading};

/// Reads the route's surrogate fidelity series.
pub type FidelitySource = Box<dyn Fn() -> Vec<FidelityPoint> + Send + Sync>;

/// One route's monitoring job: the computation over its [`RouteMonitor`], and what only
/// the computation needs (gauges, review flags, alerts).
pub struct MonitorJob {
    monitor: Arc<RouteMonitor>,
    gauges: Option<Arc<MonitorGauges>>,
    reviews: Option<Arc<Reviews>>,
    /// Groups this job flagged, so that it removes only its own flags.
    own_flags: Mutex<HashSet<Flag>>,
    alerter: OnceLock<Arc<Alerter>>,
    fidelity: OnceLock<FidelitySource>,
    alerts: Mutex<AlertBook>,
    /// The fleet's store (its own connection), with a PostgreSQL audit log.
    fleet: OnceLock<FleetStore>,
    /// The last proxy sweep: when it started, how long it took, what it found.
    proxies: Mutex<Option<(std::time::Instant, std::time::Duration, Vec<ProxyCandidate>)>>,
    /// The drift reference this replica made and offered to the fleet last.
    offered: Mutex<Option<String>>,
}

/// A replica's share of a route's monitoring, as published to the fleet: counts and
/// sums only, never a row.
#[derive(Debug, Serialize, Deserialize)]
struct Share {
    names: Vec<String>,
    /// Per protected attribute, its definition (as JSON) and groups (privileged
    /// first): only shares of the same attributes and groups merge.
    groups: Vec<(String, Vec<String>)>,
    fairness: Vec<Option<GroupSummary>>,
    attributions: AttributionSums,
    window_rows: usize,
    seen: u64,
    rows_with_outcome: u64,
    /// The window's drift counts against the fleet's reference (absent from shares of
    /// earlier releases, and while the replica counts against a reference of its own).
    #[serde(default)]
    drift: Option<DriftShare>,
}

/// A replica's drift counts, against the reference named `reference`.
#[derive(Debug, Serialize, Deserialize)]
struct DriftShare {
    reference: String,
    features: Vec<Option<CurrentCounts>>,
    prediction: Option<Histogram>,
}

/// One feature's current counts in a [`DriftShare`].
#[derive(Debug, Serialize, Deserialize)]
enum CurrentCounts {
    Numeric(Histogram),
    Levels {
        current: Vec<(String, u64)>,
        missing: u64,
    },
}

impl DriftShare {
    fn of(summary: &Summary) -> Option<Self> {
        let features = summary.drift.as_ref()?;
        Some(Self {
            reference: summary.reference_id.clone()?,
            features: features
                .iter()
                .map(|f| match f {
                    FeatureSummary::Numeric { current, .. } => {
                        Some(CurrentCounts::Numeric(current.clone()))
                    }
                    FeatureSummary::Levels {
                        current, missing, ..
                    } => Some(CurrentCounts::Levels {
                        current: current.clone(),
                        missing: *missing,
                    }),
                    FeatureSummary::Mismatch => None,
                })
                .collect(),
            prediction: summary.prediction.as_ref().map(|(_, _, h)| h.clone()),
        })
    }

    /// Adds these counts to `summary`'s when both count against the same reference;
    /// returns whether they did. A feature one replica holds as numbers and another
    /// as text (a stray value) keeps this replica's counts.
    fn merge_into(self, summary: &mut Summary) -> bool {
        if summary.reference_id.as_deref() != Some(self.reference.as_str()) {
            return false;
        }
        let Some(features) = summary.drift.as_mut() else {
            return false;
        };
        if features.len() != self.features.len() {
            return false;
        }
        for (mine, theirs) in features.iter_mut().zip(self.features) {
            match (mine, theirs) {
                (FeatureSummary::Numeric { current, .. }, Some(CurrentCounts::Numeric(h))) => {
                    current.merge(&h);
                }
                (
                    FeatureSummary::Levels {
                        current, missing, ..
                    },
                    Some(CurrentCounts::Levels {
                        current: theirs,
                        missing: their_missing,
                    }),
                ) => {
                    // A level listed by both replicas is added up by `compare_counts`.
                    current.extend(theirs);
                    *missing += their_missing;
                }
                _ => {}
            }
        }
        if let (Some((_, _, mine)), Some(theirs)) = (summary.prediction.as_mut(), self.prediction) {
            mine.merge(&theirs);
        }
        true
    }
}

impl Share {
    /// Whether this share merges with a replica's of `groups` and `names`: the same
    /// protected attributes and rows, or no row yet (an idle replica has nothing to
    /// merge, and is not another config).
    fn fits(&self, groups: &[(String, Vec<String>)], names: &[String]) -> bool {
        self.names.is_empty()
            || (self.groups == groups
                && (self.names == names || names.is_empty())
                && self.fairness.len() == self.groups.len())
    }

    /// Adds this share to a replica's own summary: counts and sums add exactly; its
    /// drift counts only when `with_drift` (the replica shares its own, against the
    /// fleet's reference). Returns whether its drift counts merged.
    fn merge_into(self, summary: &mut Summary, with_drift: bool) -> bool {
        let drift = with_drift && self.drift.is_some_and(|d| d.merge_into(summary));
        if summary.names.is_empty() {
            summary.names = self.names;
            summary.fairness = self.fairness;
            summary.attributions = self.attributions;
        } else if !self.names.is_empty() {
            for (mine, theirs) in summary.fairness.iter_mut().zip(self.fairness) {
                if let (Some(m), Some(t)) = (mine, theirs) {
                    for (a, b) in m.counts.iter_mut().zip(&t.counts) {
                        a.merge(b);
                    }
                    m.total += t.total;
                    m.unlisted += t.unlisted;
                }
            }
            summary.attributions.merge(&self.attributions);
        }
        summary.window_rows += self.window_rows;
        summary.seen += self.seen;
        summary.rows_with_outcome += self.rows_with_outcome;
        drift
    }
}

impl MonitorJob {
    /// A job for `monitor` with its gauges and, with an audit log, the review flags and
    /// the reported outcomes (`reviews` passes them on to the monitor).
    pub fn new(
        monitor: Arc<RouteMonitor>,
        gauges: Option<Arc<MonitorGauges>>,
        reviews: Option<Arc<Reviews>>,
    ) -> Self {
        if let Some(reviews) = &reviews {
            reviews.watch_outcomes(&monitor);
        }
        Self {
            monitor,
            gauges,
            reviews,
            own_flags: Mutex::default(),
            alerter: OnceLock::new(),
            fidelity: OnceLock::new(),
            alerts: Mutex::default(),
            fleet: OnceLock::new(),
            proxies: Mutex::default(),
            offered: Mutex::default(),
        }
    }

    /// Makes the job a fleet's: its figures merge every replica's, and one replica per
    /// route sends the route's alerts. `store` should be a connection of its own.
    pub fn attach_fleet(&self, store: FleetStore) {
        let _ = self.fleet.set(store);
    }

    /// Gives the job where its alerts go and where the route's fidelity series is.
    pub fn attach_alerts(&self, alerter: Arc<Alerter>, fidelity: Option<FidelitySource>) {
        let _ = self.alerter.set(alerter);
        if let Some(f) = fidelity {
            let _ = self.fidelity.set(f);
        }
    }

    /// Computes the statistics from the window's summaries and publishes them.
    pub fn compute(&self, now: i64) {
        let started = std::time::Instant::now();
        let fleet = self.fleet.get();
        let Some(mut summary) = self.monitor.summary(now, fleet.is_some()) else {
            return;
        };
        let mut errors = Vec::new();
        let fleet_view = fleet.map(|store| self.merge_fleet(store, &mut summary, now, &mut errors));
        let Summary {
            names,
            window_rows,
            seen,
            fairness: groups,
            drift: features,
            prediction,
            reference_rows,
            from_training,
            attributions: sums,
            rows_with_outcome,
            ..
        } = summary;
        let fairness_config = FairnessConfig {
            confidence: self.monitor.config.confidence,
            min_group_size: self.monitor.config.min_group_size,
            ..FairnessConfig::default()
        };
        let mut fairness = Vec::new();
        for (k, p) in self.monitor.config.protected.iter().enumerate() {
            let attribute = ProtectedAttribute {
                name: p.feature.clone(),
                privileged: p.privileged.clone(),
                unprivileged: p.unprivileged.clone(),
            };
            let report = match groups.get(k) {
                Some(Some(g)) => sidelight_monitor::fairness_from_counts(
                    &attribute,
                    &g.counts,
                    g.total,
                    g.unlisted,
                    &fairness_config,
                ),
                Some(None) => {
                    errors.push(format!(
                        "protected feature `{}` is not in the rows",
                        p.feature
                    ));
                    continue;
                }
                // No row yet: an attribute outside the rows reports empty groups.
                None if p.is_feature() => continue,
                None => sidelight_monitor::fairness(&attribute, [], &fairness_config),
            };
            match report {
                Ok(report) => fairness.push(report),
                Err(e) => errors.push(e.to_string()),
            }
        }
        let config = DriftConfig::default();
        let mut drift = Vec::new();
        for (name, feature) in names.iter().zip(features.iter().flatten()) {
            let d = match feature {
                FeatureSummary::Numeric {
                    grid,
                    reference,
                    current,
                } => Drift::Numeric(grid.drift(reference, current, &config)),
                FeatureSummary::Levels {
                    reference,
                    current,
                    missing,
                } => Drift::Categorical(
                    reference
                        .compare_counts(current.iter().map(|(l, n)| (l.as_str(), *n)), *missing),
                ),
                FeatureSummary::Mismatch => {
                    errors.push(format!(
                        "feature `{name}` holds numbers in one of the reference and the window and text in the other: its drift waits for a new reference"
                    ));
                    continue;
                }
            };
            drift.push(FeatureDrift {
                feature: name.clone(),
                drift: d,
            });
        }
        let prediction_drift =
            prediction.map(|(grid, reference, current)| grid.drift(&reference, &current, &config));
        let attribution = self.attribution_check(&names, &sums, &mut errors);
        let fidelity = self
            .fidelity
            .get()
            .map(|series| series())
            .filter(|s| !s.is_empty())
            .map(|s| sidelight_monitor::summarise_fidelity(&s));
        // A ranking's rows are items shown, not decisions: no selection rates (nor their
        // alerts and review flags) over them; exposure instead.
        if self.monitor.is_ranking() {
            fairness.clear();
        }
        let exposure = self
            .monitor
            .item_feature()
            .map(|item| self.monitor.exposure(now, item))
            .unwrap_or_default();
        let flagged = self.update_flags(&fairness);
        self.set_gauges(
            &fairness,
            &drift,
            prediction_drift.as_ref(),
            attribution.as_ref(),
        );
        let readings = self.readings(
            &fairness,
            &exposure,
            &fairness_config,
            &drift,
            prediction_drift.as_ref(),
            attribution.as_ref(),
            fidelity.as_ref(),
        );
        self.raise(
            readings,
            now,
            fleet_view.as_ref().is_none_or(|f| f.sends_alerts),
            fleet_view.as_ref().is_none_or(|f| !f.shared_reference),
        );
        self.monitor.publish(MonitorReport {
            computed_at: now,
            compute_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            proxy_sweep_ms: self
                .proxies
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
                .map(|(_, took, _)| u64::try_from(took.as_millis()).unwrap_or(u64::MAX)),
            window_rows,
            rows_seen: seen,
            rows_skipped: self.monitor.skipped(),
            reference_rows,
            reference: if from_training {
                "training_window"
            } else {
                "first_rows"
            },
            fairness,
            drift,
            prediction_drift,
            rows_with_outcome: usize::try_from(rows_with_outcome).unwrap_or(usize::MAX),
            attribution,
            fidelity,
            flagged,
            errors,
            fleet: fleet_view,
            exposure,
        });
    }

    /// Publishes this replica's share of the route's figures to the fleet and merges
    /// the other replicas' shares (published within three computations' time) into
    /// `summary`; takes the route's alert lock if it is free.
    fn merge_fleet(
        &self,
        store: &FleetStore,
        summary: &mut Summary,
        now: i64,
        errors: &mut Vec<String>,
    ) -> FleetView {
        let route = &self.monitor.route;
        // Each attribute's whole config (groups, bands, where its values come from):
        // counts only merge when they mean the same thing.
        let groups: Vec<(String, Vec<String>)> = self
            .monitor
            .config
            .protected
            .iter()
            .map(|p| {
                let labels = std::iter::once(p.privileged.clone())
                    .chain(p.unprivileged.iter().cloned())
                    .collect();
                let definition = serde_json::to_string(p).unwrap_or_default();
                (definition, labels)
            })
            .collect();
        let shared_reference = self.share_reference(store, summary, now, errors);
        let mine = Share {
            names: summary.names.clone(),
            groups: groups.clone(),
            fairness: summary.fairness.clone(),
            attributions: summary.attributions.clone(),
            window_rows: summary.window_rows,
            seen: summary.seen,
            rows_with_outcome: summary.rows_with_outcome,
            drift: shared_reference.then(|| DriftShare::of(summary)).flatten(),
        };
        match serde_json::to_string(&mine) {
            Ok(text) => {
                if let Err(e) = store.publish_monitor(route, now, &text) {
                    errors.push(format!(
                        "this replica's monitoring summary could not be published to the fleet: {e}"
                    ));
                }
            }
            Err(e) => errors.push(format!("monitoring summary: {e}")),
        }
        let every = i64::try_from(self.monitor.config.every.as_millis()).unwrap_or(i64::MAX);
        let since = now.saturating_sub(every.saturating_mul(3).max(10_000));
        let (mut replicas, mut left_out) = (1, 0);
        let mut drift_replicas = usize::from(mine.drift.is_some());
        match store.monitor_summaries(route, since) {
            Ok(others) => {
                for (_, text) in others {
                    match serde_json::from_str::<Share>(&text) {
                        Ok(other) if other.fits(&groups, &summary.names) => {
                            if other.merge_into(summary, mine.drift.is_some()) {
                                drift_replicas += 1;
                            }
                            replicas += 1;
                        }
                        _ => left_out += 1,
                    }
                }
            }
            Err(e) => errors.push(format!(
                "the other replicas' monitoring summaries could not be read: {e}"
            )),
        }
        let sends_alerts = match store.try_lead_alerts(route) {
            Ok(lead) => lead,
            Err(e) => {
                // Better an alert twice than none while the database is away.
                errors.push(format!(
                    "the route's alert lock could not be checked ({e}): this replica sends its alerts itself"
                ));
                true
            }
        };
        FleetView {
            replicas,
            left_out,
            sends_alerts,
            drift_replicas,
            shared_reference,
        }
    }

    /// Agrees on one drift reference with the fleet, so that drift counts merge: offers
    /// the reference made here (the fleet keeps a surrogate's newest training window
    /// over first rows, and the first offered among first rows), takes the fleet's
    /// when it is another (the window is counted on its grids from the next
    /// computation), withdraws one made here and since dropped, and drops one taken
    /// from the fleet that the fleet no longer keeps. Returns whether `summary` counts
    /// against the fleet's reference.
    fn share_reference(
        &self,
        store: &FleetStore,
        summary: &Summary,
        now: i64,
        errors: &mut Vec<String>,
    ) -> bool {
        let route = &self.monitor.route;
        let mut offered = self.offered.lock().unwrap_or_else(PoisonError::into_inner);
        let made_here = summary
            .reference_id
            .as_ref()
            .filter(|_| !summary.reference_adopted);
        let mut fleet = match store.reference_id(route) {
            Ok(id) => id,
            Err(e) => {
                errors.push(format!(
                    "the fleet's drift reference could not be read: {e}"
                ));
                return false;
            }
        };
        // The one made here, when the fleet has none or it is new: a newer one replaces
        // one offered before in the same statement, so that no replica sees none.
        self.offer_own(store, made_here, &mut fleet, &mut offered, now, errors);
        if let Some(old) = offered.clone().filter(|o| Some(o) != made_here) {
            if fleet.as_ref() == Some(&old) {
                // Dropped here (an erased subject's rows were in it) and still the
                // fleet's: withdrawn, and the one made here since offered in its place.
                match store.retire_reference(route, &old) {
                    Ok(()) => {
                        (fleet, *offered) = (None, None);
                        self.offer_own(store, made_here, &mut fleet, &mut offered, now, errors);
                    }
                    Err(e) => errors.push(format!(
                        "a drift reference this replica dropped could not be withdrawn from the fleet: {e}"
                    )),
                }
            } else {
                *offered = None;
            }
        }
        match fleet {
            Some(id) if summary.reference_id.as_ref() == Some(&id) => true,
            Some(_) if summary.names.is_empty() => false,
            Some(_) => {
                match store.reference(route) {
                    Ok(Some((_, body))) => {
                        let adopted = serde_json::from_slice::<SharedReference>(&body)
                            .map_err(|e| e.to_string())
                            .and_then(|r| self.monitor.adopt_reference(r));
                        if let Err(e) = adopted {
                            errors.push(format!(
                                "the fleet's drift reference could not be taken: {e}; drift stays this replica's own"
                            ));
                        }
                    }
                    Ok(None) => {}
                    Err(e) => errors.push(format!(
                        "the fleet's drift reference could not be read: {e}"
                    )),
                }
                false
            }
            None => {
                if summary.reference_adopted {
                    self.monitor.drop_adopted_reference();
                }
                false
            }
        }
    }

    /// Offers the reference made here (`mine`) to the fleet when the fleet has none, or
    /// when this replica has not offered it yet; `fleet` and `offered` follow.
    fn offer_own(
        &self,
        store: &FleetStore,
        mine: Option<&String>,
        fleet: &mut Option<String>,
        offered: &mut Option<String>,
        now: i64,
        errors: &mut Vec<String>,
    ) {
        let Some(mine) = mine else {
            return;
        };
        let due =
            fleet.is_none() || (fleet.as_ref() != Some(mine) && offered.as_ref() != Some(mine));
        if !due {
            return;
        }
        let Some(shared) = self.monitor.shared_reference().filter(|r| r.id == *mine) else {
            return;
        };
        let kept = serde_json::to_vec(&shared)
            .map_err(|e| e.to_string())
            .and_then(|body| {
                store
                    .offer_reference(&self.monitor.route, &shared.id, shared.rank, now, &body)
                    .map_err(|e| e.to_string())
            });
        match kept {
            Ok(id) => {
                *offered = Some(shared.id);
                *fleet = Some(id);
            }
            Err(e) => errors.push(format!(
                "this replica's drift reference could not be offered to the fleet: {e}"
            )),
        }
    }

    /// Mean |attribution| per feature and the protected share over the rows that have
    /// attributions (from the window's sums), and for each protected attribute the
    /// three features most associated with it in the window.
    fn attribution_check(
        &self,
        names: &[String],
        sums: &AttributionSums,
        errors: &mut Vec<String>,
    ) -> Option<AttributionCheck> {
        if sums.rows == 0 || names.is_empty() {
            return None;
        }
        let protected: Vec<&str> = self
            .monitor
            .config
            .protected
            .iter()
            .filter(|p| p.is_feature())
            .map(|p| p.feature.as_str())
            .filter(|p| names.iter().any(|n| n == p))
            .collect();
        let summary = match sums.summary(names, &protected) {
            Ok(s) => s,
            Err(e) => {
                errors.push(e.to_string());
                return None;
            }
        };
        Some(AttributionCheck::new(summary, self.proxies()))
    }

    /// The possible proxies: a sweep of the window's columns, so at most once per
    /// a hundred times what the last sweep took (a window of a million rows: every half
    /// minute or so), which keeps it under a hundredth of a core and the caches the
    /// requests share mostly undisturbed; in between, the last
    /// sweep's.
    fn proxies(&self) -> Vec<ProxyCandidate> {
        let mut last = self.proxies.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, took, found)) = last.as_ref() {
            if at.elapsed() < took.saturating_mul(100) {
                return found.clone();
            }
        }
        let started = std::time::Instant::now();
        let found = self.monitor.proxies(3);
        *last = Some((started, started.elapsed(), found.clone()));
        found
    }

    /// Each alert check's reading in this computation.
    #[allow(clippy::too_many_arguments)]
    fn readings(
        &self,
        fairness: &[FairnessReport],
        exposure: &[sidelight_core::monitor::ExposureReport],
        config: &FairnessConfig,
        drift: &[FeatureDrift],
        prediction: Option<&NumericDrift>,
        attribution: Option<&AttributionCheck>,
        fidelity: Option<&FidelitySummary>,
    ) -> Vec<Reading> {
        let bounds = &self.monitor.config.alerts;
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
        if bounds.fairness {
            for x in exposure {
                for c in &x.check.comparisons {
                    out.push(Reading {
                        check: Check::Exposure,
                        subject: format!("{}={}:{}", x.attribute, c.unprivileged, c.item_group),
                        breaking: verdict(c.verdict),
                        value: c.difference.map(|e| e.value),
                        bound: Some(config.max_difference),
                    });
                }
            }
        }
        // Too few rows on either side: no verdict (neither fires nor resolves).
        let enough = |(reference, current): (u64, u64)| {
            reference >= bounds.min_rows && current >= bounds.min_rows
        };
        if bounds.drift {
            for d in drift {
                let psi = d.drift.psi();
                out.push(Reading {
                    check: Check::FeaturePsi,
                    subject: d.feature.clone(),
                    breaking: psi
                        .filter(|_| enough(d.drift.counts()))
                        .map(|p| p > bounds.feature_psi_above),
                    value: psi,
                    bound: Some(bounds.feature_psi_above),
                });
            }
            if let Some(p) = prediction {
                out.push(Reading {
                    check: Check::PredictionPsi,
                    subject: String::new(),
                    breaking: p
                        .psi
                        .filter(|_| enough((p.reference_count, p.current_count)))
                        .map(|x| x > bounds.prediction_psi_above),
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

    /// Applies the readings to the route's alerts, then logs and delivers the alerts
    /// that changed state. `send`: this replica sends the fleet's alerts (always,
    /// outside a fleet); `own_drift`: its drift is its own (not counted against the
    /// fleet's reference), so it alerts on it itself.
    fn raise(&self, readings: Vec<Reading>, now: i64, send: bool, own_drift: bool) {
        let (transitions, firing) = {
            let mut book = self.alerts.lock().unwrap_or_else(PoisonError::into_inner);
            let t = book.update(&self.monitor.route, readings, now);
            let firing = book.firing_count();
            self.monitor.publish_alerts(book.json(), firing);
            (t, firing)
        };
        if let Some(alerter) = self.alerter.get() {
            // The fleet's figures (fairness, attributions, and drift once counted
            // against the fleet's reference) alert from one replica; fidelity, and drift
            // against a replica's own reference, alert from each replica.
            let transitions = if send {
                transitions
            } else {
                transitions
                    .into_iter()
                    .filter(|a| match a.check {
                        Check::FeaturePsi | Check::PredictionPsi => own_drift,
                        Check::FidelityR2 => true,
                        _ => false,
                    })
                    .collect()
            };
            alerter.publish(&self.monitor.route, transitions, firing);
        }
    }

    /// Flags the groups whose verdict is `fail` on this route's predictions; unflags
    /// those it flagged that no longer fail. Returns the groups it flags now, as
    /// (attribute, group).
    fn update_flags(&self, reports: &[FairnessReport]) -> Vec<(String, String)> {
        let route = &self.monitor.route;
        let failing: HashSet<Flag> = reports
            .iter()
            .flat_map(|r| {
                r.comparisons
                    .iter()
                    .filter(|c| worst(c) == Verdict::Fail)
                    .map(|c| Flag::on_route(route, &r.attribute, &c.unprivileged))
            })
            .collect();
        let mut own = self
            .own_flags
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(reviews) = self.reviews.as_ref() {
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
                // One line per change of this route's flags, with counts (the alert
                // itself is logged on its own), rather than a line per prediction.
                let names = |flags: &[Flag]| {
                    let mut names: Vec<String> = flags
                        .iter()
                        .map(|f| format!("{}={}", f.feature, f.value))
                        .collect();
                    names.sort();
                    names.join(", ")
                };
                if !add.is_empty() {
                    tracing::warn!(
                        route = %route,
                        flagged = add.len(),
                        groups = %names(&add),
                        "fairness checks failed; these groups are flagged for review on this route (their predictions go to review where `[routes.review] flagged_groups` is on)"
                    );
                }
                if !remove.is_empty() {
                    tracing::info!(
                        route = %route,
                        unflagged = remove.len(),
                        groups = %names(&remove),
                        sent_to_review = reviews.take_flag_hits(route),
                        "fairness checks pass again; review flags lifted"
                    );
                }
            }
        }
        let mut flagged: Vec<_> = own
            .iter()
            .map(|f| (f.feature.clone(), f.value.clone()))
            .collect();
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
        let Some(g) = self.gauges.as_ref() else {
            return;
        };
        let route = &self.monitor.route;
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

/// The Prometheus gauges every route's monitor sets.
#[derive(Default)]
pub struct MonitorGauges {
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
    pub fn register(registry: &mut Registry) -> Arc<Self> {
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

/// The `i`th value of a row; missing when the row is shorter.
impl crate::job::Job for MonitorJob {
    fn name(&self) -> String {
        format!("monitor/{}", self.monitor.route)
    }

    fn run(&self) {
        while self.monitor.wait() {
            self.compute(now_ms());
        }
    }

    fn stop(&self) {
        self.monitor.stop();
    }

    fn yields_cpu(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use sidelight_config::{MonitorConfig, ProtectedConfig};
    use sidelight_core::monitor::{Observation, group_label, outcome_for_row, outcome_of};
    use sidelight_explain::Value;

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
        let job = MonitorJob::new(
            monitor.clone(),
            Some(MonitorGauges::register(&mut registry)),
            Some(reviews.clone()),
        );
        // An admin's flag, which the monitor must leave alone.
        let green = Flag {
            route: None,
            feature: "colour".to_owned(),
            value: "green".to_owned(),
        };
        reviews.update_flags(std::slice::from_ref(&green), &[]);

        push(&monitor, 40, 10, 0.0);
        job.compute(1);
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
        // The flag is this route's own: it sends only route m's predictions to review.
        let blue = Flag::on_route("m", "colour", "blue");
        assert!(reviews.flagged_set().contains(&blue));
        assert!(!blue.applies("other", "colour", "blue"));
        // The reference is the first 100 rows: no drift against itself.
        assert!(report.drift.iter().all(|d| d.drift.psi().unwrap() < 1e-6));

        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains(
            "sidelight_fairness_selection_rate{route=\"m\",attribute=\"colour\",group=\"red\"} 0.8"
        ), "{text}");

        // Fair again, and shifted: the flag goes, the admin's stays, `a` drifts.
        push(&monitor, 25, 25, 1000.0);
        job.compute(2);
        let report = monitor.latest.load_full().unwrap();
        let c = &report.fairness[0].comparisons[0];
        assert_eq!(c.disparate_impact_verdict, Verdict::Pass);
        assert_eq!(c.statistical_parity_verdict, Verdict::Pass);
        assert!(report.flagged.is_empty());
        let flags = reviews.flagged_set();
        assert_eq!(flags.len(), 1);
        assert!(flags.contains(&green));
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
            subject: Some(Arc::from(format!("ps_{colour}"))),
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
        let job = MonitorJob::new(monitor.clone(), None, None);
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
        job.compute(1);
        let report = monitor.latest.load_full().unwrap();
        assert_eq!(report.rows_with_outcome, 100);
        let c = &report.fairness[0].comparisons[0];
        // Red: TPR 25/25 = 1. Blue: deserving 49 (r51's row 1 now false), of which the
        // favourable-decision rows are r50, r52, …, r98: 25. TPR 25/49.
        let eod = c.equal_opportunity_difference.unwrap().value;
        assert!((eod - (25.0 / 49.0 - 1.0)).abs() < 1e-12, "{eod}");
        assert_eq!(c.equal_opportunity_verdict, Verdict::Fail);
        assert_eq!(worst(c), Verdict::Fail);
        // The attribution check: |a| = 0.3, |colour| = 0.1; colour's share 0.25 (the
        // window keeps contributions as bf16: each to within 2⁻⁸ of itself).
        let a = report.attribution.as_ref().unwrap();
        assert!((a.summary.protected_share.unwrap() - 0.25).abs() < 0.25 * 2.0 * 2f64.powi(-8));
        assert!((a.summary.mean_abs("a").unwrap() - 0.3).abs() <= 0.3 * 2f64.powi(-8));
    }

    #[test]
    fn an_erased_subjects_rows_leave_the_window_and_outcomes_still_join_the_rest() {
        let monitor = RouteMonitor::new("m", config());
        let job = MonitorJob::new(monitor.clone(), None, None);
        let names = vec!["a".to_owned(), "colour".to_owned()];
        // Each record has a red row (subject ps_red) and a blue one (ps_blue).
        let rows = (0..20).flat_map(|r| {
            let id = format!("r{r}");
            [
                observation(&id, 0, "red", true, 0),
                observation(&id, 1, "blue", true, 0),
            ]
        });
        monitor.push(&names, rows);
        assert_eq!(monitor.forget_subject("ps_red", false), 20);
        assert_eq!(monitor.forget_subject("ps_nobody", false), 0);
        job.compute(1);
        let report = monitor.latest.load_full().unwrap();
        assert_eq!(report.window_rows, 20);
        // The records' remaining rows are still found by their outcomes.
        for r in 0..20 {
            let id = format!("r{r}");
            assert_eq!(monitor.join_outcome(&id, &serde_json::json!(true), None), 1);
        }
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
        let job = MonitorJob::new(monitor.clone(), None, None);
        let names = vec!["a".to_owned(), "colour".to_owned()];
        monitor.push(
            &names,
            (0..30).map(|i| observation(&format!("old{i}"), 0, "red", true, 1_000)),
        );
        monitor.push(
            &names,
            (0..20).map(|i| observation(&format!("new{i}"), 0, "blue", true, 4_000)),
        );
        job.compute(5_000);
        assert_eq!(monitor.latest.load_full().unwrap().window_rows, 50);
        // At 7 s the first 30 are older than 5 s; nothing new arrived, yet the window
        // shrinks, and their outcomes no longer join.
        job.compute(7_000);
        assert_eq!(monitor.latest.load_full().unwrap().window_rows, 20);
        assert_eq!(
            monitor.join_outcome("old3", &serde_json::json!(true), None),
            0
        );
        assert_eq!(
            monitor.join_outcome("new3", &serde_json::json!(true), None),
            1
        );
        job.compute(9_500);
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
        let job = MonitorJob::new(monitor.clone(), None, None);
        let mut registry = Registry::default();
        let alerter =
            crate::alert::Alerter::new(&crate::config::AlertsConfig::default(), &mut registry)
                .unwrap();
        job.attach_alerts(alerter, None);
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
        job.compute(1);
        assert_eq!(firing_di(&monitor), 1);
        assert!(monitor.firing_alerts() >= 1);
        push(&monitor, 40, 10, 0.0);
        job.compute(2);
        assert_eq!(transitions(&monitor), ["firing"]);
        push(&monitor, 25, 25, 0.0);
        job.compute(3);
        assert_eq!(firing_di(&monitor), 0);
        assert_eq!(transitions(&monitor), ["resolved", "firing"]);
        // Unfair again, then every row ages out: no verdict, so it stays firing.
        push(&monitor, 40, 10, 0.0);
        job.compute(4);
        job.compute(120_000);
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

    #[test]
    fn a_drift_alert_waits_for_min_rows_on_both_sides() {
        let firing_psi = |min_rows: u64| {
            let mut config = config();
            config.alerts.min_rows = min_rows;
            config.alerts.fairness = false;
            let monitor = RouteMonitor::new("m", config);
            let job = MonitorJob::new(monitor.clone(), None, None);
            let mut registry = Registry::default();
            let alerter =
                crate::alert::Alerter::new(&crate::config::AlertsConfig::default(), &mut registry)
                    .unwrap();
            job.attach_alerts(alerter, None);
            // The first 100 rows are the reference; the next 100 have drifted far.
            push(&monitor, 25, 25, 0.0);
            job.compute(1);
            push(&monitor, 25, 25, 1000.0);
            job.compute(2);
            let report = monitor.latest.load_full().unwrap();
            let a = report.drift.iter().find(|d| d.feature == "a").unwrap();
            // The figure is there either way; only the alert waits.
            assert!(a.drift.psi().unwrap() > 1.0);
            monitor.alerts_json()["firing"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a["check"] == "feature_psi" && a["subject"] == "a")
                .count()
        };
        // 100 rows a side: below the default of 500, no alert.
        assert_eq!(firing_psi(500), 0);
        assert_eq!(firing_psi(100), 1);
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
        let job = MonitorJob::new(monitor.clone(), None, None);
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
        job.compute(1);
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
