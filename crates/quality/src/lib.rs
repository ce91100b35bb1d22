//! Quality inspection: column profiles, validators for Chinese identifiers, quality rules and
//! their check runs, and personal-data detection.
//!
//! ```text
//! lake table ──► profile ──► catalog (column_profiles, per run)
//!            ──► check (rules/<unit>/<dataset>.yaml) ──► quality table + catalog (check_runs)
//!            ──► pii scan (a sample) ──► catalog (field_pii suggestions)
//! ```
//!
//! Profiles are computed with DataFusion over the Delta table as it stands after a run: row
//! count, nulls, an approximate (HyperLogLog) distinct count, min/max and the most frequent values
//! of every data column.

pub mod check;
pub mod codes;
mod error;
pub mod pii;
mod profile;
pub mod rules;
pub mod validate;

pub use error::{Error, Result};
pub use profile::{TOP_VALUES, profile_table};
