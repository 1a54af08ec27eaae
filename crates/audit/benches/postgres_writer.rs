//! The group-commit writer over PostgreSQL, as a fleet of proxies drives it.
//!
//! - `postgres_async`: 1 and 2 writers at once (as 1 and 2 replicas), each its own
//!   `PostgresStore` with its own hash chain and its own `Writer` thread, each submitting
//!   10,000 realistic records (the same ≈2.4 KiB credit records as `--bench writer`,
//!   sealed) with `Durability::Async`, then `shutdown()`, which commits everything:
//!   records per second end to end, all writers together.
//! - `postgres_sync`: one thread submits `Durability::Sync` records one at a time and
//!   waits for each ack: one transaction and one WAL flush per record.
//!
//! The server: the one `SIDELIGHT_BENCH_POSTGRES_URL` names (a database the bench may
//! write to; it creates its tables there), or else a throwaway server started with
//! Debian's `postgresql` package (initdb + pg_ctl on a free loopback port in a temporary
//! directory, as the `postgresql` user when run as root) and removed afterwards. Either
//! way the figures include the server's fsync of the WAL on this machine's disk.
//!
//! Run: `cargo bench -p sidelight-audit --bench postgres_writer`.

// A failed set-up is a failed benchmark.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use criterion::{BatchSize, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use sidelight_audit::{Durability, PostgresConfig, PostgresStore, Record, Writer, WriterConfig};

// The allocator the `sidelight` binary runs with, so that the figures are the proxy's.
mod records;

use records::{keys, record};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Records per writer and run.
const RECORDS: usize = 10_000;
const URL_VARIABLE: &str = "SIDELIGHT_BENCH_POSTGRES_URL";

/// A throwaway PostgreSQL server, stopped (immediately: its data is thrown away) on drop.
struct Server {
    dir: tempfile::TempDir,
    bin: PathBuf,
    as_root: bool,
}

impl Server {
    fn start() -> (Server, String) {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin"))
            .filter(|b| b.join("initdb").exists())
            .max()
            .unwrap_or_else(|| {
                panic!(
                    "no PostgreSQL: set {URL_VARIABLE} to a database URL, or install Debian's \
                     `postgresql` package"
                )
            });
        let dir = tempfile::tempdir().unwrap();
        let as_root = std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
            .unwrap_or(false);
        if as_root {
            // initdb refuses root; the server's user must own the directory.
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success(), "chown to the postgres user failed");
        }
        let server = Server { dir, bin, as_root };
        let data = server.data();
        server.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        // The server's defaults otherwise: fsync and synchronous_commit on, as in
        // production; the store sets synchronous_commit = on itself too.
        let options = format!(
            "-c port={port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='{}'",
            server.dir.path().display()
        );
        let log = server.dir.path().join("server.log").display().to_string();
        server.run(
            "pg_ctl",
            &["start", "-w", "-D", &data, "-l", &log, "-o", &options],
        );
        (
            server,
            format!("postgresql://postgres@127.0.0.1:{port}/postgres?sslmode=disable"),
        )
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run(&self, program: &str, args: &[&str]) {
        let path = self.bin.join(program);
        let mut command = if self.as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        let out = command
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{program} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let data = self.data();
        let path: &Path = &self.bin;
        let _ = if self.as_root {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(path.join("pg_ctl"))
                .args(["stop", "-m", "immediate", "-D", &data])
                .output()
        } else {
            Command::new(path.join("pg_ctl"))
                .args(["stop", "-m", "immediate", "-D", &data])
                .output()
        };
    }
}

/// The database to write to, and the throwaway server holding it (if one was started).
fn database() -> (Option<Server>, String) {
    match std::env::var(URL_VARIABLE) {
        Ok(url) if !url.is_empty() => (None, url),
        _ => {
            let (server, url) = Server::start();
            (Some(server), url)
        }
    }
}

/// Writer names unique across runs: every run starts fresh chains, as new pods would.
fn writer_name(k: usize) -> String {
    static RUN: AtomicUsize = AtomicUsize::new(0);
    format!(
        "bench-{}-{}-{k}",
        std::process::id(),
        RUN.fetch_add(1, Ordering::Relaxed)
    )
}

fn store(url: &str, writer: &str) -> PostgresStore {
    PostgresStore::open(url, writer, PostgresConfig::new(keys())).unwrap()
}

fn postgres_async(c: &mut Criterion) {
    let (_server, url) = database();
    let records: Vec<Record> = (0..RECORDS).map(record).collect();
    let mut group = c.benchmark_group("postgres_async");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(20));
    for writers in [1usize, 2] {
        group.throughput(Throughput::Elements((RECORDS * writers) as u64));
        group.bench_function(format!("{writers}_writers_{RECORDS}_records_each"), |b| {
            b.iter_batched(
                || {
                    (0..writers)
                        .map(|k| {
                            let name = writer_name(k);
                            let writer =
                                Writer::start(store(&url, &name), WriterConfig::default()).unwrap();
                            // Record ids are unique in the database: prefix them.
                            let batch: Vec<Record> = records
                                .iter()
                                .map(|r| {
                                    let mut r = r.clone();
                                    r.id = format!("{name}-{}", r.id);
                                    r
                                })
                                .collect();
                            (writer, batch)
                        })
                        .collect::<Vec<_>>()
                },
                |pairs| {
                    // One submitting thread per writer, as each replica has its own.
                    std::thread::scope(|scope| {
                        for (writer, batch) in pairs {
                            scope.spawn(move || {
                                for r in batch {
                                    writer.submit(r, Durability::Async).unwrap();
                                }
                                let metrics = writer.metrics();
                                writer.shutdown();
                                assert_eq!(metrics.failed, 0, "records failed to commit");
                            });
                        }
                    });
                },
                BatchSize::PerIteration,
            );
        });
    }
    group.finish();
}

fn postgres_sync(c: &mut Criterion) {
    let (_server, url) = database();
    let template = record(0);
    let prefix = writer_name(0);
    let writer = Writer::start(store(&url, &prefix), WriterConfig::default()).unwrap();
    let mut group = c.benchmark_group("postgres_sync");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    let mut next = 0u64;
    group.bench_function("one_record_until_ack_sealed", |b| {
        b.iter(|| {
            next += 1;
            let mut r = template.clone();
            r.id = format!("{prefix}-sync-{next}");
            writer.submit(r, Durability::Sync).unwrap().wait().unwrap()
        });
    });
    group.finish();
    let metrics = writer.metrics();
    writer.shutdown();
    println!(
        "postgres_sync: {} records committed in {} transactions",
        metrics.committed, metrics.batches
    );
}

criterion_group!(benches, postgres_async, postgres_sync);
criterion_main!(benches);
