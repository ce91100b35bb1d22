//! Collection from the real PostgreSQL and MariaDB servers on the machine: exact types, full and
//! incremental sync, resuming from the committed cursor, drift.
//!
//! PostgreSQL: `RESERVOIR_TEST_PG_URL` (default postgres://postgres@127.0.0.1:5432/postgres).
//! MariaDB/MySQL: `RESERVOIR_TEST_MYSQL_URL` (default mysql://root@127.0.0.1:3306/mysql).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use reservoir_ingest::db::{DatabaseSource, DbKind, Lookback, SyncMode, SyncRequest};
use reservoir_ingest::{Collector, DatasetInfo, Error, NoProgress, RunReport};
use reservoir_lake::APP_VERSION_KEY;
use reservoir_lake::{Layer, TableRef};
use reservoir_testkit::{LakeHome, PgDatabase};
use sqlx::Connection;

/// A temporary lake and catalog (`testkit::LakeHome`) with this file's helpers.
struct Env(LakeHome);

impl std::ops::Deref for Env {
    type Target = LakeHome;
    fn deref(&self) -> &LakeHome {
        &self.0
    }
}

impl Env {
    async fn new() -> Self {
        Self(LakeHome::new().await)
    }

    async fn sync(&self, source: DatabaseSource, dataset: &str) -> Result<RunReport, Error> {
        Collector::new(self.lake.clone(), self.catalog.clone())
            .sync_database(
                SyncRequest {
                    unit: "unit".into(),
                    dataset: dataset.into(),
                    source,
                    columns: Vec::new(),
                    info: DatasetInfo::default(),
                    source_label: String::new(),
                    profile: true,
                },
                Arc::new(NoProgress),
            )
            .await
    }
}

fn source(kind: DbKind, url: &str, table: &str, mode: SyncMode) -> DatabaseSource {
    DatabaseSource {
        kind,
        url: url.into(),
        table: table.into(),
        mode,
        key: vec!["id".into()],
        cursor: mode.is_incremental().then(|| "updated_at".into()),
        batch_rows: 3,
        max_batches: None,
        detect_deletes: false,
        lookback: None,
    }
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

/// A MariaDB database for one test, dropped at the end.
struct MyDatabase {
    url: String,
    admin: String,
    name: String,
}

impl MyDatabase {
    async fn create() -> Self {
        let admin = std::env::var("RESERVOIR_TEST_MYSQL_URL")
            .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/mysql".into());
        let name = format!("reservoir_test_{}", uuid::Uuid::new_v4().simple());
        let mut c = sqlx::MySqlConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("cannot reach MariaDB at {admin} ({e}); start it or set RESERVOIR_TEST_MYSQL_URL"));
        sqlx::raw_sql(&format!("CREATE DATABASE {name} CHARACTER SET utf8mb4"))
            .execute(&mut c)
            .await
            .unwrap();
        let base = admin.rsplit_once('/').unwrap().0;
        Self {
            url: format!("{base}/{name}"),
            admin,
            name,
        }
    }

    async fn exec(&self, sql: &str) {
        let mut c = sqlx::MySqlConnection::connect(&self.url).await.unwrap();
        sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
    }

    async fn drop_db(self) {
        let mut c = sqlx::MySqlConnection::connect(&self.admin).await.unwrap();
        sqlx::raw_sql(&format!("DROP DATABASE {}", self.name))
            .execute(&mut c)
            .await
            .unwrap();
    }
}

async fn pg_exec(url: &str, sql: &str) {
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
}

