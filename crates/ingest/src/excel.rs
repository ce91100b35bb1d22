//! Spreadsheets (XLSX, legacy XLS, XLSB, ODS) through calamine.
//!
//! A sheet is read into memory by calamine (Excel caps a sheet at 1,048,576 rows); rows are then
//! handed out in chunks like any other reader. Dates stored as serial numbers are converted
//! exactly, in the 1900 and 1904 date systems; the serial 60, which in the 1900 system stands for
//! the non-existent 1900-02-29, loads as NULL with a flag instead of being moved to another day.

use std::path::Path;

use calamine::{Data, ExcelDateTime, Reader, open_workbook_auto};
use chrono::{NaiveDate, NaiveTime, TimeDelta};

use crate::reader::{Chunk, FileReport, RowMeta, RowReader, RowStatus, SkippedLine, clean_header};
use crate::value::{Cell, Value};
use crate::{Error, Result};

/// Options for spreadsheets.
#[derive(Debug, Clone, Default)]
pub struct ExcelOptions {
    /// Sheet name or 1-based index; the first sheet by default.
    pub sheet: Option<String>,
    /// 1-based sheet row of the header; detected by default.
    pub header_row: Option<usize>,
    /// Whether there is a header row at all.
    pub no_header: bool,
}

/// Rows of one sheet.
pub struct ExcelReader {
    columns: Vec<String>,
    rows: std::vec::IntoIter<(i64, Vec<Value>)>,
    report: FileReport,
}

const HEADER_SCAN_ROWS: usize = 30;

fn non_empty(row: &[Data]) -> usize {
    row.iter()
        .filter(|c| match c {
            Data::Empty => false,
            Data::String(s) => !s.trim().is_empty(),
            _ => true,
        })
        .count()
}

fn data_text(d: &Data) -> String {
    match d {
        Data::Empty => String::new(),
        Data::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl ExcelReader {
    pub fn open(path: &Path, options: &ExcelOptions) -> Result<Self> {
        let parse_err = |message: String| Error::Parse {
            path: path.to_path_buf(),
            message,
        };
        let mut workbook = open_workbook_auto(path).map_err(|e| parse_err(e.to_string()))?;
        let names = workbook.sheet_names();
        let sheet = match &options.sheet {
            None => names
                .first()
                .cloned()
                .ok_or_else(|| parse_err("the workbook has no sheets".into()))?,
            Some(s) => {
                if names.iter().any(|n| n == s) {
                    s.clone()
                } else if let Some(n) = s
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| i.checked_sub(1))
                    .and_then(|i| names.get(i))
                {
                    n.clone()
                } else {
                    return Err(Error::SheetNotFound {
                        path: path.to_path_buf(),
                        sheet: s.clone(),
                        available: names.join(", "),
                    });
                }
            }
        };
        let range = workbook
            .worksheet_range(&sheet)
            .map_err(|e| parse_err(format!("sheet {sheet:?}: {e}")))?;
        let first_row = range.start().map(|(r, _)| r as i64 + 1).unwrap_or(1);
        let all: Vec<(i64, &[Data])> = range
            .rows()
            .enumerate()
            .map(|(i, r)| (first_row + i as i64, r))
            .filter(|(_, r)| non_empty(r) > 0)
            .collect();

        let mut report = FileReport {
            path: path.display().to_string(),
            format: "xlsx",
            sheet: Some(sheet.clone()),
            bytes: std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
            ..FileReport::default()
        };
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("xls"))
        {
            report.format = "xls";
        }

        // Header: given, or the first row that fills at least half the width of the widest row
        // near the top (title rows above it fill one cell).
        let header_idx = if options.no_header {
            None
        } else if let Some(h) = options.header_row {
            let idx = all
                .iter()
                .position(|(line, _)| *line == h as i64)
                .ok_or_else(|| {
                    parse_err(format!(
                        "header row {h} of sheet {sheet:?} is empty or outside the sheet"
                    ))
                })?;
            Some(idx)
        } else {
            let widest = all
                .iter()
                .take(HEADER_SCAN_ROWS)
                .map(|(_, r)| non_empty(r))
                .max()
                .unwrap_or(0);
            let need = widest.div_ceil(2).max(1);
            Some(
                all.iter()
                    .take(HEADER_SCAN_ROWS)
                    .position(|(_, r)| non_empty(r) >= need)
                    .ok_or_else(|| Error::NoHeader {
                        path: path.to_path_buf(),
                    })?,
            )
        };
        let data_start = header_idx.map(|h| h + 1).unwrap_or(0);
        for (line, r) in all.iter().take(header_idx.unwrap_or(0)) {
            report.skipped.push(SkippedLine {
                line: *line,
                kind: "preamble",
                text: row_text(r),
            });
        }
        let columns = match header_idx {
            Some(h) => {
                let (line, r) = all[h];
                report.header_line = line;
                let width = r
                    .iter()
                    .rposition(|c| !matches!(c, Data::Empty))
                    .map(|i| i + 1)
                    .unwrap_or(0);
                let raw: Vec<String> = r[..width].iter().map(data_text).collect();
                let (names, renamed) = clean_header(&raw);
                report.renamed_columns = renamed;
                names
            }
            None => {
                let width = all
                    .iter()
                    .map(|(_, r)| {
                        r.iter()
                            .rposition(|c| !matches!(c, Data::Empty))
                            .map(|i| i + 1)
                            .unwrap_or(0)
                    })
                    .max()
                    .unwrap_or(0);
                (1..=width).map(|i| format!("column_{i}")).collect()
            }
        };

        // Footer: note and source rows at the very end fill a single cell.
        let mut data_end = all.len();
        if columns.len() >= 3 {
            while data_end > data_start && non_empty(all[data_end - 1].1) <= 1 {
                data_end -= 1;
            }
        }
        for (line, r) in &all[data_end..] {
            report.skipped.push(SkippedLine {
                line: *line,
                kind: "footer",
                text: row_text(r),
            });
        }

        let rows: Vec<(i64, Vec<Value>)> = all[data_start..data_end]
            .iter()
            .map(|(line, r)| (*line, r.iter().map(to_value).collect()))
            .collect();
        Ok(Self {
            columns,
            rows: rows.into_iter(),
            report,
        })
    }
}

