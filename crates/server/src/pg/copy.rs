//! `COPY … TO STDOUT`: a query's rows as copy data in PostgreSQL's text, CSV or binary format —
//! what psql's `\copy`, psycopg's `cursor.copy()` and pgJDBC's `CopyManager` use to export.
//! The rows come from the same plan as a query's, under the same grants, masks, row limit,
//! timeout, cancel and audit; only their encoding differs. `COPY … FROM` writes and is refused
//! like every write; `COPY … TO 'file'` would write on the server and is refused too.

use std::sync::{Arc, Mutex};

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
use futures::{Stream, StreamExt};
use pgwire::api::results::{CopyCsvOptions, CopyEncoder, CopyResponse, CopyTextOptions, FieldInfo};
use pgwire::error::PgWireResult;
use pgwire::messages::copy::CopyData;

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
    Ok((query, out))
}

fn force_quote(cols: &[datafusion::sql::sqlparser::ast::Ident]) -> Vec<String> {
    cols.iter().map(|c| c.value.clone()).collect()
}

impl CopyOut {
    /// The rows of `batches` (with `schema`, as `fields`) as copy data. A header line goes out
    /// with the first row, so the `COPY n` count is of rows only.
    pub(super) fn response(
        &self,
        fields: Arc<Vec<FieldInfo>>,
        schema: SchemaRef,
        batches: impl Stream<Item = PgWireResult<RecordBatch>> + Send + 'static,
    ) -> PgWireResult<CopyResponse> {
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let delimiter = self.delimiter.unwrap_or(match self.format {
            CopyFormat::Csv => ',',
            _ => '\t',
        });
        let quote = self.quote.unwrap_or('"');
        let mut encoder = match self.format {
            CopyFormat::Binary => CopyEncoder::new_binary(fields.clone()),
            CopyFormat::Text => CopyEncoder::new_text(
                fields.clone(),
                CopyTextOptions {
                    delimiter: delimiter.to_string().into(),
                    null_string: self.null.clone().unwrap_or_else(|| "\\N".into()).into(),
                },
            ),
            CopyFormat::Csv => {
                let force = self
                    .force_quote
                    .iter()
                    .map(|name| {
                        names.iter().position(|n| n == name).ok_or_else(|| {
                            error(
                                "42703",
                                &format!(
                                    "FORCE_QUOTE column \"{name}\" is not in the COPY's columns"
                                ),
                            )
                        })
                    })
                    .collect::<PgWireResult<Vec<usize>>>()?;
                CopyEncoder::new_csv(
                    fields.clone(),
                    CopyCsvOptions {
                        delimiter: delimiter.to_string().into(),
                        quote: quote.to_string().into(),
                        escape: self.escape.unwrap_or(quote).to_string().into(),
                        null_string: self.null.clone().unwrap_or_default().into(),
                        force_quote: force,
                    },
                )
            }
        };
        let header = self
            .header
            .then(|| header_line(self.format, &names, delimiter, quote));
        let pending = Arc::new(Mutex::new(header));
        let at_end = pending.clone();
        let rows = batches
            .map(move |batch| -> Vec<PgWireResult<CopyData>> {
                let batch = match batch {
                    Ok(b) => b,
                    Err(e) => return vec![Err(e)],
                };
                let mut out = Vec::with_capacity(batch.num_rows());
                for row in 0..batch.num_rows() {
                    for (i, column) in batch.columns().iter().enumerate() {
                        if let Err(e) = encode_value(
                            &mut encoder,
                            column,
                            row,
                            batch.schema_ref().field(i),
                            &fields[i],
                        ) {
                            out.push(Err(e));
                            return out;
                        }
                    }
                    let data = Encoder::take_row(&mut encoder);
                    let header = pending
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .take();
                    out.push(Ok(match header {
                        Some(h) => CopyData::new(Bytes::from([h, data.data.to_vec()].concat())),
                        None => data,
                    }));
                }
                out
            })
            .flat_map(futures::stream::iter);
        // No rows: the header alone.
        let tail = futures::stream::once(async move {
            at_end
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take()
        })
        .filter_map(|h| async move { h.map(|h| Ok(CopyData::new(Bytes::from(h)))) });
        let code = i8::from(self.format == CopyFormat::Binary);
        Ok(CopyResponse::new(code, names.len(), rows.chain(tail)))
    }
}

/// The column names as the first line: quoted as CSV quotes values, or escaped as text is.
fn header_line(format: CopyFormat, names: &[&str], delimiter: char, quote: char) -> Vec<u8> {
    let cells: Vec<String> = names
        .iter()
        .map(|n| match format {
            CopyFormat::Csv => {
                let needs = n.contains(delimiter)
                    || n.contains(quote)
                    || n.contains(['\n', '\r'])
                    || n.is_empty();
                if needs {
                    let q = quote.to_string();
                    format!("{q}{}{q}", n.replace(quote, &format!("{q}{q}")))
                } else {
                    (*n).to_string()
                }
            }
            _ => n
                .replace('\\', "\\\\")
                .replace('\n', "\\n")
                .replace('\r', "\\r")
                .replace(delimiter, &format!("\\{delimiter}")),
        })
        .collect();
    let mut line = cells.join(&delimiter.to_string()).into_bytes();
    line.push(b'\n');
    line
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
        assert_eq!(
            header_line(CopyFormat::Csv, &["a", "b;c", "d\"e"], ';', '"'),
            b"a;\"b;c\";\"d\"\"e\"\n"
        );
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
