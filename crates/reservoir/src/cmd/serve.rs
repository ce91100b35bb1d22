use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use reservoir_server::AppState;

use crate::home::{self, Home};

/// `reservoir serve`
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on (default: server.bind in reservoir.toml, 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<std::net::SocketAddr>,

    /// Address of the PostgreSQL protocol listener (default: postgres.bind, 127.0.0.1:5433).
    #[arg(long, value_name = "ADDR")]
    pub pg_bind: Option<std::net::SocketAddr>,
}

pub async fn run(home_flag: Option<&Path>, args: Args) -> Result<ExitCode> {
    let home = Home::open(&home::resolve(home_flag)?).await?;
    serve(&home, args.bind, args.pg_bind).await?;
    Ok(ExitCode::SUCCESS)
}

/// Serves the console and API of `home` until Ctrl-C or SIGTERM.
pub async fn serve(
    home: &Home,
    bind: Option<std::net::SocketAddr>,
    pg_bind: Option<std::net::SocketAddr>,
) -> Result<()> {
    let mut config = home.config.server_config()?;
    if let Some(b) = bind {
        config.bind = b;
    }
    config.sources_dir = Some(home.sources_dir());
    config.rules_dir = Some(home.root.join("rules"));
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .with_context(|| format!("listening on {}", config.bind))?;
    let addr = listener.local_addr()?;
    let state = AppState::new(home.lake.clone(), home.catalog.clone(), config)
        .with_platform_key(home.platform_key()?)
        .with_mask_key(home.mask_key()?)
        .with_audit_key(home.audit_key()?);
    println!("Reservoir console: http://{addr}/");
    println!(
        "REST API:          http://{addr}/api/v1/  (OpenAPI: http://{addr}/api/v1/openapi.json)"
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let postgres = match home.config.postgres_config(&home.root)? {
        Some(mut pg) => {
            if let Some(b) = pg_bind {
                pg.bind = b;
            }
            reservoir_server::pg::check_tls(&pg).context("postgres.tls_cert / postgres.tls_key")?;
            let listener = tokio::net::TcpListener::bind(pg.bind)
                .await
                .with_context(|| format!("listening on {} (postgres.bind)", pg.bind))?;
            let addr = listener.local_addr()?;
            let tls = if pg.tls.is_some() { ", TLS" } else { "" };
            println!(
                "PostgreSQL:        postgres://{addr}/raw  (psql \"host={} port={} user=<login>\"{tls})",
                addr.ip(),
                addr.port()
            );
            let mut stop = stop_rx.clone();
            let state = state.clone();
            Some(tokio::spawn(async move {
                let stopped = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                if let Err(e) = reservoir_server::pg::serve(state, pg, listener, stopped).await {
                    tracing::error!("PostgreSQL listener stopped: {e}");
                    eprintln!("error: the PostgreSQL listener stopped: {e}");
                }
            }))
        }
        None => None,
    };
    let scheduler = if home.config.scheduler.enabled {
        let tz: chrono_tz::Tz = home
            .config
            .scheduler
            .timezone
            .parse()
            .map_err(|e| anyhow::anyhow!("scheduler.timezone: {e}"))?;
        let s = crate::scheduler::Scheduler {
            sources_dir: home.sources_dir(),
            rules_dir: home.root.join("rules"),
            lake: home.lake.clone(),
            collector: std::sync::Arc::new(home.collector()?),
            catalog: home.catalog.clone(),
            tz,
            infer_rows: home.config.ingest.infer_rows,
            batch_rows: home.config.ingest.batch_rows,
            publisher: Some(state.clone()),
        };
        println!(
            "Scheduler:         sources in {} with a schedule ({tz})",
            home.sources_dir().display()
        );
        Some(tokio::spawn(s.run(stop_rx)))
    } else {
        None
    };
    println!("Press Ctrl-C to stop.");
    let served = reservoir_server::serve(state, listener, shutdown_signal()).await;
    let _ = stop_tx.send(true);
    if let Some(s) = scheduler {
        let _ = s.await;
    }
    if let Some(p) = postgres {
        let _ = p.await;
    }
    served.context("serving HTTP")?;
    println!("Stopped.");
    home.catalog.close().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
