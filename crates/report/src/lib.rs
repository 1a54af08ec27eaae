//! `sidelight-report`: the audit report of a period (`sidelight report`, `GET /api/v1/report`): what the
//! system was, what its models relied on, whether protected groups were treated alike,
//! whether the traffic moved, under which consent, what reviewers decided, what was
//! erased, and whether the audit log is intact.
//!
//! Everything is read back from the audit store (and the config, for routes, protected
//! attributes and decision thresholds), so a report can be written for any past period
//! and by a process other than the proxy. The statistics are `sidelight-monitor`'s.
//!
//! What a report must never hold: a payload value or a subject identifier. It carries
//! counts, rates, means and test statistics only; drift is summarised per feature
//! without its levels or bin edges, and erasure actions without the subject they erased.
//! What this crate must never do: start an async runtime or serve HTTP (the proxy's
//! admin API serves `GET /api/v1/report` by calling [`build`]), or write to the store.

pub mod chart;
pub mod explained;
pub mod export;
mod html;
mod markdown;
mod verification;
pub mod workbench;

mod definitions;
mod duties;

pub use definitions::{DEFINITIONS, DEFINITIONS_LINK, Definition, OUTCOME_ROWS};
pub use duties::{Duty, DutySection, DutyStatus};

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value as Json;
use sidelight_audit::{AuditStore, Keys, RecordQuery, StoreError, Stored, rfc3339_ms};
use sidelight_monitor::{
    AttributionSummary, CategoricalReference, Decision, DriftConfig, FairnessConfig,
    FairnessReport, NumericReference, ProtectedAttribute,
};

use sidelight_config::{Config, ProtectedConfig, RouteConfig};

pub use html::render as render_html;
pub use markdown::render as render_markdown;

/// Records read per page.
const PAGE: usize = 500;

/// Why a report could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The audit store failed.
    #[error("reading the audit log: {0}")]
    Store(#[from] StoreError),
    /// The period is empty or reversed.
    #[error("{0}")]
    Period(String),
}

/// A span of time, `[from_ms, to_ms)` in unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    /// Inclusive start.
    pub from_ms: i64,
    /// Exclusive end.
    pub to_ms: i64,
}

impl Period {
    /// A period; `Err` names the fault when `to` is not after `from`.
    pub fn new(from_ms: i64, to_ms: i64) -> Result<Self, ReportError> {
        if to_ms <= from_ms {
            return Err(ReportError::Period(format!(
                "the period must end after it starts (from {} to {})",
                rfc3339_ms(from_ms),
                rfc3339_ms(to_ms)
            )));
        }
        Ok(Self { from_ms, to_ms })
    }

    /// The period of the same length just before this one: drift's default reference.
    pub fn before(&self) -> Self {
        let len = self.to_ms - self.from_ms;
        Self {
            from_ms: self.from_ms.saturating_sub(len),
            to_ms: self.from_ms,
        }
    }

    fn json(&self) -> PeriodJson {
        PeriodJson {
            from: rfc3339_ms(self.from_ms),
            to: rfc3339_ms(self.to_ms),
            from_ms: self.from_ms,
            to_ms: self.to_ms,
        }
    }
}

/// The surrogate a running proxy has in service for a route.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InService {
    pub route: String,
    pub version: Option<u64>,
    /// Held-out R²; `None` when unknown or not finite (a seeded surrogate).
    pub r2: Option<f64>,
}

/// What a report is built from besides the store.
#[derive(Debug, Clone, Copy)]
pub struct ReportInput<'a> {
    /// Routes, protected attributes, decision thresholds.
    pub config: &'a Config,
    /// The audit keys: the checkpoint key for verification, and the pseudonym key to
    /// recognise the configured groups of a pseudonymised protected feature.
    pub keys: &'a Keys,
    pub period: Period,
    /// Drift's reference; `None`: the period of the same length just before.
    pub reference: Option<Period>,
    /// When built by a running proxy: its surrogates in service.
    pub in_service: Option<&'a [InService]>,
    /// Now, unix milliseconds.
    pub generated_at_ms: i64,
}

/// Which part of the work a progress report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Reading the period's records.
    Period,
    /// Reading the reference period's records.
    Reference,
    /// Verifying the whole audit log.
    Verify,
}

/// How far the build is: `done` records of about `total` (an estimate from the chain's
/// positions; 0 when unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub stage: Stage,
    pub done: u64,
    pub total: u64,
}

/// The audit report; its JSON is the `json` format.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub period: PeriodJson,
    pub generated_at: String,
    pub sidelight_version: &'static str,
    /// `proxy` (a running proxy, which knows its surrogates in service) or `audit_log`
    /// (the command line, from the records and the config alone).
    pub built_by: &'static str,
    pub system: SystemSection,
    pub importance: ImportanceSection,
    pub fairness: FairnessSection,
    pub drift: DriftSection,
    pub consent: ConsentSection,
    pub reviews: ReviewSection,
    pub erasures: ErasureSection,
    pub verification: VerificationSection,
    /// Each duty, the articles it answers, and what this deployment does about it.
    pub duties: DutySection,
    /// What each figure means: its formula and interval.
    pub definitions: &'static [Definition],
}

#[derive(Debug, Clone, Serialize)]
pub struct PeriodJson {
    pub from: String,
    pub to: String,
    pub from_ms: i64,
    pub to_ms: i64,
}

