//! Database column types and their exact Arrow counterparts.
//!
//! Every value is read from the database as its canonical text (PostgreSQL's output functions,
//! MySQL's `CAST(… AS CHAR)`) and parsed here into the Arrow type that holds it without loss:
//!
//! | source                                   | lake (Arrow / Delta)            |
//! |------------------------------------------|---------------------------------|
//! | smallint, int, bigint, TINYINT(1), YEAR  | Int64                           |
//! | BIGINT UNSIGNED                          | Decimal128(20, 0)               |
//! | numeric(p,s) / DECIMAL(p,s), p ≤ 38      | Decimal128(p, s)                |
//! | numeric without precision, p > 38        | Utf8 (exact digits, noted)      |
//! | real, double, FLOAT, DOUBLE              | Float64                         |
//! | boolean                                  | Boolean                         |
//! | date                                     | Date32                          |
//! | timestamp / DATETIME                     | Timestamp(µs) without time zone |
//! | timestamptz / MySQL TIMESTAMP            | Timestamp(µs, UTC)              |
//! | bytea, BLOB, BINARY                      | Binary                          |
//! | json, jsonb, arrays                      | Utf8 (JSON text, noted)         |
//! | text, varchar, char, enum, uuid, time, … | Utf8                            |
//!
//! MySQL's zero and partial-zero dates (`0000-00-00`, `2024-00-15`) load as NULL, and the row's
//! `_flags` keeps the raw value.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float64Builder,
    Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, TimeUnit};
use chrono::{DateTime, NaiveDate, NaiveDateTime};
use serde::Serialize;

/// How a source column is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LoadType {
    Int,
    /// Unsigned 64-bit, kept exact as a 20-digit decimal.
    UnsignedBig,
    Decimal {
        precision: u8,
        scale: i8,
    },
    Float,
    Bool,
    Date,
    /// Date and time without zone.
    Timestamp,
    /// An instant, stored in UTC.
    TimestampUtc,
    Binary,
    /// Text; `json` marks JSON documents and arrays rendered as JSON.
    Text {
        json: bool,
    },
}

impl LoadType {
    pub fn arrow(self) -> DataType {
        match self {
            Self::Int => DataType::Int64,
            Self::UnsignedBig => DataType::Decimal128(20, 0),
            Self::Decimal { precision, scale } => DataType::Decimal128(precision, scale),
            Self::Float => DataType::Float64,
            Self::Bool => DataType::Boolean,
            Self::Date => DataType::Date32,
            Self::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            Self::TimestampUtc => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Self::Binary => DataType::Binary,
            Self::Text { .. } => DataType::Utf8,
        }
    }
}

