//! Accounts, API tokens, data requests, grants, the audit log and usage, over the API.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use reservoir_access::audit::{AuditFilter, AuditVerdict};
use reservoir_access::metering::Usage;
use reservoir_access::{
    AccessRequest, Approval, AuditEntry, Grant, IssuedToken, NewRequest, NewUser, Role, Token, User,
};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Caller, forbidden};
use crate::error::{ApiError, ApiResult};
use crate::{ApiJson, ApiPath, ApiQuery, AppState};

// ------------------------------------------------------------------------------------ users

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewAccount {
    pub login: String,
    #[serde(default)]
    pub display_name: String,
    pub role: Role,
    #[serde(default)]
    pub unit_id: Option<String>,
    /// The first password; the account must change it at its first login.
    pub password: String,
}

/// Accounts (operators).
#[utoipa::path(get, path = "/api/v1/users", tag = "access",
    responses((status = 200, body = Vec<User>), (status = 403, body = crate::ErrorBody)))]
pub(crate) async fn users(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<User>>> {
    caller.require_operator()?;
    Ok(Json(state.access().users().await?))
}

/// Creates an account (operators).
#[utoipa::path(post, path = "/api/v1/users", tag = "access", request_body = NewAccount,
    responses((status = 201, body = User), (status = 400, body = crate::ErrorBody),
              (status = 403, body = crate::ErrorBody), (status = 404, description = "No such unit", body = crate::ErrorBody),
              (status = 409, body = crate::ErrorBody)))]
pub(crate) async fn create_user(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewAccount>,
) -> ApiResult<Response> {
    caller.require_operator()?;
    let user = state
        .access()
        .create_user(&NewUser {
            id: body.login,
            display_name: body.display_name,
            role: body.role,
            unit_id: body.unit_id,
            password: body.password,
            must_change: true,
        })
        .await?;
    let mut e = caller.event("user.create", &user.id);
    e.detail = serde_json::json!({"role": user.role, "unit": user.unit_id}).to_string();
    state.audit(e).await;
    Ok((StatusCode::CREATED, Json(user)).into_response())
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct AccountChange {
    #[serde(default)]
    pub role: Option<Role>,
    #[serde(default)]
    pub unit_id: Option<String>,
    #[serde(default)]
    pub disabled: Option<bool>,
}

/// Changes an account's role, unit or state (operators).
#[utoipa::path(patch, path = "/api/v1/users/{login}", tag = "access", request_body = AccountChange,
    params(("login" = String, Path)),
    responses((status = 200, body = User), (status = 400, body = crate::ErrorBody),
              (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn change_user(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(login): ApiPath<String>,
    ApiJson(body): ApiJson<AccountChange>,
) -> ApiResult<Json<User>> {
    caller.require_operator()?;
    if let Some(role) = body.role {
        if login == caller.name() && role != Role::Operator {
            return Err(ApiError::bad_request(
                "an operator cannot demote itself; ask another operator",
            ));
        }
        state
            .access()
            .set_role(&login, role, body.unit_id.as_deref())
            .await?;
        let mut e = caller.event("user.role", &login);
        e.detail = serde_json::json!({"role": role, "unit": body.unit_id}).to_string();
        state.audit(e).await;
    }
    if let Some(disabled) = body.disabled {
        if disabled && login == caller.name() {
            return Err(ApiError::bad_request(
                "an operator cannot disable itself; ask another operator",
            ));
        }
        state.access().set_disabled(&login, disabled).await?;
        let action = if disabled {
            "user.disable"
        } else {
            "user.enable"
        };
        state.audit(caller.event(action, &login)).await;
    }
    state
        .access()
        .user(&login)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("account {login:?} not found")))
}

// ----------------------------------------------------------------------------------- tokens

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewToken {
    #[serde(default)]
    pub name: String,
    /// Scope the token to one of your grants.
    #[serde(default)]
    pub grant_id: Option<i64>,
    /// Days until it expires (1–366, default 30).
    #[serde(default)]
    pub days: Option<i64>,
}

/// The caller's API tokens (operators: everyone's). Secrets are never shown again.
#[utoipa::path(get, path = "/api/v1/tokens", tag = "access",
    responses((status = 200, body = Vec<Token>), (status = 401, body = crate::ErrorBody)))]
