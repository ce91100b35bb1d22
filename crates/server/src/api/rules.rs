//! A dataset's quality rules (`<home>/rules/<unit>/<dataset>.yaml`) through the API: read,
//! write (checked the way `reservoir check` reads them, so a broken file is never saved) and
//! delete. The rules run after every collection and with `reservoir check`.

use std::path::{Path, PathBuf};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use reservoir_quality::rules::{self, RuleSet};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult};
use crate::{ApiJson, ApiPath, AppState};

/// A rules file and what it says.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RulesDocument {
    dataset: String,
    yaml: String,
    rules: Vec<RuleSummary>,
}

/// One rule as read.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RuleSummary {
    name: String,
    check: String,
    columns: Vec<String>,
    dimension: String,
    blocking: bool,
}

/// The body of a write.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct RulesWrite {
    /// The rules as YAML, as kept in `rules/<unit>/<dataset>.yaml`.
    yaml: String,
}

fn rules_dir(state: &AppState) -> ApiResult<PathBuf> {
    state.config().rules_dir.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_rules",
            "this server has no rules folder",
        )
    })
}

/// The dataset must be a raw dataset of the catalog: rules check what was collected.
async fn dataset(state: &AppState, layer: &str, unit: &str, name: &str) -> ApiResult<()> {
    if layer != "raw" {
        return Err(ApiError::bad_request(format!(
            "rules check collected (raw) datasets; {layer}.{unit}.{name} is in the {layer} layer"
        )));
    }
    state
        .catalog()
        .dataset(layer, unit, name)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "dataset {layer}.{unit}.{name} is not in the catalog"
            ))
        })?;
    Ok(())
}

fn summary(set: &RuleSet) -> Vec<RuleSummary> {
    set.rules
        .iter()
        .map(|r| RuleSummary {
            name: r.name.clone(),
            check: r.check.as_str().into(),
            columns: r.columns.clone(),
            dimension: r.dimension.to_string(),
            blocking: r.blocking,
        })
        .collect()
}

fn existing(dir: &Path, unit: &str, name: &str) -> ApiResult<Option<PathBuf>> {
    rules::find_file(dir, unit, name).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// A dataset's quality rules.
#[utoipa::path(get, path = "/api/v1/datasets/{layer}/{unit}/{name}/rules", operation_id = "get_rules", tag = "quality",
    params(("layer" = String, Path, example = "raw"), ("unit" = String, Path, example = "minzheng"), ("name" = String, Path, example = "villages")),
    responses((status = 200, body = RulesDocument), (status = 400, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn get(
    State(state): State<AppState>,
    caller: crate::auth::Caller,
    ApiPath((layer, unit, name)): ApiPath<(String, String, String)>,
) -> ApiResult<Json<RulesDocument>> {
    caller.require_login()?;
    dataset(&state, &layer, &unit, &name).await?;
    let dir = rules_dir(&state)?;
    let path = existing(&dir, &unit, &name)?
        .ok_or_else(|| ApiError::not_found(format!("{layer}.{unit}.{name} has no rules")))?;
    let yaml = std::fs::read_to_string(&path).map_err(ApiError::internal)?;
    let set = RuleSet::parse(&yaml, &path).map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(Json(RulesDocument {
        dataset: format!("{layer}.{unit}.{name}"),
        rules: summary(&set),
        yaml,
    }))
}

/// Creates or replaces a dataset's quality rules; they are checked first and a file with an
/// error is not saved.
#[utoipa::path(put, path = "/api/v1/datasets/{layer}/{unit}/{name}/rules", operation_id = "put_rules", tag = "quality",
    params(("layer" = String, Path, example = "raw"), ("unit" = String, Path, example = "minzheng"), ("name" = String, Path, example = "villages")),
    request_body = RulesWrite,
    responses((status = 200, body = RulesDocument), (status = 400, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn put(
    State(state): State<AppState>,
    caller: crate::auth::Caller,
    ApiPath((layer, unit, name)): ApiPath<(String, String, String)>,
    ApiJson(body): ApiJson<RulesWrite>,
) -> ApiResult<Json<RulesDocument>> {
    caller.require_steward_of(&unit)?;
    dataset(&state, &layer, &unit, &name).await?;
    let dir = rules_dir(&state)?.join(&unit);
    let path = existing(&rules_dir(&state)?, &unit, &name)?
        .unwrap_or_else(|| dir.join(format!("{name}.yaml")));
    let set =
        RuleSet::parse(&body.yaml, &path).map_err(|e| ApiError::bad_request(e.to_string()))?;
    // A rule that joins another dataset writes that dataset's values into this one's quality
    // table: its author must see the other dataset whole, i.e. steward its unit too.
    for reference in set.references() {
        let parts: Vec<&str> = reference.split('.').collect();
        let other_unit = match parts.as_slice() {
            [unit, _] | [_, unit, _] => *unit,
            _ => continue,
        };
        if !caller.principal.stewards(other_unit) {
            return Err(crate::auth::forbidden(format!(
                "a rule may join only datasets its author stewards; {} does not steward unit \
                 {other_unit:?} (rule reference {reference})",
                caller.name()
            )));
        }
    }
    std::fs::create_dir_all(&dir).map_err(ApiError::internal)?;
    // Write beside, then rename: a check never reads half a file.
    let tmp = dir.join(format!(".{name}.yaml.tmp"));
    std::fs::write(&tmp, &body.yaml).map_err(ApiError::internal)?;
    std::fs::rename(&tmp, &path).map_err(ApiError::internal)?;
    state
        .audit(caller.event("rules.put", &format!("{unit}.{name}")))
        .await;
    Ok(Json(RulesDocument {
        dataset: format!("{layer}.{unit}.{name}"),
        rules: summary(&set),
        yaml: body.yaml,
    }))
}

/// Deletes a dataset's quality rules (its check history stays).
#[utoipa::path(delete, path = "/api/v1/datasets/{layer}/{unit}/{name}/rules", operation_id = "delete_rules", tag = "quality",
    params(("layer" = String, Path, example = "raw"), ("unit" = String, Path, example = "minzheng"), ("name" = String, Path, example = "villages")),
    responses((status = 204, description = "Deleted"), (status = 400, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    caller: crate::auth::Caller,
    ApiPath((layer, unit, name)): ApiPath<(String, String, String)>,
) -> ApiResult<StatusCode> {
    caller.require_steward_of(&unit)?;
    dataset(&state, &layer, &unit, &name).await?;
    let path = existing(&rules_dir(&state)?, &unit, &name)?
        .ok_or_else(|| ApiError::not_found(format!("{layer}.{unit}.{name} has no rules")))?;
    std::fs::remove_file(&path).map_err(ApiError::internal)?;
    state
        .audit(caller.event("rules.delete", &format!("{unit}.{name}")))
        .await;
    Ok(StatusCode::NO_CONTENT)
}
