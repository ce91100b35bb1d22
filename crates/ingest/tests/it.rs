//! Collection of real files from ../shared/data and of deliberately bad input.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use reservoir_catalog::RunStatus;
use reservoir_ingest::{
    CollectRequest, Collector, ColumnSpec, ColumnType, Error, NoProgress, RunReport,
};
use reservoir_lake::WriteMode;
use reservoir_testkit::{LakeHome, shared_data};

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

    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    async fn collect(&self, req: CollectRequest) -> Result<RunReport, Error> {
        Collector::new(self.lake.clone(), self.catalog.clone())
            .collect(req, Arc::new(NoProgress))
            .await
    }
}

fn req(unit: &str, dataset: &str, files: &[&Path]) -> CollectRequest {
    CollectRequest {
        unit: unit.into(),
        dataset: dataset.into(),
        files: files.iter().map(|p| p.to_path_buf()).collect(),
        ..CollectRequest::default()
    }
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

const PROVINCES: [&str; 31] = [
    "北京市",
    "天津市",
    "河北省",
    "山西省",
    "内蒙古自治区",
    "辽宁省",
    "吉林省",
    "黑龙江省",
    "上海市",
    "江苏省",
    "浙江省",
    "安徽省",
    "福建省",
    "江西省",
    "山东省",
    "河南省",
    "湖北省",
    "湖南省",
    "广东省",
    "广西壮族自治区",
    "海南省",
    "重庆市",
    "四川省",
    "贵州省",
    "云南省",
    "西藏自治区",
    "陕西省",
    "甘肃省",
    "青海省",
    "宁夏回族自治区",
    "新疆维吾尔自治区",
];

const GBK_EXPORT: &str = "gov_files/gbk_csv/nbs_export_分省年度数据_地区生产总值_GBK.csv";

#[tokio::test]
async fn gbk_statistics_export_with_preamble_and_footer() {
    let env = Env::new().await;
    let path = shared_data(GBK_EXPORT);
    let r = env.collect(req("tongji", "gdp", &[&path])).await.unwrap();

    assert_eq!(
        (
            r.counts.rows_read,
            r.counts.rows_loaded,
            r.counts.rows_quarantined
        ),
        (31, 31, 0)
    );
    let f = &r.files[0];
    assert_eq!(f.encoding.as_deref(), Some("GBK"));
    assert_eq!(f.header_line, 4);
    let skipped: Vec<(&str, &str)> = f
        .skipped
        .iter()
        .map(|s| (s.kind, s.text.as_str()))
        .collect();
    assert_eq!(
        skipped[..3],
        [
            ("preamble", "数据库：分省年度数据"),
            ("preamble", "指标：地区生产总值(亿元)"),
            ("preamble", "时间：最近20年")
        ]
    );
    assert_eq!(skipped[4], ("footer", "数据来源：国家统计局"));
    assert!(
        skipped[3]
            .1
            .starts_with("注：按照我国国民经济核算数据修订制度")
    );
    assert_eq!(r.counts.lines_skipped, 5);
    assert_eq!(r.columns.len(), 20);
    assert_eq!(
        (r.columns[0].name.as_str(), r.columns[0].ty.as_str()),
        ("地区", "utf8")
    );
    assert_eq!(
        (r.columns[1].name.as_str(), r.columns[1].ty.as_str()),
        ("2024年", "float64")
    );
    assert_eq!(r.columns[19].name, "2006年");

    let rows = env
        .rows("SELECT \"地区\", \"2024年\", \"2006年\" FROM raw.tongji.gdp ORDER BY _source_row")
        .await;
    assert_eq!(
        rows.iter()
            .map(|r| r[0].clone().unwrap())
            .collect::<Vec<_>>(),
        PROVINCES
    );
    assert_eq!(rows[0], [s("北京市"), s("49670.2"), s("8618.9")]);
    assert_eq!(rows[30][..2], [s("新疆维吾尔自治区"), s("20492.4")]);
    assert_eq!(rows[29][2], s("691.6"));
    // Source lines point into the original file.
    let lines = env
        .rows("SELECT min(_source_row), max(_source_row) FROM raw.tongji.gdp")
        .await;
    assert_eq!(lines[0], [s("5"), s("35")]);

    // The catalog recorded the run, the schema and a profile.
    let ds = env
        .catalog
        .dataset("raw", "tongji", "gdp")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ds.row_count, 31);
    let runs = env.catalog.runs(Some(ds.id), 5).await.unwrap();
    assert_eq!(runs[0].status, RunStatus::Succeeded);
    assert_eq!(runs[0].counts.rows_loaded, 31);
    assert_eq!(runs[0].details["files"][0]["encoding"], "GBK");
    let (_, profile) = env.catalog.latest_profiles(ds.id).await.unwrap().unwrap();
    let region = profile.iter().find(|p| p.column_name == "地区").unwrap();
    assert_eq!(
        (region.row_count, region.null_count, region.distinct_count),
        (31, 0, 31)
    );
    let y2024 = profile.iter().find(|p| p.column_name == "2024年").unwrap();
    assert_eq!(y2024.max_value.as_deref(), Some("141488.9"));
    assert!(profile.iter().all(|p| !p.column_name.starts_with('_')));
}

