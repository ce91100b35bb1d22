//! Delimited text (CSV, TSV): encoding, delimiter, preamble and footer detection, streaming.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

use csv::StringRecord;
use encoding_rs::Encoding;

use crate::decode::{self, ByteCounter, DecodingReader, EncodingSource, MalformedLog};
use crate::reader::{Chunk, FileReport, RowMeta, RowReader, RowStatus, SkippedLine, clean_header};
use crate::value::Cell;
use crate::{Error, Result};

/// Options for delimited files. `None` means "detect".
#[derive(Debug, Clone)]
pub struct CsvOptions {
    pub encoding: Option<&'static Encoding>,
    /// Load with the declared encoding even if the file does not look like it.
    pub force_encoding: bool,
    pub delimiter: Option<u8>,
    pub quote: u8,
    /// Whether the first (non-preamble) row is a header.
    pub header: bool,
    /// Lines before the header to skip; `None` detects title lines.
    pub skip_lines: Option<usize>,
    /// Lines at the end to skip; `None` detects note/source lines.
    pub footer_lines: Option<usize>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        Self {
            encoding: None,
            force_encoding: false,
            delimiter: None,
            quote: b'"',
            header: true,
            skip_lines: None,
            footer_lines: None,
        }
    }
}

/// Bytes examined to detect the encoding.
const ENCODING_SAMPLE: usize = 1 << 20;
/// Decoded text examined to detect the delimiter.
const DELIMITER_SAMPLE: usize = 64 * 1024;
/// Records examined to find the preamble and header.
const LOOKAHEAD_RECORDS: usize = 64;
/// Preamble lines detected at most.
const MAX_PREAMBLE: usize = 20;

struct Pending {
    record: StringRecord,
    line: i64,
    malformed: Vec<decode::Malformed>,
}

/// Streaming reader for one delimited file.
pub struct CsvReader {
    path: PathBuf,
    reader: csv::Reader<Box<dyn Read + Send>>,
    malformed: MalformedLog,
    counter: ByteCounter,
    columns: Vec<String>,
    lookahead: VecDeque<Pending>,
    footer_hold: VecDeque<Pending>,
    ready: VecDeque<Pending>,
    footer_fixed: Option<usize>,
    eof: bool,
    report: FileReport,
    encoding: &'static Encoding,
    delimiter: u8,
    /// Records whose text has been copied into a chunk, to be read into again: reading a row
    /// then allocates nothing.
    spare: Vec<StringRecord>,
}

impl CsvReader {
    pub fn open(path: &Path, options: &CsvOptions, tab_default: bool) -> Result<Self> {
        let io_err = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = File::open(path).map_err(io_err)?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut sample = Vec::with_capacity(ENCODING_SAMPLE.min(size as usize));
        (&mut file)
            .take(ENCODING_SAMPLE as u64)
            .read_to_end(&mut sample)
            .map_err(io_err)?;
        let complete = (sample.len() as u64) >= size;

        let detected = decode::detect(&sample, complete);
        let (encoding, source) = match options.encoding {
            Some(declared) => {
                if !options.force_encoding {
                    check_declared(path, declared, &sample, complete, &detected)?;
                }
                (declared, EncodingSource::Declared)
            }
            None => (detected.encoding, detected.source),
        };

        let raw: Box<dyn Read + Send> = Box::new(Cursor::new(sample).chain(file));
        let mut decoding = DecodingReader::new(raw, encoding);
        let malformed = decoding.malformed_log();
        let counter = decoding.byte_counter();

        // Sniff the delimiter on the first decoded text, then parse the same text again.
        let mut head = Vec::with_capacity(DELIMITER_SAMPLE);
        (&mut decoding)
            .take(DELIMITER_SAMPLE as u64)
            .read_to_end(&mut head)
            .map_err(io_err)?;
        let delimiter = match options.delimiter {
            Some(d) => d,
            None => sniff_delimiter(&head, options.quote, tab_default),
        };
        // Records end at LF, and a CR before it is stripped from the last field: csv's CRLF mode
        // would number the lines of CRLF files wrongly. Files with CR-only line ends (no LF in
        // the sample) use CR.
        let cr_only = head.contains(&b'\r') && !head.contains(&b'\n');
        let terminator = if cr_only { b'\r' } else { b'\n' };
        let stream: Box<dyn Read + Send> = Box::new(Cursor::new(head).chain(decoding));
        let reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(delimiter)
            .terminator(csv::Terminator::Any(terminator))
            .quote(options.quote)
            .buffer_capacity(256 * 1024)
            .from_reader(stream);

        let mut this = Self {
            path: path.to_path_buf(),
            reader,
            malformed,
            counter,
            columns: Vec::new(),
            lookahead: VecDeque::new(),
            footer_hold: VecDeque::new(),
            ready: VecDeque::new(),
            footer_fixed: options.footer_lines,
            eof: false,
            report: FileReport {
                path: path.display().to_string(),
                format: if delimiter == b'\t' { "tsv" } else { "csv" },
                encoding: Some(encoding.name().to_string()),
                encoding_source: Some(source),
                delimiter: Some(delimiter_name(delimiter)),
                ..FileReport::default()
            },
            encoding,
            delimiter,
            spare: Vec::new(),
        };
        this.read_header(options)?;
        Ok(this)
    }

