//! Quality rules of a dataset, as written in `<home>/rules/<unit>/<dataset>.yaml`:
//!
//! ```yaml
//! key: [resident_id]            # identifies a failing row (default: _source_file, _source_row)
//! rules:
//!   - check: not_null
//!     column: name
//!   - check: unique
//!     columns: [resident_id]
//!   - check: resident_id        # GB 11643, division code valid at birth
//!     column: resident_id
//!   - check: allowed
//!     column: gender
//!     values: ["1", "2"]
//!   - check: range
//!     column: registered_capital
//!     min: 0
//!   - check: regex
//!     column: street_code
//!     pattern: "^310117[0-9]{3}$"
//! ```
//!
//! Checks: `not_null`, `unique` (one or more columns), `regex`, `range`, `allowed`,
//! `resident_id`, `credit_code`, `mobile_phone`, `date` (optionally with a `format`) and
//! `division` (a GB/T 2260 code, current or retired). NULL passes every check but `not_null`.

use std::collections::HashSet;
use std::path::Path;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::validate::{self, Divisions, Verdict};
use crate::{Error, Result};

/// The quality dimension a rule measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dimension {
    Completeness,
    Timeliness,
    Accuracy,
    Validity,
    Uniqueness,
    Consistency,
}

impl Dimension {
    pub const ALL: [Dimension; 6] = [
        Self::Completeness,
        Self::Timeliness,
        Self::Accuracy,
        Self::Validity,
        Self::Uniqueness,
        Self::Consistency,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completeness => "completeness",
            Self::Timeliness => "timeliness",
            Self::Accuracy => "accuracy",
            Self::Validity => "validity",
            Self::Uniqueness => "uniqueness",
            Self::Consistency => "consistency",
        }
    }
}

impl std::fmt::Display for Dimension {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rules file as written.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    /// Columns that identify a failing row in results (default: the row's file and line).
    #[serde(default)]
    pub key: Vec<String>,
    pub rules: Vec<RuleDef>,
}

/// One rule as written.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleDef {
    /// Defaults to `<check>:<columns>`.
    #[serde(default)]
    pub name: Option<String>,
    pub check: String,
    #[serde(default)]
    pub column: Option<String>,
    #[serde(default)]
    pub columns: Vec<String>,
    #[serde(default)]
    pub pattern: Option<String>,
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
    #[serde(default)]
    pub values: Vec<String>,
    /// `date`: a chrono format such as `%Y-%m-%d` (default: any of the usual forms).
    #[serde(default)]
    pub format: Option<String>,
    /// `referential`, `consistent`: the other dataset, `unit.dataset` (raw) or
    /// `layer.unit.dataset`.
    #[serde(default)]
    pub reference: Option<String>,
    /// `referential`, `consistent`: its column (default: the same name as `column`).
    #[serde(default)]
    pub reference_column: Option<String>,
    /// `consistent`: the columns that say two rows are the same thing (same names in both).
    #[serde(default)]
    pub on: Vec<String>,
    /// `volume`: the largest change of the row count against the mean of earlier checks, as a
    /// share (default 0.5: half as many or half again as many rows fails).
    #[serde(default)]
    pub max_change: Option<f64>,
    /// `volume`: how many earlier checks make the mean (default 5; at least 2 are needed).
    #[serde(default)]
    pub history: Option<u32>,
    /// `code_table`: the catalog's code table (default: the one the field is bound to).
    #[serde(default)]
    pub table: Option<String>,
    /// `element`: the catalog's data element (default: the one the field is bound to).
    #[serde(default)]
    pub element: Option<String>,
    /// Failing rows are moved out of the table into its quarantine, with the rule's reason
    /// (row and join checks of tables collected from files).
    #[serde(default)]
    pub blocking: bool,
    #[serde(default)]
    pub dimension: Option<Dimension>,
    #[serde(default)]
    pub description: Option<String>,
}

