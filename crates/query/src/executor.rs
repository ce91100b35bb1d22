//! Where queries run: DataFusion's CPU-heavy work on a runtime of its own, apart from the
//! runtime that serves clients.
//!
//! A join or an aggregate over a large table keeps its threads busy between two awaits for as
//! long as it has input. On the runtime that accepts connections, reads requests and answers
//! cancel requests, two such queries on a two-core machine would stall everything else. Here
//! the plan executes on the query runtime and hands its batches over a small channel: the
//! serving side only awaits the channel, stays responsive, and stops a query by dropping its
//! stream (which aborts the query's task).

use std::num::NonZeroUsize;
use std::sync::{Arc, OnceLock};

use datafusion::error::DataFusionError;
use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::{SendableRecordBatchStream, SessionState, SessionStateBuilder};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};
use futures::{FutureExt, StreamExt};

/// Memory all queries of the process hold at once when nothing else is configured.
pub const DEFAULT_MEMORY_LIMIT: usize = 4 << 30;

static RUNTIME_ENV: OnceLock<Arc<RuntimeEnv>> = OnceLock::new();

/// Sets how much memory the queries of this process may hold together (`server.query_memory_mb`);
/// call it before the first query. Returns false when the pool exists already.
pub fn set_memory_limit(bytes: usize) -> bool {
    let mut set = false;
    RUNTIME_ENV.get_or_init(|| {
        set = true;
        memory_limited(bytes)
    });
    set
}

/// The runtime environment every session of the process shares: one memory pool, so queries
/// together stay within the limit. Sorts, aggregates and joins that can spill write to the
/// system's temporary folder when their share is used up; what cannot spill fails the query
/// with "Resources exhausted" and names the largest consumers, instead of taking the machine's
/// memory.
pub fn runtime_env() -> Arc<RuntimeEnv> {
    RUNTIME_ENV
        .get_or_init(|| memory_limited(DEFAULT_MEMORY_LIMIT))
        .clone()
}

/// A runtime environment with a memory pool of its own of `bytes` (the public's SQL over open
/// data, apart from everyone else's queries).
pub fn memory_limited(bytes: usize) -> Arc<RuntimeEnv> {
    let pool = TrackConsumersPool::new(
        FairSpillPool::new(bytes),
        NonZeroUsize::new(5).unwrap_or(NonZeroUsize::MIN),
    );
    RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(pool))
        .build_arc()
        .unwrap_or_else(|e| panic!("cannot build the query runtime environment: {e}"))
}

/// A session state for `config` on `env`, with the rules every Reservoir session has.
///
/// Functions whose output size is an argument are capped ([`crate::capped`]). Round-robin
/// repartitioning is off: a nested loop join whose build side passes the memory
/// pool falls back to reading that side again in chunks, and a `RepartitionExec` under it
/// panics when executed a second time (DataFusion 55). Scans still split large files across
/// partitions, and hash joins and aggregates still repartition by hash.
pub fn session_state(mut config: SessionConfig, env: Arc<RuntimeEnv>) -> SessionState {
    config
        .options_mut()
        .optimizer
        .enable_round_robin_repartition = false;
    let mut state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(env)
        .with_default_features()
        .with_physical_optimizer_rule(Arc::new(YieldingJoins))
        .build();
    if let Err(e) = crate::capped::register(&mut state) {
        tracing::error!("cannot cap the size-taking functions: {e}");
    }
    state
}

/// A plain session (no lake tables) on the shared runtime environment.
pub fn session_context() -> SessionContext {
    SessionContext::new_with_state(session_state(SessionConfig::new(), runtime_env()))
}

/// Stack of the threads that plan and run queries: room for the deepest statement
/// [`crate::guard`] lets through, with margin (reserved, and used only as far as touched).
pub const THREAD_STACK: usize = 16 << 20;

/// The query runtime: one worker per core, threads named `reservoir-query`.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("reservoir-query")
            .thread_stack_size(THREAD_STACK)
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cannot start the query runtime: {e}"))
    })
}

