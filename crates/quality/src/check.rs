//! Running a dataset's rules over its table: every failing row is kept, with its key, the
//! rule and the reason, in `quality.<unit>.<dataset>` — no cap — and the counts per rule and
//! the scores per dimension come back for the catalog.
//!
//! ```text
//!  raw table ──► stream rows ──► row rules (validators, regex, range …) ──┐
//!      └──────► unique: GROUP BY … HAVING count(*) > 1, later rows fail ──┼─► quality table
//!                                                                         └─► counts, scores
//! ```
//!
//! One pass over the table for all row rules, one query per `unique`, `referential` and
//! `consistent` rule (the last two join another lake table); memory holds a batch of rows and a
//! batch of failures at a time. `freshness` and `volume` judge the table as a whole, from the
//! catalog's history ([`History`]): they count as one check each and have no failing rows.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, NaiveDate, Utc};
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use reservoir_lake::{BatchSink, Lake, Layer, TableRef, WriteMode, meta};
use serde::Serialize;

use crate::rules::{Check, Context, Dimension, Finding, Rule, RuleSet};
use crate::validate::Divisions;
use crate::{Error, Result};

/// Failing rows shown per rule in the summary; all of them are in the quality table.
pub const EXAMPLES: usize = 5;
const FLUSH: usize = 8192;

/// One failing row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailedRow {
    /// The row's key columns (or file and line) as `column=value` pairs.
    pub key: String,
    pub column: String,
    pub value: Option<String>,
    pub reason: String,
}

/// What one rule found.
#[derive(Debug, Clone, Serialize)]
pub struct RuleResult {
    pub rule: String,
    pub check: String,
    pub dimension: Dimension,
    pub columns: Vec<String>,
    /// Rows the rule looked at (all rows of the table).
    pub checked: u64,
    pub failed: u64,
    /// Valid values with observations (lowercase x, full-width digits …).
    pub noted: u64,
    pub examples: Vec<FailedRow>,
    /// Failing rows leave the table for its quarantine.
    pub blocking: bool,
}

/// The outcome of checking one table.
#[derive(Debug, Clone, Serialize)]
pub struct CheckOutcome {
    /// The run's id, in the `check_run` column of its rows in the quality table.
    pub check_run: String,
    pub table: String,
    pub table_version: i64,
    pub rows: u64,
    pub results: Vec<RuleResult>,
    /// Per dimension with rules: the share of checks passed, 0–100.
    pub scores: BTreeMap<Dimension, f64>,
    /// The quality table and its version, when there were failing rows.
    pub failures_table: Option<String>,
    pub failures_version: Option<i64>,
    /// Rows failing a blocking rule, moved to the quarantine table.
    pub blocked: u64,
    pub quarantine_table: Option<String>,
    pub quarantine_version: Option<i64>,
    /// The table's version after the blocked rows left it.
    pub table_version_after: Option<i64>,
}

impl CheckOutcome {
    /// The score of a dimension: 100 × (1 − failed / checked) over its rules.
    fn score(results: &[RuleResult], dimension: Dimension) -> Option<f64> {
        let (checked, failed) = results
            .iter()
            .filter(|r| r.dimension == dimension)
            .fold((0u64, 0u64), |(c, f), r| (c + r.checked, f + r.failed));
        (checked > 0).then(|| 100.0 * (1.0 - failed as f64 / checked as f64))
    }
}

/// The quality table's schema.
pub fn failures_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("check_run", DataType::Utf8, false),
        Field::new(
            "checked_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("rule", DataType::Utf8, false),
        // `fail`, or `note` for a valid value with observations (lowercase x …).
        Field::new("severity", DataType::Utf8, false),
        Field::new("dimension", DataType::Utf8, false),
        Field::new("key", DataType::Utf8, false),
        Field::new("column", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, true),
        Field::new("reason", DataType::Utf8, false),
        Field::new(meta::BATCH, DataType::Utf8, true),
        Field::new(meta::SOURCE_FILE, DataType::Utf8, true),
        Field::new(meta::SOURCE_ROW, DataType::Int64, true),
    ]))
}

/// Where a row came from: its load batch, file and line.
#[derive(Debug, Clone, Default)]
struct Origin {
    batch: Option<String>,
    file: Option<String>,
    line: Option<i64>,
}

/// A failing (or noted) row waiting to be written: the rule's index, the row, its origin.
struct Pending {
    rule: usize,
    note: bool,
    row: FailedRow,
    origin: Origin,
}

/// Failing rows waiting to be written.
struct Failures {
    check_run: String,
    at: DateTime<Utc>,
    rows: Vec<Pending>,
    sink: Option<BatchSink>,
    lake: Lake,
    table: TableRef,
    /// Rows failing a blocking rule, by (batch, file, line), with the reasons.
    blocked: BTreeMap<(String, String, i64), Vec<String>>,
}

impl Failures {
    async fn push(
        &mut self,
        rules: &[Rule],
        rule: usize,
        note: bool,
        row: FailedRow,
        origin: Origin,
    ) -> Result<()> {
        if rules[rule].blocking
            && !note
            && let (Some(b), Some(f), Some(l)) = (&origin.batch, &origin.file, origin.line)
        {
            self.blocked
                .entry((b.clone(), f.clone(), l))
                .or_default()
                .push(format!("{}: {}", rules[rule].name, row.reason));
        }
        self.rows.push(Pending {
            rule,
            note,
            row,
            origin,
        });
        if self.rows.len() >= FLUSH {
            self.flush(rules).await?;
        }
        Ok(())
    }

    async fn flush(&mut self, rules: &[Rule]) -> Result<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        if self.sink.is_none() {
            self.sink = Some(
                self.lake
                    .write(self.table.clone(), failures_schema())
                    .with_mode(WriteMode::Append)
                    .with_commit_metadata("reservoir.check_run", self.check_run.clone().into())
                    .start()
                    .await?,
            );
        }
        let rows = std::mem::take(&mut self.rows);
        let n = rows.len();
        let text = |f: &dyn Fn(&Pending) -> Option<String>| {
            Arc::new(rows.iter().map(f).collect::<StringArray>()) as ArrayRef
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
                &self.check_run,
                n,
            ))),
            Arc::new(
                arrow::array::TimestampMicrosecondArray::from(vec![self.at.timestamp_micros(); n])
                    .with_timezone("UTC"),
            ),
            text(&|p| Some(rules[p.rule].name.clone())),
            text(&|p| Some(if p.note { "note" } else { "fail" }.to_string())),
            text(&|p| Some(rules[p.rule].dimension.to_string())),
            text(&|p| Some(p.row.key.clone())),
            text(&|p| Some(p.row.column.clone())),
            text(&|p| p.row.value.clone()),
            text(&|p| Some(p.row.reason.clone())),
            text(&|p| p.origin.batch.clone()),
            text(&|p| p.origin.file.clone()),
            Arc::new(rows.iter().map(|p| p.origin.line).collect::<Int64Array>()),
        ];
        let batch = RecordBatch::try_new(failures_schema(), columns)?;
        if let Some(sink) = self.sink.as_mut() {
            sink.send(batch).await?;
        }
        Ok(())
    }
}

