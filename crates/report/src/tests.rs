#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use serde_json::json;
use sidelight_audit::{Consent, Erasure, Feedback, Record, Review, SqliteConfig, SqliteStore};

const CONFIG: &str = r#"
[[routes]]
name = "credit"
path_prefix = "/v1/models/credit"
[routes.explain]
protocol = "kserve_v1"
[routes.explain.decision]
threshold = 0.5
[routes.monitor]
min_group_size = 1
[[routes.monitor.protected]]
feature = "sex"
privileged = "m"
unprivileged = ["f"]
[[routes.monitor.protected]]
feature = "age"
bands = [25]
privileged = ">=25"
unprivileged = ["<25"]
"#;

fn keys() -> Keys {
    Keys::from_master(vec![7; 32]).unwrap()
}

/// A prediction of the credit route: one row of (age, sex, income), its output and
/// the attributions the proxy stores.
fn prediction(id: &str, time_ms: i64, row: Json, p: f64, shap: [f64; 3]) -> Record {
    let mut r = Record::new(id, time_ms, "credit", "http://model route=credit");
    r.features = Some(json!({ "names": ["age", "sex", "income"], "rows": [row] }));
    r.outputs = Some(json!([[p]]));
    r.surrogate_version = Some(1);
    let contributions: Vec<Json> = ["age", "sex", "income"]
        .iter()
        .zip(shap)
        .map(|(f, c)| json!({ "feature": f, "value": null, "contribution": c }))
        .collect();
    r.attributions = Some(json!([{
        "prediction": p, "threshold": 0.5, "attributions": contributions,
    }]));
    r
}

fn event(id: &str, time_ms: i64, route: &str, body: Json) -> Record {
    let mut r = Record::new(id, time_ms, route, "sidelight");
    r.request = Some(serde_json::to_vec(&body).unwrap());
    r
}

/// A store with the period [1000, 2000) and a reference [0, 1000).
fn store(dir: &std::path::Path) -> SqliteStore {
    let keys = keys();
    let mut store =
        SqliteStore::open(dir.join("audit.db"), SqliteConfig::new(keys.clone())).unwrap();
    let reference = prediction("r0", 500, json!([40, "m", 10]), 0.7, [0.1, 0.1, 0.1]);
    let r1 = prediction("r1", 1100, json!([30, "m", 10]), 0.8, [0.1, -0.2, 0.3]);
    // Sex pseudonymised by the privacy policy, as `pseudonymise` stores it.
    let mut r2 = prediction(
        "r2",
        1200,
        json!([20, keys.pseudonym("f"), 5]),
        0.3,
        [-0.3, 0.0, 0.1],
    );
    r2.consent = Consent::ExplainOnly;
    r2.review_state = "pending".to_owned();
    r2.review_reasons = vec!["near_threshold".to_owned()];
    let mut r3 = Record::new("r3", 1300, "credit", "http://model route=credit");
    r3.consent = Consent::None;
    r3.outputs = Some(json!([[0.9]]));
    // Age generalised by `band:5`, inside the configured band "<25".
    let mut r4 = prediction(
        "r4",
        1400,
        json!(["[20, 25)", "f", 7]),
        0.6,
        [0.2, 0.1, -0.5],
    );
    r4.review_state = "pending".to_owned();
    r4.review_reasons = vec!["sample".to_owned()];
    let mut r5 = prediction("r5", 1500, json!([50, "m", 9]), 0.9, [1.0, 1.0, 1.0]);
    r5.subject = Some("ps_gone".to_owned());
    let records = vec![
        reference,
        r1,
        r2,
        r3,
        r4,
        r5,
        event(
            "review-1",
            1250,
            "_review",
            json!({
                "record_id": "r2", "time_ms": 1250, "reviewer": "rita", "decision": "override",
                "outcome": "approved", "reason": "income verified",
            }),
        ),
        event(
            "admin-1",
            1600,
            "_admin",
            json!({
                "actor": "alice", "role": "admin", "action": "erasure", "target": "ps_gone",
                "detail": { "status": 200, "erased_records": 1 },
            }),
        ),
        event(
            "alert-1",
            1700,
            "_alert",
            json!({
                "route": "credit", "check": "disparate_impact", "subject": "sex=f",
                "state": "firing", "value": 0.5, "bound": 0.8,
                "message": "Group f of sex is selected at half the rate of m.", "at": 1700,
            }),
        ),
        prediction("later", 2500, json!([30, "m", 10]), 0.8, [9.0, 9.0, 9.0]),
    ];
    store.append_batch(&records).unwrap();
    store
        .add_review(&Review {
            record_id: "r2".to_owned(),
            time_ms: 1250,
            reviewer: "rita".to_owned(),
            decision: "override".to_owned(),
            outcome: Some(json!("approved")),
            reason: "income verified".to_owned(),
        })
        .unwrap();
    for (id, outcome) in [
        ("r1", json!("approved")),
        ("r4", json!(0.2)),
        ("r2", json!("maybe")),
    ] {
        store
            .add_feedback(&Feedback {
                record_id: id.to_owned(),
                time_ms: 1800,
                outcome,
            })
            .unwrap();
    }
    store
        .erase(&Erasure::Subject("ps_gone".to_owned()), 1600)
        .unwrap();
    store
}

