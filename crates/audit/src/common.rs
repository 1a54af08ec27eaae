//! What every backend does the same way: sealing and digesting records before they are
//! stored, opening sealed fields when they are read, and turning stored rows back into
//! records (one reader for both clients' rows, through [`Columns`]). Kept in one place
//! so that SQLite and PostgreSQL cannot drift apart in what a chain covers, how a field
//! is sealed, or how a row reads back.

use crate::keys::Keys;
use crate::record::{Canonical, Consent, Record, sha256_hex};
use crate::store::{ChainRow, ERASABLE_FIELDS, ErasableField, StoreError, Stored};
use std::borrow::Cow;

pub(crate) fn to_i64(v: u64, what: &'static str) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::OutOfRange(what))
}

pub(crate) fn to_u64(v: i64, what: &'static str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::OutOfRange(what))
}

/// `limit.max(1)` as a SQL integer.
pub(crate) fn sql_limit(limit: usize) -> Result<i64, StoreError> {
    to_i64(u64::try_from(limit.max(1)).unwrap_or(u64::MAX), "limit")
}

fn json_bytes<T: serde::Serialize>(v: Option<&T>) -> Result<Option<Vec<u8>>, StoreError> {
    v.map(serde_json::to_vec)
        .transpose()
        .map_err(StoreError::from)
}

fn parse_json<T: serde::de::DeserializeOwned>(f: &ErasableField) -> Result<Option<T>, StoreError> {
    f.content
        .as_deref()
        .map(serde_json::from_slice)
        .transpose()
        .map_err(StoreError::from)
}

/// One erasable field as read from the store, opened with the keyring if it was sealed.
pub(crate) fn open_field(
    keys: &Keys,
    key_id: Option<&str>,
    id: &str,
    name: &str,
    stored: Option<Vec<u8>>,
    sha256: Option<String>,
) -> ErasableField {
    let (content, open_error) = match (stored, key_id) {
        (Some(sealed), Some(key)) => match keys.open(key, id, name, &sealed) {
            Ok(clear) => (Some(clear), None),
            Err(e) => (None, Some(e)),
        },
        (stored, _) => (stored, None),
    };
    ErasableField {
        content,
        sha256,
        open_error,
    }
}

/// An error naming the first sealed field of `row` that did not open.
pub(crate) fn all_opened(row: &ChainRow) -> Result<(), StoreError> {
    match row
        .fields
        .iter()
        .zip(ERASABLE_FIELDS)
        .find_map(|(f, name)| f.open_error.clone().map(|e| (name, e)))
    {
        Some((field, source)) => Err(StoreError::Open {
            id: row.id.clone(),
            field,
            source,
        }),
        None => Ok(()),
    }
}

/// The columns of a record, from `seq` on, in the order [`read_chain_row`] reads them
/// (see [`col`]). Both backends select (and the SQLite one inserts) exactly these, after
/// whatever columns of their own come first.
macro_rules! record_columns {
    () => {
        "seq, id, time_ms, route, model, consent, subject, surrogate_version, review_state, \
         request, request_sha256, response, response_sha256, features, features_sha256, \
         outputs, outputs_sha256, attributions, attributions_sha256, texts, texts_sha256, \
         erased_at, prev_hash, hash, key_id, erased_reason, review_reasons, erasure, erasure_mac"
    };
}
pub(crate) use record_columns;

/// Positions in [`record_columns`], counted from `seq`.
mod col {
    pub(super) const SEQ: usize = 0;
    pub(super) const ID: usize = 1;
    pub(super) const TIME_MS: usize = 2;
    pub(super) const ROUTE: usize = 3;
    pub(super) const MODEL: usize = 4;
    pub(super) const CONSENT: usize = 5;
    pub(super) const SUBJECT: usize = 6;
    pub(super) const SURROGATE_VERSION: usize = 7;
    pub(super) const REVIEW_STATE: usize = 8;
    /// `request`; each erasable field is followed by its digest.
    pub(super) const FIRST_FIELD: usize = 9;
    pub(super) const ERASED_AT: usize = 21;
    pub(super) const PREV_HASH: usize = 22;
    pub(super) const HASH: usize = 23;
    pub(super) const KEY_ID: usize = 24;
    pub(super) const ERASED_REASON: usize = 25;
    pub(super) const REVIEW_REASONS: usize = 26;
    pub(super) const ERASURE: usize = 27;
    pub(super) const ERASURE_MAC: usize = 28;
}

/// The typed column getters of one result row, which each backend implements for its
/// client's row type, so that a single reader turns rows of either into records.
pub(crate) trait Columns {
    fn int(&self, i: usize) -> Result<i64, StoreError>;
    fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError>;
    fn text(&self, i: usize) -> Result<String, StoreError>;
    fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError>;
    fn opt_bytes(&self, i: usize) -> Result<Option<Vec<u8>>, StoreError>;
}

