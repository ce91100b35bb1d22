//! The policy engine: every table a principal scans resolves through its grants.
//!
//! ```text
//!   user SQL ──► planner ──► … ──► PolicyScan (a leaf: nothing of the user's gets inside)
//!                                     │ own plan, planned and optimized apart:
//!                                     └─ Projection: masks (per granted column)
//!                                          └─ Filter: the grant's row filter
//!                                               └─ Delta scan (all columns the two need)
//! ```
//!
//! A granted table is a [`PolicyTable`]: its schema holds only the granted columns, typed as
//! their masks make them (a masked column is text). Its scan is a plan of its own — row filter,
//! then masks — wrapped in [`PolicyExec`], a leaf node that hides its input: the optimizer cannot
//! push a user's predicate, cast or function below the masks or the row filter (filters are not
//! pushed into the table, and a leaf has no child to push into), statistics and constraints of
//! the raw table are not passed on (so `min`/`max`/`count` are never answered from file
//! metadata), and `EXPLAIN` shows the node, not the raw scan, its columns or the filter.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use arrow::array::{Array, ArrayRef, RecordBatch, RecordBatchOptions, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::datasource::provider_as_source;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, LogicalPlanBuilder, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, TableType, Volatility, cast, ident, lit,
};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning,
    PlanProperties, ReplaceChildrenOptions,
};
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use reservoir_access::mask::{MaskKey, REDACTED};
use reservoir_access::{GrantColumn, Mask};

/// Rows read under one grant by every session of the process, against the grant's quota.
/// Shared, so that parallel connections draw on one count instead of each on the quota that
/// was left when it began.
#[derive(Debug)]
struct GrantMeter {
    quota: AtomicU64,
    used: AtomicU64,
}

/// The meter of grant `grant_id` of the home whose lake is `lake`, brought up to what the
/// catalog has charged (`served`: rows other processes, or this one earlier, have charged).
fn meter(lake: &str, grant_id: i64, quota: u64, served: u64) -> Arc<GrantMeter> {
    /// By (lake root, grant): one process may serve several homes (tests do).
    type Meters = HashMap<(String, i64), Arc<GrantMeter>>;
    static METERS: OnceLock<Mutex<Meters>> = OnceLock::new();
    let mut meters = METERS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let m = meters
        .entry((lake.to_string(), grant_id))
        .or_insert_with(|| {
            Arc::new(GrantMeter {
                quota: AtomicU64::new(quota),
                used: AtomicU64::new(served),
            })
        })
        .clone();
    m.quota.store(quota, Ordering::Relaxed);
    m.used.fetch_max(served, Ordering::Relaxed);
    m
}

impl GrantMeter {
    /// Draws `rows`, or nothing when they would pass the quota: then `Err` with the rows left.
    fn draw(&self, rows: u64) -> std::result::Result<(), u64> {
        let used = self.used.fetch_add(rows, Ordering::Relaxed) + rows;
        let quota = self.quota.load(Ordering::Relaxed);
        if used > quota {
            self.used.fetch_sub(rows, Ordering::Relaxed);
            return Err(quota.saturating_sub(used - rows));
        }
        Ok(())
    }
}

/// Draws `rows` from the quota of grant `grant_id` of the home whose lake is at `lake`, on the
/// meter SQL scans draw on: for readers that hand out a table's rows without a scan (Delta
/// Sharing). `quota: None` draws nothing; past the quota nothing is drawn and `Err` holds the
/// rows left.
pub fn draw_quota(
    lake: &str,
    grant_id: i64,
    quota: Option<u64>,
    served: u64,
    rows: u64,
) -> std::result::Result<(), u64> {
    match quota {
        Some(q) => meter(lake, grant_id, q, served).draw(rows),
        None => Ok(()),
    }
}

/// Rows a grant's scans read in one session, and the grant's quota. An aggregate counts every
/// row it reads, not the one it returns: a quota is rows read from the table.
#[derive(Debug)]
pub struct RowBudget {
    pub grant_id: i64,
    meter: Option<Arc<GrantMeter>>,
    read: AtomicU64,
}

impl RowBudget {
    /// The budget of grant `grant_id` of the home whose lake is at `lake`, with `quota` rows
    /// (`None`: no quota) of which `served` are charged already.
    pub fn new(lake: &str, grant_id: i64, quota: Option<u64>, served: u64) -> Self {
        Self {
            grant_id,
            meter: quota.map(|q| meter(lake, grant_id, q, served)),
            read: AtomicU64::new(0),
        }
    }

