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

    /// Run as this account: see only what its grants show, masked and filtered as they say
    /// (to check a grant before handing it out).
    #[arg(long = "as", value_name = "LOGIN")]
    as_user: Option<String>,
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
    let engine = match &args.as_user {
        None => QueryEngine::new(&home.lake, &home.catalog).await?,
        Some(login) => {
            let access = home.access();
            let user = access
                .user(login)
                .await?
                .with_context(|| format!("no account {login:?} (see `reservoir user list`)"))?;
            let visibility = access
                .visibility(&reservoir_access::Principal::of(&user))
                .await?;
            QueryEngine::for_visibility(
                &home.lake,
                &home.catalog,
                &visibility,
                Some(home.mask_key()?),
            )
            .await?
        }
    };
    let planned = match engine.sql(&sql).await {
        Ok(df) => df,
        Err(e) => {
            super::access::audit_query(&home, &sql, 0, args.as_user.as_deref(), false, &[]).await;
            return Err(e.into());
        }
    };
    let scanned: Vec<(String, Vec<String>)> =
        reservoir_query::scanned_tables(planned.logical_plan())
            .into_iter()
            .map(|(t, cols)| (t.to_string(), cols))
            .collect();
    let batches = match planned.collect().await {
        Ok(b) => b,
        Err(e) => {
            super::access::audit_query(&home, &sql, 0, args.as_user.as_deref(), false, &scanned)
                .await;
            return Err(reservoir_query::Error::from(e).into());
        }
    };
    let rows = batches.iter().map(|b| b.num_rows()).sum();
    super::access::audit_query(&home, &sql, rows, args.as_user.as_deref(), true, &scanned).await;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    write_batches(&mut out, &batches, args.format)?;
    home.catalog.close().await;
    Ok(ExitCode::SUCCESS)
}
