//! Live explanations: the training window a route's traffic fills, the surrogate in
//! service (swapped atomically, never locked on the request path), the background
//! trainer with its fidelity gate, and persistence across restarts.

pub mod columns;
pub mod metrics;
pub mod model;
pub mod pending;
pub mod schema;
pub mod state;
pub mod store;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use arc_swap::ArcSwapOption;
use sidelight_explain::{Surrogate, Value};
use sidelight_narrate::{Narrator, RouteOverrides};

use crate::config::{ExplainConfig, PrivacyConfig, ProtocolName, ReviewConfig, RouteConfig};
use sidelight_audit::PrivacyPolicy;
use sidelight_protocol::Protocol;

pub use metrics::LiveMetrics;
pub use model::{LiveModel, Narrate, VersionRecord};
pub use schema::{SchemaInferError, infer_from_requests};
pub use store::{RecentExplanations, RecentRequests};

/// One route's live-explanation state, shared by every worker thread and the trainer.
pub struct RouteLive {
    pub route: String,
    pub config: ExplainConfig,
    pub protocol: Protocol,
    /// The surrogate in service; `None` while warming up.
    pub model: ArcSwapOption<LiveModel>,
    pub window: Mutex<Window>,
    /// Wakes the trainer when enough new rows have arrived.
    pub wake: Condvar,
    pub stopping: AtomicBool,
    /// Every version trained, accepted or not, newest last.
    pub history: Mutex<Vec<VersionRecord>>,
    /// What the trainer waits for before it can judge a surrogate, if anything.
    pub waiting: Mutex<Option<String>>,
    pub next_version: AtomicU64,
    pub state_dir: PathBuf,
    /// How much of a response body may be read to find the outputs: the route's
    /// inspection limit.
    pub response_limit: u64,
    /// The narrator, shared by every route.
    pub narrator: Arc<Narrator>,
    /// The route's own sentences, checked at start-up.
    pub overrides: RouteOverrides,
    /// Consent defaults and where the subject's identifier is.
    pub privacy: PrivacyConfig,
    /// The header carrying the subject's identifier.
    pub subject_header: http::HeaderName,
    /// What of each field the audit log may keep.
    pub policy: PrivacyPolicy,
    /// Which predictions go to review.
    pub review: ReviewConfig,
    /// The request header asking for review, if the route has one.
    pub review_header: Option<http::HeaderName>,
    /// The fairness and drift monitor, with `[routes.monitor]`.
    pub monitor: Option<Arc<crate::monitor::RouteMonitor>>,
    /// Set when the route's surrogate is the fleet's (PostgreSQL): observed rows are
    /// also queued in `pending` for the shared table.
    pub shared: AtomicBool,
    /// Consented rows not yet in the fleet's table.
    pub pending: Mutex<VecDeque<pending::Pending>>,
    /// The configured feature names (empty: inferred from traffic).
    pub configured: Vec<String>,
    /// How requests' columns have mapped to `configured`.
    pub columns: columns::ColumnState,
    /// Set once at start-up by the server, which owns the registry.
    pub metrics: std::sync::OnceLock<LiveMetrics>,
    /// When the upstream last failed a customer request (ms since the Unix epoch; 0:
    /// never): active distillation keeps quiet for a while after one.
    pub last_upstream_error: AtomicU64,
    /// The audit log's keys (with an audit log): subjects' digests and the pseudonyms
    /// of personal levels in saved surrogates come from them.
    pub keys: Option<sidelight_audit::Keys>,
    /// Features whose values are personal: marked `pii` or `protected`, given a privacy
    /// rule other than `keep`, or monitored as protected. Their levels are never saved or
    /// shown in the clear.
    pub personal: Vec<String>,
    /// Subjects erased while Sidelight runs, for trainings under way (see
    /// [`RouteLive::erased_since`]).
    erasures: Mutex<Erasures>,
}

/// The subjects erased since start (as digests), numbered, so that a training can tell
/// whether one of its rows' subjects was erased while it ran.
#[derive(Default)]
struct Erasures {
    /// Erasures so far.
    epoch: u64,
    /// The newest ones: (epoch, digest).
    recent: VecDeque<(u64, u64)>,
    /// Entries up to this epoch were dropped to bound memory.
    dropped_upto: u64,
}

/// Erasures remembered for trainings under way; a training older than the oldest is
/// treated as having seen an erased subject (it is retrained).
const RECENT_ERASURES: usize = 10_000;

/// Erasures are looked up from a saved surrogate's time less this much, so that clocks
/// of the replicas of a fleet a little apart cannot hide one.
const CLOCK_SKEW_MS: u64 = 60_000;

/// What erasing a subject did to a route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Forgotten {
    /// Rows removed from the training window.
    pub rows: usize,
    /// The version taken out of service because it was trained on the subject's rows.
    pub retired: Option<u64>,
}

impl Forgotten {
    /// Whether the route trains a new surrogate because of the erasure.
    pub fn retraining(&self) -> bool {
        self.rows > 0 || self.retired.is_some()
    }
}

/// The most recent rows and the model's outputs for them.
#[derive(Default)]
pub struct Window {
    /// Feature names, in the order rows are stored: the configured features, or the
    /// names of the first rows seen.
    pub names: Vec<String>,
    /// Values per row the model outputs (1, or one per class); fixed by the first rows.
    pub width: Option<usize>,
    pub rows: VecDeque<WindowRow>,
    /// What `rows` weigh ([`WindowRow::weight`]).
    pub bytes: usize,
    /// On a route without configured features, before its columns are fixed: the
    /// names the latest requests agreed on, and how many in a row did.
    pub candidate: Option<(Vec<String>, usize)>,
    pub seen: u64,
    pub since_training: u64,
    /// Rows were erased: the next surrogate must be trained without them, now.
    pub retrain_now: bool,
    /// Whether a training has been tried since start (accepted or not): after one, a
    /// route without a surrogate waits for new rows before trying again.
    pub tried: bool,
    /// Synthetic rows the model answered (active distillation), newest last, in `names`
    /// order; trained on, never monitored or recorded.
    pub synthetic: VecDeque<SyntheticRow>,
    /// Synthetic rows added since start.
    pub synthetic_seen: u64,
}

/// A synthetic row, the model's answer, and where it came from.
pub type Answered = (Vec<Value>, Vec<f64>, Origin);

/// The real rows a synthetic row was made from: their keys
/// ([`sidelight_explain::row_key`]) and their subjects.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub keys: Vec<u64>,
    pub subjects: Vec<Arc<str>>,
}

/// A synthetic row and the model's answer, with the subjects whose rows it was made
/// from (erasing one of them removes it).
pub struct SyntheticRow {
    pub row: Vec<Value>,
    pub output: Vec<f64>,
    pub subjects: Vec<Arc<str>>,
    /// Keys of the real rows it was made from.
    pub sources: Vec<u64>,
}

/// One row of the training window.
pub struct WindowRow {
    pub row: Vec<Value>,
    pub output: Vec<f64>,
    /// The pseudonymous subject it came from, so that erasing the subject removes it.
    pub subject: Option<Arc<str>>,
}

