//! The platform's HTTP server: web console, REST API, health and metrics.
//!
//! ```text
//!  browser ─► /            console (zh-CN / English), static assets embedded in the binary
//!  client  ─► /api/v1/…    REST API (OpenAPI document at /api/v1/openapi.json)
//!  probes  ─► /healthz, /metrics (Prometheus)
//!                 │
//!                 ▼
//!            authenticate (session cookie + CSRF, or API token) → Caller
//!                 ▼
//!            AppState: catalog, access (accounts, grants, audit), lake, collector, limits
//! ```
//!
//! Build a router with [`app`], run it with [`serve`]. Handlers see the catalog and the query
//! engine only through their crates' APIs; every error leaves as `{"code", "message"}`. Every
//! handler checks its caller ([`auth::Caller`]); data leaves only through the policy engine of
//! the caller's grants, and every access is audited.

mod api;
pub mod auth;
mod console;
mod error;
mod metrics;
pub mod open;
pub mod pg;
mod sharing;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use reservoir_access::Access;
use reservoir_access::mask::MaskKey;
use reservoir_catalog::Catalog;
use reservoir_ingest::Collector;
use reservoir_lake::Lake;
use tower_http::trace::TraceLayer;

pub use api::ApiDoc;
pub use error::{ApiError, ApiResult, ErrorBody};

/// Limits and settings of the server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub bind: SocketAddr,
    /// Largest accepted upload, in bytes.
    pub max_upload_bytes: usize,
    /// Most rows a SQL query returns through the API.
    pub query_row_limit: usize,
    /// Longest a SQL query may run.
    pub query_timeout: Duration,
    /// Storage capacity reported next to usage; 0 = the disk's size.
    pub capacity_bytes: u64,
    /// Where uploads are staged before collection (default: the system's temp folder).
    pub upload_dir: Option<PathBuf>,
    /// The home's source definitions, editable through the API (none: not offered).
    pub sources_dir: Option<PathBuf>,
    /// The home's quality rules (`<unit>/<dataset>.yaml`), editable through the API.
    pub rules_dir: Option<PathBuf>,
    /// Collection settings for uploads.
    pub infer_rows: usize,
    pub batch_rows: usize,
    /// Mark session cookies Secure (sent over HTTPS only; browsers also send them to
    /// http://localhost). Turn off only for plain HTTP on a trusted network.
    pub secure_cookies: bool,
    /// The licence of open data (an IRI).
    pub open_license: String,
    /// The administrative division the data covers: GB/T 2260 code and name.
    pub open_region: Option<(String, String)>,
    /// Who runs the platform and publishes the open catalog (DCAT's catalog publisher).
    pub open_publisher: String,
    /// Memory the public's queries over open data (CKAN's datastore API, downloads) hold
    /// together, apart from everyone else's.
    pub open_query_memory: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_upload_bytes: 512 << 20,
            query_row_limit: 10_000,
            query_timeout: Duration::from_secs(60),
            capacity_bytes: 0,
            upload_dir: None,
            sources_dir: None,
            rules_dir: None,
            infer_rows: 10_000,
            batch_rows: 32_768,
            secure_cookies: true,
            open_license: reservoir_catalog::dcat::DEFAULT_LICENSE.into(),
            open_region: None,
            open_publisher: "公共数据开放平台".into(),
            open_query_memory: 256 << 20,
        }
    }
}

/// Shared state of all handlers. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    lake: Lake,
    catalog: Catalog,
    access: Access,
    mask_key: Option<Arc<MaskKey>>,
    collector: Collector,
    config: ServerConfig,
    metrics: metrics::Metrics,
    login_limiter: auth::RateLimiter,
    grant_limiter: auth::RateLimiter,
    open_limiter: auth::RateLimiter,
    /// The memory pool of the public's queries over open data.
    open_env: Arc<datafusion::execution::runtime_env::RuntimeEnv>,
    /// One lock per grant, held while its Delta Sharing snapshot is checked and made again, so
    /// concurrent first requests make it once instead of racing to commit.
    share_locks: std::sync::Mutex<HashMap<i64, Arc<tokio::sync::Mutex<()>>>>,
}

