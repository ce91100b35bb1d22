//! The `reservoir` binary end to end: init, collect, sql, catalog, demo.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use reservoir_testkit::shared_data;

fn reservoir(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_reservoir"))
        .arg("--home")
        .arg(home)
        .args(args)
        .env_remove("RESERVOIR_HOME")
        .env_remove("RESERVOIR_CATALOG__URL")
        .output()
        .expect("run reservoir")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "reservoir failed\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn fails(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "expected failure, got:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr.clone()).unwrap()
}

#[test]
fn demo_collects_everything_and_answers_the_villages_question() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("demo");
    let out = ok(&Command::new(env!("CARGO_BIN_EXE_reservoir"))
        .args(["demo", "--no-serve"])
        .arg(&home)
        .output()
        .unwrap());
    assert!(out.contains("Collected 6 datasets from 5 units"), "{out}");
    assert!(out.contains("raw.minzheng.villages"), "{out}");
    assert!(out.contains("| 岳阳街道"), "{out}");

    // 386 villages and residents' committees across 20 streets and towns.
    let csv = ok(&reservoir(
        &home,
        &[
            "sql",
            "--format",
            "csv",
            "SELECT count(DISTINCT s.code) AS streets, count(v.code) AS villages FROM raw.minzheng.streets s JOIN raw.minzheng.villages v ON v.\"streetCode\" = s.code",
        ],
    ));
    assert_eq!(csv, "streets,villages\n20,386\n");

    // Per street, as JSON.
    let json = ok(&reservoir(
        &home,
        &[
            "sql",
            "-f",
            "json",
            "SELECT s.name, count(*) AS n FROM minzheng.streets s JOIN minzheng.villages v ON v.\"streetCode\" = s.code GROUP BY s.name ORDER BY s.name",
        ],
    ));
    let rows: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    assert_eq!(rows.len(), 20);
    assert_eq!(
        rows.iter().map(|r| r["n"].as_i64().unwrap()).sum::<i64>(),
        386
    );

    // The GBK export arrived with its Chinese names.
    let gdp = ok(&reservoir(
        &home,
        &[
            "sql",
            "-f",
            "csv",
            "SELECT \"地区\", \"2024年\" FROM tongji.gdp_by_province ORDER BY \"2024年\" DESC LIMIT 2",
        ],
    ));
    assert_eq!(gdp, "地区,2024年\n广东省,141488.9\n江苏省,136696.9\n");

    // Catalog commands.
    let datasets = ok(&reservoir(&home, &["catalog", "datasets"]));
    assert_eq!(datasets.lines().count(), 6, "{datasets}");
    assert!(datasets.contains("松江区村居委会"));
    let show = ok(&reservoir(&home, &["catalog", "show", "minzheng.villages"]));
    assert!(show.contains("streetCode (所属街镇代码)"), "{show}");
    assert!(show.contains("386 rows"), "{show}");
    let runs: Vec<serde_json::Value> =
        serde_json::from_str(&ok(&reservoir(&home, &["catalog", "runs", "--json"]))).unwrap();
    assert_eq!(runs.len(), 6);
    assert!(runs.iter().all(|r| r["status"] == "succeeded"));

    // Running the demo again reloads (overwrite) without duplicating anything.
    ok(&Command::new(env!("CARGO_BIN_EXE_reservoir"))
        .args(["demo", "--no-serve"])
        .arg(&home)
        .output()
        .unwrap());
    let csv = ok(&reservoir(
        &home,
        &[
            "sql",
            "-f",
            "csv",
            "SELECT count(*) AS n FROM raw.minzheng.villages",
        ],
    ));
    assert_eq!(csv, "n\n386\n");
}

#[test]
fn collect_files_sources_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let out = ok(&reservoir(home, &["init"]));
    assert!(out.contains("Initialized a Reservoir home"));
    assert!(
        home.join("reservoir.toml").exists()
            && home.join("catalog.db").exists()
            && home.join("lake").is_dir()
    );

    // A file, with a run summary as JSON.
    let villages = shared_data("admin_divisions/songjiang_310117_villages_extract.csv");
    let json = ok(&reservoir(
        home,
        &[
            "collect",
            "--unit",
            "minzheng",
            "--dataset",
            "villages",
            "--json",
            villages.to_str().unwrap(),
        ],
    ));
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["rows_read"], 386);
    assert_eq!(report["rows_loaded"], 386);
    assert_eq!(report["rows_quarantined"], 0);
    assert_eq!(report["table"], "raw.minzheng.villages");
    assert_eq!(report["columns"][0]["name"], "code");
    assert_eq!(report["columns"][0]["type"], "utf8");

    // A declarative source in the home's sources/ folder, by name.
    std::fs::write(
        home.join("sources/gdp.toml"),
        format!(
            "unit = \"tongji\"\ndataset = \"gdp\"\nmode = \"overwrite\"\npaths = [{:?}]\n[format]\nencoding = \"gbk\"\n",
            shared_data("gov_files/gbk_csv/nbs_export_分省年度数据_地区生产总值_GBK.csv").display().to_string()
        ),
    )
    .unwrap();
    let out = ok(&reservoir(home, &["collect", "gdp"]));
    assert!(out.contains("read 31 = loaded 31 + quarantined 0"), "{out}");
    assert!(
        out.contains("skipped preamble line 1: 数据库：分省年度数据"),
        "{out}"
    );

    // Bad input: a clear error and a failing exit code.
    let err = fails(&reservoir(
        home,
        &[
            "collect",
            "--unit",
            "u",
            "--dataset",
            "d",
            "/nonexistent/x.csv",
        ],
    ));
    assert!(err.contains("/nonexistent/x.csv"), "{err}");
    let err = fails(&reservoir(
        home,
        &[
            "collect",
            "--unit",
            "u",
            "--dataset",
            "d",
            "--column",
            "v=decimal",
            villages.to_str().unwrap(),
        ],
    ));
    assert!(err.contains("unknown column type \"decimal\""), "{err}");
    let err = fails(&reservoir(
        home,
        &["sql", "DROP TABLE raw.minzheng.villages"],
    ));
    assert!(err.contains("only queries are allowed"), "{err}");
    let err = fails(&reservoir(
        home,
        &["sql", "SELECT nope FROM raw.minzheng.villages"],
    ));
    assert!(err.contains("nope"), "{err}");
    let err = fails(&reservoir(&home.join("elsewhere"), &["sql", "SELECT 1"]));
    assert!(err.contains("not a Reservoir home"), "{err}");
}

/// `reservoir serve` on a new home answers health checks and the API, and stops on SIGTERM.
#[test]
fn serve_answers_and_stops_gracefully() {
    use std::io::{BufRead, BufReader, Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    ok(&Command::new(env!("CARGO_BIN_EXE_reservoir"))
        .arg("init")
        .arg(&home)
        .output()
        .unwrap());
    let mut child = Command::new(env!("CARGO_BIN_EXE_reservoir"))
        .arg("--home")
        .arg(&home)
        .args(["serve", "--bind", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let addr = first
        .strip_prefix("Reservoir console: http://")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .trim_end_matches('/')
        .to_string();
    let get = |path: &str| {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        resp
    };
    let health = get("/healthz");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.ends_with(r#"{"status":"ok"}"#), "{health}");
    let datasets = get("/api/v1/datasets");
    assert!(datasets.contains(r#""total":0"#), "{datasets}");

    assert!(
        Command::new("kill")
            .arg(child.id().to_string())
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "serve should exit cleanly on SIGTERM: {status}"
    );
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l == "Stopped."), "{rest:?}");
}
