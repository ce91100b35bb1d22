//! What a principal may see: the input of the query layer's policy engine.

use std::collections::BTreeMap;

use chrono::{FixedOffset, Timelike, Utc};
use reservoir_catalog::{Dataset, format_ts};
use serde::Serialize;

use crate::grants::parse_hours;
use crate::mask::Mask;
use crate::model::*;
use crate::{Access, Result};

/// How a principal sees one dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TableAccess {
    /// Every column as stored, every row, and the dataset's quarantine and quality tables.
    Full,
    /// Through a grant: only its columns, masked; only rows its filter passes.
    Granted {
        grant_id: i64,
        columns: Vec<GrantColumn>,
        row_filter: Option<String>,
    },
}

impl TableAccess {
    /// The columns and masks, or `None` for full access.
    pub fn columns(&self) -> Option<&[GrantColumn]> {
        match self {
            Self::Full => None,
            Self::Granted { columns, .. } => Some(columns),
        }
    }

    pub fn grant_id(&self) -> Option<i64> {
        match self {
            Self::Full => None,
            Self::Granted { grant_id, .. } => Some(*grant_id),
        }
    }

    /// Whether `column` is visible, and how.
    pub fn mask_of(&self, column: &str) -> Option<Mask> {
        match self {
            Self::Full => Some(Mask::None),
            Self::Granted { columns, .. } => {
                columns.iter().find(|c| c.name == column).map(|c| c.mask)
            }
        }
    }
}

/// A grant that exists but does not apply now, and why (for the audit log and alerts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Withheld {
    pub grant_id: i64,
    pub dataset_id: i64,
    pub reason: String,
}

/// Everything a principal may read, resolved once per request or session.
#[derive(Debug, Clone, Default)]
pub struct Visibility {
    /// Whose it is (keyed-hash masks are computed with this principal's own key).
    principal: Option<String>,
    /// Every dataset, unmasked (operators).
    all: bool,
    /// Units whose datasets are visible unmasked (a steward's own unit).
    full_units: Vec<String>,
    /// Dataset id → the grant that applies.
    grants: BTreeMap<i64, Grant>,
    withheld: Vec<Withheld>,
}

impl Visibility {
    /// Sees everything (the local CLI, operators).
    pub fn everything() -> Self {
        Self {
            all: true,
            ..Self::default()
        }
    }

    /// Sees nothing.
    pub fn nothing() -> Self {
        Self::default()
    }

    /// How `dataset` is visible, if at all. Layers derived from a raw table (quarantine,
    /// quality) are visible only with full access to it.
    pub fn table(&self, dataset: &Dataset) -> Option<TableAccess> {
        if self.all || self.full_units.contains(&dataset.unit_id) {
            return Some(TableAccess::Full);
        }
        self.grants.get(&dataset.id).map(|g| TableAccess::Granted {
            grant_id: g.id,
            columns: g.columns.clone(),
            row_filter: g.row_filter.clone(),
        })
    }

    pub fn sees_everything(&self) -> bool {
        self.all
    }

    /// The principal this visibility belongs to (`None`: the local CLI, or nobody).
    pub fn principal(&self) -> Option<&str> {
        self.principal.as_deref()
    }

    /// The grants in force, by dataset id.
    pub fn grants(&self) -> &BTreeMap<i64, Grant> {
        &self.grants
    }

    /// Grants that exist but are withheld now (outside hours, quota used up).
    pub fn withheld(&self) -> &[Withheld] {
        &self.withheld
    }
}

/// Whether `now` (UTC) falls inside `HH-HH` in China Standard Time.
fn within_hours(hours: &str, now: chrono::DateTime<Utc>) -> bool {
    let Ok((from, to)) = parse_hours(hours) else {
        return false;
    };
    let cst = FixedOffset::east_opt(8 * 3600).map(|tz| now.with_timezone(&tz).hour());
    cst.is_some_and(|h| from <= h && h < to)
}

impl Access {
    /// Resolves what `principal` may read now.
    pub async fn visibility(&self, principal: &Principal) -> Result<Visibility> {
        let mut vis = Visibility {
            principal: principal.user.clone(),
            ..Visibility::default()
        };
        if principal.grant_scope.is_none() {
            match principal.role {
                Role::Operator => {
                    return Ok(Visibility {
                        principal: principal.user.clone(),
                        all: true,
                        ..Visibility::default()
                    });
                }
                Role::Steward => vis.full_units.extend(principal.unit_id.clone()),
                Role::Consumer | Role::Auditor | Role::Public => {}
            }
        }
        let Some(user) = principal.user.as_deref() else {
            return Ok(vis);
        };
        if matches!(principal.role, Role::Auditor | Role::Public) {
            return Ok(vis);
        }
        let now = Utc::now();
        let stamp = format_ts(now);
        // Newest first: where several grants cover one dataset, the newest in force applies —
        // and when it is withheld (hours, quota), no older one stands in for it. A token scoped
        // to a grant sees through that grant only while it is the one that applies: scoped to
        // a grant a newer one has superseded, it sees nothing of the dataset.
        let mut decided = std::collections::BTreeSet::new();
        for grant in self.grants(Some(user), None).await? {
            if !grant.active_at(&stamp) || !decided.insert(grant.dataset_id) {
                continue;
            }
            if principal.grant_scope.is_some_and(|g| g != grant.id) {
                continue;
            }
            let withhold = |reason: String| Withheld {
                grant_id: grant.id,
                dataset_id: grant.dataset_id,
                reason,
            };
            if let Some(h) = &grant.hours
                && !within_hours(h, now)
            {
                vis.withheld
                    .push(withhold(format!("outside the grant's hours ({h}, UTC+8)")));
                continue;
            }
            if grant.rows_left() == Some(0) {
                vis.withheld.push(withhold(format!(
                    "the grant's quota of {} rows is used up",
                    grant.row_quota.unwrap_or_default()
                )));
                continue;
            }
            vis.grants.insert(grant.dataset_id, grant);
        }
        Ok(vis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn hours_are_china_standard_time() {
        // 01:00 UTC is 09:00 in Beijing.
        let t = Utc.with_ymd_and_hms(2026, 12, 4, 1, 0, 0).unwrap();
        assert!(within_hours("08-20", t));
        assert!(!within_hours("10-20", t));
        // 12:00 UTC is 20:00: the end hour is excluded.
        let t = Utc.with_ymd_and_hms(2026, 12, 4, 12, 0, 0).unwrap();
        assert!(!within_hours("08-20", t));
    }
}