fn build_report(store: SqliteStore, keys: &Keys) -> (Report, Vec<Progress>) {
    let config = Config::from_toml_str(CONFIG).unwrap();
    let mut seen = Vec::new();
    let report = build(
        store,
        &ReportInput {
            config: &config,
            keys,
            period: Period::new(1000, 2000).unwrap(),
            reference: None,
            in_service: None,
            generated_at_ms: 3000,
        },
        &mut |p| seen.push(p),
    )
    .unwrap();
    (report, seen)
}

#[test]
fn a_report_counts_what_the_period_holds() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let (report, progress) = build_report(store, &keys());

    // 1: r1–r5 are predictions of the period; the record at 2500 is not.
    assert_eq!(report.system.records, 5);
    assert_eq!(report.system.events, 3);
    let route = &report.system.routes[0];
    assert_eq!((route.route.as_str(), route.records), ("credit", 5));
    assert_eq!(route.surrogate_versions, vec![1]);
    assert!(
        report
            .system
            .note
            .as_deref()
            .unwrap()
            .contains("running proxy")
    );

    // 2: mean |SHAP| over r1, r2 and r4 (r5 is erased, r3 under consent none).
    let imp = &report.importance.routes[0].summary;
    assert_eq!(imp.rows, 3);
    let mean = |f: &str| imp.mean_abs(f).unwrap();
    assert!((mean("income") - 0.3).abs() < 1e-9);
    assert!((mean("age") - 0.2).abs() < 1e-9);
    assert!((mean("sex") - 0.1).abs() < 1e-9);
    assert_eq!(imp.features[0].feature, "income");
    assert!((imp.protected_share.unwrap() - 0.5).abs() < 1e-9);
    assert_eq!(report.importance.routes[0].records_without_attributions, 2);

    // 3: the pseudonymised "f" and the stored band "[20, 25)" land in their groups.
    let fairness = &report.fairness.routes[0];
    assert_eq!(fairness.rows, 3);
    assert_eq!(fairness.rows_with_outcome, 2);
    assert_eq!(fairness.unusable_outcomes, 1);
    let sex = &fairness.attributes[0];
    assert_eq!(sex.unlisted, 0);
    assert_eq!((sex.groups[0].count, sex.groups[1].count), (1, 2));
    assert_eq!(sex.groups[1].selection.successes, 1);
    let age = &fairness.attributes[1];
    assert_eq!(
        (age.groups[0].group.as_str(), age.groups[0].count),
        (">=25", 1)
    );
    assert_eq!(
        (age.groups[1].group.as_str(), age.groups[1].count),
        ("<25", 2)
    );
    assert_eq!(report.fairness.alerts.len(), 1);
    assert_eq!(report.fairness.alerts[0].subject, "sex=f");
    assert_eq!(report.fairness.alerts[0].state, "firing");

    // 4: the reference is [0, 1000), with r0.
    let drift = &report.drift.routes[0];
    assert_eq!((drift.rows, drift.reference_rows), (3, 1));
    assert_eq!(report.drift.reference.to_ms, 1000);
    assert!(drift.prediction.is_some());

    // 5
    let c = &report.consent.total;
    assert_eq!((c.full, c.explain_only, c.none, c.total), (3, 1, 1, 5));

    // 6: r2 was overridden within the period; r4 still waits.
    let v = &report.reviews;
    assert_eq!(v.flagged, 2);
    assert_eq!(v.by_reason["near_threshold"], 1);
    assert_eq!(v.decisions["override"], 1);
    assert_eq!(v.overrides, 1);
    assert_eq!(v.pending_at_end, 1);

    // 7: r5 erased; the action is listed without the subject.
    assert_eq!(report.erasures.erased_records["subject_erasure"], 1);
    assert_eq!(report.erasures.actions[0].actor, "alice");
    assert_eq!(report.erasures.actions[0].erased_records, Some(1));
    let json = serde_json::to_string(&report).unwrap();
    assert!(!json.contains("ps_gone"), "{json}");
    assert!(!json.contains(&keys().pseudonym("f")), "{json}");

    // 8: the whole log.
    assert!(report.verification.ok, "{:?}", report.verification.error);
    assert_eq!(report.verification.records, 10);
    assert_eq!(report.verification.erased, 1);

    assert!(
        progress
            .iter()
            .any(|p| p.stage == Stage::Period && p.done == 8)
    );
    assert_eq!(progress.last().map(|p| p.stage), Some(Stage::Verify));
}

