//! Catalog records and their vocabularies.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Checks a name used as a path segment in the lake and as a SQL identifier
/// (unit ids, dataset names). Unicode letters are welcome (`民政`); separators are not.
pub fn validate_ident(what: &'static str, name: &str) -> Result<()> {
    let bad = |message: String| Err(Error::Invalid { what, message });
    if name.is_empty() {
        return bad("must not be empty".into());
    }
    if name.chars().count() > 64 {
        return bad(format!("{name:?} is longer than 64 characters"));
    }
    if name.starts_with('_') {
        return bad(format!(
            "{name:?} must not start with '_' (reserved for system names)"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_alphanumeric() || *c == '_' || *c == '-'))
    {
        return bad(format!(
            "{name:?} contains {c:?}; use letters (any script), digits, '_' or '-'"
        ));
    }
    Ok(())
}

/// A government unit (委办局) that owns source systems and datasets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Unit {
    /// Short identifier used in table names and lake paths, e.g. `minzheng`.
    pub id: String,
    /// Display name, e.g. `区民政局`.
    pub name: String,
    pub parent_id: Option<String>,
    pub description: String,
    pub contact: String,
    pub created_at: String,
    pub updated_at: String,
}

/// Fields for creating or updating a unit.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewUnit {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub parent_id: Option<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub contact: String,
}

/// A unit's source system (a database, a spreadsheet drop, an API …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct System {
    pub unit_id: String,
    pub id: String,
    pub name: String,
    /// `file`, `database`, `api`, `bus`.
    pub kind: String,
    pub description: String,
}

/// How often a dataset is expected to change; the basis for timeliness checks.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum UpdateFrequency {
    Realtime,
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Quarterly,
    Yearly,
    #[default]
    Irregular,
}

impl UpdateFrequency {
    /// How long a dataset with this frequency may go without a successful collection before it
    /// is late: one and a half periods. `None` for irregular datasets.
    pub fn late_after(self) -> Option<chrono::Duration> {
        let minutes = match self {
            Self::Realtime => 15,
            Self::Hourly => 60,
            Self::Daily => 24 * 60,
            Self::Weekly => 7 * 24 * 60,
            Self::Monthly => 31 * 24 * 60,
            Self::Quarterly => 92 * 24 * 60,
            Self::Yearly => 366 * 24 * 60,
            Self::Irregular => return None,
        };
        Some(chrono::Duration::minutes(minutes * 3 / 2))
    }

    pub const ALL: [UpdateFrequency; 8] = [
        Self::Realtime,
        Self::Hourly,
        Self::Daily,
        Self::Weekly,
        Self::Monthly,
        Self::Quarterly,
        Self::Yearly,
        Self::Irregular,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Realtime => "realtime",
            Self::Hourly => "hourly",
            Self::Daily => "daily",
            Self::Weekly => "weekly",
            Self::Monthly => "monthly",
            Self::Quarterly => "quarterly",
            Self::Yearly => "yearly",
            Self::Irregular => "irregular",
        }
    }

    /// The Chinese label used in government catalogs.
    pub fn label_zh(self) -> &'static str {
        match self {
            Self::Realtime => "实时",
            Self::Hourly => "每小时",
            Self::Daily => "每日",
            Self::Weekly => "每周",
            Self::Monthly => "每月",
            Self::Quarterly => "每季度",
            Self::Yearly => "每年",
            Self::Irregular => "不定期",
        }
    }
}

impl fmt::Display for UpdateFrequency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for UpdateFrequency {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s || v.label_zh() == s)
            .ok_or_else(|| Error::Invalid {
                what: "update frequency",
                message: format!(
                    "{s:?}; expected one of {}",
                    Self::ALL.map(|v| v.as_str()).join(", ")
                ),
            })
    }
}

/// Open-data tier of a dataset (开放属性).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum OpenTier {
    /// 无条件开放: public to everyone.
    Open,
    /// 有条件开放: public on application.
    Conditional,
    /// 非开放: never published.
    #[default]
    Closed,
}

impl OpenTier {
    pub const ALL: [OpenTier; 3] = [Self::Open, Self::Conditional, Self::Closed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Conditional => "conditional",
            Self::Closed => "closed",
        }
    }

    pub fn label_zh(self) -> &'static str {
        match self {
            Self::Open => "无条件开放",
            Self::Conditional => "有条件开放",
            Self::Closed => "非开放",
        }
    }
}

