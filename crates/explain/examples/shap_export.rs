//! Bench helper for `bench/shap_compare.py`: writes the benchmark's synthetic ensemble,
//! rows and background to a directory, times this crate's TreeSHAP on them (single
//! thread), and writes our attributions for the comparison.
//!
//! `cargo run --release -p sidelight-explain --example shap_export -- DIR [ROWS]`
//!
//! Files: `ensemble.json` (`base_offset`, `n_features`, `trees`: arrays in node order as
//! in `Tree`), `rows.csv`, `background.csv` (no header; empty field = missing),
//! `ours_path.csv`, `ours_interventional.csv` (base value, then one column per feature),
//! and `ours_timing.json` (rows per second for each method).

use std::fmt::Write as _;
use std::time::Instant;

use sidelight_explain::shap::{InterventionalExplainer, TreeExplainer, synth, tree_shap_reference};

fn csv(rows: &[Vec<f64>]) -> String {
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .map(|v| {
                if v.is_nan() {
                    String::new()
                } else {
                    format!("{v:?}")
                }
            })
            .collect();
        let _ = writeln!(out, "{}", cells.join(","));
    }
    out
}

/// Explains rows in rounds until `min_secs` have passed; returns rows per second and
/// the first round's attributions (base value first).
fn time<F: FnMut(&[f64]) -> (f64, Vec<f64>)>(
    rows: &[Vec<f64>],
    min_secs: f64,
    mut f: F,
) -> (f64, Vec<Vec<f64>>) {
    let mut first = Vec::new();
    let mut done = 0usize;
    let start = Instant::now();
    loop {
        for row in rows {
            let (base, values) = f(row);
            if first.len() < rows.len() {
                let mut out = vec![base];
                out.extend(values);
                first.push(out);
            }
            done += 1;
        }
        let secs = start.elapsed().as_secs_f64();
        if secs >= min_secs {
            return (done as f64 / secs, first);
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().ok_or("usage: shap_export DIR [ROWS]")?);
    let n_rows: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1000);
    std::fs::create_dir_all(&dir)?;

    // The same ensemble, rows and background as `benches/shap.rs`.
    let ensemble = synth::random_ensemble(1, 100, 6, 20, 2_000);
    let rows = synth::random_rows(2, n_rows, 20, 0.05);
    let background = synth::random_rows(3, 100, 20, 0.05);

    std::fs::write(dir.join("ensemble.json"), serde_json::to_string(&ensemble)?)?;
    std::fs::write(dir.join("rows.csv"), csv(&rows))?;
    std::fs::write(dir.join("background.csv"), csv(&background))?;

    let fast = TreeExplainer::new(&ensemble)?;
    let (fast_rps, fast_out) = time(&rows, 2.0, |x| {
        let a = fast.explain(x).unwrap_or_else(|e| panic!("{e}"));
        (a.base_value, a.values)
    });
    let (ref_rps, ref_out) = time(&rows, 2.0, |x| {
        let a = tree_shap_reference(&ensemble, x).unwrap_or_else(|e| panic!("{e}"));
        (a.base_value, a.values)
    });
    let worst = fast_out
        .iter()
        .zip(&ref_out)
        .flat_map(|(a, b)| a.iter().zip(b).map(|(p, q)| (p - q).abs()))
        .fold(0.0, f64::max);
    let inter = InterventionalExplainer::new(&ensemble, &background)?;
    let inter_rows = &rows[..rows.len().min(200)];
    let (inter_rps, inter_out) = time(inter_rows, 2.0, |x| {
        let a = inter.explain(x).unwrap_or_else(|e| panic!("{e}"));
        (a.base_value, a.values)
    });
    std::fs::write(dir.join("ours_path.csv"), csv(&fast_out))?;
    std::fs::write(dir.join("ours_interventional.csv"), csv(&inter_out))?;
    let timing = serde_json::json!({
        "path_dependent_fast_rows_per_s": fast_rps,
        "path_dependent_reference_rows_per_s": ref_rps,
        "interventional_rows_per_s": inter_rps,
        "fast_vs_reference_max_abs_diff": worst,
        "table_bytes": fast.table_bytes(),
    });
    std::fs::write(
        dir.join("ours_timing.json"),
        serde_json::to_string_pretty(&timing)?,
    )?;
    println!("{timing:#}");
    Ok(())
}
