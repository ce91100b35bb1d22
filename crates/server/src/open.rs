//! Open data: publishing open snapshots, and the CKAN-compatible Action API over them.
//!
//! ```text
//!  raw.unit.dataset (无条件开放) ─ publish ─► open.unit.dataset (masked snapshot, one Delta
//!                                             version per publication)
//!  /api/3/action/package_search … datastore_search ─► open snapshots, public, rate limited
//! ```
//!
//! Only datasets marked 无条件开放 (`open`) are published and served. Datasets marked 有条件开放
//! (`conditional`) are listed — metadata only, with the request workflow as the way in; 非开放
//! datasets never appear. A package is named `{unit}-{dataset}`; its resources are the open
//! snapshot as CSV (the datastore resource, id = the package name), JSON, XLSX and Parquet.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use datafusion::logical_expr::{Expr, cast, col, lit};
use datafusion::prelude::{DataFrame, SessionContext};
use reservoir_access::GrantColumn;
use reservoir_catalog::open::{OpenUse, Publication};
use reservoir_catalog::{Dataset, DatasetFilter, OpenTier};
use reservoir_lake::{Layer, TableRef};
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};

/// Publishes the open snapshot of a raw dataset marked 无条件开放: its columns (not the
/// internal `_…` ones), personal data masked by default (per PII kind and sensitivity), as a
/// new version of `open.<unit>.<dataset>`.
pub async fn publish(state: &AppState, raw: &Dataset, by: &str) -> ApiResult<Publication> {
    if raw.layer != "raw" {
        return Err(ApiError::bad_request(format!(
            "{} is in the {} layer; publish a raw dataset",
            raw.qualified_name(),
            raw.layer
        )));
    }
    if raw.open_tier != OpenTier::Open {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "only datasets marked 无条件开放 (open) are published; {}.{} is {}",
                raw.unit_id,
                raw.name,
                raw.open_tier.as_str()
            ),
        ));
    }
    let catalog = state.catalog();
    let masks = state.access().default_masks(raw.id).await?;
    let columns: Vec<GrantColumn> = masks
        .into_iter()
        .filter(|(name, _)| !name.starts_with('_'))
        .map(|(name, mask)| GrantColumn { name, mask })
        .collect();
    let source = TableRef::new(Layer::Raw, &raw.unit_id, &raw.name);
    let target = TableRef::new(Layer::Open, &raw.unit_id, &raw.name);
    let snapshot = reservoir_query::snapshot::materialize(
        state.lake(),
        &source,
        &columns,
        None,
        // Open pseudonyms are the public's own, unlike any principal's.
        state.mask_key().map(|k| Arc::new(k.derive("open"))),
        target.clone(),
    )
    .await?;
    let masked: Vec<String> = columns
        .iter()
        .filter(|c| !c.mask.is_none())
        .map(|c| format!("{}:{}", c.name, c.mask))
        .collect();
    let publication = catalog
        .record_publication(
            raw.id,
            Some(snapshot.source_version),
            snapshot.version,
            snapshot.rows as i64,
            &masked.join(","),
            by,
        )
        .await?;
    Ok(publication)
}

/// Publishes `unit.dataset` again if it is marked open and was published before: what a
/// collection that loaded rows calls, so the open snapshot follows its source. `Ok(None)` when
/// there is nothing to refresh.
pub async fn republish(
    state: &AppState,
    unit: &str,
    dataset: &str,
) -> ApiResult<Option<Publication>> {
    let Some(raw) = state.catalog().dataset("raw", unit, dataset).await? else {
        return Ok(None);
    };
    if raw.open_tier != OpenTier::Open || state.catalog().publications(raw.id).await?.is_empty() {
        return Ok(None);
    }
    let p = publish(state, &raw, "local").await?;
    let mut e =
        reservoir_access::AuditEvent::new("local", "open.publish", &format!("{unit}.{dataset}"));
    e.client = "after collection".into();
    e.row_count = Some(p.row_count);
    e.detail = json!({"version": p.version, "masked": p.masked}).to_string();
    state.audit(e).await;
    Ok(Some(p))
}

/// Publishes a dataset's open snapshot (its unit's stewards, operators).
#[utoipa::path(
    post,
    path = "/api/v1/datasets/{layer}/{unit}/{name}/publish",
    tag = "open",
    params(("layer" = String, Path, example = "raw"), ("unit" = String, Path, example = "minzheng"), ("name" = String, Path, example = "villages")),
    responses(
        (status = 200, body = Publication),
        (status = 400, body = crate::ErrorBody),
        (status = 401, body = crate::ErrorBody),
        (status = 403, body = crate::ErrorBody),
        (status = 404, body = crate::ErrorBody),
        (status = 409, description = "Not marked 无条件开放", body = crate::ErrorBody),
    )
)]
pub(crate) async fn publish_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    crate::ApiPath((layer, unit, name)): crate::ApiPath<(String, String, String)>,
) -> ApiResult<Json<Publication>> {
    caller.require_steward_of(&unit)?;
    let raw = state
        .catalog()
        .dataset(&layer, &unit, &name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no dataset {layer}.{unit}.{name}")))?;
    let publication = publish(&state, &raw, caller.name()).await?;
    let mut e = caller.event("open.publish", &format!("{unit}.{name}"));
    e.row_count = Some(publication.row_count);
    e.detail = serde_json::json!({"version": publication.version, "masked": publication.masked})
        .to_string();
    state.audit(e).await;
    Ok(Json(publication))
}

// ------------------------------------------------------------------------------ the open world

/// A dataset the public may see: published (open) or listed (conditional).
pub(crate) struct OpenEntry {
    /// The raw dataset (its directory entry).
    pub raw: Dataset,
    /// The latest publication of its open snapshot, for datasets marked open.
    pub open: Option<Publication>,
}

impl OpenEntry {
    pub fn package_name(&self) -> String {
        package_name(&self.raw.unit_id, &self.raw.name)
    }
}

pub(crate) fn package_name(unit: &str, name: &str) -> String {
    format!("{unit}-{name}")
}

/// Every dataset the public may see, in the catalog's order: raw datasets marked open that have
/// been published, and datasets marked conditional (listed, not served).
pub(crate) async fn open_entries(state: &AppState) -> ApiResult<Vec<OpenEntry>> {
    let all = state.catalog().datasets(&DatasetFilter::default()).await?;
    let mut out = Vec::new();
    for d in all
        .into_iter()
        .filter(|d| d.layer == "raw" || d.layer == "catalog")
    {
        match d.open_tier {
            OpenTier::Open if d.layer == "raw" => {
                if let Some(p) = state.catalog().publications(d.id).await?.into_iter().next() {
                    out.push(OpenEntry {
                        raw: d,
                        open: Some(p),
                    });
                }
            }
            OpenTier::Conditional => out.push(OpenEntry { raw: d, open: None }),
            _ => {}
        }
    }
    Ok(out)
}

pub(crate) async fn find_entry(state: &AppState, id: &str) -> ApiResult<Option<OpenEntry>> {
    Ok(open_entries(state)
        .await?
        .into_iter()
        .find(|e| e.package_name() == id || e.raw.id.to_string() == id))
}

/// A session over one open snapshot, registered as `table`.
pub(crate) async fn open_table(
    state: &AppState,
    open: &Dataset,
    table: &str,
) -> ApiResult<SessionContext> {
    let t = TableRef::new(Layer::Open, &open.unit_id, &open.name);
    let delta = state
        .lake()
        .open(&t)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(format!("{t} has no snapshot yet")))?;
    let ctx = state.open_context();
    delta
        .update_datafusion_session(&ctx.state())
        .map_err(ApiError::internal)?;
    let provider = reservoir_lake::table_provider(&delta)
        .await
        .map_err(ApiError::internal)?;
    ctx.register_table(datafusion::common::TableReference::bare(table), provider)
        .map_err(reservoir_query::Error::from)?;
    Ok(ctx)
}

