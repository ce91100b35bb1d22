//! Turning chunks of source rows into Arrow record batches, row by row accountable.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int64Array, Int64Builder, RecordBatch,
    StringArray, StringBuilder, TimestampMicrosecondArray, TimestampMicrosecondBuilder,
};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use reservoir_lake::meta;
use serde::Serialize;

use crate::Result;
use crate::reader::{Chunk, RowStatus};
use crate::value::{
    Cell, ColumnType, parse_bool_lenient, parse_bool_strict, parse_date_any, parse_date_with,
    parse_datetime_any, parse_datetime_with, parse_float, parse_int,
};

/// Where a column's type came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TypeOrigin {
    /// Inferred from the first rows of the input.
    Inferred,
    /// Declared by the user or the source definition.
    Declared,
    /// Fixed by the existing table being appended to.
    Table,
    /// The source database's declared column type.
    Source,
}

/// One output column and how to fill it.
#[derive(Debug, Clone, Serialize)]
pub struct ColumnPlan {
    pub name: String,
    pub ty: ColumnType,
    pub origin: TypeOrigin,
    /// Text format for dates and times, when inferred.
    pub format: Option<&'static str>,
}

/// The schema of a raw table: data columns followed by the lake's metadata columns.
pub fn raw_schema(plan: &[ColumnPlan]) -> SchemaRef {
    let mut fields: Vec<Field> = plan
        .iter()
        .map(|c| Field::new(&c.name, c.ty.arrow(), true))
        .collect();
    fields.extend(meta_fields());
    Arc::new(Schema::new(fields))
}

/// The lake's metadata columns of a raw table, in table order.
pub(crate) fn meta_fields() -> Vec<Field> {
    vec![
        Field::new(meta::BATCH, DataType::Utf8, false),
        Field::new(
            meta::INGESTED_AT,
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new(meta::SOURCE_FILE, DataType::Utf8, false),
        Field::new(meta::SOURCE_ROW, DataType::Int64, false),
        Field::new(meta::FLAGS, DataType::Utf8, true),
    ]
}

/// The quarantine table's schema.
pub fn quarantine_schema() -> SchemaRef {
    reservoir_lake::quarantine_schema()
}

/// A row that could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Rejected {
    pub source_file: String,
    pub line: i64,
    pub raw: String,
    pub reason: String,
}

/// The result of converting one chunk.
#[derive(Debug)]
pub struct Converted {
    /// The loadable rows.
    pub batch: RecordBatch,
    pub padded: u64,
    pub flagged: u64,
    pub rejected: Vec<Rejected>,
    /// Non-null values per data column among the loaded rows.
    pub non_null: Vec<u64>,
}

/// Converts chunks for one run.
pub struct Converter {
    plan: Vec<ColumnPlan>,
    schema: SchemaRef,
    batch_id: Arc<str>,
    ingested_at_micros: i64,
    infer_rows: usize,
}

