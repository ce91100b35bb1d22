//! Collection from the units' databases (PostgreSQL, MySQL, MariaDB), exactly once.
//!
//! ```text
//!  source table ──► SELECT cols as text ──► types: exact Arrow ──► raw.<unit>.<dataset>
//!    WHERE (cursor, key) > committed         values that cannot     one Delta commit per batch:
//!    ORDER BY cursor, key LIMIT n            load → quarantine       data + txn(app, n) + cursor
//! ```
//!
//! Three modes:
//! - **full**: the whole table in one overwrite commit; a failed run leaves the previous version.
//! - **upsert**: like incremental, but each batch is merged into the table by key (Delta MERGE):
//!   a changed row replaces its earlier version, so the table mirrors the source. With
//!   `detect_deletes`, a run that reached the end of the source also compares all the source's
//!   keys with the table's and deletes the rows the source no longer has, in one more commit.
//!   A row delivered again unchanged is left alone. With `lookback` ("15m", or an amount for a
//!   numeric cursor) a run starts that far before the committed cursor, so rows committed at
//!   the source with a cursor value already passed (a long transaction's `now()`) still arrive.
//! - **incremental**: rows after the committed cursor, in batches of `batch_rows`, ordered by
//!   the cursor column and then the key columns, so rows sharing a cursor value are never
//!   skipped or loaded twice across batch boundaries. Each batch is one Delta commit carrying
//!   an application transaction (`txn` action, app id `reservoir:<unit>.<dataset>`, version =
//!   batch sequence) and the cursor it reached, in the same atomic commit. A run resumes from
//!   the cursor of the last committed batch, so a retried or interrupted run never loads a row
//!   twice and a crash in the middle of a batch leaves nothing of it visible. The table keeps
//!   every version of a changed row (a change log).
//!
//! Schema drift is handled before any row is read (see [`drift`]): new columns are added,
//! lossless type changes widen the table, anything else stops the run; each event is recorded in
//! the catalog.

mod conn;
pub(crate) mod drift;
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
use reservoir_catalog::{DriftEvent, Field, NewRun, RunCounts, RunOutcome, RunStatus};
use reservoir_lake::{CommitTags, Layer, TableRef, WriteMode, meta};
use serde::Serialize;

use crate::collect::{ColumnReport, ColumnSpec, DatasetInfo, RunReport};
use crate::convert::{Rejected, TypeOrigin, meta_fields, quarantine_schema};
use crate::reader::FileReport;
use crate::{Collector, Error, Progress, Result};
use conn::{Conn, Introspected, TextRow};
use types::{ColumnBuilder, LoadType, Parsed, SourceColumn};

/// Alias of the source table in the queries.
const SRC: &str = "src";

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
    /// New and changed rows after the committed cursor, merged into the table by key.
    Upsert,
}

impl SyncMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Incremental => "incremental",
            Self::Upsert => "upsert",
        }
    }

    /// Whether the mode walks the source by cursor.
    pub fn is_incremental(self) -> bool {
        matches!(self, Self::Incremental | Self::Upsert)
    }
}

impl std::str::FromStr for SyncMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "full" => Ok(Self::Full),
            "incremental" => Ok(Self::Incremental),
            "upsert" => Ok(Self::Upsert),
            other => Err(format!(
                "sync mode {other:?}; expected full, incremental or upsert"
            )),
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
    /// Upsert and incremental modes: after reaching the end of the source, delete the table's
    /// rows whose key the source no longer has (reads every key of the source).
    pub detect_deletes: bool,
    /// Upsert mode: how far before the committed cursor a run starts reading again.
    pub lookback: Option<Lookback>,
}

/// How far back an upsert run re-reads: a time span for a date or time cursor, an amount for
/// a numeric one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookback {
    Seconds(u64),
    Amount(u64),
}

