//! A Delta Sharing server at `/delta-sharing`, following the published protocol (parquet
//! response format).
//!
//! ```text
//!  bearer token (rsv_…, from a grant) ─► share "reservoir" ─► schema = unit ─► table = dataset
//!  query ─► the grant's masked snapshot (share/g<grant>/<unit>__<dataset>), made again when the
//!           source or the grant changed ─► NDJSON: protocol, metaData, one file line per file
//!  file URLs ─► /delta-sharing/files/… signed with an HMAC and valid for 15 minutes, served
//!               by this server (with Range requests) from the local lake
//!  changes   ─► per snapshot version: v0's files as inserts; later versions' row-level
//!               changes (EXCEPT ALL against the version before), written once as a change file
//!               with `_change_type` in the snapshot's `_change_data/`
//! ```
//!
//! A grant never shares the raw files: what leaves is the snapshot the policy engine wrote —
//! granted columns only, masked (keyed hashes with the grantee's own key), rows filtered.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use reservoir_access::{Grant, Role};
use reservoir_catalog::Dataset;
use reservoir_lake::{Layer, TableRef};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::Row;

use crate::AppState;
use crate::auth::Caller;
use crate::open::base_url;

/// The one share: everything a principal's grants give it.
pub const SHARE: &str = "reservoir";
/// How long a signed file URL lasts.
const URL_MINUTES: i64 = 15;

/// A protocol error: `{"errorCode", "message"}` with its HTTP status.
pub(crate) struct SharingError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl SharingError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST", message)
    }

    fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE", message)
    }
}

impl IntoResponse for SharingError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"errorCode": self.code, "message": self.message})),
        )
            .into_response()
    }
}

impl From<crate::ApiError> for SharingError {
    fn from(e: crate::ApiError) -> Self {
        let code = match e.status {
            StatusCode::UNAUTHORIZED => "UNAUTHENTICATED",
            StatusCode::FORBIDDEN => "PERMISSION_DENIED",
            StatusCode::NOT_FOUND => "RESOURCE_DOES_NOT_EXIST",
            s if s.is_client_error() => "INVALID_PARAMETER_VALUE",
            _ => "INTERNAL_ERROR",
        };
        Self::new(e.status, code, e.message)
    }
}

macro_rules! from_via_api {
    ($($t:ty),*) => {$(
        impl From<$t> for SharingError {
            fn from(e: $t) -> Self {
                crate::ApiError::from(e).into()
            }
        }
    )*};
}
from_via_api!(
    reservoir_catalog::Error,
    reservoir_access::Error,
    reservoir_query::Error
);

type SharingResult<T> = Result<T, SharingError>;

/// The tables a caller's grants share, by (unit, dataset).
async fn shared_tables(
    state: &AppState,
    caller: &Caller,
) -> SharingResult<BTreeMap<(String, String), (Dataset, Grant)>> {
    if caller.principal.user.is_none() {
        return Err(SharingError::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "send the bearer token of your Delta Sharing profile",
        ));
    }
    if caller.role() == Role::Public {
        return Ok(BTreeMap::new());
    }
    let visibility = state.access().visibility(&caller.principal).await?;
    let mut out = BTreeMap::new();
    for grant in visibility.grants().values() {
        if let Some(d) = state.catalog().dataset_by_id(grant.dataset_id).await?
            && d.layer == "raw"
        {
            out.insert((d.unit_id.clone(), d.name.clone()), (d, grant.clone()));
        }
    }
    Ok(out)
}

