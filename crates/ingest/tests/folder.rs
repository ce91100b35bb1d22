//! Drop folders: each delivered file is loaded once, known by its content.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use reservoir_catalog::Catalog;
use reservoir_ingest::folder::{FolderRequest, FolderSource};
use reservoir_ingest::{CollectRequest, Collector, NoProgress};
use reservoir_lake::{Lake, Layer, TableRef};
use sqlx::Connection;

#[tokio::test]
async fn each_delivery_loads_once() {
    let dir = tempfile::tempdir().unwrap();
    let drop = dir.path().join("drop");
    std::fs::create_dir(&drop).unwrap();
    let db = dir.path().join("catalog.db");
    let lake = Lake::local(dir.path().join("lake")).unwrap();
    let catalog = Catalog::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let collector = Collector::new(lake.clone(), catalog.clone());
    let req = |settle: u64| FolderRequest {
        source: FolderSource {
            path: drop.clone(),
            pattern: Some("*.csv".into()),
            settle: Duration::from_secs(settle),
        },
        template: CollectRequest {
            unit: "weijian".into(),
            dataset: "vaccinations".into(),
            ..CollectRequest::default()
        },
    };
    let table = TableRef::new(Layer::Raw, "weijian", "vaccinations");
    let rows = || async {
        reservoir_lake::row_count_of(&lake.open_existing(&table).await.unwrap()).unwrap()
    };

    std::fs::write(drop.join("2024-01.csv"), "id,dose\n1,1\n2,1\n3,2\n").unwrap();
    std::fs::write(drop.join("2024-02.csv"), "id,dose\n4,1\n").unwrap();
    std::fs::write(drop.join("readme.txt"), "not data").unwrap();
    let r = collector
        .collect_folder(req(0), Arc::new(NoProgress))
        .await
        .unwrap();
    assert_eq!(r.loaded.len(), 2, "{r:?}");
    assert_eq!(rows().await, 4);

    // The same content under another name, and a scan with nothing new: nothing loaded.
    std::fs::copy(drop.join("2024-01.csv"), drop.join("2024-01 (copy).csv")).unwrap();
    let r = collector
        .collect_folder(req(0), Arc::new(NoProgress))
        .await
        .unwrap();
    assert!(r.loaded.is_empty(), "{r:?}");
    assert_eq!(r.skipped.len(), 3, "{r:?}");
    assert!(
        r.skipped
            .iter()
            .any(|s| s.path.ends_with("(copy).csv") && s.reason.contains("already delivered as")),
        "{r:?}"
    );
    assert_eq!(rows().await, 4);

    // A new file, loaded; then the catalog "forgets" it (as if the process died between the
    // lake commit and the catalog record): the lake's transaction still says it is loaded.
    std::fs::write(drop.join("2024-03.csv"), "id,dose\n5,3\n6,3\n").unwrap();
    let r = collector
        .collect_folder(req(0), Arc::new(NoProgress))
        .await
        .unwrap();
    assert_eq!(r.loaded.len(), 1);
    assert_eq!(rows().await, 6);
    let sha = reservoir_ingest::folder::sha256_file(&drop.join("2024-03.csv")).unwrap();
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query("DELETE FROM delivered_files WHERE sha256 = ?")
        .bind(&sha)
        .execute(&mut c)
        .await
        .unwrap();
    let r = collector
        .collect_folder(req(0), Arc::new(NoProgress))
        .await
        .unwrap();
    assert!(r.loaded.is_empty(), "{r:?}");
    assert!(
        r.skipped
            .iter()
            .any(|s| s.path.ends_with("2024-03.csv") && s.reason.contains("already in the lake")),
        "{r:?}"
    );
    assert_eq!(rows().await, 6);

    // A file still being written (changed within the settle time) waits for the next scan.
    std::fs::write(drop.join("2024-04.csv"), "id,dose\n7,1\n").unwrap();
    let r = collector
        .collect_folder(req(3600), Arc::new(NoProgress))
        .await
        .unwrap();
    assert!(r.loaded.is_empty());
    assert!(
        r.skipped
            .iter()
            .any(|s| s.path.ends_with("2024-04.csv") && s.reason.contains("left for the next scan")),
        "{r:?}"
    );
}