impl AppState {
    pub fn new(lake: Lake, catalog: Catalog, config: ServerConfig) -> Self {
        let collector = Collector::new(lake.clone(), catalog.clone());
        let open_env = reservoir_query::executor::memory_limited(config.open_query_memory);
        Self(Arc::new(Inner {
            access: Access::new(catalog.clone()),
            mask_key: None,
            lake,
            catalog,
            collector,
            config,
            metrics: metrics::Metrics::new(),
            login_limiter: auth::RateLimiter::default(),
            grant_limiter: auth::RateLimiter::default(),
            open_limiter: auth::RateLimiter::default(),
            open_env,
            share_locks: Default::default(),
        }))
    }

    /// Keys the audit chain (see `Access::with_audit_key`).
    pub fn with_audit_key(self, key: Arc<MaskKey>) -> Self {
        match Arc::try_unwrap(self.0) {
            Ok(mut inner) => {
                inner.access = inner.access.clone().with_audit_key(key);
                Self(Arc::new(inner))
            }
            Err(shared) => Self(shared),
        }
    }

    /// Computes keyed-hash masks with `key` (without one they redact).
    pub fn with_mask_key(self, key: Arc<MaskKey>) -> Self {
        match Arc::try_unwrap(self.0) {
            Ok(mut inner) => {
                inner.mask_key = Some(key);
                Self(Arc::new(inner))
            }
            Err(shared) => Self(shared),
        }
    }

    pub fn access(&self) -> &Access {
        &self.0.access
    }

    pub(crate) fn mask_key(&self) -> Option<Arc<MaskKey>> {
        self.0.mask_key.clone()
    }

    pub(crate) fn login_limiter(&self) -> &auth::RateLimiter {
        &self.0.login_limiter
    }

    pub(crate) fn grant_limiter(&self) -> &auth::RateLimiter {
        &self.0.grant_limiter
    }

    pub(crate) fn open_limiter(&self) -> &auth::RateLimiter {
        &self.0.open_limiter
    }

    /// The lock that serializes making `grant`'s shared snapshot (see `Inner::share_locks`).
    pub(crate) fn share_lock(&self, grant: i64) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .0
            .share_locks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Drop the locks nobody holds or waits on, so the map stays as small as the traffic.
        locks.retain(|_, lock| Arc::strong_count(lock) > 1);
        locks.entry(grant).or_default().clone()
    }

    /// A session for the public's queries over open snapshots, on their own memory pool.
    pub(crate) fn open_context(&self) -> datafusion::prelude::SessionContext {
        datafusion::prelude::SessionContext::new_with_state(
            reservoir_query::executor::session_state(
                datafusion::prelude::SessionConfig::new(),
                self.0.open_env.clone(),
            ),
        )
    }

    /// Appends to the audit log; a failure is logged loudly (the request itself went through).
    pub(crate) async fn audit(&self, mut event: reservoir_access::AuditEvent) {
        event.detail = redact_error_values(&event.detail);
        if let Err(e) = self.0.access.audit(event).await {
            tracing::error!("could not write an audit entry: {e}");
        }
    }

    /// A query session that sees what `caller` may see.
    pub(crate) async fn engine_for(
        &self,
        caller: &auth::Caller,
    ) -> ApiResult<(reservoir_query::QueryEngine, reservoir_access::Visibility)> {
        let visibility = self.0.access.visibility(&caller.principal).await?;
        let engine = reservoir_query::QueryEngine::for_visibility(
            &self.0.lake,
            &self.0.catalog,
            &visibility,
            self.mask_key(),
        )
        .await?;
        Ok((engine, visibility))
    }

    /// Signs a delivery receipt for every upload that commits rows.
    pub fn with_platform_key(self, key: Arc<reservoir_ingest::receipt::PlatformKey>) -> Self {
        match Arc::try_unwrap(self.0) {
            Ok(mut inner) => {
                let plain = Collector::new(inner.lake.clone(), inner.catalog.clone());
                inner.collector =
                    std::mem::replace(&mut inner.collector, plain).with_platform_key(key);
                Self(Arc::new(inner))
            }
            Err(shared) => Self(shared),
        }
    }

    pub fn catalog(&self) -> &Catalog {
        &self.0.catalog
    }

    pub fn lake(&self) -> &Lake {
        &self.0.lake
    }

    pub fn config(&self) -> &ServerConfig {
        &self.0.config
    }

    pub(crate) fn collector(&self) -> &Collector {
        &self.0.collector
    }

    fn metrics(&self) -> &metrics::Metrics {
        &self.0.metrics
    }
}

