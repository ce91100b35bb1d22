//! Human-readable output.

use reservoir_catalog::{ColumnProfile, Dataset, Field, Run};
use reservoir_ingest::RunReport;

/// Formats a byte count as KiB/MiB/GiB.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// The summary printed after a collection run.
pub fn run_summary(r: &RunReport) {
    let c = &r.counts;
    let mark = if c.rows_quarantined == 0 {
        "✔"
    } else {
        "⚠"
    };
    println!("{mark} {}  ({}, batch {})", r.table, r.mode, r.batch_id);
    for f in &r.files {
        let mut facts = vec![f.format.to_string()];
        if let Some(e) = &f.encoding {
            facts.push(e.clone());
        }
        if let Some(d) = &f.delimiter {
            facts.push(format!("delimiter {d:?}"));
        }
        if let Some(s) = &f.sheet {
            facts.push(format!("sheet {s:?}"));
        }
        // Databases and streams are sources, not files of some size.
        if matches!(f.format, "postgres" | "mysql" | "nats") {
            println!("  source   {}  ({})", f.path, f.format);
            continue;
        }
        facts.push(bytes(f.bytes));
        println!("  file     {}  ({})", f.path, facts.join(", "));
        for s in &f.skipped {
            println!(
                "           skipped {} line {}: {}",
                s.kind,
                s.line,
                clip(&s.text, 70)
            );
        }
        for (from, to) in &f.renamed_columns {
            println!("           column {from:?} renamed to {to:?}");
        }
    }
    println!(
        "  rows     read {} = loaded {} + quarantined {}",
        c.rows_read, c.rows_loaded, c.rows_quarantined
    );
    if c.rows_deleted > 0 {
        println!(
            "           deleted {} (no longer in the source)",
            c.rows_deleted
        );
    }
    if c.rows_padded > 0 {
        println!(
            "           flagged {} (of which {} short rows padded with NULL; see _flags)",
            c.rows_flagged, c.rows_padded
        );
    } else if c.rows_flagged > 0 {
        println!("           flagged {} (see _flags)", c.rows_flagged);
    }
    println!(
        "  table    version {}, {} rows in total",
        r.table_version
            .map(|v| v.to_string())
            .unwrap_or_else(|| "-".into()),
        r.table_rows
    );
    let cols: Vec<String> = r
        .columns
        .iter()
        .map(|c| {
            let mut s = format!("{} {}", c.name, c.ty);
            if c.all_empty {
                s.push_str(" (empty in the rows read)");
            }
            s
        })
        .collect();
    println!("  columns  {}", clip(&cols.join(", "), 400));
    if let Some(q) = &r.quarantine_table {
        println!("  quarantine  {} rows in {q}:", c.rows_quarantined);
        for rej in &r.rejected_sample {
            println!(
                "    {}:{}  {}",
                rej.source_file,
                rej.line,
                clip(&rej.reason, 140)
            );
        }
        if (r.rejected_sample.len() as i64) < c.rows_quarantined {
            println!("    … see `reservoir sql \"SELECT * FROM {q}\"`");
        }
    }
    for n in &r.notes {
        println!("  note     {n}");
    }
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

/// A dataset's description, schema, profile and recent runs.
pub fn dataset(
    d: &Dataset,
    fields: &[Field],
    profile: Option<&(i64, Vec<ColumnProfile>)>,
    runs: &[Run],
) {
    println!("{}  {}", d.qualified_name(), d.title);
    if !d.description.is_empty() {
        println!("  {}", d.description);
    }
    println!(
        "  unit {} · {} rows · table version {} · updates {} ({}) · sensitivity {} · {} ({})",
        d.unit_id,
        d.row_count,
        d.table_version
            .map(|v| v.to_string())
            .unwrap_or_else(|| "-".into()),
        d.update_frequency,
        d.update_frequency.label_zh(),
        d.sensitivity,
        d.open_tier,
        d.open_tier.label_zh()
    );
    println!(
        "\n  {:<28} {:<28} {:>7} {:>9}  {:<20} top values",
        "column", "type", "null %", "distinct", "min … max"
    );
    for f in fields {
        let p = profile.and_then(|(_, ps)| ps.iter().find(|p| p.column_name == f.name));
        let label = if f.title.is_empty() {
            f.name.clone()
        } else {
            format!("{} ({})", f.name, f.title)
        };
        let (nulls, distinct, range, top) = match p {
            Some(p) => (
                format!("{:.1}", p.null_rate() * 100.0),
                p.distinct_count.to_string(),
                format!(
                    "{} … {}",
                    clip(p.min_value.as_deref().unwrap_or("-"), 12),
                    clip(p.max_value.as_deref().unwrap_or("-"), 12)
                ),
                p.top_values
                    .iter()
                    .take(3)
                    .map(|t| {
                        format!(
                            "{}×{}",
                            clip(t.value.as_deref().unwrap_or("NULL"), 16),
                            t.count
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            None => ("-".into(), "-".into(), "-".into(), String::new()),
        };
        let ty = if f.flags.is_empty() {
            f.data_type.clone()
        } else {
            format!("{} [{}]", f.data_type, f.flags)
        };
        println!(
            "  {:<28} {:<28} {:>7} {:>9}  {:<20} {}",
            clip(&label, 28),
            clip(&ty, 28),
            nulls,
            distinct,
            range,
            top
        );
    }
    if !runs.is_empty() {
        println!("\n  recent runs");
        for r in runs {
            println!(
                "  #{:<5} {}  {:<9} read {} loaded {} quarantined {}  {}",
                r.id,
                r.started_at,
                r.status.as_str(),
                r.counts.rows_read,
                r.counts.rows_loaded,
                r.counts.rows_quarantined,
                r.error.as_deref().map(|e| clip(e, 80)).unwrap_or_default()
            );
        }
    }
}

/// What a scan of a drop folder did.
pub fn folder_summary(f: &reservoir_ingest::folder::FolderReport) {
    for r in &f.loaded {
        run_summary(r);
    }
    println!(
        "folder {}: {} new files loaded, {} skipped, {} failed",
        f.folder,
        f.loaded.len(),
        f.skipped.len(),
        f.failed.len()
    );
    for s in &f.skipped {
        println!("  skipped {}: {}", s.path, s.reason);
    }
    for s in &f.failed {
        eprintln!("  failed  {}: {}", s.path, s.reason);
    }
}

/// The latest quality check runs of a dataset, newest first: scores per dimension.
pub fn checks(checks: &[reservoir_catalog::CheckRunRecord]) {
    if checks.is_empty() {
        return;
    }
    println!("\nquality checks (newest first):");
    for c in checks {
        let scores = c
            .scores
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(d, s)| format!("{d} {:.2}", s.as_f64().unwrap_or(0.0)))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        println!(
            "  run {}  {}  version {}, {} rows, {} failing values  {scores}",
            c.id, c.finished_at, c.table_version, c.rows_checked, c.rows_failed
        );
    }
}
