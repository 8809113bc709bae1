//! Faults and hostile input on the real stack. Each test breaks something
//! real (a process, a service, the records on the topic) and restores it,
//! whatever happens; they run one at a time because they pause shared
//! services.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::stack::{env, Dlq, Paused, Stack};
use oms::domain::{OmsError, OmsResult};
use oms::kafka::{ensure_topics, KafkaBacklog};
use oms::port::outbound::OrderBacklog;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::Value;
use tokio::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::const_new(());

fn members(n: u64) -> Vec<u64> {
    let first = oms_core::testkit::random_id();
    (0..n).map(|i| first + i).collect()
}

async fn wait_for(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Item 1: re-producing processed records (same key, same bytes) changes
/// nothing. The product keeps units to spare (20 for 10 buyers), so a
/// second decrement would show in the stock.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicate_delivery_changes_nothing() {
    if !common::real_stack() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let stack = Stack::start(1).await;
    let product = stack.add_product(20).await;
    let buyers = members(10);
    let traces = stack.order_all(&buyers, &[(product, 1)]).await;
    let finals = stack.wait_final(&traces, Duration::from_secs(60)).await;
    stack.wait_drained(Duration::from_secs(30)).await;
    let (completed, failed) = stack
        .check_invariants(&[(product, 20)], &traces, &finals, Dlq::ExactlyOnce)
        .await;
    assert_eq!((completed, failed), (10, 0));
    assert_eq!(stack.stock(product).await, 10);

    // Every record of the order topic, produced again.
    let records = stack.order_topic_records(completed).await;
    assert_eq!(records.len(), completed, "one record per order");
    let again: Vec<_> = records.into_iter().map(|r| (r.key, r.value)).collect();
    stack.produce(&again).await;
    stack.wait_drained(Duration::from_secs(30)).await;
    // The copies are on the topic, behind the originals, and the group
    // committed past them (drained above).
    assert_eq!(
        stack.order_topic_records(2 * completed).await.len(),
        2 * completed
    );

    assert_eq!(stack.stock(product).await, 10, "no second decrement");
    let none = HashSet::new();
    assert!(
        stack.dead_letter_records(&none).await.is_empty(),
        "no DLQ record"
    );
    for (member, trace) in &traces {
        let now: Value = stack.trace(*member, trace).await.json().await.unwrap();
        assert_eq!(now, finals[trace], "a final status never changes");
        let orders = stack.orders_of(*member).await;
        assert_eq!(orders.len(), 1, "no second order");
        assert_eq!(orders[0]["orderId"], finals[trace]["orderId"]);
    }
    stack.stop();
}

/// Item 2: `kill -9` of consumers during a burst, restarted each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consumers_killed_during_a_burst_lose_and_double_nothing() {
    if !common::real_stack() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let mut stack = Stack::start(2).await;
    let a = stack.add_product(300).await;
    let b = stack.add_product(300).await;
    let mut traces = Vec::new();
    for wave in 0..4 {
        let buyers = members(150);
        traces.extend(stack.order_all(&buyers, &[(a, 1), (b, 1)]).await);
        if wave < 3 {
            let victim = stack.consumers.remove(0);
            victim.crash();
            stack.start_consumer();
        }
    }
    let finals = stack.wait_final(&traces, Duration::from_secs(120)).await;
    let (completed, failed) = stack
        .check_invariants(&[(a, 300), (b, 300)], &traces, &finals, Dlq::AtLeastOnce)
        .await;
    assert_eq!((completed, failed), (300, 300));
    stack.stop();
}

/// PROCESSING traces of `member` in Redis.
async fn processing_traces_of(stack: &Stack, member: u64) -> usize {
    let mut conn = stack.redis().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{{e2e-{}}}:trace:*", stack.run))
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut n = 0;
    for k in keys {
        let v: Option<String> = redis::cmd("GET")
            .arg(&k)
            .query_async(&mut conn)
            .await
            .unwrap();
        if let Some(v) = v {
            let t: Value = serde_json::from_str(&v).unwrap();
            if t["memberId"] == member && t["status"] == "PROCESSING" {
                n += 1;
            }
        }
    }
    n
}

