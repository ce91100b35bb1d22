//! Router tests: every endpoint, its status, body shape and error format, on real data.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use reservoir_access::{NewUser, Role};
use reservoir_catalog::Catalog;
use reservoir_ingest::{CollectRequest, Collector, NoProgress};
use reservoir_lake::{Lake, WriteMode};
use reservoir_server::{AppState, ServerConfig, app};
use reservoir_testkit::shared_data;
use serde_json::{Value, json};
use tower::ServiceExt;

struct Fixture {
    _dir: tempfile::TempDir,
    state: AppState,
    ragged_run: i64,
    /// An operator's API token, sent by [`send`] unless the request carries its own.
    token: String,
}

async fn fixture(config: ServerConfig) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path().join("lake")).unwrap();
    let catalog = Catalog::connect(&format!(
        "sqlite://{}",
        dir.path().join("catalog.db").display()
    ))
    .await
    .unwrap();
    let collector = Collector::new(lake.clone(), catalog.clone());
    let collect = |unit: &str, dataset: &str, title: &str, path: std::path::PathBuf| {
        let mut req = CollectRequest {
            unit: unit.into(),
            dataset: dataset.into(),
            files: vec![path],
            mode: WriteMode::Overwrite,
            ..CollectRequest::default()
        };
        req.info.title = Some(title.into());
        req.info.unit_name = Some(
            if unit == "minzheng" {
                "区民政局"
            } else {
                "区统计局"
            }
            .into(),
        );
        req.info.system = Some("division".into());
        req
    };
    for req in [
        collect(
            "minzheng",
            "streets",
            "松江区街道镇",
            shared_data("admin_divisions/songjiang_310117_streets_extract.csv"),
        ),
        collect(
            "minzheng",
            "villages",
            "松江区村居委会",
            shared_data("admin_divisions/songjiang_310117_villages_extract.csv"),
        ),
        collect(
            "tongji",
            "gdp",
            "分省年度地区生产总值",
            shared_data("gov_files/gbk_csv/nbs_export_分省年度数据_地区生产总值_GBK.csv"),
        ),
    ] {
        collector.collect(req, Arc::new(NoProgress)).await.unwrap();
    }
    let ragged = dir.path().join("ragged.csv");
    std::fs::write(&ragged, "name,count\nalpha,1\nbeta,2,extra\n").unwrap();
    let report = collector
        .collect(
            collect("tongji", "ragged", "参差表", ragged),
            Arc::new(NoProgress),
        )
        .await
        .unwrap();
    let state = AppState::new(lake, catalog, config);
    state
        .access()
        .create_user(&NewUser {
            id: "op".into(),
            display_name: "运维".into(),
            role: Role::Operator,
            unit_id: None,
            password: "Operator-pass-1".into(),
            must_change: false,
        })
        .await
        .unwrap();
    let token = state
        .access()
        .create_token("op", "tests", None, 1)
        .await
        .unwrap()
        .secret;
    Fixture {
        _dir: dir,
        state,
        ragged_run: report.run_id,
        token,
    }
}

/// Sends a request as the fixture's operator (unless it carries its own Authorization).
async fn send(f: &Fixture, mut req: Request<Body>) -> (StatusCode, Vec<u8>, String) {
    if !req.headers().contains_key(header::AUTHORIZATION) {
        req.headers_mut().insert(
            header::AUTHORIZATION,
            format!("Bearer {}", f.token).parse().unwrap(),
        );
    }
    send_raw(f, req).await
}

/// Sends a request as it is: no login unless it carries one.
async fn send_raw(f: &Fixture, req: Request<Body>) -> (StatusCode, Vec<u8>, String) {
    let resp = app(f.state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let ctype = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, body, ctype)
}

async fn get(f: &Fixture, uri: &str) -> (StatusCode, Value) {
    let (status, body, ctype) = send(f, Request::get(uri).body(Body::empty()).unwrap()).await;
    assert!(
        ctype.starts_with("application/json"),
        "{uri}: content type {ctype}"
    );
    (status, serde_json::from_slice(&body).unwrap())
}

