//! Data-element standards (数据元, as in GB/T 19488) and the business glossary (业务术语).
//!
//! A data element names what a field must be: a type (字符型 text, 数值型 number, 日期型 date,
//! 日期时间型 timestamp, 布尔型 boolean), at most so many characters, a format (a regular
//! expression), and the code table its values come from. Fields are bound to elements; an
//! `element` quality rule checks the values against the element they are bound to.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::model::validate_ident;
use crate::{Catalog, Error, Result, format_ts};

/// The value types of a data element.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ElementType {
    Text,
    Number,
    Date,
    Timestamp,
    Boolean,
}

impl ElementType {
    pub const ALL: [ElementType; 5] = [
        Self::Text,
        Self::Number,
        Self::Date,
        Self::Timestamp,
        Self::Boolean,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Number => "number",
            Self::Date => "date",
            Self::Timestamp => "timestamp",
            Self::Boolean => "boolean",
        }
    }

    pub fn label_zh(self) -> &'static str {
        match self {
            Self::Text => "字符型",
            Self::Number => "数值型",
            Self::Date => "日期型",
            Self::Timestamp => "日期时间型",
            Self::Boolean => "布尔型",
        }
    }
}

impl std::str::FromStr for ElementType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim().to_lowercase();
        let found = Self::ALL.into_iter().find(|k| {
            k.as_str() == t
                || k.label_zh() == t
                || match k {
                    Self::Text => ["c", "string", "varchar", "字符串"].contains(&t.as_str()),
                    Self::Number => ["n", "numeric", "integer", "decimal", "数字型", "数值"]
                        .contains(&t.as_str()),
                    Self::Date => ["d", "日期"].contains(&t.as_str()),
                    Self::Timestamp => ["dt", "datetime", "时间型"].contains(&t.as_str()),
                    Self::Boolean => ["b", "bool", "逻辑型"].contains(&t.as_str()),
                }
        });
        found.ok_or_else(|| Error::Invalid {
            what: "data element type",
            message: format!(
                "{s:?}; expected one of {}",
                Self::ALL
                    .map(|k| format!("{} ({})", k.as_str(), k.label_zh()))
                    .join(", ")
            ),
        })
    }
}

/// A data element (数据元).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DataElement {
    /// Identifier (内部标识符), e.g. `DE00001` or `gmsfhm`.
    pub id: String,
    /// Chinese name (中文名称), e.g. `公民身份号码`.
    pub name: String,
    #[serde(default)]
    pub english_name: String,
    pub data_type: ElementType,
    /// At most this many characters.
    #[serde(default)]
    pub max_length: Option<i64>,
    /// A regular expression every value must match in full, e.g. `[0-9]{17}[0-9X]`.
    #[serde(default)]
    pub format: String,
    /// The code table its values come from.
    #[serde(default)]
    pub code_table: Option<String>,
    #[serde(default)]
    pub description: String,
    /// The standard it is defined in, e.g. `GB/T 19488.2-2008`.
    #[serde(default)]
    pub standard: String,
}

/// A representation format as Chinese data-element standards write it (GB/T 18391, GB/T 19488):
/// `n8` eight digits, `n..8` up to eight, `an..18` up to 18 letters or digits, `a3` three
/// letters, `c..50` up to 50 characters of any kind. Returns the regular expression (none for
/// `c`) and the maximum length.
pub fn representation(text: &str) -> Option<(Option<String>, i64)> {
    let t = text.trim();
    let (class, rest) = ["an", "a", "n", "c"]
        .into_iter()
        .find_map(|c| t.strip_prefix(c).map(|rest| (c, rest)))?;
    let (up_to, digits) = match rest.strip_prefix("..") {
        Some(d) => (true, d),
        None => (false, rest),
    };
    let n: i64 = digits.parse().ok().filter(|n| *n > 0)?;
    let chars = match class {
        "an" => "[A-Za-z0-9]",
        "a" => "[A-Za-z]",
        "n" => "[0-9]",
        _ => return Some((None, n)),
    };
    let count = if up_to {
        format!("{{1,{n}}}")
    } else {
        format!("{{{n}}}")
    };
    Some((Some(format!("{chars}{count}")), n))
}

