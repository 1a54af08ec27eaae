//! `sidelight explain --probe ID`: asks a running proxy to check the surrogate's
//! explanation of a recent request against the real model (KernelSHAP through the admin
//! API, `POST /api/v1/probe/{id}`), and prints how far the two agree.
//!
//! Exit status: 0 when a report was produced (whatever its verdict), 1 when there is none
//! (unknown id, proxy unreachable, the model failed a call).

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde_json::Value;

#[derive(Args)]
pub(crate) struct ExplainArgs {
    /// The request to check: its x-request-id (the id Sidelight returned with it). The
    /// proxy keeps the most recent explained requests only.
    #[arg(long, value_name = "REQUEST_ID")]
    probe: String,
    /// The proxy's admin address.
    #[arg(
        long,
        value_name = "URL",
        default_value = "http://127.0.0.1:9100",
        env = "SIDELIGHT_ADMIN"
    )]
    admin: String,
    /// Which row of a batch request to check.
    #[arg(long, default_value_t = 0, value_name = "N")]
    row: usize,
    /// Most calls the check may make to the model (1 to 10000).
    #[arg(long, default_value_t = 200, value_name = "N")]
    max_calls: usize,
    /// Background rows from the training window (1 to 200; fewer if the budget is
    /// tight).
    #[arg(long, value_name = "N")]
    background: Option<usize>,
    /// Print the report as the admin API returns it (JSON) instead of a table.
    #[arg(long)]
    json: bool,
    /// How long to wait for the report, in seconds.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    timeout: u64,
    #[command(flatten)]
    token: crate::token::AdminToken,
}

