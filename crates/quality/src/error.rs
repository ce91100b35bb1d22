/// Errors from quality inspection.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Lake(#[from] reservoir_lake::Error),

    #[error("query engine error: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),

    #[error("Arrow error: {0}")]
    Arrow(#[from] arrow::error::ArrowError),

    /// A rules file that cannot be read or does not make sense.
    #[error("rules {}: {message}", path.display())]
    Rules {
        path: std::path::PathBuf,
        message: String,
    },

    /// A rule names a column the table does not have.
    #[error("rule {rule:?} reads column {column:?}, which {table} does not have (columns: {})", available.join(", "))]
    UnknownColumn {
        rule: String,
        column: String,
        table: String,
        available: Vec<String>,
    },

    /// A rule's check cannot judge the column's type.
    #[error("rule {rule:?} cannot check column {column:?} of type {ty}: {why}")]
    ColumnType {
        rule: String,
        column: String,
        ty: String,
        why: String,
    },

    #[error("there is no dataset {0} in the catalog to check")]
    NoDataset(String),

    #[error("rule {rule:?}: {message}")]
    Reference { rule: String, message: String },

    #[error(transparent)]
    Catalog(#[from] reservoir_catalog::Error),
}

/// Result alias for quality inspection.
pub type Result<T, E = Error> = std::result::Result<T, E>;