#[test]
fn a_wrong_key_shows_in_the_verification_section() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let (report, _) = build_report(store, &Keys::from_master(vec![9; 32]).unwrap());
    assert!(!report.verification.ok);
    assert!(
        report
            .verification
            .error
            .as_deref()
            .unwrap()
            .contains("key"),
        "{:?}",
        report.verification.error
    );
}

#[test]
fn every_format_has_every_section_and_html_has_charts_but_no_script() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let (report, _) = build_report(store, &keys());
    let html = render_html(&report);
    let md = render_markdown(&report);
    for heading in SECTIONS {
        assert!(html.contains(&format!("<h2>{heading}</h2>")), "{heading}");
        assert!(md.contains(&format!("## {heading}")), "{heading}");
    }
    // Importance, two fairness attributes, drift, consent.
    assert_eq!(html.matches("<svg").count(), 5, "{html}");
    assert!(!html.contains("<script"));
    assert!(!html.contains("http://") || !html.contains("src="));
    assert!(html.contains("@media print"));
    assert!(md.contains("| income | 0.300 |"), "{md}");
    // A SQLite log's single chain needs no line of its own.
    assert!(!html.contains("Each writer") && !md.contains("Each writer"));
}

#[test]
fn a_log_of_several_writers_lists_each_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (mut report, _) = build_report(store(dir.path()), &keys());
    let chain = |writer: &str, appended| WriterVerification {
        writer: writer.to_owned(),
        records: 7,
        checkpoints: 2,
        erased: 1,
        last_seq: 7,
        last_hash: format!("hash-{writer}"),
        appended_while_verifying: appended,
    };
    report.verification.writers = vec![chain("pod-a", 0), chain("pod-b", 3)];
    let html = render_html(&report);
    let md = render_markdown(&report);
    assert!(
        md.contains("| pod-b | 7 | 2 | 1 | 7 | `hash-pod-b` | 3 |"),
        "{md}"
    );
    assert!(
        html.contains("<td>pod-a</td>") && html.contains("hash-pod-b"),
        "{html}"
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["verification"]["writers"][1]["writer"], "pod-b");
}

#[test]
fn an_empty_period_says_why_each_section_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let config = Config::from_toml_str(CONFIG).unwrap();
    let report = build(
        store,
        &ReportInput {
            config: &config,
            keys: &keys(),
            period: Period::new(5000, 6000).unwrap(),
            reference: None,
            in_service: None,
            generated_at_ms: 7000,
        },
        &mut |_| {},
    )
    .unwrap();
    assert!(report.importance.note.is_some());
    assert!(report.consent.note.is_some());
    assert!(report.reviews.note.is_some());
    assert!(report.erasures.note.is_some());
    assert!(report.fairness.alerts_note.is_some());
    assert!(report.drift.note.is_some());
    assert!(report.verification.ok);
    assert!(Period::new(2000, 1000).is_err());
}