impl WindowRow {
    /// Roughly what the row holds in memory, in bytes (`surrogate.window_bytes`).
    pub fn weight(&self) -> usize {
        row_weight(&self.row) + 8 * self.output.len() + 64
    }
}

/// Roughly what a row's values hold in memory, in bytes: text values weigh their length.
pub fn row_weight(row: &[Value]) -> usize {
    let text: usize = row
        .iter()
        .map(|v| match v {
            Value::Text(t) => t.len(),
            _ => 0,
        })
        .sum();
    std::mem::size_of_val(row) + text
}

/// The wire protocol of a `protocol = "ranking"` route (the config is validated, so
/// the pointers are there; an empty one reads nothing).
pub fn ranking_protocol(ranking: Option<&crate::config::RankingConfig>) -> Protocol {
    let r = ranking.cloned().unwrap_or_default();
    let answer = match r.ranked {
        Some(list) => sidelight_protocol::RankingAnswer::Ranked {
            list,
            id: r.ranked_id,
            score: r.ranked_score,
        },
        None => sidelight_protocol::RankingAnswer::Scores(r.scores.unwrap_or_default()),
    };
    Protocol::Ranking {
        shape: sidelight_protocol::RankingShape {
            context: r.context.unwrap_or_default(),
            candidates: r.candidates.unwrap_or_default(),
            id_field: r.id_field,
        },
        answer,
    }
}

/// Cuts a text value to at most `max` bytes, at a character boundary.
pub fn cut_text(value: &mut Value, max: usize) {
    if let Value::Text(text) = value {
        if text.len() > max {
            let mut end = max;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
        }
    }
}

/// Why an observation was not added to the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The number of outputs per row differs from the first rows'.
    OutputWidth,
    /// More columns than `limits.max_features`.
    TooManyFeatures,
    /// The route's columns are not settled yet (`limits.column_agreement`).
    ColumnsUnsettled,
}

impl Refused {
    /// The label of `sidelight_limit_hits_total` for the refusals that are limits.
    pub fn limit(self) -> Option<&'static str> {
        match self {
            Refused::OutputWidth => None,
            Refused::TooManyFeatures => Some("max_features"),
            Refused::ColumnsUnsettled => Some("column_agreement"),
        }
    }
}

// === impl RouteLive ===

impl std::fmt::Debug for RouteLive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteLive")
            .field("route", &self.route)
            .finish_non_exhaustive()
    }
}

impl RouteLive {
    /// The live state of `route`, which must have `[routes.explain]`. With an audit log,
    /// a surrogate saved by an earlier run is restored only if no subject its rows came
    /// from was erased since.
    pub fn new(
        route: &RouteConfig,
        state_dir: &Path,
        narrator: Arc<Narrator>,
        overrides: RouteOverrides,
        audit: Option<&crate::audit::AuditLog>,
    ) -> Result<Arc<Self>, LiveError> {
        let config = route.explain.clone().ok_or(LiveError::NotExplained)?;
        let personal = personal_features(route);
        let policy = route
            .privacy_policy(&route.name)
            .map_err(|(key, message)| LiveError::Config { key, message })?;
        let privacy = route.privacy.clone();
        let review = route.review.clone();
        let monitor = route
            .monitor
            .clone()
            .map(|m| crate::monitor::RouteMonitor::new(&route.name, m));
        if let (Some(monitor), Some(ranking)) = (&monitor, config.ranking.as_ref()) {
            monitor.set_ranking();
            if let Some(item) = ranking.item_group.clone() {
                monitor.set_item_feature(item);
            }
        }
        let response_limit = route.inspect_limit_bytes;
        let route = route.name.as_str();
        let review_header = review
            .header
            .as_deref()
            .map(|h| http::HeaderName::from_bytes(h.as_bytes()))
            .transpose()
            .map_err(|_| LiveError::Config {
                key: "review.header".to_owned(),
                message: "not a header name".to_owned(),
            })?;
        let subject_header = http::HeaderName::from_bytes(privacy.subject_header.as_bytes())
            .map_err(|_| LiveError::Config {
                key: "privacy.subject_header".to_owned(),
                message: format!("`{}` is not a header name", privacy.subject_header),
            })?;
        let protocol = match config.protocol {
            ProtocolName::KserveV1 => Protocol::KServeV1,
            ProtocolName::OpenInferenceV2 => Protocol::OpenInferenceV2,
            ProtocolName::Mlflow => Protocol::Mlflow,
            ProtocolName::Pointer => Protocol::Pointer {
                rows: config.rows_pointer.clone().unwrap_or_default(),
                outputs: config.outputs_pointer.clone().unwrap_or_default(),
            },
            ProtocolName::Ranking => ranking_protocol(config.ranking.as_ref()),
        };
        let names: Vec<String> = config.features.iter().map(|f| f.name.clone()).collect();
        let live = Arc::new(Self {
            configured: names.clone(),
            columns: columns::ColumnState::default(),
            metrics: std::sync::OnceLock::new(),
            last_upstream_error: AtomicU64::new(0),
            route: route.to_owned(),
            protocol,
            model: ArcSwapOption::empty(),
            window: Mutex::new(Window {
                names,
                ..Window::default()
            }),
            wake: Condvar::new(),
            stopping: AtomicBool::new(false),
            history: Mutex::new(Vec::new()),
            waiting: Mutex::new(None),
            next_version: AtomicU64::new(1),
            state_dir: state_dir.to_owned(),
            response_limit,
            narrator,
            overrides,
            privacy,
            subject_header,
            policy,
            review,
            review_header,
            monitor,
            config,
            shared: AtomicBool::new(false),
            pending: Mutex::new(VecDeque::new()),
            keys: audit.map(|a| a.keys().clone()),
            personal,
            erasures: Mutex::new(Erasures::default()),
        });
        live.restore(audit)?;
        Ok(live)
    }

