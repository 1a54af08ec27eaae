use linfa::ParamGuard;
use proptest::prelude::*;

use super::*;
use crate::format::FormatError;
use crate::gbt::GbtParams;
use crate::rng::SplitMix64;
use crate::schema::{Feature, FeatureKind};

const LEVELS: [&str; 5] = ["a", "b", "c", "d", "e"];

fn schema() -> Schema {
    let mut f: Vec<Feature> = (0..8)
        .map(|i| Feature::new(format!("x{i}"), FeatureKind::Numeric))
        .collect();
    f.push(Feature::new("flag", FeatureKind::Boolean));
    f.push(Feature::new("group", FeatureKind::Categorical));
    Schema::new(f).unwrap()
}

/// Ten features (eight numeric, a boolean, a categorical), a nonlinear score with
/// interactions, and 5 % of the numeric values missing.
fn rows(n: usize, seed: u64) -> (Vec<Vec<Value>>, Vec<f64>) {
    rows_with_missing(n, seed, 0.05)
}

fn rows_with_missing(n: usize, seed: u64, missing: f64) -> (Vec<Vec<Value>>, Vec<f64>) {
    let mut rng = SplitMix64::new(seed);
    let mut rows = Vec::with_capacity(n);
    let mut y = Vec::with_capacity(n);
    for _ in 0..n {
        let x: Vec<f64> = (0..8).map(|_| rng.next_f64()).collect();
        let flag = rng.next_f64() < 0.5;
        let g = rng.below(LEVELS.len());
        let effect = [0.0, 3.0, -2.0, 1.0, 3.0][g];
        let score = 10.0 * (std::f64::consts::PI * x[0] * x[1]).sin()
            + 20.0 * (x[2] - 0.5).powi(2)
            + 10.0 * x[3]
            + 5.0 * x[4]
            + 4.0 * x[5] * x[6]
            + if flag { 2.0 + 3.0 * x[7] } else { 0.0 }
            + effect;
        let mut row: Vec<Value> = x
            .iter()
            .map(|&v| {
                if rng.next_f64() < missing {
                    Value::Missing
                } else {
                    Value::Number(v)
                }
            })
            .collect();
        row.push(Value::Bool(flag));
        row.push(Value::from(LEVELS[g]));
        rows.push(row);
        y.push(score);
    }
    (rows, y)
}

fn params() -> GbtValidParams {
    GbtParams::new()
        .n_trees(300)
        .min_samples_leaf(10)
        .check()
        .unwrap()
}

#[test]
fn reaches_r2_095_on_held_out_rows_of_a_nonlinear_function() {
    // No missing values here: a missing input makes the score unknowable, which would
    // measure the data rather than the learner.
    let (rows, y) = rows_with_missing(5000, 11, 0.0);
    let holdout = Holdout {
        fraction: 0.2,
        seed: 1,
    };
    let mut calls = 0;
    let (s, fid) = Surrogate::fit_and_evaluate(
        schema(),
        &rows,
        &y,
        OutputKind::Regression,
        &params(),
        holdout,
        &mut |_| calls += 1,
    )
    .unwrap();
    assert!(fid.r2 >= 0.95, "held-out R² {}", fid.r2);
    assert_eq!(fid.n, 1000);
    assert_eq!(s.metadata().n_train, 4000);
    assert!(calls >= s.metadata().trees[0]);
    // The linear baseline is clearly worse on this function.
    let split = split_holdout(5000, 0.2, 1).unwrap();
    let train: Vec<&[Value]> = split.train.iter().map(|&i| rows[i].as_slice()).collect();
    let ty: Vec<f64> = split.train.iter().map(|&i| y[i]).collect();
    let lin = s.fit_linear_baseline(&train, &ty).unwrap();
    let lp: Vec<f64> = split
        .holdout
        .iter()
        .map(|&i| lin[0].predict(&s.encode(&rows[i]).unwrap()))
        .collect();
    let hy: Vec<f64> = split.holdout.iter().map(|&i| y[i]).collect();
    let lfid = fidelity(&OutputKind::Regression, &lp, &hy).unwrap();
    assert!(lfid.r2 < fid.r2 && lfid.r2 > 0.5, "linear R² {}", lfid.r2);
}

