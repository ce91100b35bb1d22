//! `reservoir`: a district's public data platform in one binary.
//!
//! The binary is thin: it parses the command line, opens the home (configuration, lake,
//! catalog) and hands work to the library crates.

mod cmd;
mod config;
mod home;
mod print;
mod progress;
mod scheduler;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc rather than the system allocator: collection allocates on the reading thread and
/// frees on the conversion threads, where glibc's arenas contend on a lock.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Reservoir — collect, catalog, inspect, govern and share a district's public data.
#[derive(Debug, Parser)]
#[command(name = "reservoir", version, about, long_about = None)]
struct Cli {
    /// Home folder (default: $RESERVOIR_HOME, then the current folder).
    #[arg(long, global = true, value_name = "DIR")]
    home: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a home: reservoir.toml, lake/, catalog.db, sources/.
    Init(cmd::init::Args),
    /// Build a demo home from the real public data shipped with Reservoir and collect it all.
    Demo(cmd::demo::Args),
    /// Collect files (or declarative sources) into the lake's raw layer.
    Collect(Box<cmd::collect::Args>),
    /// Run a read-only SQL query over the lake.
    Sql(cmd::sql::Args),
    /// Serve the web console and the REST API.
    Serve(cmd::serve::Args),
    /// Look at the catalog: units, datasets, runs, profiles.
    #[command(subcommand)]
    Catalog(cmd::catalog::Command),
    /// Generate a synthetic district (residents, firms) with its ground truth of defects.
    Synth(cmd::synth::Args),
    /// Run datasets' quality rules (rules/<unit>/<dataset>.yaml) and record the results.
    Check(cmd::check::Args),
    /// A unit's monthly operation report (运营报告): HTML, JSON or CSV.
    Report(cmd::report::Args),
    /// Signed delivery receipts: show a run's, verify one.
    #[command(subcommand)]
    Receipt(cmd::receipt::Command),
    /// Accounts: add, list, change roles, disable, reset passwords.
    #[command(subcommand)]
    User(cmd::access::UserCommand),
    /// API tokens: create (shown once), list, revoke.
    #[command(subcommand)]
    Token(cmd::access::TokenCommand),
    /// Grants of dataset access: create, list, revoke.
    #[command(subcommand)]
    Grant(cmd::access::GrantCommand),
    /// Data requests: list, approve (provisions the grant), reject.
    #[command(subcommand)]
    Request(cmd::access::RequestCommand),
    /// The hash-chained audit log: verify it, list and export entries.
    #[command(subcommand)]
    Audit(cmd::access::AuditCommand),
    /// Rows and bytes served per principal, dataset and day.
    Usage(cmd::access::UsageArgs),
    /// Publish the open snapshots of datasets marked 无条件开放 (served at /open and /api/3).
    Publish(cmd::publish::Args),
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RESERVOIR_LOG")
        // Our warnings by default; the Delta engine's own chatter (statistics it cannot parse,
        // merge metrics) only on request.
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(
                "warn,buoyant_kernel=error,delta_kernel=error,deltalake_core=error,deltalake=error",
            )
        });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    // `reservoir catalog runs | head`: when the reader goes away, stop quietly like other
    // command-line tools instead of printing a panic. (Whatever a collection had committed
    // stays; its run is marked interrupted by the next one.)
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.contains("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default_hook(info);
    }));

    let cli = Cli::parse();
    // Planning and the catalog queries recurse over SQL trees: workers get room for the
    // deepest statement `query::guard` lets through (the stack is reserved, used as touched).
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(reservoir_query::executor::THREAD_STACK)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let home = cli.home.as_deref();
        match cli.command {
            Command::Init(args) => cmd::init::run(home, args).await,
            Command::Demo(args) => cmd::demo::run(home, args).await,
            Command::Collect(args) => cmd::collect::run(home, *args).await,
            Command::Sql(args) => cmd::sql::run(home, args).await,
            Command::Serve(args) => cmd::serve::run(home, args).await,
            Command::Catalog(c) => cmd::catalog::run(home, c).await,
            Command::Receipt(c) => cmd::receipt::run(home, c).await,
            Command::Check(args) => cmd::check::run(home, args).await,
            Command::Report(args) => cmd::report::run(home, args).await,
            Command::Synth(args) => cmd::synth::run(home, args).await,
            Command::User(c) => cmd::access::user(home, c).await,
            Command::Token(c) => cmd::access::token(home, c).await,
            Command::Grant(c) => cmd::access::grant(home, c).await,
            Command::Request(c) => cmd::access::request(home, c).await,
            Command::Audit(c) => cmd::access::audit(home, c).await,
            Command::Usage(args) => cmd::access::usage(home, args).await,
            Command::Publish(args) => cmd::publish::run(home, args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => ExitCode::from(141),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Whether an error is the reader of our output going away (`… | head`).
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            // Arrow's CSV writer keeps only the text of the I/O error.
            || c.to_string().contains("Broken pipe (os error 32)")
    })
}
