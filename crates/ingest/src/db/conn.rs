//! Connections to the units' databases: introspection and streaming of rows as text.
//!
//! Every value is selected as the database's own text rendering (`::text` in PostgreSQL,
//! `CAST(… AS CHAR)` / `HEX(…)` in MySQL and MariaDB) in a session pinned to UTC and ISO
//! formats, and parsed into Arrow by [`super::types`]. That keeps the exact digits of numerics,
//! the full precision of timestamps and the raw text of values MySQL cannot represent (zero
//! dates), whatever the driver would have made of them.

use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use sqlx::mysql::MySqlConnection;
use sqlx::postgres::PgConnection;
use sqlx::{Connection, Row};

use super::DbKind;
use super::types::{LoadType, SourceColumn, mysql_type, postgres_type};
use crate::{Error, Result};

/// One source column as introspected.
#[derive(Debug, Clone)]
pub(crate) struct Introspected {
    pub column: SourceColumn,
    pub nullable: bool,
}

pub(crate) enum Conn {
    Pg(PgConnection),
    My(MySqlConnection),
}

/// A row: each column's text, NULL as `None`.
pub(crate) type TextRow = Vec<Option<String>>;

impl Conn {
    pub async fn connect(kind: DbKind, url: &str, shown: &str) -> Result<Self> {
        let fail = |e: sqlx::Error| Error::Database {
            name: shown.to_string(),
            message: format!("cannot connect: {e}"),
        };
        Ok(match kind {
            DbKind::Postgres => {
                let mut c = PgConnection::connect(url).await.map_err(fail)?;
                sqlx::raw_sql(
                    "SET DateStyle = 'ISO, YMD'; SET TimeZone = 'UTC'; \
                     SET extra_float_digits = 3; SET bytea_output = 'hex'; \
                     SET IntervalStyle = 'iso_8601'; \
                     SET default_transaction_read_only = on",
                )
                .execute(&mut c)
                .await
                .map_err(fail)?;
                Self::Pg(c)
            }
            DbKind::MySql => {
                // sqlx speaks the same protocol to both; it knows the scheme as mysql.
                let url = match url.split_once("://") {
                    Some((scheme, rest)) if scheme.eq_ignore_ascii_case("mariadb") => {
                        format!("mysql://{rest}")
                    }
                    _ => url.to_string(),
                };
                let mut c = MySqlConnection::connect(&url).await.map_err(fail)?;
                sqlx::raw_sql("SET time_zone = '+00:00'")
                    .execute(&mut c)
                    .await
                    .map_err(fail)?;
                Self::My(c)
            }
        })
    }

    pub fn kind(&self) -> DbKind {
        match self {
            Self::Pg(_) => DbKind::Postgres,
            Self::My(_) => DbKind::MySql,
        }
    }

    /// Quotes an identifier for this database.
    pub fn quote(&self, ident: &str) -> String {
        match self {
            Self::Pg(_) => format!("\"{}\"", ident.replace('"', "\"\"")),
            Self::My(_) => format!("`{}`", ident.replace('`', "``")),
        }
    }

    /// `schema.table` or `table`, quoted.
    pub fn quote_table(&self, table: &str) -> String {
        table
            .split('.')
            .map(|p| self.quote(p))
            .collect::<Vec<_>>()
            .join(".")
    }

