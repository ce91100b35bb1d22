//! The PostgreSQL wire protocol: psql, DBeaver, Metabase, Superset and every PostgreSQL driver
//! reach the lake with an account's password or an API token, under the same grants, masks,
//! quotas, rate limits and audit as the REST API.
//!
//! ```text
//!  client ──► pgwire (framing, simple + extended protocol, TLS)
//!               │ startup: cleartext password (TLS recommended) → account password or rsv_ token
//!               ▼
//!            Connection (principal, cancel signal) ── per statement ──► Session
//!               │                                       visibility → QueryEngine::for_visibility
//!               │                                       + pg_catalog of the granted tables only
//!               ▼
//!            read-only check → plan → grants' rate limits and quotas → stream rows
//!               (row limit, statement timeout, cancel request) → audit with the SQL text, meter
//! ```
//!
//! Tables are `unit.dataset` (the raw layer; `layer.unit.dataset` for others), as over the REST
//! API. A table the principal has no grant on is not in its session: PostgreSQL's `relation
//! "…" does not exist`.

mod compat;
mod copy;

use std::collections::HashMap;
use std::fmt::Debug;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use async_trait::async_trait;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ParamValues;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::error::DataFusionError;
use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::sql::parser::Statement as DfStatementWrapper;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::arrow_pg::datatypes::df::deserialize_parameters;
use datafusion_postgres::arrow_pg::datatypes::{
    arrow_schema_to_pg_fields, encode_recordbatch, into_pg_type,
};
use datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use datafusion_postgres::hooks::QueryHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::pgwire;
use futures::{Sink, SinkExt, StreamExt};
use pgwire::api::auth::{
    DefaultServerParameterProvider, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::cancel::CancelHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, QueryResponse, Response, Tag};

use compat::{ClientRewrites, install_pg_catalog};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, METADATA_DATABASE, METADATA_USER, PgWireConnectionState,
    PgWireServerHandlers, PidSecretKeyGenerator, RandomPidSecretKeyGenerator, Type,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::startup::Authentication;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::types::format::FormatOptions;
use reservoir_access::{AuditEvent, Outcome, Principal, Visibility};
use tokio::sync::watch;

use crate::AppState;
use crate::api::query::{Touched, admit, touched_tables};
use crate::auth::{Caller, Via};
use crate::error::ApiError;

/// Binds a statement's parameters to the plan it has at execution.
type Bind<'a> = dyn Fn(&LogicalPlan) -> PgWireResult<ParamValues> + Sync + 'a;

/// The prepared form of a statement: its text, and its parsed statement and plan.
type Prepared = (String, Option<(Statement, LogicalPlan)>);

/// Settings of the PostgreSQL listener.
#[derive(Debug, Clone)]
pub struct PgConfig {
    pub bind: SocketAddr,
    /// PEM certificate chain and private key. When set, connections must use TLS: the
    /// password (PostgreSQL's cleartext password message) never crosses the network in clear.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Most rows one statement returns; past it the statement fails (add a LIMIT).
    pub row_limit: usize,
    /// Longest a statement may run (`SET statement_timeout` can only shorten it).
    pub timeout: Duration,
}

impl Default for PgConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 5433)),
            tls: None,
            row_limit: 1_000_000,
            timeout: Duration::from_secs(300),
        }
    }
}

/// Serves the PostgreSQL protocol on `listener` until `shutdown` resolves.
pub async fn serve(
    state: AppState,
    config: PgConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let tls = match &config.tls {
        Some((cert, key)) => Some(tls_acceptor(cert, key)?),
        None => None,
    };
    let handlers = Arc::new(Handlers::new(state, config));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            accepted = listener.accept() => {
                let (socket, addr) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!("PostgreSQL listener: accept failed: {e}");
                        continue;
                    }
                };
                let handlers = handlers.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    if let Err(e) = pgwire::tokio::process_socket(socket, tls, handlers).await {
                        tracing::debug!("PostgreSQL connection from {addr} ended: {e}");
                    }
                });
            }
        }
    }
}

/// Checks that the configured certificate and key load (so a bad path fails at start).
pub fn check_tls(config: &PgConfig) -> std::io::Result<()> {
    if let Some((cert, key)) = &config.tls {
        tls_acceptor(cert, key)?;
    }
    Ok(())
}

fn tls_acceptor(cert: &PathBuf, key: &PathBuf) -> std::io::Result<pgwire::tokio::TlsAcceptor> {
    use pgwire::tokio::tokio_rustls::rustls;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &PathBuf, e: &dyn std::fmt::Display| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{}: {e} (expected a PEM file)", what.display()),
        )
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(cert, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(cert, &e))?;
    if certs.is_empty() {
        return Err(bad(cert, &"no certificate in the file"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, &e))?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| bad(cert, &e))?;
    Ok(pgwire::tokio::TlsAcceptor::from(Arc::new(config)))
}

// ------------------------------------------------------------------------------ handlers

