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
    titles: HashMap<(String, String), String>,
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
    register_psql_functions(ctx);
    register_to_regtype(ctx).await?;
    register_obj_description(ctx, titles).await?;
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

/// The functions of psql's `\dt+` and `\df` that the catalog crate lacks or answers wrongly:
/// `pg_size_pretty` as PostgreSQL formats sizes; the sizes of lake tables are not known to
/// `pg_catalog` (their files are in the lake, not in relation forks), so `pg_table_size` and
/// its kin answer NULL (unknown) instead of the catalog crate's 0; every function is visible.
fn register_psql_functions(ctx: &datafusion::prelude::SessionContext) {
    use datafusion::arrow::array::{Array, AsArray, BooleanArray, Int64Array, StringArray};
    use datafusion::arrow::datatypes::Int64Type;
    use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};

    ctx.register_udf(create_udf(
        "pg_size_pretty",
        vec![DataType::Int64],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let sizes = arrays[0].as_primitive::<Int64Type>();
            let out: StringArray = sizes.iter().map(|s| s.map(size_pretty)).collect();
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    ));
    for name in [
        "pg_table_size",
        "pg_relation_size",
        "pg_total_relation_size",
        "pg_indexes_size",
    ] {
        ctx.register_udf(create_udf(
            name,
            vec![DataType::Int32],
            DataType::Int64,
            Volatility::Stable,
            Arc::new(|args| {
                let rows = ColumnarValue::values_to_arrays(args)?[0].len();
                Ok(ColumnarValue::Array(Arc::new(Int64Array::new_null(rows))))
            }),
        ));
    }
    // \df lists the functions of schemas other than pg_catalog; there are none here, so these
    // only have to plan (the catalog does not record results or arguments: NULL).
    for name in ["pg_get_function_result", "pg_get_function_arguments"] {
        ctx.register_udf(create_udf(
            name,
            vec![DataType::Int32],
            DataType::Utf8,
            Volatility::Stable,
            Arc::new(|args| {
                let rows = ColumnarValue::values_to_arrays(args)?[0].len();
                Ok(ColumnarValue::Array(Arc::new(StringArray::new_null(rows))))
            }),
        ));
    }
    ctx.register_udf(create_udf(
        "pg_function_is_visible",
        vec![DataType::Int32],
        DataType::Boolean,
        Volatility::Stable,
        Arc::new(|args| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let visible: BooleanArray = (0..arrays[0].len())
                .map(|i| arrays[0].is_valid(i).then_some(true))
                .collect();
            Ok(ColumnarValue::Array(Arc::new(visible)))
        }),
    ));
}

/// `pg_size_pretty(bigint)`: bytes below 10 kB, then kB, MB, GB, TB, PB, each rounded half
/// up from the one below, as PostgreSQL prints them.
fn size_pretty(size: i64) -> String {
    const UNITS: [&str; 6] = ["bytes", "kB", "MB", "GB", "TB", "PB"];
    let mut value = size;
    for (i, unit) in UNITS.iter().enumerate() {
        if value.abs() < 10 * 1024 || i == UNITS.len() - 1 {
            return format!("{value} {unit}");
        }
        let half = if value < 0 { -512 } else { 512 };
        value = (value + half) / 1024;
    }
    unreachable!("the last unit returns")
}

