//! "Recommended because…" and "ranked above … because…": what a customer of a ranking
//! route reads, and what it never names.

#![allow(clippy::unwrap_used)]

use sidelight_explain::{FeatureKind, Value};
use sidelight_narrate::{
    Audience, ContrastInput, Decision, FeatureInfo, FidelityPolicy, FtlSource, Input, Narrator,
    RouteOverrides, Space,
};

fn features() -> Vec<FeatureInfo> {
    let mut age = FeatureInfo::new("context.age", FeatureKind::Numeric);
    age.protected = true;
    let mut outdoor = FeatureInfo::new("context.outdoor_share", FeatureKind::Numeric);
    outdoor.display_name = Some("outdoor purchases".into());
    let mut weight = FeatureInfo::new("item.weight_kg", FeatureKind::Numeric);
    weight.display_name = Some("weight".into());
    let mut price = FeatureInfo::new("item.price", FeatureKind::Numeric);
    price.display_name = Some("price".into());
    vec![age, outdoor, weight, price]
}

const ABOUT_ITEM: [bool; 4] = [false, false, true, true];

fn recommend(narrator: &Narrator, contributions: &[f64], local_error: f64) -> Option<String> {
    let features = features();
    let decision = Decision {
        favourable: true,
        outcome: None,
        higher_is_favourable: true,
    };
    let overrides = RouteOverrides::default();
    let values = [
        Value::Number(24.0),
        Value::Number(0.8),
        Value::Number(0.9),
        Value::Number(120.0),
    ];
    let sum: f64 = contributions.iter().sum();
    let input = Input {
        features: &features,
        values: &values,
        contributions,
        space: Space::Output,
        base_value: 1.0,
        prediction: 1.0 + sum,
        surrogate_prediction: 1.0 + sum + local_error,
        local_error,
        r2: 0.95,
        surrogate_version: 1,
        decision: &decision,
        next_step: None,
        audit: None,
        overrides: &overrides,
        fidelity: FidelityPolicy::default(),
    };
    let locale = narrator.negotiate(Some("en"));
    narrator
        .recommend(&input, &ABOUT_ITEM, Audience::Customer, &locale)
        .text
}

#[test]
fn the_reasons_that_placed_an_item_high_are_named_about_you_then_about_it() {
    let narrator = Narrator::builtin().unwrap();
    // Age counted most, but is protected: never named. Price counted against: not a
    // reason for recommending.
    let text = recommend(&narrator, &[0.9, 0.5, 0.3, -0.4], 0.0).unwrap();
    assert_eq!(
        text,
        "Recommended because your outdoor purchases counted in its favour and its weight counted in its favour."
    );
    assert!(!text.contains("age"));
    // Nothing counted for it: many small factors.
    let text = recommend(&narrator, &[0.0, 0.0, 0.0, -0.2], 0.0).unwrap();
    assert!(
        text.starts_with("Recommended: many small factors"),
        "{text}"
    );
    // A surrogate that fits this row poorly: a caveat; far off: no text at all.
    let text = recommend(&narrator, &[0.0, 0.5, 0.3, 0.0], 0.1).unwrap();
    assert!(
        text.contains("Please treat this explanation with caution"),
        "{text}"
    );
    assert_eq!(recommend(&narrator, &[0.0, 0.5, 0.3, 0.0], 1.0), None);
}

#[test]
fn a_business_words_its_own_reasons_with_because() {
    let narrator = Narrator::builtin()
        .unwrap()
        .with_overrides(vec![FtlSource::new(
            "en",
            "shop.ftl",
            "feature-context_outdoor_share = outdoor purchases\n    .because = you often buy outdoor gear\n\
             feature-item_weight_kg = weight\n    .because = this tent is light\n",
        )])
        .unwrap();
    let text = recommend(&narrator, &[0.0, 0.5, 0.3, 0.0], 0.0).unwrap();
    assert_eq!(
        text,
        "Recommended because you often buy outdoor gear and this tent is light."
    );
}

#[test]
fn a_contrast_names_the_item_features_that_count_for_the_higher_one() {
    let narrator = Narrator::builtin().unwrap();
    let features = features();
    let locale = narrator.negotiate(Some("en"));
    let a = [
        Value::Number(24.0),
        Value::Number(0.8),
        Value::Number(0.9),
        Value::Number(80.0),
    ];
    let b = [
        Value::Number(24.0),
        Value::Number(0.8),
        Value::Number(1.4),
        Value::Number(120.0),
    ];
    let input = ContrastInput {
        features: &features,
        about_item: &ABOUT_ITEM,
        a: &a,
        b: &b,
        // Age's share through interactions is never named; the customer's own
        // features are the same in both items and not reasons for the order.
        difference: &[0.8, 0.4, 0.3, 0.2],
        item: "SKU-4",
        other: "SKU-9",
    };
    let text = narrator.contrast(&input, &locale).unwrap();
    assert_eq!(
        text,
        "SKU-4 is ranked above SKU-9 mainly because its weight is lower and its price is lower."
    );
    let german = narrator
        .contrast(&input, &narrator.negotiate(Some("de")))
        .unwrap();
    assert!(german.starts_with("SKU-4 steht vor SKU-9"), "{german}");
    // Slices of other lengths: no text rather than a wrong one.
    let short = ContrastInput {
        difference: &[0.1],
        ..input
    };
    assert_eq!(narrator.contrast(&short, &locale), None);
}
