//! Streaming writes into a Delta table with a single commit.
//!
//! The producer sends record batches into a bounded channel; the channel is the input of a
//! DataFusion plan that delta-rs's write operation executes, encoding Parquet files as batches
//! arrive. Memory stays bounded by the channel capacity plus the Parquet writer's row groups.

use std::fmt;
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::datasource::provider_as_source;
use datafusion::error::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::LogicalPlanBuilder;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableBuilder};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::{CommitTags, Error, Lake, Result, TableRef};

/// Batches buffered between producer and writer.
const CHANNEL_CAPACITY: usize = 4;

/// Whether a write adds to the table or replaces its contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WriteMode {
    #[default]
    Append,
    Overwrite,
}

impl WriteMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Append => "append",
            Self::Overwrite => "overwrite",
        }
    }
}

impl fmt::Display for WriteMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A configured, not yet started write. Build with [`Lake::write`].
#[must_use = "a TableWrite does nothing until started"]
pub struct TableWrite {
    lake: Lake,
    table: TableRef,
    schema: SchemaRef,
    mode: WriteMode,
    add_columns: bool,
    tags: CommitTags,
}

/// What a committed write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Table version created by the commit.
    pub version: i64,
    /// Rows sent through the sink.
    pub rows: u64,
}

impl TableWrite {
    pub(crate) fn new(lake: Lake, table: TableRef, schema: SchemaRef) -> Self {
        Self {
            lake,
            table,
            schema,
            mode: WriteMode::Append,
            add_columns: false,
            tags: CommitTags::default(),
        }
    }

    pub fn with_mode(mut self, mode: WriteMode) -> Self {
        self.mode = mode;
        self
    }

    /// Records an application transaction (`txn` action) in the same commit as the data, so that
    /// readers can tell which batch of which source a table version holds.
    pub fn with_app_transaction(mut self, app_id: impl ToString, version: i64) -> Self {
        self.tags = self.tags.with_app_transaction(app_id, version);
        self
    }

    /// Lets an append add the columns of `schema` the table does not have yet (earlier rows
    /// read them as NULL). Without it, a schema that differs from the table's fails the write.
    pub fn with_new_columns(mut self) -> Self {
        self.add_columns = true;
        self
    }

    /// Sets the transaction and metadata of the commit at once.
    pub fn with_tags(mut self, tags: CommitTags) -> Self {
        self.tags = tags;
        self
    }

    /// Adds a key to the commit's `commitInfo`.
    pub fn with_commit_metadata(
        mut self,
        key: impl Into<String>,
        value: serde_json::Value,
    ) -> Self {
        self.tags = self.tags.with_metadata(key, value);
        self
    }

    /// Starts the writer in the background and returns the sink to feed it.
    pub async fn start(self) -> Result<BatchSink> {
        let url = self.lake.table_url(&self.table)?;
        let delta = match self.lake.local_root() {
            Some(root) if !root.join(self.table.location()).join("_delta_log").exists() => {
                // A new table: delta-rs wants the folder to exist, and there is no log to load.
                let dir = root.join(self.table.location());
                std::fs::create_dir_all(&dir).map_err(|source| Error::Io { path: dir, source })?;
                DeltaTableBuilder::from_url(url)?.build()?
            }
            _ => DeltaTable::try_from_url(url).await?,
        };
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let source = ChannelPartition {
            schema: self.schema.clone(),
            receiver: Mutex::new(Some(rx)),
        };
        let provider = StreamingTable::try_new(self.schema.clone(), vec![Arc::new(source)])?;
        let plan = LogicalPlanBuilder::scan("input", provider_as_source(Arc::new(provider)), None)?
            .build()?;
        let save_mode = match self.mode {
            WriteMode::Append => SaveMode::Append,
            WriteMode::Overwrite => SaveMode::Overwrite,
        };
        let props = self.tags.into_properties();
        let mut builder = delta
            .write(Vec::new())
            .with_input_plan(plan)
            .with_save_mode(save_mode)
            .with_table_name(self.table.to_string())
            .with_commit_properties(props);
        if self.mode == WriteMode::Overwrite {
            // Overwriting replaces the schema along with the rows.
            builder = builder.with_schema_mode(SchemaMode::Overwrite);
        } else if self.add_columns {
            builder = builder.with_schema_mode(SchemaMode::Merge);
        }
        let handle = tokio::spawn(async move {
            let table = builder.await?;
            let version = table.version().ok_or_else(|| {
                Error::Corrupt("write committed but the table has no version".into())
            })?;
            Ok(version as i64)
        });
        Ok(BatchSink {
            table: self.table,
            schema: self.schema,
            sender: Some(tx),
            handle: Some(handle),
            rows: 0,
        })
    }
}