/// What the table-level checks (`freshness`, `volume`) judge by, from the catalog.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// The dataset's declared update frequency, and how long it may go without a collection.
    pub frequency: String,
    pub late_after: Option<chrono::Duration>,
    pub last_success: Option<DateTime<Utc>>,
    /// Rows of the earlier check runs, newest first.
    pub earlier_rows: Vec<i64>,
    pub now: DateTime<Utc>,
}

/// Checks `table` (a raw table) against `rules`; failing rows go to `quality.<unit>.<name>`
/// tagged with `check_run`.
pub async fn check_table(
    lake: &Lake,
    table: &TableRef,
    rules: &RuleSet,
    check_run: &str,
    today: NaiveDate,
    history: &History,
) -> Result<CheckOutcome> {
    let delta = lake.open_existing(table).await?;
    let version = delta.version().unwrap_or(0) as i64;
    let schema = reservoir_lake::arrow_schema_of(&delta)?;
    let available: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .filter(|n| !meta::ALL.contains(&n.as_str()))
        .collect();
    if let Some(rule) = rules.rules.iter().find(|r| {
        matches!(
            r.check,
            Check::CodeTable { codes: None, .. } | Check::Element { spec: None, .. }
        )
    }) {
        return Err(Error::Reference {
            rule: rule.name.clone(),
            message: "its code table was not loaded from the catalog (check the dataset with check_dataset)".into(),
        });
    }
    for rule in &rules.rules {
        let on = match &rule.check {
            Check::Consistent { on, .. } => on.as_slice(),
            _ => &[],
        };
        for c in rule.columns.iter().chain(on) {
            if schema.field_with_name(c).is_err() {
                return Err(Error::UnknownColumn {
                    rule: rule.name.clone(),
                    column: c.clone(),
                    table: table.to_string(),
                    available,
                });
            }
        }
    }
    for c in &rules.key {
        if schema.field_with_name(c).is_err() {
            return Err(Error::UnknownColumn {
                rule: "key".into(),
                column: c.clone(),
                table: table.to_string(),
                available,
            });
        }
    }
    for rule in &rules.rules {
        for c in &rule.columns {
            if let Ok(f) = schema.field_with_name(c) {
                check_type(rule, c, f.data_type())?;
            }
        }
    }
    let has_lines = schema.field_with_name(meta::SOURCE_FILE).is_ok()
        && schema.field_with_name(meta::SOURCE_ROW).is_ok();
    let has_batch = schema.field_with_name(meta::BATCH).is_ok();
    if let Some(rule) = rules.rules.iter().find(|r| r.blocking)
        && !(has_lines && has_batch)
    {
        return Err(Error::Reference {
            rule: rule.name.clone(),
            message: format!(
                "blocking moves failing rows to quarantine by their file and line, and {table} has none; remove `blocking`"
            ),
        });
    }

    let ctx = SessionContext::new();
    ctx.register_table("t", reservoir_lake::table_provider(&delta).await?)?;
    // The other tables `referential` and `consistent` rules join, as r0, r1 … by rule.
    for (i, rule) in rules.rules.iter().enumerate() {
        let (reference, column, on) = match &rule.check {
            Check::Referential { reference, column } => (reference, column, &[][..]),
            Check::Consistent {
                reference,
                column,
                on,
            } => (reference, column, on.as_slice()),
            _ => continue,
        };
        let other = reference_table(reference)?;
        let Some(other_delta) = lake.open(&other).await? else {
            return Err(Error::Reference {
                rule: rule.name.clone(),
                message: format!("the dataset {other} does not exist (or was never collected)"),
            });
        };
        let other_schema = reservoir_lake::arrow_schema_of(&other_delta)?;
        let wanted = column.as_deref().unwrap_or(&rule.columns[0]);
        for c in std::iter::once(wanted).chain(on.iter().map(String::as_str)) {
            if other_schema.field_with_name(c).is_err() {
                return Err(Error::UnknownColumn {
                    rule: rule.name.clone(),
                    column: c.to_string(),
                    table: other.to_string(),
                    available: other_schema
                        .fields()
                        .iter()
                        .map(|f| f.name().clone())
                        .filter(|n| !meta::ALL.contains(&n.as_str()))
                        .collect(),
                });
            }
        }
        ctx.register_table(
            format!("r{i}").as_str(),
            reservoir_lake::table_provider(&other_delta).await?,
        )?;
    }
    let mut select: Vec<String> = rules.columns().iter().map(|c| quote_ident(c)).collect();
    let mut lake_columns = Vec::new();
    if has_batch {
        lake_columns.push(meta::BATCH);
    }
    if has_lines {
        lake_columns.extend([meta::SOURCE_FILE, meta::SOURCE_ROW]);
    }
    for c in lake_columns {
        let q = quote_ident(c);
        if !select.contains(&q) {
            select.push(q);
        }
    }
    let select = if select.is_empty() {
        "1".to_string()
    } else {
        select.join(", ")
    };

    let mut results: Vec<RuleResult> = rules
        .rules
        .iter()
        .map(|r| RuleResult {
            rule: r.name.clone(),
            check: r.check.as_str().into(),
            dimension: r.dimension,
            columns: r.columns.clone(),
            checked: 0,
            failed: 0,
            noted: 0,
            examples: Vec::new(),
            blocking: r.blocking,
        })
        .collect();
    let mut failures = Failures {
        check_run: check_run.to_string(),
        at: Utc::now(),
        rows: Vec::new(),
        sink: None,
        lake: lake.clone(),
        table: table.in_layer(Layer::Quality),
        blocked: BTreeMap::new(),
    };
    let outcome = async {
        let rows = row_rules(&ctx, &select, rules, today, &mut results, &mut failures).await?;
        for (i, rule) in rules.rules.iter().enumerate() {
            match &rule.check {
                Check::Unique => {
                    unique_rule(&ctx, rules, i, has_lines, &mut results[i], &mut failures).await?;
                    results[i].checked = rows;
                }
                Check::Referential { .. } | Check::Consistent { .. } => {
                    let judged =
                        join_rule(&ctx, rules, i, has_lines, &mut results[i], &mut failures)
                            .await?;
                    results[i].checked = judged.unwrap_or(rows);
                }
                Check::Freshness => freshness(history, &mut results[i]),
                Check::Volume {
                    max_change,
                    history: n,
                } => volume(history, rows, *max_change, *n as usize, &mut results[i]),
                _ => {}
            }
        }
        failures.flush(&rules.rules).await?;
        Ok::<u64, Error>(rows)
    }
    .await;
    let rows = match outcome {
        Ok(rows) => rows,
        Err(e) => {
            if let Some(sink) = failures.sink.take() {
                sink.abort(e.to_string()).await;
            }
            return Err(e);
        }
    };
    let failures_version = match failures.sink.take() {
        Some(sink) => Some(sink.finish().await?.version),
        None => None,
    };
    let blocked = std::mem::take(&mut failures.blocked);
    let (quarantine_version, version_after) = if blocked.is_empty() {
        (None, None)
    } else {
        let (q, after) = quarantine_blocked(lake, &ctx, table, check_run, &blocked).await?;
        (Some(q), after)
    };
    let scores = Dimension::ALL
        .into_iter()
        .filter_map(|d| CheckOutcome::score(&results, d).map(|s| (d, s)))
        .collect();
    Ok(CheckOutcome {
        check_run: check_run.to_string(),
        table: table.to_string(),
        table_version: version,
        rows,
        results,
        scores,
        failures_table: failures_version.map(|_| table.in_layer(Layer::Quality).to_string()),
        failures_version,
        blocked: blocked.len() as u64,
        quarantine_table: quarantine_version.map(|_| table.in_layer(Layer::Quarantine).to_string()),
        quarantine_version,
        table_version_after: version_after,
    })
}