fn row_text(r: &[Data]) -> String {
    let width = r
        .iter()
        .rposition(|c| !matches!(c, Data::Empty))
        .map(|i| i + 1)
        .unwrap_or(0);
    r[..width]
        .iter()
        .map(data_text)
        .collect::<Vec<_>>()
        .join("\t")
}

/// Converts one cell, dates included.
fn to_value(d: &Data) -> Value {
    match d {
        Data::Empty => Value::Null,
        Data::String(s) if s.is_empty() => Value::Null,
        Data::String(s) => Value::Text(s.clone()),
        Data::Int(i) => Value::Int(*i),
        Data::Float(f) => Value::Float(*f),
        Data::Bool(b) => Value::Bool(*b),
        Data::DateTime(dt) => excel_datetime(dt),
        Data::DateTimeIso(s) => crate::value::parse_datetime_any(s)
            .map(|t| {
                if t.time() == NaiveTime::MIN {
                    Value::Date(t.date())
                } else {
                    Value::DateTime(t)
                }
            })
            .unwrap_or_else(|| Value::Text(s.clone())),
        Data::DurationIso(s) => Value::Text(s.clone()),
        Data::Error(e) => Value::Void(format!("Excel error value {e}")),
    }
}

/// Excel's day zero in the 1900 date system, counting the phantom leap day.
fn excel_epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(1899, 12, 30).unwrap_or(NaiveDate::MIN)
}

/// Converts a date serial. calamine knows the workbook's date system; it maps the 1900 system's
/// phantom day (serial 60) onto 1900-02-28, which we refuse to do.
pub fn excel_datetime(dt: &ExcelDateTime) -> Value {
    let serial = dt.as_f64();
    if dt.is_duration() {
        return Value::Text(format_duration(serial));
    }
    let Some(converted) = dt.as_datetime() else {
        return Value::Void(format!("Excel date serial {serial} is out of range"));
    };
    let whole = serial.floor();
    // In the 1904 system calamine's result lies 1,462 days after the 1900-system reading of the
    // same serial; in the 1900 system at most one day (the phantom-day correction).
    let naive_1900 = excel_epoch() + TimeDelta::days(whole as i64);
    let is_1904 = (converted.date() - naive_1900).num_days() > 2;
    if !is_1904 && whole == 60.0 {
        return Value::Void(
            "Excel date serial 60 means 1900-02-29, a day that does not exist (the 1900 leap-year bug); loaded as NULL"
                .into(),
        );
    }
    if !is_1904 && whole == 0.0 {
        // A time of day without a date.
        return Value::Text(converted.time().format("%H:%M:%S").to_string());
    }
    if converted.time() == NaiveTime::MIN {
        Value::Date(converted.date())
    } else {
        Value::DateTime(converted)
    }
}

