//! Declarative source definitions: one TOML file per source, reviewable in version control.
//!
//! ```toml
//! unit = "minzheng"
//! unit_name = "区民政局"
//! dataset = "villages"
//! title = "松江区村居委会"
//! kind = "file"
//! mode = "overwrite"
//! paths = ["data/songjiang_villages.csv"]   # relative to this file
//! update_frequency = "yearly"
//! sensitivity = 1
//! open_tier = "open"
//!
//! [format]
//! encoding = "utf-8"
//!
//! [columns.code]
//! type = "utf8"
//! title = "村居代码"
//! ```
//!
//! A unit's database table (`kind = "postgres"` or `"mysql"`/`"mariadb"`):
//!
//! ```toml
//! unit = "gongan"
//! dataset = "residents"
//! kind = "postgres"
//!
//! [database]
//! url = "postgres://reader@10.1.2.3:5432/hukou"   # no password here
//! password_env = "GONGAN_DB_PASSWORD"             # or url_env = "GONGAN_DB_URL"
//! table = "public.residents"
//! mode = "upsert"                                 # full, incremental or upsert
//! key = ["id"]
//! cursor = "updated_at"
//! detect_deletes = true
//! lookback = "15m"                                # upsert: re-read rows changed late
//! ```
//!
//! Secrets never sit in a definition: a URL with a password in it is refused, and the password
//! (or the whole URL) is read from the environment variable the definition names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use reservoir_catalog::{OpenTier, UpdateFrequency};
use reservoir_lake::WriteMode;
use serde::{Deserialize, Serialize};

use crate::Collector;
use crate::collect::{CollectRequest, ColumnSpec, DatasetInfo, RunReport};
use crate::csv::CsvOptions;
use crate::db::{DatabaseSource, DbKind, Lookback, SyncMode, SyncRequest};
use crate::decode::encoding_for_label;
use crate::excel::ExcelOptions;
use crate::folder::{FolderReport, FolderRequest, FolderSource};
use crate::http::{HttpRequest, HttpSource, Pagination};
use crate::nats::{NatsRequest, NatsSource};
use crate::reader::Format;
use crate::value::ColumnType;
use crate::{Error, Result};

/// A source definition as written in `sources/<name>.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceDef {
    pub unit: String,
    #[serde(default)]
    pub unit_name: Option<String>,
    #[serde(default)]
    pub system: Option<String>,
    #[serde(default)]
    pub system_name: Option<String>,
    pub dataset: String,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default = "default_kind")]
    pub kind: String,
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub paths: Vec<PathBuf>,
    #[serde(default)]
    pub update_frequency: Option<UpdateFrequency>,
    #[serde(default)]
    pub sensitivity: Option<i64>,
    #[serde(default)]
    pub open_tier: Option<OpenTier>,
    /// When `reservoir serve` collects it: a cron expression (`0 2 * * *`, `*/15 * * * *`,
    /// with an optional leading seconds field), in the scheduler's time zone.
    #[serde(default)]
    pub schedule: Option<String>,
    /// Further attempts after a failed scheduled run (default 2).
    #[serde(default)]
    pub retries: Option<u32>,
    /// Seconds before the first retry, doubling after each (default 30).
    #[serde(default)]
    pub retry_backoff_secs: Option<u64>,
    #[serde(default)]
    pub format: FormatDef,
    #[serde(default)]
    pub columns: BTreeMap<String, ColumnDef>,
    /// The table to sync, for database kinds.
    #[serde(default)]
    pub database: Option<DatabaseDef>,
    /// The stream to follow, for `kind = "nats"`.
    #[serde(default)]
    pub nats: Option<NatsDef>,
    /// The endpoint to page through, for `kind = "http"`.
    #[serde(default)]
    pub http: Option<HttpDef>,
    /// The folder units drop files into, for `kind = "folder"`.
    #[serde(default)]
    pub folder: Option<FolderDef>,
}

/// A drop folder: every file that appears in it is loaded once (known by its content hash).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FolderDef {
    /// The folder, relative to the definition's folder unless absolute.
    pub path: PathBuf,
    /// File-name pattern, e.g. `*.csv`.
    #[serde(default)]
    pub pattern: Option<String>,
    /// Seconds a file must be left unchanged before it is loaded (default 5).
    #[serde(default)]
    pub settle_secs: Option<u64>,
}

