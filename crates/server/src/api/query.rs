//! Read-only SQL, with row and time limits.

use std::time::Instant;

use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use reservoir_query::output::{OutputFormat, write_batches};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::{ApiJson, AppState};

/// A column of a result.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResultColumn {
    pub name: String,
    /// Arrow type, e.g. `Utf8`, `Int64`, `Timestamp(µs)`.
    pub data_type: String,
}

/// Rows of a query. Numbers and booleans are JSON numbers and booleans; other values are text
/// as displayed; NULL is `null`.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueryResult {
    pub columns: Vec<ResultColumn>,
    #[schema(value_type = Vec<Vec<serde_json::Value>>)]
    pub rows: Vec<Vec<serde_json::Value>>,
    pub row_count: usize,
    /// More rows exist than the limit let through.
    pub truncated: bool,
    pub elapsed_ms: u64,
}

/// A SQL query.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SqlRequest {
    /// One read-only statement (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN).
    #[schema(example = "SELECT count(*) AS villages FROM minzheng.villages")]
    pub sql: String,
    /// Most rows to return (default and ceiling: the server's row limit).
    #[serde(default)]
    pub limit: Option<usize>,
    /// `json` (default) or `csv` (a download with a header row).
    #[serde(default)]
    pub format: Option<String>,
}

/// What a query read: the datasets it scanned and the grants it went through.
#[derive(Debug, Default)]
pub(crate) struct Touched {
    /// (dataset, `unit.name`, grant), one per table the plan scans.
    pub tables: Vec<(i64, String, Option<i64>)>,
    /// The columns the scans read, as `unit.name.column`.
    pub read: Vec<String>,
}

impl Touched {
    /// The columns read, comma-separated (the table's own names, not the query's aliases).
    pub fn columns(&self) -> String {
        let mut cols = self.read.clone();
        cols.sort();
        cols.dedup();
        cols.join(",")
    }

    pub fn names(&self) -> String {
        let mut names: Vec<&str> = self.tables.iter().map(|(_, n, _)| n.as_str()).collect();
        names.dedup();
        names.join(",")
    }
}

/// Lets a query through the rate limits of the grants it reads through; returns the rows their
/// quotas have left, if any has one.
pub(crate) fn admit(
    state: &AppState,
    touched: &Touched,
    visibility: &reservoir_access::Visibility,
) -> ApiResult<Option<usize>> {
    let mut left: Option<usize> = None;
    for (_, name, grant) in &touched.tables {
        let Some(g) = grant.and_then(|g| visibility.grants().values().find(|x| x.id == g)) else {
            continue;
        };
        if let Some(rate) = g.rate_per_minute
            && let Err(wait) = state.grant_limiter().hit(
                &format!("grant:{}", g.id),
                rate as usize,
                std::time::Duration::from_secs(60),
            )
        {
            return Err(ApiError::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                format!(
                    "the grant on {name} allows {rate} queries a minute; try again in {wait} s"
                ),
            ));
        }
        if let Some(l) = g.rows_left() {
            let l = l.max(0) as usize;
            left = Some(left.map_or(l, |x| x.min(l)));
        }
    }
    Ok(left)
}

/// The datasets a plan scans, resolved against the catalog and the caller's visibility.
pub(crate) async fn touched_tables(
    state: &AppState,
    plan: &datafusion::logical_expr::LogicalPlan,
    visibility: &reservoir_access::Visibility,
) -> ApiResult<Touched> {
    let scanned = reservoir_query::scanned_tables(plan);
    let read = scanned
        .iter()
        .flat_map(|(r, cols)| {
            let table = format!("{}.{}", r.schema().unwrap_or("?"), r.table());
            cols.iter().map(move |c| format!("{table}.{c}"))
        })
        .collect();
    let mut touched = Touched {
        read,
        ..Touched::default()
    };
    for (r, _) in &scanned {
        let (Some(schema), table) = (r.schema(), r.table()) else {
            continue;
        };
        // Any layer's table (quarantine, quality too) counts against its raw dataset.
        let dataset = state.catalog().dataset("raw", schema, table).await?;
        if let Some(d) = dataset {
            let grant = visibility.table(&d).and_then(|a| a.grant_id());
            touched
                .tables
                .push((d.id, format!("{}.{}", d.unit_id, d.name), grant));
        }
    }
    Ok(touched)
}

