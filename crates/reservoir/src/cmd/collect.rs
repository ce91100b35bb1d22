use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use reservoir_catalog::{OpenTier, UpdateFrequency};
use reservoir_ingest::decode::encoding_for_label;
use reservoir_ingest::source::parse_byte_option;
use reservoir_ingest::{
    CollectRequest, Collector, ColumnSpec, ColumnType, Format, SourceDef, SourceOutcome,
    SourceRequest,
};
use reservoir_lake::WriteMode;

use crate::home::{self, Home};
use crate::print;
use crate::progress::Bar;

/// `reservoir collect --unit U --dataset D FILE...` or `reservoir collect SOURCE...`
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  reservoir collect --unit tongji --dataset gdp 分省年度数据.csv
  reservoir collect --unit minzheng --dataset villages --mode overwrite --column code=utf8 villages.xlsx
  reservoir collect sources/villages.toml      # a declarative source definition
  reservoir collect villages                   # the same, found in <home>/sources/
  reservoir collect --all                      # every definition in <home>/sources/
  reservoir collect hukou                      # a database source (kind = \"postgres\"), synced
  reservoir collect --all --watch 60           # every source, again every minute

A database source's password is read from the environment variable its definition names
(password_env or url_env); it is never written in the definition.")]
pub struct Args {
    /// Files to load (with --unit and --dataset), or source definitions (TOML files or names of
    /// files in <home>/sources/).
    inputs: Vec<PathBuf>,

    /// Collect every source definition in <home>/sources/.
    #[arg(long, conflicts_with_all = ["unit", "dataset"])]
    all: bool,

    /// Owning unit's id (registered in the catalog if new).
    #[arg(long, requires = "dataset")]
    unit: Option<String>,

    /// Dataset name within the unit.
    #[arg(long, requires = "unit")]
    dataset: Option<String>,

    /// append (default) adds rows; overwrite replaces the table.
    #[arg(long, value_parser = ["append", "overwrite"])]
    mode: Option<String>,

    /// csv, tsv, xlsx, xls, json or ndjson (default: from the file name).
    #[arg(long)]
    format: Option<Format>,

    /// Text encoding, e.g. utf-8, gbk, gb18030, utf-16le (default: detected).
    #[arg(long)]
    encoding: Option<String>,

    /// Load with --encoding even if the file does not look like it.
    #[arg(long, requires = "encoding")]
    force_encoding: bool,

    /// Field delimiter: a character, or tab/pipe/comma/semicolon (default: detected).
    #[arg(long)]
    delimiter: Option<String>,

    /// Lines before the header to skip (default: title lines are detected).
    #[arg(long)]
    skip_lines: Option<usize>,

    /// Lines at the end to skip (default: note/source lines are detected).
    #[arg(long)]
    footer_lines: Option<usize>,

    /// The file has no header row; columns are named column_1, column_2, …
    #[arg(long)]
    no_header: bool,

    /// Spreadsheet sheet, by name or 1-based number (default: the first).
    #[arg(long)]
    sheet: Option<String>,

    /// Spreadsheet row (1-based) holding the header (default: detected).
    #[arg(long)]
    header_row: Option<usize>,

    /// Declare a column's type: NAME=TYPE with TYPE one of utf8, int64, float64, boolean, date,
    /// timestamp. Repeatable.
    #[arg(long = "column", value_name = "NAME=TYPE")]
    columns: Vec<String>,

    /// Rows sampled to infer types (default from the configuration).
    #[arg(long)]
    infer_rows: Option<usize>,

    /// Display name of the dataset.
    #[arg(long)]
    title: Option<String>,

    /// Description of the dataset.
    #[arg(long)]
    description: Option<String>,

    /// Update frequency: realtime, hourly, daily, weekly, monthly, quarterly, yearly, irregular.
    #[arg(long)]
    update_frequency: Option<String>,

    /// Sensitivity level, 1 (public) to 4.
    #[arg(long)]
    sensitivity: Option<i64>,

    /// Open tier: open (无条件开放), conditional (有条件开放), closed (非开放).
    #[arg(long)]
    open_tier: Option<String>,

    /// Print the run summary as JSON.
    #[arg(long)]
    json: bool,

    /// Database sources: reload the whole table this once (after a type change that stopped
    /// an incremental or upsert sync); later runs go on by cursor from where the reload left off.
    #[arg(long)]
    full: bool,

    /// Keep going: collect again every SECONDS (drop folders, streams, databases) until Ctrl-C.
    #[arg(long, value_name = "SECONDS")]
    watch: Option<u64>,
}

