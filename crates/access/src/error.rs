/// Errors from the access store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input that breaks a rule (unknown role, weak password, bad mask, …).
    #[error("invalid {what}: {message}")]
    Invalid { what: &'static str, message: String },

    /// A referenced object does not exist.
    #[error("{kind} {name:?} not found")]
    NotFound { kind: &'static str, name: String },

    /// The object exists but its state forbids the operation (a decided request, a revoked grant).
    #[error("{0}")]
    Conflict(String),

    /// Login refused. The message never says whether the account exists.
    #[error("{0}")]
    Unauthorized(String),

    /// The principal may not do this.
    #[error("{0}")]
    Forbidden(String),

    /// Too many attempts; try again after the given number of seconds.
    #[error("too many failed logins; try again in {retry_after_secs} s")]
    Locked { retry_after_secs: i64 },

    /// A stored value could not be read back (hand-edited or corrupted catalog).
    #[error("access store holds an unreadable value: {0}")]
    Corrupt(String),

    /// Hashing failed (out of memory, bad parameters).
    #[error("password hashing: {0}")]
    Hash(String),

    #[error("{}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },

    #[error(transparent)]
    Catalog(#[from] reservoir_catalog::Error),

    #[error("access store database error: {0}")]
    Database(#[from] sqlx::Error),

    #[error("access store JSON column: {0}")]
    Json(#[from] serde_json::Error),
}

impl Error {
    pub(crate) fn invalid(what: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            what,
            message: message.into(),
        }
    }
}

/// Result alias for access operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