/// A source column: its declared type and how it loads.
#[derive(Debug, Clone, Serialize)]
pub struct SourceColumn {
    pub name: String,
    /// The type as the database declares it, e.g. `bigint(20) unsigned`, `numeric(12,2)`.
    pub source_type: String,
    pub load: LoadType,
    /// Why the column loads the way it does, when that is not obvious.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Maps a PostgreSQL type, as `format_type()` prints it, to its load type.
pub fn postgres_type(name: &str, declared: &str) -> SourceColumn {
    let t = declared.trim().to_ascii_lowercase();
    let mut note = None;
    let load = if t.ends_with("[]") {
        note = Some("array, loaded as JSON text".into());
        LoadType::Text { json: true }
    } else {
        let base = t.split('(').next().unwrap_or(&t).trim();
        match base {
            "smallint" | "integer" | "bigint" | "oid" => LoadType::Int,
            "real" | "double precision" => LoadType::Float,
            "boolean" => LoadType::Bool,
            "date" => LoadType::Date,
            "bytea" => LoadType::Binary,
            "json" | "jsonb" => LoadType::Text { json: true },
            "numeric" => match precision_scale(&t) {
                Some((p, s)) => decimal(p, s, &mut note),
                None => {
                    note = Some(
                        "numeric without declared precision; loaded as text to stay exact".into(),
                    );
                    LoadType::Text { json: false }
                }
            },
            _ if t.starts_with("timestamp") && t.ends_with(" with time zone") => {
                LoadType::TimestampUtc
            }
            _ if t.starts_with("timestamp") => LoadType::Timestamp,
            _ => LoadType::Text { json: false },
        }
    };
    SourceColumn {
        name: name.to_string(),
        source_type: declared.to_string(),
        load,
        note,
    }
}

/// Maps a MySQL/MariaDB column type, as `information_schema.COLUMNS.COLUMN_TYPE` prints it.
pub fn mysql_type(name: &str, declared: &str) -> SourceColumn {
    let t = declared.trim().to_ascii_lowercase();
    let unsigned = t.contains("unsigned");
    let base = t
        .split(|c: char| c == '(' || c.is_whitespace())
        .next()
        .unwrap_or(&t);
    let mut note = None;
    let load = match base {
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "year" => LoadType::Int,
        "bigint" if unsigned => LoadType::UnsignedBig,
        "bigint" => LoadType::Int,
        "bit" => LoadType::Text { json: false },
        "float" | "double" | "real" => LoadType::Float,
        "decimal" | "numeric" | "dec" | "fixed" => match precision_scale(&t) {
            Some((p, s)) => decimal(p, s, &mut note),
            // DECIMAL without arguments is DECIMAL(10,0).
            None => LoadType::Decimal {
                precision: 10,
                scale: 0,
            },
        },
        "date" => LoadType::Date,
        "datetime" => LoadType::Timestamp,
        "timestamp" => LoadType::TimestampUtc,
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => {
            LoadType::Binary
        }
        "json" => LoadType::Text { json: true },
        _ => LoadType::Text { json: false },
    };
    if base == "tinyint" && t.starts_with("tinyint(1)") {
        note = Some("TINYINT(1) loads as an integer; declare the column boolean to change".into());
    }
    SourceColumn {
        name: name.to_string(),
        source_type: declared.to_string(),
        load,
        note,
    }
}

/// A declared decimal: exact Decimal128 up to 38 digits, exact text beyond (with a note).
fn decimal(precision: u8, scale: i8, note: &mut Option<String>) -> LoadType {
    if precision <= 38 {
        LoadType::Decimal { precision, scale }
    } else {
        *note = Some(format!(
            "precision {precision} is beyond 38 digits; loaded as text to stay exact"
        ));
        LoadType::Text { json: false }
    }
}

/// `(p,s)` or `(p)` from a type such as `numeric(12,2)`.
fn precision_scale(t: &str) -> Option<(u8, i8)> {
    let inner = t.split_once('(')?.1.split_once(')')?.0;
    let mut parts = inner.split(',').map(|p| p.trim().parse::<i64>());
    let p = parts.next()?.ok()?;
    let s = match parts.next() {
        Some(s) => s.ok()?,
        None => 0,
    };
    if !(1..=255).contains(&p) || !(0..=p).contains(&s) {
        return None;
    }
    Some((p as u8, s as i8))
}

/// What happened to one value.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Ok,
    /// Loaded as NULL; the note goes to the row's `_flags`.
    Voided(String),
}

/// Builds one Arrow column from text values.
pub enum ColumnBuilder {
    Int(Int64Builder),
    Decimal(Decimal128Builder, u8, i8),
    Float(Float64Builder),
    Bool(BooleanBuilder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder, bool),
    Binary(BinaryBuilder),
    Text(StringBuilder),
}

impl ColumnBuilder {
    pub fn new(load: LoadType, capacity: usize) -> Self {
        match load {
            LoadType::Int => Self::Int(Int64Builder::with_capacity(capacity)),
            LoadType::UnsignedBig => {
                Self::Decimal(Decimal128Builder::with_capacity(capacity), 20, 0)
            }
            LoadType::Decimal { precision, scale } => {
                Self::Decimal(Decimal128Builder::with_capacity(capacity), precision, scale)
            }
            LoadType::Float => Self::Float(Float64Builder::with_capacity(capacity)),
            LoadType::Bool => Self::Bool(BooleanBuilder::with_capacity(capacity)),
            LoadType::Date => Self::Date(Date32Builder::with_capacity(capacity)),
            LoadType::Timestamp => {
                Self::Timestamp(TimestampMicrosecondBuilder::with_capacity(capacity), false)
            }
            LoadType::TimestampUtc => {
                Self::Timestamp(TimestampMicrosecondBuilder::with_capacity(capacity), true)
            }
            LoadType::Binary => Self::Binary(BinaryBuilder::with_capacity(capacity, capacity * 16)),
            LoadType::Text { .. } => {
                Self::Text(StringBuilder::with_capacity(capacity, capacity * 16))
            }
        }
    }

