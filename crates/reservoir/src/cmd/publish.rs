//! `reservoir publish`: the open snapshots of datasets marked 无条件开放.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use reservoir_catalog::{DatasetFilter, OpenTier};

use crate::home::{self, Home};

/// `reservoir publish [unit.dataset…] [--all]`
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Only datasets marked 无条件开放 (open) are published. A publication reads the raw table through \
the default masks of its fields' PII kinds and writes open.<unit>.<dataset> as a new version; the \
open-data portal (/open) and the CKAN API (/api/3/action) serve the latest.")]
pub struct Args {
    /// Datasets to publish, as unit.name.
    datasets: Vec<String>,
    /// Every raw dataset marked open.
    #[arg(long)]
    all: bool,
}

pub async fn run(home_flag: Option<&Path>, args: Args) -> Result<ExitCode> {
    let home = Home::open(&home::resolve(home_flag)?).await?;
    let published = publish(&home, &args.datasets, args.all).await?;
    if published == 0 {
        println!("nothing to publish: no raw dataset is marked open (无条件开放)");
    }
    home.catalog.close().await;
    Ok(ExitCode::SUCCESS)
}

/// The server state publishing needs (the home's keys), for the CLI.
fn state(home: &Home) -> Result<reservoir_server::AppState> {
    Ok(reservoir_server::AppState::new(
        home.lake.clone(),
        home.catalog.clone(),
        reservoir_server::ServerConfig::default(),
    )
    .with_mask_key(home.mask_key()?)
    .with_audit_key(home.audit_key()?))
}

/// Publishes `unit.dataset` again if it is open and was published before (after a collection).
pub async fn republish(
    home: &Home,
    unit: &str,
    dataset: &str,
) -> Result<Option<reservoir_catalog::open::Publication>> {
    reservoir_server::open::republish(&state(home)?, unit, dataset)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.message))
}

/// Publishes `names` (or, with `all`, every raw dataset marked open); returns how many.
pub async fn publish(home: &Home, names: &[String], all: bool) -> Result<usize> {
    if names.is_empty() && !all {
        bail!("name the datasets to publish (unit.name), or --all for every dataset marked open");
    }
    let mut targets = Vec::new();
    for name in names {
        let (unit, table) = name
            .split_once('.')
            .with_context(|| format!("{name:?}: name the dataset as unit.name"))?;
        let d = home
            .catalog
            .dataset("raw", unit, table)
            .await?
            .with_context(|| format!("no raw dataset {name}"))?;
        targets.push(d);
    }
    if all {
        for d in home.catalog.datasets(&DatasetFilter::default()).await? {
            if d.layer == "raw" && d.open_tier == OpenTier::Open && d.table_version.is_some() {
                targets.push(d);
            }
        }
    }
    let state = state(home)?;
    for d in &targets {
        let p = reservoir_server::open::publish(&state, d, "local")
            .await
            .map_err(|e| anyhow::anyhow!("{}.{}: {}", d.unit_id, d.name, e.message))?;
        let mut event = reservoir_access::AuditEvent::new(
            "local",
            "open.publish",
            &format!("{}.{}", d.unit_id, d.name),
        );
        event.client = "cli".into();
        event.row_count = Some(p.row_count);
        event.detail = serde_json::json!({"version": p.version, "masked": p.masked}).to_string();
        home.access().audit(event).await?;
        println!(
            "published open.{}.{}: {} rows, version {}{}",
            d.unit_id,
            d.name,
            p.row_count,
            p.version,
            if p.masked.is_empty() {
                String::new()
            } else {
                format!(" (masked: {})", p.masked)
            }
        );
    }
    Ok(targets.len())
}