/// Moves the rows failing blocking rules out of `table` into its quarantine, with their values
/// as the raw text and the rules' reasons: the quarantine commit first, then one delete from the
/// table, so that a row is never in neither. Returns the quarantine's version and the table's.
async fn quarantine_blocked(
    lake: &Lake,
    ctx: &SessionContext,
    table: &TableRef,
    check_run: &str,
    blocked: &BTreeMap<(String, String, i64), Vec<String>>,
) -> Result<(i64, Option<i64>)> {
    let keys_schema = Arc::new(Schema::new(vec![
        Field::new(meta::BATCH, DataType::Utf8, false),
        Field::new(meta::SOURCE_FILE, DataType::Utf8, false),
        Field::new(meta::SOURCE_ROW, DataType::Int64, false),
    ]));
    let keys = RecordBatch::try_new(
        keys_schema,
        vec![
            Arc::new(
                blocked
                    .keys()
                    .map(|k| Some(k.0.as_str()))
                    .collect::<StringArray>(),
            ),
            Arc::new(
                blocked
                    .keys()
                    .map(|k| Some(k.1.as_str()))
                    .collect::<StringArray>(),
            ),
            Arc::new(blocked.keys().map(|k| Some(k.2)).collect::<Int64Array>()),
        ],
    )?;
    ctx.register_batch("blocked", keys.clone())?;
    let (b, f, r) = (
        quote_ident(meta::BATCH),
        quote_ident(meta::SOURCE_FILE),
        quote_ident(meta::SOURCE_ROW),
    );
    let mut stream = ctx
        .sql(&format!(
            "SELECT t.* FROM t JOIN blocked k ON t.{b} = k.{b} AND t.{f} = k.{f} AND t.{r} = k.{r}"
        ))
        .await?
        .execute_stream()
        .await?;
    let mut sink = lake
        .write(
            table.in_layer(Layer::Quarantine),
            reservoir_lake::quarantine_schema(),
        )
        .with_mode(WriteMode::Append)
        .with_commit_metadata("reservoir.check_run", check_run.into())
        .start()
        .await?;
    let now = Utc::now().timestamp_micros();
    let copied = async {
        while let Some(batch) = stream.try_next().await? {
            let schema = batch.schema();
            let texts: Vec<StringArray> =
                batch.columns().iter().map(as_text).collect::<Result<_>>()?;
            let index = |name: &str| schema.index_of(name).ok();
            let (Some(bi), Some(fi), Some(ri)) = (
                index(meta::BATCH),
                index(meta::SOURCE_FILE),
                index(meta::SOURCE_ROW),
            ) else {
                continue;
            };
            let data: Vec<usize> = (0..schema.fields().len())
                .filter(|i| !meta::ALL.contains(&schema.field(*i).name().as_str()))
                .collect();
            let mut batches = Vec::new();
            let mut files = Vec::new();
            let mut lines = Vec::new();
            let mut raws = Vec::new();
            let mut reasons = Vec::new();
            for row in 0..batch.num_rows() {
                let value = |i: usize| (!texts[i].is_null(row)).then(|| texts[i].value(row));
                let line: i64 = value(ri).and_then(|l| l.parse().ok()).unwrap_or_default();
                let key = (
                    value(bi).unwrap_or_default().to_string(),
                    value(fi).unwrap_or_default().to_string(),
                    line,
                );
                let raw = data
                    .iter()
                    .map(|&i| csv_field(value(i).unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(",");
                reasons.push(
                    blocked
                        .get(&key)
                        .map(|r| format!("blocked by {}", r.join("; ")))
                        .unwrap_or_else(|| "blocked".into()),
                );
                batches.push(key.0);
                files.push(key.1);
                lines.push(key.2);
                raws.push(raw);
            }
            let n = lines.len();
            let out = RecordBatch::try_new(
                reservoir_lake::quarantine_schema(),
                vec![
                    Arc::new(StringArray::from(batches)),
                    Arc::new(
                        arrow::array::TimestampMicrosecondArray::from(vec![now; n])
                            .with_timezone("UTC"),
                    ),
                    Arc::new(StringArray::from(files)),
                    Arc::new(Int64Array::from(lines)),
                    Arc::new(StringArray::from(raws)),
                    Arc::new(StringArray::from(reasons)),
                ],
            )?;
            sink.send(out).await?;
        }
        Ok::<_, Error>(())
    }
    .await;
    if let Err(e) = copied {
        sink.abort(e.to_string()).await;
        return Err(e);
    }
    let quarantine_version = sink.finish().await?.version;
    let deleted = lake
        .delete_matching(
            table,
            keys,
            &[
                meta::BATCH.to_string(),
                meta::SOURCE_FILE.to_string(),
                meta::SOURCE_ROW.to_string(),
            ],
            reservoir_lake::CommitTags::default()
                .with_metadata("reservoir.check_run", check_run.into()),
        )
        .await?;
    Ok((quarantine_version, deleted.map(|d| d.version)))
}

/// A value as a CSV field: quoted when it holds a comma, a quote or a line break.
fn csv_field(v: &str) -> String {
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_string()
    }
}

/// A SQL identifier, quoted.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The `column=value` text that identifies a row.
fn key_text(
    batch: &RecordBatch,
    texts: &[Option<StringArray>],
    key: &[usize],
    row: usize,
) -> String {
    key.iter()
        .map(|&i| {
            let name = batch.schema().field(i).name().clone();
            let v = texts[i]
                .as_ref()
                .filter(|a| !a.is_null(row))
                .map_or("NULL".to_string(), |a| a.value(row).to_string());
            format!("{name}={v}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The load batch, file and line of row `r`, from the lake's columns when selected.
fn origin(batch: &RecordBatch, texts: &[Option<StringArray>], r: usize) -> Origin {
    let schema = batch.schema();
    let text = |name: &str| {
        schema
            .index_of(name)
            .ok()
            .and_then(|i| texts[i].as_ref())
            .filter(|a| !a.is_null(r))
            .map(|a| a.value(r).to_string())
    };
    Origin {
        batch: text(meta::BATCH),
        file: text(meta::SOURCE_FILE),
        line: text(meta::SOURCE_ROW).and_then(|l| l.parse().ok()),
    }
}

/// Refuses a rule whose check cannot judge a column of this type: text checks on floating
/// point columns (whose rendering is not the delivered text), `range` on dates and times.
fn check_type(rule: &Rule, column: &str, ty: &DataType) -> Result<()> {
    let float = matches!(
        ty,
        DataType::Float16 | DataType::Float32 | DataType::Float64
    );
    let numeric = ty.is_numeric();
    let text = matches!(
        ty,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    );
    let why = match &rule.check {
        Check::NotNull | Check::Unique => None,
        Check::Range { .. } if numeric || text => None,
        Check::Range { .. } => Some("range compares numbers"),
        Check::Date(_) if text || matches!(ty, DataType::Date32 | DataType::Date64) => None,
        Check::Date(_) => Some("date checks text (a date column is valid by its type)"),
        _ if float => Some(
            "the check reads text, and a floating-point column's rendering is not the text \
             delivered (71659.60 reads 71659.6); collect the column as text (--column NAME=utf8)",
        ),
        _ => None,
    };
    match why {
        Some(why) => Err(Error::ColumnType {
            rule: rule.name.clone(),
            column: column.to_string(),
            ty: ty.to_string(),
            why: why.to_string(),
        }),
        None => Ok(()),
    }
}

fn as_text(array: &ArrayRef) -> Result<StringArray> {
    let cast = cast_with_options(array, &DataType::Utf8, &CastOptions::default())?;
    Ok(cast
        .as_any()
        .downcast_ref::<StringArray>()
        .cloned()
        .unwrap_or_else(|| StringArray::new_null(array.len())))
}

fn as_number(array: &ArrayRef) -> Result<Float64Array> {
    let options = CastOptions {
        safe: true,
        ..CastOptions::default()
    };
    let source = if array.data_type() == &DataType::Utf8 {
        // Text numbers may carry spaces; anything else is NULL and fails as "not a number".
        let trimmed: StringArray = array
            .as_any()
            .downcast_ref::<StringArray>()
            .map(|a| a.iter().map(|v| v.map(str::trim)).collect())
            .unwrap_or_else(|| StringArray::new_null(array.len()));
        Arc::new(trimmed) as ArrayRef
    } else {
        array.clone()
    };
    let cast = cast_with_options(&source, &DataType::Float64, &options)?;
    Ok(cast
        .as_any()
        .downcast_ref::<Float64Array>()
        .cloned()
        .unwrap_or_else(|| Float64Array::new_null(array.len())))
}

/// What one batch's row rules found: per rule the rows checked, failed and noted, and every
/// failing or noted row in order.
struct BatchVerdicts {
    rows: u64,
    counts: Vec<(u64, u64, u64)>,
    found: Vec<(usize, bool, FailedRow, Origin)>,
}

/// Judges one batch against every row rule (CPU work, no I/O).
fn judge_batch(batch: &RecordBatch, rules: &RuleSet, today: NaiveDate) -> Result<BatchVerdicts> {
    let check_ctx = Context {
        divisions: Divisions::bundled(),
        today,
    };
    let n = batch.num_rows();
    let schema = batch.schema();
    let index = |name: &str| schema.index_of(name).ok();
    let texts: Vec<Option<StringArray>> = batch
        .columns()
        .iter()
        .map(|c| as_text(c).map(Some))
        .collect::<Result<_>>()?;
    let key: Vec<usize> = if rules.key.is_empty() {
        [meta::SOURCE_FILE, meta::SOURCE_ROW]
            .iter()
            .filter_map(|c| index(c))
            .collect()
    } else {
        rules.key.iter().filter_map(|c| index(c)).collect()
    };
    let mut out = BatchVerdicts {
        rows: n as u64,
        counts: vec![(0, 0, 0); rules.rules.len()],
        found: Vec::new(),
    };
    for (ri, rule) in rules.rules.iter().enumerate() {
        if !rule.check.is_row_check() {
            continue;
        }
        let col = rule.columns[0].as_str();
        let Some(ci) = index(col) else { continue };
        let values = texts[ci].as_ref();
        let numbers = match rule.check {
            Check::Range { .. } => Some(as_number(batch.column(ci))?),
            _ => None,
        };
        out.counts[ri].0 += n as u64;
        if matches!(rule.check, Check::Date(_))
            && matches!(
                batch.column(ci).data_type(),
                DataType::Date32 | DataType::Date64
            )
        {
            continue; // valid by its type
        }
        for r in 0..n {
            let value = values.filter(|a| !a.is_null(r)).map(|a| a.value(r));
            let number = numbers
                .as_ref()
                .filter(|a| !a.is_null(r))
                .map(|a| a.value(r));
            let (note, reason) = match rule.check_value(value, number, &check_ctx) {
                None => continue,
                Some(Finding::Note(notes)) => (true, notes.join("; ")),
                Some(Finding::Fail(reason)) => (false, reason),
            };
            if note {
                out.counts[ri].2 += 1;
            } else {
                out.counts[ri].1 += 1;
            }
            out.found.push((
                ri,
                note,
                FailedRow {
                    key: key_text(batch, &texts, &key, r),
                    column: col.to_string(),
                    value: value.map(str::to_string),
                    reason,
                },
                origin(batch, &texts, r),
            ));
        }
    }
    Ok(out)
}

/// One pass over the table for every single-column rule; returns the rows read. Batches are
/// judged on blocking threads, one per core at a time, and their findings taken in scan order.
async fn row_rules(
    ctx: &SessionContext,
    select: &str,
    rules: &RuleSet,
    today: NaiveDate,
    results: &mut [RuleResult],
    failures: &mut Failures,
) -> Result<u64> {
    let stream = ctx
        .sql(&format!("SELECT {select} FROM t"))
        .await?
        .execute_stream()
        .await?;
    let shared = Arc::new(rules.clone());
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut judged = stream
        .map_err(Error::from)
        .map_ok(|batch| {
            let rules = shared.clone();
            async move {
                tokio::task::spawn_blocking(move || judge_batch(&batch, &rules, today))
                    .await
                    .map_err(|e| Error::Rules {
                        path: "rules".into(),
                        message: format!("a check thread failed: {e}"),
                    })?
            }
        })
        .try_buffered(workers);
    let mut rows = 0u64;
    while let Some(verdicts) = judged.try_next().await? {
        rows += verdicts.rows;
        for (ri, (checked, failed, noted)) in verdicts.counts.into_iter().enumerate() {
            let r = &mut results[ri];
            r.checked += checked;
            r.failed += failed;
            r.noted += noted;
        }
        for (ri, note, row, origin) in verdicts.found {
            if !note && results[ri].examples.len() < EXAMPLES {
                results[ri].examples.push(row.clone());
            }
            failures.push(&rules.rules, ri, note, row, origin).await?;
        }
    }
    Ok(rows)
}

/// A `unique` rule: in each group of rows sharing the columns' values, the first row (in load
/// order) is the original and every later one fails, naming the first.
async fn unique_rule(
    ctx: &SessionContext,
    rules: &RuleSet,
    ri: usize,
    has_lines: bool,
    result: &mut RuleResult,
    failures: &mut Failures,
) -> Result<()> {
    let rule = &rules.rules[ri];
    let cols: Vec<String> = rule.columns.iter().map(|c| quote_ident(c)).collect();
    let cols_list = cols.join(", ");
    let not_null = cols
        .iter()
        .map(|c| format!("{c} IS NOT NULL"))
        .collect::<Vec<_>>()
        .join(" AND ");
    let order = if has_lines {
        format!(
            "{}, {}, {}",
            quote_ident(meta::INGESTED_AT),
            quote_ident(meta::SOURCE_FILE),
            quote_ident(meta::SOURCE_ROW)
        )
    } else {
        cols_list.clone()
    };
    let key_cols = key_columns(rules, rule, has_lines);
    let mut select: Vec<String> = key_cols.iter().map(|c| quote_ident(c)).collect();
    for c in &cols {
        if !select.contains(c) {
            select.push(c.clone());
        }
    }
    if has_lines {
        for c in [meta::BATCH, meta::SOURCE_FILE, meta::SOURCE_ROW] {
            let q = quote_ident(c);
            if !select.contains(&q) {
                select.push(q);
            }
        }
    }
    // Only the rows of duplicated values are windowed: a join with the groups of more than one.
    let qualified = |list: &[String]| {
        list.iter()
            .map(|c| format!("t.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let window = format!(
        "PARTITION BY {} ORDER BY {}",
        qualified(&cols),
        order
            .split(", ")
            .map(|c| format!("t.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let first = if has_lines {
        format!(
            ", first_value(t.{}) OVER ({window}) AS first_file, first_value(t.{}) OVER ({window}) AS first_row",
            quote_ident(meta::SOURCE_FILE),
            quote_ident(meta::SOURCE_ROW)
        )
    } else {
        String::new()
    };
    let on = cols
        .iter()
        .map(|c| format!("t.{c} = d.{c}"))
        .collect::<Vec<_>>()
        .join(" AND ");
    let sql = format!(
        "SELECT * FROM (
           SELECT {select}, row_number() OVER ({window}) AS occurrence,
                  count(*) OVER (PARTITION BY {partition}) AS copies{first}
           FROM t JOIN (SELECT {cols_list} FROM t WHERE {not_null} GROUP BY {cols_list} HAVING count(*) > 1) d
             ON {on}
         ) WHERE occurrence > 1",
        select = qualified(&select),
        partition = qualified(&cols),
    );
    let mut stream = ctx.sql(&sql).await?.execute_stream().await?;
    while let Some(batch) = stream.try_next().await? {
        let schema = batch.schema();
        let texts: Vec<Option<StringArray>> = batch
            .columns()
            .iter()
            .map(|c| as_text(c).map(Some))
            .collect::<Result<_>>()?;
        let index = |name: &str| schema.index_of(name).ok();
        let key: Vec<usize> = key_cols.iter().filter_map(|c| index(c)).collect();
        let text_at = |name: &str, r: usize| -> Option<String> {
            index(name)
                .and_then(|i| texts[i].as_ref())
                .filter(|a| !a.is_null(r))
                .map(|a| a.value(r).to_string())
        };
        for r in 0..batch.num_rows() {
            let value = rule
                .columns
                .iter()
                .map(|c| text_at(c, r).unwrap_or_default())
                .collect::<Vec<_>>()
                .join(", ");
            let copies = text_at("copies", r).unwrap_or_default();
            let reason = match (text_at("first_file", r), text_at("first_row", r)) {
                (Some(f), Some(l)) => {
                    format!("{value:?} appears {copies} times; first at {f} line {l}")
                }
                _ => format!("{value:?} appears {copies} times"),
            };
            let failed = FailedRow {
                key: key_text(&batch, &texts, &key, r),
                column: rule.columns.join("+"),
                value: Some(value),
                reason,
            };
            result.failed += 1;
            if result.examples.len() < EXAMPLES {
                result.examples.push(failed.clone());
            }
            failures
                .push(&rules.rules, ri, false, failed, origin(&batch, &texts, r))
                .await?;
        }
    }
    Ok(())
}

/// A rule's `reference` as a table: `unit.dataset` is in the raw layer.
fn reference_table(reference: &str) -> Result<TableRef> {
    let parts: Vec<&str> = reference.split('.').collect();
    Ok(match parts.as_slice() {
        [unit, name] => TableRef::new(Layer::Raw, *unit, *name),
        [layer, unit, name] => TableRef::new(layer.parse::<Layer>()?, *unit, *name),
        _ => {
            return Err(Error::Reference {
                rule: String::new(),
                message: format!("{reference:?}: expected unit.dataset or layer.unit.dataset"),
            });
        }
    })
}

/// The columns that identify a failing row: the rules' `key`, else the file and line, else the
/// rule's own columns.
fn key_columns(rules: &RuleSet, rule: &Rule, has_lines: bool) -> Vec<String> {
    if !rules.key.is_empty() {
        rules.key.clone()
    } else if has_lines {
        vec![meta::SOURCE_FILE.into(), meta::SOURCE_ROW.into()]
    } else {
        rule.columns.clone()
    }
}

/// A `referential` rule (the value must exist in the reference's column) or a `consistent`
/// rule (a row whose `on` columns match a reference row must have the reference's value): one
/// join with the other table. Values are compared as text, so that a code held as a number
/// there and as text here still matches. For `consistent`, only rows whose key the reference
/// has, with one value, are judged: their number is returned (`None`: every row is judged).
async fn join_rule(
    ctx: &SessionContext,
    rules: &RuleSet,
    ri: usize,
    has_lines: bool,
    result: &mut RuleResult,
    failures: &mut Failures,
) -> Result<Option<u64>> {
    let rule = &rules.rules[ri];
    let r = format!("r{ri}");
    let column = &rule.columns[0];
    let c = quote_ident(column);
    let key_cols = key_columns(rules, rule, has_lines);
    let mut select: Vec<String> = key_cols.iter().map(|k| quote_ident(k)).collect();
    let mut extra = vec![c.clone()];
    if let Check::Consistent { on, .. } = &rule.check {
        extra.extend(on.iter().map(|o| quote_ident(o)));
    }
    if has_lines {
        extra.extend([meta::BATCH, meta::SOURCE_FILE, meta::SOURCE_ROW].map(quote_ident));
    }
    for e in extra {
        if !select.contains(&e) {
            select.push(e);
        }
    }
    let select_t = select
        .iter()
        .map(|s| format!("t.{s}"))
        .collect::<Vec<_>>()
        .join(", ");
    let (sql, reference, other_column) = match &rule.check {
        Check::Referential {
            reference,
            column: rc,
        } => {
            let name = rc.as_deref().unwrap_or(column).to_string();
            let rc = quote_ident(&name);
            (
                format!(
                    "SELECT {select_t} FROM t WHERE t.{c} IS NOT NULL AND NOT EXISTS (
                       SELECT 1 FROM {r} WHERE CAST({r}.{rc} AS VARCHAR) = CAST(t.{c} AS VARCHAR))"
                ),
                reference_table(reference)?.to_string(),
                name,
            )
        }
        Check::Consistent {
            reference,
            column: rc,
            on,
        } => {
            let name = rc.as_deref().unwrap_or(column).to_string();
            let rc = quote_ident(&name);
            let on_list = on.iter().map(|o| quote_ident(o)).collect::<Vec<_>>();
            let group = on_list.join(", ");
            let join = on_list
                .iter()
                .map(|o| format!("t.{o} = ref.{o}"))
                .collect::<Vec<_>>()
                .join(" AND ");
            (
                format!(
                    "SELECT {select_t}, ref.reference_value FROM t JOIN (
                       SELECT {group}, min(CAST({rc} AS VARCHAR)) AS reference_value,
                              count(DISTINCT CAST({rc} AS VARCHAR)) AS n
                       FROM {r} GROUP BY {group}) ref ON {join}
                     WHERE ref.n = 1 AND CAST(t.{c} AS VARCHAR) IS DISTINCT FROM ref.reference_value"
                ),
                reference_table(reference)?.to_string(),
                name,
            )
        }
        _ => return Ok(None),
    };
    let judged = match &rule.check {
        Check::Consistent { column: rc, on, .. } => {
            let rc = quote_ident(rc.as_deref().unwrap_or(column));
            let on_list = on.iter().map(|o| quote_ident(o)).collect::<Vec<_>>();
            let group = on_list.join(", ");
            let join = on_list
                .iter()
                .map(|o| format!("t.{o} = ref.{o}"))
                .collect::<Vec<_>>()
                .join(" AND ");
            let counted = ctx
                .sql(&format!(
                    "SELECT count(*) FROM t JOIN (
                       SELECT {group}, count(DISTINCT CAST({rc} AS VARCHAR)) AS n FROM {r} GROUP BY {group}
                     ) ref ON {join} WHERE ref.n = 1"
                ))
                .await?
                .collect()
                .await?;
            let n = counted
                .first()
                .filter(|b| b.num_rows() > 0)
                .map(|b| as_text(b.column(0)))
                .transpose()?
                .and_then(|a| a.value(0).parse::<u64>().ok())
                .unwrap_or(0);
            Some(n)
        }
        _ => None,
    };
    let mut stream = ctx.sql(&sql).await?.execute_stream().await?;
    while let Some(batch) = stream.try_next().await? {
        let schema = batch.schema();
        let texts: Vec<Option<StringArray>> = batch
            .columns()
            .iter()
            .map(|a| as_text(a).map(Some))
            .collect::<Result<_>>()?;
        let index = |name: &str| schema.index_of(name).ok();
        let key: Vec<usize> = key_cols.iter().filter_map(|k| index(k)).collect();
        let text_at = |name: &str, row: usize| -> Option<String> {
            index(name)
                .and_then(|i| texts[i].as_ref())
                .filter(|a| !a.is_null(row))
                .map(|a| a.value(row).to_string())
        };
        for row in 0..batch.num_rows() {
            let value = text_at(column, row);
            let reason = match &rule.check {
                Check::Referential { .. } => format!(
                    "{:?} is not in {reference}.{other_column}",
                    value.as_deref().unwrap_or_default()
                ),
                _ => {
                    let on = match &rule.check {
                        Check::Consistent { on, .. } => on
                            .iter()
                            .map(|o| format!("{o}={}", text_at(o, row).unwrap_or_default()))
                            .collect::<Vec<_>>()
                            .join(", "),
                        _ => String::new(),
                    };
                    format!(
                        "{} here, but {reference} has {:?} in {other_column} for {on}",
                        value
                            .as_deref()
                            .map_or("NULL".to_string(), |v| format!("{v:?}")),
                        text_at("reference_value", row).unwrap_or_default()
                    )
                }
            };
            let failed = FailedRow {
                key: key_text(&batch, &texts, &key, row),
                column: column.clone(),
                value,
                reason,
            };
            result.failed += 1;
            if result.examples.len() < EXAMPLES {
                result.examples.push(failed.clone());
            }
            failures
                .push(&rules.rules, ri, false, failed, origin(&batch, &texts, row))
                .await?;
        }
    }
    Ok(judged)
}

/// A table-level finding: one check, failed or not, with its reason as the example.
fn table_finding(result: &mut RuleResult, failed: bool, value: String, reason: String) {
    result.checked = 1;
    if failed {
        result.failed = 1;
        result.examples.push(FailedRow {
            key: "(table)".into(),
            column: String::new(),
            value: Some(value),
            reason,
        });
    }
}

/// `freshness`: the last successful collection is no older than the declared frequency allows.
/// A dataset collected irregularly has nothing to be late against: not counted.
fn freshness(history: &History, result: &mut RuleResult) {
    let Some(late_after) = history.late_after else {
        return;
    };
    let hours = |d: chrono::Duration| d.num_minutes() as f64 / 60.0;
    match history.last_success {
        None => table_finding(
            result,
            true,
            "never".into(),
            format!(
                "never collected successfully; a {} dataset is late after {:.0} h",
                history.frequency,
                hours(late_after)
            ),
        ),
        Some(last) => {
            let age = history.now - last;
            table_finding(
                result,
                age > late_after,
                reservoir_catalog::format_ts(last),
                format!(
                    "last collected {:.1} h ago; a {} dataset is late after {:.0} h",
                    hours(age),
                    history.frequency,
                    hours(late_after)
                ),
            );
        }
    }
}

/// `volume`: the row count against the mean of the earlier checks. Fewer than two earlier
/// checks: not counted yet.
fn volume(history: &History, rows: u64, max_change: f64, n: usize, result: &mut RuleResult) {
    let earlier: Vec<i64> = history.earlier_rows.iter().take(n).copied().collect();
    if earlier.len() < 2 {
        return;
    }
    let mean = earlier.iter().sum::<i64>() as f64 / earlier.len() as f64;
    let change = if mean > 0.0 {
        (rows as f64 - mean) / mean
    } else if rows > 0 {
        f64::INFINITY
    } else {
        0.0
    };
    let direction = if change < 0.0 { "fewer" } else { "more" };
    table_finding(
        result,
        change.abs() > max_change,
        rows.to_string(),
        format!(
            "{rows} rows, {:.0}% {direction} than the mean of the last {} checks ({mean:.0}); at most {:.0}% is expected",
            change.abs() * 100.0,
            earlier.len(),
            max_change * 100.0
        ),
    );
}

/// Checks a raw dataset against its rules and records the run in the catalog; returns the
/// outcome and the check run's catalog id.
pub async fn check_dataset(
    lake: &Lake,
    catalog: &reservoir_catalog::Catalog,
    unit: &str,
    dataset: &str,
    rules: &RuleSet,
) -> Result<(CheckOutcome, i64)> {
    let table = TableRef::new(Layer::Raw, unit, dataset);
    let Some(found) = catalog.dataset(Layer::Raw.as_str(), unit, dataset).await? else {
        return Err(Error::NoDataset(table.to_string()));
    };
    let rules = &resolve_code_tables(catalog, found.id, rules).await?;
    let started = Utc::now();
    let check_run = uuid::Uuid::now_v7().to_string();
    // Birth dates are judged against the date in China (UTC+8, no daylight saving).
    let today = (started + chrono::Duration::hours(8)).date_naive();
    let history = History {
        frequency: found.update_frequency.as_str().to_string(),
        late_after: found.update_frequency.late_after(),
        last_success: catalog
            .last_success(found.id)
            .await?
            .and_then(|t| reservoir_catalog::parse_ts(&t).ok()),
        // One count per earlier table version: checking the same version again adds nothing.
        earlier_rows: {
            let mut seen = std::collections::HashSet::new();
            catalog
                .check_runs(found.id, 100)
                .await?
                .iter()
                .filter(|c| Some(c.table_version) != found.table_version)
                .filter(|c| seen.insert(c.table_version))
                .map(|c| c.rows_checked)
                .collect()
        },
        now: started,
    };
    let outcome = check_table(lake, &table, rules, &check_run, today, &history).await?;
    let record = reservoir_catalog::CheckRunRecord {
        id: 0,
        check_run,
        dataset_id: found.id,
        table_version: outcome.table_version,
        rows_checked: outcome.rows as i64,
        rows_failed: outcome.results.iter().map(|r| r.failed as i64).sum(),
        scores: serde_json::to_value(&outcome.scores).map_err(|e| Error::Rules {
            path: format!("rules/{unit}/{dataset}.yaml").into(),
            message: format!("cannot encode the scores: {e}"),
        })?,
        results: serde_json::to_value(&outcome.results).map_err(|e| Error::Rules {
            path: format!("rules/{unit}/{dataset}.yaml").into(),
            message: format!("cannot encode the results: {e}"),
        })?,
        failures_version: outcome.failures_version,
        started_at: reservoir_catalog::format_ts(started),
        finished_at: reservoir_catalog::format_ts(Utc::now()),
        rows_blocked: outcome.blocked as i64,
    };
    let id = catalog.record_check_run(&record).await?;
    if let Some(version) = outcome.table_version_after {
        catalog
            .record_table_state(
                found.id,
                outcome.rows as i64 - outcome.blocked as i64,
                version,
            )
            .await?;
    }
    Ok((outcome, id))
}

/// Loads what `code_table` and `element` rules need from the catalog: the rule's table or
/// element, else the one its field is bound to.
async fn resolve_code_tables(
    catalog: &reservoir_catalog::Catalog,
    dataset_id: i64,
    rules: &RuleSet,
) -> Result<RuleSet> {
    let mut rules = rules.clone();
    let bindings = catalog.field_code_tables(dataset_id).await?;
    let elements = catalog.field_elements(dataset_id).await?;
    let codes_of = |rule: String, id: String| async move {
        catalog.code_values(&id).await.map_err(|e| match e {
            reservoir_catalog::Error::NotFound { .. } => Error::Reference {
                rule,
                message: format!(
                    "there is no code table {id:?}; `reservoir catalog codes` lists them"
                ),
            },
            other => Error::Catalog(other),
        })
    };
    for rule in &mut rules.rules {
        if let Check::Element { element, spec } = &mut rule.check {
            let field = &rule.columns[0];
            let found = match element.clone() {
                Some(id) => catalog.element(&id).await?.ok_or_else(|| Error::Reference {
                    rule: rule.name.clone(),
                    message: format!(
                        "there is no data element {id:?}; `reservoir catalog elements` lists them"
                    ),
                })?,
                None => elements
                    .iter()
                    .find(|(f, _)| f == field)
                    .map(|(_, e)| e.clone())
                    .ok_or_else(|| Error::Reference {
                        rule: rule.name.clone(),
                        message: format!(
                            "the field {field:?} is bound to no data element; bind it (reservoir catalog bind DATASET {field} --element ELEMENT) or give the rule `element:`"
                        ),
                    })?,
            };
            use reservoir_catalog::standards::ElementType;
            let dated = matches!(found.data_type, ElementType::Date | ElementType::Timestamp);
            let date_format = (dated && !found.format.is_empty())
                .then(|| reservoir_catalog::standards::date_format(&found.format));
            let format = if found.format.is_empty() || dated {
                None
            } else {
                Some((
                    found.format.clone(),
                    regex::Regex::new(&format!("^(?:{})$", found.format)).map_err(|e| {
                        Error::Reference {
                            rule: rule.name.clone(),
                            message: format!(
                                "data element {}: format {:?} is not a regex: {e}",
                                found.id, found.format
                            ),
                        }
                    })?,
                ))
            };
            let codes = match &found.code_table {
                Some(t) => Some((
                    t.clone(),
                    codes_of(rule.name.clone(), t.clone())
                        .await?
                        .into_iter()
                        .map(|v| v.code)
                        .collect(),
                )),
                None => None,
            };
            *element = Some(found.id.clone());
            *spec = Some(Arc::new(crate::rules::ElementSpec {
                id: found.id,
                name: found.name,
                data_type: found.data_type,
                max_length: found.max_length,
                format,
                date_format,
                codes,
            }));
            continue;
        }
        let Check::CodeTable { table, codes } = &mut rule.check else {
            continue;
        };
        let field = &rule.columns[0];
        let id = match table.clone().or_else(|| {
            bindings
                .iter()
                .find(|(f, _)| f == field)
                .map(|(_, t)| t.clone())
        }) {
            Some(id) => id,
            None => {
                return Err(Error::Reference {
                    rule: rule.name.clone(),
                    message: format!(
                        "the field {field:?} is bound to no code table; bind it (reservoir catalog bind DATASET {field} TABLE) or give the rule `table:`"
                    ),
                });
            }
        };
        let values = codes_of(rule.name.clone(), id.clone()).await?;
        *codes = Some(Arc::new(values.into_iter().map(|v| v.code).collect()));
        *table = Some(id);
    }
    Ok(rules)
}

/// Runs the rules of `raw.<unit>.<dataset>` if it has a rules file under `rules_dir`
/// (`None` if it has none): what a collection does after loading rows.
pub async fn check_if_rules(
    lake: &Lake,
    catalog: &reservoir_catalog::Catalog,
    rules_dir: &std::path::Path,
    unit: &str,
    dataset: &str,
) -> Result<Option<(CheckOutcome, i64)>> {
    let Some(path) = crate::rules::find_file(rules_dir, unit, dataset)? else {
        return Ok(None);
    };
    let rules = RuleSet::load(&path)?;
    check_dataset(lake, catalog, unit, dataset, &rules)
        .await
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result() -> RuleResult {
        RuleResult {
            rule: "r".into(),
            check: "c".into(),
            dimension: Dimension::Timeliness,
            columns: Vec::new(),
            checked: 0,
            failed: 0,
            noted: 0,
            examples: Vec::new(),
            blocking: false,
        }
    }

    #[test]
    fn freshness_against_the_declared_frequency() {
        let now = Utc::now();
        let daily = |last: Option<DateTime<Utc>>| History {
            frequency: "daily".into(),
            late_after: Some(chrono::Duration::hours(36)),
            last_success: last,
            earlier_rows: Vec::new(),
            now,
        };
        let mut r = result();
        freshness(&daily(Some(now - chrono::Duration::hours(30))), &mut r);
        assert_eq!((r.checked, r.failed), (1, 0));
        let mut r = result();
        freshness(&daily(Some(now - chrono::Duration::hours(40))), &mut r);
        assert_eq!((r.checked, r.failed), (1, 1));
        assert_eq!(
            r.examples[0].reason,
            "last collected 40.0 h ago; a daily dataset is late after 36 h"
        );
        let mut r = result();
        freshness(&daily(None), &mut r);
        assert_eq!(r.failed, 1);
        assert!(r.examples[0].reason.starts_with("never collected"));
        // Irregular datasets cannot be late: not counted.
        let mut r = result();
        freshness(
            &History {
                late_after: None,
                ..daily(None)
            },
            &mut r,
        );
        assert_eq!((r.checked, r.failed), (0, 0));
    }

    #[test]
    fn volume_against_earlier_checks() {
        let history = |rows: &[i64]| History {
            earlier_rows: rows.to_vec(),
            now: Utc::now(),
            ..History::default()
        };
        let mut r = result();
        volume(&history(&[100]), 10, 0.5, 5, &mut r);
        assert_eq!(r.checked, 0, "one earlier check is no history");
        let mut r = result();
        volume(&history(&[100, 110, 90]), 120, 0.5, 5, &mut r);
        assert_eq!((r.checked, r.failed), (1, 0));
        let mut r = result();
        volume(&history(&[100, 110, 90]), 40, 0.5, 5, &mut r);
        assert_eq!(r.failed, 1);
        assert_eq!(
            r.examples[0].reason,
            "40 rows, 60% fewer than the mean of the last 3 checks (100); at most 50% is expected"
        );
        // Only the newest `history` checks count.
        let mut r = result();
        volume(&history(&[10, 10, 1000, 1000]), 10, 0.5, 2, &mut r);
        assert_eq!(r.failed, 0);
        let mut r = result();
        volume(&history(&[0, 0]), 5, 0.5, 5, &mut r);
        assert_eq!(r.failed, 1, "rows where there were none");
    }
}
