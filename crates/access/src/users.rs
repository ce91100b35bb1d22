//! Accounts, logins, sessions and API tokens.

use chrono::{Duration, Utc};
use reservoir_catalog::format_ts;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::model::*;
use crate::secret::{self, constant_time_eq, sha256_hex};
use crate::{Access, Error, Result};

/// Failed logins in a row that lock an account.
pub const LOCKOUT_AFTER: i64 = 5;
/// How long a locked account stays locked.
pub const LOCKOUT_MINUTES: i64 = 15;
/// How long a console session lasts.
pub const SESSION_HOURS: i64 = 8;
/// Prefix of every API token, so a leaked one is recognizable (and scannable) as ours.
pub const TOKEN_PREFIX: &str = "rsv_";

const USER_COLUMNS: &str = "id, display_name, role, unit_id, must_change, disabled, locked_until, \
                            last_login_at, created_at";

fn user_from_row(r: &AnyRow) -> Result<User> {
    let role: String = r.try_get("role")?;
    Ok(User {
        id: r.try_get("id")?,
        display_name: r.try_get("display_name")?,
        role: role
            .parse()
            .map_err(|_| Error::Corrupt(format!("role {role:?}")))?,
        unit_id: r.try_get("unit_id")?,
        must_change: r.try_get::<i64, _>("must_change")? != 0,
        disabled: r.try_get::<i64, _>("disabled")? != 0,
        locked_until: r.try_get("locked_until")?,
        last_login_at: r.try_get("last_login_at")?,
        created_at: r.try_get("created_at")?,
    })
}

/// Checks a login name: lowercase ASCII letters, digits, `.`, `_`, `-`, `@`; 2–64 characters —
/// so no two logins look alike (`admin`, `Admin`, Cyrillic `аdmin`, full-width `ａｄｍｉｎ`).
fn check_login(id: &str) -> Result<()> {
    let ok = (2..=64).contains(&id.len())
        && id.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-' | '@')
        });
    if ok && id != "public" && id != "local" {
        Ok(())
    } else {
        Err(Error::invalid(
            "login name",
            format!(
                "{id:?}: use 2–64 lowercase ASCII letters, digits, '.', '_', '-' or '@' (not \"public\" or \"local\"); put the person's name in the display name"
            ),
        ))
    }
}

impl Access {
    // ------------------------------------------------------------------ users

    /// Creates an account. The password must pass the policy.
    pub async fn create_user(&self, new: &NewUser) -> Result<User> {
        check_login(&new.id)?;
        secret::check_password_policy(&new.password)?;
        match (new.role.needs_unit(), &new.unit_id) {
            (true, None) => {
                return Err(Error::invalid(
                    "account",
                    format!("a {} belongs to a unit: name one", new.role),
                ));
            }
            (true, Some(unit)) => {
                if self.catalog().unit(unit).await?.is_none() {
                    return Err(Error::NotFound {
                        kind: "unit",
                        name: unit.clone(),
                    });
                }
            }
            (false, _) => {}
        }
        if new.role == Role::Public {
            return Err(Error::invalid(
                "role",
                "the public has no accounts; it is whoever comes without one",
            ));
        }
        if self.user(&new.id).await?.is_some() {
            return Err(Error::Conflict(format!(
                "account {:?} already exists",
                new.id
            )));
        }
        let hash = secret::hash_password(&new.password)?;
        let now = format_ts(Utc::now());
        let unit = if new.role.needs_unit() {
            new.unit_id.clone()
        } else {
            None
        };
        sqlx::query(
            "INSERT INTO users (id, display_name, role, unit_id, password_hash, must_change,
                 created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        )
        .bind(&new.id)
        .bind(&new.display_name)
        .bind(new.role.as_str())
        .bind(unit)
        .bind(hash)
        .bind(i64::from(new.must_change))
        .bind(&now)
        .execute(self.pool())
        .await?;
        self.user(&new.id).await?.ok_or_else(|| Error::NotFound {
            kind: "account",
            name: new.id.clone(),
        })
    }