async fn post_json(f: &Fixture, uri: &str, body: Value) -> (StatusCode, Vec<u8>, String) {
    send(
        f,
        Request::post(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap(),
    )
    .await
}

fn assert_error(body: &Value, code: &str) {
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(
        body.as_object().unwrap().len(),
        2,
        "errors carry code and message only: {body}"
    );
}

#[tokio::test]
async fn health_metrics_console_and_assets() {
    let f = fixture(ServerConfig::default()).await;
    let (status, body) = get(&f, "/healthz").await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "ok"})));

    let (status, body, ctype) = send(&f, Request::get("/").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(ctype.starts_with("text/html"));
    assert!(String::from_utf8(body).unwrap().contains("公共数据平台"));
    for asset in [
        "app.js",
        "app.css",
        "favicon.svg",
        "vendor/echarts.min.js",
        "vendor/LICENSE.echarts",
    ] {
        let (status, body, _) = send(
            &f,
            Request::get(format!("/assets/{asset}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{asset}");
        assert!(!body.is_empty());
    }
    let (status, body) = get(&f, "/assets/nope.js").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "not_found");
    let (status, body) = get(&f, "/api/v1/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "not_found");

    // Metrics count the requests above by route template.
    let (status, body, ctype) =
        send(&f, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(ctype.contains("openmetrics"));
    let text = String::from_utf8(body).unwrap();
    assert!(
        text.contains(
            "reservoir_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains("route=\"/assets/{*path}\""), "{text}");
}

#[tokio::test]
async fn openapi_document_lists_every_endpoint() {
    let f = fixture(ServerConfig::default()).await;
    let (status, doc) = get(&f, "/api/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
    for p in [
        "/api/v1/stats",
        "/api/v1/units",
        "/api/v1/units/{id}",
        "/api/v1/systems",
        "/api/v1/datasets",
        "/api/v1/datasets/{layer}/{unit}/{name}",
        "/api/v1/datasets/{layer}/{unit}/{name}/sample",
        "/api/v1/datasets/{layer}/{unit}/{name}/runs",
        "/api/v1/datasets/{layer}/{unit}/{name}/upload",
        "/api/v1/runs",
        "/api/v1/runs/{id}",
        "/api/v1/runs/{id}/quarantine",
        "/api/v1/sql",
        "/api/v1/datasets/{layer}/{unit}/{name}/drift",
        "/api/v1/alerts",
        "/api/v1/sources",
        "/api/v1/sources/{name}",
        "/api/v1/sources/{name}/run",
        "/api/v1/openapi.json",
    ] {
        assert!(paths.iter().any(|x| *x == p), "{p} missing from {paths:?}");
    }
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    assert!(doc["components"]["schemas"]["RunReport"].is_object());
}

#[tokio::test]
async fn catalog_endpoints() {
    let f = fixture(ServerConfig::default()).await;
    let (status, stats) = get(&f, "/api/v1/stats").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stats["catalog"]["units"], 2);
    assert_eq!(stats["catalog"]["datasets"], 4);
    assert_eq!(stats["catalog"]["rows"], 20 + 386 + 31 + 1);
    assert!(stats["storage"]["used_bytes"].as_u64().unwrap() > 0);
    assert!(
        stats["storage"]["capacity_bytes"].as_u64().unwrap()
            > stats["storage"]["used_bytes"].as_u64().unwrap()
    );
    assert_eq!(stats["units"][0]["unit_id"], "minzheng");
    assert_eq!(stats["units"][0]["rows"], 406);
    assert_eq!(stats["latest_runs"].as_array().unwrap().len(), 4);
    assert_eq!(stats["latest_runs"][0]["dataset"], "ragged");

    let (_, units) = get(&f, "/api/v1/units").await;
    assert_eq!(units.as_array().unwrap().len(), 2);
    let (status, unit) = get(&f, "/api/v1/units/minzheng").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(unit["unit"]["name"], "区民政局");
    assert_eq!(unit["datasets"].as_array().unwrap().len(), 2);
    assert_eq!(unit["systems"][0]["id"], "division");
    let (status, body) = get(&f, "/api/v1/units/nobody").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "not_found");
    let (_, systems) = get(&f, "/api/v1/systems?unit=tongji").await;
    assert_eq!(systems.as_array().unwrap().len(), 1);

    // Search works on Chinese text, in titles and in field names.
    let (status, page) = get(&f, "/api/v1/datasets?q=%E6%9D%91%E5%B1%85").await; // 村居
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["total"], 1);
    assert_eq!(page["items"][0]["name"], "villages");
    let (_, page) = get(&f, "/api/v1/datasets?q=streetCode").await;
    assert_eq!(page["items"][0]["name"], "villages");
    let (_, page) = get(&f, "/api/v1/datasets?unit=tongji&limit=1&offset=1").await;
    assert_eq!(
        (
            page["total"].as_i64(),
            page["items"].as_array().unwrap().len()
        ),
        (Some(2), 1)
    );
    assert_eq!(page["facets"]["units"].as_array().unwrap().len(), 2);
    let (status, body) = get(&f, "/api/v1/datasets?limit=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "bad_request");
    let (status, body) = get(&f, "/api/v1/datasets?open_tier=sometimes").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "bad_request");
    let (status, body) = get(&f, "/api/v1/datasets?limit=ten").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "bad_request");

    let (status, d) = get(&f, "/api/v1/datasets/raw/minzheng/villages").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(d["dataset"]["row_count"], 386);
    assert_eq!(d["unit_name"], "区民政局");
    assert_eq!(d["fields"].as_array().unwrap().len(), 6);
    assert_eq!(d["fields"][2]["name"], "streetCode");
    let code = d["profile"]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["column_name"] == "code")
        .unwrap();
    assert_eq!(
        (code["null_count"].as_i64(), code["row_count"].as_i64()),
        (Some(0), Some(386))
    );
    assert_eq!(d["runs"].as_array().unwrap().len(), 1);
    assert_eq!(d["quarantine_table"], Value::Null);
    let (status, body) = get(&f, "/api/v1/datasets/raw/minzheng/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "not_found");

    let (status, sample) = get(&f, "/api/v1/datasets/raw/minzheng/villages/sample?limit=5").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sample["row_count"], 5);
    assert_eq!(sample["truncated"], true);
    assert_eq!(sample["columns"][0]["name"], "code");
    assert_eq!(sample["rows"][0][0], "310117001001");

    let (_, runs) = get(&f, "/api/v1/datasets/raw/tongji/ragged/runs").await;
    assert_eq!(runs[0]["counts"]["rows_quarantined"], 1);
    let (_, all) = get(&f, "/api/v1/runs?limit=2").await;
    assert_eq!(all.as_array().unwrap().len(), 2);
    let (status, run) = get(&f, &format!("/api/v1/runs/{}", f.ragged_run)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (run["dataset"].as_str(), run["status"].as_str()),
        (Some("ragged"), Some("succeeded"))
    );
    let (status, body) = get(&f, "/api/v1/runs/99999").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "not_found");
    let (status, body) = get(&f, "/api/v1/runs/abc").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "bad_request");

    let (status, q) = get(&f, &format!("/api/v1/runs/{}/quarantine", f.ragged_run)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        q["rows"],
        json!([[
            "ragged.csv",
            3,
            "beta,2,extra",
            "row has 3 fields but the header has 2"
        ]])
    );
    let (_, detail) = get(&f, "/api/v1/datasets/raw/tongji/ragged").await;
    assert_eq!(detail["quarantine_table"], "quarantine.tongji.ragged");
}

