//! The access store on both catalog backends: accounts and lockout, sessions, tokens, the
//! request → approval → grant workflow, the audit chain under tampering, and metering.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{Duration, Utc};
use reservoir_access::audit::AuditFilter;
use reservoir_access::*;
use reservoir_catalog::{Catalog, DatasetSpec, Field, NewUnit, PiiKind, PiiMark, PiiStatus};
use reservoir_testkit::PgDatabase;

async fn sqlite() -> (tempfile::TempDir, Catalog) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("catalog.db").display());
    (dir, Catalog::connect(&url).await.unwrap())
}

/// Runs `body` on SQLite and on a fresh PostgreSQL database.
macro_rules! on_both_backends {
    ($name:ident, $body:ident) => {
        mod $name {
            use super::*;

            #[tokio::test]
            async fn sqlite() {
                let (_dir, catalog) = super::sqlite().await;
                $body(catalog, Raw::Sqlite(_dir.path().join("catalog.db"))).await;
            }

            #[tokio::test]
            async fn postgres() {
                let db = PgDatabase::create().await;
                let catalog = Catalog::connect(&db.url).await.unwrap();
                $body(catalog.clone(), Raw::Postgres(db.url.clone())).await;
                catalog.close().await;
                db.drop_db().await;
            }
        }
    };
}

/// Direct access to the database, the way someone tampering with it would have.
enum Raw {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl Raw {
    async fn exec(&self, sql: &str) {
        use sqlx::Connection;
        match self {
            Raw::Sqlite(path) => {
                let mut c =
                    sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                        .await
                        .unwrap();
                sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
            }
            Raw::Postgres(url) => {
                let mut c = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
            }
        }
    }
}

async fn unit_with_dataset(catalog: &Catalog, unit: &str, name: &str) -> i64 {
    catalog
        .upsert_unit(&NewUnit {
            id: unit.into(),
            name: unit.into(),
            ..NewUnit::default()
        })
        .await
        .unwrap();
    let d = catalog
        .upsert_dataset(&DatasetSpec {
            layer: "raw".into(),
            unit_id: unit.into(),
            name: name.into(),
            title: name.into(),
            description: String::new(),
            system_id: None,
            location: format!("raw/{unit}/{name}"),
            update_frequency: Default::default(),
            sensitivity: 3,
            open_tier: Default::default(),
        })
        .await
        .unwrap();
    let fields: Vec<Field> = ["name", "id_card", "phone", "street", "age"]
        .iter()
        .enumerate()
        .map(|(i, n)| Field {
            position: i as i64,
            name: n.to_string(),
            data_type: "Utf8".into(),
            nullable: true,
            title: String::new(),
            description: String::new(),
            flags: String::new(),
        })
        .collect();
    catalog.set_fields(d.id, &fields).await.unwrap();
    d.id
}

fn user(id: &str, role: Role, unit: Option<&str>) -> NewUser {
    NewUser {
        id: id.into(),
        display_name: id.into(),
        role,
        unit_id: unit.map(str::to_string),
        password: format!("{id}-Password-1"),
        must_change: false,
    }
}

async fn accounts_and_lockout(catalog: Catalog, _raw: Raw) {
    unit_with_dataset(&catalog, "minzheng", "residents").await;
    let access = Access::new(catalog);
    assert!(!access.has_operator().await.unwrap());
    access
        .create_user(&user("admin", Role::Operator, None))
        .await
        .unwrap();
    assert!(access.has_operator().await.unwrap());

    // Rules on accounts, each with its reason.
    let err = access
        .create_user(&user("admin", Role::Operator, None))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    let err = access
        .create_user(&user("c1", Role::Consumer, None))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("belongs to a unit"), "{err}");
    let err = access
        .create_user(&user("c1", Role::Consumer, Some("nowhere")))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("nowhere"), "{err}");
    let err = access
        .create_user(&NewUser {
            password: "short".into(),
            ..user("c1", Role::Consumer, Some("minzheng"))
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("at least 10"), "{err}");
    // Logins are lowercase ASCII: no two look alike.
    for bad in ["a b", "Admin", "аdmin", "ＡＤＭＩＮ"] {
        let err = access
            .create_user(&user(bad, Role::Auditor, None))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("login name"), "{bad}: {err}");
    }

    // Logins: wrong name and wrong password read the same.
    let ok = access
        .authenticate("admin", "admin-Password-1")
        .await
        .unwrap();
    assert!(ok.last_login_at.is_some());
    let wrong_name = access
        .authenticate("nobody", "x")
        .await
        .unwrap_err()
        .to_string();
    let wrong_pass = access
        .authenticate("admin", "x")
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(wrong_name, wrong_pass);

    // Five failures in a row lock the account, even against the right password.
    for _ in 0..3 {
        access.authenticate("admin", "wrong").await.unwrap_err();
    }
    let locked = access.authenticate("admin", "wrong").await.unwrap_err();
    assert!(matches!(locked, Error::Locked { .. }), "{locked}");
    let still = access
        .authenticate("admin", "admin-Password-1")
        .await
        .unwrap_err();
    assert!(matches!(still, Error::Locked { .. }), "{still}");
    // A password reset unlocks.
    access
        .set_password("admin", "New-Password-2", false)
        .await
        .unwrap();
    access
        .authenticate("admin", "New-Password-2")
        .await
        .unwrap();

    // Sessions and their CSRF tokens.
    let session = access
        .login("admin", "New-Password-2", "127.0.0.1")
        .await
        .unwrap();
    let (who, csrf_hash) = access.session(&session.cookie).await.unwrap().unwrap();
    assert_eq!(who.id, "admin");
    assert!(Access::csrf_matches(&csrf_hash, &session.csrf));
    assert!(!Access::csrf_matches(&csrf_hash, "forged"));
    assert!(access.session("not-a-session").await.unwrap().is_none());
    access.logout(&session.cookie).await.unwrap();
    assert!(access.session(&session.cookie).await.unwrap().is_none());

    // Disabling ends sessions and refuses logins.
    let s2 = access.login("admin", "New-Password-2", "").await.unwrap();
    access.set_disabled("admin", true).await.unwrap();
    assert!(access.session(&s2.cookie).await.unwrap().is_none());
    // …with the same answer as a wrong password, so it confirms nothing about the password.
    let err = access
        .authenticate("admin", "New-Password-2")
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), wrong_pass);
}
on_both_backends!(accounts, accounts_and_lockout);

