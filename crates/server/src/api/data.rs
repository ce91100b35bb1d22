//! The data API: a dataset's rows, through the caller's grants.
//!
//! `GET /api/v1/data/{unit}/{dataset}?columns=a,b&sort=-b,a&limit=100&offset=0&format=json`
//! with filters as `column=op.value` (PostgREST style): `eq`, `ne`, `gt`, `ge`, `lt`, `le`,
//! `like`, `in` (comma-separated) and `is.null` / `is.notnull`. Values are compared as the
//! column's type (masked columns are text, compared masked). Formats: JSON (rows with the total
//! for paging), CSV (UTF-8 with a BOM for Excel), Parquet and Arrow IPC (stream).

use std::collections::HashMap;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use datafusion::logical_expr::{Expr, cast, col, lit};
use datafusion::prelude::DataFrame;
use reservoir_query::output::{OutputFormat, write_batches};
use serde::Serialize;
use utoipa::ToSchema;

use super::query::{QueryResult, to_result};
use crate::auth::{Caller, forbidden};
use crate::error::{ApiError, ApiResult};
use crate::{ApiPath, AppState};

/// A page of rows.
#[derive(Debug, Serialize, ToSchema)]
pub struct DataPage {
    #[serde(flatten)]
    pub result: QueryResult,
    /// Rows that match the filters, over all pages. Not counted under a grant with a row quota
    /// (counting reads every row, which the quota would be charged for).
    pub total: Option<i64>,
    pub offset: usize,
    pub limit: usize,
}

const RESERVED: [&str; 5] = ["columns", "sort", "limit", "offset", "format"];

fn filter_expr(column: &str, data_type: &DataType, spec: &str) -> ApiResult<Expr> {
    let bad = || {
        ApiError::bad_request(format!(
            "filter {column}={spec:?}: expected op.value with op one of eq, ne, gt, ge, lt, le, \
             like, in, is (e.g. {column}=eq.1, {column}=in.a,b, {column}=is.null)"
        ))
    };
    let (op, value) = spec.split_once('.').ok_or_else(bad)?;
    let c = col(datafusion::common::Column::new_unqualified(column));
    let typed = |v: &str| cast(lit(v.to_string()), data_type.clone());
    Ok(match op {
        "eq" => c.eq(typed(value)),
        "ne" => c.not_eq(typed(value)),
        "gt" => c.gt(typed(value)),
        "ge" => c.gt_eq(typed(value)),
        "lt" => c.lt(typed(value)),
        "le" => c.lt_eq(typed(value)),
        "like" => cast(c, DataType::Utf8).like(lit(value.replace('*', "%"))),
        "in" => c.in_list(value.split(',').map(typed).collect(), false),
        "is" => match value {
            "null" => c.is_null(),
            "notnull" => c.is_not_null(),
            _ => return Err(bad()),
        },
        _ => return Err(bad()),
    })
}

fn known_column<'a>(schema: &'a SchemaRef, name: &str) -> ApiResult<&'a DataType> {
    schema
        .field_with_name(name)
        .map(|f| f.data_type())
        .map_err(|_| {
            let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            ApiError::bad_request(format!(
                "no column {name:?} (the columns you may read: {})",
                names.join(", ")
            ))
        })
}

