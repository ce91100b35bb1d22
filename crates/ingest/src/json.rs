//! JSON arrays of objects and NDJSON, streamed record by record.
//!
//! Array elements are cut out of the byte stream by a small scanner (strings, escapes and nesting
//! tracked) and parsed one at a time, so a large array never sits in memory and one malformed
//! element is quarantined instead of failing the file. Columns are the keys of the first records
//! (the inference sample), in order of appearance.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Cursor, Read};
use std::path::{Path, PathBuf};

use crate::decode::{self, ByteCounter, DecodingReader};
use crate::excel::ValueChunk;
use crate::reader::{Chunk, FileReport, RowMeta, RowReader, RowStatus};
use crate::value::Value;
use crate::{Error, Result};

/// One record cut from the input: its line and text.
struct RawRecord {
    line: i64,
    text: String,
}

enum Layout {
    /// `[ {...}, {...} ]`
    Array,
    /// One object per line.
    Lines,
    /// A single top-level object: one record, or the array found under a key.
    Object,
}

/// Streaming JSON / NDJSON reader.
pub struct JsonReader {
    path: PathBuf,
    input: BufReader<Box<dyn Read + Send>>,
    layout: Layout,
    line: i64,
    done: bool,
    sample: VecDeque<(RawRecord, Result<Fields, String>)>,
    columns: Vec<String>,
    sample_size: usize,
    counter: ByteCounter,
    report: FileReport,
}

impl JsonReader {
    /// Opens a file; `lines` forces NDJSON. The first `sample_size` records fix the columns.
    pub fn open(path: &Path, lines: bool, sample_size: usize) -> Result<Self> {
        let io_err = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = File::open(path).map_err(io_err)?;
        let mut head = Vec::new();
        (&mut file)
            .take(64 * 1024)
            .read_to_end(&mut head)
            .map_err(io_err)?;
        let complete = head.len() < 64 * 1024;
        let choice = decode::detect(&head, complete);
        let raw: Box<dyn Read + Send> = Box::new(Cursor::new(head).chain(file));
        let decoding = DecodingReader::new(raw, choice.encoding);
        let counter = decoding.byte_counter();
        let mut input =
            BufReader::with_capacity(256 * 1024, Box::new(decoding) as Box<dyn Read + Send>);

        let first = loop {
            let buf = input.fill_buf().map_err(io_err)?;
            match buf.iter().position(|b| !b.is_ascii_whitespace()) {
                Some(i) => {
                    let c = buf[i];
                    let newlines = buf[..i].iter().filter(|&&b| b == b'\n').count();
                    input.consume(i);
                    break Some((c, newlines));
                }
                None if buf.is_empty() => break None,
                None => {
                    let n = buf.len();
                    input.consume(n);
                }
            }
        };
        let (layout, line) = match first {
            None => (Layout::Lines, 1),
            Some((b'[', nl)) if !lines => {
                input.consume(1);
                (Layout::Array, 1 + nl as i64)
            }
            Some((b'{', nl)) if !lines && !is_ndjson_start(&mut input)? => {
                (Layout::Object, 1 + nl as i64)
            }
            Some((_, nl)) => (Layout::Lines, 1 + nl as i64),
        };
        let mut this = Self {
            path: path.to_path_buf(),
            input,
            layout,
            line,
            done: first.is_none(),
            sample: VecDeque::new(),
            columns: Vec::new(),
            sample_size: sample_size.max(1),
            counter,
            report: FileReport {
                path: path.display().to_string(),
                format: if lines { "ndjson" } else { "json" },
                encoding: Some(choice.encoding.name().to_string()),
                encoding_source: Some(choice.source),
                ..FileReport::default()
            },
        };
        if matches!(this.layout, Layout::Lines) {
            this.report.format = "ndjson";
        }
        this.fill_sample()?;
        Ok(this)
    }

    fn fill_sample(&mut self) -> Result<()> {
        if matches!(self.layout, Layout::Object) {
            return self.read_object();
        }
        while self.sample.len() < self.sample_size {
            let Some(raw) = self.next_raw()? else { break };
            let parsed = parse_object(&raw.text);
            if let Ok(fields) = &parsed {
                for (k, _) in fields {
                    if !self.columns.contains(k) {
                        self.columns.push(k.clone());
                    }
                }
            }
            self.sample.push_back((raw, parsed));
        }
        Ok(())
    }