async fn tokens(catalog: Catalog, raw: Raw) {
    let ds = unit_with_dataset(&catalog, "minzheng", "residents").await;
    unit_with_dataset(&catalog, "weijian", "vaccinations").await;
    let access = Access::new(catalog);
    access
        .create_user(&user("analyst", Role::Consumer, Some("weijian")))
        .await
        .unwrap();
    access
        .create_user(&user("other", Role::Consumer, Some("weijian")))
        .await
        .unwrap();
    let grant = access
        .create_grant(
            &Principal::local_operator(),
            &NewGrant {
                user_id: "analyst".into(),
                dataset_id: ds,
                columns: vec![GrantColumn {
                    name: "age".into(),
                    mask: Mask::None,
                }],
                row_filter: None,
                purpose: "统计分析".into(),
                request_id: None,
                starts_at: None,
                expires_at: reservoir_catalog::format_ts(Utc::now() + Duration::days(10)),
                hours: None,
                rate_per_minute: None,
                row_quota: None,
            },
        )
        .await
        .unwrap();

    let issued = access
        .create_token("analyst", "nightly", None, 30)
        .await
        .unwrap();
    assert!(issued.secret.starts_with("rsv_"));
    let p = access.principal_for_token(&issued.secret).await.unwrap();
    assert_eq!(p.user.as_deref(), Some("analyst"));
    assert_eq!(p.grant_scope, None);
    // Only a hash is stored: the secret is nowhere in the table.
    let listed = access.tokens(Some("analyst")).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].last_used_at.is_some());

    // A scoped token never outlives its grant.
    let scoped = access
        .create_token("analyst", "etl", Some(grant.id), 300)
        .await
        .unwrap();
    assert_eq!(scoped.token.expires_at, grant.expires_at);
    // Nobody gets a token for another's grant.
    let err = access
        .create_token("other", "x", Some(grant.id), 1)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("belongs to"), "{err}");

    // Refusals, each with its reason.
    let err = access
        .principal_for_token("Bearer xyz")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a Reservoir token"), "{err}");
    let forged = format!("{}x", issued.secret);
    let err = access
        .principal_for_token(&forged)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown token"), "{err}");
    raw.exec(&format!(
        "UPDATE api_tokens SET expires_at = '2020-01-01T00:00:00.000000Z' WHERE id = '{}'",
        issued.token.id
    ))
    .await;
    let err = access
        .principal_for_token(&issued.secret)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("expired"), "{err}");
    access.revoke_token(&scoped.secret).await.unwrap();
    let err = access
        .principal_for_token(&scoped.secret)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("revoked"), "{err}");
}
on_both_backends!(api_tokens, tokens);

