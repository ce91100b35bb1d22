//! Changes by key: upsert a batch into a table with Delta MERGE, delete the rows whose keys a
//! source no longer has, and rewrite a table with wider column types. Each is one Delta commit
//! that can carry an application transaction, like [`TableWrite`](crate::TableWrite).

use std::collections::HashMap;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::common::Column;
use datafusion::logical_expr::{Expr, cast, col};
use datafusion::prelude::SessionContext;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;
use futures::TryStreamExt;

use crate::{Error, Lake, Result, TableRef, WriteMode};

/// What goes into the commit besides the data: an application transaction and metadata.
#[derive(Debug, Clone, Default)]
pub struct CommitTags {
    transaction: Option<(String, i64)>,
    metadata: HashMap<String, serde_json::Value>,
}

impl CommitTags {
    /// Records an application transaction (`txn` action) in the commit; see
    /// [`TableWrite::with_app_transaction`](crate::TableWrite::with_app_transaction).
    pub fn with_app_transaction(mut self, app_id: impl ToString, version: i64) -> Self {
        self.transaction = Some((app_id.to_string(), version));
        self
    }

    /// Adds a key to the commit's `commitInfo`.
    pub fn with_metadata(mut self, key: impl Into<String>, value: serde_json::Value) -> Self {
        self.metadata.insert(key.into(), value);
        self
    }

    pub(crate) fn into_properties(self) -> CommitProperties {
        let mut metadata = self.metadata;
        let mut transactions = Vec::new();
        if let Some((app_id, version)) = self.transaction {
            metadata.insert(crate::APP_ID_KEY.into(), app_id.clone().into());
            metadata.insert(crate::APP_VERSION_KEY.into(), version.into());
            transactions.push(Transaction::new(app_id, version));
        }
        let mut props = CommitProperties::default().with_metadata(metadata);
        for t in transactions {
            props = props.with_application_transaction(t);
        }
        props
    }
}

/// What a merge did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MergeOutcome {
    /// Table version created by the commit, or the table's version when nothing changed.
    pub version: i64,
    /// Whether a commit was made: a merge that changes nothing makes none.
    pub committed: bool,
    pub inserted: u64,
    pub updated: u64,
    pub deleted: u64,
}

fn source_col(name: &str) -> Expr {
    col(Column::new(Some("source"), name))
}

fn target_col(name: &str) -> Expr {
    col(Column::new(Some("target"), name))
}

fn key_predicate(keys: &[String]) -> Result<Expr> {
    keys.iter()
        .map(|k| target_col(k).eq(source_col(k)))
        .reduce(Expr::and)
        .ok_or_else(|| Error::Corrupt("a merge needs at least one key column".into()))
}

impl Lake {
    /// Upserts `batch` into an existing table by `keys`: a row whose key is in the table
    /// replaces it (every column) when one of its data columns differs, the others are
    /// inserted; rows delivered again unchanged are left as they are, and a batch that changes
    /// nothing commits nothing. With `add_columns`, columns of the batch the table lacks are
    /// added to it and every matched row is replaced. The batch must not hold a key twice.
    pub async fn merge_batch(
        &self,
        table: &TableRef,
        batch: RecordBatch,
        keys: &[String],
        add_columns: bool,
        tags: CommitTags,
    ) -> Result<MergeOutcome> {
        let delta = self.open_existing(table).await?;
        let predicate = key_predicate(keys)?;
        let names: Vec<String> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        // A row changed when a data column differs (NULL-aware); the lake's metadata columns
        // (batch, load time) differ on every delivery and do not count.
        let changed = (!add_columns)
            .then(|| {
                names
                    .iter()
                    .filter(|n| !crate::meta::ALL.contains(&n.as_str()) && !keys.contains(n))
                    .map(|n| {
                        Expr::BinaryExpr(datafusion::logical_expr::BinaryExpr::new(
                            Box::new(target_col(n)),
                            datafusion::logical_expr::Operator::IsDistinctFrom,
                            Box::new(source_col(n)),
                        ))
                    })
                    .reduce(Expr::or)
            })
            .flatten();
        let before = delta.version();
        let source = SessionContext::new().read_batch(batch)?;
        let (delta, metrics) = delta
            .merge(source, predicate)
            .with_source_alias("source")
            .with_target_alias("target")
            .with_merge_schema(add_columns)
            .when_matched_update(|u| {
                let u = match changed {
                    Some(p) => u.predicate(p),
                    None => u,
                };
                names.iter().fold(u, |u, n| {
                    u.update(Column::new_unqualified(n.as_str()), source_col(n))
                })
            })?
            .when_not_matched_insert(|i| {
                names.iter().fold(i, |i, n| {
                    i.set(Column::new_unqualified(n.as_str()), source_col(n))
                })
            })?
            .with_commit_properties(tags.into_properties())
            .await?;
        Ok(MergeOutcome {
            version: version_of(&delta)?,
            committed: delta.version() != before,
            inserted: metrics.num_target_rows_inserted as u64,
            updated: metrics.num_target_rows_updated as u64,
            deleted: 0,
        })
    }

