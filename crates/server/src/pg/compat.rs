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

/// The name a `'name'::regclass` lookup subquery of the compatibility parser looks up: the
/// argument of its `parse_ident(name::TEXT)`, where `query` is that subquery.
fn regclass_lookup_argument(
    query: &datafusion::sql::sqlparser::ast::Query,
) -> Option<datafusion::sql::sqlparser::ast::Expr> {
    use datafusion::sql::sqlparser::ast::{
        Expr as SqlExpr, FunctionArg, FunctionArgExpr, FunctionArguments, SelectItem, SetExpr,
        TableFactor,
    };
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    let from = select.from.first()?;
    let TableFactor::Table { name, .. } = &from.relation else {
        return None;
    };
    if !name.to_string().eq_ignore_ascii_case("pg_catalog.pg_class")
        || !select
            .selection
            .as_ref()?
            .to_string()
            .contains("current_schema()")
    {
        return None;
    }
    let derived = from.joins.iter().find_map(|j| match &j.relation {
        TableFactor::Derived { subquery, .. } => Some(subquery),
        _ => None,
    })?;
    let SetExpr::Select(inner) = derived.body.as_ref() else {
        return None;
    };
    let [SelectItem::ExprWithAlias { expr, alias }] = inner.projection.as_slice() else {
        return None;
    };
    let SqlExpr::Function(f) = expr else {
        return None;
    };
    if alias.value != "parts" || !f.name.to_string().eq_ignore_ascii_case("parse_ident") {
        return None;
    }
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    // The argument as the subquery has it (`name::TEXT`, which also types a `$1`).
    match list.args.first()? {
        FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
        _ => None,
    }
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
            // `CAST(format('%I.%I', schema, name) AS regclass)` (Metabase's column comments): a
            // name computed at run time, looked up by `pg_regclass`. Literals (`'pg_class'::
            // regclass`) are the compatibility parser's.
            SqlExpr::Cast {
                expr: inner,
                data_type,
                ..
            } if {
                let t = data_type.to_string().to_ascii_lowercase();
                t == "regclass" || t.ends_with(".regclass")
            } && !matches!(inner.as_ref(), SqlExpr::Value(_)) =>
            {
                let inner = inner.as_ref().clone();
                *expr = sql_call("pg_regclass", vec![inner]);
            }
            // The compatibility parser turns `'name'::regclass` into a subquery that looks an
            // unqualified name up in current_schema() only, so `'pg_class'::regclass` (the
            // classoid of descriptions) was NULL; the relation lookup searches pg_catalog too.
            SqlExpr::Subquery(query) => {
                if let Some(name) = regclass_lookup_argument(query) {
                    *expr = sql_call("to_regclass", vec![name]);
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
    login: &str,
    catalog: &reservoir_catalog::Catalog,
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
    let pg_catalog = Arc::new(CompatCatalog::try_new(provider).await?);
    if let Some(catalog) = ctx.catalog(raw) {
        catalog.register_schema("pg_catalog", pg_catalog.clone())?;
    }
    register_client_functions(ctx);
    register_psql_functions(ctx);
    register_settings_functions(ctx, login);
    register_format(ctx);
    register_to_regtype(ctx).await?;
    let relations = Arc::new(Relations::of(ctx).await?);
    install_information_schema(ctx, &relations).await?;
    register_privileges(ctx, &relations);
    register_regclass(ctx, &relations);
    register_descriptions(ctx, &relations, catalog, &pg_catalog).await?;
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
        let base = canonical_type_name(base);
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
/// `pg_description` is replaced once the session's relations are known ([`Self::replace`]).
#[derive(Debug)]
struct CompatCatalog<S> {
    inner: S,
    replaced: std::sync::RwLock<HashMap<&'static str, Arc<dyn datafusion::catalog::TableProvider>>>,
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
        Ok(Self {
            inner,
            replaced: std::sync::RwLock::new(replaced),
        })
    }

    /// Serves `table` as `name` from now on.
    fn replace(&self, name: &'static str, table: Arc<dyn datafusion::catalog::TableProvider>) {
        self.replaced
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(name, table);
    }

    fn replacement(&self, name: &str) -> Option<Arc<dyn datafusion::catalog::TableProvider>> {
        self.replaced
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(name)
            .cloned()
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
        if let Some(t) = self.replacement(name) {
            return Ok(Some(t));
        }
        self.inner.table(name).await
    }

    fn table_exist(&self, name: &str) -> bool {
        self.replacement(name).is_some() || self.inner.table_exist(name)
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
    ctx.register_udf(loose_udf(
        "pg_type_is_visible",
        1,
        DataType::Boolean,
        Arc::new(every_object_visible),
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
    use datafusion::arrow::array::{AsArray, Int64Array, StringArray};
    use datafusion::arrow::datatypes::Int64Type;
    use datafusion::logical_expr::ColumnarValue;

    ctx.register_udf(loose_udf(
        "pg_size_pretty",
        1,
        DataType::Utf8,
        Arc::new(|args| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let sizes = datafusion::arrow::compute::cast(&arrays[0], &DataType::Int64)?;
            let out: StringArray = sizes
                .as_primitive::<Int64Type>()
                .iter()
                .map(|s| s.map(size_pretty))
                .collect();
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    ));
    for name in [
        "pg_table_size",
        "pg_relation_size",
        "pg_total_relation_size",
        "pg_indexes_size",
    ] {
        ctx.register_udf(loose_udf(
            name,
            1,
            DataType::Int64,
            Arc::new(|args| {
                let rows = ColumnarValue::values_to_arrays(args)?[0].len();
                Ok(ColumnarValue::Array(Arc::new(Int64Array::new_null(rows))))
            }),
        ));
    }
    // \df lists the functions of schemas other than pg_catalog; there are none here, so these
    // only have to plan (the catalog does not record results or arguments: NULL).
    for name in ["pg_get_function_result", "pg_get_function_arguments"] {
        ctx.register_udf(loose_udf(
            name,
            1,
            DataType::Utf8,
            Arc::new(|args| {
                let rows = ColumnarValue::values_to_arrays(args)?[0].len();
                Ok(ColumnarValue::Array(Arc::new(StringArray::new_null(rows))))
            }),
        ));
    }
    ctx.register_udf(loose_udf(
        "pg_function_is_visible",
        1,
        DataType::Boolean,
        Arc::new(every_object_visible),
    ));
}

/// `pg_type_is_visible(oid)`, `pg_function_is_visible(oid)`: every type and function here is
/// pg_catalog's, which is always on the search path (NULL for NULL, as PostgreSQL).
fn every_object_visible(
    args: &[datafusion::logical_expr::ColumnarValue],
) -> datafusion::error::Result<datafusion::logical_expr::ColumnarValue> {
    use datafusion::arrow::array::{Array, BooleanArray};
    let arrays = datafusion::logical_expr::ColumnarValue::values_to_arrays(args)?;
    let visible: BooleanArray = (0..arrays[0].len())
        .map(|i| arrays[0].is_valid(i).then_some(true))
        .collect();
    Ok(datafusion::logical_expr::ColumnarValue::Array(Arc::new(
        visible,
    )))
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

/// The relations of a session's `pg_catalog` (the tables it may read, and the catalog's own)
/// by oid and by name, its schemas by oid, and the columns of the lake's tables by (oid,
/// attnum), as that session numbers them.
struct Relations {
    by_oid: HashMap<i32, (String, String)>,
    by_name: HashMap<(String, String), i32>,
    namespaces: HashMap<i32, String>,
    columns: HashMap<(i32, i32), String>,
}

impl Relations {
    async fn of(ctx: &datafusion::prelude::SessionContext) -> Result<Self, DataFusionError> {
        use datafusion::arrow::array::{Array, AsArray};
        use datafusion::arrow::datatypes::Int32Type;
        let text = |a: &datafusion::arrow::array::ArrayRef| {
            // Names plan as string views; they are read as plain strings.
            datafusion::arrow::compute::cast(a, &DataType::Utf8)
        };
        let mut by_oid = HashMap::new();
        for b in ctx
            .sql(
                "SELECT CAST(c.oid AS INT), n.nspname, c.relname FROM pg_catalog.pg_class c \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace",
            )
            .await?
            .collect()
            .await?
        {
            let oids = b.column(0).as_primitive::<Int32Type>();
            let (schemas, tables) = (text(b.column(1))?, text(b.column(2))?);
            let (schemas, tables) = (schemas.as_string::<i32>(), tables.as_string::<i32>());
            for i in 0..b.num_rows() {
                if oids.is_valid(i) && schemas.is_valid(i) && tables.is_valid(i) {
                    by_oid.insert(
                        oids.value(i),
                        (schemas.value(i).to_string(), tables.value(i).to_string()),
                    );
                }
            }
        }
        let mut columns = HashMap::new();
        for b in ctx
            .sql(
                "SELECT CAST(a.attrelid AS INT), CAST(a.attnum AS INT), a.attname \
                 FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')",
            )
            .await?
            .collect()
            .await?
        {
            let (rels, nums) = (
                b.column(0).as_primitive::<Int32Type>(),
                b.column(1).as_primitive::<Int32Type>(),
            );
            let names = text(b.column(2))?;
            let names = names.as_string::<i32>();
            for i in 0..b.num_rows() {
                if rels.is_valid(i) && nums.is_valid(i) && names.is_valid(i) {
                    columns.insert((rels.value(i), nums.value(i)), names.value(i).to_string());
                }
            }
        }
        let mut namespaces = HashMap::new();
        for b in ctx
            .sql("SELECT CAST(oid AS INT), nspname FROM pg_catalog.pg_namespace")
            .await?
            .collect()
            .await?
        {
            let oids = b.column(0).as_primitive::<Int32Type>();
            let names = text(b.column(1))?;
            let names = names.as_string::<i32>();
            for i in 0..b.num_rows() {
                if oids.is_valid(i) && names.is_valid(i) {
                    namespaces.insert(oids.value(i), names.value(i).to_string());
                }
            }
        }
        let by_name = by_oid
            .iter()
            .map(|(oid, name)| (name.clone(), *oid))
            .collect();
        Ok(Self {
            by_oid,
            by_name,
            namespaces,
            columns,
        })
    }

    /// The oid of the relation `name` (`unit.table`, quoted or not; an unqualified name is the
    /// system catalog's, the search path being pg_catalog's), if the session sees it.
    fn oid_of(&self, name: &str) -> Option<i32> {
        let key = match identifier_path(name).as_slice() {
            [schema, table] | [_, schema, table] => (schema.clone(), table.clone()),
            [table] => ("pg_catalog".to_string(), table.clone()),
            _ => return None,
        };
        self.by_name.get(&key).copied()
    }

    /// The lake's tables among them (not the system catalog's).
    fn lake_tables(&self) -> impl Iterator<Item = (&i32, &(String, String))> {
        self.by_oid
            .iter()
            .filter(|(_, (schema, _))| !is_system_schema(schema))
    }
}

fn is_system_schema(schema: &str) -> bool {
    matches!(schema, "pg_catalog" | "information_schema")
}

/// `information_schema` as PostgreSQL has it, over the session's tables: `tables`, `columns`
/// (with PostgreSQL's type names in `data_type` and `udt_name`, where DataFusion's own says
/// `Utf8View` and `Int64`), `schemata`, and the constraint and view tables, empty (lake tables
/// have no keys; there are no views). DataFusion's own lists every catalog's schemas (each
/// layer's, three times over) and lacks the columns BI tools read (Metabase's `udt_name`,
/// `is_identity`, `table_constraints`), so it is switched off for these sessions.
async fn install_information_schema(
    ctx: &datafusion::prelude::SessionContext,
    relations: &Relations,
) -> Result<(), DataFusionError> {
    use datafusion::arrow::array::{ArrayRef, Int32Array, StringArray, new_null_array};
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
    use datafusion::datasource::MemTable;

    let database = reservoir_lake::Layer::Raw.as_str();
    // (schema, table, its columns).
    let mut tables: Vec<(String, String, datafusion::arrow::datatypes::SchemaRef)> = Vec::new();
    for (schema, table) in relations.lake_tables().map(|(_, t)| t) {
        let reference =
            datafusion::common::TableReference::full(database, schema.as_str(), table.as_str());
        if let Ok(provider) = ctx.table_provider(reference).await {
            tables.push((schema.clone(), table.clone(), provider.schema()));
        }
    }
    tables.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));

    let text = |name: &str| Field::new(name, DataType::Utf8, true);
    let int = |name: &str| Field::new(name, DataType::Int32, true);
    // A table of `fields` with the given columns filled (by name) and the rest NULL.
    let table = |fields: Vec<Field>, rows: usize, mut filled: HashMap<&str, ArrayRef>| {
        let schema = Arc::new(Schema::new(fields));
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| {
                filled
                    .remove(f.name().as_str())
                    .unwrap_or_else(|| new_null_array(f.data_type(), rows))
            })
            .collect();
        let batch = RecordBatch::try_new(schema.clone(), columns)?;
        Ok::<_, DataFusionError>(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
    };
    let strings = |v: Vec<String>| -> ArrayRef { Arc::new(StringArray::from(v)) };
    let constant = |v: &str, n: usize| -> ArrayRef { Arc::new(StringArray::from(vec![v; n])) };

    let provider = MemorySchemaProvider::new();
    // tables
    let n = tables.len();
    provider.register_table(
        "tables".into(),
        table(
            [
                "table_catalog",
                "table_schema",
                "table_name",
                "table_type",
                "self_referencing_column_name",
                "reference_generation",
                "user_defined_type_catalog",
                "user_defined_type_schema",
                "user_defined_type_name",
                "is_insertable_into",
                "is_typed",
                "commit_action",
            ]
            .into_iter()
            .map(text)
            .collect(),
            n,
            HashMap::from([
                ("table_catalog", constant(database, n)),
                (
                    "table_schema",
                    strings(tables.iter().map(|t| t.0.clone()).collect()),
                ),
                (
                    "table_name",
                    strings(tables.iter().map(|t| t.1.clone()).collect()),
                ),
                ("table_type", constant("BASE TABLE", n)),
                ("is_insertable_into", constant("NO", n)),
                ("is_typed", constant("NO", n)),
            ]),
        )?,
    )?;
    // columns
    let mut c: HashMap<&str, Vec<Option<String>>> = HashMap::new();
    let mut positions = Vec::new();
    let mut numeric: [Vec<Option<i32>>; 4] = Default::default();
    for (schema, name, columns) in &tables {
        for (i, f) in columns.fields().iter().enumerate() {
            let udt = into_pg_type_name(f.data_type());
            let mut push = |k: &'static str, v: Option<String>| c.entry(k).or_default().push(v);
            push("table_schema", Some(schema.clone()));
            push("table_name", Some(name.clone()));
            push("column_name", Some(f.name().clone()));
            push(
                "is_nullable",
                Some(if f.is_nullable() { "YES" } else { "NO" }.into()),
            );
            push("data_type", Some(sql_type_name(&udt).to_string()));
            push("udt_name", Some(udt.clone()));
            push("dtd_identifier", Some((i + 1).to_string()));
            positions.push(Some(i as i32 + 1));
            let (precision, radix, scale, datetime) = match f.data_type() {
                DataType::Int16 | DataType::UInt8 | DataType::Int8 => {
                    (Some(16), Some(2), Some(0), None)
                }
                DataType::Int32 | DataType::UInt16 => (Some(32), Some(2), Some(0), None),
                DataType::Int64 | DataType::UInt32 | DataType::UInt64 => {
                    (Some(64), Some(2), Some(0), None)
                }
                DataType::Float32 => (Some(24), Some(2), None, None),
                DataType::Float64 => (Some(53), Some(2), None, None),
                DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => {
                    (Some(i32::from(*p)), Some(10), Some(i32::from(*s)), None)
                }
                DataType::Date32 | DataType::Date64 => (None, None, None, Some(0)),
                DataType::Timestamp(unit, _) | DataType::Time64(unit) => {
                    let digits = match unit {
                        datafusion::arrow::datatypes::TimeUnit::Second => 0,
                        datafusion::arrow::datatypes::TimeUnit::Millisecond => 3,
                        _ => 6,
                    };
                    (None, None, None, Some(digits))
                }
                _ => (None, None, None, None),
            };
            for (k, v) in [precision, radix, scale, datetime].into_iter().enumerate() {
                numeric[k].push(v);
            }
        }
    }
    let rows = positions.len();
    let mut filled: HashMap<&str, ArrayRef> = c
        .into_iter()
        .map(|(k, v)| (k, Arc::new(StringArray::from(v)) as ArrayRef))
        .collect();
    filled.insert("table_catalog", constant(database, rows));
    filled.insert("ordinal_position", Arc::new(Int32Array::from(positions)));
    filled.insert("udt_catalog", constant(database, rows));
    filled.insert("udt_schema", constant("pg_catalog", rows));
    filled.insert("is_identity", constant("NO", rows));
    filled.insert("is_generated", constant("NEVER", rows));
    filled.insert("is_updatable", constant("NO", rows));
    filled.insert("is_self_referencing", constant("NO", rows));
    for (k, name) in [
        "numeric_precision",
        "numeric_precision_radix",
        "numeric_scale",
        "datetime_precision",
    ]
    .into_iter()
    .enumerate()
    {
        filled.insert(
            name,
            Arc::new(Int32Array::from(std::mem::take(&mut numeric[k]))),
        );
    }
    let fields: Vec<Field> = [
        ("table_catalog", false),
        ("table_schema", false),
        ("table_name", false),
        ("column_name", false),
        ("ordinal_position", true),
        ("column_default", false),
        ("is_nullable", false),
        ("data_type", false),
        ("character_maximum_length", true),
        ("character_octet_length", true),
        ("numeric_precision", true),
        ("numeric_precision_radix", true),
        ("numeric_scale", true),
        ("datetime_precision", true),
        ("interval_type", false),
        ("interval_precision", true),
        ("character_set_catalog", false),
        ("character_set_schema", false),
        ("character_set_name", false),
        ("collation_catalog", false),
        ("collation_schema", false),
        ("collation_name", false),
        ("domain_catalog", false),
        ("domain_schema", false),
        ("domain_name", false),
        ("udt_catalog", false),
        ("udt_schema", false),
        ("udt_name", false),
        ("scope_catalog", false),
        ("scope_schema", false),
        ("scope_name", false),
        ("maximum_cardinality", true),
        ("dtd_identifier", false),
        ("is_self_referencing", false),
        ("is_identity", false),
        ("identity_generation", false),
        ("identity_start", false),
        ("identity_increment", false),
        ("identity_maximum", false),
        ("identity_minimum", false),
        ("identity_cycle", false),
        ("is_generated", false),
        ("generation_expression", false),
        ("is_updatable", false),
    ]
    .into_iter()
    .map(|(name, number)| if number { int(name) } else { text(name) })
    .collect();
    provider.register_table("columns".into(), table(fields, rows, filled)?)?;
    // schemata: the lake's schemas the session sees, and the system's.
    let mut schemas: Vec<String> = tables.iter().map(|t| t.0.clone()).collect();
    schemas.extend(["information_schema".to_string(), "pg_catalog".to_string()]);
    schemas.sort();
    schemas.dedup();
    let n = schemas.len();
    provider.register_table(
        "schemata".into(),
        table(
            [
                "catalog_name",
                "schema_name",
                "schema_owner",
                "default_character_set_catalog",
                "default_character_set_schema",
                "default_character_set_name",
                "sql_path",
            ]
            .into_iter()
            .map(text)
            .collect(),
            n,
            HashMap::from([
                ("catalog_name", constant(database, n)),
                ("schema_name", strings(schemas)),
                ("schema_owner", constant("postgres", n)),
            ]),
        )?,
    )?;
    // Empty: no views, keys or constraints in the lake.
    for (name, columns) in [
        (
            "views",
            &[
                "table_catalog",
                "table_schema",
                "table_name",
                "view_definition",
                "check_option",
                "is_updatable",
                "is_insertable_into",
                "is_trigger_updatable",
                "is_trigger_deletable",
                "is_trigger_insertable_into",
            ][..],
        ),
        (
            "table_constraints",
            &[
                "constraint_catalog",
                "constraint_schema",
                "constraint_name",
                "table_catalog",
                "table_schema",
                "table_name",
                "constraint_type",
                "is_deferrable",
                "initially_deferred",
                "enforced",
                "nulls_distinct",
            ][..],
        ),
        (
            "key_column_usage",
            &[
                "constraint_catalog",
                "constraint_schema",
                "constraint_name",
                "table_catalog",
                "table_schema",
                "table_name",
                "column_name",
                "ordinal_position",
                "position_in_unique_constraint",
            ][..],
        ),
        (
            "referential_constraints",
            &[
                "constraint_catalog",
                "constraint_schema",
                "constraint_name",
                "unique_constraint_catalog",
                "unique_constraint_schema",
                "unique_constraint_name",
                "match_option",
                "update_rule",
                "delete_rule",
            ][..],
        ),
        (
            "constraint_column_usage",
            &[
                "table_catalog",
                "table_schema",
                "table_name",
                "column_name",
                "constraint_catalog",
                "constraint_schema",
                "constraint_name",
            ][..],
        ),
    ] {
        let fields = columns
            .iter()
            .map(|c| {
                if c.starts_with("ordinal") || c.starts_with("position") {
                    int(c)
                } else {
                    text(c)
                }
            })
            .collect();
        provider.register_table(name.into(), table(fields, 0, HashMap::new())?)?;
    }
    {
        let state = ctx.state_ref();
        let mut state = state.write();
        state.config_mut().options_mut().catalog.information_schema = false;
    }
    if let Some(catalog) = ctx.catalog(database) {
        catalog.register_schema("information_schema", Arc::new(provider))?;
    }
    Ok(())
}

/// PostgreSQL's name of the type a column of `data_type` is sent as (`udt_name`).
fn into_pg_type_name(data_type: &DataType) -> String {
    datafusion_postgres::arrow_pg::datatypes::into_pg_type(data_type)
        .map(|t| t.name().to_string())
        .unwrap_or_else(|_| "text".into())
}

/// The SQL standard's name of a PostgreSQL type, as `information_schema.columns.data_type`
/// says it (`int8` is `bigint`; arrays are `ARRAY`).
fn sql_type_name(udt: &str) -> &str {
    match udt {
        "int2" => "smallint",
        "int4" => "integer",
        "int8" => "bigint",
        "float4" => "real",
        "float8" => "double precision",
        "bool" => "boolean",
        "varchar" => "character varying",
        "bpchar" => "character",
        "time" => "time without time zone",
        "timetz" => "time with time zone",
        "timestamp" => "timestamp without time zone",
        "timestamptz" => "timestamp with time zone",
        array if array.starts_with('_') => "ARRAY",
        other => other,
    }
}

/// `obj_description(oid, 'pg_class')` and `col_description(oid, attnum)`: the descriptions psql's
/// `\dt+` and `\d+`, DBeaver and Metabase show, from the catalog: a dataset's title (名称), else
/// its description; a field's title, else its description.
async fn register_descriptions<S: datafusion::catalog::SchemaProvider>(
    ctx: &datafusion::prelude::SessionContext,
    relations: &Relations,
    catalog: &reservoir_catalog::Catalog,
    pg_catalog: &CompatCatalog<S>,
) -> Result<(), DataFusionError> {
    use datafusion::arrow::array::{Array, AsArray, StringArray};
    use datafusion::arrow::datatypes::Int32Type;
    use datafusion::logical_expr::ColumnarValue;

    let described = |title: &str, description: &str| {
        let text = if title.trim().is_empty() {
            description.trim()
        } else {
            title.trim()
        };
        (!text.is_empty()).then(|| text.to_string())
    };
    let external = |e: reservoir_catalog::Error| DataFusionError::External(Box::new(e));
    let mut tables: HashMap<i32, String> = HashMap::new();
    let mut columns: HashMap<(i32, i32), String> = HashMap::new();
    for (oid, (schema, table)) in relations.lake_tables() {
        let Some(d) = catalog
            .dataset(reservoir_lake::Layer::Raw.as_str(), schema, table)
            .await
            .map_err(external)?
        else {
            continue;
        };
        if let Some(text) = described(&d.title, &d.description) {
            tables.insert(*oid, text);
        }
        let fields: HashMap<String, String> = catalog
            .fields(d.id)
            .await
            .map_err(external)?
            .into_iter()
            .filter_map(|f| described(&f.title, &f.description).map(|t| (f.name, t)))
            .collect();
        for ((rel, num), name) in &relations.columns {
            if rel == oid
                && let Some(text) = fields.get(name)
            {
                columns.insert((*rel, *num), text.clone());
            }
        }
    }
    describe_in_pg_description(pg_catalog, relations, &tables, &columns).await?;
    let obj_description = move |args: &[ColumnarValue]| {
        let arrays = ColumnarValue::values_to_arrays(args)?;
        let oid = datafusion::arrow::compute::cast(&arrays[0], &DataType::Int32)?;
        let oids = oid.as_primitive::<Int32Type>();
        // Only tables (pg_class) have descriptions here; another kind of object's is NULL.
        let kinds = arrays
            .get(1)
            .map(|a| datafusion::arrow::compute::cast(a, &DataType::Utf8))
            .transpose()?;
        let out: StringArray = (0..oids.len())
            .map(|i| {
                let of_class = kinds
                    .as_ref()
                    .is_none_or(|c| c.is_valid(i) && c.as_string::<i32>().value(i) == "pg_class");
                (oids.is_valid(i) && of_class)
                    .then(|| tables.get(&oids.value(i)).cloned())
                    .flatten()
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    };
    let obj_description: datafusion::logical_expr::ScalarFunctionImplementation =
        Arc::new(obj_description);
    ctx.register_udf(loose_udf(
        "obj_description",
        2,
        DataType::Utf8,
        obj_description,
    ));
    let col_description = move |args: &[ColumnarValue]| {
        let arrays = ColumnarValue::values_to_arrays(args)?;
        let rel = datafusion::arrow::compute::cast(&arrays[0], &DataType::Int32)?;
        let num = datafusion::arrow::compute::cast(&arrays[1], &DataType::Int32)?;
        let (rel, num) = (
            rel.as_primitive::<Int32Type>(),
            num.as_primitive::<Int32Type>(),
        );
        let out: StringArray = (0..rel.len())
            .map(|i| {
                (rel.is_valid(i) && num.is_valid(i))
                    .then(|| columns.get(&(rel.value(i), num.value(i))).cloned())
                    .flatten()
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    };
    let col_description: datafusion::logical_expr::ScalarFunctionImplementation =
        Arc::new(col_description);
    ctx.register_udf(loose_udf(
        "col_description",
        2,
        DataType::Utf8,
        col_description,
    ));
    Ok(())
}

/// `pg_regclass(name)` (what `CAST(expr AS regclass)` is rewritten to) and `to_regclass(name)`:
/// a relation's oid by its name as PostgreSQL reads one (`unit.table`, quoted or not; an
/// unqualified name is the system catalog's). A name that is no relation the session sees is
/// an error for the cast, as PostgreSQL's, and NULL for `to_regclass`.
fn register_regclass(ctx: &datafusion::prelude::SessionContext, relations: &Arc<Relations>) {
    use datafusion::arrow::array::{Array, AsArray, Int32Array};
    use datafusion::logical_expr::ColumnarValue;
    for (name, strict) in [("pg_regclass", true), ("to_regclass", false)] {
        let relations = relations.clone();
        ctx.register_udf(loose_udf(
            name,
            1,
            DataType::Int32,
            Arc::new(move |args| {
                let arrays = ColumnarValue::values_to_arrays(args)?;
                let names = datafusion::arrow::compute::cast(&arrays[0], &DataType::Utf8)?;
                let names = names.as_string::<i32>();
                let mut out = Vec::with_capacity(names.len());
                for i in 0..names.len() {
                    if names.is_null(i) {
                        out.push(None);
                        continue;
                    }
                    let text = names.value(i);
                    let oid = text
                        .trim()
                        .parse::<i32>()
                        .ok()
                        .or_else(|| relations.oid_of(text));
                    if oid.is_none() && strict {
                        return Err(DataFusionError::Plan(format!(
                            "relation \"{text}\" does not exist"
                        )));
                    }
                    out.push(oid);
                }
                Ok(ColumnarValue::Array(Arc::new(Int32Array::from(out))))
            }),
        ));
    }
}

/// `pg_catalog.pg_description` with the descriptions of the session's tables (`objsubid` 0)
/// and their columns (`objsubid` = attnum), as DBeaver's and Metabase's table and column
/// listings join it; the catalog crate's is empty.
async fn describe_in_pg_description<S: datafusion::catalog::SchemaProvider>(
    pg_catalog: &CompatCatalog<S>,
    relations: &Relations,
    tables: &HashMap<i32, String>,
    columns: &HashMap<(i32, i32), String>,
) -> Result<(), DataFusionError> {
    use datafusion::arrow::array::{ArrayRef, Int32Array, StringArray};
    use datafusion::catalog::SchemaProvider;
    let Some(current) = pg_catalog.table("pg_description").await? else {
        return Ok(());
    };
    let Some(class) = relations
        .by_oid
        .iter()
        .find(|(_, (schema, table))| schema == "pg_catalog" && table == "pg_class")
        .map(|(oid, _)| *oid)
    else {
        return Ok(());
    };
    let mut rows: Vec<(i32, i32, String)> = tables
        .iter()
        .map(|(oid, text)| (*oid, 0, text.clone()))
        .chain(
            columns
                .iter()
                .map(|((rel, num), text)| (*rel, *num, text.clone())),
        )
        .collect();
    rows.sort();
    let schema = current.schema();
    let arrays: Vec<ArrayRef> = vec![
        Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.0))),
        Arc::new(Int32Array::from_iter_values(rows.iter().map(|_| class))),
        Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.1))),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.2.as_str()),
        )),
    ];
    let arrays = arrays
        .iter()
        .zip(schema.fields())
        .map(|(a, f)| datafusion::arrow::compute::cast(a, f.data_type()))
        .collect::<Result<Vec<_>, _>>()?;
    let batch = RecordBatch::try_new(schema.clone(), arrays)?;
    let table = datafusion::datasource::MemTable::try_new(schema, vec![vec![batch]])?;
    pg_catalog.replace("pg_description", Arc::new(table));
    Ok(())
}