    /// Rows read in this session since the last [`RowBudget::take_read`].
    pub fn read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }

    /// Rows read in this session since the last call, and starts counting again.
    pub fn take_read(&self) -> u64 {
        self.read.swap(0, Ordering::Relaxed)
    }

    /// Counts `rows` read, or refuses them (uncounted) when they would pass the quota.
    fn take(&self, rows: u64) -> Result<()> {
        if let Some(meter) = &self.meter
            && meter.draw(rows).is_err()
        {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "grant {} allows {} rows to be read and this query reads past them \
                 (aggregates count every row they read); narrow it or ask for a larger quota",
                self.grant_id,
                meter.quota.load(Ordering::Relaxed)
            )));
        }
        self.read.fetch_add(rows, Ordering::Relaxed);
        Ok(())
    }
}

/// A table seen through a grant.
#[derive(Debug)]
pub(crate) struct PolicyTable {
    /// `unit.dataset`, for plans and messages.
    label: String,
    inner: Arc<dyn TableProvider>,
    /// The granted columns, in the table's order, typed as masked.
    schema: SchemaRef,
    /// One expression per exposed column, over the raw table.
    exprs: Vec<Expr>,
    row_filter: Option<Expr>,
    masked: usize,
    budget: Option<Arc<RowBudget>>,
}

impl PolicyTable {
    /// Wraps `inner` in a grant's columns, masks and row filter. An unusable row filter is an
    /// error, so the table is refused rather than shown unfiltered.
    pub(crate) fn new(
        label: String,
        inner: Arc<dyn TableProvider>,
        columns: &[GrantColumn],
        row_filter: Option<&str>,
        key: Option<Arc<MaskKey>>,
    ) -> Result<Self> {
        let raw = inner.schema();
        let mut fields = Vec::new();
        let mut exprs = Vec::new();
        let mut masked = 0;
        for field in raw.fields() {
            let Some(grant) = columns.iter().find(|c| c.name == *field.name()) else {
                continue;
            };
            let column = ident(field.name());
            let (expr, data_type, nullable) = match grant.mask {
                Mask::None => (column, field.data_type().clone(), field.is_nullable()),
                Mask::Null => (
                    lit(ScalarValue::try_from(field.data_type())?),
                    field.data_type().clone(),
                    true,
                ),
                mask => {
                    let udf = ScalarUDF::new_from_impl(MaskUdf::new(mask, key.clone()));
                    (
                        udf.call(vec![cast(column, DataType::Utf8)]),
                        DataType::Utf8,
                        true,
                    )
                }
            };
            if !grant.mask.is_none() {
                masked += 1;
            }
            fields.push(Field::new(field.name(), data_type, nullable));
            exprs.push(expr.alias(field.name()));
        }
        let row_filter = match row_filter.map(str::trim).filter(|f| !f.is_empty()) {
            Some(sql) => Some(parse_row_filter(&label, sql, raw.as_ref())?),
            None => None,
        };
        Ok(Self {
            label,
            inner,
            schema: Arc::new(Schema::new(fields)),
            exprs,
            row_filter,
            masked,
            budget: None,
        })
    }

    /// Counts (and caps) the rows its scans read.
    pub(crate) fn with_budget(mut self, budget: Arc<RowBudget>) -> Self {
        self.budget = Some(budget);
        self
    }
}

/// Parses a grant's row filter against the raw table's columns; it must be a condition.
pub fn parse_row_filter(table: &str, sql: &str, raw: &Schema) -> Result<Expr> {
    let schema = DFSchema::try_from(raw.clone())?;
    let expr = SessionContext::new()
        .parse_sql_expr(sql, &schema)
        .map_err(|e| {
            DataFusionError::Plan(format!(
                "the row filter {sql:?} of {table} is not usable: {e}"
            ))
        })?;
    let data_type = expr.get_type(&schema).map_err(|e| {
        DataFusionError::Plan(format!(
            "the row filter {sql:?} of {table} is not usable: {e}"
        ))
    })?;
    if data_type != DataType::Boolean {
        return Err(DataFusionError::Plan(format!(
            "the row filter {sql:?} of {table} is a {data_type} expression; expected a condition \
             (true or false for each row), e.g. street = '方松街道'"
        )));
    }
    Ok(expr)
}

