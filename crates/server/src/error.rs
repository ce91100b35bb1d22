//! One wire format for every error: `{"code": "...", "message": "..."}`.
//!
//! | code                | HTTP | when |
//! |---------------------|------|------|
//! | `bad_request`       | 400  | malformed parameters or body |
//! | `invalid_sql`       | 400  | the SQL does not parse or plan; the message is the planner's |
//! | `read_only`         | 400  | a statement other than a query |
//! | `query_failed`      | 400  | the query failed while running (cast error, …) |
//! | `invalid_file`      | 400  | an upload that cannot be read (encoding, format, columns) |
//! | `unauthorized`      | 401  | no or a refused login, session or token |
//! | `forbidden`         | 403  | the caller's role or grants do not allow this |
//! | `password_change_required` | 403 | a new account must set its own password first |
//! | `not_found`         | 404  | unknown unit, dataset, run or route |
//! | `conflict`          | 409  | the object's state forbids it (a decided request, an existing account) |
//! | `too_many_requests` | 429  | login attempts, a grant's rate limit |
//! | `payload_too_large` | 413  | an upload over the configured limit |
//! | `timeout`           | 408  | a query over the time limit |
//! | `internal`          | 500  | anything else; details go to the server log only |

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

/// The JSON body of an error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A stable, machine-readable code (see the table in the API description).
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// Logs the cause and returns a message that reveals nothing of it.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let id = &id[..12];
        tracing::error!(error_id = id, "internal error: {cause}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("internal error (reference {id}); the server log has the details"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            code: self.code.to_string(),
            message: self.message,
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<reservoir_catalog::Error> for ApiError {
    fn from(e: reservoir_catalog::Error) -> Self {
        use reservoir_catalog::Error as E;
        match e {
            E::NotFound { .. } => Self::not_found(e.to_string()),
            E::Invalid { .. } => Self::bad_request(e.to_string()),
            other => Self::internal(other),
        }
    }
}

impl From<reservoir_access::Error> for ApiError {
    fn from(e: reservoir_access::Error) -> Self {
        use reservoir_access::Error as E;
        match e {
            E::Invalid { .. } => Self::bad_request(e.to_string()),
            E::NotFound { .. } => Self::not_found(e.to_string()),
            E::Conflict(m) => Self::new(StatusCode::CONFLICT, "conflict", m),
            E::Unauthorized(m) => Self::new(StatusCode::UNAUTHORIZED, "unauthorized", m),
            E::Forbidden(m) => Self::new(StatusCode::FORBIDDEN, "forbidden", m),
            E::Locked { .. } => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                e.to_string(),
            ),
            E::Catalog(c) => c.into(),
            other => Self::internal(other),
        }
    }
}

impl From<reservoir_query::Error> for ApiError {
    fn from(e: reservoir_query::Error) -> Self {
        use reservoir_query::Error as E;
        match e {
            E::Plan(m) => Self::new(StatusCode::BAD_REQUEST, "invalid_sql", m),
            E::ReadOnly(_) => Self::new(StatusCode::BAD_REQUEST, "read_only", e.to_string()),
            E::Execution(ref inner) => Self::new(
                StatusCode::BAD_REQUEST,
                "query_failed",
                format!("query failed: {}", inner.find_root()),
            ),
            other => Self::internal(other),
        }
    }
}

impl From<reservoir_ingest::Error> for ApiError {
    fn from(e: reservoir_ingest::Error) -> Self {
        use reservoir_ingest::Error as E;
        match e {
            E::Lake(_) | E::Catalog(_) | E::Quality(_) | E::Arrow(_) | E::Task(_) => {
                Self::internal(e)
            }
            other => Self::new(StatusCode::BAD_REQUEST, "invalid_file", other.to_string()),
        }
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(r: axum::extract::rejection::JsonRejection) -> Self {
        // A wrong content type, bad syntax and a body of the wrong shape are all the client's
        // malformed request: one status, the reason in the message.
        Self::bad_request(r.body_text())
    }
}

impl From<axum::extract::multipart::MultipartRejection> for ApiError {
    fn from(r: axum::extract::multipart::MultipartRejection) -> Self {
        Self::bad_request(format!(
            "{} (expected a multipart/form-data upload)",
            r.body_text()
        ))
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(r: axum::extract::rejection::QueryRejection) -> Self {
        Self::bad_request(r.body_text())
    }
}

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(r: axum::extract::rejection::PathRejection) -> Self {
        Self::bad_request(r.body_text())
    }
}

impl From<axum::extract::multipart::MultipartError> for ApiError {
    fn from(e: axum::extract::multipart::MultipartError) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the upload is larger than the server accepts (server.max_upload_mb)",
            )
        } else {
            Self::new(e.status(), "bad_request", e.body_text())
        }
    }
}

/// Result alias for handlers.
pub type ApiResult<T> = Result<T, ApiError>;
