//! Distillation sets: what a surrogate is trained and judged on besides the traffic.
//!
//! Traffic alone cannot tell two correlated features apart. If marital status and
//! relationship always move together in the rows a surrogate sees, any split of the credit
//! between them fits the traffic equally well, and TreeSHAP faithfully reports whichever
//! split the trees happened to learn — which need not be the model's. Rows that break the
//! correlation, answered by the model itself, settle it. This module makes such rows from
//! real ones; the proxy asks the model about them (opt-in, within a budget).
//!
//! - [`hybrids`]: each feature taken from one of two real rows, chosen by a fair coin per
//!   feature. Every value is one a real row had, so the model gets nothing it could not
//!   have been sent; the joint distribution is the product of pairs, which is exactly
//!   what separates correlated features.
//! - [`perturbations`]: a recent real row with a few features (at least one, about a
//!   quarter) redrawn from other real rows — the neighbourhood of the traffic, where
//!   explanations are read.
//!
//! It also holds the honest gate's two pieces:
//!
//! - [`unseen_split`]: held-out rows are distinct rows, a fixed share of all rows
//!   picked by their content ([`is_held_out`]), and no copy of a held-out row is a
//!   training row. A random split of replayed traffic puts copies of one row on both
//!   sides and measures memory, not fidelity.
//! - [`r2_lower_bound`]: a one-sided bootstrap confidence bound on held-out R², so that a
//!   small held-out set cannot wave a lucky surrogate through.
//!
//! Pure and deterministic for a seed, like the rest of the crate.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use crate::fidelity::{Fidelity, FidelityError};
use crate::gbt::GbtValidParams;
use crate::rng::SplitMix64;
use crate::schema::{Schema, Value};
use crate::surrogate::{FitProgress, OutputKind, Surrogate, SurrogateError, check_length};

/// Which generator made a synthetic row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SyntheticKind {
    /// Features from two real rows ([`hybrids`]).
    Hybrid,
    /// A real row with a few features redrawn ([`perturbations`]).
    Perturbation,
}

impl SyntheticKind {
    /// The stable name, for metrics and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hybrid => "hybrid",
            Self::Perturbation => "perturbation",
        }
    }
}

/// A synthetic row and the indices of the real rows its values came from (so that
/// erasing a person can remove every row made from theirs).
#[derive(Debug, Clone, PartialEq)]
pub struct Synthetic {
    /// The row, in the order of the rows it was made from.
    pub row: Vec<Value>,
    /// Indices into the real rows it took values from.
    pub sources: Vec<usize>,
}

/// `n` hybrid rows of `rows`: every feature of a hybrid comes from one of two distinct
/// random rows. Empty when there are fewer than two rows.
pub fn hybrids<R: AsRef<[Value]>>(rows: &[R], n: usize, seed: u64) -> Vec<Synthetic> {
    if rows.len() < 2 {
        return Vec::new();
    }
    let mut rng = SplitMix64::new(seed);
    (0..n)
        .map(|_| {
            let a = rng.below(rows.len());
            let b = (a + 1 + rng.below(rows.len() - 1)) % rows.len();
            let row = rows[a]
                .as_ref()
                .iter()
                .zip(rows[b].as_ref())
                .map(|(x, y)| {
                    if rng.next_u64() & 1 == 0 {
                        x.clone()
                    } else {
                        y.clone()
                    }
                })
                .collect();
            Synthetic {
                row,
                sources: vec![a, b],
            }
        })
        .collect()
}

