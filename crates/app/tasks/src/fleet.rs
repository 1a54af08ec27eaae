//! Live explanations in a fleet: several replicas on one PostgreSQL database share one
//! surrogate per route.
//!
//! - Every replica queues the consented rows it observes and a poller appends them to
//!   the fleet's training table (sealed like record fields).
//! - Per route, one replica is the trainer: the one whose connection holds the route's
//!   advisory lock. It trains on the newest `window_rows` of the table exactly as a
//!   single proxy trains on its window, publishes every version with a fleet-wide
//!   number, and prunes the rows the window no longer needs. When its process stops,
//!   its session ends, the lock frees and another replica's trainer takes it.
//! - Every replica's poller, every `poll_interval`, loads a newer accepted surrogate
//!   (so that all replicas serve the same version), adds new versions to the history,
//!   and drops the subjects erased through any replica from its memory.
//!
//! Nothing here logs a row, an output or a subject.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use sidelight_audit::{FleetStore, FleetSurrogate, Published, TrainingBatch};
use sidelight_explain::Value;

use crate::audit::Fleet;
use crate::job::Job;
use crate::live::pending::Pending;
use crate::live::{LiveModel, RouteLive, VersionRecord, column_order, reorder};
use crate::trainer;

/// Versions read per poll: more than a poll interval ever brings.
const VERSIONS_PER_POLL: usize = 50;

/// A batch as stored (sealed) in the fleet's training table.
#[derive(Serialize, Deserialize)]
struct Payload {
    names: Vec<String>,
    rows: Vec<Vec<Value>>,
    outputs: Vec<Vec<f64>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

/// `sidelight_fleet_trainer{route}`: 1 while this replica is the route's trainer.
#[derive(Clone, Debug, Default)]
pub struct FleetGauges {
    trainer: Family<RouteLabel, Gauge>,
}

impl FleetGauges {
    pub fn register(registry: &mut Registry) -> Self {
        let gauges = Self::default();
        registry.register(
            "sidelight_fleet_trainer",
            "1 while this replica trains the route's surrogate for the fleet, else 0",
            gauges.trainer.clone(),
        );
        gauges
    }

    fn set(&self, route: &str, leading: bool) {
        self.trainer
            .get_or_create(&RouteLabel {
                route: route.to_owned(),
            })
            .set(i64::from(leading));
    }
}

/// What the fleet's background tasks need.
pub struct FleetTasks {
    pub fleet: Arc<Fleet>,
    pub gauges: FleetGauges,
    /// Drops a subject from the caches outside the routes (explanations kept for
    /// `GET /v1/explanations/{id}`, requests kept for the probe check).
    pub forget: Box<dyn Fn(&str) -> usize + Send + Sync>,
}

/// Marks the routes as the fleet's; returns the jobs that serve them: one fleet trainer
/// per route and the poller.
pub fn jobs(routes: &[Arc<RouteLive>], tasks: FleetTasks) -> Vec<Arc<dyn Job>> {
    if routes.is_empty() {
        return Vec::new();
    }
    for live in routes {
        live.shared.store(true, Ordering::Relaxed);
        tasks.gauges.set(&live.route, false);
    }
    let mut jobs: Vec<Arc<dyn Job>> = routes
        .iter()
        .map(|live| {
            Arc::new(FleetTrainer {
                live: live.clone(),
                fleet: tasks.fleet.clone(),
                gauges: tasks.gauges.clone(),
            }) as Arc<dyn Job>
        })
        .collect();
    jobs.push(Arc::new(FleetPoller {
        routes: routes.to_vec(),
        tasks,
    }));
    jobs
}

/// Trains a route's surrogate for the whole fleet while this replica holds the route's
/// trainer lock.
struct FleetTrainer {
    live: Arc<RouteLive>,
    fleet: Arc<Fleet>,
    gauges: FleetGauges,
}

impl Job for FleetTrainer {
    fn name(&self) -> String {
        format!("fleet-trainer/{}", self.live.route)
    }

    fn run(&self) {
        run_trainer(&self.live, &self.fleet, &self.gauges);
    }

    fn stop(&self) {
        self.live.stop();
    }
}

/// Loads the fleet's surrogates and erasures, and uploads this replica's rows.
struct FleetPoller {
    routes: Vec<Arc<RouteLive>>,
    tasks: FleetTasks,
}

impl Job for FleetPoller {
    fn name(&self) -> String {
        "fleet-poller".to_owned()
    }

