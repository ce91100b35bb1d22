//! The data resource directory as the spreadsheets units exchange: reading a catalog sheet
//! (a unit's own 资源目录, or an open-data portal's catalog) into directory entries, with every
//! row accounted for, and the column layout our export writes.
//!
//! Real catalog sheets differ in everything but their meaning: one says 数据提供方, another
//! 来源部门, a crawl says `org_name`. Each column is matched to what it means by its header (see
//! [`Target::synonyms`]); columns that mean nothing we keep are reported, never silently
//! dropped. Crawled sheets also hold rows that are no entries: a second row of Chinese labels
//! under English keys, blank rows, and the header again where two crawls were concatenated (with
//! the columns in another order). Those are recognized and counted. The same entry crawled
//! several times is one dataset: later rows update it and are counted as repeats.
//!
//! The balance always holds: rows read = entries + header rows + blank rows + note rows +
//! rejected rows, and entries = distinct datasets + repeats. A repeat updates the entry with
//! the values it has; a blank cell never erases one.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::model::{
    CATALOG_LAYER, Dataset, DatasetFilter, DatasetMeta, DatasetSpec, Field, NewUnit, OpenTier,
    UpdateFrequency,
};
use crate::{Catalog, Error, Result};

/// A sheet as read from a file: every row with its line (CSV) or row number (spreadsheet),
/// the first being the header.
#[derive(Debug, Clone, Default)]
pub struct Sheet {
    /// The file (and sheet) it came from, for messages.
    pub source: String,
    pub rows: Vec<SheetRow>,
}

#[derive(Debug, Clone)]
pub struct SheetRow {
    /// 1-based line (CSV) or row (spreadsheet) where the row starts.
    pub line: u64,
    pub cells: Vec<String>,
}

/// What a catalog column means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    Identifier,
    Title,
    Description,
    Unit,
    Topic,
    Industry,
    Tags,
    Formats,
    OpenTier,
    UpdateFrequency,
    Sensitivity,
    DeclaredRows,
    PublishedAt,
    UpdatedAt,
    Contact,
    Items,
}

impl Target {
    /// Every target, in the column order of an export.
    pub const ALL: [Target; 16] = [
        Self::Identifier,
        Self::Title,
        Self::Description,
        Self::Unit,
        Self::Topic,
        Self::Industry,
        Self::Tags,
        Self::Formats,
        Self::OpenTier,
        Self::UpdateFrequency,
        Self::Sensitivity,
        Self::DeclaredRows,
        Self::PublishedAt,
        Self::UpdatedAt,
        Self::Contact,
        Self::Items,
    ];

    /// The header our export writes for it (the first synonym).
    pub fn label_zh(self) -> &'static str {
        self.synonyms()[0]
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Identifier => "identifier",
            Self::Title => "title",
            Self::Description => "description",
            Self::Unit => "unit",
            Self::Topic => "topic",
            Self::Industry => "industry",
            Self::Tags => "tags",
            Self::Formats => "formats",
            Self::OpenTier => "open_tier",
            Self::UpdateFrequency => "update_frequency",
            Self::Sensitivity => "sensitivity",
            Self::DeclaredRows => "declared_rows",
            Self::PublishedAt => "published_at",
            Self::UpdatedAt => "updated_at",
            Self::Contact => "contact",
            Self::Items => "items",
        }
    }

    /// Headers that mean this target, compared after [`header_key`]: the labels of Chinese
    /// government catalogs and open-data portals, their crawls' keys, and our own names.
    pub fn synonyms(self) -> &'static [&'static str] {
        match self {
            Self::Identifier => &[
                "目录编码",
                "目录代码",
                "资源代码",
                "资源编码",
                "信息资源代码",
                "数据集编码",
                "id",
                "cata_code",
                "identifier",
            ],
            Self::Title => &[
                "数据目录名称",
                "目录名称",
                "资源名称",
                "信息资源名称",
                "数据集名称",
                "数据名称",
                "name",
                "title",
                "cata_title",
            ],
            Self::Description => &[
                "数据摘要",
                "摘要",
                "资源摘要",
                "信息资源摘要",
                "简介",
                "描述",
                "description",
                "notes",
            ],
            Self::Unit => &[
                "数据提供方",
                "来源部门",
                "提供方",
                "提供部门",
                "数据提供单位",
                "资源提供方",
                "信息资源提供方",
                "提供单位",
                "所属部门",
                "部门",
                "orgname",
                "org_name",
                "unit",
                "publisher",
                "organization",
            ],
            Self::Topic => &[
                "所属主题",
                "主题名称",
                "主题",
                "主题分类",
                "topicname",
                "group_name",
                "topic",
                "theme",
            ],
            Self::Industry => &["所属行业", "行业", "行业分类", "industry"],
            Self::Tags => &[
                "标签",
                "关键字",
                "关键词",
                "tags",
                "cata_tags",
                "keywords",
                "keyword",
            ],
            Self::Formats => &[
                "数据格式",
                "数据下载格式",
                "格式",
                "资源格式",
                "format",
                "formats",
            ],
            Self::OpenTier => &[
                "开放状态",
                "开放属性",
                "开放类型",
                "开放条件",
                "open_type",
                "open_tier",
            ],
            Self::UpdateFrequency => &[
                "更新频率",
                "更新周期",
                "frequency",
                "update_frequency",
                "accrualperiodicity",
            ],
            Self::Sensitivity => &["敏感级别", "敏感等级", "安全级别", "分级", "sensitivity"],
            Self::DeclaredRows => &[
                "数据量",
                "数据条数",
                "记录数",
                "数据记录数",
                "data_count",
                "rows",
            ],
            Self::PublishedAt => &[
                "发布时间",
                "发布日期",
                "released_time",
                "published_at",
                "issued",
            ],
            Self::UpdatedAt => &[
                "最后更新时间",
                "最后更新",
                "更新时间",
                "更新日期",
                "updtime",
                "update_time",
                "source_updated_at",
                "modified",
            ],
            Self::Contact => &[
                "联系方式",
                "联系人",
                "联系电话",
                "联系邮箱",
                "contact_name",
                "contact_phone",
                "contact_email",
                "contact",
            ],
            Self::Items => &[
                "信息项",
                "数据项",
                "字段",
                "信息项名称",
                "cata_items",
                "items",
                "fields",
            ],
        }
    }

    fn for_header(header: &str) -> Option<Target> {
        let key = header_key(header);
        if key.is_empty() {
            return None;
        }
        Self::ALL
            .into_iter()
            .find(|t| t.synonyms().iter().any(|s| header_key(s) == key))
    }

    /// Whether several columns may feed this target (their values are joined).
    fn joins(self) -> bool {
        matches!(self, Self::Contact | Self::Tags)
    }
}

