use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use reservoir_query::QueryEngine;
use reservoir_query::output::{OutputFormat, write_batches};

use crate::home::{self, Home};

/// `reservoir sql "SELECT …"`
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Tables are named layer.unit.dataset; unit.dataset means the raw layer. Quote names that are not
plain identifiers: SELECT * FROM raw.\"民政\".\"村居\". Mixed-case column names need quotes too:
SELECT \"streetCode\", count(*) FROM raw.minzheng.villages GROUP BY 1.")]
pub struct Args {
    /// The query; `-` reads it from standard input.
    query: String,

    /// Output format: table, csv, json or ndjson.
    #[arg(long, short = 'f', default_value = "table")]
    format: OutputFormat,
}

pub async fn run(home_flag: Option<&Path>, args: Args) -> Result<ExitCode> {
    let home = Home::open(&home::resolve(home_flag)?).await?;
    let sql = if args.query == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the query from stdin")?;
        s
    } else {
        args.query
    };
    let engine = QueryEngine::new(&home.lake, &home.catalog).await?;
    let batches = engine.query(&sql).await?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    write_batches(&mut out, &batches, args.format)?;
    home.catalog.close().await;
    Ok(ExitCode::SUCCESS)
}
