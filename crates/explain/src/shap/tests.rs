//! Property tests of the explainers against the brute-force definitions, and the
//! Shapley axioms on random trees.

use proptest::prelude::*;

use super::brute;
use super::*;
use crate::tree::{Attribution, Ensemble, LEAF, Tree};

const THRESHOLDS: [f64; 5] = [-1.0, -0.5, 0.0, 0.5, 1.0];
/// Row values: on, between and beyond the thresholds, and missing.
const ROW_VALUES: [f64; 10] = [-1.5, -1.0, -0.75, -0.5, 0.0, 0.25, 0.5, 1.0, 2.0, f64::NAN];
/// Positions of a complete binary tree of depth 4.
const SLOTS: usize = 31;

#[derive(Debug, Clone)]
struct NodeSpec {
    split: bool,
    feature: usize,
    threshold: usize,
    default_left: bool,
    /// Share of the cover sent left, in tenths (0 and 10 give zero-cover children).
    left_tenths: u32,
    value: f64,
}

#[derive(Debug, Clone)]
struct TreeSpec {
    depth: usize,
    root_cover: u32,
    nodes: Vec<NodeSpec>,
}

fn node_spec() -> impl Strategy<Value = NodeSpec> {
    (
        prop::bool::weighted(0.8),
        0usize..5,
        0usize..THRESHOLDS.len(),
        any::<bool>(),
        0u32..=10,
        -5.0f64..5.0,
    )
        .prop_map(
            |(split, feature, threshold, default_left, left_tenths, value)| NodeSpec {
                split,
                feature,
                threshold,
                default_left,
                left_tenths,
                value,
            },
        )
}

fn tree_spec() -> impl Strategy<Value = TreeSpec> {
    (
        0usize..=4,
        1u32..=60,
        prop::collection::vec(node_spec(), SLOTS),
    )
        .prop_map(|(depth, root_cover, nodes)| TreeSpec {
            depth,
            root_cover,
            nodes,
        })
}

fn empty_tree() -> Tree {
    Tree {
        children_left: vec![],
        children_right: vec![],
        children_default: vec![],
        feature: vec![],
        threshold: vec![],
        value: vec![],
        cover: vec![],
    }
}

fn push_node(t: &mut Tree, value: f64, cover: f64) -> usize {
    t.children_left.push(LEAF);
    t.children_right.push(LEAF);
    t.children_default.push(LEAF);
    t.feature.push(LEAF);
    t.threshold.push(0.0);
    t.value.push(value);
    t.cover.push(cover);
    t.value.len() - 1
}

/// Builds a valid tree: covers add up exactly, a node with no cover is a leaf, features
/// are taken modulo `n_features`. Internal values are cover-weighted means.
fn build(spec: &TreeSpec, n_features: usize) -> Tree {
    let mut t = empty_tree();
    fn rec(
        t: &mut Tree,
        spec: &TreeSpec,
        n_features: usize,
        pos: usize,
        level: usize,
        cover: u32,
    ) -> usize {
        let s = &spec.nodes[pos];
        let node = push_node(t, s.value, cover as f64);
        if level >= spec.depth || !s.split || cover == 0 {
            return node;
        }
        let left_cover = (cover * s.left_tenths + 5) / 10;
        let l = rec(t, spec, n_features, 2 * pos + 1, level + 1, left_cover);
        let r = rec(
            t,
            spec,
            n_features,
            2 * pos + 2,
            level + 1,
            cover - left_cover,
        );
        t.children_left[node] = l as i32;
        t.children_right[node] = r as i32;
        t.children_default[node] = if s.default_left { l } else { r } as i32;
        t.feature[node] = (s.feature % n_features) as i32;
        t.threshold[node] = THRESHOLDS[s.threshold];
        let total = t.cover[l] + t.cover[r];
        t.value[node] = if total > 0.0 {
            (t.value[l] * t.cover[l] + t.value[r] * t.cover[r]) / total
        } else {
            t.value[l]
        };
        node
    }
    rec(&mut t, spec, n_features, 0, 0, spec.root_cover);
    t
}

fn ensemble_of(n_features: usize, specs: &[TreeSpec], base_offset: f64) -> Ensemble {
    Ensemble {
        base_offset,
        trees: specs.iter().map(|s| build(s, n_features)).collect(),
        n_features,
    }
}

fn arb_ensemble() -> impl Strategy<Value = Ensemble> {
    (
        1usize..=5,
        prop::collection::vec(tree_spec(), 1..=3),
        -2.0f64..2.0,
    )
        .prop_map(|(n, specs, base)| ensemble_of(n, &specs, base))
}