fn check_share(share: &str) -> SharingResult<()> {
    if share == SHARE {
        Ok(())
    } else {
        Err(SharingError::not_found(format!(
            "share {share:?} does not exist (the share is {SHARE:?})"
        )))
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct Paging {
    #[serde(rename = "maxResults")]
    max_results: Option<usize>,
    #[serde(rename = "pageToken")]
    page_token: Option<String>,
}

/// Items of a list with the protocol's paging: `pageToken` is the offset, as text.
fn page(items: Vec<Value>, p: &Paging) -> SharingResult<Value> {
    let start: usize = match p.page_token.as_deref().filter(|t| !t.is_empty()) {
        Some(t) => t.parse().map_err(|_| {
            SharingError::bad(format!("pageToken {t:?} is not one this server gave"))
        })?,
        None => 0,
    };
    let max = p.max_results.unwrap_or(500).clamp(1, 1000);
    let end = (start + max).min(items.len());
    let mut out = json!({"items": items.get(start..end).unwrap_or_default()});
    if end < items.len() {
        out["nextPageToken"] = json!(end.to_string());
    }
    Ok(out)
}

pub(crate) async fn list_shares(
    Query(p): Query<Paging>,
    caller: Caller,
    State(state): State<AppState>,
) -> SharingResult<Json<Value>> {
    shared_tables(&state, &caller).await?;
    Ok(Json(page(vec![json!({"name": SHARE, "id": SHARE})], &p)?))
}

pub(crate) async fn get_share(
    Path(share): Path<String>,
    caller: Caller,
    State(state): State<AppState>,
) -> SharingResult<Json<Value>> {
    shared_tables(&state, &caller).await?;
    check_share(&share)?;
    Ok(Json(json!({"share": {"name": SHARE, "id": SHARE}})))
}

pub(crate) async fn list_schemas(
    Path(share): Path<String>,
    Query(p): Query<Paging>,
    caller: Caller,
    State(state): State<AppState>,
) -> SharingResult<Json<Value>> {
    let tables = shared_tables(&state, &caller).await?;
    check_share(&share)?;
    let mut units: Vec<&String> = tables.keys().map(|(u, _)| u).collect();
    units.dedup();
    let items = units
        .into_iter()
        .map(|u| json!({"name": u, "share": SHARE}))
        .collect();
    Ok(Json(page(items, &p)?))
}

fn table_item(unit: &str, name: &str, grant: &Grant) -> Value {
    json!({
        "name": name,
        "schema": unit,
        "share": SHARE,
        "shareId": SHARE,
        "id": format!("grant-{}", grant.id),
    })
}

pub(crate) async fn list_tables(
    Path((share, schema)): Path<(String, String)>,
    Query(p): Query<Paging>,
    caller: Caller,
    State(state): State<AppState>,
) -> SharingResult<Json<Value>> {
    let tables = shared_tables(&state, &caller).await?;
    check_share(&share)?;
    if !tables.keys().any(|(u, _)| *u == schema) {
        return Err(SharingError::not_found(format!(
            "schema {schema:?} does not exist in share {SHARE:?}"
        )));
    }
    let items = tables
        .iter()
        .filter(|((u, _), _)| *u == schema)
        .map(|((u, n), (_, g))| table_item(u, n, g))
        .collect();
    Ok(Json(page(items, &p)?))
}

pub(crate) async fn list_all_tables(
    Path(share): Path<String>,
    Query(p): Query<Paging>,
    caller: Caller,
    State(state): State<AppState>,
) -> SharingResult<Json<Value>> {
    let tables = shared_tables(&state, &caller).await?;
    check_share(&share)?;
    let items = tables
        .iter()
        .map(|((u, n), (_, g))| table_item(u, n, g))
        .collect();
    Ok(Json(page(items, &p)?))
}

/// What a grant shares, made (again) when its source or the grant changed.
struct Shared {
    table: TableRef,
    /// The snapshot's current version.
    version: i64,
    /// Rows in the snapshot.
    rows: i64,
    grant: Grant,
    dataset: Dataset,
}

fn fingerprint(grant: &Grant) -> String {
    let text =
        serde_json::json!({"columns": grant.columns, "row_filter": grant.row_filter}).to_string();
    reservoir_access::secret::sha256_hex(&text)
}

async fn shared(
    state: &AppState,
    caller: &Caller,
    share: &str,
    schema: &str,
    name: &str,
) -> SharingResult<Shared> {
    let tables = shared_tables(state, caller).await?;
    check_share(share)?;
    let Some((dataset, grant)) = tables.get(&(schema.to_string(), name.to_string())).cloned()
    else {
        return Err(SharingError::not_found(format!(
            "table {schema}.{name} does not exist in share {SHARE:?} (no grant in force gives it)"
        )));
    };
    let source = TableRef::new(Layer::Raw, &dataset.unit_id, &dataset.name);
    let delta = state
        .lake()
        .open(&source)
        .await
        .map_err(crate::ApiError::internal)?
        .ok_or_else(|| SharingError::not_found(format!("{schema}.{name} has no data yet")))?;
    let source_version = delta.version().unwrap_or(0) as i64;
    let target = TableRef::new(
        Layer::Share,
        format!("g{}", grant.id),
        format!("{}__{}", dataset.unit_id, dataset.name),
    );
    let fp = fingerprint(&grant);
    // Concurrent first requests would each materialize and race to commit the same snapshot.
    let lock = state.share_lock(grant.id);
    let _made = lock.lock().await;
    let pool = state.catalog().pool();
    let row = sqlx::query("SELECT source_version, fingerprint, table_version, row_count FROM share_snapshots WHERE grant_id = $1")
        .bind(grant.id)
        .fetch_optional(pool)
        .await
        .map_err(reservoir_catalog::Error::from)?;
    let current = match row {
        Some(r) => {
            let (sv, f, tv, n): (i64, String, i64, i64) = (
                r.try_get(0).map_err(reservoir_catalog::Error::from)?,
                r.try_get(1).map_err(reservoir_catalog::Error::from)?,
                r.try_get(2).map_err(reservoir_catalog::Error::from)?,
                r.try_get(3).map_err(reservoir_catalog::Error::from)?,
            );
            (sv == source_version && f == fp).then_some((tv, n))
        }
        None => None,
    };
    let (version, rows) = match current {
        Some(v) => v,
        None => {
            let key = state
                .mask_key()
                .map(|k| Arc::new(k.for_principal(&grant.user_id)));
            let columns: Vec<_> = grant
                .columns
                .iter()
                .filter(|c| !c.name.starts_with('_'))
                .cloned()
                .collect();
            let snap = reservoir_query::snapshot::materialize(
                state.lake(),
                &source,
                &columns,
                grant.row_filter.as_deref(),
                key,
                target.clone(),
            )
            .await?;
            sqlx::query(
                "INSERT INTO share_snapshots (grant_id, source_version, fingerprint, table_version, row_count, made_at)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (grant_id) DO UPDATE SET source_version = excluded.source_version,
                     fingerprint = excluded.fingerprint, table_version = excluded.table_version,
                     row_count = excluded.row_count, made_at = excluded.made_at",
            )
            .bind(grant.id)
            .bind(snap.source_version)
            .bind(&fp)
            .bind(snap.version)
            .bind(snap.rows as i64)
            .bind(reservoir_catalog::format_ts(Utc::now()))
            .execute(pool)
            .await
            .map_err(reservoir_catalog::Error::from)?;
            (snap.version, snap.rows as i64)
        }
    };
    Ok(Shared {
        table: target,
        version,
        rows,
        grant,
        dataset,
    })
}

fn version_header(mut resp: Response, version: i64) -> Response {
    if let Ok(v) = HeaderValue::from_str(&version.to_string()) {
        resp.headers_mut().insert("delta-table-version", v);
    }
    resp
}

fn ndjson(lines: Vec<Value>, version: i64) -> Response {
    let mut body = String::new();
    for l in lines {
        body.push_str(&l.to_string());
        body.push('\n');
    }
    version_header(
        (
            [(header::CONTENT_TYPE, "application/x-ndjson; charset=utf-8")],
            body,
        )
            .into_response(),
        version,
    )
}

/// Parses a protocol timestamp: ISO-8601 as the protocol documents it
/// (`2022-01-01T00:00:00Z`, or with an offset / fractional seconds).
fn parse_timestamp(what: &str, text: &str) -> SharingResult<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            SharingError::bad(format!(
                "{what} {text:?} is not a timestamp in the protocol's ISO-8601 form, e.g. 2026-12-04T08:00:00Z"
            ))
        })
}