/// `n` perturbations: each starts from one of `pool[recent..]` (the recent rows) and
/// redraws `max(1, width / 4)` distinct features (chosen at random) from random rows of
/// `pool`. Empty when there is no recent row.
pub fn perturbations<R: AsRef<[Value]>>(
    pool: &[R],
    recent: usize,
    n: usize,
    seed: u64,
) -> Vec<Synthetic> {
    if recent >= pool.len() {
        return Vec::new();
    }
    let mut rng = SplitMix64::new(seed);
    (0..n)
        .map(|_| {
            let start = recent + rng.below(pool.len() - recent);
            let mut row = pool[start].as_ref().to_vec();
            let mut sources = vec![start];
            let width = row.len();
            let mut columns: Vec<usize> = (0..width).collect();
            rng.shuffle(&mut columns);
            for &j in columns.iter().take((width / 4).max(1).min(width)) {
                let donor = rng.below(pool.len());
                if let Some(v) = pool[donor].as_ref().get(j) {
                    row[j] = v.clone();
                    sources.push(donor);
                }
            }
            Synthetic { row, sources }
        })
        .collect()
}

/// A row's identity for de-duplication: equal rows hash alike (numbers by their bits,
/// with every NaN one value and `-0.0` equal to `0.0`). Synthetic rows keep the keys of
/// the real rows they were made from ([`Labelled::sources`]).
pub fn row_key(row: &[Value]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for v in row {
        match v {
            Value::Number(x) if x.is_nan() => 0u8.hash(&mut h),
            Value::Number(x) => {
                1u8.hash(&mut h);
                (if *x == 0.0 { 0.0f64 } else { *x }).to_bits().hash(&mut h);
            }
            Value::Bool(b) => {
                2u8.hash(&mut h);
                b.hash(&mut h);
            }
            Value::Text(t) => {
                3u8.hash(&mut h);
                t.hash(&mut h);
            }
            Value::Missing => 4u8.hash(&mut h),
        }
    }
    h.finish()
}

fn same_row(a: &[Value], b: &[Value]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| match (x, y) {
            (Value::Number(x), Value::Number(y)) => x == y || (x.is_nan() && y.is_nan()),
            _ => x == y,
        })
}

/// Training and held-out row indices for the honest gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnseenSplit {
    /// Rows to train on (every copy of a row not held out), ascending.
    pub train: Vec<usize>,
    /// One row per held-out distinct row (its newest copy), ascending.
    pub holdout: Vec<usize>,
    /// Distinct rows in all.
    pub distinct: usize,
}

/// Whether the distinct row with this [`row_key`] is held out at `fraction`: a fixed
/// pseudo-random share of all possible rows, so a row is on the same side in every
/// window and at every training. That is what lets active distillation make synthetic
/// rows from training-side rows only (rows made from a held-out row would teach the
/// surrogate the answers it is judged on).
pub fn is_held_out(key: u64, fraction: f64) -> bool {
    picked(key, fraction, 0)
}

/// Whether `key` falls in a `fraction` share of keys; another `salt` picks another,
/// independent share (validation rows within the training rows).
fn picked(key: u64, fraction: f64, salt: u64) -> bool {
    // The SplitMix64 finaliser spreads keys evenly over the unit interval.
    let mut z =
        (key ^ salt.wrapping_mul(0xD6E8_FEB8_6659_FD93)).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    ((z >> 11) as f64 / (1u64 << 53) as f64) < fraction
}

/// Splits rows in arrival order (oldest first) so that held-out rows are the *distinct*
/// rows picked by [`is_held_out`] (about `fraction` of them), no copy of a held-out row
/// is trained on, and each held-out row is measured once, at its newest copy (the
/// model's most recent answer). Replayed traffic cannot inflate R², and a row never
/// changes sides as the window moves. When there are at least two distinct rows and
/// none falls in the held-out share, the most recently seen one is held out.
pub fn unseen_split<R: AsRef<[Value]>>(rows: &[R], fraction: f64) -> UnseenSplit {
    split_by(rows, fraction, 0)
}

