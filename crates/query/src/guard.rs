//! Statements refused for their shape before anything plans them: too long, nested deeper or
//! wider than planning can follow in reasonable time and stack.
//!
//! The SQL parser builds a chain of operators (`1+1+…+1`, `a OR b OR …`, `x::int::int…`,
//! `SELECT … UNION SELECT … UNION …`) in a loop, so a statement of a few kilobytes parses into
//! a tree thousands of levels deep; DataFusion then clones, rewrites and drops that tree
//! recursively, and a deep enough one overflows a thread's stack and aborts the process. Lists
//! the planner folds into deep trees do the same: a thousand tables in one FROM, a chain of a
//! thousand CTEs. Other shapes cost time out of proportion to their length: the PostgreSQL
//! dialect parses each function argument twice (first as a named argument), so nested calls
//! double the parse per level; CUBE over n columns plans 2^n grouping sets; decorrelating nested
//! subqueries multiplies per level. The parser's own recursion limit only counts parentheses.
//! So every SQL text is measured here first — its tokens, then its tree, with a walk that stops
//! at the first limit passed — and refused with a message that says which limit it passed.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, Query, SetExpr, Statement, TableFactor, Visit, Visitor,
};
use datafusion::sql::sqlparser::dialect::Dialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use crate::{Error, Result};

/// The longest SQL text taken, in bytes.
pub const MAX_SQL_BYTES: usize = 1 << 20;

/// The deepest nesting of expressions (and of set operations) a statement may have. Generated
/// SQL stays far below it; a chain of 500 `OR`s is better written as `IN (…)`.
pub const MAX_NESTING: usize = 500;

/// The deepest nesting of function calls.
pub const MAX_CALL_NESTING: usize = 16;

/// Tables, views, subqueries and table functions one statement may read from.
pub const MAX_RELATIONS: usize = 100;

/// Common table expressions (`WITH`) one statement may define.
pub const MAX_CTES: usize = 100;

/// The deepest nesting of queries (subqueries, derived tables, CTE bodies).
pub const MAX_QUERY_NESTING: usize = 8;

/// The most columns in one `CUBE` (2^n grouping sets) and grouping sets in one `GROUP BY`.
pub const MAX_CUBE: usize = 12;
pub const MAX_GROUPING_SETS: usize = 4096;

/// The most items one `SELECT` may list.
pub const MAX_SELECT_ITEMS: usize = 5000;

