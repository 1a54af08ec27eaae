//! What explaining one row costs beyond TreeSHAP, on the demo's surrogate: the demo
//! credit model's scores of the 1,000 German credit applications, learnt with the live
//! trainer's defaults (100 trees, depth 6), explained as the proxy explains them.
//!
//! - `treeshap`: the engine alone on an encoded row (the yardstick);
//! - `customer`: `LiveModel::explain` for the customer audience (encoding, TreeSHAP,
//!   the customer's attributions and text, the next step for a declined row);
//! - `customer_json`: the same, written as the JSON attached to the response.
//!
//! Each iteration takes the next application in turn. Run with
//! `cargo bench -p sidelight-core --bench explain_row`; the ratios of the three are the
//! per-row overhead of the proxy's explanation over the engine.

// A fixed data set and a fixed model: a failure here is a bug to stop on at once.
#![allow(clippy::expect_used)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sidelight_config::Audience;
use sidelight_core::live::{LiveModel, Narrate, VersionRecord};
use sidelight_explain::shap::TreeExplainer;
use sidelight_narrate::{Locale, Narrator, RouteOverrides};
use std::hint::black_box;

/// The demo's surrogate, shared with `sidelight-explain`'s `next_step` bench.
#[path = "../../../explain/benches/support/demo.rs"]
mod demo;

const CONFIG: &str = r#"
[upstream]
url = "http://127.0.0.1:9"
[[routes]]
name = "credit"
path_prefix = "/v1/models/credit"
[routes.explain]
protocol = "kserve_v1"
output = "probability"
[[routes.explain.features]]
name = "duration_months"
kind = "numeric"
actionable = true
min = 4
max = 72
[[routes.explain.features]]
name = "credit_amount"
kind = "numeric"
actionable = true
min = 250
max = 20000
[[routes.explain.features]]
name = "personal_status_sex"
kind = "categorical"
protected = true
customer_visible = false
"#;

fn bench(c: &mut Criterion) {
    let demo::Demo {
        rows,
        outputs,
        surrogate,
    } = demo::demo();
    let encoded: Vec<Vec<f64>> = rows
        .iter()
        .map(|r| surrogate.encoder().encode(r).expect("encodable"))
        .collect();
    let explainer = TreeExplainer::new(&surrogate.ensembles()[0]).expect("valid ensemble");
    let config = sidelight_config::Config::from_toml_str(CONFIG).expect("config");
    let explain = config.routes[0].explain.clone().expect("[routes.explain]");
    let record = VersionRecord {
        version: 1,
        trained_at: 0,
        rows: rows.len(),
        r2: 0.95,
        mae: 0.0,
        agreement: None,
        accepted: true,
        reason: String::new(),
        gate: None,
        faithfulness: None,
        retired: None,
    };
    let model = LiveModel::new(surrogate, record, &explain, &rows).expect("live model");
    let narrator = Narrator::builtin().expect("built-in wording");
    let overrides = RouteOverrides::default();
    let locale = Locale::english();
    let narrate = Narrate {
        audience: Audience::Customer,
        locale: &locale,
        narrator: &narrator,
        overrides: &overrides,
        config: &explain,
        consent: sidelight_audit::Consent::Full,
        audited: false,
        next_steps_until: None,
    };

    let mut g = c.benchmark_group("explain_row_demo");
    g.throughput(Throughput::Elements(1));
    demo::bench_treeshap(&mut g, "treeshap", &explainer, &encoded);
    let mut i = 0;
    g.bench_function("customer", |b| {
        b.iter(|| {
            i = (i + 1) % rows.len();
            black_box(
                model
                    .explain("r".to_owned(), &rows[i], &[outputs[i]], &narrate)
                    .expect("explained"),
            )
        })
    });
    g.bench_function("customer_json", |b| {
        b.iter(|| {
            i = (i + 1) % rows.len();
            let explained = model
                .explain("r".to_owned(), &rows[i], &[outputs[i]], &narrate)
                .expect("explained");
            black_box(serde_json::to_vec(&explained).expect("serialisable"))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
