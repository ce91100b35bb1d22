//! Collection from the units' databases (PostgreSQL, MySQL, MariaDB), exactly once.
//!
//! ```text
//!  source table ──► SELECT cols as text ──► types: exact Arrow ──► raw.<unit>.<dataset>
//!    WHERE (cursor, key) > committed         values that cannot     one Delta commit per batch:
//!    ORDER BY cursor, key LIMIT n            load → quarantine       data + txn(app, n) + cursor
//! ```
//!
//! Two modes:
//! - **full**: the whole table in one overwrite commit; a failed run leaves the previous version.
//! - **incremental**: rows after the committed cursor, in batches of `batch_rows`, ordered by
//!   the cursor column and then the key columns, so rows sharing a cursor value are never
//!   skipped or loaded twice across batch boundaries. Each batch is one Delta commit carrying
//!   an application transaction (`txn` action, app id `reservoir:<unit>.<dataset>`, version =
//!   batch sequence) and the cursor it reached, in the same atomic commit. A run resumes from
//!   the cursor of the last committed batch, so a retried or interrupted run never loads a row
//!   twice and a crash in the middle of a batch leaves nothing of it visible.

mod conn;
pub mod types;

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{
    ArrayRef, BooleanArray, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondArray,
};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{Field as ArrowField, Schema, SchemaRef};
use chrono::Utc;
use futures::TryStreamExt;
use reservoir_catalog::{Field, NewRun, RunCounts, RunOutcome, RunStatus};
use reservoir_lake::{Layer, TableRef, WriteMode, meta};
use serde::Serialize;

use crate::collect::{ColumnReport, ColumnSpec, DatasetInfo, RunReport};
use crate::convert::{Rejected, TypeOrigin, meta_fields, quarantine_schema};
use crate::reader::FileReport;
use crate::{Collector, Error, Progress, Result};
use conn::{Conn, Introspected, TextRow};
use types::{ColumnBuilder, LoadType, Parsed, SourceColumn};

/// Commit-metadata key of the cursor an incremental batch reached.
pub const CURSOR_KEY: &str = "reservoir.cursor";
/// Commit-metadata key of the run (batch id) that made a commit.
pub const BATCH_KEY: &str = "reservoir.batch";

/// Which database a source is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DbKind {
    Postgres,
    /// MySQL and MariaDB.
    MySql,
}

impl DbKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::MySql => "mysql",
        }
    }

    /// The kind a URL's scheme names.
    pub fn from_url(url: &str) -> Option<Self> {
        let scheme = url.split_once("://")?.0.to_ascii_lowercase();
        match scheme.as_str() {
            "postgres" | "postgresql" => Some(Self::Postgres),
            "mysql" | "mariadb" => Some(Self::MySql),
            _ => None,
        }
    }
}

/// How a table is kept in sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// The whole table, replacing the lake table in one commit.
    #[default]
    Full,
    /// New and changed rows after the committed cursor, appended batch by batch.
    Incremental,
}

impl SyncMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Incremental => "incremental",
        }
    }
}

/// A database table to collect.
#[derive(Clone)]
pub struct DatabaseSource {
    pub kind: DbKind,
    /// Connection URL, password included; never logged or recorded (see [`Self::shown_url`]).
    pub url: String,
    /// `table` or `schema.table`.
    pub table: String,
    pub mode: SyncMode,
    /// Primary-key columns: the order of a full load and the tie-break of the cursor.
    pub key: Vec<String>,
    /// The column whose value only grows as rows are added or changed (incremental mode).
    pub cursor: Option<String>,
    /// Rows per batch (and per Delta commit in incremental mode).
    pub batch_rows: usize,
    /// Stop after this many batches (incremental mode); the next run goes on from there.
    pub max_batches: Option<usize>,
}

impl std::fmt::Debug for DatabaseSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseSource")
            .field("kind", &self.kind)
            .field("url", &self.shown_url())
            .field("table", &self.table)
            .field("mode", &self.mode)
            .field("key", &self.key)
            .field("cursor", &self.cursor)
            .finish()
    }
}

impl DatabaseSource {
    /// The URL without its password, for messages and the catalog.
    pub fn shown_url(&self) -> String {
        redact_url(&self.url)
    }

