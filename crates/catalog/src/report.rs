//! The monthly operation report (运营报告) of a unit: what it has cataloged and collected, the
//! rows it delivered and their growth, whether its data arrived as often as it promised, its
//! quality scores and their trend, the rules that failed most with examples, and where it
//! ranks among the district's units. Everything comes from the catalog's records of runs and
//! check runs; nothing is estimated.
//!
//! How the figures are defined:
//! - a dataset is *cataloged* in a month if it was registered before the month ended, and
//!   *collected* if a run had loaded it successfully by then;
//! - *freshness*: a collected dataset with a declared update frequency is on time if its last
//!   successful run is no older than one and a half periods at the month's end (or now, for the
//!   current month); compliance is the share on time;
//! - *quality*: each dataset's latest check run of the month; a dataset's score is the mean of
//!   its dimensions' scores, the unit's the mean over its checked datasets, per dimension too;
//! - the *ranking* score is the mean of the collection rate (collected ÷ cataloged), freshness
//!   compliance and quality, over those the unit has (a unit with none is ranked last).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{CheckRunRecord, Dataset, DatasetFilter, OpenTier, Run, RunStatus, Unit};
use crate::{Catalog, Error, Result, format_ts, parse_ts};

/// Layers that hold a unit's datasets (not the quarantine or quality tables about them).
const REPORTED_LAYERS: &[&str] = &["catalog", "raw", "std", "base", "theme", "topic", "open"];

/// How many months the quality trend shows.
const TREND_MONTHS: u32 = 6;

/// A calendar month, `YYYY-MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Month {
    pub year: i32,
    pub month: u32,
}

impl Month {
    pub fn of(t: DateTime<Utc>) -> Month {
        Month {
            year: t.year(),
            month: t.month(),
        }
    }

    pub fn start(self) -> DateTime<Utc> {
        let date = NaiveDate::from_ymd_opt(self.year, self.month, 1).unwrap_or_default();
        Utc.from_utc_datetime(&date.and_time(chrono::NaiveTime::MIN))
    }

    pub fn next(self) -> Month {
        if self.month == 12 {
            Month {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Month {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    pub fn previous(self) -> Month {
        if self.month == 1 {
            Month {
                year: self.year - 1,
                month: 12,
            }
        } else {
            Month {
                year: self.year,
                month: self.month - 1,
            }
        }
    }

    /// The end of the month: the start of the next.
    pub fn end(self) -> DateTime<Utc> {
        self.next().start()
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl std::str::FromStr for Month {
    type Err = Error;
    fn from_str(s: &str) -> Result<Month> {
        let invalid = || Error::Invalid {
            what: "month",
            message: format!("{s:?}; expected YYYY-MM, e.g. 2026-11"),
        };
        let (y, m) = s.trim().split_once('-').ok_or_else(invalid)?;
        if y.len() != 4 || m.len() != 2 {
            return Err(invalid());
        }
        let year: i32 = y.parse().map_err(|_| invalid())?;
        let month: u32 = m.parse().map_err(|_| invalid())?;
        if !(1..=12).contains(&month) || !(1900..=9999).contains(&year) {
            return Err(invalid());
        }
        Ok(Month { year, month })
    }
}

/// Datasets cataloged and collected, by open tier.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DatasetTally {
    pub cataloged: u64,
    pub collected: u64,
    /// Collected ÷ cataloged, 0–100.
    pub collection_rate: Option<f64>,
    pub open: u64,
    pub conditional: u64,
    pub closed: u64,
}

/// Rows delivered.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RowTally {
    /// Rows in the unit's tables now.
    pub in_lake: i64,
    /// Rows loaded by the month's successful runs.
    pub loaded: i64,
    /// Rows loaded in the month before.
    pub loaded_previous: i64,
    /// Change of `loaded` against the month before, in percent.
    pub growth: Option<f64>,
    pub quarantined: i64,
    pub deleted: i64,
    pub runs: u64,
    pub failed_runs: u64,
}

/// A collected dataset that was late at the month's end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LateDataset {
    pub dataset: String,
    pub title: String,
    pub update_frequency: String,
    pub last_success: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Freshness {
    /// Collected datasets with a declared update frequency.
    pub expected: u64,
    pub on_time: u64,
    /// On time ÷ expected, 0–100.
    pub compliance: Option<f64>,
    pub late: Vec<LateDataset>,
}

/// One point of the quality trend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TrendPoint {
    pub month: String,
    pub score: Option<f64>,
    pub datasets_checked: u64,
}

/// An example failure of a rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RuleExample {
    pub key: String,
    pub column: String,
    pub value: Option<String>,
    pub reason: String,
}

/// A rule that failed, in the latest check run of its dataset in the month.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FailingRule {
    pub dataset: String,
    pub rule: String,
    pub check: String,
    pub dimension: String,
    pub failed: u64,
    pub checked: u64,
    pub examples: Vec<RuleExample>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QualitySummary {
    pub datasets_checked: u64,
    /// Mean score per dimension over the checked datasets, 0–100.
    pub scores: BTreeMap<String, f64>,
    pub overall: Option<f64>,
    /// The last months' overall scores, oldest first, ending with this month.
    pub trend: Vec<TrendPoint>,
    /// The rules with the most failing rows, most first.
    pub top_rules: Vec<FailingRule>,
}

/// One dataset's line in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DatasetLine {
    pub dataset: String,
    pub title: String,
    pub update_frequency: String,
    pub open_tier: String,
    pub collected: bool,
    pub rows: i64,
    pub loaded: i64,
    pub runs: u64,
    pub failed_runs: u64,
    pub last_success: Option<String>,
    /// `None` when no frequency is declared or it is not collected.
    pub on_time: Option<bool>,
    pub quality: Option<f64>,
}

/// A unit's place among the district's units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UnitRank {
    pub rank: u64,
    pub unit_id: String,
    pub unit_name: String,
    pub score: Option<f64>,
    pub cataloged: u64,
    pub collected: u64,
    pub collection_rate: Option<f64>,
    pub freshness: Option<f64>,
    pub quality: Option<f64>,
}

