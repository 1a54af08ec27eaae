//! Monitoring a window of 1,000,000 records, single thread.
//!
//! - `drift_1m_x20/full`: PSI (10 reference-quantile bins) and Kolmogorov–Smirnov for 20
//!   numeric features, a reference and a current window of 1,000,000 values each (so 40
//!   sorts of 1,000,000 values), 1 % missing.
//! - `drift_1m_x20/cached_reference`: the same with the 20 [`NumericReference`]s built
//!   beforehand, as the proxy does for a fixed training window (20 sorts).
//! - `fairness_1m`: group fairness over 1,000,000 decisions in 3 groups (plus 1 %
//!   unlisted), outcomes known for half.
//!
//! Inputs are generated deterministically (SplitMix64, Box–Muller). Run with
//! `cargo bench -p sidelight-monitor --bench window`.

// Generated inputs and a valid configuration: a failure is a bug to stop on at once.
#![allow(clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use sidelight_monitor::{
    Decision, DriftConfig, FairnessConfig, NumericReference, ProtectedAttribute, fairness,
    numeric_drift,
};

const ROWS: usize = 1_000_000;
const FEATURES: usize = 20;

struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1).
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// 20 columns of 1,000,000 values: feature `f` is N(shift · f / 20, 1) rounded to 3
/// decimals (so there are ties, as in real traffic), 1 % NaN.
fn columns(seed: u64, shift: f64) -> Vec<Vec<f64>> {
    let mut rng = SplitMix(seed);
    (0..FEATURES)
        .map(|f| {
            let mean = shift * f as f64 / FEATURES as f64;
            (0..ROWS)
                .map(|_| {
                    if rng.uniform() < 0.01 {
                        f64::NAN
                    } else {
                        ((mean + rng.normal()) * 1000.0).round() / 1000.0
                    }
                })
                .collect()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let reference = columns(1, 0.0);
    let current = columns(2, 0.5);
    let config = DriftConfig::default();

    let mut g = c.benchmark_group("drift_1m_x20");
    // Each iteration takes a good fraction of a second: ten flat samples are plenty.
    g.sample_size(10);
    g.sampling_mode(SamplingMode::Flat);
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("full", |b| {
        b.iter(|| {
            for (r, cur) in reference.iter().zip(&current) {
                black_box(numeric_drift(r, cur, &config).expect("valid config"));
            }
        })
    });
    let cached: Vec<NumericReference> = reference
        .iter()
        .map(|r| NumericReference::new(r, &config).expect("valid config"))
        .collect();
    g.bench_function("cached_reference", |b| {
        b.iter(|| {
            for (r, cur) in cached.iter().zip(&current) {
                black_box(r.compare(cur));
            }
        })
    });
    g.finish();
    drop(cached);
    drop(reference);
    drop(current);

    let groups = ["25-60", "<25", ">60", "unknown"];
    let mut rng = SplitMix(3);
    let decisions: Vec<(usize, bool, Option<bool>)> = (0..ROWS)
        .map(|_| {
            let u = rng.uniform();
            let g = if u < 0.6 {
                0
            } else if u < 0.8 {
                1
            } else if u < 0.99 {
                2
            } else {
                3
            };
            let favourable = rng.uniform() < [0.5, 0.45, 0.3, 0.4][g];
            let outcome = (rng.uniform() < 0.5).then(|| rng.uniform() < 0.6);
            (g, favourable, outcome)
        })
        .collect();
    let attribute = ProtectedAttribute {
        name: "age_band".into(),
        privileged: "25-60".into(),
        unprivileged: vec!["<25".into(), ">60".into()],
    };
    let fairness_config = FairnessConfig::default();
    let mut g = c.benchmark_group("fairness_1m");
    g.sample_size(20);
    g.bench_function("3_groups", |b| {
        b.iter(|| {
            let it = decisions.iter().map(|&(gi, favourable, outcome)| Decision {
                group: groups[gi],
                favourable,
                outcome,
            });
            black_box(fairness(&attribute, it, &fairness_config).expect("valid spec"))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