struct Handlers {
    startup: Arc<Startup>,
    service: Arc<Service>,
    cancel: Arc<Cancels>,
}

impl Handlers {
    fn new(state: AppState, config: PgConfig) -> Self {
        let cancels = Arc::new(Cancels::default());
        Self {
            startup: Arc::new(Startup {
                state: state.clone(),
                cancels: cancels.clone(),
                pids: RandomPidSecretKeyGenerator::default(),
                tls_required: config.tls.is_some(),
            }),
            service: Arc::new(Service {
                state: state.clone(),
                config,
                parser: Arc::new(Parser {
                    state: state.clone(),
                    sql: PostgresCompatibilityParser::new(),
                }),
                hooks: vec![Arc::new(SetShowHook), Arc::new(TransactionStatementHook)],
            }),
            cancel: cancels,
        }
    }
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.service.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.service.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.cancel.clone()
    }
}

/// One authenticated connection, kept in the connection's session extensions.
struct Connection {
    caller: Caller,
    /// Bumped by a cancel request; a running statement stops when it changes.
    cancel: watch::Receiver<u64>,
    session: tokio::sync::Mutex<Option<Arc<Session>>>,
    /// Unregisters the connection's cancel key when the connection ends.
    _registration: CancelRegistration,
}

/// What a principal sees, planned into a DataFusion session with its own `pg_catalog`.
struct Session {
    engine: reservoir_query::QueryEngine,
    visibility: Visibility,
    fingerprint: String,
}

fn connection<C: ClientInfo + ?Sized>(client: &C) -> PgWireResult<Arc<Connection>> {
    client
        .session_extensions()
        .get::<Connection>()
        .ok_or_else(|| error("28000", "the connection is not authenticated"))
}

// ------------------------------------------------------------------------------ cancellation

/// A connection's cancel secret and the signal its statements watch.
type CancelKey = (Vec<u8>, watch::Sender<u64>);

/// Cancel keys of the open connections, by process id.
#[derive(Default)]
struct Cancels {
    open: std::sync::Mutex<HashMap<i32, CancelKey>>,
}

struct CancelRegistration {
    pid: i32,
    cancels: Arc<Cancels>,
}

impl Drop for CancelRegistration {
    fn drop(&mut self) {
        if let Ok(mut open) = self.cancels.open.lock() {
            open.remove(&self.pid);
        }
    }
}

impl Cancels {
    fn register(
        self: &Arc<Self>,
        pid: i32,
        secret: Vec<u8>,
    ) -> (watch::Receiver<u64>, CancelRegistration) {
        let (tx, rx) = watch::channel(0);
        if let Ok(mut open) = self.open.lock() {
            open.insert(pid, (secret, tx));
        }
        (
            rx,
            CancelRegistration {
                pid,
                cancels: self.clone(),
            },
        )
    }
}

#[async_trait]
impl CancelHandler for Cancels {
    async fn on_cancel_request(&self, request: CancelRequest) {
        let Ok(open) = self.open.lock() else { return };
        match open.get(&request.pid) {
            // The secret must match: a cancel request comes on a connection of its own.
            Some((secret, tx)) if *secret == request.secret_key.to_bytes().to_vec() => {
                tx.send_modify(|n| *n += 1);
                tracing::info!(
                    pid = request.pid,
                    "PostgreSQL statement cancelled by its client"
                );
            }
            _ => tracing::info!(
                pid = request.pid,
                "cancel request with an unknown key ignored"
            ),
        }
    }
}

// ------------------------------------------------------------------------------ startup

struct Startup {
    state: AppState,
    cancels: Arc<Cancels>,
    pids: RandomPidSecretKeyGenerator,
    /// A certificate is configured: passwords and tokens are taken over TLS only.
    tls_required: bool,
}

/// The databases a connection may name: `raw`, the lake's raw layer that `pg_catalog`
/// describes, and `postgres`, the same tables, for tools that connect there first.
const DATABASES: &[&str] = &["raw", "postgres"];