/// A header as compared: without blanks (half- and full-width), bracketed notes such as
/// `（条）`, a required-marker `*`, and in lower case.
pub fn header_key(header: &str) -> String {
    let mut out = String::new();
    let mut depth = 0usize;
    for c in header.chars() {
        match c {
            '(' | '（' | '[' | '【' => depth += 1,
            ')' | '）' | ']' | '】' => depth = depth.saturating_sub(1),
            _ if depth > 0 => {}
            c if c.is_whitespace() || c == '*' || c == '\u{feff}' => {}
            c => out.extend(c.to_lowercase()),
        }
    }
    out
}

/// One directory entry read from a sheet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Entry {
    /// Line of the row it was last read from.
    pub line: u64,
    pub unit: String,
    pub title: String,
    pub description: String,
    pub identifier: String,
    pub topic: String,
    pub industry: String,
    pub tags: Vec<String>,
    pub formats: Vec<String>,
    pub open_tier: Option<OpenTier>,
    pub update_frequency: Option<UpdateFrequency>,
    pub sensitivity: Option<i64>,
    pub declared_rows: Option<i64>,
    pub published_at: Option<String>,
    pub updated_at: Option<String>,
    pub contact: String,
    /// The information items (信息项) it lists: its fields' names.
    pub items: Vec<String>,
}

impl Entry {
    /// This entry updated by a later row of the same entry: the later row's values where it
    /// has them, this entry's where its cells are blank (a blank cell never erases a value).
    fn updated_by(self, later: Entry) -> Entry {
        let text = |old: String, new: String| if new.is_empty() { old } else { new };
        let list = |old: Vec<String>, new: Vec<String>| if new.is_empty() { old } else { new };
        Entry {
            line: later.line,
            unit: text(self.unit, later.unit),
            title: text(self.title, later.title),
            description: text(self.description, later.description),
            identifier: text(self.identifier, later.identifier),
            topic: text(self.topic, later.topic),
            industry: text(self.industry, later.industry),
            tags: list(self.tags, later.tags),
            formats: list(self.formats, later.formats),
            open_tier: later.open_tier.or(self.open_tier),
            update_frequency: later.update_frequency.or(self.update_frequency),
            sensitivity: later.sensitivity.or(self.sensitivity),
            declared_rows: later.declared_rows.or(self.declared_rows),
            published_at: later.published_at.or(self.published_at),
            updated_at: later.updated_at.or(self.updated_at),
            contact: text(self.contact, later.contact),
            items: list(self.items, later.items),
        }
    }
}

/// How one column of the sheet was read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ColumnMapping {
    pub column: String,
    /// What it was read as; `None` if it was not mapped.
    pub target: Option<Target>,
    /// Why not, when it was not mapped.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub note: String,
}

/// A row that could not become an entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Rejected {
    pub line: u64,
    pub reason: String,
}

/// A value that was read but not understood; the entry was kept without it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Warning {
    pub line: u64,
    pub column: String,
    pub value: String,
    pub message: String,
}

/// The most warnings a report lists; `warnings_total` counts them all.
const MAX_WARNINGS: usize = 200;

/// What an import read and did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImportReport {
    pub source: String,
    /// Rows after the header.
    pub rows_read: u64,
    /// Rows that were directory entries (repeats included).
    pub entries: u64,
    /// Distinct datasets among the entries.
    pub datasets: u64,
    /// Entries that repeated an earlier one (same identifier, or same unit and title); the
    /// later row's values were kept.
    pub repeated: u64,
    /// Rows that were headers or labels: a row of Chinese labels under the header, or the
    /// header again where two crawls were joined.
    pub header_rows: u64,
    pub blank_rows: u64,
    /// Notes under the table (注：…, 数据来源：…).
    #[serde(default)]
    pub note_rows: u64,
    pub rejected: Vec<Rejected>,
    pub warnings: Vec<Warning>,
    pub warnings_total: u64,
    /// Every column of the sheet and what it was read as.
    pub columns: Vec<ColumnMapping>,
    /// Units (departments) the import created.
    pub units_created: Vec<String>,
    /// Datasets created and updated in the catalog (zero until written).
    pub created: u64,
    pub updated: u64,
}

impl ImportReport {
    /// rows read = entries + header rows + blank rows + note rows + rejected rows.
    pub fn balanced(&self) -> bool {
        self.rows_read
            == self.entries
                + self.header_rows
                + self.blank_rows
                + self.note_rows
                + self.rejected.len() as u64
            && self.entries == self.datasets + self.repeated
    }

    /// Columns that were not read.
    pub fn unmapped(&self) -> impl Iterator<Item = &ColumnMapping> {
        self.columns.iter().filter(|c| c.target.is_none())
    }

    fn warn(&mut self, line: u64, column: &str, value: &str, message: String) {
        self.warnings_total += 1;
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings.push(Warning {
                line,
                column: column.to_string(),
                value: value.to_string(),
                message,
            });
        }
    }
}

