//! The background trainer of one route: waits until the window is due for training,
//! fits a new surrogate on its own thread with a bounded CPU share, measures fidelity on
//! held-out traffic, and puts the new surrogate in service only if it passes the gate.
//!
//! The gate is honest about what it measures: held-out rows are distinct rows, a fixed
//! share picked by content, and no copy of them is trained on (replayed traffic cannot
//! inflate R²); a version is judged only on at least `min_holdout_rows` of them; and it
//! is the lower confidence bound of R², not the point estimate, that must reach
//! `min_r2`. Synthetic rows from active distillation are trained on and reported apart
//! (R² on held-out synthetic rows), never judged in place of real ones.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use linfa::ParamGuard;
use sidelight_explain::distill::{GateOptions, Labelled};
use sidelight_explain::{
    Feature, FeatureKind, GbtParams, GbtValidParams, OutputKind, Schema, Value,
};

use crate::config::{ExplainConfig, FeatureKindConfig, OutputConfig};
use crate::live::model::{Faithfulness, GateFacts};
use crate::live::{LiveModel, RouteLive, VersionRecord};

/// Why an accepted version never served.
pub const ERASED_WHILE_TRAINED: &str =
    "not put in service: a subject its rows came from was erased while it was trained";

/// A route's trainer (not a fleet's: see `fleet`).
pub struct Trainer(pub Arc<RouteLive>);

impl crate::job::Job for Trainer {
    fn name(&self) -> String {
        format!("trainer/{}", self.0.route)
    }

    fn run(&self) {
        run(&self.0);
    }

    fn stop(&self) {
        self.0.stop();
    }
}

pub fn run(live: &RouteLive) {
    let interval = live.config.surrogate.retrain_interval;
    let mut last_training = Instant::now();
    loop {
        let Ok(window) = live.window.lock() else {
            return;
        };
        let Ok((window, _)) = live
            .wake
            .wait_timeout(window, interval.min(Duration::from_secs(5)))
        else {
            return;
        };
        if live.stopping.load(Ordering::Relaxed) {
            return;
        }
        let warm = window.seen >= live.config.surrogate.warm_up_rows as u64;
        let due = live.due_by_rows(&window)
            || (warm && window.since_training > 0 && last_training.elapsed() >= interval);
        if !due {
            continue;
        }
        let subjects = window_subjects(&window);
        let mut batch = Batch {
            provenance: crate::live::state::Provenance {
                subjects: None,
                rows_taken_ms: crate::live::now_ms(),
                erasure_epoch: live.erasure_epoch(),
            },
            after_erasure: window.retrain_now,
            names: window.names.clone(),
            width: window.width.unwrap_or(1),
            rows: window.rows.iter().map(|w| w.row.clone()).collect(),
            outputs: window
                .rows
                .iter()
                .flat_map(|w| w.output.iter().copied())
                .collect(),
            synthetic_rows: window.synthetic.iter().map(|s| s.row.clone()).collect(),
            synthetic_outputs: window
                .synthetic
                .iter()
                .flat_map(|s| s.output.iter().copied())
                .collect(),
            synthetic_sources: window.synthetic.iter().map(|s| s.sources.clone()).collect(),
        };
        drop(window);
        batch.provenance.subjects = Some(Arc::new(digests(live, subjects)));
        if let Ok(mut window) = live.window.lock() {
            window.since_training = 0;
            window.retrain_now = false;
            window.tried = true;
        }
        last_training = Instant::now();
        let started = Instant::now();
        match train(live, &batch, || {
            live.next_version.fetch_add(1, Ordering::Relaxed)
        }) {
            Ok((model, mut record)) => {
                tracing::info!(
                    route = %live.route, version = record.version, r2 = record.r2,
                    accepted = record.accepted, seconds = started.elapsed().as_secs_f64(),
                    "surrogate trained"
                );
                set_waiting(live, None);
                if record.accepted
                    && !install(
                        live,
                        model,
                        &batch.names,
                        batch.rows,
                        &batch.outputs,
                        batch.width,
                    )
                {
                    record.retired = Some(ERASED_WHILE_TRAINED.to_owned());
                }
                add_to_history(live, record);
            }
            Err(TrainError::TooFewHeldOut { have, need }) => {
                let note = format!(
                    "waiting for more distinct traffic: {have} unseen rows could be held out \
                     and the gate needs {need} (surrogate.min_holdout_rows)"
                );
                tracing::info!(route = %live.route, have, need, "not enough distinct rows to judge a surrogate yet");
                set_waiting(live, Some(note));
            }
            Err(TrainError::Failed(error)) => {
                tracing::warn!(route = %live.route, %error, "surrogate training failed");
            }
        }
    }
}

