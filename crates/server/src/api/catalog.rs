//! Catalog endpoints: units, systems, datasets, runs, samples and quarantined rows.

use axum::Json;
use axum::extract::State;
use reservoir_catalog::{
    Alert, CatalogStats, ColumnProfile, Dataset, DatasetFacets, DatasetFilter, DriftEvent, Field,
    OpenTier, Run, RunSummary, System, Unit, UnitRows,
};
use reservoir_lake::{Layer, TableRef};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use reservoir_access::{Role, TableAccess};

use super::query::{QueryResult, quote_ident, quote_literal, run_query, to_result};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::{ApiPath, ApiQuery, AppState};

/// Storage used by the lake against its capacity.
#[derive(Debug, Serialize, ToSchema)]
pub struct Storage {
    pub used_bytes: u64,
    /// The configured capacity, or the size of the disk holding the lake.
    pub capacity_bytes: u64,
}

/// What the console's home page shows.
#[derive(Debug, Serialize, ToSchema)]
pub struct Stats {
    pub catalog: CatalogStats,
    pub storage: Storage,
    /// Datasets and rows per unit, most rows first.
    pub units: Vec<UnitRows>,
    /// The newest collection runs.
    pub latest_runs: Vec<RunSummary>,
}

/// Platform totals, storage, rows per unit and the latest runs.
#[utoipa::path(get, path = "/api/v1/stats", tag = "catalog", responses((status = 200, body = Stats)))]
pub(crate) async fn stats(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Stats>> {
    caller.require_login()?;
    let catalog = state.catalog();
    let lake = state.lake().clone();
    let configured = state.config().capacity_bytes;
    let storage = tokio::task::spawn_blocking(move || {
        let used = lake.disk_usage();
        let capacity = if configured > 0 {
            configured
        } else {
            lake.local_root()
                .and_then(|p| fs4::total_space(p).ok())
                .unwrap_or(0)
        };
        Storage {
            used_bytes: used,
            capacity_bytes: capacity,
        }
    })
    .await
    .map_err(ApiError::internal)?;
    Ok(Json(Stats {
        catalog: catalog.stats().await?,
        storage,
        units: catalog.rows_by_unit().await?,
        latest_runs: catalog.recent_runs(10).await?,
    }))
}

/// All units.
#[utoipa::path(get, path = "/api/v1/units", tag = "catalog", responses((status = 200, body = Vec<Unit>)))]
pub(crate) async fn units(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<Unit>>> {
    caller.require_login()?;
    Ok(Json(state.catalog().units().await?))
}

/// A unit with its systems and datasets.
#[derive(Debug, Serialize, ToSchema)]
pub struct UnitDetail {
    pub unit: Unit,
    pub systems: Vec<System>,
    pub datasets: Vec<Dataset>,
}

/// One unit.
#[utoipa::path(
    get,
    path = "/api/v1/units/{id}",
    tag = "catalog",
    params(("id" = String, Path, description = "Unit id")),
    responses((status = 200, body = UnitDetail), (status = 400, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody))
)]
pub(crate) async fn unit(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<UnitDetail>> {
    caller.require_login()?;
    let catalog = state.catalog();
    let unit = catalog
        .unit(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("unit {id:?} is not in the catalog")))?;
    Ok(Json(UnitDetail {
        systems: catalog.systems(Some(&id)).await?,
        datasets: catalog
            .datasets(&DatasetFilter {
                unit_id: Some(id.clone()),
                ..DatasetFilter::default()
            })
            .await?,
        unit,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SystemsQuery {
    /// Only this unit's systems.
    unit: Option<String>,
}

/// Source systems.
#[utoipa::path(get, path = "/api/v1/systems", tag = "catalog", params(SystemsQuery), responses((status = 200, body = Vec<System>), (status = 400, body = crate::ErrorBody)))]
pub(crate) async fn systems(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<SystemsQuery>,
) -> ApiResult<Json<Vec<System>>> {
    caller.require_login()?;
    Ok(Json(state.catalog().systems(q.unit.as_deref()).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DatasetsQuery {
    /// Search text: segmented into words (Chinese too) and matched against names, titles,
    /// descriptions, tags, topics and fields; results come best first.
    q: Option<String>,
    unit: Option<String>,
    layer: Option<String>,
    /// Only datasets of this topic (主题).
    topic: Option<String>,
    /// open, conditional or closed.
    open_tier: Option<String>,
    /// Page size, 1–500 (default 50).
    limit: Option<i64>,
    offset: Option<i64>,
}

/// A page of datasets.
#[derive(Debug, Serialize, ToSchema)]
pub struct DatasetPage {
    /// Datasets matching the filter, over all pages.
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
    pub items: Vec<Dataset>,
    pub facets: DatasetFacets,
}

/// Search and list datasets, with facets by unit, layer and open tier.
#[utoipa::path(get, path = "/api/v1/datasets", tag = "catalog", params(DatasetsQuery),
    responses((status = 200, body = DatasetPage), (status = 400, body = crate::ErrorBody)))]
pub(crate) async fn datasets(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<DatasetsQuery>,
) -> ApiResult<Json<DatasetPage>> {
    caller.require_login()?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit {limit}: expected 1 to 500"
        )));
    }
    let offset = q.offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::bad_request(format!(
            "offset {offset}: expected 0 or more"
        )));
    }
    let open_tier = match q.open_tier.as_deref().filter(|s| !s.is_empty()) {
        Some(t) => Some(t.parse::<OpenTier>()?),
        None => None,
    };
    let filter = DatasetFilter {
        unit_id: q.unit.filter(|s| !s.is_empty()),
        layer: q.layer.filter(|s| !s.is_empty()),
        open_tier,
        topic: q.topic.filter(|s| !s.is_empty()),
        search: q.q.filter(|s| !s.trim().is_empty()),
        limit: Some(limit),
        offset: Some(offset),
    };
    let catalog = state.catalog();
    Ok(Json(DatasetPage {
        total: catalog.count_datasets(&filter).await?,
        limit,
        offset,
        items: catalog.datasets(&filter).await?,
        facets: catalog.dataset_facets(&filter).await?,
    }))
}

