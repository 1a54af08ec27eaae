//! The audit log's secrets: one master key and a ring of encryption keys.
//!
//! - The **master key** authenticates checkpoints (HMAC-SHA256, as it is) and, through a
//!   derived key, makes pseudonyms. It never rotates: a new master would make every
//!   checkpoint and pseudonym before it unverifiable or unjoinable.
//! - The **encryption keys** seal erasable fields with AES-256-GCM. Each record stores
//!   the id of the key that sealed it, so keys can rotate: a new key becomes active,
//!   `rotate-key` re-seals old records, and a key no record uses can be retired.
//!
//! A key file (or the `SIDELIGHT_AUDIT_KEY` variable) is either just the master key in
//! hex — the encryption key is then derived from it, with id `master` — or a keyring:
//!
//! ```toml
//! master = "<64 hex digits>"
//! active = "k2"
//! [encryption]
//! k1 = "<64 hex digits>"
//! k2 = "<64 hex digits>"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{AeadInPlace, KeyInit, OsRng, rand_core::RngCore};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The shortest master key accepted: shorter HMAC keys are guessable.
pub const MIN_MASTER_BYTES: usize = 16;
/// The id of the encryption key derived from the master key.
pub const DERIVED_KEY_ID: &str = "master";
const NONCE_BYTES: usize = 12;
const TAG_BYTES: usize = 16;

/// Why keys could not be had or used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Neither a key file nor the environment variable was given.
    #[error("no audit key: set `audit.key_file` or {variable} (hex, or a keyring)")]
    Missing {
        /// The environment variable that was consulted.
        variable: &'static str,
    },
    /// The key file could not be read.
    #[error("cannot read the audit key file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The key text is neither hex nor a keyring.
    #[error("{origin}: {message}")]
    Malformed {
        /// The file or variable the text came from.
        origin: String,
        /// What is wrong, naming the entry.
        message: String,
    },
    /// The master key is too short to be a secret.
    #[error("{origin}: the master key must be at least {MIN_MASTER_BYTES} bytes")]
    TooShort {
        /// The file or variable the key came from.
        origin: String,
    },
    /// A key id is not usable (empty, or not letters, digits, `-`, `_`, `.`).
    #[error("key id `{0}` must be letters, digits, '-', '_' or '.'")]
    BadId(String),
}

/// Why a sealed field could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// The keyring does not hold the key that sealed it.
    #[error("sealed with key `{0}`, which the keyring does not hold")]
    MissingKey(String),
    /// The key does not open it: a wrong key with the right id, or altered bytes.
    #[error("key `{0}` does not open it (wrong key, or the bytes were altered)")]
    Failed(String),
}

