//! Collection from the real NATS JetStream server on the machine (`RESERVOIR_TEST_NATS_URL`,
//! default nats://127.0.0.1:4222): messages published to a stream appear in the lake in
//! micro-batches, exactly once, with bad messages quarantined, new keys added as columns and
//! the lag reported.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use reservoir_ingest::nats::{NatsRequest, NatsSource};
use reservoir_ingest::{Collector, ColumnSpec, ColumnType, DatasetInfo, NoProgress, RunReport};
use reservoir_lake::{Layer, TableRef};
use reservoir_testkit::LakeHome;

fn nats_url() -> String {
    std::env::var("RESERVOIR_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// A temporary lake and catalog (`testkit::LakeHome`) with this file's helpers.
struct Env(LakeHome);

impl std::ops::Deref for Env {
    type Target = LakeHome;
    fn deref(&self) -> &LakeHome {
        &self.0
    }
}

impl Env {
    async fn new() -> Self {
        Self(LakeHome::new().await)
    }

    async fn sync(&self, source: NatsSource) -> RunReport {
        Collector::new(self.lake.clone(), self.catalog.clone())
            .sync_nats(
                NatsRequest {
                    unit: "hotline".into(),
                    dataset: "cases".into(),
                    source,
                    columns: vec![ColumnSpec {
                        name: "opened_at".into(),
                        ty: Some(ColumnType::Timestamp),
                        title: "受理时间".into(),
                        description: String::new(),
                    }],
                    info: DatasetInfo::default(),
                    source_label: String::new(),
                    profile: false,
                },
                Arc::new(NoProgress),
            )
            .await
            .unwrap()
    }
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

#[tokio::test]
async fn jetstream_messages_reach_the_lake_exactly_once() {
    let url = nats_url();
    let client = async_nats::connect(&url).await.unwrap_or_else(|e| {
        panic!(
            "cannot reach NATS at {url} ({e}); start nats-server -js or set RESERVOIR_TEST_NATS_URL"
        )
    });
    let js = jetstream::new(client);
    let id = uuid::Uuid::new_v4().simple().to_string();
    let stream_name = format!("RESERVOIR_TEST_{id}");
    let subject = format!("reservoir.test.{id}.cases");
    js.create_stream(jetstream::stream::Config {
        name: stream_name.clone(),
        subjects: vec![format!("reservoir.test.{id}.>")],
        ..Default::default()
    })
    .await
    .unwrap();
    let publish = |payload: String| {
        let js = js.clone();
        let subject = subject.clone();
        async move {
            js.publish(subject, payload.into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
    };
    // 25 cases, a message that is not JSON and one that is not an object.
    for i in 1..=25 {
        publish(format!(
            r#"{{"case_id": {i}, "street": "岳阳街道", "opened_at": "2024-01-01 08:00:{i:02}", "tags": ["噪音"]}}"#
        ))
        .await;
        if i == 12 {
            publish("not json".into()).await;
            publish("[1, 2]".into()).await;
        }
    }
    let env = Env::new().await;
    let source = NatsSource {
        url: url.clone(),
        stream: stream_name.clone(),
        subject: None,
        batch_rows: 10,
        max_wait: Duration::from_millis(500),
        max_batches: None,
    };
    let r = env.sync(source.clone()).await;
    assert_eq!(
        (
            r.counts.rows_read,
            r.counts.rows_loaded,
            r.counts.rows_quarantined
        ),
        (27, 25, 2)
    );
    let table = TableRef::new(Layer::Raw, "hotline", "cases");
    let app = "reservoir:hotline.cases";
    // Micro-batches of ten: the transaction version is the stream sequence reached.
    assert_eq!(
        env.lake
            .app_commit(&table, app)
            .await
            .unwrap()
            .unwrap()
            .version,
        27
    );
    assert!(
        r.notes.iter().any(|n| n.contains("lag 0 messages")),
        "{:?}",
        r.notes
    );
    assert_eq!(
        env.rows("SELECT case_id, street, CAST(opened_at AS VARCHAR), tags, _source_row FROM raw.hotline.cases WHERE case_id IN (1, 13) ORDER BY case_id")
            .await,
        [
            [s("1"), s("岳阳街道"), s("2024-01-01T08:00:01"), s(r#"["噪音"]"#), s("1")],
            [s("13"), s("岳阳街道"), s("2024-01-01T08:00:13"), s(r#"["噪音"]"#), s("15")]
        ]
    );
    let q = env
        .rows("SELECT _source_row, raw, reason FROM quarantine.hotline.cases ORDER BY _source_row")
        .await;
    assert_eq!(q.len(), 2, "{q:?}");
    assert_eq!(q[0][1], s("not json"));
    assert!(
        q[0][2]
            .as_deref()
            .unwrap()
            .starts_with("message is not JSON"),
        "{q:?}"
    );
    assert!(
        q[1][2]
            .as_deref()
            .unwrap()
            .contains("not an object (a array)"),
        "{q:?}"
    );

    // Nothing new: nothing read, no commit.
    let r = env.sync(source.clone()).await;
    assert_eq!(r.counts.rows_read, 0);
    assert!(
        r.notes.iter().any(|n| n.contains("no new messages")),
        "{:?}",
        r.notes
    );

    // Fifteen more, with a key never seen before; one micro-batch per run leaves a lag.
    for i in 26..=40 {
        publish(format!(
            r#"{{"case_id": {i}, "street": "方松街道", "opened_at": "2024-01-02 09:00:00", "priority": 2}}"#
        ))
        .await;
    }
    let mut one = source.clone();
    one.max_batches = Some(1);
    let r = env.sync(one.clone()).await;
    assert_eq!(r.counts.rows_loaded, 10);
    assert!(
        r.notes.iter().any(|n| n.contains("lag 5 messages")),
        "{:?}",
        r.notes
    );
    let dataset = env
        .catalog
        .dataset("raw", "hotline", "cases")
        .await
        .unwrap()
        .unwrap();
    let drift = env.catalog.drift_events(dataset.id).await.unwrap();
    assert!(
        drift
            .iter()
            .any(|e| e.column_name == "priority" && e.change == "added"),
        "{drift:?}"
    );
    let run = env.catalog.run(r.run_id).await.unwrap().unwrap();
    assert_eq!(run.details["lag_messages"], 5);
    let r = env.sync(one).await;
    assert_eq!(r.counts.rows_loaded, 5);
    assert_eq!(
        env.rows(
            "SELECT count(*), count(DISTINCT case_id), count(priority) FROM raw.hotline.cases"
        )
        .await,
        [[s("40"), s("40"), s("15")]]
    );
    js.delete_stream(&stream_name).await.unwrap();
}
