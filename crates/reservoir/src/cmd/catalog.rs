use std::path::Path;
use std::process::ExitCode;

use anyhow::{Result, bail};
use reservoir_catalog::{Catalog, Dataset, DatasetFilter};

use crate::home::{self, Home};
use crate::print;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List units.
    Units {
        #[arg(long)]
        json: bool,
    },
    /// List datasets.
    Datasets {
        /// Only this unit's datasets.
        #[arg(long)]
        unit: Option<String>,
        /// Only this layer's datasets.
        #[arg(long)]
        layer: Option<String>,
        /// Only datasets whose name, title or description contains this text.
        #[arg(long)]
        search: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show one dataset: schema, profile, recent runs.
    Show {
        /// layer.unit.name, or unit.name for the raw layer.
        dataset: String,
        #[arg(long)]
        json: bool,
    },
    /// List collection runs, newest first.
    Runs {
        /// Only runs of this dataset (layer.unit.name or unit.name).
        dataset: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// Alerts: sources that failed after their retries, datasets late against their update
    /// frequency.
    Alerts {
        /// Resolved alerts too.
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Schema-drift events of a dataset's source, newest first: columns added, removed,
    /// widened, narrowed, and type changes that stopped a run.
    Drift {
        /// layer.unit.name, or unit.name for the raw layer.
        dataset: String,
        #[arg(long)]
        json: bool,
    },
}

/// Finds a dataset by `layer.unit.name` or `unit.name`.
pub async fn find_dataset(catalog: &Catalog, name: &str) -> Result<Dataset> {
    let parts: Vec<&str> = name.split('.').collect();
    let (layer, unit, ds) = match parts.as_slice() {
        [unit, ds] => ("raw", *unit, *ds),
        [layer, unit, ds] => (*layer, *unit, *ds),
        _ => bail!("dataset {name:?}: expected layer.unit.name or unit.name"),
    };
    match catalog.dataset(layer, unit, ds).await? {
        Some(d) => Ok(d),
        None => bail!(
            "dataset {layer}.{unit}.{ds} is not in the catalog; `reservoir catalog datasets` lists them"
        ),
    }
}

pub async fn run(home_flag: Option<&Path>, command: Command) -> Result<ExitCode> {
    let home = Home::open(&home::resolve(home_flag)?).await?;
    let catalog = &home.catalog;
    match command {
        Command::Units { json } => {
            let units = catalog.units().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&units)?);
            } else {
                for u in units {
                    println!("{:<16} {}", u.id, u.name);
                }
            }
        }
        Command::Datasets {
            unit,
            layer,
            search,
            json,
        } => {
            let filter = DatasetFilter {
                unit_id: unit,
                layer,
                search,
                ..DatasetFilter::default()
            };
            let datasets = catalog.datasets(&filter).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&datasets)?);
            } else {
                for d in datasets {
                    println!(
                        "{:<40} {:>10} rows  {}",
                        d.qualified_name(),
                        d.row_count,
                        d.title
                    );
                }
            }
        }
        Command::Show { dataset, json } => {
            let d = find_dataset(catalog, &dataset).await?;
            let fields = catalog.fields(d.id).await?;
            let profile = catalog.latest_profiles(d.id).await?;
            let runs = catalog.runs(Some(d.id), 10).await?;
            let checks = catalog.check_runs(d.id, 5).await?;
            if json {
                let v = serde_json::json!({
                    "dataset": d,
                    "fields": fields,
                    "profile": profile.as_ref().map(|(run, p)| serde_json::json!({"run_id": run, "columns": p})),
                    "runs": runs,
                    "checks": checks,
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print::dataset(&d, &fields, profile.as_ref(), &runs);
                print::checks(&checks);
            }
        }
        Command::Runs {
            dataset,
            limit,
            json,
        } => {
            let id = match dataset {
                Some(name) => Some(find_dataset(catalog, &name).await?.id),
                None => None,
            };
            let runs = catalog.runs(id, limit).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&runs)?);
            } else {
                for r in runs {
                    let d = catalog.dataset_by_id(r.dataset_id).await?;
                    println!(
                        "#{:<5} {}  {:<9} {:<36} read {} loaded {} quarantined {}{}",
                        r.id,
                        r.started_at,
                        r.status.as_str(),
                        d.map(|d| d.qualified_name()).unwrap_or_default(),
                        r.counts.rows_read,
                        r.counts.rows_loaded,
                        r.counts.rows_quarantined,
                        r.error.map(|e| format!("  error: {e}")).unwrap_or_default()
                    );
                }
            }
        }
        Command::Alerts { all, json } => {
            let alerts = catalog.alerts(!all, 200).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&alerts)?);
            } else if alerts.is_empty() {
                println!("no {}alerts", if all { "" } else { "open " });
            } else {
                for a in alerts {
                    println!(
                        "#{:<4} {}  {:<6} {:<20} {}{}",
                        a.id,
                        a.raised_at,
                        a.kind,
                        a.source,
                        a.message,
                        a.resolved_at
                            .map(|t| format!("  (resolved {t})"))
                            .unwrap_or_default()
                    );
                }
            }
        }
        Command::Drift { dataset, json } => {
            let d = find_dataset(catalog, &dataset).await?;
            let events = catalog.drift_events(d.id).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&events)?);
            } else if events.is_empty() {
                println!("{}: no schema drift recorded", d.qualified_name());
            } else {
                for e in events {
                    let types = match (&e.old_type, &e.new_type) {
                        (Some(o), Some(n)) => format!("{o} → {n}"),
                        (Some(o), None) => o.clone(),
                        (None, Some(n)) => n.clone(),
                        (None, None) => String::new(),
                    };
                    println!(
                        "{}  run #{}  {:<9} {:<24} {:<40} {}",
                        e.at,
                        e.run_id
                            .map(|r| r.to_string())
                            .unwrap_or_else(|| "-".into()),
                        e.change,
                        e.column_name,
                        types,
                        e.action
                    );
                }
            }
        }
    }
    catalog.close().await;
    Ok(ExitCode::SUCCESS)
}