/// The newest version of `table` committed at or before `at`.
async fn version_at(
    state: &AppState,
    table: &TableRef,
    latest: i64,
    at: DateTime<Utc>,
) -> SharingResult<i64> {
    let at_ms = at.timestamp_millis();
    for v in (0..=latest).rev() {
        let ts = state
            .lake()
            .commit_timestamp(table, v)
            .await
            .map_err(crate::ApiError::internal)?;
        if ts.is_some_and(|t| t <= at_ms) {
            return Ok(v);
        }
    }
    Err(SharingError::bad(format!(
        "the table has no version at or before {}",
        at.to_rfc3339()
    )))
}

#[derive(Debug, Deserialize)]
pub(crate) struct VersionQuery {
    #[serde(rename = "startingTimestamp")]
    starting_timestamp: Option<String>,
}

pub(crate) async fn table_version(
    Path((share, schema, name)): Path<(String, String, String)>,
    Query(q): Query<VersionQuery>,
    caller: Caller,
    State(state): State<AppState>,
) -> SharingResult<Response> {
    let s = shared(&state, &caller, &share, &schema, &name).await?;
    let version = match &q.starting_timestamp {
        Some(t) => version_from(&state, &s.table, s.version, "startingTimestamp", t).await?,
        None => s.version,
    };
    Ok(version_header(StatusCode::OK.into_response(), version))
}

