//! Rendering query results as a text table, CSV or JSON.

use std::io::Write;

use arrow::array::RecordBatch;
use arrow::util::pretty::pretty_format_batches;

use crate::Result;

/// Output formats for query results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// A box-drawn table for people.
    Table,
    /// RFC 4180 CSV with a header row.
    Csv,
    /// A JSON array of objects.
    Json,
    /// One JSON object per line.
    Ndjson,
}

impl std::str::FromStr for OutputFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "table" => Ok(Self::Table),
            "csv" => Ok(Self::Csv),
            "json" => Ok(Self::Json),
            "ndjson" | "jsonl" => Ok(Self::Ndjson),
            other => Err(format!(
                "unknown output format {other:?}; expected table, csv, json or ndjson"
            )),
        }
    }
}

/// Writes batches in the chosen format.
pub fn write_batches(
    out: &mut dyn Write,
    batches: &[RecordBatch],
    format: OutputFormat,
) -> Result<()> {
    match format {
        OutputFormat::Table => {
            writeln!(out, "{}", pretty_format_batches(batches)?)?;
        }
        OutputFormat::Csv => {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(out);
            for b in batches {
                w.write(b)?;
            }
        }
        OutputFormat::Json => {
            let mut w = arrow::json::ArrayWriter::new(&mut *out);
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            w.write_batches(&refs)?;
            w.finish()?;
            writeln!(out)?;
        }
        OutputFormat::Ndjson => {
            let mut w = arrow::json::LineDelimitedWriter::new(&mut *out);
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            w.write_batches(&refs)?;
            w.finish()?;
        }
    }
    Ok(())
}

/// Rows in a set of batches.
pub fn row_count(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}
