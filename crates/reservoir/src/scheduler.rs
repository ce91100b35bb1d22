//! The scheduler inside `reservoir serve`: runs each source definition that has a `schedule`
//! (cron), retries failures with backoff, and raises alerts for sources that fail after their
//! retries and for datasets that are late against their declared update frequency.
//!
//! Definitions are re-read from `<home>/sources/` every [`RELOAD`], so a definition added or
//! edited (by hand or through the API) takes effect without a restart. A source never runs
//! twice at once; a run that is due while the previous one is still going waits for it. Every
//! attempt is an ordinary collection run in the catalog's history.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use croner::Cron;
use reservoir_catalog::{Catalog, parse_ts};
use reservoir_ingest::{Collector, NoProgress, SourceDef, SourceRequest};
use tokio::sync::watch;

/// How often definitions are re-read and lateness is checked.
pub const RELOAD: Duration = Duration::from_secs(30);

/// Parses a schedule: five fields (minute hour day month weekday), or six with seconds first.
pub fn parse_schedule(expr: &str) -> Result<Cron, String> {
    Cron::from_str(expr).map_err(|e| {
        format!(
            "schedule {expr:?} is not a cron expression ({e}); expected e.g. \"0 2 * * *\" \
                 (02:00 every day) or \"*/15 * * * *\" (every 15 minutes)"
        )
    })
}

struct Entry {
    name: String,
    path: PathBuf,
    def: SourceDef,
    cron: Option<Cron>,
    next: Option<DateTime<Utc>>,
}

/// What the scheduler needs from the home.
pub struct Scheduler {
    pub sources_dir: PathBuf,
    /// Quality rules run after each collection that loads rows (`<unit>/<dataset>.yaml`).
    pub rules_dir: PathBuf,
    pub lake: reservoir_lake::Lake,
    pub collector: Arc<Collector>,
    pub catalog: Catalog,
    pub tz: chrono_tz::Tz,
    pub infer_rows: usize,
    pub batch_rows: usize,
    /// Open datasets published before are published again after each collection.
    pub publisher: Option<reservoir_server::AppState>,
}

