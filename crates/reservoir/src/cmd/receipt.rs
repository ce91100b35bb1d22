//! `reservoir receipt show|verify`: the signed delivery receipts of collection runs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use reservoir_ingest::receipt::{self, Receipt};

use crate::home::{self, Home};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Print the signed receipt of a run (JSON), e.g. to hand to the delivering unit.
    Show {
        /// The run's number (`reservoir catalog runs` lists them).
        run: i64,
        /// Write it to this file instead of standard output.
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Check a receipt: its signature against the platform's public key, and (with a home)
    /// that the lake still holds exactly the files it lists.
    Verify {
        /// The receipt file (JSON).
        file: PathBuf,
        /// The trusted public key (hex); default: this home's platform key.
        #[arg(long)]
        public_key: Option<String>,
        /// Only check the signature; do not re-hash the files in the lake.
        #[arg(long)]
        signature_only: bool,
    },
}

pub async fn run(home_flag: Option<&Path>, cmd: Command) -> Result<ExitCode> {
    match cmd {
        Command::Show { run, out } => {
            let home = Home::open(&home::resolve(home_flag)?).await?;
            if home.catalog.run(run).await?.is_none() {
                bail!("there is no run {run}; `reservoir catalog runs` lists them");
            }
            let Some(text) = home.catalog.receipt(run).await? else {
                bail!(
                    "run {run} has no receipt (runs that commit no rows, and runs before receipts \
                     existed, have none)"
                );
            };
            match out {
                Some(path) => {
                    std::fs::write(&path, format!("{text}\n"))
                        .with_context(|| format!("writing {}", path.display()))?;
                    println!("receipt of run {run} written to {}", path.display());
                }
                None => println!("{text}"),
            }
            home.catalog.close().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify {
            file,
            public_key,
            signature_only,
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let receipt: Receipt = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a Reservoir receipt", file.display()))?;
            let home = if public_key.is_none() || !signature_only {
                match Home::open(&home::resolve(home_flag)?).await {
                    Ok(h) => Some(h),
                    Err(e) if public_key.is_some() => {
                        eprintln!("note: no home ({e:#}); checking the signature only");
                        None
                    }
                    Err(e) => {
                        return Err(e.context(
                            "the trusted key comes from a home: run inside one (--home), or give \
                             --public-key HEX --signature-only",
                        ));
                    }
                }
            } else {
                None
            };
            let trusted = match (&public_key, &home) {
                (Some(k), _) => k.clone(),
                (None, Some(h)) => h.platform_key()?.public_key_hex(),
                (None, None) => bail!("give --public-key, or a home whose key to trust"),
            };
            if let Err(e) = receipt::verify(&receipt, &trusted) {
                eprintln!("✘ {}: {e}", file.display());
                return Ok(ExitCode::FAILURE);
            }
            let b = &receipt.body;
            println!(
                "✔ signature valid: run {} into {}, read {} = loaded {} + quarantined {}{}, {} files, data sha256 {}",
                b.run_id,
                b.table,
                b.rows.read,
                b.rows.loaded,
                b.rows.quarantined,
                if b.rows.deleted > 0 {
                    format!(", deleted {}", b.rows.deleted)
                } else {
                    String::new()
                },
                b.files.len(),
                b.data_sha256
            );
            if let (false, Some(home)) = (signature_only, &home) {
                let problems = receipt::check_against_lake(&home.lake, &receipt).await?;
                if problems.is_empty() {
                    println!(
                        "✔ every delivered file is unchanged in the lake (later commits may have \
                         replaced some of them in the current table version)"
                    );
                } else {
                    for p in &problems {
                        eprintln!("✘ {p}");
                    }
                    return Ok(ExitCode::FAILURE);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