    fn read_raw(&mut self) -> Result<Option<Pending>> {
        let mut record = self.spare.pop().unwrap_or_default();
        loop {
            let more = self
                .reader
                .read_record(&mut record)
                .map_err(|e| Error::Parse {
                    path: self.path.clone(),
                    message: csv_error_message(&e),
                })?;
            if !more {
                return Ok(None);
            }
            if record.iter().next_back().is_some_and(|f| f.ends_with('\r')) {
                record = strip_trailing_cr(&record);
            }
            // A blank line (CRLF files have them as a lone CR) is no record.
            if !(record.len() == 1 && record[0].is_empty()) {
                break;
            }
        }
        let line = record.position().map(|p| p.line() as i64).unwrap_or(0);
        let end = self.reader.position().byte();
        let malformed = self.malformed.take_before(end);
        Ok(Some(Pending {
            record,
            line,
            malformed,
        }))
    }

    fn read_header(&mut self, options: &CsvOptions) -> Result<()> {
        while self.lookahead.len() < LOOKAHEAD_RECORDS {
            match self.read_raw()? {
                Some(p) => self.lookahead.push_back(p),
                None => {
                    self.eof = true;
                    break;
                }
            }
        }
        let widest = self
            .lookahead
            .iter()
            .map(|p| p.record.len())
            .max()
            .unwrap_or(0);
        let preamble = match options.skip_lines {
            Some(n) => n.min(self.lookahead.len()),
            None if widest >= 2 => self
                .lookahead
                .iter()
                .take(MAX_PREAMBLE)
                .take_while(|p| non_empty_cells(&p.record) <= 1)
                .count(),
            None => 0,
        };
        for _ in 0..preamble {
            if let Some(p) = self.lookahead.pop_front() {
                self.report.skipped.push(SkippedLine {
                    line: p.line,
                    kind: "preamble",
                    text: record_text(&p.record, self.delimiter),
                });
            }
        }
        if options.header {
            let Some(header) = self.lookahead.pop_front() else {
                return Err(Error::NoHeader {
                    path: self.path.clone(),
                });
            };
            if let Some(m) = header.malformed.first() {
                return Err(Error::Parse {
                    path: self.path.clone(),
                    message: format!(
                        "the header row (line {}) has bytes {} at byte offset {} that are not valid {}",
                        header.line,
                        decode::hex_bytes(&m.bytes),
                        m.input_offset,
                        self.encoding.name()
                    ),
                });
            }
            self.report.header_line = header.line;
            let raw: Vec<String> = header.record.iter().map(str::to_string).collect();
            let (names, renamed) = clean_header(&raw);
            self.columns = names;
            self.report.renamed_columns = renamed;
        } else {
            let width = self
                .lookahead
                .iter()
                .map(|p| p.record.len())
                .max()
                .unwrap_or(0);
            self.columns = (1..=width).map(|i| format!("column_{i}")).collect();
        }
        Ok(())
    }

    /// The next record that is data (not held back as a possible footer).
    fn next_data(&mut self) -> Result<Option<Pending>> {
        loop {
            if let Some(p) = self.ready.pop_front() {
                return Ok(Some(p));
            }
            let next = match self.lookahead.pop_front() {
                Some(p) => Some(p),
                None if self.eof => None,
                None => {
                    let r = self.read_raw()?;
                    if r.is_none() {
                        self.eof = true;
                    }
                    r
                }
            };
            let Some(p) = next else {
                // End of file: what is still held back is the footer.
                while let Some(p) = self.footer_hold.pop_front() {
                    self.report.skipped.push(SkippedLine {
                        line: p.line,
                        kind: "footer",
                        text: record_text(&p.record, self.delimiter),
                    });
                }
                return Ok(None);
            };
            match self.footer_fixed {
                Some(n) => {
                    self.footer_hold.push_back(p);
                    if self.footer_hold.len() > n {
                        self.ready.extend(self.footer_hold.pop_front());
                    }
                }
                None if self.looks_like_footer(&p) => self.footer_hold.push_back(p),
                None => {
                    // Lines held as a possible footer were data after all.
                    self.ready.extend(self.footer_hold.drain(..));
                    self.ready.push_back(p);
                }
            }
        }
    }

    fn looks_like_footer(&self, p: &Pending) -> bool {
        let width = self.columns.len();
        width >= 3
            && p.record.len() < width
            && non_empty_cells(&p.record) <= 1
            && p.malformed.is_empty()
    }