/// The master key and the encryption keyring. `Debug` never shows key bytes.
#[derive(Clone)]
pub struct Keys {
    master: Vec<u8>,
    pseudonym_key: [u8; 32],
    capability_key: [u8; 32],
    active: String,
    encryption: BTreeMap<String, [u8; 32]>,
    /// The key schedule of each key, made once.
    ciphers: BTreeMap<String, Aes256Gcm>,
    /// Whether the keyring was written out (a keyring file) or derived from a bare master.
    explicit: bool,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("active", &self.active)
            .field("key_ids", &self.encryption.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn derive(master: &[u8], purpose: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    if let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(master) {
        mac.update(b"sidelight-audit derive v1\0");
        mac.update(purpose);
        out.copy_from_slice(&mac.finalize().into_bytes());
    }
    out
}

fn ciphers(keys: &BTreeMap<String, [u8; 32]>) -> BTreeMap<String, Aes256Gcm> {
    keys.iter()
        .filter_map(|(id, key)| Some((id.clone(), Aes256Gcm::new_from_slice(key).ok()?)))
        .collect()
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn is_hex_text(text: &str) -> bool {
    !text.is_empty() && text.len() % 2 == 0 && text.chars().all(|c| c.is_ascii_hexdigit())
}

#[derive(serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct KeyringFile {
    master: String,
    active: String,
    #[serde(default)]
    encryption: BTreeMap<String, String>,
}

impl Keys {
    /// Keys from a bare master key; the encryption key is derived from it.
    pub fn from_master(master: Vec<u8>) -> Result<Self, KeyError> {
        Self::build(
            master,
            DERIVED_KEY_ID.to_owned(),
            BTreeMap::new(),
            false,
            "key",
        )
    }

    fn build(
        master: Vec<u8>,
        active: String,
        mut encryption: BTreeMap<String, [u8; 32]>,
        explicit: bool,
        origin: &str,
    ) -> Result<Self, KeyError> {
        if master.len() < MIN_MASTER_BYTES {
            return Err(KeyError::TooShort {
                origin: origin.to_owned(),
            });
        }
        // The derived key stays readable after a keyring is written: records sealed
        // before the first rotation name it.
        encryption
            .entry(DERIVED_KEY_ID.to_owned())
            .or_insert_with(|| derive(&master, b"encryption"));
        if !encryption.contains_key(&active) {
            return Err(KeyError::Malformed {
                origin: origin.to_owned(),
                message: format!("`active` names key `{active}`, which [encryption] lacks"),
            });
        }
        Ok(Keys {
            pseudonym_key: derive(&master, b"pseudonym"),
            capability_key: derive(&master, b"capability"),
            master,
            active,
            ciphers: ciphers(&encryption),
            encryption,
            explicit,
        })
    }

    /// Parses key text: a bare hex master key, or a keyring (see the module docs).
    /// `origin` names the file or variable in errors.
    pub fn parse(text: &[u8], origin: &str) -> Result<Self, KeyError> {
        let malformed = |message: String| KeyError::Malformed {
            origin: origin.to_owned(),
            message,
        };
        let Ok(text) = std::str::from_utf8(text) else {
            // Raw random bytes in a file are a master key too.
            return Self::from_master(text.to_vec()).map_err(|_| KeyError::TooShort {
                origin: origin.to_owned(),
            });
        };
        let trimmed = text.trim();
        if is_hex_text(trimmed) {
            let master = hex::decode(trimmed).map_err(|e| malformed(e.to_string()))?;
            return Self::build(
                master,
                DERIVED_KEY_ID.to_owned(),
                BTreeMap::new(),
                false,
                origin,
            );
        }
        let file: KeyringFile = toml::from_str(text)
            .map_err(|e| malformed(format!("neither hex nor a keyring: {}", e.message())))?;
        let master = hex::decode(file.master.trim())
            .map_err(|_| malformed("`master` must be hex".to_owned()))?;
        let mut encryption = BTreeMap::new();
        for (id, value) in file.encryption {
            if !valid_id(&id) {
                return Err(KeyError::BadId(id));
            }
            let bytes = hex::decode(value.trim())
                .map_err(|_| malformed(format!("encryption.{id} must be hex")))?;
            let key: [u8; 32] = bytes
                .try_into()
                .map_err(|_| malformed(format!("encryption.{id} must be 32 bytes (64 hex)")))?;
            encryption.insert(id, key);
        }
        Self::build(master, file.active, encryption, true, origin)
    }

    /// Reads keys from `key_file`, or without a file from `env_value` (the value of the
    /// variable named `variable`).
    pub fn load(
        key_file: Option<&Path>,
        env_value: Option<&str>,
        variable: &'static str,
    ) -> Result<Self, KeyError> {
        match (key_file, env_value) {
            (Some(path), _) => {
                let raw = std::fs::read(path).map_err(|source| KeyError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                Self::parse(&raw, &path.display().to_string())
            }
            (None, Some(value)) => Self::parse(value.as_bytes(), variable),
            (None, None) => Err(KeyError::Missing { variable }),
        }
    }

    /// The HMAC key of checkpoints.
    pub fn checkpoint_key(&self) -> &[u8] {
        &self.master
    }

    /// The key evidence packs' manifests are signed with: derived from the master, so
    /// that it can be handed to whoever checks packs (`sidelight evidence key`) without
    /// the audit key. It signs and checks manifests, and opens nothing.
    pub fn evidence_key(&self) -> [u8; 32] {
        derive(&self.master, b"evidence")
    }

    /// The id of the key new records are sealed with.
    pub fn active_id(&self) -> &str {
        &self.active
    }

    /// Ids of every encryption key held.
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.encryption.keys().map(String::as_str)
    }

    /// The pseudonym of an identifier: a keyed HMAC, stable for the master key, so the
    /// same person gets the same key in every record and joins still work, while the
    /// identifier cannot be recovered without the key.
    pub fn pseudonym(&self, identifier: &str) -> String {
        let mut out = String::with_capacity(35);
        if let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(&self.pseudonym_key) {
            mac.update(identifier.as_bytes());
            out.push_str("ps_");
            out.push_str(&crate::record::to_hex(&mac.finalize().into_bytes()[..16]));
        }
        out
    }

    /// The pseudonym of a categorical level of a personal feature, as a saved surrogate
    /// keeps it (`lv_` and 32 hex digits). Keyed like [`pseudonym`](Self::pseudonym)
    /// but over the feature's name and the level in a domain of its own, so that it
    /// joins with nothing in the audit log and a level means nothing without the key;
    /// the same level of the same feature always maps alike, so that a restored
    /// surrogate can still read a live row (its level is mapped the same way first).
    pub fn level_pseudonym(&self, feature: &str, level: &str) -> String {
        let mut out = String::with_capacity(35);
        if let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(&self.pseudonym_key) {
            mac.update(b"sidelight-surrogate-level\0");
            mac.update(feature.as_bytes());
            mac.update(b"\0");
            mac.update(level.as_bytes());
            out.push_str("lv_");
            out.push_str(&crate::record::to_hex(&mac.finalize().into_bytes()[..16]));
        }
        out
    }

    /// A 64-bit keyed digest of a subject's pseudonym, as a saved surrogate lists the
    /// subjects its training rows came from: compact, and not joinable with the audit
    /// log's subjects without the key. Two subjects sharing a digest (odds of about
    /// 2⁻⁶⁴ per pair) only make an erasure retire a surrogate that did not need it.
    pub fn subject_digest(&self, pseudonym: &str) -> u64 {
        let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(&self.pseudonym_key) else {
            return 0;
        };
        mac.update(b"sidelight-surrogate-subject\0");
        mac.update(pseudonym.as_bytes());
        let bytes = mac.finalize().into_bytes();
        let mut first = [0u8; 8];
        first.copy_from_slice(&bytes[..8]);
        u64::from_be_bytes(first)
    }

    /// A capability for `purpose` on `id` (a record's feedback token): 128 bits of
    /// HMAC, as 32 hex digits. Whoever holds it was given it; nothing is stored.
    pub fn capability(&self, purpose: &str, id: &str) -> String {
        let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(&self.capability_key) {
            Ok(mac) => mac,
            Err(_) => return String::new(),
        };
        mac.update(purpose.as_bytes());
        mac.update(b"\0");
        mac.update(id.as_bytes());
        crate::record::to_hex(&mac.finalize().into_bytes()[..16])
    }

    /// Whether `token` is the capability for `purpose` on `id`, compared in constant
    /// time.
    pub fn check_capability(&self, purpose: &str, id: &str, token: &str) -> bool {
        use subtle::ConstantTimeEq;
        let expected = self.capability(purpose, id);
        !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(token.trim().as_bytes()))
    }

    /// Adds a fresh random key under `id` and makes it active.
    pub fn rotate(&mut self, id: &str) -> Result<(), KeyError> {
        if !valid_id(id) || self.encryption.contains_key(id) {
            return Err(KeyError::BadId(id.to_owned()));
        }
        let mut key = [0u8; 32];
        OsRng.fill_bytes(&mut key);
        self.encryption.insert(id.to_owned(), key);
        self.ciphers = ciphers(&self.encryption);
        self.active = id.to_owned();
        self.explicit = true;
        Ok(())
    }

    /// Forgets every key except the active one and those in `keep`. Returns the ids
    /// dropped. The derived key cannot be forgotten while the master is known; it is
    /// only left out of the written keyring.
    pub fn retire_except(&mut self, keep: &[String]) -> Vec<String> {
        let dropped: Vec<String> = self
            .encryption
            .keys()
            .filter(|id| *id != &self.active && !keep.contains(id) && id.as_str() != DERIVED_KEY_ID)
            .cloned()
            .collect();
        for id in &dropped {
            self.encryption.remove(id);
            self.ciphers.remove(id);
        }
        dropped
    }

    /// The keyring as key-file text (TOML). Contains secrets: write it only to a file
    /// readable by its owner.
    pub fn to_keyring_text(&self) -> String {
        let file = KeyringFile {
            master: hex::encode(&self.master),
            active: self.active.clone(),
            encryption: self
                .encryption
                .iter()
                .filter(|(id, _)| id.as_str() != DERIVED_KEY_ID || self.active == DERIVED_KEY_ID)
                .map(|(id, key)| (id.clone(), hex::encode(key)))
                .collect(),
        };
        let body = toml::to_string(&file).unwrap_or_default();
        format!(
            "# Sidelight audit keys: the master key (checkpoints, pseudonyms) and the\n\
             # encryption keyring. Secret: keep this file readable by its owner only.\n{body}"
        )
    }

    /// Whether these keys came from a keyring rather than a bare master key.
    pub fn is_keyring(&self) -> bool {
        self.explicit
    }

    /// A sealer with the active key, for one batch of records.
    pub fn sealer(&self) -> Option<Sealer<'_>> {
        let mut base = [0u8; NONCE_BYTES];
        OsRng.fill_bytes(&mut base);
        Some(Sealer {
            cipher: self.ciphers.get(&self.active)?,
            base,
            counter: 0,
        })
    }