/// What a rule checks.
#[derive(Debug, Clone)]
pub enum Check {
    NotNull,
    Unique,
    Regex(regex::Regex),
    Range {
        min: Option<f64>,
        max: Option<f64>,
    },
    Allowed(HashSet<String>),
    ResidentId,
    CreditCode,
    MobilePhone,
    Date(Option<String>),
    Division,
    /// The value exists in another dataset's column.
    Referential {
        reference: String,
        column: Option<String>,
    },
    /// Rows with the same `on` values as another dataset's have the same value.
    Consistent {
        reference: String,
        column: Option<String>,
        on: Vec<String>,
    },
    /// The value is a code of a catalog code table. The codes are loaded from the catalog
    /// before the check runs.
    CodeTable {
        table: Option<String>,
        codes: Option<std::sync::Arc<HashSet<String>>>,
    },
    /// The value is what the field's data element says: its type, length, format and code
    /// table. The element is loaded from the catalog before the check runs.
    Element {
        element: Option<String>,
        spec: Option<std::sync::Arc<ElementSpec>>,
    },
    /// The dataset was collected as often as its update frequency says (one table-level check).
    Freshness,
    /// The row count is near the mean of earlier checks (one table-level check).
    Volume {
        max_change: f64,
        history: u32,
    },
}

impl Check {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::NotNull => "not_null",
            Self::Unique => "unique",
            Self::Regex(_) => "regex",
            Self::Range { .. } => "range",
            Self::Allowed(_) => "allowed",
            Self::ResidentId => "resident_id",
            Self::CreditCode => "credit_code",
            Self::MobilePhone => "mobile_phone",
            Self::Date(_) => "date",
            Self::Division => "division",
            Self::CodeTable { .. } => "code_table",
            Self::Element { .. } => "element",
            Self::Referential { .. } => "referential",
            Self::Consistent { .. } => "consistent",
            Self::Freshness => "freshness",
            Self::Volume { .. } => "volume",
        }
    }

    fn default_dimension(&self) -> Dimension {
        match self {
            Self::NotNull | Self::Volume { .. } => Dimension::Completeness,
            Self::Unique => Dimension::Uniqueness,
            Self::Referential { .. } | Self::Consistent { .. } => Dimension::Consistency,
            Self::Freshness => Dimension::Timeliness,
            _ => Dimension::Validity,
        }
    }

    /// Checks that look at each value on its own, in the one streaming pass.
    pub fn is_row_check(&self) -> bool {
        !matches!(
            self,
            Self::Unique
                | Self::Referential { .. }
                | Self::Consistent { .. }
                | Self::Freshness
                | Self::Volume { .. }
        )
    }

    /// Checks of the table as a whole, with no column.
    pub fn is_table_check(&self) -> bool {
        matches!(self, Self::Freshness | Self::Volume { .. })
    }
}

/// A rule ready to run.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub check: Check,
    pub columns: Vec<String>,
    pub dimension: Dimension,
    pub description: String,
    /// Failing rows leave the table for its quarantine.
    pub blocking: bool,
}

/// The rules of one dataset, ready to run.
#[derive(Debug, Clone)]
pub struct RuleSet {
    pub key: Vec<String>,
    pub rules: Vec<Rule>,
}

impl RuleSet {
    /// The other datasets the rules read (`referential`, `consistent`), as written
    /// (`unit.dataset` or `layer.unit.dataset`).
    pub fn references(&self) -> Vec<&str> {
        self.rules
            .iter()
            .filter_map(|r| match &r.check {
                Check::Referential { reference, .. } | Check::Consistent { reference, .. } => {
                    Some(reference.as_str())
                }
                _ => None,
            })
            .collect()
    }

