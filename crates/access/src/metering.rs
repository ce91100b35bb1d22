//! Usage metering: rows and bytes served per principal, dataset and day.

use chrono::{Duration, Utc};
use serde::Serialize;
use sqlx::Row;

use crate::{Access, Result};

/// One principal's use of one dataset on one day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Usage {
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    pub principal: String,
    pub dataset_id: i64,
    pub requests: i64,
    pub rows_served: i64,
    pub bytes_served: i64,
}

impl Access {
    /// Adds one served request to the day's meter.
    pub async fn meter(
        &self,
        principal: &str,
        dataset_id: i64,
        rows: i64,
        bytes: i64,
    ) -> Result<()> {
        let day = Utc::now().date_naive().to_string();
        sqlx::query(
            "INSERT INTO usage_daily (day, principal, dataset_id, requests, rows_served, bytes_served)
             VALUES ($1, $2, $3, 1, $4, $5)
             ON CONFLICT (day, principal, dataset_id) DO UPDATE SET
                 requests = usage_daily.requests + 1,
                 rows_served = usage_daily.rows_served + excluded.rows_served,
                 bytes_served = usage_daily.bytes_served + excluded.bytes_served",
        )
        .bind(day)
        .bind(principal)
        .bind(dataset_id)
        .bind(rows)
        .bind(bytes)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Usage between two days (inclusive, `YYYY-MM-DD`), optionally of one principal or dataset.
    pub async fn usage(
        &self,
        from: &str,
        to: &str,
        principal: Option<&str>,
        dataset_id: Option<i64>,
    ) -> Result<Vec<Usage>> {
        let rows = sqlx::query(
            "SELECT day, principal, dataset_id, requests, rows_served, bytes_served
             FROM usage_daily
             WHERE day >= $1 AND day <= $2 AND ($3 IS NULL OR principal = $3)
               AND ($4 IS NULL OR dataset_id = $4)
             ORDER BY day, principal, dataset_id",
        )
        .bind(from)
        .bind(to)
        .bind(principal)
        .bind(dataset_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Usage {
                    day: r.try_get("day")?,
                    principal: r.try_get("principal")?,
                    dataset_id: r.try_get("dataset_id")?,
                    requests: r.try_get("requests")?,
                    rows_served: r.try_get("rows_served")?,
                    bytes_served: r.try_get("bytes_served")?,
                })
            })
            .collect()
    }

    /// A principal's average rows per active day over the 30 days before today (`None`: no
    /// history yet), the baseline of the volume alert.
    pub async fn daily_rows_baseline(&self, principal: &str) -> Result<Option<f64>> {
        let today = Utc::now().date_naive();
        let from = (today - Duration::days(30)).to_string();
        let row = sqlx::query(
            "SELECT COUNT(DISTINCT day), CAST(COALESCE(SUM(rows_served), 0) AS BIGINT) FROM usage_daily
             WHERE principal = $1 AND day >= $2 AND day < $3",
        )
        .bind(principal)
        .bind(from)
        .bind(today.to_string())
        .fetch_one(self.pool())
        .await?;
        let days: i64 = row.try_get(0)?;
        let rows: i64 = row.try_get(1)?;
        Ok((days > 0).then(|| rows as f64 / days as f64))
    }

    /// Rows a principal has been served today.
    pub async fn rows_today(&self, principal: &str) -> Result<i64> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(rows_served), 0) AS BIGINT) FROM usage_daily WHERE principal = $1 AND day = $2",
        )
        .bind(principal)
        .bind(Utc::now().date_naive().to_string())
        .fetch_one(self.pool())
        .await?;
        Ok(row.try_get(0)?)
    }
}