    /// A single top-level object: if exactly one of its members is an array of objects, those
    /// are the records (API responses like `{"total": 3, "data": [...]}`); otherwise the object
    /// is the one record.
    fn read_object(&mut self) -> Result<()> {
        let mut text = String::new();
        self.input
            .read_to_string(&mut text)
            .map_err(|source| Error::Io {
                path: self.path.clone(),
                source,
            })?;
        self.done = true;
        let invalid = |e: serde_json::Error| Error::Parse {
            path: self.path.clone(),
            message: format!(
                "invalid JSON at line {}, column {}: {e}",
                e.line(),
                e.column()
            ),
        };
        let top: Ordered<Box<serde_json::value::RawValue>> =
            serde_json::from_str(&text).map_err(invalid)?;
        let mut arrays: Vec<(String, Vec<Ordered<serde_json::Value>>)> = top
            .0
            .iter()
            .filter(|(_, raw)| raw.get().trim_start().starts_with('['))
            .filter_map(|(k, raw)| {
                serde_json::from_str::<Vec<Ordered<serde_json::Value>>>(raw.get())
                    .ok()
                    .filter(|a| !a.is_empty())
                    .map(|a| (k.clone(), a))
            })
            .collect();
        let records: Vec<Ordered<serde_json::Value>> = if arrays.len() == 1 {
            let (key, records) = arrays.remove(0);
            self.report.sheet = Some(format!("$.{key}"));
            records
        } else {
            vec![serde_json::from_str(&text).map_err(invalid)?]
        };
        for (i, r) in records.into_iter().enumerate() {
            let text = r.to_json();
            for (k, _) in &r.0 {
                if !self.columns.contains(k) {
                    self.columns.push(k.clone());
                }
            }
            self.sample.push_back((
                RawRecord {
                    line: i as i64 + 1,
                    text,
                },
                Ok(r.0),
            ));
        }
        Ok(())
    }

    fn next_raw(&mut self) -> Result<Option<RawRecord>> {
        if self.done {
            return Ok(None);
        }
        match self.layout {
            Layout::Lines => self.next_line(),
            Layout::Array => self.next_element(),
            Layout::Object => Ok(None),
        }
    }

    fn next_line(&mut self) -> Result<Option<RawRecord>> {
        loop {
            let mut buf = String::new();
            let n = self.input.read_line(&mut buf).map_err(|source| Error::Io {
                path: self.path.clone(),
                source,
            })?;
            if n == 0 {
                self.done = true;
                return Ok(None);
            }
            let line = self.line;
            self.line += 1;
            let text = buf.trim();
            if !text.is_empty() {
                return Ok(Some(RawRecord {
                    line,
                    text: text.to_string(),
                }));
            }
        }
    }

    /// Cuts the next element out of a top-level array.
    fn next_element(&mut self) -> Result<Option<RawRecord>> {
        let mut out: Vec<u8> = Vec::new();
        let mut depth = 0usize;
        let mut in_string = false;
        let mut escape = false;
        let mut start_line = None;
        loop {
            let buf = self.input.fill_buf().map_err(|source| Error::Io {
                path: self.path.clone(),
                source,
            })?;
            if buf.is_empty() {
                self.done = true;
                if out.iter().any(|b| !b.is_ascii_whitespace()) {
                    return Err(Error::Parse {
                        path: self.path.clone(),
                        message: format!(
                            "the JSON array that starts the file is not closed; the last element starts at line {}",
                            start_line.unwrap_or(self.line)
                        ),
                    });
                }
                return Ok(None);
            }
            let mut used = 0;
            let mut finished: Option<bool> = None; // Some(true) = end of array
            for &b in buf {
                used += 1;
                if b == b'\n' {
                    self.line += 1;
                }
                if in_string {
                    out.push(b);
                    if escape {
                        escape = false;
                    } else if b == b'\\' {
                        escape = true;
                    } else if b == b'"' {
                        in_string = false;
                    }
                    continue;
                }
                match b {
                    b'"' => {
                        in_string = true;
                        out.push(b);
                    }
                    b'{' | b'[' => {
                        depth += 1;
                        out.push(b);
                    }
                    b'}' | b']' if depth > 0 => {
                        depth -= 1;
                        out.push(b);
                    }
                    b']' => {
                        finished = Some(true);
                        break;
                    }
                    b',' if depth == 0 => {
                        finished = Some(false);
                        break;
                    }
                    _ => {
                        if start_line.is_none() && !b.is_ascii_whitespace() {
                            start_line = Some(self.line);
                        }
                        out.push(b);
                    }
                }
                if start_line.is_none() && !b.is_ascii_whitespace() {
                    start_line = Some(self.line);
                }
            }
            self.input.consume(used);
            if let Some(end_of_array) = finished {
                if end_of_array {
                    self.done = true;
                }
                let text = String::from_utf8_lossy(&out).trim().to_string();
                if text.is_empty() {
                    if end_of_array {
                        return Ok(None);
                    }
                    // `[ , ]`: an empty element; report it as a bad record.
                    return Ok(Some(RawRecord {
                        line: self.line,
                        text,
                    }));
                }
                return Ok(Some(RawRecord {
                    line: start_line.unwrap_or(self.line),
                    text,
                }));
            }
        }
    }