/// A sheet read into entries, not yet written to the catalog.
#[derive(Debug, Clone, Default)]
pub struct ParsedDirectory {
    pub entries: Vec<Entry>,
    pub report: ImportReport,
}

/// Column positions of the targets under the current header.
#[derive(Debug, Default)]
struct Layout {
    header: Vec<String>,
    columns: HashMap<Target, Vec<usize>>,
    mappings: Vec<ColumnMapping>,
}

impl Layout {
    fn new(header: &[String]) -> Layout {
        let mut layout = Layout {
            header: header.to_vec(),
            ..Layout::default()
        };
        for (i, name) in header.iter().enumerate() {
            let target = Target::for_header(name);
            let mut note = String::new();
            let target = match target {
                Some(t) if !t.joins() && layout.columns.contains_key(&t) => {
                    let first = layout.columns[&t][0];
                    note = format!(
                        "also means {}, which column {:?} already gives",
                        t.as_str(),
                        header[first]
                    );
                    None
                }
                Some(t) => {
                    layout.columns.entry(t).or_default().push(i);
                    Some(t)
                }
                None => {
                    if name.trim().is_empty() {
                        note = "no header".into();
                    } else {
                        note = "not a directory attribute we know".into();
                    }
                    None
                }
            };
            layout.mappings.push(ColumnMapping {
                column: name.clone(),
                target,
                note,
            });
        }
        layout
    }

    /// Is this row the header again (possibly with the columns in another order)?
    fn is_header_again(&self, cells: &[String]) -> bool {
        let filled: Vec<&String> = cells.iter().filter(|c| !c.trim().is_empty()).collect();
        if filled.len() < 2 || filled.len() * 2 < self.header.len() {
            return false;
        }
        let known = filled
            .iter()
            .filter(|c| self.header.iter().any(|h| h.trim() == c.trim()))
            .count();
        known * 10 >= filled.len() * 9
    }

    /// Is this a row of labels: at least two cells that name their own column's meaning (数据摘要
    /// under `description`), and nothing else that looks like data in the title column?
    fn is_label_row(&self, cells: &[String]) -> bool {
        let mut labels = 0;
        for (target, cols) in &self.columns {
            for &i in cols {
                let Some(cell) = cells.get(i) else { continue };
                let key = header_key(cell);
                if !key.is_empty() && target.synonyms().iter().any(|s| header_key(s) == key) {
                    labels += 1;
                }
            }
        }
        let title = self
            .columns
            .get(&Target::Title)
            .and_then(|c| cells.get(c[0]))
            .map(|t| header_key(t))
            .unwrap_or_default();
        labels >= 2
            && (title.is_empty()
                || Target::Title
                    .synonyms()
                    .iter()
                    .any(|s| header_key(s) == title))
    }
}

