//! Collection from an HTTP JSON API (a real axum server on a local port): page, offset and
//! cursor pagination, an auth header, a retried 503, and clear errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use reservoir_catalog::Catalog;
use reservoir_ingest::http::{HttpRequest, HttpSource, Pagination};
use reservoir_ingest::{Collector, DatasetInfo, NoProgress};
use reservoir_lake::{Lake, WriteMode};
use reservoir_query::QueryEngine;
use serde_json::{Value, json};

const TOKEN: &str = "Bearer t0ken";
const TOTAL: usize = 23;

#[derive(Clone, Default)]
struct Api {
    calls: Arc<AtomicUsize>,
}

fn record(i: usize) -> Value {
    json!({"id": i, "name": format!("企业{i}"), "credit_code": format!("91310117MA1J{i:06}")})
}

fn authorized(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(TOKEN)
}

/// `?page=N&size=M`, 1-based; the second call fails with 503 once.
async fn by_page(
    State(api): State<Api>,
    headers: HeaderMap,
    Query(q): Query<std::collections::HashMap<String, usize>>,
) -> Response {
    if !authorized(&headers) {
        return (StatusCode::UNAUTHORIZED, "missing or wrong token").into_response();
    }
    if api.calls.fetch_add(1, Ordering::SeqCst) == 1 {
        return (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response();
    }
    let (page, size) = (q["page"], q["size"]);
    let list: Vec<Value> = ((page - 1) * size + 1..=(page * size).min(TOTAL))
        .map(record)
        .collect();
    Json(json!({"code": 0, "data": {"total": TOTAL, "list": list}})).into_response()
}

async fn by_offset(Query(q): Query<std::collections::HashMap<String, usize>>) -> Json<Value> {
    let (offset, limit) = (q["offset"], q["limit"]);
    let list: Vec<Value> = (offset + 1..=(offset + limit).min(TOTAL))
        .map(record)
        .collect();
    Json(json!(list))
}

async fn by_cursor(Query(q): Query<std::collections::HashMap<String, String>>) -> Json<Value> {
    let from: usize = q
        .get("cursor")
        .map_or(1, |c| c.trim_start_matches('c').parse().unwrap());
    let to = (from + 9).min(TOTAL);
    let next = (to < TOTAL).then(|| format!("c{}", to + 1));
    Json(json!({"items": (from..=to).map(record).collect::<Vec<_>>(), "next": next}))
}

async fn serve() -> String {
    let app = Router::new()
        .route("/page", get(by_page))
        .route("/offset", get(by_offset))
        .route("/cursor", get(by_cursor))
        .route("/broken", get(|| async { "<html>oops</html>" }))
        .with_state(Api::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn source(url: String, records: &str, pagination: Pagination) -> HttpSource {
    HttpSource {
        url,
        headers: vec![("Authorization".into(), TOKEN.into())],
        records: records.into(),
        pagination,
        max_pages: 100,
        timeout: Duration::from_secs(10),
        attempts: 3,
    }
}

#[tokio::test]
async fn api_pages_load_in_one_run() {
    let base = serve().await;
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path().join("lake")).unwrap();
    let catalog = Catalog::connect(&format!("sqlite://{}", dir.path().join("c.db").display()))
        .await
        .unwrap();
    let collector = Collector::new(lake.clone(), catalog.clone());
    let run = |dataset: &str, source: HttpSource| HttpRequest {
        unit: "shichang".into(),
        dataset: dataset.into(),
        source,
        mode: WriteMode::Overwrite,
        columns: Vec::new(),
        info: DatasetInfo::default(),
        source_label: String::new(),
        infer_rows: 1000,
        batch_rows: 1000,
    };

    // Pages of 10: 10 + 10 + 3, the second request retried after a 503.
    let page = Pagination::Page {
        param: "page".into(),
        size_param: Some("size".into()),
        size: 10,
        start: 1,
    };
    let r = collector
        .collect_http(
            run(
                "firms",
                source(format!("{base}/page"), "data.list", page.clone()),
            ),
            Arc::new(NoProgress),
        )
        .await
        .unwrap();
    assert_eq!(
        (r.counts.rows_read, r.counts.rows_loaded),
        (TOTAL as i64, TOTAL as i64)
    );
    assert!(
        r.notes.iter().any(|n| n == "fetched 23 records in 3 pages"),
        "{:?}",
        r.notes
    );
    assert_eq!(r.files[0].path, format!("{base}/page"));
    let engine = QueryEngine::new(&lake, &catalog).await.unwrap();
    let batches = engine
        .query("SELECT count(DISTINCT id), max(name), min(credit_code), max(_source_file) FROM raw.shichang.firms")
        .await
        .unwrap();
    let text = arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string();
    assert!(text.contains("| 23 "), "{text}");
    assert!(text.contains("企业9"), "{text}");
    assert!(text.contains("91310117MA1J000001"), "{text}");
    assert!(text.contains(&format!("{base}/page")), "{text}");

    // Offset and cursor pagination reach the same records.
    for (name, src) in [
        (
            "by_offset",
            source(
                format!("{base}/offset"),
                "",
                Pagination::Offset {
                    param: "offset".into(),
                    limit_param: "limit".into(),
                    limit: 7,
                },
            ),
        ),
        (
            "by_cursor",
            source(
                format!("{base}/cursor"),
                "items",
                Pagination::Cursor {
                    param: "cursor".into(),
                    next: "next".into(),
                },
            ),
        ),
    ] {
        let r = collector
            .collect_http(run(name, src), Arc::new(NoProgress))
            .await
            .unwrap();
        assert_eq!(r.counts.rows_loaded, TOTAL as i64, "{name}");
    }

    // Wrong token: the status and what the server said; nothing loaded.
    let mut bad = source(format!("{base}/page"), "data.list", page);
    bad.headers.clear();
    let err = collector
        .collect_http(run("denied", bad), Arc::new(NoProgress))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("page 1: HTTP 401 Unauthorized: missing or wrong token"),
        "{err}"
    );
    let err = collector
        .collect_http(
            run(
                "broken",
                source(format!("{base}/broken"), "", Pagination::None),
            ),
            Arc::new(NoProgress),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("is not JSON") && err.contains("<html>oops"),
        "{err}"
    );
    let err = collector
        .collect_http(
            run(
                "wrongpath",
                source(format!("{base}/cursor"), "data.rows", Pagination::None),
            ),
            Arc::new(NoProgress),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(r#"no "data.rows" in the response (its keys: items, next)"#),
        "{err}"
    );
    assert!(
        lake.open(&reservoir_lake::TableRef::new(
            reservoir_lake::Layer::Raw,
            "shichang",
            "denied"
        ))
        .await
        .unwrap()
        .is_none()
    );
}
