//! Who is asking, and may they: sessions, API tokens, CSRF, and the role checks every handler
//! makes.
//!
//! ```text
//!  request ─► authenticate (middleware on /api/v1)
//!               Authorization: Bearer rsv_…  → the token's principal (maybe scoped to one grant)
//!               Cookie rsv_session=…         → the session's account; unsafe methods need
//!                                              X-CSRF-Token = the session's CSRF token
//!               neither                      → the public
//!            ─► handler: Caller guards (require_login, require_operator, require_steward_of …)
//! ```
//!
//! Session cookies are HttpOnly, SameSite=Strict and (unless configured off for plain-HTTP
//! deployments behind nothing) Secure. The CSRF token also travels in a readable cookie,
//! `rsv_csrf`, which the console echoes in the header (double submit, checked against the hash
//! the session keeps).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use reservoir_access::{AuditEvent, Outcome, Principal, Role};

use crate::AppState;
use crate::error::{ApiError, ApiResult};

pub const SESSION_COOKIE: &str = "rsv_session";
pub const CSRF_COOKIE: &str = "rsv_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// How the caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Public,
    Session,
    Token,
}

/// The principal of a request, where it came from, and how it authenticated.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    /// Client address and program, for the audit log.
    pub client: String,
    pub ip: Option<IpAddr>,
    pub via: Via,
}

impl Caller {
    pub fn name(&self) -> &str {
        self.principal.name()
    }

    pub fn role(&self) -> Role {
        self.principal.role
    }

    /// Refuses the public (401).
    pub fn require_login(&self) -> ApiResult<()> {
        if self.principal.user.is_none() {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "log in first (POST /api/v1/auth/login) or send an API token as \
                 `Authorization: Bearer <token>`",
            ));
        }
        Ok(())
    }

    /// Only these roles (403 for others; 401 for the public). A token scoped to a grant counts as
    /// a consumer.
    pub fn require_roles(&self, roles: &[Role]) -> ApiResult<()> {
        self.require_login()?;
        let role = if self.principal.grant_scope.is_some() {
            Role::Consumer
        } else {
            self.principal.role
        };
        if roles.contains(&role) {
            Ok(())
        } else {
            let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            Err(forbidden(format!(
                "this needs the role {}; {} is {}",
                names.join(" or "),
                self.name(),
                role
            )))
        }
    }

    pub fn require_operator(&self) -> ApiResult<()> {
        self.require_login()?;
        if self.principal.is_operator() {
            Ok(())
        } else {
            Err(forbidden(format!(
                "only operators may do this; {} is {}",
                self.name(),
                self.principal.role
            )))
        }
    }

    /// A steward of `unit`, or an operator.
    pub fn require_steward_of(&self, unit: &str) -> ApiResult<()> {
        self.require_login()?;
        if self.principal.stewards(unit) {
            Ok(())
        } else {
            Err(forbidden(format!(
                "only a steward of unit {unit:?} or an operator may do this; {} is {}{}",
                self.name(),
                self.principal.role,
                self.principal
                    .unit_id
                    .as_deref()
                    .map(|u| format!(" of {u:?}"))
                    .unwrap_or_default()
            )))
        }
    }

    /// An audit event by this caller.
    pub fn event(&self, action: &str, target: &str) -> AuditEvent {
        let mut e = AuditEvent::new(self.name(), action, target);
        e.client = self.client.clone();
        e
    }
}

pub fn forbidden(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Caller>()
            .cloned()
            .unwrap_or_else(|| Caller {
                principal: Principal::public(),
                client: String::new(),
                ip: None,
                via: Via::Public,
            }))
    }
}

