//! The Kafka adapters against a real Kafka-protocol broker
//! (`scripts/services.sh up`: tansu, or librdkafka's mock cluster with
//! `OMS_BROKER=mock`), and against an in-process mock cluster where a test
//! needs what the broker cannot do (move the log start).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use oms_adapters_kafka::{
    ensure_topics, KafkaBacklog, KafkaConfig, KafkaOrderConsumer, KafkaOrderPublisher,
    HEADER_EVENT_ID, HEADER_EVENT_TYPE, HEADER_FAILED_AT, HEADER_REASON, HEADER_TRACE_ID,
};
use oms_core::domain::{
    FailureReason, MemberId, OmsError, OmsResult, OrderCommand, OrderEvent, OrderId, OrderStatus,
    Placement, ProductId, TraceId,
};
use oms_core::port::inbound::OrderUseCase;
use oms_core::port::outbound::{
    encode_command, DeadLetter, HealthCheck, OrderBacklog, OrderEventPublisher,
    OrderRequestPublisher,
};
use oms_core::testkit::{command, random_id, random_member_id};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, OwnedMessage};
use rdkafka::producer::future_producer::Delivery;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message};
use tokio::sync::oneshot;

fn brokers() -> String {
    std::env::var("OMS_KAFKA_BROKERS").unwrap_or_else(|_| {
        panic!("OMS_KAFKA_BROKERS is not set: run `scripts/services.sh up && source target/services.env`")
    })
}

/// `OMS_KAFKA_REWIND_ON_GAP` of `target/services.env` (on for tansu).
fn rewind_on_gap() -> bool {
    matches!(
        std::env::var("OMS_KAFKA_REWIND_ON_GAP")
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
            .as_str(),
        "on" | "1" | "true"
    )
}

/// Creates topics through the control port of the mock broker
/// (`OMS_MOCK_CONTROL`, set by `OMS_BROKER=mock scripts/services.sh up`),
/// which does not answer `CreateTopics`; does nothing on other brokers.
fn create_on_mock(topics: &[(&str, i32)]) {
    use std::io::{BufRead, BufReader, Write};
    let Ok(control) = std::env::var("OMS_MOCK_CONTROL") else {
        return;
    };
    let stream = std::net::TcpStream::connect(control.trim()).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    for (topic, partitions) in topics {
        writeln!(writer, "create {topic} {partitions}").unwrap();
        let mut answer = String::new();
        reader.read_line(&mut answer).unwrap();
        assert_eq!(answer.trim(), "ok", "mock broker: {answer}");
    }
}

