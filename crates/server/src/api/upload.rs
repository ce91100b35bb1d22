//! File upload into a dataset: the same pipeline and row accounting as `reservoir collect`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use reservoir_ingest::decode::encoding_for_label;
use reservoir_ingest::{CollectRequest, ColumnSpec, ColumnType, NoProgress, RunReport};
use reservoir_lake::WriteMode;
use tokio::io::AsyncWriteExt;
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult};
use crate::{ApiMultipart, ApiPath, AppState};

/// The multipart form of an upload.
#[allow(dead_code)] // documents the form for OpenAPI
#[derive(ToSchema)]
pub(crate) struct UploadForm {
    /// One or more files (CSV, TSV, XLSX, XLS, JSON, NDJSON).
    #[schema(value_type = Vec<String>, format = Binary)]
    file: Vec<Vec<u8>>,
    /// `append` (default) or `overwrite`.
    mode: Option<String>,
    /// Text encoding, e.g. `gbk` (default: detected).
    encoding: Option<String>,
    /// Spreadsheet sheet name or number.
    sheet: Option<String>,
    /// Display name for a new dataset.
    title: Option<String>,
    /// Declared column types, `NAME=TYPE` (TYPE: utf8, int64, float64, boolean, date,
    /// timestamp); repeat the field or separate with commas or new lines. Values that do not
    /// parse under a declared type are quarantined with the reason.
    column: Option<Vec<String>>,
}

/// Upload files into `raw.{unit}.{name}` and collect them.
///
/// Runs the same pipeline as `reservoir collect`: detection of encoding, delimiter and header,
/// type inference, quarantine of rows that cannot load, one commit, and a run in the catalog.
#[utoipa::path(
    post,
    path = "/api/v1/datasets/{layer}/{unit}/{name}/upload",
    tag = "collect",
    params(
        ("layer" = String, Path, description = "Must be raw: uploads land in the raw layer"),
        ("unit" = String, Path), ("name" = String, Path)
    ),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, description = "The run summary", body = RunReport),
        (status = 400, description = "A file that cannot be read, or a bad form", body = crate::ErrorBody),
        (status = 413, description = "Larger than the server accepts", body = crate::ErrorBody),
    )
)]
pub(crate) async fn upload(
    State(state): State<AppState>,
    caller: crate::auth::Caller,
    ApiPath((layer, unit, name)): ApiPath<(String, String, String)>,
    ApiMultipart(mut form): ApiMultipart,
) -> ApiResult<(StatusCode, Json<RunReport>)> {
    caller.require_steward_of(&unit)?;
    if layer != "raw" {
        return Err(ApiError::bad_request(format!(
            "uploads go into the raw layer; got layer {layer:?}"
        )));
    }
    reservoir_catalog::validate_ident("unit id", &unit)?;
    reservoir_catalog::validate_ident("dataset name", &name)?;
    let staging = match &state.config().upload_dir {
        Some(dir) => tempfile::Builder::new().prefix("upload-").tempdir_in(dir),
        None => tempfile::Builder::new()
            .prefix("reservoir-upload-")
            .tempdir(),
    }
    .map_err(ApiError::internal)?;

    let mut req = CollectRequest {
        unit: unit.clone(),
        dataset: name.clone(),
        infer_rows: state.config().infer_rows,
        batch_rows: state.config().batch_rows,
        ..CollectRequest::default()
    };
    let mut names = Vec::new();
    while let Some(mut field) = form.next_field().await? {
        let field_name = field.name().unwrap_or_default().to_string();
        if field_name == "file" {
            let original = field
                .file_name()
                .and_then(|n| Path::new(n).file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .filter(|n| !n.is_empty())
                .ok_or_else(|| ApiError::bad_request("a file part has no file name"))?;
            let path = staging.path().join(format!("{}-{original}", names.len()));
            let mut out = tokio::fs::File::create(&path)
                .await
                .map_err(ApiError::internal)?;
            while let Some(chunk) = field.chunk().await? {
                out.write_all(&chunk).await.map_err(ApiError::internal)?;
            }
            out.flush().await.map_err(ApiError::internal)?;
            req.files.push(path);
            names.push(original);
            continue;
        }
        let value = field.text().await?;
        match field_name.as_str() {
            "mode" => {
                req.mode = match value.as_str() {
                    "" | "append" => WriteMode::Append,
                    "overwrite" => WriteMode::Overwrite,
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "mode {other:?}: expected append or overwrite"
                        )));
                    }
                }
            }
            "encoding" if !value.is_empty() => {
                req.csv.encoding = Some(encoding_for_label(&value).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "unknown encoding {value:?}; use e.g. utf-8, gbk, gb18030"
                    ))
                })?);
            }
            "sheet" if !value.is_empty() => req.excel.sheet = Some(value),
            "title" if !value.is_empty() => req.info.title = Some(value),
            "column" => declare_columns(&mut req, &value)?,
            "encoding" | "sheet" | "title" => {}
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown form field {other:?}"
                )));
            }
        }
    }
    if req.files.is_empty() {
        return Err(ApiError::bad_request(
            "no file in the upload (form field \"file\")",
        ));
    }
    req.source_label = format!("upload: {}", names.join(", "));
    req.source_names = Some(names.clone());
    let staged: Vec<PathBuf> = req.files.clone();
    let result = state.collector().collect(req, Arc::new(NoProgress)).await;
    match result {
        Ok(mut report) => {
            // Name files as the user knows them, not by their staging paths.
            for (f, (path, original)) in report.files.iter_mut().zip(staged.iter().zip(&names)) {
                f.path = f.path.replace(&path.display().to_string(), original);
            }
            let mut e = caller.event("data.upload", &format!("{unit}.{name}"));
            e.row_count = Some(report.counts.rows_loaded);
            e.detail = serde_json::json!({"files": names, "run": report.run_id,
                "rows_read": report.counts.rows_read,
                "rows_quarantined": report.counts.rows_quarantined})
            .to_string();
            state.audit(e).await;
            if report.counts.rows_loaded > 0 {
                refresh_open(&state, &unit, &name, &mut report).await;
            }
            Ok((StatusCode::CREATED, Json(report)))
        }
        Err(e) => {
            let mut err = ApiError::from(e);
            for (path, original) in staged.iter().zip(&names) {
                err.message = err.message.replace(&path.display().to_string(), original);
            }
            Err(err)
        }
    }
}