/// `has_table_privilege`, `has_any_column_privilege`, `has_schema_privilege` and
/// `has_database_privilege` as this server grants: SELECT on the tables the session may read
/// (and the system catalog), USAGE on their schemas, CONNECT to the databases; nothing else,
/// the connection being read-only. (The catalog crate's answer true to everything, so BI tools
/// took every table for writable and every named table for readable.) The user argument, where
/// given, is taken as the session's own: a session knows no other account's grants.
fn register_privileges(ctx: &datafusion::prelude::SessionContext, relations: &Arc<Relations>) {
    use datafusion::logical_expr::ScalarUDF;
    for (name, kind) in [
        ("has_table_privilege", PrivilegeOn::Table),
        ("has_any_column_privilege", PrivilegeOn::Table),
        ("has_schema_privilege", PrivilegeOn::Schema),
        ("has_database_privilege", PrivilegeOn::Database),
    ] {
        ctx.register_udf(ScalarUDF::new_from_impl(HasPrivilege {
            name,
            kind,
            relations: relations.clone(),
            signature: datafusion::logical_expr::Signature::one_of(
                vec![
                    datafusion::logical_expr::TypeSignature::Any(2),
                    datafusion::logical_expr::TypeSignature::Any(3),
                ],
                datafusion::logical_expr::Volatility::Stable,
            ),
        }));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum PrivilegeOn {
    Table,
    Schema,
    Database,
}

#[derive(Debug)]
struct HasPrivilege {
    name: &'static str,
    kind: PrivilegeOn,
    relations: Arc<Relations>,
    signature: datafusion::logical_expr::Signature,
}

impl std::fmt::Debug for Relations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relations")
            .field("relations", &self.by_oid.len())
            .finish()
    }
}

