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
use serde_json::json;
use sidelight_audit::{
    Consent, Durability, Keys, Record, SqliteConfig, SqliteStore, Writer, WriterConfig,
};

// The allocator the `sidelight` binary runs with, so that the figures are the proxy's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RECORDS: usize = 20_000;
const MASTER: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

const NAMES: [&str; 20] = [
    "checking_status",
    "duration",
    "credit_history",
    "purpose",
    "credit_amount",
    "savings_status",
    "employment",
    "installment_commitment",
    "personal_status",
    "other_parties",
    "residence_since",
    "property_magnitude",
    "age",
    "other_payment_plans",
    "housing",
    "existing_credits",
    "job",
    "num_dependents",
    "own_telephone",
    "foreign_worker",
];

/// A deterministic pseudo-random number in [0, 1) from `i` and `k` (SplitMix64).
fn unit(i: usize, k: usize) -> f64 {
    let mut z = (i as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add((k as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
}

/// One record as the proxy writes it for an explained KServe v1 credit request.
fn record(i: usize) -> Record {
    let categories = [
        "A11", "A12", "A13", "A14", "A30", "A31", "A32", "A40", "A41",
    ];
    let values: Vec<serde_json::Value> = (0..NAMES.len())
        .map(|k| {
            if k % 3 == 0 {
                json!(categories[(unit(i, k) * categories.len() as f64) as usize])
            } else {
                json!((unit(i, k) * 1000.0).round() / 10.0)
            }
        })
        .collect();
    let instance: serde_json::Map<String, serde_json::Value> = NAMES
        .iter()
        .zip(&values)
        .map(|(n, v)| ((*n).to_owned(), v.clone()))
        .collect();
    let request = json!({
        "instances": [instance],
        "parameters": {
            "customer_id": format!("C-{:08}", i * 7919 % 100_000_000),
            "channel": "branch-portal",
            "correlation": format!("req-{i:012}"),
            "applicant": {
                "name": format!("Applicant {i}"),
                "address": format!("{} Example Street, Flat {}, 10115 Berlin", i % 300, i % 40),
                "email": format!("applicant.{i}@example.invalid"),
                "phone": format!("+49 30 {:07}", i * 31 % 10_000_000),
            },
            "session": {
                "user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)",
                "submitted_at": format!("2026-11-27T10:{:02}:{:02}Z", i / 60 % 60, i % 60),
                "consent": "full",
                "referrer": format!("https://portal.example.invalid/apply/step-4?campaign=winter-{}&ref=partner-{}", i % 12, i % 97),
                "notes": "Applicant asked for a decision by phone; documents uploaded via the portal.",
            },
        },
    });
    let score = unit(i, 99);
    let shap: Vec<f64> = (0..NAMES.len())
        .map(|k| (unit(i, k + 100) - 0.5) / 10.0)
        .collect();
    let mut r = Record::new(
        format!("req-{i:012}"),
        1_795_000_000_000 + i as i64,
        "credit",
        "credit-model:7",
    );
    r.request = Some(serde_json::to_vec(&request).unwrap());
    r.response = Some(serde_json::to_vec(&json!({"predictions": [score]})).unwrap());
    r.features = Some(json!({"names": NAMES, "rows": [values]}));
    r.outputs = Some(json!([[score]]));
    r.surrogate_version = Some(3);
    r.attributions = Some(json!([{
        "surrogate_version": 3,
        "base_value": 0.42,
        "prediction": score,
        "values": [shap],
        "names": NAMES,
    }]));
    r.texts = Some(vec![format!(
        "The score of {score:.2} is mostly due to credit_amount and duration; \
         checking_status lowered it by {:.3}.",
        shap[0].abs()
    )]);
    r.consent = Consent::Full;
    r.subject = Some(format!("ps_{:032x}", i % 5000));
    r
}

fn keys() -> Keys {
    Keys::parse(MASTER.as_bytes(), "bench").unwrap()
}

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