    /// Appends a value given as the database's text rendering. On error nothing is appended.
    pub fn append(&mut self, value: Option<&str>) -> Result<Parsed, String> {
        let Some(v) = value else {
            self.append_null();
            return Ok(Parsed::Ok);
        };
        match self {
            Self::Int(b) => {
                let n = v
                    .trim()
                    .parse::<i64>()
                    .map_err(|_| format!("{v:?} is not an integer"))?;
                b.append_value(n);
            }
            Self::Decimal(b, p, s) => b.append_value(parse_decimal(v, *p, *s)?),
            Self::Float(b) => {
                let f = match v.trim() {
                    "NaN" => f64::NAN,
                    "Infinity" | "inf" => f64::INFINITY,
                    "-Infinity" | "-inf" => f64::NEG_INFINITY,
                    t => t
                        .parse::<f64>()
                        .map_err(|_| format!("{v:?} is not a number"))?,
                };
                b.append_value(f);
            }
            Self::Bool(b) => match v.trim() {
                "t" | "true" | "1" => b.append_value(true),
                "f" | "false" | "0" => b.append_value(false),
                _ => return Err(format!("{v:?} is not a boolean")),
            },
            Self::Date(b) => {
                if let Some(note) = zero_date(v) {
                    b.append_null();
                    return Ok(Parsed::Voided(note));
                }
                let d = parse_date(v)?;
                b.append_value(days_since_epoch(d));
            }
            Self::Timestamp(b, utc) => {
                if let Some(note) = zero_date(v) {
                    b.append_null();
                    return Ok(Parsed::Voided(note));
                }
                let micros = if *utc {
                    parse_instant(v)?
                } else {
                    parse_naive(v)?.and_utc().timestamp_micros()
                };
                b.append_value(micros);
            }
            Self::Binary(b) => b.append_value(parse_hex(v)?),
            Self::Text(b) => b.append_value(v),
        }
        Ok(Parsed::Ok)
    }

    pub fn append_null(&mut self) {
        match self {
            Self::Int(b) => b.append_null(),
            Self::Decimal(b, ..) => b.append_null(),
            Self::Float(b) => b.append_null(),
            Self::Bool(b) => b.append_null(),
            Self::Date(b) => b.append_null(),
            Self::Timestamp(b, _) => b.append_null(),
            Self::Binary(b) => b.append_null(),
            Self::Text(b) => b.append_null(),
        }
    }

    pub fn finish(&mut self) -> Result<ArrayRef, arrow::error::ArrowError> {
        Ok(match self {
            Self::Int(b) => Arc::new(b.finish()),
            Self::Decimal(b, p, s) => Arc::new(b.finish().with_precision_and_scale(*p, *s)?),
            Self::Float(b) => Arc::new(b.finish()),
            Self::Bool(b) => Arc::new(b.finish()),
            Self::Date(b) => Arc::new(b.finish()),
            Self::Timestamp(b, utc) => {
                let a = b.finish();
                Arc::new(if *utc { a.with_timezone("UTC") } else { a })
            }
            Self::Binary(b) => Arc::new(b.finish()),
            Self::Text(b) => Arc::new(b.finish()),
        })
    }
}

/// MySQL zero dates: `0000-00-00`, and partial zeros such as `2024-00-15` or `2024-03-00`.
fn zero_date(v: &str) -> Option<String> {
    let date = v.get(..10)?;
    let b = date.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, m, d) = (&date[..4], &date[5..7], &date[8..10]);
    if y == "0000" || m == "00" || d == "00" {
        Some(format!("zero date {v:?} loaded as NULL"))
    } else {
        None
    }
}

fn parse_date(v: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(v.trim(), "%Y-%m-%d")
        .map_err(|_| format!("{v:?} is not a date (YYYY-MM-DD)"))
}

