//! The Reservoir lake: Delta Lake tables laid out by layer, unit and dataset.
//!
//! ```text
//! lake/
//!   raw/<unit>/<dataset>/          贴源层: what the units delivered, plus _batch, _ingested_at, …
//!   quarantine/<unit>/<dataset>/   rows that could not be loaded, with raw text and reason
//!   std/ base/ theme/ topic/ open/ later layers of the data flow
//! ```
//!
//! Writes stream: a [`TableWrite`] hands back a [`BatchSink`] that accepts record batches with
//! bounded buffering while the Delta writer encodes Parquet files in the background; nothing is
//! visible to readers until the single Delta commit at [`BatchSink::finish`]. Dropping or
//! [aborting](BatchSink::abort) a sink commits nothing.

mod error;
mod merge;
mod write;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use arrow::array::{Array, Int64Array};
use arrow::datatypes::SchemaRef;
use deltalake::DeltaTable;
use url::Url;

pub use error::{Error, Result};
pub use merge::{CommitTags, MergeOutcome};
pub use write::{BatchSink, TableWrite, WriteMode, WriteOutcome};

/// Re-export so that dependents use the exact Delta version the lake writes with.
pub use deltalake;

/// Column names the lake adds to every raw table.
pub mod meta {
    /// Id of the collection run (batch) that loaded the row.
    pub const BATCH: &str = "_batch";
    /// When the row was loaded (UTC).
    pub const INGESTED_AT: &str = "_ingested_at";
    /// File (or source object) the row came from.
    pub const SOURCE_FILE: &str = "_source_file";
    /// Line (CSV), sheet row (Excel) or record number (JSON) in the source.
    pub const SOURCE_ROW: &str = "_source_row";
    /// Observations about the row made while loading it (padding, impossible dates …).
    pub const FLAGS: &str = "_flags";

    /// All raw-layer metadata columns, in table order.
    pub const ALL: [&str; 5] = [BATCH, INGESTED_AT, SOURCE_FILE, SOURCE_ROW, FLAGS];
}

/// The schema of a quarantine table: the batch, time, file and line of each row that could not
/// be kept, its raw text and why.
pub fn quarantine_schema() -> SchemaRef {
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    std::sync::Arc::new(Schema::new(vec![
        Field::new(meta::BATCH, DataType::Utf8, false),
        Field::new(
            meta::INGESTED_AT,
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new(meta::SOURCE_FILE, DataType::Utf8, false),
        Field::new(meta::SOURCE_ROW, DataType::Int64, false),
        Field::new("raw", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
    ]))
}

/// A layer of the lake, in the order data flows through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Layer {
    /// 贴源层: data as delivered.
    Raw,
    /// 标准层: standardized and cleansed.
    Std,
    /// 基础库: population, legal persons, geography, licences.
    Base,
    /// 主题库.
    Theme,
    /// 专题库.
    Topic,
    /// Published open-data snapshots.
    Open,
    /// Rows that could not be loaded.
    Quarantine,
    /// 质量检测结果: every row a quality check failed, per check run.
    Quality,
    /// Masked snapshots shared through Delta Sharing, one per grant.
    Share,
}

impl Layer {
    pub const ALL: [Layer; 9] = [
        Self::Raw,
        Self::Std,
        Self::Base,
        Self::Theme,
        Self::Topic,
        Self::Open,
        Self::Quarantine,
        Self::Quality,
        Self::Share,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::Std => "std",
            Self::Base => "base",
            Self::Theme => "theme",
            Self::Topic => "topic",
            Self::Open => "open",
            Self::Quarantine => "quarantine",
            Self::Quality => "quality",
            Self::Share => "share",
        }
    }
}

impl std::fmt::Display for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Layer {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|l| l.as_str() == s)
            .ok_or_else(|| Error::UnknownLayer(s.to_string()))
    }
}

/// Names one table of the lake.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableRef {
    pub layer: Layer,
    pub unit: String,
    pub name: String,
}

impl TableRef {
    pub fn new(layer: Layer, unit: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            layer,
            unit: unit.into(),
            name: name.into(),
        }
    }

    /// The same unit and dataset in another layer (e.g. its quarantine table).
    pub fn in_layer(&self, layer: Layer) -> Self {
        Self::new(layer, self.unit.clone(), self.name.clone())
    }

    /// Location relative to the lake root: `raw/minzheng/villages`.
    pub fn location(&self) -> String {
        format!("{}/{}/{}", self.layer, self.unit, self.name)
    }
}

impl std::fmt::Display for TableRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.layer, self.unit, self.name)
    }
}

/// The lake: a root location holding Delta tables.
#[derive(Debug, Clone)]
pub struct Lake {
    root: Url,
    local_root: Option<PathBuf>,
}