#[tokio::test]
async fn foshan_catalog_with_cr_characters_reads_793_rows() {
    let env = Env::new().await;
    let path = shared_data("catalogs/cn_foshan_opendata_catalog_2017_crawl.csv");
    let r = env.collect(req("shuju", "foshan", &[&path])).await.unwrap();
    assert_eq!(
        (
            r.counts.rows_read,
            r.counts.rows_loaded,
            r.counts.rows_quarantined
        ),
        (793, 793, 0)
    );
    assert_eq!(r.columns.len(), 77);
    assert_eq!(r.counts.rows_padded, 0);
    let rows = env
        .rows("SELECT count(*), count(DISTINCT cata_title) FROM raw.shuju.foshan")
        .await;
    assert_eq!(rows[0][0], s("793"));
}

#[tokio::test]
async fn harbin_catalog_xlsx_skips_its_blank_second_row() {
    let env = Env::new().await;
    let path = shared_data("catalogs/cn_harbin_opendata_catalog_crawl.xlsx");
    let r = env.collect(req("shuju", "harbin", &[&path])).await.unwrap();
    assert_eq!(
        (
            r.counts.rows_read,
            r.counts.rows_loaded,
            r.counts.rows_quarantined
        ),
        (810, 810, 0)
    );
    assert_eq!(r.columns.len(), 20);
    assert_eq!(r.files[0].sheet.as_deref(), Some("Sheet1"));
    assert_eq!(r.columns[1].name, "数据量");
    assert_eq!(r.columns[1].ty, "int64");
    let rows = env
        .rows("SELECT \"数据目录名称\", \"数据量\", \"开放状态\", \"来源部门\", _source_row FROM raw.shuju.harbin ORDER BY _source_row LIMIT 1")
        .await;
    assert_eq!(
        rows[0],
        [
            s("哈尔滨市市属企业注销信息"),
            s("34158"),
            s("无条件开放"),
            s("市场监督管理局"),
            s("3")
        ]
    );
}

#[tokio::test]
async fn nyc_311_keeps_zip_codes_as_text_and_reads_us_dates() {
    let env = Env::new().await;
    let path = shared_data("hotline/NYC311_tuplex_311_subset.micro.csv");
    let r = env
        .collect(req("chengyun", "nyc311", &[&path]))
        .await
        .unwrap();
    assert_eq!(
        (
            r.counts.rows_read,
            r.counts.rows_loaded,
            r.counts.rows_quarantined
        ),
        (2000, 2000, 0)
    );
    let col = |n: &str| r.columns.iter().find(|c| c.name == n).unwrap().ty.clone();
    assert_eq!(col("Incident Zip"), "utf8");
    assert_eq!(col("Unique Key"), "utf8");
    assert_eq!(col("Created Date"), "timestamp");
    let rows = env
        .rows("SELECT \"Unique Key\", \"Incident Zip\", \"Created Date\" FROM raw.chengyun.nyc311 ORDER BY _source_row LIMIT 2")
        .await;
    assert_eq!(
        rows[0],
        [s("19937896"), s("10027"), s("2011-03-01T14:27:57")]
    );
    assert_eq!(rows[1][1], s("11232"));
    let zips = env
        .rows("SELECT count(*) FROM raw.chengyun.nyc311 WHERE \"Incident Zip\" LIKE '1%'")
        .await;
    assert!(zips[0][0].as_deref().unwrap().parse::<i64>().unwrap() > 1000);
}