fn arb_row(n: usize) -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(prop::sample::select(ROW_VALUES.to_vec()), n)
}

fn ensemble_and_rows(
    n_rows: std::ops::RangeInclusive<usize>,
) -> impl Strategy<Value = (Ensemble, Vec<f64>, Vec<Vec<f64>>)> {
    arb_ensemble().prop_flat_map(move |e| {
        let n = e.n_features;
        (
            Just(e),
            arb_row(n),
            prop::collection::vec(arb_row(n), n_rows.clone()),
        )
    })
}

fn assert_close(got: &Attribution, want: &Attribution, tol: f64) -> Result<(), TestCaseError> {
    prop_assert!(
        (got.base_value - want.base_value).abs() <= tol,
        "base {} vs {}",
        got.base_value,
        want.base_value
    );
    prop_assert!((got.prediction - want.prediction).abs() <= tol);
    prop_assert_eq!(got.values.len(), want.values.len());
    for (i, (g, w)) in got.values.iter().zip(&want.values).enumerate() {
        prop_assert!(
            (g - w).abs() <= tol,
            "feature {}: {} vs {} ({:?} vs {:?})",
            i,
            g,
            w,
            got.values,
            want.values
        );
    }
    Ok(())
}

fn assert_efficient(a: &Attribution, tol: f64) -> Result<(), TestCaseError> {
    let total = a.base_value + a.values.iter().sum::<f64>();
    prop_assert!(
        (total - a.prediction).abs() <= tol,
        "{} + Σ{:?} != {}",
        a.base_value,
        a.values,
        a.prediction
    );
    Ok(())
}

