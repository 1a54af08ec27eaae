//! The report's verification section: the whole log verified with the report's key.
//!
//! `sidelight_audit::verify` reads the log in one snapshot, so a log that a running
//! proxy keeps appending to is verified as it stood, and what was appended meanwhile is
//! counted (and held to the checkpoints) rather than reported as a forged append.

use sidelight_audit::{AuditStore, Keys};

use super::{VerificationSection, WriterVerification};

/// Verifies the whole log.
pub(super) fn verify<S: AuditStore>(store: S, keys: &Keys) -> VerificationSection {
    let report = match sidelight_audit::verify(&store, keys.checkpoint_key()) {
        Ok(r) => r,
        Err(e) => {
            return VerificationSection {
                ok: false,
                records: 0,
                checkpoints: 0,
                erased: 0,
                erasures: 0,
                reviews_not_applied: 0,
                last_seq: 0,
                last_hash: None,
                appended_while_verifying: 0,
                error: Some(e.to_string()),
                writers: Vec::new(),
            };
        }
    };
    VerificationSection {
        ok: true,
        records: report.records,
        checkpoints: report.checkpoints,
        erased: report.erased,
        erasures: report.erasures,
        reviews_not_applied: report.reviews_not_applied,
        last_seq: report.last_seq,
        last_hash: Some(report.last_hash),
        appended_while_verifying: report.appended_since,
        error: None,
        writers: report
            .writers
            .into_iter()
            .map(|w| WriterVerification {
                writer: w.writer,
                records: w.records,
                checkpoints: w.checkpoints,
                erased: w.erased,
                last_seq: w.last_seq,
                last_hash: w.last_hash,
                appended_while_verifying: w.appended_since,
            })
            .collect(),
    }
}