/// Reads a sheet into directory entries. `default_unit` is the providing department for sheets
/// without such a column (one unit's own catalog).
pub fn parse(sheet: &Sheet, default_unit: Option<&str>) -> Result<ParsedDirectory> {
    let invalid = |message: String| Error::Invalid {
        what: "catalog sheet",
        message,
    };
    let mut rows = sheet
        .rows
        .iter()
        .skip_while(|r| r.cells.iter().all(|c| c.trim().is_empty()));
    let Some(header) = rows.next() else {
        return Err(invalid(format!("{}: the file has no rows", sheet.source)));
    };
    let mut layout = Layout::new(&header.cells);
    let expect = |t: Target| {
        t.synonyms()
            .iter()
            .take(6)
            .copied()
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !layout.columns.contains_key(&Target::Title) {
        return Err(invalid(format!(
            "{} line {}: no column holds dataset titles; expected a header such as {} (the header read was: {})",
            sheet.source,
            header.line,
            expect(Target::Title),
            header.cells.join(", ")
        )));
    }
    let default_unit = default_unit.map(str::trim).filter(|u| !u.is_empty());
    if !layout.columns.contains_key(&Target::Unit) && default_unit.is_none() {
        return Err(invalid(format!(
            "{} line {}: no column names the providing department; expected a header such as {}, or give the unit (--unit)",
            sheet.source,
            header.line,
            expect(Target::Unit)
        )));
    }
    let mut report = ImportReport {
        source: sheet.source.clone(),
        columns: layout.mappings.clone(),
        ..ImportReport::default()
    };
    let mut entries: Vec<Entry> = Vec::new();
    // Entries by identifier, and by unit and title: a row without an identifier is the entry
    // of the same unit and title; a row with one is the entry with that identifier, or the
    // identifier-less entry of the same unit and title.
    let mut by_id: HashMap<String, usize> = HashMap::new();
    let mut by_title: HashMap<(String, String), usize> = HashMap::new();
    for row in rows {
        report.rows_read += 1;
        if row.cells.iter().all(|c| c.trim().is_empty()) {
            report.blank_rows += 1;
            continue;
        }
        if layout.is_header_again(&row.cells) {
            report.header_rows += 1;
            layout = Layout::new(&row.cells);
            for m in &layout.mappings {
                if !report.columns.iter().any(|c| c.column == m.column) {
                    report.columns.push(m.clone());
                }
            }
            continue;
        }
        if layout.is_label_row(&row.cells) {
            report.header_rows += 1;
            continue;
        }
        if is_note_row(&row.cells) {
            report.note_rows += 1;
            continue;
        }
        if row.cells.len() > layout.header.len()
            && row.cells[layout.header.len()..]
                .iter()
                .any(|c| !c.trim().is_empty())
        {
            let extra: Vec<&str> = row.cells[layout.header.len()..]
                .iter()
                .map(|c| c.trim())
                .filter(|c| !c.is_empty())
                .collect();
            report.warn(
                row.line,
                "",
                &extra.join(", "),
                format!(
                    "the row has {} cells, the header {}; the cells beyond the header were not read",
                    row.cells.len(),
                    layout.header.len()
                ),
            );
        }
        match read_entry(&layout, row, default_unit, &mut report) {
            Ok(entry) => {
                report.entries += 1;
                let title_key = (entry.unit.clone(), entry.title.clone());
                let earlier = if entry.identifier.is_empty() {
                    by_title.get(&title_key).copied()
                } else {
                    by_id.get(&entry.identifier).copied().or_else(|| {
                        by_title
                            .get(&title_key)
                            .copied()
                            .filter(|&i| entries[i].identifier.is_empty())
                    })
                };
                match earlier {
                    Some(i) => {
                        report.repeated += 1;
                        let first: &Entry = &entries[i];
                        if first.title != entry.title || first.unit != entry.unit {
                            let line = entry.line;
                            let message = format!(
                                "identifier {:?} was {} of {} (last read on line {}); this row calls it {} of {} — the later row's values are kept",
                                entry.identifier,
                                first.title,
                                first.unit,
                                first.line,
                                entry.title,
                                entry.unit
                            );
                            report.warn(line, "", &entry.identifier, message);
                        }
                        let merged = entries[i].clone().updated_by(entry);
                        by_title.insert((merged.unit.clone(), merged.title.clone()), i);
                        if !merged.identifier.is_empty() {
                            by_id.insert(merged.identifier.clone(), i);
                        }
                        entries[i] = merged;
                    }
                    None => {
                        let i = entries.len();
                        by_title.insert(title_key, i);
                        if !entry.identifier.is_empty() {
                            by_id.insert(entry.identifier.clone(), i);
                        }
                        entries.push(entry);
                    }
                }
            }
            Err(reason) => report.rejected.push(Rejected {
                line: row.line,
                reason,
            }),
        }
    }
    report.datasets = entries.len() as u64;
    Ok(ParsedDirectory { entries, report })
}

fn read_entry(
    layout: &Layout,
    row: &SheetRow,
    default_unit: Option<&str>,
    report: &mut ImportReport,
) -> std::result::Result<Entry, String> {
    let cleaned: Vec<String> = row.cells.iter().map(|c| clean_cell(c)).collect();
    let cell = |i: usize| cleaned.get(i).map(String::as_str).unwrap_or_default();
    let column = |t: Target| -> Vec<(String, &str)> {
        layout
            .columns
            .get(&t)
            .into_iter()
            .flatten()
            .map(|&i| (layout.header[i].clone(), cell(i)))
            .filter(|(_, v)| !v.is_empty())
            .collect()
    };
    // The first value of a target: crawled cells may hold a list (`['a', None]`).
    let one = |t: Target| -> Option<(String, String)> {
        column(t).into_iter().find_map(|(name, v)| {
            let v = match crawl_list(v) {
                Some(items) => items.into_iter().find(|s| !s.is_empty())?,
                None => v.to_string(),
            };
            Some((name, v))
        })
    };
    let many = |t: Target| -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (_, v) in column(t) {
            let parts = match crawl_list(v) {
                Some(items) => items,
                None => split_list(v),
            };
            for p in parts {
                if !p.is_empty() && !out.contains(&p) {
                    out.push(p);
                }
            }
        }
        out
    };
    let text = |t: Target| one(t).map(|(_, v)| v).unwrap_or_default();
    let title = text(Target::Title);
    if title.is_empty() {
        let col = &layout.header[layout.columns[&Target::Title][0]];
        return Err(format!(
            "column {col:?} (title) is empty; every entry needs a title"
        ));
    }
    let unit = match one(Target::Unit) {
        Some((_, u)) => u,
        None => match default_unit {
            Some(u) => u.to_string(),
            None => {
                let col = &layout.header[layout.columns[&Target::Unit][0]];
                return Err(format!(
                    "column {col:?} (unit) is empty; every entry needs its providing department"
                ));
            }
        },
    };
    let mut entry = Entry {
        line: row.line,
        unit,
        title,
        description: text(Target::Description),
        identifier: text(Target::Identifier),
        topic: text(Target::Topic),
        industry: text(Target::Industry),
        tags: many(Target::Tags),
        formats: many(Target::Formats)
            .into_iter()
            .map(|f| f.to_lowercase())
            .fold(Vec::new(), |mut acc, f| {
                if !acc.contains(&f) {
                    acc.push(f);
                }
                acc
            }),
        contact: column(Target::Contact)
            .into_iter()
            .map(|(_, v)| v.to_string())
            .collect::<Vec<_>>()
            .join(" "),
        items: many(Target::Items),
        published_at: one(Target::PublishedAt).map(|(_, v)| v),
        updated_at: one(Target::UpdatedAt).map(|(_, v)| v),
        ..Entry::default()
    };
    if let Some((col, v)) = one(Target::OpenTier) {
        match open_tier(&v) {
            Some(t) => entry.open_tier = Some(t),
            None => report.warn(
                row.line,
                &col,
                &v,
                "not an open tier; expected 无条件开放, 有条件开放 or 非开放 (the entry is kept as 非开放)"
                    .into(),
            ),
        }
    }
    if let Some((col, v)) = one(Target::UpdateFrequency) {
        match update_frequency(&v) {
            Some(f) => entry.update_frequency = Some(f),
            None => report.warn(
                row.line,
                &col,
                &v,
                format!(
                    "not an update frequency; expected one of {} (the entry is kept as 不定期)",
                    UpdateFrequency::ALL.map(|f| f.label_zh()).join(", ")
                ),
            ),
        }
    }
    if let Some((col, v)) = one(Target::Sensitivity) {
        match parse_count(&v).filter(|l| crate::SENSITIVITY_LEVELS.contains(l)) {
            Some(level) => entry.sensitivity = Some(level),
            None => report.warn(
                row.line,
                &col,
                &v,
                "not a sensitivity level; expected 1 to 4".into(),
            ),
        }
    }
    if let Some((col, v)) = one(Target::DeclaredRows) {
        match parse_count(&v) {
            Some(n) => entry.declared_rows = Some(n),
            None => report.warn(
                row.line,
                &col,
                &v,
                "not a record count; expected a whole number".into(),
            ),
        }
    }
    Ok(entry)
}

