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
    // The demo's quality rules for the villages ran and all pass on the real data.
    assert!(out.contains("✔ raw.minzheng.villages  version"), "{out}");
    assert!(
        out.contains("村居代码唯一  [uniqueness]  0 failed of 386"),
        "{out}"
    );

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

    // The operation report of every unit, in each format; the villages' checks count.
    let month = chrono::Utc::now().format("%Y-%m").to_string();
    let units: Vec<serde_json::Value> =
        serde_json::from_str(&ok(&reservoir(&home, &["catalog", "units", "--json"]))).unwrap();
    assert_eq!(units.len(), 5);
    for u in &units {
        let id = u["id"].as_str().unwrap();
        let html = ok(&reservoir(
            &home,
            &["report", "--unit", id, "--month", &month],
        ));
        assert!(html.starts_with("<!doctype html>"), "{id}");
        assert!(
            html.contains(u["name"].as_str().unwrap()) && html.contains("<svg"),
            "{id}"
        );
    }
    let r: serde_json::Value = serde_json::from_str(&ok(&reservoir(
        &home,
        &["report", "--unit", "minzheng", "--format", "json"],
    )))
    .unwrap();
    assert_eq!(r["month"], month.as_str());
    assert_eq!(r["datasets"]["collected"], 2);
    assert_eq!(r["rows"]["loaded"], 406);
    assert_eq!(r["quality"]["datasets_checked"], 1);
    assert_eq!(r["quality"]["overall"], 100.0);
    assert_eq!(r["ranking"].as_array().unwrap().len(), 5);
    let file = dir.path().join("minzheng.csv");
    ok(&reservoir(
        &home,
        &["report", "--unit", "minzheng", "-o", file.to_str().unwrap()],
    ));
    let csv = std::fs::read_to_string(&file).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(csv.contains("raw.minzheng.villages"), "{csv}");
    let err = fails(&reservoir(
        &home,
        &["report", "--unit", "minzheng", "--month", "2026-13"],
    ));
    assert!(err.contains("YYYY-MM"), "{err}");
    let err = fails(&reservoir(&home, &["report", "--unit", "nobody"]));
    assert!(err.contains("reservoir catalog units"), "{err}");

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