/// The operation report of one unit for one month.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OperationReport {
    pub unit: Unit,
    pub month: String,
    pub period_start: String,
    pub period_end: String,
    pub generated_at: String,
    pub datasets: DatasetTally,
    pub rows: RowTally,
    pub freshness: Freshness,
    pub quality: QualitySummary,
    pub lines: Vec<DatasetLine>,
    pub ranking: Vec<UnitRank>,
    /// Requests for the unit's data and what was served of it, in the month.
    pub sharing: SharingTally,
    /// Sections the platform cannot fill yet, with why.
    pub not_yet: Vec<String>,
}

impl OperationReport {
    /// Drops the failing rules' examples — keys, values and reasons quote the data — for readers
    /// who may not see the unit's data whole (auditors, other units). Counts stay.
    pub fn without_examples(mut self) -> Self {
        for rule in &mut self.quality.top_rules {
            rule.examples.clear();
        }
        self
    }
}

/// Sharing of a unit's datasets in a month (from the request, grant and usage tables).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SharingTally {
    /// Requests filed for the unit's datasets in the month.
    pub requests: u64,
    pub approved: u64,
    pub rejected: u64,
    /// Still waiting for a decision at the end of the month.
    pub pending: u64,
    /// Grants on the unit's datasets in force at some time in the month.
    pub active_grants: u64,
    /// Reads served from the unit's datasets (API, SQL) and the rows and bytes they returned.
    pub reads_served: u64,
    pub rows_served: u64,
    pub bytes_served: u64,
    /// Distinct principals served.
    pub consumers: u64,
}

/// The figures of one unit, for its report and the ranking.
struct Figures {
    datasets: DatasetTally,
    rows: RowTally,
    freshness: Freshness,
    quality: QualitySummary,
    lines: Vec<DatasetLine>,
}

fn mean(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values
        .into_iter()
        .fold((0.0, 0u64), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

fn percent(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| 100.0 * part as f64 / whole as f64)
}

/// A check run's mean score over its dimensions.
fn check_score(check: &CheckRunRecord) -> Option<f64> {
    mean(
        check
            .scores
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(_, v)| v.as_f64()),
    )
}

/// The latest check run per dataset among `checks` (oldest first).
fn latest_per_dataset(checks: &[CheckRunRecord]) -> HashMap<i64, &CheckRunRecord> {
    let mut out = HashMap::new();
    for c in checks {
        out.insert(c.dataset_id, c);
    }
    out
}

impl Catalog {
    /// The operation report of `unit_id` for `month`, as of `now`.
    pub async fn operation_report(
        &self,
        unit_id: &str,
        month: Month,
        now: DateTime<Utc>,
    ) -> Result<OperationReport> {
        let units = self.units().await?;
        let unit = units
            .iter()
            .find(|u| u.id == unit_id)
            .cloned()
            .ok_or_else(|| Error::NotFound {
                kind: "unit",
                name: unit_id.to_string(),
            })?;
        let (start, end) = (month.start(), month.end());
        let as_of = end.min(now);
        let end_text = format_ts(end);
        let datasets: Vec<Dataset> = self
            .datasets(&DatasetFilter::default())
            .await?
            .into_iter()
            .filter(|d| REPORTED_LAYERS.contains(&d.layer.as_str()))
            .filter(|d| parse_ts(&d.created_at).is_ok_and(|t| t < end))
            .collect();
        let runs = self.runs_between(&format_ts(start), &end_text).await?;
        let previous = self
            .runs_between(&format_ts(month.previous().start()), &format_ts(start))
            .await?;
        let successes = self.last_successes_before(&end_text).await?;
        let mut trend_start = month;
        for _ in 1..TREND_MONTHS {
            trend_start = trend_start.previous();
        }
        let checks = self
            .check_runs_between(&format_ts(trend_start.start()), &end_text)
            .await?;

        let figures = |unit: &str| {
            figures(
                unit,
                &datasets,
                &runs,
                &previous,
                &successes,
                &checks,
                month,
                trend_start,
                as_of,
            )
        };
        let mut ranking: Vec<UnitRank> = units
            .iter()
            .map(|u| {
                let f = figures(&u.id);
                let score = mean(
                    [
                        f.datasets.collection_rate,
                        f.freshness.compliance,
                        f.quality.overall,
                    ]
                    .into_iter()
                    .flatten(),
                );
                UnitRank {
                    rank: 0,
                    unit_id: u.id.clone(),
                    unit_name: u.name.clone(),
                    score,
                    cataloged: f.datasets.cataloged,
                    collected: f.datasets.collected,
                    collection_rate: f.datasets.collection_rate,
                    freshness: f.freshness.compliance,
                    quality: f.quality.overall,
                }
            })
            .filter(|r| r.cataloged > 0 || r.unit_id == unit_id)
            .collect();
        ranking.sort_by(|a, b| {
            b.score
                .unwrap_or(-1.0)
                .total_cmp(&a.score.unwrap_or(-1.0))
                .then_with(|| a.unit_id.cmp(&b.unit_id))
        });
        for (i, r) in ranking.iter_mut().enumerate() {
            r.rank = i as u64 + 1;
        }
        let f = figures(unit_id);
        let sharing = self.sharing_tally(unit_id, month, &end_text).await?;
        Ok(OperationReport {
            unit,
            month: month.to_string(),
            period_start: format_ts(start),
            period_end: end_text,
            generated_at: format_ts(now),
            datasets: f.datasets,
            rows: f.rows,
            freshness: f.freshness,
            quality: f.quality,
            lines: f.lines,
            ranking,
            sharing,
            not_yet: vec![
                "数据异议 (objections): 异议处理功能上线后统计 — counted once data objections exist".into(),
            ],
        })
    }

