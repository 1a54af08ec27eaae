//! `sidelight surrogate fit` and `sidelight surrogate explain` through the real binary:
//! a surrogate of the demo credit model fitted from a CSV of its scores, SHAP values that
//! add up for every method, and bad input refused with its line, column and exit status.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use sidelight_demo_model::{data, model};
use sidelight_e2e::{CliRun, cli, run_cli};

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The German credit rows (without the recorded outcome) and, in a `score` column, the
/// demo model's probability for each: the traffic a surrogate would learn from.
fn credit_csv(dir: &Path, rows: usize) -> PathBuf {
    let raw = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../data/german-credit/german_credit.csv"
    ))
    .unwrap();
    let apps = data::applications().unwrap();
    let mut lines = raw.lines();
    let header = lines.next().unwrap();
    // The file has no quoted fields, so the outcome is whatever follows the last comma.
    let strip = |line: &str| line.rsplit_once(',').unwrap().0.to_owned();
    let mut csv = format!("{},score\n", strip(header));
    for (line, app) in lines.zip(&apps).take(rows) {
        csv.push_str(&format!(
            "{},{}\n",
            strip(line),
            model::score(&app.application)
        ));
    }
    let path = dir.join(format!("credit-{rows}.csv"));
    std::fs::write(&path, csv).unwrap();
    path
}

/// Not a check: writes the scored German credit rows to `$SIDELIGHT_CREDIT_CSV`, the data
/// the README's throughput figures for `surrogate explain` were measured on.
#[test]
#[ignore = "writes a file for the README's measurements; run on demand"]
fn write_scored_credit_csv() {
    let target = PathBuf::from(std::env::var("SIDELIGHT_CREDIT_CSV").unwrap());
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(credit_csv(dir.path(), 1000), target).unwrap();
}

/// Parses an attribution CSV: header and rows of numbers.
fn read_shap(path: &Path) -> (Vec<String>, Vec<Vec<f64>>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header = lines
        .next()
        .unwrap()
        .split(',')
        .map(str::to_owned)
        .collect();
    let rows = lines
        .map(|l| l.split(',').map(|v| v.parse::<f64>().unwrap()).collect())
        .collect();
    (header, rows)
}

fn fit_credit(dir: &Path) -> (PathBuf, CliRun) {
    let data = credit_csv(dir, 1000);
    let out = dir.join("credit.json");
    let run = run_cli(&[
        "surrogate",
        "fit",
        "--data",
        p(&data),
        "--target",
        "score",
        "--out",
        p(&out),
        "--trees",
        "50",
        "--seed",
        "3",
    ]);
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    (out, run)
}

fn r2_of(stdout: &str) -> f64 {
    stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("R²"))
        .unwrap_or_else(|| panic!("no R² line in {stdout}"))
        .trim()
        .parse()
        .unwrap()
}

const FEATURES: [&str; 20] = data::FEATURE_NAMES;