async fn config() -> KafkaConfig {
    let run = TraceId::new();
    let mut config = KafkaConfig::new(brokers());
    config.order_topic = format!("test-orders-{run}");
    config.dlq_topic = format!("test-dlq-{run}");
    config.events_topic = format!("test-events-{run}");
    config.group = format!("test-group-{run}");
    config.partitions = 3;
    config.rewind_on_gap = rewind_on_gap();
    create_on_mock(&[
        (&config.order_topic, 3),
        (&config.dlq_topic, 3),
        (&config.events_topic, 3),
    ]);
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
    if !oms_core::testkit::services::services_set(&["OMS_KAFKA_BROKERS"]) {
        return;
    }
    let config = config().await;
    let publisher = KafkaOrderPublisher::new(&config).unwrap();
    publisher.check().await.unwrap();
    publisher.warm().await.unwrap();
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
    if !oms_core::testkit::services::services_set(&["OMS_KAFKA_BROKERS"]) {
        return;
    }
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
    if !oms_core::testkit::services::services_set(&["OMS_KAFKA_BROKERS"]) {
        return;
    }
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

/// Every order record carries its trace id and the W3C `traceparent` made
/// from it, so the consumer's spans join the api's.
#[tokio::test]
async fn order_records_carry_their_trace_context() {
    if !oms_core::testkit::services::services_set(&["OMS_KAFKA_BROKERS"]) {
        return;
    }
    let config = config().await;
    let publisher = KafkaOrderPublisher::new(&config).unwrap();
    let sent: Vec<_> = (0..5)
        .map(|i| command(random_member_id(), &[(ProductId(200 + i), 1)]))
        .collect();
    for c in &sent {
        publisher.send(c).await.unwrap();
    }
    let got = read(&config.order_topic, sent.len()).await;
    assert_eq!(got.len(), sent.len());
    for m in &got {
        let command = oms_core::port::outbound::decode_command(m.payload().unwrap()).unwrap();
        assert!(sent.iter().any(|c| c.trace_id == command.trace_id));
        assert_eq!(
            header(m, oms_adapters_kafka::HEADER_TRACE_ID),
            Some(command.trace_id.to_string())
        );
        let parent = header(m, oms_adapters_kafka::HEADER_TRACEPARENT).unwrap();
        assert_eq!(parent, command.trace_id.traceparent());
        assert_eq!(
            oms_core::domain::TraceId::from_traceparent(&parent),
            Some(command.trace_id)
        );
    }
}

/// The publisher's own bound on a send (`SEND_BOUND` in
/// `src/publisher.rs`): librdkafka gives up on a record after its 3 s
/// message timeout, which it checks about once a second, and the adapter
/// stops waiting after 4.5 s whatever librdkafka does.
const SEND_BOUND: Duration = Duration::from_millis(4500);
/// What a send may take beyond its bound here: the timer firing late and
/// the task being scheduled again on a busy 2-core machine.
const SEND_MARGIN: Duration = Duration::from_millis(1500);

#[tokio::test]
async fn an_unreachable_broker_fails_the_send_within_its_bound() {
    let mut config = KafkaConfig::new("127.0.0.1:1");
    config.order_topic = "nowhere".into();
    let publisher = KafkaOrderPublisher::new(&config).unwrap();
    let started = Instant::now();
    let r = publisher
        .send(&command(random_member_id(), &[(ProductId(1), 1)]))
        .await;
    assert!(matches!(r, Err(OmsError::Unavailable { .. })), "{r:?}");
    assert!(
        started.elapsed() < SEND_BOUND + SEND_MARGIN,
        "{:?}",
        started.elapsed()
    );
    assert!(publisher.check().await.is_err());
    assert!(
        publisher.warm().await.is_err(),
        "nothing to warm up against"
    );

    config.events_topic = "nowhere-events".into();
    let publisher = KafkaOrderPublisher::new(&config).unwrap();
    let started = Instant::now();
    let r = publisher
        .publish(&[event(
            1,
            OrderId(1),
            OrderStatus::PendingPayment,
            OrderStatus::Paid,
        )])
        .await;
    assert!(matches!(r, Err(OmsError::Unavailable { .. })), "{r:?}");
    assert!(
        started.elapsed() < SEND_BOUND + SEND_MARGIN,
        "{:?}",
        started.elapsed()
    );
}

fn event(event_id: u64, order_id: OrderId, from: OrderStatus, to: OrderStatus) -> OrderEvent {
    OrderEvent {
        event_id,
        order_id,
        member_id: MemberId(7),
        from,
        to,
        at: chrono::Utc::now(),
    }
}

/// Each event is one record keyed by its order id, its JSON the value, its
/// id and type in headers; the events of an order stay in order on one
/// partition.
#[tokio::test]
async fn order_events_are_keyed_by_order_and_keep_their_order() {
    if !oms_core::testkit::services::services_set(&["OMS_KAFKA_BROKERS"]) {
        return;
    }
    let config = config().await;
    let publisher = KafkaOrderPublisher::new(&config).unwrap();
    let (a, b) = (OrderId(random_id()), OrderId(random_id()));
    let base = random_id();
    let events = [
        event(base, a, OrderStatus::PendingPayment, OrderStatus::Paid),
        event(
            base + 1,
            b,
            OrderStatus::PendingPayment,
            OrderStatus::Cancelled,
        ),
        event(base + 2, a, OrderStatus::Paid, OrderStatus::Refunded),
    ];
    publisher.publish(&[]).await.unwrap();
    publisher.publish(&events).await.unwrap();

    let mut got = read(&config.events_topic, 3).await;
    got.sort_by_key(|m| (m.partition(), m.offset()));
    for m in &got {
        let value: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
        let sent = events
            .iter()
            .find(|e| serde_json::json!(e.event_id) == value["eventId"])
            .unwrap_or_else(|| panic!("an event we sent: {value}"));
        assert_eq!(
            m.key(),
            Some(sent.order_id.to_string().as_bytes()),
            "key: the order id"
        );
        assert_eq!(
            value,
            serde_json::json!({
                "eventId": sent.event_id,
                "orderId": sent.order_id.0,
                "memberId": 7,
                "from": sent.from.as_str(),
                "to": sent.to.as_str(),
                "at": sent.at,
            })
        );
        assert_eq!(
            serde_json::from_slice::<OrderEvent>(m.payload().unwrap()).unwrap(),
            *sent
        );
        assert_eq!(header(m, HEADER_EVENT_ID), Some(sent.event_id.to_string()));
        assert_eq!(
            header(m, HEADER_EVENT_TYPE),
            Some(format!("ORDER_{}", sent.to.as_str()))
        );
    }
    let mut ids: Vec<String> = got
        .iter()
        .map(|m| header(m, HEADER_EVENT_ID).unwrap())
        .collect();
    ids.sort();
    let mut sent: Vec<String> = events.iter().map(|e| e.event_id.to_string()).collect();
    sent.sort();
    assert_eq!(ids, sent, "each event once");
    for (order, ids) in [(a, vec![base, base + 2]), (b, vec![base + 1])] {
        let key = order.to_string();
        let of_order: Vec<_> = got
            .iter()
            .filter(|m| m.key() == Some(key.as_bytes()))
            .collect();
        let partitions: std::collections::HashSet<i32> =
            of_order.iter().map(|m| m.partition()).collect();
        assert_eq!(partitions.len(), 1, "order {order}: {partitions:?}");
        let in_log: Vec<u64> = of_order
            .iter()
            .map(|m| header(m, HEADER_EVENT_ID).unwrap().parse().unwrap())
            .collect();
        assert_eq!(in_log, ids, "order {order}: in the order published");
    }
}

/// Sends `commands` with key "1" through a producer that lingers 100 ms,
/// so that they travel in one producer batch; returns where each landed,
/// all on one partition.
async fn send_in_one_batch(config: &KafkaConfig, commands: &[OrderCommand]) -> Vec<Delivery> {
    let batching: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("linger.ms", "100")
        .create()
        .unwrap();
    let deliveries = futures::future::join_all(commands.iter().map(|c| {
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
    assert!(deliveries.iter().all(|d| d.partition == partition));
    deliveries
}

/// `n` one-unit orders of random members for product 1.
fn orders(n: usize) -> Vec<OrderCommand> {
    (0..n)
        .map(|_| command(random_member_id(), &[(ProductId(1), 1)]))
        .collect()
}

/// A group whose committed offset falls inside a producer batch (as after a
/// rebalance) still gets every record from that offset on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_inside_a_producer_batch_skips_nothing() {
    if !oms_core::testkit::services::services_set(&["OMS_KAFKA_BROKERS"]) {
        return;
    }
    use rdkafka::consumer::{BaseConsumer, CommitMode};
    use rdkafka::{Offset, TopicPartitionList};

    let config = config().await;
    let sent = orders(50);
    let deliveries = send_in_one_batch(&config, &sent).await;
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

/// Everything the adapters log, for the tests that check a log line
/// (filtered by their own topic names).
static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Capture;

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.lock().unwrap().extend_from_slice(buf);
        std::io::stderr().write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    let _ = tracing_subscriber::fmt()
        .with_writer(|| Capture)
        .with_ansi(false)
        .with_env_filter("warn")
        .try_init();
}

fn logged(topic: &str) -> Vec<String> {
    String::from_utf8_lossy(&LOG.lock().unwrap())
        .lines()
        .filter(|l| l.contains(topic))
        .map(str::to_owned)
        .collect()
}

/// Runs a consumer until `done` holds for what it has seen (or 30 s pass),
/// then stops it; returns what it saw and its health.
async fn consume_until(
    config: &KafkaConfig,
    done: impl Fn(&[OrderCommand]) -> bool,
) -> (Vec<OrderCommand>, oms_adapters_kafka::ConsumerHealth) {
    let recorder = Arc::new(Recorder {
        seen: Mutex::new(Vec::new()),
        dlq: KafkaOrderPublisher::new(config).unwrap(),
    });
    let consumer = KafkaOrderConsumer::new(config).unwrap();
    let health = consumer.health();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(consumer.run(recorder.clone(), async move {
        let _ = stopped.await;
    }));
    wait_until("the records", || done(&recorder.seen.lock().unwrap())).await;
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
    let seen = recorder.seen.lock().unwrap().clone();
    (seen, health)
}

fn commit(config: &KafkaConfig, partition: i32, offset: i64) {
    use rdkafka::consumer::{BaseConsumer, CommitMode};
    use rdkafka::{Offset, TopicPartitionList};
    let committer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .set("group.id", &config.group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&config.order_topic, partition, Offset::Offset(offset))
        .unwrap();
    committer.commit(&tpl, CommitMode::Sync).unwrap();
}

/// F2: the group's committed offset points below the log start (records
/// removed by retention or DeleteRecords before they were processed). The
/// consumer goes on from the log start, with or without the rewind, and
/// counts and logs the offsets it could not read.
///
/// tansu 0.6 with `memory://` storage can move no log start (DeleteRecords
/// is not implemented, no retention), so this runs on librdkafka's mock
/// cluster in process, which drops the oldest producer batches of a
/// partition past 5 MB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_offset_below_the_log_start_is_passed_counted_and_logged() {
    if !oms_core::testkit::services::services_set(&["OMS_KAFKA_BROKERS"]) {
        return;
    }
    use rdkafka::message::OwnedHeaders;
    use rdkafka::mocking::MockCluster;

    capture_logs();
    let mock = MockCluster::new(1).unwrap();
    let run = TraceId::new();
    let mut config = KafkaConfig::new(mock.bootstrap_servers());
    config.order_topic = format!("test-orders-{run}");
    config.dlq_topic = format!("test-dlq-{run}");
    config.events_topic = format!("test-events-{run}");
    config.partitions = 1;
    mock.create_topic(&config.order_topic, 1, 1).unwrap();
    mock.create_topic(&config.dlq_topic, 1, 1).unwrap();
    mock.create_topic(&config.events_topic, 1, 1).unwrap();
    ensure_topics(&config).await.unwrap();

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .create()
        .unwrap();
    let pad = vec![b'x'; 256 * 1024];
    let mut sent = Vec::new();
    for i in 0..32 {
        let c = command(random_member_id(), &[(ProductId(1), 1)]);
        let value = encode_command(&c).unwrap();
        let mut record = FutureRecord::<str, [u8]>::to(&config.order_topic)
            .key("1")
            .payload(&value);
        if i >= 2 {
            // Big records push the first ones out of the log.
            record = record.headers(OwnedHeaders::new().insert(rdkafka::message::Header {
                key: "pad",
                value: Some(&pad),
            }));
        }
        let delivery = producer.send(record, Duration::from_secs(5)).await.unwrap();
        assert_eq!((delivery.partition, delivery.offset), (0, i));
        sent.push(c);
    }
    let probe: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .set("group.id", "watermarks")
        .create()
        .unwrap();
    let (low, high) = probe
        .fetch_watermarks(&config.order_topic, 0, Duration::from_secs(5))
        .unwrap();
    assert_eq!(high, 32);
    assert!(
        low > 1,
        "the log start moved past the committed offset: {low}"
    );
    let want: Vec<TraceId> = sent[usize::try_from(low).unwrap()..]
        .iter()
        .map(|c| c.trace_id)
        .collect();

    for rewind in [false, true] {
        config.group = format!("test-group-{run}-{rewind}");
        config.rewind_on_gap = rewind;
        // The group had done record 0 only.
        commit(&config, 0, 1);
        let (seen, health) = consume_until(&config, |seen| seen.len() >= want.len()).await;
        let seen: Vec<TraceId> = seen.iter().map(|c| c.trace_id).collect();
        assert_eq!(
            seen, want,
            "rewind {rewind}: every record from the log start, once"
        );
        assert_eq!(
            health.skipped_records(),
            u64::try_from(low - 1).unwrap(),
            "rewind {rewind}: offsets 1 to {} could not be read",
            low - 1
        );
        let backlog = KafkaBacklog::new(&config).unwrap();
        assert_eq!(backlog.pending().await.unwrap(), 0, "rewind {rewind}");
    }
    let lines = logged(&config.order_topic);
    let lost: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("below the log start") && l.contains("partition=0"))
        .collect();
    assert_eq!(lost.len(), 2, "one error per run: {lines:#?}");
    for l in lost {
        assert!(l.contains("ERROR"), "{l}");
        assert!(
            l.contains("from=1 ") && l.contains(&format!("to={} ", low - 1)),
            "{l}"
        );
    }
}

/// A backlog the broker's offsets cannot vouch for is never zero: the log
/// end is under-reported (tansu answers the start of its last batch, here
/// below the committed offset) and the committed offset falls inside a
/// producer batch, which tansu does not deliver from the middle. With or
/// without the rewind, records waiting count; a group that is done reads 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backlog_is_never_zero_while_records_wait() {
    if !oms_core::testkit::services::services_set(&["OMS_KAFKA_BROKERS"]) {
        return;
    }
    let mut config = config().await;
    let deliveries = send_in_one_batch(&config, &orders(50)).await;
    let partition = deliveries[0].partition;
    for rewind in [false, true] {
        config.rewind_on_gap = rewind;
        let backlog = KafkaBacklog::new(&config).unwrap();
        commit(&config, partition, 25);
        let pending = backlog.pending().await.unwrap();
        assert!(
            pending > 0,
            "rewind {rewind}: 25 records wait, read {pending}"
        );
        commit(&config, partition, 50);
        assert_eq!(backlog.pending().await.unwrap(), 0, "rewind {rewind}");
    }
}