impl Lookback {
    /// Parses `90s`, `15m`, `2h` or `1d` (a time span) or a bare number (an amount).
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let t = text.trim();
        let expected = || {
            format!(
                "lookback {text:?}; expected a time span such as \"90s\", \"15m\", \"2h\" or \"1d\" \
                 for a date or time cursor, or a whole number for a numeric cursor"
            )
        };
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (digits, unit) = t.split_at(split);
        let n: u64 = digits.parse().map_err(|_| expected())?;
        let factor = match unit.trim() {
            "" => return Ok(Self::Amount(n)),
            "s" => 1,
            "m" | "min" => 60,
            "h" => 3_600,
            "d" => 86_400,
            _ => return Err(expected()),
        };
        n.checked_mul(factor)
            .map(Self::Seconds)
            .ok_or_else(expected)
    }

    /// Checks that the lookback fits the cursor column's type.
    pub fn check(self, cursor: &SourceColumn) -> Result<()> {
        let time = matches!(
            cursor.load,
            LoadType::Date | LoadType::Timestamp | LoadType::TimestampUtc
        );
        let number = matches!(
            cursor.load,
            LoadType::Int | LoadType::UnsignedBig | LoadType::Decimal { .. } | LoadType::Float
        );
        match self {
            Self::Seconds(_) if time => Ok(()),
            Self::Amount(_) if number => Ok(()),
            _ => Err(Error::Invalid(format!(
                "lookback {self} does not fit cursor column {:?} of type {}: a date or time \
                 cursor takes a time span (\"15m\"), a numeric cursor a whole number",
                cursor.name, cursor.source_type
            ))),
        }
    }
}

impl std::fmt::Display for Lookback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Self::Seconds(s) if s % 86_400 == 0 => write!(f, "{}d", s / 86_400),
            Self::Seconds(s) if s % 3_600 == 0 => write!(f, "{}h", s / 3_600),
            Self::Seconds(s) if s % 60 == 0 => write!(f, "{}m", s / 60),
            Self::Seconds(s) => write!(f, "{s}s"),
            Self::Amount(n) => write!(f, "{n}"),
        }
    }
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
            .field("detect_deletes", &self.detect_deletes)
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
        let label = if req.source_label.is_empty() {
            src.label()
        } else {
            req.source_label.clone()
        };
        let Begun {
            table,
            dataset_id,
            batch_id,
            run_id,
            mut notes,
        } = self
            .begin_sync(
                &req.unit,
                &req.dataset,
                &req.info,
                src.kind.as_str(),
                &label,
                src.mode.as_str(),
            )
            .await?;
        let mut sync = Sync {
            collector: self,
            req: &req,
            run_id,
            dataset_id,
            table: table.clone(),
            batch_id: batch_id.clone(),
            source_name: format!("{}:{}", src.kind.as_str(), src.table),
            counts: RunCounts::default(),
            rejected_sample: Vec::new(),
            quarantined: false,
            non_null: Vec::new(),
            version: None,
            versions: Vec::new(),
            progress,
            notes: Vec::new(),
            inserted: 0,
            updated: 0,
            missing: 0,
        };
        let result = sync.run().await;
        notes.append(&mut sync.notes);
        let columns = match result {
            Ok(c) => c,
            Err(e) => {
                self.fail_run(run_id, sync.counts, sync.version, &e, &label, &notes)
                    .await;
                return Err(e);
            }
        };

        let mut extra = serde_json::Map::new();
        extra.insert("inserted".into(), sync.inserted.into());
        extra.insert("updated".into(), sync.updated.into());
        if sync.missing > 0 {
            extra.insert("missing_rows".into(), sync.missing.into());
        }
        self.complete_run(Completed {
            run_id,
            batch_id,
            dataset_id,
            table,
            mode: src.mode.as_str(),
            kind: src.kind.as_str(),
            source_name: sync.source_name,
            label,
            columns: &columns,
            specs: &req.columns,
            counts: sync.counts,
            non_null: sync.non_null,
            version: sync.version,
            quarantined: sync.quarantined,
            rejected_sample: sync.rejected_sample,
            notes,
            extra,
            profile: req.profile,
            started,
            versions: sync.versions,
        })
        .await
    }
}

/// A sync's run, begun: its table, dataset, ids and the notes so far.
pub(crate) struct Begun {
    pub table: TableRef,
    pub dataset_id: i64,
    pub batch_id: String,
    pub run_id: i64,
    pub notes: Vec<String>,
}

impl Collector {
    /// Registers the unit and dataset, marks runs of dead processes interrupted, and records
    /// the start of a run.
    pub(crate) async fn begin_sync(
        &self,
        unit: &str,
        dataset: &str,
        info: &DatasetInfo,
        system_kind: &str,
        label: &str,
        mode: &str,
    ) -> Result<Begun> {
        let mut notes = Vec::new();
        self.register(unit, dataset, info, system_kind, &mut notes)
            .await?;
        let table = TableRef::new(Layer::Raw, unit, dataset);
        let found = self
            .catalog()
            .dataset(Layer::Raw.as_str(), unit, dataset)
            .await?
            .ok_or_else(|| Error::Invalid(format!("dataset {table} vanished from the catalog")))?;
        for id in self.catalog().interrupt_orphaned_runs(found.id).await? {
            notes.push(format!(
                "run {id} was left running by a process that is gone; marked interrupted \
                 (what it committed stays, and this run resumes after it)"
            ));
        }
        let batch_id = uuid::Uuid::now_v7().to_string();
        let run_id = self
            .catalog()
            .begin_run(&NewRun {
                batch_id: batch_id.clone(),
                dataset_id: found.id,
                source: label.to_string(),
                mode: mode.to_string(),
            })
            .await?;
        Ok(Begun {
            table,
            dataset_id: found.id,
            batch_id,
            run_id,
            notes,
        })
    }