pub(crate) async fn tokens(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<Token>>> {
    caller.require_login()?;
    let user = (!caller.principal.is_operator()).then(|| caller.name().to_string());
    Ok(Json(state.access().tokens(user.as_deref()).await?))
}

/// Issues an API token for the caller; the secret is in the response, once.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "access", request_body = NewToken,
    responses((status = 201, body = IssuedToken), (status = 400, body = crate::ErrorBody),
              (status = 403, body = crate::ErrorBody), (status = 404, description = "No such grant", body = crate::ErrorBody),
              (status = 409, description = "The grant is revoked", body = crate::ErrorBody)))]
pub(crate) async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewToken>,
) -> ApiResult<Response> {
    caller.require_login()?;
    if caller.principal.grant_scope.is_some() {
        return Err(forbidden("a token scoped to a grant cannot issue tokens"));
    }
    let issued = state
        .access()
        .create_token(
            caller.name(),
            &body.name,
            body.grant_id,
            body.days.unwrap_or(30),
        )
        .await?;
    let mut e = caller.event("token.create", caller.name());
    e.grant_id = body.grant_id;
    e.detail = serde_json::json!({"token": issued.token.id, "expires_at": issued.token.expires_at})
        .to_string();
    state.audit(e).await;
    Ok((StatusCode::CREATED, Json(issued)).into_response())
}

/// Revokes a token (one's own; operators: any).
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "access", params(("id" = String, Path)),
    responses((status = 200, body = Token), (status = 403, body = crate::ErrorBody),
              (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Token>> {
    caller.require_login()?;
    let token = state
        .access()
        .tokens(None)
        .await?
        .into_iter()
        .find(|t| t.id == id)
        .ok_or_else(|| ApiError::not_found(format!("token {id:?} not found")))?;
    if token.user_id != caller.name() && !caller.principal.is_operator() {
        // Someone else's token: as if it did not exist.
        return Err(ApiError::not_found(format!("token {id:?} not found")));
    }
    let token = state.access().revoke_token(&id).await?;
    state
        .audit(caller.event("token.revoke", &token.user_id))
        .await;
    Ok(Json(token))
}

// --------------------------------------------------------------------------------- requests

/// Requests the caller may see: its own, and those for datasets of the units it stewards.
#[utoipa::path(get, path = "/api/v1/requests", tag = "access",
    responses((status = 200, body = Vec<AccessRequest>), (status = 401, body = crate::ErrorBody)))]
pub(crate) async fn requests(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<AccessRequest>>> {
    caller.require_login()?;
    Ok(Json(state.access().requests_for(&caller.principal).await?))
}

/// Files a request for a dataset (consumers and stewards).
#[utoipa::path(post, path = "/api/v1/requests", tag = "access", request_body = NewRequest,
    responses((status = 201, body = AccessRequest), (status = 400, body = crate::ErrorBody),
              (status = 403, body = crate::ErrorBody), (status = 404, description = "No such dataset", body = crate::ErrorBody)))]
pub(crate) async fn file_request(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewRequest>,
) -> ApiResult<Response> {
    caller.require_roles(&[Role::Consumer, Role::Steward, Role::Operator])?;
    let request = state
        .access()
        .file_request(&caller.principal, &body)
        .await?;
    let dataset = state.catalog().dataset_by_id(request.dataset_id).await?;
    let mut e = caller.event(
        "request.file",
        &dataset
            .map(|d| format!("{}.{}", d.unit_id, d.name))
            .unwrap_or_default(),
    );
    e.purpose = request.purpose.clone();
    e.columns = request.columns.join(",");
    e.detail = serde_json::json!({"request": request.id}).to_string();
    state.audit(e).await;
    Ok((StatusCode::CREATED, Json(request)).into_response())
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct Rejection {
    pub reason: String,
}

/// Approves a request and provisions its grant (stewards of the dataset's unit, operators). A
/// row filter is checked against the table first.
#[utoipa::path(post, path = "/api/v1/requests/{id}/approve", tag = "access", request_body = Approval,
    params(("id" = i64, Path)),
    responses((status = 200, body = Grant), (status = 400, body = crate::ErrorBody),
              (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody),
              (status = 409, body = crate::ErrorBody)))]
