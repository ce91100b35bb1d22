/// Errors from the query layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The SQL is invalid or refers to something that does not exist; the message is the
    /// planner's and safe to show to the user.
    #[error("{0}")]
    Plan(String),

    /// Only reading is allowed through this interface.
    #[error("only queries are allowed here (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN): {0}")]
    ReadOnly(String),

    #[error(transparent)]
    Lake(#[from] reservoir_lake::Error),

    #[error(transparent)]
    Catalog(#[from] reservoir_catalog::Error),

    #[error("query failed: {0}")]
    Execution(datafusion::error::DataFusionError),

    #[error("Arrow error: {0}")]
    Arrow(#[from] arrow::error::ArrowError),

    #[error("writing results: {0}")]
    Io(#[from] std::io::Error),
}

impl From<datafusion::error::DataFusionError> for Error {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        use datafusion::error::DataFusionError as D;
        match e.find_root() {
            D::SQL(..) | D::Plan(_) | D::SchemaError(..) => Error::Plan(e.find_root().to_string()),
            _ => Error::Execution(e),
        }
    }
}

/// Result alias for the query layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;