#[tokio::test]
async fn sql_endpoint() {
    let f = fixture(ServerConfig {
        query_row_limit: 10,
        ..ServerConfig::default()
    })
    .await;
    let (status, body, _) = post_json(
        &f,
        "/api/v1/sql",
        json!({"sql": "SELECT count(*) AS n FROM raw.minzheng.villages v JOIN minzheng.streets s ON v.\"streetCode\" = s.code"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let r: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(r["rows"], json!([[386]]));
    assert_eq!(r["columns"][0], json!({"name": "n", "data_type": "Int64"}));

    // The server's row limit caps any request.
    let (_, body, _) = post_json(
        &f,
        "/api/v1/sql",
        json!({"sql": "SELECT code FROM raw.minzheng.villages", "limit": 500}),
    )
    .await;
    let r: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (r["row_count"].as_u64(), r["truncated"].as_bool()),
        (Some(10), Some(true))
    );

    // Bad SQL: 400 with the planner's message.
    let (status, body, _) = post_json(&f, "/api/v1/sql", json!({"sql": "SELEC 1"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let e: Value = serde_json::from_slice(&body).unwrap();
    assert_error(&e, "invalid_sql");
    assert!(e["message"].as_str().unwrap().contains("SELEC"), "{e}");
    let (status, body, _) = post_json(
        &f,
        "/api/v1/sql",
        json!({"sql": "SELECT nope FROM raw.minzheng.villages"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let e: Value = serde_json::from_slice(&body).unwrap();
    assert_error(&e, "invalid_sql");
    assert!(e["message"].as_str().unwrap().contains("nope"), "{e}");
    let (status, body, _) = post_json(
        &f,
        "/api/v1/sql",
        json!({"sql": "DELETE FROM raw.minzheng.villages"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&serde_json::from_slice(&body).unwrap(), "read_only");
    let (status, body, _) = send(
        &f,
        Request::post("/api/v1/sql")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from("{not json"))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&serde_json::from_slice(&body).unwrap(), "bad_request");

    // CSV download, with a BOM for Excel.
    let (status, body, ctype) = post_json(
        &f,
        "/api/v1/sql",
        json!({"sql": "SELECT \"地区\", \"2024年\" FROM tongji.gdp ORDER BY 2 DESC LIMIT 2", "format": "csv"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(ctype.starts_with("text/csv"));
    assert_eq!(
        String::from_utf8(body).unwrap(),
        "\u{FEFF}地区,2024年\n广东省,141488.9\n江苏省,136696.9\n"
    );
}

fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "----reservoir-test-boundary";
    let mut body = Vec::new();
    for (name, file, data) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match file {
            Some(f) => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: text/csv\r\n\r\n").as_bytes(),
            ),
            None => body.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes()),
        }
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn upload(
    f: &Fixture,
    uri: &str,
    parts: &[(&str, Option<&str>, &[u8])],
) -> (StatusCode, Value) {
    let (ctype, body) = multipart(parts);
    let (status, body, _) = send(
        f,
        Request::post(uri)
            .header(header::CONTENT_TYPE, ctype)
            .body(Body::from(body))
            .unwrap(),
    )
    .await;
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn upload_endpoint() {
    let f = fixture(ServerConfig {
        max_upload_bytes: 4096,
        ..ServerConfig::default()
    })
    .await;
    let (gbk, _, _) = encoding_rs::GBK
        .encode("街道,人口,备注\n岳阳街道,12000,\n永丰街道,9000,新建小区\n方松街道,abc\n");
    let (status, r) = upload(
        &f,
        "/api/v1/datasets/raw/minzheng/population/upload",
        &[
            ("file", Some("人口.csv"), &gbk),
            ("mode", None, b"overwrite"),
            ("title", None, "街道人口".as_bytes()),
            ("column", None, "人口=int64".as_bytes()),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
    assert_eq!(r["table"], "raw.minzheng.population");
    assert_eq!(
        (
            r["rows_read"].as_i64(),
            r["rows_loaded"].as_i64(),
            r["rows_quarantined"].as_i64()
        ),
        (Some(3), Some(2), Some(1))
    );
    assert_eq!(r["files"][0]["path"], "人口.csv");
    assert_eq!(r["files"][0]["encoding"], "GBK");
    assert!(
        r["rejected_sample"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("\"abc\"")
    );
    let (_, d) = get(&f, "/api/v1/datasets/raw/minzheng/population").await;
    assert_eq!(d["dataset"]["title"], "街道人口");
    assert_eq!(d["runs"][0]["source"], "upload: 人口.csv");

    // Too large: 413 in the API's format.
    let big = vec![b'x'; 10_000];
    let (status, body) = upload(
        &f,
        "/api/v1/datasets/raw/minzheng/big/upload",
        &[("file", Some("big.csv"), &big)],
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_error(&body, "payload_too_large");

    // Bad forms and bad files.
    let (status, body) = upload(
        &f,
        "/api/v1/datasets/raw/minzheng/x/upload",
        &[("mode", None, b"append")],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "bad_request");
    let (status, body) = upload(
        &f,
        "/api/v1/datasets/std/minzheng/x/upload",
        &[("file", Some("a.csv"), b"a\n1\n")],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "bad_request");
    for decl in ["人口", "人口=number5"] {
        let (status, body) = upload(
            &f,
            "/api/v1/datasets/raw/minzheng/x/upload",
            &[
                ("file", Some("a.csv"), b"a\n1\n"),
                ("column", None, decl.as_bytes()),
            ],
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{decl}");
        assert_error(&body, "bad_request");
        assert!(body["message"].as_str().unwrap().contains(decl), "{body}");
    }
    let (status, body) = upload(
        &f,
        "/api/v1/datasets/raw/minzheng/x/upload",
        &[("file", Some("a.pdf"), b"%PDF")],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "invalid_file");
    assert!(
        body["message"].as_str().unwrap().contains("a.pdf"),
        "{body}"
    );
    assert!(
        !body["message"]
            .as_str()
            .unwrap()
            .contains("reservoir-upload"),
        "no staging paths: {body}"
    );
    let (status, body) = upload(
        &f,
        "/api/v1/datasets/raw/minzheng/x/upload",
        &[
            ("file", Some("a.csv"), "名称\n北京".as_bytes()),
            ("encoding", None, b"gbk"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "invalid_file");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("looks like UTF-8"),
        "{body}"
    );
}

/// Source definitions through the API: written after being checked (never with a password),
/// listed, read, run now, deleted.
#[tokio::test]
async fn sources_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let sources = dir.path().join("sources");
    let drop = dir.path().join("drop");
    std::fs::create_dir_all(&sources).unwrap();
    std::fs::create_dir_all(&drop).unwrap();
    std::fs::write(drop.join("a.csv"), "id,name\n1,甲\n2,乙\n").unwrap();
    let f = fixture(ServerConfig {
        sources_dir: Some(sources.clone()),
        ..ServerConfig::default()
    })
    .await;
    let put = |name: &str, toml: String| {
        let body = serde_json::json!({ "toml": toml }).to_string();
        let uri = format!("/api/v1/sources/{name}");
        let f = &f;
        async move {
            let (status, body, _) = send(
                f,
                Request::put(uri)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(body))
                    .unwrap(),
            )
            .await;
            (status, serde_json::from_slice::<Value>(&body).unwrap())
        }
    };
    let folder = format!(
        "unit = \"weijian\"\ndataset = \"drops\"\nkind = \"folder\"\n[folder]\npath = {:?}\nsettle_secs = 0\n",
        drop.display().to_string()
    );
    let (status, doc) = put("drops", folder.clone()).await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert_eq!(doc["definition"]["kind"], "folder");
    assert_eq!(
        std::fs::read_to_string(sources.join("drops.toml")).unwrap(),
        folder
    );

    // A password in the text is refused, and not echoed back.
    let (status, err) = put(
        "hukou",
        "unit = \"gongan\"\ndataset = \"people\"\nkind = \"postgres\"\n[database]\nurl = \"postgres://reader:s3cret@db/hukou\"\ntable = \"people\"\n".into(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&err, "bad_request");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("contains a password"),
        "{err}"
    );
    assert!(!err.to_string().contains("s3cret"), "{err}");
    assert!(!sources.join("hukou.toml").exists());
    let (status, err) = put("bad%20name", folder.clone()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    let (status, err) = put("typo", "unit = \"u\"\ndataset = \"d\"\npathz = []\n".into()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(err["message"].as_str().unwrap().contains("pathz"), "{err}");

    let (status, list) = get(&f, "/api/v1/sources").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["name"], "drops");
    let (status, one) = get(&f, "/api/v1/sources/drops").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["toml"], folder);

    let (status, body, _) = post_json(&f, "/api/v1/sources/drops/run", serde_json::json!({})).await;
    let runs: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, StatusCode::OK, "{runs}");
    assert_eq!(runs[0]["rows_loaded"], 2, "{runs}");
    // The same file again: nothing new.
    let (_, body, _) = post_json(&f, "/api/v1/sources/drops/run", serde_json::json!({})).await;
    let runs: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 0, "{runs}");

    let (status, _, _) = send(
        &f,
        Request::delete("/api/v1/sources/drops")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, err) = get(&f, "/api/v1/sources/drops").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&err, "not_found");
}

/// A dataset's quality rules through the API: written only when they parse, read back, deleted.
#[tokio::test]
async fn rules_are_edited_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    let f = fixture(ServerConfig {
        rules_dir: Some(rules.clone()),
        ..ServerConfig::default()
    })
    .await;
    let uri = "/api/v1/datasets/raw/minzheng/villages/rules";
    let (status, err) = get(&f, uri).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{err}");
    let put = |yaml: &str, uri: &str| {
        let body = serde_json::json!({ "yaml": yaml }).to_string();
        let uri = uri.to_string();
        let f = &f;
        async move {
            let (status, body, _) = send(
                f,
                Request::put(uri)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(body))
                    .unwrap(),
            )
            .await;
            (status, serde_json::from_slice::<Value>(&body).unwrap())
        }
    };
    // A broken file is refused with the checker's message and not saved.
    let (status, err) = put("rules:\n  - {check: range, column: code}\n", uri).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&err, "bad_request");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("needs `min`, `max` or both"),
        "{err}"
    );
    assert!(!rules.join("minzheng/villages.yaml").exists());
    let yaml = "key: [code]\nrules:\n  - {check: not_null, column: name}\n  - {check: unique, columns: [code], blocking: true}\n";
    let (status, doc) = put(yaml, uri).await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert_eq!(doc["rules"][1]["check"], "unique");
    assert_eq!(doc["rules"][1]["blocking"], true);
    assert_eq!(
        std::fs::read_to_string(rules.join("minzheng/villages.yaml")).unwrap(),
        yaml
    );
    let (status, back) = get(&f, uri).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(back["yaml"], yaml);
    assert_eq!(back["rules"][0]["name"], "not_null:name");
    // Rules are for collected datasets of the catalog.
    let (status, _) = put(yaml, "/api/v1/datasets/raw/minzheng/nothing/rules").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = put(yaml, "/api/v1/datasets/std/minzheng/villages/rules").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = send(&f, Request::delete(uri).body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(!rules.join("minzheng/villages.yaml").exists());
}