/// How long the backlog probe reads partitions before it gives up
/// (`PROBE` in `src/backlog.rs`).
const PROBE: Duration = Duration::from_secs(3);

/// Produces two records of one key in one producer batch and commits the
/// group at the second: one record waits past the committed offset. On a
/// broker that answers the start of its last batch as the log end (tansu)
/// the watermarks then show nothing waiting, and the backlog must read the
/// partition. Returns the partition and the committed offset.
async fn one_record_past_the_committed_offset(config: &KafkaConfig) -> (i32, i64) {
    let deliveries = send_in_one_batch(config, &orders(2)).await;
    let partition = deliveries[0].partition;
    let last = deliveries.iter().map(|d| d.offset).max().unwrap();
    commit(config, partition, last);
    (partition, last)
}

/// Whether the broker's log end of `partition` is at or below `committed`
/// although a record waits there: the backlog cannot trust the watermarks
/// and must read the partition (tansu; the mock's watermarks are exact).
fn log_end_hides_the_record(config: &KafkaConfig, partition: i32, committed: i64) -> bool {
    let reader: rdkafka::consumer::BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", format!("reader-{}", TraceId::new()))
        .create()
        .unwrap();
    let (_, high) = reader
        .fetch_watermarks(&config.order_topic, partition, Duration::from_secs(5))
        .unwrap();
    high <= committed
}