impl Converter {
    pub fn new(
        plan: Vec<ColumnPlan>,
        batch_id: &str,
        ingested_at: chrono::DateTime<chrono::Utc>,
        infer_rows: usize,
    ) -> Self {
        let schema = raw_schema(&plan);
        Self {
            plan,
            schema,
            batch_id: batch_id.into(),
            ingested_at_micros: ingested_at.timestamp_micros(),
            infer_rows,
        }
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    pub fn plan(&self) -> &[ColumnPlan] {
        &self.plan
    }

    /// Converts a chunk whose source columns map to plan columns through `mapping`
    /// (`mapping[i]` = source column of plan column `i`, `None` = not in this file).
    pub fn convert(
        &self,
        chunk: &dyn Chunk,
        mapping: &[Option<usize>],
        source_file: &str,
    ) -> Result<Converted> {
        let n = chunk.len();
        let mut reasons: Vec<Option<String>> = (0..n)
            .map(|r| match &chunk.meta(r).status {
                RowStatus::Reject(reason) => Some(reason.clone()),
                _ => None,
            })
            .collect();
        let mut flags: Vec<Vec<String>> = vec![Vec::new(); n];
        let mut padded = 0u64;
        for (r, f) in flags.iter_mut().enumerate() {
            if let RowStatus::Padded { fields, expected } = chunk.meta(r).status {
                f.push(format!(
                    "short row: {fields} of {expected} fields, the rest loaded as NULL"
                ));
                if reasons[r].is_none() {
                    padded += 1;
                }
            }
        }

        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for (plan, source) in self.plan.iter().zip(mapping) {
            let ctx = ColumnCtx {
                plan,
                infer_rows: self.infer_rows,
            };
            let array = match source {
                None => arrow::array::new_null_array(&plan.ty.arrow(), n),
                Some(col) => ctx.build(chunk, *col, &mut reasons, &mut flags),
            };
            columns.push(array);
        }

        // Metadata columns.
        columns.push(Arc::new(StringArray::from_iter_values(
            std::iter::repeat_n(&*self.batch_id, n),
        )));
        columns.push(Arc::new(
            TimestampMicrosecondArray::from(vec![self.ingested_at_micros; n]).with_timezone("UTC"),
        ));
        columns.push(Arc::new(StringArray::from_iter_values(
            std::iter::repeat_n(source_file, n),
        )));
        columns.push(Arc::new(Int64Array::from_iter_values(
            (0..n).map(|r| chunk.meta(r).line),
        )));
        let flag_text: StringArray = flags
            .iter()
            .map(|f| (!f.is_empty()).then(|| f.join("; ")))
            .collect();
        columns.push(Arc::new(flag_text));

        let batch = RecordBatch::try_new(self.schema.clone(), columns)?;
        let flagged = flags
            .iter()
            .zip(&reasons)
            .filter(|(f, r)| !f.is_empty() && r.is_none())
            .count() as u64;
        let rejected: Vec<Rejected> = reasons
            .iter()
            .enumerate()
            .filter_map(|(r, reason)| {
                reason.as_ref().map(|reason| Rejected {
                    source_file: source_file.to_string(),
                    line: chunk.meta(r).line,
                    raw: chunk.raw(r),
                    reason: reason.clone(),
                })
            })
            .collect();
        let batch = if rejected.is_empty() {
            batch
        } else {
            let keep: arrow::array::BooleanArray =
                reasons.iter().map(|r| Some(r.is_none())).collect();
            filter_record_batch(&batch, &keep)?
        };
        let non_null = (0..self.plan.len())
            .map(|i| (batch.num_rows() - batch.column(i).null_count()) as u64)
            .collect();
        Ok(Converted {
            batch,
            padded,
            flagged,
            rejected,
            non_null,
        })
    }
}

struct ColumnCtx<'a> {
    plan: &'a ColumnPlan,
    infer_rows: usize,
}