#[tokio::test]
async fn truncated_gbk_quarantines_the_cut_row_naming_the_byte_offset() {
    let env = Env::new().await;
    let full = std::fs::read(shared_data(GBK_EXPORT)).unwrap();
    // Cut inside the first character of 新疆维吾尔自治区 (two GBK bytes), dropping the footer.
    let (xinjiang, _, _) = encoding_rs::GBK.encode("新疆");
    let start = full
        .windows(xinjiang.len())
        .position(|w| w == &*xinjiang)
        .unwrap();
    let cut = &full[..start + 1];
    let path = env.file("truncated.csv", cut);
    let r = env.collect(req("tongji", "gdp", &[&path])).await.unwrap();
    assert_eq!(
        (
            r.counts.rows_read,
            r.counts.rows_loaded,
            r.counts.rows_quarantined
        ),
        (31, 30, 1)
    );
    let rej = &r.rejected_sample[0];
    assert_eq!(
        rej.reason,
        format!(
            "bytes 0x{:02X} at byte offset {start} are not valid GBK",
            full[start]
        )
    );
    assert_eq!(rej.line, 35);
    let q = env
        .rows("SELECT _source_row, reason FROM quarantine.tongji.gdp")
        .await;
    assert_eq!(q.len(), 1);
    assert_eq!(q[0][0], s("35"));
    assert!(
        q[0][1]
            .as_deref()
            .unwrap()
            .contains(&format!("byte offset {start}"))
    );
}

#[tokio::test]
async fn ragged_csv_pads_short_rows_and_quarantines_long_ones() {
    let env = Env::new().await;
    let path = env.file(
        "ragged.csv",
        b"name,count,note\nalpha,1,x\nbeta,2\ngamma,3,y,extra\ndelta,4,z\n",
    );
    let r = env.collect(req("u", "ragged", &[&path])).await.unwrap();
    let c = r.counts;
    assert_eq!((c.rows_read, c.rows_loaded, c.rows_quarantined), (4, 3, 1));
    assert_eq!((c.rows_padded, c.rows_flagged), (1, 1));
    assert!(c.balanced());
    let rows = env
        .rows("SELECT name, count, note, _flags FROM raw.u.ragged ORDER BY _source_row")
        .await;
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1][..3], [s("beta"), s("2"), None]);
    assert_eq!(
        rows[1][3],
        s("short row: 2 of 3 fields, the rest loaded as NULL")
    );
    assert_eq!(rows[0][3], None);
    let q = env
        .rows("SELECT _source_file, _source_row, raw, reason FROM quarantine.u.ragged")
        .await;
    assert_eq!(
        q,
        [[
            s("ragged.csv"),
            s("4"),
            s("gamma,3,y,extra"),
            s("row has 4 fields but the header has 3")
        ]]
    );
}

