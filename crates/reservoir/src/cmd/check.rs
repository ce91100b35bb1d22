//! `reservoir check [UNIT.DATASET]…`: run datasets' quality rules
//! (`<home>/rules/<unit>/<dataset>.yaml`), print what failed and the scores, record the run.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use reservoir_quality::check::{CheckOutcome, check_dataset};
use reservoir_quality::rules::RuleSet;

use crate::home::{self, Home};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Datasets to check, as UNIT.DATASET (default: every dataset with a rules file).
    datasets: Vec<String>,
    /// Print the outcome as JSON.
    #[arg(long)]
    json: bool,
}

/// The rules files of a home: `rules/<unit>/<dataset>.yaml`, sorted.
fn rule_files(dir: &Path) -> Result<Vec<(String, String, PathBuf)>> {
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
                out.push((
                    unit.file_name().to_string_lossy().into_owned(),
                    stem.to_string_lossy().into_owned(),
                    path,
                ));
            }
        }
    }
    out.sort();
    Ok(out)
}

pub async fn run(home_flag: Option<&Path>, args: Args) -> Result<ExitCode> {
    let home = Home::open(&home::resolve(home_flag)?).await?;
    let dir = home.root.join("rules");
    let all = rule_files(&dir)?;
    let chosen: Vec<(String, String, PathBuf)> = if args.datasets.is_empty() {
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
            let Some((unit, dataset)) = d.split_once('.') else {
                bail!("{d:?}: name a dataset as UNIT.DATASET, e.g. gongan.people");
            };
            let path = all
                .iter()
                .find(|(u, n, _)| u == unit && n == dataset)
                .map(|(_, _, p)| p.clone())
                .with_context(|| {
                    format!(
                        "{d} has no rules file: expected {}",
                        dir.join(unit).join(format!("{dataset}.yaml")).display()
                    )
                })?;
            chosen.push((unit.to_string(), dataset.to_string(), path));
        }
        chosen
    };
    let mut outcomes = Vec::new();
    for (unit, dataset, path) in chosen {
        let rules = RuleSet::load(&path)?;
        let (outcome, id) = check_dataset(&home.lake, &home.catalog, &unit, &dataset, &rules)
            .await
            .with_context(|| format!("checking {unit}.{dataset} with {}", path.display()))?;
        if !args.json {
            summary(&outcome, id);
        }
        outcomes.push(outcome);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcomes)?);
    }
    home.catalog.close().await;
    Ok(ExitCode::SUCCESS)
}

/// After a collection into `raw.<unit>.<dataset>`: runs the dataset's rules if it has a rules
/// file (`None` if it has none).
pub(crate) async fn after_collection(
    home: &Home,
    unit: &str,
    dataset: &str,
) -> Option<Result<(CheckOutcome, i64)>> {
    let path = home
        .root
        .join("rules")
        .join(unit)
        .join(format!("{dataset}.yaml"));
    if !path.exists() {
        return None;
    }
    Some(
        async {
            let rules = RuleSet::load(&path)?;
            Ok(check_dataset(&home.lake, &home.catalog, unit, dataset, &rules).await?)
        }
        .await,
    )
}

pub(crate) fn summary(o: &CheckOutcome, id: i64) {
    let failed: u64 = o.results.iter().map(|r| r.failed).sum();
    let mark = if failed == 0 { "✔" } else { "⚠" };
    println!(
        "{mark} {}  version {}, {} rows, check run {id}",
        o.table, o.table_version, o.rows
    );
    for r in &o.results {
        let noted = if r.noted > 0 {
            format!(", {} noted", r.noted)
        } else {
            String::new()
        };
        let blocking = if r.blocking { " [blocking]" } else { "" };
        println!(
            "  {:<32} {:<12} {:>10} failed of {}{noted}{blocking}",
            r.rule, r.dimension, r.failed, r.checked
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
    if let Some(t) = &o.failures_table {
        println!(
            "  every failing row: reservoir sql \"SELECT * FROM {t} WHERE check_run = '{}'\"",
            o.check_run
        );
    }
}
