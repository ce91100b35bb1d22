//! `COPY … TO STDOUT`: a query's rows as copy data in PostgreSQL's text, CSV or binary format —
//! what psql's `\copy`, psycopg's `cursor.copy()` and pgJDBC's `CopyManager` use to export.
//! The rows come from the same plan as a query's, under the same grants, masks, row limit,
//! timeout, cancel and audit; only their encoding differs. `COPY … FROM` writes and is refused
//! like every write; `COPY … TO 'file'` would write on the server and is refused too.
//!
//! Text and CSV are written here by PostgreSQL's rules (`CopyAttributeOutText`,
//! `CopyAttributeOutCSV`): each value's text as PostgreSQL renders it (arrow-pg's encoders),
//! backslash escapes in text, quoting in CSV where a value holds the delimiter, the quote, a
//! line break, equals the NULL string (so an empty string is `""`) or is a lone `\.`; options
//! are checked as PostgreSQL checks them. Binary is pgwire's encoder. The messages are sent
//! here too: an error in the middle of the data is an ErrorResponse, as PostgreSQL sends it.

use std::fmt::Debug;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use axum::body::Bytes;
use datafusion::sql::sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Statement,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion_postgres::arrow_pg::encoder::{Encoder, encode_value};
use datafusion_postgres::pgwire;
use futures::stream::BoxStream;
use futures::{Sink, SinkExt, StreamExt};
use pgwire::api::results::{CopyEncoder, DataRowEncoder, FieldInfo};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::{CopyData, CopyDone, CopyOutResponse};

use super::error;

/// How a `COPY … TO STDOUT` writes its rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CopyOut {
    pub format: CopyFormat,
    header: bool,
    delimiter: Option<char>,
    null: Option<String>,
    quote: Option<char>,
    escape: Option<char>,
    /// Columns CSV always quotes.
    force_quote: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CopyFormat {
    Text,
    Csv,
    Binary,
}

/// For a `COPY … TO STDOUT`, the query whose rows it copies and how; `None` for any other
/// statement (a `COPY … FROM` among them: it is refused as a write).
pub(super) fn copy_out(statement: &Statement) -> Option<PgWireResult<(Statement, CopyOut)>> {
    let Statement::Copy {
        source,
        to: true,
        target,
        options,
        legacy_options,
        ..
    } = statement
    else {
        return None;
    };
    Some(plan(source, target, options, legacy_options))
}