async fn metadata_lines(state: &AppState, s: &Shared, version: i64) -> SharingResult<Vec<Value>> {
    let delta = state
        .lake()
        .open_existing(&s.table)
        .await
        .map_err(crate::ApiError::internal)?;
    let schema = delta
        .snapshot()
        .map_err(crate::ApiError::internal)?
        .schema();
    let schema_string =
        serde_json::to_string(schema.as_ref()).map_err(crate::ApiError::internal)?;
    let files = state
        .lake()
        .commit_files(&s.table, version)
        .await
        .map_err(crate::ApiError::internal)?;
    Ok(vec![
        json!({"protocol": {"minReaderVersion": 1}}),
        json!({"metaData": {
            "id": format!("grant-{}", s.grant.id),
            "name": s.dataset.name,
            "description": s.dataset.title,
            "format": {"provider": "parquet"},
            "schemaString": schema_string,
            "partitionColumns": [],
            "configuration": {"enableChangeDataFeed": "true"},
            "version": version,
            "size": files.iter().map(|f| f.size).sum::<i64>(),
            "numFiles": files.len(),
        }}),
    ])
}

pub(crate) async fn table_metadata(
    Path((share, schema, name)): Path<(String, String, String)>,
    caller: Caller,
    State(state): State<AppState>,
) -> SharingResult<Response> {
    let s = shared(&state, &caller, &share, &schema, &name).await?;
    let lines = metadata_lines(&state, &s, s.version).await?;
    Ok(ndjson(lines, s.version))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct QueryBody {
    #[serde(default)]
    predicate_hints: Option<Vec<String>>,
    #[serde(default)]
    json_predicate_hints: Option<Value>,
    #[serde(default)]
    limit_hint: Option<i64>,
    #[serde(default)]
    version: Option<i64>,
    #[serde(default)]
    timestamp: Option<String>,
    #[serde(default)]
    starting_version: Option<i64>,
}

/// The key that signs file URLs: derived from the platform's masking key (or, without one, a
/// random key of this process, so URLs die with it).
fn url_key(state: &AppState) -> reservoir_access::mask::MaskKey {
    static FALLBACK: std::sync::OnceLock<reservoir_access::mask::MaskKey> =
        std::sync::OnceLock::new();
    match state.mask_key() {
        Some(k) => k.derive("delta-sharing-urls"),
        None => FALLBACK
            .get_or_init(|| {
                reservoir_access::mask::MaskKey::from_bytes(
                    &reservoir_access::secret::random_bytes(32),
                )
            })
            .clone(),
    }
}

fn sign(state: &AppState, grant: i64, version: i64, file: &str, expires: i64) -> String {
    url_key(state).mac_hex(&format!(
        "{grant}\u{1f}{version}\u{1f}{file}\u{1f}{expires}"
    ))
}

pub(crate) async fn query_table(
    Path((share, schema, name)): Path<(String, String, String)>,
    caller: Caller,
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> SharingResult<Response> {
    let q: QueryBody = if body.is_empty() {
        QueryBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| SharingError::bad(format!("the query body: {e}")))?
    };
    if q.starting_version.is_some() {
        return Err(SharingError::bad(
            "startingVersion (streaming) is not supported; query a version or a timestamp",
        ));
    }
    if q.version.is_some() && q.timestamp.is_some() {
        return Err(SharingError::bad("give version or timestamp, not both"));
    }
    if let Some(l) = q.limit_hint
        && l < 0
    {
        return Err(SharingError::bad(format!("limitHint {l} is negative")));
    }
    let s = shared(&state, &caller, &share, &schema, &name).await?;
    let version = match (q.version, &q.timestamp) {
        (Some(v), _) => {
            if v < 0 || v > s.version {
                return Err(SharingError::bad(format!(
                    "version {v} does not exist (latest is {})",
                    s.version
                )));
            }
            v
        }
        (None, Some(t)) => {
            let at = parse_timestamp("timestamp", t)?;
            version_at(&state, &s.table, s.version, at).await?
        }
        (None, None) => s.version,
    };
    // Quota: the rows of the snapshot count as read, drawn where SQL draws them.
    let rows = s.rows;
    if let Err(left) = draw_quota(&state, &s.grant, rows) {
        return Err(SharingError::new(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            format!(
                "grant {} allows {left} more rows; the shared table has {rows}",
                s.grant.id
            ),
        ));
    }
    let mut lines = metadata_lines(&state, &s, version).await?;
    let files = state
        .lake()
        .commit_files(&s.table, version)
        .await
        .map_err(crate::ApiError::internal)?;
    let expires = (Utc::now() + chrono::Duration::minutes(URL_MINUTES)).timestamp();
    let base = base_url(&headers);
    let mut bytes = 0i64;
    for f in &files {
        bytes += f.size;
        let sig = sign(&state, s.grant.id, version, &f.path, expires);
        let url = format!(
            "{base}/delta-sharing/files/{}/{version}/{}?expires={expires}&sig={sig}",
            s.grant.id,
            url::form_urlencoded::byte_serialize(f.path.as_bytes()).collect::<String>()
        );
        lines.push(json!({"file": {
            "url": url,
            "id": reservoir_access::secret::sha256_hex(&format!("{}/{version}/{}", s.grant.id, f.path)),
            "partitionValues": {},
            "size": f.size,
            "version": version,
            "expirationTimestamp": expires * 1000,
        }}));
    }
    let mut e = caller.event(
        "share.query",
        &format!("{}.{}", s.dataset.unit_id, s.dataset.name),
    );
    e.grant_id = Some(s.grant.id);
    e.purpose = s.grant.purpose.clone();
    e.row_count = Some(rows);
    e.columns = s
        .grant
        .columns
        .iter()
        .map(|c| c.name.as_str())
        .collect::<Vec<_>>()
        .join(",");
    e.detail =
        json!({"version": version, "files": files.len(), "predicateHints": q.predicate_hints,
        "jsonPredicateHints": q.json_predicate_hints, "limitHint": q.limit_hint})
        .to_string();
    state.audit(e).await;
    if let Err(err) = state
        .access()
        .meter(caller.name(), s.dataset.id, rows, bytes)
        .await
    {
        tracing::error!("metering failed: {err}");
    }
    if let Err(err) = state.access().add_rows_served(s.grant.id, rows).await {
        tracing::error!("counting rows against grant {} failed: {err}", s.grant.id);
    }
    Ok(ndjson(lines, version))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ChangesQuery {
    starting_version: Option<i64>,
    ending_version: Option<i64>,
    starting_timestamp: Option<String>,
    ending_timestamp: Option<String>,
    #[allow(dead_code)]
    include_historical_metadata: Option<bool>,
}

/// One file of a version's changes, as the protocol names its action: `add` (rows inserted),
/// `remove` (rows deleted) or `cdf` (a change file with a `_change_type` column).
struct Change {
    action: &'static str,
    path: String,
    size: i64,
    rows: i64,
}

/// Where the row-level changes of a snapshot version are kept, inside the shared table.
fn change_file(version: i64) -> String {
    format!("_change_data/cdc-{version:020}.parquet")
}

/// The changes that version `version` of a shared snapshot made. Version 0 inserted its rows.
/// Later versions replace the snapshot whole; their changes are the rows that differ from the
/// version before (`EXCEPT ALL` both ways), written once as a change file and kept. When the
/// columns changed (the grant was edited) the change is the old rows deleted and the new
/// inserted.
async fn changes_of(state: &AppState, s: &Shared, version: i64) -> SharingResult<Vec<Change>> {
    use datafusion::dataframe::DataFrameWriteOptions;
    use datafusion::prelude::{ParquetReadOptions, lit};
    let lake = state.lake();
    let files = |v: i64| async move {
        lake.commit_files(&s.table, v)
            .await
            .map_err(crate::ApiError::internal)
    };
    let local = |path: &str| {
        lake.local_file(&s.table, path)
            .ok_or_else(|| SharingError::bad("the change data feed needs the lake on a local disk"))
    };
    let internal = |e: datafusion::error::DataFusionError| crate::ApiError::internal(e);
    let ctx = reservoir_query::executor::session_context();
    let read = |paths: Vec<String>| {
        let ctx = ctx.clone();
        async move {
            ctx.read_parquet(paths, ParquetReadOptions::default())
                .await
                .map_err(internal)
        }
    };
    let rows_of = |paths: Vec<String>| async move {
        if paths.is_empty() {
            return Ok::<i64, SharingError>(0);
        }
        Ok(read(paths).await?.count().await.map_err(internal)? as i64)
    };
    let new = files(version).await?;
    let mut out = Vec::new();
    let as_changes = |action: &'static str, list: &[reservoir_lake::AddedFile]| {
        list.iter()
            .map(|f| Change {
                action,
                path: f.path.clone(),
                size: f.size,
                rows: 0,
            })
            .collect::<Vec<_>>()
    };
    let new_paths: Vec<String> = new
        .iter()
        .map(|f| local(&f.path).map(|p| p.display().to_string()))
        .collect::<SharingResult<_>>()?;
    if version == 0 {
        let mut adds = as_changes("add", &new);
        if let Some(first) = adds.first_mut() {
            first.rows = rows_of(new_paths).await?;
        }
        return Ok(adds);
    }
    let cdc = change_file(version);
    let cdc_path = local(&cdc)?;
    if let Ok(meta) = tokio::fs::metadata(&cdc_path).await {
        let rows = rows_of(vec![cdc_path.display().to_string()]).await?;
        out.push(Change {
            action: "cdf",
            path: cdc,
            size: meta.len() as i64,
            rows,
        });
        return Ok(out);
    }
    let old = files(version - 1).await?;
    let old_paths: Vec<String> = old
        .iter()
        .map(|f| local(&f.path).map(|p| p.display().to_string()))
        .collect::<SharingResult<_>>()?;
    if old_paths.is_empty() || new_paths.is_empty() {
        let mut all = as_changes("remove", &old);
        all.extend(as_changes("add", &new));
        if let Some(first) = all.first_mut() {
            first.rows = rows_of(old_paths).await? + rows_of(new_paths).await?;
        }
        return Ok(all);
    }
    let before = read(old_paths.clone()).await?;
    let after = read(new_paths.clone()).await?;
    if before.schema().as_arrow() != after.schema().as_arrow() {
        let mut all = as_changes("remove", &old);
        all.extend(as_changes("add", &new));
        if let Some(first) = all.first_mut() {
            first.rows = rows_of(old_paths).await? + rows_of(new_paths).await?;
        }
        return Ok(all);
    }
    let inserted = after
        .clone()
        .except(before.clone())
        .and_then(|d| d.with_column("_change_type", lit("insert")))
        .map_err(internal)?;
    let deleted = before
        .except(after)
        .and_then(|d| d.with_column("_change_type", lit("delete")))
        .map_err(internal)?;
    let all = deleted.union(inserted).map_err(internal)?;
    if let Some(dir) = cdc_path.parent() {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(crate::ApiError::internal)?;
    }
    // Written beside its final name and renamed, so a half-written file is never served.
    let partial = cdc_path.with_extension("parquet.partial");
    let written = all
        .write_parquet(
            &partial.display().to_string(),
            DataFrameWriteOptions::new().with_single_file_output(true),
            None,
        )
        .await
        .map_err(internal)?;
    let rows: u64 = written
        .iter()
        .filter_map(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<arrow::array::UInt64Array>()
                .map(|a| a.value(0))
        })
        .sum();
    tokio::fs::rename(&partial, &cdc_path)
        .await
        .map_err(crate::ApiError::internal)?;
    let size = tokio::fs::metadata(&cdc_path)
        .await
        .map_err(crate::ApiError::internal)?
        .len() as i64;
    out.push(Change {
        action: "cdf",
        path: cdc,
        size,
        rows: rows as i64,
    });
    Ok(out)
}