impl PartialEq for HasPrivilege {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && Arc::ptr_eq(&self.relations, &other.relations)
    }
}

impl Eq for HasPrivilege {}

impl std::hash::Hash for HasPrivilege {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

/// A PostgreSQL identifier path as text (`"Unit"."Table"`, `unit.table`): its parts, unquoted
/// and, where not quoted, lowercased.
fn identifier_path(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let (mut quoted, mut was_quoted) = (false, false);
    let mut chars = text.trim().chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                current.push('"');
                chars.next();
            }
            '"' => {
                quoted = !quoted;
                was_quoted = true;
            }
            '.' if !quoted => {
                parts.push(if was_quoted {
                    std::mem::take(&mut current)
                } else {
                    std::mem::take(&mut current).to_lowercase()
                });
                was_quoted = false;
            }
            c => current.push(c),
        }
    }
    parts.push(if was_quoted {
        current
    } else {
        current.to_lowercase()
    });
    parts
}

impl HasPrivilege {
    /// Whether the session holds any of `privileges` (a comma-separated list, as PostgreSQL
    /// takes it) on `object` (a name or an oid).
    fn holds(&self, object: &str, privileges: &str) -> bool {
        let wanted: Vec<String> = privileges
            .split(',')
            .map(|p| {
                p.trim()
                    .to_ascii_uppercase()
                    .trim_end_matches(" WITH GRANT OPTION")
                    .to_string()
            })
            .collect();
        let any = |allowed: &[&str]| wanted.iter().any(|w| allowed.contains(&w.as_str()));
        match self.kind {
            PrivilegeOn::Database => any(&["CONNECT"]) && super::DATABASES.contains(&object.trim()),
            // The schemas pg_namespace lists are the ones the session sees.
            PrivilegeOn::Schema => {
                let known = match object.trim().parse::<i32>() {
                    Ok(oid) => self.relations.namespaces.contains_key(&oid),
                    Err(_) => identifier_path(object)
                        .pop()
                        .is_some_and(|s| self.relations.namespaces.values().any(|n| *n == s)),
                };
                any(&["USAGE"]) && known
            }
            PrivilegeOn::Table => {
                let known = match object.trim().parse::<i32>() {
                    Ok(oid) => self.relations.by_oid.contains_key(&oid),
                    Err(_) => self.relations.oid_of(object).is_some(),
                };
                any(&["SELECT"]) && known
            }
        }
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for HasPrivilege {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::error::Result<datafusion::logical_expr::ColumnarValue> {
        use datafusion::arrow::array::{Array, AsArray, BooleanArray};
        let arrays = datafusion::logical_expr::ColumnarValue::values_to_arrays(&args.args)?;
        // (user, object, privilege) or (object, privilege).
        let skip = arrays.len() - 2;
        let object = datafusion::arrow::compute::cast(&arrays[skip], &DataType::Utf8)?;
        let privilege = datafusion::arrow::compute::cast(&arrays[skip + 1], &DataType::Utf8)?;
        let (object, privilege) = (object.as_string::<i32>(), privilege.as_string::<i32>());
        let out: BooleanArray = (0..object.len())
            .map(|i| {
                (object.is_valid(i) && privilege.is_valid(i))
                    .then(|| self.holds(object.value(i), privilege.value(i)))
            })
            .collect();
        Ok(datafusion::logical_expr::ColumnarValue::Array(Arc::new(
            out,
        )))
    }
}

/// `current_setting(name [, missing_ok])` (Grafana reads `server_version_num` so), and
/// `session_user`/`current_user` as the account logged in (the catalog crate's say
/// `postgres`).
fn register_settings_functions(ctx: &datafusion::prelude::SessionContext, login: &str) {
    use datafusion::arrow::array::{Array, AsArray, StringArray};
    use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};

    #[derive(Debug, PartialEq, Eq, Hash)]
    struct CurrentSetting(datafusion::logical_expr::Signature);
    impl datafusion::logical_expr::ScalarUDFImpl for CurrentSetting {
        fn name(&self) -> &str {
            "current_setting"
        }
        fn signature(&self) -> &datafusion::logical_expr::Signature {
            &self.0
        }
        fn return_type(&self, _: &[DataType]) -> datafusion::error::Result<DataType> {
            Ok(DataType::Utf8)
        }
        fn invoke_with_args(
            &self,
            args: datafusion::logical_expr::ScalarFunctionArgs,
        ) -> datafusion::error::Result<ColumnarValue> {
            let arrays = ColumnarValue::values_to_arrays(&args.args)?;
            let names = datafusion::arrow::compute::cast(&arrays[0], &DataType::Utf8)?;
            let names = names.as_string::<i32>();
            let missing_ok = arrays.get(1).map(|a| a.as_boolean().clone());
            let mut out = Vec::with_capacity(names.len());
            for i in 0..names.len() {
                if names.is_null(i) {
                    out.push(None);
                    continue;
                }
                match setting(names.value(i)) {
                    Some(v) => out.push(Some(v)),
                    None if missing_ok
                        .as_ref()
                        .is_some_and(|m| m.is_valid(i) && m.value(i)) =>
                    {
                        out.push(None)
                    }
                    None => {
                        return Err(DataFusionError::Plan(format!(
                            "unrecognized configuration parameter \"{}\"",
                            names.value(i)
                        )));
                    }
                }
            }
            Ok(ColumnarValue::Array(Arc::new(StringArray::from(out))))
        }
    }
    use datafusion::logical_expr::TypeSignature::Exact;
    ctx.register_udf(datafusion::logical_expr::ScalarUDF::new_from_impl(
        CurrentSetting(datafusion::logical_expr::Signature::one_of(
            vec![
                Exact(vec![DataType::Utf8]),
                Exact(vec![DataType::Utf8, DataType::Boolean]),
            ],
            Volatility::Stable,
        )),
    ));
    let login = login.to_string();
    ctx.register_udf(create_udf(
        "session_user",
        vec![],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |_| {
            Ok(ColumnarValue::Scalar(
                datafusion::common::ScalarValue::Utf8(Some(login.clone())),
            ))
        }),
    ));
}