#[tokio::test]
async fn a_wrong_declared_encoding_stops_before_loading() {
    let env = Env::new().await;
    let path = shared_data(GBK_EXPORT);
    let mut r = req("tongji", "gdp", &[&path]);
    r.csv.encoding = Some(encoding_rs::UTF_8);
    let err = env.collect(r).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::EncodingMismatch { .. }), "{msg}");
    assert!(msg.contains("declared encoding UTF-8"), "{msg}");
    assert!(msg.contains("looks like GBK"), "{msg}");
    assert!(msg.contains("byte offset 0"), "{msg}");
    assert!(msg.contains("--encoding gbk"), "{msg}");
    // Nothing was loaded, and the catalog says why.
    assert!(
        env.lake
            .open(&reservoir_lake::TableRef::new(
                reservoir_lake::Layer::Raw,
                "tongji",
                "gdp"
            ))
            .await
            .unwrap()
            .is_none()
    );
    let ds = env
        .catalog
        .dataset("raw", "tongji", "gdp")
        .await
        .unwrap()
        .unwrap();
    let runs = env.catalog.runs(Some(ds.id), 1).await.unwrap();
    assert_eq!(runs[0].status, RunStatus::Failed);
    assert!(runs[0].error.as_deref().unwrap().contains("looks like GBK"));

    // The other way round: UTF-8 Chinese declared as GBK would turn into mojibake.
    let utf8 = env.file("utf8.csv", "地区,值\n北京市,1\n".as_bytes());
    let mut r = req("tongji", "utf8", &[&utf8]);
    r.csv.encoding = Some(encoding_rs::GBK);
    let msg = env.collect(r).await.unwrap_err().to_string();
    assert!(msg.contains("looks like UTF-8"), "{msg}");

    // Forced, it runs (and the user owns the result): every row is still accounted for.
    let ascii_header = env.file("forced.csv", "name,v\n北京市,1\n".as_bytes());
    let mut r = req("tongji", "forced", &[&ascii_header]);
    r.csv.encoding = Some(encoding_rs::GBK);
    r.csv.force_encoding = true;
    let c = env.collect(r).await.unwrap().counts;
    assert_eq!(c.rows_read, 1);
    assert!(c.balanced());
}

#[tokio::test]
async fn excel_phantom_leap_day_is_flagged_not_invented() {
    let env = Env::new().await;
    let path = env.dir.path().join("dates.xlsx");
    {
        use rust_xlsxwriter::{Format, Workbook};
        let mut wb = Workbook::new();
        let ws = wb.add_worksheet();
        let date = Format::new().set_num_format("yyyy-mm-dd");
        ws.write_string(0, 0, "name").unwrap();
        ws.write_string(0, 1, "birth").unwrap();
        for (i, (name, serial)) in [("a", 60.0), ("b", 61.0), ("c", 45352.0), ("d", 59.0)]
            .iter()
            .enumerate()
        {
            let row = i as u32 + 1;
            ws.write_string(row, 0, *name).unwrap();
            ws.write_number_with_format(row, 1, *serial, &date).unwrap();
        }
        wb.save(&path).unwrap();
    }
    let r = env.collect(req("u", "dates", &[&path])).await.unwrap();
    assert_eq!(
        (
            r.counts.rows_read,
            r.counts.rows_loaded,
            r.counts.rows_flagged
        ),
        (4, 4, 1)
    );
    assert_eq!(r.columns[1].ty, "date");
    let rows = env
        .rows("SELECT name, birth, _flags FROM raw.u.dates ORDER BY _source_row")
        .await;
    assert_eq!(rows[0][1], None);
    assert!(
        rows[0][2]
            .as_deref()
            .unwrap()
            .contains("1900-02-29, a day that does not exist")
    );
    assert_eq!(rows[1][1], s("1900-03-01"));
    assert_eq!(rows[2][1], s("2024-03-01"));
    assert_eq!(rows[3][1], s("1900-02-28"));
}

#[tokio::test]
async fn json_and_ndjson() {
    let env = Env::new().await;
    let json = env.file(
        "cases.json",
        "[{\"id\": \"0001\", \"street\": \"岳阳街道\", \"count\": 3, \"tags\": [\"噪音\"]},\n {\"id\": \"0002\", \"street\": \"永丰街道\", \"count\": null}]".as_bytes(),
    );
    let r = env.collect(req("u", "cases", &[&json])).await.unwrap();
    assert_eq!(r.counts.rows_loaded, 2);
    let rows = env
        .rows("SELECT id, street, count, tags FROM raw.u.cases ORDER BY id")
        .await;
    assert_eq!(rows[0], [s("0001"), s("岳阳街道"), s("3"), s("[\"噪音\"]")]);
    assert_eq!(rows[1][2], None);

    let nd = env.file(
        "cases.ndjson",
        b"{\"id\": \"0003\", \"count\": 5}\nnot json\n",
    );
    let mut r = req("u", "cases", &[&nd]);
    r.mode = WriteMode::Append;
    let r = env.collect(r).await.unwrap();
    assert_eq!(
        (
            r.counts.rows_read,
            r.counts.rows_loaded,
            r.counts.rows_quarantined
        ),
        (2, 1, 1)
    );
    assert!(
        r.rejected_sample[0]
            .reason
            .starts_with("invalid JSON record")
    );
    assert_eq!(r.table_rows, 3);
}