/// The subjects of the window's rows, real and those synthetic rows were made from.
fn window_subjects(window: &crate::live::Window) -> Vec<Arc<str>> {
    let mut seen: std::collections::HashSet<&Arc<str>> = std::collections::HashSet::new();
    for subject in window.rows.iter().filter_map(|w| w.subject.as_ref()) {
        seen.insert(subject);
    }
    for subject in window.synthetic.iter().flat_map(|s| s.subjects.iter()) {
        seen.insert(subject);
    }
    seen.into_iter().cloned().collect()
}

/// The keyed digests of subjects (none without an audit log, which has no subjects).
pub fn digests<S: AsRef<str>>(
    live: &RouteLive,
    subjects: impl IntoIterator<Item = S>,
) -> std::collections::HashSet<u64> {
    match &live.keys {
        Some(keys) => subjects
            .into_iter()
            .map(|s| keys.subject_digest(s.as_ref()))
            .collect(),
        None => std::collections::HashSet::new(),
    }
}

/// Adds the faithfulness figure to a version's record (in the history and, if it is in
/// service, the model's), and saves the history.
pub fn set_faithfulness(live: &RouteLive, version: u64, faithfulness: Faithfulness) {
    if let Ok(mut history) = live.history.lock() {
        if let Some(record) = history.iter_mut().find(|r| r.version == version) {
            record.faithfulness = Some(faithfulness);
        }
    }
    live.save_history();
}

/// What the trainer is waiting for, shown at `/api/v1/surrogates`.
fn set_waiting(live: &RouteLive, note: Option<String>) {
    if let Ok(mut waiting) = live.waiting.lock() {
        *waiting = note;
    }
}

/// A copy of the window to train on.
pub struct Batch {
    /// Whose rows these are, and when they were taken.
    pub provenance: crate::live::state::Provenance,
    /// Rows were erased: a surrogate without them must replace the one in service, so
    /// the minimum held-out size does not hold the training back (the gate still
    /// judges it on what can be held out).
    pub after_erasure: bool,
    pub names: Vec<String>,
    pub width: usize,
    pub rows: Vec<Vec<Value>>,
    pub outputs: Vec<f64>,
    pub synthetic_rows: Vec<Vec<Value>>,
    pub synthetic_outputs: Vec<f64>,
    /// Per synthetic row, the keys of the real rows it was made from.
    pub synthetic_sources: Vec<Vec<u64>>,
}

/// Why no version came of a training.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Too few distinct rows could be held out to judge a surrogate; nothing was fitted.
    #[error("only {have} distinct rows can be held out; the gate needs {need}")]
    TooFewHeldOut { have: usize, need: usize },
    /// The fit or its preparation failed.
    #[error("{0}")]
    Failed(String),
}

/// Puts an accepted surrogate in service: saves it to `state.dir` (so that a restart
/// finds it), swaps it in, and gives the drift monitor its training rows as reference.
/// A surrogate one of whose subjects was erased while it was trained is not put in
/// service (the erasure asked for a training without the subject's rows already).
/// Whether it was put in service.
pub fn install(
    live: &RouteLive,
    model: LiveModel,
    names: &[String],
    rows: Vec<Vec<Value>>,
    outputs: &[f64],
    width: usize,
) -> bool {
    if live.erased_since(&model.provenance) {
        tracing::info!(route = %live.route, version = model.version(), "surrogate {ERASED_WHILE_TRAINED}");
        return false;
    }
    if let Err(error) = live.persist(&model) {
        tracing::warn!(route = %live.route, %error, "cannot save the surrogate");
    }
    let multi_class = matches!(
        model.surrogate.output(),
        sidelight_explain::OutputKind::MultiClass { .. }
    );
    let model = Arc::new(model);
    live.model.store(Some(model.clone()));
    // An erasure between the check above and the swap found the previous surrogate in
    // service, not this one.
    if live.erased_since(&model.provenance) {
        live.retire(&model, "trained on rows of a subject erased since");
        return false;
    }
    // A ranking's training window holds every candidate, but the monitor sees only the
    // items shown, the best of them: against all candidates they would look drifted by
    // construction. Its drift reference stays the first shown items.
    if let Some(monitor) = live
        .monitor
        .as_ref()
        .filter(|_| live.config.ranking.is_none())
    {
        let reference = reference_rows(live, rows, outputs, width, multi_class);
        monitor.set_reference(names, reference);
    }
    true
}

