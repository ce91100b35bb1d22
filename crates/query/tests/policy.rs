//! The policy engine under attack: a consumer with a masked, row-filtered grant tries to get at
//! the raw values through SQL. Every answer and every error is searched for the secrets.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use arrow::array::{Date32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::util::pretty::pretty_format_batches;
use reservoir_access::mask::MaskKey;
use reservoir_access::{Access, GrantColumn, Mask, NewGrant, NewUser, Principal, Role};
use reservoir_query::QueryEngine;
use reservoir_testkit::LakeHome;

/// Values the consumer must never see, in any form.
const SECRETS: &[&str] = &[
    // names (only the first character may show)
    "张三丰",
    "三丰",
    "王小明",
    "小明",
    // resident IDs, whole and in telling parts
    "110101199003071234",
    "310227197001011235",
    "19900307",
    // phones
    "13800001111",
    "00001111",
    "13900002222",
    // addresses beyond the street
    "文诚路100号",
    "文诚路",
    "中山路8号",
    // the ungranted column's values and name
    "机密备注甲",
    "机密备注乙",
    "secret_note",
    // the filtered-out rows
    "李四光",
    "岳阳路",
    "320102198001011239",
];

fn residents() -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, true),
        Field::new("id_card", DataType::Utf8, true),
        Field::new("phone", DataType::Utf8, true),
        Field::new("address", DataType::Utf8, true),
        Field::new("street", DataType::Utf8, true),
        Field::new("birth", DataType::Date32, true),
        Field::new("age", DataType::Int64, true),
        Field::new("secret_note", DataType::Utf8, true),
    ]));
    let text = |v: [&str; 4]| Arc::new(StringArray::from(v.to_vec()));
    RecordBatch::try_new(
        schema,
        vec![
            text(["张三丰", "王小明", "李四光", "赵六"]),
            text([
                "110101199003071234",
                "310227197001011235",
                "320102198001011239",
                "320102198101011230",
            ]),
            text(["13800001111", "13900002222", "13700003333", "13600004444"]),
            text([
                "上海市松江区方松街道文诚路100号",
                "上海市松江区方松街道中山路8号",
                "上海市松江区岳阳街道岳阳路1号",
                "上海市松江区岳阳街道岳阳路2号",
            ]),
            text(["方松街道", "方松街道", "岳阳街道", "岳阳街道"]),
            Arc::new(Date32Array::from(vec![7370, 0, 3652, 4018])),
            Arc::new(Int64Array::from(vec![36, 56, 46, 45])),
            text(["机密备注甲", "机密备注乙", "机密备注丙", "机密备注丁"]),
        ],
    )
    .unwrap()
}

fn vaccinations() -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id_card", DataType::Utf8, true),
        Field::new("dose", DataType::Int64, true),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec![
                "110101199003071234",
                "110101199003071234",
                "320102198001011239",
            ])),
            Arc::new(Int64Array::from(vec![1, 2, 1])),
        ],
    )
    .unwrap()
}

struct Setup {
    home: LakeHome,
    access: Access,
    consumer: Principal,
    key: Arc<MaskKey>,
}