/// The value of cookie `name`.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn client_of(req: &Request) -> (String, Option<IpAddr>) {
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let agent: String = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .chars()
        .take(80)
        .collect();
    let addr = ip.map(|i| i.to_string()).unwrap_or_else(|| "-".into());
    (format!("{addr} {agent}").trim().to_string(), ip)
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Resolves the caller of every API request and puts it in the request's extensions.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let (client, ip) = client_of(&req);
    // The path under /api/v1 (the nested router sees it without the prefix).
    let path = req.uri().path();
    let path = path.strip_prefix("/api/v1").unwrap_or(path).to_string();
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let caller = if let Some(auth) = bearer {
        let Some(token) = auth
            .strip_prefix("Bearer ")
            .or_else(|| auth.strip_prefix("bearer "))
        else {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the Authorization header must be `Bearer <token>`",
            )
            .into_response();
        };
        match state.access().principal_for_token(token.trim()).await {
            Ok(principal) => Caller {
                principal,
                client,
                ip,
                via: Via::Token,
            },
            Err(e) => {
                // Refusals are audited, at most 30 a minute per address: a flood of bad tokens
                // is refused without filling the log.
                let key = format!("token:{}", ip.map(|i| i.to_string()).unwrap_or_default());
                if let Err(wait) = state.login_limiter().hit(&key, 30, Duration::from_secs(60)) {
                    return too_many(
                        format!("too many refused tokens from this address; try again in {wait} s"),
                        wait,
                    );
                }
                let mut event = AuditEvent::new("public", "auth.token", &path);
                event.client = client.clone();
                event.outcome = Some(Outcome::Denied);
                event.detail = serde_json::json!({"reason": e.to_string()}).to_string();
                state.audit(event).await;
                return ApiError::from(e).into_response();
            }
        }
    } else if let Some(session) = cookie(req.headers(), SESSION_COOKIE).map(str::to_string) {
        match state.access().session(&session).await {
            Ok(Some((user, csrf_hash))) => {
                // The CKAN Action API only reads public data: no CSRF to check there.
                let read_only = path.starts_with("/api/3/") || path.starts_with("/api/action/");
                if !is_safe(req.method()) && path != "/auth/login" && !read_only {
                    let sent = req
                        .headers()
                        .get(CSRF_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    if !reservoir_access::Access::csrf_matches(&csrf_hash, sent) {
                        return forbidden(format!(
                            "missing or wrong CSRF token: send the {CSRF_COOKIE} cookie's value \
                             in the {CSRF_HEADER} header"
                        ))
                        .into_response();
                    }
                }
                if user.must_change && !path.starts_with("/auth/") {
                    return ApiError::new(
                        StatusCode::FORBIDDEN,
                        "password_change_required",
                        "set a new password first (POST /api/v1/auth/password)",
                    )
                    .into_response();
                }
                Caller {
                    principal: Principal::of(&user),
                    client,
                    ip,
                    via: Via::Session,
                }
            }
            Ok(None) => Caller {
                principal: Principal::public(),
                client,
                ip,
                via: Via::Public,
            },
            Err(e) => return ApiError::from(e).into_response(),
        }
    } else {
        Caller {
            principal: Principal::public(),
            client,
            ip,
            via: Via::Public,
        }
    };
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// Attempts per client address within a window: logins, and queries under a grant's rate.
#[derive(Debug, Default)]
pub struct RateLimiter {
    hits: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl RateLimiter {
    /// Records a hit for `key`; `Err(seconds to wait)` if `max` hits already fell in `window`.
    pub fn hit(&self, key: &str, max: usize, window: Duration) -> Result<(), u64> {
        let now = Instant::now();
        let mut hits = self.hits.lock().unwrap_or_else(|p| p.into_inner());
        if hits.len() > 10_000 {
            hits.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
        }
        let q = hits.entry(key.to_string()).or_default();
        while q.front().is_some_and(|t| now.duration_since(*t) >= window) {
            q.pop_front();
        }
        if q.len() >= max {
            let oldest = q.front().copied().unwrap_or(now);
            let wait = window.saturating_sub(now.duration_since(oldest));
            return Err(wait.as_secs().max(1));
        }
        q.push_back(now);
        Ok(())
    }

    /// Whether `key` is under `max` hits in `window`, without recording one.
    pub fn check(&self, key: &str, max: usize, window: Duration) -> Result<(), u64> {
        let now = Instant::now();
        let hits = self.hits.lock().unwrap_or_else(|p| p.into_inner());
        let Some(q) = hits.get(key) else {
            return Ok(());
        };
        let recent: Vec<&Instant> = q
            .iter()
            .filter(|t| now.duration_since(**t) < window)
            .collect();
        if recent.len() >= max {
            let oldest = recent.first().map_or(now, |t| **t);
            let wait = window.saturating_sub(now.duration_since(oldest));
            return Err(wait.as_secs().max(1));
        }
        Ok(())
    }
}

/// 429 with Retry-After.
pub fn too_many(message: String, retry_after: u64) -> Response {
    let mut resp =
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", message).into_response();
    if let Ok(v) = header::HeaderValue::from_str(&retry_after.to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}