/// Parses `sql` and refuses it when it passes one of the limits above. A syntax error is
/// returned as the parser's, for the caller to report or to leave to its own parser.
pub fn parse(sql: &str, dialect: &dyn Dialect) -> Result<Result<Vec<Statement>, ParserError>> {
    if sql.len() > MAX_SQL_BYTES {
        return Err(Error::Plan(format!(
            "the statement is {} bytes long; at most {MAX_SQL_BYTES} are taken",
            sql.len()
        )));
    }
    check_calls(sql, dialect)?;
    let statements = match Parser::parse_sql(dialect, sql) {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    let mut shape = Shape::default();
    let refused = statements.iter().any(|s| s.visit(&mut shape).is_break());
    if refused {
        drop_deep(statements);
        return Err(Error::Plan(format!(
            "{}, more than this server plans; {}",
            shape.refusal, shape.advice
        )));
    }
    Ok(Ok(statements))
}

/// Words before a parenthesis that does not open a function call's arguments.
const NOT_CALLS: &[Keyword] = &[
    Keyword::IN,
    Keyword::EXISTS,
    Keyword::VALUES,
    Keyword::FROM,
    Keyword::JOIN,
    Keyword::AS,
    Keyword::ON,
    Keyword::WHERE,
    Keyword::AND,
    Keyword::OR,
    Keyword::NOT,
    Keyword::SELECT,
    Keyword::ANY,
    Keyword::ALL,
    Keyword::SOME,
    Keyword::OVER,
    Keyword::FILTER,
    Keyword::WITHIN,
    Keyword::USING,
    Keyword::WITH,
    Keyword::LATERAL,
    Keyword::CAST,
    Keyword::TRY_CAST,
    Keyword::ARRAY,
    Keyword::ROW,
    Keyword::SETS,
    Keyword::CUBE,
    Keyword::ROLLUP,
    Keyword::BY,
    Keyword::HAVING,
    Keyword::WHEN,
    Keyword::THEN,
    Keyword::ELSE,
    Keyword::CASE,
    Keyword::UNION,
    Keyword::EXCEPT,
    Keyword::INTERSECT,
    Keyword::LIMIT,
    Keyword::OFFSET,
    Keyword::TABLE,
    Keyword::IS,
    Keyword::BETWEEN,
    Keyword::LIKE,
    Keyword::ILIKE,
];

/// Nested function calls, measured on the tokens before any parser sees them: at most
/// [`MAX_CALL_NESTING`] deep, and the parse they cost (each token weighs 2^(calls around it),
/// as the PostgreSQL dialect parses it) within a budget far above ordinary SQL's.
fn check_calls(sql: &str, dialect: &dyn Dialect) -> Result<()> {
    const BUDGET: u64 = 1 << 22;
    let Ok(tokens) = Tokenizer::new(dialect, sql).tokenize() else {
        // The parser reports it.
        return Ok(());
    };
    let mut parens: Vec<bool> = Vec::new();
    let mut calls = 0usize;
    let mut work = 0u64;
    let mut previous: Option<&Token> = None;
    for token in &tokens {
        match token {
            Token::Whitespace(_) => continue,
            Token::LParen => {
                let call =
                    matches!(previous, Some(Token::Word(w)) if !NOT_CALLS.contains(&w.keyword));
                parens.push(call);
                if call {
                    calls += 1;
                    if calls > MAX_CALL_NESTING {
                        return Err(Error::Plan(format!(
                            "the statement nests function calls more than {MAX_CALL_NESTING} deep, \
                             more than this server plans; compute parts in a subquery or a CTE"
                        )));
                    }
                }
            }
            Token::RParen if parens.pop() == Some(true) => calls -= 1,
            _ => {}
        }
        work += 1 << calls;
        if work > BUDGET {
            return Err(Error::Plan(
                "the statement's nested function calls would take too long to parse; \
                 nest fewer calls or split the statement"
                    .into(),
            ));
        }
        previous = Some(token);
    }
    Ok(())
}

/// Measures a statement's shape, stopping as soon as it passes a limit (so the walk itself
/// stays shallow).
#[derive(Default)]
struct Shape {
    exprs: usize,
    queries: usize,
    relations: usize,
    ctes: usize,
    refusal: String,
    advice: &'static str,
}

impl Shape {
    fn refuse(&mut self, refusal: String, advice: &'static str) -> ControlFlow<()> {
        self.refusal = refusal;
        self.advice = advice;
        ControlFlow::Break(())
    }
}

impl Visitor for Shape {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        self.queries += 1;
        if self.queries > MAX_QUERY_NESTING {
            return self.refuse(
                format!("the statement nests queries more than {MAX_QUERY_NESTING} deep"),
                "flatten subqueries into joins or CTEs",
            );
        }
        if let Some(with) = &query.with {
            self.ctes += with.cte_tables.len();
            if self.ctes > MAX_CTES {
                return self.refuse(
                    format!("the statement defines more than {MAX_CTES} common table expressions"),
                    "split it into several statements",
                );
            }
        }
        // Set operations nest without expressions between them: measured on their own,
        // without recursion; so are the items of each SELECT.
        let mut stack = vec![(query.body.as_ref(), 1usize)];
        while let Some((body, depth)) = stack.pop() {
            if depth > MAX_NESTING {
                return self.refuse(
                    format!(
                        "the statement nests set operations (UNION, INTERSECT, EXCEPT) more than \
                         {MAX_NESTING} levels deep"
                    ),
                    "split it into several statements",
                );
            }
            match body {
                SetExpr::SetOperation { left, right, .. } => {
                    stack.push((left, depth + 1));
                    stack.push((right, depth + 1));
                }
                SetExpr::Select(select) if select.projection.len() > MAX_SELECT_ITEMS => {
                    return self.refuse(
                        format!("a SELECT lists more than {MAX_SELECT_ITEMS} items"),
                        "select fewer columns, or SELECT * from the table",
                    );
                }
                _ => {}
            }
        }
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
        self.queries -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, _: &TableFactor) -> ControlFlow<()> {
        self.relations += 1;
        if self.relations > MAX_RELATIONS {
            return self.refuse(
                format!("the statement reads from more than {MAX_RELATIONS} tables and subqueries"),
                "split it into several statements",
            );
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        self.exprs += 1;
        if self.exprs > MAX_NESTING {
            return self.refuse(
                format!("the statement nests expressions more than {MAX_NESTING} levels deep"),
                "write long chains of alternatives as IN (…) or split the statement",
            );
        }
        match expr {
            Expr::CompoundFieldAccess { access_chain, .. } if access_chain.len() > MAX_NESTING => {
                self.refuse(
                    format!(
                        "the statement chains more than {MAX_NESTING} field accesses or subscripts"
                    ),
                    "split the chain",
                )
            }
            Expr::Cube(sets) if sets.len() > MAX_CUBE => self.refuse(
                format!(
                    "CUBE over more than {MAX_CUBE} columns ({} grouping sets)",
                    1u128 << sets.len().min(127)
                ),
                "group by fewer columns, or list the GROUPING SETS you need",
            ),
            Expr::GroupingSets(sets) | Expr::Rollup(sets) if sets.len() > MAX_GROUPING_SETS => self
                .refuse(
                    format!("more than {MAX_GROUPING_SETS} grouping sets"),
                    "group by fewer sets",
                ),
            _ => ControlFlow::Continue(()),
        }
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
    fn wide_and_costly_shapes_are_refused_ordinary_ones_pass() {
        let refused = |sql: String, needle: &str| {
            let e = parse(&sql, &PostgreSqlDialect {})
                .map(|_| ())
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{needle}: {e}");
        };
        let tables = |n: usize| {
            (0..n)
                .map(|i| format!("(VALUES (1)) t{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        refused(
            format!("SELECT 1 FROM {}", tables(1000)),
            "more than 100 tables",
        );
        let ctes = |n: usize| {
            (0..n)
                .map(|i| match i {
                    0 => "t0 AS (SELECT 1 AS x)".to_string(),
                    _ => format!("t{i} AS (SELECT * FROM t{})", i - 1),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        refused(
            format!("WITH {} SELECT * FROM t1999", ctes(2000)),
            "common table expressions",
        );
        let calls = |d: usize| format!("SELECT {}1{}", "abs(".repeat(d), ")".repeat(d));
        refused(calls(40), "function calls");
        let columns: Vec<String> = (0..24).map(|i| format!("c{i}")).collect();
        refused(
            format!(
                "SELECT count(*) FROM t GROUP BY CUBE({})",
                columns.join(", ")
            ),
            "CUBE over more than 12 columns",
        );
        refused(
            format!("SELECT {} FROM t", vec!["1"; 6000].join(", ")),
            "more than 5000 items",
        );
        let exists = |d: usize| {
            format!(
                "SELECT 1 WHERE {}1 = 1{}",
                "EXISTS (SELECT 1 WHERE ".repeat(d),
                ")".repeat(d)
            )
        };
        refused(exists(10), "nests queries more than 8 deep");
        refused(
            format!("SELECT make_array(1, 2){}", "[1:2]".repeat(20_000)),
            "more than 500",
        );

        // What BI tools and people write passes: 30 joins, 50 CTEs, calls six deep, a CUBE of
        // four, subqueries five deep.
        let ok =
            |sql: String| assert!(parse(&sql, &PostgreSqlDialect {}).unwrap().is_ok(), "{sql}");
        ok(format!("SELECT 1 FROM {}", tables(30)));
        ok(format!("WITH {} SELECT * FROM t49", ctes(50)));
        ok(calls(6));
        ok("SELECT coalesce(nullif(trim(upper(substr(name, 1, 3))), ''), '-') FROM t".into());
        ok("SELECT a, b, count(*) FROM t GROUP BY CUBE(a, b, c, d)".into());
        ok(exists(5));
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
