//! Random append sequences always verify; any single-row mutation is detected.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use proptest::prelude::*;
use rusqlite::{Connection, params};
use sidelight_audit::{AuditStore, Consent, Keys, Record, SqliteConfig, SqliteStore, verify};

const KEY: &[u8] = b"prop key, sixteen bytes or more";

fn record(i: usize, payload: &[u8], consent: u8) -> Record {
    let mut r = Record::new(format!("id-{i}"), i64::try_from(i).unwrap() * 10, "r", "m");
    r.request = Some(payload.to_vec());
    r.features = Some(serde_json::json!({ "x": i, "p": payload.len() }));
    r.consent = match consent % 3 {
        0 => Consent::Full,
        1 => Consent::ExplainOnly,
        _ => Consent::None,
    };
    r
}

#[derive(Debug, Clone)]
enum Mutation {
    Delete,
    AlterRoute,
    AlterTime,
    AlterPayload,
    AlterPrevHash,
    SwapWithNext,
    ForgeAppend,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        Just(Mutation::Delete),
        Just(Mutation::AlterRoute),
        Just(Mutation::AlterTime),
        Just(Mutation::AlterPayload),
        Just(Mutation::AlterPrevHash),
        Just(Mutation::SwapWithNext),
        Just(Mutation::ForgeAppend),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn appends_verify_and_mutations_are_detected(
        batches in prop::collection::vec(prop::collection::vec((prop::collection::vec(any::<u8>(), 0..32), any::<u8>()), 1..6), 1..6),
        every in 0u64..5,
        target in any::<prop::sample::Index>(),
        m in mutation(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let config = SqliteConfig { checkpoint_every: every, ..SqliteConfig::new(Keys::from_master(KEY.to_vec()).unwrap()) };
        let mut store = SqliteStore::open(&path, config.clone()).unwrap();
        let mut n = 0usize;
        for batch in &batches {
            let records: Vec<Record> =
                batch.iter().map(|(p, c)| { n += 1; record(n, p, *c) }).collect();
            store.append_batch(&records).unwrap();
        }
        let report = verify(&store, KEY).unwrap();
        prop_assert_eq!(report.records, u64::try_from(n).unwrap());
        drop(store);

        let seq = i64::try_from(target.index(n)).unwrap() + 1;
        let conn = Connection::open(&path).unwrap();
        match m {
            Mutation::Delete => { conn.execute("DELETE FROM records WHERE seq = ?1", params![seq]).unwrap(); }
            Mutation::AlterRoute => { conn.execute("UPDATE records SET route = route || 'x' WHERE seq = ?1", params![seq]).unwrap(); }
            Mutation::AlterTime => { conn.execute("UPDATE records SET time_ms = time_ms + 1 WHERE seq = ?1", params![seq]).unwrap(); }
            Mutation::AlterPayload => { conn.execute("UPDATE records SET request = CAST('tampered' AS BLOB) WHERE seq = ?1", params![seq]).unwrap(); }
            Mutation::AlterPrevHash => { conn.execute("UPDATE records SET prev_hash = hash WHERE seq = ?1", params![seq]).unwrap(); }
            Mutation::SwapWithNext => {
                // With a single record, swap it with a copy under a new id instead.
                let other = if usize::try_from(seq).unwrap() < n { seq + 1 } else { seq - 1 };
                if other < 1 {
                    conn.execute("UPDATE records SET id = 'swapped' WHERE seq = ?1", params![seq]).unwrap();
                } else {
                    conn.execute_batch(&format!(
                        "UPDATE records SET seq = -1 WHERE seq = {seq}; UPDATE records SET seq = {seq} WHERE seq = {other}; \
                         UPDATE records SET seq = {other} WHERE seq = -1;"
                    )).unwrap();
                }
            }
            Mutation::ForgeAppend => {
                drop(conn);
                let forger = SqliteConfig { checkpoint_every: 0, ..SqliteConfig::new(Keys::from_master(b"forger forger forger".to_vec()).unwrap()) };
                let mut s = SqliteStore::open(&path, forger).unwrap();
                s.append_batch(&[record(n + 1, b"forged", 0)]).unwrap();
                drop(s);
                let conn = Connection::open(&path).unwrap();
                conn.execute("DELETE FROM checkpoints WHERE seq = ?1", params![i64::try_from(n).unwrap() + 1]).unwrap();
            }
        }
        let store = SqliteStore::open(&path, config).unwrap();
        prop_assert!(verify(&store, KEY).is_err(), "mutation {:?} at seq {} not detected", m, seq);
    }
}
