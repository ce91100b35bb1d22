//! The reader interface every file format implements, and what readers report.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::value::Cell;
use crate::{Error, Result};

/// What happened to one source row before typing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowStatus {
    Ok,
    /// Shorter than the header; missing cells load as NULL and the row is flagged.
    Padded {
        fields: usize,
        expected: usize,
    },
    /// Cannot be loaded at all (too many fields, undecodable bytes, malformed record …).
    Reject(String),
}

/// Where a row came from and how it fared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowMeta {
    /// Line (CSV, NDJSON), sheet row (Excel) or starting line (JSON array element), 1-based.
    pub line: i64,
    pub status: RowStatus,
}

/// A block of rows from one file, in source column order.
pub trait Chunk: Send {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn meta(&self, row: usize) -> &RowMeta;
    /// The cell at `col` (source column index); NULL past the end of a short row.
    fn cell(&self, row: usize, col: usize) -> Cell<'_>;
    /// The row as delivered, for quarantine.
    fn raw(&self, row: usize) -> String;
}

/// A line that is not data (title, note, source line) and was skipped, kept for the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SkippedLine {
    pub line: i64,
    pub kind: &'static str,
    pub text: String,
}

/// What a reader found out about its file.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct FileReport {
    pub path: String,
    pub format: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding_source: Option<crate::decode::EncodingSource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delimiter: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sheet: Option<String>,
    /// Line of the header row, 1-based (0 when the file has no header).
    pub header_line: i64,
    pub skipped: Vec<SkippedLine>,
    /// Header names that were changed to be usable (empty, duplicate, reserved).
    #[schema(value_type = Vec<Vec<String>>)]
    pub renamed_columns: Vec<(String, String)>,
    pub bytes: u64,
}

/// Reads one file as chunks of rows.
pub trait RowReader: Send {
    /// Column names, from the header or generated.
    fn columns(&self) -> &[String];
    /// The next block of at most `max_rows` rows; `None` at the end.
    fn next_chunk(&mut self, max_rows: usize) -> Result<Option<Box<dyn Chunk>>>;
    /// Bytes consumed from the file so far.
    fn bytes_read(&self) -> u64;
    /// The report, complete once `next_chunk` returned `None`.
    fn report(&self) -> FileReport;
}

/// File formats Reservoir reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Tsv,
    Xlsx,
    Xls,
    Json,
    Ndjson,
}

impl Format {
    pub fn from_path(path: &Path) -> Result<Self> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        Ok(match ext.as_str() {
            "csv" | "txt" => Self::Csv,
            "tsv" | "tab" => Self::Tsv,
            "xlsx" | "xlsm" | "xlsb" | "ods" => Self::Xlsx,
            "xls" => Self::Xls,
            "json" => Self::Json,
            "ndjson" | "jsonl" => Self::Ndjson,
            _ => {
                return Err(Error::UnknownFormat {
                    path: path.to_path_buf(),
                });
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Tsv => "tsv",
            Self::Xlsx => "xlsx",
            Self::Xls => "xls",
            Self::Json => "json",
            Self::Ndjson => "ndjson",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::from_path(&PathBuf::from(format!("x.{s}"))).map_err(|_| {
            Error::Invalid(format!(
                "unknown format {s:?}; expected csv, tsv, xlsx, xls, json or ndjson"
            ))
        })
    }
}

/// Makes header names usable as column names: trimmed, never empty, unique, and never one of the
/// lake's own metadata columns. Returns the names and the list of renames.
pub fn clean_header(raw: &[String]) -> (Vec<String>, Vec<(String, String)>) {
    let mut names: Vec<String> = Vec::with_capacity(raw.len());
    let mut renamed = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let trimmed = r.trim_matches(|c: char| c.is_whitespace() || c == '\u{FEFF}');
        let mut name = if trimmed.is_empty() {
            format!("column_{}", i + 1)
        } else {
            trimmed.to_string()
        };
        if reservoir_lake::meta::ALL.contains(&name.as_str()) {
            name = format!("{name}_src");
        }
        let base = name.clone();
        let mut k = 2;
        while names.contains(&name) {
            name = format!("{base}_{k}");
            k += 1;
        }
        if name != *r {
            renamed.push((r.clone(), name.clone()));
        }
        names.push(name);
    }
    (names, renamed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_cleaning() {
        let raw: Vec<String> = ["\u{FEFF}地区", "", "2024年", " 2024年 ", "_batch"]
            .map(String::from)
            .to_vec();
        let (names, renamed) = clean_header(&raw);
        assert_eq!(
            names,
            ["地区", "column_2", "2024年", "2024年_2", "_batch_src"]
        );
        assert_eq!(renamed.len(), 4);
    }
}