fn split_by<R: AsRef<[Value]>>(rows: &[R], fraction: f64, salt: u64) -> UnseenSplit {
    // For each distinct row ("class"), the index of its newest copy.
    let mut classes: HashMap<u64, Vec<usize>> = HashMap::new();
    let mut last_copy: Vec<usize> = Vec::new();
    let mut keys: Vec<u64> = Vec::new();
    let mut class_of = vec![0usize; rows.len()];
    for (i, row) in rows.iter().enumerate() {
        let row = row.as_ref();
        let key = row_key(row);
        let bucket = classes.entry(key).or_default();
        let found = bucket
            .iter()
            .copied()
            .find(|&c| same_row(rows[last_copy[c]].as_ref(), row));
        let class = match found {
            Some(c) => c,
            None => {
                last_copy.push(i);
                keys.push(key);
                bucket.push(last_copy.len() - 1);
                last_copy.len() - 1
            }
        };
        last_copy[class] = i;
        class_of[i] = class;
    }
    let distinct = last_copy.len();
    let mut held: Vec<bool> = keys.iter().map(|&k| picked(k, fraction, salt)).collect();
    if distinct >= 2 && fraction > 0.0 && !held.contains(&true) {
        if let Some(newest) = (0..distinct).max_by_key(|&c| last_copy[c]) {
            held[newest] = true;
        }
    }
    if distinct >= 1 && held.iter().all(|&h| h) {
        // Something must be left to train on.
        if let Some(oldest) = (0..distinct).min_by_key(|&c| last_copy[c]) {
            held[oldest] = false;
        }
    }
    let train = (0..rows.len()).filter(|&i| !held[class_of[i]]).collect();
    let mut holdout: Vec<usize> = (0..distinct)
        .filter(|&c| held[c])
        .map(|c| last_copy[c])
        .collect();
    holdout.sort_unstable();
    UnseenSplit {
        train,
        holdout,
        distinct,
    }
}

/// The one-sided lower confidence bound of R² (`1 − SSE/SST` over the pooled values) at
/// `confidence` (e.g. 0.9), by a percentile bootstrap over rows with `resamples` draws,
/// deterministic for `seed`. `surrogate` and `model` are flat, `width` values per row.
/// `None` with fewer than two rows, or when every resample has no variance.
pub fn r2_lower_bound(
    surrogate: &[f64],
    model: &[f64],
    width: usize,
    confidence: f64,
    resamples: usize,
    seed: u64,
) -> Option<f64> {
    let width = width.max(1);
    let rows = model.len() / width;
    if rows < 2 || surrogate.len() != model.len() || resamples == 0 {
        return None;
    }
    let mut rng = SplitMix64::new(seed);
    let mut draws = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        // Two passes over the drawn rows: the mean, then the sums of squares.
        let picks: Vec<usize> = (0..rows).map(|_| rng.below(rows)).collect();
        let values = || {
            picks
                .iter()
                .flat_map(|&r| (r * width..(r + 1) * width).map(|i| (surrogate[i], model[i])))
        };
        let n = (rows * width) as f64;
        let mean = values().map(|(_, m)| m).sum::<f64>() / n;
        let (mut sse, mut sst) = (0.0, 0.0);
        for (s, m) in values() {
            sse += (s - m) * (s - m);
            sst += (m - mean) * (m - mean);
        }
        if sst > 0.0 {
            draws.push(1.0 - sse / sst);
        }
    }
    if draws.is_empty() {
        return None;
    }
    draws.sort_unstable_by(f64::total_cmp);
    let index = (((1.0 - confidence.clamp(0.0, 1.0)) * draws.len() as f64).floor() as usize)
        .min(draws.len() - 1);
    Some(draws[index])
}

/// How a gated fit holds rows out and bounds its figure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GateOptions {
    /// Share of the distinct real rows (and of the synthetic rows) held out.
    pub fraction: f64,
    /// Confidence of the lower bound on real held-out R² (0 turns the bound off).
    pub confidence: f64,
    /// Bootstrap resamples for the bound.
    pub resamples: usize,
    /// Seed of the bootstrap.
    pub seed: u64,
}

impl Default for GateOptions {
    fn default() -> Self {
        Self {
            fraction: 0.2,
            confidence: 0.9,
            resamples: 200,
            seed: 0,
        }
    }
}