    fn status(&self, p: &Pending) -> RowStatus {
        let expected = self.columns.len();
        if let Some(m) = p.malformed.first() {
            let more = if p.malformed.len() > 1 {
                format!(
                    " (and {} more undecodable sequences)",
                    p.malformed.len() - 1
                )
            } else {
                String::new()
            };
            return RowStatus::Reject(format!(
                "bytes {} at byte offset {} are not valid {}{more}",
                decode::hex_bytes(&m.bytes),
                m.input_offset,
                self.encoding.name()
            ));
        }
        let fields = p.record.len();
        if fields > expected {
            let extra_has_data = p.record.iter().skip(expected).any(|c| !c.is_empty());
            if extra_has_data {
                return RowStatus::Reject(format!(
                    "row has {fields} fields but the header has {expected}"
                ));
            }
        } else if fields < expected {
            return RowStatus::Padded { fields, expected };
        }
        RowStatus::Ok
    }
}

impl RowReader for CsvReader {
    fn columns(&self) -> &[String] {
        &self.columns
    }

    fn next_chunk(&mut self, max_rows: usize) -> Result<Option<Box<dyn Chunk>>> {
        let rows = max_rows.min(8192);
        let width = self.columns.len().max(1);
        let mut chunk = TextChunk {
            text: String::with_capacity(rows * 16 * width),
            ends: Vec::with_capacity(rows * width),
            rows: Vec::with_capacity(rows + 1),
            meta: Vec::with_capacity(rows),
            delimiter: self.delimiter,
        };
        while chunk.meta.len() < max_rows {
            let Some(p) = self.next_data()? else { break };
            chunk.meta.push(RowMeta {
                line: p.line,
                status: self.status(&p),
            });
            chunk.push(&p.record);
            self.spare.push(p.record);
        }
        if chunk.meta.is_empty() {
            self.report.bytes = self.counter.get();
            return Ok(None);
        }
        chunk.rows.push(chunk.ends.len());
        Ok(Some(Box::new(chunk)))
    }

    fn bytes_read(&self) -> u64 {
        self.counter.get()
    }

    fn report(&self) -> FileReport {
        let mut r = self.report.clone();
        r.bytes = self.counter.get();
        r
    }
}

/// Rows of text cells, all in one buffer: a chunk is a few allocations, not two per row.
struct TextChunk {
    /// Every field's text, one after another.
    text: String,
    /// Where each field ends in `text`, row after row.
    ends: Vec<usize>,
    /// The index in `ends` of each row's first field, and one past the last row's.
    rows: Vec<usize>,
    meta: Vec<RowMeta>,
    delimiter: u8,
}

impl TextChunk {
    fn push(&mut self, record: &StringRecord) {
        self.rows.push(self.ends.len());
        for field in record.iter() {
            self.text.push_str(field);
            self.ends.push(self.text.len());
        }
    }

    /// The fields of a row.
    fn fields(&self, row: usize) -> impl Iterator<Item = &str> + Clone {
        let (first, end) = (self.rows[row], self.rows[row + 1]);
        let mut start = if first == 0 { 0 } else { self.ends[first - 1] };
        self.ends[first..end].iter().map(move |&e| {
            let field = &self.text[start..e];
            start = e;
            field
        })
    }
}

impl Chunk for TextChunk {
    fn len(&self) -> usize {
        self.meta.len()
    }

    fn meta(&self, row: usize) -> &RowMeta {
        &self.meta[row]
    }

    fn cell(&self, row: usize, col: usize) -> Cell<'_> {
        let (first, end) = (self.rows[row], self.rows[row + 1]);
        let i = first + col;
        if i >= end {
            return Cell::Null;
        }
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        match &self.text[start..self.ends[i]] {
            "" => Cell::Null,
            s => Cell::Text(s),
        }
    }

    fn raw(&self, row: usize) -> String {
        fields_text(self.fields(row), self.delimiter)
    }
}

/// The record with CRs removed from the end of its last field (the CR of a CRLF line end, or
/// more of them in files that end lines with CR CR LF).
fn strip_trailing_cr(r: &StringRecord) -> StringRecord {
    let n = r.len();
    let mut out = StringRecord::with_capacity(r.as_slice().len(), n);
    for (i, f) in r.iter().enumerate() {
        out.push_field(if i + 1 == n {
            f.trim_end_matches('\r')
        } else {
            f
        });
    }
    out.set_position(r.position().cloned());
    out
}

fn non_empty_cells(r: &StringRecord) -> usize {
    r.iter().filter(|c| !c.trim().is_empty()).count()
}

/// The record written back as one delimited line (quoted where needed).
fn record_text(r: &StringRecord, delimiter: u8) -> String {
    fields_text(r.iter(), delimiter)
}

