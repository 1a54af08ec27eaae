//! Active distillation: one task per route with `[routes.explain.distill] enabled`, on
//! the admin runtime, asking the upstream about synthetic rows made from the training
//! window ([`sidelight_explain::distill`]) and giving the answers to the trainer.
//!
//! What it must never do: slow or fail customer traffic, or let a synthetic row reach
//! the audit log, the monitor or the data plane. So its calls go straight to the upstream
//! with a client of their own, marked `x-sidelight-probe: 1`; it sends nothing while the
//! upstream has failed a customer request in the last [`QUIET_AFTER_ERROR`]; and it backs
//! off (doubling, up to `max_backoff`) after an error or a call slower than `slow_call`.
//!
//! The budget: at most `synthetic_per_real` synthetic rows per real row the route has
//! seen, and `max_calls_per_second` calls. Rows the model refuses (a 4xx, an answer that
//! does not read) are counted, and the generator that made them is used less: each of
//! the two generators is weighted by its recent success, never below a floor, so a model
//! that refuses hybrids still gets perturbations and is asked about hybrids again now and
//! then.
//!
//! After each accepted surrogate it also measures faithfulness: KernelSHAP against the
//! real model for `faithfulness_rows` rows of the window, within `faithfulness_calls`
//! calls each, compared with the surrogate's attributions (Spearman, top-1), and written
//! into the version's record.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use sidelight_explain::Value;
use sidelight_explain::distill::{SyntheticKind, hybrids, is_held_out, perturbations, row_key};

use crate::live::{LiveMetrics, Origin, RouteLive};
use sidelight_data::probe::{ProbeError, ProbeInput, UpstreamCaller, kernel_probe, spearman};
use sidelight_protocol::{self as adapter, Protocol};

/// No synthetic row is sent for this long after the upstream failed a customer request.
pub const QUIET_AFTER_ERROR: Duration = Duration::from_secs(10);
/// Real rows (the newest) that synthetic rows are made from.
const SOURCE_ROWS: usize = 2000;
/// Rows whose recent neighbourhood perturbations explore.
const RECENT_ROWS: usize = 200;
/// How often a waiting distiller looks whether the route is stopping.
const STOP_CHECK: Duration = Duration::from_millis(200);
/// Neither generator's weight falls below this.
const WEIGHT_FLOOR: f64 = 0.05;

/// A route's active distillation (`[routes.explain.distill]`); it ends when the route
/// stops.
pub struct DistillJob {
    live: Arc<RouteLive>,
    caller: Arc<UpstreamCaller>,
    metrics: LiveMetrics,
}

impl DistillJob {
    /// The route's distiller, if distillation is enabled (not for a fleet's shared
    /// surrogate, whose trainer learns from the fleet's table).
    pub fn for_route(live: &Arc<RouteLive>, caller: &Arc<UpstreamCaller>) -> Option<Self> {
        if !live.config.distill.enabled || live.is_shared() {
            return None;
        }
        Some(Self {
            live: live.clone(),
            caller: caller.clone(),
            metrics: live.metrics()?.clone(),
        })
    }
}

impl crate::job::Job for DistillJob {
    fn name(&self) -> String {
        format!("distiller/{}", self.live.route)
    }

    fn run(&self) {
        let distiller =
            Distiller::new(self.live.clone(), self.caller.clone(), self.metrics.clone());
        crate::job::block_on(&self.name(), distiller.run());
    }

    fn stop(&self) {
        self.live.stop();
    }
}

struct Distiller {
    live: Arc<RouteLive>,
    caller: Arc<UpstreamCaller>,
    metrics: LiveMetrics,
    /// Synthetic rows sent (answered or not).
    sent: u64,
    backoff: Duration,
    /// Weight of hybrids against perturbations, adapted to what the model accepts.
    hybrid_weight: f64,
    seed: u64,
    /// The last version whose faithfulness was measured, and when.
    checked_version: u64,
    checked_at: Option<Instant>,
}

/// One call's synthetic rows, in the window's order, with where each came from.
struct Made {
    kind: SyntheticKind,
    names: Vec<String>,
    rows: Vec<Vec<Value>>,
    origins: Vec<Origin>,
}

impl Distiller {
    fn new(live: Arc<RouteLive>, caller: Arc<UpstreamCaller>, metrics: LiveMetrics) -> Self {
        let hybrid_weight = live.config.distill.hybrid_share;
        Self {
            live,
            caller,
            metrics,
            sent: 0,
            backoff: Duration::ZERO,
            hybrid_weight,
            seed: 1,
            checked_version: 0,
            checked_at: None,
        }
    }