#[async_trait]
impl TableProvider for PolicyTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let (schema, exprs) = match projection {
            Some(p) => (
                Arc::new(self.schema.project(p)?),
                p.iter().map(|i| self.exprs[*i].clone()).collect::<Vec<_>>(),
            ),
            None => (self.schema.clone(), self.exprs.clone()),
        };
        let mut plan = LogicalPlanBuilder::scan(
            datafusion::common::TableReference::bare(self.label.as_str()),
            provider_as_source(self.inner.clone()),
            None,
        )?;
        if let Some(filter) = &self.row_filter {
            plan = plan.filter(filter.clone())?;
        }
        let mut plan = plan.project(exprs)?;
        // DataFusion offers a limit only when nothing above the scan filters its rows: the first
        // `limit` visible rows are then all the query needs (and all the quota is charged).
        if let Some(n) = limit {
            plan = plan.limit(0, Some(n))?;
        }
        let input = state.create_physical_plan(&plan.build()?).await?;
        Ok(Arc::new(PolicyExec::new(
            self.label.clone(),
            schema,
            input,
            self.row_filter.is_some(),
            self.masked,
            self.budget.clone(),
        )))
    }
}

/// The scan of a granted table: a leaf that runs its own, hidden plan.
#[derive(Debug)]
pub(crate) struct PolicyExec {
    label: String,
    schema: SchemaRef,
    input: Arc<dyn ExecutionPlan>,
    filtered: bool,
    masked: usize,
    budget: Option<Arc<RowBudget>>,
    properties: Arc<PlanProperties>,
}

impl PolicyExec {
    fn new(
        label: String,
        schema: SchemaRef,
        input: Arc<dyn ExecutionPlan>,
        filtered: bool,
        masked: usize,
        budget: Option<Arc<RowBudget>>,
    ) -> Self {
        let partitions = input.properties().partitioning.partition_count();
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Self {
            label,
            schema,
            input,
            filtered,
            masked,
            budget,
            properties,
        }
    }
}

impl DisplayAs for PolicyExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "PolicyScan: {}, columns={}, masked={}, row_filter={}",
            self.label,
            self.schema.fields().len(),
            self.masked,
            if self.filtered { "yes" } else { "no" }
        )
    }
}

impl ExecutionPlan for PolicyExec {
    fn name(&self) -> &str {
        "PolicyScan"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let schema = self.schema.clone();
        let stream = self.input.execute(partition, context)?;
        let out = schema.clone();
        let budget = self.budget.clone();
        let batches = stream.map(move |batch| {
            let batch = batch?;
            if let Some(b) = &budget {
                b.take(batch.num_rows() as u64)?;
            }
            // The hidden plan's fields may differ in nullability or metadata; the values are
            // what the exposed schema says.
            // (A count(*) reads no column: keep the row count.)
            let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
            Ok(RecordBatch::try_new_with_options(
                out.clone(),
                batch.columns().to_vec(),
                &options,
            )?)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, batches)))
    }
}

/// A text mask as a scalar function over a column cast to text.
#[derive(Debug, PartialEq, Eq, Hash)]
struct MaskUdf {
    mask: Mask,
    key: Option<Arc<MaskKey>>,
    name: String,
    signature: Signature,
}

impl MaskUdf {
    fn new(mask: Mask, key: Option<Arc<MaskKey>>) -> Self {
        let name = format!("mask_{}", mask.to_string().replace([':', ','], "_"));
        Self {
            mask,
            key,
            name,
            signature: Signature::exact(vec![DataType::Utf8], Volatility::Immutable),
        }
    }

    fn apply(&self, value: &str) -> Option<String> {
        match (self.mask, &self.key) {
            (Mask::Hash, Some(key)) => Some(key.hash(value)),
            // Without the key a hash mask cannot be computed; fail closed.
            (Mask::Hash, None) => Some(REDACTED.to_string()),
            (mask, _) => mask.apply_text(value),
        }
    }
}

impl ScalarUDFImpl for MaskUdf {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let Some(arg) = args.args.into_iter().next() else {
            return Err(DataFusionError::Internal(format!(
                "{} takes one argument",
                self.name
            )));
        };
        let array: ArrayRef = arg.into_array(rows)?;
        let Some(text) = array.as_any().downcast_ref::<StringArray>() else {
            return Err(DataFusionError::Internal(format!(
                "{} expects text, got {}",
                self.name,
                array.data_type()
            )));
        };
        let masked: StringArray = text.iter().map(|v| v.and_then(|v| self.apply(v))).collect();
        Ok(ColumnarValue::Array(Arc::new(masked)))
    }
}
