//! `reservoir report --unit U --month YYYY-MM`: a unit's monthly operation report (运营报告) as
//! HTML that prints on A4, JSON or CSV.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use reservoir_catalog::report::{self, Lang, Month};

use crate::home::{self, Home};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The unit (its id, see `reservoir catalog units`).
    #[arg(long)]
    unit: String,
    /// The month, YYYY-MM (default: this month).
    #[arg(long)]
    month: Option<String>,
    /// html, json or csv (default: from the output file's extension, else html).
    #[arg(long)]
    format: Option<String>,
    /// zh (default) or en.
    #[arg(long, default_value = "zh")]
    lang: String,
    /// Write to this file instead of standard output.
    #[arg(long, short)]
    out: Option<PathBuf>,
}

pub async fn run(home_flag: Option<&Path>, args: Args) -> Result<ExitCode> {
    let home = Home::open(&home::resolve(home_flag)?).await?;
    let now = chrono::Utc::now();
    let month: Month = match &args.month {
        Some(m) => m.parse()?,
        None => Month::of(now),
    };
    let lang: Lang = args.lang.parse()?;
    let format = match (&args.format, &args.out) {
        (Some(f), _) => f.to_ascii_lowercase(),
        (None, Some(path)) => {
            let ext = path
                .extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase)
                .unwrap_or_default();
            if !["html", "htm", "json", "csv"].contains(&ext.as_str()) {
                bail!(
                    "{}: the extension picks the format; expected .html, .json or .csv (or give --format)",
                    path.display()
                );
            }
            ext
        }
        (None, None) => "html".into(),
    };
    let catalog = &home.catalog;
    if catalog.unit(&args.unit).await?.is_none() {
        bail!(
            "unit {:?} is not in the catalog; `reservoir catalog units` lists them",
            args.unit
        );
    }
    let r = catalog.operation_report(&args.unit, month, now).await?;
    let text = match format.as_str() {
        "html" | "htm" => report::render_html(&r, lang),
        "json" => serde_json::to_string_pretty(&r)?,
        "csv" => report::render_csv(&r),
        other => bail!("format {other:?}: expected html, json or csv"),
    };
    match &args.out {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "{} {} report written to {}",
                r.unit.name,
                r.month,
                path.display()
            );
        }
        None => print!("{text}"),
    }
    catalog.close().await;
    Ok(ExitCode::SUCCESS)
}
