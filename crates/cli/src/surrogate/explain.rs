//! `sidelight surrogate explain`.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use sidelight_explain::shap::fast::Scratch;
use sidelight_explain::shap::{BatchModel, KernelExplainer};
use sidelight_explain::{
    Ensemble, InterventionalExplainer, KernelOptions, OutputKind, ShapError, Surrogate,
    TreeExplainer, Value,
};

use super::table::{self, Table};
use super::{ExplainArgs, Failure, Method};

pub(super) fn run(args: &ExplainArgs) -> Result<(), Failure> {
    let surrogate = load_model(&args.model)?;
    let (output, ensemble) = pick_output(&surrogate, args)?;
    let data = Table::read(&args.data, None)?;
    let x = encode(&surrogate, &data)?;
    let nf = surrogate.schema().len();
    let background = match args.method {
        Method::Tree => {
            if let Some(path) = &args.background {
                eprintln!(
                    "note: --background {} is not used by --method tree, which takes the \
                     trees' own covers as the reference",
                    path.display()
                );
            }
            Vec::new()
        }
        Method::Interventional | Method::Kernel => background(&surrogate, &data, &x, args)?,
    };
    let threads = args.threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, usize::from),
        |n| n as usize,
    );
    let n_rows = data.rows.len();
    let threads = threads.clamp(1, n_rows.max(1));

    let sink = open_output(&args.out)?;

    let started = Instant::now();
    let attributions = match args.method {
        Method::Tree => {
            let explainer = TreeExplainer::new(ensemble).map_err(|e| model_error(args, &e))?;
            in_threads(
                &x,
                nf,
                threads,
                || Ok(Scratch::default()),
                |scratch, row, out| {
                    let (head, values) = out.split_at_mut(2);
                    explainer.explain_into(row, scratch, values)?;
                    head[0] = explainer.base_value();
                    head[1] = ensemble.predict(row);
                    Ok(())
                },
            )
        }
        Method::Interventional => {
            let explainer = InterventionalExplainer::new(ensemble, &background)
                .map_err(|e| model_error(args, &e))?;
            in_threads(
                &x,
                nf,
                threads,
                || Ok(()),
                |(), row, out| {
                    write_attribution(out, explainer.explain(row)?);
                    Ok(())
                },
            )
        }
        Method::Kernel => {
            let options = KernelOptions {
                max_coalitions: args.coalitions as usize,
                seed: args.seed,
                ..KernelOptions::default()
            };
            // Each thread scores the surrogate on its own: KernelSHAP drives a model that
            // it may mutate (`&mut`), as a real black box would be.
            in_threads(
                &x,
                nf,
                threads,
                || KernelExplainer::new(BlackBox { ensemble }, &background, options),
                |explainer, row, out| {
                    write_attribution(out, explainer.explain(row)?);
                    Ok(())
                },
            )
        }
    }
    .map_err(|(row, e)| {
        let line = data.rows.get(row).map_or(0, |r| r.line);
        Failure::internal(format!("{}, line {line}: cannot explain: {e}", data.name))
    })?;
    let seconds = started.elapsed().as_secs_f64();

    write_output(sink, &args.out, &surrogate, &attributions, nf)?;
    let space = if surrogate.output().is_probability() {
        ", logit space"
    } else {
        ""
    };
    let class = match surrogate.output() {
        OutputKind::MultiClass { classes } => classes
            .get(output)
            .map_or(String::new(), |c| format!(", class `{c}`")),
        _ => String::new(),
    };
    let rate = n_rows as f64 / seconds.max(1e-9);
    // Slow methods (KernelSHAP) run at a few rows per second, where a decimal matters.
    let decimals = if rate < 100.0 { 1 } else { 0 };
    eprintln!(
        "explained {n_rows} rows in {seconds:.3} s ({rate:.decimals$} rows/s; method {}{}, {threads} thread{}{space}{class})",
        args.method.name(),
        if background.is_empty() {
            String::new()
        } else {
            format!(", {} background rows", background.len())
        },
        if threads == 1 { "" } else { "s" },
    );
    Ok(())
}

