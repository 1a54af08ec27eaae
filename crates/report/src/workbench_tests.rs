#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value as Json, json};
use sidelight_audit::{AuditStore, Feedback, Keys, Record, SqliteConfig, SqliteStore};

use crate::explained::{Bounds, Frame, Scope, Stop, read};
use crate::export::{Format, write};
use crate::workbench::{Bucket, Cohort, cohorts, dependence, slices, summary};

const HOUR: i64 = 3_600_000;

/// One explained row of a route over (age, housing, amount): values as recorded and the
/// surrogate's contributions, in the order attributions are stored (by size).
fn explained(id: &str, time_ms: i64, values: [Json; 3], shap: [f64; 3], model: f64) -> Record {
    let names = ["age", "housing", "amount"];
    let mut r = Record::new(id, time_ms, "credit", "m");
    r.features = Some(json!({ "names": names, "rows": [values.to_vec()] }));
    let mut items: Vec<Json> = names
        .iter()
        .zip(values.iter().zip(shap))
        .map(|(f, (v, c))| json!({ "feature": f, "value": v, "contribution": c }))
        .collect();
    items.sort_by(|a, b| {
        let size = |v: &Json| v["contribution"].as_f64().unwrap().abs();
        size(b).total_cmp(&size(a))
    });
    let logistic = |x: f64| 1.0 / (1.0 + (-x).exp());
    // As the proxy records a probability model: attributions in logit space, the
    // model's answer and the surrogate's as probabilities.
    r.attributions = Some(json!([{
        "surrogate_version": 2, "space": "logit", "base_value": 0.5,
        "prediction": model, "surrogate_prediction": logistic(0.5 + shap.iter().sum::<f64>()),
        "threshold": 0.5, "attributions": items,
    }]));
    r
}

fn store(dir: &std::path::Path, rows: usize) -> SqliteStore {
    let keys = Keys::from_master(vec![3; 32]).unwrap();
    let mut store = SqliteStore::open(dir.join("audit.db"), SqliteConfig::new(keys)).unwrap();
    let mut records = Vec::new();
    for i in 0..rows {
        let age = 20 + (i * 7) % 50;
        let housing = ["own", "rent", "free"][i % 3];
        let young = if age < 30 { -0.2 } else { 0.05 };
        let shap = [
            young,
            if housing == "rent" { -0.1 } else { 0.03 },
            0.001 * (i % 11) as f64,
        ];
        let model =
            1.0 / (1.0 + (-(0.5 + shap.iter().sum::<f64>())).exp()) + 0.01 * ((i % 5) as f64 - 2.0);
        // Two days: the first half of the rows on day one, the rest on day two.
        let time = if i < rows / 2 { 10 * HOUR } else { 34 * HOUR } + i as i64;
        records.push(explained(
            &format!("r{i}"),
            time,
            [json!(age), json!(housing), json!(1000 + i)],
            shap,
            model,
        ));
    }
    // A record without attributions (erased) and one of another route.
    let mut erased = Record::new("gone", 11 * HOUR, "credit", "m");
    erased.erased_at = Some(1);
    records.push(erased);
    records.push(explained(
        "other",
        12 * HOUR,
        [json!(1), json!("own"), json!(1)],
        [0.0; 3],
        0.5,
    ));
    if let Some(last) = records.last_mut() {
        last.route = "shop".to_owned();
    }
    store.append_batch(&records).unwrap();
    store
        .add_feedback(&Feedback {
            record_id: "r0".to_owned(),
            time_ms: 20 * HOUR,
            outcome: json!("declined"),
        })
        .unwrap();
    store
}

fn scope(from_ms: i64, to_ms: i64) -> Scope {
    Scope {
        route: "credit".to_owned(),
        from_ms,
        to_ms,
        config: None,
    }
}

fn everything(store: &dyn AuditStore, max_rows: usize) -> Frame {
    let bounds = Bounds {
        max_rows,
        deadline: None,
        outcomes: true,
    };
    read(store, &scope(0, 48 * HOUR), &bounds).unwrap()
}

#[test]
fn a_frame_reads_the_routes_rows_in_schema_order_and_says_what_it_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path(), 40);
    let frame = everything(&store, 10_000);
    assert_eq!(frame.names, ["age", "housing", "amount"]);
    assert_eq!(frame.rows.len(), 40);
    assert_eq!(frame.unexplained_records, 1);
    assert_eq!(frame.space.as_deref(), Some("logit"));
    assert_eq!(frame.stopped, None);
    let first = &frame.rows[0];
    assert_eq!(first.values, [json!(20), json!("own"), json!(1000)]);
    assert_eq!(first.outcome, Some(json!("declined")));
    assert_eq!(first.outcome_favourable, Some(false));
    assert!(frame.rows[1].outcome.is_none());
    // Cut short by the cap, a frame says so and how far it got.
    let short = everything(&store, 7);
    assert_eq!(short.rows.len(), 7);
    assert_eq!(short.stopped, Some(Stop::RowCap));
    assert!(short.through_ms.is_some());
}

