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
    /// Reserved: failing rows would be quarantined. Refused until that is built.
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
    Range { min: Option<f64>, max: Option<f64> },
    Allowed(HashSet<String>),
    ResidentId,
    CreditCode,
    MobilePhone,
    Date(Option<String>),
    Division,
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
        }
    }

    fn default_dimension(&self) -> Dimension {
        match self {
            Self::NotNull => Dimension::Completeness,
            Self::Unique => Dimension::Uniqueness,
            _ => Dimension::Validity,
        }
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
}

/// The rules of one dataset, ready to run.
#[derive(Debug, Clone)]
pub struct RuleSet {
    pub key: Vec<String>,
    pub rules: Vec<Rule>,
}

impl RuleSet {
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
        for c in self
            .key
            .iter()
            .chain(self.rules.iter().flat_map(|r| r.columns.iter()))
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
    let columns: Vec<String> = match (&def.column, def.columns.is_empty()) {
        (Some(_), false) => return Err("set `column` or `columns`, not both".into()),
        (Some(c), true) => vec![c.clone()],
        (None, false) => def.columns.clone(),
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
        other => {
            return Err(format!(
                "unknown check {other:?}; expected not_null, unique, regex, range, allowed, \
                 resident_id, credit_code, mobile_phone, date or division"
            ));
        }
    };
    if def.blocking {
        return Err(
            "`blocking` (quarantining failing rows) is not supported yet; remove it — failing \
             rows are kept in the quality table"
                .into(),
        );
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
    let name = def
        .name
        .clone()
        .unwrap_or_else(|| format!("{}:{}", check.as_str(), columns.join("+")));
    Ok(Rule {
        name,
        dimension: def.dimension.unwrap_or_else(|| check.default_dimension()),
        check,
        columns,
        description: def.description.clone().unwrap_or_default(),
    })
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
            Check::Unique => None,
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
                "rules:\n  - {check: not_null, column: n, blocking: true}",
                "not supported yet",
            ),
            (
                "rules:\n  - {check: not_null, column: n, name: ''}",
                "`name` is empty",
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