/// Feeds a running write. Nothing is committed until [`finish`](Self::finish) succeeds.
pub struct BatchSink {
    table: TableRef,
    schema: SchemaRef,
    sender: Option<mpsc::Sender<Result<RecordBatch, DataFusionError>>>,
    handle: Option<JoinHandle<Result<i64>>>,
    rows: u64,
}

impl BatchSink {
    /// The table being written.
    pub fn table(&self) -> &TableRef {
        &self.table
    }

    /// The schema every batch must have.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Rows sent so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Sends one batch, waiting while the writer is busy. If the writer has failed, returns its
    /// error.
    pub async fn send(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.schema() != self.schema {
            return Err(Error::Corrupt(format!(
                "batch for {} does not match the write schema",
                self.table
            )));
        }
        let rows = batch.num_rows() as u64;
        let sent = match &self.sender {
            Some(s) => s.send(Ok(batch)).await.is_ok(),
            None => false,
        };
        if !sent {
            // The writer stopped early: surface why.
            self.sender = None;
            return Err(self.join().await.err().unwrap_or_else(|| Error::Aborted {
                table: self.table.to_string(),
                reason: "the writer stopped before all rows were sent".into(),
            }));
        }
        self.rows += rows;
        Ok(())
    }

    /// Ends the input and waits for the commit.
    pub async fn finish(mut self) -> Result<WriteOutcome> {
        self.sender = None;
        let version = self.join().await?;
        Ok(WriteOutcome {
            version,
            rows: self.rows,
        })
    }

    /// Stops the write without committing anything.
    pub async fn abort(mut self, reason: impl Into<String>) {
        let reason = reason.into();
        if let Some(sender) = self.sender.take() {
            let _ = sender
                .send(Err(DataFusionError::Execution(format!(
                    "aborted: {reason}"
                ))))
                .await;
        }
        if let Some(handle) = self.handle.take() {
            match handle.await {
                Ok(Err(_)) | Err(_) => {}
                Ok(Ok(version)) => {
                    // Cannot happen: the stream ended in an error. Say so loudly if it does.
                    tracing::error!(table = %self.table, version, "aborted write committed");
                }
            }
        }
    }

    async fn join(&mut self) -> Result<i64> {
        let handle = self.handle.take().ok_or_else(|| Error::Aborted {
            table: self.table.to_string(),
            reason: "the write already ended".into(),
        })?;
        match handle.await {
            Ok(result) => result,
            Err(e) => Err(Error::Aborted {
                table: self.table.to_string(),
                reason: format!("writer task failed: {e}"),
            }),
        }
    }
}

impl Drop for BatchSink {
    fn drop(&mut self) {
        // A sink dropped without finish(): make sure the writer sees an error, not a clean end
        // of input, so that it does not commit a partial table.
        if let Some(sender) = self.sender.take() {
            let _ = sender.try_send(Err(DataFusionError::Execution(
                "write abandoned before completion".into(),
            )));
            if let Some(handle) = self.handle.take() {
                handle.abort();
            }
        }
    }
}

/// A one-shot partition stream over the channel's receiving end.
struct ChannelPartition {
    schema: SchemaRef,
    receiver: Mutex<Option<mpsc::Receiver<Result<RecordBatch, DataFusionError>>>>,
}

impl fmt::Debug for ChannelPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelPartition").finish_non_exhaustive()
    }
}

impl PartitionStream for ChannelPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let receiver = self.receiver.lock().ok().and_then(|mut r| r.take());
        let stream = match receiver {
            Some(rx) => tokio_stream(rx).boxed(),
            None => futures::stream::once(async {
                Err(DataFusionError::Internal(
                    "streaming write input can only be read once".into(),
                ))
            })
            .boxed(),
        };
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}

fn tokio_stream(
    mut rx: mpsc::Receiver<Result<RecordBatch, DataFusionError>>,
) -> impl futures::Stream<Item = Result<RecordBatch, DataFusionError>> + Send {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
