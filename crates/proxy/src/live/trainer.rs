//! The background trainer of one route: waits until the window is due for training,
//! fits a new surrogate on its own thread with a bounded CPU share, measures fidelity on
//! held-out traffic, and puts the new surrogate in service only if it passes the gate.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use linfa::ParamGuard;
use sidelight_explain::{
    Feature, FeatureKind, GbtParams, Holdout, OutputKind, Schema, Surrogate, Value,
};

use super::{LiveModel, RouteLive, VersionRecord};
use crate::config::{FeatureKindConfig, OutputConfig};

pub(super) fn run(live: &RouteLive) {
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
        let due = warm
            && (live.model.load().is_none()
                || window.retrain_now
                || window.since_training >= live.config.surrogate.retrain_every_rows as u64
                || (window.since_training > 0 && last_training.elapsed() >= interval));
        if !due {
            continue;
        }
        let names = window.names.clone();
        let width = window.width.unwrap_or(1);
        let rows: Vec<Vec<Value>> = window.rows.iter().map(|w| w.row.clone()).collect();
        let outputs: Vec<f64> = window
            .rows
            .iter()
            .flat_map(|w| w.output.iter().copied())
            .collect();
        drop(window);
        if let Ok(mut window) = live.window.lock() {
            window.since_training = 0;
            window.retrain_now = false;
        }
        last_training = Instant::now();
        let version = live.next_version.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let outcome = train(live, &names, &rows, &outputs, width, version);
        match outcome {
            Ok((model, record)) => {
                tracing::info!(
                    route = %live.route, version, r2 = record.r2, accepted = record.accepted,
                    seconds = started.elapsed().as_secs_f64(), "surrogate trained"
                );
                if record.accepted {
                    install(live, model, &names, rows, &outputs, width);
                }
                add_to_history(live, record);
            }
            Err(error) => {
                tracing::warn!(route = %live.route, version, %error, "surrogate training failed");
            }
        }
    }
}

/// Puts an accepted surrogate in service: saves it to `state.dir` (so that a restart
/// finds it), swaps it in, and gives the drift monitor its training rows as reference.
pub(super) fn install(
    live: &RouteLive,
    model: LiveModel,
    names: &[String],
    rows: Vec<Vec<Value>>,
    outputs: &[f64],
    width: usize,
) {
    if let Err(error) = persist(live, &model) {
        tracing::warn!(route = %live.route, %error, "cannot save the surrogate");
    }
    let multi_class = matches!(
        model.surrogate.output(),
        sidelight_explain::OutputKind::MultiClass { .. }
    );
    live.model.store(Some(Arc::new(model)));
    if let Some(monitor) = &live.monitor {
        let reference = reference_rows(live, rows, outputs, width, multi_class);
        monitor.set_reference(names, reference);
    }
}

/// Adds a version to the route's history (the newest 50 are kept) and saves it, unless
/// a version with its number is there already.
pub(super) fn add_to_history(live: &RouteLive, record: VersionRecord) {
    if let Ok(mut history) = live.history.lock() {
        if history.iter().any(|r| r.version == record.version) {
            return;
        }
        history.push(record);
        let keep = history.len().saturating_sub(50);
        history.drain(..keep);
    }
    save_history(live);
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

pub(super) fn train(
    live: &RouteLive,
    names: &[String],
    rows: &[Vec<Value>],
    outputs: &[f64],
    width: usize,
    version: u64,
) -> Result<(LiveModel, VersionRecord), String> {
    let config = &live.config;
    let schema = if config.features.is_empty() {
        Schema::infer(names, rows).map_err(|e| e.to_string())?
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
        .map_err(|e| e.to_string())?
    };
    let kind = output_kind(config.output, width, outputs);
    let params = GbtParams::default()
        .n_trees(config.surrogate.trees)
        .max_depth(config.surrogate.depth)
        .learning_rate(config.surrogate.learning_rate)
        .seed(version)
        .check()
        .map_err(|e| e.to_string())?;
    let share = config.surrogate.cpu_share;
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
    let (surrogate, fidelity) = Surrogate::fit_and_evaluate(
        schema,
        rows,
        outputs,
        kind,
        &params,
        Holdout {
            fraction: config.surrogate.holdout_fraction,
            seed: version,
        },
        &mut throttle,
    )
    .map_err(|e| e.to_string())?;
    let accepted = fidelity.r2 >= config.surrogate.min_r2;
    let record = VersionRecord {
        version,
        trained_at: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        rows: rows.len(),
        r2: fidelity.r2,
        mae: fidelity.mae,
        agreement: fidelity.agreement,
        accepted,
        reason: if accepted {
            format!(
                "held-out R² {:.4} ≥ {}",
                fidelity.r2, config.surrogate.min_r2
            )
        } else {
            format!(
                "held-out R² {:.4} < {}: the previous surrogate stays in service",
                fidelity.r2, config.surrogate.min_r2
            )
        },
    };
    // The window's rows are in the schema's order (configured or inferred from the same
    // names), which is what the typical values are computed over.
    let model = LiveModel::new(surrogate, record.clone(), config, rows)?;
    Ok((model, record))
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

fn persist(live: &RouteLive, model: &LiveModel) -> Result<(), String> {
    let json = model.surrogate.to_json().map_err(|e| e.to_string())?;
    write_atomically(&live.surrogate_path(), json.as_bytes())
}

fn save_history(live: &RouteLive) {
    let Ok(history) = live.history.lock() else {
        return;
    };
    let Ok(json) = serde_json::to_vec_pretty(&*history) else {
        return;
    };
    drop(history);
    if let Err(error) = write_atomically(&live.meta_path(), &json) {
        tracing::warn!(route = %live.route, %error, "cannot save the surrogate history");
    }
}

/// Writes to a temporary file and renames it, so a crash never leaves half a file.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, bytes).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}
