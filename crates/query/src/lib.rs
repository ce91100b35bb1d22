//! SQL over the lake with DataFusion.
//!
//! ```text
//!  SQL ─► DataFusion planner ─► catalogs = lake layers (raw, std, …, quarantine)
//!                                  schemas  = units     (minzheng, tongji, …)
//!                                  tables   = datasets  (Delta tables, opened on first use)
//! ```
//!
//! Tables are named `layer.unit.dataset`; `unit.dataset` means the raw layer. Quoted identifiers
//! work for any name (`raw."民政"."村居"`).
//!
//! A session is built for one principal's [`Visibility`]: tables it may not see are not in the
//! session at all (they "do not exist"), and tables it sees through a grant are scanned by the
//! policy engine ([`policy`]), which applies the grant's row filter and column masks before any
//! expression of the query. The local CLI and operators see everything ([`QueryEngine::new`]).

mod capped;
mod error;
pub mod executor;
pub mod guard;
pub mod output;
pub mod policy;
pub mod snapshot;

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};
use datafusion::sql::sqlparser::ast::Statement;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use reservoir_access::mask::MaskKey;
use reservoir_access::{TableAccess, Visibility};
use reservoir_catalog::{Catalog, DatasetFilter};
use reservoir_lake::{Lake, Layer, TableRef};

pub use error::{Error, Result};

/// A SQL session over the whole lake.
#[derive(Clone)]
pub struct QueryEngine {
    ctx: SessionContext,
    /// Rows read through each grant in this session.
    budgets: Vec<Arc<policy::RowBudget>>,
}

impl QueryEngine {
    /// Builds a session that sees every dataset in the catalog (and each one's quarantine table),
    /// unmasked: for the local CLI and operators.
    pub async fn new(lake: &Lake, catalog: &Catalog) -> Result<Self> {
        Self::for_visibility(lake, catalog, &Visibility::everything(), None).await
    }

    /// Builds a session that sees what `visibility` allows: fully visible datasets as stored
    /// (with their quarantine and quality tables), granted ones through the policy engine, the
    /// rest not at all. `key` computes keyed-hash masks (without it they redact).
    pub async fn for_visibility(
        lake: &Lake,
        catalog: &Catalog,
        visibility: &Visibility,
        key: Option<Arc<MaskKey>>,
    ) -> Result<Self> {
        let config = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema(Layer::Raw.as_str(), "public");
        // Pseudonyms are the principal's own (see `MaskKey::for_principal`).
        let key = match visibility.principal() {
            Some(name) => key.map(|k| Arc::new(k.for_principal(name))),
            None => key,
        };
        let runtime = executor::runtime_env();
        let ctx = SessionContext::new_with_state(executor::session_state(config, runtime.clone()));

        // layer → unit → table name → how it is seen
        let mut layout: BTreeMap<Layer, BTreeMap<String, BTreeMap<String, Seen>>> = BTreeMap::new();
        let mut budgets = Vec::new();
        for layer in Layer::ALL {
            layout.entry(layer).or_default();
        }
        for d in catalog.datasets(&DatasetFilter::default()).await? {
            let Ok(layer) = d.layer.parse::<Layer>() else {
                continue;
            };
            let Some(access) = visibility.table(&d) else {
                continue;
            };
            let full = access == TableAccess::Full;
            let budget = access.grant_id().map(|g| {
                let grant = visibility.grants().values().find(|x| x.id == g);
                let quota = grant.and_then(|x| x.row_quota).map(|q| q.max(0) as u64);
                let served = grant.map_or(0, |x| x.rows_served.max(0) as u64);
                let b = Arc::new(policy::RowBudget::new(
                    lake.root().as_str(),
                    g,
                    quota,
                    served,
                ));
                budgets.push(b.clone());
                b
            });
            layout
                .entry(layer)
                .or_default()
                .entry(d.unit_id.clone())
                .or_default()
                .insert(d.name.clone(), (access, budget));
            // Quarantine and quality tables hold raw values: only with full access.
            if layer == Layer::Raw && full {
                for derived in [Layer::Quarantine, Layer::Quality] {
                    layout
                        .entry(derived)
                        .or_default()
                        .entry(d.unit_id.clone())
                        .or_default()
                        .insert(d.name.clone(), (TableAccess::Full, None));
                }
            }
        }
        for (layer, units) in layout {
            let schemas = units
                .into_iter()
                .map(|(unit, tables)| {
                    let schema = UnitSchema {
                        lake: lake.clone(),
                        layer,
                        unit: unit.clone(),
                        tables,
                        runtime: runtime.clone(),
                        key: key.clone(),
                    };
                    (unit, Arc::new(schema) as Arc<dyn SchemaProvider>)
                })
                .collect();
            ctx.register_catalog(
                layer.as_str(),
                Arc::new(LayerCatalog {
                    schemas: std::sync::RwLock::new(schemas),
                }),
            );
        }
        Ok(Self { ctx, budgets })
    }

