//! The witness: checkpoint heads published outside the database.
//!
//! Inside one database, deleting the last records together with their checkpoints
//! leaves a shorter log that verifies. A witness is an append-only file, kept where the
//! database's writer cannot rewrite it (another volume, a file system with `chattr +a`,
//! a log shipper that forwards it), to which a running proxy appends the head of its
//! chain — seq, hash and the checkpoint MAC — at a fixed interval. Verification then
//! names a missing tail: a head the witness saw that the log no longer reaches.
//!
//! One JSON object per line, so that the file reads with any JSON tool:
//! `{"sidelight_witness":1,"writer":"","seq":42,"hash":"…","mac":"…","time_ms":…}`.

use crate::store::{AuditStore, Checkpoint, StoreError, checkpoint_mac_ok};
use crate::verify::VerifyReport;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The format version written in every line.
const VERSION: u32 = 1;

/// One published head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WitnessLine {
    /// Always 1: marks the line as a witness line of this format.
    pub sidelight_witness: u32,
    /// The writer whose chain it is (`""` for a SQLite log).
    pub writer: String,
    /// The checkpointed record's seq in that chain.
    pub seq: u64,
    /// That record's hash.
    pub hash: String,
    /// The checkpoint's MAC: only a key holder can write a line that verifies.
    pub mac: String,
    /// When it was published, unix milliseconds.
    pub time_ms: i64,
}

/// Errors reading or holding a log against a witness.
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    /// The witness file could not be read.
    #[error("witness {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not a witness line.
    #[error("witness {path}, line {line}: not a witness line ({why})")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Line number, from 1.
        line: usize,
        /// Why.
        why: String,
    },
    /// A line's MAC does not verify under the key: not written by a key holder.
    #[error(
        "witness {path}, line {line}: the MAC does not verify under the key (not written by a key holder, or another log's witness)"
    )]
    BadMac {
        /// The file.
        path: PathBuf,
        /// Line number, from 1.
        line: usize,
    },
    /// The log ends before a head that was published: its tail was cut.
    #[error(
        "tail missing{}: the witness saw seq {seq} (hash {hash}) but the log ends at seq {last_seq}",
        in_writer(.writer)
    )]
    TailMissing {
        /// The writer.
        writer: String,
        /// The seq the witness saw.
        seq: u64,
        /// Its hash.
        hash: String,
        /// Where the log ends.
        last_seq: u64,
    },
    /// The log holds a different record where the witness saw one: its history was
    /// rewritten.
    #[error(
        "history rewritten{}: the record at seq {seq} has hash {found}, the witness saw {hash}",
        in_writer(.writer)
    )]
    Rewritten {
        /// The writer.
        writer: String,
        /// The seq.
        seq: u64,
        /// The hash the witness saw.
        hash: String,
        /// The hash in the log.
        found: String,
    },
    /// The log is shorter than the operator said it must be.
    #[error("tail missing{}: expected at least seq {expected}, the log ends at seq {last_seq}", in_writer(.writer))]
    ShorterThanExpected {
        /// The writer.
        writer: String,
        /// The seq expected.
        expected: u64,
        /// Where the log ends.
        last_seq: u64,
    },
    /// The store could not be read.
    #[error("reading the store: {0}")]
    Store(#[from] StoreError),
}

fn in_writer(writer: &str) -> String {
    match writer.is_empty() {
        true => String::new(),
        false => format!(" in the chain of writer `{writer}`"),
    }
}

/// An append-only witness file that a running proxy publishes its chain's head to.
#[derive(Debug)]
pub struct FileWitness {
    path: PathBuf,
    file: File,
    last: Option<(String, u64)>,
}

impl FileWitness {
    /// Opens `path` for appending, creating it (mode 0600) if missing.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        Ok(FileWitness {
            path: path.to_owned(),
            file,
            last: None,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `writer`'s head (its last checkpoint) and syncs it to disk, unless it is
    /// the head published last. Returns whether a line was written.
    pub fn publish(
        &mut self,
        writer: &str,
        head: &Checkpoint,
        time_ms: i64,
    ) -> std::io::Result<bool> {
        if self
            .last
            .as_ref()
            .is_some_and(|(w, seq)| w == writer && *seq == head.seq)
        {
            return Ok(false);
        }
        let line = WitnessLine {
            sidelight_witness: VERSION,
            writer: writer.to_owned(),
            seq: head.seq,
            hash: head.hash.clone(),
            mac: head.mac.clone(),
            time_ms,
        };
        let mut text = serde_json::to_vec(&line).map_err(std::io::Error::other)?;
        text.push(b'\n');
        // One write of a whole line: appends of a line this short are not interleaved.
        self.file.write_all(&text)?;
        self.file.sync_data()?;
        self.last = Some((writer.to_owned(), head.seq));
        Ok(true)
    }
}