    fn label(&self) -> String {
        format!("{} {}", self.shown_url(), self.table)
    }
}

/// `scheme://user:secret@host/db` → `scheme://user@host/db`.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(None);
            }
            u.set_query(None);
            u.to_string()
        }
        Err(_) => "<unparseable url>".into(),
    }
}

/// What to sync into `raw.<unit>.<dataset>`.
#[derive(Debug, Clone)]
pub struct SyncRequest {
    pub unit: String,
    pub dataset: String,
    pub source: DatabaseSource,
    /// Business titles and descriptions of columns (types come from the database).
    pub columns: Vec<ColumnSpec>,
    pub info: DatasetInfo,
    /// How the run's source is described in the catalog (default: URL without password and table).
    pub source_label: String,
    pub profile: bool,
}

impl Collector {
    /// Syncs a database table into the raw layer and records the run.
    pub async fn sync_database(
        &self,
        req: SyncRequest,
        progress: Arc<dyn Progress>,
    ) -> Result<RunReport> {
        let started = Instant::now();
        let src = &req.source;
        if src.batch_rows == 0 {
            return Err(Error::Invalid("batch_rows must be positive".into()));
        }
        let mut notes = Vec::new();
        self.register(
            &req.unit,
            &req.dataset,
            &req.info,
            src.kind.as_str(),
            &mut notes,
        )
        .await?;
        let table = TableRef::new(Layer::Raw, &req.unit, &req.dataset);
        let dataset = self
            .catalog()
            .dataset(Layer::Raw.as_str(), &req.unit, &req.dataset)
            .await?
            .ok_or_else(|| Error::Invalid(format!("dataset {table} vanished from the catalog")))?;
        let label = if req.source_label.is_empty() {
            src.label()
        } else {
            req.source_label.clone()
        };
        let batch_id = uuid::Uuid::now_v7().to_string();
        let run_id = self
            .catalog()
            .begin_run(&NewRun {
                batch_id: batch_id.clone(),
                dataset_id: dataset.id,
                source: label.clone(),
                mode: src.mode.as_str().to_string(),
            })
            .await?;

        let mut sync = Sync {
            collector: self,
            req: &req,
            table: table.clone(),
            batch_id: batch_id.clone(),
            source_name: format!("{}:{}", src.kind.as_str(), src.table),
            counts: RunCounts::default(),
            rejected_sample: Vec::new(),
            quarantined: false,
            non_null: Vec::new(),
            version: None,
            progress,
            notes: Vec::new(),
        };
        let result = sync.run().await;
        notes.append(&mut sync.notes);
        let columns = match result {
            Ok(c) => c,
            Err(e) => {
                let outcome = RunOutcome {
                    status: RunStatus::Failed,
                    // Batches committed before the failure stay committed and counted.
                    counts: sync.counts,
                    table_version: sync.version,
                    error: Some(e.to_string()),
                    details: serde_json::json!({ "source": label }),
                };
                if let Err(ce) = self.catalog().finish_run(run_id, &outcome, None).await {
                    tracing::error!(run_id, error = %ce, "could not record the failed run");
                }
                return Err(e);
            }
        };

        let delta = self.lake().open(&table).await?;
        let table_rows = match &delta {
            Some(d) => reservoir_lake::row_count_of(d)?,
            None => 0,
        };
        let reports: Vec<ColumnReport> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| ColumnReport {
                name: c.name.clone(),
                ty: type_name(c.load),
                origin: TypeOrigin::Source,
                all_empty: sync.non_null.get(i).copied().unwrap_or(0) == 0
                    && sync.counts.rows_loaded > 0,
                note: c.note.clone(),
            })
            .collect();
        if delta.is_some() {
            let fields: Vec<Field> = columns
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let spec = req.columns.iter().find(|s| s.name == c.name);
                    let description = spec
                        .map(|s| s.description.clone())
                        .filter(|d| !d.is_empty())
                        .unwrap_or_else(|| format!("source type: {}", c.source_type));
                    Field {
                        position: i as i64,
                        name: c.name.clone(),
                        data_type: c.load.arrow().to_string(),
                        nullable: true,
                        title: spec.map(|s| s.title.clone()).unwrap_or_default(),
                        description,
                        flags: String::new(),
                    }
                })
                .collect();
            self.catalog().set_fields(dataset.id, &fields).await?;
        }
        let file = FileReport {
            path: sync.source_name.clone(),
            format: src.kind.as_str(),
            ..FileReport::default()
        };
        let mut report = RunReport {
            run_id,
            batch_id,
            table: table.to_string(),
            status: RunStatus::Succeeded,
            mode: src.mode.as_str().to_string(),
            counts: sync.counts,
            table_version: sync.version,
            table_rows,
            quarantine_table: sync
                .quarantined
                .then(|| table.in_layer(Layer::Quarantine).to_string()),
            files: vec![file],
            columns: reports,
            rejected_sample: sync.rejected_sample,
            notes,
            elapsed_ms: 0,
        };
        let outcome = RunOutcome {
            status: RunStatus::Succeeded,
            counts: report.counts,
            table_version: report.table_version,
            error: None,
            details: serde_json::json!({
                "source": label,
                "columns": report.columns,
                "quarantine_table": report.quarantine_table,
                "notes": report.notes,
            }),
        };
        self.catalog()
            .finish_run(run_id, &outcome, Some(table_rows))
            .await?;
        if req.profile
            && let Some(delta) = &delta
            && report.counts.rows_loaded > 0
        {
            match reservoir_quality::profile_table(delta, &meta::ALL).await {
                Ok(profiles) => {
                    self.catalog()
                        .record_profiles(run_id, dataset.id, &profiles)
                        .await?
                }
                Err(e) => report.notes.push(format!("profiling failed: {e}")),
            }
        }
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        Ok(report)
    }
}

