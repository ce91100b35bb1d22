//! Accounts, principals, requests and grants.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::mask::Mask;
use crate::{Error, Result};

/// What an account may do.
///
/// | role     | catalog                  | data                                   | admin                      |
/// |----------|--------------------------|----------------------------------------|----------------------------|
/// | operator | everything               | everything, unmasked                   | users, sources, config     |
/// | steward  | everything; edits own unit | own unit's datasets, unmasked; grants | approves own unit's requests |
/// | consumer | the directory            | only through grants                    | files requests             |
/// | auditor  | the directory            | none                                   | reads the audit log, usage |
/// | public   | open datasets only       | open datasets only                     | none                       |
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Operator,
    Steward,
    Consumer,
    Auditor,
    Public,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Operator,
        Role::Steward,
        Role::Consumer,
        Role::Auditor,
        Role::Public,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Operator => "operator",
            Self::Steward => "steward",
            Self::Consumer => "consumer",
            Self::Auditor => "auditor",
            Self::Public => "public",
        }
    }

    /// Whether accounts of this role belong to a unit (and must name one).
    pub fn needs_unit(&self) -> bool {
        matches!(self, Self::Steward | Self::Consumer)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s.trim())
            .ok_or_else(|| {
                Error::invalid(
                    "role",
                    format!("{s:?}: expected operator, steward, consumer, auditor or public"),
                )
            })
    }
}

/// An account.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct User {
    /// The login name.
    pub id: String,
    pub display_name: String,
    pub role: Role,
    /// The unit a steward or consumer belongs to.
    pub unit_id: Option<String>,
    /// The password was set by someone else (init, an operator) and must be changed at login.
    pub must_change: bool,
    pub disabled: bool,
    pub locked_until: Option<String>,
    pub last_login_at: Option<String>,
    pub created_at: String,
}

/// A new account.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub id: String,
    pub display_name: String,
    pub role: Role,
    pub unit_id: Option<String>,
    pub password: String,
    pub must_change: bool,
}

/// Someone from outside the units registering on the open-data portal to apply for data.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct NewApplicant {
    /// The login name to create.
    pub login: String,
    pub password: String,
    /// The applicant's name.
    pub name: String,
    /// The company, institution or "个人" (a private person).
    pub organization: String,
    /// The organization's unified social credit code (统一社会信用代码), checked when given.
    #[serde(default)]
    pub credit_code: Option<String>,
    /// A phone number or an e-mail address the steward can reach.
    pub contact: String,
}

/// What an applicant said about itself, as its steward sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Applicant {
    pub login: String,
    pub name: String,
    pub organization: String,
    pub credit_code: Option<String>,
    pub contact: String,
    pub registered_at: String,
}

/// Who is asking: an account (by login or by token), or the public.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Principal {
    /// The account; `None` for the public.
    pub user: Option<String>,
    pub role: Role,
    pub unit_id: Option<String>,
    /// Set when the principal came with an API token scoped to one grant: it sees that grant only.
    pub grant_scope: Option<i64>,
    /// The token's id, when the principal came with one.
    pub token_id: Option<String>,
}

impl Principal {
    /// The anonymous public.
    pub fn public() -> Self {
        Self {
            user: None,
            role: Role::Public,
            unit_id: None,
            grant_scope: None,
            token_id: None,
        }
    }

    /// The principal of an account, as after a login.
    pub fn of(user: &User) -> Self {
        Self {
            user: Some(user.id.clone()),
            role: user.role,
            unit_id: user.unit_id.clone(),
            grant_scope: None,
            token_id: None,
        }
    }

    /// The local operator: the CLI on the machine that holds the home.
    pub fn local_operator() -> Self {
        Self {
            user: Some("local".into()),
            role: Role::Operator,
            unit_id: None,
            grant_scope: None,
            token_id: None,
        }
    }

    /// The name the audit log and metering record.
    pub fn name(&self) -> &str {
        self.user.as_deref().unwrap_or("public")
    }

    pub fn is_operator(&self) -> bool {
        self.role == Role::Operator && self.grant_scope.is_none()
    }

    /// Whether the principal stewards `unit` (operators steward every unit). A token scoped to a
    /// grant stewards nothing.
    pub fn stewards(&self, unit: &str) -> bool {
        if self.grant_scope.is_some() {
            return false;
        }
        match self.role {
            Role::Operator => true,
            Role::Steward => self.unit_id.as_deref() == Some(unit),
            _ => false,
        }
    }
}

