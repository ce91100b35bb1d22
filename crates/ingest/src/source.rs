//! Declarative source definitions: one TOML file per source, reviewable in version control.
//!
//! ```toml
//! unit = "minzheng"
//! unit_name = "区民政局"
//! dataset = "villages"
//! title = "松江区村居委会"
//! kind = "file"
//! mode = "overwrite"
//! paths = ["data/songjiang_villages.csv"]   # relative to this file
//! update_frequency = "yearly"
//! sensitivity = 1
//! open_tier = "open"
//!
//! [format]
//! encoding = "utf-8"
//!
//! [columns.code]
//! type = "utf8"
//! title = "村居代码"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use reservoir_catalog::{OpenTier, UpdateFrequency};
use reservoir_lake::WriteMode;
use serde::{Deserialize, Serialize};

use crate::collect::{CollectRequest, ColumnSpec, DatasetInfo};
use crate::csv::CsvOptions;
use crate::decode::encoding_for_label;
use crate::excel::ExcelOptions;
use crate::reader::Format;
use crate::value::ColumnType;
use crate::{Error, Result};

/// A source definition as written in `sources/<name>.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceDef {
    pub unit: String,
    #[serde(default)]
    pub unit_name: Option<String>,
    #[serde(default)]
    pub system: Option<String>,
    #[serde(default)]
    pub system_name: Option<String>,
    pub dataset: String,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default = "default_kind")]
    pub kind: String,
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub paths: Vec<PathBuf>,
    #[serde(default)]
    pub update_frequency: Option<UpdateFrequency>,
    #[serde(default)]
    pub sensitivity: Option<i64>,
    #[serde(default)]
    pub open_tier: Option<OpenTier>,
    #[serde(default)]
    pub format: FormatDef,
    #[serde(default)]
    pub columns: BTreeMap<String, ColumnDef>,
}

fn default_kind() -> String {
    "file".into()
}

/// How to read the files.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormatDef {
    #[serde(default, rename = "type")]
    pub kind: Option<Format>,
    #[serde(default)]
    pub encoding: Option<String>,
    #[serde(default)]
    pub delimiter: Option<String>,
    #[serde(default)]
    pub quote: Option<String>,
    #[serde(default)]
    pub header: Option<bool>,
    #[serde(default)]
    pub skip_lines: Option<usize>,
    #[serde(default)]
    pub footer_lines: Option<usize>,
    #[serde(default)]
    pub sheet: Option<String>,
    #[serde(default)]
    pub header_row: Option<usize>,
}

/// Declared type and description of one column.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnDef {
    #[serde(default, rename = "type")]
    pub ty: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

/// Parses a one-character option such as a delimiter (`","`, `"\t"`, `"tab"`).
pub fn parse_byte_option(what: &str, s: &str) -> Result<u8> {
    let s = match s {
        "tab" | "\\t" => "\t",
        "pipe" => "|",
        "comma" => ",",
        "semicolon" => ";",
        other => other,
    };
    let bytes = s.as_bytes();
    if bytes.len() == 1 {
        Ok(bytes[0])
    } else {
        Err(Error::Invalid(format!(
            "{what} must be a single ASCII character (or tab, pipe, comma, semicolon), got {s:?}"
        )))
    }
}

impl SourceDef {
    /// Reads and checks a definition file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| Error::Source {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Turns the definition into a collection request; relative paths are resolved against
    /// `base` (the folder holding the definition).
    pub fn to_request(&self, origin: &Path, base: &Path) -> Result<CollectRequest> {
        let bad = |message: String| Error::Source {
            path: origin.to_path_buf(),
            message,
        };
        if self.kind != "file" {
            return Err(bad(format!(
                "kind {:?} is not supported by this release; use kind = \"file\"",
                self.kind
            )));
        }
        if self.paths.is_empty() {
            return Err(bad("`paths` lists no files".into()));
        }
        let mode = match self.mode.as_deref() {
            None | Some("append") => WriteMode::Append,
            Some("overwrite") => WriteMode::Overwrite,
            Some(other) => {
                return Err(bad(format!("mode {other:?}; expected append or overwrite")));
            }
        };
        let mut csv = CsvOptions::default();
        if let Some(label) = &self.format.encoding {
            csv.encoding =
                Some(
                    encoding_for_label(label).ok_or_else(|| Error::UnknownEncoding {
                        path: origin.to_path_buf(),
                        label: label.clone(),
                    })?,
                );
        }
        if let Some(d) = &self.format.delimiter {
            csv.delimiter = Some(parse_byte_option("delimiter", d)?);
        }
        if let Some(q) = &self.format.quote {
            csv.quote = parse_byte_option("quote", q)?;
        }
        if let Some(h) = self.format.header {
            csv.header = h;
        }
        csv.skip_lines = self.format.skip_lines;
        csv.footer_lines = self.format.footer_lines;
        let excel = ExcelOptions {
            sheet: self.format.sheet.clone(),
            header_row: self.format.header_row,
            no_header: self.format.header == Some(false),
        };
        let mut columns = Vec::new();
        for (name, def) in &self.columns {
            let ty = match &def.ty {
                Some(t) => Some(
                    t.parse::<ColumnType>()
                        .map_err(|e| bad(format!("column {name:?}: {e}")))?,
                ),
                None => None,
            };
            columns.push(ColumnSpec {
                name: name.clone(),
                ty,
                title: def.title.clone().unwrap_or_default(),
                description: def.description.clone().unwrap_or_default(),
            });
        }
        Ok(CollectRequest {
            unit: self.unit.clone(),
            dataset: self.dataset.clone(),
            files: self.paths.iter().map(|p| base.join(p)).collect(),
            mode,
            format: self.format.kind,
            csv,
            excel,
            columns,
            info: DatasetInfo {
                unit_name: self.unit_name.clone(),
                system: self.system.clone(),
                system_name: self.system_name.clone(),
                title: self.title.clone(),
                description: self.description.clone(),
                update_frequency: self.update_frequency,
                sensitivity: self.sensitivity,
                open_tier: self.open_tier,
            },
            source_label: format!("source {}", origin.display()),
            ..CollectRequest::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_definition() {
        let def: SourceDef = toml::from_str(
            r#"
            unit = "tongji"
            dataset = "gdp"
            mode = "overwrite"
            paths = ["gdp.csv"]
            update_frequency = "yearly"
            open_tier = "open"
            [format]
            encoding = "gbk"
            skip_lines = 3
            [columns."地区"]
            type = "utf8"
            title = "省份"
            "#,
        )
        .unwrap();
        let req = def
            .to_request(Path::new("sources/gdp.toml"), Path::new("/data"))
            .unwrap();
        assert_eq!(req.files, vec![PathBuf::from("/data/gdp.csv")]);
        assert_eq!(req.mode, WriteMode::Overwrite);
        assert_eq!(req.csv.encoding, Some(encoding_rs::GBK));
        assert_eq!(req.csv.skip_lines, Some(3));
        assert_eq!(req.columns[0].ty, Some(ColumnType::Utf8));
        assert_eq!(req.info.open_tier, Some(OpenTier::Open));
    }

    #[test]
    fn rejects_unknown_keys_and_kinds() {
        assert!(toml::from_str::<SourceDef>("unit='a'\ndataset='b'\npath='x'").is_err());
        let def: SourceDef =
            toml::from_str("unit='a'\ndataset='b'\nkind='kafka'\npaths=['x']").unwrap();
        let err = def
            .to_request(Path::new("s.toml"), Path::new("."))
            .unwrap_err();
        assert!(err.to_string().contains("kafka"));
    }
}
