//! Code tables (代码表): the values a coded field may take. Built in: GB/T 2260 administrative
//! divisions with the years each code was in use (retired codes included; loaded by the binary
//! from the quality crate's bundled timeline) and GB/T 2261.1 sex codes. Users add their own.
//! A field bound to a table is checked against it by a `code_table` rule.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::model::validate_ident;
use crate::{Catalog, Error, Result, format_ts};

/// A code table's description.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CodeTable {
    /// Identifier, e.g. `gb2260`, `gb2261_1`.
    pub id: String,
    pub name: String,
    /// The standard it comes from, e.g. `GB/T 2261.1-2003`.
    #[serde(default)]
    pub standard: String,
    #[serde(default)]
    pub description: String,
    /// Loaded by Reservoir (and reloaded by it); not to be edited.
    #[serde(default)]
    pub builtin: bool,
}

/// One value; a code may have several periods.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CodeValue {
    pub code: String,
    pub label: String,
    /// First year the code was in use, if known.
    #[serde(default)]
    pub valid_from: Option<i32>,
    /// Last year the code was in use; `None` while it is current.
    #[serde(default)]
    pub valid_to: Option<i32>,
}

/// A code table with its size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CodeTableSummary {
    #[serde(flatten)]
    pub table: CodeTable,
    pub values: i64,
    pub updated_at: String,
}

/// GB/T 2261.1-2003, codes of human sex.
pub fn gb2261_1() -> (CodeTable, Vec<CodeValue>) {
    let v = |code: &str, label: &str| CodeValue {
        code: code.into(),
        label: label.into(),
        valid_from: None,
        valid_to: None,
    };
    (
        CodeTable {
            id: "gb2261_1".into(),
            name: "人的性别代码".into(),
            standard: "GB/T 2261.1-2003".into(),
            description: "0 未知的性别, 1 男性, 2 女性, 9 未说明的性别".into(),
            builtin: true,
        },
        vec![
            v("0", "未知的性别"),
            v("1", "男性"),
            v("2", "女性"),
            v("9", "未说明的性别"),
        ],
    )
}

impl Catalog {
    /// Creates or replaces a code table and all its values.
    pub async fn put_code_table(&self, table: &CodeTable, values: &[CodeValue]) -> Result<()> {
        validate_ident("code table id", &table.id)?;
        if table.name.trim().is_empty() {
            return Err(Error::Invalid {
                what: "code table",
                message: format!("code table {:?} needs a name", table.id),
            });
        }
        let bad = |message: String| Error::Invalid {
            what: "code table",
            message: format!("code table {:?}: {message}", table.id),
        };
        if values.is_empty() {
            return Err(bad("it has no values".into()));
        }
        let mut seen: std::collections::HashMap<&str, Vec<&CodeValue>> =
            std::collections::HashMap::new();
        // The built-in tables are the published data as it is (GB/T 2260's timeline has codes
        // retired the year before they were created); a user's table is held to these rules.
        for v in values.iter().filter(|_| !table.builtin) {
            if v.code.trim().is_empty() {
                return Err(bad(format!(
                    "the value labelled {:?} has an empty code",
                    v.label
                )));
            }
            if v.label.trim().is_empty() {
                return Err(bad(format!("code {:?} has no label", v.code)));
            }
            for y in [v.valid_from, v.valid_to].into_iter().flatten() {
                if !(1900..=2100).contains(&y) {
                    return Err(bad(format!(
                        "code {:?}: the year {y} is not one from 1900 to 2100",
                        v.code
                    )));
                }
            }
            if let (Some(a), Some(b)) = (v.valid_from, v.valid_to)
                && a > b
            {
                return Err(bad(format!(
                    "code {:?} is valid from {a} to {b}: the years are the wrong way round",
                    v.code
                )));
            }
            // A code may be listed again only for another period (codes are reused).
            let periods = seen.entry(v.code.trim()).or_default();
            let overlaps = |o: &CodeValue| {
                let (a0, a1) = (
                    v.valid_from.unwrap_or(i32::MIN),
                    v.valid_to.unwrap_or(i32::MAX),
                );
                let (b0, b1) = (
                    o.valid_from.unwrap_or(i32::MIN),
                    o.valid_to.unwrap_or(i32::MAX),
                );
                a0 <= b1 && b0 <= a1
            };
            if let Some(o) = periods.iter().find(|o| overlaps(o)) {
                return Err(bad(format!(
                    "code {:?} is given twice for the same years ({:?} and {:?})",
                    v.code, o.label, v.label
                )));
            }
            periods.push(v);
        }
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO code_tables (id, name, standard, description, builtin, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, standard = excluded.standard,
                 description = excluded.description, builtin = excluded.builtin,
                 updated_at = excluded.updated_at",
        )
        .bind(&table.id)
        .bind(&table.name)
        .bind(&table.standard)
        .bind(&table.description)
        .bind(i64::from(table.builtin))
        .bind(format_ts(chrono::Utc::now()))
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM code_values WHERE table_id = $1")
            .bind(&table.id)
            .execute(&mut *tx)
            .await?;
        for (i, v) in values.iter().enumerate() {
            sqlx::query(
                "INSERT INTO code_values (table_id, position, code, label, valid_from, valid_to)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&table.id)
            .bind(i as i64)
            .bind(v.code.trim())
            .bind(&v.label)
            .bind(v.valid_from.map(i64::from))
            .bind(v.valid_to.map(i64::from))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every code table, with its number of values.
    pub async fn code_tables(&self) -> Result<Vec<CodeTableSummary>> {
        let rows = sqlx::query(
            "SELECT t.id, t.name, t.standard, t.description, t.builtin, t.updated_at,
                    (SELECT COUNT(*) FROM code_values v WHERE v.table_id = t.id)
             FROM code_tables t ORDER BY t.id",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(CodeTableSummary {
                    table: CodeTable {
                        id: r.try_get(0)?,
                        name: r.try_get(1)?,
                        standard: r.try_get(2)?,
                        description: r.try_get(3)?,
                        builtin: r.try_get::<i64, _>(4)? != 0,
                    },
                    updated_at: r.try_get(5)?,
                    values: r.try_get(6)?,
                })
            })
            .collect()
    }