fn parameters(login: &str) -> DefaultServerParameterProvider {
    let mut p = DefaultServerParameterProvider::default();
    // psql and drivers read the major version to pick their catalog queries.
    p.server_version = format!("16.6 (Reservoir {})", env!("CARGO_PKG_VERSION"));
    p.is_superuser = false;
    p.default_transaction_read_only = true;
    p.session_authorization = Some(login.to_string());
    p
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                if self.tls_required && !client.is_secure() {
                    // Before the password is asked for, so none crosses the network in clear.
                    return Err(error(
                        "28000",
                        "this server takes logins over TLS only: connect with sslmode=require",
                    ));
                }
                // The lake's tables are in database `raw` (`postgres` is there for tools that
                // connect to it first); another name is an error, as PostgreSQL's own.
                let database = startup
                    .parameters
                    .get(METADATA_DATABASE)
                    .or_else(|| startup.parameters.get(METADATA_USER));
                if let Some(db) = database
                    && !DATABASES.contains(&db.as_str())
                {
                    return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                        "FATAL".into(),
                        "3D000".into(),
                        format!(
                            "database \"{}\" does not exist: the lake's tables are in database \"raw\"",
                            db.chars().take(64).collect::<String>()
                        ),
                    ))));
                }
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                client
                    .send(PgWireBackendMessage::Authentication(
                        Authentication::CleartextPassword,
                    ))
                    .await?;
            }
            PgWireFrontendMessage::PasswordMessageFamily(pwd) => {
                let password = pwd.into_password()?.password;
                let login = client
                    .metadata()
                    .get(METADATA_USER)
                    .cloned()
                    .unwrap_or_default();
                let ip = client.socket_addr().ip();
                let program = client
                    .metadata()
                    .get("application_name")
                    .cloned()
                    .unwrap_or_default();
                let caller = self.login(&login, &password, ip, &program).await?;
                let (pid, secret) = self.pids.generate(&*client);
                client.set_pid_and_secret_key(pid, secret.clone());
                let (cancel, registration) = self.cancels.register(pid, secret.to_bytes().to_vec());
                client.session_extensions().insert(Connection {
                    caller,
                    cancel,
                    session: tokio::sync::Mutex::new(None),
                    _registration: registration,
                });
                finish_authentication(client, &parameters(&login)).await?;
            }
            _ => {}
        }
        Ok(())
    }
}

impl Startup {
    /// Checks a login: an API token (`rsv_…`) of the account named, or the account's password.
    /// Refusals are audited and count against the address's login attempts.
    async fn login(
        &self,
        login: &str,
        password: &str,
        ip: IpAddr,
        program: &str,
    ) -> PgWireResult<Caller> {
        let state = &self.state;
        let typed: String = login.chars().take(64).collect();
        let client = format!(
            "{ip} postgres{}",
            if program.is_empty() {
                String::new()
            } else {
                format!(" ({})", program.chars().take(64).collect::<String>())
            }
        );
        // Refused logins count against the address (BI tools open many connections that log
        // in fine; those do not).
        let failures = format!("pg-refused:{ip}");
        let (max, window) = (
            crate::api::auth::LOGIN_ATTEMPTS,
            crate::api::auth::LOGIN_WINDOW,
        );
        if let Err(wait) = state.login_limiter().check(&failures, max, window) {
            return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "FATAL".into(),
                "53300".into(),
                format!("too many refused logins from this address; try again in {wait} s"),
            ))));
        }
        let mut event = AuditEvent::new(&typed, "pg.login", &typed);
        event.client = client.clone();
        let result: Result<(Principal, Via), String> = async {
            if password.starts_with("rsv_") {
                let principal = state
                    .access()
                    .principal_for_token(password)
                    .await
                    .map_err(|e| e.to_string())?;
                if principal.user.as_deref() != Some(login) {
                    return Err(format!(
                        "the API token does not belong to {typed:?}: connect as its account"
                    ));
                }
                Ok((principal, Via::Token))
            } else {
                let user = state
                    .access()
                    .authenticate(login, password)
                    .await
                    .map_err(|e| e.to_string())?;
                if user.must_change {
                    return Err(
                        "this account must set a new password first: log in to the console".into(),
                    );
                }
                Ok((Principal::of(&user), Via::Session))
            }
        }
        .await;
        match result {
            Ok((principal, via)) => {
                state.audit(event).await;
                Ok(Caller {
                    principal,
                    client,
                    ip: Some(ip),
                    via,
                })
            }
            Err(reason) => {
                let _ = state.login_limiter().hit(&failures, max, window);
                event.outcome = Some(Outcome::Denied);
                event.detail = serde_json::json!({"reason": reason}).to_string();
                state.audit(event).await;
                crate::api::auth::alert_on_denials(state, &typed).await;
                Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                    "FATAL".into(),
                    "28P01".into(),
                    format!("password authentication failed for user \"{typed}\": {reason}"),
                ))))
            }
        }
    }
}

// ------------------------------------------------------------------------------ queries

struct Service {
    state: AppState,
    config: PgConfig,
    parser: Arc<Parser>,
    hooks: Vec<Arc<dyn QueryHook>>,
}

fn error(code: &str, message: &str) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        code.into(),
        message.into(),
    )))
}

/// A DataFusion error in PostgreSQL's words and SQLSTATE codes, where clients look for them.
fn df_error(e: &DataFusionError) -> PgWireError {
    let text = e.to_string();
    static TABLE: OnceLock<regex::Regex> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        regex::Regex::new(r"table '([^']+)' not found").unwrap_or_else(|_| unreachable!())
    });
    if let Some(c) = table.captures(&text) {
        let name = c[1].strip_prefix("raw.").unwrap_or(&c[1]);
        return error("42P01", &format!("relation \"{name}\" does not exist"));
    }
    if text.contains("No field named") {
        return error("42703", &text);
    }
    if let DataFusionError::ResourcesExhausted(m) = e.find_root() {
        return error("53400", m);
    }
    if text.contains("SQL error: ParserError") || text.contains("sql parser error") {
        return error("42601", &text);
    }
    error("XX000", &text)
}