#[test]
fn classifiers_fit_logits_and_agree_on_decisions() {
    let (rows, score) = rows_with_missing(2000, 12, 0.0);
    let p: Vec<f64> = score
        .iter()
        .map(|s| 1.0 / (1.0 + (-(s - 14.0) / 2.0).exp()))
        .collect();
    let params = GbtParams::new().n_trees(100).check().unwrap();
    let (s, fid) = Surrogate::fit_and_evaluate(
        schema(),
        &rows,
        &p,
        OutputKind::BinaryProbability,
        &params,
        Holdout::default(),
        &mut |_| {},
    )
    .unwrap();
    assert!(fid.agreement.unwrap() > 0.9, "{fid:?}");
    assert!(fid.r2 > 0.9, "{fid:?}");
    let out = s.predict(&rows[0]).unwrap()[0];
    let raw = s.predict_raw(&rows[0]).unwrap()[0];
    assert!((0.0..=1.0).contains(&out));
    assert_eq!(out, s.output().to_output(raw));

    // Three classes from a softmax of three scores, one of them exactly 0 or 1 at times.
    let classes: Vec<String> = ["lo", "mid", "hi"].map(String::from).to_vec();
    let mut probs = Vec::new();
    for &sc in &score {
        let z = [-(sc - 10.0), 0.0, sc - 18.0];
        let m = z.iter().copied().fold(f64::MIN, f64::max);
        let e: Vec<f64> = z.iter().map(|v| (v - m).exp()).collect();
        let t: f64 = e.iter().sum();
        probs.extend(e.iter().map(|v| v / t));
    }
    probs[1] = 1.0;
    let kind = OutputKind::MultiClass { classes };
    let params = GbtParams::new().n_trees(60).check().unwrap();
    let (s, fid) = Surrogate::fit_and_evaluate(
        schema(),
        &rows,
        &probs,
        kind,
        &params,
        Holdout::default(),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(s.ensembles().len(), 3);
    assert!(fid.agreement.unwrap() > 0.85, "{fid:?}");
}

#[test]
fn missing_values_and_unseen_levels_take_the_default_branch() {
    let (rows, y) = rows(1500, 13);
    let params = GbtParams::new().n_trees(30).check().unwrap();
    let s = Surrogate::fit(schema(), &rows, &y, OutputKind::Regression, &params).unwrap();
    let mut row = rows[0].clone();
    row[9] = Value::from("never seen");
    let unseen = s.predict(&row).unwrap();
    row[9] = Value::Missing;
    assert_eq!(unseen, s.predict(&row).unwrap());
    row[0] = Value::Missing;
    let x = s.encode(&row).unwrap();
    assert!(x[0].is_nan() && x[9].is_nan());
    // The missing value goes where each split's default child says.
    let manual: f64 = s.ensembles()[0].base_offset
        + s.ensembles()[0]
            .trees
            .iter()
            .map(|t| {
                let mut node = 0usize;
                while !t.is_leaf(node) {
                    let v = x[t.feature[node] as usize];
                    node = if v.is_nan() {
                        t.children_default[node]
                    } else if v <= t.threshold[node] {
                        t.children_left[node]
                    } else {
                        t.children_right[node]
                    } as usize;
                }
                t.value[node]
            })
            .sum::<f64>();
    assert_eq!(s.predict(&row).unwrap()[0], manual);
    // Some split on a numeric feature must have learned to send missing values left, and
    // some right: the default is learned, not fixed.
    let defaults: Vec<bool> = s.ensembles()[0]
        .trees
        .iter()
        .flat_map(|t| {
            (0..t.len())
                .filter(|&n| !t.is_leaf(n) && t.feature[n] < 8)
                .map(|n| t.children_default[n] == t.children_left[n])
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(defaults.contains(&true) && defaults.contains(&false));
}

#[test]
fn training_is_deterministic_for_a_seed() {
    let (rows, y) = rows(800, 14);
    let p = GbtParams::new()
        .n_trees(15)
        .subsample(0.8)
        .seed(3)
        .check()
        .unwrap();
    let a = Surrogate::fit(schema(), &rows, &y, OutputKind::Regression, &p).unwrap();
    let b = Surrogate::fit(schema(), &rows, &y, OutputKind::Regression, &p).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.to_json().unwrap(), b.to_json().unwrap());
}

#[test]
fn json_round_trip_preserves_every_prediction_bit_for_bit() {
    let (rows, score) = rows(1200, 15);
    let p: Vec<f64> = score
        .iter()
        .map(|s| 1.0 / (1.0 + (-(s - 14.0) / 3.0).exp()))
        .collect();
    let params = GbtParams::new().n_trees(40).check().unwrap();
    for (kind, outputs) in [
        (OutputKind::Regression, score.clone()),
        (OutputKind::BinaryProbability, p),
    ] {
        let s = Surrogate::fit(schema(), &rows, &outputs, kind, &params).unwrap();
        let json = s.to_json().unwrap();
        let back = Surrogate::from_json(&json).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.to_json().unwrap(), json);
        assert_eq!(
            Surrogate::from_json(&s.to_json_pretty().unwrap()).unwrap(),
            s
        );
        let (probe, _) = super::tests::rows(300, 16);
        for row in &probe {
            let a = s.predict_raw(row).unwrap();
            let b = back.predict_raw(row).unwrap();
            assert_eq!(a[0].to_bits(), b[0].to_bits());
            let a = s.predict(row).unwrap();
            let b = back.predict(row).unwrap();
            assert_eq!(a[0].to_bits(), b[0].to_bits());
        }
    }
}

#[test]
fn the_json_has_the_documented_shape() {
    let (rows, y) = rows(300, 17);
    let params = GbtParams::new()
        .n_trees(2)
        .min_samples_leaf(50)
        .check()
        .unwrap();
    let s = Surrogate::fit(schema(), &rows, &y, OutputKind::Regression, &params).unwrap();
    let v: serde_json::Value = serde_json::from_str(&s.to_json().unwrap()).unwrap();
    assert_eq!(v["format_version"], 1);
    assert_eq!(v["output"]["kind"], "regression");
    assert_eq!(v["features"][8]["kind"], "boolean");
    let levels = v["features"][9]["levels"].as_object().unwrap();
    assert_eq!(levels.len(), 5);
    assert_eq!(levels["c"], 0, "the lowest-scoring level gets code 0");
    assert!(v["features"][0].get("levels").is_none());
    let tree = &v["ensembles"][0]["trees"][0];
    for key in [
        "children_left",
        "children_right",
        "children_default",
        "feature",
        "threshold",
        "value",
        "cover",
    ] {
        assert!(tree[key].is_array(), "{key}");
    }
    assert!(v["ensembles"][0]["base_offset"].is_f64());
    assert_eq!(v["metadata"]["n_train"], 300);
}

#[test]
fn loading_rejects_broken_files_saying_what_is_wrong() {
    let (rows, y) = rows(300, 18);
    let params = GbtParams::new().n_trees(3).check().unwrap();
    let s = Surrogate::fit(schema(), &rows, &y, OutputKind::Regression, &params).unwrap();
    let good: serde_json::Value = serde_json::from_str(&s.to_json().unwrap()).unwrap();
    let load = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut v = good.clone();
        edit(&mut v);
        Surrogate::from_json(&v.to_string()).unwrap_err()
    };
    let err = load(&|v| v["format_version"] = 2.into());
    assert!(matches!(err, FormatError::Version { found: 2 }), "{err}");
    let err = load(&|v| v["ensembles"][0]["n_features"] = 9.into());
    assert!(
        err.to_string()
            .contains("reads 9 features but the schema has 10"),
        "{err}"
    );
    let err = load(&|v| v["ensembles"][0]["trees"][1]["children_left"][0] = 99.into());
    assert!(
        err.to_string().contains("ensemble 0: tree 1, node 0"),
        "{err}"
    );
    let err = load(&|v| v["features"][1]["name"] = "x0".into());
    assert!(
        err.to_string().contains("`x0` appears more than once"),
        "{err}"
    );
    let err = load(&|v| v["features"][0]["levels"] = serde_json::json!({"a": 0}));
    assert!(err.to_string().contains("`x0` is Numeric"), "{err}");
    let err = load(&|v| v["features"][9]["levels"]["a"] = 7.into());
    assert!(err.to_string().contains("code 7 is out of range"), "{err}");
    let err =
        load(&|v| v["output"] = serde_json::json!({"kind": "multi_class", "classes": ["a", "b"]}));
    assert!(
        err.to_string().contains("metadata describes 1 outputs"),
        "{err}"
    );
    let err = load(&|v| v["metadata"]["params"]["learning_rate"] = 7.into());
    assert!(err.to_string().contains("learning_rate"), "{err}");
    let err = load(&|v| {
        v.as_object_mut().unwrap().remove("ensembles");
    });
    assert!(
        err.to_string().contains("missing field `ensembles`"),
        "{err}"
    );
    assert!(matches!(
        Surrogate::from_json("{"),
        Err(FormatError::Json(_))
    ));
}