/// Adds a version to the route's history (the newest 50 are kept) and saves it, unless
/// a version with its number is there already.
pub fn add_to_history(live: &RouteLive, record: VersionRecord) {
    if let Ok(mut history) = live.history.lock() {
        if history.iter().any(|r| r.version == record.version) {
            return;
        }
        history.push(record);
        let keep = history.len().saturating_sub(50);
        history.drain(..keep);
    }
    live.save_history();
}

/// The training rows with the output the explanations report for each (the configured
/// class, or the most likely one), for the drift monitor's reference.
fn reference_rows(
    live: &RouteLive,
    rows: Vec<Vec<Value>>,
    outputs: &[f64],
    width: usize,
    multi_class: bool,
) -> Vec<(Arc<[Value]>, f64)> {
    rows.into_iter()
        .zip(outputs.chunks(width.max(1)))
        .map(|(row, out)| {
            let class = if multi_class {
                live.config
                    .explain_class
                    .filter(|&c| c < out.len())
                    .unwrap_or_else(|| sidelight_explain::fidelity::argmax(out))
            } else {
                0
            };
            (Arc::from(row), out.get(class).copied().unwrap_or(f64::NAN))
        })
        .collect()
}

/// Fits a surrogate on the batch and judges it at the honest gate. `version` is called
/// only once something is fitted, so that a training that never started uses no number.
pub fn train(
    live: &RouteLive,
    batch: &Batch,
    version: impl FnOnce() -> u64,
) -> Result<(LiveModel, VersionRecord), TrainError> {
    let config = &live.config;
    let s = &config.surrogate;
    let failed = |e: &dyn std::fmt::Display| TrainError::Failed(e.to_string());
    let names = &batch.names;
    let rows = &batch.rows;
    let schema = if config.features.is_empty() {
        Schema::infer(names, rows).map_err(|e| failed(&e))?
    } else {
        Schema::new(
            config
                .features
                .iter()
                .map(|f| {
                    Feature::new(
                        f.name.clone(),
                        match f.kind {
                            FeatureKindConfig::Numeric => FeatureKind::Numeric,
                            FeatureKindConfig::Boolean => FeatureKind::Boolean,
                            FeatureKindConfig::Categorical => FeatureKind::Categorical,
                        },
                    )
                })
                .collect(),
        )
        .map_err(|e| failed(&e))?
    };
    // Counted before any fitting: no CPU is spent on a surrogate that could not be judged.
    let split = sidelight_explain::unseen_split(rows, s.holdout_fraction);
    let judged_anyway = batch.after_erasure && !split.holdout.is_empty();
    // Never more than the warm-up can give, so that a route with a small warm-up is
    // judged once it is over (the confidence bound widens on few rows instead).
    let need = s
        .min_holdout_rows
        .min(((s.warm_up_rows as f64 * s.holdout_fraction).round() as usize).max(5));
    if split.holdout.len() < need && !judged_anyway {
        return Err(TrainError::TooFewHeldOut {
            have: split.holdout.len(),
            need,
        });
    }
    let version = version();
    let kind = output_kind(config.output, batch.width, &batch.outputs);
    let candidates = candidates(config, version)?;
    let share = s.cpu_share;
    let mut busy_since = Instant::now();
    // Pausing between trees in proportion to the time spent keeps the trainer to its CPU
    // share without a scheduler priority, which would need privileges.
    let mut throttle = |_| {
        if share < 1.0 && !live.stopping.load(Ordering::Relaxed) {
            let busy = busy_since.elapsed();
            std::thread::sleep(busy.mul_f64((1.0 - share) / share));
        }
        busy_since = Instant::now();
    };
    let gate = GateOptions {
        fraction: s.holdout_fraction,
        confidence: s.gate_confidence,
        resamples: 200,
        seed: version,
    };
    let (surrogate, report) = sidelight_explain::distill::fit_gated(
        schema,
        Labelled {
            rows,
            outputs: &batch.outputs,
            sources: &[],
        },
        Labelled {
            rows: &batch.synthetic_rows,
            outputs: &batch.synthetic_outputs,
            sources: &batch.synthetic_sources,
        },
        kind,
        &candidates,
        gate,
        &mut throttle,
    )
    .map_err(|e| failed(&e))?;
    let chosen = &candidates[report.chosen.min(candidates.len() - 1)];
    let judged = report.real_r2_lower.unwrap_or(report.real.r2);
    let accepted = judged >= s.min_r2;
    // The reason names the figure that was compared first, so that it reads true.
    let (judged_what, rest) = match report.real_r2_lower {
        Some(lower) => (
            format!(
                "{:.0}% lower bound of held-out R² {lower:.4}",
                s.gate_confidence * 100.0
            ),
            format!("R² {:.4} on {} unseen rows", report.real.r2, report.real.n),
        ),
        None => (
            format!("held-out R² {:.4}", report.real.r2),
            format!("{} unseen rows", report.real.n),
        ),
    };
    let record = VersionRecord {
        version,
        trained_at: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        rows: rows.len(),
        r2: report.real.r2,
        mae: report.real.mae,
        agreement: report.real.agreement,
        accepted,
        reason: if accepted {
            format!("{judged_what} ≥ {} ({rest})", s.min_r2)
        } else {
            format!(
                "{judged_what} < {} ({rest}): the previous surrogate stays in service",
                s.min_r2
            )
        },
        gate: Some(GateFacts {
            holdout_rows: report.real.n,
            distinct_rows: report.distinct_rows,
            r2_lower: report.real_r2_lower,
            confidence: s.gate_confidence,
            synthetic_r2: report.synthetic.as_ref().map(|f| f.r2),
            synthetic_holdout_rows: report.synthetic.as_ref().map_or(0, |f| f.n),
            synthetic_rows: report.synthetic_train_rows,
            synthetic_set_aside: report.synthetic_set_aside,
            trees: chosen.n_trees(),
            depth: chosen.max_depth(),
            learning_rate: chosen.learning_rate(),
            validation_r2: report.validation_r2.clone(),
        }),
        faithfulness: None,
        retired: None,
    };
    // The window's rows are in the schema's order (configured or inferred from the same
    // names), which is what the typical values are computed over: real rows only.
    let mut model =
        LiveModel::new(surrogate, record.clone(), config, rows).map_err(|e| failed(&e))?;
    model.provenance = batch.provenance.clone();
    Ok((model, record))
}