    /// Requests, grants and usage of `unit_id`'s datasets in `month`.
    async fn sharing_tally(&self, unit_id: &str, month: Month, end: &str) -> Result<SharingTally> {
        use sqlx::Row;
        let start = format_ts(month.start());
        let row = sqlx::query(
            "SELECT COUNT(*) AS n,
                 CAST(COALESCE(SUM(CASE WHEN r.status = 'approved' THEN 1 ELSE 0 END), 0) AS BIGINT) AS approved,
                 CAST(COALESCE(SUM(CASE WHEN r.status = 'rejected' THEN 1 ELSE 0 END), 0) AS BIGINT) AS rejected,
                 CAST(COALESCE(SUM(CASE WHEN r.status = 'pending' OR r.decided_at >= $3 THEN 1 ELSE 0 END), 0) AS BIGINT) AS pending
             FROM access_requests r JOIN datasets d ON d.id = r.dataset_id
             WHERE d.unit_id = $1 AND r.created_at >= $2 AND r.created_at < $3",
        )
        .bind(unit_id)
        .bind(&start)
        .bind(end)
        .fetch_one(self.pool())
        .await?;
        let grants = sqlx::query(
            "SELECT COUNT(*) FROM grants g JOIN datasets d ON d.id = g.dataset_id
             WHERE d.unit_id = $1 AND g.starts_at < $3 AND g.expires_at >= $2
               AND (g.revoked_at IS NULL OR g.revoked_at >= $2)",
        )
        .bind(unit_id)
        .bind(&start)
        .bind(end)
        .fetch_one(self.pool())
        .await?;
        let (first_day, last_day) = (start[..10].to_string(), end[..10].to_string());
        let usage = sqlx::query(
            "SELECT CAST(COALESCE(SUM(u.requests), 0) AS BIGINT), CAST(COALESCE(SUM(u.rows_served), 0) AS BIGINT),
                    CAST(COALESCE(SUM(u.bytes_served), 0) AS BIGINT), COUNT(DISTINCT u.principal)
             FROM usage_daily u JOIN datasets d ON d.id = u.dataset_id
             WHERE d.unit_id = $1 AND u.day >= $2 AND u.day < $3",
        )
        .bind(unit_id)
        .bind(first_day)
        .bind(last_day)
        .fetch_one(self.pool())
        .await?;
        let n = |v: i64| v.max(0) as u64;
        Ok(SharingTally {
            requests: n(row.try_get("n")?),
            approved: n(row.try_get("approved")?),
            rejected: n(row.try_get("rejected")?),
            pending: n(row.try_get("pending")?),
            active_grants: n(grants.try_get(0)?),
            reads_served: n(usage.try_get(0)?),
            rows_served: n(usage.try_get(1)?),
            bytes_served: n(usage.try_get(2)?),
            consumers: n(usage.try_get(3)?),
        })
    }
}