/// Every record of `topic`, read from the start of each partition to its
/// end without a consumer group (each partition counts as read when the
/// broker reports its end).
async fn read_to_end(topic: &str) -> Vec<OwnedMessage> {
    let reader: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", env("OMS_KAFKA_BROKERS"))
        .set("group.id", format!("reader-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let metadata = reader
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .unwrap();
    let partitions: Vec<i32> = metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| p.id())
        .collect();
    assert!(!partitions.is_empty(), "{topic} has no partitions");
    let mut from = TopicPartitionList::new();
    for p in &partitions {
        from.add_partition_offset(topic, *p, Offset::Beginning)
            .unwrap();
    }
    reader.assign(&from).unwrap();
    let mut open: HashSet<i32> = partitions.into_iter().collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut out = Vec::new();
    while !open.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, reader.recv()).await {
            Ok(Ok(m)) => out.push(m.detach()),
            Ok(Err(KafkaError::PartitionEOF(p))) => {
                open.remove(&p);
            }
            Ok(Err(e)) => panic!("reading {topic}: {e}"),
            Err(_) => panic!("{topic}: partitions {open:?} never reached their end"),
        }
    }
    out
}

/// A header of a record, as text.
fn header(m: &OwnedMessage, name: &str) -> Option<String> {
    m.headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// The JSON values of the records of the order topic.
async fn order_records(stack: &Stack) -> Vec<Value> {
    read_to_end(&stack.order_topic)
        .await
        .iter()
        .map(|m| serde_json::from_slice(m.payload().unwrap_or_default()).unwrap())
        .collect()
}

/// `GET /api/v1/admin/products/{product}/stock`: the stock in the database
/// and the stock gate's level.
async fn stock_view(stack: &Stack, product: u64) -> Value {
    let r = stack
        .client
        .get(format!(
            "{}/api/v1/admin/products/{product}/stock",
            stack.base
        ))
        .bearer_auth(stack.admin())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// The stock gate's counter of `product` in Redis
/// (`{<prefix>}:gate:<productId>`, see oms-adapters-redis/src/gate.rs).
async fn gate_counter(stack: &Stack, product: u64) -> Option<i64> {
    let mut conn = stack.redis().await;
    redis::cmd("GET")
        .arg(format!("{{e2e-{}}}:gate:{product}", stack.run))
        .query_async(&mut conn)
        .await
        .unwrap()
}

/// The Redis key of a trace (`{<prefix>}:trace:<traceId>`).
fn trace_key(stack: &Stack, trace: &str) -> String {
    format!("{{e2e-{}}}:trace:{trace}", stack.run)
}

/// A line without its terminal colour codes.
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ parameters, ended by a letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A `Duration` as its `Debug` writes it (`50ms`, `1.6s`).
fn parse_debug_duration(text: &str) -> Duration {
    if let Some(ms) = text.strip_suffix("ms") {
        Duration::from_secs_f64(ms.parse::<f64>().unwrap() / 1000.0)
    } else if let Some(s) = text.strip_suffix('s') {
        Duration::from_secs_f64(s.parse().unwrap())
    } else {
        panic!("not a duration: {text}")
    }
}

/// The delays of the consumer's retries of a batch, in order, from its log
/// lines (`dependency unavailable; pausing and retrying the same batch …
/// delay=…`).
fn retry_delays(log: &str) -> Vec<Duration> {
    log.lines()
        .filter(|l| l.contains("pausing and retrying the same batch"))
        .map(|l| {
            let line = plain(l);
            let delay = line
                .rsplit_once("delay=")
                .unwrap_or_else(|| panic!("a retry without its delay: {line}"))
                .1
                .split_whitespace()
                .next()
                .unwrap()
                .to_owned();
            parse_debug_duration(&delay)
        })
        .collect()
}

/// The publisher's own bound on a send (`SEND_BOUND` in
/// oms-adapters-kafka/src/publisher.rs): librdkafka's 3 s message timeout,
/// which it checks about once a second, cut at 4.5 s by the adapter.
const SEND_BOUND: Duration = Duration::from_millis(4500);
/// What intake may take past its send bound before it answers, on a busy
/// 2-core machine: settling the trace FAILED `NOT_ACCEPTED` in the
/// database, giving the gate's units back and removing the trace in Redis
/// (a few round trips), with a margin for the scheduler.
const AFTER_THE_SEND: Duration = Duration::from_secs(3);

/// Item 3: a hung broker. Intake answers 503 within its send bound and
/// leaves no PROCESSING trace. The order is settled FAILED `NOT_ACCEPTED`
/// in the database first, so a record that reaches the broker late places
/// nothing and takes no unit (of the database or of the gate), and its DLQ
/// record is relayed once the broker is back. Service resumes without a
/// restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hung_broker_is_503_and_service_resumes() {
    if !common::real_stack() {
        return;
    }
    let _serial = SERIAL.lock().await;
    // The broker is paused for the send bound and the checks below (about
    // 7 s): a session longer than that keeps the consumer's membership
    // (tansu 0.6 does not recover a group whose member timed out while it
    // was paused, see docs/brokers.md). The sweeper relays a DLQ record
    // still unconfirmed 30 s after its outcome (`relay_after` of the least
    // `OMS_SWEEP_AFTER_SECS`).
    let mut stack = Stack::configure();
    stack
        .envs
        .push(("OMS_KAFKA_SESSION_TIMEOUT_SECS".into(), "30".into()));
    stack
        .envs
        .push(("OMS_SWEEP_AFTER_SECS".into(), "30".into()));
    let stack = stack.launch(1).await;
    let product = stack.add_product(10).await;
    let member = members(1)[0];
    {
        let _broker = Paused::broker();
        let started = Instant::now();
        let r = stack.post_order(member, &[(product, 1)], None).await;
        let took = started.elapsed();
        assert_eq!(r.status(), 503);
        eprintln!("503 after {took:?}");
        assert!(
            took < SEND_BOUND + AFTER_THE_SEND,
            "503 after {took:?}: more than the send bound {SEND_BOUND:?} and {AFTER_THE_SEND:?}"
        );
        let problem: Value = r.json().await.unwrap();
        assert_eq!(problem["code"], "SERVICE_UNAVAILABLE");
        assert_eq!(
            processing_traces_of(&stack, member).await,
            0,
            "no trace left PROCESSING"
        );
        let ready = stack
            .client
            .get(format!("{}/readyz", stack.base))
            .send()
            .await
            .unwrap();
        assert_eq!(ready.status(), 503);
        let body: Value = ready.json().await.unwrap();
        assert!(body["detail"].as_str().unwrap().contains("kafka"), "{body}");
    }
    stack.wait_ready().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let trace = loop {
        let r = stack.post_order(member, &[(product, 1)], None).await;
        if r.status() == 202 {
            let v: Value = r.json().await.unwrap();
            break v["traceId"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "intake never recovered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let finals = stack
        .wait_final(&[(member, trace.clone())], Duration::from_secs(150))
        .await;
    assert_eq!(finals[&trace]["status"], "COMPLETED");
    stack.wait_drained(Duration::from_secs(60)).await;
    // Whether the refused order's record came late or not (below), it
    // placed nothing and took no unit.
    let orders = stack.orders_of(member).await;
    assert_eq!(orders.len(), 1, "one order: {orders:?}");
    assert_eq!(orders[0]["orderId"], finals[&trace]["orderId"]);
    assert_eq!(stack.stock(product).await, 9);
    let view = stock_view(&stack, product).await;
    assert_eq!(view["stock"], 9, "{view}");
    assert_eq!(view["gateLevel"], 9, "{view}");
    assert_eq!(gate_counter(&stack, product).await, Some(9));

    // The refused order's DLQ record names its trace: relayed within the
    // sweeper's 30 s (and its 3 s period), with a generous margin.
    let deadline = Instant::now() + Duration::from_secs(90);
    let letters = loop {
        let letters = read_to_end(&stack.dlq_topic).await;
        if !letters.is_empty() {
            break letters;
        }
        assert!(
            Instant::now() < deadline,
            "the refused order's DLQ record was never relayed"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let refused: HashSet<String> = letters
        .iter()
        .map(|m| header(m, "oms-trace-id").expect("every DLQ record names its trace"))
        .collect();
    assert_eq!(refused.len(), 1, "the DLQ holds one trace: {refused:?}");
    for m in &letters {
        assert_eq!(
            header(m, "oms-failure-reason").as_deref(),
            Some("NOT_ACCEPTED")
        );
    }
    let refused = refused.into_iter().next().unwrap();
    assert_ne!(refused, trace);
    let outcome: Value = stack.trace(member, &refused).await.json().await.unwrap();
    assert_eq!(outcome["status"], "FAILED", "{outcome}");
    assert_eq!(outcome["reason"], "NOT_ACCEPTED", "{outcome}");

    // The order topic holds the second order once, and the refused one at
    // most once: its record may have reached the broker when it resumed.
    let mine: Vec<String> = order_records(&stack)
        .await
        .into_iter()
        .filter(|v| v["memberId"] == member)
        .map(|v| v["traceId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(mine.iter().filter(|t| **t == trace).count(), 1, "{mine:?}");
    assert!(
        mine.iter().all(|t| *t == trace || *t == refused),
        "{mine:?}"
    );
    assert!(mine.len() <= 2, "{mine:?}");
    let late = mine.contains(&refused);
    eprintln!(
        "the refused order's record {} the broker",
        if late { "reached" } else { "never reached" }
    );
    stack.stop();
}

/// Age below which a PROCESSING trace is answered from the cache alone,
/// without asking the database (`fresh_for` of `QueryService`,
/// oms-core/src/application/query.rs).
const FRESH_FOR: Duration = Duration::from_secs(2);

/// Waits, if need be, until traces written at `written` are older than
/// [`FRESH_FOR`] (with 1 s to spare for the clocks of the processes): from
/// then on a read of a PROCESSING trace asks the database.
async fn past_the_cache_window(written: Instant) {
    tokio::time::sleep_until((written + FRESH_FOR + Duration::from_secs(1)).into()).await;
}

/// Item 4: Redis down. Intake answers 503 (it cannot record PROCESSING)
/// and queues nothing; the consumer keeps outcomes durable in the
/// database; by-trace answers final statuses from the database; once Redis
/// answers again, reads repair the traces it holds stale.
///
/// Redis is stopped and started again (it keeps no data), so no write
/// sent while it was down can land later. The PROCESSING traces intake
/// wrote are put back as a Redis that keeps its data would bring them
/// back; only a read can then make them COMPLETED.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_down_keeps_outcomes_and_repairs_traces() {
    if !common::real_stack() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let stack = Stack::start(1).await;
    let product = stack.add_product(100).await;
    let early = stack.order_all(&members(1), &[(product, 1)]).await;
    stack.wait_final(&early, Duration::from_secs(60)).await;

    let buyers = members(10);
    let refused_member = members(1)[0];
    let mut conn = stack.redis().await;
    let traces;
    let written;
    let mut cached: Vec<(String, String, i64)> = Vec::new();
    {
        let consumer = stack.consumers[0].pause();
        traces = stack.order_all(&buyers, &[(product, 1)]).await;
        written = Instant::now();
        for (_, trace) in &traces {
            let key = trace_key(&stack, trace);
            let value: String = redis::cmd("GET")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap();
            let v: Value = serde_json::from_str(&value).unwrap();
            assert_eq!(v["status"], "PROCESSING", "{key}");
            let ttl: i64 = redis::cmd("PTTL")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap();
            assert!(ttl > 0, "{key} expires");
            cached.push((key, value, ttl));
        }
        let _redis = Stopped::service("stop-redis");
        drop(consumer);
        let r = stack
            .post_order(refused_member, &[(product, 1)], None)
            .await;
        assert_eq!(r.status(), 503, "intake needs the trace store");
        // Final statuses come from the database while Redis is down.
        let early_now: Value = stack
            .trace(early[0].0, &early[0].1)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(early_now["status"], "COMPLETED");
        let finals = stack.wait_final(&traces, Duration::from_secs(90)).await;
        assert!(finals.values().all(|v| v["status"] == "COMPLETED"));
    }
    // Redis is back, empty.
    stack.wait_ready().await;
    let mut conn = stack.redis().await;
    for (key, _, _) in &cached {
        let v: Option<String> = redis::cmd("GET")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(v, None, "{key}: Redis came back without its keys");
    }
    // The first half comes back PROCESSING, as intake wrote it; the other
    // half stays missing (both happen to a cache that was down).
    let (stale, _missing) = cached.split_at(cached.len() / 2);
    for (key, value, ttl) in stale {
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg("PX")
            .arg(*ttl)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    past_the_cache_window(written).await;
    // The missing ones are answered by the database.
    let finals = stack.wait_final(&traces, Duration::from_secs(30)).await;
    for (_, trace) in &traces {
        assert_eq!(finals[trace]["status"], "COMPLETED", "{trace}");
        assert_eq!(finals[trace]["traceId"], trace.as_str());
        assert!(finals[trace]["orderId"].is_u64(), "{}", finals[trace]);
    }
    // Each read of a stale trace wrote its outcome back.
    for (key, _, _) in stale {
        let v: String = redis::cmd("GET")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        let repaired: Value = serde_json::from_str(&v).unwrap();
        let trace = repaired["traceId"].as_str().unwrap();
        assert_eq!(repaired["status"], "COMPLETED", "{key} repaired");
        assert_eq!(repaired["orderId"], finals[trace]["orderId"]);
    }
    // The 503 order was not queued: the order topic holds the 11 accepted
    // orders and nothing of its member.
    stack.wait_drained(Duration::from_secs(30)).await;
    let records = order_records(&stack).await;
    let mut queued: Vec<&str> = records
        .iter()
        .map(|v| v["traceId"].as_str().unwrap())
        .collect();
    queued.sort_unstable();
    let mut accepted: Vec<&str> = early
        .iter()
        .chain(&traces)
        .map(|(_, t)| t.as_str())
        .collect();
    accepted.sort_unstable();
    assert_eq!(
        queued, accepted,
        "the order topic holds the accepted orders"
    );
    assert!(records.iter().all(|v| v["memberId"] != refused_member));
    assert_eq!(stack.stock(product).await, 89);
    assert!(
        read_to_end(&stack.dlq_topic).await.is_empty(),
        "no DLQ record"
    );
    stack.stop();
}

/// Runs `scripts/services.sh <arg>`. What it starts outlives the test, so
/// it runs without the files the test inherited (a lock that flock(1)
/// holds around the test run would otherwise be held by the service).
fn services(arg: &str) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/services.sh");
    let close_inherited = r#"for fd in /proc/$$/fd/*; do
  fd=${fd##*/}
  if [ "$fd" -gt 2 ]; then eval "exec $fd>&-"; fi
done
exec bash "$0" "$1""#;
    let status = Command::new("bash")
        .arg("-c")
        .arg(close_inherited)
        .arg(script)
        .arg(arg)
        .status()
        .unwrap();
    assert!(status.success(), "services.sh {arg}");
}

/// A service of `scripts/services.sh` stopped (`stop-mariadb`,
/// `stop-redis`); `services.sh up` starts it again when dropped, whatever
/// happens.
struct Stopped;

impl Stopped {
    fn service(stop: &str) -> Self {
        services(stop);
        Self
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        services("up");
    }
}

/// The longest pause between two tries of a batch (`retry` in
/// oms-adapters-kafka/src/consumer.rs; README: "up to 5 s apart").
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// Item 5: MariaDB down, for longer than the query cache window and
/// several retries of the consumer: the consumer pauses on its batch and
/// retries with growing delays; no DLQ record, no offset advanced, every
/// trace PROCESSING, up to the moment the database comes back. Then it
/// resumes by itself; nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn database_down_pauses_the_consumer_and_loses_nothing() {
    if !common::real_stack() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let stack = Stack::start(1).await;
    let product = stack.add_product(50).await;
    let buyers = members(20);
    // The consumer is up and placing before the database goes away.
    let warm = stack.order_all(&members(1), &[(product, 1)]).await;
    stack.wait_final(&warm, Duration::from_secs(60)).await;
    stack.wait_drained(Duration::from_secs(30)).await;
    let committed = stack.committed_offsets();
    let traces;
    {
        let _db = Stopped::service("stop-mariadb");
        // The consumer's log from the outage on.
        let outage = stack.consumer_log().len();
        let log = || {
            let all = stack.consumer_log();
            all.get(outage..).unwrap_or_default().to_owned()
        };
        traces = stack.order_all(&buyers, &[(product, 1)]).await;
        let written = Instant::now();
        // Each try waits for a connection (3 s, the pool's acquire timeout)
        // before its pause: four tries take about 13 s.
        wait_for("four tries of the batch", Duration::from_secs(120), || {
            retry_delays(&log()).len() >= 4
        })
        .await;
        past_the_cache_window(written).await;

        // Just before the database returns: every trace is PROCESSING (a
        // read past the cache window asks the database, which is down).
        let stack = &stack;
        let reads = traces.iter().map(|(member, trace)| async move {
            let r = stack.trace(*member, trace).await;
            assert_eq!(r.status(), 200, "{trace}");
            let v: Value = r.json().await.unwrap();
            (trace.clone(), v)
        });
        for (trace, v) in futures::future::join_all(reads).await {
            assert_eq!(v["status"], "PROCESSING", "{trace}: {v}");
        }
        assert!(
            read_to_end(&stack.dlq_topic).await.is_empty(),
            "no DLQ record while the database is down"
        );
        assert_eq!(stack.committed_offsets(), committed, "no offset advanced");
        let delays = retry_delays(&log());
        eprintln!("tries of the batch, paused by {delays:?}");
        assert!(delays.len() >= 4, "{delays:?}");
        assert!(
            delays.windows(2).all(|w| w[0] <= w[1]),
            "the pauses never shrink: {delays:?}"
        );
        assert!(
            delays[0] < delays[delays.len() - 1],
            "they grow: {delays:?}"
        );
        assert!(
            delays.iter().all(|d| *d <= MAX_RETRY_DELAY),
            "at most {MAX_RETRY_DELAY:?}: {delays:?}"
        );
    }
    let finals = stack.wait_final(&traces, Duration::from_secs(120)).await;
    assert!(finals.values().all(|v| v["status"] == "COMPLETED"));
    stack.wait_drained(Duration::from_secs(30)).await;
    assert!(
        stack.committed_offsets() > committed,
        "the offsets moved on"
    );
    assert_eq!(stack.stock(product).await, 29);
    assert!(
        read_to_end(&stack.dlq_topic).await.is_empty(),
        "no DLQ record"
    );
    stack.stop();
}

/// Item 6: poison records go to the DLQ as POISON with their bytes; the
/// consumer keeps going.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_records_are_dead_lettered_and_the_consumer_keeps_going() {
    if !common::real_stack() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let stack = Stack::start(1).await;
    let product = stack.add_product(5).await;
    let poison: Vec<(Option<Vec<u8>>, Vec<u8>)> = vec![
        (Some(b"1".to_vec()), b"definitely not json".to_vec()),
        (None, br#"{"hello": "world"}"#.to_vec()),
        (
            Some(b"1".to_vec()),
            br#"{"traceId": 42, "memberId": "seven", "items": "many", "receiverInfo": null, "requestedAt": true}"#.to_vec(),
        ),
        (None, vec![0xff, 0x00, 0xfe]),
    ];
    stack.produce(&poison).await;
    let after = stack.order_all(&members(2), &[(product, 1)]).await;
    let finals = stack.wait_final(&after, Duration::from_secs(60)).await;
    assert!(finals.values().all(|v| v["status"] == "COMPLETED"));
    let mut dead = stack.dead_letters_raw(poison.len()).await;
    assert!(dead.iter().all(|(_, reason)| reason == "POISON"));
    let mut sent: Vec<Vec<u8>> = poison.into_iter().map(|(_, v)| v).collect();
    sent.sort();
    dead.sort();
    assert_eq!(dead.into_iter().map(|(v, _)| v).collect::<Vec<_>>(), sent);
    stack.stop();
}

/// Item 7: the same member and Idempotency-Key racing: one trace, one order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_idempotency_keys_make_one_order() {
    if !common::real_stack() {
        return;
    }
    let _serial = SERIAL.lock().await;
    // 20 requests of one member at once: no order rate in the way.
    let mut stack = Stack::configure();
    stack
        .envs
        .push(("OMS_ORDER_RATE".to_owned(), "0".to_owned()));
    let stack = stack.launch(1).await;
    let product = stack.add_product(100).await;
    let member = members(1)[0];
    let lines = [(product, 1)];
    let posts = (0..20).map(|_| stack.post_order(member, &lines, Some("checkout-42")));
    let mut ids = HashSet::new();
    for r in futures::future::join_all(posts).await {
        assert_eq!(r.status(), 202);
        let v: Value = r.json().await.unwrap();
        ids.insert(v["traceId"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1, "one trace for one key");
    let trace = ids.into_iter().next().unwrap();
    stack
        .wait_final(&[(member, trace)], Duration::from_secs(60))
        .await;
    assert_eq!(stack.orders_of(member).await.len(), 1);
    assert_eq!(stack.stock(product).await, 99);
    stack.stop();
}

/// The idempotency key of an order whose send failed while the database
/// was down stays bound to its trace: the record may still be placed, so a
/// retry with the key answers that trace and never queues a second order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_whose_send_could_not_be_settled_stays_bound() {
    if !common::real_stack() {
        return;
    }
    let _serial = SERIAL.lock().await;
    // The broker is paused for as long as intake waits on the send and the
    // settle (about 8 s): a session longer than that keeps the consumer's
    // membership (tansu 0.6 does not recover a group whose member timed
    // out while it was paused, see docs/brokers.md).
    let mut stack = Stack::configure();
    stack
        .envs
        .push(("OMS_KAFKA_SESSION_TIMEOUT_SECS".into(), "30".into()));
    let stack = stack.launch(1).await;
    let product = stack.add_product(10).await;
    let member = members(1)[0];
    let key = format!("checkout-{}", stack.run);
    {
        let _db = Stopped::service("stop-mariadb");
        let _broker = Paused::broker();
        let r = stack.post_order(member, &[(product, 1)], Some(&key)).await;
        assert_eq!(r.status(), 503);
    }
    let mut conn = stack.redis().await;
    let bound: Option<String> = redis::cmd("GET")
        .arg(format!("e2e-{}:idem:{member}:{key}", stack.run))
        .query_async(&mut conn)
        .await
        .unwrap();
    let bound = bound.expect("the key stays bound to the unsettled trace");
    stack.wait_ready().await;
    for _ in 0..3 {
        let r = stack.post_order(member, &[(product, 1)], Some(&key)).await;
        assert_eq!(r.status(), 202);
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            v["traceId"],
            bound.as_str(),
            "the retry answers the same trace"
        );
    }
    // Whatever became of the first record, the key made at most one order.
    // Another buyer orders four other products (other partitions, but for a
    // chance of 1 in 6^4: tansu 0.6 can leave the partition of a produce
    // that the pause cut short unreadable, see docs/brokers.md) to see the
    // consumer at work.
    let other = members(1)[0];
    let mut others = Vec::new();
    for _ in 0..4 {
        others.push(stack.add_product(10).await);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut traces = Vec::new();
    for p in &others {
        let trace = loop {
            let r = stack.post_order(other, &[(*p, 1)], None).await;
            if r.status() == 202 {
                let v: Value = r.json().await.unwrap();
                break v["traceId"].as_str().unwrap().to_owned();
            }
            assert!(Instant::now() < deadline, "intake never recovered");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        traces.push(trace);
    }
    // A paused broker can time the consumer's session out; the stall
    // watchdog rejoins within its bound (see docs/brokers.md).
    let deadline = Instant::now() + Duration::from_secs(150);
    'placed: loop {
        for t in &traces {
            let v: Value = stack.trace(other, t).await.json().await.unwrap();
            if v["status"] == "COMPLETED" {
                break 'placed;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the consumer placed nothing after the outage"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mine = stack.orders_of(member).await.len();
    assert!(mine <= 1, "{mine} orders for one key");
    assert_eq!(stack.stock(product).await, 10 - mine as i64);
    stack.stop();
}

/// Produces two records of one key in one producer batch to the run's
/// order topic and commits the run's group at the second: one record waits
/// past the committed offset. Returns the partition and the committed
/// offset.
async fn one_record_past_the_committed_offset(stack: &Stack) -> (i32, i64) {
    let batching: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", env("OMS_KAFKA_BROKERS"))
        .set("linger.ms", "100")
        .create()
        .unwrap();
    let lines = common::order_body(&[(1, 1)]);
    let deliveries = futures::future::join_all((0..2).map(|_| {
        let value = serde_json::to_vec(&lines).unwrap();
        let batching = batching.clone();
        let topic = stack.order_topic.clone();
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
    let last = deliveries.iter().map(|d| d.offset).max().unwrap();
    let committer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", env("OMS_KAFKA_BROKERS"))
        .set("group.id", &stack.group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut at = TopicPartitionList::new();
    at.add_partition_offset(&stack.order_topic, partition, Offset::Offset(last))
        .unwrap();
    committer.commit(&at, CommitMode::Sync).unwrap();
    (partition, last)
}

/// The longest a backlog probe waits on the broker: one request (5 s,
/// `REQUEST_TIMEOUT` in oms-adapters-kafka/src/lib.rs) at a time, and the
/// reading of partitions (3 s, `PROBE` in src/backlog.rs), with a margin.
const PROBE_WAIT: Duration = Duration::from_secs(8);

/// What a backlog probe answered, and when.
#[derive(Debug)]
enum Stalled {
    /// Before the broker was stopped.
    Before(OmsResult<u64>),
    /// While the broker was stopped.
    During(OmsResult<u64>),
    /// After it was started again.
    After(OmsResult<u64>),
}

/// A backlog the broker cannot vouch for is never zero, also when the
/// broker stalls (SIGSTOP) while the probe asks it: one record waits past
/// the committed offset, and `pending` answers an error or at least 1,
/// never 0, whenever the stall begins. The sweeper fails a PROCESSING trace
/// as LOST only on a backlog of 0, so a 0 here would lose a queued order.
///
/// The broker holds each fetch of the probe for 2 s (a `fetch.min.bytes` no
/// partition reaches), well within the probe's 3 s: a stall that begins
/// during that wait lands while the probe reads the partition. Where the
/// broker's log end hides the waiting record (tansu answers the start of
/// its last batch, docs/brokers.md) the probe must read it, and at least
/// one stall has to land there; where the watermarks show it (the mock),
/// they count it, and the probe reads only the empty partitions.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_broker_never_reads_as_an_empty_backlog() {
    if !common::real_stack() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let stack = Stack::configure();
    stack.create_topics_on_mock();
    let mut config = stack.kafka();
    config.rewind_on_gap = matches!(
        std::env::var("OMS_KAFKA_REWIND_ON_GAP").as_deref(),
        Ok("on" | "1" | "true")
    );
    ensure_topics(&config).await.unwrap();
    let (partition, committed) = one_record_past_the_committed_offset(&stack).await;
    let watermarks: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", env("OMS_KAFKA_BROKERS"))
        .set("group.id", format!("reader-{}", uuid::Uuid::new_v4()))
        .create()
        .unwrap();
    let (_, high) = watermarks
        .fetch_watermarks(&stack.order_topic, partition, Duration::from_secs(5))
        .unwrap();
    let probed = high <= committed;
    assert_eq!(
        KafkaBacklog::new(&config).unwrap().pending().await.unwrap(),
        1,
        "one record waits"
    );
    let held = config
        .with_consumer_property("fetch.min.bytes", "100000000")
        .with_consumer_property("fetch.wait.max.ms", "2000");

    // The stall begins before the probe, and twice during it (its
    // requests take a few milliseconds on loopback, then it waits 2 s for
    // its fetch).
    let mut answers = Vec::new();
    for stall_after in [0, 600, 1200].map(Duration::from_millis) {
        let backlog = KafkaBacklog::new(&held).unwrap();
        let mut probe = tokio::spawn(async move { backlog.pending().await });
        // When the fault lands, not a wait for a condition.
        tokio::time::sleep(stall_after).await;
        if probe.is_finished() {
            answers.push(Stalled::Before(probe.await.unwrap()));
            continue;
        }
        let broker = Paused::broker();
        let answer = tokio::time::timeout(PROBE_WAIT, &mut probe).await;
        drop(broker);
        answers.push(match answer {
            Ok(answer) => Stalled::During(answer.unwrap()),
            Err(_) => Stalled::After(probe.await.unwrap()),
        });
    }
    eprintln!("log end hides the record: {probed}; answers: {answers:?}");
    for answer in &answers {
        let (Stalled::Before(pending) | Stalled::During(pending) | Stalled::After(pending)) =
            answer;
        match pending {
            Ok(n) => assert!(
                *n >= 1,
                "one record waits, the backlog read {n}: {answers:?}"
            ),
            Err(e) => assert!(matches!(e, OmsError::Unavailable { .. }), "{e:?}"),
        }
    }
    if probed {
        assert!(
            answers.iter().any(|a| matches!(a, Stalled::During(Ok(_)))),
            "no stall landed while the probe read the partition: {answers:?}"
        );
    }
}