/// 1: the system.
#[derive(Debug, Clone, Serialize)]
pub struct SystemSection {
    /// Predictions recorded in the period.
    pub records: u64,
    /// Other audit events in the period (admin actions, reviews, outcomes, alerts).
    pub events: u64,
    pub routes: Vec<SystemRoute>,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SystemRoute {
    pub route: String,
    /// Whether the route is in the config (else it is known from its records only).
    pub configured: bool,
    pub path_prefix: Option<String>,
    /// Whether the route explains its predictions (`[routes.explain]`).
    pub explained: bool,
    /// The model identities recorded.
    pub models: Vec<String>,
    pub records: u64,
    /// Surrogate versions that explained predictions in the period.
    pub surrogate_versions: Vec<u64>,
    /// The surrogate in service now (only when built by a running proxy).
    pub in_service: Option<InService>,
}

/// 2: global feature importance.
#[derive(Debug, Clone, Serialize)]
pub struct ImportanceSection {
    pub routes: Vec<RouteImportance>,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RouteImportance {
    pub route: String,
    /// Mean |SHAP| per feature (most important first) and the protected share.
    pub summary: AttributionSummary,
    /// Explained rows left out because their features differ from the route's first.
    pub rows_skipped: u64,
    /// Records without stored attributions (not explained, consent `none`, erased).
    pub records_without_attributions: u64,
}

/// 3: fairness and alerts.
#[derive(Debug, Clone, Serialize)]
pub struct FairnessSection {
    pub routes: Vec<RouteFairness>,
    pub alerts: Vec<AlertEntry>,
    pub note: Option<String>,
    pub alerts_note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RouteFairness {
    pub route: String,
    /// Explained rows the figures are computed over.
    pub rows: u64,
    /// Outcomes received (one per record with a reported outcome, the latest), whatever
    /// the number of rows they apply to.
    pub outcomes_received: u64,
    /// Rows with a usable reported outcome (equal opportunity, average odds).
    pub rows_with_outcome: u64,
    /// Received outcomes with a value that could not be read as favourable or not,
    /// counted once per outcome received, not per row it applies to.
    pub unusable_outcomes: u64,
    pub attributes: Vec<FairnessReport>,
    /// A ranking route's exposure per protected attribute: each item group's share of
    /// the shown slots per customer group (from the recorded shown items, in rank
    /// order), compared as the statistical parity difference is.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exposure: Vec<RouteExposure>,
    pub note: Option<String>,
}

/// Exposure of one protected attribute's customer groups on a ranking route.
#[derive(Debug, Clone, Serialize)]
pub struct RouteExposure {
    pub attribute: String,
    pub item_feature: String,
    pub rankings: u64,
    #[serde(flatten)]
    pub check: sidelight_monitor::exposure::ExposureCheck,
}

/// An alert the monitor raised or resolved in the period (an `_alert` event).
#[derive(Debug, Clone, Serialize)]
pub struct AlertEntry {
    pub at: String,
    pub route: String,
    pub check: String,
    /// What the check is about: `attribute=group`, a feature, or nothing.
    pub subject: String,
    pub state: String,
    pub value: Option<f64>,
    pub bound: Option<f64>,
    pub message: String,
}

/// 4: drift.
#[derive(Debug, Clone, Serialize)]
pub struct DriftSection {
    pub reference: PeriodJson,
    /// Whether the reference was chosen (else: the period just before).
    pub reference_chosen: bool,
    pub routes: Vec<RouteDrift>,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RouteDrift {
    pub route: String,
    pub rows: u64,
    pub reference_rows: u64,
    pub features: Vec<DriftRow>,
    /// Of the model's output (the explained one, else the first).
    pub prediction: Option<DriftRow>,
    pub note: Option<String>,
}

/// One feature's drift, summarised: no level, no bin edge.
#[derive(Debug, Clone, Serialize)]
pub struct DriftRow {
    pub feature: String,
    /// `numeric` or `categorical`.
    pub kind: &'static str,
    pub psi: Option<f64>,
    /// Kolmogorov–Smirnov (numeric).
    pub ks_statistic: Option<f64>,
    pub ks_p_value: Option<f64>,
    /// χ² homogeneity (categorical).
    pub chi_square: Option<f64>,
    pub chi_square_p_value: Option<f64>,
    pub missing: u64,
    pub reference_missing: u64,
}

/// 5: consent and opt-out.
#[derive(Debug, Clone, Serialize)]
pub struct ConsentSection {
    pub routes: Vec<ConsentCounts>,
    pub total: ConsentCounts,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ConsentCounts {
    pub route: String,
    pub full: u64,
    pub explain_only: u64,
    /// Opted out: nothing identifying stored, not explained to the record, not trained on.
    pub none: u64,
    pub total: u64,
}

/// 6: reviews and overrides.
#[derive(Debug, Clone, Serialize)]
pub struct ReviewSection {
    /// Predictions of the period sent to review.
    pub flagged: u64,
    /// By the rule that sent them (a record may have several).
    pub by_reason: BTreeMap<String, u64>,
    /// Decisions taken in the period, by decision.
    pub decisions: BTreeMap<String, u64>,
    /// Decisions in the period that replaced the model's outcome.
    pub overrides: u64,
    /// Flagged predictions of the period with no decision before its end.
    pub pending_at_end: u64,
    /// Outcomes reported in the period (`POST /v1/feedback`).
    pub outcomes_reported: u64,
    /// Customers' contests made in the period and their decisions so far.
    pub contests: sidelight_audit::ContestTally,
    pub note: Option<String>,
}

/// 7: erasures.
#[derive(Debug, Clone, Serialize)]
pub struct ErasureSection {
    /// Predictions of the period whose contents are erased, by reason.
    pub erased_records: BTreeMap<String, u64>,
    /// Subject erasures requested through the admin API in the period.
    pub actions: Vec<ErasureAction>,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ErasureAction {
    pub at: String,
    /// The admin token's name.
    pub actor: String,
    pub erased_records: Option<u64>,
}

/// 8: verification of the whole audit log.
#[derive(Debug, Clone, Serialize)]
pub struct VerificationSection {
    pub ok: bool,
    pub records: u64,
    pub checkpoints: u64,
    pub erased: u64,
    /// Authenticated erasures that wrote the tombstones (every tombstone is bound to one).
    pub erasures: u64,
    /// Records whose review state lags the latest review decision chained for them.
    pub reviews_not_applied: u64,
    pub last_seq: u64,
    pub last_hash: Option<String>,
    /// Records a running proxy appended while the log was verified: covered by an
    /// authenticated checkpoint, and verified in full by the next report.
    pub appended_while_verifying: u64,
    /// Why it failed: the first broken record, or a key that does not fit.
    pub error: Option<String>,
    /// Each writer's chain, when the log is intact (a SQLite log has one, named `""`;
    /// a PostgreSQL log one per replica). `last_seq` and `last_hash` above are those of
    /// the writer listed last.
    pub writers: Vec<WriterVerification>,
}

/// One writer's chain in the verification.
#[derive(Debug, Clone, Serialize)]
pub struct WriterVerification {
    pub writer: String,
    pub records: u64,
    pub checkpoints: u64,
    pub erased: u64,
    pub last_seq: u64,
    pub last_hash: String,
    /// Records this writer appended while the log was verified, covered by one of its
    /// authenticated checkpoints.
    pub appended_while_verifying: u64,
}

/// One explained or recorded row, as the statistics need it.
struct Row {
    values: Vec<Json>,
    prediction: Option<f64>,
    favourable: Option<bool>,
    outcome: Option<bool>,
}

#[derive(Default)]
struct RouteAcc {
    records: u64,
    models: BTreeSet<String>,
    versions: BTreeSet<u64>,
    consent: ConsentCounts,
    names: Option<Vec<String>>,
    importance_names: Option<Vec<String>>,
    importance: Vec<Vec<f64>>,
    importance_skipped: u64,
    without_attributions: u64,
    rows: Vec<Row>,
    /// Each record's rows in `rows` (a ranking's shown items, in rank order).
    records_rows: Vec<std::ops::Range<usize>>,
    outcomes: u64,
    outcomes_received: u64,
    unusable_outcomes: u64,
}

#[derive(Default)]
struct Acc {
    routes: BTreeMap<String, RouteAcc>,
    events: u64,
    alerts: Vec<AlertEntry>,
    flagged: u64,
    by_reason: BTreeMap<String, u64>,
    decisions: BTreeMap<String, u64>,
    overrides: u64,
    pending_at_end: u64,
    outcomes_reported: u64,
    erased: BTreeMap<String, u64>,
    erasure_actions: Vec<ErasureAction>,
    contests: sidelight_audit::ContestTally,
    access_requests: u64,
}

/// Builds the report of `input.period` from `store`, calling `progress` as it reads.
pub fn build<S: AuditStore>(
    store: S,
    input: &ReportInput<'_>,
    progress: &mut dyn FnMut(Progress),
) -> Result<Report, ReportError> {
    let period = Period::new(input.period.from_ms, input.period.to_ms)?;
    let reference = match input.reference {
        Some(r) => Period::new(r.from_ms, r.to_ms)?,
        None => period.before(),
    };
    let last_seq = estimated_records(&store)?;
    let mut acc = Acc::default();
    read(
        &store,
        &period,
        last_seq,
        Stage::Period,
        progress,
        |stored| acc.add(&store, input, &period, stored),
    )?;
    let mut reference_acc: BTreeMap<String, RouteAcc> = BTreeMap::new();
    read(
        &store,
        &reference,
        last_seq,
        Stage::Reference,
        progress,
        |stored| {
            let record = &stored.record;
            if !record.route.starts_with('_') {
                let route = reference_acc.entry(record.route.clone()).or_default();
                route.records += 1;
                route.add_rows(input, record, None);
            }
            Ok(())
        },
    )?;
    progress(Progress {
        stage: Stage::Verify,
        done: 0,
        total: last_seq,
    });
    let verification = verification::verify(store, input.keys);
    progress(Progress {
        stage: Stage::Verify,
        done: last_seq,
        total: last_seq,
    });
    Ok(acc.finish(input, period, reference, &reference_acc, verification))
}

/// About how many records the log holds: the sum of every writer's last checkpoint.
/// A PostgreSQL log numbers its records across writers, so this is also about the
/// highest position a record has.
fn estimated_records<S: AuditStore + ?Sized>(store: &S) -> Result<u64, StoreError> {
    let mut total = 0u64;
    for writer in store.writers()? {
        let last = store
            .writer_checkpoints(&writer)?
            .last()
            .map_or(0, |c| c.seq);
        total = total.saturating_add(last);
    }
    Ok(total)
}

/// Reads every record of `period`, a page at a time.
fn read<S: AuditStore + ?Sized>(
    store: &S,
    period: &Period,
    last_seq: u64,
    stage: Stage,
    progress: &mut dyn FnMut(Progress),
    mut each: impl FnMut(&Stored) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut after = None;
    let mut done = 0u64;
    let mut first_seq = None;
    loop {
        let page = store.query(&RecordQuery {
            from_ms: Some(period.from_ms),
            to_ms: Some(period.to_ms),
            limit: PAGE,
            after,
            ..RecordQuery::default()
        })?;
        for stored in &page.records {
            first_seq.get_or_insert(stored.seq);
            each(stored)?;
        }
        done += page.records.len() as u64;
        // Records are in the chain in about time order: the period's span of seqs up to
        // the last checkpoint is a fair estimate of how many are left.
        let total = first_seq
            .map_or(0, |f| last_seq.saturating_sub(f) + 1)
            .max(done);
        match page.next {
            Some(next) => {
                progress(Progress { stage, done, total });
                after = Some(next);
            }
            None => {
                progress(Progress {
                    stage,
                    done,
                    total: done,
                });
                return Ok(());
            }
        }
    }
}

fn route_config<'a>(config: &'a Config, route: &str) -> Option<&'a RouteConfig> {
    config.routes.iter().find(|r| r.name == route)
}

fn event(stored: &Stored) -> Option<Json> {
    serde_json::from_slice(stored.record.request.as_deref()?).ok()
}

fn text(v: &Json) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

impl Acc {
    fn add<S: AuditStore + ?Sized>(
        &mut self,
        store: &S,
        input: &ReportInput<'_>,
        period: &Period,
        stored: &Stored,
    ) -> Result<(), StoreError> {
        let record = &stored.record;
        if record.route.starts_with('_') {
            self.events += 1;
            let Some(e) = event(stored) else {
                // Erased by retention, or not JSON: nothing to read.
                return Ok(());
            };
            match record.route.as_str() {
                "_alert" => self.alerts.push(AlertEntry {
                    at: e["at"]
                        .as_i64()
                        .map_or_else(|| rfc3339_ms(record.time_ms), rfc3339_ms),
                    route: text(&e["route"]),
                    check: text(&e["check"]),
                    subject: text(&e["subject"]),
                    state: text(&e["state"]),
                    value: e["value"].as_f64(),
                    bound: e["bound"].as_f64(),
                    message: text(&e["message"]),
                }),
                "_admin" if e["action"] == "erasure" => {
                    self.erasure_actions.push(ErasureAction {
                        at: rfc3339_ms(record.time_ms),
                        actor: text(&e["actor"]),
                        erased_records: e["detail"]["erased_records"].as_u64(),
                    });
                }
                "_admin" if e["action"] == "subject_access" => self.access_requests += 1,
                "_review" => {
                    if let Ok(review) = serde_json::from_value::<sidelight_audit::Review>(e.clone())
                    {
                        self.contests.add(&review);
                    }
                    let decision = text(&e["decision"]);
                    // A customer's contest is counted with the contests, not as a
                    // reviewer's decision.
                    if decision == sidelight_audit::CONTEST {
                        return Ok(());
                    }
                    if decision == "override" {
                        self.overrides += 1;
                    }
                    *self.decisions.entry(decision).or_default() += 1;
                }
                "_feedback" => self.outcomes_reported += 1,
                _ => {}
            }
            return Ok(());
        }
        let route = self.routes.entry(record.route.clone()).or_default();
        route.records += 1;
        route.models.insert(record.model.clone());
        route.versions.extend(record.surrogate_version);
        match record.consent {
            sidelight_audit::Consent::Full => route.consent.full += 1,
            sidelight_audit::Consent::ExplainOnly => route.consent.explain_only += 1,
            sidelight_audit::Consent::None => route.consent.none += 1,
        }
        if let Some(reason) = &record.erased_reason {
            *self.erased.entry(reason.clone()).or_default() += 1;
        } else if record.erased_at.is_some() {
            *self.erased.entry("unknown".to_owned()).or_default() += 1;
        }
        if !record.review_reasons.is_empty() || record.review_state != "none" {
            self.flagged += 1;
            for reason in &record.review_reasons {
                *self.by_reason.entry(reason.clone()).or_default() += 1;
            }
            let decided = store
                .reviews(&record.id)?
                .iter()
                .any(|r| r.time_ms < period.to_ms);
            if !decided {
                self.pending_at_end += 1;
            }
        }
        // Outcomes are joined only where fairness is computed.
        let protected = route_config(input.config, &record.route)
            .and_then(|r| r.monitor.as_ref())
            .is_some_and(|m| !m.protected.is_empty());
        let outcome = if protected && record.attributions.is_some() {
            store.feedback(&record.id)?.pop().map(|f| f.outcome)
        } else {
            None
        };
        route.add_rows(input, record, outcome.as_ref());
        Ok(())
    }

