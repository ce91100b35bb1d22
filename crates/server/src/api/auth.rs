//! Logging in and out, the current account, and changing one's password.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use reservoir_access::{Outcome, Role};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{CSRF_COOKIE, Caller, SESSION_COOKIE, Via, cookie, too_many};
use crate::error::{ApiError, ApiResult};
use crate::{ApiJson, AppState};

/// Login attempts allowed per client address in [`LOGIN_WINDOW`].
pub(crate) const LOGIN_ATTEMPTS: usize = 10;
pub(crate) const LOGIN_WINDOW: Duration = Duration::from_secs(300);

#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginRequest {
    pub login: String,
    pub password: String,
}

/// Who is logged in.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    /// `None` for the public.
    pub login: Option<String>,
    pub display_name: String,
    pub role: Role,
    pub unit_id: Option<String>,
    /// The account must set a new password before anything else.
    pub must_change: bool,
    /// The grant a token is scoped to.
    pub grant_scope: Option<i64>,
    /// `session`, `token` or `public`.
    pub via: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    pub me: Me,
    /// Echo it in the `X-CSRF-Token` header of every POST, PUT and DELETE (it is also in the
    /// `rsv_csrf` cookie).
    pub csrf_token: String,
    pub expires_at: String,
}

fn session_cookies(state: &AppState, session: &str, csrf: &str, max_age: i64) -> [HeaderValue; 2] {
    let secure = if state.config().secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let make = |v: String| {
        HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static("rsv_invalid=1"))
    };
    [
        make(format!(
            "{SESSION_COOKIE}={session}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
        )),
        make(format!(
            "{CSRF_COOKIE}={csrf}; Path=/; SameSite=Strict; Max-Age={max_age}{secure}"
        )),
    ]
}

