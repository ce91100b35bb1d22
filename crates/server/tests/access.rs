//! The authorization matrix: every endpoint × every role × own and other unit's dataset, with the
//! expected allow or deny; tokens expired, revoked or out of scope; sessions, CSRF and the
//! password change; bypass attempts through the data API.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use reservoir_access::mask::MaskKey;
use reservoir_access::{GrantColumn, Mask, NewGrant, NewUser, Principal, Role};
use reservoir_catalog::Catalog;
use reservoir_ingest::{CollectRequest, Collector, NoProgress};
use reservoir_lake::{Lake, WriteMode};
use reservoir_server::{AppState, ServerConfig, app};
use reservoir_testkit::shared_data;
use serde_json::{Value, json};
use tower::ServiceExt;

struct World {
    dir: tempfile::TempDir,
    state: AppState,
    ragged_run: i64,
    tokens: Vec<(&'static str, Option<String>)>,
}

/// The callers of the matrix, in the order of [`Case::expect`]: operator; steward of minzheng;
/// consumer of tongji with a grant on minzheng.villages; auditor; the public; a token scoped to
/// the consumer's grant.
const ROLES: [&str; 6] = [
    "operator", "steward", "consumer", "auditor", "public", "scoped",
];

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path().join("lake")).unwrap();
    let catalog = Catalog::connect(&format!("sqlite://{}", dir.path().join("c.db").display()))
        .await
        .unwrap();
    let collector = Collector::new(lake.clone(), catalog.clone());
    let req = |unit: &str, dataset: &str, path: std::path::PathBuf| CollectRequest {
        unit: unit.into(),
        dataset: dataset.into(),
        files: vec![path],
        mode: WriteMode::Overwrite,
        ..CollectRequest::default()
    };
    collector
        .collect(
            req(
                "minzheng",
                "villages",
                shared_data("admin_divisions/songjiang_310117_villages_extract.csv"),
            ),
            Arc::new(NoProgress),
        )
        .await
        .unwrap();
    collector
        .collect(
            req(
                "tongji",
                "gdp",
                shared_data("gov_files/gbk_csv/nbs_export_分省年度数据_地区生产总值_GBK.csv"),
            ),
            Arc::new(NoProgress),
        )
        .await
        .unwrap();
    let ragged = dir.path().join("ragged.csv");
    std::fs::write(&ragged, "name,count\nalpha,1\nbeta,2,extra\n").unwrap();
    let ragged_run = collector
        .collect(req("tongji", "ragged", ragged), Arc::new(NoProgress))
        .await
        .unwrap()
        .run_id;
    std::fs::create_dir_all(dir.path().join("sources")).unwrap();
    std::fs::create_dir_all(dir.path().join("rules")).unwrap();
    let config = ServerConfig {
        sources_dir: Some(dir.path().join("sources")),
        rules_dir: Some(dir.path().join("rules")),
        ..ServerConfig::default()
    };
    let state = AppState::new(lake, catalog.clone(), config)
        .with_mask_key(Arc::new(MaskKey::from_bytes(b"matrix masking key 123")));
    let access = state.access().clone();
    let account = |id: &str, role: Role, unit: Option<&str>| NewUser {
        id: id.into(),
        display_name: id.into(),
        role,
        unit_id: unit.map(str::to_string),
        password: format!("{id}-Password-1"),
        must_change: false,
    };
    for (id, role, unit) in [
        ("op", Role::Operator, None),
        ("mz", Role::Steward, Some("minzheng")),
        ("analyst", Role::Consumer, Some("tongji")),
        ("aud", Role::Auditor, None),
    ] {
        access.create_user(&account(id, role, unit)).await.unwrap();
    }
    let villages = catalog
        .dataset("raw", "minzheng", "villages")
        .await
        .unwrap()
        .unwrap();
    let fields = catalog.fields(villages.id).await.unwrap();
    let grant = access
        .create_grant(
            &Principal::local_operator(),
            &NewGrant {
                user_id: "analyst".into(),
                dataset_id: villages.id,
                columns: fields
                    .iter()
                    .take(3)
                    .map(|f| GrantColumn {
                        name: f.name.clone(),
                        mask: Mask::None,
                    })
                    .collect(),
                row_filter: None,
                purpose: "村居统计".into(),
                request_id: None,
                starts_at: None,
                expires_at: reservoir_catalog::format_ts(
                    chrono::Utc::now() + chrono::Duration::days(3),
                ),
                hours: None,
                rate_per_minute: None,
                row_quota: None,
            },
        )
        .await
        .unwrap();
    let token = |user: &'static str, grant: Option<i64>| {
        let access = access.clone();
        async move {
            access
                .create_token(user, "t", grant, 1)
                .await
                .unwrap()
                .secret
        }
    };
    let tokens: Vec<(&'static str, Option<String>)> = vec![
        ("operator", Some(token("op", None).await)),
        ("steward", Some(token("mz", None).await)),
        ("consumer", Some(token("analyst", None).await)),
        ("auditor", Some(token("aud", None).await)),
        ("public", None),
        ("scoped", Some(token("analyst", Some(grant.id)).await)),
    ];
    assert!(tokens.iter().map(|(r, _)| *r).eq(ROLES));
    World {
        dir,
        state,
        ragged_run,
        tokens,
    }
}

async fn call(
    w: &World,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<(String, Vec<u8>)>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = match body {
        Some((ctype, bytes)) => req
            .header(header::CONTENT_TYPE, ctype)
            .body(Body::from(bytes))
            .unwrap(),
        None => req.body(Body::empty()).unwrap(),
    };
    let resp = app(w.state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, value)
}

fn json_body(v: Value) -> Option<(String, Vec<u8>)> {
    Some(("application/json".into(), v.to_string().into_bytes()))
}