#[test]
fn fits_the_credit_model_with_high_fidelity_and_explains_it_three_ways() {
    let dir = tempfile::tempdir().unwrap();
    let (model, fit) = fit_credit(dir.path());
    assert!(r2_of(&fit.stdout) > 0.9, "{}", fit.stdout);
    assert!(fit.stdout.contains("agreement"), "{}", fit.stdout);
    assert!(fit.stdout.contains("n          200"), "{}", fit.stdout);
    assert!(
        fit.stderr.contains("fitted as a probability"),
        "{}",
        fit.stderr
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&model).unwrap()).unwrap();
    assert_eq!(json["format_version"], 1);
    assert_eq!(json["output"]["kind"], "binary_probability");

    let rows = credit_csv(dir.path(), 300);
    let few = credit_csv(dir.path(), 4);
    let background = credit_csv(dir.path(), 12);
    let cases: [(&str, &Path, &[&str]); 3] = [
        ("tree", &rows, &[]),
        ("interventional", &rows, &["--background-rows", "50"]),
        (
            "kernel",
            &few,
            &["--background", p(&background), "--coalitions", "200"],
        ),
    ];
    for (method, data, extra) in cases {
        let out = dir.path().join(format!("shap-{method}.csv"));
        let mut args = vec![
            "surrogate",
            "explain",
            "--model",
            p(&model),
            "--data",
            p(data),
            "--out",
            p(&out),
            "--method",
            method,
        ];
        args.extend_from_slice(extra);
        let run = run_cli(&args);
        assert_eq!(run.code, Some(0), "{method}: {}", run.stderr);
        assert!(
            run.stderr
                .contains("ignoring column the model does not read: `score`"),
            "{method}: {}",
            run.stderr
        );
        let summary = run
            .stderr
            .lines()
            .find(|l| l.starts_with("explained "))
            .unwrap_or_else(|| panic!("{method}: no summary in {}", run.stderr));
        assert!(
            summary.contains("rows/s") && summary.contains(" s ("),
            "{summary}"
        );
        if method != "tree" {
            assert!(
                run.stderr.contains("background: the first"),
                "{}",
                run.stderr
            );
        }

        let (header, values) = read_shap(&out);
        let expected: Vec<&str> = ["base_value", "prediction"]
            .into_iter()
            .chain(FEATURES)
            .collect();
        assert_eq!(header, expected, "{method}");
        let n_rows = if method == "kernel" { 4 } else { 300 };
        assert_eq!(values.len(), n_rows, "{method}");
        assert!(
            summary.starts_with(&format!("explained {n_rows} rows")),
            "{summary}"
        );
        for (i, row) in values.iter().enumerate() {
            assert_eq!(row.len(), 22, "{method} row {i}");
            let sum: f64 = row[0] + row[2..].iter().sum::<f64>();
            assert!(
                (sum - row[1]).abs() < 1e-6,
                "{method} row {i}: base + Σφ = {sum}, prediction {}",
                row[1]
            );
            // Features the demo model never reads get (almost) nothing.
            let sex = 2 + FEATURES
                .iter()
                .position(|f| *f == "personal_status_sex")
                .unwrap();
            let checking = 2 + FEATURES
                .iter()
                .position(|f| *f == "checking_account")
                .unwrap();
            if method == "tree" {
                assert!(row[sex].abs() <= row[checking].abs() + 1e-12, "{row:?}");
            }
        }
    }
}

#[test]
fn threads_split_rows_without_changing_a_value_and_stdout_works() {
    let dir = tempfile::tempdir().unwrap();
    let (model, _) = fit_credit(dir.path());
    let rows = credit_csv(dir.path(), 200);
    let one = dir.path().join("one.csv");
    let run = run_cli(&[
        "surrogate",
        "explain",
        "--model",
        p(&model),
        "--data",
        p(&rows),
        "--out",
        p(&one),
        "--threads",
        "1",
    ]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stderr.contains("1 thread,"), "{}", run.stderr);
    let three = run_cli(&[
        "surrogate",
        "explain",
        "--model",
        p(&model),
        "--data",
        p(&rows),
        "--out",
        "-",
        "--threads",
        "3",
    ]);
    assert_eq!(three.code, Some(0), "{}", three.stderr);
    assert!(three.stderr.contains("3 threads"), "{}", three.stderr);
    assert_eq!(std::fs::read_to_string(&one).unwrap(), three.stdout);
}