#[tokio::test]
async fn postgres_types_load_exactly() {
    let db = PgDatabase::create().await;
    pg_exec(
        &db.url,
        r#"
        SET TimeZone = 'Asia/Shanghai';
        CREATE TABLE types (
            id bigint PRIMARY KEY,
            name text, amount numeric(12,2), whole numeric(10,0), wide numeric(40,0), free numeric,
            flag boolean, born date, seen timestamp(6), at timestamptz, doc jsonb, tags int[],
            bin bytea, score double precision, "姓名" varchar(20));
        INSERT INTO types VALUES
          (1, '王小明', 12345.67, 9876543210, 1234567890123456789012345678901234567890, 0.1,
           true, '2024-02-29', '2024-03-01 08:30:00.123456', '2024-03-01 08:30:00.5+08',
           '{"a": [1, 2]}', '{1,2,3}', '\x00ff10', 0.1, '张三'),
          (2, NULL, -0.05, 0, NULL, NULL, false, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
          (3, 'edge', 1, 1, 1, 'NaN', NULL, NULL, 'infinity', NULL, NULL, NULL, NULL, 'Infinity', NULL);
        "#,
    )
    .await;
    let env = Env::new().await;
    let r = env
        .sync(
            source(DbKind::Postgres, &db.url, "public.types", SyncMode::Full),
            "types",
        )
        .await
        .unwrap();
    assert_eq!(
        (
            r.counts.rows_read,
            r.counts.rows_loaded,
            r.counts.rows_quarantined
        ),
        (3, 2, 1),
        "{r:#?}"
    );
    let types: Vec<(&str, &str)> = r
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.ty.as_str()))
        .collect();
    assert_eq!(
        types,
        [
            ("id", "int64"),
            ("name", "utf8"),
            ("amount", "decimal(12,2)"),
            ("whole", "decimal(10,0)"),
            ("wide", "utf8"),
            ("free", "utf8"),
            ("flag", "boolean"),
            ("born", "date"),
            ("seen", "timestamp"),
            ("at", "timestamp_utc"),
            ("doc", "utf8 (json)"),
            ("tags", "utf8 (json)"),
            ("bin", "binary"),
            ("score", "float64"),
            ("姓名", "utf8"),
        ]
    );
    let rows = env
        .rows(
            r#"SELECT id, name, CAST(amount AS VARCHAR), CAST(whole AS VARCHAR), wide, free, flag,
                      CAST(born AS VARCHAR), CAST(seen AS VARCHAR), CAST(at AS VARCHAR), doc, tags,
                      encode(bin, 'hex'), score, "姓名"
               FROM raw.unit.types ORDER BY id"#,
        )
        .await;
    assert_eq!(
        rows[0],
        [
            s("1"),
            s("王小明"),
            s("12345.67"),
            s("9876543210"),
            s("1234567890123456789012345678901234567890"),
            s("0.1"),
            s("true"),
            s("2024-02-29"),
            // timestamp without time zone: never shifted by any time zone.
            s("2024-03-01T08:30:00.123456"),
            // timestamptz: the instant, in UTC.
            s("2024-03-01T00:30:00.500Z"),
            s(r#"{"a": [1, 2]}"#),
            s("[1,2,3]"),
            s("00ff10"),
            s("0.1"),
            s("张三"),
        ]
    );
    assert_eq!(rows[1][2], s("-0.05"));
    assert_eq!(rows[1][1], None);
    // A timestamp of 'infinity' has no Arrow value: the row is quarantined with its raw text
    // and the reason, never loaded with a made-up value.
    let q = env
        .rows("SELECT _source_row, raw, reason FROM quarantine.unit.types")
        .await;
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(q[0][0], s("3"));
    assert!(
        q[0][1].as_deref().unwrap().contains(r#""seen":"infinity""#),
        "{q:?}"
    );
    assert!(
        q[0][2].as_deref().unwrap().contains(r#"column "seen""#),
        "{q:?}"
    );
    db.drop_db().await;
}

/// Incremental sync: rows sharing a cursor value across batch boundaries are neither skipped
/// nor duplicated; an interrupted run resumes from the cursor committed with the last batch;
/// each batch is one Delta commit with its transaction id.
#[tokio::test]
async fn postgres_incremental_sync_is_exactly_once() {
    let db = PgDatabase::create().await;
    // Seven rows, five of them sharing one cursor value; batches of three.
    pg_exec(
        &db.url,
        "CREATE TABLE cases (id int PRIMARY KEY, title text, updated_at timestamp(6) NOT NULL);
         INSERT INTO cases VALUES
           (1, 'a', '2024-01-01 00:00:00.000001'),
           (5, 'b', '2024-01-01 00:00:00.000002'), (2, 'c', '2024-01-01 00:00:00.000002'),
           (4, 'd', '2024-01-01 00:00:00.000002'), (3, 'e', '2024-01-01 00:00:00.000002'),
           (6, 'f', '2024-01-01 00:00:00.000002'), (7, 'g', '2024-01-02 00:00:00');",
    )
    .await;
    let env = Env::new().await;
    let table = TableRef::new(Layer::Raw, "unit", "cases");
    let app = "reservoir:unit.cases";

    // An interrupted run: one batch committed, then it stops.
    let mut src = source(DbKind::Postgres, &db.url, "cases", SyncMode::Incremental);
    src.max_batches = Some(1);
    let r = env.sync(src.clone(), "cases").await.unwrap();
    assert_eq!((r.counts.rows_read, r.counts.rows_loaded), (3, 3));
    let commit = env.lake.app_commit(&table, app).await.unwrap().unwrap();
    assert_eq!(commit.version, 1);
    assert_eq!(commit.metadata[APP_VERSION_KEY], 1);
    assert_eq!(
        commit.metadata["reservoir.cursor"],
        serde_json::json!(["2024-01-01 00:00:00.000002", "3"])
    );

    // (ids 1, 2, 3: the cursor, then the key, orders the rows that share a cursor value.)
    // The next run resumes from the committed cursor: the rest, in two more commits.
    src.max_batches = None;
    let r = env.sync(src.clone(), "cases").await.unwrap();
    assert_eq!(
        (
            r.counts.rows_read,
            r.counts.rows_loaded,
            r.counts.rows_quarantined
        ),
        (4, 4, 0)
    );
    assert_eq!(
        env.lake
            .app_commit(&table, app)
            .await
            .unwrap()
            .unwrap()
            .version,
        3
    );
    assert_eq!(
        env.ints("SELECT id FROM raw.unit.cases ORDER BY id").await,
        [1, 2, 3, 4, 5, 6, 7]
    );

    // Nothing new: nothing loaded, no commit.
    let r = env.sync(src.clone(), "cases").await.unwrap();
    assert_eq!(r.counts.rows_read, 0);
    assert!(
        r.notes.iter().any(|n| n.contains("no new or changed rows")),
        "{:?}",
        r.notes
    );
    assert_eq!(
        env.lake
            .app_commit(&table, app)
            .await
            .unwrap()
            .unwrap()
            .version,
        3
    );

    // Changed and new rows arrive with a later cursor value, and only they are read.
    pg_exec(
        &db.url,
        "UPDATE cases SET title = 'c2', updated_at = '2024-02-01' WHERE id = 2;
         INSERT INTO cases VALUES (8, 'h', '2024-02-01');",
    )
    .await;
    let r = env.sync(src.clone(), "cases").await.unwrap();
    assert_eq!(r.counts.rows_read, 2);
    assert_eq!(
        env.rows("SELECT id, title FROM raw.unit.cases WHERE id IN (2, 8) ORDER BY id, title")
            .await,
        [[s("2"), s("c")], [s("2"), s("c2")], [s("8"), s("h")]]
    );

    // Drift: a type change stops the run with an error naming the column and both types.
    pg_exec(
        &db.url,
        "ALTER TABLE cases ALTER COLUMN title TYPE int USING length(title)",
    )
    .await;
    let err = env
        .sync(src.clone(), "cases")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(r#"column "title" was Utf8 and is now Int64"#),
        "{err}"
    );

    // Configuration mistakes are named.
    let mut bad = src.clone();
    bad.cursor = Some("title".into());
    bad.key = vec!["nope".into()];
    let err = env.sync(bad, "cases").await.unwrap_err().to_string();
    assert!(
        err.contains(r#"key column "nope" is not in cases"#),
        "{err}"
    );
    pg_exec(
        &db.url,
        "CREATE TABLE loose (id int PRIMARY KEY, updated_at timestamp)",
    )
    .await;
    let err = env
        .sync(
            source(DbKind::Postgres, &db.url, "loose", SyncMode::Incremental),
            "loose",
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(r#"column "updated_at" of loose allows NULL"#),
        "{err}"
    );
    db.drop_db().await;
}

/// Upsert mode mirrors the source: changed rows replace their earlier version by key (MERGE),
/// deleted rows are found by comparing keys; drift adds, widens, narrows, keeps and stops.
#[tokio::test]
async fn postgres_upsert_deletes_and_drift() {
    let db = PgDatabase::create().await;
    pg_exec(
        &db.url,
        "CREATE TABLE licences (id int PRIMARY KEY, holder text, amount numeric(10,2),
                                updated_at timestamptz NOT NULL);
         INSERT INTO licences
           SELECT g, 'holder ' || g, g * 1.25,
                  '2024-01-01 00:00:00+00'::timestamptz + (g / 3) * interval '1 second'
           FROM generate_series(1, 10) g;",
    )
    .await;
    let env = Env::new().await;
    let table = TableRef::new(Layer::Raw, "unit", "licences");
    let app = "reservoir:unit.licences";
    let mut src = source(DbKind::Postgres, &db.url, "licences", SyncMode::Upsert);
    src.detect_deletes = true;

    let r = env.sync(src.clone(), "licences").await.unwrap();
    assert_eq!((r.counts.rows_read, r.counts.rows_loaded), (10, 10));
    assert_eq!(r.counts.rows_deleted, 0);
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("no deleted rows (10 source keys checked)")),
        "{:?}",
        r.notes
    );
    // Batches of three: 3 + 3 + 3 + 1, one commit each.
    assert_eq!(
        env.lake
            .app_commit(&table, app)
            .await
            .unwrap()
            .unwrap()
            .version,
        4
    );

    pg_exec(
        &db.url,
        "UPDATE licences SET holder = '变更', amount = 99.99, updated_at = '2024-03-01+00'
           WHERE id IN (2, 7);
         INSERT INTO licences VALUES (11, '新', 1, '2024-03-01+00');
         DELETE FROM licences WHERE id IN (4, 9);",
    )
    .await;
    let r = env.sync(src.clone(), "licences").await.unwrap();
    assert_eq!(
        (
            r.counts.rows_read,
            r.counts.rows_loaded,
            r.counts.rows_deleted
        ),
        (3, 3, 2)
    );
    let run = env.catalog.run(r.run_id).await.unwrap().unwrap();
    assert_eq!(run.counts.rows_deleted, 2);
    assert_eq!(
        (
            run.details["inserted"].as_i64(),
            run.details["updated"].as_i64()
        ),
        (Some(1), Some(2))
    );
    assert_eq!(
        env.ints("SELECT id FROM raw.unit.licences ORDER BY id")
            .await,
        [1, 2, 3, 5, 6, 7, 8, 10, 11]
    );
    assert_eq!(
        env.rows("SELECT id, holder, CAST(amount AS VARCHAR) FROM raw.unit.licences WHERE id IN (1, 2, 7, 11) ORDER BY id")
            .await,
        [
            [s("1"), s("holder 1"), s("1.25")],
            [s("2"), s("变更"), s("99.99")],
            [s("7"), s("变更"), s("99.99")],
            [s("11"), s("新"), s("1.00")]
        ]
    );
    // The delete commit is a transaction of its own and keeps the cursor the batches reached.
    let commit = env.lake.app_commit(&table, app).await.unwrap().unwrap();
    assert_eq!(commit.version, 6);
    assert_eq!(
        commit.metadata["reservoir.cursor"],
        serde_json::json!(["2024-03-01 00:00:00+00", "11"])
    );

    // Nothing changed: nothing read, nothing deleted, no commit.
    let r = env.sync(src.clone(), "licences").await.unwrap();
    assert_eq!((r.counts.rows_read, r.counts.rows_deleted), (0, 0));
    assert_eq!(
        env.lake
            .app_commit(&table, app)
            .await
            .unwrap()
            .unwrap()
            .version,
        6
    );

    // Drift, lossless: a new column is added; a wider decimal rewrites the table.
    pg_exec(
        &db.url,
        "ALTER TABLE licences ADD COLUMN street text NOT NULL DEFAULT '松江区';
         ALTER TABLE licences ALTER COLUMN amount TYPE numeric(14,3);
         UPDATE licences SET street = '岳阳街道', updated_at = '2024-04-01+00' WHERE id = 3;",
    )
    .await;
    // An upsert table mirrors the source, so a new column is filled in every row: the walk
    // starts over once.
    let r = env.sync(src.clone(), "licences").await.unwrap();
    assert_eq!(r.counts.rows_read, 9);
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("every row is read again")),
        "{:?}",
        r.notes
    );
    let notes = r.notes.join("\n");
    assert!(notes.contains(r#"column "street" (Utf8) added"#), "{notes}");
    assert!(
        notes.contains(r#"column "amount" widened from Decimal128(10, 2) to Decimal128(14, 3)"#),
        "{notes}"
    );
    assert_eq!(
        env.rows("SELECT id, street, CAST(amount AS VARCHAR) FROM raw.unit.licences WHERE id IN (1, 3) ORDER BY id")
            .await,
        [[s("1"), s("松江区"), s("1.250")], [s("3"), s("岳阳街道"), s("3.750")]]
    );

    // A column dropped at the source stays, NULL in new rows; a narrower decimal loads into the
    // table's wider type.
    pg_exec(
        &db.url,
        "ALTER TABLE licences DROP COLUMN holder;
         ALTER TABLE licences ALTER COLUMN amount TYPE numeric(12,3);
         UPDATE licences SET amount = 5.5, updated_at = '2024-05-01+00' WHERE id = 5;",
    )
    .await;
    let r = env.sync(src.clone(), "licences").await.unwrap();
    assert_eq!(r.counts.rows_read, 1);
    let notes = r.notes.join("\n");
    assert!(
        notes.contains(r#"column "holder" (Utf8) removed: kept in the table"#),
        "{notes}"
    );
    assert!(notes.contains(r#"column "amount" narrowed"#), "{notes}");
    assert_eq!(
        env.rows("SELECT id, holder, CAST(amount AS VARCHAR) FROM raw.unit.licences WHERE id IN (1, 5) ORDER BY id")
            .await,
        [[s("1"), s("holder 1"), s("1.250")], [s("5"), None, s("5.500")]]
    );

    // A row changed with a cursor value below the committed one is passed by the walk; the
    // key comparison says so.
    pg_exec(
        &db.url,
        "INSERT INTO licences (id, amount, updated_at) VALUES (50, 1, '2023-01-01+00')",
    )
    .await;
    let r = env.sync(src.clone(), "licences").await.unwrap();
    assert!(
        r.notes
            .iter()
            .any(|n| n.starts_with("warning: 1 rows of the source are not in the table")),
        "{:?}",
        r.notes
    );

    // Lossy: text to integer stops the run, names the column, and is recorded too.
    pg_exec(
        &db.url,
        "ALTER TABLE licences ALTER COLUMN street DROP NOT NULL;
         ALTER TABLE licences ALTER COLUMN street DROP DEFAULT;
         ALTER TABLE licences ALTER COLUMN street TYPE int USING NULL",
    )
    .await;
    let err = env
        .sync(src.clone(), "licences")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(r#"column "street" was Utf8 and is now Int64"#),
        "{err}"
    );
    let dataset = env
        .catalog
        .dataset("raw", "unit", "licences")
        .await
        .unwrap()
        .unwrap();
    let events = env.catalog.drift_events(dataset.id).await.unwrap();
    let mut kinds: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.column_name.as_str(), e.change.as_str()))
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            ("amount", "narrowed"),
            ("amount", "widened"),
            ("holder", "removed"),
            ("street", "added"),
            ("street", "changed"),
        ]
    );
    assert!(
        events
            .iter()
            .any(|e| e.change == "changed" && e.action.starts_with("run stopped"))
    );

    // The way on: one full reload (what `reservoir collect SOURCE --full` runs) takes the new
    // type and sets the cursor where the source is, so the next upsert reads nothing again.
    let mut full = src.clone();
    full.mode = SyncMode::Full;
    full.detect_deletes = false;
    let r = env.sync(full, "licences").await.unwrap();
    assert_eq!(r.counts.rows_read, 10);
    let r = env.sync(src.clone(), "licences").await.unwrap();
    assert_eq!(
        (r.counts.rows_read, r.counts.rows_deleted),
        (0, 0),
        "{:?}",
        r.notes
    );
    assert_eq!(
        env.ints("SELECT count(*) FROM raw.unit.licences").await,
        [10]
    );
    db.drop_db().await;
}

/// A row committed at the source with a cursor value the sync already passed (a long
/// transaction's `now()`) arrives when the upsert has a lookback; rows delivered again
/// unchanged are left alone, and a run that changes nothing commits nothing.
#[tokio::test]
async fn upsert_lookback_fetches_back_dated_rows() {
    let db = PgDatabase::create().await;
    pg_exec(
        &db.url,
        "CREATE TABLE permits (id int PRIMARY KEY, status text, updated_at timestamp NOT NULL);
         INSERT INTO permits
           SELECT g, '受理', '2024-05-01 10:00:00'::timestamp + g * interval '1 second'
           FROM generate_series(1, 5) g;",
    )
    .await;
    let env = Env::new().await;
    let table = TableRef::new(Layer::Raw, "unit", "permits");
    let mut src = source(DbKind::Postgres, &db.url, "permits", SyncMode::Upsert);
    src.lookback = Some(Lookback::parse("1m").unwrap());
    let r = env.sync(src.clone(), "permits").await.unwrap();
    assert_eq!((r.counts.rows_read, r.counts.rows_loaded), (5, 5));
    let first_batch = r.batch_id.clone();

    // Committed late with earlier cursor values: 6 within the minute, 7 an hour before.
    pg_exec(
        &db.url,
        "INSERT INTO permits VALUES (6, '受理', '2024-05-01 09:59:30'),
                                    (7, '受理', '2024-05-01 09:00:00');",
    )
    .await;
    let r = env.sync(src.clone(), "permits").await.unwrap();
    // The window (09:59:05 on) holds 6 and 1–5, read again in batches of three.
    assert_eq!(
        (
            r.counts.rows_read,
            r.counts.rows_loaded,
            r.counts.rows_quarantined
        ),
        (6, 6, 0)
    );
    let run = env.catalog.run(r.run_id).await.unwrap().unwrap();
    assert_eq!(
        (
            run.details["inserted"].as_i64(),
            run.details["updated"].as_i64()
        ),
        (Some(1), Some(0))
    );
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("lookback: the first batch started 1m before")),
        "{:?}",
        r.notes
    );
    assert_eq!(
        env.ints("SELECT id FROM raw.unit.permits ORDER BY id")
            .await,
        [1, 2, 3, 4, 5, 6]
    );
    // Rows 1–5 were not rewritten: they keep the batch that first loaded them.
    assert_eq!(
        env.rows(&format!(
            "SELECT CAST(count(*) AS VARCHAR) FROM raw.unit.permits WHERE _batch = '{first_batch}'"
        ))
        .await,
        [[s("5")]]
    );

    // Nothing changed: the window is read again and nothing is committed.
    let version = env.lake.open_existing(&table).await.unwrap().version();
    let r = env.sync(src.clone(), "permits").await.unwrap();
    assert_eq!(r.counts.rows_read, 6);
    assert_eq!(
        env.lake.open_existing(&table).await.unwrap().version(),
        version
    );
    assert!(
        r.notes.iter().any(|n| n.contains("no new or changed rows")),
        "{:?}",
        r.notes
    );

    // A change inside the window is merged.
    pg_exec(
        &db.url,
        "UPDATE permits SET status = '办结', updated_at = '2024-05-01 10:00:02.5' WHERE id = 1;",
    )
    .await;
    let r = env.sync(src.clone(), "permits").await.unwrap();
    let run = env.catalog.run(r.run_id).await.unwrap().unwrap();
    assert_eq!(
        (
            run.details["inserted"].as_i64(),
            run.details["updated"].as_i64()
        ),
        (Some(0), Some(1))
    );
    assert_eq!(
        env.rows("SELECT status FROM raw.unit.permits WHERE id = 1")
            .await,
        [[s("办结")]]
    );

    // A lookback needs upsert mode and a span that fits the cursor's type.
    let mut appending = src.clone();
    appending.mode = SyncMode::Incremental;
    let e = env
        .sync(appending, "permits_log")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("use mode = \"upsert\""), "{e}");
    let mut amount = src.clone();
    amount.lookback = Some(Lookback::Amount(10));
    let e = env.sync(amount, "permits").await.unwrap_err().to_string();
    assert!(
        e.contains("lookback 10 does not fit cursor column \"updated_at\" of type timestamp"),
        "{e}"
    );
    assert!(
        Lookback::parse("15 minutes")
            .unwrap_err()
            .contains("expected a time span")
    );
    assert_eq!(Lookback::parse("2h"), Ok(Lookback::Seconds(7_200)));
    db.drop_db().await;

    // MariaDB's window arithmetic, and a numeric cursor.
    let my = MyDatabase::create().await;
    my.exec(
        "CREATE TABLE seqs (id INT PRIMARY KEY, note VARCHAR(20), rev BIGINT UNSIGNED NOT NULL);
         INSERT INTO seqs VALUES (1, 'a', 100), (2, 'b', 101), (3, 'c', 102);",
    )
    .await;
    let mut src = source(DbKind::MySql, &my.url, "seqs", SyncMode::Upsert);
    src.cursor = Some("rev".into());
    src.lookback = Some(Lookback::Amount(5));
    env.sync(src.clone(), "seqs").await.unwrap();
    my.exec("INSERT INTO seqs VALUES (4, 'late', 98), (5, 'lost', 90);")
        .await;
    let r = env.sync(src.clone(), "seqs").await.unwrap();
    assert_eq!(r.counts.rows_read, 4, "98 and 100–102 are within 5 of 102");
    assert_eq!(
        env.ints("SELECT id FROM raw.unit.seqs ORDER BY id").await,
        [1, 2, 3, 4]
    );
    my.drop_db().await;
}

