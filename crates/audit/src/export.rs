//! Records as other tools read them: one JSON object per record (the admin API and
//! `sidelight audit export --format jsonl`), or feature rows as CSV with the model's
//! prediction as the last column(s), which `sidelight surrogate fit --target prediction`
//! reads as it is.

use std::io::Write;

use base64::Engine;
use serde_json::{Value, json};

use crate::store::Stored;

/// Why an export stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Writing the output failed.
    #[error("writing the export: {0}")]
    Io(#[from] std::io::Error),
    /// Writing a CSV row failed.
    #[error("writing the CSV: {0}")]
    Csv(#[from] csv::Error),
}

/// Unix milliseconds as RFC 3339 (UTC); the number itself when out of range.
pub fn rfc3339_ms(time_ms: i64) -> String {
    u64::try_from(time_ms)
        .ok()
        .map(|ms| std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        .map_or_else(
            || time_ms.to_string(),
            |t| humantime::format_rfc3339_millis(t).to_string(),
        )
}

fn payload(bytes: Option<&Vec<u8>>) -> Value {
    match bytes {
        None => Value::Null,
        Some(b) => serde_json::from_slice(b).unwrap_or_else(
            |_| json!({ "base64": base64::engine::general_purpose::STANDARD.encode(b) }),
        ),
    }
}

/// A stored record as one JSON object. Payloads that are JSON are embedded as JSON;
/// others as `{"base64": "…"}`.
pub fn record_json(stored: &Stored) -> Value {
    let r = &stored.record;
    json!({
        "seq": stored.seq,
        "id": r.id,
        "time": rfc3339_ms(r.time_ms),
        "time_ms": r.time_ms,
        "route": r.route,
        "model": r.model,
        "consent": r.consent.as_str(),
        "subject": r.subject,
        "review_state": r.review_state,
        "review_reasons": r.review_reasons,
        "surrogate_version": r.surrogate_version,
        "request": payload(r.request.as_ref()),
        "response": payload(r.response.as_ref()),
        "features": r.features,
        "outputs": r.outputs,
        "attributions": r.attributions,
        "texts": r.texts,
        "erased_at": r.erased_at.map(rfc3339_ms),
        "erased_reason": r.erased_reason,
        "prev_hash": r.prev_hash,
        "hash": r.hash,
    })
}

/// Writes one record per line.
pub fn write_jsonl(out: &mut impl Write, stored: &Stored) -> Result<(), ExportError> {
    serde_json::to_writer(&mut *out, &record_json(stored)).map_err(std::io::Error::from)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Feature rows as CSV. The columns are the first exported record's feature names, then
/// `prediction` (or `prediction_0`, `prediction_1`… for several outputs per row).
/// Records without features (erased, consent `none`) or with other columns are skipped
/// and counted.
pub struct CsvExport<W: Write> {
    writer: csv::Writer<W>,
    columns: Option<(Vec<String>, usize)>,
    /// Rows written.
    pub rows: u64,
    /// Records skipped: no features left, or not the first record's columns.
    pub skipped: u64,
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl<W: Write> CsvExport<W> {
    /// A CSV export into `out`; the header is written with the first usable record.
    pub fn new(out: W) -> Self {
        CsvExport {
            writer: csv::Writer::from_writer(out),
            columns: None,
            rows: 0,
            skipped: 0,
        }
    }

    /// Writes the rows of one record.
    pub fn push(&mut self, stored: &Stored) -> Result<(), ExportError> {
        let r = &stored.record;
        let names: Option<Vec<String>> = r
            .features
            .as_ref()
            .and_then(|f| f.get("names"))
            .and_then(|n| serde_json::from_value(n.clone()).ok());
        let rows = r
            .features
            .as_ref()
            .and_then(|f| f.get("rows"))
            .and_then(Value::as_array);
        let outputs = r.outputs.as_ref().and_then(Value::as_array);
        let (Some(names), Some(rows), Some(outputs)) = (names, rows, outputs) else {
            self.skipped += 1;
            return Ok(());
        };
        let width = outputs
            .first()
            .and_then(Value::as_array)
            .map_or(1, Vec::len);
        if self.columns.is_none() {
            let mut header = names.clone();
            if width == 1 {
                header.push("prediction".to_owned());
            } else {
                header.extend((0..width).map(|k| format!("prediction_{k}")));
            }
            self.writer.write_record(&header)?;
            self.columns = Some((names.clone(), width));
        }
        if self.columns.as_ref() != Some(&(names, width)) || rows.len() != outputs.len() {
            self.skipped += 1;
            return Ok(());
        }
        for (row, output) in rows.iter().zip(outputs) {
            let mut line: Vec<String> = row
                .as_array()
                .map(|cells| cells.iter().map(cell).collect())
                .unwrap_or_default();
            match output {
                Value::Array(values) => line.extend(values.iter().map(cell)),
                single => line.push(cell(single)),
            }
            self.writer.write_record(&line)?;
            self.rows += 1;
        }
        Ok(())
    }

    /// Flushes the output.
    pub fn finish(mut self) -> Result<(), ExportError> {
        self.writer.flush()?;
        Ok(())
    }
}
