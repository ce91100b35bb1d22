//! `reservoir user | token | grant | request | audit | usage`: accounts, API tokens, grants,
//! data requests, the audit log and usage metering, from the machine that holds the home.
//!
//! These commands act as the local operator (`local` in the audit log): whoever can run them
//! can read the home's files anyway. Every change they make is audited.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use reservoir_access::{
    Access, Approval, AuditEvent, AuditFilter, GrantColumn, Mask, NewGrant, NewUser, Outcome,
    Principal, Role,
};
use reservoir_catalog::Dataset;

use crate::home::{self, Home};

#[derive(Debug, clap::Subcommand)]
pub enum UserCommand {
    /// Create an account. Without --password-stdin a random password is generated, shown once
    /// and must be changed at the first login.
    Add {
        login: String,
        /// operator, steward, consumer or auditor.
        #[arg(long)]
        role: Role,
        /// The unit a steward or consumer belongs to.
        #[arg(long)]
        unit: Option<String>,
        /// Display name, e.g. 张三.
        #[arg(long, default_value = "")]
        name: String,
        /// Read the password from standard input instead.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List accounts.
    List,
    /// Change an account's role (and unit).
    Role {
        login: String,
        role: Role,
        #[arg(long)]
        unit: Option<String>,
    },
    /// Disable an account: its sessions end and its tokens stop working.
    Disable { login: String },
    /// Enable a disabled account.
    Enable { login: String },
    /// Set a new random password (shown once, to be changed at the next login); unlocks.
    ResetPassword {
        login: String,
        /// Read the new password from standard input instead (not to be changed).
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Issue an API token; the secret is shown once.
    Create {
        /// The account the token acts for.
        #[arg(long)]
        user: String,
        /// Scope the token to one of the account's grants.
        #[arg(long)]
        grant: Option<i64>,
        /// Days until it expires (1–366).
        #[arg(long, default_value_t = 30)]
        days: i64,
        /// What it is for, e.g. "nightly ETL".
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List tokens (never their secrets).
    List {
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke a token at once.
    Revoke { id: String },
}

#[derive(Debug, clap::Subcommand)]
pub enum GrantCommand {
    /// Grant an account access to a dataset directly (approving a request does this too).
    Create {
        /// The account.
        #[arg(long)]
        user: String,
        /// The dataset, unit.name.
        #[arg(long)]
        dataset: String,
        /// Columns, comma-separated; `column:mask` sets a mask (none, redact, keep:F/L, hash,
        /// year, street, null), e.g. `name:keep:1/0,id_card:hash,age`. Columns without one take
        /// the default of their PII kind.
        #[arg(long)]
        columns: String,
        /// A SQL condition rows must meet, e.g. "street = '方松街道'".
        #[arg(long)]
        row_filter: Option<String>,
        /// What the data is used for.
        #[arg(long)]
        purpose: String,
        /// Last day of access (YYYY-MM-DD, China Standard Time).
        #[arg(long)]
        until: String,
        /// Hours of the day access is allowed, HH-HH (UTC+8).
        #[arg(long)]
        hours: Option<String>,
        /// Most rows served in all.
        #[arg(long)]
        row_quota: Option<i64>,
        /// Most queries per minute.
        #[arg(long)]
        rate_per_minute: Option<i64>,
    },
    /// List grants.
    List {
        #[arg(long)]
        user: Option<String>,
        /// Only grants on this dataset (unit.name).
        #[arg(long)]
        dataset: Option<String>,
    },
    /// Revoke a grant (and the tokens scoped to it).
    Revoke { id: i64 },
}

#[derive(Debug, clap::Subcommand)]
pub enum RequestCommand {
    /// List data requests, newest first.
    List {
        /// pending, approved, rejected or withdrawn.
        #[arg(long)]
        status: Option<String>,
    },
    /// Approve a request; its grant is provisioned at once.
    Approve {
        id: i64,
        /// Narrow the requested columns (comma-separated).
        #[arg(long)]
        columns: Option<String>,
        /// Masks that differ from the defaults: `column=mask`, repeatable.
        #[arg(long = "mask")]
        masks: Vec<String>,
        #[arg(long)]
        row_filter: Option<String>,
        /// Last day of access (default: the end of the requested period).
        #[arg(long)]
        until: Option<String>,
        #[arg(long)]
        hours: Option<String>,
        #[arg(long)]
        row_quota: Option<i64>,
        /// A note to the requester.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Reject a request with a reason.
    Reject {
        id: i64,
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Walk the hash chain; exit 1 and name the first broken entry if it does not hold.
    Verify,
    /// Show entries, newest first.
    List {
        #[arg(long)]
        actor: Option<String>,
        /// Prefix of the action, e.g. `grant.` or `data.read`.
        #[arg(long)]
        action: Option<String>,
        /// A dataset or other target (substring).
        #[arg(long)]
        target: Option<String>,
        /// ok, denied or error.
        #[arg(long)]
        outcome: Option<String>,
        /// From this date or time (YYYY-MM-DD or RFC 3339).
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Print CSV (for export) instead of a table.
        #[arg(long)]
        csv: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct UsageArgs {
    /// First day (YYYY-MM-DD; default: 30 days ago).
    #[arg(long)]
    from: Option<String>,
    /// Last day (default: today).
    #[arg(long)]
    to: Option<String>,
    #[arg(long)]
    principal: Option<String>,
}

fn cli_event(action: &str, target: &str) -> AuditEvent {
    let mut e = AuditEvent::new("local", action, target);
    e.client = "cli".into();
    e
}

fn read_stdin_password() -> Result<String> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .context("reading the password from standard input")?;
    Ok(s.trim_end_matches(['\r', '\n']).to_string())
}

async fn dataset(home: &Home, name: &str) -> Result<Dataset> {
    let Some((unit, table)) = name.split_once('.') else {
        bail!("{name:?}: name the dataset as unit.name, e.g. minzheng.villages");
    };
    home.catalog
        .dataset("raw", unit, table)
        .await?
        .with_context(|| {
            format!("no dataset {name} in the catalog (see `reservoir catalog datasets`)")
        })
}

/// The end of a day in China Standard Time, as stored (RFC 3339 UTC).
fn end_of_day(day: &str) -> Result<String> {
    let date = chrono::NaiveDate::parse_from_str(day.trim(), "%Y-%m-%d")
        .with_context(|| format!("{day:?}: expected a date as YYYY-MM-DD"))?;
    let end = date
        .and_hms_opt(16, 0, 0)
        .context("a time of day")?
        .and_utc();
    Ok(reservoir_catalog::format_ts(end))
}

/// `name:keep:1/0,id_card:hash,age` → columns with masks (`None`: the default).
fn parse_columns(spec: &str) -> Result<Vec<(String, Option<Mask>)>> {
    let mut out = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match item.split_once(':') {
            Some((name, mask)) => {
                let mask = mask.replace('/', ",");
                out.push((name.trim().to_string(), Some(mask.parse::<Mask>()?)));
            }
            None => out.push((item.to_string(), None)),
        }
    }
    if out.is_empty() {
        bail!("--columns names no column");
    }
    Ok(out)
}

async fn check_row_filter(home: &Home, d: &Dataset, filter: Option<&str>) -> Result<()> {
    if let Some(f) = filter {
        reservoir_query::validate_row_filter(&home.lake, &d.unit_id, &d.name, f).await?;
    }
    Ok(())
}

pub async fn user(home_flag: Option<&Path>, cmd: UserCommand) -> Result<ExitCode> {
    let home = Home::open(&home::resolve(home_flag)?).await?;
    let access = home.access();
    match cmd {
        UserCommand::Add {
            login,
            role,
            unit,
            name,
            password_stdin,
        } => {
            let (password, generated) = if password_stdin {
                (read_stdin_password()?, false)
            } else {
                (reservoir_access::secret::random_password(), true)
            };
            let user = access
                .create_user(&NewUser {
                    id: login.clone(),
                    display_name: name,
                    role,
                    unit_id: unit,
                    password: password.clone(),
                    must_change: generated,
                })
                .await?;
            let mut e = cli_event("user.create", &user.id);
            e.detail = serde_json::json!({"role": user.role, "unit": user.unit_id}).to_string();
            access.audit(e).await?;
            println!(
                "created {} ({}{})",
                user.id,
                user.role,
                user.unit_id
                    .as_deref()
                    .map(|u| format!(" of {u}"))
                    .unwrap_or_default()
            );
            if generated {
                println!("  password {password}   (shown once; to be changed at the first login)");
            }
        }
        UserCommand::List => {
            println!(
                "{:<20} {:<9} {:<14} {:<8} {:<27} name",
                "login", "role", "unit", "state", "last login"
            );
            for u in access.users().await? {
                let state = if u.disabled {
                    "disabled"
                } else if u.locked_until.is_some() {
                    "locked"
                } else if u.must_change {
                    "new"
                } else {
                    "active"
                };
                println!(
                    "{:<20} {:<9} {:<14} {:<8} {:<27} {}",
                    u.id,
                    u.role.as_str(),
                    u.unit_id.as_deref().unwrap_or("-"),
                    state,
                    u.last_login_at.as_deref().unwrap_or("never"),
                    u.display_name
                );
            }
        }
        UserCommand::Role { login, role, unit } => {
            let user = access.set_role(&login, role, unit.as_deref()).await?;
            let mut e = cli_event("user.role", &user.id);
            e.detail = serde_json::json!({"role": user.role, "unit": user.unit_id}).to_string();
            access.audit(e).await?;
            println!("{} is now {}", user.id, user.role);
        }
        UserCommand::Disable { login } => {
            access.set_disabled(&login, true).await?;
            access.audit(cli_event("user.disable", &login)).await?;
            println!("{login} is disabled");
        }
        UserCommand::Enable { login } => {
            access.set_disabled(&login, false).await?;
            access.audit(cli_event("user.enable", &login)).await?;
            println!("{login} is enabled");
        }
        UserCommand::ResetPassword {
            login,
            password_stdin,
        } => {
            let (password, generated) = if password_stdin {
                (read_stdin_password()?, false)
            } else {
                (reservoir_access::secret::random_password(), true)
            };
            access.set_password(&login, &password, generated).await?;
            access
                .audit(cli_event("user.password_reset", &login))
                .await?;
            println!("the password of {login} is reset; its sessions ended");
            if generated {
                println!("  password {password}   (shown once; to be changed at the next login)");
            }
        }
    }
    home.catalog.close().await;
    Ok(ExitCode::SUCCESS)
}

pub async fn token(home_flag: Option<&Path>, cmd: TokenCommand) -> Result<ExitCode> {
    let home = Home::open(&home::resolve(home_flag)?).await?;
    let access = home.access();
    match cmd {
        TokenCommand::Create {
            user,
            grant,
            days,
            name,
        } => {
            let issued = access.create_token(&user, &name, grant, days).await?;
            let mut e = cli_event("token.create", &user);
            e.grant_id = grant;
            e.detail = serde_json::json!({"token": issued.token.id, "expires_at": issued.token.expires_at}).to_string();
            access.audit(e).await?;
            println!(
                "token {} for {user}{}, expires {}",
                issued.token.id,
                grant
                    .map(|g| format!(" (grant {g} only)"))
                    .unwrap_or_default(),
                issued.token.expires_at
            );
            println!("  {}", issued.secret);
            println!("  shown once: send it as `Authorization: Bearer <token>`");
        }
        TokenCommand::List { user } => {
            println!(
                "{:<13} {:<16} {:<6} {:<28} {:<9} name",
                "id", "user", "grant", "expires", "state"
            );
            let now = reservoir_catalog::format_ts(chrono::Utc::now());
            for t in access.tokens(user.as_deref()).await? {
                let state = if t.revoked_at.is_some() {
                    "revoked"
                } else if t.expires_at <= now {
                    "expired"
                } else {
                    "active"
                };
                println!(
                    "{:<13} {:<16} {:<6} {:<28} {:<9} {}",
                    t.id,
                    t.user_id,
                    t.grant_id
                        .map(|g| g.to_string())
                        .unwrap_or_else(|| "-".into()),
                    t.expires_at,
                    state,
                    t.name
                );
            }
        }
        TokenCommand::Revoke { id } => {
            let t = access.revoke_token(&id).await?;
            access.audit(cli_event("token.revoke", &t.user_id)).await?;
            println!("token {} of {} is revoked", t.id, t.user_id);
        }
    }
    home.catalog.close().await;
    Ok(ExitCode::SUCCESS)
}

fn print_grant(g: &reservoir_access::Grant, d: Option<&Dataset>) {
    let name = d
        .map(|d| format!("{}.{}", d.unit_id, d.name))
        .unwrap_or_else(|| g.dataset_id.to_string());
    let state = if g.revoked_at.is_some() {
        "revoked".to_string()
    } else {
        format!("until {}", g.expires_at)
    };
    println!("grant {}  {} → {}  ({state})", g.id, name, g.user_id);
    let cols: Vec<String> = g
        .columns
        .iter()
        .map(|c| {
            if c.mask.is_none() {
                c.name.clone()
            } else {
                format!("{} [{}]", c.name, c.mask)
            }
        })
        .collect();
    println!("  columns     {}", cols.join(", "));
    if let Some(f) = &g.row_filter {
        println!("  rows where  {f}");
    }
    let mut limits = Vec::new();
    if let Some(q) = g.row_quota {
        limits.push(format!("{} of {q} rows used", g.rows_served));
    }
    if let Some(r) = g.rate_per_minute {
        limits.push(format!("{r} queries/min"));
    }
    if let Some(h) = &g.hours {
        limits.push(format!("hours {h} (UTC+8)"));
    }
    if !limits.is_empty() {
        println!("  limits      {}", limits.join("; "));
    }
    println!("  purpose     {}", g.purpose);
}

pub async fn grant(home_flag: Option<&Path>, cmd: GrantCommand) -> Result<ExitCode> {
    let home = Home::open(&home::resolve(home_flag)?).await?;
    let access = home.access();
    let operator = Principal::local_operator();
    match cmd {
        GrantCommand::Create {
            user,
            dataset: name,
            columns,
            row_filter,
            purpose,
            until,
            hours,
            row_quota,
            rate_per_minute,
        } => {
            let d = dataset(&home, &name).await?;
            check_row_filter(&home, &d, row_filter.as_deref()).await?;
            let defaults: BTreeMap<String, Mask> =
                access.default_masks(d.id).await?.into_iter().collect();
            let columns = parse_columns(&columns)?
                .into_iter()
                .map(|(name, mask)| GrantColumn {
                    mask: mask
                        .or_else(|| defaults.get(&name).copied())
                        .unwrap_or(Mask::None),
                    name,
                })
                .collect();
            let g = access
                .create_grant(
                    &operator,
                    &NewGrant {
                        user_id: user,
                        dataset_id: d.id,
                        columns,
                        row_filter,
                        purpose,
                        request_id: None,
                        starts_at: None,
                        expires_at: end_of_day(&until)?,
                        hours,
                        rate_per_minute,
                        row_quota,
                    },
                )
                .await?;
            let mut e = cli_event("grant.create", &format!("{}.{}", d.unit_id, d.name));
            e.grant_id = Some(g.id);
            e.purpose = g.purpose.clone();
            e.columns = g
                .columns
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(",");
            e.detail = serde_json::json!({"user": g.user_id, "columns": g.columns,
                "row_filter": g.row_filter, "expires_at": g.expires_at})
            .to_string();
            access.audit(e).await?;
            print_grant(&g, Some(&d));
        }
        GrantCommand::List {
            user,
            dataset: name,
        } => {
            let dataset_id = match &name {
                Some(n) => Some(dataset(&home, n).await?.id),
                None => None,
            };
            let grants = access.grants(user.as_deref(), dataset_id).await?;
            if grants.is_empty() {
                println!("no grants");
            }
            for g in grants {
                let d = home.catalog.dataset_by_id(g.dataset_id).await?;
                print_grant(&g, d.as_ref());
            }
        }
        GrantCommand::Revoke { id } => {
            let g = access.revoke_grant(id, &operator).await?;
            let mut e = cli_event("grant.revoke", &g.user_id);
            e.grant_id = Some(id);
            access.audit(e).await?;
            println!("grant {id} of {} is revoked, with its tokens", g.user_id);
        }
    }
    home.catalog.close().await;
    Ok(ExitCode::SUCCESS)
}

pub async fn request(home_flag: Option<&Path>, cmd: RequestCommand) -> Result<ExitCode> {
    let home = Home::open(&home::resolve(home_flag)?).await?;
    let access = home.access();
    let operator = Principal::local_operator();
    match cmd {
        RequestCommand::List { status } => {
            let all = access.requests_for(&operator).await?;
            let mut shown = 0;
            for r in all {
                if status.as_deref().is_some_and(|s| s != r.status.as_str()) {
                    continue;
                }
                shown += 1;
                let d = home.catalog.dataset_by_id(r.dataset_id).await?;
                let name = d
                    .map(|d| format!("{}.{}", d.unit_id, d.name))
                    .unwrap_or_default();
                println!(
                    "request {}  {:<9} {} asks for {name} ({}), {} to {}{}",
                    r.id,
                    r.status.as_str(),
                    r.requester,
                    r.columns.join(", "),
                    r.period_start,
                    r.period_end,
                    r.volume.map(|v| format!(", {v} rows")).unwrap_or_default()
                );
                println!("  purpose  {}", r.purpose);
                if !r.reason.is_empty() {
                    println!(
                        "  decision {} by {}",
                        r.reason,
                        r.decided_by.unwrap_or_default()
                    );
                }
            }
            if shown == 0 {
                println!("no requests");
            }
        }
        RequestCommand::Approve {
            id,
            columns,
            masks,
            row_filter,
            until,
            hours,
            row_quota,
            note,
        } => {
            let r = access
                .request(id)
                .await?
                .with_context(|| format!("no request {id}"))?;
            let d = home
                .catalog
                .dataset_by_id(r.dataset_id)
                .await?
                .context("the request's dataset is gone")?;
            check_row_filter(&home, &d, row_filter.as_deref()).await?;
            let mut mask_map = BTreeMap::new();
            for m in masks {
                let Some((col, mask)) = m.split_once('=') else {
                    bail!("--mask {m:?}: expected column=mask, e.g. id_card=hash");
                };
                mask_map.insert(col.trim().to_string(), mask.parse::<Mask>()?);
            }
            let approval = Approval {
                columns: columns.map(|c| {
                    c.split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect()
                }),
                masks: mask_map,
                row_filter,
                expires_at: until.as_deref().map(end_of_day).transpose()?,
                hours,
                rate_per_minute: None,
                row_quota,
                note,
            };
            let (r, g) = access.approve(id, &operator, &approval).await?;
            let mut e = cli_event("request.approve", &format!("{}.{}", d.unit_id, d.name));
            e.grant_id = Some(g.id);
            e.purpose = r.purpose.clone();
            e.detail = serde_json::json!({"request": id, "requester": r.requester}).to_string();
            access.audit(e).await?;
            println!("request {id} approved");
            print_grant(&g, Some(&d));
        }
        RequestCommand::Reject { id, reason } => {
            let r = access.reject(id, &operator, &reason).await?;
            let mut e = cli_event("request.reject", &r.requester);
            e.detail = serde_json::json!({"request": id, "reason": reason}).to_string();
            access.audit(e).await?;
            println!("request {id} rejected: {reason}");
        }
    }
    home.catalog.close().await;
    Ok(ExitCode::SUCCESS)
}

pub async fn audit(home_flag: Option<&Path>, cmd: AuditCommand) -> Result<ExitCode> {
    let home = Home::open(&home::resolve(home_flag)?).await?;
    let access: Access = home.access();
    let code = match cmd {
        AuditCommand::Verify => {
            let v = access.verify_audit().await?;
            match &v.broken {
                None => {
                    println!(
                        "✔ audit log intact: {} entries, head {} {}",
                        v.entries,
                        v.head_seq.unwrap_or(0),
                        v.head_hash.as_deref().unwrap_or("-")
                    );
                    println!(
                        "  keep the head elsewhere: entries removed from the end leave a shorter \
                         chain that still holds"
                    );
                    ExitCode::SUCCESS
                }
                Some(b) => {
                    println!("✘ audit log broken at entry {}: {}", b.seq, b.problem);
                    println!(
                        "  {} entries checked; the chain holds up to entry {}",
                        v.entries,
                        v.head_seq.unwrap_or(0)
                    );
                    ExitCode::FAILURE
                }
            }
        }
        AuditCommand::List {
            actor,
            action,
            target,
            outcome,
            since,
            limit,
            csv,
        } => {
            let entries = access
                .audit_entries(&AuditFilter {
                    actor,
                    action,
                    target,
                    outcome,
                    since,
                    until: None,
                    limit: Some(limit),
                })
                .await?;
            if csv {
                let mut w = csv::Writer::from_writer(std::io::stdout().lock());
                w.write_record([
                    "seq",
                    "at",
                    "actor",
                    "action",
                    "target",
                    "columns",
                    "row_count",
                    "grant_id",
                    "purpose",
                    "client",
                    "outcome",
                    "detail",
                    "hash",
                ])?;
                for e in &entries {
                    let opt = |v: Option<i64>| v.map(|n| n.to_string()).unwrap_or_default();
                    w.write_record([
                        e.seq.to_string(),
                        e.at.clone(),
                        e.actor.clone(),
                        e.action.clone(),
                        e.target.clone(),
                        e.columns.clone(),
                        opt(e.row_count),
                        opt(e.grant_id),
                        e.purpose.clone(),
                        e.client.clone(),
                        e.outcome.clone(),
                        e.detail.clone(),
                        e.hash.clone(),
                    ])?;
                }
                w.flush()?;
            } else {
                for e in &entries {
                    let mark = match e.outcome.as_str() {
                        "ok" => " ",
                        "denied" => "✘",
                        _ => "!",
                    };
                    println!(
                        "{mark}{:>6} {} {:<12} {:<18} {}{}",
                        e.seq,
                        &e.at[..19.min(e.at.len())],
                        e.actor,
                        e.action,
                        e.target,
                        e.row_count
                            .map(|n| format!("  {n} rows"))
                            .unwrap_or_default()
                    );
                }
                if entries.is_empty() {
                    println!("no entries");
                }
            }
            ExitCode::SUCCESS
        }
    };
    home.catalog.close().await;
    Ok(code)
}

pub async fn usage(home_flag: Option<&Path>, args: UsageArgs) -> Result<ExitCode> {
    let home = Home::open(&home::resolve(home_flag)?).await?;
    let access = home.access();
    let today = chrono::Utc::now().date_naive();
    let from = args
        .from
        .unwrap_or_else(|| (today - chrono::Duration::days(30)).to_string());
    let to = args.to.unwrap_or_else(|| today.to_string());
    let usage = access
        .usage(&from, &to, args.principal.as_deref(), None)
        .await?;
    println!(
        "{:<10} {:<16} {:<32} {:>8} {:>12} {:>12}",
        "day", "principal", "dataset", "requests", "rows", "bytes"
    );
    let mut names = BTreeMap::new();
    for u in &usage {
        if let std::collections::btree_map::Entry::Vacant(slot) = names.entry(u.dataset_id) {
            let name = home
                .catalog
                .dataset_by_id(u.dataset_id)
                .await?
                .map(|d| format!("{}.{}", d.unit_id, d.name))
                .unwrap_or_else(|| u.dataset_id.to_string());
            slot.insert(name);
        }
        println!(
            "{:<10} {:<16} {:<32} {:>8} {:>12} {:>12}",
            u.day, u.principal, names[&u.dataset_id], u.requests, u.rows_served, u.bytes_served
        );
    }
    if usage.is_empty() {
        println!("no data served between {from} and {to}");
    }
    home.catalog.close().await;
    Ok(ExitCode::SUCCESS)
}

/// Records a CLI query in the audit log: the tables and columns it read.
pub async fn audit_query(
    home: &Home,
    sql: &str,
    rows: usize,
    as_user: Option<&str>,
    ok: bool,
    scanned: &[(String, Vec<String>)],
) {
    let tables: Vec<&str> = scanned.iter().map(|(t, _)| t.as_str()).collect();
    let mut e = cli_event("sql.query", &tables.join(","));
    e.columns = scanned
        .iter()
        .flat_map(|(t, cols)| cols.iter().map(move |c| format!("{t}.{c}")))
        .collect::<Vec<_>>()
        .join(",");
    e.row_count = Some(rows as i64);
    e.outcome = Some(if ok { Outcome::Ok } else { Outcome::Error });
    e.detail = serde_json::json!({"sql": sql, "as": as_user}).to_string();
    if let Err(err) = home.access().audit(e).await {
        tracing::error!("could not write the audit entry of a query: {err}");
    }
}
