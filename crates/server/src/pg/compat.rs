//! PostgreSQL as drivers expect it, where DataFusion and the catalog crate differ: the
//! `pg_catalog` of a session (the raw layer's granted tables), the settings and functions
//! drivers call on connect and reflection, and rewrites of the expressions their catalog
//! queries use that DataFusion does not plan.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use arrow::array::RecordBatch;
use async_trait::async_trait;
use datafusion::arrow::datatypes::DataType;
use datafusion::catalog::CatalogProviderList;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::Expr;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::catalog_info::CatalogInfo;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::{
    PgCatalogSchemaProvider, PgCatalogStaticTables,
};
use datafusion_postgres::datafusion_pg_catalog::setup_pg_catalog;

/// PostgreSQL expressions of drivers' catalog queries that DataFusion does not plan, rewritten
/// into ones it does:
/// - composite field access `(expr).a.b` (pgJDBC's `(_pg_expandarray(i.indkey)).n`) into
///   `get_field(get_field(expr, 'a'), 'b')`;
/// - `generate_subscripts(array, dim)` (SQLAlchemy's key reflection, beside `unnest(array)`)
///   into `unnest(generate_series(1, cardinality(array)))`, the same subscripts in the same rows
///   for the one-dimensional arrays there are here.
pub(super) struct ClientRewrites;