// ------------------------------------------------------------------------------- CKAN answers

fn help_url(base: &str, action: &str) -> String {
    format!("{base}/api/3/action/help_show?name={action}")
}

fn ckan_ok(base: &str, action: &str, result: Value) -> Response {
    Json(json!({"help": help_url(base, action), "success": true, "result": result})).into_response()
}

fn ckan_err(base: &str, action: &str, status: StatusCode, kind: &str, message: String) -> Response {
    // CKAN words these errors "Not found: …" and "Access denied: …", and clients (ckanapi)
    // drop what comes before the first ": " to show the rest.
    let prefix = match kind {
        "Not Found Error" => "Not found: ",
        "Authorization Error" => "Access denied: ",
        _ => "",
    };
    let message = if message.starts_with(prefix) {
        message
    } else {
        format!("{prefix}{message}")
    };
    (
        status,
        Json(json!({
            "help": help_url(base, action),
            "success": false,
            "error": {"__type": kind, "message": message}
        })),
    )
        .into_response()
}

struct CkanError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl CkanError {
    fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            kind: "Not Found Error",
            message: message.into(),
        }
    }

    fn validation(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::CONFLICT,
            kind: "Validation Error",
            message: message.into(),
        }
    }
}

impl From<ApiError> for CkanError {
    fn from(e: ApiError) -> Self {
        match e.status {
            StatusCode::NOT_FOUND => Self::not_found(e.message),
            s if s.is_client_error() => Self::validation(e.message),
            _ => Self {
                status: e.status,
                kind: "Internal Error",
                message: e.message,
            },
        }
    }
}

impl From<reservoir_query::Error> for CkanError {
    fn from(e: reservoir_query::Error) -> Self {
        ApiError::from(e).into()
    }
}

impl From<reservoir_catalog::Error> for CkanError {
    fn from(e: reservoir_catalog::Error) -> Self {
        ApiError::from(e).into()
    }
}

type CkanResult<T> = Result<T, CkanError>;

/// The base URL clients reached us at.
pub(crate) fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let proto = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("http");
    format!("{proto}://{host}")
}

/// The action's parameters: the query string, then a JSON (or form) body over it.
fn params(
    query: HashMap<String, String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> CkanResult<BTreeMap<String, Value>> {
    let mut out: BTreeMap<String, Value> = query
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    if body.is_empty() {
        return Ok(out);
    }
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ctype.starts_with("application/x-www-form-urlencoded") {
        for (k, v) in url::form_urlencoded::parse(body) {
            out.insert(k.into_owned(), Value::String(v.into_owned()));
        }
        return Ok(out);
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => {
            out.extend(map);
            Ok(out)
        }
        Ok(_) => Err(CkanError::validation(
            "the request body must be a JSON object",
        )),
        Err(e) => Err(CkanError::validation(format!(
            "the request body is not JSON: {e}"
        ))),
    }
}

fn text_param(p: &BTreeMap<String, Value>, key: &str) -> Option<String> {
    match p.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn int_param(p: &BTreeMap<String, Value>, key: &str, default: i64) -> CkanResult<i64> {
    match p.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| CkanError::validation(format!("{key}: {n} is not a whole number"))),
        Some(Value::String(s)) if s.is_empty() => Ok(default),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map_err(|_| CkanError::validation(format!("{key}: {s:?} is not a whole number"))),
        Some(other) => Err(CkanError::validation(format!(
            "{key}: {other} is not a whole number"
        ))),
    }
}

/// A list given as a JSON array or as comma-separated text.
fn list_param(p: &BTreeMap<String, Value>, key: &str) -> CkanResult<Option<Vec<String>>> {
    Ok(match p.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string())
                })
                .collect(),
        ),
        Some(Value::String(s)) if s.trim_start().starts_with('[') => Some(
            serde_json::from_str::<Vec<String>>(s)
                .map_err(|e| CkanError::validation(format!("{key}: {e}")))?,
        ),
        Some(Value::String(s)) => Some(
            s.split(',')
                .map(|x| x.trim().to_string())
                .filter(|x| !x.is_empty())
                .collect(),
        ),
        Some(other) => {
            return Err(CkanError::validation(format!(
                "{key}: {other} is not a list"
            )));
        }
    })
}

fn organization(unit: &reservoir_catalog::Unit, count: Option<usize>) -> Value {
    let mut org = json!({
        "id": unit.id,
        "name": unit.id,
        "title": unit.name,
        "display_name": unit.name,
        "description": unit.description,
        "type": "organization",
        "is_organization": true,
        "state": "active",
        "approval_status": "approved",
        "image_url": "",
        "created": unit.created_at,
    });
    if let Some(n) = count {
        org["package_count"] = json!(n);
    }
    org
}

const FORMATS: [(&str, &str, &str); 4] = [
    ("csv", "CSV", "text/csv"),
    ("json", "JSON", "application/json"),
    (
        "xlsx",
        "XLSX",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ),
    ("parquet", "Parquet", "application/vnd.apache.parquet"),
];

fn resources(base: &str, e: &OpenEntry) -> Vec<Value> {
    let name = e.package_name();
    match &e.open {
        Some(open) => FORMATS
            .iter()
            .map(|(ext, format, mime)| {
                let id = if *ext == "csv" {
                    name.clone()
                } else {
                    format!("{name}-{ext}")
                };
                json!({
                    "id": id,
                    "package_id": name,
                    "name": format!("{} ({format})", e.raw.title),
                    "description": e.raw.description,
                    "format": format,
                    "mimetype": mime,
                    "url": format!("{base}/open/download/{name}.{ext}"),
                    "url_type": "datastore",
                    "datastore_active": *ext == "csv",
                    "state": "active",
                    "created": open.published_at,
                    "last_modified": open.published_at,
                    "position": FORMATS.iter().position(|f| f.0 == *ext),
                })
            })
            .collect(),
        None => vec![json!({
            "id": format!("{name}-apply"),
            "package_id": name,
            "name": format!("{}（有条件开放：申请使用）", e.raw.title),
            "description": "有条件开放数据：提交使用申请，经数据提供单位审核后共享。Conditionally open: apply for access.",
            "format": "HTML",
            "url": format!("{base}/open/#/dataset/{name}"),
            "datastore_active": false,
            "state": "active",
            "position": 0,
        })],
    }
}