impl fmt::Display for OpenTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OpenTier {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s || v.label_zh() == s)
            .ok_or_else(|| Error::Invalid {
                what: "open tier",
                message: format!("{s:?}; expected open, conditional or closed"),
            })
    }
}

/// The layer of datasets that are cataloged but not collected: a directory entry with no lake
/// table yet.
pub const CATALOG_LAYER: &str = "catalog";

/// Sensitivity level 1 (public) to 4 (most sensitive).
pub const SENSITIVITY_LEVELS: std::ops::RangeInclusive<i64> = 1..=4;

/// A dataset: one table in the lake, owned by a unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Dataset {
    pub id: i64,
    /// Lake layer: raw, std, base, theme, topic, open, quarantine.
    pub layer: String,
    pub unit_id: String,
    /// Identifier in SQL and in the lake path.
    pub name: String,
    /// Display name, usually Chinese.
    pub title: String,
    pub description: String,
    pub system_id: Option<String>,
    /// Table location relative to the lake root, e.g. `raw/minzheng/villages`.
    pub location: String,
    pub update_frequency: UpdateFrequency,
    pub sensitivity: i64,
    pub open_tier: OpenTier,
    /// Rows in the table as of the last recorded run.
    pub row_count: i64,
    /// Delta table version as of the last recorded run.
    pub table_version: Option<i64>,
    pub created_at: String,
    pub updated_at: String,
    /// What the data directory says about it beyond its table.
    #[serde(flatten)]
    pub meta: DatasetMeta,
}

/// A dataset's directory entry (资源目录) beyond its table: what a unit's own catalog says
/// about it. Collection never changes these; a catalog import or a steward does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct DatasetMeta {
    /// The identifier the unit's own catalog gives it (目录编码), e.g. `FS_KF_ZW_SDSJ_001`.
    pub identifier: String,
    /// Topic (主题), e.g. `社会发展`.
    pub topic: String,
    /// Industry classification (行业), e.g. `金融业`.
    pub industry: String,
    /// Keywords (标签).
    pub tags: Vec<String>,
    /// Formats it is offered in, e.g. `xlsx`, `csv`, `api`.
    pub formats: Vec<String>,
    /// Who to ask about it: a name, phone or mail address.
    pub contact: String,
    /// When the unit first published it (RFC 3339 or the date as the catalog gave it).
    pub published_at: Option<String>,
    /// When the unit last updated it, as its catalog says.
    pub source_updated_at: Option<String>,
    /// The number of records its catalog declares (数据量).
    pub declared_rows: Option<i64>,
}

impl Dataset {
    /// `layer.unit.name`, the name SQL sees.
    pub fn qualified_name(&self) -> String {
        format!("{}.{}.{}", self.layer, self.unit_id, self.name)
    }
}

/// Fields for registering a dataset (or updating its description).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DatasetSpec {
    pub layer: String,
    pub unit_id: String,
    pub name: String,
    pub title: String,
    pub description: String,
    pub system_id: Option<String>,
    pub location: String,
    pub update_frequency: UpdateFrequency,
    pub sensitivity: i64,
    pub open_tier: OpenTier,
}

/// One column of a dataset's schema, with its business description.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Field {
    pub position: i64,
    pub name: String,
    /// Arrow type as text (`Utf8`, `Int64`, `Timestamp(µs)` …).
    pub data_type: String,
    pub nullable: bool,
    /// Business label, e.g. `行政区划代码`.
    pub title: String,
    pub description: String,
    /// Comma-separated observations from ingestion, e.g. `all_empty`.
    pub flags: String,
}

/// Where a collection run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    /// The process running it ended without recording an outcome (killed, crashed, power
    /// lost). Whatever it committed to the lake stays; the next run resumes from there.
    Interrupted,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
        }
    }
}

impl FromStr for RunStatus {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "running" => Ok(Self::Running),
            "succeeded" => Ok(Self::Succeeded),
            "failed" => Ok(Self::Failed),
            "interrupted" => Ok(Self::Interrupted),
            other => Err(Error::Corrupt(format!("run status {other:?}"))),
        }
    }
}

/// A collection run as recorded in the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Run {
    pub id: i64,
    pub batch_id: String,
    pub dataset_id: i64,
    pub source: String,
    pub mode: String,
    pub status: RunStatus,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub counts: RunCounts,
    pub table_version: Option<i64>,
    pub error: Option<String>,
    /// Per-file details (encoding, delimiter, skipped lines, flags …) as JSON.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