/// Where a data request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    Pending,
    Approved,
    Rejected,
    Withdrawn,
}

impl RequestStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::Withdrawn => "withdrawn",
        }
    }
}

impl FromStr for RequestStatus {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "pending" => Ok(Self::Pending),
            "approved" => Ok(Self::Approved),
            "rejected" => Ok(Self::Rejected),
            "withdrawn" => Ok(Self::Withdrawn),
            other => Err(Error::Corrupt(format!("request status {other:?}"))),
        }
    }
}

/// A consumer's request for a dataset.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AccessRequest {
    pub id: i64,
    pub requester: String,
    pub dataset_id: i64,
    /// The columns asked for.
    pub columns: Vec<String>,
    pub purpose: String,
    /// The period the data is needed for (dates, `YYYY-MM-DD`).
    pub period_start: String,
    pub period_end: String,
    /// Rows expected to be used (a quota when approved).
    pub volume: Option<i64>,
    pub status: RequestStatus,
    pub decided_by: Option<String>,
    pub decided_at: Option<String>,
    /// Why it was rejected, or notes on what the approval narrowed.
    pub reason: String,
    pub grant_id: Option<i64>,
    pub created_at: String,
    pub updated_at: String,
}

/// A new request.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct NewRequest {
    pub dataset_id: i64,
    pub columns: Vec<String>,
    pub purpose: String,
    pub period_start: String,
    pub period_end: String,
    #[serde(default)]
    pub volume: Option<i64>,
}

/// A granted column and how it is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GrantColumn {
    pub name: String,
    pub mask: Mask,
}

/// Access to one dataset for one account: which columns, masked how, which rows, until when.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Grant {
    pub id: i64,
    pub user_id: String,
    pub dataset_id: i64,
    pub columns: Vec<GrantColumn>,
    /// A SQL condition over the dataset's columns; only rows that satisfy it are visible.
    pub row_filter: Option<String>,
    pub purpose: String,
    pub request_id: Option<i64>,
    pub starts_at: String,
    pub expires_at: String,
    /// Hours of the day (UTC+8, `HH-HH`) outside which access is refused and alerted.
    pub hours: Option<String>,
    pub rate_per_minute: Option<i64>,
    pub row_quota: Option<i64>,
    pub rows_served: i64,
    pub created_by: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
    pub revoked_by: Option<String>,
}

impl Grant {
    /// Whether the grant is in force at `now` (RFC 3339 text, as stored).
    pub fn active_at(&self, now: &str) -> bool {
        self.revoked_at.is_none()
            && self.starts_at.as_str() <= now
            && now < self.expires_at.as_str()
    }

    /// Rows left under the quota (`None`: no quota).
    pub fn rows_left(&self) -> Option<i64> {
        self.row_quota.map(|q| (q - self.rows_served).max(0))
    }
}

/// What a grant gives; `NewGrant::for_request` fills it from a request and the field's PII kinds.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct NewGrant {
    pub user_id: String,
    pub dataset_id: i64,
    pub columns: Vec<GrantColumn>,
    #[serde(default)]
    pub row_filter: Option<String>,
    pub purpose: String,
    #[serde(default)]
    pub request_id: Option<i64>,
    /// RFC 3339; default now.
    #[serde(default)]
    pub starts_at: Option<String>,
    /// RFC 3339.
    pub expires_at: String,
    #[serde(default)]
    pub hours: Option<String>,
    #[serde(default)]
    pub rate_per_minute: Option<i64>,
    #[serde(default)]
    pub row_quota: Option<i64>,
}

/// An API token as listed (the secret is shown once, at creation, and never stored).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Token {
    pub id: String,
    pub user_id: String,
    pub name: String,
    /// The one grant the token may use; `None`: the account's own access.
    pub grant_id: Option<i64>,
    pub created_at: String,
    pub expires_at: String,
    pub revoked_at: Option<String>,
    pub last_used_at: Option<String>,
}

/// A token just created: `secret` is the whole bearer value, shown once.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct IssuedToken {
    pub token: Token,
    pub secret: String,
}

/// A login session just opened: the cookie value and the CSRF token are shown once.
#[derive(Debug, Clone)]
pub struct IssuedSession {
    pub cookie: String,
    pub csrf: String,
    pub user: User,
    pub expires_at: String,
}
