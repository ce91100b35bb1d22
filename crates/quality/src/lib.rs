//! Quality inspection: column profiles and validators for Chinese identifiers; rules and
//! scores grow here.
//!
//! ```text
//! lake table ──► profile ──► catalog (column_profiles, per run)
//! ```
//!
//! Profiles are computed with DataFusion over the Delta table as it stands after a run: row
//! count, nulls, an approximate (HyperLogLog) distinct count, min/max and the most frequent values
//! of every data column.

pub mod check;
mod error;
mod profile;
pub mod rules;
pub mod validate;

pub use error::{Error, Result};
pub use profile::{TOP_VALUES, profile_table};