    /// Seals `plaintext` with the active key (see [`Sealer::seal`]).
    pub fn seal(&self, record_id: &str, field: &str, plaintext: &[u8]) -> Option<Vec<u8>> {
        self.sealer()?.seal(record_id, field, plaintext)
    }

    /// Seals a short text (a customer's words) with the active key, as text that fits a
    /// text column: `sealed:<key id>:<base64>`. `None` without a key to seal with.
    pub fn seal_text(&self, context: &str, field: &str, text: &str) -> Option<String> {
        use base64::Engine as _;
        let sealed = self.seal(context, field, text.as_bytes())?;
        let body = base64::engine::general_purpose::STANDARD.encode(sealed);
        Some(format!("{SEALED_TEXT}{}:{body}", self.active))
    }

    /// Opens a text sealed by [`seal_text`](Self::seal_text); a text that is not sealed
    /// comes back as it is.
    pub fn open_text(&self, context: &str, field: &str, text: &str) -> Result<String, OpenError> {
        use base64::Engine as _;
        let Some(rest) = text.strip_prefix(SEALED_TEXT) else {
            return Ok(text.to_owned());
        };
        let (key_id, body) = rest
            .split_once(':')
            .ok_or_else(|| OpenError::Failed(String::new()))?;
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|_| OpenError::Failed(key_id.to_owned()))?;
        let clear = self.open(key_id, context, field, &sealed)?;
        String::from_utf8(clear).map_err(|_| OpenError::Failed(key_id.to_owned()))
    }

    /// Opens bytes sealed by [`seal`](Self::seal) with key `key_id`.
    pub fn open(
        &self,
        key_id: &str,
        record_id: &str,
        field: &str,
        sealed: &[u8],
    ) -> Result<Vec<u8>, OpenError> {
        let cipher = self
            .ciphers
            .get(key_id)
            .ok_or_else(|| OpenError::MissingKey(key_id.to_owned()))?;
        let failed = || OpenError::Failed(key_id.to_owned());
        if sealed.len() < NONCE_BYTES + TAG_BYTES {
            return Err(failed());
        }
        let (nonce, rest) = sealed.split_at(NONCE_BYTES);
        let (body, tag) = rest.split_at(rest.len() - TAG_BYTES);
        let mut clear = body.to_vec();
        cipher
            .decrypt_in_place_detached(
                Nonce::from_slice(nonce),
                &associated_data(record_id, field),
                &mut clear,
                Tag::from_slice(tag),
            )
            .map_err(|_| failed())?;
        Ok(clear)
    }
}

