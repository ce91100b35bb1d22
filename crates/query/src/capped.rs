//! Functions whose output size is an argument (`repeat('x', 1000000000)`, `lpad(s, n)`,
//! `range(1, n)`), wrapped to refuse sizes no query needs: their results are allocated outside
//! the memory pool, whole, before anything can count them, so one call could take the
//! machine's memory.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, FieldRef, Int64Type};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{FunctionRegistry, SessionState};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature,
};

/// The largest value one call may build, in bytes (strings) or elements (arrays).
pub const MAX_VALUE_BYTES: i64 = 16 << 20;
pub const MAX_ELEMENTS: i64 = 10_000_000;

/// What a wrapped function checks before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Cap {
    /// `repeat(text, n)`: n × the text's bytes.
    Repeat,
    /// `lpad(text, n [, fill])`, `rpad(…)`: n characters.
    Pad,
    /// `array_repeat(element, n)`: n elements.
    ArrayRepeat,
    /// `range(…)`, `generate_series(…)` over integers: the elements between start and stop.
    Range,
}

/// Replaces the session's size-taking functions with capped ones.
pub fn register(state: &mut SessionState) -> Result<()> {
    for (name, cap) in [
        ("repeat", Cap::Repeat),
        ("lpad", Cap::Pad),
        ("rpad", Cap::Pad),
        ("array_repeat", Cap::ArrayRepeat),
        ("range", Cap::Range),
        ("generate_series", Cap::Range),
    ] {
        let Some(inner) = state.scalar_functions().get(name).cloned() else {
            continue;
        };
        state.register_udf(Arc::new(ScalarUDF::new_from_impl(Capped { inner, cap })))?;
    }
    Ok(())
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Capped {
    inner: Arc<ScalarUDF>,
    cap: Cap,
}

/// The integers of argument `i` of `args` (`None` where NULL or not an integer).
fn integers(args: &[ColumnarValue], i: usize, rows: usize) -> Result<Vec<Option<i64>>> {
    let Some(arg) = args.get(i) else {
        return Ok(vec![None; rows.max(1)]);
    };
    let array: ArrayRef = arg.to_array(rows.max(1))?;
    if !array.data_type().is_integer() {
        return Ok(vec![None; array.len()]);
    }
    let array = arrow::compute::cast(&array, &DataType::Int64)?;
    Ok(array.as_primitive::<Int64Type>().iter().collect())
}

fn too_big(name: &str, what: String) -> DataFusionError {
    DataFusionError::ResourcesExhausted(format!(
        "{name}: {what}; one value may hold at most {MAX_VALUE_BYTES} bytes or {MAX_ELEMENTS} elements"
    ))
}

impl Capped {
    fn check(&self, args: &[ColumnarValue], rows: usize) -> Result<()> {
        let name = self.inner.name();
        match self.cap {
            Cap::Repeat => {
                let counts = integers(args, 1, rows)?;
                let text = args[0].to_array(rows.max(1))?;
                let lengths = arrow::compute::kernels::length::length(&text)?;
                let lengths = arrow::compute::cast(&lengths, &DataType::Int64)?;
                let lengths = lengths.as_primitive::<Int64Type>();
                for (i, n) in counts.iter().enumerate() {
                    let len = if lengths.is_null(i) {
                        0
                    } else {
                        lengths.value(i)
                    };
                    if let Some(n) = n
                        && n.saturating_mul(len.max(1)) > MAX_VALUE_BYTES
                    {
                        return Err(too_big(name, format!("{n} repetitions of {len} bytes")));
                    }
                }
            }
            Cap::Pad => {
                for n in integers(args, 1, rows)?.into_iter().flatten() {
                    if n > MAX_VALUE_BYTES {
                        return Err(too_big(name, format!("a length of {n} characters")));
                    }
                }
            }
            Cap::ArrayRepeat => {
                for n in integers(args, 1, rows)?.into_iter().flatten() {
                    if n > MAX_ELEMENTS {
                        return Err(too_big(name, format!("{n} elements")));
                    }
                }
            }
            Cap::Range => {
                // range(stop) | range(start, stop [, step]); integers only (dates and
                // timestamps step by intervals and are left to the function).
                let (start, stop, step) = match args.len() {
                    1 => (vec![Some(0); rows.max(1)], integers(args, 0, rows)?, vec![]),
                    _ => (
                        integers(args, 0, rows)?,
                        integers(args, 1, rows)?,
                        integers(args, 2, rows)?,
                    ),
                };
                for i in 0..start.len().min(stop.len()) {
                    let (Some(a), Some(b)) = (start[i], stop[i]) else {
                        continue;
                    };
                    let step = step.get(i).copied().flatten().unwrap_or(1);
                    if step == 0 {
                        continue;
                    }
                    let n = (i128::from(b) - i128::from(a)) / i128::from(step);
                    if n > i128::from(MAX_ELEMENTS) {
                        return Err(too_big(name, format!("{n} elements from {a} to {b}")));
                    }
                }
            }
        }
        Ok(())
    }
}

impl ScalarUDFImpl for Capped {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        self.check(&args.args, args.number_rows)?;
        self.inner.invoke_with_args(args)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;

    use super::*;

    async fn run(ctx: &SessionContext, sql: &str) -> Result<usize> {
        let batches = ctx.sql(sql).await?.collect().await?;
        Ok(batches.iter().map(|b| b.num_rows()).sum())
    }

    #[tokio::test]
    async fn sizes_no_query_needs_are_refused_before_allocating() {
        let ctx = crate::executor::session_context();
        for sql in [
            "SELECT length(repeat('x', 1000000000))",
            "SELECT length(repeat(name, 100000000)) FROM (VALUES ('ab')) t(name)",
            "SELECT length(lpad('x', 2000000000))",
            "SELECT length(rpad('x', 2000000000, 'ab'))",
            "SELECT cardinality(array_repeat(1, 100000000))",
            "SELECT cardinality(range(1, 1000000000))",
            "SELECT cardinality(generate_series(0, 4000000000, 2))",
        ] {
            let e = run(&ctx, sql).await.unwrap_err().to_string();
            assert!(e.contains("one value may hold at most"), "{sql}: {e}");
        }
        // Ordinary sizes run as before.
        for sql in [
            "SELECT repeat('ab', 3)",
            "SELECT lpad('7', 3, '0'), rpad('x', 5)",
            "SELECT array_repeat('a', 4), range(5), range(1, 10, 2), generate_series(1, 3)",
            "SELECT repeat(name, n) FROM (VALUES ('a', 2), ('bb', NULL)) t(name, n)",
        ] {
            let rows = run(&ctx, sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            assert!(rows >= 1, "{sql}");
        }
    }

    #[test]
    fn a_capped_function_keeps_its_name_and_signature() {
        let ctx = SessionContext::new();
        let inner = ctx
            .state()
            .scalar_functions()
            .get("repeat")
            .cloned()
            .unwrap();
        let capped = Capped {
            inner: inner.clone(),
            cap: Cap::Repeat,
        };
        assert_eq!(capped.name(), "repeat");
        assert_eq!(capped.signature(), inner.signature());
    }
}