    /// Records a failed sync; what it committed before the failure stays committed and counted.
    pub(crate) async fn fail_run(
        &self,
        run_id: i64,
        counts: RunCounts,
        version: Option<i64>,
        error: &Error,
        label: &str,
        notes: &[String],
    ) {
        let outcome = RunOutcome {
            status: RunStatus::Failed,
            counts,
            table_version: version,
            error: Some(error.to_string()),
            details: serde_json::json!({ "source": label, "notes": notes }),
        };
        if let Err(ce) = self.catalog().finish_run(run_id, &outcome, None).await {
            tracing::error!(run_id, error = %ce, "could not record the failed run");
        }
    }
}

/// What a finished sync hands to [`Collector::complete_run`].
pub(crate) struct Completed<'a> {
    pub run_id: i64,
    pub batch_id: String,
    pub dataset_id: i64,
    pub table: TableRef,
    pub mode: &'static str,
    /// `postgres`, `mysql`, `nats` … (the run's "format").
    pub kind: &'static str,
    pub source_name: String,
    pub label: String,
    pub columns: &'a [SourceColumn],
    pub specs: &'a [ColumnSpec],
    pub counts: RunCounts,
    pub non_null: Vec<u64>,
    pub version: Option<i64>,
    pub quarantined: bool,
    pub rejected_sample: Vec<Rejected>,
    pub notes: Vec<String>,
    /// More facts for the run's details (e.g. rows inserted and updated, lag).
    pub extra: serde_json::Map<String, serde_json::Value>,
    pub profile: bool,
    pub started: Instant,
    /// Every table version the run committed (for the delivery receipt).
    pub versions: Vec<i64>,
}