/// How a sealed text begins (see [`Keys::seal_text`]).
const SEALED_TEXT: &str = "sealed:";

/// Seals fields with the active key. Every field gets a nonce of its own: a random
/// 96-bit base drawn for the sealer, with a per-field counter folded into its last four
/// bytes, so one call to the OS generator serves a whole batch.
pub struct Sealer<'a> {
    cipher: &'a Aes256Gcm,
    base: [u8; NONCE_BYTES],
    counter: u32,
}

impl Sealer<'_> {
    /// The nonce, then the ciphertext and its tag. The associated data binds them to
    /// their record and field, so sealed bytes moved to another record or field no
    /// longer open.
    pub fn seal(&mut self, record_id: &str, field: &str, plaintext: &[u8]) -> Option<Vec<u8>> {
        let mut nonce = self.base;
        for (n, c) in nonce[NONCE_BYTES - 4..]
            .iter_mut()
            .zip(self.counter.to_be_bytes())
        {
            *n ^= c;
        }
        self.counter = self.counter.checked_add(1)?;
        let mut out = Vec::with_capacity(NONCE_BYTES + plaintext.len() + TAG_BYTES);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = self
            .cipher
            .encrypt_in_place_detached(
                Nonce::from_slice(&nonce),
                &associated_data(record_id, field),
                &mut out[NONCE_BYTES..],
            )
            .ok()?;
        out.extend_from_slice(&tag);
        Some(out)
    }
}

