//! Test helpers shared by the crates' integration tests: the real public data under
//! `../shared/data`, and fresh PostgreSQL databases for backend-matrix tests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use sqlx::Connection;

/// A lake and a SQLite catalog in a temporary folder, for tests that collect and then query.
pub struct LakeHome {
    pub dir: tempfile::TempDir,
    pub lake: reservoir_lake::Lake,
    pub catalog: reservoir_catalog::Catalog,
}

impl LakeHome {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().expect("temporary folder");
        let lake = reservoir_lake::Lake::local(dir.path().join("lake")).expect("lake");
        let catalog = reservoir_catalog::Catalog::connect(&format!(
            "sqlite://{}",
            dir.path().join("catalog.db").display()
        ))
        .await
        .expect("catalog");
        Self { dir, lake, catalog }
    }

    /// Writes `batch` as the raw table `unit.name` and registers it (and its unit) in the catalog.
    pub async fn table(
        &self,
        unit: &str,
        name: &str,
        batch: arrow::array::RecordBatch,
    ) -> reservoir_catalog::Dataset {
        use reservoir_catalog::*;
        use reservoir_lake::{Layer, TableRef};
        if self.catalog.unit(unit).await.unwrap().is_none() {
            self.catalog
                .upsert_unit(&NewUnit {
                    id: unit.into(),
                    name: unit.into(),
                    ..NewUnit::default()
                })
                .await
                .unwrap();
        }
        let table = TableRef::new(Layer::Raw, unit, name);
        let mut sink = self
            .lake
            .write(table.clone(), batch.schema())
            .start()
            .await
            .unwrap();
        let rows = batch.num_rows() as i64;
        sink.send(batch.clone()).await.unwrap();
        let outcome = sink.finish().await.unwrap();
        let dataset = self
            .catalog
            .upsert_dataset(&DatasetSpec {
                layer: "raw".into(),
                unit_id: unit.into(),
                name: name.into(),
                title: name.into(),
                description: String::new(),
                system_id: None,
                location: table.location(),
                update_frequency: UpdateFrequency::default(),
                sensitivity: 2,
                open_tier: OpenTier::default(),
            })
            .await
            .unwrap();
        let fields: Vec<Field> = batch
            .schema()
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| Field {
                position: i as i64,
                name: f.name().clone(),
                data_type: f.data_type().to_string(),
                nullable: f.is_nullable(),
                title: String::new(),
                description: String::new(),
                flags: String::new(),
            })
            .collect();
        self.catalog.set_fields(dataset.id, &fields).await.unwrap();
        self.catalog
            .record_table_state(dataset.id, rows, outcome.version)
            .await
            .unwrap();
        self.catalog
            .dataset_by_id(dataset.id)
            .await
            .unwrap()
            .unwrap()
    }

    /// Runs SQL over the lake; every value as its display text, NULL as `None`.
    pub async fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        use arrow::util::display::array_value_to_string;
        let engine = reservoir_query::QueryEngine::new(&self.lake, &self.catalog)
            .await
            .expect("query engine");
        let batches = engine
            .query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let mut out = Vec::new();
        for b in &batches {
            for r in 0..b.num_rows() {
                out.push(
                    b.columns()
                        .iter()
                        .map(|c| (!c.is_null(r)).then(|| array_value_to_string(c, r).unwrap()))
                        .collect(),
                );
            }
        }
        out
    }

    /// The first column of each row, as integers.
    pub async fn ints(&self, sql: &str) -> Vec<i64> {
        self.rows(sql)
            .await
            .into_iter()
            .map(|r| r[0].as_deref().unwrap().parse().unwrap())
            .collect()
    }
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// A file under the workplace's shared public data (`../shared/data` from the workspace root, or
/// `$RESERVOIR_SHARED_DATA`). Panics with a clear message if it is missing.
pub fn shared_data(rel: &str) -> PathBuf {
    let base = std::env::var_os("RESERVOIR_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared/data"));
    let path = base.join(rel);
    assert!(
        path.exists(),
        "test data {} is missing: these tests read the shared public data set (../shared/data)",
        path.display()
    );
    path
}

/// A file of the demo data committed under `demo/`.
pub fn demo_data(rel: &str) -> PathBuf {
    workspace_root().join("demo").join(rel)
}

/// The PostgreSQL server the tests use: `$RESERVOIR_TEST_PG_URL`, else the local default.
pub fn pg_admin_url() -> String {
    std::env::var("RESERVOIR_TEST_PG_URL")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// A database created for one test and dropped by [`PgDatabase::drop_db`].
pub struct PgDatabase {
    pub url: String,
    name: String,
    admin: String,
}

impl PgDatabase {
    /// Creates a fresh, empty database.
    pub async fn create() -> Self {
        let admin = pg_admin_url();
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
            panic!("cannot reach PostgreSQL at {admin} ({e}); start it or set RESERVOIR_TEST_PG_URL")
        });
        let name = format!("reservoir_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create test database");
        conn.close().await.ok();
        let mut url = url_with_database(&admin, &name);
        if !url.contains("application_name") {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str("application_name=reservoir-test");
        }
        Self { url, name, admin }
    }

    /// Runs SQL statements (separated by `;`) in the database.
    pub async fn exec(&self, sql: &str) {
        let mut conn = sqlx::PgConnection::connect(&self.url)
            .await
            .expect("connect to the test database");
        sqlx::raw_sql(sql)
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        conn.close().await.ok();
    }

    /// Drops the database (connections to it must be closed first).
    pub async fn drop_db(self) {
        if let Ok(mut conn) = sqlx::PgConnection::connect(&self.admin).await {
            let _ = sqlx::query(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut conn)
            .await;
            conn.close().await.ok();
        }
    }
}

fn url_with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let path_start = base[scheme_end..].find('/').map(|i| i + scheme_end);
    let host = match path_start {
        Some(i) => &base[..i],
        None => base,
    };
    match query {
        Some(q) => format!("{host}/{db}?{q}"),
        None => format!("{host}/{db}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_in_url() {
        assert_eq!(
            super::url_with_database("postgres://u@h:5432/postgres?sslmode=disable", "x"),
            "postgres://u@h:5432/x?sslmode=disable"
        );
        assert_eq!(
            super::url_with_database("postgres://u@h", "x"),
            "postgres://u@h/x"
        );
    }
}