    /// Deletes the table's rows whose `keys` do not appear in `present` (all the keys the source
    /// has now), in one commit. Returns `None` without committing when nothing is missing.
    pub async fn delete_missing(
        &self,
        table: &TableRef,
        present: RecordBatch,
        keys: &[String],
        tags: CommitTags,
    ) -> Result<Option<MergeOutcome>> {
        let delta = self.open_existing(table).await?;
        let before = delta.version();
        let predicate = key_predicate(keys)?;
        let source = SessionContext::new().read_batch(present)?;
        let (delta, metrics) = delta
            .merge(source, predicate)
            .with_source_alias("source")
            .with_target_alias("target")
            .when_not_matched_by_source_delete(|d| d)?
            .with_commit_properties(tags.into_properties())
            .await?;
        if metrics.num_target_rows_deleted == 0 || delta.version() == before {
            return Ok(None);
        }
        Ok(Some(MergeOutcome {
            version: version_of(&delta)?,
            committed: true,
            deleted: metrics.num_target_rows_deleted as u64,
            ..MergeOutcome::default()
        }))
    }

    /// Deletes the table's rows whose `keys` appear in `rows`, in one commit. Returns `None`
    /// without committing when none matched.
    pub async fn delete_matching(
        &self,
        table: &TableRef,
        rows: RecordBatch,
        keys: &[String],
        tags: CommitTags,
    ) -> Result<Option<MergeOutcome>> {
        let delta = self.open_existing(table).await?;
        let before = delta.version();
        let predicate = key_predicate(keys)?;
        let source = SessionContext::new().read_batch(rows)?;
        let (delta, metrics) = delta
            .merge(source, predicate)
            .with_source_alias("source")
            .with_target_alias("target")
            .when_matched_delete(|d| d)?
            .with_commit_properties(tags.into_properties())
            .await?;
        if metrics.num_target_rows_deleted == 0 || delta.version() == before {
            return Ok(None);
        }
        Ok(Some(MergeOutcome {
            version: version_of(&delta)?,
            committed: true,
            deleted: metrics.num_target_rows_deleted as u64,
            ..MergeOutcome::default()
        }))
    }

    /// Rewrites a table with `schema`, casting every column to its new type, in one overwrite
    /// commit. For lossless widening only (e.g. `decimal(10,2)` → `decimal(12,2)`): the caller
    /// decides what is lossless; a value that does not fit fails the rewrite, which then commits
    /// nothing. Columns of `schema` the table lacks are added as NULL.
    pub async fn rewrite_as(
        &self,
        table: &TableRef,
        schema: SchemaRef,
        tags: CommitTags,
    ) -> Result<i64> {
        let delta = self.open_existing(table).await?;
        let old = crate::arrow_schema_of(&delta)?;
        let ctx = SessionContext::new();
        let df = ctx.read_table(crate::table_provider(&delta).await?)?;
        let exprs: Vec<Expr> = schema
            .fields()
            .iter()
            .map(|f| {
                let e = if old.field_with_name(f.name()).is_ok() {
                    col(Column::new_unqualified(f.name()))
                } else {
                    Expr::Literal(
                        datafusion::scalar::ScalarValue::try_from(f.data_type())?,
                        None,
                    )
                };
                Ok(cast(e, f.data_type().clone()).alias(f.name()))
            })
            .collect::<Result<_>>()?;
        let mut stream = df.select(exprs)?.execute_stream().await?;
        let mut sink = self
            .write(table.clone(), schema.clone())
            .with_mode(WriteMode::Overwrite)
            .with_tags(tags)
            .start()
            .await?;
        let copied = async {
            while let Some(batch) = stream.try_next().await? {
                let batch = RecordBatch::try_new(schema.clone(), batch.columns().to_vec())?;
                sink.send(batch).await?;
            }
            Ok::<_, Error>(())
        }
        .await;
        if let Err(e) = copied {
            sink.abort(e.to_string()).await;
            return Err(e);
        }
        Ok(sink.finish().await?.version)
    }
}

fn version_of(delta: &deltalake::DeltaTable) -> Result<i64> {
    delta
        .version()
        .map(|v| v as i64)
        .ok_or_else(|| Error::Corrupt("merge committed but the table has no version".into()))
}