/// A licence as CKAN names it: its licence register's id and title for the licences it knows,
/// `other-open` with the IRI for others.
struct CkanLicense {
    id: String,
    title: String,
    url: String,
}

fn ckan_license(iri: &str) -> CkanLicense {
    let key = iri
        .trim()
        .trim_end_matches('/')
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .to_ascii_lowercase();
    let known = [
        (
            "creativecommons.org/licenses/by/",
            "cc-by",
            "Creative Commons Attribution",
        ),
        (
            "creativecommons.org/licenses/by-sa/",
            "cc-by-sa",
            "Creative Commons Attribution Share-Alike",
        ),
        (
            "creativecommons.org/licenses/by-nc/",
            "cc-nc",
            "Creative Commons Non-Commercial (Any)",
        ),
        (
            "creativecommons.org/publicdomain/zero/",
            "cc-zero",
            "Creative Commons CCZero",
        ),
        (
            "opendatacommons.org/licenses/by",
            "odc-by",
            "Open Data Commons Attribution License",
        ),
        (
            "opendatacommons.org/licenses/odbl",
            "odc-odbl",
            "Open Data Commons Open Database License (ODbL)",
        ),
        (
            "opendatacommons.org/licenses/pddl",
            "odc-pddl",
            "Open Data Commons Public Domain Dedication and License (PDDL)",
        ),
    ];
    for (prefix, id, title) in known {
        if let Some(rest) = key.strip_prefix(prefix) {
            // The version, where the IRI has one (…/by/4.0 → "4.0").
            let version = rest.split('/').next().unwrap_or_default();
            let title = if version.chars().next().is_some_and(|c| c.is_ascii_digit()) {
                format!("{title} {version}")
            } else {
                title.to_string()
            };
            return CkanLicense {
                id: id.into(),
                title,
                url: iri.trim().into(),
            };
        }
    }
    CkanLicense {
        id: "other-open".into(),
        title: iri.trim().into(),
        url: iri.trim().into(),
    }
}

/// `text` where it is an email address, else empty (CKAN's `maintainer_email` is an address;
/// a contact given as a department's name goes in `maintainer`).
fn email(text: &str) -> String {
    let text = text.trim();
    match text.split_once('@') {
        Some((user, host))
            if !user.is_empty()
                && host.contains('.')
                && !text.chars().any(|c| c.is_whitespace() || c == ',') =>
        {
            text.to_string()
        }
        _ => String::new(),
    }
}

async fn package(
    state: &AppState,
    base: &str,
    e: &OpenEntry,
    units: &[reservoir_catalog::Unit],
) -> CkanResult<Value> {
    let d = &e.raw;
    let unit = units.iter().find(|u| u.id == d.unit_id);
    let fields = state.catalog().fields(d.id).await?;
    let masked: Vec<&str> = e
        .open
        .as_ref()
        .map(|p| {
            p.masked
                .split(',')
                .filter_map(|m| m.split(':').next())
                .collect()
        })
        .unwrap_or_default();
    let rows = e.open.as_ref().map(|p| p.row_count).unwrap_or(d.row_count);
    let modified = e
        .open
        .as_ref()
        .map(|p| p.published_at.clone())
        .unwrap_or_else(|| d.updated_at.clone());
    let tags: Vec<Value> = e
        .raw
        .meta
        .tags
        .iter()
        .map(|t| json!({"name": t, "display_name": t, "state": "active"}))
        .collect();
    let groups: Vec<Value> = if e.raw.meta.topic.is_empty() {
        Vec::new()
    } else {
        vec![
            json!({"name": e.raw.meta.topic, "title": e.raw.meta.topic, "display_name": e.raw.meta.topic}),
        ]
    };
    let res = resources(base, e);
    let license = if e.open.is_some() {
        ckan_license(&state.config().open_license)
    } else {
        CkanLicense {
            id: "other-closed".into(),
            title: "有条件开放 (conditional: apply for access)".into(),
            url: String::new(),
        }
    };
    Ok(json!({
        "id": e.package_name(),
        "name": e.package_name(),
        "title": e.raw.title,
        "notes": e.raw.description,
        "type": "dataset",
        "state": "active",
        "private": false,
        "license_id": license.id,
        "license_title": license.title,
        "license_url": license.url,
        "author": unit.map(|u| u.name.clone()).unwrap_or_default(),
        "maintainer": if e.raw.meta.contact.trim().is_empty() || !email(&e.raw.meta.contact).is_empty() {
            unit.map(|u| u.name.clone()).unwrap_or_default()
        } else {
            e.raw.meta.contact.trim().to_string()
        },
        "maintainer_email": email(&e.raw.meta.contact),
        "metadata_created": e.raw.created_at,
        "metadata_modified": modified,
        "owner_org": d.unit_id,
        "organization": unit.map(|u| organization(u, None)),
        "tags": tags,
        "num_tags": e.raw.meta.tags.len(),
        "groups": groups,
        "resources": res,
        "num_resources": res.len(),
        "extras": [
            {"key": "open_tier", "value": e.raw.open_tier.as_str()},
            {"key": "update_frequency", "value": e.raw.update_frequency.as_str()},
            {"key": "row_count", "value": rows.to_string()},
            {"key": "topic", "value": e.raw.meta.topic},
            {"key": "identifier", "value": e.raw.meta.identifier},
        ],
        "fields": fields.iter().filter(|f| !f.name.starts_with('_')).map(|f| json!({
            "id": f.name,
            "type": if masked.contains(&f.name.as_str()) { "Utf8" } else { f.data_type.as_str() },
            "title": f.title,
            "description": f.description,
            "masked": masked.contains(&f.name.as_str()),
        })).collect::<Vec<_>>(),
        "reservoir_dataset_id": d.id,
        "reservoir_open_tier": d.open_tier.as_str(),
        "reservoir_update_frequency": d.update_frequency.as_str(),
    }))
}

/// `fq` clauses CKAN clients send: `organization:x`, `tags:x`, `groups:x`, `res_format:CSV`,
/// `open_tier:open`, `update_frequency:monthly`, joined by spaces or `AND`.
/// The fields `fq` (and field queries in `q`) filter on.
const FQ_FIELDS: &[&str] = &[
    "organization",
    "owner_org",
    "tags",
    "groups",
    "res_format",
    "open_tier",
    "update_frequency",
    "name",
    "title",
];

