//! Collection (归集): reading the units' deliveries into the lake's raw layer.
//!
//! ```text
//!  CSV/TSV ─┐  decode (any encoding, streamed)      infer types      raw.<unit>.<dataset>
//!  XLSX/XLS ┼─► split rows, find header/preamble/ ─► (never lossy) ─► + _batch, _ingested_at,
//!  JSON     ┘  footer, flag short rows                                 _source_file, _source_row, _flags
//!                      │                                    │
//!                      └──── rows that cannot load ─────────┴──► quarantine.<unit>.<dataset>
//! ```
//!
//! Every run keeps the account `rows_read = rows_loaded + rows_quarantined` and records it in the
//! catalog. Start with [`Collector::collect`].

pub mod collect;
pub mod convert;
pub mod csv;
pub mod db;
pub mod decode;
mod error;
pub mod excel;
pub mod folder;
pub mod http;
pub mod infer;
pub mod json;
pub mod nats;
pub mod reader;
pub mod receipt;
pub mod sheet;
pub mod source;
pub mod value;

pub use collect::{
    CollectRequest, Collector, ColumnReport, ColumnSpec, DatasetInfo, NoProgress, Progress,
    RunReport,
};
pub use error::{Error, Result};
pub use reader::Format;
pub use source::{SourceDef, SourceOutcome, SourceRequest};
pub use value::ColumnType;