#[test]
fn outcomes_read_as_favourable_or_not() {
    let config = Config::from_toml_str(CONFIG).unwrap();
    let route = config.routes.first();
    let read = |v: Json, higher| outcome_favourable(&v, route, higher, Some(0.5));
    assert_eq!(read(json!(true), true), Some(true));
    assert_eq!(read(json!(0.7), true), Some(true));
    assert_eq!(read(json!(0.7), false), Some(false));
    assert_eq!(read(json!("Approved"), true), Some(true));
    assert_eq!(read(json!("declined"), true), Some(false));
    assert_eq!(read(json!("maybe"), true), None);
    assert_eq!(read(json!({"x": 1}), true), None);
}

/// A prediction of several rows, with attributions for each.
fn multi_row(id: &str, time_ms: i64, rows: &[Json], p: f64) -> Record {
    let mut r = prediction(id, time_ms, rows[0].clone(), p, [0.1, 0.1, 0.1]);
    r.features = Some(json!({ "names": ["age", "sex", "income"], "rows": rows }));
    r.outputs = Some(Json::Array(rows.iter().map(|_| json!([p])).collect()));
    let one = r.attributions.as_ref().unwrap()[0].clone();
    r.attributions = Some(Json::Array(rows.iter().map(|_| one.clone()).collect()));
    r
}

#[test]
fn outcomes_are_counted_as_received_and_applied_to_their_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut store =
        SqliteStore::open(dir.path().join("audit.db"), SqliteConfig::new(keys())).unwrap();
    let three = [
        json!([30, "m", 1]),
        json!([31, "f", 2]),
        json!([32, "m", 3]),
    ];
    store
        .append_batch(&[
            // One unusable outcome for three rows: one unusable outcome, not three.
            multi_row("a", 1100, &three, 0.8),
            // One usable outcome for three rows: it applies to all three.
            multi_row("b", 1200, &three, 0.8),
            // Per row, one unknown: two rows with an outcome, nothing unusable.
            multi_row("c", 1300, &three, 0.8),
            // For row 1 alone, as stored from `{"outcome": false, "row": 1}`.
            multi_row("d", 1400, &three, 0.8),
        ])
        .unwrap();
    for (id, outcome) in [
        ("a", json!("maybe")),
        ("b", json!("approved")),
        ("c", json!([true, null, false])),
        ("d", json!({ "row": 1, "outcome": false })),
    ] {
        store
            .add_feedback(&Feedback {
                record_id: id.to_owned(),
                time_ms: 1800,
                outcome,
            })
            .unwrap();
    }
    let (report, _) = build_report(store, &keys());
    let fairness = &report.fairness.routes[0];
    assert_eq!(fairness.rows, 12);
    assert_eq!(fairness.outcomes_received, 4);
    assert_eq!(fairness.unusable_outcomes, 1);
    assert_eq!(fairness.rows_with_outcome, 6);
    let html = crate::html::render(&report);
    assert!(
        html.contains("from 4 outcome(s) received, of which 1 not usable"),
        "{html}"
    );
    assert!(html.contains("one value to every row"), "{html}");
}

#[test]
fn the_report_names_every_figure_with_its_formula() {
    let dir = tempfile::tempdir().unwrap();
    let (report, _) = build_report(store(dir.path()), &keys());
    let html = crate::html::render(&report);
    let markdown = crate::markdown::render(&report);
    let json = serde_json::to_value(&report).unwrap();
    for d in crate::DEFINITIONS {
        assert!(
            html.contains(&maud::html! { (d.definition) }.into_string()),
            "{}",
            d.figure
        );
        assert!(markdown.contains(&format!("- **{}**: {}", d.figure, d.definition)));
        assert!(
            json["definitions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|j| j["figure"] == d.figure && j["definition"] == d.definition)
        );
    }
    for formula in [
        "SR_u − SR_p",
        "SR_u / SR_p",
        "no upper bound",
        "TPR_u − TPR_p",
        "Wilson",
        "Newcombe",
    ] {
        assert!(markdown.contains(formula), "{formula}");
    }
}