fn matches_fq(e: &OpenEntry, fq: &str) -> CkanResult<bool> {
    for clause in fq
        .split_whitespace()
        .filter(|c| !c.eq_ignore_ascii_case("AND"))
    {
        let clause = clause.trim_start_matches('+');
        let Some((field, value)) = clause.split_once(':') else {
            return Err(CkanError::validation(format!(
                "fq clause {clause:?}: expected field:value ({})",
                FQ_FIELDS.join(", ")
            )));
        };
        let value = value.trim_matches('"');
        let ok = match field {
            "organization" | "owner_org" => e.raw.unit_id == value,
            "tags" => e.raw.meta.tags.iter().any(|t| t == value),
            "groups" => e.raw.meta.topic == value,
            "res_format" => {
                e.open.is_some() && FORMATS.iter().any(|f| f.1.eq_ignore_ascii_case(value))
                    || e.open.is_none() && value.eq_ignore_ascii_case("HTML")
            }
            "open_tier" => e.raw.open_tier.as_str() == value,
            "update_frequency" => e.raw.update_frequency.as_str() == value,
            "name" => e.package_name() == value,
            "title" => e.raw.title.contains(value),
            other => {
                return Err(CkanError::validation(format!(
                    "fq field {other:?} is not supported ({})",
                    FQ_FIELDS.join(", ")
                )));
            }
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The CKAN Action API: `GET` or `POST /api/3/action/{action}`.
pub(crate) async fn action(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    method: Method,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let base = base_url(&headers);
    if let Some(refused) = over_open_rate(&state, &caller) {
        return refused;
    }
    if method != Method::GET && method != Method::POST {
        return ckan_err(
            &base,
            &name,
            StatusCode::METHOD_NOT_ALLOWED,
            "Validation Error",
            "use GET or POST".into(),
        );
    }
    let result = match params(query, &headers, &body) {
        Ok(p) => run_action(&state, &base, &name, &p).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(v) => ckan_ok(&base, &name, v),
        Err(e) => ckan_err(&base, &name, e.status, e.kind, e.message),
    }
}

/// Requests per minute one address may make to the open-data endpoints.
pub(crate) const OPEN_RATE: usize = 600;

/// The 429 answer when `caller`'s address went over [`OPEN_RATE`] in the last minute.
fn over_open_rate(state: &AppState, caller: &Caller) -> Option<Response> {
    let key = caller
        .ip
        .map(|i| i.to_string())
        .unwrap_or_else(|| "unknown".into());
    state
        .open_limiter()
        .hit(&key, OPEN_RATE, std::time::Duration::from_secs(60))
        .err()
        .map(|wait| {
            crate::auth::too_many(
                format!("too many requests from this address; try again in {wait} s"),
                wait,
            )
        })
}

async fn run_action(
    state: &AppState,
    base: &str,
    name: &str,
    p: &BTreeMap<String, Value>,
) -> CkanResult<Value> {
    match name {
        "status_show" => Ok(json!({
            "site_title": "Reservoir 公共数据开放平台",
            "site_url": base,
            "ckan_version": "2.10.0",
            "api_version": 3,
            "extensions": ["datastore", "reservoir"],
        })),
        "package_list" => {
            let names: Vec<String> = open_entries(state)
                .await?
                .iter()
                .map(|e| e.package_name())
                .collect();
            let offset = int_param(p, "offset", 0)?.max(0) as usize;
            let limit = int_param(p, "limit", names.len() as i64)?.max(0) as usize;
            Ok(json!(
                names
                    .into_iter()
                    .skip(offset)
                    .take(limit)
                    .collect::<Vec<_>>()
            ))
        }
        "package_show" => {
            let id = text_param(p, "id")
                .or_else(|| text_param(p, "name_or_id"))
                .ok_or_else(|| CkanError::validation("id: Missing value"))?;
            let e = find_entry(state, &id)
                .await?
                .ok_or_else(|| CkanError::not_found(format!("Not found: package {id:?}")))?;
            let units = state.catalog().units().await?;
            // The portal's dataset page says it is a view; every other call is an API call.
            let view = p
                .get("reservoir_view")
                .is_some_and(|v| v == &json!(true) || v == "true");
            let what = if view { OpenUse::View } else { OpenUse::Api };
            state.catalog().count_open_use(e.raw.id, what).await?;
            let mut pkg = package(state, base, &e, &units).await?;
            pkg["reservoir_publications"] = json!(state.catalog().publications(e.raw.id).await?);
            pkg["reservoir_counts"] = json!(state.catalog().open_counts(e.raw.id).await?);
            Ok(pkg)
        }
        "package_search" => package_search(state, base, p).await,
        "organization_list" => {
            let entries = open_entries(state).await?;
            let units = state.catalog().units().await?;
            let all_fields = p
                .get("all_fields")
                .is_some_and(|v| v == &json!(true) || v == "true");
            let mut out = Vec::new();
            for u in &units {
                let n = entries.iter().filter(|e| e.raw.unit_id == u.id).count();
                if n == 0 {
                    continue;
                }
                out.push(if all_fields {
                    organization(u, Some(n))
                } else {
                    json!(u.id)
                });
            }
            Ok(json!(out))
        }
        "organization_show" => {
            let id =
                text_param(p, "id").ok_or_else(|| CkanError::validation("id: Missing value"))?;
            let units = state.catalog().units().await?;
            let unit = units
                .iter()
                .find(|u| u.id == id || u.name == id)
                .ok_or_else(|| CkanError::not_found(format!("Not found: organization {id:?}")))?;
            let entries: Vec<OpenEntry> = open_entries(state)
                .await?
                .into_iter()
                .filter(|e| e.raw.unit_id == unit.id)
                .collect();
            let mut org = organization(unit, Some(entries.len()));
            if p.get("include_datasets")
                .is_some_and(|v| v == &json!(true) || v == "true")
            {
                let mut packages = Vec::new();
                for e in &entries {
                    packages.push(package(state, base, e, &units).await?);
                }
                org["packages"] = json!(packages);
            }
            Ok(org)
        }
        "group_list" => {
            let mut topics: BTreeMap<String, usize> = BTreeMap::new();
            for e in open_entries(state).await? {
                if !e.raw.meta.topic.is_empty() {
                    *topics.entry(e.raw.meta.topic.clone()).or_default() += 1;
                }
            }
            let all_fields = p
                .get("all_fields")
                .is_some_and(|v| v == &json!(true) || v == "true");
            Ok(json!(topics.into_iter().map(|(t, n)| if all_fields {
                json!({"name": t, "title": t, "display_name": t, "package_count": n, "type": "group"})
            } else { json!(t) }).collect::<Vec<_>>()))
        }
        "tag_list" => {
            let mut tags: Vec<String> = open_entries(state)
                .await?
                .into_iter()
                .flat_map(|e| e.raw.meta.tags)
                .collect();
            tags.sort();
            tags.dedup();
            if let Some(q) = text_param(p, "query") {
                tags.retain(|t| t.contains(&q));
            }
            Ok(json!(tags))
        }
        "resource_show" => {
            let id =
                text_param(p, "id").ok_or_else(|| CkanError::validation("id: Missing value"))?;
            for e in open_entries(state).await? {
                if let Some(r) = resources(base, &e)
                    .into_iter()
                    .find(|r| r["id"] == id.as_str())
                {
                    return Ok(r);
                }
            }
            Err(CkanError::not_found(format!("Not found: resource {id:?}")))
        }
        "datastore_search" => datastore_search(state, p).await,
        "datastore_search_sql" => datastore_search_sql(state, p).await,
        "help_show" => Ok(json!(format!(
            "Reservoir answers the CKAN Action API actions package_list, package_show, package_search, \
             organization_list, organization_show, group_list, tag_list, resource_show, datastore_search, \
             datastore_search_sql and status_show over its open datasets."
        ))),
        other => Err(CkanError {
            status: StatusCode::BAD_REQUEST,
            kind: "Bad Request",
            message: format!(
                "action {other:?} is not available here (read-only open-data API: package_list, package_show, \
                 package_search, organization_list, organization_show, group_list, tag_list, resource_show, \
                 datastore_search, datastore_search_sql)"
            ),
        }),
    }
}

async fn package_search(
    state: &AppState,
    base: &str,
    p: &BTreeMap<String, Value>,
) -> CkanResult<Value> {
    let q = text_param(p, "q").unwrap_or_default();
    let q = q.trim();
    let q = if q == "*:*" { "" } else { q };
    // CKAN's q takes Solr field queries (`name:minzheng-villages`, `tags:村居`) beside words:
    // those go with fq's clauses, the words to the search.
    let (words, fields): (Vec<&str>, Vec<&str>) = q.split_whitespace().partition(|t| {
        !t.trim_start_matches('+')
            .split_once(':')
            .is_some_and(|(f, _)| FQ_FIELDS.contains(&f))
    });
    let q = words.join(" ");
    let q = q.as_str();
    let fq = format!(
        "{} {}",
        text_param(p, "fq").unwrap_or_default(),
        fields.join(" ")
    );
    let rows = int_param(p, "rows", 10)?.clamp(0, 1000) as usize;
    let start = int_param(p, "start", 0)?.max(0) as usize;
    let sort = text_param(p, "sort").unwrap_or_else(|| {
        if q.is_empty() {
            "name asc".into()
        } else {
            "score desc".into()
        }
    });
    let entries = open_entries(state).await?;
    // Ranked by the catalog's Chinese-aware search when there is a query.
    let mut scored: Vec<(f64, OpenEntry)> = if q.is_empty() {
        entries.into_iter().map(|e| (0.0, e)).collect()
    } else {
        let hits = state
            .catalog()
            .search(&DatasetFilter {
                search: Some(q.to_string()),
                limit: Some(10_000),
                ..DatasetFilter::default()
            })
            .await?;
        let score: HashMap<i64, f64> = hits.into_iter().map(|h| (h.dataset.id, h.score)).collect();
        entries
            .into_iter()
            .filter_map(|e| {
                let s = score
                    .get(&e.raw.id)
                    .copied()
                    .or_else(|| e.open.as_ref().and_then(|o| score.get(&o.id).copied()));
                s.map(|s| (s, e))
            })
            .collect()
    };
    let mut kept = Vec::new();
    for (s, e) in scored.drain(..) {
        if matches_fq(&e, &fq)? {
            kept.push((s, e));
        }
    }
    let (field, desc) = match sort.split_whitespace().collect::<Vec<_>>().as_slice() {
        [f] => (f.to_string(), false),
        [f, dir] => (f.to_string(), dir.eq_ignore_ascii_case("desc")),
        _ => {
            return Err(CkanError::validation(format!(
                "sort {sort:?}: expected \"field asc|desc\""
            )));
        }
    };
    match field.as_str() {
        "score" => kept.sort_by(|a, b| {
            b.0.total_cmp(&a.0)
                .then_with(|| a.1.package_name().cmp(&b.1.package_name()))
        }),
        "name" => kept.sort_by_key(|a| a.1.package_name()),
        "title" | "title_string" => kept.sort_by(|a, b| a.1.raw.title.cmp(&b.1.raw.title)),
        "metadata_modified" => kept.sort_by(|a, b| a.1.raw.updated_at.cmp(&b.1.raw.updated_at)),
        "metadata_created" => kept.sort_by(|a, b| a.1.raw.created_at.cmp(&b.1.raw.created_at)),
        other => {
            return Err(CkanError::validation(format!(
                "sort field {other:?}: expected score, name, title, metadata_modified or metadata_created"
            )));
        }
    }
    if desc && field != "score" {
        kept.reverse();
    }
    let facet_fields = list_param(p, "facet.field")?.unwrap_or_default();
    let mut search_facets = serde_json::Map::new();
    let mut facets = serde_json::Map::new();
    let units = state.catalog().units().await?;
    for f in &facet_fields {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for (_, e) in &kept {
            let values: Vec<String> = match f.as_str() {
                "organization" => vec![e.raw.unit_id.clone()],
                "tags" => e.raw.meta.tags.clone(),
                "groups" => (!e.raw.meta.topic.is_empty())
                    .then(|| e.raw.meta.topic.clone())
                    .into_iter()
                    .collect(),
                "res_format" => {
                    if e.open.is_some() {
                        FORMATS.iter().map(|x| x.1.to_string()).collect()
                    } else {
                        vec!["HTML".into()]
                    }
                }
                "open_tier" => vec![e.raw.open_tier.as_str().to_string()],
                "update_frequency" => vec![e.raw.update_frequency.as_str().to_string()],
                other => {
                    return Err(CkanError::validation(format!(
                        "facet.field {other:?} is not supported"
                    )));
                }
            };
            for v in values {
                *counts.entry(v).or_default() += 1;
            }
        }
        let display = |v: &str| -> String {
            if f == "organization" {
                units
                    .iter()
                    .find(|u| u.id == v)
                    .map(|u| u.name.clone())
                    .unwrap_or_else(|| v.to_string())
            } else {
                v.to_string()
            }
        };
        let mut items: Vec<(String, usize)> = counts.clone().into_iter().collect();
        items.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        facets.insert(f.clone(), json!(counts));
        search_facets.insert(
            f.clone(),
            json!({"title": f, "items": items.iter().map(|(v, n)| json!({"name": v, "display_name": display(v), "count": n})).collect::<Vec<_>>()}),
        );
    }
    let count = kept.len();
    let mut results = Vec::new();
    for (_, e) in kept.iter().skip(start).take(rows) {
        results.push(package(state, base, e, &units).await?);
    }
    Ok(json!({
        "count": count,
        "sort": sort,
        "results": results,
        "facets": facets,
        "search_facets": search_facets,
    }))
}

fn ckan_type(t: &DataType) -> &'static str {
    match t {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => "int",
        DataType::Float16
        | DataType::Float32
        | DataType::Float64
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => "numeric",
        DataType::Boolean => "bool",
        DataType::Date32 | DataType::Date64 => "date",
        DataType::Timestamp(..) => "timestamp",
        _ => "text",
    }
}

fn records(batches: &[RecordBatch], schema: &SchemaRef, first_id: usize) -> ApiResult<Vec<Value>> {
    let result = crate::api::query_result(batches, Some(schema.clone()))?;
    Ok(result
        .rows
        .into_iter()
        .enumerate()
        .map(|(i, row)| {
            let mut obj = serde_json::Map::new();
            obj.insert("_id".into(), json!(first_id + i + 1));
            for (c, v) in result.columns.iter().zip(row) {
                obj.insert(c.name.clone(), v);
            }
            Value::Object(obj)
        })
        .collect())
}

fn field_list(schema: &SchemaRef) -> Vec<Value> {
    std::iter::once(json!({"id": "_id", "type": "int"}))
        .chain(
            schema
                .fields()
                .iter()
                .map(|f| json!({"id": f.name(), "type": ckan_type(f.data_type())})),
        )
        .collect()
}

async fn datastore_search(state: &AppState, p: &BTreeMap<String, Value>) -> CkanResult<Value> {
    let id = text_param(p, "resource_id")
        .or_else(|| text_param(p, "id"))
        .ok_or_else(|| CkanError::validation("resource_id: Missing value"))?;
    let entry = find_entry(state, &id)
        .await?
        .filter(|e| e.package_name() == id)
        .ok_or_else(|| CkanError::not_found(format!("Resource \"{id}\" was not found.")))?;
    if entry.open.is_none() {
        return Err(CkanError::not_found(format!(
            "Resource \"{id}\" has no datastore (有条件开放: apply for access)"
        )));
    }
    state
        .catalog()
        .count_open_use(entry.raw.id, OpenUse::Api)
        .await?;
    let ctx = open_table(state, &entry.raw, "t").await?;
    let mut df: DataFrame = ctx.table("t").await.map_err(reservoir_query::Error::from)?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let visible: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .filter(|n| !n.starts_with('_'))
        .collect();
    let column = |name: &str| -> CkanResult<(Expr, DataType)> {
        let f = schema
            .field_with_name(name)
            .ok()
            .filter(|_| !name.starts_with('_'))
            .ok_or_else(|| {
                CkanError::validation(format!(
                    "field {name:?} does not exist (fields: {})",
                    visible.join(", ")
                ))
            })?;
        Ok((
            col(datafusion::common::Column::new_unqualified(name)),
            f.data_type().clone(),
        ))
    };
    // filters: {"col": value} or {"col": [values]}
    let filters = match p.get("filters") {
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(Value::String(s)) if s.trim().is_empty() => serde_json::Map::new(),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(m)) => m,
            _ => {
                return Err(CkanError::validation(format!(
                    "filters: {s:?} is not a JSON object"
                )));
            }
        },
        Some(other) => {
            return Err(CkanError::validation(format!(
                "filters: {other} is not a JSON object"
            )));
        }
    };
    let value_text = |v: &Value| {
        v.as_str()
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string())
    };
    for (name, value) in &filters {
        let (c, t) = column(name)?;
        let typed = |v: &Value| cast(lit(value_text(v)), t.clone());
        let expr = match value {
            Value::Array(items) => c.in_list(items.iter().map(typed).collect(), false),
            v => c.eq(typed(v)),
        };
        df = df.filter(expr).map_err(reservoir_query::Error::from)?;
    }
    // q: text anywhere in the row, or {"col": text}
    match p.get("q") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (name, text) in m {
                let (c, _) = column(name)?;
                df = df
                    .filter(
                        cast(c, DataType::Utf8)
                            .like(lit(format!("%{}%", like_escape(&value_text(text))))),
                    )
                    .map_err(reservoir_query::Error::from)?;
            }
        }
        Some(v) => {
            let text = value_text(v);
            if !text.trim().is_empty() {
                let pattern = format!("%{}%", like_escape(text.trim()));
                let any = visible
                    .iter()
                    .map(|n| {
                        cast(
                            col(datafusion::common::Column::new_unqualified(n.as_str())),
                            DataType::Utf8,
                        )
                        .like(lit(pattern.clone()))
                    })
                    .reduce(Expr::or);
                if let Some(any) = any {
                    df = df.filter(any).map_err(reservoir_query::Error::from)?;
                }
            }
        }
    }
    if let Some(sort) = text_param(p, "sort").filter(|s| !s.trim().is_empty()) {
        let mut order = Vec::new();
        for part in sort.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let mut words = part.split_whitespace();
            let name = words.next().unwrap_or_default().trim_matches('"');
            let asc = !words.next().is_some_and(|d| d.eq_ignore_ascii_case("desc"));
            let (c, _) = column(name)?;
            order.push(c.sort(asc, !asc));
        }
        df = df.sort(order).map_err(reservoir_query::Error::from)?;
    }
    let fields = match list_param(p, "fields")? {
        Some(f) if !f.is_empty() => f,
        _ => visible.clone(),
    };
    let mut exprs = Vec::new();
    for f in &fields {
        exprs.push(column(f)?.0);
    }
    df = df.select(exprs).map_err(reservoir_query::Error::from)?;
    let limit = int_param(p, "limit", 100)?;
    let offset = int_param(p, "offset", 0)?;
    if limit < 0 || offset < 0 {
        return Err(CkanError::validation(
            "limit and offset must not be negative",
        ));
    }
    let limit = (limit as usize).min(state.config().query_row_limit);
    let offset = offset as usize;
    let total = df
        .clone()
        .count()
        .await
        .map_err(reservoir_query::Error::from)?;
    let page = df
        .limit(offset, Some(limit))
        .map_err(reservoir_query::Error::from)?;
    let out_schema: SchemaRef = Arc::new(page.schema().as_arrow().clone());
    let batches = reservoir_query::executor::collect(page)
        .await
        .map_err(reservoir_query::Error::from)?;
    let mut result = json!({
        "resource_id": id,
        "fields": field_list(&out_schema),
        "records": records(&batches, &out_schema, offset)?,
        "limit": limit,
        "offset": offset,
        "total": total,
        "total_was_estimated": false,
        "_links": {
            "start": format!("/api/3/action/datastore_search?resource_id={id}"),
            "next": format!("/api/3/action/datastore_search?resource_id={id}&offset={}", offset + limit),
        },
    });
    if !filters.is_empty() {
        result["filters"] = Value::Object(filters);
    }
    if let Some(s) = text_param(p, "sort") {
        result["sort"] = json!(s);
    }
    Ok(result)
}

fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

async fn datastore_search_sql(state: &AppState, p: &BTreeMap<String, Value>) -> CkanResult<Value> {
    let sql = text_param(p, "sql").ok_or_else(|| CkanError::validation("sql: Missing value"))?;
    reservoir_query::check_read_only(&sql)?;
    // A session with the open snapshots only, each under its resource id; no information_schema.
    let ctx = state.open_context();
    for e in open_entries(state).await? {
        if e.open.is_none() {
            continue;
        }
        let t = TableRef::new(Layer::Open, &e.raw.unit_id, &e.raw.name);
        let Some(delta) = state.lake().open(&t).await.map_err(ApiError::internal)? else {
            continue;
        };
        delta
            .update_datafusion_session(&ctx.state())
            .map_err(ApiError::internal)?;
        let provider = reservoir_lake::table_provider(&delta)
            .await
            .map_err(ApiError::internal)?;
        ctx.register_table(
            datafusion::common::TableReference::bare(e.package_name()),
            provider,
        )
        .map_err(reservoir_query::Error::from)?;
    }
    let options = datafusion::execution::context::SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let df = ctx
        .sql_with_options(&sql, options)
        .await
        .map_err(reservoir_query::Error::from)?;
    let max = state.config().query_row_limit;
    let df = df
        .limit(0, Some(max))
        .map_err(reservoir_query::Error::from)?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let timeout = state.config().query_timeout;
    let batches = match tokio::time::timeout(timeout, reservoir_query::executor::collect(df)).await
    {
        Ok(r) => r.map_err(reservoir_query::Error::from)?,
        Err(_) => {
            return Err(CkanError::validation(format!(
                "the query ran longer than {} s",
                timeout.as_secs()
            )));
        }
    };
    let mut rows = records(&batches, &schema, 0)?;
    for r in &mut rows {
        if let Value::Object(m) = r {
            m.remove("_id");
        }
    }
    Ok(json!({
        "sql": sql,
        "records": rows,
        "fields": schema.fields().iter().map(|f| json!({"id": f.name(), "type": ckan_type(f.data_type())})).collect::<Vec<_>>(),
    }))
}