pub(crate) async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<Approval>,
) -> ApiResult<Json<Grant>> {
    caller.require_login()?;
    let request = state
        .access()
        .request(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("request {id} not found")))?;
    let dataset = state
        .catalog()
        .dataset_by_id(request.dataset_id)
        .await?
        .ok_or_else(|| ApiError::not_found("the request's dataset is gone"))?;
    caller.require_steward_of(&dataset.unit_id)?;
    if let Some(filter) = body.row_filter.as_deref().filter(|f| !f.trim().is_empty()) {
        reservoir_query::validate_row_filter(state.lake(), &dataset.unit_id, &dataset.name, filter)
            .await?;
    }
    let (request, grant) = state.access().approve(id, &caller.principal, &body).await?;
    let mut e = caller.event(
        "request.approve",
        &format!("{}.{}", dataset.unit_id, dataset.name),
    );
    e.grant_id = Some(grant.id);
    e.purpose = request.purpose.clone();
    e.columns = grant
        .columns
        .iter()
        .map(|c| c.name.as_str())
        .collect::<Vec<_>>()
        .join(",");
    e.detail = serde_json::json!({"request": id, "requester": request.requester,
        "columns": grant.columns, "row_filter": grant.row_filter, "expires_at": grant.expires_at})
    .to_string();
    state.audit(e).await;
    Ok(Json(grant))
}

/// Rejects a request with a reason.
#[utoipa::path(post, path = "/api/v1/requests/{id}/reject", tag = "access", request_body = Rejection,
    params(("id" = i64, Path)),
    responses((status = 200, body = AccessRequest), (status = 400, body = crate::ErrorBody),
              (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody),
              (status = 409, body = crate::ErrorBody)))]
pub(crate) async fn reject(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<Rejection>,
) -> ApiResult<Json<AccessRequest>> {
    caller.require_login()?;
    let request = state
        .access()
        .reject(id, &caller.principal, &body.reason)
        .await?;
    let mut e = caller.event("request.reject", &request.requester);
    e.detail = serde_json::json!({"request": id, "reason": body.reason}).to_string();
    state.audit(e).await;
    Ok(Json(request))
}

/// Withdraws one's own pending request.
#[utoipa::path(post, path = "/api/v1/requests/{id}/withdraw", tag = "access",
    params(("id" = i64, Path)),
    responses((status = 200, body = AccessRequest), (status = 400, body = crate::ErrorBody),
              (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody),
              (status = 409, body = crate::ErrorBody)))]
pub(crate) async fn withdraw(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<AccessRequest>> {
    caller.require_login()?;
    let request = state.access().withdraw(id, &caller.principal).await?;
    state
        .audit(caller.event("request.withdraw", &id.to_string()))
        .await;
    Ok(Json(request))
}

// ----------------------------------------------------------------------------------- grants

/// Grants the caller holds, and (stewards) those on its unit's datasets; operators and auditors
/// see all.
#[utoipa::path(get, path = "/api/v1/grants", tag = "access",
    responses((status = 200, body = Vec<Grant>), (status = 401, body = crate::ErrorBody)))]
pub(crate) async fn grants(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<Grant>>> {
    caller.require_login()?;
    let all = state.access().grants(None, None).await?;
    if matches!(caller.role(), Role::Operator | Role::Auditor)
        && caller.principal.grant_scope.is_none()
    {
        return Ok(Json(all));
    }
    let mut out = Vec::new();
    for g in all {
        let mine =
            g.user_id == caller.name() && caller.principal.grant_scope.is_none_or(|s| s == g.id);
        let stewarded = match state.catalog().dataset_by_id(g.dataset_id).await? {
            Some(d) => caller.principal.stewards(&d.unit_id),
            None => false,
        };
        if mine || stewarded {
            out.push(g);
        }
    }
    Ok(Json(out))
}

/// Revokes a grant and the tokens scoped to it (stewards of the dataset's unit, operators).
#[utoipa::path(delete, path = "/api/v1/grants/{id}", tag = "access", params(("id" = i64, Path)),
    responses((status = 200, body = Grant), (status = 400, body = crate::ErrorBody),
              (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody),
              (status = 409, body = crate::ErrorBody)))]
