//! Drop folders: units (and the city) deliver files into a folder; each file is loaded once.
//!
//! A file is known by the SHA-256 of its content, not its name: a file delivered again under
//! another name is not loaded twice, and a corrected file with the same name is new. The load
//! of a file is one Delta commit that carries the application transaction
//! `reservoir:file:<sha256>`, so the lake itself says which deliveries it holds; the catalog's
//! `delivered_files` mirrors it for people and the API. If the process dies between the commit
//! and the catalog record, the next scan finds the transaction in the lake and only records it.
//! Files changed within the last `settle` interval are left for the next scan (they may still
//! be being written).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reservoir_catalog::DeliveredFile;
use reservoir_lake::{Layer, TableRef};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::collect::{CollectRequest, RunReport};
use crate::{Collector, Error, Progress, Result};

/// A folder to watch.
#[derive(Debug, Clone)]
pub struct FolderSource {
    pub path: PathBuf,
    /// File-name pattern, e.g. `*.csv` or `人口_*.xlsx` (default: every file).
    pub pattern: Option<String>,
    /// Files modified more recently than this are left for the next scan.
    pub settle: Duration,
}

/// What to do with the folder's files: `template` is the request every file is loaded with
/// (its `files` are replaced by each delivered file).
#[derive(Debug, Clone)]
pub struct FolderRequest {
    pub source: FolderSource,
    pub template: CollectRequest,
}

/// A file the scan did not load, and why.
#[derive(Debug, Clone, Serialize)]
pub struct SkippedFile {
    pub path: String,
    pub reason: String,
}

/// What one scan of the folder did.
#[derive(Debug, Clone, Serialize, Default)]
pub struct FolderReport {
    pub folder: String,
    /// One run per newly delivered file.
    pub loaded: Vec<RunReport>,
    /// Files already delivered (by content) or still changing.
    pub skipped: Vec<SkippedFile>,
    /// Files whose load failed, with the error; the scan goes on past them, and the next scan
    /// tries them again.
    pub failed: Vec<SkippedFile>,
}

/// SHA-256 of a file's content, streamed.
pub fn sha256_file(path: &Path) -> Result<String> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

impl Collector {
    /// Scans the folder once and loads every file not delivered before, oldest first.
    pub async fn collect_folder(
        &self,
        req: FolderRequest,
        progress: Arc<dyn Progress>,
    ) -> Result<FolderReport> {
        let src = &req.source;
        let pattern = match &src.pattern {
            Some(p) => Some(glob::Pattern::new(p).map_err(|e| {
                Error::Invalid(format!("file pattern {p:?} is not a valid pattern: {e}"))
            })?),
            None => None,
        };
        let io = |source| Error::Io {
            path: src.path.clone(),
            source,
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&src.path).map_err(io)? {
            let entry = entry.map_err(io)?;
            let meta = entry.metadata().map_err(io)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !meta.is_file() || name.starts_with('.') {
                continue;
            }
            if pattern.as_ref().is_some_and(|p| !p.matches(&name)) {
                continue;
            }
            let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            files.push((modified, entry.path(), meta.len()));
        }
        files.sort();
        let table = TableRef::new(Layer::Raw, &req.template.unit, &req.template.dataset);
        let mut report = FolderReport {
            folder: src.path.display().to_string(),
            ..FolderReport::default()
        };
        let now = SystemTime::now();
        for (modified, path, size) in files {
            let shown = path.display().to_string();
            if now.duration_since(modified).unwrap_or_default() < src.settle {
                report.skipped.push(SkippedFile {
                    path: shown,
                    reason: format!(
                        "changed less than {}s ago; left for the next scan",
                        src.settle.as_secs()
                    ),
                });
                continue;
            }
            let sha = sha256_file(&path)?;
            let app_id = format!("reservoir:file:{sha}");
            let dataset = self
                .catalog()
                .dataset(
                    Layer::Raw.as_str(),
                    &req.template.unit,
                    &req.template.dataset,
                )
                .await?;
            if let Some(d) = &dataset
                && let Some(earlier) = self.catalog().delivered_file(d.id, &sha).await?
            {
                report.skipped.push(SkippedFile {
                    path: shown,
                    reason: format!(
                        "already delivered as {} at {} (same content)",
                        earlier.path, earlier.delivered_at
                    ),
                });
                continue;
            }
            if self.lake().app_version(&table, &app_id).await?.is_some() {
                // Loaded, but the process stopped before the catalog heard of it.
                if let Some(d) = &dataset {
                    self.catalog()
                        .record_delivered_file(&DeliveredFile {
                            dataset_id: d.id,
                            sha256: sha.clone(),
                            path: shown.clone(),
                            size: size as i64,
                            run_id: None,
                            delivered_at: String::new(),
                        })
                        .await?;
                }
                report.skipped.push(SkippedFile {
                    path: shown,
                    reason: "already in the lake (recorded now)".into(),
                });
                continue;
            }
            let earlier_name = match &dataset {
                Some(d) => self.catalog().delivered_file_by_path(d.id, &shown).await?,
                None => None,
            };
            let mut one = req.template.clone();
            one.files = vec![path.clone()];
            one.source_names = None;
            one.app_transaction = Some((app_id, 1));
            one.source_label = format!("drop folder {}: {}", src.path.display(), shown);
            match self.collect(one, progress.clone()).await {
                Ok(mut run) => {
                    if let Some(e) = earlier_name {
                        run.notes.push(format!(
                            "a file named {} was delivered before with other content (sha256 {}, \
                             {}); this one is a new delivery and all its rows are loaded",
                            e.path, e.sha256, e.delivered_at
                        ));
                    }
                    let d = self
                        .catalog()
                        .dataset(
                            Layer::Raw.as_str(),
                            &req.template.unit,
                            &req.template.dataset,
                        )
                        .await?
                        .ok_or_else(|| Error::Invalid(format!("dataset {table} vanished")))?;
                    self.catalog()
                        .record_delivered_file(&DeliveredFile {
                            dataset_id: d.id,
                            sha256: sha,
                            path: shown,
                            size: size as i64,
                            run_id: Some(run.run_id),
                            delivered_at: String::new(),
                        })
                        .await?;
                    report.loaded.push(run);
                }
                Err(e) => {
                    report.failed.push(SkippedFile {
                        path: shown,
                        reason: e.to_string(),
                    });
                }
            }
        }
        Ok(report)
    }
}
