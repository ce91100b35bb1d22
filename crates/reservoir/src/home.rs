//! The home: the folder with `reservoir.toml`, the lake and the catalog.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use reservoir_catalog::Catalog;
use reservoir_lake::Lake;

use crate::config::{CONFIG_FILE, Config, EXAMPLE};

/// An opened home.
pub struct Home {
    pub root: PathBuf,
    pub config: Config,
    pub lake: Lake,
    pub catalog: Catalog,
}

/// Where commands look for the home: `--home`, then `RESERVOIR_HOME`, then the current folder.
pub fn resolve(flag: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = flag {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("RESERVOIR_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    std::env::current_dir().context("finding the current folder")
}

impl Home {
    /// Creates a home (idempotent: an existing configuration is kept). Returns whether it was
    /// newly created.
    pub async fn init(root: &Path) -> Result<(Self, bool)> {
        std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
        let config_path = root.join(CONFIG_FILE);
        let created = !config_path.exists();
        if created {
            std::fs::write(&config_path, EXAMPLE)
                .with_context(|| format!("writing {}", config_path.display()))?;
        }
        let sources = root.join("sources");
        std::fs::create_dir_all(&sources)
            .with_context(|| format!("creating {}", sources.display()))?;
        let home = Self::open_unchecked(root).await?;
        Ok((home, created))
    }

    /// Opens an existing home.
    pub async fn open(root: &Path) -> Result<Self> {
        if !root.join(CONFIG_FILE).exists() {
            bail!(
                "{} is not a Reservoir home (no {CONFIG_FILE}); run `reservoir init {}` first, \
                 or point --home / RESERVOIR_HOME at one",
                root.display(),
                root.display()
            );
        }
        Self::open_unchecked(root).await
    }

    async fn open_unchecked(root: &Path) -> Result<Self> {
        let root = root
            .canonicalize()
            .with_context(|| format!("opening home {}", root.display()))?;
        let config = Config::load(&root)?;
        reservoir_query::executor::set_memory_limit(config.server.query_memory_mb << 20);
        let lake = Lake::local(config.lake_path(&root)).with_context(|| {
            format!("opening the lake at {}", config.lake_path(&root).display())
        })?;
        let url = config.catalog_url(&root);
        let catalog = Catalog::connect(&url)
            .await
            .with_context(|| format!("opening the catalog at {}", redact(&url)))?;
        reservoir_quality::codes::ensure_builtin_code_tables(&catalog)
            .await
            .context("loading the built-in code tables into the catalog")?;
        Ok(Self {
            root,
            config,
            lake,
            catalog,
        })
    }

    /// The platform's signing key for delivery receipts, created on first use.
    pub fn platform_key(&self) -> Result<std::sync::Arc<reservoir_ingest::receipt::PlatformKey>> {
        let path = self.root.join("keys").join("platform.key");
        let key = reservoir_ingest::receipt::PlatformKey::load_or_create(&path)
            .with_context(|| format!("opening the platform key {}", path.display()))?;
        Ok(std::sync::Arc::new(key))
    }

    /// A collector over the home's lake and catalog that signs delivery receipts.
    pub fn collector(&self) -> Result<reservoir_ingest::Collector> {
        Ok(
            reservoir_ingest::Collector::new(self.lake.clone(), self.catalog.clone())
                .with_platform_key(self.platform_key()?),
        )
    }

    /// The accounts, grants and audit log (kept in the catalog database), with the audit chain
    /// keyed by `keys/audit.key`.
    pub fn access(&self) -> reservoir_access::Access {
        let access = reservoir_access::Access::new(self.catalog.clone());
        match self.audit_key() {
            Ok(key) => access.with_audit_key(key),
            Err(e) => {
                // Without its key the chain cannot be written or checked: say so loudly.
                tracing::error!("{e:#}");
                access
            }
        }
    }

    /// The secret that keys the audit chain, created on first use.
    pub fn audit_key(&self) -> Result<std::sync::Arc<reservoir_access::mask::MaskKey>> {
        let path = self.root.join("keys").join("audit.key");
        let key = reservoir_access::mask::MaskKey::load_or_create(&path)
            .with_context(|| format!("opening the audit key {}", path.display()))?;
        Ok(std::sync::Arc::new(key))
    }

    /// The secret of keyed-hash masks, created on first use.
    pub fn mask_key(&self) -> Result<std::sync::Arc<reservoir_access::mask::MaskKey>> {
        let path = self.root.join("keys").join("masking.key");
        let key = reservoir_access::mask::MaskKey::load_or_create(&path)
            .with_context(|| format!("opening the masking key {}", path.display()))?;
        Ok(std::sync::Arc::new(key))
    }

    /// Creates the first operator, `admin`, with a random password that must be changed at the
    /// first login, unless an operator exists. Returns the login and password to show once.
    pub async fn ensure_operator(&self) -> Result<Option<(String, String)>> {
        let access = self.access();
        if access.has_operator().await? {
            return Ok(None);
        }
        let password = reservoir_access::secret::random_password();
        access
            .create_user(&reservoir_access::NewUser {
                id: "admin".into(),
                display_name: "平台运维管理员".into(),
                role: reservoir_access::Role::Operator,
                unit_id: None,
                password: password.clone(),
                must_change: true,
            })
            .await
            .context("creating the first operator account")?;
        let mut event = reservoir_access::AuditEvent::new("local", "user.create", "admin");
        event.client = "cli".into();
        event.detail = r#"{"role":"operator","first":true}"#.into();
        access.audit(event).await?;
        Ok(Some(("admin".into(), password)))
    }

    /// The folder of declarative source definitions.
    pub fn sources_dir(&self) -> PathBuf {
        self.root.join("sources")
    }
}

fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}
