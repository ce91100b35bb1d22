//! Column types, cell values and the strict parsers behind type inference and conversion.

use std::fmt;
use std::str::FromStr;

use arrow::datatypes::{DataType, TimeUnit};
use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use serde::{Deserialize, Serialize};

/// The column types Reservoir loads into raw tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    /// Text; also codes, identifiers and anything that would lose information as a number.
    Utf8,
    Int64,
    Float64,
    Boolean,
    Date,
    /// Date and time without time zone, microsecond precision.
    Timestamp,
}

impl ColumnType {
    pub fn arrow(self) -> DataType {
        match self {
            Self::Utf8 => DataType::Utf8,
            Self::Int64 => DataType::Int64,
            Self::Float64 => DataType::Float64,
            Self::Boolean => DataType::Boolean,
            Self::Date => DataType::Date32,
            Self::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
        }
    }

    /// Maps a table's Arrow type back to a column type, if Reservoir can load into it.
    pub fn from_arrow(dt: &DataType) -> Option<Self> {
        Some(match dt {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Self::Utf8,
            DataType::Int64 | DataType::Int32 | DataType::Int16 | DataType::Int8 => Self::Int64,
            DataType::Float64 | DataType::Float32 => Self::Float64,
            DataType::Boolean => Self::Boolean,
            DataType::Date32 => Self::Date,
            DataType::Timestamp(_, None) => Self::Timestamp,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Utf8 => "utf8",
            Self::Int64 => "int64",
            Self::Float64 => "float64",
            Self::Boolean => "boolean",
            Self::Date => "date",
            Self::Timestamp => "timestamp",
        }
    }

    /// What a value of this type looks like, for error messages.
    pub fn expectation(self) -> &'static str {
        match self {
            Self::Utf8 => "text",
            Self::Int64 => "an integer (at most 15 digits, no leading zero)",
            Self::Float64 => "a number",
            Self::Boolean => "true/false, yes/no, 1/0 or 是/否",
            Self::Date => "a date such as 2024-03-01, 2024/3/1 or 2024年3月1日",
            Self::Timestamp => "a date and time such as 2024-03-01 08:30:00",
        }
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ColumnType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "utf8" | "text" | "string" | "varchar" => Self::Utf8,
            "int64" | "int" | "integer" | "bigint" => Self::Int64,
            "float64" | "float" | "double" | "number" => Self::Float64,
            "boolean" | "bool" => Self::Boolean,
            "date" => Self::Date,
            "timestamp" | "datetime" => Self::Timestamp,
            other => {
                return Err(format!(
                    "unknown column type {other:?}; expected utf8, int64, float64, boolean, date or timestamp"
                ));
            }
        })
    }
}

/// One cell as a reader delivers it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    Null,
    Text(&'a str),
    Int(i64),
    Float(f64),
    Bool(bool),
    Date(NaiveDate),
    DateTime(NaiveDateTime),
    /// A value the reader could not represent honestly (e.g. Excel's phantom 1900-02-29): it
    /// loads as NULL and the row is flagged with this note.
    Void(&'a str),
}

/// An owned cell, for readers that produce values rather than text (Excel, JSON).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Date(NaiveDate),
    DateTime(NaiveDateTime),
    Void(String),
}

impl Value {
    pub fn as_cell(&self) -> Cell<'_> {
        match self {
            Self::Null => Cell::Null,
            Self::Text(s) => Cell::Text(s),
            Self::Int(i) => Cell::Int(*i),
            Self::Float(f) => Cell::Float(*f),
            Self::Bool(b) => Cell::Bool(*b),
            Self::Date(d) => Cell::Date(*d),
            Self::DateTime(t) => Cell::DateTime(*t),
            Self::Void(s) => Cell::Void(s),
        }
    }
}