/// `SHOW name` for the server's own settings that the SET/SHOW hook does not know (it answers
/// `server_version` with DataFusion's version and `timezone`, `server_encoding` and the like
/// with an empty `unsupported_show_statement`): as `SELECT current_setting('name') AS name`;
/// `SHOW timezone` as `SHOW TIME ZONE`, which the hook answers with the session's zone.
pub(super) fn show_setting(
    statement: &datafusion::sql::sqlparser::ast::Statement,
) -> Option<datafusion::sql::sqlparser::ast::Statement> {
    use datafusion::sql::sqlparser::ast::{Ident, Statement};
    let Statement::ShowVariable { variable } = statement else {
        return None;
    };
    let name = variable
        .iter()
        .map(|v| v.value.to_lowercase())
        .collect::<Vec<_>>()
        .join(" ");
    if name == "timezone" {
        return Some(Statement::ShowVariable {
            variable: vec![Ident::new("time"), Ident::new("zone")],
        });
    }
    // What the hook answers from the session (SET … changes it) stays with the hook.
    const SESSION: &[&str] = &[
        "datestyle",
        "intervalstyle",
        "statement_timeout",
        "time zone",
    ];
    if SESSION.contains(&name.as_str()) {
        return None;
    }
    let (canonical, _, _) = SETTINGS
        .iter()
        .find(|(n, _, _)| n.eq_ignore_ascii_case(&name))?;
    let sql = format!("SELECT current_setting('{canonical}') AS \"{canonical}\"");
    datafusion::sql::sqlparser::parser::Parser::parse_sql(
        &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
        &sql,
    )
    .ok()?
    .pop()
}