pub async fn run(home_flag: Option<&Path>, args: Args) -> Result<ExitCode> {
    let home = Home::open(&home::resolve(home_flag)?).await?;
    let requests = build_requests(&home, &args)?;
    let collector = home.collector()?;
    let mut failed;
    loop {
        let (reports, round_failed) = collect_all(&collector, &home, &args, &requests).await?;
        failed = round_failed;
        if args.json {
            let value: serde_json::Value = match reports.as_slice() {
                [one] => serde_json::to_value(one)?,
                many => serde_json::to_value(many)?,
            };
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
        let Some(every) = args.watch else { break };
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(every.max(1))) => {}
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    home.catalog.close().await;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Runs every request once; returns the runs and whether any failed.
async fn collect_all(
    collector: &Collector,
    home: &Home,
    args: &Args,
    requests: &[SourceRequest],
) -> Result<(Vec<reservoir_ingest::RunReport>, bool)> {
    let mut reports = Vec::new();
    let mut failed = false;
    for mut req in requests.iter().cloned() {
        match &mut req {
            SourceRequest::Folder(f) => apply_overrides(&mut f.template, args, home)?,
            SourceRequest::Http(_) => req.set_sizes(
                args.infer_rows.unwrap_or(home.config.ingest.infer_rows),
                home.config.ingest.batch_rows,
            ),
            _ => {}
        }
        let label = match req.origin() {
            Some(origin) => format!("{} ({origin})", req.table()),
            None => req.table(),
        };
        match collector.run_source(req, Arc::new(Bar::default())).await {
            Ok(outcome) => {
                if !args.json {
                    match &outcome {
                        SourceOutcome::Run(r) => print::run_summary(r),
                        SourceOutcome::Folder(f) => print::folder_summary(f),
                    }
                }
                failed |= outcome.partly_failed();
                for mut report in outcome.runs().into_iter().cloned() {
                    check_after(home, args, &mut report).await;
                    reports.push(report);
                }
            }
            Err(e) => {
                failed = true;
                eprintln!("error: collecting {label}: {e}");
            }
        }
    }
    Ok((reports, failed))
}

/// Runs the quality rules of a dataset that just received rows, if it has any; the outcome is
/// printed (or noted in the JSON report). A failing check does not fail the collection.
async fn check_after(home: &Home, args: &Args, report: &mut reservoir_ingest::RunReport) {
    if report.counts.rows_loaded == 0 {
        return;
    }
    let mut parts = report.table.splitn(3, '.');
    let (Some(_), Some(unit), Some(dataset)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    // An open dataset published before follows its source.
    match super::publish::republish(home, unit, dataset).await {
        Ok(Some(p)) => report.notes.push(format!(
            "open snapshot published again: version {}, {} rows",
            p.version, p.row_count
        )),
        Ok(None) => {}
        Err(e) => {
            eprintln!(
                "warning: the open snapshot of {} was not refreshed: {e:#}",
                report.table
            );
            report
                .notes
                .push(format!("the open snapshot was not refreshed: {e:#}"));
        }
    }
    match super::check::after_collection(home, unit, dataset).await {
        None => {}
        Some(Ok((outcome, id))) => {
            let failed: u64 = outcome.results.iter().map(|r| r.failed).sum();
            report.notes.push(format!(
                "quality check run {id}: {failed} failing values over {} rules",
                outcome.results.len()
            ));
            if !args.json {
                super::check::summary(&outcome, id);
            }
        }
        Some(Err(e)) => {
            eprintln!(
                "warning: the quality rules of {} could not run: {e:#}",
                report.table
            );
            report
                .notes
                .push(format!("the quality rules could not run: {e:#}"));
        }
    }
}

fn build_requests(home: &Home, args: &Args) -> Result<Vec<SourceRequest>> {
    let mut requests = Vec::new();
    if let (Some(unit), Some(dataset)) = (&args.unit, &args.dataset) {
        if args.inputs.is_empty() {
            bail!("no files given to collect into raw.{unit}.{dataset}");
        }
        let mut req = CollectRequest {
            unit: unit.clone(),
            dataset: dataset.clone(),
            files: args.inputs.clone(),
            ..CollectRequest::default()
        };
        req.info.title = args.title.clone();
        req.info.description = args.description.clone();
        req.info.sensitivity = args.sensitivity;
        if let Some(f) = &args.update_frequency {
            req.info.update_frequency = Some(f.parse::<UpdateFrequency>()?);
        }
        if let Some(t) = &args.open_tier {
            req.info.open_tier = Some(t.parse::<OpenTier>()?);
        }
        requests.push(SourceRequest::Files(req));
    } else {
        let defs: Vec<PathBuf> = if args.all {
            let dir = home.sources_dir();
            let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
                .with_context(|| format!("listing {}", dir.display()))?
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                .collect();
            v.sort();
            if v.is_empty() {
                bail!("no source definitions (*.toml) in {}", dir.display());
            }
            v
        } else if args.inputs.is_empty() {
            bail!(
                "nothing to collect: give files with --unit and --dataset, source definitions, or --all"
            );
        } else {
            args.inputs
                .iter()
                .map(|i| locate_source(home, i))
                .collect::<Result<_>>()?
        };
        for path in defs {
            let def = SourceDef::load(&path)?;
            let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
            requests.push(def.to_source_request(&path, &base, &|var| std::env::var(var).ok())?);
        }
    }
    for req in &mut requests {
        match req {
            SourceRequest::Files(req) => {
                if args.full {
                    bail!("--full is for database sources; files are loaded whole anyway");
                }
                apply_overrides(req, args, home)?
            }
            SourceRequest::Folder(_) => {} // file options apply to each file; set at run time
            SourceRequest::Http(req) => {
                if file_options_given(args) && args.infer_rows.is_none() {
                    bail!(
                        "raw.{}.{} is an HTTP source: file options do not apply; its [http] \
                         section says what it fetches",
                        req.unit,
                        req.dataset
                    );
                }
            }
            SourceRequest::Nats(req) => {
                if file_options_given(args) {
                    bail!(
                        "raw.{}.{} is a NATS source: file options do not apply; its [nats] \
                         section says what it follows",
                        req.unit,
                        req.dataset
                    );
                }
            }
            SourceRequest::Database(req) => {
                if args.full {
                    req.source.mode = reservoir_ingest::db::SyncMode::Full;
                    req.source.detect_deletes = false;
                }
                if file_options_given(args) {
                    bail!(
                        "raw.{}.{} is a database source: file options (--mode, --format, \
                         --encoding, --column …) do not apply; its [database] section says how \
                         it syncs",
                        req.unit,
                        req.dataset
                    );
                }
            }
        }
    }
    Ok(requests)
}

fn file_options_given(args: &Args) -> bool {
    args.mode.is_some()
        || args.format.is_some()
        || args.encoding.is_some()
        || args.delimiter.is_some()
        || args.skip_lines.is_some()
        || args.footer_lines.is_some()
        || args.no_header
        || args.sheet.is_some()
        || args.header_row.is_some()
        || !args.columns.is_empty()
        || args.infer_rows.is_some()
}

/// A source given as a path, or as a name in the home's sources folder.
fn locate_source(home: &Home, input: &Path) -> Result<PathBuf> {
    if input.extension().is_some_and(|e| e != "toml") {
        bail!(
            "{} looks like a data file: to load it, say where it goes with --unit and --dataset",
            input.display()
        );
    }
    if input.is_file() {
        return Ok(input.to_path_buf());
    }
    let named = home.sources_dir().join(input).with_extension("toml");
    if named.exists() {
        return Ok(named);
    }
    bail!(
        "no source definition {} (looked for {} too)",
        input.display(),
        named.display()
    )
}

/// Command-line options win over definitions and configuration.
fn apply_overrides(req: &mut CollectRequest, args: &Args, home: &Home) -> Result<()> {
    req.infer_rows = args.infer_rows.unwrap_or(home.config.ingest.infer_rows);
    req.batch_rows = home.config.ingest.batch_rows;
    if let Some(m) = &args.mode {
        req.mode = if m == "overwrite" {
            WriteMode::Overwrite
        } else {
            WriteMode::Append
        };
    }
    if args.format.is_some() {
        req.format = args.format;
    }
    if let Some(label) = &args.encoding {
        req.csv.encoding = Some(encoding_for_label(label).with_context(|| {
            format!("unknown encoding {label:?}; use e.g. utf-8, gbk, gb18030, utf-16le")
        })?);
    }
    req.csv.force_encoding |= args.force_encoding;
    if let Some(d) = &args.delimiter {
        req.csv.delimiter = Some(parse_byte_option("delimiter", d)?);
    }
    if args.skip_lines.is_some() {
        req.csv.skip_lines = args.skip_lines;
    }
    if args.footer_lines.is_some() {
        req.csv.footer_lines = args.footer_lines;
    }
    if args.no_header {
        req.csv.header = false;
        req.excel.no_header = true;
    }
    if args.sheet.is_some() {
        req.excel.sheet = args.sheet.clone();
    }
    if args.header_row.is_some() {
        req.excel.header_row = args.header_row;
    }
    for c in &args.columns {
        let (name, ty) = c
            .split_once('=')
            .with_context(|| format!("--column {c:?}: expected NAME=TYPE"))?;
        let ty: ColumnType = ty
            .parse()
            .map_err(|e: String| anyhow::anyhow!("--column {c:?}: {e}"))?;
        match req.columns.iter_mut().find(|s| s.name == name) {
            Some(spec) => spec.ty = Some(ty),
            None => req.columns.push(ColumnSpec {
                name: name.to_string(),
                ty: Some(ty),
                ..ColumnSpec::default()
            }),
        }
    }
    Ok(())
}