    fn to_row(&self, parsed: Result<Fields, String>) -> (Vec<Value>, RowStatus) {
        match parsed {
            Err(reason) => (Vec::new(), RowStatus::Reject(reason)),
            Ok(map) => {
                let unknown: Vec<&String> = map
                    .iter()
                    .map(|(k, _)| k)
                    .filter(|k| !self.columns.contains(k))
                    .collect();
                if !unknown.is_empty() {
                    return (
                        Vec::new(),
                        RowStatus::Reject(format!(
                            "keys {unknown:?} are not among the columns found in the first {} records",
                            self.sample_size
                        )),
                    );
                }
                let mut row = vec![Value::Null; self.columns.len()];
                for (k, v) in map {
                    if let Some(i) = self.columns.iter().position(|c| *c == k) {
                        row[i] = json_value(v);
                    }
                }
                (row, RowStatus::Ok)
            }
        }
    }
}

/// Whether a file starting with `{` holds one object per line (NDJSON) rather than one object.
fn is_ndjson_start(input: &mut BufReader<Box<dyn Read + Send>>) -> Result<bool> {
    let buf = input
        .fill_buf()
        .map_err(|e| Error::Invalid(e.to_string()))?;
    let first_line = match buf.iter().position(|&b| b == b'\n') {
        Some(i) => &buf[..i],
        None => return Ok(false),
    };
    Ok(
        serde_json::from_slice::<serde_json::Value>(first_line).is_ok_and(|v| v.is_object())
            && buf[first_line.len()..]
                .iter()
                .any(|b| !b.is_ascii_whitespace()),
    )
}

/// An object's members in document order (serde_json's own map sorts them).
type Fields = Vec<(String, serde_json::Value)>;

/// A JSON object deserialized with its members in order.
struct Ordered<V>(Vec<(String, V)>);

impl<'de, V: serde::Deserialize<'de>> serde::Deserialize<'de> for Ordered<V> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visit<V>(std::marker::PhantomData<V>);
        impl<'de, V: serde::Deserialize<'de>> serde::de::Visitor<'de> for Visit<V> {
            type Value = Ordered<V>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Ordered<V>, A::Error> {
                let mut members = Vec::new();
                while let Some(entry) = map.next_entry::<String, V>()? {
                    members.push(entry);
                }
                Ok(Ordered(members))
            }
        }
        d.deserialize_map(Visit(std::marker::PhantomData))
    }
}

impl Ordered<serde_json::Value> {
    fn to_json(&self) -> String {
        let members: Vec<String> = self
            .0
            .iter()
            .map(|(k, v)| format!("{}:{v}", serde_json::Value::String(k.clone())))
            .collect();
        format!("{{{}}}", members.join(","))
    }
}

fn parse_object(text: &str) -> Result<Fields, String> {
    serde_json::from_str::<Ordered<serde_json::Value>>(text)
        .map(|o| o.0)
        .map_err(|e| format!("invalid JSON record: {e}"))
}

/// JSON values as cells. Integers beyond i64 stay text, nested values stay JSON text.
fn json_value(v: serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::Int(i)
            } else if n.is_u64() {
                Value::Text(n.to_string())
            } else {
                n.as_f64()
                    .map(Value::Float)
                    .unwrap_or_else(|| Value::Text(n.to_string()))
            }
        }
        serde_json::Value::String(s) if s.is_empty() => Value::Null,
        serde_json::Value::String(s) => Value::Text(s),
        other => Value::Text(other.to_string()),
    }
}