impl Scheduler {
    /// Runs until `shutdown` turns true; running collections are let finish.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let this = Arc::new(self);
        let mut entries: HashMap<String, Entry> = HashMap::new();
        let running: Arc<tokio::sync::Mutex<std::collections::HashSet<String>>> = Arc::default();
        let mut tasks = tokio::task::JoinSet::new();
        let mut last_reload: Option<std::time::Instant> = None;
        loop {
            if last_reload.is_none_or(|t| t.elapsed() >= RELOAD) {
                this.reload(&mut entries);
                this.check_lateness(&entries).await;
                last_reload = Some(std::time::Instant::now());
            }
            let now = Utc::now();
            for e in entries.values_mut() {
                let Some(next) = e.next else { continue };
                if next > now {
                    continue;
                }
                e.next = e.cron.as_ref().and_then(|c| next_after(c, now, this.tz));
                let mut busy = running.lock().await;
                if !busy.insert(e.name.clone()) {
                    tracing::warn!(source = %e.name, "still running; this occurrence is skipped");
                    continue;
                }
                drop(busy);
                let this = this.clone();
                let running = running.clone();
                let (name, path, def) = (e.name.clone(), e.path.clone(), e.def.clone());
                // The database sync's future is not `Send` (rustc cannot prove it for the
                // borrows it holds), so each job runs on a blocking thread of its own.
                let handle = tokio::runtime::Handle::current();
                tasks.spawn_blocking(move || {
                    handle.block_on(async move {
                        this.run_with_retries(&name, &path, &def).await;
                        running.lock().await.remove(&name);
                    })
                });
            }
            while tasks.try_join_next().is_some() {}
            let wake = entries
                .values()
                .filter_map(|e| e.next)
                .min()
                .map(|t| (t - Utc::now()).to_std().unwrap_or_default())
                .unwrap_or(RELOAD)
                .min(RELOAD);
            tokio::select! {
                _ = tokio::time::sleep(wake.max(Duration::from_millis(50))) => {}
                _ = shutdown.changed() => break,
            }
        }
        while tasks.join_next().await.is_some() {}
    }

    fn reload(&self, entries: &mut HashMap<String, Entry>) {
        let Ok(dir) = std::fs::read_dir(&self.sources_dir) else {
            entries.clear();
            return;
        };
        let mut seen = Vec::new();
        for path in dir.flatten().map(|e| e.path()) {
            if path.extension().is_none_or(|e| e != "toml") {
                continue;
            }
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let def = match SourceDef::load(&path) {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(source = %name, error = %e, "cannot read the definition");
                    continue;
                }
            };
            let cron = match def.schedule.as_deref().map(parse_schedule) {
                Some(Ok(c)) => Some(c),
                Some(Err(e)) => {
                    tracing::error!(source = %name, "{}: {e}", path.display());
                    None
                }
                None => None,
            };
            seen.push(name.clone());
            let next = cron
                .as_ref()
                .and_then(|c| next_after(c, Utc::now(), self.tz));
            match entries.get_mut(&name) {
                Some(e) if e.def.schedule == def.schedule => {
                    e.def = def;
                    e.path = path;
                }
                _ => {
                    entries.insert(
                        name.clone(),
                        Entry {
                            name,
                            path,
                            def,
                            cron,
                            next,
                        },
                    );
                }
            }
        }
        entries.retain(|k, _| seen.contains(k));
    }

    /// Raises `late` alerts for sources whose dataset has not been collected within one and a
    /// half periods of its update frequency.
    async fn check_lateness(&self, entries: &HashMap<String, Entry>) {
        for e in entries.values() {
            let Some(limit) = e.def.update_frequency.and_then(|f| f.late_after()) else {
                continue;
            };
            let table = format!("raw.{}.{}", e.def.unit, e.def.dataset);
            let dataset = match self
                .catalog
                .dataset("raw", &e.def.unit, &e.def.dataset)
                .await
            {
                Ok(d) => d,
                Err(err) => {
                    tracing::error!(source = %e.name, error = %err, "lateness check failed");
                    continue;
                }
            };
            let last = match &dataset {
                Some(d) => self.catalog.last_success(d.id).await.ok().flatten(),
                None => None,
            };
            let last = last.and_then(|t| parse_ts(&t).ok());
            let late = match last {
                Some(t) => Utc::now() - t > limit,
                // Never collected: late once the dataset has been registered that long.
                None => dataset
                    .as_ref()
                    .and_then(|d| parse_ts(&d.created_at).ok())
                    .is_some_and(|t| Utc::now() - t > limit),
            };
            if late {
                let frequency = e.def.update_frequency.map(|f| f.as_str()).unwrap_or("");
                let message = match last {
                    Some(t) => format!(
                        "{table} is updated {frequency} but was last collected at {}",
                        t.to_rfc3339()
                    ),
                    None => format!("{table} is updated {frequency} but was never collected"),
                };
                match self
                    .catalog
                    .raise_alert("late", &e.name, &table, &message)
                    .await
                {
                    Ok(true) => tracing::warn!(source = %e.name, "{message}"),
                    Ok(false) => {}
                    Err(err) => {
                        tracing::error!(source = %e.name, error = %err, "cannot raise an alert")
                    }
                }
            }
        }
    }

    /// The request a definition makes, with the home's ingest settings.
    fn request_for(&self, path: &Path, def: &SourceDef) -> Result<SourceRequest, String> {
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let env = |v: &str| std::env::var(v).ok();
        let mut req = def
            .to_source_request(path, &base, &env)
            .map_err(|e| e.to_string())?;
        req.set_sizes(self.infer_rows, self.batch_rows);
        Ok(req)
    }

    /// Runs the dataset's quality rules, if it has a rules file.
    async fn check(&self, unit: &str, dataset: &str) {
        let result = reservoir_quality::check::check_if_rules(
            &self.lake,
            &self.catalog,
            &self.rules_dir,
            unit,
            dataset,
        )
        .await;
        match result {
            Ok(None) => {}
            Ok(Some((outcome, id))) => {
                let failed: u64 = outcome.results.iter().map(|r| r.failed).sum();
                tracing::info!(table = %outcome.table, check_run = id, failed, "quality check done");
            }
            Err(e) => tracing::error!(unit, dataset, error = %e, "quality check failed"),
        }
    }

    /// One scheduled run: attempts with doubling backoff, then an alert if all failed.
    pub async fn run_with_retries(&self, name: &str, path: &Path, def: &SourceDef) {
        let retries = def.retries.unwrap_or(2);
        let mut backoff = Duration::from_secs(def.retry_backoff_secs.unwrap_or(30));
        let table = format!("raw.{}.{}", def.unit, def.dataset);
        let mut last_error = String::new();
        for attempt in 0..=retries {
            let result = match self.request_for(path, def) {
                Ok(req) => self
                    .collector
                    .run_source(req, Arc::new(NoProgress))
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e),
            };
            match result {
                Ok(outcome) if !outcome.partly_failed() => {
                    let runs = outcome.runs();
                    tracing::info!(source = %name, runs = runs.len(), "scheduled collection done");
                    if runs.iter().any(|r| r.counts.rows_loaded > 0) {
                        self.check(&def.unit, &def.dataset).await;
                        if let Some(state) = &self.publisher {
                            match reservoir_server::open::republish(state, &def.unit, &def.dataset)
                                .await
                            {
                                Ok(Some(p)) => {
                                    tracing::info!(table = %table, version = p.version, "open snapshot published again")
                                }
                                Ok(None) => {}
                                Err(e) => {
                                    tracing::error!(table = %table, error = %e.message, "open snapshot not refreshed")
                                }
                            }
                        }
                    }
                    if let Err(e) = self.catalog.resolve_alerts(name, &["failed", "late"]).await {
                        tracing::error!(source = %name, error = %e, "cannot resolve alerts");
                    }
                    return;
                }
                Ok(_) => last_error = "some files of the folder failed to load".into(),
                Err(e) => last_error = e,
            }
            if attempt < retries {
                tracing::warn!(source = %name, attempt = attempt + 1, ?backoff, error = %last_error, "collection failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
        let message = format!(
            "{table}: the scheduled collection failed after {} attempts: {last_error}",
            retries + 1
        );
        tracing::error!(source = %name, "{message}");
        if let Err(e) = self
            .catalog
            .raise_alert("failed", name, &table, &message)
            .await
        {
            tracing::error!(source = %name, error = %e, "cannot raise an alert");
        }
    }
}

/// The first occurrence strictly after `now`, evaluated in `tz`.
fn next_after(cron: &Cron, now: DateTime<Utc>, tz: chrono_tz::Tz) -> Option<DateTime<Utc>> {
    cron.find_next_occurrence(&now.with_timezone(&tz), false)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_parse_and_advance_in_the_time_zone() {
        let daily = parse_schedule("0 2 * * *").unwrap();
        let tz: chrono_tz::Tz = "Asia/Shanghai".parse().unwrap();
        let now = DateTime::parse_from_rfc3339("2026-12-04T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        // 02:00 in Shanghai is 18:00 UTC the day before; the next one is on the 4th, 18:00 UTC.
        assert_eq!(
            next_after(&daily, now, tz).unwrap().to_rfc3339(),
            "2026-12-04T18:00:00+00:00"
        );
        let every = parse_schedule("*/10 * * * * *").unwrap();
        assert_eq!(
            next_after(&every, now, tz).unwrap().to_rfc3339(),
            "2026-12-04T00:00:10+00:00"
        );
        let err = parse_schedule("every day").unwrap_err();
        assert!(err.contains("not a cron expression"), "{err}");
    }
}
