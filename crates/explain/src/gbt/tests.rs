use super::*;
use crate::rng::SplitMix64;
use crate::tree::LEAF;

/// Rows of `nf` uniform features in [0, 1) and a nonlinear target with interactions.
pub(crate) fn friedman(n: usize, nf: usize, seed: u64) -> (Vec<f64>, Vec<f64>) {
    let mut rng = SplitMix64::new(seed);
    let x: Vec<f64> = (0..n * nf).map(|_| rng.next_f64()).collect();
    let y = x.chunks_exact(nf).map(friedman_row).collect();
    (x, y)
}

pub(crate) fn friedman_row(r: &[f64]) -> f64 {
    10.0 * (std::f64::consts::PI * r[0] * r[1]).sin()
        + 20.0 * (r[2] - 0.5).powi(2)
        + 10.0 * r[3]
        + 5.0 * r[4]
        + 4.0 * r[5] * r[6]
}

fn r2(pred: &[f64], y: &[f64]) -> f64 {
    let mean = y.iter().sum::<f64>() / y.len() as f64;
    let ss_res: f64 = pred.iter().zip(y).map(|(p, t)| (p - t).powi(2)).sum();
    let ss_tot: f64 = y.iter().map(|t| (t - mean).powi(2)).sum();
    1.0 - ss_res / ss_tot
}

fn check_tree(tree: &Tree, min_leaf: f64) {
    for node in 0..tree.len() {
        let (l, r) = (tree.children_left[node], tree.children_right[node]);
        if l == LEAF {
            assert!(
                tree.cover[node] >= min_leaf,
                "leaf cover {}",
                tree.cover[node]
            );
            continue;
        }
        let (l, r) = (l as usize, r as usize);
        assert_eq!(tree.cover[node], tree.cover[l] + tree.cover[r]);
        let mean =
            (tree.value[l] * tree.cover[l] + tree.value[r] * tree.cover[r]) / tree.cover[node];
        assert!((tree.value[node] - mean).abs() < 1e-12);
    }
}

#[test]
fn fits_a_nonlinear_function_with_consistent_covers() {
    let nf = 10;
    let (x, y) = friedman(3000, nf, 1);
    let model = GbtParams::new()
        .n_trees(200)
        .min_samples_leaf(5)
        .check()
        .unwrap()
        .fit_dense(&x, nf, &y)
        .unwrap();
    let e = model.ensemble();
    e.validate().unwrap();
    let n_train = model.report().n_train as f64;
    for t in &e.trees {
        assert!(t.max_depth() <= 6);
        assert!(t.len() < 2 * 63);
        assert_eq!(t.cover[0], n_train);
        check_tree(t, 5.0);
    }
    let (xt, yt) = friedman(1000, nf, 2);
    let pred: Vec<f64> = xt.chunks_exact(nf).map(|r| e.predict(r)).collect();
    let score = r2(&pred, &yt);
    assert!(score > 0.9, "r2 {score}");
}

#[test]
fn a_seed_gives_the_same_trees_and_another_seed_differs() {
    let nf = 4;
    let (x, y) = friedman(800, 10, 3);
    let x: Vec<f64> = x.chunks_exact(10).flat_map(|r| r[..nf].to_vec()).collect();
    let fit = |seed| {
        GbtParams::new()
            .n_trees(20)
            .subsample(0.7)
            .seed(seed)
            .check()
            .unwrap()
            .fit_dense(&x, nf, &y)
            .unwrap()
    };
    assert_eq!(fit(7), fit(7));
    assert_ne!(fit(7).ensemble(), fit(8).ensemble());
    for t in &fit(7).ensemble().trees {
        // Covers count every training row even when each tree saw a sample.
        assert_eq!(t.cover[0], 720.0);
        check_tree(t, 0.0);
    }
}

