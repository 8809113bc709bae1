//! The stuck-trace sweeper on the real services: it repairs traces from
//! database outcomes, waits while the consumer group is behind, and fails a
//! trace whose record is provably gone as LOST — for good.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::stack::{env, Stack};
use oms::application::{OrderService, SweepPolicy, SweepReport, TraceSweeper};
use oms::domain::{
    FailureReason, MemberId, OrderCommand, OrderTrace, ProductDraft, ProductId, TraceState,
};
use oms::kafka::{ensure_topics, KafkaBacklog, KafkaOrderConsumer, KafkaOrderPublisher};
use oms::mysql::MySqlStore;
use oms::port::outbound::{OrderRequestPublisher, OrderStore, ProductStore, TraceStore};
use oms::redis::{RedisTraceOptions, RedisTraceStore};

fn command(product: ProductId) -> OrderCommand {
    oms_core::testkit::command(MemberId(7), &[(product, 1)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_traces_are_repaired_or_failed_as_lost() {
    if !common::real_stack() {
        return;
    }
    let stack = Stack::configure();
    let kafka = stack.kafka();
    ensure_topics(&kafka).await.unwrap();
    let store = Arc::new(MySqlStore::connect(&env("OMS_DATABASE_URL")).await.unwrap());
    store.migrate().await.unwrap();
    // A key prefix of its own: the sweeper sees only this run's traces.
    let traces = Arc::new(
        RedisTraceStore::connect(&env("OMS_REDIS_URL"))
            .await
            .unwrap()
            .with_options(RedisTraceOptions {
                prefix: format!("oms-sweep-{}", stack.run),
                ..RedisTraceOptions::default()
            }),
    );
    let publisher = Arc::new(KafkaOrderPublisher::new(&kafka).unwrap());
    let product = ProductId(u64::from(uuid::Uuid::new_v4().as_fields().0) + 1_000_000);
    store
        .create(
            &ProductDraft {
                name: "Sweep".into(),
                price: 100,
                stock: 5,
                rules: Default::default(),
            }
            .into_product(product),
        )
        .await
        .unwrap();
    let sweeper = TraceSweeper::new(
        traces.clone(),
        store.clone(),
        Arc::new(KafkaBacklog::new(&kafka).unwrap()),
        publisher.clone(),
        SweepPolicy::after(Duration::ZERO),
    );

    // Placed, but the consumer died before it cached the final trace.
    let placed = command(product);
    let outcome = store
        .place_batch(std::slice::from_ref(&placed))
        .await
        .unwrap()[0]
        .trace;
    traces
        .save(&OrderTrace::processing(placed.trace_id, placed.member_id))
        .await
        .unwrap();
    // Queued, not consumed yet.
    let queued = command(product);
    traces
        .save(&OrderTrace::processing(queued.trace_id, queued.member_id))
        .await
        .unwrap();
    publisher.send(&queued).await.unwrap();
    // Accepted, but the API died before it queued the record.
    let gone = command(product);
    traces
        .save(&OrderTrace::processing(gone.trace_id, gone.member_id))
        .await
        .unwrap();

    let report = sweeper.sweep().await.unwrap();
    assert_eq!(
        report,
        SweepReport {
            stuck: 3,
            repaired: 1,
            lost: 0,
            waiting: 2
        },
        "the group is behind: nothing is failed"
    );
    assert_eq!(traces.get(placed.trace_id).await.unwrap(), Some(outcome));

    // A consumer drains the topic.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let consumer = KafkaOrderConsumer::new(&kafka).unwrap();
    let service = Arc::new(OrderService::new(
        store.clone(),
        traces.clone(),
        publisher.clone(),
    ));
    let running = tokio::spawn(consumer.run(service, async move {
        let _ = stopped.await;
    }));
    stack.wait_drained(Duration::from_secs(30)).await;
    assert!(matches!(
        traces.get(queued.trace_id).await.unwrap().unwrap().state,
        TraceState::Completed { .. }
    ));

    let report = sweeper.sweep().await.unwrap();
    assert_eq!(
        report,
        SweepReport {
            stuck: 1,
            repaired: 0,
            lost: 1,
            waiting: 0
        }
    );
    let lost = TraceState::Failed {
        reason: FailureReason::Lost,
    };
    assert_eq!(
        traces.get(gone.trace_id).await.unwrap().unwrap().state,
        lost
    );
    assert_eq!(
        store.outcome(gone.trace_id).await.unwrap().unwrap().state,
        lost
    );
    let dead = stack.dead_letters(1).await;
    assert_eq!(dead, vec![(gone.trace_id.to_string(), "LOST".to_owned())]);

    // A late record of the lost order changes nothing.
    publisher.send(&gone).await.unwrap();
    stack.wait_drained(Duration::from_secs(30)).await;
    assert_eq!(
        store.outcome(gone.trace_id).await.unwrap().unwrap().state,
        lost
    );
    assert_eq!(store.get(product).await.unwrap().unwrap().stock, 3);
    assert_eq!(
        traces.get(gone.trace_id).await.unwrap().unwrap().state,
        lost
    );
    assert_eq!(sweeper.sweep().await.unwrap(), SweepReport::default());
    assert_eq!(
        stack.record_count(&stack.dlq_topic),
        1,
        "no second DLQ record"
    );
    let _ = stop.send(());
    running.await.unwrap().unwrap();
}
