//! Attribution throughput, single thread: rows explained per second.
//!
//! The ensemble is synthetic and deterministic (`shap::synth`): 100 trees of depth 6 on
//! 20 features, grown on 2,000 Gaussian rows so that covers look trained; rows have 5 %
//! missing values. Run with `cargo bench -p sidelight-explain --bench shap`.

// Generated inputs: an explainer that refuses them is a bug to stop on at once.
#![allow(clippy::expect_used)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sidelight_explain::shap::{
    InterventionalExplainer, KernelExplainer, KernelOptions, TreeExplainer, synth,
    tree_shap_reference,
};
use std::hint::black_box;

const TREES: usize = 100;
const DEPTH: usize = 6;
const FEATURES: usize = 20;

fn bench(c: &mut Criterion) {
    let ensemble = synth::random_ensemble(1, TREES, DEPTH, FEATURES, 2_000);
    let rows = synth::random_rows(2, 256, FEATURES, 0.05);
    let background = synth::random_rows(3, 100, FEATURES, 0.05);

    let mut g = c.benchmark_group("tree_shap_100x6x20");
    g.throughput(Throughput::Elements(1));
    let mut i = 0;
    g.bench_function("path_dependent_reference", |b| {
        b.iter(|| {
            i = (i + 1) % rows.len();
            black_box(tree_shap_reference(&ensemble, &rows[i]))
        })
    });
    let fast = TreeExplainer::new(&ensemble).expect("valid ensemble");
    g.bench_function("path_dependent_fast", |b| {
        b.iter(|| {
            i = (i + 1) % rows.len();
            black_box(fast.explain(&rows[i]))
        })
    });
    g.bench_function("build_fast_tables", |b| {
        b.iter(|| black_box(TreeExplainer::new(&ensemble)))
    });
    let inter = InterventionalExplainer::new(&ensemble, &background).expect("valid ensemble");
    g.bench_function("interventional_100_background", |b| {
        b.iter(|| {
            i = (i + 1) % rows.len();
            black_box(inter.explain(&rows[i]))
        })
    });
    g.finish();

    // KernelSHAP: 1,024 paired coalitions × 20 background rows = 20,480 model rows per
    // explanation, scored by the same ensemble.
    let mut g = c.benchmark_group("kernel_shap_100x6x20");
    g.throughput(Throughput::Elements(1));
    g.sample_size(10);
    let options = KernelOptions {
        max_coalitions: 1024,
        ..KernelOptions::default()
    };
    let mut kernel =
        KernelExplainer::new(&ensemble, &background[..20], options).expect("valid background");
    g.bench_function("sampled_1024_coalitions_20_background", |b| {
        b.iter(|| {
            i = (i + 1) % rows.len();
            black_box(kernel.explain(&rows[i]))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