fn load_model(path: &Path) -> Result<Surrogate, Failure> {
    let name = path.display();
    let bytes = std::fs::read(path).map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_owned(),
            _ => e.to_string(),
        };
        Failure::no_input(format!("{name}: cannot open: {why}"))
    })?;
    let text = String::from_utf8(bytes)
        .map_err(|_| Failure::data(format!("{name}: not a surrogate: not UTF-8 text")))?;
    Surrogate::from_json(&text)
        .map_err(|e| Failure::data(format!("{name}: not a usable surrogate: {e}")))
}

fn model_error(args: &ExplainArgs, error: &ShapError) -> Failure {
    Failure::data(format!(
        "{}: the trees cannot be explained: {error}",
        args.model.display()
    ))
}

/// Which output (ensemble) to explain: the only one, or the class asked for.
fn pick_output<'s>(
    surrogate: &'s Surrogate,
    args: &ExplainArgs,
) -> Result<(usize, &'s Ensemble), Failure> {
    let index = match (surrogate.output(), &args.class) {
        (OutputKind::MultiClass { classes }, Some(class)) => {
            classes.iter().position(|c| c == class).ok_or_else(|| {
                Failure::usage(format!(
                    "--class {class}: {} has no such class; its classes are {}",
                    args.model.display(),
                    classes.join(", ")
                ))
            })?
        }
        (OutputKind::MultiClass { classes }, None) => {
            return Err(Failure::usage(format!(
                "{} is a multi-class surrogate: pass --class with one of {}",
                args.model.display(),
                classes.join(", ")
            )));
        }
        (_, Some(_)) => {
            return Err(Failure::usage(format!(
                "--class: {} has a single output, not classes",
                args.model.display()
            )));
        }
        (_, None) => 0,
    };
    surrogate
        .ensembles()
        .get(index)
        .map(|e| (index, e))
        .ok_or_else(|| Failure::data(format!("{}: no ensemble {index}", args.model.display())))
}

/// Where each of the model's features is in the file; columns it does not read are
/// noted and skipped.
fn columns(surrogate: &Surrogate, data: &Table) -> Result<Vec<usize>, Failure> {
    let schema = surrogate.schema();
    let missing: Vec<&str> = schema
        .names()
        .filter(|n| data.column(n).is_none())
        .collect();
    if !missing.is_empty() {
        let list = missing
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(Failure::data(format!(
            "{}, line 1: no column for feature{} {list}, which the model needs",
            data.name,
            if missing.len() == 1 { "" } else { "s" }
        )));
    }
    let extra: Vec<String> = data
        .header
        .iter()
        .filter(|h| schema.index_of(h).is_none())
        .map(|h| format!("`{h}`"))
        .collect();
    if !extra.is_empty() {
        eprintln!(
            "note: {}: ignoring column{} the model does not read: {}",
            data.name,
            if extra.len() == 1 { "" } else { "s" },
            extra.join(", ")
        );
    }
    Ok(schema.names().filter_map(|n| data.column(n)).collect())
}

/// Every row encoded for the trees, row-major.
fn encode(surrogate: &Surrogate, data: &Table) -> Result<Vec<f64>, Failure> {
    let columns = columns(surrogate, data)?;
    let features = surrogate.schema().features();
    let nf = features.len();
    let mut x = vec![0.0; data.rows.len() * nf];
    let mut values: Vec<Value> = Vec::with_capacity(nf);
    for (row, slot) in data.rows.iter().zip(x.chunks_exact_mut(nf.max(1))) {
        values.clear();
        for (feature, &c) in features.iter().zip(&columns) {
            let value = table::value(feature.kind, row.cell(c))
                .map_err(|why| Failure::data(format!("{}: {why}", data.at(row.line, c))))?;
            values.push(value);
        }
        surrogate
            .encoder()
            .encode_into(&values, slot)
            .map_err(|e| Failure::data(format!("{}, line {}: {e}", data.name, row.line)))?;
    }
    Ok(x)
}

fn background(
    surrogate: &Surrogate,
    data: &Table,
    x: &[f64],
    args: &ExplainArgs,
) -> Result<Vec<Vec<f64>>, Failure> {
    let nf = surrogate.schema().len().max(1);
    let limit = args.background_rows as usize;
    let rows = match &args.background {
        Some(path) => {
            let table = Table::read(path, Some(limit))?;
            let encoded = encode(surrogate, &table)?;
            let rows: Vec<Vec<f64>> = encoded.chunks_exact(nf).map(<[f64]>::to_vec).collect();
            eprintln!(
                "background: the first {} rows of {}",
                rows.len(),
                table.name
            );
            rows
        }
        None => {
            let rows: Vec<Vec<f64>> = x
                .chunks_exact(nf)
                .take(limit)
                .map(<[f64]>::to_vec)
                .collect();
            eprintln!(
                "background: the first {} rows of {} (no --background given)",
                rows.len(),
                data.name
            );
            rows
        }
    };
    Ok(rows)
}