#[tokio::test]
async fn values_that_break_the_inferred_type_are_quarantined_with_the_reason() {
    let env = Env::new().await;
    let path = env.file("late.csv", b"k,v\na,1\nb,2\nc,n/a\nd,4\n");
    let mut r = req("u", "late", &[&path]);
    r.infer_rows = 2;
    r.batch_rows = 2;
    let r = env.collect(r).await.unwrap();
    assert_eq!(
        (
            r.counts.rows_read,
            r.counts.rows_loaded,
            r.counts.rows_quarantined
        ),
        (4, 3, 1)
    );
    assert_eq!(
        r.rejected_sample[0].reason,
        "column \"v\": value \"n/a\" is not int64 (an integer (at most 15 digits, no leading zero); the type was inferred from the first 2 rows — declare the column's type to load such values)"
    );

    // Declared as text, the same file loads completely.
    let mut r = req("u", "late_text", &[&path]);
    r.columns.push(ColumnSpec {
        name: "v".into(),
        ty: Some(ColumnType::Utf8),
        ..ColumnSpec::default()
    });
    r.infer_rows = 2;
    assert_eq!(env.collect(r).await.unwrap().counts.rows_loaded, 4);
}

#[tokio::test]
async fn appending_follows_the_table_schema() {
    let env = Env::new().await;
    let first = env.file("a.csv", b"code,n\n001,1\n002,2\n");
    env.collect(req("u", "t", &[&first])).await.unwrap();
    // Reordered columns, one missing, one bad value for the table's int64 column.
    let second = env.file("b.csv", b"n,code\n3,003\nx,004\n");
    let r = env.collect(req("u", "t", &[&second])).await.unwrap();
    assert_eq!(
        (
            r.counts.rows_loaded,
            r.counts.rows_quarantined,
            r.table_rows
        ),
        (1, 1, 3)
    );
    assert!(
        r.rejected_sample[0]
            .reason
            .contains("the existing table has this type")
    );
    let rows = env.rows("SELECT code, n FROM raw.u.t ORDER BY code").await;
    assert_eq!(
        rows,
        [[s("001"), s("1")], [s("002"), s("2")], [s("003"), s("3")]]
    );

    // A column the table does not have stops the run with the names.
    let third = env.file("c.csv", b"code,n,extra\n005,5,x\n");
    let msg = env
        .collect(req("u", "t", &[&third]))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("[\"extra\"]") && msg.contains("raw.u.t"),
        "{msg}"
    );

    // Overwrite replaces table and schema.
    let mut o = req("u", "t", &[&third]);
    o.mode = WriteMode::Overwrite;
    let r = env.collect(o).await.unwrap();
    assert_eq!((r.table_rows, r.columns.len()), (1, 3));
}

#[tokio::test]
async fn several_files_in_one_run() {
    let env = Env::new().await;
    let a = env.file("a.csv", "街道,人口\n岳阳街道,100\n".as_bytes());
    let (b_gbk, _, _) = encoding_rs::GBK.encode("人口,街道\n200,永丰街道\n");
    let b = env.file("b.csv", &b_gbk);
    let r = env.collect(req("u", "pop", &[&a, &b])).await.unwrap();
    assert_eq!(r.counts.rows_loaded, 2);
    assert_eq!(r.files[1].encoding.as_deref(), Some("GBK"));
    let rows = env
        .rows("SELECT \"街道\", \"人口\", _source_file FROM raw.u.pop ORDER BY 2")
        .await;
    assert_eq!(
        rows,
        [
            [s("岳阳街道"), s("100"), s("a.csv")],
            [s("永丰街道"), s("200"), s("b.csv")]
        ]
    );
}

