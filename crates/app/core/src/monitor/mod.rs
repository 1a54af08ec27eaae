//! The monitor's shared half (`[routes.monitor]`): the window of explained rows the
//! request path fills, and the latest results and alerts the monitoring job publishes.
//!
//! The request path pushes one small [`Observation`] per explained row into a bounded
//! window under a mutex, never waiting on the statistics: while the job copies the
//! window out ([`RouteMonitor::snapshot`]), rows wait in an inbox. Each row carries its
//! audit record id, so that outcomes reported later (`POST /v1/feedback`) join the rows
//! still in the window. The statistics themselves, the gauges, the review flags and the
//! alerts are the monitoring job's (`sidelight-tasks`).

mod columns;
mod window;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use arc_swap::{ArcSwap, ArcSwapOption};
use serde::Serialize;
use sidelight_explain::Value;
use sidelight_monitor::{
    AttributionCheck, FairnessReport, FeatureDrift, FidelitySummary, NumericDrift, Verdict,
};

use sidelight_config::{MonitorConfig, ProtectedConfig};

use window::Windows;
pub use window::{FeatureSummary, GroupSummary, SharedFeature, SharedReference, Summary};

/// Rows that wait for the window while a computation holds it; past this many the
/// request path drops them and counts them in `rows_skipped`.
const INBOX_ROWS: usize = 65_536;

/// Moves the rows that waited in the inbox into the window.
fn merge(w: &mut Windows, inbox: &mut Inbox, protected: &[ProtectedConfig]) {
    if inbox.rows.is_empty() {
        return;
    }
    let names = std::mem::take(&mut inbox.names);
    let rows = std::mem::take(&mut inbox.rows);
    w.add(&names, rows.into_iter(), protected);
}

/// One explained row, as the monitor keeps it (the row shared between the window and
/// the reference, and cheap to copy out for the computation).
#[derive(Clone)]
pub struct Observation {
    pub row: Arc<[Value]>,
    pub prediction: f64,
    pub favourable: bool,
    /// The audit record the row belongs to (with an audit log), and its place in it.
    pub record: Option<Arc<str>>,
    pub index: u32,
    /// The pseudonymous subject the row came from (with an audit log), so that erasing
    /// the subject removes it.
    pub subject: Option<Arc<str>>,
    /// The row's attributions, in the order of the rows' names; empty if unknown.
    pub attributions: Arc<[f64]>,
    /// The output at which the row's decision turns, and its direction: a numeric
    /// outcome reported later is judged the same way.
    pub threshold: f64,
    pub higher_is_favourable: bool,
    /// When it was seen, in milliseconds since the Unix epoch (for `max_age`).
    pub at: i64,
    /// The true outcome reported through `POST /v1/feedback` (favourable or not).
    pub outcome: Option<bool>,
    /// The values of the protected attributes that are not features (from a header, or
    /// reported later), by their place in `[routes.monitor] protected`; `None` while
    /// the route has none or the row has no value yet.
    pub attributes: Option<Box<[Option<String>]>>,
}