/// `e`, or where it is a table that "does not exist" because its grant is withheld (its quota
/// used up, outside its hours), an error that says so: a table the caller was reading a moment
/// ago has not vanished, and its reason is the caller's to know.
async fn withheld(
    state: &AppState,
    visibility: &reservoir_access::Visibility,
    e: PgWireError,
) -> PgWireError {
    let PgWireError::UserError(info) = &e else {
        return e;
    };
    if info.code != "42P01" || visibility.withheld().is_empty() {
        return e;
    }
    let Some(name) = info
        .message
        .strip_prefix("relation \"")
        .and_then(|m| m.split('"').next())
    else {
        return e;
    };
    for w in visibility.withheld() {
        if let Ok(Some(d)) = state.catalog().dataset_by_id(w.dataset_id).await
            && format!("{}.{}", d.unit_id, d.name) == name
        {
            return error(
                "42501",
                &format!("relation \"{name}\" is withheld: {}", w.reason),
            );
        }
    }
    e
}

fn api_error(e: ApiError) -> PgWireError {
    let code = match e.code {
        "too_many_requests" => "53400",
        "forbidden" => "42501",
        "invalid_sql" => "42601",
        _ => "XX000",
    };
    error(code, &e.message)
}

fn query_error(e: reservoir_query::Error) -> PgWireError {
    match e {
        reservoir_query::Error::Execution(d) => df_error(&d),
        other => api_error(other.into()),
    }
}

/// Only queries: anything that would change the lake or the session's catalog is refused as
/// PostgreSQL refuses it in a read-only transaction.
fn check_read_only(statement: &Statement) -> PgWireResult<()> {
    reservoir_query::check_read_only_statement(statement).map_err(|e| match e {
        reservoir_query::Error::ReadOnly(head) => error(
            "25006",
            &format!(
                "cannot execute {head} in a read-only transaction: Reservoir's SQL is read-only"
            ),
        ),
        other => query_error(other),
    })
}

/// The connection's session, rebuilt when what its principal may see has changed (a grant
/// approved, revoked, expired, its quota drawn down).
async fn session(state: &AppState, conn: &Connection) -> PgWireResult<Arc<Session>> {
    // The account as it stands now: disabled, reset, demoted or its token revoked since the
    // login, the connection reads no more (or only what the new role sees).
    let principal = state
        .access()
        .principal_now(&conn.caller.principal)
        .await
        .map_err(|e| match e {
            reservoir_access::Error::Unauthorized(m) => {
                PgWireError::UserError(Box::new(ErrorInfo::new("FATAL".into(), "28000".into(), m)))
            }
            other => api_error(other.into()),
        })?;
    let visibility = state
        .access()
        .visibility(&principal)
        .await
        .map_err(|e| api_error(e.into()))?;
    let fingerprint = format!("{visibility:?}");
    let mut cached = conn.session.lock().await;
    if let Some(s) = cached.as_ref()
        && s.fingerprint == fingerprint
    {
        return Ok(s.clone());
    }
    let engine = reservoir_query::QueryEngine::for_visibility(
        state.lake(),
        state.catalog(),
        &visibility,
        state.mask_key(),
    )
    .await
    .map_err(query_error)?;
    install_pg_catalog(engine.context(), principal.name(), state.catalog())
        .await
        .map_err(|e| df_error(&e))?;
    let session = Arc::new(Session {
        engine,
        visibility,
        fingerprint,
    });
    *cached = Some(session.clone());
    Ok(session)
}

/// `schema` with the output columns the statement leaves unnamed named as PostgreSQL names
/// them (see [`compat::pg_column_names`]).
fn pg_named(
    statement: &Statement,
    schema: &arrow::datatypes::Schema,
) -> arrow::datatypes::SchemaRef {
    let Some(names) = compat::pg_column_names(statement, schema.fields().len()) else {
        return Arc::new(schema.clone());
    };
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .zip(names)
        .map(|(field, name)| match name {
            Some(name) => Arc::new(field.as_ref().clone().with_name(name)),
            None => field.clone(),
        })
        .collect();
    Arc::new(arrow::datatypes::Schema::new_with_metadata(
        fields,
        schema.metadata().clone(),
    ))
}

/// A statement planned, admitted and running: its columns and its guarded batches.
struct Started {
    fields: Arc<Vec<FieldInfo>>,
    schema: arrow::datatypes::SchemaRef,
    batches: futures::stream::BoxStream<'static, PgWireResult<RecordBatch>>,
}