/// The whole application.
pub fn app(state: AppState) -> Router {
    Router::new()
        .nest(
            "/api/v1",
            api::router(&state).layer(axum::middleware::from_fn_with_state(
                state.clone(),
                auth::authenticate,
            )),
        )
        // CKAN's Action API, at the two paths CKAN answers it (ckanapi uses the second).
        .route(
            "/api/3/action/{action}",
            axum::routing::get(open::action).post(open::action).layer(
                axum::middleware::from_fn_with_state(state.clone(), auth::authenticate),
            ),
        )
        .route(
            "/api/action/{action}",
            axum::routing::get(open::action).post(open::action).layer(
                axum::middleware::from_fn_with_state(state.clone(), auth::authenticate),
            ),
        )
        .route(
            "/open/download/{file}",
            axum::routing::get(open::download).layer(axum::middleware::from_fn_with_state(
                state.clone(),
                auth::authenticate,
            )),
        )
        .route(
            "/catalog.jsonld",
            axum::routing::get(
                |axum::extract::State(s): axum::extract::State<AppState>,
                 h: axum::http::HeaderMap| async move {
                    open::dcat(&s, &h, Some(open::RdfSyntax::JsonLd)).await
                },
            ),
        )
        .route(
            "/catalog.ttl",
            axum::routing::get(
                |axum::extract::State(s): axum::extract::State<AppState>,
                 h: axum::http::HeaderMap| async move {
                    open::dcat(&s, &h, Some(open::RdfSyntax::Turtle)).await
                },
            ),
        )
        .route(
            "/catalog",
            axum::routing::get(
                |axum::extract::State(s): axum::extract::State<AppState>,
                 h: axum::http::HeaderMap| async move { open::dcat(&s, &h, None).await },
            ),
        )
        .nest("/delta-sharing", sharing_router(&state))
        .merge(console::router())
        .route("/healthz", axum::routing::get(healthz))
        .route("/metrics", axum::routing::get(metrics::render))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                let route = req
                    .extensions()
                    .get::<axum::extract::MatchedPath>()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_default();
                tracing::info_span!("http", method = %req.method(), uri = %req.uri(), route)
            }),
        )
        .with_state(state)
}

/// The Delta Sharing protocol's routes; every one but the signed file URLs needs a bearer token.
fn sharing_router(state: &AppState) -> Router<AppState> {
    use axum::routing::{get, post};
    let auth = axum::middleware::from_fn_with_state(state.clone(), auth::authenticate);
    Router::new()
        .route("/shares", get(sharing::list_shares))
        .route("/shares/{share}", get(sharing::get_share))
        .route("/shares/{share}/schemas", get(sharing::list_schemas))
        .route("/shares/{share}/all-tables", get(sharing::list_all_tables))
        .route(
            "/shares/{share}/schemas/{schema}/tables",
            get(sharing::list_tables),
        )
        .route(
            "/shares/{share}/schemas/{schema}/tables/{table}/version",
            get(sharing::table_version),
        )
        .route(
            "/shares/{share}/schemas/{schema}/tables/{table}/metadata",
            get(sharing::table_metadata),
        )
        .route(
            "/shares/{share}/schemas/{schema}/tables/{table}/query",
            post(sharing::query_table),
        )
        .route(
            "/shares/{share}/schemas/{schema}/tables/{table}/changes",
            get(sharing::table_changes),
        )
        .layer(auth)
        .route("/files/{grant}/{version}/{file}", get(sharing::file))
}

/// Serves `app` on `listener` until `shutdown` resolves, then finishes open requests.
pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        app(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

async fn healthz(axum::extract::State(state): axum::extract::State<AppState>) -> impl IntoResponse {
    match state.catalog().ping().await {
        Ok(()) => (
            StatusCode::OK,
            axum::Json(serde_json::json!({"status": "ok"})),
        ),
        Err(e) => {
            tracing::error!("health check: catalog unreachable: {e}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({"status": "unavailable", "catalog": "unreachable"})),
            )
        }
    }
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no such page or endpoint: {}", uri.path()))
}

/// `Json` with errors in the API's format.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub(crate) struct ApiJson<T>(pub T);

/// `Query` with errors in the API's format.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub(crate) struct ApiQuery<T>(pub T);

/// `Multipart` with errors in the API's format.
pub(crate) struct ApiMultipart(pub axum::extract::Multipart);

impl<S: Send + Sync> FromRequest<S> for ApiMultipart {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            axum::extract::Multipart::from_request(req, state).await?,
        ))
    }
}

