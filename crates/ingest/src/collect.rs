//! The collection run: files → typed record batches → one Delta commit, every row accounted for.
//!
//! ```text
//!  file ─► reader (decode, split, header) ─► sample ─► infer ─► plan
//!                                  │                             │
//!                                  └──────── chunks ─► convert ──┼─► raw table sink ─┐
//!                                                                └─► quarantine sink ─┤ commit
//!  catalog: run begun ─────────────────────────────────────────────────► run finished ◄┘
//! ```
//!
//! Reading and converting run on a blocking thread; Parquet encoding runs on the async runtime,
//! fed through bounded channels, so memory stays bounded whatever the file size. Nothing is
//! visible until the commits at the end: first the quarantine table (so rejected rows can never
//! vanish), then the raw table.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Instant;

use chrono::{DateTime, Utc};
use reservoir_catalog::{
    Catalog, DatasetSpec, Field, NewRun, NewUnit, OpenTier, RunCounts, RunOutcome, RunStatus,
    System, UpdateFrequency,
};
use reservoir_lake::{BatchSink, Lake, Layer, TableRef, WriteMode, meta};
use serde::Serialize;
use tokio::runtime::Handle;

use crate::convert::{
    ColumnPlan, Converter, Rejected, TypeOrigin, quarantine_batch, quarantine_schema,
};
use crate::csv::{CsvOptions, CsvReader};
use crate::excel::{ExcelOptions, ExcelReader};
use crate::infer::Inference;
use crate::json::JsonReader;
use crate::reader::{Chunk, FileReport, Format, RowReader};
use crate::value::ColumnType;
use crate::{Error, Result};

/// A column's declared type and business description.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ColumnSpec {
    pub name: String,
    pub ty: Option<ColumnType>,
    pub title: String,
    pub description: String,
}

/// Catalog facts to record with the dataset; `None` keeps what the catalog has.
#[derive(Debug, Clone, Default)]
pub struct DatasetInfo {
    pub unit_name: Option<String>,
    pub system: Option<String>,
    pub system_name: Option<String>,
    pub title: Option<String>,
    pub description: Option<String>,
    pub update_frequency: Option<UpdateFrequency>,
    pub sensitivity: Option<i64>,
    pub open_tier: Option<OpenTier>,
}

/// What to collect and how.
#[derive(Debug, Clone)]
pub struct CollectRequest {
    pub unit: String,
    pub dataset: String,
    pub files: Vec<PathBuf>,
    /// Names recorded in `_source_file` (defaults to the files' names).
    pub source_names: Option<Vec<String>>,
    pub mode: WriteMode,
    pub format: Option<Format>,
    pub csv: CsvOptions,
    pub excel: ExcelOptions,
    pub columns: Vec<ColumnSpec>,
    pub info: DatasetInfo,
    /// Rows sampled for type inference.
    pub infer_rows: usize,
    /// Rows per record batch.
    pub batch_rows: usize,
    /// How the run's source is described in the catalog.
    pub source_label: String,
    /// Profile the table after loading.
    pub profile: bool,
    /// What kind of system the unit's source is (`file`, `api` …), recorded in the catalog.
    pub system_kind: String,
    /// An application transaction to commit with the data (app id, version), so that a
    /// delivery can be recognized in the lake as already loaded (drop folders).
    pub app_transaction: Option<(String, i64)>,
}

impl Default for CollectRequest {
    fn default() -> Self {
        Self {
            unit: String::new(),
            dataset: String::new(),
            files: Vec::new(),
            source_names: None,
            mode: WriteMode::Append,
            format: None,
            csv: CsvOptions::default(),
            excel: ExcelOptions::default(),
            columns: Vec::new(),
            info: DatasetInfo::default(),
            infer_rows: 10_000,
            batch_rows: 32_768,
            source_label: String::new(),
            profile: true,
            system_kind: "file".into(),
            app_transaction: None,
        }
    }
}

/// Receives progress of a run (a terminal progress bar, a log …).
pub trait Progress: Send + Sync {
    fn file_started(&self, _path: &Path, _bytes: u64) {}
    /// `bytes_done` counts bytes of the current file; `rows` rows of the whole run.
    fn advanced(&self, _bytes_done: u64, _rows: u64) {}
    fn file_finished(&self) {}
}

