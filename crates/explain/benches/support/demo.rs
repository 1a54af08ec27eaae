//! The demo's surrogate, for the benches that measure on it (this crate's `next_step`,
//! and `sidelight-core`'s `explain_row`, which includes this file by path): the demo
//! credit model's scores of the 1,000 German credit applications, learnt with the live
//! trainer's defaults (100 trees of depth 6).

use std::hint::black_box;

use criterion::BenchmarkGroup;
use criterion::measurement::WallTime;
use linfa::ParamGuard;
use sidelight_demo_model::data::{FEATURE_NAMES, applications, is_numeric};
use sidelight_demo_model::model::score;
use sidelight_explain::shap::{Scratch, TreeExplainer};
use sidelight_explain::{Feature, FeatureKind, GbtParams, OutputKind, Schema, Surrogate, Value};

/// The applications as rows of values (in `FEATURE_NAMES` order), the demo model's
/// scores of them, and the surrogate learnt from both.
pub(crate) struct Demo {
    pub(crate) rows: Vec<Vec<Value>>,
    #[allow(dead_code, reason = "next_step searches the surrogate alone")]
    pub(crate) outputs: Vec<f64>,
    pub(crate) surrogate: Surrogate,
}

/// Trains the demo's surrogate (a second or so).
pub(crate) fn demo() -> Demo {
    let apps = applications().expect("embedded data");
    let rows: Vec<Vec<Value>> = apps
        .iter()
        .map(|a| {
            let json = serde_json::to_value(&a.application).expect("serialisable");
            FEATURE_NAMES
                .iter()
                .map(|name| match &json[*name] {
                    serde_json::Value::Number(n) => Value::Number(n.as_f64().unwrap_or(f64::NAN)),
                    serde_json::Value::String(s) => Value::Text(s.clone()),
                    _ => Value::Missing,
                })
                .collect()
        })
        .collect();
    let outputs: Vec<f64> = apps.iter().map(|a| score(&a.application)).collect();
    let kind = |name: &str| {
        if is_numeric(name) {
            FeatureKind::Numeric
        } else {
            FeatureKind::Categorical
        }
    };
    let schema = Schema::new(
        FEATURE_NAMES
            .iter()
            .map(|&n| Feature::new(n, kind(n)))
            .collect(),
    )
    .expect("schema");
    let params = GbtParams::new()
        .n_trees(100)
        .max_depth(6)
        .learning_rate(0.1)
        .check()
        .expect("params");
    let surrogate = Surrogate::fit(
        schema,
        &rows,
        &outputs,
        OutputKind::BinaryProbability,
        &params,
    )
    .expect("surrogate");
    Demo {
        rows,
        outputs,
        surrogate,
    }
}

/// TreeSHAP alone on one encoded row after another, in `group` as `name`: the yardstick
/// the other figures of both benches are read against.
pub(crate) fn bench_treeshap(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    explainer: &TreeExplainer,
    encoded: &[Vec<f64>],
) {
    let mut i = 0;
    let mut scratch = Scratch::default();
    let mut values = vec![0.0; encoded.first().map_or(0, Vec::len)];
    group.bench_function(name, |b| {
        b.iter(|| {
            i = (i + 1) % encoded.len();
            explainer
                .explain_into(&encoded[i], &mut scratch, &mut values)
                .expect("explainable");
            black_box(&values);
        })
    });
}