async fn setup() -> Setup {
    let home = LakeHome::new().await;
    let residents_ds = home.table("minzheng", "residents", residents()).await;
    home.table("minzheng", "residents_copy", residents()).await;
    let vacc = home.table("weijian", "vaccinations", vaccinations()).await;
    let access = Access::new(home.catalog.clone());
    let user = access
        .create_user(&NewUser {
            id: "analyst".into(),
            display_name: "分析员".into(),
            role: Role::Consumer,
            unit_id: Some("weijian".into()),
            password: "Analyst-pass-1".into(),
            must_change: false,
        })
        .await
        .unwrap();
    let operator = Principal::local_operator();
    let expires = reservoir_catalog::format_ts(chrono::Utc::now() + chrono::Duration::days(30));
    let col = |name: &str, mask: Mask| GrantColumn {
        name: name.into(),
        mask,
    };
    access
        .create_grant(
            &operator,
            &NewGrant {
                user_id: user.id.clone(),
                dataset_id: residents_ds.id,
                columns: vec![
                    col("name", Mask::Keep { first: 1, last: 0 }),
                    col("id_card", Mask::Hash),
                    col("phone", Mask::Keep { first: 3, last: 4 }),
                    col("address", Mask::Street),
                    col("street", Mask::None),
                    col("birth", Mask::Year),
                    col("age", Mask::None),
                ],
                row_filter: Some("street = '方松街道'".into()),
                purpose: "疫苗接种覆盖率分析".into(),
                request_id: None,
                starts_at: None,
                expires_at: expires.clone(),
                hours: None,
                rate_per_minute: None,
                row_quota: None,
            },
        )
        .await
        .unwrap();
    access
        .create_grant(
            &operator,
            &NewGrant {
                user_id: user.id.clone(),
                dataset_id: vacc.id,
                columns: vec![col("id_card", Mask::Hash), col("dose", Mask::None)],
                row_filter: None,
                purpose: "疫苗接种覆盖率分析".into(),
                request_id: None,
                starts_at: None,
                expires_at: expires,
                hours: None,
                rate_per_minute: None,
                row_quota: None,
            },
        )
        .await
        .unwrap();
    Setup {
        consumer: Principal::of(&user),
        home,
        access,
        key: Arc::new(MaskKey::from_bytes(b"test masking key 0123456789")),
    }
}

impl Setup {
    async fn engine(&self, principal: &Principal) -> QueryEngine {
        let vis = self.access.visibility(principal).await.unwrap();
        QueryEngine::for_visibility(
            &self.home.lake,
            &self.home.catalog,
            &vis,
            Some(self.key.clone()),
        )
        .await
        .unwrap()
    }
}

/// The answer to `sql` as text: the table, or the error.
async fn answer(engine: &QueryEngine, sql: &str) -> Result<String, String> {
    match engine.query(sql).await {
        Ok(batches) => Ok(pretty_format_batches(&batches).unwrap().to_string()),
        Err(e) => Err(e.to_string()),
    }
}

fn rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter(|l| l.starts_with('|'))
        .skip(1)
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn a_granted_table_shows_masked_columns_and_filtered_rows_only() {
    let s = setup().await;
    let engine = s.engine(&s.consumer).await;
    let out = answer(
        &engine,
        "SELECT name, id_card, phone, address, street, birth, age FROM minzheng.residents ORDER BY age",
    )
    .await
    .unwrap();
    let got = rows(&out);
    assert_eq!(got.len(), 2, "{out}");
    assert_eq!(got[0][0], "张**");
    assert_eq!(
        got[0][1],
        s.key.for_principal("analyst").hash("110101199003071234")
    );
    assert_eq!(got[0][2], "138****1111");
    assert_eq!(got[0][3], "上海市松江区方松街道******");
    assert_eq!(got[0][4], "方松街道");
    assert_eq!(got[0][5], "1990");
    assert_eq!(got[0][6], "36");
    assert_eq!(got[1][0], "王**");
    assert_eq!(got[1][5], "1970");

    // The schema a consumer sees: granted columns only, masked ones as text.
    let out = answer(&engine, "DESCRIBE minzheng.residents")
        .await
        .unwrap();
    let names: Vec<String> = rows(&out).into_iter().map(|r| r[0].clone()).collect();
    assert_eq!(
        names,
        [
            "name", "id_card", "phone", "address", "street", "birth", "age"
        ]
    );
    assert!(out.contains("Utf8") && out.contains("Int64"), "{out}");

    // Keyed hashes join across datasets: the visible person with two doses.
    let out = answer(
        &engine,
        "SELECT r.name, count(*) AS doses FROM minzheng.residents r
         JOIN weijian.vaccinations v ON r.id_card = v.id_card GROUP BY r.name",
    )
    .await
    .unwrap();
    assert_eq!(rows(&out), vec![vec!["张**".to_string(), "2".to_string()]]);
}