/// Progress that goes nowhere.
pub struct NoProgress;
impl Progress for NoProgress {}

/// One output column as loaded.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ColumnReport {
    pub name: String,
    /// The lake type: `utf8`, `int64`, … for files; for databases also `decimal(p,s)`,
    /// `timestamp_utc` and `binary`.
    #[serde(rename = "type")]
    pub ty: String,
    pub origin: TypeOrigin,
    /// No loaded row has a value in this column.
    pub all_empty: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The summary of a run, as printed and as recorded in the catalog.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RunReport {
    pub run_id: i64,
    pub batch_id: String,
    pub table: String,
    pub status: RunStatus,
    pub mode: String,
    #[serde(flatten)]
    pub counts: RunCounts,
    pub table_version: Option<i64>,
    /// Rows in the table after the run.
    pub table_rows: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantine_table: Option<String>,
    pub files: Vec<FileReport>,
    pub columns: Vec<ColumnReport>,
    /// The first rejected rows, for a quick look; all of them are in the quarantine table.
    pub rejected_sample: Vec<Rejected>,
    pub notes: Vec<String>,
    pub elapsed_ms: u64,
}

const REJECTED_SAMPLE: usize = 20;
const QUARANTINE_FLUSH: usize = 4096;

/// Runs collections against one lake and catalog.
#[derive(Clone)]
pub struct Collector {
    lake: Lake,
    catalog: Catalog,
    key: Option<Arc<crate::receipt::PlatformKey>>,
}

impl Collector {
    pub fn new(lake: Lake, catalog: Catalog) -> Self {
        Self {
            lake,
            catalog,
            key: None,
        }
    }

    /// Signs a delivery receipt for every run that commits rows, with the platform key.
    pub fn with_platform_key(mut self, key: Arc<crate::receipt::PlatformKey>) -> Self {
        self.key = Some(key);
        self
    }

    /// Issues, stores and notes the signed receipt of a run that committed `versions`.
    pub(crate) async fn seal(
        &self,
        report: &mut RunReport,
        source: &str,
        versions: &[i64],
    ) -> Result<()> {
        let Some(key) = &self.key else {
            return Ok(());
        };
        if versions.is_empty() {
            return Ok(());
        }
        let table = report
            .table
            .parse::<TableRefText>()
            .map_err(Error::Invalid)?
            .0;
        let receipt = crate::receipt::issue(
            &self.lake,
            key,
            crate::receipt::Delivery {
                table: &table,
                run_id: report.run_id,
                batch_id: &report.batch_id,
                source,
                mode: &report.mode,
                counts: report.counts,
                versions,
            },
        )
        .await?;
        let text = serde_json::to_string_pretty(&receipt)
            .map_err(|e| Error::Invalid(format!("cannot encode the receipt: {e}")))?;
        self.catalog
            .record_receipt(report.run_id, &receipt.body.data_sha256, &text)
            .await?;
        report.notes.push(format!(
            "delivery receipt signed: data sha256 {} (`reservoir receipt show {}`)",
            receipt.body.data_sha256, report.run_id
        ));
        Ok(())
    }

    pub(crate) fn lake(&self) -> &Lake {
        &self.lake
    }