/// Publishes the open snapshot of `unit.name` again when it is open and was published before,
/// noting it (or why it failed) in the run report.
pub(crate) async fn refresh_open(state: &AppState, unit: &str, name: &str, report: &mut RunReport) {
    match crate::open::republish(state, unit, name).await {
        Ok(Some(p)) => report.notes.push(format!(
            "open snapshot published again: version {}, {} rows",
            p.version, p.row_count
        )),
        Ok(None) => {}
        Err(e) => {
            tracing::error!(
                "{unit}.{name}: the open snapshot was not refreshed: {}",
                e.message
            );
            report.notes.push(format!(
                "the open snapshot was not refreshed: {}",
                e.message
            ));
        }
    }
}

/// Adds `NAME=TYPE` declarations (comma- or newline-separated) to the request.
fn declare_columns(req: &mut CollectRequest, value: &str) -> ApiResult<()> {
    for decl in value
        .split([',', '，', '\n'])
        .map(str::trim)
        .filter(|d| !d.is_empty())
    {
        let (name, ty) = decl
            .split_once('=')
            .map(|(n, t)| (n.trim(), t.trim()))
            .filter(|(n, _)| !n.is_empty())
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "column {decl:?}: expected NAME=TYPE, e.g. 人口=int64"
                ))
            })?;
        let ty: ColumnType = ty
            .parse()
            .map_err(|e: String| ApiError::bad_request(format!("column {decl:?}: {e}")))?;
        match req.columns.iter_mut().find(|c| c.name == name) {
            Some(spec) => spec.ty = Some(ty),
            None => req.columns.push(ColumnSpec {
                name: name.to_string(),
                ty: Some(ty),
                ..ColumnSpec::default()
            }),
        }
    }
    Ok(())
}