pub(crate) async fn revoke_grant(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Grant>> {
    caller.require_login()?;
    let grant = state.access().revoke_grant(id, &caller.principal).await?;
    let mut e = caller.event("grant.revoke", &grant.user_id);
    e.grant_id = Some(id);
    state.audit(e).await;
    Ok(Json(grant))
}

// ------------------------------------------------------------------------------------ audit

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
    pub outcome: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub limit: Option<i64>,
    /// `json` (default) or `csv` (a download).
    pub format: Option<String>,
}

/// Audit log entries, newest first (auditors, operators).
#[utoipa::path(get, path = "/api/v1/audit", tag = "access", params(AuditQuery),
    responses((status = 200, description = "Entries; CSV with format=csv", content(
                  (Vec<AuditEntry> = "application/json"), (String = "text/csv"))),
              (status = 400, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody)))]
pub(crate) async fn audit(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Response> {
    caller.require_roles(&[Role::Auditor, Role::Operator])?;
    let entries = state
        .access()
        .audit_entries(&AuditFilter {
            actor: q.actor,
            action: q.action,
            target: q.target,
            outcome: q.outcome,
            since: q.since,
            until: q.until,
            limit: q.limit,
        })
        .await?;
    state.audit(caller.event("audit.read", "")).await;
    if q.format.as_deref() == Some("csv") {
        let mut out = String::from(
            "seq,at,actor,action,target,columns,row_count,grant_id,purpose,client,outcome,detail,hash\n",
        );
        let field = |s: &str| {
            let s = reservoir_catalog::directory::spreadsheet_safe(s);
            format!("\"{}\"", s.replace('"', "\"\""))
        };
        for e in &entries {
            let opt = |v: Option<i64>| v.map(|n| n.to_string()).unwrap_or_default();
            out.push_str(
                &[
                    e.seq.to_string(),
                    field(&e.at),
                    field(&e.actor),
                    field(&e.action),
                    field(&e.target),
                    field(&e.columns),
                    opt(e.row_count),
                    opt(e.grant_id),
                    field(&e.purpose),
                    field(&e.client),
                    field(&e.outcome),
                    field(&e.detail),
                    e.hash.clone(),
                ]
                .join(","),
            );
            out.push('\n');
        }
        return Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"audit.csv\"",
                ),
            ],
            format!("\u{feff}{out}"),
        )
            .into_response());
    }
    Ok(Json(entries).into_response())
}

/// Walks the audit chain and names the first broken entry (auditors, operators).
#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "access",
    responses((status = 200, body = AuditVerdict), (status = 403, body = crate::ErrorBody)))]
pub(crate) async fn verify(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<AuditVerdict>> {
    caller.require_roles(&[Role::Auditor, Role::Operator])?;
    let verdict = state.access().verify_audit().await?;
    state.audit(caller.event("audit.verify", "")).await;
    Ok(Json(verdict))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// First day, YYYY-MM-DD (default: 30 days ago).
    pub from: Option<String>,
    /// Last day (default: today).
    pub to: Option<String>,
    pub principal: Option<String>,
}

/// Rows and bytes served per principal, dataset and day (auditors and operators: all; others:
/// their own).
#[utoipa::path(get, path = "/api/v1/usage", tag = "access", params(UsageQuery),
    responses((status = 200, body = Vec<Usage>), (status = 400, body = crate::ErrorBody),
              (status = 401, body = crate::ErrorBody)))]
pub(crate) async fn usage(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<UsageQuery>,
) -> ApiResult<Json<Vec<Usage>>> {
    caller.require_login()?;
    let today = chrono::Utc::now().date_naive();
    let from = q
        .from
        .unwrap_or_else(|| (today - chrono::Duration::days(30)).to_string());
    let to = q.to.unwrap_or_else(|| today.to_string());
    let principal = if matches!(caller.role(), Role::Auditor | Role::Operator)
        && caller.principal.grant_scope.is_none()
    {
        q.principal
    } else {
        Some(caller.name().to_string())
    };
    Ok(Json(
        state
            .access()
            .usage(&from, &to, principal.as_deref(), None)
            .await?,
    ))
}