    /// Reads and checks a rules file; errors name the file, the rule and the field.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::Rules {
            path: path.to_path_buf(),
            message: format!("cannot read: {e}"),
        })?;
        let text = String::from_utf8(bytes).map_err(|e| Error::Rules {
            path: path.to_path_buf(),
            message: format!(
                "not UTF-8 (byte {} is not valid UTF-8); save the file as UTF-8",
                e.utf8_error().valid_up_to()
            ),
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let bad = |message: String| Error::Rules {
            path: path.to_path_buf(),
            message,
        };
        // Notepad saves UTF-8 with a byte-order mark, which YAML would read as content.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let file: RuleFile = yaml_serde::from_str(text).map_err(|e| bad(e.to_string()))?;
        Self::from_file(&file).map_err(bad)
    }

    pub fn from_file(file: &RuleFile) -> std::result::Result<Self, String> {
        if file.rules.is_empty() {
            return Err("`rules` is empty: list at least one rule".into());
        }
        let mut seen = HashSet::new();
        if let Some(c) = file.key.iter().find(|c| !seen.insert(c.as_str())) {
            return Err(format!("`key` lists {c:?} twice"));
        }
        let mut rules = Vec::with_capacity(file.rules.len());
        let mut names = HashSet::new();
        for (i, def) in file.rules.iter().enumerate() {
            let rule = compile(def).map_err(|e| format!("rule {} ({}): {e}", i + 1, def.check))?;
            if !names.insert(rule.name.clone()) {
                return Err(format!(
                    "rule {}: the name {:?} is used twice; give one of them `name:`",
                    i + 1,
                    rule.name
                ));
            }
            rules.push(rule);
        }
        Ok(Self {
            key: file.key.clone(),
            rules,
        })
    }

    /// Every column the rules and the key read.
    pub fn columns(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let on = self.rules.iter().flat_map(|r| match &r.check {
            Check::Consistent { on, .. } => on.as_slice(),
            _ => &[],
        });
        for c in self
            .key
            .iter()
            .chain(self.rules.iter().flat_map(|r| r.columns.iter()))
            .chain(on)
        {
            if !out.contains(c) {
                out.push(c.clone());
            }
        }
        out
    }
}

/// The rules file of a dataset under `dir` (`<unit>/<dataset>.yaml` or `.yml`), if it has one;
/// both at once is an error rather than a guess.
pub fn find_file(dir: &Path, unit: &str, dataset: &str) -> Result<Option<std::path::PathBuf>> {
    let found: Vec<std::path::PathBuf> = ["yaml", "yml"]
        .iter()
        .map(|ext| dir.join(unit).join(format!("{dataset}.{ext}")))
        .filter(|p| p.is_file())
        .collect();
    match found.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one.clone())),
        [a, ..] => Err(Error::Rules {
            path: a.clone(),
            message: format!(
                "{} is there too; keep one rules file per dataset",
                found[1].display()
            ),
        }),
    }
}