impl Service {
    /// Runs one statement (already past the hooks) with `params` and answers its rows.
    async fn execute<C>(
        &self,
        client: &C,
        sql: &str,
        statement: &Statement,
        params: Option<&Bind<'_>>,
        format: &Format,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ?Sized,
    {
        let Started {
            fields, batches, ..
        } = self
            .start(client, sql, statement, params, format, None)
            .await?;
        let rows_fields = fields.clone();
        let rows = batches
            .map(move |b| {
                let rows: Box<dyn Iterator<Item = PgWireResult<_>> + Send + Sync> = match b {
                    Ok(batch) => encode_recordbatch(rows_fields.clone(), batch),
                    Err(e) => Box::new(std::iter::once(Err(e))),
                };
                futures::stream::iter(rows)
            })
            .flatten();
        Ok(Response::Query(QueryResponse::new(fields, rows)))
    }

    /// Runs a `COPY … TO STDOUT` (`statement`): sends the copy data itself, as it is read,
    /// and answers the `COPY n` tag.
    async fn copy<C>(
        &self,
        client: &mut C,
        sql: &str,
        statement: &Statement,
        params: Option<&Bind<'_>>,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (query, copy) = match copy::copy_out(statement) {
            Some(Ok(planned)) => planned,
            Some(Err(e)) => {
                let conn = connection(client)?;
                let mut event = conn.caller.event("pg.query", "");
                event.detail = serde_json::json!({"sql": sql}).to_string();
                self.refused(event, &e).await;
                return Err(e);
            }
            None => return Err(error("XX000", "not a COPY … TO STDOUT")),
        };
        let format = match copy.format {
            copy::CopyFormat::Binary => Format::UnifiedBinary,
            _ => Format::UnifiedText,
        };
        let started = self
            .start(&*client, sql, &query, params, &format, Some(&copy))
            .await?;
        let rows = copy
            .send(client, started.fields, started.schema, started.batches)
            .await?;
        Ok(Response::Execution(Tag::new("COPY").with_rows(rows)))
    }

    /// Plans `statement` with `params`, admits it under the grants and starts it, audited.
    /// `copy`: the statement is that COPY's query (its FORCE_QUOTE columns are checked first).
    async fn start<C>(
        &self,
        client: &C,
        sql: &str,
        statement: &Statement,
        params: Option<&Bind<'_>>,
        format: &Format,
        copy: Option<&copy::CopyOut>,
    ) -> PgWireResult<Started>
    where
        C: ClientInfo + ?Sized,
    {
        let conn = connection(client)?;
        let mut event = conn.caller.event("pg.query", "");
        event.detail = serde_json::json!({"sql": sql}).to_string();
        if let Err(e) = check_read_only(statement) {
            self.refused(event, &e).await;
            return Err(e);
        }
        let session = session(&self.state, &conn).await?;
        let started = Instant::now();
        let planned: PgWireResult<(LogicalPlan, Touched, usize)> = async {
            let ctx = session.engine.context();
            let mut plan = ctx
                .state()
                .statement_to_plan(DfStatementWrapper::Statement(Box::new(statement.clone())))
                .await
                .map_err(|e| df_error(&e))?;
            SQLOptions::new()
                .with_allow_ddl(false)
                .with_allow_dml(false)
                .with_allow_statements(false)
                .verify_plan(&plan)
                .map_err(|e| error("25006", &e.to_string()))?;
            if let Some(bind) = params {
                let values = bind(&plan)?;
                plan = plan
                    .replace_params_with_values(&values)
                    .map_err(|e| df_error(&e))?;
            }
            let touched = touched_tables(&self.state, &plan, &session.visibility)
                .await
                .map_err(api_error)?;
            let mut limit = self.config.row_limit;
            if let Some(left) =
                admit(&self.state, &touched, &session.visibility).map_err(api_error)?
            {
                limit = limit.min(left);
            }
            Ok((plan, touched, limit))
        }
        .await;
        let (plan, touched, limit) = match planned {
            Ok(p) => p,
            Err(e) => {
                let e = withheld(&self.state, &session.visibility, e).await;
                self.refused(event, &e).await;
                return Err(e);
            }
        };
        let df = match session.engine.context().execute_logical_plan(plan).await {
            Ok(df) => df,
            Err(e) => {
                let e = df_error(&e);
                self.refused(event, &e).await;
                return Err(e);
            }
        };
        let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
        let schema = pg_named(statement, df.schema().as_arrow());
        if let Some(Err(e)) = copy.map(|c| c.forced(&schema)) {
            self.refused(event, &e).await;
            return Err(e);
        }
        let fields = Arc::new(arrow_schema_to_pg_fields(&schema, format, Some(options))?);
        // Runs on the query runtime, so this connection's cancel requests and everyone else's
        // queries are served while it computes.
        let stream = reservoir_query::executor::execute(df);
        event.target = touched.names();
        event.grant_id = touched.tables.iter().find_map(|(_, _, g)| *g);
        event.columns = touched.columns();
        let timeout =
            statement_timeout(client).map_or(self.config.timeout, |t| t.min(self.config.timeout));
        let run = Run {
            state: self.state.clone(),
            session: session.clone(),
            caller: conn.caller.clone(),
            event: Some(event),
            touched,
            sql: sql.to_string(),
            rows: 0,
            bytes: 0,
            started,
            outcome: Outcome::Ok,
            error: None,
        };
        let batches = guarded(
            stream,
            run,
            limit,
            timeout,
            conn.cancel.clone(),
            self.config.row_limit,
        );
        Ok(Started {
            fields,
            schema,
            batches: batches.boxed(),
        })
    }

