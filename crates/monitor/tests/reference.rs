//! Cross-check against Fairlearn and SciPy on the same data.
//!
//! `tests/reference.py` (run with the virtualenv that `tests/setup` makes, which has
//! Fairlearn and SciPy) generates fixed data sets from a seed, computes the reference
//! figures and prints both as JSON; this test computes the same figures with
//! sidelight-monitor and compares. Without the virtualenv it fails, saying to run
//! `tests/setup`: a cross-check that silently does not run checks nothing.
//!
//! Tolerances and method differences:
//!
//! - Rates, differences, ratios, Wilson intervals, KS `D`, chi-square statistics, PSI
//!   and associations: 1e-9 (they agree to rounding).
//! - Fairlearn's differences are `max − min` over groups and its ratios `min / max`, so
//!   they are compared with `|SPD|`, `|EOD|`, `max(|EOD|, |FPR_u − FPR_p|)` (two groups)
//!   or the report's ranges (any number of groups), and `min(DI, 1/DI)`.
//! - KS p-value: ours is the limiting Kolmogorov distribution `Q_KS(√(nm/(n+m)) D)`,
//!   compared with SciPy's `kstwobign.sf` of the same argument to 1e-9. SciPy's
//!   `ks_2samp(method="asymp")` evaluates instead the exact one-sample distribution
//!   `kstwo.sf(D, round(nm/(n+m)))`, which differs from the limit by O(1/√n); it is
//!   compared within `0.5/√(nm/(n+m))` (observed: 6.6e-3 at n = 36, 1.2e-4 at 12,000).
//! - Chi-square p-values (statrs against SciPy's `chi2.sf`): 1e-9 relative.

// A test stops at the first thing that is not as expected.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

use serde::Deserialize;
use sidelight_monitor::attribution::{Values, association};
use sidelight_monitor::{
    Decision, DriftConfig, FairnessConfig, NumericReference, ProtectedAttribute, categorical_drift,
    fairness, numeric_drift, wilson_interval,
};

#[derive(Deserialize)]
struct Reference {
    fairness: Vec<FairnessCase>,
    ks: Vec<KsCase>,
    psi: Vec<PsiCase>,
    chi2: Vec<Chi2Case>,
    pearson: Vec<PearsonCase>,
    cramers_v: Vec<CramerCase>,
}

#[derive(Deserialize)]
struct FairnessCase {
    name: String,
    privileged: String,
    unprivileged: Vec<String>,
    group: Vec<String>,
    y_true: Vec<u8>,
    y_pred: Vec<u8>,
    selection_rate: HashMap<String, f64>,
    tpr: HashMap<String, f64>,
    fpr: HashMap<String, f64>,
    wilson: HashMap<String, [f64; 2]>,
    demographic_parity_difference: f64,
    demographic_parity_ratio: f64,
    equalized_odds_difference: f64,
    equal_opportunity_difference: f64,
}

#[derive(Deserialize)]
struct KsCase {
    name: String,
    a: Vec<Option<f64>>,
    b: Vec<Option<f64>>,
    statistic: f64,
    pvalue_asymp: f64,
    pvalue_kstwobign: f64,
    en: f64,
}

#[derive(Deserialize)]
struct PsiCase {
    name: String,
    reference: Vec<Option<f64>>,
    current: Vec<Option<f64>>,
    bins: usize,
    epsilon: f64,
    edges: Vec<f64>,
    psi: f64,
}

#[derive(Deserialize)]
struct Chi2Case {
    name: String,
    reference: Vec<Option<String>>,
    current: Vec<Option<String>>,
    statistic: f64,
    pvalue: f64,
    dof: u64,
}

#[derive(Deserialize)]
struct PearsonCase {
    x: Vec<Option<f64>>,
    y: Vec<Option<f64>>,
    abs_r: f64,
}

#[derive(Deserialize)]
struct CramerCase {
    a: Vec<String>,
    b: Vec<String>,
    v: f64,
}

fn nan(xs: &[Option<f64>]) -> Vec<f64> {
    xs.iter().map(|x| x.unwrap_or(f64::NAN)).collect()
}