impl Collector {
    /// Records a successful sync: the dataset's fields, the run's outcome, the profile.
    pub(crate) async fn complete_run(&self, c: Completed<'_>) -> Result<RunReport> {
        let Completed {
            run_id,
            batch_id,
            dataset_id,
            table,
            mode,
            kind,
            source_name,
            label,
            columns,
            specs,
            counts,
            non_null,
            version,
            quarantined,
            rejected_sample,
            notes,
            extra,
            profile,
            started,
            versions,
        } = c;
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
                all_empty: non_null.get(i).copied().unwrap_or(0) == 0 && counts.rows_loaded > 0,
                note: c.note.clone(),
            })
            .collect();
        if let Some(delta) = &delta {
            // The table's columns, described by the source's columns where it has them (a
            // column the source dropped keeps its place).
            let schema = reservoir_lake::arrow_schema_of(delta)?;
            let fields: Vec<Field> = schema
                .fields()
                .iter()
                .filter(|f| !meta::ALL.contains(&f.name().as_str()))
                .enumerate()
                .map(|(i, f)| {
                    let spec = specs.iter().find(|s| &s.name == f.name());
                    let source = columns.iter().find(|c| &c.name == f.name());
                    let description = spec
                        .map(|s| s.description.clone())
                        .filter(|d| !d.is_empty())
                        .or_else(|| source.map(|c| format!("source type: {}", c.source_type)))
                        .unwrap_or_else(|| "no longer in the source".to_string());
                    Field {
                        position: i as i64,
                        name: f.name().clone(),
                        data_type: f.data_type().to_string(),
                        nullable: true,
                        title: spec.map(|s| s.title.clone()).unwrap_or_default(),
                        description,
                        flags: String::new(),
                    }
                })
                .collect();
            self.catalog().set_fields(dataset_id, &fields).await?;
        }
        let file = FileReport {
            path: source_name,
            format: kind,
            ..FileReport::default()
        };
        let mut report = RunReport {
            run_id,
            batch_id,
            table: table.to_string(),
            status: RunStatus::Succeeded,
            mode: mode.to_string(),
            counts,
            table_version: version,
            table_rows,
            quarantine_table: quarantined.then(|| table.in_layer(Layer::Quarantine).to_string()),
            files: vec![file],
            columns: reports,
            rejected_sample,
            notes,
            elapsed_ms: 0,
        };
        let mut details = serde_json::Map::new();
        details.insert("source".into(), label.clone().into());
        details.extend(extra);
        details.insert("columns".into(), serde_json::json!(report.columns));
        details.insert(
            "quarantine_table".into(),
            serde_json::json!(report.quarantine_table),
        );
        details.insert("notes".into(), serde_json::json!(report.notes));
        let outcome = RunOutcome {
            status: RunStatus::Succeeded,
            counts: report.counts,
            table_version: report.table_version,
            error: None,
            details: serde_json::Value::Object(details),
        };
        self.catalog()
            .finish_run(run_id, &outcome, Some(table_rows))
            .await?;
        if profile
            && let Some(delta) = &delta
            && report.counts.rows_loaded > 0
        {
            match reservoir_quality::profile_table(delta, &meta::ALL).await {
                Ok(profiles) => {
                    self.catalog()
                        .record_profiles(run_id, dataset_id, &profiles)
                        .await?
                }
                Err(e) => report.notes.push(format!("profiling failed: {e}")),
            }
        }
        self.seal(&mut report, &label, &versions).await?;
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
    run_id: i64,
    dataset_id: i64,
    table: TableRef,
    batch_id: String,
    /// `_source_file` of loaded rows, e.g. `postgres:public.people`.
    source_name: String,
    counts: RunCounts,
    rejected_sample: Vec<Rejected>,
    quarantined: bool,
    non_null: Vec<u64>,
    version: Option<i64>,
    /// Every table version this run committed to the data table.
    versions: Vec<i64>,
    progress: Arc<dyn Progress>,
    notes: Vec<String>,
    /// Upsert mode: rows new to the table, and rows that replaced an earlier version.
    inserted: u64,
    updated: u64,
    /// Upsert mode with delete detection: source rows the table lacks.
    missing: i64,
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
        let mut columns: Vec<SourceColumn> =
            introspected.iter().map(|c| c.column.clone()).collect();
        check_columns(&src.table, &introspected, src)?;
        let existing = self.collector.lake().arrow_schema(&self.table).await?;
        let plan = drift::plan(existing.as_ref(), &mut columns, src.mode == SyncMode::Full);
        self.record_drift(&plan.drift).await?;
        plan.check(&self.table.to_string())?;
        if plan.rewrite {
            let version = self
                .collector
                .lake()
                .rewrite_as(
                    &self.table,
                    plan.schema.clone(),
                    CommitTags::default()
                        .with_metadata(BATCH_KEY, self.batch_id.clone().into())
                        .with_metadata("reservoir.widened", true.into()),
                )
                .await?;
            self.version = Some(version);
            self.versions.push(version);
        }
        self.non_null = vec![0; columns.len()];
        let select = columns
            .iter()
            .map(|c| conn.text_expr(c))
            .collect::<Vec<_>>()
            .join(", ");
        // Order and compare by the source's columns, qualified: a bare name in ORDER BY would
        // mean the select list's text rendering of the column (`"id"::text` is named `id`), and
        // text order ("10" < "9") is not the column's order.
        let from = format!("{} AS {SRC}", conn.quote_table(&src.table));
        match src.mode {
            SyncMode::Full => {
                let order = if src.key.is_empty() {
                    String::new()
                } else {
                    format!(
                        " ORDER BY {}",
                        src.key
                            .iter()
                            .map(|k| format!("{SRC}.{}", conn.quote(k)))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                let sql = format!("SELECT {select} FROM {from}{order}");
                // A full reload of a table that also syncs by cursor (`reservoir collect --full`)
                // sets the cursor where the source is now, so the next incremental run goes on
                // from there instead of reading again what the reload already has.
                let baseline = match &src.cursor {
                    Some(cursor) if !src.key.is_empty() => {
                        let order_cols: Vec<&SourceColumn> = std::iter::once(cursor.as_str())
                            .chain(src.key.iter().map(String::as_str))
                            .filter_map(|n| columns.iter().find(|c| c.name == n))
                            .collect();
                        let desc = order_cols
                            .iter()
                            .map(|c| format!("{SRC}.{} DESC", conn.quote(&c.name)))
                            .collect::<Vec<_>>()
                            .join(", ");
                        let exprs = order_cols
                            .iter()
                            .map(|c| conn.text_expr(c))
                            .collect::<Vec<_>>()
                            .join(", ");
                        let last_sql =
                            format!("SELECT {exprs} FROM {from} ORDER BY {desc} LIMIT 1");
                        let mut rows = conn.stream(&last_sql, &[], order_cols.len());
                        let last = rows.try_next().await.map_err(|e| self.db_error(e))?;
                        drop(rows);
                        last.and_then(|r| r.into_iter().collect::<Option<Vec<String>>>())
                    }
                    _ => None,
                };
                self.full(conn, &sql, &columns, plan.schema, baseline)
                    .await?;
            }
            SyncMode::Incremental | SyncMode::Upsert => {
                self.incremental(conn, &select, &from, &columns, &plan)
                    .await?;
            }
        }
        Ok(columns)
    }

    async fn record_drift(&mut self, drift: &[drift::Drift]) -> Result<()> {
        if drift.is_empty() {
            return Ok(());
        }
        // A lasting difference (a column still gone, a type still narrower) is an event once,
        // when it first appears, not on every run after.
        let earlier = self
            .collector
            .catalog()
            .drift_events(self.dataset_id)
            .await?;
        let drift: Vec<&drift::Drift> = drift
            .iter()
            .filter(|d| {
                let latest = earlier.iter().find(|e| e.column_name == d.column);
                !latest.is_some_and(|e| {
                    e.change == d.change
                        && e.old_type == d.old_type
                        && e.new_type == d.new_type
                        && !d.action.starts_with("run stopped")
                })
            })
            .collect();
        if drift.is_empty() {
            return Ok(());
        }
        let events: Vec<DriftEvent> = drift
            .iter()
            .map(|d| DriftEvent {
                id: 0,
                dataset_id: self.dataset_id,
                run_id: Some(self.run_id),
                column_name: d.column.clone(),
                change: d.change.to_string(),
                old_type: d.old_type.clone(),
                new_type: d.new_type.clone(),
                action: d.action.clone(),
                at: String::new(),
            })
            .collect();
        self.collector.catalog().record_drift(&events).await?;
        for d in &drift {
            self.notes.push(format!("schema drift: {}", d.describe()));
        }
        Ok(())
    }

    async fn full(
        &mut self,
        conn: &mut Conn,
        sql: &str,
        columns: &[SourceColumn],
        schema: SchemaRef,
        baseline: Option<Vec<String>>,
    ) -> Result<()> {
        let batch_rows = self.req.source.batch_rows;
        let mut write = self
            .collector
            .lake()
            .write(self.table.clone(), schema.clone())
            .with_mode(WriteMode::Overwrite)
            .with_commit_metadata(BATCH_KEY, self.batch_id.clone().into());
        if let Some(cursor) = baseline {
            let app_id = self.app_id();
            let seq = self
                .collector
                .lake()
                .app_version(&self.table, &app_id)
                .await?
                .unwrap_or(0);
            write = write
                .with_app_transaction(&app_id, seq + 1)
                .with_commit_metadata(CURSOR_KEY, serde_json::json!(cursor));
        }
        let mut sink = write.start().await?;
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
        self.versions.push(outcome.version);
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
        plan: &drift::Plan,
    ) -> Result<()> {
        let src = &self.req.source;
        let schema = plan.schema.clone();
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
            .map(|c| format!("{SRC}.{}", conn.quote(&c.name)))
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
        // Upsert with a lookback: a run that resumes starts `lookback` before the committed
        // cursor, so rows committed at the source with a cursor value below it (a long
        // transaction's now()) are still merged. Merging is idempotent: unchanged rows change
        // nothing and a batch of them commits nothing.
        let window_sql = match src.lookback {
            Some(lookback) if src.mode == SyncMode::Upsert => {
                lookback.check(order_cols[0])?;
                Some(format!(
                    "SELECT {select} FROM {from} WHERE {SRC}.{} >= {} ORDER BY {order_by} LIMIT {limit}",
                    conn.quote(&order_cols[0].name),
                    conn.window_start(1, order_cols[0], lookback),
                ))
            }
            Some(_) => {
                return Err(Error::Invalid(
                    "lookback re-reads rows, which incremental mode would append twice; use mode = \"upsert\"".into(),
                ));
            }
            None => None,
        };
        let mut window_rows = 0usize;
        let mut position: Option<Vec<String>> = None;

        let app_id = self.app_id();
        let mut batches = 0usize;
        let mut add_columns = plan.adds_columns;
        // An upsert table mirrors the source: a new column needs its value in every row, so the
        // walk starts over once (merging is idempotent) instead of leaving earlier rows NULL.
        let mut rewalk = src.mode == SyncMode::Upsert && plan.adds_columns;
        if rewalk {
            self.notes.push(
                "a column was added: every row is read again so that the mirror has its values"
                    .into(),
            );
        }
        let reached_end = loop {
            if src.max_batches.is_some_and(|m| batches >= m) {
                self.notes.push(format!(
                    "stopped after {batches} batches (max_batches); the next run continues from the committed cursor"
                ));
                break false;
            }
            // A run starts from what the lake has committed: the commit is the truth. Within
            // the run it goes on after the last row read, which is the committed cursor except
            // after a lookback batch that changed nothing (and so committed nothing).
            let (seq, committed) = self.committed(&app_id, order_cols.len()).await?;
            let cursor = if std::mem::take(&mut rewalk) {
                None
            } else {
                position.clone().or(committed)
            };
            let window = batches == 0 && window_sql.is_some() && cursor.is_some();
            let (sql, params) = match (&cursor, &window_sql) {
                (Some(values), Some(w)) if window => (w.as_str(), vec![values[0].clone()]),
                (Some(values), _) => (next_sql.as_str(), values.clone()),
                (None, _) => (first_sql.as_str(), Vec::new()),
            };
            // Rows are built in the source's column order, then put in the table's.
            let mut builder = BatchBuilder::new(self, columns, raw_schema(columns));
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
                break true;
            };
            let read = builder.len();
            let (batch, rejected) = builder.finish()?;
            let batch = drift::conform(batch, &schema)?;
            let stats = std::mem::take(&mut builder.stats);
            let tags = CommitTags::default()
                .with_app_transaction(&app_id, seq + 1)
                .with_metadata(CURSOR_KEY, serde_json::json!(last))
                .with_metadata(BATCH_KEY, self.batch_id.clone().into());
            if let Some(version) = self
                .commit_batch(batch, schema.clone(), add_columns, tags)
                .await?
            {
                add_columns = false;
                self.version = Some(version);
                self.versions.push(version);
            }
            if window {
                window_rows = read;
            }
            position = Some(last);
            self.account(&stats, &rejected);
            self.quarantine(rejected).await?;
            self.progress.advanced(0, self.counts.rows_read as u64);
            batches += 1;
            if read < limit {
                break true;
            }
        };
        if window_rows > 0 {
            self.notes.push(format!(
                "lookback: the first batch started {} before the committed cursor ({window_rows} rows read again; only changed rows are merged)",
                src.lookback.map(|l| l.to_string()).unwrap_or_default()
            ));
        }
        if self.version.is_none() {
            self.notes
                .push("no new or changed rows since the last committed cursor".to_string());
        }
        if src.detect_deletes {
            if reached_end {
                self.detect_deletes(conn, from, columns, &schema, &app_id, order_cols.len())
                    .await?;
            } else {
                self.notes.push(
                    "deletes not checked: the run stopped before the end of the source".into(),
                );
            }
        }
        Ok(())
    }

    /// The transaction version and cursor of the last batch committed for this source.
    async fn committed(&self, app_id: &str, width: usize) -> Result<(i64, Option<Vec<String>>)> {
        let committed = self
            .collector
            .lake()
            .app_commit(&self.table, app_id)
            .await?;
        Ok(match &committed {
            Some(c) => (c.version, cursor_of(&c.metadata, width)?),
            None => (0, None),
        })
    }

    /// Writes one batch in one commit: appended (incremental mode, or the first batch of a new
    /// table) or merged by key (upsert mode).
    async fn commit_batch(
        &mut self,
        batch: RecordBatch,
        schema: SchemaRef,
        add_columns: bool,
        tags: CommitTags,
    ) -> Result<Option<i64>> {
        let lake = self.collector.lake();
        let exists = lake.open(&self.table).await?.is_some();
        if self.req.source.mode == SyncMode::Upsert && exists {
            let outcome = lake
                .merge_batch(&self.table, batch, &self.req.source.key, add_columns, tags)
                .await?;
            self.inserted += outcome.inserted;
            self.updated += outcome.updated;
            return Ok(outcome.committed.then_some(outcome.version));
        }
        let rows = batch.num_rows() as u64;
        let mut write = lake.write(self.table.clone(), schema).with_tags(tags);
        if add_columns {
            write = write.with_new_columns();
        }
        let mut sink = write.start().await?;
        if rows > 0 {
            sink.send(batch).await?;
        }
        let outcome = sink.finish().await?;
        self.inserted += rows;
        Ok(Some(outcome.version))
    }

    /// Deletes the table's rows whose key the source no longer has, in one commit that carries
    /// the next transaction version and the same cursor.
    async fn detect_deletes(
        &mut self,
        conn: &mut Conn,
        from: &str,
        columns: &[SourceColumn],
        schema: &SchemaRef,
        app_id: &str,
        width: usize,
    ) -> Result<()> {
        let src = &self.req.source;
        if self.collector.lake().open(&self.table).await?.is_none() {
            return Ok(());
        }
        let key_cols: Vec<&SourceColumn> = src
            .key
            .iter()
            .map(|k| {
                columns
                    .iter()
                    .find(|c| &c.name == k)
                    .ok_or_else(|| Error::Invalid(format!("no key column {k:?}")))
            })
            .collect::<Result<_>>()?;
        let select = key_cols
            .iter()
            .map(|c| conn.text_expr(c))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("SELECT {select} FROM {from}");
        let mut builders: Vec<ColumnBuilder> = key_cols
            .iter()
            .map(|c| {
                let load = schema
                    .field_with_name(&c.name)
                    .ok()
                    .and_then(|f| drift::load_type_of(f.data_type()))
                    .unwrap_or(c.load);
                ColumnBuilder::new(load, 1024)
            })
            .collect();
        let mut present = 0u64;
        {
            let mut rows = conn.stream(&sql, &[], key_cols.len());
            while let Some(row) = rows.try_next().await.map_err(|e| self.db_error(e))? {
                for (b, v) in builders.iter_mut().zip(&row) {
                    if let Err(reason) = b.append(v.as_deref()) {
                        return Err(Error::Invalid(format!(
                            "delete detection: a key value {v:?} of {} cannot be read: {reason}",
                            src.table
                        )));
                    }
                }
                present += 1;
            }
        }
        let arrays: Vec<ArrayRef> = builders
            .iter_mut()
            .map(|b| b.finish().map_err(Error::from))
            .collect::<Result<_>>()?;
        let key_schema = Arc::new(Schema::new(
            key_cols
                .iter()
                .zip(&arrays)
                .map(|(c, a)| ArrowField::new(&c.name, a.data_type().clone(), true))
                .collect::<Vec<_>>(),
        ));
        let keys = RecordBatch::try_new(key_schema, arrays)?;
        let (seq, cursor) = self.committed(app_id, width).await?;
        let mut tags = CommitTags::default()
            .with_app_transaction(app_id, seq + 1)
            .with_metadata(BATCH_KEY, self.batch_id.clone().into())
            .with_metadata("reservoir.deleted_keys_checked", present.into());
        if let Some(c) = cursor {
            tags = tags.with_metadata(CURSOR_KEY, serde_json::json!(c));
        }
        match self
            .collector
            .lake()
            .delete_missing(&self.table, keys, &src.key, tags)
            .await?
        {
            Some(outcome) => {
                self.counts.rows_deleted += outcome.deleted as i64;
                self.version = Some(outcome.version);
                self.versions.push(outcome.version);
                self.notes.push(format!(
                    "{} rows deleted: their keys are no longer in the source ({present} keys checked)",
                    outcome.deleted
                ));
            }
            None => self
                .notes
                .push(format!("no deleted rows ({present} source keys checked)")),
        }
        if src.mode == SyncMode::Upsert
            && let Some(delta) = self.collector.lake().open(&self.table).await?
        {
            // The mirror has one row per key: fewer rows than source keys means rows the cursor
            // walk passed by (changed with a cursor value below one already committed).
            let rows = reservoir_lake::row_count_of(&delta)?;
            let missing = present as i64 - rows;
            if missing > 0 {
                self.notes.push(format!(
                    "warning: {missing} rows of the source are not in the table: their cursor \
                     value is below the committed cursor (a back-dated change, e.g. a long \
                     transaction's now()); a full sync reloads them"
                ));
                self.missing = missing;
            }
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
        account(
            &mut self.counts,
            &mut self.non_null,
            &mut self.rejected_sample,
            stats,
            rejected,
        );
    }

    async fn quarantine(&mut self, rejected: Vec<Rejected>) -> Result<()> {
        if write_quarantine(
            self.collector.lake(),
            &self.table,
            &self.batch_id,
            &rejected,
        )
        .await?
        {
            self.quarantined = true;
        }
        Ok(())
    }
}