/// A small data set for the error cases: fast to fit, and easy to break one cell of.
fn small(dir: &Path) -> (PathBuf, PathBuf) {
    let mut csv = String::from("amount,housing,y\n");
    for i in 0..80 {
        let housing = ["own", "rent", "free"][i % 3];
        csv.push_str(&format!(
            "{},{housing},{}\n",
            i * 10,
            i as f64 * 0.5 + (i % 3) as f64
        ));
    }
    let data = dir.join("small.csv");
    std::fs::write(&data, csv).unwrap();
    let model = dir.join("small.json");
    let run = run_cli(&[
        "surrogate",
        "fit",
        "--data",
        p(&data),
        "--target",
        "y",
        "--out",
        p(&model),
        "--trees",
        "5",
    ]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(!run.stderr.contains("probability"), "{}", run.stderr);
    (data, model)
}

fn assert_error(run: &CliRun, code: i32, needles: &[&str]) {
    assert_eq!(run.code, Some(code), "stderr: {}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    for needle in needles {
        assert!(
            run.stderr.contains(needle),
            "expected `{needle}` in: {}",
            run.stderr
        );
    }
}

#[test]
fn bad_training_data_names_the_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.json");
    let fit = |name: &str, csv: &str, target: &str, extra: &[&str]| {
        let path = dir.path().join(name);
        std::fs::write(&path, csv).unwrap();
        let mut args = vec![
            "surrogate",
            "fit",
            "--data",
            p(&path),
            "--target",
            target,
            "--out",
            p(&out),
            "--trees",
            "3",
        ];
        args.extend_from_slice(extra);
        run_cli(&args)
    };
    let numeric: String = (0..30).map(|i| format!("{i},{}\n", i * 2)).collect();

    let ragged = format!("a,b\n{numeric}1,2\n3\n");
    assert_error(
        &fit("ragged.csv", &ragged, "b", &[]),
        65,
        &[
            "ragged.csv, line 33",
            "1 field ",
            "2 columns",
            "column 2 (`b`)",
        ],
    );
    let text = format!("a,b\n{numeric}oops,4\n");
    assert_error(
        &fit("text.csv", &text, "b", &[]),
        65,
        &[
            "text.csv, line 32, column 1 (`a`)",
            "text in a numeric column",
            "--categorical a",
        ],
    );
    // The same column is accepted once the user says it holds categories.
    let run = fit("text.csv", &text, "b", &["--categorical", "a"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);

    let bad_target = format!("a,b\n{numeric}4,n/a\n");
    assert_error(
        &fit("target.csv", &bad_target, "b", &[]),
        65,
        &[
            "target.csv, line 32, column 2 (`b`)",
            "text where the model's output",
        ],
    );
    let empty_target = format!("a,b\n{numeric}4,\n");
    assert_error(
        &fit("empty-target.csv", &empty_target, "b", &[]),
        65,
        &["line 32, column 2 (`b`)", "empty"],
    );
    assert_error(
        &fit("no-target.csv", &format!("a,b\n{numeric}"), "score", &[]),
        65,
        &[
            "no-target.csv, line 1",
            "no target column `score`",
            "`a`, `b`",
        ],
    );
    assert_error(&fit("empty.csv", "", "b", &[]), 65, &["empty.csv", "empty"]);
    assert_error(
        &fit("header.csv", "a,b\n", "b", &[]),
        65,
        &["header.csv", "no data rows", "line 1"],
    );
    assert_error(
        &fit("dup.csv", &format!("a,a\n{numeric}"), "a", &[]),
        65,
        &["dup.csv, line 1", "columns 1 and 2"],
    );
    assert_error(
        &fit(
            "prob.csv",
            &format!("a,b\n{numeric}"),
            "b",
            &["--kind", "probability"],
        ),
        65,
        &["prob.csv, line 3, column 2 (`b`)", "not a probability"],
    );

    let missing = dir.path().join("nowhere.csv");
    let never = dir.path().join("never.json");
    let run = run_cli(&[
        "surrogate",
        "fit",
        "--data",
        p(&missing),
        "--target",
        "b",
        "--out",
        p(&never),
    ]);
    assert_error(&run, 66, &["nowhere.csv", "no such file"]);
    assert!(!never.exists());

    // Arguments clap cannot check: parameters the booster refuses.
    let path = dir.path().join("ok.csv");
    std::fs::write(&path, format!("a,b\n{numeric}")).unwrap();
    let run = run_cli(&[
        "surrogate",
        "fit",
        "--data",
        p(&path),
        "--target",
        "b",
        "--out",
        p(&out),
        "--learning-rate",
        "0",
    ]);
    assert_error(&run, 64, &["learning_rate"]);
    let run = run_cli(&[
        "surrogate",
        "fit",
        "--data",
        p(&path),
        "--target",
        "b",
        "--out",
        p(&out),
        "--holdout",
        "1.5",
    ]);
    assert_eq!(run.code, Some(64), "{}", run.stderr);
}

#[test]
fn bad_rows_or_models_for_explain_name_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let (data, model) = small(dir.path());
    let out = dir.path().join("shap.csv");
    let explain = |model: &Path, data: &Path| {
        run_cli(&[
            "surrogate",
            "explain",
            "--model",
            p(model),
            "--data",
            p(data),
            "--out",
            p(&out),
        ])
    };
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };

    let ok = explain(&model, &data);
    assert_eq!(ok.code, Some(0), "{}", ok.stderr);
    assert!(
        ok.stderr
            .contains("ignoring column the model does not read: `y`"),
        "{}",
        ok.stderr
    );
    // A level never seen in training is explained (it follows the default branches).
    let unseen = write("unseen.csv", "housing,amount\ncastle,10\n,\n");
    let run = explain(&model, &unseen);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(!run.stderr.contains("ignoring"), "{}", run.stderr);

    let no_feature = write("no-feature.csv", "amount,y\n1,2\n");
    assert_error(
        &explain(&model, &no_feature),
        65,
        &[
            "no-feature.csv, line 1",
            "`housing`",
            "which the model needs",
        ],
    );
    let text = write("text.csv", "amount,housing\n1,own\nlots,rent\n");
    assert_error(
        &explain(&model, &text),
        65,
        &["text.csv, line 3, column 1 (`amount`)", "number"],
    );
    let ragged = write("ragged.csv", "amount,housing\n1,own\n2\n");
    assert_error(
        &explain(&model, &ragged),
        65,
        &["ragged.csv, line 3", "column 2 (`housing`)"],
    );
    assert_error(
        &explain(&model, &write("empty.csv", "")),
        65,
        &["empty.csv", "empty"],
    );
    assert_error(
        &explain(&model, &write("header.csv", "amount,housing\n")),
        65,
        &["header.csv", "no data rows"],
    );

    let broken = write("broken.json", "{\"format_version\": 1,\n  \"output\": ");
    assert_error(
        &explain(&broken, &data),
        65,
        &["broken.json", "line 2", "column"],
    );
    let text_model = std::fs::read_to_string(&model).unwrap();
    let wrong_version = write(
        "v9.json",
        &text_model.replacen("\"format_version\": 1", "\"format_version\": 9", 1),
    );
    assert_error(
        &explain(&wrong_version, &data),
        65,
        &["v9.json", "format_version 9"],
    );
    assert_error(
        &explain(&dir.path().join("absent.json"), &data),
        66,
        &["absent.json", "no such file"],
    );
    assert_error(
        &explain(&model, &dir.path().join("absent.csv")),
        66,
        &["absent.csv", "no such file"],
    );
    let run = run_cli(&[
        "surrogate",
        "explain",
        "--model",
        p(&model),
        "--data",
        p(&data),
        "--out",
        p(&out),
        "--method",
        "kernel",
        "--background",
        p(&no_feature),
    ]);
    assert_error(&run, 65, &["no-feature.csv, line 1", "`housing`"]);
    let run = run_cli(&[
        "surrogate",
        "explain",
        "--model",
        p(&model),
        "--data",
        p(&data),
        "--out",
        p(&dir.path().join("no/such/dir/shap.csv")),
    ]);
    assert_error(&run, 73, &["shap.csv", "cannot write"]);
}

