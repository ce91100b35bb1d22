//! Configuration: defaults, then `reservoir.toml` in the home, then `RESERVOIR_*` environment
//! variables (`RESERVOIR_CATALOG__URL`, `RESERVOIR_LAKE__PATH`, …), then validated.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// The file that marks a folder as a Reservoir home.
pub const CONFIG_FILE: &str = "reservoir.toml";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub lake: LakeConfig,
    pub catalog: CatalogConfig,
    pub ingest: IngestConfig,
    pub server: ServerSection,
    pub scheduler: SchedulerConfig,
    pub open: OpenSection,
    pub postgres: PostgresSection,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenSection {
    /// The licence open datasets are published under (an IRI, shown in DCAT and the portal).
    pub license: String,
    /// The administrative division the platform's data covers: GB/T 2260 code and name.
    pub region_code: String,
    pub region_name: String,
    /// The organization that runs the platform and publishes its open catalog (DCAT's catalog
    /// publisher), e.g. 松江区大数据中心; empty: the region's name with 公共数据开放平台.
    pub publisher: String,
    /// Memory the public's queries over open data hold together, in MiB.
    pub query_memory_mb: usize,
}

impl OpenSection {
    /// `publisher`, else the region's 公共数据开放平台.
    pub fn publisher(&self) -> String {
        if !self.publisher.trim().is_empty() {
            self.publisher.trim().to_string()
        } else {
            format!("{}公共数据开放平台", self.region_name.trim())
        }
    }
}