impl Cell<'_> {
    /// True for cells that carry no type evidence.
    pub fn is_empty(&self) -> bool {
        match self {
            Cell::Null | Cell::Void(_) => true,
            Cell::Text(s) => s.is_empty(),
            _ => false,
        }
    }

    /// The cell as text, the way it will be stored in a text column.
    pub fn to_text(&self) -> Option<String> {
        match *self {
            Cell::Null | Cell::Void(_) => None,
            Cell::Text("") => None,
            Cell::Text(s) => Some(s.to_string()),
            Cell::Int(i) => Some(i.to_string()),
            Cell::Float(f) => Some(format_float(f)),
            Cell::Bool(b) => Some(b.to_string()),
            Cell::Date(d) => Some(d.format("%Y-%m-%d").to_string()),
            Cell::DateTime(t) => Some(format_datetime(t)),
        }
    }
}

/// Formats a float without a spurious `.0` on integral values (Excel stores 13800138000 as a
/// float).
pub fn format_float(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

pub fn format_datetime(t: NaiveDateTime) -> String {
    if t.and_utc().timestamp_subsec_micros() == 0 {
        t.format("%Y-%m-%d %H:%M:%S").to_string()
    } else {
        t.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
    }
}

/// Integers that are safe to store as numbers: optional sign, 1–15 digits, no leading zero.
/// `007`, `0571` (area codes) and 18-digit IDs stay text.
pub fn parse_int(s: &str) -> Option<i64> {
    let t = s.trim();
    let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
    if digits.is_empty()
        || digits.len() > 15
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
    {
        return None;
    }
    t.parse().ok()
}

/// Decimal numbers that round-trip through f64: at most 15 significant digits, no leading zero
/// before the decimal point, plain ASCII digits (`1,234`, `12%`, `１２` stay text).
pub fn parse_float(s: &str) -> Option<f64> {
    let t = s.trim();
    let body = t.strip_prefix(['+', '-']).unwrap_or(t);
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    if let Some(e) = exponent {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        if e.is_empty() || !e.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
    }
    let (int_part, frac_part) = match mantissa.split_once('.') {
        Some((i, f)) => (i, f),
        None => (mantissa, ""),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    if !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    if int_part.len() > 1 && int_part.starts_with('0') {
        return None;
    }
    let significant = format!("{int_part}{frac_part}");
    let significant = significant.trim_start_matches('0');
    if significant.len() > 15 {
        return None;
    }
    t.parse().ok()
}

/// Strict booleans for inference: only `true` / `false`.
pub fn parse_bool_strict(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// Lenient booleans for declared boolean columns.
pub fn parse_bool_lenient(s: &str) -> Option<bool> {
    match s.trim().to_lowercase().as_str() {
        "true" | "t" | "yes" | "y" | "1" | "是" | "真" => Some(true),
        "false" | "f" | "no" | "n" | "0" | "否" | "假" => Some(false),
        _ => None,
    }
}

/// Date formats tried in order. US month-first comes after year-first forms; a column is only
/// typed as a date when one format fits every sampled value.
pub const DATE_FORMATS: &[&str] = &[
    "%Y-%m-%d",
    "%Y/%m/%d",
    "%Y.%m.%d",
    "%Y年%m月%d日",
    "%Y%m%d",
    "%m/%d/%Y",
];

/// Date-time formats (fractional seconds optional where `%.f` appears).
pub const DATETIME_FORMATS: &[&str] = &[
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y/%m/%d %H:%M:%S%.f",
    "%Y-%m-%d %H:%M",
    "%Y/%m/%d %H:%M",
    "%Y年%m月%d日 %H:%M:%S",
    "%Y年%m月%d日 %H时%M分%S秒",
    "%m/%d/%Y %I:%M:%S %p",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
];

pub fn parse_date_with(s: &str, format: &str) -> Option<NaiveDate> {
    let t = s.trim();
    if format == "%Y%m%d" && (t.len() != 8 || !t.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    if let Some(sep) = date_separator(format)
        && t.len() == 10
        && let Some(decided) = fixed_date(t.as_bytes(), sep)
    {
        return decided;
    }
    NaiveDate::parse_from_str(t, format).ok()
}

pub fn parse_datetime_with(s: &str, format: &str) -> Option<NaiveDateTime> {
    let t = s.trim();
    let fast = match format {
        "%Y-%m-%d %H:%M:%S%.f" => Some((b'-', b' ')),
        "%Y-%m-%dT%H:%M:%S%.f" => Some((b'-', b'T')),
        "%Y/%m/%d %H:%M:%S%.f" => Some((b'/', b' ')),
        _ => None,
    };
    if let Some((sep, between)) = fast
        && let Some(decided) = fixed_datetime(t.as_bytes(), sep, between)
    {
        return decided;
    }
    NaiveDateTime::parse_from_str(t, format).ok()
}

/// The separator of the fixed-width `%Y?%m?%d` formats.
fn date_separator(format: &str) -> Option<u8> {
    match format {
        "%Y-%m-%d" => Some(b'-'),
        "%Y/%m/%d" => Some(b'/'),
        "%Y.%m.%d" => Some(b'.'),
        _ => None,
    }
}

/// Two ASCII digits as a number.
fn two_digits(b: &[u8]) -> Option<u32> {
    match b {
        [a @ b'0'..=b'9', c @ b'0'..=b'9'] => Some(u32::from(a - b'0') * 10 + u32::from(c - b'0')),
        _ => None,
    }
}

/// The fast path for `YYYY-MM-DD` (with `sep`): `Some(verdict)` when `b` has exactly that shape,
/// the same verdict chrono's parser gives; `None` for any other shape, which chrono decides.
fn fixed_date(b: &[u8], sep: u8) -> Option<Option<NaiveDate>> {
    if b.len() != 10 || b[4] != sep || b[7] != sep {
        return None;
    }
    let year = two_digits(&b[0..2])? * 100 + two_digits(&b[2..4])?;
    let month = two_digits(&b[5..7])?;
    let day = two_digits(&b[8..10])?;
    Some(NaiveDate::from_ymd_opt(year as i32, month, day))
}

/// The fast path for `YYYY-MM-DD HH:MM:SS[.f]`: as [`fixed_date`], `None` leaves the value
/// to chrono (other shapes, leap seconds, more than nine fraction digits).
fn fixed_datetime(b: &[u8], sep: u8, between: u8) -> Option<Option<NaiveDateTime>> {
    if b.len() < 19 || b[10] != between || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let date = fixed_date(&b[..10], sep)?;
    let (hour, minute, second) = (
        two_digits(&b[11..13])?,
        two_digits(&b[14..16])?,
        two_digits(&b[17..19])?,
    );
    if second >= 60 {
        return None;
    }
    let nanos = match &b[19..] {
        [] => 0,
        [b'.', digits @ ..] if (1..=9).contains(&digits.len()) => {
            let mut n = 0u32;
            for d in digits {
                if !d.is_ascii_digit() {
                    return None;
                }
                n = n * 10 + u32::from(d - b'0');
            }
            n * 10u32.pow(9 - digits.len() as u32)
        }
        _ => return None,
    };
    Some(date.and_then(|d| d.and_hms_nano_opt(hour, minute, second, nanos)))
}

/// Any supported date format.
pub fn parse_date_any(s: &str) -> Option<NaiveDate> {
    // 8 bare digits are ambiguous with numbers; only accepted when declared.
    DATE_FORMATS.iter().find_map(|f| parse_date_with(s, f))
}

/// Any supported date-time format, or a bare date at midnight.
pub fn parse_datetime_any(s: &str) -> Option<NaiveDateTime> {
    DATETIME_FORMATS
        .iter()
        .find_map(|f| parse_datetime_with(s, f))
        .or_else(|| parse_date_any(s).map(|d| d.and_time(NaiveTime::MIN)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_date_paths_agree_with_chrono() {
        let dates = [
            "2024-02-29",
            "2023-02-29",
            "2024-13-01",
            "2024-00-10",
            "0999-01-01",
            "2024-1-05",
            "2024-01-5",
            "２０２４-01-05",
            " 2024-01-05 ",
            "2024-01-05x",
            "+2024-01-05",
        ];
        for f in ["%Y-%m-%d", "%Y/%m/%d", "%Y.%m.%d"] {
            for d in dates {
                let d = d.replace('-', &f[2..3]);
                assert_eq!(
                    parse_date_with(&d, f),
                    NaiveDate::parse_from_str(d.trim(), f).ok(),
                    "{d:?} as {f}"
                );
            }
        }
        let times = [
            "2024-03-01 08:30:00",
            "2024-03-01 08:30:00.5",
            "2024-03-01 08:30:00.123456789",
            "2024-03-01 08:30:00.1234567891",
            "2024-03-01 24:00:00",
            "2024-03-01 23:60:00",
            "2024-03-01 23:59:60",
            "2024-03-01 23:59:60.5",
            "2024-02-30 08:30:00",
            "2024-03-01 8:30:00",
            "2024-03-01 08:30:00.",
            "2024-03-01 08:30:00.12a",
            "2024-03-01 08:30",
            "2024-03-01 08:30:00Z",
        ];
        for (f, sep, between) in [
            ("%Y-%m-%d %H:%M:%S%.f", "-", " "),
            ("%Y-%m-%dT%H:%M:%S%.f", "-", "T"),
            ("%Y/%m/%d %H:%M:%S%.f", "/", " "),
        ] {
            for t in times {
                let t = t.replacen('-', sep, 2).replacen(' ', between, 1);
                assert_eq!(
                    parse_datetime_with(&t, f),
                    NaiveDateTime::parse_from_str(t.trim(), f).ok(),
                    "{t:?} as {f}"
                );
            }
        }
    }

    #[test]
    fn integers_that_are_really_codes_stay_text() {
        assert_eq!(parse_int("42"), Some(42));
        assert_eq!(parse_int("-7"), Some(-7));
        assert_eq!(parse_int("0"), Some(0));
        assert_eq!(parse_int("007"), None);
        assert_eq!(parse_int("0571"), None);
        assert_eq!(parse_int("123456789012345"), Some(123_456_789_012_345));
        assert_eq!(parse_int("1234567890123456"), None);
        assert_eq!(parse_int("31011719900307123X"), None);
        assert_eq!(parse_int("１２３"), None);
        assert_eq!(parse_int(""), None);
    }

    #[test]
    fn floats_must_round_trip() {
        assert_eq!(parse_float("49670.2"), Some(49670.2));
        assert_eq!(parse_float("0.5"), Some(0.5));
        assert_eq!(parse_float(".5"), Some(0.5));
        assert_eq!(parse_float("1e3"), Some(1000.0));
        assert_eq!(parse_float("1,234"), None);
        assert_eq!(parse_float("12%"), None);
        assert_eq!(parse_float("01.5"), None);
        assert_eq!(parse_float("3.14159265358979323"), None);
        assert_eq!(parse_float("NaN"), None);
        assert_eq!(parse_float("."), None);
    }

    #[test]
    fn dates_and_times() {
        let d = NaiveDate::from_ymd_opt(2024, 3, 1).unwrap();
        assert_eq!(parse_date_any("2024-03-01"), Some(d));
        assert_eq!(parse_date_any("2024/3/1"), Some(d));
        assert_eq!(parse_date_any("2024年3月1日"), Some(d));
        assert_eq!(parse_date_any("2023-02-30"), None);
        let t = parse_datetime_any("03/01/2011 02:27:57 PM").unwrap();
        assert_eq!(t.to_string(), "2011-03-01 14:27:57");
        let t = parse_datetime_any("2024-03-01 08:30:00.123456").unwrap();
        assert_eq!(format_datetime(t), "2024-03-01 08:30:00.123456");
    }

    #[test]
    fn floats_format_without_spurious_fraction() {
        assert_eq!(format_float(13800138000.0), "13800138000");
        assert_eq!(format_float(0.25), "0.25");
    }
}