impl Default for Observation {
    fn default() -> Self {
        Self {
            row: Arc::from(Vec::new()),
            prediction: 0.0,
            favourable: false,
            record: None,
            index: 0,
            subject: None,
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
pub fn outcome_of(
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
pub fn outcome_for_row(
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

/// What the monitor computed last, served by `GET /api/v1/monitoring`.
#[derive(Debug, Clone, Serialize)]
pub struct MonitorReport {
    /// When it was computed, in milliseconds since the Unix epoch.
    pub computed_at: i64,
    /// How long the computation took, in milliseconds: reading the window's summaries,
    /// and a proxy sweep when one was due.
    pub compute_ms: u64,
    /// How long the last sweep of the window's columns for possible proxies took, in
    /// milliseconds; a sweep runs at most once per hundred times that, so that it stays
    /// under a hundredth of a core. `None` before the first.
    pub proxy_sweep_ms: Option<u64>,
    /// Rows in the current window.
    pub window_rows: usize,
    /// Rows monitored since the proxy started.
    pub rows_seen: u64,
    /// Rows not monitored: they arrived while the window was being copied for the
    /// computation and the inbox that holds such rows was busy or full (the request
    /// path never waits for the monitor); on a ranking route, also each ranking that
    /// arrived while exposure was being computed.
    pub rows_skipped: u64,
    /// Rows in the drift reference.
    pub reference_rows: usize,
    /// What the reference is: `training_window` (the rows the surrogate in service was
    /// trained on) or `first_rows` (the first `window_rows` rows seen, until a surrogate
    /// is trained while the proxy runs).
    pub reference: &'static str,
    pub fairness: Vec<FairnessReport>,
    /// Per feature; empty until the reference is complete.
    pub drift: Vec<FeatureDrift>,
    /// Of the model's output (the first value per row); `None` until the reference is
    /// complete.
    pub prediction_drift: Option<NumericDrift>,
    /// Rows of the window with a reported outcome (what equal opportunity and average
    /// odds are computed over).
    pub rows_with_outcome: usize,
    /// Mean |attribution| per feature, the protected features' share, and possible
    /// proxies of each protected feature; `None` without attributions.
    pub attribution: Option<AttributionCheck>,
    /// The held-out R² of every surrogate trained for the route (accepted or not), over
    /// time; `None` until one is trained.
    pub fidelity: Option<FidelitySummary>,
    /// Protected groups flagged for review by this monitor, as (feature, group).
    pub flagged: Vec<(String, String)>,
    /// Why something could not be computed, if anything.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// In a fleet (a PostgreSQL audit log), how the replicas' figures were merged;
    /// absent for a proxy on its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetView>,
    /// A ranking route's exposure: per protected attribute, each item group's share of
    /// the shown slots per customer group, and the comparisons (this replica's rankings
    /// only, in a fleet). Absent on other routes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exposure: Vec<ExposureReport>,
}

/// Exposure for one protected attribute of a ranking route's customers.
#[derive(Debug, Clone, Serialize)]
pub struct ExposureReport {
    /// The protected attribute.
    pub attribute: String,
    /// The item feature whose levels are the item groups.
    pub item_feature: String,
    /// Rankings in the window.
    pub rankings: usize,
    /// Shares, comparisons and verdict.
    #[serde(flatten)]
    pub check: sidelight_monitor::exposure::ExposureCheck,
}

/// One ranking a customer was shown, as exposure counts it: the customer's group per
/// protected attribute and each shown slot's item group, in rank order.
#[derive(Debug, Clone)]
pub struct ShownRanking {
    pub groups: Box<[Option<String>]>,
    pub items: Box<[Option<String>]>,
    /// Pseudonymous subject, so that an erasure takes its rankings too.
    pub subject: Option<Arc<str>>,
    pub at: i64,
}

/// How a fleet's monitoring figures were made: `window_rows`, `rows_seen`,
/// `rows_with_outcome`, `fairness` and `attribution.summary` are the fleet's (every
/// replica's window together), and so is `drift` once `shared_reference` (the replicas
/// counting against the fleet's reference); the proxies and `fidelity` are this
/// replica's.
#[derive(Debug, Clone, Serialize)]
pub struct FleetView {
    /// Replicas whose summaries were merged, this one included.
    pub replicas: usize,
    /// Summaries of other replicas left out because their rows or protected groups
    /// differ from this replica's (a rolling update between configs).
    pub left_out: usize,
    /// Whether this replica sends the route's alerts: one replica per route does.
    pub sends_alerts: bool,
    /// Replicas whose drift counts were merged, this one included: those counting
    /// against the fleet's drift reference.
    pub drift_replicas: usize,
    /// Whether this replica's drift reference is the fleet's (made here or taken from
    /// the fleet); until it is, drift is this replica's own.
    pub shared_reference: bool,
}

/// Rows pushed while the window was locked for a computation's copy.
#[derive(Default)]
struct Inbox {
    names: Vec<String>,
    rows: Vec<Observation>,
}

/// One route's monitor: the window the request path fills and the results the
/// monitoring job publishes. The computation itself is the job's (`sidelight-tasks`).
pub struct RouteMonitor {
    pub route: String,
    pub config: MonitorConfig,
    windows: Mutex<Windows>,
    inbox: Mutex<Inbox>,
    /// What the job computed last.
    pub latest: ArcSwapOption<MonitorReport>,
    /// The route's firing alerts and recent transitions, as the job published them.
    alerts: ArcSwap<serde_json::Value>,
    /// How many of the route's alerts fire now, for the review rule `alerts`.
    firing: AtomicUsize,
    /// Rows not monitored because the computation was copying the window just then.
    skipped: AtomicU64,
    stopping: AtomicBool,
    stop_lock: Mutex<()>,
    wake: Condvar,
    /// A ranking route's recent rankings (at most `window_rows`), for exposure.
    rankings: Mutex<std::collections::VecDeque<ShownRanking>>,
    /// A ranking route's item feature whose levels group items for exposure.
    item_feature: std::sync::OnceLock<String>,
    /// A ranking route's: its rows are items shown, not decisions.
    ranking: AtomicBool,
}

impl std::fmt::Debug for RouteMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteMonitor")
            .field("route", &self.route)
            .finish_non_exhaustive()
    }
}

impl RouteMonitor {
    pub fn new(route: &str, config: MonitorConfig) -> Arc<Self> {
        let window = Windows::new(config.window_rows, config.max_age.is_some());
        Arc::new(Self {
            route: route.to_owned(),
            config,
            windows: Mutex::new(window),
            inbox: Mutex::default(),
            latest: ArcSwapOption::empty(),
            alerts: ArcSwap::from_pointee(serde_json::json!({ "firing": [], "recent": [] })),
            firing: AtomicUsize::new(0),
            skipped: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            stop_lock: Mutex::new(()),
            wake: Condvar::new(),
            rankings: Mutex::default(),
            item_feature: std::sync::OnceLock::new(),
            ranking: AtomicBool::new(false),
        })
    }

    /// Makes the monitor a ranking route's: the decision checks (selection rates) are
    /// not computed over items shown, which are no decisions; exposure is.
    pub fn set_ranking(&self) {
        self.ranking.store(true, Ordering::Relaxed);
    }

    /// Whether the monitor is a ranking route's.
    pub fn is_ranking(&self) -> bool {
        self.ranking.load(Ordering::Relaxed)
    }

    /// Makes the monitor a ranking route's with exposure over `item_feature`'s levels.
    pub fn set_item_feature(&self, item_feature: String) {
        let _ = self.item_feature.set(item_feature);
    }

    /// The item feature exposure groups items by, on a ranking route that has one.
    pub fn item_feature(&self) -> Option<&str> {
        self.item_feature.get().map(String::as_str)
    }

    /// Keeps a ranking shown to a customer, for exposure; the oldest goes past
    /// `window_rows`. As with rows, the request path never waits for the monitor: while
    /// a computation reads the rankings, this one is counted in `rows_skipped`.
    pub fn push_ranking(&self, ranking: ShownRanking) {
        let mut rankings = match self.rankings.try_lock() {
            Ok(rankings) => rankings,
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                self.skipped.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        while rankings.len() >= self.config.window_rows.max(1) {
            rankings.pop_front();
        }
        rankings.push_back(ranking);
    }

    /// The exposure of the rankings in the window (younger than `max_age` at `now`),
    /// per protected attribute; `item_feature` names the item groups.
    pub fn exposure(&self, now: i64, item_feature: &str) -> Vec<ExposureReport> {
        let mut rankings = self.rankings.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(max_age) = self.config.max_age {
            let oldest = now.saturating_sub(i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX));
            while rankings.front().is_some_and(|r| r.at < oldest) {
                rankings.pop_front();
            }
        }
        if rankings.is_empty() {
            return Vec::new();
        }
        let config = sidelight_monitor::FairnessConfig {
            confidence: self.config.confidence,
            min_group_size: self.config.min_group_size,
            ..sidelight_monitor::FairnessConfig::default()
        };
        self.config
            .protected
            .iter()
            .enumerate()
            .map(|(k, p)| {
                let shown: Vec<sidelight_monitor::exposure::ShownRanking<'_>> = rankings
                    .iter()
                    .map(|r| sidelight_monitor::exposure::ShownRanking {
                        customer_group: r.groups.get(k).and_then(|g| g.as_deref()),
                        item_groups: r.items.iter().map(|i| i.as_deref()).collect(),
                    })
                    .collect();
                let check = sidelight_monitor::exposure::check_exposure(
                    &shown,
                    &p.privileged,
                    &p.unprivileged,
                    &config,
                );
                ExposureReport {
                    attribute: p.feature.clone(),
                    item_feature: item_feature.to_owned(),
                    rankings: rankings.len(),
                    check,
                }
            })
            .collect()
    }

    /// How many of the route's alerts fire now.
    pub fn firing_alerts(&self) -> usize {
        self.firing.load(Ordering::Relaxed)
    }

    /// The firing alerts and recent transitions, for `GET /api/v1/alerts`.
    pub fn alerts_json(&self) -> serde_json::Value {
        serde_json::Value::clone(&self.alerts.load())
    }

    /// Publishes the route's alerts after a computation.
    pub fn publish_alerts(&self, json: serde_json::Value, firing: usize) {
        self.alerts.store(Arc::new(json));
        self.firing.store(firing, Ordering::Relaxed);
    }

    /// Publishes a computation's results.
    pub fn publish(&self, report: MonitorReport) {
        self.latest.store(Some(Arc::new(report)));
    }

    /// Rows not monitored so far because the window was being copied.
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }

    /// Waits `every` (or until stopped); `false` once the monitor is stopping.
    pub fn wait(&self) -> bool {
        let guard = self
            .stop_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.stopping.load(Ordering::Relaxed) {
            return false;
        }
        let _ = self.wake.wait_timeout(guard, self.config.every);
        !self.stopping.load(Ordering::Relaxed)
    }

    /// The window's summaries for a computation at `now`, after dropping the rows older
    /// than `max_age` and making first rows the reference once they are all in; `None`
    /// when nothing changed since the last computation that was published, unless
    /// `always` (a fleet's figures change with the other replicas' traffic too).
    pub fn summary(&self, now: i64, always: bool) -> Option<Summary> {
        let mut w = self.windows()?;
        // The reference first: first rows still in the window become it without being
        // copied aside, as expiring them first would.
        if w.reference_due() {
            // A sort per feature, once: the request path meanwhile puts its rows in the
            // inbox.
            if let Err(e) = w.finish_reference() {
                tracing::warn!(route = %self.route, error = %e, "the first rows could not become the drift reference");
            }
        }
        if let Some(max_age) = self.config.max_age {
            let age = i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
            w.expire_before(now.saturating_sub(age));
        }
        if w.fresh == 0 && !always && self.latest.load().is_some() {
            return None;
        }
        w.fresh = 0;
        Some(w.summary())
    }

    /// For each protected attribute (features and attributes outside the rows), the
    /// `top_k` other features most associated with it in the window (see
    /// `sidelight_monitor::possible_proxies`, which this follows column by column so as
    /// not to widen every column at once). The window is locked only while a column is
    /// copied out, never for the statistics: outcomes and attributes reported meanwhile
    /// join at once. Each association is over the rows both columns had; an erasure
    /// during the sweep starts it again (once).
    pub fn proxies(&self, top_k: usize) -> Vec<sidelight_monitor::ProxyCandidate> {
        for _ in 0..2 {
            if let Some(found) = self.sweep_proxies(top_k) {
                return found;
            }
        }
        Vec::new()
    }

    /// One sweep; `None` when an erasure renumbered the rows during it.
    fn sweep_proxies(&self, top_k: usize) -> Option<Vec<sidelight_monitor::ProxyCandidate>> {
        let (sources, span, names) = {
            let w = self.windows()?;
            let (sources, span) = w.proxy_sources(&self.config.protected);
            (sources, span, w.names.clone())
        };
        let mut found: Vec<Vec<(usize, sidelight_monitor::Association)>> =
            vec![Vec::new(); sources.len()];
        let (mut numbers, mut codes) = (Vec::new(), Vec::new());
        for j in 0..names.len() {
            if sources.iter().any(|s| s.feature == Some(j)) {
                continue;
            }
            let (levels, at) = self.windows()?.widen_feature(j, &mut numbers, &mut codes)?;
            if at.erasures != span.erasures {
                return None;
            }
            // The rows both copies hold, by sequence number.
            let first = span.first.max(at.first);
            let end = (span.first + span.rows as u64).min(at.first + at.rows as u64);
            let (Ok(from_source), Ok(from_column), Ok(rows)) = (
                usize::try_from(first.saturating_sub(span.first)),
                usize::try_from(first.saturating_sub(at.first)),
                usize::try_from(end.saturating_sub(first)),
            ) else {
                continue;
            };
            let other = window::widened(&numbers, &codes, levels, from_column..from_column + rows);
            for (k, source) in sources.iter().enumerate() {
                let values = source.values(from_source..from_source + rows);
                if let Some(a) = sidelight_monitor::association(&values, &other) {
                    found[k].push((j, a));
                }
            }
        }
        Some(
            sources
                .iter()
                .zip(found)
                .flat_map(|(source, list)| {
                    sidelight_monitor::rank_proxies(&source.name, &names, list, top_k)
                })
                .collect(),
        )
    }

    /// Joins an outcome reported for audit record `id` to its rows still in the window
    /// (see [`outcome_for_row`] and [`outcome_of`]); returns how many rows it joined.
    /// Rows that have left the window are not joined: the outcome stays in the audit log.
    pub fn join_outcome(&self, id: &str, outcome: &serde_json::Value, row: Option<usize>) -> usize {
        let Some(mut w) = self.windows() else {
            return 0;
        };
        w.join_outcome(id, |k, threshold, higher| {
            outcome_for_row(outcome, row, k).and_then(|v| outcome_of(v, threshold, higher))
        })
    }

    /// Joins protected attributes reported after the prediction (`reported = true`) to
    /// the record's rows still in the window; returns how many rows got a value.
    pub fn join_attributes(
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
        let Some(mut w) = self.windows() else {
            return 0;
        };
        w.join_attributes(id, &reported, &self.config.protected)
    }

    /// The protected attributes read from request headers: their place in the config
    /// and the header's name.
    pub fn header_attributes(&self) -> Vec<(usize, http::HeaderName)> {
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
    pub fn protected_count(&self) -> usize {
        self.config.protected.len()
    }

    /// Adds explained rows (in the order of `names`); the request path's only cost.
    pub fn push(&self, names: &[String], rows: impl Iterator<Item = Observation>) {
        let protected = &self.config.protected;
        if let Ok(mut w) = self.windows.try_lock() {
            if let Ok(mut inbox) = self.inbox.try_lock() {
                merge(&mut w, &mut inbox, protected);
            }
            w.add(names, rows, protected);
            return;
        }
        // Never wait behind a computation: the rows wait in the inbox for the next push
        // or computation, and only when that is busy too (or full) are they dropped and
        // counted.
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
        let room = INBOX_ROWS.min(self.config.window_rows.max(1));
        let mut dropped = 0u64;
        for obs in rows {
            if inbox.rows.len() < room {
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
        merge(&mut w, &mut inbox, &self.config.protected);
        Some(w)
    }

    /// Forgets an erased subject's rows (see `Windows::forget`), those waiting in the
    /// inbox too. Returns how many rows went.
    pub fn forget_subject(&self, subject: &str, training_reference_saw: bool) -> usize {
        self.rankings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|r| r.subject.as_deref() != Some(subject));
        let waiting = match self.inbox.lock() {
            Ok(mut inbox) => {
                let before = inbox.rows.len();
                inbox.rows.retain(|o| o.subject.as_deref() != Some(subject));
                before - inbox.rows.len()
            }
            Err(_) => 0,
        };
        let Ok(mut w) = self.windows.lock() else {
            return waiting;
        };
        waiting + w.forget(subject, training_reference_saw)
    }

    /// The drift reference made by this replica (not one taken from the fleet), as a
    /// fleet shares it.
    pub fn shared_reference(&self) -> Option<SharedReference> {
        self.windows()?.shared_reference()
    }

    /// Makes the fleet's drift reference this replica's, so that the replicas' drift
    /// counts merge; the window is counted on its grids.
    pub fn adopt_reference(&self, shared: SharedReference) -> Result<(), String> {
        match self.windows() {
            Some(mut w) => w.adopt_reference(shared),
            None => Err("the monitor is stopping".to_owned()),
        }
    }

    /// Drops a drift reference taken from the fleet that the fleet no longer keeps.
    pub fn drop_adopted_reference(&self) {
        if let Some(mut w) = self.windows() {
            w.drop_adopted_reference();
        }
    }

    /// Makes the rows a newly accepted surrogate was trained on (given in the order of
    /// `names`, with the explained output of each) the drift reference.
    pub fn set_reference(&self, names: &[String], rows: Vec<(Arc<[Value]>, f64)>) {
        let Some(mut w) = self.windows() else {
            return;
        };
        if w.names.is_empty() {
            w.add(names, std::iter::empty(), &self.config.protected);
        }
        let order: Vec<Option<usize>> = w
            .names
            .iter()
            .map(|n| names.iter().position(|m| m == n))
            .collect();
        let identity = order.iter().enumerate().all(|(i, o)| *o == Some(i));
        let rows: Vec<(Arc<[Value]>, f64)> = if identity {
            rows
        } else {
            rows.into_iter()
                .map(|(row, prediction)| {
                    let row: Arc<[Value]> = order
                        .iter()
                        .map(|o| {
                            o.and_then(|i| row.get(i).cloned())
                                .unwrap_or(Value::Missing)
                        })
                        .collect();
                    (row, prediction)
                })
                .collect()
        };
        w.set_reference(&rows);
    }

    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        let _guard = self.stop_lock.lock();
        self.wake.notify_all();
    }
}

/// The most severe of a comparison's verdicts that the window can support: equal
/// opportunity counts once reported outcomes give it a figure.
pub fn worst(c: &sidelight_monitor::GroupComparison) -> Verdict {
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
    pub fn group_label(&self, feature: &str, value: &Value) -> String {
        match self.config.protected.iter().find(|p| p.feature == feature) {
            Some(p) => group_label(p, value),
            None => value_text(value),
        }
    }
}

/// The value of the `k`th protected attribute of a row, when it is not a feature.
pub fn attribute_of(o: &Observation, k: usize) -> Option<&str> {
    o.attributes.as_ref()?.get(k)?.as_deref()
}

/// The group of a header's or reported value: its band for a banded attribute (when the
/// value is a number), else the value itself; no value, no group.
pub fn attribute_label(p: &ProtectedConfig, value: Option<&str>) -> String {
    let Some(v) = value else {
        return String::new();
    };
    match v.parse::<f64>() {
        Ok(x) if !p.bands.is_empty() => p.band(x).unwrap_or_default(),
        _ => v.to_owned(),
    }
}

pub fn group_label(p: &ProtectedConfig, value: &Value) -> String {
    match value {
        Value::Number(x) if !p.bands.is_empty() => p.band(*x).unwrap_or_default(),
        other => value_text(other),
    }
}

/// A value as a group label: as the review rules compare it.
pub fn value_text(v: &Value) -> String {
    match v {
        Value::Number(x) => x.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Text(t) => t.clone(),
        Value::Missing => String::new(),
    }
}

/// `GET /api/v1/monitoring`: the latest results of every monitored route.
pub fn to_json(monitors: &[Arc<RouteMonitor>]) -> serde_json::Value {
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
    use sidelight_config::MonitorConfig;

    fn push(monitor: &RouteMonitor, rows: usize) {
        let names = vec!["a".to_owned()];
        monitor.push(
            &names,
            (0..rows).map(|i| Observation {
                row: Arc::from(vec![Value::Number(i as f64)]),
                ..Observation::default()
            }),
        );
    }

    /// The sweep of possible proxies, a column at a time, finds what the crate's
    /// definition finds over the whole window at once, after rows left the window.
    #[test]
    fn the_proxy_sweep_finds_what_the_crates_definition_finds() {
        let monitor = RouteMonitor::new(
            "m",
            MonitorConfig {
                window_rows: 300,
                protected: vec![ProtectedConfig {
                    feature: "g".to_owned(),
                    privileged: "a".to_owned(),
                    unprivileged: vec!["b".to_owned()],
                    bands: Vec::new(),
                    header: None,
                    reported: false,
                }],
                ..MonitorConfig::default()
            },
        );
        let names: Vec<String> = ["g", "x", "y", "c"].map(str::to_owned).to_vec();
        let row = |i: usize| {
            let g = if i % 3 == 0 { "a" } else { "b" };
            vec![
                Value::Text(g.to_owned()),
                Value::Number(if g == "a" { 1.0 } else { 5.0 } + (i % 7) as f64),
                Value::Number((i * 37 % 101) as f64),
                Value::Text(format!("l{}", i % 4)),
            ]
        };
        monitor.push(
            &names,
            (0..500).map(|i| Observation {
                row: Arc::from(row(i)),
                ..Observation::default()
            }),
        );
        // The computation makes the first rows the reference and trims the window.
        assert_eq!(monitor.summary(1, true).unwrap().window_rows, 300);
        let kept: Vec<Vec<Value>> = (200..500).map(row).collect();
        let numbers = |j: usize| -> Vec<f64> {
            kept.iter()
                .map(|r| match &r[j] {
                    Value::Number(x) => *x,
                    _ => f64::NAN,
                })
                .collect()
        };
        let texts = |j: usize| -> Vec<Option<&str>> {
            kept.iter()
                .map(|r| match &r[j] {
                    Value::Text(t) => Some(t.as_str()),
                    _ => None,
                })
                .collect()
        };
        let (g, x, y, c) = (texts(0), numbers(1), numbers(2), texts(3));
        let columns = [
            sidelight_monitor::Column {
                name: "g",
                values: sidelight_monitor::Values::Categorical(&g),
            },
            sidelight_monitor::Column {
                name: "x",
                values: sidelight_monitor::Values::Numeric(&x),
            },
            sidelight_monitor::Column {
                name: "y",
                values: sidelight_monitor::Values::Numeric(&y),
            },
            sidelight_monitor::Column {
                name: "c",
                values: sidelight_monitor::Values::Categorical(&c),
            },
        ];
        let expected = sidelight_monitor::possible_proxies(&columns, &["g"], 3).unwrap();
        let found = monitor.proxies(3);
        assert_eq!(found.len(), expected.len());
        for (f, e) in found.iter().zip(&expected) {
            assert_eq!((&f.protected, &f.feature), (&e.protected, &e.feature));
            assert_eq!(f.association.measure, e.association.measure);
            assert!(
                (f.association.value - e.association.value).abs() < 1e-9,
                "{f:?} {e:?}"
            );
        }
        assert_eq!(found[0].feature, "x", "{found:?}");
    }

    /// Rows that arrive while a computation copies the window wait in the inbox and are
    /// monitored, not dropped; only when the inbox is busy too are they skipped.
    #[test]
    fn rows_pushed_during_a_computation_wait_in_the_inbox() {
        let monitor = RouteMonitor::new(
            "m",
            MonitorConfig {
                window_rows: 100,
                ..MonitorConfig::default()
            },
        );
        let guard = monitor.windows.lock().unwrap();
        push(&monitor, 100);
        assert_eq!(monitor.inbox.lock().unwrap().rows.len(), 100);
        {
            let _busy = monitor.inbox.lock().unwrap();
            push(&monitor, 100);
        }
        drop(guard);
        let summary = monitor.summary(1, false).unwrap();
        assert_eq!(summary.seen, 100);
        assert_eq!(summary.window_rows, 100);
        assert_eq!(monitor.skipped(), 100);
        assert!(monitor.inbox.lock().unwrap().rows.is_empty());
    }
}