fn upload_body() -> Option<(String, Vec<u8>)> {
    let boundary = "----matrix";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.csv\"\r\n\
         Content-Type: text/csv\r\n\r\nname,count\nalpha,1\n\r\n--{boundary}--\r\n"
    );
    Some((
        format!("multipart/form-data; boundary={boundary}"),
        body.into_bytes(),
    ))
}

const RULES: &str = "rules:\n  - name: code present\n    check: not_null\n    column: code\n";

/// A request body: its content type and bytes.
type ReqBody = (String, Vec<u8>);

/// One row of the matrix: a request and the status each role gets, in [`ROLES`] order.
struct Case {
    method: &'static str,
    uri: String,
    body: fn(&str) -> Option<ReqBody>,
    expect: [u16; 6],
}

fn none(_: &str) -> Option<(String, Vec<u8>)> {
    None
}

#[tokio::test]
async fn authorization_matrix() {
    let w = world().await;
    let run = w.ragged_run;
    // operator, steward (minzheng), consumer (tongji, granted minzheng.villages), auditor,
    // public, token scoped to the consumer's grant.
    let cases: Vec<Case> = vec![
        Case {
            method: "GET",
            uri: "/api/v1/openapi.json".into(),
            body: none,
            expect: [200, 200, 200, 200, 200, 200],
        },
        Case {
            method: "GET",
            uri: "/api/v1/auth/me".into(),
            body: none,
            expect: [200, 200, 200, 200, 200, 200],
        },
        Case {
            method: "GET",
            uri: "/api/v1/stats".into(),
            body: none,
            expect: [200, 200, 200, 200, 401, 200],
        },
        Case {
            method: "GET",
            uri: "/api/v1/units".into(),
            body: none,
            expect: [200, 200, 200, 200, 401, 200],
        },
        Case {
            method: "GET",
            uri: "/api/v1/units/minzheng".into(),
            body: none,
            expect: [200, 200, 200, 200, 401, 200],
        },
        Case {
            method: "GET",
            uri: "/api/v1/systems".into(),
            body: none,
            expect: [200, 200, 200, 200, 401, 200],
        },
        Case {
            method: "GET",
            uri: "/api/v1/datasets".into(),
            body: none,
            expect: [200, 200, 200, 200, 401, 200],
        },
        Case {
            method: "GET",
            uri: "/api/v1/datasets/raw/minzheng/villages".into(),
            body: none,
            expect: [200, 200, 200, 200, 401, 200],
        },
        Case {
            method: "GET",
            uri: "/api/v1/datasets/raw/minzheng/villages/runs".into(),
            body: none,
            expect: [200, 200, 200, 200, 401, 200],
        },
        Case {
            method: "GET",
            uri: "/api/v1/datasets/raw/minzheng/villages/lineage".into(),
            body: none,
            expect: [200, 200, 200, 200, 401, 200],
        },
        Case {
            method: "GET",
            uri: "/api/v1/lineage".into(),
            body: none,
            expect: [200, 200, 200, 200, 401, 200],
        },
        Case {
            method: "GET",
            uri: "/api/v1/runs".into(),
            body: none,
            expect: [200, 200, 200, 200, 401, 200],
        },
        Case {
            method: "GET",
            uri: format!("/api/v1/runs/{run}"),
            body: none,
            expect: [200, 200, 200, 200, 401, 200],
        },
        // rows: own unit / granted vs other unit
        Case {
            method: "GET",
            uri: "/api/v1/datasets/raw/minzheng/villages/sample".into(),
            body: none,
            expect: [200, 200, 200, 403, 401, 200],
        },
        Case {
            method: "GET",
            uri: "/api/v1/datasets/raw/tongji/gdp/sample".into(),
            body: none,
            expect: [200, 403, 403, 403, 401, 403],
        },
        Case {
            method: "GET",
            uri: "/api/v1/data/minzheng/villages".into(),
            body: none,
            expect: [200, 200, 200, 403, 401, 200],
        },
        Case {
            method: "GET",
            uri: "/api/v1/data/tongji/gdp".into(),
            body: none,
            expect: [200, 403, 403, 403, 401, 403],
        },
        Case {
            method: "GET",
            uri: format!("/api/v1/runs/{run}/quarantine"),
            body: none,
            expect: [200, 403, 403, 403, 401, 403],
        },
        Case {
            method: "POST",
            uri: "/api/v1/sql".into(),
            body: |_| json_body(json!({"sql": "SELECT count(*) FROM minzheng.villages"})),
            expect: [200, 200, 200, 400, 401, 200],
        },
        Case {
            method: "POST",
            uri: "/api/v1/sql".into(),
            body: |_| json_body(json!({"sql": "SELECT count(*) FROM tongji.gdp"})),
            expect: [200, 400, 400, 400, 401, 400],
        },
        // oversight
        Case {
            method: "GET",
            uri: "/api/v1/units/minzheng/report".into(),
            body: none,
            expect: [200, 200, 403, 200, 401, 403],
        },
        Case {
            method: "GET",
            uri: "/api/v1/units/tongji/report".into(),
            body: none,
            expect: [200, 403, 403, 200, 401, 403],
        },
        Case {
            method: "GET",
            uri: "/api/v1/alerts".into(),
            body: none,
            expect: [200, 200, 403, 200, 401, 403],
        },
        Case {
            method: "GET",
            uri: "/api/v1/audit".into(),
            body: none,
            expect: [200, 403, 403, 200, 401, 403],
        },
        Case {
            method: "GET",
            uri: "/api/v1/audit/verify".into(),
            body: none,
            expect: [200, 403, 403, 200, 401, 403],
        },
        Case {
            method: "GET",
            uri: "/api/v1/usage".into(),
            body: none,
            expect: [200, 200, 200, 200, 401, 200],
        },
        // stewardship: own unit vs other unit
        Case {
            method: "GET",
            uri: "/api/v1/datasets/raw/minzheng/villages/rules".into(),
            body: none,
            expect: [404, 404, 404, 404, 401, 404],
        },
        Case {
            method: "PUT",
            uri: "/api/v1/datasets/raw/minzheng/villages/rules".into(),
            body: |_| json_body(json!({"yaml": RULES})),
            expect: [200, 200, 403, 403, 401, 403],
        },
        Case {
            method: "PUT",
            uri: "/api/v1/datasets/raw/tongji/gdp/rules".into(),
            body: |_| json_body(json!({"yaml": RULES})),
            expect: [200, 403, 403, 403, 401, 403],
        },
        Case {
            method: "POST",
            uri: "/api/v1/datasets/raw/minzheng/uploaded/upload".into(),
            body: |_| upload_body(),
            expect: [201, 201, 403, 403, 401, 403],
        },
        Case {
            method: "POST",
            uri: "/api/v1/datasets/raw/tongji/uploaded/upload".into(),
            body: |_| upload_body(),
            expect: [201, 403, 403, 403, 401, 403],
        },
        // administration
        Case {
            method: "GET",
            uri: "/api/v1/sources".into(),
            body: none,
            expect: [200, 403, 403, 403, 401, 403],
        },
        Case {
            method: "GET",
            uri: "/api/v1/users".into(),
            body: none,
            expect: [200, 403, 403, 403, 401, 403],
        },
        Case {
            method: "POST",
            uri: "/api/v1/users".into(),
            body: |role| {
                json_body(
                    json!({"login": format!("new-{role}"), "role": "auditor", "password": "Brand-new-pass-1"}),
                )
            },
            expect: [201, 403, 403, 403, 401, 403],
        },
        Case {
            method: "PATCH",
            uri: "/api/v1/users/aud".into(),
            body: |_| json_body(json!({"disabled": false})),
            expect: [200, 403, 403, 403, 401, 403],
        },
        // sharing workflow
        Case {
            method: "GET",
            uri: "/api/v1/requests".into(),
            body: none,
            expect: [200, 200, 200, 200, 401, 200],
        },
        Case {
            method: "GET",
            uri: "/api/v1/grants".into(),
            body: none,
            expect: [200, 200, 200, 200, 401, 200],
        },
        Case {
            method: "GET",
            uri: "/api/v1/tokens".into(),
            body: none,
            expect: [200, 200, 200, 200, 401, 200],
        },
        Case {
            method: "POST",
            uri: "/api/v1/tokens".into(),
            body: |_| json_body(json!({"name": "x", "days": 1})),
            expect: [201, 201, 201, 201, 401, 403],
        },
    ];
    let mut failures = Vec::new();
    for case in &cases {
        for (i, (role, token)) in w.tokens.iter().enumerate() {
            let (status, body) = call(
                &w,
                case.method,
                &case.uri,
                token.as_deref(),
                (case.body)(role),
            )
            .await;
            let expected = case.expect[i];
            if status.as_u16() != expected {
                failures.push(format!(
                    "{} {} as {role}: got {status}, expected {expected}: {body}",
                    case.method, case.uri
                ));
            }
            if status.is_client_error() && !body.is_null() {
                assert!(
                    body["code"].is_string() && body["message"].is_string(),
                    "{body}"
                );
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn requests_flow_through_the_api_and_consumers_see_masked_filtered_rows() {
    let w = world().await;
    let token = |role: &str| {
        w.tokens
            .iter()
            .find(|(r, _)| *r == role)
            .and_then(|(_, t)| t.clone())
            .unwrap()
    };
    let catalog = w.state.catalog();
    let villages = catalog
        .dataset("raw", "minzheng", "villages")
        .await
        .unwrap()
        .unwrap();
    let fields: Vec<String> = catalog
        .fields(villages.id)
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .filter(|n| !n.starts_with('_'))
        .collect();
    let name_col = fields[1].clone();
    let today = chrono::Utc::now().date_naive();
    let (status, request) = call(
        &w,
        "POST",
        "/api/v1/requests",
        Some(&token("consumer")),
        json_body(json!({
            "dataset_id": villages.id,
            "columns": fields,
            "purpose": "按街道统计村居数量",
            "period_start": today.to_string(),
            "period_end": (today + chrono::Duration::days(30)).to_string()
        })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{request}");
    let id = request["id"].as_i64().unwrap();

    // The consumer cannot approve its own request; the steward of another unit neither.
    let (status, _) = call(
        &w,
        "POST",
        &format!("/api/v1/requests/{id}/approve"),
        Some(&token("consumer")),
        json_body(json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A row filter that does not fit the table is refused with the reason.
    let (status, body) = call(
        &w,
        "POST",
        &format!("/api/v1/requests/{id}/approve"),
        Some(&token("steward")),
        json_body(json!({"row_filter": "no_such_column = 1"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // The steward narrows to a masked column and a row filter on the first street's code.
    let first = w
        .state
        .catalog()
        .dataset("raw", "minzheng", "villages")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.id, villages.id);
    let streets: Vec<String> = {
        let (_, body) = call(
            &w,
            "POST",
            "/api/v1/sql",
            Some(&token("operator")),
            json_body(json!({"sql": format!("SELECT DISTINCT \"{}\" FROM minzheng.villages ORDER BY 1", fields[0])})),
        )
        .await;
        body["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r[0].as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| r[0].to_string())
            })
            .collect()
    };
    let street = streets[0].clone();
    let (status, grant) = call(
        &w,
        "POST",
        &format!("/api/v1/requests/{id}/approve"),
        Some(&token("steward")),
        json_body(json!({
            "columns": [fields[0].clone(), name_col.clone()],
            "masks": {name_col.clone(): {"kind": "keep", "first": 1, "last": 0}},
            "row_filter": format!("CAST(\"{}\" AS VARCHAR) = '{}'", fields[0], street),
        })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{grant}");

    // The consumer reads: only that street's rows, the name masked.
    let (status, page) = call(
        &w,
        "GET",
        &format!("/api/v1/data/minzheng/villages?limit=1000&sort={name_col}"),
        Some(&token("consumer")),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let raw_rows = {
        let (_, body) = call(
            &w,
            "POST",
            "/api/v1/sql",
            Some(&token("operator")),
            json_body(json!({"sql": format!(
                "SELECT \"{name_col}\" FROM minzheng.villages WHERE CAST(\"{}\" AS VARCHAR) = '{street}'",
                fields[0]
            )})),
        )
        .await;
        body["rows"].as_array().unwrap().clone()
    };
    assert_eq!(
        page["total"].as_i64().unwrap() as usize,
        raw_rows.len(),
        "{page}"
    );
    let columns: Vec<&str> = page["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(columns, [fields[0].as_str(), name_col.as_str()]);
    for row in page["rows"].as_array().unwrap() {
        let name = row[1].as_str().unwrap();
        assert!(name.chars().skip(1).all(|c| c == '*'), "unmasked: {name}");
    }
    for raw in &raw_rows {
        let full = raw[0].as_str().unwrap();
        if full.chars().count() > 1 {
            assert!(!page.to_string().contains(full), "{full} leaked");
        }
    }
    // Formats: CSV with a BOM, Parquet, Arrow.
    for (format, magic) in [
        ("csv", &b"\xEF\xBB\xBF"[..]),
        ("parquet", b"PAR1"),
        ("arrow", b"\xFF\xFF\xFF\xFF"),
    ] {
        let req = Request::get(format!("/api/v1/data/minzheng/villages?format={format}"))
            .header(
                header::AUTHORIZATION,
                format!("Bearer {}", token("consumer")),
            )
            .body(Body::empty())
            .unwrap();
        let resp = app(w.state.clone()).oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{format}");
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        assert!(
            bytes.starts_with(magic),
            "{format}: {:?}",
            &bytes[..8.min(bytes.len())]
        );
    }
    // Bypass attempts through the data API: ungranted columns, filters on them, bad filters.
    for uri in [
        format!("/api/v1/data/minzheng/villages?columns={}", fields[2]),
        format!("/api/v1/data/minzheng/villages?{}=eq.x", fields[2]),
        format!("/api/v1/data/minzheng/villages?sort={}", fields[2]),
        format!("/api/v1/data/minzheng/villages?{name_col}=zz.1"),
    ] {
        let (status, body) = call(&w, "GET", &uri, Some(&token("consumer")), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
    }
    // Probing the masked column by filter finds nothing of the raw value.
    let raw_name = raw_rows[0][0].as_str().unwrap();
    let (_, body) = call(
        &w,
        "GET",
        &format!(
            "/api/v1/data/minzheng/villages?{name_col}=eq.{}",
            urlencode(raw_name)
        ),
        Some(&token("consumer")),
        None,
    )
    .await;
    assert_eq!(body["total"], 0, "{body}");

    // EXPLAIN answers, showing the policy scan and nothing under it.
    let (status, body) = call(
        &w,
        "POST",
        "/api/v1/sql",
        Some(&token("consumer")),
        json_body(json!({"sql": "EXPLAIN SELECT * FROM minzheng.villages"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.to_string().contains("PolicyScan: minzheng.villages"),
        "{body}"
    );
    // The audit names the columns read, not the query's aliases.
    let (status, _) = call(
        &w,
        "POST",
        "/api/v1/sql",
        Some(&token("consumer")),
        json_body(
            json!({"sql": format!("SELECT \"{name_col}\" AS harmless FROM minzheng.villages")}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, entries) = call(
        &w,
        "GET",
        "/api/v1/audit?action=sql.query&limit=1",
        Some(&token("auditor")),
        None,
    )
    .await;
    let columns = entries[0]["columns"].as_str().unwrap();
    assert!(
        columns.contains(&format!("villages.{name_col}")) && !columns.contains("harmless"),
        "{entries}"
    );

    // A steward's rule may not join a dataset of a unit it does not steward.
    let (status, body) = call(
        &w,
        "PUT",
        "/api/v1/datasets/raw/minzheng/villages/rules",
        Some(&token("steward")),
        json_body(json!({"yaml": "rules:\n  - {check: consistent, column: code, reference: tongji.gdp, on: [name]}\n"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("tongji"),
        "{body}"
    );

    // Every read is audited and metered.
    let (_, entries) = call(
        &w,
        "GET",
        "/api/v1/audit?action=data.read",
        Some(&token("auditor")),
        None,
    )
    .await;
    let reads: Vec<&Value> = entries
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"] == "analyst" && e["outcome"] == "ok")
        .collect();
    assert!(reads.len() >= 4, "{entries}");
    assert_eq!(reads[0]["grant_id"], grant["id"]);
    assert_eq!(reads[0]["purpose"], "按街道统计村居数量");
    let (_, usage) = call(&w, "GET", "/api/v1/usage", Some(&token("consumer")), None).await;
    assert!(
        usage
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["principal"] == "analyst"),
        "{usage}"
    );
    assert!(usage[0]["rows_served"].as_i64().unwrap() > 0, "{usage}");
    let (_, verdict) = call(
        &w,
        "GET",
        "/api/v1/audit/verify",
        Some(&token("auditor")),
        None,
    )
    .await;
    assert!(verdict["broken"].is_null(), "{verdict}");
    drop(w.dir);
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn tokens_expired_revoked_or_malformed_are_refused() {
    let w = world().await;
    let access = w.state.access().clone();
    let issued = access
        .create_token("analyst", "old", None, 1)
        .await
        .unwrap();
    let (status, _) = call(&w, "GET", "/api/v1/stats", Some(&issued.secret), None).await;
    assert_eq!(status, StatusCode::OK);
    access.revoke_token(&issued.token.id).await.unwrap();
    let (status, body) = call(&w, "GET", "/api/v1/stats", Some(&issued.secret), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body["message"].as_str().unwrap().contains("revoked"),
        "{body}"
    );

    let expired = access
        .create_token("analyst", "exp", None, 1)
        .await
        .unwrap();
    let db = w.dir.path().join("c.db");
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
        "sqlite://{}",
        db.display()
    ))
    .await
    .unwrap();
    sqlx::query("UPDATE api_tokens SET expires_at = '2020-01-01T00:00:00.000000Z' WHERE id = $1")
        .bind(&expired.token.id)
        .execute(&mut conn)
        .await
        .unwrap();
    let (status, body) = call(&w, "GET", "/api/v1/stats", Some(&expired.secret), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body["message"].as_str().unwrap().contains("expired"),
        "{body}"
    );

    for bad in ["rsv_nope", "something", "rsv_0000_1111"] {
        let (status, _) = call(&w, "GET", "/api/v1/stats", Some(bad), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{bad}");
    }
    // A flood of bad tokens is cut off (and stops filling the audit log).
    let mut limited = false;
    for i in 0..40 {
        let (status, _) = call(
            &w,
            "GET",
            "/api/v1/stats",
            Some(&format!("rsv_x_{i}")),
            None,
        )
        .await;
        limited |= status == StatusCode::TOO_MANY_REQUESTS;
    }
    assert!(
        limited,
        "40 bad tokens in a row were never refused with 429"
    );
    // Refusals are audited.
    let denied = access
        .audit_entries(&reservoir_access::AuditFilter {
            action: Some("auth.token".into()),
            outcome: Some("denied".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(denied.len() >= 5, "{denied:?}");
}

#[tokio::test]
async fn sessions_need_csrf_and_a_changed_password() {
    let w = world().await;
    let access = w.state.access().clone();
    access
        .create_user(&NewUser {
            id: "newbie".into(),
            display_name: String::new(),
            role: Role::Consumer,
            unit_id: Some("tongji".into()),
            password: "First-password-1".into(),
            must_change: true,
        })
        .await
        .unwrap();
    let login = |password: &'static str| {
        let state = w.state.clone();
        async move {
            let req = Request::post("/api/v1/auth/login")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(
                    json!({"login": "newbie", "password": password}).to_string(),
                ))
                .unwrap();
            app(state).oneshot(req).await.unwrap()
        }
    };
    let resp = login("wrong-password").await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = login("First-password-1").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let cookies: Vec<String> = resp
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let session_cookie = cookies
        .iter()
        .find(|c| c.starts_with("rsv_session="))
        .unwrap();
    assert!(session_cookie.contains("HttpOnly"), "{session_cookie}");
    assert!(
        session_cookie.contains("SameSite=Strict"),
        "{session_cookie}"
    );
    assert!(session_cookie.contains("Secure"), "{session_cookie}");
    let session = session_cookie.split(';').next().unwrap().to_string();
    let body: Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    let csrf = body["csrf_token"].as_str().unwrap().to_string();
    assert_eq!(body["me"]["must_change"], true);

    let with_session = |method: &str, uri: &str, csrf: Option<&str>, body: Option<Value>| {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::COOKIE, session.clone());
        if let Some(c) = csrf {
            req = req.header("x-csrf-token", c);
        }
        let req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b.to_string()))
                .unwrap(),
            None => req.body(Body::empty()).unwrap(),
        };
        let state = w.state.clone();
        async move {
            let resp = app(state).oneshot(req).await.unwrap();
            let status = resp.status();
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            (
                status,
                serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null),
            )
        }
    };
    // A new account must change its password before anything else.
    let (status, body) = with_session("GET", "/api/v1/stats", None, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["code"], "password_change_required");
    // Without the CSRF token, a state-changing request is refused.
    let change = json!({"current": "First-password-1", "new": "Second-password-2"});
    let (status, body) =
        with_session("POST", "/api/v1/auth/password", None, Some(change.clone())).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body["message"].as_str().unwrap().contains("CSRF"), "{body}");
    let (status, _) = with_session(
        "POST",
        "/api/v1/auth/password",
        Some("forged"),
        Some(change.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) =
        with_session("POST", "/api/v1/auth/password", Some(&csrf), Some(change)).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    // The change ended the session.
    let (status, _) = with_session("GET", "/api/v1/stats", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let resp = login("Second-password-2").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let events = access
        .audit_entries(&reservoir_access::AuditFilter {
            action: Some("auth.login".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.outcome == "denied" && e.actor == "newbie")
    );
    assert!(
        events
            .iter()
            .any(|e| e.outcome == "ok" && e.actor == "newbie")
    );
}

#[tokio::test]
async fn grants_outside_their_hours_or_over_their_quota_are_withheld_and_alerted() {
    use chrono::Timelike;
    let w = world().await;
    let access = w.state.access().clone();
    let catalog = w.state.catalog().clone();
    let gdp = catalog
        .dataset("raw", "tongji", "gdp")
        .await
        .unwrap()
        .unwrap();
    let column = catalog.fields(gdp.id).await.unwrap()[0].name.clone();
    // A window of hours (UTC+8) that excludes this hour.
    let hour = (chrono::Utc::now() + chrono::Duration::hours(8)).hour();
    let hours = if hour < 23 {
        format!("{}-24", hour + 1)
    } else {
        "00-23".to_string()
    };
    let grant = |hours: Option<String>, quota: Option<i64>| NewGrant {
        user_id: "analyst".into(),
        dataset_id: gdp.id,
        columns: vec![GrantColumn {
            name: column.clone(),
            mask: Mask::None,
        }],
        row_filter: None,
        purpose: "夜间不得访问".into(),
        request_id: None,
        starts_at: None,
        expires_at: reservoir_catalog::format_ts(chrono::Utc::now() + chrono::Duration::days(1)),
        hours,
        rate_per_minute: None,
        row_quota: quota,
    };
    access
        .create_grant(
            &Principal::local_operator(),
            &grant(Some(hours.clone()), None),
        )
        .await
        .unwrap();
    let token = w.tokens[2].1.clone().unwrap();
    let (status, body) = call(&w, "GET", "/api/v1/data/tongji/gdp", Some(&token), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("outside the grant's hours"),
        "{body}"
    );
    let (status, body) = call(
        &w,
        "POST",
        "/api/v1/sql",
        Some(&token),
        json_body(json!({"sql": "SELECT count(*) FROM tongji.gdp"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let alerts = catalog.alerts(true, 50).await.unwrap();
    assert!(
        alerts.iter().any(|a| a.kind == "outside_hours"),
        "{alerts:?}"
    );

    // A quota: reads stop at it, and it counts the rows a query reads, not the ones it returns.
    access
        .create_grant(&Principal::local_operator(), &grant(None, Some(5)))
        .await
        .unwrap();
    for sql in [
        "SELECT count(*) FROM tongji.gdp".to_string(),
        format!("SELECT string_agg(CAST(\"{column}\" AS VARCHAR), ';') FROM tongji.gdp"),
    ] {
        let (status, body) = call(
            &w,
            "POST",
            "/api/v1/sql",
            Some(&token),
            json_body(json!({"sql": sql})),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{sql}: {body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("allows 5 rows to be read"),
            "{body}"
        );
    }
    let (status, page) = call(
        &w,
        "GET",
        "/api/v1/data/tongji/gdp?limit=100",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["rows"].as_array().unwrap().len(), 5, "{page}");
    assert!(page["total"].is_null(), "no total under a quota: {page}");
    let (status, body) = call(&w, "GET", "/api/v1/data/tongji/gdp", Some(&token), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("quota"),
        "{body}"
    );
}

#[tokio::test]
async fn publishing_needs_the_open_tier_and_uploads_refresh_the_snapshot() {
    let w = world().await;
    let op = w.tokens[0].1.clone().unwrap();
    let steward = w.tokens[1].1.clone().unwrap();
    let uri = "/api/v1/datasets/raw/minzheng/villages/publish";
    let (status, body) = call(&w, "POST", uri, Some(&op), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "not marked open: {body}");
    assert!(
        body["message"].as_str().unwrap().contains("无条件开放"),
        "{body}"
    );

    let catalog = w.state.catalog();
    let d = catalog
        .dataset("raw", "minzheng", "villages")
        .await
        .unwrap()
        .unwrap();
    catalog
        .upsert_dataset(&reservoir_catalog::DatasetSpec {
            layer: d.layer.clone(),
            unit_id: d.unit_id.clone(),
            name: d.name.clone(),
            title: d.title.clone(),
            description: d.description.clone(),
            system_id: d.system_id.clone(),
            location: d.location.clone(),
            update_frequency: d.update_frequency,
            sensitivity: d.sensitivity,
            open_tier: reservoir_catalog::OpenTier::Open,
        })
        .await
        .unwrap();
    // Other units' stewards may not publish it; its own may.
    let consumer = w.tokens[2].1.clone().unwrap();
    let (status, _) = call(&w, "POST", uri, Some(&consumer), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, p) = call(&w, "POST", uri, Some(&steward), None).await;
    assert_eq!(status, StatusCode::OK, "{p}");
    assert_eq!(
        (p["version"].as_i64(), p["row_count"].as_i64()),
        (Some(0), Some(386)),
        "{p}"
    );

    // A new delivery through the API refreshes the open snapshot.
    let boundary = "----refresh";
    let csv = "code,name,streetCode,provinceCode,cityCode,areaCode\n310117999001,测试居委会,310117999,31,3101,310117\n";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"more.csv\"\r\n\
         Content-Type: text/csv\r\n\r\n{csv}\r\n--{boundary}--\r\n"
    );
    let (status, report) = call(
        &w,
        "POST",
        "/api/v1/datasets/raw/minzheng/villages/upload",
        Some(&steward),
        Some((
            format!("multipart/form-data; boundary={boundary}"),
            body.into_bytes(),
        )),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{report}");
    let notes = report["notes"].to_string();
    assert!(
        notes.contains("open snapshot published again: version 1, 387 rows"),
        "{report}"
    );
}

#[tokio::test]
async fn people_without_an_account_apply_for_conditional_data() {
    let w = world().await;
    let catalog = w.state.catalog();
    let d = catalog
        .dataset("raw", "minzheng", "villages")
        .await
        .unwrap()
        .unwrap();
    let application = |login: &str, dataset_id: i64, code: Option<&str>| {
        json_body(json!({
            "login": login, "password": "Apply-pass-2026", "name": "李明",
            "organization": "上海松江数据科技有限公司", "credit_code": code,
            "contact": "021-57000000", "dataset_id": dataset_id,
            "purpose": "社区服务研究", "period_start": "2026-01-01", "period_end": "2099-12-31",
        }))
    };
    let uri = "/api/v1/open/applications";
    // Only conditionally open datasets take applications (villages is not marked so yet).
    let (status, body) = call(&w, "POST", uri, None, application("liming", d.id, None)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    catalog
        .upsert_dataset(&reservoir_catalog::DatasetSpec {
            layer: d.layer.clone(),
            unit_id: d.unit_id.clone(),
            name: d.name.clone(),
            title: d.title.clone(),
            description: d.description.clone(),
            system_id: d.system_id.clone(),
            location: d.location.clone(),
            update_frequency: d.update_frequency,
            sensitivity: d.sensitivity,
            open_tier: reservoir_catalog::OpenTier::Conditional,
        })
        .await
        .unwrap();
    // A credit code with a wrong check character is refused, and leaves no account.
    let (status, body) = call(
        &w,
        "POST",
        uri,
        None,
        application("liming", d.id, Some("91310117MA1J3K5L7A")),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("unified social credit code"),
        "{body}"
    );
    assert!(w.state.access().user("liming").await.unwrap().is_none());
    // A logged-in caller applies from its own account instead.
    let (status, _) = call(
        &w,
        "POST",
        uri,
        Some(w.tokens[2].1.as_deref().unwrap()),
        application("someone", d.id, None),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, receipt) = call(
        &w,
        "POST",
        uri,
        None,
        application("liming", d.id, Some("91310117MA1J3K5L7L")),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{receipt}");
    assert_eq!(receipt["login"], "liming");
    assert_eq!(receipt["request"]["status"], "pending");
    let purpose = receipt["request"]["purpose"].as_str().unwrap();
    assert!(
        purpose.contains("上海松江数据科技有限公司") && purpose.contains("91310117MA1J3K5L7L"),
        "{purpose}"
    );
    // The applicant is a consumer without a unit, with what it registered on record, and sees
    // nothing until the steward approves.
    let access = w.state.access();
    let user = access.user("liming").await.unwrap().unwrap();
    assert_eq!((user.role, user.unit_id.as_deref()), (Role::Consumer, None));
    let applicant = access.applicant("liming").await.unwrap().unwrap();
    assert_eq!(applicant.credit_code.as_deref(), Some("91310117MA1J3K5L7L"));
    let visibility = access.visibility(&Principal::of(&user)).await.unwrap();
    assert!(visibility.grants().is_empty());
    // The steward of minzheng sees the request.
    let (status, list) = call(
        &w,
        "GET",
        "/api/v1/requests",
        Some(w.tokens[1].1.as_deref().unwrap()),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|r| r["requester"] == "liming"),
        "{list}"
    );
    // The login is taken now; and an address gets five applications an hour. Forms refused for
    // a mistake do not count against it.
    let (status, _) = call(&w, "POST", uri, None, application("liming", d.id, None)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    for i in 0..6 {
        let (status, _) = call(
            &w,
            "POST",
            uri,
            None,
            application(&format!("typo{i}"), d.id, Some("bad")),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
    let (mut filed, mut limited) = (1, false);
    for i in 0..6 {
        let (status, body) = call(
            &w,
            "POST",
            uri,
            None,
            application(&format!("someone{i}"), d.id, None),
        )
        .await;
        match status {
            StatusCode::CREATED => filed += 1,
            StatusCode::TOO_MANY_REQUESTS => limited = true,
            other => panic!("{other} {body}"),
        }
    }
    assert!(limited, "no rate limit on applications");
    assert_eq!(filed, 5);
    let entries = access
        .audit_entries(&reservoir_access::AuditFilter {
            action: Some("open.apply".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(entries.len(), 5);
    assert!(entries.iter().any(|e| e.actor == "liming"), "{entries:?}");
}

#[tokio::test]
async fn superseded_grants_share_nothing_and_scoped_tokens_issue_no_profiles() {
    let w = world().await;
    let consumer = w.tokens[2].1.clone().unwrap();
    let scoped = w.tokens[5].1.clone().unwrap();
    let access = w.state.access().clone();
    let old = access.grants(Some("analyst"), None).await.unwrap()[0].clone();
    let profile = |id: i64| format!("/api/v1/grants/{id}/sharing-profile");

    // A token scoped to a grant issues no profile (its token would outlive the scope).
    let (status, body) = call(&w, "POST", &profile(old.id), Some(&scoped), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = call(&w, "POST", &profile(old.id), Some(&consumer), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A newer, narrower grant on the same dataset supersedes the old one: no profile of the
    // old grant, and the token scoped to it sees nothing of the dataset.
    let newer = access
        .create_grant(
            &Principal::local_operator(),
            &NewGrant {
                user_id: "analyst".into(),
                dataset_id: old.dataset_id,
                columns: vec![GrantColumn {
                    name: old.columns[0].name.clone(),
                    mask: Mask::Redact,
                }],
                row_filter: None,
                purpose: "收窄".into(),
                request_id: None,
                starts_at: None,
                expires_at: old.expires_at.clone(),
                hours: None,
                rate_per_minute: None,
                row_quota: None,
            },
        )
        .await
        .unwrap();
    let (status, body) = call(&w, "POST", &profile(old.id), Some(&consumer), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body.to_string()
            .contains(&format!("superseded by grant {}", newer.id)),
        "{body}"
    );
    let sql = |t: &str| {
        let w = &w;
        let t = t.to_string();
        async move {
            call(
                w,
                "POST",
                "/api/v1/sql",
                Some(&t),
                json_body(serde_json::json!({"sql": "SELECT * FROM minzheng.villages LIMIT 3"})),
            )
            .await
        }
    };
    let (status, body) = sql(&scoped).await;
    assert!(status.is_client_error(), "{status} {body}");
    assert!(body.to_string().contains("not found"), "{body}");
    // Unscoped, the consumer reads through the newest grant: one column, redacted.
    let (status, body) = sql(&consumer).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let columns = body["columns"].as_array().unwrap();
    assert_eq!(columns.len(), 1, "{body}");
    assert!(
        body["rows"].as_array().unwrap().iter().all(|r| r[0]
            .as_str()
            .unwrap()
            .chars()
            .all(|c| c == '*')),
        "{body}"
    );
}

#[tokio::test]
async fn a_failed_query_is_audited_against_its_table_without_the_values_it_quoted() {
    let w = world().await;
    let steward = w.tokens[1].1.clone().unwrap();
    let (status, body) = call(
        &w,
        "POST",
        "/api/v1/sql",
        Some(&steward),
        json_body(serde_json::json!({"sql": "SELECT CAST(name AS INT) FROM minzheng.villages"})),
    )
    .await;
    assert!(!status.is_success(), "{body}");
    // The steward is told which value failed; the audit log, which auditors read, is not.
    let village = body.to_string();
    let quoted = village
        .split('\'')
        .nth(1)
        .unwrap_or_else(|| panic!("no value quoted in {village}"))
        .to_string();
    let entries = w
        .state
        .access()
        .audit_entries(&reservoir_access::AuditFilter {
            actor: Some("mz".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let failed = entries
        .iter()
        .find(|e| e.detail.contains("CAST(name AS INT)"))
        .expect("the failed query is audited");
    assert_eq!(failed.target, "minzheng.villages", "{failed:?}");
    assert!(failed.columns.contains("name"), "{failed:?}");
    assert!(!failed.detail.contains(&quoted), "{failed:?}");
    assert!(failed.detail.contains("'…'"), "{failed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_sharing_draws_on_the_quota_sql_draws_on() {
    let w = world().await;
    let consumer = w.tokens[2].1.clone().unwrap();
    let access = w.state.access().clone();
    let old = access.grants(Some("analyst"), None).await.unwrap()[0].clone();
    // A quota of one read of the 386 villages.
    access
        .create_grant(
            &Principal::local_operator(),
            &NewGrant {
                user_id: "analyst".into(),
                dataset_id: old.dataset_id,
                columns: old.columns.clone(),
                row_filter: None,
                purpose: "配额".into(),
                request_id: None,
                starts_at: None,
                expires_at: old.expires_at.clone(),
                hours: None,
                rate_per_minute: None,
                row_quota: Some(386),
            },
        )
        .await
        .unwrap();
    let query = "/delta-sharing/shares/reservoir/schemas/minzheng/tables/villages/query";
    // The snapshot is made on the first request; then two at once: one is served.
    let (status, body) = call(
        &w,
        "GET",
        "/delta-sharing/shares/reservoir/schemas/minzheng/tables/villages/version",
        Some(&consumer),
        None,
    )
    .await;
    assert!(status.is_success(), "{status} {body}");
    let (a, b) = tokio::join!(
        call(&w, "POST", query, Some(&consumer), json_body(json!({}))),
        call(&w, "POST", query, Some(&consumer), json_body(json!({}))),
    );
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::OK, StatusCode::FORBIDDEN],
        "{a:?} {b:?}"
    );
    // SQL draws on the same quota: nothing is left.
    let (status, body) = call(
        &w,
        "POST",
        "/api/v1/sql",
        Some(&consumer),
        json_body(json!({"sql": "SELECT count(*) FROM minzheng.villages"})),
    )
    .await;
    assert!(status.is_client_error(), "{status} {body}");
    assert!(body.to_string().contains("quota"), "{body}");
}

/// A request's status and raw body (Delta Sharing answers newline-delimited JSON).
async fn call_text(
    w: &World,
    method: &str,
    uri: &str,
    token: &str,
    body: &str,
) -> (StatusCode, String) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = app(w.state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_snapshots_are_made_once_and_superseded_grants_lose_their_file_urls() {
    let w = world().await;
    let consumer = w.tokens[2].1.clone().unwrap();
    let access = w.state.access().clone();
    let old = access.grants(Some("analyst"), None).await.unwrap()[0].clone();
    let query = "/delta-sharing/shares/reservoir/schemas/minzheng/tables/villages/query";

    // Three first requests at once: the snapshot is made once and every request is answered.
    let (a, b, c) = tokio::join!(
        call_text(&w, "POST", query, &consumer, "{}"),
        call_text(&w, "POST", query, &consumer, "{}"),
        call_text(&w, "POST", query, &consumer, "{}"),
    );
    for (status, body) in [&a, &b, &c] {
        assert_eq!(*status, StatusCode::OK, "{body}");
    }
    let version = |body: &str| -> Vec<i64> {
        body.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| v["file"]["version"].as_i64())
            .collect()
    };
    assert_eq!(version(&a.1), version(&b.1), "{} {}", a.1, b.1);
    assert_eq!(version(&a.1), version(&c.1), "{} {}", a.1, c.1);
    let urls: Vec<String> =
        a.1.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| v["file"]["url"].as_str().map(str::to_string))
            .collect();
    assert!(!urls.is_empty(), "{}", a.1);
    let path = |url: &str| url[url.find("/delta-sharing/").unwrap()..].to_string();
    let fetch = |uri: String| {
        let w = &w;
        async move {
            let req = Request::builder().uri(uri).body(Body::empty()).unwrap();
            let resp = app(w.state.clone()).oneshot(req).await.unwrap();
            let status = resp.status();
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            (status, bytes)
        }
    };
    let (status, bytes) = fetch(path(&urls[0])).await;
    assert_eq!(status, StatusCode::OK);
    assert!(bytes.starts_with(b"PAR1"), "not a Parquet file");

    // A newer grant on the dataset takes the old one's place: its file URLs stop at once.
    access
        .create_grant(
            &Principal::local_operator(),
            &NewGrant {
                user_id: "analyst".into(),
                dataset_id: old.dataset_id,
                columns: vec![GrantColumn {
                    name: old.columns[0].name.clone(),
                    mask: Mask::Redact,
                }],
                row_filter: None,
                purpose: "收窄".into(),
                request_id: None,
                starts_at: None,
                expires_at: old.expires_at.clone(),
                hours: None,
                rate_per_minute: None,
                row_quota: None,
            },
        )
        .await
        .unwrap();
    let (status, bytes) = fetch(path(&urls[0])).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        String::from_utf8_lossy(&bytes).contains("superseded"),
        "{bytes:?}"
    );
}