/// The surrogate's trees seen only through `BatchModel`: what KernelSHAP needs from any
/// model it explains.
struct BlackBox<'e> {
    ensemble: &'e Ensemble,
}

impl BatchModel for BlackBox<'_> {
    fn predict_batch(&mut self, rows: &[f64], n_cols: usize, out: &mut [f64]) {
        for (row, o) in rows.chunks_exact(n_cols.max(1)).zip(out) {
            *o = self.ensemble.predict(row);
        }
    }
}

fn write_attribution(out: &mut [f64], a: sidelight_explain::Attribution) {
    out[0] = a.base_value;
    out[1] = a.prediction;
    for (o, v) in out[2..].iter_mut().zip(a.values) {
        *o = v;
    }
}

/// Splits the rows into one contiguous block per thread; each thread gets its own state
/// from `init` and writes `base_value, prediction, φ…` for each of its rows into its
/// share of the output. On failure, the index of the first row that failed.
fn in_threads<S, I, F>(
    x: &[f64],
    nf: usize,
    threads: usize,
    init: I,
    explain: F,
) -> Result<Vec<f64>, (usize, ShapError)>
where
    I: Fn() -> Result<S, ShapError> + Sync,
    F: Fn(&mut S, &[f64], &mut [f64]) -> Result<(), ShapError> + Sync,
{
    let nf = nf.max(1);
    let width = nf + 2;
    let n_rows = x.len() / nf;
    let mut out = vec![0.0; n_rows * width];
    let per_thread = n_rows.div_ceil(threads.max(1)).max(1);
    let results: Vec<Result<(), (usize, ShapError)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = x
            .chunks(per_thread * nf)
            .zip(out.chunks_mut(per_thread * width))
            .enumerate()
            .map(|(block, (rows, outs))| {
                let (init, explain) = (&init, &explain);
                scope.spawn(move || {
                    let first = block * per_thread;
                    let mut state = init().map_err(|e| (first, e))?;
                    for (i, (row, o)) in rows
                        .chunks_exact(nf)
                        .zip(outs.chunks_exact_mut(width))
                        .enumerate()
                    {
                        explain(&mut state, row, o).map_err(|e| (first + i, e))?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or(Err((0, ShapError::Options("an explainer thread panicked"))))
            })
            .collect()
    });
    results.into_iter().collect::<Result<(), _>>()?;
    Ok(out)
}

/// Opened before the work starts, so that a wrong --out path fails at once.
fn open_output(path: &Path) -> Result<Box<dyn Write>, Failure> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(std::io::stdout().lock()));
    }
    match std::fs::File::create(path) {
        Ok(file) => Ok(Box::new(file)),
        Err(e) => Err(Failure::cant_create(format!(
            "{}: cannot write: {e}",
            path.display()
        ))),
    }
}

fn write_output(
    sink: Box<dyn Write>,
    path: &Path,
    surrogate: &Surrogate,
    attributions: &[f64],
    nf: usize,
) -> Result<(), Failure> {
    let name = path.display();
    let cant =
        |e: &dyn std::fmt::Display| Failure::cant_create(format!("{name}: cannot write: {e}"));
    let mut writer = csv::Writer::from_writer(std::io::BufWriter::with_capacity(1 << 16, sink));
    let header = ["base_value", "prediction"]
        .into_iter()
        .chain(surrogate.schema().names());
    writer.write_record(header).map_err(|e| cant(&e))?;
    // `Display` of an f64 prints the shortest decimal that reads back as the same
    // number, so sums recomputed from the file match the explainer's to the last bit.
    for row in attributions.chunks_exact(nf.max(1) + 2) {
        writer
            .write_record(row.iter().map(f64::to_string))
            .map_err(|e| cant(&e))?;
    }
    writer.flush().map_err(|e| cant(&e))?;
    Ok(())
}
