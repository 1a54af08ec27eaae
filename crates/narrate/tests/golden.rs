//! Golden texts: the demo's credit model, a few applicants, every audience and language.
//!
//! Each case is written to `tests/golden/<case>.<lang>.txt`. A change of wording shows
//! up as a failing test; after reading the new text, rewrite the files with
//! `UPDATE_GOLDEN=1 cargo test -p sidelight-narrate --test golden` and review the diff.

mod common;

use std::fmt::Write as _;
use std::path::PathBuf;

use sidelight_explain::Value;
use sidelight_narrate::{
    Audience, AuditFacts, Decision, FidelityPolicy, Input, Narration, Narrator, NextStep, Origin,
    OverrideSpec, OverrideText, RouteOverrides, RouteOverridesSpec, Space, StepChange,
};

struct Case {
    name: &'static str,
    values: Vec<Value>,
    contributions: Vec<f64>,
    base_value: f64,
    prediction: f64,
    local_error: f64,
    r2: f64,
    favourable: bool,
    next_step: Option<NextStep>,
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// A declined applicant: long, large loan, negative balance; young (protected, and a
/// large contribution that must never reach the customer).
fn declined_values() -> (Vec<Value>, Vec<f64>) {
    let values = vec![
        text("... < 0 DM"),
        Value::Number(48.0),
        text("existing credits paid back duly till now"),
        text("car (new)"),
        Value::Number(7500.0),
        text("... < 100 DM"),
        text("1 <= ... < 4 years"),
        Value::Number(4.0),
        text("female : divorced/separated/married"),
        text("none"),
        Value::Number(4.0),
        text("car or other"),
        Value::Number(23.0),
        text("none"),
        text("rent"),
        Value::Number(1.0),
        text("skilled employee/ official"),
        Value::Number(1.0),
        text("no"),
        text("yes"),
    ];
    let contributions = vec![
        -0.81, -0.62, 0.05, -0.12, -0.35, -0.2, -0.05, -0.15, 0.0, 0.0, 0.01, -0.04, -0.7, 0.02,
        -0.08, 0.0, 0.03, 0.0, -0.02, 0.0,
    ];
    (values, contributions)
}

fn cases() -> Vec<Case> {
    let (values, contributions) = declined_values();
    let step = NextStep {
        changes: vec![
            StepChange {
                feature: 1,
                from: Value::Number(48.0),
                to: Value::Number(22.4),
            },
            StepChange {
                feature: 4,
                from: Value::Number(7500.0),
                to: Value::Number(4650.5),
            },
        ],
        reaches_target: true,
    };
    let surrogate = |c: &[f64], base: f64| sigmoid(base + c.iter().sum::<f64>());
    let approved_values = vec![
        text("no checking account"),
        Value::Number(9.0),
        text("critical account/ other credits existing (not at this bank)"),
        text("radio/television"),
        Value::Number(1500.0),
        text(".. >= 1000 DM"),
        text(".. >= 7 years"),
        Value::Number(2.0),
        text("male : single"),
        text("none"),
        Value::Number(3.0),
        text("real estate"),
        Value::Number(45.0),
        text("none"),
        text("own"),
        Value::Number(2.0),
        text("skilled employee/ official"),
        Value::Number(1.0),
        text("yes"),
        text("yes"),
    ];
    let approved_contributions = vec![
        0.9, 0.3, 0.25, 0.06, 0.1, 0.4, 0.08, 0.05, 0.0, 0.0, 0.0, 0.07, 0.2, 0.02, 0.15, -0.03,
        0.03, 0.0, 0.02, 0.0,
    ];
    vec![
        Case {
            name: "declined",
            base_value: 1.04,
            prediction: surrogate(&contributions, 1.04) + 0.0147,
            local_error: 0.0147,
            r2: 0.912,
            favourable: false,
            next_step: Some(step.clone()),
            values: values.clone(),
            contributions: contributions.clone(),
        },
        Case {
            name: "approved",
            base_value: 1.04,
            prediction: surrogate(&approved_contributions, 1.04) - 0.004,
            local_error: 0.004,
            r2: 0.912,
            favourable: true,
            next_step: None,
            values: approved_values,
            contributions: approved_contributions,
        },
        Case {
            name: "caveat",
            base_value: 1.04,
            prediction: surrogate(&contributions, 1.04) + 0.09,
            local_error: 0.09,
            r2: 0.85,
            favourable: false,
            next_step: Some(step.clone()),
            values: values.clone(),
            contributions: contributions.clone(),
        },
        Case {
            name: "withheld",
            base_value: 1.04,
            prediction: surrogate(&contributions, 1.04) + 0.31,
            local_error: 0.31,
            r2: 0.85,
            favourable: false,
            next_step: Some(step),
            values,
            contributions,
        },
    ]
}

fn credit_overrides(narrator: &Narrator) -> RouteOverrides {
    let spec = RouteOverridesSpec {
        decision: Some(OverrideSpec {
            text: OverrideText::Message("custom-credit-decision".to_owned()),
            origin: Origin {
                file: "sidelight.toml".to_owned(),
                line: 12,
            },
        }),
        features: Default::default(),
    };
    narrator
        .compile_overrides(&spec)
        .unwrap_or_else(|e| panic!("credit overrides: {e}"))
}

fn render(narrator: &Narrator, overrides: &RouteOverrides, case: &Case, lang: &str) -> String {
    let features = common::credit_features();
    let decision = Decision {
        favourable: case.favourable,
        outcome: Some(
            if case.favourable {
                "approved"
            } else {
                "declined"
            }
            .to_owned(),
        ),
        higher_is_favourable: true,
    };
    let audit = AuditFacts {
        record_id: Some("credit:42:0".to_owned()),
        consent: Some("given for storage and training".to_owned()),
        storage: vec![
            "payload encrypted at rest".to_owned(),
            "kept 90 days".to_owned(),
        ],
    };
    let surrogate_prediction = sigmoid(case.base_value + case.contributions.iter().sum::<f64>());
    let input = Input {
        features: &features,
        values: &case.values,
        contributions: &case.contributions,
        space: Space::Logit,
        base_value: case.base_value,
        prediction: case.prediction,
        surrogate_prediction,
        local_error: case.local_error,
        r2: case.r2,
        surrogate_version: 3,
        decision: &decision,
        next_step: case.next_step.as_ref(),
        audit: Some(&audit),
        overrides,
        fidelity: FidelityPolicy::default(),
    };
    let locale = narrator.negotiate(Some(lang));
    let mut out = String::new();
    for (title, audience) in [
        ("customer", Audience::Customer),
        ("developer", Audience::Developer),
        ("auditor", Audience::Auditor),
    ] {
        let n: Narration = narrator.narrate(&input, audience, &locale);
        assert_eq!(n.locale.to_string(), lang);
        let _ = writeln!(out, "== {title} ==");
        match (&n.text, n.withheld_reason) {
            (Some(text), _) => {
                let _ = writeln!(out, "{text}");
            }
            (None, reason) => {
                let _ = writeln!(out, "(withheld: {})", reason.unwrap_or("?"));
            }
        }
        let _ = writeln!(
            out,
            "-- next step: {}",
            n.next_step.as_deref().unwrap_or("(none)")
        );
        let _ = writeln!(out, "-- caveat: {}", n.caveat);
        out.push('\n');
    }
    out
}

fn check(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::write(&path, actual).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create it, then review it)",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "{} differs; if the new text is right, rerun with UPDATE_GOLDEN=1 and review the diff\n\
         --- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}

#[test]
fn credit_cases_in_every_language_and_audience() {
    let narrator = common::credit_narrator();
    let overrides = credit_overrides(&narrator);
    for case in cases() {
        for lang in ["en", "de"] {
            let text = render(&narrator, &overrides, &case, lang);
            check(&format!("{}.{lang}.txt", case.name), &text);
        }
    }
}

/// Without the credit model's .ftl files and route sentence: the built-in phrasing
/// from display names alone.
#[test]
fn built_in_words_only() {
    let narrator = Narrator::builtin().unwrap_or_else(|e| panic!("{e}"));
    let overrides = RouteOverrides::default();
    let case = cases()
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no case"));
    for lang in ["en", "de"] {
        let text = render(&narrator, &overrides, &case, lang);
        check(&format!("builtin-words.{lang}.txt"), &text);
    }
}

#[test]
fn same_input_same_text() {
    let narrator = common::credit_narrator();
    let overrides = credit_overrides(&narrator);
    for case in cases() {
        assert_eq!(
            render(&narrator, &overrides, &case, "de"),
            render(&narrator, &overrides, &case, "de")
        );
    }
}