/// A dataset's profile and the run it was computed after.
#[derive(Debug, Serialize, ToSchema)]
pub struct Profile {
    pub run_id: i64,
    pub columns: Vec<ColumnProfile>,
}

/// Everything the dataset page shows.
#[derive(Debug, Serialize, ToSchema)]
pub struct DatasetDetail {
    pub dataset: Dataset,
    pub unit_name: String,
    pub fields: Vec<Field>,
    pub profile: Option<Profile>,
    /// The newest runs, newest first.
    pub runs: Vec<Run>,
    /// Name of the quarantine table, if any row of this dataset was ever quarantined.
    pub quarantine_table: Option<String>,
    /// Fields holding personal data: suggested by a scan, or decided by a steward.
    pub pii: Vec<reservoir_catalog::PiiMark>,
    /// Fields bound to data elements.
    pub elements: Vec<FieldElement>,
    /// Fields bound to code tables.
    pub code_tables: Vec<FieldCodeTable>,
}

/// A field and the data element it is bound to.
#[derive(Debug, Serialize, ToSchema)]
pub struct FieldElement {
    pub field: String,
    pub element: reservoir_catalog::standards::DataElement,
}

/// A field and the code table it is bound to.
#[derive(Debug, Serialize, ToSchema)]
pub struct FieldCodeTable {
    pub field: String,
    pub table: String,
}

async fn find_dataset(state: &AppState, layer: &str, unit: &str, name: &str) -> ApiResult<Dataset> {
    state
        .catalog()
        .dataset(layer, unit, name)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "dataset {layer}.{unit}.{name} is not in the catalog"
            ))
        })
}