impl RowReader for JsonReader {
    fn columns(&self) -> &[String] {
        &self.columns
    }

    fn next_chunk(&mut self, max_rows: usize) -> Result<Option<Box<dyn Chunk>>> {
        let mut rows = Vec::new();
        let mut meta = Vec::new();
        let mut raws = Vec::new();
        while rows.len() < max_rows {
            let (raw, parsed) = match self.sample.pop_front() {
                Some(x) => x,
                None => match self.next_raw()? {
                    Some(raw) => {
                        let parsed = parse_object(&raw.text);
                        (raw, parsed)
                    }
                    None => break,
                },
            };
            let (row, status) = self.to_row(parsed);
            rows.push(row);
            meta.push(RowMeta {
                line: raw.line,
                status,
            });
            raws.push(raw.text);
        }
        if rows.is_empty() {
            self.report.bytes = self.counter.get();
            return Ok(None);
        }
        Ok(Some(Box::new(JsonChunk {
            inner: ValueChunk { rows, meta },
            raws,
        })))
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

/// Values plus each record's original text (for quarantine).
struct JsonChunk {
    inner: ValueChunk,
    raws: Vec<String>,
}

impl Chunk for JsonChunk {
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn meta(&self, row: usize) -> &RowMeta {
        self.inner.meta(row)
    }
    fn cell(&self, row: usize, col: usize) -> crate::value::Cell<'_> {
        self.inner.cell(row, col)
    }
    fn raw(&self, row: usize) -> String {
        self.raws[row].clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    type Rows = Vec<(i64, RowStatus, Vec<Option<String>>)>;

    fn read_all(content: &str, name: &str) -> (Vec<String>, Rows) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        File::create(&path)
            .unwrap()
            .write_all(content.as_bytes())
            .unwrap();
        let mut r = JsonReader::open(&path, name.ends_with(".ndjson"), 100).unwrap();
        let cols = r.columns().to_vec();
        let mut out = Vec::new();
        while let Some(c) = r.next_chunk(2).unwrap() {
            for i in 0..c.len() {
                let cells = (0..cols.len()).map(|j| c.cell(i, j).to_text()).collect();
                out.push((c.meta(i).line, c.meta(i).status.clone(), cells));
            }
        }
        (cols, out)
    }

    #[test]
    fn array_with_nested_values_and_a_bad_element() {
        let (cols, rows) = read_all(
            "[\n {\"名称\": \"岳阳街道\", \"代码\": \"310117001\", \"tags\": [1, {\"a\": \"]\"}]},\n {\"名称\": \"永丰街道\", \"人口\": 12},\n 42,\n {\"名称\": \"x\", \"new\": 1}\n]\n",
            "a.json",
        );
        assert_eq!(cols, ["名称", "代码", "tags", "人口", "new"]);
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0].0, 2);
        assert_eq!(rows[0].2[2].as_deref(), Some("[1,{\"a\":\"]\"}]"));
        assert_eq!(rows[1].2[3].as_deref(), Some("12"));
        assert!(
            matches!(&rows[2].1, RowStatus::Reject(r) if r.contains("expected a JSON object")),
            "{:?}",
            rows[2].1
        );
        // "new" appeared within the sample, so it is a column; all four rows are accounted for.
        assert_eq!(rows[3].1, RowStatus::Ok);
    }

    #[test]
    fn ndjson_lines_and_errors() {
        let (cols, rows) = read_all(
            "{\"a\": 1}\n\n{\"a\": 2, \"b\": \"x\"}\n{oops\n",
            "a.ndjson",
        );
        assert_eq!(cols, ["a", "b"]);
        assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1, 3, 4]);
        assert!(matches!(&rows[2].1, RowStatus::Reject(r) if r.starts_with("invalid JSON record")));
    }

    #[test]
    fn object_with_a_records_array() {
        let (cols, rows) = read_all(
            "{\"total\": 2, \"data\": [{\"id\": \"01\"}, {\"id\": \"02\"}]}",
            "api.json",
        );
        assert_eq!(cols, ["id"]);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].2[0].as_deref(), Some("02"));
    }
}