#[test]
fn unusable_model_outputs_name_the_row() {
    let (rows, _) = rows(20, 19);
    let mut p = vec![0.5; 20];
    p[7] = 1.5;
    let params = GbtParams::new().check().unwrap();
    let err =
        Surrogate::fit(schema(), &rows, &p, OutputKind::BinaryProbability, &params).unwrap_err();
    assert!(
        matches!(err, SurrogateError::Output { row: 7, .. }),
        "{err}"
    );
    let err =
        Surrogate::fit(schema(), &rows, &p[..19], OutputKind::Regression, &params).unwrap_err();
    assert!(
        matches!(
            err,
            SurrogateError::Length {
                rows: 20,
                outputs: 19,
                ..
            }
        ),
        "{err}"
    );
    let mut bad = rows.clone();
    bad[3][8] = Value::from("maybe");
    let err = Surrogate::fit(schema(), &bad, &p, OutputKind::Regression, &params).unwrap_err();
    assert!(err.to_string().contains("row 3: feature `flag`"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// On random small data with missing values, every fitted tree is well formed with
    /// consistent covers, predictions are the base plus the trees, and JSON preserves
    /// them exactly.
    #[test]
    fn random_fits_are_well_formed_and_round_trip(
        seed in any::<u64>(),
        n in 30usize..200,
        depth in 1usize..5,
        leaves in 2usize..12,
        min_leaf in 1usize..8,
        subsample in 0.3f64..=1.0,
    ) {
        let mut rng = SplitMix64::new(seed);
        let schema = Schema::new(vec![
            Feature::new("a", FeatureKind::Numeric),
            Feature::new("b", FeatureKind::Numeric),
            Feature::new("c", FeatureKind::Categorical),
        ]).unwrap();
        let mut rows = Vec::new();
        let mut y = Vec::new();
        for _ in 0..n {
            let a = if rng.next_f64() < 0.2 { Value::Missing } else { Value::Number((rng.below(20) as f64) - 5.0) };
            let b = Value::Number(rng.next_f64());
            let c = Value::from(["p", "q", "r"][rng.below(3)]);
            y.push(rng.next_f64() * 10.0);
            rows.push(vec![a, b, c]);
        }
        let params = GbtParams::new().n_trees(8).max_depth(depth).max_leaves(leaves)
            .min_samples_leaf(min_leaf).subsample(subsample).seed(seed).check().unwrap();
        let s = Surrogate::fit(schema, &rows, &y, OutputKind::Regression, &params).unwrap();
        let e = &s.ensembles()[0];
        let n_train = (n - s.metadata().n_validation) as f64;
        for t in &e.trees {
            prop_assert!(t.max_depth() <= depth);
            prop_assert!(t.len().div_ceil(2) <= leaves);
            prop_assert_eq!(t.cover[0], n_train);
            for node in 0..t.len() {
                if !t.is_leaf(node) {
                    let (l, r) = (t.children_left[node] as usize, t.children_right[node] as usize);
                    prop_assert_eq!(t.cover[node], t.cover[l] + t.cover[r]);
                }
            }
        }
        let back = Surrogate::from_json(&s.to_json().unwrap()).unwrap();
        for row in &rows {
            let x = s.encode(row).unwrap();
            let direct = e.base_offset + e.trees.iter().map(|t| t.predict(&x)).sum::<f64>();
            prop_assert_eq!(s.predict_raw(row).unwrap()[0], direct);
            prop_assert_eq!(back.predict_raw(row).unwrap()[0].to_bits(), direct.to_bits());
        }
    }
}