/// A note under a table (注：…, 说明：…, 数据来源：…): one filled cell, the first, starting with a
/// note word.
fn is_note_row(cells: &[String]) -> bool {
    let filled: Vec<&String> = cells.iter().filter(|c| !c.trim().is_empty()).collect();
    filled.len() == 1
        && cells.first().is_some_and(|c| !c.trim().is_empty())
        && [
            "注",
            "说明",
            "备注",
            "数据来源",
            "资料来源",
            "填报说明",
            "note",
        ]
        .iter()
        .any(|w| filled[0].trim().to_lowercase().starts_with(w))
}

/// A cell's text as kept: without control characters, and without the apostrophe our CSV
/// export puts before a leading `=`, `+`, `-` or `@` so that Excel does not read a formula.
fn clean_cell(text: &str) -> String {
    let t: String = text
        .chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\t'))
        .collect();
    let t = t.trim();
    match t.strip_prefix('\'') {
        Some(rest) if rest.starts_with(['=', '+', '-', '@']) => rest.to_string(),
        _ => t.to_string(),
    }
}

/// A cell for a spreadsheet export: text that Excel would read as a formula gets a leading
/// apostrophe (import takes it off again).
pub fn spreadsheet_safe(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text.to_string()
    }
}

/// A crawled cell holding a Python-style list (`['a', None, 'b']`, `[1474441961853, 147…]`):
/// its non-null items. `None` if the text is no such list.
pub fn crawl_list(text: &str) -> Option<Vec<String>> {
    let inner = text.trim().strip_prefix('[')?.strip_suffix(']')?;
    let mut items = Vec::new();
    let mut chars = inner.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace() || *c == ',').is_some() {}
        let Some(&c) = chars.peek() else { break };
        if c == '\'' || c == '"' {
            chars.next();
            let mut item = String::new();
            loop {
                match chars.next() {
                    Some('\\') => item.extend(chars.next()),
                    Some(q) if q == c => break,
                    Some(ch) => item.push(ch),
                    None => return None,
                }
            }
            items.push(item.trim().to_string());
        } else {
            let mut item = String::new();
            while let Some(ch) = chars.next_if(|ch| *ch != ',') {
                item.push(ch);
            }
            let item = item.trim();
            if item.contains(['[', ']', '\'', '"']) {
                return None;
            }
            if item != "None" && item != "null" {
                items.push(item.to_string());
            }
        }
    }
    Some(items)
}

