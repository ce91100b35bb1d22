//! Where queries run: DataFusion's CPU-heavy work on a runtime of its own, apart from the
//! runtime that serves clients.
//!
//! A join or an aggregate over a large table keeps its threads busy between two awaits for as
//! long as it has input. On the runtime that accepts connections, reads requests and answers
//! cancel requests, two such queries on a two-core machine would stall everything else. Here
//! the plan executes on the query runtime and hands its batches over a small channel: the
//! serving side only awaits the channel, stays responsive, and stops a query by dropping its
//! stream (which aborts the query's task).

use std::sync::OnceLock;

use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::DataFrame;
use futures::StreamExt;

/// The query runtime: one worker per core, threads named `reservoir-query`.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("reservoir-query")
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
        let mut stream = match df.execute_stream().await {
            Ok(s) => s,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        while let Some(batch) = stream.next().await {
            if tx.send(batch).await.is_err() {
                // The reader went away: stop.
                return;
            }
        }
    });
    let guard = AbortOnDrop(task);
    let batches = futures::stream::unfold((rx, guard), |(mut rx, guard)| async move {
        rx.recv().await.map(|b| (b, (rx, guard)))
    });
    Box::pin(RecordBatchStreamAdapter::new(schema, batches))
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