fn compile(def: &RuleDef) -> std::result::Result<Rule, String> {
    let table_check = matches!(def.check.as_str(), "freshness" | "volume");
    let columns: Vec<String> = match (&def.column, def.columns.is_empty()) {
        (Some(_), false) => return Err("set `column` or `columns`, not both".into()),
        (Some(_), true) | (None, false) if table_check => {
            return Err(format!(
                "a {} check looks at the whole table; remove `column`",
                def.check
            ));
        }
        (Some(c), true) => vec![c.clone()],
        (None, false) => def.columns.clone(),
        (None, true) if table_check => Vec::new(),
        (None, true) => return Err("needs `column` (or `columns` for unique)".into()),
    };
    let mut seen = HashSet::new();
    if let Some(c) = columns.iter().find(|c| !seen.insert(c.as_str())) {
        return Err(format!("`columns` lists {c:?} twice"));
    }
    if let Some(c) = columns.iter().find(|c| c.starts_with('_')) {
        return Err(format!(
            "{c:?} is one of the lake's own columns (_batch, _source_row …); rules check data columns"
        ));
    }
    if def.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
        return Err("`name` is empty".into());
    }
    let single = |what: &str| -> std::result::Result<(), String> {
        if columns.len() == 1 {
            Ok(())
        } else {
            Err(format!("{what} checks one column; use `column`"))
        }
    };
    let unused = |field: &str, set: bool| -> std::result::Result<(), String> {
        if set {
            Err(format!("`{field}` does not apply to a {} check", def.check))
        } else {
            Ok(())
        }
    };
    let check = match def.check.as_str() {
        "not_null" => {
            single("not_null")?;
            Check::NotNull
        }
        "unique" => Check::Unique,
        "regex" => {
            single("regex")?;
            let p = def.pattern.as_deref().ok_or("needs `pattern`")?;
            Check::Regex(
                regex::Regex::new(p).map_err(|e| format!("pattern {p:?} is not a regex: {e}"))?,
            )
        }
        "range" => {
            single("range")?;
            if def.min.is_none() && def.max.is_none() {
                return Err("needs `min`, `max` or both".into());
            }
            if let Some(x) = [def.min, def.max]
                .into_iter()
                .flatten()
                .find(|x| !x.is_finite())
            {
                return Err(format!("{x} is not a finite bound"));
            }
            if let (Some(a), Some(b)) = (def.min, def.max)
                && a > b
            {
                return Err(format!("min {a} is above max {b}"));
            }
            Check::Range {
                min: def.min,
                max: def.max,
            }
        }
        "allowed" => {
            single("allowed")?;
            if def.values.is_empty() {
                return Err("needs `values`".into());
            }
            Check::Allowed(def.values.iter().cloned().collect())
        }
        "resident_id" => {
            single("resident_id")?;
            Check::ResidentId
        }
        "credit_code" => {
            single("credit_code")?;
            Check::CreditCode
        }
        "mobile_phone" => {
            single("mobile_phone")?;
            Check::MobilePhone
        }
        "date" => {
            single("date")?;
            if let Some(f) = &def.format {
                check_date_format(f)?;
            }
            Check::Date(def.format.clone())
        }
        "division" => {
            single("division")?;
            Check::Division
        }
        "referential" => {
            single("referential")?;
            Check::Referential {
                reference: reference(def)?,
                column: def.reference_column.clone(),
            }
        }
        "consistent" => {
            single("consistent")?;
            if def.on.is_empty() {
                return Err(
                    "needs `on`: the columns that say a row here and a row there are the same \
                     (e.g. on: [身份证号])"
                        .into(),
                );
            }
            let mut seen = HashSet::new();
            if let Some(c) = def.on.iter().find(|c| !seen.insert(c.as_str())) {
                return Err(format!("`on` lists {c:?} twice"));
            }
            if def.on.contains(&columns[0]) {
                return Err(format!(
                    "{:?} is both compared and in `on`; compare a column that is not a key",
                    columns[0]
                ));
            }
            Check::Consistent {
                reference: reference(def)?,
                column: def.reference_column.clone(),
                on: def.on.clone(),
            }
        }
        "code_table" => {
            single("code_table")?;
            Check::CodeTable {
                table: def.table.clone(),
                codes: None,
            }
        }
        "element" => {
            single("element")?;
            Check::Element {
                element: def.element.clone(),
                spec: None,
            }
        }
        "freshness" => Check::Freshness,
        "volume" => {
            let max_change = def.max_change.unwrap_or(0.5);
            if !(max_change.is_finite() && max_change > 0.0) {
                return Err(format!(
                    "max_change {max_change} must be a share above 0, e.g. 0.5"
                ));
            }
            let history = def.history.unwrap_or(5);
            if history < 2 {
                return Err(format!(
                    "history {history}: the mean needs at least 2 earlier checks"
                ));
            }
            Check::Volume {
                max_change,
                history,
            }
        }
        other => {
            return Err(format!(
                "unknown check {other:?}; expected not_null, unique, regex, range, allowed, \
                 resident_id, credit_code, mobile_phone, date, division, code_table, element, \
                 referential, consistent, freshness or volume"
            ));
        }
    };
    if def.blocking && check.is_table_check() {
        return Err(format!(
            "a {} check judges the whole table and has no failing rows to block; remove `blocking`",
            def.check
        ));
    }
    unused(
        "pattern",
        def.pattern.is_some() && !matches!(check, Check::Regex(_)),
    )?;
    unused(
        "min/max",
        (def.min.is_some() || def.max.is_some()) && !matches!(check, Check::Range { .. }),
    )?;
    unused(
        "values",
        !def.values.is_empty() && !matches!(check, Check::Allowed(_)),
    )?;
    unused(
        "format",
        def.format.is_some() && !matches!(check, Check::Date(_)),
    )?;
    let joins = matches!(check, Check::Referential { .. } | Check::Consistent { .. });
    unused("reference", def.reference.is_some() && !joins)?;
    unused("reference_column", def.reference_column.is_some() && !joins)?;
    unused(
        "on",
        !def.on.is_empty() && !matches!(check, Check::Consistent { .. }),
    )?;
    let volume = matches!(check, Check::Volume { .. });
    unused("max_change", def.max_change.is_some() && !volume)?;
    unused("history", def.history.is_some() && !volume)?;
    unused(
        "table",
        def.table.is_some() && !matches!(check, Check::CodeTable { .. }),
    )?;
    unused(
        "element",
        def.element.is_some() && !matches!(check, Check::Element { .. }),
    )?;
    let name = def.name.clone().unwrap_or_else(|| {
        if columns.is_empty() {
            check.as_str().to_string()
        } else {
            format!("{}:{}", check.as_str(), columns.join("+"))
        }
    });
    Ok(Rule {
        name,
        dimension: def.dimension.unwrap_or_else(|| check.default_dimension()),
        check,
        columns,
        description: def.description.clone().unwrap_or_default(),
        blocking: def.blocking,
    })
}