/// A dataset's rows through the caller's grants: chosen columns, filters, sorting, paging.
#[utoipa::path(
    get,
    path = "/api/v1/data/{unit}/{dataset}",
    tag = "query",
    params(
        ("unit" = String, Path, example = "minzheng"),
        ("dataset" = String, Path, example = "villages"),
        ("columns" = Option<String>, Query, description = "Comma-separated; default all you may read"),
        ("sort" = Option<String>, Query, description = "Comma-separated columns, `-` for descending"),
        ("limit" = Option<usize>, Query, description = "Rows per page (default 100, at most the server's row limit)"),
        ("offset" = Option<usize>, Query),
        ("format" = Option<String>, Query, description = "json (default), csv, parquet or arrow"),
    ),
    responses(
        (status = 200, description = "Rows: JSON, or the file of the format asked for", content(
            (DataPage = "application/json"),
            (String = "text/csv"),
            (String = "application/vnd.apache.parquet"),
            (String = "application/vnd.apache.arrow.stream"),
        )),
        (status = 400, body = crate::ErrorBody),
        (status = 401, body = crate::ErrorBody),
        (status = 403, description = "No grant on the dataset", body = crate::ErrorBody),
        (status = 404, body = crate::ErrorBody),
        (status = 429, description = "Over the grant's rate", body = crate::ErrorBody),
    )
)]
pub(crate) async fn data(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((unit, name)): ApiPath<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    caller.require_login()?;
    let dataset = state
        .catalog()
        .dataset("raw", &unit, &name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no dataset {unit}.{name}")))?;
    let (engine, visibility) = state.engine_for(&caller).await?;
    let Some(access) = visibility.table(&dataset) else {
        let withheld = visibility
            .withheld()
            .iter()
            .find(|w| w.dataset_id == dataset.id);
        let reason = match withheld {
            Some(w) => format!("grant {} does not apply now: {}", w.grant_id, w.reason),
            None => "no grant".to_string(),
        };
        let mut e = caller.event("data.read", &format!("{unit}.{name}"));
        e.outcome = Some(reservoir_access::Outcome::Denied);
        e.grant_id = withheld.map(|w| w.grant_id);
        e.detail = serde_json::json!({ "reason": reason }).to_string();
        state.audit(e).await;
        super::auth::alert_on_denials(&state, caller.name()).await;
        if let Some(w) = withheld {
            alert_on_withheld(&state, caller.name(), &format!("{unit}.{name}"), w).await;
            return Err(forbidden(format!("{}: {reason}", caller.name())));
        }
        return Err(forbidden(format!(
            "{} has no grant on {unit}.{name}: request access (POST /api/v1/requests)",
            caller.name()
        )));
    };
    let grant = access
        .grant_id()
        .and_then(|g| visibility.grants().values().find(|x| x.id == g).cloned());
    let table = datafusion::common::TableReference::full("raw", unit.as_str(), name.as_str());
    let df: DataFrame = engine
        .context()
        .table(table)
        .await
        .map_err(reservoir_query::Error::from)?;
    let schema: SchemaRef = std::sync::Arc::new(df.schema().as_arrow().clone());

    let mut df = df;
    for (key, spec) in &params {
        if RESERVED.contains(&key.as_str()) {
            continue;
        }
        let data_type = known_column(&schema, key)?;
        df = df
            .filter(filter_expr(key, data_type, spec)?)
            .map_err(reservoir_query::Error::from)?;
    }
    if let Some(cols) = params.get("columns").filter(|c| !c.trim().is_empty()) {
        let mut exprs = Vec::new();
        for c in cols.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            known_column(&schema, c)?;
            exprs.push(col(datafusion::common::Column::new_unqualified(c)));
        }
        df = df.select(exprs).map_err(reservoir_query::Error::from)?;
    }
    if let Some(sort) = params.get("sort").filter(|s| !s.trim().is_empty()) {
        let mut order = Vec::new();
        for s in sort.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, asc) = match s.strip_prefix('-') {
                Some(n) => (n, false),
                None => (s, true),
            };
            known_column(&schema, name)?;
            order.push(col(datafusion::common::Column::new_unqualified(name)).sort(asc, !asc));
        }
        df = df.sort(order).map_err(reservoir_query::Error::from)?;
    }
    let parse = |key: &str, default: usize| -> ApiResult<usize> {
        match params.get(key) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| {
                ApiError::bad_request(format!("{key}={v:?}: expected a whole number"))
            }),
        }
    };
    let max = state.config().query_row_limit;
    let mut limit = parse("limit", 100)?.min(max);
    let offset = parse("offset", 0)?;
    if let Some(g) = &grant {
        if let Some(rate) = g.rate_per_minute
            && let Err(wait) = state.grant_limiter().hit(
                &format!("grant:{}", g.id),
                rate as usize,
                std::time::Duration::from_secs(60),
            )
        {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                format!(
                    "the grant on {unit}.{name} allows {rate} queries a minute; try again in {wait} s"
                ),
            ));
        }
        if let Some(left) = g.rows_left() {
            limit = limit.min(left as usize);
        }
    }
    let format = params.get("format").map(String::as_str).unwrap_or("json");
    if !matches!(format, "json" | "csv" | "parquet" | "arrow") {
        return Err(ApiError::bad_request(format!(
            "format {format:?}: expected json, csv, parquet or arrow"
        )));
    }
    let quota = grant.as_ref().is_some_and(|g| g.row_quota.is_some());
    let total = if quota {
        None
    } else {
        Some(
            df.clone()
                .count()
                .await
                .map_err(reservoir_query::Error::from)? as i64,
        )
    };
    let page = df
        .limit(offset, Some(limit))
        .map_err(reservoir_query::Error::from)?;
    let out_schema: SchemaRef = std::sync::Arc::new(page.schema().as_arrow().clone());
    let timeout = state.config().query_timeout;
    let batches: Vec<RecordBatch> = match tokio::time::timeout(timeout, page.collect()).await {
        Ok(r) => r.map_err(reservoir_query::Error::from)?,
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                format!(
                    "the read ran longer than {} s and was stopped",
                    timeout.as_secs()
                ),
            ));
        }
    };
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let body: Vec<u8>;
    let response = match format {
        "json" => {
            let more = match total {
                Some(t) => offset + rows < t as usize,
                None => rows == limit,
            };
            let result = to_result(&batches, Some(out_schema.clone()), more, 0)?;
            let page = DataPage {
                result,
                total,
                offset,
                limit,
            };
            body = serde_json::to_vec(&page).map_err(ApiError::internal)?;
            ([(header::CONTENT_TYPE, "application/json")], body.clone()).into_response()
        }
        "csv" => {
            let mut out = "\u{FEFF}".as_bytes().to_vec();
            write_batches(&mut out, &batches, OutputFormat::Csv).map_err(ApiError::internal)?;
            body = out;
            (
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"{name}.csv\""),
                    ),
                ],
                body.clone(),
            )
                .into_response()
        }
        "parquet" => {
            let mut out = Vec::new();
            let mut w = parquet::arrow::ArrowWriter::try_new(&mut out, out_schema.clone(), None)
                .map_err(ApiError::internal)?;
            for b in &batches {
                w.write(b).map_err(ApiError::internal)?;
            }
            w.close().map_err(ApiError::internal)?;
            body = out;
            (
                [
                    (
                        header::CONTENT_TYPE,
                        "application/vnd.apache.parquet".to_string(),
                    ),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"{name}.parquet\""),
                    ),
                ],
                body.clone(),
            )
                .into_response()
        }
        _ => {
            let mut out = Vec::new();
            {
                let mut w = arrow_ipc::writer::StreamWriter::try_new(&mut out, &out_schema)
                    .map_err(ApiError::internal)?;
                for b in &batches {
                    w.write(b).map_err(ApiError::internal)?;
                }
                w.finish().map_err(ApiError::internal)?;
            }
            body = out;
            (
                [
                    (
                        header::CONTENT_TYPE,
                        "application/vnd.apache.arrow.stream".to_string(),
                    ),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"{name}.arrows\""),
                    ),
                ],
                body.clone(),
            )
                .into_response()
        }
    };
    let mut e = caller.event("data.read", &format!("{unit}.{name}"));
    e.columns = out_schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(",");
    e.row_count = Some(rows as i64);
    e.grant_id = grant.as_ref().map(|g| g.id);
    e.purpose = grant
        .as_ref()
        .map(|g| g.purpose.clone())
        .unwrap_or_default();
    let filters: Vec<String> = params
        .iter()
        .filter(|(k, _)| !RESERVED.contains(&k.as_str()))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    e.detail = serde_json::json!({"format": format, "offset": offset, "limit": limit,
        "filters": filters, "sort": params.get("sort")})
    .to_string();
    state.audit(e).await;
    if let Err(err) = state
        .access()
        .meter(caller.name(), dataset.id, rows as i64, body.len() as i64)
        .await
    {
        tracing::error!("metering failed: {err}");
    }
    // Quotas are charged with the rows read from the table.
    for (g, n) in engine.rows_read() {
        if let Err(err) = state.access().add_rows_served(g, n as i64).await {
            tracing::error!("counting rows against grant {g} failed: {err}");
        }
    }
    alert_on_volume(&state, caller.name(), rows as i64).await;
    Ok(response)
}

/// Raises an alert when a grant is used outside its hours.
pub(crate) async fn alert_on_withheld(
    state: &AppState,
    principal: &str,
    dataset: &str,
    withheld: &reservoir_access::policy::Withheld,
) {
    if withheld.reason.contains("hours") {
        let _ = state
            .catalog()
            .raise_alert(
                "outside_hours",
                &format!("principal:{principal}"),
                dataset,
                &format!("{principal} tried {dataset} {}", withheld.reason),
            )
            .await;
    }
}

/// Raises an alert when a principal's rows today run far above its daily average (ten times,
/// and at least 10 000 rows).
pub(crate) async fn alert_on_volume(state: &AppState, principal: &str, _rows: i64) {
    let access = state.access();
    let (Ok(today), Ok(Some(baseline))) = (
        access.rows_today(principal).await,
        access.daily_rows_baseline(principal).await,
    ) else {
        return;
    };
    if today >= 10_000 && today as f64 > 10.0 * baseline.max(1.0) {
        let _ = state
            .catalog()
            .raise_alert(
                "unusual_volume",
                &format!("principal:{principal}"),
                "",
                &format!(
                    "{principal} was served {today} rows today, over ten times its daily average \
                     of {baseline:.0}"
                ),
            )
            .await;
    }
}