impl ColumnCtx<'_> {
    fn reject(&self, value: &str) -> String {
        let why = match self.plan.origin {
            TypeOrigin::Inferred => format!(
                "; the type was inferred from the first {} rows — declare the column's type to load such values",
                self.infer_rows
            ),
            TypeOrigin::Declared => "; the type was declared".to_string(),
            TypeOrigin::Table => "; the existing table has this type".to_string(),
            TypeOrigin::Source => "; the source declares this type".to_string(),
        };
        format!(
            "column {:?}: value {:?} is not {} ({}{why})",
            self.plan.name,
            truncate(value, 80),
            self.plan.ty,
            self.plan.ty.expectation(),
        )
    }

    fn build(
        &self,
        chunk: &dyn Chunk,
        col: usize,
        reasons: &mut [Option<String>],
        flags: &mut [Vec<String>],
    ) -> ArrayRef {
        let n = chunk.len();
        let strict = self.plan.origin == TypeOrigin::Inferred;
        macro_rules! fill {
            ($builder:expr, $convert:expr) => {{
                let mut b = $builder;
                for r in 0..n {
                    if reasons[r].is_some() {
                        b.append_null();
                        continue;
                    }
                    let cell = chunk.cell(r, col);
                    match cell {
                        Cell::Null => b.append_null(),
                        Cell::Text("") => b.append_null(),
                        Cell::Void(note) => {
                            flags[r].push(format!("column {:?}: {note}", self.plan.name));
                            b.append_null();
                        }
                        other => match $convert(other) {
                            Some(v) => b.append_value(v),
                            None => {
                                reasons[r] =
                                    Some(self.reject(&other.to_text().unwrap_or_default()));
                                b.append_null();
                            }
                        },
                    }
                }
                Arc::new(b.finish()) as ArrayRef
            }};
        }
        match self.plan.ty {
            ColumnType::Utf8 => {
                let mut b = StringBuilder::with_capacity(n, n * 8);
                for r in 0..n {
                    if reasons[r].is_some() {
                        b.append_null();
                        continue;
                    }
                    match chunk.cell(r, col) {
                        Cell::Text(s) if !s.is_empty() => b.append_value(s),
                        Cell::Void(note) => {
                            flags[r].push(format!("column {:?}: {note}", self.plan.name));
                            b.append_null();
                        }
                        other => b.append_option(other.to_text()),
                    }
                }
                Arc::new(b.finish())
            }
            ColumnType::Int64 => fill!(Int64Builder::with_capacity(n), |c: Cell<'_>| match c {
                Cell::Text(s) => {
                    if strict {
                        parse_int(s)
                    } else {
                        s.trim().parse::<i64>().ok()
                    }
                }
                Cell::Int(i) => Some(i),
                Cell::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(f as i64),
                Cell::Bool(b) => (!strict).then_some(i64::from(b)),
                _ => None,
            }),
            ColumnType::Float64 => fill!(Float64Builder::with_capacity(n), |c: Cell<'_>| match c {
                Cell::Text(s) => {
                    if strict {
                        parse_float(s)
                    } else {
                        s.trim().parse::<f64>().ok()
                    }
                }
                Cell::Int(i) => Some(i as f64),
                Cell::Float(f) => Some(f),
                _ => None,
            }),
            ColumnType::Boolean => fill!(BooleanBuilder::with_capacity(n), |c: Cell<'_>| match c {
                Cell::Text(s) => {
                    if strict {
                        parse_bool_strict(s)
                    } else {
                        parse_bool_lenient(s)
                    }
                }
                Cell::Bool(b) => Some(b),
                Cell::Int(0) => Some(false),
                Cell::Int(1) => Some(true),
                _ => None,
            }),
            ColumnType::Date => fill!(Date32Builder::with_capacity(n), |c: Cell<'_>| {
                let d: Option<NaiveDate> = match c {
                    Cell::Text(s) => match self.plan.format {
                        Some(f) => parse_date_with(s, f),
                        None => parse_date_any(s).or_else(|| parse_date_with(s, "%Y%m%d")),
                    },
                    Cell::Date(d) => Some(d),
                    Cell::DateTime(t) if t.time() == NaiveTime::MIN => Some(t.date()),
                    _ => None,
                };
                d.map(date32)
            }),
            ColumnType::Timestamp => fill!(
                TimestampMicrosecondBuilder::with_capacity(n),
                |c: Cell<'_>| {
                    let t: Option<NaiveDateTime> = match c {
                        Cell::Text(s) => match self.plan.format {
                            Some(f) => parse_datetime_with(s, f),
                            None => parse_datetime_any(s),
                        },
                        Cell::Date(d) => Some(d.and_time(NaiveTime::MIN)),
                        Cell::DateTime(t) => Some(t),
                        _ => None,
                    };
                    t.map(|t| t.and_utc().timestamp_micros())
                }
            ),
        }
    }
}

fn date32(d: NaiveDate) -> i32 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or(NaiveDate::MIN);
    (d - epoch).num_days() as i32
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

/// Builds a quarantine batch from rejected rows.
pub fn quarantine_batch(
    rows: &[Rejected],
    batch_id: &str,
    ingested_at: chrono::DateTime<chrono::Utc>,
) -> Result<RecordBatch> {
    let n = rows.len();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
            batch_id, n,
        ))),
        Arc::new(
            TimestampMicrosecondArray::from(vec![ingested_at.timestamp_micros(); n])
                .with_timezone("UTC"),
        ),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.source_file.as_str()),
        )),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.line))),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.raw.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.reason.as_str()),
        )),
    ];
    Ok(RecordBatch::try_new(quarantine_schema(), columns)?)
}
