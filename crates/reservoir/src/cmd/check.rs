//! `reservoir check [UNIT.DATASET]…`: run datasets' quality rules
//! (`<home>/rules/<unit>/<dataset>.yaml`), print what failed and the scores, record the run.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Result, bail};
use reservoir_quality::check::{CheckOutcome, check_dataset, check_if_rules};
use reservoir_quality::rules::{self, RuleSet};

use crate::home::{self, Home};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Datasets to check, as UNIT.DATASET (default: every dataset with a rules file).
    datasets: Vec<String>,
    /// Print the outcomes as JSON.
    #[arg(long)]
    json: bool,
}

/// The datasets with a rules file: `rules/<unit>/<dataset>.yaml` (or `.yml`), sorted.
fn datasets_with_rules(dir: &Path) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let Ok(units) = std::fs::read_dir(dir) else {
        return Ok(out);
    };
    for unit in units {
        let unit = unit?;
        if !unit.file_type()?.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(unit.path())? {
            let path = file?.path();
            let is_yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
            if let (true, Some(stem)) = (is_yaml, path.file_stem()) {
                let d = (
                    unit.file_name().to_string_lossy().into_owned(),
                    stem.to_string_lossy().into_owned(),
                );
                if !out.contains(&d) {
                    out.push(d);
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

pub async fn run(home_flag: Option<&Path>, args: Args) -> Result<ExitCode> {
    let home = Home::open(&home::resolve(home_flag)?).await?;
    let dir = home.root.join("rules");
    let chosen: Vec<(String, String)> = if args.datasets.is_empty() {
        let all = datasets_with_rules(&dir)?;
        if all.is_empty() {
            bail!(
                "no rules files in {}; write rules/<unit>/<dataset>.yaml (see README: quality rules)",
                dir.display()
            );
        }
        all
    } else {
        let mut chosen = Vec::new();
        for d in &args.datasets {
            let name = d.strip_prefix("raw.").unwrap_or(d);
            let Some((unit, dataset)) = name.split_once('.') else {
                bail!("{d:?}: name a dataset as UNIT.DATASET, e.g. gongan.people");
            };
            chosen.push((unit.to_string(), dataset.to_string()));
        }
        chosen
    };
    // Each dataset on its own: one that cannot be checked is reported and the rest go on.
    let mut outcomes = Vec::new();
    let mut failed = 0usize;
    for (unit, dataset) in chosen {
        match check_one(&home, &dir, &unit, &dataset).await {
            Ok((outcome, id)) => {
                if !args.json {
                    summary(&outcome, id);
                }
                outcomes.push(outcome);
            }
            Err(e) => {
                failed += 1;
                eprintln!("error: checking {unit}.{dataset}: {e:#}");
            }
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcomes)?);
    }
    home.catalog.close().await;
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn check_one(
    home: &Home,
    dir: &Path,
    unit: &str,
    dataset: &str,
) -> Result<(CheckOutcome, i64)> {
    let Some(path) = rules::find_file(dir, unit, dataset)? else {
        bail!(
            "no rules file: expected {}",
            dir.join(unit).join(format!("{dataset}.yaml")).display()
        );
    };
    let rules = RuleSet::load(&path)?;
    Ok(check_dataset(&home.lake, &home.catalog, unit, dataset, &rules).await?)
}

/// After a collection into `raw.<unit>.<dataset>`: runs the dataset's rules if it has a rules
/// file (`None` if it has none).
pub(crate) async fn after_collection(
    home: &Home,
    unit: &str,
    dataset: &str,
) -> Option<Result<(CheckOutcome, i64)>> {
    check_if_rules(
        &home.lake,
        &home.catalog,
        &home.root.join("rules"),
        unit,
        dataset,
    )
    .await
    .map_err(Into::into)
    .transpose()
}

/// `name` as a SQL identifier: bare when it is a plain lowercase word, quoted otherwise.
fn ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

pub(crate) fn summary(o: &CheckOutcome, id: i64) {
    let failed: u64 = o.results.iter().map(|r| r.failed).sum();
    let mark = if failed == 0 { "✔" } else { "⚠" };
    println!(
        "{mark} {}  version {}, {} rows, check run {id} ({})",
        o.table, o.table_version, o.rows, o.check_run
    );
    for r in &o.results {
        let noted = if r.noted > 0 {
            format!(", {} noted", r.noted)
        } else {
            String::new()
        };
        println!(
            "  {}  [{}{}]  {} failed of {}{noted}",
            r.rule,
            r.dimension,
            if r.blocking { ", blocking" } else { "" },
            r.failed,
            r.checked
        );
        for e in &r.examples {
            println!("      {}: {}", e.key, e.reason);
        }
    }
    let scores: Vec<String> = o
        .scores
        .iter()
        .map(|(d, s)| format!("{d} {s:.2}"))
        .collect();
    println!("  scores: {}", scores.join(", "));
    if let Some(q) = &o.quarantine_table {
        println!(
            "  {} rows failed a blocking rule and were moved to {q} (table version {})",
            o.blocked,
            o.table_version_after
                .map(|v| v.to_string())
                .unwrap_or_else(|| "unchanged".into())
        );
    }
    if let Some(t) = &o.failures_table {
        let t: Vec<String> = t.split('.').map(ident).collect();
        println!(
            "  every failing row: reservoir sql \"SELECT * FROM {} WHERE check_run = '{}'\"",
            t.join("."),
            o.check_run
        );
    }
}