    /// The values of a code table, in their order; `NotFound` if there is no such table.
    pub async fn code_values(&self, table_id: &str) -> Result<Vec<CodeValue>> {
        let exists = sqlx::query("SELECT 1 FROM code_tables WHERE id = $1")
            .bind(table_id)
            .fetch_optional(self.pool())
            .await?;
        if exists.is_none() {
            return Err(Error::NotFound {
                kind: "code table",
                name: table_id.to_string(),
            });
        }
        let rows = sqlx::query(
            "SELECT code, label, valid_from, valid_to FROM code_values
             WHERE table_id = $1 ORDER BY position",
        )
        .bind(table_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(CodeValue {
                    code: r.try_get(0)?,
                    label: r.try_get(1)?,
                    valid_from: r.try_get::<Option<i64>, _>(2)?.map(|y| y as i32),
                    valid_to: r.try_get::<Option<i64>, _>(3)?.map(|y| y as i32),
                })
            })
            .collect()
    }

    /// Binds a dataset's field to a code table (or unbinds it, with `None`).
    pub async fn bind_code_table(
        &self,
        dataset_id: i64,
        field: &str,
        table_id: Option<&str>,
    ) -> Result<()> {
        if !self
            .fields(dataset_id)
            .await?
            .iter()
            .any(|f| f.name == field)
        {
            return Err(Error::NotFound {
                kind: "field",
                name: field.to_string(),
            });
        }
        match table_id {
            Some(t) => {
                self.code_values(t).await?;
                sqlx::query(
                    "INSERT INTO field_codes (dataset_id, field, table_id) VALUES ($1, $2, $3)
                     ON CONFLICT (dataset_id, field) DO UPDATE SET table_id = excluded.table_id",
                )
                .bind(dataset_id)
                .bind(field)
                .bind(t)
                .execute(self.pool())
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM field_codes WHERE dataset_id = $1 AND field = $2")
                    .bind(dataset_id)
                    .bind(field)
                    .execute(self.pool())
                    .await?;
            }
        }
        Ok(())
    }

    /// A dataset's fields bound to code tables: (field, table id).
    pub async fn field_code_tables(&self, dataset_id: i64) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT field, table_id FROM field_codes WHERE dataset_id = $1 ORDER BY field",
        )
        .bind(dataset_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }
}