/// A probe that runs out of time never reads an empty backlog: one record
/// waits past the committed offset, and the broker holds the probe's
/// fetches (a `fetch.min.bytes` no partition reaches) for longer than the
/// probe reads. Where the watermarks hide the record (tansu), the probe
/// gives up after `PROBE` with the partition unanswered, which counts as
/// waiting; where they show it (the mock), they count it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_that_runs_out_of_time_never_reads_zero() {
    if !oms_core::testkit::services::services_set(&["OMS_KAFKA_BROKERS"]) {
        return;
    }
    let config = config().await;
    let (partition, committed) = one_record_past_the_committed_offset(&config).await;
    let probed = log_end_hides_the_record(&config, partition, committed);
    let held = config
        .clone()
        .with_consumer_property("fetch.min.bytes", "100000000")
        .with_consumer_property("fetch.wait.max.ms", "6000");
    let backlog = KafkaBacklog::new(&held).unwrap();
    let started = Instant::now();
    let pending = backlog.pending().await;
    let took = started.elapsed();
    eprintln!("probed {probed}: {pending:?} after {took:?}");
    match pending {
        Ok(n) => assert!(n >= 1, "one record waits, the backlog read {n}"),
        Err(e) => assert!(matches!(e, OmsError::Unavailable { .. }), "{e:?}"),
    }
    if probed {
        // The scenario happened: the probe read the partition and ran out
        // of time (the broker holds its fetch for 6 s).
        assert!(took >= PROBE, "the probe answered after {took:?}");
    }
}