#[test]
fn missing_values_follow_the_learned_default_child() {
    // y is high when x0 is missing or large, low when x0 is small: missing rows must
    // join the large side.
    let mut x = Vec::new();
    let mut y = Vec::new();
    for i in 0..600 {
        let v = (i % 100) as f64 / 100.0;
        let (xv, yv) = match i % 3 {
            0 => (f64::NAN, 10.0),
            _ if v > 0.5 => (v, 10.0),
            _ => (v, 0.0),
        };
        x.push(xv);
        y.push(yv);
    }
    let model = GbtParams::new()
        .n_trees(30)
        .max_depth(1)
        .validation_fraction(0.0)
        .check()
        .unwrap()
        .fit_dense(&x, 1, &y)
        .unwrap();
    let first = &model.ensemble().trees[0];
    assert_eq!(first.children_default[0], first.children_right[0]);
    assert!(model.predict_row(&[f64::NAN]) > 9.0);
    assert!(model.predict_row(&[0.2]) < 1.0);
    // A feature that was never missing in training sends missing rows to the larger child.
    let x2: Vec<f64> = (0..300).map(|i| i as f64).collect();
    let y2: Vec<f64> = x2
        .iter()
        .map(|&v| if v < 60.0 { 1.0 } else { 0.0 })
        .collect();
    let m2 = GbtParams::new()
        .n_trees(1)
        .max_depth(1)
        .validation_fraction(0.0)
        .check()
        .unwrap()
        .fit_dense(&x2, 1, &y2)
        .unwrap();
    let t = &m2.ensemble().trees[0];
    assert_eq!(t.threshold[0], 59.5);
    assert_eq!(t.children_default[0], t.children_right[0]);
}

#[test]
fn early_stopping_stops_on_noise() {
    let mut rng = SplitMix64::new(5);
    let nf = 3;
    let x: Vec<f64> = (0..2000 * nf).map(|_| rng.next_f64()).collect();
    let y: Vec<f64> = (0..2000).map(|_| rng.next_f64()).collect();
    let model = GbtParams::new()
        .n_trees(500)
        .learning_rate(0.5)
        .patience(5)
        .check()
        .unwrap()
        .fit_dense(&x, nf, &y)
        .unwrap();
    let rep = model.report();
    assert!(rep.stopped_early);
    assert!(rep.trees < 50, "{} trees", rep.trees);
    assert_eq!(rep.n_validation, 200);
    assert_eq!(model.ensemble().trees.len(), rep.trees);
    let best = rep.validation_loss[..rep.trees.max(1)]
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min);
    assert!(rep.validation_loss.iter().all(|&l| l >= best));
}

#[test]
fn constant_targets_give_no_trees() {
    let x: Vec<f64> = (0..100).map(f64::from).collect();
    let model = GbtParams::new()
        .check()
        .unwrap()
        .fit_dense(&x, 1, &[4.0; 100])
        .unwrap();
    assert!(model.ensemble().trees.is_empty());
    assert_eq!(model.predict_row(&[3.0]), 4.0);
}

#[test]
fn bad_parameters_and_data_are_errors_not_panics() {
    assert!(matches!(
        GbtParams::new().learning_rate(0.0).check(),
        Err(GbtError::Param {
            name: "learning_rate",
            ..
        })
    ));
    assert!(GbtParams::new().max_bins(256).check().is_err());
    assert!(GbtParams::new().subsample(f64::NAN).check().is_err());
    let p = GbtParams::new().check().unwrap();
    assert!(matches!(p.fit_dense(&[], 1, &[]), Err(GbtError::NoRows)));
    assert!(matches!(
        p.fit_dense(&[1.0], 2, &[1.0]),
        Err(GbtError::Shape(_))
    ));
    assert!(matches!(
        p.fit_dense(&[1.0, 2.0], 1, &[1.0, f64::INFINITY]),
        Err(GbtError::Target { row: 1 })
    ));
}

#[test]
fn linfa_fit_and_predict_compose() {
    use linfa::prelude::*;
    use ndarray::Array2;
    let nf = 3;
    let (x, y) = friedman(500, nf.max(7), 9);
    let x: Vec<f64> = x.chunks_exact(7).flat_map(|r| r[..nf].to_vec()).collect();
    let records = Array2::from_shape_vec((500, nf), x.clone()).unwrap();
    let data = Dataset::new(records.clone(), Array1::from(y.clone()));
    let params = GbtParams::new().n_trees(10).validation_fraction(0.0);
    let model: GbtRegressor = params.fit(&data).unwrap();
    let direct = params.check().unwrap().fit_dense(&x, nf, &y).unwrap();
    assert_eq!(model, direct);
    let pred = model.predict(&records);
    for (p, r) in pred.iter().zip(x.chunks_exact(nf)) {
        assert_eq!(*p, direct.predict_row(r));
    }
    let wrong = Array2::<f64>::zeros((2, nf + 1));
    assert!(model.predict(&wrong).iter().all(|p| p.is_nan()));
}