    fn run(&self) {
        run_poller(&self.routes, &self.tasks);
    }

    fn stop(&self) {
        for live in &self.routes {
            live.stop();
        }
    }
}

fn stopping(routes: &[Arc<RouteLive>]) -> bool {
    routes.iter().any(|l| l.stopping.load(Ordering::Relaxed))
}

/// Sleeps `interval`, waking early when the routes stop.
fn pause(routes: &[Arc<RouteLive>], interval: Duration) -> bool {
    let until = Instant::now() + interval;
    while Instant::now() < until {
        if stopping(routes) {
            return false;
        }
        std::thread::sleep((until - Instant::now()).min(Duration::from_millis(100)));
    }
    !stopping(routes)
}

// === the poller ===

fn run_poller(routes: &[Arc<RouteLive>], tasks: &FleetTasks) {
    let store = tasks.fleet.store_for_task();
    let mut erasures: Option<u64> = None;
    let mut known: HashMap<String, u64> = HashMap::new();
    let mut failing = false;
    loop {
        let outcome = poll_once(routes, tasks, &store, &mut erasures, &mut known);
        match outcome {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("the fleet's database answers again");
            }
            Ok(()) => {}
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(%error, kind = error.kind(), "cannot reach the fleet's database; retrying every poll");
            }
            Err(_) => {}
        }
        if !pause(routes, tasks.fleet.poll_interval) {
            return;
        }
    }
}

fn poll_once(
    routes: &[Arc<RouteLive>],
    tasks: &FleetTasks,
    store: &FleetStore,
    erasures: &mut Option<u64>,
    known: &mut HashMap<String, u64>,
) -> Result<(), sidelight_audit::StoreError> {
    // Erasures first: rows of an erased subject still queued here must not reach the
    // table after the erasure removed the subject's rows from it.
    let (subjects, newest) = store.erasures_after(*erasures)?;
    *erasures = Some(newest);
    for (subject, writer) in &subjects {
        // This replica's own erasures were applied to its memory when they were made.
        if *writer == tasks.fleet.writer {
            continue;
        }
        let mut rows = 0;
        let mut retired = 0;
        for live in routes {
            let forgotten = live.forget_subject(subject);
            rows += forgotten.rows;
            retired += usize::from(forgotten.retired.is_some());
        }
        let cached = (tasks.forget)(subject);
        tracing::info!(
            window_rows = rows,
            cached,
            surrogates_retired = retired,
            "forgot a subject erased through another replica"
        );
    }
    for live in routes {
        upload(live, store)?;
        load_versions(live, store, known)?;
    }
    Ok(())
}

/// Appends the route's queued rows to the fleet's table; they stay queued if it fails.
fn upload(live: &RouteLive, store: &FleetStore) -> Result<(), sidelight_audit::StoreError> {
    let batch: Vec<Pending> = match live.pending.lock() {
        Ok(mut pending) => pending.drain(..).collect(),
        Err(_) => return Ok(()),
    };
    if batch.is_empty() {
        return Ok(());
    }
    let mut encoded = Vec::with_capacity(batch.len());
    for p in &batch {
        let payload = Payload {
            names: p.names.clone(),
            rows: p.rows.clone(),
            outputs: p.outputs.clone(),
        };
        encoded.push(TrainingBatch {
            route: live.route.clone(),
            time_ms: p.time_ms,
            subject: p.subject.as_deref().map(str::to_owned),
            rows: p.rows.len() as u64,
            payload: serde_json::to_vec(&payload)?,
        });
    }
    if let Err(error) = store.append_training(&encoded) {
        if let Ok(mut pending) = live.pending.lock() {
            // Back in front of what arrived meanwhile, oldest first.
            for p in batch.into_iter().rev() {
                pending.push_front(p);
            }
        }
        return Err(error);
    }
    Ok(())
}