/// MariaDB in upsert mode with a composite key, and in full mode.
#[tokio::test]
async fn mariadb_upsert_with_a_composite_key() {
    let db = MyDatabase::create().await;
    db.exec(
        "CREATE TABLE cases (street CHAR(9) NOT NULL, seq INT UNSIGNED NOT NULL, status VARCHAR(20),
                             updated_at DATETIME(6) NOT NULL, PRIMARY KEY (street, seq));
         INSERT INTO cases VALUES
           ('310117001', 1, '受理', '2024-01-01 08:00:00.000001'),
           ('310117001', 2, '受理', '2024-01-01 08:00:00.000001'),
           ('310117002', 1, '受理', '2024-01-01 08:00:00.000001'),
           ('310117002', 2, '受理', '2024-01-01 08:00:00.000002');",
    )
    .await;
    let env = Env::new().await;
    let mut src = source(DbKind::MySql, &db.url, "cases", SyncMode::Upsert);
    src.key = vec!["street".into(), "seq".into()];
    src.detect_deletes = true;
    let r = env.sync(src.clone(), "cases").await.unwrap();
    assert_eq!((r.counts.rows_read, r.counts.rows_loaded), (4, 4));
    db.exec(
        "UPDATE cases SET status = '办结', updated_at = '2024-01-02' WHERE street = '310117002' AND seq = 1;
         DELETE FROM cases WHERE street = '310117001' AND seq = 2;",
    )
    .await;
    let r = env.sync(src.clone(), "cases").await.unwrap();
    assert_eq!((r.counts.rows_read, r.counts.rows_deleted), (1, 1));
    assert_eq!(
        env.rows("SELECT street, CAST(seq AS VARCHAR) AS n, status FROM raw.unit.cases ORDER BY street, n")
            .await,
        [
            [s("310117001"), s("1"), s("受理")],
            [s("310117002"), s("1"), s("办结")],
            [s("310117002"), s("2"), s("受理")]
        ]
    );

    // A full sync replaces the table with what the source has now.
    let mut full = source(DbKind::MySql, &db.url, "cases", SyncMode::Full);
    full.key = vec!["street".into(), "seq".into()];
    let r = env.sync(full, "cases_full").await.unwrap();
    assert_eq!(
        (r.counts.rows_read, r.counts.rows_loaded, r.table_rows),
        (3, 3, 3)
    );
    db.drop_db().await;
}