#[test]
fn the_summary_is_the_mean_of_the_recorded_attributions_per_period_and_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path(), 40);
    let frame = everything(&store, 10_000);
    let bounds = Bounds {
        max_rows: 10_000,
        deadline: None,
        outcomes: false,
    };
    let previous = read(&store, &scope(-48 * HOUR, 0), &bounds).unwrap();
    let s = summary(
        "credit",
        (&frame, 0, 48 * HOUR),
        &previous,
        Bucket::Day,
        &["amount".to_owned()],
    )
    .unwrap();
    assert_eq!(s.period.rows, 40);
    assert_eq!(s.previous_period.rows, 0);
    assert_eq!(s.features[0].feature, "age");
    for f in &s.features {
        let k = frame.names.iter().position(|n| *n == f.feature).unwrap();
        let mean_abs = frame
            .rows
            .iter()
            .map(|r| r.contributions[k].abs())
            .sum::<f64>()
            / 40.0;
        let mean = frame.rows.iter().map(|r| r.contributions[k]).sum::<f64>() / 40.0;
        assert!((f.means.mean_abs - mean_abs).abs() < 1e-12);
        assert!((f.means.mean - mean).abs() < 1e-12);
        assert!(f.previous.is_none() && f.change.is_none());
        // Two daily buckets of 20 rows each.
        assert_eq!(f.series.len(), 2);
        assert_eq!(f.series[0].means.rows, 20);
        assert_eq!(f.series[1].start_ms, 24 * HOUR);
        // A strip point per row (40 < 200): numbers placed between 0 and 1; text and
        // the personal `amount` without a place.
        assert_eq!(f.strip.len(), 40);
        let placed = f.strip.iter().filter(|p| p.value.is_some()).count();
        match f.feature.as_str() {
            "age" => assert!(
                f.strip
                    .iter()
                    .all(|p| p.value.is_some_and(|v| (0.0..=1.0).contains(&v)))
            ),
            _ => assert_eq!(placed, 0, "{}", f.feature),
        }
    }
    // Against the first day as the previous period, the change is the difference.
    let day1 = read(&store, &scope(0, 24 * HOUR), &bounds).unwrap();
    let day2 = read(&store, &scope(24 * HOUR, 48 * HOUR), &bounds).unwrap();
    let s = summary(
        "credit",
        (&day2, 24 * HOUR, 48 * HOUR),
        &day1,
        Bucket::Hour,
        &[],
    )
    .unwrap();
    for f in &s.features {
        let p = f.previous.unwrap();
        let c = f.change.unwrap();
        assert!((c.mean_abs - (f.means.mean_abs - p.mean_abs)).abs() < 1e-12);
    }
}

#[test]
fn a_cohort_difference_is_the_difference_of_mean_predictions() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path(), 60);
    let frame = everything(&store, 10_000);
    let a = Cohort::parse("a", &["age=..30".to_owned()], &frame.names, &[]).unwrap();
    let rest = Cohort::default();
    let answer = cohorts("credit", (&frame, 0, 48 * HOUR), &a, &rest, 1).unwrap();
    let young: Vec<_> = frame
        .rows
        .iter()
        .filter(|r| r.values[0].as_f64().unwrap() < 30.0)
        .collect();
    let old: Vec<_> = frame
        .rows
        .iter()
        .filter(|r| r.values[0].as_f64().unwrap() >= 30.0)
        .collect();
    let mean = |rows: &[&crate::explained::ExplainedRow]| {
        rows.iter().map(|r| r.prediction()).sum::<f64>() / rows.len() as f64
    };
    let d = &answer.difference;
    assert_eq!(d.rows_a as usize, young.len());
    assert_eq!(d.rows_b as usize, old.len());
    let total: f64 = d.features.iter().map(|f| f.difference).sum::<f64>() + d.base;
    assert!((total - (mean(&young) - mean(&old))).abs() < 1e-12);
    assert_eq!(d.features[0].feature, "age");
    // Two explicit cohorts, and filters on what is not a feature.
    let renters = Cohort::parse("a", &["housing=rent".to_owned()], &frame.names, &[]).unwrap();
    let owners = Cohort::parse(
        "b",
        &["housing!=rent".to_owned(), "decision=favourable".to_owned()],
        &frame.names,
        &[],
    )
    .unwrap();
    let answer = cohorts("credit", (&frame, 0, 48 * HOUR), &renters, &owners, 1).unwrap();
    assert_eq!(answer.favourable_b, Some(1.0));
    // Below the least size, a cohort is refused rather than shown.
    let error = cohorts("credit", (&frame, 0, 48 * HOUR), &renters, &owners, 1000).unwrap_err();
    assert!(error.to_string().contains("fewer than the 1000"), "{error}");
}

