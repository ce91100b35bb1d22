//! The hash-chained audit log.
//!
//! Every entry carries `hash = SHA-256(prev_hash ␟ seq ␟ at ␟ actor ␟ … ␟ detail)` and the hash of
//! the entry before it. `seq` counts up from 1 with no gaps. Editing an entry breaks its own hash;
//! deleting one leaves a gap; inserting or reordering breaks the link to the entry before.
//! [`Access::verify_audit`] walks the chain and names the first entry that does not hold.
//! Deleting entries at the end leaves a shorter chain that still verifies: compare the head
//! `verify` prints with one recorded elsewhere (the operation report prints it monthly).

use chrono::Utc;
use reservoir_catalog::format_ts;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Access, Error, Result};

/// The `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// How an audited action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Denied,
    Error,
}

impl Outcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Denied => "denied",
            Self::Error => "error",
        }
    }
}

/// What happened, before it is chained.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEvent {
    /// Who: an account, `public`, or `local` (the CLI on the home's machine).
    pub actor: String,
    /// What, e.g. `data.read`, `sql.query`, `grant.create`, `request.approve`, `user.role`, `login`.
    pub action: String,
    /// On what: a dataset (`unit.name`), an account, a request, a setting.
    pub target: String,
    /// Columns read, comma-separated.
    pub columns: String,
    pub row_count: Option<i64>,
    pub grant_id: Option<i64>,
    pub purpose: String,
    /// Where from: the client address and program, or `cli`.
    pub client: String,
    pub outcome: Option<Outcome>,
    /// Anything else, as JSON text (the SQL text of a query, the reason of a denial).
    pub detail: String,
}

impl AuditEvent {
    pub fn new(actor: &str, action: &str, target: &str) -> Self {
        Self {
            actor: actor.to_string(),
            action: action.to_string(),
            target: target.to_string(),
            ..Self::default()
        }
    }
}

/// An entry of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub columns: String,
    pub row_count: Option<i64>,
    pub grant_id: Option<i64>,
    pub purpose: String,
    pub client: String,
    pub outcome: String,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditEntry {
    /// The hash this entry's content and position call for, in an unkeyed chain.
    pub fn expected_hash(&self) -> String {
        self.expected_hash_with(None)
    }

    /// The hash this entry's content and position call for: HMAC-SHA-256 with the audit key
    /// when the chain is keyed (a home's always is), so that someone who can edit the database
    /// but not read the key cannot recompute the chain after an edit.
    pub fn expected_hash_with(&self, key: Option<&crate::mask::MaskKey>) -> String {
        let opt = |v: Option<i64>| v.map(|n| n.to_string()).unwrap_or_default();
        let text = [
            self.prev_hash.as_str(),
            &self.seq.to_string(),
            &self.at,
            &self.actor,
            &self.action,
            &self.target,
            &self.columns,
            &opt(self.row_count),
            &opt(self.grant_id),
            &self.purpose,
            &self.client,
            &self.outcome,
            &self.detail,
        ]
        // Unit separator: cannot be confused with content shifted between fields by an editor,
        // since every field is also length-prefixed.
        .iter()
        .map(|f| format!("{}:{f}", f.len()))
        .collect::<Vec<_>>()
        .join("\u{1f}");
        match key {
            Some(k) => k.mac_hex(&text),
            None => crate::secret::sha256_hex(&text),
        }
    }
}

/// Filters of the auditor's view.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
pub struct AuditFilter {
    pub actor: Option<String>,
    /// Prefix of the action, e.g. `grant.` or `data.read`.
    pub action: Option<String>,
    /// Substring of the target, e.g. a dataset name.
    pub target: Option<String>,
    pub outcome: Option<String>,
    /// RFC 3339 or a date; entries at or after.
    pub since: Option<String>,
    /// Entries before.
    pub until: Option<String>,
    pub limit: Option<i64>,
}