/// The chain row held by [`record_columns`] starting at column `at`, its sealed fields
/// opened where the keyring can.
pub(crate) fn read_chain_row(
    row: &impl Columns,
    at: usize,
    keys: &Keys,
) -> Result<ChainRow, StoreError> {
    let seq = row.int(at + col::SEQ)?;
    let id = row.text(at + col::ID)?;
    let key_id = row.opt_text(at + col::KEY_ID)?;
    let mut fields: [ErasableField; 6] = Default::default();
    for (i, name) in ERASABLE_FIELDS.iter().enumerate() {
        let c = at + col::FIRST_FIELD + 2 * i;
        fields[i] = open_field(
            keys,
            key_id.as_deref(),
            &id,
            name,
            row.opt_bytes(c)?,
            row.opt_text(c + 1)?,
        );
    }
    let seq = u64::try_from(seq)
        .map_err(|_| StoreError::Corrupt(format!("record {id} has an invalid seq {seq}")))?;
    Ok(ChainRow {
        seq,
        id,
        time_ms: row.int(at + col::TIME_MS)?,
        route: row.text(at + col::ROUTE)?,
        model: row.text(at + col::MODEL)?,
        consent: row.text(at + col::CONSENT)?,
        subject: row.opt_text(at + col::SUBJECT)?,
        surrogate_version: row
            .opt_int(at + col::SURROGATE_VERSION)?
            .map(|v| to_u64(v, "surrogate_version"))
            .transpose()?,
        fields,
        key_id,
        erased_at: row.opt_int(at + col::ERASED_AT)?,
        erased_reason: row.opt_text(at + col::ERASED_REASON)?,
        erasure: row
            .opt_int(at + col::ERASURE)?
            .map(|n| to_u64(n, "erasure"))
            .transpose()?,
        erasure_mac: row.opt_text(at + col::ERASURE_MAC)?,
        review_state: row.text(at + col::REVIEW_STATE)?,
        prev_hash: row.text(at + col::PREV_HASH)?,
        hash: row.text(at + col::HASH)?,
    })
}

/// The workflow column of a row that neither the chain nor verification reads.
struct Workflow {
    /// The JSON array of review reasons, as stored.
    review_reasons: Option<String>,
}

/// The record a chain row and its workflow columns hold; every sealed field must open.
fn record_of(c: ChainRow, w: Workflow) -> Result<Record, StoreError> {
    let consent = Consent::parse(&c.consent)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown consent at seq {}", c.seq)))?;
    all_opened(&c)?;
    let [request, response, features, outputs, attributions, texts] = &c.fields;
    Ok(Record {
        features: parse_json(features)?,
        outputs: parse_json(outputs)?,
        attributions: parse_json(attributions)?,
        texts: parse_json(texts)?,
        request: request.content.clone(),
        response: response.content.clone(),
        id: c.id,
        time_ms: c.time_ms,
        route: c.route,
        model: c.model,
        surrogate_version: c.surrogate_version,
        consent,
        subject: c.subject,
        review_state: c.review_state,
        erased_at: c.erased_at,
        erased_reason: c.erased_reason,
        review_reasons: w
            .review_reasons
            .map(|t| serde_json::from_str(&t))
            .transpose()?
            .unwrap_or_default(),
        prev_hash: c.prev_hash,
        hash: c.hash,
    })
}

/// The record held by [`record_columns`] starting at column `at`, with its position in
/// its chain; every sealed field must open.
pub(crate) fn read_stored(
    row: &impl Columns,
    at: usize,
    keys: &Keys,
) -> Result<Stored, StoreError> {
    let c = read_chain_row(row, at, keys)?;
    let workflow = Workflow {
        review_reasons: row.opt_text(at + col::REVIEW_REASONS)?,
    };
    Ok(Stored {
        seq: c.seq,
        record: record_of(c, workflow)?,
    })
}

/// A record ready to insert: its erasable fields as they go to disk (sealed when
/// sealing is on) and the digests of their clear text.
pub(crate) struct Prepared<'a> {
    pub(crate) stored: [Option<Cow<'a, [u8]>>; 6],
    pub(crate) digests: [Option<String>; 6],
    /// The key that sealed the fields; `None` when they are in the clear or there are none.
    pub(crate) key_id: Option<&'a str>,
}