    pub(crate) fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Collects the request's files into `raw.<unit>.<dataset>` and records the run.
    ///
    /// A run that fails is recorded as failed with its error, and nothing of it is visible in
    /// the lake.
    pub async fn collect(
        &self,
        req: CollectRequest,
        progress: Arc<dyn Progress>,
    ) -> Result<RunReport> {
        let started = Instant::now();
        if req.files.is_empty() {
            return Err(Error::Invalid("no input files given".into()));
        }
        if req.batch_rows == 0 || req.infer_rows == 0 {
            return Err(Error::Invalid(
                "batch and inference sizes must be positive".into(),
            ));
        }
        let mut notes = Vec::new();
        self.register(
            &req.unit,
            &req.dataset,
            &req.info,
            &req.system_kind,
            &mut notes,
        )
        .await?;
        let table = TableRef::new(Layer::Raw, &req.unit, &req.dataset);
        let dataset = self
            .catalog
            .dataset(Layer::Raw.as_str(), &req.unit, &req.dataset)
            .await?
            .ok_or_else(|| Error::Invalid(format!("dataset {table} vanished from the catalog")))?;
        for id in self.catalog.interrupt_orphaned_runs(dataset.id).await? {
            notes.push(format!(
                "run {id} was left running by a process that is gone; marked interrupted \
                 (it committed nothing: a file load is one commit)"
            ));
        }

        let batch_id = uuid::Uuid::now_v7().to_string();
        let run_id = self
            .catalog
            .begin_run(&NewRun {
                batch_id: batch_id.clone(),
                dataset_id: dataset.id,
                source: if req.source_label.is_empty() {
                    describe_files(&req.files)
                } else {
                    req.source_label.clone()
                },
                mode: req.mode.to_string(),
            })
            .await?;

        let existing = match req.mode {
            WriteMode::Append => self.lake.arrow_schema(&table).await?,
            WriteMode::Overwrite => None,
        };
        let loader = Loader {
            lake: self.lake.clone(),
            table: table.clone(),
            req: req.clone(),
            batch_id: batch_id.clone(),
            ingested_at: Utc::now(),
            existing,
            progress,
            handle: Handle::current(),
        };
        let loaded = tokio::task::spawn_blocking(move || loader.run())
            .await
            .map_err(|e| Error::Task(e.to_string()))
            .and_then(|r| r);

        let loaded = match loaded {
            Ok(l) => l,
            Err(e) => {
                let outcome = RunOutcome {
                    status: RunStatus::Failed,
                    counts: RunCounts::default(),
                    table_version: None,
                    error: Some(e.to_string()),
                    details: serde_json::json!({ "files": describe_files(&req.files) }),
                };
                if let Err(ce) = self.catalog.finish_run(run_id, &outcome, None).await {
                    tracing::error!(run_id, error = %ce, "could not record the failed run");
                }
                return Err(e);
            }
        };

        let delta = self.lake.open_existing(&table).await?;
        let table_rows = reservoir_lake::row_count_of(&delta)?;
        let columns: Vec<ColumnReport> = loaded
            .plan
            .iter()
            .zip(&loaded.non_null)
            .map(|(p, nn)| ColumnReport {
                name: p.name.clone(),
                ty: p.ty.to_string(),
                origin: p.origin,
                all_empty: *nn == 0,
                note: loaded.notes.get(&p.name).cloned(),
            })
            .collect();
        let fields: Vec<Field> = columns
            .iter()
            .zip(&loaded.plan)
            .enumerate()
            .map(|(i, (c, p))| {
                let spec = req.columns.iter().find(|s| s.name == c.name);
                Field {
                    position: i as i64,
                    name: c.name.clone(),
                    data_type: p.ty.arrow().to_string(),
                    nullable: true,
                    title: spec.map(|s| s.title.clone()).unwrap_or_default(),
                    description: spec.map(|s| s.description.clone()).unwrap_or_default(),
                    flags: if c.all_empty {
                        "all_empty".into()
                    } else {
                        String::new()
                    },
                }
            })
            .collect();
        self.catalog.set_fields(dataset.id, &fields).await?;

        let report = RunReport {
            run_id,
            batch_id,
            table: table.to_string(),
            status: RunStatus::Succeeded,
            mode: req.mode.to_string(),
            counts: loaded.counts,
            table_version: Some(loaded.version),
            table_rows,
            quarantine_table: loaded
                .quarantine_version
                .map(|_| table.in_layer(Layer::Quarantine).to_string()),
            files: loaded.files,
            columns,
            rejected_sample: loaded.rejected_sample,
            notes,
            elapsed_ms: started.elapsed().as_millis() as u64,
        };
        let outcome = RunOutcome {
            status: RunStatus::Succeeded,
            counts: report.counts,
            table_version: report.table_version,
            error: None,
            details: serde_json::json!({
                "files": report.files,
                "columns": report.columns,
                "quarantine_table": report.quarantine_table,
                "quarantine_version": loaded.quarantine_version,
            }),
        };
        self.catalog
            .finish_run(run_id, &outcome, Some(table_rows))
            .await?;

        let mut report = report;
        if req.profile {
            match reservoir_quality::profile_table(&delta, &meta::ALL).await {
                Ok(profiles) => {
                    self.catalog
                        .record_profiles(run_id, dataset.id, &profiles)
                        .await?
                }
                Err(e) => {
                    tracing::warn!(table = %table, error = %e, "profiling failed");
                    report.notes.push(format!("profiling failed: {e}"));
                }
            }
        }
        if let Some(v) = report.table_version {
            let source = report
                .files
                .iter()
                .map(|f| f.path.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            self.seal(&mut report, &source, &[v]).await?;
        }
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        Ok(report)
    }

    /// Makes sure the unit, system and dataset are in the catalog, applying the request's facts.
    pub(crate) async fn register(
        &self,
        unit: &str,
        dataset: &str,
        info: &DatasetInfo,
        system_kind: &str,
        notes: &mut Vec<String>,
    ) -> Result<()> {
        match self.catalog.unit(unit).await? {
            Some(u) => {
                if let Some(name) = &info.unit_name
                    && *name != u.name
                {
                    self.catalog
                        .upsert_unit(&NewUnit {
                            id: u.id.clone(),
                            name: name.clone(),
                            parent_id: u.parent_id.clone(),
                            description: u.description.clone(),
                            contact: u.contact.clone(),
                        })
                        .await?;
                }
            }
            None => {
                self.catalog
                    .upsert_unit(&NewUnit {
                        id: unit.to_string(),
                        name: info.unit_name.clone().unwrap_or_else(|| unit.to_string()),
                        ..NewUnit::default()
                    })
                    .await?;
                notes.push(format!(
                    "unit {:?} was not in the catalog and has been registered",
                    unit
                ));
            }
        }
        if let Some(system) = &info.system {
            self.catalog
                .upsert_system(&System {
                    unit_id: unit.to_string(),
                    id: system.clone(),
                    name: info.system_name.clone().unwrap_or_else(|| system.clone()),
                    kind: system_kind.into(),
                    description: String::new(),
                })
                .await?;
        }
        let existing = self
            .catalog
            .dataset(Layer::Raw.as_str(), unit, dataset)
            .await?;
        if existing.is_none() {
            notes.push(format!(
                "dataset {:?} was not in the catalog and has been registered",
                dataset
            ));
        }
        let e = existing.as_ref();
        let spec = DatasetSpec {
            layer: Layer::Raw.as_str().into(),
            unit_id: unit.to_string(),
            name: dataset.to_string(),
            title: info
                .title
                .clone()
                .or_else(|| e.map(|d| d.title.clone()))
                .unwrap_or_else(|| dataset.to_string()),
            description: info
                .description
                .clone()
                .or_else(|| e.map(|d| d.description.clone()))
                .unwrap_or_default(),
            system_id: info
                .system
                .clone()
                .or_else(|| e.and_then(|d| d.system_id.clone())),
            location: TableRef::new(Layer::Raw, unit, dataset).location(),
            update_frequency: info
                .update_frequency
                .or_else(|| e.map(|d| d.update_frequency))
                .unwrap_or_default(),
            sensitivity: info
                .sensitivity
                .or_else(|| e.map(|d| d.sensitivity))
                .unwrap_or(2),
            open_tier: info
                .open_tier
                .or_else(|| e.map(|d| d.open_tier))
                .unwrap_or_default(),
        };
        self.catalog.upsert_dataset(&spec).await?;
        Ok(())
    }
}

fn describe_files(files: &[PathBuf]) -> String {
    let names: Vec<String> = files
        .iter()
        .map(|f| {
            f.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| f.display().to_string())
        })
        .collect();
    format!("files: {}", names.join(", "))
}