/// Reads a witness file: every non-empty line must be a witness line whose MAC verifies
/// under `key`.
pub fn read_witness(path: &Path, key: &[u8]) -> Result<Vec<WitnessLine>, WitnessError> {
    let read = |source| WitnessError::Read {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(read)?;
    let mut out = Vec::new();
    for (i, text) in BufReader::new(file).lines().enumerate() {
        let text = text.map_err(read)?;
        if text.trim().is_empty() {
            continue;
        }
        let line: WitnessLine =
            serde_json::from_str(&text).map_err(|e| WitnessError::Malformed {
                path: path.to_owned(),
                line: i + 1,
                why: e.to_string(),
            })?;
        if line.sidelight_witness != VERSION {
            return Err(WitnessError::Malformed {
                path: path.to_owned(),
                line: i + 1,
                why: format!("unknown version {}", line.sidelight_witness),
            });
        }
        if !checkpoint_mac_ok(key, line.seq, &line.hash, &line.mac) {
            return Err(WitnessError::BadMac {
                path: path.to_owned(),
                line: i + 1,
            });
        }
        out.push(line);
    }
    Ok(out)
}

/// What holding a log against its witness found: per writer, the latest head the
/// witness saw (all present, with the hashes it saw).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WitnessReport {
    /// Lines read.
    pub lines: u64,
    /// Per writer, the highest seq the witness saw.
    pub heads: BTreeMap<String, u64>,
}

/// Where each writer's chain ends now: the verified end plus what was appended since.
fn ends(report: &VerifyReport) -> BTreeMap<&str, u64> {
    report
        .writers
        .iter()
        .map(|w| (w.writer.as_str(), w.last_seq + w.appended_since))
        .collect()
}

/// Holds an intact log (its [`VerifyReport`]) against the witness, read *before* the
/// verification (so that a head published meanwhile is not taken for a cut): for each writer, the
/// latest head the witness saw must be in the log with the same hash (a key holder who
/// rewrote history changed it; every later record's hash depends on it, so the latest
/// head covers the earlier ones).
pub fn check_witness<S: AuditStore + ?Sized>(
    store: &S,
    report: &VerifyReport,
    lines: &[WitnessLine],
) -> Result<WitnessReport, WitnessError> {
    let mut latest: BTreeMap<&str, &WitnessLine> = BTreeMap::new();
    for line in lines {
        let slot = latest.entry(line.writer.as_str()).or_insert(line);
        if line.seq > slot.seq {
            *slot = line;
        }
    }
    let ends = ends(report);
    for (writer, head) in &latest {
        let last_seq = ends.get(writer).copied().unwrap_or(0);
        // Read the witness before verifying: then every head in it was committed before
        // the snapshot, and one beyond the log's end is a cut tail, never a late append.
        if head.seq > last_seq {
            return Err(WitnessError::TailMissing {
                writer: (*writer).to_owned(),
                seq: head.seq,
                hash: head.hash.clone(),
                last_seq,
            });
        }
        let row = store.writer_chain_rows(writer, Some(head.seq.saturating_sub(1)), 1)?;
        let found = row
            .first()
            .filter(|r| r.seq == head.seq)
            .map(|r| r.hash.clone())
            .unwrap_or_default();
        if found != head.hash {
            return Err(WitnessError::Rewritten {
                writer: (*writer).to_owned(),
                seq: head.seq,
                hash: head.hash.clone(),
                found,
            });
        }
    }
    Ok(WitnessReport {
        lines: lines.len() as u64,
        heads: latest
            .into_iter()
            .map(|(w, l)| (w.to_owned(), l.seq))
            .collect(),
    })
}

/// Holds an intact log against seqs the operator knows it reached (`--expect-seq`):
/// `writer → seq`.
pub fn check_expected(
    report: &VerifyReport,
    expected: &BTreeMap<String, u64>,
) -> Result<(), WitnessError> {
    let ends = ends(report);
    for (writer, &seq) in expected {
        let last_seq = ends.get(writer.as_str()).copied().unwrap_or(0);
        if seq > last_seq {
            return Err(WitnessError::ShorterThanExpected {
                writer: writer.clone(),
                expected: seq,
                last_seq,
            });
        }
    }
    Ok(())
}
