//! Personal-data detection: a sample of a table's values, judged by what they look like, suggests
//! which fields hold resident IDs, credit codes, mobile numbers, bank cards, names, addresses or
//! mail addresses, and the sensitivity level that implies. Suggestions wait for a steward; the
//! catalog keeps the decision.
//!
//! A field is suggested as a kind when at least 80% of its sampled non-empty values look like it
//! (names and addresses, whose shapes are looser: 70%), or 50% when its header says so too
//! (姓名, 身份证号, phone …). IDs, credit codes and phones are judged by the same validators as
//! the quality rules, bank cards by length and the Luhn check digit.

use arrow::array::{Array, StringArray};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use chrono::Utc;
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use reservoir_catalog::{PiiKind, PiiMark, PiiStatus};
use reservoir_lake::{Lake, TableRef, meta};
use serde::Serialize;

use crate::Result;
use crate::validate::{self, Divisions, Verdict};

/// Rows read by default.
pub const DEFAULT_SAMPLE: usize = 10_000;

/// The most common Chinese surnames (together well over 90% of the population), and compound
/// ones.
const SURNAMES: &str = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤常温康施文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦俞左柳甘祝包宁尚符舒阮柯纪梅童凌毕单季裴霍涂成苗谷盛曲翁冉骆蓝路游辛靳管柴蒙鲍华喻祁蒲房滕屈饶解牟艾尤阳时穆农司卓古吉缪简车项连芦麦褚娄窦戚岑景党宫费卜冷晏席卫米柏宗瞿桂全佟应臧闵苟邬边卞姬师和仇栾隋商刁沙荣巫寇桑郎甄丛仲虞敖巩明佘池查麻苑迟邝";
const COMPOUND_SURNAMES: &[&str] = &[
    "欧阳", "司马", "上官", "诸葛", "东方", "皇甫", "尉迟", "公孙", "慕容", "令狐", "长孙", "宇文",
    "夏侯", "轩辕", "端木", "南宫", "西门", "独孤", "司徒", "申屠",
];

/// `local@domain.tld`: letters, digits and `._%+-` before the `@`, dot-separated labels of
/// letters, digits and `-` after it.
fn email(v: &str) -> bool {
    let Some((local, domain)) = v.split_once('@') else {
        return false;
    };
    let labels: Vec<&str> = domain.split('.').collect();
    !local.is_empty()
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._%+-".contains(c))
        && labels.len() >= 2
        && labels
            .iter()
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
}

/// Does a value look like this kind?
pub fn looks_like(kind: PiiKind, value: &str, divisions: &Divisions) -> bool {
    let v = value.trim();
    let valid = |verdict: Verdict| !matches!(verdict, Verdict::Invalid(_));
    match kind {
        PiiKind::ResidentId => {
            // Any date works for "not in the future": a sample judges shape, not the calendar.
            let today = Utc::now().date_naive();
            valid(validate::resident_id(v, divisions, today))
        }
        PiiKind::CreditCode => valid(validate::social_credit_code(v, divisions)),
        PiiKind::MobilePhone => valid(validate::mobile_phone(v)),
        PiiKind::BankCard => bank_card(v),
        PiiKind::PersonName => person_name(v),
        PiiKind::Address => address(v),
        PiiKind::Email => email(v),
    }
}

