//! Column profiles.

use arrow::array::{Array, ArrayRef, Int64Array};
use arrow::datatypes::DataType;
use arrow::util::display::array_value_to_string;
use datafusion::common::Column;
use datafusion::functions_aggregate::expr_fn::{approx_distinct, count, max, min};
use datafusion::logical_expr::{Expr, cast, lit};
use datafusion::prelude::SessionContext;
use reservoir_catalog::{ColumnProfile, TopValue};
use reservoir_lake::deltalake::DeltaTable;

use crate::{Error, Result};

/// Most frequent values kept per column.
pub const TOP_VALUES: usize = 5;

/// Columns with more distinct values than this (estimated) get no top values: counting them
/// would hold every value in memory, and in such a column each value occurs about once.
pub const TOP_VALUES_MAX_DISTINCT: i64 = 100_000;

/// Profiles every column of `table` except those named in `skip` (e.g. the lake's metadata
/// columns).
pub async fn profile_table(table: &DeltaTable, skip: &[&str]) -> Result<Vec<ColumnProfile>> {
    let ctx = SessionContext::new();
    table
        .update_datafusion_session(&ctx.state())
        .map_err(reservoir_lake::Error::from)?;
    let provider = reservoir_lake::table_provider(table).await?;
    let schema = provider.schema();
    let df = ctx.read_table(provider)?;

    let columns: Vec<(usize, String, DataType)> = schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| !skip.contains(&f.name().as_str()))
        .map(|(i, f)| (i, f.name().clone(), f.data_type().clone()))
        .collect();
    if columns.is_empty() {
        return Ok(Vec::new());
    }

    // One pass for counts, distinct estimates and extremes of all columns.
    let mut aggs: Vec<Expr> = vec![count(lit(1)).alias("__rows")];
    for (i, name, data_type) in &columns {
        let c = Expr::Column(Column::from_name(name));
        aggs.push(count(c.clone()).alias(format!("__nn{i}")));
        // Bytes are not text: count distinct values over their hex form.
        let text = if matches!(
            data_type,
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView
        ) {
            datafusion::functions::expr_fn::encode(c.clone(), lit("hex"))
        } else {
            cast(c.clone(), DataType::Utf8)
        };
        aggs.push(approx_distinct(text).alias(format!("__d{i}")));
        aggs.push(min(c.clone()).alias(format!("__min{i}")));
        aggs.push(max(c).alias(format!("__max{i}")));
    }
    let batches = df.clone().aggregate(vec![], aggs)?.collect().await?;
    let batch = batches
        .into_iter()
        .find(|b| b.num_rows() == 1)
        .ok_or_else(|| {
            Error::DataFusion(datafusion::error::DataFusionError::Internal(
                "profile aggregate returned no row".into(),
            ))
        })?;
    let int_at = |name: &str| -> Result<i64> {
        let col = batch.column_by_name(name).ok_or_else(|| {
            datafusion::error::DataFusionError::Internal(format!("missing {name}"))
        })?;
        let casted = arrow::compute::cast(col, &DataType::Int64)?;
        let ints = casted
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(|| {
                datafusion::error::DataFusionError::Internal(format!("{name} is not an integer"))
            })?;
        Ok(if ints.is_null(0) { 0 } else { ints.value(0) })
    };
    let text_at = |name: &str| -> Result<Option<String>> {
        match batch.column_by_name(name) {
            Some(col) => value_text(col, 0),
            None => Ok(None),
        }
    };
    let rows = int_at("__rows")?;

    let mut out = Vec::with_capacity(columns.len());
    for (i, name, data_type) in &columns {
        let non_null = int_at(&format!("__nn{i}"))?;
        let distinct = int_at(&format!("__d{i}"))?;
        let c = Expr::Column(Column::from_name(name));
        // Counting values groups by them: for a column of (nearly) unique values that is a hash
        // table of the whole column, and its "most frequent values" all occur about once.
        // Memory stays bounded by counting only columns with few distinct values.
        let top = if distinct <= TOP_VALUES_MAX_DISTINCT {
            df.clone()
                .aggregate(vec![c.clone()], vec![count(lit(1)).alias("__n")])?
                .sort(vec![
                    Expr::Column(Column::from_name("__n")).sort(false, false),
                    c.sort(true, true),
                ])?
                .limit(0, Some(TOP_VALUES))?
                .collect()
                .await?
        } else {
            Vec::new()
        };
        let mut top_values = Vec::new();
        for b in &top {
            let counts = arrow::compute::cast(b.column(1), &DataType::Int64)?;
            let counts = counts
                .as_any()
                .downcast_ref::<Int64Array>()
                .ok_or_else(|| {
                    datafusion::error::DataFusionError::Internal("count is not an integer".into())
                })?;
            for r in 0..b.num_rows() {
                top_values.push(TopValue {
                    value: value_text(b.column(0), r)?,
                    count: counts.value(r),
                });
            }
        }
        out.push(ColumnProfile {
            position: *i as i64,
            column_name: name.clone(),
            data_type: data_type.to_string(),
            row_count: rows,
            null_count: rows - non_null,
            distinct_count: distinct,
            min_value: text_at(&format!("__min{i}"))?,
            max_value: text_at(&format!("__max{i}"))?,
            top_values,
        });
    }
    Ok(out)
}

fn value_text(array: &ArrayRef, row: usize) -> Result<Option<String>> {
    if array.is_null(row) {
        return Ok(None);
    }
    Ok(Some(array_value_to_string(array, row)?))
}
