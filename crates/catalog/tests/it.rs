//! The same catalog behaviour, asserted on SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use reservoir_catalog::*;
use reservoir_testkit::PgDatabase;

async fn exercise(catalog: &Catalog) {
    // Units: create, update, list; bad ids refused.
    let unit = catalog
        .upsert_unit(&NewUnit {
            id: "minzheng".into(),
            name: "民政局".into(),
            ..NewUnit::default()
        })
        .await
        .unwrap();
    assert_eq!(unit.name, "民政局");
    let unit = catalog
        .upsert_unit(&NewUnit {
            id: "minzheng".into(),
            name: "区民政局".into(),
            contact: "张三 021-0000".into(),
            ..NewUnit::default()
        })
        .await
        .unwrap();
    assert_eq!(
        (unit.name.as_str(), unit.contact.as_str()),
        ("区民政局", "张三 021-0000")
    );
    catalog
        .upsert_unit(&NewUnit {
            id: "tongji".into(),
            name: "区统计局".into(),
            ..NewUnit::default()
        })
        .await
        .unwrap();
    assert_eq!(
        catalog
            .units()
            .await
            .unwrap()
            .iter()
            .map(|u| u.id.as_str())
            .collect::<Vec<_>>(),
        ["minzheng", "tongji"]
    );
    assert!(matches!(
        catalog
            .upsert_unit(&NewUnit {
                id: "a/b".into(),
                name: "x".into(),
                ..NewUnit::default()
            })
            .await,
        Err(Error::Invalid { .. })
    ));

    // Systems.
    catalog
        .upsert_system(&System {
            unit_id: "minzheng".into(),
            id: "division".into(),
            name: "区划地名管理系统".into(),
            kind: "file".into(),
            description: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(catalog.systems(Some("minzheng")).await.unwrap().len(), 1);
    assert_eq!(catalog.systems(Some("tongji")).await.unwrap().len(), 0);
    assert!(matches!(
        catalog
            .upsert_system(&System {
                unit_id: "nobody".into(),
                id: "x".into(),
                name: "x".into(),
                kind: "file".into(),
                description: String::new(),
            })
            .await,
        Err(Error::NotFound { kind: "unit", .. })
    ));

    // Datasets.
    let spec = DatasetSpec {
        layer: "raw".into(),
        unit_id: "minzheng".into(),
        name: "villages".into(),
        title: "松江区村居委会".into(),
        description: "村民委员会、居民委员会".into(),
        system_id: Some("division".into()),
        location: "raw/minzheng/villages".into(),
        update_frequency: UpdateFrequency::Yearly,
        sensitivity: 1,
        open_tier: OpenTier::Open,
    };
    let ds = catalog.upsert_dataset(&spec).await.unwrap();
    assert_eq!(ds.qualified_name(), "raw.minzheng.villages");
    assert_eq!(
        (ds.update_frequency, ds.open_tier, ds.sensitivity),
        (UpdateFrequency::Yearly, OpenTier::Open, 1)
    );
    let again = catalog
        .upsert_dataset(&DatasetSpec {
            open_tier: OpenTier::Conditional,
            ..spec.clone()
        })
        .await
        .unwrap();
    assert_eq!((again.id, again.open_tier), (ds.id, OpenTier::Conditional));
    catalog
        .upsert_dataset(&DatasetSpec {
            unit_id: "tongji".into(),
            name: "gdp".into(),
            title: "分省地区生产总值".into(),
            description: String::new(),
            location: "raw/tongji/gdp".into(),
            ..spec.clone()
        })
        .await
        .unwrap();
    assert!(matches!(
        catalog
            .upsert_dataset(&DatasetSpec {
                sensitivity: 7,
                ..spec.clone()
            })
            .await,
        Err(Error::Invalid {
            what: "sensitivity",
            ..
        })
    ));
    let all = catalog.datasets(&DatasetFilter::default()).await.unwrap();
    assert_eq!(all.len(), 2);
    let found = catalog
        .datasets(&DatasetFilter {
            search: Some("居委".into()),
            ..DatasetFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        found.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
        ["villages"]
    );
    let by_unit = catalog
        .datasets(&DatasetFilter {
            unit_id: Some("tongji".into()),
            ..DatasetFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(by_unit.len(), 1);
    let paged = catalog
        .datasets(&DatasetFilter {
            limit: Some(1),
            offset: Some(1),
            ..DatasetFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(paged.len(), 1);
    assert_eq!(paged[0].name, "gdp"); // ordered by layer, unit, name

    // Fields: a new schema keeps business titles of fields that survive.
    let field = |i: i64, name: &str, title: &str| Field {
        position: i,
        name: name.into(),
        data_type: "Utf8".into(),
        nullable: true,
        title: title.into(),
        description: String::new(),
        flags: String::new(),
    };
    catalog
        .set_fields(ds.id, &[field(0, "code", "村居代码"), field(1, "name", "")])
        .await
        .unwrap();
    catalog
        .describe_field(ds.id, "name", "村居名称", "村居委会全称")
        .await
        .unwrap();
    catalog
        .set_fields(
            ds.id,
            &[
                field(0, "code", ""),
                field(1, "name", ""),
                field(2, "streetCode", ""),
            ],
        )
        .await
        .unwrap();
    let fields = catalog.fields(ds.id).await.unwrap();
    assert_eq!(
        fields
            .iter()
            .map(|f| (f.name.as_str(), f.title.as_str()))
            .collect::<Vec<_>>(),
        [
            ("code", "村居代码"),
            ("name", "村居名称"),
            ("streetCode", "")
        ]
    );
    assert_eq!(fields[1].description, "村居委会全称");
    assert!(catalog.describe_field(ds.id, "nope", "", "").await.is_err());

    // Runs: begin, finish, list newest first; the dataset learns its row count.
    let run1 = catalog
        .begin_run(&NewRun {
            batch_id: "b1".into(),
            dataset_id: ds.id,
            source: "files: a.csv".into(),
            mode: "overwrite".into(),
        })
        .await
        .unwrap();
    let counts = RunCounts {
        rows_read: 387,
        rows_loaded: 386,
        rows_quarantined: 1,
        rows_padded: 2,
        rows_flagged: 2,
        lines_skipped: 0,
        bytes_read: 24_383,
        rows_deleted: 0,
    };
    assert!(counts.balanced());
    catalog
        .finish_run(
            run1,
            &RunOutcome {
                status: RunStatus::Succeeded,
                counts,
                table_version: Some(0),
                error: None,
                details: serde_json::json!({"files": [{"encoding": "UTF-8"}]}),
            },
            Some(386),
        )
        .await
        .unwrap();
    let run2 = catalog
        .begin_run(&NewRun {
            batch_id: "b2".into(),
            dataset_id: ds.id,
            source: "files: b.csv".into(),
            mode: "append".into(),
        })
        .await
        .unwrap();
    catalog
        .finish_run(
            run2,
            &RunOutcome {
                status: RunStatus::Failed,
                counts: RunCounts::default(),
                table_version: None,
                error: Some("b.csv: declared encoding GBK does not fit".into()),
                details: serde_json::json!({}),
            },
            None,
        )
        .await
        .unwrap();
    let runs = catalog.runs(Some(ds.id), 10).await.unwrap();
    assert_eq!(
        runs.iter().map(|r| r.batch_id.as_str()).collect::<Vec<_>>(),
        ["b2", "b1"]
    );
    assert_eq!(runs[0].status, RunStatus::Failed);
    assert_eq!(runs[1].counts, counts);
    assert_eq!(runs[1].details["files"][0]["encoding"], "UTF-8");
    assert!(runs[1].finished_at.is_some());
    let ds = catalog.dataset_by_id(ds.id).await.unwrap().unwrap();
    assert_eq!((ds.row_count, ds.table_version), (386, Some(0)));
    assert!(
        catalog
            .begin_run(&NewRun {
                batch_id: "b1".into(),
                dataset_id: ds.id,
                source: String::new(),
                mode: "append".into()
            })
            .await
            .is_err(),
        "batch ids are unique"
    );

    // Profiles.
    assert!(catalog.latest_profiles(ds.id).await.unwrap().is_none());
    let profile = ColumnProfile {
        position: 0,
        column_name: "code".into(),
        data_type: "Utf8".into(),
        row_count: 386,
        null_count: 0,
        distinct_count: 386,
        min_value: Some("310117001001".into()),
        max_value: Some("310117121209".into()),
        top_values: vec![TopValue {
            value: Some("310117001001".into()),
            count: 1,
        }],
    };
    catalog
        .record_profiles(run1, ds.id, std::slice::from_ref(&profile))
        .await
        .unwrap();
    let (run, profiles) = catalog.latest_profiles(ds.id).await.unwrap().unwrap();
    assert_eq!(run, run1);
    assert_eq!(profiles, vec![profile]);

    // Totals, facets and the run feed for the console.
    let stats = catalog.stats().await.unwrap();
    assert_eq!(
        stats,
        CatalogStats {
            units: 2,
            systems: 1,
            datasets: 2,
            rows: 386,
            runs: 2,
            failed_runs: 1
        }
    );
    let by_unit = catalog.rows_by_unit().await.unwrap();
    assert_eq!(
        by_unit
            .iter()
            .map(|u| (u.unit_id.as_str(), u.datasets, u.rows))
            .collect::<Vec<_>>(),
        [("minzheng", 1, 386), ("tongji", 1, 0)]
    );
    let filter = DatasetFilter {
        search: Some("村居代码".into()),
        ..DatasetFilter::default()
    };
    assert_eq!(
        catalog.count_datasets(&filter).await.unwrap(),
        1,
        "field titles are searched"
    );
    let facets = catalog
        .dataset_facets(&DatasetFilter {
            unit_id: Some("tongji".into()),
            ..DatasetFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        facets.units.len(),
        2,
        "the unit facet ignores the unit filter"
    );
    assert_eq!(
        facets.open_tiers,
        [FacetValue {
            value: "open".into(),
            count: 1
        }]
    );
    let tiered = DatasetFilter {
        open_tier: Some(OpenTier::Conditional),
        ..DatasetFilter::default()
    };
    assert_eq!(catalog.count_datasets(&tiered).await.unwrap(), 1);
    let feed = catalog.recent_runs(5).await.unwrap();
    assert_eq!(feed.len(), 2);
    assert_eq!(
        (
            feed[0].run.batch_id.as_str(),
            feed[0].dataset.as_str(),
            feed[0].title.as_str()
        ),
        ("b2", "villages", "松江区村居委会")
    );
}

#[tokio::test]
async fn catalog_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("catalog.db").display());
    let catalog = Catalog::connect(&url).await.unwrap();
    assert_eq!(catalog.backend(), Backend::Sqlite);
    exercise(&catalog).await;
    catalog.close().await;
    // Reopening runs no migration twice and keeps the data.
    let catalog = Catalog::connect(&url).await.unwrap();
    assert_eq!(catalog.units().await.unwrap().len(), 2);
    catalog.close().await;
}

#[tokio::test]
async fn catalog_on_postgres() {
    let db = PgDatabase::create().await;
    let catalog = Catalog::connect(&db.url).await.unwrap();
    assert_eq!(catalog.backend(), Backend::Postgres);
    exercise(&catalog).await;
    catalog.close().await;
    let catalog = Catalog::connect(&db.url).await.unwrap();
    assert_eq!(catalog.units().await.unwrap().len(), 2);
    catalog.close().await;
    db.drop_db().await;
}

#[tokio::test]
async fn unsupported_urls_are_named() {
    let err = Catalog::connect("mysql://root@localhost/x")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("mysql://root@localhost/x"),
        "{err}"
    );
}
