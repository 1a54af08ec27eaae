//! Attributions for notebooks: a [`Frame`] as one table, one row per explained
//! prediction, as CSV or Parquet, so that pandas, polars or DuckDB read it at once.
//!
//! Columns: `time`, `record_id`, `row` (and `rank` on a ranking route), one column per
//! feature as recorded (after the privacy policy; features marked `pii` masked),
//! `prediction` (what the attributions explain: `base_value + Σ shap_*`, exactly as
//! written), `model_prediction` (the model's own answer as it returned it: a
//! probability where `space` is `logit`), `space`,
//! `base_value`, one `shap_<feature>` per feature, `surrogate_version`, `decision`,
//! `outcome` and `review_state`. A feature whose name is one of these columns is
//! written as `feature_<name>`.
//!
//! The export is whole or refused: a frame cut short by its row cap or time budget, or
//! one that left out rows explained over another feature set, is never written (see
//! [`ExportError::Truncated`] and [`ExportError::Mixed`]).

use std::io::Write;
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, StringBuilder, TimestampMillisecondBuilder, UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use serde_json::Value as Json;

use crate::explained::{ExplainedRow, Frame, Stop};

/// `csv` or `parquet`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Parquet,
}

impl Format {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "csv" => Some(Self::Csv),
            "parquet" => Some(Self::Parquet),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Csv => "text/csv; charset=utf-8",
            Self::Parquet => "application/vnd.apache.parquet",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Parquet => "parquet",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The read stopped short: writing what was read would look complete.
    #[error("{}", truncated_message(*.stop, *.rows, *.through_ms))]
    Truncated {
        stop: Stop,
        rows: usize,
        through_ms: Option<i64>,
    },
    /// Rows of the period were explained over another feature set or space: a file
    /// without them would look complete.
    #[error(
        "{0} explained rows of the period are over another feature set or space (the \
         schema or the surrogate's output changed within it): export a period on one side \
         of the change"
    )]
    Mixed(u64),
    #[error("writing CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error("writing Parquet: {0}")]
    Parquet(String),
    #[error("writing: {0}")]
    Io(#[from] std::io::Error),
}

fn truncated_message(stop: Stop, rows: usize, through_ms: Option<i64>) -> String {
    let through = through_ms.map_or(String::new(), |t| {
        format!(" (it reached records of unix ms {t})")
    });
    match stop {
        Stop::RowCap => format!(
            "the period holds more than {rows} explained rows, the export's cap{through}: ask for a shorter period"
        ),
        Stop::TimeBudget => format!(
            "reading the period took longer than the export's time budget after {rows} rows{through}: ask for a shorter period"
        ),
    }
}

/// The mask written in place of a personal value.
pub const MASKED: &str = "•••";

const FIXED: [&str; 12] = [
    "time",
    "record_id",
    "row",
    "rank",
    "prediction",
    "model_prediction",
    "space",
    "base_value",
    "surrogate_version",
    "decision",
    "outcome",
    "review_state",
];

/// The column name of a feature.
pub fn feature_column(name: &str) -> String {
    if FIXED.contains(&name) || name.starts_with("shap_") || name.starts_with("feature_") {
        format!("feature_{name}")
    } else {
        name.to_owned()
    }
}

/// How a feature's column is typed: by what every recorded value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Number,
    Bool,
    Text,
}

fn kind_of(frame: &Frame, k: usize, masked: bool) -> Kind {
    if masked {
        return Kind::Text;
    }
    let values = frame
        .rows
        .iter()
        .map(|r| &r.values[k])
        .filter(|v| !v.is_null());
    if values.clone().all(Json::is_number) {
        Kind::Number
    } else if values.clone().all(Json::is_boolean) {
        Kind::Bool
    } else {
        Kind::Text
    }
}

