//! Data requests and the grants that approving them provisions.

use std::collections::BTreeSet;

use chrono::{NaiveDate, Utc};
use reservoir_catalog::{Dataset, PiiStatus, format_ts};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::mask::Mask;
use crate::model::*;
use crate::{Access, Error, Result};

const REQUEST_COLUMNS: &str = "id, requester, dataset_id, columns, purpose, period_start, \
     period_end, volume, status, decided_by, decided_at, reason, grant_id, created_at, updated_at";

const GRANT_COLUMNS: &str = "id, user_id, dataset_id, columns, row_filter, purpose, request_id, \
     starts_at, expires_at, hours, rate_per_minute, row_quota, rows_served, created_by, \
     created_at, revoked_at, revoked_by";

fn request_from_row(r: &AnyRow) -> Result<AccessRequest> {
    let status: String = r.try_get("status")?;
    Ok(AccessRequest {
        id: r.try_get("id")?,
        requester: r.try_get("requester")?,
        dataset_id: r.try_get("dataset_id")?,
        columns: serde_json::from_str(&r.try_get::<String, _>("columns")?)?,
        purpose: r.try_get("purpose")?,
        period_start: r.try_get("period_start")?,
        period_end: r.try_get("period_end")?,
        volume: r.try_get("volume")?,
        status: status.parse()?,
        decided_by: r.try_get("decided_by")?,
        decided_at: r.try_get("decided_at")?,
        reason: r.try_get("reason")?,
        grant_id: r.try_get("grant_id")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn grant_from_row(r: &AnyRow) -> Result<Grant> {
    Ok(Grant {
        id: r.try_get("id")?,
        user_id: r.try_get("user_id")?,
        dataset_id: r.try_get("dataset_id")?,
        columns: serde_json::from_str(&r.try_get::<String, _>("columns")?)?,
        row_filter: r.try_get("row_filter")?,
        purpose: r.try_get("purpose")?,
        request_id: r.try_get("request_id")?,
        starts_at: r.try_get("starts_at")?,
        expires_at: r.try_get("expires_at")?,
        hours: r.try_get("hours")?,
        rate_per_minute: r.try_get("rate_per_minute")?,
        row_quota: r.try_get("row_quota")?,
        rows_served: r.try_get("rows_served")?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        revoked_at: r.try_get("revoked_at")?,
        revoked_by: r.try_get("revoked_by")?,
    })
}

fn parse_day(what: &'static str, text: &str) -> Result<NaiveDate> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .map_err(|_| Error::invalid(what, format!("{text:?}: expected a date as YYYY-MM-DD")))
}

/// Parses `HH-HH` (hours of the day, UTC+8; the end is exclusive, `08-20` = 08:00–19:59).
pub fn parse_hours(text: &str) -> Result<(u32, u32)> {
    let bad = || Error::invalid("hours", format!("{text:?}: expected HH-HH, e.g. 08-20"));
    let (a, b) = text.trim().split_once('-').ok_or_else(bad)?;
    let a: u32 = a.trim().parse().map_err(|_| bad())?;
    let b: u32 = b.trim().parse().map_err(|_| bad())?;
    if a >= 24 || b == 0 || b > 24 || a >= b {
        return Err(bad());
    }
    Ok((a, b))
}

/// What a steward's approval sets; everything left out takes the request's value or a default.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
pub struct Approval {
    /// Narrows the requested columns (must be a subset of them).
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// Masks that differ from the defaults (chosen from each field's PII kind).
    #[serde(default)]
    pub masks: std::collections::BTreeMap<String, Mask>,
    /// A SQL condition over the dataset's columns, e.g. `street = '方松街道'`.
    #[serde(default)]
    pub row_filter: Option<String>,
    /// RFC 3339; default: the end of the requested period.
    #[serde(default)]
    pub expires_at: Option<String>,
    #[serde(default)]
    pub hours: Option<String>,
    #[serde(default)]
    pub rate_per_minute: Option<i64>,
    /// Default: the requested volume.
    #[serde(default)]
    pub row_quota: Option<i64>,
    /// A note to the requester on what was narrowed.
    #[serde(default)]
    pub note: String,
}

impl Access {
    async fn dataset_of(&self, dataset_id: i64) -> Result<Dataset> {
        self.catalog()
            .dataset_by_id(dataset_id)
            .await?
            .ok_or_else(|| Error::NotFound {
                kind: "dataset",
                name: dataset_id.to_string(),
            })
    }

    async fn field_names(&self, dataset_id: i64) -> Result<Vec<String>> {
        Ok(self
            .catalog()
            .fields(dataset_id)
            .await?
            .into_iter()
            .map(|f| f.name)
            .collect())
    }

    async fn check_columns(&self, dataset: &Dataset, columns: &[String]) -> Result<()> {
        if columns.is_empty() {
            return Err(Error::invalid("columns", "name at least one column"));
        }
        let known = self.field_names(dataset.id).await?;
        for c in columns {
            if !known.contains(c) {
                return Err(Error::invalid(
                    "columns",
                    format!(
                        "{}.{} has no column {c:?}; it has: {}",
                        dataset.unit_id,
                        dataset.name,
                        known.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The default mask of each column: from its PII kind (unless a steward rejected it) and the
    /// dataset's sensitivity. At the highest level (4) every personal field is a keyed hash —
    /// still joinable, never readable; below it, the kind's usual mask (`110101********1234`,
    /// `138****1234`, `王**`, the address to its street).
    pub async fn default_masks(&self, dataset_id: i64) -> Result<Vec<(String, Mask)>> {
        let dataset = self.dataset_of(dataset_id).await?;
        let pii = self.catalog().pii(dataset_id).await?;
        Ok(self
            .field_names(dataset_id)
            .await?
            .into_iter()
            .map(|name| {
                let mask = pii
                    .iter()
                    .find(|m| m.field == name && m.status != PiiStatus::Rejected)
                    .map(|m| match Mask::for_pii(m.kind.as_str()) {
                        Mask::None => Mask::None,
                        _ if dataset.sensitivity >= 4 => Mask::Hash,
                        mask => mask,
                    })
                    .unwrap_or(Mask::None);
                (name, mask)
            })
            .collect())
    }

    // --------------------------------------------------------------- requests

    /// Files a request for a dataset on behalf of `requester`.
    pub async fn file_request(
        &self,
        requester: &Principal,
        new: &NewRequest,
    ) -> Result<AccessRequest> {
        let Some(user) = requester.user.as_deref() else {
            return Err(Error::Unauthorized("log in to request data".into()));
        };
        if requester.grant_scope.is_some() {
            return Err(Error::Forbidden(
                "a token scoped to a grant cannot file requests".into(),
            ));
        }
        let dataset = self.dataset_of(new.dataset_id).await?;
        self.check_columns(&dataset, &new.columns).await?;
        if new.purpose.trim().chars().count() < 4 {
            return Err(Error::invalid(
                "purpose",
                "say what the data is for (at least 4 characters)",
            ));
        }
        let start = parse_day("period start", &new.period_start)?;
        let end = parse_day("period end", &new.period_end)?;
        if end < start {
            return Err(Error::invalid(
                "period",
                format!("ends ({end}) before it starts ({start})"),
            ));
        }
        if end < Utc::now().date_naive() {
            return Err(Error::invalid("period", format!("ended already ({end})")));
        }
        if let Some(v) = new.volume
            && v <= 0
        {
            return Err(Error::invalid(
                "volume",
                format!("{v}: expected a positive row count"),
            ));
        }
        let mut columns = new.columns.clone();
        columns.dedup();
        let now = format_ts(Utc::now());
        let row = sqlx::query(
            "INSERT INTO access_requests (requester, dataset_id, columns, purpose, period_start,
                 period_end, volume, status, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $8) RETURNING id",
        )
        .bind(user)
        .bind(dataset.id)
        .bind(serde_json::to_string(&columns)?)
        .bind(new.purpose.trim())
        .bind(start.to_string())
        .bind(end.to_string())
        .bind(new.volume)
        .bind(&now)
        .fetch_one(self.pool())
        .await?;
        let id: i64 = row.try_get(0)?;
        self.request(id).await?.ok_or_else(|| Error::NotFound {
            kind: "request",
            name: id.to_string(),
        })
    }

    pub async fn request(&self, id: i64) -> Result<Option<AccessRequest>> {
        let row = sqlx::query(&format!(
            "SELECT {REQUEST_COLUMNS} FROM access_requests WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(request_from_row).transpose()
    }

    /// The requests `principal` may see: its own, and those for datasets of units it stewards
    /// (operators and auditors see all). Newest first.
    pub async fn requests_for(&self, principal: &Principal) -> Result<Vec<AccessRequest>> {
        let rows = sqlx::query(&format!(
            "SELECT {REQUEST_COLUMNS} FROM access_requests ORDER BY id DESC"
        ))
        .fetch_all(self.pool())
        .await?;
        let all = rows
            .iter()
            .map(request_from_row)
            .collect::<Result<Vec<_>>>()?;
        if principal.grant_scope.is_some() {
            return Ok(Vec::new());
        }
        if matches!(principal.role, Role::Operator | Role::Auditor) {
            return Ok(all);
        }
        let mut out = Vec::new();
        for r in all {
            let mine = principal.user.as_deref() == Some(r.requester.as_str());
            let stewarded = match principal.unit_id.as_deref() {
                Some(_) if principal.role == Role::Steward => {
                    let d = self.dataset_of(r.dataset_id).await?;
                    principal.stewards(&d.unit_id)
                }
                _ => false,
            };
            if mine || stewarded {
                out.push(r);
            }
        }
        Ok(out)
    }

    async fn pending_request_for_decision(
        &self,
        id: i64,
        by: &Principal,
    ) -> Result<(AccessRequest, Dataset)> {
        let request = self.request(id).await?.ok_or_else(|| Error::NotFound {
            kind: "request",
            name: id.to_string(),
        })?;
        let dataset = self.dataset_of(request.dataset_id).await?;
        if !by.stewards(&dataset.unit_id) {
            return Err(Error::Forbidden(format!(
                "only a steward of unit {:?} (or an operator) decides requests for {}.{}",
                dataset.unit_id, dataset.unit_id, dataset.name
            )));
        }
        if request.status != RequestStatus::Pending {
            return Err(Error::Conflict(format!(
                "request {id} is {} already",
                request.status.as_str()
            )));
        }
        Ok((request, dataset))
    }

    /// Approves a request and provisions its grant in one step. The caller validates the row
    /// filter against the table (the query layer can); an unparsable filter hides the table.
    pub async fn approve(
        &self,
        id: i64,
        by: &Principal,
        approval: &Approval,
    ) -> Result<(AccessRequest, Grant)> {
        let (request, dataset) = self.pending_request_for_decision(id, by).await?;
        if by.user.as_deref() == Some(request.requester.as_str()) {
            return Err(Error::Forbidden(
                "a request is decided by someone other than its requester".into(),
            ));
        }
        let columns = match &approval.columns {
            Some(narrowed) => {
                for c in narrowed {
                    if !request.columns.contains(c) {
                        return Err(Error::invalid(
                            "columns",
                            format!(
                                "{c:?} was not requested; an approval can only narrow the request"
                            ),
                        ));
                    }
                }
                narrowed.clone()
            }
            None => request.columns.clone(),
        };
        for c in approval.masks.keys() {
            if !columns.contains(c) {
                return Err(Error::invalid(
                    "masks",
                    format!("a mask for {c:?}, which is not among the granted columns"),
                ));
            }
        }
        let defaults = self.default_masks(dataset.id).await?;
        let grant_columns = columns
            .iter()
            .map(|name| GrantColumn {
                name: name.clone(),
                mask: approval.masks.get(name).copied().unwrap_or_else(|| {
                    defaults
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, m)| *m)
                        .unwrap_or(Mask::None)
                }),
            })
            .collect();
        let expires_at = match &approval.expires_at {
            Some(e) => e.clone(),
            None => {
                let end = parse_day("period end", &request.period_end)?;
                // The end of the period's last day, China Standard Time.
                let end = end
                    .and_hms_opt(16, 0, 0)
                    .map(|t| t.and_utc())
                    .unwrap_or_else(Utc::now);
                format_ts(end)
            }
        };
        // The grant starts with the requested period: its first day from 00:00 China Standard
        // Time (16:00 UTC the day before); a period already begun starts now.
        let start = parse_day("period start", &request.period_start)?;
        let starts_at = start
            .pred_opt()
            .and_then(|d| d.and_hms_opt(16, 0, 0))
            .map(|t| t.and_utc())
            .filter(|t| *t > Utc::now())
            .map(format_ts);
        let grant = self
            .create_grant(
                by,
                &NewGrant {
                    user_id: request.requester.clone(),
                    dataset_id: dataset.id,
                    columns: grant_columns,
                    row_filter: approval.row_filter.clone(),
                    purpose: request.purpose.clone(),
                    request_id: Some(request.id),
                    starts_at,
                    expires_at,
                    hours: approval.hours.clone(),
                    rate_per_minute: approval.rate_per_minute,
                    row_quota: approval.row_quota.or(request.volume),
                },
            )
            .await?;
        let now = format_ts(Utc::now());
        sqlx::query(
            "UPDATE access_requests SET status = 'approved', decided_by = $1, decided_at = $2,
                 reason = $3, grant_id = $4, updated_at = $2 WHERE id = $5 AND status = 'pending'",
        )
        .bind(by.name())
        .bind(&now)
        .bind(&approval.note)
        .bind(grant.id)
        .bind(id)
        .execute(self.pool())
        .await?;
        let request = self.request(id).await?.ok_or_else(|| Error::NotFound {
            kind: "request",
            name: id.to_string(),
        })?;
        Ok((request, grant))
    }

    /// Rejects a request; the reason is required and shown to the requester.
    pub async fn reject(&self, id: i64, by: &Principal, reason: &str) -> Result<AccessRequest> {
        if reason.trim().is_empty() {
            return Err(Error::invalid("reason", "say why the request is rejected"));
        }
        self.pending_request_for_decision(id, by).await?;
        self.set_request_status(id, RequestStatus::Rejected, by.name(), reason)
            .await
    }

    /// Withdraws one's own pending request.
    pub async fn withdraw(&self, id: i64, by: &Principal) -> Result<AccessRequest> {
        let request = self.request(id).await?.ok_or_else(|| Error::NotFound {
            kind: "request",
            name: id.to_string(),
        })?;
        if by.user.as_deref() != Some(request.requester.as_str()) {
            return Err(Error::Forbidden(
                "only the requester withdraws a request".into(),
            ));
        }
        if request.status != RequestStatus::Pending {
            return Err(Error::Conflict(format!(
                "request {id} is {} already",
                request.status.as_str()
            )));
        }
        self.set_request_status(id, RequestStatus::Withdrawn, by.name(), "")
            .await
    }

    async fn set_request_status(
        &self,
        id: i64,
        status: RequestStatus,
        by: &str,
        reason: &str,
    ) -> Result<AccessRequest> {
        let now = format_ts(Utc::now());
        sqlx::query(
            "UPDATE access_requests SET status = $1, decided_by = $2, decided_at = $3, reason = $4,
                 updated_at = $3 WHERE id = $5",
        )
        .bind(status.as_str())
        .bind(by)
        .bind(&now)
        .bind(reason.trim())
        .bind(id)
        .execute(self.pool())
        .await?;
        self.request(id).await?.ok_or_else(|| Error::NotFound {
            kind: "request",
            name: id.to_string(),
        })
    }

    // ----------------------------------------------------------------- grants

    /// Creates a grant directly (approvals call this too). `by` must steward the dataset's unit.
    pub async fn create_grant(&self, by: &Principal, new: &NewGrant) -> Result<Grant> {
        let dataset = self.dataset_of(new.dataset_id).await?;
        if !by.stewards(&dataset.unit_id) {
            return Err(Error::Forbidden(format!(
                "only a steward of unit {:?} (or an operator) grants access to {}.{}",
                dataset.unit_id, dataset.unit_id, dataset.name
            )));
        }
        let user = self
            .user(&new.user_id)
            .await?
            .ok_or_else(|| Error::NotFound {
                kind: "account",
                name: new.user_id.clone(),
            })?;
        if by.user.as_deref() == Some(user.id.as_str()) {
            return Err(Error::Forbidden(
                "nobody grants themselves access; another steward or an operator must".into(),
            ));
        }
        let names: Vec<String> = new.columns.iter().map(|c| c.name.clone()).collect();
        self.check_columns(&dataset, &names).await?;
        if names.iter().collect::<BTreeSet<_>>().len() != names.len() {
            return Err(Error::invalid("columns", "a column is named twice"));
        }
        let now = Utc::now();
        let starts_at = match &new.starts_at {
            Some(s) => format_ts(reservoir_catalog::parse_ts(s).map_err(|_| {
                Error::invalid(
                    "starts_at",
                    format!("{s:?}: expected RFC 3339, e.g. 2026-12-04T08:00:00Z"),
                )
            })?),
            None => format_ts(now),
        };
        let expires = reservoir_catalog::parse_ts(&new.expires_at).map_err(|_| {
            Error::invalid(
                "expires_at",
                format!(
                    "{:?}: expected RFC 3339, e.g. 2027-06-30T16:00:00Z",
                    new.expires_at
                ),
            )
        })?;
        if expires <= now {
            return Err(Error::invalid(
                "expires_at",
                format!("{} is in the past", new.expires_at),
            ));
        }
        if let Some(h) = &new.hours {
            parse_hours(h)?;
        }
        for (what, v) in [
            ("rate_per_minute", new.rate_per_minute),
            ("row_quota", new.row_quota),
        ] {
            if let Some(v) = v
                && v <= 0
            {
                return Err(Error::invalid(
                    what,
                    format!("{v}: expected a positive number"),
                ));
            }
        }
        let filter = new
            .row_filter
            .as_deref()
            .map(str::trim)
            .filter(|f| !f.is_empty());
        let row = sqlx::query(
            "INSERT INTO grants (user_id, dataset_id, columns, row_filter, purpose, request_id,
                 starts_at, expires_at, hours, rate_per_minute, row_quota, created_by, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id",
        )
        .bind(&user.id)
        .bind(dataset.id)
        .bind(serde_json::to_string(&new.columns)?)
        .bind(filter)
        .bind(new.purpose.trim())
        .bind(new.request_id)
        .bind(starts_at)
        .bind(format_ts(expires))
        .bind(new.hours.as_deref())
        .bind(new.rate_per_minute)
        .bind(new.row_quota)
        .bind(by.name())
        .bind(format_ts(now))
        .fetch_one(self.pool())
        .await?;
        let id: i64 = row.try_get(0)?;
        self.grant(id).await?.ok_or_else(|| Error::NotFound {
            kind: "grant",
            name: id.to_string(),
        })
    }

    pub async fn grant(&self, id: i64) -> Result<Option<Grant>> {
        let row = sqlx::query(&format!("SELECT {GRANT_COLUMNS} FROM grants WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(grant_from_row).transpose()
    }

    /// Grants, optionally of one account and/or one dataset, newest first.
    pub async fn grants(
        &self,
        user_id: Option<&str>,
        dataset_id: Option<i64>,
    ) -> Result<Vec<Grant>> {
        let rows = sqlx::query(&format!(
            "SELECT {GRANT_COLUMNS} FROM grants
             WHERE ($1 IS NULL OR user_id = $1) AND ($2 IS NULL OR dataset_id = $2)
             ORDER BY id DESC"
        ))
        .bind(user_id)
        .bind(dataset_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(grant_from_row).collect()
    }

    /// Revokes a grant at once; tokens scoped to it stop working with it.
    pub async fn revoke_grant(&self, id: i64, by: &Principal) -> Result<Grant> {
        let grant = self.grant(id).await?.ok_or_else(|| Error::NotFound {
            kind: "grant",
            name: id.to_string(),
        })?;
        let dataset = self.dataset_of(grant.dataset_id).await?;
        if !by.stewards(&dataset.unit_id) {
            return Err(Error::Forbidden(format!(
                "only a steward of unit {:?} (or an operator) revokes grants on its data",
                dataset.unit_id
            )));
        }
        if grant.revoked_at.is_some() {
            return Err(Error::Conflict(format!("grant {id} is revoked already")));
        }
        let now = format_ts(Utc::now());
        sqlx::query("UPDATE grants SET revoked_at = $1, revoked_by = $2 WHERE id = $3")
            .bind(&now)
            .bind(by.name())
            .bind(id)
            .execute(self.pool())
            .await?;
        sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE grant_id = $2 AND revoked_at IS NULL",
        )
        .bind(&now)
        .bind(id)
        .execute(self.pool())
        .await?;
        self.grant(id).await?.ok_or_else(|| Error::NotFound {
            kind: "grant",
            name: id.to_string(),
        })
    }

    /// Counts rows served under a grant against its quota.
    pub async fn add_rows_served(&self, grant_id: i64, rows: i64) -> Result<()> {
        sqlx::query("UPDATE grants SET rows_served = rows_served + $1 WHERE id = $2")
            .bind(rows)
            .bind(grant_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_parse() {
        assert_eq!(parse_hours("08-20").unwrap(), (8, 20));
        assert_eq!(parse_hours("0-24").unwrap(), (0, 24));
        for bad in ["20-08", "8", "08-25", "a-b", "08-08"] {
            let err = parse_hours(bad).unwrap_err().to_string();
            assert!(err.contains("expected HH-HH"), "{bad}: {err}");
        }
    }
}