/// `GET /open/download/{package}.{csv|json|xlsx|parquet}`: an open snapshot as a file. CSV is
/// UTF-8 with a byte-order mark (Excel reads the Chinese right) and streams; the others are
/// built whole (XLSX cells hold at most 32,767 characters, longer values are cut with `…`).
pub(crate) async fn download(
    State(state): State<AppState>,
    caller: Caller,
    Path(file): Path<String>,
) -> Response {
    match download_file(&state, &caller, &file).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn download_file(state: &AppState, caller: &Caller, file: &str) -> ApiResult<Response> {
    use futures::StreamExt;
    if let Some(refused) = over_open_rate(state, caller) {
        return Ok(refused);
    }
    let (name, ext) = file.rsplit_once('.').ok_or_else(|| {
        ApiError::not_found(format!(
            "{file:?}: expected PACKAGE.csv, .json, .xlsx or .parquet"
        ))
    })?;
    let entry = find_entry(state, name)
        .await?
        .filter(|e| e.open.is_some() && e.package_name() == name)
        .ok_or_else(|| ApiError::not_found(format!("no open dataset {name:?}")))?;
    let ctx = open_table(state, &entry.raw, "t").await?;
    let df = ctx.table("t").await.map_err(reservoir_query::Error::from)?;
    // The lake's own bookkeeping columns stay in the lake.
    let visible: Vec<Expr> = df
        .schema()
        .fields()
        .iter()
        .filter(|f| !f.name().starts_with('_'))
        .map(|f| col(datafusion::common::Column::new_unqualified(f.name())))
        .collect();
    let df = df.select(visible).map_err(reservoir_query::Error::from)?;
    state
        .catalog()
        .count_open_use(entry.raw.id, OpenUse::Download)
        .await?;
    let disposition = |ext: &str| {
        format!(
            "attachment; filename=\"{}.{ext}\"; filename*=UTF-8''{}.{ext}",
            name.escape_default(),
            url::form_urlencoded::byte_serialize(entry.raw.title.as_bytes()).collect::<String>()
        )
    };
    match ext {
        "csv" => {
            let stream = reservoir_query::executor::execute(df);
            let mut first = true;
            let body = stream.map(move |batch| -> Result<Bytes, std::io::Error> {
                let batch = batch.map_err(std::io::Error::other)?;
                let mut out = Vec::new();
                if first {
                    out.extend_from_slice("\u{FEFF}".as_bytes());
                }
                {
                    let mut w = arrow::csv::WriterBuilder::new()
                        .with_header(first)
                        .build(&mut out);
                    w.write(&batch).map_err(std::io::Error::other)?;
                }
                first = false;
                Ok(Bytes::from(out))
            });
            Ok((
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                    (header::CONTENT_DISPOSITION, disposition("csv")),
                ],
                axum::body::Body::from_stream(body),
            )
                .into_response())
        }
        "json" => {
            let batches = reservoir_query::executor::collect(df)
                .await
                .map_err(reservoir_query::Error::from)?;
            let mut out = Vec::new();
            {
                let mut w = arrow::json::ArrayWriter::new(&mut out);
                for b in &batches {
                    w.write(b).map_err(ApiError::internal)?;
                }
                w.finish().map_err(ApiError::internal)?;
            }
            if out.is_empty() {
                out.extend_from_slice(b"[]");
            }
            Ok((
                [
                    (header::CONTENT_TYPE, "application/json".to_string()),
                    (header::CONTENT_DISPOSITION, disposition("json")),
                ],
                out,
            )
                .into_response())
        }
        "parquet" => {
            let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
            let batches = reservoir_query::executor::collect(df)
                .await
                .map_err(reservoir_query::Error::from)?;
            let mut out = Vec::new();
            let mut w = parquet::arrow::ArrowWriter::try_new(&mut out, schema, None)
                .map_err(ApiError::internal)?;
            for b in &batches {
                w.write(b).map_err(ApiError::internal)?;
            }
            w.close().map_err(ApiError::internal)?;
            Ok((
                [
                    (
                        header::CONTENT_TYPE,
                        "application/vnd.apache.parquet".to_string(),
                    ),
                    (header::CONTENT_DISPOSITION, disposition("parquet")),
                ],
                out,
            )
                .into_response())
        }
        "xlsx" => {
            let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
            let batches = reservoir_query::executor::collect(df)
                .await
                .map_err(reservoir_query::Error::from)?;
            let result = crate::api::query_result(&batches, Some(schema))?;
            let mut book = rust_xlsxwriter::Workbook::new();
            let sheet = book.add_worksheet();
            let bold = rust_xlsxwriter::Format::new().set_bold();
            let xl = |e: rust_xlsxwriter::XlsxError| ApiError::internal(e);
            for (c, column) in result.columns.iter().enumerate() {
                sheet
                    .write_string_with_format(0, c as u16, &column.name, &bold)
                    .map_err(xl)?;
            }
            for (r, row) in result.rows.iter().enumerate() {
                for (c, v) in row.iter().enumerate() {
                    let (r, c) = (r as u32 + 1, c as u16);
                    match v {
                        Value::Null => {}
                        Value::Number(n) => {
                            sheet
                                .write_number(r, c, n.as_f64().unwrap_or_default())
                                .map_err(xl)?;
                        }
                        Value::Bool(b) => {
                            sheet.write_boolean(r, c, *b).map_err(xl)?;
                        }
                        other => {
                            let text = other
                                .as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| other.to_string());
                            let text = reservoir_catalog::directory::spreadsheet_safe(&text);
                            let text: String = if text.chars().count() > 32_767 {
                                text.chars()
                                    .take(32_766)
                                    .chain(std::iter::once('…'))
                                    .collect()
                            } else {
                                text
                            };
                            sheet.write_string(r, c, text).map_err(xl)?;
                        }
                    }
                }
            }
            let out = book.save_to_buffer().map_err(xl)?;
            Ok((
                [
                    (
                        header::CONTENT_TYPE,
                        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
                            .to_string(),
                    ),
                    (header::CONTENT_DISPOSITION, disposition("xlsx")),
                ],
                out,
            )
                .into_response())
        }
        other => Err(ApiError::not_found(format!(
            "format {other:?}: expected csv, json, xlsx or parquet"
        ))),
    }
}