/// One dataset: description, schema, profile, runs.
#[utoipa::path(
    get,
    path = "/api/v1/datasets/{layer}/{unit}/{name}",
    tag = "catalog",
    params(("layer" = String, Path, example = "raw"), ("unit" = String, Path, example = "minzheng"), ("name" = String, Path, example = "villages")),
    responses((status = 200, body = DatasetDetail), (status = 400, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody))
)]
pub(crate) async fn dataset(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((layer, unit, name)): ApiPath<(String, String, String)>,
) -> ApiResult<Json<DatasetDetail>> {
    caller.require_login()?;
    let d = find_dataset(&state, &layer, &unit, &name).await?;
    let catalog = state.catalog();
    let unit_name = catalog
        .unit(&d.unit_id)
        .await?
        .map(|u| u.name)
        .unwrap_or_default();
    let quarantine = match layer.parse::<Layer>() {
        Ok(l) => {
            let q = TableRef::new(l, &unit, &name).in_layer(Layer::Quarantine);
            match state.lake().open(&q).await {
                Ok(Some(_)) => Some(q.to_string()),
                Ok(None) => None,
                Err(e) => return Err(ApiError::internal(e)),
            }
        }
        Err(_) => None,
    };
    // Profiles hold values (min, max, frequent values) and quarantined rows are raw: only for
    // principals who see the table whole.
    let full = state
        .access()
        .visibility(&caller.principal)
        .await?
        .table(&d)
        == Some(TableAccess::Full);
    Ok(Json(DatasetDetail {
        fields: catalog.fields(d.id).await?,
        profile: if full {
            catalog
                .latest_profiles(d.id)
                .await?
                .map(|(run_id, columns)| Profile { run_id, columns })
        } else {
            None
        },
        runs: catalog.runs(Some(d.id), 20).await?,
        quarantine_table: quarantine.filter(|_| full),
        pii: catalog.pii(d.id).await?,
        elements: catalog
            .field_elements(d.id)
            .await?
            .into_iter()
            .map(|(field, element)| FieldElement { field, element })
            .collect(),
        code_tables: catalog
            .field_code_tables(d.id)
            .await?
            .into_iter()
            .map(|(field, table)| FieldCodeTable { field, table })
            .collect(),
        unit_name,
        dataset: d,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct LimitQuery {
    /// Rows to return (default 20, at most the server's row limit).
    limit: Option<usize>,
}

/// The first rows of a dataset (in load order).
#[utoipa::path(
    get,
    path = "/api/v1/datasets/{layer}/{unit}/{name}/sample",
    tag = "catalog",
    params(("layer" = String, Path, example = "raw"), ("unit" = String, Path, example = "minzheng"), ("name" = String, Path, example = "villages"), LimitQuery),
    responses((status = 200, body = QueryResult), (status = 400, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody))
)]
pub(crate) async fn dataset_sample(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((layer, unit, name)): ApiPath<(String, String, String)>,
    ApiQuery(q): ApiQuery<LimitQuery>,
) -> ApiResult<Json<QueryResult>> {
    caller.require_login()?;
    let d = find_dataset(&state, &layer, &unit, &name).await?;
    let table = format!(
        "{}.{}.{}",
        quote_ident(&d.layer),
        quote_ident(&d.unit_id),
        quote_ident(&d.name)
    );
    let limit = q.limit.unwrap_or(20);
    let visibility = state.access().visibility(&caller.principal).await?;
    if visibility.table(&d).is_none() {
        return Err(crate::auth::forbidden(format!(
            "{} has no grant on {}.{}: request access to see its rows",
            caller.name(),
            d.unit_id,
            d.name
        )));
    }
    let (batches, truncated, elapsed) = run_query(
        &state,
        &caller,
        &format!("SELECT * FROM {table}"),
        Some(limit),
        "data.sample",
    )
    .await?;
    Ok(Json(to_result(&batches, None, truncated, elapsed)?))
}

/// A dataset's runs, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/datasets/{layer}/{unit}/{name}/runs",
    tag = "catalog",
    params(("layer" = String, Path, example = "raw"), ("unit" = String, Path, example = "minzheng"), ("name" = String, Path, example = "villages"), LimitQuery),
    responses((status = 200, body = Vec<Run>), (status = 400, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody))
)]
pub(crate) async fn dataset_runs(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((layer, unit, name)): ApiPath<(String, String, String)>,
    ApiQuery(q): ApiQuery<LimitQuery>,
) -> ApiResult<Json<Vec<Run>>> {
    caller.require_login()?;
    let d = find_dataset(&state, &layer, &unit, &name).await?;
    Ok(Json(
        state
            .catalog()
            .runs(Some(d.id), q.limit.unwrap_or(50) as i64)
            .await?,
    ))
}

/// Schema-drift events of a dataset's source, newest first: columns added, removed, widened or
/// narrowed, and type changes that stopped a run.
#[utoipa::path(
    get,
    path = "/api/v1/datasets/{layer}/{unit}/{name}/drift",
    tag = "catalog",
    params(("layer" = String, Path, example = "raw"), ("unit" = String, Path, example = "minzheng"), ("name" = String, Path, example = "villages")),
    responses((status = 200, body = Vec<DriftEvent>), (status = 400, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody))
)]
pub(crate) async fn dataset_drift(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((layer, unit, name)): ApiPath<(String, String, String)>,
) -> ApiResult<Json<Vec<DriftEvent>>> {
    caller.require_login()?;
    let d = find_dataset(&state, &layer, &unit, &name).await?;
    Ok(Json(state.catalog().drift_events(d.id).await?))
}

/// A dataset's lineage: the sources that loaded it, and the quarantine and quality tables its
/// rejected and failing rows went to.
#[utoipa::path(
    get,
    path = "/api/v1/datasets/{layer}/{unit}/{name}/lineage",
    tag = "catalog",
    params(("layer" = String, Path, example = "raw"), ("unit" = String, Path, example = "minzheng"), ("name" = String, Path, example = "villages")),
    responses((status = 200, body = reservoir_catalog::lineage::Lineage), (status = 400, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody))
)]
pub(crate) async fn dataset_lineage(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((layer, unit, name)): ApiPath<(String, String, String)>,
) -> ApiResult<Json<reservoir_catalog::lineage::Lineage>> {
    caller.require_login()?;
    let d = find_dataset(&state, &layer, &unit, &name).await?;
    Ok(Json(state.catalog().lineage(Some(&d)).await?))
}