fn type_name(load: LoadType) -> String {
    match load {
        LoadType::Int => "int64".into(),
        LoadType::UnsignedBig => "decimal(20,0)".into(),
        LoadType::Decimal { precision, scale } => format!("decimal({precision},{scale})"),
        LoadType::Float => "float64".into(),
        LoadType::Bool => "boolean".into(),
        LoadType::Date => "date".into(),
        LoadType::Timestamp => "timestamp".into(),
        LoadType::TimestampUtc => "timestamp_utc".into(),
        LoadType::Binary => "binary".into(),
        LoadType::Text { json: true } => "utf8 (json)".into(),
        LoadType::Text { json: false } => "utf8".into(),
    }
}

/// The state of one sync run.
struct Sync<'a> {
    collector: &'a Collector,
    req: &'a SyncRequest,
    table: TableRef,
    batch_id: String,
    /// `_source_file` of loaded rows, e.g. `postgres:public.people`.
    source_name: String,
    counts: RunCounts,
    rejected_sample: Vec<Rejected>,
    quarantined: bool,
    non_null: Vec<u64>,
    version: Option<i64>,
    progress: Arc<dyn Progress>,
    notes: Vec<String>,
}

const REJECTED_SAMPLE: usize = 20;

impl Sync<'_> {
    fn app_id(&self) -> String {
        format!("reservoir:{}.{}", self.req.unit, self.req.dataset)
    }

    async fn run(&mut self) -> Result<Vec<SourceColumn>> {
        let src = &self.req.source;
        let mut conn = Conn::connect(src.kind, &src.url, &src.shown_url()).await?;
        let result = self.run_on(&mut conn).await;
        conn.close().await;
        result
    }

    async fn run_on(&mut self, conn: &mut Conn) -> Result<Vec<SourceColumn>> {
        let src = &self.req.source;
        let introspected = conn.columns(&src.table).await?;
        let columns: Vec<SourceColumn> = introspected.iter().map(|c| c.column.clone()).collect();
        check_columns(&src.table, &introspected, src)?;
        let schema = raw_schema(&columns);
        self.non_null = vec![0; columns.len()];
        let select = columns
            .iter()
            .map(|c| conn.text_expr(c))
            .collect::<Vec<_>>()
            .join(", ");
        let from = conn.quote_table(&src.table);
        match src.mode {
            SyncMode::Full => {
                let order = if src.key.is_empty() {
                    String::new()
                } else {
                    format!(
                        " ORDER BY {}",
                        src.key
                            .iter()
                            .map(|k| conn.quote(k))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                let sql = format!("SELECT {select} FROM {from}{order}");
                self.full(conn, &sql, &columns, schema).await?;
            }
            SyncMode::Incremental => {
                if let Some(existing) = self.collector.lake().arrow_schema(&self.table).await? {
                    check_drift(&self.table, &existing, &schema)?;
                }
                self.incremental(conn, &select, &from, &columns, schema)
                    .await?;
            }
        }
        Ok(columns)
    }

    async fn full(
        &mut self,
        conn: &mut Conn,
        sql: &str,
        columns: &[SourceColumn],
        schema: SchemaRef,
    ) -> Result<()> {
        let batch_rows = self.req.source.batch_rows;
        let mut sink = self
            .collector
            .lake()
            .write(self.table.clone(), schema.clone())
            .with_mode(WriteMode::Overwrite)
            .with_commit_metadata(BATCH_KEY, self.batch_id.clone().into())
            .start()
            .await?;
        let mut builder = BatchBuilder::new(self, columns, schema.clone());
        let mut rejected = Vec::new();
        let mut rows = conn.stream(sql, &[], columns.len());
        let read = async {
            while let Some(row) = rows.try_next().await.map_err(|e| self.db_error(e))? {
                builder.push(row);
                if builder.len() >= batch_rows {
                    let (batch, mut rej) = builder.finish()?;
                    rejected.append(&mut rej);
                    sink.send(batch).await?;
                    self.progress.advanced(0, sink.rows());
                }
            }
            let (batch, mut rej) = builder.finish()?;
            rejected.append(&mut rej);
            if batch.num_rows() > 0 {
                sink.send(batch).await?;
            }
            Ok::<_, Error>(())
        }
        .await;
        drop(rows);
        if let Err(e) = read {
            sink.abort(e.to_string()).await;
            return Err(e);
        }
        let outcome = sink.finish().await?;
        self.version = Some(outcome.version);
        let stats = builder.stats;
        self.account(&stats, &rejected);
        self.quarantine(rejected).await?;
        Ok(())
    }

    async fn incremental(
        &mut self,
        conn: &mut Conn,
        select: &str,
        from: &str,
        columns: &[SourceColumn],
        schema: SchemaRef,
    ) -> Result<()> {
        let src = &self.req.source;
        let cursor_col = src.cursor.as_deref().ok_or_else(|| {
            Error::Invalid("incremental sync needs a cursor column (cursor = \"…\")".into())
        })?;
        // The order of the walk: the cursor, then the key columns as tie-break.
        let order_cols: Vec<&SourceColumn> = std::iter::once(cursor_col)
            .chain(src.key.iter().map(String::as_str))
            .map(|name| {
                columns
                    .iter()
                    .find(|c| c.name == name)
                    .ok_or_else(|| Error::Invalid(format!("no column {name:?}")))
            })
            .collect::<Result<_>>()?;
        let positions: Vec<usize> = order_cols
            .iter()
            .map(|c| columns.iter().position(|x| x.name == c.name).unwrap_or(0))
            .collect();
        let order_by = order_cols
            .iter()
            .map(|c| conn.quote(&c.name))
            .collect::<Vec<_>>()
            .join(", ");
        let tuple = format!("({order_by})");
        let params_tuple = format!(
            "({})",
            order_cols
                .iter()
                .enumerate()
                .map(|(i, c)| conn.param(i + 1, c))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let limit = src.batch_rows;
        let first_sql = format!("SELECT {select} FROM {from} ORDER BY {order_by} LIMIT {limit}");
        let next_sql = format!(
            "SELECT {select} FROM {from} WHERE {tuple} > {params_tuple} ORDER BY {order_by} LIMIT {limit}"
        );

        let app_id = self.app_id();
        let mut batches = 0usize;
        loop {
            if src.max_batches.is_some_and(|m| batches >= m) {
                self.notes.push(format!(
                    "stopped after {batches} batches (max_batches); the next run continues from the committed cursor"
                ));
                break;
            }
            // Resume from what the lake has committed, never from memory: the commit is the truth.
            let committed = self
                .collector
                .lake()
                .app_commit(&self.table, &app_id)
                .await?;
            let (seq, cursor) = match &committed {
                Some(c) => (c.version, cursor_of(&c.metadata, order_cols.len())?),
                None => (0, None),
            };
            let (sql, params) = match &cursor {
                Some(values) => (next_sql.as_str(), values.clone()),
                None => (first_sql.as_str(), Vec::new()),
            };
            let mut builder = BatchBuilder::new(self, columns, schema.clone());
            let mut last: Option<Vec<String>> = None;
            {
                let mut rows = conn.stream(sql, &params, columns.len());
                while let Some(row) = rows.try_next().await.map_err(|e| self.db_error(e))? {
                    let key: Option<Vec<String>> =
                        positions.iter().map(|&p| row[p].clone()).collect();
                    last = Some(key.ok_or_else(|| {
                        Error::Invalid(format!(
                            "a row has NULL in the cursor or key columns ({order_by})"
                        ))
                    })?);
                    builder.push(row);
                }
            }
            let Some(last) = last else {
                break;
            };
            let read = builder.len();
            let (batch, rejected) = builder.finish()?;
            let stats = std::mem::take(&mut builder.stats);
            let mut write = self
                .collector
                .lake()
                .write(self.table.clone(), schema.clone())
                .with_app_transaction(&app_id, seq + 1)
                .with_commit_metadata(CURSOR_KEY, serde_json::json!(last))
                .with_commit_metadata(BATCH_KEY, self.batch_id.clone().into())
                .start()
                .await?;
            if batch.num_rows() > 0 {
                write.send(batch).await?;
            }
            let outcome = write.finish().await?;
            self.version = Some(outcome.version);
            self.account(&stats, &rejected);
            self.quarantine(rejected).await?;
            self.progress.advanced(0, self.counts.rows_read as u64);
            batches += 1;
            if read < limit {
                break;
            }
        }
        if self.version.is_none() {
            self.notes
                .push("no new rows since the last committed cursor".to_string());
        }
        Ok(())
    }

    fn db_error(&self, e: sqlx::Error) -> Error {
        Error::Database {
            name: format!("{} {}", self.req.source.shown_url(), self.req.source.table),
            message: e.to_string(),
        }
    }

    fn account(&mut self, stats: &BatchStats, rejected: &[Rejected]) {
        self.counts.rows_read += stats.read as i64;
        self.counts.rows_loaded += (stats.read - rejected.len()) as i64;
        self.counts.rows_quarantined += rejected.len() as i64;
        self.counts.rows_flagged += stats.flagged as i64;
        for (n, add) in self.non_null.iter_mut().zip(&stats.non_null) {
            *n += add;
        }
        for r in rejected {
            if self.rejected_sample.len() < REJECTED_SAMPLE {
                self.rejected_sample.push(r.clone());
            }
        }
    }

    async fn quarantine(&mut self, rejected: Vec<Rejected>) -> Result<()> {
        if rejected.is_empty() {
            return Ok(());
        }
        let now = Utc::now().timestamp_micros();
        let n = rejected.len();
        let mut file = StringBuilder::new();
        let mut line = Int64Builder::new();
        let mut raw = StringBuilder::new();
        let mut reason = StringBuilder::new();
        let mut batch_col = StringBuilder::new();
        for r in &rejected {
            batch_col.append_value(&self.batch_id);
            file.append_value(&r.source_file);
            line.append_value(r.line);
            raw.append_value(&r.raw);
            reason.append_value(&r.reason);
        }
        let schema = quarantine_schema();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(batch_col.finish()),
                Arc::new(TimestampMicrosecondArray::from(vec![now; n]).with_timezone("UTC")),
                Arc::new(file.finish()),
                Arc::new(line.finish()),
                Arc::new(raw.finish()),
                Arc::new(reason.finish()),
            ],
        )?;
        let mut sink = self
            .collector
            .lake()
            .write(self.table.in_layer(Layer::Quarantine), schema)
            .start()
            .await?;
        sink.send(batch).await?;
        sink.finish().await?;
        self.quarantined = true;
        Ok(())
    }
}