/// A glossary term.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Term {
    pub term: String,
    pub definition: String,
    #[serde(default)]
    pub synonyms: Vec<String>,
    /// Data elements that carry it.
    #[serde(default)]
    pub elements: Vec<String>,
}

fn element_from_row(r: &sqlx::any::AnyRow) -> Result<DataElement> {
    Ok(DataElement {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        english_name: r.try_get(2)?,
        data_type: r
            .try_get::<String, _>(3)?
            .parse()
            .map_err(|e: Error| Error::Corrupt(e.to_string()))?,
        max_length: r.try_get(4)?,
        format: r.try_get(5)?,
        code_table: r.try_get(6)?,
        description: r.try_get(7)?,
        standard: r.try_get(8)?,
    })
}

/// The longest length a data element may declare.
pub const MAX_LENGTH: i64 = 65_535;

/// A date or time format as standards write it (`YYYYMMDD`, `YYYY-MM-DD hh:mm:ss`) in chrono's
/// terms; chrono formats (`%Y%m%d`) stay as they are.
pub fn date_format(written: &str) -> String {
    if written.contains('%') {
        return written.to_string();
    }
    written
        .replace("YYYY", "%Y")
        .replace("yyyy", "%Y")
        .replace("MM", "%m")
        .replace("DD", "%d")
        .replace("dd", "%d")
        .replace("hh", "%H")
        .replace("HH", "%H")
        .replace("mm", "%M")
        .replace("ss", "%S")
}

/// Refuses a format that cannot judge values: a regular expression that does not compile, a
/// representation that says too little (`an..x`, `n0`), a length that contradicts the
/// representation, a date format without year, month and day.
fn check_format(e: &DataElement) -> Result<()> {
    let bad = |message: String| Error::Invalid {
        what: "data element",
        message: format!("data element {:?}: {message}", e.id),
    };
    if e.format.is_empty() {
        return Ok(());
    }
    match e.data_type {
        ElementType::Date | ElementType::Timestamp => {
            use chrono::format::{Item, StrftimeItems};
            let f = date_format(&e.format);
            let probe = chrono::NaiveDate::from_ymd_opt(2024, 2, 29)
                .and_then(|d| d.and_hms_opt(13, 14, 15))
                .ok_or_else(|| bad("cannot build a probe date".into()))?;
            let ok = !StrftimeItems::new(&f).any(|i| matches!(i, Item::Error))
                && chrono::NaiveDateTime::parse_from_str(&probe.format(&f).to_string(), &f)
                    .map(|d| d.date() == probe.date())
                    .or_else(|_| {
                        chrono::NaiveDate::parse_from_str(&probe.format(&f).to_string(), &f)
                            .map(|d| d == probe.date())
                    })
                    .unwrap_or(false);
            if !ok {
                return Err(bad(format!(
                    "format {:?} does not describe a whole date; expected e.g. YYYYMMDD, YYYY-MM-DD or %Y-%m-%d",
                    e.format
                )));
            }
        }
        _ => {
            let looks_like_representation = e.format.len() <= 12
                && ["an", "a", "n", "c"]
                    .iter()
                    .any(|p| e.format.starts_with(p))
                && e.format
                    .chars()
                    .skip(1)
                    .all(|c| c.is_ascii_alphanumeric() || c == '.');
            if looks_like_representation && representation(&e.format).is_none() {
                return Err(bad(format!(
                    "format {:?} is not a representation (n8, an..18, c..50: a class and a length above 0) nor a regular expression",
                    e.format
                )));
            }
            regex::Regex::new(&format!("^(?:{})$", e.format)).map_err(|err| {
                bad(format!(
                    "format {:?} is not a regular expression: {}",
                    e.format,
                    err.to_string().lines().last().unwrap_or_default()
                ))
            })?;
        }
    }
    Ok(())
}

