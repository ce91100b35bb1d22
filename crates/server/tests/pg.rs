//! The PostgreSQL wire protocol with a real Rust client (tokio-postgres): logins by password and
//! token, binary parameters and results, prepared statements, grants and masks, read-only,
//! cancellation and timeouts, the system catalog each principal sees, and the audit.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use reservoir_access::mask::MaskKey;
use reservoir_access::{AuditFilter, GrantColumn, Mask, NewGrant, NewUser, Principal, Role};
use reservoir_catalog::Catalog;
use reservoir_ingest::{CollectRequest, Collector, NoProgress};
use reservoir_lake::{Lake, WriteMode};
use reservoir_server::pg::PgConfig;
use reservoir_server::{AppState, ServerConfig};
use reservoir_testkit::shared_data;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

struct World {
    _dir: tempfile::TempDir,
    state: AppState,
    addr: std::net::SocketAddr,
    analyst_token: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn world() -> World {
    world_with(None).await
}

async fn world_with(tls: Option<(PathBuf, PathBuf)>) -> World {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path().join("lake")).unwrap();
    let catalog = Catalog::connect(&format!("sqlite://{}", dir.path().join("c.db").display()))
        .await
        .unwrap();
    let collector = Collector::new(lake.clone(), catalog.clone());
    for (unit, dataset, path) in [
        (
            "minzheng",
            "villages",
            "admin_divisions/songjiang_310117_villages_extract.csv",
        ),
        (
            "minzheng",
            "streets",
            "admin_divisions/songjiang_310117_streets_extract.csv",
        ),
        (
            "tongji",
            "gdp",
            "gov_files/gbk_csv/nbs_export_分省年度数据_地区生产总值_GBK.csv",
        ),
    ] {
        collector
            .collect(
                CollectRequest {
                    unit: unit.into(),
                    dataset: dataset.into(),
                    files: vec![shared_data(path)],
                    mode: WriteMode::Overwrite,
                    info: reservoir_ingest::DatasetInfo {
                        title: (dataset == "villages").then(|| "松江区村居委会".to_string()),
                        ..Default::default()
                    },
                    ..CollectRequest::default()
                },
                Arc::new(NoProgress),
            )
            .await
            .unwrap();
    }
    let state = AppState::new(lake, catalog.clone(), ServerConfig::default())
        .with_mask_key(Arc::new(MaskKey::from_bytes(b"wire masking key 12345")));
    let access = state.access().clone();
    for (id, role, unit) in [
        ("op", Role::Operator, None),
        ("analyst", Role::Consumer, Some("tongji")),
    ] {
        access
            .create_user(&NewUser {
                id: id.into(),
                display_name: id.into(),
                role,
                unit_id: unit.map(str::to_string),
                password: format!("{id}-Password-1"),
                must_change: false,
            })
            .await
            .unwrap();
    }
    // The analyst sees minzheng.villages: code and street unmasked, the name masked to its
    // first character, and only the villages of street 310117001.
    let villages = catalog
        .dataset("raw", "minzheng", "villages")
        .await
        .unwrap()
        .unwrap();
    access
        .create_grant(
            &Principal::local_operator(),
            &NewGrant {
                user_id: "analyst".into(),
                dataset_id: villages.id,
                columns: vec![
                    GrantColumn {
                        name: "code".into(),
                        mask: Mask::None,
                    },
                    GrantColumn {
                        name: "name".into(),
                        mask: Mask::Keep { first: 1, last: 0 },
                    },
                    GrantColumn {
                        name: "streetCode".into(),
                        mask: Mask::None,
                    },
                ],
                row_filter: Some("\"streetCode\" = '310117001'".into()),
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
    let analyst_token = access
        .create_token("analyst", "bi", None, 1)
        .await
        .unwrap()
        .secret;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = PgConfig {
        bind: addr,
        row_limit: 1000,
        timeout: Duration::from_secs(30),
        tls,
    };
    tokio::spawn(reservoir_server::pg::serve(
        state.clone(),
        config,
        listener,
        async move {
            let _ = stopped.await;
        },
    ));
    World {
        _dir: dir,
        state,
        addr,
        analyst_token,
        _stop: stop,
    }
}

async fn connect(w: &World, user: &str, password: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::Config::new()
        .host(w.addr.ip().to_string())
        .port(w.addr.port())
        .user(user)
        .password(password)
        .dbname("raw")
        .application_name("pg-test")
        .connect(NoTls)
        .await?;
    tokio::spawn(connection);
    Ok(client)
}

fn failed<T>(r: Result<T, tokio_postgres::Error>, what: &str) -> tokio_postgres::Error {
    match r {
        Ok(_) => panic!("expected an error: {what}"),
        Err(e) => e,
    }
}

fn msg(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map_or_else(|| e.to_string(), |d| d.message().to_string())
}

fn code(e: &tokio_postgres::Error) -> Option<&SqlState> {
    e.as_db_error().map(|d| d.code())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_over_the_postgres_protocol_under_grants() {
    let w = world().await;

    // Logins: a wrong password is refused with PostgreSQL's code; so is a token of another
    // account.
    let e = failed(connect(&w, "op", "wrong").await, "refused");
    assert_eq!(code(&e), Some(&SqlState::INVALID_PASSWORD), "{e:?}");
    let e = failed(connect(&w, "op", &w.analyst_token).await, "refused");
    assert!(msg(&e).contains("does not belong"), "{e:?}");

    // The operator sees everything, unmasked.
    let op = connect(&w, "op", "op-Password-1").await.unwrap();
    let n: i64 = op
        .query_one("SELECT count(*) FROM minzheng.villages", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 386);
    // Binary parameters and results: a TEXT parameter (codes are text), text back.
    let row = op
        .query_one(
            "SELECT name, \"streetCode\" FROM minzheng.villages WHERE code = $1",
            &[&"310117001001"],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "龙潭社区居委会");
    assert_eq!(row.get::<_, String>(1), "310117001");
    // A binary INT8 parameter, bound from an i64.
    let n: i64 = op
        .query_one(
            "SELECT count(*) FROM minzheng.villages WHERE CAST(\"provinceCode\" AS BIGINT) = $1",
            &[&31_i64],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 386);
    // A prepared statement executed twice with different text parameters.
    let stmt = op
        .prepare("SELECT count(*) FROM minzheng.villages WHERE name LIKE $1")
        .await
        .unwrap();
    assert_eq!(stmt.params(), &[tokio_postgres::types::Type::TEXT]);
    let like = |p: &'static str| {
        let op = &op;
        let stmt = stmt.clone();
        async move { op.query_one(&stmt, &[&p]).await.unwrap().get::<_, i64>(0) }
    };
    let communities = like("%社区居委会").await;
    let villages = like("%村委会").await;
    assert!(communities > 0 && villages > 0 && communities + villages <= 386);
    // An aggregate over a join.
    let rows = op
        .query(
            "SELECT s.name, count(v.code) AS n FROM minzheng.streets s \
             JOIN minzheng.villages v ON v.\"streetCode\" = s.code \
             GROUP BY s.name ORDER BY n DESC, s.name",
            &[],
        )
        .await
        .unwrap();
    assert!(!rows.is_empty());
    let total: i64 = rows.iter().map(|r| r.get::<_, i64>(1)).sum();
    assert_eq!(total, 386);

    // Unnamed output columns are named as PostgreSQL names them, for clients and BI tools.
    let stmt = op
        .prepare(
            "SELECT count(*), MIN(code), code::int, 1 + 1, upper(name) AS up              FROM minzheng.villages GROUP BY code, name LIMIT 1",
        )
        .await
        .unwrap();
    let names: Vec<&str> = stmt.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, ["count", "min", "code", "?column?", "up"]);
    let rows = op
        .simple_query("SELECT count(*), max(name) FROM minzheng.villages")
        .await
        .unwrap();
    let tokio_postgres::SimpleQueryMessage::RowDescription(columns) = &rows[0] else {
        panic!("{rows:?}")
    };
    let names: Vec<&str> = columns.iter().map(|c| c.name()).collect();
    assert_eq!(names, ["count", "max"]);
    // psql's \dt+: sizes print (NULL where unknown), descriptions are the catalog's titles.
    let row = op
        .query_one(
            "SELECT pg_catalog.pg_size_pretty(CAST(123456789 AS BIGINT)),                     pg_catalog.pg_size_pretty(pg_catalog.pg_table_size(c.oid)),                     pg_catalog.obj_description(c.oid, 'pg_class')              FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace              WHERE n.nspname = 'minzheng' AND c.relname = 'villages'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<String>>(0).as_deref(), Some("118 MB"));
    assert_eq!(row.get::<_, Option<String>>(1), None);
    assert_eq!(
        row.get::<_, Option<String>>(2).as_deref(),
        Some("松江区村居委会")
    );
    // A database other than the lake's is refused, as PostgreSQL refuses it.
    let e = failed(
        tokio_postgres::Config::new()
            .host(w.addr.ip().to_string())
            .port(w.addr.port())
            .user("op")
            .password("op-Password-1")
            .dbname("nosuch")
            .connect(NoTls)
            .await,
        "unknown database",
    );
    assert_eq!(code(&e), Some(&SqlState::UNDEFINED_DATABASE), "{e:?}");
    assert!(msg(&e).contains("database \"raw\""), "{e:?}");

    // Read-only: DDL and DML are refused as in a read-only transaction.
    for sql in [
        "CREATE TABLE x AS SELECT 1",
        "INSERT INTO minzheng.villages (code) VALUES (1)",
        "DROP TABLE minzheng.villages",
    ] {
        let e = failed(op.simple_query(sql).await, "refused");
        assert_eq!(
            code(&e),
            Some(&SqlState::READ_ONLY_SQL_TRANSACTION),
            "{sql}: {e:?}"
        );
    }
    // The session settings clients send work.
    op.simple_query("SET application_name = 'pg-test'")
        .await
        .unwrap();
    op.simple_query("BEGIN").await.unwrap();
    op.simple_query("COMMIT").await.unwrap();

    // The row limit: a result over it fails instead of being cut silently.
    let e = failed(
        op.query(
            "SELECT a.code FROM minzheng.villages a, minzheng.streets b",
            &[],
        )
        .await,
        "over the row limit",
    );
    assert_eq!(code(&e), Some(&SqlState::PROGRAM_LIMIT_EXCEEDED), "{e:?}");

    // Cancellation: a cross join of billions of rows stops when the client cancels.
    // (A filter, so that the count cannot come from statistics.)
    let slow = "SELECT count(*) FROM minzheng.villages a, minzheng.villages b, \
                minzheng.villages c, minzheng.villages d WHERE a.name || b.name <> c.name || d.name";
    let token = op.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        token.cancel_query(NoTls).await.unwrap();
    });
    let started = std::time::Instant::now();
    let e = failed(op.query(slow, &[]).await, "cancelled");
    canceller.await.unwrap();
    assert_eq!(code(&e), Some(&SqlState::QUERY_CANCELED), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(20));
    // …and the connection goes on.
    assert_eq!(
        op.query_one("SELECT 1::bigint", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        1
    );
    // statement_timeout stops it too.
    op.simple_query("SET statement_timeout = 300")
        .await
        .unwrap();
    let e = failed(op.query(slow, &[]).await, "timed out");
    assert_eq!(code(&e), Some(&SqlState::QUERY_CANCELED), "{e:?}");
    assert!(msg(&e).contains("timeout"), "{e:?}");

    // The analyst, logged in with an API token: only its grant, masked and filtered.
    let analyst = connect(&w, "analyst", &w.analyst_token).await.unwrap();
    let rows = analyst
        .query(
            "SELECT code, name FROM minzheng.villages ORDER BY code",
            &[],
        )
        .await
        .unwrap();
    assert!(!rows.is_empty());
    for r in &rows {
        let name: String = r.get(1);
        assert!(name.starts_with(|c: char| !c.is_ascii()), "{name}");
        assert!(
            name.chars().skip(1).all(|c| c == '*'),
            "{name} is not masked"
        );
        assert!(
            r.get::<_, String>(0).starts_with("310117001"),
            "outside the row filter"
        );
    }
    // A masked column cannot be unmasked by filtering on it with a parameter.
    let n: i64 = analyst
        .query_one(
            "SELECT count(*) FROM minzheng.villages WHERE name = $1",
            &[&"龙潭社区居委会"],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    // Ungranted tables and columns do not exist.
    let e = failed(
        analyst.query("SELECT * FROM tongji.gdp", &[]).await,
        "ungranted",
    );
    assert_eq!(code(&e), Some(&SqlState::UNDEFINED_TABLE), "{e:?}");
    assert!(msg(&e).contains("does not exist"), "{e:?}");
    let e = failed(
        analyst
            .query("SELECT \"areaCode\" FROM minzheng.villages", &[])
            .await,
        "ungranted column",
    );
    assert_eq!(code(&e), Some(&SqlState::UNDEFINED_COLUMN), "{e:?}");
    // The system catalog lists what the analyst sees, and nothing else.
    let tables: Vec<String> = analyst
        .query(
            "SELECT n.nspname || '.' || c.relname FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
             ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(tables, ["minzheng.villages"]);
    let columns: Vec<String> = analyst
        .query(
            "SELECT column_name FROM information_schema.columns \
             WHERE table_schema = 'minzheng' AND table_name = 'villages' ORDER BY ordinal_position",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(columns, ["code", "name", "streetCode"]);
    let all: Vec<String> = op
        .query(
            "SELECT n.nspname || '.' || c.relname FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
             ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(all, ["minzheng.streets", "minzheng.villages", "tongji.gdp"]);

    // What drivers ask when they connect and reflect (psycopg/SQLAlchemy, pgJDBC): the
    // version, settings, type lookups, savepoints, composite field access, subscripts; and a
    // parameter a compatibility rewrite removed does not shift the ones after it.
    let row = analyst
        .query_one(
            "SELECT version(), to_regtype('integer'), to_regtype('int4[]'),              to_regtype('hstore') IS NULL,              (SELECT setting FROM pg_catalog.pg_settings WHERE name = 'max_index_keys')",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, String>(0).starts_with("PostgreSQL 16"));
    assert!(row.get::<_, String>(0).contains("Reservoir"));
    assert_eq!(row.get::<_, i32>(1), 23);
    assert_eq!(row.get::<_, i32>(2), 1007);
    assert!(row.get::<_, bool>(3));
    assert_eq!(row.get::<_, String>(4), "32");
    analyst
        .batch_execute("BEGIN; SAVEPOINT s1; RELEASE SAVEPOINT s1; SAVEPOINT s2; ROLLBACK TO SAVEPOINT s2; COMMIT")
        .await
        .unwrap();
    let keys = analyst
        .query(
            "SELECT (information_schema._pg_expandarray(i.indkey)).n,              generate_subscripts(i.indkey, 1) FROM pg_catalog.pg_index i",
            &[],
        )
        .await
        .unwrap();
    assert!(keys.is_empty(), "lake tables have no indexes");
    let row = analyst
        .query_one(
            "SELECT (SELECT json_build_object($1::VARCHAR, $2::VARCHAR)                      FROM pg_catalog.pg_sequence WHERE seqrelid = 0),                     count(*) FROM minzheng.villages WHERE length(name) > $3::INT",
            &[&"a", &"b", &0i32],
        )
        .await
        .unwrap();
    assert!(row.get::<_, i64>(1) > 0);

    // Every statement is audited with its SQL text; logins too, refusals as denied.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let entries = w
        .state
        .access()
        .audit_entries(&AuditFilter {
            action: Some("pg.".into()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    let has = |actor: &str, action: &str, needle: &str, outcome: &str| {
        entries.iter().any(|e| {
            e.actor == actor
                && e.action == action
                && e.detail.contains(needle)
                && e.outcome == outcome
        })
    };
    assert!(has("op", "pg.login", "", "denied"), "{entries:#?}");
    assert!(has(
        "op",
        "pg.query",
        "count(*) FROM minzheng.villages",
        "ok"
    ));
    assert!(
        has("analyst", "pg.query", "tongji.gdp", "error")
            || has("analyst", "pg.query", "tongji.gdp", "denied")
    );
    assert!(has(
        "op",
        "pg.query",
        "canceling statement due to user request",
        "error"
    ));
    let masked = entries
        .iter()
        .find(|e| e.actor == "analyst" && e.detail.contains("ORDER BY code"))
        .expect("the analyst's query audited");
    assert_eq!(masked.target, "minzheng.villages");
    assert_eq!(masked.row_count, Some(rows.len() as i64));
    assert!(masked.grant_id.is_some());
}

/// psql against the test server; returns (success, stdout, stderr).
fn psql(addr: std::net::SocketAddr, sslmode: &str, sql: &[&str]) -> (bool, String, String) {
    let conninfo = format!(
        "host={} port={} dbname=raw user=op sslmode={sslmode} connect_timeout=10",
        addr.ip(),
        addr.port()
    );
    let mut cmd = Command::new("psql");
    cmd.args(["-X", "-v", "ON_ERROR_STOP=1", &conninfo])
        .env("PGPASSWORD", "op-Password-1");
    for s in sql {
        cmd.args(["-c", s]);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run psql ({e}); install postgresql-client"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_certificate_logins_go_over_tls_only() {
    // A self-signed test certificate for localhost and 127.0.0.1 (test-only, not a secret).
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let w = world_with(Some((
        fixtures.join("pg-test-cert.pem"),
        fixtures.join("pg-test-key.pem"),
    )))
    .await;
    let addr = w.addr;
    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        psql(
            addr,
            "require",
            &["\\conninfo", "SELECT count(*) FROM minzheng.villages"],
        )
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert!(out.contains("SSL connection"), "{out}");
    assert!(out.contains("(1 row)"), "{out}");

    // Without TLS the server refuses before it asks for the password.
    let (ok, _, err) = tokio::task::spawn_blocking(move || psql(addr, "disable", &["SELECT 1"]))
        .await
        .unwrap();
    assert!(!ok);
    assert!(err.contains("over TLS only"), "{err}");
    let e = failed(connect(&w, "op", "op-Password-1").await, "plaintext");
    assert!(msg(&e).contains("sslmode=require"), "{e:?}");
}

/// A consumer of `dataset` (raw.minzheng.*) with a grant on all its columns.
async fn consumer(w: &World, id: &str, dataset: &str, quota: Option<i64>) {
    let access = w.state.access();
    access
        .create_user(&NewUser {
            id: id.into(),
            display_name: id.into(),
            role: Role::Consumer,
            unit_id: Some("tongji".into()),
            password: format!("{id}-Password-1"),
            must_change: false,
        })
        .await
        .unwrap();
    let d = w
        .state
        .catalog()
        .dataset("raw", "minzheng", dataset)
        .await
        .unwrap()
        .unwrap();
    access
        .create_grant(
            &Principal::local_operator(),
            &NewGrant {
                user_id: id.into(),
                dataset_id: d.id,
                columns: ["code", "name"]
                    .into_iter()
                    .map(|c| GrantColumn {
                        name: c.into(),
                        mask: Mask::None,
                    })
                    .collect(),
                row_filter: None,
                purpose: "测试".into(),
                request_id: None,
                starts_at: None,
                expires_at: reservoir_catalog::format_ts(
                    chrono::Utc::now() + chrono::Duration::days(1),
                ),
                hours: None,
                rate_per_minute: None,
                row_quota: quota,
            },
        )
        .await
        .unwrap();
}

/// Rows charged to `user`'s grants, once the charges of finished statements are written.
async fn served(w: &World, user: &str, expected: i64) -> i64 {
    let mut n = 0;
    for _ in 0..50 {
        n = w
            .state
            .access()
            .grants(Some(user), None)
            .await
            .unwrap()
            .iter()
            .map(|g| g.rows_served)
            .sum();
        if n == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_connections_follow_the_account_and_share_the_quota() {
    let w = world().await;
    let access = w.state.access().clone();

    // Disabled while connected: the next statement is refused and the connection ends.
    consumer(&w, "c1", "streets", None).await;
    let c1 = connect(&w, "c1", "c1-Password-1").await.unwrap();
    c1.query("SELECT code FROM minzheng.streets", &[])
        .await
        .unwrap();
    access.set_disabled("c1", true).await.unwrap();
    let e = failed(
        c1.query("SELECT code FROM minzheng.streets", &[]).await,
        "disabled",
    );
    assert!(msg(&e).contains("disabled"), "{e:?}");
    assert!(c1.is_closed() || c1.simple_query("SELECT 1").await.is_err());

    // A revoked token: the same.
    let token = access.create_token("analyst", "bi", None, 1).await.unwrap();
    let by_token = connect(&w, "analyst", &token.secret).await.unwrap();
    by_token
        .query("SELECT code FROM minzheng.villages", &[])
        .await
        .unwrap();
    access.revoke_token(&token.token.id).await.unwrap();
    let e = failed(
        by_token
            .query("SELECT code FROM minzheng.villages", &[])
            .await,
        "revoked token",
    );
    assert!(msg(&e).contains("revoked"), "{e:?}");

    // A steward demoted while connected sees what the new role sees.
    access
        .create_user(&NewUser {
            id: "st".into(),
            display_name: "st".into(),
            role: Role::Steward,
            unit_id: Some("minzheng".into()),
            password: "st-Password-1".into(),
            must_change: false,
        })
        .await
        .unwrap();
    let st = connect(&w, "st", "st-Password-1").await.unwrap();
    assert_eq!(
        st.query("SELECT name FROM minzheng.streets", &[])
            .await
            .unwrap()
            .len(),
        20
    );
    access
        .set_role("st", Role::Consumer, Some("tongji"))
        .await
        .unwrap();
    let e = failed(
        st.query("SELECT name FROM minzheng.streets", &[]).await,
        "demoted",
    );
    assert_eq!(code(&e), Some(&SqlState::UNDEFINED_TABLE), "{e:?}");

    // Each statement charges its own reads, not the connection's so far: two reads of the
    // analyst's 24 villages (its row filter) charge 48.
    let analyst = connect(&w, "analyst", "analyst-Password-1").await.unwrap();
    let mut read = 0;
    for _ in 0..2 {
        read += analyst
            .query("SELECT code FROM minzheng.villages", &[])
            .await
            .unwrap()
            .len() as i64;
    }
    assert!(read > 0);
    assert_eq!(served(&w, "analyst", read).await, read);

    // A quota of one read of the 20 streets, drawn on by six connections at once: one reads,
    // the others are refused, and 20 rows are charged.
    consumer(&w, "quota", "streets", Some(20)).await;
    let mut conns = Vec::new();
    for _ in 0..6 {
        conns.push(connect(&w, "quota", "quota-Password-1").await.unwrap());
    }
    let results = futures::future::join_all(
        conns
            .iter()
            .map(|c| c.query("SELECT code, name FROM minzheng.streets", &[])),
    )
    .await;
    let ok: Vec<usize> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().map(Vec::len))
        .collect();
    assert_eq!(ok, [20], "{results:?}");
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(msg(r).contains("quota"), "{r:?}");
    }
    assert_eq!(served(&w, "quota", 20).await, 20);
    // With the quota used up the table is withheld, and the error says why.
    let e = failed(
        conns[0]
            .query("SELECT code, name FROM minzheng.streets", &[])
            .await,
        "withheld",
    );
    assert!(
        msg(&e).contains("withheld") && msg(&e).contains("quota"),
        "{e:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_nested_too_deep_are_refused_and_the_server_goes_on() {
    let w = world().await;
    let op = connect(&w, "op", "op-Password-1").await.unwrap();
    for sql in [
        format!("SELECT {}", vec!["1"; 20_000].join("+")),
        vec!["SELECT 1"; 5_000].join(" UNION ALL "),
    ] {
        let e = failed(op.simple_query(&sql).await, "too deep");
        assert_eq!(code(&e), Some(&SqlState::STATEMENT_TOO_COMPLEX), "{e:?}");
        assert!(msg(&e).contains("levels deep"), "{e:?}");
        // Prepared (extended protocol) too.
        let e = failed(op.prepare(&sql).await, "too deep, prepared");
        assert_eq!(code(&e), Some(&SqlState::STATEMENT_TOO_COMPLEX), "{e:?}");
    }
    // Up to the limit plans and runs.
    let sum: i64 = op
        .query_one(
            &format!("SELECT CAST({} AS BIGINT)", vec!["1"; 400].join("+")),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(sum, 400);
    assert_eq!(
        op.query("SELECT code FROM minzheng.streets", &[])
            .await
            .unwrap()
            .len(),
        20
    );
}

/// The copy data of `sql` (tokio-postgres prepares it: the extended protocol).
async fn copy_out(client: &Client, sql: &str) -> Result<Vec<u8>, tokio_postgres::Error> {
    use futures::TryStreamExt;
    let stream = client.copy_out(sql).await?;
    let chunks: Vec<_> = stream.try_collect().await?;
    Ok(chunks.concat())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_to_the_client_under_the_grants() {
    let w = world().await;
    let op = connect(&w, "op", "op-Password-1").await.unwrap();
    // A table in text format: tab-separated, one line a row.
    let text = copy_out(&op, "COPY minzheng.streets (code, name) TO STDOUT")
        .await
        .unwrap();
    let text = String::from_utf8(text).unwrap();
    assert_eq!(text.lines().count(), 20, "{text}");
    assert!(text.lines().all(|l| l.split('\t').count() == 2), "{text}");

    // The analyst's CSV: a header, its grant's rows only, the name masked.
    let analyst = connect(&w, "analyst", "analyst-Password-1").await.unwrap();
    let n: i64 = analyst
        .query_one("SELECT count(*) FROM minzheng.villages", &[])
        .await
        .unwrap()
        .get(0);
    let csv = copy_out(
        &analyst,
        "COPY (SELECT code, name FROM minzheng.villages ORDER BY code) TO STDOUT WITH (FORMAT csv, HEADER)",
    )
    .await
    .unwrap();
    let mut reader = csv::Reader::from_reader(csv.as_slice());
    assert_eq!(reader.headers().unwrap(), vec!["code", "name"]);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len() as i64, n);
    for r in &rows {
        assert!(r[1].chars().skip(1).all(|c| c == '*'), "{r:?}");
    }
    // Binary: PostgreSQL's PGCOPY signature.
    let binary = copy_out(
        &analyst,
        "COPY (SELECT code FROM minzheng.villages) TO STDOUT (FORMAT binary)",
    )
    .await
    .unwrap();
    assert!(
        binary.starts_with(b"PGCOPY\n\xff\r\n\0"),
        "{:?}",
        &binary[..11]
    );

    // An ungranted table does not exist for COPY either; writes and server files are refused.
    let e = failed(
        copy_out(&analyst, "COPY tongji.gdp TO STDOUT").await,
        "ungranted",
    );
    assert_eq!(code(&e), Some(&SqlState::UNDEFINED_TABLE), "{e:?}");
    let e = failed(
        op.simple_query("COPY minzheng.streets TO '/tmp/streets.csv'")
            .await,
        "server file",
    );
    assert_eq!(code(&e), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{e:?}");
    let e = failed(
        op.simple_query("COPY minzheng.streets FROM STDIN").await,
        "copy from",
    );
    assert_eq!(
        code(&e),
        Some(&SqlState::READ_ONLY_SQL_TRANSACTION),
        "{e:?}"
    );

    // psql's \copy: the simple protocol, to a file on the client.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("streets.csv");
    let addr = w.addr;
    let command = format!(
        "\\copy (SELECT code, name FROM minzheng.streets ORDER BY code) TO '{}' WITH CSV HEADER",
        file.display()
    );
    let (ok, out, err) = tokio::task::spawn_blocking(move || psql(addr, "disable", &[&command]))
        .await
        .unwrap();
    assert!(ok, "{err}");
    assert!(out.contains("COPY 20"), "{out}");
    let written = std::fs::read_to_string(&file).unwrap();
    assert_eq!(written.lines().next(), Some("code,name"));
    assert_eq!(written.lines().count(), 21);

    // Each COPY is audited with its text, like a query.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let entries = w
        .state
        .access()
        .audit_entries(&AuditFilter {
            action: Some("pg.query".into()),
            actor: Some("analyst".into()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert!(
        entries.iter().any(|e| e
            .detail
            .contains("COPY (SELECT code, name FROM minzheng.villages")
            && e.target == "minzheng.villages"
            && e.row_count == Some(n)),
        "{entries:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bi_tools_catalog_functions_answer_for_the_session() {
    let w = world().await;
    let analyst = connect(&w, "analyst", &w.analyst_token).await.unwrap();
    let one = |sql: &'static str| {
        let analyst = &analyst;
        async move {
            analyst
                .query_one(sql, &[])
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        }
    };
    // Privileges as granted (Metabase reads them to tell readable and writable tables apart):
    // SELECT on the granted table only, nothing that writes, USAGE on its schema only.
    let row = one(
        "SELECT has_table_privilege('minzheng.villages', 'SELECT'), \
                has_table_privilege(current_user, 'minzheng.villages', 'select,update'), \
                has_table_privilege('minzheng.villages', 'DELETE'), \
                has_table_privilege('tongji.gdp', 'SELECT'), \
                has_any_column_privilege('minzheng.villages', 'UPDATE'), \
                has_schema_privilege('minzheng', 'USAGE'), \
                has_schema_privilege('tongji', 'USAGE'), \
                has_schema_privilege('minzheng', 'CREATE'), \
                has_database_privilege('raw', 'CONNECT'), \
                has_table_privilege('pg_class', 'SELECT')",
    )
    .await;
    let got: Vec<bool> = (0..10).map(|i| row.get(i)).collect();
    assert_eq!(
        got,
        [
            true, true, false, false, false, true, false, false, true, true
        ]
    );
    // By oid, as DBeaver asks.
    let row = one(
        "SELECT has_table_privilege(c.oid, 'SELECT') FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'minzheng' AND c.relname = 'villages'",
    )
    .await;
    assert!(row.get::<_, bool>(0));
    let row = one(
        "SELECT bool_or(has_schema_privilege(n.oid, 'USAGE') AND n.nspname = 'minzheng'), \
                bool_or(n.nspname = 'tongji') \
         FROM pg_catalog.pg_namespace n",
    )
    .await;
    assert!(row.get::<_, bool>(0));
    assert!(
        !row.get::<_, bool>(1),
        "a schema the analyst cannot read is listed"
    );

    // Who is connected, and the server's settings (Grafana's version probe).
    let row = one("SELECT current_user AS u, session_user AS s, \
                CAST(current_setting('server_version_num') AS INT) / 100, \
                current_setting('no_such_setting', true)")
    .await;
    assert_eq!(row.get::<_, String>(0), "analyst");
    assert_eq!(row.get::<_, String>(1), "analyst");
    assert_eq!(row.get::<_, i64>(2), 1600);
    assert_eq!(row.get::<_, Option<String>>(3), None);
    let e = failed(
        analyst
            .query("SELECT current_setting('no_such_setting')", &[])
            .await,
        "unknown setting",
    );
    assert!(
        msg(&e).contains("unrecognized configuration parameter"),
        "{e:?}"
    );
    for (show, column, value) in [
        ("SHOW server_version_num", "server_version_num", "160006"),
        ("SHOW server_encoding", "server_encoding", "UTF8"),
        ("SHOW timezone", "TimeZone", "UTC"),
    ] {
        let rows = analyst.simple_query(show).await.unwrap();
        let tokio_postgres::SimpleQueryMessage::Row(row) = &rows[1] else {
            panic!("{show}: {rows:?}")
        };
        assert_eq!(row.columns()[0].name(), column, "{show}");
        assert_eq!(row.get(0), Some(value), "{show}");
    }

    // format() as Metabase builds qualified names with it; descriptions from the catalog.
    let row =
        one("SELECT format('%I.%I', 'minzheng', 'Villages'), format('%s = %L', 'a', 'it''s')")
            .await;
    assert_eq!(row.get::<_, String>(0), "minzheng.\"Villages\"");
    assert_eq!(row.get::<_, String>(1), "a = 'it''s'");
    let row = one(
        "SELECT obj_description(c.oid, 'pg_class'), col_description(c.oid, 1) \
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'minzheng' AND c.relname = 'villages'",
    )
    .await;
    assert_eq!(
        row.get::<_, Option<String>>(0).as_deref(),
        Some("松江区村居委会")
    );
    // The villages file's columns carry no titles of their own: NULL, not an invented one.
    let fields = w
        .state
        .catalog()
        .fields(
            w.state
                .catalog()
                .dataset("raw", "minzheng", "villages")
                .await
                .unwrap()
                .unwrap()
                .id,
        )
        .await
        .unwrap();
    let first = analyst
        .query_one(
            "SELECT a.attname FROM pg_catalog.pg_attribute a \
             JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'minzheng' AND c.relname = 'villages' AND a.attnum = 1",
            &[],
        )
        .await
        .unwrap()
        .get::<_, String>(0);
    let expected = fields
        .iter()
        .find(|f| f.name == first)
        .map(|f| {
            if f.title.is_empty() {
                f.description.clone()
            } else {
                f.title.clone()
            }
        })
        .filter(|t| !t.is_empty());
    assert_eq!(row.get::<_, Option<String>>(1), expected);

    // information_schema as PostgreSQL's, over what the session sees (Metabase's field sync,
    // Grafana's column picker): PostgreSQL's type names, the columns BI tools read, one row per
    // schema, and the constraint tables (empty: lake tables have no keys).
    let rows = analyst
        .query(
            "SELECT c.column_name, c.data_type, c.udt_name, c.is_identity, c.ordinal_position, \
                    col_description(CAST(CAST(format('%I.%I', CAST(c.table_schema AS TEXT), \
                        CAST(c.table_name AS TEXT)) AS REGCLASS) AS OID), c.ordinal_position) \
             FROM information_schema.columns c \
             LEFT JOIN (SELECT tc.table_schema, tc.table_name, kc.column_name \
                        FROM information_schema.table_constraints tc \
                        JOIN information_schema.key_column_usage kc \
                          ON tc.constraint_name = kc.constraint_name \
                        WHERE tc.constraint_type = 'PRIMARY KEY') pk \
               ON c.table_schema = pk.table_schema AND c.table_name = pk.table_name \
                  AND c.column_name = pk.column_name \
             WHERE c.table_schema = 'minzheng' AND c.table_name = 'villages' \
             ORDER BY c.ordinal_position",
            &[],
        )
        .await
        .unwrap();
    let columns: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert!(
        columns
            .iter()
            .any(|(name, t, udt)| name == "code" && t == "text" && udt == "text"),
        "{columns:?}"
    );
    assert!(rows.iter().all(|r| r.get::<_, String>(3) == "NO"));
    assert_eq!(rows[0].get::<_, i32>(4), 1);
    assert_eq!(rows[0].get::<_, Option<String>>(5), expected);
    let schemas: Vec<String> = analyst
        .query(
            "SELECT schema_name FROM information_schema.schemata ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(schemas, ["information_schema", "minzheng", "pg_catalog"]);
    let tables: Vec<String> = analyst
        .query(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables \
             WHERE table_type = 'BASE TABLE'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(tables, ["minzheng.villages"]);
    // Descriptions as DBeaver and Metabase join them: pg_description under pg_class's oid.
    let row = analyst
        .query_one(
            "SELECT d.description FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON c.relnamespace = n.oid \
             LEFT JOIN pg_catalog.pg_description d ON c.oid = d.objoid AND d.objsubid = 0 \
                  AND d.classoid = 'pg_class'::regclass \
             WHERE n.nspname = 'minzheng' AND c.relname = 'villages'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, Option<String>>(0).as_deref(),
        Some("松江区村居委会")
    );
    // A name the session does not see is no relation.
    let e = failed(
        analyst
            .query("SELECT CAST(format('%s', 'tongji.gdp') AS regclass)", &[])
            .await,
        "unseen relation",
    );
    assert!(msg(&e).contains("does not exist"), "{e:?}");
}