#[tokio::test]
async fn bypass_attempts_reveal_nothing() {
    let s = setup().await;
    let engine = s.engine(&s.consumer).await;
    let t = "minzheng.residents";
    let attempts = [
        // functions over masked columns
        format!("SELECT upper(name), lower(id_card), length(name), reverse(phone) FROM {t}"),
        format!("SELECT substr(id_card, 7, 8), substring(phone, 4, 4), left(name, 3) FROM {t}"),
        format!("SELECT concat(name, address), md5(id_card), sha256(phone) FROM {t}"),
        format!("SELECT regexp_replace(phone, '\\*', '', 'g'), translate(name, '*', 'x') FROM {t}"),
        format!("SELECT character_length(address), octet_length(id_card), ascii(name) FROM {t}"),
        // CAST and its errors
        format!("SELECT CAST(id_card AS BIGINT) FROM {t}"),
        format!("SELECT CAST(name AS INT) FROM {t}"),
        format!("SELECT arrow_cast(phone, 'Int64') FROM {t}"),
        format!("SELECT CAST(birth AS DATE) FROM {t}"),
        format!("SELECT to_timestamp(address) FROM {t}"),
        // LIKE and comparison probing
        format!("SELECT count(*) FROM {t} WHERE id_card LIKE '1101%'"),
        format!("SELECT count(*) FROM {t} WHERE name LIKE '%三丰'"),
        format!("SELECT count(*) FROM {t} WHERE phone = '13800001111'"),
        format!("SELECT count(*) FROM {t} WHERE id_card > '2' AND id_card < '4'"),
        format!("SELECT name FROM {t} WHERE starts_with(id_card, '110101')"),
        format!("SELECT name FROM {t} WHERE address LIKE '%文诚路%'"),
        // ORDER BY and aggregates over masked columns
        format!("SELECT name FROM {t} ORDER BY id_card"),
        format!("SELECT max(id_card), min(phone), max(name), min(address) FROM {t}"),
        format!("SELECT name, count(*) FROM {t} GROUP BY name ORDER BY name"),
        format!("SELECT first_value(phone) OVER (ORDER BY id_card) FROM {t}"),
        format!("SELECT string_agg(name, ',') FROM {t}"),
        format!("SELECT array_agg(phone) FROM {t}"),
        // rows outside the row filter
        format!("SELECT * FROM {t} WHERE street = '岳阳街道'"),
        format!("SELECT count(*) FROM {t} WHERE true OR street <> '方松街道'"),
        format!("SELECT count(*), sum(age) FROM {t}"),
        "SELECT * FROM raw.minzheng.residents WHERE age > 40 OR age <= 40".to_string(),
        // the ungranted column
        format!("SELECT secret_note FROM {t}"),
        format!("SELECT * FROM {t} WHERE secret_note IS NOT NULL"),
        format!("SELECT \"secret_note\" FROM {t}"),
        // the unmasked copy, derived layers and the system catalog
        "SELECT * FROM minzheng.residents_copy".to_string(),
        format!("SELECT r.name, c.name FROM {t} r JOIN minzheng.residents_copy c ON r.age = c.age"),
        "SELECT * FROM quarantine.minzheng.residents".to_string(),
        "SELECT * FROM quality.minzheng.residents".to_string(),
        "SELECT table_catalog, table_schema, table_name FROM information_schema.tables".to_string(),
        "SELECT table_name, column_name FROM information_schema.columns".to_string(),
        "SHOW TABLES".to_string(),
        // EXPLAIN of all kinds
        format!("EXPLAIN SELECT * FROM {t} WHERE id_card = '110101199003071234'"),
        format!("EXPLAIN VERBOSE SELECT name FROM {t}"),
        format!("EXPLAIN ANALYZE SELECT name FROM {t} WHERE age > 1"),
        // statistics
        format!("SELECT count(*) FROM {t}"),
        format!("SELECT count(id_card), count(DISTINCT phone) FROM {t}"),
    ];
    let mut seen = String::new();
    for sql in &attempts {
        let text = match answer(&engine, sql).await {
            Ok(t) => t,
            Err(e) => format!("error: {e}"),
        };
        // A name the query itself typed may come back in its error; nothing else may.
        for secret in SECRETS.iter().filter(|s| !sql.contains(*s)) {
            assert!(
                !text.contains(secret),
                "{sql}\nrevealed {secret:?}:\n{text}"
            );
        }
        seen.push_str(&format!("{sql}\n{text}\n\n"));
    }

    // The answers are the masked ones, not just empty.
    let count = |sql: String| {
        let engine = engine.clone();
        async move { rows(&answer(&engine, &sql).await.unwrap())[0][0].clone() }
    };
    assert_eq!(count(format!("SELECT count(*) FROM {t}")).await, "2");
    assert_eq!(
        count(format!(
            "SELECT count(*) FROM {t} WHERE true OR street <> '方松街道'"
        ))
        .await,
        "2"
    );
    assert_eq!(
        count(format!(
            "SELECT count(*) FROM {t} WHERE id_card LIKE '1101%'"
        ))
        .await,
        "0"
    );
    for (sql, expected) in [
        (format!("SELECT secret_note FROM {t}"), "secret"),
        (
            "SELECT * FROM minzheng.residents_copy".to_string(),
            "residents_copy",
        ),
        (
            "SELECT * FROM quarantine.minzheng.residents".to_string(),
            "residents",
        ),
    ] {
        let err = answer(&engine, &sql).await.unwrap_err();
        assert!(
            err.contains("not found") || err.contains("No field named"),
            "{sql}: {err}"
        );
        let _ = expected;
    }
    let tables = answer(&engine, "SHOW TABLES").await.unwrap();
    assert!(
        tables.contains("residents") && tables.contains("vaccinations"),
        "{tables}"
    );
    assert!(!tables.contains("residents_copy"), "{tables}");
    assert!(seen.contains("PolicyScan: minzheng.residents"), "{seen}");
}