/// The `reference` of a rule: `unit.dataset` or `layer.unit.dataset`.
fn reference(def: &RuleDef) -> std::result::Result<String, String> {
    let r = def
        .reference
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .ok_or("needs `reference`: the other dataset, as unit.dataset or layer.unit.dataset")?;
    match r.split('.').filter(|p| !p.is_empty()).count() {
        2 | 3 if !r.split('.').any(str::is_empty) => Ok(r.to_string()),
        _ => Err(format!(
            "reference {r:?}: expected unit.dataset or layer.unit.dataset"
        )),
    }
}

/// Checks that a chrono format writes and reads back a whole date.
fn check_date_format(f: &str) -> std::result::Result<(), String> {
    use chrono::format::{Item, StrftimeItems};
    let bad = || {
        format!(
            "format {f:?} does not describe a whole date (year, month and day), e.g. \"%Y-%m-%d\" \
             or \"%Y年%m月%d日\""
        )
    };
    if StrftimeItems::new(f).any(|i| matches!(i, Item::Error)) {
        return Err(bad());
    }
    let probe = NaiveDate::from_ymd_opt(2024, 2, 29).ok_or_else(bad)?;
    let written = probe.format(f).to_string();
    match NaiveDate::parse_from_str(&written, f) {
        Ok(d) if d == probe => Ok(()),
        _ => Err(bad()),
    }
}

/// A data element as a check applies it.
#[derive(Debug, Clone)]
pub struct ElementSpec {
    pub id: String,
    pub name: String,
    pub data_type: reservoir_catalog::standards::ElementType,
    pub max_length: Option<i64>,
    /// The format as the element writes it, and compiled to match whole values.
    pub format: Option<(String, regex::Regex)>,
    /// For date and time elements: the format, in chrono's terms.
    pub date_format: Option<String>,
    /// The codes of its code table, and the table's id.
    pub codes: Option<(String, HashSet<String>)>,
}

