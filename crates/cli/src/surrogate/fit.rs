//! `sidelight surrogate fit`.

use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use linfa::ParamGuard;
use sidelight_explain::{
    FeatureKind, Fidelity, FitProgress, GbtParams, Holdout, OutputKind, Schema, Surrogate, Value,
};

use super::table::{self, Table};
use super::{Failure, FitArgs, Kind};

pub(super) fn run(args: &FitArgs) -> Result<(), Failure> {
    let params = GbtParams::new()
        .n_trees(args.trees)
        .max_depth(args.depth)
        .learning_rate(args.learning_rate)
        .seed(args.seed)
        .check()
        .map_err(|e| Failure::usage(format!("cannot fit with these options: {e}")))?;
    let data = Table::read(&args.data, None)?;
    let target = data.column(&args.target).ok_or_else(|| {
        Failure::data(format!(
            "{}, line 1: no target column `{}`; the columns are {}",
            data.name,
            args.target,
            quoted_list(&data.header)
        ))
    })?;
    let features: Vec<usize> = (0..data.header.len()).filter(|&c| c != target).collect();
    if features.is_empty() {
        return Err(Failure::data(format!(
            "{}, line 1: the target `{}` is the only column; there are no features to fit on",
            data.name, args.target
        )));
    }
    for name in &args.categorical {
        if data.column(name).is_none_or(|c| c == target) {
            return Err(Failure::usage(format!(
                "--categorical {name}: {} has no feature column of that name",
                data.name
            )));
        }
    }

    let outputs = targets(&data, target)?;
    let kind = output_kind(&data, target, &outputs, args.kind)?;
    let schema = infer_schema(&data, &features, &args.categorical)?;
    let rows = values(&data, &features, &schema)?;
    if args.holdout > 0.0 && rows.len() < 2 {
        return Err(Failure::data(format!(
            "{}: one data row cannot be split to measure fidelity; add rows or pass --holdout 0",
            data.name
        )));
    }

    let started = Instant::now();
    let bar = progress_bar(kind.n_outputs() * args.trees);
    let mut report = |p: FitProgress| {
        bar.set_position((p.output * p.n_trees + p.trees_done) as u64);
    };
    let fitted = if args.holdout > 0.0 {
        let holdout = Holdout {
            fraction: args.holdout,
            seed: args.seed,
        };
        Surrogate::fit_and_evaluate(schema, &rows, &outputs, kind, &params, holdout, &mut report)
            .map(|(s, f)| (s, Some(f)))
    } else {
        Surrogate::fit_with_progress(schema, &rows, &outputs, kind, &params, &mut report)
            .map(|s| (s, None))
    };
    bar.finish_and_clear();
    let (surrogate, fidelity) =
        fitted.map_err(|e| Failure::data(format!("{}: cannot fit: {e}", data.name)))?;
    let seconds = started.elapsed().as_secs_f64();

    let json = surrogate
        .to_json_pretty()
        .map_err(|e| Failure::internal(format!("cannot serialise the surrogate: {e}")))?;
    std::fs::write(&args.out, json)
        .map_err(|e| Failure::cant_create(format!("{}: cannot write: {e}", args.out.display())))?;

    print_report(&surrogate, &args.target, seconds, fidelity.as_ref());
    println!("wrote {}", args.out.display());
    Ok(())
}

/// The target column as numbers: every row needs a finite one.
fn targets(data: &Table, target: usize) -> Result<Vec<f64>, Failure> {
    data.rows
        .iter()
        .map(|row| {
            let cell = row.cell(target);
            let problem = if cell.is_empty() {
                "empty; every row needs the model's output"
            } else {
                match table::number(cell) {
                    Some(v) if v.is_finite() => return Ok(v),
                    Some(_) => "not a finite number",
                    None => "text where the model's output (a number) is expected",
                }
            };
            Err(Failure::data(format!(
                "{}: {problem}",
                data.at(row.line, target)
            )))
        })
        .collect()
}

fn output_kind(
    data: &Table,
    target: usize,
    outputs: &[f64],
    asked: Option<Kind>,
) -> Result<OutputKind, Failure> {
    let outside = outputs.iter().position(|v| !(0.0..=1.0).contains(v));
    match (asked, outside) {
        (Some(Kind::Regression), _) => Ok(OutputKind::Regression),
        (Some(Kind::Probability), None) => Ok(OutputKind::BinaryProbability),
        (Some(Kind::Probability), Some(i)) => {
            let line = data.rows.get(i).map_or(0, |r| r.line);
            Err(Failure::data(format!(
                "{}: not a probability in [0, 1], as --kind probability requires",
                data.at(line, target)
            )))
        }
        (None, Some(_)) => Ok(OutputKind::Regression),
        (None, None) => {
            eprintln!(
                "note: every value of `{}` lies in [0, 1], so it is fitted as a probability: the \
                 trees fit its logit, and explanations are in logit space (--kind regression \
                 fits the values as they are)",
                data.header[target]
            );
            Ok(OutputKind::BinaryProbability)
        }
    }
}