fn text(value: &Json) -> Option<String> {
    match value {
        Json::Null => None,
        Json::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn decision(row: &ExplainedRow) -> Option<&'static str> {
    row.favourable
        .map(|f| if f { "favourable" } else { "unfavourable" })
}

/// Refuses a frame cut short.
fn whole(frame: &Frame) -> Result<(), ExportError> {
    if frame.other_features > 0 {
        return Err(ExportError::Mixed(frame.other_features));
    }
    match frame.stopped {
        Some(stop) => Err(ExportError::Truncated {
            stop,
            rows: frame.rows.len(),
            through_ms: frame.through_ms,
        }),
        None => Ok(()),
    }
}

/// Writes `frame` as `format` to `out`; features named in `masked` are written as
/// [`MASKED`].
pub fn write(
    frame: &Frame,
    masked: &[String],
    format: Format,
    out: impl Write + Send,
) -> Result<(), ExportError> {
    whole(frame)?;
    match format {
        Format::Csv => write_csv(frame, masked, out),
        Format::Parquet => write_parquet(frame, masked, out),
    }
}

fn has_rank(frame: &Frame) -> bool {
    frame.rows.iter().any(|r| r.rank.is_some())
}

fn write_csv(frame: &Frame, masked: &[String], out: impl Write) -> Result<(), ExportError> {
    let mut csv = csv::Writer::from_writer(out);
    let ranked = has_rank(frame);
    let mut header: Vec<String> = vec!["time".into(), "record_id".into(), "row".into()];
    if ranked {
        header.push("rank".into());
    }
    header.extend(frame.names.iter().map(|n| feature_column(n)));
    header.extend(
        ["prediction", "model_prediction", "space", "base_value"]
            .iter()
            .map(|s| (*s).to_owned()),
    );
    header.extend(frame.names.iter().map(|n| format!("shap_{n}")));
    header.extend(
        ["surrogate_version", "decision", "outcome", "review_state"]
            .iter()
            .map(|s| (*s).to_owned()),
    );
    csv.write_record(&header)?;
    let hidden: Vec<bool> = frame.names.iter().map(|n| masked.contains(n)).collect();
    for row in &frame.rows {
        let mut cells: Vec<String> = vec![
            sidelight_audit::rfc3339_ms(row.time_ms),
            row.record.clone(),
            row.row.to_string(),
        ];
        if ranked {
            cells.push(row.rank.map(|r| r.to_string()).unwrap_or_default());
        }
        for (value, hide) in row.values.iter().zip(&hidden) {
            cells.push(if *hide {
                MASKED.to_owned()
            } else {
                text(value).unwrap_or_default()
            });
        }
        cells.push(row.prediction().to_string());
        cells.push(
            row.model_prediction
                .map(|p| p.to_string())
                .unwrap_or_default(),
        );
        cells.push(row.space.clone());
        cells.push(row.base.to_string());
        cells.extend(row.contributions.iter().map(f64::to_string));
        cells.push(
            row.surrogate_version
                .map(|v| v.to_string())
                .unwrap_or_default(),
        );
        cells.push(decision(row).unwrap_or_default().to_owned());
        cells.push(row.outcome.as_ref().and_then(text).unwrap_or_default());
        cells.push(row.review_state.clone());
        csv.write_record(&cells)?;
    }
    csv.flush()?;
    Ok(())
}

/// Rows per Parquet row group batch.
const BATCH: usize = 8192;

fn write_parquet(
    frame: &Frame,
    masked: &[String],
    out: impl Write + Send,
) -> Result<(), ExportError> {
    let parquet_error = |e: &dyn std::fmt::Display| ExportError::Parquet(e.to_string());
    let ranked = has_rank(frame);
    let kinds: Vec<Kind> = (0..frame.names.len())
        .map(|k| kind_of(frame, k, masked.contains(&frame.names[k])))
        .collect();
    let mut fields = vec![
        Field::new(
            "time",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("record_id", DataType::Utf8, false),
        Field::new("row", DataType::UInt64, false),
    ];
    if ranked {
        fields.push(Field::new("rank", DataType::UInt64, true));
    }
    for (name, kind) in frame.names.iter().zip(&kinds) {
        let data_type = match kind {
            Kind::Number => DataType::Float64,
            Kind::Bool => DataType::Boolean,
            Kind::Text => DataType::Utf8,
        };
        fields.push(Field::new(feature_column(name), data_type, true));
    }
    fields.push(Field::new("prediction", DataType::Float64, false));
    fields.push(Field::new("model_prediction", DataType::Float64, true));
    fields.push(Field::new("space", DataType::Utf8, false));
    fields.push(Field::new("base_value", DataType::Float64, false));
    for name in &frame.names {
        fields.push(Field::new(format!("shap_{name}"), DataType::Float64, false));
    }
    fields.push(Field::new("surrogate_version", DataType::UInt64, true));
    fields.push(Field::new("decision", DataType::Utf8, true));
    fields.push(Field::new("outcome", DataType::Utf8, true));
    fields.push(Field::new("review_state", DataType::Utf8, false));
    let schema = Arc::new(Schema::new(fields));
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .build();
    let mut writer = parquet::arrow::ArrowWriter::try_new(out, schema.clone(), Some(props))
        .map_err(|e| parquet_error(&e))?;
    for chunk in frame.rows.chunks(BATCH) {
        let columns = columns(chunk, &kinds, masked, &frame.names, ranked);
        let batch = RecordBatch::try_new(schema.clone(), columns).map_err(|e| parquet_error(&e))?;
        writer.write(&batch).map_err(|e| parquet_error(&e))?;
    }
    writer.close().map_err(|e| parquet_error(&e))?;
    Ok(())
}

fn columns(
    rows: &[ExplainedRow],
    kinds: &[Kind],
    masked: &[String],
    names: &[String],
    ranked: bool,
) -> Vec<ArrayRef> {
    let strings = |f: &dyn Fn(&ExplainedRow) -> Option<String>| -> ArrayRef {
        let mut b = StringBuilder::new();
        for row in rows {
            b.append_option(f(row));
        }
        Arc::new(b.finish())
    };
    let floats = |f: &dyn Fn(&ExplainedRow) -> Option<f64>| -> ArrayRef {
        let mut b = Float64Builder::new();
        for row in rows {
            b.append_option(f(row));
        }
        Arc::new(b.finish())
    };
    let unsigned = |f: &dyn Fn(&ExplainedRow) -> Option<u64>| -> ArrayRef {
        let mut b = UInt64Builder::new();
        for row in rows {
            b.append_option(f(row));
        }
        Arc::new(b.finish())
    };
    let mut time = TimestampMillisecondBuilder::new().with_timezone("UTC");
    for row in rows {
        time.append_value(row.time_ms);
    }
    let mut out: Vec<ArrayRef> = vec![
        Arc::new(time.finish()),
        strings(&|r| Some(r.record.clone())),
        unsigned(&|r| u64::try_from(r.row).ok()),
    ];
    if ranked {
        out.push(unsigned(&|r| r.rank));
    }
    for (k, kind) in kinds.iter().enumerate() {
        let hide = masked.contains(&names[k]);
        out.push(match kind {
            _ if hide => strings(&|_| Some(MASKED.to_owned())),
            Kind::Number => floats(&|r| r.values[k].as_f64()),
            Kind::Bool => {
                let mut b = BooleanBuilder::new();
                for row in rows {
                    b.append_option(row.values[k].as_bool());
                }
                Arc::new(b.finish())
            }
            Kind::Text => strings(&|r| text(&r.values[k])),
        });
    }
    out.push(floats(&|r| Some(r.prediction())));
    out.push(floats(&|r| r.model_prediction));
    out.push(strings(&|r| Some(r.space.clone())));
    out.push(floats(&|r| Some(r.base)));
    for k in 0..kinds.len() {
        out.push(floats(&|r| Some(r.contributions[k])));
    }
    out.push(unsigned(&|r| r.surrogate_version));
    out.push(strings(&|r| decision(r).map(str::to_owned)));
    out.push(strings(&|r| r.outcome.as_ref().and_then(text)));
    out.push(strings(&|r| Some(r.review_state.clone())));
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn features_never_collide_with_the_fixed_columns() {
        assert_eq!(feature_column("age"), "age");
        assert_eq!(feature_column("prediction"), "feature_prediction");
        assert_eq!(feature_column("shap_x"), "feature_shap_x");
    }
}