/// The lineage of the whole catalog.
#[utoipa::path(get, path = "/api/v1/lineage", tag = "catalog",
    responses((status = 200, body = reservoir_catalog::lineage::Lineage)))]
pub(crate) async fn lineage(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<reservoir_catalog::lineage::Lineage>> {
    caller.require_login()?;
    Ok(Json(state.catalog().lineage(None).await?))
}

/// Query of the alerts list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AlertsQuery {
    /// Only alerts not yet resolved (default true).
    open: Option<bool>,
    /// Most alerts to return (default 100).
    limit: Option<u32>,
}

/// Alerts about collection: sources whose scheduled runs failed after their retries, and
/// datasets late against their declared update frequency; newest first.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "catalog", params(AlertsQuery), responses((status = 200, body = Vec<Alert>), (status = 400, body = crate::ErrorBody)))]
pub(crate) async fn alerts(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<AlertsQuery>,
) -> ApiResult<Json<Vec<Alert>>> {
    caller.require_roles(&[Role::Operator, Role::Steward, Role::Auditor])?;
    Ok(Json(
        state
            .catalog()
            .alerts(q.open.unwrap_or(true), i64::from(q.limit.unwrap_or(100)))
            .await?,
    ))
}

/// The newest collection runs of all datasets.
#[utoipa::path(get, path = "/api/v1/runs", tag = "catalog", params(LimitQuery), responses((status = 200, body = Vec<RunSummary>), (status = 400, body = crate::ErrorBody)))]
pub(crate) async fn runs(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<LimitQuery>,
) -> ApiResult<Json<Vec<RunSummary>>> {
    caller.require_login()?;
    Ok(Json(
        state
            .catalog()
            .recent_runs(q.limit.unwrap_or(50).min(1000) as i64)
            .await?,
    ))
}

async fn find_run(state: &AppState, id: i64) -> ApiResult<(Run, Dataset)> {
    let run = state
        .catalog()
        .run(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("run {id} is not in the catalog")))?;
    let d = state
        .catalog()
        .dataset_by_id(run.dataset_id)
        .await?
        .ok_or_else(|| ApiError::internal(format!("run {id} refers to a missing dataset")))?;
    Ok((run, d))
}

/// One run.
#[utoipa::path(
    get,
    path = "/api/v1/runs/{id}",
    tag = "catalog",
    params(("id" = i64, Path, description = "Run id")),
    responses((status = 200, body = RunSummary), (status = 400, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody))
)]
pub(crate) async fn run(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<RunSummary>> {
    caller.require_login()?;
    let (run, d) = find_run(&state, id).await?;
    Ok(Json(RunSummary {
        run,
        layer: d.layer,
        unit_id: d.unit_id,
        dataset: d.name,
        title: d.title,
    }))
}

/// The rows a run could not load, with their raw text and the reason.
#[utoipa::path(
    get,
    path = "/api/v1/runs/{id}/quarantine",
    tag = "catalog",
    params(("id" = i64, Path, description = "Run id"), LimitQuery),
    responses((status = 200, body = QueryResult), (status = 400, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody))
)]
pub(crate) async fn run_quarantine(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<LimitQuery>,
) -> ApiResult<Json<QueryResult>> {
    caller.require_login()?;
    let (run, d) = find_run(&state, id).await?;
    // Quarantined rows are raw text: for the unit's stewards and operators only.
    caller.require_steward_of(&d.unit_id)?;
    if run.counts.rows_quarantined == 0 {
        let schema = reservoir_ingest::convert::quarantine_schema()
            .project(&[2, 3, 4, 5])
            .map_err(ApiError::internal)?;
        return Ok(Json(to_result(
            &[],
            Some(std::sync::Arc::new(schema)),
            false,
            0,
        )?));
    }
    let table = format!(
        "quarantine.{}.{}",
        quote_ident(&d.unit_id),
        quote_ident(&d.name)
    );
    let sql = format!(
        "SELECT _source_file, _source_row, raw, reason FROM {table} WHERE _batch = {} ORDER BY _source_file, _source_row",
        quote_literal(&run.batch_id)
    );
    let (batches, truncated, elapsed) = run_query(
        &state,
        &caller,
        &sql,
        Some(q.limit.unwrap_or(100)),
        "data.quarantine",
    )
    .await?;
    Ok(Json(to_result(&batches, None, truncated, elapsed)?))
}