/// A setting's value as this server has it (names are case-insensitive), from [`SETTINGS`].
pub(super) fn setting(name: &str) -> Option<String> {
    let name = name.trim();
    if name.eq_ignore_ascii_case("search_path") {
        return Some("\"$user\", public".into());
    }
    SETTINGS
        .iter()
        .find(|(n, _, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v, _)| v.to_string())
}

/// `format(formatstr, args…)` as PostgreSQL's: `%s` (text, NULL as empty), `%I` (quoted as an
/// identifier where needed), `%L` (quoted as a literal, NULL as `NULL`), `%%`, and positions
/// (`%2$s`). Metabase builds qualified names with it.
fn pg_format(format: &str, args: &[Option<String>]) -> Result<String, String> {
    let mut out = String::with_capacity(format.len());
    let mut next = 0usize;
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'%') {
            chars.next();
            out.push('%');
            continue;
        }
        let mut digits = String::new();
        while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            digits.push(*d);
            chars.next();
        }
        let index = if !digits.is_empty() && chars.peek() == Some(&'$') {
            chars.next();
            let n: usize = digits
                .parse()
                .map_err(|_| "bad argument position".to_string())?;
            n.checked_sub(1).ok_or("argument positions start at 1")?
        } else if digits.is_empty() {
            next
        } else {
            return Err(format!("format: width {digits} is not supported"));
        };
        let kind = chars.next().ok_or("unterminated format() type specifier")?;
        let arg = args
            .get(index)
            .ok_or("too few arguments for format()")?
            .as_deref();
        next = index + 1;
        match kind {
            's' => out.push_str(arg.unwrap_or_default()),
            'I' => {
                let id = arg.ok_or("null values cannot be formatted as an SQL identifier")?;
                let plain = id
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
                    && id
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                if plain {
                    out.push_str(id);
                } else {
                    out.push('"');
                    out.push_str(&id.replace('"', "\"\""));
                    out.push('"');
                }
            }
            'L' => match arg {
                None => out.push_str("NULL"),
                Some(v) => {
                    out.push('\'');
                    out.push_str(&v.replace('\'', "''"));
                    out.push('\'');
                }
            },
            other => return Err(format!("unrecognized format() type specifier \"{other}\"")),
        }
    }
    Ok(out)
}

