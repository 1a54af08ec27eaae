//! The fault matrix: one table, one row per thing that goes wrong around a running
//! proxy (the upstream, the audit store, the config, the process), each row with the
//! status a client gets, the metric that counts it and the log line that tells an
//! operator. Every row runs against the real binary on an explained route with a `sync`
//! audit log, and after each one every answer that carried a record id must have its
//! record in the store: an acknowledged record is never lost.
//!
//! The book's chapter `docs/src/fault-matrix.md` shows this table, rendered from it:
//! `the_book_fault_matrix_is_current` fails when the two differ, and rewrites the chapter's
//! table when run with `SIDELIGHT_BLESS=1`.
//!
//! Deeper variants live with their subsystems and are not repeated here:
//! `tests/tests/proxy.rs` (connect timeout to a black hole, 512 MiB streamed bodies,
//! SIGTERM grace), `tests/tests/audit.rs` (a real tmpfs filling up, a store on a volume
//! remounted read-only after it was written, kill -9 under load, async shedding) and
//! `tests/tests/admin_auth.rs` (reloads of the token list).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Method;
use http_body_util::BodyExt;
use nix::sys::signal::Signal;
use sidelight_audit::AuditStore;
use sidelight_e2e::faulty::{Behaviour, FaultyUpstream, HUGE_PREFIX};
use sidelight_e2e::live::kserve_body;
use sidelight_e2e::*;

const PREDICT: &str = "/v1/models/m:predict";
/// `upstream.request_timeout` of every row; the slow upstream sleeps well past it.
const TIMEOUT_MS: u64 = 400;
/// `routes.inspect_limit_bytes`: a response past it is passed through unexplained.
const INSPECT_LIMIT: u64 = 64 * 1024;
/// The huge upstream body; the proxy's memory may grow by at most a quarter of it.
const HUGE: u64 = 256 << 20;

/// What goes wrong.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// The upstream misbehaves on one request.
    Upstream(Behaviour),
    /// Nothing listens at the upstream's address.
    UpstreamDown,
    /// The upstream goes down and comes back, twice.
    Flapping,
    /// The store reaches `audit.max_bytes` (`on_store_failure = "fail_closed"`).
    StoreFull,
    /// Another process holds the store's write lock (`fail_open`).
    StoreLocked,
    /// The store's directory is on a read-only mount at start-up.
    StoreReadOnly,
    /// `POST /api/v1/config/reload` of a file with an invalid key.
    BadReload,
    /// SIGTERM while eight clients send requests.
    SigtermUnderLoad,
}

/// What a client sees.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    /// An HTTP status, and Sidelight's error code when it answered itself.
    Http(u16, Option<&'static str>),
    /// The process ends with this exit code.
    Exit(i32),
}

/// How much a metric series must grow while the fault happens.
#[derive(Debug, Clone, Copy)]
enum Grows {
    By(f64),
    AtLeast(f64),
}