/// Adds a batch's numbers to a run's.
pub(crate) fn account(
    counts: &mut RunCounts,
    non_null: &mut Vec<u64>,
    sample: &mut Vec<Rejected>,
    stats: &BatchStats,
    rejected: &[Rejected],
) {
    counts.rows_read += stats.read as i64;
    counts.rows_loaded += (stats.read - rejected.len()) as i64;
    counts.rows_quarantined += rejected.len() as i64;
    counts.rows_flagged += stats.flagged as i64;
    if non_null.len() < stats.non_null.len() {
        non_null.resize(stats.non_null.len(), 0);
    }
    for (n, add) in non_null.iter_mut().zip(&stats.non_null) {
        *n += add;
    }
    for r in rejected {
        if sample.len() < REJECTED_SAMPLE {
            sample.push(r.clone());
        }
    }
}

/// Appends rows that could not load to the table's quarantine table, with their raw text and
/// reason. Returns whether there were any.
pub(crate) async fn write_quarantine(
    lake: &reservoir_lake::Lake,
    table: &TableRef,
    batch_id: &str,
    rejected: &[Rejected],
) -> Result<bool> {
    if rejected.is_empty() {
        return Ok(false);
    }
    let now = Utc::now().timestamp_micros();
    let n = rejected.len();
    let mut file = StringBuilder::new();
    let mut line = Int64Builder::new();
    let mut raw = StringBuilder::new();
    let mut reason = StringBuilder::new();
    let mut batch_col = StringBuilder::new();
    for r in rejected {
        batch_col.append_value(batch_id);
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
    let mut sink = lake
        .write(table.in_layer(Layer::Quarantine), schema)
        .start()
        .await?;
    sink.send(batch).await?;
    sink.finish().await?;
    Ok(true)
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
    if src.mode.is_incremental() {
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
                     reached by the cursor walk. Declare it NOT NULL, or use a full sync"
                )));
            }
        }
    }
    Ok(())
}

