//! Read-only SQL, with row and time limits.

use std::time::Instant;

use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use reservoir_query::QueryEngine;
use reservoir_query::output::{OutputFormat, write_batches};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

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

/// Runs `sql` with the server's limits and returns at most `limit` rows.
pub(crate) async fn run_query(
    state: &AppState,
    sql: &str,
    limit: Option<usize>,
) -> ApiResult<(Vec<RecordBatch>, bool, u64)> {
    let started = Instant::now();
    let max = state.config().query_row_limit;
    let limit = limit.unwrap_or(max).min(max);
    let engine = QueryEngine::new(state.lake(), state.catalog()).await?;
    let df = engine.sql(sql).await?;
    let df = df
        .limit(0, Some(limit + 1))
        .map_err(reservoir_query::Error::from)?;
    let timeout = state.config().query_timeout;
    let batches = match tokio::time::timeout(timeout, df.collect()).await {
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
            truncated = true;
            break;
        }
        rows += b.num_rows();
        kept.push(b);
    }
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
        (status = 200, description = "Rows (JSON), or a CSV file when format is csv", body = QueryResult),
        (status = 400, description = "Invalid SQL, a statement that is not a query, or a failed query", body = crate::ErrorBody),
        (status = 408, description = "The query ran over the time limit", body = crate::ErrorBody),
    )
)]
pub(crate) async fn sql(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<SqlRequest>,
) -> ApiResult<Response> {
    if req.sql.trim().is_empty() {
        return Err(ApiError::bad_request("the query is empty"));
    }
    let (batches, truncated, elapsed) = run_query(&state, &req.sql, req.limit).await?;
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
