//! Properties over random schemas and attributions: what a customer must never read.

use proptest::prelude::*;
use sidelight_explain::{FeatureKind, Value};
use sidelight_narrate::{
    Audience, Decision, FeatureInfo, FidelityPolicy, Input, Narrator, NextStep, RouteOverrides,
    Space, StepChange, Typical, ValueFormat,
};

#[derive(Debug, Clone)]
struct Row {
    features: Vec<FeatureInfo>,
    values: Vec<Value>,
    contributions: Vec<f64>,
    prediction: f64,
    surrogate_prediction: f64,
    local_error: f64,
    r2: f64,
    favourable: bool,
    higher_is_favourable: bool,
    next_step: Option<NextStep>,
}

fn letters(min: usize, max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[a-z]{{{min},{max}}}"))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn feature_and_value(i: usize) -> impl Strategy<Value = (FeatureInfo, Value)> {
    (
        letters(7, 10),
        proptest::option::of((letters(5, 8), letters(5, 8))),
        0..3u8,
        (
            proptest::bool::weighted(0.3),
            proptest::bool::weighted(0.7),
            proptest::bool::weighted(0.7),
        ),
        0..4u8,
        -1.0e5..1.0e5f64,
        letters(7, 10),
        proptest::option::of((0.0..50.0f64, 50.0..100.0f64)),
    )
        .prop_map(
            move |(
                name,
                display,
                kind,
                (protected, visible, actionable),
                format,
                x,
                level,
                typical,
            )| {
                // A letter per index keeps the names distinct without digits.
                let name = format!("{name}{}", char::from(b'a' + (i % 26) as u8));
                let kind = [
                    FeatureKind::Numeric,
                    FeatureKind::Boolean,
                    FeatureKind::Categorical,
                ][kind as usize];
                let mut f = FeatureInfo::new(name, kind);
                f.display_name = display.map(|(a, b)| format!("{a} {b}"));
                f.protected = protected;
                f.customer_visible = visible;
                f.actionable = actionable;
                f.typical = typical.map(|(p25, p75)| Typical {
                    p25,
                    median: (p25 + p75) / 2.0,
                    p75,
                });
                let value = match kind {
                    FeatureKind::Numeric => {
                        f.format = match format {
                            0 => ValueFormat::Plain,
                            1 => ValueFormat::Money {
                                currency: "EUR".into(),
                            },
                            2 => ValueFormat::from_unit(Some("months")),
                            _ => ValueFormat::Percent,
                        };
                        f.min = Some(-1.0e5);
                        f.max = Some(1.0e5);
                        Value::Number(x)
                    }
                    FeatureKind::Boolean => Value::Bool(x > 0.0),
                    FeatureKind::Categorical => {
                        f.levels = vec![level.clone(), format!("{level}x")];
                        Value::Text(level)
                    }
                };
                (f, value)
            },
        )
}

fn row() -> impl Strategy<Value = Row> {
    (1..8usize)
        .prop_flat_map(|n| {
            (
                (0..n).map(feature_and_value).collect::<Vec<_>>(),
                proptest::collection::vec(prop_oneof![Just(0.0), -2.0..2.0f64], n),
                0.0..1.0f64,
                // Half the rows trustworthy, so that reasons and next steps are exercised.
                prop_oneof![0.0..0.05f64, 0.0..0.4f64],
                any::<bool>(),
                prop_oneof![0.8..1.0f64, -0.1..1.0f64],
                any::<(bool, bool)>(),
                proptest::option::of((
                    proptest::collection::vec((0..n, -1.2e5..1.2e5f64), 1..3),
                    any::<bool>(),
                )),
            )
        })
        .prop_map(
            |(pairs, contributions, prediction, gap, up, r2, (favourable, higher), step)| {
                let (features, values): (Vec<_>, Vec<_>) = pairs.into_iter().unzip();
                let next_step = step.map(|(changes, reaches_target)| NextStep {
                    changes: changes
                        .into_iter()
                        .map(|(feature, to)| StepChange {
                            feature,
                            from: values[feature].clone(),
                            to: match &values[feature] {
                                Value::Number(_) => Value::Number(to),
                                Value::Bool(b) => Value::Bool(!b),
                                Value::Text(level) => Value::Text(format!("{level}x")),
                                other => other.clone(),
                            },
                        })
                        .collect(),
                    reaches_target,
                });
                Row {
                    features,
                    values,
                    contributions,
                    prediction,
                    surrogate_prediction: if up {
                        prediction + gap
                    } else {
                        prediction - gap
                    },
                    local_error: gap,
                    r2,
                    favourable,
                    higher_is_favourable: higher,
                    next_step,
                }
            },
        )
}

fn narrator() -> Narrator {
    Narrator::builtin().unwrap_or_else(|e| panic!("{e}"))
}