/// What a successful load produced.
struct Loaded {
    counts: RunCounts,
    version: i64,
    quarantine_version: Option<i64>,
    files: Vec<FileReport>,
    plan: Vec<ColumnPlan>,
    non_null: Vec<u64>,
    notes: std::collections::HashMap<String, String>,
    rejected_sample: Vec<Rejected>,
}

/// The blocking half of a run.
struct Loader {
    lake: Lake,
    table: TableRef,
    req: CollectRequest,
    batch_id: String,
    ingested_at: DateTime<Utc>,
    existing: Option<arrow::datatypes::SchemaRef>,
    progress: Arc<dyn Progress>,
    handle: Handle,
}

struct Sinks {
    data: Option<BatchSink>,
    quarantine: Option<BatchSink>,
}

/// Chunks read but not yet committed, at most.
const IN_FLIGHT: usize = 8;

/// Threads converting chunks: one per core, at most 8.
fn conversion_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// A chunk to convert, numbered in source order.
struct Job {
    seq: u64,
    chunk: Box<dyn Chunk>,
    mapping: Arc<[Option<usize>]>,
    source: Arc<str>,
}

/// A converted chunk.
struct Done {
    seq: u64,
    rows: usize,
    converted: Result<crate::convert::Converted>,
}

/// The reader's end of the pipeline.
struct Dispatch {
    jobs: mpsc::SyncSender<Job>,
    slots: mpsc::SyncSender<()>,
    seq: u64,
    /// Rows handed out so far.
    rows: u64,
}