impl ElementSpec {
    /// Why a value does not fit the element, if it does not.
    pub fn judge(&self, v: &str) -> Option<String> {
        use reservoir_catalog::standards::ElementType as T;
        let t = v.trim();
        let who = format!("data element {} ({})", self.id, self.name);
        if let Some(max) = self.max_length {
            let n = t.chars().count() as i64;
            if n > max {
                return Some(format!(
                    "{v:?} has {n} characters; {who} allows at most {max}"
                ));
            }
        }
        if let Some(f) = &self.date_format {
            let ok = match self.data_type {
                T::Timestamp => chrono::NaiveDateTime::parse_from_str(t, f).is_ok(),
                _ => NaiveDate::parse_from_str(t, f).is_ok(),
            };
            return (!ok).then(|| format!("{v:?} is not a date in {who}'s format {f}"));
        }
        let typed = match self.data_type {
            T::Text => true,
            T::Number => t.parse::<f64>().is_ok_and(f64::is_finite),
            T::Date => ["%Y-%m-%d", "%Y%m%d", "%Y/%m/%d", "%Y年%m月%d日"]
                .iter()
                .any(|f| NaiveDate::parse_from_str(t, f).is_ok()),
            T::Timestamp => {
                chrono::DateTime::parse_from_rfc3339(t).is_ok()
                    || [
                        "%Y-%m-%d %H:%M:%S",
                        "%Y-%m-%dT%H:%M:%S",
                        "%Y-%m-%d %H:%M:%S%.f",
                        "%Y-%m-%dT%H:%M:%S%.f",
                    ]
                    .iter()
                    .any(|f| chrono::NaiveDateTime::parse_from_str(t, f).is_ok())
            }
            T::Boolean => ["true", "false", "1", "0", "是", "否", "t", "f", "y", "n"]
                .contains(&t.to_lowercase().as_str()),
        };
        if !typed {
            return Some(format!(
                "{v:?} is not a {} value ({}); {who} is {}",
                self.data_type.as_str(),
                self.data_type.label_zh(),
                self.data_type.label_zh()
            ));
        }
        if let Some((written, re)) = &self.format
            && !re.is_match(t)
        {
            return Some(format!("{v:?} does not match {who}'s format {written}"));
        }
        if let Some((table, codes)) = &self.codes
            && !codes.contains(t)
        {
            return Some(format!(
                "{v:?} is not a code of {table}, which {who} takes its values from"
            ));
        }
        None
    }
}

/// What a row-level check found wrong with one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    Fail(String),
    /// Valid, with observations (lowercase x, full-width digits …); not a failure.
    Note(Vec<String>),
}

/// Everything a row-level check needs besides the value.
pub struct Context<'a> {
    pub divisions: &'a Divisions,
    pub today: NaiveDate,
}

