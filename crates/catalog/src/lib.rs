//! The Reservoir catalog: the metadata store that describes every step of the data flow.
//!
//! ```text
//!  sources ─► ingest ─► lake (Delta tables)
//!                │            │
//!                └─► catalog ◄┘   units, systems, datasets, fields, runs, profiles
//! ```
//!
//! The catalog is a relational database reached through [`sqlx`]'s `Any` driver: a SQLite file by
//! default (embedded home) and PostgreSQL in production. Both backends share one set of queries
//! (parameters are written `$1`, which both understand) and have their own migrations under
//! `migrations/<backend>/`, kept in step and tested on both.
//!
//! Timestamps are stored as RFC 3339 UTC text with microsecond precision, so they sort as text and
//! read back identically on both backends.

pub mod codes;
pub mod dcat;
pub mod directory;
mod error;
pub mod lineage;
mod model;
pub mod open;
pub mod owner;
pub mod report;
pub mod search;
pub mod standards;
mod store;

pub use error::{Error, Result};
pub use model::*;
pub use store::{Backend, Catalog};

/// Formats a timestamp the way the catalog stores it.
pub fn format_ts(ts: chrono::DateTime<chrono::Utc>) -> String {
    ts.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Parses a timestamp stored by [`format_ts`].
pub fn parse_ts(text: &str) -> Result<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| Error::Corrupt(format!("timestamp {text:?}: {e}")))
}
