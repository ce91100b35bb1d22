//! The catalog store over sqlx's `Any` driver.

use std::str::FromStr;
use std::sync::Once;

use chrono::Utc;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};

use crate::model::*;
use crate::search;
use crate::{Error, Result, format_ts};

static MIGRATE_SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static MIGRATE_POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Which database holds the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// Picks the backend from a connection URL.
    pub fn from_url(url: &str) -> Result<Self> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else {
            Err(Error::UnsupportedUrl { url: redact(url) })
        }
    }
}

/// Hides a password in a connection URL before it goes into a message.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// Handle to the catalog database. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Catalog {
    pool: AnyPool,
    backend: Backend,
}

const DATASET_COLUMNS: &str = "id, layer, unit_id, name, title, description, system_id, location, \
     update_frequency, sensitivity, open_tier, row_count, table_version, created_at, updated_at, \
     identifier, topic, industry, tags, formats, contact, published_at, source_updated_at, \
     declared_rows";

/// The WHERE clause of dataset queries; parameters $1–$5 are bound by [`bind_filter`].
const DATASET_FILTER: &str = "($1 IS NULL OR unit_id = $1) AND ($2 IS NULL OR layer = $2)
    AND ($3 IS NULL OR open_tier = $3) AND ($5 IS NULL OR topic = $5)
    AND ($4 IS NULL OR LOWER(name) LIKE $4 ESCAPE '\\' OR LOWER(title) LIKE $4 ESCAPE '\\'
         OR LOWER(description) LIKE $4 ESCAPE '\\'
         OR EXISTS (SELECT 1 FROM dataset_fields f WHERE f.dataset_id = datasets.id
                    AND (LOWER(f.name) LIKE $4 ESCAPE '\\' OR LOWER(f.title) LIKE $4 ESCAPE '\\')))";

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

fn bind_filter<'q>(q: AnyQuery<'q>, f: &DatasetFilter) -> AnyQuery<'q> {
    // The search text as typed: `%` and `_` are matched as themselves, not as wildcards.
    let pattern = f.search.as_deref().map(|s| {
        let escaped = s
            .trim()
            .to_lowercase()
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        format!("%{escaped}%")
    });
    q.bind(f.unit_id.clone())
        .bind(f.layer.clone())
        .bind(f.open_tier.map(|t| t.as_str().to_string()))
        .bind(pattern)
        .bind(f.topic.clone())
}

const RUN_COLUMNS: &str = "id, batch_id, dataset_id, source, mode, status, started_at, finished_at, \
     rows_read, rows_loaded, rows_quarantined, rows_padded, rows_flagged, lines_skipped, bytes_read, \
     rows_deleted, table_version, error, details";