/// Adds the route's new versions to its history and puts the newest accepted one in
/// service if it is newer than the one serving.
fn load_versions(
    live: &RouteLive,
    store: &FleetStore,
    known: &mut HashMap<String, u64>,
) -> Result<(), sidelight_audit::StoreError> {
    let after = known.get(&live.route).copied().unwrap_or(0);
    let versions = store.surrogates_after(&live.route, after, VERSIONS_PER_POLL)?;
    let Some(newest) = versions.last().map(|v| v.version) else {
        return Ok(());
    };
    known.insert(live.route.clone(), newest);
    for published in &versions {
        trainer::add_to_history(live, record_of(published));
    }
    let Some(published) = versions.iter().rev().find(|v| v.surrogate.is_some()) else {
        return Ok(());
    };
    let serving = live.model.load().as_ref().map_or(0, |m| m.version());
    if published.version <= serving {
        return Ok(());
    }
    let Some(text) = &published.surrogate else {
        return Ok(());
    };
    let saved = match crate::live::state::decode(text) {
        Ok(s) => s,
        Err(error) => {
            tracing::warn!(route = %live.route, version = published.version, %error, "cannot read the fleet's surrogate");
            return Ok(());
        }
    };
    let surrogate = saved.surrogate;
    // The fleet's keys are the audit log's: the levels the trainer pseudonymised read
    // alike here.
    let mask = live
        .keys
        .as_ref()
        .and_then(|k| crate::live::state::LevelMask::new(k, &surrogate, &saved.pseudonymised));
    if mask.is_none() && !saved.pseudonymised.is_empty() {
        tracing::warn!(route = %live.route, version = published.version, "cannot read the fleet's surrogate: its personal levels are pseudonyms and this replica has no key");
        return Ok(());
    }
    let mut provenance = saved.provenance;
    if let Some(subjects) = &published.subjects {
        provenance.subjects = Some(Arc::new(subjects.iter().map(|&d| d as u64).collect()));
    }
    // Erasures this replica learns of from now on are checked against it.
    provenance.erasure_epoch = live.erasure_epoch();
    // The typical values and ranges come from the same rows the trainer used, so that
    // every replica explains alike.
    let names: Vec<String> = surrogate.schema().names().map(str::to_owned).collect();
    let (batches, _) = store.training_window(&live.route, live.config.surrogate.window_rows)?;
    let (rows, outputs, width) = decode(&batches, &names, live.config.surrogate.window_rows);
    let version = published.version;
    match LiveModel::new(surrogate, record_of(published), &live.config, &rows) {
        Ok(model) => {
            let mut model = model.with_mask(mask);
            model.provenance = provenance;
            if trainer::install(live, model, &names, rows, &outputs, width) {
                tracing::info!(route = %live.route, version, "loaded the fleet's surrogate");
            }
        }
        Err(error) => {
            tracing::warn!(route = %live.route, version, %error, "cannot use the fleet's surrogate");
        }
    }
    Ok(())
}

fn record_of(published: &FleetSurrogate) -> VersionRecord {
    VersionRecord {
        version: published.version,
        trained_at: published.trained_at,
        rows: usize::try_from(published.rows).unwrap_or(usize::MAX),
        r2: published.r2,
        mae: published.mae,
        agreement: published.agreement,
        accepted: published.accepted,
        reason: published.reason.clone(),
        gate: None,
        faithfulness: None,
        retired: None,
    }
}

/// The newest `limit` rows of the batches, in the order of `names`, with their outputs
/// (flattened) and the number of outputs per row (that of the newest batch; rows of
/// another width are left out).
fn decode(
    batches: &[TrainingBatch],
    names: &[String],
    limit: usize,
) -> (Vec<Vec<Value>>, Vec<f64>, usize) {
    let payloads: Vec<Payload> = batches
        .iter()
        .filter_map(|b| serde_json::from_slice(&b.payload).ok())
        .collect();
    let width = payloads
        .iter()
        .rev()
        .find_map(|p| p.outputs.first().map(Vec::len))
        .unwrap_or(1);
    let mut rows = VecDeque::new();
    let mut outputs = VecDeque::new();
    for p in &payloads {
        let order = column_order(names, &p.names);
        for (row, output) in p.rows.iter().zip(&p.outputs) {
            if output.len() != width {
                continue;
            }
            rows.push_back(reorder(row, &order));
            outputs.push_back(output.clone());
            if rows.len() > limit {
                rows.pop_front();
                outputs.pop_front();
            }
        }
    }
    let outputs = outputs.into_iter().flatten().collect();
    (rows.into(), outputs, width)
}

// === the trainer ===

