//! Real-time pushes from a NATS JetStream stream, committed in micro-batches, exactly once.
//!
//! ```text
//!  JetStream stream ──► ephemeral pull consumer ──► JSON objects ──► raw.<unit>.<dataset>
//!    from sequence        (no acks: the lake          typed rows;      one Delta commit per
//!    committed + 1         holds the position)        bad ones →       micro-batch: rows +
//!                                                     quarantine       txn(app, last sequence)
//! ```
//!
//! The position in the stream is the transaction version of the last commit: each micro-batch
//! is committed with an application transaction whose version is the stream sequence of its last
//! message, in the same atomic Delta commit as its rows. A run starts from the committed
//! sequence + 1, so a crash, a retry or a second consumer never loads a message twice, and
//! nothing depends on acknowledgements that could be lost. `_source_row` of a row is its
//! message's stream sequence.
//!
//! Messages are JSON objects. Columns come from the table, then the definition's declared
//! columns, then keys seen in messages (typed by their JSON values: integers, numbers, booleans,
//! strings; objects and arrays as JSON text); a new key is a schema-drift event that adds a
//! column. A message that is not a JSON object, or whose value does not fit its column's type,
//! goes to quarantine with its text and the reason. The run reports the lag: how many messages
//! the stream holds beyond what the lake has.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::datatypes::{DataType, Field as ArrowField, Schema, SchemaRef, TimeUnit};
use async_nats::jetstream::{self, consumer::AckPolicy, consumer::DeliverPolicy, consumer::pull};
use futures::StreamExt;
use reservoir_catalog::{DriftEvent, RunCounts};
use reservoir_lake::{CommitTags, TableRef};
use serde_json::Value as Json;

use crate::collect::{ColumnSpec, DatasetInfo, RunReport};
use crate::convert::Rejected;
use crate::db::types::{LoadType, SourceColumn};
use crate::db::{
    BATCH_KEY, BatchBuilder, Begun, Completed, account, drift, raw_schema, write_quarantine,
};
use crate::value::ColumnType;
use crate::{Collector, Error, Progress, Result};

/// Commit-metadata key of the stream sequence a micro-batch reached.
pub const SEQUENCE_KEY: &str = "reservoir.nats.sequence";

/// A JetStream stream to collect.
#[derive(Clone)]
pub struct NatsSource {
    /// Server URL, e.g. `nats://127.0.0.1:4222` (credentials in it are never shown).
    pub url: String,
    /// The JetStream stream's name.
    pub stream: String,
    /// Only messages of this subject (wildcards allowed); all of the stream's by default.
    pub subject: Option<String>,
    /// Messages per micro-batch (one Delta commit each).
    pub batch_rows: usize,
    /// How long to wait for a micro-batch to fill before committing what arrived.
    pub max_wait: Duration,
    /// Stop after this many micro-batches; the next run goes on from there.
    pub max_batches: Option<usize>,
}

impl std::fmt::Debug for NatsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsSource")
            .field("url", &crate::db::redact_url(&self.url))
            .field("stream", &self.stream)
            .field("subject", &self.subject)
            .field("batch_rows", &self.batch_rows)
            .finish()
    }
}

/// What to collect from NATS into `raw.<unit>.<dataset>`.
#[derive(Debug, Clone)]
pub struct NatsRequest {
    pub unit: String,
    pub dataset: String,
    pub source: NatsSource,
    /// Declared columns (name, type, title); undeclared keys are typed from their values.
    pub columns: Vec<ColumnSpec>,
    pub info: DatasetInfo,
    pub source_label: String,
    pub profile: bool,
}

fn nats_error(source: &NatsSource, what: &str, e: impl std::fmt::Display) -> Error {
    Error::Stream {
        name: format!(
            "{} stream {}",
            crate::db::redact_url(&source.url),
            source.stream
        ),
        message: format!("{what}: {e}"),
    }
}

