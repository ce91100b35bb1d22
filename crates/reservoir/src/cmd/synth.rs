//! `reservoir synth`: a synthetic district to measure and test on, with its ground truth.
//!
//! Writes, streaming and deterministically from `--seed`:
//! - `people.csv`: residents (resident ID with a valid GB 11643 check character, real birth date,
//!   Songjiang's division code — the retired county code 310227 for people born before 1998 —
//!   name, gender, birth date, street, mobile phone, address, updated_at);
//! - `firms.csv`: legal persons (unified social credit code valid under GB 32100, with a valid
//!   GB 11714 organization code inside, name, street, registered capital, founded);
//! - `ground_truth.json`: how many rows each file has and every defect injected, by file, data
//!   row (1-based, after the header), column and kind, so that quality checks can be scored for
//!   precision and recall.
//!
//! Defects (at `--defect-rate`): a wrong ID check character, a lowercase `x` check character, an
//! impossible birth date, a missing name, a duplicated ID, a malformed phone; a wrong credit-code
//! check character, a forbidden letter (I, O, S, V, Z) in a credit code. The generator is its own
//! SplitMix64 so that a seed gives the same district in every version.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use chrono::{Datelike, Duration, NaiveDate};
use reservoir_quality::validate;
use serde::Serialize;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  reservoir synth /tmp/district                       # 100 000 residents, 10 000 firms
  reservoir synth /tmp/big --rows 10000000 --encoding gbk")]
pub struct Args {
    /// Folder to write people.csv, firms.csv and ground_truth.json into.
    out: PathBuf,
    /// Residents (firms are a tenth of this).
    #[arg(long, default_value_t = 100_000)]
    rows: u64,
    #[arg(long, default_value_t = 20261204)]
    seed: u64,
    /// utf-8 or gbk.
    #[arg(long, default_value = "utf-8")]
    encoding: String,
    /// Share of rows given one defect each.
    #[arg(long, default_value_t = 0.01)]
    defect_rate: f64,
}

/// SplitMix64: small, fast, and the same sequence for a seed forever.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

const SURNAMES: &[&str] = &[
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭",
    "何", "高", "林", "罗", "郑", "梁", "谢", "宋", "唐", "许", "韩", "冯", "邓", "曹", "沈", "陆",
];
const GIVEN: &[&str] = &[
    "伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明",
    "超", "秀英", "霞", "平", "刚", "桂英", "建华", "子涵", "浩然", "欣怡", "梓轩", "雨桐", "一诺",
];
/// Songjiang's streets and towns (codes as in the district's village data).
const STREETS: &[(&str, &str)] = &[
    ("310117001", "岳阳街道"),
    ("310117002", "永丰街道"),
    ("310117003", "方松街道"),
    ("310117004", "中山街道"),
    ("310117005", "广富林街道"),
    ("310117006", "九里亭街道"),
    ("310117101", "泗泾镇"),
    ("310117102", "佘山镇"),
    ("310117103", "车墩镇"),
    ("310117104", "新桥镇"),
    ("310117105", "洞泾镇"),
    ("310117106", "九亭镇"),
    ("310117109", "泖港镇"),
    ("310117112", "石湖荡镇"),
    ("310117113", "新浜镇"),
    ("310117114", "叶榭镇"),
    ("310117115", "小昆山镇"),
];
const ROADS: &[&str] = &[
    "中山中路",
    "人民北路",
    "荣乐东路",
    "谷阳北路",
    "文诚路",
    "广富林路",
    "沪松公路",
    "九亭大街",
];
const FIRM_WORDS: &[&str] = &[
    "科技",
    "贸易",
    "物流",
    "建设",
    "餐饮",
    "医疗器械",
    "文化传媒",
    "智能制造",
    "环保",
    "信息技术",
];
/// The digits of a resident ID's check position, in GB 11643 value order.
const ID_CHECK: &[u8; 11] = b"10X98765432";

/// The check characters, from the quality crate's validators (the first 17 characters here are
/// always well formed).
fn id_check(first17: &str) -> char {
    validate::resident_id_check(first17).unwrap_or('?')
}

fn org_check(body: &str) -> char {
    validate::org_code_check(body).unwrap_or('?')
}

fn uscc_check(first17: &str) -> char {
    validate::uscc_check(first17).unwrap_or('?')
}

#[derive(Debug, Serialize)]
struct Defect {
    row: u64,
    column: &'static str,
    kind: &'static str,
    value: String,
}

#[derive(Debug, Serialize)]
struct FileTruth {
    file: String,
    rows: u64,
    defects: Vec<Defect>,
}