impl Lake {
    /// A lake in a local folder, created if missing.
    pub fn local(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        std::fs::create_dir_all(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let path = path.canonicalize().map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let root = Url::from_directory_path(&path)
            .map_err(|()| Error::InvalidLocation(path.display().to_string()))?;
        Ok(Self {
            root,
            local_root: Some(path),
        })
    }

    /// The lake root as a URL (`file:///…/lake/`).
    pub fn root(&self) -> &Url {
        &self.root
    }

    /// The local folder of the lake, if it is on the local file system.
    pub fn local_root(&self) -> Option<&Path> {
        self.local_root.as_deref()
    }

    /// URL of a table's folder.
    pub fn table_url(&self, table: &TableRef) -> Result<Url> {
        for part in [&table.unit, &table.name] {
            if part.is_empty() || part.contains(['/', '\\']) || part == "." || part == ".." {
                return Err(Error::InvalidLocation(table.location()));
            }
        }
        self.root
            .join(&format!("{}/", table.location()))
            .map_err(|_| Error::InvalidLocation(table.location()))
    }

    /// Opens a table; `None` if it has never been written.
    pub async fn open(&self, table: &TableRef) -> Result<Option<DeltaTable>> {
        let url = self.table_url(table)?;
        if let Some(root) = &self.local_root {
            // Avoid creating folders for tables that do not exist.
            if !root.join(table.location()).join("_delta_log").exists() {
                return Ok(None);
            }
        }
        let delta = DeltaTable::try_from_url(url).await?;
        Ok(delta.version().is_some().then_some(delta))
    }

    /// Opens a table that must exist.
    pub async fn open_existing(&self, table: &TableRef) -> Result<DeltaTable> {
        self.open(table)
            .await?
            .ok_or_else(|| Error::TableNotFound(table.to_string()))
    }

    /// The Arrow schema of a table, if it exists.
    pub async fn arrow_schema(&self, table: &TableRef) -> Result<Option<SchemaRef>> {
        match self.open(table).await? {
            Some(t) => Ok(Some(arrow_schema_of(&t)?)),
            None => Ok(None),
        }
    }

    /// Starts a streaming write into `table`, whose rows have `schema`.
    pub fn write(&self, table: TableRef, schema: SchemaRef) -> TableWrite {
        TableWrite::new(self.clone(), table, schema)
    }

    /// Bytes used by the lake's files (local lakes only; 0 otherwise).
    pub fn disk_usage(&self) -> u64 {
        fn walk(p: &Path) -> u64 {
            let Ok(entries) = std::fs::read_dir(p) else {
                return 0;
            };
            entries
                .flatten()
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => walk(&e.path()),
                    Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
                    Err(_) => 0,
                })
                .sum()
        }
        self.local_root.as_deref().map(walk).unwrap_or(0)
    }
}

/// What the last committed batch of an application (a sync of one source into one table) left
/// in the Delta log: the transaction version and the commit's metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct AppCommit {
    /// The application's transaction version (`txn` action) in the table's current snapshot.
    pub version: i64,
    /// The metadata the commit carried (`commitInfo`), e.g. the source cursor.
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// Commit-metadata key naming the application of a commit made with a transaction id.
pub const APP_ID_KEY: &str = "reservoir.app";
/// Commit-metadata key holding that application's transaction version.
pub const APP_VERSION_KEY: &str = "reservoir.app_version";

impl Lake {
    /// The transaction version `app_id` last committed to `table` (the `txn` action), if any.
    pub async fn app_version(&self, table: &TableRef, app_id: &str) -> Result<Option<i64>> {
        let Some(delta) = self.open(table).await? else {
            return Ok(None);
        };
        Ok(delta
            .snapshot()?
            .transaction_version(delta.log_store().as_ref(), app_id)
            .await?)
    }

    /// The latest commit that `app_id` made to `table` with a transaction id, if any.
    ///
    /// The transaction version comes from the snapshot (the Delta protocol's `txn` action), and
    /// the metadata from the `commitInfo` of the commit that set it, found by walking the
    /// history newest first. Both are written in one atomic commit by [`TableWrite`] with
    /// [`TableWrite::with_app_transaction`], so they always agree.
    pub async fn app_commit(&self, table: &TableRef, app_id: &str) -> Result<Option<AppCommit>> {
        use futures::TryStreamExt;
        let Some(delta) = self.open(table).await? else {
            return Ok(None);
        };
        let Some(version) = delta
            .snapshot()?
            .transaction_version(delta.log_store().as_ref(), app_id)
            .await?
        else {
            return Ok(None);
        };
        let mut history = delta.history(None);
        while let Some(info) = history.try_next().await? {
            let ours = info.info.get(APP_ID_KEY).and_then(|v| v.as_str()) == Some(app_id)
                && info.info.get(APP_VERSION_KEY).and_then(|v| v.as_i64()) == Some(version);
            if ours {
                return Ok(Some(AppCommit {
                    version,
                    metadata: info.info.into_iter().collect(),
                }));
            }
        }
        Err(Error::Corrupt(format!(
            "{table}: transaction {app_id:?} is at version {version} but no commit in the \
             history carries its metadata"
        )))
    }
}