impl Rule {
    /// Checks one value of a single-column rule (not `unique`, which looks at all rows).
    /// `number` is the value as a number, for `range`.
    pub fn check_value(
        &self,
        value: Option<&str>,
        number: Option<f64>,
        ctx: &Context<'_>,
    ) -> Option<Finding> {
        let Some(v) = value else {
            return matches!(self.check, Check::NotNull)
                .then(|| Finding::Fail("the value is missing (NULL)".into()));
        };
        let verdict = |v: Verdict| match v {
            Verdict::Valid => None,
            Verdict::Flagged(notes) => Some(Finding::Note(notes)),
            Verdict::Invalid(why) => Some(Finding::Fail(why)),
        };
        match &self.check {
            Check::NotNull => v
                .trim()
                .is_empty()
                .then(|| Finding::Fail("the value is blank (only spaces)".into())),
            Check::Unique
            | Check::Referential { .. }
            | Check::Consistent { .. }
            | Check::Freshness
            | Check::Volume { .. } => None,
            Check::Regex(re) => (!re.is_match(v)).then(|| {
                Finding::Fail(format!("{v:?} does not match the pattern {}", re.as_str()))
            }),
            Check::Range { min, max } => match number {
                None => Some(Finding::Fail(format!("{v:?} is not a number"))),
                Some(n) => {
                    let low = min.is_some_and(|m| n < m);
                    let high = max.is_some_and(|m| n > m);
                    (low || high).then(|| {
                        Finding::Fail(format!(
                            "{v} is outside [{}, {}]",
                            min.map_or("-∞".into(), |m| m.to_string()),
                            max.map_or("∞".into(), |m| m.to_string())
                        ))
                    })
                }
            },
            Check::Allowed(values) => (!values.contains(v)).then(|| {
                let mut list: Vec<&String> = values.iter().collect();
                list.sort();
                Finding::Fail(if list.len() <= 10 {
                    format!("{v:?} is not one of {list:?}")
                } else {
                    format!(
                        "{v:?} is not one of the {} allowed values ({:?} …)",
                        list.len(),
                        &list[..5]
                    )
                })
            }),
            Check::ResidentId => verdict(validate::resident_id(v, ctx.divisions, ctx.today)),
            Check::CreditCode => verdict(validate::social_credit_code(v, ctx.divisions)),
            Check::MobilePhone => verdict(validate::mobile_phone(v)),
            Check::Date(format) => {
                let t = v.trim();
                let ok = match format {
                    Some(f) => NaiveDate::parse_from_str(t, f).is_ok(),
                    None => ["%Y-%m-%d", "%Y/%m/%d", "%Y%m%d", "%Y年%m月%d日"]
                        .iter()
                        .any(|f| NaiveDate::parse_from_str(t, f).is_ok()),
                };
                (!ok).then(|| {
                    Finding::Fail(match format {
                        Some(f) => format!("{v:?} is not a real date in the form {f}"),
                        None => format!("{v:?} is not a real date"),
                    })
                })
            }
            Check::Division => ctx
                .divisions
                .periods(v.trim())
                .is_empty()
                .then(|| Finding::Fail(format!("{v:?} is not a GB/T 2260 division code"))),
            Check::CodeTable { table, codes } => {
                let known = codes.as_ref().is_some_and(|c| c.contains(v.trim()));
                (!known).then(|| {
                    Finding::Fail(format!(
                        "{v:?} is not a code of the code table {}",
                        table.as_deref().unwrap_or("?")
                    ))
                })
            }
            Check::Element { spec, .. } => match spec {
                Some(spec) => spec.judge(v).map(Finding::Fail),
                None => Some(Finding::Fail("the data element was not loaded".into())),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> std::result::Result<RuleSet, String> {
        RuleSet::parse(yaml, Path::new("rules/u/d.yaml")).map_err(|e| e.to_string())
    }

    #[test]
    fn rules_parse_with_defaults() {
        let set = parse(
            "\u{feff}key: [id]\nrules:\n  - check: not_null\n    column: name\n  - check: unique\n    columns: [a, b]\n  - check: resident_id\n    column: id\n",
        )
        .unwrap();
        assert_eq!(set.rules.len(), 3);
        assert_eq!(set.rules[0].name, "not_null:name");
        assert_eq!(set.rules[0].dimension, Dimension::Completeness);
        assert_eq!(set.rules[1].name, "unique:a+b");
        assert_eq!(set.rules[1].dimension, Dimension::Uniqueness);
        assert_eq!(set.columns(), ["id", "name", "a", "b"]);
        let set = parse(
            "rules:\n  - {check: consistent, column: name, reference: gongan.hukou, on: [id]}\n  - {check: freshness}\n  - {check: volume}\n",
        )
        .unwrap();
        assert_eq!(set.rules[0].dimension, Dimension::Consistency);
        assert_eq!(set.rules[1].name, "freshness");
        assert_eq!(set.rules[1].dimension, Dimension::Timeliness);
        assert!(matches!(
            set.rules[2].check,
            Check::Volume {
                history: 5,
                max_change
            } if max_change == 0.5
        ));
        assert_eq!(set.columns(), ["name", "id"]);
    }

    #[test]
    fn bad_rules_name_the_file_rule_and_field() {
        let e = parse("rules:\n  - check: range\n    column: n\n").unwrap_err();
        assert_eq!(
            e,
            "rules rules/u/d.yaml: rule 1 (range): needs `min`, `max` or both"
        );
        let e = parse("rules:\n  - check: nul\n    column: n\n").unwrap_err();
        assert!(
            e.contains("unknown check \"nul\"; expected not_null"),
            "{e}"
        );
        let e = parse("rules:\n  - check: regex\n    column: n\n    pattern: '('\n").unwrap_err();
        assert!(e.contains("pattern \"(\" is not a regex"), "{e}");
        let e = parse("rules:\n  - check: not_null\n    column: n\n    values: [a]\n").unwrap_err();
        assert!(
            e.contains("`values` does not apply to a not_null check"),
            "{e}"
        );
        let e = parse("rules:\n  - check: not_null\n    colum: n\n").unwrap_err();
        assert!(e.contains("unknown field `colum`"), "{e}");
        let e =
            parse("rules:\n  - {check: not_null, column: n}\n  - {check: not_null, column: n}\n")
                .unwrap_err();
        assert!(e.contains("the name \"not_null:n\" is used twice"), "{e}");
        for (yaml, expected) in [
            ("rules: []", "`rules` is empty"),
            (
                "rules:\n  - {check: date, column: d, format: '%Y'}",
                "does not describe a whole date",
            ),
            (
                "rules:\n  - {check: date, column: d, format: '%Q-%m'}",
                "does not describe a whole date",
            ),
            (
                "rules:\n  - {check: range, column: n, min: .nan}",
                "NaN is not a finite bound",
            ),
            (
                "rules:\n  - {check: unique, columns: [a, a]}",
                "`columns` lists \"a\" twice",
            ),
            (
                "rules:\n  - {check: not_null, column: _source_row}",
                "the lake's own columns",
            ),
            (
                "rules:\n  - {check: volume, blocking: true}",
                "has no failing rows to block",
            ),
            (
                "rules:\n  - {check: not_null, column: n, name: ''}",
                "`name` is empty",
            ),
            (
                "rules:\n  - {check: referential, column: c}",
                "needs `reference`",
            ),
            (
                "rules:\n  - {check: referential, column: c, reference: a.b.c.d}",
                "expected unit.dataset or layer.unit.dataset",
            ),
            (
                "rules:\n  - {check: referential, column: c, reference: a..b}",
                "expected unit.dataset",
            ),
            (
                "rules:\n  - {check: consistent, column: name, reference: a.b, on: [name]}",
                "both compared and in `on`",
            ),
            (
                "rules:\n  - {check: consistent, column: name, reference: a.b, on: [id, id]}",
                "`on` lists \"id\" twice",
            ),
            (
                "rules:\n  - {check: freshness, column: a}",
                "looks at the whole table",
            ),
            (
                "rules:\n  - {check: volume, max_change: 0}",
                "must be a share above 0",
            ),
            (
                "rules:\n  - {check: volume, history: 1}",
                "at least 2 earlier checks",
            ),
            (
                "rules:\n  - {check: not_null, column: n, reference: a.b}",
                "`reference` does not apply",
            ),
            (
                "rules:\n  - {check: referential, column: n, reference: a.b, max_change: 1}",
                "`max_change` does not apply",
            ),
            (
                "rules:\n  - {check: not_null, column: n, table: gb2260}",
                "`table` does not apply",
            ),
        ] {
            let e = parse(yaml).unwrap_err();
            assert!(e.contains(expected), "{yaml}: {e}");
        }
    }

    #[test]
    fn values_are_checked() {
        let set = parse(
            "rules:\n  - {check: range, column: n, min: 0, max: 10}\n  - {check: allowed, column: g, values: ['1', '2']}\n  - {check: date, column: d}\n  - {check: resident_id, column: id}\n  - {check: not_null, column: x}\n",
        )
        .unwrap();
        let ctx = Context {
            divisions: Divisions::bundled(),
            today: NaiveDate::from_ymd_opt(2026, 12, 4).unwrap_or_default(),
        };
        let r = &set.rules;
        assert_eq!(r[0].check_value(Some("5"), Some(5.0), &ctx), None);
        assert_eq!(
            r[0].check_value(Some("11"), Some(11.0), &ctx),
            Some(Finding::Fail("11 is outside [0, 10]".into()))
        );
        assert_eq!(
            r[0].check_value(Some("abc"), None, &ctx),
            Some(Finding::Fail("\"abc\" is not a number".into()))
        );
        assert_eq!(r[0].check_value(None, None, &ctx), None, "NULL passes");
        assert!(matches!(
            r[1].check_value(Some("3"), None, &ctx),
            Some(Finding::Fail(w)) if w == "\"3\" is not one of [\"1\", \"2\"]"
        ));
        assert!(r[2].check_value(Some("2024-02-29"), None, &ctx).is_none());
        assert!(r[2].check_value(Some("2023-02-29"), None, &ctx).is_some());
        assert!(matches!(
            r[3].check_value(Some("11010519491231002x"), None, &ctx),
            Some(Finding::Note(_))
        ));
        assert_eq!(
            r[4].check_value(None, None, &ctx),
            Some(Finding::Fail("the value is missing (NULL)".into()))
        );
    }
}
