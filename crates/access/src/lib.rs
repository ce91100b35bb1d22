//! Who may see what: accounts and roles, logins and API tokens, data requests and the grants that
//! approving them provisions, the hash-chained audit log, and usage metering.
//!
//! ```text
//!  consumer ─ request ─► steward ─ approve ─► grant (columns, masks, row filter, expiry, quota)
//!                                               │
//!  login / token ─► Principal ─► Visibility ────┴─► query layer's policy engine ─► rows
//!                                                        │
//!                                     audit log (hash chain) + usage meter ◄┘
//! ```
//!
//! The tables live in the catalog database (migration `0009_access`), so one backup holds both.
//! This crate decides; enforcement is the query layer's (`reservoir-query`), which applies the
//! [`Visibility`] of a principal at every table scan.

pub mod audit;
mod error;
pub mod grants;
pub mod mask;
pub mod metering;
mod model;
pub mod policy;
pub mod secret;
pub mod users;

use std::sync::Arc;

use reservoir_catalog::Catalog;

pub use audit::{AuditEntry, AuditEvent, AuditFilter, AuditVerdict, Outcome};
pub use error::{Error, Result};
pub use grants::Approval;
pub use mask::Mask;
pub use model::*;
pub use policy::{TableAccess, Visibility};

/// Handle to the access tables. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Access {
    catalog: Catalog,
    audit_lock: Arc<tokio::sync::Mutex<()>>,
    audit_key: Option<Arc<mask::MaskKey>>,
}

impl Access {
    /// The access tables of `catalog`, with an unkeyed audit chain (tests, tools). A home keys
    /// its chain: [`Access::with_audit_key`].
    pub fn new(catalog: Catalog) -> Self {
        Self {
            catalog,
            audit_lock: Arc::new(tokio::sync::Mutex::new(())),
            audit_key: None,
        }
    }

    /// Chains the audit log with HMAC under `key` (kept outside the database).
    pub fn with_audit_key(mut self, key: Arc<mask::MaskKey>) -> Self {
        self.audit_key = Some(key);
        self
    }

    fn audit_key(&self) -> Option<&mask::MaskKey> {
        self.audit_key.as_deref()
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    fn pool(&self) -> &sqlx::AnyPool {
        self.catalog.pool()
    }

    fn audit_lock(&self) -> &tokio::sync::Mutex<()> {
        &self.audit_lock
    }
}
