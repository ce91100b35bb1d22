//! Statements refused for their shape before anything plans them: too long, or nested deeper
//! than planning can follow.
//!
//! The SQL parser builds a chain of operators (`1+1+…+1`, `a OR b OR …`, `x::int::int…`,
//! `SELECT … UNION SELECT … UNION …`) in a loop, so a statement of a few kilobytes parses into
//! a tree thousands of levels deep; DataFusion then clones, rewrites and drops that tree
//! recursively, and a deep enough one overflows a thread's stack and aborts the process. The
//! parser's own recursion limit only counts parentheses. So every SQL text is parsed and
//! measured here first, with a walk that stops at the limit, and a tree over it is refused.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{Expr, Query, SetExpr, Statement, Visit, Visitor};
use datafusion::sql::sqlparser::dialect::Dialect;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};

use crate::{Error, Result};

/// The longest SQL text taken, in bytes.
pub const MAX_SQL_BYTES: usize = 1 << 20;

/// The deepest nesting of expressions (and of set operations) a statement may have. Generated
/// SQL stays far below it; a chain of 500 `OR`s is better written as `IN (…)`.
pub const MAX_NESTING: usize = 500;

/// Parses `sql` and refuses it when it is longer than [`MAX_SQL_BYTES`] or nests deeper than
/// [`MAX_NESTING`]. A syntax error is returned as the parser's, for the caller to report or to
/// leave to its own parser.
pub fn parse(sql: &str, dialect: &dyn Dialect) -> Result<Result<Vec<Statement>, ParserError>> {
    if sql.len() > MAX_SQL_BYTES {
        return Err(Error::Plan(format!(
            "the statement is {} bytes long; at most {MAX_SQL_BYTES} are taken",
            sql.len()
        )));
    }
    let statements = match Parser::parse_sql(dialect, sql) {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    let mut depth = Depth::default();
    let too_deep = statements.iter().any(|s| s.visit(&mut depth).is_break());
    if too_deep {
        drop_deep(statements);
        return Err(Error::Plan(format!(
            "the statement nests {} more than {MAX_NESTING} levels deep, more than this server plans; \
             write long chains of alternatives as IN (…) or split the statement",
            depth.what
        )));
    }
    Ok(Ok(statements))
}

/// Measures nesting, stopping as soon as it passes the limit (so the walk itself stays
/// shallow).
#[derive(Default)]
struct Depth {
    exprs: usize,
    what: &'static str,
}

impl Visitor for Depth {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        // Set operations nest without expressions between them: measured on their own,
        // without recursion.
        let mut stack = vec![(query.body.as_ref(), 1usize)];
        while let Some((body, depth)) = stack.pop() {
            if depth > MAX_NESTING {
                self.what = "set operations (UNION, INTERSECT, EXCEPT)";
                return ControlFlow::Break(());
            }
            if let SetExpr::SetOperation { left, right, .. } = body {
                stack.push((left, depth + 1));
                stack.push((right, depth + 1));
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, _: &Expr) -> ControlFlow<()> {
        self.exprs += 1;
        if self.exprs > MAX_NESTING {
            self.what = "expressions";
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, _: &Expr) -> ControlFlow<()> {
        self.exprs -= 1;
        ControlFlow::Continue(())
    }
}

/// Drops a tree too deep for the caller's stack on a thread whose stack holds it: dropping is
/// recursive too. The text is at most [`MAX_SQL_BYTES`], so the tree is at most half a million
/// levels deep; the stack is reserved, and only what the drop touches is used.
fn drop_deep(statements: Vec<Statement>) {
    let spawned = std::thread::Builder::new()
        .name("reservoir-drop-deep".into())
        .stack_size(1 << 30)
        .spawn(move || drop(statements));
    match spawned {
        Ok(handle) => {
            let _ = handle.join();
        }
        // No thread: keep the tree rather than risk the caller's stack.
        Err(e) => tracing::warn!("cannot start a thread to drop a deep statement: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::{GenericDialect, PostgreSqlDialect};

    use super::*;

    fn chain(op: &str, n: usize) -> String {
        format!("SELECT {}", vec!["1"; n].join(op))
    }

    #[test]
    fn ordinary_statements_pass() {
        let sql = "SELECT a, count(*) FROM t WHERE b IN (1, 2, 3) AND (c OR d) GROUP BY a \
                   UNION ALL SELECT 1, 2";
        assert_eq!(parse(sql, &GenericDialect {}).unwrap().unwrap().len(), 1);
        // Up to the limit is fine.
        let at_limit = chain(" + ", MAX_NESTING - 1);
        assert!(parse(&at_limit, &GenericDialect {}).unwrap().is_ok());
        // A syntax error is handed back, not refused.
        assert!(parse("SELEC 1", &GenericDialect {}).unwrap().is_err());
    }

    #[test]
    fn deep_chains_are_refused_without_overflowing() {
        // Run on a thread with a 2 MiB stack, like a tokio worker's.
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(|| {
                for sql in [
                    chain(" + ", 100_000),
                    chain(" OR ", MAX_NESTING + 1),
                    format!("SELECT x{}", "::int".repeat(20_000)),
                    vec!["SELECT 1"; 20_000].join(" UNION ALL "),
                    format!(
                        "SELECT * FROM t WHERE a IN (SELECT {})",
                        vec!["b"; 50_000].join(" || ")
                    ),
                ] {
                    let e = parse(&sql, &PostgreSqlDialect {}).unwrap_err().to_string();
                    assert!(e.contains("more than 500 levels deep"), "{e}");
                }
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn the_longest_deepest_text_is_refused() {
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(|| {
                let sql = chain("+", MAX_SQL_BYTES / 2 - 8);
                assert!(sql.len() <= MAX_SQL_BYTES);
                let e = parse(&sql, &GenericDialect {}).unwrap_err().to_string();
                assert!(e.contains("levels deep"), "{e}");
                let e = parse(&format!("{sql}{}", "+1".repeat(10)), &GenericDialect {})
                    .unwrap_err()
                    .to_string();
                assert!(e.contains("bytes long"), "{e}");
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