fn days_since_epoch(d: NaiveDate) -> i32 {
    // The Unix epoch in chrono's day count from 0001-01-01 (CE day 1).
    const UNIX_EPOCH_CE: i32 = 719_163;
    chrono::Datelike::num_days_from_ce(&d) - UNIX_EPOCH_CE
}

fn parse_naive(v: &str) -> Result<NaiveDateTime, String> {
    NaiveDateTime::parse_from_str(v.trim(), "%Y-%m-%d %H:%M:%S%.f")
        .map_err(|_| format!("{v:?} is not a date and time (YYYY-MM-DD HH:MM:SS[.ffffff])"))
}

/// An instant as PostgreSQL prints `timestamptz` (`2024-03-01 08:30:00.5+08`, `…+05:30`) or
/// MySQL prints a `TIMESTAMP` in a UTC session (no offset).
fn parse_instant(v: &str) -> Result<i64, String> {
    let t = v.trim();
    // The offset starts at the last '+' or '-' after the time part.
    let split = t
        .char_indices()
        .skip(11)
        .filter(|(_, c)| *c == '+' || *c == '-')
        .map(|(i, _)| i)
        .last();
    match split {
        None => Ok(parse_naive(t)?.and_utc().timestamp_micros()),
        Some(i) => {
            let (dt, off) = t.split_at(i);
            let off = match off.len() {
                3 => format!("{off}:00"),
                _ => off.to_string(),
            };
            DateTime::parse_from_str(&format!("{dt}{off}"), "%Y-%m-%d %H:%M:%S%.f%:z")
                .map(|d| d.timestamp_micros())
                .map_err(|_| format!("{v:?} is not a timestamp with time zone"))
        }
    }
}

/// PostgreSQL's `bytea` hex output (`\x0a1b`) or MySQL's `HEX()` (`0A1B`).
fn parse_hex(v: &str) -> Result<Vec<u8>, String> {
    let h = v.strip_prefix("\\x").unwrap_or(v);
    hex::decode(h).map_err(|_| format!("{:?}… is not hexadecimal bytes", truncate(v, 20)))
}

fn truncate(v: &str, n: usize) -> &str {
    match v.char_indices().nth(n) {
        Some((i, _)) => &v[..i],
        None => v,
    }
}