impl Dispatch {
    fn send(
        &mut self,
        chunk: Box<dyn Chunk>,
        mapping: &Arc<[Option<usize>]>,
        source: &Arc<str>,
    ) -> Result<()> {
        let stopped = || Error::Task("the commit side stopped".into());
        // Blocks while IN_FLIGHT chunks are uncommitted; fails once the committer is gone.
        self.slots.send(()).map_err(|_| stopped())?;
        let rows = chunk.len() as u64;
        self.jobs
            .send(Job {
                seq: self.seq,
                chunk,
                mapping: mapping.clone(),
                source: source.clone(),
            })
            .map_err(|_| stopped())?;
        self.seq += 1;
        self.rows += rows;
        Ok(())
    }
}

/// What the committer counted.
struct Tally {
    counts: RunCounts,
    non_null: Vec<u64>,
    rejected_sample: Vec<Rejected>,
}

impl Loader {
    fn run(self) -> Result<Loaded> {
        let mut sinks = Sinks {
            data: None,
            quarantine: None,
        };
        match self.load(&mut sinks) {
            Ok(l) => Ok(l),
            Err(e) => {
                let reason = e.to_string();
                if let Some(s) = sinks.quarantine.take() {
                    self.handle.block_on(s.abort(reason.clone()));
                }
                if let Some(s) = sinks.data.take() {
                    self.handle.block_on(s.abort(reason));
                }
                Err(e)
            }
        }
    }

    fn open_reader(&self, path: &Path) -> Result<Box<dyn RowReader>> {
        let format = match self.req.format {
            Some(f) => f,
            None => Format::from_path(path)?,
        };
        Ok(match format {
            Format::Csv => Box::new(CsvReader::open(path, &self.req.csv, false)?),
            Format::Tsv => {
                let mut o = self.req.csv.clone();
                o.delimiter = o.delimiter.or(Some(b'\t'));
                Box::new(CsvReader::open(path, &o, true)?)
            }
            Format::Xlsx | Format::Xls => Box::new(ExcelReader::open(path, &self.req.excel)?),
            Format::Json => Box::new(JsonReader::open(path, false, self.req.infer_rows)?),
            Format::Ndjson => Box::new(JsonReader::open(path, true, self.req.infer_rows)?),
        })
    }