/// Splits a list cell: `a,b`, `a、b`, `a|b`, `a；b`.
fn split_list(text: &str) -> Vec<String> {
    text.split([',', '，', '、', '|', ';', '；', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn open_tier(text: &str) -> Option<OpenTier> {
    let t = header_key(text);
    Some(match t.as_str() {
        "无条件开放" | "开放" | "完全开放" | "open" | "public" => OpenTier::Open,
        "有条件开放" | "依申请开放" | "conditional" | "restricted" => {
            OpenTier::Conditional
        }
        "非开放" | "不予开放" | "不开放" | "closed" | "non_public" => OpenTier::Closed,
        _ => return None,
    })
}

fn update_frequency(text: &str) -> Option<UpdateFrequency> {
    let t = header_key(text);
    if let Ok(f) = t.parse::<UpdateFrequency>() {
        return Some(f);
    }
    Some(match t.as_str() {
        "实时" | "实时更新" | "continuous" => UpdateFrequency::Realtime,
        "每时" | "小时" | "每小时" => UpdateFrequency::Hourly,
        "每日" | "每天" | "日" | "天" | "日更新" => UpdateFrequency::Daily,
        "每周" | "周" | "周更新" => UpdateFrequency::Weekly,
        "每月" | "月" | "月度" | "月更新" => UpdateFrequency::Monthly,
        "每季度" | "每季" | "季度" | "季" => UpdateFrequency::Quarterly,
        "每年" | "年" | "年度" | "每年度" | "annual" => UpdateFrequency::Yearly,
        "不定期" | "不定时" | "按需" | "irregular" => UpdateFrequency::Irregular,
        _ => return None,
    })
}

/// A whole number as catalogs write it: `12,345`, `12345.0`, `１２３`.
fn parse_count(text: &str) -> Option<i64> {
    let t: String = crate::search::normalize(text)
        .chars()
        .filter(|c| *c != ',' && !c.is_whitespace())
        .collect();
    let t = t.strip_suffix(".0").unwrap_or(&t);
    t.parse::<i64>().ok().filter(|n| *n >= 0)
}

/// An identifier made from a name: letters (any script) and digits kept, everything else one
/// `_`. 市交通运输局（市公路局） becomes `市交通运输局_市公路局`.
pub fn identifier_from(name: &str) -> String {
    let mut out = String::new();
    for c in name.trim().chars() {
        if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_matches('_').to_string()
}

/// How to write an import.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The unit new units (departments) are placed under, e.g. the district or the province.
    /// It must exist.
    pub parent: Option<String>,
    /// SHA-256 of the file, recorded with the import.
    pub sha256: String,
}

impl Catalog {
    /// Writes a parsed directory: each department becomes a unit (an existing unit of the same
    /// name or id is reused), each entry a dataset. An entry updates the dataset of its unit
    /// with the same identifier (in any layer, so a collected dataset takes its directory
    /// entry), else the cataloged dataset of the same title; otherwise it is created in the
    /// `catalog` layer. Records the import and returns the report with what was done.
    pub async fn import_directory(
        &self,
        parsed: &ParsedDirectory,
        options: &ImportOptions,
    ) -> Result<ImportReport> {
        let mut report = parsed.report.clone();
        if let Some(parent) = &options.parent
            && self.unit(parent).await?.is_none()
        {
            return Err(Error::NotFound {
                kind: "unit",
                name: parent.clone(),
            });
        }
        let mut unit_ids: HashMap<String, String> = HashMap::new();
        let mut taken_ids: HashSet<String> = HashSet::new();
        // Units by id and by name, full-width and half-width forms alike (（） and () name the
        // same department).
        let fold = |name: &str| crate::search::normalize(name.trim());
        for u in self.units().await? {
            taken_ids.insert(u.id.clone());
            unit_ids.insert(fold(&u.id), u.id.clone());
            unit_ids.insert(fold(&u.name), u.id);
        }
        let mut datasets: HashMap<String, Vec<Dataset>> = HashMap::new();
        let mut names: HashMap<String, HashSet<String>> = HashMap::new();
        for entry in &parsed.entries {
            let unit_id = match unit_ids.get(&fold(&entry.unit)) {
                Some(id) => id.clone(),
                None => {
                    let base = match identifier_from(&entry.unit) {
                        b if b.is_empty() => "unit".to_string(),
                        b => b,
                    };
                    let id = unique(&base, &taken_ids);
                    self.upsert_unit(&NewUnit {
                        id: id.clone(),
                        name: entry.unit.clone(),
                        parent_id: options.parent.clone(),
                        ..NewUnit::default()
                    })
                    .await?;
                    taken_ids.insert(id.clone());
                    unit_ids.insert(fold(&entry.unit), id.clone());
                    report.units_created.push(id.clone());
                    id
                }
            };
            if !datasets.contains_key(&unit_id) {
                let list = self
                    .datasets(&DatasetFilter {
                        unit_id: Some(unit_id.clone()),
                        ..DatasetFilter::default()
                    })
                    .await?;
                names.insert(
                    unit_id.clone(),
                    list.iter()
                        .filter(|d| d.layer == CATALOG_LAYER)
                        .map(|d| d.name.clone())
                        .collect(),
                );
                datasets.insert(unit_id.clone(), list);
            }
            let list = &datasets[&unit_id];
            let found = if entry.identifier.is_empty() {
                list.iter()
                    .find(|d| d.layer == CATALOG_LAYER && d.title == entry.title)
            } else {
                list.iter().find(|d| d.meta.identifier == entry.identifier)
            }
            .cloned();
            let (spec, mut meta) = match &found {
                Some(d) => (
                    DatasetSpec {
                        layer: d.layer.clone(),
                        unit_id: unit_id.clone(),
                        name: d.name.clone(),
                        title: entry.title.clone(),
                        description: if entry.description.is_empty() {
                            d.description.clone()
                        } else {
                            entry.description.clone()
                        },
                        system_id: d.system_id.clone(),
                        location: d.location.clone(),
                        update_frequency: entry.update_frequency.unwrap_or(d.update_frequency),
                        sensitivity: entry.sensitivity.unwrap_or(d.sensitivity),
                        open_tier: entry.open_tier.unwrap_or(d.open_tier),
                    },
                    d.meta.clone(),
                ),
                None => {
                    let base = match identifier_from(if entry.identifier.is_empty() {
                        &entry.title
                    } else {
                        &entry.identifier
                    }) {
                        b if b.is_empty() => "dataset".to_string(),
                        b if b.starts_with(|c: char| c.is_ascii_digit()) => format!("d{b}"),
                        b => b,
                    };
                    let taken = names.entry(unit_id.clone()).or_default();
                    let name = unique(&base, taken);
                    taken.insert(name.clone());
                    let open_tier = entry.open_tier.unwrap_or_default();
                    (
                        DatasetSpec {
                            layer: CATALOG_LAYER.to_string(),
                            unit_id: unit_id.clone(),
                            name,
                            title: entry.title.clone(),
                            description: entry.description.clone(),
                            system_id: None,
                            location: String::new(),
                            update_frequency: entry.update_frequency.unwrap_or_default(),
                            // Open data is public by definition.
                            sensitivity: entry.sensitivity.unwrap_or(match open_tier {
                                OpenTier::Open => 1,
                                _ => 2,
                            }),
                            open_tier,
                        },
                        DatasetMeta::default(),
                    )
                }
            };
            let replace = |old: &mut String, new: &str| {
                if !new.is_empty() {
                    *old = new.to_string();
                }
            };
            replace(&mut meta.identifier, &entry.identifier);
            replace(&mut meta.topic, &entry.topic);
            replace(&mut meta.industry, &entry.industry);
            replace(&mut meta.contact, &entry.contact);
            if !entry.tags.is_empty() {
                meta.tags = entry.tags.clone();
            }
            if !entry.formats.is_empty() {
                meta.formats = entry.formats.clone();
            }
            meta.published_at = entry.published_at.clone().or(meta.published_at);
            meta.source_updated_at = entry.updated_at.clone().or(meta.source_updated_at);
            meta.declared_rows = entry.declared_rows.or(meta.declared_rows);
            let dataset = self.upsert_dataset(&spec).await?;
            if dataset.layer == CATALOG_LAYER && !entry.items.is_empty() {
                let fields: Vec<Field> = entry
                    .items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| Field {
                        position: i as i64,
                        name: item.clone(),
                        data_type: String::new(),
                        nullable: true,
                        title: String::new(),
                        description: String::new(),
                        flags: "declared".into(),
                    })
                    .collect();
                self.set_fields(dataset.id, &fields).await?;
            }
            self.set_dataset_meta(dataset.id, &meta).await?;
            match found {
                Some(_) => report.updated += 1,
                None => {
                    report.created += 1;
                    if let Some(list) = datasets.get_mut(&unit_id) {
                        let mut d = dataset;
                        d.meta = meta;
                        list.push(d);
                    }
                }
            }
        }
        self.record_import(&report, options).await?;
        Ok(report)
    }
}

/// `base`, or `base_2`, `base_3` … whichever is not taken.
fn unique(base: &str, taken: &HashSet<String>) -> String {
    if !taken.contains(base) {
        return base.to_string();
    }
    (2..)
        .map(|n| format!("{base}_{n}"))
        .find(|c| !taken.contains(c))
        .unwrap_or_else(|| base.to_string())
}

impl Entry {
    /// The directory entry of a cataloged dataset, for export. Its items are the business
    /// titles of its fields, or their names where no title was given.
    pub fn from_dataset(dataset: &Dataset, unit_name: &str, fields: &[Field]) -> Entry {
        let meta = &dataset.meta;
        Entry {
            line: 0,
            unit: unit_name.to_string(),
            title: dataset.title.clone(),
            description: dataset.description.clone(),
            identifier: meta.identifier.clone(),
            topic: meta.topic.clone(),
            industry: meta.industry.clone(),
            tags: meta.tags.clone(),
            formats: meta.formats.clone(),
            open_tier: Some(dataset.open_tier),
            update_frequency: Some(dataset.update_frequency),
            sensitivity: Some(dataset.sensitivity),
            declared_rows: meta.declared_rows,
            published_at: meta.published_at.clone(),
            updated_at: meta.source_updated_at.clone(),
            contact: meta.contact.clone(),
            items: fields
                .iter()
                .map(|f| {
                    if f.title.is_empty() {
                        f.name.clone()
                    } else {
                        f.title.clone()
                    }
                })
                .collect(),
        }
    }
}

/// One row of a catalog export, in [`Target::ALL`] order.
pub fn export_row(entry: &Entry) -> Vec<String> {
    Target::ALL
        .into_iter()
        .map(|t| match t {
            Target::Identifier => entry.identifier.clone(),
            Target::Title => entry.title.clone(),
            Target::Description => entry.description.clone(),
            Target::Unit => entry.unit.clone(),
            Target::Topic => entry.topic.clone(),
            Target::Industry => entry.industry.clone(),
            Target::Tags => entry.tags.join(","),
            Target::Formats => entry.formats.join(","),
            Target::OpenTier => entry
                .open_tier
                .map(|t| t.label_zh())
                .unwrap_or_default()
                .into(),
            Target::UpdateFrequency => entry
                .update_frequency
                .map(|f| f.label_zh())
                .unwrap_or_default()
                .into(),
            Target::Sensitivity => entry.sensitivity.map(|s| s.to_string()).unwrap_or_default(),
            Target::DeclaredRows => entry
                .declared_rows
                .map(|n| n.to_string())
                .unwrap_or_default(),
            Target::PublishedAt => entry.published_at.clone().unwrap_or_default(),
            Target::UpdatedAt => entry.updated_at.clone().unwrap_or_default(),
            Target::Contact => entry.contact.clone(),
            Target::Items => entry.items.join("|"),
        })
        .collect()
}

/// The header of a catalog export.
pub fn export_header() -> Vec<String> {
    Target::ALL.map(|t| t.label_zh().to_string()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sheet(rows: &[&[&str]]) -> Sheet {
        Sheet {
            source: "t.csv".into(),
            rows: rows
                .iter()
                .enumerate()
                .map(|(i, r)| SheetRow {
                    line: i as u64 + 1,
                    cells: r.iter().map(|c| c.to_string()).collect(),
                })
                .collect(),
        }
    }

    #[test]
    fn headers_match_by_meaning() {
        assert_eq!(Target::for_header("数据提供方"), Some(Target::Unit));
        assert_eq!(Target::for_header(" 主题名称 "), Some(Target::Topic));
        assert_eq!(
            Target::for_header("数据量（条）"),
            Some(Target::DeclaredRows)
        );
        assert_eq!(Target::for_header("orgName"), Some(Target::Unit));
        assert_eq!(Target::for_header("*数据目录名称"), Some(Target::Title));
        assert_eq!(Target::for_header("下载次数"), None);
        for t in Target::ALL {
            assert_eq!(Target::for_header(t.label_zh()), Some(t), "{t:?}");
        }
    }

    #[test]
    fn crawled_lists() {
        assert_eq!(
            crawl_list("['2017-10-09 09:34:05', None, None, None]"),
            Some(vec!["2017-10-09 09:34:05".to_string()])
        );
        assert_eq!(
            crawl_list("[1474441961853, 1474264646836]"),
            Some(vec![
                "1474441961853".to_string(),
                "1474264646836".to_string()
            ])
        );
        assert_eq!(
            crawl_list("[None, None, '文化设施名录，包括：设施名称、地址']"),
            Some(vec!["文化设施名录，包括：设施名称、地址".to_string()])
        );
        assert_eq!(crawl_list("不是列表"), None);
        assert_eq!(crawl_list("[unclosed 'quote]"), None);
    }

    #[test]
    fn every_row_is_accounted_for() {
        let s = sheet(&[
            &[
                "name",
                "orgName",
                "description",
                "updTime",
                "开放状态",
                "更新频率",
                "下载次数",
            ],
            &["", "数据提供方", "数据摘要", "最后更新时间", "", "", ""],
            &[
                "全省户籍人口",
                "统计局",
                "人口统计",
                "['2016-10-17', None]",
                "无条件开放",
                "每年",
                "3",
            ],
            &["", "", "", "", "", "", ""],
            &["药店名录", "", "药店", "", "", "", ""],
            &[
                "全省户籍人口",
                "统计局",
                "人口统计（修订）",
                "",
                "开放吧",
                "每半月",
                "",
            ],
            &[
                "orgName",
                "name",
                "description",
                "updTime",
                "开放状态",
                "更新频率",
                "下载次数",
            ],
            &["统计局", "GDP", "", "", "有条件开放", "季度", ""],
        ]);
        let parsed = parse(&s, None).unwrap();
        let r = &parsed.report;
        assert_eq!(r.rows_read, 7);
        assert_eq!((r.header_rows, r.blank_rows, r.rejected.len()), (2, 1, 1));
        assert_eq!((r.entries, r.datasets, r.repeated), (3, 2, 1));
        assert!(r.balanced());
        assert_eq!(r.rejected[0].line, 5);
        assert!(r.rejected[0].reason.contains("orgName"), "{:?}", r.rejected);
        assert_eq!(r.warnings_total, 2);
        assert!(
            r.warnings
                .iter()
                .any(|w| w.value == "每半月" && w.line == 6)
        );
        assert_eq!(
            r.unmapped().map(|c| c.column.as_str()).collect::<Vec<_>>(),
            ["下载次数"]
        );
        let e = &parsed.entries;
        assert_eq!(e[0].description, "人口统计（修订）", "the later row wins");
        assert_eq!(
            e[0].open_tier,
            Some(OpenTier::Open),
            "a value the later row lacks (or has unreadable) stays"
        );
        assert_eq!(e[0].updated_at.as_deref(), Some("2016-10-17"));
        assert_eq!(
            e[1].title, "GDP",
            "columns re-read after the repeated header"
        );
        assert_eq!(e[1].unit, "统计局");
        assert_eq!(e[1].open_tier, Some(OpenTier::Conditional));
        assert_eq!(e[1].update_frequency, Some(UpdateFrequency::Quarterly));
    }

    #[test]
    fn repeats_merge_and_notes_are_counted() {
        let s = sheet(&[
            &[
                "目录编码",
                "数据目录名称",
                "数据提供方",
                "开放状态",
                "数据量",
            ],
            &["E001", "甲表", "环保局", "有条件开放", "100"],
            &["E001", "甲表", "环保局", "", ""],
            &["", "乙表", "环保局", "", "5"],
            &["E002", "乙表", "环保局", "无条件开放", ""],
            &["E001", "甲表二", "环保局", "", ""],
            &["=HYPERLINK(1)", "丙\u{7}表", "环保局", "", ""],
            &["'=SUM(1)", "丁表", "环保局", "", ""],
            &["注：本表每季度更新", "", "", "", ""],
        ]);
        let parsed = parse(&s, None).unwrap();
        let r = &parsed.report;
        assert!(r.balanced(), "{r:?}");
        assert_eq!(
            (r.entries, r.datasets, r.repeated, r.note_rows),
            (7, 4, 3, 1)
        );
        let e = &parsed.entries;
        assert_eq!(
            e[0].open_tier,
            Some(OpenTier::Conditional),
            "blank cells erase nothing"
        );
        assert_eq!(e[0].declared_rows, Some(100));
        assert_eq!(e[0].title, "甲表二");
        assert!(
            r.warnings
                .iter()
                .any(|w| w.line == 6 && w.message.contains("on line 3"))
        );
        assert_eq!(e[1].identifier, "E002", "the identifier-less 乙表 is E002");
        assert_eq!(e[1].declared_rows, Some(5));
        assert_eq!(e[2].title, "丙表", "control characters are dropped");
        assert_eq!(
            e[3].identifier, "=SUM(1)",
            "the export's formula guard comes off"
        );
        assert_eq!(spreadsheet_safe("=SUM(1)"), "'=SUM(1)");
    }

    #[test]
    fn sheets_without_titles_or_units_are_refused() {
        let err = parse(&sheet(&[&["a", "b"], &["1", "2"]]), None).unwrap_err();
        assert!(
            err.to_string().contains("no column holds dataset titles"),
            "{err}"
        );
        let err = parse(&sheet(&[&["目录名称"], &["x"]]), None).unwrap_err();
        assert!(err.to_string().contains("--unit"), "{err}");
        let ok = parse(&sheet(&[&["目录名称"], &["x"]]), Some("minzheng")).unwrap();
        assert_eq!(ok.entries[0].unit, "minzheng");
    }

    #[test]
    fn export_reads_back() {
        let entry = Entry {
            line: 2,
            unit: "统计局".into(),
            title: "GDP".into(),
            description: "地区生产总值".into(),
            identifier: "TJ_001".into(),
            topic: "经济建设".into(),
            industry: "统计".into(),
            tags: vec!["经济".into(), "GDP".into()],
            formats: vec!["xlsx".into(), "csv".into()],
            open_tier: Some(OpenTier::Open),
            update_frequency: Some(UpdateFrequency::Quarterly),
            sensitivity: Some(1),
            declared_rows: Some(40),
            published_at: Some("2020-01-01".into()),
            updated_at: Some("2020-04-01".into()),
            contact: "张三 021-1234".into(),
            items: vec!["年份".into(), "季度".into(), "总值".into()],
        };
        let header = export_header();
        let row = export_row(&entry);
        let s = Sheet {
            source: "export.csv".into(),
            rows: vec![
                SheetRow {
                    line: 1,
                    cells: header,
                },
                SheetRow {
                    line: 2,
                    cells: row,
                },
            ],
        };
        let parsed = parse(&s, None).unwrap();
        assert!(parsed.report.unmapped().next().is_none());
        assert_eq!(parsed.entries, [entry]);
    }

    #[test]
    fn identifiers_from_names() {
        assert_eq!(
            identifier_from("市交通运输局（市公路局）"),
            "市交通运输局_市公路局"
        );
        assert_eq!(identifier_from("FS_KF_ZW_SDSJ_001"), "fs_kf_zw_sdsj_001");
        assert_eq!(identifier_from(" a / b "), "a_b");
    }
}