#[allow(clippy::too_many_arguments)]
fn figures(
    unit_id: &str,
    datasets: &[Dataset],
    runs: &[Run],
    previous: &[Run],
    successes: &HashMap<i64, String>,
    checks: &[CheckRunRecord],
    month: Month,
    trend_start: Month,
    as_of: DateTime<Utc>,
) -> Figures {
    let mine: Vec<&Dataset> = datasets.iter().filter(|d| d.unit_id == unit_id).collect();
    let ids: std::collections::HashSet<i64> = mine.iter().map(|d| d.id).collect();
    let start = month.start();

    let mut tally = DatasetTally {
        cataloged: mine.len() as u64,
        ..DatasetTally::default()
    };
    let mut rows = RowTally::default();
    let mut freshness = Freshness::default();
    let month_checks: Vec<CheckRunRecord> = checks
        .iter()
        .filter(|c| ids.contains(&c.dataset_id))
        .filter(|c| parse_ts(&c.finished_at).is_ok_and(|t| t >= start))
        .cloned()
        .collect();
    let latest = latest_per_dataset(&month_checks);
    let mut lines = Vec::new();
    for d in &mine {
        let last_success = successes.get(&d.id).cloned();
        let collected = last_success.is_some();
        if collected {
            tally.collected += 1;
        }
        match d.open_tier {
            OpenTier::Open => tally.open += 1,
            OpenTier::Conditional => tally.conditional += 1,
            OpenTier::Closed => tally.closed += 1,
        }
        let own: Vec<&Run> = runs.iter().filter(|r| r.dataset_id == d.id).collect();
        let loaded: i64 = own
            .iter()
            .filter(|r| r.status == RunStatus::Succeeded)
            .map(|r| r.counts.rows_loaded)
            .sum();
        let failed = own.iter().filter(|r| r.status == RunStatus::Failed).count() as u64;
        rows.in_lake += d.row_count;
        rows.loaded += loaded;
        rows.quarantined += own.iter().map(|r| r.counts.rows_quarantined).sum::<i64>();
        rows.deleted += own.iter().map(|r| r.counts.rows_deleted).sum::<i64>();
        rows.runs += own.len() as u64;
        rows.failed_runs += failed;
        let on_time = match (d.update_frequency.late_after(), &last_success) {
            (Some(late_after), Some(last)) => {
                let fresh = parse_ts(last).is_ok_and(|t| as_of - t <= late_after);
                Some(fresh)
            }
            _ => None,
        };
        if let Some(fresh) = on_time {
            freshness.expected += 1;
            if fresh {
                freshness.on_time += 1;
            } else {
                freshness.late.push(LateDataset {
                    dataset: d.qualified_name(),
                    title: d.title.clone(),
                    update_frequency: d.update_frequency.as_str().into(),
                    last_success: last_success.clone(),
                });
            }
        }
        lines.push(DatasetLine {
            dataset: d.qualified_name(),
            title: d.title.clone(),
            update_frequency: d.update_frequency.as_str().into(),
            open_tier: d.open_tier.as_str().into(),
            collected,
            rows: d.row_count,
            loaded,
            runs: own.len() as u64,
            failed_runs: failed,
            last_success,
            on_time,
            quality: latest.get(&d.id).and_then(|c| check_score(c)),
        });
    }
    // Rows blocking rules moved out of the tables are quarantined too.
    rows.quarantined += month_checks.iter().map(|c| c.rows_blocked).sum::<i64>();
    rows.loaded_previous = previous
        .iter()
        .filter(|r| ids.contains(&r.dataset_id) && r.status == RunStatus::Succeeded)
        .map(|r| r.counts.rows_loaded)
        .sum();
    rows.growth = (rows.loaded_previous > 0)
        .then(|| 100.0 * (rows.loaded - rows.loaded_previous) as f64 / rows.loaded_previous as f64);
    tally.collection_rate = percent(tally.collected, tally.cataloged);
    freshness.compliance = percent(freshness.on_time, freshness.expected);

    // Quality: the month's latest check per dataset, per dimension and overall.
    let mut per_dimension: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for c in latest.values() {
        for (dim, v) in c.scores.as_object().into_iter().flatten() {
            if let Some(v) = v.as_f64() {
                per_dimension.entry(dim.clone()).or_default().push(v);
            }
        }
    }
    let name_of = |id: i64| {
        mine.iter()
            .find(|d| d.id == id)
            .map(|d| d.qualified_name())
            .unwrap_or_default()
    };
    let mut top_rules: Vec<FailingRule> = latest
        .values()
        .flat_map(|c| {
            let dataset = name_of(c.dataset_id);
            c.results
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(move |r| {
                    let failed = r["failed"].as_u64().unwrap_or(0);
                    (failed > 0).then(|| FailingRule {
                        dataset: dataset.clone(),
                        rule: r["rule"].as_str().unwrap_or_default().into(),
                        check: r["check"].as_str().unwrap_or_default().into(),
                        dimension: r["dimension"].as_str().unwrap_or_default().into(),
                        failed,
                        checked: r["checked"].as_u64().unwrap_or(0),
                        examples: r["examples"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .take(3)
                            .map(|e| RuleExample {
                                key: e["key"].as_str().unwrap_or_default().into(),
                                column: e["column"].as_str().unwrap_or_default().into(),
                                value: e["value"].as_str().map(str::to_string),
                                reason: e["reason"].as_str().unwrap_or_default().into(),
                            })
                            .collect(),
                    })
                })
        })
        .collect();
    top_rules.sort_by(|a, b| {
        b.failed
            .cmp(&a.failed)
            .then_with(|| (&a.dataset, &a.rule).cmp(&(&b.dataset, &b.rule)))
    });
    top_rules.truncate(10);
    let mut trend = Vec::new();
    let mut m = trend_start;
    loop {
        let (s, e) = (m.start(), m.end());
        let in_month: Vec<CheckRunRecord> = checks
            .iter()
            .filter(|c| ids.contains(&c.dataset_id))
            .filter(|c| parse_ts(&c.finished_at).is_ok_and(|t| t >= s && t < e))
            .cloned()
            .collect();
        let latest = latest_per_dataset(&in_month);
        trend.push(TrendPoint {
            month: m.to_string(),
            score: mean(latest.values().filter_map(|c| check_score(c))),
            datasets_checked: latest.len() as u64,
        });
        if m == month {
            break;
        }
        m = m.next();
    }
    let quality = QualitySummary {
        datasets_checked: latest.len() as u64,
        scores: per_dimension
            .into_iter()
            .filter_map(|(k, v)| mean(v).map(|m| (k, m)))
            .collect(),
        overall: mean(latest.values().filter_map(|c| check_score(c))),
        trend,
        top_rules,
    };
    Figures {
        datasets: tally,
        rows,
        freshness,
        quality,
        lines,
    }
}

// ------------------------------------------------------------------------------ rendering

/// The report's languages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    Zh,
    En,
}