async fn requests_and_grants(catalog: Catalog, raw: Raw) {
    let ds = unit_with_dataset(&catalog, "minzheng", "residents").await;
    unit_with_dataset(&catalog, "weijian", "vaccinations").await;
    catalog
        .record_pii_scan(
            ds,
            &[
                PiiMark {
                    field: "id_card".into(),
                    kind: PiiKind::ResidentId,
                    share: 1.0,
                    sampled: 10,
                    status: PiiStatus::Suggested,
                    updated_at: String::new(),
                },
                PiiMark {
                    field: "phone".into(),
                    kind: PiiKind::MobilePhone,
                    share: 1.0,
                    sampled: 10,
                    status: PiiStatus::Suggested,
                    updated_at: String::new(),
                },
            ],
        )
        .await
        .unwrap();
    let access = Access::new(catalog);
    let consumer = access
        .create_user(&user("analyst", Role::Consumer, Some("weijian")))
        .await
        .unwrap();
    let steward = access
        .create_user(&user("mz", Role::Steward, Some("minzheng")))
        .await
        .unwrap();
    let other_steward = access
        .create_user(&user("wj", Role::Steward, Some("weijian")))
        .await
        .unwrap();
    let consumer = Principal::of(&consumer);
    let today = Utc::now().date_naive();
    let new = NewRequest {
        dataset_id: ds,
        columns: vec![
            "name".into(),
            "id_card".into(),
            "phone".into(),
            "street".into(),
        ],
        purpose: "新冠疫苗接种覆盖率按社区统计".into(),
        period_start: today.to_string(),
        period_end: (today + Duration::days(90)).to_string(),
        volume: Some(5000),
    };

    // Bad requests say what is wrong.
    let err = access
        .file_request(
            &consumer,
            &NewRequest {
                columns: vec!["salary".into()],
                ..new.clone()
            },
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no column \"salary\"") && err.contains("id_card"),
        "{err}"
    );
    let err = access
        .file_request(
            &consumer,
            &NewRequest {
                period_end: "2026/13/01".into(),
                ..new.clone()
            },
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("YYYY-MM-DD"), "{err}");

    let request = access.file_request(&consumer, &new).await.unwrap();
    assert_eq!(request.status, RequestStatus::Pending);
    // Both sides see it; a steward of another unit does not.
    assert_eq!(access.requests_for(&consumer).await.unwrap().len(), 1);
    assert_eq!(
        access
            .requests_for(&Principal::of(&steward))
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        access
            .requests_for(&Principal::of(&other_steward))
            .await
            .unwrap()
            .is_empty()
    );

    // Only the owning unit's steward decides.
    let err = access
        .approve(
            request.id,
            &Principal::of(&other_steward),
            &Approval::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Forbidden(_)), "{err}");
    let err = access
        .approve(request.id, &consumer, &Approval::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Forbidden(_)), "{err}");

    // Narrowing may not widen.
    let err = access
        .approve(
            request.id,
            &Principal::of(&steward),
            &Approval {
                columns: Some(vec!["name".into(), "age".into()]),
                ..Approval::default()
            },
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"age\" was not requested"), "{err}");

    // Approval provisions the grant in one step: narrowed columns, default masks from PII kinds,
    // a row filter, the period as expiry, the volume as quota.
    let (approved, grant) = access
        .approve(
            request.id,
            &Principal::of(&steward),
            &Approval {
                columns: Some(vec!["name".into(), "id_card".into(), "phone".into()]),
                masks: [("name".to_string(), Mask::Keep { first: 1, last: 0 })].into(),
                row_filter: Some("street = '方松街道'".into()),
                note: "仅限方松街道".into(),
                ..Approval::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(approved.status, RequestStatus::Approved);
    assert_eq!(approved.grant_id, Some(grant.id));
    assert_eq!(approved.reason, "仅限方松街道");
    assert_eq!(
        grant.columns,
        vec![
            GrantColumn {
                name: "name".into(),
                mask: Mask::Keep { first: 1, last: 0 }
            },
            GrantColumn {
                name: "id_card".into(),
                mask: Mask::Hash
            },
            GrantColumn {
                name: "phone".into(),
                mask: Mask::Keep { first: 3, last: 4 }
            },
        ]
    );
    assert_eq!(grant.row_filter.as_deref(), Some("street = '方松街道'"));
    assert_eq!(grant.row_quota, Some(5000));
    assert!(
        grant.expires_at.starts_with(&new.period_end),
        "{}",
        grant.expires_at
    );
    let err = access
        .reject(request.id, &Principal::of(&steward), "late")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("approved already"), "{err}");

    // The grant makes the dataset visible; the quota withholds it once used up.
    let vis = access.visibility(&consumer).await.unwrap();
    assert_eq!(vis.grants().len(), 1);
    access.add_rows_served(grant.id, 5000).await.unwrap();
    let vis = access.visibility(&consumer).await.unwrap();
    assert!(vis.grants().is_empty());
    assert!(
        vis.withheld()[0].reason.contains("quota"),
        "{:?}",
        vis.withheld()
    );

    // Rejection needs a reason; withdrawal is the requester's.
    let second = access.file_request(&consumer, &new).await.unwrap();
    let err = access
        .reject(second.id, &Principal::of(&steward), " ")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("say why"), "{err}");
    let rejected = access
        .reject(second.id, &Principal::of(&steward), "用途与申请数据不符")
        .await
        .unwrap();
    assert_eq!(rejected.status, RequestStatus::Rejected);
    assert_eq!(rejected.reason, "用途与申请数据不符");
    let third = access.file_request(&consumer, &new).await.unwrap();
    let err = access
        .withdraw(third.id, &Principal::of(&steward))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Forbidden(_)), "{err}");
    let withdrawn = access.withdraw(third.id, &consumer).await.unwrap();
    assert_eq!(withdrawn.status, RequestStatus::Withdrawn);

    // A period that starts later starts its grant later: from 00:00 (UTC+8) of its first day.
    let later = access
        .file_request(
            &consumer,
            &NewRequest {
                period_start: (today + Duration::days(10)).to_string(),
                ..new.clone()
            },
        )
        .await
        .unwrap();
    let (_, deferred) = access
        .approve(later.id, &Principal::of(&steward), &Approval::default())
        .await
        .unwrap();
    let first_day = format!("{}T16:00:00", today + Duration::days(9));
    assert!(
        deferred.starts_at.starts_with(&first_day),
        "{}",
        deferred.starts_at
    );
    assert!(!deferred.active_at(&reservoir_catalog::format_ts(Utc::now())));

    // Nobody decides their own request or grants themselves access.
    let own = access
        .file_request(
            &Principal::of(&steward),
            &NewRequest {
                columns: vec!["name".into()],
                ..new.clone()
            },
        )
        .await
        .unwrap();
    let err = access
        .approve(own.id, &Principal::of(&steward), &Approval::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Forbidden(_)), "{err}");
    let err = access
        .create_grant(
            &Principal::of(&steward),
            &NewGrant {
                user_id: "mz".into(),
                dataset_id: ds,
                columns: vec![GrantColumn {
                    name: "name".into(),
                    mask: Mask::None,
                }],
                row_filter: None,
                purpose: "自己给自己".into(),
                request_id: None,
                starts_at: None,
                expires_at: reservoir_catalog::format_ts(Utc::now() + Duration::days(1)),
                hours: None,
                rate_per_minute: None,
                row_quota: None,
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Forbidden(_)), "{err}");

    // When the newest grant on a dataset is withheld, an older, broader one does not stand in.
    let broad = NewGrant {
        user_id: "analyst".into(),
        dataset_id: ds,
        columns: vec![
            GrantColumn {
                name: "name".into(),
                mask: Mask::None,
            },
            GrantColumn {
                name: "age".into(),
                mask: Mask::None,
            },
        ],
        row_filter: None,
        purpose: "较宽的旧授权".into(),
        request_id: None,
        starts_at: None,
        expires_at: reservoir_catalog::format_ts(Utc::now() + Duration::days(1)),
        hours: None,
        rate_per_minute: None,
        row_quota: None,
    };
    let operator = Principal::local_operator();
    access.create_grant(&operator, &broad).await.unwrap();
    let narrow = access
        .create_grant(
            &operator,
            &NewGrant {
                columns: vec![GrantColumn {
                    name: "name".into(),
                    mask: Mask::None,
                }],
                row_quota: Some(1),
                ..broad.clone()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        access.visibility(&consumer).await.unwrap().grants()[&ds].id,
        narrow.id
    );
    access.add_rows_served(narrow.id, 1).await.unwrap();
    let vis = access.visibility(&consumer).await.unwrap();
    assert!(!vis.grants().contains_key(&ds), "{:?}", vis.grants());

    // At the highest sensitivity every personal field defaults to a keyed hash.
    raw.exec(&format!(
        "UPDATE datasets SET sensitivity = 4 WHERE id = {ds}"
    ))
    .await;
    let masks = access.default_masks(ds).await.unwrap();
    let mask = |f: &str| masks.iter().find(|(n, _)| n == f).unwrap().1;
    assert_eq!(mask("id_card"), Mask::Hash);
    assert_eq!(mask("phone"), Mask::Hash);
    assert_eq!(mask("age"), Mask::None);
}
on_both_backends!(workflow, requests_and_grants);