#[test]
fn cohort_filters_name_what_is_wrong() {
    let names = ["age".to_owned(), "sex".to_owned()];
    let masked = ["sex".to_owned()];
    for (text, named) in [
        ("colour=red", "no feature `colour`"),
        ("age", "is not `field=value`"),
        ("age=..", "at least one end"),
        ("age=a..b", "`a` is not a number"),
        ("sex=f", "personal data"),
        ("decision=maybe", "one of favourable, unfavourable"),
        ("age=", "needs a field and a value"),
    ] {
        let error = Cohort::parse("a", &[text.to_owned()], &names, &masked).unwrap_err();
        assert!(error.to_string().contains(named), "{text}: {error}");
        assert!(error.to_string().starts_with("`a`"), "{text}: {error}");
    }
}

#[test]
fn dependence_and_slices_find_the_feature_and_the_slice_that_matter() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path(), 90);
    let frame = everything(&store, 10_000);
    let d = dependence("credit", (&frame, 0, 48 * HOUR), "age", &[], 50).unwrap();
    assert!(d.points.len() <= 50 && d.points.len() >= 30);
    assert!(d.points.iter().all(|p| p.value.is_number()));
    assert!(
        dependence(
            "credit",
            (&frame, 0, 48 * HOUR),
            "age",
            &["age".to_owned()],
            50
        )
        .unwrap_err()
        .to_string()
        .contains("personal data")
    );
    assert!(
        dependence("credit", (&frame, 0, 48 * HOUR), "height", &[], 50)
            .unwrap_err()
            .to_string()
            .contains("no feature `height`")
    );
    let s = slices("credit", (&frame, 0, 48 * HOUR), &[], 5, 10).unwrap();
    assert_eq!(s.overall.rows, 90);
    // The model's probabilities against the surrogate's, not against its log-odds: the
    // only gap is the model's ±0.02 of noise.
    assert!(
        s.overall.surrogate_error.unwrap() <= 0.02 + 1e-9,
        "{:?}",
        s.overall
    );
    assert!(!s.by_surrogate_error.is_empty());
    // Every slice's conditions read back as a cohort with the same rows.
    for slice in &s.by_surrogate_error {
        let cohort = Cohort::parse("a", &slice.conditions, &frame.names, &[]).unwrap();
        let n = frame.rows.iter().filter(|r| cohort.contains(r)).count();
        assert_eq!(n as u64, slice.rows, "{:?}", slice.conditions);
        let worst = s.by_surrogate_error[0].surrogate_error.unwrap();
        assert!(slice.surrogate_error.unwrap() <= worst);
    }
    // One reported outcome, unfavourable, against a decision the model made.
    assert_eq!(s.overall.rows_with_outcome, 1);
}

#[test]
fn an_export_adds_up_on_every_row_read_back_as_csv_and_parquet() {
    use arrow_array::{Array, Float64Array, StringArray};
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path(), 30);
    let frame = everything(&store, 10_000);

    let mut csv_bytes = Vec::new();
    write(&frame, &["housing".to_owned()], Format::Csv, &mut csv_bytes).unwrap();
    let mut reader = csv::Reader::from_reader(csv_bytes.as_slice());
    let header = reader.headers().unwrap().clone();
    let column = |name: &str| header.iter().position(|h| h == name).unwrap();
    let mut rows = 0;
    for record in reader.records() {
        let record = record.unwrap();
        let number = |name: &str| record[column(name)].parse::<f64>().unwrap();
        let sum = number("base_value")
            + ["age", "housing", "amount"]
                .iter()
                .map(|f| number(&format!("shap_{f}")))
                .sum::<f64>();
        assert!((sum - number("prediction")).abs() < 1e-12);
        assert_eq!(&record[column("housing")], crate::export::MASKED);
        assert_eq!(&record[column("space")], "logit");
        rows += 1;
    }
    assert_eq!(rows, 30);

    let mut parquet_bytes = Vec::new();
    write(&frame, &[], Format::Parquet, &mut parquet_bytes).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        bytes::Bytes::from(parquet_bytes),
    )
    .unwrap()
    .build()
    .unwrap();
    let mut rows = 0;
    for batch in reader {
        let batch = batch.unwrap();
        let floats = |name: &str| {
            batch
                .column_by_name(name)
                .unwrap()
                .as_any()
                .downcast_ref::<Float64Array>()
                .unwrap()
                .clone()
        };
        let (base, prediction) = (floats("base_value"), floats("prediction"));
        let shap: Vec<Float64Array> = ["age", "housing", "amount"]
            .iter()
            .map(|f| floats(&format!("shap_{f}")))
            .collect();
        for i in 0..batch.num_rows() {
            let sum = base.value(i) + shap.iter().map(|s| s.value(i)).sum::<f64>();
            assert!((sum - prediction.value(i)).abs() < 1e-12);
        }
        // Numbers stay numbers, text stays text.
        assert!(floats("age").len() == batch.num_rows());
        let housing = batch.column_by_name("housing").unwrap();
        assert!(housing.as_any().downcast_ref::<StringArray>().is_some());
        rows += batch.num_rows();
    }
    assert_eq!(rows, 30);

    // A frame cut short is never written.
    let short = everything(&store, 5);
    let error = write(&short, &[], Format::Csv, Vec::new()).unwrap_err();
    assert!(
        error.to_string().contains("more than 5 explained rows"),
        "{error}"
    );
}