/// Digests and (when `encrypt`) seals the erasable fields of every record. Done before a
/// backend opens its transaction: encryption is the costly part, and locks should be
/// held for the inserts only.
pub(crate) fn prepare<'a>(
    records: &'a [Record],
    keys: &'a Keys,
    encrypt: bool,
) -> Result<Vec<Prepared<'a>>, StoreError> {
    // Records are sealed and digested independently: a large batch is shared among the
    // cores, so that the writer's one thread is not what limits how many records a
    // second the log takes (the chain's hashes and the inserts stay in order, on it).
    let parts = sealing_threads()
        .min(records.len() / MIN_RECORDS_PER_THREAD)
        .max(1);
    if parts == 1 {
        return prepare_part(records, keys, encrypt);
    }
    let chunk = records.len().div_ceil(parts);
    std::thread::scope(|scope| {
        // A helper that cannot be started (the process is out of threads) leaves its
        // part to this thread: sealing must never be why a record is lost.
        let helpers: Vec<_> = records
            .chunks(chunk)
            .skip(1)
            .map(|part| {
                let first = part.first().map(|r| r.id.clone()).unwrap_or_default();
                let helper = std::thread::Builder::new()
                    .name("sidelight-audit-seal".to_owned())
                    .spawn_scoped(scope, move || prepare_part(part, keys, encrypt))
                    .ok();
                (part, first, helper)
            })
            .collect();
        let mut prepared = prepare_part(&records[..chunk], keys, encrypt);
        // Every helper is joined before any error is returned: a panic in one is a
        // sealing failure of the batch, never a panic of the writer.
        for (part, first, helper) in helpers {
            let done = match helper {
                Some(helper) => helper.join().unwrap_or(Err(StoreError::Seal(first))),
                None => prepare_part(part, keys, encrypt),
            };
            prepared = match (prepared, done) {
                (Ok(mut all), Ok(more)) => {
                    all.extend(more);
                    Ok(all)
                }
                (Err(e), _) | (_, Err(e)) => Err(e),
            };
        }
        prepared
    })
}

/// A batch is shared among threads only when each gets at least this many records:
/// below, starting a thread costs more than it saves.
const MIN_RECORDS_PER_THREAD: usize = 16;

/// How many threads seal a large batch: the cores, at most four.
fn sealing_threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get().min(4)))
}

fn prepare_part<'a>(
    records: &'a [Record],
    keys: &'a Keys,
    encrypt: bool,
) -> Result<Vec<Prepared<'a>>, StoreError> {
    let mut sealer = match encrypt {
        true => Some(keys.sealer().ok_or_else(|| {
            StoreError::Seal(records.first().map(|r| r.id.clone()).unwrap_or_default())
        })?),
        false => None,
    };
    let key_id = encrypt.then(|| keys.active_id());
    let mut prepared = Vec::with_capacity(records.len());
    for r in records {
        let clear: [Option<Cow<'_, [u8]>>; 6] = [
            r.request.as_deref().map(Cow::Borrowed),
            r.response.as_deref().map(Cow::Borrowed),
            json_bytes(r.features.as_ref())?.map(Cow::Owned),
            json_bytes(r.outputs.as_ref())?.map(Cow::Owned),
            json_bytes(r.attributions.as_ref())?.map(Cow::Owned),
            json_bytes(r.texts.as_ref())?.map(Cow::Owned),
        ];
        let digests: [Option<String>; 6] =
            std::array::from_fn(|i| clear[i].as_deref().map(sha256_hex));
        let any = clear.iter().any(Option::is_some);
        let mut stored: [Option<Cow<'_, [u8]>>; 6] = Default::default();
        for (i, c) in clear.into_iter().enumerate() {
            stored[i] = match (c, sealer.as_mut()) {
                (Some(bytes), Some(sealer)) => Some(Cow::Owned(
                    sealer
                        .seal(&r.id, ERASABLE_FIELDS[i], &bytes)
                        .ok_or_else(|| StoreError::Seal(r.id.clone()))?,
                )),
                (other, _) => other,
            };
        }
        prepared.push(Prepared {
            stored,
            digests,
            key_id: key_id.filter(|_| any),
        });
    }
    Ok(prepared)
}

/// The hashed form of a record about to be appended at `seq` of `writer`'s chain.
pub(crate) fn canonical<'a>(
    r: &'a Record,
    seq: u64,
    digests: &'a [Option<String>; 6],
    writer: Option<&'a str>,
) -> Canonical<'a> {
    Canonical {
        v: Canonical::version(writer),
        writer,
        seq,
        id: &r.id,
        time_ms: r.time_ms,
        route: &r.route,
        model: &r.model,
        consent: r.consent.as_str(),
        subject: r.subject.as_deref(),
        surrogate_version: r.surrogate_version,
        request_sha256: digests[0].as_deref(),
        response_sha256: digests[1].as_deref(),
        features_sha256: digests[2].as_deref(),
        outputs_sha256: digests[3].as_deref(),
        attributions_sha256: digests[4].as_deref(),
        texts_sha256: digests[5].as_deref(),
    }
}

/// The erasable fields of `row` sealed anew with the active key.
pub(crate) fn reseal_fields(
    keys: &Keys,
    row: &ChainRow,
) -> Result<[Option<Vec<u8>>; 6], StoreError> {
    all_opened(row)?;
    let mut sealed: [Option<Vec<u8>>; 6] = Default::default();
    for (i, f) in row.fields.iter().enumerate() {
        sealed[i] = match &f.content {
            Some(clear) => Some(
                keys.seal(&row.id, ERASABLE_FIELDS[i], clear)
                    .ok_or_else(|| StoreError::Seal(row.id.clone()))?,
            ),
            None => None,
        };
    }
    Ok(sealed)
}