/// The earliest version of `table` committed at or after `at`.
async fn version_from(
    state: &AppState,
    table: &TableRef,
    latest: i64,
    what: &str,
    text: &str,
) -> SharingResult<i64> {
    let at = parse_timestamp(what, text)?;
    for v in 0..=latest {
        let ts = state
            .lake()
            .commit_timestamp(table, v)
            .await
            .map_err(crate::ApiError::internal)?;
        if ts.is_some_and(|x| x >= at.timestamp_millis()) {
            return Ok(v);
        }
    }
    Err(SharingError::bad(format!(
        "the table has no version at or after {text}"
    )))
}

/// The change data feed: for each version from the starting to the ending one, the files of
/// its changes, each line carrying the version and its commit timestamp.
pub(crate) async fn table_changes(
    Path((share, schema, name)): Path<(String, String, String)>,
    Query(q): Query<ChangesQuery>,
    caller: Caller,
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> SharingResult<Response> {
    let s = shared(&state, &caller, &share, &schema, &name).await?;
    let start = match (q.starting_version, &q.starting_timestamp) {
        (Some(v), None) => v,
        (None, Some(t)) => {
            version_from(&state, &s.table, s.version, "startingTimestamp", t).await?
        }
        (Some(_), Some(_)) => {
            return Err(SharingError::bad(
                "give startingVersion or startingTimestamp, not both",
            ));
        }
        (None, None) => {
            return Err(SharingError::bad(
                "the change data feed needs startingVersion or startingTimestamp",
            ));
        }
    };
    let end = match (q.ending_version, &q.ending_timestamp) {
        (Some(v), None) => v,
        (None, Some(t)) => {
            let at = parse_timestamp("endingTimestamp", t)?;
            version_at(&state, &s.table, s.version, at).await?
        }
        (Some(_), Some(_)) => {
            return Err(SharingError::bad(
                "give endingVersion or endingTimestamp, not both",
            ));
        }
        (None, None) => s.version,
    };
    if start < 0 || start > s.version {
        return Err(SharingError::bad(format!(
            "startingVersion {start} does not exist (the latest is {})",
            s.version
        )));
    }
    if end < start || end > s.version {
        return Err(SharingError::bad(format!(
            "endingVersion {end} must be between startingVersion {start} and the latest, {}",
            s.version
        )));
    }
    let mut lines = metadata_lines(&state, &s, end).await?;
    let expires = (Utc::now() + chrono::Duration::minutes(URL_MINUTES)).timestamp();
    let base = base_url(&headers);
    let (mut rows, mut bytes, mut count) = (0i64, 0i64, 0usize);
    let mut changes = Vec::new();
    for v in start..=end {
        let ts = state
            .lake()
            .commit_timestamp(&s.table, v)
            .await
            .map_err(crate::ApiError::internal)?
            .unwrap_or(0);
        for c in changes_of(&state, &s, v).await? {
            rows += c.rows;
            changes.push((v, ts, c));
        }
    }
    if let Err(left) = draw_quota(&state, &s.grant, rows) {
        return Err(SharingError::new(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            format!(
                "grant {} allows {left} more rows; these changes have {rows}",
                s.grant.id
            ),
        ));
    }
    for (v, ts, c) in changes {
        bytes += c.size;
        count += 1;
        let sig = sign(&state, s.grant.id, v, &c.path, expires);
        let url = format!(
            "{base}/delta-sharing/files/{}/{v}/{}?expires={expires}&sig={sig}",
            s.grant.id,
            url::form_urlencoded::byte_serialize(c.path.as_bytes()).collect::<String>()
        );
        lines.push(json!({c.action: {
            "url": url,
            "id": reservoir_access::secret::sha256_hex(&format!("{}/{v}/{}", s.grant.id, c.path)),
            "partitionValues": {},
            "size": c.size,
            "version": v,
            "timestamp": ts,
            "expirationTimestamp": expires * 1000,
        }}));
    }
    let mut e = caller.event(
        "share.changes",
        &format!("{}.{}", s.dataset.unit_id, s.dataset.name),
    );
    e.grant_id = Some(s.grant.id);
    e.purpose = s.grant.purpose.clone();
    e.row_count = Some(rows);
    e.detail = json!({"startingVersion": start, "endingVersion": end, "files": count}).to_string();
    state.audit(e).await;
    if let Err(err) = state
        .access()
        .meter(caller.name(), s.dataset.id, rows, bytes)
        .await
    {
        tracing::error!("metering failed: {err}");
    }
    if let Err(err) = state.access().add_rows_served(s.grant.id, rows).await {
        tracing::error!("counting rows against grant {} failed: {err}", s.grant.id);
    }
    Ok(ndjson(lines, end))
}

#[derive(Debug, Deserialize)]
pub(crate) struct FileQuery {
    expires: i64,
    sig: String,
}

/// Draws `rows` from `grant`'s quota on the process's meter, which SQL scans share; `Err` holds
/// the rows left.
fn draw_quota(state: &AppState, grant: &reservoir_access::Grant, rows: i64) -> Result<(), u64> {
    reservoir_query::policy::draw_quota(
        state.lake().root().as_str(),
        grant.id,
        grant.row_quota.map(|q| q.max(0) as u64),
        grant.rows_served.max(0) as u64,
        rows.max(0) as u64,
    )
}

/// `GET /delta-sharing/files/{grant}/{version}/{file}?expires=&sig=`: a data file of a shared
/// snapshot, for whoever holds the signed URL until it expires (Range requests work).
pub(crate) async fn file(
    Path((grant, version, file)): Path<(i64, i64, String)>,
    Query(q): Query<FileQuery>,
    State(state): State<AppState>,
    req: Request,
) -> Response {
    let refuse = |status: StatusCode, message: &str| {
        SharingError::new(status, "PERMISSION_DENIED", message).into_response()
    };
    if q.expires < Utc::now().timestamp() {
        return refuse(
            StatusCode::FORBIDDEN,
            "this file URL has expired; query the table again",
        );
    }
    let expected = sign(&state, grant, version, &file, q.expires);
    if !reservoir_access::secret::constant_time_eq(&expected, &q.sig) {
        return refuse(
            StatusCode::FORBIDDEN,
            "this file URL's signature does not match",
        );
    }
    let Ok(Some(g)) = state.access().grant(grant).await else {
        return refuse(StatusCode::NOT_FOUND, "no such shared file");
    };
    // The URL lives 15 minutes; the grant and its holder must still be in good standing.
    if !g.active_at(&reservoir_catalog::format_ts(Utc::now())) {
        return refuse(
            StatusCode::FORBIDDEN,
            "the grant of this file is revoked, expired or not yet in force",
        );
    }
    // Where a newer grant on the same dataset took this one's place, its files stop too.
    let now = reservoir_catalog::format_ts(Utc::now());
    match state
        .access()
        .grants(Some(&g.user_id), Some(g.dataset_id))
        .await
        .map(|gs| gs.into_iter().find(|n| n.active_at(&now)))
    {
        Ok(Some(newest)) if newest.id == g.id => {}
        Ok(_) => {
            return refuse(
                StatusCode::FORBIDDEN,
                "the grant of this file is superseded by a newer grant on the same dataset; query the table again",
            );
        }
        Err(e) => return crate::ApiError::from(e).into_response(),
    }
    if !matches!(state.access().user(&g.user_id).await, Ok(Some(u)) if !u.disabled) {
        return refuse(
            StatusCode::FORBIDDEN,
            "the account holding the grant of this file is disabled",
        );
    }
    let Ok(Some(d)) = state.catalog().dataset_by_id(g.dataset_id).await else {
        return refuse(StatusCode::NOT_FOUND, "no such shared file");
    };
    let table = TableRef::new(
        Layer::Share,
        format!("g{grant}"),
        format!("{}__{}", d.unit_id, d.name),
    );
    let Some(path) = state.lake().local_file(&table, &file) else {
        return refuse(StatusCode::NOT_FOUND, "no such shared file");
    };
    use tower::ServiceExt;
    match tower_http::services::ServeFile::new(path)
        .oneshot(req)
        .await
    {
        Ok(resp) => resp.map(axum::body::Body::new),
        Err(e) => crate::ApiError::internal(e).into_response(),
    }
}

/// A Delta Sharing profile for one of the caller's grants: a new token scoped to that grant
/// (expiring with it, at most in 30 days) and the endpoint. The token is in the file, once.
#[utoipa::path(
    post,
    path = "/api/v1/grants/{id}/sharing-profile",
    tag = "access",
    params(("id" = i64, Path)),
    responses(
        (status = 200, description = "The profile file (JSON)", content_type = "application/json"),
        (status = 400, body = crate::ErrorBody),
        (status = 401, body = crate::ErrorBody),
        (status = 403, body = crate::ErrorBody),
        (status = 404, body = crate::ErrorBody),
        (status = 409, body = crate::ErrorBody),
    )
)]
pub(crate) async fn profile(
    State(state): State<AppState>,
    caller: Caller,
    crate::ApiPath(id): crate::ApiPath<i64>,
    headers: axum::http::HeaderMap,
) -> crate::ApiResult<Response> {
    caller.require_login()?;
    if caller.principal.grant_scope.is_some() {
        return Err(crate::auth::forbidden(
            "a token scoped to a grant cannot issue tokens or sharing profiles",
        ));
    }
    let grant = state
        .access()
        .grant(id)
        .await?
        .filter(|g| g.user_id == caller.name())
        .ok_or_else(|| crate::ApiError::not_found(format!("you hold no grant {id}")))?;
    // Only the grant that applies: where several cover one dataset, the newest in force.
    let now = reservoir_catalog::format_ts(chrono::Utc::now());
    if let Some(newest) = state
        .access()
        .grants(Some(caller.name()), Some(grant.dataset_id))
        .await?
        .into_iter()
        .find(|g| g.active_at(&now))
        && newest.id != grant.id
    {
        return Err(crate::ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "conflict",
            format!(
                "grant {id} is superseded by grant {} on the same dataset: ask for a profile of grant {}",
                newest.id, newest.id
            ),
        ));
    }
    let issued = state
        .access()
        .create_token(
            caller.name(),
            &format!("Delta Sharing, grant {id}"),
            Some(grant.id),
            30,
        )
        .await?;
    let mut e = caller.event("token.create", caller.name());
    e.grant_id = Some(id);
    e.detail = json!({"token": issued.token.id, "for": "delta-sharing profile"}).to_string();
    state.audit(e).await;
    let profile = json!({
        "shareCredentialsVersion": 1,
        "endpoint": format!("{}/delta-sharing", base_url(&headers)),
        "bearerToken": issued.secret,
        "expirationTime": issued.token.expires_at,
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"reservoir-grant-{id}.share\""),
            ),
        ],
        serde_json::to_vec_pretty(&profile).map_err(crate::ApiError::internal)?,
    )
        .into_response())
}