/// The public catalog (open and conditional datasets) as DCAT-AP 3 triples: open datasets with
/// their portal downloads and the datastore API, conditional ones with the portal page to apply
/// from.
async fn public_catalog(
    state: &AppState,
    base: &str,
) -> ApiResult<Vec<reservoir_catalog::dcat::Triple>> {
    use reservoir_catalog::dcat::{self, Access, CatalogInfo, Distribution};
    let entries = open_entries(state).await?;
    let units = state.catalog().units().await?;
    let config = state.config();
    let info = CatalogInfo {
        title: "公共数据开放平台",
        description: "公共数据开放平台：无条件开放的数据集可直接下载和调用，有条件开放的数据集经申请审核后共享",
        base_url: base,
        homepage: format!("{base}/open/"),
        license: &config.open_license,
        spatial: config
            .open_region
            .as_ref()
            .map(|(code, name)| (code.as_str(), name.as_str())),
        publisher: &config.open_publisher,
    };
    let by_id: std::collections::HashMap<i64, &OpenEntry> =
        entries.iter().map(|e| (e.raw.id, e)).collect();
    let datasets: Vec<Dataset> = entries.iter().map(|e| e.raw.clone()).collect();
    let triples = dcat::catalog_triples(&info, &units, &datasets, |d| {
        let Some(e) = by_id.get(&d.id) else {
            return dcat::declared_access(base, d);
        };
        let name = e.package_name();
        let page = format!("{base}/open/#/dataset/{name}");
        let distributions = if e.open.is_some() {
            let mut out: Vec<Distribution> = FORMATS
                .iter()
                .map(|(ext, format, _)| {
                    let url = format!("{base}/open/download/{name}.{ext}");
                    Distribution {
                        format: (*ext).to_string(),
                        title: format!("{}（{format}）", d.title),
                        description: format!("{}：全部开放数据，{format} 格式", d.title),
                        access_url: url.clone(),
                        download_url: Some(url),
                    }
                })
                .collect();
            out.push(Distribution {
                format: "api".into(),
                title: format!("{}（数据接口）", d.title),
                description: "CKAN 兼容的 datastore_search 接口：分页、筛选、全文检索".into(),
                access_url: format!("{base}/api/3/action/datastore_search?resource_id={name}"),
                download_url: None,
            });
            out
        } else {
            vec![Distribution {
                format: "html".into(),
                title: format!("{}（有条件开放：申请使用）", d.title),
                description: "有条件开放数据：提交使用申请，经数据提供单位审核后共享".into(),
                access_url: page.clone(),
                download_url: None,
            }]
        };
        Access {
            landing_page: page,
            distributions,
        }
    });
    Ok(triples)
}