#[derive(Debug, Serialize)]
struct GroundTruth {
    seed: u64,
    encoding: String,
    defect_rate: f64,
    files: Vec<FileTruth>,
}

/// A CSV writer in UTF-8 or GBK.
struct Out {
    w: BufWriter<std::fs::File>,
    gbk: bool,
    line: String,
}

impl Out {
    fn create(path: &Path, gbk: bool) -> Result<Self> {
        let f =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self {
            w: BufWriter::with_capacity(1 << 20, f),
            gbk,
            line: String::with_capacity(256),
        })
    }

    fn row(&mut self, fields: &[&str]) -> Result<()> {
        self.line.clear();
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                self.line.push(',');
            }
            if f.contains([',', '"', '\n']) {
                self.line.push('"');
                self.line.push_str(&f.replace('"', "\"\""));
                self.line.push('"');
            } else {
                self.line.push_str(f);
            }
        }
        self.line.push('\n');
        if self.gbk {
            let (bytes, _, unmappable) = encoding_rs::GBK.encode(&self.line);
            if unmappable {
                bail!("{:?} has characters GBK cannot hold", self.line);
            }
            self.w.write_all(&bytes)?;
        } else {
            self.w.write_all(self.line.as_bytes())?;
        }
        Ok(())
    }
}