/// The default replication factor (-1, the broker's own) is accepted, and
/// the topics have the partitions asked for.
#[tokio::test]
async fn topics_are_created_with_the_broker_default_replication() {
    if !oms_core::testkit::services::services_set(&["OMS_KAFKA_BROKERS"]) {
        return;
    }
    let config = config().await;
    assert_eq!(config.topic_replication, -1);
    let reader: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", "metadata")
        .create()
        .unwrap();
    let metadata = reader.fetch_metadata(None, Duration::from_secs(5)).unwrap();
    for topic in [&config.order_topic, &config.dlq_topic, &config.events_topic] {
        let t = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic.as_str())
            .unwrap_or_else(|| panic!("{topic} exists"));
        assert_eq!(t.partitions().len(), 3, "{topic}");
        assert!(t.partitions().iter().all(|p| !p.replicas().is_empty()));
    }
    // A second call finds them and creates nothing.
    ensure_topics(&config).await.unwrap();
}

/// On a broker that does not answer CreateTopics (librdkafka's mock),
/// topics that exist are enough, and missing ones are a clear error.
#[tokio::test]
async fn ensure_topics_needs_no_create_topics_for_existing_topics() {
    if !oms_core::testkit::services::services_set(&["OMS_KAFKA_BROKERS"]) {
        return;
    }
    use rdkafka::mocking::MockCluster;

    let mock = MockCluster::new(1).unwrap();
    let run = TraceId::new();
    let mut config = KafkaConfig::new(mock.bootstrap_servers());
    config.order_topic = format!("test-orders-{run}");
    config.dlq_topic = format!("test-dlq-{run}");
    config.events_topic = format!("test-events-{run}");
    mock.create_topic(&config.order_topic, 6, 1).unwrap();
    mock.create_topic(&config.dlq_topic, 6, 1).unwrap();
    mock.create_topic(&config.events_topic, 6, 1).unwrap();
    ensure_topics(&config).await.unwrap();

    config.dlq_topic = format!("test-missing-{run}");
    let e = ensure_topics(&config).await.unwrap_err();
    assert!(
        e.to_string().contains(&config.dlq_topic),
        "names the missing topic: {e}"
    );
}

