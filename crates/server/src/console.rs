//! The web console: a single page (zh-CN first, English) over the REST API, with its assets
//! embedded in the binary.

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::{ApiError, ApiPath, AppState};

struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    /// Vendored files never change within a build; our own are revalidated.
    immutable: bool,
}

const ASSETS: &[Asset] = &[
    Asset {
        path: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/app.js"),
        immutable: false,
    },
    Asset {
        path: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../assets/app.css"),
        immutable: false,
    },
    Asset {
        path: "portal.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/portal.js"),
        immutable: false,
    },
    Asset {
        path: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../assets/favicon.svg"),
        immutable: false,
    },
    Asset {
        path: "vendor/echarts.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/vendor/echarts.min.js"),
        immutable: true,
    },
    Asset {
        path: "vendor/LICENSE.echarts",
        content_type: "text/plain; charset=utf-8",
        body: include_bytes!("../assets/vendor/LICENSE.echarts"),
        immutable: true,
    },
];

const INDEX: &str = include_str!("../assets/index.html");
/// The public open-data portal (no login).
const PORTAL: &str = include_str!("../assets/portal.html");

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/open", get(portal))
        .route("/open/", get(portal))
        .route("/assets/{*path}", get(asset))
}

async fn index() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        INDEX,
    )
        .into_response()
}

async fn portal() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PORTAL,
    )
        .into_response()
}

async fn asset(ApiPath(path): ApiPath<String>) -> Result<Response, ApiError> {
    let a = ASSETS
        .iter()
        .find(|a| a.path == path)
        .ok_or_else(|| ApiError::not_found(format!("no asset {path:?}")))?;
    let cache = if a.immutable {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, a.content_type),
            (header::CACHE_CONTROL, cache),
        ],
        a.body,
    )
        .into_response())
}