/// Row accounting of a run: `rows_read == rows_loaded + rows_quarantined`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunCounts {
    pub rows_read: i64,
    pub rows_loaded: i64,
    pub rows_quarantined: i64,
    /// Loaded rows that were shorter than the header and padded with NULL.
    pub rows_padded: i64,
    /// Loaded rows that carry any flag (padded, impossible dates …).
    pub rows_flagged: i64,
    /// Non-data lines skipped (preamble, footer), kept in the run details.
    pub lines_skipped: i64,
    pub bytes_read: i64,
    /// Lake rows removed because the source no longer has them (delete detection).
    #[serde(default)]
    pub rows_deleted: i64,
}

impl RunCounts {
    /// True when every row read is either loaded or quarantined.
    pub fn balanced(&self) -> bool {
        self.rows_read == self.rows_loaded + self.rows_quarantined
    }
}

/// What a run is about to do.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub batch_id: String,
    pub dataset_id: i64,
    pub source: String,
    pub mode: String,
}

/// A change in a source's columns noticed by a collection run, and what the run did about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DriftEvent {
    #[serde(default)]
    pub id: i64,
    pub dataset_id: i64,
    pub run_id: Option<i64>,
    pub column_name: String,
    /// `added`, `removed`, `widened` or `changed`.
    pub change: String,
    pub old_type: Option<String>,
    pub new_type: Option<String>,
    /// What the run did, e.g. "column added to the table" or "run stopped".
    pub action: String,
    #[serde(default)]
    pub at: String,
}

/// A file a drop folder delivered, known by its content hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeliveredFile {
    pub dataset_id: i64,
    pub sha256: String,
    pub path: String,
    pub size: i64,
    pub run_id: Option<i64>,
    pub delivered_at: String,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub status: RunStatus,
    pub counts: RunCounts,
    pub table_version: Option<i64>,
    pub error: Option<String>,
    pub details: serde_json::Value,
}

/// A value and how often it occurs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TopValue {
    pub value: Option<String>,
    pub count: i64,
}

/// Statistics of one column, computed after a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ColumnProfile {
    pub position: i64,
    pub column_name: String,
    pub data_type: String,
    pub row_count: i64,
    pub null_count: i64,
    /// Approximate (HyperLogLog) count of distinct non-null values.
    pub distinct_count: i64,
    pub min_value: Option<String>,
    pub max_value: Option<String>,
    pub top_values: Vec<TopValue>,
}

impl ColumnProfile {
    /// Share of rows that are NULL, 0.0–1.0.
    pub fn null_rate(&self) -> f64 {
        if self.row_count == 0 {
            0.0
        } else {
            self.null_count as f64 / self.row_count as f64
        }
    }
}

/// Selects datasets.
#[derive(Debug, Clone, Default)]
pub struct DatasetFilter {
    pub unit_id: Option<String>,
    pub layer: Option<String>,
    pub open_tier: Option<OpenTier>,
    /// Only datasets of this topic (主题).
    pub topic: Option<String>,
    /// Case-insensitive substring match on the name, title and description of the dataset and
    /// on the names and titles of its fields (works for Chinese text as typed).
    pub search: Option<String>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

/// A kind of personal or identifying data a field can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PiiKind {
    ResidentId,
    CreditCode,
    MobilePhone,
    BankCard,
    PersonName,
    Address,
    Email,
}

impl PiiKind {
    pub const ALL: [PiiKind; 7] = [
        Self::ResidentId,
        Self::CreditCode,
        Self::MobilePhone,
        Self::BankCard,
        Self::PersonName,
        Self::Address,
        Self::Email,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ResidentId => "resident_id",
            Self::CreditCode => "credit_code",
            Self::MobilePhone => "mobile_phone",
            Self::BankCard => "bank_card",
            Self::PersonName => "person_name",
            Self::Address => "address",
            Self::Email => "email",
        }
    }

    pub fn label_zh(self) -> &'static str {
        match self {
            Self::ResidentId => "居民身份证号",
            Self::CreditCode => "统一社会信用代码",
            Self::MobilePhone => "手机号码",
            Self::BankCard => "银行卡号",
            Self::PersonName => "姓名",
            Self::Address => "地址",
            Self::Email => "电子邮箱",
        }
    }

    /// The sensitivity level a dataset holding this kind should have at least: identity and
    /// bank card numbers 4, contact and name data 3; a credit code identifies an organization
    /// and is public by law, 1.
    pub fn level(self) -> i64 {
        match self {
            Self::ResidentId | Self::BankCard => 4,
            Self::MobilePhone | Self::PersonName | Self::Address | Self::Email => 3,
            Self::CreditCode => 1,
        }
    }
}