impl Default for OpenSection {
    fn default() -> Self {
        Self {
            license: reservoir_catalog::dcat::DEFAULT_LICENSE.into(),
            region_code: String::new(),
            region_name: String::new(),
            publisher: String::new(),
            query_memory_mb: 256,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresSection {
    /// Whether `reservoir serve` also answers the PostgreSQL wire protocol.
    pub enabled: bool,
    /// Address it listens on.
    pub bind: String,
    /// TLS certificate and private key (PEM); both set turns TLS on.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

impl Default for PostgresSection {
    fn default() -> Self {
        Self {
            enabled: true,
            bind: "127.0.0.1:5433".into(),
            tls_cert: None,
            tls_key: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerConfig {
    /// Whether `reservoir serve` runs the sources that have a `schedule`.
    pub enabled: bool,
    /// Time zone the schedules are read in (IANA name).
    pub timezone: String,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            timezone: "Asia/Shanghai".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LakeConfig {
    /// Folder of the Delta tables, relative to the home or absolute.
    pub path: PathBuf,
    /// Storage capacity shown against usage; 0 means the size of the disk holding the lake.
    pub capacity_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CatalogConfig {
    /// `sqlite://catalog.db` (relative to the home) or `postgres://user@host/db`.
    pub url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Rows sampled to infer column types.
    pub infer_rows: usize,
    /// Rows per record batch written to the lake.
    pub batch_rows: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSection {
    /// Address the HTTP server listens on.
    pub bind: String,
    /// Largest accepted upload, in MiB.
    pub max_upload_mb: usize,
    /// Most rows a SQL query returns through the API.
    pub query_row_limit: usize,
    /// Longest a SQL query may run through the API, in seconds.
    pub query_timeout_secs: u64,
    /// Memory all queries of the process hold together, in MiB.
    pub query_memory_mb: usize,
    /// Mark login cookies Secure (HTTPS only; browsers make an exception for localhost).
    pub secure_cookies: bool,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            max_upload_mb: 512,
            query_row_limit: 10_000,
            query_timeout_secs: 60,
            query_memory_mb: 4096,
            secure_cookies: true,
        }
    }
}

impl Default for LakeConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("lake"),
            capacity_bytes: 0,
        }
    }
}

impl Default for CatalogConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://catalog.db".into(),
        }
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            infer_rows: 10_000,
            batch_rows: 32_768,
        }
    }
}

/// The commented configuration written by `reservoir init`; it is also the documentation.
pub const EXAMPLE: &str = r#"# Reservoir configuration.
#
# Values are read in layers: built-in defaults, then this file, then environment variables
# named RESERVOIR_<SECTION>__<KEY> (for example RESERVOIR_CATALOG__URL). Relative paths are
# relative to the folder holding this file (the home).

[lake]
# Folder holding the Delta tables (lake/<layer>/<unit>/<dataset>).
path = "lake"
# Storage capacity to report usage against, in bytes; 0 = the size of the disk.
capacity_bytes = 0

[catalog]
# The metadata store: a SQLite file in the home, or PostgreSQL for production, e.g.
# url = "postgres://reservoir@db.example/reservoir"
url = "sqlite://catalog.db"

[ingest]
# Rows sampled to infer column types; later rows that do not fit go to quarantine.
infer_rows = 10000
# Rows per record batch written to the lake.
batch_rows = 32768

[server]
# Address of the web console and REST API (reservoir serve, reservoir demo).
bind = "127.0.0.1:8080"
# Largest accepted upload, in MiB.
max_upload_mb = 512
# Most rows and longest time (seconds) of a SQL query through the API.
query_row_limit = 10000
query_timeout_secs = 60
# Memory all queries hold together, in MiB (the CLI's too). Sorts, aggregates and joins spill
# to the system's temporary folder past their share; a query that still needs more fails with
# "Resources exhausted" instead of taking the machine's memory.
query_memory_mb = 4096
# Login cookies are Secure: sent over HTTPS only (and to http://localhost). Set false only for
# plain HTTP on a trusted network.
secure_cookies = true

[open]
# The licence of open data (an IRI; DCAT and the portal show it).
license = "https://creativecommons.org/licenses/by/4.0/"
# The administrative division the data covers (GB/T 2260), e.g. region_code = "440604".
region_code = ""
region_name = ""
# Who runs the platform and publishes the open catalog, e.g. publisher = "松江区大数据中心".
publisher = ""
# Memory the public's queries (CKAN datastore API, downloads) hold together, in MiB.
query_memory_mb = 256

[postgres]
# reservoir serve also speaks the PostgreSQL wire protocol: psql, DBeaver, Metabase and
# Superset connect with an account's password or an API token, under the same grants.
enabled = true
bind = "127.0.0.1:5433"
# TLS: both a PEM certificate and its private key. With them set, logins are taken over TLS
# only (clients connect with sslmode=require).
# tls_cert = "tls/server.crt"
# tls_key = "tls/server.key"

[scheduler]
# reservoir serve collects every source in sources/ that has a `schedule` (cron, e.g.
# schedule = "0 2 * * *"), retries failures, and raises alerts for failed and late sources.
enabled = true
# Time zone the schedules are read in.
timezone = "Asia/Shanghai"
"#;

impl Config {
    /// Loads the configuration of the home at `home`.
    pub fn load(home: &Path) -> Result<Self> {
        let file = home.join(CONFIG_FILE);
        let config: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::file(&file))
            .merge(
                // Only SECTION__KEY variables configure; others that share the prefix
                // (RESERVOIR_HOME, RESERVOIR_LOG, the tests' server URLs) are not settings.
                Env::prefixed("RESERVOIR_")
                    .filter(|k| k.as_str().contains("__"))
                    .split("__"),
            )
            .extract()
            .with_context(|| format!("reading configuration {}", file.display()))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        if self.server.bind.parse::<std::net::SocketAddr>().is_err() {
            bail!(
                "server.bind {:?} is not an address like 127.0.0.1:8080",
                self.server.bind
            );
        }
        if self.scheduler.timezone.parse::<chrono_tz::Tz>().is_err() {
            bail!(
                "scheduler.timezone {:?} is not an IANA time zone like Asia/Shanghai",
                self.scheduler.timezone
            );
        }
        if self.postgres.bind.parse::<std::net::SocketAddr>().is_err() {
            bail!(
                "postgres.bind {:?} is not an address like 127.0.0.1:5433",
                self.postgres.bind
            );
        }
        if self.postgres.tls_cert.is_some() != self.postgres.tls_key.is_some() {
            bail!("postgres.tls_cert and postgres.tls_key go together: set both or neither");
        }
        if self.open.region_code.is_empty() != self.open.region_name.is_empty() {
            bail!("open.region_code and open.region_name go together: set both or neither");
        }
        if url::Url::parse(&self.open.license).is_err() {
            bail!(
                "open.license {:?} is not an IRI like https://creativecommons.org/licenses/by/4.0/",
                self.open.license
            );
        }
        if self.ingest.infer_rows == 0 || self.ingest.batch_rows == 0 {
            bail!("ingest.infer_rows and ingest.batch_rows must be positive");
        }
        let url = &self.catalog.url;
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            bail!("catalog.url {url:?} must start with sqlite:// or postgres://");
        }
        Ok(())
    }

    /// Settings for the HTTP server.
    pub fn server_config(&self) -> Result<reservoir_server::ServerConfig> {
        Ok(reservoir_server::ServerConfig {
            bind: self
                .server
                .bind
                .parse()
                .with_context(|| format!("server.bind {:?}", self.server.bind))?,
            max_upload_bytes: self.server.max_upload_mb << 20,
            query_row_limit: self.server.query_row_limit,
            query_timeout: std::time::Duration::from_secs(self.server.query_timeout_secs),
            capacity_bytes: self.lake.capacity_bytes,
            upload_dir: None,
            sources_dir: None,
            rules_dir: None,
            infer_rows: self.ingest.infer_rows,
            batch_rows: self.ingest.batch_rows,
            secure_cookies: self.server.secure_cookies,
            open_license: self.open.license.clone(),
            open_region: (!self.open.region_code.is_empty())
                .then(|| (self.open.region_code.clone(), self.open.region_name.clone())),
            open_publisher: self.open.publisher(),
            open_query_memory: self.open.query_memory_mb << 20,
        })
    }

    /// Settings for the PostgreSQL listener (`None` when it is off); TLS paths resolve against
    /// the home.
    pub fn postgres_config(&self, home: &Path) -> Result<Option<reservoir_server::pg::PgConfig>> {
        if !self.postgres.enabled {
            return Ok(None);
        }
        let bind = self
            .postgres
            .bind
            .parse()
            .with_context(|| format!("postgres.bind {:?}", self.postgres.bind))?;
        let tls = match (&self.postgres.tls_cert, &self.postgres.tls_key) {
            (Some(c), Some(k)) => Some((home.join(c), home.join(k))),
            _ => None,
        };
        Ok(Some(reservoir_server::pg::PgConfig {
            bind,
            tls,
            timeout: std::time::Duration::from_secs(self.server.query_timeout_secs),
            ..Default::default()
        }))
    }

    /// The lake folder, resolved against the home.
    pub fn lake_path(&self, home: &Path) -> PathBuf {
        home.join(&self.lake.path)
    }

    /// The catalog URL, with a relative SQLite path resolved against the home.
    pub fn catalog_url(&self, home: &Path) -> String {
        let url = &self.catalog.url;
        if let Some(rest) = url.strip_prefix("sqlite://") {
            let (path, query) = match rest.split_once('?') {
                Some((p, q)) => (p, Some(q)),
                None => (rest, None),
            };
            if path != ":memory:" && !Path::new(path).is_absolute() {
                let full = home.join(path);
                return match query {
                    Some(q) => format!("sqlite://{}?{q}", full.display()),
                    None => format!("sqlite://{}", full.display()),
                };
            }
        }
        url.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_parses_to_defaults() {
        let parsed: Config = toml::from_str(EXAMPLE).unwrap();
        assert_eq!(parsed.catalog.url, Config::default().catalog.url);
        assert_eq!(parsed.ingest.infer_rows, 10_000);
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API
    fn layers_and_paths() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(CONFIG_FILE, "[ingest]\ninfer_rows = 50\n")?;
            jail.set_env("RESERVOIR_INGEST__BATCH_ROWS", "100");
            jail.set_env("RESERVOIR_TEST_MYSQL_URL", "mysql://root@127.0.0.1/x");
            jail.set_env("RESERVOIR_LOG", "debug");
            let home = jail.directory().to_path_buf();
            let c = Config::load(&home).map_err(|e| e.to_string())?;
            assert_eq!(c.ingest.infer_rows, 50);
            assert_eq!(c.ingest.batch_rows, 100);
            assert_eq!(
                c.catalog_url(&home),
                format!("sqlite://{}", home.join("catalog.db").display())
            );
            Ok(())
        });
    }
}