#[tokio::test]
async fn legacy_xls_with_title_and_footer_rows() {
    let env = Env::new().await;
    let path = shared_data("gov_files/nbs_xls/nbs_export_分省年度数据.xls");
    let r = env
        .collect(req("tongji", "gdp_xls", &[&path]))
        .await
        .unwrap();
    assert_eq!(
        (
            r.counts.rows_read,
            r.counts.rows_loaded,
            r.counts.rows_quarantined
        ),
        (31, 31, 0)
    );
    let f = &r.files[0];
    assert_eq!(
        (f.format, f.sheet.as_deref(), f.header_line),
        ("xls", Some("分省年度数据"), 4)
    );
    let kinds: Vec<&str> = f.skipped.iter().map(|s| s.kind).collect();
    assert_eq!(
        kinds,
        [
            "preamble", "preamble", "preamble", "footer", "footer", "footer"
        ]
    );
    assert_eq!(f.skipped[5].text, "数据来源：国家统计局");
    assert_eq!(
        r.columns
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["地区", "2019年", "2018年", "2017年", "2016年", "2015年"]
    );
    let rows = env
        .rows("SELECT \"地区\" FROM raw.tongji.gdp_xls ORDER BY _source_row")
        .await;
    assert_eq!(
        rows.iter()
            .map(|r| r[0].clone().unwrap())
            .collect::<Vec<_>>(),
        PROVINCES
    );
}