async fn write_chain(access: &Access, n: usize) {
    for i in 0..n {
        let mut e = AuditEvent::new("analyst", "data.read", "minzheng.residents");
        e.columns = "name,id_card".into();
        e.row_count = Some(i as i64 * 10);
        e.grant_id = Some(1);
        e.purpose = "统计".into();
        e.client = "127.0.0.1 curl/8".into();
        e.detail = format!("{{\"n\":{i}}}");
        access.audit(e).await.unwrap();
    }
}

async fn audit_tampering(catalog: Catalog, raw: Raw) {
    let access = Access::new(catalog);
    let verdict = access.verify_audit().await.unwrap();
    assert_eq!(verdict.entries, 0);
    assert!(verdict.broken.is_none());

    write_chain(&access, 8).await;
    let verdict = access.verify_audit().await.unwrap();
    assert_eq!(verdict.entries, 8);
    assert_eq!(verdict.head_seq, Some(8));
    assert!(verdict.broken.is_none(), "{verdict:?}");
    let filtered = access
        .audit_entries(&AuditFilter {
            action: Some("data.".into()),
            limit: Some(3),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        filtered.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [8, 7, 6]
    );

    // Edited: entry 4 claims fewer rows.
    raw.exec("UPDATE audit_log SET row_count = 1 WHERE seq = 4")
        .await;
    let broken = access.verify_audit().await.unwrap().broken.unwrap();
    assert_eq!(broken.seq, 4);
    assert!(broken.problem.contains("edited"), "{}", broken.problem);
    raw.exec("UPDATE audit_log SET row_count = 30 WHERE seq = 4")
        .await;
    assert!(access.verify_audit().await.unwrap().broken.is_none());

    // Edited with the hash recomputed by someone without the chain: the next link breaks.
    raw.exec("UPDATE audit_log SET hash = 'ffff' WHERE seq = 2")
        .await;
    let broken = access.verify_audit().await.unwrap().broken.unwrap();
    assert_eq!(broken.seq, 2);

    // Start again for the structural cases.
    raw.exec("DELETE FROM audit_log").await;
    write_chain(&access, 8).await;

    // Reordered: entries 3 and 4 swap places.
    raw.exec(
        "UPDATE audit_log SET seq = -3 WHERE seq = 3;
         UPDATE audit_log SET seq = 3 WHERE seq = 4;
         UPDATE audit_log SET seq = 4 WHERE seq = -3;",
    )
    .await;
    let broken = access.verify_audit().await.unwrap().broken.unwrap();
    assert_eq!(broken.seq, 3);
    assert!(
        broken.problem.contains("does not link"),
        "{}",
        broken.problem
    );
    raw.exec(
        "UPDATE audit_log SET seq = -3 WHERE seq = 3;
         UPDATE audit_log SET seq = 3 WHERE seq = 4;
         UPDATE audit_log SET seq = 4 WHERE seq = -3;",
    )
    .await;
    assert!(access.verify_audit().await.unwrap().broken.is_none());

    // Inserted: a forged entry 5 that links to 4 and hashes right; entry 6 (the old 5) breaks.
    let entries = access.audit_entries(&AuditFilter::default()).await.unwrap();
    let four = entries.iter().find(|e| e.seq == 4).unwrap();
    let mut forged = four.clone();
    forged.seq = 5;
    forged.actor = "intruder".into();
    forged.prev_hash = four.hash.clone();
    forged.hash = forged.expected_hash();
    raw.exec(
        "UPDATE audit_log SET seq = seq + 100 WHERE seq >= 5;
         UPDATE audit_log SET seq = seq - 99 WHERE seq >= 105;",
    )
    .await;
    raw.exec(&format!(
        "INSERT INTO audit_log (seq, at, actor, action, target, columns, row_count, grant_id,
             purpose, client, outcome, detail, prev_hash, hash)
         VALUES (5, '{}', 'intruder', '{}', '{}', '{}', {}, 1, '{}', '{}', '{}', '{}', '{}', '{}')",
        forged.at,
        forged.action,
        forged.target,
        forged.columns,
        forged.row_count.unwrap(),
        forged.purpose,
        forged.client,
        forged.outcome,
        forged.detail,
        forged.prev_hash,
        forged.hash
    ))
    .await;
    let broken = access.verify_audit().await.unwrap().broken.unwrap();
    assert_eq!(broken.seq, 6, "{}", broken.problem);
    assert!(
        broken.problem.contains("does not link"),
        "{}",
        broken.problem
    );

    // Deleted: entry 3 removed leaves a gap.
    raw.exec("DELETE FROM audit_log").await;
    write_chain(&access, 8).await;
    raw.exec("DELETE FROM audit_log WHERE seq = 3").await;
    let broken = access.verify_audit().await.unwrap().broken.unwrap();
    assert_eq!(broken.seq, 4);
    assert!(
        broken.problem.contains("entry 3 is missing") && broken.problem.contains("deleted"),
        "{}",
        broken.problem
    );

    // A keyed chain: whoever edits an entry and recomputes every later hash without the key
    // still breaks it.
    raw.exec("DELETE FROM audit_log").await;
    let key = std::sync::Arc::new(reservoir_access::mask::MaskKey::from_bytes(
        b"audit key 0123456789",
    ));
    let keyed = access.clone().with_audit_key(key.clone());
    write_chain(&keyed, 5).await;
    assert!(keyed.verify_audit().await.unwrap().broken.is_none());
    assert!(
        access.verify_audit().await.unwrap().broken.is_some(),
        "unkeyed reading of a keyed chain"
    );
    let mut entries = keyed.audit_entries(&AuditFilter::default()).await.unwrap();
    entries.reverse();
    let mut prev = reservoir_access::audit::GENESIS.to_string();
    for mut e in entries {
        if e.seq == 2 {
            e.actor = "someone else".into();
        }
        e.prev_hash = prev.clone();
        e.hash = e.expected_hash();
        raw.exec(&format!(
            "UPDATE audit_log SET actor = '{}', prev_hash = '{}', hash = '{}' WHERE seq = {}",
            e.actor, e.prev_hash, e.hash, e.seq
        ))
        .await;
        prev = e.hash;
    }
    let broken = keyed.verify_audit().await.unwrap().broken.unwrap();
    assert_eq!(broken.seq, 1, "{}", broken.problem);
}
on_both_backends!(audit_chain, audit_tampering);