struct Case {
    name: &'static str,
    fault: Fault,
    outcome: Outcome,
    /// The series (name and labels, as /metrics prints them) and its growth; `None` when
    /// the process is gone before it could be read.
    metric: Option<(&'static str, Grows)>,
    /// A substring of the proxy's log (stderr); empty: the row must log no
    /// [`UPSTREAM_FAILURE`].
    log: &'static str,
    /// The rest of what the client gets, as the row's own checks see it; the book's
    /// table prints it after `outcome`.
    also: &'static str,
}

/// The log line of a failed upstream call.
const UPSTREAM_FAILURE: &str = "upstream failure";

fn matrix() -> Vec<Case> {
    use Behaviour::*;
    use Fault::*;
    use Outcome::*;
    let unreachable = "sidelight_proxy_errors_total{route=\"m\",code=\"upstream_unreachable\"}";
    let reset = "sidelight_proxy_errors_total{route=\"m\",code=\"upstream_reset\"}";
    vec![
        Case {
            name: "upstream down (nothing listens)",
            fault: UpstreamDown,
            outcome: Http(502, Some("upstream_unreachable")),
            metric: Some((unreachable, Grows::By(1.0))),
            log: UPSTREAM_FAILURE,
            also: "",
        },
        Case {
            name: "upstream refusing (resets the connection unanswered)",
            fault: Upstream(Refuse),
            outcome: Http(502, Some("upstream_reset")),
            metric: Some((reset, Grows::By(1.0))),
            log: UPSTREAM_FAILURE,
            also: "",
        },
        Case {
            name: "upstream slow past `request_timeout`",
            fault: Upstream(Slow(Duration::from_millis(TIMEOUT_MS * 5))),
            outcome: Http(504, Some("upstream_timeout")),
            metric: Some((
                "sidelight_proxy_errors_total{route=\"m\",code=\"upstream_timeout\"}",
                Grows::By(1.0),
            )),
            log: UPSTREAM_FAILURE,
            also: "",
        },
        Case {
            name: "upstream resets mid-body",
            fault: Upstream(ResetMidBody),
            outcome: Http(502, Some("upstream_reset")),
            metric: Some((reset, Grows::By(1.0))),
            log: UPSTREAM_FAILURE,
            also: "",
        },
        Case {
            name: "upstream answers garbage",
            fault: Upstream(Garbage),
            outcome: Http(502, Some("upstream_reset")),
            metric: Some((reset, Grows::By(1.0))),
            log: UPSTREAM_FAILURE,
            also: "",
        },
        Case {
            name: "upstream answers 256 MiB of JSON",
            fault: Upstream(Huge(HUGE)),
            outcome: Http(200, None),
            metric: Some((
                "sidelight_body_bytes_total{route=\"m\",direction=\"response\"}",
                Grows::AtLeast(HUGE as f64),
            )),
            // Not an error: nothing is logged as one (checked below).
            log: "",
            also: ", the whole body, unexplained (`x-sidelight-status: response_over_limit`), recorded; proxy memory grows by at most 64 MiB",
        },
        Case {
            name: "upstream flapping (down, up, twice)",
            fault: Flapping,
            outcome: Http(502, Some("upstream_unreachable")),
            metric: Some((unreachable, Grows::By(2.0))),
            log: UPSTREAM_FAILURE,
            also: " while down, 200 when up",
        },
        Case {
            name: "store full (`audit.max_bytes`, `fail_closed`)",
            fault: StoreFull,
            outcome: Http(503, Some("audit_unavailable")),
            metric: Some((
                "sidelight_audit_failures_total{kind=\"full\"}",
                Grows::By(1.0),
            )),
            log: "audit record not stored",
            also: "",
        },
        Case {
            name: "store locked by another process (`fail_open`)",
            fault: StoreLocked,
            outcome: Http(200, None),
            metric: Some((
                "sidelight_audit_failures_total{kind=\"locked\"}",
                Grows::By(1.0),
            )),
            log: "audit record not stored",
            also: " without a record id",
        },
        Case {
            name: "store on a read-only mount at start-up",
            fault: StoreReadOnly,
            outcome: Exit(64),
            metric: None,
            log: "audit.path",
            also: "",
        },
        Case {
            name: "config reload with a bad file",
            fault: BadReload,
            outcome: Http(400, Some("invalid_config")),
            metric: Some((
                "sidelight_requests_total{route=\"m\",method=\"POST\",status=\"200\"}",
                Grows::By(1.0),
            )),
            log: "config reload refused; the running config stays",
            also: " naming `routes[0].inspect_limit_bytes`; the next request is served under the running config",
        },
        Case {
            name: "SIGTERM under 8 clients",
            fault: SigtermUnderLoad,
            outcome: Exit(0),
            metric: None,
            log: "shutting down",
            also: "; each client a complete 200 or a refused connection, never a cut body",
        },
    ]
}

/// What a row's run saw.
struct Observed {
    /// What the faulty request(s) got; every one must match the row.
    outcomes: Vec<Outcome>,
    metric_growth: Option<f64>,
    /// The /metrics text after the fault, for the failure message.
    metrics: String,
    logs: String,
    /// Record ids the clients were given.
    acknowledged: Vec<String>,
    db: PathBuf,
    /// Further failures found by the row's own checks (recovery, truncation, memory).
    problems: Vec<String>,
    /// Holds the row's state directory (and store) until it has been checked.
    state: tempfile::TempDir,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_fault_matrix() {
    let mut failures = Vec::new();
    for case in matrix() {
        // Each row in a task of its own, so that a panic fails the row, not the matrix.
        let series = case.metric.map(|(s, _)| s);
        let observed = match tokio::spawn(run(case.fault, series)).await {
            Ok(observed) => observed,
            Err(panic) => {
                failures.push(format!("{}: panicked: {panic}", case.name));
                continue;
            }
        };
        failures.extend(
            check(&case, observed)
                .into_iter()
                .map(|p| format!("{}: {p}", case.name)),
        );
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// The book's chapter on the fault matrix, from this crate's directory.
const BOOK_CHAPTER: &str = "../docs/src/fault-matrix.md";
const BOOK_BEGIN: &str = "<!-- generated by tests/tests/faults.rs: begin -->";
const BOOK_END: &str = "<!-- generated by tests/tests/faults.rs: end -->";

/// The chapter's table is `matrix()` rendered: no server is started.
#[test]
fn the_book_fault_matrix_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(BOOK_CHAPTER);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let (Some(begin), Some(end)) = (text.find(BOOK_BEGIN), text.find(BOOK_END)) else {
        panic!(
            "{} lacks the lines `{BOOK_BEGIN}` and `{BOOK_END}` around the table",
            path.display()
        );
    };
    let start = begin + BOOK_BEGIN.len();
    assert!(
        start <= end,
        "{}: the end marker comes first",
        path.display()
    );
    let wanted = format!("\n{}", markdown(&matrix()));
    if text[start..end] == wanted {
        return;
    }
    if std::env::var_os("SIDELIGHT_BLESS").is_some() {
        let blessed = format!("{}{wanted}{}", &text[..start], &text[end..]);
        std::fs::write(&path, blessed)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        return;
    }
    panic!(
        "{} does not show the table of `matrix()` in tests/tests/faults.rs; run \
         `SIDELIGHT_BLESS=1 cargo test -p sidelight-e2e --test faults the_book_fault_matrix` \
         to rewrite it.\n--- in the book:{}--- from the table:{wanted}",
        path.display(),
        &text[start..end]
    );
}

/// The matrix as a Markdown table, one row per case.
fn markdown(cases: &[Case]) -> String {
    let mut out =
        String::from("| case | client gets | metric | log contains |\n|---|---|---|---|\n");
    for case in cases {
        let gets = match case.outcome {
            Outcome::Http(status, Some(code)) => format!("{status} `{code}`"),
            Outcome::Http(status, None) => status.to_string(),
            Outcome::Exit(code) => format!("exit {code}"),
        };
        let metric = match case.metric {
            Some((series, Grows::By(n))) => format!("`{series}` +{}", amount(n)),
            Some((series, Grows::AtLeast(n))) => format!("`{series}` +{} or more", amount(n)),
            None => "—".to_owned(),
        };
        let log = match case.log {
            "" => format!("none (no `{UPSTREAM_FAILURE}`)"),
            log => format!("`{log}`"),
        };
        writeln!(
            out,
            "| {} | {gets}{} | {metric} | {log} |",
            case.name, case.also
        )
        .unwrap();
    }
    out
}

/// A metric's growth: whole MiB as such (byte counters), other amounts as they are.
fn amount(n: f64) -> String {
    const MIB: f64 = (1u64 << 20) as f64;
    if n >= MIB && n % MIB == 0.0 {
        format!("{} MiB", n / MIB)
    } else {
        n.to_string()
    }
}

fn check(case: &Case, observed: Observed) -> Vec<String> {
    let mut problems = observed.problems;
    if observed.outcomes.is_empty() {
        problems.push("no outcome observed".to_owned());
    }
    for outcome in &observed.outcomes {
        if *outcome != case.outcome {
            problems.push(format!("got {outcome:?}, expected {:?}", case.outcome));
        }
    }
    let family = |series: &str| -> String {
        let name = series.split('{').next().unwrap_or(series);
        observed
            .metrics
            .lines()
            .filter(|l| l.starts_with(name))
            .collect::<Vec<_>>()
            .join("\n")
    };
    match (case.metric, observed.metric_growth) {
        (Some((series, Grows::By(n))), Some(grew)) if grew != n => {
            problems.push(format!(
                "{series} grew by {grew}, expected {n}:\n{}",
                family(series)
            ));
        }
        (Some((series, Grows::AtLeast(n))), Some(grew)) if grew < n => {
            problems.push(format!(
                "{series} grew by {grew}, expected at least {n}:\n{}",
                family(series)
            ));
        }
        (Some((series, _)), None) => problems.push(format!("{series} not read")),
        _ => {}
    }
    if case.log.is_empty() {
        if observed.logs.contains(UPSTREAM_FAILURE) {
            problems.push(format!("logged as a failure: {}", observed.logs));
        }
    } else if !observed.logs.contains(case.log) {
        problems.push(format!("no `{}` in the log: {}", case.log, observed.logs));
    }
    if !observed.acknowledged.is_empty() {
        let store = sidelight_audit::SqliteStore::open(
            &observed.db,
            sidelight_audit::SqliteConfig::new(
                sidelight_audit::Keys::parse(AUDIT_KEY_HEX.as_bytes(), "test").unwrap(),
            ),
        )
        .unwrap();
        for id in &observed.acknowledged {
            if !matches!(store.get(id), Ok(Some(_))) {
                problems.push(format!("acknowledged record {id} is not in the store"));
            }
        }
    }
    problems
}

/// The config of every row: an explained KServe v1 route `m` with a `sync` audit log,
/// `audit_extra` appended to `[audit]`.
fn config(upstream: &str, state: &Path, db: &Path, audit_extra: &str) -> String {
    format!(
        "{}\n[state]\ndir = \"{}\"\n\
         [audit]\npath = \"{}\"\ndurability = \"sync\"\n{audit_extra}\n\
         [[routes]]\nname = \"m\"\npath_prefix = \"/v1/models/m\"\n\
         inspect_limit_bytes = {INSPECT_LIMIT}\n\
         [routes.explain]\nprotocol = \"kserve_v1\"\noutput = \"score\"\n\
         [routes.explain.surrogate]\nwarm_up_rows = 1000\nretrain_every_rows = 100000\n\
         retrain_interval = \"1h\"\n",
        config_for(
            upstream,
            "shutdown_grace = \"10s\"",
            &format!("request_timeout = \"{TIMEOUT_MS}ms\""),
        ),
        state.display(),
        db.display()
    )
}

fn start(config: &str) -> Proxy {
    Proxy::start_with_env(config, &[("SIDELIGHT_AUDIT_KEY", AUDIT_KEY_HEX)])
}

/// The value of one series in /metrics, 0 when it is not there yet.
async fn metric(proxy: &Proxy, series: &str) -> f64 {
    metric_value(&metrics_text(proxy).await, series).unwrap_or(0.0)
}

/// A prediction request; its outcome and the record id it carried.
async fn predict(proxy: &Proxy, row: usize) -> (Outcome, Option<String>, Answer) {
    let answer = send(
        &client(),
        Method::POST,
        &proxy.url(PREDICT),
        &[("content-type", "application/json")],
        full(kserve_body(&[row])),
    )
    .await;
    (outcome(&answer), record_id(&answer), answer)
}

fn outcome(answer: &Answer) -> Outcome {
    let code = match answer.status.as_u16() {
        200 => None,
        _ => {
            let code = answer.error_code();
            CODES.iter().copied().find(|c| *c == code)
        }
    };
    Outcome::Http(answer.status.as_u16(), code)
}

/// The error codes a row can expect, as `'static` strings for [`Outcome`].
const CODES: &[&str] = &[
    "upstream_unreachable",
    "upstream_reset",
    "upstream_timeout",
    "audit_unavailable",
    "invalid_config",
];

fn record_id(answer: &Answer) -> Option<String> {
    answer
        .headers
        .get("x-sidelight-record-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Runs one row: `series` is the metric it watches.
async fn run(fault: Fault, series: Option<&'static str>) -> Observed {
    let state = tempfile::tempdir().unwrap();
    let db = state.path().join("audit.db");
    let upstream = FaultyUpstream::start(Behaviour::Healthy).await;
    let mut observed = Observed {
        outcomes: Vec::new(),
        metric_growth: None,
        metrics: String::new(),
        logs: String::new(),
        acknowledged: Vec::new(),
        db: db.clone(),
        problems: Vec::new(),
        state,
    };
    let dir = observed.state.path().to_owned();

    match fault {
        Fault::StoreReadOnly => {
            read_only(&mut observed, &upstream, &dir);
            return observed;
        }
        Fault::SigtermUnderLoad => {
            sigterm_under_load(&mut observed, &upstream, &dir, &db).await;
            return observed;
        }
        _ => {}
    }

    let extra = match fault {
        Fault::StoreFull => "max_bytes = 65536\non_store_failure = \"fail_closed\"",
        Fault::StoreLocked => "lock_timeout = \"200ms\"\non_store_failure = \"fail_open\"",
        _ => "",
    };
    let proxy = start(&config(&upstream.url(), &dir, &db, extra));
    // A served, recorded request first: the proxy works before the fault.
    let (first, id, _) = predict(&proxy, 0).await;
    if first != Outcome::Http(200, None) || id.is_none() {
        observed
            .problems
            .push(format!("before the fault: {first:?}"));
    }
    observed.acknowledged.extend(id);
    let before = match series {
        Some(s) => metric(&proxy, s).await,
        None => 0.0,
    };
    let mut recovered = true;

    match fault {
        Fault::Upstream(Behaviour::Huge(total)) => {
            upstream.set(Behaviour::Huge(total));
            let baseline = proxy.peak_rss_kib();
            huge(&proxy, total, &mut observed).await;
            let growth_mib = proxy.peak_rss_kib().saturating_sub(baseline) / 1024;
            if growth_mib > (total >> 20) / 4 {
                observed.problems.push(format!(
                    "memory grew by {growth_mib} MiB passing {} MiB through",
                    total >> 20
                ));
            }
            upstream.set(Behaviour::Healthy);
        }
        Fault::Upstream(behaviour) => {
            upstream.set(behaviour);
            let (outcome, id, _) = predict(&proxy, 1).await;
            observed.outcomes.push(outcome);
            observed.acknowledged.extend(id);
            upstream.set(Behaviour::Healthy);
        }
        Fault::UpstreamDown => {
            upstream.down();
            settle().await;
            let (outcome, id, _) = predict(&proxy, 1).await;
            observed.outcomes.push(outcome);
            observed.acknowledged.extend(id);
            upstream.up().await;
        }
        Fault::Flapping => {
            for i in 0..2 {
                upstream.down();
                settle().await;
                let (outcome, id, _) = predict(&proxy, 10 + i).await;
                observed.outcomes.push(outcome);
                observed.acknowledged.extend(id);
                upstream.up().await;
                settle().await;
                let (back, id, _) = predict(&proxy, 20 + i).await;
                if back != Outcome::Http(200, None) {
                    observed.problems.push(format!("up again: {back:?}"));
                }
                observed.acknowledged.extend(id);
            }
        }
        Fault::StoreFull => {
            // Fail-closed: requests are served and recorded until the store is full,
            // then refused; the store stays full, so there is no recovery to check.
            recovered = false;
            for i in 0..5000 {
                let (outcome, id, _) = predict(&proxy, i).await;
                observed.acknowledged.extend(id);
                if outcome != Outcome::Http(200, None) {
                    observed.outcomes.push(outcome);
                    break;
                }
            }
        }
        Fault::StoreLocked => {
            let holder = rusqlite::Connection::open(&db).unwrap();
            holder.execute_batch("BEGIN IMMEDIATE").unwrap();
            let (outcome, id, _) = predict(&proxy, 1).await;
            observed.outcomes.push(outcome);
            // Fail-open: served, but without a record id, since none was stored.
            if let Some(id) = id {
                observed
                    .problems
                    .push(format!("record id {id} for an unstored record"));
            }
            holder.execute_batch("ROLLBACK").unwrap();
        }
        Fault::BadReload => {
            let good = std::fs::read_to_string(&proxy.config_path).unwrap();
            let bad = good.replace(
                &format!("inspect_limit_bytes = {INSPECT_LIMIT}"),
                "inspect_limit_bytes = 99999999999",
            );
            std::fs::write(&proxy.config_path, bad).unwrap();
            let answer = send(
                &client(),
                Method::POST,
                &proxy.admin_url("/api/v1/config/reload"),
                &[],
                empty(),
            )
            .await;
            observed.outcomes.push(outcome(&answer));
            let message = answer.json()["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if !message.contains("routes[0].inspect_limit_bytes") {
                observed
                    .problems
                    .push(format!("the message does not name the key: {message}"));
            }
            // The running config stays: the very next request is served and recorded
            // under it (the metric counts this one).
            let (served, id, _) = predict(&proxy, 1).await;
            if served != Outcome::Http(200, None) || id.is_none() {
                observed
                    .problems
                    .push(format!("after the reload: {served:?}"));
            }
            observed.acknowledged.extend(id);
        }
        Fault::StoreReadOnly | Fault::SigtermUnderLoad => unreachable!(),
    }
    if let Some(s) = series {
        observed.metric_growth = Some(metric(&proxy, s).await - before);
        observed.metrics =
            String::from_utf8_lossy(&get(&proxy.admin_url("/metrics")).await.body).into_owned();
    }
    if recovered {
        // Once the fault is gone, the next request is served and recorded.
        let (after, id, _) = predict(&proxy, 2).await;
        if after != Outcome::Http(200, None) || id.is_none() {
            observed
                .problems
                .push(format!("after the fault: {after:?}"));
        }
        observed.acknowledged.extend(id);
    }
    observed.logs = proxy.log_text();
    // Killed, not stopped: `sync` records must be in the store without a clean shutdown.
    drop(proxy);
    observed
}

/// Lets the proxy's pooled connections see that the upstream went away or came back.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(200)).await;
}

/// A huge JSON answer on the explained route: passed through whole and unexplained,
/// streamed rather than held, and still recorded.
async fn huge(proxy: &Proxy, total: u64, observed: &mut Observed) {
    let request = http::Request::post(proxy.url(PREDICT))
        .header("content-type", "application/json")
        .body(full(kserve_body(&[1])))
        .unwrap();
    let response = client().request(request).await.unwrap();
    let status = response.status().as_u16();
    observed.outcomes.push(Outcome::Http(status, None));
    let why = response
        .headers()
        .get("x-sidelight-status")
        .map(|v| v.to_str().unwrap_or_default().to_owned());
    if why.as_deref() != Some("response_over_limit") {
        observed.problems.push(format!(
            "x-sidelight-status: {why:?}, expected response_over_limit"
        ));
    }
    if let Some(id) = response.headers().get("x-sidelight-record-id") {
        observed.acknowledged.push(id.to_str().unwrap().to_owned());
    }
    let mut body = response.into_body();
    let (mut len, mut start, mut end) = (0u64, Vec::new(), Vec::new());
    while let Some(frame) = body.frame().await {
        let Some(data) = frame.unwrap().into_data().ok() else {
            continue;
        };
        if start.len() < HUGE_PREFIX.len() {
            start.extend_from_slice(&data[..data.len().min(HUGE_PREFIX.len() - start.len())]);
        }
        end = data[data.len().saturating_sub(2)..].to_vec();
        len += data.len() as u64;
    }
    if len != total || start != HUGE_PREFIX || end != b"\"}" {
        observed
            .problems
            .push(format!("body of {len} bytes, not the upstream's {total}"));
    }
}

/// A command prefix that mounts `dir` read-only in a mount namespace of its own, then
/// execs the program appended to it (as `tests/tests/audit.rs` does).
fn read_only_mount(dir: &Path) -> Vec<String> {
    in_mount_namespace(&format!(
        "mount --bind '{d}' '{d}' && mount -o remount,bind,ro '{d}'",
        d = dir.display()
    ))
}

fn read_only(observed: &mut Observed, upstream: &FaultyUpstream, dir: &Path) {
    let volume = dir.join("volume");
    std::fs::create_dir(&volume).unwrap();
    let db_on_volume = volume.join("audit.db");
    let config_file = dir.join("sidelight.toml");
    let (config, _) = with_test_token(&config(&upstream.url(), dir, &db_on_volume, ""));
    std::fs::write(&config_file, config).unwrap();
    let wrapper = read_only_mount(&volume);
    // A proxy that starts anyway would never exit on its own.
    let out = cli(["serve", "--config"])
        .arg(&config_file)
        .via(&wrapper)
        .env("SIDELIGHT_AUDIT_KEY", AUDIT_KEY_HEX)
        .timeout(Duration::from_secs(30))
        .run();
    observed
        .outcomes
        .push(Outcome::Exit(out.code.unwrap_or(-1)));
    observed.logs = out.stderr;
}

async fn sigterm_under_load(
    observed: &mut Observed,
    upstream: &FaultyUpstream,
    dir: &Path,
    db: &Path,
) {
    // Slow enough that requests are in flight when the signal comes.
    upstream.set(Behaviour::Slow(Duration::from_millis(30)));
    let proxy = Arc::new(start(&config(&upstream.url(), dir, db, "")));
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let problems = Arc::new(Mutex::new(Vec::new()));
    let mut clients = Vec::new();
    for c in 0..8 {
        let (proxy, acknowledged, problems) =
            (proxy.clone(), acknowledged.clone(), problems.clone());
        clients.push(tokio::spawn(async move {
            let client = client();
            for i in 0..10_000 {
                let request = http::Request::post(proxy.url(PREDICT))
                    .header("content-type", "application/json")
                    .body(full(kserve_body(&[c * 10_000 + i])))
                    .unwrap();
                // Refused or closed before an answer: the only acceptable failure.
                let Ok(response) = client.request(request).await else {
                    return;
                };
                let status = response.status();
                let id = response
                    .headers()
                    .get("x-sidelight-record-id")
                    .map(|v| v.to_str().unwrap().to_owned());
                let body = response.into_body().collect().await.map(|b| b.to_bytes());
                let complete = body.as_ref().is_ok_and(|b| {
                    serde_json::from_slice::<serde_json::Value>(b)
                        .is_ok_and(|v| v["predictions"].is_array())
                });
                if status != 200 || !complete {
                    problems.lock().unwrap().push(format!(
                        "a client got {status} with a {} body",
                        if complete { "complete" } else { "truncated" }
                    ));
                    return;
                }
                match id {
                    Some(id) => acknowledged.lock().unwrap().push(id),
                    None => problems
                        .lock()
                        .unwrap()
                        .push("a 200 without a record id".to_owned()),
                }
            }
        }));
    }
    while acknowledged.lock().unwrap().len() < 80 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    proxy.signal(Signal::SIGTERM);
    for c in clients {
        if let Err(panic) = c.await {
            problems
                .lock()
                .unwrap()
                .push(format!("a client panicked: {panic}"));
        }
    }
    let mut proxy = Arc::into_inner(proxy).expect("the clients hold no proxy any more");
    let status = proxy.wait_exit(Duration::from_secs(30));
    observed
        .outcomes
        .push(Outcome::Exit(status.and_then(|s| s.code()).unwrap_or(-1)));
    observed.logs = proxy.log_text();
    observed.acknowledged = acknowledged.lock().unwrap().clone();
    observed.problems.extend(problems.lock().unwrap().drain(..));
}