fn sql_call(
    name: &str,
    args: Vec<datafusion::sql::sqlparser::ast::Expr>,
) -> datafusion::sql::sqlparser::ast::Expr {
    use datafusion::sql::sqlparser::ast::{
        Expr as SqlExpr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList,
        FunctionArguments, Ident, ObjectName,
    };
    SqlExpr::Function(Function {
        name: ObjectName::from(vec![Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|e| FunctionArg::Unnamed(FunctionArgExpr::Expr(e)))
                .collect(),
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

impl datafusion::sql::sqlparser::ast::VisitorMut for ClientRewrites {
    type Break = ();

    fn post_visit_expr(
        &mut self,
        expr: &mut datafusion::sql::sqlparser::ast::Expr,
    ) -> std::ops::ControlFlow<()> {
        use datafusion::sql::sqlparser::ast::{
            AccessExpr, DataType as SqlType, Expr as SqlExpr, FunctionArg, FunctionArgExpr,
            FunctionArguments, Value,
        };
        match expr {
            SqlExpr::CompoundFieldAccess { root, access_chain } => {
                let names: Option<Vec<String>> = access_chain
                    .iter()
                    .map(|a| match a {
                        AccessExpr::Dot(SqlExpr::Identifier(id)) => Some(id.value.clone()),
                        _ => None,
                    })
                    .collect();
                if let (SqlExpr::Nested(inner), Some(names)) = (root.as_ref(), names) {
                    let mut out = inner.as_ref().clone();
                    for name in names {
                        let field = SqlExpr::Value(Value::SingleQuotedString(name).into());
                        out = sql_call("get_field", vec![out, field]);
                    }
                    *expr = out;
                }
            }
            SqlExpr::Function(f)
                if f.name
                    .to_string()
                    .eq_ignore_ascii_case("generate_subscripts") =>
            {
                let FunctionArguments::List(list) = &f.args else {
                    return std::ops::ControlFlow::Continue(());
                };
                // The dimension is not looked at (drivers pass it as a parameter): PostgreSQL's
                // catalog arrays and the lake's are one-dimensional.
                let [FunctionArg::Unnamed(FunctionArgExpr::Expr(array)), _] = list.args.as_slice()
                else {
                    return std::ops::ControlFlow::Continue(());
                };
                let one = SqlExpr::Value(Value::Number("1".into(), false).into());
                let n = SqlExpr::Cast {
                    kind: datafusion::sql::sqlparser::ast::CastKind::Cast,
                    expr: Box::new(sql_call("cardinality", vec![array.clone()])),
                    data_type: SqlType::BigInt(None),
                    array: false,
                    format: None,
                };
                *expr = sql_call("unnest", vec![sql_call("generate_series", vec![one, n])]);
            }
            _ => {}
        }
        std::ops::ControlFlow::Continue(())
    }
}

/// What `pg_catalog` describes: the raw layer's units and datasets the session sees (other
/// layers are queried by their three-part names and not listed, so each table appears once).
#[derive(Debug, Clone)]
struct RawLayer(Arc<dyn CatalogProviderList>);

#[async_trait]
impl CatalogInfo for RawLayer {
    async fn catalog_names(&self) -> Result<Vec<String>, DataFusionError> {
        Ok(vec![reservoir_lake::Layer::Raw.as_str().to_string()])
    }

    async fn schema_names(&self, catalog: &str) -> Result<Option<Vec<String>>, DataFusionError> {
        CatalogInfo::schema_names(&self.0, catalog).await
    }

    async fn table_names(
        &self,
        catalog: &str,
        schema: &str,
    ) -> Result<Option<Vec<String>>, DataFusionError> {
        CatalogInfo::table_names(&self.0, catalog, schema).await
    }

    async fn table_schema(
        &self,
        catalog: &str,
        schema: &str,
        table: &str,
    ) -> Result<Option<datafusion::arrow::datatypes::SchemaRef>, DataFusionError> {
        CatalogInfo::table_schema(&self.0, catalog, schema, table).await
    }

    async fn table_type(
        &self,
        catalog: &str,
        schema: &str,
        table: &str,
    ) -> Result<Option<datafusion::datasource::TableType>, DataFusionError> {
        CatalogInfo::table_type(&self.0, catalog, schema, table).await
    }
}

/// Installs PostgreSQL's system catalog and functions into a session: `pg_catalog` lists the
/// raw layer's tables the session sees, nothing more.
pub(super) async fn install_pg_catalog(
    ctx: &datafusion::prelude::SessionContext,
) -> Result<(), DataFusionError> {
    let raw = reservoir_lake::Layer::Raw.as_str();
    setup_pg_catalog(ctx, raw, EmptyContextProvider).map_err(|e| *e)?;
    static STATIC_TABLES: OnceLock<Arc<PgCatalogStaticTables>> = OnceLock::new();
    let tables = match STATIC_TABLES.get() {
        Some(t) => t.clone(),
        None => {
            let t = Arc::new(PgCatalogStaticTables::try_new()?);
            STATIC_TABLES.get_or_init(|| t).clone()
        }
    };
    let provider = PgCatalogSchemaProvider::try_new(
        RawLayer(ctx.state().catalog_list().clone()),
        tables,
        EmptyContextProvider,
    )?;
    let provider = CompatCatalog::try_new(provider).await?;
    if let Some(catalog) = ctx.catalog(raw) {
        catalog.register_schema("pg_catalog", Arc::new(provider))?;
    }
    register_client_functions(ctx);
    register_to_regtype(ctx).await?;
    Ok(())
}

/// `to_regtype(name)`: a type's oid by name, NULL when there is no such type (psycopg asks for
/// `hstore` this way when SQLAlchemy connects). Names as PostgreSQL takes them: `int4`,
/// `integer`, `pg_catalog.text`, `character varying`, `int4[]`.
async fn register_to_regtype(
    ctx: &datafusion::prelude::SessionContext,
) -> Result<(), DataFusionError> {
    use datafusion::arrow::array::{Array, AsArray, Int32Builder};
    use datafusion::arrow::datatypes::Int32Type;
    use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};

    static TYPES: tokio::sync::OnceCell<Arc<HashMap<String, i32>>> =
        tokio::sync::OnceCell::const_new();
    let types = TYPES
        .get_or_try_init(|| async {
            let batches = ctx
                .sql("SELECT typname, CAST(oid AS INT) FROM pg_catalog.pg_type")
                .await?
                .collect()
                .await?;
            let mut types = HashMap::new();
            for b in &batches {
                let names = datafusion::arrow::compute::cast(b.column(0), &DataType::Utf8)?;
                let (names, oids) = (
                    names.as_string::<i32>(),
                    b.column(1).as_primitive::<Int32Type>(),
                );
                for i in 0..b.num_rows() {
                    if !names.is_null(i) && !oids.is_null(i) {
                        types.insert(names.value(i).to_string(), oids.value(i));
                    }
                }
            }
            Ok::<_, DataFusionError>(Arc::new(types))
        })
        .await?
        .clone();
    let lookup = move |name: &str| -> Option<i32> {
        let name = name.trim().to_lowercase();
        let name = name.strip_prefix("pg_catalog.").unwrap_or(&name);
        let (base, array) = match name.strip_suffix("[]") {
            Some(base) => (base.trim(), true),
            None => (name, false),
        };
        let base = match base {
            "integer" | "int" => "int4",
            "bigint" => "int8",
            "smallint" => "int2",
            "boolean" => "bool",
            "real" => "float4",
            "double precision" => "float8",
            "character varying" => "varchar",
            "character" | "char" => "bpchar",
            "decimal" => "numeric",
            "timestamp without time zone" => "timestamp",
            "timestamp with time zone" => "timestamptz",
            "time without time zone" => "time",
            "time with time zone" => "timetz",
            other => other,
        };
        let key = if array {
            format!("_{base}")
        } else {
            base.to_string()
        };
        types.get(&key).copied()
    };
    ctx.register_udf(create_udf(
        "to_regtype",
        vec![DataType::Utf8],
        DataType::Int32,
        Volatility::Stable,
        Arc::new(move |args| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let names = arrays[0].as_string::<i32>();
            let mut out = Int32Builder::with_capacity(names.len());
            for name in names.iter() {
                out.append_option(name.and_then(&lookup));
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish())))
        }),
    ));
    Ok(())
}