/// Which RDF syntax a `/catalog` request asked for.
#[derive(Clone, Copy)]
pub(crate) enum RdfSyntax {
    JsonLd,
    Turtle,
}

/// `GET /catalog.jsonld`, `/catalog.ttl` and `/catalog` (by `Accept`): the public catalog as
/// DCAT-AP 3.
pub(crate) async fn dcat(
    state: &AppState,
    headers: &HeaderMap,
    syntax: Option<RdfSyntax>,
) -> Response {
    let base = base_url(headers);
    let syntax = syntax.unwrap_or_else(|| {
        let accept = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if accept.contains("text/turtle") && !accept.contains("application/ld+json") {
            RdfSyntax::Turtle
        } else {
            RdfSyntax::JsonLd
        }
    });
    let result = async {
        let triples = public_catalog(state, &base).await?;
        let text = match syntax {
            RdfSyntax::JsonLd => reservoir_catalog::dcat::to_jsonld(&triples),
            RdfSyntax::Turtle => reservoir_catalog::dcat::to_turtle(&triples),
        }
        .map_err(ApiError::internal)?;
        ApiResult::Ok(text)
    }
    .await;
    match result {
        Ok(text) => {
            let mime = match syntax {
                RdfSyntax::JsonLd => "application/ld+json",
                RdfSyntax::Turtle => "text/turtle; charset=utf-8",
            };
            (
                [(header::CONTENT_TYPE, mime), (header::VARY, "Accept")],
                text,
            )
                .into_response()
        }
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::{ckan_license, email};

    #[test]
    fn licences_take_ckan_ids_and_contacts_only_addresses() {
        let cc = ckan_license("https://creativecommons.org/licenses/by/4.0/");
        assert_eq!(
            (cc.id.as_str(), cc.title.as_str()),
            ("cc-by", "Creative Commons Attribution 4.0")
        );
        assert_eq!(cc.url, "https://creativecommons.org/licenses/by/4.0/");
        let odbl = ckan_license("http://opendatacommons.org/licenses/odbl/");
        assert_eq!(odbl.id, "odc-odbl");
        let other = ckan_license("https://data.sh.gov.cn/licence");
        assert_eq!(
            (other.id.as_str(), other.url.as_str()),
            ("other-open", "https://data.sh.gov.cn/licence")
        );
        assert_eq!(email(" mz@songjiang.gov.cn "), "mz@songjiang.gov.cn");
        assert_eq!(email("区民政局 区划地名科"), "");
        assert_eq!(email("a@b, c@d.cn"), "");
    }
}
