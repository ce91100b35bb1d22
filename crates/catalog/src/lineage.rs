//! Dataset-level lineage from what the catalog recorded: every source that loaded a dataset
//! (each distinct source of its runs that did not fail), the quarantine table its rejected and
//! blocked rows went to, and the quality table its check runs wrote. Models that derive datasets from others will add their
//! edges here as they arrive.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::model::Dataset;
use crate::{Catalog, Result};

/// What a node of the graph is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    /// Where rows came from: files, a source definition, a database table, a stream.
    Source,
    Dataset,
    Quarantine,
    Quality,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Node {
    pub id: String,
    pub kind: NodeKind,
    pub label: String,
    /// For datasets: the title.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub title: String,
}

/// An edge: rows flowed from `from` to `to`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Edge {
    pub from: String,
    pub to: String,
    /// `load`, `quarantine` or `check`.
    pub kind: String,
    /// How many runs (collection or check runs) made it.
    pub runs: i64,
    /// Rows it carried over those runs (loaded, quarantined, or failing rows).
    pub rows: i64,
    pub last_at: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Lineage {
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

impl Catalog {
    /// The lineage of one dataset (its upstream and downstream), or of the whole catalog.
    pub async fn lineage(&self, dataset: Option<&Dataset>) -> Result<Lineage> {
        let datasets: BTreeMap<i64, Dataset> = match dataset {
            Some(d) => BTreeMap::from([(d.id, d.clone())]),
            None => self
                .datasets(&Default::default())
                .await?
                .into_iter()
                .map(|d| (d.id, d))
                .collect(),
        };
        let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
        let mut edges = Vec::new();
        let runs = sqlx::query(
            "SELECT dataset_id, source, COUNT(*), CAST(COALESCE(SUM(rows_loaded), 0) AS BIGINT),
                    CAST(COALESCE(SUM(rows_quarantined), 0) AS BIGINT), MAX(started_at)
             FROM runs WHERE status <> 'failed'
             GROUP BY dataset_id, source ORDER BY dataset_id, source",
        )
        .fetch_all(self.pool())
        .await?;
        let checks = sqlx::query(
            "SELECT dataset_id, COUNT(*), CAST(COALESCE(SUM(rows_failed), 0) AS BIGINT),
                    MAX(finished_at), CAST(COALESCE(SUM(rows_blocked), 0) AS BIGINT)
             FROM check_runs GROUP BY dataset_id",
        )
        .fetch_all(self.pool())
        .await?;
        let dataset_node = |d: &Dataset| Node {
            id: d.qualified_name(),
            kind: NodeKind::Dataset,
            label: d.qualified_name(),
            title: d.title.clone(),
        };
        for d in datasets.values() {
            nodes.insert(d.qualified_name(), dataset_node(d));
        }
        let mut quarantined: BTreeMap<i64, (i64, i64, Option<String>)> = BTreeMap::new();
        for r in &runs {
            let id: i64 = r.try_get(0)?;
            let Some(d) = datasets.get(&id) else { continue };
            let source: String = r.try_get(1)?;
            let count: i64 = r.try_get(2)?;
            let loaded: i64 = r.try_get(3)?;
            let rejected: i64 = r.try_get(4)?;
            let last: Option<String> = r.try_get(5)?;
            let source_id = format!("source:{source}");
            nodes.entry(source_id.clone()).or_insert_with(|| Node {
                id: source_id.clone(),
                kind: NodeKind::Source,
                label: source.clone(),
                title: String::new(),
            });
            edges.push(Edge {
                from: source_id,
                to: d.qualified_name(),
                kind: "load".into(),
                runs: count,
                rows: loaded,
                last_at: last.clone(),
            });
            if rejected > 0 {
                let q = quarantined.entry(id).or_insert((0, 0, None));
                q.0 += count;
                q.1 += rejected;
                q.2 = q.2.clone().max(last);
            }
        }
        for r in &checks {
            let blocked: i64 = r.try_get(4)?;
            if blocked > 0 {
                let q = quarantined.entry(r.try_get(0)?).or_insert((0, 0, None));
                q.0 += r.try_get::<i64, _>(1)?;
                q.1 += blocked;
                q.2 = q.2.clone().max(r.try_get(3)?);
            }
        }
        for (id, (count, rows, last)) in quarantined {
            let Some(d) = datasets.get(&id) else { continue };
            let q = format!("quarantine.{}.{}", d.unit_id, d.name);
            nodes.insert(
                q.clone(),
                Node {
                    id: q.clone(),
                    kind: NodeKind::Quarantine,
                    label: q.clone(),
                    title: String::new(),
                },
            );
            edges.push(Edge {
                from: d.qualified_name(),
                to: q,
                kind: "quarantine".into(),
                runs: count,
                rows,
                last_at: last,
            });
        }
        for r in &checks {
            let id: i64 = r.try_get(0)?;
            let Some(d) = datasets.get(&id) else { continue };
            let q = format!("quality.{}.{}", d.unit_id, d.name);
            nodes.insert(
                q.clone(),
                Node {
                    id: q.clone(),
                    kind: NodeKind::Quality,
                    label: q.clone(),
                    title: String::new(),
                },
            );
            edges.push(Edge {
                from: d.qualified_name(),
                to: q,
                kind: "check".into(),
                runs: r.try_get(1)?,
                rows: r.try_get(2)?,
                last_at: r.try_get(3)?,
            });
        }
        Ok(Lineage {
            nodes: nodes.into_values().collect(),
            edges,
        })
    }
}