/// MariaDB's edge cases: zero dates, TINYINT(1), unsigned BIGINT, DECIMAL scale 0, GBK text,
/// TIMESTAMP as an instant.
#[tokio::test]
async fn mariadb_types_load_exactly() {
    let db = MyDatabase::create().await;
    db.exec(
        "SET SESSION sql_mode = '';
         SET time_zone = '+08:00';
         CREATE TABLE t (
           id INT PRIMARY KEY, small TINYINT(1), big BIGINT UNSIGNED, price DECIMAL(10,0),
           cents DECIMAL(12,2), d DATE, dt DATETIME(6), ts TIMESTAMP(6) NULL,
           name VARCHAR(20) CHARACTER SET gbk, b VARBINARY(4), yes BOOLEAN,
           updated_at DATETIME(6) NOT NULL
         );
         INSERT INTO t VALUES
           (1, 2, 18446744073709551615, 1234567890, -0.05, '2024-02-29', '2024-03-01 08:30:00.123456',
            '2024-03-01 08:30:00.5', '王小明', 0x00FF, 1, '2024-01-01'),
           (2, 9, 0, 0, 0, '0000-00-00', '0000-00-00 00:00:00', NULL, '松江', NULL, 0, '2024-01-01'),
           (3, 127, 1, 1, 1, '2024-00-15', '2024-03-00 10:00:00', NULL, NULL, NULL, NULL, '2024-01-02'),
           (4, -1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '2024-01-02');",
    )
    .await;
    let env = Env::new().await;
    let r = env
        .sync(
            source(DbKind::MySql, &db.url, "t", SyncMode::Incremental),
            "t",
        )
        .await
        .unwrap();
    assert_eq!(
        (
            r.counts.rows_read,
            r.counts.rows_loaded,
            r.counts.rows_quarantined,
            r.counts.rows_flagged
        ),
        (4, 4, 0, 2),
        "{r:#?}"
    );
    let rows = env
        .rows(
            "SELECT id, small, CAST(big AS VARCHAR), CAST(price AS VARCHAR), CAST(cents AS VARCHAR),
                    CAST(d AS VARCHAR), CAST(dt AS VARCHAR), CAST(ts AS VARCHAR), name,
                    encode(b, 'hex'), yes, _flags
             FROM raw.unit.t ORDER BY id",
        )
        .await;
    assert_eq!(
        rows[0],
        [
            s("1"),
            s("2"),
            s("18446744073709551615"),
            s("1234567890"),
            s("-0.05"),
            s("2024-02-29"),
            s("2024-03-01T08:30:00.123456"),
            // Written at +08:00: the instant is 00:30:00.5 UTC.
            s("2024-03-01T00:30:00.500Z"),
            s("王小明"),
            s("00ff"),
            s("1"),
            None,
        ]
    );
    // Zero and partial-zero dates are NULL, flagged with the raw value; the row still loads.
    assert_eq!((rows[1][5].clone(), rows[1][6].clone()), (None, None));
    assert_eq!(rows[1][8], s("松江"));
    let flags = rows[1][11].as_deref().unwrap();
    assert!(flags.contains(r#"d: zero date "0000-00-00""#), "{flags}");
    assert!(
        flags.contains(r#"dt: zero date "0000-00-00 00:00:00.000000""#),
        "{flags}"
    );
    assert!(
        rows[2][11].as_deref().unwrap().contains("2024-00-15"),
        "{rows:?}"
    );
    // TINYINT(1) stays an integer.
    assert_eq!(
        rows.iter().map(|r| r[1].clone()).collect::<Vec<_>>(),
        [s("2"), s("9"), s("127"), s("-1")]
    );
    let small = r.columns.iter().find(|c| c.name == "small").unwrap();
    assert_eq!(small.ty, "int64");
    assert!(small.note.as_deref().unwrap().contains("TINYINT(1)"));
    db.drop_db().await;
}