#[track_caller]
fn assert_close(what: &str, ours: f64, theirs: f64, tol: f64) {
    assert!(
        (ours - theirs).abs() <= tol,
        "{what}: sidelight-monitor {ours} vs reference {theirs} (|Δ| = {:e} > {tol:e})",
        (ours - theirs).abs()
    );
}

fn reference() -> Reference {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let python = crate_dir.join("../../target/mlserver-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run tests/setup (from the workspace root) to create the \
         virtualenv with Fairlearn and SciPy that this cross-check needs",
        python.display()
    );
    let out = Command::new(&python)
        .arg(crate_dir.join("tests/reference.py"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(
        out.status.success(),
        "tests/reference.py failed ({}); if Fairlearn or SciPy is missing, run tests/setup:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("reference.py prints JSON")
}

#[test]
fn matches_fairlearn_and_scipy() {
    let r = reference();
    fairness_cases(&r.fairness);
    ks_cases(&r.ks);
    psi_cases(&r.psi);
    chi2_cases(&r.chi2);
    for c in &r.pearson {
        let a = association(&Values::Numeric(&nan(&c.x)), &Values::Numeric(&nan(&c.y))).unwrap();
        assert_close("|pearson r|", a.value, c.abs_r, 1e-9);
    }
    for c in &r.cramers_v {
        let a: Vec<Option<&str>> = c.a.iter().map(|s| Some(s.as_str())).collect();
        let b: Vec<Option<&str>> = c.b.iter().map(|s| Some(s.as_str())).collect();
        let v = association(&Values::Categorical(&a), &Values::Categorical(&b)).unwrap();
        assert_close("cramér's V", v.value, c.v, 1e-9);
    }
}

fn fairness_cases(cases: &[FairnessCase]) {
    assert!(!cases.is_empty());
    for c in cases {
        let attribute = ProtectedAttribute {
            name: c.name.clone(),
            privileged: c.privileged.clone(),
            unprivileged: c.unprivileged.clone(),
        };
        let decisions = c
            .group
            .iter()
            .zip(&c.y_pred)
            .zip(&c.y_true)
            .map(|((g, &p), &t)| Decision {
                group: g,
                favourable: p == 1,
                outcome: Some(t == 1),
            });
        let report = fairness(&attribute, decisions, &FairnessConfig::default()).unwrap();
        assert_eq!(report.total as usize, c.group.len());
        assert_eq!(report.unlisted, 0);
        let name = &c.name;
        for g in &report.groups {
            let label = &g.group;
            assert_close(
                &format!("{name}: selection rate of {label}"),
                g.selection.rate.unwrap(),
                c.selection_rate[label],
                1e-9,
            );
            assert_close(
                &format!("{name}: TPR of {label}"),
                g.true_positive_rate.rate.unwrap(),
                c.tpr[label],
                1e-9,
            );
            assert_close(
                &format!("{name}: FPR of {label}"),
                g.false_positive_rate.rate.unwrap(),
                c.fpr[label],
                1e-9,
            );
            let w = g.selection.interval.unwrap();
            let [lo, hi] = c.wilson[label];
            assert_close(
                &format!("{name}: Wilson lower of {label}"),
                w.lower,
                lo,
                1e-9,
            );
            assert_close(
                &format!("{name}: Wilson upper of {label}"),
                w.upper,
                hi,
                1e-9,
            );
            // Our Wilson interval is also available on its own.
            let alone = wilson_interval(g.selection.successes, g.selection.trials, 0.95).unwrap();
            assert_eq!(alone, w);
        }
        // Fairlearn's max − min over all groups.
        assert_close(
            &format!("{name}: demographic parity difference"),
            report.demographic_parity_range().unwrap(),
            c.demographic_parity_difference,
            1e-9,
        );
        assert_close(
            &format!("{name}: equalized odds difference"),
            report.equalized_odds_range().unwrap(),
            c.equalized_odds_difference,
            1e-9,
        );
        if c.unprivileged.len() == 1 {
            // Two groups: fairlearn's figures are the absolute values of ours.
            let cmp = &report.comparisons[0];
            let spd = cmp.statistical_parity_difference.unwrap().value;
            let di = cmp.disparate_impact.unwrap().value;
            let eod = cmp.equal_opportunity_difference.unwrap().value;
            let fprd = cmp.false_positive_rate_difference.unwrap().value;
            assert_close(
                &format!("{name}: |SPD|"),
                spd.abs(),
                c.demographic_parity_difference,
                1e-9,
            );
            assert_close(
                &format!("{name}: min(DI, 1/DI)"),
                di.min(1.0 / di),
                c.demographic_parity_ratio,
                1e-9,
            );
            assert_close(
                &format!("{name}: |EOD|"),
                eod.abs(),
                c.equal_opportunity_difference,
                1e-9,
            );
            assert_close(
                &format!("{name}: max(|EOD|, |FPR difference|)"),
                eod.abs().max(fprd.abs()),
                c.equalized_odds_difference,
                1e-9,
            );
        } else {
            // Several groups: fairlearn's equal opportunity difference is the TPR range,
            // its demographic parity ratio the smallest over the largest selection rate.
            let spread = |rates: Vec<f64>| {
                let hi = rates.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let lo = rates.iter().copied().fold(f64::INFINITY, f64::min);
                (hi - lo, lo / hi)
            };
            let (tpr_range, _) = spread(
                report
                    .groups
                    .iter()
                    .map(|g| g.true_positive_rate.rate.unwrap())
                    .collect(),
            );
            assert_close(
                &format!("{name}: TPR range"),
                tpr_range,
                c.equal_opportunity_difference,
                1e-9,
            );
            let (_, ratio) = spread(
                report
                    .groups
                    .iter()
                    .map(|g| g.selection.rate.unwrap())
                    .collect(),
            );
            assert_close(
                &format!("{name}: min/max selection rate"),
                ratio,
                c.demographic_parity_ratio,
                1e-9,
            );
        }
    }
}

fn ks_cases(cases: &[KsCase]) {
    assert!(!cases.is_empty());
    for c in cases {
        let d = numeric_drift(&nan(&c.a), &nan(&c.b), &DriftConfig::default()).unwrap();
        let ks = d.ks.unwrap();
        let name = &c.name;
        assert_close(&format!("{name}: KS D"), ks.statistic, c.statistic, 1e-12);
        assert_close(
            &format!("{name}: KS p vs kstwobign"),
            ks.p_value,
            c.pvalue_kstwobign,
            1e-9,
        );
        let tol = 0.5 / c.en.sqrt();
        assert_close(
            &format!("{name}: KS p vs ks_2samp asymp"),
            ks.p_value,
            c.pvalue_asymp,
            tol,
        );
    }
}

fn psi_cases(cases: &[PsiCase]) {
    assert!(!cases.is_empty());
    for c in cases {
        let config = DriftConfig {
            bins: c.bins,
            epsilon: c.epsilon,
        };
        let reference = NumericReference::new(&nan(&c.reference), &config).unwrap();
        assert_eq!(
            reference.edges(),
            c.edges.as_slice(),
            "{}: cut points",
            c.name
        );
        let d = reference.compare(&nan(&c.current));
        assert_close(&format!("{}: PSI", c.name), d.psi.unwrap(), c.psi, 1e-9);
    }
}

fn chi2_cases(cases: &[Chi2Case]) {
    assert!(!cases.is_empty());
    for c in cases {
        let d = categorical_drift(&c.reference, &c.current, &DriftConfig::default()).unwrap();
        let chi = d.chi_square.unwrap();
        let name = &c.name;
        assert_eq!(chi.dof, c.dof, "{name}: degrees of freedom");
        assert_close(
            &format!("{name}: chi-square"),
            chi.statistic,
            c.statistic,
            1e-9 * c.statistic.max(1.0),
        );
        assert_close(
            &format!("{name}: chi-square p"),
            chi.p_value,
            c.pvalue,
            1e-9 * c.pvalue.max(1e-300),
        );
    }
}