/// An HTTP JSON API whose records become rows.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpDef {
    pub url: String,
    /// Dot path to the array of records in each response (`data.list`); default: the response.
    #[serde(default)]
    pub records: String,
    /// Headers that are not secret (e.g. `Accept`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A header whose value is secret (default `Authorization`) …
    #[serde(default)]
    pub auth_header: Option<String>,
    /// … read from this environment variable (e.g. holding `Bearer eyJ…`).
    #[serde(default)]
    pub auth_env: Option<String>,
    /// none (default), page, offset or cursor.
    #[serde(default)]
    pub pagination: Option<String>,
    #[serde(default)]
    pub page_param: Option<String>,
    #[serde(default)]
    pub size_param: Option<String>,
    #[serde(default)]
    pub page_size: Option<usize>,
    #[serde(default)]
    pub start_page: Option<usize>,
    #[serde(default)]
    pub offset_param: Option<String>,
    #[serde(default)]
    pub limit_param: Option<String>,
    #[serde(default)]
    pub cursor_param: Option<String>,
    /// Dot path to the next cursor in each response (`meta.next_cursor`).
    #[serde(default)]
    pub next_cursor: Option<String>,
    #[serde(default)]
    pub max_pages: Option<usize>,
    #[serde(default)]
    pub timeout_secs: Option<u64>,
}

/// A NATS JetStream stream whose messages (JSON objects) become rows.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsDef {
    /// Server URL, e.g. `nats://127.0.0.1:4222` (no credentials here).
    #[serde(default)]
    pub url: Option<String>,
    /// Environment variable holding the server URL with its credentials (instead of `url`).
    #[serde(default)]
    pub url_env: Option<String>,
    pub stream: String,
    #[serde(default)]
    pub subject: Option<String>,
    /// Messages per micro-batch (default 10 000).
    #[serde(default)]
    pub batch_rows: Option<usize>,
    /// Milliseconds to wait for a micro-batch to fill (default 1 000).
    #[serde(default)]
    pub max_wait_ms: Option<u64>,
    #[serde(default)]
    pub max_batches: Option<usize>,
}

/// Where a database source's rows come from and how they are kept in sync.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseDef {
    /// Connection URL without a password.
    #[serde(default)]
    pub url: Option<String>,
    /// Environment variable holding the whole connection URL (instead of `url`).
    #[serde(default)]
    pub url_env: Option<String>,
    /// Environment variable holding the password for `url`.
    #[serde(default)]
    pub password_env: Option<String>,
    /// `table` or `schema.table`.
    pub table: String,
    /// full (default), incremental or upsert.
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub key: Vec<String>,
    #[serde(default)]
    pub cursor: Option<String>,
    #[serde(default)]
    pub batch_rows: Option<usize>,
    #[serde(default)]
    pub max_batches: Option<usize>,
    #[serde(default)]
    pub detect_deletes: bool,
    /// Upsert mode: start each run this far before the committed cursor — a time span
    /// (`"15m"`) for a date or time cursor, a number for a numeric one.
    #[serde(default)]
    pub lookback: Option<LookbackDef>,
}

/// A lookback as written: `"15m"` or `500`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LookbackDef {
    Amount(u64),
    Span(String),
}

/// What a definition asks to collect.
#[derive(Debug, Clone)]
pub enum SourceRequest {
    Files(CollectRequest),
    Database(SyncRequest),
    Nats(NatsRequest),
    Http(HttpRequest),
    Folder(FolderRequest),
}

/// Rows per batch of a database sync when the definition does not say.
pub const DEFAULT_DB_BATCH_ROWS: usize = 50_000;

fn default_kind() -> String {
    "file".into()
}

/// How to read the files.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormatDef {
    #[serde(default, rename = "type")]
    pub kind: Option<Format>,
    #[serde(default)]
    pub encoding: Option<String>,
    #[serde(default)]
    pub delimiter: Option<String>,
    #[serde(default)]
    pub quote: Option<String>,
    #[serde(default)]
    pub header: Option<bool>,
    #[serde(default)]
    pub skip_lines: Option<usize>,
    #[serde(default)]
    pub footer_lines: Option<usize>,
    #[serde(default)]
    pub sheet: Option<String>,
    #[serde(default)]
    pub header_row: Option<usize>,
}

