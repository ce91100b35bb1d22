//! Source definitions (`<home>/sources/<name>.toml`) through the API: list, read, write, delete,
//! and run one now. Writes are checked the way `reservoir collect` would read them, and a
//! definition with a password in it is refused: secrets stay in environment variables.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use reservoir_ingest::{NoProgress, RunReport, SourceDef, SourceOutcome};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult};
use crate::{ApiJson, ApiPath, AppState};

/// One definition in the list.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SourceSummary {
    /// The file's name without `.toml`.
    name: String,
    kind: Option<String>,
    unit: Option<String>,
    dataset: Option<String>,
    schedule: Option<String>,
    /// Why the file cannot be used, if it cannot.
    error: Option<String>,
}

/// A definition: its TOML text, and what it says.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SourceDocument {
    name: String,
    toml: String,
    #[schema(value_type = Object)]
    definition: serde_json::Value,
}

/// The body of a write.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct SourceWrite {
    /// The definition as TOML, as it is kept in `sources/<name>.toml`.
    toml: String,
}

fn sources_dir(state: &AppState) -> ApiResult<PathBuf> {
    state.config().sources_dir.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_sources",
            "this server has no sources folder",
        )
    })
}

fn check_name(name: &str) -> ApiResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "source name {name:?}: use letters, digits, '-' and '_' (it becomes a file name)"
        )))
    }
}

/// Checks a definition as `reservoir collect` would read it. Environment variables it names
/// need not be set here (they are the collecting machine's), but secrets in the text are refused.
fn validate(path: &std::path::Path, text: &str) -> ApiResult<SourceDef> {
    let def: SourceDef = toml::from_str(text)
        .map_err(|e| ApiError::bad_request(format!("{}: {e}", path.display())))?;
    let base = path.parent().map(PathBuf::from).unwrap_or_default();
    let placeholder = |_: &str| Some("placeholder".to_string());
    def.to_source_request(path, &base, &placeholder)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(def)
}

/// The source definitions in the home's `sources/` folder.
#[utoipa::path(get, path = "/api/v1/sources", operation_id = "list_sources", tag = "collect", responses((status = 200, body = Vec<SourceSummary>), (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: crate::auth::Caller,
) -> ApiResult<Json<Vec<SourceSummary>>> {
    // Definitions name hosts, accounts and secrets' variables: operators only.
    caller.require_operator()?;
    let dir = sources_dir(&state)?;
    let mut out = Vec::new();
    let entries = std::fs::read_dir(&dir).map_err(ApiError::internal)?;
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    for path in paths {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        match SourceDef::load(&path) {
            Ok(d) => out.push(SourceSummary {
                name,
                kind: Some(d.kind),
                unit: Some(d.unit),
                dataset: Some(d.dataset),
                schedule: d.schedule,
                error: None,
            }),
            Err(e) => out.push(SourceSummary {
                name,
                kind: None,
                unit: None,
                dataset: None,
                schedule: None,
                error: Some(e.to_string()),
            }),
        }
    }
    Ok(Json(out))
}

/// One source definition.
#[utoipa::path(get, path = "/api/v1/sources/{name}", operation_id = "get_source", tag = "collect", params(("name" = String, Path)), responses((status = 200, body = SourceDocument), (status = 400, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn get(
    State(state): State<AppState>,
    caller: crate::auth::Caller,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<SourceDocument>> {
    caller.require_operator()?;
    check_name(&name)?;
    let path = sources_dir(&state)?.join(format!("{name}.toml"));
    let toml = std::fs::read_to_string(&path)
        .map_err(|_| ApiError::not_found(format!("no source definition {name:?}")))?;
    let def = SourceDef::load(&path).map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(Json(SourceDocument {
        name,
        toml,
        definition: serde_json::to_value(def).map_err(ApiError::internal)?,
    }))
}

/// Creates or replaces a source definition; it is checked first, and refused if it holds a
/// password.
#[utoipa::path(put, path = "/api/v1/sources/{name}", operation_id = "put_source", tag = "collect", params(("name" = String, Path)), request_body = SourceWrite, responses((status = 200, body = SourceDocument), (status = 400, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn put(
    State(state): State<AppState>,
    caller: crate::auth::Caller,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<SourceWrite>,
) -> ApiResult<Json<SourceDocument>> {
    caller.require_operator()?;
    check_name(&name)?;
    let dir = sources_dir(&state)?;
    let path = dir.join(format!("{name}.toml"));
    let def = validate(&path, &body.toml)?;
    // Write beside, then rename: a reader never sees half a definition.
    let tmp = dir.join(format!(".{name}.toml.tmp"));
    std::fs::write(&tmp, &body.toml).map_err(ApiError::internal)?;
    std::fs::rename(&tmp, &path).map_err(ApiError::internal)?;
    state.audit(caller.event("source.put", &name)).await;
    Ok(Json(SourceDocument {
        name,
        toml: body.toml,
        definition: serde_json::to_value(def).map_err(ApiError::internal)?,
    }))
}

/// Deletes a source definition (the data it collected stays).
#[utoipa::path(delete, path = "/api/v1/sources/{name}", operation_id = "delete_source", tag = "collect", params(("name" = String, Path)), responses((status = 204, description = "Deleted"), (status = 400, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    caller: crate::auth::Caller,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<StatusCode> {
    caller.require_operator()?;
    check_name(&name)?;
    let path = sources_dir(&state)?.join(format!("{name}.toml"));
    std::fs::remove_file(&path)
        .map_err(|_| ApiError::not_found(format!("no source definition {name:?}")))?;
    state.audit(caller.event("source.delete", &name)).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Collects a source now, once; returns its runs.
#[utoipa::path(post, path = "/api/v1/sources/{name}/run", operation_id = "run_source", tag = "collect", params(("name" = String, Path)), responses((status = 200, body = Vec<RunReport>), (status = 400, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn run(
    State(state): State<AppState>,
    caller: crate::auth::Caller,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<Vec<RunReport>>> {
    caller.require_operator()?;
    state.audit(caller.event("source.run", &name)).await;
    check_name(&name)?;
    let path = sources_dir(&state)?.join(format!("{name}.toml"));
    if !path.exists() {
        return Err(ApiError::not_found(format!(
            "no source definition {name:?}"
        )));
    }
    let def = SourceDef::load(&path).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let base = path.parent().map(PathBuf::from).unwrap_or_default();
    let env = |v: &str| std::env::var(v).ok();
    let mut req = def
        .to_source_request(&path, &base, &env)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    req.set_sizes(state.config().infer_rows, state.config().batch_rows);
    // A database sync's future is not `Send`: run it on a blocking thread of its own.
    let handle = tokio::runtime::Handle::current();
    let state2 = state.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        handle.block_on(async move {
            state2
                .collector()
                .run_source(req, Arc::new(NoProgress))
                .await
                .map_err(ApiError::from)
        })
    })
    .await
    .map_err(ApiError::internal)??;
    let mut runs = match outcome {
        SourceOutcome::Run(r) => vec![*r],
        SourceOutcome::Folder(f) => f.loaded,
    };
    for run in &mut runs {
        if run.counts.rows_loaded > 0 {
            let (unit, dataset) = (def.unit.clone(), def.dataset.clone());
            super::upload::refresh_open(&state, &unit, &dataset, run).await;
        }
    }
    Ok(Json(runs))
}