fn associated_data(record_id: &str, field: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(24 + record_id.len() + field.len());
    aad.extend_from_slice(b"sidelight-audit seal v1\0");
    aad.extend_from_slice(record_id.as_bytes());
    aad.push(0);
    aad.extend_from_slice(field.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const MASTER: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[test]
    fn a_bare_master_key_seals_with_the_derived_key() {
        let keys = Keys::parse(MASTER.as_bytes(), "test").unwrap();
        assert_eq!(keys.active_id(), DERIVED_KEY_ID);
        let sealed = keys.seal("r1", "request", b"hello").unwrap();
        assert_ne!(&sealed[NONCE_BYTES..], b"hello");
        assert_eq!(
            keys.open(DERIVED_KEY_ID, "r1", "request", &sealed).unwrap(),
            b"hello"
        );
        // Bound to record and field.
        assert!(keys.open(DERIVED_KEY_ID, "r2", "request", &sealed).is_err());
        assert!(
            keys.open(DERIVED_KEY_ID, "r1", "response", &sealed)
                .is_err()
        );
        // Two seals of the same text differ (fresh nonce).
        assert_ne!(sealed, keys.seal("r1", "request", b"hello").unwrap());
    }

    #[test]
    fn a_rotated_keyring_round_trips_and_still_opens_old_records() {
        let mut keys = Keys::parse(MASTER.as_bytes(), "test").unwrap();
        let old = keys.seal("r1", "features", b"{}").unwrap();
        keys.rotate("k1").unwrap();
        let text = keys.to_keyring_text();
        let again = Keys::parse(text.as_bytes(), "file").unwrap();
        assert_eq!(again.active_id(), "k1");
        assert!(again.is_keyring());
        assert_eq!(
            again.open(DERIVED_KEY_ID, "r1", "features", &old).unwrap(),
            b"{}"
        );
        let new = again.seal("r1", "features", b"[]").unwrap();
        assert_eq!(keys.open("k1", "r1", "features", &new).unwrap(), b"[]");
        assert_eq!(
            again.pseudonym("customer-7"),
            keys.pseudonym("customer-7"),
            "pseudonyms survive rotation"
        );
    }

    #[test]
    fn a_wrong_key_is_told_apart_from_a_missing_one() {
        let keys = Keys::parse(MASTER.as_bytes(), "test").unwrap();
        let other = Keys::parse(MASTER.replace('0', "1").as_bytes(), "test").unwrap();
        let sealed = keys.seal("r", "texts", b"x").unwrap();
        assert_eq!(
            other.open(DERIVED_KEY_ID, "r", "texts", &sealed),
            Err(OpenError::Failed(DERIVED_KEY_ID.to_owned()))
        );
        assert_eq!(
            other.open("k9", "r", "texts", &sealed),
            Err(OpenError::MissingKey("k9".to_owned()))
        );
    }

    #[test]
    fn malformed_key_text_names_what_is_wrong() {
        let e = Keys::parse(b"master = \"zz\"\nactive = \"master\"\n", "keys.toml").unwrap_err();
        assert!(e.to_string().contains("keys.toml"), "{e}");
        assert!(e.to_string().contains("master"), "{e}");
        let e = Keys::parse(
            format!("master = \"{MASTER}\"\nactive = \"k2\"\n").as_bytes(),
            "f",
        )
        .unwrap_err();
        assert!(e.to_string().contains("k2"), "{e}");
        assert!(matches!(
            Keys::parse(b"0011", "f"),
            Err(KeyError::TooShort { .. })
        ));
        let dbg = format!("{:?}", Keys::parse(MASTER.as_bytes(), "t").unwrap());
        assert!(!dbg.contains("0011223344"), "{dbg}");
    }

    #[test]
    fn pseudonyms_are_stable_and_keyed() {
        let keys = Keys::parse(MASTER.as_bytes(), "t").unwrap();
        let other = Keys::parse(MASTER.replace('f', "e").as_bytes(), "t").unwrap();
        assert_eq!(keys.pseudonym("alice"), keys.pseudonym("alice"));
        assert_ne!(keys.pseudonym("alice"), keys.pseudonym("bob"));
        assert_ne!(keys.pseudonym("alice"), other.pseudonym("alice"));
        assert!(keys.pseudonym("alice").starts_with("ps_"));
    }
}