#[tokio::test]
async fn stewards_see_their_unit_whole_and_auditors_see_no_data() {
    let s = setup().await;
    let steward = s
        .access
        .create_user(&NewUser {
            id: "mz-steward".into(),
            display_name: String::new(),
            role: Role::Steward,
            unit_id: Some("minzheng".into()),
            password: "Steward-pass-1".into(),
            must_change: false,
        })
        .await
        .unwrap();
    let engine = s.engine(&Principal::of(&steward)).await;
    let out = answer(
        &engine,
        "SELECT secret_note FROM minzheng.residents ORDER BY age",
    )
    .await
    .unwrap();
    assert!(
        out.contains("机密备注甲") && out.contains("机密备注丙"),
        "{out}"
    );
    // Not the other unit's data.
    let err = answer(&engine, "SELECT * FROM weijian.vaccinations")
        .await
        .unwrap_err();
    assert!(err.contains("not found"), "{err}");

    let auditor = s
        .access
        .create_user(&NewUser {
            id: "auditor".into(),
            display_name: String::new(),
            role: Role::Auditor,
            unit_id: None,
            password: "Auditor-pass-1".into(),
            must_change: false,
        })
        .await
        .unwrap();
    let engine = s.engine(&Principal::of(&auditor)).await;
    let tables = answer(&engine, "SHOW TABLES").await.unwrap();
    assert!(
        !tables.contains("residents") && !tables.contains("vaccinations"),
        "{tables}"
    );
}

#[tokio::test]
async fn tokens_scoped_to_a_grant_see_that_grant_only() {
    let s = setup().await;
    let grants = s.access.grants(Some("analyst"), None).await.unwrap();
    let residents = grants
        .iter()
        .find(|g| g.columns.iter().any(|c| c.name == "street"))
        .unwrap();
    let issued = s
        .access
        .create_token("analyst", "ETL", Some(residents.id), 7)
        .await
        .unwrap();
    let principal = s.access.principal_for_token(&issued.secret).await.unwrap();
    assert_eq!(principal.grant_scope, Some(residents.id));
    let engine = s.engine(&principal).await;
    let tables = answer(&engine, "SHOW TABLES").await.unwrap();
    assert!(
        tables.contains("residents") && !tables.contains("vaccinations"),
        "{tables}"
    );

    // Revoking the grant revokes the token.
    s.access
        .revoke_grant(residents.id, &Principal::local_operator())
        .await
        .unwrap();
    let err = s
        .access
        .principal_for_token(&issued.secret)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("revoked"), "{err}");
    let engine = s.engine(&s.consumer).await;
    let err = answer(&engine, "SELECT * FROM minzheng.residents")
        .await
        .unwrap_err();
    assert!(err.contains("not found"), "{err}");
}