impl std::str::FromStr for Lang {
    type Err = Error;
    fn from_str(s: &str) -> Result<Lang> {
        match s.to_ascii_lowercase().as_str() {
            "zh" | "zh-cn" | "cn" => Ok(Lang::Zh),
            "en" | "en-us" | "en-gb" => Ok(Lang::En),
            _ => Err(Error::Invalid {
                what: "language",
                message: format!("{s:?}; expected zh or en"),
            }),
        }
    }
}

fn t(lang: Lang, zh: &'static str, en: &'static str) -> &'static str {
    match lang {
        Lang::Zh => zh,
        Lang::En => en,
    }
}

fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn pct(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.1}%")).unwrap_or_else(|| "—".into())
}

fn score(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "—".into())
}

fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

fn dimension_label(lang: Lang, dim: &str) -> String {
    let zh = match dim {
        "completeness" => "完整性",
        "timeliness" => "及时性",
        "accuracy" => "准确性",
        "validity" => "有效性",
        "uniqueness" => "唯一性",
        "consistency" => "一致性",
        other => other,
    };
    match lang {
        Lang::Zh => zh.to_string(),
        Lang::En => dim.to_string(),
    }
}

/// Horizontal bars, 0–100, with labels: an inline SVG that prints as drawn.
fn bar_chart(title: &str, bars: &[(String, Option<f64>, bool)]) -> String {
    let row = 26;
    let label_w = 200;
    let bar_w = 360;
    let height = bars.len() * row + 10;
    let mut svg = format!(
        r#"<svg role="img" aria-label="{t}" viewBox="0 0 {w} {height}" width="100%" style="max-width:{w}px">"#,
        t = esc(title),
        w = label_w + bar_w + 70,
    );
    for (i, (label, value, highlight)) in bars.iter().enumerate() {
        let y = i * row + 5;
        let width = value.map(|v| (v.clamp(0.0, 100.0) / 100.0 * bar_w as f64).round() as usize);
        let fill = if *highlight { "#c0392b" } else { "#2e6da4" };
        let _ = write!(
            svg,
            r##"<text x="{lx}" y="{ty}" text-anchor="end" font-size="13">{label}</text><rect x="{bx}" y="{y}" width="{bar_w}" height="18" fill="#eef2f6"/>"##,
            lx = label_w - 8,
            ty = y + 14,
            label = esc(label),
            bx = label_w,
        );
        if let Some(w) = width {
            let _ = write!(
                svg,
                r#"<rect x="{label_w}" y="{y}" width="{w}" height="18" fill="{fill}"/>"#
            );
        }
        let _ = write!(
            svg,
            r#"<text x="{vx}" y="{ty}" font-size="13">{v}</text>"#,
            vx = label_w + bar_w + 6,
            ty = y + 14,
            v = score(*value),
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Columns for the quality trend, 0–100.
fn trend_chart(title: &str, points: &[TrendPoint]) -> String {
    let col = 70;
    let h = 160;
    let top = 20;
    let w = points.len() * col + 20;
    let mut svg = format!(
        r#"<svg role="img" aria-label="{t}" viewBox="0 0 {w} {vh}" width="100%" style="max-width:{w}px">"#,
        t = esc(title),
        vh = h + top + 40
    );
    for (i, p) in points.iter().enumerate() {
        let x = i * col + 20;
        if let Some(v) = p.score {
            let bh = (v.clamp(0.0, 100.0) / 100.0 * h as f64).round() as usize;
            let _ = write!(
                svg,
                r##"<rect x="{x}" y="{y}" width="40" height="{bh}" fill="#2e6da4"/><text x="{tx}" y="{vy}" text-anchor="middle" font-size="12">{v:.1}</text>"##,
                y = top + h - bh,
                tx = x + 20,
                vy = top + h - bh - 4,
            );
        } else {
            let _ = write!(
                svg,
                r##"<text x="{tx}" y="{y}" text-anchor="middle" font-size="12" fill="#888">—</text>"##,
                tx = x + 20,
                y = top + h - 4,
            );
        }
        let _ = write!(
            svg,
            r#"<text x="{tx}" y="{y}" text-anchor="middle" font-size="12">{m}</text>"#,
            tx = x + 20,
            y = top + h + 20,
            m = esc(&p.month),
        );
    }
    svg.push_str("</svg>");
    svg
}

const STYLE: &str = "
body{font-family:'Noto Sans CJK SC','Noto Sans SC','Microsoft YaHei',sans-serif;color:#1d2733;margin:24px auto;max-width:960px;padding:0 16px;line-height:1.5}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;border-bottom:2px solid #2e6da4;padding-bottom:4px;margin-top:28px}
.meta{color:#5b6b7b;font-size:13px}
.kpis{display:grid;grid-template-columns:repeat(4,1fr);gap:12px;margin:16px 0}
.kpi{border:1px solid #d5dde6;border-radius:6px;padding:10px 12px}.kpi b{display:block;font-size:22px}
.kpi span{color:#5b6b7b;font-size:12px}
table{border-collapse:collapse;width:100%;font-size:13px;margin:8px 0}th,td{border:1px solid #d5dde6;padding:4px 6px;text-align:left;vertical-align:top}
th{background:#f2f5f8}td.n{text-align:right;font-variant-numeric:tabular-nums}
.late{color:#c0392b}.ok{color:#1e8449}.muted{color:#5b6b7b}
section{break-inside:avoid}
@media print{body{margin:0;max-width:none}.kpis{grid-template-columns:repeat(4,1fr)}h2{break-after:avoid}a{color:inherit;text-decoration:none}}
@page{size:A4;margin:16mm}
";

/// The report as one self-contained HTML page (inline styles and SVG charts) that prints on A4.
pub fn render_html(r: &OperationReport, lang: Lang) -> String {
    let mut h = String::new();
    let title = format!(
        "{} · {} {}",
        r.unit.name,
        r.month,
        t(lang, "数据运营报告", "operation report")
    );
    let _ = write!(
        h,
        "<!doctype html><html lang=\"{}\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>",
        t(lang, "zh-CN", "en"),
        esc(&title)
    );
    let _ = write!(
        h,
        "<header><h1>{}</h1><div class=\"meta\">{} {} – {} · {} {}</div></header>",
        esc(&title),
        t(lang, "统计期间", "Period"),
        esc(r.period_start.get(..10).unwrap_or(&r.period_start)),
        // The period is [start, end); the last day is the one before `end`.
        parse_ts(&r.period_end)
            .map(|e| (e - chrono::Duration::days(1)).date_naive().to_string())
            .unwrap_or_else(|_| r.period_end.clone()),
        t(lang, "生成于", "generated"),
        esc(&r.generated_at),
    );
    let rank = r
        .ranking
        .iter()
        .find(|u| u.unit_id == r.unit.id)
        .map(|u| format!("{} / {}", u.rank, r.ranking.len()))
        .unwrap_or_else(|| "—".into());
    let kpi = |value: String, label: &str| {
        format!(
            "<div class=\"kpi\"><b>{}</b><span>{}</span></div>",
            esc(&value),
            esc(label)
        )
    };
    h.push_str("<div class=\"kpis\">");
    h.push_str(&kpi(
        format!("{} / {}", r.datasets.collected, r.datasets.cataloged),
        t(
            lang,
            "已归集 / 已编目数据集",
            "datasets collected / cataloged",
        ),
    ));
    h.push_str(&kpi(
        thousands(r.rows.loaded),
        t(lang, "本月归集行数", "rows loaded this month"),
    ));
    h.push_str(&kpi(
        pct(r.freshness.compliance),
        t(lang, "按时更新率", "on-time updates"),
    ));
    h.push_str(&kpi(
        score(r.quality.overall),
        t(lang, "质量得分", "quality score"),
    ));
    h.push_str("</div>");
    let _ = write!(
        h,
        "<p class=\"meta\">{} {rank}</p>",
        t(lang, "全区单位排名", "Rank among the district's units:")
    );

    // Collection
    let _ = write!(
        h,
        "<section><h2>{}</h2><table><tr><th>{}</th><td class=\"n\">{}</td><th>{}</th><td class=\"n\">{}</td></tr>\
         <tr><th>{}</th><td class=\"n\">{}</td><th>{}</th><td class=\"n\">{}</td></tr>\
         <tr><th>{}</th><td class=\"n\">{}</td><th>{}</th><td class=\"n\">{}</td></tr>\
         <tr><th>{}</th><td class=\"n\">{} ({})</td><th>{}</th><td class=\"n\">{} / {} / {}</td></tr></table></section>",
        t(lang, "一、数据归集", "1. Collection"),
        t(lang, "本月归集行数", "Rows loaded"),
        thousands(r.rows.loaded),
        t(lang, "上月归集行数", "Rows loaded last month"),
        thousands(r.rows.loaded_previous),
        t(lang, "环比增长", "Growth"),
        pct(r.rows.growth),
        t(lang, "湖中现有行数", "Rows in the lake"),
        thousands(r.rows.in_lake),
        t(lang, "隔离行数", "Rows quarantined"),
        thousands(r.rows.quarantined),
        t(lang, "删除同步行数", "Rows deleted at source"),
        thousands(r.rows.deleted),
        t(lang, "归集任务 (失败)", "Runs (failed)"),
        r.rows.runs,
        r.rows.failed_runs,
        t(
            lang,
            "开放 / 有条件 / 不开放",
            "Open / conditional / closed"
        ),
        r.datasets.open,
        r.datasets.conditional,
        r.datasets.closed,
    );

    // Freshness
    let _ = write!(
        h,
        "<section><h2>{}</h2><p>{} {} / {} ({})</p>",
        t(lang, "二、更新及时性", "2. Freshness"),
        t(
            lang,
            "按声明更新频率按时更新的数据集：",
            "Datasets updated as often as declared:"
        ),
        r.freshness.on_time,
        r.freshness.expected,
        pct(r.freshness.compliance),
    );
    if !r.freshness.late.is_empty() {
        let _ = write!(
            h,
            "<table><tr><th>{}</th><th>{}</th><th>{}</th></tr>",
            t(lang, "逾期数据集", "Late dataset"),
            t(lang, "更新频率", "Frequency"),
            t(lang, "最近成功归集", "Last successful run")
        );
        for l in &r.freshness.late {
            let _ = write!(
                h,
                "<tr class=\"late\"><td>{} <span class=\"muted\">{}</span></td><td>{}</td><td>{}</td></tr>",
                esc(&l.title),
                esc(&l.dataset),
                esc(&l.update_frequency),
                esc(l.last_success.as_deref().unwrap_or("—"))
            );
        }
        h.push_str("</table>");
    }
    h.push_str("</section>");

    // Quality
    let _ = write!(
        h,
        "<section><h2>{}</h2><p>{} {}</p>",
        t(lang, "三、数据质量", "3. Quality"),
        t(lang, "本月检测数据集：", "Datasets checked this month:"),
        r.quality.datasets_checked
    );
    if r.quality.scores.is_empty() {
        let _ = write!(
            h,
            "<p class=\"muted\">{}</p>",
            t(
                lang,
                "本月没有质量检测记录（在 rules/ 下为数据集编写规则后，每次归集后自动检测）。",
                "No check runs this month (write rules under rules/; they run after every collection)."
            )
        );
    } else {
        let bars: Vec<(String, Option<f64>, bool)> = r
            .quality
            .scores
            .iter()
            .map(|(d, v)| (dimension_label(lang, d), Some(*v), false))
            .collect();
        h.push_str(&bar_chart(
            t(lang, "各维度得分", "Score by dimension"),
            &bars,
        ));
    }
    let _ = write!(
        h,
        "<h3>{}</h3>{}",
        t(lang, "质量趋势（近六个月）", "Quality trend (six months)"),
        trend_chart(t(lang, "质量趋势", "Quality trend"), &r.quality.trend)
    );
    if !r.quality.top_rules.is_empty() {
        let _ = write!(
            h,
            "<h3>{}</h3><table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
            t(lang, "失败最多的规则", "Rules failing most"),
            t(lang, "数据集", "Dataset"),
            t(lang, "规则", "Rule"),
            t(lang, "维度", "Dimension"),
            t(lang, "失败行数", "Failing rows"),
            t(lang, "示例", "Examples"),
        );
        for rule in &r.quality.top_rules {
            let examples: Vec<String> = rule
                .examples
                .iter()
                .map(|e| {
                    format!(
                        "{} {}={}: {}",
                        esc(&e.key),
                        esc(&e.column),
                        esc(e.value.as_deref().unwrap_or("NULL")),
                        esc(&e.reason)
                    )
                })
                .collect();
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{} <span class=\"muted\">{}</span></td><td>{}</td><td class=\"n\">{} / {}</td><td>{}</td></tr>",
                esc(&rule.dataset),
                esc(&rule.rule),
                esc(&rule.check),
                dimension_label(lang, &rule.dimension),
                thousands(rule.failed as i64),
                thousands(rule.checked as i64),
                examples.join("<br>")
            );
        }
        h.push_str("</table>");
    }
    h.push_str("</section>");

    // Datasets
    let _ = write!(
        h,
        "<section><h2>{}</h2><table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        t(lang, "四、数据集明细", "4. Datasets"),
        t(lang, "数据集", "Dataset"),
        t(lang, "归集", "Collected"),
        t(lang, "现有行数", "Rows"),
        t(lang, "本月归集", "Loaded"),
        t(lang, "按时", "On time"),
        t(lang, "质量", "Quality"),
    );
    for l in &r.lines {
        let on_time = match l.on_time {
            Some(true) => format!("<span class=\"ok\">{}</span>", t(lang, "是", "yes")),
            Some(false) => format!("<span class=\"late\">{}</span>", t(lang, "逾期", "late")),
            None => "—".into(),
        };
        let _ = write!(
            h,
            "<tr><td>{} <span class=\"muted\">{}</span></td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{}</td></tr>",
            esc(&l.title),
            esc(&l.dataset),
            if l.collected {
                t(lang, "已归集", "yes")
            } else {
                t(lang, "仅编目", "cataloged only")
            },
            thousands(l.rows),
            thousands(l.loaded),
            on_time,
            score(l.quality)
        );
    }
    h.push_str("</table></section>");

    // Ranking
    let _ = write!(
        h,
        "<section><h2>{}</h2><p class=\"muted\">{}</p>",
        t(lang, "五、单位排名", "5. Units ranked"),
        t(
            lang,
            "综合得分 = 归集率、按时更新率、质量得分三者（有数据者）的平均值。",
            "Score = the mean of collection rate, on-time rate and quality score, over those a unit has."
        )
    );
    let bars: Vec<(String, Option<f64>, bool)> = r
        .ranking
        .iter()
        .map(|u| {
            (
                format!("{}. {}", u.rank, u.unit_name),
                u.score,
                u.unit_id == r.unit.id,
            )
        })
        .collect();
    h.push_str(&bar_chart(t(lang, "单位综合得分", "Unit scores"), &bars));
    let _ = write!(
        h,
        "<table><tr><th>#</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        t(lang, "单位", "Unit"),
        t(lang, "归集率", "Collected"),
        t(lang, "按时更新率", "On time"),
        t(lang, "质量得分", "Quality"),
        t(lang, "综合得分", "Score"),
    );
    for u in &r.ranking {
        let _ = write!(
            h,
            "<tr{}><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            if u.unit_id == r.unit.id {
                " style=\"font-weight:bold\""
            } else {
                ""
            },
            u.rank,
            esc(&u.unit_name),
            pct(u.collection_rate),
            pct(u.freshness),
            score(u.quality),
            score(u.score)
        );
    }
    h.push_str("</table></section>");

    // Sharing
    let sh = &r.sharing;
    let _ = write!(
        h,
        "<section><h2>{}</h2><table>\
         <tr><th>{}</th><td class=\"n\">{}</td><th>{}</th><td class=\"n\">{}</td><th>{}</th><td class=\"n\">{}</td><th>{}</th><td class=\"n\">{}</td></tr>\
         <tr><th>{}</th><td class=\"n\">{}</td><th>{}</th><td class=\"n\">{}</td><th>{}</th><td class=\"n\">{}</td><th>{}</th><td class=\"n\">{}</td></tr>\
         </table></section>",
        t(lang, "六、数据共享与服务", "6. Sharing and service"),
        t(lang, "收到申请", "Requests"),
        sh.requests,
        t(lang, "已批准", "Approved"),
        sh.approved,
        t(lang, "已驳回", "Rejected"),
        sh.rejected,
        t(lang, "待审批", "Pending"),
        sh.pending,
        t(lang, "有效授权", "Grants in force"),
        sh.active_grants,
        t(lang, "服务次数", "Reads served"),
        sh.reads_served,
        t(lang, "服务行数", "Rows served"),
        sh.rows_served,
        t(lang, "使用方", "Consumers"),
        sh.consumers,
    );
    if !r.not_yet.is_empty() {
        let _ = write!(
            h,
            "<section><h2>{}</h2><ul>",
            t(lang, "七、待统计", "7. Not yet counted")
        );
        for n in &r.not_yet {
            let _ = write!(h, "<li class=\"muted\">{}</li>", esc(n));
        }
        h.push_str("</ul></section>");
    }
    h.push_str("</body></html>");
    h
}

/// The report's dataset lines as CSV (UTF-8 with BOM, for Excel), with the unit and month on
/// every line.
pub fn render_csv(r: &OperationReport) -> String {
    let field = |s: &str| {
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    };
    let mut out = String::from(
        "\u{feff}unit,unit_name,month,dataset,title,update_frequency,open_tier,collected,rows,loaded,runs,failed_runs,last_success,on_time,quality\n",
    );
    for l in &r.lines {
        let cells = [
            r.unit.id.clone(),
            r.unit.name.clone(),
            r.month.clone(),
            l.dataset.clone(),
            l.title.clone(),
            l.update_frequency.clone(),
            l.open_tier.clone(),
            l.collected.to_string(),
            l.rows.to_string(),
            l.loaded.to_string(),
            l.runs.to_string(),
            l.failed_runs.to_string(),
            l.last_success.clone().unwrap_or_default(),
            l.on_time.map(|b| b.to_string()).unwrap_or_default(),
            l.quality.map(|q| format!("{q:.2}")).unwrap_or_default(),
        ];
        let line: Vec<String> = cells.iter().map(|c| field(c)).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months() {
        let m: Month = "2026-12".parse().unwrap();
        assert_eq!(m.next().to_string(), "2027-01");
        assert_eq!(m.previous().to_string(), "2026-11");
        assert_eq!(
            "2026-01".parse::<Month>().unwrap().previous().to_string(),
            "2025-12"
        );
        assert_eq!(format_ts(m.start()), "2026-12-01T00:00:00.000000Z");
        for bad in ["2026-13", "2026-1", "26-01", "2026/01", ""] {
            let err = bad.parse::<Month>().unwrap_err().to_string();
            assert!(err.contains("YYYY-MM"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(thousands(-1000), "-1,000");
        assert_eq!(thousands(12), "12");
        assert_eq!(esc("<a href='x'>&"), "&lt;a href=&#39;x&#39;&gt;&amp;");
    }
}