    /// Reads the files on this thread, converts chunks on `conversion_threads()` workers and
    /// commits them in source order on one more thread.
    ///
    /// ```text
    ///  reader (this thread) ──jobs──► workers: convert ──done──► committer: reorder, count,
    ///        ▲                                                  send to the sinks
    ///        └──────────────── a slot per chunk in flight ◄────────┘
    /// ```
    ///
    /// A chunk holds a slot from being read until it is committed, so at most `IN_FLIGHT`
    /// chunks are in memory whatever the file size or the order workers finish in.
    fn load(&self, sinks: &mut Sinks) -> Result<Loaded> {
        let first = self
            .req
            .files
            .first()
            .ok_or_else(|| Error::Invalid("no input files given".into()))?;
        self.progress.file_started(first, file_size(first));
        let mut reader = self.open_reader(first)?;

        // The first file fixes the plan, from a sample of its rows.
        let mut buffered: Vec<Box<dyn Chunk>> = Vec::new();
        let mut inference = Inference::new(reader.columns());
        while (inference.rows() as usize) < self.req.infer_rows {
            match reader.next_chunk(self.req.batch_rows.min(self.req.infer_rows))? {
                Some(c) => {
                    inference.observe(c.as_ref());
                    buffered.push(c);
                }
                None => break,
            }
        }
        let inferred = inference.finish();
        let notes: std::collections::HashMap<String, String> = inferred
            .iter()
            .filter_map(|i| i.note.clone().map(|n| (i.name.clone(), n)))
            .collect();
        let plan = self.plan(reader.columns(), &inferred, first)?;
        let conv = Converter::new(plan, &self.batch_id, self.ingested_at, self.req.infer_rows);
        let mut write = self
            .lake
            .write(self.table.clone(), conv.schema().clone())
            .with_mode(self.req.mode)
            .with_commit_metadata("reservoir.batch", serde_json::json!(self.batch_id));
        if let Some((app_id, version)) = &self.req.app_transaction {
            write = write.with_app_transaction(app_id, *version);
        }
        sinks.data = Some(self.handle.block_on(write.start())?);

        let workers = conversion_threads();
        let (job_tx, job_rx) = mpsc::sync_channel::<Job>(IN_FLIGHT);
        let job_rx = Mutex::new(job_rx);
        let commit_sinks = &mut *sinks;
        let (read, committed) = std::thread::scope(|s| {
            let (done_tx, done_rx) = mpsc::sync_channel::<Done>(IN_FLIGHT);
            let (slot_tx, slot_rx) = mpsc::sync_channel::<()>(IN_FLIGHT);
            for _ in 0..workers {
                let (done_tx, job_rx, conv) = (done_tx.clone(), &job_rx, &conv);
                s.spawn(move || {
                    loop {
                        let job = match job_rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        let done = Done {
                            seq: job.seq,
                            rows: job.chunk.len(),
                            converted: conv.convert(job.chunk.as_ref(), &job.mapping, &job.source),
                        };
                        if done_tx.send(done).is_err() {
                            return;
                        }
                    }
                });
            }
            drop(done_tx);
            let plan_len = conv.plan().len();
            let committer = s.spawn(move || self.commit(commit_sinks, done_rx, slot_rx, plan_len));
            let dispatch = Dispatch {
                jobs: job_tx,
                slots: slot_tx,
                seq: 0,
                rows: 0,
            };
            let read = self.read_all(reader, buffered, conv.plan(), dispatch);
            let committed = committer
                .join()
                .unwrap_or_else(|_| Err(Error::Task("the commit thread panicked".into())));
            (read, committed)
        });
        // The committer's error is the cause when the reader only saw it stop.
        let tally = committed?;
        let (files, lines_skipped, bytes_read) = read?;
        let mut counts = tally.counts;
        counts.lines_skipped = lines_skipped;
        counts.bytes_read = bytes_read;
        debug_assert!(counts.balanced());

        let quarantine_version = match sinks.quarantine.take() {
            Some(s) => Some(self.handle.block_on(s.finish())?.version),
            None => None,
        };
        let data = sinks
            .data
            .take()
            .ok_or_else(|| Error::Task("data sink missing".into()))?;
        let outcome = self.handle.block_on(data.finish())?;
        Ok(Loaded {
            counts,
            version: outcome.version,
            quarantine_version,
            files,
            plan: conv.plan().to_vec(),
            non_null: tally.non_null,
            notes,
            rejected_sample: tally.rejected_sample,
        })
    }