fn run_trainer(live: &Arc<RouteLive>, fleet: &Fleet, gauges: &FleetGauges) {
    let store = fleet.store_for_task();
    let routes = std::slice::from_ref(live);
    let mut leading = false;
    // Position of the newest row the last training saw.
    let mut trained_upto = 0u64;
    let mut last_training = Instant::now();
    let mut failing = false;
    loop {
        let lead = match store.try_lead(&live.route) {
            Ok(lead) => lead,
            Err(error) => {
                tracing::debug!(route = %live.route, %error, "trainer election: no database");
                false
            }
        };
        if lead != leading {
            leading = lead;
            gauges.set(&live.route, lead);
            if lead {
                tracing::info!(route = %live.route, writer = %fleet.writer, "this replica is now the trainer for route {}", live.route);
                // A new trainer starts from what the fleet has, not from its own past.
                trained_upto = 0;
            } else {
                tracing::warn!(route = %live.route, "this replica is no longer the trainer for route {}", live.route);
            }
        }
        if lead {
            match train_if_due(live, &store, fleet, &mut trained_upto, &mut last_training) {
                Ok(()) => failing = false,
                // Once per streak: the database may be away for a while.
                Err(error) if !failing => {
                    failing = true;
                    tracing::warn!(route = %live.route, %error, "fleet training failed; retrying every poll");
                }
                Err(_) => {}
            }
        } else if let Ok(mut window) = live.window.lock() {
            // The trainer retrains after an erasure; here the request would only keep
            // the wait below from waiting.
            window.retrain_now = false;
        }
        if failing {
            // A retrain request kept for the next poll must not cut the wait short.
            if !pause(routes, fleet.poll_interval) {
                return;
            }
            continue;
        }
        // Woken early by an erasure (retrain now) or a stop.
        let Ok(window) = live.window.lock() else {
            return;
        };
        let waited = live
            .wake
            .wait_timeout_while(window, fleet.poll_interval, |w| {
                !w.retrain_now && !live.stopping.load(Ordering::Relaxed)
            });
        drop(waited);
        if stopping(routes) {
            return;
        }
    }
}

