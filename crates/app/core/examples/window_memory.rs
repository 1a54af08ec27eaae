//! How much heap a monitoring window takes per row: fills a window of German-credit-like
//! rows (7 integer features, 13 categorical ones, 20 attributions, two protected
//! attributes) and reads the process's resident memory before and after.
//!
//!     cargo run --release -p sidelight-core --example window_memory -- 1000000

use std::sync::Arc;

use sidelight_config::{MonitorConfig, ProtectedConfig};
use sidelight_core::monitor::{Observation, RouteMonitor};
use sidelight_explain::Value;

// As the `sidelight` binary: freed memory goes back to the system.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The process's resident memory, in bytes (Linux).
fn rss() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<usize>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

fn main() {
    let rows: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let names: Vec<String> = (0..20).map(|j| format!("f{j}")).collect();
    let config = MonitorConfig {
        window_rows: rows,
        protected: vec![
            ProtectedConfig {
                feature: "f0".to_owned(),
                privileged: ">=25".to_owned(),
                unprivileged: vec!["<25".to_owned()],
                bands: vec![25.0],
                header: None,
                reported: false,
            },
            ProtectedConfig {
                feature: "f7".to_owned(),
                privileged: "A93".to_owned(),
                unprivileged: vec!["A92".to_owned()],
                bands: Vec::new(),
                header: None,
                reported: false,
            },
        ],
        ..MonitorConfig::default()
    };
    let monitor = RouteMonitor::new("credit", config);
    let before = rss();
    let started = std::time::Instant::now();
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for chunk in 0..rows.div_ceil(100) {
        let batch: Vec<Observation> = (0..100.min(rows - chunk * 100))
            .map(|_| {
                let row: Vec<Value> = (0..20)
                    .map(|j| {
                        if j < 7 {
                            Value::Number((next() % (20 + 500 * j as u64)) as f64)
                        } else {
                            Value::Text(format!("A{}", 90 + next() % (3 + j as u64 % 5)))
                        }
                    })
                    .collect();
                Observation {
                    row: Arc::from(row),
                    prediction: (next() % 10_000) as f64 / 10_000.0,
                    favourable: next() % 3 != 0,
                    attributions: (0..20)
                        .map(|_| (next() % 2000) as f64 / 1e4 - 0.1)
                        .collect(),
                    threshold: 0.5,
                    ..Observation::default()
                }
            })
            .collect();
        monitor.push(&names, batch.into_iter());
    }
    let filled = started.elapsed();
    let collecting = rss() - before;
    let _ = monitor.summary(0, true);
    let with_reference = rss() - before;
    let started = std::time::Instant::now();
    let summary = monitor.summary(0, true);
    let summary_took = started.elapsed();
    let started = std::time::Instant::now();
    let proxies = monitor.proxies(3);
    let proxies_took = started.elapsed();
    println!(
        "window of {rows} rows x 20 features: {:.1} MiB resident ({:.0} bytes per row), \
         filled in {:.2} s ({:.2} µs per row); summaries copied out in {:.1} ms; proxies \
         swept in {:.0} ms ({} found); {} rows in the summary",
        with_reference as f64 / 1_048_576.0,
        with_reference as f64 / rows as f64,
        filled.as_secs_f64(),
        filled.as_secs_f64() * 1e6 / rows as f64,
        summary_took.as_secs_f64() * 1e3,
        proxies_took.as_secs_f64() * 1e3,
        proxies.len(),
        summary.map_or(0, |s| s.window_rows),
    );
    println!(
        "while the first rows were still kept for the reference: {:.1} MiB",
        collecting as f64 / 1_048_576.0
    );
}