    /// Reads every file and hands its chunks to the workers; returns the file reports, the
    /// lines skipped and the bytes read.
    fn read_all(
        &self,
        first: Box<dyn RowReader>,
        buffered: Vec<Box<dyn Chunk>>,
        plan: &[ColumnPlan],
        mut dispatch: Dispatch,
    ) -> Result<(Vec<FileReport>, i64, i64)> {
        let mut files = Vec::with_capacity(self.req.files.len());
        let (mut lines_skipped, mut bytes_read) = (0i64, 0i64);
        let mut opened = Some((first, buffered));
        for (file_idx, path) in self.req.files.iter().enumerate() {
            let (mut reader, buffered) = match opened.take() {
                Some(o) => o,
                None => {
                    self.progress.file_started(path, file_size(path));
                    (self.open_reader(path)?, Vec::new())
                }
            };
            let source: Arc<str> = self
                .req
                .source_names
                .as_ref()
                .and_then(|n| n.get(file_idx).cloned())
                .unwrap_or_else(|| {
                    path.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_else(|| path.display().to_string())
                })
                .into();
            let mapping: Arc<[Option<usize>]> = self.mapping(plan, reader.columns(), path)?.into();
            let mut buffered = buffered.into_iter();
            loop {
                let chunk = match buffered.next() {
                    Some(c) => c,
                    None => match reader.next_chunk(self.req.batch_rows)? {
                        Some(c) => c,
                        None => break,
                    },
                };
                dispatch.send(chunk, &mapping, &source)?;
                self.progress.advanced(reader.bytes_read(), dispatch.rows);
            }
            let report = reader.report();
            lines_skipped += report.skipped.len() as i64;
            bytes_read += report.bytes as i64;
            files.push(report);
            self.progress.file_finished();
        }
        Ok((files, lines_skipped, bytes_read))
    }

    /// Takes converted chunks in any order and commits them in source order: counts, data
    /// batches to the table, rejected rows to quarantine.
    fn commit(
        &self,
        sinks: &mut Sinks,
        done: mpsc::Receiver<Done>,
        slots: mpsc::Receiver<()>,
        columns: usize,
    ) -> Result<Tally> {
        let mut tally = Tally {
            counts: RunCounts::default(),
            non_null: vec![0; columns],
            rejected_sample: Vec::new(),
        };
        let mut pending_rejects: Vec<Rejected> = Vec::new();
        let mut waiting = std::collections::BTreeMap::new();
        let mut next = 0u64;
        for d in done {
            waiting.insert(d.seq, d);
            while let Some(d) = waiting.remove(&next) {
                next += 1;
                let converted = d.converted?;
                let counts = &mut tally.counts;
                counts.rows_read += d.rows as i64;
                counts.rows_loaded += converted.batch.num_rows() as i64;
                counts.rows_quarantined += converted.rejected.len() as i64;
                counts.rows_padded += converted.padded as i64;
                counts.rows_flagged += converted.flagged as i64;
                for (t, n) in tally.non_null.iter_mut().zip(&converted.non_null) {
                    *t += n;
                }
                if converted.batch.num_rows() > 0 {
                    let sink = sinks
                        .data
                        .as_mut()
                        .ok_or_else(|| Error::Task("data sink missing".into()))?;
                    self.handle.block_on(sink.send(converted.batch))?;
                }
                for r in converted.rejected {
                    if tally.rejected_sample.len() < REJECTED_SAMPLE {
                        tally.rejected_sample.push(r.clone());
                    }
                    pending_rejects.push(r);
                }
                if pending_rejects.len() >= QUARANTINE_FLUSH {
                    self.flush_quarantine(sinks, &mut pending_rejects)?;
                }
                // The chunk is done with: the reader may read another.
                let _ = slots.recv();
            }
        }
        if !waiting.is_empty() {
            return Err(Error::Task(format!(
                "a conversion thread stopped: chunk {next} never arrived"
            )));
        }
        self.flush_quarantine(sinks, &mut pending_rejects)?;
        Ok(tally)
    }

