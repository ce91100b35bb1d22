//! `reservoir collect` on a database source, end to end through the binary: a sync killed at
//! arbitrary moments (SIGKILL, no chance to clean up) resumes from the cursor committed with the
//! last batch, and in the end the lake holds every source row exactly once.
//!
//! Needs the PostgreSQL server of the other database tests (`RESERVOIR_TEST_PG_URL`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use reservoir_testkit::PgDatabase;

const ROWS: usize = 30_000;

fn reservoir(home: &Path, source_url: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_reservoir"));
    c.arg("--home")
        .arg(home)
        .env_remove("RESERVOIR_HOME")
        .env_remove("RESERVOIR_CATALOG__URL")
        .env("TEST_HUKOU_URL", source_url);
    c
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "reservoir failed\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn lake_counts(home: &Path, url: &str) -> String {
    ok(reservoir(home, url)
        .args([
            "sql",
            "--format",
            "csv",
            "SELECT count(*) AS n, count(DISTINCT id) AS ids, min(id) AS lo, max(id) AS hi \
             FROM raw.gongan.people",
        ])
        .output()
        .unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_sync_resumes_without_loss_or_duplicates() {
    let db = PgDatabase::create().await;
    // Many rows share each cursor value, so batch boundaries fall inside runs of equal cursors.
    db.exec(&format!(
        "CREATE TABLE people (id int PRIMARY KEY, name text NOT NULL,
                              updated_at timestamp(6) NOT NULL);
         INSERT INTO people
           SELECT g, '居民' || g, '2024-01-01'::timestamp + (g / 7) * interval '1 microsecond'
           FROM generate_series(1, {ROWS}) g;"
    ))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    ok(reservoir(&home, &db.url).arg("init").output().unwrap());
    std::fs::write(
        home.join("sources/people.toml"),
        r#"
unit = "gongan"
dataset = "people"
kind = "postgres"

[database]
url_env = "TEST_HUKOU_URL"
table = "people"
mode = "incremental"
key = ["id"]
cursor = "updated_at"
batch_rows = 997
"#,
    )
    .unwrap();

    // Kill the sync again and again, at moments that fall before, inside and between batches.
    let mut kills = 0;
    let mut partial = Vec::new();
    for delay_ms in [300, 900, 450, 1300, 700, 1700, 1100, 2100] {
        let mut child = reservoir(&home, &db.url)
            .args(["collect", "people"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        if child.try_wait().unwrap().is_some() {
            break; // it finished before the kill
        }
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        if home.join("lake/raw/gongan/people/_delta_log").exists() {
            partial.push(lake_counts(&home, &db.url));
        }
    }
    assert!(kills > 0, "every run finished before it could be killed");
    // The lake never shows a duplicate, even between kills.
    for counts in &partial {
        let line = counts.lines().nth(1).unwrap();
        let v: Vec<&str> = line.split(',').collect();
        assert_eq!(v[0], v[1], "duplicates after a kill: {counts}");
    }

    // One more run to the end: every row, exactly once.
    let out = ok(reservoir(&home, &db.url)
        .args(["collect", "people"])
        .output()
        .unwrap());
    assert!(out.contains("raw.gongan.people"), "{out}");
    assert_eq!(
        lake_counts(&home, &db.url),
        format!("n,ids,lo,hi\n{ROWS},{ROWS},1,{ROWS}\n")
    );
    // Another run finds nothing new.
    let out = ok(reservoir(&home, &db.url)
        .args(["collect", "people"])
        .output()
        .unwrap());
    assert!(out.contains("read 0 = loaded 0 + quarantined 0"), "{out}");

    // The killed runs are not left "running": they are recorded as interrupted.
    let runs: Vec<serde_json::Value> = serde_json::from_str(&ok(reservoir(&home, &db.url)
        .args([
            "catalog",
            "runs",
            "gongan.people",
            "--limit",
            "100",
            "--json",
        ])
        .output()
        .unwrap()))
    .unwrap();
    let status = |s: &str| runs.iter().filter(|r| r["status"] == s).count();
    assert_eq!(status("running"), 0, "{runs:#?}");
    assert!(
        status("interrupted") >= 1 && status("interrupted") <= kills,
        "{runs:#?}"
    );
    // A kill can land after a run recorded its success, so more than the last two may have.
    assert!(status("succeeded") >= 2, "{runs:#?}");
    assert_eq!(
        status("succeeded") + status("interrupted"),
        runs.len(),
        "{runs:#?}"
    );
    // Some kill left a partly loaded table that a later run completed.
    assert!(
        partial.iter().any(|c| {
            let n: usize = c
                .lines()
                .nth(1)
                .unwrap()
                .split(',')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            n > 0 && n < ROWS
        }),
        "no kill interrupted a run midway: {partial:?}"
    );
    db.drop_db().await;
}