/// What a walk of the chain found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AuditVerdict {
    /// Entries checked.
    pub entries: i64,
    /// The last entry's seq and hash (compare with a copy kept elsewhere).
    pub head_seq: Option<i64>,
    pub head_hash: Option<String>,
    /// The first entry that does not hold, and why; `None`: the chain is intact.
    pub broken: Option<BrokenLink>,
}

/// Where and how the chain is broken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct BrokenLink {
    pub seq: i64,
    pub problem: String,
}

fn entry_from_row(r: &AnyRow) -> Result<AuditEntry> {
    Ok(AuditEntry {
        seq: r.try_get("seq")?,
        at: r.try_get("at")?,
        actor: r.try_get("actor")?,
        action: r.try_get("action")?,
        target: r.try_get("target")?,
        columns: r.try_get("columns")?,
        row_count: r.try_get("row_count")?,
        grant_id: r.try_get("grant_id")?,
        purpose: r.try_get("purpose")?,
        client: r.try_get("client")?,
        outcome: r.try_get("outcome")?,
        detail: r.try_get("detail")?,
        prev_hash: r.try_get("prev_hash")?,
        hash: r.try_get("hash")?,
    })
}

const ENTRY_COLUMNS: &str = "seq, at, actor, action, target, columns, row_count, grant_id, \
     purpose, client, outcome, detail, prev_hash, hash";