    fn finish(
        self,
        input: &ReportInput<'_>,
        period: Period,
        reference: Period,
        reference_acc: &BTreeMap<String, RouteAcc>,
        verification: VerificationSection,
    ) -> Report {
        let config = input.config;
        let mut names: Vec<String> = config.routes.iter().map(|r| r.name.clone()).collect();
        for name in self.routes.keys() {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        let empty = RouteAcc::default();
        let acc_of = |name: &str| self.routes.get(name).unwrap_or(&empty);
        let records: u64 = self.routes.values().map(|r| r.records).sum();

        let system = SystemSection {
            records,
            events: self.events,
            routes: names
                .iter()
                .map(|name| {
                    let rc = route_config(config, name);
                    let a = acc_of(name);
                    SystemRoute {
                        route: name.clone(),
                        configured: rc.is_some(),
                        path_prefix: rc.map(|r| r.path_prefix.clone()),
                        explained: rc.is_some_and(|r| r.explain.is_some()),
                        models: a.models.iter().cloned().collect(),
                        records: a.records,
                        surrogate_versions: a.versions.iter().copied().collect(),
                        in_service: input
                            .in_service
                            .and_then(|s| s.iter().find(|s| s.route == *name).cloned()),
                    }
                })
                .collect(),
            note: match (names.is_empty(), input.in_service.is_some()) {
                (true, _) => Some("no route is configured and no prediction was recorded".to_owned()),
                (false, false) => Some(
                    "built from the audit log: the surrogate in service and its fidelity are known only to a running proxy (GET /api/v1/report)".to_owned(),
                ),
                (false, true) => None,
            },
        };

        let importance = {
            let routes: Vec<RouteImportance> = names
                .iter()
                .filter_map(|name| importance(config, name, acc_of(name)))
                .collect();
            let note = routes.is_empty().then(|| {
                "no explained prediction with stored attributions in the period".to_owned()
            });
            ImportanceSection { routes, note }
        };

        let fairness = {
            let routes: Vec<RouteFairness> = names
                .iter()
                .filter(|n| route_config(config, n).is_some_and(|r| r.explain.is_some()))
                .map(|name| fairness(config, input.keys, name, acc_of(name)))
                .collect();
            let note = routes.is_empty().then(|| {
                "no explained route: fairness is computed over explained predictions".to_owned()
            });
            let alerts_note = self
                .alerts
                .is_empty()
                .then(|| "no alert was raised or resolved in the period".to_owned());
            FairnessSection {
                routes,
                alerts: self.alerts,
                note,
                alerts_note,
            }
        };

        let drift = {
            let routes: Vec<RouteDrift> = names
                .iter()
                .filter(|n| {
                    acc_of(n).names.is_some()
                        || reference_acc.get(*n).is_some_and(|r| r.names.is_some())
                })
                .map(|name| {
                    drift(
                        name,
                        acc_of(name),
                        reference_acc.get(name).unwrap_or(&empty),
                    )
                })
                .collect();
            let reference_records: u64 = reference_acc.values().map(|r| r.records).sum();
            let note = if routes.is_empty() {
                Some("no prediction with stored features in the period".to_owned())
            } else if reference_records == 0 {
                Some(if input.reference.is_some() {
                    "the chosen reference period has no records: nothing to compare with".to_owned()
                } else {
                    // Typically a log younger than twice the period: say so, and how to
                    // choose a reference that has data.
                    "the reference period (by default the period of the same length just \
                     before this one) has no records, so there is nothing to compare with; \
                     choose one that has data with --reference-from/--reference-to \
                     (reference_from/reference_to on the endpoint)"
                        .to_owned()
                })
            } else {
                None
            };
            DriftSection {
                reference: reference.json(),
                reference_chosen: input.reference.is_some(),
                routes,
                note,
            }
        };

        let consent = {
            let routes: Vec<ConsentCounts> = names
                .iter()
                .filter(|n| acc_of(n).records > 0)
                .map(|name| {
                    let c = &acc_of(name).consent;
                    ConsentCounts {
                        route: name.clone(),
                        total: c.full + c.explain_only + c.none,
                        ..c.clone()
                    }
                })
                .collect();
            let mut total = ConsentCounts {
                route: "all routes".to_owned(),
                ..ConsentCounts::default()
            };
            for c in &routes {
                total.full += c.full;
                total.explain_only += c.explain_only;
                total.none += c.none;
                total.total += c.total;
            }
            ConsentSection {
                note: routes
                    .is_empty()
                    .then(|| "no prediction was recorded in the period".to_owned()),
                routes,
                total,
            }
        };

        let consent_withheld = consent.total.explain_only + consent.total.none;
        let fairness_failing = fairness
            .routes
            .iter()
            .flat_map(|r| &r.attributes)
            .filter(|a| a.verdict == sidelight_monitor::Verdict::Fail)
            .count();
        let erased_records: u64 = self.erased.values().sum();
        let decided: u64 = self.decisions.values().sum();
        let duties = duties::duties(
            config,
            &duties::DutyFigures {
                records,
                verified: Some(verification.ok),
                flagged: self.flagged,
                decided,
                pending_at_end: self.pending_at_end,
                contests: &self.contests,
                access_requests: self.access_requests,
                erasure_actions: self.erasure_actions.len(),
                erased_records,
                consent_withheld,
                fairness_failing,
            },
        );
        let reviews = ReviewSection {
            note: (self.flagged == 0 && self.decisions.is_empty()).then(|| {
                "no prediction was sent to review and no decision was taken in the period"
                    .to_owned()
            }),
            flagged: self.flagged,
            by_reason: self.by_reason,
            decisions: self.decisions,
            overrides: self.overrides,
            pending_at_end: self.pending_at_end,
            outcomes_reported: self.outcomes_reported,
            contests: self.contests,
        };

        let erasures = ErasureSection {
            note: (self.erased.is_empty() && self.erasure_actions.is_empty()).then(|| {
                "no record of the period is erased and no erasure was requested in it".to_owned()
            }),
            erased_records: self.erased,
            actions: self.erasure_actions,
        };

        Report {
            period: period.json(),
            generated_at: rfc3339_ms(input.generated_at_ms),
            sidelight_version: env!("CARGO_PKG_VERSION"),
            built_by: if input.in_service.is_some() {
                "proxy"
            } else {
                "audit_log"
            },
            system,
            importance,
            fairness,
            drift,
            consent,
            reviews,
            erasures,
            verification,
            duties,
            definitions: DEFINITIONS,
        }
    }
}

impl RouteAcc {
    /// Adds the record's rows: attributions for importance, values, predictions and
    /// decisions for fairness and drift, and `outcome` (the latest reported) to them.
    fn add_rows(
        &mut self,
        input: &ReportInput<'_>,
        record: &sidelight_audit::Record,
        outcome: Option<&Json>,
    ) {
        let rc = route_config(input.config, &record.route);
        let decision = rc.and_then(|r| r.explain.as_ref()).map(|e| &e.decision);
        let higher = decision.is_none_or(|d| d.higher_is_favourable);
        let explained: &[Json] = record
            .attributions
            .as_ref()
            .and_then(Json::as_array)
            .map_or(&[], Vec::as_slice);
        if explained.is_empty() {
            self.without_attributions += 1;
        }
        for row in explained {
            let Some(items) = row["attributions"].as_array() else {
                continue;
            };
            let pairs: Vec<(&str, f64)> = items
                .iter()
                .filter_map(|a| Some((a["feature"].as_str()?, a["contribution"].as_f64()?)))
                .collect();
            let names = self
                .importance_names
                .get_or_insert_with(|| pairs.iter().map(|(f, _)| (*f).to_owned()).collect());
            let aligned: Option<Vec<f64>> = names
                .iter()
                .map(|n| pairs.iter().find(|(f, _)| f == n).map(|(_, c)| *c))
                .collect();
            match aligned {
                Some(values) if pairs.len() == names.len() => self.importance.push(values),
                _ => self.importance_skipped += 1,
            }
        }
        let Some(features) = &record.features else {
            return;
        };
        let Ok(names) = serde_json::from_value::<Vec<String>>(features["names"].clone()) else {
            return;
        };
        let Some(rows) = features["rows"].as_array() else {
            return;
        };
        let known = self.names.get_or_insert_with(|| names.clone());
        if *known != names {
            return;
        }
        let outputs = record.outputs.as_ref().and_then(Json::as_array);
        // Counted once per outcome received, however many rows it applies to.
        let mut unusable = false;
        if outcome.is_some() {
            self.outcomes_received += 1;
        }
        let first_row = self.rows.len();
        for (i, values) in rows.iter().enumerate() {
            let Some(values) = values.as_array() else {
                continue;
            };
            let e = explained.get(i);
            let prediction = e.and_then(|e| e["prediction"].as_f64()).or_else(|| {
                let o = outputs?.get(i)?;
                o.as_f64().or_else(|| o.get(0)?.as_f64())
            });
            let favourable = e.and_then(|e| {
                let (p, t) = (e["prediction"].as_f64()?, e["threshold"].as_f64()?);
                Some(if higher { p >= t } else { p <= t })
            });
            // Which rows an outcome applies to, as the live monitor joins it: an array
            // gives row i its item i (null: unknown for that row, not unusable); one
            // reported with `row: k` (stored as {"row": k, "outcome": …}) row k alone;
            // a single value every row of the record.
            let row_outcome = outcome.and_then(|o| row_outcome(o, i));
            let threshold = decision
                .and_then(|d| d.threshold)
                .or_else(|| e.and_then(|e| e["threshold"].as_f64()));
            let read = row_outcome.map(|o| outcome_favourable(o, rc, higher, threshold));
            match read {
                Some(Some(_)) => self.outcomes += 1,
                Some(None) => unusable = true,
                None => {}
            }
            self.rows.push(Row {
                values: values.clone(),
                prediction,
                favourable,
                outcome: read.flatten(),
            });
        }
        if unusable {
            self.unusable_outcomes += 1;
        }
        self.records_rows.push(first_row..self.rows.len());
    }
}

/// The part of a record's reported outcome that belongs to row `i`: an array gives row
/// `i` its item `i` (null: unknown for that row); one reported with `row: k` (stored as
/// `{"row": k, "outcome": …}`) row `k` alone; a single value every row of the record.
pub(crate) fn row_outcome(outcome: &Json, i: usize) -> Option<&Json> {
    match outcome {
        Json::Array(per_row) => per_row.get(i).filter(|v| !v.is_null()),
        Json::Object(pair) if pair.contains_key("row") && pair.contains_key("outcome") => {
            (pair["row"].as_u64() == u64::try_from(i).ok()).then(|| &pair["outcome"])
        }
        one => Some(one),
    }
}

/// Whether a reported outcome was favourable to the person: `true`/`false`; a number
/// against the decision threshold, in the route's direction; or a word (`favourable`,
/// `approved`, `good`, the route's own word for it, and their opposites). `None`: not
/// usable.
pub(crate) fn outcome_favourable(
    outcome: &Json,
    route: Option<&RouteConfig>,
    higher: bool,
    threshold: Option<f64>,
) -> Option<bool> {
    match outcome {
        Json::Bool(b) => Some(*b),
        Json::Number(n) => {
            let (x, t) = (n.as_f64()?, threshold?);
            Some(if higher { x >= t } else { x <= t })
        }
        Json::String(s) => {
            let s = s.trim().to_lowercase();
            let decision = route.and_then(|r| r.explain.as_ref()).map(|e| &e.decision);
            let own = |w: Option<&Option<String>>| {
                w.and_then(Option::as_deref)
                    .is_some_and(|w| w.to_lowercase() == s)
            };
            if matches!(s.as_str(), "favourable" | "favorable" | "approved" | "good")
                || own(decision.map(|d| &d.favourable))
            {
                Some(true)
            } else if matches!(
                s.as_str(),
                "unfavourable" | "unfavorable" | "declined" | "bad"
            ) || own(decision.map(|d| &d.unfavourable))
            {
                Some(false)
            } else {
                None
            }
        }
        _ => None,
    }
}

fn importance(config: &Config, name: &str, acc: &RouteAcc) -> Option<RouteImportance> {
    let names = acc.importance_names.as_ref()?;
    if acc.importance.is_empty() {
        return None;
    }
    let rc = route_config(config, name);
    let mut protected: Vec<&str> = rc
        .and_then(|r| r.explain.as_ref())
        .map(|e| {
            e.features
                .iter()
                .filter(|f| f.protected)
                .map(|f| f.name.as_str())
                .collect()
        })
        .unwrap_or_default();
    if let Some(m) = rc.and_then(|r| r.monitor.as_ref()) {
        protected.extend(m.protected.iter().map(|p| p.feature.as_str()));
    }
    protected.retain(|p| names.iter().any(|n| n == p));
    protected.sort_unstable();
    protected.dedup();
    let mut summary =
        sidelight_monitor::attribution_summary(names, &protected, &acc.importance).ok()?;
    summary
        .features
        .sort_by(|a, b| b.mean_abs_contribution.total_cmp(&a.mean_abs_contribution));
    Some(RouteImportance {
        route: name.to_owned(),
        summary,
        rows_skipped: acc.importance_skipped,
        records_without_attributions: acc.without_attributions,
    })
}

/// The group a stored value belongs to: a band of a number (or of a stored band that
/// lies inside one); the configured group whose pseudonym it is; else its text.
fn group_of(p: &ProtectedConfig, keys: &Keys, value: &Json) -> String {
    let groups = || std::iter::once(&p.privileged).chain(&p.unprivileged);
    match value {
        Json::Number(n) if !p.bands.is_empty() => {
            n.as_f64().and_then(|x| p.band(x)).unwrap_or_default()
        }
        Json::Number(n) => n.as_f64().map(|x| x.to_string()).unwrap_or_default(),
        Json::Bool(b) => b.to_string(),
        Json::String(s) if s.starts_with("ps_") => groups()
            .find(|g| keys.pseudonym(g) == *s)
            .cloned()
            .unwrap_or_default(),
        Json::String(s) if !p.bands.is_empty() => stored_band(p, s).unwrap_or_default(),
        Json::String(s) => s.clone(),
        _ => String::new(),
    }
}

/// The configured band of a number written as text, or of a stored band `"[lo, hi)"`
/// (the privacy rule `band:W`) when the whole of it lies in one configured band.
fn stored_band(p: &ProtectedConfig, s: &str) -> Option<String> {
    if let Ok(x) = s.trim().parse::<f64>() {
        return p.band(x);
    }
    let (lo, hi) = s
        .trim()
        .strip_prefix('[')?
        .strip_suffix(')')?
        .split_once(',')?;
    let (lo, hi) = (
        lo.trim().parse::<f64>().ok()?,
        hi.trim().parse::<f64>().ok()?,
    );
    let last = hi - (hi - lo).abs() * 1e-9;
    let band = p.band(lo)?;
    (p.band(last)? == band).then_some(band)
}

/// A ranking route's exposure from its records: per record, the customer's group (the
/// protected feature in its first shown row, the context being every row's) and each
/// shown row's item group, in rank order.
fn exposure(config: &Config, keys: &Keys, name: &str, acc: &RouteAcc) -> Vec<RouteExposure> {
    let Some(route) = route_config(config, name) else {
        return Vec::new();
    };
    let (Some(monitor), Some(item_feature)) = (
        route.monitor.as_ref(),
        route
            .explain
            .as_ref()
            .and_then(|e| e.ranking.as_ref())
            .and_then(|r| r.item_group.as_deref()),
    ) else {
        return Vec::new();
    };
    let names = acc.names.as_deref().unwrap_or_default();
    let column = |feature: &str| names.iter().position(|n| n == feature);
    let Some(item_column) = column(item_feature) else {
        return Vec::new();
    };
    let fairness = FairnessConfig {
        confidence: monitor.confidence,
        min_group_size: monitor.min_group_size,
        ..FairnessConfig::default()
    };
    monitor
        .protected
        .iter()
        .filter(|p| p.is_feature())
        .filter_map(|p| {
            let protected_column = column(&p.feature)?;
            let labels: Vec<(Option<String>, Vec<Option<String>>)> = acc
                .records_rows
                .iter()
                .filter(|range| !range.is_empty())
                .map(|range| {
                    let rows = &acc.rows[range.clone()];
                    let group = rows[0]
                        .values
                        .get(protected_column)
                        .map(|v| group_of(p, keys, v))
                        .filter(|g| !g.is_empty());
                    let items = rows
                        .iter()
                        .map(|r| match r.values.get(item_column) {
                            Some(Json::String(s)) => Some(s.clone()),
                            Some(Json::Null) | None => None,
                            Some(other) => Some(other.to_string()),
                        })
                        .collect();
                    (group, items)
                })
                .collect();
            let shown: Vec<sidelight_monitor::exposure::ShownRanking<'_>> = labels
                .iter()
                .map(|(group, items)| sidelight_monitor::exposure::ShownRanking {
                    customer_group: group.as_deref(),
                    item_groups: items.iter().map(Option::as_deref).collect(),
                })
                .collect();
            let check = sidelight_monitor::exposure::check_exposure(
                &shown,
                &p.privileged,
                &p.unprivileged,
                &fairness,
            );
            Some(RouteExposure {
                attribute: p.feature.clone(),
                item_feature: item_feature.to_owned(),
                rankings: shown.len() as u64,
                check,
            })
        })
        .collect()
}

fn fairness(config: &Config, keys: &Keys, name: &str, acc: &RouteAcc) -> RouteFairness {
    let monitor = route_config(config, name).and_then(|r| r.monitor.as_ref());
    let explained: Vec<&Row> = acc.rows.iter().filter(|r| r.favourable.is_some()).collect();
    let mut out = RouteFairness {
        route: name.to_owned(),
        rows: explained.len() as u64,
        outcomes_received: acc.outcomes_received,
        rows_with_outcome: acc.outcomes,
        unusable_outcomes: acc.unusable_outcomes,
        attributes: Vec::new(),
        exposure: exposure(config, keys, name, acc),
        note: None,
    };
    let Some(monitor) = monitor.filter(|m| !m.protected.is_empty()) else {
        out.note =
            Some("no protected attribute configured ([routes.monitor] protected)".to_owned());
        return out;
    };
    let ranking = route_config(config, name)
        .and_then(|r| r.explain.as_ref())
        .is_some_and(|e| e.ranking.is_some());
    if ranking {
        out.note = Some(
            "a ranking route: its rows are items shown, not decisions, so no selection rates; \
             its fairness is exposure, below"
                .to_owned(),
        );
        return out;
    }
    let config_f = FairnessConfig {
        confidence: monitor.confidence,
        min_group_size: monitor.min_group_size,
        ..FairnessConfig::default()
    };
    let names = acc.names.as_deref().unwrap_or_default();
    let mut missing = Vec::new();
    let mut in_memory = Vec::new();
    for p in &monitor.protected {
        // An attribute from a header or reported later is never written to the audit
        // log, so a report cannot group by it: the live monitor does.
        if !p.is_feature() {
            in_memory.push(p.feature.clone());
            continue;
        }
        let Some(index) = names.iter().position(|n| *n == p.feature) else {
            missing.push(p.feature.clone());
            continue;
        };
        let labels: Vec<String> = explained
            .iter()
            .map(|r| {
                r.values
                    .get(index)
                    .map(|v| group_of(p, keys, v))
                    .unwrap_or_default()
            })
            .collect();
        let decisions = labels.iter().zip(&explained).map(|(label, r)| Decision {
            group: label,
            favourable: r.favourable.unwrap_or(false),
            outcome: r.outcome,
        });
        let attribute = ProtectedAttribute {
            name: p.feature.clone(),
            privileged: p.privileged.clone(),
            unprivileged: p.unprivileged.clone(),
        };
        if let Ok(report) = sidelight_monitor::fairness(&attribute, decisions, &config_f) {
            out.attributes.push(report);
        }
    }
    out.note = if explained.is_empty() {
        Some("no explained prediction with stored features in the period".to_owned())
    } else if !missing.is_empty() {
        Some(format!(
            "protected feature(s) not in the stored rows: {}",
            missing.join(", ")
        ))
    } else if acc.outcomes == 0 {
        Some("no reported outcomes: equal opportunity and average odds need them".to_owned())
    } else {
        None
    };
    if !in_memory.is_empty() {
        let note = format!(
            "not in the audit log, so not in this report (from a request header or reported \
             later; see GET /api/v1/monitoring): {}",
            in_memory.join(", ")
        );
        out.note = Some(match out.note {
            Some(n) => format!("{n}; {note}"),
            None => note,
        });
    }
    out
}

/// A column of stored values: numbers (NaN for missing) when every value is a number or
/// missing, else texts.
enum Column {
    Numeric(Vec<f64>),
    Categorical(Vec<Option<String>>),
}

fn column<'a>(values: impl Iterator<Item = Option<&'a Json>> + Clone) -> Column {
    let numeric = values
        .clone()
        .all(|v| matches!(v, None | Some(Json::Null | Json::Number(_))));
    if numeric {
        Column::Numeric(
            values
                .map(|v| v.and_then(Json::as_f64).unwrap_or(f64::NAN))
                .collect(),
        )
    } else {
        Column::Categorical(
            values
                .map(|v| match v {
                    None | Some(Json::Null) => None,
                    Some(Json::String(s)) => Some(s.clone()),
                    Some(other) => Some(other.to_string()),
                })
                .collect(),
        )
    }
}

fn drift(name: &str, current: &RouteAcc, reference: &RouteAcc) -> RouteDrift {
    let mut out = RouteDrift {
        route: name.to_owned(),
        rows: current.rows.len() as u64,
        reference_rows: reference.rows.len() as u64,
        features: Vec::new(),
        prediction: None,
        note: None,
    };
    if current.rows.is_empty() || reference.rows.is_empty() {
        out.note = Some(if reference.rows.is_empty() {
            "the reference period has no records of this route".to_owned()
        } else {
            "no record of this route in the period".to_owned()
        });
        return out;
    }
    let (Some(names), Some(ref_names)) = (&current.names, &reference.names) else {
        return out;
    };
    let config = DriftConfig::default();
    for (i, feature) in names.iter().enumerate() {
        let Some(j) = ref_names.iter().position(|n| n == feature) else {
            continue;
        };
        let cur = current.rows.iter().map(|r| r.values.get(i));
        let refc = reference.rows.iter().map(|r| r.values.get(j));
        let row = match (
            column(refc.clone().chain(cur.clone())),
            column(refc),
            column(cur),
        ) {
            (Column::Numeric(_), Column::Numeric(r), Column::Numeric(c)) => {
                NumericReference::new(&r, &config)
                    .ok()
                    .map(|r| numeric_row(feature, &r.compare(&c)))
            }
            (_, r, c) => {
                let texts = |c: Column| match c {
                    Column::Categorical(t) => t,
                    Column::Numeric(x) => x
                        .into_iter()
                        .map(|v| (!v.is_nan()).then(|| v.to_string()))
                        .collect(),
                };
                CategoricalReference::new(&texts(r), &config).ok().map(|r| {
                    let d = r.compare(&texts(c));
                    DriftRow {
                        feature: feature.clone(),
                        kind: "categorical",
                        psi: d.psi,
                        ks_statistic: None,
                        ks_p_value: None,
                        chi_square: d.chi_square.map(|c| c.statistic),
                        chi_square_p_value: d.chi_square.map(|c| c.p_value),
                        missing: d.current_missing,
                        reference_missing: d.reference_missing,
                    }
                })
            }
        };
        out.features.extend(row);
    }
    let predictions = |acc: &RouteAcc| -> Vec<f64> {
        acc.rows
            .iter()
            .map(|r| r.prediction.unwrap_or(f64::NAN))
            .collect()
    };
    out.prediction = sidelight_monitor::prediction_drift(
        &predictions(reference),
        &predictions(current),
        &config,
    )
    .ok()
    .map(|d| numeric_row("prediction", &d));
    out
}

fn numeric_row(feature: &str, d: &sidelight_monitor::NumericDrift) -> DriftRow {
    DriftRow {
        feature: feature.to_owned(),
        kind: "numeric",
        psi: d.psi,
        ks_statistic: d.ks.map(|k| k.statistic),
        ks_p_value: d.ks.map(|k| k.p_value),
        chi_square: None,
        chi_square_p_value: None,
        missing: d.current_missing,
        reference_missing: d.reference_missing,
    }
}

/// Formats a share as a percentage, for the renderers.
fn percent(x: Option<f64>) -> String {
    x.map_or_else(|| "—".to_owned(), |x| format!("{:.1}%", x * 100.0))
}

/// Formats a number to three decimals, for the renderers.
fn num(x: Option<f64>) -> String {
    x.filter(|x| x.is_finite())
        .map_or_else(|| "—".to_owned(), |x| format!("{x:.3}"))
}

/// The verdict as the renderers print it.
fn verdict(v: sidelight_monitor::Verdict) -> &'static str {
    match v {
        sidelight_monitor::Verdict::Pass => "pass",
        sidelight_monitor::Verdict::InsufficientData => "insufficient data",
        sidelight_monitor::Verdict::Inconclusive => "inconclusive",
        sidelight_monitor::Verdict::Fail => "fail",
    }
}

/// The section headings, in order, shared by the renderers.
pub const SECTIONS: [&str; 9] = [
    "1. The system",
    "2. Global feature importance",
    "3. Fairness and alerts",
    "4. Drift",
    "5. Consent and opt-out",
    "6. Reviews and overrides",
    "7. Erasures",
    "8. Verification of the audit log",
    "9. Duties and what this deployment does",
];

#[cfg(test)]
mod tests;

#[cfg(test)]
mod workbench_tests;