fn register_format(ctx: &datafusion::prelude::SessionContext) {
    use datafusion::arrow::array::{Array, AsArray, StringArray};
    use datafusion::logical_expr::{ColumnarValue, Signature, Volatility};

    #[derive(Debug, PartialEq, Eq, Hash)]
    struct Format(Signature);
    impl datafusion::logical_expr::ScalarUDFImpl for Format {
        fn name(&self) -> &str {
            "format"
        }
        fn signature(&self) -> &Signature {
            &self.0
        }
        fn return_type(&self, _: &[DataType]) -> datafusion::error::Result<DataType> {
            Ok(DataType::Utf8)
        }
        fn invoke_with_args(
            &self,
            args: datafusion::logical_expr::ScalarFunctionArgs,
        ) -> datafusion::error::Result<ColumnarValue> {
            let arrays = ColumnarValue::values_to_arrays(&args.args)?;
            let texts = arrays
                .iter()
                .map(|a| datafusion::arrow::compute::cast(a, &DataType::Utf8))
                .collect::<Result<Vec<_>, _>>()?;
            let rows = texts.first().map_or(0, |t| t.len());
            let mut out = Vec::with_capacity(rows);
            for i in 0..rows {
                let value = |t: &datafusion::arrow::array::ArrayRef| {
                    let t = t.as_string::<i32>();
                    t.is_valid(i).then(|| t.value(i).to_string())
                };
                let Some(format) = value(&texts[0]) else {
                    out.push(None);
                    continue;
                };
                let args: Vec<Option<String>> = texts[1..].iter().map(value).collect();
                out.push(Some(
                    pg_format(&format, &args).map_err(DataFusionError::Execution)?,
                ));
            }
            Ok(ColumnarValue::Array(Arc::new(StringArray::from(out))))
        }
    }
    ctx.register_udf(datafusion::logical_expr::ScalarUDF::new_from_impl(Format(
        Signature::variadic_any(Volatility::Immutable),
    )));
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
    canonical_type_name(base).to_string()
}