/// A data file a commit added.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AddedFile {
    /// Path relative to the table's folder, as the Delta log records it.
    pub path: String,
    pub size: i64,
}

impl Lake {
    /// The data files the commit that made `version` of `table` added (its `add` actions).
    pub async fn commit_files(&self, table: &TableRef, version: i64) -> Result<Vec<AddedFile>> {
        let delta = self.open_existing(table).await?;
        let bytes = delta
            .log_store()
            .read_commit_entry(version as u64)
            .await?
            .ok_or_else(|| {
                Error::Corrupt(format!(
                    "{table}: the log has no commit {version} (cleaned up by log retention?)"
                ))
            })?;
        let mut files = Vec::new();
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let action: serde_json::Value = serde_json::from_slice(line)
                .map_err(|e| Error::Corrupt(format!("{table}: commit {version}: {e}")))?;
            if let Some(add) = action.get("add") {
                let path = add.get("path").and_then(|p| p.as_str());
                let size = add.get("size").and_then(|s| s.as_i64());
                match (path, size) {
                    (Some(path), Some(size)) => files.push(AddedFile {
                        path: path.to_string(),
                        size,
                    }),
                    _ => {
                        return Err(Error::Corrupt(format!(
                            "{table}: commit {version} has an add action without path or size"
                        )));
                    }
                }
            }
        }
        Ok(files)
    }

    /// When the commit that made `version` of `table` was written (milliseconds since the epoch,
    /// from its `commitInfo`).
    pub async fn commit_timestamp(&self, table: &TableRef, version: i64) -> Result<Option<i64>> {
        let delta = self.open_existing(table).await?;
        let Some(bytes) = delta.log_store().read_commit_entry(version as u64).await? else {
            return Ok(None);
        };
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let action: serde_json::Value = serde_json::from_slice(line)
                .map_err(|e| Error::Corrupt(format!("{table}: commit {version}: {e}")))?;
            if let Some(ts) = action
                .get("commitInfo")
                .and_then(|c| c.get("timestamp"))
                .and_then(|t| t.as_i64())
            {
                return Ok(Some(ts));
            }
        }
        Ok(None)
    }

    /// The local path of one of a table's data files (a path as the Delta log records it), if
    /// the lake is a local folder and the path stays inside the table.
    pub fn local_file(&self, table: &TableRef, path: &str) -> Option<std::path::PathBuf> {
        let root = self.local_root()?;
        let rel = std::path::Path::new(path);
        if rel.is_absolute()
            || rel
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return None;
        }
        Some(root.join(table.location()).join(rel))
    }

    /// SHA-256 (hex) of one of a table's data files (a path as the Delta log records it),
    /// streamed.
    pub async fn file_sha256(&self, table: &TableRef, path: &str) -> Result<String> {
        use futures::StreamExt;
        use object_store::ObjectStoreExt as _;
        use sha2::Digest;
        let delta = self.open_existing(table).await?;
        let store = delta.log_store().object_store(None);
        let location = object_store::path::Path::from_url_path(path)
            .map_err(|e| Error::Corrupt(format!("{table}: data file path {path:?}: {e}")))?;
        let read = |e: object_store::Error| Error::Corrupt(format!("{table}: reading {path}: {e}"));
        let mut stream = store.get(&location).await.map_err(read)?.into_stream();
        let mut hasher = sha2::Sha256::new();
        while let Some(chunk) = stream.next().await {
            hasher.update(chunk.map_err(read)?);
        }
        Ok(hex::encode(hasher.finalize()))
    }
}

/// The Arrow schema of an open table.
pub fn arrow_schema_of(table: &DeltaTable) -> Result<SchemaRef> {
    Ok(table.snapshot()?.snapshot().arrow_schema())
}

/// Rows in the current version of a table, from the Delta log's file statistics.
pub fn row_count_of(table: &DeltaTable) -> Result<i64> {
    let adds = table.snapshot()?.add_actions_table(true)?;
    let Some(col) = adds.column_by_name("num_records") else {
        return Ok(0);
    };
    let counts = col
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or_else(|| Error::Corrupt("num_records statistics are not Int64".into()))?;
    if counts.null_count() > 0 {
        return Err(Error::Corrupt(
            "a data file has no row-count statistics".into(),
        ));
    }
    Ok(counts.iter().flatten().sum())
}

/// Wraps a table for DataFusion.
pub async fn table_provider(
    table: &DeltaTable,
) -> Result<Arc<dyn datafusion::catalog::TableProvider>> {
    Ok(table.table_provider().await?)
}