impl Catalog {
    /// Connects to the catalog at `url` (`sqlite://PATH` or `postgres://…`), creating a SQLite
    /// file if it does not exist, and brings the schema up to date.
    pub async fn connect(url: &str) -> Result<Self> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);

        let backend = Backend::from_url(url)?;
        let url = match backend {
            Backend::Sqlite if !url.contains('?') && !url.contains(":memory:") => {
                format!("{url}?mode=rwc")
            }
            _ => url.to_string(),
        };
        let options = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 10 })
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                    }
                    Ok(())
                })
            });
        let pool = options.connect(&url).await?;
        if backend == Backend::Sqlite {
            // WAL lets readers (the console) run while a collection writes.
            pool.execute("PRAGMA journal_mode = WAL").await?;
        }
        match backend {
            Backend::Sqlite => MIGRATE_SQLITE.run(&pool).await?,
            Backend::Postgres => MIGRATE_POSTGRES.run(&pool).await?,
        }
        Ok(Self { pool, backend })
    }

    /// The connection pool, for the catalog's other modules and for the access crate, which keeps
    /// its tables (migrated here) in the same database.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").fetch_one(&self.pool).await?;
        Ok(())
    }

    /// Closes all connections; pending work finishes first.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    // ---------------------------------------------------------------- units

    /// Creates a unit or updates its name and description.
    pub async fn upsert_unit(&self, unit: &NewUnit) -> Result<Unit> {
        validate_ident("unit id", &unit.id)?;
        if unit.name.trim().is_empty() {
            return Err(Error::Invalid {
                what: "unit name",
                message: format!("unit {:?} needs a display name", unit.id),
            });
        }
        let now = format_ts(Utc::now());
        sqlx::query(
            "INSERT INTO units (id, name, parent_id, description, contact, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $6)
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, parent_id = excluded.parent_id,
                 description = excluded.description, contact = excluded.contact,
                 updated_at = excluded.updated_at",
        )
        .bind(&unit.id)
        .bind(&unit.name)
        .bind(&unit.parent_id)
        .bind(&unit.description)
        .bind(&unit.contact)
        .bind(&now)
        .execute(&self.pool)
        .await?;
        self.unit(&unit.id).await?.ok_or_else(|| Error::NotFound {
            kind: "unit",
            name: unit.id.clone(),
        })
    }

    pub async fn unit(&self, id: &str) -> Result<Option<Unit>> {
        let row = sqlx::query(
            "SELECT id, name, parent_id, description, contact, created_at, updated_at
             FROM units WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| unit_from_row(&r)).transpose()
    }

    pub async fn units(&self) -> Result<Vec<Unit>> {
        let rows = sqlx::query(
            "SELECT id, name, parent_id, description, contact, created_at, updated_at
             FROM units ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(unit_from_row).collect()
    }

    // -------------------------------------------------------------- systems

    pub async fn upsert_system(&self, system: &System) -> Result<()> {
        validate_ident("system id", &system.id)?;
        self.require_unit(&system.unit_id).await?;
        let now = format_ts(Utc::now());
        sqlx::query(
            "INSERT INTO systems (unit_id, id, name, kind, description, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $6)
             ON CONFLICT (unit_id, id) DO UPDATE SET name = excluded.name, kind = excluded.kind,
                 description = excluded.description, updated_at = excluded.updated_at",
        )
        .bind(&system.unit_id)
        .bind(&system.id)
        .bind(&system.name)
        .bind(&system.kind)
        .bind(&system.description)
        .bind(&now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn systems(&self, unit_id: Option<&str>) -> Result<Vec<System>> {
        let rows = sqlx::query(
            "SELECT unit_id, id, name, kind, description FROM systems
             WHERE ($1 IS NULL OR unit_id = $1) ORDER BY unit_id, id",
        )
        .bind(unit_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(System {
                    unit_id: r.try_get("unit_id")?,
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    kind: r.try_get("kind")?,
                    description: r.try_get("description")?,
                })
            })
            .collect()
    }

    async fn require_unit(&self, id: &str) -> Result<Unit> {
        self.unit(id).await?.ok_or_else(|| Error::NotFound {
            kind: "unit",
            name: id.to_string(),
        })
    }

    // ------------------------------------------------------------- datasets

    /// Registers a dataset, or updates its descriptive fields if it exists. Returns the record.
    pub async fn upsert_dataset(&self, spec: &DatasetSpec) -> Result<Dataset> {
        validate_ident("dataset name", &spec.name)?;
        validate_ident("layer", &spec.layer)?;
        self.require_unit(&spec.unit_id).await?;
        if !SENSITIVITY_LEVELS.contains(&spec.sensitivity) {
            return Err(Error::Invalid {
                what: "sensitivity",
                message: format!(
                    "{} for dataset {:?}; expected a level from 1 (public) to 4",
                    spec.sensitivity, spec.name
                ),
            });
        }
        let title = if spec.title.trim().is_empty() {
            &spec.name
        } else {
            &spec.title
        };
        let now = format_ts(Utc::now());
        sqlx::query(
            "INSERT INTO datasets (layer, unit_id, name, title, description, system_id, location,
                 update_frequency, sensitivity, open_tier, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)
             ON CONFLICT (layer, unit_id, name) DO UPDATE SET title = excluded.title,
                 description = excluded.description, system_id = excluded.system_id,
                 location = excluded.location, update_frequency = excluded.update_frequency,
                 sensitivity = excluded.sensitivity, open_tier = excluded.open_tier,
                 updated_at = excluded.updated_at",
        )
        .bind(&spec.layer)
        .bind(&spec.unit_id)
        .bind(&spec.name)
        .bind(title)
        .bind(&spec.description)
        .bind(&spec.system_id)
        .bind(&spec.location)
        .bind(spec.update_frequency.as_str())
        .bind(spec.sensitivity)
        .bind(spec.open_tier.as_str())
        .bind(&now)
        .execute(&self.pool)
        .await?;
        let dataset = self
            .dataset(&spec.layer, &spec.unit_id, &spec.name)
            .await?
            .ok_or_else(|| Error::NotFound {
                kind: "dataset",
                name: spec.name.clone(),
            })?;
        self.reindex(dataset.id).await?;
        Ok(dataset)
    }

    /// Looks a dataset up by `layer`, unit and name.
    pub async fn dataset(&self, layer: &str, unit_id: &str, name: &str) -> Result<Option<Dataset>> {
        let sql = format!(
            "SELECT {DATASET_COLUMNS} FROM datasets WHERE layer = $1 AND unit_id = $2 AND name = $3"
        );
        let row = sqlx::query(&sql)
            .bind(layer)
            .bind(unit_id)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| dataset_from_row(&r)).transpose()
    }

    pub async fn dataset_by_id(&self, id: i64) -> Result<Option<Dataset>> {
        let sql = format!("SELECT {DATASET_COLUMNS} FROM datasets WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| dataset_from_row(&r)).transpose()
    }

    /// Lists datasets, filtered and paged: ordered by layer, unit and name, or by relevance
    /// when the filter has search text (see [`Catalog::search`]).
    pub async fn datasets(&self, filter: &DatasetFilter) -> Result<Vec<Dataset>> {
        if filter.search.is_some() {
            let offset = usize::try_from(filter.offset.unwrap_or(0)).unwrap_or(0);
            let limit = usize::try_from(filter.limit.unwrap_or(i64::MAX)).unwrap_or(usize::MAX);
            let hits = self.search(filter).await?;
            return Ok(hits
                .into_iter()
                .skip(offset)
                .take(limit)
                .map(|h| h.dataset)
                .collect());
        }
        self.datasets_in_order(filter).await
    }

    /// The datasets matching a filter's criteria other than search, in name order, paged.
    async fn datasets_in_order(&self, filter: &DatasetFilter) -> Result<Vec<Dataset>> {
        let sql = format!(
            "SELECT {DATASET_COLUMNS} FROM datasets WHERE {DATASET_FILTER}
             ORDER BY layer, unit_id, name LIMIT $6 OFFSET $7"
        );
        let rows = bind_filter(sqlx::query(&sql), filter)
            .bind(filter.limit.unwrap_or(i64::MAX))
            .bind(filter.offset.unwrap_or(0))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(dataset_from_row).collect()
    }

    /// How many datasets match a filter (paging ignored).
    pub async fn count_datasets(&self, filter: &DatasetFilter) -> Result<i64> {
        if filter.search.is_some() {
            return Ok(self.search(filter).await?.len() as i64);
        }
        let sql = format!("SELECT COUNT(*) FROM datasets WHERE {DATASET_FILTER}");
        let row = bind_filter(sqlx::query(&sql), filter)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
    }

    /// Ranked search: the datasets matching the filter's other criteria whose words (see
    /// [`crate::search`]) or text match the search text, best first. A dataset matches if it
    /// shares a word with the query, or if its name, title, description or a field contains the
    /// query as typed (so a fragment that is no word, like 户籍人, still finds 户籍人口). All of
    /// them, unpaged.
    pub async fn search(&self, filter: &DatasetFilter) -> Result<Vec<SearchHit>> {
        let query = filter.search.as_deref().unwrap_or_default().trim();
        let unpaged = DatasetFilter {
            search: None,
            limit: None,
            offset: None,
            ..filter.clone()
        };
        let candidates = self.datasets_in_order(&unpaged).await?;
        if query.is_empty() {
            return Ok(candidates
                .into_iter()
                .map(|dataset| SearchHit {
                    dataset,
                    score: 0.0,
                })
                .collect());
        }
        // Substring matches, as typed.
        let sql = format!("SELECT id FROM datasets WHERE {DATASET_FILTER}");
        let literal: std::collections::HashSet<i64> = bind_filter(sqlx::query(&sql), filter)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<std::result::Result<_, _>>()?;
        // Word matches.
        let terms = search::query_terms(query);
        let mut df = vec![0i64; terms.len()];
        let mut postings: std::collections::HashMap<i64, Vec<(usize, f64)>> =
            std::collections::HashMap::new();
        if !terms.is_empty() {
            let placeholders = (1..=terms.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "SELECT dataset_id, term, weight FROM search_terms WHERE term IN ({placeholders})"
            );
            let mut q = sqlx::query(&sql);
            for t in &terms {
                q = q.bind(t.clone());
            }
            for r in q.fetch_all(&self.pool).await? {
                let term: String = r.try_get(1)?;
                let Some(i) = terms.iter().position(|t| *t == term) else {
                    continue;
                };
                df[i] += 1;
                postings
                    .entry(r.try_get(0)?)
                    .or_default()
                    .push((i, r.try_get(2)?));
            }
        }
        let n: i64 = sqlx::query("SELECT COUNT(*) FROM datasets")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
        let typed = search::normalize(query);
        let mut hits: Vec<SearchHit> = candidates
            .into_iter()
            .filter_map(|dataset| {
                let words = postings.get(&dataset.id).map(|p| search::score(p, &df, n));
                let literal = literal.contains(&dataset.id);
                if words.is_none() && !literal {
                    return None;
                }
                let mut score = words.unwrap_or(0.0);
                if literal {
                    score += 1.0;
                }
                if search::normalize(&dataset.title).contains(&typed) {
                    score += 2.0;
                }
                Some(SearchHit { dataset, score })
            })
            .collect();
        hits.sort_by(|a, b| {
            b.score.total_cmp(&a.score).then_with(|| {
                (&a.dataset.layer, &a.dataset.unit_id, &a.dataset.name).cmp(&(
                    &b.dataset.layer,
                    &b.dataset.unit_id,
                    &b.dataset.name,
                ))
            })
        });
        Ok(hits)
    }

    /// Counts of the datasets matching a filter, by unit, layer, open tier and topic. Each facet
    /// ignores its own criterion, so that the other values stay selectable.
    pub async fn dataset_facets(&self, filter: &DatasetFilter) -> Result<DatasetFacets> {
        let base = DatasetFilter {
            limit: None,
            offset: None,
            ..filter.clone()
        };
        let facet = |column: &'static str, f: DatasetFilter| async move {
            if f.search.is_some() {
                let mut counts: Vec<FacetValue> = Vec::new();
                for hit in self.search(&f).await? {
                    let d = &hit.dataset;
                    let value = match column {
                        "unit_id" => d.unit_id.clone(),
                        "layer" => d.layer.clone(),
                        "open_tier" => d.open_tier.as_str().to_string(),
                        _ => d.meta.topic.clone(),
                    };
                    match counts.iter_mut().find(|c| c.value == value) {
                        Some(c) => c.count += 1,
                        None => counts.push(FacetValue { value, count: 1 }),
                    }
                }
                counts.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
                return Ok::<_, Error>(counts);
            }
            let sql = format!(
                "SELECT {column}, COUNT(*) FROM datasets WHERE {DATASET_FILTER}
                 GROUP BY {column} ORDER BY COUNT(*) DESC, {column}"
            );
            let rows = bind_filter(sqlx::query(&sql), &f)
                .fetch_all(&self.pool)
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(FacetValue {
                        value: r.try_get(0)?,
                        count: r.try_get(1)?,
                    })
                })
                .collect::<Result<Vec<_>>>()
        };
        let mut topics = facet(
            "topic",
            DatasetFilter {
                topic: None,
                ..base.clone()
            },
        )
        .await?;
        topics.retain(|t| !t.value.is_empty());
        Ok(DatasetFacets {
            units: facet(
                "unit_id",
                DatasetFilter {
                    unit_id: None,
                    ..base.clone()
                },
            )
            .await?,
            layers: facet(
                "layer",
                DatasetFilter {
                    layer: None,
                    ..base.clone()
                },
            )
            .await?,
            open_tiers: facet(
                "open_tier",
                DatasetFilter {
                    open_tier: None,
                    ..base
                },
            )
            .await?,
            topics,
        })
    }

    /// Sets a dataset's directory entry (identifier, topic, tags …).
    pub async fn set_dataset_meta(&self, dataset_id: i64, meta: &DatasetMeta) -> Result<()> {
        let list = |v: &[String]| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
        sqlx::query(
            "UPDATE datasets SET identifier = $2, topic = $3, industry = $4, tags = $5,
                 formats = $6, contact = $7, published_at = $8, source_updated_at = $9,
                 declared_rows = $10, updated_at = $11
             WHERE id = $1",
        )
        .bind(dataset_id)
        .bind(&meta.identifier)
        .bind(&meta.topic)
        .bind(&meta.industry)
        .bind(list(&meta.tags))
        .bind(list(&meta.formats))
        .bind(&meta.contact)
        .bind(&meta.published_at)
        .bind(&meta.source_updated_at)
        .bind(meta.declared_rows)
        .bind(format_ts(Utc::now()))
        .execute(&self.pool)
        .await?;
        self.reindex(dataset_id).await
    }

    /// Stores what a personal-data scan suggested. A steward's decision on a field (confirmed
    /// or rejected) stands; suggestions for fields the scan no longer finds are removed.
    pub async fn record_pii_scan(&self, dataset_id: i64, found: &[PiiMark]) -> Result<()> {
        let now = format_ts(Utc::now());
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM field_pii WHERE dataset_id = $1 AND status = 'suggested'")
            .bind(dataset_id)
            .execute(&mut *tx)
            .await?;
        for m in found {
            sqlx::query(
                "INSERT INTO field_pii (dataset_id, field, kind, share, sampled, status, updated_at)
                 VALUES ($1, $2, $3, $4, $5, 'suggested', $6)
                 ON CONFLICT (dataset_id, field) DO UPDATE SET share = excluded.share,
                     sampled = excluded.sampled",
            )
            .bind(dataset_id)
            .bind(&m.field)
            .bind(m.kind.as_str())
            .bind(m.share)
            .bind(m.sampled)
            .bind(&now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A steward's decision on a field: it holds `kind` (confirmed), or no personal data
    /// (rejected).
    pub async fn decide_pii(
        &self,
        dataset_id: i64,
        field: &str,
        kind: Option<PiiKind>,
        status: PiiStatus,
    ) -> Result<()> {
        let existing = self.pii(dataset_id).await?;
        let kind = match (kind, existing.iter().find(|m| m.field == field)) {
            (Some(k), _) => k,
            (None, Some(m)) => m.kind,
            (None, None) if status == PiiStatus::Rejected => {
                return Err(Error::Invalid {
                    what: "personal data decision",
                    message: format!("field {field:?} has no suggestion to reject"),
                });
            }
            (None, None) => {
                return Err(Error::Invalid {
                    what: "personal data decision",
                    message: format!(
                        "field {field:?} has no suggestion; name its kind ({field}=resident_id …)"
                    ),
                });
            }
        };
        if !self
            .fields(dataset_id)
            .await?
            .iter()
            .any(|f| f.name == field)
        {
            return Err(Error::NotFound {
                kind: "field",
                name: field.to_string(),
            });
        }
        sqlx::query(
            "INSERT INTO field_pii (dataset_id, field, kind, share, sampled, status, updated_at)
             VALUES ($1, $2, $3, 0, 0, $4, $5)
             ON CONFLICT (dataset_id, field) DO UPDATE SET kind = excluded.kind,
                 status = excluded.status, updated_at = excluded.updated_at",
        )
        .bind(dataset_id)
        .bind(field)
        .bind(kind.as_str())
        .bind(status.as_str())
        .bind(format_ts(Utc::now()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A dataset's personal-data marks, by field.
    pub async fn pii(&self, dataset_id: i64) -> Result<Vec<PiiMark>> {
        let rows = sqlx::query(
            "SELECT field, kind, share, sampled, status, updated_at FROM field_pii
             WHERE dataset_id = $1 ORDER BY field",
        )
        .bind(dataset_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(PiiMark {
                    field: r.try_get(0)?,
                    kind: PiiKind::from_str(&r.try_get::<String, _>(1)?)
                        .map_err(|e| Error::Corrupt(e.to_string()))?,
                    share: r.try_get(2)?,
                    sampled: r.try_get(3)?,
                    status: PiiStatus::from_str(&r.try_get::<String, _>(4)?)?,
                    updated_at: r.try_get(5)?,
                })
            })
            .collect()
    }

    /// Records a dataset's table as it stands after a change outside a collection run (rows a
    /// blocking rule moved to quarantine).
    pub async fn record_table_state(
        &self,
        dataset_id: i64,
        row_count: i64,
        table_version: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE datasets SET row_count = $2, table_version = $3, updated_at = $4 WHERE id = $1",
        )
        .bind(dataset_id)
        .bind(row_count)
        .bind(table_version)
        .bind(format_ts(Utc::now()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records a catalog import and what it did.
    pub async fn record_import(
        &self,
        report: &crate::directory::ImportReport,
        options: &crate::directory::ImportOptions,
    ) -> Result<i64> {
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let row = sqlx::query(
            "INSERT INTO catalog_imports (source, sha256, parent_unit, rows_read, entries, created,
                 updated, repeated, rejected, report, imported_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
        )
        .bind(&report.source)
        .bind(&options.sha256)
        .bind(&options.parent)
        .bind(count(report.rows_read))
        .bind(count(report.entries))
        .bind(count(report.created))
        .bind(count(report.updated))
        .bind(count(report.repeated))
        .bind(report.rejected.len() as i64)
        .bind(serde_json::to_string(report)?)
        .bind(format_ts(Utc::now()))
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get(0)?)
    }

    /// Recomputes a dataset's search words from its entry and fields.
    pub async fn reindex(&self, dataset_id: i64) -> Result<()> {
        let Some(dataset) = self.dataset_by_id(dataset_id).await? else {
            return Ok(());
        };
        let fields = self.fields(dataset_id).await?;
        let mut terms: Vec<(String, f64)> = search::dataset_terms(&dataset, &fields)
            .into_iter()
            .collect();
        terms.sort_by(|a, b| a.0.cmp(&b.0));
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM search_terms WHERE dataset_id = $1")
            .bind(dataset_id)
            .execute(&mut *tx)
            .await?;
        for (term, weight) in terms {
            sqlx::query("INSERT INTO search_terms (dataset_id, term, weight) VALUES ($1, $2, $3)")
                .bind(dataset_id)
                .bind(term)
                .bind(weight)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Totals over the whole catalog.
    pub async fn stats(&self) -> Result<CatalogStats> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM units), (SELECT COUNT(*) FROM systems),
                    (SELECT COUNT(*) FROM datasets),
                    (SELECT CAST(COALESCE(SUM(row_count), 0) AS BIGINT) FROM datasets),
                    (SELECT COUNT(*) FROM runs),
                    (SELECT COUNT(*) FROM runs WHERE status = 'failed')",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(CatalogStats {
            units: row.try_get(0)?,
            systems: row.try_get(1)?,
            datasets: row.try_get(2)?,
            rows: row.try_get(3)?,
            runs: row.try_get(4)?,
            failed_runs: row.try_get(5)?,
        })
    }

    /// Datasets and rows per unit, units without datasets included.
    pub async fn rows_by_unit(&self) -> Result<Vec<UnitRows>> {
        let rows = sqlx::query(
            "SELECT u.id, u.name, COUNT(d.id), CAST(COALESCE(SUM(d.row_count), 0) AS BIGINT)
             FROM units u LEFT JOIN datasets d ON d.unit_id = u.id
             GROUP BY u.id, u.name ORDER BY 4 DESC, u.id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(UnitRows {
                    unit_id: r.try_get(0)?,
                    unit_name: r.try_get(1)?,
                    datasets: r.try_get(2)?,
                    rows: r.try_get(3)?,
                })
            })
            .collect()
    }

    /// Replaces a dataset's field list with the table's current schema, keeping the business
    /// titles and descriptions already recorded for fields that still exist.
    pub async fn set_fields(&self, dataset_id: i64, fields: &[Field]) -> Result<()> {
        let existing = self.fields(dataset_id).await?;
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM dataset_fields WHERE dataset_id = $1")
            .bind(dataset_id)
            .execute(&mut *tx)
            .await?;
        for f in fields {
            let old = existing.iter().find(|o| o.name == f.name);
            let keep = |new: &str, old: Option<&str>| -> String {
                if new.is_empty() {
                    old.unwrap_or_default().to_string()
                } else {
                    new.to_string()
                }
            };
            sqlx::query(
                "INSERT INTO dataset_fields
                     (dataset_id, position, name, data_type, nullable, title, description, flags)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(dataset_id)
            .bind(f.position)
            .bind(&f.name)
            .bind(&f.data_type)
            .bind(i64::from(f.nullable))
            .bind(keep(&f.title, old.map(|o| o.title.as_str())))
            .bind(keep(&f.description, old.map(|o| o.description.as_str())))
            .bind(&f.flags)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.reindex(dataset_id).await
    }

    /// Sets the business title and description of one field.
    pub async fn describe_field(
        &self,
        dataset_id: i64,
        name: &str,
        title: &str,
        description: &str,
    ) -> Result<()> {
        let done = sqlx::query(
            "UPDATE dataset_fields SET title = $3, description = $4
             WHERE dataset_id = $1 AND name = $2",
        )
        .bind(dataset_id)
        .bind(name)
        .bind(title)
        .bind(description)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound {
                kind: "field",
                name: name.to_string(),
            });
        }
        self.reindex(dataset_id).await
    }

    pub async fn fields(&self, dataset_id: i64) -> Result<Vec<Field>> {
        let rows = sqlx::query(
            "SELECT position, name, data_type, nullable, title, description, flags
             FROM dataset_fields WHERE dataset_id = $1 ORDER BY position",
        )
        .bind(dataset_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Field {
                    position: r.try_get("position")?,
                    name: r.try_get("name")?,
                    data_type: r.try_get("data_type")?,
                    nullable: r.try_get::<i64, _>("nullable")? != 0,
                    title: r.try_get("title")?,
                    description: r.try_get("description")?,
                    flags: r.try_get("flags")?,
                })
            })
            .collect()
    }

    // ----------------------------------------------------------------- runs

    /// Records the start of a run and returns its id.
    pub async fn begin_run(&self, run: &NewRun) -> Result<i64> {
        let now = format_ts(Utc::now());
        let row = sqlx::query(
            "INSERT INTO runs (batch_id, dataset_id, source, mode, status, started_at, owner)
             VALUES ($1, $2, $3, $4, 'running', $5, $6) RETURNING id",
        )
        .bind(&run.batch_id)
        .bind(run.dataset_id)
        .bind(&run.source)
        .bind(&run.mode)
        .bind(&now)
        .bind(crate::owner::current())
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get(0)?)
    }

    /// Records how a run ended; on success also the dataset's row count and table version.
    pub async fn finish_run(
        &self,
        run_id: i64,
        outcome: &RunOutcome,
        row_count: Option<i64>,
    ) -> Result<()> {
        let now = format_ts(Utc::now());
        let details = serde_json::to_string(&outcome.details)?;
        let c = &outcome.counts;
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "UPDATE runs SET status = $2, finished_at = $3, rows_read = $4, rows_loaded = $5,
                 rows_quarantined = $6, rows_padded = $7, rows_flagged = $8, lines_skipped = $9,
                 bytes_read = $10, table_version = $11, error = $12, details = $13,
                 rows_deleted = $14
             WHERE id = $1 RETURNING dataset_id",
        )
        .bind(run_id)
        .bind(outcome.status.as_str())
        .bind(&now)
        .bind(c.rows_read)
        .bind(c.rows_loaded)
        .bind(c.rows_quarantined)
        .bind(c.rows_padded)
        .bind(c.rows_flagged)
        .bind(c.lines_skipped)
        .bind(c.bytes_read)
        .bind(outcome.table_version)
        .bind(&outcome.error)
        .bind(&details)
        .bind(c.rows_deleted)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| Error::NotFound {
            kind: "run",
            name: run_id.to_string(),
        })?;
        let dataset_id: i64 = row.try_get(0)?;
        if let Some(rows) = row_count {
            sqlx::query(
                "UPDATE datasets SET row_count = $2, table_version = $3, updated_at = $4 WHERE id = $1",
            )
            .bind(dataset_id)
            .bind(rows)
            .bind(outcome.table_version)
            .bind(&now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Marks the dataset's runs that are still `running` but whose process is gone (killed or
    /// crashed on this machine) as `interrupted`, and returns their ids. Runs owned by live
    /// processes, or by other machines, are left alone.
    pub async fn interrupt_orphaned_runs(&self, dataset_id: i64) -> Result<Vec<i64>> {
        let rows = sqlx::query(
            "SELECT id, owner FROM runs WHERE dataset_id = $1 AND status = 'running' ORDER BY id",
        )
        .bind(dataset_id)
        .fetch_all(&self.pool)
        .await?;
        let now = format_ts(Utc::now());
        let mut interrupted = Vec::new();
        for r in rows {
            let id: i64 = r.try_get(0)?;
            let owner: String = r.try_get(1)?;
            if !crate::owner::is_dead(&owner) {
                continue;
            }
            sqlx::query(
                "UPDATE runs SET status = 'interrupted', finished_at = $2,
                     error = 'the process running it ended without recording an outcome'
                 WHERE id = $1 AND status = 'running'",
            )
            .bind(id)
            .bind(&now)
            .execute(&self.pool)
            .await?;
            interrupted.push(id);
        }
        Ok(interrupted)
    }

    // ----------------------------------------------------------------- drift

    /// Records schema-drift events noticed by a run.
    pub async fn record_drift(&self, events: &[DriftEvent]) -> Result<()> {
        let now = format_ts(Utc::now());
        let mut tx = self.pool.begin().await?;
        for e in events {
            sqlx::query(
                "INSERT INTO drift_events
                     (dataset_id, run_id, column_name, change, old_type, new_type, action, at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(e.dataset_id)
            .bind(e.run_id)
            .bind(&e.column_name)
            .bind(&e.change)
            .bind(&e.old_type)
            .bind(&e.new_type)
            .bind(&e.action)
            .bind(if e.at.is_empty() { &now } else { &e.at })
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    // ----------------------------------------------------------------- quality checks

    /// Records a finished check run; returns its id.
    pub async fn record_check_run(&self, run: &CheckRunRecord) -> Result<i64> {
        let row = sqlx::query(
            "INSERT INTO check_runs (check_run, dataset_id, table_version, rows_checked,
                 rows_failed, scores, results, failures_version, started_at, finished_at,
                 rows_blocked)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
        )
        .bind(&run.check_run)
        .bind(run.dataset_id)
        .bind(run.table_version)
        .bind(run.rows_checked)
        .bind(run.rows_failed)
        .bind(serde_json::to_string(&run.scores)?)
        .bind(serde_json::to_string(&run.results)?)
        .bind(run.failures_version)
        .bind(&run.started_at)
        .bind(&run.finished_at)
        .bind(run.rows_blocked)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get(0)?)
    }

    /// A dataset's check runs, newest first.
    pub async fn check_runs(&self, dataset_id: i64, limit: i64) -> Result<Vec<CheckRunRecord>> {
        let sql = format!(
            "SELECT {CHECK_RUN_COLUMNS} FROM check_runs WHERE dataset_id = $1
             ORDER BY finished_at DESC, id DESC LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(dataset_id)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(check_run_from_row).collect()
    }

    /// Check runs of every dataset that finished in `[start, end)` (RFC 3339 text), oldest
    /// first.
    pub async fn check_runs_between(&self, start: &str, end: &str) -> Result<Vec<CheckRunRecord>> {
        let sql = format!(
            "SELECT {CHECK_RUN_COLUMNS} FROM check_runs WHERE finished_at >= $1 AND finished_at < $2
             ORDER BY finished_at, id"
        );
        let rows = sqlx::query(&sql)
            .bind(start)
            .bind(end)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(check_run_from_row).collect()
    }

    /// Collection runs of every dataset that started in `[start, end)`, oldest first.
    pub async fn runs_between(&self, start: &str, end: &str) -> Result<Vec<Run>> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE started_at >= $1 AND started_at < $2
             ORDER BY started_at, id"
        );
        let rows = sqlx::query(&sql)
            .bind(start)
            .bind(end)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(run_from_row).collect()
    }

    /// Each dataset's last successful run that finished before `end`.
    pub async fn last_successes_before(
        &self,
        end: &str,
    ) -> Result<std::collections::HashMap<i64, String>> {
        let rows = sqlx::query(
            "SELECT dataset_id, MAX(finished_at) FROM runs
             WHERE status = 'succeeded' AND finished_at < $1 GROUP BY dataset_id",
        )
        .bind(end)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// A dataset's drift events, newest first.
    pub async fn drift_events(&self, dataset_id: i64) -> Result<Vec<DriftEvent>> {
        let rows = sqlx::query(
            "SELECT id, dataset_id, run_id, column_name, change, old_type, new_type, action, at
             FROM drift_events WHERE dataset_id = $1 ORDER BY at DESC, id DESC",
        )
        .bind(dataset_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DriftEvent {
                    id: r.try_get(0)?,
                    dataset_id: r.try_get(1)?,
                    run_id: r.try_get(2)?,
                    column_name: r.try_get(3)?,
                    change: r.try_get(4)?,
                    old_type: r.try_get(5)?,
                    new_type: r.try_get(6)?,
                    action: r.try_get(7)?,
                    at: r.try_get(8)?,
                })
            })
            .collect()
    }

    // ----------------------------------------------------------------- alerts

    /// Raises an alert unless one of the same kind is already open for the source; returns
    /// whether a new one was raised.
    pub async fn raise_alert(
        &self,
        kind: &str,
        source: &str,
        dataset: &str,
        message: &str,
    ) -> Result<bool> {
        let open = sqlx::query(
            "SELECT id FROM alerts WHERE source = $1 AND kind = $2 AND resolved_at IS NULL",
        )
        .bind(source)
        .bind(kind)
        .fetch_optional(&self.pool)
        .await?;
        if open.is_some() {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO alerts (kind, source, dataset, message, raised_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(kind)
        .bind(source)
        .bind(dataset)
        .bind(message)
        .bind(format_ts(Utc::now()))
        .execute(&self.pool)
        .await?;
        Ok(true)
    }

    /// Resolves the source's open alerts of these kinds; returns how many.
    pub async fn resolve_alerts(&self, source: &str, kinds: &[&str]) -> Result<u64> {
        let mut n = 0;
        for kind in kinds {
            n += sqlx::query(
                "UPDATE alerts SET resolved_at = $3
                 WHERE source = $1 AND kind = $2 AND resolved_at IS NULL",
            )
            .bind(source)
            .bind(*kind)
            .bind(format_ts(Utc::now()))
            .execute(&self.pool)
            .await?
            .rows_affected();
        }
        Ok(n)
    }

    /// Alerts, newest first; only open ones if `open_only`.
    pub async fn alerts(&self, open_only: bool, limit: i64) -> Result<Vec<Alert>> {
        let rows = sqlx::query(
            "SELECT id, kind, source, dataset, message, raised_at, resolved_at FROM alerts
             WHERE ($1 = 0 OR resolved_at IS NULL) ORDER BY raised_at DESC, id DESC LIMIT $2",
        )
        .bind(i64::from(open_only))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Alert {
                    id: r.try_get(0)?,
                    kind: r.try_get(1)?,
                    source: r.try_get(2)?,
                    dataset: r.try_get(3)?,
                    message: r.try_get(4)?,
                    raised_at: r.try_get(5)?,
                    resolved_at: r.try_get(6)?,
                })
            })
            .collect()
    }

    /// When the dataset's last successful run finished, if it had one.
    pub async fn last_success(&self, dataset_id: i64) -> Result<Option<String>> {
        let row = sqlx::query(
            "SELECT MAX(finished_at) FROM runs WHERE dataset_id = $1 AND status = 'succeeded'",
        )
        .bind(dataset_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get(0)?)
    }

    // ----------------------------------------------------------------- receipts

    /// Stores the signed delivery receipt of a run (as its JSON text).
    pub async fn record_receipt(&self, run_id: i64, data_sha256: &str, body: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO receipts (run_id, data_sha256, body, issued_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(run_id)
        .bind(data_sha256)
        .bind(body)
        .bind(format_ts(Utc::now()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The signed receipt of a run (JSON text), if it has one.
    pub async fn receipt(&self, run_id: i64) -> Result<Option<String>> {
        let row = sqlx::query("SELECT body FROM receipts WHERE run_id = $1")
            .bind(run_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| r.try_get(0).map_err(Into::into)).transpose()
    }

    // ----------------------------------------------------------------- delivered files

    /// The delivery of a file with this content hash into the dataset, if there was one.
    pub async fn delivered_file(
        &self,
        dataset_id: i64,
        sha256: &str,
    ) -> Result<Option<DeliveredFile>> {
        let row = sqlx::query(
            "SELECT dataset_id, sha256, path, size, run_id, delivered_at FROM delivered_files
             WHERE dataset_id = $1 AND sha256 = $2",
        )
        .bind(dataset_id)
        .bind(sha256)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| delivered_from_row(&r)).transpose()
    }

    /// The latest delivery into the dataset of a file at `path`, whatever its content.
    pub async fn delivered_file_by_path(
        &self,
        dataset_id: i64,
        path: &str,
    ) -> Result<Option<DeliveredFile>> {
        let row = sqlx::query(
            "SELECT dataset_id, sha256, path, size, run_id, delivered_at FROM delivered_files
             WHERE dataset_id = $1 AND path = $2 ORDER BY delivered_at DESC LIMIT 1",
        )
        .bind(dataset_id)
        .bind(path)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| delivered_from_row(&r)).transpose()
    }

    /// Remembers that a file was delivered (loaded) into the dataset.
    pub async fn record_delivered_file(&self, file: &DeliveredFile) -> Result<()> {
        sqlx::query(
            "INSERT INTO delivered_files (dataset_id, sha256, path, size, run_id, delivered_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(file.dataset_id)
        .bind(&file.sha256)
        .bind(&file.path)
        .bind(file.size)
        .bind(file.run_id)
        .bind(if file.delivered_at.is_empty() {
            format_ts(Utc::now())
        } else {
            file.delivered_at.clone()
        })
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn run(&self, run_id: i64) -> Result<Option<Run>> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(run_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| run_from_row(&r)).transpose()
    }

    /// Runs, newest first; of one dataset if given.
    pub async fn runs(&self, dataset_id: Option<i64>, limit: i64) -> Result<Vec<Run>> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE ($1 IS NULL OR dataset_id = $1)
             ORDER BY started_at DESC, id DESC LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(dataset_id)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(run_from_row).collect()
    }

    /// The newest runs of all datasets, with the dataset each one loaded.
    pub async fn recent_runs(&self, limit: i64) -> Result<Vec<RunSummary>> {
        let cols: String = RUN_COLUMNS
            .split(", ")
            .map(|c| format!("r.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {cols}, d.layer AS d_layer, d.unit_id AS d_unit, d.name AS d_name, d.title AS d_title
             FROM runs r JOIN datasets d ON d.id = r.dataset_id
             ORDER BY r.started_at DESC, r.id DESC LIMIT $1"
        );
        let rows = sqlx::query(&sql).bind(limit).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(RunSummary {
                    run: run_from_row(r)?,
                    layer: r.try_get("d_layer")?,
                    unit_id: r.try_get("d_unit")?,
                    dataset: r.try_get("d_name")?,
                    title: r.try_get("d_title")?,
                })
            })
            .collect()
    }

    // ------------------------------------------------------------- profiles

    pub async fn record_profiles(
        &self,
        run_id: i64,
        dataset_id: i64,
        profiles: &[ColumnProfile],
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for p in profiles {
            sqlx::query(
                "INSERT INTO column_profiles (run_id, dataset_id, position, column_name, data_type,
                     row_count, null_count, distinct_count, min_value, max_value, top_values)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(run_id)
            .bind(dataset_id)
            .bind(p.position)
            .bind(&p.column_name)
            .bind(&p.data_type)
            .bind(p.row_count)
            .bind(p.null_count)
            .bind(p.distinct_count)
            .bind(&p.min_value)
            .bind(&p.max_value)
            .bind(serde_json::to_string(&p.top_values)?)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Profiles recorded by one run.
    pub async fn profiles(&self, run_id: i64) -> Result<Vec<ColumnProfile>> {
        let rows = sqlx::query(
            "SELECT position, column_name, data_type, row_count, null_count, distinct_count,
                    min_value, max_value, top_values
             FROM column_profiles WHERE run_id = $1 ORDER BY position",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let top: String = r.try_get("top_values")?;
                Ok(ColumnProfile {
                    position: r.try_get("position")?,
                    column_name: r.try_get("column_name")?,
                    data_type: r.try_get("data_type")?,
                    row_count: r.try_get("row_count")?,
                    null_count: r.try_get("null_count")?,
                    distinct_count: r.try_get("distinct_count")?,
                    min_value: r.try_get("min_value")?,
                    max_value: r.try_get("max_value")?,
                    top_values: serde_json::from_str(&top)?,
                })
            })
            .collect()
    }

    /// The profiles of a dataset's most recent profiled run, with that run's id.
    pub async fn latest_profiles(
        &self,
        dataset_id: i64,
    ) -> Result<Option<(i64, Vec<ColumnProfile>)>> {
        let row = sqlx::query("SELECT MAX(run_id) FROM column_profiles WHERE dataset_id = $1")
            .bind(dataset_id)
            .fetch_one(&self.pool)
            .await?;
        match row.try_get::<Option<i64>, _>(0)? {
            Some(run_id) => Ok(Some((run_id, self.profiles(run_id).await?))),
            None => Ok(None),
        }
    }
}

fn unit_from_row(r: &AnyRow) -> Result<Unit> {
    Ok(Unit {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        parent_id: r.try_get("parent_id")?,
        description: r.try_get("description")?,
        contact: r.try_get("contact")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn dataset_from_row(r: &AnyRow) -> Result<Dataset> {
    Ok(Dataset {
        id: r.try_get("id")?,
        layer: r.try_get("layer")?,
        unit_id: r.try_get("unit_id")?,
        name: r.try_get("name")?,
        title: r.try_get("title")?,
        description: r.try_get("description")?,
        system_id: r.try_get("system_id")?,
        location: r.try_get("location")?,
        update_frequency: UpdateFrequency::from_str(&r.try_get::<String, _>("update_frequency")?)?,
        sensitivity: r.try_get("sensitivity")?,
        open_tier: OpenTier::from_str(&r.try_get::<String, _>("open_tier")?)?,
        row_count: r.try_get("row_count")?,
        table_version: r.try_get("table_version")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        meta: DatasetMeta {
            identifier: r.try_get("identifier")?,
            topic: r.try_get("topic")?,
            industry: r.try_get("industry")?,
            tags: string_list(&r.try_get::<String, _>("tags")?),
            formats: string_list(&r.try_get::<String, _>("formats")?),
            contact: r.try_get("contact")?,
            published_at: r.try_get("published_at")?,
            source_updated_at: r.try_get("source_updated_at")?,
            declared_rows: r.try_get("declared_rows")?,
        },
    })
}

/// A list stored as a JSON array of strings; empty text is an empty list.
fn string_list(text: &str) -> Vec<String> {
    if text.is_empty() {
        return Vec::new();
    }
    serde_json::from_str(text).unwrap_or_else(|_| vec![text.to_string()])
}

fn delivered_from_row(r: &AnyRow) -> Result<DeliveredFile> {
    Ok(DeliveredFile {
        dataset_id: r.try_get(0)?,
        sha256: r.try_get(1)?,
        path: r.try_get(2)?,
        size: r.try_get(3)?,
        run_id: r.try_get(4)?,
        delivered_at: r.try_get(5)?,
    })
}

const CHECK_RUN_COLUMNS: &str = "id, check_run, dataset_id, table_version, rows_checked, \
     rows_failed, scores, results, failures_version, started_at, finished_at, rows_blocked";

fn check_run_from_row(r: &AnyRow) -> Result<CheckRunRecord> {
    let scores: String = r.try_get(6)?;
    let results: String = r.try_get(7)?;
    Ok(CheckRunRecord {
        id: r.try_get(0)?,
        check_run: r.try_get(1)?,
        dataset_id: r.try_get(2)?,
        table_version: r.try_get(3)?,
        rows_checked: r.try_get(4)?,
        rows_failed: r.try_get(5)?,
        scores: serde_json::from_str(&scores)?,
        results: serde_json::from_str(&results)?,
        failures_version: r.try_get(8)?,
        started_at: r.try_get(9)?,
        finished_at: r.try_get(10)?,
        rows_blocked: r.try_get(11)?,
    })
}

fn run_from_row(r: &AnyRow) -> Result<Run> {
    let details: String = r.try_get("details")?;
    Ok(Run {
        id: r.try_get("id")?,
        batch_id: r.try_get("batch_id")?,
        dataset_id: r.try_get("dataset_id")?,
        source: r.try_get("source")?,
        mode: r.try_get("mode")?,
        status: RunStatus::from_str(&r.try_get::<String, _>("status")?)?,
        started_at: r.try_get("started_at")?,
        finished_at: r.try_get("finished_at")?,
        counts: RunCounts {
            rows_read: r.try_get("rows_read")?,
            rows_loaded: r.try_get("rows_loaded")?,
            rows_quarantined: r.try_get("rows_quarantined")?,
            rows_padded: r.try_get("rows_padded")?,
            rows_flagged: r.try_get("rows_flagged")?,
            lines_skipped: r.try_get("lines_skipped")?,
            bytes_read: r.try_get("bytes_read")?,
            rows_deleted: r.try_get("rows_deleted")?,
        },
        table_version: r.try_get("table_version")?,
        error: r.try_get("error")?,
        details: serde_json::from_str(&details)?,
    })
}