/// What a gated fit measured.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GateReport {
    /// Fidelity on the held-out real rows (distinct rows picked by content, never trained
    /// on).
    pub real: Fidelity,
    /// The lower confidence bound of `real.r2`, when it could be computed.
    pub real_r2_lower: Option<f64>,
    /// Fidelity on held-out synthetic rows (interventional: correlations broken), when
    /// there were any.
    pub synthetic: Option<Fidelity>,
    /// Distinct real rows in the window.
    pub distinct_rows: usize,
    /// Real rows trained on (with their copies) and synthetic rows trained on.
    pub train_rows: usize,
    /// Synthetic rows trained on.
    pub synthetic_train_rows: usize,
    /// Synthetic rows not trained on because they were made from a held-out row.
    pub synthetic_set_aside: usize,
    /// Index into the candidates of the parameters chosen, and each candidate's
    /// validation R² (empty when there was one candidate).
    pub chosen: usize,
    /// Validation R² per candidate.
    pub validation_r2: Vec<f64>,
}

/// Rows and the model's outputs for them (flat, `kind.n_outputs()` per row).
#[derive(Debug, Clone, Copy)]
pub struct Labelled<'a, R> {
    /// The rows.
    pub rows: &'a [R],
    /// The model's outputs, flat.
    pub outputs: &'a [f64],
    /// Synthetic rows only: per row, the [`row_key`]s of the real rows it was made from,
    /// so that none made from a held-out row is trained on (it would share most of its
    /// values and teach the surrogate the answer it is then judged on). Empty: unknown.
    pub sources: &'a [Vec<u64>],
}

/// Trains a surrogate on real rows and synthetic rows the model answered, and measures it
/// honestly: held-out real rows are a fixed share of the distinct rows and none is
/// trained on ([`unseen_split`]); the newest `fraction` of synthetic rows are held out
/// and
/// reported apart. With several `candidates`, each is fitted on the training rows less a
/// validation share (chosen the same honest way) and the best on validation is refitted
/// on all training rows. Fails when no real row can be held out.
pub fn fit_gated<R: AsRef<[Value]>, S: AsRef<[Value]>>(
    schema: Schema,
    real: Labelled<'_, R>,
    synthetic: Labelled<'_, S>,
    kind: OutputKind,
    candidates: &[GbtValidParams],
    gate: GateOptions,
    progress: &mut dyn FnMut(FitProgress),
) -> Result<(Surrogate, GateReport), SurrogateError> {
    let width = kind.n_outputs();
    let pick = |rows: &[&[Value]], outputs: &[f64], idx: &[usize]| -> (Vec<Vec<Value>>, Vec<f64>) {
        let r = idx.iter().map(|&i| rows[i].to_vec()).collect();
        let o = idx
            .iter()
            .flat_map(|&i| outputs[i * width..(i + 1) * width].iter().copied())
            .collect();
        (r, o)
    };
    let real_rows: Vec<&[Value]> = real.rows.iter().map(AsRef::as_ref).collect();
    let synthetic_rows: Vec<&[Value]> = synthetic.rows.iter().map(AsRef::as_ref).collect();
    check_length(real_rows.len(), real.outputs.len(), width)?;
    check_length(synthetic_rows.len(), synthetic.outputs.len(), width)?;
    let split = unseen_split(&real_rows, gate.fraction);
    if split.holdout.is_empty() {
        return Err(SurrogateError::Fidelity(FidelityError::NoRows));
    }
    let (mut train, mut train_out) = pick(&real_rows, real.outputs, &split.train);
    let (test, test_out) = pick(&real_rows, real.outputs, &split.holdout);
    // Synthetic rows arrive in batches over time; the newest share is held out.
    let n_syn = synthetic_rows.len();
    let syn_held = ((n_syn as f64 * gate.fraction).round() as usize).min(n_syn);
    let held_keys: std::collections::HashSet<u64> = split
        .holdout
        .iter()
        .map(|&i| row_key(real_rows[i]))
        .collect();
    let made_from_held = |i: usize| {
        synthetic
            .sources
            .get(i)
            .is_some_and(|keys| keys.iter().any(|k| held_keys.contains(k)))
    };
    let syn_train_idx: Vec<usize> = (0..n_syn - syn_held)
        .filter(|&i| !made_from_held(i))
        .collect();
    let synthetic_set_aside = n_syn - syn_held - syn_train_idx.len();
    let syn_test_idx: Vec<usize> = (n_syn - syn_held..n_syn).collect();
    let (syn_train, syn_train_out) = pick(&synthetic_rows, synthetic.outputs, &syn_train_idx);
    let (syn_test, syn_test_out) = pick(&synthetic_rows, synthetic.outputs, &syn_test_idx);
    let real_train_rows = train.len();
    train.extend(syn_train);
    train_out.extend(syn_train_out);

    let (chosen, validation_r2) = if candidates.len() > 1 {
        choose(
            &schema,
            (&train, &train_out),
            real_train_rows,
            &kind,
            candidates,
            gate,
            progress,
        )?
    } else {
        (0, Vec::new())
    };
    let params = candidates
        .get(chosen)
        .ok_or_else(|| SurrogateError::Inconsistent("no boosting parameters to fit with".into()))?;
    let mut surrogate =
        Surrogate::fit_with_progress(schema, &train, &train_out, kind, params, progress)?;
    // Trained on synthetic rows too, explained over the real ones (see `recover`).
    if train.len() > real_train_rows {
        surrogate.recover(&train[..real_train_rows])?;
    }
    let real_fid = surrogate.fidelity(&test, &test_out)?;
    let predicted = predictions(&surrogate, &test)?;
    let real_r2_lower = (gate.confidence > 0.0)
        .then(|| {
            r2_lower_bound(
                &predicted,
                &test_out,
                width,
                gate.confidence,
                gate.resamples,
                gate.seed,
            )
        })
        .flatten();
    let synthetic_fid = if syn_test.is_empty() {
        None
    } else {
        Some(surrogate.fidelity(&syn_test, &syn_test_out)?)
    };
    let report = GateReport {
        real: real_fid,
        real_r2_lower,
        synthetic: synthetic_fid,
        distinct_rows: split.distinct,
        train_rows: train.len(),
        synthetic_train_rows: train.len() - real_train_rows,
        synthetic_set_aside,
        chosen,
        validation_r2,
    };
    Ok((surrogate, report))
}