pub async fn run(_home: Option<&Path>, args: Args) -> Result<ExitCode> {
    let gbk = match args.encoding.to_ascii_lowercase().as_str() {
        "utf-8" | "utf8" => false,
        "gbk" | "gb18030" => true,
        other => bail!("--encoding {other:?}: expected utf-8 or gbk"),
    };
    if !(0.0..=1.0).contains(&args.defect_rate) {
        bail!("--defect-rate must be between 0 and 1");
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut rng = Rng(args.seed);
    let people = write_people(&args, gbk, &mut rng)?;
    let firms = write_firms(&args, gbk, &mut rng)?;
    let truth = GroundTruth {
        seed: args.seed,
        encoding: if gbk { "gbk" } else { "utf-8" }.into(),
        defect_rate: args.defect_rate,
        files: vec![people, firms],
    };
    let path = args.out.join("ground_truth.json");
    std::fs::write(&path, serde_json::to_string_pretty(&truth)?)
        .with_context(|| format!("writing {}", path.display()))?;
    for f in &truth.files {
        println!(
            "{}: {} rows, {} defects injected",
            args.out.join(&f.file).display(),
            f.rows,
            f.defects.len()
        );
    }
    println!("{}: the ground truth", path.display());
    Ok(ExitCode::SUCCESS)
}

fn write_people(args: &Args, gbk: bool, rng: &mut Rng) -> Result<FileTruth> {
    let file = "people.csv";
    let mut out = Out::create(&args.out.join(file), gbk)?;
    out.row(&[
        "resident_id",
        "name",
        "gender",
        "birth_date",
        "street_code",
        "street",
        "phone",
        "address",
        "updated_at",
    ])?;
    let epoch = NaiveDate::from_ymd_opt(1930, 1, 1).context("date")?;
    let updated = NaiveDate::from_ymd_opt(2024, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .context("date")?;
    let mut defects = Vec::new();
    let mut last_id = String::new();
    // Sequence numbers handed out per county, birth date and gender, so that IDs are unique
    // (as real ones are) until a day's 500 numbers run out.
    let mut issued: std::collections::HashMap<(bool, i64, bool), u64> = Default::default();
    for row in 1..=args.rows {
        let female = rng.chance(0.5);
        let (birth, county, seq) = loop {
            let birth = epoch + Duration::days(rng.below(33_000) as i64);
            let retired = birth.year() < 1998 && rng.chance(0.5);
            let next = issued
                .entry((retired, birth.num_days_from_ce() as i64, female))
                .or_insert(0);
            if *next < 500 {
                let seq = *next * 2 + u64::from(!female);
                *next += 1;
                // 310227: Songjiang county, before it became a district in 1998.
                break (birth, if retired { "310227" } else { "310117" }, seq);
            }
        };
        let first17 = format!("{county}{}{seq:03}", birth.format("%Y%m%d"));
        let mut id = format!("{first17}{}", id_check(&first17));
        let mut name = format!("{}{}", rng.pick(SURNAMES), rng.pick(GIVEN));
        let mut birth_text = birth.format("%Y-%m-%d").to_string();
        let mut phone = format!(
            "1{}{:09}",
            rng.pick(&["3", "5", "7", "8", "9"]),
            rng.below(1_000_000_000)
        );
        if rng.chance(args.defect_rate) {
            match rng.below(6) {
                0 => {
                    let good = id.pop().unwrap_or('0');
                    let bad = ID_CHECK
                        .iter()
                        .map(|&c| c as char)
                        .find(|&c| c != good)
                        .unwrap_or('0');
                    id.push(bad);
                    defects.push(Defect {
                        row,
                        column: "resident_id",
                        kind: "bad_check_character",
                        value: id.clone(),
                    });
                }
                1 if id.ends_with('X') => {
                    id.pop();
                    id.push('x');
                    defects.push(Defect {
                        row,
                        column: "resident_id",
                        kind: "lowercase_x",
                        value: id.clone(),
                    });
                }
                2 => {
                    birth_text = format!("{}-02-30", birth.year());
                    defects.push(Defect {
                        row,
                        column: "birth_date",
                        kind: "impossible_date",
                        value: birth_text.clone(),
                    });
                }
                3 => {
                    name.clear();
                    defects.push(Defect {
                        row,
                        column: "name",
                        kind: "missing",
                        value: String::new(),
                    });
                }
                4 if !last_id.is_empty() => {
                    id = last_id.clone();
                    defects.push(Defect {
                        row,
                        column: "resident_id",
                        kind: "duplicate",
                        value: id.clone(),
                    });
                }
                5 => {
                    phone.truncate(7);
                    defects.push(Defect {
                        row,
                        column: "phone",
                        kind: "malformed_phone",
                        value: phone.clone(),
                    });
                }
                _ => {}
            }
        }
        let (street_code, street) = rng.pick(STREETS);
        let address = format!(
            "上海市松江区{street}{}{}号",
            rng.pick(ROADS),
            rng.below(2000) + 1
        );
        let when = updated + Duration::seconds((row * 7) as i64);
        out.row(&[
            &id,
            &name,
            if female { "2" } else { "1" },
            &birth_text,
            street_code,
            street,
            &phone,
            &address,
            &when.format("%Y-%m-%d %H:%M:%S").to_string(),
        ])?;
        // A duplicate copies a well-formed ID, so that each defect has one kind.
        if !defects
            .last()
            .is_some_and(|d| d.row == row && d.column == "resident_id")
        {
            last_id = id;
        }
    }
    out.w.flush()?;
    Ok(FileTruth {
        file: file.into(),
        rows: args.rows,
        defects,
    })
}

fn write_firms(args: &Args, gbk: bool, rng: &mut Rng) -> Result<FileTruth> {
    let file = "firms.csv";
    let rows = (args.rows / 10).max(1);
    let mut out = Out::create(&args.out.join(file), gbk)?;
    out.row(&[
        "credit_code",
        "name",
        "street_code",
        "registered_capital",
        "founded",
    ])?;
    let mut defects = Vec::new();
    let start = NaiveDate::from_ymd_opt(1995, 1, 1).context("date")?;
    for row in 1..=rows {
        let body: String = (0..8)
            .map(|_| char::from(b'0' + rng.below(10) as u8))
            .collect();
        let org = format!("{body}{}", org_check(&body));
        let first17 = format!("91310117{org}");
        let mut code = format!("{first17}{}", uscc_check(&first17));
        if rng.chance(args.defect_rate) {
            if rng.chance(0.5) {
                let good = code.pop().unwrap_or('0');
                let bad = if good == '0' { '1' } else { '0' };
                code.push(bad);
                defects.push(Defect {
                    row,
                    column: "credit_code",
                    kind: "bad_check_character",
                    value: code.clone(),
                });
            } else {
                code.replace_range(10..11, "O");
                defects.push(Defect {
                    row,
                    column: "credit_code",
                    kind: "forbidden_letter",
                    value: code.clone(),
                });
            }
        }
        let (street_code, street) = rng.pick(STREETS);
        let name = format!(
            "上海{}{}有限公司",
            street.trim_end_matches(['镇', '街', '道']),
            rng.pick(FIRM_WORDS)
        );
        let capital = format!("{}.{:02}", rng.below(100_000), rng.below(100));
        let founded = start + Duration::days(rng.below(10_000) as i64);
        out.row(&[
            &code,
            &name,
            street_code,
            &capital,
            &founded.format("%Y-%m-%d").to_string(),
        ])?;
    }
    out.w.flush()?;
    Ok(FileTruth {
        file: file.into(),
        rows,
        defects,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_district() {
        let mut a = Rng(7);
        let mut b = Rng(7);
        assert_eq!((a.next(), a.next()), (b.next(), b.next()));
    }
}