    async fn run(mut self) {
        let config = self.live.config.distill.clone();
        let pace = Duration::from_secs_f64(1.0 / config.max_calls_per_second);
        loop {
            // In short steps: a long back-off must not hold up shutdown.
            let until = tokio::time::Instant::now() + pace + self.backoff;
            while tokio::time::Instant::now() < until {
                if self.live.stopping.load(Ordering::Relaxed) {
                    return;
                }
                tokio::time::sleep_until(until.min(tokio::time::Instant::now() + STOP_CHECK)).await;
            }
            if self.live.stopping.load(Ordering::Relaxed) {
                return;
            }
            self.check_faithfulness().await;
            if self.live.upstream_failed_within(QUIET_AFTER_ERROR) {
                continue;
            }
            let Some(made) = self.make() else {
                continue;
            };
            self.ask(made).await;
            self.metrics
                .set_backoff(&self.live.route, self.backoff.as_secs_f64());
        }
    }

    /// Synthetic rows for one call, within the budget; `None` when the budget is spent,
    /// the window is too small, or no client request has shown where to send them.
    fn make(&mut self) -> Option<Made> {
        let config = &self.live.config.distill;
        let window = self.live.window.lock().ok()?;
        let allowed = (window.seen as f64 * config.synthetic_per_real) as u64;
        let budget = allowed.saturating_sub(self.sent);
        let per_call = match self.live.protocol {
            Protocol::Pointer { .. } | Protocol::Ranking { .. } => 1,
            _ => config.batch_rows,
        };
        let n = usize::try_from(budget).unwrap_or(usize::MAX).min(per_call);
        if n == 0 || window.rows.len() < 2 {
            return None;
        }
        // Only rows on the training side of the gate: a synthetic row made from a
        // held-out row would be set aside at training, a call spent for nothing.
        let fraction = self.live.config.surrogate.holdout_fraction;
        let start = window.rows.len().saturating_sub(SOURCE_ROWS);
        let sources: Vec<(&[Value], Option<&Arc<str>>)> = window
            .rows
            .range(start..)
            .filter(|w| !is_held_out(row_key(&w.row), fraction))
            .map(|w| (w.row.as_slice(), w.subject.as_ref()))
            .collect();
        if sources.len() < 2 {
            return None;
        }
        self.seed = self.seed.wrapping_add(1);
        let draw = (self.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64;
        let hybrid = draw / (1u64 << 53) as f64 <= self.hybrid_weight;
        let rows_only: Vec<&[Value]> = sources.iter().map(|(r, _)| *r).collect();
        let (kind, made) = if hybrid {
            (SyntheticKind::Hybrid, hybrids(&rows_only, n, self.seed))
        } else {
            let recent = rows_only.len().saturating_sub(RECENT_ROWS);
            (
                SyntheticKind::Perturbation,
                perturbations(&rows_only, recent, n, self.seed),
            )
        };
        // The subjects whose values a row holds (erasing one of them removes it), and
        // the keys of its source rows (none made from a held-out row is trained on).
        let origins = made
            .iter()
            .map(|m| {
                let mut origin = Origin::default();
                for &i in &m.sources {
                    let Some((row, subject)) = sources.get(i) else {
                        continue;
                    };
                    origin.keys.push(row_key(row));
                    if let Some(s) = subject {
                        if !origin.subjects.iter().any(|t| t == *s) {
                            origin.subjects.push((*s).clone());
                        }
                    }
                }
                origin
            })
            .collect();
        let made = made.into_iter().map(|m| m.row).collect();
        Some(Made {
            kind,
            names: window.names.clone(),
            rows: made,
            origins,
        })
    }

    async fn ask(&mut self, made: Made) {
        let Some(target) = self.live.columns.target() else {
            return;
        };
        let (names, extras) = self.live.wire(&made.names);
        let body = match adapter::write_request(&self.live.protocol, &names, &made.rows) {
            Ok(body) => adapter::with_extras(body, &extras),
            Err(error) => {
                // Values the protocol cannot carry (a v2 column of mixed kinds): this
                // generator's rows are not sendable as made.
                tracing::debug!(route = %self.live.route, %error, "synthetic rows not writable");
                self.adapt(made.kind, false);
                return;
            }
        };
        let n = made.rows.len();
        self.sent += n as u64;
        let started = Instant::now();
        let answer = self
            .caller
            .call(
                &target,
                &self.live.protocol,
                self.live.response_limit,
                body,
                n,
            )
            .await;
        let elapsed = started.elapsed();
        let live = self.live.clone();
        let config = &live.config.distill;
        let route = live.route.clone();
        match answer {
            Ok(outputs) => {
                self.metrics.distilled(&route, "ok", n as u64);
                self.adapt(made.kind, true);
                let rows = made
                    .rows
                    .into_iter()
                    .zip(outputs)
                    .zip(made.origins)
                    .map(|((row, output), origin)| (row, output, origin))
                    .collect();
                self.live.add_synthetic(&made.names, rows);
                self.backoff = if elapsed > config.slow_call {
                    grow(self.backoff, config.max_backoff)
                } else {
                    Duration::ZERO
                };
            }
            Err(ProbeError::Refused(_) | ProbeError::Response(_)) => {
                self.metrics.distilled(&route, "rejected", n as u64);
                self.adapt(made.kind, false);
            }
            Err(error) => {
                self.metrics.distilled(&route, "failed", n as u64);
                self.backoff = grow(self.backoff, config.max_backoff);
                tracing::debug!(route = %route, %error, backoff = ?self.backoff, "distillation call failed; backing off");
            }
        }
        let seen = self.live.window.lock().map_or(0, |w| w.seen);
        let total = seen + self.sent;
        if total > 0 {
            self.metrics
                .set_share(&route, self.sent as f64 / total as f64);
        }
    }

    /// Moves the generators' weights towards the one the model answers.
    fn adapt(&mut self, kind: SyntheticKind, answered: bool) {
        let towards_hybrid = (kind == SyntheticKind::Hybrid) == answered;
        let step = 0.1;
        self.hybrid_weight = if towards_hybrid {
            self.hybrid_weight + step * (1.0 - self.hybrid_weight)
        } else {
            self.hybrid_weight - step * self.hybrid_weight
        }
        .clamp(WEIGHT_FLOOR, 1.0 - WEIGHT_FLOOR);
        if answered {
            // Successes pull back towards the configured mix, so that one refusal long
            // ago does not skew the mix for good.
            let configured = self.live.config.distill.hybrid_share;
            self.hybrid_weight += 0.02 * (configured - self.hybrid_weight);
        }
    }

    /// KernelSHAP on the real model for a few window rows of a newly accepted version,
    /// compared with the surrogate's attributions; the result goes into its record.
    async fn check_faithfulness(&mut self) {
        let config = self.live.config.distill.clone();
        let Some(model) = self.live.model.load_full() else {
            return;
        };
        let version = model.version();
        if config.faithfulness_rows == 0 || version == self.checked_version {
            return;
        }
        if self
            .checked_at
            .is_some_and(|at| at.elapsed() < config.faithfulness_every)
        {
            return;
        }
        self.checked_version = version;
        self.checked_at = Some(Instant::now());
        let Some(target) = self.live.columns.target() else {
            self.checked_version = 0;
            return;
        };
        let samples: Vec<(Vec<Value>, Vec<f64>)> = match self.live.window.lock() {
            Ok(window) if window.names == model.names() && !window.rows.is_empty() => {
                let len = window.rows.len();
                let k = config.faithfulness_rows.min(len);
                // The newest rows, spread over the last few hundred.
                (0..k)
                    .filter_map(|i| {
                        window
                            .rows
                            .get(len - 1 - i * (len.min(300) / k.max(1)).max(1).min(len - 1))
                    })
                    .map(|w| (w.row.clone(), w.output.clone()))
                    .collect()
            }
            _ => return,
        };
        let live = self.live.clone();
        let caller = self.caller.clone();
        let runtime = tokio::runtime::Handle::current();
        let logit = model.surrogate.output().is_probability();
        let outcome = tokio::task::spawn_blocking(move || {
            let (mut rhos, mut top1, mut calls) = (Vec::new(), 0usize, 0usize);
            for (row, output) in samples {
                let class = model.explained_output(&live.config, &output);
                let Ok(surrogate) = model.contributions(&row, class) else {
                    continue;
                };
                let input = match ProbeInput::for_row(
                    &live,
                    model.names(),
                    row,
                    (class, logit),
                    config.faithfulness_calls,
                    20,
                ) {
                    Ok(input) => input,
                    Err(error) => {
                        tracing::debug!(route = %live.route, %error, "faithfulness check not possible");
                        continue;
                    }
                };
                let send = |body: Vec<u8>, rows: usize| {
                    runtime.block_on(caller.call(
                        &target,
                        &live.protocol,
                        live.response_limit,
                        body,
                        rows,
                    ))
                };
                match kernel_probe(&input, send) {
                    Ok(kernel) => {
                        calls += kernel.calls;
                        if let Some(rho) = spearman(&kernel.values, &surrogate) {
                            rhos.push(rho);
                        }
                        if argmax_abs(&kernel.values) == argmax_abs(&surrogate) {
                            top1 += 1;
                        }
                    }
                    Err(error) => {
                        tracing::debug!(route = %live.route, %error, "faithfulness check failed");
                    }
                }
            }
            (rhos, top1, calls)
        })
        .await;
        let Ok((rhos, top1, calls)) = outcome else {
            return;
        };
        self.metrics.checked(&self.live.route, calls as u64);
        if rhos.is_empty() {
            return;
        }
        let faithfulness = crate::live::model::Faithfulness {
            rows: rhos.len(),
            spearman: rhos.iter().sum::<f64>() / rhos.len() as f64,
            top1: top1 as f64 / rhos.len() as f64,
            calls,
        };
        tracing::info!(
            route = %self.live.route, version, spearman = faithfulness.spearman,
            top1 = faithfulness.top1, calls, "surrogate checked against the real model"
        );
        crate::trainer::set_faithfulness(&self.live, version, faithfulness);
    }
}

fn grow(backoff: Duration, max: Duration) -> Duration {
    (backoff * 2).max(Duration::from_millis(500)).min(max)
}

fn argmax_abs(values: &[f64]) -> Option<usize> {
    (0..values.len()).max_by(|&a, &b| values[a].abs().total_cmp(&values[b].abs()))
}
