use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;

use crate::home::{self, Home};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Folder to create (default: the home).
    dir: Option<PathBuf>,
}

pub async fn run(home_flag: Option<&Path>, args: Args) -> Result<ExitCode> {
    let root = match args.dir {
        Some(d) => d,
        None => home::resolve(home_flag)?,
    };
    let (home, created) = Home::init(&root).await?;
    if created {
        println!("Initialized a Reservoir home in {}", home.root.display());
    } else {
        println!(
            "{} is already a Reservoir home; nothing changed",
            home.root.display()
        );
    }
    println!(
        "  config   {}",
        home.root.join(crate::config::CONFIG_FILE).display()
    );
    println!("  lake     {}", home.config.lake_path(&home.root).display());
    println!("  catalog  {}", home.config.catalog_url(&home.root));
    println!("  sources  {}", home.sources_dir().display());
    home.mask_key()?;
    home.audit_key()?;
    if let Some((login, password)) = home.ensure_operator().await? {
        print_first_login(&home.root, &login, &password);
    }
    let key = home.platform_key()?;
    println!(
        "  receipts signed with platform key {} (public; {} is private)",
        key.public_key_hex(),
        home.root.join("keys/platform.key").display()
    );
    home.catalog.close().await;
    Ok(ExitCode::SUCCESS)
}

/// The first operator's login, shown once.
pub fn print_first_login(home: &Path, login: &str, password: &str) {
    println!("  first operator account (shown once; change the password at the first login,");
    println!("  in the console, before psql or the API take it):");
    println!("           login {login}   password {password}");
    println!(
        "           lost it? `reservoir --home {} user reset-password {login}` on this machine",
        home.display()
    );
}
