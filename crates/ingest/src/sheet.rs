//! A catalog spreadsheet read whole into rows of text, for the directory import: CSV in any
//! encoding we detect (GBK, GB18030, UTF-8 with or without BOM, UTF-16), or a sheet of an
//! XLSX/XLS/ODS workbook. Catalogs are small (thousands of rows), so the sheet is read at once.

use std::path::Path;

use calamine::{Data, Reader, open_workbook_auto};
use chrono::NaiveTime;
use reservoir_catalog::directory::{Sheet, SheetRow};

use crate::reader::Format;
use crate::{Error, Result};

/// The most bytes a catalog file may have: far beyond any directory, small enough to read whole.
const MAX_BYTES: u64 = 256 * 1024 * 1024;

/// Reads a catalog file. `sheet` picks a workbook's sheet by name or 1-based number.
pub fn read_sheet(path: &Path, sheet: Option<&str>) -> Result<Sheet> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let size = std::fs::metadata(path).map_err(io)?.len();
    if size > MAX_BYTES {
        return Err(Error::Invalid(format!(
            "{}: {size} bytes is more than a catalog file may have ({MAX_BYTES})",
            path.display()
        )));
    }
    match Format::from_path(path)? {
        Format::Csv | Format::Tsv => read_csv(path),
        Format::Xlsx | Format::Xls => read_workbook(path, sheet),
        other => Err(Error::Invalid(format!(
            "{}: a catalog is read from CSV or a spreadsheet, not {}",
            path.display(),
            other.as_str()
        ))),
    }
}

fn read_csv(path: &Path) -> Result<Sheet> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let choice = crate::decode::detect(&bytes, true);
    let (text, _, malformed) = choice.encoding.decode(&bytes);
    if malformed {
        let at = crate::decode::first_malformed(choice.encoding, &bytes, true);
        return Err(Error::Parse {
            path: path.to_path_buf(),
            message: format!(
                "not valid {} text{}; save the catalog as UTF-8 or GBK",
                choice.encoding.name(),
                at.map(|m| format!(
                    " at byte {} ({})",
                    m.offset,
                    crate::decode::hex_bytes(&m.bytes)
                ))
                .unwrap_or_default()
            ),
        });
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let delimiter = crate::csv::sniff_delimiter(text.as_bytes(), b'"', false);
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(text.as_bytes());
    let mut rows = Vec::new();
    let mut record = ::csv::StringRecord::new();
    // The csv crate counts records, not lines; a line is what an editor shows, so count the
    // line breaks before each record's first byte.
    let bytes = text.as_bytes();
    let (mut line, mut counted) = (1u64, 0usize);
    let mut line_at = |offset: usize| {
        let offset = offset.min(bytes.len());
        if offset > counted {
            line += bytes[counted..offset]
                .iter()
                .filter(|b| **b == b'\n')
                .count() as u64;
            counted = offset;
        }
        line
    };
    loop {
        let before = reader.position().byte() as usize;
        match reader.read_record(&mut record) {
            Ok(true) => {
                // The reported start may be the line break that ended the previous record.
                let mut start = record.position().map_or(before, |p| p.byte() as usize);
                while bytes.get(start).is_some_and(|b| *b == b'\r' || *b == b'\n') {
                    start += 1;
                }
                rows.push(SheetRow {
                    line: line_at(start),
                    cells: record.iter().map(str::to_string).collect(),
                });
            }
            Ok(false) => break,
            Err(e) => {
                return Err(Error::Parse {
                    path: path.to_path_buf(),
                    message: format!("line {}: {e}", line_at(before)),
                });
            }
        }
    }
    Ok(Sheet {
        source: path.display().to_string(),
        rows,
    })
}

fn read_workbook(path: &Path, sheet: Option<&str>) -> Result<Sheet> {
    let parse_err = |message: String| Error::Parse {
        path: path.to_path_buf(),
        message,
    };
    let mut workbook = open_workbook_auto(path).map_err(|e| parse_err(e.to_string()))?;
    let names = workbook.sheet_names();
    let name = match sheet {
        None => names
            .first()
            .cloned()
            .ok_or_else(|| parse_err("the workbook has no sheets".into()))?,
        Some(s) => names
            .iter()
            .find(|n| *n == s)
            .or_else(|| {
                s.parse::<usize>()
                    .ok()
                    .and_then(|i| i.checked_sub(1))
                    .and_then(|i| names.get(i))
            })
            .cloned()
            .ok_or_else(|| Error::SheetNotFound {
                path: path.to_path_buf(),
                sheet: s.to_string(),
                available: names.join(", "),
            })?,
    };
    let range = workbook
        .worksheet_range(&name)
        .map_err(|e| parse_err(format!("sheet {name:?}: {e}")))?;
    let first_row = range.start().map(|(r, _)| u64::from(r) + 1).unwrap_or(1);
    let rows = range
        .rows()
        .enumerate()
        .map(|(i, r)| SheetRow {
            line: first_row + i as u64,
            cells: r.iter().map(cell_text).collect(),
        })
        .collect();
    Ok(Sheet {
        source: format!("{} (sheet {name})", path.display()),
        rows,
    })
}

/// A cell as a catalog means it: whole numbers without `.0`, dates as `YYYY-MM-DD[ HH:MM:SS]`.
fn cell_text(d: &Data) -> String {
    match d {
        Data::Empty => String::new(),
        Data::String(s) => s.clone(),
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
        Data::DateTime(dt) => match dt.as_datetime() {
            Some(t) if t.time() == NaiveTime::MIN => t.date().to_string(),
            Some(t) => t.format("%Y-%m-%d %H:%M:%S").to_string(),
            None => dt.as_f64().to_string(),
        },
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gbk_csv_with_quoted_line_breaks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("目录.csv");
        let text = "数据目录名称,数据提供方,数据摘要\r\n人口,统计局,\"第一行\r\n第二行\"\r\n法人,市场监管局,x\r\n";
        let (bytes, _, _) = encoding_rs::GBK.encode(text);
        std::fs::write(&path, &bytes).unwrap();
        let sheet = read_sheet(&path, None).unwrap();
        assert_eq!(sheet.rows.len(), 3);
        assert_eq!(sheet.rows[1].cells[2], "第一行\r\n第二行");
        assert_eq!(sheet.rows[2].line, 4, "the quoted break spans a line");
    }
}