#[tokio::test]
async fn a_row_filter_that_no_longer_fits_hides_the_table() {
    let s = setup().await;
    let grant = s
        .access
        .create_grant(
            &Principal::local_operator(),
            &NewGrant {
                user_id: "analyst".into(),
                dataset_id: s
                    .home
                    .catalog
                    .dataset("raw", "minzheng", "residents_copy")
                    .await
                    .unwrap()
                    .unwrap()
                    .id,
                columns: vec![GrantColumn {
                    name: "age".into(),
                    mask: Mask::None,
                }],
                row_filter: Some("no_such_column = 1".into()),
                purpose: "测试失效的行过滤".into(),
                request_id: None,
                starts_at: None,
                expires_at: reservoir_catalog::format_ts(
                    chrono::Utc::now() + chrono::Duration::days(1),
                ),
                hours: None,
                rate_per_minute: None,
                row_quota: None,
            },
        )
        .await
        .unwrap();
    assert!(grant.row_filter.is_some());
    let engine = s.engine(&s.consumer).await;
    let err = answer(&engine, "SELECT age FROM minzheng.residents_copy")
        .await
        .unwrap_err();
    assert!(err.contains("no longer fits"), "{err}");
    // The refusal names no raw column.
    assert!(
        !err.contains("secret_note") && !err.contains("no_such_column"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn granted_tables_join_with_themselves_many_times() {
    // Joins execute their inputs' partitions again (a nested loop join re-reads its probe
    // side); a granted table's scan must run as often as it is asked to.
    let s = setup().await;
    // A table of some size, so that the planner spreads its scan over partitions.
    let n = 3000;
    let schema = Arc::new(Schema::new(vec![
        Field::new("code", DataType::Utf8, true),
        Field::new("name", DataType::Utf8, true),
    ]));
    let big = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|i| format!("{i:06}")),
            )),
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|i| format!("村{}", i % 97)),
            )),
        ],
    )
    .unwrap();
    let villages = s.home.table("minzheng", "villages", big).await;
    s.access
        .create_grant(
            &Principal::local_operator(),
            &NewGrant {
                user_id: "analyst".into(),
                dataset_id: villages.id,
                columns: vec![
                    GrantColumn {
                        name: "code".into(),
                        mask: Mask::None,
                    },
                    GrantColumn {
                        name: "name".into(),
                        mask: Mask::Keep { first: 1, last: 0 },
                    },
                ],
                row_filter: None,
                purpose: "测试".into(),
                request_id: None,
                starts_at: None,
                expires_at: reservoir_catalog::format_ts(
                    chrono::Utc::now() + chrono::Duration::days(1),
                ),
                hours: None,
                rate_per_minute: None,
                row_quota: None,
            },
        )
        .await
        .unwrap();
    let engine = s.engine(&s.consumer).await;
    for (sql, expected) in [
        (
            "SELECT count(*) FROM minzheng.villages a, minzheng.villages b WHERE a.code < b.code",
            n * (n - 1) / 2,
        ),
        (
            "SELECT count(*) FROM minzheng.villages a, minzheng.villages b, minzheng.villages c \
             WHERE a.code = '000001' AND b.code < '000010' AND c.name || b.code <> a.name",
            10 * n,
        ),
        (
            "SELECT count(*) FROM minzheng.villages a, minzheng.villages b, minzheng.villages c, \
             minzheng.villages d WHERE a.code < '000003' AND b.code < '000003' \
             AND c.code < '000010' AND a.code || b.code <> c.code || d.code",
            // every combination but the 9 where c = a and d = b
            3 * 3 * 10 * n - 9,
        ),
    ] {
        let batches = executor_collect(&engine, sql).await;
        let count = batches[0]
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .value(0);
        assert_eq!(count, expected as i64, "{sql}");
    }
}

async fn executor_collect(engine: &QueryEngine, sql: &str) -> Vec<RecordBatch> {
    let df = engine.sql(sql).await.unwrap();
    reservoir_query::executor::collect(df)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}