    /// The held-out R² of every surrogate trained for the route (accepted or not), by
    /// training time: the fidelity series the monitor summarises.
    pub fn fidelity_series(&self) -> Vec<sidelight_monitor::FidelityPoint> {
        self.history
            .lock()
            .map(|h| {
                h.iter()
                    .map(|v| sidelight_monitor::FidelityPoint {
                        time: i64::try_from(v.trained_at)
                            .unwrap_or(i64::MAX / 1000)
                            .saturating_mul(1000),
                        r2: v.r2,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Notes that the upstream failed a customer request.
    pub fn upstream_failed(&self) {
        self.last_upstream_error.store(now_ms(), Ordering::Relaxed);
    }

    /// Whether the upstream failed a customer request within `period`.
    pub fn upstream_failed_within(&self, period: std::time::Duration) -> bool {
        let at = self.last_upstream_error.load(Ordering::Relaxed);
        at != 0
            && now_ms().saturating_sub(at) < u64::try_from(period.as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether the route's surrogate is the fleet's (PostgreSQL), trained from the
    /// fleet's table rather than from this replica's window.
    pub fn is_shared(&self) -> bool {
        self.shared.load(Ordering::Relaxed)
    }

    /// The route's metric handles, once the server gave them.
    pub fn metrics(&self) -> Option<&LiveMetrics> {
        self.metrics.get()
    }

    /// Gives the route its metric handles (once; later calls are ignored).
    pub fn attach_metrics(&self, metrics: LiveMetrics) {
        let _ = self.metrics.set(metrics);
    }

    /// Reads a request's columns as the route's features: positional columns take the
    /// configured names in order. On a problem (its `status()` is the
    /// `x-sidelight-status` to pass the request through with) the problem is counted, and
    /// logged the first time.
    pub fn map_columns(
        &self,
        rows: &mut sidelight_protocol::Rows,
    ) -> Result<(), columns::ColumnProblem> {
        if rows.positional {
            self.columns.positional(&rows.names);
        }
        match columns::map_columns(&self.configured, rows) {
            Ok(matched) => {
                self.columns.mapped(matched);
                Ok(())
            }
            Err(problem) => {
                if self.columns.unmapped(&problem) {
                    tracing::warn!(
                        route = %self.route, code = problem.code(),
                        "requests cannot be explained: {}", problem.describe()
                    );
                }
                if let Some(metrics) = self.metrics.get() {
                    metrics.unmapped(&self.route, problem.code());
                }
                Err(problem)
            }
        }
    }

    /// The names to write rows of the surrogate's `names` under when Sidelight asks the
    /// model itself (the probe check, distillation): the wire names of positional
    /// traffic, so the model gets its columns as clients send them, and the members
    /// besides the rows that clients send.
    pub fn wire(&self, names: &[String]) -> (Vec<String>, String) {
        let names = match self.columns.wire_names() {
            Some(wire) if names == self.configured && wire.len() == names.len() => wire,
            _ => names.to_vec(),
        };
        (names, self.columns.extras())
    }

    /// Why no surrogate explains yet, as `x-sidelight-status`: still warming up; past
    /// warm-up with too few distinct rows to judge one (`gate_waiting`); every version so
    /// far rejected by the gate (`gate_rejected`, with the figure it compared); or the
    /// first training under way (`training`).
    pub fn no_surrogate_status(&self) -> String {
        let (seen, needed) = self.warm_up();
        if seen < needed {
            // A route without configured features says how far its columns are agreed:
            // until they are, no row counts.
            let agreed = self.window.lock().ok().and_then(|w| {
                w.names
                    .is_empty()
                    .then(|| w.candidate.as_ref().map_or(0, |c| c.1))
            });
            return match agreed {
                Some(agreed) => format!(
                    "warming_up; rows={seen}/{needed}, columns_agreed={agreed}/{}",
                    self.config.limits.column_agreement
                ),
                None => format!("warming_up; rows={seen}/{needed}"),
            };
        }
        if self.waiting.lock().is_ok_and(|w| w.is_some()) {
            return format!("gate_waiting; rows={seen}");
        }
        let last = self.history.lock().ok().and_then(|h| h.last().cloned());
        match last {
            Some(v) if !v.accepted => {
                let judged = v.gate.as_ref().and_then(|g| g.r2_lower).unwrap_or(v.r2);
                format!(
                    "gate_rejected; version={}, r2={judged:.4}, min_r2={}",
                    v.version, self.config.surrogate.min_r2
                )
            }
            _ => format!("training; rows={seen}"),
        }
    }

    /// Rows needed before the first explanation, and rows seen so far.
    pub fn warm_up(&self) -> (u64, u64) {
        let seen = self.window.lock().map_or(0, |w| w.seen);
        (seen, self.config.surrogate.warm_up_rows as u64)
    }

    /// Adds a batch to the training window and wakes the trainer when it is due.
    ///
    /// What one request can do to the window is bounded: a row with more than
    /// `limits.max_features` columns is not trained on; text values are cut to
    /// `limits.max_cell_bytes`; the window keeps to `surrogate.window_bytes` as well as
    /// `window_rows`; and on a route without configured features the columns are fixed
    /// only once `limits.column_agreement` requests in a row agree on them.
    pub fn observe(
        &self,
        names: &[String],
        mut rows: Vec<Vec<Value>>,
        outputs: Vec<Vec<f64>>,
        subject: Option<&Arc<str>>,
    ) -> Result<(), Refused> {
        let limits = &self.config.limits;
        if names.len() > limits.max_features {
            return Err(Refused::TooManyFeatures);
        }
        for row in &mut rows {
            for value in row.iter_mut() {
                cut_text(value, limits.max_cell_bytes);
            }
        }
        let Ok(mut window) = self.window.lock() else {
            return Ok(());
        };
        if window.names.is_empty() {
            let agreed = match &mut window.candidate {
                Some((candidate, count)) if candidate.as_slice() == names => {
                    *count += 1;
                    *count
                }
                _ => {
                    window.candidate = Some((names.to_vec(), 1));
                    1
                }
            };
            if agreed < limits.column_agreement {
                return Err(Refused::ColumnsUnsettled);
            }
            window.names = names.to_vec();
            window.candidate = None;
        }
        let width = outputs.first().map_or(1, Vec::len);
        match window.width {
            None => window.width = Some(width),
            Some(w) if w != width => return Err(Refused::OutputWidth),
            Some(_) => {}
        }
        let order = column_order(&window.names, names);
        let capacity = self.config.surrogate.window_rows;
        let max_bytes = self.config.surrogate.window_bytes;
        if self.shared.load(Ordering::Relaxed) {
            self.queue_for_fleet(names, &rows, &outputs, width, subject);
        }
        for (row, output) in rows.into_iter().zip(outputs) {
            if output.len() != width || output.iter().any(|v| !v.is_finite()) {
                continue;
            }
            let row = reorder(&row, &order);
            let entry = WindowRow {
                row,
                output,
                subject: subject.cloned(),
            };
            window.bytes += entry.weight();
            window.rows.push_back(entry);
            while window.rows.len() > capacity
                || (window.bytes > max_bytes && window.rows.len() > 1)
            {
                if let Some(old) = window.rows.pop_front() {
                    window.bytes -= old.weight();
                }
            }
            window.seen += 1;
            window.since_training += 1;
        }
        let due = self.due_by_rows(&window);
        drop(window);
        if due {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Whether the window has enough new rows for a training: the first once warm-up is
    /// over; then every `retrain_every_rows`, or, while no surrogate is in service (every
    /// version so far rejected), every `min(retrain_every_rows, warm_up_rows)`: a
    /// rejected surrogate is not retried on the next request, but once there is enough
    /// new evidence to change the verdict.
    pub fn due_by_rows(&self, window: &Window) -> bool {
        let s = &self.config.surrogate;
        if window.seen < s.warm_up_rows as u64 {
            return false;
        }
        if window.retrain_now {
            return true;
        }
        let since = window.since_training;
        if self.model.load().is_none() {
            !window.tried || since >= s.retrain_every_rows.min(s.warm_up_rows) as u64
        } else {
            since >= s.retrain_every_rows as u64
        }
    }

    /// Adds synthetic rows the model answered (in `names` order, which must be the
    /// window's) made from rows of `subjects`; the oldest leave beyond `max_rows`.
    pub fn add_synthetic(&self, names: &[String], rows: Vec<Answered>) -> usize {
        let Ok(mut window) = self.window.lock() else {
            return 0;
        };
        if window.names != names {
            // The window's columns changed under the distiller; these rows are stale.
            return 0;
        }
        let width = window.width.unwrap_or(1);
        let capacity = self.config.distill.max_rows;
        let mut added = 0;
        for (row, output, origin) in rows {
            if output.len() != width || output.iter().any(|v| !v.is_finite()) {
                continue;
            }
            if window.synthetic.len() >= capacity {
                window.synthetic.pop_front();
            }
            window.synthetic.push_back(SyntheticRow {
                row,
                output,
                subjects: origin.subjects,
                sources: origin.keys,
            });
            added += 1;
        }
        window.synthetic_seen += added as u64;
        window.since_training += added as u64;
        let due = self.due_by_rows(&window);
        drop(window);
        if due {
            self.wake.notify_one();
        }
        added
    }

    /// Puts rows given with `names` into the surrogate's order (the column mapping is
    /// worked out once per batch).
    pub fn schema_order(
        &self,
        names: &[String],
        model: &LiveModel,
        rows: &[Vec<Value>],
    ) -> Vec<Vec<Value>> {
        let order = column_order(model.names(), names);
        rows.iter().map(|row| reorder(row, &order)).collect()
    }

    /// Up to `n` rows of the training window, spread evenly over it (oldest first), in
    /// the order of `names`: the probe check's background.
    pub fn background(&self, names: &[String], n: usize) -> Vec<Vec<Value>> {
        let Ok(window) = self.window.lock() else {
            return Vec::new();
        };
        let order = column_order(names, &window.names);
        let len = window.rows.len();
        let take = n.min(len);
        (0..take)
            .filter_map(|k| window.rows.get(k * len / take))
            .map(|w| reorder(&w.row, &order))
            .collect()
    }

    /// Removes a subject's rows from the training window, and takes the surrogate in
    /// service out of service if it was trained on any of them (it is also removed from
    /// the state directory). When either happened, the trainer is woken to train a
    /// surrogate without them at once (if the route is past warm-up).
    pub fn forget_subject(&self, subject: &str) -> Forgotten {
        let digest = self.keys.as_ref().map(|k| k.subject_digest(subject));
        if let Some(digest) = digest {
            self.note_erasure(digest);
        }
        let Ok(mut window) = self.window.lock() else {
            return Forgotten::default();
        };
        self.forget_pending(subject);
        let before = window.rows.len();
        window
            .rows
            .retain(|w| w.subject.as_deref() != Some(subject));
        let removed = before - window.rows.len();
        window.bytes = window.rows.iter().map(WindowRow::weight).sum();
        // Synthetic rows made from the subject's rows carry its values too.
        window
            .synthetic
            .retain(|s| !s.subjects.iter().any(|s| &**s == subject));
        drop(window);
        let retired = digest.and_then(|digest| {
            let serving = self.model.load_full()?;
            serving.provenance.saw(digest).then_some(())?;
            self.retire(&serving, "trained on rows of a subject erased since")
        });
        if let Some(monitor) = &self.monitor {
            // The drift reference is the training rows of the surrogate in service: it
            // held the subject's rows if that surrogate saw them, or (in a fleet, where
            // it is read from the shared table) may have.
            monitor.forget_subject(subject, retired.is_some() || self.is_shared());
        }
        let forgotten = Forgotten {
            rows: removed,
            retired,
        };
        if forgotten.retraining() {
            if let Ok(mut window) = self.window.lock() {
                window.retrain_now = true;
            }
            self.wake.notify_one();
        }
        forgotten
    }

    /// Counts an erasure, for trainings under way.
    fn note_erasure(&self, digest: u64) {
        let Ok(mut erasures) = self.erasures.lock() else {
            return;
        };
        erasures.epoch += 1;
        let epoch = erasures.epoch;
        erasures.recent.push_back((epoch, digest));
        while erasures.recent.len() > RECENT_ERASURES {
            if let Some((old, _)) = erasures.recent.pop_front() {
                erasures.dropped_upto = old;
            }
        }
    }

    /// The count of erasures so far: a training notes it when it copies its rows.
    pub fn erasure_epoch(&self) -> u64 {
        self.erasures.lock().map_or(0, |e| e.epoch)
    }

    /// Whether a subject whose rows a surrogate may have learnt from was erased after its
    /// rows were copied (it must not be put in service).
    pub fn erased_since(&self, provenance: &state::Provenance) -> bool {
        let Ok(erasures) = self.erasures.lock() else {
            return true;
        };
        if provenance.erasure_epoch < erasures.dropped_upto {
            return true;
        }
        erasures
            .recent
            .iter()
            .any(|&(epoch, digest)| epoch > provenance.erasure_epoch && provenance.saw(digest))
    }

    /// Takes `model` out of service (unless another has replaced it meanwhile), removes
    /// it from the state directory, and notes why in its history record. Returns its
    /// version if it was retired.
    pub fn retire(&self, model: &Arc<LiveModel>, why: &str) -> Option<u64> {
        let previous = self.model.compare_and_swap(&Some(model.clone()), None);
        let was_serving = previous.as_ref().is_some_and(|p| Arc::ptr_eq(p, model));
        if !was_serving {
            return None;
        }
        let version = model.version();
        if let Err(error) = state::remove(&self.surrogate_path()) {
            tracing::warn!(route = %self.route, %error, "cannot remove a retired surrogate from the state directory");
        }
        self.mark_retired(version, why);
        tracing::info!(route = %self.route, version, "surrogate retired: {why}");
        Some(version)
    }

    /// Notes in the history (and its file) why `version` left service.
    fn mark_retired(&self, version: u64, why: &str) {
        if let Ok(mut history) = self.history.lock() {
            match history.iter_mut().find(|r| r.version == version) {
                Some(record) => record.retired = Some(why.to_owned()),
                None => history.push(VersionRecord {
                    retired: Some(why.to_owned()),
                    ..seeded_record(version, "restored from the state directory")
                }),
            }
        }
        self.save_history();
    }

    /// Saves the version history to the state directory.
    pub fn save_history(&self) {
        let Ok(history) = self.history.lock() else {
            return;
        };
        let Ok(json) = serde_json::to_vec_pretty(&*history) else {
            return;
        };
        drop(history);
        if let Err(error) = state::write_private(&self.meta_path(), &json) {
            tracing::warn!(route = %self.route, %error, "cannot save the surrogate history");
        }
    }

    /// Saves a surrogate put in service, so that a restart finds it: with the subjects
    /// its rows came from, and the levels of personal features as pseudonyms. Without
    /// a key for those pseudonyms (no audit log) a surrogate that learnt such levels is
    /// not saved, and an older saved one is removed.
    pub fn persist(&self, model: &LiveModel) -> Result<(), state::StateError> {
        let path = self.surrogate_path();
        let already = model.pseudonymised();
        let (surrogate, pseudonymised) = match &self.keys {
            Some(keys) => state::pseudonymise(&model.surrogate, keys, &self.personal, &already)?,
            None => {
                let personal = state::personal_levels(&model.surrogate, &self.personal);
                if !personal.is_empty() {
                    tracing::warn!(
                        route = %self.route, features = ?personal,
                        "surrogate not saved: it learnt levels of personal features, which are saved only as pseudonyms keyed by the audit log's key (no audit log is configured); a restart warms up again"
                    );
                    return state::remove(&path);
                }
                (model.surrogate.clone(), already)
            }
        };
        let text = state::encode(
            &surrogate,
            model.version(),
            &model.provenance,
            &pseudonymised,
        )?;
        state::write_private(&path, text.as_bytes())
    }

    /// Drops a subject's rows not yet sent to the fleet's table.
    pub fn forget_pending(&self, subject: &str) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.retain(|p| p.subject.as_deref() != Some(subject));
        }
    }

    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.wake.notify_all();
        if let Some(monitor) = &self.monitor {
            monitor.stop();
        }
    }

    pub fn surrogate_path(&self) -> PathBuf {
        self.state_dir
            .join(format!("{}.surrogate.json", self.route))
    }

    pub fn meta_path(&self) -> PathBuf {
        self.state_dir.join(format!("{}.versions.json", self.route))
    }

    /// Whether a surrogate reads the configured features, in order (any, when none are
    /// configured): a surrogate of other columns would explain the wrong ones.
    fn check_schema(&self, surrogate: &Surrogate) -> Result<(), LiveError> {
        if self.configured.is_empty() {
            return Ok(());
        }
        let names: Vec<&str> = surrogate.schema().names().collect();
        if names.len() != self.configured.len() {
            return Err(LiveError::OtherFeatures(format!(
                "it reads {} features but the route configures {}",
                names.len(),
                self.configured.len()
            )));
        }
        if let Some((have, want)) = names
            .iter()
            .zip(&self.configured)
            .find(|(have, want)| **have != want.as_str())
        {
            return Err(LiveError::OtherFeatures(format!(
                "it reads `{have}` where the route configures `{want}` (features must be \
                 the same, in the same order)"
            )));
        }
        Ok(())
    }

    /// Loads the surrogate saved by an earlier run, or the configured seed model.
    /// A route without configured features takes its columns from a surrogate it
    /// starts with, rather than from the first requests.
    fn adopt_columns(&self, names: &[String]) {
        if let Ok(mut window) = self.window.lock() {
            if window.names.is_empty() {
                window.names = names.to_vec();
            }
        }
    }

    /// The saved surrogate, ready to serve; `None` when it must not serve: trained on
    /// rows of a subject erased since it was saved (it is retired: removed, and its
    /// history record says why), or the erasures cannot be checked (it is kept for the
    /// next start).
    fn read_saved(
        &self,
        path: &Path,
        history: &[VersionRecord],
        audit: Option<&crate::audit::AuditLog>,
    ) -> Result<Option<LiveModel>, LiveError> {
        let text = std::fs::read_to_string(path).map_err(|source| LiveError::Read {
            path: path.to_owned(),
            source,
        })?;
        let surrogate_error = |reason: String| LiveError::Surrogate {
            path: path.to_owned(),
            reason,
        };
        let saved = state::decode(&text).map_err(|e| surrogate_error(e.to_string()))?;
        // A config whose features changed since the surrogate was saved: the saved one
        // would read the wrong columns.
        self.check_schema(&saved.surrogate)?;
        let record = saved
            .version
            .and_then(|v| history.iter().find(|r| r.version == v))
            .or_else(|| history.iter().rev().find(|r| r.accepted))
            .cloned()
            .unwrap_or_else(|| seeded_record(1, "restored from the state directory"));
        let mut provenance = saved.provenance;
        if provenance.rows_taken_ms == 0 {
            // Saved by an earlier release: its rows were taken before the file was written.
            provenance.rows_taken_ms = std::fs::metadata(path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        }
        let keys = audit.map(crate::audit::AuditLog::keys);
        match (audit, &provenance.subjects) {
            (Some(audit), _) => {
                let since = provenance.rows_taken_ms.saturating_sub(CLOCK_SKEW_MS);
                let erased = match audit.erased_subjects_since(i64::try_from(since).unwrap_or(0)) {
                    Ok(erased) => erased,
                    Err(error) => {
                        tracing::warn!(route = %self.route, %error, "saved surrogate not restored: the audit log cannot say which subjects were erased since it was saved");
                        return Ok(None);
                    }
                };
                let keys = audit.keys();
                let hit = erased
                    .iter()
                    .any(|subject| provenance.saw(keys.subject_digest(subject)));
                if hit {
                    if let Err(error) = state::remove(path) {
                        tracing::warn!(route = %self.route, %error, "cannot remove a retired surrogate from the state directory");
                    }
                    let why =
                        "not restored: trained on rows of a subject erased since it was saved";
                    self.mark_retired(record.version, why);
                    tracing::info!(route = %self.route, version = record.version, "saved surrogate retired: {why}");
                    return Ok(None);
                }
            }
            // Saved without subjects, or by an earlier release: with no audit log there
            // is nothing a subject could have been erased through.
            (None, None) => {}
            (None, Some(subjects)) if subjects.is_empty() => {}
            (None, Some(_)) => {
                tracing::warn!(route = %self.route, "saved surrogate not restored: it was trained on rows of subjects that only the audit log (not configured now) can say were not erased since");
                return Ok(None);
            }
        }
        if !saved.pseudonymised.is_empty() && keys.is_none() {
            return Err(surrogate_error(
                "its personal levels are pseudonyms keyed by the audit log's key, and no audit log is configured".to_owned(),
            ));
        }
        // A file of an earlier release may hold personal levels in the clear: they are
        // replaced by pseudonyms now, on disk too.
        let before = saved.pseudonymised.len();
        let (surrogate, pseudonymised) = match keys {
            Some(keys) => {
                state::pseudonymise(&saved.surrogate, keys, &self.personal, &saved.pseudonymised)
                    .map_err(|e| surrogate_error(e.to_string()))?
            }
            None => (saved.surrogate, saved.pseudonymised),
        };
        let mask = keys.and_then(|k| state::LevelMask::new(k, &surrogate, &pseudonymised));
        let mut model = LiveModel::new(surrogate, record, &self.config, &[])?.with_mask(mask);
        model.provenance = provenance;
        if pseudonymised.len() > before || saved.version.is_none() {
            if let Err(error) = self.persist(&model) {
                tracing::warn!(route = %self.route, %error, "cannot save the restored surrogate in this release's form");
            }
        } else if keys.is_none()
            && !state::personal_levels(&model.surrogate, &self.personal).is_empty()
        {
            // Without a key its personal levels may not stay on disk in the clear.
            if let Err(error) = self.persist(&model) {
                tracing::warn!(route = %self.route, %error, "cannot remove the saved surrogate");
            }
        }
        Ok(Some(model))
    }

    fn restore(&self, audit: Option<&crate::audit::AuditLog>) -> Result<(), LiveError> {
        let history: Vec<VersionRecord> = std::fs::read_to_string(self.meta_path())
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        if let Ok(mut h) = self.history.lock() {
            *h = history.clone();
        }
        let next = history.iter().map(|r| r.version).max().unwrap_or(0) + 1;
        self.next_version.store(next.max(1), Ordering::Relaxed);
        let saved = self.surrogate_path();
        if saved.exists() {
            match self.read_saved(&saved, &history, audit) {
                Ok(Some(model)) => {
                    let version = model.version();
                    self.next_version
                        .store(next.max(version + 1), Ordering::Relaxed);
                    tracing::info!(route = %self.route, version, "surrogate restored");
                    self.adopt_columns(model.names());
                    self.model.store(Some(Arc::new(model)));
                    return Ok(());
                }
                Ok(None) => {}
                Err(error) => {
                    // A damaged state file must not keep the proxy from starting: warm up
                    // again and overwrite it with the next accepted surrogate.
                    tracing::warn!(route = %self.route, path = %saved.display(), %error, "ignoring the saved surrogate");
                }
            }
        }
        if let Some(seed) = &self.config.surrogate.seed_model {
            let surrogate = load_surrogate(seed)?;
            self.check_schema(&surrogate).map_err(|e| LiveError::Seed {
                path: seed.clone(),
                reason: e.to_string(),
            })?;
            let version = self.next_version.fetch_add(1, Ordering::Relaxed);
            let record = seeded_record(version, &format!("seeded from {}", seed.display()));
            let mut model = LiveModel::new(surrogate, record.clone(), &self.config, &[])?;
            // Trained by its operator elsewhere: no subject of this route's traffic.
            model.provenance = state::Provenance::no_subjects();
            self.adopt_columns(model.names());
            self.model.store(Some(Arc::new(model)));
            if let Ok(mut h) = self.history.lock() {
                h.push(record);
            }
        }
        Ok(())
    }
}

/// Why a route's live state could not be set up, or a surrogate not restored.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// The route has no `[routes.explain]`.
    #[error("the route has no [routes.explain]")]
    NotExplained,
    /// A key of the route's config cannot be used.
    #[error("{key}: {message}")]
    Config { key: String, message: String },
    /// A surrogate file cannot be read.
    #[error("cannot read surrogate {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A surrogate file is not a surrogate.
    #[error("surrogate {}: {reason}", path.display())]
    Surrogate { path: PathBuf, reason: String },
    /// A surrogate reads other features than the route configures.
    #[error("{0}")]
    OtherFeatures(String),
    /// `surrogate.seed_model` reads other features than the route configures.
    #[error("surrogate.seed_model {}: {reason}", path.display())]
    Seed { path: PathBuf, reason: String },
    /// The surrogate cannot be explained with.
    #[error(transparent)]
    Explain(#[from] model::ExplainError),
}

/// The route's features whose values are personal (see [`RouteLive::personal`]).
fn personal_features(route: &RouteConfig) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |name: &str| {
        if !out.iter().any(|n| n == name) {
            out.push(name.to_owned());
        }
    };
    for feature in route.explain.iter().flat_map(|e| e.features.iter()) {
        if feature.pii || feature.protected {
            add(&feature.name);
        }
    }
    for (name, rule) in &route.privacy.fields {
        if rule.trim() != "keep" {
            add(name);
        }
    }
    for protected in route.monitor.iter().flat_map(|m| m.protected.iter()) {
        add(&protected.feature);
    }
    out
}

pub fn seeded_record(version: u64, reason: &str) -> VersionRecord {
    VersionRecord {
        version,
        trained_at: 0,
        rows: 0,
        r2: f64::NAN,
        mae: f64::NAN,
        agreement: None,
        accepted: true,
        reason: reason.to_owned(),
        gate: None,
        faithfulness: None,
        retired: None,
    }
}

pub fn load_surrogate(path: &Path) -> Result<Surrogate, LiveError> {
    let text = std::fs::read_to_string(path).map_err(|source| LiveError::Read {
        path: path.to_owned(),
        source,
    })?;
    let reason = |reason: String| LiveError::Surrogate {
        path: path.to_owned(),
        reason,
    };
    // A file of `sidelight surrogate fit`, or a state file copied from `state.dir`.
    let saved = state::decode(&text).map_err(|e| reason(e.to_string()))?;
    if !saved.pseudonymised.is_empty() {
        return Err(reason(format!(
            "a saved state file whose levels of {} are keyed pseudonyms: only the \
             Sidelight that saved it can read live rows with it",
            saved.pseudonymised.join(", ")
        )));
    }
    Ok(saved.surrogate)
}

pub fn now_ms() -> u64 {
    u64::try_from(crate::clock::now_ms()).unwrap_or(0)
}

/// For each name in `target`, where it is in `source` (if at all).
pub fn column_order(target: &[String], source: &[String]) -> Vec<Option<usize>> {
    if target == source {
        return (0..target.len()).map(Some).collect();
    }
    // A map, not a search per name: a request with tens of thousands of columns must
    // cost linear time.
    let mut at: std::collections::HashMap<&str, usize> =
        std::collections::HashMap::with_capacity(source.len());
    for (i, name) in source.iter().enumerate().rev() {
        at.insert(name.as_str(), i);
    }
    target
        .iter()
        .map(|name| at.get(name.as_str()).copied())
        .collect()
}

pub fn reorder(row: &[Value], order: &[Option<usize>]) -> Vec<Value> {
    order
        .iter()
        .map(|i| {
            i.and_then(|i| row.get(i).cloned())
                .unwrap_or(Value::Missing)
        })
        .collect()
}

/// A read-only view of every route's surrogate, for the admin API and the demo.
#[derive(Clone, Debug, Default)]
pub struct SurrogateStatus {
    routes: Vec<Arc<RouteLive>>,
}

/// One route's surrogate, as [`SurrogateStatus::routes`] reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteSurrogate {
    /// The route's name.
    pub route: String,
    /// The version in service, if any.
    pub version: Option<u64>,
    /// Its R² on held-out traffic (NaN for a seeded surrogate).
    pub r2: Option<f64>,
    /// Rows seen, and rows needed before the first explanation.
    pub warm_up: (u64, u64),
}

impl SurrogateStatus {
    pub fn new(routes: Vec<Arc<RouteLive>>) -> Self {
        Self { routes }
    }

    /// The surrogate of every explained route.
    pub fn routes(&self) -> Vec<RouteSurrogate> {
        self.routes
            .iter()
            .map(|live| {
                let model = live.model.load();
                RouteSurrogate {
                    route: live.route.clone(),
                    version: model.as_ref().map(|m| m.version()),
                    r2: model.as_ref().map(|m| m.record.r2),
                    warm_up: live.warm_up(),
                }
            })
            .collect()
    }

    /// The schema inferred from `route`'s training window, as config TOML; `None` for
    /// a route without live explanations.
    pub fn schema_toml(&self, route: &str) -> Option<Result<String, SchemaInferError>> {
        let live = self.routes.iter().find(|l| l.route == route)?;
        let (names, rows) = match live.window.lock() {
            Ok(window) => (
                window.names.clone(),
                window
                    .rows
                    .iter()
                    .map(|w| w.row.clone())
                    .collect::<Vec<_>>(),
            ),
            Err(_) => return Some(Err(SchemaInferError::Empty)),
        };
        // A route that configures no features names unnamed columns `x0`, `x1`, … (or
        // after a v2 tensor); one that configures them has mapped them already.
        let positional = live.configured.is_empty() && live.columns.wire_names().is_some();
        Some(schema::to_toml(&names, &rows, positional, &live.personal))
    }

    /// Per route whose requests' columns could not be read as its features: what is
    /// wrong, for `/readyz` and the console.
    pub fn column_problems(&self) -> Vec<(String, String)> {
        self.routes
            .iter()
            .filter_map(|live| {
                let problem = live.columns.problem()?;
                Some((
                    live.route.clone(),
                    format!(
                        "{} ({} requests passed through unexplained)",
                        problem.describe(),
                        live.columns.unmapped_count()
                    ),
                ))
            })
            .collect()
    }

    /// The fairness and drift monitors of the routes that have one.
    pub fn monitors(&self) -> Vec<Arc<crate::monitor::RouteMonitor>> {
        self.routes
            .iter()
            .filter_map(|live| live.monitor.clone())
            .collect()
    }

    pub fn to_json(&self) -> serde_json::Value {
        let routes: Vec<serde_json::Value> = self
            .routes
            .iter()
            .map(|live| {
                let model = live.model.load();
                let (seen, needed) = live.warm_up();
                let history = live.history.lock().map(|h| h.clone()).unwrap_or_default();
                serde_json::json!({
                    "route": live.route,
                    // The history's copy: it gains the faithfulness figure once measured.
                    "in_service": model.as_ref().map(|m| {
                        history
                            .iter()
                            .find(|r| r.version == m.version())
                            .unwrap_or(&m.record)
                            .clone()
                    }),
                    "rows_seen": seen,
                    "warm_up_rows": needed,
                    "columns": live.columns.to_json(),
                    "waiting": live.waiting.lock().ok().and_then(|w| w.clone()),
                    "history": history,
                })
            })
            .collect();
        serde_json::json!({ "routes": routes })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn route(extra: &str) -> (tempfile::TempDir, Arc<RouteLive>) {
        let state = tempfile::tempdir().unwrap();
        let config: RouteConfig = toml::from_str(&format!(
            "name = \"m\"\npath_prefix = \"/m\"\n[explain]\nprotocol = \"kserve_v1\"\n{extra}"
        ))
        .unwrap();
        let live = RouteLive::new(
            &config,
            state.path(),
            Arc::new(sidelight_narrate::Narrator::builtin().unwrap()),
            Default::default(),
            None,
        )
        .unwrap();
        (state, live)
    }

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("f{i}")).collect()
    }

    fn seen(live: &RouteLive) -> u64 {
        live.window.lock().unwrap().seen
    }

    #[test]
    fn one_request_never_decides_the_columns_of_a_route_without_features() {
        let (_state, live) = route("limits = { column_agreement = 3, max_features = 100 }");
        let row = || vec![vec![Value::Number(1.0); 2]];
        // A request with more columns than allowed is not trained on at all.
        let wide = live.observe(
            &names(60_000),
            vec![vec![Value::Number(0.0); 60_000]],
            vec![vec![0.5]],
            None,
        );
        assert_eq!(wide, Err(Refused::TooManyFeatures));
        // An odd request between agreeing ones starts the count again.
        assert_eq!(
            live.observe(&names(2), row(), vec![vec![0.5]], None),
            Err(Refused::ColumnsUnsettled)
        );
        let odd = vec!["x".to_owned(), "y".to_owned()];
        assert_eq!(
            live.observe(&odd, row(), vec![vec![0.5]], None),
            Err(Refused::ColumnsUnsettled)
        );
        for expected in [
            Err(Refused::ColumnsUnsettled),
            Err(Refused::ColumnsUnsettled),
            Ok(()),
        ] {
            assert_eq!(
                live.observe(&names(2), row(), vec![vec![0.5]], None),
                expected
            );
        }
        assert_eq!(live.window.lock().unwrap().names, names(2));
        assert_eq!(seen(&live), 1);
        // From now on the odd names are read against the settled ones.
        live.observe(&odd, row(), vec![vec![0.5]], None).unwrap();
        assert_eq!(seen(&live), 2);
    }

    #[test]
    fn long_text_is_cut_and_the_window_keeps_to_its_bytes() {
        let (_state, live) = route(
            "limits = { max_cell_bytes = 10, column_agreement = 1 }\n\
             surrogate = { window_rows = 1000, window_bytes = 5000 }",
        );
        let names = vec!["note".to_owned()];
        for _ in 0..100 {
            let huge = "é".repeat(450_000);
            live.observe(&names, vec![vec![Value::Text(huge)]], vec![vec![0.5]], None)
                .unwrap();
        }
        let window = live.window.lock().unwrap();
        assert_eq!(window.rows[0].row[0], Value::Text("é".repeat(5)));
        assert!(window.bytes <= 5000, "{}", window.bytes);
        assert!(window.rows.len() < 100);
        assert_eq!(
            window.bytes,
            window.rows.iter().map(WindowRow::weight).sum::<usize>()
        );
    }

    /// A route with an audit log (whose keys make subjects' digests), and a surrogate
    /// fitted on a few rows with the given provenance.
    fn audited() -> (
        tempfile::TempDir,
        Arc<crate::audit::AuditLog>,
        Arc<RouteLive>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("key"), "11".repeat(32)).unwrap();
        let config = sidelight_config::Config::from_toml_str(&format!(
            "[upstream]\nurl = \"http://127.0.0.1:9\"\n[audit]\npath = \"{d}/audit.db\"\n\
             key_file = \"{d}/key\"\n[[routes]]\nname = \"m\"\npath_prefix = \"/m\"\n\
             [routes.explain]\nprotocol = \"kserve_v1\"\n",
            d = dir.path().display()
        ))
        .unwrap();
        let mut registry = prometheus_client::registry::Registry::default();
        let audit =
            crate::audit::AuditLog::open(config.audit.as_ref().unwrap(), "model", &mut registry)
                .unwrap();
        let live = RouteLive::new(
            &config.routes[0],
            dir.path(),
            Arc::new(sidelight_narrate::Narrator::builtin().unwrap()),
            Default::default(),
            Some(&audit),
        )
        .unwrap();
        (dir, audit, live)
    }

    fn model(live: &RouteLive, version: u64, subjects: &[&str]) -> Arc<LiveModel> {
        use linfa::ParamGuard;
        let schema = sidelight_explain::Schema::new(vec![sidelight_explain::Feature::new(
            "x",
            sidelight_explain::FeatureKind::Numeric,
        )])
        .unwrap();
        let rows: Vec<Vec<Value>> = (0..40).map(|i| vec![Value::Number(f64::from(i))]).collect();
        let outputs: Vec<f64> = (0..40).map(f64::from).collect();
        let params = sidelight_explain::GbtParams::default()
            .n_trees(5)
            .check()
            .unwrap();
        let surrogate = Surrogate::fit(
            schema,
            &rows,
            &outputs,
            sidelight_explain::OutputKind::Regression,
            &params,
        )
        .unwrap();
        let mut model = LiveModel::new(
            surrogate,
            seeded_record(version, "test"),
            &live.config,
            &rows,
        )
        .unwrap();
        let keys = live.keys.as_ref().unwrap();
        model.provenance = state::Provenance {
            subjects: Some(Arc::new(
                subjects.iter().map(|s| keys.subject_digest(s)).collect(),
            )),
            rows_taken_ms: now_ms(),
            erasure_epoch: live.erasure_epoch(),
        };
        Arc::new(model)
    }

    #[test]
    fn erasing_a_subject_retires_only_surrogates_that_learnt_from_it() {
        let (_dir, _audit, live) = audited();
        let serving = model(&live, 1, &["ps_a", "ps_b"]);
        live.persist(&serving).unwrap();
        live.model.store(Some(serving));
        assert!(live.surrogate_path().exists());

        assert_eq!(live.forget_subject("ps_z").retired, None);
        assert!(live.model.load().is_some());
        let forgotten = live.forget_subject("ps_b");
        assert_eq!(forgotten.retired, Some(1));
        assert!(forgotten.retraining());
        assert!(live.model.load().is_none());
        assert!(!live.surrogate_path().exists(), "the saved copy stays");
        assert!(live.window.lock().unwrap().retrain_now);

        // Trained while an erasure happened: a surrogate that saw the subject must not
        // serve; one that did not may.
        let (saw, did_not) = (model(&live, 2, &["ps_c"]), model(&live, 3, &["ps_d"]));
        live.forget_subject("ps_c");
        assert!(live.erased_since(&saw.provenance));
        assert!(!live.erased_since(&did_not.provenance));
        // A surrogate whose subjects are not known (an earlier release's) may have seen
        // anyone: any later erasure counts.
        let unknown = state::Provenance {
            erasure_epoch: live.erasure_epoch(),
            ..state::Provenance::default()
        };
        assert!(!live.erased_since(&unknown));
        live.forget_subject("ps_e");
        assert!(live.erased_since(&unknown));
    }

    /// A saved surrogate of an earlier release, with an e-mail feature's levels in the
    /// clear, in `dir` of a route that marks the feature `pii`; the route, opened with
    /// or without an audit log.
    fn legacy(audited: bool) -> (tempfile::TempDir, Surrogate, Arc<RouteLive>) {
        use linfa::ParamGuard;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("key"), "11".repeat(32)).unwrap();
        let audit = if audited {
            format!(
                "[audit]\npath = \"{d}/audit.db\"\nkey_file = \"{d}/key\"\n",
                d = dir.path().display()
            )
        } else {
            String::new()
        };
        let config = sidelight_config::Config::from_toml_str(&format!(
            "[upstream]\nurl = \"http://127.0.0.1:9\"\n{audit}[[routes]]\nname = \"m\"\n\
             path_prefix = \"/m\"\n[routes.explain]\nprotocol = \"kserve_v1\"\n\
             [[routes.explain.features]]\nname = \"email\"\nkind = \"categorical\"\npii = true\n\
             [[routes.explain.features]]\nname = \"x\"\nkind = \"numeric\"\n"
        ))
        .unwrap();
        let schema = sidelight_explain::Schema::new(vec![
            sidelight_explain::Feature::new("email", sidelight_explain::FeatureKind::Categorical),
            sidelight_explain::Feature::new("x", sidelight_explain::FeatureKind::Numeric),
        ])
        .unwrap();
        let rows: Vec<Vec<Value>> = (0..60)
            .map(|i| {
                vec![
                    Value::Text(format!("p{}@example.org", i % 5)),
                    Value::Number(f64::from(i)),
                ]
            })
            .collect();
        let outputs: Vec<f64> = (0..60)
            .map(|i| f64::from(i % 5) + f64::from(i) / 60.0)
            .collect();
        let params = sidelight_explain::GbtParams::default()
            .n_trees(10)
            .check()
            .unwrap();
        let surrogate = Surrogate::fit(
            schema,
            &rows,
            &outputs,
            sidelight_explain::OutputKind::Regression,
            &params,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("m.surrogate.json"),
            surrogate.to_json().unwrap(),
        )
        .unwrap();
        let mut registry = prometheus_client::registry::Registry::default();
        let audit = config
            .audit
            .as_ref()
            .map(|a| crate::audit::AuditLog::open(a, "model", &mut registry).unwrap());
        let live = RouteLive::new(
            &config.routes[0],
            dir.path(),
            Arc::new(sidelight_narrate::Narrator::builtin().unwrap()),
            Default::default(),
            audit.as_deref(),
        )
        .unwrap();
        (dir, surrogate, live)
    }

    #[test]
    fn a_saved_surrogate_of_an_earlier_release_loses_its_personal_levels_from_disk() {
        // With an audit log: rewritten with the levels as pseudonyms, privately, and it
        // still reads a live row's e-mail address as before.
        let (_dir, raw, live) = legacy(true);
        let text = std::fs::read_to_string(live.surrogate_path()).unwrap();
        assert!(
            text.contains(state::FORMAT) && text.contains("\"lv_"),
            "{text}"
        );
        assert!(!text.contains("example.org"), "{text}");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(live.surrogate_path())
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let served = live.model.load_full().unwrap();
        let plain = LiveModel::new(raw, served.record.clone(), &live.config, &[]).unwrap();
        for i in 0..5 {
            let row = vec![Value::Text(format!("p{i}@example.org")), Value::Number(3.0)];
            assert_eq!(served.out_of_distribution(&row), None);
            assert_eq!(
                served.contributions(&row, 0).unwrap(),
                plain.contributions(&row, 0).unwrap()
            );
        }

        // Without an audit log there is no key: it serves, and leaves the disk.
        let (_dir, _raw, live) = legacy(false);
        assert!(live.model.load().is_some());
        assert!(!live.surrogate_path().exists());
    }

    #[test]
    fn columns_are_matched_in_linear_time_with_the_first_occurrence_winning() {
        let source: Vec<String> = ["b", "a", "b"].map(str::to_owned).to_vec();
        let target: Vec<String> = ["a", "b", "c"].map(str::to_owned).to_vec();
        assert_eq!(column_order(&target, &source), [Some(1), Some(0), None]);
    }
}