    async fn refused(&self, event: AuditEvent, e: &PgWireError) {
        refused(&self.state, event, e).await;
    }
}

/// Audits a statement that was refused or failed before it ran.
async fn refused(state: &AppState, mut event: AuditEvent, e: &PgWireError) {
    event.outcome = Some(match e {
        PgWireError::UserError(info) if info.code.starts_with("42") && info.code != "42501" => {
            Outcome::Error
        }
        _ => Outcome::Denied,
    });
    event.detail = serde_json::json!({
        "sql": serde_json::from_str::<serde_json::Value>(&event.detail).ok().and_then(|v| v.get("sql").cloned()),
        "error": e.to_string(),
    })
    .to_string();
    state.audit(event).await;
}

impl Service {
    async fn run_hooks<C>(
        &self,
        client: &mut C,
        statement: &Statement,
    ) -> Option<PgWireResult<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // Savepoints: drivers set them inside transactions (psycopg's nested transaction(),
        // which SQLAlchemy uses on connect). Nothing is written, so there is nothing to undo;
        // PostgreSQL allows them in a read-only transaction too.
        match statement {
            Statement::Savepoint { .. } => {
                return Some(Ok(Response::Execution(Tag::new("SAVEPOINT"))));
            }
            Statement::ReleaseSavepoint { .. } => {
                return Some(Ok(Response::Execution(Tag::new("RELEASE"))));
            }
            Statement::Rollback {
                savepoint: Some(_), ..
            } => return Some(Ok(Response::Execution(Tag::new("ROLLBACK")))),
            _ => {}
        }
        let conn = match connection(client) {
            Ok(c) => c,
            Err(e) => return Some(Err(e)),
        };
        let session = match session(&self.state, &conn).await {
            Ok(s) => s,
            Err(e) => return Some(Err(e)),
        };
        for hook in &self.hooks {
            if let Some(r) = hook
                .handle_simple_query(statement, session.engine.context(), client)
                .await
            {
                return Some(r);
            }
        }
        None
    }
}

fn statement_timeout<C: ClientInfo + ?Sized>(client: &C) -> Option<Duration> {
    client
        .metadata()
        .get("statement_timeout_ms")
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis)
}

/// The state of one running statement: audited and metered when it ends, however it ends.
struct Run {
    state: AppState,
    session: Arc<Session>,
    caller: Caller,
    event: Option<AuditEvent>,
    touched: Touched,
    sql: String,
    rows: usize,
    bytes: usize,
    started: Instant,
    outcome: Outcome,
    error: Option<String>,
}

impl Drop for Run {
    fn drop(&mut self) {
        let Some(mut event) = self.event.take() else {
            return;
        };
        let state = self.state.clone();
        // This statement's reads only: the session runs many.
        let rows_read = self.session.engine.take_rows_read();
        let tables: Vec<i64> = self.touched.tables.iter().map(|(d, _, _)| *d).collect();
        let who = self.caller.name().to_string();
        let (rows, bytes) = (self.rows as i64, self.bytes as i64);
        event.row_count = Some(rows);
        if self.outcome != Outcome::Ok {
            event.outcome = Some(self.outcome);
        }
        event.detail = serde_json::json!({
            "sql": self.sql,
            "error": self.error,
            "elapsed_ms": self.started.elapsed().as_millis() as u64,
            "rows_read": rows_read.iter().map(|(g, n)| serde_json::json!({"grant": g, "rows": n})).collect::<Vec<_>>(),
        })
        .to_string();
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        handle.spawn(async move {
            state.audit(event).await;
            for d in tables {
                if let Err(e) = state.access().meter(&who, d, rows, bytes).await {
                    tracing::error!("metering failed: {e}");
                }
            }
            // Quotas are charged with the rows read from the table, aggregates included.
            for (g, n) in rows_read {
                if let Err(e) = state.access().add_rows_served(g, n as i64).await {
                    tracing::error!("counting rows against grant {g} failed: {e}");
                }
            }
            crate::api::data::alert_on_volume(&state, &who, rows).await;
        });
    }
}

