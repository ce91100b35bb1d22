//! Open data: publications of open snapshots and the public's use of them.

use chrono::Utc;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::{Catalog, Result, format_ts};

/// One publication of a dataset's open snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Publication {
    pub id: i64,
    /// The open-layer dataset.
    pub dataset_id: i64,
    /// The raw table version it was made from.
    pub source_version: Option<i64>,
    /// The open table's version.
    pub version: i64,
    pub row_count: i64,
    /// Columns masked in the snapshot, with their masks (`name:keep:1,0`, comma-separated).
    pub masked: String,
    pub published_by: String,
    pub published_at: String,
}

/// What the public did with an open dataset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OpenCounts {
    pub views: i64,
    pub downloads: i64,
    pub api_calls: i64,
}

/// A use to count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenUse {
    View,
    Download,
    Api,
}

impl Catalog {
    pub async fn record_publication(
        &self,
        dataset_id: i64,
        source_version: Option<i64>,
        version: i64,
        row_count: i64,
        masked: &str,
        published_by: &str,
    ) -> Result<Publication> {
        let now = format_ts(Utc::now());
        let row = sqlx::query(
            "INSERT INTO open_publications (dataset_id, source_version, version, row_count,
                 masked, published_by, published_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(dataset_id)
        .bind(source_version)
        .bind(version)
        .bind(row_count)
        .bind(masked)
        .bind(published_by)
        .bind(&now)
        .fetch_one(self.pool())
        .await?;
        Ok(Publication {
            id: row.try_get(0)?,
            dataset_id,
            source_version,
            version,
            row_count,
            masked: masked.to_string(),
            published_by: published_by.to_string(),
            published_at: now,
        })
    }

    /// A dataset's publications, newest first.
    pub async fn publications(&self, dataset_id: i64) -> Result<Vec<Publication>> {
        let rows = sqlx::query(
            "SELECT id, dataset_id, source_version, version, row_count, masked, published_by,
                 published_at
             FROM open_publications WHERE dataset_id = $1 ORDER BY id DESC",
        )
        .bind(dataset_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Publication {
                    id: r.try_get("id")?,
                    dataset_id: r.try_get("dataset_id")?,
                    source_version: r.try_get("source_version")?,
                    version: r.try_get("version")?,
                    row_count: r.try_get("row_count")?,
                    masked: r.try_get("masked")?,
                    published_by: r.try_get("published_by")?,
                    published_at: r.try_get("published_at")?,
                })
            })
            .collect()
    }

    /// Counts one use of an open dataset.
    pub async fn count_open_use(&self, dataset_id: i64, what: OpenUse) -> Result<()> {
        let (v, d, a) = match what {
            OpenUse::View => (1, 0, 0),
            OpenUse::Download => (0, 1, 0),
            OpenUse::Api => (0, 0, 1),
        };
        sqlx::query(
            "INSERT INTO open_counts (dataset_id, views, downloads, api_calls) VALUES ($1, $2, $3, $4)
             ON CONFLICT (dataset_id) DO UPDATE SET views = open_counts.views + excluded.views,
                 downloads = open_counts.downloads + excluded.downloads,
                 api_calls = open_counts.api_calls + excluded.api_calls",
        )
        .bind(dataset_id)
        .bind(v as i64)
        .bind(d as i64)
        .bind(a as i64)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn open_counts(&self, dataset_id: i64) -> Result<OpenCounts> {
        let row = sqlx::query(
            "SELECT views, downloads, api_calls FROM open_counts WHERE dataset_id = $1",
        )
        .bind(dataset_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(match row {
            Some(r) => OpenCounts {
                views: r.try_get(0)?,
                downloads: r.try_get(1)?,
                api_calls: r.try_get(2)?,
            },
            None => OpenCounts::default(),
        })
    }
}