fn plan(
    source: &CopySource,
    target: &CopyTarget,
    options: &[CopyOption],
    legacy: &[CopyLegacyOption],
) -> PgWireResult<(Statement, CopyOut)> {
    if *target != CopyTarget::Stdout {
        return Err(error(
            "42501",
            "COPY to a file or program would write on the server: copy to the client instead \
             (COPY … TO STDOUT, or psql's \\copy)",
        ));
    }
    let query = match source {
        CopySource::Query(q) => Statement::Query(q.clone()),
        CopySource::Table {
            table_name,
            columns,
        } => {
            let columns = if columns.is_empty() {
                "*".to_string()
            } else {
                columns
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let sql = format!("SELECT {columns} FROM {table_name}");
            Parser::parse_sql(&PostgreSqlDialect {}, &sql)
                .map_err(|e| error("42601", &e.to_string()))?
                .pop()
                .ok_or_else(|| error("42601", "COPY names no table"))?
        }
    };
    let mut out = CopyOut {
        format: CopyFormat::Text,
        header: false,
        delimiter: None,
        null: None,
        quote: None,
        escape: None,
        force_quote: Vec::new(),
    };
    let only_from = |what: &str| {
        error(
            "22023",
            &format!("COPY option {what} is only for COPY FROM"),
        )
    };
    for option in options {
        match option {
            CopyOption::Format(name) => {
                out.format = match name.value.to_lowercase().as_str() {
                    "text" => CopyFormat::Text,
                    "csv" => CopyFormat::Csv,
                    "binary" => CopyFormat::Binary,
                    other => {
                        return Err(error(
                            "22023",
                            &format!(
                                "COPY format \"{other}\" not recognized (text, csv or binary)"
                            ),
                        ));
                    }
                }
            }
            CopyOption::Header(h) => out.header = *h,
            CopyOption::Delimiter(c) => out.delimiter = Some(*c),
            CopyOption::Null(s) => out.null = Some(s.clone()),
            CopyOption::Quote(c) => out.quote = Some(*c),
            CopyOption::Escape(c) => out.escape = Some(*c),
            CopyOption::ForceQuote(cols) => out.force_quote.extend(force_quote(cols)),
            CopyOption::Encoding(e) => {
                let e = e.to_uppercase().replace(['-', '_'], "");
                if e != "UTF8" {
                    return Err(error(
                        "0A000",
                        &format!("COPY writes UTF8 only, not {e}: convert on the client"),
                    ));
                }
            }
            CopyOption::Freeze(_) => return Err(only_from("FREEZE")),
            CopyOption::ForceNotNull(_) => return Err(only_from("FORCE_NOT_NULL")),
            CopyOption::ForceNull(_) => return Err(only_from("FORCE_NULL")),
        }
    }
    for option in legacy {
        match option {
            CopyLegacyOption::Binary => out.format = CopyFormat::Binary,
            CopyLegacyOption::Csv(csv) => {
                out.format = CopyFormat::Csv;
                for o in csv {
                    match o {
                        CopyLegacyCsvOption::Header => out.header = true,
                        CopyLegacyCsvOption::Quote(c) => out.quote = Some(*c),
                        CopyLegacyCsvOption::Escape(c) => out.escape = Some(*c),
                        CopyLegacyCsvOption::ForceQuote(cols) => {
                            out.force_quote.extend(force_quote(cols));
                        }
                        CopyLegacyCsvOption::ForceNotNull(_) => {
                            return Err(only_from("FORCE NOT NULL"));
                        }
                    }
                }
            }
            CopyLegacyOption::Header => out.header = true,
            CopyLegacyOption::Delimiter(c) => out.delimiter = Some(*c),
            CopyLegacyOption::Null(s) => out.null = Some(s.clone()),
            other => {
                return Err(error(
                    "0A000",
                    &format!("COPY option {other} is not PostgreSQL's and is not supported"),
                ));
            }
        }
    }
    if out.format == CopyFormat::Binary
        && (out.header
            || out.delimiter.is_some()
            || out.null.is_some()
            || out.quote.is_some()
            || out.escape.is_some()
            || !out.force_quote.is_empty())
    {
        return Err(error(
            "22023",
            "COPY in binary format takes no HEADER, DELIMITER, NULL, QUOTE, ESCAPE or FORCE_QUOTE",
        ));
    }
    if out.format != CopyFormat::Csv
        && (out.quote.is_some() || out.escape.is_some() || !out.force_quote.is_empty())
    {
        return Err(error(
            "22023",
            "COPY QUOTE, ESCAPE and FORCE_QUOTE are for CSV format only",
        ));
    }
    out.check()?;
    Ok((query, out))
}

fn force_quote(cols: &[datafusion::sql::sqlparser::ast::Ident]) -> Vec<String> {
    cols.iter().map(|c| c.value.clone()).collect()
}

impl CopyOut {
    fn delimiter(&self) -> char {
        self.delimiter.unwrap_or(match self.format {
            CopyFormat::Csv => ',',
            _ => '\t',
        })
    }

    fn null(&self) -> &str {
        self.null.as_deref().unwrap_or(match self.format {
            CopyFormat::Csv => "",
            _ => "\\N",
        })
    }

    fn quote(&self) -> char {
        self.quote.unwrap_or('"')
    }

    fn escape(&self) -> char {
        self.escape.unwrap_or(self.quote())
    }

    /// The options PostgreSQL refuses together (`ProcessCopyOptions`), refused alike.
    fn check(&self) -> PgWireResult<()> {
        if self.format == CopyFormat::Binary {
            return Ok(());
        }
        let bad = |m: &str| Err(error("22023", m));
        let delimiter = self.delimiter();
        let null = self.null();
        for (what, c) in [
            ("delimiter", Some(delimiter)),
            ("quote", self.quote),
            ("escape", self.escape),
        ] {
            if let Some(c) = c
                && !c.is_ascii()
            {
                return bad(&format!("COPY {what} must be a single one-byte character"));
            }
        }
        if matches!(delimiter, '\n' | '\r') {
            return bad("COPY delimiter cannot be newline or carriage return");
        }
        if null.contains(['\n', '\r']) {
            return bad("COPY null representation cannot use newline or carriage return");
        }
        if self.format == CopyFormat::Text
            && "\\.abcdefghijklmnopqrstuvwxyz0123456789".contains(delimiter)
        {
            return bad(&format!("COPY delimiter cannot be \"{delimiter}\""));
        }
        if null.contains(delimiter) {
            return bad("COPY delimiter character must not appear in the NULL specification");
        }
        if self.format == CopyFormat::Csv {
            if delimiter == self.quote() {
                return bad("COPY delimiter and quote must be different");
            }
            if null.contains(self.quote()) {
                return bad("CSV quote character must not appear in the NULL specification");
            }
        }
        Ok(())
    }

    /// The output columns `FORCE_QUOTE` names, by position; an unknown name is refused before
    /// the statement runs.
    pub(super) fn forced(&self, schema: &SchemaRef) -> PgWireResult<Vec<bool>> {
        let mut forced = vec![false; schema.fields().len()];
        for name in &self.force_quote {
            let i = schema.index_of(name).map_err(|_| {
                error(
                    "42703",
                    &format!("FORCE_QUOTE column \"{name}\" is not in the COPY's columns"),
                )
            })?;
            forced[i] = true;
        }
        Ok(forced)
    }

    /// Sends the rows of `batches` (with `schema`, typed as `fields`) to the client as copy
    /// data; returns how many rows went out. A header line, if asked for, is not counted.
    pub(super) async fn send<C>(
        &self,
        client: &mut C,
        fields: Arc<Vec<FieldInfo>>,
        schema: SchemaRef,
        mut batches: BoxStream<'static, PgWireResult<RecordBatch>>,
    ) -> PgWireResult<usize>
    where
        C: Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let columns = fields.len();
        let binary = self.format == CopyFormat::Binary;
        let format = i16::from(binary);
        client
            .send(PgWireBackendMessage::CopyOutResponse(CopyOutResponse::new(
                i8::from(binary),
                columns as i16,
                vec![format; columns],
            )))
            .await?;
        let forced = self.forced(&schema)?;
        let mut text = DataRowEncoder::new(fields.clone());
        let mut bin = CopyEncoder::new_binary(fields.clone());
        if self.header && !binary {
            let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            let mut line = Vec::new();
            for (i, name) in names.iter().enumerate() {
                if i > 0 {
                    push_char(&mut line, self.delimiter());
                }
                self.write_value(&mut line, Some(name.as_bytes()), false, columns);
            }
            line.push(b'\n');
            client
                .feed(PgWireBackendMessage::CopyData(CopyData::new(Bytes::from(
                    line,
                ))))
                .await?;
        }
        let mut rows = 0usize;
        while let Some(batch) = batches.next().await {
            let batch = batch?;
            for row in 0..batch.num_rows() {
                let data = if binary {
                    for (i, column) in batch.columns().iter().enumerate() {
                        encode_value(
                            &mut bin,
                            column,
                            row,
                            batch.schema_ref().field(i),
                            &fields[i],
                        )?;
                    }
                    Encoder::take_row(&mut bin).data
                } else {
                    for (i, column) in batch.columns().iter().enumerate() {
                        encode_value(
                            &mut text,
                            column,
                            row,
                            batch.schema_ref().field(i),
                            &fields[i],
                        )?;
                    }
                    let values = Encoder::take_row(&mut text);
                    let mut line = Vec::with_capacity(values.data.len() + 8);
                    for (i, value) in text_values(&values.data).enumerate() {
                        if i > 0 {
                            push_char(&mut line, self.delimiter());
                        }
                        self.write_value(&mut line, value, forced[i], columns);
                    }
                    line.push(b'\n');
                    Bytes::from(line)
                };
                client
                    .feed(PgWireBackendMessage::CopyData(CopyData::new(data)))
                    .await?;
                rows += 1;
            }
        }
        if binary {
            client
                .feed(PgWireBackendMessage::CopyData(
                    CopyEncoder::finish_copy_binary(),
                ))
                .await?;
        }
        client
            .send(PgWireBackendMessage::CopyDone(CopyDone::new()))
            .await?;
        Ok(rows)
    }

    /// One value (`None`: NULL) as text or CSV, by PostgreSQL's rules.
    fn write_value(&self, out: &mut Vec<u8>, value: Option<&[u8]>, forced: bool, columns: usize) {
        let Some(value) = value else {
            out.extend_from_slice(self.null().as_bytes());
            return;
        };
        let delimiter = self.delimiter();
        if self.format == CopyFormat::Text {
            for &b in value {
                match b {
                    b'\\' => out.extend_from_slice(b"\\\\"),
                    b'\n' => out.extend_from_slice(b"\\n"),
                    b'\r' => out.extend_from_slice(b"\\r"),
                    b'\t' => out.extend_from_slice(b"\\t"),
                    0x08 => out.extend_from_slice(b"\\b"),
                    0x0b => out.extend_from_slice(b"\\v"),
                    0x0c => out.extend_from_slice(b"\\f"),
                    b if b == delimiter as u8 => {
                        out.push(b'\\');
                        out.push(b);
                    }
                    b => out.push(b),
                }
            }
            return;
        }
        let (quote, escape) = (self.quote() as u8, self.escape() as u8);
        let needs = forced
            || value == self.null().as_bytes()
            || (columns == 1 && value == b"\\.")
            || value
                .iter()
                .any(|&b| b == delimiter as u8 || b == quote || b == b'\n' || b == b'\r');
        if !needs {
            out.extend_from_slice(value);
            return;
        }
        out.push(quote);
        for &b in value {
            if b == quote || b == escape {
                out.push(escape);
            }
            out.push(b);
        }
        out.push(quote);
    }
}