/// A seed model that reads other features than the route configures would explain the
/// wrong columns: start-up stops, naming the key and the first feature that differs.
#[test]
fn a_seed_model_of_other_features_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let (_, model) = small(dir.path());
    let config = dir.path().join("sidelight.toml");
    std::fs::write(
        &config,
        format!(
            "{}[state]\ndir = \"{}\"\n[[routes]]\nname = \"r\"\npath_prefix = \"/\"\n\
             [routes.explain]\nprotocol = \"kserve_v1\"\n\
             [[routes.explain.features]]\nname = \"amount\"\nkind = \"numeric\"\n\
             [[routes.explain.features]]\nname = \"city\"\nkind = \"categorical\"\n\
             [routes.explain.surrogate]\nseed_model = \"{}\"\n",
            sidelight_e2e::config_for("http://127.0.0.1:9", "", ""),
            p(&dir.path().join("state")),
            p(&model)
        ),
    )
    .unwrap();
    let run = cli(["serve", "--config", p(&config)])
        .timeout(std::time::Duration::from_secs(30))
        .run();
    assert!(
        !run.timed_out,
        "sidelight kept running with a seed model of other features"
    );
    let stderr = run.stderr;
    assert_eq!(run.code, Some(64), "{stderr}");
    assert!(
        stderr.contains("seed_model") && stderr.contains("`housing`") && stderr.contains("`city`"),
        "{stderr}"
    );
}