const ELEMENT_COLUMNS: &str =
    "id, name, english_name, data_type, max_length, format, code_table, description, standard";

impl Catalog {
    /// Creates or updates a data element.
    pub async fn put_element(&self, e: &DataElement) -> Result<()> {
        validate_ident("data element id", &e.id)?;
        if e.name.trim().is_empty() {
            return Err(Error::Invalid {
                what: "data element",
                message: format!("data element {:?} needs a name (中文名称)", e.id),
            });
        }
        if let Some(n) = e.max_length.filter(|n| !(1..=MAX_LENGTH).contains(n)) {
            return Err(Error::Invalid {
                what: "data element",
                message: format!(
                    "data element {:?}: length {n} must be from 1 to {MAX_LENGTH}",
                    e.id
                ),
            });
        }
        check_format(e)?;
        if let Some(t) = &e.code_table {
            self.code_values(t).await?;
        }
        sqlx::query(
            "INSERT INTO data_elements (id, name, english_name, data_type, max_length, format,
                 code_table, description, standard, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (id) DO UPDATE SET name = excluded.name,
                 english_name = excluded.english_name, data_type = excluded.data_type,
                 max_length = excluded.max_length, format = excluded.format,
                 code_table = excluded.code_table, description = excluded.description,
                 standard = excluded.standard, updated_at = excluded.updated_at",
        )
        .bind(&e.id)
        .bind(&e.name)
        .bind(&e.english_name)
        .bind(e.data_type.as_str())
        .bind(e.max_length)
        .bind(&e.format)
        .bind(&e.code_table)
        .bind(&e.description)
        .bind(&e.standard)
        .bind(format_ts(chrono::Utc::now()))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn elements(&self) -> Result<Vec<DataElement>> {
        let sql = format!("SELECT {ELEMENT_COLUMNS} FROM data_elements ORDER BY id");
        let rows = sqlx::query(&sql).fetch_all(self.pool()).await?;
        rows.iter().map(element_from_row).collect()
    }

    pub async fn element(&self, id: &str) -> Result<Option<DataElement>> {
        let sql = format!("SELECT {ELEMENT_COLUMNS} FROM data_elements WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(element_from_row).transpose()
    }

    /// Binds a dataset's field to a data element (or unbinds it, with `None`).
    pub async fn bind_element(
        &self,
        dataset_id: i64,
        field: &str,
        element_id: Option<&str>,
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
        match element_id {
            Some(id) => {
                if self.element(id).await?.is_none() {
                    return Err(Error::NotFound {
                        kind: "data element",
                        name: id.to_string(),
                    });
                }
                sqlx::query(
                    "INSERT INTO field_elements (dataset_id, field, element_id) VALUES ($1, $2, $3)
                     ON CONFLICT (dataset_id, field) DO UPDATE SET element_id = excluded.element_id",
                )
                .bind(dataset_id)
                .bind(field)
                .bind(id)
                .execute(self.pool())
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM field_elements WHERE dataset_id = $1 AND field = $2")
                    .bind(dataset_id)
                    .bind(field)
                    .execute(self.pool())
                    .await?;
            }
        }
        Ok(())
    }

    /// A dataset's fields bound to data elements: (field, element).
    pub async fn field_elements(&self, dataset_id: i64) -> Result<Vec<(String, DataElement)>> {
        let sql = format!(
            "SELECT f.field, {} FROM field_elements f JOIN data_elements e ON e.id = f.element_id
             WHERE f.dataset_id = $1 ORDER BY f.field",
            ELEMENT_COLUMNS
                .split(", ")
                .map(|c| format!("e.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let rows = sqlx::query(&sql)
            .bind(dataset_id)
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| {
                let field: String = r.try_get(0)?;
                // The element's columns follow the field.
                let e = DataElement {
                    id: r.try_get(1)?,
                    name: r.try_get(2)?,
                    english_name: r.try_get(3)?,
                    data_type: r
                        .try_get::<String, _>(4)?
                        .parse()
                        .map_err(|e: Error| Error::Corrupt(e.to_string()))?,
                    max_length: r.try_get(5)?,
                    format: r.try_get(6)?,
                    code_table: r.try_get(7)?,
                    description: r.try_get(8)?,
                    standard: r.try_get(9)?,
                };
                Ok((field, e))
            })
            .collect()
    }

    /// Creates or updates a glossary term. A synonym may not be another term, nor another
    /// term's synonym.
    pub async fn put_term(&self, t: &Term) -> Result<()> {
        if t.term.trim().is_empty() || t.definition.trim().is_empty() {
            return Err(Error::Invalid {
                what: "glossary term",
                message: format!("{:?} needs a term and a definition", t.term),
            });
        }
        for other in self.glossary(None).await? {
            if other.term == t.term.trim() {
                continue;
            }
            if let Some(s) = t
                .synonyms
                .iter()
                .find(|s| **s == other.term || other.synonyms.contains(s))
            {
                return Err(Error::Invalid {
                    what: "glossary term",
                    message: format!(
                        "{s:?} already names the term {:?}; a name means one term",
                        other.term
                    ),
                });
            }
        }
        for e in &t.elements {
            if self.element(e).await?.is_none() {
                return Err(Error::NotFound {
                    kind: "data element",
                    name: e.clone(),
                });
            }
        }
        sqlx::query(
            "INSERT INTO glossary (term, definition, synonyms, elements, updated_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (term) DO UPDATE SET definition = excluded.definition,
                 synonyms = excluded.synonyms, elements = excluded.elements,
                 updated_at = excluded.updated_at",
        )
        .bind(t.term.trim())
        .bind(&t.definition)
        .bind(serde_json::to_string(&t.synonyms)?)
        .bind(serde_json::to_string(&t.elements)?)
        .bind(format_ts(chrono::Utc::now()))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The glossary; with `find`, the terms whose name or a synonym contains it.
    pub async fn glossary(&self, find: Option<&str>) -> Result<Vec<Term>> {
        let rows =
            sqlx::query("SELECT term, definition, synonyms, elements FROM glossary ORDER BY term")
                .fetch_all(self.pool())
                .await?;
        let terms = rows
            .iter()
            .map(|r| {
                Ok(Term {
                    term: r.try_get(0)?,
                    definition: r.try_get(1)?,
                    synonyms: serde_json::from_str(&r.try_get::<String, _>(2)?)?,
                    elements: serde_json::from_str(&r.try_get::<String, _>(3)?)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(match find.map(str::trim).filter(|f| !f.is_empty()) {
            None => terms,
            Some(f) => terms
                .into_iter()
                .filter(|t| t.term.contains(f) || t.synonyms.iter().any(|s| s.contains(f)))
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn representations() {
        assert_eq!(representation("n8"), Some((Some("[0-9]{8}".into()), 8)));
        assert_eq!(
            representation("an..18"),
            Some((Some("[A-Za-z0-9]{1,18}".into()), 18))
        );
        assert_eq!(representation("c..50"), Some((None, 50)));
        assert_eq!(representation("x8"), None);
        assert_eq!(representation("n0"), None);
        assert_eq!(representation("[0-9]{17}[0-9X]"), None);
    }

    #[test]
    fn types_by_their_chinese_names() {
        assert_eq!("字符型".parse::<ElementType>().unwrap(), ElementType::Text);
        assert_eq!(
            "数值型".parse::<ElementType>().unwrap(),
            ElementType::Number
        );
        assert_eq!("日期型".parse::<ElementType>().unwrap(), ElementType::Date);
        assert!(
            "图片"
                .parse::<ElementType>()
                .unwrap_err()
                .to_string()
                .contains("字符型")
        );
    }
}
