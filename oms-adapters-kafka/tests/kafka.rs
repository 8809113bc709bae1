//! The Kafka adapters against a real Kafka-protocol broker
//! (`scripts/services.sh up`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use oms_adapters_kafka::{
    ensure_topics, KafkaBacklog, KafkaConfig, KafkaOrderConsumer, KafkaOrderPublisher,
    HEADER_FAILED_AT, HEADER_REASON, HEADER_TRACE_ID,
};
use oms_core::domain::{
    FailureReason, OmsError, OmsResult, OrderCommand, Placement, ProductId, TraceId,
};
use oms_core::port::inbound::OrderUseCase;
use oms_core::port::outbound::{
    encode_command, DeadLetter, HealthCheck, OrderBacklog, OrderRequestPublisher,
};
use oms_core::testkit::{command, random_member_id};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message};
use tokio::sync::oneshot;

fn brokers() -> String {
    std::env::var("OMS_KAFKA_BROKERS").unwrap_or_else(|_| {
        panic!("OMS_KAFKA_BROKERS is not set: run `scripts/services.sh up && source target/services.env`")
    })
}

async fn config() -> KafkaConfig {
    let run = TraceId::new();
    let mut config = KafkaConfig::new(brokers());
    config.order_topic = format!("test-orders-{run}");
    config.dlq_topic = format!("test-dlq-{run}");
    config.group = format!("test-group-{run}");
    config.partitions = 3;
    ensure_topics(&config).await.unwrap();
    config
}

/// Records what it is given; rejects go to the DLQ through the publisher.
struct Recorder {
    seen: Mutex<Vec<OrderCommand>>,
    dlq: KafkaOrderPublisher,
}

#[async_trait]
impl OrderUseCase for Recorder {
    async fn process(&self, batch: Vec<OrderCommand>) -> OmsResult<Vec<Placement>> {
        self.seen.lock().unwrap().extend(batch);
        Ok(Vec::new())
    }

    async fn reject(&self, letter: DeadLetter) -> OmsResult<()> {
        self.dlq.send_to_dlq(&letter).await
    }
}

/// Reads `topic` from the start until `count` records arrived (or panics
/// after 30 s).
async fn read(topic: &str, count: usize) -> Vec<OwnedMessage> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", format!("reader-{}", TraceId::new()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut out = Vec::new();
    while out.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, consumer.recv()).await {
            Ok(Ok(m)) => out.push(m.detach()),
            Ok(Err(e)) => panic!("{e}"),
            Err(_) => panic!("only {} of {count} records on {topic}", out.len()),
        }
    }
    out
}

