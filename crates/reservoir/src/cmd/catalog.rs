use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use reservoir_catalog::directory::{self, Entry, ImportOptions, ImportReport};
use reservoir_catalog::{Catalog, Dataset, DatasetFilter, NewUnit};
use sha2::Digest;

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
        /// Only datasets of this topic (主题).
        #[arg(long)]
        topic: Option<String>,
        /// Search: the text is segmented into words (Chinese too) and matched against names,
        /// titles, descriptions, tags, topics and fields; the best matches come first.
        #[arg(long)]
        search: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Import a catalog spreadsheet (a unit's 资源目录, or an open-data portal's catalog), CSV
    /// or XLSX: departments become units, entries datasets of the `catalog` layer (or update
    /// the dataset with the same identifier). Columns are matched by meaning; what did not map
    /// is reported.
    Import {
        file: PathBuf,
        /// Sheet name or 1-based number of a workbook (the first by default).
        #[arg(long)]
        sheet: Option<String>,
        /// The providing department, for a sheet without such a column.
        #[arg(long)]
        unit: Option<String>,
        /// Place new units under this unit (created if missing, named by --parent-name).
        #[arg(long)]
        parent: Option<String>,
        #[arg(long, requires = "parent")]
        parent_name: Option<String>,
        /// Read and report, write nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Personal data: scan a sample of a dataset for resident IDs, credit codes, phones, bank
    /// cards, names, addresses and mail addresses, and record the suggestions; or record a
    /// steward's decisions (--confirm, --reject). Confirmed kinds raise the dataset's
    /// sensitivity to the level they imply.
    Pii {
        /// layer.unit.name, or unit.name for the raw layer.
        dataset: String,
        /// Rows to sample.
        #[arg(long, default_value_t = reservoir_quality::pii::DEFAULT_SAMPLE)]
        sample: usize,
        /// Confirm a field: FIELD (its suggested kind) or FIELD=KIND (resident_id, credit_code,
        /// mobile_phone, bank_card, person_name, address, email).
        #[arg(long, value_name = "FIELD[=KIND]")]
        confirm: Vec<String>,
        /// Say a field holds no personal data; rescans leave it so.
        #[arg(long, value_name = "FIELD")]
        reject: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Code tables (代码表): list them, show one's values, or import one from a CSV/XLSX with
    /// columns code and label (代码, 名称; optional valid_from, valid_to years). Built in:
    /// gb2260 (divisions, retired codes included) and gb2261_1 (sex).
    Codes {
        /// The table to show (or to import into).
        id: Option<String>,
        /// Import the table's values from this file (replacing them).
        #[arg(long, requires = "id")]
        import: Option<PathBuf>,
        /// The table's name, for an import.
        #[arg(long, requires = "import")]
        name: Option<String>,
        /// The standard it follows, for an import.
        #[arg(long, requires = "import")]
        standard: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Bind a dataset's field to a code table (a `code_table` rule without `table:` then checks
    /// the field against it; without TABLE the field is unbound), or to a data element with
    /// --element (checked by an `element` rule).
    Bind {
        /// layer.unit.name, or unit.name for the raw layer.
        dataset: String,
        field: String,
        table: Option<String>,
        /// Bind the field to this data element instead.
        #[arg(long, conflicts_with_all = ["table", "no_element"])]
        element: Option<String>,
        /// Unbind the field from its data element.
        #[arg(long)]
        no_element: bool,
    },
    /// Data-element standards (数据元): list them, or import them from a CSV/XLSX with columns
    /// 标识符, 中文名称, 数据类型 and optionally 英文名称, 长度, 表示格式 (n8, an..18, c..50, or
    /// a regular expression), 代码表, 定义, 标准.
    Elements {
        #[arg(long)]
        import: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// The business glossary (业务术语): list or find terms, or define one with --define.
    Glossary {
        /// A term to find (or, with --define, to define).
        term: Option<String>,
        #[arg(long, requires = "term")]
        define: Option<String>,
        /// Another name for the term (repeatable).
        #[arg(long, requires = "define")]
        synonym: Vec<String>,
        /// A data element that carries it (repeatable).
        #[arg(long, requires = "define")]
        element: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Lineage: the sources that loaded a dataset (or every dataset), and the quarantine and
    /// quality tables its rejected and failing rows went to.
    Lineage {
        /// layer.unit.name, or unit.name for the raw layer (default: the whole catalog).
        dataset: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Export the catalog: CSV (UTF-8 with BOM, opens in Excel), XLSX, or DCAT 3 JSON-LD. The
    /// spreadsheet columns are the ones `catalog import` reads back.
    Export {
        /// Output file; its extension picks the format: .csv, .xlsx, or DCAT as .jsonld or .ttl.
        #[arg(long, short)]
        out: PathBuf,
        /// Only this unit's datasets.
        #[arg(long)]
        unit: Option<String>,
        /// Only this layer's datasets.
        #[arg(long)]
        layer: Option<String>,
        /// Base URL of the DCAT identifiers.
        #[arg(long, default_value = "http://localhost:8080")]
        base_url: String,
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
            topic,
            search,
            json,
        } => {
            if let Some(u) = &unit
                && catalog.unit(u).await?.is_none()
            {
                bail!("unit {u:?} is not in the catalog; `reservoir catalog units` lists them");
            }
            let filter = DatasetFilter {
                unit_id: unit,
                layer,
                topic,
                search,
                ..DatasetFilter::default()
            };
            let datasets = catalog.datasets(&filter).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&datasets)?);
            } else {
                for d in datasets {
                    let rows = match d.table_version {
                        Some(_) => format!("{} rows", d.row_count),
                        None => "not collected".to_string(),
                    };
                    println!("{:<40} {:>14}  {}", d.qualified_name(), rows, d.title);
                }
            }
        }
        Command::Show { dataset, json } => {
            let d = find_dataset(catalog, &dataset).await?;
            let fields = catalog.fields(d.id).await?;
            let profile = catalog.latest_profiles(d.id).await?;
            let runs = catalog.runs(Some(d.id), 10).await?;
            let checks = catalog.check_runs(d.id, 5).await?;
            let pii = catalog.pii(d.id).await?;
            let elements = catalog.field_elements(d.id).await?;
            let code_tables = catalog.field_code_tables(d.id).await?;
            if json {
                let v = serde_json::json!({
                    "dataset": d,
                    "fields": fields,
                    "pii": pii,
                    "elements": elements.iter().map(|(f, e)| serde_json::json!({"field": f, "element": e})).collect::<Vec<_>>(),
                    "code_tables": code_tables.iter().map(|(f, t)| serde_json::json!({"field": f, "table": t})).collect::<Vec<_>>(),
                    "profile": profile.as_ref().map(|(run, p)| serde_json::json!({"run_id": run, "columns": p})),
                    "runs": runs,
                    "checks": checks,
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print::dataset(&d, &fields, profile.as_ref(), &runs);
                print::checks(&checks);
                if !pii.is_empty() {
                    print_pii(&pii);
                }
                for (f, e) in &elements {
                    println!(
                        "  {f}: data element {} ({}, {})",
                        e.id,
                        e.name,
                        e.data_type.label_zh()
                    );
                }
                for (f, t) in &code_tables {
                    println!("  {f}: code table {t}");
                }
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
        Command::Import {
            file,
            sheet,
            unit,
            parent,
            parent_name,
            dry_run,
            json,
        } => {
            let sheet = reservoir_ingest::sheet::read_sheet(&file, sheet.as_deref())?;
            let parsed = directory::parse(&sheet, unit.as_deref())?;
            let report = if dry_run {
                parsed.report
            } else {
                if let Some(p) = &parent
                    && catalog.unit(p).await?.is_none()
                {
                    catalog
                        .upsert_unit(&NewUnit {
                            id: p.clone(),
                            name: parent_name.clone().unwrap_or_else(|| p.clone()),
                            ..NewUnit::default()
                        })
                        .await?;
                }
                let bytes =
                    std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
                let options = ImportOptions {
                    parent,
                    sha256: hex::encode(sha2::Sha256::digest(&bytes)),
                };
                catalog.import_directory(&parsed, &options).await?
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_import(&report, dry_run);
            }
        }
        Command::Export {
            out,
            unit,
            layer,
            base_url,
        } => {
            let filter = DatasetFilter {
                unit_id: unit,
                layer,
                ..DatasetFilter::default()
            };
            let datasets = catalog.datasets(&filter).await?;
            let units = catalog.units().await?;
            let ext = out
                .extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase)
                .unwrap_or_default();
            match ext.as_str() {
                "jsonld" | "json" | "ttl" => {
                    let base = url::Url::parse(&base_url)
                        .ok()
                        .filter(|u| matches!(u.scheme(), "http" | "https"))
                        .ok_or_else(|| {
                            anyhow::anyhow!(
                                "--base-url {base_url:?}: expected an http(s) URL such as https://data.example.gov.cn"
                            )
                        })?;
                    let base_url = base.as_str().trim_end_matches('/').to_string();
                    use reservoir_catalog::dcat;
                    let publisher = home.config.open.publisher();
                    let info = dcat::CatalogInfo {
                        title: "数据资源目录",
                        description: "政务数据资源目录：各单位的数据集、字段、更新频率与开放属性",
                        base_url: &base_url,
                        homepage: format!("{base_url}/"),
                        license: &home.config.open.license,
                        spatial: (!home.config.open.region_code.is_empty()).then_some((
                            home.config.open.region_code.as_str(),
                            home.config.open.region_name.as_str(),
                        )),
                        publisher: &publisher,
                    };
                    let triples = dcat::catalog_triples(&info, &units, &datasets, |d| {
                        dcat::declared_access(&base_url, d)
                    });
                    let text = if ext == "ttl" {
                        dcat::to_turtle(&triples)?
                    } else {
                        dcat::to_jsonld(&triples)?
                    };
                    std::fs::write(&out, text)
                        .with_context(|| format!("writing {}", out.display()))?;
                }
                "csv" | "xlsx" => {
                    let mut rows = Vec::with_capacity(datasets.len());
                    for d in &datasets {
                        let unit_name = units
                            .iter()
                            .find(|u| u.id == d.unit_id)
                            .map(|u| u.name.clone())
                            .unwrap_or_else(|| d.unit_id.clone());
                        let fields = catalog.fields(d.id).await?;
                        let mut row =
                            directory::export_row(&Entry::from_dataset(d, &unit_name, &fields));
                        row.push(d.qualified_name());
                        row.push(if d.table_version.is_some() {
                            d.row_count.to_string()
                        } else {
                            String::new()
                        });
                        rows.push(row);
                    }
                    let mut header = directory::export_header();
                    header.push("数据集".into());
                    header.push("已归集行数".into());
                    if ext == "csv" {
                        write_csv(&out, &header, &rows)?;
                    } else {
                        write_xlsx(&out, &header, &rows)?;
                    }
                }
                _ => bail!(
                    "{}: the extension picks the format; expected .csv, .xlsx, .jsonld, .json or .ttl",
                    out.display()
                ),
            }
            println!("exported {} datasets to {}", datasets.len(), out.display());
        }
        Command::Pii {
            dataset,
            sample,
            confirm,
            reject,
            json,
        } => {
            let d = find_dataset(catalog, &dataset).await?;
            if sample == 0 {
                bail!("--sample 0: a scan needs at least one row");
            }
            if let Some(f) = confirm
                .iter()
                .map(|c| c.split_once('=').map_or(c.as_str(), |(f, _)| f))
                .find(|f| reject.iter().any(|r| r == f))
            {
                bail!("field {f:?} is both confirmed and rejected; decide once");
            }
            if confirm.is_empty() && reject.is_empty() {
                if d.table_version.is_none() {
                    bail!(
                        "{} is cataloged but not collected: there are no values to scan",
                        d.qualified_name()
                    );
                }
                let table = reservoir_lake::TableRef::new(
                    d.layer.parse::<reservoir_lake::Layer>()?,
                    &d.unit_id,
                    &d.name,
                );
                let scan = reservoir_quality::pii::scan_table(&home.lake, &table, sample).await?;
                catalog.record_pii_scan(d.id, &scan.marks()).await?;
                if json {
                    let v = serde_json::json!({
                        "scan": scan,
                        "marks": catalog.pii(d.id).await?,
                        "sensitivity": d.sensitivity,
                    });
                    println!("{}", serde_json::to_string_pretty(&v)?);
                } else {
                    println!("{}: {} rows sampled", d.qualified_name(), scan.rows_sampled);
                    for f in &scan.fields {
                        let Some((kind, share)) = f.best else {
                            continue;
                        };
                        println!(
                            "  {:<24} {:<14} {:>5.1}% of {} values{}",
                            f.field,
                            kind.as_str(),
                            share * 100.0,
                            f.sampled,
                            if f.suggested { "  → suggested" } else { "" }
                        );
                    }
                    print_pii(&catalog.pii(d.id).await?);
                    if scan.suggested_level > d.sensitivity {
                        println!(
                            "  the suggested kinds imply sensitivity {} (the dataset has {}); confirm them with --confirm FIELD",
                            scan.suggested_level, d.sensitivity
                        );
                    }
                }
            } else {
                for c in &confirm {
                    let (field, kind) = match c.split_once('=') {
                        Some((f, k)) => (f, Some(k.parse::<reservoir_catalog::PiiKind>()?)),
                        None => (c.as_str(), None),
                    };
                    catalog
                        .decide_pii(d.id, field, kind, reservoir_catalog::PiiStatus::Confirmed)
                        .await?;
                }
                for field in &reject {
                    catalog
                        .decide_pii(d.id, field, None, reservoir_catalog::PiiStatus::Rejected)
                        .await?;
                }
                let marks = catalog.pii(d.id).await?;
                let level = marks
                    .iter()
                    .filter(|m| m.status == reservoir_catalog::PiiStatus::Confirmed)
                    .map(|m| m.kind.level())
                    .max()
                    .unwrap_or(1);
                let mut sensitivity = d.sensitivity;
                if level > d.sensitivity {
                    catalog
                        .upsert_dataset(&reservoir_catalog::DatasetSpec {
                            layer: d.layer.clone(),
                            unit_id: d.unit_id.clone(),
                            name: d.name.clone(),
                            title: d.title.clone(),
                            description: d.description.clone(),
                            system_id: d.system_id.clone(),
                            location: d.location.clone(),
                            update_frequency: d.update_frequency,
                            sensitivity: level,
                            open_tier: d.open_tier,
                        })
                        .await?;
                    sensitivity = level;
                }
                if json {
                    let v = serde_json::json!({"marks": marks, "sensitivity": sensitivity});
                    println!("{}", serde_json::to_string_pretty(&v)?);
                } else {
                    print_pii(&marks);
                    if sensitivity != d.sensitivity {
                        println!(
                            "  sensitivity raised from {} to {sensitivity}",
                            d.sensitivity
                        );
                    }
                }
            }
        }
        Command::Codes {
            id,
            import,
            name,
            standard,
            json,
        } => match (id, import) {
            (Some(id), Some(file)) => {
                let values = read_code_values(&file)?;
                let existing = catalog.code_tables().await?;
                if existing.iter().any(|t| t.table.id == id && t.table.builtin) {
                    bail!("{id} is a built-in code table; import into a table of your own");
                }
                let before = existing.iter().find(|t| t.table.id == id);
                let table = reservoir_catalog::codes::CodeTable {
                    name: name
                        .or_else(|| before.map(|t| t.table.name.clone()))
                        .unwrap_or_else(|| id.clone()),
                    id: id.clone(),
                    standard: standard
                        .or_else(|| before.map(|t| t.table.standard.clone()))
                        .unwrap_or_default(),
                    description: String::new(),
                    builtin: false,
                };
                catalog.put_code_table(&table, &values).await?;
                println!(
                    "code table {id}: {} values from {}",
                    values.len(),
                    file.display()
                );
            }
            (Some(id), None) => {
                let values = catalog.code_values(&id).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&values)?);
                } else {
                    for v in values {
                        let years = match (v.valid_from, v.valid_to) {
                            (None, None) => String::new(),
                            (from, to) => format!(
                                "  ({}–{})",
                                from.map(|y| y.to_string()).unwrap_or_default(),
                                to.map(|y| y.to_string()).unwrap_or_default()
                            ),
                        };
                        println!("{:<12} {}{years}", v.code, v.label);
                    }
                }
            }
            (None, _) => {
                let tables = catalog.code_tables().await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&tables)?);
                } else {
                    for t in tables {
                        println!(
                            "{:<16} {:>6} values  {}{}",
                            t.table.id,
                            t.values,
                            t.table.name,
                            if t.table.standard.is_empty() {
                                String::new()
                            } else {
                                format!(" ({})", t.table.standard)
                            }
                        );
                    }
                }
            }
        },
        Command::Bind {
            dataset,
            field,
            table,
            element,
            no_element,
        } => {
            let d = find_dataset(catalog, &dataset).await?;
            let name = d.qualified_name();
            if let Some(e) = element {
                catalog.bind_element(d.id, &field, Some(&e)).await?;
                println!("{name}.{field} is bound to the data element {e}");
            } else if no_element {
                catalog.bind_element(d.id, &field, None).await?;
                println!("{name}.{field} is bound to no data element");
            } else {
                catalog
                    .bind_code_table(d.id, &field, table.as_deref())
                    .await?;
                match table {
                    Some(t) => println!("{name}.{field} is bound to the code table {t}"),
                    None => println!("{name}.{field} is bound to no code table"),
                }
            }
        }
        Command::Elements { import, json } => {
            if let Some(file) = import {
                let elements = read_elements(&file)?;
                for (line, e) in &elements {
                    catalog.put_element(e).await.with_context(|| {
                        format!("{} line {line}: data element {:?}", file.display(), e.id)
                    })?;
                }
                println!("{} data elements from {}", elements.len(), file.display());
            } else {
                let elements = catalog.elements().await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&elements)?);
                } else {
                    for e in elements {
                        println!(
                            "{:<14} {:<16} {:<6} {:>5} {}{}",
                            e.id,
                            e.name,
                            e.data_type.label_zh(),
                            e.max_length.map(|n| n.to_string()).unwrap_or_default(),
                            e.format,
                            e.code_table
                                .map(|t| format!(" 代码表 {t}"))
                                .unwrap_or_default()
                        );
                    }
                }
            }
        }
        Command::Glossary {
            term,
            define,
            synonym,
            element,
            json,
        } => {
            if let (Some(term), Some(definition)) = (&term, define) {
                // Redefining a term keeps its synonyms and elements unless new ones are given.
                let before = catalog
                    .glossary(None)
                    .await?
                    .into_iter()
                    .find(|t| t.term == *term);
                let keep = |given: Vec<String>, old: Option<Vec<String>>| {
                    if given.is_empty() {
                        old.unwrap_or_default()
                    } else {
                        given
                    }
                };
                catalog
                    .put_term(&reservoir_catalog::standards::Term {
                        term: term.clone(),
                        definition,
                        synonyms: keep(synonym, before.as_ref().map(|t| t.synonyms.clone())),
                        elements: keep(element, before.map(|t| t.elements)),
                    })
                    .await?;
                println!("defined {term}");
            } else {
                let terms = catalog.glossary(term.as_deref()).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&terms)?);
                } else if terms.is_empty() {
                    println!("no glossary term found");
                } else {
                    for t in terms {
                        println!("{}: {}", t.term, t.definition);
                        if !t.synonyms.is_empty() {
                            println!("    also: {}", t.synonyms.join(", "));
                        }
                        if !t.elements.is_empty() {
                            println!("    data elements: {}", t.elements.join(", "));
                        }
                    }
                }
            }
        }
        Command::Lineage { dataset, json } => {
            let d = match dataset {
                Some(name) => Some(find_dataset(catalog, &name).await?),
                None => None,
            };
            let lineage = catalog.lineage(d.as_ref()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&lineage)?);
            } else if lineage.edges.is_empty() {
                println!("no lineage recorded yet: nothing was collected");
            } else {
                for e in &lineage.edges {
                    println!(
                        "{} ──{}──► {}   {} runs, {} rows, last {}",
                        e.from.strip_prefix("source:").unwrap_or(&e.from),
                        e.kind,
                        e.to,
                        e.runs,
                        e.rows,
                        e.last_at.as_deref().unwrap_or("—")
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

fn print_import(r: &ImportReport, dry_run: bool) {
    println!(
        "{} {}: {} rows read = {} entries + {} header/label rows + {} blank + {} rejected",
        if dry_run {
            "read (dry run)"
        } else {
            "imported"
        },
        r.source,
        r.rows_read,
        r.entries,
        r.header_rows,
        r.blank_rows,
        r.rejected.len()
    );
    if dry_run {
        println!(
            "  {} datasets ({} repeated entries)",
            r.datasets, r.repeated
        );
    } else {
        println!(
            "  {} datasets ({} repeated entries): {} created, {} updated; {} units created",
            r.datasets,
            r.repeated,
            r.created,
            r.updated,
            r.units_created.len()
        );
    }
    let mapped: Vec<String> = r
        .columns
        .iter()
        .filter_map(|c| c.target.map(|t| format!("{} → {}", c.column, t.as_str())))
        .collect();
    println!("  columns read: {}", mapped.join(", "));
    // Not imported, grouped by why.
    let mut why: Vec<(&str, Vec<&str>)> = Vec::new();
    for c in r.unmapped() {
        let name = if c.column.is_empty() {
            "(no header)"
        } else {
            c.column.as_str()
        };
        match why.iter_mut().find(|(note, _)| *note == c.note) {
            Some((_, cols)) => cols.push(name),
            None => why.push((c.note.as_str(), vec![name])),
        }
    }
    for (note, cols) in why {
        println!("  columns not imported ({note}): {}", cols.join(", "));
    }
    for w in &r.warnings {
        println!(
            "  warning: line {} column {:?} value {:?}: {}",
            w.line, w.column, w.value, w.message
        );
    }
    if r.warnings_total > r.warnings.len() as u64 {
        println!(
            "  … {} more warnings (only the first {} are kept, in --json too)",
            r.warnings_total - r.warnings.len() as u64,
            r.warnings.len()
        );
    }
    for x in &r.rejected {
        println!("  rejected: line {}: {}", x.line, x.reason);
    }
}

/// Reads a code table's values: a `code` and a `label` column (代码/编码/code, 名称/含义/label),
/// optionally `valid_from` and `valid_to` years.
fn read_code_values(path: &Path) -> Result<Vec<reservoir_catalog::codes::CodeValue>> {
    let sheet = reservoir_ingest::sheet::read_sheet(path, None)?;
    let mut rows = sheet
        .rows
        .iter()
        .filter(|r| r.cells.iter().any(|c| !c.trim().is_empty()));
    let Some(header) = rows.next() else {
        bail!("{}: the file has no rows", path.display());
    };
    let find = |names: &[&str]| {
        header.cells.iter().position(|h| {
            let h = directory::header_key(h);
            names.iter().any(|n| directory::header_key(n) == h)
        })
    };
    let code = find(&["代码", "编码", "代码值", "code", "value"]);
    let label = find(&[
        "名称",
        "含义",
        "说明",
        "代码名称",
        "label",
        "name",
        "meaning",
    ]);
    let (Some(code), Some(label)) = (code, label) else {
        bail!(
            "{} line {}: expected a code column (代码, 编码 or code) and a label column (名称, 含义 or label); the header read was: {}",
            path.display(),
            header.line,
            header.cells.join(", ")
        );
    };
    let from = find(&["启用年份", "valid_from", "start_year"]);
    let to = find(&["停用年份", "valid_to", "end_year"]);
    let year = |row: &directory::SheetRow, col: Option<usize>| -> Result<Option<i32>> {
        let Some(c) = col else { return Ok(None) };
        let Some(text) = row.cells.get(c).map(|t| t.trim()) else {
            return Ok(None);
        };
        if text.is_empty() {
            return Ok(None);
        }
        text.parse().map(Some).map_err(|_| {
            anyhow::anyhow!(
                "{} line {} column {:?}: {text:?} is not a year",
                path.display(),
                row.line,
                header.cells[c]
            )
        })
    };
    let mut values = Vec::new();
    for row in rows {
        let cell = |c: usize| row.cells.get(c).map(|t| t.trim()).unwrap_or_default();
        if cell(code).is_empty() {
            bail!(
                "{} line {}: column {:?} (the code) is empty",
                path.display(),
                row.line,
                header.cells[code]
            );
        }
        values.push(reservoir_catalog::codes::CodeValue {
            code: cell(code).to_string(),
            label: cell(label).to_string(),
            valid_from: year(row, from)?,
            valid_to: year(row, to)?,
        });
    }
    if values.is_empty() {
        bail!("{}: the file has a header but no codes", path.display());
    }
    Ok(values)
}

/// Reads data elements from a sheet (see `catalog elements`).
fn read_elements(path: &Path) -> Result<Vec<(u64, reservoir_catalog::standards::DataElement)>> {
    use reservoir_catalog::standards::{DataElement, ElementType, representation};
    let sheet = reservoir_ingest::sheet::read_sheet(path, None)?;
    let mut rows = sheet
        .rows
        .iter()
        .filter(|r| r.cells.iter().any(|c| !c.trim().is_empty()));
    let Some(header) = rows.next() else {
        bail!("{}: the file has no rows", path.display());
    };
    let find = |names: &[&str]| {
        header.cells.iter().position(|h| {
            let h = directory::header_key(h);
            names.iter().any(|n| directory::header_key(n) == h)
        })
    };
    let id = find(&["标识符", "内部标识符", "数据元标识符", "id", "identifier"]);
    let name = find(&["中文名称", "数据元名称", "名称", "name"]);
    let ty = find(&["数据类型", "类型", "data_type", "type"]);
    let (Some(id), Some(name), Some(ty)) = (id, name, ty) else {
        bail!(
            "{} line {}: expected the columns 标识符 (id), 中文名称 (name) and 数据类型 (data_type); the header read was: {}",
            path.display(),
            header.line,
            header.cells.join(", ")
        );
    };
    let english = find(&["英文名称", "english_name"]);
    let length = find(&["长度", "最大长度", "max_length", "length"]);
    let format = find(&["表示格式", "格式", "format"]);
    let code_table = find(&["代码表", "值域", "code_table"]);
    let description = find(&["定义", "说明", "描述", "description"]);
    let standard = find(&["标准", "来源标准", "standard"]);
    let mut out = Vec::new();
    for row in rows {
        let cell = |c: Option<usize>| {
            c.and_then(|c| row.cells.get(c))
                .map(|t| t.trim().to_string())
                .unwrap_or_default()
        };
        let at = |what: &str, value: &str, expected: &str| {
            anyhow::anyhow!(
                "{} line {}: {what} {value:?}: {expected}",
                path.display(),
                row.line
            )
        };
        let data_type: ElementType =
            cell(Some(ty))
                .parse()
                .map_err(|e: reservoir_catalog::Error| {
                    at("数据类型", &cell(Some(ty)), &e.to_string())
                })?;
        let mut max_length = match cell(length) {
            l if l.is_empty() => None,
            l => Some(
                l.parse::<i64>()
                    .map_err(|_| at("长度", &l, "expected a whole number of characters"))?,
            ),
        };
        let written = cell(format);
        let format = match representation(&written) {
            Some((re, n)) => {
                if let Some(l) = max_length.filter(|l| *l != n) {
                    return Err(at(
                        "长度",
                        &l.to_string(),
                        &format!("the representation {written} says {n}"),
                    ));
                }
                max_length = Some(n);
                re.unwrap_or_default()
            }
            None => written,
        };
        let table = cell(code_table);
        let element_id = cell(Some(id));
        if element_id.is_empty() {
            return Err(at("标识符", "", "every data element needs an identifier"));
        }
        if let Some((first, _)) = out
            .iter()
            .find(|(_, e): &&(u64, DataElement)| e.id == element_id)
        {
            return Err(at(
                "标识符",
                &element_id,
                &format!("already given on line {first}"),
            ));
        }
        out.push((
            row.line,
            DataElement {
                id: element_id,
                name: cell(Some(name)),
                english_name: cell(english),
                data_type,
                max_length,
                format,
                code_table: (!table.is_empty()).then_some(table),
                description: cell(description),
                standard: cell(standard),
            },
        ));
    }
    Ok(out)
}

fn print_pii(marks: &[reservoir_catalog::PiiMark]) {
    if marks.is_empty() {
        println!("  no personal data found or recorded");
        return;
    }
    println!("  personal data:");
    for m in marks {
        println!(
            "    {:<24} {} ({}) — {}",
            m.field,
            m.kind.label_zh(),
            m.kind.as_str(),
            m.status.as_str()
        );
    }
}

fn write_csv(path: &Path, header: &[String], rows: &[Vec<String>]) -> Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    // A BOM, so that Excel reads the file as UTF-8 rather than the system code page.
    std::io::Write::write_all(&mut out, "\u{feff}".as_bytes())?;
    let mut w = csv::Writer::from_writer(out);
    w.write_record(header)?;
    for r in rows {
        w.write_record(r.iter().map(|c| directory::spreadsheet_safe(c)))?;
    }
    w.flush()?;
    Ok(())
}

fn write_xlsx(path: &Path, header: &[String], rows: &[Vec<String>]) -> Result<()> {
    let mut book = rust_xlsxwriter::Workbook::new();
    let sheet = book.add_worksheet();
    sheet.set_name("数据资源目录")?;
    let bold = rust_xlsxwriter::Format::new().set_bold();
    for (c, h) in header.iter().enumerate() {
        sheet.write_string_with_format(0, c as u16, h, &bold)?;
    }
    // Excel holds at most 32,767 characters in a cell.
    const MAX_CELL: usize = 32_767;
    for (r, row) in rows.iter().enumerate() {
        for (c, v) in row.iter().enumerate() {
            if v.is_empty() {
                continue;
            }
            if v.chars().count() > MAX_CELL {
                let cut: String = v.chars().take(MAX_CELL - 1).collect();
                eprintln!(
                    "warning: row {} ({}), column {}: {} characters cut to Excel's limit of {MAX_CELL}",
                    r + 2,
                    row.get(1).map(String::as_str).unwrap_or_default(),
                    header.get(c).map(String::as_str).unwrap_or_default(),
                    v.chars().count()
                );
                sheet.write_string(r as u32 + 1, c as u16, format!("{cut}…"))?;
            } else {
                sheet.write_string(r as u32 + 1, c as u16, v)?;
            }
        }
    }
    sheet.set_freeze_panes(1, 0)?;
    book.save(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