/// Runs `sql` as `caller` with the server's limits and returns at most `limit` rows: only what
/// the caller's grants show, at most the rows left under their quotas, at most as often as their
/// rates allow. The query is audited with its SQL text and metered per dataset.
pub(crate) async fn run_query(
    state: &AppState,
    caller: &Caller,
    sql: &str,
    limit: Option<usize>,
    action: &str,
) -> ApiResult<(Vec<RecordBatch>, bool, u64)> {
    caller.require_login()?;
    let started = Instant::now();
    let max = state.config().query_row_limit;
    let mut limit = limit.unwrap_or(max).min(max);
    let mut event = caller.event(action, "");
    event.detail = serde_json::json!({"sql": sql}).to_string();
    // What the plan reads, once known: a query that fails as it runs is still audited
    // against the datasets it named.
    let mut planned: Option<(String, String, Option<i64>)> = None;
    let result = async {
        let (engine, visibility) = state.engine_for(caller).await?;
        for w in visibility.withheld() {
            tracing::info!(grant = w.grant_id, "grant withheld: {}", w.reason);
        }
        let df = engine.sql(sql).await?;
        let touched = touched_tables(state, df.logical_plan(), &visibility).await?;
        planned = Some((
            touched.names(),
            touched.columns(),
            touched.tables.iter().find_map(|(_, _, g)| *g),
        ));
        if let Some(left) = admit(state, &touched, &visibility)? {
            limit = limit.min(left);
        }
        let explain = matches!(
            df.logical_plan(),
            datafusion::logical_expr::LogicalPlan::Explain(_)
                | datafusion::logical_expr::LogicalPlan::Analyze(_)
        );
        // An EXPLAIN answers a few lines of plan; a limit over it is no plan DataFusion takes.
        let df = if explain {
            df
        } else {
            df.limit(0, Some(limit + 1))
                .map_err(reservoir_query::Error::from)?
        };
        let timeout = state.config().query_timeout;
        let batches =
            match tokio::time::timeout(timeout, reservoir_query::executor::collect(df)).await {
                Ok(r) => r.map_err(reservoir_query::Error::from)?,
                Err(_) => {
                    return Err(ApiError::new(
                        axum::http::StatusCode::REQUEST_TIMEOUT,
                        "timeout",
                        format!(
                            "the query ran longer than {} s and was stopped",
                            timeout.as_secs()
                        ),
                    ));
                }
            };
        Ok((batches, touched, engine.rows_read()))
    }
    .await;
    let (batches, touched, rows_read) = match result {
        Ok(r) => r,
        Err(mut e) => {
            // A table hidden because its grant does not apply now (hours, quota): say so.
            if e.code == "invalid_sql"
                && let Ok(visibility) = state.access().visibility(&caller.principal).await
            {
                for w in visibility.withheld() {
                    if let Ok(Some(d)) = state.catalog().dataset_by_id(w.dataset_id).await
                        && sql.contains(&d.name)
                    {
                        let name = format!("{}.{}", d.unit_id, d.name);
                        super::data::alert_on_withheld(state, caller.name(), &name, w).await;
                        e = crate::auth::forbidden(format!(
                            "grant {} on {name} does not apply now: {}",
                            w.grant_id, w.reason
                        ));
                    }
                }
            }
            event.outcome = Some(if e.status.is_client_error() && e.code != "invalid_sql" {
                reservoir_access::Outcome::Denied
            } else {
                reservoir_access::Outcome::Error
            });
            event.detail = serde_json::json!({"sql": sql, "error": e.message}).to_string();
            if let Some((target, columns, grant)) = planned {
                event.target = target;
                event.columns = columns;
                event.grant_id = grant;
            }
            state.audit(event).await;
            return Err(e);
        }
    };
    // Keep `limit` rows; the extra one only tells whether there were more.
    let mut kept = Vec::new();
    let mut rows = 0usize;
    let mut truncated = false;
    for b in batches {
        if rows + b.num_rows() > limit {
            let take = limit - rows;
            if take > 0 {
                kept.push(b.slice(0, take));
            }
            rows += take;
            truncated = true;
            break;
        }
        rows += b.num_rows();
        kept.push(b);
    }
    let bytes: usize = kept.iter().map(|b| b.get_array_memory_size()).sum();
    event.target = touched.names();
    event.row_count = Some(rows as i64);
    event.grant_id = touched.tables.iter().find_map(|(_, _, g)| *g);
    event.columns = touched.columns();
    event.detail = serde_json::json!({
        "sql": sql,
        "output": kept.first().map(|b| b.schema().fields().iter().map(|f| f.name().clone()).collect::<Vec<_>>()),
        "rows_read": rows_read.iter().map(|(g, n)| serde_json::json!({"grant": g, "rows": n})).collect::<Vec<_>>(),
    })
    .to_string();
    state.audit(event).await;
    for (dataset_id, _, _) in &touched.tables {
        if let Err(e) = state
            .access()
            .meter(caller.name(), *dataset_id, rows as i64, bytes as i64)
            .await
        {
            tracing::error!("metering failed: {e}");
        }
    }
    // Quotas are charged with the rows read from the table, aggregates included.
    for (g, n) in &rows_read {
        if let Err(e) = state.access().add_rows_served(*g, *n as i64).await {
            tracing::error!("counting rows against grant {g} failed: {e}");
        }
    }
    super::data::alert_on_volume(state, caller.name(), rows as i64).await;
    Ok((kept, truncated, started.elapsed().as_millis() as u64))
}

