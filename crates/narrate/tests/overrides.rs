//! Start-up checks of a business's .ftl files and route overrides, and language
//! negotiation.

mod common;

use sidelight_narrate::{
    FtlSource, NarrateError, Narrator, Origin, OverrideSpec, OverrideText, RouteOverridesSpec,
};

fn builtin() -> Narrator {
    Narrator::builtin().unwrap_or_else(|e| panic!("{e}"))
}

fn load(locale: &str, text: &str) -> Result<Narrator, NarrateError> {
    builtin().with_overrides(vec![FtlSource::new(locale, "biz/en/credit.ftl", text)])
}

fn error(result: Result<Narrator, NarrateError>) -> NarrateError {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    }
}

#[test]
fn narrator_is_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Narrator>();
    assert_send_sync::<sidelight_narrate::RouteOverrides>();
}

#[test]
fn builtin_languages() {
    assert_eq!(builtin().locales(), ["en", "de"]);
}

#[test]
fn negotiation_prefers_the_reader_and_falls_back_to_english() {
    let n = builtin();
    assert_eq!(
        n.negotiate(Some("de-DE,de;q=0.9,en;q=0.8")).to_string(),
        "de"
    );
    assert_eq!(n.negotiate(Some("fr")).to_string(), "en");
    assert_eq!(
        n.negotiate(Some("fr-CH, fr;q=0.9, de;q=0.7")).to_string(),
        "de"
    );
    assert_eq!(n.negotiate(Some("de-AT")).to_string(), "de");
    assert_eq!(n.negotiate(None).to_string(), "en");
    assert_eq!(n.negotiate(Some("")).to_string(), "en");
    assert_eq!(n.negotiate(Some("*;q=0.1,<<garbage>>")).to_string(), "en");
}

#[test]
fn a_syntax_error_names_file_and_line() {
    let e = error(load(
        "en",
        "customer-caveat = fine\n\ncustomer-no-reasons = { $oops\n",
    ));
    assert!(
        matches!(&e, NarrateError::Syntax { file, line: 3, .. } if file == "biz/en/credit.ftl"),
        "{e:?}"
    );
    assert!(e.to_string().starts_with("biz/en/credit.ftl:3: "), "{e}");
}

#[test]
fn an_unknown_message_names_file_and_line() {
    let e = error(load("en", "# a comment\n\ncustomer-caveats = Careful.\n"));
    assert!(
        matches!(&e, NarrateError::UnknownMessage { file, line: 3, id } if file == "biz/en/credit.ftl" && id == "customer-caveats"),
        "{e:?}"
    );
}

#[test]
fn an_unknown_placeholder_names_file_and_line() {
    let text = "customer-reason = { $your }\n    counted { $effect ->\n        [for] for\n       *[against] against { $score }\n    } you\n";
    let e = error(load("en", text));
    assert!(
        matches!(&e, NarrateError::UnknownVariable { file, line: 4, id, variable, .. }
            if file == "biz/en/credit.ftl" && id == "customer-reason" && variable == "score"),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("offered: your, feature, comparison"),
        "{e}"
    );
}

#[test]
fn feature_messages_take_no_variables_and_known_attributes_only() {
    let e = error(load("en", "feature-age = age { $value }\n"));
    assert!(
        matches!(&e, NarrateError::UnknownVariable { line: 1, .. }),
        "{e:?}"
    );
    let e = error(load("en", "feature-age = age\n    .yours = your age\n"));
    assert!(
        matches!(&e, NarrateError::UnknownAttribute { line: 2, attribute, .. } if attribute == "yours"),
        "{e:?}"
    );
}

#[test]
fn references_must_exist_in_the_locale() {
    let e = error(load("en", "customer-caveat = { -brand } may be wrong.\n"));
    assert!(
        matches!(&e, NarrateError::UnknownReference { line: 1, target, .. } if target == "-brand"),
        "{e:?}"
    );
    let n = load(
        "en",
        "-brand = Acme\ncustomer-caveat = { -brand } may be wrong here.\n",
    );
    assert!(n.is_ok());
}

#[test]
fn duplicates_among_a_business_files_are_errors() {
    let e = error(builtin().with_overrides(vec![
        FtlSource::new("en", "a.ftl", "customer-caveat = one\n"),
        FtlSource::new("en", "b.ftl", "\ncustomer-caveat = two\n"),
    ]));
    assert!(
        matches!(&e, NarrateError::Duplicate { file, line: 2, first, .. } if file == "b.ftl" && first == "a.ftl"),
        "{e:?}"
    );
}

#[test]
fn a_new_language_must_be_complete_and_tags_must_parse() {
    let e = error(load("fr", "customer-caveat = Prudence.\n"));
    assert!(
        matches!(&e, NarrateError::Incomplete { locale, .. } if locale == "fr"),
        "{e:?}"
    );
    let e = error(load("not a tag!", "customer-caveat = x\n"));
    assert!(matches!(&e, NarrateError::BadLocale { .. }), "{e:?}");
}

fn spec(text: OverrideText, line: usize) -> OverrideSpec {
    OverrideSpec {
        text,
        origin: Origin {
            file: "sidelight.toml".to_owned(),
            line,
        },
    }
}

#[test]
fn route_overrides_are_checked() {
    let narrator = common::credit_narrator();
    // An unknown message: the config's file and line.
    let unknown = RouteOverridesSpec {
        decision: Some(spec(
            OverrideText::Message("custom-credit-decisoin".into()),
            17,
        )),
        features: Default::default(),
    };
    let e = narrator.compile_overrides(&unknown).err();
    assert!(
        matches!(&e, Some(NarrateError::UnknownMessage { file, line: 17, .. }) if file == "sidelight.toml"),
        "{e:?}"
    );
    // A literal pattern with an unknown placeholder on its second line.
    let mut features = std::collections::BTreeMap::new();
    features.insert(
        "duration_months".to_owned(),
        spec(
            OverrideText::Pattern("{ $your } was\n{ $amount } too long".into()),
            30,
        ),
    );
    let bad = RouteOverridesSpec {
        decision: None,
        features,
    };
    let e = narrator.compile_overrides(&bad).err();
    assert!(
        matches!(&e, Some(NarrateError::UnknownVariable { file, line: 31, variable, .. }) if file == "sidelight.toml" && variable == "amount"),
        "{e:?}"
    );
    // A custom message whose variables do not fit the use: the .ftl file and line.
    let narrator = narrator
        .with_overrides(vec![FtlSource::new(
            "de",
            "biz/de/route.ftl",
            "custom-reason = Gründe\ncustom-decision = { $outcome } wegen { $your }\n",
        )])
        .unwrap_or_else(|e| panic!("{e}"));
    let misuse = RouteOverridesSpec {
        decision: Some(spec(OverrideText::Message("custom-decision".into()), 3)),
        features: Default::default(),
    };
    let e = narrator.compile_overrides(&misuse).err();
    assert!(
        matches!(&e, Some(NarrateError::UnknownVariable { file, line: 2, variable, .. }) if file == "biz/de/route.ftl" && variable == "your"),
        "{e:?}"
    );
    // A literal pattern with a syntax error.
    let broken = RouteOverridesSpec {
        decision: Some(spec(OverrideText::Pattern("Result: { $outcome".into()), 8)),
        features: Default::default(),
    };
    let e = narrator.compile_overrides(&broken).err();
    assert!(
        matches!(&e, Some(NarrateError::Syntax { line: 8, .. })),
        "{e:?}"
    );
}