/// Logs in and opens a console session (cookies `rsv_session`, HttpOnly, and `rsv_csrf`).
#[utoipa::path(
    post,
    path = "/api/v1/auth/login",
    tag = "access",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in; cookies set", body = LoginResponse),
        (status = 400, description = "Not a JSON login", body = crate::ErrorBody),
        (status = 401, description = "Wrong login name or password", body = crate::ErrorBody),
        (status = 429, description = "Too many attempts, or the account is locked", body = crate::ErrorBody),
    )
)]
pub(crate) async fn login(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Response {
    let key = caller
        .ip
        .map(|i| i.to_string())
        .unwrap_or_else(|| "unknown".into());
    if let Err(wait) = state
        .login_limiter()
        .hit(&key, LOGIN_ATTEMPTS, LOGIN_WINDOW)
    {
        return too_many(
            format!("too many login attempts from this address; try again in {wait} s"),
            wait,
        );
    }
    // A login name is at most 64 characters; whatever was typed is recorded that long.
    let typed: String = body.login.chars().take(64).collect();
    let mut event = caller.event("auth.login", &typed);
    event.actor = typed.clone();
    match state
        .access()
        .login(&body.login, &body.password, &caller.client)
        .await
    {
        Ok(session) => {
            state.audit(event).await;
            let cookies = session_cookies(
                &state,
                &session.cookie,
                &session.csrf,
                reservoir_access::users::SESSION_HOURS * 3600,
            );
            let body = LoginResponse {
                me: Me {
                    login: Some(session.user.id.clone()),
                    display_name: session.user.display_name.clone(),
                    role: session.user.role,
                    unit_id: session.user.unit_id.clone(),
                    must_change: session.user.must_change,
                    grant_scope: None,
                    via: "session".into(),
                },
                csrf_token: session.csrf,
                expires_at: session.expires_at,
            };
            let mut resp = Json(body).into_response();
            for c in cookies {
                resp.headers_mut().append(header::SET_COOKIE, c);
            }
            resp
        }
        Err(e) => {
            event.outcome = Some(Outcome::Denied);
            event.detail = serde_json::json!({"reason": e.to_string()}).to_string();
            state.audit(event).await;
            alert_on_denials(&state, &typed).await;
            ApiError::from(e).into_response()
        }
    }
}

/// Raises an alert when an actor was refused five times in ten minutes.
pub(crate) async fn alert_on_denials(state: &AppState, actor: &str) {
    let since = reservoir_catalog::format_ts(chrono::Utc::now() - chrono::Duration::minutes(10));
    if let Ok(n) = state.access().denials_since(actor, &since).await
        && n >= 5
    {
        let _ = state
            .catalog()
            .raise_alert(
                "access_denied",
                &format!("principal:{actor}"),
                "",
                &format!("{actor} was refused {n} times in 10 minutes"),
            )
            .await;
    }
}

/// Ends the session.
#[utoipa::path(
    post,
    path = "/api/v1/auth/logout",
    tag = "access",
    responses((status = 204, description = "Logged out; cookies cleared"))
)]
pub(crate) async fn logout(
    State(state): State<AppState>,
    caller: Caller,
    headers: axum::http::HeaderMap,
) -> ApiResult<Response> {
    if let Some(session) = cookie(&headers, SESSION_COOKIE) {
        state.access().logout(session).await?;
        if caller.via == Via::Session {
            state
                .audit(caller.event("auth.logout", caller.name()))
                .await;
        }
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    for c in session_cookies(&state, "", "", 0) {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    Ok(resp)
}

/// The caller: account, role, unit (the public when not logged in).
#[utoipa::path(
    get,
    path = "/api/v1/auth/me",
    tag = "access",
    responses((status = 200, description = "The caller", body = Me))
)]
pub(crate) async fn me(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Me>> {
    let user = match &caller.principal.user {
        Some(id) => state.access().user(id).await?,
        None => None,
    };
    Ok(Json(Me {
        login: caller.principal.user.clone(),
        display_name: user
            .as_ref()
            .map(|u| u.display_name.clone())
            .unwrap_or_default(),
        role: caller.principal.role,
        unit_id: caller.principal.unit_id.clone(),
        must_change: user.is_some_and(|u| u.must_change),
        grant_scope: caller.principal.grant_scope,
        via: match caller.via {
            Via::Public => "public",
            Via::Session => "session",
            Via::Token => "token",
        }
        .into(),
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct PasswordChange {
    pub current: String,
    pub new: String,
}

/// Changes the caller's own password (required after a first login); other sessions end.
#[utoipa::path(
    post,
    path = "/api/v1/auth/password",
    tag = "access",
    request_body = PasswordChange,
    responses(
        (status = 204, description = "Changed; log in again"),
        (status = 400, description = "The new password breaks the policy", body = crate::ErrorBody),
        (status = 401, description = "The current password is wrong", body = crate::ErrorBody),
        (status = 403, description = "Not from a console session", body = crate::ErrorBody),
        (status = 429, description = "Too many failed attempts", body = crate::ErrorBody),
    )
)]
pub(crate) async fn password(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<PasswordChange>,
) -> ApiResult<Response> {
    caller.require_login()?;
    if caller.via != Via::Session {
        return Err(crate::auth::forbidden(
            "change a password from a console session, not with a token",
        ));
    }
    let login = caller.name().to_string();
    state.access().authenticate(&login, &body.current).await?;
    if body.new == body.current {
        return Err(ApiError::bad_request(
            "the new password must differ from the current one",
        ));
    }
    state
        .access()
        .set_password(&login, &body.new, false)
        .await?;
    state.audit(caller.event("user.password", &login)).await;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    for c in session_cookies(&state, "", "", 0) {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    Ok(resp)
}

// ------------------------------------------------------------------------------ applications

/// An application from someone without an account for a conditionally open dataset: who they
/// are, the account to create, and what they want the data for.
#[derive(Debug, Deserialize, ToSchema)]
pub struct Application {
    /// The login name of the account to create.
    pub login: String,
    pub password: String,
    /// The applicant's name.
    pub name: String,
    /// Company, institution, or 个人 (a private person).
    pub organization: String,
    /// The organization's unified social credit code (checked when given).
    #[serde(default)]
    pub credit_code: Option<String>,
    /// Phone or e-mail for the steward's questions.
    pub contact: String,
    pub dataset_id: i64,
    pub purpose: String,
    /// `YYYY-MM-DD`
    pub period_start: String,
    /// `YYYY-MM-DD`
    pub period_end: String,
    #[serde(default)]
    pub volume: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApplicationReceipt {
    /// The account created (logged in: the session cookies are set).
    pub login: String,
    pub request: reservoir_access::AccessRequest,
}

/// Applications allowed per client address in an hour.
const APPLICATIONS_PER_HOUR: usize = 5;
/// Application forms an address may send an hour, refused ones included.
const APPLICATION_ATTEMPTS_PER_HOUR: usize = 30;

/// Applies for a conditionally open dataset without an account: registers the applicant (a
/// consumer account without a unit, which sees nothing until approved), files the request for
/// the dataset's steward, and logs the applicant in to follow it.
#[utoipa::path(
    post,
    path = "/api/v1/open/applications",
    tag = "open",
    request_body = Application,
    responses(
        (status = 201, description = "Registered and filed; cookies set", body = ApplicationReceipt),
        (status = 400, description = "A field is missing or invalid, or the caller is logged in", body = crate::ErrorBody),
        (status = 404, description = "No conditionally open dataset with this id", body = crate::ErrorBody),
        (status = 409, description = "The login is taken", body = crate::ErrorBody),
        (status = 429, description = "Too many applications from this address", body = crate::ErrorBody),
    )
)]
pub(crate) async fn apply(
    State(state): State<AppState>,
    caller: Caller,
    crate::ApiJson(body): crate::ApiJson<Application>,
) -> Response {
    match apply_inner(&state, &caller, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn apply_inner(state: &AppState, caller: &Caller, body: Application) -> ApiResult<Response> {
    if let Some(user) = &caller.principal.user {
        return Err(ApiError::bad_request(format!(
            "you are logged in as {user}: apply from the dataset's page with your account"
        )));
    }
    let ip = caller
        .ip
        .map(|i| i.to_string())
        .unwrap_or_else(|| "unknown".into());
    // Filed applications count against the address (five an hour); a form refused for a typo
    // does not, though attempts of any kind are bounded too.
    let hour = Duration::from_secs(3600);
    let filed = format!("apply:{ip}");
    let limited = state
        .login_limiter()
        .hit(
            &format!("apply-try:{ip}"),
            APPLICATION_ATTEMPTS_PER_HOUR,
            hour,
        )
        .and_then(|()| {
            state
                .login_limiter()
                .check(&filed, APPLICATIONS_PER_HOUR, hour)
        });
    if let Err(wait) = limited {
        return Ok(too_many(
            format!("too many applications from this address; try again in {wait} s"),
            wait,
        ));
    }
    // Only conditionally open datasets take applications; others are as if absent.
    let dataset = state
        .catalog()
        .dataset_by_id(body.dataset_id)
        .await?
        .filter(|d| d.open_tier == reservoir_catalog::OpenTier::Conditional && d.layer == "raw")
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no conditionally open dataset {}: applications are for 有条件开放 datasets",
                body.dataset_id
            ))
        })?;
    // The request's own checks first, so that a bad request leaves no account behind.
    if body.purpose.trim().chars().count() < 4 {
        return Err(ApiError::bad_request(
            "purpose: say what the data is for (at least 4 characters)",
        ));
    }
    let day = |what: &str, s: &str| {
        chrono::NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").map_err(|_| {
            ApiError::bad_request(format!("{what} {s:?}: expected a date like 2026-12-31"))
        })
    };
    let (start, end) = (
        day("period_start", &body.period_start)?,
        day("period_end", &body.period_end)?,
    );
    if end < start || end < chrono::Utc::now().date_naive() {
        return Err(ApiError::bad_request(format!(
            "period {start} – {end}: it must end after it starts, and not in the past"
        )));
    }
    let applicant = reservoir_access::NewApplicant {
        login: body.login.clone(),
        password: body.password.clone(),
        name: body.name.clone(),
        organization: body.organization.clone(),
        credit_code: body.credit_code.clone(),
        contact: body.contact.clone(),
    };
    let client = format!("{ip} portal");
    let user = state
        .access()
        .register_applicant(&applicant, &client, |code| {
            code.chars().count() == 18
                && code.is_ascii()
                && reservoir_quality::validate::uscc_check(&code[..17]) == code[17..].chars().next()
        })
        .await?;
    let principal = reservoir_access::Principal::of(&user);
    let columns = state
        .catalog()
        .fields(dataset.id)
        .await?
        .into_iter()
        .map(|f| f.name)
        .filter(|n| !n.starts_with('_'))
        .collect();
    let who = match applicant
        .credit_code
        .as_deref()
        .filter(|c| !c.trim().is_empty())
    {
        Some(code) => format!(
            "{}（{}，统一社会信用代码 {}）",
            applicant.name.trim(),
            applicant.organization.trim(),
            code.trim().to_ascii_uppercase()
        ),
        None => format!(
            "{}（{}）",
            applicant.name.trim(),
            applicant.organization.trim()
        ),
    };
    let request = state
        .access()
        .file_request(
            &principal,
            &reservoir_access::NewRequest {
                dataset_id: dataset.id,
                columns,
                purpose: format!(
                    "{}\n申请人：{who}；联系方式：{}",
                    body.purpose.trim(),
                    applicant.contact.trim()
                ),
                period_start: start.to_string(),
                period_end: end.to_string(),
                volume: body.volume,
            },
        )
        .await?;
    let _ = state
        .login_limiter()
        .hit(&filed, APPLICATIONS_PER_HOUR, hour);
    let mut e = reservoir_access::AuditEvent::new(
        &user.id,
        "open.apply",
        &format!("{}.{}", dataset.unit_id, dataset.name),
    );
    e.client = caller.client.clone();
    e.purpose = request.purpose.clone();
    e.detail =
        serde_json::json!({"request": request.id, "organization": applicant.organization.trim()})
            .to_string();
    state.audit(e).await;
    let session = state
        .access()
        .login(&user.id, &body.password, &caller.client)
        .await?;
    let mut resp = (
        StatusCode::CREATED,
        Json(ApplicationReceipt {
            login: user.id.clone(),
            request,
        }),
    )
        .into_response();
    for c in session_cookies(
        state,
        &session.cookie,
        &session.csrf,
        reservoir_access::users::SESSION_HOURS * 3600,
    ) {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    Ok(resp)
}