/// The statement's batches, stopped by a cancel request, the statement timeout or the row
/// limit, each with PostgreSQL's error for it.
fn guarded(
    inner: datafusion::execution::SendableRecordBatchStream,
    run: Run,
    limit: usize,
    timeout: Duration,
    cancel: watch::Receiver<u64>,
    row_limit: usize,
) -> impl futures::Stream<Item = PgWireResult<RecordBatch>> + Send {
    let deadline = tokio::time::Instant::now() + timeout;
    let seen = *cancel.borrow();
    futures::stream::unfold(
        (Some(inner), run, cancel),
        move |(inner, mut run, mut cancel)| async move {
            let mut inner = inner?;
            let fail = |run: &mut Run, outcome: Outcome, e: PgWireError| {
                run.outcome = outcome;
                run.error = Some(e.to_string());
                e
            };
            enum Stop {
                Cancelled,
                TimedOut,
            }
            let next = tokio::select! {
                b = inner.next() => Ok(b),
                _ = cancel.wait_for(|n| *n != seen) => Err(Stop::Cancelled),
                () = tokio::time::sleep_until(deadline) => Err(Stop::TimedOut),
            };
            let next = match next {
                Ok(b) => b,
                Err(Stop::Cancelled) => {
                    let e = fail(
                        &mut run,
                        Outcome::Error,
                        error("57014", "canceling statement due to user request"),
                    );
                    return Some((Err(e), (None, run, cancel)));
                }
                Err(Stop::TimedOut) => {
                    let e = fail(
                        &mut run,
                        Outcome::Error,
                        error(
                            "57014",
                            &format!(
                                "canceling statement due to statement timeout ({} s)",
                                timeout.as_secs_f32()
                            ),
                        ),
                    );
                    return Some((Err(e), (None, run, cancel)));
                }
            };
            match next {
                None => None,
                Some(Err(e)) => {
                    let e = fail(&mut run, Outcome::Error, df_error(&e));
                    Some((Err(e), (None, run, cancel)))
                }
                Some(Ok(batch)) => {
                    if run.rows + batch.num_rows() > limit {
                        let message = if limit < row_limit {
                            format!(
                                "the grant's quota leaves {limit} rows to read and this statement returns more; \
                                 narrow it or ask for a larger quota"
                            )
                        } else {
                            format!(
                                "the result has more than {limit} rows, the limit of one statement; \
                                 add a LIMIT, aggregate, or page with OFFSET"
                            )
                        };
                        let e = fail(&mut run, Outcome::Denied, error("54000", &message));
                        return Some((Err(e), (None, run, cancel)));
                    }
                    run.rows += batch.num_rows();
                    run.bytes += batch.get_array_memory_size();
                    Some((Ok(batch), (Some(inner), run, cancel)))
                }
            }
        },
    )
}

#[async_trait]
impl SimpleQueryHandler for Service {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statements = self.parser.parse(query)?;
        if statements.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        let alone = statements.len() == 1;
        let mut out = Vec::with_capacity(statements.len());
        for statement in statements {
            if let Some(r) = self.run_hooks(client, &statement).await {
                out.push(r?);
                continue;
            }
            let sql = statement.to_string();
            let response = if copy::copy_out(&statement).is_some() {
                // The copy data goes out as the statement runs, before the answers of any
                // statements before it would: one COPY to a query string.
                if !alone {
                    return Err(error(
                        "0A000",
                        "COPY … TO STDOUT must be the only statement of its query string",
                    ));
                }
                self.copy(client, &sql, &statement, None).await?
            } else {
                self.execute(client, &sql, &statement, None, &Format::UnifiedText)
                    .await?
            };
            out.push(response);
        }
        Ok(out)
    }
}

/// Plans statements for the extended protocol (Parse, Describe); execution plans them again
/// with the session of the moment, so a prepared statement never outlives a revoked grant.
struct Parser {
    state: AppState,
    sql: PostgresCompatibilityParser,
}