impl Collector {
    /// Collects the messages a stream holds beyond what the lake has, in micro-batches.
    pub async fn sync_nats(
        &self,
        req: NatsRequest,
        progress: Arc<dyn Progress>,
    ) -> Result<RunReport> {
        let started = Instant::now();
        if req.source.batch_rows == 0 {
            return Err(Error::Invalid("batch_rows must be positive".into()));
        }
        let label = if req.source_label.is_empty() {
            format!(
                "{} stream {}",
                crate::db::redact_url(&req.source.url),
                req.source.stream
            )
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
            .begin_sync(&req.unit, &req.dataset, &req.info, "nats", &label, "stream")
            .await?;
        let mut run = StreamRun {
            collector: self,
            req: &req,
            table: table.clone(),
            batch_id: batch_id.clone(),
            run_id,
            dataset_id,
            source_name: match &req.source.subject {
                Some(s) => format!("nats:{}/{s}", req.source.stream),
                None => format!("nats:{}", req.source.stream),
            },
            columns: Vec::new(),
            counts: RunCounts::default(),
            non_null: Vec::new(),
            rejected_sample: Vec::new(),
            quarantined: false,
            version: None,
            versions: Vec::new(),
            notes: Vec::new(),
            lag: None,
            progress,
        };
        let result = run.run().await;
        notes.append(&mut run.notes);
        if let Err(e) = result {
            self.fail_run(run_id, run.counts, run.version, &e, &label, &notes)
                .await;
            return Err(e);
        }
        let mut extra = serde_json::Map::new();
        extra.insert("lag_messages".into(), run.lag.into());
        self.complete_run(Completed {
            run_id,
            batch_id,
            dataset_id,
            table,
            mode: "stream",
            kind: "nats",
            source_name: run.source_name.clone(),
            label,
            columns: &run.columns,
            specs: &req.columns,
            counts: run.counts,
            non_null: run.non_null,
            version: run.version,
            quarantined: run.quarantined,
            rejected_sample: run.rejected_sample,
            notes,
            extra,
            profile: req.profile,
            started,
            versions: run.versions,
        })
        .await
    }
}

struct StreamRun<'a> {
    collector: &'a Collector,
    req: &'a NatsRequest,
    table: TableRef,
    batch_id: String,
    run_id: i64,
    dataset_id: i64,
    source_name: String,
    columns: Vec<SourceColumn>,
    counts: RunCounts,
    non_null: Vec<u64>,
    rejected_sample: Vec<Rejected>,
    quarantined: bool,
    version: Option<i64>,
    versions: Vec<i64>,
    notes: Vec<String>,
    lag: Option<u64>,
    progress: Arc<dyn Progress>,
}

/// A message's JSON object, or why it is not one.
type ParsedMessage = std::result::Result<serde_json::Map<String, Json>, String>;

/// A message as fetched: its stream sequence and payload.
struct Fetched {
    sequence: u64,
    payload: Vec<u8>,
}

