//! Helpers of the contention and crash tests on the real stack
//! (`tests/oversell_real.rs`, `tests/crash_busy.rs`): products whose record
//! keys land on chosen partitions, the records of a run read back with
//! their partitions, the exact checks of a finished run, and the metrics
//! of one consumer process.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Headers;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::{json, Value};

use crate::common::stack::{env, Stack};
use crate::common::{metric_sum, scrape};

/// How long a topic must stay silent before a read of it counts as
/// complete. A record sent twice without a crash would come from the same
/// round of the consumer or the gate keeper, milliseconds apart.
pub const QUIET: Duration = Duration::from_secs(2);

/// The consumers' stall timeout of these tests: 12 s instead of 30 s, so
/// that where the broker leaves a killed member's partitions unassigned
/// (tansu) the watchdog notices sooner; a consumer at work never stalls
/// that long.
pub const STALL: Duration = Duration::from_secs(12);

/// Starts the api with the stock gate off, the consumers' stall timeout at
/// [`STALL`] and `settings`, and two consumers, and waits until both hold
/// partitions; the consumers' metrics URLs.
pub async fn start_two_consumers(settings: &[(&str, &str)]) -> (Stack, Vec<String>) {
    let stall = STALL.as_secs().to_string();
    let mut all = vec![
        ("OMS_STOCK_GATE", "off"),
        ("OMS_CONSUMER_STALL_SECS", stall.as_str()),
    ];
    all.extend_from_slice(settings);
    let mut stack = Stack::start_api_with(&all).await;
    stack.start_consumer();
    stack.start_consumer();
    let urls = stack.consumer_metrics();
    settle_group(&stack, &urls, oms_core::testkit::random_id()).await;
    (stack, urls)
}

/// CRC-32 (IEEE 802.3, as zlib computes it).
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

/// The partitions of the run's order topic.
pub fn partitions(stack: &Stack) -> i32 {
    stack.setting("OMS_ORDER_PARTITIONS").parse().unwrap()
}

/// The partition librdkafka's default partitioner (`consistent_random`)
/// gives a record keyed `key`: CRC-32 of the key modulo the partitions.
/// Only a guess to choose product ids with: the tests read the partitions
/// back from the topic.
pub fn partition_of_key(key: &[u8], partitions: i32) -> i32 {
    i32::try_from(crc32(key) % u32::try_from(partitions).unwrap()).unwrap()
}

/// The partition of an order whose smallest product is `product` (the
/// record key is that id in decimal ASCII, README "Record keys").
pub fn partition_of_product(product: u64, partitions: i32) -> i32 {
    partition_of_key(product.to_string().as_bytes(), partitions)
}

/// The first product id from `from` up whose orders land on `partition`
/// (when it is their smallest product).
pub fn product_id_on(partition: i32, from: u64, partitions: i32) -> u64 {
    (from..)
        .find(|id| partition_of_product(*id, partitions) == partition)
        .unwrap()
}

