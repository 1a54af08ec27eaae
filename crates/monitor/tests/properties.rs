//! Invariants of the statistics over random inputs.

// A test stops at the first thing that is not as expected.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::collection::vec;
use proptest::prelude::*;
use sidelight_monitor::attribution::{Values, association};
use sidelight_monitor::stats::{newcombe_difference, wilson_interval};
use sidelight_monitor::{
    Decision, DriftConfig, FairnessConfig, ProtectedAttribute, Window, WindowLimits,
    categorical_drift, fairness, numeric_drift,
};

/// Numbers with ties and the odd NaN, as traffic has.
fn sample() -> impl Strategy<Value = Vec<f64>> {
    vec(
        prop_oneof![
            8 => (-50i32..50).prop_map(|x| f64::from(x) / 4.0),
            4 => -1e6f64..1e6,
            1 => Just(f64::NAN),
        ],
        0..300,
    )
}

fn levels() -> impl Strategy<Value = Vec<Option<String>>> {
    vec(
        prop_oneof![
            10 => "[a-f]".prop_map(Some),
            1 => Just(None),
        ],
        0..300,
    )
}

fn config() -> impl Strategy<Value = DriftConfig> {
    (2usize..20, prop_oneof![Just(1e-4), Just(1e-6), Just(0.01)])
        .prop_map(|(bins, epsilon)| DriftConfig { bins, epsilon })
}

