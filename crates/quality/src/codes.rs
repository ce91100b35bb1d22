//! The built-in code tables: GB/T 2260 administrative divisions (every code with the years it
//! was in use, retired codes included, from the bundled timeline) and GB/T 2261.1 sex codes.

use reservoir_catalog::Catalog;
use reservoir_catalog::codes::{CodeTable, CodeValue, gb2261_1};

use crate::Result;
use crate::validate::Divisions;

/// The GB/T 2260 table from the bundled timeline.
pub fn gb2260() -> (CodeTable, Vec<CodeValue>) {
    let values = Divisions::bundled()
        .all()
        .into_iter()
        .map(|(code, p)| CodeValue {
            code,
            label: p.name.clone(),
            valid_from: p.start_year,
            valid_to: p.end_year,
        })
        .collect();
    (
        CodeTable {
            id: "gb2260".into(),
            name: "中华人民共和国行政区划代码".into(),
            standard: "GB/T 2260".into(),
            description: "省、地、县三级行政区划代码，含已撤销的代码及其使用年份".into(),
            builtin: true,
        },
        values,
    )
}

/// Loads the built-in tables into the catalog where they are missing or out of date (a newer
/// Reservoir ships more codes).
pub async fn ensure_builtin_code_tables(catalog: &Catalog) -> Result<()> {
    let present = catalog.code_tables().await?;
    for (table, values) in [gb2260(), gb2261_1()] {
        let current = present
            .iter()
            .any(|t| t.table == table && t.values == values.len() as i64);
        if !current {
            catalog.put_code_table(&table, &values).await?;
        }
    }
    Ok(())
}