/// Why a fleet training round did not finish; it is tried again at the next poll.
#[derive(Debug, thiserror::Error)]
enum FleetTrainError {
    #[error(transparent)]
    Store(#[from] sidelight_audit::StoreError),
    #[error("{0}")]
    Train(#[from] trainer::TrainError),
    #[error("cannot encode the surrogate: {0}")]
    Encode(String),
}

/// Trains when the fleet's rows call for it (or an erasure does); a request to retrain
/// that fails is kept for the next poll.
fn train_if_due(
    live: &RouteLive,
    store: &FleetStore,
    fleet: &Fleet,
    trained_upto: &mut u64,
    last_training: &mut Instant,
) -> Result<(), FleetTrainError> {
    // Taken, so that the wait for the next poll waits.
    let retrain_now = live
        .window
        .lock()
        .map(|mut w| std::mem::take(&mut w.retrain_now))
        .unwrap_or(false);
    let result = train_when_due(live, store, fleet, trained_upto, last_training, retrain_now);
    if result.is_err() && retrain_now {
        if let Ok(mut window) = live.window.lock() {
            window.retrain_now = true;
        }
    }
    result
}

fn train_when_due(
    live: &RouteLive,
    store: &FleetStore,
    fleet: &Fleet,
    trained_upto: &mut u64,
    last_training: &mut Instant,
    retrain_now: bool,
) -> Result<(), FleetTrainError> {
    let config = &live.config.surrogate;
    let (new_rows, newest) = store.training_rows_after(&live.route, *trained_upto)?;
    let serving = live.model.load_full();
    let due = if serving.is_none() || *trained_upto == 0 {
        let (total, _) = store.training_rows_after(&live.route, 0)?;
        total >= config.warm_up_rows as u64 && (serving.is_none() || new_rows > 0)
    } else {
        retrain_now
            || new_rows >= config.retrain_every_rows as u64
            || (new_rows > 0 && last_training.elapsed() >= config.retrain_interval)
    };
    if !due {
        // Between trainings too, the table keeps no more than the window needs.
        if new_rows > 0 {
            store.prune_training(&live.route, config.window_rows)?;
        }
        return Ok(());
    }
    if let Ok(mut window) = live.window.lock() {
        window.since_training = 0;
    }
    *last_training = Instant::now();
    // Noted before the rows are read: an erasure from now on is checked against them.
    let erasure_epoch = live.erasure_epoch();
    let (batches, _) = store.training_window(&live.route, config.window_rows)?;
    let names = training_names(live, &batches);
    let (rows, outputs, width) = decode(&batches, &names, config.window_rows);
    *trained_upto = newest.max(1);
    if rows.is_empty() {
        return Ok(());
    }
    let published = store.latest_version(&live.route)?;
    let local = serving.as_ref().map_or(0, |m| m.version());
    let history = live
        .history
        .lock()
        .map(|h| h.iter().map(|r| r.version).max().unwrap_or(0))
        .unwrap_or(0);
    let version = published.max(local).max(history) + 1;
    let started = Instant::now();
    let subjects = trainer::digests(live, batches.iter().filter_map(|b| b.subject.as_deref()));
    let batch = trainer::Batch {
        provenance: crate::live::state::Provenance {
            subjects: Some(Arc::new(subjects)),
            rows_taken_ms: crate::live::now_ms(),
            erasure_epoch,
        },
        after_erasure: false,
        names,
        width,
        rows,
        outputs,
        synthetic_rows: Vec::new(),
        synthetic_outputs: Vec::new(),
        synthetic_sources: Vec::new(),
    };
    let (model, record) = trainer::train(live, &batch, || version)?;
    let trainer::Batch {
        names,
        rows,
        outputs,
        ..
    } = batch;
    tracing::info!(
        route = %live.route, version, r2 = record.r2, accepted = record.accepted, rows = rows.len(),
        seconds = started.elapsed().as_secs_f64(), "surrogate trained for the fleet"
    );
    // Published as a state file is saved: with its subjects, and personal levels as
    // pseudonyms (the fleet's keys are the audit log's, so there always is a key).
    let text = if record.accepted {
        let keys = live.keys.as_ref().ok_or_else(|| {
            FleetTrainError::Encode("a fleet replica without the audit log's keys".to_owned())
        })?;
        let (surrogate, pseudonymised) = crate::live::state::pseudonymise(
            &model.surrogate,
            keys,
            &live.personal,
            &model.pseudonymised(),
        )
        .map_err(|e| FleetTrainError::Encode(e.to_string()))?;
        Some(
            crate::live::state::encode(&surrogate, version, &model.provenance, &pseudonymised)
                .map_err(|e| FleetTrainError::Encode(e.to_string()))?,
        )
    } else {
        None
    };
    let subjects = model
        .provenance
        .subjects
        .as_ref()
        .map(|s| s.iter().map(|&d| d as i64).collect());
    let publish = FleetSurrogate {
        version,
        trained_at: record.trained_at,
        rows: rows.len() as u64,
        r2: record.r2,
        mae: record.mae,
        agreement: record.agreement,
        accepted: record.accepted,
        reason: record.reason.clone(),
        surrogate: text,
        writer: fleet.writer.clone(),
        subjects,
    };
    let taken = i64::try_from(model.provenance.rows_taken_ms).unwrap_or(i64::MAX);
    let mut record = record;
    match store.publish_surrogate(&live.route, &publish, taken)? {
        Published::Taken => {
            // Another trainer (one that held the lock before this one) got there first.
            tracing::warn!(route = %live.route, version, "version published by another replica; not used");
            return Ok(());
        }
        Published::Retired => {
            record.retired = Some(trainer::ERASED_WHILE_TRAINED.to_owned());
            tracing::info!(route = %live.route, version, "surrogate {}", trainer::ERASED_WHILE_TRAINED);
            // Trained again without the subject's rows, which are gone from the table.
            if let Ok(mut window) = live.window.lock() {
                window.retrain_now = true;
            }
        }
        Published::Published => {
            if record.accepted && !trainer::install(live, model, &names, rows, &outputs, width) {
                record.retired = Some(trainer::ERASED_WHILE_TRAINED.to_owned());
            }
        }
    }
    trainer::add_to_history(live, record);
    let pruned = store.prune_training(&live.route, config.window_rows)?;
    tracing::debug!(route = %live.route, batches = pruned, "pruned the fleet's training rows");
    Ok(())
}

/// The feature names the trainer uses: the configured ones, else those of this
/// replica's window, else those of the newest batch.
fn training_names(live: &RouteLive, batches: &[TrainingBatch]) -> Vec<String> {
    if !live.config.features.is_empty() {
        return live
            .config
            .features
            .iter()
            .map(|f| f.name.clone())
            .collect();
    }
    let local = live
        .window
        .lock()
        .map(|w| w.names.clone())
        .unwrap_or_else(|e| e.into_inner().names.clone());
    if !local.is_empty() {
        return local;
    }
    batches
        .iter()
        .rev()
        .find_map(|b| serde_json::from_slice::<Payload>(&b.payload).ok())
        .map(|p| p.names)
        .unwrap_or_default()
}
