//! Type inference that never damages data.
//!
//! A column gets a non-text type only if every non-empty sampled value parses under it without
//! losing anything: integers with a leading zero or more than 15 digits, and columns whose name
//! says they hold codes or identifiers (代码, 编号, zip, id …), stay text. Empty values are no
//! evidence; a column with no values at all is text and flagged `all_empty`.

use chrono::NaiveTime;
use serde::Serialize;

use crate::reader::{Chunk, RowStatus};
use crate::value::{
    Cell, ColumnType, DATE_FORMATS, DATETIME_FORMATS, parse_bool_strict, parse_date_with,
    parse_datetime_with, parse_float, parse_int,
};

/// The outcome of inference for one column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Inferred {
    pub name: String,
    pub ty: ColumnType,
    /// The text format dates/times were found in (`%Y-%m-%d` …).
    pub format: Option<&'static str>,
    /// No sampled row had a value.
    pub all_empty: bool,
    /// Why the column is text although its values look typed, if so.
    pub note: Option<String>,
}

/// Name fragments that mark a column as holding identifiers or codes.
const ID_WORDS: &[&str] = &[
    "id",
    "ids",
    "key",
    "code",
    "codes",
    "zip",
    "zipcode",
    "postcode",
    "postal",
    "phone",
    "tel",
    "telephone",
    "mobile",
    "fax",
    "uuid",
    "guid",
    "sn",
    "bbl",
    "isbn",
    "ssn",
    "no",
];
const ID_WORDS_ZH: &[&str] = &[
    "代码",
    "编码",
    "编号",
    "号码",
    "邮编",
    "邮政编码",
    "电话",
    "手机",
    "身份证",
    "证件号",
    "证号",
    "信用代码",
    "账号",
    "帐号",
    "卡号",
    "工号",
    "学号",
    "代号",
];

/// Whether a column name says it holds identifiers, which must stay text.
pub fn name_suggests_identifier(name: &str) -> bool {
    if ID_WORDS_ZH.iter().any(|w| name.contains(w)) {
        return true;
    }
    // Split on non-alphanumerics and camelCase boundaries: "streetCode" → street, code.
    let mut words: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if !c.is_ascii_alphanumeric() {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            prev_lower = false;
            continue;
        }
        if c.is_ascii_uppercase() && prev_lower && !current.is_empty() {
            words.push(std::mem::take(&mut current));
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        current.push(c.to_ascii_lowercase());
    }
    if !current.is_empty() {
        words.push(current);
    }
    words.iter().any(|w| ID_WORDS.contains(&w.as_str()))
}

#[derive(Debug, Clone)]
struct State {
    values: u64,
    int: bool,
    float: bool,
    boolean: bool,
    date: bool,
    timestamp: bool,
    text_dates: Vec<&'static str>,
    text_datetimes: Vec<&'static str>,
    saw_text: bool,
}

impl Default for State {
    fn default() -> Self {
        Self {
            values: 0,
            int: true,
            float: true,
            boolean: true,
            date: true,
            timestamp: true,
            // 8 bare digits (20240301) are also numbers: only when declared.
            text_dates: DATE_FORMATS
                .iter()
                .copied()
                .filter(|f| *f != "%Y%m%d")
                .collect(),
            text_datetimes: DATETIME_FORMATS.to_vec(),
            saw_text: false,
        }
    }
}

impl State {
    fn observe(&mut self, cell: Cell<'_>) {
        if cell.is_empty() {
            return;
        }
        self.values += 1;
        match cell {
            Cell::Null | Cell::Void(_) => {}
            Cell::Text(s) => {
                self.saw_text = true;
                if self.int && parse_int(s).is_none() {
                    self.int = false;
                }
                if self.float && parse_float(s).is_none() {
                    self.float = false;
                }
                if self.boolean && parse_bool_strict(s).is_none() {
                    self.boolean = false;
                }
                if self.date {
                    self.text_dates.retain(|f| parse_date_with(s, f).is_some());
                    self.date = !self.text_dates.is_empty();
                }
                if self.timestamp {
                    self.text_datetimes
                        .retain(|f| parse_datetime_with(s, f).is_some());
                    self.timestamp = !self.text_datetimes.is_empty();
                }
            }
            Cell::Int(i) => {
                self.int &= i.unsigned_abs() < 1_000_000_000_000_000;
                self.boolean = false;
                self.date = false;
                self.timestamp = false;
            }
            Cell::Float(f) => {
                self.int &= f.fract() == 0.0 && f.abs() < 1e15;
                self.float &= f.is_finite();
                self.boolean = false;
                self.date = false;
                self.timestamp = false;
            }
            Cell::Bool(_) => {
                self.int = false;
                self.float = false;
                self.date = false;
                self.timestamp = false;
            }
            Cell::Date(_) => {
                self.int = false;
                self.float = false;
                self.boolean = false;
            }
            Cell::DateTime(t) => {
                self.int = false;
                self.float = false;
                self.boolean = false;
                if t.time() != NaiveTime::MIN {
                    self.date = false;
                }
            }
        }
    }

