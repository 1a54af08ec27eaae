//! The next-step search per declined customer, on the demo's surrogate: the demo credit
//! model's scores of the 1,000 German credit applications, learnt by a surrogate with
//! the live trainer's defaults (100 trees, depth 6), searched as the proxy searches (loan
//! duration 4–72 months and amount 250–20,000 DM may move, at most two changes, beam
//! of 4, scales the standard deviations; target: a probability of at least one half).
//!
//! Two ways side by side in one run: `tree` (the search the proxy uses, scoring a row's
//! changes from its tree paths, thresholds collected once per surrogate) and `before`
//! (the search as it was: thresholds collected for every row, the same beam search
//! scoring every candidate row by a full prediction). Both find the same next step. Each
//! iteration searches one declined row, in turn. Run with
//! `cargo bench -p sidelight-explain --bench next_step`.

// A fixed data set and a fixed model: a failure here is a bug to stop on at once.
#![allow(clippy::expect_used)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sidelight_demo_model::data::FEATURE_NAMES;
use sidelight_explain::TreeExplainer;
use sidelight_explain::counterfactual::{
    Constraint, Query, SplitIndex, Target, counterfactual_indexed, search, tree_candidates,
};
use std::hint::black_box;

#[path = "support/demo.rs"]
mod demo;

fn bench(c: &mut Criterion) {
    let demo::Demo {
        rows,
        outputs: _,
        surrogate,
    } = demo::demo();
    let ensemble = &surrogate.ensembles()[0];
    let encoded: Vec<Vec<f64>> = rows
        .iter()
        .map(|r| surrogate.encoder().encode(r).expect("encodable"))
        .collect();
    let std = |f: usize| {
        let n = encoded.len() as f64;
        let mean = encoded.iter().map(|r| r[f]).sum::<f64>() / n;
        (encoded.iter().map(|r| (r[f] - mean).powi(2)).sum::<f64>() / n).sqrt()
    };
    let mut constraints = vec![Constraint::Fixed; FEATURE_NAMES.len()];
    let mut scales = vec![1.0; FEATURE_NAMES.len()];
    for (name, min, max) in [
        ("duration_months", 4.0, 72.0),
        ("credit_amount", 250.0, 20_000.0),
    ] {
        let f = FEATURE_NAMES
            .iter()
            .position(|n| *n == name)
            .expect("feature");
        constraints[f] = Constraint::Numeric {
            min,
            max,
            step: None,
        };
        scales[f] = std(f);
    }
    let query = Query {
        target: Target::AtLeast(0.0),
        constraints,
        scales,
        max_changes: 2,
        beam_width: 4,
    };
    let declined: Vec<&Vec<f64>> = encoded
        .iter()
        .filter(|x| ensemble.predict(x) < 0.0)
        .collect();
    assert!(
        !declined.is_empty(),
        "the demo model declines some applications"
    );
    let index = SplitIndex::new(ensemble);
    eprintln!(
        "next_step bench: {} trees, {} declined rows of {}",
        ensemble.trees.len(),
        declined.len(),
        encoded.len()
    );

    // The goal is stated per row: each declined row's best of five searches, then the
    // median and the slowest over the rows.
    let mut per_row: Vec<f64> = declined
        .iter()
        .map(|x| {
            (0..5)
                .map(|_| {
                    let started = std::time::Instant::now();
                    black_box(counterfactual_indexed(ensemble, &index, x, &query)).expect("fits");
                    started.elapsed().as_secs_f64() * 1e6
                })
                .fold(f64::INFINITY, f64::min)
        })
        .collect();
    per_row.sort_by(f64::total_cmp);
    let reached = declined
        .iter()
        .filter(|x| {
            counterfactual_indexed(ensemble, &index, x, &query)
                .map(|c| c.reached)
                .unwrap_or(false)
        })
        .count();
    eprintln!(
        "next_step per declined row: median {:.1} µs, slowest {:.1} µs; a step found for {} of {}",
        per_row[per_row.len() / 2],
        per_row[per_row.len() - 1],
        reached,
        declined.len()
    );

    let mut g = c.benchmark_group("next_step_demo");
    let mut i = 0;
    g.bench_function("tree", |b| {
        b.iter(|| {
            i = (i + 1) % declined.len();
            black_box(counterfactual_indexed(
                ensemble,
                &index,
                declined[i],
                &query,
            ))
        })
    });
    g.bench_function("before", |b| {
        b.iter(|| {
            i = (i + 1) % declined.len();
            let candidates =
                tree_candidates(ensemble, declined[i], &query.constraints).expect("fits");
            black_box(search(&mut &*ensemble, declined[i], &query, &candidates))
        })
    });
    g.finish();

    // The engine's own TreeSHAP rate on this surrogate, one thread: the yardstick for
    // the proxy's explained rows per second (bench/passthrough.py, batch 32).
    let explainer = TreeExplainer::new(ensemble).expect("a valid ensemble");
    let mut g = c.benchmark_group("treeshap_demo");
    g.throughput(Throughput::Elements(1));
    demo::bench_treeshap(&mut g, "one_row", &explainer, &encoded);
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
