//! The group-commit writer over SQLite, as the proxy drives it.
//!
//! - `writer_async`: 20,000 realistic records (≈1 KiB request JSON, the response,
//!   features, outputs, attributions and a text, as the proxy writes them for a credit
//!   model) submitted with `Durability::Async`, then `shutdown()`, which commits
//!   everything: records per second end to end. Once with sealing on (AES-256-GCM per
//!   erasable field, the default) and once with it off, so the cost of encryption shows.
//! - `writer_sync`: one thread submits `Durability::Sync` records one at a time and
//!   waits for each ack: the time a `sync` response waits for its record to be durable
//!   (one transaction and one WAL fsync per record, since nothing else is queued).
//!
//! Every run writes to a fresh database in a temporary directory, so the figures
//! include the disk's fsync latency.
//!
//! Run: `cargo bench -p sidelight-audit --bench writer`.

// A failed set-up is a failed benchmark.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use criterion::{BatchSize, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use sidelight_audit::{Durability, Record, SqliteConfig, SqliteStore, Writer, WriterConfig};

// The allocator the `sidelight` binary runs with, so that the figures are the proxy's.
mod records;

use records::{keys, record};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RECORDS: usize = 20_000;

fn store(dir: &tempfile::TempDir, encrypt: bool) -> SqliteStore {
    SqliteStore::open(
        dir.path().join("audit.db"),
        SqliteConfig {
            encrypt,
            ..SqliteConfig::new(keys())
        },
    )
    .unwrap()
}

fn writer_async(c: &mut Criterion) {
    let records: Vec<Record> = (0..RECORDS).map(record).collect();
    let r = &records[0];
    let request_bytes = r.request.as_ref().map_or(0, Vec::len);
    let json_len = |v: &Option<serde_json::Value>| v.as_ref().map_or(0, |v| v.to_string().len());
    let content_bytes = request_bytes
        + r.response.as_ref().map_or(0, Vec::len)
        + json_len(&r.features)
        + json_len(&r.outputs)
        + json_len(&r.attributions)
        + r.texts
            .as_ref()
            .map_or(0, |t| t.iter().map(String::len).sum());
    println!(
        "writer bench: {RECORDS} records, request {request_bytes} bytes, \
         {content_bytes} bytes of erasable content each"
    );

    let mut group = c.benchmark_group("writer_async");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(RECORDS as u64));
    for (name, encrypt) in [("clear", false), ("sealed", true)] {
        group.bench_function(format!("{RECORDS}_records_{name}"), |b| {
            b.iter_batched(
                || {
                    // Start every run from a quiet disk: the previous run's database
                    // is still being written back, which would slow whichever variant
                    // runs second.
                    let _ = std::process::Command::new("sync").status();
                    let dir = tempfile::tempdir().unwrap();
                    let writer =
                        Writer::start(store(&dir, encrypt), WriterConfig::default()).unwrap();
                    (dir, writer, records.clone())
                },
                |(dir, writer, records)| {
                    for r in records {
                        writer.submit(r, Durability::Async).unwrap();
                    }
                    let metrics = writer.metrics();
                    writer.shutdown();
                    // Deleting the database is not part of the measurement.
                    (dir, metrics)
                },
                BatchSize::PerIteration,
            );
        });
    }
    group.finish();
}

fn writer_sync(c: &mut Criterion) {
    let template = record(0);
    let _ = std::process::Command::new("sync").status();
    let dir = tempfile::tempdir().unwrap();
    let writer = Writer::start(store(&dir, true), WriterConfig::default()).unwrap();
    let mut group = c.benchmark_group("writer_sync");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    let mut next = 0u64;
    group.bench_function("one_record_until_ack_sealed", |b| {
        b.iter(|| {
            next += 1;
            let mut r = template.clone();
            r.id = format!("sync-{next}");
            writer.submit(r, Durability::Sync).unwrap().wait().unwrap()
        });
    });
    group.finish();
    let metrics = writer.metrics();
    writer.shutdown();
    println!(
        "writer_sync: {} records committed in {} transactions",
        metrics.committed, metrics.batches
    );
}

criterion_group!(benches, writer_async, writer_sync);
criterion_main!(benches);