/// Fits every candidate on the training rows less a validation share of the real ones
/// (distinct rows picked as for the gate, by another share) and returns the best by
/// validation R².
fn choose(
    schema: &Schema,
    (train, train_out): (&[Vec<Value>], &[f64]),
    real_count: usize,
    kind: &OutputKind,
    candidates: &[GbtValidParams],
    gate: GateOptions,
    progress: &mut dyn FnMut(FitProgress),
) -> Result<(usize, Vec<f64>), SurrogateError> {
    let width = kind.n_outputs();
    // Another share than the gate's: every training row is on the gate's training side.
    let split = split_by(&train[..real_count], gate.fraction, 1);
    if split.holdout.is_empty() {
        return Ok((0, Vec::new()));
    }
    let validation: Vec<usize> = split.holdout.clone();
    let mut fit_idx: Vec<usize> = split.train.clone();
    fit_idx.extend(real_count..train.len());
    let rows_of =
        |idx: &[usize]| -> Vec<&[Value]> { idx.iter().map(|&i| train[i].as_slice()).collect() };
    let outs_of = |idx: &[usize]| -> Vec<f64> {
        idx.iter()
            .flat_map(|&i| train_out[i * width..(i + 1) * width].iter().copied())
            .collect()
    };
    let (fit_rows, fit_out) = (rows_of(&fit_idx), outs_of(&fit_idx));
    let (val_rows, val_out) = (rows_of(&validation), outs_of(&validation));
    let mut scores = Vec::with_capacity(candidates.len());
    for params in candidates {
        let s = Surrogate::fit_with_progress(
            schema.clone(),
            &fit_rows,
            &fit_out,
            kind.clone(),
            params,
            progress,
        )?;
        scores.push(s.fidelity(&val_rows, &val_out)?.r2);
    }
    let best = (0..scores.len())
        .max_by(|&a, &b| scores[a].total_cmp(&scores[b]))
        .unwrap_or(0);
    Ok((best, scores))
}