/// Fields written back as one delimited line (quoted where needed).
fn fields_text<'a>(fields: impl Iterator<Item = &'a str> + Clone, delimiter: u8) -> String {
    let mut w = csv::WriterBuilder::new()
        .delimiter(delimiter)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    if w.write_record(fields.clone()).is_err() {
        return fields.collect::<Vec<_>>().join(",");
    }
    let bytes = w.into_inner().unwrap_or_default();
    let mut s = String::from_utf8_lossy(&bytes).into_owned();
    if s.ends_with('\n') {
        s.pop();
    }
    s
}

fn delimiter_name(d: u8) -> String {
    match d {
        b'\t' => "\\t".into(),
        other => (other as char).to_string(),
    }
}

fn csv_error_message(e: &csv::Error) -> String {
    match e.position() {
        Some(p) => format!("malformed record at line {}: {e}", p.line()),
        None => e.to_string(),
    }
}

/// Picks the delimiter that splits the sample's lines most consistently into several fields.
pub fn sniff_delimiter(sample: &[u8], quote: u8, tab_default: bool) -> u8 {
    let candidates: &[u8] = if tab_default { b"\t,;|" } else { b",\t;|" };
    // Drop a trailing partial line: the sample was cut at an arbitrary byte.
    let end = sample
        .iter()
        .rposition(|&b| b == b'\n')
        .map(|i| i + 1)
        .unwrap_or(sample.len());
    let sample = &sample[..end];
    let mut best = (candidates[0], 0.0f64);
    for &d in candidates {
        let mut r = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(d)
            .quote(quote)
            .from_reader(sample);
        let widths: Vec<usize> = r
            .records()
            .take(200)
            .filter_map(|x| x.ok())
            .map(|x| x.len())
            .collect();
        if widths.is_empty() {
            continue;
        }
        let mut counts = std::collections::HashMap::new();
        for w in &widths {
            *counts.entry(*w).or_insert(0usize) += 1;
        }
        let (mode, freq) = counts
            .into_iter()
            .max_by_key(|(w, f)| (*f, *w))
            .unwrap_or((1, 0));
        if mode < 2 {
            continue;
        }
        // Consistency first, then more fields.
        let score = freq as f64 / widths.len() as f64 + (mode as f64).ln() / 100.0;
        if score > best.1 {
            best = (d, score);
        }
    }
    best.0
}

/// Refuses a declared encoding that visibly does not fit the file.
fn check_declared(
    path: &Path,
    declared: &'static Encoding,
    sample: &[u8],
    complete: bool,
    detected: &decode::EncodingChoice,
) -> Result<()> {
    let mismatch = |problem: String, detected: &'static Encoding| Error::EncodingMismatch {
        path: path.to_path_buf(),
        declared: declared.name().to_string(),
        detected: detected.name().to_string(),
        detected_label: detected.name().to_ascii_lowercase(),
        problem,
    };
    if let Some(bad) = decode::first_malformed(declared, sample, complete) {
        if detected.encoding != declared
            && decode::first_malformed(detected.encoding, sample, complete).is_none()
        {
            return Err(mismatch(
                format!(
                    "bytes {} at byte offset {} are not valid {}",
                    decode::hex_bytes(&bad.bytes),
                    bad.offset,
                    declared.name()
                ),
                detected.encoding,
            ));
        }
        return Ok(());
    }
    // Valid UTF-8 with non-ASCII text almost never is intended as a legacy CJK encoding: decoding
    // it as GBK "works" and silently produces mojibake.
    let declared_legacy = declared != encoding_rs::UTF_8
        && declared != encoding_rs::UTF_16LE
        && declared != encoding_rs::UTF_16BE;
    if declared_legacy
        && detected.encoding == encoding_rs::UTF_8
        && matches!(
            detected.source,
            EncodingSource::ValidUtf8 | EncodingSource::Bom
        )
        && !sample.is_ascii()
    {
        return Err(mismatch(
            "the bytes form valid UTF-8 text, which decoded as a legacy encoding would be garbled"
                .into(),
            encoding_rs::UTF_8,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delimiters() {
        assert_eq!(sniff_delimiter(b"a,b,c\n1,2,3\n4,5,6\n", b'"', false), b',');
        assert_eq!(sniff_delimiter(b"a\tb\tc\n1\t2,5\t3\n", b'"', false), b'\t');
        assert_eq!(
            sniff_delimiter(b"a;b;c\n1;2,5;3\n4;5;6\n", b'"', false),
            b';'
        );
        assert_eq!(
            sniff_delimiter("名称|代码\n岳阳街道|310117001\n".as_bytes(), b'"', false),
            b'|'
        );
        assert_eq!(
            sniff_delimiter(b"\"x,y\";z\n\"1,2\";3\n", b'"', false),
            b';'
        );
    }
}