fn customer(narrator: &Narrator, row: &Row, lang: &str) -> sidelight_narrate::Narration {
    let decision = Decision {
        favourable: row.favourable,
        outcome: None,
        higher_is_favourable: row.higher_is_favourable,
    };
    let overrides = RouteOverrides::default();
    let input = Input {
        features: &row.features,
        values: &row.values,
        contributions: &row.contributions,
        space: Space::Logit,
        base_value: 0.3,
        prediction: row.prediction,
        surrogate_prediction: row.surrogate_prediction,
        local_error: row.local_error,
        r2: row.r2,
        surrogate_version: 1,
        decision: &decision,
        next_step: row.next_step.as_ref(),
        audit: None,
        overrides: &overrides,
        fidelity: FidelityPolicy::default(),
    };
    let locale = narrator.negotiate(Some(lang));
    narrator.narrate(&input, Audience::Customer, &locale)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// No protected or hidden feature's name, display name or value ever appears in
    /// customer text or next step; the text itself carries no figures.
    #[test]
    fn customers_never_read_about_hidden_features(row in row()) {
        let narrator = narrator();
        for lang in ["en", "de"] {
            let n = customer(&narrator, &row, lang);
            let text = n.text.clone().unwrap_or_default().to_lowercase();
            let step = n.next_step.clone().unwrap_or_default().to_lowercase();
            prop_assert!(!text.chars().any(|c| c.is_ascii_digit()), "figures in {text}");
            for (f, v) in row.features.iter().zip(&row.values) {
                if f.shown_to_customer() {
                    continue;
                }
                let mut secrets = vec![f.name.to_lowercase()];
                secrets.extend(f.display_name.iter().map(|d| d.to_lowercase()));
                if let Value::Text(t) = v {
                    secrets.push(t.to_lowercase());
                }
                for secret in &secrets {
                    prop_assert!(!text.contains(secret), "{secret} in {text}");
                    prop_assert!(!step.contains(secret), "{secret} in {step}");
                }
            }
        }
    }

    /// An explanation whose surrogate is off on this row reaches a customer only with
    /// its caveat, or not at all; and then with no next step.
    #[test]
    fn low_fidelity_never_reaches_a_customer_without_caveat(row in row()) {
        let narrator = narrator();
        let policy = FidelityPolicy::default();
        let error = row.local_error.max((row.surrogate_prediction - row.prediction).abs());
        let poor = error > policy.caveat_local_error || row.r2 < policy.caveat_r2;
        for (lang, caveat) in [("en", "caution"), ("de", "vorsicht")] {
            let n = customer(&narrator, &row, lang);
            if error > policy.withhold_local_error {
                prop_assert!(n.text.is_none());
                prop_assert_eq!(n.withheld_reason, Some("low_fidelity"));
            }
            if poor {
                prop_assert!(n.caveat);
                prop_assert!(n.next_step.is_none());
                if let Some(text) = &n.text {
                    prop_assert!(text.to_lowercase().contains(caveat), "no caveat in {}", text);
                }
            } else {
                prop_assert!(!n.caveat);
                prop_assert!(n.text.is_some());
            }
        }
    }

    /// A next step shown to a customer reaches the target and changes only actionable,
    /// visible features, within their bounds.
    #[test]
    fn next_steps_stay_actionable_and_in_bounds(row in row()) {
        let narrator = narrator();
        let n = customer(&narrator, &row, "en");
        if n.next_step.is_some() {
            let step = row.next_step.as_ref();
            prop_assert!(step.is_some_and(|s| s.reaches_target));
            for change in step.map(|s| s.changes.as_slice()).unwrap_or_default() {
                let f = &row.features[change.feature];
                prop_assert!(f.actionable && f.shown_to_customer());
                if let Value::Number(to) = change.to {
                    prop_assert!(f.min.is_none_or(|m| to >= m) && f.max.is_none_or(|m| to <= m));
                }
            }
        }
    }
}

/// The generator does produce the interesting cases: reasons, caveats, next steps.
#[test]
fn generator_covers_the_interesting_cases() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let narrator = narrator();
    let mut runner = TestRunner::deterministic();
    let (mut reasons, mut caveats, mut steps, mut withheld) = (0, 0, 0, 0);
    for _ in 0..300 {
        let row = row()
            .new_tree(&mut runner)
            .unwrap_or_else(|e| panic!("{e}"))
            .current();
        let n = customer(&narrator, &row, "en");
        let text = n.text.unwrap_or_default();
        reasons += usize::from(text.contains("reason"));
        caveats += usize::from(text.contains("caution"));
        steps += usize::from(n.next_step.is_some());
        withheld += usize::from(n.withheld_reason.is_some());
    }
    assert!(
        reasons > 30 && caveats > 30 && steps > 3 && withheld > 30,
        "{reasons} {caveats} {steps} {withheld}"
    );
}