fn predictions(surrogate: &Surrogate, rows: &[Vec<Value>]) -> Result<Vec<f64>, SurrogateError> {
    let mut out = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        out.extend(
            surrogate
                .predict(row)
                .map_err(|e| crate::encode::EncodeError::Row {
                    row: i,
                    source: Box::new(e),
                })?,
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn row(values: &[f64]) -> Vec<Value> {
        values.iter().map(|&v| Value::Number(v)).collect()
    }

    #[test]
    fn hybrids_take_every_value_from_one_of_two_real_rows() {
        let rows: Vec<Vec<Value>> = (0..10)
            .map(|i| row(&[f64::from(i), f64::from(i) * 10.0, f64::from(i) * 100.0]))
            .collect();
        let made = hybrids(&rows, 200, 7);
        assert_eq!(made.len(), 200);
        let mut broke_a_correlation = false;
        for h in &made {
            let [a, b] = h.sources[..] else {
                panic!("{h:?}")
            };
            assert_ne!(a, b);
            for (j, v) in h.row.iter().enumerate() {
                assert!(*v == rows[a][j] || *v == rows[b][j], "{h:?}");
            }
            broke_a_correlation |= h.row != rows[a] && h.row != rows[b];
        }
        assert!(broke_a_correlation);
        assert!(hybrids(&rows[..1], 5, 0).is_empty());
        assert_eq!(hybrids(&rows, 5, 3), hybrids(&rows, 5, 3));
    }

    #[test]
    fn perturbations_change_about_a_quarter_of_the_features_from_the_pool() {
        let pool = vec![row(&[1.0; 8]), row(&[0.0; 8])];
        for p in perturbations(&pool, 1, 50, 1) {
            assert_eq!(p.sources[0], 1, "starts from the recent row");
            let changed = p.row.iter().filter(|v| **v == Value::Number(1.0)).count();
            let from_first = p.sources[1..].iter().filter(|&&s| s == 0).count();
            assert_eq!(changed, from_first, "{p:?}");
            assert_eq!(p.sources.len(), 3, "two features redrawn");
        }
        assert!(perturbations(&pool, 2, 10, 2).is_empty());
    }

    #[test]
    fn replayed_rows_are_never_on_both_sides() {
        // 500 distinct rows, replayed four times over.
        let rows: Vec<Vec<Value>> = (0..2000).map(|i| row(&[f64::from(i % 500)])).collect();
        let split = unseen_split(&rows, 0.2);
        assert_eq!(split.distinct, 500);
        assert!(
            (70..=130).contains(&split.holdout.len()),
            "{}",
            split.holdout.len()
        );
        for &i in &split.train {
            assert!(
                !is_held_out(row_key(&rows[i]), 0.2),
                "row {i} is on both sides"
            );
        }
        // Each held-out row is measured at its newest copy.
        assert!(split.holdout.iter().all(|&i| i >= 1500));
        assert_eq!(split.train.len() + 4 * split.holdout.len(), 2000);
    }

    #[test]
    fn a_row_keeps_its_side_as_the_window_moves() {
        let rows: Vec<Vec<Value>> = (0..400).map(|i| row(&[f64::from(i), 1.0])).collect();
        let early = unseen_split(&rows[..200], 0.2);
        let late = unseen_split(&rows[100..], 0.2);
        for &i in &early.holdout {
            if i >= 100 {
                assert!(late.holdout.contains(&(i - 100)), "row {i} changed sides");
            }
        }
        let one = unseen_split(&rows[..1], 0.5);
        assert!(one.holdout.is_empty());
        let two = unseen_split(&rows[..2], 0.01);
        assert_eq!(two.holdout.len(), 1, "at least one row is held out");
    }

    #[test]
    fn the_bound_is_below_the_point_estimate_and_tightens_with_more_rows() {
        let model: Vec<f64> = (0..400).map(|i| f64::from(i % 40)).collect();
        let noise = |i: usize| if i % 2 == 0 { 3.0 } else { -3.0 };
        let surrogate: Vec<f64> = model
            .iter()
            .enumerate()
            .map(|(i, m)| m + noise(i))
            .collect();
        let point = crate::fidelity::fidelity(
            &crate::surrogate::OutputKind::Regression,
            &surrogate,
            &model,
        )
        .unwrap()
        .r2;
        let small = r2_lower_bound(&surrogate[..40], &model[..40], 1, 0.9, 200, 1).unwrap();
        let large = r2_lower_bound(&surrogate, &model, 1, 0.9, 200, 1).unwrap();
        assert!(large < point && small < large, "{small} {large} {point}");
        assert!(r2_lower_bound(&[1.0], &[1.0], 1, 0.9, 200, 1).is_none());
    }

    /// The case distillation exists for: two features that always move together in the
    /// traffic, a model that reads only one of them. Traffic alone leaves the split of
    /// credit to chance; hybrid rows answered by the model give it all to the right one.
    #[test]
    fn hybrids_answered_by_the_model_separate_correlated_features() {
        use crate::gbt::GbtParams;
        use crate::schema::{Feature, FeatureKind};
        use crate::shap::TreeExplainer;
        use linfa::ParamGuard;

        // The model reads b. In the traffic a and b are equal, and on equal gains the
        // trees split on the first feature, a; c is noise the model ignores.
        let model = |r: &[Value]| match r[1] {
            Value::Number(b) => 2.0 * b,
            _ => 0.0,
        };
        let real: Vec<Vec<Value>> = (0..600)
            .map(|i| {
                let a = f64::from(i % 30);
                row(&[a, a, f64::from((i * 7) % 11)])
            })
            .collect();
        let real_out: Vec<f64> = real.iter().map(|r| model(r)).collect();
        let synthetic: Vec<Vec<Value>> = hybrids(&real, 2400, 11)
            .into_iter()
            .map(|h| h.row)
            .collect();
        let synthetic_out: Vec<f64> = synthetic.iter().map(|r| model(r)).collect();
        let schema = || {
            Schema::new(vec![
                Feature::new("a", FeatureKind::Numeric),
                Feature::new("b", FeatureKind::Numeric),
                Feature::new("c", FeatureKind::Numeric),
            ])
            .unwrap()
        };
        let params = [GbtParams::new().n_trees(60).max_depth(4).check().unwrap()];
        let share_of_a = |synthetic: &[Vec<Value>], synthetic_out: &[f64]| {
            let (surrogate, report) = fit_gated(
                schema(),
                Labelled {
                    rows: &real,
                    outputs: &real_out,
                    sources: &[],
                },
                Labelled {
                    rows: synthetic,
                    outputs: synthetic_out,
                    sources: &[],
                },
                OutputKind::Regression,
                &params,
                GateOptions::default(),
                &mut |_| {},
            )
            .unwrap();
            let explainer = TreeExplainer::new(&surrogate.ensembles()[0]).unwrap();
            let (mut a, mut b) = (0.0, 0.0);
            for r in &real[..60] {
                let phi = explainer
                    .explain(&surrogate.encode(r).unwrap())
                    .unwrap()
                    .values;
                a += phi[0].abs();
                b += phi[1].abs();
            }
            (a / (a + b), report)
        };
        let (with, report) = share_of_a(&synthetic, &synthetic_out);
        // The base value is the expectation over the real training rows, not over the
        // synthetic ones: the covers were counted again on the real rows.
        let (surrogate, _) = fit_gated(
            schema(),
            Labelled {
                rows: &real,
                outputs: &real_out,
                sources: &[],
            },
            Labelled {
                rows: &synthetic,
                outputs: &synthetic_out,
                sources: &[],
            },
            OutputKind::Regression,
            &params,
            GateOptions::default(),
            &mut |_| {},
        )
        .unwrap();
        let trained_on = unseen_split(&real, GateOptions::default().fraction).train;
        let mean = trained_on
            .iter()
            .map(|&i| surrogate.predict_raw(&real[i]).unwrap()[0])
            .sum::<f64>()
            / trained_on.len() as f64;
        let base = TreeExplainer::new(&surrogate.ensembles()[0])
            .unwrap()
            .base_value();
        assert!(with < 0.05, "a still gets {with:.3} of the credit");
        assert!(
            (base - mean).abs() < 1e-3,
            "base value {base}, real mean {mean}"
        );
        assert!(
            report.synthetic.as_ref().is_some_and(|f| f.r2 > 0.95),
            "{report:?}"
        );
        assert!(
            report.real.r2 > 0.95 && report.real_r2_lower.is_some(),
            "{report:?}"
        );
        assert_eq!(report.synthetic_train_rows, 2400 - 480);
        // Without them the credit goes to the wrong feature.
        let (without, _) = share_of_a(&[], &[]);
        assert!(
            without > 0.5,
            "a gets only {without:.3} without distillation"
        );
    }

    #[test]
    fn synthetic_rows_made_from_held_out_rows_are_not_trained_on() {
        use crate::gbt::GbtParams;
        use crate::schema::{Feature, FeatureKind};
        use linfa::ParamGuard;

        let real: Vec<Vec<Value>> = (0..100).map(|i| row(&[f64::from(i)])).collect();
        let out: Vec<f64> = (0..100).map(f64::from).collect();
        // One synthetic row per real row, made from it (a copy, the worst case).
        let keys: Vec<Vec<u64>> = real.iter().map(|r| vec![row_key(r)]).collect();
        let schema = Schema::new(vec![Feature::new("x", FeatureKind::Numeric)]).unwrap();
        let params = [GbtParams::new().n_trees(5).check().unwrap()];
        let (_, report) = fit_gated(
            schema,
            Labelled {
                rows: &real,
                outputs: &out,
                sources: &[],
            },
            Labelled {
                rows: &real,
                outputs: &out,
                sources: &keys,
            },
            OutputKind::Regression,
            &params,
            GateOptions::default(),
            &mut |_| {},
        )
        .unwrap();
        // The synthetic rows made from held-out real rows are set aside: of the older
        // 80 (the newest 20 synthetic rows are held out as synthetic ones), those whose
        // source is a held-out row.
        let expected = (0..80).filter(|&i| report_holds(&real[i])).count();
        assert_eq!(report.synthetic_set_aside, expected);
        assert_eq!(report.synthetic_train_rows, 80 - expected);
        assert!(expected > 0);
    }

    fn report_holds(row: &[Value]) -> bool {
        is_held_out(row_key(row), GateOptions::default().fraction)
    }

    proptest! {
        /// Against the definition: every training row differs from every held-out row,
        /// held-out rows are distinct, and every row is on one side (or a duplicate of a
        /// held-out one).
        #[test]
        fn split_matches_its_definition(values in prop::collection::vec(0u8..12, 2..80), fraction in 0.05f64..0.45) {
            let rows: Vec<Vec<Value>> = values.iter().map(|&v| row(&[f64::from(v)])).collect();
            let split = unseen_split(&rows, fraction);
            for &h in &split.holdout {
                for &t in &split.train {
                    prop_assert_ne!(&rows[h], &rows[t]);
                }
            }
            for (a, &i) in split.holdout.iter().enumerate() {
                for &j in &split.holdout[a + 1..] {
                    prop_assert_ne!(&rows[i], &rows[j]);
                }
            }
            for (i, r) in rows.iter().enumerate() {
                prop_assert!(split.train.contains(&i) || split.holdout.iter().any(|&h| &rows[h] == r));
            }
            // Every held-out row is the newest copy of its row.
            for &h in &split.holdout {
                prop_assert!(rows[h + 1..].iter().all(|r| r != &rows[h]));
            }
        }
    }
}