/// Parses a plain decimal (`-123.45`, `7`, `1.5E+3` is refused) into an unscaled i128.
pub fn parse_decimal(v: &str, precision: u8, scale: i8) -> Result<i128, String> {
    let t = v.trim();
    let (neg, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let bad = || format!("{v:?} is not a decimal number");
    if int.is_empty() && frac.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let scale = scale.max(0) as usize;
    let frac_trimmed = frac.trim_end_matches('0');
    if frac_trimmed.len() > scale {
        return Err(format!(
            "{v:?} has more than {scale} decimal places (DECIMAL({precision},{scale}))"
        ));
    }
    let mut unscaled: i128 = 0;
    let int = int.trim_start_matches('0');
    if int.len() + scale > precision as usize {
        return Err(format!("{v:?} does not fit DECIMAL({precision},{scale})"));
    }
    for b in int.bytes().chain(
        frac_trimmed
            .bytes()
            .chain(std::iter::repeat_n(b'0', scale - frac_trimmed.len())),
    ) {
        unscaled = unscaled
            .checked_mul(10)
            .and_then(|u| u.checked_add(i128::from(b - b'0')))
            .ok_or_else(bad)?;
    }
    Ok(if neg { -unscaled } else { unscaled })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Decimal128Array, TimestampMicrosecondArray};

    #[test]
    fn mysql_types_map_exactly() {
        assert_eq!(mysql_type("a", "tinyint(1)").load, LoadType::Int);
        assert!(mysql_type("a", "tinyint(1)").note.is_some());
        assert_eq!(
            mysql_type("a", "bigint(20) unsigned").load,
            LoadType::UnsignedBig
        );
        assert_eq!(mysql_type("a", "int(10) unsigned").load, LoadType::Int);
        assert_eq!(
            mysql_type("a", "decimal(12,0)").load,
            LoadType::Decimal {
                precision: 12,
                scale: 0
            }
        );
        assert_eq!(
            mysql_type("a", "decimal(65,30)").load,
            LoadType::Text { json: false }
        );
        assert_eq!(mysql_type("a", "timestamp(6)").load, LoadType::TimestampUtc);
        assert_eq!(mysql_type("a", "datetime(3)").load, LoadType::Timestamp);
        assert_eq!(mysql_type("a", "varbinary(16)").load, LoadType::Binary);
    }

    #[test]
    fn postgres_types_map_exactly() {
        let t = |d| postgres_type("a", d).load;
        assert_eq!(t("timestamp without time zone"), LoadType::Timestamp);
        assert_eq!(t("timestamp(3) without time zone"), LoadType::Timestamp);
        assert_eq!(t("timestamp with time zone"), LoadType::TimestampUtc);
        assert_eq!(
            t("numeric(10,0)"),
            LoadType::Decimal {
                precision: 10,
                scale: 0
            }
        );
        assert_eq!(t("numeric"), LoadType::Text { json: false });
        assert_eq!(t("integer[]"), LoadType::Text { json: true });
        assert_eq!(t("jsonb"), LoadType::Text { json: true });
        assert_eq!(t("character varying(20)"), LoadType::Text { json: false });
    }

    #[test]
    fn decimals_parse_exactly() {
        assert_eq!(parse_decimal("123.45", 10, 2), Ok(12345));
        assert_eq!(parse_decimal("-0.5", 10, 2), Ok(-50));
        assert_eq!(
            parse_decimal("18446744073709551615", 20, 0),
            Ok(18_446_744_073_709_551_615)
        );
        assert_eq!(parse_decimal("7.10", 4, 1), Ok(71));
        assert!(parse_decimal("1.234", 10, 2).is_err());
        assert!(parse_decimal("123456789012", 10, 0).is_err());
        assert!(parse_decimal("1e5", 10, 0).is_err());
        assert!(parse_decimal("", 10, 0).is_err());
    }

    #[test]
    fn zero_dates_are_voided_with_the_raw_value() {
        let mut b = ColumnBuilder::new(LoadType::Date, 4);
        assert_eq!(b.append(Some("2024-02-29")), Ok(Parsed::Ok));
        assert!(
            matches!(b.append(Some("0000-00-00")), Ok(Parsed::Voided(n)) if n.contains("0000-00-00"))
        );
        assert!(matches!(
            b.append(Some("2024-00-15")),
            Ok(Parsed::Voided(_))
        ));
        assert!(b.append(Some("2024-13-01")).is_err());
        let a = b.finish().unwrap();
        assert_eq!(a.len(), 3);
        assert_eq!(a.null_count(), 2);
    }

    #[test]
    fn instants_honour_offsets_and_naive_times_never_shift() {
        let mut b = ColumnBuilder::new(LoadType::TimestampUtc, 3);
        b.append(Some("2024-03-01 08:30:00.123456+08")).unwrap();
        b.append(Some("2024-03-01 00:30:00.123456+00")).unwrap();
        b.append(Some("2024-03-01 06:00:00.123456+05:30")).unwrap();
        let a = b.finish().unwrap();
        let a = a
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap();
        assert_eq!(a.value(0), a.value(1));
        assert_eq!(a.value(1), a.value(2));
        let mut n = ColumnBuilder::new(LoadType::Timestamp, 1);
        n.append(Some("2024-03-01 08:30:00.000001")).unwrap();
        let n = n.finish().unwrap();
        let n = n
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap();
        assert_eq!(
            n.value(0),
            NaiveDateTime::parse_from_str("2024-03-01 08:30:00.000001", "%Y-%m-%d %H:%M:%S%.f")
                .unwrap()
                .and_utc()
                .timestamp_micros()
        );
        assert!(n.timezone().is_none());
    }

    #[test]
    fn unsigned_bigint_max_is_exact() {
        let mut b = ColumnBuilder::new(LoadType::UnsignedBig, 1);
        b.append(Some("18446744073709551615")).unwrap();
        let a = b.finish().unwrap();
        let a = a.as_any().downcast_ref::<Decimal128Array>().unwrap();
        assert_eq!(a.value_as_string(0), "18446744073709551615");
    }
}