    /// Registers an applicant from outside the units: a consumer account without a unit, which
    /// sees nothing until a request of its is approved. The credit code, when given, must pass
    /// its check digit (`check_code` is the caller's validator).
    pub async fn register_applicant(
        &self,
        new: &NewApplicant,
        client: &str,
        check_code: impl Fn(&str) -> bool,
    ) -> Result<User> {
        check_login(&new.login)?;
        secret::check_password_policy(&new.password)?;
        let field = |what: &'static str, value: &str, max: usize| -> Result<String> {
            let v = value.trim();
            if v.is_empty() {
                return Err(Error::invalid(what, "is required"));
            }
            if v.chars().count() > max {
                return Err(Error::invalid(
                    what,
                    format!("is longer than {max} characters"),
                ));
            }
            Ok(v.to_string())
        };
        let name = field("name", &new.name, 64)?;
        let organization = field("organization", &new.organization, 128)?;
        let contact = field("contact", &new.contact, 128)?;
        let credit_code = match new.credit_code.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(code) => {
                let code = code.to_ascii_uppercase();
                if !check_code(&code) {
                    return Err(Error::invalid(
                        "credit_code",
                        format!(
                            "{code:?} is not a valid unified social credit code (18 characters \
                             with a matching check character)"
                        ),
                    ));
                }
                Some(code)
            }
        };
        if self.user(&new.login).await?.is_some() {
            return Err(Error::Conflict(format!(
                "the login {:?} is taken; choose another",
                new.login
            )));
        }
        let hash = secret::hash_password(&new.password)?;
        let now = format_ts(Utc::now());
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO users (id, display_name, role, unit_id, password_hash, must_change,
                 created_at, updated_at)
             VALUES ($1, $2, $3, NULL, $4, 0, $5, $5)",
        )
        .bind(&new.login)
        .bind(format!("{name}（{organization}）"))
        .bind(Role::Consumer.as_str())
        .bind(hash)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO applicants (user_id, name, organization, credit_code, contact, client,
                 registered_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&new.login)
        .bind(&name)
        .bind(&organization)
        .bind(&credit_code)
        .bind(&contact)
        .bind(client)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.user(&new.login).await?.ok_or_else(|| Error::NotFound {
            kind: "account",
            name: new.login.clone(),
        })
    }

    /// What an applicant registered with (`None` for staff accounts).
    pub async fn applicant(&self, login: &str) -> Result<Option<Applicant>> {
        let row = sqlx::query(
            "SELECT user_id, name, organization, credit_code, contact, registered_at
             FROM applicants WHERE user_id = $1",
        )
        .bind(login)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok(Applicant {
                login: r.try_get(0)?,
                name: r.try_get(1)?,
                organization: r.try_get(2)?,
                credit_code: r.try_get(3)?,
                contact: r.try_get(4)?,
                registered_at: r.try_get(5)?,
            })
        })
        .transpose()
    }

    pub async fn user(&self, id: &str) -> Result<Option<User>> {
        let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    pub async fn users(&self) -> Result<Vec<User>> {
        let rows = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY id"))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(user_from_row).collect()
    }

    /// Whether any operator account exists (init creates the first).
    pub async fn has_operator(&self) -> Result<bool> {
        let row = sqlx::query("SELECT COUNT(*) FROM users WHERE role = 'operator'")
            .fetch_one(self.pool())
            .await?;
        Ok(row.try_get::<i64, _>(0)? > 0)
    }

    /// Changes an account's role and unit.
    pub async fn set_role(&self, id: &str, role: Role, unit_id: Option<&str>) -> Result<User> {
        if role == Role::Public {
            return Err(Error::invalid("role", "the public has no accounts"));
        }
        if role.needs_unit() {
            let Some(unit) = unit_id else {
                return Err(Error::invalid(
                    "account",
                    format!("a {role} belongs to a unit: name one"),
                ));
            };
            if self.catalog().unit(unit).await?.is_none() {
                return Err(Error::NotFound {
                    kind: "unit",
                    name: unit.to_string(),
                });
            }
        }
        let unit = if role.needs_unit() { unit_id } else { None };
        let done =
            sqlx::query("UPDATE users SET role = $1, unit_id = $2, updated_at = $3 WHERE id = $4")
                .bind(role.as_str())
                .bind(unit)
                .bind(format_ts(Utc::now()))
                .bind(id)
                .execute(self.pool())
                .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound {
                kind: "account",
                name: id.to_string(),
            });
        }
        // A new role takes effect at once: sessions of the old one end.
        self.end_sessions(id).await?;
        self.user(id).await?.ok_or_else(|| Error::NotFound {
            kind: "account",
            name: id.to_string(),
        })
    }

    /// Disables or enables an account; disabling ends its sessions and its tokens stop working.
    pub async fn set_disabled(&self, id: &str, disabled: bool) -> Result<()> {
        let done = sqlx::query("UPDATE users SET disabled = $1, updated_at = $2 WHERE id = $3")
            .bind(i64::from(disabled))
            .bind(format_ts(Utc::now()))
            .bind(id)
            .execute(self.pool())
            .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound {
                kind: "account",
                name: id.to_string(),
            });
        }
        if disabled {
            self.end_sessions(id).await?;
        }
        Ok(())
    }

    /// Sets a new password. `must_change` marks one set by someone else (a reset): a reset also
    /// revokes the account's API tokens, since it is what one does when an account may be in
    /// the wrong hands.
    pub async fn set_password(&self, id: &str, password: &str, must_change: bool) -> Result<()> {
        secret::check_password_policy(password)?;
        let hash = secret::hash_password(password)?;
        let done = sqlx::query(
            "UPDATE users SET password_hash = $1, must_change = $2, failed_logins = 0,
                 locked_until = NULL, updated_at = $3 WHERE id = $4",
        )
        .bind(hash)
        .bind(i64::from(must_change))
        .bind(format_ts(Utc::now()))
        .bind(id)
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound {
                kind: "account",
                name: id.to_string(),
            });
        }
        if must_change {
            sqlx::query(
                "UPDATE api_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
            )
            .bind(format_ts(Utc::now()))
            .bind(id)
            .execute(self.pool())
            .await?;
        }
        self.end_sessions(id).await
    }

    /// Checks a login. Wrong names and wrong passwords get the same answer, in the same time;
    /// [`LOCKOUT_AFTER`] failures in a row lock the account for [`LOCKOUT_MINUTES`].
    pub async fn authenticate(&self, id: &str, password: &str) -> Result<User> {
        let refused = || Error::Unauthorized("wrong login name or password".into());
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS}, password_hash, failed_logins FROM users WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else {
            secret::verify_password(password, secret::dummy_hash());
            return Err(refused());
        };
        let user = user_from_row(&row)?;
        let hash: String = row.try_get("password_hash")?;
        let now = Utc::now();
        if let Some(until) = &user.locked_until {
            let until = reservoir_catalog::parse_ts(until)?;
            if until > now {
                return Err(Error::Locked {
                    retry_after_secs: (until - now).num_seconds().max(1),
                });
            }
        }
        if !secret::verify_password(password, &hash) {
            let failed = row.try_get::<i64, _>("failed_logins")? + 1;
            let locked = (failed >= LOCKOUT_AFTER)
                .then(|| format_ts(now + Duration::minutes(LOCKOUT_MINUTES)));
            sqlx::query("UPDATE users SET failed_logins = $1, locked_until = $2 WHERE id = $3")
                .bind(if locked.is_some() { 0 } else { failed })
                .bind(&locked)
                .bind(id)
                .execute(self.pool())
                .await?;
            if locked.is_some() {
                tracing::warn!(
                    account = id,
                    "account locked after {LOCKOUT_AFTER} failed logins"
                );
                return Err(Error::Locked {
                    retry_after_secs: LOCKOUT_MINUTES * 60,
                });
            }
            return Err(refused());
        }
        if user.disabled {
            // The same answer as a wrong password: a refusal must not confirm the password.
            tracing::info!(account = id, "login to a disabled account refused");
            return Err(refused());
        }
        let stamp = format_ts(now);
        sqlx::query(
            "UPDATE users SET failed_logins = 0, locked_until = NULL, last_login_at = $1 WHERE id = $2",
        )
        .bind(&stamp)
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(User {
            last_login_at: Some(stamp),
            locked_until: None,
            ..user
        })
    }

    // --------------------------------------------------------------- sessions

    /// Logs in and opens a console session.
    pub async fn login(&self, id: &str, password: &str, client: &str) -> Result<IssuedSession> {
        let user = self.authenticate(id, password).await?;
        let cookie = secret::random_hex(32);
        let csrf = secret::random_hex(32);
        let now = Utc::now();
        let expires_at = format_ts(now + Duration::hours(SESSION_HOURS));
        sqlx::query(
            "INSERT INTO sessions (id_hash, user_id, csrf, client, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(sha256_hex(&cookie))
        .bind(&user.id)
        .bind(sha256_hex(&csrf))
        .bind(client)
        .bind(format_ts(now))
        .bind(&expires_at)
        .execute(self.pool())
        .await?;
        Ok(IssuedSession {
            cookie,
            csrf,
            user,
            expires_at,
        })
    }

    /// The account of a live session, and the hash of its CSRF token.
    pub async fn session(&self, cookie: &str) -> Result<Option<(User, String)>> {
        let row = sqlx::query("SELECT user_id, csrf, expires_at FROM sessions WHERE id_hash = $1")
            .bind(sha256_hex(cookie))
            .fetch_optional(self.pool())
            .await?;
        let Some(row) = row else { return Ok(None) };
        let expires: String = row.try_get("expires_at")?;
        if expires <= format_ts(Utc::now()) {
            self.logout(cookie).await?;
            return Ok(None);
        }
        let user_id: String = row.try_get("user_id")?;
        match self.user(&user_id).await? {
            Some(user) if !user.disabled => Ok(Some((user, row.try_get("csrf")?))),
            _ => Ok(None),
        }
    }

    /// Whether `csrf` is the session's CSRF token.
    pub fn csrf_matches(stored_hash: &str, csrf: &str) -> bool {
        constant_time_eq(stored_hash, &sha256_hex(csrf))
    }

    pub async fn logout(&self, cookie: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(sha256_hex(cookie))
            .execute(self.pool())
            .await?;
        Ok(())
    }

    async fn end_sessions(&self, user_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(user_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    // ----------------------------------------------------------------- tokens

    /// Issues an API token for `user_id`, optionally scoped to one of the account's grants; it
    /// expires after `days`. The secret is returned once and only its hash is kept.
    pub async fn create_token(
        &self,
        user_id: &str,
        name: &str,
        grant_id: Option<i64>,
        days: i64,
    ) -> Result<IssuedToken> {
        if !(1..=366).contains(&days) {
            return Err(Error::invalid(
                "token lifetime",
                format!("{days} days; a token lives 1 to 366 days"),
            ));
        }
        let user = self.user(user_id).await?.ok_or_else(|| Error::NotFound {
            kind: "account",
            name: user_id.to_string(),
        })?;
        if let Some(g) = grant_id {
            let grant = self.grant(g).await?.ok_or_else(|| Error::NotFound {
                kind: "grant",
                name: g.to_string(),
            })?;
            if grant.user_id != user.id {
                return Err(Error::Forbidden(format!(
                    "grant {g} belongs to {:?}, not {:?}",
                    grant.user_id, user.id
                )));
            }
            if grant.revoked_at.is_some() {
                return Err(Error::Conflict(format!("grant {g} is revoked")));
            }
        }
        let id = secret::random_hex(6);
        let secret_part = secret::random_hex(24);
        let now = Utc::now();
        let mut expires = now + Duration::days(days);
        if let Some(g) = grant_id
            && let Some(grant) = self.grant(g).await?
        {
            // A token never outlives its grant.
            let grant_end = reservoir_catalog::parse_ts(&grant.expires_at)?;
            expires = expires.min(grant_end);
        }
        let token = Token {
            id: id.clone(),
            user_id: user.id.clone(),
            name: name.to_string(),
            grant_id,
            created_at: format_ts(now),
            expires_at: format_ts(expires),
            revoked_at: None,
            last_used_at: None,
        };
        sqlx::query(
            "INSERT INTO api_tokens (id, secret_hash, user_id, name, grant_id, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&token.id)
        .bind(sha256_hex(&secret_part))
        .bind(&token.user_id)
        .bind(&token.name)
        .bind(token.grant_id)
        .bind(&token.created_at)
        .bind(&token.expires_at)
        .execute(self.pool())
        .await?;
        Ok(IssuedToken {
            secret: format!("{TOKEN_PREFIX}{id}_{secret_part}"),
            token,
        })
    }

    /// The principal a bearer token stands for; refuses unknown, expired, revoked tokens and
    /// tokens of disabled accounts, each with its reason.
    pub async fn principal_for_token(&self, bearer: &str) -> Result<Principal> {
        let refused = |why: &str| Error::Unauthorized(format!("API token refused: {why}"));
        let Some((id, secret_part)) = bearer
            .strip_prefix(TOKEN_PREFIX)
            .and_then(|rest| rest.split_once('_'))
        else {
            return Err(refused("not a Reservoir token (expected rsv_…)"));
        };
        let row = sqlx::query(
            "SELECT secret_hash, user_id, grant_id, expires_at, revoked_at FROM api_tokens
             WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else {
            return Err(refused("unknown token"));
        };
        let stored: String = row.try_get("secret_hash")?;
        if !constant_time_eq(&stored, &sha256_hex(secret_part)) {
            return Err(refused("unknown token"));
        }
        if row.try_get::<Option<String>, _>("revoked_at")?.is_some() {
            return Err(refused("revoked"));
        }
        let now = format_ts(Utc::now());
        let expires: String = row.try_get("expires_at")?;
        if expires <= now {
            return Err(refused(&format!("expired at {expires}")));
        }
        let user_id: String = row.try_get("user_id")?;
        let user = match self.user(&user_id).await? {
            Some(u) if !u.disabled => u,
            _ => return Err(refused("its account is disabled")),
        };
        if user.must_change {
            return Err(refused(
                "its account must set a new password first (log in to the console)",
            ));
        }
        let grant_scope: Option<i64> = row.try_get("grant_id")?;
        sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
            .bind(&now)
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(Principal {
            grant_scope,
            token_id: Some(id.to_string()),
            ..Principal::of(&user)
        })
    }

    /// `principal` as its account and token stand now, for a connection that outlives one
    /// request (the PostgreSQL protocol): the account's current role and unit; refused when the
    /// account is gone, disabled or was reset (must set a new password), or the token it came
    /// with is revoked or expired.
    pub async fn principal_now(&self, principal: &Principal) -> Result<Principal> {
        let Some(id) = principal.user.as_deref() else {
            return Ok(principal.clone());
        };
        let refused = |why: &str| Error::Unauthorized(format!("{id}: {why}"));
        let user = match self.user(id).await? {
            Some(u) if !u.disabled => u,
            Some(_) => return Err(refused("the account is disabled")),
            None => return Err(refused("the account no longer exists")),
        };
        if user.must_change {
            return Err(refused(
                "the account's password was reset: log in to the console to set a new one",
            ));
        }
        if let Some(token) = principal.token_id.as_deref() {
            let row = sqlx::query("SELECT expires_at, revoked_at FROM api_tokens WHERE id = $1")
                .bind(token)
                .fetch_optional(self.pool())
                .await?;
            let Some(row) = row else {
                return Err(refused("the API token no longer exists"));
            };
            if row.try_get::<Option<String>, _>("revoked_at")?.is_some() {
                return Err(refused("the API token was revoked"));
            }
            let expires: String = row.try_get("expires_at")?;
            if expires <= format_ts(Utc::now()) {
                return Err(refused(&format!("the API token expired at {expires}")));
            }
        }
        Ok(Principal {
            grant_scope: principal.grant_scope,
            token_id: principal.token_id.clone(),
            ..Principal::of(&user)
        })
    }

    pub async fn tokens(&self, user_id: Option<&str>) -> Result<Vec<Token>> {
        let rows = sqlx::query(
            "SELECT id, user_id, name, grant_id, created_at, expires_at, revoked_at, last_used_at
             FROM api_tokens WHERE ($1 IS NULL OR user_id = $1) ORDER BY created_at",
        )
        .bind(user_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Token {
                    id: r.try_get("id")?,
                    user_id: r.try_get("user_id")?,
                    name: r.try_get("name")?,
                    grant_id: r.try_get("grant_id")?,
                    created_at: r.try_get("created_at")?,
                    expires_at: r.try_get("expires_at")?,
                    revoked_at: r.try_get("revoked_at")?,
                    last_used_at: r.try_get("last_used_at")?,
                })
            })
            .collect()
    }

    /// Revokes a token at once.
    pub async fn revoke_token(&self, id: &str) -> Result<Token> {
        let id = id.strip_prefix(TOKEN_PREFIX).unwrap_or(id);
        let id = id.split('_').next().unwrap_or(id);
        sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(format_ts(Utc::now()))
            .bind(id)
            .execute(self.pool())
            .await?;
        self.tokens(None)
            .await?
            .into_iter()
            .find(|t| t.id == id)
            .ok_or_else(|| Error::NotFound {
                kind: "token",
                name: id.to_string(),
            })
    }
}