/// Kinds from the values (`Schema::infer`), then a check that a column inferred as
/// categorical only because of a few stray text cells is reported rather than silently
/// turned into levels: mostly-numeric columns with text are nearly always a data error.
fn infer_schema(data: &Table, features: &[usize], forced: &[String]) -> Result<Schema, Failure> {
    let names: Vec<String> = features.iter().map(|&c| data.header[c].clone()).collect();
    let guessed: Vec<Vec<Value>> = data
        .rows
        .iter()
        .map(|row| {
            features
                .iter()
                .map(|&c| table::guess(row.cell(c)))
                .collect()
        })
        .collect();
    let inferred = Schema::infer(&names, &guessed)
        .map_err(|e| Failure::internal(format!("{}: {e}", data.name)))?;
    let mut kinds = Vec::with_capacity(features.len());
    for (feature, &column) in inferred.features().iter().zip(features) {
        let kind = if forced.contains(&feature.name) {
            FeatureKind::Categorical
        } else {
            if feature.kind == FeatureKind::Categorical {
                check_not_mostly_numeric(data, column)?;
            }
            feature.kind
        };
        kinds.push(sidelight_explain::Feature::new(feature.name.clone(), kind));
    }
    Schema::new(kinds).map_err(|e| Failure::internal(format!("{}: {e}", data.name)))
}

fn check_not_mostly_numeric(data: &Table, column: usize) -> Result<(), Failure> {
    let mut numbers = 0usize;
    let mut first_text = None;
    let mut texts = 0usize;
    for row in &data.rows {
        let cell = row.cell(column);
        if cell.is_empty() {
            continue;
        }
        if table::number(cell).is_some() {
            numbers += 1;
        } else {
            texts += 1;
            first_text.get_or_insert(row.line);
        }
    }
    match first_text {
        Some(line) if numbers > texts => Err(Failure::data(format!(
            "{}: text in a numeric column (of its non-empty cells, {numbers} are numbers and \
             {texts} text; leave a cell empty for a missing value, or pass --categorical {} if \
             the column really holds categories)",
            data.at(line, column),
            data.header[column]
        ))),
        _ => Ok(()),
    }
}

fn values(data: &Table, features: &[usize], schema: &Schema) -> Result<Vec<Vec<Value>>, Failure> {
    data.rows
        .iter()
        .map(|row| {
            features
                .iter()
                .zip(schema.features())
                .map(|(&c, f)| {
                    table::value(f.kind, row.cell(c))
                        .map_err(|why| Failure::data(format!("{}: {why}", data.at(row.line, c))))
                })
                .collect()
        })
        .collect()
}

/// A bar on stderr; indicatif draws nothing when stderr is not a terminal, so logs and
/// pipes stay clean.
fn progress_bar(total: usize) -> ProgressBar {
    let bar = ProgressBar::new(total as u64);
    if let Ok(style) =
        ProgressStyle::with_template("fitting {bar:40.cyan/blue} {pos}/{len} trees ({elapsed})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

fn print_report(surrogate: &Surrogate, target: &str, seconds: f64, fidelity: Option<&Fidelity>) {
    let meta = surrogate.metadata();
    let schema = surrogate.schema();
    let count = |k| schema.features().iter().filter(|f| f.kind == k).count();
    let what = match surrogate.output() {
        OutputKind::Regression => "regression surrogate".to_owned(),
        OutputKind::BinaryProbability => "probability surrogate (trees fit the logit)".to_owned(),
        OutputKind::MultiClass { classes } => format!("{}-class surrogate", classes.len()),
    };
    let trees: usize = meta.trees.iter().sum();
    let early = if meta.stopped_early.iter().any(|&s| s) {
        format!(" (early stopping on {} rows)", meta.n_validation)
    } else {
        String::new()
    };
    println!(
        "fitted a {what} of `{target}` on {} rows in {seconds:.2} s: {trees} trees{early}, \
         {} features ({} numeric, {} boolean, {} categorical)",
        meta.n_train,
        schema.len(),
        count(FeatureKind::Numeric),
        count(FeatureKind::Boolean),
        count(FeatureKind::Categorical),
    );
    let Some(f) = fidelity else {
        println!("fidelity: not measured (--holdout 0)");
        return;
    };
    println!(
        "fidelity on {} held-out rows (in the model's output space):",
        f.n
    );
    println!("  R²         {:.4}", f.r2);
    println!("  MAE        {:.6}", f.mae);
    println!("  max error  {:.6}", f.max_abs_error);
    if let Some(a) = f.agreement {
        println!(
            "  agreement  {:.1}% (same decision at probability 0.5)",
            100.0 * a
        );
    }
    println!("  n          {}", f.n);
}

fn quoted_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