/// Sends every missing value of feature `f` to one side.
fn with_defaults(mut e: Ensemble, f: usize, left: bool) -> Ensemble {
    for t in &mut e.trees {
        for n in 0..t.len() {
            if !t.is_leaf(n) && t.feature[n] == f as i32 {
                t.children_default[n] = if left {
                    t.children_left[n]
                } else {
                    t.children_right[n]
                };
            }
        }
    }
    e
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn path_dependent_explainers_equal_the_enumeration((e, x, _) in ensemble_and_rows(0..=0)) {
        let want = brute::path_dependent(&e, &x);
        let reference = tree_shap_reference(&e, &x).unwrap();
        let fast = TreeExplainer::new(&e).unwrap().explain(&x).unwrap();
        let fallback = TreeExplainer::with_options(&e, FastOptions { max_table_bytes: 0, max_table_features: 0 })
            .unwrap()
            .explain(&x)
            .unwrap();
        let mixed = TreeExplainer::with_options(&e, FastOptions { max_table_bytes: 96, max_table_features: 3 })
            .unwrap()
            .explain(&x)
            .unwrap();
        for a in [&reference, &fast, &fallback, &mixed] {
            assert_close(a, &want, 1e-9)?;
            assert_efficient(a, 1e-9)?;
        }
        prop_assert!((expected_value(&e).unwrap() - want.base_value).abs() <= 1e-9);
    }

    #[test]
    fn a_contrast_adds_up_to_the_difference_of_two_rows_outputs((e, x, background) in ensemble_and_rows(1..=4)) {
        // Two rows explained by one model: the difference of their attributions is an
        // exact attribution of the difference of their outputs, and swapping them
        // negates it.
        let explainer = TreeExplainer::new(&e).unwrap();
        let a = explainer.explain(&x).unwrap();
        let b = explainer.explain(&background[0]).unwrap();
        let c = super::contrast(&a, &b).unwrap();
        prop_assert!((c.difference - (e.predict(&x) - e.predict(&background[0]))).abs() <= 1e-9);
        prop_assert!((c.values.iter().sum::<f64>() - c.difference).abs() <= 1e-9);
        let back = super::contrast(&b, &a).unwrap();
        for (u, v) in c.values.iter().zip(&back.values) {
            prop_assert!((u + v).abs() <= 1e-12);
        }
    }

    #[test]
    fn interventional_equals_the_enumeration((e, x, background) in ensemble_and_rows(1..=4)) {
        let want = brute::interventional(&e, &x, &background);
        let got = InterventionalExplainer::new(&e, &background).unwrap().explain(&x).unwrap();
        assert_close(&got, &want, 1e-9)?;
        assert_efficient(&got, 1e-9)?;
    }

    #[test]
    fn kernel_shap_with_every_coalition_equals_interventional((e, x, background) in ensemble_and_rows(1..=3)) {
        let want = InterventionalExplainer::new(&e, &background).unwrap().explain(&x).unwrap();
        let mut model = &e;
        let got = kernel_shap(&mut model, &x, &background, &KernelOptions::default()).unwrap();
        assert_close(&got, &want, 1e-6)?;
        assert_efficient(&got, 1e-9)?;
    }

    #[test]
    fn a_feature_no_split_uses_gets_exactly_zero((e, x, background) in ensemble_and_rows(1..=3), extra in prop::sample::select(ROW_VALUES.to_vec())) {
        let mut wide = e.clone();
        wide.n_features += 1;
        let mut x = x;
        x.push(extra);
        let background: Vec<Vec<f64>> = background.into_iter().map(|mut z| { z.push(-extra); z }).collect();
        let unused = e.n_features;
        prop_assert_eq!(tree_shap_reference(&wide, &x).unwrap().values[unused], 0.0);
        prop_assert_eq!(TreeExplainer::new(&wide).unwrap().explain(&x).unwrap().values[unused], 0.0);
        prop_assert_eq!(InterventionalExplainer::new(&wide, &background).unwrap().explain(&x).unwrap().values[unused], 0.0);
    }

    #[test]
    fn missing_values_follow_the_default_child((e, x, background) in ensemble_and_rows(1..=2), f in 0usize..5, left in any::<bool>()) {
        let f = f % e.n_features;
        let e = with_defaults(e, f, left);
        let mut missing = x.clone();
        missing[f] = f64::NAN;
        let mut extreme = x;
        extreme[f] = if left { -1e300 } else { 1e300 };
        let explainer = TreeExplainer::new(&e).unwrap();
        let a = explainer.explain(&missing).unwrap();
        let b = explainer.explain(&extreme).unwrap();
        assert_close(&a, &b, 1e-12)?;
        let inter = InterventionalExplainer::new(&e, &background).unwrap();
        assert_close(&inter.explain(&missing).unwrap(), &inter.explain(&extreme).unwrap(), 1e-12)?;
    }

    #[test]
    fn features_treated_alike_get_equal_values(
        block in (prop::sample::select(THRESHOLDS.to_vec()), any::<bool>(), 1u32..8, 1u32..8, -5.0f64..5.0, -5.0f64..5.0, -5.0f64..5.0),
        below in prop::collection::vec(tree_spec(), 3),
        shared in prop::sample::select(ROW_VALUES.to_vec()),
        rest in arb_row(3),
        background in prop::collection::vec(arb_row(5), 1..=2),
    ) {
        let e = symmetric_ensemble(block, &below);
        let mut x = vec![shared, shared];
        x.extend(rest);
        // The background is closed under swapping features 0 and 1.
        let mut bg = background.clone();
        bg.extend(background.iter().map(|z| { let mut s = z.clone(); s.swap(0, 1); s }));
        for a in [
            tree_shap_reference(&e, &x).unwrap(),
            TreeExplainer::new(&e).unwrap().explain(&x).unwrap(),
            InterventionalExplainer::new(&e, &bg).unwrap().explain(&x).unwrap(),
        ] {
            prop_assert!((a.values[0] - a.values[1]).abs() <= 1e-9, "{:?}", a.values);
            assert_efficient(&a, 1e-9)?;
        }
    }
}