/// Converts batches to the API's row format.
pub(crate) fn to_result(
    batches: &[RecordBatch],
    schema: Option<arrow::datatypes::SchemaRef>,
    truncated: bool,
    elapsed_ms: u64,
) -> ApiResult<QueryResult> {
    let schema = match (batches.first(), schema) {
        (Some(b), _) => b.schema(),
        (None, Some(s)) => s,
        (None, None) => std::sync::Arc::new(arrow::datatypes::Schema::empty()),
    };
    let columns = schema
        .fields()
        .iter()
        .map(|f| ResultColumn {
            name: f.name().clone(),
            data_type: f.data_type().to_string(),
        })
        .collect();
    let mut rows = Vec::new();
    let options = FormatOptions::default();
    for b in batches {
        let formatters: Vec<ArrayFormatter<'_>> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<_, _>>()
            .map_err(ApiError::internal)?;
        for r in 0..b.num_rows() {
            let row = b
                .columns()
                .iter()
                .zip(&formatters)
                .map(|(c, f)| json_value(c, f, r))
                .collect();
            rows.push(row);
        }
    }
    let row_count = rows.len();
    Ok(QueryResult {
        columns,
        rows,
        row_count,
        truncated,
        elapsed_ms,
    })
}

fn json_value(col: &ArrayRef, fmt: &ArrayFormatter<'_>, row: usize) -> serde_json::Value {
    use arrow::array::AsArray;
    use arrow::datatypes::{
        Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type,
        UInt32Type, UInt64Type,
    };
    if col.is_null(row) {
        return serde_json::Value::Null;
    }
    match col.data_type() {
        DataType::Boolean => col.as_boolean().value(row).into(),
        DataType::Int8 => col.as_primitive::<Int8Type>().value(row).into(),
        DataType::Int16 => col.as_primitive::<Int16Type>().value(row).into(),
        DataType::Int32 => col.as_primitive::<Int32Type>().value(row).into(),
        DataType::Int64 => col.as_primitive::<Int64Type>().value(row).into(),
        DataType::UInt8 => col.as_primitive::<UInt8Type>().value(row).into(),
        DataType::UInt16 => col.as_primitive::<UInt16Type>().value(row).into(),
        DataType::UInt32 => col.as_primitive::<UInt32Type>().value(row).into(),
        DataType::UInt64 => col.as_primitive::<UInt64Type>().value(row).into(),
        DataType::Float32 => {
            serde_json::Number::from_f64(col.as_primitive::<Float32Type>().value(row) as f64)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null)
        }
        DataType::Float64 => {
            serde_json::Number::from_f64(col.as_primitive::<Float64Type>().value(row))
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null)
        }
        _ => serde_json::Value::String(fmt.value(row).to_string()),
    }
}

/// Run a read-only SQL query over the lake.
///
/// Tables are named `layer.unit.dataset` (`unit.dataset` means the raw layer); quote names that
/// are not plain identifiers, e.g. `raw."民政"."村居"`.
#[utoipa::path(
    post,
    path = "/api/v1/sql",
    tag = "query",
    request_body = SqlRequest,
    responses(
        (status = 200, description = "Rows (JSON), or a CSV file when format is csv", content(
            (QueryResult = "application/json"),
            (String = "text/csv"),
        )),
        (status = 400, description = "Invalid SQL, a statement that is not a query, or a failed query", body = crate::ErrorBody),
        (status = 408, description = "The query ran over the time limit", body = crate::ErrorBody),
    )
)]
pub(crate) async fn sql(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<SqlRequest>,
) -> ApiResult<Response> {
    caller.require_login()?;
    if req.sql.trim().is_empty() {
        return Err(ApiError::bad_request("the query is empty"));
    }
    let (batches, truncated, elapsed) =
        run_query(&state, &caller, &req.sql, req.limit, "sql.query").await?;
    match req.format.as_deref() {
        None | Some("json") => {
            Ok(axum::Json(to_result(&batches, None, truncated, elapsed)?).into_response())
        }
        Some("csv") => {
            let mut out = Vec::new();
            // A BOM so that Excel reads the Chinese text as UTF-8.
            out.extend_from_slice("\u{FEFF}".as_bytes());
            write_batches(&mut out, &batches, OutputFormat::Csv).map_err(ApiError::internal)?;
            Ok((
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                    (
                        header::CONTENT_DISPOSITION,
                        "attachment; filename=\"query.csv\"",
                    ),
                ],
                out,
            )
                .into_response())
        }
        Some(other) => Err(ApiError::bad_request(format!(
            "format {other:?}: expected json or csv"
        ))),
    }
}

/// Quotes an identifier for SQL.
pub(crate) fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Quotes a string literal for SQL.
pub(crate) fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