impl StreamRun<'_> {
    fn app_id(&self) -> String {
        format!("reservoir:{}.{}", self.req.unit, self.req.dataset)
    }

    async fn run(&mut self) -> Result<()> {
        let src = &self.req.source;
        let client = async_nats::connect(&src.url)
            .await
            .map_err(|e| nats_error(src, "cannot connect", e))?;
        let js = jetstream::new(client);
        let mut stream = js
            .get_stream(&src.stream)
            .await
            .map_err(|e| nats_error(src, "no such stream", e))?;
        let last = stream
            .info()
            .await
            .map_err(|e| nats_error(src, "cannot read the stream's state", e))?
            .state
            .last_sequence;

        let lake = self.collector.lake();
        let app_id = self.app_id();
        let mut committed = lake
            .app_commit(&self.table, &app_id)
            .await?
            .map_or(0, |c| c.version.max(0) as u64);
        let existing = lake.arrow_schema(&self.table).await?;
        self.columns = initial_columns(existing.as_ref(), &self.req.columns)?;
        let mut schema: SchemaRef = match &existing {
            Some(s) => s.clone(),
            None => raw_schema(&self.columns),
        };
        let mut table_exists = existing.is_some();
        if committed >= last {
            self.notes
                .push(format!("no new messages (stream at sequence {last})"));
            self.lag = Some(0);
            return Ok(());
        }
        let consumer = stream
            .create_consumer(pull::Config {
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: committed + 1,
                },
                ack_policy: AckPolicy::None,
                filter_subject: src.subject.clone().unwrap_or_default(),
                inactive_threshold: Duration::from_secs(60),
                ..Default::default()
            })
            .await
            .map_err(|e| nats_error(src, "cannot create a consumer", e))?;

        let mut batches = 0usize;
        loop {
            if src.max_batches.is_some_and(|m| batches >= m) {
                self.notes.push(format!(
                    "stopped after {batches} micro-batches (max_batches); the next run continues \
                     from sequence {}",
                    committed + 1
                ));
                break;
            }
            let mut fetched = Vec::new();
            let mut messages = consumer
                .fetch()
                .max_messages(src.batch_rows)
                .expires(src.max_wait)
                .messages()
                .await
                .map_err(|e| nats_error(src, "cannot fetch", e))?;
            while let Some(m) = messages.next().await {
                let m = m.map_err(|e| nats_error(src, "fetch failed", e))?;
                let sequence = m
                    .info()
                    .map_err(|e| nats_error(src, "a message without stream metadata", e))?
                    .stream_sequence;
                if sequence <= committed {
                    continue; // already in the lake
                }
                fetched.push(Fetched {
                    sequence,
                    payload: m.payload.to_vec(),
                });
            }
            drop(messages);
            let Some(last_in_batch) = fetched.last().map(|f| f.sequence) else {
                break;
            };
            let full = fetched.len() >= src.batch_rows;
            let added = self
                .commit_micro_batch(fetched, &mut schema, table_exists, &app_id, last_in_batch)
                .await?;
            if added {
                self.notes
                    .push("columns added from new message keys (see schema drift)".into());
            }
            table_exists = true;
            committed = last_in_batch;
            batches += 1;
            self.progress.advanced(0, self.counts.rows_read as u64);
            if !full || committed >= last {
                break;
            }
        }
        // How far behind the stream the lake is now (messages that arrived during the run, or
        // that max_batches left for the next).
        let now_last = stream
            .info()
            .await
            .map_err(|e| nats_error(src, "cannot read the stream's state", e))?
            .state
            .last_sequence;
        let lag = now_last.saturating_sub(committed);
        self.lag = Some(lag);
        self.notes.push(format!(
            "lake at stream sequence {committed} of {now_last} (lag {lag} messages)"
        ));
        Ok(())
    }

    /// Parses, types and commits one micro-batch. Returns whether columns were added.
    async fn commit_micro_batch(
        &mut self,
        fetched: Vec<Fetched>,
        schema: &mut SchemaRef,
        table_exists: bool,
        app_id: &str,
        last_in_batch: u64,
    ) -> Result<bool> {
        // Parse first, so that new keys become columns before any row is built.
        let parsed: Vec<(u64, ParsedMessage, &[u8])> = fetched
            .iter()
            .map(|f| {
                let obj = match serde_json::from_slice::<Json>(&f.payload) {
                    Ok(Json::Object(map)) => Ok(map),
                    Ok(other) => Err(format!(
                        "message is JSON but not an object (a {})",
                        json_kind(&other)
                    )),
                    Err(e) => Err(format!("message is not JSON: {e}")),
                };
                (f.sequence, obj, f.payload.as_slice())
            })
            .collect();
        let mut drift_events = Vec::new();
        for (_, obj, _) in &parsed {
            let Ok(obj) = obj else { continue };
            for (k, v) in obj {
                if crate::db::is_meta_column(k) || self.columns.iter().any(|c| &c.name == k) {
                    continue;
                }
                let load = infer_load(v);
                drift_events.push(DriftEvent {
                    id: 0,
                    dataset_id: self.dataset_id,
                    run_id: Some(self.run_id),
                    column_name: k.clone(),
                    change: "added".into(),
                    old_type: None,
                    new_type: Some(load.arrow().to_string()),
                    action: if table_exists {
                        "added to the table; earlier rows read NULL".into()
                    } else {
                        "typed from the first message that has it".into()
                    },
                    at: String::new(),
                });
                self.columns.push(SourceColumn {
                    name: k.clone(),
                    source_type: format!("json {}", json_kind(v)),
                    load,
                    note: None,
                });
            }
        }
        let added = !drift_events.is_empty() && table_exists;
        if !drift_events.is_empty() {
            self.collector.catalog().record_drift(&drift_events).await?;
            let mut fields: Vec<ArrowField> =
                schema.fields().iter().map(|f| f.as_ref().clone()).collect();
            if table_exists {
                for e in &drift_events {
                    if let Some(c) = self.columns.iter().find(|c| c.name == e.column_name) {
                        fields.push(ArrowField::new(&c.name, c.load.arrow(), true));
                    }
                }
                *schema = Arc::new(Schema::new(fields));
            } else {
                *schema = raw_schema(&self.columns);
            }
        }

        let row_schema = raw_schema(&self.columns);
        let mut builder = BatchBuilder::with(
            &self.batch_id,
            &self.source_name,
            0,
            &self.columns,
            row_schema,
        );
        for (sequence, obj, payload) in &parsed {
            builder.set_next_row(*sequence as i64);
            match obj {
                Ok(obj) => builder.push(
                    self.columns
                        .iter()
                        .map(|c| obj.get(&c.name).and_then(json_text))
                        .collect(),
                ),
                Err(reason) => builder.reject(
                    String::from_utf8_lossy(payload).into_owned(),
                    reason.clone(),
                ),
            }
        }
        let (batch, rejected) = builder.finish()?;
        let stats = std::mem::take(&mut builder.stats);
        drop(builder);
        let batch = drift::conform(batch, schema)?;
        let tags = CommitTags::default()
            .with_app_transaction(app_id, last_in_batch as i64)
            .with_metadata(SEQUENCE_KEY, last_in_batch.into())
            .with_metadata(BATCH_KEY, self.batch_id.clone().into());
        let mut write = self
            .collector
            .lake()
            .write(self.table.clone(), schema.clone())
            .with_tags(tags);
        if added {
            write = write.with_new_columns();
        }
        let mut sink = write.start().await?;
        if batch.num_rows() > 0 {
            sink.send(batch).await?;
        }
        let version = sink.finish().await?.version;
        self.version = Some(version);
        self.versions.push(version);
        account(
            &mut self.counts,
            &mut self.non_null,
            &mut self.rejected_sample,
            &stats,
            &rejected,
        );
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
        Ok(added)
    }
}

