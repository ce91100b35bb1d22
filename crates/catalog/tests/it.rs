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

    directory_search_and_report(catalog, ds.id).await;
}

/// A catalog sheet imported (departments matched to units by name or created under a parent),
/// searched with Chinese words, and the operation report over runs and check runs.
async fn directory_search_and_report(catalog: &Catalog, villages: i64) {
    use reservoir_catalog::directory::{self, ImportOptions, Sheet, SheetRow};
    let rows: &[&[&str]] = &[
        &[
            "目录编码",
            "数据目录名称",
            "数据提供方",
            "所属主题",
            "标签",
            "信息项",
            "开放状态",
            "更新频率",
            "数据量",
        ],
        &[
            "TJ-001",
            "全省户籍人口统计",
            "区统计局",
            "社会发展",
            "人口,户籍",
            "年份|户籍人口数",
            "无条件开放",
            "每年",
            "40",
        ],
        &[
            "RS-001",
            "社保参保人员名录",
            "区人社局",
            "民生服务",
            "社保",
            "姓名|身份证号|参保状态",
            "有条件开放",
            "每月",
            "十万",
        ],
    ];
    let sheet = Sheet {
        source: "目录.csv".into(),
        rows: rows
            .iter()
            .enumerate()
            .map(|(i, r)| SheetRow {
                line: i as u64 + 1,
                cells: r.iter().map(|c| c.to_string()).collect(),
            })
            .collect(),
    };
    let parsed = directory::parse(&sheet, None).unwrap();
    let options = ImportOptions {
        parent: Some("minzheng".into()),
        sha256: "00".into(),
    };
    let report = catalog.import_directory(&parsed, &options).await.unwrap();
    assert_eq!((report.created, report.updated), (2, 0));
    assert_eq!(report.units_created, ["区人社局"], "区统计局 is tongji");
    assert_eq!(report.warnings_total, 1, "十万 is no record count");
    let again = catalog.import_directory(&parsed, &options).await.unwrap();
    assert_eq!((again.created, again.updated), (0, 2));
    let rs = catalog.unit("区人社局").await.unwrap().unwrap();
    assert_eq!(rs.parent_id.as_deref(), Some("minzheng"));
    let tj = catalog
        .dataset(CATALOG_LAYER, "tongji", "tj_001")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tj.title, "全省户籍人口统计");
    assert_eq!(tj.meta.tags, ["人口", "户籍"]);
    assert_eq!(tj.meta.declared_rows, Some(40));
    assert_eq!((tj.open_tier, tj.sensitivity), (OpenTier::Open, 1));
    assert_eq!(tj.update_frequency, UpdateFrequency::Yearly);
    assert_eq!(
        catalog
            .fields(tj.id)
            .await
            .unwrap()
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>(),
        ["年份", "户籍人口数"]
    );

    // Ranked search over words: 人口 finds 户籍人口 (jieba splits it), a field's word finds its
    // dataset, facets count the hits.
    let search = |q: &str| DatasetFilter {
        search: Some(q.into()),
        ..DatasetFilter::default()
    };
    let hits = catalog.search(&search("户籍人口")).await.unwrap();
    assert_eq!(hits[0].dataset.title, "全省户籍人口统计");
    assert!(hits[0].score > 0.0);
    let hits = catalog.datasets(&search("人口")).await.unwrap();
    assert_eq!(hits[0].name, "tj_001");
    let hits = catalog.datasets(&search("身份证号")).await.unwrap();
    assert_eq!(
        hits.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
        ["rs_001"]
    );
    let hits = catalog.datasets(&search("参保人员")).await.unwrap();
    assert_eq!(hits[0].name, "rs_001");
    assert_eq!(
        catalog.count_datasets(&search("户籍 村居")).await.unwrap(),
        2
    );
    let facets = catalog.dataset_facets(&search("户籍 村居")).await.unwrap();
    assert_eq!(
        facets.topics,
        [FacetValue {
            value: "社会发展".into(),
            count: 1
        }]
    );
    let by_topic = DatasetFilter {
        topic: Some("民生服务".into()),
        ..DatasetFilter::default()
    };
    assert_eq!(catalog.count_datasets(&by_topic).await.unwrap(), 1);
    assert!(
        catalog
            .datasets(&search("没有这个词"))
            .await
            .unwrap()
            .is_empty()
    );

    // The operation report: villages was collected (b1 loaded 386 rows, b2 failed) and checked.
    let now = chrono::Utc::now();
    catalog
        .record_check_run(&CheckRunRecord {
            id: 0,
            check_run: "c1".into(),
            dataset_id: villages,
            table_version: 1,
            rows_checked: 386,
            rows_failed: 38,
            scores: serde_json::json!({"validity": 90.0, "completeness": 100.0}),
            results: serde_json::json!([{
                "rule": "code_format", "check": "regex", "dimension": "validity",
                "columns": ["code"], "checked": 386, "failed": 38, "noted": 0,
                "examples": [{"key": "code=3101170", "column": "code", "value": "3101170", "reason": "does not match"}]
            }]),
            failures_version: Some(1),
            started_at: format_ts(now),
            finished_at: format_ts(now),
            rows_blocked: 0,
        })
        .await
        .unwrap();
    let month = reservoir_catalog::report::Month::of(now);
    let r = catalog
        .operation_report("minzheng", month, now)
        .await
        .unwrap();
    assert_eq!((r.datasets.cataloged, r.datasets.collected), (1, 1));
    assert_eq!(
        (r.rows.loaded, r.rows.runs, r.rows.failed_runs),
        (386, 2, 1)
    );
    assert_eq!((r.freshness.expected, r.freshness.on_time), (1, 1));
    assert_eq!(r.quality.overall, Some(95.0));
    assert_eq!(r.quality.scores["validity"], 90.0);
    assert_eq!(r.quality.top_rules[0].failed, 38);
    assert_eq!(
        r.quality.top_rules[0].examples[0].value.as_deref(),
        Some("3101170")
    );
    assert_eq!(r.quality.trend.len(), 6);
    assert_eq!(r.quality.trend.last().unwrap().score, Some(95.0));
    assert_eq!(
        r.ranking
            .iter()
            .map(|u| (u.unit_id.as_str(), u.rank))
            .collect::<Vec<_>>(),
        [("minzheng", 1), ("tongji", 2), ("区人社局", 3)]
    );
    let tongji = catalog
        .operation_report("tongji", month, now)
        .await
        .unwrap();
    assert_eq!(
        (tongji.datasets.cataloged, tongji.datasets.collected),
        (2, 0)
    );
    assert_eq!(tongji.datasets.collection_rate, Some(0.0));
    assert_eq!(tongji.quality.overall, None);
    // An earlier month has none of it.
    let before = catalog
        .operation_report("minzheng", month.previous().previous(), now)
        .await
        .unwrap();
    assert_eq!((before.datasets.cataloged, before.rows.runs), (0, 0));
    // Lineage: the runs' source loaded villages, its check wrote the quality table.
    let lineage = catalog.lineage(None).await.unwrap();
    let load = lineage
        .edges
        .iter()
        .find(|e| e.kind == "load" && e.to == "raw.minzheng.villages")
        .unwrap();
    assert_eq!((load.runs, load.rows), (1, 386), "b1 from a.csv");
    assert_eq!(
        lineage
            .edges
            .iter()
            .filter(|e| e.kind == "load" && e.to == "raw.minzheng.villages")
            .count(),
        1,
        "b2 from b.csv failed: it loaded nothing"
    );
    assert!(lineage.edges.iter().any(|e| e.kind == "check"
        && e.from == "raw.minzheng.villages"
        && e.to == "quality.minzheng.villages"
        && e.rows == 38));
    let villages_ds = catalog.dataset_by_id(villages).await.unwrap().unwrap();
    let own = catalog.lineage(Some(&villages_ds)).await.unwrap();
    assert!(
        own.edges
            .iter()
            .all(|e| e.to.contains("villages") || e.from.contains("villages"))
    );
    let html = reservoir_catalog::report::render_html(&r, Default::default());
    assert!(html.contains("区民政局") && html.contains("<svg"));
    let csv = reservoir_catalog::report::render_csv(&r);
    assert_eq!(csv.lines().count(), 2);
    assert!(matches!(
        catalog.operation_report("nobody", month, now).await,
        Err(Error::NotFound { kind: "unit", .. })
    ));
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
    assert_eq!(catalog.units().await.unwrap().len(), 3);
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
    assert_eq!(catalog.units().await.unwrap().len(), 3);
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