    fn flush_quarantine(&self, sinks: &mut Sinks, pending: &mut Vec<Rejected>) -> Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        if sinks.quarantine.is_none() {
            let sink = self.handle.block_on(
                self.lake
                    .write(self.table.in_layer(Layer::Quarantine), quarantine_schema())
                    .with_commit_metadata("reservoir.batch", serde_json::json!(self.batch_id))
                    .start(),
            )?;
            sinks.quarantine = Some(sink);
        }
        let batch = quarantine_batch(pending, &self.batch_id, self.ingested_at)?;
        pending.clear();
        if let Some(sink) = sinks.quarantine.as_mut() {
            self.handle.block_on(sink.send(batch))?;
        }
        Ok(())
    }

    /// Decides each output column's type: the existing table's when appending, else declared,
    /// else inferred.
    fn plan(
        &self,
        columns: &[String],
        inferred: &[crate::infer::Inferred],
        path: &Path,
    ) -> Result<Vec<ColumnPlan>> {
        let declared = &self.req.columns;
        let known: Vec<String> = match &self.existing {
            Some(schema) => schema
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .filter(|n| !meta::ALL.contains(&n.as_str()))
                .collect(),
            None => columns.to_vec(),
        };
        for spec in declared {
            if !known.contains(&spec.name) {
                return Err(Error::UnknownDeclaredColumn {
                    column: spec.name.clone(),
                    available: known.clone(),
                });
            }
        }
        match &self.existing {
            Some(schema) => {
                let mut plan = Vec::new();
                for f in schema
                    .fields()
                    .iter()
                    .filter(|f| !meta::ALL.contains(&f.name().as_str()))
                {
                    let ty = ColumnType::from_arrow(f.data_type()).ok_or_else(|| {
                        Error::Invalid(format!(
                            "column {:?} of {} has type {}, which collection cannot load into",
                            f.name(),
                            self.table,
                            f.data_type()
                        ))
                    })?;
                    if let Some(d) = declared
                        .iter()
                        .find(|d| d.name == *f.name())
                        .and_then(|d| d.ty)
                        && d != ty
                    {
                        return Err(Error::TypeConflict {
                            table: self.table.to_string(),
                            column: f.name().clone(),
                            declared: d.to_string(),
                            existing: ty.to_string(),
                        });
                    }
                    plan.push(ColumnPlan {
                        name: f.name().clone(),
                        ty,
                        origin: TypeOrigin::Table,
                        format: inferred
                            .iter()
                            .find(|i| i.name == *f.name() && i.ty == ty)
                            .and_then(|i| i.format),
                    });
                }
                // Input columns the table does not have.
                self.mapping(&plan, columns, path)?;
                Ok(plan)
            }
            None => Ok(inferred
                .iter()
                .map(|i| {
                    match declared
                        .iter()
                        .find(|d| d.name == i.name)
                        .and_then(|d| d.ty)
                    {
                        Some(ty) => ColumnPlan {
                            name: i.name.clone(),
                            ty,
                            origin: TypeOrigin::Declared,
                            format: (ty == i.ty).then_some(i.format).flatten(),
                        },
                        None => ColumnPlan {
                            name: i.name.clone(),
                            ty: i.ty,
                            origin: TypeOrigin::Inferred,
                            format: i.format,
                        },
                    }
                })
                .collect()),
        }
    }

    /// Maps plan columns to a file's columns by name; a file column the plan lacks is an error.
    fn mapping(
        &self,
        plan: &[ColumnPlan],
        columns: &[String],
        path: &Path,
    ) -> Result<Vec<Option<usize>>> {
        let unknown: Vec<String> = columns
            .iter()
            .filter(|c| !plan.iter().any(|p| p.name == **c))
            .cloned()
            .collect();
        if !unknown.is_empty() {
            return Err(Error::UnknownColumns {
                path: path.to_path_buf(),
                table: self.table.to_string(),
                columns: unknown,
                existing: plan.iter().map(|p| p.name.clone()).collect(),
            });
        }
        Ok(plan
            .iter()
            .map(|p| columns.iter().position(|c| *c == p.name))
            .collect())
    }
}

/// `layer.unit.name` parsed back into a table reference.
struct TableRefText(TableRef);

impl std::str::FromStr for TableRefText {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let parts: Vec<&str> = s.splitn(3, '.').collect();
        match parts.as_slice() {
            [layer, unit, name] => Ok(Self(TableRef::new(
                layer.parse::<Layer>().map_err(|e| e.to_string())?,
                *unit,
                *name,
            ))),
            _ => Err(format!("{s:?} is not layer.unit.name")),
        }
    }
}