/// Declared type and description of one column.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnDef {
    #[serde(default, rename = "type")]
    pub ty: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

/// Parses a one-character option such as a delimiter (`","`, `"\t"`, `"tab"`).
pub fn parse_byte_option(what: &str, s: &str) -> Result<u8> {
    let s = match s {
        "tab" | "\\t" => "\t",
        "pipe" => "|",
        "comma" => ",",
        "semicolon" => ";",
        other => other,
    };
    let bytes = s.as_bytes();
    if bytes.len() == 1 {
        Ok(bytes[0])
    } else {
        Err(Error::Invalid(format!(
            "{what} must be a single ASCII character (or tab, pipe, comma, semicolon), got {s:?}"
        )))
    }
}

impl SourceDef {
    /// Reads and checks a definition file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| Error::Source {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    fn info(&self) -> DatasetInfo {
        DatasetInfo {
            unit_name: self.unit_name.clone(),
            system: self.system.clone(),
            system_name: self.system_name.clone(),
            title: self.title.clone(),
            description: self.description.clone(),
            update_frequency: self.update_frequency,
            sensitivity: self.sensitivity,
            open_tier: self.open_tier,
        }
    }

    /// Turns the definition into what to collect: files (relative paths resolved against
    /// `base`, the folder holding the definition) or a database table. Secrets named by the
    /// definition are looked up with `env`.
    pub fn to_source_request(
        &self,
        origin: &Path,
        base: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<SourceRequest> {
        if let Some(expr) = &self.schedule {
            croner::Cron::from_str(expr).map_err(|e| Error::Source {
                path: origin.to_path_buf(),
                message: format!(
                    "schedule {expr:?} is not a cron expression ({e}); expected e.g. \"0 2 * * *\" \
                     (02:00 every day) or \"*/15 * * * *\" (every 15 minutes)"
                ),
            })?;
        }
        match self.kind.as_str() {
            "file" => Ok(SourceRequest::Files(self.to_request(origin, base)?)),
            "postgres" | "postgresql" => self.database_request(origin, DbKind::Postgres, env),
            "mysql" | "mariadb" => self.database_request(origin, DbKind::MySql, env),
            "nats" => self.nats_request(origin, env),
            "http" => self.http_request(origin, env),
            "folder" => {
                let def = self.folder.as_ref().ok_or_else(|| Error::Source {
                    path: origin.to_path_buf(),
                    message: "kind = \"folder\" needs a [folder] section with path".into(),
                })?;
                let mut template = self.file_request(origin, base, true)?;
                template.system_kind = "folder".into();
                Ok(SourceRequest::Folder(FolderRequest {
                    source: FolderSource {
                        path: base.join(&def.path),
                        pattern: def.pattern.clone(),
                        settle: std::time::Duration::from_secs(def.settle_secs.unwrap_or(5)),
                    },
                    template,
                }))
            }
            other => Err(Error::Source {
                path: origin.to_path_buf(),
                message: format!(
                    "kind {other:?} is not supported; expected file, folder, postgres, mysql, mariadb, nats or http"
                ),
            }),
        }
    }

    fn nats_request(
        &self,
        origin: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<SourceRequest> {
        let bad = |message: String| Error::Source {
            path: origin.to_path_buf(),
            message,
        };
        let def = self.nats.as_ref().ok_or_else(|| {
            bad("kind = \"nats\" needs a [nats] section with url and stream".into())
        })?;
        if !self.paths.is_empty() || self.mode.is_some() || self.database.is_some() {
            return Err(bad(
                "paths, mode and [database] do not apply to a NATS source".into(),
            ));
        }
        let url = match connection_url("nats", &def.url, &def.url_env, env, &bad)? {
            ConnectionUrl::FromEnv(url) => url,
            ConnectionUrl::Written(text, parsed) => {
                if parsed.password().is_some() || !parsed.username().is_empty() {
                    return Err(bad(
                        "[nats].url contains credentials; put the URL in an environment variable \
                         and name it with url_env"
                            .into(),
                    ));
                }
                text
            }
        };
        let columns = self.column_specs(&bad)?;
        Ok(SourceRequest::Nats(NatsRequest {
            unit: self.unit.clone(),
            dataset: self.dataset.clone(),
            source: NatsSource {
                url,
                stream: def.stream.clone(),
                subject: def.subject.clone(),
                batch_rows: def.batch_rows.unwrap_or(10_000),
                max_wait: std::time::Duration::from_millis(def.max_wait_ms.unwrap_or(1_000)),
                max_batches: def.max_batches,
            },
            columns,
            info: self.info(),
            source_label: format!("source {}", origin.display()),
            profile: true,
        }))
    }

    fn http_request(
        &self,
        origin: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<SourceRequest> {
        let bad = |message: String| Error::Source {
            path: origin.to_path_buf(),
            message,
        };
        let def = self
            .http
            .as_ref()
            .ok_or_else(|| bad("kind = \"http\" needs an [http] section with url".into()))?;
        if !self.paths.is_empty() || self.database.is_some() || self.nats.is_some() {
            return Err(bad(
                "paths, [database] and [nats] do not apply to an HTTP source".into(),
            ));
        }
        let parsed = url::Url::parse(&def.url)
            .map_err(|e| bad(format!("[http].url {:?} is not a URL: {e}", def.url)))?;
        if parsed.password().is_some() {
            return Err(bad(
                "[http].url contains a password; send credentials in a header with auth_env".into(),
            ));
        }
        let mut headers: Vec<(String, String)> = def
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (k, _) in &headers {
            let lower = k.to_ascii_lowercase();
            if lower == "authorization" || lower.contains("token") || lower.contains("key") {
                return Err(bad(format!(
                    "[http].headers.{k} looks secret; name it with auth_header and put its value \
                     in the environment variable auth_env names"
                )));
            }
        }
        match (&def.auth_header, &def.auth_env) {
            (_, Some(var)) => {
                let value = env(var).ok_or_else(|| {
                    bad(format!(
                        "[http].auth_env names {var:?}, which is not set in the environment"
                    ))
                })?;
                headers.push((
                    def.auth_header
                        .clone()
                        .unwrap_or_else(|| "Authorization".into()),
                    value,
                ));
            }
            (Some(_), None) => {
                return Err(bad(
                    "[http].auth_header needs auth_env, the variable holding its value".into(),
                ));
            }
            (None, None) => {}
        }
        let pagination = match def.pagination.as_deref().unwrap_or("none") {
            "none" => Pagination::None,
            "page" => Pagination::Page {
                param: def.page_param.clone().unwrap_or_else(|| "page".into()),
                size_param: Some(def.size_param.clone().unwrap_or_else(|| "size".into())),
                size: def.page_size.unwrap_or(100),
                start: def.start_page.unwrap_or(1),
            },
            "offset" => Pagination::Offset {
                param: def.offset_param.clone().unwrap_or_else(|| "offset".into()),
                limit_param: def.limit_param.clone().unwrap_or_else(|| "limit".into()),
                limit: def.page_size.unwrap_or(100),
            },
            "cursor" => Pagination::Cursor {
                param: def.cursor_param.clone().unwrap_or_else(|| "cursor".into()),
                next: def.next_cursor.clone().ok_or_else(|| {
                    bad("pagination = \"cursor\" needs next_cursor, the path of the next cursor in a response".into())
                })?,
            },
            other => {
                return Err(bad(format!(
                    "[http].pagination {other:?}; expected none, page, offset or cursor"
                )));
            }
        };
        if matches!(
            &pagination,
            Pagination::Page { size: 0, .. } | Pagination::Offset { limit: 0, .. }
        ) {
            return Err(bad("[http].page_size must be positive".into()));
        }
        let mode = match self.mode.as_deref() {
            None | Some("overwrite") => WriteMode::Overwrite,
            Some("append") => WriteMode::Append,
            Some(other) => {
                return Err(bad(format!("mode {other:?}; expected overwrite or append")));
            }
        };
        Ok(SourceRequest::Http(HttpRequest {
            unit: self.unit.clone(),
            dataset: self.dataset.clone(),
            source: HttpSource {
                url: def.url.clone(),
                headers,
                records: def.records.clone(),
                pagination,
                max_pages: def.max_pages.unwrap_or(100_000),
                timeout: std::time::Duration::from_secs(def.timeout_secs.unwrap_or(60)),
                attempts: 4,
            },
            mode,
            columns: self.column_specs(&bad)?,
            info: self.info(),
            source_label: format!("source {}", origin.display()),
            infer_rows: 10_000,
            batch_rows: 32_768,
        }))
    }

    fn column_specs(&self, bad: &dyn Fn(String) -> Error) -> Result<Vec<ColumnSpec>> {
        let mut columns = Vec::new();
        for (name, def) in &self.columns {
            let ty = match &def.ty {
                Some(t) => Some(
                    t.parse::<ColumnType>()
                        .map_err(|e| bad(format!("column {name:?}: {e}")))?,
                ),
                None => None,
            };
            columns.push(ColumnSpec {
                name: name.clone(),
                ty,
                title: def.title.clone().unwrap_or_default(),
                description: def.description.clone().unwrap_or_default(),
            });
        }
        Ok(columns)
    }

    fn database_request(
        &self,
        origin: &Path,
        kind: DbKind,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<SourceRequest> {
        let bad = |message: String| Error::Source {
            path: origin.to_path_buf(),
            message,
        };
        let db = self.database.as_ref().ok_or_else(|| {
            bad(format!(
                "kind = {:?} needs a [database] section with url (or url_env) and table",
                self.kind
            ))
        })?;
        if !self.paths.is_empty() || self.mode.is_some() {
            return Err(bad(
                "paths and mode are for files; a database source sets [database].table and \
                 [database].mode (full, incremental or upsert)"
                    .into(),
            ));
        }
        let url = match connection_url("database", &db.url, &db.url_env, env, &bad)? {
            ConnectionUrl::FromEnv(url) => url,
            ConnectionUrl::Written(text, mut parsed) => {
                let password_param = parsed
                    .query_pairs()
                    .any(|(k, _)| k.to_ascii_lowercase().contains("password"));
                if parsed.password().is_some() || password_param {
                    return Err(bad(
                        "[database].url contains a password; passwords are never kept in source \
                         files: name an environment variable with password_env (or put the whole \
                         URL in one and use url_env)"
                            .into(),
                    ));
                }
                if let Some(var) = &db.password_env {
                    let password = env(var).ok_or_else(|| {
                        bad(format!(
                            "[database].password_env names {var:?}, which is not set in the environment"
                        ))
                    })?;
                    parsed
                        .set_password(Some(&password))
                        .map_err(|()| bad(format!("{text:?} cannot carry a password")))?;
                }
                parsed.to_string()
            }
        };
        if db.url_env.is_some() && db.password_env.is_some() {
            return Err(bad(
                "[database].password_env goes with url; with url_env the URL holds the password"
                    .into(),
            ));
        }
        match DbKind::from_url(&url) {
            Some(k) if k == kind => {}
            _ => {
                return Err(bad(format!(
                    "kind = {:?} but the URL is {}; expected a {}:// URL",
                    self.kind,
                    crate::db::redact_url(&url),
                    kind.as_str()
                )));
            }
        }
        let mode = match db.mode.as_deref() {
            None => SyncMode::Full,
            Some(m) => m
                .parse::<SyncMode>()
                .map_err(|e| bad(format!("[database].mode: {e}")))?,
        };
        let lookback = match &db.lookback {
            None => None,
            Some(LookbackDef::Amount(n)) => Some(Lookback::Amount(*n)),
            Some(LookbackDef::Span(t)) => {
                Some(Lookback::parse(t).map_err(|e| bad(format!("[database].lookback: {e}")))?)
            }
        };
        if lookback.is_some() && mode != SyncMode::Upsert {
            return Err(bad(
                "[database].lookback is for mode = \"upsert\": re-read rows are merged by key, \
                 where another mode would load them twice"
                    .into(),
            ));
        }
        if db.detect_deletes && mode == SyncMode::Full {
            return Err(bad(
                "detect_deletes is for incremental and upsert modes; a full sync replaces the table"
                    .into(),
            ));
        }
        let mut columns = Vec::new();
        for (name, def) in &self.columns {
            if def.ty.is_some() {
                return Err(bad(format!(
                    "column {name:?}: types of database columns come from the database; \
                     remove `type`"
                )));
            }
            columns.push(ColumnSpec {
                name: name.clone(),
                ty: None,
                title: def.title.clone().unwrap_or_default(),
                description: def.description.clone().unwrap_or_default(),
            });
        }
        Ok(SourceRequest::Database(SyncRequest {
            unit: self.unit.clone(),
            dataset: self.dataset.clone(),
            source: DatabaseSource {
                kind,
                url,
                table: db.table.clone(),
                mode,
                key: db.key.clone(),
                cursor: db.cursor.clone(),
                batch_rows: db.batch_rows.unwrap_or(DEFAULT_DB_BATCH_ROWS),
                max_batches: db.max_batches,
                detect_deletes: db.detect_deletes,
                lookback,
            },
            columns,
            info: self.info(),
            source_label: format!("source {}", origin.display()),
            profile: true,
        }))
    }

    /// Turns a file definition into a collection request; relative paths are resolved against
    /// `base` (the folder holding the definition).
    pub fn to_request(&self, origin: &Path, base: &Path) -> Result<CollectRequest> {
        if self.kind != "file" {
            return Err(Error::Source {
                path: origin.to_path_buf(),
                message: format!(
                    "kind {:?} is not a file source; collect it with `reservoir collect`",
                    self.kind
                ),
            });
        }
        self.file_request(origin, base, false)
    }

    /// The file pipeline's request; for a folder (`folder`), without files yet.
    fn file_request(&self, origin: &Path, base: &Path, folder: bool) -> Result<CollectRequest> {
        let bad = |message: String| Error::Source {
            path: origin.to_path_buf(),
            message,
        };
        if self.database.is_some() || self.nats.is_some() || self.http.is_some() {
            return Err(bad(
                "[database], [nats] and [http] are for those kinds of source, not files".into(),
            ));
        }
        if folder && !self.paths.is_empty() {
            return Err(bad("a folder source takes [folder].path, not paths".into()));
        }
        if !folder && self.paths.is_empty() {
            return Err(bad("`paths` lists no files".into()));
        }
        let mode = match self.mode.as_deref() {
            None | Some("append") => WriteMode::Append,
            Some("overwrite") => WriteMode::Overwrite,
            Some(other) => {
                return Err(bad(format!("mode {other:?}; expected append or overwrite")));
            }
        };
        let mut csv = CsvOptions::default();
        if let Some(label) = &self.format.encoding {
            csv.encoding =
                Some(
                    encoding_for_label(label).ok_or_else(|| Error::UnknownEncoding {
                        path: origin.to_path_buf(),
                        label: label.clone(),
                    })?,
                );
        }
        if let Some(d) = &self.format.delimiter {
            csv.delimiter = Some(parse_byte_option("delimiter", d)?);
        }
        if let Some(q) = &self.format.quote {
            csv.quote = parse_byte_option("quote", q)?;
        }
        if let Some(h) = self.format.header {
            csv.header = h;
        }
        csv.skip_lines = self.format.skip_lines;
        csv.footer_lines = self.format.footer_lines;
        let excel = ExcelOptions {
            sheet: self.format.sheet.clone(),
            header_row: self.format.header_row,
            no_header: self.format.header == Some(false),
        };
        let columns = self.column_specs(&bad)?;
        Ok(CollectRequest {
            unit: self.unit.clone(),
            dataset: self.dataset.clone(),
            files: self.paths.iter().map(|p| base.join(p)).collect(),
            mode,
            format: self.format.kind,
            csv,
            excel,
            columns,
            info: self.info(),
            source_label: format!("source {}", origin.display()),
            ..CollectRequest::default()
        })
    }
}

/// What running a source did: one run, or (a drop folder) one run per new file.
#[derive(Debug, Clone)]
pub enum SourceOutcome {
    Run(Box<RunReport>),
    Folder(FolderReport),
}

impl SourceOutcome {
    /// The runs, in order.
    pub fn runs(&self) -> Vec<&RunReport> {
        match self {
            Self::Run(r) => vec![r.as_ref()],
            Self::Folder(f) => f.loaded.iter().collect(),
        }
    }

    /// Whether something in it failed without failing the whole (a file in a folder).
    pub fn partly_failed(&self) -> bool {
        matches!(self, Self::Folder(f) if !f.failed.is_empty())
    }
}

impl SourceRequest {
    /// Sets the type-inference sample and batch sizes of the kinds that read files or records
    /// (files, drop folders, HTTP APIs); databases and streams take theirs from the definition.
    pub fn set_sizes(&mut self, infer_rows: usize, batch_rows: usize) {
        match self {
            Self::Files(f) => {
                f.infer_rows = infer_rows;
                f.batch_rows = batch_rows;
            }
            Self::Folder(f) => {
                f.template.infer_rows = infer_rows;
                f.template.batch_rows = batch_rows;
            }
            Self::Http(h) => {
                h.infer_rows = infer_rows;
                h.batch_rows = batch_rows;
            }
            Self::Database(_) | Self::Nats(_) => {}
        }
    }

    /// How the catalog describes where it comes from (e.g. `source sources/hukou.toml`).
    pub fn origin(&self) -> Option<&str> {
        let label = match self {
            Self::Files(r) => &r.source_label,
            Self::Database(r) => &r.source_label,
            Self::Nats(r) => &r.source_label,
            Self::Http(r) => &r.source_label,
            Self::Folder(r) => &r.template.source_label,
        };
        (!label.is_empty()).then_some(label.as_str())
    }

    /// `raw.<unit>.<dataset>` of the table it loads.
    pub fn table(&self) -> String {
        let (u, d) = match self {
            Self::Files(r) => (&r.unit, &r.dataset),
            Self::Database(r) => (&r.unit, &r.dataset),
            Self::Nats(r) => (&r.unit, &r.dataset),
            Self::Http(r) => (&r.unit, &r.dataset),
            Self::Folder(r) => (&r.template.unit, &r.template.dataset),
        };
        format!("raw.{u}.{d}")
    }
}

impl Collector {
    /// Runs a source once, whatever its kind.
    pub async fn run_source(
        &self,
        req: SourceRequest,
        progress: std::sync::Arc<dyn crate::Progress>,
    ) -> Result<SourceOutcome> {
        Ok(match req {
            SourceRequest::Files(r) => {
                SourceOutcome::Run(Box::new(self.collect(r, progress).await?))
            }
            SourceRequest::Database(r) => {
                SourceOutcome::Run(Box::new(self.sync_database(r, progress).await?))
            }
            SourceRequest::Nats(r) => {
                SourceOutcome::Run(Box::new(self.sync_nats(r, progress).await?))
            }
            SourceRequest::Http(r) => {
                SourceOutcome::Run(Box::new(self.collect_http(r, progress).await?))
            }
            SourceRequest::Folder(r) => {
                SourceOutcome::Folder(self.collect_folder(r, progress).await?)
            }
        })
    }
}

/// A connection URL as a definition gives it.
enum ConnectionUrl {
    /// Written in the definition (text and parsed), to be checked for credentials.
    Written(String, url::Url),
    /// Read from the environment variable `url_env`, where credentials may be.
    FromEnv(String),
}

/// Resolves `[section].url` / `[section].url_env`: exactly one of them.
fn connection_url(
    section: &str,
    url: &Option<String>,
    url_env: &Option<String>,
    env: &dyn Fn(&str) -> Option<String>,
    bad: &dyn Fn(String) -> Error,
) -> Result<ConnectionUrl> {
    match (url, url_env) {
        (Some(_), Some(_)) => Err(bad(format!(
            "[{section}] sets both url and url_env; keep one"
        ))),
        (None, None) => Err(bad(format!("[{section}] needs url or url_env"))),
        (None, Some(var)) => env(var).map(ConnectionUrl::FromEnv).ok_or_else(|| {
            bad(format!(
                "[{section}].url_env names {var:?}, which is not set in the environment"
            ))
        }),
        (Some(text), None) => url::Url::parse(text)
            .map(|parsed| ConnectionUrl::Written(text.clone(), parsed))
            .map_err(|e| bad(format!("[{section}].url {text:?} is not a URL: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_definition() {
        let def: SourceDef = toml::from_str(
            r#"
            unit = "tongji"
            dataset = "gdp"
            mode = "overwrite"
            paths = ["gdp.csv"]
            update_frequency = "yearly"
            open_tier = "open"
            [format]
            encoding = "gbk"
            skip_lines = 3
            [columns."地区"]
            type = "utf8"
            title = "省份"
            "#,
        )
        .unwrap();
        let req = def
            .to_request(Path::new("sources/gdp.toml"), Path::new("/data"))
            .unwrap();
        assert_eq!(req.files, vec![PathBuf::from("/data/gdp.csv")]);
        assert_eq!(req.mode, WriteMode::Overwrite);
        assert_eq!(req.csv.encoding, Some(encoding_rs::GBK));
        assert_eq!(req.csv.skip_lines, Some(3));
        assert_eq!(req.columns[0].ty, Some(ColumnType::Utf8));
        assert_eq!(req.info.open_tier, Some(OpenTier::Open));
    }

    #[test]
    fn database_sources_take_secrets_from_the_environment() {
        let text = r#"
            unit = "gongan"
            dataset = "residents"
            kind = "postgres"
            [database]
            url = "postgres://reader@db.example:5432/hukou"
            password_env = "HUKOU_PW"
            table = "public.residents"
            mode = "upsert"
            key = ["id"]
            cursor = "updated_at"
            detect_deletes = true
            [columns.name]
            title = "姓名"
        "#;
        let def: SourceDef = toml::from_str(text).unwrap();
        let env = |v: &str| (v == "HUKOU_PW").then(|| "p@ss/word".to_string());
        let SourceRequest::Database(req) = def
            .to_source_request(Path::new("s.toml"), Path::new("."), &env)
            .unwrap()
        else {
            panic!("expected a database request");
        };
        assert_eq!(req.source.kind, DbKind::Postgres);
        assert_eq!(req.source.mode, SyncMode::Upsert);
        assert!(req.source.detect_deletes);
        assert_eq!(req.source.batch_rows, DEFAULT_DB_BATCH_ROWS);
        let parsed = url::Url::parse(&req.source.url).unwrap();
        assert_eq!(parsed.password(), Some("p%40ss%2Fword"));
        assert_eq!(req.columns[0].title, "姓名");
        assert!(!format!("{req:?}").contains("ss%2F"));

        let missing = def
            .to_source_request(Path::new("s.toml"), Path::new("."), &|_| None)
            .unwrap_err()
            .to_string();
        assert!(
            missing.contains(r#"names "HUKOU_PW", which is not set"#),
            "{missing}"
        );

        let plain = text.replace("reader@", "reader:secret@");
        let def: SourceDef = toml::from_str(&plain).unwrap();
        let err = def
            .to_source_request(Path::new("s.toml"), Path::new("."), &env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("contains a password"), "{err}");
        assert!(!err.contains("secret"), "{err}");

        let query = text.replace("hukou\"\n", "hukou?password=x\"\n");
        let def: SourceDef = toml::from_str(&query).unwrap();
        let err = def
            .to_source_request(Path::new("s.toml"), Path::new("."), &env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("contains a password"), "{err}");

        let cron = format!("schedule = \"every day\"\n{text}");
        let def: SourceDef = toml::from_str(&cron).unwrap();
        let err = def
            .to_source_request(Path::new("s.toml"), Path::new("."), &env)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("s.toml") && err.contains("not a cron expression"),
            "{err}"
        );

        let wrong = text.replace("postgres://", "mysql://");
        let def: SourceDef = toml::from_str(&wrong).unwrap();
        let err = def
            .to_source_request(Path::new("s.toml"), Path::new("."), &env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected a postgres:// URL"), "{err}");
    }

    #[test]
    fn rejects_unknown_keys_and_kinds() {
        assert!(toml::from_str::<SourceDef>("unit='a'\ndataset='b'\npath='x'").is_err());
        let def: SourceDef =
            toml::from_str("unit='a'\ndataset='b'\nkind='kafka'\npaths=['x']").unwrap();
        let err = def
            .to_request(Path::new("s.toml"), Path::new("."))
            .unwrap_err();
        assert!(err.to_string().contains("kafka"));
    }
}