    /// The columns of `table` in their declared order.
    pub async fn columns(&mut self, table: &str) -> Result<Vec<Introspected>> {
        let source = table.to_string();
        let fail = |e: sqlx::Error| Error::Database {
            name: source.clone(),
            message: e.to_string(),
        };
        let quoted = self.quote_table(table);
        let rows: Vec<(String, String, bool)> = match self {
            Self::Pg(c) => sqlx::query(
                "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull \
                 FROM pg_attribute a \
                 WHERE a.attrelid = CAST($1 AS regclass) AND a.attnum > 0 AND NOT a.attisdropped \
                 ORDER BY a.attnum",
            )
            .bind(&quoted)
            .fetch_all(c)
            .await
            .map_err(fail)?
            .into_iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect::<std::result::Result<_, sqlx::Error>>()
            .map_err(fail)?,
            Self::My(c) => {
                let (schema, name) = match table.split_once('.') {
                    Some((s, n)) => (Some(s.to_string()), n.to_string()),
                    None => (None, table.to_string()),
                };
                sqlx::query(
                    "SELECT CAST(COLUMN_NAME AS CHAR), CAST(COLUMN_TYPE AS CHAR), \
                            CAST(IS_NULLABLE AS CHAR) \
                     FROM information_schema.COLUMNS \
                     WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ? \
                     ORDER BY ORDINAL_POSITION",
                )
                .bind(schema)
                .bind(name)
                .fetch_all(c)
                .await
                .map_err(fail)?
                .into_iter()
                .map(|r| {
                    let nullable: String = r.try_get(2)?;
                    Ok((r.try_get(0)?, r.try_get(1)?, nullable == "YES"))
                })
                .collect::<std::result::Result<_, sqlx::Error>>()
                .map_err(fail)?
            }
        };
        if rows.is_empty() {
            return Err(Error::Database {
                name: table.to_string(),
                message: "table not found, or it has no columns the connection may read".into(),
            });
        }
        let kind = self.kind();
        Ok(rows
            .into_iter()
            .map(|(name, declared, nullable)| Introspected {
                column: match kind {
                    DbKind::Postgres => postgres_type(&name, &declared),
                    DbKind::MySql => mysql_type(&name, &declared),
                },
                nullable,
            })
            .collect())
    }

    /// The select-list expression that renders `col` as text.
    pub fn text_expr(&self, col: &SourceColumn) -> String {
        let q = self.quote(&col.name);
        match self {
            Self::Pg(_) => {
                if col.source_type.ends_with("[]") {
                    format!("array_to_json({q})::text")
                } else {
                    format!("{q}::text")
                }
            }
            Self::My(_) => match col.load {
                LoadType::Binary => format!("HEX({q})"),
                _ if col.source_type.to_ascii_lowercase().starts_with("bit") => {
                    format!("CAST({q} + 0 AS CHAR)")
                }
                _ => format!("CAST({q} AS CHAR)"),
            },
        }
    }

    /// A parameter placeholder (1-based), cast to the column's declared type where needed.
    pub fn param(&self, n: usize, col: &SourceColumn) -> String {
        match self {
            Self::Pg(_) => format!("CAST(${n} AS {})", col.source_type),
            // MySQL converts a string compared with a typed column to the column's type.
            Self::My(_) => "?".into(),
        }
    }

    /// Parameter `n` (a cursor value) moved back by `lookback`.
    pub fn window_start(&self, n: usize, col: &SourceColumn, lookback: super::Lookback) -> String {
        use super::Lookback;
        match (self, lookback) {
            (Self::Pg(_), Lookback::Seconds(s)) => {
                format!("{} - INTERVAL '{s} seconds'", self.param(n, col))
            }
            (Self::Pg(_), Lookback::Amount(a)) => format!("{} - {a}", self.param(n, col)),
            (Self::My(_), Lookback::Seconds(s)) => format!("? - INTERVAL {s} SECOND"),
            // Exact for 20-digit unsigned keys, which a double would round.
            (Self::My(_), Lookback::Amount(a)) => format!("CAST(? AS DECIMAL(65,10)) - {a}"),
        }
    }

    /// Runs `sql` with text parameters and streams its rows as text.
    pub fn stream<'c>(
        &'c mut self,
        sql: &'c str,
        params: &'c [String],
        width: usize,
    ) -> BoxStream<'c, std::result::Result<TextRow, sqlx::Error>> {
        fn texts<R: Row>(r: R, width: usize) -> std::result::Result<TextRow, sqlx::Error>
        where
            for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
            usize: sqlx::ColumnIndex<R>,
        {
            (0..width)
                .map(|i| r.try_get::<Option<String>, _>(i))
                .collect()
        }
        match self {
            Self::Pg(c) => {
                let mut q = sqlx::query(sql);
                for p in params {
                    q = q.bind(p);
                }
                q.fetch(c)
                    .map(move |r| r.and_then(|r| texts(r, width)))
                    .boxed()
            }
            Self::My(c) => {
                let mut q = sqlx::query(sql);
                for p in params {
                    q = q.bind(p);
                }
                q.fetch(c)
                    .map_ok(move |r| texts(r, width))
                    .map(|r| r.and_then(|x| x))
                    .boxed()
            }
        }
    }

    pub async fn close(self) {
        let _ = match self {
            Self::Pg(c) => c.close().await,
            Self::My(c) => c.close().await,
        };
    }
}