/// Aborts the query's task when the stream reading it is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Executes `df` on the query runtime; its batches arrive through the returned stream.
pub fn execute(df: DataFrame) -> SendableRecordBatchStream {
    let schema = std::sync::Arc::new(df.schema().as_arrow().clone());
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<_, DataFusionError>>(2);
    let task = runtime().spawn(async move {
        let failed = tx.clone();
        let run = async move {
            let mut stream = match df.execute_stream().await {
                Ok(s) => s,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            while let Some(batch) = stream.next().await {
                if tx.send(batch.map_err(out_of_memory)).await.is_err() {
                    // The reader went away: stop.
                    return;
                }
            }
        };
        // A panic inside the engine must not read as the end of the result (the channel
        // closing): it is the query's error.
        if let Err(panic) = std::panic::AssertUnwindSafe(run).catch_unwind().await {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown cause".into());
            tracing::error!("a query panicked in the engine: {what}");
            let _ = failed
                .send(Err(DataFusionError::Execution(format!(
                    "the query engine failed ({what}); the query returned nothing"
                ))))
                .await;
        }
    });
    let guard = AbortOnDrop(task);
    let batches = futures::stream::unfold((rx, guard), |(mut rx, guard)| async move {
        rx.recv().await.map(|b| (b, (rx, guard)))
    });
    Box::pin(RecordBatchStreamAdapter::new(schema, batches))
}

/// A nested loop join whose build side passes the memory pool falls back to spilling it and
/// reading it again; in DataFusion 55 that fallback fails on plans it cannot run twice, with an
/// internal error. What the user needs to hear is that the query needs more memory than it may
/// have.
fn out_of_memory(e: DataFusionError) -> DataFusionError {
    match e.find_root() {
        DataFusionError::Internal(m) if m.contains("to spill") => {
            DataFusionError::ResourcesExhausted(format!(
                "the query needs more memory than queries may hold (server.query_memory_mb): a join \
                 without an equality condition multiplies its inputs' rows; add one, or narrow the \
                 inputs ({m})"
            ))
        }
        _ => e,
    }
}

/// Executes `df` on the query runtime and collects its batches.
pub async fn collect(df: DataFrame) -> Result<Vec<arrow::array::RecordBatch>, DataFusionError> {
    let mut stream = execute(df);
    let mut out = Vec::new();
    while let Some(b) = stream.next().await {
        out.push(b?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_busy_query_leaves_the_serving_runtime_free() {
        let ctx = datafusion::prelude::SessionContext::new();
        let df = ctx
            .sql(
                "SELECT count(*) FROM generate_series(1, 3000) a, generate_series(1, 3000) b \
                 WHERE a.value + b.value <> 7",
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut stream = execute(df);
        // The serving runtime has one thread; timers on it fire while the query runs (run on
        // this thread, the query's first poll would hold it until the count was done).
        let ticks = async {
            for _ in 0..5 {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        };
        tokio::select! {
            biased;
            () = ticks => {}
            _ = stream.next() => panic!("the query finished before five 1 ms timers"),
        }
        assert!(matches!(stream.next().await, Some(Ok(_))));
    }

    #[tokio::test]
    async fn a_panic_in_the_engine_is_an_error_not_an_empty_result() {
        use datafusion::logical_expr::{Volatility, create_udf};
        let ctx = session_context();
        ctx.register_udf(create_udf(
            "boom",
            vec![arrow::datatypes::DataType::Int64],
            arrow::datatypes::DataType::Int64,
            Volatility::Volatile,
            Arc::new(|_| panic!("boom at row 1")),
        ));
        let df = ctx
            .sql("SELECT boom(value) FROM generate_series(1, 10)")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let e = collect(df).await.unwrap_err().to_string();
        assert!(e.contains("boom at row 1"), "{e}");
    }

    #[tokio::test]
    async fn a_query_past_its_memory_pool_fails_instead_of_growing() {
        let ctx = SessionContext::new_with_state(session_state(
            SessionConfig::new(),
            memory_limited(8 << 20),
        ));
        // A distinct count holds every distinct value and cannot spill: 2 million strings of
        // 100 bytes need far more than 8 MiB.
        let df = ctx
            .sql(
                "SELECT count(DISTINCT concat(CAST(value AS VARCHAR), repeat('x', 100))) \
                 FROM generate_series(1, 2000000)",
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let e = collect(df).await.unwrap_err();
        assert!(
            matches!(e.find_root(), DataFusionError::ResourcesExhausted(_)),
            "{e}"
        );
        // The same query within a pool that holds it.
        let ctx = SessionContext::new_with_state(session_state(
            SessionConfig::new(),
            memory_limited(1 << 30),
        ));
        let df = ctx
            .sql("SELECT count(DISTINCT value % 1000) FROM generate_series(1, 200000)")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(collect(df).await.unwrap()[0].num_rows(), 1);
    }
}

/// Makes joins yield: a join can turn one input batch into millions of rows without waiting on
/// its inputs, so the cooperative wrappers DataFusion puts over scans are not reached for a
/// long time. Wrapped, each join's output draws on the task's budget, the task yields now and
/// then, and a cancelled query's task stops at its next yield instead of running to the end.
#[derive(Debug, Default)]
pub struct YieldingJoins;

impl datafusion::physical_optimizer::PhysicalOptimizerRule for YieldingJoins {
    fn optimize(
        &self,
        plan: std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>,
        _config: &datafusion::config::ConfigOptions,
    ) -> datafusion::error::Result<std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>>
    {
        use datafusion::common::tree_node::{Transformed, TreeNode};
        use datafusion::physical_plan::coop::CooperativeExec;
        use datafusion::physical_plan::joins::{
            CrossJoinExec, HashJoinExec, NestedLoopJoinExec, SortMergeJoinExec,
            SymmetricHashJoinExec,
        };
        plan.transform_up(|p| {
            let join = p.is::<NestedLoopJoinExec>()
                || p.is::<CrossJoinExec>()
                || p.is::<HashJoinExec>()
                || p.is::<SortMergeJoinExec>()
                || p.is::<SymmetricHashJoinExec>();
            Ok(if join {
                Transformed::yes(std::sync::Arc::new(CooperativeExec::new(p))
                    as std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>)
            } else {
                Transformed::no(p)
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "YieldingJoins"
    }

    fn schema_check(&self) -> bool {
        true
    }
}