/// A tree over features {0, 1} that treats them alike: the root splits on 0 and both
/// children on 1 with the same threshold, the mixed cells (0 low, 1 high) and (0 high,
/// 1 low) have equal values and identical subtrees (over features 2..4), and missing
/// values go the same way on both features. The covers must factorise (`p²`, `pq`, `q²`)
/// for the path-dependent game to be symmetric: the tree reaches feature 1's split only
/// through feature 0's, so `E[f | x₁]` is averaged over 0's branches by their covers and
/// equals `E[f | x₀]` only when the two features are independent in the covers.
fn symmetric_ensemble(block: (f64, bool, u32, u32, f64, f64, f64), below: &[TreeSpec]) -> Ensemble {
    let (threshold, default_left, p, q, v_low, v_mixed, v_high) = block;
    let (c_low, c_mixed, c_high) = (p * p, p * q, q * q);
    let n_features = 5;
    // Subtrees over features 2..=4, built on their own and grafted in.
    let sub = |spec: &TreeSpec, cover: u32, value: f64| {
        let mut s = spec.clone();
        s.root_cover = cover;
        for n in &mut s.nodes {
            n.feature = 2 + n.feature % 3;
            n.value += value;
        }
        build(&s, n_features)
    };
    let cells = [
        sub(&below[0], c_low, v_low),
        sub(&below[1], c_mixed, v_mixed),
        sub(&below[1], c_mixed, v_mixed),
        sub(&below[2], c_high, v_high),
    ];
    let mut t = empty_tree();
    let root = push_node(&mut t, 0.0, f64::from(c_low + 2 * c_mixed + c_high));
    let lo = push_node(&mut t, 0.0, f64::from(c_low + c_mixed));
    let hi = push_node(&mut t, 0.0, f64::from(c_mixed + c_high));
    let mut roots = Vec::new();
    for cell in &cells {
        let offset = t.len() as i32;
        roots.push(offset as usize);
        let shift = |c: i32| if c == LEAF { LEAF } else { c + offset };
        t.children_left
            .extend(cell.children_left.iter().map(|&c| shift(c)));
        t.children_right
            .extend(cell.children_right.iter().map(|&c| shift(c)));
        t.children_default
            .extend(cell.children_default.iter().map(|&c| shift(c)));
        t.feature.extend_from_slice(&cell.feature);
        t.threshold.extend_from_slice(&cell.threshold);
        t.value.extend_from_slice(&cell.value);
        t.cover.extend_from_slice(&cell.cover);
    }
    let mut split = |node: usize, feature: i32, l: usize, r: usize| {
        t.children_left[node] = l as i32;
        t.children_right[node] = r as i32;
        t.children_default[node] = if default_left { l } else { r } as i32;
        t.feature[node] = feature;
        t.threshold[node] = threshold;
    };
    split(root, 0, lo, hi);
    split(lo, 1, roots[0], roots[1]);
    split(hi, 1, roots[2], roots[3]);
    Ensemble {
        base_offset: 0.0,
        trees: vec![t],
        n_features,
    }
}

/// x0 <= 0.5 ? (x1 <= 2 ? 1 : 2) : 3 with covers 10 → (8 → 4, 4), 2.
fn small() -> Ensemble {
    Ensemble {
        base_offset: 0.5,
        trees: vec![Tree {
            children_left: vec![1, 3, LEAF, LEAF, LEAF],
            children_right: vec![2, 4, LEAF, LEAF, LEAF],
            children_default: vec![2, 3, LEAF, LEAF, LEAF],
            feature: vec![0, 1, LEAF, LEAF, LEAF],
            threshold: vec![0.5, 2.0, 0.0, 0.0, 0.0],
            value: vec![1.8, 1.5, 3.0, 1.0, 2.0],
            cover: vec![10.0, 8.0, 2.0, 4.0, 4.0],
        }],
        n_features: 2,
    }
}

#[test]
fn a_hand_computed_tree() {
    // v(∅) = 1.8, v({0}) = 1.5, v({1}) = 0.8·1 + 0.2·3 = 1.4, v({0,1}) = 1.
    let e = small();
    for a in [
        tree_shap_reference(&e, &[0.0, 0.0]).unwrap(),
        TreeExplainer::new(&e)
            .unwrap()
            .explain(&[0.0, 0.0])
            .unwrap(),
    ] {
        assert!((a.base_value - 2.3).abs() < 1e-12);
        assert!((a.values[0] + 0.35).abs() < 1e-12, "{:?}", a.values);
        assert!((a.values[1] + 0.45).abs() < 1e-12, "{:?}", a.values);
        assert_eq!(a.prediction, 1.5);
    }
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let e = small();
    assert_eq!(
        TreeExplainer::new(&e).unwrap().explain(&[0.0]),
        Err(ShapError::RowLength {
            expected: 2,
            got: 1
        })
    );
    let mut bad = e.clone();
    bad.trees[0].cover[1] = 0.0;
    assert!(matches!(
        TreeExplainer::new(&bad),
        Err(ShapError::BadCover { node: 1, .. })
    ));
    bad.trees[0].cover[1] = f64::NAN;
    assert!(matches!(
        tree_shap_reference(&bad, &[0.0, 0.0]),
        Err(ShapError::BadCover { .. })
    ));
    let mut broken = e.clone();
    broken.trees[0].children_left[0] = 9;
    assert!(matches!(
        TreeExplainer::new(&broken),
        Err(ShapError::Tree(_))
    ));
    assert_eq!(
        InterventionalExplainer::new(&e, &[]).err(),
        Some(ShapError::EmptyBackground)
    );
    assert!(matches!(
        InterventionalExplainer::new(&e, &[vec![0.0]]),
        Err(ShapError::BackgroundRow { row: 0, .. })
    ));
    let mut model = &e;
    assert!(kernel_shap(&mut model, &[0.0, 0.0], &[], &KernelOptions::default()).is_err());
    assert!(LinearExplainer::new(vec![1.0], 0.0, vec![]).is_err());
}