/// Creates a product with this id and stock, as an operator.
pub async fn add_product_with_id(stack: &Stack, id: u64, stock: i64) {
    let r = stack
        .client
        .post(format!("{}/api/v1/products", stack.base))
        .bearer_auth(stack.admin())
        .json(
            &json!({"productId": id, "name": format!("deal {id}"), "price": 12900, "stock": stock}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
}

/// `count` new member ids, one after the other.
pub fn members(count: u64) -> Vec<u64> {
    let first = oms_core::testkit::random_id();
    (0..count).map(|i| first + i).collect()
}

/// One accepted order of a run: who, which trace, what it asked for.
#[derive(Debug, Clone)]
pub struct Placed {
    pub member: u64,
    pub trace: String,
    pub lines: Vec<(u64, u32)>,
}

/// Posts every order at once; each must be answered 202 with `status`
/// (`PROCESSING` when queued, `FAILED` when the stock gate refused it).
pub async fn post_all(
    stack: &Stack,
    orders: &[(u64, Vec<(u64, u32)>)],
    status: &str,
) -> Vec<Placed> {
    let posts = orders.iter().map(|(member, lines)| async move {
        let r = stack.post_order(*member, lines, None).await;
        assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["status"], status, "{body}");
        Placed {
            member: *member,
            trace: body["traceId"].as_str().unwrap().to_owned(),
            lines: lines.clone(),
        }
    });
    futures::future::join_all(posts).await
}

/// The (member, trace) pairs of `placed`, for [`Stack::wait_final`].
pub fn traces_of(placed: &[Placed]) -> Vec<(u64, String)> {
    placed.iter().map(|p| (p.member, p.trace.clone())).collect()
}

/// A reader of every partition of `topic` from its start, outside any
/// consumer group (nothing to join, nothing committed).
fn reader_from_start(topic: &str) -> StreamConsumer {
    let reader: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", env("OMS_KAFKA_BROKERS"))
        .set("group.id", format!("reader-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let count = loop {
        let metadata = reader
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .ok();
        let count = metadata.map_or(0, |m| {
            m.topics()
                .iter()
                .find(|t| t.name() == topic)
                .map_or(0, |t| t.partitions().len())
        });
        if count > 0 {
            break count;
        }
        assert!(Instant::now() < deadline, "topic {topic} has no partitions");
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut tpl = TopicPartitionList::new();
    for p in 0..i32::try_from(count).unwrap() {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    reader.assign(&tpl).unwrap();
    reader
}

/// A record read back from a topic.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub headers: HashMap<String, String>,
}

impl Record {
    /// The trace id of its `oms-trace-id` header.
    pub fn trace(&self) -> &str {
        self.headers
            .get("oms-trace-id")
            .map(String::as_str)
            .expect("every record names its trace")
    }
}

fn record_of(m: &rdkafka::message::BorrowedMessage<'_>) -> Record {
    let headers = m
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| {
                    (
                        h.key.to_owned(),
                        String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Record {
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
        headers,
    }
}

/// Reads `topic` from the start until `done` says the records read are
/// complete and no other came for `quiet` (or panics at `deadline`).
pub async fn read_until_quiet(
    topic: &str,
    deadline: Instant,
    quiet: Duration,
    mut done: impl FnMut(&[Record]) -> bool,
) -> Vec<Record> {
    let reader = reader_from_start(topic);
    let mut out = Vec::new();
    loop {
        let complete = done(&out);
        if complete && quiet.is_zero() {
            return out;
        }
        let wait = if complete {
            quiet
        } else {
            deadline.saturating_duration_since(Instant::now())
        };
        match tokio::time::timeout(wait, reader.recv()).await {
            Ok(m) => out.push(record_of(&m.unwrap())),
            Err(_) if complete => return out,
            Err(_) => panic!("{topic}: only {} records came by the deadline", out.len()),
        }
    }
}

/// The order-topic record of every trace in `traces`, read back with its
/// partition, offset and key; every record of the topic read is in the
/// second value.
pub async fn order_records(
    stack: &Stack,
    traces: &HashSet<String>,
) -> (HashMap<String, Record>, Vec<Record>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let all = read_until_quiet(&stack.order_topic, deadline, Duration::ZERO, |read| {
        let seen: HashSet<&str> = read.iter().map(Record::trace).collect();
        traces.iter().all(|t| seen.contains(t.as_str()))
    })
    .await;
    let mut of = HashMap::new();
    for r in &all {
        if traces.contains(r.trace()) {
            assert!(
                of.insert(r.trace().to_owned(), r.clone()).is_none(),
                "trace {} queued twice",
                r.trace()
            );
        }
    }
    (of, all)
}

/// Reads the DLQ until every trace of `failed` has a record and no record
/// came for [`QUIET`] (or panics at `deadline`): the reasons of the
/// records of each trace id, every record counted.
pub async fn dead_letters(
    stack: &Stack,
    failed: &HashSet<String>,
    deadline: Instant,
) -> HashMap<String, Vec<String>> {
    let records = read_until_quiet(&stack.dlq_topic, deadline, QUIET, |read| {
        let seen: HashSet<&str> = read.iter().map(Record::trace).collect();
        failed.iter().all(|t| seen.contains(t.as_str()))
    })
    .await;
    let mut per_trace: HashMap<String, Vec<String>> = HashMap::new();
    for r in records {
        let reason = r
            .headers
            .get("oms-failure-reason")
            .cloned()
            .unwrap_or_default();
        per_trace
            .entry(r.trace().to_owned())
            .or_default()
            .push(reason);
    }
    per_trace
}

/// The sum of the samples named `name` with `labels` at one `/metrics`.
pub async fn metric(stack: &Stack, url: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric_sum(
        &scrape(&stack.client, &[url.to_owned()]).await,
        name,
        labels,
    )
}

/// Like [`metric`], or `None` while nothing answers at `url` (a process
/// still starting).
pub async fn metric_if_up(
    stack: &Stack,
    url: &str,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    stack.client.get(url).send().await.ok()?;
    Some(metric(stack, url, name, labels).await)
}

/// Orders placed (COMPLETED or FAILED) by the consumer at `url`; replays of
/// an earlier delivery are not counted.
pub async fn finals_of(stack: &Stack, url: &str) -> f64 {
    metric(stack, url, "oms_orders_final_total", &[]).await
}

/// Orders one unit of a product on every partition of the order topic,
/// round after round, until every consumer at `urls` has placed an order:
/// then the group has all its members, each holding partitions. `from` is
/// where the products' ids start (their stock is ample).
pub async fn settle_group(stack: &Stack, urls: &[String], from: u64) {
    let n = partitions(stack);
    let mut products = Vec::new();
    let mut next = from;
    for p in 0..n {
        let id = product_id_on(p, next, n);
        add_product_with_id(stack, id, 1_000_000).await;
        products.push(id);
        next = id + 1;
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let orders: Vec<(u64, Vec<(u64, u32)>)> = members(products.len() as u64)
            .into_iter()
            .zip(&products)
            .map(|(m, p)| (m, vec![(*p, 1)]))
            .collect();
        let placed = post_all(stack, &orders, "PROCESSING").await;
        stack
            .wait_final(&traces_of(&placed), Duration::from_secs(90))
            .await;
        let mut idle = 0;
        for url in urls {
            let placed = metric_if_up(stack, url, "oms_orders_final_total", &[]).await;
            if placed.unwrap_or(0.0) == 0.0 {
                idle += 1;
            }
        }
        if idle == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{idle} consumers never placed an order: the group never assigned them partitions"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What a finished run came to.
#[derive(Debug, Default)]
pub struct Tally {
    pub completed: usize,
    pub failed: usize,
    /// Units of each product the COMPLETED orders took.
    pub sold: BTreeMap<u64, i64>,
    /// DLQ records per FAILED trace.
    pub dead_letters: HashMap<String, Vec<String>>,
}

/// Checks a finished run exactly, from its outcomes:
///
/// * every trace is COMPLETED with an order of its own, or FAILED
///   `OUT_OF_STOCK`;
/// * the units the COMPLETED orders name are the units sold: every
///   product's stock is its initial stock less those, exactly, and never
///   below 0;
/// * every member (one order each) has exactly the order of its COMPLETED
///   trace, with the lines it asked for, and a member whose trace FAILED
///   has none;
/// * the DLQ holds a record for every FAILED trace and for no other trace,
///   each with reason `OUT_OF_STOCK`, and between 1 and `max_dead_letters`
///   of them (1 for a run without crashes: "exactly one"; a crash between
///   a send and its confirmation may send a record again), all of them
///   read by `dlq_by`.
pub async fn check_exact(
    stack: &Stack,
    products: &[(u64, i64)],
    orders: &[Placed],
    finals: &HashMap<String, Value>,
    max_dead_letters: usize,
    dlq_by: Instant,
) -> Tally {
    let members: HashSet<u64> = orders.iter().map(|o| o.member).collect();
    assert_eq!(members.len(), orders.len(), "one order per member");
    let mut tally = Tally::default();
    let mut failed = HashSet::new();
    let mut order_ids = HashSet::new();
    for o in orders {
        let v = &finals[&o.trace];
        match v["status"].as_str().unwrap() {
            "COMPLETED" => {
                tally.completed += 1;
                assert!(
                    order_ids.insert(v["orderId"].as_u64().unwrap()),
                    "one order per COMPLETED trace: {v}"
                );
                for (p, q) in &o.lines {
                    *tally.sold.entry(*p).or_default() += i64::from(*q);
                }
            }
            "FAILED" => {
                tally.failed += 1;
                assert_eq!(v["reason"], "OUT_OF_STOCK", "{v}");
                failed.insert(o.trace.clone());
            }
            other => panic!("trace {} is {other}", o.trace),
        }
    }
    for (product, initial) in products {
        let sold = tally.sold.get(product).copied().unwrap_or(0);
        let left = stack.stock(*product).await;
        assert!(left >= 0, "product {product} below 0: {left}");
        assert_eq!(
            left,
            initial - sold,
            "product {product}: {initial} − {sold} units the COMPLETED orders took"
        );
    }
    let lists = orders.iter().map(|o| async move {
        let list = stack.orders_of(o.member).await;
        let trace = &finals[&o.trace];
        if trace["status"] == "COMPLETED" {
            assert_eq!(list.len(), 1, "member {}: {list:?}", o.member);
            let order = &list[0];
            assert_eq!(order["orderId"], trace["orderId"], "member {}", o.member);
            assert_eq!(order["memberId"], o.member);
            let mut items: Vec<(u64, u32)> = order["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| {
                    (
                        i["productId"].as_u64().unwrap(),
                        u32::try_from(i["quantity"].as_u64().unwrap()).unwrap(),
                    )
                })
                .collect();
            items.sort_unstable();
            let mut asked = o.lines.clone();
            asked.sort_unstable();
            assert_eq!(items, asked, "member {}", o.member);
        } else {
            assert!(
                list.is_empty(),
                "member {} FAILED yet has {list:?}",
                o.member
            );
        }
    });
    futures::future::join_all(lists).await;
    tally.dead_letters = dead_letters(stack, &failed, dlq_by).await;
    let dead: HashSet<String> = tally.dead_letters.keys().cloned().collect();
    assert_eq!(dead, failed, "the DLQ holds the FAILED traces and no other");
    for (trace, reasons) in &tally.dead_letters {
        assert!(
            reasons.iter().all(|r| r == "OUT_OF_STOCK"),
            "{trace}: {reasons:?}"
        );
        assert!(
            (1..=max_dead_letters).contains(&reasons.len()),
            "{trace} has {} DLQ records (at most {max_dead_letters})",
            reasons.len()
        );
    }
    tally
}