fn format_duration(days: f64) -> String {
    let total = (days * 86_400.0).round() as i64;
    format!(
        "{}:{:02}:{:02}",
        total / 3600,
        (total % 3600) / 60,
        total % 60
    )
}

impl RowReader for ExcelReader {
    fn columns(&self) -> &[String] {
        &self.columns
    }

    fn next_chunk(&mut self, max_rows: usize) -> Result<Option<Box<dyn Chunk>>> {
        let width = self.columns.len();
        let mut rows = Vec::new();
        let mut meta = Vec::new();
        for (line, mut values) in self.rows.by_ref().take(max_rows) {
            let extra = values.iter().skip(width).any(|v| !matches!(v, Value::Null));
            let status = if extra {
                let used = values
                    .iter()
                    .rposition(|v| !matches!(v, Value::Null))
                    .map(|i| i + 1)
                    .unwrap_or(0);
                RowStatus::Reject(format!(
                    "row has values in {used} columns but the header has {width}"
                ))
            } else {
                values.truncate(width);
                RowStatus::Ok
            };
            meta.push(RowMeta { line, status });
            rows.push(values);
        }
        if rows.is_empty() {
            return Ok(None);
        }
        Ok(Some(Box::new(ValueChunk { rows, meta })))
    }

    fn bytes_read(&self) -> u64 {
        self.report.bytes
    }

    fn report(&self) -> FileReport {
        self.report.clone()
    }
}

/// Rows of owned values (Excel, JSON).
pub(crate) struct ValueChunk {
    pub(crate) rows: Vec<Vec<Value>>,
    pub(crate) meta: Vec<RowMeta>,
}

impl Chunk for ValueChunk {
    fn len(&self) -> usize {
        self.rows.len()
    }

    fn meta(&self, row: usize) -> &RowMeta {
        &self.meta[row]
    }

    fn cell(&self, row: usize, col: usize) -> Cell<'_> {
        self.rows[row]
            .get(col)
            .map(Value::as_cell)
            .unwrap_or(Cell::Null)
    }

    fn raw(&self, row: usize) -> String {
        let cells: Vec<serde_json::Value> = self.rows[row]
            .iter()
            .map(|v| match v.as_cell().to_text() {
                Some(t) => serde_json::Value::String(t),
                None => match v {
                    Value::Void(note) => serde_json::Value::String(format!("<{note}>")),
                    _ => serde_json::Value::Null,
                },
            })
            .collect();
        serde_json::Value::Array(cells).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use calamine::ExcelDateTimeType;

    fn date(serial: f64, is_1904: bool) -> Value {
        excel_datetime(&ExcelDateTime::new(
            serial,
            ExcelDateTimeType::DateTime,
            is_1904,
        ))
    }

    fn ymd(y: i32, m: u32, d: u32) -> Value {
        Value::Date(NaiveDate::from_ymd_opt(y, m, d).unwrap())
    }

    #[test]
    fn serials_in_the_1900_system() {
        assert_eq!(date(1.0, false), ymd(1900, 1, 1));
        assert_eq!(date(59.0, false), ymd(1900, 2, 28));
        assert!(matches!(date(60.0, false), Value::Void(_)));
        assert_eq!(date(61.0, false), ymd(1900, 3, 1));
        assert_eq!(date(45352.0, false), ymd(2024, 3, 1));
        match date(45352.5, false) {
            Value::DateTime(t) => assert_eq!(t.to_string(), "2024-03-01 12:00:00"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn serials_in_the_1904_system() {
        assert_eq!(date(0.0, true), ymd(1904, 1, 1));
        // Serial 60 is an ordinary day in 1904 terms.
        assert_eq!(date(60.0, true), ymd(1904, 3, 1));
        assert_eq!(date(43890.0, true), ymd(2024, 3, 1));
    }
}