/// A consumer that holds a partition with records waiting and cannot read
/// them says so and rejoins its group; once it can read again it catches up
/// and is no longer stalled. (The mock broker fails every fetch for a while.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_consumer_reports_it_and_rejoins() {
    if !oms_core::testkit::services::services_set(&["OMS_KAFKA_BROKERS"]) {
        return;
    }
    use rdkafka::mocking::MockCluster;
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

    capture_logs();
    let mock = MockCluster::new(1).unwrap();
    let run = TraceId::new();
    let mut config = KafkaConfig::new(mock.bootstrap_servers());
    config.order_topic = format!("test-orders-{run}");
    config.dlq_topic = format!("test-dlq-{run}");
    config.group = format!("test-group-{run}");
    config.partitions = 1;
    config.stall_timeout = Duration::from_secs(2);
    mock.create_topic(&config.order_topic, 1, 1).unwrap();
    mock.create_topic(&config.dlq_topic, 1, 1).unwrap();
    let publisher = KafkaOrderPublisher::new(&config).unwrap();
    let first = command(random_member_id(), &[(ProductId(1), 1)]);
    publisher.send(&first).await.unwrap();

    let recorder = Arc::new(Recorder {
        seen: Mutex::new(Vec::new()),
        dlq: publisher.clone(),
    });
    let consumer = KafkaOrderConsumer::new(&config).unwrap();
    let health = consumer.health();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(consumer.run(recorder.clone(), async move {
        let _ = stopped.await;
    }));
    wait_until("the first record", || {
        recorder.seen.lock().unwrap().len() == 1
    })
    .await;
    assert!(!health.stalled());

    mock.request_errors(
        RDKafkaApiKey::Fetch,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT; 1000],
    );
    let second = command(random_member_id(), &[(ProductId(1), 1)]);
    publisher.send(&second).await.unwrap();
    wait_until("the stall report", || health.stalled()).await;
    assert!(health.rejoins() >= 1);
    assert_eq!(recorder.seen.lock().unwrap().len(), 1);

    mock.clear_request_errors(RDKafkaApiKey::Fetch);
    wait_until("the second record", || {
        recorder.seen.lock().unwrap().len() == 2
    })
    .await;
    wait_until("the stall cleared", || !health.stalled()).await;
    assert_eq!(recorder.seen.lock().unwrap()[1], second);
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
}