/// Columns known before any message is read: the table's, then declared ones it lacks.
fn initial_columns(
    existing: Option<&SchemaRef>,
    specs: &[ColumnSpec],
) -> Result<Vec<SourceColumn>> {
    let mut columns = Vec::new();
    if let Some(schema) = existing {
        for f in schema.fields() {
            if crate::db::is_meta_column(f.name()) {
                continue;
            }
            let load = load_of_arrow(f.data_type()).ok_or_else(|| {
                Error::Invalid(format!(
                    "column {:?} of the table has type {}, which a stream cannot load into",
                    f.name(),
                    f.data_type()
                ))
            })?;
            columns.push(SourceColumn {
                name: f.name().clone(),
                source_type: "json".into(),
                load,
                note: None,
            });
        }
    }
    for s in specs {
        if columns.iter().any(|c| c.name == s.name) {
            continue;
        }
        if let Some(ty) = s.ty {
            columns.push(SourceColumn {
                name: s.name.clone(),
                source_type: format!("declared {}", ty.as_str()),
                load: load_of_declared(ty),
                note: None,
            });
        }
    }
    Ok(columns)
}

fn load_of_declared(ty: ColumnType) -> LoadType {
    match ty {
        ColumnType::Utf8 => LoadType::Text { json: false },
        ColumnType::Int64 => LoadType::Int,
        ColumnType::Float64 => LoadType::Float,
        ColumnType::Boolean => LoadType::Bool,
        ColumnType::Date => LoadType::Date,
        ColumnType::Timestamp => LoadType::Timestamp,
    }
}

fn load_of_arrow(t: &DataType) -> Option<LoadType> {
    Some(match t {
        DataType::Utf8 => LoadType::Text { json: false },
        DataType::Int64 => LoadType::Int,
        DataType::Float64 => LoadType::Float,
        DataType::Boolean => LoadType::Bool,
        DataType::Date32 => LoadType::Date,
        DataType::Timestamp(TimeUnit::Microsecond, None) => LoadType::Timestamp,
        DataType::Timestamp(TimeUnit::Microsecond, Some(_)) => LoadType::TimestampUtc,
        DataType::Decimal128(precision, scale) => LoadType::Decimal {
            precision: *precision,
            scale: *scale,
        },
        DataType::Binary => LoadType::Binary,
        _ => return None,
    })
}

/// The column type a JSON value suggests.
fn infer_load(v: &Json) -> LoadType {
    match v {
        Json::Bool(_) => LoadType::Bool,
        Json::Number(n) if n.is_i64() => LoadType::Int,
        Json::Number(n) if n.is_u64() => LoadType::UnsignedBig,
        Json::Number(_) => LoadType::Float,
        Json::Object(_) | Json::Array(_) => LoadType::Text { json: true },
        Json::String(_) | Json::Null => LoadType::Text { json: false },
    }
}

fn json_kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "boolean",
        Json::Number(_) => "number",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    }
}

/// A JSON value as the text the column parsers read.
fn json_text(v: &Json) -> Option<String> {
    match v {
        Json::Null => None,
        Json::String(s) => Some(s.clone()),
        Json::Bool(b) => Some(b.to_string()),
        Json::Number(n) => Some(n.to_string()),
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_values_type_and_render() {
        assert_eq!(infer_load(&serde_json::json!(5)), LoadType::Int);
        assert_eq!(
            infer_load(&serde_json::json!(18446744073709551615u64)),
            LoadType::UnsignedBig
        );
        assert_eq!(infer_load(&serde_json::json!(1.5)), LoadType::Float);
        assert_eq!(
            infer_load(&serde_json::json!({"a": 1})),
            LoadType::Text { json: true }
        );
        assert_eq!(json_text(&serde_json::json!("松江")), Some("松江".into()));
        assert_eq!(json_text(&serde_json::json!(null)), None);
        assert_eq!(json_text(&serde_json::json!([1, 2])), Some("[1,2]".into()));
    }
}