fn push_char(out: &mut Vec<u8>, c: char) {
    let mut buf = [0u8; 4];
    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
}

/// The values of a text-format data row: length-prefixed, -1 for NULL.
fn text_values(data: &[u8]) -> impl Iterator<Item = Option<&[u8]>> {
    let mut rest = data;
    std::iter::from_fn(move || {
        let (len, tail) = rest.split_first_chunk::<4>()?;
        let len = i32::from_be_bytes(*len);
        if len < 0 {
            rest = tail;
            return Some(None);
        }
        let (value, tail) = tail.split_at(len as usize);
        rest = tail;
        Some(Some(value))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(sql: &str) -> PgWireResult<(Statement, CopyOut)> {
        let statement = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .pop()
            .unwrap();
        copy_out(&statement).expect("a COPY TO")
    }

    #[test]
    fn copy_options_as_psql_and_drivers_send_them() {
        // psql's \copy (…) to 'f' csv header
        let (q, c) = parse("COPY ( SELECT a FROM t ) TO STDOUT csv header").unwrap();
        assert_eq!(q.to_string(), "SELECT a FROM t");
        assert_eq!(c.format, CopyFormat::Csv);
        assert!(c.header);
        let (q, c) = parse("COPY t (a, \"B c\") TO STDOUT WITH (FORMAT binary)").unwrap();
        assert_eq!(q.to_string(), "SELECT a, \"B c\" FROM t");
        assert_eq!(c.format, CopyFormat::Binary);
        let (_, c) = parse(
            "COPY t TO STDOUT (FORMAT csv, HEADER, DELIMITER ';', NULL 'NA', FORCE_QUOTE (a))",
        )
        .unwrap();
        assert_eq!(
            (c.delimiter, c.null.as_deref(), c.force_quote.as_slice()),
            (Some(';'), Some("NA"), &["a".to_string()][..])
        );
        let csv = |c: &CopyOut, v: Option<&str>, columns: usize| {
            let mut out = Vec::new();
            c.write_value(&mut out, v.map(str::as_bytes), false, columns);
            String::from_utf8(out).unwrap()
        };
        // PostgreSQL's CSV: NULL bare, an empty string quoted, quotes doubled, the delimiter
        // and line breaks quoted, a lone \. quoted.
        let (_, plain) = parse("COPY t TO STDOUT (FORMAT csv)").unwrap();
        assert_eq!(csv(&plain, None, 2), "");
        assert_eq!(csv(&plain, Some(""), 2), r#""""#);
        assert_eq!(csv(&plain, Some(r#"a"b"#), 2), r#""a""b""#);
        assert_eq!(csv(&plain, Some("c,d"), 2), r#""c,d""#);
        assert_eq!(csv(&plain, Some("x\ny"), 2), "\"x\ny\"");
        assert_eq!(csv(&plain, Some(r"\."), 1), r#""\.""#);
        assert_eq!(csv(&plain, Some(r"\."), 2), r"\.");
        assert_eq!(csv(&plain, Some("岳阳街道"), 2), "岳阳街道");
        // ESCAPE: quotes and escapes inside quoted values get it.
        let (_, esc) = parse(r"COPY t TO STDOUT (FORMAT csv, ESCAPE '\')").unwrap();
        assert_eq!(csv(&esc, Some(r#"a"b"#), 2), r#""a\"b""#);
        assert_eq!(csv(&esc, Some(r"c,d\"), 2), r#""c,d\\""#);
        // Text: backslash escapes, the delimiter escaped, NULL as \N.
        let (_, text) = parse("COPY t TO STDOUT").unwrap();
        assert_eq!(csv(&text, None, 2), r"\N");
        assert_eq!(csv(&text, Some("a\tb\\c\nd"), 2), r"a\tb\\c\nd");
        let (_, semi) = parse("COPY t TO STDOUT (DELIMITER ';')").unwrap();
        assert_eq!(csv(&semi, Some("a;b"), 2), r"a\;b");
    }

    #[test]
    fn copies_that_would_write_or_make_no_sense_are_refused() {
        let code = |sql: &str| match parse(sql) {
            Err(pgwire::error::PgWireError::UserError(e)) => e.code.clone(),
            other => panic!("{sql}: {other:?}"),
        };
        assert_eq!(code("COPY t TO '/tmp/t.csv'"), "42501");
        assert_eq!(code("COPY t TO PROGRAM 'cat'"), "42501");
        assert_eq!(code("COPY t TO STDOUT (FORMAT xml)"), "22023");
        assert_eq!(code("COPY t TO STDOUT (FORMAT binary, HEADER)"), "22023");
        assert_eq!(code("COPY t TO STDOUT (QUOTE '''')"), "22023");
        assert_eq!(code("COPY t TO STDOUT (FREEZE)"), "22023");
        assert_eq!(code("COPY t TO STDOUT (ENCODING 'GBK')"), "0A000");
        // What PostgreSQL refuses as options that write unreadable data.
        for sql in [
            "COPY t TO STDOUT (FORMAT csv, QUOTE ',')",
            "COPY t TO STDOUT (FORMAT csv, NULL ',')",
            r#"COPY t TO STDOUT (FORMAT csv, NULL '"')"#,
            r"COPY t TO STDOUT (NULL E'\t')",
            "COPY t TO STDOUT (DELIMITER 'n')",
            "COPY t TO STDOUT (DELIMITER '.')",
            r"COPY t TO STDOUT (DELIMITER '\')",
            r"COPY t TO STDOUT (DELIMITER E'\n')",
        ] {
            assert_eq!(code(sql), "22023", "{sql}");
        }
        let from = Parser::parse_sql(&PostgreSqlDialect {}, "COPY t FROM STDIN")
            .unwrap()
            .pop()
            .unwrap();
        assert!(
            copy_out(&from).is_none(),
            "COPY FROM is a write, refused elsewhere"
        );
    }
}
