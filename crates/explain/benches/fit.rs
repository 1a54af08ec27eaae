//! Fit time of the surrogate's boosted trees: 100,000 rows × 20 features, 100 trees of
//! depth ≤ 6 (≤ 63 leaves), the settings `bench/fit_lightgbm.py` gives LightGBM.
//!
//! The data are generated, not read: both sides compute the same rows from SplitMix64
//! with seed 42 (see `bench_data` and its Python twin), so neither needs a file.
//!
//! Run: `cargo bench -p sidelight-explain --bench fit`, or `bench/fit_compare.sh` for
//! both sides and the ratio.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use linfa::ParamGuard;
use sidelight_explain::GbtParams;

const ROWS: usize = 100_000;
const FEATURES: usize = 20;
const SEED: u64 = 42;

/// x: `ROWS × FEATURES` uniforms in [0, 1) drawn row-major from SplitMix64(seed); y:
/// Friedman #1 on x0..x4 plus an x5·x6 interaction; x7..x19 are noise features.
fn bench_data() -> (Vec<f64>, Vec<f64>) {
    let mut state = SEED;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    };
    let x: Vec<f64> = (0..ROWS * FEATURES).map(|_| next()).collect();
    let y = x
        .chunks_exact(FEATURES)
        .map(|r| {
            10.0 * (std::f64::consts::PI * r[0] * r[1]).sin()
                + 20.0 * (r[2] - 0.5).powi(2)
                + 10.0 * r[3]
                + 5.0 * r[4]
                + 4.0 * r[5] * r[6]
        })
        .collect();
    (x, y)
}

fn fit(c: &mut Criterion) {
    let (x, y) = bench_data();
    let params = match GbtParams::new()
        .n_trees(100)
        .max_depth(6)
        .max_leaves(63)
        .learning_rate(0.1)
        .min_samples_leaf(20)
        .lambda(1.0)
        .max_bins(255)
        .subsample(1.0)
        .validation_fraction(0.0)
        .check()
    {
        Ok(p) => p,
        Err(e) => panic!("bench parameters: {e}"),
    };
    let mut group = c.benchmark_group("fit");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(15));
    group.bench_function("gbt_100000x20_100trees_depth6", |b| {
        b.iter(|| match params.fit_dense(&x, FEATURES, &y) {
            Ok(m) => m,
            Err(e) => panic!("fit failed: {e}"),
        })
    });
    group.finish();

    // Printed so a reader can see both learners did comparable work (the Python side
    // prints LightGBM's training R² the same way).
    if let Ok(m) = params.fit_dense(&x, FEATURES, &y) {
        let mean = y.iter().sum::<f64>() / y.len() as f64;
        let (mut res, mut tot) = (0.0, 0.0);
        for (row, t) in x.chunks_exact(FEATURES).zip(&y) {
            res += (m.predict_row(row) - t).powi(2);
            tot += (t - mean).powi(2);
        }
        println!(
            "sidelight-explain: {} trees, training R² {:.5}",
            m.ensemble().trees.len(),
            1.0 - res / tot
        );
    }
}

criterion_group!(benches, fit);
criterion_main!(benches);