#[tokio::test]
async fn every_supported_encoding_and_tsv() {
    let env = Env::new().await;
    // 䶮 (U+4DAE) takes four bytes in GB18030 and does not exist in GBK.
    let text = "名称\t代码\n岳阳街道\t310117001\n䶮\t310117002\n";
    let utf16le: Vec<u8> = [0xFF, 0xFE]
        .into_iter()
        .chain(text.encode_utf16().flat_map(u16::to_le_bytes))
        .collect();
    let utf16be: Vec<u8> = [0xFE, 0xFF]
        .into_iter()
        .chain(text.encode_utf16().flat_map(u16::to_be_bytes))
        .collect();
    let utf8bom: Vec<u8> = [0xEF, 0xBB, 0xBF].into_iter().chain(text.bytes()).collect();
    let (gb18030, _, unmappable) = encoding_rs::GB18030.encode(text);
    assert!(!unmappable);
    let cases: [(&str, Vec<u8>, Option<&'static encoding_rs::Encoding>, &str); 4] = [
        ("utf16le.tsv", utf16le, None, "UTF-16LE"),
        ("utf16be.tsv", utf16be, None, "UTF-16BE"),
        ("utf8bom.tsv", utf8bom, None, "UTF-8"),
        (
            "gb18030.tsv",
            gb18030.into_owned(),
            Some(encoding_rs::GB18030),
            "gb18030",
        ),
    ];
    for (name, bytes, declared, expected) in cases {
        let path = env.file(name, &bytes);
        let dataset = name.replace('.', "_");
        let mut r = req("u", &dataset, &[&path]);
        r.csv.encoding = declared;
        let report = env.collect(r).await.unwrap();
        assert_eq!(
            report.files[0].encoding.as_deref(),
            Some(expected),
            "{name}"
        );
        assert_eq!(report.files[0].delimiter.as_deref(), Some("\\t"), "{name}");
        let rows = env
            .rows(&format!(
                "SELECT \"名称\", \"代码\" FROM raw.u.{dataset} ORDER BY 2"
            ))
            .await;
        assert_eq!(
            rows,
            [[s("岳阳街道"), s("310117001")], [s("䶮"), s("310117002")]],
            "{name}"
        );
    }
}

#[tokio::test]
async fn quoted_fields_keep_line_breaks_and_delimiters() {
    let env = Env::new().await;
    let path = env.file(
        "q.csv",
        "id,地址,备注\r\n1,\"松江区\r\n岳阳街道\",\"a,b\"\r\n2,\"说\"\"好\"\"\",\r\n".as_bytes(),
    );
    let r = env.collect(req("u", "q", &[&path])).await.unwrap();
    assert_eq!((r.counts.rows_read, r.counts.rows_loaded), (2, 2));
    let rows = env
        .rows("SELECT id, \"地址\", \"备注\", _source_row FROM raw.u.q ORDER BY id")
        .await;
    assert_eq!(rows[0], [s("1"), s("松江区\r\n岳阳街道"), s("a,b"), s("2")]);
    assert_eq!(rows[1], [s("2"), s("说\"好\""), None, s("4")]);
}

#[tokio::test]
async fn chinese_unit_and_dataset_names_in_sql() {
    let env = Env::new().await;
    let path = shared_data("admin_divisions/songjiang_310117_streets_extract.csv");
    let r = env.collect(req("民政", "街镇", &[&path])).await.unwrap();
    assert_eq!(r.table, "raw.民政.街镇");
    assert_eq!(r.counts.rows_loaded, 20);
    let quoted = env.rows("SELECT count(*) FROM raw.\"民政\".\"街镇\"").await;
    let bare = env
        .rows("SELECT count(*) FROM 民政.街镇 WHERE name LIKE '%镇'")
        .await;
    assert_eq!(quoted[0][0], s("20"));
    assert_eq!(bare[0][0], s("11"));
    // Profiles carry top values.
    let ds = env
        .catalog
        .dataset("raw", "民政", "街镇")
        .await
        .unwrap()
        .unwrap();
    let (_, profile) = env.catalog.latest_profiles(ds.id).await.unwrap().unwrap();
    let area = profile
        .iter()
        .find(|p| p.column_name == "areaCode")
        .unwrap();
    assert_eq!(
        area.top_values,
        [reservoir_catalog::TopValue {
            value: s("310117"),
            count: 20
        }]
    );
    assert_eq!(
        (area.min_value.as_deref(), area.distinct_count),
        (Some("310117"), 1)
    );
}

/// Many small chunks over two files go through the conversion threads in parallel and are
/// committed in source order: every row once, in file and line order, and the rejected rows in
/// quarantine in order too.
#[tokio::test]
async fn chunks_converted_in_parallel_commit_in_source_order() {
    let env = Env::new().await;
    let mut files = Vec::new();
    for f in 0..2 {
        let mut text = String::from("n,v\n");
        for i in 0..1000 {
            let v = if i % 97 == 50 {
                "bad".to_string()
            } else {
                i.to_string()
            };
            text.push_str(&format!("{},{v}\n", f * 1000 + i));
        }
        files.push(env.file(&format!("part{f}.csv"), text.as_bytes()));
    }
    let paths: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    let mut r = req("u", "ordered", &paths);
    r.infer_rows = 10;
    r.batch_rows = 7;
    let r = env.collect(r).await.unwrap();
    let bad = (0..1000).filter(|i| i % 97 == 50).count() as i64 * 2;
    assert_eq!(
        (
            r.counts.rows_read,
            r.counts.rows_loaded,
            r.counts.rows_quarantined
        ),
        (2000, 2000 - bad, bad)
    );
    let expected: Vec<i64> = (0..2000).filter(|i| i % 1000 % 97 != 50).collect();
    assert_eq!(
        env.ints("SELECT n FROM raw.u.ordered ORDER BY _source_file, _source_row")
            .await,
        expected
    );
    // Lines follow the rows (the header is line 1).
    assert_eq!(
        env.ints("SELECT _source_row - 2 + CASE WHEN _source_file = 'part1.csv' THEN 1000 ELSE 0 END FROM raw.u.ordered ORDER BY n")
            .await,
        expected
    );
    let lines: Vec<(&str, i64)> = r
        .rejected_sample
        .iter()
        .map(|x| (x.source_file.as_str(), x.line))
        .collect();
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted, "rejected rows come in source order");
    assert_eq!(
        lines[0],
        ("part0.csv", 52),
        "the first bad value, row 50 of part0.csv, is on line 52"
    );
    assert_eq!(
        env.ints("SELECT count(*) FROM quarantine.u.ordered").await,
        [bad]
    );
}