/// `obj_description(oid, 'pg_class')`: a table's description as psql's `\dt+` and BI tools
/// show it, from the catalog: the dataset's title (名称), else its description. `titles` holds
/// the session's tables by (schema, table) = (unit, dataset).
async fn register_obj_description(
    ctx: &datafusion::prelude::SessionContext,
    titles: HashMap<(String, String), String>,
) -> Result<(), DataFusionError> {
    use datafusion::arrow::array::{Array, AsArray, StringArray};
    use datafusion::arrow::datatypes::Int32Type;
    use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};

    let batches = ctx
        .sql(
            "SELECT CAST(c.oid AS INT), n.nspname, c.relname
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace",
        )
        .await?
        .collect()
        .await?;
    let mut by_oid: HashMap<i32, String> = HashMap::new();
    for b in &batches {
        let oids = b.column(0).as_primitive::<Int32Type>();
        // VARCHAR plans as a string view; the names are read as plain strings.
        let schemas = datafusion::arrow::compute::cast(b.column(1), &DataType::Utf8)?;
        let tables = datafusion::arrow::compute::cast(b.column(2), &DataType::Utf8)?;
        let (schemas, tables) = (schemas.as_string::<i32>(), tables.as_string::<i32>());
        for i in 0..b.num_rows() {
            if oids.is_null(i) || schemas.is_null(i) || tables.is_null(i) {
                continue;
            }
            let key = (schemas.value(i).to_string(), tables.value(i).to_string());
            if let Some(title) = titles.get(&key) {
                by_oid.insert(oids.value(i), title.clone());
            }
        }
    }
    let describe = move |args: &[ColumnarValue]| {
        let arrays = ColumnarValue::values_to_arrays(args)?;
        let oid = datafusion::arrow::compute::cast(&arrays[0], &DataType::Int32)?;
        let oids = oid.as_primitive::<Int32Type>();
        // Only tables (pg_class) have descriptions here; a column's or another object's is NULL.
        let catalogs = arrays
            .get(1)
            .map(|a| datafusion::arrow::compute::cast(a, &DataType::Utf8))
            .transpose()?;
        let out: StringArray = (0..oids.len())
            .map(|i| {
                let of_class = catalogs
                    .as_ref()
                    .is_none_or(|c| c.is_valid(i) && c.as_string::<i32>().value(i) == "pg_class");
                (oids.is_valid(i) && of_class)
                    .then(|| by_oid.get(&oids.value(i)).cloned())
                    .flatten()
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    };
    let describe: datafusion::logical_expr::ScalarFunctionImplementation = Arc::new(describe);
    ctx.register_udf(create_udf(
        "obj_description",
        vec![DataType::Int32, DataType::Utf8],
        DataType::Utf8,
        Volatility::Stable,
        describe,
    ));
    Ok(())
}

/// The names PostgreSQL gives a query's output columns where the statement names none, by its
/// rules (`FigureColname`): a function call is named after the function (`count(*)` is
/// `count`), a cast after what it casts (or its type), `CASE` is `case`, other expressions
/// `?column?`. DataFusion names them after their whole text (`count(*)`, `Int64(1)`); clients
/// and BI tools show and key on PostgreSQL's names. `None` for a column keeps the engine's
/// name (columns, aliased expressions), and for the whole statement where the positions of its
/// select list cannot be matched to the output (a wildcard, a select list of another length).
pub(super) fn pg_column_names(
    statement: &datafusion::sql::sqlparser::ast::Statement,
    columns: usize,
) -> Option<Vec<Option<String>>> {
    use datafusion::sql::sqlparser::ast::{SelectItem, SetExpr, Statement};
    let Statement::Query(query) = statement else {
        return None;
    };
    // A set operation's columns are named by its first branch.
    let mut body = query.body.as_ref();
    let select = loop {
        match body {
            SetExpr::Select(select) => break select,
            SetExpr::SetOperation { left, .. } => body = left.as_ref(),
            SetExpr::Query(q) => body = q.body.as_ref(),
            _ => return None,
        }
    };
    if select.projection.len() != columns {
        return None;
    }
    select
        .projection
        .iter()
        .map(|item| match item {
            SelectItem::UnnamedExpr(expr) => Some(figure_colname(expr)),
            SelectItem::ExprWithAlias { .. } => Some(None),
            _ => None,
        })
        .collect()
}

/// A name by PostgreSQL's rules for one unaliased expression, `None` where the engine's name
/// is already PostgreSQL's (a column reference).
fn figure_colname(expr: &datafusion::sql::sqlparser::ast::Expr) -> Option<String> {
    use datafusion::sql::sqlparser::ast::{
        Expr, FunctionArg, FunctionArgExpr, FunctionArguments, ObjectNamePart, Value,
    };
    let ident = |id: &datafusion::sql::sqlparser::ast::Ident| {
        if id.quote_style.is_some() {
            id.value.clone()
        } else {
            id.value.to_lowercase()
        }
    };
    Some(match expr {
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) => return None,
        Expr::Nested(inner) => return figure_colname(inner),
        Expr::Function(f) => {
            let name = match f.name.0.last() {
                Some(ObjectNamePart::Identifier(id)) => ident(id),
                _ => return None,
            };
            // `(expr).field`, rewritten to get_field(expr, 'field'), is named `field`.
            if name == "get_field"
                && let FunctionArguments::List(list) = &f.args
                && let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v)))) =
                    list.args.get(1)
                && let Value::SingleQuotedString(field) = &v.value
            {
                return Some(field.clone());
            }
            name
        }
        Expr::Cast {
            expr, data_type, ..
        } => match figure_colname(expr) {
            Some(name) if name != "?column?" => name,
            // A cast of a column is named after the column.
            None => match expr.as_ref() {
                Expr::Identifier(id) => ident(id),
                Expr::CompoundIdentifier(ids) => ids.last().map(ident)?,
                _ => pg_type_name(data_type),
            },
            _ => pg_type_name(data_type),
        },
        Expr::TypedString(typed) => pg_type_name(&typed.data_type),
        Expr::Case { .. } => "case".into(),
        Expr::Exists { .. } => "exists".into(),
        Expr::Array(_) => "array".into(),
        Expr::Extract { .. } => "extract".into(),
        Expr::Substring { .. } => "substring".into(),
        Expr::Position { .. } => "position".into(),
        Expr::Trim { .. } => "btrim".into(),
        Expr::Ceil { .. } => "ceil".into(),
        Expr::Floor { .. } => "floor".into(),
        Expr::Overlay { .. } => "overlay".into(),
        Expr::AtTimeZone { .. } => "timezone".into(),
        Expr::Interval(_) => "interval".into(),
        _ => "?column?".into(),
    })
}