pub(crate) fn run(args: ExplainArgs) -> ExitCode {
    let mut url = format!(
        "{}/api/v1/probe/{}?row={}&max_calls={}",
        args.admin.trim_end_matches('/'),
        encode(&args.probe),
        args.row,
        args.max_calls
    );
    if let Some(background) = args.background {
        url.push_str(&format!("&background={background}"));
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("sidelight: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let answer = args.token.with_headers(|headers| {
        runtime.block_on(sidelight_proxy::admin_post(
            &url,
            headers,
            Duration::from_secs(args.timeout),
        ))
    });
    let (status, body) = match answer {
        Ok(answer) => answer,
        Err(error) => {
            eprintln!("sidelight: probe check failed: {error}");
            return ExitCode::FAILURE;
        }
    };
    let json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    if status != 200 {
        let message = json["error"]["message"].as_str().unwrap_or(body.trim());
        let code = json["error"]["code"].as_str().unwrap_or("error");
        eprintln!(
            "sidelight: probe check of {:?} failed ({status} {code}): {message}",
            args.probe
        );
        if let Some(hint) = args.token.hint(status) {
            eprintln!("sidelight: {hint}");
        }
        return ExitCode::FAILURE;
    }
    if args.json {
        println!("{body}");
    } else if json.is_object() {
        print!("{}", render(&json));
    } else {
        eprintln!("sidelight: the admin API answered something that is not a report");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Percent-encodes everything but RFC 3986 unreserved characters, so any id is one path
/// segment.
fn encode(id: &str) -> String {
    id.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The report as a table: features by the size of the model's (KernelSHAP) attribution.
fn render(report: &Value) -> String {
    let number = |v: &Value| {
        v.as_f64()
            .map_or_else(|| "-".to_owned(), |n| format!("{n:+.4}"))
    };
    let mut out = String::new();
    out.push_str(&format!(
        "Probe check of request {} (row {}, route {}): {}\n",
        report["request_id"].as_str().unwrap_or("?"),
        report["row"],
        report["route"].as_str().unwrap_or("?"),
        report["verdict"].as_str().unwrap_or("?"),
    ));
    out.push_str(&format!(
        "KernelSHAP against the model: {} calls (limit {}), {} coalitions{}, {} background rows from the training window; {} space\n\n",
        report["calls"],
        report["max_calls"],
        report["coalitions"],
        if report["exact"].as_bool() == Some(true) {
            " (all of them: exact)"
        } else {
            " (sampled)"
        },
        report["background"]["rows"],
        report["space"].as_str().unwrap_or("output"),
    ));
    let empty = Vec::new();
    let kernel = report["kernel"]["attributions"]
        .as_array()
        .unwrap_or(&empty);
    let surrogate = report["surrogate"]["attributions"]
        .as_array()
        .unwrap_or(&empty);
    let mut rows: Vec<(String, f64, f64)> = kernel
        .iter()
        .map(|k| {
            let name = k["feature"].as_str().unwrap_or("?").to_owned();
            let s = surrogate
                .iter()
                .find(|s| s["feature"] == k["feature"])
                .and_then(|s| s["contribution"].as_f64())
                .unwrap_or(f64::NAN);
            (name, k["contribution"].as_f64().unwrap_or(f64::NAN), s)
        })
        .collect();
    rows.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
    let width = rows
        .iter()
        .map(|r| r.0.chars().count())
        .chain([10])
        .max()
        .unwrap_or(10);
    out.push_str(&format!(
        "  {:<width$}  {:>10}  {:>10}  {:>10}\n",
        "feature", "kernel", "surrogate", "difference"
    ));
    for (name, k, s) in &rows {
        out.push_str(&format!(
            "  {:<width$}  {:>+10.4}  {:>+10.4}  {:>10.4}\n",
            name,
            k,
            s,
            (k - s).abs()
        ));
    }
    out.push_str(&format!(
        "  {:<width$}  {:>10}  {:>10}\n",
        "base value",
        number(&report["kernel"]["base_value"]),
        number(&report["surrogate"]["base_value"]),
    ));
    out.push_str(&format!(
        "  {:<width$}  {:>10}  {:>10}\n\n",
        "prediction",
        number(&report["kernel"]["prediction"]),
        number(&report["surrogate"]["prediction"]),
    ));
    let thresholds = &report["thresholds"];
    out.push_str(&format!(
        "Rank correlation (Spearman): {}   (trustworthy needs at least {})\n",
        report["rank_correlation"]
            .as_f64()
            .map_or_else(|| "n/a".to_owned(), |r| format!("{r:.3}")),
        thresholds["min_rank_correlation"],
    ));
    let largest = &report["largest_difference"];
    if let Some(feature) = largest["feature"].as_str() {
        out.push_str(&format!(
            "Largest difference: {feature}, {:.4} (kernel {}, surrogate {}); trustworthy needs at most {}% of the largest kernel attribution\n",
            largest["difference"].as_f64().unwrap_or(f64::NAN),
            number(&largest["kernel"]),
            number(&largest["surrogate"]),
            thresholds["max_relative_difference"]
                .as_f64()
                .map_or(f64::NAN, |t| t * 100.0),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_become_one_path_segment() {
        assert_eq!(encode("abc-1_2.3~"), "abc-1_2.3~");
        assert_eq!(encode("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn the_table_lists_features_by_kernel_size() {
        let report = serde_json::json!({
            "request_id": "r1", "row": 0, "route": "m", "verdict": "doubtful",
            "calls": 7, "max_calls": 200, "coalitions": 14, "exact": true,
            "background": {"rows": 20}, "space": "output",
            "kernel": {"base_value": 1.0, "prediction": 2.0, "attributions": [
                {"feature": "a", "contribution": 0.1}, {"feature": "b", "contribution": -0.9}]},
            "surrogate": {"base_value": 1.1, "prediction": 1.9, "attributions": [
                {"feature": "a", "contribution": 0.2}, {"feature": "b", "contribution": -0.4}]},
            "rank_correlation": 1.0,
            "largest_difference": {"feature": "b", "kernel": -0.9, "surrogate": -0.4, "difference": 0.5},
            "thresholds": {"min_rank_correlation": 0.8, "max_relative_difference": 0.25},
        });
        let text = render(&report);
        assert!(
            text.starts_with("Probe check of request r1 (row 0, route m): doubtful"),
            "{text}"
        );
        let b = text.find("\n  b ").unwrap_or(usize::MAX);
        let a = text.find("\n  a ").unwrap_or(0);
        assert!(b < a, "{text}");
        assert!(text.contains("Largest difference: b, 0.5000"), "{text}");
    }
}
