/// Errors from quality inspection.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Lake(#[from] reservoir_lake::Error),

    #[error("query engine error while profiling: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),

    #[error("Arrow error while profiling: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

/// Result alias for quality inspection.
pub type Result<T, E = Error> = std::result::Result<T, E>;