/// The configured boosting parameters and, with `tune`, two neighbours: shallower, and
/// deeper with a smaller step and more trees (early stopping trims what is not needed).
fn candidates(config: &ExplainConfig, seed: u64) -> Result<Vec<GbtValidParams>, TrainError> {
    let s = &config.surrogate;
    let make = |trees: usize, depth: usize, rate: f64| {
        GbtParams::default()
            .n_trees(trees)
            .max_depth(depth)
            .learning_rate(rate)
            .seed(seed)
            .check()
            .map_err(|e| TrainError::Failed(format!("the boosting parameters: {e}")))
    };
    let mut out = vec![make(s.trees, s.depth, s.learning_rate)?];
    if s.tune {
        if s.depth > 2 {
            out.push(make(s.trees, s.depth - 2, s.learning_rate)?);
        }
        if s.depth + 2 <= 12 {
            out.push(make(
                s.trees.saturating_mul(2),
                s.depth + 2,
                s.learning_rate / 2.0,
            )?);
        }
    }
    Ok(out)
}

/// Decides what the outputs are, from the config or, on `auto`, from the values.
fn output_kind(config: OutputConfig, width: usize, outputs: &[f64]) -> OutputKind {
    let all_probabilities = outputs.iter().all(|v| (0.0..=1.0).contains(v));
    let classes = || OutputKind::MultiClass {
        classes: (0..width).map(|c| c.to_string()).collect(),
    };
    match (config, width) {
        (OutputConfig::Score, _) => OutputKind::Regression,
        (OutputConfig::Probability, 1) => OutputKind::BinaryProbability,
        (OutputConfig::Probability, _) => classes(),
        (OutputConfig::Auto, 1) if all_probabilities => OutputKind::BinaryProbability,
        (OutputConfig::Auto, 1) => OutputKind::Regression,
        // Several values per row are read as one probability per class.
        (OutputConfig::Auto, _) => classes(),
    }
}