/// `Path` with errors in the API's format.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub(crate) struct ApiPath<T>(pub T);

/// An audited error keeps its words but not the data they may carry: a failed cast or parse
/// names the offending value (`Cannot cast string '186 25 STREET' …`, `Can't cast value
/// 310117001 …`, `regex parse error: 岳阳街道(`), which is the data of a table the auditor may
/// not read. Text the statement itself contains (a table name, a literal the caller typed)
/// stays; so do plain ASCII words. Other quoted text, and words with digits or other scripts,
/// become `…`. `detail` is the event's JSON; only its `error` is touched.
fn redact_error_values(detail: &str) -> String {
    if !detail.contains("\"error\"") {
        return detail.to_string();
    }
    let Ok(serde_json::Value::Object(mut map)) = serde_json::from_str::<serde_json::Value>(detail)
    else {
        return detail.to_string();
    };
    let Some(serde_json::Value::String(error)) = map.get("error") else {
        return detail.to_string();
    };
    let sql = map.get("sql").and_then(|v| v.as_str()).unwrap_or_default();
    let redacted = redact_values(error, sql);
    map.insert("error".into(), serde_json::Value::String(redacted));
    serde_json::Value::Object(map).to_string()
}

/// `error` with the values in it replaced by `…` (see [`redact_error_values`]).
fn redact_values(error: &str, sql: &str) -> String {
    let kept = |text: &str| text.is_empty() || sql.contains(text);
    let mut out = String::with_capacity(error.len());
    let mut rest = error;
    while let Some(c) = rest.chars().next() {
        if c.is_whitespace() {
            out.push(c);
            rest = &rest[c.len_utf8()..];
            continue;
        }
        // A quote that opens a word opens a quoted value (an apostrophe inside a word, as in
        // "Can't", does not).
        if (c == '\'' || c == '"')
            && let Some(close) = rest[1..].find(c)
        {
            let inner = &rest[1..=close];
            out.push(c);
            out.push_str(if kept(inner) { inner } else { "…" });
            out.push(c);
            rest = &rest[close + 2..];
            continue;
        }
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let word = &rest[..end];
        let core = word.trim_matches(|ch: char| ch.is_ascii_punctuation());
        let plain = core
            .chars()
            .all(|ch| ch.is_ascii_alphabetic() || matches!(ch, '_' | '-' | '.' | '\''));
        if plain || kept(core) {
            out.push_str(word);
        } else {
            let at = word.find(core).unwrap_or(0);
            out.push_str(&word[..at]);
            out.push('…');
            out.push_str(&word[at + core.len()..]);
        }
        rest = &rest[end..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::redact_error_values;

    #[test]
    fn audited_errors_keep_no_data_values() {
        let sql = "SELECT cast(\"Incident Address\" AS int), arrow_cast(code, 'Int16') \
                   FROM chengyun.hotline_cases WHERE x = 'mine'";
        for (error, expected) in [
            (
                "Arrow error: Cast error: Cannot cast string '186 25 STREET' to value of Int32 type; near 'mine' in table 'chengyun.hotline_cases'",
                "Arrow error: Cast error: Cannot cast string '…' to value of … type; near 'mine' in table 'chengyun.hotline_cases'",
            ),
            (
                "Invalid input syntax for type interval: \"岳阳街道\"",
                "Invalid input syntax for type interval: \"…\"",
            ),
            ("regex parse error: 岳阳街道(", "regex parse error: …("),
            (
                "Can't cast value 310117001 to value of type Int16",
                "Can't cast value … to value of type Int16",
            ),
            (
                "310117001 is too large to store in a Decimal128 of precision 3",
                "… is too large to store in a … of precision …",
            ),
        ] {
            let detail = serde_json::json!({"sql": sql, "error": error}).to_string();
            let out: serde_json::Value =
                serde_json::from_str(&redact_error_values(&detail)).unwrap();
            assert_eq!(out["error"], expected);
            assert_eq!(out["sql"], sql);
        }
        // Without an error, the detail is kept as it is.
        let plain = r#"{"sql":"SELECT '186 25 STREET'"}"#;
        assert_eq!(redact_error_values(plain), plain);
    }
}
