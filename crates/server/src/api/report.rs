//! The monthly operation report (运营报告) of a unit.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use reservoir_catalog::report::{self, Lang, Month, OperationReport};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::{ApiError, ApiResult};
use crate::{ApiPath, ApiQuery, AppState};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ReportQuery {
    /// The month, YYYY-MM (default: this month).
    month: Option<String>,
    /// json (default), html (a printable page) or csv (the dataset lines).
    format: Option<String>,
    /// zh (default) or en, for html.
    lang: Option<String>,
}

/// A unit's operation report for a month: datasets cataloged and collected, rows and growth,
/// freshness against the declared update frequencies, quality scores with their six-month trend
/// and the rules failing most, every dataset's line, and the units ranked.
#[utoipa::path(
    get,
    path = "/api/v1/units/{id}/report",
    tag = "catalog",
    params(("id" = String, Path, description = "Unit id"), ReportQuery),
    responses(
        (status = 200, description = "JSON; text/html or text/csv with format=html or csv", content(
            (OperationReport = "application/json"),
            (String = "text/html"),
            (String = "text/csv"),
        )),
        (status = 400, body = crate::ErrorBody),
        (status = 404, body = crate::ErrorBody)
    )
)]
pub(crate) async fn report(
    State(state): State<AppState>,
    caller: crate::auth::Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ReportQuery>,
) -> ApiResult<Response> {
    // Operators and auditors oversee every unit; a steward sees its own unit's report.
    if caller
        .require_roles(&[
            reservoir_access::Role::Operator,
            reservoir_access::Role::Auditor,
        ])
        .is_err()
    {
        caller.require_steward_of(&id)?;
    }
    let now = chrono::Utc::now();
    let month: Month = match q.month.as_deref().filter(|m| !m.is_empty()) {
        Some(m) => m.parse()?,
        None => Month::of(now),
    };
    let lang: Lang = match q.lang.as_deref().filter(|l| !l.is_empty()) {
        Some(l) => l.parse()?,
        None => Lang::Zh,
    };
    let mut r = state.catalog().operation_report(&id, month, now).await?;
    // Examples quote rows: only for those who see the unit's data whole.
    if !caller.principal.stewards(&id) {
        r = r.without_examples();
    }
    let mut e = caller.event("report.read", &id);
    e.detail = serde_json::json!({"month": r.month, "format": q.format}).to_string();
    state.audit(e).await;
    let filename = |ext: &str| {
        format!(
            "attachment; filename=\"report-{}-{}.{ext}\"",
            r.unit.id.escape_default(),
            r.month
        )
    };
    Ok(match q.format.as_deref().unwrap_or("json") {
        "json" => axum::Json(r).into_response(),
        "html" => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            report::render_html(&r, lang),
        )
            .into_response(),
        "csv" => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (header::CONTENT_DISPOSITION, filename("csv")),
            ],
            report::render_csv(&r),
        )
            .into_response(),
        other => {
            return Err(ApiError::bad_request(format!(
                "format {other:?}: expected json, html or csv"
            )));
        }
    })
}
