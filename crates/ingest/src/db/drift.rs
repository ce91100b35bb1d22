//! Schema drift: how the source's columns compare with the lake table's, and what to do.
//!
//! - a new source column is added to the table (earlier rows read NULL);
//! - a column gone from the source stays in the table, NULL in new rows;
//! - a type change the lake can hold without loss is widened: the table is rewritten with the
//!   wider type (decimal precision or scale grown, an integer becoming a decimal with at least
//!   19 integer digits); a source type that got narrower loads into the table's wider type;
//! - any other type change stops the run with an error naming the column and both types.
//!
//! Every event is returned for the catalog, so that stewards can see what changed and when.

use std::sync::Arc;

use arrow::array::{RecordBatch, new_null_array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use super::types::{LoadType, SourceColumn};
use crate::convert::meta_fields;
use crate::{Error, Result};

/// One difference between the source and the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Drift {
    pub column: String,
    /// `added`, `removed`, `widened`, `narrowed` or `changed`.
    pub change: &'static str,
    pub old_type: Option<String>,
    pub new_type: Option<String>,
    pub action: String,
}

impl Drift {
    pub fn describe(&self) -> String {
        match (&self.old_type, &self.new_type) {
            (Some(o), Some(n)) => format!(
                "column {:?} {} from {o} to {n}: {}",
                self.column, self.change, self.action
            ),
            (None, Some(n)) => format!(
                "column {:?} ({n}) {}: {}",
                self.column, self.change, self.action
            ),
            (Some(o), None) => format!(
                "column {:?} ({o}) {}: {}",
                self.column, self.change, self.action
            ),
            (None, None) => format!("column {:?} {}: {}", self.column, self.change, self.action),
        }
    }
}

/// What a sync writes with, given the table as it is.
#[derive(Debug)]
pub(crate) struct Plan {
    /// The schema every batch is conformed to before it is written.
    pub schema: SchemaRef,
    pub drift: Vec<Drift>,
    /// The table must first be rewritten with `schema` (a column was widened).
    pub rewrite: bool,
    /// The table gains columns.
    pub adds_columns: bool,
    /// Type changes that stop the run (see [`Plan::check`]).
    pub blocking: Vec<String>,
}

/// Whether every value of `from` is exactly representable in `to`.
pub(crate) fn widens(from: &DataType, to: &DataType) -> bool {
    match (from, to) {
        (DataType::Decimal128(p1, s1), DataType::Decimal128(p2, s2)) => {
            s2 >= s1 && (*p2 as i16 - *s2 as i16) >= (*p1 as i16 - *s1 as i16)
        }
        (DataType::Int64, DataType::Decimal128(p, s)) => (*p as i16 - *s as i16) >= 19,
        _ => false,
    }
}

pub(crate) fn load_type_of(t: &DataType) -> Option<LoadType> {
    match t {
        DataType::Decimal128(precision, scale) => Some(LoadType::Decimal {
            precision: *precision,
            scale: *scale,
        }),
        DataType::Int64 => Some(LoadType::Int),
        _ => None,
    }
}

/// Compares the source columns with the table (if it exists) and decides the write schema.
/// Narrowed columns are switched to load as the table's type. With `replace`, the table is
/// about to be replaced (a full load): differences are recorded, and the source's shape wins.
pub(crate) fn plan(
    existing: Option<&SchemaRef>,
    columns: &mut [SourceColumn],
    replace: bool,
) -> Plan {
    let source_schema = super::raw_schema(columns);
    let Some(existing) = existing else {
        return Plan {
            schema: source_schema,
            drift: Vec::new(),
            rewrite: false,
            adds_columns: false,
            blocking: Vec::new(),
        };
    };
    let meta: Vec<String> = meta_fields().iter().map(|f| f.name().clone()).collect();
    let mut drift = Vec::new();
    let mut fields: Vec<Field> = existing
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let mut added = Vec::new();
    let mut rewrite = false;
    let mut stop = Vec::new();
    for c in columns.iter_mut() {
        let new = c.load.arrow();
        let Some(pos) = fields.iter().position(|f| f.name() == &c.name) else {
            drift.push(Drift {
                column: c.name.clone(),
                change: "added",
                old_type: None,
                new_type: Some(new.to_string()),
                action: if replace {
                    "in the reloaded table".into()
                } else {
                    "added to the table; earlier rows read NULL".into()
                },
            });
            added.push(Field::new(&c.name, new, true));
            continue;
        };
        let old = fields[pos].data_type().clone();
        if old == new {
            continue;
        }
        let (old_s, new_s) = (Some(old.to_string()), Some(new.to_string()));
        if replace {
            drift.push(Drift {
                column: c.name.clone(),
                change: "changed",
                old_type: old_s,
                new_type: new_s,
                action: "the reloaded table has the new type".into(),
            });
        } else if widens(&old, &new) {
            drift.push(Drift {
                column: c.name.clone(),
                change: "widened",
                old_type: old_s,
                new_type: new_s,
                action: "table rewritten with the wider type; no value changed".into(),
            });
            fields[pos] = Field::new(&c.name, new, true);
            rewrite = true;
        } else if let (true, Some(load)) = (widens(&new, &old), load_type_of(&old)) {
            drift.push(Drift {
                column: c.name.clone(),
                change: "narrowed",
                old_type: old_s,
                new_type: new_s,
                action: "the table keeps its wider type; new values load into it exactly".into(),
            });
            c.load = load;
        } else {
            drift.push(Drift {
                column: c.name.clone(),
                change: "changed",
                old_type: old_s,
                new_type: new_s,
                action: "run stopped: no lossless conversion; reload it once with `reservoir collect SOURCE --full`".into(),
            });
            stop.push(format!("column {:?} was {old} and is now {new}", c.name));
        }
    }
    for f in existing.fields() {
        if meta.contains(f.name()) || columns.iter().any(|c| &c.name == f.name()) {
            continue;
        }
        drift.push(Drift {
            column: f.name().clone(),
            change: "removed",
            old_type: Some(f.data_type().to_string()),
            new_type: None,
            action: if replace {
                "not in the reloaded table".into()
            } else {
                "kept in the table; NULL in new rows".into()
            },
        });
    }
    if replace {
        return Plan {
            schema: source_schema,
            drift,
            rewrite: false,
            adds_columns: false,
            blocking: stop,
        };
    }
    let adds_columns = !added.is_empty();
    fields.extend(added);
    Plan {
        schema: Arc::new(Schema::new(fields)),
        drift,
        rewrite,
        adds_columns,
        blocking: stop,
    }
}

impl Plan {
    /// The error that stops the run, if a type changed in a way that could lose values.
    pub fn check(&self, table: &str) -> Result<()> {
        if self.blocking.is_empty() {
            return Ok(());
        }
        Err(Error::SchemaDrift {
            table: table.to_string(),
            message: format!(
                "{}; a type change that could lose values is never applied silently: reload the \
                 table once with `reservoir collect SOURCE --full`",
                self.blocking.join("; ")
            ),
        })
    }
}

/// Puts a batch built from the source's columns into the write schema: columns by name, NULL
/// for table columns the source no longer has.
pub(crate) fn conform(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    if batch.schema().as_ref() == schema.as_ref() {
        return Ok(batch);
    }
    let n = batch.num_rows();
    let columns = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) => c.clone(),
            None => new_null_array(f.data_type(), n),
        })
        .collect();
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}