impl Access {
    /// Appends an event to the chain and returns the entry.
    ///
    /// Writers in one process take turns; writers in several processes race on the primary key
    /// (`seq`) and the loser re-reads the head and tries again.
    pub async fn audit(&self, event: AuditEvent) -> Result<AuditEntry> {
        let event = AuditEvent {
            actor: clip(&event.actor, 128),
            target: clip(&event.target, 512),
            columns: clip(&event.columns, 4096),
            purpose: clip(&event.purpose, 1024),
            client: clip(&event.client, 256),
            detail: clip(&event.detail, 65_536),
            ..event
        };
        let _turn = self.audit_lock().lock().await;
        for _attempt in 0..20 {
            let head = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
                .fetch_optional(self.pool())
                .await?;
            let (seq, prev_hash) = match head {
                Some(r) => (
                    r.try_get::<i64, _>("seq")? + 1,
                    r.try_get::<String, _>("hash")?,
                ),
                None => (1, GENESIS.to_string()),
            };
            let mut entry = AuditEntry {
                seq,
                at: format_ts(Utc::now()),
                actor: event.actor.clone(),
                action: event.action.clone(),
                target: event.target.clone(),
                columns: event.columns.clone(),
                row_count: event.row_count,
                grant_id: event.grant_id,
                purpose: event.purpose.clone(),
                client: event.client.clone(),
                outcome: event.outcome.unwrap_or(Outcome::Ok).as_str().to_string(),
                detail: event.detail.clone(),
                prev_hash,
                hash: String::new(),
            };
            entry.hash = entry.expected_hash_with(self.audit_key());
            let inserted = sqlx::query(&format!(
                "INSERT INTO audit_log ({ENTRY_COLUMNS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
            ))
            .bind(entry.seq)
            .bind(&entry.at)
            .bind(&entry.actor)
            .bind(&entry.action)
            .bind(&entry.target)
            .bind(&entry.columns)
            .bind(entry.row_count)
            .bind(entry.grant_id)
            .bind(&entry.purpose)
            .bind(&entry.client)
            .bind(&entry.outcome)
            .bind(&entry.detail)
            .bind(&entry.prev_hash)
            .bind(&entry.hash)
            .execute(self.pool())
            .await;
            match inserted {
                Ok(_) => return Ok(entry),
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Conflict(
            "the audit log is contended by other writers; the entry was not written".into(),
        ))
    }

    /// Entries matching `filter`, newest first (at most `limit`, default 1000).
    pub async fn audit_entries(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>> {
        let action = filter
            .action
            .as_ref()
            .map(|a| format!("{}%", like_escape(a)));
        let target = filter
            .target
            .as_ref()
            .map(|t| format!("%{}%", like_escape(t)));
        let rows = sqlx::query(&format!(
            "SELECT {ENTRY_COLUMNS} FROM audit_log
             WHERE ($1 IS NULL OR actor = $1)
               AND ($2 IS NULL OR action LIKE $2 ESCAPE '\\')
               AND ($3 IS NULL OR target LIKE $3 ESCAPE '\\')
               AND ($4 IS NULL OR outcome = $4)
               AND ($5 IS NULL OR at >= $5)
               AND ($6 IS NULL OR at < $6)
             ORDER BY seq DESC LIMIT $7"
        ))
        .bind(filter.actor.as_deref())
        .bind(action)
        .bind(target)
        .bind(filter.outcome.as_deref())
        .bind(filter.since.as_deref())
        .bind(filter.until.as_deref())
        .bind(filter.limit.unwrap_or(1000).clamp(1, 100_000))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(entry_from_row).collect()
    }

    /// Walks the whole chain in `seq` order, a page at a time, and reports the first entry that
    /// does not hold.
    pub async fn verify_audit(&self) -> Result<AuditVerdict> {
        let mut entries = 0i64;
        let mut prev: Option<AuditEntry> = None;
        let mut after = 0i64;
        loop {
            let rows = sqlx::query(&format!(
                "SELECT {ENTRY_COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT 5000"
            ))
            .bind(after)
            .fetch_all(self.pool())
            .await?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                let entry = entry_from_row(row)?;
                entries += 1;
                let expected_seq = prev.as_ref().map(|p| p.seq + 1).unwrap_or(1);
                let broken = |problem: String| AuditVerdict {
                    entries,
                    head_seq: prev.as_ref().map(|p| p.seq),
                    head_hash: prev.as_ref().map(|p| p.hash.clone()),
                    broken: Some(BrokenLink {
                        seq: entry.seq,
                        problem,
                    }),
                };
                if entry.seq != expected_seq {
                    let missing = if entry.seq == expected_seq + 1 {
                        format!("entry {expected_seq} is missing")
                    } else if entry.seq > expected_seq {
                        format!("entries {expected_seq}–{} are missing", entry.seq - 1)
                    } else {
                        format!("entry numbered {} out of order", entry.seq)
                    };
                    return Ok(broken(format!(
                        "entry {} follows {}: {missing} (deleted)",
                        entry.seq,
                        expected_seq - 1
                    )));
                }
                let expected_prev = prev.as_ref().map(|p| p.hash.as_str()).unwrap_or(GENESIS);
                if entry.prev_hash != expected_prev {
                    return Ok(broken(format!(
                        "entry {} does not link to entry {}: its prev_hash is not that entry's \
                         hash (inserted, reordered or rewritten)",
                        entry.seq,
                        entry.seq - 1
                    )));
                }
                if entry.hash != entry.expected_hash_with(self.audit_key()) {
                    return Ok(broken(format!(
                        "entry {}'s content does not match its hash (edited: {} by {} at {})",
                        entry.seq, entry.action, entry.actor, entry.at
                    )));
                }
                after = entry.seq;
                prev = Some(entry);
            }
        }
        Ok(AuditVerdict {
            entries,
            head_seq: prev.as_ref().map(|p| p.seq),
            head_hash: prev.map(|p| p.hash),
            broken: None,
        })
    }

    /// Denied entries of `actor` since `since`.
    pub async fn denials_since(&self, actor: &str, since: &str) -> Result<i64> {
        let row = sqlx::query(
            "SELECT COUNT(*) FROM audit_log WHERE actor = $1 AND outcome = 'denied' AND at >= $2",
        )
        .bind(actor)
        .bind(since)
        .fetch_one(self.pool())
        .await?;
        Ok(row.try_get(0)?)
    }
}

/// At most `max` bytes of `s`, cut at a character boundary, marked when cut.
fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}