fn header(m: &OwnedMessage, name: &str) -> Option<String> {
    let headers = m.headers()?;
    headers
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumes_in_batches_dead_letters_poison_and_commits_offsets() {
    let config = config().await;
    let publisher = KafkaOrderPublisher::new(&config).unwrap();
    publisher.check().await.unwrap();
    let sent: Vec<_> = (0..50)
        .map(|i| command(random_member_id(), &[(ProductId(1 + i % 4), 1)]))
        .collect();
    for c in &sent {
        publisher.send(c).await.unwrap();
    }
    let raw: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .unwrap();
    let poison: [&[u8]; 3] = [b"not json", br#"{"traceId": 5}"#, b"\xff\xfe"];
    for p in poison {
        raw.send(
            FutureRecord::to(&config.order_topic).key("1").payload(p),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    }

    let backlog = KafkaBacklog::new(&config).unwrap();
    assert!(backlog.pending().await.unwrap() > 0, "nothing consumed yet");

    let recorder = Arc::new(Recorder {
        seen: Mutex::new(Vec::new()),
        dlq: publisher.clone(),
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let consumer = KafkaOrderConsumer::new(&config).unwrap();
    let task = tokio::spawn(consumer.run(recorder.clone(), async move {
        let _ = stopped.await;
    }));
    wait_until("50 commands", || recorder.seen.lock().unwrap().len() >= 50).await;
    let dead = read(&config.dlq_topic, 3).await;
    let mut payloads: Vec<Vec<u8>> = dead.iter().map(|m| m.payload().unwrap().to_vec()).collect();
    payloads.sort();
    let mut expected: Vec<Vec<u8>> = poison.iter().map(|p| p.to_vec()).collect();
    expected.sort();
    assert_eq!(payloads, expected, "original bytes in the DLQ");
    for m in &dead {
        assert_eq!(header(m, HEADER_REASON).as_deref(), Some("POISON"));
        assert!(
            chrono::DateTime::parse_from_rfc3339(&header(m, HEADER_FAILED_AT).unwrap()).is_ok()
        );
        assert_eq!(m.key(), Some(&b"1"[..]));
    }
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
    let mut seen: Vec<_> = recorder
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|c| c.trace_id)
        .collect();
    let mut want: Vec<_> = sent.iter().map(|c| c.trace_id).collect();
    seen.sort();
    want.sort();
    assert_eq!(seen, want, "each command exactly once");
    assert_eq!(backlog.pending().await.unwrap(), 0, "all committed");

    // A new member of the group starts after the committed offsets: it sees
    // only what is sent now.
    let later = command(random_member_id(), &[(ProductId(2), 1)]);
    publisher.send(&later).await.unwrap();
    assert_eq!(backlog.pending().await.unwrap(), 1);
    let second = Arc::new(Recorder {
        seen: Mutex::new(Vec::new()),
        dlq: publisher.clone(),
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(KafkaOrderConsumer::new(&config).unwrap().run(
        second.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    wait_until("the later command", || {
        !second.seen.lock().unwrap().is_empty()
    })
    .await;
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
    let seen = second.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "nothing redelivered after a clean shutdown");
    assert_eq!(seen[0], later);
    assert_eq!(backlog.pending().await.unwrap(), 0);
}

#[tokio::test]
async fn dead_letters_keep_key_value_and_reason() {
    let config = config().await;
    let publisher = KafkaOrderPublisher::new(&config).unwrap();
    let c = command(random_member_id(), &[(ProductId(9), 1), (ProductId(3), 2)]);
    let letter = DeadLetter::for_command(&c, FailureReason::OutOfStock).unwrap();
    publisher.send_to_dlq(&letter).await.unwrap();
    let got = read(&config.dlq_topic, 1).await;
    assert_eq!(
        got[0].payload(),
        Some(encode_command(&c).unwrap().as_slice())
    );
    assert_eq!(
        got[0].key(),
        Some(&b"3"[..]),
        "key: the smallest product id"
    );
    assert_eq!(
        header(&got[0], HEADER_REASON).as_deref(),
        Some("OUT_OF_STOCK")
    );
    assert_eq!(
        header(&got[0], HEADER_TRACE_ID),
        Some(c.trace_id.to_string())
    );
}

#[tokio::test]
async fn orders_of_the_same_product_share_a_partition() {
    let config = config().await;
    let publisher = KafkaOrderPublisher::new(&config).unwrap();
    for i in 0..30 {
        let lines = [(ProductId(7), 1), (ProductId(100 + i), 1)];
        publisher
            .send(&command(random_member_id(), &lines))
            .await
            .unwrap();
    }
    let got = read(&config.order_topic, 30).await;
    let partitions: std::collections::HashSet<i32> = got.iter().map(|m| m.partition()).collect();
    assert_eq!(partitions.len(), 1, "{partitions:?}");
    assert!(got.iter().all(|m| m.key() == Some(&b"7"[..])));
}

#[tokio::test]
async fn an_unreachable_broker_fails_the_send_within_five_seconds() {
    let mut config = KafkaConfig::new("127.0.0.1:1");
    config.order_topic = "nowhere".into();
    let publisher = KafkaOrderPublisher::new(&config).unwrap();
    let started = Instant::now();
    let r = publisher
        .send(&command(random_member_id(), &[(ProductId(1), 1)]))
        .await;
    assert!(matches!(r, Err(OmsError::Unavailable { .. })), "{r:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(publisher.check().await.is_err());
}

/// A group whose committed offset falls inside a producer batch (as after a
/// rebalance) still gets every record from that offset on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_inside_a_producer_batch_skips_nothing() {
    use rdkafka::consumer::{BaseConsumer, CommitMode};
    use rdkafka::{Offset, TopicPartitionList};

    let config = config().await;
    let batching: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("linger.ms", "100")
        .create()
        .unwrap();
    let sent: Vec<_> = (0..50)
        .map(|_| command(random_member_id(), &[(ProductId(1), 1)]))
        .collect();
    let deliveries = futures::future::join_all(sent.iter().map(|c| {
        let value = encode_command(c).unwrap();
        let batching = batching.clone();
        let topic = config.order_topic.clone();
        async move {
            batching
                .send(
                    FutureRecord::to(&topic).key("1").payload(&value),
                    Duration::from_secs(5),
                )
                .await
                .unwrap()
        }
    }))
    .await;
    let partition = deliveries[0].partition;
    let mut offsets: Vec<i64> = deliveries.iter().map(|d| d.offset).collect();
    offsets.sort_unstable();
    assert_eq!(
        offsets,
        (0..50).collect::<Vec<_>>(),
        "one partition, in order"
    );

    // The group has finished the first 25.
    let committer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", &config.group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&config.order_topic, partition, Offset::Offset(25))
        .unwrap();
    committer.commit(&tpl, CommitMode::Sync).unwrap();
    drop(committer);
    let backlog = KafkaBacklog::new(&config).unwrap();
    assert!(
        backlog.pending().await.unwrap() > 0,
        "the records past the committed offset are pending"
    );

    let recorder = Arc::new(Recorder {
        seen: Mutex::new(Vec::new()),
        dlq: KafkaOrderPublisher::new(&config).unwrap(),
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(KafkaOrderConsumer::new(&config).unwrap().run(
        recorder.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    let by_offset: std::collections::HashMap<i64, TraceId> = deliveries
        .iter()
        .zip(&sent)
        .map(|(d, c)| (d.offset, c.trace_id))
        .collect();
    let want: std::collections::HashSet<TraceId> = (25..50).map(|o| by_offset[&o]).collect();
    wait_until("records 25 to 49", || {
        let seen: std::collections::HashSet<TraceId> = recorder
            .seen
            .lock()
            .unwrap()
            .iter()
            .map(|c| c.trace_id)
            .collect();
        want.is_subset(&seen)
    })
    .await;
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
    assert_eq!(backlog.pending().await.unwrap(), 0);
}