    /// Rows read through each grant so far in this session: (grant, rows).
    pub fn rows_read(&self) -> Vec<(i64, u64)> {
        self.budgets
            .iter()
            .map(|b| (b.grant_id, b.read()))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// Rows read through each grant since the last call (for a session that runs many
    /// statements and charges each one's reads).
    pub fn take_rows_read(&self) -> Vec<(i64, u64)> {
        self.budgets
            .iter()
            .map(|b| (b.grant_id, b.take_read()))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// The DataFusion context, for callers that build plans themselves.
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Plans a read-only SQL statement.
    pub async fn sql(&self, sql: &str) -> Result<DataFrame> {
        check_read_only(sql)?;
        let options = datafusion::execution::context::SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        Ok(self.ctx.sql_with_options(sql, options).await?)
    }

    /// Runs a read-only statement and collects the result.
    pub async fn query(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        Ok(self.sql(sql).await?.collect().await?)
    }
}

/// The tables a plan scans (subqueries included) and the columns it reads of each, as the
/// query named them — the audit log's account of a query, on every path.
pub fn scanned_tables(
    plan: &datafusion::logical_expr::LogicalPlan,
) -> Vec<(datafusion::common::TableReference, Vec<String>)> {
    use datafusion::common::tree_node::TreeNodeRecursion;
    let mut out = Vec::new();
    let _ = plan.apply_with_subqueries(|node| {
        if let datafusion::logical_expr::LogicalPlan::TableScan(scan) = node {
            let cols = scan
                .projected_schema
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            out.push((scan.table_name.clone(), cols));
        }
        Ok(TreeNodeRecursion::Continue)
    });
    out
}

/// Checks a grant's row filter against the raw table `unit.name`: it must parse, name only the
/// table's columns and be a condition. Approvals call this before provisioning a grant.
pub async fn validate_row_filter(lake: &Lake, unit: &str, name: &str, sql: &str) -> Result<()> {
    let table = TableRef::new(Layer::Raw, unit, name);
    let Some(schema) = lake.arrow_schema(&table).await? else {
        return Err(Error::Plan(format!(
            "{unit}.{name} has no data yet; a row filter is checked against its columns"
        )));
    };
    policy::parse_row_filter(&format!("{unit}.{name}"), sql, &schema)?;
    Ok(())
}

/// Refuses anything but queries before planning, with a message that names the statement,
/// and statements too long or nested too deep to plan ([`guard`]).
pub fn check_read_only(sql: &str) -> Result<()> {
    let statements = match guard::parse(sql, &GenericDialect {})? {
        Ok(s) => s,
        // Let DataFusion report syntax errors in its own words.
        Err(_) => return Ok(()),
    };
    if statements.len() > 1 {
        return Err(Error::Plan("only one statement at a time".into()));
    }
    statements.iter().try_for_each(check_read_only_statement)
}

/// Refuses a parsed statement that is not a query, naming it in `Error::ReadOnly` by its first
/// two words (`CREATE TABLE`, `DELETE FROM`).
pub fn check_read_only_statement(statement: &Statement) -> Result<()> {
    match statement {
        Statement::Query(_)
        | Statement::Explain { .. }
        | Statement::ExplainTable { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowVariable { .. } => Ok(()),
        other => {
            let text = other.to_string();
            let head: String = text
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ");
            Err(Error::ReadOnly(head))
        }
    }
}

/// One lake layer as a DataFusion catalog; its schemas are units (and, in a PostgreSQL wire
/// session, `pg_catalog`).
#[derive(Debug)]
struct LayerCatalog {
    schemas: std::sync::RwLock<BTreeMap<String, Arc<dyn SchemaProvider>>>,
}

impl CatalogProvider for LayerCatalog {
    fn schema_names(&self) -> Vec<String> {
        match self.schemas.read() {
            Ok(s) => s.keys().cloned().collect(),
            Err(poisoned) => poisoned.get_ref().keys().cloned().collect(),
        }
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        match self.schemas.read() {
            Ok(s) => s.get(name).cloned(),
            Err(poisoned) => poisoned.get_ref().get(name).cloned(),
        }
    }

    /// Adds a schema of system tables; a unit's name cannot be taken.
    fn register_schema(
        &self,
        name: &str,
        schema: Arc<dyn SchemaProvider>,
    ) -> datafusion::error::Result<Option<Arc<dyn SchemaProvider>>> {
        let mut schemas = self
            .schemas
            .write()
            .map_err(|_| DataFusionError::Internal("catalog lock poisoned".into()))?;
        if let Some(existing) = schemas.get(name)
            && existing.is::<UnitSchema>()
        {
            return Err(DataFusionError::Plan(format!(
                "{name} is a unit's schema and cannot be replaced"
            )));
        }
        Ok(schemas.insert(name.to_string(), schema))
    }
}

/// One unit's tables in one layer, opened from the lake when a query first names them.
struct UnitSchema {
    lake: Lake,
    layer: Layer,
    unit: String,
    tables: BTreeMap<String, Seen>,
    runtime: Arc<RuntimeEnv>,
    key: Option<Arc<MaskKey>>,
}

/// How a table is seen, and the row budget of its grant.
type Seen = (TableAccess, Option<Arc<policy::RowBudget>>);

impl std::fmt::Debug for UnitSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnitSchema")
            .field("layer", &self.layer)
            .field("unit", &self.unit)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl SchemaProvider for UnitSchema {
    fn table_names(&self) -> Vec<String> {
        self.tables.keys().cloned().collect()
    }

    async fn table(&self, name: &str) -> datafusion::error::Result<Option<Arc<dyn TableProvider>>> {
        let Some((access, budget)) = self.tables.get(name) else {
            return Ok(None);
        };
        let table = TableRef::new(self.layer, &self.unit, name);
        let external = |e: reservoir_lake::Error| DataFusionError::External(Box::new(e));
        let Some(delta) = self.lake.open(&table).await.map_err(external)? else {
            // Registered but never written (e.g. a quarantine table of a clean dataset).
            return Ok(None);
        };
        let state = SessionStateBuilder::new()
            .with_runtime_env(self.runtime.clone())
            .build();
        delta
            .update_datafusion_session(&state)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let provider = reservoir_lake::table_provider(&delta)
            .await
            .map_err(external)?;
        match access {
            TableAccess::Full => Ok(Some(provider)),
            TableAccess::Granted {
                columns,
                row_filter,
                ..
            } => {
                let label = format!("{}.{}", self.unit, name);
                let table = policy::PolicyTable::new(
                    label.clone(),
                    provider,
                    columns,
                    row_filter.as_deref(),
                    self.key.clone(),
                )
                .map_err(|e| {
                    // The details name raw columns the principal may not see: log them only.
                    tracing::error!("grant on {label} cannot be applied: {e}");
                    DataFusionError::Plan(format!(
                        "the grant on {label} no longer fits the table (its row filter or columns \
                         changed); ask the dataset's steward to renew it"
                    ))
                })?;
                let table = match budget {
                    Some(b) => table.with_budget(b.clone()),
                    None => table,
                };
                Ok(Some(Arc::new(table)))
            }
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        self.tables.contains_key(name)
    }
}