/// Whether a column is one the lake adds to every raw table.
pub(crate) fn is_meta_column(name: &str) -> bool {
    meta::ALL.contains(&name)
}

pub(crate) fn raw_schema(columns: &[SourceColumn]) -> SchemaRef {
    let mut fields: Vec<ArrowField> = columns
        .iter()
        .map(|c| ArrowField::new(&c.name, c.load.arrow(), true))
        .collect();
    fields.extend(meta_fields());
    Arc::new(Schema::new(fields))
}

#[derive(Default)]
pub(crate) struct BatchStats {
    read: usize,
    flagged: usize,
    non_null: Vec<u64>,
}

/// Builds record batches from text rows, setting aside rows with values that cannot load.
pub(crate) struct BatchBuilder<'c> {
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
    pub(crate) stats: BatchStats,
}

impl<'c> BatchBuilder<'c> {
    fn new(sync: &Sync<'_>, columns: &'c [SourceColumn], schema: SchemaRef) -> Self {
        Self::with(
            &sync.batch_id,
            &sync.source_name,
            sync.counts.rows_read + 1,
            columns,
            schema,
        )
    }

    /// A builder of rows with `columns` (in this order) into batches of `schema` (the columns
    /// and then the metadata columns); `first_row` is the `_source_row` of the first row.
    pub(crate) fn with(
        batch_id: &str,
        source_name: &str,
        first_row: i64,
        columns: &'c [SourceColumn],
        schema: SchemaRef,
    ) -> Self {
        Self {
            columns,
            schema,
            builders: Self::fresh(columns),
            keep: Vec::new(),
            flags: Vec::new(),
            rows: Vec::new(),
            rejected: Vec::new(),
            batch_id: batch_id.to_string(),
            ingested_at: Utc::now().timestamp_micros(),
            source_name: source_name.to_string(),
            next_row: first_row,
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

    pub(crate) fn len(&self) -> usize {
        self.keep.len()
    }

    /// Sets the `_source_row` of the next row (e.g. a message's stream sequence).
    pub(crate) fn set_next_row(&mut self, row: i64) {
        self.next_row = row;
    }

    /// Sets a row aside without parsing it (e.g. a message that is not a JSON object).
    pub(crate) fn reject(&mut self, raw: String, reason: String) {
        let line = self.next_row;
        self.next_row += 1;
        self.stats.read += 1;
        self.rejected.push(Rejected {
            source_file: self.source_name.clone(),
            line,
            raw,
            reason,
        });
    }

    pub(crate) fn push(&mut self, row: TextRow) {
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
    pub(crate) fn finish(&mut self) -> Result<(RecordBatch, Vec<Rejected>)> {
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
            detect_deletes: false,
            lookback: None,
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