/// 16 to 19 digits (spaces between groups allowed) with a valid Luhn check digit.
fn bank_card(v: &str) -> bool {
    let digits: Vec<u32> = v
        .chars()
        .filter(|c| *c != ' ')
        .map(|c| c.to_digit(10))
        .collect::<Option<_>>()
        .unwrap_or_default();
    if !(16..=19).contains(&digits.len()) || digits[0] == 0 {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

fn is_han(c: char) -> bool {
    matches!(c, '\u{4E00}'..='\u{9FFF}' | '\u{3400}'..='\u{4DBF}')
}

/// Two to four Han characters starting with a surname, or a minority name with a middle dot.
fn person_name(v: &str) -> bool {
    let chars: Vec<char> = v.chars().collect();
    if chars.contains(&'·') || chars.contains(&'•') {
        return (3..=12).contains(&chars.len())
            && chars.iter().all(|c| is_han(*c) || *c == '·' || *c == '•');
    }
    if !(2..=4).contains(&chars.len()) || !chars.iter().all(|c| is_han(*c)) {
        return false;
    }
    let compound = chars.len() >= 3 && COMPOUND_SURNAMES.iter().any(|s| v.starts_with(s));
    compound || SURNAMES.contains(chars[0])
}

/// A place (省 市 区 县 镇 乡 街道 村) and a locator (路 街 巷 弄 号 组 栋 室 小区 …).
fn address(v: &str) -> bool {
    const PLACES: &[&str] = &["省", "市", "区", "县", "镇", "乡", "街道", "村", "旗"];
    const LOCATORS: &[&str] = &[
        "路", "街", "巷", "弄", "号", "组", "栋", "幢", "室", "单元", "小区", "大道", "里", "苑",
    ];
    v.chars().count() >= 6
        && PLACES.iter().any(|p| v.contains(p))
        && LOCATORS.iter().any(|l| v.contains(l))
}

/// Does the header name this kind?
fn header_says(kind: PiiKind, header: &str) -> bool {
    let h = header.to_lowercase();
    let words: &[&str] = match kind {
        PiiKind::ResidentId => &[
            "身份证",
            "证件号",
            "公民身份号码",
            "id_card",
            "idcard",
            "resident_id",
            "sfz",
        ],
        PiiKind::CreditCode => &["信用代码", "credit_code", "uscc", "社会信用"],
        PiiKind::MobilePhone => &["手机", "电话", "联系方式", "phone", "mobile", "tel"],
        PiiKind::BankCard => &["银行卡", "卡号", "账号", "bank", "card_no", "account"],
        PiiKind::PersonName => &["姓名", "名字", "联系人", "法定代表人", "法人", "name"],
        PiiKind::Address => &["地址", "住址", "住所", "address", "addr"],
        PiiKind::Email => &["邮箱", "email", "mail"],
    };
    words.iter().any(|w| h.contains(w))
}

/// What a scan found in one field.
#[derive(Debug, Clone, Serialize)]
pub struct FieldScan {
    pub field: String,
    pub sampled: u64,
    /// The best kind and its share, if any value looked like one.
    pub best: Option<(PiiKind, f64)>,
    /// Whether the best kind is suggested.
    pub suggested: bool,
}

/// What a scan of a table found.
#[derive(Debug, Clone, Serialize)]
pub struct PiiScan {
    pub table: String,
    pub rows_sampled: u64,
    pub fields: Vec<FieldScan>,
    /// The sensitivity level the suggested kinds imply (1 if none).
    pub suggested_level: i64,
}

impl PiiScan {
    /// The suggestions, as catalog marks.
    pub fn marks(&self) -> Vec<PiiMark> {
        let now = reservoir_catalog::format_ts(Utc::now());
        self.fields
            .iter()
            .filter(|f| f.suggested)
            .filter_map(|f| {
                f.best.map(|(kind, share)| PiiMark {
                    field: f.field.clone(),
                    kind,
                    share,
                    sampled: f.sampled as i64,
                    status: PiiStatus::Suggested,
                    updated_at: now.clone(),
                })
            })
            .collect()
    }
}

/// Scans the first `sample` rows of `table`.
pub async fn scan_table(lake: &Lake, table: &TableRef, sample: usize) -> Result<PiiScan> {
    let delta = lake.open_existing(table).await?;
    let ctx = SessionContext::new();
    ctx.register_table("t", reservoir_lake::table_provider(&delta).await?)?;
    let schema = reservoir_lake::arrow_schema_of(&delta)?;
    let columns: Vec<String> = schema
        .fields()
        .iter()
        .filter(|f| !meta::ALL.contains(&f.name().as_str()))
        .filter(|f| {
            matches!(
                f.data_type(),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            ) || f.data_type().is_integer()
        })
        .map(|f| f.name().clone())
        .collect();
    let divisions = Divisions::bundled();
    let mut counts = vec![([0u64; 7], 0u64); columns.len()];
    let mut rows = 0u64;
    if !columns.is_empty() {
        let select = columns
            .iter()
            .map(|c| format!("\"{}\"", c.replace('"', "\"\"")))
            .collect::<Vec<_>>()
            .join(", ");
        let mut stream = ctx
            .sql(&format!("SELECT {select} FROM t LIMIT {sample}"))
            .await?
            .execute_stream()
            .await?;
        while let Some(batch) = stream.try_next().await? {
            rows += batch.num_rows() as u64;
            for (ci, column) in batch.columns().iter().enumerate() {
                let text = cast(column, &DataType::Utf8)?;
                let Some(text) = text.as_any().downcast_ref::<StringArray>() else {
                    continue;
                };
                let (hits, sampled) = &mut counts[ci];
                for v in text.iter().flatten() {
                    if v.trim().is_empty() {
                        continue;
                    }
                    *sampled += 1;
                    for (ki, kind) in PiiKind::ALL.into_iter().enumerate() {
                        if looks_like(kind, v, divisions) {
                            hits[ki] += 1;
                        }
                    }
                }
            }
        }
    }
    let mut fields = Vec::new();
    let mut level = 1;
    for (name, (hits, sampled)) in columns.iter().zip(counts) {
        let best = (sampled > 0)
            .then(|| {
                PiiKind::ALL
                    .into_iter()
                    .zip(hits)
                    .filter(|(_, h)| *h > 0)
                    .map(|(k, h)| (k, h as f64 / sampled as f64))
                    // Ties go to the more specific kind, earlier in PiiKind::ALL.
                    .fold(None, |best: Option<(PiiKind, f64)>, (k, s)| match best {
                        Some((_, b)) if b >= s => best,
                        _ => Some((k, s)),
                    })
            })
            .flatten();
        let suggested = best.is_some_and(|(kind, share)| {
            let threshold = if header_says(kind, name) {
                0.5
            } else if matches!(kind, PiiKind::PersonName | PiiKind::Address) {
                0.7
            } else {
                0.8
            };
            share >= threshold
        });
        if suggested && let Some((kind, _)) = best {
            level = level.max(kind.level());
        }
        fields.push(FieldScan {
            field: name.clone(),
            sampled,
            best,
            suggested,
        });
    }
    Ok(PiiScan {
        table: table.to_string(),
        rows_sampled: rows,
        fields,
        suggested_level: level,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_by_kind() {
        let d = Divisions::bundled();
        assert!(looks_like(PiiKind::ResidentId, "11010519491231002X", d));
        assert!(!looks_like(PiiKind::ResidentId, "110105194912310021", d));
        assert!(looks_like(PiiKind::CreditCode, "91350100M000100Y43", d));
        assert!(looks_like(PiiKind::MobilePhone, "13912345678", d));
        assert!(bank_card("4111111111111111"));
        assert!(!bank_card("4111111111111112"));
        assert!(!bank_card("13912345678"));
        assert!(person_name("王小明"));
        assert!(person_name("欧阳娜娜"));
        assert!(person_name("阿依古丽·买买提"));
        assert!(!person_name("松江区"), "no surname 松");
        assert!(!person_name("数据资源目录名称"));
        assert!(address("上海市松江区中山街道中山中路177号"));
        assert!(!address("上海市松江区"));
        assert!(looks_like(PiiKind::Email, "li.ming@example.gov.cn", d));
        assert!(!looks_like(PiiKind::Email, "li.ming@", d));
        assert!(!looks_like(PiiKind::Email, "a@b", d));
    }

    #[test]
    fn headers_lower_the_bar() {
        assert!(header_says(PiiKind::PersonName, "法定代表人姓名"));
        assert!(header_says(PiiKind::ResidentId, "身份证号码"));
        assert!(header_says(PiiKind::MobilePhone, "contact_phone"));
        assert!(!header_says(PiiKind::Address, "街道名称"));
    }
}