/// PostgreSQL's own name of a type as written in a cast (`int` is `int4`).
fn pg_type_name(data_type: &datafusion::sql::sqlparser::ast::DataType) -> String {
    let text = data_type.to_string().to_lowercase();
    let base = text.split('(').next().unwrap_or(&text).trim();
    let base = base.strip_prefix("pg_catalog.").unwrap_or(base);
    match base {
        "int" | "integer" | "int4" => "int4",
        "bigint" | "int8" => "int8",
        "smallint" | "int2" => "int2",
        "real" | "float4" => "float4",
        "double precision" | "double" | "float8" | "float" => "float8",
        "boolean" | "bool" => "bool",
        "decimal" | "numeric" => "numeric",
        "character varying" | "varchar" => "varchar",
        "character" | "char" => "bpchar",
        "timestamp without time zone" | "timestamp" => "timestamp",
        "timestamp with time zone" | "timestamptz" => "timestamptz",
        other => return other.to_string(),
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(sql: &str, columns: usize) -> Option<Vec<Option<String>>> {
        use datafusion::sql::sqlparser::ast::VisitMut;
        let mut statements = datafusion::sql::sqlparser::parser::Parser::parse_sql(
            &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
            sql,
        )
        .unwrap();
        let _ = statements[0].visit(&mut ClientRewrites);
        pg_column_names(&statements[0], columns)
    }

    #[test]
    fn output_columns_are_named_as_postgresql_names_them() {
        let s = |v: &str| Some(v.to_string());
        assert_eq!(
            names(
                "SELECT code, s.name, count(*), MIN(v.date), count(*) FILTER (WHERE x > 1), \
                 1, 1 + 2, code::int, '2021-01-01'::date, CAST(x AS BIGINT), \
                 CASE WHEN a THEN 1 END, upper(name) AS up, (f(x)).n, \"Max\"(y) \
                 FROM t",
                14
            ),
            Some(vec![
                None,
                None,
                s("count"),
                s("min"),
                s("count"),
                s("?column?"),
                s("?column?"),
                s("code"),
                s("date"),
                s("x"),
                s("case"),
                None,
                s("n"),
                s("Max"),
            ])
        );
        // The first branch names a union's columns; a wildcard leaves the engine's names.
        assert_eq!(
            names("SELECT sum(a) FROM t UNION ALL SELECT 1", 1),
            Some(vec![s("sum")])
        );
        assert_eq!(names("SELECT *, count(*) FROM t", 3), None);
        assert_eq!(names("SELECT a, b FROM t", 3), None);
    }

    #[test]
    fn sizes_print_as_postgresql_prints_them() {
        assert_eq!(size_pretty(0), "0 bytes");
        assert_eq!(size_pretty(10239), "10239 bytes");
        assert_eq!(size_pretty(10240), "10 kB");
        assert_eq!(size_pretty(1_500_000), "1465 kB");
        assert_eq!(size_pretty(123_456_789), "118 MB");
        assert_eq!(size_pretty(-20480), "-20 kB");
    }
}