/// PostgreSQL's internal name (`pg_type.typname`) of a type by the name SQL writes it with
/// (`integer` is `int4`, `double precision` is `float8`); other names are returned as given.
fn canonical_type_name(name: &str) -> &str {
    match name {
        "integer" | "int" => "int4",
        "bigint" => "int8",
        "smallint" => "int2",
        "boolean" => "bool",
        "real" => "float4",
        "double precision" | "double" | "float" => "float8",
        "character varying" => "varchar",
        "character" | "char" => "bpchar",
        "decimal" => "numeric",
        "timestamp without time zone" => "timestamp",
        "timestamp with time zone" => "timestamptz",
        "time without time zone" => "time",
        "time with time zone" => "timetz",
        other => other,
    }
}

/// A scalar function over `arity` arguments of any type (the function casts what it reads):
/// clients pass oids and attribute numbers as int2, int4 or int8, and exact signatures would
/// refuse all but one.
fn loose_udf(
    name: &'static str,
    arity: usize,
    returns: DataType,
    f: datafusion::logical_expr::ScalarFunctionImplementation,
) -> datafusion::logical_expr::ScalarUDF {
    struct Loose {
        name: &'static str,
        signature: datafusion::logical_expr::Signature,
        returns: DataType,
        f: datafusion::logical_expr::ScalarFunctionImplementation,
    }
    impl std::fmt::Debug for Loose {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Loose").field("name", &self.name).finish()
        }
    }
    impl PartialEq for Loose {
        fn eq(&self, other: &Self) -> bool {
            self.name == other.name && Arc::ptr_eq(&self.f, &other.f)
        }
    }
    impl Eq for Loose {}
    impl std::hash::Hash for Loose {
        fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
            self.name.hash(state);
        }
    }
    impl datafusion::logical_expr::ScalarUDFImpl for Loose {
        fn name(&self) -> &str {
            self.name
        }
        fn signature(&self) -> &datafusion::logical_expr::Signature {
            &self.signature
        }
        fn return_type(&self, _: &[DataType]) -> datafusion::error::Result<DataType> {
            Ok(self.returns.clone())
        }
        fn invoke_with_args(
            &self,
            args: datafusion::logical_expr::ScalarFunctionArgs,
        ) -> datafusion::error::Result<datafusion::logical_expr::ColumnarValue> {
            (self.f)(&args.args)
        }
    }
    datafusion::logical_expr::ScalarUDF::new_from_impl(Loose {
        name,
        signature: datafusion::logical_expr::Signature::any(
            arity,
            datafusion::logical_expr::Volatility::Stable,
        ),
        returns,
        f,
    })
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
    fn format_and_identifiers_as_postgresql_reads_them() {
        let s = |v: &str| Some(v.to_string());
        assert_eq!(
            pg_format("%I.%I", &[s("weijian"), s("Vaccinations")]).unwrap(),
            "weijian.\"Vaccinations\""
        );
        assert_eq!(
            pg_format("%s = %L, %2$s%%", &[s("a"), s("it's"), None]).unwrap(),
            "a = 'it''s', it's%"
        );
        assert_eq!(pg_format("%L", &[None]).unwrap(), "NULL");
        assert!(pg_format("%s %s", &[s("a")]).is_err());
        assert_eq!(
            identifier_path("\"Wei.Jian\".vaccinations"),
            ["Wei.Jian", "vaccinations"]
        );
        assert_eq!(identifier_path("Tongji.GDP"), ["tongji", "gdp"]);
    }

    #[test]
    fn regclass_literals_find_the_system_catalog() {
        use datafusion::sql::sqlparser::ast::VisitMut;
        let parser =
            datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser::new();
        let mut statements = parser
            .parse("SELECT 1 WHERE classoid = 'pg_class'::regclass")
            .unwrap();
        let _ = statements[0].visit(&mut ClientRewrites);
        assert_eq!(
            statements[0].to_string(),
            "SELECT 1 WHERE classoid = to_regclass('pg_class'::TEXT)"
        );
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
