//! The audit record and its canonical (hashed) form.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Under which consent a request was served (from `x-sidelight-consent`, `Sec-GPC`, or the
/// route's default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consent {
    /// Store, train on and explain.
    Full,
    /// Explain and store what the policy allows, but never train on it.
    ExplainOnly,
    /// Nothing identifying is stored; only counts are kept.
    None,
}

impl Consent {
    /// The stable string stored in the database and hashed into the chain.
    pub fn as_str(self) -> &'static str {
        match self {
            Consent::Full => "full",
            Consent::ExplainOnly => "explain_only",
            Consent::None => "none",
        }
    }

    /// Parses the stored string form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "full" => Some(Consent::Full),
            "explain_only" => Some(Consent::ExplainOnly),
            "none" => Some(Consent::None),
            _ => None,
        }
    }
}

/// One audit record: what was asked, answered and explained, under which consent.
///
/// The erasable fields (`request`, `response`, `features`, `outputs`, `attributions`,
/// `texts`) may be removed later by erasure or retention; the chain covers their SHA-256
/// digests (kept in the store), so the chain still verifies after they are gone.
///
/// `prev_hash` and `hash` are filled in by the store on append; whatever a caller puts
/// there is ignored. `review_state` and `erased_at` are mutable workflow state and are
/// deliberately *not* covered by the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Unique record id (the proxy uses the `x-request-id`).
    pub id: String,
    /// When the request was received, unix milliseconds.
    pub time_ms: i64,
    /// The route name the request matched.
    pub route: String,
    /// Identity of the upstream model (name and version).
    pub model: String,
    /// The request body after the privacy policy; `None` when not stored or erased.
    pub request: Option<Vec<u8>>,
    /// The response body after the privacy policy; `None` when not stored or erased.
    pub response: Option<Vec<u8>>,
    /// Extracted feature rows.
    pub features: Option<serde_json::Value>,
    /// Extracted predictions.
    pub outputs: Option<serde_json::Value>,
    /// Version of the surrogate that explained this prediction.
    pub surrogate_version: Option<u64>,
    /// Attributions (SHAP values, base value).
    pub attributions: Option<serde_json::Value>,
    /// Texts shown to the caller.
    pub texts: Option<Vec<String>>,
    /// Consent state.
    pub consent: Consent,
    /// Pseudonymous subject key (keyed HMAC of an identifier, never the identifier).
    pub subject: Option<String>,
    /// Review state: `none`, `pending`, `confirmed`, `overridden` or `escalated`; not
    /// hashed (it changes as reviewers decide, and each decision is a record of its own).
    pub review_state: String,
    /// Why the record was sent to review (the rules that fired); not hashed.
    pub review_reasons: Vec<String>,
    /// When the erasable fields were erased (tombstone), unix milliseconds; not hashed.
    pub erased_at: Option<i64>,
    /// Why they were erased (`subject_erasure`, `retention`); not hashed.
    pub erased_reason: Option<String>,
    /// Hex SHA-256 of the previous record (64 zeros for the first record).
    pub prev_hash: String,
    /// Hex SHA-256 of this record: `SHA-256(prev_hash bytes || canonical bytes)`.
    pub hash: String,
}

impl Record {
    /// A record with the required fields set and everything else empty.
    pub fn new(
        id: impl Into<String>,
        time_ms: i64,
        route: impl Into<String>,
        model: impl Into<String>,
    ) -> Self {
        Record {
            id: id.into(),
            time_ms,
            route: route.into(),
            model: model.into(),
            request: None,
            response: None,
            features: None,
            outputs: None,
            surrogate_version: None,
            attributions: None,
            texts: None,
            consent: Consent::Full,
            subject: None,
            review_state: "none".to_owned(),
            review_reasons: Vec::new(),
            erased_at: None,
            erased_reason: None,
            prev_hash: String::new(),
            hash: String::new(),
        }
    }
}

/// The hash of the (nonexistent) record before the first: 32 zero bytes, hex.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Hex SHA-256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    to_hex(&Sha256::digest(bytes))
}

/// Lower-case hex, without the per-character iterator of `hex::encode` (this runs for
/// every field of every record).
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    // The buffer is exactly twice the input, which is all `encode_to_slice` checks.
    let _ = hex::encode_to_slice(bytes, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// The fields covered by the hash chain, in a fixed order.
///
/// Serialised with `serde_json` this struct is deterministic: it only holds strings,
/// integers and nulls, and serde emits struct fields in declaration order. Erasable
/// content is represented by its digest, so erasure leaves the canonical bytes unchanged.
///
/// Version 1 (one chain per store, SQLite) has no `writer`; version 2 (a chain per
/// writer, PostgreSQL) hashes the writer's name too, so a chain cannot be passed off as
/// another writer's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Canonical<'a> {
    /// Canonical-form version: [`Canonical::version`].
    pub v: u32,
    /// The writer whose chain holds the record; `None` (and not serialised) in version 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writer: Option<&'a str>,
    /// Position in the chain.
    pub seq: u64,
    /// Record id.
    pub id: &'a str,
    /// Unix milliseconds.
    pub time_ms: i64,
    /// Route name.
    pub route: &'a str,
    /// Model identity.
    pub model: &'a str,
    /// Consent string (`full`, `explain_only`, `none`).
    pub consent: &'a str,
    /// Pseudonymous subject key.
    pub subject: Option<&'a str>,
    /// Surrogate version.
    pub surrogate_version: Option<u64>,
    /// Digest of the stored request bytes.
    pub request_sha256: Option<&'a str>,
    /// Digest of the stored response bytes.
    pub response_sha256: Option<&'a str>,
    /// Digest of the stored features JSON text.
    pub features_sha256: Option<&'a str>,
    /// Digest of the stored outputs JSON text.
    pub outputs_sha256: Option<&'a str>,
    /// Digest of the stored attributions JSON text.
    pub attributions_sha256: Option<&'a str>,
    /// Digest of the stored texts JSON text.
    pub texts_sha256: Option<&'a str>,
}

impl Canonical<'_> {
    /// The canonical-form version of a record in `writer`'s chain: 1 without a writer
    /// (SQLite's single chain), 2 with one.
    pub fn version(writer: Option<&str>) -> u32 {
        match writer {
            None => 1,
            Some(_) => 2,
        }
    }

    /// The canonical bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising a struct of strings, integers and options cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// `SHA-256(prev_hash bytes || canonical bytes)` as hex. A `prev_hash` that is not
    /// 64 hex digits is hashed as its UTF-8 text, which can never match a valid chain.
    pub fn chain_hash(&self, prev_hash: &str) -> String {
        let mut h = Sha256::new();
        match hex::decode(prev_hash) {
            Ok(b) if b.len() == 32 => h.update(&b),
            _ => h.update(prev_hash.as_bytes()),
        }
        h.update(self.to_bytes());
        to_hex(&h.finalize())
    }
}