proptest! {
    #[test]
    fn psi_and_ks_bounds(a in sample(), b in sample(), config in config()) {
        let d = numeric_drift(&a, &b, &config).unwrap();
        let (na, nb) = (a.iter().filter(|x| !x.is_nan()).count(), b.iter().filter(|x| !x.is_nan()).count());
        prop_assert_eq!(d.reference_count as usize, na);
        prop_assert_eq!(d.current_missing as usize, b.len() - nb);
        if na > 0 && nb > 0 {
            let psi = d.psi.unwrap();
            prop_assert!(psi >= 0.0 && psi.is_finite());
            let ks = d.ks.unwrap();
            prop_assert!((0.0..=1.0).contains(&ks.statistic));
            prop_assert!((0.0..=1.0).contains(&ks.p_value));
            // KS is symmetric in its samples.
            let back = numeric_drift(&b, &a, &config).unwrap().ks.unwrap();
            prop_assert_eq!(back.statistic, ks.statistic);
            // Shares add up to 1 on both sides.
            let r: f64 = d.bins.iter().map(|x| x.reference).sum();
            let c: f64 = d.bins.iter().map(|x| x.current).sum();
            prop_assert!((r - 1.0).abs() < 1e-9 && (c - 1.0).abs() < 1e-9);
        } else {
            prop_assert!(d.psi.is_none() && d.ks.is_none());
        }
    }

    #[test]
    fn identical_windows_do_not_drift(a in sample(), config in config()) {
        let d = numeric_drift(&a, &a, &config).unwrap();
        if d.reference_count > 0 {
            prop_assert_eq!(d.psi, Some(0.0));
            let ks = d.ks.unwrap();
            prop_assert_eq!(ks.statistic, 0.0);
            prop_assert_eq!(ks.p_value, 1.0);
        }
        // Order does not matter.
        let mut shuffled = a.clone();
        shuffled.reverse();
        let e = numeric_drift(&a, &shuffled, &config).unwrap();
        prop_assert_eq!(e.psi, d.psi);
    }

    #[test]
    fn categorical_bounds(a in levels(), b in levels(), config in config()) {
        let d = categorical_drift(&a, &b, &config).unwrap();
        if let Some(psi) = d.psi {
            prop_assert!(psi >= 0.0 && psi.is_finite());
        }
        if let Some(chi) = d.chi_square {
            prop_assert!(chi.statistic >= 0.0);
            prop_assert!((0.0..=1.0).contains(&chi.p_value));
            prop_assert_eq!(chi.dof as usize + 1, d.levels.len());
        }
        let same = categorical_drift(&a, &a, &config).unwrap();
        if same.reference_count > 0 {
            prop_assert_eq!(same.psi, Some(0.0));
            if let Some(chi) = same.chi_square {
                prop_assert!(chi.statistic.abs() < 1e-12);
            }
        }
    }

    #[test]
    fn wilson_contains_estimate(n in 1u64..100_000, frac in 0.0f64..=1.0, confidence in 0.5f64..0.999) {
        let k = ((n as f64) * frac).round() as u64;
        let w = wilson_interval(k, n, confidence).unwrap();
        let p = k as f64 / n as f64;
        prop_assert!(0.0 <= w.lower && w.lower <= p && p <= w.upper && w.upper <= 1.0, "{:?} {}", w, p);
        prop_assert!(w.upper > w.lower);
    }

    #[test]
    fn newcombe_contains_difference(n1 in 1u64..1000, f1 in 0.0f64..=1.0, n2 in 1u64..1000, f2 in 0.0f64..=1.0) {
        let (k1, k2) = (((n1 as f64) * f1) as u64, ((n2 as f64) * f2) as u64);
        let (p1, p2) = (k1 as f64 / n1 as f64, k2 as f64 / n2 as f64);
        let w1 = wilson_interval(k1, n1, 0.95).unwrap();
        let w2 = wilson_interval(k2, n2, 0.95).unwrap();
        let d = newcombe_difference(p1, w1, p2, w2);
        prop_assert!(-1.0 <= d.lower && d.lower <= p1 - p2 && p1 - p2 <= d.upper && d.upper <= 1.0);
    }

    #[test]
    fn identical_groups_are_fair(
        decisions in vec((any::<bool>(), proptest::option::of(any::<bool>())), 1..400)
    ) {
        let attribute = ProtectedAttribute {
            name: "g".into(),
            privileged: "p".into(),
            unprivileged: vec!["u".into()],
        };
        let both = decisions.iter().flat_map(|&(favourable, outcome)| {
            [
                Decision { group: "p", favourable, outcome },
                Decision { group: "u", favourable, outcome },
            ]
        });
        let config = FairnessConfig { min_group_size: 1, ..Default::default() };
        let r = fairness(&attribute, both, &config).unwrap();
        let c = &r.comparisons[0];
        prop_assert_eq!(c.statistical_parity_difference.unwrap().value, 0.0);
        if let Some(di) = c.disparate_impact {
            prop_assert_eq!(di.value, 1.0);
            prop_assert!(di.lower <= 1.0 && 1.0 <= di.upper);
        }
        if let Some(eod) = c.equal_opportunity_difference {
            prop_assert_eq!(eod.value, 0.0);
        }
        if let Some(aod) = c.average_odds_difference {
            prop_assert_eq!(aod, 0.0);
        }
        prop_assert_eq!(r.demographic_parity_range(), Some(0.0));
        // Identical groups never fail any check.
        prop_assert!(c.disparate_impact_verdict != sidelight_monitor::Verdict::Fail);
        prop_assert!(c.statistical_parity_verdict == sidelight_monitor::Verdict::Pass);
    }

    #[test]
    fn associations_are_in_unit_interval(
        x in vec(-100.0f64..100.0, 2..100),
        seed in any::<u64>(),
    ) {
        let y: Vec<f64> = x.iter().enumerate().map(|(i, v)| v * ((seed >> (i % 64)) & 1) as f64 + i as f64).collect();
        let labels = ["a", "b", "c"];
        let g: Vec<Option<&str>> = x.iter().enumerate().map(|(i, _)| Some(labels[((seed >> (i % 60)) % 3) as usize])).collect();
        let h: Vec<Option<&str>> = x.iter().map(|v| Some(if *v > 0.0 { "pos" } else { "neg" })).collect();
        for (a, b) in [
            (Values::Numeric(&x), Values::Numeric(&y)),
            (Values::Numeric(&x), Values::Categorical(&g)),
            (Values::Categorical(&g), Values::Categorical(&h)),
        ] {
            if let Some(assoc) = association(&a, &b) {
                prop_assert!((0.0..=1.0).contains(&assoc.value), "{:?}", assoc);
            }
        }
    }

    #[test]
    fn windows_respect_their_limits(
        steps in vec(0i64..50, 0..500),
        max_len in proptest::option::of(0usize..100),
        max_age_ms in proptest::option::of(0i64..500),
    ) {
        let mut w = Window::new(WindowLimits { max_len, max_age_ms });
        let mut now = 0;
        for (i, s) in steps.iter().enumerate() {
            now += s;
            w.push(now, i);
            if let Some(max) = max_len {
                prop_assert!(w.len() <= max);
            }
            if let Some(age) = max_age_ms {
                prop_assert!(w.iter().all(|(t, _)| t >= now - age));
            }
            // What is kept is the most recent, in order.
            let kept: Vec<usize> = w.values().copied().collect();
            prop_assert!(kept.windows(2).all(|p| p[1] == p[0] + 1));
            prop_assert!(kept.last().is_none_or(|&l| l == i));
        }
    }
}