/// The settings drivers read from `pg_settings` (pgJDBC's `max_index_keys` before a foreign
/// key lookup, SQLAlchemy's and BI tools' encodings and identifier length); the catalog crate
/// has `standard_conforming_strings` only. Values are this server's, in PostgreSQL's form.
const SETTINGS: &[(&str, &str, &str)] = &[
    ("block_size", "8192", "integer"),
    ("client_encoding", "UTF8", "string"),
    ("DateStyle", "ISO, MDY", "string"),
    ("default_transaction_read_only", "on", "bool"),
    ("integer_datetimes", "on", "bool"),
    ("IntervalStyle", "postgres", "enum"),
    ("max_identifier_length", "63", "integer"),
    ("max_index_keys", "32", "integer"),
    ("server_encoding", "UTF8", "string"),
    ("server_version", "16.6", "string"),
    ("server_version_num", "160006", "integer"),
    ("standard_conforming_strings", "on", "bool"),
    ("TimeZone", "UTC", "string"),
    ("transaction_read_only", "on", "bool"),
];

/// `pg_catalog` with the tables drivers trip on replaced: `pg_settings` by [`SETTINGS`];
/// `pg_constraint` and `pg_index` by empty tables whose key columns are arrays as in PostgreSQL
/// (the catalog crate's hold PostgreSQL's own system indexes with their keys as text, so
/// pgJDBC's `con.conkey[pos.n]` and SQLAlchemy's `unnest(indkey)` do not plan), and `pg_class`
/// by a view with the columns it lacks. Lake tables have no keys, constraints or indexes.
#[derive(Debug)]
struct CompatCatalog<S> {
    inner: S,
    replaced: HashMap<&'static str, Arc<dyn datafusion::catalog::TableProvider>>,
}