impl Parser {
    /// Parses with the compatibility rewrites, then [`ClientRewrites`]. Statements too long or
    /// nested too deep to plan are refused first, before any rewrite walks them.
    fn parse(&self, sql: &str) -> PgWireResult<Vec<Statement>> {
        use datafusion::sql::sqlparser::ast::VisitMut;
        use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
        if let Err(e) = reservoir_query::guard::parse(sql, &PostgreSqlDialect {}) {
            return Err(error("54001", &e.to_string()));
        }
        let mut statements = self
            .sql
            .parse(sql)
            .map_err(|e| error("42601", &e.to_string()))?;
        for statement in &mut statements {
            let _ = statement.visit(&mut ClientRewrites);
            if let Some(show) = compat::show_setting(statement) {
                *statement = show;
            }
        }
        Ok(statements)
    }
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let mut statements = self.parse(sql)?;
        if statements.is_empty() {
            return Ok(None);
        }
        if statements.len() > 1 {
            return Err(error(
                "42601",
                "cannot insert multiple commands into a prepared statement",
            ));
        }
        let statement = statements.remove(0);
        let text = statement.to_string();
        let conn = connection(client)?;
        let session = session(&self.state, &conn).await?;
        let ctx = session.engine.context().clone();
        // SET, SHOW, BEGIN and the like plan as statements; the hooks answer them at Execute. A
        // COPY describes no rows (its data comes as copy data) and plans its query at Execute.
        let nothing = || {
            datafusion::logical_expr::LogicalPlan::EmptyRelation(
                datafusion::logical_expr::EmptyRelation {
                    produce_one_row: false,
                    schema: Arc::new(datafusion::common::DFSchema::empty()),
                },
            )
        };
        let planned = if matches!(statement, Statement::Copy { .. }) {
            Ok(nothing())
        } else {
            ctx.state()
                .statement_to_plan(DfStatementWrapper::Statement(Box::new(statement.clone())))
                .await
        };
        let plan = match planned {
            Ok(p) => p,
            Err(_) if !matches!(statement, Statement::Query(_)) => nothing(),
            Err(e) => {
                let e = withheld(&self.state, &session.visibility, df_error(&e)).await;
                let mut event = conn.caller.event("pg.query", "");
                event.detail = serde_json::json!({"sql": text}).to_string();
                refused(&self.state, event, &e).await;
                return Err(e);
            }
        };
        Ok(Some((text, Some((statement, plan)))))
    }

    fn get_parameter_types(&self, stmt: &Prepared) -> PgWireResult<Vec<Type>> {
        match stmt {
            (_, Some((_, plan))) => parameter_types(plan)?
                .into_iter()
                .map(|t| match t {
                    Some(t) => into_pg_type(&t),
                    None => Ok(Type::UNKNOWN),
                })
                .collect(),
            _ => Ok(vec![]),
        }
    }

    fn get_result_schema(
        &self,
        stmt: &Prepared,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        match stmt {
            (_, Some((statement @ (Statement::Query(_) | Statement::Explain { .. }), plan))) => {
                arrow_schema_to_pg_fields(
                    &pg_named(statement, plan.schema().as_arrow()),
                    column_format.unwrap_or(&Format::UnifiedText),
                    None,
                )
            }
            _ => Ok(vec![]),
        }
    }
}

/// The types of a plan's `$1, $2, …` in order: as DataFusion infers them from the columns they
/// meet, else from a cast around them (`$1::int`).
fn parameter_types(plan: &LogicalPlan) -> PgWireResult<Vec<Option<DataType>>> {
    let mut types = plan.get_parameter_types().map_err(|e| df_error(&e))?;
    // A placeholder DataFusion could not type takes the type it is cast to (`$1::VARCHAR`, as
    // PostgreSQL infers it); subqueries are walked too.
    fn casts(plan: &LogicalPlan, types: &mut HashMap<String, Option<DataType>>) {
        let _ = plan.apply_with_subqueries(|node| {
            for expr in node.expressions() {
                let _ = expr.apply(|e| {
                    match e {
                        Expr::Cast(cast) => {
                            if let Expr::Placeholder(p) = cast.expr.as_ref() {
                                let t = types.entry(p.id.clone()).or_default();
                                if t.is_none() {
                                    *t = Some(cast.field.data_type().clone());
                                }
                            }
                        }
                        Expr::Placeholder(p) => {
                            types.entry(p.id.clone()).or_default();
                        }
                        _ => {}
                    }
                    Ok(TreeNodeRecursion::Continue)
                });
            }
            Ok(TreeNodeRecursion::Continue)
        });
    }
    casts(plan, &mut types);
    // Positional: `$n` is the n-th parameter the client sends, even when a rewrite left some
    // number out of the plan (its value is then read as text and not used).
    let mut by_number: HashMap<usize, Option<DataType>> = HashMap::new();
    for (id, t) in types {
        match id.trim_start_matches('$').parse::<usize>() {
            Ok(n) if n >= 1 => {
                by_number.insert(n, t);
            }
            _ => return Err(error("42P02", &format!("there is no parameter {id}"))),
        }
    }
    let count = by_number.keys().copied().max().unwrap_or(0);
    Ok((1..=count)
        .map(|n| by_number.remove(&n).flatten())
        .collect())
}

#[async_trait]
impl ExtendedQueryHandler for Service {
    type Statement = Prepared;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Prepared>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (sql, Some((statement, _))) = &portal.statement.statement else {
            return Ok(Response::EmptyQuery);
        };
        if !matches!(statement, Statement::Query(_) | Statement::Explain { .. }) {
            // SET, SHOW, BEGIN, COMMIT…: answered as over the simple protocol.
            if let Some(r) = self.run_hooks(client, statement).await {
                return r;
            }
        }
        let bind = |plan: &LogicalPlan| -> PgWireResult<ParamValues> {
            let types = parameter_types(plan)?;
            let refs: Vec<Option<&DataType>> = types.iter().map(Option::as_ref).collect();
            deserialize_parameters(portal, &refs)
        };
        if copy::copy_out(statement).is_some() {
            return self.copy(client, sql, statement, Some(&bind)).await;
        }
        self.execute(
            client,
            sql,
            statement,
            Some(&bind),
            &portal.result_column_format,
        )
        .await
    }
}