/// An API token of the home's first operator, from the CLI (after setting its password: the
/// tokens of an account that must change its password are refused).
fn operator_token(home: &Path) -> String {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_reservoir"))
        .arg("--home")
        .arg(home)
        .args(["user", "reset-password", "admin", "--password-stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"Operator-pass-2026\n")
        .unwrap();
    assert!(child.wait().unwrap().success());
    let out = ok(&Command::new(env!("CARGO_BIN_EXE_reservoir"))
        .arg("--home")
        .arg(home)
        .args(["token", "create", "--user", "admin", "--days", "1"])
        .output()
        .unwrap());
    out.lines()
        .map(str::trim)
        .find(|l| l.starts_with("rsv_"))
        .unwrap_or_else(|| panic!("no token in {out}"))
        .to_string()
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
        .args(["serve", "--bind", "127.0.0.1:0", "--pg-bind", "127.0.0.1:0"])
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
    let token = operator_token(&home);
    let request = |path: &str, auth: bool| {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        let header = if auth {
            format!("Authorization: Bearer {token}\r\n")
        } else {
            String::new()
        };
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{header}Connection: close\r\n\r\n"
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        resp
    };
    let health = request("/healthz", false);
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.ends_with(r#"{"status":"ok"}"#), "{health}");
    // The API needs a login; the operator's token opens it.
    let refused = request("/api/v1/datasets", false);
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    let datasets = request("/api/v1/datasets", true);
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

/// Every run that commits rows gets a signed receipt; `reservoir receipt verify` finds a
/// forged receipt and a data file changed after delivery.
#[test]
fn receipts_are_signed_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let out = ok(&reservoir(home, &["init"]));
    assert!(out.contains("receipts signed with platform key"), "{out}");
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
    let run = report["run_id"].as_i64().unwrap().to_string();
    assert!(
        report["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().starts_with("delivery receipt signed")),
        "{report:#}"
    );
    let file = dir.path().join("receipt.json");
    ok(&reservoir(
        home,
        &["receipt", "show", &run, "--out", file.to_str().unwrap()],
    ));
    let receipt: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(receipt["table"], "raw.minzheng.villages");
    assert_eq!(receipt["rows"]["loaded"], 386);
    let out = ok(&reservoir(
        home,
        &["receipt", "verify", file.to_str().unwrap()],
    ));
    assert!(out.contains("✔ signature valid"), "{out}");
    assert!(
        out.contains("read 386 = loaded 386 + quarantined 0"),
        "{out}"
    );
    assert!(
        out.contains("✔ every delivered file is unchanged in the lake"),
        "{out}"
    );

    // A forged count breaks the signature.
    let forged = dir.path().join("forged.json");
    let mut f = receipt.clone();
    f["rows"]["loaded"] = serde_json::json!(385);
    std::fs::write(&forged, serde_json::to_string(&f).unwrap()).unwrap();
    let err = fails(&reservoir(
        home,
        &["receipt", "verify", forged.to_str().unwrap()],
    ));
    assert!(err.contains("altered after signing"), "{err}");

    // A data file changed after delivery is found.
    let path = receipt["files"][0]["path"].as_str().unwrap();
    let data = home.join("lake/raw/minzheng/villages").join(path);
    let mut bytes = std::fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&data, bytes).unwrap();
    let err = fails(&reservoir(
        home,
        &["receipt", "verify", file.to_str().unwrap()],
    ));
    assert!(err.contains("content changed"), "{err}");
}

/// `reservoir serve` runs scheduled sources: a drop folder collected every second (each file
/// once), and a source that cannot connect raises a `failed` alert after its retries.
#[test]
fn serve_runs_scheduled_sources_and_raises_alerts() {
    use std::io::{BufRead, BufReader, Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    ok(&Command::new(env!("CARGO_BIN_EXE_reservoir"))
        .arg("init")
        .arg(&home)
        .output()
        .unwrap());
    std::fs::create_dir(home.join("drop")).unwrap();
    std::fs::write(
        home.join("sources/vaccinations.toml"),
        "unit = \"weijian\"\ndataset = \"vaccinations\"\nkind = \"folder\"\nschedule = \"* * * * * *\"\n\
         [folder]\npath = \"../drop\"\npattern = \"*.csv\"\nsettle_secs = 0\n",
    )
    .unwrap();
    std::fs::write(
        home.join("sources/broken.toml"),
        "unit = \"gongan\"\ndataset = \"people\"\nkind = \"postgres\"\nschedule = \"* * * * * *\"\n\
         retries = 1\nretry_backoff_secs = 0\n\
         [database]\nurl = \"postgres://nobody@127.0.0.1:9/none\"\ntable = \"people\"\n",
    )
    .unwrap();
    std::fs::write(home.join("drop/2024-01.csv"), "id,dose\n1,1\n2,2\n").unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_reservoir"))
        .arg("--home")
        .arg(&home)
        .args(["serve", "--bind", "127.0.0.1:0", "--pg-bind", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let addr = first
        .strip_prefix("Reservoir console: http://")
        .unwrap()
        .trim_end_matches('/')
        .to_string();
    let token = operator_token(&home);
    let get = |path: &str| {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        resp.split_once("\r\n\r\n").unwrap().1.to_string()
    };
    let wait_for = |what: &str, check: &dyn Fn() -> bool| {
        for _ in 0..120 {
            if check() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
        panic!("timed out waiting for {what}");
    };
    let rows = || -> i64 {
        let body = get("/api/v1/datasets/raw/weijian/vaccinations");
        serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                v["dataset"]["row_count"]
                    .as_i64()
                    .or(v["row_count"].as_i64())
            })
            .unwrap_or(0)
    };
    wait_for("the first file", &|| rows() == 2);
    std::fs::write(home.join("drop/2024-02.csv"), "id,dose\n3,1\n").unwrap();
    wait_for("the second file", &|| rows() == 3);
    // More scans, no more rows: each file loads once.
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(rows(), 3);

    wait_for("the failed alert", &|| {
        get("/api/v1/alerts").contains(r#""kind":"failed""#)
    });
    let alerts: Vec<serde_json::Value> = serde_json::from_str(&get("/api/v1/alerts")).unwrap();
    let failed = alerts.iter().find(|a| a["kind"] == "failed").unwrap();
    assert_eq!(failed["source"], "broken");
    let message = failed["message"].as_str().unwrap();
    assert!(message.contains("failed after 2 attempts"), "{message}");
    assert!(message.contains("cannot connect"), "{message}");
    assert!(!message.contains("nobody:"), "{message}");

    assert!(
        Command::new("kill")
            .arg(child.id().to_string())
            .status()
            .unwrap()
            .success()
    );
    assert!(child.wait().unwrap().success());
}

/// `reservoir synth` writes a district in GBK with its ground truth, and it collects with every
/// row accounted for (IDs stay text).
#[test]
fn synth_writes_a_district_that_collects() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let out = dir.path().join("district");
    ok(&reservoir(&home, &["init"]));
    let printed = ok(&reservoir(
        &home,
        &[
            "synth",
            out.to_str().unwrap(),
            "--rows",
            "3000",
            "--encoding",
            "gbk",
            "--defect-rate",
            "0.05",
        ],
    ));
    assert!(printed.contains("people.csv: 3000 rows"), "{printed}");
    let truth: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("ground_truth.json")).unwrap())
            .unwrap();
    let defects = truth["files"][0]["defects"].as_array().unwrap();
    assert!(defects.len() > 50, "{}", defects.len());
    // The validators find exactly the injected ID and phone defects, and nothing else: the
    // generator's clean IDs (310227 for people born before 1998) are valid.
    let bytes = std::fs::read(out.join("people.csv")).unwrap();
    let (text, _, _) = encoding_rs::GBK.decode(&bytes);
    let today = chrono::NaiveDate::from_ymd_opt(2026, 12, 4).unwrap();
    let divisions = reservoir_quality::validate::Divisions::bundled();
    let (mut bad_ids, mut flagged_ids, mut bad_phones) = (Vec::new(), Vec::new(), Vec::new());
    for (i, line) in text.lines().skip(1).enumerate() {
        let f: Vec<&str> = line.split(',').collect();
        let row = i as u64 + 1;
        match reservoir_quality::validate::resident_id(f[0], divisions, today) {
            reservoir_quality::validate::Verdict::Invalid(_) => bad_ids.push(row),
            reservoir_quality::validate::Verdict::Flagged(_) => flagged_ids.push(row),
            reservoir_quality::validate::Verdict::Valid => {}
        }
        if !reservoir_quality::validate::mobile_phone(f[6]).is_valid() {
            bad_phones.push(row);
        }
    }
    let injected = |kind: &str| -> Vec<u64> {
        defects
            .iter()
            .filter(|d| d["kind"] == kind)
            .map(|d| d["row"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(bad_ids, injected("bad_check_character"));
    assert_eq!(flagged_ids, injected("lowercase_x"));
    assert_eq!(bad_phones, injected("malformed_phone"));
    assert!(!bad_ids.is_empty() && !flagged_ids.is_empty() && !bad_phones.is_empty());
    // The same seed, the same district.
    let again = dir.path().join("again");
    ok(&reservoir(
        &home,
        &[
            "synth",
            again.to_str().unwrap(),
            "--rows",
            "3000",
            "--encoding",
            "gbk",
            "--defect-rate",
            "0.05",
        ],
    ));
    assert_eq!(
        std::fs::read(out.join("people.csv")).unwrap(),
        std::fs::read(again.join("people.csv")).unwrap()
    );
    let json = ok(&reservoir(
        &home,
        &[
            "collect",
            "--unit",
            "gongan",
            "--dataset",
            "people",
            "--json",
            out.join("people.csv").to_str().unwrap(),
        ],
    ));
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["rows_read"], 3000, "{report:#}");
    assert_eq!(
        report["rows_loaded"].as_i64().unwrap() + report["rows_quarantined"].as_i64().unwrap(),
        3000
    );
    let id = report["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "resident_id")
        .unwrap();
    assert_eq!(id["type"], "utf8");
}

/// A quality run over a synthetic district finds exactly the injected defects (precision and
/// recall 1.0 against `ground_truth.json`), keeps every failing row in the quality layer and
/// records scores; lowercase `x` is noted, not failed.
#[test]
fn check_finds_exactly_the_injected_defects() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let out = dir.path().join("district");
    ok(&reservoir(&home, &["init"]));
    ok(&reservoir(
        &home,
        &[
            "synth",
            out.to_str().unwrap(),
            "--rows",
            "4000",
            "--defect-rate",
            "0.08",
        ],
    ));
    for (dataset, file, columns) in [
        (
            "people",
            "people.csv",
            vec!["birth_date=utf8", "phone=utf8"],
        ),
        ("firms", "firms.csv", vec![]),
    ] {
        let mut args = vec!["collect", "--unit", "gongan", "--dataset", dataset];
        for c in &columns {
            args.extend(["--column", c]);
        }
        let path = out.join(file);
        args.push(path.to_str().unwrap());
        ok(&reservoir(&home, &args));
    }
    let rules = home.join("rules/gongan");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(
        rules.join("people.yaml"),
        "rules:
  - {check: resident_id, column: resident_id}
  - {check: unique, columns: [resident_id]}
  - {check: not_null, column: name}
  - {check: date, column: birth_date, format: '%Y-%m-%d'}
  - {check: mobile_phone, column: phone}
  - {check: allowed, column: gender, values: ['1', '2']}
",
    )
    .unwrap();
    std::fs::write(
        rules.join("firms.yaml"),
        "rules:\n  - {name: 信用代码, check: credit_code, column: credit_code}\n",
    )
    .unwrap();

    let json = ok(&reservoir(&home, &["check", "--json"]));
    let outcomes: serde_json::Value = serde_json::from_str(&json).unwrap();
    let truth: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("ground_truth.json")).unwrap())
            .unwrap();
    // Rows the quality table holds for a rule, as 1-based data rows (line 1 is the header).
    let found = |table: &str, rule: &str, severity: &str| -> Vec<u64> {
        let csv = ok(&reservoir(
            &home,
            &[
                "sql",
                "-f",
                "csv",
                &format!(
                    "SELECT _source_row - 1 FROM quality.gongan.{table} WHERE rule = '{rule}' AND severity = '{severity}' ORDER BY 1"
                ),
            ],
        ));
        csv.lines().skip(1).map(|l| l.parse().unwrap()).collect()
    };
    let failing = |table: &str, rule: &str| found(table, rule, "fail");
    let injected = |file: usize, kinds: &[&str]| -> Vec<u64> {
        let mut rows: Vec<u64> = truth["files"][file]["defects"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| kinds.contains(&d["kind"].as_str().unwrap()))
            .map(|d| d["row"].as_u64().unwrap())
            .collect();
        rows.sort();
        rows
    };
    assert_eq!(
        failing("people", "resident_id:resident_id"),
        injected(0, &["bad_check_character"])
    );
    assert_eq!(
        failing("people", "unique:resident_id"),
        injected(0, &["duplicate"])
    );
    assert_eq!(
        failing("people", "not_null:name"),
        injected(0, &["missing"])
    );
    assert_eq!(
        failing("people", "date:birth_date"),
        injected(0, &["impossible_date"])
    );
    assert_eq!(
        failing("people", "mobile_phone:phone"),
        injected(0, &["malformed_phone"])
    );
    assert_eq!(failing("people", "allowed:gender"), Vec::<u64>::new());
    // Valid values with observations are kept too, as notes.
    assert_eq!(
        found("people", "resident_id:resident_id", "note"),
        injected(0, &["lowercase_x"])
    );
    assert_eq!(
        failing("firms", "信用代码"),
        injected(1, &["bad_check_character", "forbidden_letter"])
    );

    let people = &outcomes[1];
    assert_eq!(people["table"], "raw.gongan.people");
    assert_eq!(people["rows"], 4000);
    let result = |name: &str| {
        people["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["rule"] == name)
            .unwrap()
            .clone()
    };
    let ids = result("resident_id:resident_id");
    assert_eq!(
        ids["noted"].as_u64().unwrap() as usize,
        injected(0, &["lowercase_x"]).len()
    );
    assert!(
        ids["examples"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("check character is")
    );
    let dup = result("unique:resident_id");
    assert!(
        dup["examples"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("appears 2 times; first at people.csv line")
    );
    // Completeness = 1 − missing names / rows.
    let missing = injected(0, &["missing"]).len() as f64;
    let completeness = people["scores"]["completeness"].as_f64().unwrap();
    assert!((completeness - 100.0 * (1.0 - missing / 4000.0)).abs() < 1e-9);
    assert!(people["scores"]["uniqueness"].as_f64().unwrap() < 100.0);

    // The catalog shows the scores.
    let shown = ok(&reservoir(&home, &["catalog", "show", "gongan.people"]));
    assert!(shown.contains("quality checks (newest first):"), "{shown}");
    assert!(shown.contains("completeness "), "{shown}");

    // A collection into a dataset with rules runs them.
    let printed = ok(&reservoir(
        &home,
        &[
            "collect",
            "--unit",
            "gongan",
            "--dataset",
            "firms",
            "--mode",
            "overwrite",
            out.join("firms.csv").to_str().unwrap(),
        ],
    ));
    assert!(printed.contains("raw.gongan.firms  version"), "{printed}");
    assert!(printed.contains("信用代码"), "{printed}");

    // Bad rules name the file and the rule.
    std::fs::write(
        rules.join("firms.yaml"),
        "rules:\n  - {check: range, column: credit_code}\n",
    )
    .unwrap();
    let err = fails(&reservoir(&home, &["check", "gongan.firms"]));
    assert!(
        err.contains("firms.yaml: rule 1 (range): needs `min`, `max` or both"),
        "{err}"
    );
    std::fs::write(
        rules.join("firms.yaml"),
        "rules:\n  - {check: not_null, column: nope}\n",
    )
    .unwrap();
    let err = fails(&reservoir(&home, &["check", "gongan.firms"]));
    assert!(
        err.contains(
            "rule \"not_null:nope\" reads column \"nope\", which raw.gongan.firms does not have"
        ),
        "{err}"
    );
    // One dataset that cannot be checked does not stop the others.
    let all = reservoir(&home, &["check"]);
    assert!(!all.status.success());
    assert!(String::from_utf8_lossy(&all.stdout).contains("raw.gongan.people  version"));
    assert!(String::from_utf8_lossy(&all.stderr).contains("error: checking gongan.firms"));
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_str(&ok(out)).unwrap()
}

/// The three real open-data catalog crawls import with every row accounted for, departments as
/// units; re-importing updates instead of duplicating; search finds Chinese words; the export
/// reads back.
#[test]
fn catalog_imports_the_real_crawls_and_exports_what_it_reads() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    ok(&reservoir(&home, &["init"]));
    let import = |file: &str, parent: &str, name: &str| {
        let path = shared_data(&format!("catalogs/{file}"));
        json(&reservoir(
            &home,
            &[
                "catalog",
                "import",
                path.to_str().unwrap(),
                "--parent",
                parent,
                "--parent-name",
                name,
                "--json",
            ],
        ))
    };
    let n = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap();
    let balanced = |v: &serde_json::Value| {
        assert_eq!(
            n(v, "rows_read"),
            n(v, "entries")
                + n(v, "header_rows")
                + n(v, "blank_rows")
                + n(v, "note_rows")
                + v["rejected"].as_array().unwrap().len() as u64,
            "{v:#}"
        );
        assert_eq!(n(v, "entries"), n(v, "datasets") + n(v, "repeated"));
    };

    // Guizhou: 460 datasets from 48 departments; the row of Chinese labels under the keys is
    // recognized.
    let gz = import(
        "cn_guizhou_opendata_catalog_2016_crawl.csv",
        "guizhou",
        "贵州省",
    );
    balanced(&gz);
    assert_eq!(
        (
            n(&gz, "rows_read"),
            n(&gz, "header_rows"),
            n(&gz, "entries")
        ),
        (461, 1, 460)
    );
    assert_eq!((n(&gz, "datasets"), n(&gz, "created")), (460, 460));
    assert_eq!(gz["units_created"].as_array().unwrap().len(), 48);
    assert!(gz["rejected"].as_array().unwrap().is_empty());
    let unmapped: Vec<&str> = gz["columns"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["target"].is_null())
        .map(|c| c["column"].as_str().unwrap())
        .collect();
    assert_eq!(unmapped, ["list", "topicId", "orgId", "dataType"]);

    // Foshan: 793 records — two crawls joined, the second with its header again and the
    // columns in another order, each entry crawled six times: 67 datasets of 21 departments.
    let fs = import(
        "cn_foshan_opendata_catalog_2017_crawl.csv",
        "foshan",
        "佛山市",
    );
    balanced(&fs);
    assert_eq!(
        (
            n(&fs, "rows_read"),
            n(&fs, "header_rows"),
            n(&fs, "entries")
        ),
        (793, 1, 792)
    );
    assert_eq!((n(&fs, "datasets"), n(&fs, "repeated")), (67, 725));
    assert_eq!(fs["units_created"].as_array().unwrap().len(), 21);

    // Harbin: 810 entries under a blank second row, 138 distinct datasets.
    let hrb = import(
        "cn_harbin_opendata_catalog_crawl.xlsx",
        "harbin",
        "哈尔滨市",
    );
    balanced(&hrb);
    assert_eq!(
        (
            n(&hrb, "rows_read"),
            n(&hrb, "blank_rows"),
            n(&hrb, "entries")
        ),
        (811, 1, 810)
    );
    assert_eq!(n(&hrb, "datasets"), 138);

    // The Guizhou crawl as XLSX has no identifiers: five titles its departments published twice
    // (a 2016 and a 2017 version, under two ids in the CSV) are one entry each, the later kept.
    let xlsx = shared_data("catalogs/cn_guizhou_opendata_catalog_crawl.xlsx");
    let dry = json(&reservoir(
        &home,
        &[
            "catalog",
            "import",
            xlsx.to_str().unwrap(),
            "--dry-run",
            "--json",
        ],
    ));
    balanced(&dry);
    assert_eq!(
        (n(&dry, "entries"), n(&dry, "datasets"), n(&dry, "repeated")),
        (460, 455, 5)
    );
    assert_eq!(n(&dry, "created"), 0, "a dry run writes nothing");

    // The departments are units under their province or city.
    let units: Vec<serde_json::Value> =
        serde_json::from_value(json(&reservoir(&home, &["catalog", "units", "--json"]))).unwrap();
    let tjj = units
        .iter()
        .find(|u| u["name"] == "贵州省统计局")
        .expect("贵州省统计局 is a unit");
    assert_eq!(tjj["parent_id"], "guizhou");
    assert!(units.iter().any(|u| u["name"] == "市交通运输局（市公路局）"
        && u["id"] == "市交通运输局_市公路局"
        && u["parent_id"] == "foshan"));

    // Re-importing updates the same datasets.
    let again = import(
        "cn_guizhou_opendata_catalog_2016_crawl.csv",
        "guizhou",
        "贵州省",
    );
    assert_eq!((n(&again, "created"), n(&again, "updated")), (0, 460));
    assert!(again["units_created"].as_array().unwrap().is_empty());

    // What an entry carries.
    let all = json(&reservoir(&home, &["catalog", "datasets", "--json"]));
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 460 + 67 + 138);
    let pop = all.iter().find(|d| d["title"] == "全省户籍人口").unwrap();
    assert_eq!(pop["layer"], "catalog");
    assert_eq!(pop["unit_id"], "贵州省统计局");
    assert_eq!(pop["identifier"], "1474441961919");
    assert_eq!(pop["topic"], "社会发展");
    assert_eq!(
        pop["open_tier"], "closed",
        "the Guizhou crawl has no open tier column"
    );
    assert_eq!(pop["formats"], serde_json::json!(["xlsx"]));
    let tax = all
        .iter()
        .find(|d| d["identifier"] == "FS_KF_ZW_SDSJ_001")
        .unwrap();
    assert_eq!(tax["title"], "地税税务登记信息");
    assert_eq!(tax["open_tier"], "open");
    assert_eq!(tax["sensitivity"], 1);
    assert_eq!(tax["declared_rows"], 121821);
    assert_eq!(tax["source_updated_at"], "2018-02-07 00:02:16");
    assert!(
        tax["description"]
            .as_str()
            .unwrap()
            .starts_with("地税税务登记信息")
    );
    let show = json(&reservoir(
        &home,
        &[
            "catalog",
            "show",
            &format!(
                "catalog.{}.{}",
                tax["unit_id"].as_str().unwrap(),
                tax["name"].as_str().unwrap()
            ),
            "--json",
        ],
    ));
    let items: Vec<&str> = show["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(items.len(), 16);
    assert_eq!(items[2], "纳税人识别号");

    // Search segments Chinese: 户籍人口 is found by 人口, ranked by relevance, and a word of an
    // information item finds its dataset.
    let hits = json(&reservoir(
        &home,
        &["catalog", "datasets", "--search", "户籍人口", "--json"],
    ));
    assert_eq!(hits[0]["title"], "全省户籍人口", "{hits:#}");
    let hits = json(&reservoir(
        &home,
        &["catalog", "datasets", "--search", "纳税人识别号", "--json"],
    ));
    assert!(
        hits.as_array()
            .unwrap()
            .iter()
            .any(|d| d["identifier"] == "FS_KF_ZW_SDSJ_001")
    );
    let hits = json(&reservoir(
        &home,
        &["catalog", "datasets", "--search", "药店 名录", "--json"],
    ));
    assert!(
        hits[0]["title"].as_str().unwrap().contains("药店"),
        "{:#}",
        hits[0]
    );

    // Export reads back: CSV and XLSX give the same datasets in a fresh home.
    for ext in ["csv", "xlsx"] {
        let file = dir.path().join(format!("目录.{ext}"));
        ok(&reservoir(
            &home,
            &[
                "catalog",
                "export",
                "--layer",
                "catalog",
                "-o",
                file.to_str().unwrap(),
            ],
        ));
        let fresh = dir.path().join(format!("fresh-{ext}"));
        ok(&reservoir(&fresh, &["init"]));
        let back = json(&reservoir(
            &fresh,
            &["catalog", "import", file.to_str().unwrap(), "--json"],
        ));
        balanced(&back);
        assert_eq!(n(&back, "datasets"), 665, "{ext}");
        assert_eq!(n(&back, "repeated"), 0, "{ext}");
        let unmapped: Vec<&str> = back["columns"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["target"].is_null())
            .map(|c| c["column"].as_str().unwrap())
            .collect();
        assert_eq!(unmapped, ["数据集", "已归集行数"], "{ext}");
        let copy = json(&reservoir(&fresh, &["catalog", "datasets", "--json"]));
        let copied = copy
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["identifier"] == "FS_KF_ZW_SDSJ_001")
            .unwrap();
        for key in [
            "title",
            "description",
            "topic",
            "tags",
            "open_tier",
            "declared_rows",
            "source_updated_at",
            "update_frequency",
        ] {
            assert_eq!(copied[key], tax[key], "{ext}: {key}");
        }
    }

    // DCAT, as JSON-LD and as Turtle: one dcat:Dataset per dataset, with access rights from the
    // open tier; rdflib reads both to the same graph.
    let mut files = Vec::new();
    for ext in ["jsonld", "ttl"] {
        let file = dir.path().join(format!("catalog.{ext}"));
        ok(&reservoir(
            &home,
            &[
                "catalog",
                "export",
                "-o",
                file.to_str().unwrap(),
                "--base-url",
                "https://data.example.gov.cn",
            ],
        ));
        files.push(file);
    }
    let py = Command::new("python3")
        .arg("-c")
        .arg(
            "import sys, rdflib\n\
             from rdflib.compare import isomorphic\n\
             g = rdflib.Graph().parse(sys.argv[1], format='json-ld')\n\
             t = rdflib.Graph().parse(sys.argv[2], format='turtle')\n\
             assert isomorphic(g, t), 'JSON-LD and Turtle differ'\n\
             DCAT = rdflib.Namespace('http://www.w3.org/ns/dcat#')\n\
             DCT = rdflib.Namespace('http://purl.org/dc/terms/')\n\
             tax = next(g.subjects(DCT.identifier, rdflib.Literal('FS_KF_ZW_SDSJ_001')))\n\
             print(len(set(g.subjects(rdflib.RDF.type, DCAT.Dataset))), g.value(tax, DCT.accessRights))",
        )
        .args(&files)
        .output()
        .expect("python3");
    assert!(
        py.status.success(),
        "rdflib could not read the DCAT export (install tests/e2e/requirements.txt): {}",
        String::from_utf8_lossy(&py.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&py.stdout).trim(),
        "665 http://publications.europa.eu/resource/authority/access-right/PUBLIC"
    );

    // Errors name the file and what was expected.
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "a,b\n1,2\n").unwrap();
    let err = fails(&reservoir(
        &home,
        &["catalog", "import", bad.to_str().unwrap()],
    ));
    assert!(
        err.contains("bad.csv") && err.contains("数据目录名称"),
        "{err}"
    );
}

/// Rules that look beyond the row: a value must exist in another dataset, the same person must
/// have the same name in another source, the dataset must be fresh, and its row count must not
/// jump against earlier checks.
#[test]
fn check_joins_other_datasets_and_watches_freshness_and_volume() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    ok(&reservoir(&home, &["init"]));
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let communities = write(
        "communities.csv",
        "code,name\n310117001001,岳阳居委\n310117001002,永丰居委\n",
    );
    let hukou = write(
        "hukou.csv",
        "身份证号,姓名\nA1,张三\nB2,李四\nD4,赵七\nE5,孙八\n",
    );
    let people = write(
        "people.csv",
        "身份证号,姓名,社区代码\nA1,张三,310117001001\nB2,李四,310117009999\nC3,王五,\nD4,赵六,310117001002\n",
    );
    let collect = |unit: &str, dataset: &str, file: &Path, extra: &[&str]| {
        let mut args = vec!["collect", "--unit", unit, "--dataset", dataset];
        args.extend_from_slice(extra);
        args.push(file.to_str().unwrap());
        ok(&reservoir(&home, &args));
    };
    collect("minzheng", "communities", &communities, &[]);
    collect("gongan", "hukou", &hukou, &[]);
    collect(
        "gongan",
        "people",
        &people,
        &["--update-frequency", "daily"],
    );
    let rules = home.join("rules/gongan");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(
        rules.join("people.yaml"),
        "key: [身份证号]\nrules:\n\
         \x20 - {name: 社区存在, check: referential, column: 社区代码, reference: minzheng.communities, reference_column: code}\n\
         \x20 - {name: 姓名一致, check: consistent, column: 姓名, reference: gongan.hukou, on: [身份证号]}\n\
         \x20 - {name: 按时更新, check: freshness}\n\
         \x20 - {name: 数据量, check: volume, max_change: 0.5}\n",
    )
    .unwrap();
    let check = || -> serde_json::Value {
        let v = json(&reservoir(&home, &["check", "gongan.people", "--json"]));
        v.as_array().unwrap()[0].clone()
    };
    let rule = |v: &serde_json::Value, name: &str| -> serde_json::Value {
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["rule"] == name)
            .unwrap()
            .clone()
    };
    let first = check();
    let r = rule(&first, "社区存在");
    assert_eq!(
        (r["checked"].as_u64(), r["failed"].as_u64()),
        (Some(4), Some(1)),
        "{r:#}"
    );
    assert_eq!(r["dimension"], "consistency");
    assert_eq!(r["examples"][0]["key"], "身份证号=B2");
    assert_eq!(
        r["examples"][0]["reason"],
        "\"310117009999\" is not in raw.minzheng.communities.code"
    );
    let r = rule(&first, "姓名一致");
    assert_eq!(r["failed"], 1, "{r:#}");
    assert_eq!(r["checked"], 3, "C3 is not in the other source: not judged");
    assert_eq!(r["examples"][0]["key"], "身份证号=D4");
    assert_eq!(r["examples"][0]["value"], "赵六");
    assert!(
        r["examples"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("raw.gongan.hukou has \"赵七\" in 姓名 for 身份证号=D4"),
        "{r:#}"
    );
    let r = rule(&first, "按时更新");
    assert_eq!(
        (r["checked"].as_u64(), r["failed"].as_u64()),
        (Some(1), Some(0)),
        "collected just now"
    );
    assert_eq!(first["scores"]["timeliness"], 100.0);
    let r = rule(&first, "数据量");
    assert_eq!(r["checked"], 0, "no earlier checks yet");
    // The failing rows are in the quality table with the rule and reason.
    let rows = ok(&reservoir(
        &home,
        &[
            "sql",
            "-f",
            "csv",
            "SELECT rule, key FROM quality.gongan.people ORDER BY rule",
        ],
    ));
    assert_eq!(
        rows,
        "rule,key\n姓名一致,身份证号=D4\n社区存在,身份证号=B2\n"
    );

    // Checking the same table version again adds nothing to the history.
    let again = check();
    assert_eq!(rule(&again, "数据量")["checked"], 0);
    // Each delivery is a new version: two small ones make a history, then a big one jumps.
    let latest_volume = |file: &Path| -> serde_json::Value {
        collect("gongan", "people", file, &["--mode", "append"]);
        let after = json(&reservoir(
            &home,
            &["catalog", "show", "gongan.people", "--json"],
        ));
        after["checks"][0]["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["rule"] == "数据量")
            .unwrap()
            .clone()
    };
    let one = write("one.csv", "身份证号,姓名,社区代码\nF6,周一,310117001001\n");
    assert_eq!(latest_volume(&one)["checked"], 0, "one earlier version");
    let two = write("two.csv", "身份证号,姓名,社区代码\nG7,吴二,310117001001\n");
    let v = latest_volume(&two);
    assert_eq!(
        (v["checked"].as_u64(), v["failed"].as_u64()),
        (Some(1), Some(0)),
        "{v:#}"
    );
    let many = write(
        "many.csv",
        "身份证号,姓名,社区代码\nH8,郑三,310117001002\nI9,冯四,310117001002\nJ10,陈五,310117001001\nK11,褚六,310117001001\nL12,卫七,310117001001\nM13,蒋八,310117001001\nN14,沈九,310117001001\nO15,韩十,310117001001\nP16,杨一,310117001001\n",
    );
    let v = latest_volume(&many);
    assert_eq!(v["failed"], 1, "the check after collecting: {v:#}");
    assert!(
        v["examples"][0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("15 rows, 200% more than the mean of the last 3 checks (5)"),
        "{v:#}"
    );

    // A reference that does not exist, or lacks the column, is an error naming it.
    std::fs::write(
        rules.join("people.yaml"),
        "rules:\n  - {check: referential, column: 社区代码, reference: minzheng.nothing}\n",
    )
    .unwrap();
    let err = fails(&reservoir(&home, &["check", "gongan.people"]));
    assert!(err.contains("raw.minzheng.nothing does not exist"), "{err}");
    std::fs::write(
        rules.join("people.yaml"),
        "rules:\n  - {check: referential, column: 社区代码, reference: minzheng.communities}\n",
    )
    .unwrap();
    let err = fails(&reservoir(&home, &["check", "gongan.people"]));
    assert!(
        err.contains("社区代码") && err.contains("raw.minzheng.communities"),
        "{err}"
    );
    std::fs::write(
        rules.join("people.yaml"),
        "rules:\n  - {check: consistent, column: 姓名, reference: gongan.hukou}\n",
    )
    .unwrap();
    let err = fails(&reservoir(&home, &["check", "gongan.people"]));
    assert!(err.contains("needs `on`"), "{err}");
}

/// A personal-data scan suggests field kinds from the values; a steward's decisions stand across
/// rescans and raise the dataset's sensitivity.
#[test]
fn pii_scan_suggests_and_stewards_decide() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let out = dir.path().join("district");
    ok(&reservoir(&home, &["init"]));
    ok(&reservoir(
        &home,
        &[
            "synth",
            out.to_str().unwrap(),
            "--rows",
            "3000",
            "--defect-rate",
            "0.02",
        ],
    ));
    ok(&reservoir(
        &home,
        &[
            "collect",
            "--unit",
            "gongan",
            "--dataset",
            "people",
            "--column",
            "phone=utf8",
            out.join("people.csv").to_str().unwrap(),
        ],
    ));
    let scan = json(&reservoir(
        &home,
        &["catalog", "pii", "gongan.people", "--json"],
    ));
    let suggested: Vec<(String, String)> = scan["marks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            assert_eq!(m["status"], "suggested");
            (
                m["field"].as_str().unwrap().to_string(),
                m["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    assert_eq!(
        suggested,
        pairs(&[
            ("address", "address"),
            ("name", "person_name"),
            ("phone", "mobile_phone"),
            ("resident_id", "resident_id"),
        ])
    );
    assert_eq!(scan["scan"]["suggested_level"], 4);
    assert_eq!(
        scan["sensitivity"], 2,
        "nothing changes before a steward decides"
    );

    // The steward confirms the ID and the name, rejects the address suggestion.
    let decided = json(&reservoir(
        &home,
        &[
            "catalog",
            "pii",
            "gongan.people",
            "--confirm",
            "resident_id",
            "--confirm",
            "name=person_name",
            "--reject",
            "address",
            "--json",
        ],
    ));
    assert_eq!(
        decided["sensitivity"], 4,
        "a confirmed resident ID means level 4"
    );
    // A rescan keeps the decisions.
    let again = json(&reservoir(
        &home,
        &["catalog", "pii", "gongan.people", "--json"],
    ));
    let status = |field: &str| -> String {
        again["marks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["field"] == field)
            .map(|m| m["status"].as_str().unwrap().to_string())
            .unwrap_or_default()
    };
    assert_eq!(status("resident_id"), "confirmed");
    assert_eq!(status("address"), "rejected");
    assert_eq!(status("phone"), "suggested");
    let show = json(&reservoir(
        &home,
        &["catalog", "show", "gongan.people", "--json"],
    ));
    assert_eq!(show["dataset"]["sensitivity"], 4);
    assert_eq!(show["pii"].as_array().unwrap().len(), 4);

    let err = fails(&reservoir(
        &home,
        &["catalog", "pii", "gongan.people", "--confirm", "birth_date"],
    ));
    assert!(err.contains("name its kind"), "{err}");
    let err = fails(&reservoir(
        &home,
        &["catalog", "pii", "gongan.people", "--confirm", "nope=email"],
    ));
    assert!(err.contains("nope"), "{err}");
    let err = fails(&reservoir(
        &home,
        &[
            "catalog",
            "pii",
            "gongan.people",
            "--confirm",
            "phone=passport",
        ],
    ));
    assert!(err.contains("expected one of resident_id"), "{err}");
}

/// Code tables: the built-in GB/T 2260 (retired codes with their years) and GB/T 2261.1, a
/// user's own imported from a sheet, a field bound to one and checked against it.
#[test]
fn code_tables_are_built_in_imported_bound_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    ok(&reservoir(&home, &["init"]));
    let tables = json(&reservoir(&home, &["catalog", "codes", "--json"]));
    let tables = tables.as_array().unwrap();
    let gb2260 = tables.iter().find(|t| t["id"] == "gb2260").unwrap();
    assert_eq!(gb2260["values"], 8110);
    assert_eq!(gb2260["builtin"], true);
    let sex = json(&reservoir(
        &home,
        &["catalog", "codes", "gb2261_1", "--json"],
    ));
    assert_eq!(
        sex.as_array()
            .unwrap()
            .iter()
            .map(|v| v["code"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["0", "1", "2", "9"]
    );
    let divisions = ok(&reservoir(&home, &["catalog", "codes", "gb2260"]));
    assert!(
        divisions.contains("310227       松江县  (1982–1997)"),
        "the retired Songjiang county code"
    );

    // A code table of the unit's own, from a GBK CSV with Chinese headers.
    let file = dir.path().join("婚姻状况.csv");
    let (bytes, _, _) = encoding_rs::GBK.encode("代码,名称\n10,未婚\n20,已婚\n30,丧偶\n40,离婚\n");
    std::fs::write(&file, &bytes).unwrap();
    let out = ok(&reservoir(
        &home,
        &[
            "catalog",
            "codes",
            "marital",
            "--import",
            file.to_str().unwrap(),
            "--name",
            "婚姻状况代码",
            "--standard",
            "GB/T 2261.2-2003",
        ],
    ));
    assert!(out.contains("4 values"), "{out}");
    let err = fails(&reservoir(
        &home,
        &[
            "catalog",
            "codes",
            "gb2261_1",
            "--import",
            file.to_str().unwrap(),
        ],
    ));
    assert!(err.contains("built-in"), "{err}");

    let people = dir.path().join("people.csv");
    std::fs::write(
        &people,
        "id,gender,marital\n1,1,20\n2,2,10\n3,男,20\n4,9,50\n",
    )
    .unwrap();
    ok(&reservoir(
        &home,
        &[
            "collect",
            "--unit",
            "gongan",
            "--dataset",
            "people",
            "--column",
            "gender=utf8",
            "--column",
            "marital=utf8",
            people.to_str().unwrap(),
        ],
    ));
    ok(&reservoir(
        &home,
        &["catalog", "bind", "gongan.people", "marital", "marital"],
    ));
    let err = fails(&reservoir(
        &home,
        &["catalog", "bind", "gongan.people", "marital", "nope"],
    ));
    assert!(err.contains("nope"), "{err}");
    let rules = home.join("rules/gongan");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(
        rules.join("people.yaml"),
        "key: [id]\nrules:\n  - {check: code_table, column: gender, table: gb2261_1}\n  - {check: code_table, column: marital}\n",
    )
    .unwrap();
    let v = json(&reservoir(&home, &["check", "gongan.people", "--json"]));
    let results = v[0]["results"].as_array().unwrap();
    assert_eq!(results[0]["failed"], 1);
    assert_eq!(results[0]["examples"][0]["key"], "id=3");
    assert_eq!(
        results[0]["examples"][0]["reason"],
        "\"男\" is not a code of the code table gb2261_1"
    );
    assert_eq!(
        results[1]["failed"], 1,
        "marital is checked against its binding"
    );
    assert_eq!(results[1]["examples"][0]["value"], "50");

    // Unbound, with no table named, the rule cannot run and says why.
    ok(&reservoir(
        &home,
        &["catalog", "bind", "gongan.people", "marital"],
    ));
    let err = fails(&reservoir(&home, &["check", "gongan.people"]));
    assert!(err.contains("bound to no code table"), "{err}");
}

/// Data-element standards imported from a sheet (GB-style representation formats understood),
/// a field bound to one and checked by an `element` rule, and the glossary.
#[test]
fn data_elements_hold_fields_to_their_standard() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    ok(&reservoir(&home, &["init"]));
    let sheet = dir.path().join("数据元.csv");
    std::fs::write(
        &sheet,
        "标识符,中文名称,英文名称,数据类型,表示格式,代码表,定义,标准\n\
         DE0001,公民身份号码,citizen id,字符型,[0-9]{17}[0-9X],,居民身份证号码,GB/T 19488.2\n\
         DE0002,性别代码,sex,字符型,n1,gb2261_1,人的性别,GB/T 2261.1\n\
         DE0003,出生日期,birth date,日期型,,,,\n\
         DE0004,邮政编码,postcode,字符型,n6,,,\n",
    )
    .unwrap();
    let out = ok(&reservoir(
        &home,
        &["catalog", "elements", "--import", sheet.to_str().unwrap()],
    ));
    assert!(out.contains("4 data elements"), "{out}");
    let list = json(&reservoir(&home, &["catalog", "elements", "--json"]));
    let postcode = list
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == "DE0004")
        .unwrap();
    assert_eq!(postcode["format"], "[0-9]{6}");
    assert_eq!(postcode["max_length"], 6);

    let people = dir.path().join("people.csv");
    std::fs::write(
        &people,
        "id,sfz,xb,csrq,yb\n1,11010519491231002X,1,1949-12-31,201600\n2,1101051949123100,3,1949-13-01,2016000\n",
    )
    .unwrap();
    ok(&reservoir(
        &home,
        &[
            "collect",
            "--unit",
            "gongan",
            "--dataset",
            "people",
            "--column",
            "xb=utf8",
            "--column",
            "csrq=utf8",
            "--column",
            "yb=utf8",
            people.to_str().unwrap(),
        ],
    ));
    for (field, element) in [
        ("sfz", "DE0001"),
        ("xb", "DE0002"),
        ("csrq", "DE0003"),
        ("yb", "DE0004"),
    ] {
        ok(&reservoir(
            &home,
            &[
                "catalog",
                "bind",
                "gongan.people",
                field,
                "--element",
                element,
            ],
        ));
    }
    let show = json(&reservoir(
        &home,
        &["catalog", "show", "gongan.people", "--json"],
    ));
    assert_eq!(show["elements"].as_array().unwrap().len(), 4);
    let rules = home.join("rules/gongan");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(
        rules.join("people.yaml"),
        "key: [id]\nrules:\n  - {check: element, column: sfz}\n  - {check: element, column: xb}\n  - {check: element, column: csrq}\n  - {check: element, column: yb}\n",
    )
    .unwrap();
    let v = json(&reservoir(&home, &["check", "gongan.people", "--json"]));
    let reasons: Vec<String> = v[0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["failed"], 1, "{r:#}");
            assert_eq!(r["examples"][0]["key"], "id=2");
            r["examples"][0]["reason"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(
        reasons,
        [
            "\"1101051949123100\" does not match data element DE0001 (公民身份号码)'s format [0-9]{17}[0-9X]",
            "\"3\" is not a code of gb2261_1, which data element DE0002 (性别代码) takes its values from",
            "\"1949-13-01\" is not a date value (日期型); data element DE0003 (出生日期) is 日期型",
            "\"2016000\" has 7 characters; data element DE0004 (邮政编码) allows at most 6",
        ]
    );

    // The glossary.
    ok(&reservoir(
        &home,
        &[
            "catalog",
            "glossary",
            "常住人口",
            "--define",
            "在本地居住半年以上的人口",
            "--synonym",
            "常住人口数",
            "--element",
            "DE0001",
        ],
    ));
    let found = json(&reservoir(
        &home,
        &["catalog", "glossary", "人口数", "--json"],
    ));
    assert_eq!(found[0]["term"], "常住人口");
    assert_eq!(found[0]["elements"][0], "DE0001");
    let err = fails(&reservoir(
        &home,
        &[
            "catalog",
            "glossary",
            "户籍人口",
            "--define",
            "x",
            "--element",
            "DE9999",
        ],
    ));
    assert!(err.contains("DE9999"), "{err}");
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "标识符,中文名称,数据类型\nDE9,图像,图片型\n").unwrap();
    let err = fails(&reservoir(
        &home,
        &["catalog", "elements", "--import", bad.to_str().unwrap()],
    ));
    assert!(
        err.contains("line 2") && err.contains("图片型") && err.contains("字符型"),
        "{err}"
    );
}

/// A blocking rule moves its failing rows out of the table into the quarantine, with their values
/// and the reason; the quality table still lists them; the next check finds the table clean.
#[test]
fn blocking_rules_move_failing_rows_to_quarantine() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    ok(&reservoir(&home, &["init"]));
    let file = dir.path().join("people.csv");
    std::fs::write(
        &file,
        "sfz,name,note\n11010519491231002X,张三,\"a, b\"\n110105194912310021,李四,\n11010519491231002X,,x\n310227198001010017,王五,\n",
    )
    .unwrap();
    let rules = home.join("rules/gongan");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(
        rules.join("people.yaml"),
        "rules:\n  - {name: 身份证, check: resident_id, column: sfz, blocking: true}\n  - {name: 姓名, check: not_null, column: name}\n",
    )
    .unwrap();
    // The check runs after the collection and blocks the row with the wrong check character.
    let out = ok(&reservoir(
        &home,
        &[
            "collect",
            "--unit",
            "gongan",
            "--dataset",
            "people",
            file.to_str().unwrap(),
        ],
    ));
    assert!(
        out.contains("1 rows failed a blocking rule and were moved to quarantine.gongan.people"),
        "{out}"
    );
    let count = |sql: &str| ok(&reservoir(&home, &["sql", "-f", "csv", sql]));
    assert_eq!(
        count("SELECT count(*) AS n FROM raw.gongan.people"),
        "n\n3\n"
    );
    assert_eq!(
        count("SELECT _source_row, raw, reason FROM quarantine.gongan.people"),
        "_source_row,raw,reason\n3,\"110105194912310021,李四,\",\"blocked by 身份证: \"\"110105194912310021\"\": check character is 1, expected X\"\n"
    );
    // Every failure, blocked or not, is in the quality table.
    assert_eq!(
        count("SELECT rule, _source_row FROM quality.gongan.people ORDER BY _source_row"),
        "rule,_source_row\n身份证,3\n姓名,4\n"
    );
    let show = json(&reservoir(
        &home,
        &["catalog", "show", "gongan.people", "--json"],
    ));
    assert_eq!(show["dataset"]["row_count"], 3);
    // Checking again finds nothing left to block.
    let v = json(&reservoir(&home, &["check", "gongan.people", "--json"]));
    assert_eq!(v[0]["blocked"], 0);
    assert_eq!(v[0]["results"][0]["failed"], 0);
    assert_eq!(v[0]["results"][0]["blocking"], true);

    std::fs::write(
        rules.join("people.yaml"),
        "rules:\n  - {check: freshness, blocking: true}\n",
    )
    .unwrap();
    let err = fails(&reservoir(&home, &["check", "gongan.people"]));
    assert!(err.contains("no failing rows to block"), "{err}");
}

/// Accounts, grants, tokens and the audit chain from the command line: init prints the first
/// operator once; `sql --as` shows what a grant shows; `audit verify` catches an edited entry.
#[test]
fn accounts_grants_tokens_and_the_audit_chain() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let out = ok(&reservoir(home, &["init"]));
    assert!(out.contains("login admin   password "), "{out}");
    // Only the first init creates it.
    let again = ok(&reservoir(home, &["init"]));
    assert!(!again.contains("password"), "{again}");

    let people = home.join("people.csv");
    std::fs::write(
        &people,
        "name,id_card,street,secret\n\
         张三丰,110101199003071234,方松街道,机密甲\n\
         王小明,310227197001011235,方松街道,机密乙\n\
         李四光,320102198001011239,岳阳街道,机密丙\n",
    )
    .unwrap();
    let p = people.to_str().unwrap();
    ok(&reservoir(
        home,
        &["collect", "--unit", "minzheng", "--dataset", "people", p],
    ));
    ok(&reservoir(
        home,
        &["collect", "--unit", "weijian", "--dataset", "doses", p],
    ));

    let out = ok(&reservoir(
        home,
        &[
            "user", "add", "mz", "--role", "steward", "--unit", "minzheng",
        ],
    ));
    assert!(
        out.contains("created mz (steward of minzheng)") && out.contains("password "),
        "{out}"
    );
    let out = ok(&reservoir(
        home,
        &[
            "user", "add", "analyst", "--role", "consumer", "--unit", "weijian",
        ],
    ));
    assert!(out.contains("shown once"), "{out}");
    let err = reservoir(home, &["user", "add", "x1", "--role", "consumer"]);
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("belongs to a unit"));
    let err = reservoir(home, &["user", "add", "x2", "--role", "boss"]);
    assert!(String::from_utf8_lossy(&err.stderr).contains("expected operator, steward"));
    let list = ok(&reservoir(home, &["user", "list"]));
    assert!(
        list.contains("analyst") && list.contains("consumer") && list.contains("weijian"),
        "{list}"
    );

    let out = ok(&reservoir(
        home,
        &[
            "grant",
            "create",
            "--user",
            "analyst",
            "--dataset",
            "minzheng.people",
            "--columns",
            "name:keep:1/0,id_card:hash,street",
            "--row-filter",
            "street = '方松街道'",
            "--purpose",
            "疫苗接种覆盖率",
            "--until",
            "2099-12-31",
        ],
    ));
    assert!(
        out.contains("grant 1") && out.contains("name [keep:1,0]"),
        "{out}"
    );
    assert!(out.contains("rows where  street = '方松街道'"), "{out}");
    let err = reservoir(
        home,
        &[
            "grant",
            "create",
            "--user",
            "analyst",
            "--dataset",
            "minzheng.people",
            "--columns",
            "name",
            "--row-filter",
            "nope = 1",
            "--purpose",
            "x",
            "--until",
            "2099-12-31",
        ],
    );
    assert!(!err.status.success());
    assert!(
        String::from_utf8_lossy(&err.stderr).contains("nope"),
        "{err:?}"
    );

    // What the consumer sees: masked, filtered, no ungranted column.
    let seen = ok(&reservoir(
        home,
        &[
            "sql",
            "--as",
            "analyst",
            "-f",
            "csv",
            "SELECT * FROM minzheng.people ORDER BY street",
        ],
    ));
    let lines: Vec<&str> = seen.lines().collect();
    assert_eq!(lines[0], "name,id_card,street", "{seen}");
    assert_eq!(lines.len(), 3, "{seen}");
    for secret in ["张三丰", "110101199003071234", "李四光", "机密", "岳阳街道"] {
        assert!(!seen.contains(secret), "{secret} in {seen}");
    }
    assert!(seen.contains("张**,") && seen.contains("王**,"), "{seen}");
    let err = reservoir(
        home,
        &[
            "sql",
            "--as",
            "analyst",
            "SELECT secret FROM minzheng.people",
        ],
    );
    assert!(!err.status.success());
    let err = reservoir(
        home,
        &["sql", "--as", "analyst", "SELECT * FROM weijian.doses"],
    );
    assert!(
        String::from_utf8_lossy(&err.stderr).contains("not found"),
        "{err:?}"
    );

    let out = ok(&reservoir(
        home,
        &[
            "token", "create", "--user", "analyst", "--grant", "1", "--days", "7",
        ],
    ));
    assert!(
        out.contains("(grant 1 only)") && out.contains("rsv_"),
        "{out}"
    );
    let id = out.split_whitespace().nth(1).unwrap().to_string();
    let list = ok(&reservoir(home, &["token", "list"]));
    assert!(list.contains(&id) && list.contains("active"), "{list}");
    ok(&reservoir(home, &["token", "revoke", &id]));
    let list = ok(&reservoir(home, &["token", "list"]));
    assert!(list.contains("revoked"), "{list}");

    let audit = ok(&reservoir(home, &["audit", "list", "--action", "grant."]));
    assert!(audit.contains("grant.create"), "{audit}");
    let csv = ok(&reservoir(home, &["audit", "list", "--csv"]));
    assert!(csv.starts_with("seq,at,actor,action"), "{csv}");
    assert!(csv.contains("sql.query"), "{csv}");
    let verify = ok(&reservoir(home, &["audit", "verify"]));
    assert!(verify.contains("audit log intact"), "{verify}");

    // Someone edits the log in the database directly: verify names the entry.
    let db = home.join("catalog.db");
    let status = Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import sqlite3; c = sqlite3.connect({:?}); c.execute(\"UPDATE audit_log SET actor = 'nobody' WHERE seq = 3\"); c.commit()",
            db.to_str().unwrap()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    let broken = reservoir(home, &["audit", "verify"]);
    assert!(!broken.status.success());
    let text = String::from_utf8_lossy(&broken.stdout);
    assert!(
        text.contains("broken at entry 3") && text.contains("edited"),
        "{text}"
    );
}

/// `reservoir publish` writes the open snapshot of an open dataset (personal data masked), and
/// every later collection into it publishes it again; closed datasets are refused.
#[test]
fn open_datasets_publish_and_follow_their_source() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    ok(&reservoir(home, &["init"]));
    let file = home.join("streets.csv");
    std::fs::write(
        &file,
        "code,name,contact_phone\n310117001,岳阳街道,13800001111\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    ok(&reservoir(
        home,
        &[
            "collect",
            "--unit",
            "minzheng",
            "--dataset",
            "streets",
            "--open-tier",
            "open",
            f,
        ],
    ));
    ok(&reservoir(
        home,
        &["collect", "--unit", "minzheng", "--dataset", "secret", f],
    ));
    ok(&reservoir(home, &["catalog", "pii", "minzheng.streets"]));

    let out = ok(&reservoir(home, &["publish", "minzheng.streets"]));
    assert!(
        out.contains("published open.minzheng.streets: 1 rows, version 0"),
        "{out}"
    );
    assert!(
        out.contains("contact_phone:keep:3,4"),
        "the phone is masked: {out}"
    );
    let err = reservoir(home, &["publish", "minzheng.secret"]);
    assert!(!err.status.success());
    assert!(
        String::from_utf8_lossy(&err.stderr).contains("无条件开放"),
        "{err:?}"
    );

    // A new delivery: the open snapshot follows.
    std::fs::write(
        &file,
        "code,name,contact_phone\n310117002,永丰街道,13900002222\n",
    )
    .unwrap();
    let out = ok(&reservoir(
        home,
        &[
            "collect",
            "--unit",
            "minzheng",
            "--dataset",
            "streets",
            "--json",
            f,
        ],
    ));
    assert!(
        out.contains("open snapshot published again: version 1, 2 rows"),
        "{out}"
    );
    let audit = ok(&reservoir(
        home,
        &["audit", "list", "--action", "open.publish"],
    ));
    assert_eq!(
        audit.lines().filter(|l| l.contains("open.publish")).count(),
        2,
        "{audit}"
    );
}
