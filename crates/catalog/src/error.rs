/// Errors from the catalog store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The catalog URL names a backend we do not support.
    #[error("unsupported catalog URL {url:?}: expected sqlite://PATH or postgres://…")]
    UnsupportedUrl { url: String },

    /// A referenced object does not exist.
    #[error("{kind} {name:?} not found in the catalog")]
    NotFound { kind: &'static str, name: String },

    /// Input that violates a catalog rule (bad identifier, out-of-range level, …).
    #[error("invalid {what}: {message}")]
    Invalid { what: &'static str, message: String },

    /// A stored value could not be read back (hand-edited or corrupted catalog).
    #[error("catalog holds an unreadable value: {0}")]
    Corrupt(String),

    /// Schema migration failed.
    #[error("catalog migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),

    /// The database reported an error.
    #[error("catalog database error: {0}")]
    Database(#[from] sqlx::Error),

    /// JSON (de)serialization of a structured column failed.
    #[error("catalog JSON column: {0}")]
    Json(#[from] serde_json::Error),
}

/// Result alias for catalog operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
