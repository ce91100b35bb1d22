//! REST API under `/api/v1`, documented by the OpenAPI document at `/api/v1/openapi.json`.

mod access;
pub(crate) mod auth;
mod catalog;
pub(crate) mod data;
pub(crate) mod query;
mod report;
mod rules;
mod sources;
mod upload;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, patch, post};
use utoipa::OpenApi;

use crate::AppState;

/// The OpenAPI document, generated from the handlers and types.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Reservoir API",
        description = "REST API of Reservoir, a district's public data platform: the catalog of \
units, systems and datasets, collection runs and their quarantined rows, sample rows, read-only \
SQL over the lake, and file upload into a dataset.\n\nErrors are JSON `{\"code\", \"message\"}` \
with codes bad_request, invalid_sql, read_only, query_failed, invalid_file (400), unauthorized \
(401), forbidden and password_change_required (403), not_found (404), timeout (408), conflict \
(409), payload_too_large (413), too_many_requests (429) and internal (500).\n\nLog in with \
`POST /api/v1/auth/login` (a session cookie; send the `rsv_csrf` cookie's value as \
`X-CSRF-Token` on POST, PUT, PATCH and DELETE) or send an API token as `Authorization: Bearer \
rsv_…`. Every read of data goes through the caller's grants: granted columns only, masked, \
row-filtered; every access is audited.",
        license(name = "Apache-2.0")
    ),
    paths(
        catalog::stats,
        catalog::units,
        catalog::unit,
        report::report,
        catalog::systems,
        catalog::datasets,
        catalog::dataset,
        catalog::dataset_sample,
        catalog::dataset_runs,
        catalog::dataset_drift,
        catalog::dataset_lineage,
        rules::get,
        rules::put,
        rules::delete,
        catalog::lineage,
        catalog::alerts,
        catalog::runs,
        catalog::run,
        catalog::run_quarantine,
        query::sql,
        upload::upload,
        sources::list,
        sources::get,
        sources::put,
        sources::delete,
        sources::run,
        auth::login,
        auth::logout,
        auth::apply,
        auth::me,
        auth::password,
        access::users,
        access::create_user,
        access::change_user,
        access::tokens,
        access::create_token,
        access::revoke_token,
        access::requests,
        access::file_request,
        access::approve,
        access::reject,
        access::withdraw,
        access::grants,
        access::revoke_grant,
        access::audit,
        access::verify,
        access::usage,
        data::data,
        crate::open::publish_endpoint,
        crate::sharing::profile,
        openapi_json,
    ),
    components(schemas(crate::ErrorBody)),
    tags(
        (name = "catalog", description = "Units, systems, datasets, runs"),
        (name = "query", description = "Read-only SQL over the lake"),
        (name = "quality", description = "Quality rules of datasets"),
        (name = "collect", description = "Uploading files into datasets"),
        (name = "access", description = "Logins, accounts, tokens, data requests, grants, audit, usage"),
        (name = "open", description = "Publishing open data (the CKAN-compatible API is at /api/3/action)"),
    )
)]
pub struct ApiDoc;

pub(crate) fn router(state: &AppState) -> Router<AppState> {
    let upload_limit = state.config().max_upload_bytes;
    Router::new()
        .route("/openapi.json", get(openapi_json))
        .route("/stats", get(catalog::stats))
        .route("/units", get(catalog::units))
        .route("/units/{id}", get(catalog::unit))
        .route("/units/{id}/report", get(report::report))
        .route("/systems", get(catalog::systems))
        .route("/datasets", get(catalog::datasets))
        .route("/datasets/{layer}/{unit}/{name}", get(catalog::dataset))
        .route(
            "/datasets/{layer}/{unit}/{name}/sample",
            get(catalog::dataset_sample),
        )
        .route(
            "/datasets/{layer}/{unit}/{name}/runs",
            get(catalog::dataset_runs),
        )
        .route(
            "/datasets/{layer}/{unit}/{name}/lineage",
            get(catalog::dataset_lineage),
        )
        .route("/lineage", get(catalog::lineage))
        .route(
            "/datasets/{layer}/{unit}/{name}/rules",
            get(rules::get).put(rules::put).delete(rules::delete),
        )
        .route(
            "/datasets/{layer}/{unit}/{name}/drift",
            get(catalog::dataset_drift),
        )
        .route("/alerts", get(catalog::alerts))
        .route("/runs", get(catalog::runs))
        .route("/runs/{id}", get(catalog::run))
        .route("/runs/{id}/quarantine", get(catalog::run_quarantine))
        .route("/sql", post(query::sql))
        .route("/sources", get(sources::list))
        .route(
            "/sources/{name}",
            get(sources::get).put(sources::put).delete(sources::delete),
        )
        .route("/sources/{name}/run", post(sources::run))
        .route("/auth/login", post(auth::login))
        .route("/open/applications", post(auth::apply))
        .route("/auth/logout", post(auth::logout))
        .route("/auth/me", get(auth::me))
        .route("/auth/password", post(auth::password))
        .route("/users", get(access::users).post(access::create_user))
        .route("/users/{login}", patch(access::change_user))
        .route("/tokens", get(access::tokens).post(access::create_token))
        .route("/tokens/{id}", delete(access::revoke_token))
        .route(
            "/requests",
            get(access::requests).post(access::file_request),
        )
        .route("/requests/{id}/approve", post(access::approve))
        .route("/requests/{id}/reject", post(access::reject))
        .route("/requests/{id}/withdraw", post(access::withdraw))
        .route("/grants", get(access::grants))
        .route("/grants/{id}", delete(access::revoke_grant))
        .route(
            "/grants/{id}/sharing-profile",
            post(crate::sharing::profile),
        )
        .route("/audit", get(access::audit))
        .route("/audit/verify", get(access::verify))
        .route("/usage", get(access::usage))
        .route("/data/{unit}/{dataset}", get(data::data))
        .route(
            "/datasets/{layer}/{unit}/{name}/publish",
            post(crate::open::publish_endpoint),
        )
        .route(
            "/datasets/{layer}/{unit}/{name}/upload",
            post(upload::upload).layer(DefaultBodyLimit::max(upload_limit)),
        )
}

/// Rows as the API returns them (for the open-data endpoints).
pub(crate) fn query_result(
    batches: &[arrow::array::RecordBatch],
    schema: Option<arrow::datatypes::SchemaRef>,
) -> crate::error::ApiResult<query::QueryResult> {
    query::to_result(batches, schema, false, 0)
}

/// The OpenAPI 3.1 document of this API.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "catalog",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json"))
)]
async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}