    fn decide(&self, name: &str) -> Inferred {
        let mut out = Inferred {
            name: name.to_string(),
            ty: ColumnType::Utf8,
            format: None,
            all_empty: self.values == 0,
            note: None,
        };
        if self.values == 0 {
            return out;
        }
        let typed = self.int || self.float || self.boolean || self.date || self.timestamp;
        if typed && name_suggests_identifier(name) {
            out.note = Some("name suggests codes or identifiers; kept as text".into());
            return out;
        }
        if self.boolean {
            out.ty = ColumnType::Boolean;
        } else if self.int {
            out.ty = ColumnType::Int64;
        } else if self.float {
            out.ty = ColumnType::Float64;
        } else if self.date {
            out.ty = ColumnType::Date;
            out.format = self.saw_text.then(|| self.text_dates[0]);
        } else if self.timestamp {
            out.ty = ColumnType::Timestamp;
            out.format = self.saw_text.then(|| self.text_datetimes[0]);
        }
        out
    }
}

/// Accumulates evidence over sampled chunks.
#[derive(Debug, Clone)]
pub struct Inference {
    columns: Vec<String>,
    states: Vec<State>,
    rows: u64,
}

impl Inference {
    pub fn new(columns: &[String]) -> Self {
        Self {
            columns: columns.to_vec(),
            states: vec![State::default(); columns.len()],
            rows: 0,
        }
    }

    /// Rows observed so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Adds a chunk's rows as evidence (rejected rows are not evidence).
    pub fn observe(&mut self, chunk: &dyn Chunk) {
        for row in 0..chunk.len() {
            if matches!(chunk.meta(row).status, RowStatus::Reject(_)) {
                continue;
            }
            self.rows += 1;
            for (col, state) in self.states.iter_mut().enumerate() {
                state.observe(chunk.cell(row, col));
            }
        }
    }

    pub fn finish(&self) -> Vec<Inferred> {
        self.columns
            .iter()
            .zip(&self.states)
            .map(|(name, s)| s.decide(name))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn infer(name: &str, values: &[&str]) -> Inferred {
        let mut s = State::default();
        for v in values {
            s.observe(if v.is_empty() {
                Cell::Null
            } else {
                Cell::Text(v)
            });
        }
        s.decide(name)
    }

    #[test]
    fn identifier_names() {
        for n in [
            "code",
            "streetCode",
            "Incident Zip",
            "Unique Key",
            "orgId",
            "type_code",
            "统一社会信用代码",
            "联系电话",
            "身份证号",
        ] {
            assert!(name_suggests_identifier(n), "{n}");
        }
        for n in [
            "name",
            "2024年",
            "Created Date",
            "population",
            "Borough",
            "note",
        ] {
            assert!(!name_suggests_identifier(n), "{n}");
        }
    }

    #[test]
    fn numbers_dates_and_text() {
        assert_eq!(infer("v", &["1", "", "-3"]).ty, ColumnType::Int64);
        assert_eq!(infer("v", &["1", "2.5"]).ty, ColumnType::Float64);
        assert_eq!(infer("v", &["1", "007"]).ty, ColumnType::Utf8);
        assert_eq!(infer("v", &["110101199003074258"]).ty, ColumnType::Utf8);
        assert_eq!(infer("v", &["true", "FALSE"]).ty, ColumnType::Boolean);
        let d = infer("d", &["2024-03-01", "2024-12-31"]);
        assert_eq!((d.ty, d.format), (ColumnType::Date, Some("%Y-%m-%d")));
        let t = infer("t", &["03/01/2011 02:27:57 PM", "03/14/2011 03:59:20 PM"]);
        assert_eq!(
            (t.ty, t.format),
            (ColumnType::Timestamp, Some("%m/%d/%Y %I:%M:%S %p"))
        );
        assert_eq!(
            infer("d", &["2024-03-01", "2024-03-01 08:00:00"]).ty,
            ColumnType::Utf8
        );
        let zip = infer("Incident Zip", &["10027", "11232"]);
        assert_eq!(zip.ty, ColumnType::Utf8);
        assert!(zip.note.is_some());
        let empty = infer("x", &["", ""]);
        assert_eq!((empty.ty, empty.all_empty), (ColumnType::Utf8, true));
        assert_eq!(infer("v", &["２０２４"]).ty, ColumnType::Utf8);
    }
}