impl fmt::Display for PiiKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PiiKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s || k.label_zh() == s)
            .ok_or_else(|| Error::Invalid {
                what: "personal data kind",
                message: format!(
                    "{s:?}; expected one of {}",
                    Self::ALL.map(|k| k.as_str()).join(", ")
                ),
            })
    }
}

/// Where a field's personal-data mark stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PiiStatus {
    /// Found by a scan, waiting for a steward.
    Suggested,
    Confirmed,
    /// The steward says the field holds no such data; rescans leave it so.
    Rejected,
}

impl PiiStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Suggested => "suggested",
            Self::Confirmed => "confirmed",
            Self::Rejected => "rejected",
        }
    }
}

impl FromStr for PiiStatus {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "suggested" => Ok(Self::Suggested),
            "confirmed" => Ok(Self::Confirmed),
            "rejected" => Ok(Self::Rejected),
            _ => Err(Error::Corrupt(format!("personal data status {s:?}"))),
        }
    }
}

/// A field's personal-data mark.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PiiMark {
    pub field: String,
    pub kind: PiiKind,
    /// Share of the sampled non-empty values that looked like this kind, 0–1.
    pub share: f64,
    /// How many non-empty values were sampled.
    pub sampled: i64,
    pub status: PiiStatus,
    pub updated_at: String,
}

/// A dataset found by a search, with its relevance (higher is better).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SearchHit {
    pub dataset: Dataset,
    pub score: f64,
}

/// Totals for the platform's home page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CatalogStats {
    pub units: i64,
    pub systems: i64,
    pub datasets: i64,
    /// Rows in all datasets as of their last runs.
    pub rows: i64,
    pub runs: i64,
    pub failed_runs: i64,
}

/// Datasets and rows of one unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UnitRows {
    pub unit_id: String,
    pub unit_name: String,
    pub datasets: i64,
    pub rows: i64,
}

/// A value of a facet and how many datasets have it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FacetValue {
    pub value: String,
    pub count: i64,
}

/// Counts of matching datasets by unit, layer and open tier.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DatasetFacets {
    pub units: Vec<FacetValue>,
    pub layers: Vec<FacetValue>,
    pub open_tiers: Vec<FacetValue>,
    pub topics: Vec<FacetValue>,
}

/// A run together with the dataset it loaded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunSummary {
    #[serde(flatten)]
    pub run: Run,
    pub layer: String,
    pub unit_id: String,
    pub dataset: String,
    pub title: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        assert!(validate_ident("unit", "minzheng").is_ok());
        assert!(validate_ident("unit", "民政").is_ok());
        assert!(validate_ident("unit", "nyc-311_2011").is_ok());
        for bad in ["", "a/b", "a.b", "a b", "_batch", "x\"y"] {
            assert!(validate_ident("unit", bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn vocabularies_round_trip() {
        for f in UpdateFrequency::ALL {
            assert_eq!(f.as_str().parse::<UpdateFrequency>().ok(), Some(f));
            assert_eq!(f.label_zh().parse::<UpdateFrequency>().ok(), Some(f));
        }
        assert_eq!(
            "有条件开放".parse::<OpenTier>().ok(),
            Some(OpenTier::Conditional)
        );
        assert!("sometimes".parse::<OpenTier>().is_err());
    }
}

/// Something about collection that needs a person: a failed source or a late dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Alert {
    pub id: i64,
    /// `failed` or `late`.
    pub kind: String,
    /// The source definition's name.
    pub source: String,
    /// `raw.<unit>.<dataset>`.
    pub dataset: String,
    pub message: String,
    pub raised_at: String,
    pub resolved_at: Option<String>,
}

/// One quality check run of a dataset (`reservoir check`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CheckRunRecord {
    #[serde(default)]
    pub id: i64,
    /// The run's id, also in the `check_run` column of the quality table's rows.
    pub check_run: String,
    pub dataset_id: i64,
    pub table_version: i64,
    pub rows_checked: i64,
    /// Failing rows over all rules (a row failing two rules counts twice).
    pub rows_failed: i64,
    /// Score per dimension, 0–100.
    #[schema(value_type = Object)]
    pub scores: serde_json::Value,
    /// Each rule's counts and example failures.
    #[schema(value_type = Object)]
    pub results: serde_json::Value,
    pub failures_version: Option<i64>,
    pub started_at: String,
    pub finished_at: String,
    /// Rows its blocking rules moved to the quarantine table.
    #[serde(default)]
    pub rows_blocked: i64,
}
