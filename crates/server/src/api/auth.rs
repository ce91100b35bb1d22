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
const LOGIN_ATTEMPTS: usize = 10;
const LOGIN_WINDOW: Duration = Duration::from_secs(300);

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