impl<S: datafusion::catalog::SchemaProvider> CompatCatalog<S> {
    async fn try_new(inner: S) -> Result<Self, DataFusionError> {
        use datafusion::arrow::array::{ArrayRef, RecordBatchOptions, StringArray, new_null_array};
        use datafusion::arrow::datatypes::{Field, Schema};
        use datafusion::datasource::MemTable;
        let mut fields: Vec<Field> = ["name", "setting", "vartype", "context", "source"]
            .iter()
            .map(|n| Field::new(*n, DataType::Utf8, true))
            .collect();
        for n in [
            "unit",
            "category",
            "short_desc",
            "extra_desc",
            "min_val",
            "max_val",
        ] {
            fields.push(Field::new(n, DataType::Utf8, true));
        }
        fields.push(Field::new("pending_restart", DataType::Boolean, true));
        let schema = Arc::new(Schema::new(fields));
        let text = |i: usize| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(SETTINGS.iter().map(
                |(name, setting, vartype)| match i {
                    0 => *name,
                    1 => *setting,
                    2 => *vartype,
                    3 => "internal",
                    _ => "default",
                },
            )))
        };
        let mut columns: Vec<ArrayRef> = (0..5).map(text).collect();
        for field in &schema.fields()[5..] {
            columns.push(new_null_array(field.data_type(), SETTINGS.len()));
        }
        let batch = RecordBatch::try_new_with_options(
            schema.clone(),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(SETTINGS.len())),
        )?;
        let mut replaced: HashMap<&'static str, Arc<dyn datafusion::catalog::TableProvider>> =
            HashMap::new();
        replaced.insert(
            "pg_settings",
            Arc::new(MemTable::try_new(schema, vec![vec![batch]])?),
        );
        // int2vector and oidvector columns as arrays, as PostgreSQL returns them.
        let int2s = DataType::List(Arc::new(Field::new_list_field(DataType::Int16, true)));
        let oids = DataType::List(Arc::new(Field::new_list_field(DataType::Int32, true)));
        for (table, arrays) in [
            ("pg_constraint", &["conkey", "confkey"][..]),
            (
                "pg_index",
                &["indkey", "indoption", "indcollation", "indclass"][..],
            ),
        ] {
            let Some(provider) = inner.table(table).await? else {
                continue;
            };
            let fields: Vec<Field> = provider
                .schema()
                .fields()
                .iter()
                .map(|f| match f.name().as_str() {
                    "indcollation" | "indclass" => f.as_ref().clone().with_data_type(oids.clone()),
                    n if arrays.contains(&n) => f.as_ref().clone().with_data_type(int2s.clone()),
                    _ => f.as_ref().clone(),
                })
                .collect();
            let schema = Arc::new(Schema::new(fields));
            replaced.insert(table, Arc::new(MemTable::try_new(schema, vec![vec![]])?));
        }
        // pg_class with the array columns SQLAlchemy's index reflection reads (NULL: defaults,
        // no ACL of PostgreSQL's; access is the grants').
        if let Some(classes) = inner.table("pg_class").await? {
            use datafusion::logical_expr::{LogicalPlanBuilder, lit};
            let texts = DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)));
            let null = datafusion::common::ScalarValue::try_from(&texts)?;
            let scan = LogicalPlanBuilder::scan(
                "pg_class",
                datafusion::datasource::provider_as_source(classes),
                None,
            )?;
            let mut columns: Vec<Expr> = scan
                .schema()
                .columns()
                .into_iter()
                .map(Expr::Column)
                .collect();
            for name in ["reloptions", "relacl"] {
                if !scan.schema().has_column_with_unqualified_name(name) {
                    columns.push(lit(null.clone()).alias(name));
                }
            }
            let plan = scan.project(columns)?.build()?;
            replaced.insert(
                "pg_class",
                Arc::new(datafusion::datasource::ViewTable::new(plan, None)),
            );
        }
        Ok(Self { inner, replaced })
    }
}

#[async_trait]
impl<S: datafusion::catalog::SchemaProvider> datafusion::catalog::SchemaProvider
    for CompatCatalog<S>
{
    fn table_names(&self) -> Vec<String> {
        self.inner.table_names()
    }

    async fn table(
        &self,
        name: &str,
    ) -> Result<Option<Arc<dyn datafusion::catalog::TableProvider>>, DataFusionError> {
        if let Some(t) = self.replaced.get(name) {
            return Ok(Some(t.clone()));
        }
        self.inner.table(name).await
    }

    fn table_exist(&self, name: &str) -> bool {
        self.replaced.contains_key(name) || self.inner.table_exist(name)
    }
}

