//! Materialized, masked snapshots: what an open-data publication or a masked share serves
//! instead of the raw files.
//!
//! A snapshot is the raw table read through the policy engine (the same [`PolicyTable`] a
//! granted principal's queries go through: granted columns, masks, row filter) and written as a
//! table of its own, overwriting the previous snapshot in one Delta commit. Its versions are the
//! publication history; its files are what may be handed out.

use std::sync::Arc;

use datafusion::prelude::SessionContext;
use futures::StreamExt;
use reservoir_access::GrantColumn;
use reservoir_access::mask::MaskKey;
use reservoir_lake::{AddedFile, Lake, TableRef, WriteMode};

use crate::policy::PolicyTable;
use crate::{Error, Result};

/// A snapshot just written.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub table: TableRef,
    /// The snapshot table's version.
    pub version: i64,
    /// The source table's version it was read at.
    pub source_version: i64,
    pub rows: u64,
    /// The data files of this version.
    pub files: Vec<AddedFile>,
}

/// Writes `source` as seen through `columns` (with their masks) and `row_filter` to `target`.
pub async fn materialize(
    lake: &Lake,
    source: &TableRef,
    columns: &[GrantColumn],
    row_filter: Option<&str>,
    key: Option<Arc<MaskKey>>,
    target: TableRef,
) -> Result<Snapshot> {
    let delta = lake.open_existing(source).await?;
    let source_version = delta.version().unwrap_or(0) as i64;
    let provider = reservoir_lake::table_provider(&delta).await?;
    let policy = PolicyTable::new(
        format!("{}.{}", source.unit, source.name),
        provider,
        columns,
        row_filter,
        key,
    )?;
    let ctx = SessionContext::new();
    delta
        .update_datafusion_session(&ctx.state())
        .map_err(|e| Error::Execution(datafusion::error::DataFusionError::External(Box::new(e))))?;
    ctx.register_table("snapshot", Arc::new(policy))?;
    let df = ctx.table("snapshot").await?;
    let mut stream = df.execute_stream().await?;
    let schema = stream.schema();
    let mut sink = lake
        .write(target.clone(), schema)
        .with_mode(WriteMode::Overwrite)
        .start()
        .await?;
    let mut rows = 0u64;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(Error::from)?;
        rows += batch.num_rows() as u64;
        sink.send(batch).await?;
    }
    let outcome = sink.finish().await?;
    let files = lake.commit_files(&target, outcome.version).await?;
    Ok(Snapshot {
        table: target,
        version: outcome.version,
        source_version,
        rows,
        files,
    })
}