/// Properties of [`KafkaConfig`] reach librdkafka, each map the clients it
/// is meant for, the role's map over the common one: a record over the
/// common `message.max.bytes` is refused by the producer and goes once the
/// producer's own map raises it; with `topic.blacklist` the backlog probe
/// (a consumer) no longer sees the order topic. A property librdkafka
/// refuses (the common map reaches the admin client of `ensure_topics`
/// too), or one oms reserves, fails the construction of every client with
/// an error naming it.
#[tokio::test]
async fn passed_through_properties_reach_the_clients_and_bad_ones_are_refused() {
    if !oms_core::testkit::services::services_set(&["OMS_KAFKA_BROKERS"]) {
        return;
    }
    let config = config().await;

    // The producer: librdkafka's least `message.max.bytes`, for every client.
    let limited = config.clone().with_property("message.max.bytes", "1000");
    let small = KafkaOrderPublisher::new(&limited).unwrap();
    let lines: Vec<(ProductId, u32)> = (1..=80).map(|p| (ProductId(p), 1)).collect();
    let big = command(random_member_id(), &lines);
    assert!(encode_command(&big).unwrap().len() > 1000);
    let refused = small.send(&big).await.unwrap_err();
    assert!(
        refused.to_string().contains("MessageSizeTooLarge"),
        "the producer's own limit refused it: {refused}"
    );
    small
        .send(&command(random_member_id(), &[(ProductId(1), 1)]))
        .await
        .unwrap();
    // The producer's map wins over the common one.
    KafkaOrderPublisher::new(
        &limited
            .clone()
            .with_producer_property("message.max.bytes", "100000"),
    )
    .unwrap()
    .send(&big)
    .await
    .unwrap();

    // The consumers' map reaches the backlog probe: it no longer sees a
    // topic librdkafka is told to ignore.
    let hidden = format!("^{}$", config.order_topic);
    KafkaBacklog::new(&config).unwrap().pending().await.unwrap();
    let blind = KafkaBacklog::new(
        &config
            .clone()
            .with_consumer_property("topic.blacklist", &hidden),
    )
    .unwrap();
    // Its metadata request waits for a topic it is told to ignore.
    assert!(matches!(
        blind.pending().await,
        Err(OmsError::Unavailable { .. })
    ));

    // Refused when a client is made, naming the property.
    let invalid = |e: OmsError, property: &str| match e {
        OmsError::Invalid(why) => assert!(why.contains(property), "{why}"),
        other => panic!("{property}: {other:?}"),
    };
    invalid(
        KafkaOrderPublisher::new(
            &config
                .clone()
                .with_producer_property("compression.type", "bogus"),
        )
        .unwrap_err(),
        "compression.type",
    );
    invalid(
        KafkaOrderConsumer::new(
            &config
                .clone()
                .with_consumer_property("fetch.wait.max.ms", "soon"),
        )
        .unwrap_err(),
        "fetch.wait.max.ms",
    );
    invalid(
        KafkaBacklog::new(&config.clone().with_property("no.such.property", "1")).unwrap_err(),
        "no.such.property",
    );
    invalid(
        ensure_topics(&config.clone().with_property("no.such.property", "1"))
            .await
            .unwrap_err(),
        "no.such.property",
    );
    // What oms's guarantees rest on cannot be changed.
    invalid(
        KafkaOrderPublisher::new(&config.clone().with_producer_property("acks", "1")).unwrap_err(),
        "acks",
    );
    invalid(
        KafkaOrderConsumer::new(
            &config
                .clone()
                .with_property("enable.auto.offset.store", "true"),
        )
        .unwrap_err(),
        "enable.auto.offset.store",
    );
}