#[test]
fn linear_shap_is_the_closed_form_and_imputes_missing_values() {
    let lin = LinearExplainer::new(vec![2.0, -1.0, 0.5], 1.0, vec![1.0, 2.0, 0.0]).unwrap();
    assert_eq!(lin.base_value(), 1.0 + 2.0 - 2.0);
    let a = lin.explain(&[3.0, f64::NAN, 4.0]).unwrap();
    assert_eq!(a.values, vec![4.0, 0.0, 2.0]);
    assert_eq!(a.prediction, 1.0 + 6.0 - 2.0 + 2.0);
    assert!((a.base_value + a.values.iter().sum::<f64>() - a.prediction).abs() < 1e-12);
}

#[test]
fn sampled_kernel_shap_is_exact_for_an_additive_model_and_deterministic() {
    // An additive game is fitted exactly by any coalition set of full rank, so even a
    // small sample must recover linear SHAP against the background mean.
    let n = 16;
    let w: Vec<f64> = (0..n).map(|i| (i as f64 - 7.5) / 3.0).collect();
    let background = synth::random_rows(7, 5, n, 0.0);
    let means: Vec<f64> = (0..n)
        .map(|j| background.iter().map(|z| z[j]).sum::<f64>() / 5.0)
        .collect();
    let lin = LinearExplainer::new(w.clone(), 0.25, means).unwrap();
    let x = synth::random_rows(8, 1, n, 0.0).remove(0);
    let options = KernelOptions {
        max_coalitions: 300,
        seed: 42,
        ..KernelOptions::default()
    };
    let mut model =
        PerRow(|row: &[f64]| 0.25 + row.iter().zip(&w).map(|(a, b)| a * b).sum::<f64>());
    let a = kernel_shap(&mut model, &x, &background, &options).unwrap();
    let b = kernel_shap(&mut model, &x, &background, &options).unwrap();
    assert_eq!(a, b);
    let want = lin.explain(&x).unwrap();
    for (g, e) in a.values.iter().zip(&want.values) {
        assert!((g - e).abs() < 1e-8, "{:?} vs {:?}", a.values, want.values);
    }
    assert!((a.base_value + a.values.iter().sum::<f64>() - a.prediction).abs() < 1e-9);
}

#[test]
fn sampled_kernel_shap_approximates_interventional_tree_shap() {
    let e = synth::random_ensemble(3, 10, 4, 14, 500);
    let background = synth::random_rows(4, 10, 14, 0.1);
    let x = synth::random_rows(5, 1, 14, 0.1).remove(0);
    let want = InterventionalExplainer::new(&e, &background)
        .unwrap()
        .explain(&x)
        .unwrap();
    let options = KernelOptions {
        max_coalitions: 4000,
        seed: 1,
        ..KernelOptions::default()
    };
    let mut model = &e;
    let got = kernel_shap(&mut model, &x, &background, &options).unwrap();
    assert!((got.base_value + got.values.iter().sum::<f64>() - got.prediction).abs() < 1e-9);
    let scale = want.values.iter().map(|v| v.abs()).fold(0.0, f64::max);
    for (g, w) in got.values.iter().zip(&want.values) {
        assert!(
            (g - w).abs() < 0.1 * scale + 1e-9,
            "{:?} vs {:?}",
            got.values,
            want.values
        );
    }
}

#[test]
fn the_synthetic_benchmark_ensemble_is_valid_and_explained_consistently() {
    let e = synth::random_ensemble(11, 5, 6, 20, 1000);
    e.validate().unwrap();
    let fast = TreeExplainer::new(&e).unwrap();
    assert!(fast.table_bytes() > 0);
    for x in synth::random_rows(12, 5, 20, 0.1) {
        let a = fast.explain(&x).unwrap();
        let b = tree_shap_reference(&e, &x).unwrap();
        for (p, q) in a.values.iter().zip(&b.values) {
            assert!((p - q).abs() < 1e-9);
        }
        assert!((a.base_value + a.values.iter().sum::<f64>() - a.prediction).abs() < 1e-9);
    }
}
