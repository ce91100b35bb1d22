use std::path::PathBuf;

/// Errors from the lake.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown lake layer {0:?}: expected raw, std, base, theme, topic, open or quarantine")]
    UnknownLayer(String),

    #[error("invalid table location {0:?}")]
    InvalidLocation(String),

    #[error("table {0} does not exist in the lake")]
    TableNotFound(String),

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("lake table state is unreadable: {0}")]
    Corrupt(String),

    /// The producer of a streaming write gave up; nothing was committed.
    #[error("write to {table} aborted, nothing committed: {reason}")]
    Aborted { table: String, reason: String },

    #[error("Delta table error: {0}")]
    Delta(#[from] deltalake::DeltaTableError),

    #[error("query engine error: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),

    #[error("Arrow error: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

/// Result alias for lake operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