/// `pg_get_indexdef(index [, column, pretty])`: an index's definition, NULL for an oid that is
/// not an index, as PostgreSQL answers it. Lake tables have no indexes (`pg_index` is empty).
#[derive(Debug, PartialEq, Eq, Hash)]
struct PgGetIndexdef {
    signature: datafusion::logical_expr::Signature,
}

impl Default for PgGetIndexdef {
    fn default() -> Self {
        use datafusion::logical_expr::{Signature, TypeSignature, Volatility};
        Self {
            signature: Signature::one_of(
                vec![TypeSignature::Any(1), TypeSignature::Any(3)],
                Volatility::Stable,
            ),
        }
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for PgGetIndexdef {
    fn name(&self) -> &str {
        "pg_get_indexdef"
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType, DataFusionError> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> Result<datafusion::logical_expr::ColumnarValue, DataFusionError> {
        Ok(datafusion::logical_expr::ColumnarValue::Array(
            datafusion::arrow::array::new_null_array(&DataType::Utf8, args.number_rows),
        ))
    }
}

/// Functions that drivers call when they connect or read metadata and that the PostgreSQL
/// catalog crate does not provide.
fn register_client_functions(ctx: &datafusion::prelude::SessionContext) {
    use datafusion::arrow::array::{Array, Int32Builder, StructArray};
    use datafusion::arrow::datatypes::{Field, Fields};
    use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};

    // Clients read the server's version from version() (SQLAlchemy parses it): PostgreSQL's
    // form, with Reservoir's name in it.
    let version = format!(
        "PostgreSQL 16.6 (Reservoir {}) on {}-{}, DataFusion",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH,
        std::env::consts::OS
    );
    ctx.register_udf(create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(move |_| {
            Ok(ColumnarValue::Scalar(
                datafusion::common::ScalarValue::Utf8(Some(version.clone())),
            ))
        }),
    ));

    // SQLAlchemy's reflection lists domains and enums with pg_type_is_visible(oid). Every type
    // here is one of pg_catalog's, which is always on the search path.
    ctx.register_udf(create_udf(
        "pg_type_is_visible",
        vec![DataType::Int32],
        DataType::Boolean,
        Volatility::Stable,
        Arc::new(|args| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let visible: datafusion::arrow::array::BooleanArray = (0..arrays[0].len())
                .map(|i| arrays[0].is_valid(i).then_some(true))
                .collect();
            Ok(ColumnarValue::Array(Arc::new(visible)))
        }),
    ));

    ctx.register_udf(datafusion::logical_expr::ScalarUDF::new_from_impl(
        PgGetIndexdef::default(),
    ));

    // pgJDBC's getPrimaryKeys and getIndexInfo call information_schema._pg_expandarray on
    // pg_index.indkey. PostgreSQL's is set-returning, one (x, n) row per element; this one is
    // scalar and yields the first element. pg_index has no rows here (lake tables have no
    // indexes), so the joins it serves match nothing either way.
    let fields = Fields::from(vec![
        Field::new("x", DataType::Int32, true),
        Field::new("n", DataType::Int32, true),
    ]);
    let out_type = DataType::Struct(fields.clone());
    ctx.register_udf(create_udf(
        "_pg_expandarray",
        vec![DataType::List(Arc::new(Field::new_list_field(
            DataType::Int16,
            true,
        )))],
        out_type,
        Volatility::Immutable,
        Arc::new(move |args| {
            use datafusion::arrow::array::AsArray;
            use datafusion::arrow::datatypes::Int16Type;
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let keys = arrays[0].as_list::<i32>();
            let (mut x, mut n) = (Int32Builder::new(), Int32Builder::new());
            for key in keys.iter() {
                let first = key.and_then(|k| {
                    let k = k.as_primitive::<Int16Type>();
                    (!k.is_empty() && k.is_valid(0)).then(|| i32::from(k.value(0)))
                });
                x.append_option(first);
                n.append_option(first.map(|_| 1));
            }
            let out = StructArray::try_new(
                fields.clone(),
                vec![Arc::new(x.finish()), Arc::new(n.finish())],
                None,
            )?;
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    ));
}