/// The cursor values a commit recorded.
fn cursor_of(
    metadata: &serde_json::Map<String, serde_json::Value>,
    width: usize,
) -> Result<Option<Vec<String>>> {
    let Some(v) = metadata.get(CURSOR_KEY) else {
        return Ok(None);
    };
    let values: Vec<String> = serde_json::from_value(v.clone())
        .map_err(|e| Error::Invalid(format!("the committed cursor {v} is unreadable: {e}")))?;
    if values.len() != width {
        return Err(Error::Invalid(format!(
            "the committed cursor {v} has {} values but the cursor and key columns are {width}; \
             were cursor or key changed? Reload the table with a full sync",
            values.len()
        )));
    }
    Ok(Some(values))
}

fn check_columns(table: &str, cols: &[Introspected], src: &DatabaseSource) -> Result<()> {
    let find = |name: &str, role: &str| {
        cols.iter().find(|c| c.column.name == name).ok_or_else(|| {
            Error::Invalid(format!(
                "{role} column {name:?} is not in {table}; its columns are: {}",
                cols.iter()
                    .map(|c| c.column.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    };
    for k in &src.key {
        find(k, "key")?;
    }
    if src.mode == SyncMode::Incremental {
        if src.key.is_empty() {
            return Err(Error::Invalid(format!(
                "incremental sync of {table} needs key columns (key = [\"id\"]) to order rows that share a cursor value"
            )));
        }
        let cursor = src.cursor.as_deref().ok_or_else(|| {
            Error::Invalid(format!(
                "incremental sync of {table} needs a cursor column (cursor = \"updated_at\")"
            ))
        })?;
        for name in std::iter::once(cursor).chain(src.key.iter().map(String::as_str)) {
            let c = find(name, "cursor or key")?;
            if c.nullable {
                return Err(Error::Invalid(format!(
                    "column {name:?} of {table} allows NULL; rows with NULL there could never be \
                     collected incrementally. Declare it NOT NULL, or use a full sync"
                )));
            }
        }
    }
    Ok(())
}

/// Refuses to append batches whose columns differ from the table's.
fn check_drift(table: &TableRef, existing: &SchemaRef, new: &SchemaRef) -> Result<()> {
    let mut problems = Vec::new();
    for f in new.fields() {
        match existing.field_with_name(f.name()) {
            Ok(old) if old.data_type() != f.data_type() => problems.push(format!(
                "column {:?} was {} and is now {}",
                f.name(),
                old.data_type(),
                f.data_type()
            )),
            Ok(_) => {}
            Err(_) => problems.push(format!("column {:?} is new", f.name())),
        }
    }
    for f in existing.fields() {
        if new.field_with_name(f.name()).is_err() {
            problems.push(format!("column {:?} is gone from the source", f.name()));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::SchemaDrift {
            table: table.to_string(),
            message: problems.join("; "),
        })
    }
}

fn raw_schema(columns: &[SourceColumn]) -> SchemaRef {
    let mut fields: Vec<ArrowField> = columns
        .iter()
        .map(|c| ArrowField::new(&c.name, c.load.arrow(), true))
        .collect();
    fields.extend(meta_fields());
    Arc::new(Schema::new(fields))
}

#[derive(Default)]
struct BatchStats {
    read: usize,
    flagged: usize,
    non_null: Vec<u64>,
}

/// Builds record batches from text rows, setting aside rows with values that cannot load.
struct BatchBuilder<'c> {
    columns: &'c [SourceColumn],
    schema: SchemaRef,
    builders: Vec<ColumnBuilder>,
    keep: Vec<bool>,
    flags: Vec<Option<String>>,
    rows: Vec<i64>,
    rejected: Vec<Rejected>,
    batch_id: String,
    ingested_at: i64,
    source_name: String,
    /// `_source_row` of the next row: its ordinal within the run.
    next_row: i64,
    stats: BatchStats,
}

impl<'c> BatchBuilder<'c> {
    fn new(sync: &Sync<'_>, columns: &'c [SourceColumn], schema: SchemaRef) -> Self {
        Self {
            columns,
            schema,
            builders: Self::fresh(columns),
            keep: Vec::new(),
            flags: Vec::new(),
            rows: Vec::new(),
            rejected: Vec::new(),
            batch_id: sync.batch_id.clone(),
            ingested_at: Utc::now().timestamp_micros(),
            source_name: sync.source_name.clone(),
            next_row: sync.counts.rows_read + 1,
            stats: BatchStats {
                non_null: vec![0; columns.len()],
                ..BatchStats::default()
            },
        }
    }

    fn fresh(columns: &[SourceColumn]) -> Vec<ColumnBuilder> {
        columns
            .iter()
            .map(|c| ColumnBuilder::new(c.load, 1024))
            .collect()
    }

    fn len(&self) -> usize {
        self.keep.len()
    }

    fn push(&mut self, row: TextRow) {
        let line = self.next_row;
        self.next_row += 1;
        self.stats.read += 1;
        let mut notes = Vec::new();
        let mut failure = None;
        for (i, (b, v)) in self.builders.iter_mut().zip(&row).enumerate() {
            if failure.is_some() {
                b.append_null();
                continue;
            }
            match b.append(v.as_deref()) {
                Ok(Parsed::Ok) => {}
                Ok(Parsed::Voided(note)) => notes.push(format!("{}: {note}", self.columns[i].name)),
                Err(reason) => {
                    b.append_null();
                    failure = Some(format!(
                        "column {:?} ({}): {reason}",
                        self.columns[i].name, self.columns[i].source_type
                    ));
                }
            }
        }
        match failure {
            None => {
                for (n, v) in self.stats.non_null.iter_mut().zip(&row) {
                    *n += u64::from(v.is_some());
                }
                if !notes.is_empty() {
                    self.stats.flagged += 1;
                }
                self.keep.push(true);
                self.flags
                    .push((!notes.is_empty()).then(|| notes.join("; ")));
            }
            Some(reason) => {
                let raw: serde_json::Map<String, serde_json::Value> = self
                    .columns
                    .iter()
                    .zip(&row)
                    .map(|(c, v)| {
                        (
                            c.name.clone(),
                            v.clone().map_or(serde_json::Value::Null, Into::into),
                        )
                    })
                    .collect();
                self.rejected.push(Rejected {
                    source_file: self.source_name.clone(),
                    line,
                    raw: serde_json::Value::Object(raw).to_string(),
                    reason,
                });
                self.keep.push(false);
                self.flags.push(None);
            }
        }
        self.rows.push(line);
    }

    /// The loadable rows so far, and the rows set aside; the builder starts over.
    fn finish(&mut self) -> Result<(RecordBatch, Vec<Rejected>)> {
        let n = self.keep.len();
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for b in &mut self.builders {
            arrays.push(b.finish()?);
        }
        let mut batch_col = StringBuilder::with_capacity(n, n * 36);
        let mut file_col = StringBuilder::with_capacity(n, n * self.source_name.len());
        for _ in 0..n {
            batch_col.append_value(&self.batch_id);
            file_col.append_value(&self.source_name);
        }
        arrays.push(Arc::new(batch_col.finish()));
        arrays.push(Arc::new(
            TimestampMicrosecondArray::from(vec![self.ingested_at; n]).with_timezone("UTC"),
        ));
        arrays.push(Arc::new(file_col.finish()));
        arrays.push(Arc::new(arrow::array::Int64Array::from(std::mem::take(
            &mut self.rows,
        ))));
        arrays.push(Arc::new(arrow::array::StringArray::from(std::mem::take(
            &mut self.flags,
        ))));
        let batch = RecordBatch::try_new(self.schema.clone(), arrays)?;
        let keep = BooleanArray::from(std::mem::take(&mut self.keep));
        let batch = if keep.true_count() == n {
            batch
        } else {
            filter_record_batch(&batch, &keep)?
        };
        self.builders = Self::fresh(self.columns);
        Ok((batch, std::mem::take(&mut self.rejected)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact_url("postgres://reader:s3cret@db.example:5432/unit?sslmode=require"),
            "postgres://reader@db.example:5432/unit"
        );
        assert_eq!(
            redact_url("mysql://root@127.0.0.1:3306/x"),
            "mysql://root@127.0.0.1:3306/x"
        );
        assert_eq!(redact_url("not a url"), "<unparseable url>");
        let src = DatabaseSource {
            kind: DbKind::Postgres,
            url: "postgres://u:pw@h/d".into(),
            table: "t".into(),
            mode: SyncMode::Full,
            key: vec![],
            cursor: None,
            batch_rows: 10,
            max_batches: None,
        };
        assert!(!format!("{src:?}").contains("pw"));
    }

    #[test]
    fn kinds_from_urls() {
        assert_eq!(DbKind::from_url("postgresql://h/d"), Some(DbKind::Postgres));
        assert_eq!(DbKind::from_url("mariadb://h/d"), Some(DbKind::MySql));
        assert_eq!(DbKind::from_url("sqlite://x.db"), None);
    }
}