async fn metering(catalog: Catalog, _raw: Raw) {
    let ds = unit_with_dataset(&catalog, "minzheng", "residents").await;
    let access = Access::new(catalog);
    access.meter("analyst", ds, 100, 4096).await.unwrap();
    access.meter("analyst", ds, 50, 1024).await.unwrap();
    access.meter("other", ds, 7, 70).await.unwrap();
    let today = Utc::now().date_naive().to_string();
    let usage = access
        .usage(&today, &today, Some("analyst"), None)
        .await
        .unwrap();
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0].requests, 2);
    assert_eq!(usage[0].rows_served, 150);
    assert_eq!(usage[0].bytes_served, 5120);
    assert_eq!(access.rows_today("analyst").await.unwrap(), 150);
    assert_eq!(
        access
            .usage(&today, &today, None, Some(ds))
            .await
            .unwrap()
            .len(),
        2
    );
    // No history before today: no baseline yet.
    assert_eq!(access.daily_rows_baseline("analyst").await.unwrap(), None);
}
on_both_backends!(usage_meter, metering);

async fn applicants(catalog: Catalog, _raw: Raw) {
    let access = Access::new(catalog);
    let new = reservoir_access::NewApplicant {
        login: "liming".into(),
        password: "Apply-pass-2026".into(),
        name: " 李明 ".into(),
        organization: "上海松江数据科技有限公司".into(),
        credit_code: Some("91310117ma1j3k5l7l".into()),
        contact: "021-57000000".into(),
    };
    // The caller's validator decides the credit code; a refused one leaves no account.
    let refused = access
        .register_applicant(&new, "127.0.0.1 portal", |_| false)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("credit"), "{refused}");
    assert!(access.user("liming").await.unwrap().is_none());
    let user = access
        .register_applicant(&new, "127.0.0.1 portal", |c| c == "91310117MA1J3K5L7L")
        .await
        .unwrap();
    assert_eq!(user.role, Role::Consumer);
    assert_eq!(user.unit_id, None);
    assert_eq!(user.display_name, "李明（上海松江数据科技有限公司）");
    assert!(!user.must_change);
    let a = access.applicant("liming").await.unwrap().unwrap();
    assert_eq!(a.name, "李明");
    assert_eq!(a.credit_code.as_deref(), Some("91310117MA1J3K5L7L"));
    assert!(access.applicant("nobody").await.unwrap().is_none());
    // It logs in like any account; the login cannot be taken twice.
    access
        .authenticate("liming", "Apply-pass-2026")
        .await
        .unwrap();
    let again = access
        .register_applicant(&new, "127.0.0.1 portal", |_| true)
        .await
        .unwrap_err();
    assert!(again.to_string().contains("taken"), "{again}");
    // Required fields.
    let empty = reservoir_access::NewApplicant {
        login: "other".into(),
        contact: " ".into(),
        ..new.clone()
    };
    assert!(
        access
            .register_applicant(&empty, "x", |_| true)
            .await
            .is_err()
    );
}
on_both_backends!(applicant_accounts, applicants);
